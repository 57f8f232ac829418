//! Internal notes on customers, written by agents.

use std::collections::HashMap;

use sea_orm::{ActiveModelTrait, ActiveValue::Set, ConnectionTrait, TransactionTrait};

use super::event::Event;
use super::{Caller, Role};
use crate::error::Result;
use entity::note::{self, Entity, Model};
use entity::{CustomerId, NoteId, WorkspaceId};

/// Adds a note to a customer; the author is the calling key's name.
pub async fn add(
    db: &impl TransactionTrait,
    caller: &Caller,
    customer_id: CustomerId,
    body: &str,
) -> Result<Model> {
    caller.require(Role::Agent, "adding a note")?;
    let body = super::clean_required("body", body, 20_000)?;
    super::customer::change_belonging(db, caller, customer_id, async |txn| {
        let now = super::now();
        let row = note::ActiveModel {
            id: Set(NoteId::new()),
            workspace_id: Set(caller.workspace_id),
            customer_id: Set(customer_id),
            body: Set(body),
            author: Set(caller.key_name.clone()),
            created_at: Set(now),
            updated_at: Set(now),
        };
        let model = row.insert(txn).await?;
        super::event::append(txn, caller.workspace_id, Event::NoteCreated(&model)).await?;
        Ok(model)
    })
    .await
}

/// The notes of each customer, newest first.
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
        "created_at",
        true,
        |n| Some(n.customer_id),
    )
    .await
}
