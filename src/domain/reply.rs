//! Replies sent from Rapport as rows with a delivery state. The row is written before the
//! reply goes out (`SENDING`, UNIQUE per workspace on its idempotency key, so a second
//! call with the same key finds the first row and sends nothing), then marked `SENT` with
//! the platform's id or `FAILED` with the platform's error; a failed one is claimed back
//! to `SENDING` by one conditional `UPDATE` before it is sent again, so two retries at
//! once send once. `ingest::reply` does the sending between these steps. Every step is
//! an `interaction.delivery_changed` event naming who; `interaction.created` is written
//! when the reply is SENT (a failed reply is no response in the service metrics).

use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Expr, OnConflict};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder,
    TransactionTrait,
};

use super::event::{Actor, ConversationChange, DeliveryChange, Event};
use super::{Caller, ConversationStatus, DeliveryStatus, Direction, InteractionKind, Role};
use crate::error::{Error, Result};
use entity::interaction::{self, Column, Entity, Model};
use entity::{conversation, ConversationId, InteractionId, SourceId};

/// The latest inbound item of a conversation that came from its source (it has a
/// platform id to answer): what a reply answers when the caller names nothing.
pub async fn latest_inbound(
    db: &impl ConnectionTrait,
    caller: &Caller,
    conversation_id: ConversationId,
) -> Result<Option<Model>> {
    Ok(super::scoped::<Entity>(caller.workspace_id)
        .filter(Column::ConversationId.eq(conversation_id))
        .filter(Column::Direction.eq(Direction::Inbound.as_str()))
        .filter(Column::ExternalId.is_not_null())
        .filter(Column::SourceId.is_not_null())
        .order_by_desc(Column::OccurredAt)
        .order_by_desc(Column::Id)
        .one(db)
        .await?)
}

/// A reply about to be sent.
pub struct NewReply<'a> {
    pub conversation: &'a conversation::Model,
    pub source_id: SourceId,
    pub channel: connectors::Channel,
    /// The answered interaction.
    pub in_reply_to: &'a Model,
    pub text: String,
    pub idempotency_key: String,
}

/// Stores `reply` as `SENDING` unless the workspace has a reply with its idempotency key;
/// returns the row and whether it is new (then the caller sends it). A key used for
/// another conversation is `BAD_USER_INPUT` on `idempotencyKey`.
pub async fn begin(
    db: &impl TransactionTrait,
    caller: &Caller,
    reply: NewReply<'_>,
) -> Result<(Model, bool)> {
    caller.require(Role::Agent, "replying")?;
    let now = super::now();
    let txn = super::begin_write(db).await?;
    let model = Model {
        id: InteractionId::new(),
        workspace_id: caller.workspace_id,
        // The conversation's customer, else (in a publication's thread) the answered one's.
        customer_id: reply
            .conversation
            .customer_id
            .or(reply.in_reply_to.customer_id),
        conversation_id: Some(reply.conversation.id),
        identity_id: None,
        source_id: Some(reply.source_id),
        external_id: None,
        channel: reply.channel,
        direction: Direction::Outbound,
        kind: InteractionKind::Reply,
        subject: None,
        text: reply.text,
        html: None,
        url: None,
        language: None,
        sentiment: None,
        occurred_at: now,
        ingested_at: now,
        raw: Some(serde_json::json!({
            "sent_by": caller.key_name,
            "in_reply_to": crate::ids::encode(reply.in_reply_to.id),
            "in_reply_to_external_id": reply.in_reply_to.external_id,
        })),
        delivery_status: Some(DeliveryStatus::Sending),
        delivery_error: None,
        idempotency_key: Some(reply.idempotency_key.clone()),
        delivery_attempted_at: Some(now),
    };
    let inserted = Entity::insert(interaction::ActiveModel::from(model.clone()))
        .on_conflict(
            OnConflict::columns([Column::WorkspaceId, Column::IdempotencyKey])
                .do_nothing()
                .to_owned(),
        )
        .exec_without_returning(&txn)
        .await?;
    if inserted == 1 {
        // Not `interaction.created` yet: consumers of that (service metrics' first
        // response, `interactionReceived`) see the reply once it exists on the platform.
        let change = DeliveryChange {
            interaction: model.clone(),
            actor: Actor::of(caller),
        };
        super::event::append(
            &txn,
            caller.workspace_id,
            Event::InteractionDeliveryChanged(&change),
        )
        .await?;
        txn.commit().await?;
        return Ok((model, true));
    }
    let existing = super::scoped::<Entity>(caller.workspace_id)
        .filter(Column::IdempotencyKey.eq(reply.idempotency_key))
        .one(&txn)
        .await?
        .ok_or_else(|| Error::Internal("a reply vanished after its key collided".into()))?;
    if existing.conversation_id != Some(reply.conversation.id) {
        return Err(Error::field(
            "idempotencyKey",
            "this idempotencyKey was used for a reply in another conversation; use a new key for a new reply",
        ));
    }
    Ok((existing, false))
}

