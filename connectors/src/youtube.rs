//! The YouTube channel (pull + reply), over the YouTube Data API v3
//! (<https://developers.google.com/youtube/v3/docs>): comments on a channel's videos, or on
//! chosen videos, and answers to them.
//!
//! Plain calls through the guarded client rather than `google-youtube3`: the connector uses
//! three list methods and one insert, each a small JSON body; that crate brings its own HTTP
//! stack and OAuth machinery (so its connections would not all go through the outbound
//! guard) and returns quota errors as opaque failures where the scheduler needs them as
//! "not before" times.
//!
//! - Every request carries `Accept: application/json` and a `User-Agent`; an `api_key` goes
//!   as the `key` query parameter, an OAuth `access_token` as `Authorization: Bearer`
//!   (both when both are set). An `api_key` can only read public comments: replying
//!   (`comments.insert`) needs an `access_token` with the `youtube.force-ssl` scope, so a
//!   source with only a key reports no reply capability and its connector refuses a reply
//!   with a configuration error before any request. Neither secret is ever in a message:
//!   errors name the host and the method, and YouTube's own messages are scrubbed of both.
//! - Listening: one stream for `channel_id` (`commentThreads.list` with
//!   `allThreadsRelatedToChannelId`: threads on the channel's videos) and one per entry of
//!   `video_ids` (`videoId`), each read with `part=snippet,replies`, `order=time` (newest
//!   thread first), `textFormat=plainText`, `maxResults=100` and `pageToken` paging. A
//!   thread's `replies` hold only some of its replies: when `snippet.totalReplyCount` is
//!   more than it holds, the replies are read with `comments.list?parentId=` (at most
//!   [`REPLY_PAGES`] pages of 100 a thread, each one quota unit; more are lost with a
//!   warning, and the thread is watched with the replies read, so the next sync reads it
//!   again and warns again).
//! - Cursor: per stream a *mark*, the newest top-level comment's `publishedAt` second handed
//!   over and the thread ids of that second. The API has no "since": every sync walks the
//!   threads from the newest (by `pageToken`) down to the mark, and on until a page holds
//!   nothing to take but threads (one page, one quota unit, more than stopping at the
//!   mark): a comment
//!   held for review and approved later keeps its old `publishedAt`, so it shows up below
//!   threads already handed over. Such a thread, older than the mark but among the watched
//!   threads (see below) and not one of them, is taken; one older than every watched
//!   thread is not caught. A first sync's walk takes at most `backfill_limit` threads (0:
//!   one thread asked, only to set the mark). A walk
//!   stopped by the pull's budget, a rate limit or a failure keeps its `pageToken` and goes
//!   on from there on the next pull (resumable); the mark moves only when the walk reaches
//!   it. Threads that arrive while a walk pages only push older ones down, so a page read
//!   later repeats threads (the pipeline drops them by id) and loses none. A page without
//!   a thread but with a `nextPageToken` does not end a walk; more than ten
//!   in a row do, and the stream's `warning` says so, with the date, for a week
//!   ([`crate::empty`]).
//! - New replies to older threads: `updatedAt` of a top-level comment changes only when
//!   its text is edited, not when it gets a reply, and `order=time` sorts threads by their
//!   top-level comment, so a reply to a thread below the mark never brings the thread back
//!   up. Each stream therefore *watches* its [`WATCHED`] newest threads with the reply
//!   count last seen: every sync asks them with one `commentThreads.list?id=` call (one
//!   quota unit) and hands over the replies of those whose `totalReplyCount` grew. A reply
//!   to an older thread than those is not caught (it shows on YouTube only), nor is an edit.
//! - The stored cursor is JSON: `{"streams": {"channel:UC…" | "video:…": {"mark": {"at",
//!   "ids"}, "walk": {"next", "top", "left", "empty"}, "watch": [{"id", "at", "replies"}],
//!   "warning", "gave_up"}}}`.
//! - Items: every comment is a `comment`, its external id the comment id (an edit keeps
//!   it, so the pipeline drops it). The thread key is the top-level comment's id (the
//!   thread's id on YouTube too): a top-level comment starts the conversation (its subject
//!   the video, `YouTube video {videoId}`: a title would cost a `videos.list` call), and a
//!   reply answers the top-level comment (YouTube nests one level). The author's channel
//!   id (`authorChannelId.value`) is the identity, the display name (`@handle` nowadays)
//!   the handle, `authorChannelUrl` the profile, `authorProfileImageUrl` the avatar. A
//!   comment without an author channel is skipped. Comments by `channel_id` or, with an
//!   `access_token`, by the token's channel (`channels.list?mine=true`, asked once per pull
//!   that hands something over) are outbound: the workspace's own. The video's channel
//!   (`snippet.channelId` of the thread) is not: a chosen video may be a stranger's, whose
//!   comments are a customer's. The link is `https://www.youtube.com/watch?v={videoId}&lc={id}`.
//! - Replies: `POST {base_url}/comments?part=snippet` with `{"snippet": {"parentId":
//!   <top-level comment id>, "textOriginal": …}}`, at most [`MAX_REPLY_CHARS`] characters
//!   (YouTube's limit), checked before sending. YouTube has no idempotency key and shows a
//!   comment's text as written, so no hidden marker can be carried: when the answer to an
//!   insert is lost (a timeout or a 5xx), the connector asks which channel the token is
//!   (`channels.list?mine=true`) and reads the thread's replies (`comments.list?parentId=`)
//!   for one by that channel with exactly the same text published no earlier than
//!   [`READ_BACK_WINDOW`] before the attempt, and takes it for the reply. The risk: the same
//!   words sent twice to one thread within that window make the second attempt's lost
//!   answer look sent (the first one's comment is taken for it); it is never posted twice
//!   silently. When nothing is found or the read fails, the reply is FAILED although it
//!   may be on YouTube, and a retry posts it again.
//! - Errors: YouTube answers `{"error": {"code", "message", "errors": [{"domain", "reason",
//!   "message"}]}}`. `quotaExceeded` (403, domain `youtube.quota`) is the project's daily
//!   quota: it resets at midnight Pacific time, so the source waits until then (at most a
//!   day, never in the past). `rateLimitExceeded` / `userRateLimitExceeded` (403) and 429
//!   are short limits: `Retry-After` when given, else [`SHORT_WAIT_SECS`]. A pull stops
//!   asking at a limit and keeps what it read. 401 (or reason `authError`) fails the
//!   source: the key or token was refused (an access token expires after an hour). On one
//!   video, `commentsDisabled` (403) or `videoNotFound` (404) is that stream's warning
//!   (`source.cursor` shows it) while the other streams go on; when every stream fails,
//!   the pull fails with the first error. A 403 to a reply is refused credentials (the
//!   token lacks the scope, or the account may not comment there). 5xx is transient.

use std::collections::{BTreeMap, HashSet};

use chrono::{DateTime, Datelike, Duration, NaiveDate, TimeZone, Utc, Weekday};
use reqwest::header::HeaderMap;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::http::{self, MAX_BODY_BYTES};
use crate::mark::Mark;
pub use crate::mastodon::{PULL_ITEMS, PULL_TIME};
use crate::{
    Author, Capabilities, Channel, Connector, ConnectorError, Cursor, InboundItem, Pull,
    ReplyLimit, ReplyTarget, Sent,
};

/// Threads (or replies) asked for per request (the API's maximum).
pub const PAGE: usize = 100;

/// Threads per stream a first sync takes when the source does not say.
pub const DEFAULT_BACKFILL_LIMIT: u64 = 1_000;

/// The most a source may ask a first sync to take per stream.
pub const MAX_BACKFILL_LIMIT: u64 = 100_000;

