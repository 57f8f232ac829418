//! Connectors: one module per channel that fetches and parses a platform's data into
//! [`InboundItem`]s and sends replies. Pure I/O and parsing: a connector never touches the
//! database; the ingest pipeline of the `rapport` crate stores what it returns.

pub mod bluesky;
pub mod discourse;
pub mod email;
mod empty;
pub mod feed;
#[cfg(test)]
mod fuzz;
pub mod github;
pub mod hackernews;
pub mod http;
mod known;
mod mark;
pub mod mastodon;
pub mod matrix;
pub mod outbound;
pub mod reddit;
pub mod telegram;
pub mod text;
pub mod webhook;
pub mod x;
pub mod youtube;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Declares the channels once: the enum, its stored names and `ALL`. With the `graphql`
/// feature the same enum is the API's `Channel` type, so a channel added here is in the
/// schema without a second list.
macro_rules! channels {
    ($($(#[$doc:meta])* $variant:ident = $name:literal,)+) => {
        /// The channels Rapport talks to.
        // Stored and configured as their `as_str` name.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
        #[cfg_attr(feature = "graphql", derive(async_graphql::Enum))]
        #[cfg_attr(feature = "sea-orm", derive(sea_orm::EnumIter, sea_orm::DeriveActiveEnum))]
        #[cfg_attr(feature = "sea-orm", sea_orm(rs_type = "String", db_type = "Text"))]
        pub enum Channel {
            $(
                $(#[$doc])*
                #[cfg_attr(feature = "sea-orm", sea_orm(string_value = $name))]
                // The serde name is the stored one: rows are written as JSON too.
                #[serde(rename = $name)]
                $variant
            ),+
        }

        impl Channel {
            /// Every channel, in a stable order.
            pub const ALL: &'static [Channel] = &[$(Channel::$variant),+];

            /// The stable name stored in the database and used in configuration.
            pub fn as_str(self) -> &'static str {
                match self { $(Channel::$variant => $name),+ }
            }
        }

        impl std::fmt::Display for Channel {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

channels! {
    /// Mastodon and servers with its API: mentions pulled by a source, replies sent back.
    Mastodon = "mastodon",
    /// Bluesky: mentions and replies pulled by a source, replies sent back.
    Bluesky = "bluesky",
    /// Reddit: mentions, inbox, subreddits and searches pulled by a source, replies sent
    /// back as comments.
    Reddit = "reddit",
    /// Hacker News: stories and comments pulled by a source from the Algolia HN Search API;
    /// no replies (Hacker News has no API for posting: each item links to its page).
    HackerNews = "hacker_news",
    /// Matrix: messages in chosen rooms pulled by a source with `/sync`, replies sent back
    /// into the room (threads kept).
    Matrix = "matrix",
    /// GitHub: issues, pull requests, discussions and their comments in chosen repositories
    /// pulled by a source, replies sent back as comments.
    Github = "github",
    /// Discourse: a forum's latest posts (all, or chosen categories) and keyword searches
    /// pulled by a source, replies sent back as posts in the topic.
    Discourse = "discourse",
    /// Telegram: messages to a bot (private chats, groups, channels) pulled by a source,
    /// replies sent back as answering messages.
    Telegram = "telegram",
    /// YouTube: comments on a channel's videos or on chosen videos pulled by a source,
    /// replies sent back under the top-level comment (with an OAuth access token).
    Youtube = "youtube",
    /// X (formerly Twitter): mentions of the workspace's account and keyword searches
    /// pulled by a source, replies sent back as answering posts.
    X = "x",
    /// RSS and Atom feeds, pulled by a source.
    Rss = "rss",
    /// E-mail: a mailbox read over IMAP, replies sent over SMTP.
    Email = "email",
    /// Items POSTed by another system to a webhook source's `webhookPath`.
    Webhook = "webhook",
    /// Phone calls, recorded with `recordInteraction`.
    Phone = "phone",
    /// Meetings, recorded with `recordInteraction`.
    Meeting = "meeting",
    /// Anything else entered by hand (the default of `recordInteraction`).
    Manual = "manual",
}

impl Channel {
    /// Parses a stored name; `None` for an unknown one.
    pub fn parse(name: &str) -> Option<Channel> {
        Channel::ALL
            .iter()
            .copied()
            .find(|channel| channel.as_str() == name)
    }
}

/// What a connector can do.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Capabilities {
    pub pull: bool,
    pub webhook: bool,
    pub reply: bool,
}

/// An opaque position in a platform's stream, stored on the source after each batch.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cursor(pub String);

/// The author of an inbound item as the platform shows them.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Author {
    /// The platform's stable id (Mastodon account URI, Bluesky DID, e-mail address, …).
    pub platform_id: String,
    pub handle: Option<String>,
    pub display_name: Option<String>,
    pub profile_url: Option<String>,
    pub avatar_url: Option<String>,
    pub email: Option<String>,
    pub phone: Option<String>,
    /// What the profile links to (its profile fields, the addresses in its bio): the
    /// author's other accounts and sites, as the profile writes them. Rapport turns a link
    /// that names another customer's account, site or address into a duplicate suggestion,
    /// never a merge.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub links: Vec<ProfileLink>,
}

/// A link an author's profile shows.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProfileLink {
    /// As written: a web address, an e-mail address or a fediverse handle (`@ana@host`).
    pub url: String,
    /// Where the profile shows it: a profile field's name, or `bio`.
    pub label: Option<String>,
    /// The platform checked that the linked page links back (Mastodon's `rel="me"`).
    pub verified: bool,
}

/// At most this many links of one profile are kept.
pub const MAX_PROFILE_LINKS: usize = 16;

/// One normalised item pulled from a channel.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct InboundItem {
    /// Unique per source; the pipeline drops an item whose id is already stored.
    pub external_id: String,
    pub author: Author,
    /// `true` when the workspace's own account wrote it.
    pub outbound: bool,
    pub kind: String,
    pub subject: Option<String>,
    pub text: String,
    pub html: Option<String>,
    pub url: Option<String>,
    pub language: Option<String>,
    pub occurred_at: DateTime<Utc>,
    /// The thread this item belongs to, when the platform names one.
    pub thread_key: Option<String>,
    /// The external id of the item this one answers.
    pub in_reply_to: Option<String>,
    pub raw: serde_json::Value,
}

/// One pull: the items, the cursor to resume from, and whether more are waiting.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Pull {
    pub items: Vec<InboundItem>,
    pub next_cursor: Option<Cursor>,
    pub more: bool,
    /// The platform asked us not to come back before this time (rate-limit headers of a
    /// successful response).
    pub not_before: Option<DateTime<Utc>>,
}

