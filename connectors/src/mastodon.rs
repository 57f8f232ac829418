//! The Mastodon channel (pull + reply), over the client API of any Mastodon-compatible
//! server (<https://docs.joinmastodon.org/methods/>).
//!
//! - Mentions: `GET /api/v1/notifications?types[]=mention` paged forward with `min_id`
//!   ("results immediately newer than this id"), `limit` 80 (the method's maximum); the
//!   next `min_id` comes from the `Link: <…>; rel="prev"` header (the page's newest id when
//!   the header is absent), as the API's paging guide asks, since a server may filter a
//!   page after choosing its bounds. A pull gathers pages until about [`PULL_ITEMS`]
//!   items, [`PULL_TIME`] or a page that is not full, so a backlog comes in batches near a
//!   thousand; a full last page means more are waiting.
//! - First sync (no `min_id` yet): one request without paging parameters reads the newest
//!   page. Shorter than a full page, it is the whole history: stored, and forward polling
//!   starts after it. Full, the account has older mentions: the page is set aside and the
//!   walk starts from `min_id=0`, before every id, oldest first. Forward from the oldest
//!   rather than back with `max_id` because a reply joins its parent's conversation only
//!   when the parent is stored before it (or earlier in its batch), and because the
//!   cursor stays what it always was, one `min_id`: every committed batch's cursor is
//!   exactly where the walk resumes after a crash or a stop (nothing skipped, nothing
//!   read twice), mentions arriving during the walk are simply further along it, and a
//!   cursor stored before backfill existed means the same (forward polling). A page cut
//!   short by a server (a lower `limit` cap, filtered entries) only ends the pull early:
//!   the next sync resumes from the committed cursor, so it costs time, never mentions.
//! - Listening: each configured hashtag through `GET /api/v1/timelines/tag/:hashtag`, each
//!   keyword through `GET /api/v2/search?type=statuses`, each with its own `min_id`, one
//!   page per pull, from the newest on a first sync: a hashtag's or a keyword's whole
//!   history is not the workspace's to import.
//! - The account behind the token (`GET /api/v1/accounts/verify_credentials`) tells our own
//!   posts (outbound) from others'.
//! - Replies: `POST /api/v1/statuses` with `in_reply_to_id`, the answered post's
//!   visibility, a leading mention of its author, and an `Idempotency-Key` header so a
//!   retried reply is posted once.
//! - `X-RateLimit-Remaining: 0` / `X-RateLimit-Reset` and 429 `Retry-After` become
//!   "not before" times for the scheduler; a pull stops gathering pages at the first.

use std::collections::{BTreeMap, HashSet};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::http::{self, MAX_BODY_BYTES};
use crate::{
    Author, Capabilities, Channel, Connector, ConnectorError, Cursor, InboundItem, Pull,
    ReplyLimit, ReplyTarget, Sent,
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

/// The `min_id` before every notification (ids are decimal numbers): where a first sync
/// with more than a page of history starts its walk.
const BEFORE_ALL: &str = "0";

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
}

impl std::fmt::Debug for MastodonConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MastodonConfig")
            .field("base_url", &self.base_url)
            .field("access_token", &"***")
            .field("hashtags", &self.hashtags)
            .field("keywords", &self.keywords)
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
        Ok(config)
    }
}

/// Where a Mastodon source stands: our account id and one `min_id` per stream (for
/// notifications, also where a first sync's walk through the history has got to).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
struct MastodonCursor {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    me: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    notifications: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    tags: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    search: BTreeMap<String, String>,
}

pub struct MastodonConnector {
    client: reqwest::Client,
    config: MastodonConfig,
}

impl MastodonConnector {
    pub fn new(client: reqwest::Client, config: MastodonConfig) -> MastodonConnector {
        MastodonConnector { client, config }
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
        let value = serde_json::from_slice(&body).map_err(|err| {
            ConnectorError::Payload(format!(
                "{} answered {path} with invalid JSON: {err}",
                self.host()
            ))
        })?;
        Ok((value, headers))
    }

    /// One stream's page of up to `limit` after `min_id`: its entries (oldest first), the
    /// next `min_id` and whether the page was full.
    async fn page(
        &self,
        path: &str,
        mut query: Vec<(&str, String)>,
        limit: usize,
        min_id: Option<&String>,
        not_before: &mut Option<DateTime<Utc>>,
    ) -> Result<(Vec<Value>, Option<String>, bool), ConnectorError> {
        query.push(("limit", limit.to_string()));
        if let Some(min_id) = min_id {
            query.push(("min_id", min_id.clone()));
        }
        let (body, headers) = self.get(path, &query, not_before).await?;
        let list = match body {
            Value::Array(list) => list,
            Value::Object(mut object) => match object.remove("statuses") {
                Some(Value::Array(list)) => list,
                _ => return Err(self.shape(path, "an object without `statuses`")),
            },
            _ => return Err(self.shape(path, "neither a list nor an object")),
        };
        let full = list.len() >= PAGE.min(limit);
        let newest = list
            .iter()
            .filter_map(|entry| entry.get("id")?.as_str())
            .max_by(|a, b| compare_ids(a, b))
            .map(str::to_owned);
        let from_link = http::link(&headers, "prev").and_then(|prev| {
            reqwest::Url::parse(&prev).ok().and_then(|url| {
                url.query_pairs()
                    .find(|(key, _)| key == "min_id")
                    .map(|(_, value)| value.into_owned())
            })
        });
        let next = from_link.or(newest).or(min_id.cloned());
        let mut list = list;
        list.sort_by(|a, b| {
            compare_ids(
                a["id"].as_str().unwrap_or_default(),
                b["id"].as_str().unwrap_or_default(),
            )
        });
        Ok((list, next, full))
    }

