//! GDPR: a person's data as one JSON document (`exportCustomer`), and the person erased
//! (`eraseCustomer`); the rules and the tombstones that keep them out are
//! `domain::erase`'s.

use async_graphql::{Context, InputObject, Json, Result, SimpleObject, ID};

use super::inputs::id;
use super::{app, caller};
use crate::domain::erase;
use entity::CustomerId;

/// `exportCustomer(id:)`: see `domain::erase::export` for the document.
pub(super) async fn export_customer(
    ctx: &Context<'_>,
    id_arg: &ID,
) -> Result<Json<serde_json::Value>> {
    let id = id::<CustomerId>("id", id_arg)?;
    Ok(Json(erase::export(&app(ctx).db, caller(ctx)?, id).await?))
}

/// The customer to erase.
#[derive(InputObject)]
pub struct EraseCustomerInput {
    /// The customer (`cus_…`).
    pub id: ID,
}

/// What an erasure removed, by kind (the audit keeps the same counts, and nothing that
/// names the person).
#[derive(SimpleObject)]
pub struct ErasureCounts {
    /// Their interactions, with their text, HTML and raw platform payloads.
    pub interactions: i32,
    /// Conversations that held only their messages (and our replies).
    pub conversations: i32,
    /// Conversations that also held other people's messages: kept, handed to the first of
    /// those people with our replies, without the erased person's messages.
    pub conversations_kept: i32,
    /// Notes filed under them (on the customer, or on one of their conversations).
    pub notes: i32,
    /// Their deals of no organization (a deal of an organization stays, unlinked).
    pub deals: i32,
    /// Their channel identities, with the links their profiles showed.
    pub identities: i32,
    /// Their e-mail addresses, phones, postal addresses and websites.
    pub contact_points: i32,
    /// Duplicate suggestions naming them.
    pub duplicate_suggestions: i32,
    /// Events of the log about the erased rows (their payloads carried the rows).
    pub events: i32,
    /// Keyed hashes recorded so the items, platform ids and addresses do not come back.
    pub tombstones: i32,
}

/// What `eraseCustomer` answers.
#[derive(SimpleObject)]
pub struct EraseCustomerPayload {
    /// The id the customer had; it now resolves to nothing.
    pub erased_customer_id: ID,
    /// What was removed, by kind.
    pub removed: ErasureCounts,
}

fn count(n: u64) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

/// `eraseCustomer(input:)`.
pub(super) async fn erase_customer(
    ctx: &Context<'_>,
    input: EraseCustomerInput,
) -> Result<EraseCustomerPayload> {
    let id = id::<CustomerId>("id", &input.id)?;
    let removed = erase::erase(&app(ctx).db, caller(ctx)?, id).await?;
    Ok(EraseCustomerPayload {
        erased_customer_id: input.id,
        removed: ErasureCounts {
            interactions: count(removed.interactions),
            conversations: count(removed.conversations),
            conversations_kept: count(removed.conversations_kept),
            notes: count(removed.notes),
            deals: count(removed.deals),
            identities: count(removed.identities),
            contact_points: count(removed.contact_points),
            duplicate_suggestions: count(removed.duplicate_suggestions),
            events: count(removed.events),
            tombstones: count(removed.tombstones),
        },
    })
}
