//! The Mastodon connector against a local server answering with the documented payloads
//! (notifications, tag timeline, search, verify_credentials, posting a status), headers
//! included: `Link` paging, `X-RateLimit-*`, `Idempotency-Key` on replies; and a first
//! sync's walk through ten thousand earlier mentions, paged by the server as Mastodon
//! pages, stopped and killed between batches.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use rapport::domain::Role;
use sea_orm::{ActiveModelTrait, ColumnTrait, EntityTrait, QueryFilter};
use serde_json::{json, Value};

use crate::backend_test;
use crate::common::TestApp;
use crate::feeds::{create_source, items, sync};
use crate::platform::{fixture, Platform, Reply, Seen};
use crate::processes::{config_file, rapport};

const TOKEN: &str = "zQ8d1bXk0mastodon-token-7Yv3";
const REPLY: &str = "mutation($input: ReplyToInteractionInput!) { replyToInteraction(input: $input) { interaction { id externalId direction kind text customer { id } conversation { id } } } }";

fn json_file(path: &str) -> Reply {
    Reply::ok("application/json; charset=utf-8", fixture(path))
}

/// A Mastodon server with the fixtures: the first notifications page carries a `Link`
/// header and a rate-limit budget; later pages come from `notifications-2.json`.
async fn mastodon() -> Platform {
    let server = Platform::start().await;
    let base = server.base.clone();
    server.on(
        "/api/v1/accounts/verify_credentials",
        vec![json_file("mastodon/verify_credentials.json")],
    );
    server.on(
        "/api/v1/notifications",
        vec![
            json_file("mastodon/notifications.json")
                .header("link", &format!("<{base}/api/v1/notifications?max_id=34975861&types[]=mention>; rel=\"next\", <{base}/api/v1/notifications?min_id=34975870&types[]=mention>; rel=\"prev\""))
                .header("x-ratelimit-limit", "300")
                .header("x-ratelimit-remaining", "297")
                .header("x-ratelimit-reset", "2026-11-23T12:05:00.000Z"),
            json_file("mastodon/notifications-2.json"),
            Reply::json(&json!([])),
        ],
    );
    server.on(
        "/api/v1/timelines/tag/rapportcrm",
        vec![
            json_file("mastodon/tag-rapportcrm.json"),
            Reply::json(&json!([])),
        ],
    );
    server.on(
        "/api/v2/search",
        vec![
            json_file("mastodon/search.json"),
            Reply::json(&json!({ "accounts": [], "statuses": [], "hashtags": [] })),
        ],
    );
    server.on(
        "/api/v1/statuses",
        vec![json_file("mastodon/status-posted.json")],
    );
    server
}

fn config(server: &Platform) -> Value {
    json!({ "base_url": server.base, "access_token": TOKEN, "hashtags": ["#rapportcrm"], "keywords": ["rapport crm"] })
}