    /// The mention notifications of one pull (oldest first) and whether more are waiting;
    /// moves `state.notifications` past them (see the module doc for the walk).
    async fn mentions(
        &self,
        state: &mut MastodonCursor,
        started: std::time::Instant,
        not_before: &mut Option<DateTime<Utc>>,
    ) -> Result<(Vec<Value>, bool), ConnectorError> {
        const PATH: &str = "/api/v1/notifications";
        let query = || vec![("types[]", "mention".to_owned())];
        let mut min_id = match state.notifications.clone() {
            Some(min_id) => min_id,
            None => {
                let (newest, next, full) = self
                    .page(PATH, query(), NOTIFICATIONS_PAGE, None, not_before)
                    .await?;
                if !full {
                    state.notifications = next;
                    return Ok((newest, false));
                }
                if not_before.is_some_and(|at| at > Utc::now()) {
                    // The budget is spent: the walk starts on the next run.
                    state.notifications = Some(BEFORE_ALL.to_owned());
                    return Ok((Vec::new(), true));
                }
                BEFORE_ALL.to_owned()
            }
        };
        let mut gathered = Vec::new();
        loop {
            let (page, next, full) = self
                .page(PATH, query(), NOTIFICATIONS_PAGE, Some(&min_id), not_before)
                .await?;
            gathered.extend(page);
            if let Some(next) = next {
                min_id = next;
            }
            let rate_limited = not_before.is_some_and(|at| at > Utc::now());
            if !full
                || rate_limited
                || gathered.len() + NOTIFICATIONS_PAGE > PULL_ITEMS
                || started.elapsed() >= PULL_TIME
            {
                state.notifications = Some(min_id);
                return Ok((gathered, full));
            }
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
        })
    }
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
        let mut state: MastodonCursor = cursor
            .and_then(|cursor| serde_json::from_str(&cursor.0).ok())
            .unwrap_or_default();
        let mut not_before = None;
        if state.me.is_none() {
            let (me, _) = self
                .get("/api/v1/accounts/verify_credentials", &[], &mut not_before)
                .await?;
            state.me = me.get("id").and_then(Value::as_str).map(str::to_owned);
        }
        let me = state.me.clone();
        let mut items = Vec::new();
        let mut seen = HashSet::new();
        let mut more = false;
        let mut push = |item: Option<InboundItem>, items: &mut Vec<InboundItem>| {
            if let Some(item) = item {
                if seen.insert(item.external_id.clone()) {
                    items.push(item);
                }
            }
        };

        let (notifications, full) = self.mentions(&mut state, started, &mut not_before).await?;
        for notification in &notifications {
            if notification.get("type").and_then(Value::as_str) != Some("mention") {
                continue;
            }
            if let Some(status) = notification.get("status") {
                push(self.item(status, "mention", me.as_deref()), &mut items);
            }
        }
        more |= full;

        for tag in &self.config.hashtags {
            let path = format!("/api/v1/timelines/tag/{tag}");
            let (statuses, next, full) = self
                .page(
                    &path,
                    Vec::new(),
                    PAGE,
                    state.tags.get(tag),
                    &mut not_before,
                )
                .await?;
            for status in &statuses {
                push(self.item(status, "post", me.as_deref()), &mut items);
            }
            if let Some(next) = next {
                state.tags.insert(tag.clone(), next);
            }
            more |= full;
        }
        for keyword in &self.config.keywords {
            let query = vec![
                ("q", keyword.clone()),
                ("type", "statuses".to_owned()),
                ("resolve", "false".to_owned()),
            ];
            let (statuses, next, full) = self
                .page(
                    "/api/v2/search",
                    query,
                    PAGE,
                    state.search.get(keyword),
                    &mut not_before,
                )
                .await?;
            for status in &statuses {
                push(self.item(status, "post", me.as_deref()), &mut items);
            }
            if let Some(next) = next {
                state.search.insert(keyword.clone(), next);
            }
            more |= full;
        }
        Ok(Pull {
            items,
            next_cursor: Some(Cursor(serde_json::to_string(&state).expect("a cursor"))),
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
    fn a_reply_limit_counts_in_its_unit() {
        let family = "👨‍👩‍👧";
        assert_eq!(ReplyLimit::Graphemes(300).measure(family), 1);
        assert_eq!(ReplyLimit::Characters(500).measure(family), 5);
        assert_eq!(ReplyLimit::Graphemes(300).unit(), "graphemes");
    }
}
