//! The webhook channel (push): web forms, chat widgets and other systems POST JSON to
//! `/webhooks/:source_id`. This module verifies signatures over the raw body and parses
//! the documented payload; the HTTP layer and the pipeline do the rest.
//!
//! Two signature schemes are accepted:
//! - [Standard Webhooks](https://www.standardwebhooks.com/) (`webhook-id`,
//!   `webhook-timestamp`, `webhook-signature: v1,<base64 HMAC-SHA256>` over
//!   `id.timestamp.body`, a 5-minute tolerance, several space-separated signatures for key
//!   rotation); the secret is `whsec_` + base64 of the key.
//! - GitHub's [`X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the body>`](https://docs.github.com/en/webhooks/using-webhooks/validating-webhook-deliveries),
//!   keyed with the secret's bytes as written.
//!
//! Comparisons are constant-time (`Mac::verify_slice`).
//!
//! [`Secret::verify`] says which scheme verified, and [`Verified::delivery_id`] gives the
//! id to deduplicate on, taken only from what that scheme signs: the `webhook-id` for
//! Standard Webhooks (it is signed with the body), the body's SHA-256 for GitHub (its
//! signature covers the body alone, so the unsigned `X-GitHub-Delivery` header could be
//! changed at will to replay a captured delivery).

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;

use crate::{Author, InboundItem};

type HmacSha256 = Hmac<Sha256>;

/// How far a `webhook-timestamp` may be from now, either way.
pub const TOLERANCE_SECS: i64 = 5 * 60;

/// The largest accepted text, in characters.
pub const MAX_TEXT_CHARS: usize = 100_000;

/// Why a delivery was refused before anything was stored.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("the delivery carries no signature (webhook-signature or X-Hub-Signature-256)")]
    Missing,
    #[error("the {0} header is missing or malformed")]
    Header(&'static str),
    #[error("the webhook-timestamp is more than 5 minutes away from the server's clock")]
    Stale,
    #[error("no signature matches the source's secret")]
    Mismatch,
}

/// How a delivery was verified, with what its signature covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verified {
    /// Standard Webhooks: `webhook-id`, timestamp and body are signed together.
    Standard { webhook_id: String },
    /// GitHub's `X-Hub-Signature-256`: the body alone is signed.
    HubSignature { body_sha256: String },
}

impl Verified {
    /// The id that makes a replay of this delivery idempotent, covered by its signature:
    /// the `webhook-id`, or `sha256:<hex>` of the body.
    pub fn delivery_id(&self) -> String {
        match self {
            Verified::Standard { webhook_id } => webhook_id.clone(),
            Verified::HubSignature { body_sha256 } => format!("sha256:{body_sha256}"),
        }
    }
}

/// The headers a delivery may be signed with.
#[derive(Debug, Default, Clone)]
pub struct SignatureHeaders<'a> {
    pub webhook_id: Option<&'a str>,
    pub webhook_timestamp: Option<&'a str>,
    pub webhook_signature: Option<&'a str>,
    pub hub_signature_256: Option<&'a str>,
}

