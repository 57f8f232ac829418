//! The append-only event log (the outbox). Every write that changes a customer,
//! interaction, conversation or deal appends here in the same transaction, so consumers
//! (the search indexer, subscriptions) see exactly what was committed.

use sea_orm::{ActiveValue::Set, ConnectionTrait, EntityTrait};
use serde::Serialize;
use uuid::Uuid;

use crate::error::Result;

/// Appends one event of `kind` (`customer.created`, …) about `entity_id`.
pub async fn append(
    db: &impl ConnectionTrait,
    workspace_id: Uuid,
    kind: &str,
    entity_id: Uuid,
    payload: &impl Serialize,
) -> Result<()> {
    append_many(
        db,
        workspace_id,
        kind,
        [(entity_id, serde_json::to_value(payload).unwrap_or_default())],
    )
    .await
}

/// Appends one event of `kind` for each `(entity id, payload)`, in order.
pub async fn append_many(
    db: &impl ConnectionTrait,
    workspace_id: Uuid,
    kind: &str,
    events: impl IntoIterator<Item = (Uuid, serde_json::Value)>,
) -> Result<()> {
    let created_at = super::now();
    let rows: Vec<_> = events
        .into_iter()
        .map(|(entity_id, payload)| entity::event::ActiveModel {
            workspace_id: Set(workspace_id),
            kind: Set(kind.to_owned()),
            entity_id: Set(entity_id),
            payload: Set(payload),
            created_at: Set(created_at),
            ..Default::default()
        })
        .collect();
    for chunk in rows.chunks(500) {
        entity::event::Entity::insert_many(chunk.to_vec())
            .exec_without_returning(db)
            .await?;
    }
    Ok(())
}

/// How many events of `workspace_id` come after `seq` (a consumer's offset): what that
/// consumer has still to read for this workspace, and nothing about any other.
pub async fn count_after(db: &impl ConnectionTrait, workspace_id: Uuid, seq: i64) -> Result<i64> {
    use sea_orm::{ColumnTrait, PaginatorTrait, QueryFilter};
    let count = super::scoped::<entity::event::Entity>(workspace_id)
        .filter(entity::event::Column::Seq.gt(seq))
        .count(db)
        .await?;
    Ok(i64::try_from(count).unwrap_or(i64::MAX))
}