/// The videos a source may name (each is a listing and a watch call on every sync).
pub const MAX_VIDEOS: usize = 50;

/// The characters a comment may have (YouTube: 10,000).
pub const MAX_REPLY_CHARS: usize = 10_000;

/// The default API.
pub const API: &str = "https://www.googleapis.com/youtube/v3";

/// Threads per stream watched for new replies (the most `commentThreads.list?id=` takes
/// in one call).
pub const WATCHED: usize = 50;

/// Pages of `comments.list?parentId=` read for one thread's replies.
pub const REPLY_PAGES: usize = 5;

/// The wait after a short rate limit without `Retry-After`.
pub const SHORT_WAIT_SECS: u64 = 60;

/// How long before an attempt a comment read back may have been published and still be
/// taken for that attempt's.
const READ_BACK_WINDOW: Duration = Duration::minutes(15);

/// The bytes a `pageToken` may have to be kept in the cursor.
const MAX_TOKEN_BYTES: usize = 2_048;

/// The most of a message from YouTube kept in an error.
const MAX_MESSAGE_CHARS: usize = 200;

fn default_backfill_limit() -> u64 {
    DEFAULT_BACKFILL_LIMIT
}

fn default_base_url() -> String {
    API.to_owned()
}

/// A source's settings. `api_key` and `access_token` are secrets: stored apart, never
/// returned, bound to `base_url`.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct YoutubeConfig {
    /// The Data API (`https://www.googleapis.com/youtube/v3`).
    #[serde(default = "default_base_url")]
    pub base_url: String,
    /// A Google Cloud API key with the YouTube Data API v3 enabled: reads only.
    #[serde(default)]
    pub api_key: Option<String>,
    /// An OAuth 2.0 access token with the `youtube.force-ssl` scope: reads and replies.
    #[serde(default)]
    pub access_token: Option<String>,
    /// The channel (`UC…`) whose videos' comments are listened to.
    #[serde(default)]
    pub channel_id: Option<String>,
    /// Videos whose comments are listened to.
    #[serde(default)]
    pub video_ids: Vec<String>,
    /// Threads per stream a first sync takes (0: only what comes after it).
    #[serde(default = "default_backfill_limit")]
    pub backfill_limit: u64,
}

impl std::fmt::Debug for YoutubeConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let hidden = |secret: &Option<String>| secret.as_ref().map(|_| "***");
        f.debug_struct("YoutubeConfig")
            .field("base_url", &self.base_url)
            .field("api_key", &hidden(&self.api_key))
            .field("access_token", &hidden(&self.access_token))
            .field("channel_id", &self.channel_id)
            .field("video_ids", &self.video_ids)
            .field("backfill_limit", &self.backfill_limit)
            .finish()
    }
}

