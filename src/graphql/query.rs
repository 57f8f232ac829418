//! The query root: thin resolvers that decode ids, call one domain function and wrap rows.

use async_graphql::{Context, Object, Result, ID};

use super::contact_point::ContactPoint;
use super::conversation::Conversation;
use super::customer::{
    Customer, CustomerConnection, CustomerFilterInput, CustomerOrder, CustomerTotal,
};
use super::deal::Deal;
use super::identity::Identity;
use super::interaction::{
    interaction_connection, Interaction, InteractionConnection, InteractionFilterInput,
};
use super::loaders::*;
use super::note::Note;
use super::organization::{Organization, OrganizationConnection, OrganizationTotal};
use super::source::Source;
use super::tag::Tag;
use super::types::{connection, Node, OrderDirection};
use super::workspace::{Viewer, Workspace};
use super::{app, caller, inputs, load};
use crate::domain::customer::CustomerOrderField;
use crate::domain::page::PageArgs;
use crate::domain::{self};
use crate::error::Error;
use crate::ids::{decode_any, AnyId};
use entity::{CustomerId, OrganizationId, SourceId};

pub struct Query;

/// `Ok(None)` for `NOT_FOUND`: a query by id answers `null` for a missing object, as it
/// does for another workspace's, so ids of other tenants reveal nothing.
fn found<T>(result: crate::Result<T>) -> crate::Result<Option<T>> {
    match result {
        Ok(value) => Ok(Some(value)),
        Err(Error::NotFound { .. }) => Ok(None),
        Err(err) => Err(err),
    }
}

/// The most ids `nodes(ids:)` takes at once.
const MAX_NODES: usize = 100;

#[Object]
impl Query {
    /// Any object by its id; `null` when this workspace has no such object.
    async fn node(&self, ctx: &Context<'_>, id: ID) -> Result<Option<Node>> {
        fetch_node(ctx, &id).await
    }

    /// Several objects by id, in the order asked; `null` for each one not found (at most 100).
    async fn nodes(&self, ctx: &Context<'_>, ids: Vec<ID>) -> Result<Vec<Option<Node>>> {
        if ids.len() > MAX_NODES {
            return Err(
                Error::field("ids", format!("ask for at most {MAX_NODES} ids at once")).into(),
            );
        }
        let nodes =
            futures_util::future::try_join_all(ids.iter().map(|id| fetch_node(ctx, id))).await?;
        Ok(nodes)
    }

    /// The caller: its workspace and role.
    async fn viewer(&self, ctx: &Context<'_>) -> Result<Viewer> {
        let caller = caller(ctx)?;
        let workspace = domain::workspace::get(&app(ctx).db, caller.workspace_id).await?;
        Ok(Viewer {
            workspace,
            role: caller.role,
            key_name: caller.key_name.clone(),
        })
    }

    /// One customer with everything known about them; `null` when not found.
    async fn customer(&self, ctx: &Context<'_>, id: ID) -> Result<Option<Customer>> {
        let id = inputs::id::<CustomerId>("id", &id)?;
        Ok(found(domain::customer::get(&app(ctx).db, caller(ctx)?, id).await)?.map(Customer))
    }

    /// A customer by your own id for them (at most 200 characters).
    async fn customer_by_external_id(
        &self,
        ctx: &Context<'_>,
        external_id: String,
    ) -> Result<Option<Customer>> {
        Ok(
            domain::customer::by_external_id(&app(ctx).db, caller(ctx)?, &external_id)
                .await?
                .map(Customer),
        )
    }

