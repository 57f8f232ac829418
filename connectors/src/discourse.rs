//! The Discourse channel (pull, webhooks and reply), over a forum's JSON API
//! (<https://docs.discourse.org>), with an API key.
//!
//! Plain calls through the guarded client rather than a crate: there is no maintained Rust
//! client for Discourse, the connector uses six endpoints with small JSON bodies, and every
//! connection has to go through the outbound guard while rate limits become the
//! scheduler's "not before" times.
//!
//! - Every request carries `Api-Key` and `Api-Username` (the key is bound to `base_url`
//!   and `api_username`), `Accept: application/json` and a `User-Agent`. Those are headers
//!   of Discourse's own, which reqwest would carry along a redirect to any host (it drops
//!   only `Authorization`, `Cookie` and `Proxy-Authorization`): the connector's client
//!   ([`crate::outbound::Outbound::same_origin_client`]) follows redirects within the
//!   forum's origin only, and a redirect elsewhere fails the request as a `base_url` to fix.
//! - Listening, streams with their own place in the cursor:
//!   - `posts`: the forum's latest posts, `GET /posts.json` (50 a page, newest first, paged
//!     back with `before=<lowest id read>`; public categories only, no private messages).
//!     With `categories` (slugs or ids), only posts of those categories are taken. A slug
//!     is resolved with `GET /c/{slug}/show.json`, and its id kept in the cursor for an
//!     hour ([`CATEGORY_TTL_SECS`]). A category that answers 404 is left out with a
//!     warning. A lookup that fails otherwise (5xx, timeout, a broken body) uses the id
//!     kept from before; without one, no stream is read in that pull (their places stay),
//!     so a category's posts are never passed over unread. Subcategories are not included:
//!     name each.
//!   - `search:{keyword}` for each keyword: `GET /search.json?q={keyword} order:latest&page=N`.
//!     Discourse's full-page search shows one match per topic (its latest matching post),
//!     50 a page, and refuses pages above [`SEARCH_PAGES`]: a second match in one topic
//!     between two syncs, and a post edited to match later, are not read, and a walk that
//!     reaches page 10 with more left ends there (a first sync reads at most 500 matches)
//!     with a warning. Each new match is read in full with `GET /posts/{id}.json` (a search
//!     result has neither `user_id` nor `raw`); its topic's title and category come from the
//!     search page's `topics`, and with `categories` only matches in those categories are
//!     taken. A match that is gone (404) or hidden from the key (403) is skipped. When a
//!     read fails otherwise, the matches of that page already read are kept in the cursor
//!     (`done`) and the page is read again in the next pull without them.
//!   - Answers may come from Discourse's cache, up to a minute old: a post made in that
//!     minute is read by a later sync.
//! - Cursor, per stream: `mark`, the highest post id handed over, and a `walk` back from
//!   the newest page (`before`: the post id, or the search page, to read next; `top`: the
//!   highest id seen since the walk began, the mark when it ends; `left`: how many it may
//!   still take). A first sync walks back up to `backfill_limit` posts (0: it only sets the
//!   mark); later syncs walk back from the newest to the mark, [`MAX_PAGES`] pages per stream
//!   and pull at most, then `more`. A walk ends at the mark, its allowance, the listing's
//!   end (an empty page or one reaching id 1; a short page is not the end: older Discourse
//!   pages by a window of ids, and posts the key may not see are dropped), or when a page
//!   does not lead lower (`before` must fall). The stored cursor:
//!   `{"streams": {"posts": {"mark", "walk": {"before", "top", "left", "done"}, "warning"},
//!   "search:{keyword}": {…}}, "categories": {"{slug}": {"id", "at", "warning"}}}`.
//! - A `/posts.json` page larger than the body cap (50 posts of 32,000 four-byte characters
//!   are) is read post by post: the ids in `[before − 50, before)` with
//!   `GET /posts/{id}.json` (404 or 403: skipped), and each of their topics once with
//!   `GET /t/{topic_id}.json` for its category and archetype (a post carries neither):
//!   private messages are dropped. A window with nothing to take is not the listing's end:
//!   the walk goes on below it, down to id 1. For the newest page, the 50 ids above the
//!   mark are read so, the mark moves to the highest id that answered (200 or 403: a private
//!   message, a deleted or forbidden post moves it too), and the newest page is asked again;
//!   a window where no id answers (never made, or destroyed) is passed for the next 50 ids,
//!   [`GAP_WINDOWS`] windows at most, after which the mark stays (those ids may not exist
//!   yet) and the stream warns until newer posts come. Window bounds saturate, so a hostile
//!   id near `u64::MAX` cannot overflow them. On a first sync (no mark yet) the stream keeps
//!   a warning until newer posts push the long ones off the newest page.
//! - Items: a post's external id is `post:{id}` (ids are per forum, and a source is one
//!   forum), its thread `topic:{topic_id}`. Post 1 of a topic is a `post` with the topic's
//!   title as its subject, the others `comment`s; `@api_username` in the text makes it a
//!   `mention`; `api_username`'s own posts are outbound. `in_reply_to` is the answered
//!   post (`reply_to_post_number`, else post 1) when that post is in the same pull. The
//!   identity is the forum and the Discourse user id, `{host[:port]}{path}#{user_id}`
//!   (`forum.example.com/community#42`: ids are per forum, and a workspace may connect
//!   two; usernames can change), with the username as handle,
//!   the name as display name, `{base_url}/u/{username}` as profile and the avatar from
//!   `avatar_template` (the forum's own or an https one). The text is `raw` (without a
//!   reply's marker), else `cooked` as plain text. Skipped: system users (id ≤ 0), deleted
//!   and hidden posts, posts that are not regular (whispers, small actions).
//! - Replies: `POST /posts.json` with `topic_id`, `raw` and `reply_to_post_number` (the
//!   answered post's number), at most [`MAX_REPLY_CHARS`] characters, checked before
//!   sending. `raw` ends with the reply's hidden [`marker`] (an HTML comment, which
//!   Discourse drops when it cooks), from its idempotency key. It also keeps two different
//!   replies with the same words from being merged by Discourse's two-minute memo of
//!   identical API posts. When the answer is lost (a timeout or a 5xx), the latest posts are
//!   read back ([`READ_BACK_PAGES`] pages) for one by `api_username` in that topic, answering
//!   the same post, ending with this reply's marker, made since shortly before: it is the
//!   reply. When none is found (a very busy forum can push it past those pages), the reply
//!   fails, and a retry posts it again.
//! - Webhooks (with a `webhook_secret`; the source's `webhookPath` is the Payload URL of a
//!   webhook made in Discourse's admin, Content Type `application/json`, the same Secret,
//!   Post events; see `app/jobs/regular/emit_web_hook_event.rb` and
//!   `WebHookPostSerializer` in Discourse's source):
//!   `X-Discourse-Event-Signature: sha256=<hex HMAC-SHA256 of the raw body, keyed with the
//!   secret>` is checked first, in constant time; nothing is parsed before. Then
//!   `X-Discourse-Event-Type` (`ping`, `post`, `topic`, …) and `X-Discourse-Event`
//!   (`post_created`, `post_edited`, `post_recovered`, …) say what the body is. A `post`
//!   event's body is `{"post": {…}}`: the post as a single post reads, with its topic's
//!   title, `category_id`, `category_slug` and `topic_archetype`. `post_created`,
//!   `post_edited` and `post_recovered` become the item a pull makes of the same post (the
//!   same mapping: external id, identity, thread, outbound for `api_username`, mentions),
//!   so a post both delivered and pulled is stored once; an edit of a stored post stores
//!   nothing new. The pull's filters hold: private messages (`topic_archetype`, or no
//!   category from a Discourse that sends none), posts outside `categories` (matched by
//!   `category_id`, or `category_slug` for a slug, so a delivery asks the forum nothing),
//!   and what the item skips (system users, deleted, hidden, whispers, small actions) are
//!   answered 200 and stored nothing; so are `ping`, topic events (a topic's opening post
//!   arrives as its own `post_created`) and every other event. Only the body is signed:
//!   the event headers and `X-Discourse-Event-Id` could be changed on a captured
//!   delivery, so a post is taken for what its body says (a destroyed post has its
//!   `deleted_at` whatever the event is named) and replays are recognised by the item's
//!   external id. A delivery names the answered post by number, not id: its item has no
//!   `in_reply_to` (as a pull's has none when the answered post is not in the same pull);
//!   it is threaded by its topic all the same. `X-Discourse-Instance` is not checked (not
//!   signed, and the secret already names the forum).
//! - Rate limits: 429 with `Retry-After` and the body's `extras.wait_seconds`; the later of
//!   the two is the wait (at most a day). A pull keeps what it read and asks nothing more
//!   until then. 401 and 403 are refused credentials (to a reply, 403 also means the user
//!   may not post there); 5xx are transient. One stream's failure is that stream's warning;
//!   when every stream fails, the pull fails.

use std::collections::{BTreeMap, HashMap, HashSet};

use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use reqwest::header::HeaderMap;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::http::{self, MAX_BODY_BYTES};
pub use crate::mastodon::{PULL_ITEMS, PULL_TIME};
use crate::{
    Author, Capabilities, Channel, Connector, ConnectorError, Cursor, Hooked, InboundItem, Pull,
    ReplyLimit, ReplyTarget, Sent, WebhookError, WebhookRequest,
};

/// Posts per `/posts.json` page, and matches per full-page search page (Discourse's own).
pub const PAGE: usize = 50;

/// The last search page Discourse answers.
pub const SEARCH_PAGES: u64 = 10;

/// Posts per stream a first sync takes when the source does not say.
pub const DEFAULT_BACKFILL_LIMIT: u64 = 1_000;

/// The most a source may ask a first sync to take.
pub const MAX_BACKFILL_LIMIT: u64 = 100_000;

/// Discourse's default `max_post_length`.
pub const MAX_POST_CHARS: usize = 32_000;

/// The hidden marker and the blank line before it.
const MARKER_CHARS: usize = 2 + "<!-- rapport: -->".len() + 16;

/// The longest reply: a post with the reply's marker.
pub const MAX_REPLY_CHARS: usize = MAX_POST_CHARS - MARKER_CHARS;