/// A source's signing secret.
#[derive(Clone)]
pub struct Secret {
    /// The raw secret as configured (GitHub style keys with its bytes).
    text: String,
    /// The decoded key of a `whsec_` secret (Standard Webhooks).
    standard_key: Option<Vec<u8>>,
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl Secret {
    /// Parses a configured secret: `whsec_<base64>` for Standard Webhooks, or any other
    /// string of 16 characters or more (GitHub signs with the string's bytes).
    pub fn parse(text: &str) -> Result<Secret, String> {
        let text = text.trim();
        let standard_key = match text.strip_prefix("whsec_") {
            Some(encoded) => Some(
                B64.decode(encoded)
                    .map_err(|_| "a whsec_ secret must be whsec_ followed by base64".to_owned())?,
            ),
            None => None,
        };
        if standard_key.as_ref().is_some_and(|key| key.len() < 16) || text.len() < 16 {
            return Err("the secret is too short: use at least 16 random bytes".to_owned());
        }
        Ok(Secret {
            text: text.to_owned(),
            standard_key,
        })
    }

    /// The Standard Webhooks signature (`v1,<base64>`) of a delivery, for senders and tests.
    pub fn sign_standard(&self, id: &str, timestamp: &str, body: &[u8]) -> Option<String> {
        let mac = self.standard_mac(id, timestamp, body)?;
        Some(format!("v1,{}", B64.encode(mac.finalize().into_bytes())))
    }

    /// The GitHub signature (`sha256=<hex>`) of a body.
    pub fn sign_github(&self, body: &[u8]) -> String {
        let mut mac = HmacSha256::new_from_slice(self.text.as_bytes())
            .expect("HMAC takes keys of any length");
        mac.update(body);
        format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
    }

    fn standard_mac(&self, id: &str, timestamp: &str, body: &[u8]) -> Option<HmacSha256> {
        let key = self.standard_key.as_ref()?;
        let mut mac = HmacSha256::new_from_slice(key).expect("HMAC takes keys of any length");
        mac.update(id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.as_bytes());
        mac.update(b".");
        mac.update(body);
        Some(mac)
    }

    /// Checks a delivery's signature over the raw `body` at time `now`. Standard Webhooks
    /// headers win when present; otherwise `X-Hub-Signature-256` is checked. Says which
    /// scheme verified, with what it signed (see [`Verified::delivery_id`]).
    pub fn verify(
        &self,
        headers: &SignatureHeaders<'_>,
        body: &[u8],
        now: DateTime<Utc>,
    ) -> Result<Verified, VerifyError> {
        if let Some(signatures) = headers.webhook_signature {
            let id = headers
                .webhook_id
                .filter(|id| !id.is_empty())
                .ok_or(VerifyError::Header("webhook-id"))?;
            let timestamp = headers
                .webhook_timestamp
                .ok_or(VerifyError::Header("webhook-timestamp"))?;
            let seconds: i64 = timestamp
                .trim()
                .parse()
                .map_err(|_| VerifyError::Header("webhook-timestamp"))?;
            // Any i64 may arrive: the skew is computed without overflowing.
            let skew = now.timestamp().checked_sub(seconds).map(i64::unsigned_abs);
            if skew.is_none_or(|skew| skew > TOLERANCE_SECS.unsigned_abs()) {
                return Err(VerifyError::Stale);
            }
            let mac = self
                .standard_mac(id, timestamp, body)
                .ok_or(VerifyError::Mismatch)?;
            let matches = signatures
                .split_whitespace()
                .filter_map(|signature| signature.strip_prefix("v1,"))
                .any(|encoded| {
                    B64.decode(encoded)
                        .is_ok_and(|bytes| mac.clone().verify_slice(&bytes).is_ok())
                });
            return if matches {
                Ok(Verified::Standard {
                    webhook_id: id.to_owned(),
                })
            } else {
                Err(VerifyError::Mismatch)
            };
        }
        if let Some(signature) = headers.hub_signature_256 {
            let hex_digest = signature
                .trim()
                .strip_prefix("sha256=")
                .ok_or(VerifyError::Header("X-Hub-Signature-256"))?;
            let bytes =
                hex::decode(hex_digest).map_err(|_| VerifyError::Header("X-Hub-Signature-256"))?;
            let mut mac = HmacSha256::new_from_slice(self.text.as_bytes())
                .expect("HMAC takes keys of any length");
            mac.update(body);
            mac.verify_slice(&bytes)
                .map_err(|_| VerifyError::Mismatch)?;
            return Ok(Verified::HubSignature {
                body_sha256: hex::encode(<Sha256 as sha2::Digest>::digest(body)),
            });
        }
        Err(VerifyError::Missing)
    }
}

/// A payload that does not follow the documented shape; names the field.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct PayloadError {
    pub field: &'static str,
    pub message: String,
}

fn field_error(field: &'static str, message: impl Into<String>) -> PayloadError {
    PayloadError {
        field,
        message: message.into(),
    }
}

