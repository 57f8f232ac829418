//! The outbound guard end to end (issue 9: SSRF), stored secrets bound to their endpoint,
//! and `lastError` without database text. The SSRF tests run on a harness whose allow list
//! names no trap: every source points at a local server that would answer, and nothing may
//! ever reach it.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use connectors::webhook::Secret;
use rapport::domain::Role;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::backend_test;
use crate::common::{postgres_url, Backend, TestApp};
use crate::feeds::{create_source, sync};
use crate::platform::{fixture, Platform, Reply};

const REFUSED: &str = "refused: not a public address";
const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// Declares a test that gets a backend and starts its own app (its allow list depends on
/// ports it opens first): `name::sqlite` and `name::postgres`.
macro_rules! guarded_test {
    (async fn $name:ident($backend:ident: Backend) $body:block) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            async fn run($backend: Backend) $body

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                run(Backend::Sqlite).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                if postgres_url().is_none() {
                    eprintln!("skipped: set RAPPORT_TEST_DATABASE_URL to run the PostgreSQL variant");
                    return;
                }
                run(Backend::Postgres).await;
            }
        }
    };
}

/// An app whose `[outbound] allow` is exactly `allow`.
async fn guarded(backend: Backend, allow: Vec<String>) -> TestApp {
    TestApp::with_config(backend, |config| config.outbound.allow = allow)
        .await
        .expect("the app starts")
}

/// A local server that would answer anything with a valid feed, and counts every TCP
/// connection it accepts.
struct Trap {
    port: u16,
    connections: Arc<AtomicUsize>,
}

impl Trap {
    async fn bind(address: &str) -> Option<Trap> {
        let listener = tokio::net::TcpListener::bind(address).await.ok()?;
        let port = listener.local_addr().ok()?.port();
        let connections = Arc::new(AtomicUsize::new(0));
        let seen = connections.clone();
        let feed = fixture("feeds/rss2.xml");
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                seen.fetch_add(1, Ordering::SeqCst);
                let feed = feed.clone();
                tokio::spawn(async move {
                    let mut buffer = [0u8; 4096];
                    let _ = stream.read(&mut buffer).await;
                    let head = format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: application/rss+xml\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                        feed.len()
                    );
                    let _ = stream.write_all(head.as_bytes()).await;
                    let _ = stream.write_all(&feed).await;
                });
            }
        });
        Some(Trap { port, connections })
    }

    fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
}

/// A port nothing listens on.
fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

async fn interaction_count(app: &TestApp, key: &str) -> u64 {
    app.gql(key, "{ interactions { totalCount } }", json!({}))
        .await["interactions"]["totalCount"]
        .as_u64()
        .unwrap()
}

/// Syncs a source that must be refused; returns its `lastError`.
async fn refused_sync(app: &TestApp, key: &str, id: &str, what: &str) -> String {
    let report = sync(app, key, id).await;
    assert_eq!(report["newItems"], 0, "{what}: {report:#}");
    let error = report["error"].as_str().unwrap_or_default();
    assert!(error.starts_with(REFUSED), "{what}: {report:#}");
    let last = report["source"]["lastError"].as_str().unwrap_or_default();
    assert_eq!(last, error, "{what}");
    assert_eq!(report["source"]["status"], "FAILING", "{what}: {report:#}");
    assert!(
        !last.contains("connect"),
        "{what}: a refusal is not a connection failure: {last}"
    );
    last.to_owned()
}

