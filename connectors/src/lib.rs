//! Connectors: one module per channel that fetches and parses a platform's data into
//! [`InboundItem`]s and sends replies. Pure I/O and parsing: a connector never touches the
//! database; the ingest pipeline of the `rapport` crate stores what it returns.

pub mod webhook;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// The channels Rapport knows. Stored as their [`Channel::as_str`] name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Channel {
    Mastodon,
    Bluesky,
    Reddit,
    HackerNews,
    Rss,
    Email,
    Webhook,
    Phone,
    Meeting,
    Manual,
}

impl Channel {
    /// Every channel, in a stable order.
    pub const ALL: [Channel; 10] = [
        Channel::Mastodon,
        Channel::Bluesky,
        Channel::Reddit,
        Channel::HackerNews,
        Channel::Rss,
        Channel::Email,
        Channel::Webhook,
        Channel::Phone,
        Channel::Meeting,
        Channel::Manual,
    ];

    /// The stable name stored in the database and used in configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Mastodon => "mastodon",
            Channel::Bluesky => "bluesky",
            Channel::Reddit => "reddit",
            Channel::HackerNews => "hacker_news",
            Channel::Rss => "rss",
            Channel::Email => "email",
            Channel::Webhook => "webhook",
            Channel::Phone => "phone",
            Channel::Meeting => "meeting",
            Channel::Manual => "manual",
        }
    }

    /// Parses a stored name; `None` for an unknown one.
    pub fn parse(name: &str) -> Option<Channel> {
        Channel::ALL
            .into_iter()
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
}

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
}

/// What a reply answers.
#[derive(Clone, Debug, PartialEq)]
pub struct ReplyTarget {
    pub external_id: String,
    pub thread_key: Option<String>,
    pub recipient: Option<String>,
}

/// A reply the platform accepted.
#[derive(Clone, Debug, PartialEq)]
pub struct Sent {
    pub external_id: String,
    pub url: Option<String>,
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
}

/// One channel's connector. Implementations are registered by channel name.
#[async_trait::async_trait]
pub trait Connector: Send + Sync {
    fn channel(&self) -> Channel;
    fn capabilities(&self) -> Capabilities;
    /// Fetches the items after `cursor` (from the start when `None`).
    async fn pull(&self, cursor: Option<&Cursor>) -> Result<Pull, ConnectorError>;
    /// Sends `text` as an answer to `to`.
    async fn reply(&self, to: &ReplyTarget, text: &str) -> Result<Sent, ConnectorError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_channel_name_parses_back() {
        for channel in Channel::ALL {
            assert_eq!(Channel::parse(channel.as_str()), Some(channel));
        }
        assert_eq!(Channel::parse("myspace"), None);
    }
}
