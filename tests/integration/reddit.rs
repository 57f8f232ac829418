//! The Reddit connector against a local stand-in for Reddit answering as its API
//! documentation says (<https://www.reddit.com/dev/api>, the OAuth2 wiki of
//! reddit-archive/reddit): the password grant at `/api/v1/access_token` (HTTP basic auth,
//! `{"error": "invalid_grant"}` for a wrong password, 401 for a wrong app), Listings of
//! Things (`t1` comments, `t3` posts, `t4` messages) paged back with `after`,
//! `/api/comment` with `api_type=json` and its `json.errors`, and the `X-Ratelimit-Used`,
//! `-Remaining` and `-Reset` headers (seconds until the window ends). The payloads are
//! written here, field for field from those pages, for people made up for the test.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};

use base64::Engine;
use chrono::{DateTime, Duration, Utc};
use rapport::domain::Role;
use serde_json::{json, Value};

use crate::backend_test;
use crate::common::TestApp;
use crate::feeds::{create_source, items, sync};
use crate::mastodon::{find_interaction, source_row, stored_ids};
use crate::platform::{Platform, Reply, Seen};

const CLIENT_ID: &str = "p-jcoLKBynTLew";
const CLIENT_SECRET: &str = "gko_LXELoV07ZBNUXrvWZfzE3aI";
const USERNAME: &str = "AcmeSupport";
const PASSWORD: &str = "correct-horse-battery";
const US: &str = "t2_acme01";
const MAYA: &str = "t2_8mx3k9q1";
const LUCIA: &str = "t2_4n7w2";
const REPLY: &str = "mutation($input: ReplyToInteractionInput!) { replyToInteraction(input: $input) { interaction { id externalId direction kind text url conversation { id } } } }";
const RETRY: &str = "mutation($id: ID!) { retryReply(input: { interactionId: $id }) { interaction { id externalId deliveryStatus deliveryError } } }";
const TO_CONVERSATION: &str = "mutation($input: ReplyToConversationInput!) { replyToConversation(input: $input) { interaction { id externalId deliveryStatus deliveryError } } }";

/// What Reddit holds and how it answers.
#[derive(Default)]
struct State {
    /// Every thing, oldest first, with the listings it is in.
    things: Vec<(Value, Vec<String>)>,
    /// The valid access token (empty: none until the next grant).
    access: String,
    /// Tokens issued so far.
    issued: usize,
    /// Answers say the window's budget is spent, ten minutes before it resets.
    exhausted: bool,
    /// Answer the mentions with 429.
    throttled: bool,
    /// What the next `/api/comment` answers in `json.errors`.
    refuse: Option<Value>,
    /// How many of the next `/api/comment` answers a proxy loses (a 502 after Reddit
    /// made the comment).
    lose: usize,
    /// Comments posted so far (for their ids).
    posted: usize,
    /// How many of the next `/api/comment` answer 502 before making anything.
    down: usize,
    /// Fullnames left out of every listing's pages (removed, spam, hidden from the
    /// account), as Reddit does after choosing the page: a page may come back empty with
    /// an `after`.
    hidden: HashSet<String>,
    /// This server's number in the process: its tokens carry it.
    server: u64,
}

/// Numbers the fake servers of this process. The connector keeps tokens per process and
/// token endpoint, so a server on a port an earlier test's server had is first sent that
/// server's token: refused (401), a new grant and the call again. Tokens that name their
/// server tell those calls apart ([`Reddit::seen`] leaves them out).
static SERVERS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

#[derive(Clone)]
struct Reddit {
    server: Platform,
    state: Arc<Mutex<State>>,
}

/// Seconds since the epoch of minute `n` of the test's day, as Reddit's float.
fn created(n: i64) -> f64 {
    (DateTime::parse_from_rfc3339("2026-11-02T09:00:00Z")
        .unwrap()
        .timestamp()
        + n * 60) as f64
}

fn pairs(encoded: &str) -> Vec<(String, String)> {
    reqwest::Url::parse(&format!("http://pairs/?{encoded}"))
        .unwrap()
        .query_pairs()
        .map(|(key, value)| (key.into_owned(), value.into_owned()))
        .collect()
}

/// The query of a GET.
fn query(seen: &Seen) -> HashMap<String, String> {
    pairs(&seen.query).into_iter().collect()
}

/// The form of a POST, in order.
fn form(seen: &Seen) -> Vec<(String, String)> {
    pairs(std::str::from_utf8(&seen.body).unwrap())
}

