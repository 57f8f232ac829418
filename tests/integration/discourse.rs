//! The Discourse connector against a local stand-in for a forum answering as
//! docs.discourse.org says ("List latest posts", "Retrieve a single post", "Get a single
//! topic", "Show category", "Search for a term", "Creates a new topic, a new post, or a
//! private message"; errors as `{"errors": [...], "error_type"}`, a rate limit with
//! `Retry-After` and `extras.wait_seconds`): `/posts.json` 50 a page below `before`,
//! public posts only; `/posts/{id}.json` without the topic's `category_id` or title (a
//! single post is serialised without them); full-page search 50 a page, the latest match of
//! each topic, refusing pages above 10. The payloads are written here, field for field,
//! for people made up for the test.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Duration, Utc};
use rapport::domain::Role;
use sea_orm::{ActiveModelTrait, ColumnTrait, EntityTrait, QueryFilter};
use serde_json::{json, Value};

use crate::backend_test;
use crate::common::TestApp;
use crate::feeds::{create_source, items, sync};
use crate::mastodon::{find_interaction, source_row, stored_ids, sync_until_done};
use crate::platform::{Platform, Reply, Seen};

const KEY: &str = "d1f5e0a9rapportTestKey7c3b2a1f0e9d8c7b6a5f4e3d2c1b0a9f8e7d6c5b4a3";
const ME: (i64, &str, &str) = (3, "acme_support", "Acme Support");
const MAYA: (i64, &str, &str) = (42, "maya", "Maya Lin");
const LUCIA: (i64, &str, &str) = (57, "lucia", "Lucía Pérez");
const SUPPORT: u64 = 5;
const OTHER: u64 = 6;
const REPLY: &str = "mutation($input: ReplyToInteractionInput!) { replyToInteraction(input: $input) { interaction { id externalId direction kind text url conversation { id } } } }";

#[derive(Default)]
struct State {
    posts: BTreeMap<u64, Value>,
    topics: BTreeMap<u64, Value>,
    /// The next answers of a path (`None`: the real one).
    fail: HashMap<String, Vec<Option<Reply>>>,
    /// Make the next created post, then answer 502.
    lose_next: bool,
    /// Posts `/posts.json` drops after taking its 50 (as the controller drops the posts the
    /// key may not see), so their page comes back short with older posts below it.
    unseen: std::collections::HashSet<u64>,
}

#[derive(Clone)]
struct Discourse {
    server: Platform,
    state: Arc<Mutex<State>>,
}

