//! Pull sources end to end, through GraphQL: RSS 0.91/1.0/2.0, Atom and JSON Feed fixtures
//! served by a local platform with ETags; exactly-once on repeated pulls and cursor
//! resets; faults (429, 500, timeouts, HTML, a 50 MB body, bad bytes) as source states.

use std::collections::HashMap;
use std::time::Duration;

use rapport::domain::Role;
use serde_json::{json, Value};

use crate::backend_test;
use crate::common::{Backend, TestApp};
use crate::platform::{fixture, Platform, Reply};

pub const CREATE: &str = "mutation($input: CreateSourceInput!) { createSource(input: $input) { source { id channel status config secretsSet } } }";
pub const SYNC: &str = "mutation($id: ID!) { syncSource(input: { id: $id }) { newItems duplicates batches error source { status lastError cursor itemsIngested nextRunAt lastRunAt } } }";
const ITEMS: &str = "{ interactions(first: 100) { totalCount edges { node { externalId subject text url kind direction language sentiment channel customer { id displayName contactPoints { kind value } } identity { platformId displayName } conversation { id } } } } }";

pub async fn create_source(
    app: &TestApp,
    key: &str,
    channel: &str,
    name: &str,
    config: Value,
) -> String {
    let input = json!({ "channel": channel, "name": name, "config": config });
    app.gql(key, CREATE, json!({ "input": input })).await["createSource"]["source"]["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

pub async fn sync(app: &TestApp, key: &str, id: &str) -> Value {
    app.gql(key, SYNC, json!({ "id": id })).await["syncSource"].clone()
}

/// Resets every source's cursor, so the next sync reads everything again.
pub async fn forget_cursors(app: &TestApp) {
    use sea_orm::{ConnectionTrait, Statement};
    app.app
        .db
        .execute(Statement::from_string(
            app.app.db.get_database_backend(),
            "UPDATE source SET cursor = NULL",
        ))
        .await
        .unwrap();
}

/// Every interaction by external id.
pub async fn items(app: &TestApp, key: &str) -> HashMap<String, Value> {
    let data = app.gql(key, ITEMS, json!({})).await;
    data["interactions"]["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|edge| {
            let node = edge["node"].clone();
            (
                node["externalId"].as_str().unwrap_or_default().to_owned(),
                node,
            )
        })
        .collect()
}

async fn feed_platform() -> Platform {
    let platform = Platform::start().await;
    let xml = |name: &str, etag: &str| {
        vec![Reply::ok(
            "application/rss+xml; charset=utf-8",
            fixture(&format!("feeds/{name}")),
        )
        .etag(etag)]
    };
    platform.on("/rss2.xml", xml("rss2.xml", "\"rss2-v1\""));
    platform.on("/rss091.xml", xml("rss091.xml", "\"rss091-v1\""));
    platform.on("/rss1.rdf", xml("rss1.rdf", "\"rss1-v1\""));
    platform.on("/atom.xml", xml("atom.xml", "\"atom-v1\""));
    platform.on("/latin1.xml", xml("latin1.xml", "\"latin1-v1\""));
    platform.on("/broken.xml", xml("broken-utf8.xml", "\"broken-v1\""));
    let page_one = String::from_utf8(fixture("feeds/feed.json"))
        .unwrap()
        .replace("NEXT_URL", &platform.url("/feed-2.json"));
    platform.on(
        "/feed.json",
        vec![Reply::ok("application/feed+json", page_one)
            .header("last-modified", "Sun, 22 Nov 2026 14:00:00 GMT")],
    );
    platform.on(
        "/feed-2.json",
        vec![Reply::ok(
            "application/feed+json",
            fixture("feeds/feed-2.json"),
        )],
    );
    platform
}

backend_test!(
    async fn every_feed_format_lands_once_with_authors_and_threads(app: TestApp) {
        let key = app.key(Role::Admin).await;
        let platform = feed_platform().await;
        let mut sources = Vec::new();
        for (name, path, expected) in [
            ("RSS 2.0", "/rss2.xml", 3),
            ("RSS 0.91", "/rss091.xml", 2),
            ("RSS 1.0", "/rss1.rdf", 2),
            ("Atom", "/atom.xml", 3),
            ("Latin-1", "/latin1.xml", 1),
            ("Bad bytes", "/broken.xml", 1),
            ("JSON Feed", "/feed.json", 3),
        ] {
            let id = create_source(
                &app,
                &key,
                "RSS",
                name,
                json!({ "url": platform.url(path) }),
            )
            .await;
            let report = sync(&app, &key, &id).await;
            assert_eq!(report["error"], Value::Null, "{name}: {report:#}");
            assert_eq!(report["newItems"], expected, "{name}: {report:#}");
            assert_eq!(report["source"]["status"], "OK");
            assert_eq!(report["source"]["itemsIngested"], expected);
            sources.push((name, path, id, expected));
        }
        let all = items(&app, &key).await;
        assert_eq!(all.len(), 15, "{:#?}", all.keys());

        // RSS 2.0: guid as id, `email (Name)` authors become an e-mail contact point.
        let post = &all["https://blog.northwind.example/2026/11/support-inbox"];
        assert_eq!(post["subject"], "Why we moved our support inbox to Rapport");
        assert_eq!(post["text"], "Three months in, our first response time halved & the team is happier.\n\nHere is what we learned.");
        assert_eq!(post["kind"], "POST");
        assert_eq!(post["channel"], "RSS");
        assert_eq!(
            post["language"], "en",
            "detected: the channel's language is only a hint"
        );
        assert_eq!(
            post["identity"]["platformId"],
            "mailto:priya@northwind.example"
        );
        assert_eq!(post["customer"]["displayName"], "Priya Natarajan");
        assert_eq!(
            post["customer"]["contactPoints"],
            json!([{ "kind": "EMAIL", "value": "priya@northwind.example" }])
        );
        assert!(all.contains_key("northwind-blog-2026-11-12-export"));
        // RSS 0.91 has no ids: a deterministic hash of link, title, date and content.
        let hashed: Vec<&String> = all.keys().filter(|id| id.starts_with("sha256:")).collect();
        assert_eq!(hashed.len(), 3, "{hashed:?}");
        // RSS 1.0 with dc:creator; accents survive.
        assert_eq!(
            all["https://planet.crm.example/2026/11/20/segments"]["customer"]["displayName"],
            "Lucía Fernández"
        );
        // Latin-1 decoded by its declaration; bad UTF-8 bytes read leniently.
        assert_eq!(
            all["cafe-1"]["text"],
            "La canción más oída en el café, ¿la conocéis?"
        );
        assert!(all["broken-1"]["text"]
            .as_str()
            .unwrap()
            .contains('\u{fffd}'));

        // Atom: thr:in-reply-to threads replies into the conversation of the first post;
        // the same author URI is one customer.
        let first = &all["tag:forum.example,2026:post-1001"];
        let reply = &all["tag:forum.example,2026:post-1002"];
        let reply_to_reply = &all["tag:forum.example,2026:post-1003"];
        assert_eq!(first["conversation"]["id"], reply["conversation"]["id"]);
        assert_eq!(
            first["conversation"]["id"],
            reply_to_reply["conversation"]["id"]
        );
        assert_eq!(first["customer"]["id"], reply_to_reply["customer"]["id"]);
        assert_ne!(first["customer"]["id"], reply["customer"]["id"]);
        assert_eq!(
            first["customer"]["contactPoints"],
            json!([{ "kind": "EMAIL", "value": "priya@northwind.example" }])
        );
        // …and Priya of the blog (same e-mail) is the same customer as Priya of the forum.
        assert_eq!(first["customer"]["id"], post["customer"]["id"]);
        assert!(first["text"].as_str().unwrap().contains("40k contacts"));

        // JSON Feed paging: both pages in one sync.
        assert!(all.contains_key("status-2026-11-10"));
        assert_eq!(platform.seen("/feed-2.json").len(), 1);

        // Sentiment and language come from the pipeline when the feed says nothing.
        let thanks = &all["tag:forum.example,2026:post-1003"];
        assert!(thanks["sentiment"].as_f64().unwrap() > 0.0, "{thanks:#}");

        // Sync again: conditional GETs answered 304, nothing new, nothing twice.
        for (name, path, id, _) in &sources {
            let report = sync(&app, &key, id).await;
            assert_eq!(report["newItems"], 0, "{name}: {report:#}");
            assert_eq!(report["error"], Value::Null);
            if *path != "/feed.json" {
                let seen = platform.seen(path);
                let last = seen.last().unwrap();
                assert!(
                    last.headers.get("if-none-match").is_some(),
                    "{name}: no If-None-Match"
                );
            }
        }
        assert_eq!(
            platform.seen("/feed.json").last().unwrap().headers["if-modified-since"],
            "Sun, 22 Nov 2026 14:00:00 GMT"
        );
        // A cursor reset (validators and position lost) re-reads everything and stores nothing twice.
        forget_cursors(&app).await;
        for (name, _, id, expected) in &sources {
            let report = sync(&app, &key, id).await;
            assert_eq!(report["newItems"], 0, "{name}");
            assert_eq!(report["duplicates"], *expected, "{name}");
        }
        let data = app
            .gql(
                &key,
                "{ interactions { totalCount } customers { totalCount } }",
                json!({}),
            )
            .await;
        assert_eq!(data["interactions"]["totalCount"], 15);
    }
);

/// A JSON Feed page of the entries numbered `entries` (newest first), with `next_url`
/// `next` when given.
fn paged(platform: &Platform, entries: &[u32], next: Option<&str>) -> Reply {
    let items: Vec<Value> = entries
        .iter()
        .map(|n| {
            json!({
                "id": format!("entry-{n}"),
                "content_text": format!("release note {n}"),
                "date_published": format!("2026-11-{:02}T10:00:00Z", n),
                "authors": [{ "name": "Release Bot", "url": "https://releases.example/bot" }]
            })
        })
        .collect();
    let mut feed = json!({
        "version": "https://jsonfeed.org/version/1.1",
        "title": "Releases",
        "items": items,
    });
    if let Some(next) = next {
        feed["next_url"] = json!(platform.url(next));
    }
    Reply::ok("application/feed+json", feed.to_string())
}

backend_test!(
    async fn a_changed_first_page_walks_back_only_to_the_pages_read_before(app: TestApp) {
        let key = app.key(Role::Admin).await;
        let platform = Platform::start().await;
        let serve = |pages: &[&[u32]]| {
            for (n, entries) in pages.iter().enumerate() {
                let path = if n == 0 {
                    "/releases.json".to_owned()
                } else {
                    format!("/releases-{}.json", n + 1)
                };
                let next = (n + 1 < pages.len()).then(|| format!("/releases-{}.json", n + 2));
                platform.on(&path, vec![paged(&platform, entries, next.as_deref())]);
            }
        };
        let fetched = |n: usize| {
            let path = if n == 1 {
                "/releases.json".to_owned()
            } else {
                format!("/releases-{n}.json")
            };
            platform.seen(&path).len()
        };
        // A first sync walks the whole archive.
        serve(&[&[5, 4], &[3, 2], &[1]]);
        let id = create_source(
            &app,
            &key,
            "RSS",
            "releases",
            json!({ "url": platform.url("/releases.json") }),
        )
        .await;
        let report = sync(&app, &key, &id).await;
        assert_eq!(report["newItems"], 5, "{report:#}");
        assert_eq!((fetched(1), fetched(2), fetched(3)), (1, 1, 1));

        // Two new entries push the pages along: the walk stops at the page that ends with
        // entry 4, the last of the first page it began with, and page 3 and the new page 4
        // are not asked for again.
        serve(&[&[7, 6], &[5, 4], &[3, 2], &[1]]);
        let report = sync(&app, &key, &id).await;
        assert_eq!(
            (report["newItems"].clone(), report["duplicates"].clone()),
            (json!(2), json!(2)),
            "{report:#}"
        );
        assert_eq!(
            (fetched(1), fetched(2), fetched(3), fetched(4)),
            (2, 2, 1, 0)
        );

        // One more: the first page still ends with entry 7, so it is the only page read.
        serve(&[&[8, 7], &[6, 5], &[4, 3], &[2, 1]]);
        let report = sync(&app, &key, &id).await;
        assert_eq!(report["newItems"], 1, "{report:#}");
        assert_eq!((fetched(1), fetched(2)), (3, 2));

        // Entry 7 pinned on top and four new ones: the first page holds an entry read
        // before, yet does not end with one, so the walk goes on to the page that does.
        serve(&[&[7, 12, 11], &[10, 9, 8], &[6, 5], &[4, 3], &[2, 1]]);
        let report = sync(&app, &key, &id).await;
        assert_eq!(
            (report["newItems"].clone(), report["duplicates"].clone()),
            (json!(4), json!(2)),
            "{report:#}"
        );
        assert_eq!((fetched(1), fetched(2), fetched(3)), (4, 3, 1));

        // A cursor reset forgets what was read: the whole archive again, nothing twice.
        forget_cursors(&app).await;
        let report = sync(&app, &key, &id).await;
        assert_eq!(
            (report["newItems"].clone(), report["duplicates"].clone()),
            (json!(0), json!(12)),
            "{report:#}"
        );
        assert_eq!((fetched(4), fetched(5)), (1, 1));
        let data = app
            .gql(&key, "{ interactions { totalCount } }", json!({}))
            .await;
        assert_eq!(data["interactions"]["totalCount"], 12);
    }
);

backend_test!(
    async fn faults_become_source_states_and_leave_other_sources_alone(app: TestApp) {
        let key = app.key(Role::Admin).await;
        let platform = feed_platform().await;
        platform.on(
            "/limited.xml",
            vec![Reply::status(429).header("retry-after", "120")],
        );
        platform.on("/error.xml", vec![Reply::status(500)]);
        platform.on(
            "/page.html",
            vec![Reply::ok(
                "text/html; charset=utf-8",
                fixture("feeds/page.html"),
            )],
        );
        platform.on(
            "/huge.xml",
            vec![Reply::ok(
                "application/rss+xml",
                vec![b' '; 50 * 1024 * 1024],
            )],
        );
        platform.on(
            "/garbage.json",
            vec![Reply::ok(
                "application/feed+json",
                "{\"version\": \"https://jsonfeed.org/version/1.1\", \"items\": [",
            )],
        );
        let before = chrono::Utc::now();
        let cases = [
            ("/limited.xml", "RATE_LIMITED", "rate-limited"),
            ("/error.xml", "BACKING_OFF", "answered 500"),
            ("/page.html", "BACKING_OFF", "not an RSS, Atom or JSON feed"),
            ("/huge.xml", "BACKING_OFF", "larger than 10 MiB"),
            (
                "/garbage.json",
                "BACKING_OFF",
                "not an RSS, Atom or JSON feed",
            ),
            ("/missing.xml", "BACKING_OFF", "answered 404"),
        ];
        for (path, status, error) in cases {
            let id = create_source(
                &app,
                &key,
                "RSS",
                path,
                json!({ "url": platform.url(path) }),
            )
            .await;
            let report = sync(&app, &key, &id).await;
            assert_eq!(report["newItems"], 0, "{path}");
            assert_eq!(report["source"]["status"], status, "{path}: {report:#}");
            let last_error = report["source"]["lastError"].as_str().unwrap();
            assert!(last_error.contains(error), "{path}: {last_error}");
            assert_eq!(report["error"], report["source"]["lastError"]);
            let next: chrono::DateTime<chrono::Utc> = report["source"]["nextRunAt"]
                .as_str()
                .unwrap()
                .parse()
                .unwrap();
            if path == "/limited.xml" {
                // Retry-After: 120 is honoured.
                assert!(next >= before + chrono::Duration::seconds(119), "{next}");
            } else {
                // Backoff: base 30 s with jitter down to half.
                assert!(
                    next >= before + chrono::Duration::seconds(14)
                        && next <= chrono::Utc::now() + chrono::Duration::seconds(31),
                    "{path}: {next}"
                );
            }
            // A second failure in a row backs off longer (the base doubles).
            if path == "/error.xml" {
                let again = sync(&app, &key, &id).await;
                let later: chrono::DateTime<chrono::Utc> = again["source"]["nextRunAt"]
                    .as_str()
                    .unwrap()
                    .parse()
                    .unwrap();
                assert!(
                    later >= chrono::Utc::now() + chrono::Duration::seconds(29),
                    "{later}"
                );
            }
        }
        // The healthy source next to them syncs as usual.
        let id = create_source(
            &app,
            &key,
            "RSS",
            "healthy",
            json!({ "url": platform.url("/rss2.xml") }),
        )
        .await;
        assert_eq!(sync(&app, &key, &id).await["newItems"], 3);
        // Recovery: the failing source comes back to OK once the platform does.
        platform.on(
            "/error.xml",
            vec![Reply::ok("application/rss+xml", fixture("feeds/rss1.rdf"))],
        );
        let sources = app.gql(&key, "{ sources { id name } }", json!({})).await;
        let error_source = sources["sources"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["name"] == "/error.xml")
            .unwrap()["id"]
            .as_str()
            .unwrap()
            .to_owned();
        let report = sync(&app, &key, &error_source).await;
        assert_eq!(report["source"]["status"], "OK");
        assert_eq!(report["source"]["lastError"], Value::Null);
        assert_eq!(report["newItems"], 2);
    }
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_platform_that_hangs_is_a_timeout_not_a_stuck_sync() {
    let app = TestApp::with_config(Backend::Sqlite, |config| config.sync.http_timeout_secs = 1)
        .await
        .unwrap();
    let key = app.key(Role::Admin).await;
    let platform = Platform::start().await;
    platform.on(
        "/slow.xml",
        vec![Reply::ok("application/rss+xml", fixture("feeds/rss2.xml"))
            .delay(Duration::from_secs(5))],
    );
    let id = create_source(
        &app,
        &key,
        "RSS",
        "slow",
        json!({ "url": platform.url("/slow.xml") }),
    )
    .await;
    let started = std::time::Instant::now();
    let report = sync(&app, &key, &id).await;
    assert!(started.elapsed() < Duration::from_secs(4));
    assert_eq!(report["source"]["status"], "BACKING_OFF");
    assert!(
        report["source"]["lastError"]
            .as_str()
            .unwrap()
            .contains("timed out"),
        "{report:#}"
    );
}

backend_test!(
    async fn source_configs_are_checked_per_channel_naming_the_field(app: TestApp) {
        let key = app.key(Role::Admin).await;
        for (channel, config, field) in [
            ("RSS", json!({}), "config.url"),
            (
                "RSS",
                json!({ "url": "ftp://x.example/feed" }),
                "config.url",
            ),
            (
                "RSS",
                json!({ "url": "https://x.example/feed", "colour": 1 }),
                "config.colour",
            ),
            (
                "MASTODON",
                json!({ "base_url": "https://m.example" }),
                "config.access_token",
            ),
            (
                "MASTODON",
                json!({ "base_url": "m.example", "access_token": "t0k3n-secret" }),
                "config.base_url",
            ),
            (
                "MASTODON",
                json!({ "base_url": "https://m.example", "access_token": "t0k3n-secret", "hashtags": ["no spaces"] }),
                "config.hashtags",
            ),
            (
                "EMAIL",
                json!({ "imap_host": "imap.example", "imap_port": 993, "username": "support@example.com" }),
                "config.password",
            ),
            (
                "EMAIL",
                json!({ "imap_host": "imap.example", "imap_port": 993, "username": "support", "password": "pw" }),
                "config.address",
            ),
            (
                "EMAIL",
                json!({ "imap_host": "imap.example", "imap_port": "993", "username": "a@b.example", "password": "pw" }),
                "config.imap_port",
            ),
            ("PHONE", json!({}), "channel"),
        ] {
            let input = json!({ "channel": channel, "name": "bad", "config": config });
            let (code, body) = app.gql_error(&key, CREATE, json!({ "input": input })).await;
            assert_eq!(code, "BAD_USER_INPUT", "{body:#}");
            assert_eq!(
                body["errors"][0]["extensions"]["field"], field,
                "{channel} {config}: {body:#}"
            );
        }
        let data = app.gql(&key, "{ sources { id } }", json!({})).await;
        assert_eq!(data["sources"], json!([]));
    }
);