fn header(seen: &Seen, name: &str) -> String {
    seen.headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

/// A comment (`t1`) as listings show it.
fn comment(id: &str, author: (&str, &str), body: &str, parent: &str, minute: i64) -> Value {
    let link = if parent.starts_with("t3_") {
        parent.to_owned()
    } else {
        "t3_1h6abcd".to_owned()
    };
    let permalink = format!(
        "/r/selfhosted/comments/{}/which_crm_do_you_selfhost/{id}/",
        &link[3..]
    );
    json!({
        "kind": "t1",
        "data": {
            "subreddit_id": "t5_2qknd", "approved_at_utc": null, "author_is_blocked": false,
            "edited": false, "author_flair_type": "text", "total_awards_received": 0,
            "subreddit": "selfhosted", "likes": null, "replies": "", "saved": false,
            "id": id, "archived": false, "no_follow": true, "author": author.0,
            "send_replies": true, "parent_id": parent, "score": 1,
            "author_fullname": author.1, "body": body,
            "body_html": format!("<div class=\"md\"><p>{body}</p></div>"),
            "link_id": link, "link_title": "Which CRM do you self-host?",
            "subreddit_name_prefixed": "r/selfhosted", "stickied": false,
            "permalink": permalink, "name": format!("t1_{id}"),
            "created": created(minute), "created_utc": created(minute),
            "locked": false, "distinguished": null, "ups": 1, "depth": 1,
            "context": format!("{permalink}?context=3")
        }
    })
}

/// A comment as the inbox and the mentions list it (a Message view of it).
fn inbox_comment(view: &Value, kind: &str) -> Value {
    let d = &view["data"];
    json!({
        "kind": "t1",
        "data": {
            "first_message": null, "first_message_name": null, "subreddit": d["subreddit"],
            "likes": null, "replies": "", "author_fullname": d["author_fullname"], "id": d["id"],
            "subject": if kind == "username_mention" { "username mention" } else { "comment reply" },
            "associated_awarding_id": null, "score": 1, "author": d["author"], "num_comments": 3,
            "parent_id": d["parent_id"], "subreddit_name_prefixed": "r/selfhosted", "new": true,
            "type": kind, "body": d["body"], "link_title": d["link_title"], "dest": USERNAME,
            "was_comment": true, "body_html": d["body_html"], "name": d["name"],
            "created": d["created"], "created_utc": d["created_utc"], "context": d["context"],
            "distinguished": null
        }
    })
}

/// A post (`t3`) in r/selfhosted.
fn post(id: &str, author: (&str, &str), title: &str, selftext: &str, minute: i64) -> Value {
    json!({
        "kind": "t3",
        "data": {
            "approved_at_utc": null, "subreddit": "selfhosted", "selftext": selftext,
            "author_fullname": author.1, "saved": false, "gilded": 0, "clicked": false,
            "title": title, "subreddit_name_prefixed": "r/selfhosted", "hidden": false,
            "name": format!("t3_{id}"), "score": 12, "is_self": true, "domain": "self.selfhosted",
            "selftext_html": format!("<div class=\"md\"><p>{selftext}</p></div>"),
            "created": created(minute), "created_utc": created(minute),
            "id": id, "author": author.0, "num_comments": 3, "over_18": false,
            "permalink": format!("/r/selfhosted/comments/{id}/which_crm_do_you_selfhost/"),
            "url": format!("https://www.reddit.com/r/selfhosted/comments/{id}/which_crm_do_you_selfhost/"),
            "subreddit_id": "t5_2qknd", "stickied": false, "locked": false
        }
    })
}

/// A private message (`t4`).
fn message(id: &str, author: (&str, &str), subject: &str, body: &str, minute: i64) -> Value {
    json!({
        "kind": "t4",
        "data": {
            "first_message": null, "first_message_name": null, "subreddit": null, "likes": null,
            "replies": "", "author_fullname": author.1, "id": id, "subject": subject,
            "associated_awarding_id": null, "score": 0, "author": author.0, "num_comments": null,
            "parent_id": null, "subreddit_name_prefixed": null, "new": true, "type": "unknown",
            "body": body, "dest": USERNAME, "was_comment": false,
            "body_html": format!("<!-- SC_OFF --><div class=\"md\"><p>{body}</p></div><!-- SC_ON -->"),
            "name": format!("t4_{id}"), "created": created(minute), "created_utc": created(minute),
            "context": "", "distinguished": null
        }
    })
}

impl Reddit {
    async fn start() -> Reddit {
        let reddit = Reddit {
            server: Platform::start().await,
            state: Arc::new(Mutex::new(State {
                server: SERVERS.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
                ..State::default()
            })),
        };
        let token = reddit.clone();
        reddit
            .server
            .handle("/api/v1/access_token", move |seen| token.grant(seen));
        for path in [
            "/message/mentions",
            "/message/inbox",
            "/message/sent",
            "/r/selfhosted/new",
            "/r/selfhosted/comments",
            "/search",
            &format!("/user/{USERNAME}/comments"),
        ] {
            let serving = reddit.clone();
            let listing = path.trim_start_matches('/').to_owned();
            reddit.server.handle(path, move |seen| {
                let reply = serving.listing(seen, &listing);
                serving.limited(reply)
            });
        }
        let serving = reddit.clone();
        reddit.server.handle("/api/comment", move |seen| {
            let reply = serving.comment(seen);
            serving.limited(reply)
        });
        reddit
    }

    /// The calls to `path`, but those made with another server's token (see [`SERVERS`]).
    fn seen(&self, path: &str) -> Vec<Seen> {
        let ours = format!(".{}.token-", self.state.lock().unwrap().server);
        self.server
            .seen(path)
            .into_iter()
            .filter(|seen| {
                let token = header(seen, "authorization");
                !token.starts_with("Bearer ") || token.contains(&ours)
            })
            .collect()
    }

    /// The `n`th token this server granted.
    fn token(&self, n: usize) -> String {
        let server = self.state.lock().unwrap().server;
        format!("eyJhbGciOiJSUzI1NiIsImtpZCI6IlNIQTI1Njp.{server}.token-{n}")
    }

    fn config(&self, extra: Value) -> Value {
        let mut config = json!({
            "base_url": self.server.base, "auth_url": self.server.base,
            "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET,
            "username": USERNAME, "password": PASSWORD,
        });
        for (key, value) in extra.as_object().unwrap() {
            config[key] = value.clone();
        }
        config
    }

    async fn source(&self, app: &TestApp, key: &str, name: &str, extra: Value) -> String {
        create_source(app, key, "REDDIT", name, self.config(extra)).await
    }

    /// The headers of every API answer (the account's ten-minute window).
    fn limited(&self, reply: Reply) -> Reply {
        let state = self.state.lock().unwrap();
        let (used, remaining, reset) = if state.exhausted || reply.status == 429 {
            ("1000", "0.0", "600")
        } else {
            ("12", "988.0", "312")
        };
        reply
            .header("x-ratelimit-used", used)
            .header("x-ratelimit-remaining", remaining)
            .header("x-ratelimit-reset", reset)
    }

    /// `POST /api/v1/access_token` with the password grant.
    fn grant(&self, seen: &Seen) -> Reply {
        let basic = base64::engine::general_purpose::STANDARD
            .encode(format!("{CLIENT_ID}:{CLIENT_SECRET}"));
        if seen.method != "POST" || header(seen, "authorization") != format!("Basic {basic}") {
            return Reply {
                status: 401,
                ..Reply::json(&json!({ "message": "Unauthorized", "error": 401 }))
            };
        }
        let form: HashMap<String, String> = form(seen).into_iter().collect();
        assert_eq!(form["grant_type"], "password");
        if form["username"] != USERNAME || form["password"] != PASSWORD {
            return Reply::json(&json!({ "error": "invalid_grant" }));
        }
        let issued = {
            let mut state = self.state.lock().unwrap();
            state.issued += 1;
            state.issued
        };
        let access = self.token(issued);
        let mut state = self.state.lock().unwrap();
        state.access = access;
        Reply::json(&json!({
            "access_token": state.access,
            "token_type": "bearer",
            "expires_in": 86400,
            "scope": "*"
        }))
    }

    /// `None` when `seen` carries the valid token.
    fn refused(&self, seen: &Seen) -> Option<Reply> {
        let state = self.state.lock().unwrap();
        let token = header(seen, "authorization");
        (state.access.is_empty() || token != format!("Bearer {}", state.access)).then(|| Reply {
            status: 401,
            ..Reply::json(&json!({ "message": "Unauthorized", "error": 401 }))
        })
    }

    /// A Listing of the things in `listing`, newest first, after `after`.
    fn listing(&self, seen: &Seen, listing: &str) -> Reply {
        if let Some(refused) = self.refused(seen) {
            return refused;
        }
        assert!(
            header(seen, "user-agent").starts_with("server:rapport:"),
            "{seen:?}"
        );
        let q = query(seen);
        assert_eq!(q.get("raw_json").map(String::as_str), Some("1"));
        let state = self.state.lock().unwrap();
        if state.throttled && listing == "message/mentions" {
            return Reply {
                status: 429,
                ..Reply::json(&json!({ "message": "Too Many Requests", "error": 429 }))
            };
        }
        let limit = q
            .get("limit")
            .map_or(25, |l| l.parse::<usize>().unwrap().clamp(1, 100));
        let search = q.get("q").map(|q| q.to_lowercase());
        let all: Vec<&Value> = state
            .things
            .iter()
            .rev()
            .filter(|(thing, listings)| match &search {
                Some(q) => {
                    thing["kind"] == "t3"
                        && thing["data"]["title"]
                            .as_str()
                            .unwrap()
                            .to_lowercase()
                            .contains(q)
                }
                None => listings.iter().any(|l| l == listing),
            })
            .map(|(thing, _)| thing)
            .collect();
        let start = match q.get("after") {
            Some(after) => {
                all.iter()
                    .position(|thing| thing["data"]["name"] == after.as_str())
                    .unwrap()
                    + 1
            }
            None => 0,
        };
        let page: Vec<Value> = all
            .iter()
            .skip(start)
            .take(limit)
            .map(|t| (*t).clone())
            .collect();
        let after = if start + limit < all.len() {
            page.last().map(|t| t["data"]["name"].clone())
        } else {
            None
        };
        let page: Vec<Value> = page
            .into_iter()
            .filter(|t| !state.hidden.contains(t["data"]["name"].as_str().unwrap()))
            .collect();
        Reply::json(&json!({
            "kind": "Listing",
            "data": {
                "after": after,
                "dist": page.len(),
                "modhash": null,
                "geo_filter": "",
                "children": page,
                "before": null
            }
        }))
    }

    /// `POST /api/comment`.
    fn comment(&self, seen: &Seen) -> Reply {
        if let Some(refused) = self.refused(seen) {
            return refused;
        }
        let form: HashMap<String, String> = form(seen).into_iter().collect();
        let mut state = self.state.lock().unwrap();
        if state.down > 0 {
            state.down -= 1;
            return Reply::status(502);
        }
        if let Some(errors) = state.refuse.take() {
            return Reply::json(&json!({ "json": { "errors": errors } }));
        }
        state.posted += 1;
        let parent = form["thing_id"].clone();
        let id = format!("r{:0>6}", state.posted);
        let mut made = if parent.starts_with("t4_") {
            let mut made = message(&id, (USERNAME, US), "re: export", &form["text"], 500);
            made["data"]["parent_id"] = json!(parent);
            made
        } else {
            comment(&id, (USERNAME, US), &form["text"], &parent, 500)
        };
        // Made now, as Reddit stamps it.
        let now = chrono::Utc::now().timestamp() as f64;
        made["data"]["created"] = json!(now);
        made["data"]["created_utc"] = json!(now);
        let listing = if parent.starts_with("t4_") {
            "message/sent".to_owned()
        } else {
            format!("user/{USERNAME}/comments")
        };
        state.things.push((made.clone(), vec![listing]));
        if state.lose > 0 {
            state.lose -= 1;
            return Reply::status(502);
        }
        Reply::json(&json!({ "json": { "errors": [], "data": { "things": [made] } } }))
    }

    fn add(&self, thing: Value, listings: &[&str]) {
        self.state
            .lock()
            .unwrap()
            .things
            .push((thing, listings.iter().map(|l| (*l).to_owned()).collect()));
    }

    /// Username mentions by a hundred fans, numbered `range` (one a minute).
    fn mentions(&self, range: std::ops::Range<i64>) {
        for n in range {
            let fan = n % 100;
            let view = comment(
                &format!("m{n:0>6}"),
                (&format!("fan_{fan}"), &format!("t2_fan{fan}")),
                &format!("u/{USERNAME} question {n} about the export"),
                "t3_1h6abcd",
                n,
            );
            self.add(
                inbox_comment(&view, "username_mention"),
                &["message/mentions"],
            );
        }
    }

    /// Leaves mentions numbered `range` out of the listings' pages.
    fn hide(&self, range: std::ops::Range<i64>) {
        let mut state = self.state.lock().unwrap();
        state.hidden.extend(range.map(|n| format!("t1_m{n:0>6}")));
    }
}

fn expected(range: std::ops::Range<i64>) -> BTreeMap<String, usize> {
    range.map(|n| (format!("t1_m{n:0>6}"), 1)).collect()
}

backend_test!(
    async fn mentions_inbox_and_subreddits_land_threaded_and_a_reply_is_a_comment(app: TestApp) {
        let key = app.key(Role::Admin).await;
        let reddit = Reddit::start().await;
        let maya = ("maya_l", MAYA);
        let lucia = ("lucia_p", LUCIA);
        // Lucía asks in r/selfhosted; Maya answers her naming us; we answered Maya on
        // Reddit; Maya answers us; she also writes us a private message. A deleted
        // account's comment has no one to file it under.
        let question = post(
            "1h6abcd",
            lucia,
            "Which CRM do you self-host?",
            "Looking for something with a CSV export.",
            1,
        );
        let named = comment(
            "kq3v9zd",
            maya,
            "u/AcmeSupport the CSV export is broken since Tuesday",
            "t3_1h6abcd",
            2,
        );
        let ours = comment(
            "kq3wa01",
            (USERNAME, US),
            "Looking into it right now",
            "t1_kq3v9zd",
            3,
        );
        let answer = comment(
            "kq3wb77",
            maya,
            "thanks! still failing for files over 10 MB",
            "t1_kq3wa01",
            4,
        );
        let gone = comment("kq3wc00", ("[deleted]", ""), "[deleted]", "t3_1h6abcd", 5);
        let private = message(
            "2fx8k1",
            maya,
            "export",
            "can you look at my account directly?",
            6,
        );
        reddit.add(question.clone(), &["r/selfhosted/new"]);
        reddit.add(
            inbox_comment(&named, "username_mention"),
            &["message/mentions", "message/inbox"],
        );
        reddit.add(named.clone(), &["r/selfhosted/comments"]);
        reddit.add(ours.clone(), &["r/selfhosted/comments"]);
        reddit.add(inbox_comment(&answer, "comment_reply"), &["message/inbox"]);
        reddit.add(answer.clone(), &["r/selfhosted/comments"]);
        reddit.add(gone, &["r/selfhosted/comments"]);
        reddit.add(private.clone(), &["message/inbox"]);

        let input = json!({ "channel": "REDDIT", "name": "acme", "config": reddit.config(json!({ "subreddits": ["r/selfhosted"], "keywords": ["self-host"] })) });
        let created = app
            .gql(&key, crate::feeds::CREATE, json!({ "input": input }))
            .await;
        let source = &created["createSource"]["source"];
        // Both secrets set (in the order the database keeps the keys of a JSON object).
        let mut set: Vec<&str> = source["secretsSet"]
            .as_array()
            .unwrap()
            .iter()
            .map(|name| name.as_str().unwrap())
            .collect();
        set.sort_unstable();
        assert_eq!(set, ["client_secret", "password"]);
        let shown = source["config"].to_string();
        assert!(
            !shown.contains(PASSWORD) && !shown.contains(CLIENT_SECRET),
            "{shown}"
        );
        let id = source["id"].as_str().unwrap().to_owned();

        let report = sync(&app, &key, &id).await;
        assert_eq!(report["error"], Value::Null, "{report:#}");
        // The post, Maya's two comments, ours and her message; the deleted one skipped.
        assert_eq!(report["newItems"], 5, "{report:#}");
        // One token: basic auth with the app's id and secret, the password grant.
        let grants = reddit.seen("/api/v1/access_token");
        assert_eq!(grants.len(), 1);
        assert_eq!(
            form(&grants[0]),
            [
                ("grant_type".to_owned(), "password".to_owned()),
                ("username".to_owned(), USERNAME.to_owned()),
                ("password".to_owned(), PASSWORD.to_owned())
            ]
        );
        let agent = format!(
            "server:rapport:{} (by /u/{USERNAME})",
            env!("CARGO_PKG_VERSION")
        );
        assert_eq!(header(&grants[0], "user-agent"), agent);
        let mentions = reddit.seen("/message/mentions");
        assert_eq!(
            header(&mentions[0], "authorization"),
            format!("Bearer {}", reddit.token(1))
        );
        assert_eq!(header(&mentions[0], "user-agent"), agent);
        let q = query(&mentions[0]);
        assert_eq!((q["limit"].as_str(), q["mark"].as_str()), ("100", "false"));
        let searched = query(&reddit.seen("/search")[0]);
        assert_eq!(
            (
                searched["q"].as_str(),
                searched["sort"].as_str(),
                searched["type"].as_str()
            ),
            ("self-host", "new", "link")
        );
        assert_eq!(reddit.seen("/r/selfhosted/new").len(), 1);
        assert_eq!(reddit.seen("/r/selfhosted/comments").len(), 1);

        let all = items(&app, &key).await;
        let named = &all["t1_kq3v9zd"];
        assert_eq!(named["kind"], "MENTION");
        assert_eq!(named["channel"], "REDDIT");
        assert_eq!(named["direction"], "INBOUND");
        assert_eq!(named["identity"]["platformId"], MAYA);
        assert_eq!(named["customer"]["displayName"], "maya_l");
        // As the mentions list it: the link with its context.
        assert_eq!(
            named["url"],
            "https://www.reddit.com/r/selfhosted/comments/1h6abcd/which_crm_do_you_selfhost/kq3v9zd/?context=3"
        );
        // Threaded: the post starts the conversation, Maya's comment on it, our answer and
        // hers join it.
        let question = &all["t3_1h6abcd"];
        assert_eq!(question["kind"], "POST");
        assert_eq!(question["subject"], "Which CRM do you self-host?");
        assert_eq!(question["identity"]["platformId"], LUCIA);
        let conversation = &question["conversation"]["id"];
        assert_eq!(named["conversation"]["id"], *conversation);
        let ours = &all["t1_kq3wa01"];
        assert_eq!(ours["direction"], "OUTBOUND");
        assert_eq!(ours["kind"], "COMMENT");
        assert_eq!(ours["conversation"]["id"], *conversation);
        let answer = &all["t1_kq3wb77"];
        assert_eq!(answer["kind"], "REPLY");
        assert_eq!(answer["conversation"]["id"], *conversation);
        // One person, one customer, by the t2_ id.
        assert_eq!(answer["customer"]["id"], named["customer"]["id"]);
        let private = &all["t4_2fx8k1"];
        assert_eq!(private["kind"], "MESSAGE");
        assert_eq!(private["customer"]["id"], named["customer"]["id"]);
        assert_eq!(private["subject"], "export");
        assert_ne!(private["conversation"]["id"], *conversation);
        assert_ne!(question["customer"]["id"], named["customer"]["id"]);
        assert!(!all.contains_key("t1_kq3wc00"));

        // Nothing new: one page per stream, which reaches the mark. The token is reused.
        let report = sync(&app, &key, &id).await;
        assert_eq!(report["newItems"], 0, "{report:#}");
        assert_eq!(reddit.seen("/message/mentions").len(), 2);
        assert_eq!(reddit.seen("/api/v1/access_token").len(), 1);

        // A reply from Rapport: a comment answering Maya's.
        let agent_key = app.key(Role::Agent).await;
        let target = find_interaction(&app, &key, "t1_kq3wb77").await;
        let text = "Fixed in 2.0.1 — [release notes](https://example.com/2.0.1) & thanks!";
        let sent = app
            .gql(
                &agent_key,
                REPLY,
                json!({ "input": { "interactionId": target, "text": text } }),
            )
            .await["replyToInteraction"]["interaction"]
            .clone();
        let posted = reddit.seen("/api/comment");
        assert_eq!(posted.len(), 1);
        assert_eq!(posted[0].method, "POST");
        assert_eq!(
            form(&posted[0]),
            [
                ("api_type".to_owned(), "json".to_owned()),
                ("thing_id".to_owned(), "t1_kq3wb77".to_owned()),
                ("text".to_owned(), text.to_owned())
            ]
        );
        assert_eq!(
            header(&posted[0], "content-type"),
            "application/x-www-form-urlencoded"
        );
        assert_eq!(
            header(&posted[0], "authorization"),
            format!("Bearer {}", reddit.token(1))
        );
        assert_eq!(header(&posted[0], "user-agent"), agent);
        assert_eq!(sent["externalId"], "t1_r000001");
        assert_eq!(sent["direction"], "OUTBOUND");
        assert_eq!(sent["text"], text);
        assert_eq!(
            sent["url"],
            "https://www.reddit.com/r/selfhosted/comments/1h6abcd/which_crm_do_you_selfhost/r000001/"
        );
        assert_eq!(sent["conversation"]["id"], *conversation);

        // A private message is answered the same way, with its t4_ fullname.
        let target = find_interaction(&app, &key, "t4_2fx8k1").await;
        let sent = app
            .gql(
                &agent_key,
                REPLY,
                json!({ "input": { "interactionId": target, "text": "Sure, sending a link." } }),
            )
            .await["replyToInteraction"]["interaction"]
            .clone();
        assert_eq!(sent["externalId"], "t4_r000002");
        assert_eq!(
            sent["url"],
            "https://www.reddit.com/message/messages/r000002"
        );
        assert_eq!(form(&reddit.seen("/api/comment")[1])[1].1, "t4_2fx8k1");

        // Over 10,000 characters: refused before anything is sent.
        let long = json!({ "interactionId": target, "text": "a".repeat(10_001) });
        let (code, _) = app
            .gql_error(&agent_key, REPLY, json!({ "input": long }))
            .await;
        assert_eq!(code, "BAD_USER_INPUT");
        assert_eq!(reddit.seen("/api/comment").len(), 2);
    }
);

backend_test!(
    async fn a_first_sync_backfills_up_to_its_limit_then_takes_only_new_things(app: TestApp) {
        let key = app.key(Role::Admin).await;
        let reddit = Reddit::start().await;
        reddit.mentions(0..250);
        let id = reddit
            .source(&app, &key, "backfill", json!({ "backfill_limit": 120 }))
            .await;

        let report = sync(&app, &key, &id).await;
        assert_eq!(report["error"], Value::Null, "{report:#}");
        assert_eq!(report["newItems"], 120, "{report:#}");
        assert_eq!(stored_ids(&app).await, expected(130..250));
        // Back from the newest: a full page, then the 20 the limit leaves, after the first
        // page's oldest.
        let seen = reddit.seen("/message/mentions");
        assert_eq!(seen.len(), 2);
        assert_eq!(query(&seen[0]).get("after"), None);
        assert_eq!(query(&seen[0])["limit"], "100");
        assert_eq!(query(&seen[1])["after"], "t1_m000150");
        assert_eq!(query(&seen[1])["limit"], "20");
        let cursor: Value =
            serde_json::from_str(report["source"]["cursor"].as_str().unwrap()).unwrap();
        assert_eq!(cursor["streams"]["mentions"]["mark"]["name"], "t1_m000249");
        assert_eq!(cursor["streams"]["mentions"].get("walk"), None);

        // New mentions: only those, in one page that reaches the mark.
        reddit.mentions(250..280);
        let report = sync(&app, &key, &id).await;
        assert_eq!(report["newItems"], 30, "{report:#}");
        let seen = reddit.seen("/message/mentions");
        assert_eq!(seen.len(), 3);
        assert_eq!(query(&seen[2]).get("after"), None);
        // More than a page of them: back until the mark.
        reddit.mentions(280..430);
        let report = sync(&app, &key, &id).await;
        assert_eq!(report["newItems"], 150, "{report:#}");
        assert_eq!(reddit.seen("/message/mentions").len(), 5);
        assert_eq!(stored_ids(&app).await, expected(130..430));
        assert_eq!(sync(&app, &key, &id).await["newItems"], 0);

        // backfill_limit 0: the first sync only sets the mark.
        let fresh = Reddit::start().await;
        fresh.mentions(0..50);
        let id = fresh
            .source(&app, &key, "new only", json!({ "backfill_limit": 0 }))
            .await;
        assert_eq!(sync(&app, &key, &id).await["newItems"], 0);
        assert_eq!(query(&fresh.seen("/message/mentions")[0])["limit"], "1");
        fresh.mentions(50..53);
        assert_eq!(sync(&app, &key, &id).await["newItems"], 3);
    }
);

backend_test!(
    async fn a_refused_token_is_fetched_again_and_rate_limits_set_the_next_run(app: TestApp) {
        let key = app.key(Role::Admin).await;
        let reddit = Reddit::start().await;
        reddit.mentions(0..3);
        let id = reddit.source(&app, &key, "token", json!({})).await;
        assert_eq!(sync(&app, &key, &id).await["newItems"], 3);

        // Reddit no longer takes the token (revoked): 401, a new grant, the call again.
        reddit.state.lock().unwrap().access.clear();
        reddit.mentions(3..5);
        let report = sync(&app, &key, &id).await;
        assert_eq!(report["error"], Value::Null, "{report:#}");
        assert_eq!(report["newItems"], 2, "{report:#}");
        assert_eq!(reddit.seen("/api/v1/access_token").len(), 2);
        let mentions = reddit.seen("/message/mentions");
        let last_two: Vec<String> = mentions[mentions.len() - 2..]
            .iter()
            .map(|seen| header(seen, "authorization"))
            .collect();
        assert_eq!(
            last_two,
            [
                format!("Bearer {}", reddit.token(1)),
                format!("Bearer {}", reddit.token(2))
            ]
        );

        // The window's budget spent (X-Ratelimit-Remaining 0.0, reset in 600 s): the page
        // is stored and the next run waits for the reset.
        reddit.state.lock().unwrap().exhausted = true;
        reddit.mentions(5..6);
        let report = sync(&app, &key, &id).await;
        assert_eq!(report["newItems"], 1, "{report:#}");
        assert_eq!(report["source"]["status"], "RATE_LIMITED");
        let next: DateTime<Utc> = report["source"]["nextRunAt"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!(next >= Utc::now() + Duration::minutes(9), "{next}");
        assert!(next <= Utc::now() + Duration::minutes(11), "{next}");

        // 429: nothing lost, the same wait.
        {
            let mut state = reddit.state.lock().unwrap();
            state.exhausted = false;
            state.throttled = true;
        }
        let report = sync(&app, &key, &id).await;
        assert_eq!(report["source"]["status"], "RATE_LIMITED", "{report:#}");
        let next: DateTime<Utc> = report["source"]["nextRunAt"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!(next >= Utc::now() + Duration::minutes(9), "{next}");
        reddit.state.lock().unwrap().throttled = false;
        reddit.mentions(6..8);
        assert_eq!(sync(&app, &key, &id).await["newItems"], 2);

        // A wrong password (Reddit: 200 with invalid_grant) and a wrong app secret (401):
        // the source fails saying what to check, never the secret.
        for (name, config, check) in [
            (
                "password",
                json!({ "password": "wrong-password-1" }),
                "username and password",
            ),
            (
                "secret",
                json!({ "client_secret": "wrong-secret-1" }),
                "client_id and client_secret",
            ),
        ] {
            let wrong = reddit.source(&app, &key, name, config).await;
            let report = sync(&app, &key, &wrong).await;
            assert_eq!(report["source"]["status"], "FAILING", "{report:#}");
            let error = report["source"]["lastError"].as_str().unwrap();
            assert!(error.contains(check), "{error}");
            assert!(!error.contains("wrong-"), "{error}");
        }
        assert_eq!(reddit.state.lock().unwrap().issued, 2);
    }
);

backend_test!(
    async fn refused_replies_say_why_and_a_lost_answer_is_read_back(app: TestApp) {
        let key = app.key(Role::Admin).await;
        let agent = app.key(Role::Agent).await;
        let reddit = Reddit::start().await;
        let maya = comment(
            "kq3v9zd",
            ("maya_l", MAYA),
            "u/AcmeSupport is the export down?",
            "t3_1h6abcd",
            1,
        );
        reddit.add(
            inbox_comment(&maya, "username_mention"),
            &["message/mentions"],
        );
        let id = reddit.source(&app, &key, "replies", json!({})).await;
        assert_eq!(sync(&app, &key, &id).await["newItems"], 1);
        let conversation = items(&app, &key).await["t1_kq3v9zd"]["conversation"]["id"]
            .as_str()
            .unwrap()
            .to_owned();
        let reply = |text: &str, idempotency: &str| {
            let input = json!({ "conversationId": conversation, "text": text, "idempotencyKey": idempotency });
            let app = &app;
            let agent = agent.clone();
            async move {
                app.gql(&agent, TO_CONVERSATION, json!({ "input": input }))
                    .await["replyToConversation"]["interaction"]
                    .clone()
            }
        };

        // Reddit's own rate limit on commenting, in json.errors: FAILED, with the wait.
        reddit.state.lock().unwrap().refuse = Some(json!([["RATELIMIT", "Looks like you've been doing that a lot. Take a break for 5 minutes before trying again.", "ratelimit"]]));
        let limited = reply("yes, fixed", "r-1").await;
        assert_eq!(limited["deliveryStatus"], "FAILED", "{limited:#}");
        let error = limited["deliveryError"].as_str().unwrap();
        assert!(
            error.contains("rate-limited") && error.contains("300 s"),
            "{error}"
        );

        // A locked thread: FAILED, saying what Reddit said.
        reddit.state.lock().unwrap().refuse =
            Some(json!([["THREAD_LOCKED", "Comments are locked.", "parent"]]));
        let locked = reply("yes, fixed", "r-2").await;
        assert_eq!(locked["deliveryStatus"], "FAILED", "{locked:#}");
        assert_eq!(
            locked["deliveryError"],
            "the platform answered with something we cannot read: Reddit refused the reply: THREAD_LOCKED: Comments are locked. (parent)"
        );
        assert_eq!(reddit.state.lock().unwrap().posted, 0);

        // Reddit made the comment but the answer was lost (502): our newest comments are
        // read back, the one answering Maya with this text is the reply. Posted once.
        reddit.state.lock().unwrap().lose = 1;
        let sent = reply("fixed within the hour", "r-3").await;
        assert_eq!(sent["deliveryStatus"], "SENT", "{sent:#}");
        assert_eq!(sent["externalId"], "t1_r000001");
        let read = reddit.seen(&format!("/user/{USERNAME}/comments"));
        assert_eq!(read.len(), 1);
        assert_eq!(query(&read[0])["sort"], "new");
        assert_eq!(reddit.state.lock().unwrap().posted, 1);

        // A 502 before Reddit made anything: nothing of ours answers Maya with this text
        // lately (an answer with the same words from weeks ago is an earlier one), so the
        // reply is FAILED with the 502 and nothing is taken for it.
        reddit.add(
            comment("old0001", (USERNAME, US), "another answer", "t1_kq3v9zd", 2),
            &[&format!("user/{USERNAME}/comments")],
        );
        reddit.state.lock().unwrap().down = 1;
        let failed = reply("another answer", "r-4").await;
        assert_eq!(failed["deliveryStatus"], "FAILED", "{failed:#}");
        assert_eq!(failed["externalId"], Value::Null);
        let error = failed["deliveryError"].as_str().unwrap();
        assert!(error.contains("502"), "{error}");
        assert_eq!(reddit.seen(&format!("/user/{USERNAME}/comments")).len(), 2);
        assert_eq!(reddit.state.lock().unwrap().posted, 1);
        // Sent again: Reddit has no idempotency key, so it is a new comment.
        let retried = app.gql(&agent, RETRY, json!({ "id": failed["id"] })).await["retryReply"]
            ["interaction"]
            .clone();
        assert_eq!(retried["deliveryStatus"], "SENT", "{retried:#}");
        assert_eq!(retried["externalId"], "t1_r000002");
        let cursor = source_row(&app, &id).await.cursor.unwrap();
        assert!(cursor.contains("\"mentions\""), "{cursor}");
    }
);

backend_test!(
    async fn an_interrupted_backfill_resumes_and_a_closed_subreddit_only_warns(app: TestApp) {
        let key = app.key(Role::Admin).await;
        let reddit = Reddit::start().await;
        reddit.mentions(0..1_300);
        // r/closed answers 404 (banned or missing); r/selfhosted has a post.
        reddit.server.on("/r/closed/new", vec![Reply::status(404)]);
        reddit
            .server
            .on("/r/closed/comments", vec![Reply::status(404)]);
        reddit.add(
            post(
                "1h7zzzz",
                ("lucia_p", LUCIA),
                "Rapport on a Pi?",
                "It runs.",
                2_000,
            ),
            &["r/selfhosted/new"],
        );
        let id = reddit
            .source(
                &app,
                &key,
                "resumed",
                json!({ "backfill_limit": 1_200, "subreddits": ["closed", "selfhosted"] }),
            )
            .await;
        // One batch, then the run is stopped: the newest thousand mentions are stored with a
        // cursor where the walk goes on.
        let syncer = rapport::ingest::sync::Syncer::new(&app.app);
        let claimed = syncer.claim(&source_row(&app, &id).await).await.unwrap();
        let report = syncer.run(claimed, &|| true).await.unwrap();
        assert_eq!(report.batches, 1, "{report:?}");
        let stored = stored_ids(&app).await;
        assert_eq!(stored.len(), 1_001, "{report:?}");
        assert!(stored.contains_key("t3_1h7zzzz"));
        let cursor: Value =
            serde_json::from_str(&source_row(&app, &id).await.cursor.unwrap()).unwrap();
        let walk = &cursor["streams"]["mentions"]["walk"];
        assert_eq!(walk["after"], "t1_m000300");
        assert_eq!(walk["left"], 200);
        assert_eq!(walk["top"]["name"], "t1_m001299");
        // The closed subreddit warns in the cursor; nothing else stopped for it.
        let warning = cursor["streams"]["r/closed/new"]["warning"]
            .as_str()
            .unwrap();
        assert!(warning.contains("404"), "{warning}");
        assert!(cursor["streams"]["r/selfhosted/new"]["mark"].is_object());

        // The next sync goes on from the cursor down to the limit.
        let (new, _) = crate::mastodon::sync_until_done(&app, &id).await;
        assert_eq!(new, 200);
        let mentions = reddit.seen("/message/mentions");
        assert_eq!(query(&mentions[10])["after"], "t1_m000300");
        let mut all = expected(100..1_300);
        all.insert("t3_1h7zzzz".to_owned(), 1);
        assert_eq!(stored_ids(&app).await, all);
        let cursor: Value =
            serde_json::from_str(&source_row(&app, &id).await.cursor.unwrap()).unwrap();
        assert_eq!(cursor["streams"]["mentions"].get("walk"), None);
        assert_eq!(cursor["streams"]["mentions"]["mark"]["name"], "t1_m001299");
    }
);

backend_test!(
    async fn pages_of_things_the_account_may_not_see_do_not_end_a_walk(app: TestApp) {
        let key = app.key(Role::Admin).await;
        let reddit = Reddit::start().await;
        reddit.mentions(0..250);
        // The second page's hundred are all left out: it comes back empty, with an `after`.
        reddit.hide(50..150);
        let id = reddit
            .source(&app, &key, "hidden", json!({ "backfill_limit": 1_000 }))
            .await;
        let report = sync(&app, &key, &id).await;
        assert_eq!(report["error"], Value::Null, "{report:#}");
        let mut want = expected(0..50);
        want.extend(expected(150..250));
        assert_eq!(stored_ids(&app).await, want);
        let seen = reddit.seen("/message/mentions");
        assert_eq!(seen.len(), 3);
        assert_eq!(query(&seen[2])["after"], "t1_m000050");
        let cursor: Value =
            serde_json::from_str(report["source"]["cursor"].as_str().unwrap()).unwrap();
        assert_eq!(cursor["streams"]["mentions"]["mark"]["name"], "t1_m000249");
        assert_eq!(cursor["streams"]["mentions"].get("warning"), None);

        // Eleven empty pages in a row: the walk gives up there, and says so.
        let deep = Reddit::start().await;
        deep.mentions(0..1_400);
        deep.hide(200..1_300);
        let id = deep
            .source(&app, &key, "deep", json!({ "backfill_limit": 2_000 }))
            .await;
        let report = sync(&app, &key, &id).await;
        assert_eq!(report["error"], Value::Null, "{report:#}");
        assert_eq!(report["newItems"], 100, "{report:#}");
        assert_eq!(deep.seen("/message/mentions").len(), 12);
        let cursor: Value =
            serde_json::from_str(report["source"]["cursor"].as_str().unwrap()).unwrap();
        let mentions = &cursor["streams"]["mentions"];
        assert_eq!(mentions["mark"]["name"], "t1_m001399");
        assert_eq!(mentions.get("walk"), None);
        assert!(
            mentions["warning"]
                .as_str()
                .unwrap()
                .contains("11 pages in a row with nothing to read"),
            "{cursor:#}"
        );
        // Walked again from the newest by the next sync, the stream still says so.
        deep.mentions(1_400..1_403);
        let report = sync(&app, &key, &id).await;
        assert_eq!(report["newItems"], 3, "{report:#}");
        let again: Value =
            serde_json::from_str(report["source"]["cursor"].as_str().unwrap()).unwrap();
        assert_eq!(again["streams"]["mentions"]["warning"], mentions["warning"]);
        assert_eq!(again["streams"]["mentions"]["mark"]["name"], "t1_m001402");
    }
);