backend_test!(
    async fn mentions_and_listening_land_threaded_and_replies_go_out_once(app: TestApp) {
        let key = app.key(Role::Admin).await;
        let server = mastodon().await;
        let created = app
            .gql(&key, crate::feeds::CREATE, json!({ "input": { "channel": "MASTODON", "name": "acmehq", "config": config(&server) } }))
            .await;
        let source = &created["createSource"]["source"];
        // The token is a secret: never returned.
        assert_eq!(source["secretsSet"], json!(["access_token"]));
        assert!(!source["config"].to_string().contains(TOKEN));
        let id = source["id"].as_str().unwrap().to_owned();

        let report = sync(&app, &key, &id).await;
        assert_eq!(report["error"], Value::Null, "{report:#}");
        assert_eq!(report["newItems"], 5, "{report:#}");
        // The token went as a bearer header, and the documented query parameters were used.
        let notifications = server.seen("/api/v1/notifications");
        assert_eq!(
            notifications[0].headers["authorization"],
            format!("Bearer {TOKEN}")
        );
        assert!(
            notifications[0].query.contains("types%5B%5D=mention")
                || notifications[0].query.contains("types[]=mention"),
            "{}",
            notifications[0].query
        );
        assert!(!notifications[0].query.contains("min_id"));
        let search = &server.seen("/api/v2/search")[0];
        assert!(
            search.query.contains("type=statuses") && search.query.contains("q=rapport+crm"),
            "{}",
            search.query
        );

        let all = items(&app, &key).await;
        let mention = &all["113000000000000101"];
        assert_eq!(mention["kind"], "MENTION");
        assert_eq!(mention["direction"], "INBOUND");
        assert_eq!(mention["channel"], "MASTODON");
        assert_eq!(
            mention["text"],
            "@acmehq the CSV export has been broken since Tuesday, any news?"
        );
        assert_eq!(
            mention["identity"]["platformId"],
            "https://social.example/users/maya"
        );
        assert_eq!(mention["customer"]["displayName"], "Maya Lindqvist 🌻");
        assert!(mention["sentiment"].as_f64().unwrap() < 0.0);
        // Our own reply, seen on the tag timeline, is outbound in Maya's conversation.
        let ours = &all["113000000000000170"];
        assert_eq!(ours["direction"], "OUTBOUND");
        assert_eq!(ours["customer"]["id"], mention["customer"]["id"]);
        assert_eq!(ours["conversation"]["id"], mention["conversation"]["id"]);
        // Listening: the hashtag post and the keyword search hit.
        assert_eq!(all["113000000000000180"]["kind"], "POST");
        assert_eq!(
            all["113000000000000180"]["customer"]["id"],
            mention["customer"]["id"]
        );
        let spanish = &all["113000000000000155"];
        assert_eq!(spanish["language"], "es");
        assert!(spanish["sentiment"].as_f64().unwrap() > 0.0);
        assert_eq!(
            spanish["customer"]["id"],
            all["113000000000000185"]["customer"]["id"]
        );

        // The next pull asks for what came after the Link header's min_id; Maya's answer
        // to our reply joins the same conversation.
        let report = sync(&app, &key, &id).await;
        assert_eq!(report["newItems"], 1, "{report:#}");
        let second = server.seen("/api/v1/notifications");
        assert!(
            second[1].query.contains("min_id=34975870"),
            "{}",
            second[1].query
        );
        assert!(server.seen("/api/v1/timelines/tag/rapportcrm")[1]
            .query
            .contains("min_id=113000000000000180"));
        let all = items(&app, &key).await;
        let answer = &all["113000000000000190"];
        assert_eq!(answer["conversation"]["id"], mention["conversation"]["id"]);
        // verify_credentials is asked once: our account id is kept in the cursor.
        assert_eq!(server.seen("/api/v1/accounts/verify_credentials").len(), 1);

        // Reply from Rapport: a status in reply to Maya's, mentioning her, with an
        // Idempotency-Key; stored as outbound in her conversation.
        let agent = app.key(Role::Agent).await;
        let target = find_interaction(&app, &key, "113000000000000190").await;
        let input = json!({ "interactionId": target, "text": "fixed now, thanks for your patience!", "idempotencyKey": "reply-190-1" });
        let sent = app.gql(&agent, REPLY, json!({ "input": input })).await["replyToInteraction"]
            ["interaction"]
            .clone();
        assert_eq!(sent["externalId"], "113000000000000999");
        assert_eq!(sent["direction"], "OUTBOUND");
        assert_eq!(sent["kind"], "REPLY");
        assert_eq!(sent["conversation"]["id"], mention["conversation"]["id"]);
        assert_eq!(sent["customer"]["id"], mention["customer"]["id"]);
        let posted = server.seen("/api/v1/statuses");
        assert_eq!(posted.len(), 1);
        assert_eq!(posted[0].method, "POST");
        assert_eq!(posted[0].headers["idempotency-key"], "reply-190-1");
        assert_eq!(
            posted[0].headers["authorization"],
            format!("Bearer {TOKEN}")
        );
        let body: Value = serde_json::from_slice(&posted[0].body).unwrap();
        assert_eq!(body["in_reply_to_id"], "113000000000000190");
        assert_eq!(body["visibility"], "public");
        assert_eq!(
            body["status"],
            "@maya@social.example fixed now, thanks for your patience!"
        );
        // A retry with the same key: Mastodon answers with the same status; stored once.
        let again = app.gql(&agent, REPLY, json!({ "input": input })).await["replyToInteraction"]
            ["interaction"]
            .clone();
        assert_eq!(again["id"], sent["id"]);
        let count = app
            .gql(
                &key,
                "{ interactions(filter: { direction: OUTBOUND }) { totalCount } }",
                json!({}),
            )
            .await;
        assert_eq!(count["interactions"]["totalCount"], 2);
        // A viewer may not reply.
        let viewer = app.key(Role::Viewer).await;
        let (code, _) = app
            .gql_error(&viewer, REPLY, json!({ "input": input }))
            .await;
        assert_eq!(code, "FORBIDDEN");
    }
);

