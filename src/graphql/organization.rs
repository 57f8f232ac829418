//! Organizations: the object, its connection and total, inputs and payloads.
//! The mutations on organizations are here too; the `Mutation` root delegates to them.

use async_graphql::connection::{Connection, EmptyFields};
use async_graphql::{Context, InputObject, Json, MaybeUndefined, Object, Result, SimpleObject, ID};
use chrono::{DateTime, Utc};

use super::deal::Deal;
use super::inputs::{change, id};
use super::loaders::*;
use super::{app, caller, load};
use crate::domain::organization::{NewOrganization, OrganizationChanges};
use crate::domain::page::PageArgs;
use crate::domain::{self};
use crate::ids::encode;
use entity::*;

/// A company (B2B account).
pub struct Organization(pub organization::Model);

/// A company (a B2B account) customers belong to; deals can be with it.
#[Object]
impl Organization {
    /// The organization's id (`org_…`).
    pub(super) async fn id(&self) -> ID {
        ID(encode(self.0.id))
    }
    /// Its name (at most 200 characters).
    async fn name(&self) -> &str {
        &self.0.name
    }
    /// The web domain (`example.com`), unique in the workspace.
    async fn domain(&self) -> Option<&str> {
        self.0.domain.as_deref()
    }
    /// Free-form attributes, always a JSON object.
    async fn custom_attributes(&self) -> Json<serde_json::Value> {
        Json(self.0.custom.clone())
    }
    /// How many customers belong to it; list them with `customers(filter: {organizationId})`.
    async fn customer_count(&self, ctx: &Context<'_>) -> Result<i64> {
        Ok(load(ctx, CustomerCountOf(self.0.id)).await?.unwrap_or(0))
    }
    /// Its deals, newest first.
    async fn deals(&self, ctx: &Context<'_>) -> Result<Vec<Deal>> {
        let deals = load(ctx, DealsOfOrganization(self.0.id))
            .await?
            .unwrap_or_default();
        Ok(super::charged(ctx, deals)?.into_iter().map(Deal).collect())
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

/// `totalCount` of an organization list, computed only when asked for.
pub struct OrganizationTotal(pub Option<String>);

#[Object]
impl OrganizationTotal {
    /// How many organizations match, on every page together.
    async fn total_count(&self, ctx: &Context<'_>) -> Result<u64> {
        let caller = caller(ctx)?;
        Ok(domain::organization::count(&super::app(ctx).db, caller, self.0.as_deref()).await?)
    }
}

pub type OrganizationConnection = Connection<String, Organization, OrganizationTotal, EmptyFields>;

/// What a change to an organization answers.
#[derive(SimpleObject)]
pub struct OrganizationPayload {
    /// The organization as the mutation left it.
    pub organization: Organization,
}

/// A new organization.
#[derive(InputObject)]
pub struct CreateOrganizationInput {
    /// Its name, 1 to 200 characters.
    pub name: String,
    /// Such as example.com; unique in the workspace.
    pub domain: Option<String>,
    /// A JSON object of free-form attributes. At most 16 KiB serialized, 200 keys, 5 levels deep, keys of at most 100
    /// characters; no control characters.
    pub custom_attributes: Option<Json<serde_json::Value>>,
}

/// Changes to an organization: fields left out stay as they are; `null` clears a
/// nullable field.
#[derive(InputObject)]
pub struct UpdateOrganizationInput {
    /// The organization (`org_…`).
    pub id: ID,
    /// A new name, 1 to 200 characters.
    pub name: Option<String>,
    /// A new domain, unique in the workspace (`CONFLICT` otherwise); `null` clears it.
    pub domain: MaybeUndefined<String>,
    /// Replaces all custom attributes. At most 16 KiB serialized, 200 keys, 5 levels deep, keys of at most 100
    /// characters; no control characters.
    pub custom_attributes: Option<Json<serde_json::Value>>,
}

// The mutations on this noun; the `Mutation` root delegates to them.

pub(super) async fn create_organization(
    ctx: &Context<'_>,
    input: CreateOrganizationInput,
) -> Result<OrganizationPayload> {
    let new = NewOrganization {
        name: input.name,
        domain: input.domain,
        custom: input.custom_attributes.map(|json| json.0),
    };
    let model = domain::organization::create(&app(ctx).db, caller(ctx)?, new).await?;
    Ok(OrganizationPayload {
        organization: Organization(model),
    })
}

pub(super) async fn update_organization(
    ctx: &Context<'_>,
    input: UpdateOrganizationInput,
) -> Result<OrganizationPayload> {
    let id = id::<OrganizationId>("id", &input.id)?;
    let changes = OrganizationChanges {
        name: input.name,
        domain: change(input.domain),
        custom: input.custom_attributes.map(|json| json.0),
    };
    let model = domain::organization::update(&app(ctx).db, caller(ctx)?, id, changes).await?;
    Ok(OrganizationPayload {
        organization: Organization(model),
    })
}

/// `organization(id:)`: `null` when not found.
pub async fn organization(ctx: &Context<'_>, id: &ID) -> Result<Option<Organization>> {
    let id = super::inputs::id::<OrganizationId>("id", id)?;
    Ok(
        super::found(domain::organization::get(&app(ctx).db, caller(ctx)?, id).await)?
            .map(Organization),
    )
}

/// `organizations`: by name; `search` matches part of the name or domain.
pub async fn organizations(
    ctx: &Context<'_>,
    search: Option<String>,
    args: PageArgs,
) -> Result<OrganizationConnection> {
    let page =
        domain::organization::list(&app(ctx).db, caller(ctx)?, search.as_deref(), &args).await?;
    Ok(super::types::connection(
        page,
        OrganizationTotal(search),
        domain::organization::cursor,
        Organization,
    ))
}
