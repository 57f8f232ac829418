//! Contact points (e-mail addresses, phones, handles) of a customer: object, inputs, payloads.
//! The mutations on contact points are here too; the `Mutation` root delegates to them.

use async_graphql::{Context, InputObject, Object, Result, SimpleObject, ID};

use super::customer::{customer_payload, Customer};
use super::inputs::id;
use super::loaders::*;
use super::{app, caller, load};
use crate::domain;
use crate::domain::contact_point::NewContactPoint;
use crate::domain::ContactPointKind;
use crate::ids::encode;
use entity::*;

/// An e-mail, phone, postal address or website of a customer.
pub struct ContactPoint(pub contact_point::Model);

#[Object]
impl ContactPoint {
    pub(super) async fn id(&self) -> ID {
        ID(encode(self.0.id))
    }
    async fn kind(&self) -> ContactPointKind {
        self.0.kind
    }
    /// As entered.
    async fn value(&self) -> &str {
        &self.0.value
    }
    /// The form used for matching: lowercased e-mail, E.164 phone, …
    async fn normalized_value(&self) -> &str {
        &self.0.normalized
    }
    async fn label(&self) -> Option<&str> {
        self.0.label.as_deref()
    }
    async fn verified(&self) -> bool {
        self.0.verified
    }
    /// The one to use first among the customer's contact points of this kind.
    async fn primary(&self) -> bool {
        self.0.is_primary
    }
    async fn customer(&self, ctx: &Context<'_>) -> Result<Option<Customer>> {
        Ok(load(ctx, CustomerById(self.0.customer_id))
            .await?
            .map(Customer::new))
    }
}

#[derive(SimpleObject)]
pub struct ContactPointPayload {
    pub contact_point: ContactPoint,
    pub customer: Customer,
}

#[derive(SimpleObject)]
pub struct RemoveContactPointPayload {
    pub removed_contact_point_id: ID,
    pub customer: Customer,
}

/// A contact point to add.
#[derive(InputObject)]
pub struct ContactPointInput {
    pub kind: ContactPointKind,
    /// An e-mail, a phone in international format (+34 600 123 456), an address or a web address.
    pub value: String,
    /// Such as "work" or "home".
    pub label: Option<String>,
    /// Make it the customer's primary of its kind (the first of a kind always is).
    #[graphql(default)]
    pub primary: bool,
    #[graphql(default)]
    pub verified: bool,
}

impl From<ContactPointInput> for NewContactPoint {
    fn from(input: ContactPointInput) -> Self {
        NewContactPoint {
            kind: input.kind,
            value: input.value,
            label: input.label,
            primary: input.primary,
            verified: input.verified,
        }
    }
}

#[derive(InputObject)]
pub struct AddContactPointInput {
    pub customer_id: ID,
    pub contact_point: ContactPointInput,
}

#[derive(InputObject)]
pub struct RemoveContactPointInput {
    pub id: ID,
}

// The mutations on this noun; the `Mutation` root delegates to them.

pub(super) async fn add_contact_point(
    ctx: &Context<'_>,
    input: AddContactPointInput,
) -> Result<ContactPointPayload> {
    let customer = id::<CustomerId>("customerId", &input.customer_id)?;
    let point = domain::contact_point::add(
        &app(ctx).db,
        caller(ctx)?,
        customer,
        input.contact_point.into(),
    )
    .await?;
    Ok(ContactPointPayload {
        contact_point: ContactPoint(point),
        customer: customer_payload(ctx, customer).await?,
    })
}

pub(super) async fn remove_contact_point(
    ctx: &Context<'_>,
    input: RemoveContactPointInput,
) -> Result<RemoveContactPointPayload> {
    let point = id::<ContactPointId>("id", &input.id)?;
    let customer = domain::contact_point::remove(&app(ctx).db, caller(ctx)?, point).await?;
    Ok(RemoveContactPointPayload {
        removed_contact_point_id: input.id,
        customer: customer_payload(ctx, customer).await?,
    })
}