/// What a reply answers.
#[derive(Clone, Debug, PartialEq)]
pub struct ReplyTarget {
    /// The answered item's external id.
    pub external_id: String,
    pub thread_key: Option<String>,
    /// Who the reply goes to: a handle, an e-mail address.
    pub recipient: Option<String>,
    /// The answered item's raw payload (visibility, subject, references, …).
    pub context: serde_json::Value,
    /// The same for every attempt at one reply: platforms that support it drop repeats.
    pub idempotency_key: String,
}

/// A reply the platform accepted.
#[derive(Clone, Debug, PartialEq)]
pub struct Sent {
    pub external_id: String,
    pub url: Option<String>,
    /// The text as sent (a platform may need a mention prepended).
    pub text: String,
}

/// Why a pull or a reply failed; the scheduler decides on backoff from it.
#[derive(Debug, thiserror::Error)]
pub enum ConnectorError {
    #[error("the source's configuration is invalid: {0}")]
    Config(String),
    #[error("the platform rate-limited us; retry after {retry_after_secs:?} s")]
    RateLimited { retry_after_secs: Option<u64> },
    #[error("the platform refused our credentials: {0}")]
    Unauthorized(String),
    #[error("the platform answered with something we cannot read: {0}")]
    Payload(String),
    #[error("the platform could not be reached: {0}")]
    Transport(String),
    #[error("this connector cannot {0}")]
    Unsupported(&'static str),
    /// The outbound guard refused the address (a non-public one the operator's `[outbound]
    /// allow` does not name). Holds the host as the URL or setting wrote it, never the
    /// address it resolved to; the same message whether anything listens there or not.
    #[error(
        "refused: not a public address ({0}); the server's [outbound] allow list does not name it"
    )]
    Refused(String),
}

/// A delivery POSTed to a source's webhook address (`/webhooks/{source_id}`), as the
/// server received it: its headers (the body is passed alongside, as raw bytes, since
/// signatures cover the bytes).
#[derive(Clone, Copy, Debug)]
pub struct WebhookRequest<'a> {
    pub headers: &'a reqwest::header::HeaderMap,
}

impl WebhookRequest<'_> {
    /// The header `name` as text; `None` when absent or not visible ASCII.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|value| value.to_str().ok())
    }
}

/// What a connector made of a delivery whose signature it verified.
#[derive(Clone, Debug, PartialEq)]
pub enum Hooked {
    /// The items to store (the same items a pull of them gives: same external ids, so a
    /// delivery and a pull of one comment are stored once).
    Items(Vec<InboundItem>),
    /// An event the source does not listen to (a ping, another action, a repository or
    /// chat not configured): answered 200, nothing stored. Says why.
    Ignored(String),
}

/// Why a delivery to a connector was not taken.
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    /// The source takes no deliveries (the connector, or its configuration, has no
    /// webhook): the server answers as for an unknown address.
    #[error("this source takes no webhook deliveries")]
    Unsupported,
    /// The signature or secret header is missing or does not match: nothing is read.
    /// Never holds the secret or what was sent in its place.
    #[error("{0}")]
    Unauthenticated(String),
    /// A verified delivery that does not follow the platform's documented shape.
    #[error("{field}: {message}")]
    Payload {
        field: &'static str,
        message: String,
    },
    /// The connector needed the platform to map the delivery (the token's own account)
    /// and could not ask it: the sender should retry.
    #[error(transparent)]
    Connector(#[from] ConnectorError),
}