/// Categories a source may name.
pub const MAX_CATEGORIES: usize = 20;

/// Keywords a source may name (each is a search on every sync).
pub const MAX_KEYWORDS: usize = 10;

/// Discourse's default `min_search_term_length`.
const MIN_KEYWORD_CHARS: usize = 3;

/// Pages one stream reads in one pull at most.
pub const MAX_PAGES: usize = 20;

/// How long a category's id is used before it is looked up again.
pub const CATEGORY_TTL_SECS: i64 = 3_600;

/// How far before a lost reply's attempt its read-back looks.
const READ_BACK_WINDOW: chrono::Duration = chrono::Duration::minutes(15);

/// Pages of latest posts a read-back reads at most.
pub const READ_BACK_PAGES: usize = 4;

/// The longest wait a rate limit may ask.
const MAX_WAIT_SECS: i64 = 86_400;

/// The shortest `webhook_secret` (as the generic webhook and GitHub's require).
pub const MIN_SECRET_CHARS: usize = 16;

/// Windows of [`PAGE`] ids read one by one above the mark, when the newest page is over
/// the body cap, before a stream gives up for this pull without moving its mark (the ids
/// may simply not exist yet).
pub const GAP_WINDOWS: u64 = 3;

fn default_backfill_limit() -> u64 {
    DEFAULT_BACKFILL_LIMIT
}

/// A category as configured: a slug or an id (a JSON number or a string of digits).
#[derive(Clone, Debug, Deserialize)]
#[serde(untagged)]
enum CategoryName {
    Id(u64),
    Name(String),
}

fn category_names<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    let names: Vec<CategoryName> = Vec::deserialize(d)?;
    Ok(names
        .into_iter()
        .map(|name| match name {
            CategoryName::Id(id) => id.to_string(),
            CategoryName::Name(name) => name.trim().to_lowercase(),
        })
        .collect())
}

/// A source's settings. `api_key` is a secret: stored apart, never returned, bound to
/// `base_url` and `api_username`.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiscourseConfig {
    /// The forum (`https://forum.example.com`, or its subfolder).
    pub base_url: String,
    /// An API key made by an admin (Admin → Advanced → API keys).
    pub api_key: String,
    /// The user the key acts as (replies are posted by it).
    pub api_username: String,
    /// Category slugs or ids whose posts are taken (none: every public post).
    #[serde(default, deserialize_with = "category_names")]
    pub categories: Vec<String>,
    /// Words searched for across the forum.
    #[serde(default)]
    pub keywords: Vec<String>,
    /// Posts per stream a first sync takes (0: only what comes after it).
    #[serde(default = "default_backfill_limit")]
    pub backfill_limit: u64,
    /// The Secret of the forum's webhook (16 characters or more), a secret like `api_key`.
    /// Without it the source takes no webhook deliveries (its address is 404).
    #[serde(default)]
    pub webhook_secret: Option<String>,
}

impl std::fmt::Debug for DiscourseConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DiscourseConfig")
            .field("base_url", &self.base_url)
            .field("api_key", &"***")
            .field("api_username", &self.api_username)
            .field("categories", &self.categories)
            .field("keywords", &self.keywords)
            .field("backfill_limit", &self.backfill_limit)
            .field(
                "webhook_secret",
                &self.webhook_secret.as_ref().map(|_| "***"),
            )
            .finish()
    }
}

/// Whether `value` can travel as a header value as given.
fn is_header_text(value: &str) -> bool {
    !value.is_empty() && value.bytes().all(|c| c.is_ascii_graphic())
}

