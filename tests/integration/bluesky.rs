//! The Bluesky connector against a local PDS answering as the HTTP reference documents
//! each method (<https://docs.bsky.app/docs/category/http-reference>):
//! `com.atproto.server.createSession` / `refreshSession` (with `ExpiredToken`),
//! `app.bsky.notification.listNotifications` (paged back by an `indexedAt` cursor, as the
//! AppView pages), `app.bsky.feed.searchPosts` (paged by an offset cursor),
//! `app.bsky.feed.getPosts`, `com.atproto.repo.createRecord` / `getRecord`, with the
//! `ratelimit-*` headers Bluesky sends (reset in epoch seconds). The payloads are written
//! here, field for field from those pages, for people made up for the test.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Duration, SecondsFormat, Utc};
use rapport::domain::Role;
use serde_json::{json, Value};

use crate::backend_test;
use crate::common::TestApp;
use crate::feeds::{create_source, items, sync};
use crate::mastodon::{find_interaction, source_row, stored_ids, sync_until_done};
use crate::platform::{Platform, Reply, Seen};
use crate::processes::{config_file, rapport};

const HANDLE: &str = "acme.example";
const DID: &str = "did:plc:acmeacmeacmeacmeacmeacme";
const APP_PASSWORD: &str = "xk2q-7bvn-m3rt-p9wd";
const MAYA: &str = "did:plc:mayamayamayamayamayamaya";
const LUCIA: &str = "did:plc:luciluciluciluciluciluc";
const REPLY: &str = "mutation($input: ReplyToInteractionInput!) { replyToInteraction(input: $input) { interaction { id externalId direction kind text url customer { id } conversation { id } } } }";

/// What the PDS (and the AppView behind it) holds and how it answers.
#[derive(Default)]
struct State {
    /// Notifications of our account, oldest first.
    notifications: Vec<Value>,
    /// Every post view the AppView knows, oldest first.
    posts: Vec<Value>,
    /// Records we created, by record key.
    records: BTreeMap<String, Value>,
    /// The valid access and refresh tokens (empty: none valid until a refresh).
    access: String,
    refresh: String,
    /// Tokens issued so far.
    issued: usize,
    /// Answers say the rate-limit budget is spent until ten minutes from now.
    exhausted: bool,
    /// Answer listNotifications with 429.
    throttled: bool,
    /// How many of the next createRecord and getRecord answers a gateway in front of the
    /// PDS loses (a 502 after the PDS did its work).
    lose: usize,
    /// This server's number in the process: its tokens carry it.
    server: u64,
}

/// Numbers the fake servers of this process. The connector keeps sessions per process and
/// service, so a server on a port an earlier test's server had is first sent that server's
/// tokens: refused, a new session and the call again. Tokens that name their server tell
/// those calls apart ([`Bluesky::seen`] leaves them out).
static SERVERS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// How the PDS answers one method.
type Route = fn(&Bluesky, &Seen) -> Reply;

#[derive(Clone)]
struct Bluesky {
    server: Platform,
    state: Arc<Mutex<State>>,
}