/// One channel's connector. Implementations are registered by channel name.
#[async_trait::async_trait]
pub trait Connector: Send + Sync {
    fn channel(&self) -> Channel;
    fn capabilities(&self) -> Capabilities;
    /// Fetches the items after `cursor` (from the start when `None`).
    async fn pull(&self, cursor: Option<&Cursor>) -> Result<Pull, ConnectorError>;
    /// Whether a pull from a cursor tells the platform that everything before it is
    /// delivered, so the platform forgets it (Telegram's `getUpdates` offset). The sync
    /// then pulls again only once the batch that cursor ends is committed: a pull made
    /// while it is still being stored would throw it away if the store failed.
    fn confirms_on_read(&self) -> bool {
        false
    }
    /// Checks that a delivery POSTed to the source's webhook address is the platform's:
    /// its signature or secret header over the raw `body` (constant-time), nothing parsed,
    /// nothing asked of the platform. The server calls it before anything else about the
    /// source shows (whether it is paused), so an unsigned caller learns nothing but the
    /// refusal; [`Connector::webhook`] verifies again itself. Connectors without
    /// [`Capabilities::webhook`] refuse every delivery ([`WebhookError::Unsupported`]).
    fn verify(&self, _request: &WebhookRequest<'_>, _body: &[u8]) -> Result<(), WebhookError> {
        Err(WebhookError::Unsupported)
    }
    /// Takes one delivery POSTed by the platform to the source's webhook address: verifies
    /// it first ([`Connector::verify`]; nothing is parsed before), then maps it with the
    /// same mapping as [`Connector::pull`]. Connectors without [`Capabilities::webhook`]
    /// refuse every delivery ([`WebhookError::Unsupported`]).
    async fn webhook(
        &self,
        _request: &WebhookRequest<'_>,
        _body: &[u8],
    ) -> Result<Hooked, WebhookError> {
        Err(WebhookError::Unsupported)
    }
    /// Tells the connector the public address its deliveries reach the server at (the
    /// server's `[http] public_url` + `/webhooks/{source_id}`), for platforms where the
    /// connector registers it (Telegram's `setWebhook`). Not called when the server has
    /// no `public_url`.
    fn listen_at(&mut self, _url: &str) {}
    /// Undoes what the connector registered at the platform for the source's deliveries
    /// (Telegram's `setWebhook`), when the source is deleted or changed so that it takes
    /// none. Called on the connector of the source as it was; leaves alone what is not
    /// this source's own (another address). Connectors that register nothing do nothing.
    async fn unlisten(&self) -> Result<(), ConnectorError> {
        Ok(())
    }
    /// Sends `text` as an answer to `to`.
    async fn reply(&self, to: &ReplyTarget, text: &str) -> Result<Sent, ConnectorError>;
    /// The external id a reply to `to` will have, when the connector decides it before
    /// sending (from the idempotency key). The caller checks it is not stored yet, so a
    /// retried reply on a platform without idempotency (SMTP) is not sent twice.
    fn planned_external_id(&self, _to: &ReplyTarget) -> Option<String> {
        None
    }
    /// The longest reply the platform takes without asking it (`None`: no limit): what
    /// [`Connector::reply_limit`] falls back to when the platform cannot say.
    fn default_reply_limit(&self) -> Option<ReplyLimit> {
        None
    }
    /// The longest reply the platform takes, asked of it where it is configurable (a
    /// Mastodon instance's `max_characters`). The caller caches the answer per source and
    /// uses [`Connector::default_reply_limit`] when this fails.
    async fn reply_limit(&self) -> Result<Option<ReplyLimit>, ConnectorError> {
        Ok(self.default_reply_limit())
    }
    /// The length of `text` sent as a reply to `to`, counted as the platform counts it
    /// against its limit (with what the connector adds, such as a leading mention).
    fn reply_length(&self, _to: &ReplyTarget, text: &str, limit: ReplyLimit) -> usize {
        limit.measure(text.trim())
    }
}

/// The longest reply a platform takes, in the unit it counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReplyLimit {
    /// Characters, as the platform says it (Mastodon's `max_characters`, whose connector
    /// counts them as Mastodon does: links as 23, user-perceived characters; unicode
    /// scalar values where a connector does not count its own way).
    Characters(usize),
    /// Extended grapheme clusters (Bluesky's 300 for a post:
    /// <https://docs.bsky.app/docs/advanced-guides/post-richtext>).
    Graphemes(usize),
}

impl ReplyLimit {
    /// The most the platform takes.
    pub fn max(self) -> usize {
        match self {
            ReplyLimit::Characters(max) | ReplyLimit::Graphemes(max) => max,
        }
    }

