//! The GitHub channel (pull + reply), over GitHub's REST API
//! (<https://docs.github.com/en/rest/issues>), on github.com or a GitHub Enterprise Server.
//!
//! Plain calls through the guarded client rather than `octocrab`: the connector uses one
//! identity call, two listings, one write and one GraphQL query and mutation, each a small
//! JSON body; `octocrab` is a large dependency wrapping far more of the API, builds its own
//! HTTP stack (so its connections would not all go through the outbound guard), and
//! handles rate limits its own way where the scheduler needs GitHub's primary and
//! secondary limits as "not before" times.
//!
//! - Every request carries `Accept: application/vnd.github+json`,
//!   `X-GitHub-Api-Version: 2022-11-28`, a `User-Agent` (GitHub refuses requests without
//!   one) and the token as `Authorization: Bearer`.
//! - Listening, for each configured repository: issues and pull requests themselves
//!   (`GET /repos/{owner}/{repo}/issues?state=all&sort=updated`; a pull request is an issue
//!   with a `pull_request` key: its opening text is an item) and every comment of their
//!   conversations (`GET /repos/{owner}/{repo}/issues/comments?sort=updated`), 100 a page;
//!   and its discussions over GraphQL (`POST /graphql`, on GitHub Enterprise Server
//!   `https://HOST/api/graphql`): `repository.discussions` most recently updated first,
//!   [`DISCUSSIONS_PAGE`] a page, each with its newest [`DISCUSSION_COMMENTS`] comments and
//!   their newest [`COMMENT_REPLIES`] replies (a discussion's `updatedAt` moves when it gets
//!   a comment; a burst of more comments than that between two syncs loses the older ones).
//!   Review comments on a pull request's diff are not read.
//! - Cursor: per stream a *mark*, the newest `updated_at` second handed over and the ids of
//!   that second (GitHub's `since` is inclusive and counts in seconds), and on a first sync
//!   a *walk* back from the newest (`direction=desc`, paged by the `Link: <…>; rel="next"`
//!   header, whose URL is kept so a crash mid-walk resumes there), up to `backfill_limit`
//!   items per stream (0: it only sets the mark). Later pulls ask `since=` the mark with
//!   `direction=asc` and take what the mark does not cover. A page whose items move the mark
//!   is followed by a new request from the moved mark rather than by its `next` link: an
//!   item updated meanwhile moves to the end of the order and would shift the pages under a
//!   numbered walk, losing the item that slid back onto the page already read. Only a page
//!   that stays within the mark's second follows its `next` link. GraphQL has no `since`:
//!   every sync walks the discussions back from the newest (by `endCursor`) to the mark.
//!   A `next` link is followed only into `base_url` (normalised when the config is read:
//!   same scheme, host and port, a path under its path); another ends the walk with a
//!   warning, so no refused link stays in the cursor. A page over the body cap is asked
//!   again at the same place in smaller pages ([`PAGE_SIZES`], GraphQL half as many
//!   discussions), the stream keeping the size until caught up; an item over the cap on its
//!   own is skipped (lost) with a warning. A pull's item budget counts every stream's items
//!   (a discussion with its comments and replies).
//!   The stored cursor is JSON: `{"streams": {"{owner}/{repo}/issues": {"mark": {"at",
//!   "ids"}, "walk": {"next", "top", "left"}}, "{owner}/{repo}/comments": {…},
//!   "{owner}/{repo}/discussions": {…}}}`.
//! - Items: an issue or pull request is a `post` (its title the subject, its body the text),
//!   a comment a `comment`; either is a `mention` when it names the token's account
//!   (`@login`, read from `GET /user` once a pull). An issue's external id is
//!   `{owner}/{repo}#{number}` (the repository as configured, in lower case), a comment's
//!   `issuecomment-{id}` (GitHub's own anchor; the id does not change when it is edited, so
//!   an edit is the same item and the pipeline drops it); a discussion's, its comments' and
//!   replies' their node ids (`D_…`, `DC_…`). Every item of an issue carries the issue's id
//!   as its thread key, every item of a discussion the discussion's, so each is one
//!   conversation whichever item arrives first (a reply answers its comment, a comment its
//!   discussion or issue). The author's numeric `user.id` (GraphQL: `databaseId`, the same
//!   number) is the identity (logins can be renamed): as is on github.com, and on a GitHub
//!   Enterprise Server qualified by it, `{host[:port][/path]}#{id}` (see [`realm`]: ids are
//!   per server, and a workspace may connect two); the login is the handle, `html_url` the
//!   profile. Items by bots (`user.type` `Bot`, GraphQL `__typename` `Bot`: Dependabot, CI
//!   apps) are skipped: they are no customers, and CI bots comment on every pull request.
//!   Items without a user (a deleted account whose items GitHub has not moved to `ghost`
//!   yet; in discussions any author that is not a `User`) are skipped too. Items by the
//!   token's account are outbound.
//! - Replies: `POST /repos/{owner}/{repo}/issues/{number}/comments` with `{"body": …}`
//!   (Markdown) on the answered item's issue (its conversation's thread key, else its own
//!   id or `issue_url`), at most [`MAX_REPLY_CHARS`] characters, checked before sending.
//!   In a discussion (its node id is the thread key): `addDiscussionComment` with
//!   `discussionId` and, answering a comment or a reply, `replyToId` the top-level comment
//!   (GitHub nests one level). Every body ends with the reply's hidden [`marker`] (from
//!   its idempotency key). GitHub has no idempotency key: when the answer to an issue
//!   comment is lost (a timeout or a 5xx), the connector reads the issue's comments since
//!   shortly before the attempt for the token's account's one carrying this reply's marker
//!   (never one with the same words from another reply), and takes it for the reply. When
//!   that read fails too, or in a discussion, the reply is FAILED although it may be on
//!   GitHub, and a retry posts it a second time.
//! - Rate limits: `x-ratelimit-remaining: 0` with `x-ratelimit-reset` (epoch seconds) on
//!   any answer is the primary limit; 403 or 429 with `retry-after`, or with a message
//!   naming the secondary rate limit (then at least a minute, as GitHub's documentation
//!   asks) is the secondary one. Both become "not before" times (at most a day ahead); a
//!   pull stops asking at the first and keeps what it has. 401 is refused credentials.
//!   GraphQL answers its errors with 200 and `errors[].type`: `RATE_LIMITED` is a rate
//!   limit, `FORBIDDEN` no access, `NOT_FOUND` a missing repository.
//! - Webhooks (with a `webhook_secret`; the source's `webhookPath` is the payload URL):
//!   `X-Hub-Signature-256: sha256=<hex HMAC-SHA256(secret, body)>` is verified over the raw
//!   body first (constant-time); then `X-GitHub-Event` says what the body is: `issues`
//!   (`opened`), `issue_comment` (`created`, on issues and pull requests), `discussion`
//!   (`created`) and `discussion_comment` (`created`) become the same items a pull makes of
//!   them (same external id, thread key, `in_reply_to`, kind), mapped by the same code.
//!   `X-GitHub-Event` is not signed, so the body must have that event's shape (an
//!   `issue_comment` a `comment` with its `issue_url`, a `discussion` no `comment`, …), else
//!   it is refused (400). The token's account is asked (`GET /user`, as every pull does)
//!   for a delivery holding a person's item (a bot's or a user-less one is answered
//!   without asking), at most once per [`ME_TTL`] per source (the server keeps the
//!   connector between deliveries), so our own comments are outbound and mentions of us are
//!   mentions exactly as pulled; when GitHub cannot be asked the delivery is answered 503
//!   (GitHub shows it failed; "Redeliver", or the next pull, brings it). A discussion
//!   reply's `parent_id` is a number where the pull's `in_reply_to` is the parent's node
//!   id: its `replyTo` is asked over GraphQL (a comment without its `node_id` is refused
//!   before). Everything else (`ping`, other actions such as
//!   `edited` or `labeled`, other events, repositories not in `repositories`) is answered
//!   200 and stored nothing. `X-GitHub-Delivery` is not signed, so replays are recognised
//!   by the items' external ids, never by it. The stored `raw` of a delivered item is the
//!   webhook's object (a discussion's in the GraphQL field names the pull stores).
//! - A repository GitHub does not answer for (404: missing or invisible to the token; 403:
//!   the token has no access; 410: issues disabled) does not fail the pull: the other
//!   repositories go on, and the stream's `warning` in the stored cursor says what failed.
//!   When every stream fails, the pull fails with the first error.

use std::collections::{BTreeMap, HashSet};

use chrono::{DateTime, TimeZone, Utc};
use reqwest::header::HeaderMap;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::http::{self, MAX_BODY_BYTES};
use crate::mark::Mark;
pub use crate::mastodon::{PULL_ITEMS, PULL_TIME};
use crate::{
    Author, Capabilities, Channel, Connector, ConnectorError, Cursor, InboundItem, ProfileLink,
    Pull, ReplyLimit, ReplyTarget, Sent,
};

/// Items asked for per request (the REST API's maximum).
pub const PAGE: usize = 100;

/// Items per stream a first sync takes when the source does not say.
pub const DEFAULT_BACKFILL_LIMIT: u64 = 1_000;

/// The most a source may ask a first sync to take per stream.
pub const MAX_BACKFILL_LIMIT: u64 = 100_000;

/// The repositories a source may listen to (three listings each on every sync).
pub const MAX_REPOSITORIES: usize = 20;

/// The page sizes a listing steps down through while a page is over the body cap
/// ([`MAX_BODY_BYTES`]; GitHub allows 65,536 characters a body, so about 40 large comments
/// make a page of 100 too large). Each divides the one before, so a page-numbered `next`
/// link's place is a whole number of smaller pages.
const PAGE_SIZES: [usize; 5] = [100, 50, 25, 5, 1];

/// What [`GithubConnector::send`] says of an answer over the body cap.
const OVER_CAP: &str = "an answer over the size cap";

/// The characters a comment body may have (GitHub: "body is too long (maximum is 65536
/// characters)").
pub const MAX_BODY_CHARS: usize = 65_536;

/// The characters of a reply's text: the body less the blank line and [`marker`] after it.
pub const MAX_REPLY_CHARS: usize = MAX_BODY_CHARS - MARKER_CHARS;

/// `\n\n<!-- rapport:{16 hex} -->`.
const MARKER_CHARS: usize = 2 + "<!-- rapport: -->".len() + 16;

/// The default API (GitHub Enterprise Server: `https://HOST/api/v3`).
pub const API: &str = "https://api.github.com";

/// The bytes a walk's `next` link may have to be kept in the cursor.
const MAX_LINK_BYTES: usize = 2_048;

/// The longest a platform may ask us to wait (a reset further ahead is taken as this).
const MAX_WAIT_SECS: i64 = 86_400;

/// GitHub's documentation: without `retry-after`, wait at least a minute after a secondary
/// rate limit.
const SECONDARY_WAIT_SECS: u64 = 60;

/// How long before an attempt a comment read back may have been created and still be
/// taken for that attempt's (clocks apart, a retry of a send whose answer was lost).
const READ_BACK_WINDOW: chrono::Duration = chrono::Duration::minutes(15);

/// Pages of an issue's comments read back after a lost answer.
const READ_BACK_PAGES: usize = 10;

/// The API version every request asks for.
const API_VERSION: &str = "2022-11-28";

/// Discussions asked for per GraphQL request, with the newest [`DISCUSSION_COMMENTS`]
/// comments of each and the newest [`COMMENT_REPLIES`] replies of each comment: 20,000
/// nodes at most, well within GraphQL's 500,000 a query, at about ten points of its budget.
pub const DISCUSSIONS_PAGE: usize = 20;
pub const DISCUSSION_COMMENTS: usize = 50;
pub const COMMENT_REPLIES: usize = 20;

/// A repository's discussions, most recently updated first, with their comments and
/// replies.
const DISCUSSIONS: &str = "query($owner: String!, $name: String!, $first: Int!, $after: String, $comments: Int!, $replies: Int!) {
  repository(owner: $owner, name: $name) {
    hasDiscussionsEnabled
    discussions(first: $first, after: $after, orderBy: {field: UPDATED_AT, direction: DESC}) {
      pageInfo { hasNextPage endCursor }
      nodes {
        id number title body url createdAt updatedAt
        author { ...who }
        comments(last: $comments) {
          nodes {
            id body url createdAt updatedAt
            author { ...who }
            replies(last: $replies) {
              nodes { id body url createdAt updatedAt author { ...who } replyTo { id } }
            }
          }
        }
      }
    }
  }
}
fragment who on Actor { __typename login url avatarUrl ... on User { databaseId } }";

/// A comment on a discussion, or a reply to one of its comments.
const ADD_DISCUSSION_COMMENT: &str =
    "mutation($discussionId: ID!, $body: String!, $replyToId: ID) {
  addDiscussionComment(input: {discussionId: $discussionId, body: $body, replyToId: $replyToId}) {
    comment { id url }
  }
}";

fn default_backfill_limit() -> u64 {
    DEFAULT_BACKFILL_LIMIT
}

fn default_base_url() -> String {
    API.to_owned()
}

/// A source's settings. `token` is a secret: stored apart, never returned, bound to
/// `base_url`.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GithubConfig {
    /// The REST API (`https://api.github.com`, or `https://HOST/api/v3`).
    #[serde(default = "default_base_url")]
    pub base_url: String,
    /// A fine-grained personal access token (Issues and Metadata: read; Issues: write to
    /// reply), or a classic one with `repo` / `public_repo`.
    pub token: String,
    /// `owner/name` of each repository listened to.
    pub repositories: Vec<String>,
    /// Items per stream a first sync takes (0: only what comes after it).
    #[serde(default = "default_backfill_limit")]
    pub backfill_limit: u64,
    /// The secret of the repositories' webhooks (16 characters or more), a secret like
    /// `token`. Without it the source takes no webhook deliveries (its address is 404).
    #[serde(default)]
    pub webhook_secret: Option<String>,
}

impl std::fmt::Debug for GithubConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GithubConfig")
            .field("base_url", &self.base_url)
            .field("token", &"***")
            .field("repositories", &self.repositories)
            .field("backfill_limit", &self.backfill_limit)
            .field(
                "webhook_secret",
                &self.webhook_secret.as_ref().map(|_| "***"),
            )
            .finish()
    }
}

