//! Answering an ingested item from Rapport: the reply goes out through the connector of
//! the item's source (a Mastodon status, an e-mail over SMTP, a POST to a webhook
//! source's reply URL) and is stored as an outbound interaction in the same conversation.
//!
//! Idempotent: the idempotency key (given, or derived from the answered item and the
//! text) is sent to the platform and makes the sent item's external id, so a retried
//! reply is sent and stored once.

use sha2::{Digest, Sha256};

use super::sync::Syncer;
use crate::domain::{self, Caller, Role};
use crate::error::{Error, Result};
use crate::ids;
use connectors::{ConnectorError, InboundItem, ReplyTarget};
use entity::{interaction, InteractionId};

/// Sends `text` as an answer to interaction `id` and stores it; returns the stored reply.
pub async fn reply(
    syncer: &Syncer,
    caller: &Caller,
    id: InteractionId,
    text: &str,
    idempotency_key: Option<String>,
) -> Result<interaction::Model> {
    caller.require(Role::Agent, "replying")?;
    let text = domain::clean_required("text", text, 10_000)?;
    let db = &syncer.db;
    let target = domain::interaction::get(db, caller, id).await?;
    let (Some(source_id), Some(external_id)) = (target.source_id, target.external_id.clone())
    else {
        return Err(Error::field(
            "interactionId",
            "this interaction was not ingested from a source, so there is nowhere to reply; record your answer with recordInteraction",
        ));
    };
    let source = domain::source::get(db, caller, source_id)
        .await
        .map_err(|_| {
            Error::field(
                "interactionId",
                "the source this interaction came from was deleted",
            )
        })?;
    let channel = source.channel;
    let connector = super::connector(&source, &syncer.outbound)
        .map_err(|err| Error::field("interactionId", err.to_string()))?;
    // Built, so registered.
    let spec = connectors::spec(channel)
        .ok_or_else(|| Error::Internal(format!("no connector for {}", channel.as_str())))?;
    if !connector.capabilities().reply {
        return Err(Error::field(
            "interactionId",
            format!(
                "the {} source `{}` cannot send replies{}",
                channel.as_str(),
                source.name,
                spec.reply_setup
            ),
        ));
    }
    let (identity, thread_key) = domain::interaction::author_and_thread(db, &target).await?;
    let recipient = identity.as_ref().and_then(|identity| match spec.recipient {
        connectors::Recipient::Handle => identity.handle.clone(),
        connectors::Recipient::Address => target
            .raw
            .as_ref()
            .and_then(|raw| raw.get("email").or(raw.get("from")))
            .and_then(|v| v.as_str())
            .map(str::to_owned)
            .or_else(|| {
                Some(
                    identity
                        .platform_id
                        .trim_start_matches("mailto:")
                        .to_owned(),
                )
            }),
    });
    let key = idempotency_key
        .map(|key| key.trim().to_owned())
        .filter(|key| !key.is_empty())
        .unwrap_or_else(|| {
            let digest = Sha256::digest(format!("{id}\u{1f}{text}").as_bytes());
            hex::encode(&digest[..16])
        });
    if key.len() > 200 {
        return Err(Error::field(
            "idempotencyKey",
            "idempotencyKey is longer than 200 characters",
        ));
    }
    let to = ReplyTarget {
        external_id: external_id.clone(),
        thread_key,
        recipient,
        context: target.raw.clone().unwrap_or(serde_json::Value::Null),
        idempotency_key: key,
    };
    let stored = |external_id: String| {
        domain::interaction::by_external_id(db, caller.workspace_id, source.id, external_id)
    };
    // A retry of a reply already sent returns it instead of sending it again.
    if let Some(planned) = connector.planned_external_id(&to) {
        if let Some(existing) = stored(planned).await? {
            return Ok(existing);
        }
    }
    let sent = connector.reply(&to, &text).await.map_err(|err| {
        let message = domain::source::scrub(&source, err.to_string());
        match err {
            ConnectorError::RateLimited { retry_after_secs } => Error::RateLimited {
                retry_after_secs: retry_after_secs.unwrap_or(60),
            },
            // The source's settings point where replies cannot go (a non-public
            // address the operator did not allow, or a bad setting).
            ConnectorError::Config(_)
            | ConnectorError::Unsupported(_)
            | ConnectorError::Refused(_) => Error::field("interactionId", message),
            _ => Error::Upstream(format!("the reply was not sent: {message}")),
        }
    })?;
    crate::failpoint::failpoint("reply.after_send");
    let item = InboundItem {
        external_id: sent.external_id.clone(),
        author: connectors::Author {
            platform_id: format!("rapport:{}", source.id),
            ..connectors::Author::default()
        },
        outbound: true,
        kind: "reply".to_owned(),
        subject: None,
        text: sent.text.clone(),
        html: None,
        url: sent.url.clone(),
        language: None,
        occurred_at: domain::now(),
        thread_key: None,
        in_reply_to: Some(external_id),
        raw: serde_json::json!({ "sent_by": caller.key_name, "in_reply_to": ids::encode(id) }),
    };
    super::ingest(db, &source, std::slice::from_ref(&item), None, None).await?;
    stored(sent.external_id)
        .await?
        .ok_or_else(|| Error::Internal("a stored reply vanished".into()))
}
