//! Internal notes on customers and on their conversations, written by agents; never sent
//! to any platform.

use std::collections::HashMap;

use sea_orm::{ActiveModelTrait, ActiveValue::Set, ConnectionTrait, TransactionTrait};

use super::event::{Actor, NoteChange};

use super::event::Event;
use super::{Caller, Role};
use crate::error::{Error, Result};
use entity::note::{self, Entity, Model};
use entity::{ConversationId, CustomerId, NoteId, WorkspaceId};

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
            conversation_id: Set(None),
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

/// Puts an internal note on a conversation (agent role): a note of the conversation's
/// customer that names the conversation, written by the caller's user (else the key's
/// name), recorded by `conversation.note_added` with the caller. Another workspace's
/// conversation is `NOT_FOUND`.
pub async fn add_to_conversation(
    db: &impl TransactionTrait,
    caller: &Caller,
    conversation_id: ConversationId,
    body: &str,
) -> Result<Model> {
    caller.require(Role::Agent, "adding a note")?;
    let body = super::clean_required("body", body, 20_000)?;
    let txn = super::begin_write(db).await?;
    let conversation = super::conversation::get(&txn, caller, conversation_id).await?;
    // A note is a customer's; a publication's thread has none to hold it.
    let Some(customer_id) = conversation.customer_id else {
        return Err(Error::field(
            "conversationId",
            "this is a publication's thread, which is no one customer's: put the note on the customer's own conversation",
        ));
    };
    let author = match caller.user_id {
        Some(user) => {
            super::user::get(&txn, caller.workspace_id, user)
                .await?
                .name
        }
        None => caller.key_name.clone(),
    };
    let now = super::now();
    let row = note::ActiveModel {
        id: Set(NoteId::new()),
        workspace_id: Set(caller.workspace_id),
        customer_id: Set(customer_id),
        body: Set(body),
        author: Set(author),
        created_at: Set(now),
        updated_at: Set(now),
        conversation_id: Set(Some(conversation.id)),
    };
    let model = row.insert(&txn).await?;
    let change = NoteChange {
        note: model.clone(),
        actor: Actor::of(caller),
    };
    super::event::append(
        &txn,
        caller.workspace_id,
        Event::ConversationNoteAdded(&change),
    )
    .await?;
    txn.commit().await?;
    Ok(model)
}

/// The notes of each conversation, newest first.
pub async fn of_conversations(
    db: &impl ConnectionTrait,
    workspace_id: WorkspaceId,
    conversations: &[ConversationId],
) -> Result<HashMap<ConversationId, Vec<Model>>> {
    super::children_of::<Entity, _>(
        db,
        workspace_id,
        "conversation_id",
        conversations,
        "created_at",
        true,
        |n| n.conversation_id,
    )
    .await
}