impl GithubConfig {
    /// Reads and checks a source's settings (the token merged in); the error names the
    /// field.
    pub fn parse(config: &Value) -> Result<GithubConfig, (String, String)> {
        let mut config: GithubConfig = crate::read_config(config, "repositories")?;
        crate::check_http_url("base_url", &config.base_url)?;
        config.base_url = normal_base_url(&config.base_url)
            .ok_or_else(|| ("base_url".to_owned(), "base_url is not a URL".to_owned()))?;
        config.token = config.token.trim().to_owned();
        if config.token.is_empty() || config.token.contains(char::is_whitespace) {
            return Err((
                "token".into(),
                "token must be a GitHub personal access token".into(),
            ));
        }
        for repository in &mut config.repositories {
            *repository = repository.trim().trim_matches('/').to_owned();
            if !is_repository(repository) {
                return Err((
                    "repositories".into(),
                    format!("`{repository}` is not a repository as `owner/name`"),
                ));
            }
        }
        crate::drop_repeats(&mut config.repositories);
        if config.repositories.is_empty() {
            return Err((
                "repositories".into(),
                "name at least one repository as `owner/name`".into(),
            ));
        }
        if config.repositories.len() > MAX_REPOSITORIES {
            return Err((
                "repositories".into(),
                format!(
                    "at most {MAX_REPOSITORIES} repositories (each is three listings on every sync)"
                ),
            ));
        }
        if config.backfill_limit > MAX_BACKFILL_LIMIT {
            return Err((
                "backfill_limit".into(),
                format!("backfill_limit is at most {MAX_BACKFILL_LIMIT}"),
            ));
        }
        if let Some(secret) = &config.webhook_secret {
            crate::webhook::Secret::parse(secret)
                .map_err(|message| ("webhook_secret".to_owned(), message))?;
        }
        Ok(config)
    }
}

/// The hidden mark at the end of a reply's body (GitHub's Markdown shows no HTML comment):
/// the reply's own, from its idempotency key, so a lost answer's read-back finds this
/// reply's comment and never another with the same words.
fn marker(idempotency_key: &str) -> String {
    let digest = Sha256::digest(idempotency_key.as_bytes());
    format!("<!-- rapport:{} -->", hex::encode(&digest[..8]))
}

/// `body` without a reply's trailing [`marker`].
fn unmarked(body: &str) -> &str {
    let trimmed = body.trim_end();
    if let Some(start) = trimmed.rfind("<!-- rapport:") {
        let mark = &trimmed[start..];
        let hex = mark
            .strip_prefix("<!-- rapport:")
            .and_then(|rest| rest.strip_suffix(" -->"));
        if hex.is_some_and(|hex| hex.len() == 16 && hex.bytes().all(|c| c.is_ascii_hexdigit())) {
            return trimmed[..start].trim_end();
        }
    }
    body
}

/// `base_url` as the `Link` headers spell it: scheme and host in lower case, no default
/// port, no trailing slash, no query (`https://API.github.com:443/` is
/// `https://api.github.com`).
fn normal_base_url(base_url: &str) -> Option<String> {
    let mut url = reqwest::Url::parse(base_url.trim()).ok()?;
    url.host_str()?;
    url.set_query(None);
    url.set_fragment(None);
    Some(url.as_str().trim_end_matches('/').to_owned())
}

/// Whether `link` points into the API at `base_url` (the same scheme, host and port, a path
/// under its path): only those are followed, so a `Link` never takes the token elsewhere.
fn within(base_url: &str, link: &str) -> bool {
    let (Ok(base), Ok(link)) = (reqwest::Url::parse(base_url), reqwest::Url::parse(link)) else {
        return false;
    };
    let prefix = format!("{}/", base.path().trim_end_matches('/'));
    base.scheme() == link.scheme()
        && base.host_str() == link.host_str()
        && base.port_or_known_default() == link.port_or_known_default()
        && link.username().is_empty()
        && link.password().is_none()
        && link.path().starts_with(&prefix)
}

/// Whether `name` is `owner/name` as GitHub allows them: an owner of 1 to 39 ASCII letters,
/// digits and inner `-`; a repository name of 1 to 100 letters, digits, `.`, `-` and `_`,
/// neither `.` nor `..`.
fn is_repository(name: &str) -> bool {
    let Some((owner, repo)) = name.split_once('/') else {
        return false;
    };
    let owner_ok = (1..=39).contains(&owner.len())
        && owner
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'-')
        && !owner.starts_with('-')
        && !owner.ends_with('-');
    let repo_ok = (1..=100).contains(&repo.len())
        && repo
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'-' | b'_'))
        && repo != "."
        && repo != "..";
    owner_ok && repo_ok
}

/// An issue as `owner/repo` (lower case) and its number, read from its external id
/// (`owner/repo#number`).
fn issue_of(key: &str) -> Option<(String, u64)> {
    let (repository, number) = key.rsplit_once('#')?;
    let number: u64 = number.parse().ok().filter(|n| *n > 0)?;
    is_repository(repository).then(|| (repository.to_ascii_lowercase(), number))
}

/// The issue an API URL of it names (`…/repos/{owner}/{repo}/issues/{number}`).
fn issue_of_url(url: &str) -> Option<(String, u64)> {
    let path = reqwest::Url::parse(url).ok()?.path().to_owned();
    let rest = path.split("/repos/").nth(1)?;
    let mut parts = rest.split('/');
    let (owner, repo, issues, number) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    if issues != "issues" || parts.next().is_some() {
        return None;
    }
    issue_of(&format!("{owner}/{repo}#{number}"))
}

/// The newest second of a stream handed over, and the items of that second.
/// A first sync's walk back from the newest, under way.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
struct Walk {
    /// The `next` link of the last page read (`None`: start at the newest).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    next: Option<String>,
    /// The newest second seen since the walk began: the mark when it ends.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    top: Option<Mark>,
    /// How many items the walk may still take.
    #[serde(default)]
    left: u64,
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
    /// The page size since a page was over the body cap (one of [`PAGE_SIZES`]), until the
    /// listing is caught up; none: [`PAGE`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    per_page: Option<usize>,
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

    /// Takes one page of the walk back (`items` newest first, `next` its `next` link or
    /// GraphQL cursor) into `taken`: those the mark does not cover, within the walk's
    /// allowance. Ends the walk (its newest second becomes the mark) at the mark, the
    /// allowance or the listing's end. Returns whether the walk goes on.
    fn back(
        &mut self,
        mut walk: Walk,
        items: Vec<Value>,
        next: Option<String>,
        taken: &mut Vec<Value>,
    ) -> bool {
        let empty = items.is_empty();
        let mut reached = false;
        for item in items {
            let Some((at, id)) = key(&item) else {
                continue;
            };
            walk.top.get_or_insert_with(Mark::default).add(at, &id);
            if self.mark.as_ref().is_some_and(|mark| mark.covers(at, &id)) {
                reached = true;
                continue;
            }
            if walk.left == 0 {
                continue;
            }
            taken.push(item);
            walk.left -= 1;
        }
        let next = match next {
            Some(next) if next.len() > MAX_LINK_BYTES => {
                self.warning = Some(format!(
                    "GitHub's next link is longer than {MAX_LINK_BYTES} bytes: the backfill ended there"
                ));
                None
            }
            next => next,
        };
        let stuck = next.is_some() && next == walk.next;
        walk.next = next;
        if empty || reached || stuck || walk.left == 0 || walk.next.is_none() {
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

    /// Takes one page read forward from the mark (`items` oldest first) into `taken`: those
    /// the mark does not cover, moving the mark over each. Returns whether the mark moved
    /// to a later second.
    fn forward(&mut self, items: Vec<Value>, taken: &mut Vec<Value>) -> bool {
        let mark = self.mark.get_or_insert_with(Mark::default);
        let from = mark.at;
        for item in items {
            let Some((at, id)) = key(&item) else {
                continue;
            };
            if mark.covers(at, &id) {
                continue;
            }
            mark.add(at, &id);
            taken.push(item);
        }
        mark.at > from
    }
}

/// The next smaller of [`PAGE_SIZES`] than `size`.
#[cfg(test)]
fn smaller_page(size: usize) -> Option<usize> {
    PAGE_SIZES.iter().copied().find(|smaller| *smaller < size)
}

/// The next larger of [`PAGE_SIZES`] than `size`.
fn larger_page(size: usize) -> Option<usize> {
    PAGE_SIZES
        .iter()
        .rev()
        .copied()
        .find(|larger| *larger > size)
}

/// A listing URL's `per_page` (GitHub's default 30 when it has none).
fn per_page_of(url: &str) -> usize {
    query_number(url, "per_page").unwrap_or(30).max(1)
}

fn query_number(url: &str, key: &str) -> Option<usize> {
    let url = reqwest::Url::parse(url).ok()?;
    let value = url.query_pairs().find(|(name, _)| name == key)?.1;
    value.parse().ok()
}

/// The listing page at `url` asked in pages of `per_page` from the same item on (`page` k
/// of p items begins at item (k - 1)·p), or with `skip` the page after that. `None` when the
/// place is no whole number of such pages.
fn resized(url: &str, per_page: usize, skip: bool) -> Option<String> {
    let mut parsed = reqwest::Url::parse(url).ok()?;
    let offset = query_number(url, "page")
        .unwrap_or(1)
        .max(1)
        .checked_sub(1)?
        .checked_mul(per_page_of(url))?;
    if offset % per_page != 0 {
        return None;
    }
    let page = offset / per_page + 1 + usize::from(skip);
    let kept: Vec<(String, String)> = parsed
        .query_pairs()
        .filter(|(name, _)| name != "per_page" && name != "page")
        .map(|(name, value)| (name.into_owned(), value.into_owned()))
        .collect();
    parsed
        .query_pairs_mut()
        .clear()
        .extend_pairs(kept)
        .append_pair("per_page", &per_page.to_string())
        .append_pair("page", &page.to_string());
    Some(parsed.to_string())
}

/// Whether `err` is an answer over the body cap.
fn is_too_large(err: &ConnectorError) -> bool {
    matches!(err, ConnectorError::Payload(message) if message.contains(OVER_CAP))
}

/// The items `taken` hands over: a discussion with its comments and replies.
fn weight(listen: Listen<'_>, taken: &[Value]) -> usize {
    match listen {
        Listen::Discussions(_) => taken.iter().map(discussion_weight).sum(),
        _ => taken.len(),
    }
}

fn discussion_weight(discussion: &Value) -> usize {
    let comments = discussion
        .pointer("/comments/nodes")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    1 + comments.len()
        + comments
            .iter()
            .filter_map(|comment| comment.pointer("/replies/nodes").and_then(Value::as_array))
            .map(Vec::len)
            .sum::<usize>()
}

/// An issue's or comment's `updated_at` (epoch seconds) and numeric `id`, or a
/// discussion's `updatedAt` and node `id`.
fn key(item: &Value) -> Option<(i64, String)> {
    let at = time(item, "updated_at")
        .or_else(|| time(item, "updatedAt"))?
        .timestamp();
    let id = match item.get("id")? {
        Value::Number(id) => id.as_u64()?.to_string(),
        Value::String(id) if is_node_id(id) => id.clone(),
        _ => return None,
    };
    Some((at, id))
}

/// Whether `id` looks like a GraphQL node id (`D_kwDO…`, `DC_kwDO…`), short enough to keep.
fn is_node_id(id: &str) -> bool {
    (1..=100).contains(&id.len())
        && id
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'-' | b'=' | b'+' | b'/'))
}

fn time(item: &Value, field: &str) -> Option<DateTime<Utc>> {
    let text = item.get(field)?.as_str()?;
    DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|at| at.with_timezone(&Utc))
}

/// Where a GitHub source stands: one [`Stream`] per listing, by [`Listen::key`].
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
struct GithubCursor {
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    streams: BTreeMap<String, Stream>,
}

