//! Answering from Rapport: the reply goes out through the connector of the source the
//! answered item came from (a Mastodon status, an e-mail over SMTP, a POST to a webhook
//! source's reply URL) and is stored as an outbound interaction in the same conversation.
//!
//! Two paths share the preparation (the connector, where the reply goes, the platform's
//! length limit checked before anything is sent):
//! - [`reply`] (`replyToInteraction`) sends, then stores what was sent; the idempotency
//!   key (given, or derived from the answered item and the text) is sent to the platform
//!   and makes the sent item's external id, so a retried reply is sent and stored once.
//! - [`reply_to_conversation`] (`replyToConversation`) stores the reply as `SENDING`
//!   first (UNIQUE on its key: the same key again returns that row and sends nothing),
//!   then marks it `SENT` with the platform's id or `FAILED` with the platform's error;
//!   [`retry`] sends a failed one again with the same key.

use std::collections::HashMap;
use std::sync::{LazyLock, Mutex};

use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};

use super::sync::Syncer;
use crate::domain::{self, Caller, Role};
use crate::error::{Error, Result};
use crate::ids;
use connectors::{Connector, ConnectorError, InboundItem, ReplyLimit, ReplyTarget};
use entity::{interaction, source, ConversationId, InteractionId, SavedReplyId, SourceId};

/// The longest text a reply may have before the platform's own limit applies.
const MAX_REPLY_CHARS: usize = 10_000;

/// Where a reply to one interaction goes: its source, that source's connector, and the
/// target the connector answers.
struct Outlet {
    source: source::Model,
    connector: Box<dyn Connector>,
    to: ReplyTarget,
}

/// Builds the outlet of a reply to `target` with `key`; `field` names the input the
/// caller gave the target by. An item not ingested from a source, a deleted source or a
/// source that cannot reply is `BAD_USER_INPUT` on `field`.
async fn outlet(
    syncer: &Syncer,
    caller: &Caller,
    target: &interaction::Model,
    field: &str,
    key: String,
) -> Result<Outlet> {
    let db = &syncer.db;
    let (Some(source_id), Some(external_id)) = (target.source_id, target.external_id.clone())
    else {
        return Err(Error::field(
            field,
            "this interaction was not ingested from a source, so there is nowhere to reply; record your answer with recordInteraction",
        ));
    };
    let source = domain::source::get(db, caller, source_id)
        .await
        .map_err(|_| Error::field(field, "the source this interaction came from was deleted"))?;
    let channel = source.channel;
    let connector = super::connector(&source, &syncer.outbound, syncer.public_url.as_deref())
        .map_err(|err| Error::field(field, err.to_string()))?;
    // Built, so registered.
    let spec = connectors::spec(channel)
        .ok_or_else(|| Error::Internal(format!("no connector for {}", channel.as_str())))?;
    if !connector.capabilities().reply {
        return Err(Error::field(
            field,
            format!(
                "the {} source `{}` cannot send replies{}",
                channel.as_str(),
                source.name,
                spec.reply_setup
            ),
        ));
    }
    let (identity, thread_key) = domain::interaction::author_and_thread(db, target).await?;
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
    let to = ReplyTarget {
        external_id,
        thread_key,
        recipient,
        context: target.raw.clone().unwrap_or(serde_json::Value::Null),
        idempotency_key: key,
    };
    Ok(Outlet {
        source,
        connector,
        to,
    })
}

/// A source as its reply limit was asked of it: its id and `updated_at`.
type SourceVersion = (SourceId, DateTime<Utc>);

/// The reply limit each source's platform gave, asked once per process and source (a
/// source changed since is asked again: its `updated_at` is part of the key, and the
/// entry of its earlier version goes, so the map holds one entry per source). A platform
/// that could not say is asked again next time; its connector's default applies meanwhile.
static LIMITS: LazyLock<Mutex<HashMap<SourceVersion, Option<ReplyLimit>>>> =
    LazyLock::new(Default::default);

async fn reply_limit(outlet: &Outlet) -> Option<ReplyLimit> {
    let key = (outlet.source.id, outlet.source.updated_at);
    if let Some(known) = LIMITS
        .lock()
        .ok()
        .and_then(|limits| limits.get(&key).copied())
    {
        return known;
    }
    match outlet.connector.reply_limit().await {
        Ok(limit) => {
            if let Ok(mut limits) = LIMITS.lock() {
                limits.retain(|(source, _), _| *source != outlet.source.id);
                limits.insert(key, limit);
            }
            limit
        }
        Err(err) => {
            tracing::info!(source = %outlet.source.id, error = %domain::source::scrub(&outlet.source, err.to_string()), "the platform did not say its reply limit; using the default");
            outlet.connector.default_reply_limit()
        }
    }
}

