//! The Matrix channel (pull + reply), over the client-server API of any homeserver
//! (<https://spec.matrix.org/v1.13/client-server-api/>), in the rooms a source names.
//!
//! Plain calls through the guarded client rather than `matrix-sdk`: the connector uses six
//! endpoints (`whoami`, `joined_rooms`, the room directory, `/sync`, `/messages`, `send`),
//! each a small JSON object, while the SDK brings end-to-end encryption, its own state
//! store and a dependency tree larger than the rest of Rapport, and opens its own
//! connections past the outbound guard. Encrypted rooms are therefore not read (their
//! events are `m.room.encrypted`, which the filter leaves out).
//!
//! - Rooms: `rooms` names room ids (`!opaque:server`, or `!opaque` from room version 12
//!   on) or aliases (`#name:server`); an
//!   alias is resolved once with `GET /directory/room/{alias}` and its id kept in the
//!   cursor. Rapport never joins a room itself (joining is visible to the room and may need
//!   an invite): the account must be a member already. `GET /joined_rooms` is asked on
//!   a pull unless, within the last [`JOINED_TTL`], it found the account in every
//!   configured room and no room has had a warning since; a configured room the account
//!   is not in is not read and its `warning` in the stored cursor says so (and the next
//!   pull asks again).
//! - Listening: `GET /sync` with `timeout=0` (a pull, not a long poll), an inline filter
//!   limited to the rooms read and to `m.room.message` timeline events, with the senders'
//!   `m.room.member` state (lazy-loaded members) for display names. The cursor keeps the
//!   response's `next_batch` as the next `since`.
//! - Backfill: the first sync asks a timeline of at most `backfill_limit` events per room
//!   (at most [`PAGE`]); when the room has more (`limited: true`) a *walk* starts at the
//!   timeline's `prev_batch` and goes back with `GET /rooms/{id}/messages?dir=b` until the
//!   room's start (no `end`) or `backfill_limit` events (0: the first sync only sets
//!   `since`). A page may come back empty with an `end` (the server left out events the
//!   account may not see): as the specification asks, the walk goes on until no `end`
//!   comes, past at most [`EMPTY_PAGES`] empty pages in a row (then it gives up, and the
//!   room's `warning` says so, with the date, for a week: [`crate::empty`]). A room added
//!   to a source
//!   already synced walks back from the room's newest event (no `from`). A later sync
//!   whose timeline is `limited` (more happened than its timeline holds) walks the gap:
//!   from its `prev_batch` back `to` the `since` it was asked with. Walks are kept in the
//!   cursor, so a crash mid-walk resumes at the page it stopped at. The stored cursor is
//!   JSON: `{"me", "since", "rooms": {"<configured>": {"id", "synced", "walks": [{"from",
//!   "to", "left", "empty"}], "warning", "gave_up"}}, "joined_at"}`.
//! - A pull gathers pages until about [`PULL_ITEMS`] events or [`PULL_TIME`] and hands its
//!   items over oldest first. A gap walked in a later pull lands after newer items: a reply
//!   taken before its parent is filed under the parent's event id, the key the parent's own
//!   conversation gets, so they still meet.
//! - Items: the event id is the external id, the sender's MXID the identity (and its
//!   handle; the display name from its `m.room.member` event when the server sends one),
//!   `m.relates_to.m.in_reply_to.event_id` what it answers. A thread event
//!   (`rel_type: m.thread`) is filed under its root's id (the thread key) and answers the
//!   event it replies to, or the root when its `m.in_reply_to` is only a fallback
//!   (`is_falling_back`). An event whose `m.mentions.user_ids` holds the account's MXID
//!   (from `GET /account/whoami`), or without `m.mentions` (clients before spec v1.7) whose
//!   body names it, is a mention; the account's own events are outbound. The
//!   reply fallback some clients still put in `body` (`> <@a:b> …` lines) and
//!   `formatted_body` (`<mx-reply>`) is cut off.
//! - Edits (`rel_type: m.replace`) are skipped: an item keeps the text it first had, and an
//!   edit never becomes a second item. Notices (`msgtype: m.notice`) are what bots send,
//!   and are skipped too. Redactions are not read (`m.room.redaction` is not
//!   in the filter); a redacted event met in a walk has no `body` and is skipped.
//! - Replies: `PUT /rooms/{id}/send/m.room.message/{txnId}` with `msgtype: m.text`, the
//!   text as `body`, `m.relates_to.m.in_reply_to` naming the answered event (inside a
//!   thread also `rel_type: m.thread`, the root and `is_falling_back: false`), and
//!   `m.mentions` naming its sender. The transaction id is derived from the reply's
//!   idempotency key ([`txn_id`]): the homeserver answers a repeated one with the event it
//!   already made, but only for a while and per access token (Synapse: about 30 minutes),
//!   so a reply first looks for its transaction id among the room's newest messages
//!   (`sent_before`). An event is at most 65,536 bytes
//!   (<https://spec.matrix.org/v1.13/client-server-api/#size-limits>); a reply whose
//!   content passes [`MAX_CONTENT_BYTES`] is refused before sending.
//! - Errors are JSON `{"errcode", "error"}`: 429 `M_LIMIT_EXCEEDED` waits `retry_after_ms`
//!   (or `Retry-After`), and a pull keeps what it has; 401 `M_UNKNOWN_TOKEN` is refused
//!   credentials; a 403 or 404 on one room (its directory entry, its `/messages`), and a
//!   5xx, lost connection or unreadable page of its `/messages`, is that room's warning and
//!   the other rooms go on. A `/sync` answer over the body cap is asked again with
//!   timelines half as long (down to one event); the rest is walked.

use std::collections::{BTreeMap, HashMap, HashSet};

use chrono::{DateTime, TimeZone, Utc};
use reqwest::Method;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

pub use crate::bluesky::{DEFAULT_BACKFILL_LIMIT, MAX_BACKFILL_LIMIT};
use crate::empty::EMPTY_PAGES;
use crate::http::{self, MAX_BODY_BYTES};
pub use crate::mastodon::{PULL_ITEMS, PULL_TIME};
use crate::{
    Author, Capabilities, Channel, Connector, ConnectorError, Cursor, InboundItem, Pull,
    ReplyTarget, Sent,
};

/// Events asked for per timeline and per `/messages` page.
pub const PAGE: usize = 100;

/// The rooms a source may read (each is a `/messages` walk on a first sync).
pub const MAX_ROOMS: usize = 20;

/// The bytes an event may have, envelope included.
pub const MAX_EVENT_BYTES: usize = 65_536;

/// The bytes a reply's content may have: the rest of [`MAX_EVENT_BYTES`] is left for what
/// the homeserver adds around it (ids, hashes, signatures, auth events).
pub const MAX_CONTENT_BYTES: usize = 60_000;

/// The bytes a pagination or sync token may have to be kept in the cursor (Synapse's are
/// under a hundred).
pub const MAX_TOKEN_BYTES: usize = 1_024;

/// The bytes an MXID, room id, alias or event id may have (the spec's limit).
const MAX_ID_BYTES: usize = 255;

/// Walks a room may have under way at once (its backfill and gaps of later syncs); past
/// it the oldest gap is given up, with a warning.
const MAX_WALKS: usize = 4;

/// The longest a homeserver may ask us to wait.
const MAX_WAIT_SECS: u64 = 86_400;

/// How long a `/joined_rooms` that found the account in every configured room is trusted
/// (see the module doc): a room left meanwhile goes quiet (`/sync` no longer sends its
/// events) until the first pull after that time, whose warning says why.
const JOINED_TTL: chrono::Duration = chrono::Duration::minutes(10);

/// Where the items' links point (<https://spec.matrix.org/v1.13/appendices/#matrixto-navigation>).
const MATRIX_TO: &str = "https://matrix.to/#/";

fn default_backfill_limit() -> u64 {
    DEFAULT_BACKFILL_LIMIT
}