impl GithubCursor {
    /// Reads a stored cursor; one this version cannot read starts over (a first sync).
    fn decode(cursor: Option<&Cursor>) -> GithubCursor {
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
    Issues(&'a str),
    Comments(&'a str),
    Discussions(&'a str),
}

impl Listen<'_> {
    fn repository(self) -> String {
        match self {
            Listen::Issues(repo) | Listen::Comments(repo) | Listen::Discussions(repo) => {
                repo.to_ascii_lowercase()
            }
        }
    }

    /// The stream's name in the stored cursor.
    fn key(self) -> String {
        match self {
            Listen::Issues(_) => format!("{}/issues", self.repository()),
            Listen::Comments(_) => format!("{}/comments", self.repository()),
            Listen::Discussions(_) => format!("{}/discussions", self.repository()),
        }
    }

    fn path(self) -> String {
        match self {
            Listen::Issues(repo) => format!("/repos/{repo}/issues"),
            Listen::Comments(repo) => format!("/repos/{repo}/issues/comments"),
            Listen::Discussions(repo) => format!("/graphql (discussions of {repo})"),
        }
    }
}

/// The account the token belongs to.
#[derive(Clone, Debug)]
struct Me {
    id: u64,
    login: String,
}

pub struct GithubConnector {
    client: reqwest::Client,
    config: GithubConfig,
    /// The webhooks' secret, when the source has one.
    webhook_secret: Option<crate::webhook::Secret>,
    /// The server user ids belong to in identities: `None` on github.com, else
    /// `host[:port][/path]` of `base_url` (see [`realm`]).
    realm: Option<String>,
    /// The token's account as last asked, and when: webhook deliveries (the server keeps
    /// a source's connector between them) ask GitHub again only after [`ME_TTL`].
    me: crate::known::Known<Me>,
    /// Authors' profile links as last read (`GET /users/{login}` and its social
    /// accounts), by login, and when: read again after [`PROFILE_TTL`].
    profiles:
        std::sync::Mutex<std::collections::HashMap<String, (std::time::Instant, Vec<ProfileLink>)>>,
}

/// A GitHub login (letters, digits, hyphens; underscores on some Enterprise servers): what
/// may go into a `/users/{login}` path as it is.
fn is_login(login: &str) -> bool {
    (1..=39).contains(&login.len())
        && login
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// Authors a pull reads the profile of, at most (two requests each) beyond those this
/// connector already knows: a pull's new authors are few, and GitHub's budget is shared
/// with the listing itself.
const PROFILES_PER_PULL: usize = 5;
/// How long a pull spends on profiles at most: a slow profile endpoint must not take the
/// pull past its own budget (the pull would fail and, its cursor unmoved, fail again).
const PROFILES_TIME: std::time::Duration = std::time::Duration::from_secs(8);
/// How long an author's profile links are taken as known.
const PROFILE_TTL: std::time::Duration = std::time::Duration::from_secs(24 * 3_600);
/// Profiles kept in memory at most; all are forgotten when it is full (as the webhook
/// route's connectors are).
const PROFILES_KEPT: usize = 10_000;

/// How long the token's account, once asked, is taken as known: long enough that a
/// burst of deliveries (or replays of one) costs one `GET /user`, short enough that a
/// renamed login is soon seen.
const ME_TTL: std::time::Duration = std::time::Duration::from_secs(300);

/// Whom items are mapped for: the token's account (outbound items, mentions) and the
/// realm of user ids in identities.
#[derive(Clone, Copy)]
struct Who<'a> {
    me: &'a Me,
    realm: Option<&'a str>,
}

impl Who<'_> {
    /// The identity of GitHub user `id`: the number on github.com (as always stored), else
    /// `{realm}#{id}` (`github.example.com#42`).
    fn platform_id(self, id: u64) -> String {
        match self.realm {
            Some(realm) => format!("{realm}#{id}"),
            None => id.to_string(),
        }
    }
}

/// The realm of `base_url`'s user ids: `None` for github.com (`https://api.github.com`),
/// else its host, its port when not the scheme's default, and its path without the API's
/// `/api/v3` (`github.example.com`, `git.example.org:8443/gh`). User ids are per server,
/// and identities are unique per workspace and channel, not per source: user 42 of two
/// GitHub Enterprise Servers are two people. The scheme is left out, as Discourse does.
fn realm(base_url: &str) -> Option<String> {
    let url = reqwest::Url::parse(base_url).ok()?;
    let host = url.host_str()?;
    if host.eq_ignore_ascii_case("api.github.com") {
        return None;
    }
    let port = url
        .port()
        .map(|port| format!(":{port}"))
        .unwrap_or_default();
    let path = url.path().trim_end_matches('/');
    let path = path.strip_suffix("/api/v3").unwrap_or(path);
    Some(format!("{host}{port}{path}"))
}

/// Whether `author` (a REST `user`, or a GraphQL-shaped `author`) is a person whose item
/// is stored: an object, not a bot, with a numeric id and a login.
fn by_person(author: Option<&Value>, kind: &str, id: &str) -> bool {
    author.is_some_and(|author| {
        author.get(kind).and_then(Value::as_str) != Some("Bot")
            && author.get(id).and_then(Value::as_u64).is_some()
            && author.get("login").and_then(Value::as_str).is_some()
    })
}

/// The parent of a discussion comment (`replyTo`), by the comment's node id.
const REPLY_TO: &str =
    "query($id: ID!) { node(id: $id) { ... on DiscussionComment { replyTo { id } } } }";

/// What a webhook event is, when the source listens to it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Event {
    IssueOpened,
    IssueComment,
    Discussion,
    DiscussionComment,
}

impl GithubConnector {
    pub fn new(client: reqwest::Client, config: GithubConfig) -> GithubConnector {
        let webhook_secret = config
            .webhook_secret
            .as_deref()
            .and_then(|secret| crate::webhook::Secret::parse(secret).ok());
        GithubConnector {
            realm: realm(&config.base_url),
            client,
            config,
            webhook_secret,
            me: crate::known::Known::new(ME_TTL),
            profiles: std::sync::Mutex::new(std::collections::HashMap::new()),
        }
    }

    /// A delivery's `X-Hub-Signature-256` over the raw body, checked against the
    /// `webhook_secret` (constant-time); nothing is parsed.
    fn check_signature(
        &self,
        request: &crate::WebhookRequest<'_>,
        body: &[u8],
    ) -> Result<(), crate::WebhookError> {
        let secret = self
            .webhook_secret
            .as_ref()
            .ok_or(crate::WebhookError::Unsupported)?;
        let signature = crate::webhook::SignatureHeaders {
            hub_signature_256: request.header("x-hub-signature-256"),
            ..crate::webhook::SignatureHeaders::default()
        };
        secret
            .verify(&signature, body, Utc::now())
            .map(drop)
            .map_err(|err| crate::WebhookError::Unauthenticated(err.to_string()))
    }

