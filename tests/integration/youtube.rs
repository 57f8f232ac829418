//! The YouTube connector against a local stand-in for the YouTube Data API v3 answering as
//! its reference says (<https://developers.google.com/youtube/v3/docs>: "CommentThreads:
//! list", "CommentThreads" resource, "Comments: list", "Comments: insert", "Comments"
//! resource, "Channels: list", "Errors"): `commentThreads.list` filtered by
//! `allThreadsRelatedToChannelId`, `videoId` or `id`, newest thread first with
//! `order=time`, `maxResults` 1 to 100 and opaque `nextPageToken`s; a thread's `replies`
//! holding only some of its replies, the rest from `comments.list?parentId=`;
//! `comments.insert` returning the comment resource; `textOriginal` only for the viewer's
//! own comments; errors as `{"error": {"code", "message", "errors": [{"message", "domain",
//! "reason"}]}}` with the code as the status; JSON answers with Google's usual headers. The
//! payloads are written here, field for field from those pages, for people made up for the
//! test.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Duration, SecondsFormat, Timelike, Utc};
use rapport::domain::Role;
use serde_json::{json, Value};

use crate::backend_test;
use crate::common::TestApp;
use crate::feeds::{create_source, items, sync};
use crate::mastodon::{find_interaction, source_row, stored_ids};
use crate::platform::{Platform, Reply, Seen};

const KEY: &str = "AIzaSyRapportTestKey_0123456789abcdefgh";
const TOKEN: &str = "ya29.a0AfB_RapportTestToken-k9v2Lw8XhQpTnS4m";
/// The workspace's channel.
const CHANNEL: &str = "UCk3f9rY2pLmQx7Zt1Vb8NwA";
const VIDEO: &str = "Xq3vTn8LmPw";
const OTHER_VIDEO: &str = "Lm0pQr5StUv";
const MAYA: (&str, &str) = ("UCmaya0Lk9F3xVq2Zt7Bw1yA", "@maya_makes");
const LUCIA: (&str, &str) = ("UClucia8Rt5Wq1Yp3Xs9Nb2e", "@lucia.p");
/// A reviewer whose video about the product a source chooses: a stranger, not us.
const REVIEWER: (&str, &str) = ("UCrevu3Xk8Wq2Lp5Zt9Bn1yC", "@gadget_reviews");
const REVIEW_VIDEO: &str = "Rv7kPq2WxYz";
const REPLY: &str = "mutation($input: ReplyToInteractionInput!) { replyToInteraction(input: $input) { interaction { id externalId direction kind text url conversation { id } } } }";
const IDENTITIES: &str = "query($id: ID!) { customer(id: $id) { displayName identities { channel platformId handle displayName profileUrl avatarUrl } } }";
/// Replies a thread holds in its `replies` part.
const INLINE: usize = 5;

/// What YouTube holds and how it answers.
#[derive(Default)]
struct State {
    /// Top-level comments with their video, by thread id.
    threads: Vec<(String, Value)>,
    /// Every reply of each thread, oldest first.
    replies: HashMap<String, Vec<Value>>,
    /// The next thread listings (by channel or video, not by id) answer this instead.
    fail: Vec<Reply>,
    /// Videos with comments turned off.
    disabled: HashSet<String>,
    /// The channel of each video not ours.
    owners: HashMap<String, String>,
    /// Comments inserted so far.
    inserted: u64,
    /// How many of the next inserts a proxy loses (a 502 after YouTube made the comment).
    lose: usize,
    /// How many of the next inserts answer 503 before making anything.
    down: usize,
}

#[derive(Clone)]
struct Youtube {
    server: Platform,
    state: Arc<Mutex<State>>,
}

fn stamp(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// Minute `n` after the test's start of comments (2026-11-02 09:00 UTC).
fn minute(n: i64) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-11-02T09:00:00Z")
        .unwrap()
        .to_utc()
        + Duration::minutes(n)
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
        .map(|(key, value)| (key.into_owned(), value.into_owned()))
        .collect()
}

/// A Google API error answer.
fn error(code: u16, domain: &str, reason: &str, message: &str) -> Reply {
    let body = json!({ "error": { "code": code, "message": message, "errors": [
        { "message": message, "domain": domain, "reason": reason }
    ] } });
    Reply {
        status: code,
        ..google(&body)
    }
}

/// A JSON answer with the headers Google's APIs send.
fn google(body: &Value) -> Reply {
    Reply::ok("application/json; charset=UTF-8", body.to_string())
        .header("vary", "Origin, X-Origin, Referer")
        .header("server", "scaffolding on HTTPServer2")
        .header("cache-control", "private")
        .header("x-content-type-options", "nosniff")
        .header("x-frame-options", "SAMEORIGIN")
}

/// A top-level comment's id as YouTube spells them.
fn thread_id(n: u64) -> String {
    format!("Ugz{n:07}Rt5Wq1Yp3X4AaABAg")
}

/// A comment resource by `(channel id, display name)`.
fn comment(
    id: &str,
    author: (&str, &str),
    text: &str,
    at: DateTime<Utc>,
    parent: Option<&str>,
) -> Value {
    let handle = author.1;
    let mut snippet = json!({
        "authorDisplayName": handle,
        "authorProfileImageUrl": format!("https://yt3.ggpht.com/ytc/{}=s48-c-k-c0x00ffffff-no-rj", &author.0[2..10]),
        "authorChannelUrl": format!("http://www.youtube.com/{handle}"),
        "authorChannelId": { "value": author.0 },
        "channelId": CHANNEL,
        "textDisplay": text,
        "canRate": true,
        "viewerRating": "none",
        "likeCount": 2,
        "publishedAt": stamp(at),
        "updatedAt": stamp(at)
    });
    // The original text is returned only to its author.
    if author.0 == CHANNEL {
        snippet["textOriginal"] = json!(text);
    }
    if let Some(parent) = parent {
        snippet["parentId"] = json!(parent);
    }
    json!({ "kind": "youtube#comment", "etag": format!("e{}", id.len()), "id": id, "snippet": snippet })
}

