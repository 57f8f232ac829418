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
    // Account ids apart from our own (109000000000000001): a fan with our id would be us.
    let account = json!({
        "id": (109_000_000_000_010_000 + fan).to_string(),
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
        assert_eq!(
            query_param(query, "types[]").as_deref(),
            Some("mention"),
            "{query}"
        );
        let all = self.all.lock().unwrap();
        let (page, limit) = page_of(&all, query, 40, 80, true);
        let exhausted = *self.exhausted.lock().unwrap();
        let reset = (chrono::Utc::now() + chrono::Duration::minutes(10))
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        let reply = Reply::json(&Value::Array(page.clone()))
            .header("x-ratelimit-limit", "300")
            .header("x-ratelimit-remaining", if exhausted { "0" } else { "299" })
            .header("x-ratelimit-reset", &reset);
        with_links(
            reply,
            &format!("{}/api/v1/notifications", self.base),
            "&types%5B%5D=mention",
            limit,
            &page,
        )
    }
}

/// The value of `name` in a request's query.
fn query_param(query: &str, name: &str) -> Option<String> {
    reqwest::Url::parse(&format!("http://query/?{query}"))
        .unwrap()
        .query_pairs()
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.into_owned())
}

/// The page Mastodon serves from `all` (oldest first, decimal ids) for `query`, newest
/// first, and its `limit` (`default` when absent, at most `cap`): `max_id`, `since_id` and
/// `min_id` bound it by id; `min_id` takes the entries immediately newer when `immediately`
/// (notifications, timelines: it pages forward), else it is only a lower bound and the
/// newest in range are served, as Mastodon's search does with it; `offset` skips.
fn page_of(
    all: &[Value],
    query: &str,
    default: usize,
    cap: usize,
    immediately: bool,
) -> (Vec<Value>, usize) {
    let id = |name: &str| query_param(query, name).map(|value| value.parse::<u64>().unwrap());
    let limit =
        query_param(query, "limit").map_or(default, |l| l.parse::<usize>().unwrap().clamp(1, cap));
    let offset = query_param(query, "offset").map_or(0, |o| o.parse::<usize>().unwrap());
    let (max_id, since_id, min_id) = (id("max_id"), id("since_id"), id("min_id"));
    let in_range = all.iter().filter(|entry| {
        let n: u64 = entry["id"].as_str().unwrap().parse().unwrap();
        max_id.is_none_or(|max| n < max)
            && since_id.is_none_or(|since| n > since)
            && min_id.is_none_or(|min| n > min)
    });
    let mut page: Vec<Value> = if min_id.is_some() && immediately {
        in_range.skip(offset).take(limit).cloned().collect()
    } else {
        in_range.rev().skip(offset).take(limit).cloned().collect()
    };
    page.sort_by_key(|entry| {
        std::cmp::Reverse(entry["id"].as_str().unwrap().parse::<u64>().unwrap())
    });
    (page, limit)
}

/// `reply` with the `Link` header Mastodon sends with a page of `url`: the next (older)
/// page below its oldest id, the previous (newer) one above its newest; none when empty.
fn with_links(reply: Reply, url: &str, extra: &str, limit: usize, page: &[Value]) -> Reply {
    let (Some(newest), Some(oldest)) = (page.first(), page.last()) else {
        return reply;
    };
    let link = |bound: &str, id: &Value| {
        format!(
            "{url}?limit={limit}&{bound}={}{extra}",
            id.as_str().unwrap()
        )
    };
    reply.header(
        "link",
        &format!(
            "<{}>; rel=\"next\", <{}>; rel=\"prev\"",
            link("max_id", &oldest["id"]),
            link("min_id", &newest["id"])
        ),
    )
}

/// A status `n` as the API documents it (mention `n`'s status, without the notification).
fn post(n: u64) -> Value {
    mention(n)["status"].clone()
}