    /// A webhook delivery (see the module doc): verified, then mapped as a pull maps it.
    async fn hook(
        &self,
        request: &crate::WebhookRequest<'_>,
        body: &[u8],
    ) -> Result<crate::Hooked, crate::WebhookError> {
        use crate::{Hooked, WebhookError};
        self.check_signature(request, body)?;
        let payload_error = |field: &'static str, message: &str| WebhookError::Payload {
            field,
            message: message.to_owned(),
        };
        let name = request.header("x-github-event").unwrap_or_default();
        let payload: Value =
            serde_json::from_slice(body).map_err(|_| payload_error("body", "not valid JSON"))?;
        if !payload.is_object() {
            return Err(payload_error("body", "must be a JSON object"));
        }
        let action = payload
            .get("action")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let event = match (name, action) {
            ("ping", _) => return Ok(Hooked::Ignored("ping: the webhook is set up".into())),
            ("issues", "opened") => Event::IssueOpened,
            ("issue_comment", "created") => Event::IssueComment,
            ("discussion", "created") => Event::Discussion,
            ("discussion_comment", "created") => Event::DiscussionComment,
            _ => {
                let what = if action.is_empty() {
                    format!("`{name}`")
                } else {
                    format!("`{name}` `{action}`")
                };
                return Ok(Hooked::Ignored(format!("{what} is not listened to")));
            }
        };
        let full_name = payload
            .pointer("/repository/full_name")
            .and_then(Value::as_str)
            .ok_or_else(|| payload_error("repository", "the event names no repository"))?;
        // The repository as configured: a pull names its items by it.
        let Some(repository) = self
            .config
            .repositories
            .iter()
            .find(|configured| configured.eq_ignore_ascii_case(full_name))
        else {
            return Ok(Hooked::Ignored(
                "the repository is not one of the source's repositories".into(),
            ));
        };
        let object = |key: &'static str| {
            payload
                .get(key)
                .filter(|value| value.is_object())
                .ok_or_else(|| payload_error(key, "missing from the event"))
        };
        // `X-GitHub-Event` is not signed: a signed body sent again under another event's
        // name must not be read as that event. Each event's body has its own objects.
        let has = |key: &str| payload.get(key).is_some_and(|value| !value.is_null());
        let shaped = match event {
            Event::IssueOpened => {
                object("issue")?;
                !has("comment") && !has("discussion")
            }
            Event::IssueComment => {
                object("comment")?
                    .get("issue_url")
                    .is_some_and(Value::is_string)
                    && !has("discussion")
            }
            Event::Discussion => {
                object("discussion")?;
                !has("comment") && !has("issue")
            }
            Event::DiscussionComment => {
                object("discussion")?;
                object("comment")?.get("issue_url").is_none() && !has("issue")
            }
        };
        if !shaped {
            return Err(payload_error(
                "X-GitHub-Event",
                &format!("the body is not a `{name}` event"),
            ));
        }
        let ignored = || {
            Ok(Hooked::Ignored(
                "the event holds no item (a bot's, or without a user)".into(),
            ))
        };
        let mut not_before = None;
        // The token's account is asked only for an item that is stored: a bot's or a
        // user-less one is answered without any call to GitHub.
        let items: Vec<InboundItem> = match event {
            Event::IssueOpened | Event::IssueComment => {
                let (listen, value) = match event {
                    Event::IssueOpened => (Listen::Issues(repository), object("issue")?),
                    _ => (Listen::Comments(repository), object("comment")?),
                };
                if !by_person(value.get("user"), "type", "id") {
                    return ignored();
                }
                let me = self.me(&mut not_before).await?;
                self.item(listen, value, &me).into_iter().collect()
            }
            Event::Discussion => {
                let discussion = graphql_shape(object("discussion")?);
                let thread = discussion
                    .get("id")
                    .and_then(Value::as_str)
                    .filter(|id| is_node_id(id))
                    .ok_or_else(|| payload_error("discussion", "has no node_id"))?;
                if !by_person(discussion.get("author"), "__typename", "databaseId") {
                    return ignored();
                }
                let me = self.me(&mut not_before).await?;
                let subject = discussion
                    .get("title")
                    .and_then(Value::as_str)
                    .map(str::to_owned);
                node_item(
                    &discussion,
                    discussion.clone(),
                    "post",
                    subject,
                    thread,
                    None,
                    &self.who(&me),
                )
                .into_iter()
                .collect()
            }
            Event::DiscussionComment => {
                let thread = object("discussion")?
                    .get("node_id")
                    .and_then(Value::as_str)
                    .filter(|id| is_node_id(id))
                    .ok_or_else(|| payload_error("discussion", "has no node_id"))?
                    .to_owned();
                let raw = object("comment")?;
                let comment = graphql_shape(raw);
                // Its node id names it to GraphQL (a reply's parent) and is its external
                // id: without one there is nothing to ask nor to store.
                let id = comment
                    .get("id")
                    .and_then(Value::as_str)
                    .filter(|id| is_node_id(id))
                    .ok_or_else(|| payload_error("comment", "has no node_id"))?
                    .to_owned();
                if !by_person(comment.get("author"), "__typename", "databaseId") {
                    return ignored();
                }
                let me = self.me(&mut not_before).await?;
                // A reply names its parent by number; the pull answers it to the parent's
                // node id, so that is asked.
                let parent = if raw.get("parent_id").is_some_and(|parent| !parent.is_null()) {
                    let data = self
                        .graphql(
                            REPLY_TO,
                            serde_json::json!({ "id": id }),
                            "/graphql (a discussion comment's parent)",
                            false,
                            &mut not_before,
                        )
                        .await?;
                    let parent = data
                        .pointer("/node/replyTo/id")
                        .and_then(Value::as_str)
                        .filter(|id| is_node_id(id))
                        .map(str::to_owned);
                    Some(parent.ok_or_else(|| {
                        crate::ConnectorError::Payload(format!(
                            "{} did not say which comment a reply answers",
                            self.host()
                        ))
                    })?)
                } else {
                    None
                };
                let answers = parent.as_deref().unwrap_or(&thread);
                node_item(
                    &comment,
                    comment.clone(),
                    "comment",
                    None,
                    &thread,
                    Some(answers),
                    &self.who(&me),
                )
                .into_iter()
                .collect()
            }
        };
        if items.is_empty() {
            return ignored();
        }
        Ok(Hooked::Items(items))
    }

    fn host(&self) -> String {
        reqwest::Url::parse(&self.config.base_url)
            .ok()
            .and_then(|url| url.host_str().map(str::to_owned))
            .unwrap_or_default()
    }

    fn request(&self, method: reqwest::Method, url: &str) -> reqwest::RequestBuilder {
        self.client
            .request(method, url)
            .bearer_auth(&self.config.token)
            .header("accept", "application/vnd.github+json")
            .header("x-github-api-version", API_VERSION)
            .header("user-agent", concat!("rapport/", env!("CARGO_PKG_VERSION")))
    }

    /// Sends `request`; rate-limit headers of every answer move `not_before`. Returns the
    /// body and the answer's headers, or the error `what` (the path, for messages) met.
    async fn send(
        &self,
        request: reqwest::RequestBuilder,
        what: &str,
        writing: bool,
        not_before: &mut Option<DateTime<Utc>>,
    ) -> Result<(Value, HeaderMap), ConnectorError> {
        let now = Utc::now();
        let response = request.send().await.map_err(http::transport)?;
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let until = rate_limited_until(&headers, now);
        if let Some(at) = until {
            *not_before = Some(not_before.map_or(at, |old| old.max(at)));
        }
        let host = self.host();
        let body = http::read_capped(response, MAX_BODY_BYTES)
            .await
            .map_err(|err| match err {
                ConnectorError::Payload(_) => ConnectorError::Payload(format!(
                    "{host} answered {what} with {OVER_CAP} of {} MiB",
                    MAX_BODY_BYTES / (1024 * 1024)
                )),
                other => other,
            })?;
        if (200..300).contains(&status) {
            let value = serde_json::from_slice(&body).map_err(|err| {
                ConnectorError::Payload(format!("{host} answered {what} with invalid JSON: {err}"))
            })?;
            return Ok((value, headers));
        }
        Err(failure(status, &headers, &body, now, &host, what, writing))
    }

    /// Whom this connector's items are mapped for, `me` being the token's account.
    fn who<'a>(&'a self, me: &'a Me) -> Who<'a> {
        Who {
            me,
            realm: self.realm.as_deref(),
        }
    }

    /// The account the token belongs to (`GET /user`), asked again after [`ME_TTL`].
    async fn me(&self, not_before: &mut Option<DateTime<Utc>>) -> Result<Me, ConnectorError> {
        self.me.get_or_ask(self.ask_me(not_before)).await
    }

    /// Gives the items' authors the links their GitHub profile shows: the website
    /// (`blog`), the X account, the social accounts GitHub lists (Bluesky, Mastodon,
    /// LinkedIn, …), the public e-mail address and the links in the bio. Profiles this
    /// connector read in the last [`PROFILE_TTL`] come from memory (a sync run builds its
    /// own connector, so within a run); at most [`PROFILES_PER_PULL`] are read per pull,
    /// within [`PROFILES_TIME`]. A profile that cannot be read (rate limit, error, time)
    /// leaves the author without links this time: the pull goes on, and a later item of
    /// the author reads it again.
    async fn add_profile_links(&self, items: &mut [InboundItem]) {
        let deadline = std::time::Instant::now() + PROFILES_TIME;
        let mut logins: Vec<String> = Vec::new();
        for item in items.iter().filter(|item| !item.outbound) {
            if let Some(login) = item.author.handle.as_deref().filter(|l| is_login(l)) {
                if !logins.iter().any(|known| known == login) {
                    logins.push(login.to_owned());
                }
            }
        }
        let mut read = 0;
        let mut found: std::collections::HashMap<String, Vec<ProfileLink>> =
            std::collections::HashMap::new();
        for login in logins {
            let known = self.profiles.lock().ok().and_then(|profiles| {
                profiles
                    .get(&login)
                    .filter(|(at, _)| at.elapsed() < PROFILE_TTL)
                    .map(|(_, links)| links.clone())
            });
            let links = match known {
                Some(links) => links,
                None if read < PROFILES_PER_PULL => {
                    read += 1;
                    let left = deadline.saturating_duration_since(std::time::Instant::now());
                    let Ok(answer) = tokio::time::timeout(left, self.read_profile(&login)).await
                    else {
                        break;
                    };
                    match answer {
                        Ok(links) => {
                            if let Ok(mut profiles) = self.profiles.lock() {
                                if profiles.len() >= PROFILES_KEPT {
                                    profiles.clear();
                                }
                                profiles.insert(
                                    login.clone(),
                                    (std::time::Instant::now(), links.clone()),
                                );
                            }
                            links
                        }
                        // A platform that limits or fails to connect fails the next too.
                        Err(ConnectorError::RateLimited { .. } | ConnectorError::Transport(_)) => {
                            break
                        }
                        Err(_) => continue,
                    }
                }
                None => continue,
            };
            found.insert(login, links);
        }
        for item in items.iter_mut().filter(|item| !item.outbound) {
            if let Some(links) = item
                .author
                .handle
                .as_ref()
                .and_then(|login| found.get(login))
            {
                item.author.links = links.clone();
            }
        }
    }

    /// One author's profile links, read from GitHub.
    async fn read_profile(&self, login: &str) -> Result<Vec<ProfileLink>, ConnectorError> {
        // A profile's rate limit must not hold the pull back: its own wait is dropped.
        let mut ignored = None;
        let url = format!("{}/users/{login}", self.config.base_url);
        let (user, _) = self
            .send(
                self.request(reqwest::Method::GET, &url),
                "/users/{login}",
                false,
                &mut ignored,
            )
            .await?;
        let text = |key: &str| {
            user.get(key)
                .and_then(Value::as_str)
                .map(str::trim)
                .filter(|value| !value.is_empty())
                .map(str::to_owned)
        };
        let mut links: Vec<ProfileLink> = Vec::new();
        let mut add = |url: String, label: &str| {
            if links.len() < crate::MAX_PROFILE_LINKS && !links.iter().any(|link| link.url == url) {
                links.push(ProfileLink {
                    url,
                    label: Some(label.to_owned()),
                    verified: false,
                });
            }
        };
        if let Some(blog) = text("blog") {
            add(blog, "Website");
        }
        if let Some(name) = text("twitter_username") {
            add(format!("https://x.com/{name}"), "X");
        }
        if let Some(email) = text("email") {
            add(email, "E-mail");
        }
        let url = format!("{url}/social_accounts");
        if let Ok((accounts, _)) = self
            .send(
                self.request(reqwest::Method::GET, &url),
                "/users/{login}/social_accounts",
                false,
                &mut ignored,
            )
            .await
        {
            for account in accounts.as_array().into_iter().flatten() {
                let provider = account
                    .get("provider")
                    .and_then(Value::as_str)
                    .unwrap_or("social");
                if let Some(url) = account.get("url").and_then(Value::as_str) {
                    add(url.trim().to_owned(), provider);
                }
            }
        }
        if let Some(bio) = text("bio") {
            for url in crate::text::links_in_text(&bio) {
                add(url, "bio");
            }
        }
        Ok(links)
    }

    /// [`Self::me`], asked of GitHub.
    async fn ask_me(&self, not_before: &mut Option<DateTime<Utc>>) -> Result<Me, ConnectorError> {
        let url = format!("{}/user", self.config.base_url);
        let (user, _) = self
            .send(
                self.request(reqwest::Method::GET, &url),
                "/user",
                false,
                not_before,
            )
            .await?;
        let id = user.get("id").and_then(Value::as_u64);
        let login = user.get("login").and_then(Value::as_str);
        match (id, login) {
            (Some(id), Some(login)) => Ok(Me {
                id,
                login: login.to_owned(),
            }),
            _ => Err(ConnectorError::Payload(format!(
                "{} answered /user without the account's id and login",
                self.host()
            ))),
        }
    }

    /// The first page of a listing: `since` the mark (oldest first) or, without one, from
    /// the newest back, `per_page` items.
    fn first_url(
        &self,
        listen: Listen<'_>,
        since: Option<i64>,
        per_page: usize,
    ) -> Result<String, ConnectorError> {
        let mut query = vec![
            ("sort", "updated".to_owned()),
            ("per_page", per_page.to_string()),
        ];
        if let Listen::Issues(_) = listen {
            query.push(("state", "all".to_owned()));
        }
        match since.and_then(|at| Utc.timestamp_opt(at, 0).single()) {
            Some(since) => {
                query.push(("direction", "asc".to_owned()));
                query.push((
                    "since",
                    since.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                ));
            }
            None => query.push(("direction", "desc".to_owned())),
        }
        let mut url = reqwest::Url::parse(&format!("{}{}", self.config.base_url, listen.path()))
            .map_err(|err| ConnectorError::Config(format!("base_url: {err}")))?;
        url.query_pairs_mut().extend_pairs(query);
        Ok(url.to_string())
    }

    /// One page of a listing at `url` (a first page, or an earlier page's `next` link
    /// pointing into the API): its items and its `next` link.
    async fn page(
        &self,
        listen: Listen<'_>,
        url: &str,
        not_before: &mut Option<DateTime<Utc>>,
    ) -> Result<(Vec<Value>, Option<String>), ConnectorError> {
        let path = listen.path();
        if !within(&self.config.base_url, url) {
            return Err(ConnectorError::Payload(format!(
                "{} sent a next link outside its API for {path}",
                self.host()
            )));
        }
        let (body, headers) = self
            .send(
                self.request(reqwest::Method::GET, url),
                &path,
                false,
                not_before,
            )
            .await?;
        let Value::Array(items) = body else {
            return Err(ConnectorError::Payload(format!(
                "{} answered {path} without a list",
                self.host()
            )));
        };
        Ok((items, http::link(&headers, "next")))
    }

    /// `link` when it may be followed; else `None`, with the stream's warning saying why
    /// (a link kept would be refused on every later pull).
    fn followed(
        &self,
        listen: Listen<'_>,
        stream: &mut Stream,
        link: Option<String>,
    ) -> Option<String> {
        let link = link?;
        if within(&self.config.base_url, &link) {
            return Some(link);
        }
        let shown: String = link.chars().take(200).collect();
        stream.warning = Some(format!(
            "{} sent a next link outside {} for {} ({shown}): the listing ended there",
            self.host(),
            self.config.base_url,
            listen.path()
        ));
        None
    }

    /// What to ask after the page at `url` was over the body cap: the same place in smaller
    /// pages, or at one item a page the page after it (that item is skipped, with the
    /// stream's warning saying so). `None` when neither can be asked.
    fn after_too_large(
        &self,
        listen: Listen<'_>,
        stream: &mut Stream,
        url: &str,
    ) -> Option<String> {
        let size = per_page_of(url);
        // The largest smaller size whose pages meet this page's place (1 always does).
        let smaller = PAGE_SIZES
            .iter()
            .filter(|smaller| **smaller < size)
            .find_map(|smaller| Some((*smaller, resized(url, *smaller, false)?)));
        if let Some((smaller, resized)) = smaller {
            stream.per_page = Some(smaller);
            return Some(resized);
        }
        let skip = resized(url, 1, true)?;
        stream.warning = Some(format!(
            "an item of {} alone is larger than {} MiB: it was skipped",
            listen.path(),
            MAX_BODY_BYTES / (1024 * 1024)
        ));
        Some(skip)
    }

    /// After a page that was not too large, the next one a size larger (while the stream
    /// is at a smaller size): `next` resized when its place is a whole number of larger
    /// pages, else as it is.
    fn grown(stream: &mut Stream, next: String) -> String {
        let Some(larger) = stream.per_page.and_then(larger_page) else {
            return next;
        };
        if query_number(&next, "page").is_none() {
            return next;
        }
        match resized(&next, larger, false) {
            Some(resized) => {
                stream.per_page = Some(larger).filter(|larger| *larger < PAGE);
                resized
            }
            None => next,
        }
    }

    /// Reads `stream` while the pull's budget lasts (`before`: the items earlier streams of
    /// this pull took; `taken` this stream's, a discussion counted with its comments and
    /// replies); returns whether it goes on in this pull's next batch. On an error,
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
        let spent = |taken: &Vec<Value>, not_before: &Option<DateTime<Utc>>| {
            before + weight(listen, taken) + PAGE > PULL_ITEMS
                || started.elapsed() >= PULL_TIME
                || not_before.is_some_and(|at| at > Utc::now())
        };
        if let Listen::Discussions(repository) = listen {
            // No `since` in the GraphQL API: every sync walks back from the newest to the
            // mark (a first one within its allowance).
            loop {
                let walk = stream.walk.clone().unwrap_or(Walk {
                    left: u64::MAX,
                    ..Walk::default()
                });
                let per_page = if walk.left == 0 {
                    1
                } else {
                    stream
                        .per_page
                        .unwrap_or(DISCUSSIONS_PAGE)
                        .min(DISCUSSIONS_PAGE)
                };
                let (discussions, next) = match self
                    .discussions(repository, walk.next.as_deref(), per_page, not_before)
                    .await
                {
                    // Over the body cap: fewer discussions a page (the cursor keeps the
                    // place); one alone over it stays this stream's warning.
                    Err(err) if is_too_large(&err) && per_page > 1 => {
                        stream.per_page = Some(per_page / 2);
                        if spent(taken, not_before) {
                            return Ok(true);
                        }
                        continue;
                    }
                    answer => answer?,
                };
                let had = taken.len();
                if !stream.back(walk, discussions, next, taken) {
                    stream.per_page = None;
                    return Ok(false);
                }
                if taken.len() == had || spent(taken, not_before) {
                    return Ok(true);
                }
            }
        }
        // A first sync: back from the newest.
        while let Some(mut walk) = stream.walk.clone() {
            let per_page = if walk.left == 0 {
                1
            } else {
                stream.per_page.unwrap_or(PAGE)
            };
            let url = match walk.next.clone() {
                Some(next) => next,
                None => self.first_url(listen, None, per_page)?,
            };
            let (items, next) = match self.page(listen, &url, not_before).await {
                Err(err) if is_too_large(&err) => {
                    match self.after_too_large(listen, stream, &url) {
                        Some(smaller) => {
                            walk.next = Some(smaller);
                            stream.walk = Some(walk);
                        }
                        // Nowhere to go: the backfill ends there.
                        None => {
                            stream.back(walk, Vec::new(), None, taken);
                            stream.warning = Some(format!("{} failed: {err}", listen.path()));
                        }
                    }
                    if spent(taken, not_before) {
                        return Ok(true);
                    }
                    continue;
                }
                // A link kept from an earlier version that is refused now: the backfill
                // ends there rather than failing on every pull.
                Err(err @ ConnectorError::Payload(_)) if !within(&self.config.base_url, &url) => {
                    stream.back(walk, Vec::new(), None, taken);
                    stream.warning = Some(format!("{} failed: {err}", listen.path()));
                    continue;
                }
                answer => answer?,
            };
            let next = self
                .followed(listen, stream, next)
                .map(|next| Self::grown(stream, next));
            let had = taken.len();
            // Ended: what came since its first page is the next pull's, at full pages.
            if !stream.back(walk, items, next, taken) {
                stream.per_page = None;
                return Ok(false);
            }
            // A page of which nothing is taken leaves the rest to the next scheduled pull.
            if taken.len() == had || spent(taken, not_before) {
                return Ok(true);
            }
        }
        // Then forward from the mark.
        let mut next: Option<String> = None;
        loop {
            let since = stream.mark.as_ref().map(|mark| mark.at);
            let constructed = next.is_none();
            let url = match next.take() {
                Some(next) => next,
                None => self.first_url(listen, since, stream.per_page.unwrap_or(PAGE))?,
            };
            let (items, link) = match self.page(listen, &url, not_before).await {
                Err(err) if is_too_large(&err) => {
                    next = self.after_too_large(listen, stream, &url);
                    if next.is_none() {
                        return Err(err);
                    }
                    if spent(taken, not_before) {
                        return Ok(true);
                    }
                    continue;
                }
                answer => answer?,
            };
            // The listing's last page: caught up, so later pages are full size again; else
            // the next page from a moved mark a size larger.
            if link.is_none() {
                stream.per_page = None;
            } else if constructed {
                stream.per_page = stream
                    .per_page
                    .and_then(larger_page)
                    .filter(|larger| *larger < PAGE);
            }
            let full = items.len() >= per_page_of(&url);
            let moved = stream.forward(items, taken);
            next = match (full || link.is_some(), moved) {
                (false, _) => return Ok(false),
                // From the moved mark: pages numbered from the old one may have shifted.
                (true, true) => None,
                // A whole page within the mark's second: only its next link goes further.
                (true, false) => match self.followed(listen, stream, link) {
                    Some(link) if link.len() <= MAX_LINK_BYTES => Some(link),
                    _ => return Ok(false),
                },
            };
            if spent(taken, not_before) {
                return Ok(true);
            }
        }
    }

    /// A GraphQL request; its `errors` (GitHub answers most of them with 200) become the
    /// errors the REST answers would be: `RATE_LIMITED` a rate limit, `FORBIDDEN` no access
    /// (refused credentials to a write), `NOT_FOUND` and others a payload error.
    async fn graphql(
        &self,
        query: &str,
        variables: Value,
        what: &str,
        writing: bool,
        not_before: &mut Option<DateTime<Utc>>,
    ) -> Result<Value, ConnectorError> {
        let now = Utc::now();
        let url = graphql_url(&self.config.base_url);
        let request = self
            .request(reqwest::Method::POST, &url)
            .json(&serde_json::json!({ "query": query, "variables": variables }));
        let (body, headers) = self.send(request, what, writing, not_before).await?;
        let host = self.host();
        if let Some(error) = body
            .get("errors")
            .and_then(Value::as_array)
            .and_then(|errors| errors.first())
        {
            let kind = error
                .get("type")
                .and_then(Value::as_str)
                .unwrap_or_default();
            let message: String = error
                .get("message")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .chars()
                .take(200)
                .collect();
            return Err(match kind {
                "RATE_LIMITED" => ConnectorError::RateLimited {
                    retry_after_secs: Some(
                        rate_limited_until(&headers, now).map_or(SECONDARY_WAIT_SECS, |at| {
                            (at - now).num_seconds().clamp(1, MAX_WAIT_SECS) as u64
                        }),
                    ),
                },
                "FORBIDDEN" if writing => ConnectorError::Unauthorized(format!(
                    "{host} refused {what} ({message}): replying needs the token's \
                     Discussions permission set to Read and write"
                )),
                "FORBIDDEN" => ConnectorError::Payload(format!(
                    "{host} refused {what} ({message}): the token has no access (a \
                     fine-grained token needs the Discussions permission)"
                )),
                _ => ConnectorError::Payload(format!(
                    "{host} answered {what} with {} ({message})",
                    if kind.is_empty() { "an error" } else { kind }
                )),
            });
        }
        body.get("data")
            .filter(|data| data.is_object())
            .cloned()
            .ok_or_else(|| ConnectorError::Payload(format!("{host} answered {what} without data")))
    }

    /// One page of a repository's discussions (most recently updated first) and the
    /// cursor of the next; none when the repository has discussions off.
    async fn discussions(
        &self,
        repository: &str,
        after: Option<&str>,
        first: usize,
        not_before: &mut Option<DateTime<Utc>>,
    ) -> Result<(Vec<Value>, Option<String>), ConnectorError> {
        let (owner, name) = repository.split_once('/').unwrap_or((repository, ""));
        let what = format!("/graphql (discussions of {repository})");
        let variables = serde_json::json!({
            "owner": owner, "name": name, "first": first, "after": after,
            "comments": DISCUSSION_COMMENTS, "replies": COMMENT_REPLIES,
        });
        let mut data = self
            .graphql(DISCUSSIONS, variables, &what, false, not_before)
            .await?;
        let Some(repo) = data.get_mut("repository").filter(|repo| repo.is_object()) else {
            return Err(ConnectorError::Payload(format!(
                "{} answered {what} without the repository",
                self.host()
            )));
        };
        if repo.get("hasDiscussionsEnabled") == Some(&Value::Bool(false)) {
            return Ok((Vec::new(), None));
        }
        let connection = repo.get_mut("discussions").map(Value::take);
        let connection = connection.unwrap_or_default();
        let next = connection
            .pointer("/pageInfo/hasNextPage")
            .and_then(Value::as_bool)
            .filter(|more| *more)
            .and_then(|_| connection.pointer("/pageInfo/endCursor"))
            .and_then(Value::as_str)
            .map(str::to_owned);
        match connection.get("nodes") {
            Some(Value::Array(nodes)) => Ok((nodes.clone(), next)),
            _ => Err(ConnectorError::Payload(format!(
                "{} answered {what} without discussions",
                self.host()
            ))),
        }
    }

    /// The comment an attempt begun at `started` made on the issue whose comments are at
    /// `url`: the token's account's carrying the reply's `marker`, created no earlier than
    /// [`READ_BACK_WINDOW`] before it. The text alone is not enough: a saved reply sent twice
    /// on one issue has the same words, and the other one's comment is not this reply.
    /// The comments since the window's start are read page by page (at most
    /// [`READ_BACK_PAGES`]). `None` when there is none or they cannot be read.
    async fn posted(&self, url: &str, marker: &str, started: DateTime<Utc>) -> Option<Value> {
        let mut not_before = None;
        let me = self.me(&mut not_before).await.ok()?;
        let since = started - READ_BACK_WINDOW;
        let mut url = reqwest::Url::parse(url).ok()?;
        url.query_pairs_mut()
            .append_pair(
                "since",
                &since.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            )
            .append_pair("per_page", &PAGE.to_string());
        let mut url = url.to_string();
        for _ in 0..READ_BACK_PAGES {
            let (comments, headers) = self
                .send(
                    self.request(reqwest::Method::GET, &url),
                    "the issue's comments",
                    false,
                    &mut not_before,
                )
                .await
                .ok()?;
            let found = comments.as_array()?.iter().rev().find(|comment| {
                let ours = comment.pointer("/user/id").and_then(Value::as_u64) == Some(me.id);
                let marked = comment
                    .get("body")
                    .and_then(Value::as_str)
                    .is_some_and(|body| body.trim_end().ends_with(marker));
                let recent = time(comment, "created_at").is_some_and(|at| at >= since);
                ours && marked && recent
            });
            if let Some(found) = found {
                return Some(found.clone());
            }
            url =
                http::link(&headers, "next").filter(|next| within(&self.config.base_url, next))?;
        }
        None
    }

    /// A comment on `discussion` answering `to`: the discussion itself, one of its
    /// comments (a reply to it), or a reply (GitHub nests one level: a reply to its
    /// comment).
    async fn reply_in_discussion(
        &self,
        discussion: &str,
        to: &ReplyTarget,
        text: &str,
        body: &str,
    ) -> Result<Sent, ConnectorError> {
        let reply_to = if to.external_id == discussion {
            None
        } else {
            let parent = to
                .context
                .pointer("/replyTo/id")
                .and_then(Value::as_str)
                .unwrap_or(&to.external_id);
            Some(parent.to_owned()).filter(|id| id.starts_with("DC_") && is_node_id(id))
        };
        let variables = serde_json::json!({
            "discussionId": discussion, "body": body, "replyToId": reply_to,
        });
        let mut not_before = None;
        let data = self
            .graphql(
                ADD_DISCUSSION_COMMENT,
                variables,
                "/graphql (addDiscussionComment)",
                true,
                &mut not_before,
            )
            .await?;
        let comment = data
            .pointer("/addDiscussionComment/comment")
            .unwrap_or(&Value::Null);
        let id = comment
            .get("id")
            .and_then(Value::as_str)
            .filter(|id| is_node_id(id))
            .ok_or_else(|| {
                ConnectorError::Payload(format!(
                    "{} answered addDiscussionComment without the comment's id",
                    self.host()
                ))
            })?;
        Ok(Sent {
            external_id: id.to_owned(),
            url: comment
                .get("url")
                .and_then(Value::as_str)
                .map(str::to_owned),
            text: text.to_owned(),
        })
    }

    /// An issue (or pull request) or a comment of `repository` as an item; `None` for a
    /// bot's, one without a user, or one lacking what every item has.
    fn item(&self, listen: Listen<'_>, value: &Value, me: &Me) -> Option<InboundItem> {
        let user = value.get("user").filter(|user| user.is_object())?;
        if user.get("type").and_then(Value::as_str) == Some("Bot") {
            return None;
        }
        let user_id = user.get("id")?.as_u64()?;
        let login = user.get("login")?.as_str()?.to_owned();
        let text_of = |key: &str| {
            value
                .get(key)
                .and_then(Value::as_str)
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
        };
        let id = value.get("id")?.as_u64()?;
        let repository = listen.repository();
        let (external_id, issue, subject, body, kind) = match listen {
            Listen::Issues(_) => {
                let number = value.get("number")?.as_u64()?;
                let issue = format!("{repository}#{number}");
                let title = text_of("title");
                let body = text_of("body")
                    .or_else(|| title.clone())
                    .unwrap_or_default();
                (issue.clone(), issue, title, body, "post")
            }
            Listen::Comments(_) => {
                let (_, number) = issue_of_url(value.get("issue_url")?.as_str()?)?;
                let issue = format!("{repository}#{number}");
                let body = text_of("body").map_or_else(String::new, |b| unmarked(&b).to_owned());
                (format!("issuecomment-{id}"), issue, None, body, "comment")
            }
            Listen::Discussions(_) => return None,
        };
        let outbound = user_id == me.id;
        let kind = if !outbound && mentions(&body, &me.login) {
            "mention"
        } else {
            kind
        };
        let in_reply_to = match listen {
            Listen::Comments(_) => Some(issue.clone()),
            Listen::Issues(_) | Listen::Discussions(_) => None,
        };
        Some(InboundItem {
            external_id,
            author: Author {
                platform_id: self.who(me).platform_id(user_id),
                handle: Some(login.clone()),
                display_name: Some(login),
                profile_url: user
                    .get("html_url")
                    .and_then(Value::as_str)
                    .map(str::to_owned),
                avatar_url: user
                    .get("avatar_url")
                    .and_then(Value::as_str)
                    .map(str::to_owned),
                email: None,
                phone: None,
                links: Vec::new(),
            },
            outbound,
            kind: kind.to_owned(),
            subject,
            text: body,
            html: None,
            url: text_of("html_url"),
            language: None,
            occurred_at: time(value, "created_at")?,
            thread_key: Some(issue),
            in_reply_to,
            raw: value.clone(),
        })
    }
}

