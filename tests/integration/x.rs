//! The X connector against a local stand-in for the X API v2 answering as its reference
//! says (<https://docs.x.com/x-api>: "User mention timeline" `GET /2/users/:id/mentions`,
//! "Search recent Posts" `GET /2/tweets/search/recent`, "User Posts timeline"
//! `GET /2/users/:id/tweets`, "Create Post" `POST /2/tweets`, "Rate limits", "Error
//! handling", "Pagination"): listings newest first with `data`, `includes.users` (from
//! `expansions=author_id`) and `meta` (`newest_id`, `oldest_id`, `result_count`,
//! `next_token`), an inclusive-exclusive `since_id`, paging by `pagination_token`
//! (timelines) or `next_token` (search), the mentions timeline giving only the newest 800;
//! `x-rate-limit-limit`, `-remaining` and `-reset` (epoch seconds) on every answer; errors as
//! problem objects (`title`, `detail`, `type`, `status`) or `errors` arrays beside partial
//! `data`; a created post answered `201 {"data": {"id", "text"}}`. The payloads are written
//! here, field for field from those pages, for people made up for the test.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use chrono::{DateTime, Duration, SecondsFormat, Utc};
use rapport::domain::Role;
use serde_json::{json, Value};

use crate::backend_test;
use crate::common::TestApp;
use crate::feeds::{create_source, sync};
use crate::mastodon::{find_interaction, source_row, stored_ids};
use crate::platform::{Platform, Reply, Seen};

const TOKEN: &str = "AAAAAAAAAAAAAAAAAAAAAMLheAAAAAAA0%2BuSeid%2BRapportTestz3Vn8XhQpTnS4m";
/// The workspace's own account.
const US: (&str, &str, &str) = ("1497000000000000001", "acme", "Acme Support");
const MAYA: (&str, &str, &str) = ("2244994945", "maya_l", "Maya L.");
const LUCIA: (&str, &str, &str) = ("783214", "lucia_p", "Lucía P.");
const FIELDS: &str =
    "created_at,author_id,conversation_id,in_reply_to_user_id,referenced_tweets,entities,lang";
const USER_FIELDS: &str = "name,username,profile_image_url,url,description";
const QUERY: &str = "(\"acme widgets\" OR #acme) -is:retweet";
const REPLY: &str = "mutation($input: ReplyToInteractionInput!) { replyToInteraction(input: $input) { interaction { id externalId direction kind text url conversation { id } } } }";
const ITEMS: &str = "{ interactions(first: 100) { edges { node { externalId text url kind direction language customer { id } identity { platformId handle displayName profileUrl avatarUrl } conversation { id } } } } }";

/// The first millisecond of X's snowflake ids.
const SNOWFLAKE_EPOCH_MS: i64 = 1_288_834_974_657;

/// The id of a tweet made `hours` ago (a snowflake: its time above the 22nd bit), plus `n`.
fn id_ago(hours: i64, n: u64) -> u64 {
    let ms = (Utc::now() - Duration::hours(hours)).timestamp_millis() - SNOWFLAKE_EPOCH_MS;
    ((ms as u64) << 22) + n
}

/// Tweet ids: snowflakes growing with time, from an hour before the test (recent search
/// takes only a `since_id` of its 7-day window).
fn tid(n: u64) -> String {
    static BASE: OnceLock<u64> = OnceLock::new();
    (*BASE.get_or_init(|| id_ago(1, 0)) + n).to_string()
}

