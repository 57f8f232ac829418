//! The Bluesky channel (pull + reply), over the AT Protocol's HTTP API (XRPC,
//! <https://docs.bsky.app/docs/category/http-reference>) of the account's PDS or the
//! `bsky.social` entryway, which proxies the `app.bsky.*` reads to the AppView.
//!
//! Plain calls through the guarded client instead of `atrium-api`: the connector uses
//! seven endpoints (two for the session, two reads, three for replies), each a small JSON
//! object, while the crate generates types for the whole lexicon and would add a large
//! dependency tree to every build on a 2-core machine.
//!
//! - Session: `com.atproto.server.createSession` (identifier + app password) gives the
//!   access and refresh tokens, our DID and handle. A `400 ExpiredToken` is answered by
//!   `com.atproto.server.refreshSession` (bearer: the refresh token; a new login when that
//!   one is spent too) and the call is made once more. The session is kept per account in
//!   the process ([`SESSIONS`]) as well as in the connector, because a connector lives for
//!   one sync or one reply and `createSession` is limited to 30 per 5 minutes and 300 a
//!   day per account (<https://docs.bsky.app/docs/advanced-guides/rate-limits>): a login
//!   per five-minute sync would spend that alone. Kept per service, identifier and app
//!   password digest, at most [`MAX_SESSIONS`] (the oldest dropped), tokens at most
//!   [`MAX_TOKEN_BYTES`]; a refused login drops the account's. Our DID tells our posts
//!   (outbound) from others'.
//! - Listening: `app.bsky.notification.listNotifications` with `reasons` mention, reply
//!   and quote (filtered here too, for servers that ignore the parameter), and
//!   `app.bsky.feed.searchPosts` (`sort=latest`) for each keyword and each hashtag (`q`
//!   `#tag`); `limit` 100, each paged with its opaque `cursor`, newest first.
//! - Cursor: the platform's cursors only page back in time, so each stream keeps a *mark*
//!   (the newest entry already handed over: its `indexedAt` and uri) and, while one is
//!   under way, a *walk* back from the newest entry (the platform cursor of the next older
//!   page, the newest entry seen since the walk began, and on a first sync how many
//!   entries it may still take). A first sync walks back until `backfill_limit` entries
//!   (0: it only sets the mark), the stream's end or the pull's budget; a later sync walks
//!   from the newest entry down to the mark. When a walk ends its newest entry becomes the
//!   mark. A page with nothing in it but a cursor (the AppView filters some entries out
//!   after paging) does not end a walk; more than ten in a row do, and the
//!   stream's `warning` says so, with the date, for a week ([`crate::empty`]). Every
//!   batch's cursor is where the walk resumes, so a crash or a stop mid-walk resumes
//!   there; entries that arrive meanwhile are newer than the walk's newest and come with
//!   the next walk. The stored cursor is JSON: `{"notifications": {"mark": {"at", "uri"},
//!   "walk": {"cursor", "top", "left", "empty"}, "warning", "gave_up"}, "search":
//!   {"<query>": {…}}}`.
//! - A pull gathers pages until about [`PULL_ITEMS`] entries or [`PULL_TIME`] (every
//!   stream gets at least one page), and hands its items over oldest first, so a reply
//!   comes after its parent when both are new. Across pulls a walk goes back in time: a
//!   reply taken before its parent is filed under the parent's uri, which is the key the
//!   parent's own conversation gets when it comes, so the two still meet.
//! - Items: the post's `at://` uri is the external id, the author's DID the identity (a
//!   handle can change), `record.reply.parent.uri` what it answers (as Mastodon's
//!   `in_reply_to_id`), the link `https://bsky.app/profile/{handle}/post/{rkey}`.
//! - Replies: `com.atproto.repo.createRecord` of an `app.bsky.feed.post` with
//!   `reply.root`/`reply.parent` (uri + cid, from the answered post as it was pulled;
//!   `app.bsky.feed.getPosts` when that is not stored), a leading mention of the author
//!   with a mention facet (UTF-8 byte offsets,
//!   <https://docs.bsky.app/docs/advanced-guides/post-richtext>), and a record key derived
//!   from the answered post's uri and the reply's idempotency key ([`rkey_for`]): a
//!   retried reply names the same record, which the PDS refuses to create twice. After
//!   any failure of `createRecord` but refused credentials and rate limits (the refusal
//!   of a taken key is not documented; the reference PDS answers 500), the record at that
//!   key is read with `com.atproto.repo.getRecord` and, if it answers the same post, is
//!   the reply: posted once, even when the first attempt's answer was lost. At most 300
//!   graphemes.
//! - `ratelimit-remaining: 0` with `ratelimit-reset` (epoch seconds, as Bluesky sends it)
//!   and 429 become "not before" times for the scheduler, at most a day ahead; a pull
//!   stops asking at the first and keeps what it has.
//! - A search the platform does not answer (anything but refused credentials or a rate
//!   limit) does not fail the pull: the notifications and other searches go on, and the
//!   stream's `warning` in the stored cursor says what failed. A failure of the
//!   notifications fails the pull.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::ops::Range;
use std::sync::{LazyLock, Mutex};

use chrono::{DateTime, TimeZone, Utc};
use reqwest::header::HeaderMap;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::http::{self, MAX_BODY_BYTES};
pub use crate::mastodon::{PULL_ITEMS, PULL_TIME};
use crate::{
    Author, Capabilities, Channel, Connector, ConnectorError, Cursor, InboundItem, ProfileLink,
    Pull, ReplyLimit, ReplyTarget, Sent,
};

/// Entries asked for per request (both methods' maximum).
pub const PAGE: usize = 100;

/// Entries per stream a first sync takes when the source does not say.
pub const DEFAULT_BACKFILL_LIMIT: u64 = 1_000;

/// The most a source may ask a first sync to take per stream.
pub const MAX_BACKFILL_LIMIT: u64 = 100_000;

/// The graphemes a post may have (the `app.bsky.feed.post` lexicon's `maxGraphemes`).
pub const MAX_GRAPHEMES: usize = 300;

/// The keywords and hashtags a source may listen to, together: each is one search per pull.
pub const MAX_QUERIES: usize = 20;

/// The characters a keyword or hashtag may have (it goes into every search URL and the
/// stored cursor).
pub const MAX_QUERY_CHARS: usize = 100;

/// The bytes a post uri or a platform cursor may have to be kept: both are stored in the
/// source's cursor, and real ones are far shorter.
pub const MAX_REF_BYTES: usize = 1024;

/// The bytes a session token may have (real ones are about 1 KiB): kept sessions live in
/// process memory.
pub const MAX_TOKEN_BYTES: usize = 16 * 1024;

/// The accounts whose sessions this process keeps; the oldest kept is dropped beyond.
pub const MAX_SESSIONS: usize = 1_024;

/// The longest a platform may ask us to wait (a reset further ahead is taken as this).
const MAX_WAIT_SECS: i64 = 86_400;

/// The notification reasons listened to.
const REASONS: [&str; 3] = ["mention", "reply", "quote"];

const CREATE_SESSION: &str = "com.atproto.server.createSession";
const REFRESH_SESSION: &str = "com.atproto.server.refreshSession";
const LIST_NOTIFICATIONS: &str = "app.bsky.notification.listNotifications";
const SEARCH_POSTS: &str = "app.bsky.feed.searchPosts";
const GET_POSTS: &str = "app.bsky.feed.getPosts";
const CREATE_RECORD: &str = "com.atproto.repo.createRecord";
const GET_RECORD: &str = "com.atproto.repo.getRecord";
const POST: &str = "app.bsky.feed.post";

/// XRPC errors that mean the account's credentials are refused (the source needs
/// someone to change them), whatever the HTTP status.
const REFUSED: [&str; 5] = [
    "AuthenticationRequired",
    "AuthFactorTokenRequired",
    "AccountTakedown",
    "AccountDeactivated",
    "InvalidToken",
];

fn default_backfill_limit() -> u64 {
    DEFAULT_BACKFILL_LIMIT
}

/// A source's settings. `app_password` is a secret: stored apart, never returned, bound to
/// `service` and `identifier`.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BlueskyConfig {
    /// The PDS or entryway (`https://bsky.social`).
    pub service: String,
    /// The account's handle or DID.
    pub identifier: String,
    /// An app password (Settings → Privacy and security → App passwords).
    pub app_password: String,
    #[serde(default)]
    pub keywords: Vec<String>,
    #[serde(default)]
    pub hashtags: Vec<String>,
    /// Entries per stream a first sync takes (0: only what comes after it).
    #[serde(default = "default_backfill_limit")]
    pub backfill_limit: u64,
}

impl std::fmt::Debug for BlueskyConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlueskyConfig")
            .field("service", &self.service)
            .field("identifier", &self.identifier)
            .field("app_password", &"***")
            .field("keywords", &self.keywords)
            .field("hashtags", &self.hashtags)
            .field("backfill_limit", &self.backfill_limit)
            .finish()
    }
}

