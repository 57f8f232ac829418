//! Notes on a customer: the object, inputs and payloads.
//! The mutations on notes are here too; the `Mutation` root delegates to them.

use async_graphql::{Context, InputObject, Object, Result, SimpleObject, ID};
use chrono::{DateTime, Utc};

use super::customer::Customer;
use super::inputs::id;
use super::loaders::*;
use super::{app, caller, load};
use crate::domain;
use crate::ids::encode;
use entity::*;

/// An internal note on a customer.
pub struct Note(pub note::Model);

#[Object]
impl Note {
    pub(super) async fn id(&self) -> ID {
        ID(encode(self.0.id))
    }
    async fn body(&self) -> &str {
        &self.0.body
    }
    /// The name of the API key that wrote it.
    async fn author(&self) -> &str {
        &self.0.author
    }
    async fn customer(&self, ctx: &Context<'_>) -> Result<Option<Customer>> {
        Ok(load(ctx, CustomerById(self.0.customer_id))
            .await?
            .map(Customer::new))
    }
    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }
    async fn updated_at(&self) -> DateTime<Utc> {
        self.0.updated_at
    }
}

#[derive(SimpleObject)]
pub struct NotePayload {
    pub note: Note,
}

#[derive(InputObject)]
pub struct AddNoteInput {
    pub customer_id: ID,
    pub body: String,
}

// The mutations on this noun; the `Mutation` root delegates to them.

pub(super) async fn add_note(ctx: &Context<'_>, input: AddNoteInput) -> Result<NotePayload> {
    let customer = id::<CustomerId>("customerId", &input.customer_id)?;
    let model = domain::note::add(&app(ctx).db, caller(ctx)?, customer, &input.body).await?;
    Ok(NotePayload { note: Note(model) })
}