guarded_test! {
    async fn sources_pointing_at_non_public_addresses_are_refused_before_connecting(backend: Backend) {
        let trap = Trap::bind("127.0.0.1:0").await.unwrap();
        let trap6 = Trap::bind("[::1]:0").await;
        let closed = closed_port();
        // An allowed loopback platform that redirects to the trap.
        let redirector = Platform::start().await;
        let app = guarded(backend, vec![redirector.base.trim_start_matches("http://").to_owned()]).await;
        let key = app.key(Role::Admin).await;
        let port = trap.port;
        let to_trap = format!("http://127.0.0.1:{port}/feed.xml");
        redirector.on("/moved", vec![Reply::status(302).header("location", &to_trap)]);
        redirector.on("/moved-by-name", vec![Reply::status(301).header("location", &format!("http://localhost:{port}/feed.xml"))]);
        redirector.on("/moved-twice", vec![Reply::status(307).header("location", &redirector.url("/moved"))]);
        redirector.on("/metadata", vec![Reply::status(302).header("location", "http://169.254.169.254/latest/meta-data/")]);
        let mut urls = vec![
            to_trap.clone(),
            format!("http://localhost:{port}/feed.xml"),
            format!("http://LOCALHOST.:{port}/feed.xml"),
            format!("http://2130706433:{port}/feed.xml"),
            format!("http://0x7f.1:{port}/feed.xml"),
            format!("http://127.1:{port}/feed.xml"),
            format!("http://[::ffff:127.0.0.1]:{port}/feed.xml"),
            format!("http://0.0.0.0:{port}/feed.xml"),
            format!("http://0:{port}/feed.xml"),
            format!("http://127.0.0.1.:{port}/feed.xml"),
            format!("http://[::]:{port}/feed.xml"),
            format!("http://[::1]:{port}/feed.xml"),
            format!("http://[::ffff:7f00:1]:{port}/feed.xml"),
            format!("http://[64:ff9b::7f00:1]:{port}/feed.xml"),
            format!("http://[2002:7f00:1::1]:{port}/feed.xml"),
            format!("http://foo.localhost:{port}/feed.xml"),
            format!("http://user:pass@127.0.0.1:{port}/feed.xml"),
            "http://169.254.169.254/latest/meta-data/".to_owned(),
            "http://[fd00::1]/feed.xml".to_owned(),
            "http://10.0.0.1/feed.xml".to_owned(),
            redirector.url("/moved"),
            redirector.url("/moved-by-name"),
            redirector.url("/moved-twice"),
            redirector.url("/metadata"),
        ];
        if let Some(trap6) = &trap6 {
            urls.push(format!("http://[::1]:{}/feed.xml", trap6.port));
            urls.push(format!("http://localhost:{}/feed.xml", trap6.port));
        }
        for (n, url) in urls.iter().enumerate() {
            let id = create_source(&app, &key, "RSS", &format!("feed {n}"), json!({ "url": url })).await;
            refused_sync(&app, &key, &id, url).await;
        }
        // A Mastodon instance and an IMAP server on loopback.
        let id = create_source(&app, &key, "MASTODON", "mastodon", json!({ "base_url": format!("http://127.0.0.1:{port}"), "access_token": "token-that-must-stay-home" })).await;
        refused_sync(&app, &key, &id, "mastodon").await;
        for (n, host) in ["127.0.0.1", "localhost", "::1", "0.0.0.0"].into_iter().enumerate() {
            let config = json!({ "imap_host": host, "imap_port": port, "username": "me@acme.example", "password": "imap-password", "tls": false });
            let id = create_source(&app, &key, "EMAIL", &format!("mail {n}"), config).await;
            refused_sync(&app, &key, &id, host).await;
        }
        // Open and closed ports look the same.
        let open = create_source(&app, &key, "RSS", "open port", json!({ "url": to_trap })).await;
        let shut = create_source(&app, &key, "RSS", "closed port", json!({ "url": format!("http://127.0.0.1:{closed}/feed.xml") })).await;
        let open_error = refused_sync(&app, &key, &open, "open port").await;
        let closed_error = refused_sync(&app, &key, &shut, "closed port").await;
        assert_eq!(open_error, closed_error);
        assert_eq!(open_error, "refused: not a public address (127.0.0.1); the server's [outbound] allow list does not name it");
        let mail = |port: u16| json!({ "imap_host": "127.0.0.1", "imap_port": port, "username": "me@acme.example", "password": "imap-password" });
        let open = create_source(&app, &key, "EMAIL", "open imap", mail(port)).await;
        let shut = create_source(&app, &key, "EMAIL", "closed imap", mail(closed)).await;
        assert_eq!(refused_sync(&app, &key, &open, "open imap").await, refused_sync(&app, &key, &shut, "closed imap").await);
        // The redirector was asked, the trap never.
        assert_eq!(redirector.seen("/moved").len(), 2);
        assert_eq!(trap.connections(), 0, "a connection reached the trap");
        if let Some(trap6) = &trap6 {
            assert_eq!(trap6.connections(), 0, "a connection reached the IPv6 trap");
        }
        assert_eq!(interaction_count(&app, &key).await, 0);

        // A webhook source takes deliveries, but its replies cannot go to loopback.
        let input = json!({ "channel": "WEBHOOK", "name": "Chat", "config": { "secret": SECRET, "reply_url": format!("http://127.0.0.1:{port}/replies") } });
        let source = app.gql(&key, "mutation($input: CreateSourceInput!) { createSource(input: $input) { source { webhookPath } } }", json!({ "input": input })).await["createSource"]["source"].clone();
        let body = json!({ "name": "Visitor", "email": "visitor@example.com", "text": "Hello?", "id": "chat-1" }).to_string();
        let timestamp = chrono::Utc::now().timestamp().to_string();
        let signature = Secret::parse(SECRET).unwrap().sign_standard("chat-1", &timestamp, body.as_bytes()).unwrap();
        let response = app.client.post(app.url(source["webhookPath"].as_str().unwrap()))
            .header("content-type", "application/json")
            .header("webhook-id", "chat-1")
            .header("webhook-timestamp", &timestamp)
            .header("webhook-signature", signature)
            .body(body)
            .send().await.unwrap();
        assert_eq!(response.status(), 200);
        let target = app.gql(&key, "{ interactions(first: 1) { edges { node { id } } } }", json!({})).await["interactions"]["edges"][0]["node"]["id"].clone();
        let (code, body) = app.gql_error(&key, "mutation($input: ReplyToInteractionInput!) { replyToInteraction(input: $input) { interaction { id } } }", json!({ "input": { "interactionId": target, "text": "Hi!" } })).await;
        assert_eq!(code, "BAD_USER_INPUT", "{body:#}");
        insta::assert_json_snapshot!("reply_to_a_non_public_address", body["errors"]);
        assert_eq!(trap.connections(), 0, "the reply reached the trap");
        assert_eq!(interaction_count(&app, &key).await, 1, "only the delivery is stored");
    }
}

