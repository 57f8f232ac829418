//! The RSS / Atom / JSON Feed channel (pull). One source is one feed URL.
//!
//! - Conditional GET: the cursor keeps the feed's `ETag` and `Last-Modified`, sent back as
//!   `If-None-Match` / `If-Modified-Since`; a `304 Not Modified` is an empty pull.
//! - Every format feed-rs reads (RSS 0.9x, 1.0, 2.0, Atom 1.0, JSON Feed 1.x), in the
//!   encoding the document declares. A body that is not valid in its encoding is read
//!   leniently (bad bytes become U+FFFD) rather than dropping the whole feed.
//! - Entries without an id get a deterministic one: a SHA-256 of link, title, date and
//!   content, so a re-fetched entry is recognised as the same item.
//! - Atom threading (RFC 4685): `<thr:in-reply-to ref="…">` becomes the item's
//!   `in_reply_to`. feed-rs does not expose it, so a second, small XML pass reads it.
//! - Paging (RFC 5005 `<link rel="next">`, JSON Feed `next_url`): a first sync walks the
//!   pages one pull at a time; the cursor remembers the next page. When the first page
//!   changes later, the walk goes only as far back as the first page that ends with an
//!   entry of the first page the last walk began with (`seen` in the cursor, as short
//!   hashes): what follows it was read then. A pinned entry or an old one edited to the
//!   top does not end it, since a page's last entry decides. A feed paged newest first
//!   brings no entry older than those behind one; without that order, only a first sync's
//!   walk (or one after a cursor reset) reaches the archive, its first [`MAX_PAGES`].

use chrono::{DateTime, Utc};
use reqwest::header::{ETAG, IF_MODIFIED_SINCE, IF_NONE_MATCH, LAST_MODIFIED};
use reqwest::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::http::{self, MAX_BODY_BYTES};
use crate::{
    Author, Capabilities, Channel, Connector, ConnectorError, Cursor, InboundItem, Pull,
    ReplyTarget, Sent,
};

/// The id feed-rs is told to give entries without one; replaced by [`entry_hash`].
const NO_ID: &str = "\u{0}rapport:no-id";

/// How many pages one sync walks at most.
pub const MAX_PAGES: usize = 50;

/// How many of a first page's entries (its last) the cursor keeps to know them again.
const SEEN_IDS: usize = 200;

/// A source's settings: `{"url": "https://…/feed.xml"}`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeedConfig {
    pub url: String,
}

impl FeedConfig {
    /// Reads and checks a source's settings; the error names the field.
    pub fn parse(config: &Value) -> Result<FeedConfig, (String, String)> {
        let config: FeedConfig = crate::read_config(config, "url")?;
        crate::check_http_url("url", &config.url)?;
        Ok(config)
    }
}

/// Where a feed source stands: the validators of the feed's first page and, while a
/// paged feed is walked, the next page to fetch.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
struct FeedCursor {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    etag: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    last_modified: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    next: Option<String>,
    #[serde(default, skip_serializing_if = "is_zero")]
    pages: usize,
    /// The entries of the first page the last finished walk began with ([`seen_id`]s): a
    /// later walk stops at the first page that ends with one of them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    seen: Vec<String>,
    /// While a walk is under way, the entries of the first page it began with (its `seen`
    /// once it ends).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    head: Vec<String>,
}

/// What the cursor keeps of an entry's external id: 16 hex digits of its SHA-256, so a
/// cursor stays small whatever the ids' length.
fn seen_id(external_id: &str) -> String {
    hex::encode(&Sha256::digest(external_id.as_bytes())[..8])
}