/// Parses the documented JSON shape
/// `{"name", "email", "phone", "text", "url", "thread_id", "occurred_at"}` (only `text` is
/// required) into an inbound item. `delivery_id` (the `webhook-id`, or a hash of the
/// body when the sender gives none) becomes the external id, so a replay is stored once.
pub fn parse(
    body: &[u8],
    delivery_id: &str,
    received_at: DateTime<Utc>,
) -> Result<InboundItem, PayloadError> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|err| field_error("body", format!("not valid JSON: {err}")))?;
    let Value::Object(object) = &value else {
        return Err(field_error("body", "must be a JSON object"));
    };
    let text_field = |field: &'static str| -> Result<Option<String>, PayloadError> {
        match object.get(field) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(text)) => {
                Ok(Some(text.trim().to_owned()).filter(|text| !text.is_empty()))
            }
            Some(_) => Err(field_error(field, "must be a string")),
        }
    };
    let text = text_field("text")?
        .ok_or_else(|| field_error("text", "is required and must not be empty"))?;
    if text.chars().count() > MAX_TEXT_CHARS {
        return Err(field_error(
            "text",
            format!("is longer than {MAX_TEXT_CHARS} characters"),
        ));
    }
    let name = text_field("name")?;
    let email = text_field("email")?;
    if let Some(email) = &email {
        let valid = email
            .split_once('@')
            .is_some_and(|(local, domain)| !local.is_empty() && domain.contains('.'));
        if !valid {
            return Err(field_error(
                "email",
                format!("`{email}` is not an e-mail address"),
            ));
        }
    }
    let phone = text_field("phone")?;
    let url = text_field("url")?;
    let thread_id = text_field("thread_id")?;
    let occurred_at = match text_field("occurred_at")? {
        Some(text) => DateTime::parse_from_rfc3339(&text)
            .map_err(|_| {
                field_error(
                    "occurred_at",
                    format!("`{text}` is not an RFC 3339 time such as 2026-11-23T10:00:00Z"),
                )
            })?
            .with_timezone(&Utc),
        None => received_at,
    };
    // The sender is known by e-mail, else phone, else name; anonymous otherwise.
    let platform_id = email
        .as_ref()
        .map(|email| format!("mailto:{}", email.to_lowercase()))
        .or_else(|| {
            phone
                .as_ref()
                .map(|phone| format!("tel:{}", phone.replace([' ', '-', '(', ')', '.'], "")))
        })
        .unwrap_or_else(|| format!("anonymous:{delivery_id}"));
    Ok(InboundItem {
        external_id: delivery_id.to_owned(),
        author: Author {
            platform_id,
            handle: None,
            display_name: name,
            profile_url: None,
            avatar_url: None,
            email,
            phone,
            links: Vec::new(),
        },
        outbound: false,
        kind: "message".to_owned(),
        subject: None,
        text,
        html: None,
        url,
        language: None,
        occurred_at,
        thread_key: thread_id,
        in_reply_to: None,
        raw: value,
    })
}

/// The delivery id of a reply: its idempotency key, prefixed.
fn reply_id(to: &crate::ReplyTarget) -> String {
    format!("rpl_{}", to.idempotency_key)
}

/// A webhook source's outbound side: a reply is POSTed as JSON to the configured
/// `reply_url`, signed the Standard Webhooks way with the source's secret (`webhook-id` is
/// the idempotency key, so the receiver can drop a retried delivery).
pub struct WebhookConnector {
    client: reqwest::Client,
    secret: Secret,
    reply_url: Option<String>,
}

impl WebhookConnector {
    pub fn new(client: reqwest::Client, secret: Secret, reply_url: Option<String>) -> Self {
        WebhookConnector {
            client,
            secret,
            reply_url,
        }
    }
}

#[async_trait::async_trait]
impl crate::Connector for WebhookConnector {
    fn channel(&self) -> crate::Channel {
        crate::Channel::Webhook
    }

    fn capabilities(&self) -> crate::Capabilities {
        crate::Capabilities {
            pull: false,
            webhook: true,
            reply: self.reply_url.is_some(),
        }
    }

    async fn pull(
        &self,
        _cursor: Option<&crate::Cursor>,
    ) -> Result<crate::Pull, crate::ConnectorError> {
        Err(crate::ConnectorError::Unsupported(
            "pull from a webhook source: deliveries arrive on its address",
        ))
    }

    fn planned_external_id(&self, to: &crate::ReplyTarget) -> Option<String> {
        Some(reply_id(to))
    }