/// A source's settings. `access_token` is a secret: stored apart, never returned, bound to
/// the homeserver it is sent to.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MatrixConfig {
    /// The homeserver's client-server API base (`https://matrix.example.org`).
    pub homeserver: String,
    pub access_token: String,
    /// Room ids (`!opaque:server`) or aliases (`#name:server`).
    pub rooms: Vec<String>,
    /// Events per room a first sync takes (0: only what comes after it).
    #[serde(default = "default_backfill_limit")]
    pub backfill_limit: u64,
}

impl std::fmt::Debug for MatrixConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MatrixConfig")
            .field("homeserver", &self.homeserver)
            .field("access_token", &"***")
            .field("rooms", &self.rooms)
            .field("backfill_limit", &self.backfill_limit)
            .finish()
    }
}

impl MatrixConfig {
    /// Reads and checks a source's settings (secrets merged in); the error names the field.
    pub fn parse(config: &Value) -> Result<MatrixConfig, (String, String)> {
        let mut config: MatrixConfig = crate::read_config(config, "homeserver")?;
        crate::check_http_url("homeserver", &config.homeserver)?;
        config.homeserver = config.homeserver.trim().trim_end_matches('/').to_owned();
        if config.access_token.trim().is_empty() {
            return Err((
                "access_token".into(),
                "access_token must not be empty".into(),
            ));
        }
        for room in &mut config.rooms {
            *room = room.trim().to_owned();
            if !is_id(room, '!') && !is_id(room, '#') {
                let start: String = room.chars().take(40).collect();
                return Err((
                    "rooms".into(),
                    format!("`{start}` is neither a room id (!opaque:server, or !opaque) nor an alias (#name:server)"),
                ));
            }
        }
        // Room ids are case-sensitive: only exact repeats are one room.
        let mut seen = HashSet::new();
        config.rooms.retain(|room| seen.insert(room.clone()));
        if config.rooms.is_empty() {
            return Err((
                "rooms".into(),
                "name at least one room the account is in (!id:server or #alias:server)".into(),
            ));
        }
        if config.rooms.len() > MAX_ROOMS {
            return Err(("rooms".into(), format!("at most {MAX_ROOMS} rooms")));
        }
        if config.backfill_limit > MAX_BACKFILL_LIMIT {
            return Err((
                "backfill_limit".into(),
                format!("backfill_limit is at most {MAX_BACKFILL_LIMIT}"),
            ));
        }
        Ok(config)
    }
}

/// Whether `id` is a Matrix identifier with `sigil`: `{sigil}{local}:{server}`, both parts
/// non-empty, no whitespace, at most 255 bytes. A room id of room version 12 on is the
/// create event's hash alone, without `:server`
/// (<https://spec.matrix.org/v1.16/rooms/v12/#room-ids>): Synapse makes such rooms by
/// default.
fn is_id(id: &str, sigil: char) -> bool {
    let Some(rest) = id.strip_prefix(sigil) else {
        return false;
    };
    let well_formed = match rest.split_once(':') {
        Some((local, server)) => !local.is_empty() && !server.is_empty(),
        None => sigil == '!' && !rest.is_empty(),
    };
    well_formed
        && id.len() <= MAX_ID_BYTES
        && !id.chars().any(|c| c.is_whitespace() || c.is_control())
}

/// Whether `id` is an event id (`$` and an opaque part; room versions 1 and 2 add
/// `:server`).
fn is_event_id(id: &str) -> bool {
    id.len() > 1
        && id.len() <= MAX_ID_BYTES
        && id.starts_with('$')
        && !id.chars().any(|c| c.is_whitespace() || c.is_control())
}

/// A walk back through a room's timeline with `/messages`, under way.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
struct Walk {
    /// Where the next page starts (`None`: at the room's newest event).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    from: Option<String>,
    /// Where the walk stops (a gap's: the `since` of the sync that found it; `None`: the
    /// room's start).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    to: Option<String>,
    /// On a backfill, how many events the walk may still take (`None`: down to `to`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    left: Option<u64>,
    /// How many empty pages in a row the walk has just gone past.
    #[serde(default, skip_serializing_if = "crate::empty::is_zero")]
    empty: u8,
}

/// How a page of a walk left it.
enum Paged {
    /// It goes on from the page's `end`.
    On(Walk),
    /// It ended: the room's start, its `to`, its allowance, a page that goes nowhere.
    Ended,
    /// It stopped after more than [`EMPTY_PAGES`] empty pages in a row, which the room's
    /// warning says.
    GaveUp,
}

/// Where one configured room stands (see the module doc).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
struct Room {
    /// The room id (an alias's, once resolved).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    id: Option<String>,
    /// Whether its backfill has begun (its first sync, or its first walk).
    #[serde(default)]
    synced: bool,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    walks: Vec<Walk>,
    /// What went wrong with this room in the last pull; `source.cursor` shows it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    warning: Option<String>,
    /// When a walk back of this room last gave up (past [`EMPTY_PAGES`] empty pages, which
    /// the specification allows: "an empty chunk does not necessarily imply that no more
    /// events are available"; Synapse answers one when a page's events are all hidden from
    /// the account): the room's `warning` says so for a week.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    gave_up: Option<DateTime<Utc>>,
}

impl Room {
    /// What the room's warning says of its walk's giving up, while it says it.
    fn gave_up_warning(&self, now: DateTime<Utc>) -> Option<String> {
        self.gave_up
            .and_then(|at| crate::empty::gave_up_warning("/messages", at, now))
    }
}

/// Where a Matrix source stands.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
struct MatrixCursor {
    /// The account's MXID.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    me: Option<String>,
    /// The `next_batch` of the last sync.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    since: Option<String>,
    /// By the room as configured (id or alias).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    rooms: BTreeMap<String, Room>,
    /// When `/joined_rooms` last found the account in every configured room.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    joined_at: Option<DateTime<Utc>>,
}

impl MatrixCursor {
    /// Reads a stored cursor; one this version cannot read starts over (a first sync).
    fn decode(cursor: Option<&Cursor>) -> MatrixCursor {
        cursor
            .and_then(|cursor| serde_json::from_str(&cursor.0).ok())
            .unwrap_or_default()
    }

    fn encode(&self) -> Cursor {
        Cursor(serde_json::to_string(self).expect("a cursor serialises"))
    }

    /// Whether the last `/joined_rooms` still holds for `configured` at `now`: it found
    /// the account in every one of them less than [`JOINED_TTL`] ago, and none has had a
    /// warning since (a refused `/messages`, say) other than that its walk gave up.
    fn joined_holds(&self, configured: &[String], now: DateTime<Utc>) -> bool {
        self.joined_at
            .is_some_and(|at| at <= now && now - at < JOINED_TTL)
            && configured.iter().all(|key| {
                self.rooms.get(key).is_some_and(|room| {
                    room.id.is_some() && room.warning == room.gave_up_warning(now)
                })
            })
    }
}

/// Why a call failed.
#[derive(Debug)]
enum Failure {
    /// The homeserver refused the request with a Matrix error (a 4xx but 401 and 429):
    /// about one room when the call was.
    Refused {
        status: u16,
        errcode: String,
        error: String,
    },
    Connector(ConnectorError),
}

impl From<ConnectorError> for Failure {
    fn from(err: ConnectorError) -> Failure {
        Failure::Connector(err)
    }
}

impl Failure {
    /// What the refusal says, for a warning or an error message.
    fn said(&self) -> String {
        match self {
            Failure::Refused {
                status,
                errcode,
                error,
            } => match (errcode.is_empty(), error.is_empty()) {
                (true, _) => format!("{status}"),
                (false, true) => format!("{status} {errcode}"),
                (false, false) => format!("{status} {errcode}: {error}"),
            },
            Failure::Connector(err) => err.to_string(),
        }
    }

