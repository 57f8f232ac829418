//! The Mastodon channel (pull + reply), over the client API of any Mastodon-compatible
//! server (<https://docs.joinmastodon.org/methods/>).
//!
//! - Streams: mentions through `GET /api/v1/notifications?types[]=mention` (`limit` 80, the
//!   method's maximum), each configured hashtag through `GET /api/v1/timelines/tag/:hashtag`
//!   and each keyword through `GET /api/v2/search?type=statuses` (`limit` 40, theirs). Each
//!   stream has its own place in the cursor.
//! - Paging: `max_id` bounds a page from above (the next older page; the `Link: <…>;
//!   rel="next"` header names it, else the page's oldest id), `min_id` from below. On
//!   notifications and tag timelines `min_id` gives the entries *immediately* newer (the
//!   `Link: <…>; rel="prev"` header names the next, since a server may filter a page after
//!   choosing its bounds), so those streams are read forward, oldest first. Search has no
//!   `Link` header and its `min_id` is only a lower bound on results sorted newest first
//!   (a date filter in Mastodon's search), so a search is walked back from the newest with
//!   `max_id` down to the newest status already handed over.
//! - First sync (backfill): up to `backfill_limit` entries per stream (0: none, only what
//!   comes after). A forward stream walks back page by page with `max_id`, only counting,
//!   until it has seen the limit or the stream's start; the oldest page it reaches is
//!   handed over (its newest entries within the limit) and the stream is then read forward
//!   from there. So a backfill lands oldest first like everything else: a reply finds the
//!   conversation of the mention it answers, stored before it, and a conversation's wait
//!   starts and ends in order. The counted pages are kept as they came (up to
//!   [`WALK_KEPT_BYTES`], for the sync run) and the forward read takes them from there, so
//!   a backfill asks for each page once; pages dropped past that size, walked by an
//!   earlier run, or still kept when the run ends are asked for again. What they hold is
//!   as the walk saw it: a status edited or deleted later in the run goes in as it was,
//!   and a late-federated status dated (and so numbered) inside pages already walked is
//!   missed, as it is once the forward read has passed it. A search hands over what its
//!   walk back takes; the walk ends at an empty page, not at a short one (Mastodon filters
//!   a search page after limiting it: muted, blocked or deleted statuses), so a page
//!   filtered down to nothing ends it, with older matches unread.
//! - Cursor, per stream: `mark` (forward streams: the `min_id` to read on from; search: the
//!   newest status handed over) and, while a walk is under way, `walk`: `cursor` (the
//!   `max_id` of its next page), `top` (the newest id it has seen) and on a first sync
//!   `left` (how many it may still count). Every batch's cursor is exactly where the stream
//!   resumes after a crash or a stop: a walk that only counted hands nothing over, so
//!   nothing is skipped or read twice; entries that arrive meanwhile are further along.
//!   The stored form is JSON, `{"me", "notifications": {"mark", "walk": {"cursor", "top",
//!   "left"}}, "tags": {"<tag>": {…}}, "search": {"<keyword>": {…}}}`. A cursor of the
//!   version before backfill holds a bare `min_id` per stream: that is a `mark`, so such a
//!   source goes on from where it was and does not backfill (`"0"`, a first walk that had
//!   not started, is a first sync).
//! - A pull gathers pages until about [`PULL_ITEMS`] items, [`PULL_TIME`] or the first
//!   rate limit, every stream getting at least one page, so a backlog comes in batches near
//!   a thousand. Pages a backfill only counts are bounded by the time alone.
//! - The account behind the token (`GET /api/v1/accounts/verify_credentials`) tells our own
//!   posts (outbound) from others'.
//! - Replies: `POST /api/v1/statuses` with `in_reply_to_id`, the answered post's
//!   visibility, a leading mention of its author, and an `Idempotency-Key` header so a
//!   retried reply is posted once.
//! - `X-RateLimit-Remaining: 0` / `X-RateLimit-Reset` and 429 `Retry-After` become
//!   "not before" times for the scheduler; a stream stops gathering pages at the first,
//!   and a 429 keeps what the pull has and asks nothing more.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

pub use crate::bluesky::{DEFAULT_BACKFILL_LIMIT, MAX_BACKFILL_LIMIT};
use crate::http::{self, MAX_BODY_BYTES};
use crate::{
    Author, Capabilities, Channel, Connector, ConnectorError, Cursor, InboundItem, ProfileLink,
    Pull, ReplyLimit, ReplyTarget, Sent,
};

/// Statuses asked for per request on timelines and search (their maximum), and the
/// length from which any page counts as full: a server capping notifications at 40 still
/// reads as having more.
pub const PAGE: usize = 40;

/// Notifications asked for per request (the method's maximum).
pub const NOTIFICATIONS_PAGE: usize = 80;

/// A pull asks for another page of notifications only while what it gathered stays
/// within this many, so the pipeline gets batches near a thousand.
pub const PULL_ITEMS: usize = 1_000;

/// A pull starts no further page of notifications after this long: the sync gives a
/// whole pull 4× the HTTP timeout (1 s at least), and one more page plus the listening
/// streams must fit in what is left.
pub const PULL_TIME: std::time::Duration = std::time::Duration::from_secs(2);

/// The `min_id` before every entry (ids are decimal numbers): where a stream with no
/// entries yet, or a backfill that reached the stream's start, reads forward from.
const BEFORE_ALL: &str = "0";

fn default_backfill_limit() -> u64 {
    DEFAULT_BACKFILL_LIMIT
}

/// A source's settings. `access_token` is a secret: stored apart, never returned.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MastodonConfig {
    pub base_url: String,
    pub access_token: String,
    #[serde(default)]
    pub hashtags: Vec<String>,
    #[serde(default)]
    pub keywords: Vec<String>,
    /// Entries per stream a first sync takes (0: only what comes after it).
    #[serde(default = "default_backfill_limit")]
    pub backfill_limit: u64,
}

impl std::fmt::Debug for MastodonConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MastodonConfig")
            .field("base_url", &self.base_url)
            .field("access_token", &"***")
            .field("hashtags", &self.hashtags)
            .field("keywords", &self.keywords)
            .field("backfill_limit", &self.backfill_limit)
            .finish()
    }
}

impl MastodonConfig {
    /// Reads and checks a source's settings (secrets merged in); the error names the field.
    pub fn parse(config: &Value) -> Result<MastodonConfig, (String, String)> {
        let mut config: MastodonConfig = crate::read_config(config, "base_url")?;
        crate::check_http_url("base_url", &config.base_url)?;
        config.base_url = config.base_url.trim_end_matches('/').to_owned();
        if config.access_token.trim().is_empty() {
            return Err((
                "access_token".into(),
                "access_token must not be empty".into(),
            ));
        }
        for tag in &mut config.hashtags {
            *tag = tag.trim().trim_start_matches('#').to_owned();
            if tag.is_empty() || !tag.chars().all(|c| c.is_alphanumeric() || c == '_') {
                return Err((
                    "hashtags".into(),
                    format!("`{tag}` is not a hashtag (letters, digits and _ only)"),
                ));
            }
        }
        if config.keywords.iter().any(|k| k.trim().is_empty()) {
            return Err(("keywords".into(), "keywords must not be empty".into()));
        }
        for keyword in &mut config.keywords {
            *keyword = keyword.trim().to_owned();
        }
        crate::drop_repeats(&mut config.hashtags);
        crate::drop_repeats(&mut config.keywords);
        if config.backfill_limit > MAX_BACKFILL_LIMIT {
            return Err((
                "backfill_limit".into(),
                format!("backfill_limit is at most {MAX_BACKFILL_LIMIT}"),
            ));
        }
        Ok(config)
    }
}