    /// The length of `text` in this limit's unit.
    pub fn measure(self, text: &str) -> usize {
        match self {
            ReplyLimit::Characters(_) => text.chars().count(),
            ReplyLimit::Graphemes(_) => {
                unicode_segmentation::UnicodeSegmentation::graphemes(text, true).count()
            }
        }
    }

    /// The unit, for messages ("500 characters").
    pub fn unit(self) -> &'static str {
        match self {
            ReplyLimit::Characters(_) => "characters",
            ReplyLimit::Graphemes(_) => "graphemes",
        }
    }
}

/// A configuration error: the field (within the source's config) and what is wrong.
pub type ConfigProblem = (String, String);

/// Reads a source's config into `T`; a problem names the field it is about.
pub fn read_config<T: serde::de::DeserializeOwned>(
    config: &serde_json::Value,
    default_field: &str,
) -> Result<T, ConfigProblem> {
    serde_path_to_error::deserialize(config.clone()).map_err(|err| {
        let path = err.path().to_string();
        let message = without_value(&err.inner().to_string());
        let (field, message) = config_error(&message, default_field);
        if path.is_empty() || path == "." {
            (field, message)
        } else {
            let field = path.split(['.', '[']).next().unwrap_or(&path).to_owned();
            (field, message)
        }
    })
}

/// A serde "invalid type/value" message without the value it quotes: the field may be a
/// secret (a password given as a number is still the password), and the message goes back
/// to the caller and into logs. `invalid type: integer `123`, expected a string` becomes
/// `invalid type: integer, expected a string`.
fn without_value(message: &str) -> String {
    for prefix in ["invalid type: ", "invalid value: ", "invalid length "] {
        let Some(rest) = message.strip_prefix(prefix) else {
            continue;
        };
        let (got, expected) = rest.split_once(", expected").unwrap_or((rest, ""));
        let kind = got.split(['`', '"']).next().unwrap_or(got).trim_end();
        let expected = if expected.is_empty() {
            String::new()
        } else {
            format!(", expected{expected}")
        };
        return format!("{prefix}{kind}{expected}");
    }
    message.to_owned()
}

/// Turns a serde error about a source's config into the field it names and a message.
pub fn config_error(message: &str, default_field: &str) -> ConfigProblem {
    let named = |prefix: &str| {
        let rest = message.split(prefix).nth(1)?;
        let field = rest.split('`').next()?;
        Some(field.to_owned())
    };
    if let Some(field) = named("unknown field `") {
        let known = message
            .split("expected ")
            .nth(1)
            .map(|known| {
                known
                    .split(" at line")
                    .next()
                    .unwrap_or(known)
                    .replace('`', "")
            })
            .unwrap_or_default();
        return (
            field.clone(),
            format!("there is no setting `{field}` (known: {known})"),
        );
    }
    if let Some(field) = named("missing field `") {
        return (field.clone(), format!("`{field}` is required"));
    }
    let message = message.split(" at line").next().unwrap_or(message);
    (default_field.to_owned(), message.to_owned())
}

/// Drops the later of two values equal but for case, keeping the first spelling: each
/// configured hashtag, keyword or domain is a stream with its own place in the cursor,
/// and two copies of one stream would take turns overwriting each other's place.
pub fn drop_repeats(values: &mut Vec<String>) {
    let mut seen = std::collections::HashSet::new();
    values.retain(|value| seen.insert(value.to_lowercase()));
}

/// Checks that `value` is an http(s) URL.
pub fn check_http_url(field: &str, value: &str) -> Result<(), ConfigProblem> {
    match reqwest::Url::parse(value.trim()) {
        Ok(url) if matches!(url.scheme(), "http" | "https") && url.host_str().is_some() => Ok(()),
        _ => Err((field.to_owned(), format!("`{value}` is not an http(s) URL"))),
    }
}

/// Who a reply of a channel goes to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Recipient {
    /// The author's handle (`@name@instance`).
    Handle,
    /// The author's address: the answered item's raw `email` (or `from`), else the
    /// identity's platform id without `mailto:`.
    Address,
}

/// How a registry entry builds its connector from a configuration (settings and secrets
/// merged) and the outbound guard.
pub type BuildFn =
    fn(&serde_json::Value, &outbound::Outbound) -> Result<Box<dyn Connector>, ConfigProblem>;