/// A reply of the caller's workspace sent from Rapport, or `NOT_FOUND` (also for an
/// interaction that is not such a reply, as an unknown id would be).
pub async fn get(db: &impl ConnectionTrait, caller: &Caller, id: InteractionId) -> Result<Model> {
    let model = super::interaction::get(db, caller, id).await?;
    if model.delivery_status.is_none() {
        return Err(Error::field(
            "interactionId",
            "this interaction is not a reply sent from Rapport, so there is nothing to retry",
        ));
    }
    Ok(model)
}

/// How long a reply may stay `SENDING` before a retry takes it as abandoned (the process
/// sending it stopped between sending and recording the outcome): far longer than a send
/// may take (the HTTP client's timeout).
pub const ABANDONED_AFTER: chrono::Duration = chrono::Duration::minutes(2);

/// Claims a reply for another attempt (it becomes `SENDING`, attempted now): a `FAILED`
/// one, or a `SENDING` one abandoned for [`ABANDONED_AFTER`] (sent again with the same
/// key, which the platform may use to drop a repeat). Returns the row and whether the
/// caller should send it; a `SENT` one, or one being sent, is returned as it is. One
/// conditional `UPDATE` on the state read decides, so of two retries at once one sends.
pub async fn claim_retry(
    db: &impl TransactionTrait,
    caller: &Caller,
    id: InteractionId,
) -> Result<(Model, bool)> {
    caller.require(Role::Agent, "retrying a reply")?;
    let txn = super::begin_write(db).await?;
    let current = get(&txn, caller, id).await?;
    let now = super::now();
    let abandoned = current.delivery_status == Some(DeliveryStatus::Sending)
        && current
            .delivery_attempted_at
            .is_none_or(|at| at < now - ABANDONED_AFTER);
    if current.delivery_status != Some(DeliveryStatus::Failed) && !abandoned {
        return Ok((current, false));
    }
    let mut claim = Entity::update_many()
        .col_expr(
            Column::DeliveryStatus,
            Expr::value(DeliveryStatus::Sending.as_str()),
        )
        .col_expr(Column::DeliveryAttemptedAt, Expr::value(Some(now)))
        .filter(Column::WorkspaceId.eq(caller.workspace_id))
        .filter(Column::Id.eq(id))
        .filter(Column::DeliveryStatus.eq(current.delivery_status.map(|s| s.as_str())));
    claim = match current.delivery_attempted_at {
        Some(at) => claim.filter(Column::DeliveryAttemptedAt.eq(at)),
        None => claim.filter(Column::DeliveryAttemptedAt.is_null()),
    };
    let claimed = claim.exec(&txn).await?;
    let model = get(&txn, caller, id).await?;
    if claimed.rows_affected == 1 {
        let change = DeliveryChange {
            interaction: model.clone(),
            actor: Actor::of(caller),
        };
        super::event::append(
            &txn,
            caller.workspace_id,
            Event::InteractionDeliveryChanged(&change),
        )
        .await?;
    }
    txn.commit().await?;
    Ok((model, claimed.rows_affected == 1))
}

/// What the platform made of a sent reply.
pub struct Delivered {
    pub external_id: String,
    pub url: Option<String>,
    /// The text as sent (with a mention the platform needed).
    pub text: String,
}

/// Marks a reply `SENT` with the platform's id, at `at`; in the same transaction its
/// conversation follows the new outbound message (the first one is the first response,
/// the customer's wait ends) and, when `pending` is set (the workspace's
/// `replySetsPending`), an OPEN conversation becomes PENDING, recorded as a status set by
/// the caller.
///
/// Only the attempt that is still the reply's (`SENDING` since `attempt`) records its
/// outcome: a slow earlier attempt finishing after a retry took over changes nothing, and
/// the reply as it stands is returned. When a sync stored the platform's post first (our
/// own post matched a listening source), the reply is still `SENT` (it is on the
/// platform: it must never be sent again) and keeps no external id of its own; its
/// `delivery_error` points at the stored post.
pub async fn mark_sent(
    db: &impl TransactionTrait,
    caller: &Caller,
    id: InteractionId,
    attempt: Option<DateTime<Utc>>,
    delivered: Delivered,
    pending: bool,
) -> Result<Model> {
    let txn = super::begin_write(db).await?;
    let at: DateTime<Utc> = super::now();
    let sent = |external_id: Option<String>, note: Option<String>| interaction::ActiveModel {
        delivery_status: Set(Some(DeliveryStatus::Sent)),
        delivery_error: Set(note),
        external_id: Set(external_id),
        url: Set(delivered.url.clone()),
        text: Set(super::clean(&delivered.text)),
        occurred_at: Set(at),
        ..Default::default()
    };
    let savepoint = txn.begin().await?;
    let claimed = match still_sending(
        sent(Some(delivered.external_id.clone()), None),
        caller,
        id,
        attempt,
    )
    .exec(&savepoint)
    .await
    {
        Ok(result) => {
            savepoint.commit().await?;
            result.rows_affected
        }
        Err(err)
            if matches!(
                err.sql_err(),
                Some(sea_orm::SqlErr::UniqueConstraintViolation(_))
            ) =>
        {
            savepoint.rollback().await?;
            let note = format!(
                "sent; the platform's post (id {}) was stored by a sync before this reply was recorded",
                delivered.external_id
            );
            still_sending(sent(None, Some(note)), caller, id, attempt)
                .exec(&txn)
                .await?
                .rows_affected
        }
        Err(err) => return Err(err.into()),
    };
    let model = get(&txn, caller, id).await?;
    if claimed == 0 {
        // Another attempt owns the reply now; its outcome stands.
        return Ok(model);
    }
    let change = DeliveryChange {
        interaction: model.clone(),
        actor: Actor::of(caller),
    };
    super::event::append(
        &txn,
        caller.workspace_id,
        Event::InteractionDeliveryChanged(&change),
    )
    .await?;
    // The reply exists now: as an interaction created at the time it was sent.
    super::event::append(&txn, caller.workspace_id, Event::InteractionCreated(&model)).await?;
    if let Some(customer) = model.customer_id {
        super::customer::seen_at(&txn, caller.workspace_id, customer, at).await?;
    }
    if let Some(conversation_id) = model.conversation_id {
        let followed = super::conversation::on_interaction(
            &txn,
            caller.workspace_id,
            conversation_id,
            Direction::Outbound,
            at,
        )
        .await?;
        let open = followed.is_some_and(|conversation| {
            super::inbox::effective_status(&conversation, at) == ConversationStatus::Open
        });
        if pending && open {
            set_pending(&txn, caller, conversation_id, at).await?;
        }
    }
    txn.commit().await?;
    Ok(model)
}

