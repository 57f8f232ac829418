//! Deals: the object, inputs and payloads.
//! The mutations on deals are here too; the `Mutation` root delegates to them.

use async_graphql::{
    Context, InputObject, MaybeUndefined, Object, Result, SimpleObject, Value, ID,
};
use chrono::{DateTime, NaiveDate, Utc};

use super::customer::Customer;
use super::fast::{enumeration, opt, opt_text, scalar, text, Plain};
use super::inputs::{change, change_id, id, opt_id};
use super::loaders::*;
use super::organization::Organization;
use super::{app, caller, load};
use crate::domain::deal::{DealChanges, NewDeal};
use crate::domain::{self, DealStage};
use crate::ids::encode;
use entity::*;

/// An opportunity with a customer or an organization.
pub struct Deal(pub deal::Model);

impl Plain for Deal {
    fn plain(&self, field: &str) -> Option<Value> {
        let row = &self.0;
        Some(match field {
            "id" => text(&encode(row.id)),
            "title" => text(&row.title),
            "amount" => opt_text(row.amount_minor.map(domain::deal::format_amount).as_deref()),
            "currency" => text(&row.currency),
            "stage" => enumeration(row.stage),
            "closeDate" => opt(&row.close_date),
            "createdAt" => scalar(&row.created_at),
            "updatedAt" => scalar(&row.updated_at),
            _ => return None,
        })
    }
}

/// An opportunity with a customer and/or an organization, moving through the pipeline
/// stages.
#[Object]
impl Deal {
    /// The deal's id (`dea_…`).
    pub(super) async fn id(&self) -> ID {
        ID(encode(self.0.id))
    }
    /// What is being sold (at most 300 characters).
    async fn title(&self) -> &str {
        &self.0.title
    }
    /// An exact decimal with two fraction digits, such as `"1250.00"`.
    async fn amount(&self) -> Option<String> {
        self.0.amount_minor.map(domain::deal::format_amount)
    }
    /// ISO 4217 code.
    async fn currency(&self) -> &str {
        &self.0.currency
    }
    /// Where it stands in the pipeline.
    async fn stage(&self) -> DealStage {
        self.0.stage
    }
    /// The day it closed or is expected to close (`YYYY-MM-DD`); `null` when not set.
    async fn close_date(&self) -> Option<NaiveDate> {
        self.0.close_date
    }
    /// The customer it is with; `null` when none.
    async fn customer(&self, ctx: &Context<'_>) -> Result<Option<Customer>> {
        match self.0.customer_id {
            Some(id) => Ok(load(ctx, CustomerById(id)).await?.map(Customer::new)),
            None => Ok(None),
        }
    }
    /// The organization it is with; `null` when none.
    async fn organization(&self, ctx: &Context<'_>) -> Result<Option<Organization>> {
        match self.0.organization_id {
            Some(id) => Ok(load(ctx, OrganizationById(id)).await?.map(Organization)),
            None => Ok(None),
        }
    }
    /// When it was created.
    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }
    /// When it last changed.
    async fn updated_at(&self) -> DateTime<Utc> {
        self.0.updated_at
    }
}

/// What a change to a deal answers.
#[derive(SimpleObject)]
pub struct DealPayload {
    /// The deal as the mutation left it.
    pub deal: Deal,
}

/// A new deal.
#[derive(InputObject)]
pub struct CreateDealInput {
    /// What is being sold (at most 300 characters).
    pub title: String,
    /// The customer it is with (`cus_…`).
    pub customer_id: Option<ID>,
    /// The organization it is with (`org_…`).
    pub organization_id: Option<ID>,
    /// An exact decimal string with at most two fraction digits, such as "1250.00".
    pub amount: Option<String>,
    /// ISO 4217; defaults to EUR.
    pub currency: Option<String>,
    /// Defaults to QUALIFICATION.
    pub stage: Option<DealStage>,
    /// The day it is expected to close (`YYYY-MM-DD`).
    pub close_date: Option<NaiveDate>,
}

/// Changes to a deal: fields left out stay as they are; `null` clears a nullable field.
#[derive(InputObject)]
pub struct UpdateDealInput {
    /// The deal (`dea_…`).
    pub id: ID,
    /// A new title (at most 300 characters).
    pub title: Option<String>,
    /// Another customer (`cus_…`); `null` detaches it.
    pub customer_id: MaybeUndefined<ID>,
    /// Another organization (`org_…`); `null` detaches it.
    pub organization_id: MaybeUndefined<ID>,
    /// A new amount, an exact decimal string with at most two fraction digits; `null`
    /// clears it.
    pub amount: MaybeUndefined<String>,
    /// A new ISO 4217 currency code.
    pub currency: Option<String>,
    /// A new stage.
    pub stage: Option<DealStage>,
    /// A new close date (`YYYY-MM-DD`); `null` clears it.
    pub close_date: MaybeUndefined<NaiveDate>,
}

// The mutations on this noun; the `Mutation` root delegates to them.

pub(super) async fn create_deal(ctx: &Context<'_>, input: CreateDealInput) -> Result<DealPayload> {
    let new = NewDeal {
        title: input.title,
        customer_id: opt_id::<CustomerId>("customerId", input.customer_id.as_ref())?,
        organization_id: opt_id::<OrganizationId>(
            "organizationId",
            input.organization_id.as_ref(),
        )?,
        amount: input.amount,
        currency: input.currency,
        stage: input.stage,
        close_date: input.close_date,
    };
    let model = domain::deal::create(&app(ctx).db, caller(ctx)?, new).await?;
    Ok(DealPayload { deal: Deal(model) })
}

pub(super) async fn update_deal(ctx: &Context<'_>, input: UpdateDealInput) -> Result<DealPayload> {
    let id = id::<DealId>("id", &input.id)?;
    let changes = DealChanges {
        title: input.title,
        customer_id: change_id::<CustomerId>("customerId", input.customer_id)?,
        organization_id: change_id::<OrganizationId>("organizationId", input.organization_id)?,
        amount: change(input.amount),
        currency: input.currency,
        stage: input.stage,
        close_date: change(input.close_date),
    };
    let model = domain::deal::update(&app(ctx).db, caller(ctx)?, id, changes).await?;
    Ok(DealPayload { deal: Deal(model) })
}