guarded_test! {
    async fn an_allowed_address_and_port_works_and_nothing_else_on_the_machine_does(backend: Backend) {
        let platform = Platform::start().await;
        platform.on("/feed.xml", vec![Reply::ok("application/rss+xml", fixture("feeds/rss2.xml"))]);
        let trap = Trap::bind("127.0.0.1:0").await.unwrap();
        let allowed = platform.base.trim_start_matches("http://").to_owned();
        let port = allowed.rsplit(':').next().unwrap().to_owned();
        let app = guarded(backend, vec![allowed]).await;
        let key = app.key(Role::Admin).await;
        let id = create_source(&app, &key, "RSS", "allowed", json!({ "url": platform.url("/feed.xml") })).await;
        let report = sync(&app, &key, &id).await;
        assert!(report["error"].is_null(), "{report:#}");
        assert!(report["newItems"].as_u64().unwrap() > 0, "{report:#}");
        for (name, url) in [
            ("other port", format!("http://127.0.0.1:{}/feed.xml", trap.port)),
            ("other port by name", format!("http://localhost:{}/feed.xml", trap.port)),
            ("same port over ipv6", format!("http://[::1]:{port}/feed.xml")),
        ] {
            let id = create_source(&app, &key, "RSS", name, json!({ "url": url })).await;
            refused_sync(&app, &key, &id, name).await;
        }
        assert_eq!(platform.seen("/feed.xml").len(), 1);
        // A feed's next page is a new connection too: page one lands, page two is refused.
        let page = String::from_utf8(fixture("feeds/feed.json"))
            .unwrap()
            .replace("NEXT_URL", &format!("http://127.0.0.1:{}/feed-2.json", trap.port));
        platform.on("/paged.json", vec![Reply::ok("application/feed+json", page)]);
        let id = create_source(&app, &key, "RSS", "paged", json!({ "url": platform.url("/paged.json") })).await;
        let report = sync(&app, &key, &id).await;
        assert!(report["newItems"].as_u64().unwrap() > 0, "{report:#}");
        assert!(report["error"].as_str().unwrap_or_default().starts_with(REFUSED), "{report:#}");
        assert_eq!(trap.connections(), 0);
    }
}