/// A walk back through a stream with `max_id`, under way.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
struct Walk {
    /// The `max_id` of the next page (`None`: start at the newest).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    cursor: Option<String>,
    /// The newest id seen since the walk began.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    top: Option<String>,
    /// On a first sync, how many entries the walk may still count (`None`: down to the
    /// mark).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    left: Option<u64>,
}

/// Where one stream stands (see the module doc). Neither mark nor walk: never synced.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(from = "StoredStream")]
struct Stream {
    #[serde(skip_serializing_if = "Option::is_none")]
    mark: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    walk: Option<Walk>,
}

/// A stream as stored: by this version, or by the one before backfill (a bare `min_id`).
#[derive(Deserialize)]
#[serde(untagged)]
enum StoredStream {
    MinId(String),
    Stream {
        #[serde(default)]
        mark: Option<String>,
        #[serde(default)]
        walk: Option<Walk>,
    },
}

impl From<StoredStream> for Stream {
    fn from(stored: StoredStream) -> Stream {
        match stored {
            // The walk that version would have started (its whole history): not begun, so
            // nothing of this stream is stored yet.
            StoredStream::MinId(id) if id == BEFORE_ALL || id.is_empty() => Stream::default(),
            StoredStream::MinId(id) => Stream {
                mark: Some(id),
                walk: None,
            },
            StoredStream::Stream { mark, walk } => Stream { mark, walk },
        }
    }
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
        }
    }
}

/// Where a Mastodon source stands: our account id and one [`Stream`] per stream.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
struct MastodonCursor {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    me: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    notifications: Option<Stream>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    tags: BTreeMap<String, Stream>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    search: BTreeMap<String, Stream>,
}

impl MastodonCursor {
    /// Reads a stored cursor; one this version cannot read starts over (a first sync).
    fn decode(cursor: Option<&Cursor>) -> MastodonCursor {
        cursor
            .and_then(|cursor| serde_json::from_str(&cursor.0).ok())
            .unwrap_or_default()
    }

    fn encode(&self) -> Cursor {
        Cursor(serde_json::to_string(self).expect("a cursor serialises"))
    }
}

/// One stream the connector listens to.
#[derive(Clone, Copy, Debug)]
enum Listen<'a> {
    Mentions,
    Tag(&'a str),
    Search(&'a str),
}

impl Listen<'_> {
    fn path(self) -> String {
        match self {
            Listen::Mentions => "/api/v1/notifications".to_owned(),
            Listen::Tag(tag) => format!("/api/v1/timelines/tag/{tag}"),
            Listen::Search(_) => "/api/v2/search".to_owned(),
        }
    }

    fn query(self) -> Vec<(&'static str, String)> {
        match self {
            Listen::Mentions => vec![("types[]", "mention".to_owned())],
            Listen::Tag(_) => Vec::new(),
            Listen::Search(keyword) => vec![
                ("q", keyword.to_owned()),
                ("type", "statuses".to_owned()),
                ("resolve", "false".to_owned()),
            ],
        }
    }

    /// Entries asked for per request.
    fn page_size(self) -> usize {
        match self {
            Listen::Mentions => NOTIFICATIONS_PAGE,
            Listen::Tag(_) | Listen::Search(_) => PAGE,
        }
    }

    /// Whether `min_id` pages forward (see the module doc); search's does not.
    fn forward(self) -> bool {
        !matches!(self, Listen::Search(_))
    }

    /// Whether an entry of the stream is handed over: a mention notification with its
    /// status (servers before 3.5 ignore `types[]`), any status.
    fn keep(self, entry: &Value) -> bool {
        match self {
            Listen::Mentions => {
                entry.get("type").and_then(Value::as_str) == Some("mention")
                    && entry.get("status").is_some_and(Value::is_object)
            }
            Listen::Tag(_) | Listen::Search(_) => true,
        }
    }

    /// The status an entry carries, and its item's kind.
    fn status(self, entry: &Value) -> Option<(&Value, &'static str)> {
        match self {
            Listen::Mentions => Some((entry.get("status")?, "mention")),
            Listen::Tag(_) | Listen::Search(_) => Some((entry, "post")),
        }
    }
}