pub async fn find_interaction(app: &TestApp, key: &str, external_id: &str) -> String {
    let data = app
        .gql(
            key,
            "{ interactions(first: 100) { edges { node { id externalId } } } }",
            json!({}),
        )
        .await;
    data["interactions"]["edges"]
        .as_array()
        .unwrap()
        .iter()
        .find(|edge| edge["node"]["externalId"] == external_id)
        .map(|edge| edge["node"]["id"].as_str().unwrap().to_owned())
        .unwrap()
}

backend_test!(
    async fn one_account_seen_by_two_sources_is_one_identity(app: TestApp) {
        let key = app.key(Role::Admin).await;
        let first = mastodon().await;
        let second = mastodon().await;
        let a = create_source(&app, &key, "MASTODON", "instance A", config(&first)).await;
        let b = create_source(&app, &key, "MASTODON", "instance B", config(&second)).await;
        assert_eq!(sync(&app, &key, &a).await["newItems"], 5);
        assert_eq!(sync(&app, &key, &b).await["newItems"], 5);
        let data = app
            .gql(&key, "{ customers(first: 50) { totalCount edges { node { displayName identities { platformId } } } } interactions { totalCount } }", json!({}))
            .await;
        assert_eq!(data["interactions"]["totalCount"], 10);
        let maya: Vec<&Value> = data["customers"]["edges"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|edge| edge["node"]["displayName"] == "Maya Lindqvist 🌻")
            .collect();
        assert_eq!(maya.len(), 1);
        assert_eq!(
            maya[0]["node"]["identities"],
            json!([{ "platformId": "https://social.example/users/maya" }])
        );
    }
);

