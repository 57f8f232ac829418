//! The Hacker News channel (pull only), over the Algolia HN Search API
//! (<https://hn.algolia.com/api>): Hacker News itself has no API for posting, so a reply
//! is made on the item's page, which every item links to.
//!
//! Plain calls through the guarded client: one read-only, unauthenticated endpoint.
//!
//! - Listening: `GET /api/v1/search_by_date` (newest first) for each keyword
//!   (`query=…&tags=(story,comment)`) and each domain (`query=…` with
//!   `restrictSearchableAttributes=url`, `tags=story`: comments have no url), `hitsPerPage`
//!   100, paged with `page`.
//! - Cursor: per stream a *mark*, the newest `created_at_i` handed over and the
//!   `objectID`s of that second, and while one is under way a *walk* back from the newest:
//!   its upper bound (`numericFilters=created_at_i<=…`, fixed when the walk begins so new
//!   items do not shift its pages), the page, the newest second seen and on a first sync
//!   how many items it may still take. A later walk asks `created_at_i>=` the mark: items
//!   sharing the mark's second that came later are not skipped, and those of the mark's
//!   `objectID`s are not handed over again. Algolia serves at most 1,000 hits per query
//!   ([`WINDOW`]); a walk deeper than that starts over at the oldest second it reached
//!   (its floor), and the items of that second it handed over already, which come again,
//!   are not taken twice. A first sync walks back until `backfill_limit` items (0: it only
//!   sets the mark), the end of the results or the pull's budget. The stored cursor is
//!   JSON: `{"streams": {"keyword/{keyword}": {"mark": {"at", "ids"}, "walk": {"upper",
//!   "page", "top", "left", "floor"}}, "domain/{domain}": {…}}}`.
//! - Items: the `objectID` (Hacker News's item id) is the external id, the author's
//!   username the identity (Hacker News names cannot change), `parent_id` what a comment
//!   answers (a comment joins its parent's conversation; a story starts its own),
//!   `https://news.ycombinator.com/item?id={objectID}` the link. Hits without an author are
//!   skipped.
//! - `429` and rate-limit headers become "not before" times (Algolia allows about 10,000
//!   requests an hour per address); a pull stops asking at the first and keeps what it
//!   has. A stream whose search fails (a 4xx, an outage) warns in the stored cursor and
//!   does not stop the others.

use std::collections::{BTreeMap, HashSet};

use chrono::{DateTime, TimeZone, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::http::{self, MAX_BODY_BYTES};
use crate::mark::Mark;
pub use crate::mastodon::{PULL_ITEMS, PULL_TIME};
use crate::{
    Author, Capabilities, Channel, Connector, ConnectorError, Cursor, InboundItem, Pull,
    ReplyTarget, Sent,
};

/// Hits asked for per request.
pub const PAGE: usize = 100;

/// The hits Algolia serves for one query, whatever the paging.
pub const WINDOW: usize = 1_000;

/// Items per stream a first sync takes when the source does not say.
pub const DEFAULT_BACKFILL_LIMIT: u64 = 1_000;

/// The most a source may ask a first sync to take per stream.
pub const MAX_BACKFILL_LIMIT: u64 = 100_000;

/// The keywords and domains a source may listen to, together (each a search per sync).
pub const MAX_QUERIES: usize = 20;

/// The characters a keyword or domain may have.
pub const MAX_QUERY_CHARS: usize = 100;

/// The default API.
pub const API: &str = "https://hn.algolia.com";

/// Where the items' links point.
const WEB: &str = "https://news.ycombinator.com";

fn default_backfill_limit() -> u64 {
    DEFAULT_BACKFILL_LIMIT
}

fn default_base_url() -> String {
    API.to_owned()
}

/// A source's settings (none of them secret).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HackerNewsConfig {
    #[serde(default = "default_base_url")]
    pub base_url: String,
    #[serde(default)]
    pub keywords: Vec<String>,
    /// Sites whose stories are listened to (`example.com`).
    #[serde(default)]
    pub domains: Vec<String>,
    #[serde(default = "default_backfill_limit")]
    pub backfill_limit: u64,
}