/// Which page of a stream to ask for.
#[derive(Clone, Copy)]
enum Bound<'a> {
    Newest,
    /// Older than this id (`max_id`).
    Before(&'a str),
    /// Immediately newer than this id (`min_id`).
    After(&'a str),
}

/// One page of a stream.
struct Page {
    /// Newest first; every one with an id.
    entries: Vec<Value>,
    /// The newest id on the page.
    newest: Option<String>,
    /// The `max_id` of the next older page: the `Link` header's `rel="next"`, else the
    /// page's oldest id.
    older: Option<String>,
    /// The `min_id` of the next newer page: the `Link` header's `rel="prev"`, else the
    /// page's newest id.
    newer: Option<String>,
    /// Whether the page was full (more may wait beyond it).
    full: bool,
}

/// A response as it came: its body and its headers.
struct Fetched {
    body: Vec<u8>,
    headers: reqwest::header::HeaderMap,
}

impl Fetched {
    /// What a page needs to be read again, and no more: its body, its `Link` headers.
    fn kept(mut self) -> Fetched {
        self.body.shrink_to_fit();
        let mut headers = reqwest::header::HeaderMap::new();
        for value in self.headers.get_all(reqwest::header::LINK) {
            headers.append(reqwest::header::LINK, value.clone());
        }
        self.headers = headers;
        self
    }

    /// The bytes it holds, as [`Kept`] counts them.
    fn bytes(&self) -> usize {
        self.body.capacity()
            + self
                .headers
                .iter()
                .map(|(_, value)| value.len())
                .sum::<usize>()
    }
}

/// The bytes of pages a connector keeps from first walks back (see [`Kept`]): some 8,000
/// entries of about 4 KB, 100 pages of mentions, per source being synced; the pages
/// walked past that are asked for again.
pub const WALK_KEPT_BYTES: usize = 32 << 20;

/// The pages a forward stream's first walk back counted, kept as the server sent them so
/// the forward read after the walk takes them from here instead of asking for each again:
/// a backfill asks for each page once (a platform's rate limit counts requests), not
/// twice. They live as long as the connector, one sync run: a run that ends or dies
/// leaves the rest to be asked for from the stored mark, as any forward read does, so
/// resuming is unchanged. Past `cap` bytes the newest pages of the stream being walked
/// are dropped (the forward read takes the oldest first and asks for the rest); another
/// stream's pages stay until they are read, can no longer be placed, or the run ends.
struct Kept {
    streams: HashMap<String, KeptStream>,
    bytes: usize,
    cap: usize,
}

/// One stream's kept pages.
#[derive(Default)]
struct KeptStream {
    /// Newest first, as walked; each with the `max_id` of the page walked after it.
    pages: VecDeque<(Fetched, Option<String>)>,
    /// The mark the oldest kept page goes on from, once the walk has handed over the
    /// page before it (`None`: still walking).
    mark: Option<String>,
}

impl Kept {
    fn new(cap: usize) -> Kept {
        Kept {
            streams: Default::default(),
            bytes: 0,
            cap,
        }
    }

    /// `fetched`, the walk's page at `bound` (`None`: the newest), was counted; the walk
    /// goes on at `older`. It goes after the pages kept before it when it was asked for
    /// where the last of them went on; else those are dropped and it starts anew.
    fn walked(&mut self, key: &str, bound: Option<&str>, older: Option<String>, fetched: Fetched) {
        let fetched = fetched.kept();
        // The walk goes on from the last page kept; else only what it walks from here on
        // can be kept.
        if self.joins(key, bound).is_none() {
            self.forget(key);
        }
        self.bytes += fetched.bytes();
        let stream = self.streams.entry(key.to_owned()).or_default();
        stream.mark = None;
        stream.pages.push_back((fetched, older));
        while self.bytes > self.cap {
            let Some(stream) = self.streams.get_mut(key) else {
                break;
            };
            let Some((dropped, _)) = stream.pages.pop_front() else {
                break;
            };
            self.bytes -= dropped.bytes();
        }
    }

    /// The walk handed over its oldest page, asked for at `bound`; the stream goes on
    /// from `mark`.
    fn reached(&mut self, key: &str, bound: Option<&str>, mark: &str) {
        match self.joins(key, bound) {
            Some(stream) => stream.mark = Some(mark.to_owned()),
            None => self.forget(key),
        }
    }

    /// The stream `key`, when the last page kept of it went on at `bound`: a page asked
    /// for at `bound` continues it.
    fn joins(&mut self, key: &str, bound: Option<&str>) -> Option<&mut KeptStream> {
        self.streams.get_mut(key).filter(|stream| {
            stream
                .pages
                .back()
                .is_some_and(|(_, after)| after.as_deref() == bound)
        })
    }

    /// The page that goes on from `mark`, when it is kept.
    fn next(&mut self, key: &str, mark: &str) -> Option<Fetched> {
        let stream = self.streams.get_mut(key)?;
        if stream.mark.as_deref() != Some(mark) {
            if stream.mark.is_some() {
                // Read on some other way: these pages can no longer be placed.
                self.forget(key);
            }
            return None;
        }
        let (fetched, _) = stream.pages.pop_back()?;
        stream.mark = None;
        self.bytes -= fetched.bytes();
        if stream.pages.is_empty() {
            self.streams.remove(key);
        }
        Some(fetched)
    }

    /// The page [`Kept::next`] gave moved the stream's mark to `mark`.
    fn went_on(&mut self, key: &str, mark: &str) {
        if let Some(stream) = self.streams.get_mut(key) {
            stream.mark = Some(mark.to_owned());
        }
    }

    fn forget(&mut self, key: &str) {
        if let Some(stream) = self.streams.remove(key) {
            self.bytes -= stream
                .pages
                .iter()
                .map(|(fetched, _)| fetched.bytes())
                .sum::<usize>();
        }
    }
}

/// The bytes an id may have to be kept: ids go into the stored cursor, and real ones
/// (Mastodon's numbers, other servers' ULIDs and flake ids) are under 30.
const MAX_ID_BYTES: usize = 64;

/// An entry's id, when it has one short enough to keep (an entry without one is skipped).
fn entry_id(entry: &Value) -> Option<&str> {
    entry.get("id")?.as_str().filter(|id| usable_id(id))
}

fn usable_id(id: &str) -> bool {
    !id.trim().is_empty() && id.len() <= MAX_ID_BYTES
}

/// The later of two ids.
fn newer_of(a: Option<String>, b: Option<String>) -> Option<String> {
    match (a, b) {
        (Some(a), Some(b)) => Some(if compare_ids(&a, &b).is_lt() { b } else { a }),
        (a, b) => a.or(b),
    }
}

pub struct MastodonConnector {
    client: reqwest::Client,
    config: MastodonConfig,
    kept: std::sync::Mutex<Kept>,
}

impl MastodonConnector {
    pub fn new(client: reqwest::Client, config: MastodonConfig) -> MastodonConnector {
        MastodonConnector {
            client,
            config,
            kept: std::sync::Mutex::new(Kept::new(WALK_KEPT_BYTES)),
        }
    }

    fn kept(&self) -> std::sync::MutexGuard<'_, Kept> {
        // Held across no await. Were it poisoned, its count might be off: start empty (the
        // pages are asked for again).
        self.kept.lock().unwrap_or_else(|poisoned| {
            self.kept.clear_poison();
            let mut kept = poisoned.into_inner();
            *kept = Kept::new(WALK_KEPT_BYTES);
            kept
        })
    }

    fn host(&self) -> String {
        reqwest::Url::parse(&self.config.base_url)
            .ok()
            .and_then(|url| url.host_str().map(str::to_owned))
            .unwrap_or_default()
    }

    /// GETs `path` with `query`; returns the JSON body and the response's headers.
    async fn get(
        &self,
        path: &str,
        query: &[(&str, String)],
        not_before: &mut Option<DateTime<Utc>>,
    ) -> Result<(Value, reqwest::header::HeaderMap), ConnectorError> {
        let fetched = self.fetch(path, query, not_before).await?;
        Ok((self.json(path, &fetched.body)?, fetched.headers))
    }

    /// GETs `path` with `query`; returns the body as it came and the response's headers.
    async fn fetch(
        &self,
        path: &str,
        query: &[(&str, String)],
        not_before: &mut Option<DateTime<Utc>>,
    ) -> Result<Fetched, ConnectorError> {
        let now = Utc::now();
        let response = self
            .client
            .get(format!("{}{path}", self.config.base_url))
            .query(query)
            .bearer_auth(&self.config.access_token)
            .header("accept", "application/json")
            .send()
            .await
            .map_err(http::transport)?;
        http::check_status(&response, now)?;
        let headers = response.headers().clone();
        if let Some(at) = http::not_before(&headers, now) {
            *not_before = Some(not_before.map_or(at, |old| old.max(at)));
        }
        let body = http::read_capped(response, MAX_BODY_BYTES).await?;
        Ok(Fetched { body, headers })
    }

    fn json(&self, path: &str, body: &[u8]) -> Result<Value, ConnectorError> {
        serde_json::from_slice(body).map_err(|err| {
            ConnectorError::Payload(format!(
                "{} answered {path} with invalid JSON: {err}",
                self.host()
            ))
        })
    }

    /// One page of `listen` of up to `limit` entries at `bound`.
    async fn page(
        &self,
        listen: Listen<'_>,
        bound: Bound<'_>,
        limit: usize,
        not_before: &mut Option<DateTime<Utc>>,
    ) -> Result<Page, ConnectorError> {
        let fetched = self.fetch_page(listen, bound, limit, not_before).await?;
        self.read_page(listen, &fetched, limit)
    }

    /// Asks for one page of `listen` of up to `limit` entries at `bound`.
    async fn fetch_page(
        &self,
        listen: Listen<'_>,
        bound: Bound<'_>,
        limit: usize,
        not_before: &mut Option<DateTime<Utc>>,
    ) -> Result<Fetched, ConnectorError> {
        let mut query = listen.query();
        query.push(("limit", limit.to_string()));
        match bound {
            Bound::Newest => {}
            Bound::Before(id) => query.push(("max_id", id.to_owned())),
            Bound::After(id) => query.push(("min_id", id.to_owned())),
        }
        self.fetch(&listen.path(), &query, not_before).await
    }

    /// A page of `listen` asked for with `limit`, as the server sent it.
    fn read_page(
        &self,
        listen: Listen<'_>,
        fetched: &Fetched,
        limit: usize,
    ) -> Result<Page, ConnectorError> {
        let path = listen.path();
        let headers = &fetched.headers;
        let list = match self.json(&path, &fetched.body)? {
            Value::Array(list) => list,
            Value::Object(mut object) => match object.remove("statuses") {
                Some(Value::Array(list)) => list,
                _ => return Err(self.shape(&path, "an object without `statuses`")),
            },
            _ => return Err(self.shape(&path, "neither a list nor an object")),
        };
        let full = list.len() >= PAGE.min(limit);
        let mut entries: Vec<Value> = list
            .into_iter()
            .filter(|entry| entry_id(entry).is_some())
            .collect();
        entries.sort_by(|a, b| {
            compare_ids(
                entry_id(b).unwrap_or_default(),
                entry_id(a).unwrap_or_default(),
            )
        });
        let newest = entries.first().and_then(entry_id).map(str::to_owned);
        let oldest = entries.last().and_then(entry_id).map(str::to_owned);
        let from_link = |rel: &str, key: &str| {
            http::link(headers, rel).and_then(|url| {
                reqwest::Url::parse(&url).ok().and_then(|url| {
                    url.query_pairs()
                        .find(|(name, _)| name == key)
                        .map(|(_, value)| value.into_owned())
                        .filter(|id| usable_id(id))
                })
            })
        };
        Ok(Page {
            older: from_link("next", "max_id").or(oldest),
            newer: from_link("prev", "min_id").or(newest.clone()),
            newest,
            entries,
            full,
        })
    }

    /// Reads `listen` on from `stream` while the pull's budget lasts (`before`: the items
    /// earlier streams of this pull took), taking its entries into `taken`; returns whether
    /// more are waiting. On an error, `stream` and `taken` are as the last page left them.
    async fn read(
        &self,
        listen: Listen<'_>,
        stream: &mut Stream,
        taken: &mut Vec<Value>,
        before: usize,
        started: std::time::Instant,
        not_before: &mut Option<DateTime<Utc>>,
    ) -> Result<bool, ConnectorError> {
        loop {
            let goes_on = match (listen.forward(), stream.walk.clone()) {
                (true, Some(walk)) => self.locate(listen, stream, walk, taken, not_before).await?,
                (true, None) => self.forward(listen, stream, taken, not_before).await?,
                (false, walk) => {
                    let walk = walk.unwrap_or_default();
                    self.back(listen, stream, walk, taken, not_before).await?
                }
            };
            if !goes_on
                || before + taken.len() + listen.page_size() > PULL_ITEMS
                || started.elapsed() >= PULL_TIME
                || not_before.is_some_and(|at| at > Utc::now())
            {
                return Ok(goes_on);
            }
        }
    }

    /// One page of a forward stream's first walk back: counted until the walk has seen its
    /// limit or the stream's start; that oldest page's entries within the limit are taken
    /// and the stream goes on forward from its newest. Returns whether the stream goes on.
    async fn locate(
        &self,
        listen: Listen<'_>,
        stream: &mut Stream,
        mut walk: Walk,
        taken: &mut Vec<Value>,
        not_before: &mut Option<DateTime<Utc>>,
    ) -> Result<bool, ConnectorError> {
        let left = walk.left.unwrap_or(0);
        // Backfill 0 only needs the newest id.
        let limit = if left == 0 { 1 } else { listen.page_size() };
        let bound = walk.cursor.as_deref().map_or(Bound::Newest, Bound::Before);
        let fetched = self.fetch_page(listen, bound, limit, not_before).await?;
        let page = self.read_page(listen, &fetched, limit)?;
        walk.top = newer_of(walk.top, page.newest.clone());
        let seen = page.entries.len() as u64;
        // A server that does not page back (an older page that is not older) ends the walk.
        let stuck = match (&page.older, &walk.cursor) {
            (None, _) => true,
            (Some(older), Some(cursor)) => !compare_ids(older, cursor).is_lt(),
            (Some(_), None) => false,
        };
        let key = listen.path();
        if seen < left && page.full && !stuck {
            // Counted now, taken on the way forward: kept so it is not asked for again.
            self.kept()
                .walked(&key, walk.cursor.as_deref(), page.older.clone(), fetched);
            walk.left = Some(left - seen);
            walk.cursor = page.older;
            stream.walk = Some(walk);
            return Ok(true);
        }
        let within = usize::try_from(left).unwrap_or(usize::MAX);
        let mut oldest: Vec<Value> = page
            .entries
            .into_iter()
            .take(within)
            .filter(|entry| listen.keep(entry))
            .collect();
        oldest.reverse();
        taken.extend(oldest);
        // An empty page past full ones: the stream starts right before the last page seen.
        let mark = page.newer.unwrap_or_else(|| BEFORE_ALL.to_owned());
        if stuck {
            // The last page is no older than the one before it: the kept pages may hold
            // what it handed over.
            self.kept().forget(&key);
        } else {
            self.kept().reached(&key, walk.cursor.as_deref(), &mark);
        }
        // The pages after it were only counted: read them forward.
        let goes_on = walk
            .top
            .as_deref()
            .is_some_and(|top| compare_ids(&mark, top).is_lt());
        stream.mark = Some(mark);
        stream.walk = None;
        Ok(goes_on)
    }

    /// One page of a forward stream after its mark, oldest first. Returns whether more
    /// are waiting.
    async fn forward(
        &self,
        listen: Listen<'_>,
        stream: &mut Stream,
        taken: &mut Vec<Value>,
        not_before: &mut Option<DateTime<Utc>>,
    ) -> Result<bool, ConnectorError> {
        let mark = stream.mark.clone().unwrap_or_else(|| BEFORE_ALL.to_owned());
        let key = listen.path();
        // (Its own statement: the lock is released before the filter takes it again.)
        let kept = self.kept().next(&key, &mark);
        let kept = kept
            .map(|fetched| self.read_page(listen, &fetched, listen.page_size()))
            .transpose()?
            // Only a page wholly after the mark (a server whose `max_id` includes the id
            // given has pages that overlap by one): else ask, as without it.
            .filter(|page| {
                let after = page
                    .entries
                    .last()
                    .and_then(entry_id)
                    .is_some_and(|oldest| compare_ids(oldest, &mark).is_gt());
                if !after {
                    self.kept().forget(&key);
                }
                after
            });
        let page = match kept {
            Some(page) => {
                if let Some(next) = &page.newer {
                    self.kept().went_on(&key, next);
                }
                page
            }
            None => {
                self.page(listen, Bound::After(&mark), listen.page_size(), not_before)
                    .await?
            }
        };
        taken.extend(
            page.entries
                .into_iter()
                .rev()
                .filter(|entry| listen.keep(entry)),
        );
        // A page that does not move the mark on (a server ignoring `min_id`) ends the stream's
        // reading for this pull.
        match page.newer {
            Some(next) if compare_ids(&next, &mark).is_gt() => {
                stream.mark = Some(next);
                Ok(page.full)
            }
            _ => Ok(false),
        }
    }

    /// One page of a walk back from the newest (search): takes what is newer than the
    /// mark within the walk's allowance; the walk ends (its newest id becomes the mark) at
    /// the mark, the allowance or the stream's end: an empty page, not a short one.
    /// Mastodon leaves out of a search page, after limiting it, statuses of accounts the
    /// caller mutes or blocks (or whose domain it blocks) and statuses deleted but still
    /// indexed, so older matches may follow a short page. A page left with nothing has no
    /// id to go on from: the walk ends there, and older matches are not read. Returns
    /// whether the walk goes on.
    async fn back(
        &self,
        listen: Listen<'_>,
        stream: &mut Stream,
        mut walk: Walk,
        taken: &mut Vec<Value>,
        not_before: &mut Option<DateTime<Utc>>,
    ) -> Result<bool, ConnectorError> {
        let limit = walk.left.map_or(listen.page_size(), |left| {
            listen
                .page_size()
                .min(usize::try_from(left).unwrap_or(usize::MAX))
                .max(1)
        });
        let bound = walk.cursor.as_deref().map_or(Bound::Newest, Bound::Before);
        let page = self.page(listen, bound, limit, not_before).await?;
        walk.top = newer_of(walk.top, page.newest.clone());
        let mut reached = page.entries.is_empty();
        for entry in page.entries {
            let id = entry_id(&entry).unwrap_or_default();
            let handed_over = stream
                .mark
                .as_deref()
                .is_some_and(|mark| !compare_ids(id, mark).is_gt());
            if handed_over || walk.left == Some(0) {
                reached = true;
                continue;
            }
            if let Some(left) = &mut walk.left {
                *left -= 1;
            }
            if listen.keep(&entry) {
                taken.push(entry);
            }
        }
        let stuck = match (&page.older, &walk.cursor) {
            (None, _) => true,
            (Some(older), Some(cursor)) => !compare_ids(older, cursor).is_lt(),
            (Some(_), None) => false,
        };
        if reached || stuck || walk.left == Some(0) {
            stream.mark = newer_of(stream.mark.take(), walk.top);
            stream.walk = None;
            Ok(false)
        } else {
            walk.cursor = page.older;
            stream.walk = Some(walk);
            Ok(true)
        }
    }

    fn shape(&self, path: &str, what: &str) -> ConnectorError {
        ConnectorError::Payload(format!("{} answered {path} with {what}", self.host()))
    }

    /// A status as an item; `None` when it lacks what every status has.
    fn item(&self, status: &Value, kind: &str, me: Option<&str>) -> Option<InboundItem> {
        let id = status
            .get("id")?
            .as_str()
            .filter(|id| !id.trim().is_empty())?
            .to_owned();
        let account = status.get("account")?;
        let account_id = account.get("id")?.as_str()?;
        let created_at = status
            .get("created_at")?
            .as_str()
            .and_then(|at| DateTime::parse_from_rfc3339(at).ok())?
            .with_timezone(&Utc);
        let html = status
            .get("content")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let mut text = crate::text::html_to_text(html);
        if let Some(warning) = status
            .get("spoiler_text")
            .and_then(Value::as_str)
            .filter(|w| !w.is_empty())
        {
            text = format!("CW: {warning}\n{text}");
        }
        let url = status
            .get("url")
            .and_then(Value::as_str)
            .or_else(|| status.get("uri").and_then(Value::as_str))
            .map(str::to_owned);
        Some(InboundItem {
            external_id: id,
            author: self.author(account)?,
            outbound: me == Some(account_id),
            kind: kind.to_owned(),
            subject: None,
            text,
            html: Some(html.to_owned()).filter(|html| !html.is_empty()),
            url,
            language: status
                .get("language")
                .and_then(Value::as_str)
                .map(str::to_owned),
            occurred_at: created_at,
            thread_key: None,
            in_reply_to: status
                .get("in_reply_to_id")
                .and_then(Value::as_str)
                .map(str::to_owned),
            raw: status.clone(),
        })
    }

    /// An account as an author: its ActivityPub URI (`uri`, else its profile `url`) is
    /// the stable id, so one person seen through two instances is one identity.
    fn author(&self, account: &Value) -> Option<Author> {
        let text = |key: &str| {
            account
                .get(key)
                .and_then(Value::as_str)
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
        };
        let url = text("url");
        let platform_id = text("uri").or(url.clone())?;
        let acct = text("acct")?;
        let handle = if acct.contains('@') {
            format!("@{acct}")
        } else {
            format!("@{acct}@{}", self.host())
        };
        Some(Author {
            platform_id,
            handle: Some(handle),
            display_name: text("display_name").or(text("username")),
            profile_url: url,
            avatar_url: text("avatar"),
            email: None,
            phone: None,
            links: profile_links(account),
        })
    }
}