impl YoutubeConfig {
    /// Reads and checks a source's settings (the secrets merged in); the error names the
    /// field.
    pub fn parse(config: &Value) -> Result<YoutubeConfig, (String, String)> {
        let mut config: YoutubeConfig = crate::read_config(config, "channel_id")?;
        crate::check_http_url("base_url", &config.base_url)?;
        config.base_url = config.base_url.trim().trim_end_matches('/').to_owned();
        for (field, secret) in [
            ("api_key", &mut config.api_key),
            ("access_token", &mut config.access_token),
        ] {
            *secret = secret
                .take()
                .map(|value| value.trim().to_owned())
                .filter(|value| !value.is_empty());
            if secret
                .as_ref()
                .is_some_and(|value| value.chars().any(|c| c.is_whitespace() || c.is_control()))
            {
                return Err((field.into(), format!("{field} must be one word")));
            }
        }
        if config.api_key.is_none() && config.access_token.is_none() {
            return Err((
                "api_key".into(),
                "set an api_key (reads only) or an OAuth access_token (reads and replies)".into(),
            ));
        }
        config.channel_id = config
            .channel_id
            .take()
            .map(|id| id.trim().to_owned())
            .filter(|id| !id.is_empty());
        if let Some(channel) = &config.channel_id {
            if !is_channel_id(channel) {
                return Err((
                    "channel_id".into(),
                    format!("`{channel}` is not a channel id (`UC` and 22 more characters)"),
                ));
            }
        }
        let mut seen = HashSet::new();
        for video in &mut config.video_ids {
            *video = video.trim().to_owned();
            if !is_video_id(video) {
                return Err((
                    "video_ids".into(),
                    format!("`{video}` is not a video id (11 characters, as in watch?v=…)"),
                ));
            }
        }
        // Video ids are case-sensitive: only exact repeats are one stream.
        config.video_ids.retain(|video| seen.insert(video.clone()));
        if config.channel_id.is_none() && config.video_ids.is_empty() {
            return Err((
                "channel_id".into(),
                "name a channel_id or at least one of video_ids".into(),
            ));
        }
        if config.video_ids.len() > MAX_VIDEOS {
            return Err((
                "video_ids".into(),
                format!("at most {MAX_VIDEOS} videos (each is read on every sync)"),
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

fn id_chars(id: &str) -> bool {
    id.bytes()
        .all(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b'-')
}

/// A channel id: `UC` and 22 characters of the URL-safe base64 alphabet.
fn is_channel_id(id: &str) -> bool {
    id.len() == 24 && id.starts_with("UC") && id_chars(id)
}

/// A video id: 11 characters of the URL-safe base64 alphabet.
fn is_video_id(id: &str) -> bool {
    id.len() == 11 && id_chars(id)
}

/// A comment or thread id as kept in a cursor or sent in a query (`Ug…` and, for a reply,
/// `.` and its own part).
fn is_comment_id(id: &str) -> bool {
    (1..=200).contains(&id.len())
        && id
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'-' | b'.'))
}

/// The next midnight in the Pacific time zone (where YouTube's daily quota resets) after
/// `now`: UTC-7 from the second Sunday of March to the first Sunday of November (at 2 am
/// local), UTC-8 otherwise.
fn pacific_midnight_after(now: DateTime<Utc>) -> DateTime<Utc> {
    let offset = |at: DateTime<Utc>| {
        let year = at.year();
        let sunday = |month: u32, nth: u8| {
            NaiveDate::from_weekday_of_month_opt(year, month, Weekday::Sun, nth)
                .expect("every month has two Sundays")
        };
        // 2 am local: 10:00 UTC in March (still UTC-8), 09:00 UTC in November (UTC-7).
        let start = Utc.from_utc_datetime(&sunday(3, 2).and_hms_opt(10, 0, 0).unwrap());
        let end = Utc.from_utc_datetime(&sunday(11, 1).and_hms_opt(9, 0, 0).unwrap());
        if (start..end).contains(&at) {
            Duration::hours(-7)
        } else {
            Duration::hours(-8)
        }
    };
    let local = now + offset(now);
    let midnight = local
        .date_naive()
        .succ_opt()
        .unwrap_or(local.date_naive())
        .and_hms_opt(0, 0, 0)
        .unwrap();
    // Midnight is hours from a change of offset (2 am): the offset of the UTC time it
    // would be in winter is the one in force.
    let guess = Utc.from_utc_datetime(&midnight) + Duration::hours(8);
    Utc.from_utc_datetime(&midnight) - offset(guess)
}

/// A first sync's walk back from the newest thread, or a later sync's walk down to the
/// mark, under way.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
struct Walk {
    /// The `nextPageToken` of the last page read (`None`: start at the newest).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    next: Option<String>,
    /// The newest second seen since the walk began: the mark when it ends.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    top: Option<Mark>,
    /// How many threads the walk may still take.
    #[serde(default)]
    left: u64,
    /// How many pages in a row had no thread, each with a `nextPageToken` to go on with.
    #[serde(default, skip_serializing_if = "crate::empty::is_zero")]
    empty: u8,
}

/// A thread watched for new replies.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Watched {
    id: String,
    /// Its top-level comment's `publishedAt` (epoch seconds): the newest are kept.
    at: i64,
    /// `totalReplyCount` when last handed over.
    replies: u64,
}

/// Where one stream stands (see the module doc).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
struct Stream {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    mark: Option<Mark>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    walk: Option<Walk>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    watch: Vec<Watched>,
    /// What went wrong with this stream in the last pull that read it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    warning: Option<String>,
    /// When a walk of this stream last gave up past ten pages without a
    /// thread: the `warning` says so for a week.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    gave_up: Option<DateTime<Utc>>,
}

impl Stream {
    fn first(backfill: u64) -> Stream {
        Stream {
            walk: Some(Walk {
                left: backfill,
                ..Walk::default()
            }),
            ..Stream::default()
        }
    }

    /// Takes one page of threads (newest first; `next` its `nextPageToken`) into `taken`:
    /// those the mark does not cover, and those [`Stream::approved_late`], within the
    /// walk's allowance. Ends the walk (its newest second becomes the mark) at a page that
    /// holds nothing to take, the allowance or the listing's end; a page without a thread
    /// but with a `nextPageToken` is gone past, up to ten in a row (then the
    /// walk gives up, noted in `warning`). Not at the first covered
    /// thread: a comment held for review and approved later keeps its old `publishedAt`,
    /// so it shows up below threads already handed over (possibly on the next page), and
    /// is taken there. Returns whether the walk goes on.
    fn back(
        &mut self,
        mut walk: Walk,
        threads: Vec<Value>,
        next: Option<String>,
        taken: &mut Vec<Value>,
    ) -> bool {
        let (mut covered, mut keyed) = (0, 0);
        for thread in threads {
            let Some((at, id)) = key(&thread) else {
                continue;
            };
            keyed += 1;
            walk.top.get_or_insert_with(Mark::default).add(at, &id);
            if self.mark.as_ref().is_some_and(|mark| mark.covers(at, &id))
                && !self.approved_late(at, &id)
            {
                covered += 1;
                continue;
            }
            if walk.left == 0 {
                continue;
            }
            taken.push(thread);
            walk.left -= 1;
        }
        let next = match next {
            Some(next) if next.len() > MAX_TOKEN_BYTES => {
                crate::empty::warn(
                    &mut self.warning,
                    format!(
                        "YouTube's nextPageToken is longer than {MAX_TOKEN_BYTES} bytes: the \
                         walk ended there"
                    ),
                );
                None
            }
            next => next,
        };
        let reached = keyed > 0 && covered == keyed;
        let stuck = next.is_some() && next == walk.next;
        let gave_up = crate::empty::gives_up(&mut walk.empty, keyed == 0, next.is_some());
        if gave_up {
            self.warning = crate::empty::gave_up_now(&mut self.gave_up, "YouTube");
        }
        walk.next = next;
        let spent = walk.left == 0 && walk.top.is_some();
        if gave_up || reached || stuck || spent || walk.next.is_none() {
            let top = walk.top.unwrap_or_default();
            self.mark = Some(match self.mark.take() {
                Some(mark) => mark.merge(top),
                None => top,
            });
            self.walk = None;
            false
        } else {
            self.walk = Some(walk);
            true
        }
    }

    /// Whether thread `id` of second `at`, older than the mark, was never handed over
    /// although it is within the watched threads (newer than the oldest of them) and
    /// every one of those was: a comment held for review and approved since, which keeps
    /// its old `publishedAt`.
    fn approved_late(&self, at: i64, id: &str) -> bool {
        self.watch.last().is_some_and(|oldest| at > oldest.at)
            && !self.watch.iter().any(|watched| watched.id == id)
    }

    /// Watches `thread` with the replies handed over (all it has when `complete`, else
    /// those it holds), keeping the [`WATCHED`] newest.
    fn watch(&mut self, thread: &Value, complete: bool) {
        let Some((at, id)) = key(thread) else {
            return;
        };
        let replies = if complete {
            reply_count(thread)
        } else {
            reply_count(thread).min(inline_replies(thread) as u64)
        };
        match self.watch.iter_mut().find(|watched| watched.id == id) {
            Some(watched) => watched.replies = watched.replies.max(replies),
            None => self.watch.push(Watched { id, at, replies }),
        }
        self.watch.sort_by(|a, b| (b.at, &b.id).cmp(&(a.at, &a.id)));
        self.watch.truncate(WATCHED);
    }
}

/// A thread's top-level comment's `publishedAt` (epoch seconds) and the thread's id.
fn key(thread: &Value) -> Option<(i64, String)> {
    let id = thread.get("id")?.as_str().filter(|id| is_comment_id(id))?;
    let at = time(
        thread.pointer("/snippet/topLevelComment/snippet")?,
        "publishedAt",
    )?;
    Some((at.timestamp(), id.to_owned()))
}

fn reply_count(thread: &Value) -> u64 {
    thread
        .pointer("/snippet/totalReplyCount")
        .and_then(Value::as_u64)
        .unwrap_or(0)
}

fn inline_replies(thread: &Value) -> usize {
    thread
        .pointer("/replies/comments")
        .and_then(Value::as_array)
        .map_or(0, Vec::len)
}

fn time(value: &Value, field: &str) -> Option<DateTime<Utc>> {
    let text = value.get(field)?.as_str()?;
    DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|at| at.with_timezone(&Utc))
}

/// Where a YouTube source stands: one [`Stream`] per listing, by [`Listen::key`].
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
struct YoutubeCursor {
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    streams: BTreeMap<String, Stream>,
    /// The access token's channel as last asked: used only when asking fails, so a
    /// transient error does not turn our own comments into a customer's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    mine: Option<String>,
}

impl YoutubeCursor {
    /// Reads a stored cursor; one this version cannot read starts over (a first sync).
    fn decode(cursor: Option<&Cursor>) -> YoutubeCursor {
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
    Channel(&'a str),
    Video(&'a str),
}

impl Listen<'_> {
    /// The stream's name in the stored cursor.
    fn key(self) -> String {
        match self {
            Listen::Channel(id) => format!("channel:{id}"),
            Listen::Video(id) => format!("video:{id}"),
        }
    }

    /// What it is, for messages.
    fn what(self) -> String {
        match self {
            Listen::Channel(id) => format!("commentThreads of channel {id}"),
            Listen::Video(id) => format!("commentThreads of video {id}"),
        }
    }
}

/// The threads `taken` hands over: each with its replies.
fn weight(taken: &[Value]) -> usize {
    taken.iter().map(|thread| 1 + inline_replies(thread)).sum()
}

pub struct YoutubeConnector {
    client: reqwest::Client,
    config: YoutubeConfig,
}

impl YoutubeConnector {
    pub fn new(client: reqwest::Client, config: YoutubeConfig) -> YoutubeConnector {
        YoutubeConnector { client, config }
    }

    fn host(&self) -> String {
        reqwest::Url::parse(&self.config.base_url)
            .ok()
            .and_then(|url| url.host_str().map(str::to_owned))
            .unwrap_or_default()
    }

    /// Removes the secrets from a text YouTube (or anything between) sent back.
    fn scrub(&self, text: &str) -> String {
        let mut text = text.to_owned();
        for secret in [&self.config.api_key, &self.config.access_token]
            .into_iter()
            .flatten()
        {
            text = text.replace(secret.as_str(), "***");
        }
        text
    }

    /// `{base_url}/{method}` with `query` and, when set, the api key.
    fn url(&self, method: &str, query: &[(&str, &str)]) -> Result<reqwest::Url, ConnectorError> {
        let mut url = reqwest::Url::parse(&format!("{}/{method}", self.config.base_url))
            .map_err(|err| ConnectorError::Config(format!("base_url: {err}")))?;
        {
            let mut pairs = url.query_pairs_mut();
            pairs.extend_pairs(query);
            if let Some(key) = &self.config.api_key {
                pairs.append_pair("key", key);
            }
        }
        Ok(url)
    }

    fn request(&self, method: reqwest::Method, url: reqwest::Url) -> reqwest::RequestBuilder {
        let request = self
            .client
            .request(method, url)
            .header("accept", "application/json")
            .header("user-agent", concat!("rapport/", env!("CARGO_PKG_VERSION")));
        match &self.config.access_token {
            Some(token) => request.bearer_auth(token),
            None => request,
        }
    }

    /// Sends `request`; the JSON answer, or the error `what` (for messages) met.
    async fn send(
        &self,
        request: reqwest::RequestBuilder,
        what: &str,
        writing: bool,
    ) -> Result<Value, ConnectorError> {
        let now = Utc::now();
        let response = request.send().await.map_err(http::transport)?;
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = http::read_capped(response, MAX_BODY_BYTES).await?;
        let host = self.host();
        if (200..300).contains(&status) {
            return serde_json::from_slice(&body).map_err(|_| {
                ConnectorError::Payload(format!("{host} answered {what} with invalid JSON"))
            });
        }
        Err(self.failure(status, &headers, &body, now, what, writing))
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
        let error = serde_json::from_slice::<Value>(body)
            .ok()
            .and_then(|body| body.get("error").cloned())
            .unwrap_or(Value::Null);
        let reasons: Vec<&str> = error
            .get("errors")
            .and_then(Value::as_array)
            .map(|errors| {
                errors
                    .iter()
                    .filter_map(|e| e.get("reason").and_then(Value::as_str))
                    .collect()
            })
            .unwrap_or_default();
        let has = |reason: &str| reasons.contains(&reason);
        // Scrubbed whole, then cut: a cut could split a secret and let a part through.
        let message = self.scrub(error.get("message").and_then(Value::as_str).unwrap_or(""));
        let message = match message.char_indices().nth(MAX_MESSAGE_CHARS) {
            Some((end, _)) => format!("{}…", &message[..end]),
            None => message,
        };
        let said = match (reasons.first(), message.is_empty()) {
            (Some(reason), false) => format!(" ({reason}: {message})"),
            (Some(reason), true) => format!(" ({reason})"),
            (None, false) => format!(" ({message})"),
            (None, true) => String::new(),
        };
        if has("quotaExceeded") || has("dailyLimitExceeded") {
            let until = pacific_midnight_after(now).clamp(now, now + Duration::days(1));
            // Rounded up: a wait cut to whole seconds would come back just before the reset.
            let millis = (until - now).num_milliseconds();
            return ConnectorError::RateLimited {
                retry_after_secs: Some(((millis + 999) / 1_000).max(1) as u64),
            };
        }
        if has("rateLimitExceeded") || has("userRateLimitExceeded") || status == 429 {
            return ConnectorError::RateLimited {
                retry_after_secs: Some(
                    http::not_before(headers, now)
                        .map_or(SHORT_WAIT_SECS, |at| (at - now).num_seconds().max(1) as u64),
                ),
            };
        }
        if status == 401 || has("authError") {
            return ConnectorError::Unauthorized(format!(
                "{host} answered {what} with {status}{said}: the api_key or access_token was \
                 refused (an OAuth access token expires after an hour; give a new one)"
            ));
        }
        match status {
            403 if writing => ConnectorError::Unauthorized(format!(
                "{host} answered {what} with 403{said}: replying needs an access_token with \
                 the youtube.force-ssl scope of an account that may comment there"
            )),
            403 if has("commentsDisabled") => ConnectorError::Payload(format!(
                "{host} answered {what} with 403{said}: comments are disabled there"
            )),
            404 => ConnectorError::Payload(format!(
                "{host} answered {what} with 404{said}: no such video, channel or comment"
            )),
            500.. => {
                ConnectorError::Transport(format!("{host} answered {what} with {status}{said}"))
            }
            _ => ConnectorError::Payload(format!("{host} answered {what} with {status}{said}")),
        }
    }

    /// One page of a listing's threads (newest first) and the `nextPageToken`.
    async fn threads(
        &self,
        listen: Listen<'_>,
        page_token: Option<&str>,
        size: usize,
    ) -> Result<(Vec<Value>, Option<String>), ConnectorError> {
        let size = size.to_string();
        let mut query = vec![
            ("part", "snippet,replies"),
            ("order", "time"),
            ("textFormat", "plainText"),
            ("maxResults", size.as_str()),
        ];
        match listen {
            Listen::Channel(id) => query.push(("allThreadsRelatedToChannelId", id)),
            Listen::Video(id) => query.push(("videoId", id)),
        }
        if let Some(token) = page_token {
            query.push(("pageToken", token));
        }
        let url = self.url("commentThreads", &query)?;
        let what = listen.what();
        let page = self
            .send(self.request(reqwest::Method::GET, url), &what, false)
            .await?;
        list(page, &self.host(), &what)
    }

    /// The threads of `ids` as they are now (one call; missing ones were deleted).
    async fn threads_by_id(&self, ids: &[&str]) -> Result<Vec<Value>, ConnectorError> {
        let joined = ids.join(",");
        let url = self.url(
            "commentThreads",
            &[
                ("part", "snippet,replies"),
                ("textFormat", "plainText"),
                ("id", joined.as_str()),
            ],
        )?;
        let page = self
            .send(
                self.request(reqwest::Method::GET, url),
                "commentThreads (watched threads)",
                false,
            )
            .await?;
        list(page, &self.host(), "commentThreads (watched threads)").map(|(threads, _)| threads)
    }

    /// One page of the replies to `parent` and the `nextPageToken`.
    async fn replies(
        &self,
        parent: &str,
        page_token: Option<&str>,
    ) -> Result<(Vec<Value>, Option<String>), ConnectorError> {
        let size = PAGE.to_string();
        let mut query = vec![
            ("part", "snippet"),
            ("parentId", parent),
            ("textFormat", "plainText"),
            ("maxResults", size.as_str()),
        ];
        if let Some(token) = page_token {
            query.push(("pageToken", token));
        }
        let url = self.url("comments", &query)?;
        let page = self
            .send(
                self.request(reqwest::Method::GET, url),
                "comments (replies)",
                false,
            )
            .await?;
        list(page, &self.host(), "comments (replies)")
    }

    /// Puts every reply of `thread` into its `replies.comments` when the thread holds fewer
    /// than it has (at most [`REPLY_PAGES`] pages); a warning when some are left.
    async fn complete(&self, thread: &mut Value) -> Result<Option<String>, ConnectorError> {
        let total = reply_count(thread);
        if total as usize <= inline_replies(thread) {
            return Ok(None);
        }
        let Some(parent) = thread.get("id").and_then(Value::as_str).map(str::to_owned) else {
            return Ok(None);
        };
        let mut replies = Vec::new();
        let mut token: Option<String> = None;
        for _ in 0..REPLY_PAGES {
            let (page, next) = self.replies(&parent, token.as_deref()).await?;
            replies.extend(page);
            match next {
                Some(next) if Some(&next) != token.as_ref() => token = Some(next),
                _ => {
                    token = None;
                    break;
                }
            }
        }
        let left = token.is_some();
        thread["replies"] = json!({ "comments": replies });
        Ok(left.then(|| {
            format!(
                "thread {parent} has more than {} replies: the rest were not read",
                REPLY_PAGES * PAGE
            )
        }))
    }

    /// Reads `stream` while the pull's budget lasts (`before`: the items earlier streams of
    /// this pull took); returns whether it goes on in the next batch. On an error, `stream`
    /// is as the last page left it.
    async fn walk(
        &self,
        listen: Listen<'_>,
        stream: &mut Stream,
        taken: &mut Vec<Value>,
        before: usize,
        started: std::time::Instant,
    ) -> Result<bool, ConnectorError> {
        let spent = |taken: &Vec<Value>| {
            before + weight(taken) + PAGE > PULL_ITEMS || started.elapsed() >= PULL_TIME
        };
        let goes_on = loop {
            let walk = stream.walk.clone().unwrap_or(Walk {
                left: u64::MAX,
                ..Walk::default()
            });
            // Only to set the mark: one thread.
            let size = if walk.left == 0 { 1 } else { PAGE };
            let (threads, next) = self.threads(listen, walk.next.as_deref(), size).await?;
            let had = taken.len();
            let mut page = Vec::new();
            let on = stream.back(walk, threads, next, &mut page);
            self.hand_over(stream, page, taken).await?;
            if !on {
                break false;
            }
            // A page of which nothing is taken leaves the rest to the next pull; one
            // without a thread (counted in the walk's `empty`) is gone past.
            let empty = stream.walk.as_ref().is_some_and(|walk| walk.empty > 0);
            if (taken.len() == had && !empty) || spent(taken) {
                break true;
            }
        };
        // Threads handed over earlier that got replies since.
        let fresh: HashSet<String> = taken.iter().filter_map(|t| key(t).map(|k| k.1)).collect();
        let ids: Vec<&str> = stream
            .watch
            .iter()
            .filter(|watched| !fresh.contains(&watched.id))
            .map(|watched| watched.id.as_str())
            .collect();
        if ids.is_empty() {
            return Ok(goes_on);
        }
        let now = self.threads_by_id(&ids).await?;
        let known: HashSet<String> = now.iter().filter_map(|t| key(t).map(|k| k.1)).collect();
        stream
            .watch
            .retain(|watched| fresh.contains(&watched.id) || known.contains(&watched.id));
        let grown: Vec<Value> = now
            .into_iter()
            .filter(|thread| {
                let Some((_, id)) = key(thread) else {
                    return false;
                };
                let had = stream
                    .watch
                    .iter()
                    .find(|watched| watched.id == id)
                    .map_or(0, |watched| watched.replies);
                reply_count(thread) > had
            })
            .collect();
        self.hand_over(stream, grown, taken).await?;
        Ok(goes_on)
    }

    /// Completes each thread's replies and hands it over, watching it. When a completion
    /// fails (a rate limit) or stops at [`REPLY_PAGES`], the threads are still handed over
    /// with the replies they hold, watched with only those counted, so a later sync reads
    /// the rest; then the error.
    async fn hand_over(
        &self,
        stream: &mut Stream,
        threads: Vec<Value>,
        taken: &mut Vec<Value>,
    ) -> Result<(), ConnectorError> {
        let mut failed = None;
        for mut thread in threads {
            // Whether every reply was read: else the thread is watched with the replies
            // read, so the next sync reads it again (and warns again) rather than taking
            // the ones past the cap for handed over.
            let mut whole = false;
            if failed.is_none() {
                match self.complete(&mut thread).await {
                    Ok(warning) => {
                        whole = warning.is_none();
                        stream.warning = warning.or(stream.warning.take());
                    }
                    Err(err) => failed = Some(err),
                }
            }
            stream.watch(&thread, whole);
            taken.push(thread);
        }
        failed.map_or(Ok(()), Err)
    }

    /// The channel the access token belongs to (`channels.list?mine=true`).
    async fn mine(&self) -> Option<String> {
        self.whose().await.ok()
    }

    /// [`Self::mine`], with the reason when it cannot be told.
    async fn whose(&self) -> Result<String, ConnectorError> {
        let url = self.url("channels", &[("part", "id"), ("mine", "true")])?;
        let answer = self
            .send(self.request(reqwest::Method::GET, url), "channels", false)
            .await?;
        answer
            .pointer("/items/0/id")
            .and_then(Value::as_str)
            .filter(|id| is_channel_id(id))
            .map(str::to_owned)
            .ok_or_else(|| {
                ConnectorError::Payload(format!(
                    "{} answered channels?mine=true without a channel: the access token \
                     belongs to no YouTube channel",
                    self.host()
                ))
            })
    }

    /// The reply an attempt begun at `started` made under `parent`: by the token's channel,
    /// with exactly `text`, published no earlier than [`READ_BACK_WINDOW`] before it.
    async fn posted(&self, parent: &str, text: &str, started: DateTime<Utc>) -> Option<Value> {
        let mine = self.mine().await?;
        let since = started - READ_BACK_WINDOW;
        let mut token: Option<String> = None;
        for _ in 0..REPLY_PAGES {
            let (replies, next) = self.replies(parent, token.as_deref()).await.ok()?;
            let found = replies.into_iter().find(|reply| {
                let snippet = reply.get("snippet").unwrap_or(&Value::Null);
                let ours = snippet
                    .pointer("/authorChannelId/value")
                    .and_then(Value::as_str)
                    == Some(mine.as_str());
                let same = snippet
                    .get("textOriginal")
                    .or_else(|| snippet.get("textDisplay"))
                    .and_then(Value::as_str)
                    .is_some_and(|said| said.trim() == text);
                let recent = time(snippet, "publishedAt").is_some_and(|at| at >= since);
                ours && same && recent
            });
            if found.is_some() {
                return found;
            }
            token = Some(next.filter(|next| Some(next) != token.as_ref())?);
        }
        None
    }
}

/// The `items` and `nextPageToken` of a list answer.
fn list(
    mut page: Value,
    host: &str,
    what: &str,
) -> Result<(Vec<Value>, Option<String>), ConnectorError> {
    let next = page
        .get("nextPageToken")
        .and_then(Value::as_str)
        .filter(|token| !token.is_empty())
        .map(str::to_owned);
    match page.get_mut("items").map(Value::take) {
        Some(Value::Array(items)) => Ok((items, next)),
        // An empty list may come without `items`.
        None | Some(Value::Null) => Ok((Vec::new(), next)),
        Some(_) => Err(ConnectorError::Payload(format!(
            "{host} answered {what} without a list of items"
        ))),
    }
}

/// The link to a comment under its video.
fn comment_url(video: Option<&str>, id: &str) -> Option<String> {
    video
        .filter(|video| is_video_id(video))
        .map(|video| format!("https://www.youtube.com/watch?v={video}&lc={id}"))
}

/// A thread's comments as items: the top-level one, then its replies.
/// `ours`: `channel_id` and the access token's channel, whose comments are outbound.
fn thread_items(thread: &Value, ours: [Option<&str>; 2]) -> Vec<InboundItem> {
    let Some(thread_id) = thread
        .get("id")
        .and_then(Value::as_str)
        .filter(|id| is_comment_id(id))
    else {
        return Vec::new();
    };
    let snippet = thread.get("snippet").unwrap_or(&Value::Null);
    let video = snippet.get("videoId").and_then(Value::as_str);
    let mut items = Vec::new();
    let context = Context {
        thread: thread_id,
        video,
        owners: ours,
    };
    if let Some(top) = snippet.get("topLevelComment") {
        items.extend(comment_item(top, &context, None));
    }
    for reply in thread
        .pointer("/replies/comments")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let parent = reply
            .pointer("/snippet/parentId")
            .and_then(Value::as_str)
            .unwrap_or(thread_id);
        items.extend(comment_item(reply, &context, Some(parent)));
    }
    items
}

/// What every comment of a thread shares.
struct Context<'a> {
    thread: &'a str,
    video: Option<&'a str>,
    /// The source's channel and the access token's: their comments are ours. Not the
    /// video's channel, which may be a stranger's.
    owners: [Option<&'a str>; 2],
}

/// One comment resource as an item; `None` for one without an author channel.
fn comment_item(
    comment: &Value,
    context: &Context<'_>,
    in_reply_to: Option<&str>,
) -> Option<InboundItem> {
    let id = comment
        .get("id")
        .and_then(Value::as_str)
        .filter(|id| is_comment_id(id))?;
    let snippet = comment.get("snippet")?;
    let text_of = |field: &str| {
        snippet
            .get(field)
            .and_then(Value::as_str)
            .map(str::trim)
            .filter(|text| !text.is_empty())
            .map(str::to_owned)
    };
    let author = snippet
        .pointer("/authorChannelId/value")
        .and_then(Value::as_str)
        .filter(|id| !id.is_empty())?;
    let name = text_of("authorDisplayName");
    let profile = text_of("authorChannelUrl");
    let handle = name
        .clone()
        .filter(|name| name.starts_with('@'))
        .or_else(|| {
            let url = profile.as_deref()?;
            let handle = url.rsplit('/').next()?;
            handle.starts_with('@').then(|| handle.to_owned())
        });
    let outbound = context
        .owners
        .iter()
        .flatten()
        .any(|owner| *owner == author);
    let mut raw = comment.clone();
    if let (Some(video), Some(snippet)) = (context.video, raw.get_mut("snippet")) {
        if snippet.get("videoId").is_none() {
            snippet["videoId"] = json!(video);
        }
    }
    Some(InboundItem {
        external_id: id.to_owned(),
        author: Author {
            platform_id: author.to_owned(),
            handle,
            display_name: name,
            profile_url: profile,
            avatar_url: text_of("authorProfileImageUrl"),
            email: None,
            phone: None,
            links: Vec::new(),
        },
        outbound,
        kind: "comment".to_owned(),
        subject: match in_reply_to {
            None => context.video.map(|video| format!("YouTube video {video}")),
            Some(_) => None,
        },
        text: text_of("textOriginal")
            .or_else(|| text_of("textDisplay"))
            .unwrap_or_default(),
        html: None,
        url: comment_url(context.video, id),
        language: None,
        occurred_at: time(snippet, "publishedAt")?,
        thread_key: Some(context.thread.to_owned()),
        in_reply_to: in_reply_to.map(str::to_owned),
        raw,
    })
}

#[async_trait::async_trait]
impl Connector for YoutubeConnector {
    fn channel(&self) -> Channel {
        Channel::Youtube
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            pull: true,
            webhook: false,
            // An api key reads public data only.
            reply: self.config.access_token.is_some(),
        }
    }