    /// Customers, filtered and ordered (newest first by default), at most 100 a page.
    #[expect(
        clippy::too_many_arguments,
        reason = "a Relay connection's filter, order and four paging arguments are GraphQL arguments, so resolver parameters"
    )]
    async fn customers(
        &self,
        ctx: &Context<'_>,
        filter: Option<CustomerFilterInput>,
        order_by: Option<CustomerOrder>,
        first: Option<i32>,
        after: Option<String>,
        last: Option<i32>,
        before: Option<String>,
    ) -> Result<CustomerConnection> {
        let filter = filter.unwrap_or_default().into_domain()?;
        let (field, direction) = order_by
            .map_or((CustomerOrderField::CreatedAt, OrderDirection::Desc), |o| {
                (o.field, o.direction)
            });
        let args = PageArgs {
            first,
            after,
            last,
            before,
        };
        let descending = direction == OrderDirection::Desc;
        let page = domain::customer::list(
            &app(ctx).db,
            caller(ctx)?,
            &filter,
            field,
            descending,
            &args,
        )
        .await?;
        Ok(connection(
            page,
            CustomerTotal(filter),
            |row| domain::customer::cursor(row, field),
            Customer,
        ))
    }

    async fn organization(&self, ctx: &Context<'_>, id: ID) -> Result<Option<Organization>> {
        let id = inputs::id::<OrganizationId>("id", &id)?;
        Ok(
            found(domain::organization::get(&app(ctx).db, caller(ctx)?, id).await)?
                .map(Organization),
        )
    }

    /// Organizations by name; `search` (at most 200 characters) matches part of the name
    /// or domain.
    async fn organizations(
        &self,
        ctx: &Context<'_>,
        search: Option<String>,
        first: Option<i32>,
        after: Option<String>,
        last: Option<i32>,
        before: Option<String>,
    ) -> Result<OrganizationConnection> {
        let args = PageArgs {
            first,
            after,
            last,
            before,
        };
        let page = domain::organization::list(&app(ctx).db, caller(ctx)?, search.as_deref(), &args)
            .await?;
        Ok(connection(
            page,
            OrganizationTotal(search),
            domain::organization::cursor,
            Organization,
        ))
    }

    /// The workspace's sources by name.
    async fn sources(&self, ctx: &Context<'_>) -> Result<Vec<Source>> {
        Ok(domain::source::list(&app(ctx).db, caller(ctx)?)
            .await?
            .into_iter()
            .map(Source)
            .collect())
    }

    async fn source(&self, ctx: &Context<'_>, id: ID) -> Result<Option<Source>> {
        let id = inputs::id::<SourceId>("id", &id)?;
        Ok(found(domain::source::get(&app(ctx).db, caller(ctx)?, id).await)?.map(Source))
    }

    /// Searches the full history of the workspace's interactions: every word must match
    /// (one typo from 5 letters, two from 9, the last word as a prefix, accents and case
    /// ignored), narrowed by `filter`, best matches or newest first, with highlighted
    /// fragments, an estimated total and facet counts. `query` has at most 500 characters.
    /// In RELEVANCE order pages reach the first 1,000 hits (a cursor past them is
    /// `BAD_USER_INPUT`); NEWEST and OLDEST page through every hit, each page as cheap as
    /// the first. A cursor works only with the order it came from.
    async fn search(
        &self,
        ctx: &Context<'_>,
        query: String,
        filter: Option<super::search::SearchFilterInput>,
        sort: Option<super::search::SearchSort>,
        first: Option<i32>,
        after: Option<String>,
    ) -> Result<super::search::SearchConnection> {
        super::search::search(ctx, query, filter, sort, first, after).await
    }

    /// Customers by name, e-mail, phone, handle, organization or tag, for a
    /// search-as-you-type box (the last word matches as a prefix).
    async fn search_customers(
        &self,
        ctx: &Context<'_>,
        query: String,
        first: Option<i32>,
    ) -> Result<Vec<super::search::CustomerSearchHit>> {
        super::search::search_customers(ctx, query, first).await
    }

    /// The search backend and how many of this workspace's changes are not indexed yet.
    async fn search_status(&self, ctx: &Context<'_>) -> Result<super::search::SearchStatusInfo> {
        super::search::search_status(ctx).await
    }

    /// Interactions across every customer and channel, newest first.
    async fn interactions(
        &self,
        ctx: &Context<'_>,
        filter: Option<InteractionFilterInput>,
        first: Option<i32>,
        after: Option<String>,
        last: Option<i32>,
        before: Option<String>,
    ) -> Result<InteractionConnection> {
        let filter = filter.unwrap_or_default().into_domain()?;
        let page = domain::interaction::list(
            &app(ctx).db,
            caller(ctx)?,
            &filter,
            &PageArgs {
                first,
                after,
                last,
                before,
            },
        )
        .await?;
        Ok(interaction_connection(page, filter))
    }
}

/// Any object by id through the loaders, so `nodes(ids:)` batches per kind.
async fn fetch_node(ctx: &Context<'_>, id: &ID) -> Result<Option<Node>> {
    let id = decode_any("id", id.as_str())?;
    let caller = caller(ctx)?;
    let node = match id {
        AnyId::Workspace(id) if id == caller.workspace_id => Some(Node::Workspace(Workspace(
            domain::workspace::get(&app(ctx).db, id).await?,
        ))),
        AnyId::Customer(id) => load(ctx, CustomerById(id))
            .await?
            .map(|m| Node::Customer(Customer(m))),
        AnyId::Organization(id) => load(ctx, OrganizationById(id))
            .await?
            .map(|m| Node::Organization(Organization(m))),
        AnyId::Identity(id) => load(ctx, IdentityById(id))
            .await?
            .map(|m| Node::Identity(Identity(m))),
        AnyId::Interaction(id) => load(ctx, InteractionById(id))
            .await?
            .map(|m| Node::Interaction(Interaction(m))),
        AnyId::Conversation(id) => load(ctx, ConversationById(id))
            .await?
            .map(|m| Node::Conversation(Conversation(m))),
        AnyId::Deal(id) => load(ctx, DealById(id)).await?.map(|m| Node::Deal(Deal(m))),
        AnyId::Note(id) => load(ctx, NoteById(id)).await?.map(|m| Node::Note(Note(m))),
        AnyId::ContactPoint(id) => load(ctx, ContactPointById(id))
            .await?
            .map(|m| Node::ContactPoint(ContactPoint(m))),
        AnyId::Tag(id) => load(ctx, TagById(id)).await?.map(|m| Node::Tag(Tag(m))),
        AnyId::Source(id) => load(ctx, SourceById(id))
            .await?
            .map(|m| Node::Source(Source(m))),
        AnyId::Workspace(_) | AnyId::ApiKey(_) => None,
    };
    Ok(node)
}