/// The GraphQL endpoint of a REST API: `https://api.github.com/graphql`, or on a GitHub
/// Enterprise Server (`https://HOST/api/v3`) `https://HOST/api/graphql`.
fn graphql_url(base_url: &str) -> String {
    match base_url.strip_suffix("/v3") {
        Some(api) if api.ends_with("/api") => format!("{api}/graphql"),
        _ => format!("{base_url}/graphql"),
    }
}

/// A discussion, its comments and their replies as items, all in the discussion's
/// conversation: a comment answers the discussion, a reply its comment. Skipped as the REST
/// items are: bots' and those without an author.
fn discussion_items(discussion: &Value, who: &Who<'_>) -> Vec<InboundItem> {
    let Some(thread) = discussion
        .get("id")
        .and_then(Value::as_str)
        .filter(|id| is_node_id(id))
    else {
        return Vec::new();
    };
    let nodes = |value: &Value, field: &str| {
        value
            .get(field)
            .and_then(|connection| connection.get("nodes"))
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
    };
    let mut items = Vec::new();
    let mut raw = discussion.clone();
    if let Some(raw) = raw.as_object_mut() {
        raw.remove("comments");
    }
    let subject = discussion
        .get("title")
        .and_then(Value::as_str)
        .map(str::to_owned);
    items.extend(node_item(
        discussion, raw, "post", subject, thread, None, who,
    ));
    for comment in nodes(discussion, "comments") {
        let Some(comment_id) = comment.get("id").and_then(Value::as_str) else {
            continue;
        };
        let mut raw = comment.clone();
        if let Some(raw) = raw.as_object_mut() {
            raw.remove("replies");
        }
        items.extend(node_item(
            &comment,
            raw,
            "comment",
            None,
            thread,
            Some(thread),
            who,
        ));
        for reply in nodes(&comment, "replies") {
            let raw = reply.clone();
            items.extend(node_item(
                &reply,
                raw,
                "comment",
                None,
                thread,
                Some(comment_id),
                who,
            ));
        }
    }
    items
}

/// A discussion or discussion comment of a webhook (REST field names) in the field names
/// the discussions query selects, so [`node_item`] maps it as it maps a pulled one: the
/// node id is the `id`, the author an actor with its `databaseId`.
fn graphql_shape(rest: &Value) -> Value {
    let user = rest.get("user").filter(|user| user.is_object());
    let author = user.map(|user| {
        serde_json::json!({
            "__typename": user.get("type").cloned().unwrap_or(Value::Null),
            "login": user.get("login").cloned().unwrap_or(Value::Null),
            "url": user.get("html_url").cloned().unwrap_or(Value::Null),
            "avatarUrl": user.get("avatar_url").cloned().unwrap_or(Value::Null),
            "databaseId": user.get("id").cloned().unwrap_or(Value::Null),
        })
    });
    let field = |key: &str| rest.get(key).cloned().unwrap_or(Value::Null);
    let mut node = serde_json::json!({
        "id": field("node_id"),
        "body": field("body"),
        "url": field("html_url"),
        "createdAt": field("created_at"),
        "updatedAt": field("updated_at"),
        "author": author.unwrap_or(Value::Null),
    });
    if let Some(title) = rest.get("title") {
        node["title"] = title.clone();
        node["number"] = field("number");
    }
    node
}

/// One discussion node (the discussion, a comment or a reply) as an item.
fn node_item(
    node: &Value,
    raw: Value,
    kind: &str,
    subject: Option<String>,
    thread: &str,
    in_reply_to: Option<&str>,
    who: &Who<'_>,
) -> Option<InboundItem> {
    let me = who.me;
    let id = node
        .get("id")
        .and_then(Value::as_str)
        .filter(|id| is_node_id(id))?;
    let author = node.get("author").filter(|author| author.is_object())?;
    if author.get("__typename").and_then(Value::as_str) == Some("Bot") {
        return None;
    }
    let user_id = author.get("databaseId")?.as_u64()?;
    let login = author.get("login")?.as_str()?.to_owned();
    let text = |value: &Value, key: &str| {
        value
            .get(key)
            .and_then(Value::as_str)
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
    };
    let body = text(node, "body")
        .map(|body| unmarked(&body).to_owned())
        .filter(|body| !body.is_empty())
        .or_else(|| subject.clone())
        .unwrap_or_default();
    let outbound = user_id == me.id;
    let kind = if !outbound && mentions(&body, &me.login) {
        "mention"
    } else {
        kind
    };
    Some(InboundItem {
        external_id: id.to_owned(),
        author: Author {
            platform_id: who.platform_id(user_id),
            handle: Some(login.clone()),
            display_name: Some(login),
            profile_url: text(author, "url"),
            avatar_url: text(author, "avatarUrl"),
            email: None,
            phone: None,
            links: Vec::new(),
        },
        outbound,
        kind: kind.to_owned(),
        subject,
        text: body,
        html: None,
        url: text(node, "url"),
        language: None,
        occurred_at: time(node, "createdAt")?,
        thread_key: Some(thread.to_owned()),
        in_reply_to: in_reply_to.map(str::to_owned),
        raw,
    })
}

/// Whether `text` names `login` (`@login`, not inside an address or a longer name, not a
/// team `@login/team`).
fn mentions(text: &str, login: &str) -> bool {
    let (text, login) = (text.to_ascii_lowercase(), login.to_ascii_lowercase());
    let needle = format!("@{login}");
    let bytes = text.as_bytes();
    let word = |c: u8| c.is_ascii_alphanumeric() || c == b'-' || c == b'_';
    text.match_indices(&needle).any(|(at, _)| {
        let before = at.checked_sub(1).map(|i| bytes[i]);
        let after = bytes.get(at + needle.len()).copied();
        !before.is_some_and(word) && !after.is_some_and(|c| word(c) || c == b'/')
    })
}