/// Second `n` of the test's morning, as X writes times.
fn at(n: u64) -> String {
    (DateTime::parse_from_rfc3339("2026-12-04T08:00:00Z").unwrap() + Duration::seconds(n as i64))
        .with_timezone(&Utc)
        .to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// A User object with the fields asked for.
fn user((id, username, name): (&str, &str, &str)) -> Value {
    json!({
        "id": id, "name": name, "username": username,
        "profile_image_url": format!("https://pbs.twimg.com/profile_images/{id}/photo_normal.jpg"),
        "url": "https://t.co/k2Pq7RbX1z",
        "description": "Data person. Opinions my own."
    })
}

/// A Post object with the fields asked for, by `author`, number `n`.
fn tweet(n: u64, author: (&str, &str, &str), text: &str) -> Value {
    json!({
        "id": tid(n), "text": text, "edit_history_tweet_ids": [tid(n)],
        "author_id": author.0, "created_at": at(n), "conversation_id": tid(n), "lang": "en",
        "entities": { "mentions": [{ "start": 0, "end": 5, "username": US.1, "id": US.0 }] }
    })
}

/// `tweet` answering `to` (number) in conversation `root`, written to `whom`.
fn answer(n: u64, author: (&str, &str, &str), text: &str, to: u64, root: u64, whom: &str) -> Value {
    let mut t = tweet(n, author, text);
    t["conversation_id"] = json!(tid(root));
    t["in_reply_to_user_id"] = json!(whom);
    t["referenced_tweets"] = json!([{ "type": "replied_to", "id": tid(to) }]);
    t
}

/// What X holds and how it answers.
#[derive(Default)]
struct State {
    /// Tweets mentioning us, any order.
    mentions: Vec<Value>,
    /// Tweets the search query matches, any order.
    found: Vec<Value>,
    /// Our own tweets.
    ours: Vec<Value>,
    users: HashMap<String, Value>,
    /// The next answers of the listings (any of them), instead of the real ones.
    fail: Vec<Reply>,
    /// The next answers of the mentions timeline: `None` answers for real.
    fail_mentions: Vec<Option<Reply>>,
    /// The next answers of `POST /2/tweets` instead of making anything.
    refuse: Vec<Reply>,
    /// How many of the next posts a proxy loses (a 503 after X made the post).
    lose: usize,
    /// Posts made so far.
    posted: u64,
    /// `x-rate-limit-remaining` of listings (none: plenty).
    remaining: Option<u32>,
    /// The paging tokens given so far have expired: refused until a walk starts afresh.
    expired: bool,
}

#[derive(Clone)]
struct X {
    server: Platform,
    state: Arc<Mutex<State>>,
    /// `x-rate-limit-reset` of every answer.
    reset: i64,
}

fn query(seen: &Seen) -> HashMap<String, String> {
    reqwest::Url::parse(&format!("http://q/?{}", seen.query))
        .unwrap()
        .query_pairs()
        .map(|(key, value)| (key.into_owned(), value.into_owned()))
        .collect()
}

fn header(seen: &Seen, name: &str) -> String {
    seen.headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

/// A problem object (RFC 7807) as X answers errors.
fn problem(status: u16, title: &str, detail: &str, kind: &str) -> Reply {
    Reply {
        status,
        ..Reply::json(&json!({ "title": title, "detail": detail, "type": kind, "status": status }))
    }
}

/// X's 400 for a request parameter it refuses.
fn invalid(parameter: &str, value: &str, message: &str) -> Reply {
    Reply {
        status: 400,
        ..Reply::json(&json!({
            "errors": [{ "parameters": { parameter: [value] }, "message": message }],
            "title": "Invalid Request",
            "detail": "One or more parameters to your request was invalid.",
            "type": "https://api.twitter.com/2/problems/invalid-request"
        }))
    }
}

/// The paging token of offset `n` (X's are opaque strings).
fn token(n: usize) -> String {
    format!("7140dibdnow9c7btw4{n:x}gvxfcgvpb9n9coehpk7xz5i")
}

fn untoken(token: &str) -> usize {
    let hex = token
        .strip_prefix("7140dibdnow9c7btw4")
        .and_then(|rest| rest.strip_suffix("gvxfcgvpb9n9coehpk7xz5i"))
        .unwrap_or_else(|| panic!("not our token: {token}"));
    usize::from_str_radix(hex, 16).unwrap()
}

fn number(tweet: &Value) -> u64 {
    tweet["id"].as_str().unwrap().parse().unwrap()
}

impl X {
    async fn start() -> X {
        let x = X {
            server: Platform::start().await,
            state: Arc::new(Mutex::new(State::default())),
            reset: Utc::now().timestamp() + 900,
        };
        for person in [US, MAYA, LUCIA] {
            x.state
                .lock()
                .unwrap()
                .users
                .insert(person.0.to_owned(), user(person));
        }
        let serving = x.clone();
        x.server
            .handle(&format!("/2/users/{}/mentions", US.0), move |seen| {
                serving.checked(seen, "GET");
                let failed = {
                    let mut state = serving.state.lock().unwrap();
                    (!state.fail_mentions.is_empty())
                        .then(|| state.fail_mentions.remove(0))
                        .flatten()
                };
                failed.or_else(|| serving.failed()).unwrap_or_else(|| {
                    let tweets = serving.state.lock().unwrap().mentions.clone();
                    serving.listing(seen, tweets, 5, "pagination_token", 800)
                })
            });
        let serving = x.clone();
        x.server.handle("/2/tweets/search/recent", move |seen| {
            serving.checked(seen, "GET");
            assert_eq!(query(seen)["query"], QUERY);
            serving.failed().unwrap_or_else(|| {
                let tweets = serving.state.lock().unwrap().found.clone();
                serving.listing(seen, tweets, 10, "next_token", usize::MAX)
            })
        });
        let serving = x.clone();
        x.server
            .handle(&format!("/2/users/{}/tweets", US.0), move |seen| {
                serving.checked(seen, "GET");
                let asked = query(seen);
                assert_eq!(asked["exclude"], "retweets");
                let start: DateTime<Utc> = asked["start_time"].parse().unwrap();
                let tweets: Vec<Value> = serving
                    .state
                    .lock()
                    .unwrap()
                    .ours
                    .iter()
                    .filter(|t| {
                        t["created_at"]
                            .as_str()
                            .unwrap()
                            .parse::<DateTime<Utc>>()
                            .unwrap()
                            >= start
                    })
                    .cloned()
                    .collect();
                serving.listing(seen, tweets, 5, "pagination_token", 3_200)
            });
        let serving = x.clone();
        x.server
            .handle("/2/tweets", move |seen| serving.create(seen));
        x
    }

    /// Checks what every request carries.
    fn checked(&self, seen: &Seen, method: &str) {
        assert_eq!(seen.method, method, "{seen:?}");
        assert_eq!(header(seen, "authorization"), format!("Bearer {TOKEN}"));
        assert!(
            header(seen, "user-agent").starts_with("rapport/"),
            "{seen:?}"
        );
    }

    fn failed(&self) -> Option<Reply> {
        let mut state = self.state.lock().unwrap();
        (!state.fail.is_empty()).then(|| state.fail.remove(0))
    }

    /// The rate-limit headers X sends on every answer.
    fn limits(&self, reply: Reply) -> Reply {
        let remaining = self.state.lock().unwrap().remaining.unwrap_or(449);
        reply
            .header("x-rate-limit-limit", "450")
            .header("x-rate-limit-remaining", &remaining.to_string())
            .header("x-rate-limit-reset", &self.reset.to_string())
    }

    /// A listing's page: newest first, after `since_id`, from the paging token's offset,
    /// `max_results` of them; `window` the most the endpoint gives at all.
    fn listing(
        &self,
        seen: &Seen,
        mut tweets: Vec<Value>,
        least: usize,
        paging: &str,
        window: usize,
    ) -> Reply {
        let asked = query(seen);
        if !seen.path.ends_with("/tweets") {
            assert_eq!(asked["tweet.fields"], FIELDS);
            assert_eq!(asked["expansions"], "author_id");
            assert_eq!(asked["user.fields"], USER_FIELDS);
        }
        let max: usize = asked["max_results"].parse().unwrap();
        assert!((least..=100).contains(&max), "{asked:?}");
        // Recent search covers 7 days and refuses a `since_id` made before them.
        if let Some(since) = asked
            .get("since_id")
            .filter(|_| seen.path.ends_with("/recent"))
        {
            let made = (since.parse::<u64>().unwrap() >> 22) as i64 + SNOWFLAKE_EPOCH_MS;
            let window = (Utc::now() - Duration::days(7)).timestamp_millis();
            if made < window {
                let message = format!(
                    "Invalid 'since_id':'{since}'. 'since_id' must be a tweet id created after {}.",
                    (Utc::now() - Duration::days(7)).to_rfc3339_opts(SecondsFormat::Millis, true)
                );
                return self.limits(invalid("since_id", since, &message));
            }
        }
        {
            let mut state = self.state.lock().unwrap();
            match asked.get(paging) {
                Some(given) if state.expired => {
                    let message =
                        format!("The `{paging}` query parameter value [{given}] is not valid");
                    drop(state);
                    return self.limits(invalid(paging, given, &message));
                }
                Some(_) => {}
                None => state.expired = false,
            }
        }
        tweets.sort_by_key(|t| std::cmp::Reverse(number(t)));
        tweets.truncate(window);
        if let Some(since) = asked.get("since_id") {
            let since: u64 = since.parse().unwrap();
            tweets.retain(|t| number(t) > since);
        }
        if let Some(until) = asked.get("until_id") {
            let until: u64 = until.parse().unwrap();
            tweets.retain(|t| number(t) < until);
        }
        let from = asked.get(paging).map_or(0, |t| untoken(t));
        let page: Vec<Value> = tweets.iter().skip(from).take(max).cloned().collect();
        if page.is_empty() {
            return self.limits(Reply::json(&json!({ "meta": { "result_count": 0 } })));
        }
        let users = self.state.lock().unwrap().users.clone();
        let mut authors: Vec<Value> = Vec::new();
        for t in &page {
            let author = &users[t["author_id"].as_str().unwrap()];
            if !authors.contains(author) {
                authors.push(author.clone());
            }
        }
        let mut meta = json!({
            "newest_id": page[0]["id"], "oldest_id": page[page.len() - 1]["id"],
            "result_count": page.len()
        });
        if from + max < tweets.len() {
            meta["next_token"] = json!(token(from + max));
        }
        if from > 0 {
            meta["previous_token"] = json!(token(from.saturating_sub(max)));
        }
        self.limits(Reply::json(
            &json!({ "data": page, "includes": { "users": authors }, "meta": meta }),
        ))
    }

    /// `POST /2/tweets`: makes the post (our tweet, answering the one named) unless told
    /// otherwise.
    fn create(&self, seen: &Seen) -> Reply {
        self.checked(seen, "POST");
        assert!(header(seen, "content-type").starts_with("application/json"));
        let mut state = self.state.lock().unwrap();
        if !state.refuse.is_empty() {
            return state.refuse.remove(0);
        }
        let asked: Value = serde_json::from_slice(&seen.body).unwrap();
        state.posted += 1;
        let made = 900_000 + state.posted;
        let to = asked["reply"]["in_reply_to_tweet_id"].as_str().unwrap();
        let answered = state
            .mentions
            .iter()
            .chain(&state.found)
            .find(|t| t["id"] == to)
            .cloned()
            .unwrap();
        let whom = answered["author_id"].as_str().unwrap().to_owned();
        let username = state.users[&whom]["username"].as_str().unwrap().to_owned();
        // X puts the answered author's @name before a reply's text and shortens links.
        let text = asked["text"]
            .as_str()
            .unwrap()
            .split(' ')
            .map(|w| {
                if w.starts_with("https://") {
                    "https://t.co/Zq81xLm0Qa"
                } else {
                    w
                }
            })
            .collect::<Vec<_>>()
            .join(" ");
        let mut ours = tweet(made, US, &format!("@{username} {text}"));
        ours["created_at"] = json!(Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true));
        ours["conversation_id"] = answered["conversation_id"].clone();
        ours["in_reply_to_user_id"] = json!(whom);
        ours["referenced_tweets"] = json!([{ "type": "replied_to", "id": to }]);
        state.ours.push(ours);
        if state.lose > 0 {
            state.lose -= 1;
            return Reply::status(503);
        }
        Reply {
            status: 201,
            ..Reply::json(&json!({ "data": { "id": tid(made), "text": asked["text"] } }))
        }
        .header("x-rate-limit-limit", "200")
        .header("x-rate-limit-remaining", "199")
        .header("x-rate-limit-reset", &self.reset.to_string())
    }

    fn config(&self, extra: Value) -> Value {
        let mut config =
            json!({ "base_url": self.server.base, "bearer_token": TOKEN, "user_id": US.0 });
        for (key, value) in extra.as_object().unwrap() {
            config[key] = value.clone();
        }
        config
    }

    fn asked(&self, path: &str) -> Vec<HashMap<String, String>> {
        self.server.seen(path).iter().map(query).collect()
    }
}

fn mentions_path() -> String {
    format!("/2/users/{}/mentions", US.0)
}

/// `count` mentions by Maya from number `from`.
fn chatter(from: u64, count: u64) -> Vec<Value> {
    (from..from + count)
        .map(|n| tweet(n, MAYA, &format!("@acme question {n}")))
        .collect()
}

/// The newest 100 interactions by external id.
async fn all_items(app: &TestApp, key: &str) -> HashMap<String, Value> {
    app.gql(key, ITEMS, json!({})).await["interactions"]["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["node"]["externalId"].as_str().unwrap().to_owned(),
                e["node"].clone(),
            )
        })
        .collect()
}