/// The entries the cursor keeps of a first page's `items`: the last [`SEEN_IDS`].
fn ids_of(items: &[InboundItem]) -> Vec<String> {
    let skip = items.len().saturating_sub(SEEN_IDS);
    items[skip..]
        .iter()
        .map(|item| seen_id(&item.external_id))
        .collect()
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

pub struct FeedConnector {
    client: reqwest::Client,
    config: FeedConfig,
}

impl FeedConnector {
    pub fn new(client: reqwest::Client, config: FeedConfig) -> FeedConnector {
        FeedConnector { client, config }
    }
}

#[async_trait::async_trait]
impl Connector for FeedConnector {
    fn channel(&self) -> Channel {
        Channel::Rss
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            pull: true,
            webhook: false,
            reply: false,
        }
    }

    async fn pull(&self, cursor: Option<&Cursor>) -> Result<Pull, ConnectorError> {
        let state: FeedCursor = cursor
            .and_then(|cursor| serde_json::from_str(&cursor.0).ok())
            .unwrap_or_default();
        let paging = state.next.is_some();
        let url = state
            .next
            .clone()
            .unwrap_or_else(|| self.config.url.clone());
        let mut request = self.client.get(&url).header(
            "accept",
            "application/feed+json, application/atom+xml, application/rss+xml, application/rdf+xml;q=0.9, application/xml;q=0.8, text/xml;q=0.8, */*;q=0.1",
        );
        if !paging {
            if let Some(etag) = &state.etag {
                request = request.header(IF_NONE_MATCH, etag);
            }
            if let Some(modified) = &state.last_modified {
                request = request.header(IF_MODIFIED_SINCE, modified);
            }
        }
        let now = Utc::now();
        let response = request.send().await.map_err(http::transport)?;
        http::check_status(&response, now)?;
        let not_before = http::not_before(response.headers(), now);
        if response.status() == StatusCode::NOT_MODIFIED {
            return Ok(Pull {
                items: Vec::new(),
                next_cursor: cursor.cloned(),
                more: false,
                not_before,
            });
        }
        let header = |name| {
            response
                .headers()
                .get(name)
                .and_then(|v: &reqwest::header::HeaderValue| v.to_str().ok())
                .map(str::to_owned)
        };
        let (etag, last_modified) = (header(ETAG), header(LAST_MODIFIED));
        let body = http::read_capped(response, MAX_BODY_BYTES).await?;
        let parsed = parse(&body, &url)?;
        // A page ending with an entry the last walk's first page held: what follows it was
        // read then.
        let known = parsed
            .items
            .last()
            .is_some_and(|item| state.seen.contains(&seen_id(&item.external_id)));
        let mut next_state = if paging {
            FeedCursor {
                next: None,
                pages: state.pages + 1,
                ..state
            }
        } else {
            FeedCursor {
                etag,
                last_modified,
                next: None,
                pages: 1,
                // Kept only for a feed with pages: one document has nothing to walk.
                head: if parsed.next_page.is_some() {
                    ids_of(&parsed.items)
                } else {
                    Vec::new()
                },
                seen: state.seen,
            }
        };
        // A page limit stops a feed whose pages loop.
        if next_state.pages < MAX_PAGES && !known {
            next_state.next = parsed.next_page.filter(|next| *next != url);
        }
        let more = next_state.next.is_some();
        if !more {
            next_state.pages = 0;
            if !next_state.head.is_empty() {
                next_state.seen = std::mem::take(&mut next_state.head);
            }
        }
        Ok(Pull {
            items: parsed.items,
            next_cursor: Some(Cursor(
                serde_json::to_string(&next_state).expect("a cursor"),
            )),
            more,
            not_before,
        })
    }

    async fn reply(&self, _to: &ReplyTarget, _text: &str) -> Result<Sent, ConnectorError> {
        Err(ConnectorError::Unsupported("reply to a feed"))
    }
}

/// A parsed feed document.
#[derive(Debug)]
pub struct ParsedFeed {
    pub items: Vec<InboundItem>,
    pub next_page: Option<String>,
}