/// One channel with a connector, declared in one place: how its configuration is checked,
/// which settings are secrets (and the endpoint settings each is bound to), what a source
/// of it can do at most, how its connector is built, and what a reply needs.
///
/// Adding a channel: a new file in `connectors/src/` with its connector and config type
/// (`pub mod` it above), a [`Channel`] variant with its stored name, and one entry in
/// [`REGISTRY`]. Everything else (`check_config`, `build`, `secret_fields`, the source
/// rules and replies in `rapport`) reads the entry.
pub struct ChannelSpec {
    pub channel: Channel,
    /// What a source of this channel can do at most (a connector may report less, e.g.
    /// no replies without an SMTP server): `pull` sources are scheduled, `webhook` ones
    /// receive deliveries on their address instead.
    pub capabilities: Capabilities,
    /// The settings that are secrets: write-only, stored apart, never returned, and bound
    /// to the endpoint settings they are sent to. The one place that says which they are.
    pub secrets: &'static [SecretField],
    /// Checks a configuration (settings and secrets merged); a problem names its field.
    pub check: fn(&serde_json::Value) -> Result<(), ConfigProblem>,
    /// Builds the connector; every connection it opens goes through the outbound guard.
    pub build: BuildFn,
    /// What to set so a source of this channel can reply, said when it cannot (`""` when
    /// there is nothing to set).
    pub reply_setup: &'static str,
    /// Who a reply goes to.
    pub recipient: Recipient,
}

