//! Connectors: one module per channel that fetches and parses a platform's data into
//! [`InboundItem`]s and sends replies. Pure I/O and parsing: a connector never touches the
//! database; the ingest pipeline of the `rapport` crate stores what it returns.

pub mod email;
pub mod feed;
#[cfg(test)]
mod fuzz;
pub mod http;
pub mod mastodon;
pub mod outbound;
pub mod text;
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

/// One channel's connector. Implementations are registered by channel name.
#[async_trait::async_trait]
pub trait Connector: Send + Sync {
    fn channel(&self) -> Channel;
    fn capabilities(&self) -> Capabilities;
    /// Fetches the items after `cursor` (from the start when `None`).
    async fn pull(&self, cursor: Option<&Cursor>) -> Result<Pull, ConnectorError>;
    /// Sends `text` as an answer to `to`.
    async fn reply(&self, to: &ReplyTarget, text: &str) -> Result<Sent, ConnectorError>;
    /// The external id a reply to `to` will have, when the connector decides it before
    /// sending (from the idempotency key). The caller checks it is not stored yet, so a
    /// retried reply on a platform without idempotency (SMTP) is not sent twice.
    fn planned_external_id(&self, _to: &ReplyTarget) -> Option<String> {
        None
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
        let message = err.inner().to_string();
        let (field, message) = config_error(&message, default_field);
        if path.is_empty() || path == "." {
            (field, message)
        } else {
            let field = path.split(['.', '[']).next().unwrap_or(&path).to_owned();
            (field, message)
        }
    })
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

/// Checks that `value` is an http(s) URL.
pub fn check_http_url(field: &str, value: &str) -> Result<(), ConfigProblem> {
    match reqwest::Url::parse(value.trim()) {
        Ok(url) if matches!(url.scheme(), "http" | "https") && url.host_str().is_some() => Ok(()),
        _ => Err((field.to_owned(), format!("`{value}` is not an http(s) URL"))),
    }
}

/// Checks a source's configuration (settings and secrets merged) for `channel`.
pub fn check_config(channel: Channel, config: &serde_json::Value) -> Result<(), ConfigProblem> {
    match channel {
        Channel::Rss => feed::FeedConfig::parse(config).map(drop),
        Channel::Mastodon => mastodon::MastodonConfig::parse(config).map(drop),
        Channel::Email => email::EmailConfig::parse(config).map(drop),
        Channel::Webhook => webhook_config(config).map(drop),
        other => Err((
            "channel".to_owned(),
            format!(
                "the {} channel has no connector yet; available: rss, mastodon, email, webhook",
                other.as_str()
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

/// The secrets of `channel`'s configuration and the endpoint settings each is bound to.
/// The one place that says which settings are secrets.
pub fn secret_fields(channel: Channel) -> &'static [SecretField] {
    match channel {
        // The token goes, as a bearer token, to base_url.
        Channel::Mastodon => &[SecretField {
            name: "access_token",
            bound_to: &["base_url"],
        }],
        // The password goes to the IMAP server and, for replies, to the SMTP server;
        // `tls: false` would send it in the clear; a new username is another account.
        Channel::Email => &[SecretField {
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
        // Replies POSTed to reply_url are signed with the secret.
        Channel::Webhook => &[SecretField {
            name: "secret",
            bound_to: &["reply_url"],
        }],
        _ => &[],
    }
}

/// Builds the connector of a source from its configuration (settings and secrets merged).
/// Every connection it opens goes through `outbound` (the guarded client, or the policy for
/// connectors with their own sockets).
pub fn build(
    channel: Channel,
    config: &serde_json::Value,
    outbound: &outbound::Outbound,
) -> Result<Box<dyn Connector>, ConnectorError> {
    let client = outbound.client().clone();
    let problem =
        |(field, message): ConfigProblem| ConnectorError::Config(format!("{field}: {message}"));
    Ok(match channel {
        Channel::Rss => Box::new(feed::FeedConnector::new(
            client,
            feed::FeedConfig::parse(config).map_err(problem)?,
        )),
        Channel::Mastodon => Box::new(mastodon::MastodonConnector::new(
            client,
            mastodon::MastodonConfig::parse(config).map_err(problem)?,
        )),
        Channel::Email => Box::new(email::EmailConnector::new(
            email::EmailConfig::parse(config).map_err(problem)?,
            outbound.policy().clone(),
        )),
        Channel::Webhook => {
            let (secret, reply_url) = webhook_config(config).map_err(problem)?;
            Box::new(webhook::WebhookConnector::new(client, secret, reply_url))
        }
        _ => return Err(ConnectorError::Unsupported("this channel")),
    })
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
            _ => serde_json::json!({}),
        };
        for channel in Channel::ALL {
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
    fn every_channel_name_parses_back() {
        for channel in Channel::ALL {
            assert_eq!(Channel::parse(channel.as_str()), Some(channel));
        }
        assert_eq!(Channel::parse("myspace"), None);
    }
}
