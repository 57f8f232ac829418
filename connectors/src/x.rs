//! The X channel (pull + reply), over the X API v2 (<https://docs.x.com/x-api>).
//!
//! Plain calls through the guarded client rather than a crate (`twapi-v2`, `twitter-v2`):
//! the connector uses three listings and one write, each a small JSON answer; those crates
//! build their own HTTP clients (so their connections would not all go through the
//! outbound guard) and read rate limits their own way where the scheduler needs X's
//! `x-rate-limit-*` epochs as "not before" times.
//!
//! - Every request carries the `bearer_token` as `Authorization: Bearer` and a
//!   `User-Agent`. Reading works with an app-only token; posting needs a user-context token
//!   (OAuth 2.0 user access token with `tweet.read`, `tweet.write`, `users.read`). A 403 to
//!   the post says why, by its problem's `type` and `detail` ([`refused_post`]): an app-only
//!   token, an app not enrolled for the endpoint, a duplicate of a recent post, or a post
//!   whose author limited who may reply.
//! - Listening: the mentions of the workspace's own account `user_id`
//!   (`GET /2/users/:id/mentions`, `pagination_token`), and, when `keywords` are set,
//!   recent search (`GET /2/tweets/search/recent`, `next_token`) with the keywords OR-ed
//!   into as few queries as fit X's 512 characters (`(a OR "b c") -is:retweet`; a keyword
//!   with a space is a quoted phrase, `#tag` and `@name` keep their meaning). Each query
//!   is a stream of its own. Every request asks [`TWEET_FIELDS`], `expansions=author_id`
//!   and [`USER_FIELDS`], 100 a page.
//! - Cursor: per stream the newest tweet id handed over (the next read's `since_id`) and,
//!   while one is under way, a *walk*: the `pagination_token`/`next_token` of the next
//!   page, the `since_id` it reads down to (none on a first sync), the newest id it has
//!   seen (the stream's newest when it ends) and, on a first sync, how many items it may
//!   still take (`backfill_limit`, default 1,000; 0: one small page only to learn the
//!   newest id). A page at a time is kept in the cursor, so a failure or a crash mid-walk
//!   resumes at the page it stopped at. A paging token X no longer takes (a 400, as to
//!   an expired one) resumes the walk below the oldest id it has seen (`until_id`), not
//!   from the newest page; an `until_id` refused in turn starts it from the newest. A
//!   page without a post but with a `next_token` does not end a walk; more than
//!   ten in a row do, and the stream's `warning` says so, with the date, for
//!   a week ([`crate::empty`]). X gives at most the newest 800 mentions and only the last
//!   7 days of search, whatever the limit. Stored as JSON: `{"streams": {"mentions":
//!   {"newest", "walk": {"token", "since", "until", "top", "oldest", "left", "empty"},
//!   "warning", "gave_up"}, "search:{query}": {…}}}`.
//! - Items: a tweet's id is its external id, its `conversation_id` the thread key, the
//!   `replied_to` referenced tweet the one it answers. Retweets (`retweeted` referenced
//!   tweets) are skipped; quotes are kept. The author's `author_id` is the identity
//!   (usernames change), `@username` the handle, `name` the display name,
//!   `profile_image_url` the avatar, `https://x.com/{username}` the profile (the user's own
//!   `url` and `description` stay in the raw payload). Kind: an answer to one of our tweets
//!   (`in_reply_to_user_id` is `user_id`) is a `reply`, one from the mentions timeline or
//!   naming us in `entities.mentions` a `mention`, other search results `post`s. Tweets by
//!   `user_id` are outbound (never a customer). X escapes `&`, `<` and `>` in `text`: they
//!   are unescaped.
//! - Replies: `POST /2/tweets` with `{"text", "reply": {"in_reply_to_tweet_id"}}`, at most
//!   [`MAX_WEIGHTED_LENGTH`] weighted characters as X counts them ([`weighted_length`]),
//!   checked before sending. X has no idempotency key: when the answer to the post is lost
//!   (a timeout or a 5xx), the connector reads `user_id`'s own tweets since the answered one
//!   and within [`READ_BACK_WINDOW`] before the attempt (`GET /2/users/:id/tweets`) for one
//!   replying to that tweet with the same text (links and the leading mentions X adds
//!   aside), and takes it for the reply. What remains: the same words sent twice to one
//!   tweet within the window are taken for each other, and when the read-back fails too
//!   the reply is FAILED although it may be on X, so a retry posts it a second time.
//! - Rate limits: `x-rate-limit-remaining: 0` on any answer makes `x-rate-limit-reset`
//!   (epoch seconds) the "not before" time, and a pull asks nothing more; 429 is a rate
//!   limit until that reset (or the exhausted 24-hour limit's, `x-user-limit-24hour-*` /
//!   `x-app-limit-24hour-*`, on posts). Every wait is at most a day ahead.
//! - Errors: X answers problem objects (`{"title", "detail", "type", "status"}`) or an
//!   `errors` array of them; a 200 with `errors` and partial `data` keeps the data. 401 is
//!   a refused token (the message never shows it), 5xx an outage (retried), 400 and a 403
//!   to a read (a search the access level does not include) the stream's warning; the pull
//!   fails only when every stream failed.

use std::collections::{BTreeMap, HashMap, HashSet};

use chrono::{DateTime, Utc};
use reqwest::header::{HeaderMap, HeaderValue};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use unicode_normalization::UnicodeNormalization;

use crate::http::{self, MAX_BODY_BYTES};
pub use crate::mastodon::{PULL_ITEMS, PULL_TIME};
use crate::{
    Author, Capabilities, Channel, Connector, ConnectorError, Cursor, InboundItem, Pull,
    ReplyLimit, ReplyTarget, Sent,
};

/// Tweets asked for per request (both listings' maximum).
pub const PAGE: usize = 100;

/// Items per stream a first sync takes when the source does not say.
pub const DEFAULT_BACKFILL_LIMIT: u64 = 1_000;

/// The most a source may ask a first sync to take per stream.
pub const MAX_BACKFILL_LIMIT: u64 = 100_000;

/// The longest query recent search takes (the self-serve access levels).
pub const MAX_QUERY_CHARS: usize = 512;

/// The keywords a source may name.
pub const MAX_KEYWORDS: usize = 100;

/// The most a tweet weighs (twitter-text configuration v3: `maxWeightedTweetLength`).
pub const MAX_WEIGHTED_LENGTH: usize = 280;

/// What any URL weighs (`transformedURLLength`: X shortens every link to a t.co one).
pub const URL_WEIGHT: usize = 23;

/// The default API.
pub const API: &str = "https://api.x.com";

/// The tweet fields every listing asks for.
pub const TWEET_FIELDS: &str =
    "created_at,author_id,conversation_id,in_reply_to_user_id,referenced_tweets,entities,lang";

/// The user fields of the expanded authors.
pub const USER_FIELDS: &str = "name,username,profile_image_url,url,description";

/// How far before a reply's attempt the read-back after a lost answer looks.
const READ_BACK_WINDOW: chrono::Duration = chrono::Duration::minutes(15);

/// Pages of our own tweets read back after a lost answer.
const READ_BACK_PAGES: usize = 5;

/// The most of a problem's detail kept in an error.
const MAX_DETAIL_CHARS: usize = 200;

/// The bytes a pagination token may have to be kept in the cursor.
const MAX_TOKEN_BYTES: usize = 1_024;

fn default_backfill_limit() -> u64 {
    DEFAULT_BACKFILL_LIMIT
}

fn default_base_url() -> String {
    API.to_owned()
}

/// A source's settings. `bearer_token` is a secret: stored apart, never returned, bound to
/// `base_url`.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct XConfig {
    /// The API (`https://api.x.com`).
    #[serde(default = "default_base_url")]
    pub base_url: String,
    /// The token sent as `Authorization: Bearer` (a user-context one to reply).
    pub bearer_token: String,
    /// The workspace's own account's numeric id: its mentions are read, its tweets are
    /// outbound.
    pub user_id: String,
    /// Words, phrases, `#hashtags` or `@names` searched for in recent tweets.
    #[serde(default)]
    pub keywords: Vec<String>,
    /// Items per stream a first sync takes (0: only what comes after).
    #[serde(default = "default_backfill_limit")]
    pub backfill_limit: u64,
}

impl std::fmt::Debug for XConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("XConfig")
            .field("base_url", &self.base_url)
            .field("bearer_token", &"***")
            .field("user_id", &self.user_id)
            .field("keywords", &self.keywords)
            .field("backfill_limit", &self.backfill_limit)
            .finish()
    }
}