/// Every channel that has a connector, one entry each.
pub static REGISTRY: &[ChannelSpec] = &[
    ChannelSpec {
        channel: Channel::Rss,
        capabilities: Capabilities {
            pull: true,
            webhook: false,
            reply: false,
        },
        secrets: &[],
        check: |config| feed::FeedConfig::parse(config).map(drop),
        build: |config, outbound| {
            Ok(Box::new(feed::FeedConnector::new(
                outbound.client().clone(),
                feed::FeedConfig::parse(config)?,
            )))
        },
        reply_setup: "",
        recipient: Recipient::Address,
    },
    ChannelSpec {
        channel: Channel::Mastodon,
        capabilities: Capabilities {
            pull: true,
            webhook: false,
            reply: true,
        },
        // The token goes, as a bearer token, to base_url.
        secrets: &[SecretField {
            name: "access_token",
            bound_to: &["base_url"],
        }],
        check: |config| mastodon::MastodonConfig::parse(config).map(drop),
        build: |config, outbound| {
            Ok(Box::new(mastodon::MastodonConnector::new(
                outbound.client().clone(),
                mastodon::MastodonConfig::parse(config)?,
            )))
        },
        reply_setup: "",
        recipient: Recipient::Handle,
    },
    ChannelSpec {
        channel: Channel::Email,
        capabilities: Capabilities {
            pull: true,
            webhook: false,
            reply: true,
        },
        // The password goes to the IMAP server and, for replies, to the SMTP server;
        // `tls: false` would send it in the clear; a new username is another account.
        secrets: &[SecretField {
            name: "password",
            bound_to: &[
                "imap_host",
                "imap_port",
                "tls",
                "username",
                "smtp_host",
                "smtp_port",
            ],
        }],
        check: |config| email::EmailConfig::parse(config).map(drop),
        build: |config, outbound| {
            Ok(Box::new(email::EmailConnector::new(
                email::EmailConfig::parse(config)?,
                outbound.policy().clone(),
                outbound.wait(),
            )))
        },
        reply_setup: " (set smtp_host and smtp_port)",
        recipient: Recipient::Address,
    },
    ChannelSpec {
        channel: Channel::Webhook,
        capabilities: Capabilities {
            pull: false,
            webhook: true,
            reply: true,
        },
        // Replies POSTed to reply_url are signed with the secret.
        secrets: &[SecretField {
            name: "secret",
            bound_to: &["reply_url"],
        }],
        check: |config| webhook_config(config).map(drop),
        build: |config, outbound| {
            let (secret, reply_url) = webhook_config(config)?;
            Ok(Box::new(webhook::WebhookConnector::new(
                outbound.client().clone(),
                secret,
                reply_url,
            )))
        },
        reply_setup: " (set a reply_url)",
        recipient: Recipient::Address,
    },
    ChannelSpec {
        channel: Channel::Bluesky,
        capabilities: Capabilities {
            pull: true,
            webhook: false,
            reply: true,
        },
        // The app password logs in, at `service`, as `identifier`.
        secrets: &[SecretField {
            name: "app_password",
            bound_to: &["service", "identifier"],
        }],
        check: |config| bluesky::BlueskyConfig::parse(config).map(drop),
        build: |config, outbound| {
            Ok(Box::new(bluesky::BlueskyConnector::new(
                outbound.client().clone(),
                bluesky::BlueskyConfig::parse(config)?,
            )))
        },
        reply_setup: "",
        recipient: Recipient::Handle,
    },
    ChannelSpec {
        channel: Channel::Reddit,
        capabilities: Capabilities {
            pull: true,
            webhook: false,
            reply: true,
        },
        // Both go to the token endpoint (`auth_url`) with the app's id and the account's
        // name; the token they give goes to `base_url`.
        secrets: &[
            SecretField {
                name: "client_secret",
                bound_to: &["auth_url", "base_url", "client_id"],
            },
            SecretField {
                name: "password",
                bound_to: &["auth_url", "base_url", "username"],
            },
        ],
        check: |config| reddit::RedditConfig::parse(config).map(drop),
        build: |config, outbound| {
            Ok(Box::new(reddit::RedditConnector::new(
                outbound.client().clone(),
                reddit::RedditConfig::parse(config)?,
            )))
        },
        reply_setup: "",
        recipient: Recipient::Handle,
    },
    ChannelSpec {
        channel: Channel::HackerNews,
        capabilities: Capabilities {
            pull: true,
            webhook: false,
            reply: false,
        },
        secrets: &[],
        check: |config| hackernews::HackerNewsConfig::parse(config).map(drop),
        build: |config, outbound| {
            Ok(Box::new(hackernews::HackerNewsConnector::new(
                outbound.client().clone(),
                hackernews::HackerNewsConfig::parse(config)?,
            )))
        },
        reply_setup: " (Hacker News has no API for posting: answer on the item's page, its url)",
        recipient: Recipient::Handle,
    },
    ChannelSpec {
        channel: Channel::Matrix,
        capabilities: Capabilities {
            pull: true,
            webhook: false,
            reply: true,
        },
        // The token goes, as a bearer token, to the homeserver.
        secrets: &[SecretField {
            name: "access_token",
            bound_to: &["homeserver"],
        }],
        check: |config| matrix::MatrixConfig::parse(config).map(drop),
        build: |config, outbound| {
            Ok(Box::new(matrix::MatrixConnector::new(
                outbound.client().clone(),
                matrix::MatrixConfig::parse(config)?,
            )))
        },
        reply_setup: "",
        recipient: Recipient::Handle,
    },
    ChannelSpec {
        channel: Channel::Github,
        // Webhook deliveries only with a `webhook_secret` (the connector says).
        capabilities: Capabilities {
            pull: true,
            webhook: true,
            reply: true,
        },
        // The token goes, as a bearer token, to base_url. The webhook secret goes nowhere
        // (deliveries are checked against it), so it is bound to no setting.
        secrets: &[
            SecretField {
                name: "token",
                bound_to: &["base_url"],
            },
            SecretField {
                name: "webhook_secret",
                bound_to: &[],
            },
        ],
        check: |config| github::GithubConfig::parse(config).map(drop),
        build: |config, outbound| {
            Ok(Box::new(github::GithubConnector::new(
                outbound.client().clone(),
                github::GithubConfig::parse(config)?,
            )))
        },
        reply_setup: "",
        recipient: Recipient::Handle,
    },
    ChannelSpec {
        channel: Channel::Discourse,
        // Webhook deliveries only with a `webhook_secret` (the connector says).
        capabilities: Capabilities {
            pull: true,
            webhook: true,
            reply: true,
        },
        // The key goes, as the Api-Key header, to base_url, and acts as api_username. The
        // webhook secret goes nowhere (deliveries are checked against it).
        secrets: &[
            SecretField {
                name: "api_key",
                bound_to: &["base_url", "api_username"],
            },
            SecretField {
                name: "webhook_secret",
                bound_to: &[],
            },
        ],
        check: |config| discourse::DiscourseConfig::parse(config).map(drop),
        // The key is a custom header, which reqwest would carry along a redirect to any
        // host: the client follows redirects within the forum's origin only.
        build: |config, outbound| {
            Ok(Box::new(discourse::DiscourseConnector::new(
                outbound.same_origin_client().clone(),
                discourse::DiscourseConfig::parse(config)?,
            )))
        },
        reply_setup: "",
        recipient: Recipient::Handle,
    },
    ChannelSpec {
        channel: Channel::Telegram,
        // Webhook deliveries in `mode: "webhook"` (the connector says); the sync then sets
        // the webhook instead of polling.
        capabilities: Capabilities {
            pull: true,
            webhook: true,
            reply: true,
        },
        // The token is part of every request's path at base_url; the webhook secret is
        // given to that Bot API by setWebhook.
        secrets: &[
            SecretField {
                name: "bot_token",
                bound_to: &["base_url"],
            },
            SecretField {
                name: "webhook_secret",
                bound_to: &["base_url"],
            },
        ],
        check: |config| telegram::TelegramConfig::parse(config).map(drop),
        build: |config, outbound| {
            Ok(Box::new(telegram::TelegramConnector::new(
                outbound.client().clone(),
                telegram::TelegramConfig::parse(config)?,
            )))
        },
        reply_setup: "",
        recipient: Recipient::Handle,
    },
    ChannelSpec {
        channel: Channel::Youtube,
        capabilities: Capabilities {
            pull: true,
            webhook: false,
            reply: true,
        },
        // The key goes as a query parameter, the token as a bearer token, to base_url.
        secrets: &[
            SecretField {
                name: "api_key",
                bound_to: &["base_url"],
            },
            SecretField {
                name: "access_token",
                bound_to: &["base_url"],
            },
        ],
        check: |config| youtube::YoutubeConfig::parse(config).map(drop),
        build: |config, outbound| {
            Ok(Box::new(youtube::YoutubeConnector::new(
                outbound.client().clone(),
                youtube::YoutubeConfig::parse(config)?,
            )))
        },
        reply_setup: " (set an OAuth access_token with the youtube.force-ssl scope: an api_key can only read)",
        recipient: Recipient::Handle,
    },
    ChannelSpec {
        channel: Channel::X,
        capabilities: Capabilities {
            pull: true,
            webhook: false,
            reply: true,
        },
        // The token goes, as a bearer token, to base_url, and speaks for user_id's account
        // (its mentions are read, its posts are outbound): another account needs its token.
        secrets: &[SecretField {
            name: "bearer_token",
            bound_to: &["base_url", "user_id"],
        }],
        check: |config| x::XConfig::parse(config).map(drop),
        build: |config, outbound| {
            Ok(Box::new(x::XConnector::new(
                outbound.client().clone(),
                x::XConfig::parse(config)?,
            )))
        },
        reply_setup: "",
        recipient: Recipient::Handle,
    },
];

