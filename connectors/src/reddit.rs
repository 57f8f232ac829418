//! The Reddit channel (pull + reply), over Reddit's OAuth API
//! (<https://www.reddit.com/dev/api>, <https://github.com/reddit-archive/reddit/wiki/OAuth2>).
//!
//! Plain calls through the guarded client: the connector uses one token request, five
//! listings and two writes, each a small JSON or form body; the Rust Reddit crates wrap far
//! more of the API than that, and none lets every request go through the outbound guard.
//!
//! - Token: a "script" app's password grant, `POST {auth_url}/api/v1/access_token` with
//!   HTTP basic auth `client_id:client_secret` and the form `grant_type=password`,
//!   `username`, `password`. The bearer token (a day, `expires_in`) is kept per account in
//!   the process ([`TOKENS`]) as well as in the connector, because a connector lives for one
//!   sync or one reply and the token endpoint has a budget of its own. A token is fetched
//!   again a minute before it expires, and once when a call answers 401 (revoked, or
//!   Reddit forgot it); a second 401 is refused credentials. Every request carries a
//!   descriptive `User-Agent` (`server:rapport:<version> (by /u/<username>)`), which Reddit
//!   requires (a generic one is throttled or refused).
//! - Listening: `/message/mentions` (username mentions), `/message/inbox` (comment and post
//!   replies, private messages; `mark=false`, so reading leaves them unread), for each
//!   subreddit `/r/{sub}/new` (posts) and `/r/{sub}/comments` (comments), and
//!   `/search?q=…&sort=new&type=link` for each keyword (all of Reddit). `limit` 100,
//!   `raw_json=1` (bodies without HTML escaping), each listing paged back with `after`
//!   (the fullname of the page's oldest thing), newest first.
//! - Cursor: as Bluesky's ([`crate::bluesky`]), a per-stream *mark* (the newest thing
//!   already handed over: its `created_utc` and fullname) and, while one is under way, a
//!   *walk* back from the newest (the `after` of the next older page, the newest thing seen
//!   since the walk began, and on a first sync how many things it may still take). A first
//!   sync walks back until `backfill_limit` things (0: it only sets the mark), the end of
//!   the listing (Reddit serves about a thousand per listing) or the pull's budget; a later
//!   one walks from the newest down to the mark. A page with nothing to read but an
//!   `after` does not end a walk (Reddit leaves out what the account may not see and still
//!   pages on); more than ten of them in a row do, and the stream's `warning`
//!   says so, with the date, for a week ([`crate::empty`]). Every batch's cursor is where
//!   the walk resumes, so a crash mid-walk resumes there. The stored cursor is JSON:
//!   `{"streams": {"mentions": {"mark": {"at", "name"}, "walk": {"after", "top", "left",
//!   "empty"}, "warning", "gave_up"}, "inbox": {…}, "r/{sub}/new": {…}, "r/{sub}/comments":
//!   {…}, "search/{keyword}": {…}}}`.
//! - A pull gathers pages until about [`PULL_ITEMS`] things or [`PULL_TIME`], and hands
//!   them over oldest first, so a comment comes after its parent when both are new.
//! - Items: the fullname (`t1_…` comment, `t3_…` post, `t4_…` message) is the external id,
//!   the author's account fullname (`t2_…`, `author_fullname`) the identity (a name is
//!   `u/{author}`, the profile `https://www.reddit.com/user/{author}`), `parent_id` what a
//!   comment or message answers (a comment joins its parent's conversation; a post starts
//!   its own). A thing without an author to make a customer of is skipped: `[deleted]` or
//!   `[removed]` authors (the account or the thing is gone) and things without
//!   `author_fullname` (messages from a subreddit or from Reddit itself). The source's own
//!   account (`username`) writes outbound items.
//! - Replies: `POST {base_url}/api/comment` with `thing_id` (the answered fullname),
//!   `text` (Markdown) and `api_type=json`, at most [`MAX_REPLY_CHARS`] characters, checked
//!   before sending. Errors come back in `json.errors` (`[code, message, field]`):
//!   `RATELIMIT` is a rate limit (its wait from `json.ratelimit` or the message), the
//!   others say why Reddit refused. Reddit has no idempotency key: when the answer to a
//!   comment is lost (a timeout or a 5xx), the connector reads the account's newest
//!   comments (`/user/{username}/comments`, or `/message/sent` for a message) for one
//!   answering the same thing with the same text, and takes it for the reply. When that
//!   read fails too, the reply is FAILED although it may be on Reddit, and a retry posts it
//!   a second time: check the thread before retrying such a reply.
//! - `X-Ratelimit-Remaining` below 1 with `X-Ratelimit-Reset` (seconds until the window
//!   ends, as Reddit sends it) and 429 become "not before" times for the scheduler, at most
//!   a day ahead; a pull stops asking at the first and keeps what it has.
//! - A subreddit or keyword stream Reddit does not answer (a private, banned or missing
//!   subreddit: 403 or 404, an outage of its search) does not fail the pull: the other
//!   streams go on, and the stream's `warning` in the stored cursor says what failed. A
//!   failure of the mentions or the inbox fails the pull.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{LazyLock, Mutex};

use chrono::{DateTime, TimeZone, Utc};
use reqwest::header::HeaderMap;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::http::{self, MAX_BODY_BYTES};
pub use crate::mastodon::{PULL_ITEMS, PULL_TIME};
use crate::{
    Author, Capabilities, Channel, Connector, ConnectorError, Cursor, InboundItem, Pull,
    ReplyLimit, ReplyTarget, Sent,
};

/// Things asked for per request (the listings' maximum).
pub const PAGE: usize = 100;

/// Things per stream a first sync takes when the source does not say.
pub const DEFAULT_BACKFILL_LIMIT: u64 = 1_000;

/// The most a source may ask a first sync to take per stream.
pub const MAX_BACKFILL_LIMIT: u64 = 100_000;

/// The characters a comment may have.
pub const MAX_REPLY_CHARS: usize = 10_000;

/// The subreddits a source may listen to (two listings each on every sync).
pub const MAX_SUBREDDITS: usize = 10;

/// The keywords a source may listen to (one search each on every sync).
pub const MAX_KEYWORDS: usize = 10;

/// The characters a keyword may have (Reddit's search takes at most 512).
pub const MAX_QUERY_CHARS: usize = 100;

/// The bytes a fullname or an `after` may have to be kept in the stored cursor (real ones
/// are about ten).
pub const MAX_REF_BYTES: usize = 64;

/// The bytes an access token may have (real ones are a few hundred).
pub const MAX_TOKEN_BYTES: usize = 16 * 1024;

/// The accounts whose tokens this process keeps; past it the one expiring first goes.
pub const MAX_TOKENS: usize = 1_024;

/// The default API and token endpoints.
pub const API: &str = "https://oauth.reddit.com";
pub const AUTH: &str = "https://www.reddit.com";

/// Where the things' links point.
const WEB: &str = "https://www.reddit.com";

/// The longest a platform may ask us to wait (a reset further ahead is taken as this).
const MAX_WAIT_SECS: i64 = 86_400;

/// A token is fetched again this long before Reddit says it expires.
const EXPIRY_MARGIN_SECS: i64 = 60;

/// How many of the account's newest comments or sent messages are read back to find a
/// reply whose answer was lost.
const READ_BACK: usize = 25;

/// How long before an attempt a comment read back may have been created and still be
/// taken for that attempt's (clocks apart, a retry of a send whose answer was lost).
const READ_BACK_WINDOW: chrono::Duration = chrono::Duration::minutes(15);

fn default_backfill_limit() -> u64 {
    DEFAULT_BACKFILL_LIMIT
}