/// What a failed answer means: 401 refused credentials; 403 or 429 with `retry-after`, an
/// exhausted primary limit or a secondary limit's message a rate limit; 403, 404 and 410
/// that the token cannot reach what was asked (a 403 to a write: refused credentials, as
/// replying needs a permission reading does not); 5xx an outage (retried).
fn failure(
    status: u16,
    headers: &HeaderMap,
    body: &[u8],
    now: DateTime<Utc>,
    host: &str,
    what: &str,
    writing: bool,
) -> ConnectorError {
    let message: String = serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|body| {
            body.get("message")
                .and_then(Value::as_str)
                .map(str::to_owned)
        })
        .unwrap_or_default()
        .chars()
        .take(200)
        .collect();
    let said = if message.is_empty() {
        String::new()
    } else {
        format!(" ({message})")
    };
    if matches!(status, 403 | 429) {
        let until = rate_limited_until(headers, now);
        // GitHub's older wording of the same limit was "abuse detection mechanism".
        let lowered = message.to_ascii_lowercase();
        let secondary =
            lowered.contains("secondary rate limit") || lowered.contains("abuse detection");
        if until.is_some() || secondary || status == 429 {
            let secs = until.map(|at| (at - now).num_seconds().clamp(1, MAX_WAIT_SECS) as u64);
            let secs = if secondary {
                Some(secs.unwrap_or(SECONDARY_WAIT_SECS))
            } else {
                secs
            };
            return ConnectorError::RateLimited {
                retry_after_secs: secs,
            };
        }
    }
    match status {
        401 => ConnectorError::Unauthorized(format!(
            "{host} answered {what} with 401{said}: the token is wrong, expired or revoked"
        )),
        403 if writing => ConnectorError::Unauthorized(format!(
            "{host} answered {what} with 403{said}: replying needs the token's Issues \
             permission set to Read and write"
        )),
        403 => ConnectorError::Payload(format!(
            "{host} answered {what} with 403{said}: the token has no access (a fine-grained \
             token needs the repository and Issues permission)"
        )),
        404 => ConnectorError::Payload(format!(
            "{host} answered {what} with 404{said}: no such repository or issue, or the \
             token cannot see it"
        )),
        500.. => ConnectorError::Transport(format!("{host} answered {what} with {status}")),
        _ => ConnectorError::Payload(format!("{host} answered {what} with {status}{said}")),
    }
}

/// When GitHub asks us to come back: `retry-after` (seconds), or `x-ratelimit-remaining: 0`
/// with `x-ratelimit-reset` (epoch seconds). At most a day ahead, never in the past.
fn rate_limited_until(headers: &HeaderMap, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    let latest = now + chrono::Duration::seconds(MAX_WAIT_SECS);
    http::not_before(headers, now).map(|at| at.clamp(now, latest))
}