    /// As an error of the whole pull or reply: a refusal of a call about the account
    /// (403) is refused credentials, anything else a payload error.
    fn into_error(self, what: &str) -> ConnectorError {
        match self {
            Failure::Connector(err) => err,
            refused @ Failure::Refused { status: 403, .. } => {
                ConnectorError::Unauthorized(format!(
                    "{what} answered {}: check the source's access_token",
                    refused.said()
                ))
            }
            refused => ConnectorError::Payload(format!("{what} answered {}", refused.said())),
        }
    }
}

/// Events gathered in a pull, with their room, and the senders' display names by room.
#[derive(Default)]
struct Gathered {
    /// Whether the pull has read anything (a page or a sync) yet.
    read: bool,
    events: Vec<Value>,
    names: HashMap<(String, String), String>,
}

impl Gathered {
    /// Keeps `events` of `room` (adding `room_id`, which `/sync` leaves out).
    fn take(&mut self, room: &str, events: impl IntoIterator<Item = Value>) {
        for mut event in events {
            if let Value::Object(fields) = &mut event {
                fields.insert("room_id".to_owned(), Value::String(room.to_owned()));
                self.events.push(event);
            }
        }
    }

    /// Learns display names from `m.room.member` events of `room`.
    fn learn(&mut self, room: &str, state: &[Value]) {
        for event in state {
            if event.get("type").and_then(Value::as_str) != Some("m.room.member") {
                continue;
            }
            let (Some(user), Some(name)) = (
                event.get("state_key").and_then(Value::as_str),
                event
                    .pointer("/content/displayname")
                    .and_then(Value::as_str)
                    .map(str::trim)
                    .filter(|name| !name.is_empty()),
            ) else {
                continue;
            };
            self.names.insert(
                (room.to_owned(), user.to_owned()),
                name.chars().take(256).collect(),
            );
        }
    }
}

pub struct MatrixConnector {
    client: reqwest::Client,
    config: MatrixConfig,
}

impl MatrixConnector {
    pub fn new(client: reqwest::Client, config: MatrixConfig) -> MatrixConnector {
        MatrixConnector { client, config }
    }

    fn host(&self) -> String {
        reqwest::Url::parse(&self.config.homeserver)
            .ok()
            .and_then(|url| url.host_str().map(str::to_owned))
            .unwrap_or_default()
    }

    /// The URL of `/_matrix/client/v3/{segments…}`, each segment percent-encoded (an
    /// alias's `#`, an id's reserved characters).
    fn url(&self, segments: &[&str]) -> Result<reqwest::Url, ConnectorError> {
        let mut url = reqwest::Url::parse(&self.config.homeserver)
            .map_err(|_| ConnectorError::Config("homeserver: not a URL".into()))?;
        url.path_segments_mut()
            .map_err(|_| ConnectorError::Config("homeserver: not a base URL".into()))?
            .pop_if_empty()
            .extend(["_matrix", "client", "v3"])
            .extend(segments);
        Ok(url)
    }

    /// One call; a success's rate-limit headers (if any) move `not_before`.
    async fn call(
        &self,
        method: Method,
        segments: &[&str],
        query: &[(&str, String)],
        body: Option<&Value>,
        not_before: &mut Option<DateTime<Utc>>,
    ) -> Result<Value, Failure> {
        let url = self.url(segments)?;
        let now = Utc::now();
        let mut request = self
            .client
            .request(method, url)
            .query(query)
            .bearer_auth(&self.config.access_token)
            .header("accept", "application/json");
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().await.map_err(http::transport)?;
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = http::read_capped(response, MAX_BODY_BYTES).await?;
        let (host, endpoint) = (self.host(), segments.first().copied().unwrap_or_default());
        if status.is_success() {
            if let Some(at) = http::not_before(&headers, now) {
                *not_before = Some(not_before.map_or(at, |old| old.max(at)));
            }
            return serde_json::from_slice(&bytes).map_err(|err| {
                Failure::Connector(ConnectorError::Payload(format!(
                    "{host} answered /{endpoint} with invalid JSON: {err}"
                )))
            });
        }
        let answer: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        let errcode: String = answer
            .get("errcode")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.'))
            .take(64)
            .collect();
        let error: String = answer
            .get("error")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .chars()
            .filter(|c| !c.is_control())
            .take(200)
            .collect();
        let code = status.as_u16();
        Err(match code {
            429 => Failure::Connector(ConnectorError::RateLimited {
                retry_after_secs: retry_after(&answer, &headers, now),
            }),
            401 => Failure::Connector(ConnectorError::Unauthorized(format!(
                "{host} refused the access token ({}): log in again and set the source's \
                 access_token",
                if errcode.is_empty() {
                    "401"
                } else {
                    errcode.as_str()
                }
            ))),
            500.. => Failure::Connector(ConnectorError::Transport(format!(
                "{host} answered /{endpoint} with {code}"
            ))),
            _ => Failure::Refused {
                status: code,
                errcode,
                error,
            },
        })
    }

    /// The account behind the token (`GET /account/whoami`).
    async fn whoami(
        &self,
        not_before: &mut Option<DateTime<Utc>>,
    ) -> Result<String, ConnectorError> {
        let answer = self
            .call(Method::GET, &["account", "whoami"], &[], None, not_before)
            .await
            .map_err(|failure| failure.into_error(&format!("{} /account/whoami", self.host())))?;
        answer
            .get("user_id")
            .and_then(Value::as_str)
            .filter(|id| is_id(id, '@'))
            .map(str::to_owned)
            .ok_or_else(|| {
                ConnectorError::Payload(format!(
                    "{} answered /account/whoami without a user_id",
                    self.host()
                ))
            })
    }

    /// The rooms the account is in (`GET /joined_rooms`).
    async fn joined(
        &self,
        not_before: &mut Option<DateTime<Utc>>,
    ) -> Result<HashSet<String>, ConnectorError> {
        let answer = self
            .call(Method::GET, &["joined_rooms"], &[], None, not_before)
            .await
            .map_err(|failure| failure.into_error(&format!("{} /joined_rooms", self.host())))?;
        let rooms = answer
            .get("joined_rooms")
            .and_then(Value::as_array)
            .ok_or_else(|| {
                ConnectorError::Payload(format!(
                    "{} answered /joined_rooms without joined_rooms",
                    self.host()
                ))
            })?;
        Ok(rooms
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect())
    }

    /// The room id of `alias` (`GET /directory/room/{alias}`).
    async fn resolve(
        &self,
        alias: &str,
        not_before: &mut Option<DateTime<Utc>>,
    ) -> Result<String, Failure> {
        let answer = self
            .call(
                Method::GET,
                &["directory", "room", alias],
                &[],
                None,
                not_before,
            )
            .await?;
        answer
            .get("room_id")
            .and_then(Value::as_str)
            .filter(|id| is_id(id, '!'))
            .map(str::to_owned)
            .ok_or_else(|| {
                Failure::Connector(ConnectorError::Payload(format!(
                    "{} answered /directory/room without a room_id",
                    self.host()
                )))
            })
    }

    /// One `/sync` of `rooms` after `since` (the first when `None`), its timeline at most
    /// `limit` events per room.
    async fn sync(
        &self,
        rooms: &[&str],
        since: Option<&str>,
        limit: usize,
        not_before: &mut Option<DateTime<Utc>>,
    ) -> Result<Value, ConnectorError> {
        // Inline filter (a JSON object as the `filter` parameter): nothing but the rooms'
        // messages and their senders' member events.
        let none = json!({ "not_types": ["*"] });
        let filter = json!({
            "account_data": none,
            "presence": none,
            "room": {
                "rooms": rooms,
                "timeline": { "limit": limit, "types": ["m.room.message"] },
                // Every sync names its senders again: the connector keeps no member list,
                // and Synapse leaves out members it sent this device before otherwise.
                "state": {
                    "types": ["m.room.member"],
                    "lazy_load_members": true,
                    "include_redundant_members": true
                },
                "ephemeral": none,
                "account_data": none,
            },
        });
        let mut query = vec![("filter", filter.to_string()), ("timeout", "0".to_owned())];
        if let Some(since) = since {
            query.push(("since", since.to_owned()));
        }
        self.call(Method::GET, &["sync"], &query, None, not_before)
            .await
            .map_err(|failure| failure.into_error(&format!("{} /sync", self.host())))
    }