impl BlueskyConfig {
    /// Reads and checks a source's settings (secrets merged in); the error names the field.
    pub fn parse(config: &Value) -> Result<BlueskyConfig, (String, String)> {
        let mut config: BlueskyConfig = crate::read_config(config, "service")?;
        crate::check_http_url("service", &config.service)?;
        config.service = config.service.trim().trim_end_matches('/').to_owned();
        config.identifier = config.identifier.trim().trim_start_matches('@').to_owned();
        if config.identifier.is_empty() || config.identifier.contains(char::is_whitespace) {
            return Err((
                "identifier".into(),
                "identifier must be the account's handle (name.bsky.social) or DID (did:plc:…)"
                    .into(),
            ));
        }
        if config.app_password.trim().is_empty() {
            return Err((
                "app_password".into(),
                "app_password must not be empty".into(),
            ));
        }
        for tag in &mut config.hashtags {
            *tag = tag.trim().trim_start_matches('#').to_owned();
            if tag.is_empty() || tag.contains(|c: char| c.is_whitespace() || c == '#') {
                return Err((
                    "hashtags".into(),
                    format!("`{tag}` is not a hashtag (one word, without spaces)"),
                ));
            }
        }
        if config.keywords.iter().any(|k| k.trim().is_empty()) {
            return Err(("keywords".into(), "keywords must not be empty".into()));
        }
        for (field, queries) in [
            ("keywords", &config.keywords),
            ("hashtags", &config.hashtags),
        ] {
            if let Some(long) = queries
                .iter()
                .find(|q| q.trim().chars().count() > MAX_QUERY_CHARS)
            {
                let start: String = long.trim().chars().take(20).collect();
                return Err((
                    field.into(),
                    format!("`{start}…` is longer than {MAX_QUERY_CHARS} characters"),
                ));
            }
        }
        if config.keywords.len() + config.hashtags.len() > MAX_QUERIES {
            let field = if config.keywords.len() > MAX_QUERIES {
                "keywords"
            } else {
                "hashtags"
            };
            return Err((
                field.into(),
                format!(
                    "keywords and hashtags are at most {MAX_QUERIES} together (each is a search \
                     on every sync)"
                ),
            ));
        }
        if config.backfill_limit > MAX_BACKFILL_LIMIT {
            return Err((
                "backfill_limit".into(),
                format!("backfill_limit is at most {MAX_BACKFILL_LIMIT}"),
            ));
        }
        Ok(config)
    }

    /// The search queries listened to: each keyword, then each hashtag as `#tag`.
    fn queries(&self) -> Vec<String> {
        let keywords = self.keywords.iter().map(|k| k.trim().to_owned());
        let tags = self.hashtags.iter().map(|tag| format!("#{tag}"));
        // A keyword `#x` and a hashtag `x` are one search, as are repeats: one stream each.
        let mut queries = keywords.chain(tags).collect();
        crate::drop_repeats(&mut queries);
        queries
    }
}

/// A logged-in session: the tokens, and who we are.
#[derive(Clone)]
struct Session {
    access: String,
    refresh: String,
    did: String,
    handle: String,
}

impl Session {
    /// The session of a `createSession` or `refreshSession` answer; the error says what is
    /// wrong with it. Every field is at most [`MAX_TOKEN_BYTES`]: a session is kept in
    /// memory for as long as the process runs.
    fn read(body: &Value) -> Result<Session, &'static str> {
        let text = |key: &str| {
            body.get(key)
                .and_then(Value::as_str)
                .filter(|value| !value.is_empty())
                .map(str::to_owned)
        };
        let session = Session {
            access: text("accessJwt").ok_or("a session without accessJwt")?,
            refresh: text("refreshJwt").ok_or("a session without refreshJwt")?,
            did: text("did")
                .filter(|did| did.starts_with("did:"))
                .ok_or("a session without a did")?,
            handle: text("handle").ok_or("a session without a handle")?,
        };
        let fields = [
            &session.access,
            &session.refresh,
            &session.did,
            &session.handle,
        ];
        if fields.iter().any(|field| field.len() > MAX_TOKEN_BYTES) {
            return Err("a session token longer than 16 KiB");
        }
        Ok(session)
    }
}

/// An account as logged in: the service, the identifier and a digest of the app password.
/// Each app password has its own slot (Bluesky advises one per integration, so two
/// workspaces may use one account with two), and a changed password logs in again.
type Account = (String, String, [u8; 32]);

/// The sessions this process keeps, at most `capacity`: past it the one kept longest ago
/// is dropped (it logs in again when next used).
struct Sessions {
    capacity: usize,
    /// Each session with when it was kept (a counter), to find the oldest.
    kept: HashMap<Account, (u64, Session)>,
    count: u64,
}

impl Sessions {
    fn new(capacity: usize) -> Sessions {
        Sessions {
            capacity,
            kept: HashMap::new(),
            count: 0,
        }
    }

    fn get(&self, account: &Account) -> Option<Session> {
        self.kept.get(account).map(|(_, session)| session.clone())
    }

    fn keep(&mut self, account: Account, session: Session) {
        if !self.kept.contains_key(&account) && self.kept.len() >= self.capacity {
            let oldest = self
                .kept
                .iter()
                .min_by_key(|(_, (when, _))| *when)
                .map(|(account, _)| account.clone());
            if let Some(oldest) = oldest {
                self.kept.remove(&oldest);
            }
        }
        self.count += 1;
        self.kept.insert(account, (self.count, session));
    }

    fn forget(&mut self, account: &Account) {
        self.kept.remove(account);
    }
}

/// Sessions kept in this process (see the module doc).
static SESSIONS: LazyLock<Mutex<Sessions>> =
    LazyLock::new(|| Mutex::new(Sessions::new(MAX_SESSIONS)));

/// The newest entry of a stream already handed over: later walks stop at it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
struct Mark {
    /// The entry's `indexedAt`.
    at: DateTime<Utc>,
    uri: String,
}

impl Mark {
    /// The mark of `entry`; `None` when it has no `indexedAt`, or no `at://` uri of at most
    /// [`MAX_REF_BYTES`] (such an entry is skipped: nothing of it is stored).
    fn of(entry: &Value) -> Option<Mark> {
        Some(Mark {
            at: time(entry.get("indexedAt"))?,
            uri: post_uri(entry)?.to_owned(),
        })
    }

    /// Whether `self` (an entry) is at or before `mark`, so already handed over.
    fn reached(&self, mark: &Mark) -> bool {
        self.at < mark.at || self.uri == mark.uri
    }
}

/// A walk back through a stream, under way.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
struct Walk {
    /// The platform's cursor of the next older page (`None`: start at the newest).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    cursor: Option<String>,
    /// The newest entry seen since the walk began: the stream's mark when it ends.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    top: Option<Mark>,
    /// On a first sync, how many entries the walk may still take (`None`: down to the mark).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    left: Option<u64>,
    /// How many pages in a row had nothing to read, each with a cursor to go on with.
    #[serde(default, skip_serializing_if = "crate::empty::is_zero")]
    empty: u8,
}

/// Where one stream stands (see the module doc).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
struct Stream {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    mark: Option<Mark>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    walk: Option<Walk>,
    /// What went wrong with this stream in the last pull that read it (a search the
    /// platform refused, a cursor too long to keep): the pull itself goes on without it, and
    /// `source.cursor` shows this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    warning: Option<String>,
    /// When a walk of this stream last gave up past ten pages with nothing to
    /// read: the `warning` says so for a week.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    gave_up: Option<DateTime<Utc>>,
}

impl Stream {
    /// A stream never synced: a walk back of up to `backfill` entries.
    fn first(backfill: u64) -> Stream {
        Stream {
            mark: None,
            walk: Some(Walk {
                left: Some(backfill),
                ..Walk::default()
            }),
            warning: None,
            gave_up: None,
        }
    }