backend_test!(
    async fn rate_limits_and_refused_tokens_show_on_the_source(app: TestApp) {
        let key = app.key(Role::Admin).await;
        let server = mastodon().await;
        let reset = (chrono::Utc::now() + chrono::Duration::minutes(10))
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        server.on(
            "/api/v1/notifications",
            vec![json_file("mastodon/notifications.json")
                .header("x-ratelimit-limit", "300")
                .header("x-ratelimit-remaining", "0")
                .header("x-ratelimit-reset", &reset)],
        );
        let id = create_source(&app, &key, "MASTODON", "busy", config(&server)).await;
        let report = sync(&app, &key, &id).await;
        // The batch is stored; the next run waits for the reset.
        assert_eq!(report["newItems"], 5);
        assert_eq!(report["source"]["status"], "RATE_LIMITED");
        let next: chrono::DateTime<chrono::Utc> = report["source"]["nextRunAt"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!(
            next >= chrono::Utc::now() + chrono::Duration::minutes(9),
            "{next}"
        );

        let refused = Platform::start().await;
        refused.on(
            "/api/v1/accounts/verify_credentials",
            vec![Reply::status(401).header("content-type", "application/json")],
        );
        let id = create_source(
            &app,
            &key,
            "MASTODON",
            "revoked",
            json!({ "base_url": refused.base, "access_token": TOKEN }),
        )
        .await;
        let report = sync(&app, &key, &id).await;
        assert_eq!(report["source"]["status"], "FAILING");
        let error = report["source"]["lastError"].as_str().unwrap();
        assert!(error.contains("credentials"), "{error}");
        assert!(!error.contains(TOKEN));

        let limited = Platform::start().await;
        limited.on(
            "/api/v1/accounts/verify_credentials",
            vec![Reply::status(429).header("retry-after", "90")],
        );
        let id = create_source(
            &app,
            &key,
            "MASTODON",
            "throttled",
            json!({ "base_url": limited.base, "access_token": TOKEN }),
        )
        .await;
        let report = sync(&app, &key, &id).await;
        assert_eq!(report["source"]["status"], "RATE_LIMITED");

        let malformed = Platform::start().await;
        malformed.on(
            "/api/v1/accounts/verify_credentials",
            vec![json_file("mastodon/verify_credentials.json")],
        );
        malformed.on(
            "/api/v1/notifications",
            vec![Reply::ok(
                "application/json",
                "[{\"id\": \"1\", \"type\": \"mention\", ",
            )],
        );
        let id = create_source(
            &app,
            &key,
            "MASTODON",
            "malformed",
            json!({ "base_url": malformed.base, "access_token": TOKEN }),
        )
        .await;
        let report = sync(&app, &key, &id).await;
        assert_eq!(report["source"]["status"], "BACKING_OFF");
        assert!(
            report["source"]["lastError"]
                .as_str()
                .unwrap()
                .contains("invalid JSON"),
            "{report:#}"
        );

        let bad_bytes = Platform::start().await;
        bad_bytes.on(
            "/api/v1/accounts/verify_credentials",
            vec![Reply::ok(
                "application/json",
                b"{\"id\": \"1\xff\xfe\"}".to_vec(),
            )],
        );
        let id = create_source(
            &app,
            &key,
            "MASTODON",
            "bad bytes",
            json!({ "base_url": bad_bytes.base, "access_token": TOKEN }),
        )
        .await;
        let report = sync(&app, &key, &id).await;
        assert_eq!(report["source"]["status"], "BACKING_OFF");
        assert!(
            report["source"]["lastError"]
                .as_str()
                .unwrap()
                .contains("invalid JSON"),
            "{report:#}"
        );
    }
);

/// A Mastodon server's mention notifications (oldest first), served the way Mastodon
/// serves `GET /api/v1/notifications`: `limit` (default 40, at most 80), `max_id`,
/// `since_id` and `min_id` bound the page by notification id (`min_id` takes the ones
/// immediately newer, the others the newest in range), newest first, with a `Link` header
/// to the next (older) and previous (newer) page.
#[derive(Clone)]
struct Mentions {
    base: String,
    all: Arc<Mutex<Vec<Value>>>,
    /// Answers say the rate-limit budget is spent until ten minutes from now.
    exhausted: Arc<Mutex<bool>>,
}

/// A notification id: Mastodon numbers notifications from a sequence.
fn notification_id(n: u64) -> u64 {
    40_000_000 + n
}

/// A status id: Mastodon's are time-based and much longer than notification ids.
fn status_id(n: u64) -> String {
    (113_100_000_000_000_000 + n * 7).to_string()
}

/// Mention `n` of a thousand fans (fan `n % 1000`, on one of seven instances), written as
/// the API documents a notification and its status; every tenth one from the second
/// thousand on answers the same fan's mention a thousand earlier.
fn mention(n: u64) -> Value {
    let fan = n % 1000;
    let host = format!("fans{}.example", fan % 7);
    let at = chrono::DateTime::parse_from_rfc3339("2024-01-01T00:00:00Z").unwrap()
        + chrono::Duration::minutes(n as i64);
    let at = at
        .with_timezone(&chrono::Utc)
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let account = json!({
        "id": (109_000_000_000_000_000 + fan).to_string(),
        "username": format!("fan{fan}"),
        "acct": format!("fan{fan}@{host}"),
        "display_name": format!("Fan {fan}"),
        "locked": false,
        "bot": false,
        "discoverable": true,
        "group": false,
        "created_at": "2022-11-05T00:00:00.000Z",
        "note": "<p>Long-time user.</p>",
        "url": format!("https://{host}/@fan{fan}"),
        "uri": format!("https://{host}/users/fan{fan}"),
        "avatar": format!("https://files.{host}/accounts/avatars/{fan}/original/avatar.png"),
        "avatar_static": format!("https://files.{host}/accounts/avatars/{fan}/original/avatar.png"),
        "header": format!("https://{host}/headers/original/missing.png"),
        "header_static": format!("https://{host}/headers/original/missing.png"),
        "followers_count": 12,
        "following_count": 30,
        "statuses_count": 400,
        "last_status_at": "2026-11-22",
        "emojis": [],
        "fields": []
    });
    let id = status_id(n);
    let answers = (n >= 1000 && n % 10 == 9).then(|| status_id(n - 1000));
    json!({
        "id": notification_id(n).to_string(),
        "type": "mention",
        "created_at": at,
        "account": account,
        "status": {
            "id": id,
            "created_at": at,
            "in_reply_to_id": answers,
            "in_reply_to_account_id": answers.as_ref().map(|_| account["id"].clone()),
            "sensitive": false,
            "spoiler_text": "",
            "visibility": "public",
            "language": "en",
            "uri": format!("https://{host}/users/fan{fan}/statuses/{id}"),
            "url": format!("https://{host}/@fan{fan}/{id}"),
            "replies_count": 0,
            "reblogs_count": 0,
            "favourites_count": 0,
            "edited_at": null,
            "favourited": false,
            "reblogged": false,
            "muted": false,
            "bookmarked": false,
            "content": format!("<p><span class=\"h-card\"><a href=\"https://mastodon.local/@acmehq\" class=\"u-url mention\">@<span>acmehq</span></a></span> question number {n} about the export</p>"),
            "filtered": [],
            "reblog": null,
            "application": { "name": "Web", "website": null },
            "account": account,
            "media_attachments": [],
            "mentions": [{ "id": "109000000000000001", "username": "acmehq", "url": "https://mastodon.local/@acmehq", "acct": "acmehq" }],
            "tags": [],
            "emojis": [],
            "card": null,
            "poll": null
        }
    })
}

impl Mentions {
    /// Serves mentions `0..count` on `server`.
    fn serve(server: &Platform, count: u64) -> Mentions {
        let mentions = Mentions {
            base: server.base.clone(),
            all: Arc::new(Mutex::new(Vec::new())),
            exhausted: Arc::new(Mutex::new(false)),
        };
        mentions.add(0..count);
        let serving = mentions.clone();
        server.handle("/api/v1/notifications", move |seen| {
            serving.page(&seen.query)
        });
        mentions
    }

    /// New mentions arrive.
    fn add(&self, range: std::ops::Range<u64>) {
        self.all.lock().unwrap().extend(range.map(mention));
    }

    fn page(&self, query: &str) -> Reply {
        let url = reqwest::Url::parse(&format!("http://query/?{query}")).unwrap();
        let param = |name: &str| {
            url.query_pairs()
                .find(|(key, _)| key == name)
                .map(|(_, value)| value.into_owned())
        };
        let id = |name: &str| param(name).map(|value| value.parse::<u64>().unwrap());
        assert_eq!(param("types[]").as_deref(), Some("mention"), "{query}");
        let limit = param("limit").map_or(40, |l| l.parse::<usize>().unwrap().clamp(1, 80));
        let (max_id, since_id, min_id) = (id("max_id"), id("since_id"), id("min_id"));
        let all = self.all.lock().unwrap();
        let in_range = all.iter().filter(|entry| {
            let n: u64 = entry["id"].as_str().unwrap().parse().unwrap();
            max_id.is_none_or(|max| n < max)
                && since_id.is_none_or(|since| n > since)
                && min_id.is_none_or(|min| n > min)
        });
        // Stored oldest first: `min_id` takes the ones right after it, the others the
        // newest in range; either way the page goes out newest first.
        let mut page: Vec<&Value> = if min_id.is_some() {
            in_range.take(limit).collect()
        } else {
            in_range.rev().take(limit).collect()
        };
        page.sort_by_key(|entry| {
            std::cmp::Reverse(entry["id"].as_str().unwrap().parse::<u64>().unwrap())
        });
        let exhausted = *self.exhausted.lock().unwrap();
        let reset = (chrono::Utc::now() + chrono::Duration::minutes(10))
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        let mut reply = Reply::json(&Value::Array(page.iter().map(|e| (*e).clone()).collect()))
            .header("x-ratelimit-limit", "300")
            .header("x-ratelimit-remaining", if exhausted { "0" } else { "299" })
            .header("x-ratelimit-reset", &reset);
        if let (Some(newest), Some(oldest)) = (page.first(), page.last()) {
            let link = |bound: &str, id: &Value| {
                format!(
                    "{}/api/v1/notifications?limit={limit}&{bound}={}&types%5B%5D=mention",
                    self.base,
                    id.as_str().unwrap()
                )
            };
            reply = reply.header(
                "link",
                &format!(
                    "<{}>; rel=\"next\", <{}>; rel=\"prev\"",
                    link("max_id", &oldest["id"]),
                    link("min_id", &newest["id"])
                ),
            );
        }
        reply
    }
}

/// A Mastodon server with `count` earlier mentions of our account.
async fn mastodon_with_mentions(count: u64) -> (Platform, Mentions) {
    let server = Platform::start().await;
    server.on(
        "/api/v1/accounts/verify_credentials",
        vec![json_file("mastodon/verify_credentials.json")],
    );
    let mentions = Mentions::serve(&server, count);
    (server, mentions)
}

fn query_of(seen: &Seen) -> HashMap<String, String> {
    reqwest::Url::parse(&format!("http://query/?{}", seen.query))
        .unwrap()
        .query_pairs()
        .map(|(key, value)| (key.into_owned(), value.into_owned()))
        .collect()
}

/// Every stored interaction's external id, with how many times it is stored.
pub async fn stored_ids(app: &TestApp) -> BTreeMap<String, usize> {
    let mut ids = BTreeMap::new();
    for row in entity::interaction::Entity::find()
        .all(&app.app.db)
        .await
        .unwrap()
    {
        *ids.entry(row.external_id.unwrap_or_default()).or_insert(0) += 1;
    }
    ids
}

/// Mentions `range`'s status ids, each once.
fn expected(range: std::ops::Range<u64>) -> BTreeMap<String, usize> {
    range.map(|n| (status_id(n), 1)).collect()
}

async fn interaction(app: &TestApp, external_id: &str) -> entity::interaction::Model {
    entity::interaction::Entity::find()
        .filter(entity::interaction::Column::ExternalId.eq(external_id))
        .one(&app.app.db)
        .await
        .unwrap()
        .unwrap_or_else(|| panic!("{external_id} is stored"))
}

pub async fn source_row(app: &TestApp, id: &str) -> entity::source::Model {
    let id = rapport::ids::decode::<entity::SourceId>("id", id).unwrap();
    entity::source::Entity::find_by_id(id)
        .one(&app.app.db)
        .await
        .unwrap()
        .unwrap()
}

/// Syncs the source the way the scheduler does (no request budget around it) until a
/// sync ends before its last allowed batch, the source having said there is no more;
/// returns the new items and the batches.
pub async fn sync_until_done(app: &TestApp, id: &str) -> (usize, usize) {
    let syncer = rapport::ingest::sync::Syncer::new(&app.app);
    let (mut new, mut batches) = (0, 0);
    for _ in 0..20 {
        let claimed = syncer.claim(&source_row(app, id).await).await.unwrap();
        let report = syncer.run(claimed, &|| false).await.unwrap();
        assert_eq!(report.error, None, "{report:?}");
        new += report.new;
        batches += report.batches;
        if report.batches < syncer.config.max_batches {
            return (new, batches);
        }
    }
    panic!("the source never said it was done");
}

backend_test!(
    async fn a_first_sync_walks_ten_thousand_earlier_mentions_then_polls_forward(app: TestApp) {
        let key = app.key(Role::Admin).await;
        let (server, mentions) = mastodon_with_mentions(10_000).await;
        let id = create_source(
            &app,
            &key,
            "MASTODON",
            "backfill",
            json!({ "base_url": server.base, "access_token": TOKEN }),
        )
        .await;

        let started = std::time::Instant::now();
        let (new, batches) = sync_until_done(&app, &id).await;
        eprintln!(
            "{:?}: 10,000 earlier mentions in {:.2?} ({batches} batches)",
            app.backend,
            started.elapsed()
        );
        assert_eq!(new, 10_000);
        // Batches of several pages each: far fewer batches than the 125 pages.
        assert!(batches <= 20, "{batches} batches");
        assert_eq!(stored_ids(&app).await, expected(0..10_000));

        // Each with its author: a thousand fans, one identity and one customer each.
        let identities = entity::identity::Entity::find()
            .all(&app.app.db)
            .await
            .unwrap();
        assert_eq!(identities.len(), 1_000);
        assert_eq!(
            entity::customer::Entity::find()
                .all(&app.app.db)
                .await
                .unwrap()
                .len(),
            1_000
        );
        let sample = interaction(&app, &status_id(4_321)).await;
        let author = identities
            .iter()
            .find(|identity| Some(identity.id) == sample.identity_id)
            .unwrap();
        assert_eq!(author.platform_id, "https://fans6.example/users/fan321");
        assert_eq!(author.handle.as_deref(), Some("@fan321@fans6.example"));
        assert_eq!(sample.customer_id, author.customer_id);
        assert_eq!(sample.text, "@acmehq question number 4321 about the export");
        // Oldest first: a reply found the mention it answers, stored in an earlier batch.
        let reply = interaction(&app, &status_id(9_999)).await;
        let answered = interaction(&app, &status_id(8_999)).await;
        assert!(reply.conversation_id.is_some());
        assert_eq!(reply.conversation_id, answered.conversation_id);

        // The walk as Mastodon pages: a look at the newest page, then min_id from before
        // the first notification forward, 80 at a time, each from the last Link prev.
        let seen = server.seen("/api/v1/notifications");
        let first = query_of(&seen[0]);
        assert!(
            !first.contains_key("min_id") && !first.contains_key("max_id"),
            "{first:?}"
        );
        assert_eq!(query_of(&seen[1])["min_id"], "0");
        assert!(seen.iter().all(|s| query_of(s)["limit"] == "80"));
        assert_eq!(
            query_of(&seen[2])["min_id"],
            notification_id(79).to_string()
        );
        assert!(seen.len() <= 128, "{} requests", seen.len());

        // Nothing more: the next sync asks after the newest and stores nothing.
        let report = sync(&app, &key, &id).await;
        assert_eq!(report["newItems"], 0, "{report:#}");
        let seen = server.seen("/api/v1/notifications");
        assert_eq!(
            query_of(seen.last().unwrap())["min_id"],
            notification_id(9_999).to_string()
        );
        // New mentions are picked up.
        mentions.add(10_000..10_030);
        let (new, _) = sync_until_done(&app, &id).await;
        assert_eq!(new, 30);
        assert_eq!(stored_ids(&app).await, expected(0..10_030));
    }
);

backend_test!(
    async fn a_backfill_stopped_or_killed_between_batches_resumes_without_loss_or_duplicates(
        app: TestApp,
    ) {
        // `rapport sync` works in the default workspace.
        let key = app.key_in("default", Role::Admin).await;
        let (server, mentions) = mastodon_with_mentions(3_000).await;
        let id = create_source(
            &app,
            &key,
            "MASTODON",
            "resumed",
            json!({ "base_url": server.base, "access_token": TOKEN }),
        )
        .await;
        let cursor = || async {
            let row = source_row(&app, &id).await;
            serde_json::from_str::<Value>(&row.cursor.unwrap()).unwrap()
        };
        // `rapport sync` allowed one batch: the oldest 960 (twelve pages) and a cursor
        // after them.
        let one_batch = config_file(&app, "max_batches = 1\nlease_secs = 1\n");
        let output = rapport(&one_batch).args(["sync", &id]).output().unwrap();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        assert_eq!(String::from_utf8_lossy(&output.stdout).trim(), "960");
        assert_eq!(stored_ids(&app).await, expected(0..960));
        let after_one = cursor().await;
        assert_eq!(after_one["notifications"], notification_id(959).to_string());

        // The next run dies after its pull: nothing of it is stored, the cursor stays.
        let output = rapport(&one_batch)
            .args(["sync", &id])
            .env("RAPPORT_FAILPOINT", "sync.after_pull")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success());
        assert!(
            stderr.contains("failpoint sync.after_pull: aborting"),
            "{stderr}"
        );
        assert_eq!(stored_ids(&app).await, expected(0..960));
        assert_eq!(cursor().await, after_one);

        // Mentions keep arriving meanwhile. Once the dead run's lease is over, a run goes
        // on from the cursor: the next 960, then the rest and the new ones, each once.
        mentions.add(3_000..3_005);
        tokio::time::sleep(std::time::Duration::from_millis(1_100)).await;
        let output = rapport(&one_batch).args(["sync", &id]).output().unwrap();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        assert_eq!(String::from_utf8_lossy(&output.stdout).trim(), "960");
        assert_eq!(stored_ids(&app).await, expected(0..1_920));
        let resumed = server.seen("/api/v1/notifications");
        assert!(resumed
            .iter()
            .any(|seen| query_of(seen).get("min_id") == Some(&notification_id(959).to_string())));
        let (new, _) = sync_until_done(&app, &id).await;
        assert_eq!(new, 3_005 - 1_920);
        assert_eq!(stored_ids(&app).await, expected(0..3_005));
        assert_eq!(sync(&app, &key, &id).await["newItems"], 0);
    }
);