impl HackerNewsConfig {
    /// Reads and checks a source's settings; the error names the field.
    pub fn parse(config: &Value) -> Result<HackerNewsConfig, (String, String)> {
        let mut config: HackerNewsConfig = crate::read_config(config, "keywords")?;
        crate::check_http_url("base_url", &config.base_url)?;
        config.base_url = config.base_url.trim().trim_end_matches('/').to_owned();
        for keyword in &mut config.keywords {
            *keyword = keyword.trim().to_owned();
        }
        for domain in &mut config.domains {
            let bare = domain.trim().to_ascii_lowercase();
            let bare = bare
                .trim_start_matches("https://")
                .trim_start_matches("http://")
                .trim_start_matches("www.")
                .trim_end_matches('/');
            if bare.is_empty()
                || !bare.contains('.')
                || !bare
                    .bytes()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'-'))
            {
                return Err((
                    "domains".into(),
                    format!("`{domain}` is not a domain (example.com)"),
                ));
            }
            *domain = bare.to_owned();
        }
        crate::drop_repeats(&mut config.keywords);
        crate::drop_repeats(&mut config.domains);
        for (field, queries) in [("keywords", &config.keywords), ("domains", &config.domains)] {
            if queries.iter().any(String::is_empty) {
                return Err((field.into(), format!("{field} must not be empty")));
            }
            if let Some(long) = queries.iter().find(|q| q.chars().count() > MAX_QUERY_CHARS) {
                let start: String = long.chars().take(20).collect();
                return Err((
                    field.into(),
                    format!("`{start}…` is longer than {MAX_QUERY_CHARS} characters"),
                ));
            }
        }
        if config.keywords.is_empty() && config.domains.is_empty() {
            return Err((
                "keywords".into(),
                "a Hacker News source listens to keywords, domains or both: give at least one"
                    .into(),
            ));
        }
        if config.keywords.len() + config.domains.len() > MAX_QUERIES {
            return Err((
                if config.keywords.len() > MAX_QUERIES {
                    "keywords"
                } else {
                    "domains"
                }
                .into(),
                format!(
                    "keywords and domains are at most {MAX_QUERIES} together (each is a search \
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
}

/// A walk back through a stream, under way.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
struct Walk {
    /// `created_at_i<=` this: its first page's newest second, fixed after that page (`None`
    /// on it) until Algolia's window is used up, then the oldest second reached.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    upper: Option<i64>,
    #[serde(default)]
    page: usize,
    /// The newest second seen since the walk began: the mark when it ends.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    top: Option<Mark>,
    /// On a first sync, how many items the walk may still take.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    left: Option<u64>,
    /// Once Algolia's window was used up: the second the walk starts over from and the ids
    /// of that second it handed over already, which come again and are not taken twice
    /// (nor counted against `left`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    floor: Option<Mark>,
}

/// Where one stream stands (see the module doc).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
struct Stream {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    mark: Option<Mark>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    walk: Option<Walk>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    warning: Option<String>,
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

    /// Takes one page (`hits` as served, `pages` the result's `nbPages`) into `taken`:
    /// those the mark does not cover, within the walk's allowance. Ends the walk (its
    /// newest second becomes the mark) at the results' end or the allowance; moves it to
    /// the next page, or below the oldest second reached when Algolia's window is used up.
    /// Returns whether the walk goes on.
    fn step(
        &mut self,
        mut walk: Walk,
        hits: Vec<Value>,
        pages: usize,
        taken: &mut Vec<Value>,
    ) -> bool {
        let full = hits.len() >= PAGE;
        let mut oldest: Option<i64> = None;
        // The ids of the oldest second on this page: the floor if the walk starts over.
        let mut oldest_ids: Vec<String> = Vec::new();
        for hit in hits {
            let Some((at, id)) = key(&hit) else {
                continue;
            };
            walk.top.get_or_insert_with(Mark::default).add(at, &id);
            if oldest.is_none_or(|old| at < old) {
                oldest = Some(at);
                oldest_ids.clear();
            }
            if oldest == Some(at) {
                oldest_ids.push(id.clone());
            }
            let again = walk
                .floor
                .as_ref()
                .is_some_and(|floor| floor.at == at && floor.ids.contains(&id));
            if again
                || self.mark.as_ref().is_some_and(|mark| mark.covers(at, &id))
                || walk.left == Some(0)
            {
                continue;
            }
            taken.push(hit);
            if let Some(left) = &mut walk.left {
                *left -= 1;
            }
        }
        // Later pages of this walk stay below its first page's newest second.
        if walk.upper.is_none() {
            walk.upper = walk.top.as_ref().map(|top| top.at);
        }
        let goes_on = full && walk.left != Some(0) && oldest.is_some();
        let next = if !goes_on {
            None
        } else if walk.page.saturating_add(1) < pages
            && walk.page.saturating_add(2).saturating_mul(PAGE) <= WINDOW
        {
            Some((walk.upper, walk.page.saturating_add(1)))
        } else if walk.page.saturating_add(1) >= pages
            && walk.page.saturating_add(1).saturating_mul(PAGE) < WINDOW
        {
            // The results' end.
            None
        } else {
            // Algolia's window is used up: on below the oldest second reached (its items
            // come again: the floor skips them), unless that goes nowhere.
            let restart = oldest.filter(|oldest| walk.upper.is_none_or(|upper| *oldest < upper));
            if let Some(at) = restart {
                // A page holds at most `PAGE` hits; a server sending more is not kept.
                oldest_ids.truncate(PAGE);
                walk.floor = Some(Mark {
                    at,
                    ids: std::mem::take(&mut oldest_ids),
                });
            }
            restart.map(|oldest| (Some(oldest), 0))
        };
        match next {
            Some((upper, page)) => {
                walk.upper = upper;
                walk.page = page;
                self.walk = Some(walk);
                true
            }
            None => {
                let top = walk.top.unwrap_or_default();
                self.mark = Some(match self.mark.take() {
                    Some(mark) => mark.merge(top),
                    None => top,
                });
                self.walk = None;
                false
            }
        }
    }
}

/// A hit's `created_at_i` and `objectID`.
fn key(hit: &Value) -> Option<(i64, String)> {
    let at = hit.get("created_at_i")?.as_i64()?;
    let id = hit.get("objectID")?.as_str()?;
    (!id.is_empty() && id.len() <= 32 && id.bytes().all(|c| c.is_ascii_digit()))
        .then(|| (at, id.to_owned()))
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
struct HackerNewsCursor {
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    streams: BTreeMap<String, Stream>,
}

impl HackerNewsCursor {
    fn decode(cursor: Option<&Cursor>) -> HackerNewsCursor {
        cursor
            .and_then(|cursor| serde_json::from_str(&cursor.0).ok())
            .unwrap_or_default()
    }

    fn encode(&self) -> Cursor {
        Cursor(serde_json::to_string(self).expect("a cursor serialises"))
    }
}

/// One search the connector listens to.
#[derive(Clone, Copy, Debug)]
enum Listen<'a> {
    Keyword(&'a str),
    Domain(&'a str),
}

impl Listen<'_> {
    fn key(self) -> String {
        match self {
            Listen::Keyword(q) => format!("keyword/{q}"),
            Listen::Domain(d) => format!("domain/{d}"),
        }
    }
}

pub struct HackerNewsConnector {
    client: reqwest::Client,
    config: HackerNewsConfig,
}

impl HackerNewsConnector {
    pub fn new(client: reqwest::Client, config: HackerNewsConfig) -> HackerNewsConnector {
        HackerNewsConnector { client, config }
    }

    /// One page of a stream: its hits (newest first) and `nbPages`.
    async fn page(
        &self,
        listen: Listen<'_>,
        stream: &Stream,
        walk: &Walk,
        not_before: &mut Option<DateTime<Utc>>,
    ) -> Result<(Vec<Value>, usize), ConnectorError> {
        let per_page = if walk.left == Some(0) { 1 } else { PAGE };
        let mut query = match listen {
            Listen::Keyword(q) => vec![
                ("query", q.to_owned()),
                ("tags", "(story,comment)".to_owned()),
            ],
            Listen::Domain(d) => vec![
                ("query", d.to_owned()),
                ("restrictSearchableAttributes", "url".to_owned()),
                ("tags", "story".to_owned()),
            ],
        };
        let mut filters = Vec::new();
        if let Some(mark) = &stream.mark {
            filters.push(format!("created_at_i>={}", mark.at));
        }
        if let Some(upper) = walk.upper {
            filters.push(format!("created_at_i<={upper}"));
        }
        if !filters.is_empty() {
            query.push(("numericFilters", filters.join(",")));
        }
        query.push(("hitsPerPage", per_page.to_string()));
        query.push(("page", walk.page.to_string()));
        let now = Utc::now();
        let response = self
            .client
            .get(format!("{}/api/v1/search_by_date", self.config.base_url))
            .query(&query)
            .header("accept", "application/json")
            .send()
            .await
            .map_err(http::transport)?;
        http::check_status(&response, now)?;
        if let Some(at) = http::not_before(response.headers(), now) {
            let at = at.min(now + chrono::Duration::days(1));
            *not_before = Some(not_before.map_or(at, |old| old.max(at)));
        }
        let body = http::read_capped(response, MAX_BODY_BYTES).await?;
        let host = reqwest::Url::parse(&self.config.base_url)
            .ok()
            .and_then(|url| url.host_str().map(str::to_owned))
            .unwrap_or_default();
        let mut body: Value = serde_json::from_slice(&body).map_err(|err| {
            ConnectorError::Payload(format!(
                "{host} answered search_by_date with invalid JSON: {err}"
            ))
        })?;
        let pages = body
            .get("nbPages")
            .and_then(Value::as_u64)
            .map_or(0, |pages| pages.min(WINDOW as u64) as usize);
        match body.get_mut("hits").map(Value::take) {
            Some(Value::Array(hits)) => Ok((hits.into_iter().take(per_page).collect(), pages)),
            _ => Err(ConnectorError::Payload(format!(
                "{host} answered search_by_date without hits"
            ))),
        }
    }

    /// Walks `stream` while the pull's budget lasts (`taken` holds every stream's items of
    /// this pull so far); returns whether it goes on.
    async fn walk(
        &self,
        listen: Listen<'_>,
        stream: &mut Stream,
        taken: &mut Vec<Value>,
        started: std::time::Instant,
        not_before: &mut Option<DateTime<Utc>>,
    ) -> Result<bool, ConnectorError> {
        loop {
            let walk = stream.walk.clone().unwrap_or_default();
            let (hits, pages) = self.page(listen, stream, &walk, not_before).await?;
            let had = taken.len();
            // A page of which nothing is taken leaves the rest of the walk to the next
            // scheduled pull.
            if !stream.step(walk, hits, pages, taken) || taken.len() == had {
                return Ok(false);
            }
            if taken.len() + PAGE > PULL_ITEMS
                || started.elapsed() >= PULL_TIME
                || not_before.is_some_and(|at| at > Utc::now())
            {
                return Ok(true);
            }
        }
    }
}

/// A hit as an item; `None` without an author or what every hit has.
fn item(hit: &Value) -> Option<InboundItem> {
    let (at, id) = key(hit)?;
    let text = |key: &str| {
        hit.get(key)
            .and_then(Value::as_str)
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
    };
    let author = text("author")?;
    let tags: Vec<&str> = hit
        .get("_tags")
        .and_then(Value::as_array)
        .map(|tags| tags.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let comment = tags.contains(&"comment") || text("comment_text").is_some();
    let (subject, html) = if comment {
        (text("story_title"), text("comment_text"))
    } else {
        (text("title"), text("story_text"))
    };
    let body = match &html {
        Some(html) => crate::text::html_to_text(html),
        None => text("url").or_else(|| text("title")).unwrap_or_default(),
    };
    let parent = hit.get("parent_id").and_then(|parent| match parent {
        Value::Number(n) => n.as_u64().map(|n| n.to_string()),
        Value::String(s) if !s.is_empty() && s.bytes().all(|c| c.is_ascii_digit()) => {
            Some(s.clone())
        }
        _ => None,
    });
    Some(InboundItem {
        external_id: id.clone(),
        author: Author {
            platform_id: author.clone(),
            handle: Some(author.clone()),
            display_name: Some(author.clone()),
            profile_url: Some(format!("{WEB}/user?id={author}")),
            ..Author::default()
        },
        outbound: false,
        kind: if comment { "comment" } else { "post" }.to_owned(),
        subject,
        text: body,
        html,
        url: Some(format!("{WEB}/item?id={id}")),
        language: None,
        occurred_at: Utc.timestamp_opt(at, 0).single()?,
        thread_key: None,
        in_reply_to: if comment { parent } else { None },
        raw: hit.clone(),
    })
}

#[async_trait::async_trait]
impl Connector for HackerNewsConnector {
    fn channel(&self) -> Channel {
        Channel::HackerNews
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            pull: true,
            webhook: false,
            reply: false,
        }
    }

    async fn pull(&self, cursor: Option<&Cursor>) -> Result<Pull, ConnectorError> {
        let started = std::time::Instant::now();
        let mut state = HackerNewsCursor::decode(cursor);
        let mut not_before = None;
        let listens: Vec<Listen<'_>> = self
            .config
            .keywords
            .iter()
            .map(|q| Listen::Keyword(q))
            .chain(self.config.domains.iter().map(|d| Listen::Domain(d)))
            .collect();
        let mut streams = BTreeMap::new();
        let mut taken = Vec::new();
        let mut more = false;
        let mut stopped = false;
        let mut failures = Vec::new();
        for listen in listens {
            let key = listen.key();
            let mut stream = state
                .streams
                .remove(&key)
                .unwrap_or_else(|| Stream::first(self.config.backfill_limit));
            if stopped {
                more = true;
            } else {
                stream.warning = None;
                let walked = self
                    .walk(listen, &mut stream, &mut taken, started, &mut not_before)
                    .await;
                match walked {
                    Ok(goes_on) => more |= goes_on,
                    Err(ConnectorError::RateLimited { retry_after_secs }) => {
                        crate::http::wait_out(&mut not_before, retry_after_secs);
                        more = true;
                    }
                    Err(err @ (ConnectorError::Refused(_) | ConnectorError::Config(_))) => {
                        return Err(err)
                    }
                    Err(err) => {
                        stream.warning = Some(format!("the search for `{key}` failed: {err}"));
                        failures.push(err);
                    }
                }
            }
            streams.insert(key, stream);
            stopped |= not_before.is_some_and(|at| at > Utc::now());
        }
        // Every stream failed: the source's error, not a quiet empty sync.
        if !failures.is_empty() && failures.len() == streams.len() {
            return Err(failures.remove(0));
        }
        state.streams = streams;
        let mut seen = HashSet::new();
        let mut items: Vec<InboundItem> = taken
            .iter()
            .filter_map(item)
            .filter(|item| seen.insert(item.external_id.clone()))
            .collect();
        // Oldest first (a comment after what it answers); item ids grow with time.
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

    async fn reply(&self, _to: &ReplyTarget, _text: &str) -> Result<Sent, ConnectorError> {
        Err(ConnectorError::Unsupported(
            "reply on Hacker News (it has no API for posting: answer on the item's page)",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_keyword_or_domain_configured_twice_is_one_stream() {
        let config = HackerNewsConfig::parse(&serde_json::json!({
            "keywords": ["rapport", "Rapport "],
            "domains": ["example.com", "https://www.example.com/", "EXAMPLE.com"]
        }))
        .unwrap();
        assert_eq!(config.keywords, ["rapport"]);
        assert_eq!(config.domains, ["example.com"]);
    }
    use serde_json::json;

    fn hit(n: i64, at: i64) -> Value {
        json!({ "objectID": n.to_string(), "created_at_i": at, "author": format!("user{n}"),
            "_tags": ["comment", format!("author_user{n}"), "story_1"], "comment_text": "hi",
            "parent_id": 1, "story_id": 1, "story_title": "Show HN" })
    }

    fn ids(taken: &[Value]) -> Vec<String> {
        taken
            .iter()
            .map(|hit| hit["objectID"].as_str().unwrap().to_owned())
            .collect()
    }

    #[test]
    fn the_config_is_checked() {
        let config = HackerNewsConfig::parse(&json!({
            "keywords": [" rapport "], "domains": ["https://www.Example.com/"]
        }))
        .unwrap();
        assert_eq!(config.base_url, API);
        assert_eq!(config.keywords, ["rapport"]);
        assert_eq!(config.domains, ["example.com"]);
        assert_eq!(config.backfill_limit, DEFAULT_BACKFILL_LIMIT);
        let field = |config: Value| HackerNewsConfig::parse(&config).unwrap_err().0;
        assert_eq!(field(json!({})), "keywords");
        assert_eq!(field(json!({ "keywords": [""] })), "keywords");
        assert_eq!(field(json!({ "domains": ["not a domain"] })), "domains");
        assert_eq!(field(json!({ "keywords": ["k".repeat(101)] })), "keywords");
        assert_eq!(
            field(json!({ "keywords": ["a"], "base_url": "ftp://x" })),
            "base_url"
        );
        assert_eq!(
            field(json!({ "keywords": ["a"], "backfill_limit": 100_001 })),
            "backfill_limit"
        );
        let many: Vec<String> = (0..21).map(|i| format!("k{i}")).collect();
        assert_eq!(field(json!({ "keywords": many })), "keywords");
        assert_eq!(field(json!({ "keywords": ["a"], "token": "x" })), "token");
    }

    #[test]
    fn a_hit_is_an_item_with_a_deep_link_in_its_parents_thread() {
        let comment = json!({
            "_tags": ["comment", "author_pg", "story_8863"], "author": "pg",
            "comment_text": "<p>Rapport&#x27;s export works for me</p>",
            "created_at": "2026-11-02T09:00:00Z", "created_at_i": 1793610000,
            "objectID": "9224", "parent_id": 8863, "story_id": 8863,
            "story_title": "My YC app: Dropbox", "story_url": "http://www.getdropbox.com/u/2/screencast.html",
            "updated_at": "2026-11-02T09:00:00Z"
        });
        let item = item(&comment).unwrap();
        assert_eq!(item.external_id, "9224");
        assert_eq!(item.author.platform_id, "pg");
        assert_eq!(
            item.author.profile_url.as_deref(),
            Some("https://news.ycombinator.com/user?id=pg")
        );
        assert_eq!(item.kind, "comment");
        assert_eq!(item.text, "Rapport's export works for me");
        assert_eq!(item.subject.as_deref(), Some("My YC app: Dropbox"));
        assert_eq!(item.in_reply_to.as_deref(), Some("8863"));
        assert_eq!(
            item.url.as_deref(),
            Some("https://news.ycombinator.com/item?id=9224")
        );
        let mut story = json!({ "_tags": ["story", "author_dhouston", "story_8863"],
            "author": "dhouston", "title": "My YC app: Dropbox", "url": "http://www.getdropbox.com/u/2/screencast.html",
            "created_at_i": 1793600000, "objectID": "8863", "story_text": null });
        let item = super::item(&story).unwrap();
        assert_eq!((item.kind.as_str(), item.in_reply_to), ("post", None));
        assert_eq!(item.text, "http://www.getdropbox.com/u/2/screencast.html");
        story["author"] = Value::Null;
        assert!(super::item(&story).is_none());
    }

    #[test]
    fn a_walk_keeps_a_fixed_upper_bound_and_never_skips_the_marks_second() {
        // A first sync allowed 150 over pages of 100.
        let mut stream = Stream::first(150);
        let mut taken = Vec::new();
        let page = |from: i64| {
            (0..100)
                .map(|k| hit(from - k, 5_000 + from - k))
                .collect::<Vec<_>>()
        };
        let walk = stream.walk.clone().unwrap();
        assert!(stream.step(walk, page(400), 4, &mut taken));
        let walk = stream.walk.clone().unwrap();
        assert_eq!(
            (walk.upper, walk.page, walk.left),
            (Some(5_400), 1, Some(50))
        );
        assert!(!stream.step(walk, page(300), 4, &mut taken));
        assert_eq!(taken.len(), 150);
        assert_eq!(
            stream.mark,
            Some(Mark {
                at: 5_400,
                ids: vec!["400".into()]
            })
        );

        // Later: an item in the mark's second that came after it is taken; the mark's own
        // is not.
        let mut taken = Vec::new();
        let walk = Walk::default();
        assert!(!stream.step(
            walk,
            vec![hit(402, 5_401), hit(401, 5_400), hit(400, 5_400)],
            1,
            &mut taken
        ));
        assert_eq!(ids(&taken), ["402", "401"]);
        assert_eq!(
            stream.mark,
            Some(Mark {
                at: 5_401,
                ids: vec!["402".into()]
            })
        );

        // Past Algolia's window of 1,000: on below the oldest second reached, from page 0.
        let mut stream = Stream::first(5_000);
        let mut taken = Vec::new();
        let walk = Walk {
            upper: Some(9_000),
            page: 9,
            left: Some(5_000),
            ..Walk::default()
        };
        assert!(stream.step(walk, page(3_000), 50, &mut taken));
        let walk = stream.walk.clone().unwrap();
        assert_eq!((walk.upper, walk.page), (Some(5_000 + 2_901), 0));
        // The oldest second's items come again on the window's first page: not taken
        // twice, not counted against what the walk may take.
        assert_eq!(
            walk.floor,
            Some(Mark {
                at: 5_000 + 2_901,
                ids: vec!["2901".into()]
            })
        );
        let left = walk.left;
        let mut again = vec![hit(2_901, 5_000 + 2_901), hit(2_900, 5_000 + 2_900)];
        again.extend((0..98).map(|k| hit(2_899 - k, 5_000 + 2_899 - k)));
        let mut taken = Vec::new();
        assert!(stream.step(walk, again, 50, &mut taken));
        assert_eq!(taken.len(), 99);
        assert_eq!(ids(&taken[..1]), ["2900"]);
        assert_eq!(
            stream.walk.clone().unwrap().left,
            left.map(|left| left - 99)
        );

        // A floor holds every id of the oldest second the page reached, and only those.
        let mut stream = Stream::first(5_000);
        let walk = Walk {
            upper: Some(9_000),
            page: 9,
            left: Some(5_000),
            ..Walk::default()
        };
        let mut shared = page(3_000);
        shared[98] = hit(2_902, 5_000 + 2_901);
        let mut taken = Vec::new();
        assert!(stream.step(walk, shared, 50, &mut taken));
        assert_eq!(
            stream.walk.unwrap().floor,
            Some(Mark {
                at: 5_000 + 2_901,
                ids: vec!["2902".into(), "2901".into()]
            })
        );

        // Backfill 0: the mark is set, nothing taken.
        let mut stream = Stream::first(0);
        let mut taken = Vec::new();
        let walk = stream.walk.clone().unwrap();
        assert!(!stream.step(walk, vec![hit(7, 5_007)], 30, &mut taken));
        assert!(taken.is_empty());
        assert_eq!(stream.mark.unwrap().at, 5_007);

        let cursor = HackerNewsCursor {
            streams: BTreeMap::from([("keyword/a".to_owned(), Stream::first(3))]),
        };
        assert_eq!(HackerNewsCursor::decode(Some(&cursor.encode())), cursor);
    }
}