    /// One page of `walk` in `room`: takes its events (within the walk's allowance) into
    /// `gathered`; returns the walk that goes on, or how it ended.
    async fn page(
        &self,
        room: &str,
        mut walk: Walk,
        gathered: &mut Gathered,
        not_before: &mut Option<DateTime<Utc>>,
    ) -> Result<Paged, Failure> {
        let limit = walk
            .left
            .map_or(PAGE, |left| PAGE.min(usize::try_from(left).unwrap_or(PAGE)))
            .max(1);
        let filter = json!({
            "types": ["m.room.message"],
            "lazy_load_members": true,
            "include_redundant_members": true
        });
        let mut query = vec![
            ("dir", "b".to_owned()),
            ("limit", limit.to_string()),
            ("filter", filter.to_string()),
        ];
        if let Some(from) = &walk.from {
            query.push(("from", from.clone()));
        }
        if let Some(to) = &walk.to {
            query.push(("to", to.clone()));
        }
        let answer = self
            .call(
                Method::GET,
                &["rooms", room, "messages"],
                &query,
                None,
                not_before,
            )
            .await?;
        let chunk: Vec<Value> = match answer.get("chunk") {
            Some(Value::Array(chunk)) => chunk.iter().take(limit).cloned().collect(),
            _ => {
                return Err(Failure::Connector(ConnectorError::Payload(format!(
                    "{} answered /messages without a chunk",
                    self.host()
                ))))
            }
        };
        if let Some(Value::Array(state)) = answer.get("state") {
            gathered.learn(room, state);
        }
        gathered.read = true;
        let taken = chunk.len() as u64;
        let empty = chunk.is_empty();
        gathered.take(room, chunk);
        let end = answer
            .get("end")
            .and_then(Value::as_str)
            .filter(|end| !end.is_empty() && end.len() <= MAX_TOKEN_BYTES)
            .map(str::to_owned);
        if let Some(left) = &mut walk.left {
            *left = left.saturating_sub(taken);
        }
        let stuck = end.is_some() && end == walk.from;
        walk.empty = crate::empty::counted(walk.empty, empty);
        match end {
            Some(_) if walk.empty > EMPTY_PAGES => Ok(Paged::GaveUp),
            Some(end) if !stuck && walk.left != Some(0) => {
                walk.from = Some(end);
                Ok(Paged::On(walk))
            }
            _ => Ok(Paged::Ended),
        }
    }

    /// The event an earlier attempt of the reply with transaction id `txn` made in `room`,
    /// when it is among the room's newest [`PAGE`] messages. The homeserver answers a
    /// repeated transaction id with the event it made only for a while (Synapse keeps them
    /// about 30 minutes, per access token): a retry after that, of a reply whose answer was
    /// lost, would post it again. The sender's own events carry `unsigned.transaction_id`
    /// (to the device that sent them), so it is looked for first. A failed look is no
    /// answer: the send goes ahead, as before.
    async fn sent_before(&self, room: &str, txn: &str) -> Option<String> {
        let query = [
            ("dir", "b".to_owned()),
            ("limit", PAGE.to_string()),
            ("filter", json!({ "types": ["m.room.message"] }).to_string()),
        ];
        let answer = self
            .call(
                Method::GET,
                &["rooms", room, "messages"],
                &query,
                None,
                &mut None,
            )
            .await
            .ok()?;
        answer
            .get("chunk")?
            .as_array()?
            .iter()
            .find(|event| {
                event
                    .pointer("/unsigned/transaction_id")
                    .and_then(Value::as_str)
                    == Some(txn)
            })?
            .get("event_id")
            .and_then(Value::as_str)
            .filter(|id| is_event_id(id))
            .map(str::to_owned)
    }

    /// An event as an item; `None` for what is not a message to keep (another type, an
    /// edit, a redacted event) or lacks what every event has.
    fn item(
        &self,
        event: &Value,
        me: Option<&str>,
        names: &HashMap<(String, String), String>,
    ) -> Option<InboundItem> {
        let text = |key: &str| event.get(key).and_then(Value::as_str);
        if text("type") != Some("m.room.message") {
            return None;
        }
        let id = text("event_id").filter(|id| is_event_id(id))?;
        let room = text("room_id").filter(|room| is_id(room, '!'))?;
        let sender = text("sender").filter(|sender| is_id(sender, '@'))?;
        let content = event.get("content")?;
        let body = content.get("body").and_then(Value::as_str)?;
        // Notices are what bots send (<https://spec.matrix.org/v1.13/client-server-api/#mnotice>):
        // no customer writes one, and answering one could loop with the bot.
        if content.get("msgtype").and_then(Value::as_str) == Some("m.notice") {
            return None;
        }
        let relates = content.get("m.relates_to");
        let relation = relates
            .and_then(|r| r.get("rel_type"))
            .and_then(Value::as_str);
        if relation == Some("m.replace") {
            return None;
        }
        let millis = event.get("origin_server_ts").and_then(Value::as_i64)?;
        let occurred_at = Utc.timestamp_millis_opt(millis).single()?;
        let related = |pointer: &str| {
            relates
                .and_then(|r| r.pointer(pointer))
                .and_then(Value::as_str)
                .filter(|id| is_event_id(id))
                .map(str::to_owned)
        };
        let parent = related("/m.in_reply_to/event_id");
        let root = (relation == Some("m.thread"))
            .then(|| related("/event_id"))
            .flatten();
        let falling_back = relates
            .and_then(|r| r.get("is_falling_back"))
            .and_then(Value::as_bool)
            == Some(true);
        let in_reply_to = match &root {
            Some(root) if falling_back || parent.is_none() => Some(root.clone()),
            _ => parent.clone(),
        };
        let outbound = me == Some(sender);
        // `m.mentions` says who is mentioned when present (even empty); a client older than
        // it (spec v1.7) only wrote the MXID into the body.
        let mentioned = me.is_some_and(|me| match content.get("m.mentions") {
            Some(mentions) => mentions
                .get("user_ids")
                .and_then(Value::as_array)
                .is_some_and(|ids| ids.iter().any(|id| id.as_str() == Some(me))),
            None => without_fallback(body).contains(me),
        });
        let kind = if mentioned && !outbound {
            "mention"
        } else if in_reply_to.is_some() {
            "reply"
        } else {
            "message"
        };
        // Only a real reply carries a fallback (a thread's fallback reply has none).
        let quoted = parent.is_some() && !falling_back;
        let text = if quoted { without_fallback(body) } else { body };
        let html = (content.get("format").and_then(Value::as_str)
            == Some("org.matrix.custom.html"))
        .then(|| content.get("formatted_body").and_then(Value::as_str))
        .flatten()
        .map(without_mx_reply)
        .filter(|html| !html.trim().is_empty())
        .map(str::to_owned);
        Some(InboundItem {
            external_id: id.to_owned(),
            author: Author {
                platform_id: sender.to_owned(),
                handle: Some(sender.to_owned()),
                display_name: names.get(&(room.to_owned(), sender.to_owned())).cloned(),
                profile_url: Some(format!("{MATRIX_TO}{sender}")),
                avatar_url: None,
                email: None,
                phone: None,
                links: Vec::new(),
            },
            outbound,
            kind: kind.to_owned(),
            subject: None,
            text: text.trim().to_owned(),
            html,
            url: Some(format!("{MATRIX_TO}{room}/{id}")),
            language: None,
            occurred_at,
            thread_key: root,
            in_reply_to,
            raw: event.clone(),
        })
    }