impl Youtube {
    async fn start() -> Youtube {
        let youtube = Youtube {
            server: Platform::start().await,
            state: Arc::new(Mutex::new(State::default())),
        };
        let serving = youtube.clone();
        youtube
            .server
            .handle("/youtube/v3/commentThreads", move |seen| {
                serving.threads(seen)
            });
        let serving = youtube.clone();
        youtube.server.handle("/youtube/v3/comments", move |seen| {
            if seen.method == "POST" {
                serving.insert(seen)
            } else {
                serving.comments(seen)
            }
        });
        let serving = youtube.clone();
        youtube.server.handle("/youtube/v3/channels", move |seen| {
            serving.authorized(seen);
            let q = query(seen);
            assert_eq!((q["part"].as_str(), q["mine"].as_str()), ("id", "true"));
            google(&json!({
                "kind": "youtube#channelListResponse", "etag": "c1",
                "pageInfo": { "totalResults": 1, "resultsPerPage": 5 },
                "items": [{ "kind": "youtube#channel", "etag": "c2", "id": CHANNEL }]
            }))
        });
        youtube
    }

    /// Checks what every request carries: the key as `key`, or the token as a bearer.
    fn authorized(&self, seen: &Seen) {
        assert!(
            header(seen, "accept").contains("application/json"),
            "{seen:?}"
        );
        assert!(
            header(seen, "user-agent").starts_with("rapport/"),
            "{seen:?}"
        );
        let q = query(seen);
        let key = q.get("key").map(String::as_str);
        let bearer = header(seen, "authorization");
        assert!(
            key.is_some() || !bearer.is_empty(),
            "no credentials: {seen:?}"
        );
        if let Some(key) = key {
            assert!(key == KEY || key.starts_with("AIzaWrong"), "{key}");
        }
        if !bearer.is_empty() {
            assert_eq!(bearer, format!("Bearer {TOKEN}"));
        }
    }

    /// A commentThread resource as it stands now (the first replies inline).
    fn thread(&self, state: &State, id: &str, top: &Value, video: &str) -> Value {
        let replies = state.replies.get(id).cloned().unwrap_or_default();
        let owner = state.owners.get(video).map_or(CHANNEL, String::as_str);
        let mut thread = json!({
            "kind": "youtube#commentThread", "etag": format!("t{}", replies.len()), "id": id,
            "snippet": {
                "channelId": owner, "videoId": video, "topLevelComment": top,
                "canReply": true, "totalReplyCount": replies.len(), "isPublic": true
            }
        });
        if !replies.is_empty() {
            thread["replies"] =
                json!({ "comments": replies.iter().take(INLINE).collect::<Vec<_>>() });
        }
        thread
    }

    fn threads(&self, seen: &Seen) -> Reply {
        self.authorized(seen);
        let q = query(seen);
        assert_eq!(q["part"], "snippet,replies");
        assert_eq!(q["textFormat"], "plainText");
        let mut state = self.state.lock().unwrap();
        if let Some(ids) = q.get("id") {
            assert!(!q.contains_key("maxResults") && !q.contains_key("order"));
            let items: Vec<Value> = ids
                .split(',')
                .filter_map(|id| {
                    let (video, top) = state.threads.iter().find(|(_, top)| top["id"] == id)?;
                    Some(self.thread(&state, id, top, video))
                })
                .collect();
            return google(&json!({
                "kind": "youtube#commentThreadListResponse", "etag": "l0",
                "pageInfo": { "totalResults": items.len(), "resultsPerPage": items.len() },
                "items": items
            }));
        }
        if !state.fail.is_empty() {
            return state.fail.remove(0);
        }
        assert_eq!(q["order"], "time");
        let size: usize = q["maxResults"].parse().unwrap();
        assert!((1..=100).contains(&size), "{size}");
        let video = match (q.get("allThreadsRelatedToChannelId"), q.get("videoId")) {
            (Some(channel), None) => {
                assert_eq!(channel, CHANNEL);
                None
            }
            (None, Some(video)) => Some(video.clone()),
            _ => panic!("exactly one filter: {q:?}"),
        };
        if let Some(video) = &video {
            if state.disabled.contains(video) {
                return error(403, "youtube.commentThread", "commentsDisabled",
                    "The video identified by the <code><a href=\"/youtube/v3/docs/commentThreads/list#videoId\">videoId</a></code> parameter has disabled comments.");
            }
            if !state.threads.iter().any(|(v, _)| v == video) {
                return error(404, "youtube.commentThread", "videoNotFound",
                    "The video identified by the <code><a href=\"/youtube/v3/docs/commentThreads/list#videoId\">videoId</a></code> parameter could not be found.");
            }
        }
        let mut listed: Vec<&(String, Value)> = state
            .threads
            .iter()
            .filter(|(v, _)| video.as_ref().is_none_or(|video| v == video))
            .collect();
        listed.sort_by(|a, b| {
            b.1["snippet"]["publishedAt"]
                .as_str()
                .cmp(&a.1["snippet"]["publishedAt"].as_str())
                .then(b.1["id"].as_str().cmp(&a.1["id"].as_str()))
        });
        let from: usize = q
            .get("pageToken")
            .map(|token| token.strip_prefix("QURTSl9p").unwrap().parse().unwrap())
            .unwrap_or(0);
        let items: Vec<Value> = listed
            .iter()
            .skip(from)
            .take(size)
            .map(|(video, top)| self.thread(&state, top["id"].as_str().unwrap(), top, video))
            .collect();
        let mut page = json!({
            "kind": "youtube#commentThreadListResponse", "etag": format!("l{from}"),
            "pageInfo": { "totalResults": listed.len(), "resultsPerPage": size },
            "items": items
        });
        if from + size < listed.len() {
            page["nextPageToken"] = json!(format!("QURTSl9p{}", from + size));
        }
        google(&page)
    }