    /// Takes one page of the walk (`entries` as served, `next` its cursor) into `taken`,
    /// those `keep` accepts and that are newer than the mark, within the walk's allowance;
    /// ends the walk (its newest entry becomes the mark) when it reached the mark, the
    /// allowance or the stream's end. A page with nothing to read and a cursor does not
    /// end it: the AppView leaves out of a page what it filters after paging (blocks,
    /// mutes, moderation; notifications of other reasons past its own attempts) and still
    /// hands out the cursor, so older pages may hold entries. A platform that goes nowhere
    /// ends it, or it would be walked on every pull for ever: a `next` equal to the cursor
    /// sent, more than ten pages in a row with nothing to read, a `next`
    /// longer than [`MAX_REF_BYTES`] (the last two noted in `warning`). Returns whether the
    /// walk goes on.
    fn step(
        &mut self,
        mut walk: Walk,
        entries: Vec<Value>,
        next: Option<String>,
        keep: impl Fn(&Value) -> bool,
        taken: &mut Vec<Value>,
    ) -> bool {
        let mut reached = false;
        let mut readable = false;
        for entry in entries {
            let Some(mark) = Mark::of(&entry) else {
                continue;
            };
            readable = true;
            if walk.top.as_ref().is_none_or(|top| mark > *top) {
                walk.top = Some(mark.clone());
            }
            if self.mark.as_ref().is_some_and(|old| mark.reached(old)) || walk.left == Some(0) {
                reached = true;
                continue;
            }
            if keep(&entry) {
                taken.push(entry);
                if let Some(left) = &mut walk.left {
                    *left -= 1;
                }
            }
        }
        let stuck = next.is_some() && next == walk.cursor;
        let gave_up = crate::empty::gives_up(&mut walk.empty, !readable, next.is_some());
        if gave_up {
            self.warning = crate::empty::gave_up_now(&mut self.gave_up, "Bluesky");
        }
        walk.cursor = match next {
            Some(next) if next.len() > MAX_REF_BYTES => {
                crate::empty::warn(
                    &mut self.warning,
                    format!(
                        "the platform's cursor is longer than {MAX_REF_BYTES} bytes: the walk \
                         ended there"
                    ),
                );
                None
            }
            next => next,
        };
        let spent = walk.left == Some(0) && walk.top.is_some();
        if reached || stuck || gave_up || walk.cursor.is_none() || spent {
            self.mark = self.mark.take().max(walk.top);
            self.walk = None;
            false
        } else {
            self.walk = Some(walk);
            true
        }
    }
}

/// Where a Bluesky source stands: one [`Stream`] for the notifications and one per search
/// query (keyword, or `#tag`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
struct BlueskyCursor {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    notifications: Option<Stream>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    search: BTreeMap<String, Stream>,
}

impl BlueskyCursor {
    /// Reads a stored cursor; one this version cannot read starts over (a first sync).
    fn decode(cursor: Option<&Cursor>) -> BlueskyCursor {
        cursor
            .and_then(|cursor| serde_json::from_str(&cursor.0).ok())
            .unwrap_or_default()
    }

    fn encode(&self) -> Cursor {
        Cursor(serde_json::to_string(self).expect("a cursor serialises"))
    }
}

/// One stream the connector listens to.
#[derive(Clone, Copy)]
enum Listen<'a> {
    Notifications,
    Search(&'a str),
}