const UPDATE: &str = "mutation($input: UpdateSourceInput!) { updateSource(input: $input) { source { name config secretsSet } } }";

/// Updates a source's config; must fail naming `field`.
async fn update_refused(app: &TestApp, key: &str, id: &str, config: Value, field: &str) {
    let (code, body) = app
        .gql_error(
            key,
            UPDATE,
            json!({ "input": { "id": id, "name": "renamed", "config": config } }),
        )
        .await;
    assert_eq!(code, "BAD_USER_INPUT", "{body:#}");
    assert_eq!(body["errors"][0]["extensions"]["field"], field, "{body:#}");
}

async fn update(app: &TestApp, key: &str, id: &str, config: Value) -> Value {
    app.gql(
        key,
        UPDATE,
        json!({ "input": { "id": id, "config": config } }),
    )
    .await["updateSource"]["source"]
        .clone()
}

async fn source(app: &TestApp, key: &str, id: &str) -> Value {
    app.gql(
        key,
        "query($id: ID!) { source(id: $id) { name config secretsSet } }",
        json!({ "id": id }),
    )
    .await["source"]
        .clone()
}

fn mastodon_platform(platform: &Platform) {
    let file = |name: &str| Reply::ok("application/json", fixture(&format!("mastodon/{name}")));
    platform.on(
        "/api/v1/accounts/verify_credentials",
        vec![file("verify_credentials.json")],
    );
    platform.on("/api/v1/notifications", vec![Reply::json(&json!([]))]);
}

fn bearer(platform: &Platform) -> Vec<String> {
    platform
        .seen("/api/v1/notifications")
        .iter()
        .chain(platform.seen("/api/v1/accounts/verify_credentials").iter())
        .filter_map(|seen| {
            seen.headers
                .get("authorization")
                .map(|v| v.to_str().unwrap().to_owned())
        })
        .collect()
}