/// The registry entry of `channel`; `None` for a channel without a connector (yet).
pub fn spec(channel: Channel) -> Option<&'static ChannelSpec> {
    REGISTRY.iter().find(|spec| spec.channel == channel)
}

/// Whether sources of `channel` are pulled on a schedule (not webhook-fed).
pub fn is_pulled(channel: Channel) -> bool {
    spec(channel).is_some_and(|spec| spec.capabilities.pull)
}

/// Checks a source's configuration (settings and secrets merged) for `channel`.
pub fn check_config(channel: Channel, config: &serde_json::Value) -> Result<(), ConfigProblem> {
    match spec(channel) {
        Some(spec) => (spec.check)(config),
        None => Err((
            "channel".to_owned(),
            format!(
                "the {} channel has no connector yet; available: {}",
                channel.as_str(),
                REGISTRY
                    .iter()
                    .map(|spec| spec.channel.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        )),
    }
}

fn webhook_config(
    config: &serde_json::Value,
) -> Result<(webhook::Secret, Option<String>), ConfigProblem> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct WebhookConfig {
        secret: String,
        #[serde(default)]
        reply_url: Option<String>,
    }
    if config.get("secret").is_none() {
        return Err((
            "secret".to_owned(),
            "a webhook source needs a signing secret: {\"secret\": \"whsec_…\"}".to_owned(),
        ));
    }
    let parsed: WebhookConfig = read_config(config, "secret")?;
    let secret =
        webhook::Secret::parse(&parsed.secret).map_err(|message| ("secret".to_owned(), message))?;
    if let Some(url) = &parsed.reply_url {
        check_http_url("reply_url", url)?;
    }
    Ok((secret, parsed.reply_url))
}

/// A setting that is a secret (write-only, stored apart, never returned) and the settings
/// naming the endpoint it is sent to. A stored secret stays bound to that endpoint: a
/// change of any `bound_to` setting needs the secret given again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SecretField {
    pub name: &'static str,
    pub bound_to: &'static [&'static str],
}

/// The secrets of `channel`'s configuration and the endpoint settings each is bound to
/// (its [`ChannelSpec::secrets`]).
pub fn secret_fields(channel: Channel) -> &'static [SecretField] {
    spec(channel).map_or(&[], |spec| spec.secrets)
}

/// Builds the connector of a source from its configuration (settings and secrets merged).
/// Every connection it opens goes through `outbound` (the guarded client, or the policy for
/// connectors with their own sockets).
pub fn build(
    channel: Channel,
    config: &serde_json::Value,
    outbound: &outbound::Outbound,
) -> Result<Box<dyn Connector>, ConnectorError> {
    let spec = spec(channel).ok_or(ConnectorError::Unsupported("this channel"))?;
    (spec.build)(config, outbound)
        .map_err(|(field, message)| ConnectorError::Config(format!("{field}: {message}")))
}

#[cfg(test)]
mod config_tests {
    use super::*;

