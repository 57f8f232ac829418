//! Tags: the object and the inputs that add and remove them.
//! The mutations on tags are here too; the `Mutation` root delegates to them.

use async_graphql::{Context, InputObject, Object, Result, Value, ID};

use super::customer::{customer_payload, CustomerPayload};
use super::fast::{opt_text, text, Plain};
use super::inputs::id;
use super::{app, caller};
use crate::domain;
use crate::ids::encode;
use entity::*;

/// A label on customers.
pub struct Tag(pub tag::Model);

impl Plain for Tag {
    fn plain(&self, field: &str) -> Option<Value> {
        let row = &self.0;
        Some(match field {
            "id" => text(&encode(row.id)),
            "name" => text(&row.name),
            "color" => opt_text(row.color.as_deref()),
            _ => return None,
        })
    }
}

/// A workspace tag: on customers (`tags`) and, as labels, on conversations (`labels`).
/// Unique in the workspace by name.
#[Object]
impl Tag {
    /// The tag's id (`tag_…`).
    pub(super) async fn id(&self) -> ID {
        ID(encode(self.0.id))
    }
    /// Its name, at most 64 characters.
    async fn name(&self) -> &str {
        &self.0.name
    }
    /// A colour for clients to show it in, as given when the tag was created (at most 32
    /// characters, free text such as `#2f80ed`); `null` when none was.
    async fn color(&self) -> Option<&str> {
        self.0.color.as_deref()
    }
}

/// A tag to put on a customer.
#[derive(InputObject)]
pub struct AddTagInput {
    /// The customer (`cus_…`).
    pub customer_id: ID,
    /// The tag's name; created in the workspace when missing.
    pub name: String,
    /// The colour of a tag created here (at most 32 characters); ignored for an existing tag.
    pub color: Option<String>,
}

/// A tag to take off a customer.
#[derive(InputObject)]
pub struct RemoveTagInput {
    /// The customer (`cus_…`).
    pub customer_id: ID,
    /// The tag's name.
    pub name: String,
}

// The mutations on this noun; the `Mutation` root delegates to them.

pub(super) async fn add_tag(ctx: &Context<'_>, input: AddTagInput) -> Result<CustomerPayload> {
    let customer = id::<CustomerId>("customerId", &input.customer_id)?;
    domain::tag::add(
        &app(ctx).db,
        caller(ctx)?,
        customer,
        &input.name,
        input.color,
    )
    .await?;
    Ok(CustomerPayload {
        customer: customer_payload(ctx, customer).await?,
    })
}

pub(super) async fn remove_tag(
    ctx: &Context<'_>,
    input: RemoveTagInput,
) -> Result<CustomerPayload> {
    let customer = id::<CustomerId>("customerId", &input.customer_id)?;
    domain::tag::remove(&app(ctx).db, caller(ctx)?, customer, &input.name).await?;
    Ok(CustomerPayload {
        customer: customer_payload(ctx, customer).await?,
    })
}