    async fn pull(&self, cursor: Option<&Cursor>) -> Result<Pull, ConnectorError> {
        let started = std::time::Instant::now();
        let mut state = YoutubeCursor::decode(cursor);
        let mut listens: Vec<Listen<'_>> = Vec::new();
        if let Some(channel) = &self.config.channel_id {
            listens.push(Listen::Channel(channel));
        }
        listens.extend(self.config.video_ids.iter().map(|id| Listen::Video(id)));
        let mut streams = BTreeMap::new();
        let mut taken: Vec<Value> = Vec::new();
        let mut more = false;
        let mut not_before = None;
        let mut failures = Vec::new();
        for listen in listens {
            let key = listen.key();
            let mut stream = state
                .streams
                .remove(&key)
                .unwrap_or_else(|| Stream::first(self.config.backfill_limit));
            if not_before.is_some() {
                more = true;
            } else {
                stream.warning = crate::empty::shown(&mut stream.gave_up, "YouTube", Utc::now());
                let mut values = Vec::new();
                let walked = self
                    .walk(listen, &mut stream, &mut values, weight(&taken), started)
                    .await;
                taken.extend(values);
                match walked {
                    Ok(goes_on) => more |= goes_on,
                    // Keep what the earlier pages gave; come back when YouTube says.
                    Err(ConnectorError::RateLimited { retry_after_secs }) => {
                        http::wait_out(&mut not_before, retry_after_secs);
                        more = true;
                    }
                    Err(err @ (ConnectorError::Payload(_) | ConnectorError::Transport(_))) => {
                        let failed = format!("{} failed: {err}", listen.what());
                        crate::empty::warn(&mut stream.warning, failed);
                        failures.push(err);
                    }
                    Err(err) => return Err(err),
                }
            }
            streams.insert(key, stream);
        }
        // Every stream failed: the source's error, not a quiet empty sync; unless pages
        // came before the failure, which are handed over (with their place in the cursor)
        // and the next pull meets the error again.
        if !failures.is_empty() && failures.len() == streams.len() {
            if taken.is_empty() {
                return Err(failures.remove(0));
            }
            more = true;
        }
        // Videos no longer configured are forgotten.
        state.streams = streams;
        // The token may be another channel than `channel_id` (or the only one, with just
        // videos): ask once per pull that hands something over, as a token can be changed.
        if self.config.access_token.is_some() && !taken.is_empty() {
            match self.whose().await {
                Ok(channel) => state.mine = Some(channel),
                // Handed over without it, our own comments would be stored as a
                // customer's for good: keep the cursor and come back.
                Err(err) if state.mine.is_none() => return Err(err),
                Err(_) => {}
            }
        }
        if self.config.access_token.is_none() {
            state.mine = None;
        }
        let ours = [self.config.channel_id.as_deref(), state.mine.as_deref()];
        let mut seen = HashSet::new();
        let mut items: Vec<InboundItem> = taken
            .iter()
            .flat_map(|thread| thread_items(thread, ours))
            .filter(|item| seen.insert(item.external_id.clone()))
            .collect();
        // Oldest first: a top-level comment before its replies.
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
        if self.config.access_token.is_none() {
            return Err(ConnectorError::Config(
                "replying on YouTube needs an OAuth access_token (youtube.force-ssl scope): an \
                 api_key can only read"
                    .into(),
            ));
        }
        let text = text.trim();
        let length = text.chars().count();
        if length > MAX_REPLY_CHARS {
            return Err(ConnectorError::Payload(format!(
                "the reply has {length} characters; YouTube takes at most {MAX_REPLY_CHARS}"
            )));
        }
        // YouTube nests one level: a reply answers the top-level comment.
        let parent = to
            .thread_key
            .clone()
            .or_else(|| {
                to.context
                    .pointer("/snippet/parentId")
                    .and_then(Value::as_str)
                    .map(str::to_owned)
            })
            .unwrap_or_else(|| to.external_id.clone());
        if !is_comment_id(&parent) || parent.contains('.') {
            return Err(ConnectorError::Payload(format!(
                "`{parent}` is not a YouTube comment thread to answer"
            )));
        }
        let url = self.url("comments", &[("part", "snippet")])?;
        let body = json!({ "snippet": { "parentId": parent, "textOriginal": text } });
        let started = Utc::now();
        let sent = self
            .send(
                self.request(reqwest::Method::POST, url).json(&body),
                "comments.insert",
                true,
            )
            .await;
        let comment = match sent {
            Ok(comment) => comment,
            // A timeout or a 5xx may hide a comment YouTube made: ours under this thread
            // with these words, made since shortly before this attempt, is the reply.
            Err(err @ ConnectorError::Transport(_)) => {
                match self.posted(&parent, text, started).await {
                    Some(comment) => comment,
                    None => return Err(err),
                }
            }
            Err(err) => return Err(err),
        };
        let id = comment
            .get("id")
            .and_then(Value::as_str)
            .filter(|id| is_comment_id(id))
            .ok_or_else(|| {
                ConnectorError::Payload(format!(
                    "{} answered comments.insert without the comment's id",
                    self.host()
                ))
            })?;
        let video = to
            .context
            .pointer("/snippet/videoId")
            .and_then(Value::as_str);
        Ok(Sent {
            external_id: id.to_owned(),
            url: comment_url(video, id),
            text: text.to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHANNEL: &str = "UCk3f9rY2pLmQx7Zt1Vb8NwA";

    fn config() -> Value {
        json!({
            "api_key": " AIzaSyTestKey-0123456789abcdefghijklmn ",
            "channel_id": CHANNEL,
            "video_ids": ["dQw4w9WgXcQ", "dQw4w9WgXcQ", "aBcDeFgHiJk"]
        })
    }

    /// A comment resource as the Data API documents it.
    fn comment(id: &str, author: &str, text: &str, at: &str, parent: Option<&str>) -> Value {
        let mut snippet = json!({
            "authorDisplayName": format!("@{author}"),
            "authorProfileImageUrl": format!("https://yt3.ggpht.com/{author}=s48-c-k-c0x00ffffff-no-rj"),
            "authorChannelUrl": format!("http://www.youtube.com/@{author}"),
            "authorChannelId": { "value": format!("UC{author:_<22}") },
            "channelId": CHANNEL,
            "textDisplay": text,
            "textOriginal": text,
            "canRate": true,
            "viewerRating": "none",
            "likeCount": 3,
            "publishedAt": at,
            "updatedAt": at
        });
        if let Some(parent) = parent {
            snippet["parentId"] = json!(parent);
        }
        json!({ "kind": "youtube#comment", "etag": "x", "id": id, "snippet": snippet })
    }

    fn thread(id: &str, at: &str, replies: Vec<Value>, total: u64) -> Value {
        json!({
            "kind": "youtube#commentThread", "etag": "t", "id": id,
            "snippet": {
                "channelId": CHANNEL, "videoId": "dQw4w9WgXcQ",
                "topLevelComment": comment(id, "maya", "Does the export work?", at, None),
                "canReply": true, "totalReplyCount": total, "isPublic": true
            },
            "replies": { "comments": replies }
        })
    }

    #[test]
    fn the_config_is_checked_and_never_shows_the_secrets() {
        let parsed = YoutubeConfig::parse(&config()).unwrap();
        assert_eq!(parsed.base_url, API);
        assert_eq!(parsed.video_ids, ["dQw4w9WgXcQ", "aBcDeFgHiJk"]);
        assert_eq!(
            parsed.api_key.as_deref(),
            Some("AIzaSyTestKey-0123456789abcdefghijklmn")
        );
        assert!(!format!("{parsed:?}").contains("AIza"));
        let problem = |change: Value| {
            let mut config = config();
            for (key, value) in change.as_object().unwrap() {
                config[key] = value.clone();
            }
            YoutubeConfig::parse(&config).unwrap_err()
        };
        assert_eq!(problem(json!({ "api_key": " " })).0, "api_key");
        assert_eq!(problem(json!({ "api_key": "a b" })).0, "api_key");
        assert_eq!(problem(json!({ "channel_id": "acme" })).0, "channel_id");
        assert_eq!(
            problem(json!({ "video_ids": ["watch?v=1"] })).0,
            "video_ids"
        );
        assert_eq!(
            problem(json!({ "channel_id": null, "video_ids": [] })).0,
            "channel_id"
        );
        assert_eq!(
            problem(json!({ "backfill_limit": 100_001 })).0,
            "backfill_limit"
        );
        let many: Vec<String> = (0..51).map(|n| format!("video{n:06}")).collect();
        assert_eq!(problem(json!({ "video_ids": many })).0, "video_ids");
        assert_eq!(problem(json!({ "token": "x" })).0, "token");
        // A token alone is enough, and it may reply; a key alone may not.
        let token_only = YoutubeConfig::parse(
            &json!({ "access_token": "ya29.a0Af", "video_ids": ["dQw4w9WgXcQ"] }),
        )
        .unwrap();
        let with_token = YoutubeConnector::new(reqwest::Client::new(), token_only);
        assert!(with_token.capabilities().reply);
        let key_only = YoutubeConnector::new(
            reqwest::Client::new(),
            YoutubeConfig::parse(&config()).unwrap(),
        );
        assert!(!key_only.capabilities().reply && key_only.capabilities().pull);
    }

    #[test]
    fn the_daily_quota_waits_until_midnight_pacific_time() {
        let at = |text: &str| DateTime::parse_from_rfc3339(text).unwrap().to_utc();
        // Winter: UTC-8.
        assert_eq!(
            pacific_midnight_after(at("2026-12-04T22:31:00Z")),
            at("2026-12-05T08:00:00Z")
        );
        // Summer: UTC-7, and 23:30 local is half an hour before.
        assert_eq!(
            pacific_midnight_after(at("2026-07-01T06:30:00Z")),
            at("2026-07-01T07:00:00Z")
        );
        // The night before the change to summer time (8 March 2026): still winter midnight.
        assert_eq!(
            pacific_midnight_after(at("2026-03-08T07:00:00Z")),
            at("2026-03-08T08:00:00Z")
        );
        // After it: the next midnight is summer's.
        assert_eq!(
            pacific_midnight_after(at("2026-03-08T12:00:00Z")),
            at("2026-03-09T07:00:00Z")
        );
        // The change back (1 November 2026): that day's midnight was summer's, the next
        // winter's.
        assert_eq!(
            pacific_midnight_after(at("2026-11-01T12:00:00Z")),
            at("2026-11-02T08:00:00Z")
        );
    }

    #[test]
    fn errors_are_told_apart_by_reason_and_never_show_a_secret() {
        let youtube = YoutubeConnector::new(
            reqwest::Client::new(),
            YoutubeConfig::parse(&config()).unwrap(),
        );
        let now = DateTime::parse_from_rfc3339("2026-12-04T22:00:00Z")
            .unwrap()
            .to_utc();
        let body = |code: u16, reason: &str, message: &str| {
            json!({ "error": { "code": code, "message": message, "errors": [
                { "message": message, "domain": "youtube.quota", "reason": reason }
            ] } })
            .to_string()
        };
        let fail = |status, body: String, writing| {
            youtube.failure(
                status,
                &HeaderMap::new(),
                body.as_bytes(),
                now,
                "x",
                writing,
            )
        };
        match fail(403, body(403, "quotaExceeded", "quota"), false) {
            ConnectorError::RateLimited {
                retry_after_secs: Some(secs),
            } => assert_eq!(secs, 10 * 3_600),
            other => panic!("{other:?}"),
        }
        for reason in ["rateLimitExceeded", "userRateLimitExceeded"] {
            assert!(matches!(
                fail(403, body(403, reason, "slow down"), false),
                ConnectorError::RateLimited {
                    retry_after_secs: Some(SHORT_WAIT_SECS)
                }
            ));
        }
        let refused = fail(
            401,
            body(
                401,
                "authError",
                "Invalid key AIzaSyTestKey-0123456789abcdefghijklmn",
            ),
            false,
        );
        assert!(matches!(refused, ConnectorError::Unauthorized(_)));
        assert!(!refused.to_string().contains("AIza"), "{refused}");
        let disabled = fail(403, body(403, "commentsDisabled", "disabled"), false);
        assert!(
            matches!(&disabled, ConnectorError::Payload(m) if m.contains("commentsDisabled")),
            "{disabled}"
        );
        assert!(matches!(
            fail(404, body(404, "videoNotFound", "gone"), false),
            ConnectorError::Payload(_)
        ));
        assert!(matches!(
            fail(403, body(403, "forbidden", "no"), true),
            ConnectorError::Unauthorized(_)
        ));
        assert!(matches!(
            fail(503, body(503, "backendError", "later"), true),
            ConnectorError::Transport(_)
        ));
        let long = fail(400, body(400, "badRequest", &"é".repeat(1_000)), false).to_string();
        assert!(long.chars().count() < 400, "{long}");
    }

    #[test]
    fn a_walk_takes_threads_down_to_the_mark_and_watches_the_newest() {
        let t = |id: &str, minute: u32| {
            thread(id, &format!("2026-11-02T09:{minute:02}:00Z"), vec![], 0)
        };
        let ids = |taken: &[Value]| -> Vec<String> {
            taken
                .iter()
                .map(|t| t["id"].as_str().unwrap().to_owned())
                .collect()
        };
        // A first sync with room for three threads over two pages.
        let mut stream = Stream::first(3);
        let mut taken = Vec::new();
        let walk = stream.walk.clone().unwrap();
        assert!(stream.back(
            walk,
            vec![t("Ug5", 5), t("Ug4", 4)],
            Some("p2".into()),
            &mut taken
        ));
        let walk = stream.walk.clone().unwrap();
        assert_eq!(walk.next.as_deref(), Some("p2"));
        assert!(!stream.back(
            walk,
            vec![t("Ug3", 3), t("Ug2", 2)],
            Some("p3".into()),
            &mut taken
        ));
        assert_eq!(ids(&taken), ["Ug5", "Ug4", "Ug3"]);
        assert_eq!(stream.walk, None);
        let mark = stream.mark.clone().unwrap();
        assert_eq!(
            (mark.ids.clone(), mark.at),
            (vec!["Ug5".to_owned()], key(&t("Ug5", 5)).unwrap().0)
        );
        // A later sync: new threads down to the mark, then one more page, since a comment
        // approved late keeps its old time and shows up below those handed over. The
        // walk ends at a page the mark covers whole.
        let mut taken = Vec::new();
        let later = Walk {
            left: u64::MAX,
            ..Walk::default()
        };
        for thread in [t("Ug5", 5), t("Ug4", 4), t("Ug3", 3)] {
            stream.watch(&thread, true);
        }
        assert!(stream.back(
            later,
            vec![t("Ug7", 7), t("Ug6", 6), t("Ug5", 5)],
            Some("q".into()),
            &mut taken
        ));
        let walk = stream.walk.clone().unwrap();
        let late = thread("UgLate", "2026-11-02T09:03:30Z", vec![], 0);
        assert!(stream.back(
            walk,
            vec![t("Ug4", 4), late, t("Ug3", 3)],
            Some("r".into()),
            &mut taken
        ));
        let walk = stream.walk.clone().unwrap();
        assert!(!stream.back(
            walk,
            vec![t("Ug2", 2), t("Ug1", 1)],
            Some("s".into()),
            &mut taken
        ));
        assert_eq!(ids(&taken), ["Ug7", "Ug6", "UgLate"]);
        assert_eq!(stream.walk, None);
        assert_eq!(stream.mark.clone().unwrap().ids, ["Ug7"]);
        // Backfill 0: nothing taken, the mark set.
        let mut stream = Stream::first(0);
        let mut taken = Vec::new();
        let walk = stream.walk.clone().unwrap();
        assert!(!stream.back(walk, vec![t("Ug9", 9)], Some("n".into()), &mut taken));
        assert!(taken.is_empty());
        assert_eq!(stream.mark.unwrap().ids, ["Ug9"]);
        // The watch keeps the newest, with their reply counts.
        let mut stream = Stream::default();
        for minute in 0..(WATCHED as u32 + 5) {
            stream.watch(&t(&format!("Ug{minute}"), minute % 60), true);
        }
        assert_eq!(stream.watch.len(), WATCHED);
        assert!(stream.watch.iter().all(|w| w.id != "Ug0"));
    }

    #[test]
    fn a_thread_is_its_comments_threaded_by_the_top_level_id() {
        let reply = comment(
            "UgzTop.AbCdEf1",
            "acmeofficial",
            "Fixed in 2.0.1",
            "2026-11-02T09:10:00Z",
            Some("UgzTop"),
        );
        let mut ours = reply.clone();
        ours["snippet"]["authorChannelId"]["value"] = json!(CHANNEL);
        ours["id"] = json!("UgzTop.AbCdEf2");
        let mut anonymous = reply.clone();
        anonymous["snippet"]
            .as_object_mut()
            .unwrap()
            .remove("authorChannelId");
        anonymous["id"] = json!("UgzTop.AbCdEf3");
        let value = thread(
            "UgzTop",
            "2026-11-02T09:00:00Z",
            vec![reply, ours, anonymous],
            3,
        );
        let items = thread_items(&value, [Some(CHANNEL), None]);
        assert_eq!(items.len(), 3);
        let top = &items[0];
        assert_eq!(top.external_id, "UgzTop");
        assert_eq!(top.thread_key.as_deref(), Some("UgzTop"));
        assert_eq!(top.in_reply_to, None);
        assert_eq!(top.subject.as_deref(), Some("YouTube video dQw4w9WgXcQ"));
        assert_eq!(top.author.platform_id, format!("UC{:_<22}", "maya"));
        assert_eq!(top.author.handle.as_deref(), Some("@maya"));
        assert_eq!(
            top.url.as_deref(),
            Some("https://www.youtube.com/watch?v=dQw4w9WgXcQ&lc=UgzTop")
        );
        assert!(!top.outbound);
        assert_eq!(items[1].in_reply_to.as_deref(), Some("UgzTop"));
        assert_eq!(items[1].subject, None);
        assert!(items[2].outbound);
        assert_eq!(items[2].raw["snippet"]["videoId"], "dQw4w9WgXcQ");
        // The token's channel is ours too.
        let items = thread_items(&value, [None, Some(CHANNEL)]);
        assert!(items[2].outbound);
        // A chosen video of another channel: its owner answering is a customer, not us.
        let items = thread_items(&value, [Some("UCacme0000000000000000aa"), None]);
        assert_eq!(items[2].author.platform_id, CHANNEL);
        assert!(items.iter().all(|item| !item.outbound));
    }

    #[tokio::test]
    async fn a_reply_without_a_token_or_over_10000_characters_is_refused_before_sending() {
        let target = ReplyTarget {
            external_id: "UgzTop".into(),
            thread_key: Some("UgzTop".into()),
            context: Value::Null,
            recipient: None,
            idempotency_key: "k".into(),
        };
        // The client points nowhere: nothing may be sent.
        let mut config = config();
        config["base_url"] = json!("http://127.0.0.1:9");
        let key_only = YoutubeConnector::new(
            reqwest::Client::new(),
            YoutubeConfig::parse(&config).unwrap(),
        );
        match key_only.reply(&target, "hi").await {
            Err(ConnectorError::Config(message)) => {
                assert!(message.contains("access_token"), "{message}")
            }
            other => panic!("{other:?}"),
        }
        config["access_token"] = json!("ya29.a0AfB_test");
        let youtube = YoutubeConnector::new(
            reqwest::Client::new(),
            YoutubeConfig::parse(&config).unwrap(),
        );
        match youtube.reply(&target, &"a".repeat(10_001)).await {
            Err(ConnectorError::Payload(message)) => {
                assert!(message.contains("10001 characters"), "{message}")
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            youtube.default_reply_limit(),
            Some(ReplyLimit::Characters(MAX_REPLY_CHARS))
        );
    }
}