/// Statuses served as a hashtag timeline (`GET /api/v1/timelines/tag/:hashtag`: limit 20,
/// at most 40, `min_id` paging forward, `Link` headers) or as a statuses search
/// (`GET /api/v2/search?type=statuses`: limit 20, at most 40, `max_id`, `min_id` as a
/// lower bound only, `offset`; no `Link` header, an object with `statuses`).
#[derive(Clone)]
struct Statuses {
    all: Arc<Mutex<Vec<Value>>>,
    /// Statuses a search leaves out of its page after limiting it, as Mastodon does with
    /// those of accounts the caller mutes or blocks and those deleted but still indexed.
    hidden: Arc<Mutex<Vec<u64>>>,
}

impl Statuses {
    /// Statuses `range` on the tag timeline of `tag`.
    fn tag(server: &Platform, tag: &str, range: std::ops::Range<u64>) -> Statuses {
        let statuses = Statuses::new(range);
        let serving = statuses.clone();
        let url = server.url(&format!("/api/v1/timelines/tag/{tag}"));
        server.handle(&format!("/api/v1/timelines/tag/{tag}"), move |seen| {
            let all = serving.all.lock().unwrap();
            let (page, limit) = page_of(&all, &seen.query, 20, 40, true);
            with_links(
                Reply::json(&Value::Array(page.clone())),
                &url,
                "",
                limit,
                &page,
            )
        });
        statuses
    }

    /// Statuses `range` found by searching for `keyword`.
    fn search(server: &Platform, keyword: &str, range: std::ops::Range<u64>) -> Statuses {
        let statuses = Statuses::new(range);
        let serving = statuses.clone();
        let keyword = keyword.to_owned();
        server.handle("/api/v2/search", move |seen| {
            assert_eq!(
                query_param(&seen.query, "q"),
                Some(keyword.clone()),
                "{}",
                seen.query
            );
            assert_eq!(
                query_param(&seen.query, "type").as_deref(),
                Some("statuses")
            );
            let all = serving.all.lock().unwrap();
            let (mut page, _) = page_of(&all, &seen.query, 20, 40, false);
            let hidden = serving.hidden.lock().unwrap();
            page.retain(|status| !hidden.iter().any(|n| status["id"] == status_id(*n)));
            Reply::json(&json!({ "accounts": [], "statuses": page, "hashtags": [] }))
        });
        statuses
    }

    fn new(range: std::ops::Range<u64>) -> Statuses {
        let statuses = Statuses {
            all: Arc::new(Mutex::new(Vec::new())),
            hidden: Arc::new(Mutex::new(Vec::new())),
        };
        statuses.add(range);
        statuses
    }