async fn cursor_of(app: &TestApp, id: &str) -> Value {
    let cursor = source_row(app, id).await.cursor.unwrap();
    assert!(!cursor.contains("RapportTest"), "{cursor}");
    serde_json::from_str(&cursor).unwrap()
}

backend_test!(
    async fn a_first_sync_backfills_mentions_and_search_over_pages_then_only_new_ones(
        app: TestApp,
    ) {
        let key = app.key(Role::Admin).await;
        let x = X::start().await;
        x.state.lock().unwrap().mentions = chatter(1, 250);
        // 120 search results, one of them also a mention (stored once).
        let mut found: Vec<Value> = (1_000..1_119)
            .map(|n| tweet(n, LUCIA, &format!("loving #acme {n}")))
            .collect();
        found.push(tweet(7, MAYA, "@acme question 7"));
        x.state.lock().unwrap().found = found;
        let input = json!({ "channel": "X", "name": "x", "config": x.config(json!({
            "keywords": ["acme widgets", "#acme", "#Acme"]
        })) });
        let created = app
            .gql(&key, crate::feeds::CREATE, json!({ "input": input }))
            .await;
        let source = &created["createSource"]["source"];
        assert_eq!(source["secretsSet"], json!(["bearer_token"]));
        assert!(!source["config"].to_string().contains("RapportTest"));
        let id = source["id"].as_str().unwrap().to_owned();

        let report = sync(&app, &key, &id).await;
        assert_eq!(report["error"], Value::Null, "{report:#}");
        assert_eq!(report["newItems"], 250 + 119, "{report:#}");
        // Mentions: three pages back by pagination_token; search: two by next_token.
        let asked = x.asked(&mentions_path());
        assert_eq!(asked.len(), 3);
        assert_eq!(asked[0].get("pagination_token"), None);
        assert_eq!(asked[0].get("since_id"), None);
        assert_eq!(asked[0]["max_results"], "100");
        assert_eq!(asked[1]["pagination_token"], token(100));
        assert_eq!(asked[2]["pagination_token"], token(200));
        let searched = x.asked("/2/tweets/search/recent");
        assert_eq!(searched.len(), 2);
        assert_eq!(searched[1]["next_token"], token(100));
        let cursor = cursor_of(&app, &id).await;
        assert_eq!(cursor["streams"]["mentions"], json!({ "newest": tid(250) }));
        assert_eq!(
            cursor["streams"][format!("search:{QUERY}")],
            json!({ "newest": tid(1_118) })
        );

        // New: two mentions, a retweet of one (skipped), and our own post found by the
        // search (outbound).
        let mut retweet = tweet(253, LUCIA, "RT @maya_l: @acme question 251");
        retweet["referenced_tweets"] = json!([{ "type": "retweeted", "id": tid(251) }]);
        {
            let mut state = x.state.lock().unwrap();
            state.mentions.extend(chatter(251, 2));
            state.mentions.push(retweet);
            state.found.push(tweet(1_200, US, "Meet #acme at the fair"));
        }
        let report = sync(&app, &key, &id).await;
        assert_eq!(report["error"], Value::Null, "{report:#}");
        assert_eq!(report["newItems"], 3, "{report:#}");
        let asked = x.asked(&mentions_path());
        assert_eq!(asked[3]["since_id"], tid(250));
        assert_eq!(asked[3].get("pagination_token"), None);
        assert_eq!(
            x.asked("/2/tweets/search/recent")[2]["since_id"],
            tid(1_118)
        );
        let report = sync(&app, &key, &id).await;
        assert_eq!(report["newItems"], 0, "{report:#}");
        assert_eq!(x.asked(&mentions_path())[4]["since_id"], tid(253));
        let stored = stored_ids(&app).await;
        assert_eq!(stored.len(), 250 + 119 + 3);
        assert!(stored.values().all(|count| *count == 1));
        assert!(!stored.contains_key(&tid(253)));
        // Newest first: our post is on the first page.
        let ours = &all_items(&app, &key).await[&tid(1_200)];
        assert_eq!(ours["direction"], "OUTBOUND", "{ours:#}");
        assert_eq!(ours["kind"], "POST", "{ours:#}");

        // backfill_limit 150: a page and a half of mentions, then only new ones.
        let some = create_source(
            &app,
            &key,
            "X",
            "some",
            x.config(json!({ "backfill_limit": 150 })),
        )
        .await;
        let report = sync(&app, &key, &some).await;
        assert_eq!(report["newItems"], 150, "{report:#}");
        assert_eq!(
            cursor_of(&app, &some).await["streams"]["mentions"]["newest"],
            tid(253)
        );

        // backfill_limit 0: the smallest page, only to learn where the source starts.
        let quiet = create_source(
            &app,
            &key,
            "X",
            "quiet",
            x.config(json!({ "backfill_limit": 0, "keywords": ["acme widgets", "#acme"] })),
        )
        .await;
        let report = sync(&app, &key, &quiet).await;
        assert_eq!(report["newItems"], 0, "{report:#}");
        let asked = x.asked(&mentions_path()).pop().unwrap();
        assert_eq!(asked["max_results"], "5");
        assert_eq!(
            x.asked("/2/tweets/search/recent").pop().unwrap()["max_results"],
            "10"
        );
        x.state.lock().unwrap().mentions.extend(chatter(260, 1));
        let report = sync(&app, &key, &quiet).await;
        assert_eq!(report["newItems"], 1, "{report:#}");
    }
);

