//! Conversations: threads of interactions with one customer, the unit of the inbox.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, FromQueryResult,
    QueryFilter, QuerySelect,
};

use super::event::{Actor, ConversationChange, Event};
use super::{Caller, ConversationStatus, Direction};
use crate::error::Result;
use entity::conversation::{self, Column, Entity, Model};
use entity::{ConversationId, CustomerId, SourceId, WorkspaceId};

/// A conversation of the caller's workspace, or `NOT_FOUND`.
pub async fn get(db: &impl ConnectionTrait, caller: &Caller, id: ConversationId) -> Result<Model> {
    super::find_scoped(db, caller.workspace_id, id).await
}

/// The conversations of each customer, most recently active first.
pub async fn of_customers(
    db: &impl ConnectionTrait,
    workspace_id: WorkspaceId,
    customers: &[CustomerId],
) -> Result<HashMap<CustomerId, Vec<Model>>> {
    super::children_of::<Entity, _>(
        db,
        workspace_id,
        "customer_id",
        customers,
        "last_message_at",
        true,
        |c| c.customer_id,
    )
    .await
}

/// How many conversations of each customer are not resolved (open or pending).
pub async fn open_counts(
    db: &impl ConnectionTrait,
    workspace_id: WorkspaceId,
    customers: &[CustomerId],
) -> Result<HashMap<CustomerId, i64>> {
    #[derive(FromQueryResult)]
    struct Row {
        customer_id: CustomerId,
        count: i64,
    }
    let rows = super::scoped_under::<Entity>(db.get_database_backend(), workspace_id)
        .filter(Column::CustomerId.is_in(customers.iter().copied()))
        .filter(Column::Status.ne(ConversationStatus::Resolved.as_str()))
        .select_only()
        .column(Column::CustomerId)
        .column_as(Column::Id.count(), "count")
        .group_by(Column::CustomerId)
        .into_model::<Row>()
        .all(db)
        .await?;
    Ok(rows
        .into_iter()
        .map(|row| (row.customer_id, row.count))
        .collect())
}

/// Keeps a conversation's state in step with a new interaction in it: the last message
/// time moves, an inbound item reopens a resolved thread, the first outbound one is the
/// first response. Runs inside the caller's write transaction: on PostgreSQL the row is
/// locked (SELECT … FOR UPDATE) until it commits, so an agent's status change or a wake
/// committed meanwhile is read, not overwritten with a stale copy, and a reopening is
/// decided once.
pub async fn on_interaction(
    db: &impl ConnectionTrait,
    workspace_id: WorkspaceId,
    id: ConversationId,
    direction: Direction,
    at: DateTime<Utc>,
) -> Result<Option<Model>> {
    let Some(model) = super::scoped::<Entity>(workspace_id)
        .filter(Column::Id.eq(id))
        .lock_exclusive()
        .one(db)
        .await?
    else {
        return Ok(None);
    };
    let mut changed = model.clone();
    let status_changed = follow_interaction(&mut changed, direction, at);
    // Only the columns the rule owns, and of those only the ones it changes: an
    // assignment, a label or a status set meanwhile stays as it is.
    let mut row: conversation::ActiveModel = model.clone().into();
    macro_rules! set_if_changed {
        ($($column:ident),*) => {$(
            if changed.$column != model.$column {
                row.$column = Set(changed.$column);
            }
        )*};
    }
    set_if_changed!(
        last_message_at,
        status,
        resolved_at,
        snoozed_until,
        waiting_since,
        first_response_at
    );
    row.updated_at = Set(super::now());
    let model = row.update(db).await?;
    if status_changed {
        let change = reopened(model.clone());
        super::event::append(db, workspace_id, Event::ConversationStatusChanged(&change)).await?;
    } else {
        super::event::append(db, workspace_id, Event::ConversationUpdated(&model)).await?;
    }
    Ok(Some(model))
}