/// Parses a feed document fetched from `url` into items.
pub fn parse(body: &[u8], url: &str) -> Result<ParsedFeed, ConnectorError> {
    let parser = || {
        feed_rs::parser::Builder::new()
            .base_uri(Some(url))
            .id_generator(|_, _, _| NO_ID.to_owned())
            .build()
    };
    let feed = match parser().parse(body) {
        Ok(feed) => feed,
        Err(first) => {
            // A document with bytes invalid in its encoding: read it leniently.
            let lossy = String::from_utf8_lossy(body);
            if matches!(lossy, std::borrow::Cow::Owned(_)) {
                parser()
                    .parse(lossy.as_bytes())
                    .map_err(|_| not_a_feed(url, &first))?
            } else {
                return Err(not_a_feed(url, &first));
            }
        }
    };
    let extras = entry_extras(body);
    let feed_link = feed
        .links
        .iter()
        .find(|link| link.rel.as_deref().is_none_or(|rel| rel == "alternate"))
        .map(|link| link.href.clone())
        .filter(|href| !href.trim().is_empty());
    let feed_title = feed
        .title
        .as_ref()
        .map(|title| title.content.trim().to_owned());
    let feed_author = feed.authors.first().cloned();
    let mut next_page = feed
        .links
        .iter()
        .find(|link| link.rel.as_deref() == Some("next"))
        .map(|link| link.href.clone());
    if next_page.is_none() && body.first().is_some_and(|b| *b == b'{') {
        next_page = serde_json::from_slice::<Value>(body)
            .ok()
            .and_then(|doc| doc.get("next_url")?.as_str().map(str::to_owned));
    }
    let mut items = Vec::with_capacity(feed.entries.len());
    for (index, entry) in feed.entries.into_iter().enumerate() {
        let title = entry
            .title
            .as_ref()
            .map(|title| crate::text::html_to_text(&title.content))
            .filter(|title| !title.is_empty());
        let html = entry
            .content
            .as_ref()
            .and_then(|content| content.body.clone())
            .or_else(|| {
                entry
                    .summary
                    .as_ref()
                    .map(|summary| summary.content.clone())
            })
            .filter(|html| !html.trim().is_empty());
        let body_text = html
            .as_deref()
            .map(crate::text::html_to_text)
            .unwrap_or_default();
        let link = entry
            .links
            .iter()
            .find(|link| link.rel.as_deref().is_none_or(|rel| rel == "alternate"))
            .or(entry.links.first())
            .map(|link| link.href.clone());
        let occurred_at = entry.published.or(entry.updated);
        let extra = extras.get(index).cloned().unwrap_or_default();
        let external_id = if entry.id == NO_ID || entry.id.trim().is_empty() {
            // RSS 1.0 names each item by its `rdf:about` URI; otherwise hash the entry.
            extra
                .about
                .filter(|about| !about.is_empty())
                .unwrap_or_else(|| {
                    entry_hash(
                        link.as_deref(),
                        title.as_deref(),
                        occurred_at,
                        html.as_deref(),
                    )
                })
        } else {
            entry.id.trim().to_owned()
        };
        let person = entry.authors.first().cloned().or(feed_author.clone());
        let author = match person {
            Some(person) => author_of(&person, url),
            None => Author {
                platform_id: feed_link.clone().unwrap_or_else(|| url.to_owned()),
                display_name: feed_title.clone(),
                profile_url: feed_link.clone(),
                ..Author::default()
            },
        };
        let text = match (&title, body_text.is_empty()) {
            (Some(title), true) => title.clone(),
            (_, _) if body_text.is_empty() => link.clone().unwrap_or_default(),
            _ => body_text,
        };
        let raw = json!({
            "id": external_id,
            "title": title,
            "link": link,
            "published": entry.published,
            "updated": entry.updated,
            "authors": entry.authors.iter().map(|p| json!({ "name": p.name, "email": p.email, "uri": p.uri })).collect::<Vec<_>>(),
            "categories": entry.categories.iter().map(|c| c.term.clone()).collect::<Vec<_>>(),
            "feed": url,
            "feed_language": feed.language,
        });
        items.push(InboundItem {
            external_id,
            author,
            outbound: false,
            kind: "post".to_owned(),
            subject: title,
            text,
            html,
            url: link,
            // A feed-wide language is a weak hint (multilingual feeds are common): only an
            // entry's own language is taken; the pipeline detects the rest.
            language: entry.language,
            occurred_at: occurred_at.unwrap_or_else(Utc::now),
            thread_key: None,
            in_reply_to: extra.in_reply_to,
            raw,
        });
    }
    Ok(ParsedFeed { items, next_page })
}

fn not_a_feed(url: &str, err: &feed_rs::parser::ParseFeedError) -> ConnectorError {
    let host = reqwest::Url::parse(url)
        .ok()
        .and_then(|url| url.host_str().map(str::to_owned))
        .unwrap_or_default();
    ConnectorError::Payload(format!(
        "the document at {host} is not an RSS, Atom or JSON feed ({err})"
    ))
}

/// A stable id for an entry that has none.
pub fn entry_hash(
    link: Option<&str>,
    title: Option<&str>,
    date: Option<DateTime<Utc>>,
    content: Option<&str>,
) -> String {
    let mut hash = Sha256::new();
    for part in [
        link.unwrap_or_default(),
        title.unwrap_or_default(),
        &date.map(|d| d.to_rfc3339()).unwrap_or_default(),
        content.unwrap_or_default(),
    ] {
        hash.update(part.as_bytes());
        hash.update([0x1f]);
    }
    format!("sha256:{}", hex::encode(&hash.finalize()[..16]))
}