impl DiscourseConfig {
    /// Reads and checks a source's settings (the key merged in); the error names the field.
    pub fn parse(config: &Value) -> Result<DiscourseConfig, (String, String)> {
        let mut config: DiscourseConfig = crate::read_config(config, "base_url")?;
        crate::check_http_url("base_url", &config.base_url)?;
        config.base_url = config.base_url.trim().trim_end_matches('/').to_owned();
        if config.base_url.contains(['?', '#']) {
            return Err((
                "base_url".into(),
                "base_url is the forum's address, without a query".into(),
            ));
        }
        config.api_key = config.api_key.trim().to_owned();
        if !is_header_text(&config.api_key) {
            return Err((
                "api_key".into(),
                "api_key must be a Discourse API key".into(),
            ));
        }
        config.api_username = config.api_username.trim().to_owned();
        if !is_header_text(&config.api_username) {
            return Err((
                "api_username".into(),
                "api_username must be the username the key acts as".into(),
            ));
        }
        for name in &config.categories {
            let id = name.bytes().all(|c| c.is_ascii_digit());
            let slug = name
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_');
            if name.is_empty() || !(id || slug) || name == "0" {
                return Err((
                    "categories".into(),
                    format!("`{name}` is not a category slug or id"),
                ));
            }
        }
        crate::drop_repeats(&mut config.categories);
        if config.categories.len() > MAX_CATEGORIES {
            return Err((
                "categories".into(),
                format!("at most {MAX_CATEGORIES} categories"),
            ));
        }
        for keyword in &mut config.keywords {
            *keyword = keyword.split_whitespace().collect::<Vec<_>>().join(" ");
            if keyword.chars().count() < MIN_KEYWORD_CHARS {
                return Err((
                    "keywords".into(),
                    format!("a keyword has at least {MIN_KEYWORD_CHARS} characters (Discourse searches no shorter)"),
                ));
            }
            // Search operators would widen the search: with an admin key `in:personal`
            // reads the user's private messages.
            if keyword
                .split(' ')
                .any(|word| word.contains(':') || word.starts_with(['@', '#']))
            {
                return Err((
                    "keywords".into(),
                    format!("`{keyword}`: keywords are plain words, without search operators (`in:`, `@user`, `#category`)"),
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
        if let Some(secret) = &mut config.webhook_secret {
            *secret = secret.trim().to_owned();
            // Discourse asks for 12 characters; the other channels' webhooks for 16.
            if secret.chars().count() < MIN_SECRET_CHARS {
                return Err((
                    "webhook_secret".into(),
                    format!("the secret is too short: use at least {MIN_SECRET_CHARS} random characters, the same in Discourse's webhook"),
                ));
            }
        }
        Ok(config)
    }
}

/// The hidden mark at the end of a reply's `raw` (Discourse drops HTML comments when it
/// cooks): the reply's own, from its idempotency key, so a lost answer's read-back finds
/// this reply's post and never another with the same words.
fn marker(idempotency_key: &str) -> String {
    let digest = Sha256::digest(idempotency_key.as_bytes());
    format!("<!-- rapport:{} -->", hex::encode(&digest[..8]))
}

/// `raw` without a reply's trailing [`marker`].
fn unmarked(raw: &str) -> &str {
    let trimmed = raw.trim_end();
    if let Some(start) = trimmed.rfind("<!-- rapport:") {
        let hex = trimmed[start..]
            .strip_prefix("<!-- rapport:")
            .and_then(|rest| rest.strip_suffix(" -->"));
        if hex.is_some_and(|hex| hex.len() == 16 && hex.bytes().all(|c| c.is_ascii_hexdigit())) {
            return trimmed[..start].trim_end();
        }
    }
    trimmed
}

/// A walk back from the newest page, under way.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
struct Walk {
    /// What to read next: the post id to page back from (`posts`), or the search page
    /// (`search:…`); none: the newest page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    before: Option<u64>,
    /// The highest post id seen since the walk began: the mark when it ends.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    top: Option<u64>,
    /// How many posts the walk may still take.
    #[serde(default)]
    left: u64,
    /// The matches of the current search page already read in full (the page is read
    /// again after a failed read, without them).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    done: Vec<u64>,
}

/// Where one stream stands (see the module doc).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
struct Stream {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    mark: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    walk: Option<Walk>,
    /// What went wrong with this stream in the last pull that read it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    warning: Option<String>,
}

impl Stream {
    /// The walk under way, or a new one: a first sync's within `backfill`, a later one
    /// down to the mark.
    fn walk(&self, backfill: u64) -> Walk {
        self.walk.clone().unwrap_or(Walk {
            left: if self.mark.is_none() {
                backfill
            } else {
                u64::MAX
            },
            ..Walk::default()
        })
    }

    /// Takes one page of the walk (`page`: post ids newest first, each with whether it is
    /// wanted): returns the ids to take (above the mark, wanted, within the allowance) and
    /// whether the walk goes on. `next` is where the next page starts, `end` whether this
    /// was the listing's last page. The walk ends at the mark, the allowance, the end, or
    /// when `next` does not lead on (below `before` for post ids, above it for pages);
    /// then its top becomes the mark.
    fn back(
        &mut self,
        mut walk: Walk,
        page: &[(u64, bool)],
        next: Option<u64>,
        end: bool,
        searching: bool,
    ) -> (Vec<u64>, bool) {
        let mut taken = Vec::new();
        let mut reached = false;
        for &(id, wanted) in page {
            walk.top = Some(walk.top.map_or(id, |top| top.max(id)));
            if self.mark.is_some_and(|mark| id <= mark) {
                reached = true;
                continue;
            }
            if walk.left == 0 || !wanted || taken.contains(&id) {
                continue;
            }
            taken.push(id);
            walk.left -= 1;
        }
        let stuck = match (next, walk.before) {
            (Some(next), Some(before)) if searching => next <= before,
            (Some(next), Some(before)) => next >= before,
            _ => false,
        };
        // An empty page is the end only when its caller says so (`end`): a window of ids
        // read one by one may hold nothing to take with older posts below it.
        if reached || walk.left == 0 || end || stuck || next.is_none() {
            let top = walk.top.into_iter().chain(self.mark).max();
            self.mark = top;
            self.walk = None;
            (taken, false)
        } else {
            walk.before = next;
            walk.done.clear();
            self.walk = Some(walk);
            (taken, true)
        }
    }
}

/// A category's id as last looked up.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
struct Kept {
    /// None: the forum has no such category (404).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    id: Option<u64>,
    /// When it was looked up (Unix seconds).
    #[serde(default)]
    at: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    warning: Option<String>,
}

/// Where a Discourse source stands.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
struct DiscourseCursor {
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    streams: BTreeMap<String, Stream>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    categories: BTreeMap<String, Kept>,
}

impl DiscourseCursor {
    /// Reads a stored cursor; one this version cannot read starts over (a first sync).
    fn decode(cursor: Option<&Cursor>) -> DiscourseCursor {
        cursor
            .and_then(|cursor| serde_json::from_str(&cursor.0).ok())
            .unwrap_or_default()
    }

    fn encode(&self) -> Cursor {
        Cursor(serde_json::to_string(self).expect("a cursor serialises"))
    }
}

/// What the category filter is in one pull.
enum Filter {
    /// No categories configured.
    All,
    /// The ids of the configured categories found.
    Only(HashSet<u64>),
    /// A category could not be looked up and no id is kept for it: nothing is read, as its
    /// posts would be passed over.
    Unknown(ConnectorError),
    /// Every configured category answered 404.
    None,
}

impl Filter {
    fn wants(&self, category: Option<u64>) -> bool {
        match self {
            Filter::All => true,
            Filter::Only(ids) => category.is_some_and(|id| ids.contains(&id)),
            Filter::Unknown(_) | Filter::None => false,
        }
    }
}

/// An answer, or one of the statuses the caller takes as "not there".
enum Asked {
    Got(Value),
    /// The status, one of those the caller named.
    Gone(u16),
}

/// Whether `err` is the body cap's (http.rs says "larger than").
fn oversized(err: &ConnectorError) -> bool {
    matches!(err, ConnectorError::Payload(message) if message.contains("larger than"))
}

/// The `gap`-th window of [`PAGE`] ids above `mark`. Saturating: a hostile forum's id near
/// `u64::MAX` gives a short or empty window, never an overflow.
fn above(mark: u64, gap: u64) -> std::ops::Range<u64> {
    let from = mark
        .saturating_add(1)
        .saturating_add(gap.saturating_mul(PAGE as u64));
    from..from.saturating_add(PAGE as u64)
}

fn id_of(post: &Value) -> Option<u64> {
    post.get("id").and_then(Value::as_u64)
}

fn time(post: &Value, field: &str) -> Option<DateTime<Utc>> {
    post.get(field)
        .and_then(Value::as_str)
        .and_then(|at| DateTime::parse_from_rfc3339(at).ok())
        .map(|at| at.with_timezone(&Utc))
}

pub struct DiscourseConnector {
    client: reqwest::Client,
    config: DiscourseConfig,
}

impl DiscourseConnector {
    pub fn new(client: reqwest::Client, config: DiscourseConfig) -> DiscourseConnector {
        DiscourseConnector { client, config }
    }

    fn host(&self) -> String {
        reqwest::Url::parse(&self.config.base_url)
            .ok()
            .and_then(|url| url.host_str().map(str::to_owned))
            .unwrap_or_default()
    }

    /// `base_url` + `path` with `query` encoded.
    fn url(&self, path: &str, query: &[(&str, String)]) -> Result<reqwest::Url, ConnectorError> {
        let mut url = reqwest::Url::parse(&format!("{}{path}", self.config.base_url))
            .map_err(|_| ConnectorError::Config("base_url: not a URL".into()))?;
        if !query.is_empty() {
            let mut pairs = url.query_pairs_mut();
            for (key, value) in query {
                pairs.append_pair(key, value);
            }
        }
        Ok(url)
    }

    fn request(&self, method: reqwest::Method, url: reqwest::Url) -> reqwest::RequestBuilder {
        self.client
            .request(method, url)
            .header("api-key", &self.config.api_key)
            .header("api-username", &self.config.api_username)
            .header("accept", "application/json")
            .header("user-agent", concat!("rapport/", env!("CARGO_PKG_VERSION")))
    }

    /// Sends a request; a status in `gone` is [`Asked::Gone`], another failure the error
    /// it means (`what`, the path, names it in messages).
    async fn send(
        &self,
        request: reqwest::RequestBuilder,
        what: &str,
        writing: bool,
        gone: &[u16],
    ) -> Result<Asked, ConnectorError> {
        let now = Utc::now();
        let response = request.send().await.map_err(http::transport)?;
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let host = self.host();
        if gone.contains(&status) {
            return Ok(Asked::Gone(status));
        }
        // The client follows redirects within the forum's origin only (the key travels in
        // headers reqwest would carry to any host): a hop elsewhere ends here.
        if (300..400).contains(&status) {
            let to = headers
                .get(reqwest::header::LOCATION)
                .and_then(|location| location.to_str().ok())
                .and_then(|location| response.url().join(location).ok())
                .map(|url| format!(" ({})", url.origin().ascii_serialization()))
                .unwrap_or_default();
            return Err(ConnectorError::Config(format!(
                "base_url: {host} answered {what} with {status}, a redirect to another address{to}; \
                 set base_url to the forum's own address (the key is not sent elsewhere)"
            )));
        }
        let body = http::read_capped(response, MAX_BODY_BYTES)
            .await
            .map_err(|err| match err {
                ConnectorError::Payload(message) => {
                    ConnectorError::Payload(format!("{host} answered {what}: {message}"))
                }
                other => other,
            })?;
        if (200..300).contains(&status) {
            return serde_json::from_slice(&body)
                .map(Asked::Got)
                .map_err(|err| {
                    ConnectorError::Payload(format!(
                        "{host} answered {what} with invalid JSON: {err}"
                    ))
                });
        }
        Err(failure(status, &headers, &body, now, &host, what, writing))
    }

    async fn get(
        &self,
        path: &str,
        query: &[(&str, String)],
        gone: &[u16],
    ) -> Result<Asked, ConnectorError> {
        let url = self.url(path, query)?;
        self.send(self.request(reqwest::Method::GET, url), path, false, gone)
            .await
    }

    async fn get_json(
        &self,
        path: &str,
        query: &[(&str, String)],
    ) -> Result<Value, ConnectorError> {
        match self.get(path, query, &[]).await? {
            Asked::Got(value) => Ok(value),
            Asked::Gone(_) => unreachable!("no status is taken as gone"),
        }
    }

    /// A page of the latest posts (`before`: below that id).
    async fn latest(&self, before: Option<u64>) -> Result<Vec<Value>, ConnectorError> {
        let query: Vec<(&str, String)> = before
            .map(|before| ("before", before.to_string()))
            .into_iter()
            .collect();
        let page = self.get_json("/posts.json", &query).await?;
        let posts = page
            .get("latest_posts")
            .and_then(Value::as_array)
            .ok_or_else(|| {
                ConnectorError::Payload(format!(
                    "{} answered /posts.json without latest_posts",
                    self.host()
                ))
            })?;
        let mut posts: Vec<Value> = posts
            .iter()
            .filter(|p| id_of(p).is_some())
            .cloned()
            .collect();
        // A page below `before` holds only ids below it.
        if let Some(before) = before {
            posts.retain(|p| id_of(p).is_some_and(|id| id < before));
        }
        posts.sort_by_key(|p| std::cmp::Reverse(id_of(p)));
        Ok(posts)
    }

    /// The posts with ids in `ids`, read one by one (404 or 403: skipped; 401 fails), each
    /// with its topic's category and title, read once per topic; private messages and
    /// posts of topics that cannot be read are dropped. Newest first, with the highest id
    /// that answered at all (200 or 403: a post that exists, though none of ours to take).
    async fn window(
        &self,
        ids: std::ops::Range<u64>,
    ) -> Result<(Vec<Value>, Option<u64>), ConnectorError> {
        let mut posts = Vec::new();
        let mut existing = None;
        for id in ids.rev() {
            match self
                .get(&format!("/posts/{id}.json"), &[], &[403, 404])
                .await?
            {
                Asked::Got(post) => {
                    existing = existing.max(Some(id));
                    if id_of(&post) == Some(id) {
                        posts.push(post);
                    }
                }
                Asked::Gone(403) => existing = existing.max(Some(id)),
                Asked::Gone(_) => {}
            }
        }
        let mut topics: HashMap<u64, Option<Value>> = HashMap::new();
        for post in &posts {
            let Some(topic) = post.get("topic_id").and_then(Value::as_u64) else {
                continue;
            };
            if topics.contains_key(&topic) {
                continue;
            }
            let read = match self
                .get(&format!("/t/{topic}.json"), &[], &[403, 404])
                .await?
            {
                Asked::Got(read) => Some(read),
                Asked::Gone(_) => None,
            };
            topics.insert(topic, read);
        }
        let posts = posts
            .into_iter()
            .filter_map(|mut post| {
                let topic_id = post.get("topic_id").and_then(Value::as_u64)?;
                let topic = topics.get(&topic_id)?.as_ref()?;
                if topic.get("archetype").and_then(Value::as_str) == Some("private_message") {
                    return None;
                }
                post["category_id"] = topic.get("category_id").cloned().unwrap_or(Value::Null);
                if post.get("topic_title").is_none_or(Value::is_null) {
                    post["topic_title"] = topic.get("title").cloned().unwrap_or(Value::Null);
                }
                Some(post)
            })
            .collect();
        Ok((posts, existing))
    }

    /// The category filter of this pull: ids kept within [`CATEGORY_TTL_SECS`], else looked
    /// up (`/c/{slug}/show.json`; an id as configured is used as it is).
    async fn categories(
        &self,
        kept: &mut BTreeMap<String, Kept>,
        not_before: &mut Option<DateTime<Utc>>,
    ) -> Result<Filter, ConnectorError> {
        if self.config.categories.is_empty() {
            kept.clear();
            return Ok(Filter::All);
        }
        kept.retain(|name, _| self.config.categories.contains(name));
        let now = Utc::now().timestamp();
        let mut ids = HashSet::new();
        let mut unknown = None;
        for name in &self.config.categories {
            if let Ok(id) = name.parse::<u64>() {
                ids.insert(id);
                continue;
            }
            let old = kept.get(name).cloned();
            if let Some(old) = old.as_ref().filter(|old| now - old.at < CATEGORY_TTL_SECS) {
                ids.extend(old.id);
                continue;
            }
            let path = format!("/c/{name}/show.json");
            let looked = match self.get(&path, &[], &[404]).await {
                Ok(Asked::Got(shown)) => {
                    match shown.pointer("/category/id").and_then(Value::as_u64) {
                        Some(id) => Ok(Some(id)),
                        None => Err(ConnectorError::Payload(format!(
                            "{} answered {path} without the category's id",
                            self.host()
                        ))),
                    }
                }
                Ok(Asked::Gone(_)) => Ok(None),
                Err(ConnectorError::RateLimited { retry_after_secs }) => {
                    http::wait_out(not_before, retry_after_secs);
                    return Err(ConnectorError::RateLimited { retry_after_secs });
                }
                Err(err @ (ConnectorError::Payload(_) | ConnectorError::Transport(_))) => Err(err),
                Err(err) => return Err(err),
            };
            let entry = match looked {
                Ok(Some(id)) => Kept {
                    id: Some(id),
                    at: now,
                    warning: None,
                },
                Ok(None) => Kept {
                    id: None,
                    at: now,
                    warning: Some(format!(
                        "{path} answered 404: no such category, or the key cannot see it; its posts are not read"
                    )),
                },
                // Failed otherwise: the id kept from before stands (looked up again next
                // pull); without one, nothing is read in this pull.
                Err(err) => match old.as_ref().and_then(|old| old.id) {
                    Some(id) => Kept {
                        id: Some(id),
                        at: old.as_ref().map_or(0, |old| old.at),
                        warning: Some(format!("{err}; the id kept from before is used")),
                    },
                    None => {
                        let warning = format!("{err}; no stream is read until it answers");
                        unknown.get_or_insert(err);
                        Kept {
                            id: None,
                            at: 0,
                            warning: Some(warning),
                        }
                    }
                },
            };
            ids.extend(entry.id);
            kept.insert(name.clone(), entry);
        }
        Ok(match unknown {
            Some(err) => Filter::Unknown(err),
            None if ids.is_empty() => Filter::None,
            None => Filter::Only(ids),
        })
    }

    /// Reads the `posts` stream while the pull's budget lasts; returns whether it goes on.
    async fn walk_latest(
        &self,
        stream: &mut Stream,
        filter: &Filter,
        taken: &mut Vec<Value>,
        spent: &(dyn Fn(usize) -> bool + Sync),
    ) -> Result<bool, ConnectorError> {
        let wants = |post: &Value| filter.wants(post.get("category_id").and_then(Value::as_u64));
        for _ in 0..MAX_PAGES {
            let walk = stream.walk(self.config.backfill_limit);
            let (posts, next, end) = match self.latest(walk.before).await {
                Err(err) if oversized(&err) => match (walk.before, stream.mark) {
                    // The page below `before`, post by post.
                    (Some(before), _) => {
                        // A window with nothing to take is not the end: the walk goes on
                        // below it (`back` ends it at id 1).
                        let from = before.saturating_sub(PAGE as u64).max(1);
                        let (posts, _) = self.window(from..before).await?;
                        (posts, Some(from), from <= 1)
                    }
                    // The newest page: the ids above the mark, then the newest page again.
                    (None, Some(mark)) => {
                        // A window may hold nothing to take (private messages, deleted or
                        // forbidden posts): the mark moves over the ids that answered. One
                        // where no id answers (ids never made, or destroyed) is passed for
                        // the next, [`GAP_WINDOWS`] at most; the mark stays when none
                        // answers, as those ids may not exist yet.
                        let mut found = None;
                        for gap in 0..GAP_WINDOWS {
                            let ids = above(mark, gap);
                            if ids.is_empty() {
                                break;
                            }
                            let (posts, existing) = self.window(ids).await?;
                            if let Some(top) = existing {
                                found = Some((posts, top));
                                break;
                            }
                        }
                        let Some((posts, top)) = found else {
                            stream.warning = Some(format!(
                                "{err}; no post was found in the {} ids above {mark} one by one: waiting for newer posts",
                                GAP_WINDOWS * PAGE as u64
                            ));
                            return Ok(false);
                        };
                        taken.extend(posts.into_iter().filter(|post| wants(post)));
                        stream.mark = Some(top);
                        stream.walk = None;
                        if spent(taken.len()) {
                            return Ok(true);
                        }
                        continue;
                    }
                    (None, None) => {
                        stream.warning = Some(format!(
                            "{err}; a first sync waits until newer posts push the long ones off the newest page"
                        ));
                        return Ok(false);
                    }
                },
                answer => {
                    let posts = answer?;
                    let next = posts.iter().filter_map(id_of).min();
                    // Only an empty page or id 1 is the start: a short page is not, since
                    // older Discourse pages by a window of 50 ids and every version drops
                    // the posts the key may not see, so a page mid-walk can hold fewer
                    // than 50. A page that does not lead lower ends the walk in `back`.
                    let end = posts.is_empty() || next.is_some_and(|next| next <= 1);
                    (posts, next, end)
                }
            };
            let page: Vec<(u64, bool)> = posts
                .iter()
                .filter_map(|post| Some((id_of(post)?, wants(post))))
                .collect();
            let (picked, goes_on) = stream.back(walk, &page, next, end, false);
            taken.extend(
                posts
                    .into_iter()
                    .filter(|post| id_of(post).is_some_and(|id| picked.contains(&id))),
            );
            if !goes_on {
                return Ok(false);
            }
            if spent(taken.len()) {
                return Ok(true);
            }
        }
        Ok(true)
    }

    /// Reads a `search:{keyword}` stream while the pull's budget lasts; returns whether it
    /// goes on.
    async fn walk_search(
        &self,
        keyword: &str,
        stream: &mut Stream,
        filter: &Filter,
        taken: &mut Vec<Value>,
        spent: &(dyn Fn(usize) -> bool + Sync),
    ) -> Result<bool, ConnectorError> {
        for _ in 0..MAX_PAGES {
            let walk = stream.walk(self.config.backfill_limit);
            let number = walk.before.unwrap_or(1);
            if number > SEARCH_PAGES {
                // A walk stored past the last page Discourse answers ends there.
                stream.back(walk, &[], None, true, true);
                return Ok(false);
            }
            let answer = self
                .get_json(
                    "/search.json",
                    &[
                        ("q", format!("{keyword} order:latest")),
                        ("page", number.to_string()),
                    ],
                )
                .await?;
            let topics: HashMap<u64, &Value> = answer
                .get("topics")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(|topic| Some((id_of(topic)?, topic)))
                .collect();
            let matches: Vec<(u64, u64)> = answer
                .get("posts")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(|post| Some((id_of(post)?, post.get("topic_id")?.as_u64()?)))
                .collect();
            let more = answer
                .pointer("/grouped_search_result/more_full_page_results")
                .and_then(Value::as_bool)
                .unwrap_or(false);
            let wanted = |topic: u64| {
                topics.get(&topic).is_some_and(|topic| {
                    topic.get("archetype").and_then(Value::as_str) != Some("private_message")
                        && filter.wants(topic.get("category_id").and_then(Value::as_u64))
                })
            };
            let page: Vec<(u64, bool)> = matches.iter().map(|&(id, t)| (id, wanted(t))).collect();
            let next = (more && number < SEARCH_PAGES).then_some(number + 1);
            let mut after = stream.clone();
            let (picked, goes_on) = after.back(walk.clone(), &page, next, !more, true);
            let mut done = walk.done.clone();
            for id in picked {
                if done.contains(&id) {
                    continue;
                }
                let read = self
                    .get(&format!("/posts/{id}.json"), &[], &[403, 404])
                    .await;
                match read {
                    Ok(Asked::Got(mut post)) if id_of(&post) == Some(id) => {
                        let topic = matches
                            .iter()
                            .find(|(match_id, _)| *match_id == id)
                            .and_then(|(_, topic)| topics.get(topic));
                        if let Some(topic) = topic {
                            post["topic_title"] = topic.get("title").cloned().unwrap_or_default();
                            post["category_id"] =
                                topic.get("category_id").cloned().unwrap_or_default();
                        }
                        taken.push(post);
                    }
                    Ok(_) => {}
                    Err(err) => {
                        // Keep the page's place and what of it was read.
                        let mut kept = walk;
                        kept.done = done;
                        stream.walk = Some(kept);
                        return Err(err);
                    }
                }
                done.push(id);
            }
            *stream = after;
            if more && number >= SEARCH_PAGES {
                stream.warning = Some(format!(
                    "matches older than Discourse's {SEARCH_PAGES} search pages were not read"
                ));
            }
            if !goes_on {
                return Ok(false);
            }
            if spent(taken.len()) {
                return Ok(true);
            }
        }
        Ok(true)
    }

    /// After a lost answer: this reply's post, if Discourse made it (see the module doc).
    async fn posted(
        &self,
        topic: u64,
        number: Option<u64>,
        marker: &str,
        started: DateTime<Utc>,
    ) -> Option<Value> {
        let since = started - READ_BACK_WINDOW;
        let mut before = None;
        for _ in 0..READ_BACK_PAGES {
            let posts = self.latest(before).await.ok()?;
            let found = posts.iter().find(|post| {
                let ours = post
                    .get("username")
                    .and_then(Value::as_str)
                    .is_some_and(|name| name.eq_ignore_ascii_case(&self.config.api_username));
                let here = post.get("topic_id").and_then(Value::as_u64) == Some(topic);
                let answers = match post.get("reply_to_post_number").and_then(Value::as_u64) {
                    Some(to) => Some(to) == number,
                    None => matches!(number, None | Some(1)),
                };
                let marked = post
                    .get("raw")
                    .and_then(Value::as_str)
                    .is_some_and(|raw| raw.trim_end().ends_with(marker));
                let recent = time(post, "created_at").is_some_and(|at| at >= since);
                ours && here && answers && marked && recent
            });
            if let Some(found) = found {
                return Some(found.clone());
            }
            let oldest = posts.last()?;
            if time(oldest, "created_at").is_none_or(|at| at < since) || posts.len() < PAGE {
                return None;
            }
            before = id_of(oldest);
        }
        None
    }

    /// The forum in an identity: `base_url`'s host, its port when not the scheme's
    /// default, and its path (`forum.example.com/community`). Identities are unique per
    /// workspace and channel, not per source, and user ids are per forum: user 42 of two
    /// forums are two people. The scheme is left out so that moving to https keeps them.
    fn forum(&self) -> String {
        reqwest::Url::parse(&self.config.base_url)
            .ok()
            .and_then(|url| {
                let host = url.host_str()?.to_owned();
                let port = url
                    .port()
                    .map(|port| format!(":{port}"))
                    .unwrap_or_default();
                Some(format!("{host}{port}{}", url.path().trim_end_matches('/')))
            })
            .unwrap_or_else(|| self.config.base_url.clone())
    }

    /// The origin of `base_url` (`https://forum.example.com`), for avatar paths.
    fn origin(&self) -> String {
        reqwest::Url::parse(&self.config.base_url)
            .map(|url| url.origin().ascii_serialization())
            .unwrap_or_default()
    }

    /// The avatar of `avatar_template` at 120 pixels: the forum's own path, or an https URL.
    fn avatar(&self, template: &str) -> Option<String> {
        let url = template.replace("{size}", "120");
        if url.starts_with('/') && !url.starts_with("//") {
            Some(format!("{}{url}", self.origin()))
        } else if url.starts_with("https://") {
            Some(url)
        } else {
            None
        }
    }

    /// A post as an item; `None` for a system user's, a deleted, hidden or irregular one,
    /// or one lacking what every item has. `numbers` maps (topic, post number) to the ids
    /// of this pull's posts.
    fn item(&self, post: &Value, numbers: &HashMap<(u64, u64), u64>) -> Option<InboundItem> {
        let user_id = post.get("user_id")?.as_i64().filter(|id| *id > 0)?;
        let deleted = !post.get("deleted_at").is_none_or(Value::is_null)
            || post.get("user_deleted").and_then(Value::as_bool) == Some(true)
            || post.get("hidden").and_then(Value::as_bool) == Some(true);
        if deleted || post.get("post_type").and_then(Value::as_u64).unwrap_or(1) != 1 {
            return None;
        }
        let id = id_of(post)?;
        let topic = post.get("topic_id")?.as_u64()?;
        let number = post.get("post_number")?.as_u64()?;
        let username = post.get("username")?.as_str()?.to_owned();
        let text_of = |key: &str| {
            post.get(key)
                .and_then(Value::as_str)
                .map(str::trim)
                .filter(|s| !s.is_empty())
        };
        let text = match text_of("raw") {
            Some(raw) => unmarked(raw).to_owned(),
            None => crate::text::html_to_text(text_of("cooked").unwrap_or_default()),
        };
        let ours = username.eq_ignore_ascii_case(&self.config.api_username);
        let kind = if number == 1 { "post" } else { "comment" };
        let kind = if !ours && mentions(&text, &self.config.api_username) {
            "mention"
        } else {
            kind
        };
        let in_reply_to = (number > 1)
            .then(|| {
                let to = post
                    .get("reply_to_post_number")
                    .and_then(Value::as_u64)
                    .unwrap_or(1);
                numbers.get(&(topic, to))
            })
            .flatten()
            .map(|id| format!("post:{id}"));
        let profile = self
            .url(&format!("/u/{}", urlencoding_path(&username)), &[])
            .ok()
            .map(String::from);
        Some(InboundItem {
            external_id: format!("post:{id}"),
            author: Author {
                platform_id: format!("{}#{user_id}", self.forum()),
                handle: Some(username.clone()),
                display_name: Some(text_of("name").unwrap_or(&username).to_owned()),
                profile_url: profile,
                avatar_url: text_of("avatar_template").and_then(|t| self.avatar(t)),
                email: None,
                phone: None,
                links: Vec::new(),
            },
            outbound: ours,
            kind: kind.to_owned(),
            subject: (number == 1)
                .then(|| text_of("topic_title").map(str::to_owned))
                .flatten(),
            text,
            html: None,
            url: Some(format!("{}/t/{topic}/{number}", self.config.base_url)),
            language: None,
            occurred_at: time(post, "created_at")?,
            thread_key: Some(format!("topic:{topic}")),
            in_reply_to,
            raw: post.clone(),
        })
    }
}

/// Checks `X-Discourse-Event-Signature: sha256=<hex HMAC-SHA256 of the body>` keyed with
/// the secret's bytes, in constant time (`Mac::verify_slice`). The messages never hold the
/// secret or what was sent in its place.
fn verify(secret: &str, signature: Option<&str>, body: &[u8]) -> Result<(), WebhookError> {
    let refused = |message: &str| Err(WebhookError::Unauthenticated(message.to_owned()));
    let Some(signature) = signature else {
        return refused(
            "the delivery carries no X-Discourse-Event-Signature: give the webhook a Secret in Discourse",
        );
    };
    let Some(digest) = signature
        .trim()
        .strip_prefix("sha256=")
        .and_then(|hex| hex::decode(hex).ok())
    else {
        return refused("the X-Discourse-Event-Signature header is malformed");
    };
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes keys of any length");
    mac.update(body);
    match mac.verify_slice(&digest) {
        Ok(()) => Ok(()),
        Err(_) => {
            refused("the X-Discourse-Event-Signature does not match the source's webhook_secret")
        }
    }
}

/// Whether a delivered post is in a private message: its `topic_archetype`, or, from a
/// Discourse too old to send one, a topic without a category (every public topic has one).
fn private(post: &Value) -> bool {
    match post.get("topic_archetype").and_then(Value::as_str) {
        Some(archetype) => archetype == "private_message",
        None => post.get("category_id").is_none_or(Value::is_null),
    }
}

/// `segment` percent-encoded for a URL path.
fn urlencoding_path(segment: &str) -> String {
    segment
        .bytes()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.' | b'~') {
                (c as char).to_string()
            } else {
                format!("%{c:02X}")
            }
        })
        .collect()
}

/// Whether `text` names `username` as `@username` (not inside a longer name).
fn mentions(text: &str, username: &str) -> bool {
    let (text, username) = (text.to_lowercase(), username.to_lowercase());
    let needle = format!("@{username}");
    let bytes = text.as_bytes();
    let word = |c: u8| c.is_ascii_alphanumeric() || c == b'-' || c == b'_';
    text.match_indices(&needle).any(|(at, _)| {
        let before = at.checked_sub(1).map(|i| bytes[i]);
        let after = bytes.get(at + needle.len()).copied();
        !before.is_some_and(|c| word(c) || c == b'@') && !after.is_some_and(word)
    })
}

/// What a failed answer means: 429 a rate limit (the later of `Retry-After` and
/// `extras.wait_seconds`), 401/403 refused credentials (to a reply, 403 also a place the
/// user may not post in), 5xx an outage (retried), other 4xx a payload error.
fn failure(
    status: u16,
    headers: &HeaderMap,
    body: &[u8],
    now: DateTime<Utc>,
    host: &str,
    what: &str,
    writing: bool,
) -> ConnectorError {
    let parsed: Value = serde_json::from_slice(body).unwrap_or_default();
    let message: String = parsed
        .pointer("/errors/0")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .chars()
        .take(200)
        .collect();
    let said = if message.is_empty() {
        String::new()
    } else {
        format!(" ({message})")
    };
    match status {
        429 => {
            let header = http::not_before(headers, now).map(|at| (at - now).num_seconds());
            let extras = parsed
                .pointer("/extras/wait_seconds")
                .and_then(|secs| secs.as_f64())
                .map(|secs| secs.ceil() as i64);
            let secs = header.into_iter().chain(extras).max();
            ConnectorError::RateLimited {
                retry_after_secs: secs.map(|secs| secs.clamp(1, MAX_WAIT_SECS) as u64),
            }
        }
        401 => ConnectorError::Unauthorized(format!(
            "{host} answered {what} with 401{said}: check api_key and api_username"
        )),
        403 if writing => ConnectorError::Unauthorized(format!(
            "{host} answered {what} with 403{said}: api_username may not post there (a closed \
             or archived topic, a category it cannot reply in), or api_key and api_username \
             are wrong"
        )),
        403 => ConnectorError::Unauthorized(format!(
            "{host} answered {what} with 403{said}: check api_key and api_username"
        )),
        500.. => ConnectorError::Transport(format!("{host} answered {what} with {status}")),
        _ => ConnectorError::Payload(format!("{host} answered {what} with {status}{said}")),
    }
}

impl DiscourseConnector {
    /// A webhook delivery (see the module doc): verified, then mapped as a pull maps the
    /// same post.
    /// The delivery's signature checked against `webhook_secret`, nothing parsed.
    pub(crate) fn check_signature(
        &self,
        request: &WebhookRequest<'_>,
        body: &[u8],
    ) -> Result<(), WebhookError> {
        let secret = self
            .config
            .webhook_secret
            .as_deref()
            .ok_or(WebhookError::Unsupported)?;
        verify(secret, request.header("x-discourse-event-signature"), body)
    }