/// An update of reply `id` that applies only while it is `SENDING` for `attempt`.
fn still_sending(
    changes: interaction::ActiveModel,
    caller: &Caller,
    id: InteractionId,
    attempt: Option<DateTime<Utc>>,
) -> sea_orm::UpdateMany<Entity> {
    let update = Entity::update_many()
        .set(changes)
        .filter(Column::WorkspaceId.eq(caller.workspace_id))
        .filter(Column::Id.eq(id))
        .filter(Column::DeliveryStatus.eq(DeliveryStatus::Sending.as_str()));
    match attempt {
        Some(at) => update.filter(Column::DeliveryAttemptedAt.eq(at)),
        None => update.filter(Column::DeliveryAttemptedAt.is_null()),
    }
}

/// OPEN → PENDING after our reply: a conditional `UPDATE` (a status set meanwhile stays),
/// recorded as `conversation.status_set` by the caller.
async fn set_pending(
    db: &impl ConnectionTrait,
    caller: &Caller,
    id: ConversationId,
    at: DateTime<Utc>,
) -> Result<()> {
    let changed = conversation::Entity::update_many()
        .col_expr(
            conversation::Column::Status,
            Expr::value(ConversationStatus::Pending.as_str()),
        )
        .col_expr(
            conversation::Column::SnoozedUntil,
            Expr::value(Option::<DateTime<Utc>>::None),
        )
        .col_expr(conversation::Column::UpdatedAt, Expr::value(at))
        .filter(conversation::Column::WorkspaceId.eq(caller.workspace_id))
        .filter(conversation::Column::Id.eq(id))
        .filter(conversation::Column::Status.is_in([
            ConversationStatus::Open.as_str(),
            ConversationStatus::Snoozed.as_str(),
        ]))
        .exec(db)
        .await?;
    if changed.rows_affected == 1 {
        let model = super::conversation::get(db, caller, id).await?;
        let change = ConversationChange {
            conversation: model,
            actor: Actor::of(caller),
            label: None,
        };
        super::event::append(
            db,
            caller.workspace_id,
            Event::ConversationStatusSet(&change),
        )
        .await?;
    }
    Ok(())
}

/// Marks a reply `FAILED` with `error` (the platform's answer, already scrubbed), if
/// the attempt since `attempt` is still its own ([`mark_sent`]); returns the reply.
pub async fn mark_failed(
    db: &impl TransactionTrait,
    caller: &Caller,
    id: InteractionId,
    attempt: Option<DateTime<Utc>>,
    error: String,
) -> Result<Model> {
    let txn = super::begin_write(db).await?;
    let failed = interaction::ActiveModel {
        delivery_status: Set(Some(DeliveryStatus::Failed)),
        delivery_error: Set(Some(super::clean(&error).chars().take(1_000).collect())),
        ..Default::default()
    };
    let claimed = still_sending(failed, caller, id, attempt)
        .exec(&txn)
        .await?
        .rows_affected;
    let model = get(&txn, caller, id).await?;
    if claimed == 1 {
        let change = DeliveryChange {
            interaction: model.clone(),
            actor: Actor::of(caller),
        };
        super::event::append(
            &txn,
            caller.workspace_id,
            Event::InteractionDeliveryChanged(&change),
        )
        .await?;
    }
    txn.commit().await?;
    Ok(model)
}