    /// Walks the rooms' walks while the pull's budget lasts; returns whether one stopped
    /// for the budget (and so goes on in the next batch).
    async fn walk_rooms(
        &self,
        rooms: &mut BTreeMap<String, Room>,
        listened: &[String],
        gathered: &mut Gathered,
        started: std::time::Instant,
        not_before: &mut Option<DateTime<Utc>>,
        stopped: &mut bool,
    ) -> Result<bool, ConnectorError> {
        let mut more = false;
        for key in listened {
            let Some(room) = rooms.get_mut(key) else {
                continue;
            };
            let Some(id) = room.id.clone() else {
                continue;
            };
            while let Some(walk) = room.walks.first().cloned() {
                if *stopped || over_budget(gathered, started, not_before) {
                    more = true;
                    break;
                }
                match self.page(&id, walk, gathered, not_before).await {
                    Ok(Paged::On(goes_on)) => room.walks[0] = goes_on,
                    Ok(Paged::Ended) => {
                        room.walks.remove(0);
                    }
                    Ok(Paged::GaveUp) => {
                        room.walks.remove(0);
                        // Beside what else this pull found wrong with the room, in place
                        // of an earlier giving up.
                        if room.warning == room.gave_up_warning(Utc::now()) {
                            room.warning = None;
                        }
                        if let Some(said) =
                            crate::empty::gave_up_now(&mut room.gave_up, "/messages")
                        {
                            crate::empty::warn(&mut room.warning, said);
                        }
                    }
                    Err(Failure::Connector(ConnectorError::RateLimited { retry_after_secs })) => {
                        http::wait_out(not_before, retry_after_secs);
                        *stopped = true;
                        more = true;
                        break;
                    }
                    // This room only: the walk stays for the next pull. A 5xx, a lost
                    // connection or an unreadable page is about this room too (Synapse
                    // answers 500/502 while it backfills a federated room from other
                    // servers): the other rooms and the sync go on.
                    Err(
                        failure @ (Failure::Refused { .. }
                        | Failure::Connector(
                            ConnectorError::Transport(_) | ConnectorError::Payload(_),
                        )),
                    ) => {
                        room.warning = Some(format!("/messages answered {}", failure.said()));
                        break;
                    }
                    Err(Failure::Connector(err)) => return Err(err),
                }
            }
        }
        Ok(more)
    }
}

/// Whether a pull has gathered enough: about [`PULL_ITEMS`] events, [`PULL_TIME`], or a
/// wait the homeserver asked for. A pull that has read nothing yet reads once whatever
/// the time (a slow `whoami` must not leave every batch empty).
fn over_budget(
    gathered: &Gathered,
    started: std::time::Instant,
    not_before: &Option<DateTime<Utc>>,
) -> bool {
    not_before.is_some_and(|at| at > Utc::now())
        || (gathered.read
            && (gathered.events.len() + PAGE > PULL_ITEMS || started.elapsed() >= PULL_TIME))
}

/// Whether a payload error is the body cap's ([`http::read_capped`]), not a malformed
/// answer.
fn oversized(message: &str) -> bool {
    message.contains("is larger than")
}

/// How long a 429 asks us to wait: `retry_after_ms` of its body (rounded up), else its
/// `Retry-After` header; at least a second, at most a day.
fn retry_after(
    answer: &Value,
    headers: &reqwest::header::HeaderMap,
    now: DateTime<Utc>,
) -> Option<u64> {
    let from_body = answer
        .get("retry_after_ms")
        .and_then(Value::as_u64)
        .map(|ms| ms.div_ceil(1_000));
    let from_header =
        || http::not_before(headers, now).map(|at| (at - now).num_seconds().max(0).unsigned_abs());
    from_body
        .or_else(from_header)
        .map(|secs| secs.clamp(1, MAX_WAIT_SECS))
}

/// `body` without the reply fallback older clients put before the text: the `> ` lines
/// quoting the answered event (`> <@sender:server> …`) and the blank line after them
/// (<https://spec.matrix.org/v1.13/client-server-api/#fallbacks-for-rich-replies>).
fn without_fallback(body: &str) -> &str {
    if !body.starts_with("> <") {
        return body;
    }
    let mut rest = body;
    while rest.starts_with('>') {
        match rest.split_once('\n') {
            Some((_, after)) => rest = after,
            None => return body,
        }
    }
    rest.strip_prefix("\r\n")
        .or_else(|| rest.strip_prefix('\n'))
        .unwrap_or(rest)
}

/// `html` without a leading `<mx-reply>…</mx-reply>` fallback.
fn without_mx_reply(html: &str) -> &str {
    let trimmed = html.trim_start();
    if !trimmed.starts_with("<mx-reply>") {
        return html;
    }
    match trimmed.find("</mx-reply>") {
        Some(end) => &trimmed[end + "</mx-reply>".len()..],
        None => html,
    }
}

/// The transaction id of the reply with `idempotency_key`: the same for every attempt, so
/// the homeserver (which keeps transaction ids per access token) posts it once.
pub fn txn_id(idempotency_key: &str) -> String {
    let digest = Sha256::digest(idempotency_key.as_bytes());
    format!("rapport-{}", hex::encode(&digest[..16]))
}