/// `BAD_USER_INPUT` on `field` when `text` is longer than the platform takes, counted as
/// the platform counts (with what the connector adds, such as a leading mention), before
/// anything is stored or sent.
async fn check_limit(outlet: &Outlet, text: &str, field: &str) -> Result<()> {
    let Some(limit) = reply_limit(outlet).await else {
        return Ok(());
    };
    let length = outlet.connector.reply_length(&outlet.to, text, limit);
    if length > limit.max() {
        return Err(Error::field(
            field,
            format!(
                "the reply is {length} {unit} long as {channel} counts it; {channel} takes at most {max} {unit} here",
                unit = limit.unit(),
                channel = outlet.source.channel.as_str(),
                max = limit.max(),
            ),
        ));
    }
    Ok(())
}

/// What the platform said when a reply failed, as the reply row keeps it: the platform's
/// answer as the connector reads it, with the source's secrets scrubbed.
fn failure(source: &source::Model, err: &ConnectorError) -> String {
    let message = match err {
        ConnectorError::RateLimited { retry_after_secs } => match retry_after_secs {
            Some(secs) => {
                format!("the platform rate-limited the reply (429); retry after {secs} s")
            }
            None => "the platform rate-limited the reply (429); retry later".to_owned(),
        },
        other => other.to_string(),
    };
    domain::source::scrub(source, message)
}

/// The idempotency key given (trimmed), or one derived from `parts`.
fn idempotency_key(given: Option<String>, parts: &[&str]) -> Result<String> {
    let key = given
        .map(|key| key.trim().to_owned())
        .filter(|key| !key.is_empty())
        .unwrap_or_else(|| {
            let digest = Sha256::digest(parts.join("\u{1f}").as_bytes());
            hex::encode(&digest[..16])
        });
    if key.len() > 200 {
        return Err(Error::field(
            "idempotencyKey",
            "idempotencyKey is longer than 200 characters",
        ));
    }
    Ok(key)
}