fn header(seen: &Seen, name: &str) -> String {
    seen.headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

fn query(seen: &Seen) -> HashMap<String, String> {
    reqwest::Url::parse(&format!("http://q/?{}", seen.query))
        .unwrap()
        .query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

fn errors(status: u16, message: &str, error_type: &str) -> Reply {
    Reply {
        status,
        ..Reply::json(&json!({ "errors": [message], "error_type": error_type }))
    }
}

fn not_found() -> Reply {
    errors(
        404,
        "The requested URL or resource could not be found.",
        "not_found",
    )
}

fn rate_limited(retry_after: Option<&str>, wait_seconds: u64) -> Reply {
    let reply = Reply {
        status: 429,
        ..Reply::json(&json!({
            "errors": [format!("You’ve performed this action too many times. Please wait {wait_seconds} seconds before trying again.")],
            "error_type": "rate_limit",
            "extras": { "wait_seconds": wait_seconds, "time_left": format!("{wait_seconds} seconds") }
        }))
    };
    match retry_after {
        Some(secs) => reply.header("retry-after", secs),
        None => reply,
    }
}

/// A post as `/posts.json` lists it, by `who`, at minute `id` of the test's day.
fn post(id: u64, topic: u64, number: u64, who: (i64, &str, &str), raw: &str) -> Value {
    let at = DateTime::parse_from_rfc3339("2026-11-30T00:00:00Z").unwrap()
        + Duration::minutes(id as i64);
    let at = at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let mut post = json!({
        "id": id, "name": who.2, "username": who.1,
        "avatar_template": format!("/user_avatar/forum.example.com/{}/{{size}}/{}_2.png", who.1, who.0),
        "created_at": at, "cooked": format!("<p>{raw}</p>"), "post_number": number,
        "post_type": 1, "updated_at": at, "reply_count": 0, "reply_to_post_number": null,
        "quote_count": 0, "incoming_link_count": 0, "reads": 1, "readers_count": 0,
        "score": 0.0, "yours": false, "topic_id": topic, "topic_slug": format!("topic-{topic}"),
        "topic_title": format!("Topic {topic}"), "topic_html_title": format!("Topic {topic}"),
        "category_id": SUPPORT, "display_username": who.2, "primary_group_name": null,
        "raw": raw, "user_id": who.0, "hidden": false, "deleted_at": null,
        "user_deleted": false
    });
    let rest = json!({
        "flair_name": null, "flair_url": null, "flair_bg_color": null, "flair_color": null,
        "flair_group_id": null, "version": 1, "can_edit": true, "can_delete": false,
        "can_recover": false, "can_see_hidden_post": true, "can_wiki": true,
        "user_title": null, "bookmarked": false, "actions_summary": [],
        "moderator": false, "admin": false, "staff": false, "trust_level": 1,
        "edit_reason": null, "can_view_edit_history": true, "wiki": false,
        "reviewable_id": null, "reviewable_score_count": 0, "reviewable_score_pending_count": 0
    });
    for (key, value) in rest.as_object().unwrap() {
        post[key.as_str()] = value.clone();
    }
    post
}

impl Discourse {
    async fn start() -> Discourse {
        let discourse = Discourse {
            server: Platform::start().await,
            state: Arc::new(Mutex::new(State::default())),
        };
        let serving = discourse.clone();
        discourse.server.handle("/posts.json", move |seen| {
            serving
                .failed(seen)
                .unwrap_or_else(|| match seen.method.as_str() {
                    "POST" => serving.create(seen),
                    _ => serving.latest(seen),
                })
        });
        let serving = discourse.clone();
        discourse.server.handle("/search.json", move |seen| {
            serving.failed(seen).unwrap_or_else(|| serving.search(seen))
        });
        for (slug, id) in [("support", SUPPORT), ("other", OTHER)] {
            let serving = discourse.clone();
            discourse
                .server
                .handle(&format!("/c/{slug}/show.json"), move |seen| {
                    serving.failed(seen).unwrap_or_else(|| {
                        Reply::json(&json!({ "category": {
                            "id": id, "name": slug, "slug": slug, "color": "0088CC",
                            "text_color": "FFFFFF", "topic_count": 10, "post_count": 40,
                            "position": 1, "description": null, "read_restricted": false,
                            "parent_category_id": null, "permission": 1
                        } }))
                    })
                });
        }
        let serving = discourse.clone();
        discourse
            .server
            .handle("/c/feature/show.json", move |seen| {
                serving.failed(seen).unwrap_or_else(not_found)
            });
        discourse
    }

    /// Checks what every request carries; a queued failure when there is one.
    fn failed(&self, seen: &Seen) -> Option<Reply> {
        assert_eq!(header(seen, "api-key"), KEY, "{seen:?}");
        assert_eq!(header(seen, "api-username"), ME.1, "{seen:?}");
        assert_eq!(header(seen, "accept"), "application/json", "{seen:?}");
        assert!(header(seen, "user-agent").starts_with("rapport/"));
        let mut state = self.state.lock().unwrap();
        let queued = state.fail.get_mut(&seen.path)?;
        if queued.is_empty() {
            return None;
        }
        queued.remove(0)
    }

    fn fail(&self, path: &str, replies: Vec<Option<Reply>>) {
        self.state
            .lock()
            .unwrap()
            .fail
            .insert(path.to_owned(), replies);
    }

    /// Adds posts (their topics made on first sight: `private` ones are messages).
    fn add(&self, posts: Vec<Value>) {
        for post in posts {
            let id = post["id"].as_u64().unwrap();
            let topic = post["topic_id"].as_u64().unwrap();
            let known = {
                let mut state = self.state.lock().unwrap();
                let known = state.topics.contains_key(&topic);
                if !known {
                    state.topics.insert(
                        topic,
                        json!({
                            "id": topic, "title": post["topic_title"], "fancy_title": post["topic_title"],
                            "slug": post["topic_slug"], "posts_count": 1, "category_id": post["category_id"],
                            "archetype": if post["category_id"].is_null() { "private_message" } else { "regular" },
                            "created_at": post["created_at"], "visible": true, "closed": false, "archived": false
                        }),
                    );
                }
                state.posts.insert(id, post);
                known
            };
            let serving = self.clone();
            self.server
                .handle(&format!("/posts/{id}.json"), move |seen| {
                    serving.failed(seen).unwrap_or_else(|| {
                        let state = serving.state.lock().unwrap();
                        match state.posts.get(&id) {
                            // A single post has no category or topic title.
                            Some(post) => {
                                let mut post = post.clone();
                                let fields = post.as_object_mut().unwrap();
                                fields.remove("category_id");
                                fields.remove("topic_title");
                                fields.remove("topic_html_title");
                                Reply::json(&post)
                            }
                            None => not_found(),
                        }
                    })
                });
            if !known {
                let serving = self.clone();
                self.server
                    .handle(&format!("/t/{topic}.json"), move |seen| {
                        serving.failed(seen).unwrap_or_else(|| {
                            let state = serving.state.lock().unwrap();
                            let mut shown = state.topics[&topic].clone();
                            let stream: Vec<u64> = state
                                .posts
                                .values()
                                .filter(|p| p["topic_id"] == topic)
                                .map(|p| p["id"].as_u64().unwrap())
                                .collect();
                            shown["post_stream"] = json!({ "stream": stream, "posts": [] });
                            Reply::json(&shown)
                        })
                    });
            }
        }
    }

    fn public(&self, post: &Value) -> bool {
        let state = self.state.lock().unwrap();
        state.topics[&post["topic_id"].as_u64().unwrap()]["archetype"] == "regular"
            && post["post_type"] == 1
    }

    fn latest(&self, seen: &Seen) -> Reply {
        let before = query(seen)
            .get("before")
            .map(|b| b.parse::<u64>().unwrap())
            .unwrap_or(u64::MAX);
        let posts: Vec<Value> = {
            let state = self.state.lock().unwrap();
            state.posts.values().rev().cloned().collect()
        };
        let page: Vec<Value> = posts
            .into_iter()
            .filter(|p| p["id"].as_u64().unwrap() < before && self.public(p))
            .take(50)
            .filter(|p| {
                !self
                    .state
                    .lock()
                    .unwrap()
                    .unseen
                    .contains(&p["id"].as_u64().unwrap())
            })
            .collect();
        Reply::json(&json!({ "latest_posts": page }))
    }

    fn search(&self, seen: &Seen) -> Reply {
        let asked = query(seen);
        let q = &asked["q"];
        let term = q
            .strip_suffix(" order:latest")
            .expect("order:latest")
            .to_lowercase();
        let page: usize = asked.get("page").map_or(1, |p| p.parse().unwrap());
        if page > 10 {
            return errors(
                400,
                "page parameter must not be greater than 10",
                "invalid_parameters",
            );
        }
        let state = self.state.lock().unwrap();
        // The latest match of each topic, newest first.
        let mut seen_topics = std::collections::HashSet::new();
        let matches: Vec<&Value> = state
            .posts
            .values()
            .rev()
            .filter(|p| p["raw"].as_str().unwrap().to_lowercase().contains(&term))
            .filter(|p| state.topics[&p["topic_id"].as_u64().unwrap()]["archetype"] == "regular")
            .filter(|p| seen_topics.insert(p["topic_id"].as_u64().unwrap()))
            .collect();
        let shown: Vec<&Value> = matches
            .iter()
            .skip((page - 1) * 50)
            .take(50)
            .copied()
            .collect();
        let more = matches.len() > page * 50;
        let posts: Vec<Value> = shown
            .iter()
            .map(|p| {
                json!({
                    "id": p["id"], "name": p["name"], "username": p["username"],
                    "avatar_template": p["avatar_template"], "created_at": p["created_at"],
                    "like_count": 0, "blurb": p["raw"], "post_number": p["post_number"],
                    "topic_title_headline": p["topic_title"], "topic_id": p["topic_id"]
                })
            })
            .collect();
        let topics: Vec<Value> = shown
            .iter()
            .map(|p| {
                let topic = &state.topics[&p["topic_id"].as_u64().unwrap()];
                json!({
                    "id": topic["id"], "title": topic["title"], "fancy_title": topic["title"],
                    "slug": topic["slug"], "posts_count": 1, "reply_count": 0,
                    "highest_post_number": 1, "created_at": topic["created_at"],
                    "category_id": topic["category_id"], "archetype": topic["archetype"],
                    "closed": false, "archived": false, "visible": true, "tags": []
                })
            })
            .collect();
        let ids: Vec<Value> = shown.iter().map(|p| p["id"].clone()).collect();
        Reply::json(&json!({
            "posts": posts, "topics": topics, "users": [], "categories": [], "tags": [],
            "groups": [],
            "grouped_search_result": {
                "more_posts": null, "more_users": null, "more_categories": null,
                "term": q, "search_log_id": 1, "more_full_page_results": if more { json!(true) } else { Value::Null },
                "can_create_topic": true, "error": null, "extra": {}, "post_ids": ids,
                "user_ids": [], "category_ids": [], "tag_ids": [], "group_ids": []
            }
        }))
    }

    fn create(&self, seen: &Seen) -> Reply {
        assert!(header(seen, "content-type").starts_with("application/json"));
        let asked: Value = serde_json::from_slice(&seen.body).unwrap();
        let topic = asked["topic_id"].as_u64().unwrap();
        let (id, number, title) = {
            let state = self.state.lock().unwrap();
            let id = state.posts.keys().max().copied().unwrap_or(0) + 1;
            let number = state
                .posts
                .values()
                .filter(|p| p["topic_id"] == topic)
                .count() as u64
                + 1;
            (id, number, state.topics[&topic]["title"].clone())
        };
        let mut made = post(id, topic, number, ME, asked["raw"].as_str().unwrap());
        made["topic_title"] = title;
        made["reply_to_post_number"] = asked["reply_to_post_number"].clone();
        made["created_at"] = json!(Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true));
        self.add(vec![made.clone()]);
        let mut state = self.state.lock().unwrap();
        if std::mem::take(&mut state.lose_next) {
            return Reply::status(502);
        }
        made.as_object_mut().unwrap().remove("category_id");
        Reply::json(&made)
    }

    fn config(&self, extra: Value) -> Value {
        let mut config =
            json!({ "base_url": self.server.base, "api_key": KEY, "api_username": ME.1 });
        for (key, value) in extra.as_object().unwrap() {
            config[key] = value.clone();
        }
        config
    }

    /// The `before` of each `/posts.json` read (0: the newest page).
    fn befores(&self) -> Vec<u64> {
        self.server
            .seen("/posts.json")
            .iter()
            .filter(|seen| seen.method == "GET")
            .map(|seen| query(seen).get("before").map_or(0, |b| b.parse().unwrap()))
            .collect()
    }
}

async fn cursor_of(app: &TestApp, id: &str) -> Value {
    let cursor = source_row(app, id).await.cursor.unwrap();
    assert!(!cursor.contains("rapportTest"), "{cursor}");
    serde_json::from_str(&cursor).unwrap()
}

/// `count` posts from `from`, five to a topic, by Maya.
fn chatter(from: u64, count: u64) -> Vec<Value> {
    (from..from + count)
        .map(|id| {
            post(
                id,
                1_000 + (id - 1) / 5,
                (id - 1) % 5 + 1,
                MAYA,
                &format!("post {id}"),
            )
        })
        .collect()
}

backend_test!(
    async fn a_first_sync_backfills_over_pages_then_takes_only_new_posts(app: TestApp) {
        let key = app.key(Role::Admin).await;
        let discourse = Discourse::start().await;
        discourse.add(chatter(1, 130));
        let input = json!({ "channel": "DISCOURSE", "name": "forum", "config": discourse.config(json!({})) });
        let created = app
            .gql(&key, crate::feeds::CREATE, json!({ "input": input }))
            .await;
        let source = &created["createSource"]["source"];
        assert_eq!(source["secretsSet"], json!(["api_key"]));
        assert!(!source["config"].to_string().contains(KEY));
        let id = source["id"].as_str().unwrap().to_owned();
        // The second page answers 502: the first page is kept, and the next batch asks
        // the failed page again.
        discourse.fail("/posts.json", vec![None, Some(Reply::status(502))]);
        let report = sync(&app, &key, &id).await;
        assert_eq!(report["error"], Value::Null, "{report:#}");
        assert_eq!(report["newItems"], 130, "{report:#}");
        assert_eq!(discourse.befores(), [0, 81, 81, 31]);
        assert_eq!(
            cursor_of(&app, &id).await,
            json!({ "streams": { "posts": { "mark": 130 } } })
        );

        // New posts: only they are read, from the newest page to the mark.
        discourse.add(chatter(131, 3));
        let report = sync(&app, &key, &id).await;
        assert_eq!(report["newItems"], 3, "{report:#}");
        assert_eq!(discourse.befores()[4..], [0]);
        let stored = stored_ids(&app).await;
        assert_eq!(stored.len(), 133);
        assert!(stored.values().all(|count| *count == 1));

        // A page failing on its own in every batch: the sync's error, from the stored place.
        discourse.add(chatter(134, 60));
        discourse.fail(
            "/posts.json",
            vec![None, Some(Reply::status(503)), Some(Reply::status(503))],
        );
        let report = sync(&app, &key, &id).await;
        assert!(
            report["error"].as_str().unwrap().contains("503"),
            "{report:#}"
        );
        assert_eq!(report["newItems"], 50, "{report:#}");
        let report = sync(&app, &key, &id).await;
        assert_eq!(report["error"], Value::Null, "{report:#}");
        assert_eq!(report["newItems"], 10, "{report:#}");
        assert_eq!(discourse.befores()[5..], [0, 144, 144, 144]);
        assert_eq!(stored_ids(&app).await.len(), 193);

        // backfill_limit 40: the newest 40; 0: none, only what comes after.
        let some = create_source(
            &app,
            &key,
            "DISCOURSE",
            "some",
            discourse.config(json!({ "backfill_limit": 40 })),
        )
        .await;
        let report = sync(&app, &key, &some).await;
        assert_eq!(report["newItems"], 40, "{report:#}");
        assert_eq!(discourse.befores()[9..], [0]);
        let quiet = create_source(
            &app,
            &key,
            "DISCOURSE",
            "quiet",
            discourse.config(json!({ "backfill_limit": 0 })),
        )
        .await;
        let report = sync(&app, &key, &quiet).await;
        assert_eq!(report["newItems"], 0, "{report:#}");
        assert_eq!(report["duplicates"], 0, "{report:#}");
        assert_eq!(
            cursor_of(&app, &quiet).await["streams"]["posts"]["mark"],
            193
        );
        discourse.add(chatter(194, 2));
        let report = sync(&app, &key, &quiet).await;
        assert_eq!(report["newItems"], 2, "{report:#}");
    }
);
backend_test!(
    async fn a_short_page_mid_walk_is_not_the_forums_start(app: TestApp) {
        let key = app.key(Role::Admin).await;
        let discourse = Discourse::start().await;
        discourse.add(chatter(1, 130));
        // Post 60 is on the second page (80…31) and the key may not see it: that page
        // holds 49 posts, and posts 30…1 lie below it.
        discourse.state.lock().unwrap().unseen.insert(60);
        let id = create_source(
            &app,
            &key,
            "DISCOURSE",
            "forum",
            discourse.config(json!({})),
        )
        .await;
        let report = sync(&app, &key, &id).await;
        assert_eq!(report["error"], Value::Null, "{report:#}");
        assert_eq!(report["newItems"], 129, "{report:#}");
        assert_eq!(discourse.befores(), [0, 81, 31]);
        let stored = stored_ids(&app).await;
        assert!(stored.contains_key("post:1") && stored.contains_key("post:30"));
        assert!(!stored.contains_key("post:60"));

        // A later sync with more than a page of new posts, the newest page short: the walk
        // goes on down to the mark, and posts 131…140 are not jumped.
        discourse.add(chatter(131, 60));
        discourse.state.lock().unwrap().unseen.insert(170);
        let report = sync(&app, &key, &id).await;
        assert_eq!(report["error"], Value::Null, "{report:#}");
        assert_eq!(report["newItems"], 59, "{report:#}");
        assert_eq!(discourse.befores()[3..], [0, 141]);
        let stored = stored_ids(&app).await;
        assert_eq!(stored.len(), 188);
        assert!((131..=140).all(|id| stored.contains_key(&format!("post:{id}"))));
        assert_eq!(
            cursor_of(&app, &id).await,
            json!({ "streams": { "posts": { "mark": 190 } } })
        );
    }
);

backend_test!(
    async fn one_user_id_on_two_forums_is_two_customers(app: TestApp) {
        let key = app.key(Role::Admin).await;
        let community = Discourse::start().await;
        let partners = Discourse::start().await;
        community.add(vec![post(1, 9, 1, MAYA, "Hello from the community forum")]);
        partners.add(vec![post(1, 9, 1, MAYA, "Hello from the partner forum")]);
        for (name, forum) in [("community", &community), ("partners", &partners)] {
            let id = create_source(&app, &key, "DISCOURSE", name, forum.config(json!({}))).await;
            let report = sync(&app, &key, &id).await;
            assert_eq!(report["error"], Value::Null, "{report:#}");
            assert_eq!(report["newItems"], 1, "{report:#}");
        }
        // Both posts are `post:1` of their own source; user 42 of each forum is its own
        // identity and customer, named by the forum's host and port.
        let found = app
            .gql(
                &key,
                "{ interactions(first: 10) { edges { node { text identity { platformId handle } customer { id } } } } customers { totalCount } }",
                json!({}),
            )
            .await;
        let nodes: Vec<Value> = found["interactions"]["edges"]
            .as_array()
            .unwrap()
            .iter()
            .map(|edge| edge["node"].clone())
            .collect();
        assert_eq!(nodes.len(), 2, "{found:#}");
        assert_eq!(found["customers"]["totalCount"], 2, "{found:#}");
        let by_text = |text: &str| {
            nodes
                .iter()
                .find(|node| node["text"].as_str().unwrap().contains(text))
                .unwrap()
                .clone()
        };
        let (a, b) = (by_text("community"), by_text("partner"));
        let forum = |platform: &Platform| {
            reqwest::Url::parse(&platform.base)
                .unwrap()
                .authority()
                .to_owned()
        };
        assert_eq!(
            a["identity"]["platformId"],
            format!("{}#42", forum(&community.server))
        );
        assert_eq!(
            b["identity"]["platformId"],
            format!("{}#42", forum(&partners.server))
        );
        assert_ne!(a["identity"]["platformId"], b["identity"]["platformId"]);
        assert_eq!(a["identity"]["handle"], "maya");
        assert_eq!(b["identity"]["handle"], "maya");
        assert_ne!(a["customer"]["id"], b["customer"]["id"]);
    }
);

backend_test!(
    async fn posts_thread_by_topic_with_identities_and_a_reply_is_a_post_read_back_by_its_marker(
        app: TestApp,
    ) {
        let key = app.key(Role::Admin).await;
        let discourse = Discourse::start().await;
        let mut first = post(1, 9, 1, MAYA, "The CSV export fails with 20k rows");
        first["topic_title"] = json!("CSV export fails");
        let ours = post(2, 9, 2, ME, "Which version?");
        let mut answer = post(3, 9, 3, LUCIA, "Same here on 2.0, @acme_support");
        answer["reply_to_post_number"] = json!(2);
        let mut system = post(4, 9, 4, (-1, "system", "system"), "Closed");
        system["user_id"] = json!(-1);
        let mut whisper = post(5, 9, 5, ME, "staff only");
        whisper["post_type"] = json!(4);
        let elsewhere = post(6, 10, 1, MAYA, "Another question");
        discourse.add(vec![first, ours, answer, system, whisper, elsewhere]);
        let id = create_source(
            &app,
            &key,
            "DISCOURSE",
            "forum",
            discourse.config(json!({})),
        )
        .await;
        let report = sync(&app, &key, &id).await;
        assert_eq!(report["error"], Value::Null, "{report:#}");
        assert_eq!(report["newItems"], 4, "{report:#}");

        let all = items(&app, &key).await;
        let forum = reqwest::Url::parse(&discourse.server.base)
            .unwrap()
            .authority()
            .to_owned();
        let opening = &all["post:1"];
        assert_eq!(opening["kind"], "POST");
        assert_eq!(opening["subject"], "CSV export fails");
        assert_eq!(opening["channel"], "DISCOURSE");
        assert_eq!(opening["url"], format!("{}/t/9/1", discourse.server.base));
        assert_eq!(opening["identity"]["platformId"], format!("{forum}#42"));
        assert_eq!(opening["identity"]["displayName"], "Maya Lin");
        let mine = &all["post:2"];
        assert_eq!(mine["direction"], "OUTBOUND");
        assert_eq!(mine["kind"], "COMMENT");
        let named = &all["post:3"];
        assert_eq!(named["kind"], "MENTION");
        assert_eq!(named["identity"]["platformId"], format!("{forum}#57"));
        // One topic, one conversation; another topic another.
        assert_eq!(named["conversation"]["id"], opening["conversation"]["id"]);
        assert_eq!(mine["conversation"]["id"], opening["conversation"]["id"]);
        assert_ne!(
            all["post:6"]["conversation"]["id"],
            opening["conversation"]["id"]
        );
        // Maya is one customer by her user id in both topics; Lucía another.
        assert_eq!(all["post:6"]["customer"]["id"], opening["customer"]["id"]);
        assert_ne!(named["customer"]["id"], opening["customer"]["id"]);
        assert!(!all.contains_key("post:4") && !all.contains_key("post:5"));
        let identity = entity::identity::Entity::find()
            .filter(entity::identity::Column::PlatformId.eq(format!("{forum}#57")))
            .one(&app.app.db)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(identity.handle.as_deref(), Some("lucia"));
        assert_eq!(
            identity.profile_url.as_deref(),
            Some(format!("{}/u/lucia", discourse.server.base).as_str())
        );
        assert_eq!(
            identity.avatar_url.as_deref(),
            Some(
                format!(
                    "{}/user_avatar/forum.example.com/lucia/120/57_2.png",
                    discourse.server.base
                )
                .as_str()
            )
        );

        // A reply to Lucía: POST /posts.json into the topic, answering her post.
        let agent = app.key(Role::Agent).await;
        let target = find_interaction(&app, &key, "post:3").await;
        let text = "Fixed in 2.0.1 — thanks Lucía!";
        let sent = app
            .gql(
                &agent,
                REPLY,
                json!({ "input": { "interactionId": target, "text": text } }),
            )
            .await["replyToInteraction"]["interaction"]
            .clone();
        let posted: Vec<Seen> = discourse
            .server
            .seen("/posts.json")
            .into_iter()
            .filter(|seen| seen.method == "POST")
            .collect();
        assert_eq!(posted.len(), 1);
        let body: Value = serde_json::from_slice(&posted[0].body).unwrap();
        let raw = body["raw"].as_str().unwrap();
        let marker = raw
            .strip_prefix(&format!("{text}\n\n<!-- rapport:"))
            .unwrap();
        let marker = marker.strip_suffix(" -->").unwrap();
        assert!(
            marker.len() == 16 && marker.bytes().all(|c| c.is_ascii_hexdigit()),
            "{raw}"
        );
        assert_eq!(
            body,
            json!({ "topic_id": 9, "raw": raw, "reply_to_post_number": 3 })
        );
        assert_eq!(sent["externalId"], "post:7");
        assert_eq!(sent["direction"], "OUTBOUND");
        assert_eq!(sent["text"], text);
        assert_eq!(sent["url"], format!("{}/t/9/6", discourse.server.base));
        assert_eq!(sent["conversation"]["id"], opening["conversation"]["id"]);
        // Read back on the next sync, it is the same interaction, shown without its marker.
        let report = sync(&app, &key, &id).await;
        assert_eq!(report["newItems"], 0, "{report:#}");
        assert_eq!(report["duplicates"], 1, "{report:#}");

        // The answer is lost after Discourse made the post: read back by its marker, not
        // posted twice.
        discourse.state.lock().unwrap().lose_next = true;
        let target = find_interaction(&app, &key, "post:1").await;
        let again = app
            .gql(
                &agent,
                REPLY,
                json!({ "input": { "interactionId": target, "text": text } }),
            )
            .await["replyToInteraction"]["interaction"]
            .clone();
        assert_eq!(again["externalId"], "post:8");
        let posts = |discourse: &Discourse| {
            discourse
                .server
                .seen("/posts.json")
                .iter()
                .filter(|s| s.method == "POST")
                .count()
        };
        assert_eq!(posts(&discourse), 2);

        // A 502 before anything was made: our earlier post with the same words in this
        // topic is another reply's (its marker differs), so this one fails.
        discourse.fail("/posts.json", vec![Some(Reply::status(502))]);
        let (_, answer) = app
            .gql_error(
                &agent,
                REPLY,
                json!({ "input": { "interactionId": target, "text": text, "idempotencyKey": "another-reply" } }),
            )
            .await;
        assert!(answer.to_string().contains("502"), "{answer}");
        assert_eq!(posts(&discourse), 3);
        assert!(!stored_ids(&app).await.contains_key("post:9"));

        // Too long: refused before anything is sent.
        let long = json!({ "interactionId": target, "text": "a".repeat(32_001) });
        let (code, _) = app.gql_error(&agent, REPLY, json!({ "input": long })).await;
        assert_eq!(code, "BAD_USER_INPUT");
        assert_eq!(posts(&discourse), 3);

        // A closed topic: 403, said, and the key nowhere in it.
        discourse.fail(
            "/posts.json",
            vec![Some(errors(
                403,
                "You are not permitted to view the requested resource.",
                "invalid_access",
            ))],
        );
        let (_, answer) = app
            .gql_error(
                &agent,
                REPLY,
                json!({ "input": { "interactionId": target, "text": "Hello?" } }),
            )
            .await;
        let said = answer.to_string();
        assert!(said.contains("may not post there"), "{said}");
        assert!(!said.contains("rapportTest"), "{said}");
    }
);

backend_test!(
    async fn categories_filter_posts_and_keyword_matches_and_a_failed_lookup_skips_nothing(
        app: TestApp,
    ) {
        let key = app.key(Role::Admin).await;
        let discourse = Discourse::start().await;
        let mut other = post(2, 11, 1, LUCIA, "Widgets export to PDF?");
        other["category_id"] = json!(OTHER);
        let mut private = post(3, 12, 1, MAYA, "My export contract (private)");
        private["category_id"] = Value::Null;
        discourse.add(vec![
            post(1, 10, 1, MAYA, "The export fails"),
            other,
            private,
            post(4, 10, 2, LUCIA, "Export fails here too"),
            post(5, 13, 1, MAYA, "Hello"),
        ]);
        let config = discourse.config(
            json!({ "categories": ["support", "feature", SUPPORT], "keywords": ["export"] }),
        );
        let id = create_source(&app, &key, "DISCOURSE", "forum", config.clone()).await;
        let report = sync(&app, &key, &id).await;
        assert_eq!(report["error"], Value::Null, "{report:#}");
        let stored = stored_ids(&app).await;
        assert_eq!(
            stored.keys().collect::<Vec<_>>(),
            ["post:1", "post:4", "post:5"]
        );
        let cursor = cursor_of(&app, &id).await;
        assert_eq!(cursor["categories"]["support"]["id"], SUPPORT);
        assert!(cursor["categories"]["feature"]["warning"]
            .as_str()
            .unwrap()
            .contains("404"));
        assert_eq!(cursor["streams"]["search:export"]["mark"], 4);
        // The search showed one match per topic; the matches read in full were in support.
        let read: Vec<String> = [
            "/posts/1.json",
            "/posts/2.json",
            "/posts/3.json",
            "/posts/4.json",
        ]
        .iter()
        .filter(|path| !discourse.server.seen(path).is_empty())
        .map(|path| path.to_string())
        .collect();
        assert_eq!(read, ["/posts/4.json"]);

        // Kept for an hour: not looked up again.
        discourse.add(vec![
            post(6, 10, 3, MAYA, "export again"),
            post(7, 14, 1, MAYA, "an export question"),
        ]);
        discourse.fail("/posts/7.json", vec![Some(not_found())]);
        let report = sync(&app, &key, &id).await;
        assert_eq!(report["error"], Value::Null, "{report:#}");
        assert_eq!(discourse.server.seen("/c/support/show.json").len(), 1);
        // post 7 came in through the posts stream; its search read was a 404 (skipped).
        assert_eq!(report["newItems"], 2, "{report:#}");

        // An hour later the lookup fails (502): the kept id is used.
        let aged = |mut cursor: Value| {
            for kept in cursor["categories"].as_object_mut().unwrap().values_mut() {
                kept["at"] = json!(0);
            }
            cursor
        };
        let set_cursor = |cursor: Value| {
            let app = &app;
            let id = id.clone();
            async move {
                let mut row: entity::source::ActiveModel = source_row(app, &id).await.into();
                row.cursor = sea_orm::Set(Some(cursor.to_string()));
                row.update(&app.app.db).await.unwrap();
            }
        };
        set_cursor(aged(cursor_of(&app, &id).await)).await;
        discourse.add(vec![post(8, 15, 1, MAYA, "new support topic")]);
        discourse.fail("/c/support/show.json", vec![Some(Reply::status(502))]);
        let report = sync(&app, &key, &id).await;
        assert_eq!(report["error"], Value::Null, "{report:#}");
        assert_eq!(report["newItems"], 1, "{report:#}");
        let cursor = cursor_of(&app, &id).await;
        assert!(cursor["categories"]["support"]["warning"]
            .as_str()
            .unwrap()
            .contains("kept"));

        // No id kept and the lookup fails: nothing is read (the posts would be passed over),
        // and the places stay.
        let mut forgotten = cursor_of(&app, &id).await;
        forgotten["categories"]
            .as_object_mut()
            .unwrap()
            .remove("support");
        set_cursor(forgotten).await;
        discourse.add(vec![post(9, 16, 1, MAYA, "support export question")]);
        discourse.fail("/c/support/show.json", vec![Some(Reply::status(502))]);
        let report = sync(&app, &key, &id).await;
        assert!(
            report["error"].as_str().unwrap().contains("502"),
            "{report:#}"
        );
        assert_eq!(report["newItems"], 0, "{report:#}");
        let report = sync(&app, &key, &id).await;
        assert_eq!(report["error"], Value::Null, "{report:#}");
        assert!(stored_ids(&app).await.contains_key("post:9"));

        // Only unknown categories: the source fails rather than reading everything.
        let config = discourse.config(json!({ "categories": ["feature"] }));
        let unknown = create_source(&app, &key, "DISCOURSE", "unknown", config).await;
        let report = sync(&app, &key, &unknown).await;
        assert!(
            report["error"]
                .as_str()
                .unwrap()
                .contains("none of the categories"),
            "{report:#}"
        );
    }
);

backend_test!(
    async fn a_keyword_walk_stops_at_search_page_ten_and_a_half_read_page_resumes(app: TestApp) {
        let key = app.key(Role::Admin).await;
        let discourse = Discourse::start().await;
        // 520 topics each with one matching post.
        discourse.add(
            (1..=520)
                .map(|id| post(id, 2_000 + id, 1, MAYA, &format!("widget question {id}")))
                .collect(),
        );
        let config = discourse.config(json!({ "keywords": ["widget"], "backfill_limit": 1000 }));
        let id = create_source(&app, &key, "DISCOURSE", "forum", config).await;
        let report = sync(&app, &key, &id).await;
        assert_eq!(report["error"], Value::Null, "{report:#}");
        assert_eq!(report["newItems"], 520, "{report:#}");
        let pages: Vec<String> = discourse
            .server
            .seen("/search.json")
            .iter()
            .map(|seen| query(seen)["page"].clone())
            .collect();
        assert_eq!(pages, (1..=10).map(|p| p.to_string()).collect::<Vec<_>>());
        let cursor = cursor_of(&app, &id).await;
        let stream = &cursor["streams"]["search:widget"];
        assert_eq!(stream["mark"], 520, "{cursor}");
        assert!(stream["warning"]
            .as_str()
            .unwrap()
            .contains("10 search pages"));

        // A match's read fails mid-page: the matches read are kept; the page is read again
        // without them.
        discourse.add(vec![
            post(521, 3_001, 1, MAYA, "widget A"),
            post(522, 3_002, 1, MAYA, "widget B"),
        ]);
        // Twice: the next batch of the same sync reads the page again, and fails again.
        discourse.fail(
            "/posts/521.json",
            vec![Some(Reply::status(502)), Some(Reply::status(502))],
        );
        let report = sync(&app, &key, &id).await;
        assert_eq!(report["error"], Value::Null, "{report:#}");
        let cursor = cursor_of(&app, &id).await;
        assert_eq!(
            cursor["streams"]["search:widget"]["walk"]["done"],
            json!([522]),
            "{cursor}"
        );
        let report = sync(&app, &key, &id).await;
        assert_eq!(report["error"], Value::Null, "{report:#}");
        assert_eq!(discourse.server.seen("/posts/522.json").len(), 1);
        assert_eq!(discourse.server.seen("/posts/521.json").len(), 3);
        assert_eq!(
            cursor_of(&app, &id).await["streams"]["search:widget"]["mark"],
            522
        );
    }
);

backend_test!(
    async fn a_page_over_the_size_cap_is_read_post_by_post_with_categories_from_topics(
        app: TestApp,
    ) {
        let key = app.key(Role::Admin).await;
        let discourse = Discourse::start().await;
        // 32,000 four-byte characters in raw and cooked: 50 such posts pass 10 MiB.
        let long = "𝔸".repeat(32_000);
        let mut posts = chatter(1, 150);
        for post in &mut posts[50..100] {
            post["raw"] = json!(long);
            post["cooked"] = json!(format!("<p>{long}</p>"));
        }
        // One of them in another category, one a private message, one deleted.
        posts[60]["category_id"] = json!(OTHER);
        posts[60]["topic_id"] = json!(5_001);
        posts[70]["category_id"] = Value::Null;
        posts[70]["topic_id"] = json!(5_002);
        posts.remove(80);
        discourse.add(posts);
        let config = discourse.config(json!({ "categories": ["support"] }));
        let id = create_source(&app, &key, "DISCOURSE", "forum", config).await;
        // The scheduler's path (no request budget): these pages are large.
        let (new, _) = sync_until_done(&app, &id).await;
        assert_eq!(new, 147);
        assert_eq!(discourse.befores(), [0, 101, 51]);
        // Each topic of the window read once.
        assert_eq!(discourse.server.seen("/t/1015.json").len(), 1);
        assert!(!stored_ids(&app).await.contains_key("post:71"));

        // 50 long posts above the mark: the newest page is over the cap, so the ids above
        // the mark are read one by one.
        let mut newer = chatter(151, 50);
        for post in &mut newer {
            post["raw"] = json!(long);
            post["cooked"] = json!(format!("<p>{long}</p>"));
        }
        discourse.add(newer);
        let (new, _) = sync_until_done(&app, &id).await;
        assert_eq!(new, 50);
        assert_eq!(cursor_of(&app, &id).await["streams"]["posts"]["mark"], 200);
        assert_eq!(sync_until_done(&app, &id).await.0, 0);
        assert_eq!(stored_ids(&app).await.len(), 197);
    }
);

backend_test!(
    async fn rate_limits_wait_the_later_time_and_a_refused_key_fails_without_showing_it(
        app: TestApp,
    ) {
        let key = app.key(Role::Admin).await;
        let discourse = Discourse::start().await;
        discourse.add(chatter(1, 80));
        let input = json!({ "channel": "DISCOURSE", "name": "limits", "scheduleSecs": 30,
            "config": discourse.config(json!({})) });
        let id = app
            .gql(&key, crate::feeds::CREATE, json!({ "input": input }))
            .await["createSource"]["source"]["id"]
            .as_str()
            .unwrap()
            .to_owned();
        let next_in = |report: &Value| {
            let next: DateTime<Utc> = report["source"]["nextRunAt"]
                .as_str()
                .unwrap()
                .parse()
                .unwrap();
            (next - Utc::now()).num_seconds()
        };
        // The first page answers, the second 429: Retry-After 30, wait_seconds 45: 45 s.
        discourse.fail(
            "/posts.json",
            vec![None, Some(rate_limited(Some("30"), 45))],
        );
        let report = sync(&app, &key, &id).await;
        assert_eq!(report["newItems"], 50, "{report:#}");
        assert_eq!(report["source"]["status"], "RATE_LIMITED", "{report:#}");
        assert!((40..=46).contains(&next_in(&report)), "{report:#}");
        // Retry-After 600 is the later one.
        discourse.fail("/posts.json", vec![Some(rate_limited(Some("600"), 45))]);
        let report = sync(&app, &key, &id).await;
        assert!((590..=601).contains(&next_in(&report)), "{report:#}");
        // wait_seconds alone.
        discourse.fail("/posts.json", vec![Some(rate_limited(None, 300))]);
        let report = sync(&app, &key, &id).await;
        assert!((290..=301).contains(&next_in(&report)), "{report:#}");
        // Then the rest, nothing lost or repeated.
        let report = sync(&app, &key, &id).await;
        assert_eq!(report["newItems"], 30, "{report:#}");
        assert_eq!(stored_ids(&app).await.len(), 80);

        // A revoked key: 403 invalid_access fails the source, and the key is not shown.
        discourse.fail(
            "/posts.json",
            vec![Some(errors(403, "You are not permitted to view the requested resource. The API username or key is invalid.", "invalid_access"))],
        );
        let report = sync(&app, &key, &id).await;
        assert_eq!(report["source"]["status"], "FAILING", "{report:#}");
        let said = report.to_string();
        assert!(said.contains("api_key"), "{report:#}");
        assert!(!said.contains("rapportTest"), "{report:#}");
        // An outage: retried later.
        discourse.fail("/posts.json", vec![Some(Reply::status(503))]);
        let report = sync(&app, &key, &id).await;
        assert_eq!(report["source"]["status"], "BACKING_OFF", "{report:#}");
    }
);

const HOOK_SECRET: &str = "dsc-acme-forum-8e1f4a2b9c7d";
const CREATE_HOOKED: &str = "mutation($input: CreateSourceInput!) { createSource(input: $input) { source { id config secretsSet webhookPath } } }";

/// `post` as a Discourse webhook carries it (`WebHookPostSerializer`: the post serialiser
/// with `raw`, the topic's title and `category_id`, without the viewer's `can_*`, `yours`,
/// `actions_summary`, flair colours and `readers_count`, plus `topic_posts_count`,
/// `topic_filtered_posts_count`, `topic_archetype` and `category_slug`), under `post`.
fn hooked(post: &Value, archetype: &str, slug: &str) -> Value {
    let mut sent = post.clone();
    let fields = sent.as_object_mut().unwrap();
    for gone in [
        "can_edit",
        "can_delete",
        "can_recover",
        "can_see_hidden_post",
        "can_wiki",
        "actions_summary",
        "can_view_edit_history",
        "yours",
        "flair_url",
        "flair_bg_color",
        "flair_color",
        "readers_count",
    ] {
        fields.remove(gone);
    }
    fields.insert("topic_posts_count".into(), json!(3));
    fields.insert("topic_filtered_posts_count".into(), json!(3));
    fields.insert("topic_archetype".into(), json!(archetype));
    fields.insert("category_slug".into(), json!(slug));
    json!({ "post": sent })
}

/// POSTs `body` to `path` with the headers Discourse sends (`emit_web_hook_event.rb`),
/// signed with `signature` (none: unsigned). The status and the answer.
async fn deliver_raw(
    app: &TestApp,
    path: &str,
    (kind, name): (&str, &str),
    signature: Option<&str>,
    body: &str,
) -> (u16, Value) {
    let mut request = app
        .client
        .post(app.url(path))
        .header("accept", "*/*")
        .header("content-type", "application/json")
        .header("user-agent", "Discourse/3.4.0")
        .header("x-discourse-instance", "https://forum.example.com")
        .header("x-discourse-event-id", "4711")
        .header("x-discourse-event-type", kind)
        .header("x-discourse-event", name);
    if let Some(signature) = signature {
        request = request.header("x-discourse-event-signature", signature);
    }
    let response = request.body(body.to_owned()).send().await.unwrap();
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    assert!(!text.contains(HOOK_SECRET), "{text}");
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// `sha256=` and the hex HMAC-SHA256 of `body` keyed with `secret`, as Discourse signs (the
/// scheme of GitHub's `X-Hub-Signature-256`, whose signer the generic webhook has).
fn signature(secret: &str, body: &str) -> String {
    connectors::webhook::Secret::parse(secret)
        .unwrap()
        .sign_github(body.as_bytes())
}

async fn deliver(
    app: &TestApp,
    path: &str,
    event: (&str, &str),
    secret: &str,
    payload: &Value,
) -> (u16, Value) {
    let body = payload.to_string();
    deliver_raw(app, path, event, Some(&signature(secret, &body)), &body).await
}

const CREATED: (&str, &str) = ("post", "post_created");

backend_test!(
    async fn webhook_deliveries_are_the_items_a_pull_makes_and_only_signed_ones_are_taken(
        app: TestApp,
    ) {
        let key = app.key(Role::Admin).await;
        let discourse = Discourse::start().await;
        let mut first = post(1, 9, 1, MAYA, "The CSV export fails with 20k rows");
        first["topic_title"] = json!("CSV export fails");
        let ours = post(2, 9, 2, ME, "Which version?");
        let mut named = post(3, 9, 3, LUCIA, "Same here on 2.0, @acme_support");
        named["reply_to_post_number"] = json!(2);
        let mut private = post(4, 12, 1, MAYA, "My contract (private)");
        private["category_id"] = Value::Null;
        let mut whisper = post(5, 9, 4, ME, "staff only");
        whisper["post_type"] = json!(4);
        discourse.add(vec![
            first.clone(),
            ours.clone(),
            named.clone(),
            private.clone(),
            whisper.clone(),
        ]);

        let input = json!({ "channel": "DISCOURSE", "name": "forum",
            "config": discourse.config(json!({ "webhook_secret": HOOK_SECRET })) });
        let source = app
            .gql(&key, CREATE_HOOKED, json!({ "input": input }))
            .await["createSource"]["source"]
            .clone();
        let id = source["id"].as_str().unwrap().to_owned();
        let mut secrets: Vec<String> =
            serde_json::from_value(source["secretsSet"].clone()).unwrap();
        secrets.sort();
        assert_eq!(secrets, ["api_key", "webhook_secret"]);
        assert!(
            !source["config"].to_string().contains(HOOK_SECRET),
            "{source}"
        );
        let path = format!("/webhooks/{id}");
        assert_eq!(source["webhookPath"], path.as_str());

        // Discourse pings a new webhook: answered, nothing stored, the forum not asked.
        let (status, answer) = deliver(
            &app,
            &path,
            ("ping", "ping"),
            HOOK_SECRET,
            &json!({ "ping": "OK" }),
        )
        .await;
        assert_eq!(status, 200, "{answer}");
        assert!(
            answer["ignored"].as_str().unwrap().contains("ping"),
            "{answer}"
        );
        assert!(stored_ids(&app).await.is_empty());

        // Webhook first: the opening post, ours and Lucía's mention arrive as deliveries.
        let mut delivered = Vec::new();
        for post in [&first, &ours, &named] {
            let (status, answer) = deliver(
                &app,
                &path,
                CREATED,
                HOOK_SECRET,
                &hooked(post, "regular", "support"),
            )
            .await;
            assert_eq!(status, 200, "{answer}");
            assert_eq!(answer["duplicate"], false, "{answer}");
            delivered.push(answer["interactionId"].as_str().unwrap().to_owned());
        }
        assert!(discourse.server.seen("/posts.json").is_empty());
        let all = items(&app, &key).await;
        let forum = reqwest::Url::parse(&discourse.server.base)
            .unwrap()
            .authority()
            .to_owned();
        let opening = &all["post:1"];
        assert_eq!(opening["kind"], "POST");
        assert_eq!(opening["subject"], "CSV export fails");
        assert_eq!(opening["channel"], "DISCOURSE");
        assert_eq!(opening["identity"]["platformId"], format!("{forum}#42"));
        assert_eq!(opening["url"], format!("{}/t/9/1", discourse.server.base));
        assert_eq!(all["post:2"]["direction"], "OUTBOUND");
        assert_eq!(all["post:2"]["kind"], "COMMENT");
        assert_eq!(all["post:3"]["kind"], "MENTION");
        assert_eq!(
            all["post:3"]["identity"]["platformId"],
            format!("{forum}#57")
        );
        for post in ["post:2", "post:3"] {
            assert_eq!(
                all[post]["conversation"]["id"], opening["conversation"]["id"],
                "{post}"
            );
        }
        assert_eq!(find_interaction(&app, &key, "post:3").await, delivered[2]);

        // A replay of a delivery (Discourse's Redeliver, or its retry) stores nothing new.
        let (status, answer) = deliver(
            &app,
            &path,
            CREATED,
            HOOK_SECRET,
            &hooked(&named, "regular", "support"),
        )
        .await;
        assert_eq!(status, 200, "{answer}");
        assert_eq!(
            (answer["duplicate"].clone(), answer["interactionId"].clone()),
            (json!(true), Value::Null)
        );
        // Then the sync: the same posts, found stored.
        let report = sync(&app, &key, &id).await;
        assert_eq!(report["error"], Value::Null, "{report:#}");
        assert_eq!(
            (report["newItems"].clone(), report["duplicates"].clone()),
            (json!(0), json!(3)),
            "{report:#}"
        );

        // Sync first: a new post synced, then delivered (edited), is stored once.
        let later = post(6, 9, 5, MAYA, "Still failing on 2.0.1");
        discourse.add(vec![later.clone()]);
        let report = sync(&app, &key, &id).await;
        assert_eq!(report["newItems"], 1, "{report:#}");
        let mut edited = later.clone();
        edited["raw"] = json!("Still failing on 2.0.1 (edited)");
        let (status, answer) = deliver(
            &app,
            &path,
            ("post", "post_edited"),
            HOOK_SECRET,
            &hooked(&edited, "regular", "support"),
        )
        .await;
        assert_eq!(status, 200, "{answer}");
        assert_eq!(answer["duplicate"], true, "{answer}");
        let before = stored_ids(&app).await;
        assert_eq!(
            before.keys().collect::<Vec<_>>(),
            ["post:1", "post:2", "post:3", "post:6"]
        );
        assert!(before.values().all(|count| *count == 1));

        // Unsigned, tampered, signed with another secret, or malformed: 401, nothing stored.
        let forged = hooked(&post(7, 9, 6, MAYA, "forged"), "regular", "support").to_string();
        let (status, answer) = deliver_raw(&app, &path, CREATED, None, &forged).await;
        assert_eq!(
            (status, answer["errors"][0]["extensions"]["code"].as_str()),
            (401, Some("UNAUTHENTICATED")),
            "{answer}"
        );
        let signed = signature(HOOK_SECRET, &forged);
        let tampered = forged.replace("forged", "forgeD");
        let other = signature("dsc-another-forum-0b9c8d7e", &forged);
        for (signature, body) in [
            (signed.as_str(), tampered.as_str()),
            (other.as_str(), forged.as_str()),
            ("sha256=zz", forged.as_str()),
            ("sha1=0123", forged.as_str()),
        ] {
            let (status, answer) = deliver_raw(&app, &path, CREATED, Some(signature), body).await;
            assert_eq!(status, 401, "{signature}: {answer}");
        }
        assert_eq!(stored_ids(&app).await, before);

        // What a pull skips is acknowledged and not stored: a private message, a whisper,
        // a post outside the categories; and events not listened to.
        let mut elsewhere = post(8, 14, 1, MAYA, "Elsewhere");
        elsewhere["category_id"] = json!(OTHER);
        let categorised = create_source(
            &app,
            &key,
            "DISCOURSE",
            "support only",
            discourse.config(json!({ "categories": ["support"], "webhook_secret": HOOK_SECRET })),
        )
        .await;
        let categorised = format!("/webhooks/{categorised}");
        let mut deleted = later.clone();
        deleted["deleted_at"] = json!("2026-11-30T12:00:00.000Z");
        for (path, event, payload) in [
            (&path, CREATED, hooked(&private, "private_message", "")),
            (&path, CREATED, hooked(&whisper, "regular", "support")),
            (
                &categorised,
                CREATED,
                hooked(&elsewhere, "regular", "other"),
            ),
            (
                &path,
                ("post", "post_destroyed"),
                hooked(&deleted, "regular", "support"),
            ),
            (
                &path,
                ("topic", "topic_created"),
                json!({ "topic": { "id": 14, "title": "Elsewhere", "archetype": "regular",
                    "category_id": OTHER, "created_by": { "id": 42, "username": "maya" } } }),
            ),
        ] {
            let (status, answer) = deliver(&app, path, event, HOOK_SECRET, &payload).await;
            assert_eq!(status, 200, "{event:?} {answer}");
            assert!(answer["ignored"].is_string(), "{event:?} {answer}");
            assert_eq!(answer["interactionId"], Value::Null);
        }
        // The configured category, known by the delivery's slug, is taken.
        let (status, answer) = deliver(
            &app,
            &categorised,
            CREATED,
            HOOK_SECRET,
            &hooked(
                &post(9, 15, 1, LUCIA, "Support question"),
                "regular",
                "support",
            ),
        )
        .await;
        assert_eq!(status, 200, "{answer}");
        assert!(answer["interactionId"].is_string(), "{answer}");
        assert_eq!(stored_ids(&app).await.len(), before.len() + 1);

        // Another workspace's Discourse source: our secret does not verify there, and a
        // source without a webhook_secret has no address at all.
        let theirs_key = app.key_in("globex", Role::Admin).await;
        let theirs = app
            .gql(
                &theirs_key,
                CREATE_HOOKED,
                json!({ "input": { "channel": "DISCOURSE", "name": "globex",
                    "config": discourse.config(json!({ "webhook_secret": "dsc-globex-forum-1a2b3c4d5e" })) } }),
            )
            .await["createSource"]["source"]
            .clone();
        let theirs_path = theirs["webhookPath"].as_str().unwrap().to_owned();
        let payload = hooked(&post(10, 16, 1, MAYA, "To globex?"), "regular", "support");
        assert_eq!(
            deliver(&app, &theirs_path, CREATED, HOOK_SECRET, &payload)
                .await
                .0,
            401
        );
        let plain = app
            .gql(
                &theirs_key,
                CREATE_HOOKED,
                json!({ "input": { "channel": "DISCOURSE", "name": "plain",
                    "config": discourse.config(json!({})) } }),
            )
            .await["createSource"]["source"]
            .clone();
        assert_eq!(plain["webhookPath"], Value::Null);
        let plain_path = format!("/webhooks/{}", plain["id"].as_str().unwrap());
        let (status, answer) = deliver(&app, &plain_path, CREATED, HOOK_SECRET, &payload).await;
        assert_eq!(status, 404, "{answer}");
        assert_eq!(stored_ids(&app).await.len(), before.len() + 1);

        // A secret shorter than 16 characters is refused, without being quoted.
        let (code, answer) = app
            .gql_error(
                &key,
                CREATE_HOOKED,
                json!({ "input": { "channel": "DISCOURSE", "name": "short",
                    "config": discourse.config(json!({ "webhook_secret": "short-secret" })) } }),
            )
            .await;
        assert_eq!(code, "BAD_USER_INPUT", "{answer}");
        assert!(!answer.to_string().contains("short-secret"), "{answer}");
    }
);

/// `count` posts from `from` as [`chatter`] makes them, each with 32,000 four-byte
/// characters in `raw` and `cooked` (50 of them pass the 10 MiB answer cap).
fn long_chatter(from: u64, count: u64) -> Vec<Value> {
    let long = "𝔸".repeat(32_000);
    let mut posts = chatter(from, count);
    for post in &mut posts {
        post["raw"] = json!(long);
        post["cooked"] = json!(format!("<p>{long}</p>"));
    }
    posts
}

/// `count` private messages from `from`, one topic each (a topic without a category is a
/// private message in the stand-in).
fn messages(from: u64, count: u64) -> Vec<Value> {
    (from..from + count)
        .map(|id| {
            let mut message = post(id, 50_000 + id, 1, MAYA, &format!("private {id}"));
            message["category_id"] = Value::Null;
            message
        })
        .collect()
}

backend_test!(
    async fn windows_with_nothing_to_take_are_walked_over_below_and_above_the_mark(app: TestApp) {
        let key = app.key(Role::Admin).await;
        let discourse = Discourse::start().await;
        // Below: posts 1…50 long, 51…100 private messages (one of them forbidden to the
        // key), 101…150 short. The page below 101 is over the cap, and its window of ids
        // 51…100 holds nothing to take: the walk goes on below it.
        let mut posts = long_chatter(1, 50);
        posts.extend(messages(51, 50));
        posts.extend(chatter(101, 50));
        discourse.add(posts);
        discourse.fail(
            "/posts/77.json",
            vec![Some(errors(
                403,
                "You are not permitted to view the requested resource.",
                "invalid_access",
            ))],
        );
        let id = create_source(
            &app,
            &key,
            "DISCOURSE",
            "forum",
            discourse.config(json!({})),
        )
        .await;
        let (new, _) = sync_until_done(&app, &id).await;
        assert_eq!(new, 100);
        assert_eq!(discourse.befores(), [0, 101, 51]);
        let stored = stored_ids(&app).await;
        assert!((1..=50)
            .chain(101..=150)
            .all(|id| stored.contains_key(&format!("post:{id}"))));
        assert_eq!(cursor_of(&app, &id).await["streams"]["posts"]["mark"], 150);

        // Above: private messages 151…200, no post 201…250 at all, then 251…300 long. The
        // mark moves over the messages, the empty window is passed, 251…300 are read; then
        // three empty windows: the mark stays, with a warning.
        let mut newer = messages(151, 50);
        newer.extend(long_chatter(251, 50));
        discourse.add(newer);
        let (new, _) = sync_until_done(&app, &id).await;
        assert_eq!(new, 50);
        let cursor = cursor_of(&app, &id).await;
        let stream = &cursor["streams"]["posts"];
        assert_eq!(stream["mark"], 300, "{cursor}");
        assert!(
            stream["warning"]
                .as_str()
                .unwrap()
                .contains("150 ids above 300"),
            "{cursor}"
        );
        // Nothing beyond the three windows was asked.
        assert!(discourse.server.seen("/posts/451.json").is_empty());
        assert_eq!(discourse.server.seen("/posts/450.json").len(), 1);

        // Newer posts come: read from the mark, the warning gone once the newest page is
        // small enough again.
        discourse.add(chatter(301, 50));
        let (new, _) = sync_until_done(&app, &id).await;
        assert_eq!(new, 50);
        let cursor = cursor_of(&app, &id).await;
        assert_eq!(cursor["streams"]["posts"]["mark"], 350, "{cursor}");
        assert_eq!(
            cursor["streams"]["posts"]["warning"],
            Value::Null,
            "{cursor}"
        );
        let stored = stored_ids(&app).await;
        assert_eq!(stored.len(), 200);
        assert!(stored.values().all(|count| *count == 1));
    }
);

backend_test!(
    async fn a_redirect_to_another_origin_is_not_followed_and_the_key_never_arrives_there(
        app: TestApp,
    ) {
        let key = app.key(Role::Admin).await;
        let discourse = Discourse::start().await;
        discourse.add(chatter(1, 3));
        // Another loopback port: another origin, as allowed by the outbound guard as the
        // forum is.
        let elsewhere = Platform::start().await;
        elsewhere.on(
            "/posts.json",
            vec![Reply::json(&json!({ "latest_posts": [] }))],
        );
        let id = create_source(
            &app,
            &key,
            "DISCOURSE",
            "forum",
            discourse.config(json!({})),
        )
        .await;
        discourse.fail(
            "/posts.json",
            vec![Some(
                Reply::status(302).header("location", &elsewhere.url("/posts.json")),
            )],
        );
        let report = sync(&app, &key, &id).await;
        let error = report["error"].as_str().unwrap();
        assert!(
            error.contains("base_url") && error.contains("302"),
            "{report:#}"
        );
        assert!(error.contains(&elsewhere.base), "{report:#}");
        assert!(!report.to_string().contains("rapportTest"), "{report:#}");
        assert_eq!(report["source"]["status"], "FAILING", "{report:#}");
        assert!(
            elsewhere.seen("/posts.json").is_empty(),
            "the key went elsewhere"
        );
        assert!(stored_ids(&app).await.is_empty());

        // Within the forum's origin a redirect is followed, with the key (the stand-in
        // checks every request carries it).
        let serving = discourse.clone();
        discourse.server.handle("/moved/posts.json", move |seen| {
            serving.failed(seen).unwrap_or_else(|| serving.latest(seen))
        });
        discourse.fail(
            "/posts.json",
            vec![Some(
                Reply::status(301).header("location", "/moved/posts.json"),
            )],
        );
        let report = sync(&app, &key, &id).await;
        assert_eq!(report["error"], Value::Null, "{report:#}");
        assert_eq!(report["newItems"], 3, "{report:#}");
        assert_eq!(discourse.server.seen("/moved/posts.json").len(), 1);
        assert!(elsewhere.seen("/posts.json").is_empty());
    }
);