#[async_trait::async_trait]
impl Connector for GithubConnector {
    fn channel(&self) -> Channel {
        Channel::Github
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            pull: true,
            webhook: self.webhook_secret.is_some(),
            reply: true,
        }
    }

    fn verify(
        &self,
        request: &crate::WebhookRequest<'_>,
        body: &[u8],
    ) -> Result<(), crate::WebhookError> {
        self.check_signature(request, body)
    }

    async fn webhook(
        &self,
        request: &crate::WebhookRequest<'_>,
        body: &[u8],
    ) -> Result<crate::Hooked, crate::WebhookError> {
        self.hook(request, body).await
    }

    async fn pull(&self, cursor: Option<&Cursor>) -> Result<Pull, ConnectorError> {
        let started = std::time::Instant::now();
        let mut state = GithubCursor::decode(cursor);
        let mut not_before = None;
        let me = self.me(&mut not_before).await?;
        let listens: Vec<Listen<'_>> = self
            .config
            .repositories
            .iter()
            .flat_map(|repo| {
                [
                    Listen::Issues(repo),
                    Listen::Comments(repo),
                    Listen::Discussions(repo),
                ]
            })
            .collect();
        let mut streams = BTreeMap::new();
        let mut taken: Vec<(Listen<'_>, Value)> = Vec::new();
        let mut more = false;
        let mut stopped = not_before.is_some_and(|at| at > Utc::now());
        let mut failures = Vec::new();
        // One budget for the whole pull (one stored batch), not one per stream.
        let mut before = 0;
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
                let mut values = Vec::new();
                let walked = self
                    .walk(
                        listen,
                        &mut stream,
                        &mut values,
                        before,
                        started,
                        &mut not_before,
                    )
                    .await;
                before += weight(listen, &values);
                taken.extend(values.into_iter().map(|value| (listen, value)));
                match walked {
                    Ok(goes_on) => more |= goes_on,
                    // Keep what the earlier pages gave; come back when GitHub says.
                    Err(ConnectorError::RateLimited { retry_after_secs }) => {
                        http::wait_out(&mut not_before, retry_after_secs);
                        more = true;
                    }
                    Err(err @ (ConnectorError::Payload(_) | ConnectorError::Transport(_))) => {
                        stream.warning = Some(format!("{} failed: {err}", listen.path()));
                        failures.push(err);
                    }
                    Err(err) => return Err(err),
                }
            }
            streams.insert(key, stream);
            stopped |= not_before.is_some_and(|at| at > Utc::now());
        }
        // Every stream failed: the source's error, not a quiet empty sync.
        if !failures.is_empty() && failures.len() == streams.len() {
            return Err(failures.remove(0));
        }
        // Repositories no longer configured are forgotten.
        state.streams = streams;

        let mut seen = HashSet::new();
        let mut items: Vec<InboundItem> = taken
            .iter()
            .flat_map(|(listen, value)| match listen {
                Listen::Discussions(_) => discussion_items(value, &self.who(&me)),
                _ => self.item(*listen, value, &me).into_iter().collect(),
            })
            .filter(|item| seen.insert(item.external_id.clone()))
            .collect();
        // Oldest first: an issue before its comments when both are new.
        items.sort_by(|a, b| (a.occurred_at, &a.external_id).cmp(&(b.occurred_at, &b.external_id)));
        self.add_profile_links(&mut items).await;
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
                "the reply has {length} characters; GitHub takes at most {MAX_REPLY_CHARS} \
                 ({MAX_BODY_CHARS} with the reply's hidden marker)"
            )));
        }
        let marker = marker(&to.idempotency_key);
        let body = format!("{text}\n\n{marker}");
        if let Some(discussion) = to
            .thread_key
            .as_deref()
            .filter(|key| key.starts_with("D_") && is_node_id(key))
        {
            return self.reply_in_discussion(discussion, to, text, &body).await;
        }
        let (repository, number) = to
            .thread_key
            .as_deref()
            .and_then(issue_of)
            .or_else(|| issue_of(&to.external_id))
            .or_else(|| {
                to.context
                    .get("issue_url")
                    .and_then(Value::as_str)
                    .and_then(issue_of_url)
            })
            .ok_or_else(|| {
                ConnectorError::Payload(format!(
                    "`{}` is not in a GitHub issue or pull request to answer",
                    to.external_id
                ))
            })?;
        let path = format!("/repos/{repository}/issues/{number}/comments");
        let url = format!("{}{path}", self.config.base_url);
        let mut not_before = None;
        let started = Utc::now();
        let sent = self
            .send(
                self.request(reqwest::Method::POST, &url)
                    .json(&serde_json::json!({ "body": body })),
                &path,
                true,
                &mut not_before,
            )
            .await;
        let comment = match sent {
            Ok((comment, _)) => comment,
            // A timeout or a 5xx may hide a comment GitHub made: ours on this issue with
            // this reply's marker, made since shortly before this attempt, is the reply.
            Err(err @ ConnectorError::Transport(_)) => {
                match self.posted(&url, &marker, started).await {
                    Some(comment) => comment,
                    None => return Err(err),
                }
            }
            Err(err) => return Err(err),
        };
        let id = comment.get("id").and_then(Value::as_u64).ok_or_else(|| {
            ConnectorError::Payload(format!(
                "{} answered {path} without the comment's id",
                self.host()
            ))
        })?;
        Ok(Sent {
            external_id: format!("issuecomment-{id}"),
            url: comment
                .get("html_url")
                .and_then(Value::as_str)
                .map(str::to_owned),
            text: text.to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;
    use serde_json::json;

    fn config() -> Value {
        json!({
            "token": "github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyz",
            "repositories": [" acme/widgets ", "Acme/Widgets", "acme/docs.site"]
        })
    }

    fn connector() -> GithubConnector {
        GithubConnector::new(
            reqwest::Client::new(),
            GithubConfig::parse(&config()).unwrap(),
        )
    }

    fn me() -> Me {
        Me {
            id: 9_000_001,
            login: "acme-support".into(),
        }
    }

    /// An issue comment as `GET /repos/{owner}/{repo}/issues/comments` lists it
    /// (docs.github.com/en/rest/issues/comments).
    fn comment() -> Value {
        json!({
            "id": 1_956_013_482u64,
            "node_id": "IC_kwDOKx3Y5s50lY6q",
            "url": "https://api.github.com/repos/acme/widgets/issues/comments/1956013482",
            "html_url": "https://github.com/acme/widgets/issues/1347#issuecomment-1956013482",
            "body": "@Acme-Support the CSV export fails for files over 10 MB",
            "user": {
                "login": "maya-l", "id": 5_811_112, "node_id": "MDQ6VXNlcjU4MTExMTI=",
                "avatar_url": "https://avatars.githubusercontent.com/u/5811112?v=4",
                "html_url": "https://github.com/maya-l", "type": "User", "site_admin": false
            },
            "created_at": "2026-11-02T09:02:00Z",
            "updated_at": "2026-11-02T09:02:00Z",
            "issue_url": "https://api.github.com/repos/acme/widgets/issues/1347",
            "author_association": "NONE"
        })
    }

    #[test]
    fn the_config_is_checked_and_never_shows_the_token() {
        let parsed = GithubConfig::parse(&config()).unwrap();
        assert_eq!(parsed.base_url, API);
        assert_eq!(parsed.repositories, ["acme/widgets", "acme/docs.site"]);
        assert_eq!(parsed.backfill_limit, DEFAULT_BACKFILL_LIMIT);
        let shown = format!("{parsed:?}");
        assert!(!shown.contains("github_pat"), "{shown}");
        let field = |key: &str, value: Value| {
            let mut config = config();
            config[key] = value;
            GithubConfig::parse(&config).unwrap_err().0
        };
        assert_eq!(field("base_url", json!("ftp://x")), "base_url");
        assert_eq!(field("token", json!(" ")), "token");
        assert_eq!(field("repositories", json!([])), "repositories");
        for bad in [
            "acme",
            "acme/",
            "/widgets",
            "ac me/widgets",
            "acme/..",
            "-acme/w",
            "a/b/c",
        ] {
            assert_eq!(field("repositories", json!([bad])), "repositories", "{bad}");
        }
        let many = json!((0..21).map(|i| format!("acme/r{i}")).collect::<Vec<_>>());
        assert_eq!(field("repositories", many), "repositories");
        assert_eq!(field("backfill_limit", json!(100_001)), "backfill_limit");
        assert_eq!(field("access_token", json!("x")), "access_token");
        let mut enterprise = config();
        enterprise["base_url"] = json!("https://github.example.com/api/v3/");
        assert_eq!(
            GithubConfig::parse(&enterprise).unwrap().base_url,
            "https://github.example.com/api/v3"
        );
    }

    #[test]
    fn a_comment_is_an_item_by_its_user_id_in_its_issues_conversation() {
        let github = connector();
        let item = github
            .item(Listen::Comments("acme/widgets"), &comment(), &me())
            .unwrap();
        assert_eq!(item.external_id, "issuecomment-1956013482");
        assert_eq!(item.author.platform_id, "5811112");
        assert_eq!(item.author.handle.as_deref(), Some("maya-l"));
        assert_eq!(
            item.author.profile_url.as_deref(),
            Some("https://github.com/maya-l")
        );
        assert_eq!(item.kind, "mention");
        assert!(!item.outbound);
        assert_eq!(item.thread_key.as_deref(), Some("acme/widgets#1347"));
        assert_eq!(item.in_reply_to.as_deref(), Some("acme/widgets#1347"));
        assert_eq!(
            item.url.as_deref(),
            Some("https://github.com/acme/widgets/issues/1347#issuecomment-1956013482")
        );

        // Ours: outbound, whatever it names.
        let mut ours = comment();
        ours["user"]["id"] = json!(9_000_001);
        let item = github
            .item(Listen::Comments("acme/widgets"), &ours, &me())
            .unwrap();
        assert!(item.outbound);
        assert_eq!(item.kind, "comment");

        // Bots and vanished users are skipped.
        let mut bot = comment();
        bot["user"]["type"] = json!("Bot");
        assert!(github
            .item(Listen::Comments("acme/widgets"), &bot, &me())
            .is_none());
        let mut gone = comment();
        gone["user"] = Value::Null;
        assert!(github
            .item(Listen::Comments("acme/widgets"), &gone, &me())
            .is_none());

        // A pull request is an issue: its body a post, its number the thread.
        let pull = json!({
            "id": 2_101_003_004u64, "number": 1350, "title": "Stream the CSV export",
            "body": null, "state": "open",
            "html_url": "https://github.com/acme/widgets/pull/1350",
            "user": { "login": "lucia-p", "id": 7_001, "type": "User", "html_url": "https://github.com/lucia-p" },
            "pull_request": { "url": "https://api.github.com/repos/acme/widgets/pulls/1350" },
            "created_at": "2026-11-02T10:00:00Z", "updated_at": "2026-11-02T10:05:00Z"
        });
        let item = github
            .item(Listen::Issues("Acme/Widgets"), &pull, &me())
            .unwrap();
        assert_eq!(item.external_id, "acme/widgets#1350");
        assert_eq!(item.thread_key.as_deref(), Some("acme/widgets#1350"));
        assert_eq!(item.in_reply_to, None);
        assert_eq!(item.kind, "post");
        assert_eq!(item.subject.as_deref(), Some("Stream the CSV export"));
        assert_eq!(item.text, "Stream the CSV export");
        assert_eq!(item.occurred_at.to_rfc3339(), "2026-11-02T10:00:00+00:00");
    }

    #[test]
    fn a_mention_is_the_login_as_a_word() {
        for (text, named) in [
            ("@acme-support hi", true),
            ("hi @Acme-Support.", true),
            ("(@acme-support)", true),
            ("mail me at x@acme-support.com", false),
            ("@acme-supporters", false),
            ("@acme-support/team please", false),
            ("@acme-support-bot", false),
            ("acme-support", false),
        ] {
            assert_eq!(mentions(text, "acme-support"), named, "{text}");
        }
    }

    fn at(n: i64, id: u64) -> Value {
        let when = Utc.timestamp_opt(1_793_000_000 + n, 0).unwrap();
        json!({ "id": id, "updated_at": when.to_rfc3339_opts(chrono::SecondsFormat::Secs, true) })
    }

    fn ids(taken: &[Value]) -> Vec<u64> {
        taken.iter().map(|v| v["id"].as_u64().unwrap()).collect()
    }

    #[test]
    fn a_walk_backfills_to_its_limit_then_the_mark_never_repeats_nor_skips_its_second() {
        let mut stream = Stream::first(3);
        let mut taken = Vec::new();
        let walk = stream.walk.clone().unwrap();
        assert!(stream.back(
            walk,
            vec![at(9, 9), at(9, 8)],
            Some("n2".into()),
            &mut taken
        ));
        let walk = stream.walk.clone().unwrap();
        assert_eq!((walk.next.as_deref(), walk.left), (Some("n2"), 1));
        assert!(!stream.back(
            walk,
            vec![at(7, 7), at(6, 6)],
            Some("n3".into()),
            &mut taken
        ));
        assert_eq!(ids(&taken), [9, 8, 7]);
        let mark = stream.mark.clone().unwrap();
        assert_eq!(mark.at, 1_793_000_009);
        assert_eq!(mark.ids, ["9", "8"]);
        assert_eq!(stream.walk, None);

        // Forward: the mark's second comes again (since is inclusive); only the item of it
        // not handed over yet, and those after, are taken.
        let mut taken = Vec::new();
        let moved = stream.forward(vec![at(9, 9), at(9, 8), at(9, 10), at(12, 11)], &mut taken);
        assert!(moved);
        assert_eq!(ids(&taken), [10, 11]);
        // An edited comment: same id, later updated_at; handed over again (the pipeline
        // drops it by its external id), nothing else.
        let mut taken = Vec::new();
        assert!(stream.forward(vec![at(12, 11), at(20, 9)], &mut taken));
        assert_eq!(ids(&taken), [9]);
        let mut taken = Vec::new();
        assert!(!stream.forward(vec![at(20, 9)], &mut taken));
        assert!(taken.is_empty());

        let cursor = GithubCursor {
            streams: BTreeMap::from([("acme/widgets/comments".to_owned(), stream.clone())]),
        };
        let stored = cursor.encode();
        assert_eq!(GithubCursor::decode(Some(&stored)), cursor);
        let json: Value = serde_json::from_str(&stored.0).unwrap();
        assert_eq!(
            json["streams"]["acme/widgets/comments"]["mark"]["ids"],
            json!(["9"])
        );
        assert_eq!(
            GithubCursor::decode(Some(&Cursor("v0".into()))),
            GithubCursor::default()
        );

        // Backfill 0: one look sets the mark, nothing is taken.
        let mut stream = Stream::first(0);
        let mut taken = Vec::new();
        let walk = stream.walk.clone().unwrap();
        assert!(!stream.back(walk, vec![at(5, 5)], Some("n".into()), &mut taken));
        assert!(taken.is_empty());
        assert_eq!(stream.mark.unwrap().at, 1_793_000_005);
        // The same next link back, or one too long to keep: the walk ends.
        let mut stream = Stream::first(100);
        let walk = Walk {
            next: Some("n".into()),
            ..stream.walk.clone().unwrap()
        };
        assert!(!stream.back(walk, vec![at(4, 4)], Some("n".into()), &mut taken));
        let mut stream = Stream::first(100);
        let walk = stream.walk.clone().unwrap();
        assert!(!stream.back(walk, vec![at(3, 3)], Some("n".repeat(2_049)), &mut taken));
        assert!(stream.warning.unwrap().contains("2048 bytes"));
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, HeaderValue::from_str(value).unwrap());
        }
        map
    }

    #[test]
    fn primary_and_secondary_limits_are_waits_and_a_403_without_them_is_no_access() {
        let now = Utc.with_ymd_and_hms(2026, 12, 4, 10, 0, 0).unwrap();
        let wait = |status, pairs: &[(&'static str, &str)], body: &str| match failure(
            status,
            &headers(pairs),
            body.as_bytes(),
            now,
            "api.github.com",
            "/x",
            false,
        ) {
            ConnectorError::RateLimited { retry_after_secs } => Ok(retry_after_secs),
            other => Err(other.to_string()),
        };
        let reset = (now.timestamp() + 1_200).to_string();
        let primary = [
            ("x-ratelimit-limit", "5000"),
            ("x-ratelimit-remaining", "0"),
            ("x-ratelimit-used", "5000"),
            ("x-ratelimit-reset", reset.as_str()),
            ("x-ratelimit-resource", "core"),
        ];
        let exceeded = r#"{"message":"API rate limit exceeded for user ID 9000001.","documentation_url":"https://docs.github.com/rest/overview/rate-limits-for-the-rest-api"}"#;
        assert_eq!(wait(403, &primary, exceeded), Ok(Some(1_200)));
        assert_eq!(wait(429, &primary, exceeded), Ok(Some(1_200)));
        let secondary = r#"{"message":"You have exceeded a secondary rate limit. Please wait a few minutes before you try again.","documentation_url":"https://docs.github.com/free-pro-team@latest/rest/overview/rate-limits-for-the-rest-api#about-secondary-rate-limits"}"#;
        assert_eq!(wait(403, &[("retry-after", "90")], secondary), Ok(Some(90)));
        assert_eq!(
            wait(403, &[("x-ratelimit-remaining", "4000")], secondary),
            Ok(Some(60))
        );
        let abuse = r#"{"message":"You have triggered an abuse detection mechanism. Please wait a few minutes before you try again.","documentation_url":"https://developer.github.com/v3/#abuse-rate-limits"}"#;
        assert_eq!(
            wait(403, &[("x-ratelimit-remaining", "4000")], abuse),
            Ok(Some(60))
        );
        assert_eq!(wait(429, &[], "{}"), Ok(None));
        let refused = wait(
            403,
            &[("x-ratelimit-remaining", "4999")],
            r#"{"message":"Resource not accessible by personal access token"}"#,
        )
        .unwrap_err();
        assert!(
            refused.contains("403") && refused.contains("no access"),
            "{refused}"
        );
        let missing = wait(404, &[], r#"{"message":"Not Found"}"#).unwrap_err();
        assert!(missing.contains("404"), "{missing}");
        assert!(matches!(
            failure(
                401,
                &HeaderMap::new(),
                b"{\"message\":\"Bad credentials\"}",
                now,
                "h",
                "/x",
                false
            ),
            ConnectorError::Unauthorized(_)
        ));
        // A 403 to a reply: the token may read but not write.
        match failure(
            403,
            &headers(&[("x-ratelimit-remaining", "4999")]),
            br#"{"message":"Resource not accessible by personal access token"}"#,
            now,
            "api.github.com",
            "/repos/acme/widgets/issues/1/comments",
            true,
        ) {
            ConnectorError::Unauthorized(message) => {
                assert!(message.contains("Read and write"), "{message}")
            }
            other => panic!("{other}"),
        }
        assert!(matches!(
            failure(502, &HeaderMap::new(), b"", now, "h", "/x", false),
            ConnectorError::Transport(_)
        ));
    }

    #[test]
    fn a_webhook_discussion_comment_maps_as_the_pulled_one() {
        let pulled = json!({
            "id": "DC_kwDOKx3Y5s4AhM01", "body": "@acme-support parquet?",
            "url": "https://github.com/acme/widgets/discussions/7#discussioncomment-1",
            "createdAt": "2026-11-02T09:11:00Z", "updatedAt": "2026-11-02T09:11:00Z",
            "author": { "__typename": "User", "login": "maya-l", "url": "https://github.com/maya-l",
                "avatarUrl": "https://avatars.githubusercontent.com/u/5811112?v=4", "databaseId": 5_811_112 }
        });
        // The same comment as a `discussion_comment` webhook carries it.
        let delivered = json!({
            "id": 11_001, "node_id": "DC_kwDOKx3Y5s4AhM01", "parent_id": null,
            "html_url": "https://github.com/acme/widgets/discussions/7#discussioncomment-1",
            "body": "@acme-support parquet?", "child_comment_count": 0,
            "created_at": "2026-11-02T09:11:00Z", "updated_at": "2026-11-02T09:11:00Z",
            "user": { "login": "maya-l", "id": 5_811_112, "type": "User",
                "html_url": "https://github.com/maya-l",
                "avatar_url": "https://avatars.githubusercontent.com/u/5811112?v=4" }
        });
        let thread = "D_kwDOKx3Y5s4AXy7";
        let map = |node: &Value| {
            let mut item = node_item(
                node,
                Value::Null,
                "comment",
                None,
                thread,
                Some(thread),
                &Who {
                    me: &me(),
                    realm: None,
                },
            )
            .unwrap();
            item.raw = Value::Null;
            item
        };
        let item = map(&graphql_shape(&delivered));
        assert_eq!(item, map(&pulled));
        assert_eq!(item.kind, "mention");
        assert_eq!(item.author.platform_id, "5811112");
    }

    #[tokio::test]
    async fn a_webhook_is_verified_before_it_is_read_and_unheard_events_are_ignored() {
        use crate::{Hooked, WebhookError, WebhookRequest};
        let secret = "wh-acme-widgets-3f9c2e71b8d4";
        let hooked = GithubConnector::new(
            reqwest::Client::new(),
            GithubConfig::parse(&json!({ "token": "t", "repositories": ["Acme/Widgets"],
                "webhook_secret": secret }))
            .unwrap(),
        );
        assert!(hooked.capabilities().webhook);
        assert!(!connector().capabilities().webhook);
        let sign = |body: &str| {
            crate::webhook::Secret::parse(secret)
                .unwrap()
                .sign_github(body.as_bytes())
        };
        let deliver = |event: &str, signature: Option<String>, body: &str| {
            let mut headers = reqwest::header::HeaderMap::new();
            headers.insert("x-github-event", event.parse().unwrap());
            if let Some(signature) = signature {
                headers.insert("x-hub-signature-256", signature.parse().unwrap());
            }
            let body = body.to_owned();
            let hooked = &hooked;
            async move {
                hooked
                    .webhook(&WebhookRequest { headers: &headers }, body.as_bytes())
                    .await
            }
        };
        let other =
            r#"{"action":"created","repository":{"full_name":"acme/gadgets"},"comment":{}}"#;
        // Nothing is parsed before the signature: not even invalid JSON is reported.
        for (signature, body) in [
            (None, other),
            (Some(sign(other)), "{not json"),
            (Some("sha256=00".into()), other),
        ] {
            match deliver("issue_comment", signature, body).await {
                Err(WebhookError::Unauthenticated(message)) => assert!(!message.contains(secret)),
                other => panic!("{other:?}"),
            }
        }
        match deliver("issue_comment", Some(sign(other)), other).await {
            Ok(Hooked::Ignored(why)) => assert!(why.contains("repositories"), "{why}"),
            other => panic!("{other:?}"),
        }
        let ping = r#"{"zen":"Design for failure.","hook_id":1}"#;
        assert!(matches!(
            deliver("ping", Some(sign(ping)), ping).await,
            Ok(Hooked::Ignored(_))
        ));
        let edited = r#"{"action":"edited","repository":{"full_name":"acme/widgets"}}"#;
        assert!(matches!(
            deliver("issue_comment", Some(sign(edited)), edited).await,
            Ok(Hooked::Ignored(_))
        ));
        let broken = r#"{"action":"created","repository":{"full_name":"acme/widgets"}}"#;
        assert!(matches!(
            deliver("issue_comment", Some(sign(broken)), broken).await,
            Err(WebhookError::Payload {
                field: "comment",
                ..
            })
        ));
        let unsigned = connector();
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert("x-hub-signature-256", sign(ping).parse().unwrap());
        assert!(matches!(
            unsigned
                .webhook(&WebhookRequest { headers: &headers }, ping.as_bytes())
                .await,
            Err(WebhookError::Unsupported)
        ));
        let (field, message) = GithubConfig::parse(&json!({ "token": "t", "repositories": ["a/b"],
            "webhook_secret": "short-one" }))
        .unwrap_err();
        assert_eq!(field, "webhook_secret");
        assert!(!message.contains("short-one"), "{message}");
    }

    /// A webhook connector for acme/widgets whose GitHub is nowhere (port 9 refuses): any
    /// call it makes fails with a transport error.
    fn unreachable_hooked() -> GithubConnector {
        GithubConnector::new(
            reqwest::Client::new(),
            GithubConfig::parse(&json!({ "token": "t", "repositories": ["acme/widgets"],
                "base_url": "http://127.0.0.1:9", "webhook_secret": "wh-acme-widgets-3f9c2e71b8d4" }))
            .unwrap(),
        )
    }

    async fn deliver_to(
        hooked: &GithubConnector,
        event: &str,
        body: &Value,
    ) -> Result<crate::Hooked, crate::WebhookError> {
        let body = body.to_string();
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert("x-github-event", event.parse().unwrap());
        let signature = crate::webhook::Secret::parse("wh-acme-widgets-3f9c2e71b8d4")
            .unwrap()
            .sign_github(body.as_bytes());
        headers.insert("x-hub-signature-256", signature.parse().unwrap());
        let request = crate::WebhookRequest { headers: &headers };
        hooked.verify(&request, body.as_bytes())?;
        hooked.webhook(&request, body.as_bytes()).await
    }

    /// A discussion comment as the `discussion_comment` webhook carries it.
    fn hooked_discussion_comment() -> Value {
        json!({
            "action": "created", "repository": { "full_name": "acme/widgets" },
            "discussion": { "node_id": "D_kwDOKx3Y5s4AXy7", "number": 7, "title": "Parquet?" },
            "comment": {
                "id": 11_002, "node_id": "DC_kwDOKx3Y5s4AhM02", "parent_id": 11_001,
                "html_url": "https://github.com/acme/widgets/discussions/7#discussioncomment-2",
                "body": "+1", "created_at": "2026-11-02T09:12:00Z",
                "updated_at": "2026-11-02T09:12:00Z",
                "user": { "login": "maya-l", "id": 5_811_112, "type": "User" }
            }
        })
    }

    #[tokio::test]
    async fn a_webhook_body_must_be_the_event_it_claims_and_ignored_items_ask_github_nothing() {
        use crate::{Hooked, WebhookError};
        let hooked = unreachable_hooked();
        let repository = json!({ "full_name": "acme/widgets" });
        let issue_comment = json!({ "action": "created", "repository": repository,
            "issue": { "number": 1347 }, "comment": comment() });
        let discussion_comment = hooked_discussion_comment();
        let mut discussion = discussion_comment.clone();
        discussion.as_object_mut().unwrap().remove("comment");
        let mut without_url = issue_comment.clone();
        without_url["comment"]
            .as_object_mut()
            .unwrap()
            .remove("issue_url");
        // Signed bodies under another event's (unsigned) name: refused, nothing asked.
        for (event, body) in [
            ("discussion", &discussion_comment),
            ("issue_comment", &discussion_comment),
            ("discussion_comment", &issue_comment),
            (
                "issues",
                &json!({ "action": "opened", "repository": repository,
                "issue": { "number": 1347 }, "comment": comment() }),
            ),
            ("issue_comment", &without_url),
        ] {
            let mut body = body.clone();
            // An issue's comment with a discussion made up for it, so that only its shape
            // is wrong (without one, the missing discussion is named).
            if event == "discussion_comment" {
                body["discussion"] = discussion_comment["discussion"].clone();
            }
            body["action"] = json!(if event == "issues" {
                "opened"
            } else {
                "created"
            });
            match deliver_to(&hooked, event, &body).await {
                Err(WebhookError::Payload { field, message }) => {
                    assert_eq!(field, "X-GitHub-Event", "{event} {body}");
                    assert!(message.contains(event), "{message}");
                }
                other => panic!("{event} {body}: {other:?}"),
            }
        }
        // A reply to a discussion comment without its node id: refused before GraphQL
        // (or GitHub at all) is asked.
        let mut nameless = discussion_comment.clone();
        nameless["comment"]["node_id"] = Value::Null;
        match deliver_to(&hooked, "discussion_comment", &nameless).await {
            Err(WebhookError::Payload { field, .. }) => assert_eq!(field, "comment"),
            other => panic!("{other:?}"),
        }
        // A bot's or a user-less item is ignored without asking who the token is.
        let mut bot = issue_comment.clone();
        bot["comment"]["user"]["type"] = json!("Bot");
        let mut ghost = issue_comment.clone();
        ghost["comment"]["user"] = Value::Null;
        let mut bot_reply = discussion_comment.clone();
        bot_reply["comment"]["user"]["type"] = json!("Bot");
        let mut bot_discussion = discussion.clone();
        bot_discussion["discussion"]["user"] =
            json!({ "login": "dependabot[bot]", "id": 49_699_333, "type": "Bot" });
        for (event, body) in [
            ("issue_comment", &bot),
            ("issue_comment", &ghost),
            ("discussion_comment", &bot_reply),
            ("discussion", &bot_discussion),
        ] {
            match deliver_to(&hooked, event, body).await {
                Ok(Hooked::Ignored(why)) => assert!(why.contains("bot"), "{why}"),
                other => panic!("{event} {body}: {other:?}"),
            }
        }
        // A person's item needs the token's account: GitHub is asked (and is not there).
        assert!(matches!(
            deliver_to(&hooked, "issue_comment", &issue_comment).await,
            Err(WebhookError::Connector(ConnectorError::Transport(_)))
        ));
    }

    #[tokio::test]
    async fn the_tokens_account_is_asked_once_for_a_while() {
        use crate::Hooked;
        let hooked = unreachable_hooked();
        let body = json!({ "action": "created", "repository": { "full_name": "acme/widgets" },
            "issue": { "number": 1347 }, "comment": comment() });
        // Known since just now: no call (GitHub is unreachable), the item maps.
        hooked.me.set(&me());
        match deliver_to(&hooked, "issue_comment", &body).await {
            Ok(Hooked::Items(items)) => assert_eq!(items[0].kind, "mention"),
            other => panic!("{other:?}"),
        }
        // Known for longer than ME_TTL: asked again.
        let long_ago = std::time::Instant::now()
            .checked_sub(ME_TTL + std::time::Duration::from_secs(1))
            .unwrap();
        hooked.me.set_at(&me(), long_ago);
        assert!(deliver_to(&hooked, "issue_comment", &body).await.is_err());
    }

    #[test]
    fn user_ids_of_an_enterprise_server_are_qualified_by_it() {
        for (base, realm) in [
            ("https://api.github.com", None),
            ("https://API.GitHub.com/", None),
            (
                "https://github.example.com/api/v3",
                Some("github.example.com"),
            ),
            (
                "https://git.example.org:8443/api/v3/",
                Some("git.example.org:8443"),
            ),
            ("http://127.0.0.1:4000/gh", Some("127.0.0.1:4000/gh")),
        ] {
            let mut config = config();
            config["base_url"] = json!(base);
            let connector = GithubConnector::new(
                reqwest::Client::new(),
                GithubConfig::parse(&config).unwrap(),
            );
            let item = connector
                .item(Listen::Comments("acme/widgets"), &comment(), &me())
                .unwrap();
            let expected = match realm {
                Some(realm) => format!("{realm}#5811112"),
                None => "5811112".to_owned(),
            };
            assert_eq!(item.author.platform_id, expected, "{base}");
            let pulled = json!({
                "id": "D_kwDOKx3Y5s4AXy7", "number": 7, "title": "Parquet?", "body": "?",
                "url": "https://github.example.com/acme/widgets/discussions/7",
                "createdAt": "2026-11-02T09:10:00Z", "updatedAt": "2026-11-02T09:10:00Z",
                "author": { "__typename": "User", "login": "maya-l", "databaseId": 5_811_112 },
                "comments": { "nodes": [] }
            });
            let items = discussion_items(&pulled, &connector.who(&me()));
            assert_eq!(items[0].author.platform_id, expected, "{base}");
            // Outbound stays by the number.
            let mut ours = comment();
            ours["user"]["id"] = json!(9_000_001);
            assert!(
                connector
                    .item(Listen::Comments("acme/widgets"), &ours, &me())
                    .unwrap()
                    .outbound
            );
        }
    }

    #[test]
    fn a_discussion_is_items_threaded_by_its_node_id() {
        assert_eq!(graphql_url(API), "https://api.github.com/graphql");
        assert_eq!(
            graphql_url("https://github.example.com/api/v3"),
            "https://github.example.com/api/graphql"
        );
        let who = |login: &str, id: u64, kind: &str| {
            json!({ "__typename": kind, "login": login, "url": format!("https://github.com/{login}"),
                "avatarUrl": "https://avatars.githubusercontent.com/u/1?v=4", "databaseId": id })
        };
        let discussion = json!({
            "id": "D_kwDOKx3Y5s4AXy7", "number": 7, "title": "Roadmap", "body": "",
            "url": "https://github.com/acme/widgets/discussions/7",
            "createdAt": "2026-11-02T09:10:00Z", "updatedAt": "2026-11-02T09:13:00Z",
            "author": who("lucia-p", 7_001, "User"),
            "comments": { "nodes": [{
                "id": "DC_kwDOKx3Y5s4AhM01", "body": "@acme-support parquet?", "url": "https://github.com/acme/widgets/discussions/7#discussioncomment-1",
                "createdAt": "2026-11-02T09:11:00Z", "updatedAt": "2026-11-02T09:11:00Z",
                "author": who("maya-l", 5_811_112, "User"),
                "replies": { "nodes": [
                    { "id": "DC_kwDOKx3Y5s4AhM02", "body": "soon", "url": "u", "createdAt": "2026-11-02T09:12:00Z",
                      "updatedAt": "2026-11-02T09:12:00Z", "author": who("acme-support", 9_000_001, "User"),
                      "replyTo": { "id": "DC_kwDOKx3Y5s4AhM01" } },
                    { "id": "DC_kwDOKx3Y5s4AhM03", "body": "Labelled", "url": "u", "createdAt": "2026-11-02T09:12:00Z",
                      "updatedAt": "2026-11-02T09:12:00Z", "author": who("github-actions", 41_898_282, "Bot"),
                      "replyTo": { "id": "DC_kwDOKx3Y5s4AhM01" } }
                ] }
            }] }
        });
        let items = discussion_items(
            &discussion,
            &Who {
                me: &me(),
                realm: None,
            },
        );
        let ids: Vec<&str> = items.iter().map(|i| i.external_id.as_str()).collect();
        assert_eq!(
            ids,
            [
                "D_kwDOKx3Y5s4AXy7",
                "DC_kwDOKx3Y5s4AhM01",
                "DC_kwDOKx3Y5s4AhM02"
            ]
        );
        assert!(items
            .iter()
            .all(|i| i.thread_key.as_deref() == Some("D_kwDOKx3Y5s4AXy7")));
        assert_eq!(items[0].text, "Roadmap");
        assert_eq!(items[0].raw.get("comments"), None);
        assert_eq!(items[1].kind, "mention");
        assert_eq!(items[1].in_reply_to.as_deref(), Some("D_kwDOKx3Y5s4AXy7"));
        assert_eq!(items[1].raw.get("replies"), None);
        assert_eq!(items[2].in_reply_to.as_deref(), Some("DC_kwDOKx3Y5s4AhM01"));
        assert!(items[2].outbound);
        assert_eq!(
            key(&discussion),
            Some((1_793_610_780, "D_kwDOKx3Y5s4AXy7".into()))
        );
    }

    #[test]
    fn base_url_is_normalised_and_only_links_into_it_are_followed() {
        let parsed = |base: &str| {
            let mut config = config();
            config["base_url"] = json!(base);
            GithubConfig::parse(&config).unwrap().base_url
        };
        assert_eq!(parsed("https://API.GitHub.com:443/"), API);
        assert_eq!(parsed("HTTPS://api.github.com"), API);
        assert_eq!(
            parsed("https://GHE.example.com:8443/api/v3/"),
            "https://ghe.example.com:8443/api/v3"
        );
        let next = "https://api.github.com/repositories/1/issues/comments?page=2";
        assert!(within(API, next));
        assert!(within(API, "https://api.github.com:443/x"));
        for refused in [
            "http://api.github.com/x",
            "https://api.github.com:8443/x",
            "https://evil.example/x",
            "https://api.github.com.evil.example/x",
            "https://user:pw@api.github.com/x",
            "not a url",
        ] {
            assert!(!within(API, refused), "{refused}");
        }
        let ghe = "https://ghe.example.com/api/v3";
        assert!(within(
            ghe,
            "https://ghe.example.com/api/v3/repos/a/b/issues?page=2"
        ));
        assert!(!within(ghe, "https://ghe.example.com/api/v3x/repos"));
        assert!(!within(ghe, "https://ghe.example.com/login"));
    }

    #[test]
    fn a_page_over_the_cap_is_asked_again_smaller_at_the_same_place_then_skipped() {
        let q = |url: &str| {
            (
                query_number(url, "per_page").unwrap(),
                query_number(url, "page").unwrap(),
            )
        };
        let first = "https://api.github.com/repos/a/b/issues/comments?sort=updated&per_page=100&direction=desc";
        let smaller = resized(first, 50, false).unwrap();
        assert_eq!(q(&smaller), (50, 1));
        assert!(smaller.contains("direction=desc") && smaller.contains("sort=updated"));
        // Page 3 of 100 begins at item 200: page 5 of 50, page 9 of 25, page 41 of 5.
        let third = "https://api.github.com/repos/a/b/issues/comments?per_page=100&page=3";
        assert_eq!(q(&resized(third, 50, false).unwrap()), (50, 5));
        assert_eq!(q(&resized(third, 25, false).unwrap()), (25, 9));
        let one = resized(third, 1, false).unwrap();
        assert_eq!(q(&one), (1, 201));
        // At one a page: the page after (the item is skipped).
        assert_eq!(q(&resized(&one, 1, true).unwrap()), (1, 202));
        let mut steps = vec![PAGE];
        while let Some(next) = smaller_page(*steps.last().unwrap()) {
            assert_eq!(steps.last().unwrap() % next, 0);
            steps.push(next);
        }
        assert_eq!(steps.last(), Some(&1));
        assert!(is_too_large(&ConnectorError::Payload(format!(
            "h answered /x with {OVER_CAP} of 10 MiB"
        ))));
        assert!(!is_too_large(&ConnectorError::Payload("404".into())));
    }

    #[test]
    fn a_reply_carries_its_own_hidden_marker_which_items_do_not_show() {
        let one = marker("reply-1");
        assert_eq!(one, marker("reply-1"));
        assert_ne!(one, marker("reply-2"));
        assert!(one.starts_with("<!-- rapport:") && one.ends_with(" -->"));
        assert_eq!(one.len() + 2, MARKER_CHARS);
        assert_eq!(MAX_REPLY_CHARS, 65_501);
        assert_eq!(unmarked(&format!("Thanks!\n\n{one}\n")), "Thanks!");
        assert_eq!(unmarked("no marker"), "no marker");
        assert_eq!(
            unmarked("<!-- rapport:not hex at all -->"),
            "<!-- rapport:not hex at all -->"
        );
        let mut ours = comment();
        ours["body"] = json!(format!("Fixed in 2.0.1\n\n{one}"));
        let item = connector()
            .item(Listen::Comments("acme/widgets"), &ours, &me())
            .unwrap();
        assert_eq!(item.text, "Fixed in 2.0.1");
    }

    #[tokio::test]
    async fn a_reply_over_65536_characters_is_refused_before_sending() {
        // Rapport refuses replies over 10,000 characters first; this is the connector's own
        // check. The client points nowhere: nothing may be sent.
        let target = ReplyTarget {
            external_id: "acme/widgets#1".into(),
            thread_key: Some("acme/widgets#1".into()),
            context: Value::Null,
            recipient: None,
            idempotency_key: "k".into(),
        };
        let mut config = config();
        config["base_url"] = json!("http://127.0.0.1:9");
        let github = GithubConnector::new(
            reqwest::Client::new(),
            GithubConfig::parse(&config).unwrap(),
        );
        for length in [65_537, 65_502] {
            match github.reply(&target, &"a".repeat(length)).await {
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
            github.default_reply_limit(),
            Some(ReplyLimit::Characters(MAX_REPLY_CHARS))
        );
    }

    #[test]
    fn an_issue_is_read_from_its_key_or_its_api_url() {
        assert_eq!(
            issue_of("acme/widgets#1347"),
            Some(("acme/widgets".into(), 1347))
        );
        assert_eq!(issue_of("Acme/Widgets#7"), Some(("acme/widgets".into(), 7)));
        assert_eq!(issue_of("acme/widgets#0"), None);
        assert_eq!(issue_of("../x#1"), None);
        assert_eq!(issue_of("issuecomment-12"), None);
        assert_eq!(
            issue_of_url("https://github.example.com/api/v3/repos/acme/widgets/issues/12"),
            Some(("acme/widgets".into(), 12))
        );
        assert_eq!(
            issue_of_url("https://api.github.com/repos/acme/widgets/pulls/12"),
            None
        );
    }
}