/// The links an account's profile shows: each profile field's links (verified when the
/// instance found a `rel="me"` link back, `verified_at`), or the field's text when it holds
/// no link (`ana@example.com`, `@ana@other.example`); then the links of its bio that are
/// not mentions or hashtags, and the addresses and handles its bio writes as text.
fn profile_links(account: &Value) -> Vec<ProfileLink> {
    let is_mention = |class: &str| {
        class
            .split_ascii_whitespace()
            .any(|c| c == "mention" || c == "hashtag")
    };
    let mut links: Vec<ProfileLink> = Vec::new();
    let mut add = |url: String, label: Option<String>, verified: bool| {
        if links.len() < crate::MAX_PROFILE_LINKS && !links.iter().any(|link| link.url == url) {
            links.push(ProfileLink {
                url,
                label,
                verified,
            });
        }
    };
    let fields = account.get("fields").and_then(Value::as_array);
    for field in fields.into_iter().flatten() {
        let value = field
            .get("value")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let label = field
            .get("name")
            .and_then(Value::as_str)
            .map(str::trim)
            .filter(|name| !name.is_empty())
            .map(str::to_owned);
        let verified = field.get("verified_at").is_some_and(|at| !at.is_null());
        let mut urls: Vec<String> = crate::text::anchors(value)
            .into_iter()
            .filter(|(_, class)| !is_mention(class))
            .map(|(href, _)| href)
            .collect();
        // Mastodon verifies a field's one link; a field with several, or links read from
        // its text, are the person's claim only.
        let verified = verified && urls.len() == 1;
        if urls.is_empty() {
            urls = crate::text::links_in_text(&crate::text::html_to_text(value));
        }
        for url in urls {
            add(url, label.clone(), verified);
        }
    }
    let note = account
        .get("note")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let bio = Some("bio".to_owned());
    for (href, class) in crate::text::anchors(note) {
        if !is_mention(&class) {
            add(href, bio.clone(), false);
        }
    }
    for url in crate::text::links_in_text(&crate::text::html_to_text(note)) {
        if !url.starts_with("http") {
            add(url, bio.clone(), false);
        }
    }
    links
}