    /// New statuses are posted.
    fn add(&self, range: std::ops::Range<u64>) {
        self.all.lock().unwrap().extend(range.map(post));
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
    let (new, batches, _) = sync_counting(app, id).await;
    (new, batches)
}

/// [`sync_until_done`], checking that no sync was handed an item it had already stored.
async fn sync_each_once(app: &TestApp, id: &str) -> (usize, usize) {
    let (new, batches, duplicates) = sync_counting(app, id).await;
    assert_eq!(duplicates, 0);
    (new, batches)
}

/// [`sync_until_done`]'s syncs: new items, batches, and items seen again and dropped.
async fn sync_counting(app: &TestApp, id: &str) -> (usize, usize, usize) {
    let syncer = rapport::ingest::sync::Syncer::new(&app.app);
    let (mut new, mut batches, mut duplicates) = (0, 0, 0);
    for _ in 0..20 {
        let claimed = syncer.claim(&source_row(app, id).await).await.unwrap();
        let report = syncer.run(claimed, &|| false).await.unwrap();
        assert_eq!(report.error, None, "{report:?}");
        new += report.new;
        batches += report.batches;
        duplicates += report.duplicates;
        if report.batches < syncer.config.max_batches {
            return (new, batches, duplicates);
        }
    }
    panic!("the source never said it was done");
}

/// The stored cursor of the source `id`.
async fn cursor_of(app: &TestApp, id: &str) -> Value {
    serde_json::from_str(&source_row(app, id).await.cursor.unwrap()).unwrap()
}

/// Statuses `range`'s ids, each once.
fn expected_posts(range: std::ops::Range<u64>) -> BTreeMap<String, usize> {
    expected(range)
}

backend_test!(
    async fn a_first_sync_walks_ten_thousand_earlier_mentions_then_polls_forward(app: TestApp) {
        // Issue 11's backfill at volume: 10,000 earlier mentions, a limit that takes them all.
        let key = app.key(Role::Admin).await;
        let (server, mentions) = mastodon_with_mentions(10_000).await;
        let id = create_source(
            &app,
            &key,
            "MASTODON",
            "backfill",
            json!({ "base_url": server.base, "access_token": TOKEN, "backfill_limit": 10_000 }),
        )
        .await;

        let started = std::time::Instant::now();
        let (new, batches) = sync_each_once(&app, &id).await;
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
        assert_eq!(sample.customer_id, Some(author.customer_id));
        assert_eq!(sample.text, "@acmehq question number 4321 about the export");
        // Oldest first: a reply found the mention it answers, stored in an earlier batch,
        // down a chain of ten (9,999 answers 8,999, which answers 7,999, …).
        let reply = interaction(&app, &status_id(9_999)).await;
        let answered = interaction(&app, &status_id(8_999)).await;
        let root = interaction(&app, &status_id(999)).await;
        assert!(reply.conversation_id.is_some());
        assert_eq!(reply.conversation_id, answered.conversation_id);
        assert_eq!(reply.conversation_id, root.conversation_id);

        // The walk as Mastodon pages, 80 at a time: back from the newest page with each
        // page's Link next (`max_id`), counting, to the oldest page within the limit; then
        // forward through the pages the walk kept, none of them asked for again: the one
        // request after the walk asks for what is newer than its newest (Link prev,
        // `min_id`).
        let seen = server.seen("/api/v1/notifications");
        let first = query_of(&seen[0]);
        assert!(
            !first.contains_key("min_id") && !first.contains_key("max_id"),
            "{first:?}"
        );
        assert!(seen.iter().all(|s| query_of(s)["limit"] == "80"));
        for (n, seen) in seen[1..125].iter().enumerate() {
            let bound = notification_id(10_000 - 80 * (n as u64 + 1));
            assert_eq!(query_of(seen).get("max_id"), Some(&bound.to_string()));
        }
        assert_eq!(
            query_of(&seen[125])["min_id"],
            notification_id(9_999).to_string()
        );
        // (The 124 pages kept, some 23 MiB here, fit in what a connector keeps.)
        assert_eq!(seen.len(), 126);

        // Nothing more: the next sync asks after the newest and stores nothing.
        let report = sync(&app, &key, &id).await;
        assert_eq!(report["newItems"], 0, "{report:#}");
        let seen = server.seen("/api/v1/notifications");
        assert_eq!(
            query_of(seen.last().unwrap())["min_id"],
            notification_id(9_999).to_string()
        );
        assert_eq!(
            cursor_of(&app, &id).await["notifications"],
            json!({ "mark": notification_id(9_999).to_string() })
        );
        // New mentions are picked up.
        mentions.add(10_000..10_030);
        let (new, _) = sync_until_done(&app, &id).await;
        assert_eq!(new, 30);
        assert_eq!(stored_ids(&app).await, expected(0..10_030));
    }
);

backend_test!(
    async fn a_first_sync_takes_up_to_backfill_limit_per_stream_then_only_new_items(app: TestApp) {
        let key = app.key(Role::Admin).await;
        let (server, mentions) = mastodon_with_mentions(250).await;
        let tagged = Statuses::tag(&server, "rapportcrm", 20_000..20_250);
        let found = Statuses::search(&server, "rapport crm", 30_000..30_250);
        let id = create_source(
            &app,
            &key,
            "MASTODON",
            "limited",
            json!({ "base_url": server.base, "access_token": TOKEN, "hashtags": ["rapportcrm"],
                "keywords": ["rapport crm"], "backfill_limit": 100 }),
        )
        .await;

        // Each stream: its newest hundred.
        let report = sync(&app, &key, &id).await;
        assert_eq!(report["error"], Value::Null, "{report:#}");
        assert_eq!(report["newItems"], 300, "{report:#}");
        let mut want = expected(150..250);
        want.extend(expected_posts(20_150..20_250));
        want.extend(expected_posts(30_150..30_250));
        assert_eq!(stored_ids(&app).await, want);
        // Mentions: a page counted, then the oldest page within the limit, whose newest 20
        // are taken, then forward from its newest through the counted page, which the walk
        // kept, to the newest (a full page: one more look, after it).
        let seen = server.seen("/api/v1/notifications");
        assert_eq!(seen.len(), 3);
        assert_eq!(
            query_of(&seen[1])["max_id"],
            notification_id(170).to_string()
        );
        assert_eq!(
            query_of(&seen[2])["min_id"],
            notification_id(249).to_string()
        );
        // The tag timeline the same way, 40 a page: three pages back (the third holds the
        // limit's last 20), then forward through the two counted ones, kept, and one more
        // look.
        let seen = server.seen("/api/v1/timelines/tag/rapportcrm");
        assert_eq!(seen.len(), 4, "{seen:?}");
        assert!(seen.iter().all(|s| query_of(s)["limit"] == "40"));
        assert_eq!(query_of(&seen[2])["max_id"], status_id(20_170));
        assert_eq!(query_of(&seen[3])["min_id"], status_id(20_249));
        // The search back from the newest, taking as it goes, the last page no more than
        // the limit leaves.
        let seen = server.seen("/api/v2/search");
        assert_eq!(seen.len(), 3, "{seen:?}");
        assert_eq!(query_of(&seen[1])["max_id"], status_id(30_210));
        assert_eq!(query_of(&seen[2])["limit"], "20");
        let cursor = cursor_of(&app, &id).await;
        assert_eq!(
            cursor["notifications"],
            json!({ "mark": notification_id(249).to_string() })
        );
        assert_eq!(
            cursor["tags"]["rapportcrm"],
            json!({ "mark": status_id(20_249) })
        );
        assert_eq!(
            cursor["search"]["rapport crm"],
            json!({ "mark": status_id(30_249) })
        );

        // Later: only what is new, more than a page of each, oldest first.
        mentions.add(250..350);
        tagged.add(20_250..20_350);
        found.add(30_250..30_350);
        let report = sync(&app, &key, &id).await;
        assert_eq!(report["newItems"], 300, "{report:#}");
        want.extend(expected(250..350));
        want.extend(expected_posts(20_250..20_350));
        want.extend(expected_posts(30_250..30_350));
        assert_eq!(stored_ids(&app).await, want);
        // The search walked back from the newest down to what it had.
        let seen = server.seen("/api/v2/search");
        assert_eq!(query_of(&seen[3]).get("max_id"), None);
        assert_eq!(query_of(&seen[5])["max_id"], status_id(30_270));
        assert_eq!(seen.len(), 6);
        assert_eq!(sync(&app, &key, &id).await["newItems"], 0);

        // A limit of 0: the first sync only notes where each stream is.
        let (server, mentions) = mastodon_with_mentions(50).await;
        let tagged = Statuses::tag(&server, "rapportcrm", 20_000..20_050);
        let found = Statuses::search(&server, "rapport crm", 30_000..30_050);
        let id = create_source(
            &app,
            &key,
            "MASTODON",
            "new only",
            json!({ "base_url": server.base, "access_token": TOKEN, "hashtags": ["rapportcrm"],
                "keywords": ["rapport crm"], "backfill_limit": 0 }),
        )
        .await;
        let before = stored_ids(&app).await.len();
        assert_eq!(sync(&app, &key, &id).await["newItems"], 0);
        assert_eq!(
            query_of(&server.seen("/api/v1/notifications")[0])["limit"],
            "1"
        );
        mentions.add(50..53);
        tagged.add(20_050..20_052);
        found.add(30_050..30_051);
        assert_eq!(sync(&app, &key, &id).await["newItems"], 6);
        assert_eq!(stored_ids(&app).await.len(), before + 6);

        // No limit set: a thousand a stream.
        let (server, _) = mastodon_with_mentions(1_200).await;
        let id = create_source(
            &app,
            &key,
            "MASTODON",
            "default",
            json!({ "base_url": server.base, "access_token": TOKEN }),
        )
        .await;
        let (new, _) = sync_until_done(&app, &id).await;
        assert_eq!(new, 1_000);
        let source = source_row(&app, &id).await;
        let mut taken: Vec<String> = entity::interaction::Entity::find()
            .filter(entity::interaction::Column::SourceId.eq(source.id))
            .all(&app.app.db)
            .await
            .unwrap()
            .into_iter()
            .filter_map(|row| row.external_id)
            .collect();
        taken.sort();
        assert_eq!(taken, (200..1_200).map(status_id).collect::<Vec<_>>());
    }
);

backend_test!(
    async fn a_search_page_shortened_by_what_the_account_mutes_does_not_end_the_walk(app: TestApp) {
        let key = app.key(Role::Admin).await;
        let (server, _mentions) = mastodon_with_mentions(0).await;
        let found = Statuses::search(&server, "rapport crm", 30_000..30_100);
        // Five of the second page's forty are an account's the caller muted.
        *found.hidden.lock().unwrap() = (30_040..30_045).collect();
        let id = create_source(
            &app,
            &key,
            "MASTODON",
            "muting",
            json!({ "base_url": server.base, "access_token": TOKEN, "keywords": ["rapport crm"] }),
        )
        .await;
        let report = sync(&app, &key, &id).await;
        assert_eq!(report["error"], Value::Null, "{report:#}");
        // Every match but the muted five, from behind the short page too.
        assert_eq!(report["newItems"], 95, "{report:#}");
        let mut want = expected_posts(30_000..30_040);
        want.extend(expected_posts(30_045..30_100));
        assert_eq!(stored_ids(&app).await, want);
        // Forty, thirty-five, the last twenty, then an empty page ends it.
        let seen = server.seen("/api/v2/search");
        assert_eq!(seen.len(), 4, "{seen:?}");
        assert_eq!(query_of(&seen[1])["max_id"], status_id(30_060));
        assert_eq!(query_of(&seen[2])["max_id"], status_id(30_020));
        assert_eq!(query_of(&seen[3])["max_id"], status_id(30_000));
        assert_eq!(
            cursor_of(&app, &id).await["search"]["rapport crm"],
            json!({ "mark": status_id(30_099) })
        );
        // Later: the newest page reaches the mark, one request.
        found.add(30_100..30_103);
        assert_eq!(sync(&app, &key, &id).await["newItems"], 3);
        assert_eq!(server.seen("/api/v2/search").len(), 5);
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
            json!({ "base_url": server.base, "access_token": TOKEN, "backfill_limit": 2_500 }),
        )
        .await;
        // A first run stops after one page of its walk back (the rate limit is spent): the
        // cursor says where the walk goes on, nothing is stored.
        *mentions.exhausted.lock().unwrap() = true;
        let report = sync(&app, &key, &id).await;
        assert_eq!(report["newItems"], 0, "{report:#}");
        assert_eq!(report["source"]["status"], "RATE_LIMITED");
        let walking = cursor_of(&app, &id).await;
        assert_eq!(
            walking["notifications"],
            json!({ "walk": { "cursor": notification_id(2_920).to_string(),
                "top": notification_id(2_999).to_string(), "left": 2_420 } })
        );
        *mentions.exhausted.lock().unwrap() = false;

        // A run dies after its pull, mid-walk: nothing of it is stored, the cursor stays.
        let one_batch = config_file(&app, "max_batches = 1\nlease_secs = 1\n");
        let killed = || {
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
        };
        killed();
        assert_eq!(stored_ids(&app).await, BTreeMap::new());
        assert_eq!(cursor_of(&app, &id).await, walking);

        // Once the dead run's lease is over, a run goes on from the stored walk: to the
        // oldest page within the limit (its newest 20 taken), then forward; one batch.
        tokio::time::sleep(std::time::Duration::from_millis(1_100)).await;
        let output = rapport(&one_batch).args(["sync", &id]).output().unwrap();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        assert_eq!(String::from_utf8_lossy(&output.stdout).trim(), "980");
        assert_eq!(stored_ids(&app).await, expected(500..1_480));
        let after_one = cursor_of(&app, &id).await;
        assert_eq!(
            after_one["notifications"],
            json!({ "mark": notification_id(1_479).to_string() })
        );
        // Both runs after the first asked from the stored walk's cursor.
        let from_walk: Vec<Seen> = server
            .seen("/api/v1/notifications")
            .into_iter()
            .filter(|seen| {
                query_of(seen).get("max_id") == Some(&notification_id(2_920).to_string())
            })
            .collect();
        assert_eq!(from_walk.len(), 2);
        // No run so far asked for a page forward: that run's forward read took the pages its
        // walk kept.
        assert!(server
            .seen("/api/v1/notifications")
            .iter()
            .all(|seen| !query_of(seen).contains_key("min_id")));

        // The next run dies after its pull, going forward: the same.
        killed();
        assert_eq!(stored_ids(&app).await, expected(500..1_480));
        assert_eq!(cursor_of(&app, &id).await, after_one);

        // Mentions keep arriving meanwhile. Later runs go on from the cursor: the rest and
        // the new ones, each once.
        mentions.add(3_000..3_005);
        tokio::time::sleep(std::time::Duration::from_millis(1_100)).await;
        let (new, _) = sync_each_once(&app, &id).await;
        assert_eq!(new, 3_005 - 1_480);
        assert_eq!(stored_ids(&app).await, expected(500..3_005));
        assert!(server
            .seen("/api/v1/notifications")
            .iter()
            .any(|seen| query_of(seen).get("min_id") == Some(&notification_id(1_479).to_string())));
        assert_eq!(sync(&app, &key, &id).await["newItems"], 0);
    }
);