    fn comments(&self, seen: &Seen) -> Reply {
        self.authorized(seen);
        let q = query(seen);
        assert_eq!(q["part"], "snippet");
        assert_eq!(q["textFormat"], "plainText");
        let size: usize = q["maxResults"].parse().unwrap();
        assert!((1..=100).contains(&size), "{size}");
        let state = self.state.lock().unwrap();
        let all = state
            .replies
            .get(&q["parentId"])
            .cloned()
            .unwrap_or_default();
        let from: usize = q
            .get("pageToken")
            .map(|token| token.strip_prefix("Q0NB").unwrap().parse().unwrap())
            .unwrap_or(0);
        let mut page = json!({
            "kind": "youtube#commentListResponse", "etag": "r",
            "pageInfo": { "totalResults": all.len(), "resultsPerPage": size },
            "items": all.iter().skip(from).take(size).collect::<Vec<_>>()
        });
        if from + size < all.len() {
            page["nextPageToken"] = json!(format!("Q0NB{}", from + size));
        }
        google(&page)
    }

    fn insert(&self, seen: &Seen) -> Reply {
        self.authorized(seen);
        let mut state = self.state.lock().unwrap();
        if state.down > 0 {
            state.down -= 1;
            return error(503, "global", "backendError", "Backend Error");
        }
        let body: Value = serde_json::from_slice(&seen.body).unwrap();
        let parent = body["snippet"]["parentId"].as_str().unwrap().to_owned();
        state.inserted += 1;
        let id = format!("{parent}.9ZrApport{:04}", state.inserted);
        let made = comment(
            &id,
            (CHANNEL, "@acmesupport"),
            body["snippet"]["textOriginal"].as_str().unwrap(),
            Utc::now(),
            Some(&parent),
        );
        state.replies.entry(parent).or_default().push(made.clone());
        if state.lose > 0 {
            state.lose -= 1;
            return error(502, "global", "backendError", "Bad Gateway");
        }
        google(&made)
    }

    /// Adds `count` threads by Maya on `video`, ids and minutes from `from`.
    fn push(&self, video: &str, from: u64, count: u64) {
        let mut state = self.state.lock().unwrap();
        for n in from..from + count {
            let id = thread_id(n);
            let top = comment(&id, MAYA, &format!("comment {n}"), minute(n as i64), None);
            state.threads.push((video.to_owned(), top));
        }
    }

    /// Adds `count` replies to thread `n` by `author`, at minute `at` onwards.
    fn answer(&self, n: u64, author: (&str, &str), count: usize, at: i64) -> Vec<String> {
        let parent = thread_id(n);
        let mut state = self.state.lock().unwrap();
        let replies = state.replies.entry(parent.clone()).or_default();
        let mut ids = Vec::new();
        for k in 0..count {
            let id = format!("{parent}.9Zr{:03}x{:04}", replies.len(), n);
            let at = minute(at + k as i64);
            replies.push(comment(
                &id,
                author,
                &format!("reply {k} to {n}"),
                at,
                Some(&parent),
            ));
            ids.push(id);
        }
        ids
    }

    fn config(&self, extra: Value) -> Value {
        let mut config = json!({
            "base_url": format!("{}/youtube/v3", self.server.base),
            "api_key": KEY, "channel_id": CHANNEL
        });
        for (key, value) in extra.as_object().unwrap() {
            config[key] = value.clone();
        }
        config
    }

    fn listings(&self) -> Vec<HashMap<String, String>> {
        self.server
            .seen("/youtube/v3/commentThreads")
            .iter()
            .map(query)
            .collect()
    }
}

/// The stored cursor of source `id` (never holding a secret).
async fn cursor_of(app: &TestApp, id: &str) -> Value {
    let cursor = source_row(app, id).await.cursor.unwrap();
    assert!(!cursor.contains("RapportTest"), "{cursor}");
    serde_json::from_str(&cursor).unwrap()
}