backend_test! {
    async fn a_stored_secret_is_never_sent_to_a_new_endpoint(app: TestApp) {
        let key = app.key(Role::Admin).await;
        let home = Platform::start().await;
        let elsewhere = Platform::start().await;
        mastodon_platform(&home);
        mastodon_platform(&elsewhere);
        let id = create_source(&app, &key, "MASTODON", "social", json!({ "base_url": home.base, "access_token": "home-token" })).await;
        let before = source(&app, &key, &id).await;
        // A new base_url without the token: refused, nothing changes, the token stays home.
        for base in [elsewhere.base.clone(), format!("{}/", home.base.replace("127.0.0.1", "localhost"))] {
            update_refused(&app, &key, &id, json!({ "base_url": base }), "config.access_token").await;
        }
        let (_, body) = app
            .gql_error(&key, UPDATE, json!({ "input": { "id": id, "config": { "base_url": elsewhere.base } } }))
            .await;
        insta::assert_json_snapshot!("secret_bound_to_its_endpoint", body["errors"]);
        assert_eq!(source(&app, &key, &id).await, before);
        sync(&app, &key, &id).await;
        assert!(bearer(&elsewhere).is_empty(), "the token went to the new host");
        assert!(!bearer(&home).is_empty() && bearer(&home).iter().all(|b| b == "Bearer home-token"));
        // A change that touches no endpoint keeps the token.
        let kept = update(&app, &key, &id, json!({ "base_url": home.base, "hashtags": ["rust"] })).await;
        assert_eq!(kept["secretsSet"], json!(["access_token"]));
        assert_eq!(kept["config"]["hashtags"], json!(["rust"]));
        // Given again, the new endpoint gets the new token.
        let moved = update(&app, &key, &id, json!({ "base_url": elsewhere.base, "access_token": "elsewhere-token" })).await;
        assert_eq!(moved["secretsSet"], json!(["access_token"]));
        sync(&app, &key, &id).await;
        assert!(!bearer(&elsewhere).is_empty() && bearer(&elsewhere).iter().all(|b| b == "Bearer elsewhere-token"), "{:?}", bearer(&elsewhere));

        // E-mail: the password is bound to the servers, the account and TLS.
        let mail = json!({ "imap_host": "imap.acme.example", "imap_port": 993, "username": "me@acme.example", "password": "imap-password", "smtp_host": "smtp.acme.example", "smtp_port": 465 });
        let id = create_source(&app, &key, "EMAIL", "mail", mail.clone()).await;
        let settings = |changes: Value| {
            let mut config = mail.clone();
            config.as_object_mut().unwrap().remove("password");
            for (k, v) in changes.as_object().unwrap() {
                config[k] = v.clone();
            }
            config
        };
        let before = source(&app, &key, &id).await;
        for change in [
            json!({ "imap_host": "attacker.example" }),
            json!({ "imap_port": 143 }),
            json!({ "tls": false }),
            json!({ "username": "other@acme.example", "address": "me@acme.example" }),
            json!({ "smtp_host": "attacker.example" }),
            json!({ "smtp_port": 587 }),
        ] {
            update_refused(&app, &key, &id, settings(change), "config.password").await;
        }
        let mut no_smtp = settings(json!({}));
        no_smtp.as_object_mut().unwrap().remove("smtp_host");
        no_smtp.as_object_mut().unwrap().remove("smtp_port");
        update_refused(&app, &key, &id, no_smtp, "config.password").await;
        assert_eq!(source(&app, &key, &id).await, before);
        let kept = update(&app, &key, &id, settings(json!({ "mailbox": "Support" }))).await;
        assert_eq!((kept["secretsSet"].clone(), kept["config"]["mailbox"].clone()), (json!(["password"]), json!("Support")));
        let moved = update(&app, &key, &id, settings(json!({ "imap_host": "imap2.acme.example", "password": "new-password" }))).await;
        assert_eq!(moved["config"]["imap_host"], "imap2.acme.example");

        // Webhook: replies to a new reply_url are signed with the secret.
        let hook = create_source(&app, &key, "WEBHOOK", "hook", json!({ "secret": SECRET, "reply_url": "https://replies.acme.example/in" })).await;
        update_refused(&app, &key, &hook, json!({ "reply_url": "https://attacker.example/in" }), "config.secret").await;
        update_refused(&app, &key, &hook, json!({}), "config.secret").await;
        let kept = update(&app, &key, &hook, json!({ "reply_url": "https://replies.acme.example/in" })).await;
        assert_eq!(kept["secretsSet"], json!(["secret"]));
        let all = app.gql(&key, "{ sources { config } }", json!({})).await.to_string();
        assert!(!all.contains("password") && !all.contains("token") && !all.contains("MfKQ9r8"), "{all}");
    }
}

backend_test! {
    async fn a_storage_failure_shows_no_database_text_in_last_error(app: TestApp) {
        use sea_orm::ConnectionTrait;
        let key = app.key(Role::Admin).await;
        let platform = Platform::start().await;
        platform.on("/feed.xml", vec![Reply::ok("application/rss+xml", fixture("feeds/rss2.xml"))]);
        let id = create_source(&app, &key, "RSS", "feed", json!({ "url": platform.url("/feed.xml") })).await;
        // Break storage under the running app: its own database (or schema) loses a table.
        app.app.db.execute_unprepared("ALTER TABLE interaction RENAME TO interaction_gone").await.unwrap();
        let report = sync(&app, &key, &id).await;
        app.app.db.execute_unprepared("ALTER TABLE interaction_gone RENAME TO interaction").await.unwrap();
        let expected = "internal error while storing the batch; see the server log";
        assert_eq!(report["error"], expected, "{report:#}");
        assert_eq!(report["source"]["lastError"], expected, "{report:#}");
        assert_eq!(report["source"]["status"], "BACKING_OFF");
        let shown = report.to_string().to_lowercase();
        for leak in ["interaction", "sql", "relation", "table", "select", "insert"] {
            assert!(!shown.contains(leak), "`{leak}` in {shown}");
        }
        // With the table back, the next sync stores the batch.
        let report = sync(&app, &key, &id).await;
        assert!(report["error"].is_null(), "{report:#}");
        assert!(report["newItems"].as_u64().unwrap() > 0);
    }
}
