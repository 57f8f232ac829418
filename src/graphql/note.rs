//! Notes on a customer or on a conversation: the object, inputs and payloads, and the
//! loader of a conversation's notes.
//! The mutations on notes are here too; the `Mutation` root delegates to them.

use async_graphql::{Context, InputObject, Object, Result, SimpleObject, Value, ID};
use chrono::{DateTime, Utc};

use super::customer::Customer;
use super::fast::{scalar, text, Plain};
use super::inputs::id;
use super::loaders::*;
use super::{app, caller, load};
use crate::domain;
use crate::ids::encode;
use entity::*;

/// An internal note on a customer.
pub struct Note(pub note::Model);

impl Plain for Note {
    fn plain(&self, field: &str) -> Option<Value> {
        let row = &self.0;
        Some(match field {
            "id" => text(&encode(row.id)),
            "body" => text(&row.body),
            "author" => text(&row.author),
            "createdAt" => scalar(&row.created_at),
            "updatedAt" => scalar(&row.updated_at),
            _ => return None,
        })
    }
}

/// An internal note on a customer, or on one of their conversations: for the team, never
/// sent to any platform.
#[Object]
impl Note {
    /// The note's id (`not_…`).
    pub(super) async fn id(&self) -> ID {
        ID(encode(self.0.id))
    }
    /// The text, as written (at most 20,000 characters).
    async fn body(&self) -> &str {
        &self.0.body
    }
    /// The name of the API key that wrote it.
    async fn author(&self) -> &str {
        &self.0.author
    }
    /// The conversation the note is on; `null` for a note on the customer.
    async fn conversation(
        &self,
        ctx: &Context<'_>,
    ) -> Result<Option<super::conversation::Conversation>> {
        match self.0.conversation_id {
            Some(id) => Ok(load(ctx, ConversationById(id))
                .await?
                .map(super::conversation::Conversation)),
            None => Ok(None),
        }
    }
    /// The customer it is about (for a conversation's note, the conversation's customer).
    async fn customer(&self, ctx: &Context<'_>) -> Result<Option<Customer>> {
        Ok(load(ctx, CustomerById(self.0.customer_id))
            .await?
            .map(Customer::new))
    }
    /// When it was written.
    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }
    /// When it last changed.
    async fn updated_at(&self) -> DateTime<Utc> {
        self.0.updated_at
    }
}

/// What adding a note answers.
#[derive(SimpleObject)]
pub struct NotePayload {
    /// The note as stored.
    pub note: Note,
}

/// An internal note on a customer.
#[derive(InputObject)]
pub struct AddNoteInput {
    /// The customer (`cus_…`).
    pub customer_id: ID,
    /// The text, 1 to 20,000 characters.
    pub body: String,
}

// The mutations on this noun; the `Mutation` root delegates to them.

pub(super) async fn add_note(ctx: &Context<'_>, input: AddNoteInput) -> Result<NotePayload> {
    let customer = id::<CustomerId>("customerId", &input.customer_id)?;
    let model = domain::note::add(&app(ctx).db, caller(ctx)?, customer, &input.body).await?;
    Ok(NotePayload { note: Note(model) })
}

/// An internal note on a conversation: for the team, never sent to any platform.
#[derive(InputObject)]
pub struct AddConversationNoteInput {
    /// The conversation (`cnv_…`).
    pub conversation_id: ID,
    /// The text, 1 to 20,000 characters.
    pub body: String,
}

pub(super) async fn add_conversation_note(
    ctx: &Context<'_>,
    input: AddConversationNoteInput,
) -> Result<NotePayload> {
    let conversation = id::<ConversationId>("conversationId", &input.conversation_id)?;
    let model =
        domain::note::add_to_conversation(&app(ctx).db, caller(ctx)?, conversation, &input.body)
            .await?;
    Ok(NotePayload { note: Note(model) })
}

/// The notes of a conversation, newest first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct NotesOfConversation(pub ConversationId);

impl async_graphql::dataloader::Loader<NotesOfConversation> for Loaders {
    type Value = Vec<note::Model>;
    type Error = LoadError;

    async fn load(
        &self,
        keys: &[NotesOfConversation],
    ) -> std::result::Result<std::collections::HashMap<NotesOfConversation, Self::Value>, Self::Error>
    {
        let ids: Vec<ConversationId> = keys.iter().map(|key| key.0).collect();
        let mut rows = domain::note::of_conversations(&self.db, self.workspace_id, &ids).await?;
        Ok(ids
            .into_iter()
            .map(|id| {
                (
                    NotesOfConversation(id),
                    rows.remove(&id).unwrap_or_default(),
                )
            })
            .collect())
    }
}
