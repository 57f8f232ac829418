//! Answering an ingested item from Rapport: the reply goes out through the connector of
//! the item's source (a Mastodon status, an e-mail over SMTP, a POST to a webhook
//! source's reply URL) and is stored as an outbound interaction in the same conversation.
//!
//! Idempotent: the idempotency key (given, or derived from the answered item and the
//! text) is sent to the platform and makes the sent item's external id, so a retried
//! reply is sent and stored once.

use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::sync::Syncer;
use crate::domain::{self, Caller, Role};
use crate::error::{Error, Result};
use crate::ids::{self, Kind};
use connectors::{ConnectorError, InboundItem, ReplyTarget};
use entity::interaction;

/// Sends `text` as an answer to interaction `id` and stores it; returns the stored reply.
pub async fn reply(
    syncer: &Syncer,
    caller: &Caller,
    id: Uuid,
    text: &str,
    idempotency_key: Option<String>,
) -> Result<interaction::Model> {
    caller.require(Role::Agent, "replying")?;
    let text = domain::clean_required("text", text, 10_000)?;
    let db = &syncer.db;
    let not_found = || Error::not_found("interaction", ids::encode(Kind::Interaction, id));
    let target = domain::scoped::<interaction::Entity>(caller.workspace_id)
        .filter(interaction::Column::Id.eq(id))
        .one(db)
        .await?
        .ok_or_else(not_found)?;
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
    let channel = connectors::Channel::parse(&source.channel)
        .ok_or_else(|| Error::Internal(format!("unknown channel {}", source.channel)))?;
    let connector = connectors::build(
        channel,
        &domain::source::full_config(&source),
        &syncer.outbound,
    )
    .map_err(|err| Error::field("interactionId", err.to_string()))?;
    if !connector.capabilities().reply {
        return Err(Error::field(
            "interactionId",
            format!(
                "the {} source `{}` cannot send replies{}",
                source.channel,
                source.name,
                match channel {
                    connectors::Channel::Email => " (set smtp_host and smtp_port)",
                    connectors::Channel::Webhook => " (set a reply_url)",
                    _ => "",
                }
            ),
        ));
    }
    let identity = match target.identity_id {
        Some(identity) => {
            entity::identity::Entity::find_by_id(identity)
                .one(db)
                .await?
        }
        None => None,
    };
    let recipient = identity.as_ref().and_then(|identity| match channel {
        connectors::Channel::Mastodon => identity.handle.clone(),
        _ => target
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
    let thread_key = match target.conversation_id {
        Some(conversation) => entity::conversation::Entity::find_by_id(conversation)
            .one(db)
            .await?
            .and_then(|conversation| conversation.thread_key),
        None => None,
    };
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
        domain::scoped::<interaction::Entity>(caller.workspace_id)
            .filter(interaction::Column::SourceId.eq(source.id))
            .filter(interaction::Column::ExternalId.eq(external_id))
            .one(db)
    };
    // A retry of a reply already sent returns it instead of sending it again.
    if let Some(planned) = connector.planned_external_id(&to) {
        if let Some(existing) = stored(planned).await? {
            return Ok(existing);
        }
    }
    let sent = connector.reply(&to, &text).await.map_err(|err| {
        let secrets = domain::source::secret_values(&source);
        let message = secrets
            .iter()
            .fold(err.to_string(), |m, s| m.replace(s.as_str(), "***"));
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
        raw: serde_json::json!({ "sent_by": caller.key_name, "in_reply_to": ids::encode(Kind::Interaction, id) }),
    };
    super::ingest(db, &source, std::slice::from_ref(&item), None, None).await?;
    stored(sent.external_id)
        .await?
        .ok_or_else(|| Error::Internal("a stored reply vanished".into()))
}