fn default_base_url() -> String {
    API.to_owned()
}

fn default_auth_url() -> String {
    AUTH.to_owned()
}

/// A source's settings. `client_secret` and `password` are secrets: stored apart, never
/// returned, bound to the endpoints and names they are sent with.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedditConfig {
    /// The API (`https://oauth.reddit.com`).
    #[serde(default = "default_base_url")]
    pub base_url: String,
    /// Where tokens are asked for (`https://www.reddit.com`).
    #[serde(default = "default_auth_url")]
    pub auth_url: String,
    /// The "script" app's id (under its name at <https://www.reddit.com/prefs/apps>).
    pub client_id: String,
    pub client_secret: String,
    /// The account the app acts as (one of the app's developers).
    pub username: String,
    pub password: String,
    #[serde(default)]
    pub subreddits: Vec<String>,
    #[serde(default)]
    pub keywords: Vec<String>,
    /// Things per stream a first sync takes (0: only what comes after it).
    #[serde(default = "default_backfill_limit")]
    pub backfill_limit: u64,
}

impl std::fmt::Debug for RedditConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedditConfig")
            .field("base_url", &self.base_url)
            .field("auth_url", &self.auth_url)
            .field("client_id", &self.client_id)
            .field("client_secret", &"***")
            .field("username", &self.username)
            .field("password", &"***")
            .field("subreddits", &self.subreddits)
            .field("keywords", &self.keywords)
            .field("backfill_limit", &self.backfill_limit)
            .finish()
    }
}

impl RedditConfig {
    /// Reads and checks a source's settings (secrets merged in); the error names the field.
    pub fn parse(config: &Value) -> Result<RedditConfig, (String, String)> {
        let mut config: RedditConfig = crate::read_config(config, "client_id")?;
        for (field, url) in [
            ("base_url", &mut config.base_url),
            ("auth_url", &mut config.auth_url),
        ] {
            crate::check_http_url(field, url)?;
            *url = url.trim().trim_end_matches('/').to_owned();
        }
        config.client_id = config.client_id.trim().to_owned();
        if config.client_id.is_empty() || config.client_id.contains(char::is_whitespace) {
            return Err((
                "client_id".into(),
                "client_id must be the app's id (under its name at reddit.com/prefs/apps)".into(),
            ));
        }
        for (field, secret) in [
            ("client_secret", &config.client_secret),
            ("password", &config.password),
        ] {
            if secret.trim().is_empty() {
                return Err((field.into(), format!("{field} must not be empty")));
            }
        }
        config.username = bare(&config.username, "u/").to_owned();
        if !is_name(&config.username, 3, 20, true) {
            return Err((
                "username".into(),
                "username must be a Reddit account name (3 to 20 letters, digits, - or _)".into(),
            ));
        }
        for sub in &mut config.subreddits {
            *sub = bare(sub, "r/").to_owned();
            if !is_name(sub, 2, 21, false) {
                return Err((
                    "subreddits".into(),
                    format!("`{sub}` is not a subreddit name (2 to 21 letters, digits or _)"),
                ));
            }
        }
        let mut seen = HashSet::new();
        config
            .subreddits
            .retain(|sub| seen.insert(sub.to_ascii_lowercase()));
        if config.subreddits.len() > MAX_SUBREDDITS {
            return Err((
                "subreddits".into(),
                format!("at most {MAX_SUBREDDITS} subreddits (each is two listings on every sync)"),
            ));
        }
        for keyword in &mut config.keywords {
            *keyword = keyword.trim().to_owned();
            if keyword.is_empty() {
                return Err(("keywords".into(), "keywords must not be empty".into()));
            }
            if keyword.chars().count() > MAX_QUERY_CHARS {
                let start: String = keyword.chars().take(20).collect();
                return Err((
                    "keywords".into(),
                    format!("`{start}…` is longer than {MAX_QUERY_CHARS} characters"),
                ));
            }
        }
        crate::drop_repeats(&mut config.keywords);
        if config.keywords.len() > MAX_KEYWORDS {
            return Err((
                "keywords".into(),
                format!("at most {MAX_KEYWORDS} keywords (each is a search on every sync)"),
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

    /// The `User-Agent` Reddit asks for: platform, app, version and the account behind it.
    fn user_agent(&self) -> String {
        format!(
            "server:rapport:{} (by /u/{})",
            env!("CARGO_PKG_VERSION"),
            self.username
        )
    }
}

/// `name` without spaces and a leading `/` + `prefix` (`u/`, `r/`).
fn bare<'a>(name: &'a str, prefix: &str) -> &'a str {
    let name = name.trim().trim_start_matches('/');
    name.strip_prefix(prefix).unwrap_or(name)
}

/// Whether `name` is a Reddit name of `min..=max` ASCII letters, digits and `_` (and `-`
/// for account names).
fn is_name(name: &str, min: usize, max: usize, dash: bool) -> bool {
    (min..=max).contains(&name.len())
        && name
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'_' || (dash && c == b'-'))
}

/// A bearer token and when it stops working.
#[derive(Clone)]
struct Token {
    access: String,
    expires: DateTime<Utc>,
}

/// An account as it logs in: the token endpoint, the app, the user and a digest of both
/// secrets (a changed secret fetches a new token).
type Account = (String, String, String, [u8; 32]);

/// Tokens kept in this process (see the module doc), at most [`MAX_TOKENS`].
static TOKENS: LazyLock<Mutex<HashMap<Account, Token>>> = LazyLock::new(Default::default);

/// The newest thing of a stream already handed over: later walks stop at it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
struct Mark {
    /// The thing's `created_utc`.
    at: DateTime<Utc>,
    /// Its fullname.
    name: String,
}

impl Mark {
    /// The mark of a listing's child; `None` without a `created_utc` or a fullname (such a
    /// thing is skipped).
    fn of(thing: &Value) -> Option<Mark> {
        let data = thing.get("data")?;
        Some(Mark {
            at: created(data)?,
            name: fullname(data)?.to_owned(),
        })
    }

    /// Whether `self` (a thing) is at or before `mark`, so already handed over.
    fn reached(&self, mark: &Mark) -> bool {
        self.at < mark.at || self.name == mark.name
    }
}

/// A walk back through a listing, under way.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
struct Walk {
    /// The `after` of the next older page (`None`: start at the newest).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    after: Option<String>,
    /// The newest thing seen since the walk began: the stream's mark when it ends.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    top: Option<Mark>,
    /// On a first sync, how many things the walk may still take (`None`: down to the mark).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    left: Option<u64>,
    /// How many pages in a row had nothing to read, each with an `after` to go on with.
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
    /// What went wrong with this stream in the last pull that read it; `source.cursor`
    /// shows it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    warning: Option<String>,
    /// When a walk of this stream last gave up past ten pages with nothing to
    /// read: the `warning` says so for a week.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    gave_up: Option<DateTime<Utc>>,
}

impl Stream {
    /// A stream never synced: a walk back of up to `backfill` things.
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