/// A request: its query, or its JSON body (`None`: a procedure without input).
enum Call<'a> {
    Get(Vec<(&'a str, String)>),
    Post(Option<Value>),
}

/// Why an XRPC call failed.
enum Failure {
    /// `ExpiredToken`: the token sent has run out.
    Expired,
    /// Any other error the method answered (a 4xx with its XRPC `error` and `message`).
    Xrpc {
        status: u16,
        error: String,
        message: String,
    },
    Connector(ConnectorError),
}

impl From<ConnectorError> for Failure {
    fn from(err: ConnectorError) -> Failure {
        Failure::Connector(err)
    }
}

pub struct BlueskyConnector {
    client: reqwest::Client,
    config: BlueskyConfig,
    /// The session this connector uses; filled from [`SESSIONS`] or by logging in.
    session: Mutex<Option<Session>>,
}

impl BlueskyConnector {
    pub fn new(client: reqwest::Client, config: BlueskyConfig) -> BlueskyConnector {
        BlueskyConnector {
            client,
            config,
            session: Mutex::new(None),
        }
    }

    fn host(&self) -> String {
        reqwest::Url::parse(&self.config.service)
            .ok()
            .and_then(|url| url.host_str().map(str::to_owned))
            .unwrap_or_default()
    }

    fn account(&self) -> Account {
        (
            self.config.service.clone(),
            self.config.identifier.clone(),
            Sha256::digest(self.config.app_password.as_bytes()).into(),
        )
    }

    /// The session in hand: the connector's, else the one this process keeps for the
    /// account (made with the same password).
    fn kept(&self) -> Option<Session> {
        if let Some(session) = self.session.lock().ok().and_then(|s| s.clone()) {
            return Some(session);
        }
        SESSIONS.lock().ok()?.get(&self.account())
    }

    fn keep(&self, session: &Session) {
        if let Ok(mut mine) = self.session.lock() {
            *mine = Some(session.clone());
        }
        if let Ok(mut sessions) = SESSIONS.lock() {
            sessions.keep(self.account(), session.clone());
        }
    }

    /// Drops the kept session (its login was refused): nothing is kept for credentials
    /// that do not work.
    fn forget(&self) {
        if let Ok(mut mine) = self.session.lock() {
            *mine = None;
        }
        if let Ok(mut sessions) = SESSIONS.lock() {
            sessions.forget(&self.account());
        }
    }

    /// One XRPC call with `token` as bearer (none for `createSession`); rate-limit headers
    /// of every answer move `not_before`.
    async fn send(
        &self,
        nsid: &str,
        call: &Call<'_>,
        token: Option<&str>,
        not_before: &mut Option<DateTime<Utc>>,
    ) -> Result<Value, Failure> {
        let url = format!("{}/xrpc/{nsid}", self.config.service);
        let mut request = match call {
            Call::Get(query) => self.client.get(url).query(query),
            Call::Post(Some(body)) => self.client.post(url).json(body),
            Call::Post(None) => self.client.post(url),
        };
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let now = Utc::now();
        let response = request
            .header("accept", "application/json")
            .send()
            .await
            .map_err(http::transport)?;
        let status = response.status();
        let until = rate_limited_until(response.headers(), now);
        if let Some(at) = until {
            *not_before = Some(not_before.map_or(at, |old| old.max(at)));
        }
        let body = http::read_capped(response, MAX_BODY_BYTES).await?;
        let host = self.host();
        if status.is_success() {
            return serde_json::from_slice(&body).map_err(|err| {
                Failure::Connector(ConnectorError::Payload(format!(
                    "{host} answered {nsid} with invalid JSON: {err}"
                )))
            });
        }
        let (error, message) = xrpc_error(&body);
        let code = status.as_u16();
        Err(match code {
            400 | 401 if error == "ExpiredToken" => Failure::Expired,
            429 => Failure::Connector(ConnectorError::RateLimited {
                retry_after_secs: until.map(|at| {
                    let wait = at.signed_duration_since(now).num_seconds();
                    wait.clamp(1, MAX_WAIT_SECS).unsigned_abs()
                }),
            }),
            401 | 403 => Failure::Connector(refused(&host, nsid, code, &error)),
            _ if REFUSED.contains(&error.as_str()) => {
                Failure::Connector(refused(&host, nsid, code, &error))
            }
            500.. => Failure::Connector(ConnectorError::Transport(format!(
                "{host} answered {nsid} with {code}"
            ))),
            _ => Failure::Xrpc {
                status: code,
                error,
                message,
            },
        })
    }

    /// What a failed call tells the scheduler or the person replying.
    fn error(&self, nsid: &str, failure: Failure) -> ConnectorError {
        match failure {
            Failure::Connector(err) => err,
            Failure::Expired => refused(&self.host(), nsid, 400, "ExpiredToken"),
            Failure::Xrpc {
                status,
                error,
                message,
            } => ConnectorError::Payload(format!(
                "{} answered {nsid} with {status} {error}: {message}",
                self.host()
            )),
        }
    }

    /// `createSession` with the identifier and app password.
    async fn login(
        &self,
        not_before: &mut Option<DateTime<Utc>>,
    ) -> Result<Session, ConnectorError> {
        let body = json!({
            "identifier": self.config.identifier,
            "password": self.config.app_password,
        });
        let answer = self
            .send(CREATE_SESSION, &Call::Post(Some(body)), None, not_before)
            .await
            .map_err(|failure| self.error(CREATE_SESSION, failure));
        if let Err(ConnectorError::Unauthorized(_)) = answer {
            self.forget();
        }
        let session = Session::read(&answer?).map_err(|what| self.shape(CREATE_SESSION, what))?;
        self.keep(&session);
        Ok(session)
    }

    /// The session in hand, else a new one.
    async fn session(
        &self,
        not_before: &mut Option<DateTime<Utc>>,
    ) -> Result<Session, ConnectorError> {
        match self.kept() {
            Some(session) => Ok(session),
            None => self.login(not_before).await,
        }
    }

    /// `refreshSession` with the refresh token of `expired`; a new login when the refresh
    /// token is refused too.
    async fn renew(
        &self,
        expired: &Session,
        not_before: &mut Option<DateTime<Utc>>,
    ) -> Result<Session, ConnectorError> {
        let answer = self
            .send(
                REFRESH_SESSION,
                &Call::Post(None),
                Some(&expired.refresh),
                not_before,
            )
            .await;
        match answer {
            Ok(answer) => {
                let session =
                    Session::read(&answer).map_err(|what| self.shape(REFRESH_SESSION, what))?;
                self.keep(&session);
                Ok(session)
            }
            Err(Failure::Expired | Failure::Connector(ConnectorError::Unauthorized(_))) => {
                self.login(not_before).await
            }
            Err(failure) => Err(self.error(REFRESH_SESSION, failure)),
        }
    }

    /// An authenticated call, made once more with a renewed session when the access token
    /// has expired, or with a new login when a kept session is refused (revoked, or the
    /// PDS forgot it).
    async fn call(
        &self,
        nsid: &str,
        call: Call<'_>,
        not_before: &mut Option<DateTime<Utc>>,
    ) -> Result<Value, Failure> {
        let (session, kept) = match self.kept() {
            Some(session) => (session, true),
            None => (self.login(not_before).await?, false),
        };
        let renewed = match self
            .send(nsid, &call, Some(&session.access), not_before)
            .await
        {
            Err(Failure::Expired) => self.renew(&session, not_before).await?,
            Err(Failure::Connector(ConnectorError::Unauthorized(_))) if kept => {
                self.login(not_before).await?
            }
            answer => return answer,
        };
        self.send(nsid, &call, Some(&renewed.access), not_before)
            .await
    }

    fn shape(&self, nsid: &str, what: &str) -> ConnectorError {
        ConnectorError::Payload(format!("{} answered {nsid} with {what}", self.host()))
    }

    /// One page of a stream: its entries as served (newest first) and the cursor of the
    /// next older page.
    async fn page(
        &self,
        listen: Listen<'_>,
        cursor: Option<&str>,
        limit: usize,
        not_before: &mut Option<DateTime<Utc>>,
    ) -> Result<(Vec<Value>, Option<String>), ConnectorError> {
        let mut query = vec![("limit", limit.to_string())];
        let (nsid, list) = match listen {
            Listen::Notifications => {
                query.extend(
                    REASONS
                        .iter()
                        .map(|reason| ("reasons", (*reason).to_owned())),
                );
                (LIST_NOTIFICATIONS, "notifications")
            }
            Listen::Search(q) => {
                query.push(("q", q.to_owned()));
                query.push(("sort", "latest".to_owned()));
                (SEARCH_POSTS, "posts")
            }
        };
        if let Some(cursor) = cursor {
            query.push(("cursor", cursor.to_owned()));
        }
        let mut body = self
            .call(nsid, Call::Get(query), not_before)
            .await
            .map_err(|failure| self.error(nsid, failure))?;
        let mut entries = match body.get_mut(list).map(Value::take) {
            Some(Value::Array(entries)) => entries,
            _ => return Err(self.shape(nsid, &format!("no `{list}` list"))),
        };
        // No more than asked for, whatever the platform sends.
        entries.truncate(limit);
        let next = body
            .get("cursor")
            .and_then(Value::as_str)
            .filter(|cursor| !cursor.is_empty())
            .map(str::to_owned);
        Ok((entries, next))
    }

    /// Walks `stream` (see the module doc) while the pull's budget lasts (`before`: the
    /// entries earlier streams of this pull took), taking entries into `taken`; returns
    /// whether its walk goes on in this pull's next batch. A page whose entries are all
    /// filtered out here (notifications of other reasons) leaves the rest of the walk to
    /// the next scheduled pull, so a platform serving only such pages cannot keep a source
    /// busy; a page with nothing readable is gone past (at most ten in a row).
    /// On an error, `stream` is as the last page left it.
    async fn walk(
        &self,
        listen: Listen<'_>,
        stream: &mut Stream,
        taken: &mut Vec<Value>,
        before: usize,
        started: std::time::Instant,
        not_before: &mut Option<DateTime<Utc>>,
    ) -> Result<bool, ConnectorError> {
        loop {
            let walk = stream.walk.clone().unwrap_or_default();
            let limit = walk
                .left
                .map_or(PAGE, |left| PAGE.min(left as usize))
                .max(1);
            let (entries, next) = self
                .page(listen, walk.cursor.as_deref(), limit, not_before)
                .await?;
            let keep = |entry: &Value| match listen {
                Listen::Notifications => entry
                    .get("reason")
                    .and_then(Value::as_str)
                    .is_some_and(|reason| REASONS.contains(&reason)),
                Listen::Search(_) => true,
            };
            let had = taken.len();
            if !stream.step(walk, entries, next, keep, taken) {
                return Ok(false);
            }
            // A page with nothing readable (counted in the walk's `empty`) is gone past.
            let empty = stream.walk.as_ref().is_some_and(|walk| walk.empty > 0);
            if taken.len() == had && !empty {
                return Ok(false);
            }
            if before + taken.len() + PAGE > PULL_ITEMS
                || started.elapsed() >= PULL_TIME
                || not_before.is_some_and(|at| at > Utc::now())
            {
                return Ok(true);
            }
        }
    }

    /// A notification or a post view as an item; `None` when it lacks what every post has.
    fn item(&self, entry: &Value, kind: &str, me: &str) -> Option<InboundItem> {
        let uri = post_uri(entry)?;
        let author = entry.get("author")?;
        let text_of = |value: &Value, key: &str| {
            value
                .get(key)
                .and_then(Value::as_str)
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
        };
        let did = text_of(author, "did").filter(|did| did.starts_with("did:"))?;
        let handle = text_of(author, "handle");
        let record = entry.get("record").unwrap_or(&Value::Null);
        // `createdAt` is the client's claim (backdated or in the future); like Bluesky's own
        // ordering, never later than when the platform indexed it.
        let occurred_at = match (time(record.get("createdAt")), time(entry.get("indexedAt"))) {
            (Some(created), Some(indexed)) => created.min(indexed),
            (created, indexed) => created.or(indexed)?,
        };
        Some(InboundItem {
            external_id: uri.to_owned(),
            author: Author {
                platform_id: did.clone(),
                handle: handle.as_ref().map(|handle| format!("@{handle}")),
                display_name: text_of(author, "displayName").or(handle.clone()),
                profile_url: Some(format!("https://bsky.app/profile/{did}")),
                avatar_url: text_of(author, "avatar"),
                email: None,
                phone: None,
                // A profile view's description (notifications carry it; search results
                // carry the basic view, without it).
                links: text_of(author, "description")
                    .map(|bio| {
                        crate::text::links_in_text(&bio)
                            .into_iter()
                            .take(crate::MAX_PROFILE_LINKS)
                            .map(|url| ProfileLink {
                                url,
                                label: Some("bio".to_owned()),
                                verified: false,
                            })
                            .collect()
                    })
                    .unwrap_or_default(),
            },
            outbound: did == me,
            kind: kind.to_owned(),
            subject: None,
            text: record
                .get("text")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
            html: None,
            url: Some(permalink(handle.as_deref().unwrap_or(&did), uri)),
            language: record
                .pointer("/langs/0")
                .and_then(Value::as_str)
                .map(str::to_owned),
            occurred_at,
            thread_key: None,
            in_reply_to: record
                .pointer("/reply/parent/uri")
                .and_then(Value::as_str)
                .map(str::to_owned),
            raw: entry.clone(),
        })
    }

    /// The post `to` answers, from what was stored of it, else asked with `getPosts`.
    async fn answered(
        &self,
        to: &ReplyTarget,
        not_before: &mut Option<DateTime<Utc>>,
    ) -> Result<Answered, ConnectorError> {
        if let Some(answered) = Answered::of(&to.context, &to.external_id) {
            return Ok(answered);
        }
        let query = vec![("uris", to.external_id.clone())];
        let posts = self
            .call(GET_POSTS, Call::Get(query), not_before)
            .await
            .map_err(|failure| self.error(GET_POSTS, failure))?;
        posts
            .pointer("/posts/0")
            .and_then(|post| Answered::of(post, &to.external_id))
            .ok_or_else(|| {
                ConnectorError::Payload(format!(
                    "{} no longer has the post {} (deleted?)",
                    self.host(),
                    to.external_id
                ))
            })
    }

    /// The uri of the record at our `rkey`, when it exists and answers `parent` (a uri): a
    /// reply an earlier attempt posted. `None` when there is none (or it cannot be read); an
    /// error when a record there answers another post, which no retry would fix.
    async fn posted(
        &self,
        session: &Session,
        rkey: &str,
        parent: &str,
        not_before: &mut Option<DateTime<Utc>>,
    ) -> Result<Option<String>, ConnectorError> {
        let query = vec![
            ("repo", session.did.clone()),
            ("collection", POST.to_owned()),
            ("rkey", rkey.to_owned()),
        ];
        let Ok(record) = self.call(GET_RECORD, Call::Get(query), not_before).await else {
            return Ok(None);
        };
        let Some(uri) = record.get("uri").and_then(Value::as_str) else {
            return Ok(None);
        };
        if record
            .pointer("/value/reply/parent/uri")
            .and_then(Value::as_str)
            != Some(parent)
        {
            return Err(ConnectorError::Payload(format!(
                "{} holds a different post under this reply's record key ({uri}): \
                 send it with another idempotency key",
                self.host()
            )));
        }
        Ok(Some(uri.to_owned()))
    }
}

/// The post a reply answers: itself and its thread's root as strong references
/// (`{uri, cid}`), and its author.
#[derive(Debug, PartialEq)]
struct Answered {
    parent: Value,
    root: Value,
}

impl Answered {
    /// From a post view or notification of the post at `uri`; `None` without its cid.
    fn of(post: &Value, uri: &str) -> Option<Answered> {
        let cid = post.get("cid")?.as_str().filter(|cid| !cid.is_empty())?;
        let parent = json!({ "uri": uri, "cid": cid });
        let root = post
            .pointer("/record/reply/root")
            .filter(|root| {
                root.get("uri").and_then(Value::as_str).is_some()
                    && root.get("cid").and_then(Value::as_str).is_some()
            })
            .map(|root| json!({ "uri": root["uri"], "cid": root["cid"] }))
            .unwrap_or_else(|| parent.clone());
        Some(Answered { parent, root })
    }
}

/// The author a reply to `to` mentions: their handle (as the answered post showed it, else
/// the identity's) and DID, when the stored post names the DID.
fn mentioned(to: &ReplyTarget) -> Option<(String, String)> {
    let author = to.context.get("author")?;
    let did = author.get("did")?.as_str()?.to_owned();
    let handle = author
        .get("handle")
        .and_then(Value::as_str)
        .or(to.recipient.as_deref())?
        .trim_start_matches('@')
        .to_owned();
    (!handle.is_empty()).then_some((handle, did))
}

/// What a reply posts: `text` with a leading mention of `handle` (unless the text mentions
/// them already), and the UTF-8 byte range of the mention in it.
fn post_text(handle: Option<&str>, text: &str) -> (String, Option<Range<usize>>) {
    let text = text.trim();
    let Some(handle) = handle else {
        return (text.to_owned(), None);
    };
    let mention = format!("@{handle}");
    let handle_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_');
    let found = text.match_indices(&mention).find(|(at, _)| {
        let before = text[..*at].chars().next_back();
        let mut after = text[at + mention.len()..].chars();
        let next = after.next();
        let ends = match next {
            None => true,
            // A sentence's full stop, not a longer handle.
            Some('.') => !after.next().is_some_and(handle_char),
            Some(c) => !handle_char(c),
        };
        ends && !before.is_some_and(|c| handle_char(c) || c == '@' || c == '.')
    });
    match found {
        Some((at, _)) => (text.to_owned(), Some(at..at + mention.len())),
        None => (format!("{mention} {text}"), Some(0..mention.len())),
    }
}

/// The `app.bsky.feed.post` record of a reply: `text` (with the mention at `mention`,
/// pointing at `did`) answering `answered`.
fn reply_record(
    text: &str,
    mention: Option<(Range<usize>, &str)>,
    answered: &Answered,
    at: DateTime<Utc>,
) -> Value {
    let mut record = json!({
        "$type": POST,
        "text": text,
        "createdAt": at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        "reply": { "root": answered.root, "parent": answered.parent },
    });
    if let Some((range, did)) = mention {
        record["facets"] = json!([{
            "index": { "byteStart": range.start, "byteEnd": range.end },
            "features": [{ "$type": "app.bsky.richtext.facet#mention", "did": did }],
        }]);
    }
    record
}

/// The characters of a record key in TID form, in sort order ("base32-sortable").
const BASE32_SORTABLE: &[u8; 32] = b"234567abcdefghijklmnopqrstuvwxyz";

/// The record key of the reply to the post `answered` (its uri) with idempotency key
/// `key`: a TID-shaped key (13 characters of base32-sortable, the 64-bit value's top bit
/// clear, <https://atproto.com/specs/tid>) from a digest of both, so every attempt at one
/// reply names the same record, and equal keys of two workspaces (or of a staging and a
/// production instance) replying to different posts from one account name different ones.
/// Its "timestamp" bits are the digest's, not a clock's (anywhere from 1970 to about
/// 2255): the post's time is its `createdAt`, and record keys only need to be TIDs in form.
pub fn rkey_for(answered: &str, key: &str) -> String {
    let digest =
        Sha256::digest(format!("rapport bluesky reply\u{1f}{answered}\u{1f}{key}").as_bytes());
    let mut bits = digest[..8]
        .iter()
        .fold(0u64, |bits, byte| bits << 8 | u64::from(*byte))
        >> 1;
    let mut rkey = [0u8; 13];
    for slot in rkey.iter_mut().rev() {
        *slot = BASE32_SORTABLE[(bits & 31) as usize];
        bits >>= 5;
    }
    rkey.iter().map(|&c| char::from(c)).collect()
}

/// The bsky.app link of the post `uri` by `author` (handle or DID).
fn permalink(author: &str, uri: &str) -> String {
    let rkey = uri.rsplit('/').next().unwrap_or_default();
    format!("https://bsky.app/profile/{author}/post/{rkey}")
}

/// The `at://` uri of a post view or notification, when it has one short enough to keep.
fn post_uri(entry: &Value) -> Option<&str> {
    entry
        .get("uri")?
        .as_str()
        .filter(|uri| uri.starts_with("at://") && uri.len() <= MAX_REF_BYTES)
}

fn time(value: Option<&Value>) -> Option<DateTime<Utc>> {
    value
        .and_then(Value::as_str)
        .and_then(|at| DateTime::parse_from_rfc3339(at).ok())
        .map(|at| at.with_timezone(&Utc))
}

/// The XRPC error body's `error` and `message` (empty when the body is not one).
fn xrpc_error(body: &[u8]) -> (String, String) {
    let value: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let text = |key: &str| {
        value
            .get(key)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .chars()
            .take(300)
            .collect::<String>()
    };
    (text("error"), text("message"))
}

fn refused(host: &str, nsid: &str, code: u16, error: &str) -> ConnectorError {
    ConnectorError::Unauthorized(format!(
        "{host} answered {nsid} with {code} {error}: check the source's credentials (identifier and app_password)"
    ))
}

/// When Bluesky asks us to come back: `ratelimit-remaining: 0` with `ratelimit-reset` in
/// epoch seconds (Bluesky's form; a small number is read as seconds from now, the IETF
/// draft's), else what the shared reader finds (`Retry-After`, …).
fn rate_limited_until(headers: &HeaderMap, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.trim().parse::<i64>().ok())
    };
    if header("ratelimit-remaining") == Some(0) {
        if let Some(reset) = header("ratelimit-reset") {
            let at = if reset > 1_000_000_000 {
                // Past the calendar's end: as far as we wait at all.
                Utc.timestamp_opt(reset, 0).single().unwrap_or(latest(now))
            } else {
                after(now, reset)
            };
            return Some(at.clamp(now, latest(now)));
        }
    }
    http::not_before(headers, now)
}

