//! The Matrix connector against a local stand-in for a homeserver answering as the
//! client-server API specification says (<https://spec.matrix.org/v1.13/client-server-api/>):
//! `GET /account/whoami`, `GET /joined_rooms`, `GET /directory/room/{alias}`, `GET /sync`
//! (an inline filter, `since`, `timeout`; `rooms.join.{id}.timeline` with `events`,
//! `limited` and `prev_batch`, `state.events` with the senders' `m.room.member` events),
//! `GET /rooms/{id}/messages` (`dir=b`, `from`, `to`, `limit`, `filter`; `chunk`, `start`,
//! `end`, `state`), `PUT /rooms/{id}/send/m.room.message/{txnId}` (a repeated transaction id
//! answers the event already made), and the standard error body `{"errcode", "error"}`
//! (`M_LIMIT_EXCEEDED` with `retry_after_ms`, `M_UNKNOWN_TOKEN`, `M_FORBIDDEN`,
//! `M_NOT_FOUND`). Tokens are the stand-in's own (`s{n}` for a sync position, `t{n}` for a
//! pagination one), opaque to the connector as the spec says they are. The events are
//! written here, field for field from the spec's `ClientEvent`, for people made up for the
//! test.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Duration, Utc};
use rapport::domain::Role;
use serde_json::{json, Map, Value};

use crate::backend_test;
use crate::common::TestApp;
use crate::feeds::{create_source, items, sync};
use crate::mastodon::{find_interaction, source_row, stored_ids, sync_until_done};
use crate::platform::{Platform, Reply, Seen};

const TOKEN: &str = "syt_YWNtZQ_KJHgsfHGsdfnWVzbJrqPX_1a2b3c";
const US: &str = "@acme:matrix.example.org";
const MAYA: &str = "@maya:example.org";
const LUCIA: &str = "@lucia:matrix.example.org";
const TOMAS: &str = "@tomas:chat.example.net";
const SUPPORT: &str = "!OGEhHVWSdvArJzumhm:matrix.example.org";
const ALIAS: &str = "#support:matrix.example.org";
const COMMUNITY: &str = "!kDpxVorVxrtWEjbnPZ:matrix.example.org";
const CLOSED: &str = "!QtykxKocfZaZOUrTwp:matrix.example.org";
const API: &str = "/_matrix/client/v3";
const REPLY: &str = "mutation($input: ReplyToInteractionInput!) { replyToInteraction(input: $input) { interaction { id externalId direction kind text url deliveryStatus deliveryError conversation { id } } } }";
const TO_CONVERSATION: &str = "mutation($input: ReplyToConversationInput!) { replyToConversation(input: $input) { interaction { id externalId deliveryStatus deliveryError } } }";
const RETRY: &str = "mutation($id: ID!) { retryReply(input: { interactionId: $id }) { interaction { id externalId deliveryStatus deliveryError } } }";

/// What the homeserver holds and how it answers.
#[derive(Default)]
struct State {
    /// The next stream position (one per event, across rooms).
    pos: u64,
    /// Each room's events with their positions, oldest first.
    rooms: BTreeMap<String, Vec<(u64, Value)>>,
    /// The rooms the account is in.
    joined: BTreeSet<String>,
    /// Display names by MXID, sent as `m.room.member` state.
    names: HashMap<String, String>,
    /// Rooms whose `/messages` answer 403 `M_FORBIDDEN`.
    forbidden: HashSet<String>,
    /// Events the account may not see (history visibility): `/messages` counts them
    /// against a page's limit and leaves them out of its chunk, as Synapse does.
    hidden: HashSet<String>,
    /// `/sync` answers 429 with this `retry_after_ms`.
    throttle_ms: Option<u64>,
    /// Rooms whose `/messages` fail: `"502"`, `"json"` (a 200 that is no JSON) or `"429"`.
    failing: HashMap<String, &'static str>,
    /// A `/sync` whose timeline limit passes this answers a body over the connector's
    /// 10 MiB cap.
    sync_cap: Option<usize>,
    /// The token was logged out.
    revoked: bool,
    /// Event ids made per transaction id.
    sent: HashMap<String, String>,
    /// How many of the next sends answer 502 before making anything.
    down: usize,
    /// How many of the next sends make their event, then answer 502 (the answer is lost).
    lost: usize,
    /// Transaction ids are forgotten (Synapse keeps them about 30 minutes).
    expired: bool,
    /// Events made by sends.
    made: usize,
}

#[derive(Clone)]
struct Homeserver {
    server: Platform,
    state: Arc<Mutex<State>>,
}

/// Milliseconds since the epoch of minute `n` of the test's day.
fn at(n: i64) -> i64 {
    DateTime::parse_from_rfc3339("2026-11-02T09:00:00Z")
        .unwrap()
        .timestamp_millis()
        + n * 60_000
}

