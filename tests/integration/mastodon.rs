//! The Mastodon connector against a local server answering with the documented payloads
//! (notifications, tag timeline, search, verify_credentials, posting a status), headers
//! included: `Link` paging, `X-RateLimit-*`, `Idempotency-Key` on replies.

use rapport::domain::Role;
use serde_json::{json, Value};

use crate::backend_test;
use crate::common::TestApp;
use crate::feeds::{create_source, items, sync};
use crate::platform::{fixture, Platform, Reply};

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