    /// Takes one page of the walk (`things` as served, `after` its next page) into
    /// `taken`: those newer than the mark, within the walk's allowance. Ends the walk (its
    /// newest thing becomes the mark) when it reached the mark, the allowance or the
    /// listing's end, or goes nowhere (the `after` sent comes back, more than
    /// ten pages in a row with nothing to read, an `after` past
    /// [`MAX_REF_BYTES`]; the last two noted in `warning`). A page with nothing to read and
    /// a new `after` does not end it: Reddit leaves out of a page what the account may not
    /// see (removed, spam, hidden) and hands out the `after` of the last thing it looked
    /// at, so older pages may still hold things. Returns whether the walk goes on.
    fn step(
        &mut self,
        mut walk: Walk,
        things: Vec<Value>,
        after: Option<String>,
        taken: &mut Vec<Value>,
    ) -> bool {
        let mut reached = false;
        let mut readable = false;
        for thing in things {
            let Some(mark) = Mark::of(&thing) else {
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
            taken.push(thing);
            if let Some(left) = &mut walk.left {
                *left -= 1;
            }
        }
        let stuck = after.is_some() && after == walk.after;
        let gave_up = crate::empty::gives_up(&mut walk.empty, !readable, after.is_some());
        if gave_up {
            self.warning = crate::empty::gave_up_now(&mut self.gave_up, "Reddit");
        }
        walk.after = match after {
            Some(after) if after.len() > MAX_REF_BYTES => {
                crate::empty::warn(
                    &mut self.warning,
                    format!(
                        "Reddit's `after` is longer than {MAX_REF_BYTES} bytes: the walk \
                         ended there"
                    ),
                );
                None
            }
            after => after,
        };
        let spent = walk.left == Some(0) && walk.top.is_some();
        if reached || stuck || gave_up || walk.after.is_none() || spent {
            self.mark = self.mark.take().max(walk.top);
            self.walk = None;
            false
        } else {
            self.walk = Some(walk);
            true
        }
    }
}

/// Where a Reddit source stands: one [`Stream`] per listing, by [`Listen::key`].
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
struct RedditCursor {
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    streams: BTreeMap<String, Stream>,
}

impl RedditCursor {
    /// Reads a stored cursor; one this version cannot read starts over (a first sync).
    fn decode(cursor: Option<&Cursor>) -> RedditCursor {
        cursor
            .and_then(|cursor| serde_json::from_str(&cursor.0).ok())
            .unwrap_or_default()
    }