#[async_trait::async_trait]
impl Connector for MatrixConnector {
    fn channel(&self) -> Channel {
        Channel::Matrix
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            pull: true,
            webhook: false,
            reply: true,
        }
    }

    async fn pull(&self, cursor: Option<&Cursor>) -> Result<Pull, ConnectorError> {
        let started = std::time::Instant::now();
        let mut state = MatrixCursor::decode(cursor);
        let mut not_before = None;
        let me = match state.me.clone() {
            Some(me) => me,
            None => self.whoami(&mut not_before).await?,
        };
        state.me = Some(me.clone());
        let now = Utc::now();
        let joined = if state.joined_holds(&self.config.rooms, now) {
            None
        } else {
            state.joined_at = None;
            Some(self.joined(&mut not_before).await?)
        };
        let mut in_every = joined.is_some();
        let backfill = self.config.backfill_limit;
        let mut stopped = false;
        let mut more = false;

        // The configured rooms: resolved, and read when the account is in them.
        let mut rooms = BTreeMap::new();
        let mut listened: Vec<String> = Vec::new();
        for configured in &self.config.rooms {
            let mut room = state.rooms.remove(configured).unwrap_or_default();
            room.warning = crate::empty::shown(&mut room.gave_up, "/messages", now);
            if room.id.is_none() {
                if configured.starts_with('!') {
                    room.id = Some(configured.clone());
                } else if stopped {
                    more = true;
                } else {
                    match self.resolve(configured, &mut not_before).await {
                        Ok(id) => room.id = Some(id),
                        Err(Failure::Connector(ConnectorError::RateLimited {
                            retry_after_secs,
                        })) => {
                            http::wait_out(&mut not_before, retry_after_secs);
                            stopped = true;
                            more = true;
                        }
                        Err(refused @ Failure::Refused { .. }) => {
                            room.warning =
                                Some(format!("/directory/room answered {}", refused.said()));
                        }
                        Err(Failure::Connector(err)) => return Err(err),
                    }
                }
            }
            match &room.id {
                Some(id) if joined.as_ref().is_none_or(|joined| joined.contains(id)) => {
                    listened.push(configured.clone());
                }
                Some(id) => {
                    in_every = false;
                    room.warning = Some(format!(
                        "the account is not in {id}: join the room (or accept its invite) with \
                         the account; Rapport does not join rooms itself"
                    ));
                }
                None => in_every = false,
            }
            rooms.insert(configured.clone(), room);
        }
        if in_every {
            state.joined_at = Some(now);
        }
        // Rooms no longer configured are forgotten.
        state.rooms = rooms;

        let mut gathered = Gathered::default();
        let first = state.since.is_none();
        if !first {
            // A room added since the last sync walks back from its newest event.
            for key in &listened {
                if let Some(room) = state.rooms.get_mut(key).filter(|room| !room.synced) {
                    room.synced = true;
                    if backfill > 0 {
                        room.walks.push(Walk {
                            left: Some(backfill),
                            ..Walk::default()
                        });
                    }
                }
            }
            more |= self
                .walk_rooms(
                    &mut state.rooms,
                    &listened,
                    &mut gathered,
                    started,
                    &mut not_before,
                    &mut stopped,
                )
                .await?;
        }

        if !listened.is_empty() && !stopped && !over_budget(&gathered, started, &not_before) {
            let ids: Vec<&str> = listened
                .iter()
                .filter_map(|key| state.rooms.get(key)?.id.as_deref())
                .collect();
            let mut limit = if first {
                usize::try_from(backfill).unwrap_or(PAGE).clamp(1, PAGE)
            } else {
                PAGE
            };
            // A sync of 20 rooms × 100 events of up to 64 KiB can pass the body cap (one
            // member flooding two rooms is enough): ask again with a timeline half as long,
            // down to one event. The timelines then come back `limited` and the rest is
            // walked with `/messages`, whose pages stay under the cap.
            let synced = loop {
                match self
                    .sync(&ids, state.since.as_deref(), limit, &mut not_before)
                    .await
                {
                    Err(ConnectorError::Payload(message)) if limit > 1 && oversized(&message) => {
                        limit = (limit / 2).max(1);
                    }
                    other => break other,
                }
            };
            match synced {
                Ok(answer) => {
                    gathered.read = true;
                    self.read_sync(&answer, &mut state, &listened, &mut gathered)?;
                    more |= self
                        .walk_rooms(
                            &mut state.rooms,
                            &listened,
                            &mut gathered,
                            started,
                            &mut not_before,
                            &mut stopped,
                        )
                        .await?;
                }
                Err(ConnectorError::RateLimited { retry_after_secs }) => {
                    http::wait_out(&mut not_before, retry_after_secs);
                    more = true;
                }
                Err(err) => return Err(err),
            }
        } else if !listened.is_empty() {
            more = true;
        }

        let names = std::mem::take(&mut gathered.names);
        let mut seen = HashSet::new();
        let mut items: Vec<InboundItem> = gathered
            .events
            .iter()
            .filter_map(|event| self.item(event, Some(&me), &names))
            .filter(|item| seen.insert(item.external_id.clone()))
            .collect();
        // Oldest first: a reply after what it answers when both are new.
        items.sort_by(|a, b| (a.occurred_at, &a.external_id).cmp(&(b.occurred_at, &b.external_id)));
        Ok(Pull {
            items,
            next_cursor: Some(state.encode()),
            more,
            not_before,
        })
    }

    async fn reply(&self, to: &ReplyTarget, text: &str) -> Result<Sent, ConnectorError> {
        let text = text.trim();
        let event_id = to.external_id.as_str();
        if !is_event_id(event_id) {
            return Err(ConnectorError::Payload(format!(
                "`{event_id}` is not a Matrix event to answer"
            )));
        }
        let room = to
            .context
            .get("room_id")
            .and_then(Value::as_str)
            .filter(|room| is_id(room, '!'))
            .ok_or_else(|| {
                ConnectorError::Payload(format!("{event_id} names no room to answer in"))
            })?;
        let mut relates = json!({ "m.in_reply_to": { "event_id": event_id } });
        let root = to
            .context
            .pointer("/content/m.relates_to")
            .filter(|r| r.get("rel_type").and_then(Value::as_str) == Some("m.thread"))
            .and_then(|r| r.get("event_id"))
            .and_then(Value::as_str)
            .filter(|root| is_event_id(root));
        if let Some(root) = root {
            // In the thread, answering that event (not a fallback for thread-less clients).
            relates["rel_type"] = json!("m.thread");
            relates["event_id"] = json!(root);
            relates["is_falling_back"] = json!(false);
        }
        let mut content = json!({
            "msgtype": "m.text",
            "body": text,
            "m.relates_to": relates,
        });
        if let Some(sender) = to.recipient.as_deref().filter(|id| is_id(id, '@')) {
            content["m.mentions"] = json!({ "user_ids": [sender] });
        }
        let size = serde_json::to_vec(&content).map_or(usize::MAX, |bytes| bytes.len());
        if size > MAX_CONTENT_BYTES {
            return Err(ConnectorError::Payload(format!(
                "the reply's event content is {size} bytes; Matrix takes at most \
                 {MAX_EVENT_BYTES} per event, {MAX_CONTENT_BYTES} of them for the content"
            )));
        }
        let txn = txn_id(&to.idempotency_key);
        if let Some(id) = self.sent_before(room, &txn).await {
            return Ok(Sent {
                url: Some(format!("{MATRIX_TO}{room}/{id}")),
                external_id: id,
                text: text.to_owned(),
            });
        }
        let answer = self
            .call(
                Method::PUT,
                &["rooms", room, "send", "m.room.message", &txn],
                &[],
                Some(&content),
                &mut None,
            )
            .await
            .map_err(|failure| match failure {
                Failure::Connector(err) => err,
                refused => ConnectorError::Payload(format!(
                    "{} refused the reply: {}",
                    self.host(),
                    refused.said()
                )),
            })?;
        let id = answer
            .get("event_id")
            .and_then(Value::as_str)
            .filter(|id| is_event_id(id))
            .ok_or_else(|| {
                ConnectorError::Payload(format!(
                    "{} answered the reply without an event_id",
                    self.host()
                ))
            })?;
        Ok(Sent {
            external_id: id.to_owned(),
            url: Some(format!("{MATRIX_TO}{room}/{id}")),
            text: text.to_owned(),
        })
    }
}