/// A feed person as an author. RSS 2.0 writes `joe@example.com (Joe Bloggs)`.
fn author_of(person: &feed_rs::model::Person, feed_url: &str) -> Author {
    let mut name = person.name.trim().to_owned();
    let mut email = person.email.clone().map(|e| e.trim().to_owned());
    // feed-rs may keep RSS's `address (Name)` whole in either field.
    for text in [email.clone(), Some(name.clone())].into_iter().flatten() {
        if let Some((address, rest)) = text.split_once(" (") {
            if address.contains('@') {
                email = Some(address.trim().to_owned());
                name = rest.trim_end_matches(')').trim().to_owned();
                break;
            }
        }
    }
    if name.contains('@') && email.as_deref() == Some(name.as_str()) {
        name.clear();
    }
    let mut email = email.map(|e| e.to_lowercase());
    if email.is_none() {
        if let Some((address, rest)) = name.split_once(' ') {
            if address.contains('@') && rest.trim().starts_with('(') {
                email = Some(address.to_lowercase());
                name = rest.trim().trim_matches(['(', ')']).trim().to_owned();
            }
        } else if name.contains('@') && !name.contains(' ') {
            email = Some(name.to_lowercase());
        }
    }
    let uri = person.uri.clone().filter(|uri| !uri.trim().is_empty());
    let platform_id = uri
        .clone()
        .or_else(|| email.as_ref().map(|email| format!("mailto:{email}")))
        .unwrap_or_else(|| format!("{feed_url}#{name}"));
    Author {
        platform_id,
        handle: None,
        display_name: (!name.is_empty()).then_some(name),
        profile_url: uri,
        avatar_url: None,
        email,
        phone: None,
        links: Vec::new(),
    }
}

/// What feed-rs leaves out of an entry.
#[derive(Clone, Debug, Default)]
struct Extras {
    /// RSS 1.0 `rdf:about`.
    about: Option<String>,
    /// Atom threading (RFC 4685) `thr:in-reply-to ref`.
    in_reply_to: Option<String>,
}

/// The extras of each entry, by entry position (document order, as feed-rs keeps them).
fn entry_extras(body: &[u8]) -> Vec<Extras> {
    use quick_xml::events::Event;
    let has = |needle: &[u8]| body.windows(needle.len()).any(|window| window == needle);
    if !has(b"in-reply-to") && !has(b"about=") {
        return Vec::new();
    }
    let mut reader = quick_xml::Reader::from_reader(body);
    let mut buf = Vec::new();
    let mut entries: Vec<Extras> = Vec::new();
    let mut depth_in_entry = 0usize;
    loop {
        match reader.read_event_into(&mut buf) {
            Ok(Event::Start(element)) => {
                let name = element.local_name();
                if depth_in_entry == 0 && matches!(name.as_ref(), b"entry" | b"item") {
                    entries.push(Extras {
                        about: attribute(&element, b"about"),
                        in_reply_to: None,
                    });
                    depth_in_entry = 1;
                } else if depth_in_entry > 0 {
                    depth_in_entry += 1;
                    note_reply(&element, &mut entries);
                }
            }
            Ok(Event::Empty(element)) if depth_in_entry > 0 => note_reply(&element, &mut entries),
            Ok(Event::End(_)) if depth_in_entry > 0 => depth_in_entry -= 1,
            Ok(Event::Eof) | Err(_) => break,
            _ => {}
        }
        buf.clear();
    }
    entries
}

fn attribute(element: &quick_xml::events::BytesStart<'_>, local: &[u8]) -> Option<String> {
    element.attributes().flatten().find_map(|attribute| {
        (attribute.key.local_name().as_ref() == local).then(|| {
            crate::text::decode_entities(&String::from_utf8_lossy(&attribute.value))
                .trim()
                .to_owned()
        })
    })
}

fn note_reply(element: &quick_xml::events::BytesStart<'_>, entries: &mut [Extras]) {
    if element.local_name().as_ref() != b"in-reply-to" {
        return;
    }
    if let (Some(last), Some(reference)) = (entries.last_mut(), attribute(element, b"ref")) {
        if last.in_reply_to.is_none() {
            last.in_reply_to = Some(reference);
        }
    }
}