    #[test]
    fn a_config_error_never_quotes_the_value_given() {
        #[derive(serde::Deserialize, Debug)]
        #[allow(dead_code)]
        struct Secretive {
            password: String,
            tags: Vec<String>,
        }
        for (config, field) in [
            (
                serde_json::json!({ "password": 12345678, "tags": [] }),
                "password",
            ),
            (
                serde_json::json!({ "password": "hunter2", "tags": "hunter2" }),
                "tags",
            ),
            (
                serde_json::json!({ "password": true, "tags": [] }),
                "password",
            ),
            (
                serde_json::json!({ "password": 1.5, "tags": [] }),
                "password",
            ),
        ] {
            let (named, message) = read_config::<Secretive>(&config, "config").unwrap_err();
            assert_eq!(named, field);
            for value in ["12345678", "hunter2", "true", "1.5"] {
                assert!(!message.contains(value), "{message}");
            }
            assert!(message.contains("expected"), "{message}");
        }
        assert_eq!(
            without_value("invalid type: integer `123`, expected a string"),
            "invalid type: integer, expected a string"
        );
        assert_eq!(
            without_value("invalid value: string \"x\", expected one of `a`"),
            "invalid value: string, expected one of `a`"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_secret_is_bound_to_settings_its_channel_has() {
        let settings = |channel| match channel {
            Channel::Mastodon => {
                serde_json::json!({"base_url": "https://m.example", "access_token": "t"})
            }
            Channel::Email => serde_json::json!({
                "imap_host": "imap.example", "imap_port": 993, "username": "a@b.example",
                "password": "p", "tls": true, "smtp_host": "smtp.example", "smtp_port": 465
            }),
            Channel::Webhook => serde_json::json!({
                "secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "reply_url": "https://r.example"
            }),
            Channel::Bluesky => serde_json::json!({
                "service": "https://bsky.social", "identifier": "acme.example", "app_password": "p"
            }),
            Channel::Reddit => serde_json::json!({
                "base_url": "https://oauth.reddit.com", "auth_url": "https://www.reddit.com",
                "client_id": "c", "client_secret": "s", "username": "acme", "password": "p"
            }),
            Channel::Matrix => serde_json::json!({
                "homeserver": "https://matrix.example.org", "access_token": "t",
                "rooms": ["#support:matrix.example.org"]
            }),
            Channel::Github => serde_json::json!({
                "base_url": "https://api.github.com", "token": "t", "repositories": ["acme/widgets"],
                "webhook_secret": "a-webhook-secret-of-some-length"
            }),
            Channel::Discourse => serde_json::json!({
                "base_url": "https://forum.example.com", "api_key": "k", "api_username": "acme",
                "webhook_secret": "a-discourse-webhook-secret"
            }),
            Channel::Telegram => serde_json::json!({
                "base_url": "https://api.telegram.org", "bot_token": "123:AAH",
                "mode": "webhook", "webhook_secret": "s3cr3t_T0ken-x-0123"
            }),
            Channel::Youtube => serde_json::json!({
                "base_url": "https://www.googleapis.com/youtube/v3", "api_key": "AIza",
                "access_token": "ya29", "channel_id": "UCk3f9rY2pLmQx7Zt1Vb8NwA"
            }),
            Channel::X => serde_json::json!({
                "base_url": "https://api.x.com", "bearer_token": "t", "user_id": "2244994945"
            }),
            _ => serde_json::json!({}),
        };
        for &channel in Channel::ALL {
            for field in secret_fields(channel) {
                let config = settings(channel);
                check_config(channel, &config).unwrap();
                assert!(
                    config.get(field.name).is_some(),
                    "{channel:?} {}",
                    field.name
                );
                for endpoint in field.bound_to {
                    assert!(config.get(endpoint).is_some(), "{channel:?} {endpoint}");
                }
            }
        }
    }

    #[test]
    fn the_registry_has_one_entry_per_channel_and_agrees_with_its_connectors() {
        for (i, spec) in REGISTRY.iter().enumerate() {
            assert!(
                REGISTRY[i + 1..]
                    .iter()
                    .all(|other| other.channel != spec.channel),
                "{:?} is registered twice",
                spec.channel
            );
        }
        assert_eq!(
            REGISTRY.iter().map(|spec| spec.channel).collect::<Vec<_>>(),
            [
                Channel::Rss,
                Channel::Mastodon,
                Channel::Email,
                Channel::Webhook,
                Channel::Bluesky,
                Channel::Reddit,
                Channel::HackerNews,
                Channel::Matrix,
                Channel::Github,
                Channel::Discourse,
                Channel::Telegram,
                Channel::Youtube,
                Channel::X,
            ]
        );
        assert!(is_pulled(Channel::Email) && !is_pulled(Channel::Webhook));
        assert!(!is_pulled(Channel::Phone));
        match check_config(Channel::Phone, &serde_json::json!({})) {
            Err((field, message)) => {
                assert_eq!(field, "channel");
                assert!(
                    message.ends_with(
                        "available: rss, mastodon, email, webhook, bluesky, reddit, hacker_news, matrix, github, discourse, telegram, youtube, x"
                    ),
                    "{message}"
                );
            }
            Ok(()) => panic!("a channel without a connector has no valid config"),
        }
    }

    #[test]
    fn every_channel_name_parses_back() {
        for &channel in Channel::ALL {
            assert_eq!(Channel::parse(channel.as_str()), Some(channel));
        }
        assert_eq!(Channel::parse("myspace"), None);
    }

    #[test]
    fn every_channels_json_is_its_stored_name() {
        for &channel in Channel::ALL {
            let json = serde_json::to_value(channel).unwrap();
            assert_eq!(json, serde_json::json!(channel.as_str()));
            assert_eq!(serde_json::from_value::<Channel>(json).unwrap(), channel);
        }
    }
}