impl MatrixConnector {
    /// Takes a sync's timelines into `gathered`, starts the walks it calls for (a first
    /// sync's backfill, a later one's gaps) and moves `since` on.
    fn read_sync(
        &self,
        answer: &Value,
        state: &mut MatrixCursor,
        listened: &[String],
        gathered: &mut Gathered,
    ) -> Result<(), ConnectorError> {
        let next = answer
            .get("next_batch")
            .and_then(Value::as_str)
            .filter(|next| !next.is_empty() && next.len() <= MAX_TOKEN_BYTES)
            .ok_or_else(|| {
                ConnectorError::Payload(format!(
                    "{} answered /sync without a usable next_batch",
                    self.host()
                ))
            })?
            .to_owned();
        let first = state.since.is_none();
        let backfill = self.config.backfill_limit;
        let joined = answer.pointer("/rooms/join");
        for key in listened {
            let Some(room) = state.rooms.get_mut(key) else {
                continue;
            };
            let Some(id) = room.id.clone() else {
                continue;
            };
            let synced = room.synced;
            room.synced = true;
            let Some(update) = joined.and_then(|join| join.get(&id)) else {
                continue;
            };
            let list = |pointer: &str| {
                update
                    .pointer(pointer)
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default()
            };
            let mut events = list("/timeline/events");
            gathered.learn(&id, &list("/state/events"));
            gathered.learn(&id, &events);
            let limited =
                update.pointer("/timeline/limited").and_then(Value::as_bool) == Some(true);
            let prev = update
                .pointer("/timeline/prev_batch")
                .and_then(Value::as_str)
                .filter(|prev| !prev.is_empty() && prev.len() <= MAX_TOKEN_BYTES)
                .map(str::to_owned);
            let walk = if first || !synced {
                // The backfill: the newest `backfill_limit` events, the rest walked.
                let within = usize::try_from(backfill).unwrap_or(usize::MAX);
                let skip = events.len().saturating_sub(within);
                events.drain(..skip);
                let left = backfill.saturating_sub(events.len() as u64);
                (limited && left > 0).then_some(Walk {
                    from: prev,
                    left: Some(left),
                    ..Walk::default()
                })
            } else {
                // A gap between the last sync and this timeline.
                limited.then(|| Walk {
                    from: prev,
                    to: state.since.clone(),
                    ..Walk::default()
                })
            };
            gathered.take(&id, events);
            if let Some(walk) = walk {
                if walk.from.is_none() {
                    room.warning = Some("/sync gave no prev_batch to walk back from".into());
                    continue;
                }
                if room.walks.len() >= MAX_WALKS {
                    room.walks.pop();
                    room.warning = Some(
                        "too many gaps under way: the oldest was given up (some older \
                         messages of this room may be missing)"
                            .into(),
                    );
                }
                // The newest gap first: what happened lately lands before older history.
                room.walks.insert(0, walk);
            }
        }
        state.since = Some(next);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> Value {
        json!({
            "homeserver": "https://matrix.example.org/",
            "access_token": "syt_YWNtZQ_secret_token",
            "rooms": ["!OGEhHVWSdvArJzumhm:matrix.example.org", " #support:matrix.example.org", "!OGEhHVWSdvArJzumhm:matrix.example.org"],
        })
    }

    fn connector() -> MatrixConnector {
        MatrixConnector::new(
            reqwest::Client::new(),
            MatrixConfig::parse(&config()).unwrap(),
        )
    }

    #[test]
    fn joined_rooms_are_trusted_for_ten_minutes_while_every_room_is_in_them_and_quiet() {
        let now = Utc::now();
        let configured = vec!["!a:example.org".to_owned(), "#b:example.org".to_owned()];
        let room = |id: Option<&str>| Room {
            id: id.map(str::to_owned),
            synced: true,
            ..Room::default()
        };
        let mut state = MatrixCursor {
            rooms: BTreeMap::from([
                (configured[0].clone(), room(Some("!a:example.org"))),
                (configured[1].clone(), room(Some("!b:example.org"))),
            ]),
            joined_at: Some(now - chrono::Duration::minutes(9)),
            ..MatrixCursor::default()
        };
        assert!(state.joined_holds(&configured, now));
        // Asked too long ago, never, or in the future (a clock set back).
        for at in [
            Some(now - JOINED_TTL),
            None,
            Some(now + chrono::Duration::minutes(1)),
        ] {
            let stale = MatrixCursor {
                joined_at: at,
                ..state.clone()
            };
            assert!(!stale.joined_holds(&configured, now), "{at:?}");
        }
        // A room added to the source, or one whose alias is not resolved yet.
        let mut added = configured.clone();
        added.push("!c:example.org".to_owned());
        assert!(!state.joined_holds(&added, now));
        state.rooms.get_mut(&configured[1]).unwrap().id = None;
        assert!(!state.joined_holds(&configured, now));
        state.rooms.get_mut(&configured[1]).unwrap().id = Some("!b:example.org".to_owned());
        // A room with a warning (a refused /messages, say) asks again; one whose only
        // warning is its walk's giving up does not.
        let b = state.rooms.get_mut(&configured[1]).unwrap();
        b.warning = Some("/messages answered 403 M_FORBIDDEN".to_owned());
        assert!(!state.joined_holds(&configured, now));
        let b = state.rooms.get_mut(&configured[1]).unwrap();
        b.gave_up = Some(now - chrono::Duration::days(1));
        b.warning = b.gave_up_warning(now);
        assert!(state.joined_holds(&configured, now));
    }
    #[test]
    fn the_config_is_checked_and_never_shows_the_token() {
        let parsed = MatrixConfig::parse(&config()).unwrap();
        assert_eq!(parsed.homeserver, "https://matrix.example.org");
        assert_eq!(
            parsed.rooms,
            [
                "!OGEhHVWSdvArJzumhm:matrix.example.org",
                "#support:matrix.example.org"
            ]
        );
        assert_eq!(parsed.backfill_limit, DEFAULT_BACKFILL_LIMIT);
        let shown = format!("{parsed:?}");
        assert!(!shown.contains("secret"), "{shown}");
        let field = |key: &str, value: Value| {
            let mut config = config();
            config[key] = value;
            MatrixConfig::parse(&config).unwrap_err().0
        };
        assert_eq!(
            field("homeserver", json!("matrix.example.org")),
            "homeserver"
        );
        assert_eq!(field("access_token", json!(" ")), "access_token");
        assert_eq!(field("rooms", json!([])), "rooms");
        assert_eq!(field("rooms", json!(["support"])), "rooms");
        assert_eq!(field("rooms", json!(["@maya:example.org"])), "rooms");
        assert_eq!(field("rooms", json!(["#:example.org"])), "rooms");
        assert_eq!(field("rooms", json!(["#support"])), "rooms");
        assert_eq!(field("rooms", json!(["!"])), "rooms");
        // Room version 12: the create event's hash, no server.
        let mut v12 = config();
        v12["rooms"] = json!(["!2KPw98CgGYb7xn4Z3Qp6v9FrNQYnqaSR1Qi04YN"]);
        assert!(MatrixConfig::parse(&v12).is_ok());
        assert_eq!(field("rooms", json!(["#a b:example.org"])), "rooms");
        let many: Vec<String> = (0..21).map(|n| format!("!r{n}:example.org")).collect();
        assert_eq!(field("rooms", json!(many)), "rooms");
        assert_eq!(field("backfill_limit", json!(100_001)), "backfill_limit");
        assert_eq!(field("token", json!("x")), "token");
    }

    #[test]
    fn paths_encode_aliases_and_ids() {
        let url = connector()
            .url(&["directory", "room", "#support:matrix.example.org"])
            .unwrap();
        assert_eq!(
            url.as_str(),
            "https://matrix.example.org/_matrix/client/v3/directory/room/%23support:matrix.example.org"
        );
    }

    fn event(content: Value) -> Value {
        json!({
            "type": "m.room.message",
            "event_id": "$143273582443PhrSn:example.org",
            "room_id": "!OGEhHVWSdvArJzumhm:matrix.example.org",
            "sender": "@maya:example.org",
            "origin_server_ts": 1_733_306_400_123_i64,
            "unsigned": { "age": 1234 },
            "content": content,
        })
    }

    #[test]
    fn events_become_items_with_their_threads_mentions_and_direction() {
        let names = HashMap::from([(
            (
                "!OGEhHVWSdvArJzumhm:matrix.example.org".to_owned(),
                "@maya:example.org".to_owned(),
            ),
            "Maya L.".to_owned(),
        )]);
        let me = Some("@acme:matrix.example.org");
        let plain = event(json!({ "msgtype": "m.text", "body": "export is broken" }));
        let item = connector().item(&plain, me, &names).unwrap();
        assert_eq!(item.external_id, "$143273582443PhrSn:example.org");
        assert_eq!(item.author.platform_id, "@maya:example.org");
        assert_eq!(item.author.display_name.as_deref(), Some("Maya L."));
        assert_eq!(item.kind, "message");
        assert_eq!(item.occurred_at.timestamp_millis(), 1_733_306_400_123);
        assert_eq!(
            item.url.as_deref(),
            Some("https://matrix.to/#/!OGEhHVWSdvArJzumhm:matrix.example.org/$143273582443PhrSn:example.org")
        );
        assert!(!item.outbound && item.in_reply_to.is_none() && item.thread_key.is_none());

        let mention = event(json!({
            "msgtype": "m.text", "body": "> <@acme:matrix.example.org> fixed?\n\nno, still broken",
            "format": "org.matrix.custom.html",
            "formatted_body": "<mx-reply><blockquote>fixed?</blockquote></mx-reply>no, <b>still</b> broken",
            "m.mentions": { "user_ids": ["@acme:matrix.example.org"] },
            "m.relates_to": { "m.in_reply_to": { "event_id": "$ours:matrix.example.org" } }
        }));
        let item = connector().item(&mention, me, &names).unwrap();
        assert_eq!(item.kind, "mention");
        assert_eq!(item.text, "no, still broken");
        assert_eq!(item.html.as_deref(), Some("no, <b>still</b> broken"));
        assert_eq!(
            item.in_reply_to.as_deref(),
            Some("$ours:matrix.example.org")
        );

        // In a thread: filed under the root; a fallback reply answers the root.
        let thread = event(json!({
            "msgtype": "m.text", "body": "> not a fallback\nsecond line",
            "m.relates_to": { "rel_type": "m.thread", "event_id": "$root", "is_falling_back": true,
                "m.in_reply_to": { "event_id": "$latest" } }
        }));
        let item = connector().item(&thread, me, &names).unwrap();
        assert_eq!(item.thread_key.as_deref(), Some("$root"));
        assert_eq!(item.in_reply_to.as_deref(), Some("$root"));
        assert_eq!(item.kind, "reply");
        assert_eq!(item.text, "> not a fallback\nsecond line");
        let mut answer = thread.clone();
        answer["content"]["m.relates_to"]["is_falling_back"] = json!(false);
        let item = connector().item(&answer, me, &names).unwrap();
        assert_eq!(item.in_reply_to.as_deref(), Some("$latest"));

        // Ours is outbound, and never a mention of us.
        let mut ours = mention.clone();
        ours["sender"] = json!("@acme:matrix.example.org");
        let item = connector().item(&ours, me, &names).unwrap();
        assert!(item.outbound);
        assert_eq!(item.kind, "reply");

        // A client without `m.mentions` mentions by the MXID in the body; one with it names
        // whom it mentions there only (a quoted MXID is no mention).
        let legacy =
            event(json!({ "msgtype": "m.text", "body": "@acme:matrix.example.org help?" }));
        assert_eq!(
            connector().item(&legacy, me, &names).unwrap().kind,
            "mention"
        );
        let mut quoted = legacy.clone();
        quoted["content"]["m.mentions"] = json!({});
        assert_eq!(
            connector().item(&quoted, me, &names).unwrap().kind,
            "message"
        );

        // Edits, bots' notices, redacted events, other types and broken ids are no items.
        let notice = event(json!({ "msgtype": "m.notice", "body": "build passed" }));
        assert!(connector().item(&notice, me, &names).is_none());
        let edit = event(json!({ "msgtype": "m.text", "body": "* fixed",
            "m.new_content": { "msgtype": "m.text", "body": "fixed" },
            "m.relates_to": { "rel_type": "m.replace", "event_id": "$143273582443PhrSn:example.org" } }));
        assert!(connector().item(&edit, me, &names).is_none());
        assert!(connector().item(&event(json!({})), me, &names).is_none());
        for (key, value) in [
            ("type", json!("m.room.encrypted")),
            ("event_id", json!("143273582443")),
            ("sender", json!("maya")),
            ("room_id", Value::Null),
            ("origin_server_ts", json!("yesterday")),
        ] {
            let mut broken = plain.clone();
            broken[key] = value;
            assert!(connector().item(&broken, me, &names).is_none(), "{key}");
        }
    }

    #[test]
    fn fallbacks_are_cut_only_where_they_are() {
        assert_eq!(without_fallback("> <@a:b> hi\n> there\n\nanswer"), "answer");
        assert_eq!(
            without_fallback("> quoted by hand\n\nanswer"),
            "> quoted by hand\n\nanswer"
        );
        assert_eq!(
            without_fallback("> <@a:b> only a quote"),
            "> <@a:b> only a quote"
        );
        assert_eq!(without_mx_reply("<b>x</b>"), "<b>x</b>");
        assert_eq!(
            without_mx_reply("<mx-reply>q</mx-reply><b>x</b>"),
            "<b>x</b>"
        );
    }

    #[test]
    fn a_transaction_id_is_stable_per_reply_and_waits_come_from_the_body() {
        assert_eq!(txn_id("key-1"), txn_id("key-1"));
        assert_ne!(txn_id("key-1"), txn_id("key-2"));
        assert!(txn_id("key-1").starts_with("rapport-"));
        assert_eq!(txn_id("key-1").len(), "rapport-".len() + 32);
        let now = Utc.with_ymd_and_hms(2026, 12, 4, 10, 0, 0).unwrap();
        let headers = reqwest::header::HeaderMap::new();
        let limited = |ms: Value| json!({ "errcode": "M_LIMIT_EXCEEDED", "error": "Too many requests", "retry_after_ms": ms });
        assert_eq!(retry_after(&limited(json!(2_001)), &headers, now), Some(3));
        assert_eq!(retry_after(&limited(json!(10)), &headers, now), Some(1));
        assert_eq!(
            retry_after(&limited(json!(u64::MAX)), &headers, now),
            Some(MAX_WAIT_SECS)
        );
        let mut with_header = reqwest::header::HeaderMap::new();
        with_header.insert("retry-after", "42".parse().unwrap());
        assert_eq!(retry_after(&json!({}), &with_header, now), Some(42));
        assert_eq!(retry_after(&json!({}), &headers, now), None);
    }

    #[tokio::test]
    async fn a_reply_too_large_for_an_event_is_refused_before_sending() {
        // Nothing listens there: a request would fail as a transport error.
        let mut config = config();
        config["homeserver"] = json!("http://127.0.0.1:9");
        let connector = MatrixConnector::new(
            reqwest::Client::new(),
            MatrixConfig::parse(&config).unwrap(),
        );
        let to = ReplyTarget {
            external_id: "$143273582443PhrSn:example.org".into(),
            thread_key: None,
            recipient: Some("@maya:example.org".into()),
            context: event(json!({ "msgtype": "m.text", "body": "hi" })),
            idempotency_key: "k".into(),
        };
        // Quotes are escaped in JSON: 30,001 of them are 60,002 bytes of content.
        match connector.reply(&to, &"\"".repeat(30_001)).await {
            Err(ConnectorError::Payload(message)) => {
                assert!(message.contains("65536"), "{message}")
            }
            other => panic!("{other:?}"),
        }
        match connector.reply(&to, "fits").await {
            Err(ConnectorError::Transport(_)) => {}
            other => panic!("{other:?}"),
        }
        let mut roomless = to.clone();
        roomless.context = json!({});
        assert!(matches!(
            connector.reply(&roomless, "fits").await,
            Err(ConnectorError::Payload(_))
        ));
    }

    #[test]
    fn a_pull_reads_once_whatever_the_time_then_keeps_to_its_budget() {
        let now = std::time::Instant::now();
        let long_ago = now
            .checked_sub(std::time::Duration::from_secs(10))
            .unwrap_or(now);
        let mut gathered = Gathered::default();
        assert!(!over_budget(&gathered, long_ago, &None));
        gathered.read = true;
        assert_eq!(
            over_budget(&gathered, long_ago, &None),
            now.duration_since(long_ago) >= PULL_TIME
        );
        assert!(!over_budget(&gathered, now, &None));
        gathered.events = vec![Value::Null; PULL_ITEMS - PAGE + 1];
        assert!(over_budget(&gathered, now, &None));
        let waiting = Some(Utc::now() + chrono::Duration::seconds(60));
        assert!(over_budget(&Gathered::default(), now, &waiting));
    }

    #[test]
    fn a_cursor_round_trips_and_an_unreadable_one_starts_over() {
        let cursor = MatrixCursor {
            me: Some("@acme:matrix.example.org".into()),
            since: Some("s72595_4483_1934".into()),
            rooms: BTreeMap::from([(
                "#support:matrix.example.org".to_owned(),
                Room {
                    id: Some("!OGEhHVWSdvArJzumhm:matrix.example.org".into()),
                    synced: true,
                    walks: vec![Walk {
                        from: Some("t47409-4357353_219380_26003_2265".into()),
                        left: Some(880),
                        ..Walk::default()
                    }],
                    warning: Some("/messages answered 11 pages in a row…".into()),
                    gave_up: Some(Utc::now()),
                },
            )]),
            joined_at: Some(Utc::now()),
        };
        assert_eq!(MatrixCursor::decode(Some(&cursor.encode())), cursor);
        assert_eq!(
            MatrixCursor::decode(Some(&Cursor("s72595".into()))),
            MatrixCursor::default()
        );
    }
}