fn next_run(report: &Value) -> DateTime<Utc> {
    report["source"]["nextRunAt"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap()
}

backend_test!(
    async fn a_first_sync_backfills_over_pages_then_takes_only_new_threads_and_new_replies(
        app: TestApp,
    ) {
        let key = app.key(Role::Admin).await;
        let youtube = Youtube::start().await;
        youtube.push(VIDEO, 0, 250);
        youtube.answer(249, LUCIA, 2, 400);
        let input =
            json!({ "channel": "YOUTUBE", "name": "channel", "config": youtube.config(json!({})) });
        let created = app
            .gql(&key, crate::feeds::CREATE, json!({ "input": input }))
            .await;
        let source = &created["createSource"]["source"];
        assert_eq!(source["secretsSet"], json!(["api_key"]));
        assert!(!source["config"].to_string().contains(KEY));
        let id = source["id"].as_str().unwrap().to_owned();

        let report = sync(&app, &key, &id).await;
        assert_eq!(report["error"], Value::Null, "{report:#}");
        assert_eq!(report["newItems"], 252, "{report:#}");
        // Three pages, newest first, by pageToken (the watched threads were all just read).
        let asked = youtube.listings();
        let pages: Vec<(Option<&str>, &str)> = asked
            .iter()
            .filter(|q| !q.contains_key("id"))
            .map(|q| {
                (
                    q.get("pageToken").map(String::as_str),
                    q["maxResults"].as_str(),
                )
            })
            .collect();
        assert_eq!(
            pages,
            [
                (None, "100"),
                (Some("QURTSl9p100"), "100"),
                (Some("QURTSl9p200"), "100")
            ]
        );
        assert!(asked.iter().all(|q| q["key"] == KEY));
        let cursor = cursor_of(&app, &id).await;
        let stream = &cursor["streams"][format!("channel:{CHANNEL}")];
        assert_eq!(stream["mark"]["ids"], json!([thread_id(249)]));
        assert_eq!(stream["watch"].as_array().unwrap().len(), 50);
        assert_eq!(
            stream["watch"][0],
            json!({ "id": thread_id(249), "at": minute(249).timestamp(), "replies": 2 })
        );

        // New: two threads, and seven replies to a watched one (five inline, two more
        // from comments.list). Threads older than the watch get replies unseen.
        youtube.push(VIDEO, 250, 2);
        let seven = youtube.answer(230, LUCIA, 7, 500);
        youtube.answer(10, LUCIA, 1, 510);
        let report = sync(&app, &key, &id).await;
        assert_eq!(report["error"], Value::Null, "{report:#}");
        assert_eq!(report["newItems"], 9, "{report:#}");
        let asked = youtube.listings();
        let last: Vec<&HashMap<String, String>> = asked[asked.len() - 3..].iter().collect();
        assert_eq!(last[0].get("pageToken"), None);
        // One page more than down to the mark (a comment approved late shows up below it).
        assert_eq!(
            last[1].get("pageToken").map(String::as_str),
            Some("QURTSl9p100")
        );
        // The 50 newest less the two just read.
        let watched: Vec<&str> = last[2]["id"].split(',').collect();
        assert_eq!(watched.len(), 48);
        assert!(!watched.contains(&thread_id(250).as_str()));
        assert!(watched.contains(&thread_id(230).as_str()));
        let read = youtube.server.seen("/youtube/v3/comments");
        assert_eq!(read.len(), 1);
        assert_eq!(query(&read[0])["parentId"], thread_id(230));
        assert_eq!(query(&read[0])["maxResults"], "100");
        let stored = stored_ids(&app).await;
        assert_eq!(stored.len(), 261);
        assert!(stored.values().all(|count| *count == 1));
        assert!(seven.iter().all(|id| stored.contains_key(id)));
        assert!(!stored
            .keys()
            .any(|id| id.starts_with(&format!("{}.", thread_id(10)))));

        // Nothing new: one page down to the mark, one watch call, nothing stored.
        let report = sync(&app, &key, &id).await;
        assert_eq!(report["newItems"], 0, "{report:#}");
        assert_eq!(youtube.listings().len(), asked.len() + 2);

        // backfill_limit 0: one thread asked, only to set the mark; then only what is new.
        let quiet = create_source(
            &app,
            &key,
            "YOUTUBE",
            "quiet",
            youtube
                .config(json!({ "backfill_limit": 0, "video_ids": [VIDEO], "channel_id": null })),
        )
        .await;
        let report = sync(&app, &key, &quiet).await;
        assert_eq!(report["newItems"], 0, "{report:#}");
        let q = youtube.listings().pop().unwrap();
        assert_eq!(
            (
                q["maxResults"].as_str(),
                q.get("videoId").map(String::as_str)
            ),
            ("1", Some(VIDEO))
        );
        youtube.push(VIDEO, 300, 1);
        let report = sync(&app, &key, &quiet).await;
        assert_eq!(report["newItems"], 1, "{report:#}");

        // backfill_limit 120: two pages, 120 threads (each source stores its own), the
        // newest of them with their replies (2 + 7).
        let some = create_source(
            &app,
            &key,
            "YOUTUBE",
            "some",
            youtube.config(json!({ "backfill_limit": 120 })),
        )
        .await;
        let report = sync(&app, &key, &some).await;
        assert_eq!(report["error"], Value::Null, "{report:#}");
        assert_eq!(report["newItems"], 120 + 2 + 7, "{report:#}");
    }
);

backend_test!(
    async fn an_interrupted_backfill_resumes_at_its_page_token(app: TestApp) {
        let key = app.key(Role::Admin).await;
        let youtube = Youtube::start().await;
        youtube.push(VIDEO, 0, 300);
        let id = create_source(&app, &key, "YOUTUBE", "channel", youtube.config(json!({}))).await;
        // From the second page on, 503s: the first is stored with the walk's place (the
        // pull hands it over, and the next one meets the error).
        let serving = youtube.clone();
        let calls = Arc::new(Mutex::new(0));
        let failing = Arc::new(Mutex::new(true));
        let (counted, broken) = (calls.clone(), failing.clone());
        youtube
            .server
            .handle("/youtube/v3/commentThreads", move |seen| {
                let mut calls = counted.lock().unwrap();
                *calls += 1;
                if *calls >= 2 && *broken.lock().unwrap() {
                    return error(503, "global", "backendError", "Backend Error");
                }
                serving.threads(seen)
            });
        let report = sync(&app, &key, &id).await;
        assert!(
            report["error"].as_str().unwrap().contains("503"),
            "{report:#}"
        );
        assert_eq!(report["newItems"], 100, "{report:#}");
        assert_eq!(report["source"]["status"], "BACKING_OFF", "{report:#}");
        let cursor = cursor_of(&app, &id).await;
        let stream = &cursor["streams"][format!("channel:{CHANNEL}")];
        assert_eq!(stream["walk"]["next"], "QURTSl9p100");
        assert_eq!(stream["walk"]["left"], 900);
        assert_eq!(stream.get("mark"), None);
        // New threads meanwhile: the walk goes on where it stopped, then the next sync
        // reads the new ones down to the mark.
        *failing.lock().unwrap() = false;
        youtube.push(VIDEO, 300, 3);
        let report = sync(&app, &key, &id).await;
        assert_eq!(report["error"], Value::Null, "{report:#}");
        let q: Vec<Option<String>> = youtube
            .listings()
            .iter()
            .filter(|q| !q.contains_key("id"))
            .map(|q| q.get("pageToken").cloned())
            .collect();
        assert_eq!(
            q[1..3],
            [
                Some("QURTSl9p100".to_owned()),
                Some("QURTSl9p100".to_owned())
            ],
            "{q:?}"
        );
        let report = sync(&app, &key, &id).await;
        assert_eq!(report["error"], Value::Null, "{report:#}");
        let stored = stored_ids(&app).await;
        assert_eq!(stored.len(), 303);
        assert!(stored.values().all(|count| *count == 1));
    }
);

backend_test!(
    async fn threads_and_identities_and_a_reply_of_the_documented_shape_posted_once(app: TestApp) {
        let key = app.key(Role::Admin).await;
        let youtube = Youtube::start().await;
        youtube.push(VIDEO, 1, 1);
        youtube.push(OTHER_VIDEO, 2, 1);
        youtube.answer(1, LUCIA, 1, 10);
        // Our channel answers in the thread: outbound, in the same conversation.
        {
            let mut state = youtube.state.lock().unwrap();
            let parent = thread_id(1);
            let ours = comment(
                &format!("{parent}.9ZrOurs0001"),
                (CHANNEL, "@acmesupport"),
                "Which file size?",
                minute(20),
                Some(&parent),
            );
            state.replies.get_mut(&parent).unwrap().push(ours);
        }
        let id = create_source(
            &app,
            &key,
            "YOUTUBE",
            "channel",
            youtube.config(json!({ "access_token": TOKEN })),
        )
        .await;
        let report = sync(&app, &key, &id).await;
        assert_eq!(report["error"], Value::Null, "{report:#}");
        assert_eq!(report["newItems"], 4, "{report:#}");
        // The token's channel is asked once a pull, to tell our comments.
        assert_eq!(youtube.server.seen("/youtube/v3/channels").len(), 1);
        // With both secrets, both go.
        let asked = &youtube.server.seen("/youtube/v3/commentThreads")[0];
        assert_eq!(query(asked)["key"], KEY);
        assert_eq!(header(asked, "authorization"), format!("Bearer {TOKEN}"));

        let all = items(&app, &key).await;
        let top = &all[&thread_id(1)];
        assert_eq!(top["kind"], "COMMENT");
        assert_eq!(top["channel"], "YOUTUBE");
        assert_eq!(top["direction"], "INBOUND");
        assert_eq!(top["subject"], format!("YouTube video {VIDEO}"));
        assert_eq!(top["text"], "comment 1");
        assert_eq!(
            top["url"],
            format!(
                "https://www.youtube.com/watch?v={VIDEO}&lc={}",
                thread_id(1)
            )
        );
        assert_eq!(top["identity"]["platformId"], MAYA.0);
        assert_eq!(top["identity"]["displayName"], MAYA.1);
        let answer = &all[&format!("{}.9Zr000x0001", thread_id(1))];
        assert_eq!(answer["identity"]["platformId"], LUCIA.0);
        assert_eq!(answer["conversation"]["id"], top["conversation"]["id"]);
        assert_ne!(answer["customer"]["id"], top["customer"]["id"]);
        let ours = &all[&format!("{}.9ZrOurs0001", thread_id(1))];
        assert_eq!(ours["direction"], "OUTBOUND");
        assert_eq!(ours["text"], "Which file size?");
        assert_eq!(ours["conversation"]["id"], top["conversation"]["id"]);
        let other = &all[&thread_id(2)];
        assert_ne!(other["conversation"]["id"], top["conversation"]["id"]);
        // Maya is one customer by her channel id, on both videos.
        assert_eq!(other["customer"]["id"], top["customer"]["id"]);
        let customer = app
            .gql(&key, IDENTITIES, json!({ "id": top["customer"]["id"] }))
            .await;
        assert_eq!(
            customer["customer"]["identities"],
            json!([{
                "channel": "YOUTUBE", "platformId": MAYA.0, "handle": MAYA.1, "displayName": MAYA.1,
                "profileUrl": format!("http://www.youtube.com/{}", MAYA.1),
                "avatarUrl": format!("https://yt3.ggpht.com/ytc/{}=s48-c-k-c0x00ffffff-no-rj", &MAYA.0[2..10])
            }])
        );

        // A reply to Lucia's answer goes under the top-level comment.
        let agent = app.key(Role::Agent).await;
        let target = find_interaction(&app, &key, &format!("{}.9Zr000x0001", thread_id(1))).await;
        let text = "Fixed in 2.0.1 — thanks Lucía!";
        let sent = app
            .gql(
                &agent,
                REPLY,
                json!({ "input": { "interactionId": target, "text": text } }),
            )
            .await["replyToInteraction"]["interaction"]
            .clone();
        let posted: Vec<Seen> = youtube
            .server
            .seen("/youtube/v3/comments")
            .into_iter()
            .filter(|seen| seen.method == "POST")
            .collect();
        assert_eq!(posted.len(), 1);
        assert_eq!(
            query(&posted[0]),
            HashMap::from([
                ("part".to_owned(), "snippet".to_owned()),
                ("key".to_owned(), KEY.to_owned())
            ])
        );
        assert_eq!(header(&posted[0], "content-type"), "application/json");
        assert_eq!(
            header(&posted[0], "authorization"),
            format!("Bearer {TOKEN}")
        );
        assert_eq!(
            serde_json::from_slice::<Value>(&posted[0].body).unwrap(),
            json!({ "snippet": { "parentId": thread_id(1), "textOriginal": text } })
        );
        let made = format!("{}.9ZrApport0001", thread_id(1));
        assert_eq!(sent["externalId"], made);
        assert_eq!(sent["direction"], "OUTBOUND");
        assert_eq!(
            sent["url"],
            format!("https://www.youtube.com/watch?v={VIDEO}&lc={made}")
        );
        assert_eq!(sent["conversation"]["id"], top["conversation"]["id"]);
        // Our reply comes back in the thread: stored already.
        let report = sync(&app, &key, &id).await;
        assert_eq!(report["newItems"], 0, "{report:#}");
        assert_eq!(stored_ids(&app).await[&made], 1);

        // YouTube made the comment but the answer was lost (502): our channel's reply with
        // these words, published since shortly before, is taken for it. Posted once.
        let asked = youtube.server.seen("/youtube/v3/channels").len();
        youtube.state.lock().unwrap().lose = 1;
        let sent = app
            .gql(
                &agent,
                REPLY,
                json!({ "input": { "interactionId": target, "text": "Released 2.0.2 as well." } }),
            )
            .await["replyToInteraction"]["interaction"]
            .clone();
        assert_eq!(
            sent["externalId"],
            format!("{}.9ZrApport0002", thread_id(1)),
            "{sent:#}"
        );
        assert_eq!(youtube.state.lock().unwrap().inserted, 2);
        assert_eq!(youtube.server.seen("/youtube/v3/channels").len(), asked + 1);
        // A 503 before anything was made: nothing of ours has these words, so the reply
        // fails and nothing is taken for it.
        youtube.state.lock().unwrap().down = 1;
        let (_, answer) = app
            .gql_error(
                &agent,
                REPLY,
                json!({ "input": { "interactionId": target, "text": "Released 2.0.3." } }),
            )
            .await;
        assert!(answer.to_string().contains("503"), "{answer:#}");
        assert!(!answer.to_string().contains("RapportTest"), "{answer:#}");
        assert_eq!(youtube.state.lock().unwrap().inserted, 2);

        // Over 10,000 characters: refused before anything is sent.
        let posts = || {
            youtube
                .server
                .seen("/youtube/v3/comments")
                .iter()
                .filter(|s| s.method == "POST")
                .count()
        };
        let before = posts();
        let long = json!({ "interactionId": target, "text": "é".repeat(10_001) });
        let (code, _) = app.gql_error(&agent, REPLY, json!({ "input": long })).await;
        assert_eq!(code, "BAD_USER_INPUT");
        assert_eq!(posts(), before);
    }
);

backend_test!(
    async fn on_a_chosen_video_of_another_channel_its_owner_is_a_customer_and_the_token_us(
        app: TestApp,
    ) {
        let key = app.key(Role::Admin).await;
        let youtube = Youtube::start().await;
        youtube
            .state
            .lock()
            .unwrap()
            .owners
            .insert(REVIEW_VIDEO.to_owned(), REVIEWER.0.to_owned());
        youtube.push(REVIEW_VIDEO, 1, 1);
        let owner = youtube.answer(1, REVIEWER, 1, 10).remove(0);
        let ours = youtube
            .answer(1, (CHANNEL, "@acmesupport"), 1, 20)
            .remove(0);
        // The reviewer's own top-level comment on their video.
        {
            let mut state = youtube.state.lock().unwrap();
            let top = comment(
                &thread_id(2),
                REVIEWER,
                "Pinned: specs below",
                minute(2),
                None,
            );
            state.threads.push((REVIEW_VIDEO.to_owned(), top));
        }
        // No channel_id: the token's channel is ours.
        let id = create_source(
            &app,
            &key,
            "YOUTUBE",
            "review",
            youtube.config(json!({
                "channel_id": null, "video_ids": [REVIEW_VIDEO], "access_token": TOKEN
            })),
        )
        .await;
        let report = sync(&app, &key, &id).await;
        assert_eq!(report["error"], Value::Null, "{report:#}");
        assert_eq!(report["newItems"], 4, "{report:#}");
        let all = items(&app, &key).await;
        let reviewer = &all[&owner];
        assert_eq!(reviewer["direction"], "INBOUND", "{reviewer:#}");
        assert_eq!(reviewer["identity"]["platformId"], REVIEWER.0);
        assert!(reviewer["customer"]["id"].is_string(), "{reviewer:#}");
        let pinned = &all[&thread_id(2)];
        assert_eq!(pinned["direction"], "INBOUND", "{pinned:#}");
        assert_eq!(pinned["customer"]["id"], reviewer["customer"]["id"]);
        let maya = &all[&thread_id(1)];
        assert_ne!(maya["customer"]["id"], reviewer["customer"]["id"]);
        assert_eq!(all[&ours]["direction"], "OUTBOUND");
        assert_eq!(youtube.server.seen("/youtube/v3/channels").len(), 1);
    }
);

backend_test!(
    async fn a_reply_through_a_key_only_source_is_refused_before_any_request(app: TestApp) {
        let key = app.key(Role::Admin).await;
        let youtube = Youtube::start().await;
        youtube.push(VIDEO, 1, 1);
        let id = create_source(&app, &key, "YOUTUBE", "reader", youtube.config(json!({}))).await;
        sync(&app, &key, &id).await;
        let agent = app.key(Role::Agent).await;
        let target = find_interaction(&app, &key, &thread_id(1)).await;
        let (code, body) = app
            .gql_error(
                &agent,
                REPLY,
                json!({ "input": { "interactionId": target, "text": "Hi" } }),
            )
            .await;
        assert_eq!(code, "BAD_USER_INPUT", "{body:#}");
        let said = body.to_string();
        assert!(
            said.contains("access_token") && said.contains("api_key can only read"),
            "{said}"
        );
        assert!(!said.contains("RapportTest"), "{said}");
        assert!(youtube.server.seen("/youtube/v3/comments").is_empty());
    }
);

backend_test!(
    async fn quota_waits_until_pacific_midnight_limits_wait_briefly_and_errors_stay_apart(
        app: TestApp,
    ) {
        let key = app.key(Role::Admin).await;
        let youtube = Youtube::start().await;
        youtube.push(VIDEO, 0, 150);
        youtube.push(OTHER_VIDEO, 150, 2);
        let input = json!({ "channel": "YOUTUBE", "name": "limits", "scheduleSecs": 30,
            "config": youtube.config(json!({})) });
        let id = app
            .gql(&key, crate::feeds::CREATE, json!({ "input": input }))
            .await["createSource"]["source"]["id"]
            .as_str()
            .unwrap()
            .to_owned();
        // The daily quota runs out on the second page: the first is kept, and the next run
        // is at midnight Pacific time (08:00 UTC in winter, 07:00 in summer).
        let serving = youtube.clone();
        let calls = Arc::new(Mutex::new(0));
        let counted = calls.clone();
        youtube.server.handle("/youtube/v3/commentThreads", move |seen| {
            let mut calls = counted.lock().unwrap();
            *calls += 1;
            if *calls == 2 {
                return error(403, "youtube.quota", "quotaExceeded",
                    "The request cannot be completed because you have exceeded your <a href=\"/youtube/v3/getting-started#quota\">quota</a>.");
            }
            serving.threads(seen)
        });
        let report = sync(&app, &key, &id).await;
        assert_eq!(report["newItems"], 100, "{report:#}");
        assert_eq!(report["source"]["status"], "RATE_LIMITED", "{report:#}");
        let next = next_run(&report);
        assert!(
            next > Utc::now() && next <= Utc::now() + Duration::days(1),
            "{next}"
        );
        assert!(matches!(next.hour(), 7 | 8) && next.minute() == 0, "{next}");
        assert_eq!(
            cursor_of(&app, &id).await["streams"][format!("channel:{CHANNEL}")]["walk"]["next"],
            "QURTSl9p100"
        );

        // A short limit (rateLimitExceeded): about a minute.
        let serving = youtube.clone();
        let limited = Arc::new(Mutex::new(vec![error(
            403,
            "youtube.quota",
            "rateLimitExceeded",
            "The request cannot be completed because you have exceeded your quota.",
        )]));
        let queued = limited.clone();
        youtube
            .server
            .handle("/youtube/v3/commentThreads", move |seen| {
                if let Some(reply) = queued.lock().unwrap().pop() {
                    return reply;
                }
                serving.threads(seen)
            });
        let report = sync(&app, &key, &id).await;
        assert_eq!(report["source"]["status"], "RATE_LIMITED", "{report:#}");
        let next = next_run(&report);
        assert!(next >= Utc::now() + Duration::seconds(50), "{next}");
        assert!(next <= Utc::now() + Duration::seconds(70), "{next}");
        // Nothing lost: the walk resumes at its page.
        let report = sync(&app, &key, &id).await;
        assert_eq!(report["error"], Value::Null, "{report:#}");
        assert_eq!(report["newItems"], 52, "{report:#}");

        // A refused key: 401 fails the source, never showing the key.
        let wrong = create_source(
            &app,
            &key,
            "YOUTUBE",
            "wrong",
            youtube.config(json!({ "api_key": "AIzaWrongKeyRapportTest000" })),
        )
        .await;
        *limited.lock().unwrap() = vec![error(
            401,
            "global",
            "authError",
            "API key not valid. Please pass a valid API key. (key=AIzaWrongKeyRapportTest000)",
        )];
        let report = sync(&app, &key, &wrong).await;
        assert_eq!(report["source"]["status"], "FAILING", "{report:#}");
        let said = report["source"]["lastError"].as_str().unwrap();
        assert!(said.contains("401") && said.contains("api_key"), "{said}");
        assert!(!report.to_string().contains("RapportTest"), "{report:#}");

        // Videos: comments off on one, another missing, a third fine: warnings, items.
        youtube
            .state
            .lock()
            .unwrap()
            .disabled
            .insert(VIDEO.to_owned());
        let videos = create_source(
            &app,
            &key,
            "YOUTUBE",
            "videos",
            youtube.config(json!({
                "channel_id": null, "video_ids": [VIDEO, "Gone0000000", OTHER_VIDEO]
            })),
        )
        .await;
        let report = sync(&app, &key, &videos).await;
        assert_eq!(report["error"], Value::Null, "{report:#}");
        assert_eq!(report["source"]["status"], "OK", "{report:#}");
        let cursor = cursor_of(&app, &videos).await;
        let warning = |video: &str| {
            cursor["streams"][format!("video:{video}")]["warning"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        };
        assert!(warning(VIDEO).contains("commentsDisabled"), "{cursor:#}");
        assert!(
            warning("Gone0000000").contains("videoNotFound"),
            "{cursor:#}"
        );
        assert_eq!(warning(OTHER_VIDEO), "");
        assert_eq!(report["newItems"], 2, "{report:#}");

        // Every video failing: the sync fails (transient on a 5xx).
        let broken = create_source(
            &app,
            &key,
            "YOUTUBE",
            "broken",
            youtube.config(json!({
                "channel_id": null, "video_ids": [OTHER_VIDEO]
            })),
        )
        .await;
        *limited.lock().unwrap() = vec![error(500, "global", "backendError", "Backend Error")];
        let report = sync(&app, &key, &broken).await;
        assert_eq!(report["source"]["status"], "BACKING_OFF", "{report:#}");
        assert!(
            report["error"].as_str().unwrap().contains("500"),
            "{report:#}"
        );
    }
);

backend_test!(
    async fn a_comment_approved_late_below_threads_handed_over_is_taken(app: TestApp) {
        let key = app.key(Role::Admin).await;
        let youtube = Youtube::start().await;
        youtube.push(VIDEO, 1, 100);
        let id = create_source(&app, &key, "YOUTUBE", "channel", youtube.config(json!({}))).await;
        let report = sync(&app, &key, &id).await;
        assert_eq!(report["newItems"], 100, "{report:#}");

        // Ten new threads, and Lucía's comment written at minute 95 and held for review
        // until now: listed (by its publishedAt) below threads 100 to 96, handed over.
        youtube.push(VIDEO, 101, 10);
        let late = "Ugzl4teAppr0vedRt5Wq1YpAaABAg";
        let written = minute(95) + Duration::seconds(30);
        youtube.state.lock().unwrap().threads.push((
            VIDEO.to_owned(),
            comment(late, LUCIA, "held for review", written, None),
        ));
        let before = youtube.listings().len();
        let report = sync(&app, &key, &id).await;
        assert_eq!(report["error"], Value::Null, "{report:#}");
        assert_eq!(report["newItems"], 11, "{report:#}");
        assert!(stored_ids(&app).await.contains_key(late));
        // The page down to the mark, the next one (nothing to take there: the walk ends),
        // the watch call.
        let asked = youtube.listings();
        let pages: Vec<Option<&str>> = asked[before..]
            .iter()
            .filter(|q| !q.contains_key("id"))
            .map(|q| q.get("pageToken").map(String::as_str))
            .collect();
        assert_eq!(pages, [None, Some("QURTSl9p100")]);
        assert_eq!(asked.len(), before + 3);

        // Nothing new: one page, the watch call.
        let report = sync(&app, &key, &id).await;
        assert_eq!(report["newItems"], 0, "{report:#}");
        assert_eq!(youtube.listings().len(), before + 5);
    }
);

backend_test!(
    async fn a_thread_with_more_replies_than_are_read_is_read_again_next_sync(app: TestApp) {
        let key = app.key(Role::Admin).await;
        let youtube = Youtube::start().await;
        youtube.push(VIDEO, 1, 3);
        youtube.answer(2, LUCIA, 520, 10);
        let id = create_source(&app, &key, "YOUTUBE", "channel", youtube.config(json!({}))).await;
        let report = sync(&app, &key, &id).await;
        assert_eq!(report["error"], Value::Null, "{report:#}");
        assert_eq!(report["newItems"], 3 + 500, "{report:#}");
        assert_eq!(youtube.server.seen("/youtube/v3/comments").len(), 5);
        let stream = |cursor: Value| cursor["streams"][format!("channel:{CHANNEL}")].clone();
        let stream_now = stream(cursor_of(&app, &id).await);
        assert!(
            stream_now["warning"]
                .as_str()
                .unwrap_or_default()
                .contains("more than 500 replies"),
            "{stream_now:#}"
        );
        // Watched with the replies read, not the 520 it has.
        let watched = stream_now["watch"]
            .as_array()
            .unwrap()
            .iter()
            .find(|watched| watched["id"] == thread_id(2))
            .cloned()
            .unwrap();
        assert_eq!(watched["replies"], 500, "{stream_now:#}");

        // The next sync reads it again, and says so again.
        let report = sync(&app, &key, &id).await;
        assert_eq!(report["error"], Value::Null, "{report:#}");
        assert_eq!(youtube.server.seen("/youtube/v3/comments").len(), 10);
        let stream_now = stream(cursor_of(&app, &id).await);
        assert!(
            stream_now["warning"]
                .as_str()
                .unwrap_or_default()
                .contains("more than 500 replies"),
            "{stream_now:#}"
        );
    }
);

backend_test!(
    async fn a_page_without_threads_but_with_a_token_does_not_end_a_walk(app: TestApp) {
        let key = app.key(Role::Admin).await;
        let youtube = Youtube::start().await;
        youtube.push(VIDEO, 0, 150);
        let empty = |next: &str| {
            google(&json!({
                "kind": "youtube#commentThreadListResponse", "etag": "l0",
                "nextPageToken": next,
                "pageInfo": { "totalResults": 150, "resultsPerPage": 100 },
                "items": []
            }))
        };
        // The newest page comes back without a thread, but with a token to go on with.
        youtube.state.lock().unwrap().fail = vec![empty("QURTSl9p100")];
        let id = create_source(&app, &key, "YOUTUBE", "channel", youtube.config(json!({}))).await;
        let report = sync(&app, &key, &id).await;
        assert_eq!(report["error"], Value::Null, "{report:#}");
        assert_eq!(report["newItems"], 50, "{report:#}");
        // One pull: the empty page is gone past within it.
        assert_eq!(report["batches"], 1, "{report:#}");
        assert_eq!(stored_ids(&app).await.len(), 50);
        let cursor = cursor_of(&app, &id).await;
        let stream = &cursor["streams"][format!("channel:{CHANNEL}")];
        assert_eq!(stream.get("walk"), None, "{cursor}");
        assert_eq!(stream.get("warning"), None, "{cursor}");

        // Eleven in a row: the walk stops there, and the stream says so.
        youtube.state.lock().unwrap().fail =
            (1..=11).map(|n| empty(&format!("QURTSl9p{n}"))).collect();
        let id = create_source(&app, &key, "YOUTUBE", "again", youtube.config(json!({}))).await;
        let report = sync(&app, &key, &id).await;
        assert_eq!(report["error"], Value::Null, "{report:#}");
        assert_eq!(report["newItems"], 0, "{report:#}");
        assert_eq!(report["batches"], 1, "{report:#}");
        let cursor = cursor_of(&app, &id).await;
        let stream = &cursor["streams"][format!("channel:{CHANNEL}")];
        assert_eq!(stream.get("walk"), None, "{cursor}");
        assert!(
            stream["warning"]
                .as_str()
                .unwrap()
                .contains("YouTube answered 11 pages in a row with nothing to read"),
            "{cursor}"
        );
    }
);