/// The characters a status may have on an instance that does not say otherwise.
pub const DEFAULT_MAX_CHARACTERS: usize = 500;

/// What a reply posts: `text` with a leading mention of the answered author (unless the
/// text mentions them already), so they are notified.
fn status_text(to: &ReplyTarget, text: &str) -> String {
    let status = text.trim().to_owned();
    let Some(recipient) = to.recipient.as_deref() else {
        return status;
    };
    let mention = if recipient.starts_with('@') {
        recipient.to_owned()
    } else {
        format!("@{recipient}")
    };
    if status.contains(&mention) {
        status
    } else {
        format!("{mention} {status}")
    }
}

/// The length of a status as Mastodon counts it against `max_characters`: a link counts as
/// 23 characters whatever its length, a mention of a remote account as its local part
/// (`@maya@social.example` is `@maya`), and the rest in user-perceived characters
/// (extended grapheme clusters: a family emoji of five code points is one), as its
/// validators count `grapheme_length`
/// (<https://docs.joinmastodon.org/user/posting/#text>).
fn status_length(status: &str) -> usize {
    let count =
        |text: &str| unicode_segmentation::UnicodeSegmentation::graphemes(text, true).count();
    const URL_LENGTH: usize = 23;
    let mut length = 0;
    let mut word = String::new();
    let mut count_word = |word: &mut String| {
        if word.starts_with("https://") || word.starts_with("http://") {
            length += URL_LENGTH;
        } else if let Some(local) = word
            .strip_prefix('@')
            .and_then(|rest| rest.split_once('@'))
            .filter(|(local, domain)| is_mention(local, domain))
            .map(|(local, _)| local)
        {
            length += 1 + count(local);
        } else {
            length += count(word);
        }
        word.clear();
    };
    let mut spaces = 0;
    let mut after_cr = false;
    for c in status.chars() {
        if c.is_whitespace() {
            count_word(&mut word);
            // "\r\n" is one grapheme.
            if !(after_cr && c == '\n') {
                spaces += 1;
            }
        } else {
            word.push(c);
        }
        after_cr = c == '\r';
    }
    count_word(&mut word);
    length + spaces
}