/// The latest "not before" a platform can set: a day from `now` (as [`http::not_before`]
/// caps it), so a hostile or broken reset header cannot park a source for good.
fn latest(now: DateTime<Utc>) -> DateTime<Utc> {
    now.checked_add_signed(chrono::TimeDelta::seconds(MAX_WAIT_SECS))
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}

/// `now` plus `secs` seconds the platform asked for, between `now` and [`latest`]: never
/// an overflow, whatever the number.
fn after(now: DateTime<Utc>, secs: i64) -> DateTime<Utc> {
    now.checked_add_signed(chrono::TimeDelta::seconds(secs.clamp(0, MAX_WAIT_SECS)))
        .unwrap_or(now)
}

#[async_trait::async_trait]
impl Connector for BlueskyConnector {
    fn channel(&self) -> Channel {
        Channel::Bluesky
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
        let mut state = BlueskyCursor::decode(cursor);
        let mut not_before = None;
        let me = self.session(&mut not_before).await?.did;
        let backfill = self.config.backfill_limit;
        let queries = self.config.queries();
        let mut search: BTreeMap<String, Stream> = BTreeMap::new();
        let mut taken: Vec<(Value, &'static str)> = Vec::new();
        let mut more = false;
        let mut stopped = false;
        let listens = std::iter::once(Listen::Notifications)
            .chain(queries.iter().map(|q| Listen::Search(q.as_str())));
        for listen in listens {
            let mut stream = match listen {
                Listen::Notifications => state.notifications.take(),
                Listen::Search(q) => state.search.remove(q),
            }
            .unwrap_or_else(|| Stream::first(backfill));
            let walked = if stopped {
                Ok(true)
            } else {
                stream.warning = crate::empty::shown(&mut stream.gave_up, "Bluesky", Utc::now());
                let mut entries = Vec::new();
                let walked = self
                    .walk(
                        listen,
                        &mut stream,
                        &mut entries,
                        taken.len(),
                        started,
                        &mut not_before,
                    )
                    .await;
                let kind = |entry: &Value| match listen {
                    Listen::Search(_) => "post",
                    Listen::Notifications => match entry.get("reason").and_then(Value::as_str) {
                        Some("reply") => "reply",
                        _ => "mention",
                    },
                };
                taken.extend(entries.into_iter().map(|entry| {
                    let kind = kind(&entry);
                    (entry, kind)
                }));
                walked
            };
            match listen {
                Listen::Notifications => state.notifications = Some(stream),
                Listen::Search(q) => {
                    search.insert(q.to_owned(), stream);
                }
            }
            match walked {
                Ok(goes_on) => more |= goes_on,
                // Keep what the earlier pages gave; come back when the platform says.
                Err(ConnectorError::RateLimited { retry_after_secs }) => {
                    crate::http::wait_out(&mut not_before, retry_after_secs);
                    more = true;
                }
                // A search the platform will not answer (a query it refuses, a cursor past
                // its window, an outage of its search) does not stop the notifications or
                // the other searches: the stream keeps where its last page left it and
                // says why in the stored cursor. Refused credentials fail the pull.
                Err(err) => match (listen, err) {
                    (
                        Listen::Search(query),
                        err @ (ConnectorError::Payload(_) | ConnectorError::Transport(_)),
                    ) => {
                        if let Some(stream) = search.get_mut(query) {
                            let failed = format!("the search for `{query}` failed: {err}");
                            crate::empty::warn(&mut stream.warning, failed);
                        }
                    }
                    (_, err) => return Err(err),
                },
            }
            stopped |= not_before.is_some_and(|at| at > Utc::now());
        }
        // Queries no longer configured are forgotten.
        state.search = search;

        let mut seen = HashSet::new();
        let mut items: Vec<(DateTime<Utc>, InboundItem)> = taken
            .iter()
            .filter_map(|(entry, kind)| {
                let item = self.item(entry, kind, &me)?;
                let indexed = time(entry.get("indexedAt")).unwrap_or(item.occurred_at);
                seen.insert(item.external_id.clone())
                    .then_some((indexed, item))
            })
            .collect();
        // Oldest first, by when the platform indexed them: a reply after its parent.
        items.sort_by_key(|(indexed, item)| (*indexed, item.occurred_at));
        Ok(Pull {
            items: items.into_iter().map(|(_, item)| item).collect(),
            next_cursor: Some(state.encode()),
            more,
            not_before,
        })
    }

    fn default_reply_limit(&self) -> Option<ReplyLimit> {
        Some(ReplyLimit::Graphemes(MAX_GRAPHEMES))
    }

    fn reply_length(&self, to: &ReplyTarget, text: &str, limit: ReplyLimit) -> usize {
        // As `reply` does, no mention of ourselves (known here by the configured identifier).
        let me = &self.config.identifier;
        let mention =
            mentioned(to).filter(|(handle, did)| did != me && !handle.eq_ignore_ascii_case(me));
        let (text, _) = post_text(mention.as_ref().map(|(handle, _)| handle.as_str()), text);
        limit.measure(&text)
    }

    /// Known before sending when the source names its account by DID.
    fn planned_external_id(&self, to: &ReplyTarget) -> Option<String> {
        let did = &self.config.identifier;
        did.starts_with("did:").then(|| {
            let rkey = rkey_for(&to.external_id, &to.idempotency_key);
            format!("at://{did}/{POST}/{rkey}")
        })
    }

    async fn reply(&self, to: &ReplyTarget, text: &str) -> Result<Sent, ConnectorError> {
        let mut not_before = None;
        let session = self.session(&mut not_before).await?;
        let answered = self.answered(to, &mut not_before).await?;
        let mention = mentioned(to).filter(|(_, did)| *did != session.did);
        let (text, range) = post_text(mention.as_ref().map(|(handle, _)| handle.as_str()), text);
        let rkey = rkey_for(&to.external_id, &to.idempotency_key);
        let record = reply_record(
            &text,
            range.zip(mention.as_ref().map(|(_, did)| did.as_str())),
            &answered,
            Utc::now(),
        );
        let body = json!({
            "repo": session.did,
            "collection": POST,
            "rkey": rkey,
            "record": record,
        });
        let uri = match self
            .call(CREATE_RECORD, Call::Post(Some(body)), &mut not_before)
            .await
        {
            Ok(created) => created
                .get("uri")
                .and_then(Value::as_str)
                .map(str::to_owned)
                .ok_or_else(|| self.shape(CREATE_RECORD, "no uri"))?,
            // Refused credentials and rate limits say nothing about the record. Any other
            // failure may hide a post that was made: an earlier attempt whose answer was
            // lost (the PDS then refuses the taken key, the reference PDS with a 500), or
            // this one's answer lost now (a 5xx or timeout after the write). The record
            // at our key, if it answers the same post, is the reply.
            Err(
                failure @ (Failure::Expired
                | Failure::Connector(
                    ConnectorError::Unauthorized(_) | ConnectorError::RateLimited { .. },
                )),
            ) => return Err(self.error(CREATE_RECORD, failure)),
            Err(failure) => {
                match self
                    .posted(&session, &rkey, &to.external_id, &mut not_before)
                    .await?
                {
                    Some(uri) => uri,
                    None => return Err(self.error(CREATE_RECORD, failure)),
                }
            }
        };
        Ok(Sent {
            url: Some(permalink(&session.handle, &uri)),
            external_id: uri,
            text,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::empty::EMPTY_PAGES;

    #[test]
    fn a_search_configured_twice_is_one_stream() {
        let config = BlueskyConfig::parse(&serde_json::json!({
            "service": "https://bsky.social", "identifier": "acme.example", "app_password": "p",
            "keywords": ["rapport", " Rapport ", "#crm"], "hashtags": ["crm", "#CRM", "sales"]
        }))
        .unwrap();
        assert_eq!(config.queries(), ["rapport", "#crm", "#sales"]);
    }

    fn to(context: Value, recipient: Option<&str>) -> ReplyTarget {
        ReplyTarget {
            external_id: "at://did:plc:maya/app.bsky.feed.post/3kmaya".into(),
            thread_key: None,
            recipient: recipient.map(str::to_owned),
            context,
            idempotency_key: "k".into(),
        }
    }

    fn connector(identifier: &str) -> BlueskyConnector {
        BlueskyConnector::new(
            reqwest::Client::new(),
            BlueskyConfig::parse(&json!({
                "service": "https://pds.example", "identifier": identifier, "app_password": "p"
            }))
            .unwrap(),
        )
    }

    #[test]
    fn a_mention_facet_counts_utf8_bytes() {
        // Prepended: the mention starts the text.
        let (text, range) = post_text(Some("maya.bsky.social"), " ça marche 👍 ");
        assert_eq!(text, "@maya.bsky.social ça marche 👍");
        assert_eq!(range, Some(0..17));
        // Already there after non-ASCII text: "¡" is two bytes, "é" two, so the mention
        // starts at byte 11 although it is the tenth character.
        let (text, range) = post_text(Some("maya.bsky.social"), "¡Merci, @maya.bsky.social. Olé");
        assert_eq!(text, "¡Merci, @maya.bsky.social. Olé");
        let range = range.unwrap();
        assert_eq!(range, 9..26);
        assert_eq!(&text[range.clone()], "@maya.bsky.social");
        assert_eq!(text[..range.start].chars().count(), 8);
        // A longer handle is not the mention: one is prepended.
        let (text, range) = post_text(Some("maya.bsky.social"), "ask @maya.bsky.socialite");
        assert_eq!(text, "@maya.bsky.social ask @maya.bsky.socialite");
        assert_eq!(range, Some(0..17));
        assert_eq!(post_text(None, "ok"), ("ok".to_owned(), None));

        let answered = Answered::of(
            &json!({ "cid": "bafyparent", "record": { "reply": {
                "root": { "uri": "at://did:plc:acme/app.bsky.feed.post/3kroot", "cid": "bafyroot" },
                "parent": { "uri": "at://x/y/z", "cid": "bafyz" } } } }),
            "at://did:plc:maya/app.bsky.feed.post/3kmaya",
        )
        .unwrap();
        let at = Utc.with_ymd_and_hms(2026, 12, 4, 10, 0, 0).unwrap();
        let (text, range) = post_text(Some("zoë.example"), "¿Ya?");
        let record = reply_record(&text, range.map(|r| (r, "did:plc:zoe")), &answered, at);
        assert_eq!(
            record,
            json!({
                "$type": "app.bsky.feed.post",
                "text": "@zoë.example ¿Ya?",
                "createdAt": "2026-12-04T10:00:00.000Z",
                "reply": {
                    "root": { "uri": "at://did:plc:acme/app.bsky.feed.post/3kroot", "cid": "bafyroot" },
                    "parent": { "uri": "at://did:plc:maya/app.bsky.feed.post/3kmaya", "cid": "bafyparent" }
                },
                "facets": [{
                    "index": { "byteStart": 0, "byteEnd": 13 },
                    "features": [{ "$type": "app.bsky.richtext.facet#mention", "did": "did:plc:zoe" }]
                }]
            })
        );
    }

    #[test]
    fn a_reply_is_measured_with_its_mention_in_graphemes() {
        let connector = connector("acme.example");
        let limit = ReplyLimit::Graphemes(MAX_GRAPHEMES);
        let context =
            json!({ "cid": "c", "author": { "did": "did:plc:maya", "handle": "maya.example" } });
        // "@maya.example " is 14, the family emoji one.
        assert_eq!(
            connector.reply_length(&to(context.clone(), None), "👨‍👩‍👧 ok", limit),
            14 + 4
        );
        // Without the author's DID there is no mention to make.
        assert_eq!(
            connector.reply_length(&to(json!({}), Some("@maya.example")), "ok", limit),
            2
        );
        assert_eq!(
            mentioned(&to(context, None)),
            Some(("maya.example".into(), "did:plc:maya".into()))
        );
        // Answering our own post: no mention is made, so none is counted, whether the
        // source names us by handle or by DID.
        let ours =
            json!({ "cid": "c", "author": { "did": "did:plc:acme", "handle": "Acme.example" } });
        for identifier in ["acme.example", "did:plc:acme"] {
            assert_eq!(
                self::connector(identifier).reply_length(&to(ours.clone(), None), "ok", limit),
                2,
                "{identifier}"
            );
        }
    }

    #[test]
    fn a_record_key_is_a_tid_derived_from_the_answered_post_and_the_idempotency_key() {
        let maya = "at://did:plc:maya/app.bsky.feed.post/3kmaya";
        let rkey = rkey_for(maya, "reply-1");
        assert_eq!(rkey, rkey_for(maya, "reply-1"));
        assert_ne!(rkey, rkey_for(maya, "reply-2"));
        // The same key answering another post (another workspace's, say): another record.
        assert_ne!(
            rkey,
            rkey_for("at://did:plc:lucia/app.bsky.feed.post/3klucia", "reply-1")
        );
        assert_eq!(rkey.len(), 13);
        assert!(rkey.bytes().all(|c| BASE32_SORTABLE.contains(&c)), "{rkey}");
        // The TID syntax: the top bit clear, so the first character is one of eight.
        for key in ["a", "b", "c", "reply-1", "reply-2", "🦋"] {
            assert!("234567ab".contains(&rkey_for(maya, key)[..1]), "{key}");
        }
        // Pinned (checked against a separate computation): a change of derivation would
        // post retried replies twice.
        assert_eq!(rkey, "7nvmhggl4kkcq");
        // With the account named by DID, the reply's uri is known before it is sent.
        let target = to(json!({}), None);
        assert_eq!(
            connector("did:plc:acme").planned_external_id(&target),
            Some(format!(
                "at://did:plc:acme/app.bsky.feed.post/{}",
                rkey_for("at://did:plc:maya/app.bsky.feed.post/3kmaya", "k")
            ))
        );
        assert_eq!(connector("acme.example").planned_external_id(&target), None);
    }

    fn entry(n: u64) -> Value {
        let at = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap()
            + chrono::Duration::minutes(n as i64);
        json!({
            "uri": format!("at://did:plc:fan/app.bsky.feed.post/{n}"),
            "indexedAt": at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            "reason": "mention",
        })
    }

    fn uris(taken: &[Value]) -> Vec<String> {
        taken
            .iter()
            .map(|entry| {
                entry["uri"]
                    .as_str()
                    .unwrap()
                    .rsplit('/')
                    .next()
                    .unwrap()
                    .to_owned()
            })
            .collect()
    }

    #[test]
    fn a_walk_backfills_to_its_limit_then_follows_from_its_mark() {
        let all = |_: &Value| true;
        // A first sync allowed 3: the newest 3 of two pages, then its mark is the newest.
        let mut stream = Stream::first(3);
        let mut taken = Vec::new();
        let walk = stream.walk.clone().unwrap();
        assert!(stream.step(
            walk,
            vec![entry(9), entry(8)],
            Some("c1".into()),
            all,
            &mut taken
        ));
        let walk = stream.walk.clone().unwrap();
        assert_eq!(walk.cursor.as_deref(), Some("c1"));
        assert_eq!(walk.left, Some(1));
        assert!(!stream.step(
            walk,
            vec![entry(7), entry(6)],
            Some("c2".into()),
            all,
            &mut taken
        ));
        assert_eq!(uris(&taken), ["9", "8", "7"]);
        assert_eq!(stream.walk, None);
        assert_eq!(stream.mark, Mark::of(&entry(9)));

        // The cursor survives a round trip through its stored form.
        let cursor = BlueskyCursor {
            notifications: Some(stream.clone()),
            search: BTreeMap::from([("#rapport".to_owned(), Stream::first(5))]),
        };
        let stored = cursor.encode();
        assert_eq!(BlueskyCursor::decode(Some(&stored)), cursor);
        let json: Value = serde_json::from_str(&stored.0).unwrap();
        assert_eq!(
            json["notifications"]["mark"]["uri"],
            "at://did:plc:fan/app.bsky.feed.post/9"
        );
        assert_eq!(json["search"]["#rapport"]["walk"]["left"], 5);
        // Unreadable: a first sync.
        assert_eq!(
            BlueskyCursor::decode(Some(&Cursor("v0:123".into()))),
            BlueskyCursor::default()
        );

        // Later: the new entries down to the mark, whatever the pages.
        let mut taken = Vec::new();
        let walk = stream.walk.clone().unwrap_or_default();
        assert!(stream.step(
            walk,
            vec![entry(12), entry(11)],
            Some("d1".into()),
            all,
            &mut taken
        ));
        let walk = stream.walk.clone().unwrap();
        assert!(!stream.step(
            walk,
            vec![entry(10), entry(9), entry(8)],
            Some("d2".into()),
            all,
            &mut taken
        ));
        assert_eq!(uris(&taken), ["12", "11", "10"]);
        assert_eq!(stream.mark, Mark::of(&entry(12)));

        // Backfill 0: one look sets the mark, nothing is taken.
        let mut stream = Stream::first(0);
        let mut taken = Vec::new();
        let walk = stream.walk.clone().unwrap();
        assert!(!stream.step(walk, vec![entry(5)], Some("e".into()), all, &mut taken));
        assert!(taken.is_empty());
        assert_eq!(stream.mark, Mark::of(&entry(5)));
    }

    #[test]
    fn bluesky_rate_limit_resets_are_epoch_seconds() {
        use reqwest::header::HeaderValue;
        let now = Utc.with_ymd_and_hms(2026, 12, 4, 10, 0, 0).unwrap();
        let mut headers = HeaderMap::new();
        headers.insert("ratelimit-limit", HeaderValue::from_static("3000"));
        headers.insert("ratelimit-remaining", HeaderValue::from_static("0"));
        let reset = (now.timestamp() + 120).to_string();
        headers.insert("ratelimit-reset", HeaderValue::from_str(&reset).unwrap());
        headers.insert("ratelimit-policy", HeaderValue::from_static("3000;w=300"));
        assert_eq!(
            rate_limited_until(&headers, now),
            Some(now + chrono::Duration::seconds(120))
        );
        // A reset past a day (far in the future, past the calendar's end) is a day; one in
        // the past is now. None of them panics.
        let day = now + chrono::Duration::days(1);
        for (reset, until) in [
            ("8210266876799", day),
            ("9223372036854775807", day),
            ("-5", now),
            ("1000000001", now),
            ("90000", day),
        ] {
            headers.insert("ratelimit-reset", HeaderValue::from_static(reset));
            assert_eq!(rate_limited_until(&headers, now), Some(until), "{reset}");
        }
        assert_eq!(after(now, i64::MAX), day);
        assert_eq!(after(now, i64::MIN), now);
        assert_eq!(
            after(DateTime::<Utc>::MAX_UTC, 60),
            DateTime::<Utc>::MAX_UTC
        );
        headers.insert("ratelimit-remaining", HeaderValue::from_static("2999"));
        assert_eq!(rate_limited_until(&headers, now), None);
    }

    fn session(n: usize) -> Session {
        Session {
            access: format!("access-{n}"),
            refresh: format!("refresh-{n}"),
            did: "did:plc:acme".into(),
            handle: "acme.example".into(),
        }
    }

    #[test]
    fn kept_sessions_are_per_password_bounded_and_small() {
        let account = |password: &str| {
            (
                "https://pds.example".to_owned(),
                "acme.example".to_owned(),
                Sha256::digest(password.as_bytes()).into(),
            )
        };
        let mut sessions = Sessions::new(3);
        // Two app passwords of one account: two sessions, neither replaces the other.
        sessions.keep(account("one"), session(1));
        sessions.keep(account("two"), session(2));
        assert_eq!(sessions.get(&account("one")).unwrap().access, "access-1");
        assert_eq!(sessions.get(&account("two")).unwrap().access, "access-2");
        assert!(sessions.get(&account("wrong")).is_none());
        // Renewed in place; past the capacity the one kept longest ago goes.
        sessions.keep(account("one"), session(3));
        sessions.keep(account("three"), session(4));
        sessions.keep(account("four"), session(5));
        assert_eq!(sessions.kept.len(), 3);
        assert!(sessions.get(&account("two")).is_none());
        assert_eq!(sessions.get(&account("one")).unwrap().access, "access-3");
        sessions.forget(&account("one"));
        assert!(sessions.get(&account("one")).is_none());

        // A session with a token past 16 KiB is refused, not kept.
        let answer = |access: String| json!({ "accessJwt": access, "refreshJwt": "r", "did": "did:plc:acme", "handle": "acme.example" });
        assert!(Session::read(&answer("a".repeat(MAX_TOKEN_BYTES))).is_ok());
        assert_eq!(
            Session::read(&answer("a".repeat(MAX_TOKEN_BYTES + 1))).err(),
            Some("a session token longer than 16 KiB")
        );
        assert!(Session::read(&json!({ "accessJwt": "a" })).is_err());
    }

    #[test]
    fn a_post_happened_no_later_than_it_was_indexed() {
        let connector = connector("acme.example");
        let post = |created: &str| {
            json!({ "uri": "at://did:plc:maya/app.bsky.feed.post/3k", "indexedAt": "2026-12-04T10:00:00.000Z",
                "author": { "did": "did:plc:maya", "handle": "maya.example" },
                "record": { "text": "hi", "createdAt": created } })
        };
        let at = |post: Value| {
            connector
                .item(&post, "mention", "did:plc:acme")
                .unwrap()
                .occurred_at
        };
        let indexed = Utc.with_ymd_and_hms(2026, 12, 4, 10, 0, 0).unwrap();
        // Claimed for next year: when it was indexed. Backdated: as claimed.
        assert_eq!(at(post("2027-12-04T10:00:00.000Z")), indexed);
        let earlier = Utc.with_ymd_and_hms(2020, 1, 1, 0, 0, 0).unwrap();
        assert_eq!(at(post("2020-01-01T00:00:00.000Z")), earlier);
        assert_eq!(at(post("not a time")), indexed);
    }

    #[test]
    fn a_walk_that_goes_nowhere_ends() {
        let all = |_: &Value| true;
        // The same cursor back as was sent: the walk ends, its newest entry the mark.
        let mut stream = Stream::first(1_000);
        let mut taken = Vec::new();
        let walk = stream.walk.clone().unwrap();
        assert!(stream.step(walk, vec![entry(9)], Some("c".into()), all, &mut taken));
        let walk = stream.walk.clone().unwrap();
        assert!(!stream.step(walk, vec![entry(8)], Some("c".into()), all, &mut taken));
        assert_eq!(stream.walk, None);
        assert_eq!(stream.mark, Mark::of(&entry(9)));
        assert_eq!(uris(&taken), ["9", "8"]);

        // A page of which nothing can be read (no indexedAt, no at:// uri, a uri past
        // 1 KiB), or nothing at all, with a cursor: gone past, ten in a row; the eleventh
        // ends the walk, its newest entry the mark, and the stream says so.
        let long = format!("at://did:plc:fan/app.bsky.feed.post/{}", "x".repeat(1_024));
        let junk = [
            json!({ "uri": "at://did:plc:fan/app.bsky.feed.post/1" }),
            json!({ "uri": "https://example.com", "indexedAt": "2026-01-01T00:00:00Z" }),
            json!({ "uri": long, "indexedAt": "2026-01-01T00:00:00Z" }),
            json!("a string"),
        ];
        let mut stream = Stream::first(1_000);
        let mut taken = Vec::new();
        let walk = stream.walk.clone().unwrap();
        assert!(stream.step(walk, vec![entry(9)], Some("n0".into()), all, &mut taken));
        for page in 1..=EMPTY_PAGES + 1 {
            let walk = stream.walk.clone().unwrap();
            let things = match junk.get(usize::from(page) - 1) {
                Some(junk) => vec![junk.clone()],
                None => Vec::new(),
            };
            let goes_on = stream.step(walk, things, Some(format!("n{page}")), all, &mut taken);
            assert_eq!(goes_on, page <= EMPTY_PAGES, "{page}");
            if goes_on {
                assert_eq!(stream.walk.as_ref().unwrap().empty, page);
            }
        }
        assert_eq!(uris(&taken), ["9"]);
        assert_eq!(stream.walk, None);
        assert_eq!(stream.mark, Mark::of(&entry(9)));
        assert!(stream.gave_up.is_some());
        let warning = stream.warning.as_deref().unwrap();
        assert!(
            warning.contains("Bluesky answered 11 pages in a row"),
            "{warning}"
        );
        // With nothing more to take (a backfill of 0), an empty page does not end the walk
        // before it has seen an entry to set the mark by.
        let mut stream = Stream::first(0);
        let walk = stream.walk.clone().unwrap();
        assert!(stream.step(walk, Vec::new(), Some("e".into()), all, &mut taken));
        let walk = stream.walk.clone().unwrap();
        assert!(!stream.step(walk, vec![entry(5)], Some("f".into()), all, &mut taken));
        assert_eq!(stream.mark, Mark::of(&entry(5)));
        assert_eq!(uris(&taken), ["9"]);

        // A cursor past 1 KiB is not kept: the walk ends there, and the stream says so.
        let mut stream = Stream::first(1_000);
        let walk = stream.walk.clone().unwrap();
        let mut taken = Vec::new();
        let huge = "c".repeat(MAX_REF_BYTES + 1);
        assert!(!stream.step(walk, vec![entry(3)], Some(huge), all, &mut taken));
        assert_eq!(uris(&taken), ["3"]);
        assert_eq!(stream.walk, None);
        assert!(stream.warning.as_deref().unwrap().contains("1024 bytes"));
        assert!(!BlueskyCursor {
            notifications: Some(stream),
            search: BTreeMap::new(),
        }
        .encode()
        .0
        .contains("ccccc"));
    }

    #[test]
    fn the_config_is_checked_and_never_shows_the_password() {
        let config = BlueskyConfig::parse(&json!({
            "service": "https://bsky.social/", "identifier": "@acme.example",
            "app_password": "abcd-efgh-ijkl-mnop", "hashtags": ["#rapport"], "keywords": ["rapport crm"]
        }))
        .unwrap();
        assert_eq!(config.service, "https://bsky.social");
        assert_eq!(config.identifier, "acme.example");
        assert_eq!(config.backfill_limit, DEFAULT_BACKFILL_LIMIT);
        assert_eq!(config.queries(), ["rapport crm", "#rapport"]);
        assert!(!format!("{config:?}").contains("abcd"));
        let field = |config: Value| BlueskyConfig::parse(&config).unwrap_err().0;
        let base = json!({ "service": "https://bsky.social", "identifier": "a.example", "app_password": "p" });
        let with = |key: &str, value: Value| {
            let mut config = base.clone();
            config[key] = value;
            config
        };
        assert_eq!(field(with("service", json!("ftp://x"))), "service");
        assert_eq!(field(with("app_password", json!(" "))), "app_password");
        assert_eq!(field(with("hashtags", json!(["two words"]))), "hashtags");
        assert_eq!(field(with("backfill_limit", json!(-1))), "backfill_limit");
        assert_eq!(
            field(with("backfill_limit", json!(100_001))),
            "backfill_limit"
        );
        // Each keyword or hashtag is a search on every sync: 20 together, 100 characters each.
        let many = |n: usize| json!((0..n).map(|i| format!("w{i}")).collect::<Vec<_>>());
        assert!(BlueskyConfig::parse(&with("keywords", many(20))).is_ok());
        assert_eq!(field(with("keywords", many(21))), "keywords");
        let mut both = with("keywords", many(15));
        both["hashtags"] = many(6);
        assert_eq!(field(both), "hashtags");
        assert!(BlueskyConfig::parse(&with("keywords", json!(["k".repeat(100)]))).is_ok());
        assert_eq!(
            field(with("keywords", json!(["k".repeat(101)]))),
            "keywords"
        );
        assert_eq!(
            field(with("hashtags", json!(["h".repeat(101)]))),
            "hashtags"
        );
        assert_eq!(field(with("handle", json!("x"))), "handle");
    }
}