    fn encode(&self) -> Cursor {
        Cursor(serde_json::to_string(self).expect("a cursor serialises"))
    }
}

/// One listing the connector reads.
#[derive(Clone, Copy, Debug)]
enum Listen<'a> {
    Mentions,
    Inbox,
    New(&'a str),
    Comments(&'a str),
    Search(&'a str),
}

impl Listen<'_> {
    /// The stream's name in the stored cursor.
    fn key(self) -> String {
        match self {
            Listen::Mentions => "mentions".to_owned(),
            Listen::Inbox => "inbox".to_owned(),
            Listen::New(sub) => format!("r/{}/new", sub.to_ascii_lowercase()),
            Listen::Comments(sub) => format!("r/{}/comments", sub.to_ascii_lowercase()),
            Listen::Search(q) => format!("search/{q}"),
        }
    }

    fn path(self) -> String {
        match self {
            Listen::Mentions => "/message/mentions".to_owned(),
            Listen::Inbox => "/message/inbox".to_owned(),
            Listen::New(sub) => format!("/r/{sub}/new"),
            Listen::Comments(sub) => format!("/r/{sub}/comments"),
            Listen::Search(_) => "/search".to_owned(),
        }
    }

    /// Whether a failure of this stream fails the pull (the account's own listings), or
    /// only warns (a subreddit or a search).
    fn essential(self) -> bool {
        matches!(self, Listen::Mentions | Listen::Inbox)
    }

    /// The interaction kind of `thing` read from this stream.
    fn kind(self, thing: &Value) -> &'static str {
        let data = thing.get("data").unwrap_or(&Value::Null);
        match (self, thing.get("kind").and_then(Value::as_str)) {
            (Listen::Mentions, _) => "mention",
            (Listen::Inbox, Some("t4")) => "message",
            (Listen::Inbox, _) => match data.get("type").and_then(Value::as_str) {
                Some("username_mention") => "mention",
                _ => "reply",
            },
            (Listen::Comments(_), _) => "comment",
            (Listen::New(_) | Listen::Search(_), _) => "post",
        }
    }
}

/// A request to the API.
enum Call {
    Get(String, Vec<(&'static str, String)>),
    Post(String, Vec<(&'static str, String)>),
}

impl Call {
    fn path(&self) -> &str {
        match self {
            Call::Get(path, _) | Call::Post(path, _) => path,
        }
    }
}

/// Why a call failed.
enum Failure {
    /// 401: the token is no longer good.
    Expired,
    Connector(ConnectorError),
}

impl From<ConnectorError> for Failure {
    fn from(err: ConnectorError) -> Failure {
        Failure::Connector(err)
    }
}

pub struct RedditConnector {
    client: reqwest::Client,
    config: RedditConfig,
    /// The token this connector uses; filled from [`TOKENS`] or by asking for one.
    token: Mutex<Option<Token>>,
}

impl RedditConnector {
    pub fn new(client: reqwest::Client, config: RedditConfig) -> RedditConnector {
        RedditConnector {
            client,
            config,
            token: Mutex::new(None),
        }
    }

    fn host(&self) -> String {
        host_of(&self.config.base_url)
    }

    fn account(&self) -> Account {
        let secrets = format!(
            "{}\u{1f}{}",
            self.config.client_secret, self.config.password
        );
        (
            self.config.auth_url.clone(),
            self.config.client_id.clone(),
            self.config.username.to_ascii_lowercase(),
            Sha256::digest(secrets.as_bytes()).into(),
        )
    }

    /// The token in hand (the connector's, else the process's for the account) while it
    /// has more than a minute left.
    fn kept(&self, now: DateTime<Utc>) -> Option<Token> {
        let fresh = |token: &Token| token.expires > now;
        if let Some(token) = self.token.lock().ok().and_then(|t| t.clone()) {
            if fresh(&token) {
                return Some(token);
            }
        }
        TOKENS
            .lock()
            .ok()?
            .get(&self.account())
            .filter(|token| fresh(token))
            .cloned()
    }

    fn keep(&self, token: &Token) {
        if let Ok(mut mine) = self.token.lock() {
            *mine = Some(token.clone());
        }
        if let Ok(mut tokens) = TOKENS.lock() {
            let account = self.account();
            if !tokens.contains_key(&account) && tokens.len() >= MAX_TOKENS {
                let first = tokens
                    .iter()
                    .min_by_key(|(_, token)| token.expires)
                    .map(|(account, _)| account.clone());
                if let Some(first) = first {
                    tokens.remove(&first);
                }
            }
            tokens.insert(account, token.clone());
        }
    }

    fn forget(&self) {
        if let Ok(mut mine) = self.token.lock() {
            *mine = None;
        }
        if let Ok(mut tokens) = TOKENS.lock() {
            tokens.remove(&self.account());
        }
    }

    /// Asks the token endpoint for a new token (the password grant).
    async fn login(&self, not_before: &mut Option<DateTime<Utc>>) -> Result<Token, ConnectorError> {
        let now = Utc::now();
        let form = [
            ("grant_type", "password"),
            ("username", self.config.username.as_str()),
            ("password", self.config.password.as_str()),
        ];
        let response = self
            .client
            .post(format!("{}/api/v1/access_token", self.config.auth_url))
            .basic_auth(&self.config.client_id, Some(&self.config.client_secret))
            .header("user-agent", self.config.user_agent())
            .header("accept", "application/json")
            .form(&form)
            .send()
            .await
            .map_err(http::transport)?;
        let status = response.status();
        let until = rate_limited_until(response.headers(), now);
        if let Some(at) = until {
            *not_before = Some(not_before.map_or(at, |old| old.max(at)));
        }
        let body = http::read_capped(response, MAX_BODY_BYTES).await?;
        let host = host_of(&self.config.auth_url);
        let answer: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        let error = answer
            .get("error")
            .map(|error| match error {
                Value::String(error) => error.chars().take(100).collect(),
                other => other.to_string(),
            })
            .unwrap_or_default();
        let refused = |what: &str| {
            self.forget();
            ConnectorError::Unauthorized(format!(
                "{host} refused the token request ({}{}): check the source's {what}",
                status.as_u16(),
                if error.is_empty() {
                    String::new()
                } else {
                    format!(" {error}")
                }
            ))
        };
        match status.as_u16() {
            429 => {
                return Err(ConnectorError::RateLimited {
                    retry_after_secs: wait_secs(until, now),
                })
            }
            401 | 403 => return Err(refused("client_id and client_secret (a \"script\" app)")),
            500.. => {
                return Err(ConnectorError::Transport(format!(
                    "{host} answered the token request with {}",
                    status.as_u16()
                )))
            }
            _ => {}
        }
        // A wrong username or password is `{"error": "invalid_grant"}`, with a 200 as often
        // as a 400.
        if error == "invalid_grant" {
            return Err(refused(
                "username and password (the account must be one of the app's developers)",
            ));
        }
        if !error.is_empty() || !status.is_success() {
            return Err(refused("client_id, client_secret, username and password"));
        }
        let access = answer
            .get("access_token")
            .and_then(Value::as_str)
            .filter(|token| !token.is_empty() && token.len() <= MAX_TOKEN_BYTES)
            .ok_or_else(|| {
                ConnectorError::Payload(format!(
                    "{host} answered the token request without a usable access_token"
                ))
            })?;
        let lifetime = answer
            .get("expires_in")
            .and_then(Value::as_f64)
            .map_or(3_600, |secs| secs.clamp(0.0, 86_400.0 * 7.0) as i64);
        let token = Token {
            access: access.to_owned(),
            expires: now + chrono::Duration::seconds(lifetime - EXPIRY_MARGIN_SECS),
        };
        self.keep(&token);
        Ok(token)
    }

    /// One call with `token`; rate-limit headers of every answer move `not_before`.
    /// `refusal`: whether a 403 means our credentials lack a right (the account's own
    /// listings, replies), or only that this subreddit is closed to us.
    async fn send(
        &self,
        call: &Call,
        token: &str,
        refusal: bool,
        not_before: &mut Option<DateTime<Utc>>,
    ) -> Result<Value, Failure> {
        let request = match call {
            Call::Get(path, query) => self
                .client
                .get(format!("{}{path}", self.config.base_url))
                .query(query),
            Call::Post(path, form) => self
                .client
                .post(format!("{}{path}", self.config.base_url))
                .form(form),
        };
        let now = Utc::now();
        let response = request
            .bearer_auth(token)
            .header("user-agent", self.config.user_agent())
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
        let (host, path, code) = (self.host(), call.path(), status.as_u16());
        if status.is_success() {
            return serde_json::from_slice(&body).map_err(|err| {
                Failure::Connector(ConnectorError::Payload(format!(
                    "{host} answered {path} with invalid JSON: {err}"
                )))
            });
        }
        Err(match code {
            401 => Failure::Expired,
            429 => Failure::Connector(ConnectorError::RateLimited {
                retry_after_secs: wait_secs(until, now),
            }),
            403 if refusal => Failure::Connector(ConnectorError::Unauthorized(format!(
                "{host} answered {path} with 403: the account or the app lacks the right \
                 (check the source's username, and that the app is a \"script\" app)"
            ))),
            500.. => Failure::Connector(ConnectorError::Transport(format!(
                "{host} answered {path} with {code}"
            ))),
            403 | 404 => Failure::Connector(ConnectorError::Payload(format!(
                "{host} answered {path} with {code} (a private, quarantined, banned or \
                 missing subreddit?)"
            ))),
            _ => Failure::Connector(ConnectorError::Payload(format!(
                "{host} answered {path} with {code}"
            ))),
        })
    }

    /// An authenticated call, made once more with a new token when Reddit no longer takes
    /// the one in hand.
    async fn call(
        &self,
        call: &Call,
        refusal: bool,
        not_before: &mut Option<DateTime<Utc>>,
    ) -> Result<Value, ConnectorError> {
        let token = match self.kept(Utc::now()) {
            Some(token) => token,
            None => self.login(not_before).await?,
        };
        match self.send(call, &token.access, refusal, not_before).await {
            Err(Failure::Expired) => {}
            Err(Failure::Connector(err)) => return Err(err),
            Ok(value) => return Ok(value),
        }
        self.forget();
        let token = self.login(not_before).await?;
        match self.send(call, &token.access, refusal, not_before).await {
            Ok(value) => Ok(value),
            Err(Failure::Connector(err)) => Err(err),
            Err(Failure::Expired) => {
                self.forget();
                Err(ConnectorError::Unauthorized(format!(
                    "{} answered {} with 401 to a new token: check the source's credentials",
                    self.host(),
                    call.path()
                )))
            }
        }
    }

    /// One page of a listing: its things as served (newest first) and the `after` of the
    /// next older page.
    async fn page(
        &self,
        listen: Listen<'_>,
        after: Option<&str>,
        limit: usize,
        not_before: &mut Option<DateTime<Utc>>,
    ) -> Result<(Vec<Value>, Option<String>), ConnectorError> {
        let mut query = vec![("limit", limit.to_string()), ("raw_json", "1".to_owned())];
        match listen {
            Listen::Mentions | Listen::Inbox => query.push(("mark", "false".to_owned())),
            Listen::Search(q) => {
                query.push(("q", q.to_owned()));
                query.push(("sort", "new".to_owned()));
                query.push(("type", "link".to_owned()));
            }
            Listen::New(_) | Listen::Comments(_) => {}
        }
        if let Some(after) = after {
            query.push(("after", after.to_owned()));
        }
        let path = listen.path();
        let body = self
            .call(
                &Call::Get(path.clone(), query),
                listen.essential(),
                not_before,
            )
            .await?;
        let (things, after) = listing(body).ok_or_else(|| {
            ConnectorError::Payload(format!("{} answered {path} without a Listing", self.host()))
        })?;
        Ok((things.into_iter().take(limit).collect(), after))
    }

    /// Walks `stream` while the pull's budget lasts (`before`: what earlier streams of this
    /// pull took); returns whether its walk goes on in this pull's next batch. On an error,
    /// `stream` is as the last page left it.
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
            let (things, after) = self
                .page(listen, walk.after.as_deref(), limit, not_before)
                .await?;
            if !stream.step(walk, things, after, taken) {
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

    /// A listing's child as an item; `None` when it has no author to make a customer of,
    /// or lacks what every thing has.
    fn item(&self, thing: &Value, kind: &str) -> Option<InboundItem> {
        let data = thing.get("data")?;
        let name = fullname(data)?;
        let text = |key: &str| {
            data.get(key)
                .and_then(Value::as_str)
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
        };
        let author = text("author")
            .filter(|author| !matches!(author.as_str(), "[deleted]" | "[removed]"))?;
        let account = text("author_fullname").filter(|id| id.starts_with("t2_"))?;
        let occurred_at = created(data)?;
        let (subject, body, html, url) = match &name[..3] {
            "t3_" => (
                text("title"),
                text("selftext").or_else(|| text("url")),
                text("selftext_html"),
                text("permalink").and_then(|link| web_link(&link)),
            ),
            "t4_" => (
                text("subject"),
                text("body"),
                text("body_html"),
                Some(format!("{WEB}/message/messages/{}", &name[3..])),
            ),
            _ => (
                text("link_title"),
                text("body"),
                text("body_html"),
                text("permalink")
                    .or_else(|| text("context"))
                    .and_then(|link| web_link(&link)),
            ),
        };
        Some(InboundItem {
            external_id: name.to_owned(),
            author: Author {
                platform_id: account,
                handle: Some(format!("u/{author}")),
                display_name: Some(author.clone()),
                profile_url: Some(format!("{WEB}/user/{author}")),
                avatar_url: None,
                email: None,
                phone: None,
                links: Vec::new(),
            },
            outbound: author.eq_ignore_ascii_case(&self.config.username),
            kind: kind.to_owned(),
            subject,
            text: body.unwrap_or_default(),
            html,
            url,
            language: None,
            occurred_at,
            thread_key: None,
            in_reply_to: match &name[..3] {
                "t3_" => None,
                _ => text("parent_id").filter(|parent| is_fullname(parent)),
            },
            raw: thing.clone(),
        })
    }

    /// The reply an attempt begun at `started` posted: among the account's newest comments
    /// (or sent messages, answering a message), one answering `thing_id` with `text`,
    /// created no earlier than [`READ_BACK_WINDOW`] before it (an older one with the same
    /// words is an earlier answer, not this one). `None` when there is none or they cannot
    /// be read.
    async fn posted(
        &self,
        thing_id: &str,
        text: &str,
        started: DateTime<Utc>,
        not_before: &mut Option<DateTime<Utc>>,
    ) -> Option<Value> {
        let since = (started - READ_BACK_WINDOW).timestamp() as f64;
        let path = if thing_id.starts_with("t4_") {
            "/message/sent".to_owned()
        } else {
            format!("/user/{}/comments", self.config.username)
        };
        let query = vec![
            ("limit", READ_BACK.to_string()),
            ("sort", "new".to_owned()),
            ("raw_json", "1".to_owned()),
        ];
        let body = self
            .call(&Call::Get(path, query), true, not_before)
            .await
            .ok()?;
        let (things, _) = listing(body)?;
        things.into_iter().find(|thing| {
            let data = &thing["data"];
            data["parent_id"].as_str() == Some(thing_id)
                && data["created_utc"].as_f64().is_some_and(|at| at >= since)
                && data["body"].as_str().map(str::trim) == Some(text)
                && data["author"]
                    .as_str()
                    .is_some_and(|author| author.eq_ignore_ascii_case(&self.config.username))
        })
    }

    /// What Reddit's answer to `/api/comment` says: the thing created, or why not.
    fn created_thing(&self, answer: &Value) -> Result<Value, ConnectorError> {
        let json = answer.get("json").unwrap_or(&Value::Null);
        if let Some(errors) = json
            .get("errors")
            .and_then(Value::as_array)
            .filter(|errors| !errors.is_empty())
        {
            return Err(reply_error(errors, json.get("ratelimit")));
        }
        json.pointer("/data/things/0")
            .filter(|thing| thing.get("data").and_then(fullname).is_some())
            .cloned()
            .ok_or_else(|| {
                ConnectorError::Payload(format!(
                    "{} answered /api/comment without the created thing",
                    self.host()
                ))
            })
    }
}

/// What `json.errors` of a refused reply means: `RATELIMIT` a rate limit (its wait from
/// `json.ratelimit`, seconds, else from the message's "N minutes"), anything else a refusal
/// that names Reddit's code and message.
fn reply_error(errors: &[Value], ratelimit: Option<&Value>) -> ConnectorError {
    let part = |error: &Value, i: usize| {
        error
            .get(i)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .chars()
            .take(300)
            .collect::<String>()
    };
    if let Some(limited) = errors.iter().find(|error| part(error, 0) == "RATELIMIT") {
        let secs = ratelimit
            .and_then(Value::as_f64)
            .map(|secs| secs.ceil() as i64)
            .or_else(|| wait_in(&part(limited, 1)));
        return ConnectorError::RateLimited {
            retry_after_secs: secs.map(|secs| secs.clamp(1, MAX_WAIT_SECS).unsigned_abs()),
        };
    }
    let said: Vec<String> = errors
        .iter()
        .take(3)
        .map(|error| {
            let (code, message, field) = (part(error, 0), part(error, 1), part(error, 2));
            if field.is_empty() {
                format!("{code}: {message}")
            } else {
                format!("{code}: {message} ({field})")
            }
        })
        .collect();
    ConnectorError::Payload(format!("Reddit refused the reply: {}", said.join("; ")))
}

/// The wait a `RATELIMIT` message names ("… try again in 5 minutes.", "… in 30 seconds").
fn wait_in(message: &str) -> Option<i64> {
    let words: Vec<&str> = message.split_whitespace().collect();
    words.windows(2).find_map(|pair| {
        let n: i64 = pair[0].parse().ok()?;
        let unit = pair[1].trim_end_matches(['.', ',', ')']);
        match unit {
            "second" | "seconds" => Some(n),
            "minute" | "minutes" => Some(n.saturating_mul(60)),
            "hour" | "hours" => Some(n.saturating_mul(3_600)),
            _ => None,
        }
    })
}

/// A Listing's children and its `after`; `None` when `body` is not a Listing.
fn listing(mut body: Value) -> Option<(Vec<Value>, Option<String>)> {
    if body.get("kind").and_then(Value::as_str) != Some("Listing") {
        return None;
    }
    let data = body.get_mut("data")?;
    let after = data
        .get("after")
        .and_then(Value::as_str)
        .filter(|after| !after.is_empty())
        .map(str::to_owned);
    match data.get_mut("children").map(Value::take) {
        Some(Value::Array(children)) => Some((children, after)),
        _ => None,
    }
}

/// Whether `name` is a fullname of a comment, an account, a post or a message, short
/// enough to keep.
fn is_fullname(name: &str) -> bool {
    name.len() <= MAX_REF_BYTES
        && ["t1_", "t2_", "t3_", "t4_"].iter().any(|prefix| {
            name.strip_prefix(prefix)
                .is_some_and(|id| !id.is_empty() && id.bytes().all(|c| c.is_ascii_alphanumeric()))
        })
}

/// A thing's fullname (`name`) when it is a comment, a post or a message.
fn fullname(data: &Value) -> Option<&str> {
    data.get("name")
        .and_then(Value::as_str)
        .filter(|name| is_fullname(name) && !name.starts_with("t2_"))
}

/// A thing's `created_utc` (seconds, a float).
fn created(data: &Value) -> Option<DateTime<Utc>> {
    let secs = data.get("created_utc")?.as_f64()?;
    if !secs.is_finite() {
        return None;
    }
    Utc.timestamp_opt(secs.trunc() as i64, 0).single()
}

/// The www.reddit.com link of a permalink (`/r/…`), or a link already on it.
fn web_link(link: &str) -> Option<String> {
    if link.starts_with('/') && !link.starts_with("//") {
        Some(format!("{WEB}{link}"))
    } else if link.starts_with(&format!("{WEB}/")) {
        Some(link.to_owned())
    } else {
        None
    }
}

fn host_of(url: &str) -> String {
    reqwest::Url::parse(url)
        .ok()
        .and_then(|url| url.host_str().map(str::to_owned))
        .unwrap_or_default()
}

/// How long to wait after a 429: until `until`, at least a second.
fn wait_secs(until: Option<DateTime<Utc>>, now: DateTime<Utc>) -> Option<u64> {
    until.map(|at| {
        at.signed_duration_since(now)
            .num_seconds()
            .clamp(1, MAX_WAIT_SECS)
            .unsigned_abs()
    })
}

/// When Reddit asks us to come back: `X-Ratelimit-Remaining` below 1 (Reddit sends a float,
/// "0.0") with `X-Ratelimit-Reset`, the seconds until its window ends; else what the shared
/// reader finds (`Retry-After`). At most a day ahead.
fn rate_limited_until(headers: &HeaderMap, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.trim().parse::<f64>().ok())
            .filter(|value| value.is_finite())
    };
    if header("x-ratelimit-remaining").is_some_and(|remaining| remaining < 1.0) {
        if let Some(reset) = header("x-ratelimit-reset") {
            let secs = reset.ceil().clamp(0.0, MAX_WAIT_SECS as f64) as i64;
            return Some(
                now.checked_add_signed(chrono::TimeDelta::seconds(secs))
                    .unwrap_or(now),
            );
        }
    }
    let latest = now
        .checked_add_signed(chrono::TimeDelta::seconds(MAX_WAIT_SECS))
        .unwrap_or(DateTime::<Utc>::MAX_UTC);
    http::not_before(headers, now).map(|at| at.clamp(now, latest))
}

#[async_trait::async_trait]
impl Connector for RedditConnector {
    fn channel(&self) -> Channel {
        Channel::Reddit
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
        let mut state = RedditCursor::decode(cursor);
        let mut not_before = None;
        let backfill = self.config.backfill_limit;
        let mut listens = vec![Listen::Mentions, Listen::Inbox];
        for sub in &self.config.subreddits {
            listens.push(Listen::New(sub));
            listens.push(Listen::Comments(sub));
        }
        listens.extend(self.config.keywords.iter().map(|q| Listen::Search(q)));
        let mut streams = BTreeMap::new();
        let mut taken: Vec<(Value, &'static str)> = Vec::new();
        let mut more = false;
        let mut stopped = false;
        for listen in listens {
            let key = listen.key();
            let mut stream = state
                .streams
                .remove(&key)
                .unwrap_or_else(|| Stream::first(backfill));
            let walked = if stopped {
                Ok(true)
            } else {
                stream.warning = crate::empty::shown(&mut stream.gave_up, "Reddit", Utc::now());
                let mut things = Vec::new();
                let walked = self
                    .walk(
                        listen,
                        &mut stream,
                        &mut things,
                        taken.len(),
                        started,
                        &mut not_before,
                    )
                    .await;
                taken.extend(things.into_iter().map(|thing| {
                    let kind = listen.kind(&thing);
                    (thing, kind)
                }));
                walked
            };
            match walked {
                Ok(goes_on) => more |= goes_on,
                // Keep what the earlier pages gave; come back when Reddit says.
                Err(ConnectorError::RateLimited { retry_after_secs }) => {
                    crate::http::wait_out(&mut not_before, retry_after_secs);
                    more = true;
                }
                Err(err @ (ConnectorError::Payload(_) | ConnectorError::Transport(_)))
                    if !listen.essential() =>
                {
                    let failed = format!("{} failed: {err}", listen.path());
                    crate::empty::warn(&mut stream.warning, failed);
                }
                Err(err) => return Err(err),
            }
            streams.insert(key, stream);
            stopped |= not_before.is_some_and(|at| at > Utc::now());
        }
        // Streams no longer configured are forgotten.
        state.streams = streams;

        let mut seen = HashSet::new();
        let mut items: Vec<InboundItem> = taken
            .iter()
            .filter_map(|(thing, kind)| self.item(thing, kind))
            .filter(|item| seen.insert(item.external_id.clone()))
            .collect();
        // Oldest first: a comment after its parent. Equal seconds: by fullname, which
        // grows with time within a kind.
        items.sort_by(|a, b| {
            (a.occurred_at, a.external_id.len(), &a.external_id).cmp(&(
                b.occurred_at,
                b.external_id.len(),
                &b.external_id,
            ))
        });
        Ok(Pull {
            items,
            next_cursor: Some(state.encode()),
            more,
            not_before,
        })
    }

    fn default_reply_limit(&self) -> Option<ReplyLimit> {
        Some(ReplyLimit::Characters(MAX_REPLY_CHARS))
    }

    async fn reply(&self, to: &ReplyTarget, text: &str) -> Result<Sent, ConnectorError> {
        let text = text.trim();
        let thing_id = to.external_id.as_str();
        if !is_fullname(thing_id) || thing_id.starts_with("t2_") {
            return Err(ConnectorError::Payload(format!(
                "`{thing_id}` is not a Reddit comment, post or message to answer"
            )));
        }
        let length = text.chars().count();
        if length > MAX_REPLY_CHARS {
            return Err(ConnectorError::Payload(format!(
                "the reply has {length} characters; Reddit takes at most {MAX_REPLY_CHARS}"
            )));
        }
        let mut not_before = None;
        let form = vec![
            ("api_type", "json".to_owned()),
            ("thing_id", thing_id.to_owned()),
            ("text", text.to_owned()),
        ];
        let call = Call::Post("/api/comment".to_owned(), form);
        let started = Utc::now();
        let thing = match self.call(&call, true, &mut not_before).await {
            Ok(answer) => self.created_thing(&answer)?,
            // A timeout or a 5xx may hide a comment Reddit made: ours, answering the same
            // thing with the same text, is the reply.
            Err(err @ ConnectorError::Transport(_)) => {
                match self.posted(thing_id, text, started, &mut not_before).await {
                    Some(thing) => thing,
                    None => return Err(err),
                }
            }
            Err(err) => return Err(err),
        };
        let data = &thing["data"];
        let name = fullname(data).unwrap_or_default().to_owned();
        let url = match name.strip_prefix("t4_") {
            Some(id) => Some(format!("{WEB}/message/messages/{id}")),
            None => data
                .get("permalink")
                .and_then(Value::as_str)
                .and_then(web_link),
        };
        Ok(Sent {
            external_id: name,
            url,
            text: text.to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::empty::EMPTY_PAGES;

    #[test]
    fn a_keyword_configured_twice_is_one_stream() {
        let config = RedditConfig::parse(&serde_json::json!({
            "client_id": "c", "client_secret": "s", "username": "acme", "password": "p",
            "keywords": ["rapport", " rapport", "Rapport", "crm"]
        }))
        .unwrap();
        assert_eq!(config.keywords, ["rapport", "crm"]);
    }
    use reqwest::header::HeaderValue;
    use serde_json::json;

    fn config() -> Value {
        json!({
            "client_id": "p-jcoLKBynTLew", "client_secret": "gko_LXELoV07ZBNUXrvWZfzE3aI",
            "username": "u/AcmeSupport", "password": "hunter2", "subreddits": ["r/rust", "/r/Rust", "selfhosted"],
            "keywords": [" rapport crm "]
        })
    }

    fn connector() -> RedditConnector {
        RedditConnector::new(
            reqwest::Client::new(),
            RedditConfig::parse(&config()).unwrap(),
        )
    }

    /// A mention as `/message/mentions` lists it (reddit.com/dev/api, the Thing/Message
    /// fields of a `t1` in the inbox).
    fn mention() -> Value {
        json!({
            "kind": "t1",
            "data": {
                "first_message": null, "first_message_name": null, "subreddit": "selfhosted",
                "likes": null, "replies": "", "author_fullname": "t2_8mx3k9q1", "id": "kq3v9zd",
                "subject": "username mention", "associated_awarding_id": null, "score": 1,
                "author": "maya_l", "num_comments": 7, "parent_id": "t3_1h6abcd",
                "subreddit_name_prefixed": "r/selfhosted", "new": true, "type": "username_mention",
                "body": "u/AcmeSupport the CSV export is broken since Tuesday",
                "link_title": "Which CRM do you self-host?", "dest": "AcmeSupport",
                "was_comment": true, "body_html": "&lt;!-- SC_OFF --&gt;&lt;div class=\"md\"&gt;&lt;p&gt;…&lt;/p&gt;&lt;/div&gt;",
                "name": "t1_kq3v9zd", "created": 1733306400.0, "created_utc": 1733306400.0,
                "context": "/r/selfhosted/comments/1h6abcd/which_crm_do_you_selfhost/kq3v9zd/?context=3",
                "distinguished": null
            }
        })
    }

    #[test]
    fn the_config_is_checked_and_never_shows_the_secrets() {
        let parsed = RedditConfig::parse(&config()).unwrap();
        assert_eq!(parsed.base_url, API);
        assert_eq!(parsed.auth_url, AUTH);
        assert_eq!(parsed.username, "AcmeSupport");
        // `r/rust` and `/r/Rust` are one subreddit.
        assert_eq!(parsed.subreddits, ["rust", "selfhosted"]);
        assert_eq!(parsed.keywords, ["rapport crm"]);
        assert_eq!(parsed.backfill_limit, DEFAULT_BACKFILL_LIMIT);
        let shown = format!("{parsed:?}");
        assert!(
            !shown.contains("hunter2") && !shown.contains("gko_"),
            "{shown}"
        );
        assert_eq!(
            parsed.user_agent(),
            format!(
                "server:rapport:{} (by /u/AcmeSupport)",
                env!("CARGO_PKG_VERSION")
            )
        );
        let field = |key: &str, value: Value| {
            let mut config = config();
            config[key] = value;
            RedditConfig::parse(&config).unwrap_err().0
        };
        assert_eq!(field("base_url", json!("ftp://x")), "base_url");
        assert_eq!(field("auth_url", json!("reddit")), "auth_url");
        assert_eq!(field("client_secret", json!(" ")), "client_secret");
        assert_eq!(field("password", json!("")), "password");
        assert_eq!(field("username", json!("two words")), "username");
        assert_eq!(field("subreddits", json!(["r/a"])), "subreddits");
        assert_eq!(field("subreddits", json!(["no-dash"])), "subreddits");
        let many = |n: usize| json!((0..n).map(|i| format!("sub{i}")).collect::<Vec<_>>());
        assert_eq!(field("subreddits", many(11)), "subreddits");
        assert_eq!(field("keywords", json!([""])), "keywords");
        assert_eq!(field("keywords", json!(["k".repeat(101)])), "keywords");
        assert_eq!(field("keywords", many(11)), "keywords");
        assert_eq!(field("backfill_limit", json!(100_001)), "backfill_limit");
        assert_eq!(field("token", json!("x")), "token");
    }

    #[test]
    fn a_mention_is_an_item_by_its_account_id_in_its_parents_thread() {
        let item = connector().item(&mention(), "mention").unwrap();
        assert_eq!(item.external_id, "t1_kq3v9zd");
        assert_eq!(item.author.platform_id, "t2_8mx3k9q1");
        assert_eq!(item.author.handle.as_deref(), Some("u/maya_l"));
        assert_eq!(
            item.author.profile_url.as_deref(),
            Some("https://www.reddit.com/user/maya_l")
        );
        assert!(!item.outbound);
        assert_eq!(item.subject.as_deref(), Some("Which CRM do you self-host?"));
        assert_eq!(
            item.text,
            "u/AcmeSupport the CSV export is broken since Tuesday"
        );
        assert_eq!(item.in_reply_to.as_deref(), Some("t3_1h6abcd"));
        assert_eq!(item.thread_key, None);
        assert_eq!(
            item.url.as_deref(),
            Some("https://www.reddit.com/r/selfhosted/comments/1h6abcd/which_crm_do_you_selfhost/kq3v9zd/?context=3")
        );
        assert_eq!(item.occurred_at.timestamp(), 1_733_306_400);

        // Deleted authors and things without an account id are skipped.
        for (key, value) in [
            ("author", json!("[deleted]")),
            ("author", json!("[removed]")),
            ("author_fullname", Value::Null),
            ("author_fullname", json!("t5_2qh0y")),
            ("created_utc", json!("yesterday")),
            ("name", json!("t5_2qh0y")),
        ] {
            let mut thing = mention();
            thing["data"][key] = value;
            assert!(connector().item(&thing, "mention").is_none(), "{key}");
        }
        // Our own comment is outbound, whatever the case of the name.
        let mut ours = mention();
        ours["data"]["author"] = json!("acmesupport");
        assert!(connector().item(&ours, "reply").unwrap().outbound);

        // A post starts its own conversation; a link post's text is its link.
        let post = json!({ "kind": "t3", "data": {
            "id": "1h6abcd", "name": "t3_1h6abcd", "author": "lucia_p", "author_fullname": "t2_4n7w2",
            "title": "Which CRM do you self-host?", "selftext": "", "selftext_html": null,
            "url": "https://example.com/crm", "permalink": "/r/selfhosted/comments/1h6abcd/which_crm_do_you_selfhost/",
            "created_utc": 1733300000.0, "subreddit": "selfhosted" } });
        let item = connector().item(&post, "post").unwrap();
        assert_eq!(item.in_reply_to, None);
        assert_eq!(item.text, "https://example.com/crm");
        assert_eq!(
            item.url.as_deref(),
            Some("https://www.reddit.com/r/selfhosted/comments/1h6abcd/which_crm_do_you_selfhost/")
        );
        // A permalink elsewhere is no link of ours.
        assert_eq!(web_link("//evil.example/x"), None);
        assert_eq!(web_link("https://evil.example/x"), None);

        // A private message answering another is threaded by its parent_id.
        let message = json!({ "kind": "t4", "data": {
            "id": "2fx8k1", "name": "t4_2fx8k1", "author": "maya_l", "author_fullname": "t2_8mx3k9q1",
            "subject": "re: export", "body": "still broken", "parent_id": "t4_2fx7zz",
            "first_message_name": "t4_2fx7zz", "created_utc": 1733310000.0, "was_comment": false } });
        let item = connector().item(&message, "message").unwrap();
        assert_eq!(item.in_reply_to.as_deref(), Some("t4_2fx7zz"));
        assert_eq!(
            item.url.as_deref(),
            Some("https://www.reddit.com/message/messages/2fx8k1")
        );
        assert_eq!(Listen::Inbox.kind(&message), "message");
        assert_eq!(Listen::Inbox.kind(&mention()), "mention");
        let mut reply = mention();
        reply["data"]["type"] = json!("comment_reply");
        assert_eq!(Listen::Inbox.kind(&reply), "reply");
    }

    fn thing(n: i64) -> Value {
        json!({ "kind": "t1", "data": { "name": format!("t1_c{n}"), "created_utc": 1_733_000_000 + n * 60 } })
    }

    fn names(taken: &[Value]) -> Vec<String> {
        taken
            .iter()
            .map(|thing| thing["data"]["name"].as_str().unwrap().to_owned())
            .collect()
    }

    #[test]
    fn a_walk_backfills_to_its_limit_then_follows_from_its_mark() {
        let mut stream = Stream::first(3);
        let mut taken = Vec::new();
        let walk = stream.walk.clone().unwrap();
        assert!(stream.step(
            walk,
            vec![thing(9), thing(8)],
            Some("t1_c8".into()),
            &mut taken
        ));
        let walk = stream.walk.clone().unwrap();
        assert_eq!(walk.after.as_deref(), Some("t1_c8"));
        assert_eq!(walk.left, Some(1));
        assert!(!stream.step(
            walk,
            vec![thing(7), thing(6)],
            Some("t1_c6".into()),
            &mut taken
        ));
        assert_eq!(names(&taken), ["t1_c9", "t1_c8", "t1_c7"]);
        assert_eq!(stream.walk, None);
        assert_eq!(stream.mark, Mark::of(&thing(9)));

        let cursor = RedditCursor {
            streams: BTreeMap::from([("mentions".to_owned(), stream.clone())]),
        };
        let stored = cursor.encode();
        assert_eq!(RedditCursor::decode(Some(&stored)), cursor);
        let json: Value = serde_json::from_str(&stored.0).unwrap();
        assert_eq!(json["streams"]["mentions"]["mark"]["name"], "t1_c9");
        assert_eq!(
            RedditCursor::decode(Some(&Cursor("v0".into()))),
            RedditCursor::default()
        );

        // Later: the new things down to the mark.
        let mut taken = Vec::new();
        let walk = stream.walk.clone().unwrap_or_default();
        assert!(stream.step(
            walk,
            vec![thing(12), thing(11)],
            Some("t1_c11".into()),
            &mut taken
        ));
        let walk = stream.walk.clone().unwrap();
        assert!(!stream.step(
            walk,
            vec![thing(10), thing(9), thing(8)],
            Some("t1_c8".into()),
            &mut taken
        ));
        assert_eq!(names(&taken), ["t1_c12", "t1_c11", "t1_c10"]);
        assert_eq!(stream.mark, Mark::of(&thing(12)));

        // A thing in the mark's second that is not the mark is taken (the pipeline drops
        // it if it is stored).
        let mut same = thing(12);
        same["data"]["name"] = json!("t1_c12b");
        let mut taken = Vec::new();
        assert!(!stream.step(Walk::default(), vec![same, thing(12)], None, &mut taken));
        assert_eq!(names(&taken), ["t1_c12b"]);

        // Backfill 0: one look sets the mark, nothing is taken.
        let mut stream = Stream::first(0);
        let mut taken = Vec::new();
        let walk = stream.walk.clone().unwrap();
        assert!(!stream.step(walk, vec![thing(5)], Some("t1_c5".into()), &mut taken));
        assert!(taken.is_empty());
        assert_eq!(stream.mark, Mark::of(&thing(5)));

        // The same `after` back, or one too long to keep: the walk ends.
        let mut stream = Stream::first(1_000);
        let mut taken = Vec::new();
        let walk = Walk {
            after: Some("t1_c5".into()),
            ..stream.walk.clone().unwrap()
        };
        assert!(!stream.step(walk, vec![thing(4)], Some("t1_c5".into()), &mut taken));
        let mut stream = Stream::first(1_000);
        let walk = stream.walk.clone().unwrap();
        assert!(!stream.step(walk, vec![thing(3)], Some("t".repeat(65)), &mut taken));
        assert!(stream.warning.unwrap().contains("64 bytes"));
    }

    #[test]
    fn a_walk_goes_past_pages_with_nothing_to_read_while_they_page_on() {
        let mut stream = Stream::first(1_000);
        let mut taken = Vec::new();
        // Ten pages with nothing to read (empty, or things without a fullname), then one
        // with a thing: the walk goes on and the count starts again.
        let mut unreadable = thing(50);
        unreadable["data"]
            .as_object_mut()
            .unwrap()
            .remove("name")
            .unwrap();
        for page in 0..10u8 {
            let walk = stream.walk.clone().unwrap();
            let things = if page % 2 == 0 {
                Vec::new()
            } else {
                vec![unreadable.clone()]
            };
            assert!(stream.step(walk, things, Some(format!("t1_e{page}")), &mut taken));
            assert_eq!(stream.walk.as_ref().unwrap().empty, page + 1);
        }
        let walk = stream.walk.clone().unwrap();
        assert!(stream.step(walk, vec![thing(40)], Some("t1_c40".into()), &mut taken));
        assert_eq!(stream.walk.as_ref().unwrap().empty, 0);
        assert_eq!(names(&taken), ["t1_c40"]);
        // Eleven in a row: it gives up, says so, and its newest thing is the mark.
        for page in 0..=EMPTY_PAGES {
            let walk = stream.walk.clone().unwrap();
            let goes_on = stream.step(walk, Vec::new(), Some(format!("t1_f{page}")), &mut taken);
            assert_eq!(goes_on, page < EMPTY_PAGES);
        }
        assert_eq!(stream.walk, None);
        assert_eq!(stream.mark, Mark::of(&thing(40)));
        assert!(stream.warning.unwrap().contains("11 pages in a row"));
        // An empty last page (no `after`) ends a walk without a warning.
        let mut stream = Stream::first(1_000);
        let walk = stream.walk.clone().unwrap();
        assert!(!stream.step(walk, Vec::new(), None, &mut taken));
        assert_eq!(stream.warning, None);
    }

    #[test]
    fn reddit_rate_limit_resets_are_seconds_from_now() {
        let now = Utc.with_ymd_and_hms(2026, 12, 4, 10, 0, 0).unwrap();
        let mut headers = HeaderMap::new();
        headers.insert("x-ratelimit-used", HeaderValue::from_static("100"));
        headers.insert("x-ratelimit-remaining", HeaderValue::from_static("0.0"));
        headers.insert("x-ratelimit-reset", HeaderValue::from_static("312"));
        assert_eq!(
            rate_limited_until(&headers, now),
            Some(now + chrono::Duration::seconds(312))
        );
        // A fraction of a request left is none; a reset past a day is a day.
        headers.insert("x-ratelimit-remaining", HeaderValue::from_static("0.4"));
        headers.insert("x-ratelimit-reset", HeaderValue::from_static("9999999999"));
        assert_eq!(
            rate_limited_until(&headers, now),
            Some(now + chrono::Duration::days(1))
        );
        headers.insert("x-ratelimit-reset", HeaderValue::from_static("-3"));
        assert_eq!(rate_limited_until(&headers, now), Some(now));
        headers.insert("x-ratelimit-remaining", HeaderValue::from_static("587.0"));
        assert_eq!(rate_limited_until(&headers, now), None);
        headers.insert("retry-after", HeaderValue::from_static("30"));
        assert_eq!(
            rate_limited_until(&headers, now),
            Some(now + chrono::Duration::seconds(30))
        );
    }

    #[test]
    fn reply_errors_say_what_reddit_said() {
        let limited = json!([["RATELIMIT", "Looks like you've been doing that a lot. Take a break for 5 minutes before trying again.", "ratelimit"]]);
        let wait =
            |ratelimit: Option<&Value>| match reply_error(limited.as_array().unwrap(), ratelimit) {
                ConnectorError::RateLimited { retry_after_secs } => retry_after_secs,
                other => panic!("{other}"),
            };
        assert_eq!(wait(None), Some(300));
        assert_eq!(wait(Some(&json!(42.7))), Some(43));
        assert_eq!(wait_in("try again in 30 seconds."), Some(30));
        assert_eq!(wait_in("no number here"), None);
        // A hostile number waits a day at most, and never overflows.
        assert_eq!(wait_in("in 9223372036854775807 hours"), Some(i64::MAX));
        let locked = json!([["THREAD_LOCKED", "Comments are locked.", "parent"]]);
        match reply_error(locked.as_array().unwrap(), None) {
            ConnectorError::Payload(message) => assert_eq!(
                message,
                "Reddit refused the reply: THREAD_LOCKED: Comments are locked. (parent)"
            ),
            other => panic!("{other}"),
        }
        assert!(is_fullname("t1_kq3v9zd") && !is_fullname("t1_") && !is_fullname("t1_a/b"));
        assert!(listing(json!({ "kind": "t1" })).is_none());
        assert_eq!(
            listing(json!({ "kind": "Listing", "data": { "after": null, "children": [] } })),
            Some((vec![], None))
        );
    }
}