backend_test!(
    async fn a_cursor_stored_before_backfill_keeps_polling_forward(app: TestApp) {
        let key = app.key(Role::Admin).await;
        let (server, _mentions) = mastodon_with_mentions(200).await;
        let id = create_source(
            &app,
            &key,
            "MASTODON",
            "older",
            json!({ "base_url": server.base, "access_token": TOKEN }),
        )
        .await;
        // The cursor as earlier versions wrote it: our account and one min_id.
        let mut row: entity::source::ActiveModel = source_row(&app, &id).await.into();
        row.cursor = sea_orm::Set(Some(
            json!({ "me": "109000000000000001", "notifications": notification_id(149).to_string() })
                .to_string(),
        ));
        row.update(&app.app.db).await.unwrap();

        let report = sync(&app, &key, &id).await;
        assert_eq!(report["error"], Value::Null, "{report:#}");
        assert_eq!(report["newItems"], 50, "{report:#}");
        assert_eq!(stored_ids(&app).await, expected(150..200));
        let seen = server.seen("/api/v1/notifications");
        assert_eq!(
            query_of(&seen[0])["min_id"],
            notification_id(149).to_string()
        );
        // verify_credentials is not asked again: the stored account id is used.
        assert!(server
            .seen("/api/v1/accounts/verify_credentials")
            .is_empty());
    }
);

backend_test!(
    async fn a_first_look_that_spends_the_rate_limit_leaves_the_walk_to_the_next_run(app: TestApp) {
        let key = app.key(Role::Admin).await;
        let (server, mentions) = mastodon_with_mentions(200).await;
        *mentions.exhausted.lock().unwrap() = true;
        let id = create_source(
            &app,
            &key,
            "MASTODON",
            "busy",
            json!({ "base_url": server.base, "access_token": TOKEN }),
        )
        .await;
        // The newest page is full (older mentions wait) and the budget is spent: no
        // further request, and the cursor says where the walk will start.
        let report = sync(&app, &key, &id).await;
        assert_eq!(report["newItems"], 0, "{report:#}");
        assert_eq!(report["source"]["status"], "RATE_LIMITED");
        assert_eq!(server.seen("/api/v1/notifications").len(), 1);
        let cursor: Value =
            serde_json::from_str(report["source"]["cursor"].as_str().unwrap()).unwrap();
        assert_eq!(cursor["notifications"], "0");

        *mentions.exhausted.lock().unwrap() = false;
        let (new, _) = sync_until_done(&app, &id).await;
        assert_eq!(new, 200);
        assert_eq!(stored_ids(&app).await, expected(0..200));
    }
);