fn query(seen: &Seen) -> HashMap<String, String> {
    reqwest::Url::parse(&format!("http://query/?{}", seen.query))
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

/// A Matrix error body with `status`.
fn error(status: u16, errcode: &str, message: &str) -> Reply {
    Reply {
        status,
        ..Reply::json(&json!({ "errcode": errcode, "error": message }))
    }
}

/// An `m.room.message` as `/sync` lists it (a `ClientEventWithoutRoomID`).
fn message(id: &str, sender: &str, minute: i64, content: Value) -> Value {
    json!({
        "content": content,
        "event_id": id,
        "origin_server_ts": at(minute),
        "sender": sender,
        "type": "m.room.message",
        "unsigned": { "age": 1234, "membership": "join" }
    })
}

fn text(body: &str) -> Value {
    json!({ "msgtype": "m.text", "body": body })
}

/// The txnId of the reply with idempotency key `matrix-reply-1`, worked out by hand:
/// `rapport-` and the first 16 bytes of its SHA-256 in hex.
const TXN_1: &str = "rapport-efab2f311b671becad57f7973d19fc6b";

impl Homeserver {
    async fn start() -> Homeserver {
        let homeserver = Homeserver {
            server: Platform::start().await,
            state: Arc::new(Mutex::new(State::default())),
        };
        {
            let mut state = homeserver.state.lock().unwrap();
            state.names.insert(MAYA.into(), "Maya Lindqvist".into());
            state.names.insert(LUCIA.into(), "Lucía Pérez".into());
            state.names.insert(US.into(), "Acme Support".into());
        }
        let mut paths = vec![
            format!("{API}/account/whoami"),
            format!("{API}/joined_rooms"),
            format!("{API}/sync"),
            format!("{API}/directory/room/%23support:matrix.example.org"),
            format!("{API}/directory/room/%23gone:matrix.example.org"),
        ];
        for room in [SUPPORT, COMMUNITY, CLOSED] {
            paths.push(format!("{API}/rooms/{room}/messages"));
            for txn in [
                TXN_1,
                &connectors::matrix::txn_id("matrix-reply-2"),
                &connectors::matrix::txn_id("matrix-reply-4"),
            ] {
                paths.push(format!("{API}/rooms/{room}/send/m.room.message/{txn}"));
            }
        }
        for path in paths {
            let serving = homeserver.clone();
            homeserver
                .server
                .handle(&path, move |seen| serving.answer(seen));
        }
        homeserver
    }

    fn seen(&self, path: &str) -> Vec<Seen> {
        self.server.seen(&format!("{API}{path}"))
    }

    fn config(&self, rooms: &[&str], extra: Value) -> Value {
        let mut config = json!({
            "homeserver": self.server.base, "access_token": TOKEN, "rooms": rooms,
        });
        for (key, value) in extra.as_object().unwrap() {
            config[key] = value.clone();
        }
        config
    }

    async fn source(&self, app: &TestApp, key: &str, rooms: &[&str], extra: Value) -> String {
        let name = format!("matrix {} +{}", rooms[0], rooms.len() - 1);
        create_source(app, key, "MATRIX", &name, self.config(rooms, extra)).await
    }

    fn join(&self, room: &str) {
        let mut state = self.state.lock().unwrap();
        state.joined.insert(room.to_owned());
        state.rooms.entry(room.to_owned()).or_default();
    }

    fn add(&self, room: &str, event: Value) {
        let mut state = self.state.lock().unwrap();
        let pos = state.pos;
        state.pos += 1;
        state
            .rooms
            .entry(room.to_owned())
            .or_default()
            .push((pos, event));
    }

    /// Hides the messages [`Homeserver::chatter`] numbered `range` from the account.
    fn hide(&self, range: std::ops::Range<i64>) {
        let mut state = self.state.lock().unwrap();
        state.hidden.extend(range.map(|n| format!("$m{n:06}")));
    }

    /// Messages by a hundred fans in `room`, numbered `range` (one a minute).
    fn chatter(&self, room: &str, range: std::ops::Range<i64>) {
        for n in range {
            let fan = format!("@fan{}:example.org", n % 100);
            self.add(
                room,
                message(
                    &format!("$m{n:06}"),
                    &fan,
                    n,
                    text(&format!("question {n}")),
                ),
            );
        }
    }

    /// The `m.room.member` state events of `senders`.
    fn members(state: &State, senders: &BTreeSet<String>) -> Vec<Value> {
        senders
            .iter()
            .filter_map(|sender| {
                let name = state.names.get(sender)?;
                Some(json!({
                    "content": { "avatar_url": null, "displayname": name, "membership": "join" },
                    "event_id": format!("$member-{}", sender.trim_start_matches('@')),
                    "origin_server_ts": at(0),
                    "sender": sender,
                    "state_key": sender,
                    "type": "m.room.member",
                    "unsigned": { "age": 99_999 }
                }))
            })
            .collect()
    }

    fn answer(&self, seen: &Seen) -> Reply {
        {
            let state = self.state.lock().unwrap();
            if header(seen, "authorization") != format!("Bearer {TOKEN}") || state.revoked {
                return Reply {
                    status: 401,
                    ..Reply::json(&json!({
                        "errcode": "M_UNKNOWN_TOKEN",
                        "error": "Invalid access token passed.",
                        "soft_logout": false
                    }))
                };
            }
        }
        let path = seen.path.strip_prefix(API).unwrap();
        let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        match segments.as_slice() {
            ["account", "whoami"] => Reply::json(&json!({
                "user_id": US, "device_id": "RAPPORTDEV", "is_guest": false
            })),
            ["joined_rooms"] => {
                let state = self.state.lock().unwrap();
                Reply::json(&json!({ "joined_rooms": state.joined }))
            }
            ["directory", "room", "%23support:matrix.example.org"] => Reply::json(&json!({
                "room_id": SUPPORT, "servers": ["matrix.example.org"]
            })),
            ["directory", "room", _] => error(
                404,
                "M_NOT_FOUND",
                "Room alias #gone:matrix.example.org not found",
            ),
            ["sync"] => self.sync(seen),
            ["rooms", room, "messages"] => self.messages(seen, room),
            ["rooms", room, "send", "m.room.message", txn] => self.send(seen, room, txn),
            _ => error(404, "M_UNRECOGNIZED", "Unrecognized request"),
        }
    }

    /// `GET /sync`: the filtered rooms' events after `since` (all on a first sync), at
    /// most the filter's timeline limit each.
    fn sync(&self, seen: &Seen) -> Reply {
        let q = query(seen);
        assert_eq!(q["timeout"], "0", "a pull never long-polls");
        let filter: Value = serde_json::from_str(&q["filter"]).unwrap();
        assert_eq!(
            filter["room"]["timeline"]["types"],
            json!(["m.room.message"])
        );
        assert_eq!(filter["room"]["state"]["lazy_load_members"], true);
        assert_eq!(filter["room"]["state"]["include_redundant_members"], true);
        let limit = filter["room"]["timeline"]["limit"].as_u64().unwrap() as usize;
        let rooms: Vec<String> = serde_json::from_value(filter["room"]["rooms"].clone()).unwrap();
        let state = self.state.lock().unwrap();
        if state.sync_cap.is_some_and(|cap| limit > cap) {
            return Reply::ok(
                "application/json",
                vec![b' '; connectors::http::MAX_BODY_BYTES + 1],
            );
        }
        if let Some(ms) = state.throttle_ms {
            return Reply {
                status: 429,
                ..Reply::json(&json!({
                    "errcode": "M_LIMIT_EXCEEDED", "error": "Too many requests", "retry_after_ms": ms
                }))
            };
        }
        let since: Option<u64> = q
            .get("since")
            .map(|since| since.strip_prefix('s').unwrap().parse().unwrap());
        let mut join = Map::new();
        for room in rooms.iter().filter(|room| state.joined.contains(*room)) {
            let events: Vec<&(u64, Value)> = state.rooms[room]
                .iter()
                .filter(|(pos, _)| *pos >= since.unwrap_or(0))
                .collect();
            if since.is_some() && events.is_empty() {
                continue;
            }
            let limited = events.len() > limit;
            let timeline = &events[events.len().saturating_sub(limit)..];
            let prev_batch = match timeline.first() {
                Some((pos, _)) => format!("t{pos}"),
                None => format!("s{}", state.pos),
            };
            let senders = timeline
                .iter()
                .map(|(_, event)| event["sender"].as_str().unwrap().to_owned())
                .collect();
            join.insert(
                room.clone(),
                json!({
                    "timeline": {
                        "events": timeline.iter().map(|(_, event)| event.clone()).collect::<Vec<_>>(),
                        "limited": limited,
                        "prev_batch": prev_batch
                    },
                    "state": { "events": Self::members(&state, &senders) },
                    "account_data": { "events": [] },
                    "ephemeral": { "events": [] },
                    "summary": {},
                    "unread_notifications": { "highlight_count": 0, "notification_count": timeline.len() }
                }),
            );
        }
        Reply::json(&json!({
            "next_batch": format!("s{}", state.pos),
            "rooms": { "join": join, "invite": {}, "leave": {}, "knock": {} },
            "account_data": { "events": [] },
            "presence": { "events": [] },
            "to_device": { "events": [] },
            "device_lists": { "changed": [], "left": [] },
            "device_one_time_keys_count": { "signed_curve25519": 50 }
        }))
    }

    /// `GET /rooms/{id}/messages?dir=b`: back from `from` (the newest without it) down
    /// to `to`, newest first, with `end` while more are left.
    fn messages(&self, seen: &Seen, room: &str) -> Reply {
        let q = query(seen);
        assert_eq!(q["dir"], "b");
        let filter: Value = serde_json::from_str(&q["filter"]).unwrap();
        assert_eq!(filter["types"], json!(["m.room.message"]));
        let state = self.state.lock().unwrap();
        if state.forbidden.contains(room) {
            return error(
                403,
                "M_FORBIDDEN",
                "User @acme:matrix.example.org not in room",
            );
        }
        match state.failing.get(room).copied() {
            Some("502") => return Reply::status(502),
            Some("json") => return Reply::ok("application/json", "<html>Bad Gateway</html>"),
            Some("429") => {
                return Reply {
                    status: 429,
                    ..Reply::json(&json!({
                        "errcode": "M_LIMIT_EXCEEDED", "error": "Too many requests", "retry_after_ms": 600_000
                    }))
                }
            }
            _ => {}
        }
        let token = |key: &str, prefix: char| {
            q.get(key)
                .map(|token| token.strip_prefix(prefix).unwrap().parse::<u64>().unwrap())
        };
        let from = token("from", 't').unwrap_or(u64::MAX);
        let to = token("to", 's').unwrap_or(0);
        let limit: usize = q["limit"].parse().unwrap();
        let older: Vec<&(u64, Value)> = state.rooms[room]
            .iter()
            .rev()
            .filter(|(pos, _)| *pos < from && *pos >= to)
            .collect();
        let chunk: Vec<Value> = older
            .iter()
            .take(limit)
            .filter(|(_, event)| !state.hidden.contains(event["event_id"].as_str().unwrap()))
            .map(|(_, event)| {
                let mut event = event.clone();
                event["room_id"] = json!(room);
                event
            })
            .collect();
        let senders = chunk
            .iter()
            .map(|event| event["sender"].as_str().unwrap().to_owned())
            .collect();
        let mut answer = json!({
            "chunk": chunk,
            "start": q.get("from").cloned().unwrap_or_else(|| format!("t{}", state.pos)),
            "state": Self::members(&state, &senders),
        });
        if older.len() > limit {
            answer["end"] = json!(format!("t{}", older[limit - 1].0));
        }
        Reply::json(&answer)
    }

    /// `PUT /rooms/{id}/send/m.room.message/{txnId}`: a new event, or the one this
    /// transaction id already made.
    fn send(&self, seen: &Seen, room: &str, txn: &str) -> Reply {
        assert_eq!(seen.method, "PUT");
        let mut state = self.state.lock().unwrap();
        if state.down > 0 {
            state.down -= 1;
            return Reply::status(502);
        }
        if let Some(id) = state.sent.get(txn).filter(|_| !state.expired) {
            return Reply::json(&json!({ "event_id": id }));
        }
        let content: Value = serde_json::from_slice(&seen.body).unwrap();
        state.made += 1;
        let id = format!("$sent{}", state.made);
        state.sent.insert(txn.to_owned(), id.clone());
        let lost = state.lost > 0;
        state.lost = state.lost.saturating_sub(1);
        drop(state);
        // The sender's own events carry the transaction id that made them.
        let mut event = message(&id, US, 900, content);
        event["unsigned"]["transaction_id"] = json!(txn);
        self.add(room, event);
        if lost {
            return Reply::status(502);
        }
        Reply::json(&json!({ "event_id": id }))
    }
}

fn expected(range: std::ops::Range<i64>) -> BTreeMap<String, usize> {
    range.map(|n| (format!("$m{n:06}"), 1)).collect()
}

async fn cursor_of(app: &TestApp, id: &str) -> Value {
    serde_json::from_str(&source_row(app, id).await.cursor.unwrap()).unwrap()
}

backend_test!(
    async fn a_first_sync_backfills_over_pages_resumably_then_follows_since_and_walks_gaps(
        app: TestApp,
    ) {
        let key = app.key(Role::Admin).await;
        let homeserver = Homeserver::start().await;
        homeserver.join(SUPPORT);
        homeserver.chatter(SUPPORT, 0..1_300);
        // The room by its alias.
        let id = homeserver
            .source(&app, &key, &[ALIAS], json!({ "backfill_limit": 1_200 }))
            .await;

        // One batch, then the run is stopped: the newest thousand are stored, with a
        // cursor where the walk goes on.
        let syncer = rapport::ingest::sync::Syncer::new(&app.app);
        let claimed = syncer.claim(&source_row(&app, &id).await).await.unwrap();
        let report = syncer.run(claimed, &|| true).await.unwrap();
        assert_eq!(report.error, None, "{report:?}");
        assert_eq!(report.batches, 1, "{report:?}");
        assert_eq!(stored_ids(&app).await, expected(300..1_300));
        let whoami = homeserver.seen("/account/whoami");
        assert_eq!(whoami.len(), 1);
        assert_eq!(
            header(&whoami[0], "authorization"),
            format!("Bearer {TOKEN}")
        );
        assert_eq!(
            homeserver
                .seen("/directory/room/%23support:matrix.example.org")
                .len(),
            1
        );
        // The first sync: no since, a timeline of a page, only the room asked for.
        let syncs = homeserver.seen("/sync");
        assert_eq!(syncs.len(), 1);
        let q = query(&syncs[0]);
        assert_eq!(q.get("since"), None);
        let filter: Value = serde_json::from_str(&q["filter"]).unwrap();
        assert_eq!(filter["room"]["rooms"], json!([SUPPORT]));
        assert_eq!(filter["room"]["timeline"]["limit"], 100);
        // Then back from the timeline's prev_batch, page after page.
        let pages = homeserver.seen(&format!("/rooms/{SUPPORT}/messages"));
        assert_eq!(pages.len(), 9);
        assert_eq!(query(&pages[0])["from"], "t1200");
        assert_eq!(query(&pages[0])["limit"], "100");
        assert_eq!(query(&pages[1])["from"], "t1100");
        assert_eq!(query(&pages[0]).get("to"), None);
        let cursor = cursor_of(&app, &id).await;
        assert_eq!(cursor["me"], US);
        assert_eq!(cursor["since"], "s1300");
        let room = &cursor["rooms"][ALIAS];
        assert_eq!(room["id"], SUPPORT);
        assert_eq!(room["walks"], json!([{ "from": "t300", "left": 200 }]));

        // The next sync goes on from the cursor down to the limit, and asks /sync since.
        let (new, _) = sync_until_done(&app, &id).await;
        assert_eq!(new, 200);
        assert_eq!(stored_ids(&app).await, expected(100..1_300));
        let pages = homeserver.seen(&format!("/rooms/{SUPPORT}/messages"));
        assert_eq!(query(&pages[9])["from"], "t300");
        assert_eq!(query(&pages[10])["limit"], "100");
        assert_eq!(pages.len(), 11);
        let cursor = cursor_of(&app, &id).await;
        assert_eq!(cursor["rooms"][ALIAS].get("walks"), None);
        assert_eq!(homeserver.seen("/account/whoami").len(), 1);
        assert_eq!(
            homeserver
                .seen("/directory/room/%23support:matrix.example.org")
                .len(),
            1,
            "the alias is resolved once"
        );

        // New messages: only those, through /sync with since.
        homeserver.chatter(SUPPORT, 1_300..1_330);
        let report = sync(&app, &key, &id).await;
        assert_eq!(report["error"], Value::Null, "{report:#}");
        assert_eq!(report["newItems"], 30, "{report:#}");
        let syncs = homeserver.seen("/sync");
        assert_eq!(query(syncs.last().unwrap())["since"], "s1300");
        assert_eq!(
            homeserver.seen(&format!("/rooms/{SUPPORT}/messages")).len(),
            11
        );
        assert_eq!(sync(&app, &key, &id).await["newItems"], 0);

        // More than a timeline holds (limited): the gap is walked back to the last since.
        homeserver.chatter(SUPPORT, 1_330..1_480);
        let report = sync(&app, &key, &id).await;
        assert_eq!(report["newItems"], 150, "{report:#}");
        let pages = homeserver.seen(&format!("/rooms/{SUPPORT}/messages"));
        assert_eq!(pages.len(), 12);
        assert_eq!(query(&pages[11])["from"], "t1380");
        assert_eq!(query(&pages[11])["to"], "s1330");
        assert_eq!(stored_ids(&app).await, expected(100..1_480));
        // The account is in its one room: /joined_rooms was asked by the first pull alone.
        assert_eq!(homeserver.seen("/joined_rooms").len(), 1);

        // backfill_limit 0: the first sync only sets since.
        let fresh = Homeserver::start().await;
        fresh.join(COMMUNITY);
        fresh.chatter(COMMUNITY, 0..50);
        let id = fresh
            .source(&app, &key, &[COMMUNITY], json!({ "backfill_limit": 0 }))
            .await;
        assert_eq!(sync(&app, &key, &id).await["newItems"], 0);
        assert!(fresh
            .seen(&format!("/rooms/{COMMUNITY}/messages"))
            .is_empty());
        fresh.chatter(COMMUNITY, 50..53);
        assert_eq!(sync(&app, &key, &id).await["newItems"], 3);
    }
);

backend_test!(
    async fn replies_threads_and_mentions_are_threaded_and_a_reply_is_sent_once_in_its_thread(
        app: TestApp,
    ) {
        let key = app.key(Role::Admin).await;
        let agent = app.key(Role::Agent).await;
        let homeserver = Homeserver::start().await;
        homeserver.join(COMMUNITY);
        let reply_to = |id: &str| json!({ "m.in_reply_to": { "event_id": id } });
        // Maya reports a bug; we answer; she answers us, naming us. Lucía starts a thread;
        // Tomás answers in it (a thread message with its fallback reply), Lucía answers
        // him. Maya edits her first message.
        homeserver.add(
            COMMUNITY,
            message(
                "$bug",
                MAYA,
                1,
                text("the CSV export is broken since Tuesday"),
            ),
        );
        let mut ours = text("> <@maya:example.org> the CSV export is broken since Tuesday\n\nLooking into it right now");
        ours["m.relates_to"] = reply_to("$bug");
        homeserver.add(COMMUNITY, message("$ours", US, 2, ours));
        let mut named = text("> <@acme:matrix.example.org> Looking into it right now\n\nthanks! still failing for files over 10 MB");
        named["format"] = json!("org.matrix.custom.html");
        named["formatted_body"] = json!("<mx-reply><blockquote><a href=\"https://matrix.to/#/@acme:matrix.example.org\">Acme Support</a> Looking into it right now</blockquote></mx-reply>thanks! still failing for files <b>over 10 MB</b>");
        named["m.mentions"] = json!({ "user_ids": [US] });
        named["m.relates_to"] = reply_to("$ours");
        homeserver.add(COMMUNITY, message("$named", MAYA, 3, named));
        homeserver.add(
            COMMUNITY,
            message("$root", LUCIA, 4, text("Anyone using the API from Python?")),
        );
        let mut in_thread = text("yes, with httpx");
        in_thread["m.relates_to"] = json!({
            "rel_type": "m.thread", "event_id": "$root", "is_falling_back": true,
            "m.in_reply_to": { "event_id": "$root" }
        });
        homeserver.add(COMMUNITY, message("$tomas", TOMAS, 5, in_thread));
        let mut answer = text("which version?");
        answer["m.relates_to"] = json!({
            "rel_type": "m.thread", "event_id": "$root", "is_falling_back": false,
            "m.in_reply_to": { "event_id": "$tomas" }
        });
        homeserver.add(COMMUNITY, message("$lucia", LUCIA, 6, answer));
        // Lucía again in the thread, answering a message Rapport never saw: still the
        // thread's conversation, by its root.
        let mut late = text("and on 2.3 it failed");
        late["m.relates_to"] = json!({
            "rel_type": "m.thread", "event_id": "$root", "is_falling_back": false,
            "m.in_reply_to": { "event_id": "$unseen" }
        });
        homeserver.add(COMMUNITY, message("$late", LUCIA, 6, late));
        let mut edit = text("* the CSV export is broken since Monday");
        edit["m.new_content"] = text("the CSV export is broken since Monday");
        edit["m.relates_to"] = json!({ "rel_type": "m.replace", "event_id": "$bug" });
        homeserver.add(COMMUNITY, message("$edit", MAYA, 7, edit));

        let input = json!({ "channel": "MATRIX", "name": "community", "config": homeserver.config(&[COMMUNITY], json!({})) });
        let created = app
            .gql(&key, crate::feeds::CREATE, json!({ "input": input }))
            .await;
        let source = &created["createSource"]["source"];
        assert_eq!(source["secretsSet"], json!(["access_token"]));
        assert!(!source["config"].to_string().contains(TOKEN));
        let id = source["id"].as_str().unwrap().to_owned();

        let report = sync(&app, &key, &id).await;
        assert_eq!(report["error"], Value::Null, "{report:#}");
        // Seven messages; the edit is no item of its own.
        assert_eq!(report["newItems"], 7, "{report:#}");
        let all = items(&app, &key).await;
        assert!(!all.contains_key("$edit"));
        let bug = &all["$bug"];
        assert_eq!(bug["channel"], "MATRIX");
        assert_eq!(bug["kind"], "MESSAGE");
        assert_eq!(bug["direction"], "INBOUND");
        assert_eq!(bug["text"], "the CSV export is broken since Tuesday");
        assert_eq!(bug["identity"]["platformId"], MAYA);
        assert_eq!(bug["identity"]["displayName"], "Maya Lindqvist");
        assert_eq!(bug["url"], format!("https://matrix.to/#/{COMMUNITY}/$bug"));
        let conversation = &bug["conversation"]["id"];
        let ours = &all["$ours"];
        assert_eq!(ours["direction"], "OUTBOUND");
        assert_eq!(ours["text"], "Looking into it right now");
        assert_eq!(ours["conversation"]["id"], *conversation);
        let named = &all["$named"];
        assert_eq!(named["kind"], "MENTION");
        assert_eq!(named["text"], "thanks! still failing for files over 10 MB");
        assert_eq!(named["conversation"]["id"], *conversation);
        assert_eq!(named["customer"]["id"], bug["customer"]["id"]);
        // The thread is one conversation, apart from Maya's.
        let root = &all["$root"];
        assert_eq!(root["kind"], "MESSAGE");
        assert_ne!(root["conversation"]["id"], *conversation);
        for reply in ["$tomas", "$lucia", "$late"] {
            assert_eq!(all[reply]["kind"], "REPLY");
            assert_eq!(all[reply]["conversation"]["id"], root["conversation"]["id"]);
        }
        assert_eq!(all["$lucia"]["customer"]["id"], root["customer"]["id"]);
        assert_ne!(all["$tomas"]["customer"]["id"], root["customer"]["id"]);
        // No display name sent for Tomás: the MXID stands.
        assert_eq!(all["$tomas"]["identity"]["platformId"], TOMAS);

        // A reply to Lucía inside the thread: the exact request.
        let target = find_interaction(&app, &key, "$lucia").await;
        let words = "2.4 or later — see https://example.com/docs & thanks!";
        let sent = app
            .gql(
                &agent,
                REPLY,
                json!({ "input": { "interactionId": target, "text": words, "idempotencyKey": "matrix-reply-1" } }),
            )
            .await["replyToInteraction"]["interaction"]
            .clone();
        let put = homeserver.seen(&format!("/rooms/{COMMUNITY}/send/m.room.message/{TXN_1}"));
        assert_eq!(put.len(), 1);
        assert_eq!(put[0].method, "PUT");
        assert_eq!(header(&put[0], "authorization"), format!("Bearer {TOKEN}"));
        assert_eq!(header(&put[0], "content-type"), "application/json");
        let body: Value = serde_json::from_slice(&put[0].body).unwrap();
        assert_eq!(
            body,
            json!({
                "msgtype": "m.text",
                "body": words,
                "m.relates_to": {
                    "rel_type": "m.thread",
                    "event_id": "$root",
                    "is_falling_back": false,
                    "m.in_reply_to": { "event_id": "$lucia" }
                },
                "m.mentions": { "user_ids": [LUCIA] }
            })
        );
        assert_eq!(sent["externalId"], "$sent1");
        assert_eq!(sent["direction"], "OUTBOUND");
        assert_eq!(
            sent["url"],
            format!("https://matrix.to/#/{COMMUNITY}/$sent1")
        );
        assert_eq!(sent["conversation"]["id"], root["conversation"]["id"]);

        // Our event comes back through /sync: not stored twice.
        assert_eq!(sync(&app, &key, &id).await["newItems"], 0);

        // A reply outside a thread; its first attempt's answer is lost (502) and the retry
        // uses the same transaction id, which the homeserver answers with one event.
        let txn = connectors::matrix::txn_id("matrix-reply-2");
        homeserver.state.lock().unwrap().down = 1;
        let input = json!({ "conversationId": conversation, "text": "Fixed in 2.0.1", "idempotencyKey": "matrix-reply-2" });
        let failed = app
            .gql(&agent, TO_CONVERSATION, json!({ "input": input }))
            .await["replyToConversation"]["interaction"]
            .clone();
        assert_eq!(failed["deliveryStatus"], "FAILED", "{failed:#}");
        let retried = app.gql(&agent, RETRY, json!({ "id": failed["id"] })).await["retryReply"]
            ["interaction"]
            .clone();
        assert_eq!(retried["deliveryStatus"], "SENT", "{retried:#}");
        assert_eq!(retried["externalId"], "$sent2");
        let put = homeserver.seen(&format!("/rooms/{COMMUNITY}/send/m.room.message/{txn}"));
        assert_eq!(put.len(), 2);
        assert_eq!(put[0].body, put[1].body);
        let body: Value = serde_json::from_slice(&put[1].body).unwrap();
        assert_eq!(
            body,
            json!({
                "msgtype": "m.text",
                "body": "Fixed in 2.0.1",
                "m.relates_to": { "m.in_reply_to": { "event_id": "$named" } },
                "m.mentions": { "user_ids": [MAYA] }
            })
        );
        assert_eq!(homeserver.state.lock().unwrap().sent.len(), 2);

        // Over Rapport's 10,000 characters (which keeps a reply's content well under the
        // 65,536 bytes of an event): refused before anything is sent.
        let target = find_interaction(&app, &key, "$named").await;
        let long = json!({ "interactionId": target, "text": "a".repeat(10_001), "idempotencyKey": "matrix-reply-3" });
        let (code, _) = app.gql_error(&agent, REPLY, json!({ "input": long })).await;
        assert_eq!(code, "BAD_USER_INPUT");
        assert_eq!(homeserver.state.lock().unwrap().sent.len(), 2);

        // The event is made but the answer is lost, and the retry comes after the
        // homeserver forgot the transaction id: the event is found among the room's
        // messages by its transaction id, and not posted twice.
        {
            let mut state = homeserver.state.lock().unwrap();
            state.lost = 1;
            state.expired = true;
        }
        let input = json!({ "conversationId": conversation, "text": "Also in 2.0.2", "idempotencyKey": "matrix-reply-4" });
        let failed = app
            .gql(&agent, TO_CONVERSATION, json!({ "input": input }))
            .await["replyToConversation"]["interaction"]
            .clone();
        assert_eq!(failed["deliveryStatus"], "FAILED", "{failed:#}");
        let retried = app.gql(&agent, RETRY, json!({ "id": failed["id"] })).await["retryReply"]
            ["interaction"]
            .clone();
        assert_eq!(retried["deliveryStatus"], "SENT", "{retried:#}");
        assert_eq!(retried["externalId"], "$sent3");
        let txn = connectors::matrix::txn_id("matrix-reply-4");
        let put = homeserver.seen(&format!("/rooms/{COMMUNITY}/send/m.room.message/{txn}"));
        assert_eq!(put.len(), 1);
        assert_eq!(homeserver.state.lock().unwrap().made, 3);
    }
);

backend_test!(
    async fn rate_limits_refused_tokens_and_closed_rooms_are_told_apart(app: TestApp) {
        let key = app.key(Role::Admin).await;
        let homeserver = Homeserver::start().await;
        homeserver.join(SUPPORT);
        homeserver.join(CLOSED);
        homeserver.chatter(SUPPORT, 0..150);
        for n in 0..3 {
            homeserver.add(
                CLOSED,
                message(&format!("$closed{n}"), MAYA, n, text("in the closed room")),
            );
        }
        for n in 3..150 {
            homeserver.add(
                CLOSED,
                message(&format!("$closed{n}"), MAYA, n, text("more")),
            );
        }
        // The closed room's history is refused (403 M_FORBIDDEN), an alias is unknown
        // (404), and the account is not in the community room.
        homeserver
            .state
            .lock()
            .unwrap()
            .forbidden
            .insert(CLOSED.to_owned());
        let id = homeserver
            .source(
                &app,
                &key,
                &[SUPPORT, CLOSED, "#gone:matrix.example.org", COMMUNITY],
                json!({ "backfill_limit": 120 }),
            )
            .await;
        let report = sync(&app, &key, &id).await;
        assert_eq!(report["error"], Value::Null, "{report:#}");
        // Support: its 100 of the timeline and 20 walked; the closed room: its timeline only.
        assert_eq!(report["newItems"], 220, "{report:#}");
        assert_eq!(report["source"]["status"], "OK", "{report:#}");
        let cursor = cursor_of(&app, &id).await;
        let warning = |room: &str| {
            cursor["rooms"][room]["warning"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        };
        assert!(warning(CLOSED).contains("403 M_FORBIDDEN"), "{cursor:#}");
        assert_eq!(
            cursor["rooms"][CLOSED]["walks"],
            json!([{ "from": "t200", "left": 20 }]),
            "the walk waits for the room to open"
        );
        assert!(
            warning("#gone:matrix.example.org").contains("404 M_NOT_FOUND"),
            "{cursor:#}"
        );
        assert!(
            warning(COMMUNITY).contains("not in") && warning(COMMUNITY).contains("join"),
            "{cursor:#}"
        );
        assert_eq!(warning(SUPPORT), "");
        let filter: Value =
            serde_json::from_str(&query(&homeserver.seen("/sync")[0])["filter"]).unwrap();
        assert_eq!(filter["room"]["rooms"], json!([SUPPORT, CLOSED]));

        // 429 M_LIMIT_EXCEEDED on /sync: nothing lost, the next run waits retry_after_ms.
        homeserver.state.lock().unwrap().throttle_ms = Some(600_000);
        homeserver.chatter(SUPPORT, 150..152);
        let report = sync(&app, &key, &id).await;
        assert_eq!(report["source"]["status"], "RATE_LIMITED", "{report:#}");
        let next: DateTime<Utc> = report["source"]["nextRunAt"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!(next >= Utc::now() + Duration::minutes(9), "{next}");
        assert!(next <= Utc::now() + Duration::minutes(11), "{next}");
        assert_eq!(cursor_of(&app, &id).await["since"], cursor["since"]);
        {
            let mut state = homeserver.state.lock().unwrap();
            state.throttle_ms = None;
            state.forbidden.clear();
        }
        // The closed room opened: its walk goes on; the two new messages come. The account
        // joined the community room: it is walked back from its newest message (its five
        // also come through /sync, once).
        homeserver.join(COMMUNITY);
        for n in 0..5 {
            homeserver.add(
                COMMUNITY,
                message(&format!("$joined{n}"), LUCIA, 300 + n, text("hello")),
            );
        }
        let report = sync(&app, &key, &id).await;
        assert_eq!(report["newItems"], 27, "{report:#}");
        assert_eq!(report["duplicates"], 0, "{report:#}");
        let cursor = cursor_of(&app, &id).await;
        assert_eq!(cursor["rooms"][CLOSED].get("warning"), None);
        assert_eq!(cursor["rooms"][COMMUNITY].get("warning"), None);
        assert_eq!(cursor["rooms"][COMMUNITY]["synced"], true);
        let walked = homeserver.seen(&format!("/rooms/{COMMUNITY}/messages"));
        assert_eq!(walked.len(), 1);
        assert_eq!(query(&walked[0]).get("from"), None);
        assert_eq!(query(&walked[0])["limit"], "100");
        assert!(stored_ids(&app).await.contains_key("$joined4"));

        // The token logged out (401 M_UNKNOWN_TOKEN): the source fails saying what to do,
        // never the token.
        homeserver.state.lock().unwrap().revoked = true;
        let report = sync(&app, &key, &id).await;
        assert_eq!(report["source"]["status"], "FAILING", "{report:#}");
        let error = report["source"]["lastError"].as_str().unwrap();
        assert!(
            error.contains("M_UNKNOWN_TOKEN") && error.contains("access_token"),
            "{error}"
        );
        assert!(!error.contains(TOKEN), "{error}");
    }
);

backend_test!(
    async fn one_rooms_failing_history_is_its_warning_and_the_other_rooms_and_the_sync_go_on(
        app: TestApp,
    ) {
        let key = app.key(Role::Admin).await;
        let homeserver = Homeserver::start().await;
        homeserver.join(SUPPORT);
        homeserver.join(CLOSED);
        homeserver.chatter(SUPPORT, 0..150);
        for n in 0..150 {
            homeserver.add(
                CLOSED,
                message(&format!("$c{n:03}"), MAYA, n, text("in the other room")),
            );
        }
        // The first room's history answers 502 (Synapse does while it backfills a
        // federated room): that room warns, the second is walked all the same.
        homeserver
            .state
            .lock()
            .unwrap()
            .failing
            .insert(CLOSED.to_owned(), "502");
        let id = homeserver
            .source(
                &app,
                &key,
                &[CLOSED, SUPPORT],
                json!({ "backfill_limit": 120 }),
            )
            .await;
        let report = sync(&app, &key, &id).await;
        assert_eq!(report["error"], Value::Null, "{report:#}");
        assert_eq!(report["source"]["status"], "OK", "{report:#}");
        // Both timelines (100 each) and the support room's 20 walked.
        assert_eq!(report["newItems"], 220, "{report:#}");
        let cursor = cursor_of(&app, &id).await;
        let warning = |cursor: &Value, room: &str| {
            cursor["rooms"][room]["warning"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        };
        assert!(warning(&cursor, CLOSED).contains("502"), "{cursor:#}");
        assert_eq!(
            cursor["rooms"][CLOSED]["walks"],
            json!([{ "from": "t200", "left": 20 }]),
            "the walk waits for the room's history to answer"
        );
        assert_eq!(warning(&cursor, SUPPORT), "");

        // An unreadable page (no JSON): the same, and the sync after the walks goes on.
        homeserver
            .state
            .lock()
            .unwrap()
            .failing
            .insert(CLOSED.to_owned(), "json");
        homeserver.chatter(SUPPORT, 150..152);
        let report = sync(&app, &key, &id).await;
        assert_eq!(report["error"], Value::Null, "{report:#}");
        assert_eq!(report["newItems"], 2, "{report:#}");
        let cursor = cursor_of(&app, &id).await;
        assert!(
            warning(&cursor, CLOSED).contains("invalid JSON"),
            "{cursor:#}"
        );

        // A 429 there still stops the pull and waits.
        homeserver
            .state
            .lock()
            .unwrap()
            .failing
            .insert(CLOSED.to_owned(), "429");
        let report = sync(&app, &key, &id).await;
        assert_eq!(report["source"]["status"], "RATE_LIMITED", "{report:#}");

        // The history answers again: the walk goes on where it stopped.
        homeserver.state.lock().unwrap().failing.clear();
        let report = sync(&app, &key, &id).await;
        assert_eq!(report["error"], Value::Null, "{report:#}");
        assert_eq!(report["newItems"], 20, "{report:#}");
        let cursor = cursor_of(&app, &id).await;
        assert_eq!(cursor["rooms"][CLOSED].get("warning"), None, "{cursor:#}");
        assert_eq!(cursor["rooms"][CLOSED].get("walks"), None, "{cursor:#}");
        assert!(stored_ids(&app).await.contains_key("$c030"));
    }
);

backend_test!(
    async fn a_walk_goes_past_pages_of_hidden_events_until_no_end(app: TestApp) {
        let key = app.key(Role::Admin).await;
        let homeserver = Homeserver::start().await;
        homeserver.join(SUPPORT);
        // 30 old messages, 150 the account may not see, 100 new ones.
        homeserver.chatter(SUPPORT, 0..280);
        homeserver.hide(30..180);
        let id = homeserver.source(&app, &key, &[SUPPORT], json!({})).await;
        let (new, _) = sync_until_done(&app, &id).await;
        // The timeline's 100, then a page of hidden events only (empty, with an `end`),
        // then the 30 old ones behind them and no `end`.
        assert_eq!(new, 130);
        let mut both = expected(0..30);
        both.extend(expected(180..280));
        assert_eq!(stored_ids(&app).await, both);
        let pages = homeserver.seen(&format!("/rooms/{SUPPORT}/messages"));
        assert_eq!(pages.len(), 2);
        assert_eq!(query(&pages[1])["from"], "t80");
        assert_eq!(
            cursor_of(&app, &id).await["rooms"][SUPPORT].get("walks"),
            None
        );

        // A server handing out new tokens over nothing is left after ten empty pages.
        homeserver.join(COMMUNITY);
        homeserver.chatter(COMMUNITY, 280..1_580);
        homeserver.hide(280..1_480);
        let other = homeserver.source(&app, &key, &[COMMUNITY], json!({})).await;
        let (new, _) = sync_until_done(&app, &other).await;
        assert_eq!(new, 100);
        // Ten empty pages are gone past; the eleventh ends the walk, and the room's
        // warning says so.
        assert_eq!(
            homeserver
                .seen(&format!("/rooms/{COMMUNITY}/messages"))
                .len(),
            11
        );
        let warning = cursor_of(&app, &other).await["rooms"][COMMUNITY]["warning"].clone();
        assert!(
            warning
                .as_str()
                .is_some_and(|w| w.contains("11 pages in a row with nothing to read")),
            "{warning}"
        );
        // The pulls after it still say so: the events behind the hidden ones were not read.
        let (new, _) = sync_until_done(&app, &other).await;
        assert_eq!(new, 0);
        let cursor = cursor_of(&app, &other).await;
        assert_eq!(cursor["rooms"][COMMUNITY]["warning"], warning, "{cursor:#}");
    }
);

backend_test!(
    async fn a_sync_over_the_body_cap_is_asked_again_with_shorter_timelines(app: TestApp) {
        let key = app.key(Role::Admin).await;
        let homeserver = Homeserver::start().await;
        homeserver.join(SUPPORT);
        homeserver.chatter(SUPPORT, 0..60);
        // Timelines over 25 events make an answer larger than 10 MiB.
        homeserver.state.lock().unwrap().sync_cap = Some(25);
        let id = homeserver.source(&app, &key, &[SUPPORT], json!({})).await;
        let limits = || -> Vec<u64> {
            homeserver
                .seen("/sync")
                .iter()
                .map(|seen| {
                    let filter: Value = serde_json::from_str(&query(seen)["filter"]).unwrap();
                    filter["room"]["timeline"]["limit"].as_u64().unwrap()
                })
                .collect()
        };
        let report = sync(&app, &key, &id).await;
        assert_eq!(report["error"], Value::Null, "{report:#}");
        assert_eq!(report["source"]["status"], "OK", "{report:#}");
        // 25 from the timeline, the 35 before them walked with /messages.
        assert_eq!(report["newItems"], 60, "{report:#}");
        assert_eq!(limits(), [100, 50, 25]);
        assert_eq!(stored_ids(&app).await, expected(0..60));

        // A later sync too: the shorter timeline is `limited` and the gap is walked.
        homeserver.chatter(SUPPORT, 60..90);
        let report = sync(&app, &key, &id).await;
        assert_eq!(report["error"], Value::Null, "{report:#}");
        assert_eq!(report["newItems"], 30, "{report:#}");
        assert_eq!(limits(), [100, 50, 25, 100, 50, 25]);
        assert_eq!(stored_ids(&app).await, expected(0..90));

        // Even one event is too many: the pull fails, saying so.
        homeserver.state.lock().unwrap().sync_cap = Some(0);
        let report = sync(&app, &key, &id).await;
        assert!(
            report["source"]["lastError"]
                .as_str()
                .unwrap_or_default()
                .contains("larger than"),
            "{report:#}"
        );
        assert_eq!(*limits().last().unwrap(), 1);
    }
);

/// A user registered on the real homeserver: MXID and access token.
struct Account {
    id: String,
    token: String,
}

/// A client-server call to the real homeserver as `who`.
async fn call(
    base: &str,
    who: &Account,
    method: reqwest::Method,
    path: &str,
    body: Value,
) -> Value {
    let response = reqwest::Client::new()
        .request(method, format!("{base}{API}{path}"))
        .bearer_auth(&who.token)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = response.status();
    let answer: Value = response.json().await.unwrap();
    assert!(status.is_success(), "{path}: {status} {answer}");
    answer
}

/// Registers `name` (the test homeserver allows open registration on loopback).
async fn register(base: &str, name: &str) -> Account {
    let answer: Value = reqwest::Client::new()
        .post(format!("{base}{API}/register"))
        .json(&json!({
            "username": name, "password": format!("pw-{name}-secret"),
            "auth": { "type": "m.login.dummy" }, "inhibit_login": false
        }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    Account {
        id: answer["user_id"]
            .as_str()
            .unwrap_or_else(|| panic!("{answer}"))
            .to_owned(),
        token: answer["access_token"].as_str().unwrap().to_owned(),
    }
}

/// Sends `content` to `room` as `who`; returns the event id.
async fn say(base: &str, who: &Account, room: &str, txn: &str, content: Value) -> String {
    let path = format!("/rooms/{room}/send/m.room.message/{txn}");
    call(base, who, reqwest::Method::PUT, &path, content).await["event_id"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// Pulls from `cursor` until a pull brings nothing new and says it is done (at most 20
/// pulls): a loaded machine may take more than one pull's time budget for what an idle one
/// does in one. Returns every item handed over (a repeat included) and the last cursor.
async fn pull_all(
    matrix: &connectors::matrix::MatrixConnector,
    mut cursor: Option<connectors::Cursor>,
) -> (Vec<connectors::InboundItem>, connectors::Cursor) {
    use connectors::Connector;
    let mut items: Vec<connectors::InboundItem> = Vec::new();
    for _ in 0..20 {
        let pull = matrix.pull(cursor.as_ref()).await.unwrap();
        cursor = pull.next_cursor;
        let new = pull
            .items
            .iter()
            .filter(|item| !items.iter().any(|had| had.external_id == item.external_id))
            .count();
        items.extend(pull.items);
        if new == 0 && !pull.more {
            return (items, cursor.unwrap());
        }
    }
    panic!("the pulls never ended");
}

/// The connector against a real Synapse (`RAPPORT_TEST_SYNAPSE_URL`, started on 127.0.0.1
/// by `.ci/synapse`): what the stand-in above assumes of a homeserver (inline filters,
/// `prev_batch` and `limited`, `/messages` with a sync token as `to`, transaction ids,
/// `m.mentions` and threads) is what Synapse does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn against_a_real_synapse_backfill_since_gaps_threads_and_replies_hold() {
    use connectors::matrix::{MatrixConfig, MatrixConnector};
    use connectors::{Connector, ConnectorError, ReplyTarget};
    let Some(base) = std::env::var("RAPPORT_TEST_SYNAPSE_URL")
        .ok()
        .filter(|url| !url.is_empty())
    else {
        // In CI the homeserver is part of the run (.ci/run starts it): its absence is a
        // failure there, never a quiet pass.
        if std::env::var("CI").is_ok_and(|ci| !ci.is_empty() && ci != "false") {
            panic!(
                "CI is set but RAPPORT_TEST_SYNAPSE_URL is not: Synapse did not start \
                 (.ci/run starts it with .ci/synapse)"
            );
        }
        eprintln!(
            "skipped: RAPPORT_TEST_SYNAPSE_URL is not set (out=$(bash .ci/synapse start) && \
             eval \"$out\" starts a Synapse on 127.0.0.1 and sets it)"
        );
        return;
    };
    let base = base.trim_end_matches('/').to_owned();
    // The test registers accounts and posts: only ever on this machine.
    let host = reqwest::Url::parse(&base)
        .ok()
        .and_then(|url| url.host_str().map(str::to_owned));
    assert!(
        matches!(host.as_deref(), Some("127.0.0.1" | "localhost" | "[::1]")),
        "RAPPORT_TEST_SYNAPSE_URL must be a loopback address, not {base}"
    );
    let run = Utc::now().timestamp_micros();
    let acme = register(&base, &format!("acme{run}")).await;
    let maya = register(&base, &format!("maya{run}")).await;
    let room = call(
        &base,
        &maya,
        reqwest::Method::POST,
        "/createRoom",
        json!({ "preset": "private_chat", "invite": [acme.id] }),
    )
    .await["room_id"]
        .as_str()
        .unwrap()
        .to_owned();
    call(
        &base,
        &acme,
        reqwest::Method::POST,
        &format!("/join/{room}"),
        json!({}),
    )
    .await;
    call(
        &base,
        &maya,
        reqwest::Method::PUT,
        &format!("/profile/{}/displayname", maya.id),
        json!({ "displayname": "Maya Lindqvist" }),
    )
    .await;
    let mut history = Vec::new();
    for n in 0..130 {
        history.push(
            say(
                &base,
                &maya,
                &room,
                &format!("h{n}"),
                text(&format!("question {n}")),
            )
            .await,
        );
    }
    let connector = |token: &str, backfill: u64| {
        MatrixConnector::new(
            reqwest::Client::new(),
            MatrixConfig::parse(&json!({
                "homeserver": base, "access_token": token, "rooms": [room], "backfill_limit": backfill
            }))
            .unwrap(),
        )
    };
    let ids = |items: &[connectors::InboundItem]| -> Vec<String> {
        items.iter().map(|item| item.external_id.clone()).collect()
    };
    let sorted = |ids: &[String]| -> Vec<String> {
        let mut ids = ids.to_vec();
        ids.sort();
        ids
    };

    // First sync: a timeline of 100, then /messages back from its prev_batch for 20.
    let matrix = connector(&acme.token, 120);
    let (first, cursor) = pull_all(&matrix, None).await;
    assert_eq!(sorted(&ids(&first)), sorted(&history[10..]));
    let item = first
        .iter()
        .find(|item| item.external_id == history[10])
        .unwrap();
    assert_eq!(item.author.platform_id, maya.id);
    assert!(!item.outbound);
    assert_eq!(item.kind, "message");

    // New: a mention, a thread root and an answer in it; only those come.
    let mut named = text("the export is broken");
    named["m.mentions"] = json!({ "user_ids": [acme.id] });
    let named = say(&base, &maya, &room, "named", named).await;
    let root = say(&base, &maya, &room, "root", text("API from Python?")).await;
    let mut in_thread = text("with httpx?");
    in_thread["m.relates_to"] = json!({
        "rel_type": "m.thread", "event_id": root, "is_falling_back": true,
        "m.in_reply_to": { "event_id": root }
    });
    let in_thread = say(&base, &maya, &room, "thread", in_thread).await;
    let (next, cursor) = pull_all(&matrix, Some(cursor)).await;
    assert_eq!(ids(&next), [named.clone(), root.clone(), in_thread.clone()]);
    assert_eq!(next[0].kind, "mention");
    assert_eq!(
        next[0].author.display_name.as_deref(),
        Some("Maya Lindqvist")
    );
    assert_eq!(next[2].thread_key.as_deref(), Some(root.as_str()));
    assert_eq!(next[2].in_reply_to.as_deref(), Some(root.as_str()));

    // More than a timeline holds: the gap is walked back to the last since, no further.
    let mut gap = Vec::new();
    for n in 0..150 {
        gap.push(
            say(
                &base,
                &maya,
                &room,
                &format!("g{n}"),
                text(&format!("more {n}")),
            )
            .await,
        );
    }
    let (after, cursor) = pull_all(&matrix, Some(cursor)).await;
    assert_eq!(sorted(&ids(&after)), sorted(&gap));

    // A reply in the thread, twice with one idempotency key: one event.
    let target = &next[2];
    let to = ReplyTarget {
        external_id: target.external_id.clone(),
        thread_key: target.thread_key.clone(),
        recipient: target.author.handle.clone(),
        context: target.raw.clone(),
        idempotency_key: format!("synapse-{run}"),
    };
    let sent = matrix.reply(&to, "2.4 or later").await.unwrap();
    let again = matrix.reply(&to, "2.4 or later").await.unwrap();
    assert_eq!(sent.external_id, again.external_id);
    // What the look for an earlier attempt relies on: to the session that sent it, our
    // event carries its transaction id.
    let recent = call(
        &base,
        &acme,
        reqwest::Method::GET,
        &format!("/rooms/{room}/messages?dir=b&limit=10"),
        Value::Null,
    )
    .await;
    let txn = connectors::matrix::txn_id(&to.idempotency_key);
    assert!(
        recent["chunk"].as_array().unwrap().iter().any(|event| {
            event["event_id"] == json!(sent.external_id)
                && event["unsigned"]["transaction_id"] == json!(txn)
        }),
        "{recent}"
    );
    let seen = call(
        &base,
        &maya,
        reqwest::Method::GET,
        &format!("/rooms/{room}/event/{}", sent.external_id),
        Value::Null,
    )
    .await;
    assert_eq!(seen["content"]["m.relates_to"]["rel_type"], "m.thread");
    assert_eq!(seen["content"]["m.relates_to"]["event_id"], json!(root));
    assert_eq!(seen["content"]["m.mentions"]["user_ids"], json!([maya.id]));
    // Ours comes back once, outbound.
    let (ours, _) = pull_all(&matrix, Some(cursor)).await;
    assert_eq!(ids(&ours), vec![sent.external_id.clone()]);
    assert!(ours[0].outbound);

    // A token that is not one: refused credentials.
    match connector("syt_not_a_token", 0).pull(None).await {
        Err(ConnectorError::Unauthorized(message)) => {
            assert!(message.contains("M_UNKNOWN_TOKEN"), "{message}")
        }
        other => panic!("{other:?}"),
    }
}