impl XConfig {
    /// Reads and checks a source's settings (the token merged in); the error names the
    /// field.
    pub fn parse(config: &Value) -> Result<XConfig, (String, String)> {
        let mut config: XConfig = crate::read_config(config, "bearer_token")?;
        crate::check_http_url("base_url", &config.base_url)?;
        config.base_url = config.base_url.trim().trim_end_matches('/').to_owned();
        config.bearer_token = config.bearer_token.trim().to_owned();
        // It goes into a header: nothing that would break one.
        if config.bearer_token.is_empty()
            || config
                .bearer_token
                .chars()
                .any(|c| c.is_whitespace() || c.is_control() || !c.is_ascii())
        {
            return Err((
                "bearer_token".into(),
                "bearer_token must be an X API bearer token (printable ASCII, no spaces)".into(),
            ));
        }
        config.user_id = config.user_id.trim().to_owned();
        if config.user_id.is_empty()
            || config.user_id.len() > 20
            || !config.user_id.bytes().all(|c| c.is_ascii_digit())
        {
            return Err((
                "user_id".into(),
                "user_id must be the account's numeric id (as a string), not its @username".into(),
            ));
        }
        for keyword in &mut config.keywords {
            *keyword = keyword.trim().to_owned();
            if keyword.is_empty() {
                return Err(("keywords".into(), "a keyword is empty".into()));
            }
            if keyword.contains('"') {
                return Err((
                    "keywords".into(),
                    format!("`{keyword}`: a keyword cannot hold a double quote"),
                ));
            }
            if term(keyword).chars().count() + QUERY_FRAME > MAX_QUERY_CHARS {
                return Err((
                    "keywords".into(),
                    format!("`{keyword}` does not fit X's {MAX_QUERY_CHARS}-character query"),
                ));
            }
        }
        crate::drop_repeats(&mut config.keywords);
        if config.keywords.len() > MAX_KEYWORDS {
            return Err((
                "keywords".into(),
                format!("at most {MAX_KEYWORDS} keywords"),
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
}

/// What a query adds around its terms: `(`, `) -is:retweet`.
const QUERY_FRAME: usize = "() -is:retweet".len();

/// A keyword as a search term: a phrase in quotes, a word (or `#tag`, `@name`) as it is.
fn term(keyword: &str) -> String {
    if keyword.chars().any(char::is_whitespace) {
        format!("\"{keyword}\"")
    } else {
        keyword.to_owned()
    }
}

/// The keywords OR-ed into as few queries as fit [`MAX_QUERY_CHARS`], in their order.
pub fn queries(keywords: &[String]) -> Vec<String> {
    let mut queries = Vec::new();
    let mut terms: Vec<String> = Vec::new();
    let length = |terms: &[String]| {
        terms.iter().map(|t| t.chars().count()).sum::<usize>()
            + " OR ".len() * terms.len().saturating_sub(1)
            + QUERY_FRAME
    };
    let query = |terms: &[String]| format!("({}) -is:retweet", terms.join(" OR "));
    for keyword in keywords {
        terms.push(term(keyword));
        if terms.len() > 1 && length(&terms) > MAX_QUERY_CHARS {
            let last = terms.pop().expect("just pushed");
            queries.push(query(&terms));
            terms = vec![last];
        }
    }
    if !terms.is_empty() {
        queries.push(query(&terms));
    }
    queries
}

/// What one code point weighs (twitter-text configuration v3: these ranges 1, the rest 2).
fn weight(c: char) -> usize {
    match c as u32 {
        0..=4351 | 8192..=8205 | 8208..=8223 | 8242..=8247 => 1,
        _ => 2,
    }
}

/// The top-level domains a link without a scheme is recognised by (X's list is longer:
/// a rarer one is counted by its characters).
const TLDS: [&str; 30] = [
    "com", "org", "net", "io", "co", "ai", "app", "dev", "me", "info", "biz", "edu", "gov", "ly",
    "tv", "us", "uk", "de", "fr", "es", "it", "nl", "jp", "ca", "au", "ch", "eu", "xyz", "gg",
    "so",
];

/// Whether `word` (trailing punctuation already off) is a link as X counts one: a host
/// ending in a known top-level domain, with or without an `http(s)://` scheme (X's
/// twitter-text needs a valid domain for the scheme and the `www.` forms too; anything
/// else is counted by its characters, which only ever counts more than X).
fn is_link(word: &str) -> bool {
    let lower = word.to_ascii_lowercase();
    let rest = lower
        .strip_prefix("https://")
        .or_else(|| lower.strip_prefix("http://"))
        .unwrap_or(&lower);
    let host = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host = host.split(':').next().unwrap_or("");
    let labels: Vec<&str> = host.split('.').collect();
    labels.len() >= 2
        && labels.iter().all(|label| {
            !label.is_empty()
                && !label.starts_with('-')
                && label
                    .bytes()
                    .all(|c| c.is_ascii_alphanumeric() || c == b'-')
        })
        && TLDS.contains(labels.last().expect("two labels"))
}

/// The length of `text` as X counts it against [`MAX_WEIGHTED_LENGTH`] (twitter-text
/// configuration v3): NFC first, every link [`URL_WEIGHT`], every other code point 1 in
/// the Latin and general-punctuation ranges and 2 elsewhere (CJK, emoji). An emoji
/// sequence X counts as one emoji (2) is counted here by its code points: more, never
/// less, so a reply refused here may be one X takes, never the other way round.
pub fn weighted_length(text: &str) -> usize {
    let text: String = text.nfc().collect();
    let mut length = 0;
    let mut word = String::new();
    let flush = |word: &mut String, length: &mut usize| {
        if word.is_empty() {
            return;
        }
        // A link keeps the punctuation around it out: `(see acme.com).`
        let start = word
            .find(|c: char| !"([{<\"'".contains(c))
            .unwrap_or(word.len());
        let core = &word[start..];
        let end = core
            .trim_end_matches(|c: char| ".,;:!?)]}>\"'".contains(c))
            .len();
        // A scheme inside a word (`see:https://…`) starts the link there, but not after a
        // letter or digit (`abchttps://…`) or `@$#`: X does not take that for a link.
        let lower = core[..end].to_ascii_lowercase();
        let scheme = lower
            .match_indices("http")
            .map(|(at, _)| at)
            .filter(|&at| {
                lower[..at]
                    .chars()
                    .next_back()
                    .is_none_or(|c| !c.is_alphanumeric() && !"@$#".contains(c))
            })
            .find(|&at| is_link(&core[at..end]));
        let (before, link, after) = match scheme {
            Some(at) if at > 0 => (&word[..start + at], &core[at..end], &core[end..]),
            _ if is_link(&core[..end]) => (&word[..start], &core[..end], &core[end..]),
            _ => (word.as_str(), "", ""),
        };
        *length += before.chars().map(weight).sum::<usize>();
        if !link.is_empty() {
            *length += URL_WEIGHT;
        }
        *length += after.chars().map(weight).sum::<usize>();
        word.clear();
    };
    for c in text.chars() {
        if c.is_whitespace() {
            flush(&mut word, &mut length);
            length += weight(c);
        } else {
            word.push(c);
        }
    }
    flush(&mut word, &mut length);
    length
}

/// A first sync's walk back, or a later one from the newest id down to `since`, under way.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
struct Walk {
    /// The paging token of the next page (`None`: the newest page).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    token: Option<String>,
    /// The `since_id` the walk reads down to (`None`: a first sync's backfill).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    since: Option<String>,
    /// The newest id seen since the walk began: the stream's newest when it ends.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    top: Option<String>,
    /// How many items a backfill may still take (`None`: everything since `since`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    left: Option<u64>,
    /// The oldest id seen since the walk began.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    oldest: Option<String>,
    /// The `until_id` the walk reads below (sent with every page of it): its `oldest` when
    /// a paging token was refused and the walk went on without it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    until: Option<String>,
    /// How many pages in a row had no post, each with a paging token to go on with.
    #[serde(default, skip_serializing_if = "crate::empty::is_zero")]
    empty: u8,
}

/// Where one stream stands (see the module doc).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
struct Stream {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    newest: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    walk: Option<Walk>,
    /// What went wrong with this stream in the last pull that read it; `source.cursor`
    /// shows it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    warning: Option<String>,
    /// When a walk of this stream last gave up past ten pages without a post:
    /// the `warning` says so for a week.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    gave_up: Option<DateTime<Utc>>,
}

/// Tweet ids are decimal numbers growing with time (snowflakes); `None` for anything else.
fn id_number(id: &str) -> Option<u64> {
    id.parse().ok()
}

/// The first millisecond of X's snowflake ids (2010-11-04T01:42:54.657Z).
const SNOWFLAKE_EPOCH_MS: i64 = 1_288_834_974_657;

/// How old a `since_id` recent search still takes: its window is 7 days and it answers
/// 400 to an older one, so an hour is kept for clocks and the pull itself.
const SEARCH_SINCE_MAX: chrono::Duration = chrono::Duration::hours(7 * 24 - 1);

/// When the tweet `id` was made (a snowflake's time is its bits above the 22nd).
fn id_time(id: &str) -> Option<DateTime<Utc>> {
    let ms = i64::try_from(id_number(id)? >> 22).ok()?;
    DateTime::from_timestamp_millis(ms.checked_add(SNOWFLAKE_EPOCH_MS)?)
}

/// Whether recent search still takes `since` as its `since_id` at `now`. An older one
/// is left out of the request: the walk's own `since` still drops what was handed over,
/// and the search ends at its 7-day window anyway.
fn search_takes_since(since: &str, now: DateTime<Utc>) -> bool {
    id_time(since).is_some_and(|at| now - at < SEARCH_SINCE_MAX)
}

/// Whether `tweet` is a retweet (a `retweeted` referenced tweet).
fn is_retweet(tweet: &Value) -> bool {
    tweet
        .get("referenced_tweets")
        .and_then(Value::as_array)
        .is_some_and(|refs| {
            refs.iter()
                .any(|r| r.get("type").and_then(Value::as_str) == Some("retweeted"))
        })
}

/// The later of two ids.
fn later(a: Option<String>, b: Option<&str>) -> Option<String> {
    replaced(a, b, |b, a| b > a)
}

/// The earlier of two ids.
fn earlier(a: Option<String>, b: Option<&str>) -> Option<String> {
    replaced(a, b, |b, a| b < a)
}

/// `a`, or `b` where there is no `a` or `wins(b, a)`; `b` only when it is a number.
fn replaced(
    a: Option<String>,
    b: Option<&str>,
    wins: fn(Option<u64>, Option<u64>) -> bool,
) -> Option<String> {
    match (a, b.filter(|b| id_number(b).is_some())) {
        (Some(a), Some(b)) if wins(id_number(b), id_number(&a)) => Some(b.to_owned()),
        (None, Some(b)) => Some(b.to_owned()),
        (a, _) => a,
    }
}

impl Stream {
    fn first(backfill: u64) -> Stream {
        Stream {
            walk: Some(Walk {
                left: Some(backfill),
                ..Walk::default()
            }),
            ..Stream::default()
        }
    }

    /// The walk under way, or a new one from the newest id handed over.
    fn walk(&self) -> Walk {
        self.walk.clone().unwrap_or_else(|| Walk {
            since: self.newest.clone(),
            ..Walk::default()
        })
    }

    /// Takes one page (`tweets` newest first, `newest_id` and `next` from its `meta`) into
    /// `taken`: those newer than the walk's `since`, within a backfill's allowance. Ends
    /// the walk (its newest id becomes the stream's) at the listing's end or the
    /// allowance. A page without a post but with a `next_token` does not end it (X
    /// leaves out of a page what it drops after paging: deleted, protected, withheld
    /// posts; its documentation says to page until no `next_token` comes); more than
    /// ten of them in a row do, noted in `warning`. Returns whether the walk
    /// goes on.
    fn page(
        &mut self,
        mut walk: Walk,
        tweets: Vec<Value>,
        newest_id: Option<&str>,
        next: Option<String>,
        taken: &mut Vec<Value>,
    ) -> bool {
        let mut readable = false;
        walk.top = later(walk.top, newest_id);
        let since = walk.since.as_deref().and_then(id_number);
        for tweet in tweets {
            let Some(id) = tweet.get("id").and_then(Value::as_str).map(str::to_owned) else {
                continue;
            };
            let Some(number) = id_number(&id) else {
                continue;
            };
            readable = true;
            walk.top = later(walk.top, Some(&id));
            walk.oldest = earlier(walk.oldest, Some(&id));
            // A retweet is no item, so it takes none of the allowance either.
            if since.is_some_and(|since| number <= since)
                || walk.left == Some(0)
                || is_retweet(&tweet)
            {
                continue;
            }
            taken.push(tweet);
            if let Some(left) = walk.left.as_mut() {
                *left -= 1;
            }
        }
        let next = match next {
            Some(next) if next.len() > MAX_TOKEN_BYTES => {
                crate::empty::warn(
                    &mut self.warning,
                    format!(
                        "X's paging token is longer than {MAX_TOKEN_BYTES} bytes: the walk \
                         ended there"
                    ),
                );
                None
            }
            next => next,
        };
        let stuck = next.is_some() && next == walk.token;
        let gave_up = crate::empty::gives_up(&mut walk.empty, !readable, next.is_some());
        if gave_up {
            self.warning = crate::empty::gave_up_now(&mut self.gave_up, "X");
        }
        let spent = walk.left == Some(0) && walk.top.is_some();
        if gave_up || stuck || next.is_none() || spent {
            self.newest = later(self.newest.take(), walk.top.as_deref());
            self.walk = None;
            false
        } else {
            walk.token = next;
            self.walk = Some(walk);
            true
        }
    }
}

/// Where an X source stands: one [`Stream`] per listing, by [`Listen::key`].
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
struct XCursor {
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    streams: BTreeMap<String, Stream>,
}

impl XCursor {
    /// Reads a stored cursor; one this version cannot read starts over (a first sync).
    fn decode(cursor: Option<&Cursor>) -> XCursor {
        cursor
            .and_then(|cursor| serde_json::from_str(&cursor.0).ok())
            .unwrap_or_default()
    }

    fn encode(&self) -> Cursor {
        Cursor(serde_json::to_string(self).expect("a cursor serialises"))
    }
}

/// One listing the connector reads.
#[derive(Clone, Debug)]
enum Listen {
    Mentions,
    Search(String),
}

impl Listen {
    /// The stream's name in the stored cursor.
    fn key(&self) -> String {
        match self {
            Listen::Mentions => "mentions".to_owned(),
            Listen::Search(query) => format!("search:{query}"),
        }
    }

    fn path(&self, user_id: &str) -> String {
        match self {
            Listen::Mentions => format!("/2/users/{user_id}/mentions"),
            Listen::Search(_) => "/2/tweets/search/recent".to_owned(),
        }
    }
}

/// A listing's page: its tweets (newest first), the users they expand to, its `meta`.
struct Page {
    tweets: Vec<Value>,
    users: HashMap<String, Value>,
    newest_id: Option<String>,
    next: Option<String>,
}

pub struct XConnector {
    client: reqwest::Client,
    config: XConfig,
}

impl XConnector {
    pub fn new(client: reqwest::Client, config: XConfig) -> XConnector {
        XConnector { client, config }
    }

    fn host(&self) -> String {
        reqwest::Url::parse(&self.config.base_url)
            .ok()
            .and_then(|url| url.host_str().map(str::to_owned))
            .unwrap_or_default()
    }

    fn request(&self, method: reqwest::Method, url: reqwest::Url) -> reqwest::RequestBuilder {
        self.client
            .request(method, url)
            .bearer_auth(&self.config.bearer_token)
            .header("user-agent", concat!("rapport/", env!("CARGO_PKG_VERSION")))
    }

    fn url(&self, path: &str, query: &[(&str, &str)]) -> Result<reqwest::Url, ConnectorError> {
        let mut url = reqwest::Url::parse(&format!("{}{path}", self.config.base_url))
            .map_err(|_| ConnectorError::Config("base_url: not a URL".into()))?;
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query);
        }
        Ok(url)
    }

    /// Sends `request`; the rate-limit headers of every answer move `not_before`. Returns
    /// the body, or the error `what` (the path, for messages) met.
    async fn send(
        &self,
        request: reqwest::RequestBuilder,
        what: &str,
        writing: bool,
        not_before: &mut Option<DateTime<Utc>>,
    ) -> Result<Value, ConnectorError> {
        self.exchange(request, what, writing, not_before).await.1
    }

    /// [`Self::send`], also giving the answer's status (`None`: no answer came).
    async fn exchange(
        &self,
        request: reqwest::RequestBuilder,
        what: &str,
        writing: bool,
        not_before: &mut Option<DateTime<Utc>>,
    ) -> (Option<u16>, Result<Value, ConnectorError>) {
        let now = Utc::now();
        let response = match request.send().await {
            Ok(response) => response,
            Err(err) => return (None, Err(http::transport(err))),
        };
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        if let Some(at) = exhausted_until(&headers, now) {
            *not_before = Some(not_before.map_or(at, |old| old.max(at)));
        }
        let host = self.host();
        let body = match http::read_capped(response, MAX_BODY_BYTES).await {
            Ok(body) => body,
            Err(err) => return (Some(status), Err(err)),
        };
        if (200..300).contains(&status) {
            let value = serde_json::from_slice(&body).map_err(|_| {
                ConnectorError::Payload(format!("{host} answered {what} with invalid JSON"))
            });
            return (Some(status), value);
        }
        let err = self.failure(status, &headers, &body, now, what, writing);
        (Some(status), Err(err))
    }

    /// What a failed answer means (see the module doc).
    fn failure(
        &self,
        status: u16,
        headers: &HeaderMap,
        body: &[u8],
        now: DateTime<Utc>,
        what: &str,
        writing: bool,
    ) -> ConnectorError {
        let host = self.host();
        let said = problem(body)
            .map(|detail| self.scrub(&detail))
            .map(|detail| match detail.char_indices().nth(MAX_DETAIL_CHARS) {
                Some((end, _)) => format!(" ({}…)", &detail[..end]),
                None => format!(" ({detail})"),
            })
            .unwrap_or_default();
        match status {
            429 => ConnectorError::RateLimited {
                retry_after_secs: limited_until(headers, now)
                    .map(|at| (at - now).num_seconds().max(1) as u64),
            },
            401 => ConnectorError::Unauthorized(format!(
                "{host} answered {what} with 401{said}: the bearer_token is wrong, expired or revoked"
            )),
            403 if writing => refused_post(body, &format!("{host} answered {what} with 403{said}")),
            403 => ConnectorError::Payload(format!(
                "{host} answered {what} with 403{said}: the token's app or access level may not \
                 read this"
            )),
            500.. => ConnectorError::Transport(format!("{host} answered {what} with {status}")),
            _ => ConnectorError::Payload(format!("{host} answered {what} with {status}{said}")),
        }
    }

    /// Removes the token from a text X (or anything between) sent back.
    fn scrub(&self, text: &str) -> String {
        text.replace(self.config.bearer_token.as_str(), "***")
    }

    /// One page of `listen` for `walk`. `stale` is set when X refused the walk's paging
    /// token or `until_id` with a 400 (an expired token is): the walk goes on below its
    /// oldest id, or from the newest page.
    async fn page(
        &self,
        listen: &Listen,
        walk: &Walk,
        not_before: &mut Option<DateTime<Utc>>,
        stale: &mut bool,
    ) -> Result<Page, ConnectorError> {
        let path = listen.path(&self.config.user_id);
        // A backfill of 0 asks the smallest page only to learn the newest id.
        let max_results = if walk.left == Some(0) {
            match listen {
                Listen::Mentions => "5",
                Listen::Search(_) => "10",
            }
        } else {
            "100"
        };
        let mut query: Vec<(&str, &str)> = Vec::new();
        if let Listen::Search(q) = listen {
            query.push(("query", q.as_str()));
        }
        query.extend([
            ("max_results", max_results),
            ("tweet.fields", TWEET_FIELDS),
            ("expansions", "author_id"),
            ("user.fields", USER_FIELDS),
        ]);
        let takes_since = |since: &&String| match listen {
            Listen::Mentions => true,
            Listen::Search(_) => search_takes_since(since, Utc::now()),
        };
        if let Some(since) = walk.since.as_ref().filter(takes_since) {
            query.push(("since_id", since.as_str()));
        }
        if let Some(until) = &walk.until {
            query.push(("until_id", until.as_str()));
        }
        if let Some(token) = &walk.token {
            query.push((
                match listen {
                    Listen::Mentions => "pagination_token",
                    Listen::Search(_) => "next_token",
                },
                token.as_str(),
            ));
        }
        let url = self.url(&path, &query)?;
        let (status, answer) = self
            .exchange(
                self.request(reqwest::Method::GET, url),
                &path,
                false,
                not_before,
            )
            .await;
        *stale = status == Some(400) && (walk.token.is_some() || walk.until.is_some());
        let answer = answer?;
        // A 200 may carry `errors` beside partial `data` (a tweet or user it could not
        // give): the data is kept. Errors without any data or meta are the answer's error.
        if answer.get("data").is_none() && answer.get("meta").is_none() {
            if let Some(detail) = problem(answer.to_string().as_bytes()) {
                return Err(ConnectorError::Payload(format!(
                    "{} answered {path} with an error ({})",
                    self.host(),
                    self.scrub(&detail)
                )));
            }
        }
        let tweets = match answer.get("data") {
            Some(Value::Array(tweets)) => tweets.clone(),
            None | Some(Value::Null) => Vec::new(),
            Some(_) => {
                return Err(ConnectorError::Payload(format!(
                    "{} answered {path} with data that is not a list",
                    self.host()
                )))
            }
        };
        let users = answer
            .pointer("/includes/users")
            .and_then(Value::as_array)
            .map(|users| {
                users
                    .iter()
                    .filter_map(|user| {
                        let id = user.get("id")?.as_str()?;
                        Some((id.to_owned(), user.clone()))
                    })
                    .collect()
            })
            .unwrap_or_default();
        let meta = answer.get("meta");
        let text = |key: &str| {
            meta.and_then(|meta| meta.get(key))
                .and_then(Value::as_str)
                .map(str::to_owned)
        };
        Ok(Page {
            tweets,
            users,
            newest_id: text("newest_id"),
            next: text("next_token"),
        })
    }

    /// Reads `listen` from where `stream` stands: page after page while the walk goes on
    /// and the pull's budget lasts. Returns whether more is waiting.
    #[allow(clippy::too_many_arguments)]
    async fn walk(
        &self,
        listen: &Listen,
        stream: &mut Stream,
        taken: &mut Vec<Value>,
        users: &mut HashMap<String, Value>,
        before: usize,
        started: std::time::Instant,
        not_before: &mut Option<DateTime<Utc>>,
    ) -> Result<bool, ConnectorError> {
        loop {
            let walk = stream.walk();
            let mut stale = false;
            let page = match self.page(listen, &walk, not_before, &mut stale).await {
                Ok(page) => page,
                // The token expired: the next pull goes on below the oldest id the walk
                // has seen, down to the same `since` (within the same allowance). Refused
                // without a token (an `until_id` X no longer takes, or a walk stored before
                // walks kept their oldest id): from the newest page again, what it meets
                // twice kept once. Not the source's failure, or the changed walk is not
                // stored.
                Err(err) if stale => {
                    let mut below = false;
                    if let Some(walk) = stream.walk.as_mut() {
                        below = walk.token.is_some() && walk.oldest.is_some();
                        walk.token = None;
                        if below {
                            walk.until = walk.oldest.clone();
                        } else {
                            walk.until = None;
                            walk.oldest = None;
                            walk.empty = 0;
                        }
                    }
                    let failed = format!(
                        "{} failed: {err}; {}",
                        listen.path(&self.config.user_id),
                        if below {
                            "the walk goes on below the oldest post it read"
                        } else {
                            "the walk starts again from the newest"
                        }
                    );
                    crate::empty::warn(&mut stream.warning, failed);
                    return Ok(true);
                }
                Err(err) => return Err(err),
            };
            users.extend(page.users);
            if !stream.page(
                walk,
                page.tweets,
                page.newest_id.as_deref(),
                page.next,
                taken,
            ) {
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

    fn listens(&self) -> Vec<Listen> {
        let mut listens = vec![Listen::Mentions];
        listens.extend(
            queries(&self.config.keywords)
                .into_iter()
                .map(Listen::Search),
        );
        listens
    }

    /// The tweet as an item; `None` for what is not one (a retweet, no id or author).
    fn item(
        &self,
        listen: &Listen,
        tweet: &Value,
        users: &HashMap<String, Value>,
    ) -> Option<InboundItem> {
        let id = tweet.get("id")?.as_str()?;
        let author_id = tweet.get("author_id")?.as_str()?;
        let referenced = tweet
            .get("referenced_tweets")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let of_type = |kind: &str| {
            referenced
                .iter()
                .find(|r| r.get("type").and_then(Value::as_str) == Some(kind))
                .and_then(|r| r.get("id"))
                .and_then(Value::as_str)
                .map(str::to_owned)
        };
        if is_retweet(tweet) {
            return None;
        }
        let me = self.config.user_id.as_str();
        let user = users.get(author_id);
        let username = user
            .and_then(|user| user.get("username"))
            .and_then(Value::as_str);
        let author = Author {
            platform_id: author_id.to_owned(),
            handle: username.map(|name| format!("@{name}")),
            display_name: user
                .and_then(|user| user.get("name"))
                .and_then(Value::as_str)
                .map(str::to_owned),
            profile_url: username.map(|name| format!("https://x.com/{name}")),
            avatar_url: user
                .and_then(|user| user.get("profile_image_url"))
                .and_then(Value::as_str)
                .map(str::to_owned),
            ..Author::default()
        };
        let outbound = author_id == me;
        let in_reply_to = of_type("replied_to");
        let names_us = tweet
            .pointer("/entities/mentions")
            .and_then(Value::as_array)
            .is_some_and(|mentions| {
                mentions
                    .iter()
                    .any(|m| m.get("id").and_then(Value::as_str) == Some(me))
            });
        let answers_us = tweet.get("in_reply_to_user_id").and_then(Value::as_str) == Some(me);
        let kind = if outbound {
            if in_reply_to.is_some() {
                "reply"
            } else {
                "post"
            }
        } else if answers_us {
            "reply"
        } else if matches!(listen, Listen::Mentions) || names_us {
            "mention"
        } else {
            "post"
        };
        let occurred_at = tweet
            .get("created_at")
            .and_then(Value::as_str)
            .and_then(|at| DateTime::parse_from_rfc3339(at).ok())
            .map(|at| at.with_timezone(&Utc))?;
        let language = tweet
            .get("lang")
            .and_then(Value::as_str)
            // `und`, `zxx` and X's own `q…` codes (hashtags only, media only) name none.
            .filter(|lang| !matches!(*lang, "und" | "zxx") && !lang.starts_with('q'))
            .map(str::to_owned);
        let mut raw = tweet.clone();
        if let Some(user) = user {
            raw["author"] = user.clone();
        }
        Some(InboundItem {
            external_id: id.to_owned(),
            author,
            outbound,
            kind: kind.to_owned(),
            subject: None,
            text: unescape(tweet.get("text").and_then(Value::as_str).unwrap_or("")),
            html: None,
            url: Some(match username {
                Some(name) => format!("https://x.com/{name}/status/{id}"),
                None => format!("https://x.com/i/web/status/{id}"),
            }),
            language,
            occurred_at,
            thread_key: tweet
                .get("conversation_id")
                .and_then(Value::as_str)
                .map(str::to_owned),
            in_reply_to,
            raw,
        })
    }

    /// Our own tweet answering `target` with `text`, made since [`READ_BACK_WINDOW`] before
    /// `started`: the reply whose answer was lost. `None` when there is none or it cannot
    /// be read.
    async fn posted(&self, target: &str, text: &str, started: DateTime<Utc>) -> Option<Value> {
        let mut not_before = None;
        let path = format!("/2/users/{}/tweets", self.config.user_id);
        let start = (started - READ_BACK_WINDOW).to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        let wanted = comparable(text);
        let mut token: Option<String> = None;
        for _ in 0..READ_BACK_PAGES {
            let mut query = vec![
                ("since_id", target),
                ("start_time", start.as_str()),
                ("max_results", "100"),
                ("exclude", "retweets"),
                ("tweet.fields", TWEET_FIELDS),
            ];
            if let Some(token) = &token {
                query.push(("pagination_token", token.as_str()));
            }
            let url = self.url(&path, &query).ok()?;
            let answer = self
                .send(
                    self.request(reqwest::Method::GET, url),
                    &path,
                    false,
                    &mut not_before,
                )
                .await
                .ok()?;
            let found = answer
                .get("data")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .find(|tweet| {
                    let answers = tweet
                        .get("referenced_tweets")
                        .and_then(Value::as_array)
                        .is_some_and(|refs| {
                            refs.iter().any(|r| {
                                r.get("type").and_then(Value::as_str) == Some("replied_to")
                                    && r.get("id").and_then(Value::as_str) == Some(target)
                            })
                        });
                    let same = tweet
                        .get("text")
                        .and_then(Value::as_str)
                        .is_some_and(|said| comparable(&unescape(said)) == wanted);
                    answers && same
                });
            if let Some(found) = found {
                return Some(found.clone());
            }
            token = answer
                .pointer("/meta/next_token")
                .and_then(Value::as_str)
                .map(str::to_owned);
            token.as_ref()?;
        }
        None
    }
}

/// X escapes these three in a tweet's `text`.
fn unescape(text: &str) -> String {
    text.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

/// A text as compared when reading a reply back: NFC, without the leading `@mentions` X
/// puts before a reply's text, every link as one token (X shows t.co ones), whitespace
/// collapsed.
fn comparable(text: &str) -> String {
    let text: String = text.nfc().collect();
    let mut words = text.split_whitespace().peekable();
    while words.peek().is_some_and(|word| word.starts_with('@')) {
        words.next();
    }
    words
        .map(|word| {
            let core = word.trim_end_matches(|c: char| ".,;:!?)]}>\"'".contains(c));
            if is_link(core) {
                "<link>".to_owned()
            } else {
                word.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// The human-readable part of an X error body: a problem's `detail` (else `title`), or
/// the first of its `errors` (`detail`, `message`).
fn problem(body: &[u8]) -> Option<String> {
    let body: Value = serde_json::from_slice(body).ok()?;
    let text = |value: &Value, keys: &[&str]| {
        keys.iter()
            .find_map(|key| value.get(*key).and_then(Value::as_str))
            .filter(|text| !text.is_empty())
            .map(str::to_owned)
    };
    text(&body, &["detail", "title"]).or_else(|| {
        body.get("errors")
            .and_then(Value::as_array)?
            .iter()
            .find_map(|error| text(error, &["detail", "message", "title"]))
    })
}

/// Why X refused a post with 403, from its problem's `type` and `detail`: X answers 403
/// for an app-only token (`…/problems/unsupported-authentication`), an app not enrolled
/// for the endpoint (`…/problems/client-forbidden`), a post with the same text as a recent
/// one of the account ("duplicate content"), and a reply to a post whose author limited
/// replies to the accounts it mentions or follows ("not allowed because you have not been
/// mentioned or otherwise engaged"). `said` is what X answered, for the message.
fn refused_post(body: &[u8], said: &str) -> ConnectorError {
    let body: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let problems = std::iter::once(&body).chain(
        body.get("errors")
            .and_then(Value::as_array)
            .into_iter()
            .flatten(),
    );
    let (mut kind, mut detail) = (String::new(), String::new());
    for problem in problems {
        for (key, into) in [("type", &mut kind), ("detail", &mut detail)] {
            if let Some(text) = problem.get(key).and_then(Value::as_str) {
                into.push_str(&text.to_lowercase());
                into.push(' ');
            }
        }
        if let Some(text) = problem.get("message").and_then(Value::as_str) {
            detail.push_str(&text.to_lowercase());
            detail.push(' ');
        }
    }
    if kind.contains("/unsupported-authentication") || detail.contains("application-only") {
        ConnectorError::Unauthorized(format!(
            "{said}: posting needs a user-context token (an OAuth 2.0 user access token with \
             tweet.read, tweet.write and users.read); an app-only bearer token can read but \
             cannot post"
        ))
    } else if detail.contains("duplicate") {
        ConnectorError::Payload(format!(
            "{said}: X takes no post with the same text as one the account posted recently; \
             change the reply's words"
        ))
    } else if detail.contains("mentioned") || detail.contains("engaged") {
        ConnectorError::Payload(format!(
            "{said}: the post's author lets only the accounts it mentions or follows reply, \
             and the source's account is not one of them; answer in another way"
        ))
    } else if kind.contains("/client-forbidden") {
        ConnectorError::Unauthorized(format!(
            "{said}: the token's app may not use this endpoint (attach it to a Project with \
             access to the X API v2)"
        ))
    } else {
        ConnectorError::Unauthorized(format!(
            "{said}: X refused the post; check that the bearer_token is a user-context token \
             of the source's account allowed to post"
        ))
    }
}

/// The time X's `reset` header names when its `remaining` header says 0 (or `force`: a
/// 429 whatever is said to be left), read by [`http::not_before`] (epoch seconds, at most
/// a day ahead).
fn as_reset(
    headers: &HeaderMap,
    remaining: &str,
    reset: &str,
    now: DateTime<Utc>,
    force: bool,
) -> Option<DateTime<Utc>> {
    let at = headers.get(reset)?;
    let left = if force {
        HeaderValue::from_static("0")
    } else {
        headers.get(remaining)?.clone()
    };
    let mut map = HeaderMap::new();
    map.insert("x-ratelimit-remaining", left);
    map.insert("x-ratelimit-reset", at.clone());
    http::not_before(&map, now)
}

/// When an answer's spent budget ends: `x-rate-limit-remaining: 0` with
/// `x-rate-limit-reset` (epoch seconds), at most a day ahead.
fn exhausted_until(headers: &HeaderMap, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    as_reset(
        headers,
        "x-rate-limit-remaining",
        "x-rate-limit-reset",
        now,
        false,
    )
}

/// When a 429 ends: the 15-minute window's reset (whatever it says is left), an exhausted
/// 24-hour limit's reset, or `retry-after`; the latest of them, at most a day ahead.
fn limited_until(headers: &HeaderMap, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    let window = as_reset(
        headers,
        "x-rate-limit-remaining",
        "x-rate-limit-reset",
        now,
        true,
    );
    let daily = [
        ("x-user-limit-24hour-remaining", "x-user-limit-24hour-reset"),
        ("x-app-limit-24hour-remaining", "x-app-limit-24hour-reset"),
    ]
    .into_iter()
    .filter_map(|(remaining, reset)| as_reset(headers, remaining, reset, now, false));
    let mut retry = HeaderMap::new();
    if let Some(value) = headers.get("retry-after") {
        retry.insert("retry-after", value.clone());
    }
    window
        .into_iter()
        .chain(daily)
        .chain(http::not_before(&retry, now))
        .max()
}

#[async_trait::async_trait]
impl Connector for XConnector {
    fn channel(&self) -> Channel {
        Channel::X
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
        let mut state = XCursor::decode(cursor);
        let mut not_before = None;
        let mut streams = BTreeMap::new();
        let mut taken: Vec<(Listen, Value)> = Vec::new();
        let mut users = HashMap::new();
        let mut more = false;
        let mut failures = Vec::new();
        let listens = self.listens();
        let count = listens.len();
        for listen in listens {
            let key = listen.key();
            let mut stream = state
                .streams
                .remove(&key)
                .unwrap_or_else(|| Stream::first(self.config.backfill_limit));
            let stopped = not_before.is_some_and(|at| at > Utc::now())
                || taken.len() + PAGE > PULL_ITEMS
                || started.elapsed() >= PULL_TIME;
            if stopped {
                more = true;
            } else {
                stream.warning = crate::empty::shown(&mut stream.gave_up, "X", Utc::now());
                let mut values = Vec::new();
                let walked = self
                    .walk(
                        &listen,
                        &mut stream,
                        &mut values,
                        &mut users,
                        taken.len(),
                        started,
                        &mut not_before,
                    )
                    .await;
                let had = !values.is_empty();
                taken.extend(values.into_iter().map(|value| (listen.clone(), value)));
                match walked {
                    Ok(goes_on) => more |= goes_on,
                    // Keep what the earlier pages gave; come back when X says.
                    Err(ConnectorError::RateLimited { retry_after_secs }) => {
                        http::wait_out(&mut not_before, retry_after_secs);
                        more = true;
                    }
                    Err(err @ (ConnectorError::Payload(_) | ConnectorError::Transport(_))) => {
                        let failed = format!("{} failed: {err}", listen.path(&self.config.user_id));
                        crate::empty::warn(&mut stream.warning, failed);
                        // What this stream read before failing is stored with its place;
                        // the next pull meets the failure again and reports it.
                        if had {
                            more = true;
                        } else {
                            failures.push(err);
                        }
                    }
                    Err(err) => return Err(err),
                }
            }
            streams.insert(key, stream);
        }
        // Every stream failed: the source's error, not a quiet empty sync.
        if !failures.is_empty() && failures.len() == count {
            return Err(failures.remove(0));
        }
        // Keywords no longer configured are forgotten.
        state.streams = streams;

        let mut seen = HashSet::new();
        let mut items: Vec<InboundItem> = taken
            .iter()
            .filter_map(|(listen, tweet)| self.item(listen, tweet, &users))
            .filter(|item| seen.insert(item.external_id.clone()))
            .collect();
        // Oldest first: a tweet before the answers to it when both are new.
        items.sort_by(|a, b| {
            (a.occurred_at, id_number(&a.external_id))
                .cmp(&(b.occurred_at, id_number(&b.external_id)))
        });
        Ok(Pull {
            items,
            next_cursor: Some(state.encode()),
            more,
            not_before,
        })
    }

    fn default_reply_limit(&self) -> Option<ReplyLimit> {
        Some(ReplyLimit::Characters(MAX_WEIGHTED_LENGTH))
    }

    fn reply_length(&self, _to: &ReplyTarget, text: &str, _limit: ReplyLimit) -> usize {
        weighted_length(text.trim())
    }

    async fn reply(&self, to: &ReplyTarget, text: &str) -> Result<Sent, ConnectorError> {
        let text = text.trim();
        let length = weighted_length(text);
        if length > MAX_WEIGHTED_LENGTH {
            return Err(ConnectorError::Payload(format!(
                "the reply weighs {length} characters as X counts them; X takes at most \
                 {MAX_WEIGHTED_LENGTH}"
            )));
        }
        let target = to.external_id.as_str();
        if id_number(target).is_none() {
            return Err(ConnectorError::Payload(format!(
                "`{target}` is not a tweet id to answer"
            )));
        }
        let path = "/2/tweets";
        let url = self.url(path, &[])?;
        let mut not_before = None;
        let started = Utc::now();
        let sent = self
            .send(
                self.request(reqwest::Method::POST, url).json(&json!({
                    "text": text,
                    "reply": { "in_reply_to_tweet_id": target }
                })),
                path,
                true,
                &mut not_before,
            )
            .await;
        let tweet = match sent {
            Ok(answer) => answer.get("data").cloned().unwrap_or(Value::Null),
            // A timeout or a 5xx may hide a tweet X made: ours answering this tweet with
            // these words, made since shortly before this attempt, is the reply.
            Err(err @ ConnectorError::Transport(_)) => {
                match self.posted(target, text, started).await {
                    Some(tweet) => tweet,
                    None => return Err(err),
                }
            }
            Err(err) => return Err(err),
        };
        let id = tweet
            .get("id")
            .and_then(Value::as_str)
            .filter(|id| id_number(id).is_some())
            .ok_or_else(|| {
                ConnectorError::Payload(format!(
                    "{} answered {path} without the tweet's id",
                    self.host()
                ))
            })?;
        Ok(Sent {
            external_id: id.to_owned(),
            url: Some(format!("https://x.com/i/web/status/{id}")),
            text: text.to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> Value {
        json!({
            "base_url": "https://api.x.com/", "bearer_token": "AAAAsecretTOKEN%3Dx",
            "user_id": "1500000000000000001", "keywords": ["acme", "Acme", "acme widgets"]
        })
    }

    /// A connector with a real client: at a closed loopback port, so that nothing a test
    /// sends (should one ever send) leaves the machine.
    fn connector() -> XConnector {
        let mut config = config();
        config["base_url"] = json!("http://127.0.0.1:9");
        XConnector::new(reqwest::Client::new(), XConfig::parse(&config).unwrap())
    }

    #[test]
    fn the_weighted_length_counts_as_twitter_text_v3() {
        assert_eq!(weighted_length(""), 0);
        assert_eq!(weighted_length("hello"), 5);
        // Latin with accents and general punctuation weigh 1: "é" composed by NFC first.
        assert_eq!(weighted_length("cafe\u{301}"), 4);
        // … (U+2026) is past the punctuation range: 2.
        assert_eq!(weighted_length("Lucía — “quoted” …"), 19);
        // CJK and emoji weigh 2 per code point.
        assert_eq!(weighted_length("日本語"), 6);
        assert_eq!(weighted_length("👍"), 2);
        assert_eq!(weighted_length("a👍b"), 4);
        // The range edges: U+10FF (4351) is 1, U+1100 (Hangul Jamo) 2; U+2000..U+200D 1,
        // U+200E 2; U+2010..U+201F 1, U+2020 2; U+2032..U+2037 1, U+2038 2.
        assert_eq!(weighted_length("\u{10FF}"), 1);
        assert_eq!(weighted_length("\u{1100}"), 2);
        assert_eq!(weighted_length("\u{200D}\u{200E}"), 3);
        assert_eq!(weighted_length("\u{201F}\u{2020}"), 3);
        assert_eq!(weighted_length("\u{2032}\u{2037}\u{2038}"), 4);
        // Every link is 23, with or without a scheme, its punctuation counted apart.
        assert_eq!(
            weighted_length("https://example.com/a/very/long/path?q=1"),
            23
        );
        assert_eq!(weighted_length("see http://a.co"), 4 + 23);
        assert_eq!(weighted_length("(acme.com)."), 23 + 3);
        assert_eq!(weighted_length("www.example.org"), 23);
        assert_eq!(weighted_length("docs:https://example.com/x"), 5 + 23);
        // Not links: a file name, a version, a lone scheme.
        assert_eq!(weighted_length("notes.txt v2.0 https://"), 23);
        // 280 at most: 140 CJK characters fill it, one more is over.
        assert_eq!(weighted_length(&"字".repeat(140)), 280);
        assert_eq!(weighted_length(&"字".repeat(141)), 282);
        assert_eq!(
            weighted_length(&format!(
                "{} https://example.com/{}",
                "a".repeat(256),
                "p".repeat(300)
            )),
            280
        );
    }

    #[test]
    fn keywords_are_packed_into_queries_that_fit_512_characters() {
        let few: Vec<String> = vec!["acme".into(), "#acmewidgets".into(), "acme widgets".into()];
        assert_eq!(
            queries(&few),
            vec!["(acme OR #acmewidgets OR \"acme widgets\") -is:retweet"]
        );
        let many: Vec<String> = (0..60).map(|n| format!("keyword{n:03}")).collect();
        let packed = queries(&many);
        assert!(packed.len() > 1, "{packed:?}");
        assert!(packed.iter().all(|q| q.chars().count() <= MAX_QUERY_CHARS));
        let terms: usize = packed.iter().map(|q| q.matches("keyword").count()).sum();
        assert_eq!(terms, 60);
        assert!(queries(&[]).is_empty());
    }

    #[test]
    fn the_config_is_checked_and_never_shows_the_token() {
        let parsed = XConfig::parse(&config()).unwrap();
        assert_eq!(parsed.base_url, "https://api.x.com");
        assert_eq!(parsed.keywords, ["acme", "acme widgets"]);
        assert_eq!(parsed.backfill_limit, 1_000);
        assert!(!format!("{parsed:?}").contains("secret"));
        let mut named = config();
        named["user_id"] = json!("@acme");
        assert_eq!(XConfig::parse(&named).unwrap_err().0, "user_id");
        let mut quoted = config();
        quoted["keywords"] = json!(["say \"hi\""]);
        assert_eq!(XConfig::parse(&quoted).unwrap_err().0, "keywords");
        let mut long = config();
        long["keywords"] = json!(["x".repeat(600)]);
        assert_eq!(XConfig::parse(&long).unwrap_err().0, "keywords");
        let mut spaced = config();
        spaced["bearer_token"] = json!("two words");
        let (field, message) = XConfig::parse(&spaced).unwrap_err();
        assert_eq!(field, "bearer_token");
        assert!(!message.contains("two words"));
        let mut unknown = config();
        unknown["api_key"] = json!("k");
        assert_eq!(XConfig::parse(&unknown).unwrap_err().0, "api_key");
        let mut missing = config();
        missing.as_object_mut().unwrap().remove("user_id");
        assert_eq!(XConfig::parse(&missing).unwrap_err().0, "user_id");
    }

    fn tweet(id: u64) -> Value {
        json!({ "id": id.to_string(), "text": "t", "author_id": "2", "created_at": "2026-11-02T09:00:00.000Z" })
    }

    fn ids(taken: &[Value]) -> Vec<u64> {
        taken
            .iter()
            .map(|t| t["id"].as_str().unwrap().parse().unwrap())
            .collect()
    }

    #[test]
    fn a_backfill_walks_to_its_limit_then_reads_only_newer_ids() {
        let mut stream = Stream::first(150);
        let mut taken = Vec::new();
        let page = |from: u64| (0..100).map(|n| tweet(from - n)).collect::<Vec<_>>();
        assert!(stream.page(
            stream.walk(),
            page(1_000),
            Some("1000"),
            Some("t2".into()),
            &mut taken
        ));
        assert_eq!(stream.walk.as_ref().unwrap().token.as_deref(), Some("t2"));
        assert_eq!(stream.newest, None);
        assert!(!stream.page(
            stream.walk(),
            page(900),
            Some("900"),
            Some("t3".into()),
            &mut taken
        ));
        assert_eq!(taken.len(), 150);
        assert_eq!(ids(&taken)[149], 851);
        assert_eq!(stream.newest.as_deref(), Some("1000"));
        assert_eq!(stream.walk, None);
        // Later: since the newest, all of it, page after page.
        let walk = stream.walk();
        assert_eq!(walk.since.as_deref(), Some("1000"));
        assert_eq!(walk.left, None);
        let mut newer = Vec::new();
        assert!(stream.page(
            walk,
            page(1_200),
            Some("1200"),
            Some("n2".into()),
            &mut newer
        ));
        // The newest stays until the walk down to it ends.
        assert_eq!(stream.newest.as_deref(), Some("1000"));
        let next: Vec<Value> = (1_001..=1_100).rev().map(tweet).collect();
        assert!(!stream.page(stream.walk(), next, Some("1100"), None, &mut newer));
        assert_eq!(newer.len(), 200);
        assert_eq!(stream.newest.as_deref(), Some("1200"));
        // A backfill of 0 only learns the newest id.
        let mut quiet = Stream::first(0);
        let mut none = Vec::new();
        assert!(!quiet.page(
            quiet.walk(),
            vec![tweet(77)],
            Some("77"),
            Some("x".into()),
            &mut none
        ));
        assert!(none.is_empty());
        assert_eq!(quiet.newest.as_deref(), Some("77"));
        // Ids compare as numbers, not strings.
        assert_eq!(
            later(Some("99".into()), Some("100")).as_deref(),
            Some("100")
        );
        assert_eq!(
            later(Some("100".into()), Some("99")).as_deref(),
            Some("100")
        );
        assert_eq!(
            earlier(Some("100".into()), Some("99")).as_deref(),
            Some("99")
        );
        assert_eq!(
            earlier(Some("99".into()), Some("100")).as_deref(),
            Some("99")
        );
        assert_eq!(earlier(None, Some("x")), None);
        assert_eq!(earlier(None, Some("7")).as_deref(), Some("7"));
    }

    #[test]
    fn a_tweet_is_an_item_threaded_by_its_conversation_and_retweets_are_skipped() {
        let x = connector();
        let users: HashMap<String, Value> = [(
            "2244994945".to_owned(),
            json!({ "id": "2244994945", "name": "Maya L.", "username": "maya_l",
                "profile_image_url": "https://pbs.twimg.com/profile_images/1/a_normal.jpg" }),
        )]
        .into();
        let reply = json!({
            "id": "1800000000000000002", "text": "@acme it fails &amp; crashes &lt;3",
            "author_id": "2244994945", "conversation_id": "1800000000000000001",
            "in_reply_to_user_id": "1500000000000000001", "lang": "en",
            "created_at": "2026-11-02T09:00:00.000Z",
            "referenced_tweets": [{ "type": "replied_to", "id": "1800000000000000001" }]
        });
        let item = x.item(&Listen::Mentions, &reply, &users).unwrap();
        assert_eq!(item.external_id, "1800000000000000002");
        assert_eq!(item.text, "@acme it fails & crashes <3");
        assert_eq!(item.kind, "reply");
        assert_eq!(item.thread_key.as_deref(), Some("1800000000000000001"));
        assert_eq!(item.in_reply_to.as_deref(), Some("1800000000000000001"));
        assert_eq!(item.author.platform_id, "2244994945");
        assert_eq!(item.author.handle.as_deref(), Some("@maya_l"));
        assert_eq!(
            item.author.profile_url.as_deref(),
            Some("https://x.com/maya_l")
        );
        assert_eq!(
            item.url.as_deref(),
            Some("https://x.com/maya_l/status/1800000000000000002")
        );
        assert_eq!(item.raw["author"]["username"], "maya_l");
        assert!(!item.outbound);
        let mut retweet = reply.clone();
        retweet["referenced_tweets"] = json!([{ "type": "retweeted", "id": "1" }]);
        assert!(x.item(&Listen::Mentions, &retweet, &users).is_none());
        let mut quote = reply.clone();
        quote["referenced_tweets"] = json!([{ "type": "quoted", "id": "1" }]);
        quote["in_reply_to_user_id"] = Value::Null;
        let quoted = x.item(&Listen::Mentions, &quote, &users).unwrap();
        assert_eq!(quoted.kind, "mention");
        assert_eq!(quoted.in_reply_to, None);
        let found = x
            .item(&Listen::Search("(acme) -is:retweet".into()), &quote, &users)
            .unwrap();
        assert_eq!(found.kind, "post");
        let mut ours = quote.clone();
        ours["author_id"] = json!("1500000000000000001");
        ours["lang"] = json!("qme");
        let ours = x.item(&Listen::Mentions, &ours, &users).unwrap();
        assert!(ours.outbound);
        assert_eq!(ours.language, None);
        assert_eq!(
            ours.url.as_deref(),
            Some("https://x.com/i/web/status/1800000000000000002")
        );
    }

    #[test]
    fn rate_limit_headers_and_problems_are_read() {
        let now = DateTime::from_timestamp(Utc::now().timestamp(), 0).unwrap();
        let reset = (now.timestamp() + 600).to_string();
        let mut headers = HeaderMap::new();
        headers.insert("x-rate-limit-limit", HeaderValue::from_static("450"));
        headers.insert("x-rate-limit-remaining", HeaderValue::from_static("3"));
        headers.insert("x-rate-limit-reset", HeaderValue::from_str(&reset).unwrap());
        assert_eq!(exhausted_until(&headers, now), None);
        // A 429 waits for the reset whatever is said to be left.
        let secs = |at: Option<DateTime<Utc>>| (at.unwrap() - now).num_seconds();
        assert_eq!(secs(limited_until(&headers, now)), 600);
        headers.insert("x-rate-limit-remaining", HeaderValue::from_static("0"));
        assert_eq!(secs(exhausted_until(&headers, now)), 600);
        // The exhausted 24-hour posting limit, later, wins.
        let day = (now.timestamp() + 7_200).to_string();
        headers.insert(
            "x-user-limit-24hour-remaining",
            HeaderValue::from_static("0"),
        );
        headers.insert(
            "x-user-limit-24hour-reset",
            HeaderValue::from_str(&day).unwrap(),
        );
        assert_eq!(secs(limited_until(&headers, now)), 7_200);
        // A reset years ahead is a day.
        let far = (now.timestamp() + 10 * 365 * 86_400).to_string();
        headers.insert("x-rate-limit-reset", HeaderValue::from_str(&far).unwrap());
        assert_eq!(secs(exhausted_until(&headers, now)), 86_400);

        assert_eq!(
            problem(br#"{"title":"Unauthorized","type":"about:blank","status":401,"detail":"Unauthorized"}"#)
                .as_deref(),
            Some("Unauthorized")
        );
        assert_eq!(
            problem(br#"{"errors":[{"parameters":{"max_results":["1000"]},"message":"The `max_results` query parameter value [1000] is not between 5 and 100"}],"title":"Invalid Request","detail":"One or more parameters to your request was invalid.","type":"https://api.twitter.com/2/problems/invalid-request"}"#)
                .as_deref(),
            Some("One or more parameters to your request was invalid.")
        );
        assert_eq!(
            problem(br#"{"errors":[{"message":"bad"}]}"#).as_deref(),
            Some("bad")
        );
    }

    #[test]
    fn a_refused_post_names_why_x_refused_it() {
        let x = connector();
        let refused = |body: &str| {
            x.failure(
                403,
                &HeaderMap::new(),
                body.as_bytes(),
                Utc::now(),
                "/2/tweets",
                true,
            )
            .to_string()
        };
        let app_only = refused(
            r#"{"title":"Unsupported Authentication","detail":"Authenticating with OAuth 2.0 Application-Only is forbidden for this endpoint.  Supported authentication types are [OAuth 1.0a User Context, OAuth 2.0 User Context].","type":"https://api.twitter.com/2/problems/unsupported-authentication","status":403}"#,
        );
        assert!(app_only.contains("user-context token"), "{app_only}");
        let duplicate = refused(
            r#"{"detail":"You are not allowed to create a Tweet with duplicate content.","type":"about:blank","title":"Forbidden","status":403}"#,
        );
        assert!(duplicate.contains("same text"), "{duplicate}");
        let limited = refused(
            r#"{"detail":"Reply to this conversation is not allowed because you have not been mentioned or otherwise engaged by the author of the post you are replying to.","type":"about:blank","title":"Forbidden","status":403}"#,
        );
        assert!(
            limited.contains("only the accounts it mentions"),
            "{limited}"
        );
        let enrolled = refused(
            r#"{"client_id":"29011234","detail":"When authenticating requests to the Twitter API v2 endpoints, you must use keys and tokens from a Twitter developer App that is attached to a Project.","registration_url":"https://developer.twitter.com/en/docs/projects/overview","title":"Client Forbidden","required_enrollment":"Appropriate Level of API Access","reason":"client-not-enrolled","type":"https://api.twitter.com/2/problems/client-forbidden"}"#,
        );
        assert!(enrolled.contains("attach it to a Project"), "{enrolled}");
        for message in [&duplicate, &limited, &enrolled] {
            assert!(!message.contains("user-context token"), "{message}");
        }
        let unknown = refused(r#"{"title":"Forbidden","type":"about:blank","status":403}"#);
        assert!(unknown.contains("X refused the post"), "{unknown}");
        // Reading keeps its own message.
        let read = x.failure(
            403,
            &HeaderMap::new(),
            b"{}",
            Utc::now(),
            "/2/tweets/search/recent",
            false,
        );
        assert!(read.to_string().contains("may not read"), "{read}");
    }

    #[test]
    fn what_x_does_not_take_for_a_link_is_counted_by_its_characters() {
        // A scheme right after a letter or digit is no link at X.
        assert_eq!(weighted_length("abchttps://x"), 12);
        assert_eq!(weighted_length("abchttps://example.com"), 22);
        assert_eq!(weighted_length("v2http://example.com/a"), 22);
        // A scheme or `www.` without a valid top-level domain is no link either.
        assert_eq!(weighted_length("https://nodomain"), 16);
        assert_eq!(weighted_length("www.x"), 5);
        assert_eq!(weighted_length("http://a.b"), 10);
        let long = format!("https://{}", "a".repeat(300));
        assert_eq!(weighted_length(&long), 308);
        assert!(weighted_length(&long) > MAX_WEIGHTED_LENGTH);
        // A valid link still counts 23, also after punctuation inside the word.
        assert_eq!(weighted_length("https://example.com/x"), 23);
        assert_eq!(weighted_length("www.example.com"), 23);
        assert_eq!(weighted_length("(see:https://example.com)"), 5 + 23 + 1);
    }

    #[test]
    fn recent_search_gets_no_since_id_older_than_its_window() {
        // 1288834974657 ms after the epoch is snowflake time 0.
        let id = |at: DateTime<Utc>| {
            (((at.timestamp_millis() - SNOWFLAKE_EPOCH_MS) as u64) << 22 | 0x3f_ffff).to_string()
        };
        let now = DateTime::parse_from_rfc3339("2026-12-05T00:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(
            id_time(&id(now)).map(|at| at.timestamp_millis()),
            Some(now.timestamp_millis())
        );
        // A known tweet: 1861000000000000000 was made on 2024-11-25.
        assert_eq!(
            id_time("1861000000000000000").map(|at| at.date_naive().to_string()),
            Some("2024-11-25".to_owned())
        );
        assert!(search_takes_since(
            &id(now - chrono::Duration::days(6)),
            now
        ));
        assert!(search_takes_since(
            &id(now - chrono::Duration::hours(7 * 24 - 2)),
            now
        ));
        assert!(!search_takes_since(
            &id(now - chrono::Duration::hours(7 * 24 - 1)),
            now
        ));
        assert!(!search_takes_since(
            &id(now - chrono::Duration::days(8)),
            now
        ));
        assert!(!search_takes_since("not a number", now));
    }

    #[test]
    fn a_reply_is_read_back_by_its_text_without_links_and_leading_mentions() {
        assert_eq!(
            comparable("@maya_l @acme Fixed in 2.0.1, see https://t.co/abc123"),
            comparable("Fixed  in 2.0.1, see https://example.com/changelog")
        );
        assert_ne!(comparable("@maya_l Fixed"), comparable("Fixed!"));
    }

    #[tokio::test]
    async fn a_reply_over_280_weighted_characters_is_refused_before_sending() {
        let to = ReplyTarget {
            external_id: "1800000000000000002".into(),
            thread_key: None,
            recipient: None,
            context: Value::Null,
            idempotency_key: "k".into(),
        };
        // A closed loopback port: should the check ever regress, nothing leaves the machine.
        let err = connector().reply(&to, &"字".repeat(141)).await.unwrap_err();
        assert!(err.to_string().contains("282"), "{err}");
        assert_eq!(
            connector().reply_length(&to, " 日本 ", ReplyLimit::Characters(280)),
            4
        );
    }
}