backend_test!(
    async fn a_failure_mid_backfill_resumes_at_its_page_and_limits_and_errors_are_honoured(
        app: TestApp,
    ) {
        let key = app.key(Role::Admin).await;
        let x = X::start().await;
        x.state.lock().unwrap().mentions = chatter(1, 250);
        let input = json!({ "channel": "X", "name": "x", "scheduleSecs": 30,
            "config": x.config(json!({})) });
        let id = app
            .gql(&key, crate::feeds::CREATE, json!({ "input": input }))
            .await["createSource"]["source"]["id"]
            .as_str()
            .unwrap()
            .to_owned();
        // The second page answers 503: the first is stored with its place, and the next
        // sync goes on from that page.
        x.state.lock().unwrap().fail_mentions = vec![
            None,
            Some(problem(
                503,
                "Service Unavailable",
                "Service Unavailable",
                "about:blank",
            )),
            Some(problem(
                503,
                "Service Unavailable",
                "Service Unavailable",
                "about:blank",
            )),
        ];
        let report = sync(&app, &key, &id).await;
        assert!(
            report["error"].as_str().unwrap().contains("503"),
            "{report:#}"
        );
        assert_eq!(report["newItems"], 100, "{report:#}");
        assert_eq!(report["source"]["status"], "BACKING_OFF", "{report:#}");
        let cursor = cursor_of(&app, &id).await;
        let walk = &cursor["streams"]["mentions"]["walk"];
        assert_eq!(walk["token"], token(100), "{cursor}");
        assert_eq!(walk["left"], 900, "{cursor}");
        let report = sync(&app, &key, &id).await;
        assert_eq!(report["error"], Value::Null, "{report:#}");
        assert_eq!(report["newItems"], 150, "{report:#}");
        let asked = x.asked(&mentions_path());
        assert_eq!(asked[3]["pagination_token"], token(100));
        assert_eq!(stored_ids(&app).await.len(), 250);

        // A 200 with `x-rate-limit-remaining: 0`: the page is kept and nothing more is asked
        // before the reset.
        {
            let mut state = x.state.lock().unwrap();
            state.mentions.extend(chatter(300, 3));
            state.remaining = Some(0);
        }
        let report = sync(&app, &key, &id).await;
        assert_eq!(report["newItems"], 3, "{report:#}");
        assert_eq!(report["source"]["status"], "RATE_LIMITED", "{report:#}");
        let next: DateTime<Utc> = report["source"]["nextRunAt"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!((next.timestamp() - x.reset).abs() <= 1, "{next}");
        x.state.lock().unwrap().remaining = None;

        // 429: a rate limit until the reset X names.
        let reset = Utc::now().timestamp() + 600;
        x.state.lock().unwrap().fail =
            vec![
                problem(429, "Too Many Requests", "Too Many Requests", "about:blank")
                    .header("x-rate-limit-limit", "450")
                    .header("x-rate-limit-remaining", "0")
                    .header("x-rate-limit-reset", &reset.to_string()),
            ];
        let report = sync(&app, &key, &id).await;
        assert_eq!(report["source"]["status"], "RATE_LIMITED", "{report:#}");
        let next: DateTime<Utc> = report["source"]["nextRunAt"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!((next.timestamp() - reset).abs() <= 1, "{next}");

        // A 200 with an `errors` array beside partial data: the data is kept.
        let mut partial = tweet(400, MAYA, "@acme still there?");
        partial["referenced_tweets"] = json!([{ "type": "quoted", "id": "1" }]);
        x.state.lock().unwrap().fail = vec![x.limits(Reply::json(&json!({
            "data": [partial],
            "includes": { "users": [user(MAYA)] },
            "errors": [{
                "value": "1", "detail": "Could not find tweet with referenced_tweets.id: [1].",
                "title": "Not Found Error", "resource_type": "tweet",
                "parameter": "referenced_tweets.id", "resource_id": "1",
                "type": "https://api.twitter.com/2/problems/resource-not-found"
            }],
            "meta": { "newest_id": tid(400), "oldest_id": tid(400), "result_count": 1 }
        })))];
        let report = sync(&app, &key, &id).await;
        assert_eq!(report["error"], Value::Null, "{report:#}");
        assert_eq!(report["newItems"], 1, "{report:#}");

        // A revoked token: 401, the source fails, and nothing shows the token.
        x.state.lock().unwrap().fail =
            vec![problem(401, "Unauthorized", "Unauthorized", "about:blank")];
        let report = sync(&app, &key, &id).await;
        let said = report.to_string();
        assert!(said.contains("bearer_token"), "{report:#}");
        assert!(said.contains("401"), "{report:#}");
        assert!(!said.contains("RapportTest"), "{report:#}");
        assert_ne!(report["source"]["status"], "OK", "{report:#}");

        // A search the access level does not include (403 problem) is that stream's
        // warning; the mentions go on.
        let both = create_source(
            &app,
            &key,
            "X",
            "both",
            x.config(json!({ "keywords": ["acme widgets", "#acme"], "backfill_limit": 5 })),
        )
        .await;
        x.state.lock().unwrap().fail = vec![
            x.limits(Reply::json(&json!({ "data": chatter(500, 5), "includes": { "users": [user(MAYA)] },
                "meta": { "newest_id": tid(504), "oldest_id": tid(500), "result_count": 5 } }))),
            problem(
                403,
                "Client Forbidden",
                "When authenticating requests to the Twitter API v2 endpoints, you must use keys and tokens from a Twitter developer App that is attached to a Project.",
                "https://api.twitter.com/2/problems/client-forbidden",
            ),
        ];
        let report = sync(&app, &key, &both).await;
        assert_eq!(report["error"], Value::Null, "{report:#}");
        assert_eq!(report["newItems"], 5, "{report:#}");
        let warning = cursor_of(&app, &both).await["streams"][format!("search:{QUERY}")]["warning"]
            .as_str()
            .unwrap()
            .to_owned();
        assert!(
            warning.contains("403") && warning.contains("attached to a Project"),
            "{warning}"
        );

        // Config: a user name where the id belongs is refused by name.
        let input = json!({ "channel": "X", "name": "bad",
            "config": x.config(json!({ "user_id": "@acme" })) });
        let (code, body) = app
            .gql_error(&key, crate::feeds::CREATE, json!({ "input": input }))
            .await;
        assert_eq!(code, "BAD_USER_INPUT");
        assert_eq!(
            body["errors"][0]["extensions"]["field"], "config.user_id",
            "{body:#}"
        );
        assert!(!body.to_string().contains("RapportTest"));
    }
);

backend_test!(
    async fn tweets_thread_by_conversation_and_a_reply_is_a_post_read_back_when_its_answer_is_lost(
        app: TestApp,
    ) {
        let key = app.key(Role::Admin).await;
        let x = X::start().await;
        // Maya asks; we answered (our tweet, outbound); Lucía answers us in the same
        // conversation; Maya quotes us in another.
        let ask = tweet(10, MAYA, "@acme the CSV export fails &amp; times out");
        let ours = answer(20, US, "@maya_l Which file size?", 10, 10, MAYA.0);
        let lucia = answer(
            30,
            LUCIA,
            "@acme @maya_l Mine fails at 20k rows",
            20,
            10,
            US.0,
        );
        let mut quote = tweet(40, MAYA, "@acme this! 👇");
        quote["referenced_tweets"] = json!([{ "type": "quoted", "id": tid(5) }]);
        quote["lang"] = json!("qme");
        x.state.lock().unwrap().mentions = vec![ask, ours, lucia, quote];
        let id_ = create_source(&app, &key, "X", "x", x.config(json!({}))).await;
        let report = sync(&app, &key, &id_).await;
        assert_eq!(report["error"], Value::Null, "{report:#}");
        assert_eq!(report["newItems"], 4, "{report:#}");

        let all = all_items(&app, &key).await;
        let asked = &all[&tid(10)];
        assert_eq!(asked["kind"], "MENTION");
        assert_eq!(asked["text"], "@acme the CSV export fails & times out");
        assert_eq!(
            asked["url"],
            format!("https://x.com/maya_l/status/{}", tid(10))
        );
        assert_eq!(asked["language"], "en");
        assert_eq!(
            asked["identity"],
            json!({
                "platformId": MAYA.0, "handle": "@maya_l", "displayName": "Maya L.",
                "profileUrl": "https://x.com/maya_l",
                "avatarUrl": format!("https://pbs.twimg.com/profile_images/{}/photo_normal.jpg", MAYA.0)
            })
        );
        let ours = &all[&tid(20)];
        assert_eq!(ours["direction"], "OUTBOUND");
        assert_eq!(ours["kind"], "REPLY");
        let answered = &all[&tid(30)];
        assert_eq!(answered["kind"], "REPLY");
        assert_eq!(answered["identity"]["platformId"], LUCIA.0);
        // One conversation by conversation_id.
        assert_eq!(answered["conversation"]["id"], asked["conversation"]["id"]);
        assert_eq!(ours["conversation"]["id"], asked["conversation"]["id"]);
        let quoted = &all[&tid(40)];
        assert_eq!(quoted["kind"], "MENTION");
        assert_ne!(quoted["conversation"]["id"], asked["conversation"]["id"]);
        // Maya is one customer by her user id.
        assert_eq!(quoted["customer"]["id"], asked["customer"]["id"]);
        assert_ne!(answered["customer"]["id"], asked["customer"]["id"]);

        // A reply: POST /2/tweets answering Lucía's tweet.
        let agent = app.key(Role::Agent).await;
        let target = find_interaction(&app, &key, &tid(30)).await;
        let text = "Fixed in 2.0.1 — thanks Lucía! Details: https://example.com/changelog";
        let sent = app
            .gql(
                &agent,
                REPLY,
                json!({ "input": { "interactionId": target, "text": text } }),
            )
            .await["replyToInteraction"]["interaction"]
            .clone();
        let posted = x.server.seen("/2/tweets");
        assert_eq!(posted.len(), 1);
        assert_eq!(posted[0].method, "POST");
        assert_eq!(
            header(&posted[0], "authorization"),
            format!("Bearer {TOKEN}")
        );
        assert!(header(&posted[0], "content-type").starts_with("application/json"));
        assert_eq!(
            serde_json::from_slice::<Value>(&posted[0].body).unwrap(),
            json!({ "text": text, "reply": { "in_reply_to_tweet_id": tid(30) } })
        );
        assert_eq!(sent["externalId"], tid(900_001));
        assert_eq!(sent["direction"], "OUTBOUND");
        assert_eq!(
            sent["url"],
            format!("https://x.com/i/web/status/{}", tid(900_001))
        );
        assert_eq!(sent["conversation"]["id"], asked["conversation"]["id"]);

        // 280 weighted characters at most: 141 CJK characters weigh 282; nothing is sent.
        let long = json!({ "interactionId": target, "text": "字".repeat(141) });
        let (code, _) = app.gql_error(&agent, REPLY, json!({ "input": long })).await;
        assert_eq!(code, "BAD_USER_INPUT");
        // 256 letters and a long link weigh 280 (a link is 23): taken.
        let full = format!(
            "{} https://example.com/{}",
            "a".repeat(256),
            "p".repeat(200)
        );
        app.gql(
            &agent,
            REPLY,
            json!({ "input": { "interactionId": target, "text": full } }),
        )
        .await;
        assert_eq!(x.server.seen("/2/tweets").len(), 2);

        // An app-only token cannot post: 403, said so, the token nowhere.
        x.state.lock().unwrap().refuse = vec![problem(
            403,
            "Unsupported Authentication",
            "Authenticating with OAuth 2.0 Application-Only is forbidden for this endpoint.  Supported authentication types are [OAuth 1.0a User Context, OAuth 2.0 User Context].",
            "https://api.twitter.com/2/problems/unsupported-authentication",
        )];
        let (_, answer) = app
            .gql_error(
                &agent,
                REPLY,
                json!({ "input": { "interactionId": target, "text": "Hello?" } }),
            )
            .await;
        let said = answer.to_string();
        assert!(said.contains("user-context token"), "{said}");
        assert!(said.contains("Application-Only"), "{said}");
        assert!(!said.contains("RapportTest"), "{said}");

        // X fails before making anything (503): nothing of ours answers Maya with these
        // words, so the reply fails and nothing is taken for it.
        let maya = find_interaction(&app, &key, &tid(10)).await;
        let words = "We are on it, https://example.com/status";
        x.state.lock().unwrap().refuse = vec![problem(
            503,
            "Service Unavailable",
            "Service Unavailable",
            "about:blank",
        )];
        let (_, answer) = app
            .gql_error(
                &agent,
                REPLY,
                json!({ "input": { "interactionId": maya, "text": words } }),
            )
            .await;
        assert!(answer.to_string().contains("503"), "{answer:#}");
        assert_eq!(x.state.lock().unwrap().posted, 2);

        // X makes it but the answer is lost (503): our tweets since Maya's are read back,
        // the one answering hers with these words (her @name before it, the link a t.co
        // one) is the reply, and nothing is posted twice.
        x.state.lock().unwrap().lose = 1;
        let sent = app
            .gql(
                &agent,
                REPLY,
                json!({ "input": { "interactionId": maya, "text": words } }),
            )
            .await["replyToInteraction"]["interaction"]
            .clone();
        assert_eq!(sent["externalId"], tid(900_003), "{sent:#}");
        assert_eq!(x.state.lock().unwrap().posted, 3);
        let read = x.asked(&format!("/2/users/{}/tweets", US.0));
        assert_eq!(read.last().unwrap()["since_id"], tid(10));
        assert_eq!(stored_ids(&app).await[&tid(900_003)], 1);
    }
);

backend_test!(
    async fn an_old_since_id_is_not_sent_to_search_and_an_expired_paging_token_resumes_below_the_oldest_read(
        app: TestApp,
    ) {
        let key = app.key(Role::Admin).await;
        let x = X::start().await;
        // A keyword last heard of eight days ago: its newest id is past search's window.
        let old = id_ago(8 * 24, 0);
        let mut aged = tweet(0, LUCIA, "loving #acme, long ago");
        aged["id"] = json!(old.to_string());
        aged["conversation_id"] = json!(old.to_string());
        x.state.lock().unwrap().found = vec![aged];
        let id = create_source(
            &app,
            &key,
            "X",
            "x",
            x.config(json!({ "keywords": ["acme widgets", "#acme"] })),
        )
        .await;
        let report = sync(&app, &key, &id).await;
        assert_eq!(report["newItems"], 1, "{report:#}");
        let stream = format!("search:{QUERY}");
        assert_eq!(
            cursor_of(&app, &id).await["streams"][&stream],
            json!({ "newest": old.to_string() })
        );
        // Now new posts: the search is asked without the old since_id (X would answer 400),
        // what was seen is skipped by the stored id, and the new ones come in.
        x.state
            .lock()
            .unwrap()
            .found
            .extend((1..=3).map(|n| tweet(n, LUCIA, &format!("loving #acme {n}"))));
        let report = sync(&app, &key, &id).await;
        assert_eq!(report["error"], Value::Null, "{report:#}");
        assert_eq!(report["newItems"], 3, "{report:#}");
        let searched = x.asked("/2/tweets/search/recent");
        assert_eq!(searched[1].get("since_id"), None, "{searched:?}");
        let cursor = cursor_of(&app, &id).await;
        assert_eq!(cursor["streams"][&stream], json!({ "newest": tid(3) }));
        // A recent newest id is sent again.
        x.state
            .lock()
            .unwrap()
            .found
            .push(tweet(4, MAYA, "#acme again"));
        let report = sync(&app, &key, &id).await;
        assert_eq!(report["newItems"], 1, "{report:#}");
        assert_eq!(x.asked("/2/tweets/search/recent")[2]["since_id"], tid(3));
        let stored = stored_ids(&app).await;
        assert_eq!(stored.len(), 5);
        assert!(stored.values().all(|count| *count == 1));

        // A backfill stopped at its second page (503) whose token has expired when the
        // next sync comes: X answers 400, and the walk goes on below the oldest post read.
        let x = X::start().await;
        x.state.lock().unwrap().mentions = chatter(100, 250);
        let walker = create_source(&app, &key, "X", "walker", x.config(json!({}))).await;
        let unavailable = || {
            Some(problem(
                503,
                "Service Unavailable",
                "Service Unavailable",
                "about:blank",
            ))
        };
        // Two: a 5xx is tried once more.
        x.state.lock().unwrap().fail_mentions = vec![None, unavailable(), unavailable()];
        let report = sync(&app, &key, &walker).await;
        assert_eq!(report["newItems"], 100, "{report:#}");
        let before = x.asked(&mentions_path()).len();
        assert_eq!(
            cursor_of(&app, &walker).await["streams"]["mentions"]["walk"]["token"],
            token(100)
        );
        x.state.lock().unwrap().expired = true;
        // One sync: the refused token, then below the oldest of the first 100 (no page
        // asked again, nothing met twice); the page after that fails (503, twice).
        x.state.lock().unwrap().fail_mentions = vec![None, None, unavailable(), unavailable()];
        let report = sync(&app, &key, &walker).await;
        assert_eq!(
            (report["newItems"].clone(), report["duplicates"].clone()),
            (json!(100), json!(0)),
            "{report:#}"
        );
        let asked = x.asked(&mentions_path());
        assert_eq!(asked[before]["pagination_token"], token(100));
        assert_eq!(asked[before + 1].get("pagination_token"), None);
        assert_eq!(asked[before + 1].get("since_id"), None);
        assert_eq!(asked[before + 1]["until_id"], tid(250));
        assert_eq!(asked[before + 2]["pagination_token"], token(100));
        assert_eq!(asked[before + 2]["until_id"], tid(250));
        // The token expires again: on below the walk's new oldest, down to the end.
        x.state.lock().unwrap().expired = true;
        let report = sync(&app, &key, &walker).await;
        assert_eq!(report["error"], Value::Null, "{report:#}");
        assert_eq!(
            (report["newItems"].clone(), report["duplicates"].clone()),
            (json!(50), json!(0)),
            "{report:#}"
        );
        let asked = x.asked(&mentions_path());
        assert_eq!(asked[before + 4]["pagination_token"], token(100));
        assert_eq!(asked[before + 5].get("pagination_token"), None);
        assert_eq!(asked[before + 5]["until_id"], tid(150));
        assert_eq!(asked.len(), before + 6);
        assert_eq!(
            cursor_of(&app, &walker).await["streams"]["mentions"],
            json!({ "newest": tid(349) })
        );
        assert_eq!(stored_ids(&app).await.len(), 5 + 250);
    }
);

backend_test!(
    async fn another_account_needs_its_own_token(app: TestApp) {
        let key = app.key(Role::Admin).await;
        let x = X::start().await;
        let id = create_source(&app, &key, "X", "acme", x.config(json!({}))).await;
        let update = "mutation($id: ID!, $config: JSON!) { updateSource(input: {id: $id, config: $config}) { source { config secretsSet } } }";
        let mut moved = x.config(json!({ "user_id": MAYA.0 }));
        moved.as_object_mut().unwrap().remove("bearer_token");
        // The stored token speaks for our account: it is not kept for another one.
        let (code, body) = app
            .gql_error(&key, update, json!({ "id": id, "config": moved }))
            .await;
        assert_eq!(code, "BAD_USER_INPUT", "{body}");
        assert_eq!(
            body["errors"][0]["extensions"]["field"], "config.bearer_token",
            "{body}"
        );
        assert!(body.to_string().contains("user_id"), "{body}");
        assert!(!body.to_string().contains("RapportTest"), "{body}");
        // The same account with another setting keeps it; another account with its token is taken.
        let mut kept = x.config(json!({ "keywords": ["acme"] }));
        kept.as_object_mut().unwrap().remove("bearer_token");
        let changed = app
            .gql(&key, update, json!({ "id": id, "config": kept }))
            .await;
        assert_eq!(
            changed["updateSource"]["source"]["secretsSet"],
            json!(["bearer_token"])
        );
        let given = x.config(json!({ "user_id": MAYA.0 }));
        let changed = app
            .gql(&key, update, json!({ "id": id, "config": given }))
            .await;
        assert_eq!(
            changed["updateSource"]["source"]["config"]["user_id"],
            MAYA.0
        );
    }
);

backend_test!(
    async fn a_page_without_posts_but_with_a_next_token_does_not_end_a_walk(app: TestApp) {
        let key = app.key(Role::Admin).await;
        let x = X::start().await;
        let empty = |n: usize| {
            Some(Reply::json(
                &json!({ "meta": { "result_count": 0, "next_token": token(n) } }),
            ))
        };
        // The newest page comes back without a post (X drops deleted, protected and
        // withheld posts after paging) but with a token: the walk goes on with it.
        {
            let mut state = x.state.lock().unwrap();
            state.mentions = chatter(1, 150);
            state.fail_mentions = vec![empty(100)];
        }
        let id = create_source(&app, &key, "X", "x", x.config(json!({}))).await;
        let report = sync(&app, &key, &id).await;
        assert_eq!(report["error"], Value::Null, "{report:#}");
        assert_eq!(report["newItems"], 50, "{report:#}");
        let asked = x.asked(&mentions_path());
        assert_eq!(asked.len(), 2);
        assert_eq!(asked[1]["pagination_token"], token(100));
        let cursor = cursor_of(&app, &id).await;
        assert_eq!(cursor["streams"]["mentions"].get("walk"), None, "{cursor}");
        assert_eq!(
            cursor["streams"]["mentions"].get("warning"),
            None,
            "{cursor}"
        );

        // Eleven in a row: the walk stops there, and the stream says so.
        x.state.lock().unwrap().fail_mentions = (1..=11).map(empty).collect();
        let id = create_source(&app, &key, "X", "x2", x.config(json!({}))).await;
        let report = sync(&app, &key, &id).await;
        assert_eq!(report["error"], Value::Null, "{report:#}");
        assert_eq!(x.asked(&mentions_path()).len(), 2 + 11);
        let cursor = cursor_of(&app, &id).await;
        let mentions = &cursor["streams"]["mentions"];
        assert_eq!(mentions.get("walk"), None, "{cursor}");
        assert!(
            mentions["warning"]
                .as_str()
                .unwrap()
                .contains("X answered 11 pages in a row with nothing to read"),
            "{cursor}"
        );
    }
);