/// Sends `text` as an answer to interaction `id` and stores it; returns the stored reply.
pub async fn reply(
    syncer: &Syncer,
    caller: &Caller,
    id: InteractionId,
    text: &str,
    idempotency_key_given: Option<String>,
) -> Result<interaction::Model> {
    caller.require(Role::Agent, "replying")?;
    let text = domain::clean_required("text", text, MAX_REPLY_CHARS)?;
    let db = &syncer.db;
    let target = domain::interaction::get(db, caller, id).await?;
    let key = idempotency_key(idempotency_key_given, &[&id.to_string(), &text])?;
    let Outlet {
        source,
        connector,
        to,
    } = {
        let outlet = outlet(syncer, caller, &target, "interactionId", key).await?;
        check_limit(&outlet, &text, "text").await?;
        outlet
    };
    let external_id = to.external_id.clone();
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

/// What a reply to a conversation says: a text, or a saved reply rendered for the
/// conversation's customer and the calling agent.
pub enum ReplyText {
    Text(String),
    Saved(SavedReplyId),
}

/// A reply to a conversation (`replyToConversation`).
pub struct ConversationReply {
    pub conversation_id: ConversationId,
    pub text: ReplyText,
    /// The interaction answered; the conversation's latest inbound one when `None`.
    pub in_reply_to: Option<InteractionId>,
    pub idempotency_key: Option<String>,
}

/// Answers a conversation through its connector (agent role). The text is checked against
/// the platform's limit first; the reply is then stored as `SENDING` (a key the workspace
/// used already returns that reply, sent or not, and sends nothing), sent, and stored as
/// `SENT` with the platform's id (the conversation's first response when it is the first;
/// OPEN → PENDING when the workspace says so) or as `FAILED` with the platform's error,
/// which [`retry`] sends again. A conversation, interaction or saved reply of another
/// workspace is `NOT_FOUND`, as an unknown id is.
pub async fn reply_to_conversation(
    syncer: &Syncer,
    caller: &Caller,
    input: ConversationReply,
) -> Result<interaction::Model> {
    caller.require(Role::Agent, "replying")?;
    let db = &syncer.db;
    let conversation = domain::conversation::get(db, caller, input.conversation_id).await?;
    let target = match input.in_reply_to {
        Some(id) => {
            let target = domain::interaction::get(db, caller, id).await?;
            if target.conversation_id != Some(conversation.id) {
                return Err(Error::field(
                    "inReplyToId",
                    "this interaction belongs to another conversation",
                ));
            }
            target
        }
        None => domain::reply::latest_inbound(db, caller, conversation.id)
            .await?
            .ok_or_else(|| {
                Error::field(
                    "conversationId",
                    "this conversation has no message from a source to answer; record your answer with recordInteraction",
                )
            })?,
    };
    // Rendered for the customer answered: the conversation's, else (in a publication's
    // thread) the answered item's.
    let (text, field) = match input.text {
        ReplyText::Text(text) => (text, "text"),
        ReplyText::Saved(id) => (
            domain::saved_reply::render_for(
                db,
                caller,
                id,
                conversation.channel,
                conversation.customer_id.or(target.customer_id),
            )
            .await?,
            "savedReplyId",
        ),
    };
    let text = domain::clean_required(field, &text, MAX_REPLY_CHARS)?;
    let field_of_target = if input.in_reply_to.is_some() {
        "inReplyToId"
    } else {
        "conversationId"
    };
    let key = idempotency_key(
        input.idempotency_key,
        &[
            "conversation",
            &conversation.id.to_string(),
            &target.id.to_string(),
            &text,
        ],
    )?;
    let outlet = outlet(syncer, caller, &target, field_of_target, key.clone()).await?;
    check_limit(&outlet, &text, field).await?;
    let (row, new) = domain::reply::begin(
        db,
        caller,
        domain::reply::NewReply {
            conversation: &conversation,
            source_id: outlet.source.id,
            channel: outlet.source.channel,
            in_reply_to: &target,
            text: text.clone(),
            idempotency_key: key,
        },
    )
    .await?;
    if !new {
        return Ok(row);
    }
    deliver(
        syncer,
        caller,
        outlet,
        row.id,
        row.delivery_attempted_at,
        text,
    )
    .await
}

/// Sends a `FAILED` reply again with its idempotency key (so a platform that deduplicates
/// on it, as Mastodon does, posts it once even if an earlier attempt did get through), or
/// a `SENDING` one abandoned by a process that stopped mid-send
/// ([`domain::reply::ABANDONED_AFTER`]); a `SENT` one, or one being sent, is returned as
/// it is. Agent role.
pub async fn retry(
    syncer: &Syncer,
    caller: &Caller,
    id: InteractionId,
) -> Result<interaction::Model> {
    caller.require(Role::Agent, "retrying a reply")?;
    let db = &syncer.db;
    let (row, claimed) = domain::reply::claim_retry(db, caller, id).await?;
    if !claimed {
        return Ok(row);
    }
    let attempt = row.delivery_attempted_at;
    // What the sending needs; a failure here happens before anything is sent, so the
    // reply is failed again, with why, rather than left SENDING.
    let prepared = async {
        let target = row
            .raw
            .as_ref()
            .and_then(|raw| raw.get("in_reply_to"))
            .and_then(|id| id.as_str())
            .ok_or_else(|| Error::Internal("a stored reply does not name what it answers".into()))
            .and_then(|id| ids::decode::<InteractionId>("interactionId", id))?;
        let target = domain::interaction::get(db, caller, target).await?;
        let key = row
            .idempotency_key
            .clone()
            .ok_or_else(|| Error::Internal("a stored reply has no idempotency key".into()))?;
        outlet(syncer, caller, &target, "interactionId", key).await
    };
    let outlet = match prepared.await {
        Ok(outlet) => outlet,
        Err(err) => {
            let message = err.public_message();
            domain::reply::mark_failed(db, caller, id, attempt, message).await?;
            return Err(err);
        }
    };
    deliver(syncer, caller, outlet, row.id, attempt, row.text.clone()).await
}

/// Sends the stored reply `id` (whose attempt began at `attempt`) and records the outcome
/// on it. The sending and its recording run as a task of their own: a request cancelled
/// by its time budget, or a client that went away, does not cut a post off between the
/// platform taking it and Rapport recording it. Only an error the platform gave before
/// taking the post makes the reply `FAILED`; when recording a sent post fails, the reply
/// stays `SENDING` (a retry after [`domain::reply::ABANDONED_AFTER`] sends it again with
/// its idempotency key, which a platform that deduplicates takes as the same post).
async fn deliver(
    syncer: &Syncer,
    caller: &Caller,
    outlet: Outlet,
    id: InteractionId,
    attempt: Option<chrono::DateTime<chrono::Utc>>,
    text: String,
) -> Result<interaction::Model> {
    let db = syncer.db.clone();
    let caller = caller.clone();
    let task = tokio::spawn(async move {
        match outlet.connector.reply(&outlet.to, &text).await {
            Ok(sent) => {
                crate::failpoint::failpoint("reply.after_send");
                let pending = domain::workspace::settings(&db, caller.workspace_id)
                    .await
                    .map(|settings| settings.reply_sets_pending)
                    .unwrap_or_else(|err| {
                        tracing::warn!(error = %err, "workspace settings unread; the reply leaves the conversation's status as it is");
                        false
                    });
                let delivered = domain::reply::Delivered {
                    external_id: sent.external_id,
                    url: sent.url,
                    text: sent.text,
                };
                domain::reply::mark_sent(&db, &caller, id, attempt, delivered, pending)
                    .await
                    .inspect_err(|err| {
                        tracing::error!(reply = %id, error = %err, "a reply was sent but not recorded; it stays SENDING until retried");
                    })
            }
            Err(err) => {
                let message = failure(&outlet.source, &err);
                tracing::info!(reply = %id, error = %message, "a reply was not sent");
                domain::reply::mark_failed(&db, &caller, id, attempt, message).await
            }
        }
    });
    task.await
        .map_err(|err| Error::Internal(format!("a reply's delivery task failed: {err}")))?
}