fn at(minutes: i64) -> String {
    (DateTime::parse_from_rfc3339("2026-11-02T09:00:00Z").unwrap() + Duration::minutes(minutes))
        .with_timezone(&Utc)
        .to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// A record key in TID form for post `n`.
fn tid(n: u64) -> String {
    const ALPHABET: &[u8] = b"234567abcdefghijklmnopqrstuvwxyz";
    let mut value = 0x0006_1a2b_3c4d_0000_u64 + n * 1024;
    let mut out = Vec::new();
    while out.len() < 13 {
        out.push(ALPHABET[(value % 32) as usize]);
        value /= 32;
    }
    out.reverse();
    String::from_utf8(out).unwrap()
}

fn cid(seed: &str) -> String {
    let digest = sha2::Digest::finalize(sha2::Digest::chain_update(
        <sha2::Sha256 as sha2::Digest>::new(),
        seed,
    ));
    format!("bafyrei{}", &hex::encode(digest)[..52])
}

/// An `app.bsky.actor.defs#profileViewBasic`.
fn profile(did: &str, handle: &str, name: &str) -> Value {
    json!({
        "did": did,
        "handle": handle,
        "displayName": name,
        "avatar": format!("https://cdn.bsky.app/img/avatar/plain/{did}/{}@jpeg", cid(did)),
        "associated": { "chat": { "allowIncoming": "following" } },
        "viewer": { "muted": false, "blockedBy": false },
        "labels": [],
        "createdAt": "2023-05-10T11:20:00.000Z"
    })
}

/// A post by `author` as an `app.bsky.feed.defs#postView`; `reply` names the root and
/// parent views it answers.
fn post(author: &Value, n: u64, text: &str, minute: i64, reply: Option<(&Value, &Value)>) -> Value {
    let did = author["did"].as_str().unwrap();
    let uri = format!("at://{did}/app.bsky.feed.post/{}", tid(n));
    let mut record = json!({
        "$type": "app.bsky.feed.post",
        "text": text,
        "createdAt": at(minute),
        "langs": [if text.contains("encanta") { "es" } else { "en" }],
    });
    if let Some(at_start) = text.find("@acme.example") {
        record["facets"] = json!([{
            "index": { "byteStart": at_start, "byteEnd": at_start + "@acme.example".len() },
            "features": [{ "$type": "app.bsky.richtext.facet#mention", "did": DID }]
        }]);
    }
    if let Some((root, parent)) = reply {
        record["reply"] = json!({
            "root": { "uri": root["uri"], "cid": root["cid"] },
            "parent": { "uri": parent["uri"], "cid": parent["cid"] }
        });
    }
    json!({
        "uri": uri,
        "cid": cid(&uri),
        "author": author,
        "record": record,
        "replyCount": 0,
        "repostCount": 0,
        "likeCount": 0,
        "quoteCount": 0,
        // Indexed a few seconds after it was written.
        "indexedAt": at(minute).replace(":00.000Z", ":04.000Z"),
        "viewer": { "threadMuted": false, "embeddingDisabled": false },
        "labels": []
    })
}

/// The `app.bsky.notification.listNotifications#notification` of `view` for `reason`.
fn notification(view: &Value, reason: &str, subject: Option<&Value>) -> Value {
    let mut entry = json!({
        "uri": view["uri"],
        "cid": view["cid"],
        "author": view["author"],
        "reason": reason,
        "record": view["record"],
        "isRead": false,
        "indexedAt": view["indexedAt"],
        "labels": []
    });
    if let Some(subject) = subject {
        entry["reasonSubject"] = subject["uri"].clone();
    }
    entry
}

fn params(seen: &Seen) -> Vec<(String, String)> {
    reqwest::Url::parse(&format!("http://query/?{}", seen.query))
        .unwrap()
        .query_pairs()
        .map(|(key, value)| (key.into_owned(), value.into_owned()))
        .collect()
}

fn param(seen: &Seen, name: &str) -> Option<String> {
    params(seen)
        .into_iter()
        .find(|(key, _)| key == name)
        .map(|(_, value)| value)
}

fn body(seen: &Seen) -> Value {
    serde_json::from_slice(&seen.body).unwrap()
}

fn bearer(seen: &Seen) -> String {
    seen.headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

/// An XRPC error answer.
fn xrpc_error(status: u16, error: &str, message: &str) -> Reply {
    Reply {
        status,
        ..Reply::json(&json!({ "error": error, "message": message }))
    }
}

impl Bluesky {
    async fn start() -> Bluesky {
        let bluesky = Bluesky {
            server: Platform::start().await,
            state: Arc::new(Mutex::new(State {
                server: SERVERS.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
                ..State::default()
            })),
        };
        let routes: [(&str, Route); 7] = [
            ("com.atproto.server.createSession", Bluesky::create_session),
            (
                "com.atproto.server.refreshSession",
                Bluesky::refresh_session,
            ),
            (
                "app.bsky.notification.listNotifications",
                Bluesky::list_notifications,
            ),
            ("app.bsky.feed.searchPosts", Bluesky::search_posts),
            ("app.bsky.feed.getPosts", Bluesky::get_posts),
            ("com.atproto.repo.createRecord", Bluesky::create_record),
            ("com.atproto.repo.getRecord", Bluesky::get_record),
        ];
        for (nsid, route) in routes {
            let serving = bluesky.clone();
            bluesky
                .server
                .handle(&format!("/xrpc/{nsid}"), move |seen| {
                    serving.limited(route(&serving, seen))
                });
        }
        bluesky
    }

    /// The calls of `nsid`, but those made with another server's token (see [`SERVERS`]).
    fn seen(&self, nsid: &str) -> Vec<Seen> {
        let ours = format!(
            "eyJhbGciOiJFUzI1NksifQ.{}.",
            self.state.lock().unwrap().server
        );
        self.server
            .seen(&format!("/xrpc/{nsid}"))
            .into_iter()
            .filter(|seen| {
                let token = bearer(seen);
                !token.starts_with("Bearer ") || token.contains(&ours)
            })
            .collect()
    }

    /// The `n`th token of `kind` (`access`, `refresh`) this server issued.
    fn token(&self, kind: &str, n: usize) -> String {
        let server = self.state.lock().unwrap().server;
        format!("eyJhbGciOiJFUzI1NksifQ.{server}.{kind}-{n}")
    }

    /// A Bluesky source of `app`'s workspace on this PDS, with `extra` settings.
    async fn source(&self, app: &TestApp, key: &str, name: &str, extra: Value) -> String {
        create_source(app, key, "BLUESKY", name, self.config(extra)).await
    }

    fn config(&self, extra: Value) -> Value {
        let mut config = json!({ "service": self.server.base, "identifier": HANDLE, "app_password": APP_PASSWORD });
        for (key, value) in extra.as_object().unwrap() {
            config[key] = value.clone();
        }
        config
    }

    /// The headers every answer carries (the PDS's global per-IP limit).
    fn limited(&self, reply: Reply) -> Reply {
        let state = self.state.lock().unwrap();
        let (remaining, reset) = if state.exhausted || reply.status == 429 {
            ("0", Utc::now() + Duration::minutes(10))
        } else {
            ("2999", Utc::now() + Duration::minutes(5))
        };
        reply
            .header("ratelimit-limit", "3000")
            .header("ratelimit-remaining", remaining)
            .header("ratelimit-reset", &reset.timestamp().to_string())
            .header("ratelimit-policy", "3000;w=300")
    }

    fn tokens(state: &mut State) -> Value {
        state.issued += 1;
        let (server, issued) = (state.server, state.issued);
        state.access = format!("eyJhbGciOiJFUzI1NksifQ.{server}.access-{issued}");
        state.refresh = format!("eyJhbGciOiJFUzI1NksifQ.{server}.refresh-{issued}");
        json!({
            "accessJwt": state.access,
            "refreshJwt": state.refresh,
            "handle": HANDLE,
            "did": DID,
            "didDoc": {
                "@context": ["https://www.w3.org/ns/did/v1"],
                "id": DID,
                "alsoKnownAs": [format!("at://{HANDLE}")],
                "service": [{ "id": "#atproto_pds", "type": "AtprotoPersonalDataServer", "serviceEndpoint": "https://pds.example" }]
            },
            "email": "social@acme.example",
            "emailConfirmed": true,
            "emailAuthFactor": false,
            "active": true
        })
    }

    fn create_session(&self, seen: &Seen) -> Reply {
        let input = body(seen);
        if seen.method != "POST"
            || input["identifier"] != HANDLE
            || input["password"] != APP_PASSWORD
        {
            return xrpc_error(
                401,
                "AuthenticationRequired",
                "Invalid identifier or password",
            );
        }
        Reply::json(&Bluesky::tokens(&mut self.state.lock().unwrap()))
    }

    fn refresh_session(&self, seen: &Seen) -> Reply {
        let mut state = self.state.lock().unwrap();
        if state.refresh.is_empty() || bearer(seen) != format!("Bearer {}", state.refresh) {
            return xrpc_error(400, "ExpiredToken", "Token has expired");
        }
        let mut session = Bluesky::tokens(&mut state);
        session.as_object_mut().unwrap().remove("email");
        Reply::json(&session)
    }

    /// `None` when `seen` carries the valid access token; the error answer otherwise.
    fn refused(&self, seen: &Seen) -> Option<Reply> {
        let state = self.state.lock().unwrap();
        let token = bearer(seen);
        if !state.access.is_empty() && token == format!("Bearer {}", state.access) {
            return None;
        }
        Some(if token.contains(".access-") {
            xrpc_error(400, "ExpiredToken", "Token has expired")
        } else {
            xrpc_error(401, "AuthenticationRequired", "Authentication Required")
        })
    }

    /// The access token stops working (its two hours are over).
    fn expire(&self) {
        self.state.lock().unwrap().access.clear();
    }

    fn list_notifications(&self, seen: &Seen) -> Reply {
        if let Some(refused) = self.refused(seen) {
            return refused;
        }
        let state = self.state.lock().unwrap();
        if state.throttled {
            return xrpc_error(429, "RateLimitExceeded", "Rate Limit Exceeded");
        }
        let reasons: Vec<String> = params(seen)
            .into_iter()
            .filter(|(key, _)| key == "reasons")
            .map(|(_, value)| value)
            .collect();
        let limit = param(seen, "limit").map_or(50, |l| l.parse::<usize>().unwrap().clamp(1, 100));
        let before = param(seen, "cursor");
        let page: Vec<Value> = state
            .notifications
            .iter()
            .rev()
            .filter(|n| {
                before
                    .as_deref()
                    .is_none_or(|c| n["indexedAt"].as_str().unwrap() < c)
            })
            .filter(|n| reasons.is_empty() || reasons.iter().any(|r| n["reason"] == r.as_str()))
            .take(limit)
            .cloned()
            .collect();
        let mut answer = json!({ "notifications": page, "priority": false, "seenAt": at(0) });
        // The AppView's cursor: the indexedAt of the page's last (oldest) entry.
        if let Some(last) = page.last() {
            answer["cursor"] = last["indexedAt"].clone();
        }
        Reply::json(&answer)
    }

    fn search_posts(&self, seen: &Seen) -> Reply {
        if let Some(refused) = self.refused(seen) {
            return refused;
        }
        let state = self.state.lock().unwrap();
        let q = param(seen, "q").unwrap().to_lowercase();
        assert_eq!(param(seen, "sort").as_deref(), Some("latest"));
        let limit = param(seen, "limit").map_or(25, |l| l.parse::<usize>().unwrap().clamp(1, 100));
        let offset = param(seen, "cursor").map_or(0, |c| c.parse::<usize>().unwrap());
        let hits: Vec<&Value> = state
            .posts
            .iter()
            .rev()
            .filter(|p| {
                p["record"]["text"]
                    .as_str()
                    .unwrap()
                    .to_lowercase()
                    .contains(&q)
            })
            .collect();
        let page: Vec<Value> = hits
            .iter()
            .skip(offset)
            .take(limit)
            .map(|p| (*p).clone())
            .collect();
        let mut answer = json!({ "posts": page, "hitsTotal": hits.len() });
        if offset + limit < hits.len() {
            answer["cursor"] = json!((offset + limit).to_string());
        }
        Reply::json(&answer)
    }

    fn get_posts(&self, seen: &Seen) -> Reply {
        if let Some(refused) = self.refused(seen) {
            return refused;
        }
        let state = self.state.lock().unwrap();
        let uris: Vec<String> = params(seen)
            .into_iter()
            .filter(|(key, _)| key == "uris")
            .map(|(_, value)| value)
            .collect();
        let posts: Vec<&Value> = state
            .posts
            .iter()
            .filter(|p| uris.iter().any(|u| p["uri"] == u.as_str()))
            .collect();
        Reply::json(&json!({ "posts": posts }))
    }

    fn create_record(&self, seen: &Seen) -> Reply {
        if let Some(refused) = self.refused(seen) {
            return refused;
        }
        let input = body(seen);
        assert_eq!(input["repo"], DID);
        assert_eq!(input["collection"], "app.bsky.feed.post");
        let rkey = input["rkey"].as_str().unwrap().to_owned();
        let uri = format!("at://{DID}/app.bsky.feed.post/{rkey}");
        let mut state = self.state.lock().unwrap();
        // The documentation names no error for a key already taken. The reference PDS's
        // repository throws a plain error ("There is already a value at key"), which its
        // XRPC server answers as an internal error.
        if state.records.contains_key(&rkey) {
            return xrpc_error(500, "InternalServerError", "Internal Server Error");
        }
        state.records.insert(rkey, input["record"].clone());
        // The AppView indexes it.
        let view = json!({
            "uri": uri, "cid": cid(&uri), "author": profile(DID, HANDLE, "Acme"), "record": input["record"],
            "replyCount": 0, "repostCount": 0, "likeCount": 0, "quoteCount": 0,
            "indexedAt": Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true), "labels": []
        });
        state.posts.push(view);
        if Bluesky::lost(&mut state) {
            return Reply::status(502);
        }
        Reply::json(&json!({
            "uri": uri,
            "cid": cid(&uri),
            "commit": { "cid": cid("commit"), "rev": "3lbx2kq4wcn2k" },
            "validationStatus": "valid"
        }))
    }

    /// Whether this answer is lost on its way back.
    fn lost(state: &mut State) -> bool {
        let lost = state.lose > 0;
        state.lose = state.lose.saturating_sub(1);
        lost
    }

    fn get_record(&self, seen: &Seen) -> Reply {
        let mut state = self.state.lock().unwrap();
        if Bluesky::lost(&mut state) {
            return Reply::status(502);
        }
        let rkey = param(seen, "rkey").unwrap();
        assert_eq!(param(seen, "repo").as_deref(), Some(DID));
        match state.records.get(&rkey) {
            Some(record) => {
                let uri = format!("at://{DID}/app.bsky.feed.post/{rkey}");
                Reply::json(&json!({ "uri": uri, "cid": cid(&uri), "value": record }))
            }
            None => xrpc_error(
                400,
                "RecordNotFound",
                &format!("Could not locate record: at://{DID}/app.bsky.feed.post/{rkey}"),
            ),
        }
    }

    /// A post the AppView indexes, with the notification it gives us (if any).
    fn add(&self, view: &Value, reason: Option<(&str, Option<&Value>)>) {
        let mut state = self.state.lock().unwrap();
        state.posts.push(view.clone());
        if let Some((reason, subject)) = reason {
            state
                .notifications
                .push(notification(view, reason, subject));
        }
    }

    /// Mentions of us by a hundred fans, numbered `range` (one a minute).
    fn mentions(&self, range: std::ops::Range<u64>) {
        for n in range {
            let fan = n % 100;
            let author = profile(
                &format!("did:plc:fan{fan:0>21}"),
                &format!("fan{fan}.bsky.social"),
                &format!("Fan {fan}"),
            );
            let view = post(
                &author,
                1_000 + n,
                &format!("@acme.example question {n} about the export"),
                n as i64,
                None,
            );
            self.add(&view, Some(("mention", None)));
        }
    }
}

/// The external id of mention `n` by [`Bluesky::mentions`].
fn mention_uri(n: u64) -> String {
    format!(
        "at://did:plc:fan{:0>21}/app.bsky.feed.post/{}",
        n % 100,
        tid(1_000 + n)
    )
}

fn expected(range: impl Iterator<Item = u64>) -> BTreeMap<String, usize> {
    range.map(|n| (mention_uri(n), 1)).collect()
}

backend_test!(
    async fn mentions_and_searches_land_threaded_and_a_reply_is_posted_once(app: TestApp) {
        let key = app.key(Role::Admin).await;
        let bluesky = Bluesky::start().await;
        let maya = profile(MAYA, "maya.bsky.social", "Maya Lindqvist");
        let lucia = profile(LUCIA, "lucia.bsky.social", "Lucía Pérez");
        let us = profile(DID, HANDLE, "Acme");
        let m1 = post(
            &maya,
            1,
            "@acme.example the CSV export has been broken since Tuesday, any news?",
            1,
            None,
        );
        let r1 = post(
            &us,
            2,
            "@maya.bsky.social looking into the export right now",
            2,
            Some((&m1, &m1)),
        );
        let m2 = post(
            &maya,
            3,
            "thanks! the export still fails for files over 10 MB",
            3,
            Some((&m1, &r1)),
        );
        let es = post(
            &lucia,
            4,
            "me encanta la exportación nueva de #rapportcrm",
            4,
            None,
        );
        // Maya moved to her own domain; her DID stays.
        let maya_moved = profile(MAYA, "maya.example.com", "Maya Lindqvist");
        let quote = post(
            &maya_moved,
            5,
            "this is why I recommend @acme.example to everyone",
            5,
            None,
        );
        bluesky.add(&m1, Some(("mention", None)));
        bluesky.add(&r1, None);
        bluesky.add(&m2, Some(("reply", Some(&r1))));
        bluesky.add(&es, None);
        bluesky.add(&quote, Some(("quote", Some(&r1))));

        let created = app
            .gql(&key, crate::feeds::CREATE, json!({ "input": { "channel": "BLUESKY", "name": "acme", "config": bluesky.config(json!({ "keywords": ["export"], "hashtags": ["#rapportcrm"] })) } }))
            .await;
        let source = &created["createSource"]["source"];
        assert_eq!(source["secretsSet"], json!(["app_password"]));
        assert!(!source["config"].to_string().contains(APP_PASSWORD));
        let id = source["id"].as_str().unwrap().to_owned();

        let report = sync(&app, &key, &id).await;
        assert_eq!(report["error"], Value::Null, "{report:#}");
        assert_eq!(report["newItems"], 5, "{report:#}");
        // One login, with the identifier and the app password, then bearer tokens.
        let logins = bluesky.seen("com.atproto.server.createSession");
        assert_eq!(logins.len(), 1);
        assert_eq!(
            body(&logins[0]),
            json!({ "identifier": HANDLE, "password": APP_PASSWORD })
        );
        let listed = bluesky.seen("app.bsky.notification.listNotifications");
        assert_eq!(
            bearer(&listed[0]),
            format!("Bearer {}", bluesky.token("access", 1))
        );
        let reasons: Vec<String> = params(&listed[0])
            .into_iter()
            .filter(|(k, _)| k == "reasons")
            .map(|(_, v)| v)
            .collect();
        assert_eq!(reasons, ["mention", "reply", "quote"]);
        assert_eq!(param(&listed[0], "limit").as_deref(), Some("100"));
        let searched: Vec<String> = bluesky
            .seen("app.bsky.feed.searchPosts")
            .iter()
            .map(|s| param(s, "q").unwrap())
            .collect();
        assert_eq!(searched, ["export", "#rapportcrm"]);

        let all = items(&app, &key).await;
        let uri = |view: &Value| view["uri"].as_str().unwrap().to_owned();
        let mention = &all[&uri(&m1)];
        assert_eq!(mention["kind"], "MENTION");
        assert_eq!(mention["direction"], "INBOUND");
        assert_eq!(mention["channel"], "BLUESKY");
        assert_eq!(mention["text"], m1["record"]["text"]);
        assert_eq!(mention["identity"]["platformId"], MAYA);
        assert_eq!(mention["customer"]["displayName"], "Maya Lindqvist");
        assert_eq!(
            mention["url"],
            format!("https://bsky.app/profile/maya.bsky.social/post/{}", tid(1))
        );
        // Our reply, found by the keyword search, is outbound in Maya's conversation; her
        // answer to it (a notification, handed over after it) joins the same one.
        let ours = &all[&uri(&r1)];
        assert_eq!(ours["direction"], "OUTBOUND");
        assert_eq!(ours["kind"], "POST");
        assert_eq!(ours["conversation"]["id"], mention["conversation"]["id"]);
        assert_eq!(ours["customer"]["id"], mention["customer"]["id"]);
        let answer = &all[&uri(&m2)];
        assert_eq!(answer["kind"], "REPLY");
        assert_eq!(answer["conversation"]["id"], mention["conversation"]["id"]);
        // A new handle, the same DID: the same customer.
        let quoted = &all[&uri(&quote)];
        assert_eq!(quoted["kind"], "MENTION");
        assert_eq!(quoted["customer"]["id"], mention["customer"]["id"]);
        assert_eq!(
            quoted["url"],
            format!("https://bsky.app/profile/maya.example.com/post/{}", tid(5))
        );
        let spanish = &all[&uri(&es)];
        assert_eq!(spanish["language"], "es");
        assert_eq!(spanish["customer"]["displayName"], "Lucía Pérez");
        assert_ne!(spanish["customer"]["id"], mention["customer"]["id"]);

        // The first sync walked back to the stream's end (an empty page); the next one
        // finds nothing new in one page, which reaches the mark.
        let report = sync(&app, &key, &id).await;
        assert_eq!(report["newItems"], 0, "{report:#}");
        assert_eq!(
            bluesky
                .seen("app.bsky.notification.listNotifications")
                .len(),
            3
        );
        assert_eq!(bluesky.seen("com.atproto.server.createSession").len(), 1);

        // A reply from Rapport: a post answering Maya's, in her thread, mentioning her.
        let agent = app.key(Role::Agent).await;
        let target = find_interaction(&app, &key, &uri(&m2)).await;
        let input = json!({ "interactionId": target, "text": "¡Arreglado! ✨ gracias por la paciencia", "idempotencyKey": "reply-m2-1" });
        let sent = app.gql(&agent, REPLY, json!({ "input": input })).await["replyToInteraction"]
            ["interaction"]
            .clone();
        let created = bluesky.seen("com.atproto.repo.createRecord");
        assert_eq!(created.len(), 1);
        assert_eq!(
            bearer(&created[0]),
            format!("Bearer {}", bluesky.token("access", 1))
        );
        let mut request = body(&created[0]);
        let rkey = request["rkey"].as_str().unwrap().to_owned();
        assert_eq!(rkey.len(), 13);
        assert!(
            rkey.bytes()
                .all(|c| b"234567abcdefghijklmnopqrstuvwxyz".contains(&c)),
            "{rkey}"
        );
        let created_at = request["record"]["createdAt"].take();
        assert!(
            DateTime::parse_from_rfc3339(created_at.as_str().unwrap()).is_ok(),
            "{created_at}"
        );
        let text = "@maya.bsky.social ¡Arreglado! ✨ gracias por la paciencia";
        assert_eq!(
            request,
            json!({
                "repo": DID,
                "collection": "app.bsky.feed.post",
                "rkey": rkey,
                "record": {
                    "$type": "app.bsky.feed.post",
                    "text": text,
                    "createdAt": null,
                    "reply": {
                        "root": { "uri": m1["uri"], "cid": m1["cid"] },
                        "parent": { "uri": m2["uri"], "cid": m2["cid"] }
                    },
                    "facets": [{
                        "index": { "byteStart": 0, "byteEnd": 17 },
                        "features": [{ "$type": "app.bsky.richtext.facet#mention", "did": MAYA }]
                    }]
                }
            })
        );
        let posted = format!("at://{DID}/app.bsky.feed.post/{rkey}");
        assert_eq!(sent["externalId"], posted);
        assert_eq!(sent["text"], text);
        assert_eq!(
            sent["url"],
            format!("https://bsky.app/profile/{HANDLE}/post/{rkey}")
        );
        assert_eq!(sent["direction"], "OUTBOUND");
        assert_eq!(sent["conversation"]["id"], mention["conversation"]["id"]);

        // The same reply again: the same record key, which the PDS refuses (500); the record
        // is read back and the stored reply returned. One post on Bluesky.
        let again = app.gql(&agent, REPLY, json!({ "input": input })).await["replyToInteraction"]
            ["interaction"]
            .clone();
        assert_eq!(again["id"], sent["id"]);
        let created = bluesky.seen("com.atproto.repo.createRecord");
        assert_eq!(created.len(), 2);
        assert_eq!(body(&created[1])["rkey"], rkey);
        assert_eq!(bluesky.seen("com.atproto.repo.getRecord").len(), 1);
        assert_eq!(bluesky.state.lock().unwrap().records.len(), 1);

        // Too long for a post once the mention is in: refused before anything is sent.
        let long = json!({ "interactionId": target, "text": "a".repeat(290) });
        let (code, refusal) = app.gql_error(&agent, REPLY, json!({ "input": long })).await;
        assert_eq!(code, "BAD_USER_INPUT");
        let message = refusal["errors"][0]["message"].as_str().unwrap();
        assert!(
            message.contains("308 graphemes") && message.contains("300"),
            "{message}"
        );
        assert_eq!(bluesky.seen("com.atproto.repo.createRecord").len(), 2);

        // Answering our own reply, stored as Rapport sent it (no cid): the post is read
        // with getPosts, and the thread's root comes from it.
        let own = json!({ "interactionId": sent["id"], "text": "update: fixed in 2.0.1", "idempotencyKey": "reply-2" });
        let update = app.gql(&agent, REPLY, json!({ "input": own })).await["replyToInteraction"]
            ["interaction"]
            .clone();
        assert!(update["externalId"]
            .as_str()
            .unwrap()
            .starts_with(&format!("at://{DID}/")));
        let fetched = bluesky.seen("app.bsky.feed.getPosts");
        assert_eq!(fetched.len(), 1);
        assert_eq!(param(&fetched[0], "uris"), Some(posted.clone()));
        let created = bluesky.seen("com.atproto.repo.createRecord");
        let record = &body(&created[2])["record"];
        assert_eq!(record["reply"]["root"]["uri"], m1["uri"]);
        assert_eq!(record["reply"]["parent"]["uri"], posted);
        // Our own post: no mention of ourselves.
        assert_eq!(record["text"], "update: fixed in 2.0.1");
        assert!(record.get("facets").is_none());
        assert_eq!(update["conversation"]["id"], mention["conversation"]["id"]);
    }
);

backend_test!(
    async fn a_first_sync_backfills_up_to_its_limit_then_takes_only_new_posts(app: TestApp) {
        let key = app.key(Role::Admin).await;
        let bluesky = Bluesky::start().await;
        bluesky.mentions(0..250);
        let id = bluesky
            .source(&app, &key, "backfill", json!({ "backfill_limit": 120 }))
            .await;

        let report = sync(&app, &key, &id).await;
        assert_eq!(report["error"], Value::Null, "{report:#}");
        assert_eq!(report["newItems"], 120, "{report:#}");
        assert_eq!(stored_ids(&app).await, expected(130..250));
        // Back from the newest: a full page, then the 20 the limit leaves, from the first
        // page's cursor (the indexedAt of its oldest entry).
        let seen = bluesky.seen("app.bsky.notification.listNotifications");
        assert_eq!(seen.len(), 2);
        assert_eq!(param(&seen[0], "cursor"), None);
        assert_eq!(param(&seen[0], "limit").as_deref(), Some("100"));
        let oldest_of_first = bluesky.state.lock().unwrap().notifications[150]["indexedAt"]
            .as_str()
            .unwrap()
            .to_owned();
        assert_eq!(param(&seen[1], "cursor"), Some(oldest_of_first));
        assert_eq!(param(&seen[1], "limit").as_deref(), Some("20"));
        let cursor: Value =
            serde_json::from_str(report["source"]["cursor"].as_str().unwrap()).unwrap();
        assert_eq!(cursor["notifications"]["mark"]["uri"], mention_uri(249));
        assert_eq!(cursor["notifications"].get("walk"), None);

        // New mentions: only those, in one page that reaches the mark.
        bluesky.mentions(250..280);
        let report = sync(&app, &key, &id).await;
        assert_eq!(report["newItems"], 30, "{report:#}");
        let seen = bluesky.seen("app.bsky.notification.listNotifications");
        assert_eq!(seen.len(), 3);
        assert_eq!(param(&seen[2], "cursor"), None);
        // More than a page of them: back until the mark.
        bluesky.mentions(280..430);
        let report = sync(&app, &key, &id).await;
        assert_eq!(report["newItems"], 150, "{report:#}");
        assert_eq!(
            bluesky
                .seen("app.bsky.notification.listNotifications")
                .len(),
            5
        );
        assert_eq!(stored_ids(&app).await, expected(130..430));
        assert_eq!(sync(&app, &key, &id).await["newItems"], 0);

        // backfill_limit 0: the first sync only sets the mark.
        let fresh = Bluesky::start().await;
        fresh.mentions(0..50);
        let id = fresh
            .source(&app, &key, "new only", json!({ "backfill_limit": 0 }))
            .await;
        assert_eq!(sync(&app, &key, &id).await["newItems"], 0);
        assert_eq!(
            param(
                &fresh.seen("app.bsky.notification.listNotifications")[0],
                "limit"
            )
            .as_deref(),
            Some("1")
        );
        fresh.mentions(50..53);
        assert_eq!(sync(&app, &key, &id).await["newItems"], 3);
    }
);

backend_test!(
    async fn an_interrupted_backfill_resumes_where_it_stopped(app: TestApp) {
        // `rapport sync` works in the default workspace.
        let key = app.key_in("default", Role::Admin).await;
        let bluesky = Bluesky::start().await;
        bluesky.mentions(0..2_600);
        let id = bluesky
            .source(&app, &key, "resumed", json!({ "backfill_limit": 2_500 }))
            .await;
        // One batch, then the run is stopped (a shutdown): the newest thousand are stored
        // with a cursor where the walk goes on.
        let syncer = rapport::ingest::sync::Syncer::new(&app.app);
        let claimed = syncer.claim(&source_row(&app, &id).await).await.unwrap();
        let report = syncer.run(claimed, &|| true).await.unwrap();
        assert_eq!((report.new, report.batches), (1_000, 1), "{report:?}");
        assert_eq!(stored_ids(&app).await, expected(1_600..2_600));
        let cursor: Value =
            serde_json::from_str(&source_row(&app, &id).await.cursor.unwrap()).unwrap();
        let walk = &cursor["notifications"]["walk"];
        assert_eq!(walk["left"], 1_500);
        assert_eq!(walk["top"]["uri"], mention_uri(2_599));
        assert_eq!(
            walk["cursor"],
            bluesky.state.lock().unwrap().notifications[1_600]["indexedAt"]
        );

        let walk_cursor = walk["cursor"].as_str().unwrap().to_owned();
        let after_one = source_row(&app, &id).await.cursor;

        // The next run dies after its pull: nothing of it is stored, the cursor stays.
        let one_batch = config_file(&app, "max_batches = 1\nlease_secs = 1\n");
        let output = rapport(&one_batch)
            .args(["sync", &id])
            .env("RAPPORT_FAILPOINT", "sync.after_pull")
            .output()
            .unwrap();
        assert!(!output.status.success());
        assert_eq!(stored_ids(&app).await, expected(1_600..2_600));
        assert_eq!(source_row(&app, &id).await.cursor, after_one);

        // Mentions arrive meanwhile. Once the dead run's lease is over, the next runs go
        // on from the cursor down to the limit; the new ones come with the walk after.
        bluesky.mentions(2_600..2_607);
        tokio::time::sleep(std::time::Duration::from_millis(1_100)).await;
        let output = rapport(&one_batch).args(["sync", &id]).output().unwrap();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        assert_eq!(String::from_utf8_lossy(&output.stdout).trim(), "1000");
        assert_eq!(stored_ids(&app).await, expected(600..2_600));
        // Both runs asked from the stored walk's cursor.
        let seen = bluesky.seen("app.bsky.notification.listNotifications");
        assert_eq!(param(&seen[10], "cursor"), Some(walk_cursor.clone()));
        assert_eq!(param(&seen[20], "cursor"), Some(walk_cursor));
        let (new, _) = sync_until_done(&app, &id).await;
        assert_eq!(new, 500);
        assert_eq!(stored_ids(&app).await, expected(100..2_600));
        let (new, _) = sync_until_done(&app, &id).await;
        assert_eq!(new, 7);
        assert_eq!(stored_ids(&app).await, expected(100..2_607));
    }
);

backend_test!(
    async fn an_expired_session_is_refreshed_and_rate_limits_set_the_next_run(app: TestApp) {
        let key = app.key(Role::Admin).await;
        let bluesky = Bluesky::start().await;
        bluesky.mentions(0..3);
        let id = bluesky.source(&app, &key, "session", json!({})).await;
        assert_eq!(sync(&app, &key, &id).await["newItems"], 3);

        // Two hours later the access token has expired: refreshed with the refresh token,
        // and the call made again with the new one. No new login.
        bluesky.expire();
        bluesky.mentions(3..5);
        let report = sync(&app, &key, &id).await;
        assert_eq!(report["error"], Value::Null, "{report:#}");
        assert_eq!(report["newItems"], 2, "{report:#}");
        let refreshed = bluesky.seen("com.atproto.server.refreshSession");
        assert_eq!(refreshed.len(), 1);
        assert_eq!(refreshed[0].method, "POST");
        assert_eq!(
            bearer(&refreshed[0]),
            format!("Bearer {}", bluesky.token("refresh", 1))
        );
        let listed = bluesky.seen("app.bsky.notification.listNotifications");
        let last_two: Vec<String> = listed[listed.len() - 2..].iter().map(bearer).collect();
        assert_eq!(
            last_two,
            [
                format!("Bearer {}", bluesky.token("access", 1)),
                format!("Bearer {}", bluesky.token("access", 2))
            ]
        );
        assert_eq!(bluesky.seen("com.atproto.server.createSession").len(), 1);
        // Both tokens spent: a new login.
        {
            let mut state = bluesky.state.lock().unwrap();
            state.access.clear();
            state.refresh.clear();
        }
        assert_eq!(sync(&app, &key, &id).await["error"], Value::Null);
        assert_eq!(bluesky.seen("com.atproto.server.createSession").len(), 2);

        // The budget spent (ratelimit-remaining 0, reset in epoch seconds ten minutes on):
        // the page is stored and the next run waits for the reset.
        bluesky.state.lock().unwrap().exhausted = true;
        bluesky.mentions(5..6);
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
            let mut state = bluesky.state.lock().unwrap();
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
        bluesky.state.lock().unwrap().throttled = false;
        bluesky.mentions(6..8);
        assert_eq!(sync(&app, &key, &id).await["newItems"], 2);

        // A wrong app password: the source fails, saying what to check, not the password.
        let wrong = create_source(&app, &key, "BLUESKY", "wrong", json!({ "service": bluesky.server.base, "identifier": "someone.example", "app_password": "wrong-pass-word-1234" })).await;
        let report = sync(&app, &key, &wrong).await;
        assert_eq!(report["source"]["status"], "FAILING", "{report:#}");
        let error = report["source"]["lastError"].as_str().unwrap();
        assert!(
            error.contains("AuthenticationRequired") && error.contains("app_password"),
            "{error}"
        );
        assert!(!error.contains("wrong-pass-word-1234"));
        // Tokens were issued by two logins and one refresh only.
        assert_eq!(bluesky.state.lock().unwrap().issued, 3);
    }
);

const TO_CONVERSATION: &str = "mutation($input: ReplyToConversationInput!) { replyToConversation(input: $input) { interaction { id externalId deliveryStatus deliveryError } } }";
const RETRY: &str = "mutation($id: ID!) { retryReply(input: { interactionId: $id }) { interaction { id externalId deliveryStatus deliveryError } } }";

backend_test!(
    async fn a_reply_whose_answer_was_lost_is_posted_once_and_sent_on_retry(app: TestApp) {
        let key = app.key(Role::Admin).await;
        let agent = app.key(Role::Agent).await;
        let bluesky = Bluesky::start().await;
        let maya = profile(MAYA, "maya.bsky.social", "Maya Lindqvist");
        let lucia = profile(LUCIA, "lucia.bsky.social", "Lucía Pérez");
        let m1 = post(&maya, 1, "@acme.example is the export down?", 1, None);
        let l1 = post(&lucia, 2, "@acme.example ¿hay modo oscuro?", 2, None);
        bluesky.add(&m1, Some(("mention", None)));
        bluesky.add(&l1, Some(("mention", None)));
        let id = bluesky.source(&app, &key, "lost", json!({})).await;
        assert_eq!(sync(&app, &key, &id).await["newItems"], 2);
        let all = items(&app, &key).await;
        let conversation = |view: &Value| {
            all[view["uri"].as_str().unwrap()]["conversation"]["id"]
                .as_str()
                .unwrap()
                .to_owned()
        };
        let reply = |conversation: String, text: &str, idempotency: &str| {
            let input = json!({ "conversationId": conversation, "text": text, "idempotencyKey": idempotency });
            let app = &app;
            let agent = agent.clone();
            async move {
                app.gql(&agent, TO_CONVERSATION, json!({ "input": input }))
                    .await["replyToConversation"]["interaction"]
                    .clone()
            }
        };
        let records = || bluesky.state.lock().unwrap().records.len();

        // The PDS takes the post, but its answer is lost, and so is the read-back's: the
        // reply is FAILED, while the post is on Bluesky.
        bluesky.state.lock().unwrap().lose = 2;
        let failed = reply(conversation(&m1), "yes, fixed within the hour", "lost-1").await;
        assert_eq!(failed["deliveryStatus"], "FAILED", "{failed:#}");
        assert!(
            failed["deliveryError"].as_str().unwrap().contains("502"),
            "{failed:#}"
        );
        assert_eq!(records(), 1);
        let rkey = body(&bluesky.seen("com.atproto.repo.createRecord")[0])["rkey"]
            .as_str()
            .unwrap()
            .to_owned();
        assert_eq!(
            rkey,
            connectors::bluesky::rkey_for(m1["uri"].as_str().unwrap(), "lost-1")
        );

        // Retried: the same record key, which the PDS refuses as taken (500); the record
        // there answers Maya's post, so it is the reply. Posted once, SENT with its uri.
        let retried = app.gql(&agent, RETRY, json!({ "id": failed["id"] })).await["retryReply"]
            ["interaction"]
            .clone();
        assert_eq!(retried["id"], failed["id"]);
        assert_eq!(retried["deliveryStatus"], "SENT", "{retried:#}");
        assert_eq!(retried["deliveryError"], Value::Null);
        assert_eq!(
            retried["externalId"],
            format!("at://{DID}/app.bsky.feed.post/{rkey}")
        );
        let created = bluesky.seen("com.atproto.repo.createRecord");
        assert_eq!(created.len(), 2);
        assert_eq!(body(&created[1])["rkey"], rkey);
        assert_eq!(bluesky.seen("com.atproto.repo.getRecord").len(), 2);
        assert_eq!(records(), 1);

        // Only the answer lost: the record is read back at once, and the reply is SENT.
        bluesky.state.lock().unwrap().lose = 1;
        let sent = reply(conversation(&l1), "pronto, sí", "lost-2").await;
        assert_eq!(sent["deliveryStatus"], "SENT", "{sent:#}");
        let rkey = connectors::bluesky::rkey_for(l1["uri"].as_str().unwrap(), "lost-2");
        assert_eq!(
            sent["externalId"],
            format!("at://{DID}/app.bsky.feed.post/{rkey}")
        );
        assert_eq!(records(), 2);

        // A record already at the key that answers another post is not taken for the
        // reply: FAILED, saying so, and nothing is posted.
        let rkey = connectors::bluesky::rkey_for(l1["uri"].as_str().unwrap(), "taken");
        bluesky.state.lock().unwrap().records.insert(
            rkey,
            json!({ "$type": "app.bsky.feed.post", "text": "else", "reply": {
                "root": { "uri": m1["uri"], "cid": m1["cid"] },
                "parent": { "uri": m1["uri"], "cid": m1["cid"] } } }),
        );
        let refused = reply(conversation(&l1), "otra cosa", "taken").await;
        assert_eq!(refused["deliveryStatus"], "FAILED", "{refused:#}");
        assert_eq!(refused["externalId"], Value::Null);
        let error = refused["deliveryError"].as_str().unwrap();
        assert!(error.contains("a different post"), "{error}");
        assert_eq!(records(), 3);
    }
);

backend_test!(
    async fn a_stream_that_goes_nowhere_ends_its_walk_and_a_failed_search_stops_nothing_else(
        app: TestApp,
    ) {
        let key = app.key(Role::Admin).await;
        let bluesky = Bluesky::start().await;
        bluesky.mentions(0..3);
        let fan = profile(
            "did:plc:fan000000000000000000007",
            "fan7.bsky.social",
            "Fan 7",
        );
        let looping = post(&fan, 7, "the export loops", 7, None);
        // A search that answers the same page with the same cursor, whatever it is sent.
        bluesky
            .server
            .handle("/xrpc/app.bsky.feed.searchPosts", move |seen| {
                if param(seen, "q").as_deref() == Some("boom") {
                    return xrpc_error(400, "BadQueryString", "could not parse the query");
                }
                Reply::json(&json!({ "posts": [looping], "cursor": "same" }))
            });
        let id = bluesky
            .source(
                &app,
                &key,
                "nowhere",
                json!({ "keywords": ["boom", "export"] }),
            )
            .await;
        // One batch: the walk ends when the cursor comes back unchanged; the search the
        // platform refuses does not stop the notifications or the other search.
        let (new, batches) = sync_until_done(&app, &id).await;
        assert_eq!((new, batches), (4, 1));
        let searched: Vec<(Option<String>, Option<String>)> = bluesky
            .seen("app.bsky.feed.searchPosts")
            .iter()
            .map(|seen| (param(seen, "q"), param(seen, "cursor")))
            .collect();
        let export = |cursor: Option<&str>| (Some("export".to_owned()), cursor.map(str::to_owned));
        assert_eq!(
            searched,
            [
                (Some("boom".to_owned()), None),
                export(None),
                export(Some("same"))
            ]
        );
        let cursor: Value =
            serde_json::from_str(&source_row(&app, &id).await.cursor.unwrap()).unwrap();
        assert_eq!(cursor["search"]["export"].get("walk"), None);
        assert!(cursor["search"]["export"]["mark"].is_object());
        let warning = cursor["search"]["boom"]["warning"].as_str().unwrap();
        assert!(
            warning.contains("`boom`") && warning.contains("BadQueryString"),
            "{warning}"
        );
        // Still a first walk: it is asked again on the next sync.
        assert!(cursor["search"]["boom"]["walk"].is_object());
        assert_eq!(cursor["notifications"].get("walk"), None);

        // Notifications the platform does not filter: pages of likes only, newer than the
        // mark, each with a new cursor, for ever. One page per sync, then the walk waits
        // for the next scheduled one instead of keeping the source busy.
        let served = Arc::new(Mutex::new(0_i64));
        let counter = served.clone();
        bluesky
            .server
            .handle("/xrpc/app.bsky.notification.listNotifications", move |_| {
                let mut n = counter.lock().unwrap();
                *n += 1;
                let like = |k: i64| {
                    let view = post(&fan_like(), 5_000 + k as u64, "liked", 100_000 - k, None);
                    notification(&view, "like", None)
                };
                let page: Vec<Value> = (0..100).map(|k| like(*n * 100 + k)).collect();
                Reply::json(&json!({ "notifications": page, "cursor": format!("page-{n}") }))
            });
        let (new, batches) = sync_until_done(&app, &id).await;
        assert_eq!((new, batches), (0, 1));
        assert_eq!(*served.lock().unwrap(), 1);
        let cursor: Value =
            serde_json::from_str(&source_row(&app, &id).await.cursor.unwrap()).unwrap();
        assert_eq!(cursor["notifications"]["walk"]["cursor"], "page-1");
        sync_until_done(&app, &id).await;
        assert_eq!(*served.lock().unwrap(), 2);
    }
);

fn fan_like() -> Value {
    profile(
        "did:plc:fan000000000000000000008",
        "fan8.bsky.social",
        "Fan 8",
    )
}

/// An account made on the real network: its DID, handle and access token.
struct Atproto {
    did: String,
    handle: String,
    access: String,
}

/// One XRPC call of the test itself to the real network (GET with `query`, else POST of
/// `input`, no body for `Value::Null`); the answer's JSON, failing the test with the
/// platform's answer otherwise.
async fn xrpc(
    base: &str,
    nsid: &str,
    token: Option<&str>,
    query: &[(&str, &str)],
    input: Option<Value>,
) -> Value {
    let (status, answer) = xrpc_answer(base, nsid, token, query, input).await;
    assert!(status.is_success(), "{nsid}: {status} {answer}");
    answer
}

/// [`xrpc`]'s call, its status and JSON answer whatever they are.
async fn xrpc_answer(
    base: &str,
    nsid: &str,
    token: Option<&str>,
    query: &[(&str, &str)],
    input: Option<Value>,
) -> (reqwest::StatusCode, Value) {
    let client = reqwest::Client::new();
    let url = format!("{base}/xrpc/{nsid}");
    let mut request = match input {
        Some(Value::Null) => client.post(url),
        Some(input) => client.post(url).json(&input),
        None => client.get(url).query(query),
    };
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.unwrap();
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// A new account on the PDS (the test network needs no invite code), handle `{name}.test`.
async fn create_account(base: &str, name: &str) -> Atproto {
    let answer = xrpc(
        base,
        "com.atproto.server.createAccount",
        None,
        &[],
        Some(json!({
            "handle": format!("{name}.test"),
            "email": format!("{name}@example.test"),
            "password": format!("pw-{name}-secret"),
        })),
    )
    .await;
    Atproto {
        did: answer["did"].as_str().unwrap().to_owned(),
        handle: answer["handle"].as_str().unwrap().to_owned(),
        access: answer["accessJwt"].as_str().unwrap().to_owned(),
    }
}

/// Writes `record` (an `app.bsky.feed.post`, `createdAt` added) as `who`; its `{uri, cid}`.
async fn publish(base: &str, who: &Atproto, mut record: Value) -> Value {
    record["$type"] = json!("app.bsky.feed.post");
    record["createdAt"] = json!(Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true));
    let created = xrpc(
        base,
        "com.atproto.repo.createRecord",
        Some(&who.access),
        &[],
        Some(json!({ "repo": who.did, "collection": "app.bsky.feed.post", "record": record })),
    )
    .await;
    json!({ "uri": created["uri"], "cid": created["cid"] })
}

/// Asks `check` every 200 ms until it answers, for at most 30 s: the AppView indexes what
/// the PDS writes from its firehose, a moment later.
async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        if let Some(found) = check().await {
            return found;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the AppView did not show {what} within 30 s"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

/// The record at `uri` as the PDS holds it (`com.atproto.repo.getRecord`): `{uri, cid, value}`.
async fn record_at(base: &str, uri: &str) -> Value {
    let path = uri.strip_prefix("at://").unwrap();
    let mut parts = path.splitn(3, '/');
    let (repo, collection, rkey) = (
        parts.next().unwrap(),
        parts.next().unwrap(),
        parts.next().unwrap(),
    );
    xrpc(
        base,
        "com.atproto.repo.getRecord",
        None,
        &[("repo", repo), ("collection", collection), ("rkey", rkey)],
        None,
    )
    .await
}

const PUBLICATIONS: &str = "query($source: ID) { publications(sourceId: $source, first: 10) { totalCount edges { node { externalId direction kind customer { id } conversation { id customer { id } } } } } }";

backend_test!(
    /// The connector against a real atproto network (.ci/atproto/run: @atproto/dev-env's
    /// PLC, PDS and AppView on 127.0.0.1): real mentions with facets, a reply to the
    /// brand's post and a hashtag post become interactions once, through the AppView's
    /// notifications and search as the PDS proxies them; replies sent from Rapport are real
    /// records in the right thread, with mention facets at the right byte offsets.
    async fn against_a_real_atproto_network_mentions_replies_and_searches_land_and_replies_post(
        app: TestApp,
    ) {
        let Some(pds) = std::env::var("RAPPORT_TEST_ATPROTO_PDS")
            .ok()
            .filter(|url| !url.is_empty())
        else {
            // In CI the network is part of the run (.ci/run starts it): its absence is a
            // failure there, never a quiet pass.
            if std::env::var("CI").is_ok_and(|ci| !ci.is_empty() && ci != "false") {
                panic!(
                    "CI is set but RAPPORT_TEST_ATPROTO_PDS is not: the atproto network did \
                     not start (.ci/run starts it with .ci/atproto/run)"
                );
            }
            eprintln!(
                "skipped: RAPPORT_TEST_ATPROTO_PDS is not set (out=$(bash .ci/atproto/run \
                 start) && eval \"$out\" starts a PLC, PDS and AppView on 127.0.0.1 and sets it)"
            );
            return;
        };
        let pds = pds.trim_end_matches('/').to_owned();
        // The test makes accounts and posts: only ever on this machine.
        let host = reqwest::Url::parse(&pds)
            .ok()
            .and_then(|url| url.host_str().map(str::to_owned));
        assert!(
            matches!(host.as_deref(), Some("127.0.0.1" | "localhost" | "[::1]")),
            "RAPPORT_TEST_ATPROTO_PDS must be a loopback address, not {pds}"
        );
        // The network outlives a test run (both backends' runs use it at once): names of
        // this run only, in base 36, as the PDS takes at most 18 characters before `.test`.
        let mut run = match app.backend {
            crate::common::Backend::Sqlite => "s",
            crate::common::Backend::Postgres => "p",
        }
        .to_owned();
        let mut micros = Utc::now().timestamp_micros().unsigned_abs();
        while micros > 0 {
            run.insert(1, char::from_digit((micros % 36) as u32, 36).unwrap());
            micros /= 36;
        }
        let brand = create_account(&pds, &format!("brand{run}")).await;
        let maya = create_account(&pds, &format!("maya{run}")).await;
        let lucia = create_account(&pds, &format!("lucia{run}")).await;
        let ana = create_account(&pds, &format!("ana{run}")).await;
        let password = xrpc(
            &pds,
            "com.atproto.server.createAppPassword",
            Some(&brand.access),
            &[],
            Some(json!({ "name": "rapport" })),
        )
        .await["password"]
            .as_str()
            .unwrap()
            .to_owned();
        let keyword = format!("export{run}");
        let tag = format!("rapport{run}");

        // The brand's post (found by the keyword search), Maya's answer to it, Lucía's
        // mention (a facet after non-ASCII text: its offsets are UTF-8 bytes) and Ana's
        // post with the hashtag.
        let ours = publish(
            &pds,
            &brand,
            json!({ "text": format!("The new CSV {keyword} is out today"), "langs": ["en"] }),
        )
        .await;
        let search = |q: String, post: Value| {
            let (pds, token) = (pds.clone(), brand.access.clone());
            async move {
                eventually(&format!("{q} in the search"), || async {
                    let found = xrpc(
                        &pds,
                        "app.bsky.feed.searchPosts",
                        Some(&token),
                        &[("q", q.as_str()), ("sort", "latest")],
                        None,
                    )
                    .await;
                    found["posts"]
                        .as_array()?
                        .iter()
                        .any(|p| p["uri"] == post["uri"])
                        .then_some(())
                })
                .await
            }
        };
        // Maya answers once she can see it. The AppView indexes each repository's events
        // on its own, and an answer indexed before the post it answers loses the brand's
        // reply notification: when the post comes, the AppView would notify its author of
        // it, and it never notifies a post's own author (@atproto/bsky 0.0.x,
        // indexing/plugins/post.js, `notifsForInsert`).
        search(keyword.clone(), ours.clone()).await;
        let maya_reply = publish(
            &pds,
            &maya,
            json!({ "text": "does it handle files over 10 MB? 📎", "langs": ["en"],
                    "reply": { "root": ours, "parent": ours } }),
        )
        .await;
        let opening = "¿Hay modo oscuro? ✨ ";
        let named = format!("@{}", brand.handle);
        let lucia_text = format!("{opening}{named} gracias");
        let lucia_mention = publish(
            &pds,
            &lucia,
            json!({ "text": lucia_text, "langs": ["es"], "facets": [{
                "index": { "byteStart": opening.len(), "byteEnd": opening.len() + named.len() },
                "features": [{ "$type": "app.bsky.richtext.facet#mention", "did": brand.did }]
            }] }),
        )
        .await;
        let ana_post = publish(
            &pds,
            &ana,
            json!({ "text": format!("me encanta la exportación nueva de #{tag}"), "langs": ["es"],
                    "facets": [{
                        "index": { "byteStart": "me encanta la exportación nueva de ".len(),
                                   "byteEnd": "me encanta la exportación nueva de #".len() + tag.len() },
                        "features": [{ "$type": "app.bsky.richtext.facet#tag", "tag": tag }]
                    }] }),
        )
        .await;
        let uri = |post: &Value| post["uri"].as_str().unwrap().to_owned();

        // Wait for the AppView to have indexed all four, as the brand sees them.
        eventually(
            "the mention and the reply in the brand's notifications",
            || async {
                let listed = xrpc(
                    &pds,
                    "app.bsky.notification.listNotifications",
                    Some(&brand.access),
                    &[("limit", "100")],
                    None,
                )
                .await;
                let reasons: BTreeMap<String, String> = listed["notifications"]
                    .as_array()?
                    .iter()
                    .map(|n| {
                        (
                            n["uri"].as_str().unwrap().to_owned(),
                            n["reason"].as_str().unwrap().to_owned(),
                        )
                    })
                    .collect();
                (reasons.get(&uri(&lucia_mention)).map(String::as_str) == Some("mention")
                    && reasons.get(&uri(&maya_reply)).map(String::as_str) == Some("reply"))
                .then_some(())
            },
        )
        .await;
        search(format!("#{tag}"), ana_post.clone()).await;

        // The source: the brand's handle and app password on the PDS, which proxies the
        // app.bsky reads to the AppView.
        let key = app.key(Role::Admin).await;
        let config = json!({
            "service": pds, "identifier": brand.handle, "app_password": password,
            "keywords": [keyword], "hashtags": [format!("#{tag}")]
        });
        let id = create_source(&app, &key, "BLUESKY", "real", config).await;
        let report = sync(&app, &key, &id).await;
        assert_eq!(report["error"], Value::Null, "{report:#}");
        assert_eq!(report["source"]["lastError"], Value::Null, "{report:#}");
        assert_eq!(report["newItems"], 4, "{report:#}");
        let mut once: BTreeMap<String, usize> = [&ours, &maya_reply, &lucia_mention, &ana_post]
            .into_iter()
            .map(|post| (uri(post), 1))
            .collect();
        assert_eq!(stored_ids(&app).await, once);
        // No search failed quietly.
        let cursor: Value =
            serde_json::from_str(&source_row(&app, &id).await.cursor.unwrap()).unwrap();
        assert!(!cursor.to_string().contains("warning"), "{cursor:#}");

        let all = items(&app, &key).await;
        let item = |post: &Value| all[&uri(post)].clone();
        let (mention, answer, published, tagged) = (
            item(&lucia_mention),
            item(&maya_reply),
            item(&ours),
            item(&ana_post),
        );
        assert_eq!(mention["kind"], "MENTION");
        assert_eq!(mention["direction"], "INBOUND");
        assert_eq!(mention["text"], lucia_text);
        assert_eq!(mention["language"], "es");
        assert_eq!(answer["kind"], "REPLY");
        assert_eq!(tagged["kind"], "POST");
        // Identities are DIDs (a handle can change).
        for (item, who) in [(&mention, &lucia), (&answer, &maya), (&tagged, &ana)] {
            assert_eq!(item["identity"]["platformId"], who.did, "{item:#}");
            assert_eq!(item["channel"], "BLUESKY");
        }
        let customers: HashSet<&str> = [&mention, &answer, &tagged]
            .iter()
            .map(|item| item["customer"]["id"].as_str().unwrap())
            .collect();
        assert_eq!(customers.len(), 3);
        assert_eq!(
            mention["url"],
            format!(
                "https://bsky.app/profile/{}/post/{}",
                lucia.handle,
                uri(&lucia_mention).rsplit('/').next().unwrap()
            )
        );
        // The brand's own post is a publication: outbound, nobody's; Maya's answer to it
        // joins its thread, under her.
        assert_eq!(published["direction"], "OUTBOUND", "{published:#}");
        assert_eq!(published["customer"], Value::Null, "{published:#}");
        assert_eq!(published["identity"], Value::Null, "{published:#}");
        assert_eq!(
            answer["conversation"]["id"],
            published["conversation"]["id"]
        );
        assert_ne!(
            mention["conversation"]["id"],
            published["conversation"]["id"]
        );
        let data = app.gql(&key, PUBLICATIONS, json!({ "source": id })).await;
        let list = &data["publications"];
        assert_eq!(list["totalCount"], 1, "{data:#}");
        let node = &list["edges"][0]["node"];
        assert_eq!(node["externalId"], uri(&ours));
        assert_eq!(node["customer"], Value::Null);
        assert_eq!(node["conversation"]["customer"], Value::Null);

        // A second sync: nothing new.
        let report = sync(&app, &key, &id).await;
        assert_eq!(report["error"], Value::Null, "{report:#}");
        assert_eq!(report["newItems"], 0, "{report:#}");
        assert_eq!(stored_ids(&app).await, once);

        // Sessions. The network's app-password access tokens last a few seconds
        // (ATPROTO_APP_PASSWORD_ACCESS_SECS of .ci/atproto/run): the PDS refuses one whose
        // time is over as `ExpiredToken` and renews it with `refreshSession`...
        let secs: u64 = std::env::var("RAPPORT_TEST_ATPROTO_ACCESS_SECS")
            .ok()
            .and_then(|secs| secs.parse().ok())
            .unwrap_or(0);
        if secs > 0 {
            let login = xrpc(
                &pds,
                "com.atproto.server.createSession",
                None,
                &[],
                Some(json!({ "identifier": brand.handle, "password": password })),
            )
            .await;
            tokio::time::sleep(std::time::Duration::from_secs(secs + 1)).await;
            let (status, refused) = xrpc_answer(
                &pds,
                "app.bsky.notification.listNotifications",
                login["accessJwt"].as_str(),
                &[],
                None,
            )
            .await;
            assert_eq!(
                (status.as_u16(), refused["error"].as_str()),
                (400, Some("ExpiredToken")),
                "{refused}"
            );
            let renewed = xrpc(
                &pds,
                "com.atproto.server.refreshSession",
                login["refreshJwt"].as_str(),
                &[],
                Some(Value::Null),
            )
            .await;
            assert_eq!(renewed["did"], brand.did);
            xrpc(
                &pds,
                "app.bsky.notification.listNotifications",
                renewed["accessJwt"].as_str(),
                &[],
                None,
            )
            .await;
            // ... and the connector's session, made by the syncs above, has run out too:
            // the next sync renews it and takes the new mention.
            let again = format!("@{} ¿y en el móvil?", brand.handle);
            let later = publish(
                &pds,
                &lucia,
                json!({ "text": again, "facets": [{
                    "index": { "byteStart": 0, "byteEnd": named.len() },
                    "features": [{ "$type": "app.bsky.richtext.facet#mention", "did": brand.did }]
                }] }),
            )
            .await;
            eventually(
                "the second mention in the brand's notifications",
                || async {
                    let listed = xrpc(
                        &pds,
                        "app.bsky.notification.listNotifications",
                        Some(&brand.access),
                        &[("limit", "100")],
                        None,
                    )
                    .await;
                    listed["notifications"]
                        .as_array()?
                        .iter()
                        .any(|n| n["uri"] == later["uri"])
                        .then_some(())
                },
            )
            .await;
            let report = sync(&app, &key, &id).await;
            assert_eq!(report["error"], Value::Null, "{report:#}");
            assert_eq!(report["source"]["lastError"], Value::Null, "{report:#}");
            assert_eq!(report["newItems"], 1, "{report:#}");
            once.insert(uri(&later), 1);
            assert_eq!(stored_ids(&app).await, once);
        } else {
            eprintln!(
                "the session part skipped: RAPPORT_TEST_ATPROTO_ACCESS_SECS is not set (the \
                 network's access tokens last two hours)"
            );
        }

        // Replies from Rapport. To Lucía: the text names her already, after non-ASCII
        // text, so the facet is where her handle is, in UTF-8 bytes.
        let agent = app.key(Role::Agent).await;
        let to_lucia = format!("¡Sí, @{}! ✨ llega en la 2.1", lucia.handle);
        let target = find_interaction(&app, &key, &uri(&lucia_mention)).await;
        let input = json!({ "interactionId": target, "text": to_lucia, "idempotencyKey": format!("lucia-{run}") });
        let sent = app
            .gql(&agent, REPLY, json!({ "input": input.clone() }))
            .await["replyToInteraction"]["interaction"]
            .clone();
        let posted = sent["externalId"].as_str().unwrap().to_owned();
        assert!(
            posted.starts_with(&format!("at://{}/app.bsky.feed.post/", brand.did)),
            "{sent:#}"
        );
        assert_eq!(sent["direction"], "OUTBOUND");
        assert_eq!(sent["conversation"]["id"], mention["conversation"]["id"]);
        let record = record_at(&pds, &posted).await;
        let value = &record["value"];
        assert_eq!(value["text"], to_lucia);
        assert_eq!(
            value["reply"],
            json!({ "root": lucia_mention, "parent": lucia_mention })
        );
        let start = "¡Sí, ".len();
        assert_eq!(start, 7, "UTF-8 bytes, not characters");
        let named_lucia = format!("@{}", lucia.handle);
        assert_eq!(
            value["facets"],
            json!([{
                "index": { "byteStart": start, "byteEnd": start + named_lucia.len() },
                "features": [{ "$type": "app.bsky.richtext.facet#mention", "did": lucia.did }]
            }])
        );
        assert_eq!(
            &to_lucia.as_bytes()[start..start + named_lucia.len()],
            named_lucia.as_bytes()
        );

        // The same reply again (the same idempotency key): the stored one, still one record.
        let again = app.gql(&agent, REPLY, json!({ "input": input })).await["replyToInteraction"]
            ["interaction"]
            .clone();
        assert_eq!(again["id"], sent["id"]);
        assert_eq!(record_at(&pds, &posted).await["cid"], record["cid"]);

        // To Maya's answer in the publication's thread: the root is the brand's post, the
        // parent hers, and a leading mention of her.
        let target = find_interaction(&app, &key, &uri(&maya_reply)).await;
        let input = json!({ "interactionId": target, "text": "yes, up to 2 GB 📎", "idempotencyKey": format!("maya-{run}") });
        let sent = app.gql(&agent, REPLY, json!({ "input": input })).await["replyToInteraction"]
            ["interaction"]
            .clone();
        let to_maya = sent["externalId"].as_str().unwrap().to_owned();
        assert_eq!(sent["conversation"]["id"], published["conversation"]["id"]);
        let value = record_at(&pds, &to_maya).await["value"].clone();
        let named_maya = format!("@{}", maya.handle);
        assert_eq!(value["text"], format!("{named_maya} yes, up to 2 GB 📎"));
        assert_eq!(
            value["reply"],
            json!({ "root": ours, "parent": maya_reply })
        );
        assert_eq!(
            value["facets"][0]["index"],
            json!({ "byteStart": 0, "byteEnd": named_maya.len() })
        );
        assert_eq!(value["facets"][0]["features"][0]["did"], maya.did);

        // The AppView takes both as replies in their threads, and tells Maya of hers.
        for (reply, parent) in [(&posted, &lucia_mention), (&to_maya, &maya_reply)] {
            eventually(&format!("{reply} in its thread"), || async {
                // NotFound until the AppView has indexed it.
                let (_, thread) = xrpc_answer(
                    &pds,
                    "app.bsky.feed.getPostThread",
                    Some(&brand.access),
                    &[("uri", reply.as_str()), ("depth", "0")],
                    None,
                )
                .await;
                (thread["thread"]["parent"]["post"]["uri"] == parent["uri"]).then_some(())
            })
            .await;
        }
        eventually("Maya's notification of the brand's reply", || async {
            let listed = xrpc(
                &pds,
                "app.bsky.notification.listNotifications",
                Some(&maya.access),
                &[("limit", "100")],
                None,
            )
            .await;
            listed["notifications"]
                .as_array()?
                .iter()
                .any(|n| n["uri"] == to_maya.as_str())
                .then_some(())
        })
        .await;

        // Rapport's own replies bring nothing back in with the next sync.
        let report = sync(&app, &key, &id).await;
        assert_eq!(report["error"], Value::Null, "{report:#}");
        assert_eq!(report["newItems"], 0, "{report:#}");
    }
);

backend_test!(
    async fn a_page_the_appview_filtered_empty_does_not_end_a_walk(app: TestApp) {
        let key = app.key(Role::Admin).await;
        // The AppView answers the two newest pages with nothing in them and a cursor (what
        // it filters after paging: blocks, mutes, other reasons), then the real page.
        let bluesky = Bluesky::start().await;
        bluesky.mentions(0..50);
        let serving = bluesky.clone();
        let served = Arc::new(Mutex::new(0_i64));
        let counter = served.clone();
        bluesky.server.handle(
            "/xrpc/app.bsky.notification.listNotifications",
            move |seen| {
                // (A session kept from an earlier server on this port is refused uncounted.)
                if let Some(refused) = serving.refused(seen) {
                    return refused;
                }
                let mut n = counter.lock().unwrap();
                *n += 1;
                let cursor = at(1_000 - *n);
                if *n <= 2 {
                    return Reply::json(&json!({ "notifications": [], "cursor": cursor }));
                }
                serving.list_notifications(seen)
            },
        );
        let id = bluesky.source(&app, &key, "filtered", json!({})).await;
        let (new, _) = sync_until_done(&app, &id).await;
        assert_eq!(new, 50);
        assert_eq!(stored_ids(&app).await, expected(0..50));
        // (The real page's cursor is asked once more: an empty page without one ends it.)
        assert_eq!(*served.lock().unwrap(), 4);
        let cursor: Value =
            serde_json::from_str(&source_row(&app, &id).await.cursor.unwrap()).unwrap();
        assert_eq!(cursor["notifications"].get("walk"), None);
        assert_eq!(cursor["notifications"].get("warning"), None);

        // Eleven in a row: the walk stops there, and the stream says so.
        let nowhere = Bluesky::start().await;
        let served = Arc::new(Mutex::new(0_i64));
        let counter = served.clone();
        nowhere
            .server
            .handle("/xrpc/app.bsky.notification.listNotifications", move |_| {
                let mut n = counter.lock().unwrap();
                *n += 1;
                Reply::json(&json!({ "notifications": [], "cursor": at(1_000 - *n) }))
            });
        let id = nowhere.source(&app, &key, "nowhere", json!({})).await;
        let (new, _) = sync_until_done(&app, &id).await;
        assert_eq!(new, 0);
        assert_eq!(*served.lock().unwrap(), 11);
        let cursor: Value =
            serde_json::from_str(&source_row(&app, &id).await.cursor.unwrap()).unwrap();
        assert_eq!(cursor["notifications"].get("walk"), None);
        let warning = cursor["notifications"]["warning"].as_str().unwrap();
        assert!(
            warning.contains("Bluesky answered 11 pages in a row with nothing to read"),
            "{warning}"
        );
    }
);
