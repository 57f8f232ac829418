//! The Hacker News connector against a local stand-in for the Algolia HN Search API
//! (<https://hn.algolia.com/api>): `GET /api/v1/search_by_date` with `query`, `tags`,
//! `numericFilters` on `created_at_i`, `restrictSearchableAttributes`, `hitsPerPage` and
//! `page`, answering hits (`objectID`, `author`, `created_at`, `created_at_i`, `title`,
//! `url`, `story_text`, `comment_text`, `story_id`, `parent_id`, `story_title`, `_tags`) with
//! `nbHits`, `page`, `nbPages` and `hitsPerPage`, newest first. The hits are written here,
//! field for field from that page, for people made up for the test.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Duration, SecondsFormat, Utc};
use rapport::domain::Role;
use serde_json::{json, Value};

use crate::backend_test;
use crate::common::TestApp;
use crate::feeds::{create_source, items, sync};
use crate::mastodon::{find_interaction, stored_ids};
use crate::platform::{Platform, Reply, Seen};

const PATH: &str = "/api/v1/search_by_date";

#[derive(Default)]
struct State {
    /// Every item, oldest first.
    hits: Vec<Value>,
    /// Answer 429 with a Retry-After.
    throttled: bool,
    /// Queries answered with 400 (Algolia's answer to parameters it cannot read).
    refused: Vec<String>,
}

#[derive(Clone)]
struct Algolia {
    server: Platform,
    state: Arc<Mutex<State>>,
}

fn at(minute: i64) -> i64 {
    DateTime::parse_from_rfc3339("2026-11-02T09:00:00Z")
        .unwrap()
        .timestamp()
        + minute * 60
}