/// Whether `@local@domain` is a mention Mastodon recognises (and so counts by its local
/// part): a username of letters, digits, `_`, `.`, `-`, and a domain of word characters,
/// dots and dashes. Anything else (a saved reply's inert value, with a word joiner) is
/// counted whole, as Mastodon counts it.
fn is_mention(local: &str, domain: &str) -> bool {
    !local.is_empty()
        && local
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
        && !domain.is_empty()
        && domain
            .chars()
            .all(|c| c.is_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

/// Orders Mastodon ids: decimal strings of any length.
fn compare_ids(a: &str, b: &str) -> std::cmp::Ordering {
    a.len().cmp(&b.len()).then_with(|| a.cmp(b))
}

#[async_trait::async_trait]
impl Connector for MastodonConnector {
    fn channel(&self) -> Channel {
        Channel::Mastodon
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
        let mut state = MastodonCursor::decode(cursor);
        let mut not_before = None;
        if state.me.is_none() {
            let (me, _) = self
                .get("/api/v1/accounts/verify_credentials", &[], &mut not_before)
                .await?;
            state.me = me.get("id").and_then(Value::as_str).map(str::to_owned);
        }
        let me = state.me.clone();
        let backfill = self.config.backfill_limit;
        let mut taken: Vec<(Value, Listen)> = Vec::new();
        let mut tags = BTreeMap::new();
        let mut search = BTreeMap::new();
        let mut more = false;
        let mut stopped = false;
        let listens = std::iter::once(Listen::Mentions)
            .chain(self.config.hashtags.iter().map(|tag| Listen::Tag(tag)))
            .chain(
                self.config
                    .keywords
                    .iter()
                    .map(|keyword| Listen::Search(keyword)),
            );
        for listen in listens {
            let mut stream = match listen {
                Listen::Mentions => state.notifications.take(),
                Listen::Tag(tag) => state.tags.remove(tag),
                Listen::Search(keyword) => state.search.remove(keyword),
            }
            .unwrap_or_default();
            if stream.mark.is_none() && stream.walk.is_none() {
                stream = Stream::first(backfill);
            }
            if stopped {
                more = true;
            } else {
                let mut entries = Vec::new();
                let read = self
                    .read(
                        listen,
                        &mut stream,
                        &mut entries,
                        taken.len(),
                        started,
                        &mut not_before,
                    )
                    .await;
                match read {
                    Ok(goes_on) => more |= goes_on,
                    // Keep what the pull has; ask nothing more until the platform says.
                    Err(ConnectorError::RateLimited { retry_after_secs }) => {
                        crate::http::wait_out(&mut not_before, retry_after_secs);
                        more = true;
                        stopped = true;
                    }
                    Err(err) => return Err(err),
                }
                // Oldest first within the stream, whichever way it was read.
                entries.sort_by(|a, b| {
                    compare_ids(
                        entry_id(a).unwrap_or_default(),
                        entry_id(b).unwrap_or_default(),
                    )
                });
                taken.extend(entries.into_iter().map(|entry| (entry, listen)));
            }
            match listen {
                Listen::Mentions => state.notifications = Some(stream),
                Listen::Tag(tag) => {
                    tags.insert(tag.to_owned(), stream);
                }
                Listen::Search(keyword) => {
                    search.insert(keyword.to_owned(), stream);
                }
            }
        }
        // Hashtags and keywords no longer configured are forgotten.
        state.tags = tags;
        state.search = search;

        let mut seen = HashSet::new();
        let items = taken
            .iter()
            .filter_map(|(entry, listen)| {
                let (status, kind) = listen.status(entry)?;
                let item = self.item(status, kind, me.as_deref())?;
                seen.insert(item.external_id.clone()).then_some(item)
            })
            .collect();
        Ok(Pull {
            items,
            next_cursor: Some(state.encode()),
            more,
            not_before,
        })
    }

    fn default_reply_limit(&self) -> Option<ReplyLimit> {
        Some(ReplyLimit::Characters(DEFAULT_MAX_CHARACTERS))
    }

    /// `GET /api/v2/instance`, `configuration.statuses.max_characters`
    /// (<https://docs.joinmastodon.org/entities/Instance/#max_characters>): instances
    /// raise the default 500.
    async fn reply_limit(&self) -> Result<Option<ReplyLimit>, ConnectorError> {
        let (instance, _) = self.get("/api/v2/instance", &[], &mut None).await?;
        let max = instance
            .pointer("/configuration/statuses/max_characters")
            .and_then(Value::as_u64)
            .filter(|max| *max > 0)
            .ok_or_else(|| {
                self.shape(
                    "/api/v2/instance",
                    "no configuration.statuses.max_characters",
                )
            })?;
        Ok(Some(ReplyLimit::Characters(
            usize::try_from(max).unwrap_or(usize::MAX),
        )))
    }

    fn reply_length(&self, to: &ReplyTarget, text: &str, limit: ReplyLimit) -> usize {
        match limit {
            ReplyLimit::Characters(_) => status_length(&status_text(to, text)),
            ReplyLimit::Graphemes(_) => limit.measure(&status_text(to, text)),
        }
    }

    async fn reply(&self, to: &ReplyTarget, text: &str) -> Result<Sent, ConnectorError> {
        let status = status_text(to, text);
        let visibility = to
            .context
            .get("visibility")
            .and_then(Value::as_str)
            .unwrap_or("public");
        let now = Utc::now();
        let response = self
            .client
            .post(format!("{}/api/v1/statuses", self.config.base_url))
            .bearer_auth(&self.config.access_token)
            .header("Idempotency-Key", &to.idempotency_key)
            .json(&json!({
                "status": status,
                "in_reply_to_id": to.external_id,
                "visibility": visibility,
            }))
            .send()
            .await
            .map_err(http::transport)?;
        http::check_status(&response, now)?;
        let body = http::read_capped(response, MAX_BODY_BYTES).await?;
        let posted: Value = serde_json::from_slice(&body).map_err(|err| {
            ConnectorError::Payload(format!(
                "{} answered the reply with invalid JSON: {err}",
                self.host()
            ))
        })?;
        let id = posted
            .get("id")
            .and_then(Value::as_str)
            .ok_or_else(|| self.shape("/api/v1/statuses", "a status without an id"))?;
        Ok(Sent {
            external_id: id.to_owned(),
            url: posted.get("url").and_then(Value::as_str).map(str::to_owned),
            text: status,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A kept page of `bytes` bytes named by its first byte.
    fn fetched(name: u8, bytes: usize) -> Fetched {
        Fetched {
            body: vec![name; bytes],
            headers: Default::default(),
        }
    }

    fn name(fetched: Option<Fetched>) -> Option<u8> {
        fetched.map(|fetched| fetched.body[0])
    }

    #[test]
    fn the_pages_a_walk_kept_come_back_oldest_first_each_where_the_last_left_off() {
        let mut kept = Kept::new(1_000);
        // Walked newest first: page 3 at the newest, 2 before id 300, 1 before id 200.
        kept.walked("n", None, Some("300".into()), fetched(3, 100));
        kept.walked("n", Some("300"), Some("200".into()), fetched(2, 100));
        kept.walked("n", Some("200"), Some("100".into()), fetched(1, 100));
        // Nothing is given while the walk goes on.
        assert_eq!(name(kept.next("n", "0")), None);
        assert_eq!(kept.bytes, 300);
        // The oldest page, asked for before id 100, was handed over; the stream goes on
        // from its newest, 99.
        kept.reached("n", Some("100"), "99");
        assert_eq!(name(kept.next("n", "98")), None, "not where it left off");
        assert_eq!(
            kept.bytes, 0,
            "pages that can no longer be placed are dropped"
        );

        kept.walked("n", None, Some("300".into()), fetched(3, 100));
        kept.walked("n", Some("300"), Some("200".into()), fetched(2, 100));
        kept.walked("n", Some("200"), Some("100".into()), fetched(1, 100));
        kept.reached("n", Some("100"), "99");
        assert_eq!(name(kept.next("n", "99")), Some(1));
        // Until the page given is read, nothing more.
        assert_eq!(name(kept.next("n", "199")), None);
        kept.went_on("n", "199");
        assert_eq!(name(kept.next("n", "199")), Some(2));
        kept.went_on("n", "299");
        assert_eq!(name(kept.next("n", "299")), Some(3));
        kept.went_on("n", "399");
        assert_eq!(name(kept.next("n", "399")), None);
        assert_eq!(kept.bytes, 0);
        assert!(kept.streams.is_empty());
    }

    #[test]
    fn past_its_bytes_the_newest_kept_pages_are_dropped_and_asked_for_again() {
        let mut kept = Kept::new(250);
        kept.walked("n", None, Some("300".into()), fetched(3, 100));
        kept.walked("t", None, Some("900".into()), fetched(9, 100));
        kept.walked("n", Some("300"), Some("200".into()), fetched(2, 100));
        // Over 250: the newest of the stream that grew went.
        assert_eq!(kept.bytes, 200);
        kept.walked("n", Some("200"), Some("100".into()), fetched(1, 100));
        assert_eq!(kept.bytes, 200);
        kept.reached("n", Some("100"), "99");
        assert_eq!(name(kept.next("n", "99")), Some(1));
        kept.went_on("n", "199");
        // Page 2 was dropped: the stream asks for it.
        assert_eq!(name(kept.next("n", "199")), None);
        // The other stream's page is still there.
        kept.reached("t", Some("900"), "899");
        assert_eq!(name(kept.next("t", "899")), Some(9));
        assert_eq!(kept.bytes, 0);
        // A page larger than all it may keep is not kept.
        kept.walked("n", None, Some("300".into()), fetched(3, 251));
        assert_eq!(kept.bytes, 0);
    }

    #[test]
    fn only_pages_that_join_the_kept_ones_are_kept_with_them() {
        let mut kept = Kept::new(1_000);
        // A walk going on from a stored cursor keeps what it walks from there.
        kept.walked("n", Some("500"), Some("400".into()), fetched(5, 100));
        kept.walked("n", Some("400"), Some("300".into()), fetched(4, 100));
        // A page that does not go on from the last kept one starts again.
        kept.walked("n", Some("250"), Some("200".into()), fetched(2, 100));
        assert_eq!(kept.bytes, 100);
        // A handed-over page that does not join them: nothing can be placed.
        kept.reached("n", Some("150"), "149");
        assert_eq!(name(kept.next("n", "149")), None);
        assert_eq!(kept.bytes, 0);
        // A walk of one page keeps nothing.
        kept.reached("n", None, "99");
        assert_eq!(name(kept.next("n", "99")), None);
    }

    #[test]
    fn a_profiles_fields_and_bio_give_its_links_and_mentions_do_not() {
        // An Account entity's `fields` and `note` as the API returns them (the HTML
        // Mastodon renders, `verified_at` where it found a rel="me" link back).
        let account = json!({
            "id": "110", "username": "ana", "acct": "ana", "display_name": "Ana",
            "uri": "https://social.example/users/ana", "url": "https://social.example/@ana",
            "note": "<p>Maker. Also <a href=\"https://bsky.app/profile/ana.example.com\" target=\"_blank\" rel=\"nofollow noopener noreferrer\" translate=\"no\"><span class=\"invisible\">https://</span><span class=\"\">bsky.app/profile/ana.example.com</span><span class=\"invisible\"></span></a>, with <span class=\"h-card\" translate=\"no\"><a href=\"https://social.example/@bob\" class=\"u-url mention\">@<span>bob</span></a></span> <a href=\"https://social.example/tags/rust\" class=\"mention hashtag\" rel=\"tag\">#<span>rust</span></a>. Write ana@mail.example</p>",
            "fields": [
                { "name": "Website", "value": "<a href=\"https://ana.example.com\" target=\"_blank\" rel=\"nofollow noopener noreferrer me\" translate=\"no\"><span class=\"invisible\">https://</span><span class=\"\">ana.example.com</span><span class=\"invisible\"></span></a>", "verified_at": "2026-10-01T10:00:00.000+00:00" },
                { "name": "Fediverse", "value": "@ana@other.example", "verified_at": null },
                { "name": "Pronouns", "value": "she/her", "verified_at": null }
            ]
        });
        let link = |url: &str, label: &str, verified: bool| ProfileLink {
            url: url.into(),
            label: Some(label.into()),
            verified,
        };
        assert_eq!(
            profile_links(&account),
            vec![
                link("https://ana.example.com", "Website", true),
                link("@ana@other.example", "Fediverse", false),
                link("https://bsky.app/profile/ana.example.com", "bio", false),
                link("ana@mail.example", "bio", false),
            ]
        );
        assert!(profile_links(&json!({})).is_empty());
    }

    #[test]
    fn a_hashtag_or_keyword_configured_twice_is_one_stream() {
        let config = MastodonConfig::parse(&serde_json::json!({
            "base_url": "https://social.example", "access_token": "t",
            "hashtags": ["rapport", "#rapport", "Rapport", "crm"],
            "keywords": ["export", " export ", "EXPORT"]
        }))
        .unwrap();
        assert_eq!(config.hashtags, ["rapport", "crm"]);
        assert_eq!(config.keywords, ["export"]);
    }

    fn to(recipient: Option<&str>) -> ReplyTarget {
        ReplyTarget {
            external_id: "1".into(),
            thread_key: None,
            recipient: recipient.map(str::to_owned),
            context: Value::Null,
            idempotency_key: "k".into(),
        }
    }

    #[test]
    fn a_status_is_counted_as_mastodon_counts_it() {
        // Links are 23, a remote mention its local part, everything else its characters.
        assert_eq!(status_length("héllo"), 5);
        // Decomposed é (e + combining acute) and a family of five code points: one each.
        assert_eq!(status_length("he\u{301}llo 👨‍👩‍👧"), 5 + 1 + 1);
        assert_eq!(
            status_length("see https://example.com/a/very/long/path/indeed/yes"),
            4 + 23
        );
        assert_eq!(status_length("@maya@social.example hi"), 5 + 1 + 2);
        assert_eq!(status_length("a  b"), 4);
        assert_eq!(status_length("a\r\nb"), 3);
        // Not a mention Mastodon sees (an inert value from a saved reply): counted whole.
        assert_eq!(status_length("@\u{2060}ana@\u{2060}m.example"), 16);
        let reply = status_text(&to(Some("@maya@social.example")), " thanks ");
        assert_eq!(reply, "@maya@social.example thanks");
        assert_eq!(status_length(&reply), 12);
        // A text that mentions the author already gets no second mention.
        assert_eq!(
            status_text(&to(Some("maya@social.example")), "@maya@social.example ok"),
            "@maya@social.example ok"
        );
        assert_eq!(status_text(&to(None), "ok"), "ok");
    }

    #[test]
    fn the_config_is_checked_and_backfill_limit_named_when_wrong() {
        let base = json!({ "base_url": "https://social.example/", "access_token": "t0ken" });
        let config = MastodonConfig::parse(&base).unwrap();
        assert_eq!(config.base_url, "https://social.example");
        assert_eq!(config.backfill_limit, DEFAULT_BACKFILL_LIMIT);
        assert!(!format!("{config:?}").contains("t0ken"));
        let with = |value: Value| {
            let mut config = base.clone();
            config["backfill_limit"] = value;
            MastodonConfig::parse(&config)
        };
        assert_eq!(with(json!(0)).unwrap().backfill_limit, 0);
        assert_eq!(with(json!(100_000)).unwrap().backfill_limit, 100_000);
        for wrong in [json!(100_001), json!(-1), json!("all"), json!(1.5)] {
            let (field, message) = with(wrong.clone()).unwrap_err();
            assert_eq!(field, "backfill_limit", "{wrong}: {message}");
        }
        assert_eq!(
            with(json!(100_001)).unwrap_err().1,
            "backfill_limit is at most 100000"
        );
    }

    #[test]
    fn a_cursor_of_the_version_before_backfill_reads_as_marks() {
        let before = Cursor(
            json!({ "me": "1", "notifications": "34975870", "tags": { "rapport": "113" },
                "search": { "rapport crm": "114" } })
            .to_string(),
        );
        let cursor = MastodonCursor::decode(Some(&before));
        let mark = |id: &str| Stream {
            mark: Some(id.to_owned()),
            walk: None,
        };
        assert_eq!(cursor.me.as_deref(), Some("1"));
        assert_eq!(cursor.notifications, Some(mark("34975870")));
        assert_eq!(cursor.tags["rapport"], mark("113"));
        assert_eq!(cursor.search["rapport crm"], mark("114"));
        // Written back in this version's form, and read again the same.
        let stored = cursor.encode();
        let json: Value = serde_json::from_str(&stored.0).unwrap();
        assert_eq!(json["notifications"], json!({ "mark": "34975870" }));
        assert_eq!(MastodonCursor::decode(Some(&stored)), cursor);
        // "0": that version's walk had not begun, so nothing is stored: a first sync.
        let unstarted = Cursor(json!({ "me": "1", "notifications": "0" }).to_string());
        assert_eq!(
            MastodonCursor::decode(Some(&unstarted)).notifications,
            Some(Stream::default())
        );
        // A walk under way survives a round trip.
        let walking = MastodonCursor {
            notifications: Some(Stream {
                mark: None,
                walk: Some(Walk {
                    cursor: Some("40002920".into()),
                    top: Some("40002999".into()),
                    left: Some(2_420),
                }),
            }),
            ..MastodonCursor::default()
        };
        let stored = walking.encode();
        assert_eq!(
            serde_json::from_str::<Value>(&stored.0).unwrap()["notifications"],
            json!({ "walk": { "cursor": "40002920", "top": "40002999", "left": 2420 } })
        );
        assert_eq!(MastodonCursor::decode(Some(&stored)), walking);
        // Unreadable: a first sync.
        assert_eq!(
            MastodonCursor::decode(Some(&Cursor("{\"notifications\": 5}".into()))),
            MastodonCursor::default()
        );
        assert_eq!(Stream::first(7).walk.unwrap().left, Some(7));
    }

    #[test]
    fn a_reply_limit_counts_in_its_unit() {
        let family = "👨‍👩‍👧";
        assert_eq!(ReplyLimit::Graphemes(300).measure(family), 1);
        assert_eq!(ReplyLimit::Characters(500).measure(family), 5);
        assert_eq!(ReplyLimit::Graphemes(300).unit(), "graphemes");
    }
}