    pub(crate) fn hook(
        &self,
        request: &WebhookRequest<'_>,
        body: &[u8],
    ) -> Result<Hooked, WebhookError> {
        self.check_signature(request, body)?;
        let kind = request.header("x-discourse-event-type").unwrap_or_default();
        let name = request.header("x-discourse-event").unwrap_or_default();
        if kind == "ping" {
            return Ok(Hooked::Ignored("ping: the webhook is set up".into()));
        }
        let payload_error = |field: &'static str, message: &str| WebhookError::Payload {
            field,
            message: message.to_owned(),
        };
        let payload: Value = serde_json::from_slice(body).map_err(|_| {
            payload_error(
                "body",
                "not valid JSON (set the webhook's Content Type to application/json)",
            )
        })?;
        if !payload.is_object() {
            return Err(payload_error("body", "must be a JSON object"));
        }
        // A topic's opening post comes as its own `post_created`, with the topic's title.
        if kind != "post" {
            let what = if kind.is_empty() { "an unnamed" } else { kind };
            return Ok(Hooked::Ignored(format!(
                "{what} event is not listened to (posts are)"
            )));
        }
        // The event's name is not signed (only the body is): a post is taken for what its
        // body says, so a destroyed post named `post_created` is still skipped by its
        // `deleted_at`.
        if !matches!(name, "post_created" | "post_edited" | "post_recovered") {
            let name = if name.is_empty() {
                "a post event without X-Discourse-Event"
            } else {
                name
            };
            return Ok(Hooked::Ignored(format!("`{name}` is not listened to")));
        }
        let post = payload
            .get("post")
            .filter(|post| post.is_object())
            .ok_or_else(|| payload_error("post", "missing from the event"))?;
        for (field, present) in [
            ("post.id", id_of(post).is_some()),
            (
                "post.topic_id",
                post.get("topic_id").and_then(Value::as_u64).is_some(),
            ),
            (
                "post.post_number",
                post.get("post_number").and_then(Value::as_u64).is_some(),
            ),
            (
                "post.username",
                post.get("username").and_then(Value::as_str).is_some(),
            ),
            ("post.created_at", time(post, "created_at").is_some()),
        ] {
            if !present {
                return Err(payload_error(field, "missing or not of Discourse's type"));
            }
        }
        if private(post) {
            return Ok(Hooked::Ignored(
                "a private message: not read, as a pull reads none".into(),
            ));
        }
        if !self.wants_category(post) {
            return Ok(Hooked::Ignored(
                "the post's category is not one of the source's categories".into(),
            ));
        }
        // The answered post is named by its number, not its id: no `in_reply_to`, as a
        // pull gives when the answered post is not in the same pull.
        match self.item(post, &HashMap::new()) {
            Some(item) => Ok(Hooked::Items(vec![item])),
            None => Ok(Hooked::Ignored(
                "a system user's, deleted, hidden, whispered or small-action post: not stored, as a pull skips it".into(),
            )),
        }
    }