fn query(seen: &Seen) -> HashMap<String, String> {
    reqwest::Url::parse(&format!("http://q/?{}", seen.query))
        .unwrap()
        .query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

fn stamp(created: i64) -> String {
    DateTime::from_timestamp(created, 0)
        .unwrap()
        .to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// A story hit.
fn story(
    id: u64,
    author: &str,
    title: &str,
    url: Option<&str>,
    text: Option<&str>,
    created: i64,
) -> Value {
    json!({
        "_highlightResult": {},
        "_tags": ["story", format!("author_{author}"), format!("story_{id}")],
        "author": author,
        "children": [],
        "created_at": stamp(created),
        "created_at_i": created,
        "num_comments": 0,
        "objectID": id.to_string(),
        "points": 1,
        "story_id": id,
        "story_text": text,
        "title": title,
        "updated_at": stamp(created),
        "url": url
    })
}

/// A comment hit answering `parent` in story `story`.
fn comment(
    id: u64,
    author: &str,
    text: &str,
    parent: u64,
    story: (u64, &str),
    created: i64,
) -> Value {
    json!({
        "_highlightResult": {},
        "_tags": ["comment", format!("author_{author}"), format!("story_{}", story.0)],
        "author": author,
        "comment_text": text,
        "created_at": stamp(created),
        "created_at_i": created,
        "objectID": id.to_string(),
        "parent_id": parent,
        "points": null,
        "story_id": story.0,
        "story_title": story.1,
        "story_url": "https://rapport.example/",
        "updated_at": stamp(created)
    })
}

impl Algolia {
    async fn start() -> Algolia {
        let algolia = Algolia {
            server: Platform::start().await,
            state: Arc::new(Mutex::new(State::default())),
        };
        let serving = algolia.clone();
        algolia
            .server
            .handle(PATH, move |seen| serving.search(seen));
        algolia
    }

    fn seen(&self) -> Vec<Seen> {
        self.server.seen(PATH)
    }

    async fn source(&self, app: &TestApp, key: &str, name: &str, config: Value) -> String {
        let mut config = config;
        config["base_url"] = json!(self.server.base);
        create_source(app, key, "HACKER_NEWS", name, config).await
    }

    fn add(&self, hit: Value) {
        self.state.lock().unwrap().hits.push(hit);
    }

    /// Comments naming Rapport by a hundred people, numbered `range` (one a minute).
    fn comments(&self, range: std::ops::Range<u64>) {
        for n in range {
            self.add(comment(
                10_000 + n,
                &format!("user{}", n % 100),
                &format!("<p>question {n} about Rapport&#x27;s export</p>"),
                1,
                (1, "Ask HN: which CRM?"),
                at(n as i64),
            ));
        }
    }

    fn search(&self, seen: &Seen) -> Reply {
        let state = self.state.lock().unwrap();
        if state.throttled {
            return Reply {
                status: 429,
                ..Reply::json(&json!({ "message": "Too many requests", "status": 429 }))
            }
            .header("retry-after", "900");
        }
        let q = query(seen);
        if state.refused.contains(&q["query"]) {
            return Reply {
                status: 400,
                ..Reply::json(&json!({ "message": "invalid numericFilters", "status": 400 }))
            };
        }
        let words = q.get("query").map(|w| w.to_lowercase()).unwrap_or_default();
        let in_url = q.get("restrictSearchableAttributes").map(String::as_str) == Some("url");
        let tags = q.get("tags").cloned().unwrap_or_default();
        let wanted: Vec<&str> = tags.trim_matches(['(', ')']).split(',').collect();
        let filters: Vec<(String, i64)> = q
            .get("numericFilters")
            .map(|filters| {
                filters
                    .split(',')
                    .map(|f| {
                        let op = f.trim_start_matches("created_at_i");
                        let split = op.find(|c: char| c.is_ascii_digit()).unwrap();
                        (op[..split].to_owned(), op[split..].parse().unwrap())
                    })
                    .collect()
            })
            .unwrap_or_default();
        let per_page: usize = q["hitsPerPage"].parse().unwrap();
        let page: usize = q["page"].parse().unwrap();
        let text = |hit: &Value, key: &str| hit[key].as_str().unwrap_or_default().to_lowercase();
        let all: Vec<&Value> = state
            .hits
            .iter()
            .rev()
            .filter(|hit| {
                let fields = if in_url {
                    text(hit, "url")
                } else {
                    [
                        text(hit, "title"),
                        text(hit, "story_text"),
                        text(hit, "comment_text"),
                        text(hit, "url"),
                    ]
                    .join(" ")
                };
                fields.contains(&words)
            })
            .filter(|hit| {
                tags.is_empty()
                    || hit["_tags"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .any(|t| wanted.contains(&t.as_str().unwrap()))
            })
            .filter(|hit| {
                let created = hit["created_at_i"].as_i64().unwrap();
                filters.iter().all(|(op, n)| match op.as_str() {
                    ">=" => created >= *n,
                    ">" => created > *n,
                    "<=" => created <= *n,
                    "<" => created < *n,
                    other => panic!("numericFilters operator {other}"),
                })
            })
            .collect();
        // Algolia serves at most 1,000 hits of a query.
        let reachable = all.len().min(1_000);
        let pages = reachable.div_ceil(per_page);
        let hits: Vec<&Value> = all
            .iter()
            .take(reachable)
            .skip(page * per_page)
            .take(per_page)
            .copied()
            .collect();
        Reply::json(&json!({
            "exhaustive": { "nbHits": true, "typo": true },
            "exhaustiveNbHits": true,
            "exhaustiveTypo": true,
            "hits": hits,
            "hitsPerPage": per_page,
            "nbHits": all.len(),
            "nbPages": pages,
            "page": page,
            "params": seen.query,
            "processingTimeMS": 2,
            "query": words,
            "serverTimeMS": 3
        }))
    }
}

backend_test!(
    async fn stories_and_comments_land_threaded_by_username_and_replies_are_refused(app: TestApp) {
        let key = app.key(Role::Admin).await;
        let algolia = Algolia::start().await;
        let launch = (100, "Show HN: Rapport, a social CRM");
        algolia.add(story(
            100,
            "dhouston",
            launch.1,
            Some("https://rapport.example/"),
            None,
            at(1),
        ));
        algolia.add(comment(
            101,
            "pg",
            "<p>Does Rapport import from Zendesk?</p>",
            100,
            launch,
            at(2),
        ));
        algolia.add(comment(
            102,
            "dhouston",
            "<p>Not yet, it&#x27;s next.<p>Rapport reads CSV today.",
            101,
            launch,
            at(3),
        ));
        algolia.add(story(
            103,
            "pg",
            "How we answer customers",
            Some("https://www.acme.example/blog/answers"),
            None,
            at(4),
        ));
        algolia.add(story(
            104,
            "jl",
            "Ask HN: is Rapport any good?",
            None,
            Some("<p>Thinking of trying it.</p>"),
            at(5),
        ));
        // A deleted comment: no author.
        let mut gone = comment(105, "x", "[deleted] rapport", 100, launch, at(6));
        gone["author"] = Value::Null;
        algolia.add(gone);
        let id = algolia
            .source(
                &app,
                &key,
                "hn",
                json!({ "keywords": ["rapport"], "domains": ["acme.example"] }),
            )
            .await;

        let report = sync(&app, &key, &id).await;
        assert_eq!(report["error"], Value::Null, "{report:#}");
        assert_eq!(report["newItems"], 5, "{report:#}");
        let seen = algolia.seen();
        assert_eq!(seen.len(), 2);
        let keyword = query(&seen[0]);
        assert_eq!(keyword["query"], "rapport");
        assert_eq!(keyword["tags"], "(story,comment)");
        assert_eq!(keyword["hitsPerPage"], "100");
        assert_eq!(keyword["page"], "0");
        assert_eq!(keyword.get("numericFilters"), None);
        let domain = query(&seen[1]);
        assert_eq!(domain["query"], "acme.example");
        assert_eq!(domain["restrictSearchableAttributes"], "url");
        assert_eq!(domain["tags"], "story");

        let all = items(&app, &key).await;
        let launched = &all["100"];
        assert_eq!(launched["channel"], "HACKER_NEWS");
        assert_eq!(launched["kind"], "POST");
        assert_eq!(launched["subject"], launch.1);
        assert_eq!(launched["url"], "https://news.ycombinator.com/item?id=100");
        assert_eq!(launched["identity"]["platformId"], "dhouston");
        // A comment joins what it answers: the story, then the comment.
        let asked = &all["101"];
        assert_eq!(asked["kind"], "COMMENT");
        assert_eq!(asked["text"], "Does Rapport import from Zendesk?");
        assert_eq!(asked["conversation"]["id"], launched["conversation"]["id"]);
        let answered = &all["102"];
        assert_eq!(
            answered["conversation"]["id"],
            launched["conversation"]["id"]
        );
        assert_eq!(answered["url"], "https://news.ycombinator.com/item?id=102");
        // The same username twice: one customer.
        assert_eq!(answered["customer"]["id"], launched["customer"]["id"]);
        let blog = &all["103"];
        assert_eq!(blog["customer"]["id"], asked["customer"]["id"]);
        assert_ne!(blog["conversation"]["id"], launched["conversation"]["id"]);
        assert_eq!(all["104"]["text"], "Thinking of trying it.");
        assert!(!all.contains_key("105"));

        // Nothing new: each stream asks from its mark's second.
        let report = sync(&app, &key, &id).await;
        assert_eq!(report["newItems"], 0, "{report:#}");
        let seen = algolia.seen();
        assert_eq!(
            query(&seen[2])["numericFilters"],
            format!("created_at_i>={}", at(6))
        );
        assert_eq!(
            query(&seen[3])["numericFilters"],
            format!("created_at_i>={}", at(4))
        );
        let cursor: Value =
            serde_json::from_str(report["source"]["cursor"].as_str().unwrap()).unwrap();
        assert_eq!(
            cursor["streams"]["keyword/rapport"]["mark"],
            json!({ "at": at(6), "ids": ["105"] })
        );

        // A comment indexed later in the very second of the mark is not skipped.
        algolia.add(comment(
            106,
            "jl",
            "<p>Rapport works for us</p>",
            104,
            (104, "Ask HN: is Rapport any good?"),
            at(6),
        ));
        let report = sync(&app, &key, &id).await;
        assert_eq!(report["newItems"], 1, "{report:#}");
        assert_eq!(
            items(&app, &key).await["106"]["conversation"]["id"],
            all["104"]["conversation"]["id"]
        );

        // No replies: the capability says so before anything is tried.
        let agent = app.key(Role::Agent).await;
        let target = find_interaction(&app, &key, "101").await;
        let (code, body) = app
            .gql_error(&agent, "mutation($input: ReplyToInteractionInput!) { replyToInteraction(input: $input) { interaction { id } } }", json!({ "input": { "interactionId": target, "text": "yes" } }))
            .await;
        assert_eq!(code, "BAD_USER_INPUT");
        let message = body["errors"][0]["message"].as_str().unwrap();
        assert!(
            message.contains("cannot send replies") && message.contains("item's page"),
            "{message}"
        );
    }
);

fn expected(range: std::ops::Range<u64>) -> BTreeMap<String, usize> {
    range.map(|n| ((10_000 + n).to_string(), 1)).collect()
}

backend_test!(
    async fn a_first_sync_backfills_over_pages_then_takes_only_new_items(app: TestApp) {
        let key = app.key(Role::Admin).await;
        let algolia = Algolia::start().await;
        algolia.comments(0..250);
        let id = algolia
            .source(
                &app,
                &key,
                "backfill",
                json!({ "keywords": ["rapport"], "backfill_limit": 120 }),
            )
            .await;
        let report = sync(&app, &key, &id).await;
        assert_eq!(report["error"], Value::Null, "{report:#}");
        assert_eq!(report["newItems"], 120, "{report:#}");
        assert_eq!(stored_ids(&app).await, expected(130..250));
        // A full page, then the next one below the walk's first second.
        let seen = algolia.seen();
        assert_eq!(seen.len(), 2);
        assert_eq!(query(&seen[0])["page"], "0");
        assert_eq!(query(&seen[1])["page"], "1");
        assert_eq!(
            query(&seen[1])["numericFilters"],
            format!("created_at_i<={}", at(249))
        );

        // New ones: only those.
        algolia.comments(250..280);
        assert_eq!(sync(&app, &key, &id).await["newItems"], 30);
        assert_eq!(algolia.seen().len(), 3);
        algolia.comments(280..430);
        assert_eq!(sync(&app, &key, &id).await["newItems"], 150);
        let seen = algolia.seen();
        assert_eq!(seen.len(), 5);
        assert_eq!(
            query(&seen[4])["numericFilters"],
            format!("created_at_i>={},created_at_i<={}", at(279), at(429))
        );
        assert_eq!(stored_ids(&app).await, expected(130..430));
        assert_eq!(sync(&app, &key, &id).await["newItems"], 0);

        // backfill_limit 0: the first sync only sets the mark.
        let fresh = Algolia::start().await;
        fresh.comments(0..50);
        let id = fresh
            .source(
                &app,
                &key,
                "new only",
                json!({ "keywords": ["rapport"], "backfill_limit": 0 }),
            )
            .await;
        assert_eq!(sync(&app, &key, &id).await["newItems"], 0);
        assert_eq!(query(&fresh.seen()[0])["hitsPerPage"], "1");
        fresh.comments(50..53);
        assert_eq!(sync(&app, &key, &id).await["newItems"], 3);

        // 429 with Retry-After: the source waits that long, nothing lost.
        fresh.state.lock().unwrap().throttled = true;
        fresh.comments(53..55);
        let report = sync(&app, &key, &id).await;
        assert_eq!(report["source"]["status"], "RATE_LIMITED", "{report:#}");
        let next: DateTime<Utc> = report["source"]["nextRunAt"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!(next >= Utc::now() + Duration::minutes(14), "{next}");
        fresh.state.lock().unwrap().throttled = false;
        assert_eq!(sync(&app, &key, &id).await["newItems"], 2);
    }
);

backend_test!(
    async fn a_failing_search_warns_and_only_all_failing_fail_the_sync(app: TestApp) {
        let key = app.key(Role::Admin).await;
        let algolia = Algolia::start().await;
        algolia.comments(0..3);
        algolia.state.lock().unwrap().refused = vec!["broken".to_owned()];
        let id = algolia
            .source(
                &app,
                &key,
                "partly",
                json!({ "keywords": ["broken", "rapport"] }),
            )
            .await;
        let report = sync(&app, &key, &id).await;
        assert_eq!(report["error"], Value::Null, "{report:#}");
        assert_eq!(report["newItems"], 3, "{report:#}");
        let cursor: Value =
            serde_json::from_str(report["source"]["cursor"].as_str().unwrap()).unwrap();
        let warning = cursor["streams"]["keyword/broken"]["warning"]
            .as_str()
            .unwrap();
        assert!(warning.contains("400"), "{warning}");
        // Still a first walk: asked again next time.
        assert!(cursor["streams"]["keyword/broken"]["walk"].is_object());

        let id = algolia
            .source(&app, &key, "broken", json!({ "keywords": ["broken"] }))
            .await;
        let report = sync(&app, &key, &id).await;
        assert_ne!(report["source"]["status"], "OK", "{report:#}");
        assert!(
            report["source"]["lastError"]
                .as_str()
                .unwrap()
                .contains("400"),
            "{report:#}"
        );
    }
);
