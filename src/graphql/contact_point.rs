//! Contact points (e-mail addresses, phones, handles) of a customer: object, inputs, payloads.
//! The mutations on contact points are here too; the `Mutation` root delegates to them.

use async_graphql::{Context, InputObject, Object, Result, SimpleObject, Value, ID};

use super::customer::{customer_payload, Customer};
use super::fast::{enumeration, opt_text, scalar, text, Plain};
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

impl Plain for ContactPoint {
    fn plain(&self, field: &str) -> Option<Value> {
        let row = &self.0;
        Some(match field {
            "id" => text(&encode(row.id)),
            "kind" => enumeration(row.kind),
            "value" => text(&row.value),
            "normalizedValue" => text(&row.normalized),
            "label" => opt_text(row.label.as_deref()),
            "verified" => scalar(&row.verified),
            "primary" => scalar(&row.is_primary),
            _ => return None,
        })
    }
}

/// An e-mail, phone, postal address or website of a customer. Unique in the workspace by
/// kind and normalized value: identity resolution matches on it.
#[Object]
impl ContactPoint {
    /// The contact point's id (`cpt_…`).
    pub(super) async fn id(&self) -> ID {
        ID(encode(self.0.id))
    }
    /// What it holds.
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
    /// A label such as "work" or "home"; `null` when none was given.
    async fn label(&self) -> Option<&str> {
        self.0.label.as_deref()
    }
    /// Whether someone confirmed it belongs to the customer (as set when added).
    async fn verified(&self) -> bool {
        self.0.verified
    }
    /// The one to use first among the customer's contact points of this kind.
    async fn primary(&self) -> bool {
        self.0.is_primary
    }
    /// The customer it belongs to.
    async fn customer(&self, ctx: &Context<'_>) -> Result<Option<Customer>> {
        Ok(load(ctx, CustomerById(self.0.customer_id))
            .await?
            .map(Customer::new))
    }
}

/// What `addContactPoint` answers.
#[derive(SimpleObject)]
pub struct ContactPointPayload {
    /// The contact point added, as stored (with its normalized value).
    pub contact_point: ContactPoint,
    /// Its customer after the change (primaries of the kind updated).
    pub customer: Customer,
}

/// What `removeContactPoint` answers.
#[derive(SimpleObject)]
pub struct RemoveContactPointPayload {
    /// The id of the contact point removed.
    pub removed_contact_point_id: ID,
    /// Its former customer after the change.
    pub customer: Customer,
}

/// A contact point to add.
#[derive(InputObject)]
pub struct ContactPointInput {
    /// What `value` holds.
    pub kind: ContactPointKind,
    /// An e-mail, a phone in international format (+34 600 123 456), an address or a web address.
    pub value: String,
    /// Such as "work" or "home".
    pub label: Option<String>,
    /// Make it the customer's primary of its kind (the first of a kind always is).
    #[graphql(default)]
    pub primary: bool,
    /// Whether someone confirmed it belongs to the customer.
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

/// A contact point to add to a customer.
#[derive(InputObject)]
pub struct AddContactPointInput {
    /// The customer (`cus_…`).
    pub customer_id: ID,
    /// The contact point.
    pub contact_point: ContactPointInput,
}

/// The contact point to remove.
#[derive(InputObject)]
pub struct RemoveContactPointInput {
    /// The contact point (`cpt_…`).
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