    /// Whether a delivered post is in one of `categories` (all when none is named): by the
    /// `category_id`, or the `category_slug` for a category named by its slug (a
    /// delivery is answered without asking the forum).
    fn wants_category(&self, post: &Value) -> bool {
        if self.config.categories.is_empty() {
            return true;
        }
        let id = post.get("category_id").and_then(Value::as_u64);
        let slug = post
            .get("category_slug")
            .and_then(Value::as_str)
            .map(str::to_lowercase);
        self.config.categories.iter().any(|name| {
            id.is_some_and(|id| name == &id.to_string()) || slug.as_deref() == Some(name)
        })
    }
}

#[async_trait::async_trait]
impl Connector for DiscourseConnector {
    fn channel(&self) -> Channel {
        Channel::Discourse
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            pull: true,
            webhook: self.config.webhook_secret.is_some(),
            reply: true,
        }
    }

    fn verify(&self, request: &WebhookRequest<'_>, body: &[u8]) -> Result<(), WebhookError> {
        self.check_signature(request, body)
    }

    async fn webhook(
        &self,
        request: &WebhookRequest<'_>,
        body: &[u8],
    ) -> Result<Hooked, WebhookError> {
        self.hook(request, body)
    }

    async fn pull(&self, cursor: Option<&Cursor>) -> Result<Pull, ConnectorError> {
        let started = std::time::Instant::now();
        let mut state = DiscourseCursor::decode(cursor);
        let mut not_before = None;
        let filter = match self
            .categories(&mut state.categories, &mut not_before)
            .await
        {
            Ok(filter) => filter,
            // Nothing read yet: come back when Discourse says, from the same place.
            Err(ConnectorError::RateLimited { .. }) => {
                return Ok(Pull {
                    items: Vec::new(),
                    next_cursor: Some(state.encode()),
                    more: true,
                    not_before,
                })
            }
            Err(err) => return Err(err),
        };
        let mut names = vec!["posts".to_owned()];
        names.extend(self.config.keywords.iter().map(|k| format!("search:{k}")));
        let mut streams = BTreeMap::new();
        let mut taken: Vec<Value> = Vec::new();
        let mut more = false;
        let mut failures = Vec::new();
        for name in names {
            let mut stream = state.streams.remove(&name).unwrap_or_default();
            let stopped = not_before.is_some_and(|at| at > Utc::now());
            let refused = match &filter {
                Filter::Unknown(err) => Some(format!(
                    "not read: a category could not be looked up ({err})"
                )),
                Filter::None => Some("not read: none of the categories exists".to_owned()),
                Filter::All | Filter::Only(_) => None,
            };
            if stopped {
                more = true;
            } else if let Some(refused) = refused {
                stream.warning = Some(refused.clone());
                failures.push(match &filter {
                    Filter::Unknown(ConnectorError::Transport(err)) => {
                        ConnectorError::Transport(err.clone())
                    }
                    _ => ConnectorError::Payload(refused),
                });
            } else {
                stream.warning = None;
                let before = taken.len();
                let spent = |count: usize| {
                    before + count + PAGE > PULL_ITEMS
                        || started.elapsed() >= PULL_TIME
                        || not_before.is_some_and(|at| at > Utc::now())
                };
                let mut values = Vec::new();
                let walked = match name.strip_prefix("search:") {
                    Some(keyword) => {
                        self.walk_search(keyword, &mut stream, &filter, &mut values, &spent)
                            .await
                    }
                    None => {
                        self.walk_latest(&mut stream, &filter, &mut values, &spent)
                            .await
                    }
                };
                let took = !values.is_empty();
                taken.extend(values);
                match walked {
                    Ok(goes_on) => more |= goes_on,
                    Err(ConnectorError::RateLimited { retry_after_secs }) => {
                        http::wait_out(&mut not_before, retry_after_secs);
                        more = true;
                    }
                    // What the earlier pages gave is kept, and the next batch asks the
                    // failed page again (a failure then is the sync's error).
                    Err(err @ (ConnectorError::Payload(_) | ConnectorError::Transport(_))) => {
                        stream.warning = Some(err.to_string());
                        more |= took;
                        failures.push(err);
                    }
                    Err(err) => return Err(err),
                }
            }
            streams.insert(name, stream);
        }
        // Every stream failed: the source's error, not a quiet empty sync.
        if !failures.is_empty() && failures.len() == streams.len() && taken.is_empty() {
            return Err(failures.remove(0));
        }
        state.streams = streams;

        let numbers: HashMap<(u64, u64), u64> = taken
            .iter()
            .filter_map(|post| {
                Some((
                    (
                        post.get("topic_id")?.as_u64()?,
                        post.get("post_number")?.as_u64()?,
                    ),
                    id_of(post)?,
                ))
            })
            .collect();
        let mut seen = HashSet::new();
        let mut items: Vec<InboundItem> = taken
            .iter()
            .filter_map(|post| self.item(post, &numbers))
            .filter(|item| seen.insert(item.external_id.clone()))
            .collect();
        items.sort_by(|a, b| (a.occurred_at, &a.external_id).cmp(&(b.occurred_at, &b.external_id)));
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
        let length = text.chars().count();
        if length > MAX_REPLY_CHARS {
            return Err(ConnectorError::Payload(format!(
                "the reply has {length} characters; Discourse takes at most {MAX_REPLY_CHARS} \
                 ({MAX_POST_CHARS} with the reply's hidden marker)"
            )));
        }
        let topic = to
            .thread_key
            .as_deref()
            .and_then(|key| key.strip_prefix("topic:"))
            .and_then(|id| id.parse::<u64>().ok())
            .or_else(|| to.context.get("topic_id").and_then(Value::as_u64))
            .ok_or_else(|| {
                ConnectorError::Payload(format!(
                    "`{}` is not in a Discourse topic to answer",
                    to.external_id
                ))
            })?;
        let number = to.context.get("post_number").and_then(Value::as_u64);
        let marker = marker(&to.idempotency_key);
        let mut body = json!({ "topic_id": topic, "raw": format!("{text}\n\n{marker}") });
        if let Some(number) = number {
            body["reply_to_post_number"] = json!(number);
        }
        let url = self.url("/posts.json", &[])?;
        let started = Utc::now();
        let sent = self
            .send(
                self.request(reqwest::Method::POST, url).json(&body),
                "POST /posts.json",
                true,
                &[],
            )
            .await;
        let post = match sent {
            Ok(Asked::Got(post)) => post,
            Ok(Asked::Gone(_)) => unreachable!("no status is taken as gone"),
            // A timeout or a 5xx may hide a post Discourse made: ours, in this topic,
            // answering the same post, with this reply's marker, is the reply.
            Err(err @ ConnectorError::Transport(_)) => {
                match self.posted(topic, number, &marker, started).await {
                    Some(post) => post,
                    None => return Err(err),
                }
            }
            Err(err) => return Err(err),
        };
        let id = id_of(&post).ok_or_else(|| {
            ConnectorError::Payload(format!(
                "{} answered POST /posts.json without the post's id",
                self.host()
            ))
        })?;
        let url = post
            .get("post_number")
            .and_then(Value::as_u64)
            .map(|n| format!("{}/t/{topic}/{n}", self.config.base_url));
        Ok(Sent {
            external_id: format!("post:{id}"),
            url,
            text: text.to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    const KEY: &str = "4f1c8b2d9e7a6b5c4d3e2f1a0b9c8d7e6f5a4b3c2d1e0f9a8b7c6d5e4f3a2b1c";

    fn config() -> Value {
        json!({
            "base_url": "https://forum.example.com/",
            "api_key": KEY,
            "api_username": "acme_support",
            "categories": ["Support", 7, "support", "feature-requests"],
            "keywords": ["  csv   export ", "CSV export", "widgets"]
        })
    }

    fn connector() -> DiscourseConnector {
        DiscourseConnector::new(
            reqwest::Client::new(),
            DiscourseConfig::parse(&config()).unwrap(),
        )
    }

    /// A post as `GET /posts.json` lists it (docs.discourse.org, "List latest posts").
    fn post(id: u64, topic: u64, number: u64) -> Value {
        json!({
            "id": id, "name": "Maya Lin", "username": "maya", "user_id": 42,
            "avatar_template": "/user_avatar/forum.example.com/maya/{size}/12_2.png",
            "created_at": "2026-11-30T10:00:00.000Z", "cooked": "<p>Hello <b>there</b></p>",
            "post_number": number, "post_type": 1, "updated_at": "2026-11-30T10:00:00.000Z",
            "reply_to_post_number": null, "topic_id": topic, "topic_slug": "csv-export",
            "topic_title": "CSV export fails", "category_id": 7, "raw": "Hello **there**",
            "hidden": false, "deleted_at": null, "user_deleted": false
        })
    }

    #[test]
    fn the_config_is_checked_and_never_shows_the_key() {
        let parsed = DiscourseConfig::parse(&config()).unwrap();
        assert_eq!(parsed.base_url, "https://forum.example.com");
        assert_eq!(parsed.categories, ["support", "7", "feature-requests"]);
        assert_eq!(parsed.keywords, ["csv export", "widgets"]);
        assert_eq!(parsed.backfill_limit, DEFAULT_BACKFILL_LIMIT);
        assert!(!format!("{parsed:?}").contains(KEY));
        for (field, value) in [
            ("keywords", json!(["ab"])),
            ("keywords", json!(["in:personal"])),
            ("keywords", json!(["@maya"])),
            ("categories", json!(["../admin"])),
            ("categories", json!([0])),
            ("backfill_limit", json!(100_001)),
            ("api_username", json!("two words")),
            ("base_url", json!("ftp://forum.example.com")),
        ] {
            let mut config = config();
            config[field] = value;
            let (named, message) = DiscourseConfig::parse(&config).unwrap_err();
            assert_eq!(named, field, "{message}");
            assert!(!message.contains(KEY));
        }
        let mut missing = config();
        missing.as_object_mut().unwrap().remove("api_key");
        assert_eq!(DiscourseConfig::parse(&missing).unwrap_err().0, "api_key");
    }

    #[test]
    fn a_post_is_an_item_by_its_user_id_in_its_topic() {
        let discourse = connector();
        let first = post(100, 9, 1);
        let item = discourse.item(&first, &HashMap::new()).unwrap();
        assert_eq!(item.external_id, "post:100");
        assert_eq!(item.thread_key.as_deref(), Some("topic:9"));
        assert_eq!(item.kind, "post");
        assert_eq!(item.subject.as_deref(), Some("CSV export fails"));
        assert_eq!(item.text, "Hello **there**");
        assert_eq!(item.author.platform_id, "forum.example.com#42");
        // The forum's host, a port other than the default and a subfolder; not the scheme.
        for (base, forum) in [
            ("HTTPS://Forum.Example.com:443/", "forum.example.com"),
            (
                "http://forum.example.com:8080/community/",
                "forum.example.com:8080/community",
            ),
        ] {
            let mut config = config();
            config["base_url"] = json!(base);
            let other = DiscourseConnector::new(
                reqwest::Client::new(),
                DiscourseConfig::parse(&config).unwrap(),
            );
            let item = other.item(&first, &HashMap::new()).unwrap();
            assert_eq!(item.author.platform_id, format!("{forum}#42"));
        }
        assert_eq!(item.author.handle.as_deref(), Some("maya"));
        assert_eq!(item.author.display_name.as_deref(), Some("Maya Lin"));
        assert_eq!(
            item.author.profile_url.as_deref(),
            Some("https://forum.example.com/u/maya")
        );
        assert_eq!(
            item.author.avatar_url.as_deref(),
            Some("https://forum.example.com/user_avatar/forum.example.com/maya/120/12_2.png")
        );
        assert_eq!(item.url.as_deref(), Some("https://forum.example.com/t/9/1"));
        assert!(!item.outbound);

        // A reply to post 2 of the same pull answers it; without raw, cooked as text.
        let mut answer = post(102, 9, 3);
        answer["reply_to_post_number"] = json!(2);
        answer["raw"] = Value::Null;
        answer["username"] = json!("Acme_Support");
        let numbers = HashMap::from([((9, 2), 101), ((9, 1), 100)]);
        let item = discourse.item(&answer, &numbers).unwrap();
        assert_eq!(item.in_reply_to.as_deref(), Some("post:101"));
        assert_eq!(item.kind, "comment");
        assert_eq!(item.subject, None);
        assert_eq!(item.text, "Hello there");
        assert!(item.outbound);
        answer["reply_to_post_number"] = Value::Null;
        assert_eq!(
            discourse
                .item(&answer, &numbers)
                .unwrap()
                .in_reply_to
                .as_deref(),
            Some("post:100")
        );
        assert_eq!(
            discourse
                .item(&answer, &HashMap::new())
                .unwrap()
                .in_reply_to,
            None
        );

        // Skipped: system users, deleted, hidden, whispers.
        for (field, value) in [
            ("user_id", json!(-1)),
            ("deleted_at", json!("2026-11-30T11:00:00.000Z")),
            ("user_deleted", json!(true)),
            ("hidden", json!(true)),
            ("post_type", json!(4)),
        ] {
            let mut skipped = post(103, 9, 4);
            skipped[field] = value;
            assert!(
                discourse.item(&skipped, &HashMap::new()).is_none(),
                "{field}"
            );
        }
        // Avatars elsewhere than https or the forum are dropped.
        let mut foreign = post(104, 9, 5);
        foreign["avatar_template"] = json!("//169.254.169.254/{size}.png");
        assert_eq!(
            discourse
                .item(&foreign, &HashMap::new())
                .unwrap()
                .author
                .avatar_url,
            None
        );
    }

    #[test]
    fn a_mention_is_the_username_as_a_word() {
        assert!(mentions("thanks @Acme_Support!", "acme_support"));
        assert!(mentions("@acme_support, hi", "acme_support"));
        assert!(!mentions("@acme_support_team hi", "acme_support"));
        assert!(!mentions("mail x@acme_support", "acme_support"));
        assert!(!mentions("acme_support", "acme_support"));
        let mut named = post(105, 9, 2);
        named["raw"] = json!("Hi @acme_support the export fails");
        assert_eq!(
            connector().item(&named, &HashMap::new()).unwrap().kind,
            "mention"
        );
    }

    fn page(ids: &[u64]) -> Vec<(u64, bool)> {
        ids.iter().map(|id| (*id, id % 2 == 0)).collect()
    }

    #[test]
    fn a_walk_takes_wanted_posts_to_its_limit_and_sets_the_mark_at_its_top() {
        let mut stream = Stream::default();
        // First sync, 3 wanted at most: even ids only.
        let walk = stream.walk(3);
        let (taken, goes_on) = stream.back(walk, &page(&[110, 109, 108]), Some(108), false, false);
        assert_eq!((taken, goes_on), (vec![110, 108], true));
        let walk = stream.walk(3);
        assert_eq!(walk.before, Some(108));
        let (taken, goes_on) = stream.back(walk, &page(&[107, 106, 104]), Some(104), false, false);
        assert_eq!((taken, goes_on), (vec![106], false));
        assert_eq!(stream.mark, Some(110));
        assert_eq!(stream.walk, None);
        // A later walk stops at the mark.
        let walk = stream.walk(3);
        assert_eq!(walk.left, u64::MAX);
        let (taken, goes_on) =
            stream.back(walk, &page(&[114, 112, 110, 108]), Some(108), false, false);
        assert_eq!((taken, goes_on), (vec![114, 112], false));
        assert_eq!(stream.mark, Some(114));
        // backfill 0 only marks.
        let mut fresh = Stream::default();
        let walk = fresh.walk(0);
        assert_eq!(
            fresh.back(walk, &page(&[50, 49]), Some(49), false, false),
            (vec![], false)
        );
        assert_eq!(fresh.mark, Some(50));
        // A page that does not lead lower ends the walk (S4); a search page must rise.
        let mut stuck = Stream::default();
        let mut walk = stuck.walk(100);
        walk.before = Some(60);
        assert!(!stuck.back(walk, &page(&[70, 59]), Some(60), false, false).1);
        assert_eq!(stuck.mark, Some(70));
        let mut searching = Stream::default();
        let mut walk = searching.walk(100);
        walk.before = Some(3);
        walk.done = vec![58];
        let (_, goes_on) = searching.back(walk, &page(&[60, 58]), Some(4), false, true);
        assert!(goes_on);
        let walk = searching.walk.clone().unwrap();
        assert_eq!((walk.before, walk.done.len()), (Some(4), 0));
        assert!(!searching.back(walk, &page(&[56]), Some(4), false, true).1);
    }

    #[test]
    fn an_empty_window_mid_walk_goes_on_and_windows_above_a_hostile_mark_saturate() {
        // A window below `before` with nothing to take (private messages, deleted or
        // forbidden posts) leads on to the ids below it; at id 1 it is the end.
        let mut stream = Stream {
            mark: Some(10),
            ..Stream::default()
        };
        let mut walk = stream.walk(100);
        walk.before = Some(151);
        let (taken, goes_on) = stream.back(walk, &[], Some(101), false, false);
        assert_eq!((taken, goes_on), (vec![], true));
        let walk = stream.walk(100);
        assert_eq!(walk.before, Some(101));
        assert!(!stream.back(walk, &[], Some(1), true, false).1);
        assert_eq!(stream.mark, Some(10));

        assert_eq!(above(100, 0), 101..151);
        assert_eq!(above(100, 2), 201..251);
        assert_eq!(above(u64::MAX - 5, 0), u64::MAX - 4..u64::MAX);
        assert!(above(u64::MAX - 5, 1).is_empty());
        assert!(above(u64::MAX, 0).is_empty());
        assert!(above(u64::MAX, u64::MAX).is_empty());
    }

    const HOOK_SECRET: &str = "dsc-hook-5b1e9f3a7c2d";

    fn sign(secret: &str, body: &[u8]) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
        mac.update(body);
        format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
    }

    /// `post` as Discourse's `WebHookPostSerializer` sends it: the post's own fields, its
    /// topic's title and category, and the webhook's additions.
    fn delivered(post: &Value, archetype: &str, slug: &str) -> Value {
        let mut sent = post.clone();
        for (key, value) in [
            ("topic_posts_count", json!(3)),
            ("topic_filtered_posts_count", json!(3)),
            ("topic_archetype", json!(archetype)),
            ("category_slug", json!(slug)),
        ] {
            sent[key] = value;
        }
        json!({ "post": sent })
    }

    #[test]
    fn a_webhook_is_verified_before_it_is_read_and_maps_as_the_pulled_post() {
        let mut hooked_config = config();
        hooked_config["webhook_secret"] = json!(format!("  {HOOK_SECRET} "));
        let parsed = DiscourseConfig::parse(&hooked_config).unwrap();
        assert!(!format!("{parsed:?}").contains(HOOK_SECRET));
        let hooked = DiscourseConnector::new(reqwest::Client::new(), parsed);
        assert!(hooked.capabilities().webhook);
        assert!(!connector().capabilities().webhook);
        let deliver = |connector: &DiscourseConnector,
                       kind: &str,
                       name: &str,
                       signature: Option<String>,
                       body: &[u8]| {
            let mut pairs = vec![
                (
                    "x-discourse-instance",
                    "https://forum.example.com".to_owned(),
                ),
                ("x-discourse-event-id", "4711".to_owned()),
                ("x-discourse-event-type", kind.to_owned()),
                ("x-discourse-event", name.to_owned()),
            ];
            if let Some(signature) = signature {
                pairs.push(("x-discourse-event-signature", signature));
            }
            let pairs: Vec<(&'static str, &str)> =
                pairs.iter().map(|(k, v)| (*k, v.as_str())).collect();
            connector.hook(
                &WebhookRequest {
                    headers: &headers(&pairs),
                },
                body,
            )
        };
        let pulled = post(100, 9, 1);
        let body = delivered(&pulled, "regular", "support").to_string();
        let signed = sign(HOOK_SECRET, body.as_bytes());

        // Nothing is read before the signature: not even broken JSON is reported.
        for (signature, body) in [
            (None, body.as_bytes()),
            (
                Some(sign(HOOK_SECRET, body.as_bytes())),
                b"{not json".as_slice(),
            ),
            (Some("sha256=00".to_owned()), body.as_bytes()),
            (Some("sha1=abc".to_owned()), body.as_bytes()),
            (
                Some(sign("another-forums-secret-9", body.as_bytes())),
                body.as_bytes(),
            ),
        ] {
            match deliver(&hooked, "post", "post_created", signature, body) {
                Err(WebhookError::Unauthenticated(message)) => {
                    assert!(!message.contains(HOOK_SECRET), "{message}")
                }
                other => panic!("{other:?}"),
            }
        }
        // A source without a secret takes no deliveries.
        assert!(matches!(
            deliver(
                &connector(),
                "post",
                "post_created",
                Some(signed.clone()),
                body.as_bytes()
            ),
            Err(WebhookError::Unsupported)
        ));

        // The post, created or edited, is the item a pull makes of it.
        let mut expected = connector().item(&pulled, &HashMap::new()).unwrap();
        expected.raw = Value::Null;
        for name in ["post_created", "post_edited"] {
            match deliver(&hooked, "post", name, Some(signed.clone()), body.as_bytes()) {
                Ok(Hooked::Items(items)) => {
                    assert_eq!(items.len(), 1);
                    let mut item = items[0].clone();
                    assert_eq!(item.raw["topic_archetype"], "regular");
                    item.raw = Value::Null;
                    assert_eq!(item, expected);
                }
                other => panic!("{name}: {other:?}"),
            }
        }

        // Acknowledged, nothing stored: a ping, other events, and what a pull skips.
        let ignored = |kind: &str, name: &str, body: &Value| {
            let body = body.to_string();
            match deliver(
                &hooked,
                kind,
                name,
                Some(sign(HOOK_SECRET, body.as_bytes())),
                body.as_bytes(),
            ) {
                Ok(Hooked::Ignored(why)) => why,
                other => panic!("{kind} {name}: {other:?}"),
            }
        };
        assert!(ignored("ping", "ping", &json!({ "ping": "OK" })).contains("ping"));
        ignored("topic", "topic_created", &json!({ "topic": { "id": 9 } }));
        ignored("user", "user_created", &json!({ "user": { "id": 42 } }));
        let mut destroyed = pulled.clone();
        destroyed["deleted_at"] = json!("2026-11-30T11:00:00.000Z");
        ignored(
            "post",
            "post_destroyed",
            &delivered(&destroyed, "regular", "support"),
        );
        // The event's name is not signed: a destroyed post named created is still skipped.
        ignored(
            "post",
            "post_created",
            &delivered(&destroyed, "regular", "support"),
        );
        let mut whisper = post(101, 9, 2);
        whisper["post_type"] = json!(4);
        ignored(
            "post",
            "post_created",
            &delivered(&whisper, "regular", "support"),
        );
        let mut message = post(102, 12, 1);
        message["category_id"] = Value::Null;
        assert!(ignored(
            "post",
            "post_created",
            &delivered(&message, "private_message", "")
        )
        .contains("private message"));
        let mut old = delivered(&message, "regular", "");
        old["post"]
            .as_object_mut()
            .unwrap()
            .remove("topic_archetype");
        ignored("post", "post_created", &old);
        let mut elsewhere = post(103, 13, 1);
        elsewhere["category_id"] = json!(11);
        assert!(ignored(
            "post",
            "post_created",
            &delivered(&elsewhere, "regular", "general")
        )
        .contains("categories"));
        // A category named by its slug is known by the delivery's slug, without a lookup.
        elsewhere["category_id"] = json!(12);
        let by_slug = delivered(&elsewhere, "regular", "feature-requests").to_string();
        assert!(matches!(
            deliver(&hooked, "post", "post_created", Some(sign(HOOK_SECRET, by_slug.as_bytes())), by_slug.as_bytes()),
            Ok(Hooked::Items(items)) if items[0].external_id == "post:103"
        ));

        // Verified but not Discourse's shape: the field is named.
        for (body, field) in [
            (json!({ "topic": {} }), "post"),
            (json!({ "post": { "id": "x" } }), "post.id"),
            (json!([1, 2]), "body"),
        ] {
            let body = body.to_string();
            match deliver(
                &hooked,
                "post",
                "post_created",
                Some(sign(HOOK_SECRET, body.as_bytes())),
                body.as_bytes(),
            ) {
                Err(WebhookError::Payload { field: named, .. }) => assert_eq!(named, field),
                other => panic!("{field}: {other:?}"),
            }
        }

        let mut short = config();
        short["webhook_secret"] = json!("short-secret");
        let (field, message) = DiscourseConfig::parse(&short).unwrap_err();
        assert_eq!(field, "webhook_secret");
        assert!(!message.contains("short-secret"), "{message}");
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, HeaderValue::from_str(value).unwrap());
        }
        map
    }

    #[test]
    fn a_429_waits_the_later_of_retry_after_and_wait_seconds() {
        let now = Utc::now();
        let limited = |retry: &[(&'static str, &str)], wait: Value| {
            let body = json!({ "errors": ["You’ve performed this action too many times."],
                "error_type": "rate_limit", "extras": { "wait_seconds": wait } });
            match failure(
                429,
                &headers(retry),
                body.to_string().as_bytes(),
                now,
                "h",
                "/x",
                false,
            ) {
                ConnectorError::RateLimited { retry_after_secs } => retry_after_secs,
                other => panic!("{other:?}"),
            }
        };
        assert_eq!(limited(&[("retry-after", "30")], json!(45)), Some(45));
        assert_eq!(limited(&[("retry-after", "90")], json!(45)), Some(90));
        assert_eq!(limited(&[], json!(12.2)), Some(13));
        assert_eq!(limited(&[], Value::Null), None);
        assert_eq!(limited(&[], json!(10_000_000)), Some(86_400));
        let body = br#"{"errors":["You are not permitted to view the requested resource. The API username or key is invalid."],"error_type":"invalid_access"}"#;
        assert!(matches!(
            failure(403, &HeaderMap::new(), body, now, "h", "/x", false),
            ConnectorError::Unauthorized(m) if m.contains("key is invalid")
        ));
        assert!(matches!(
            failure(403, &HeaderMap::new(), b"", now, "h", "/x", true),
            ConnectorError::Unauthorized(m) if m.contains("may not post there")
        ));
        assert!(matches!(
            failure(502, &HeaderMap::new(), b"", now, "h", "/x", false),
            ConnectorError::Transport(_)
        ));
        assert!(matches!(
            failure(404, &HeaderMap::new(), b"", now, "h", "/x", false),
            ConnectorError::Payload(_)
        ));
    }

    #[test]
    fn a_reply_carries_its_own_hidden_marker_which_items_do_not_show() {
        let one = marker("reply-1");
        assert_eq!(one, marker("reply-1"));
        assert_ne!(one, marker("reply-2"));
        assert_eq!(one.len() + 2, MARKER_CHARS);
        assert_eq!(MAX_REPLY_CHARS, 31_965);
        assert_eq!(unmarked(&format!("Thanks!\n\n{one}\n")), "Thanks!");
        assert_eq!(
            unmarked("<!-- rapport:nothex -->"),
            "<!-- rapport:nothex -->"
        );
        let mut ours = post(106, 9, 2);
        ours["raw"] = json!(format!("Fixed in 2.0.1\n\n{one}"));
        assert_eq!(
            connector().item(&ours, &HashMap::new()).unwrap().text,
            "Fixed in 2.0.1"
        );
        assert!(oversized(&ConnectorError::Payload(
            "h answered /posts.json: the response is larger than 10 MiB".into()
        )));
    }

    #[tokio::test]
    async fn a_reply_over_the_limit_is_refused_before_sending() {
        // The client points nowhere: nothing may be sent.
        let mut config = config();
        config["base_url"] = json!("http://127.0.0.1:9");
        let discourse = DiscourseConnector::new(
            reqwest::Client::new(),
            DiscourseConfig::parse(&config).unwrap(),
        );
        let target = ReplyTarget {
            external_id: "post:100".into(),
            thread_key: Some("topic:9".into()),
            context: post(100, 9, 1),
            recipient: None,
            idempotency_key: "k".into(),
        };
        for length in [32_001, MAX_REPLY_CHARS + 1] {
            match discourse.reply(&target, &"é".repeat(length)).await {
                Err(ConnectorError::Payload(message)) => {
                    assert!(
                        message.contains(&format!("{length} characters")),
                        "{message}"
                    )
                }
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(
            discourse.default_reply_limit(),
            Some(ReplyLimit::Characters(MAX_REPLY_CHARS))
        );
    }
}