backend_test!(
    async fn a_walk_resumed_by_a_later_run_asks_again_only_for_the_pages_it_did_not_walk(
        app: TestApp,
    ) {
        let key = app.key(Role::Admin).await;
        let (server, mentions) = mastodon_with_mentions(400).await;
        let id = create_source(
            &app,
            &key,
            "MASTODON",
            "resumed walk",
            json!({ "base_url": server.base, "access_token": TOKEN, "backfill_limit": 300 }),
        )
        .await;
        // A first run counts the newest page and stops there: the rate limit is spent.
        *mentions.exhausted.lock().unwrap() = true;
        let report = sync(&app, &key, &id).await;
        assert_eq!(report["newItems"], 0, "{report:#}");
        assert_eq!(
            cursor_of(&app, &id).await["notifications"]["walk"]["cursor"],
            notification_id(320).to_string()
        );
        *mentions.exhausted.lock().unwrap() = false;

        // The next run walks on: two pages counted (kept), the third the oldest within the
        // limit (its newest 60 taken); forward through the two kept pages from memory, then
        // the page the first run counted, which this run does not have, asked for again.
        let (new, _) = sync_each_once(&app, &id).await;
        assert_eq!(new, 300);
        assert_eq!(stored_ids(&app).await, expected(100..400));
        let seen: Vec<HashMap<String, String>> = server
            .seen("/api/v1/notifications")
            .iter()
            .map(query_of)
            .collect();
        let bounds: Vec<(&str, String)> = seen[1..]
            .iter()
            .map(|query| match (query.get("max_id"), query.get("min_id")) {
                (Some(max), None) => ("max_id", max.clone()),
                (None, Some(min)) => ("min_id", min.clone()),
                other => panic!("{other:?}"),
            })
            .collect();
        let id_of = |n: u64| notification_id(n).to_string();
        assert_eq!(
            bounds,
            vec![
                ("max_id", id_of(320)),
                ("max_id", id_of(240)),
                ("max_id", id_of(160)),
                ("min_id", id_of(319)),
                ("min_id", id_of(399)),
            ]
        );
    }
);