    async fn reply(
        &self,
        to: &crate::ReplyTarget,
        text: &str,
    ) -> Result<crate::Sent, crate::ConnectorError> {
        let Some(url) = &self.reply_url else {
            return Err(crate::ConnectorError::Unsupported(
                "reply on a webhook source without a reply_url",
            ));
        };
        let now = Utc::now();
        let id = reply_id(to);
        let body = serde_json::json!({
            "type": "reply",
            "id": id,
            "text": text.trim(),
            "in_reply_to": to.external_id,
            "thread_id": to.thread_key,
            "to": to.recipient,
            "sent_at": now,
        })
        .to_string();
        let timestamp = now.timestamp().to_string();
        let mut request = self
            .client
            .post(url)
            .header("content-type", "application/json")
            .header("webhook-id", &id)
            .header("webhook-timestamp", &timestamp)
            .header(
                "x-hub-signature-256",
                self.secret.sign_github(body.as_bytes()),
            );
        if let Some(signature) = self.secret.sign_standard(&id, &timestamp, body.as_bytes()) {
            request = request.header("webhook-signature", signature);
        }
        let response = request
            .body(body)
            .send()
            .await
            .map_err(crate::http::transport)?;
        crate::http::check_status(&response, now)?;
        Ok(crate::Sent {
            external_id: id,
            url: None,
            text: text.trim().to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // The published Standard Webhooks example: secret, message id, timestamp, payload and
    // the signature their reference libraries produce (https://www.standardwebhooks.com/).
    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
    const TIMESTAMP: &str = "1614265330";
    const BODY: &[u8] = br#"{"test": 2432232314}"#;
    const SIGNATURE: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";

    fn at(seconds: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(seconds, 0).unwrap()
    }

    fn standard<'a>(signature: &'a str, timestamp: &'a str) -> SignatureHeaders<'a> {
        SignatureHeaders {
            webhook_id: Some(ID),
            webhook_timestamp: Some(timestamp),
            webhook_signature: Some(signature),
            hub_signature_256: None,
        }
    }

    #[test]
    fn the_standard_webhooks_known_answer_verifies() {
        let secret = Secret::parse(SECRET).unwrap();
        assert_eq!(
            secret.sign_standard(ID, TIMESTAMP, BODY).unwrap(),
            SIGNATURE
        );
        assert_eq!(
            secret.verify(&standard(SIGNATURE, TIMESTAMP), BODY, at(1_614_265_330)),
            Ok(Verified::Standard {
                webhook_id: ID.to_owned()
            })
        );
    }

    #[test]
    fn one_matching_signature_among_several_is_enough_for_key_rotation() {
        let secret = Secret::parse(SECRET).unwrap();
        let rotated =
            format!("v1,bm90LXRoZS1yaWdodC1zaWduYXR1cmUtYXQtYWxsLi4u {SIGNATURE} v2,ignored");
        assert_eq!(
            secret.verify(&standard(&rotated, TIMESTAMP), BODY, at(1_614_265_330)),
            Ok(Verified::Standard {
                webhook_id: ID.to_owned()
            })
        );
    }

    #[test]
    fn tampering_staleness_and_missing_headers_are_refused() {
        let secret = Secret::parse(SECRET).unwrap();
        let now = at(1_614_265_330);
        assert_eq!(
            secret.verify(
                &standard(SIGNATURE, TIMESTAMP),
                br#"{"test": 2432232315}"#,
                now
            ),
            Err(VerifyError::Mismatch)
        );
        assert_eq!(
            secret.verify(
                &standard(SIGNATURE, TIMESTAMP),
                BODY,
                at(1_614_265_330 + 301)
            ),
            Err(VerifyError::Stale)
        );
        assert_eq!(
            secret.verify(
                &standard(SIGNATURE, TIMESTAMP),
                BODY,
                at(1_614_265_330 - 301)
            ),
            Err(VerifyError::Stale)
        );
        assert_eq!(
            secret.verify(&standard(SIGNATURE, "yesterday"), BODY, now),
            Err(VerifyError::Header("webhook-timestamp"))
        );
        for extreme in ["-9223372036854775808", "9223372036854775807"] {
            assert_eq!(
                secret.verify(&standard(SIGNATURE, extreme), BODY, now),
                Err(VerifyError::Stale),
                "{extreme}"
            );
        }
        let no_id = SignatureHeaders {
            webhook_id: None,
            ..standard(SIGNATURE, TIMESTAMP)
        };
        assert_eq!(
            secret.verify(&no_id, BODY, now),
            Err(VerifyError::Header("webhook-id"))
        );
        assert_eq!(
            secret.verify(&SignatureHeaders::default(), BODY, now),
            Err(VerifyError::Missing)
        );
        let other = Secret::parse("whsec_c2VjcmV0LWtleS1vZi1hbm90aGVyLXNvdXJjZQ==").unwrap();
        assert_eq!(
            other.verify(&standard(SIGNATURE, TIMESTAMP), BODY, now),
            Err(VerifyError::Mismatch)
        );
    }

    #[test]
    fn github_signatures_verify_over_the_raw_body() {
        // HMAC-SHA256 of "Hello, World!" keyed with "It's a Secret to Everybody", the example
        // in GitHub's "Validating webhook deliveries" documentation.
        let secret = Secret::parse("It's a Secret to Everybody").unwrap();
        let expected = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";
        assert_eq!(secret.sign_github(b"Hello, World!"), expected);
        let headers = SignatureHeaders {
            hub_signature_256: Some(expected),
            ..SignatureHeaders::default()
        };
        let verified = secret.verify(&headers, b"Hello, World!", Utc::now());
        assert_eq!(
            verified,
            Ok(Verified::HubSignature {
                // sha256("Hello, World!")
                body_sha256: "dffd6021bb2bd5b0af676290809ec3a53191dd81c7f70a4b28688a362182986f"
                    .to_owned()
            })
        );
        // The dedupe id comes from the signed body, never from a header.
        assert_eq!(
            verified.unwrap().delivery_id(),
            "sha256:dffd6021bb2bd5b0af676290809ec3a53191dd81c7f70a4b28688a362182986f"
        );
        assert_eq!(
            secret.verify(&headers, b"Hello, World?", Utc::now()),
            Err(VerifyError::Mismatch)
        );
        let malformed = SignatureHeaders {
            hub_signature_256: Some("md5=abc"),
            ..SignatureHeaders::default()
        };
        assert_eq!(
            secret.verify(&malformed, b"x", Utc::now()),
            Err(VerifyError::Header("X-Hub-Signature-256"))
        );
    }

    #[test]
    fn secrets_are_checked_and_never_printed() {
        assert!(Secret::parse("short").is_err());
        assert!(Secret::parse("whsec_!!notbase64").is_err());
        assert_eq!(
            format!("{:?}", Secret::parse(SECRET).unwrap()),
            "Secret(***)"
        );
    }

    #[test]
    fn the_documented_payload_parses_and_bad_fields_are_named() {
        let body = br#"{"name": "Ana", "email": "Ana@Example.com", "text": "  Hola  ", "thread_id": "chat-7", "occurred_at": "2026-11-01T09:30:00Z"}"#;
        let item = parse(body, "msg_1", at(0)).unwrap();
        assert_eq!(item.external_id, "msg_1");
        assert_eq!(item.text, "Hola");
        assert_eq!(item.author.platform_id, "mailto:ana@example.com");
        assert_eq!(item.author.display_name.as_deref(), Some("Ana"));
        assert_eq!(item.thread_key.as_deref(), Some("chat-7"));
        assert_eq!(item.occurred_at.to_rfc3339(), "2026-11-01T09:30:00+00:00");
        let anonymous = parse(br#"{"text": "hi"}"#, "msg_2", at(5)).unwrap();
        assert_eq!(
            (anonymous.author.platform_id.as_str(), anonymous.occurred_at),
            ("anonymous:msg_2", at(5))
        );
        for (body, field) in [
            (&br#"{"email": "a@b.example"}"#[..], "text"),
            (br#"{"text": ""}"#, "text"),
            (br#"{"text": 5}"#, "text"),
            (br#"{"text": "x", "email": "nope"}"#, "email"),
            (br#"{"text": "x", "occurred_at": "tuesday"}"#, "occurred_at"),
            (br#"[1]"#, "body"),
            (br#"{"text": "#, "body"),
        ] {
            assert_eq!(
                parse(body, "m", at(0)).unwrap_err().field,
                field,
                "{}",
                String::from_utf8_lossy(body)
            );
        }
    }
}