/// The rule of a new interaction in a conversation, shared with the batch writer
/// (`batch::on_interaction`): the last message time moves; a customer's message reopens a
/// resolved, pending or snoozed thread (the customer is waiting again, whatever we were
/// waiting for) and starts the wait if none runs; our own message ends the wait, and the
/// first one is the first response. Returns whether the status changed.
pub fn follow_interaction(model: &mut Model, direction: Direction, at: DateTime<Utc>) -> bool {
    model.last_message_at = model.last_message_at.max(at);
    match direction {
        Direction::Inbound => {
            if model.waiting_since.is_none() {
                model.waiting_since = Some(at);
            }
            if model.status != ConversationStatus::Open {
                model.status = ConversationStatus::Open;
                model.resolved_at = None;
                model.snoozed_until = None;
                return true;
            }
        }
        Direction::Outbound => {
            // A reply dated before the wait began (an import of old mail) answers
            // nothing that waits now.
            if model.waiting_since.is_some_and(|since| since <= at) {
                model.waiting_since = None;
            }
            if model.first_response_at.is_none() {
                model.first_response_at = Some(at);
            }
        }
    }
    false
}

/// The payload of a reopening by a new message: the row, and as who did it Rapport itself
/// on the customer's message (the `interaction.created` that follows names it).
pub fn reopened(model: Model) -> ConversationChange {
    ConversationChange {
        conversation: model,
        actor: Actor::system("new message"),
        label: None,
    }
}

/// An item to file into its conversation: where it came from, its thread and its author.
#[derive(Debug, Clone, Copy)]
pub struct Threaded<'a> {
    pub workspace_id: WorkspaceId,
    pub source_id: SourceId,
    pub thread_key: &'a str,
    /// The customer a new conversation belongs to (`None`: a publication's thread).
    pub customer_id: Option<CustomerId>,
    pub channel: connectors::Channel,
    pub subject: Option<&'a str>,
    pub direction: Direction,
    pub at: DateTime<Utc>,
}

/// Files an item of `source` into the conversation with `thread_key`, creating it when
/// new (the UNIQUE (workspace, source, thread key) decides races). Returns it as it is
/// after the item.
pub async fn thread(db: &impl ConnectionTrait, item: Threaded<'_>) -> Result<Model> {
    use sea_orm::sea_query::OnConflict;
    let Threaded {
        workspace_id,
        source_id,
        thread_key,
        customer_id,
        channel,
        subject,
        direction,
        at,
    } = item;
    let find = || {
        super::scoped::<Entity>(workspace_id)
            .filter(Column::SourceId.eq(source_id))
            .filter(Column::ThreadKey.eq(thread_key))
    };
    if let Some(existing) = find().one(db).await? {
        let followed = on_interaction(db, workspace_id, existing.id, direction, at).await?;
        return Ok(followed.unwrap_or(existing));
    }
    let now = super::now();
    let row = conversation::ActiveModel {
        id: Set(ConversationId::new()),
        workspace_id: Set(workspace_id),
        customer_id: Set(customer_id),
        source_id: Set(Some(source_id)),
        thread_key: Set(Some(thread_key.to_owned())),
        channel: Set(channel),
        subject: Set(subject.map(str::to_owned)),
        status: Set(ConversationStatus::Open),
        priority: Set(super::Priority::Normal),
        assignee_id: Set(None),
        snoozed_until: Set(None),
        waiting_since: Set((direction == Direction::Inbound).then_some(at)),
        spam: Set(false),
        first_response_at: Set((direction == Direction::Outbound).then_some(at)),
        resolved_at: Set(None),
        last_message_at: Set(at),
        created_at: Set(now),
        updated_at: Set(now),
    };
    let inserted = Entity::insert(row)
        .on_conflict(
            OnConflict::columns([Column::WorkspaceId, Column::SourceId, Column::ThreadKey])
                .do_nothing()
                .to_owned(),
        )
        .exec_without_returning(db)
        .await?;
    let model = find().one(db).await?.ok_or_else(|| {
        crate::Error::Internal("a conversation vanished after its insertion".into())
    })?;
    if inserted == 1 {
        super::event::append(db, workspace_id, Event::ConversationCreated(&model)).await?;
        return Ok(model);
    }
    let followed = on_interaction(db, workspace_id, model.id, direction, at).await?;
    Ok(followed.unwrap_or(model))
}
