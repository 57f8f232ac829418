//! Tags: the object and the inputs that add and remove them.
//! The mutations on tags are here too; the `Mutation` root delegates to them.

use async_graphql::{Context, InputObject, Object, Result, ID};

use super::customer::{customer_payload, CustomerPayload};
use super::inputs::id;
use super::{app, caller};
use crate::domain;
use crate::ids::encode;
use entity::*;

/// A label on customers.
pub struct Tag(pub tag::Model);

#[Object]
impl Tag {
    pub(super) async fn id(&self) -> ID {
        ID(encode(self.0.id))
    }
    async fn name(&self) -> &str {
        &self.0.name
    }
    async fn color(&self) -> Option<&str> {
        self.0.color.as_deref()
    }
}

#[derive(InputObject)]
pub struct AddTagInput {
    pub customer_id: ID,
    /// The tag's name; created in the workspace when missing.
    pub name: String,
    pub color: Option<String>,
}

#[derive(InputObject)]
pub struct RemoveTagInput {
    pub customer_id: ID,
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