backend_test!(
    async fn a_server_whose_max_id_includes_the_id_given_has_its_pages_asked_for_forward(
        app: TestApp,
    ) {
        // Its pages back overlap by one: the pages the walk kept overlap the page handed
        // over, so the forward read asks the server, as without them (taking a kept page
        // would hand its oldest over again).
        let key = app.key(Role::Admin).await;
        let server = Platform::start().await;
        server.on(
            "/api/v1/accounts/verify_credentials",
            vec![json_file("mastodon/verify_credentials.json")],
        );
        let all: Vec<Value> = (0..300).map(mention).collect();
        let url = format!("{}/api/v1/notifications", server.base);
        server.handle("/api/v1/notifications", move |seen| {
            let query = match query_param(&seen.query, "max_id") {
                Some(max) => seen.query.replace(
                    &format!("max_id={max}"),
                    &format!("max_id={}", max.parse::<u64>().unwrap() + 1),
                ),
                None => seen.query.clone(),
            };
            let (page, limit) = page_of(&all, &query, 40, 80, true);
            let reply = Reply::json(&Value::Array(page.clone()));
            with_links(reply, &url, "&types%5B%5D=mention", limit, &page)
        });
        let id = create_source(
            &app,
            &key,
            "MASTODON",
            "inclusive",
            json!({ "base_url": server.base, "access_token": TOKEN, "backfill_limit": 200 }),
        )
        .await;
        let report = sync(&app, &key, &id).await;
        assert_eq!(report["error"], Value::Null, "{report:#}");
        // The walk counted 220..=299, 141..=220, then took the newest 40 of 62..=141.
        assert_eq!(stored_ids(&app).await, expected(102..300));
        let bounds: Vec<(Option<String>, Option<String>)> = server
            .seen("/api/v1/notifications")
            .iter()
            .map(|seen| {
                let query = query_of(seen);
                (query.get("max_id").cloned(), query.get("min_id").cloned())
            })
            .collect();
        let id_of = |n: u64| Some(notification_id(n).to_string());
        assert_eq!(
            bounds,
            vec![
                (None, None),
                (id_of(220), None),
                (id_of(141), None),
                (None, id_of(141)),
                (None, id_of(221)),
                (None, id_of(299)),
            ]
        );
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
    async fn every_stream_of_a_cursor_stored_before_backfill_goes_on_without_backfilling(
        app: TestApp,
    ) {
        let key = app.key(Role::Admin).await;
        let (server, _mentions) = mastodon_with_mentions(300).await;
        let _tagged = Statuses::tag(&server, "rapportcrm", 20_000..20_300);
        let _found = Statuses::search(&server, "rapport crm", 30_000..30_300);
        let id = create_source(
            &app,
            &key,
            "MASTODON",
            "syncing",
            json!({ "base_url": server.base, "access_token": TOKEN, "hashtags": ["rapportcrm"],
                "keywords": ["rapport crm"] }),
        )
        .await;
        // Today's format, a source well past its first sync: a bare min_id per stream.
        let mut row: entity::source::ActiveModel = source_row(&app, &id).await.into();
        row.cursor = sea_orm::Set(Some(
            json!({ "me": "109000000000000001", "notifications": notification_id(289).to_string(),
                "tags": { "rapportcrm": status_id(20_250) },
                "search": { "rapport crm": status_id(30_280) } })
            .to_string(),
        ));
        row.update(&app.app.db).await.unwrap();

        // Only what came after each: no walk back through the thousand before.
        let report = sync(&app, &key, &id).await;
        assert_eq!(report["error"], Value::Null, "{report:#}");
        let mut want = expected(290..300);
        want.extend(expected_posts(20_251..20_300));
        want.extend(expected_posts(30_281..30_300));
        assert_eq!(stored_ids(&app).await, want);
        assert_eq!(report["newItems"], 10 + 49 + 19, "{report:#}");
        for path in ["/api/v1/notifications", "/api/v1/timelines/tag/rapportcrm"] {
            let seen = server.seen(path);
            assert!(
                seen.iter().all(|s| !query_of(s).contains_key("max_id")),
                "{path}"
            );
        }
        assert_eq!(
            query_of(&server.seen("/api/v1/timelines/tag/rapportcrm")[0])["min_id"],
            status_id(20_250)
        );
        // Stored again in the new form, at the newest of each.
        let cursor = cursor_of(&app, &id).await;
        assert_eq!(cursor["me"], "109000000000000001");
        assert_eq!(
            cursor["notifications"],
            json!({ "mark": notification_id(299).to_string() })
        );
        assert_eq!(
            cursor["tags"]["rapportcrm"],
            json!({ "mark": status_id(20_299) })
        );
        assert_eq!(
            cursor["search"]["rapport crm"],
            json!({ "mark": status_id(30_299) })
        );
        assert_eq!(sync(&app, &key, &id).await["newItems"], 0);
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
        // further request, and the cursor says where the walk will go on.
        let report = sync(&app, &key, &id).await;
        assert_eq!(report["newItems"], 0, "{report:#}");
        assert_eq!(report["source"]["status"], "RATE_LIMITED");
        assert_eq!(server.seen("/api/v1/notifications").len(), 1);
        let cursor: Value =
            serde_json::from_str(report["source"]["cursor"].as_str().unwrap()).unwrap();
        assert_eq!(
            cursor["notifications"],
            json!({ "walk": { "cursor": notification_id(120).to_string(),
                "top": notification_id(199).to_string(), "left": 920 } })
        );

        *mentions.exhausted.lock().unwrap() = false;
        let (new, _) = sync_until_done(&app, &id).await;
        assert_eq!(new, 200);
        assert_eq!(stored_ids(&app).await, expected(0..200));
        // The walk went on from where it was.
        assert_eq!(
            query_of(&server.seen("/api/v1/notifications")[1])["max_id"],
            notification_id(120).to_string()
        );
    }
);

backend_test!(
    async fn a_rate_limit_met_mid_pull_keeps_what_the_pull_has(app: TestApp) {
        let key = app.key(Role::Admin).await;
        let (server, _mentions) = mastodon_with_mentions(30).await;
        server.on(
            "/api/v1/timelines/tag/rapportcrm",
            vec![Reply::status(429).header("retry-after", "900")],
        );
        let found = Statuses::search(&server, "rapport crm", 30_000..30_010);
        let id = create_source(
            &app,
            &key,
            "MASTODON",
            "throttled midway",
            json!({ "base_url": server.base, "access_token": TOKEN, "hashtags": ["rapportcrm"],
                "keywords": ["rapport crm"] }),
        )
        .await;
        // The mentions are stored; the tag timeline's 429 stops the pull before the search.
        let report = sync(&app, &key, &id).await;
        assert_eq!(report["error"], Value::Null, "{report:#}");
        assert_eq!(report["newItems"], 30, "{report:#}");
        assert_eq!(report["source"]["status"], "RATE_LIMITED");
        assert!(server.seen("/api/v2/search").is_empty());
        let next: chrono::DateTime<chrono::Utc> = report["source"]["nextRunAt"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!(
            next >= chrono::Utc::now() + chrono::Duration::seconds(800),
            "{next}"
        );
        let cursor = cursor_of(&app, &id).await;
        assert_eq!(
            cursor["notifications"],
            json!({ "mark": notification_id(29).to_string() })
        );
        // The streams not read are still to be synced for the first time.
        assert_eq!(cursor["tags"]["rapportcrm"]["walk"]["left"], 1_000);
        assert_eq!(cursor["search"]["rapport crm"]["walk"]["left"], 1_000);
        drop(found);
    }
);
