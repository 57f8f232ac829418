//! Fault injection at named points (`src/failpoint.rs`), the way Meilisearch tests its
//! index scheduler: the real `rapport` binary runs with `RAPPORT_FAILPOINT` set, dies there
//! as `kill -9` would, is started again without it, and what a client, a sender or the
//! scheduler would retry is retried. Then the database is counted: nothing lost, nothing
//! twice. Each test runs on SQLite and PostgreSQL.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::http::{HeaderMap, Method, Uri};
use connectors::webhook::Secret;
use rapport::domain::Role;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
use serde_json::{json, Value};

use crate::backend_test;
use crate::common::TestApp;
use crate::feeds::create_source;
use crate::platform::{fixture, Platform, Reply};
use crate::processes::{config_file, rapport, terminate};

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// A `rapport serve` child: its address (read from its log) and everything it logged.
struct Served {
    child: Child,
    base: String,
    log: Arc<Mutex<String>>,
}

impl Served {
    /// Starts `rapport serve` on a free port, with `failpoint` armed when given, and waits
    /// until it listens.
    fn start(config: &PathBuf, failpoint: Option<&str>) -> Served {
        let mut command = rapport(config);
        command
            .args(["serve", "--addr", "127.0.0.1:0"])
            .env("RUST_LOG", "info,sqlx=warn,sea_orm=warn,tantivy=warn")
            .env("RAPPORT_OUTBOUND_ALLOW", "127.0.0.1")
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        if let Some(point) = failpoint {
            command.env("RAPPORT_FAILPOINT", point);
        }
        let mut child = command.spawn().unwrap();
        let stderr = child.stderr.take().unwrap();
        let log = Arc::new(Mutex::new(String::new()));
        let (found, address) = std::sync::mpsc::channel();
        let lines = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if let Some(rest) = line.split("serving GraphQL at http://").nth(1) {
                    let addr = rest.split("/graphql").next().unwrap_or_default().to_owned();
                    let _ = found.send(addr);
                }
                let mut log = lines.lock().unwrap();
                log.push_str(&line);
                log.push('\n');
            }
        });
        let addr = address
            .recv_timeout(Duration::from_secs(60))
            .unwrap_or_else(|_| panic!("rapport serve did not start: {}", log.lock().unwrap()));
        Served {
            child,
            base: format!("http://{addr}"),
            log,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Waits for the process to die at its failpoint; fails when it exits otherwise.
    async fn died_at(mut self, point: &str) {
        let deadline = Instant::now() + Duration::from_secs(60);
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            assert!(
                Instant::now() < deadline,
                "the process never reached failpoint {point}: {}",
                self.log.lock().unwrap()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        // The reader thread may still be draining the pipe.
        tokio::time::sleep(Duration::from_millis(100)).await;
        let log = self.log.lock().unwrap().clone();
        assert!(!status.success(), "{status:?}");
        assert!(
            log.contains(&format!("failpoint {point}: aborting")),
            "the process died elsewhere: {log}"
        );
    }

    fn stop(mut self) {
        assert!(terminate(&mut self.child).success());
    }

    async fn gql(&self, key: &str, query: &str, variables: Value) -> Value {
        let response = reqwest::Client::new()
            .post(self.url("/graphql"))
            .bearer_auth(key)
            .json(&json!({ "query": query, "variables": variables }))
            .send()
            .await
            .unwrap();
        let body: Value = response.json().await.unwrap();
        assert!(body.get("errors").is_none(), "{body:#}");
        body["data"].clone()
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What the database holds: interactions, customers, and whether any external id of a
/// source is stored twice.
#[derive(Debug, PartialEq, Eq)]
struct Counts {
    interactions: usize,
    customers: usize,
    duplicated_external_ids: usize,
}

async fn counts(app: &TestApp) -> Counts {
    let rows = entity::interaction::Entity::find()
        .all(&app.app.db)
        .await
        .unwrap();
    let mut seen = HashMap::new();
    for row in &rows {
        *seen
            .entry((row.source_id, row.external_id.clone()))
            .or_insert(0) += 1;
    }
    Counts {
        interactions: rows.len(),
        customers: entity::customer::Entity::find()
            .all(&app.app.db)
            .await
            .unwrap()
            .len(),
        duplicated_external_ids: seen.values().filter(|n| **n > 1).count(),
    }
}

fn counted(interactions: usize, customers: usize) -> Counts {
    Counts {
        interactions,
        customers,
        duplicated_external_ids: 0,
    }
}

/// `rapport sync` dies at `point` with the feed fetched; once the dead run's lease runs
/// out, the next sync (what the scheduler would run) stores every item once.
async fn a_sync_killed_at(app: &TestApp, point: &str) {
    let key = app.key_in("default", Role::Admin).await;
    let platform = Platform::start().await;
    platform.on(
        "/atom.xml",
        vec![Reply::ok("application/atom+xml", fixture("feeds/atom.xml")).etag("\"a1\"")],
    );
    let id = create_source(
        app,
        &key,
        "RSS",
        "forum",
        json!({ "url": platform.url("/atom.xml") }),
    )
    .await;
    let config = config_file(app, "lease_secs = 1\n");
    let sync = || {
        let mut command = rapport(&config);
        command
            .args(["sync", &id])
            .env("RAPPORT_OUTBOUND_ALLOW", "127.0.0.1");
        command
    };
    let output = sync().env("RAPPORT_FAILPOINT", point).output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(
        stderr.contains(&format!("failpoint {point}: aborting")),
        "{stderr}"
    );
    assert_eq!(platform.seen("/atom.xml").len(), 1, "the feed was fetched");
    assert_eq!(
        counts(app).await,
        counted(0, 0),
        "nothing of the batch stays"
    );
    let source = rapport::ids::decode::<entity::SourceId>("id", &id).unwrap();
    let row = entity::source::Entity::find_by_id(source)
        .one(&app.app.db)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(row.cursor, None, "the cursor did not move");

    // The dead process's lease runs out; the retry stores the three entries and their
    // three authors, once.
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let output = sync().output().unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&output.stdout).trim(), "3");
    let after = counts(app).await;
    assert_eq!(after.interactions, 3);
    assert_eq!(after.duplicated_external_ids, 0);
    // Another run changes nothing.
    let output = sync().output().unwrap();
    assert!(output.status.success());
    assert_eq!(counts(app).await, after);
}

backend_test!(
    async fn a_sync_killed_after_its_pull_loses_and_duplicates_nothing(app: TestApp) {
        a_sync_killed_at(&app, "sync.after_pull").await;
    }
);

backend_test!(
    async fn a_sync_killed_mid_batch_loses_and_duplicates_nothing(app: TestApp) {
        a_sync_killed_at(&app, "ingest.mid_batch").await;
    }
);

backend_test!(
    async fn a_sync_killed_before_its_commit_loses_and_duplicates_nothing(app: TestApp) {
        a_sync_killed_at(&app, "ingest.before_commit").await;
    }
);

/// POSTs a Standard Webhooks delivery `id` with `body` to `url`, signed now.
async fn deliver(url: &str, id: &str, body: &Value) -> reqwest::Result<reqwest::Response> {
    let body = body.to_string();
    let timestamp = chrono::Utc::now().timestamp().to_string();
    let signature = Secret::parse(SECRET)
        .unwrap()
        .sign_standard(id, &timestamp, body.as_bytes())
        .unwrap();
    reqwest::Client::new()
        .post(url)
        .header("content-type", "application/json")
        .header("webhook-id", id)
        .header("webhook-timestamp", &timestamp)
        .header("webhook-signature", signature)
        .body(body)
        .send()
        .await
}

async fn webhook_source(app: &TestApp, key: &str) -> String {
    create_source(app, key, "WEBHOOK", "form", json!({ "secret": SECRET })).await
}

backend_test!(
    async fn a_server_killed_after_committing_a_delivery_stores_the_resent_delivery_once(
        app: TestApp,
    ) {
        let key = app.key_in("default", Role::Admin).await;
        let source = webhook_source(&app, &key).await;
        let config = config_file(&app, "enabled = false\n");
        let body =
            json!({ "name": "Ada", "email": "ada@example.com", "text": "my order never came" });

        // The delivery is committed, then the process dies before answering: the sender
        // sees a broken connection, not a 2xx, and will send the delivery again.
        let server = Served::start(&config, Some("webhook.after_commit"));
        let path = format!("/webhooks/{source}");
        let answer = deliver(&server.url(&path), "msg_fp_1", &body).await;
        assert!(
            answer.as_ref().map_or(true, |r| !r.status().is_success()),
            "the sender got an acknowledgement: {answer:?}"
        );
        server.died_at("webhook.after_commit").await;
        assert_eq!(
            counts(&app).await,
            counted(1, 1),
            "the delivery was committed"
        );

        // The retry after the restart is acknowledged as a duplicate and stored once.
        let server = Served::start(&config, None);
        let answer = deliver(&server.url(&path), "msg_fp_1", &body)
            .await
            .unwrap();
        assert_eq!(answer.status().as_u16(), 200);
        let answer: Value = answer.json().await.unwrap();
        assert_eq!(answer["duplicate"], true, "{answer}");
        assert_eq!(counts(&app).await, counted(1, 1));
        // And the restarted server takes new deliveries.
        let answer = deliver(&server.url(&path), "msg_fp_2", &json!({ "text": "hello?" }))
            .await
            .unwrap();
        assert_eq!(answer.status().as_u16(), 200);
        server.stop();
        assert_eq!(counts(&app).await, counted(2, 2));
    }
);

backend_test!(
    async fn an_indexer_killed_after_writing_the_index_finds_each_item_once(app: TestApp) {
        let key = app.key_in("default", Role::Admin).await;
        let source = webhook_source(&app, &key).await;
        // Deliveries to the in-process server (which runs no indexer) make the events
        // the spawned process will index.
        let path = app.url(&format!("/webhooks/{source}"));
        for n in 0..4 {
            let body = json!({ "name": format!("Ada {n}"), "email": format!("ada{n}@example.com"), "text": format!("quokkafuzz report number {n}") });
            let answer = deliver(&path, &format!("msg_ix_{n}"), &body).await.unwrap();
            assert_eq!(answer.status().as_u16(), 200);
        }
        assert!(
            rapport::search::indexer::lag(&app.app.db, &app.app.search_consumer)
                .await
                .unwrap()
                > 0
        );
        let config = config_file(&app, "enabled = false\n");

        // The indexer writes the documents to the index, commits them, and the process
        // dies before it stores its offset.
        Served::start(&config, Some("indexer.after_write"))
            .died_at("indexer.after_write")
            .await;
        assert_eq!(
            rapport::search::indexer::offset(&app.app.db, &app.app.search_consumer)
                .await
                .unwrap(),
            0,
            "the offset was not stored"
        );

        // The restarted indexer applies the same events again; each item is found once.
        let server = Served::start(&config, None);
        let deadline = Instant::now() + Duration::from_secs(60);
        while rapport::search::indexer::lag(&app.app.db, &app.app.search_consumer)
            .await
            .unwrap()
            > 0
        {
            assert!(Instant::now() < deadline, "the indexer did not catch up");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let viewer = app.key_in("default", Role::Viewer).await;
        let data = server
            .gql(
                &viewer,
                "{ search(query: \"quokkafuzz\", first: 50) { edges { node { interaction { id text } } } } searchCustomers(query: \"ada\", first: 20) { customer { id } } }",
                json!({}),
            )
            .await;
        server.stop();
        let mut found: Vec<String> = data["search"]["edges"]
            .as_array()
            .unwrap()
            .iter()
            .map(|edge| {
                edge["node"]["interaction"]["id"]
                    .as_str()
                    .unwrap()
                    .to_owned()
            })
            .collect();
        found.sort();
        let total = found.len();
        found.dedup();
        assert_eq!((total, found.len()), (4, 4), "{data:#}");
        let mut customers: Vec<&str> = data["searchCustomers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|hit| hit["customer"]["id"].as_str().unwrap())
            .collect();
        customers.sort();
        let total = customers.len();
        customers.dedup();
        assert_eq!((total, customers.len()), (4, 4), "{data:#}");
        assert_eq!(counts(&app).await, counted(4, 4));
    }
);

/// A Mastodon server that keeps the statuses posted to it and, as Mastodon documents for
/// `Idempotency-Key`, answers a repeated key with the status it already created.
#[derive(Clone, Default)]
struct Mastodon {
    state: Arc<Mutex<MastodonState>>,
}

#[derive(Default)]
struct MastodonState {
    posts: usize,
    statuses: HashMap<String, String>,
}

impl Mastodon {
    async fn start() -> (Mastodon, String) {
        let mastodon = Mastodon::default();
        let state = mastodon.clone();
        let app = axum::Router::new().fallback(
            move |method: Method, uri: Uri, headers: HeaderMap, _body: Bytes| {
                let state = state.clone();
                async move { state.answer(method, uri.path(), &headers) }
            },
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.ok() });
        (mastodon, base)
    }

    fn answer(&self, method: Method, path: &str, headers: &HeaderMap) -> axum::response::Response {
        use axum::response::IntoResponse;
        let json = |body: Vec<u8>| {
            ([("content-type", "application/json; charset=utf-8")], body).into_response()
        };
        match (method, path) {
            (Method::GET, "/api/v1/accounts/verify_credentials") => {
                json(fixture("mastodon/verify_credentials.json"))
            }
            (Method::GET, "/api/v1/notifications") => json(fixture("mastodon/notifications.json")),
            (Method::POST, "/api/v1/statuses") => {
                let key = headers
                    .get("idempotency-key")
                    .and_then(|value| value.to_str().ok())
                    .unwrap_or_default()
                    .to_owned();
                let mut state = self.state.lock().unwrap();
                state.posts += 1;
                let next = 114_000_000_000_000_000u64 + state.statuses.len() as u64;
                let id = state
                    .statuses
                    .entry(key)
                    .or_insert_with(|| next.to_string())
                    .clone();
                let mut status: Value =
                    serde_json::from_slice(&fixture("mastodon/status-posted.json")).unwrap();
                status["id"] = json!(id);
                status["url"] = json!(format!("https://mastodon.local/@acmehq/{id}"));
                json(status.to_string().into_bytes())
            }
            _ => (axum::http::StatusCode::NOT_FOUND, "no such path").into_response(),
        }
    }

    /// (statuses POSTed, statuses created)
    fn posted(&self) -> (usize, Vec<String>) {
        let state = self.state.lock().unwrap();
        (state.posts, state.statuses.values().cloned().collect())
    }
}

const REPLY: &str = "mutation($input: ReplyToInteractionInput!) { replyToInteraction(input: $input) { interaction { id externalId direction } } }";

backend_test!(
    async fn a_server_killed_after_the_platform_accepted_a_reply_stores_the_retry_once(
        app: TestApp,
    ) {
        let admin = app.key_in("default", Role::Admin).await;
        let agent = app.key_in("default", Role::Agent).await;
        let (mastodon, base) = Mastodon::start().await;
        let source = create_source(
            &app,
            &admin,
            "MASTODON",
            "social",
            json!({ "base_url": base, "access_token": "zQ8d1bXk0mastodon-token-7Yv3" }),
        )
        .await;
        let synced = crate::feeds::sync(&app, &admin, &source).await;
        assert_eq!(synced["newItems"], 2, "{synced:#}");
        let target = crate::mastodon::find_interaction(&app, &admin, "113000000000000155").await;
        let before = counts(&app).await;
        let config = config_file(&app, "enabled = false\n");
        let input = json!({ "input": { "interactionId": target, "text": "on it!", "idempotencyKey": "fp-reply-1" } });

        // The platform accepts the status; the process dies before storing it, so the
        // client sees a broken connection and retries with the same key.
        let server = Served::start(&config, Some("reply.after_send"));
        let answer = reqwest::Client::new()
            .post(server.url("/graphql"))
            .bearer_auth(&agent)
            .json(&json!({ "query": REPLY, "variables": input }))
            .send()
            .await;
        assert!(answer.is_err(), "the client got an answer: {answer:?}");
        server.died_at("reply.after_send").await;
        let (posts, statuses) = mastodon.posted();
        assert_eq!((posts, statuses.len()), (1, 1));
        assert_eq!(counts(&app).await, before, "the reply was not stored");

        let server = Served::start(&config, None);
        let data = server.gql(&agent, REPLY, input.clone()).await;
        let reply = &data["replyToInteraction"]["interaction"];
        assert_eq!(reply["direction"], "OUTBOUND");
        // The platform dropped the repeat: one status, and it is the one stored.
        let (posts, statuses) = mastodon.posted();
        assert_eq!((posts, statuses.len()), (2, 1));
        assert_eq!(reply["externalId"], statuses[0]);
        // Retrying once more changes nothing.
        let again = server.gql(&agent, REPLY, input).await;
        assert_eq!(
            again["replyToInteraction"]["interaction"]["id"],
            reply["id"]
        );
        server.stop();
        let source_id = rapport::ids::decode::<entity::SourceId>("id", &source).unwrap();
        let stored = entity::interaction::Entity::find()
            .filter(entity::interaction::Column::SourceId.eq(source_id))
            .filter(entity::interaction::Column::ExternalId.eq(statuses[0].clone()))
            .all(&app.app.db)
            .await
            .unwrap();
        assert_eq!(stored.len(), 1);
        let after = counts(&app).await;
        assert_eq!(
            (after.interactions, after.duplicated_external_ids),
            (before.interactions + 1, 0)
        );
    }
);
