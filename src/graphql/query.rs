//! The query root: it only names the fields (their order and docs make the SDL); each
//! resolver lives with its noun (`customer::customers`, `types::fetch_node`, …), as the
//! mutation root's do.

use async_graphql::{Context, Object, Result, ID};

use super::customer::{Customer, CustomerConnection, CustomerFilterInput, CustomerOrder};
use super::inbox::{InboxConnection, InboxCounts, InboxFilterInput};
use super::interaction::{InteractionConnection, InteractionFilterInput};
use super::organization::{Organization, OrganizationConnection};
use super::quality::DataQuality;
use super::reply::SavedReplyConnection;
use super::search::{
    CustomerSearchHit, SearchConnection, SearchFilterInput, SearchSort, SearchStatusInfo,
};
use super::service::{
    BusinessHoursObject, ServiceMetrics, ServiceMetricsFilterInput, ServiceRangeInput,
    SlaRuleObject,
};
use super::source::Source;
use super::trusted_document::TrustedDocument;
use super::types::{fetch_node, Channel, Node};
use super::user::User;
use super::workspace::Viewer;
use crate::domain::inbox::InboxOrder;
use crate::domain::page::PageArgs;
use crate::domain::service::ServiceGroupBy;
use crate::error::Error;

pub struct Query;

/// The most ids `nodes(ids:)` takes at once.
const MAX_NODES: usize = 100;

/// Everything a key may read, in its own workspace only: connections give at most 100
/// items a page, and an id of another workspace reads as not found (`null`).
#[Object]
impl Query {
    /// Any object by its id; `null` when this workspace has no such object.
    async fn node(
        &self,
        ctx: &Context<'_>,
        #[graphql(
            desc = "An id as this API hands them out (`cus_…`, `cnv_…`, …); `BAD_USER_INPUT` when malformed."
        )]
        id: ID,
    ) -> Result<Option<Node>> {
        fetch_node(ctx, &id).await
    }

    /// Several objects by id, in the order asked; `null` for each one not found (at most 100).
    async fn nodes(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "At most 100 ids, of any types; more is `BAD_USER_INPUT`.")] ids: Vec<ID>,
    ) -> Result<Vec<Option<Node>>> {
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
        super::workspace::viewer(ctx).await
    }

    /// The user of the calling API key; `null` for a key that belongs to nobody.
    async fn me(&self, ctx: &Context<'_>) -> Result<Option<User>> {
        super::user::me(ctx).await
    }

    /// The workspace's saved replies, by name.
    async fn saved_replies(
        &self,
        ctx: &Context<'_>,
        #[graphql(
            desc = "How many to return, 0 to 100 (default 20); `BAD_USER_INPUT` outside that range."
        )]
        first: Option<i32>,
        #[graphql(
            desc = "The `endCursor` (or an edge's `cursor`) of the previous page, to get the items after it; `BAD_USER_INPUT` for a cursor this list did not hand out."
        )]
        after: Option<String>,
    ) -> Result<SavedReplyConnection> {
        super::reply::saved_replies(ctx, first, after).await
    }

    /// The workspace's users (the inbox's agents), by name.
    async fn users(&self, ctx: &Context<'_>) -> Result<Vec<User>> {
        Ok(super::charged(ctx, super::user::users(ctx).await?)?)
    }

    /// The conversations to work, filtered (spam hidden unless asked for) and ordered
    /// (LAST_ACTIVITY by default), forward pages of at most 100.
    async fn inbox(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "Which conversations; all but spam when left out.")] filter: Option<
            InboxFilterInput,
        >,
        #[graphql(desc = "The order; most recent activity first when left out.")] order_by: Option<
            InboxOrder,
        >,
        #[graphql(
            desc = "How many to return, 0 to 100 (default 20); `BAD_USER_INPUT` outside that range."
        )]
        first: Option<i32>,
        #[graphql(
            desc = "The `endCursor` (or an edge's `cursor`) of the previous page, to get the items after it; `BAD_USER_INPUT` for a cursor this list did not hand out."
        )]
        after: Option<String>,
    ) -> Result<InboxConnection> {
        super::inbox::inbox(ctx, filter, order_by, first, after).await
    }

    /// How many conversations `filter` matches in each status (its `statuses` aside):
    /// the inbox's tabs.
    async fn inbox_counts(
        &self,
        ctx: &Context<'_>,
        #[graphql(
            desc = "As `inbox` takes it; its `statuses` are ignored (each status is counted)."
        )]
        filter: Option<InboxFilterInput>,
    ) -> Result<InboxCounts> {
        super::inbox::inbox_counts(ctx, filter).await
    }

    /// One customer with everything known about them; `null` when not found.
    async fn customer(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The customer's id (`cus_…`); `BAD_USER_INPUT` for another kind of id.")]
        id: ID,
    ) -> Result<Option<Customer>> {
        super::customer::customer(ctx, &id).await
    }

    /// Everything held about a customer as one JSON document (admin role), for a
    /// subject's access or portability request: profile, organization, contact points,
    /// identities with their profile links, tags, notes, deals, duplicate suggestions,
    /// and every conversation with their messages (whole, raw platform payloads included);
    /// `NOT_FOUND` when the workspace has no such customer.
    async fn export_customer(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The customer's id (`cus_…`); `BAD_USER_INPUT` for another kind of id.")]
        id: ID,
    ) -> Result<async_graphql::Json<serde_json::Value>> {
        super::gdpr::export_customer(ctx, &id).await
    }

    /// A customer by your own id for them (at most 200 characters).
    async fn customer_by_external_id(
        &self,
        ctx: &Context<'_>,
        #[graphql(
            desc = "The `externalId` given when the customer was created or updated; exact match."
        )]
        external_id: String,
    ) -> Result<Option<Customer>> {
        super::customer::customer_by_external_id(ctx, &external_id).await
    }

    /// Customers, filtered and ordered (newest first by default), at most 100 a page.
    #[expect(
        clippy::too_many_arguments,
        reason = "a Relay connection's filter, order and four paging arguments are GraphQL arguments, so resolver parameters"
    )]
    async fn customers(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "Which customers; all of the workspace when left out.")] filter: Option<
            CustomerFilterInput,
        >,
        #[graphql(desc = "The order; newest first (`CREATED_AT`, `DESC`) when left out.")]
        order_by: Option<CustomerOrder>,
        #[graphql(
            desc = "How many to return, 0 to 100 (default 20); `BAD_USER_INPUT` outside that range."
        )]
        first: Option<i32>,
        #[graphql(
            desc = "The `endCursor` (or an edge's `cursor`) of the previous page, to get the items after it; `BAD_USER_INPUT` for a cursor this list did not hand out."
        )]
        after: Option<String>,
        #[graphql(
            desc = "How many to return from the end (backward paging), 0 to 100; not with `first`."
        )]
        last: Option<i32>,
        #[graphql(
            desc = "The `startCursor` of the following page, to get the items before it (backward paging)."
        )]
        before: Option<String>,
    ) -> Result<CustomerConnection> {
        let page = PageArgs {
            first,
            after,
            last,
            before,
        };
        super::customer::customers(ctx, filter, order_by, page).await
    }

    /// One organization; `null` when this workspace has no such organization.
    async fn organization(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The organization's id (`org_…`).")] id: ID,
    ) -> Result<Option<Organization>> {
        super::organization::organization(ctx, &id).await
    }

    /// Organizations by name; `search` (at most 200 characters) matches part of the name
    /// or domain.
    async fn organizations(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "Part of the name or domain, case-insensitive; at most 200 characters.")]
        search: Option<String>,
        #[graphql(
            desc = "How many to return, 0 to 100 (default 20); `BAD_USER_INPUT` outside that range."
        )]
        first: Option<i32>,
        #[graphql(
            desc = "The `endCursor` (or an edge's `cursor`) of the previous page, to get the items after it; `BAD_USER_INPUT` for a cursor this list did not hand out."
        )]
        after: Option<String>,
        #[graphql(
            desc = "How many to return from the end (backward paging), 0 to 100; not with `first`."
        )]
        last: Option<i32>,
        #[graphql(
            desc = "The `startCursor` of the following page, to get the items before it (backward paging)."
        )]
        before: Option<String>,
    ) -> Result<OrganizationConnection> {
        let page = PageArgs {
            first,
            after,
            last,
            before,
        };
        super::organization::organizations(ctx, search, page).await
    }

    /// The workspace's sources by name.
    async fn sources(&self, ctx: &Context<'_>) -> Result<Vec<Source>> {
        Ok(super::charged(ctx, super::source::sources(ctx).await?)?)
    }

    /// One source; `null` when this workspace has no such source.
    async fn source(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The source's id (`src_…`).")] id: ID,
    ) -> Result<Option<Source>> {
        super::source::source(ctx, &id).await
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
        #[graphql(
            desc = "The words to find, at most 500 characters; empty matches every interaction the filter lets through."
        )]
        query: String,
        #[graphql(desc = "Narrows the hits; every given field must match.")] filter: Option<
            SearchFilterInput,
        >,
        #[graphql(desc = "The order; `RELEVANCE` when left out.")] sort: Option<SearchSort>,
        #[graphql(
            desc = "How many to return, 0 to 100 (default 20); `BAD_USER_INPUT` outside that range."
        )]
        first: Option<i32>,
        #[graphql(
            desc = "The `endCursor` of the previous page of a search in the same `sort`; `BAD_USER_INPUT` for any other."
        )]
        after: Option<String>,
    ) -> Result<SearchConnection> {
        super::search::search(ctx, query, filter, sort, first, after).await
    }

    /// Customers by name, e-mail, phone, handle, organization or tag, for a
    /// search-as-you-type box (the last word matches as a prefix).
    async fn search_customers(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "What was typed so far, at most 500 characters.")] query: String,
        #[graphql(desc = "How many to return, 0 to 100 (default 10), best first.")] first: Option<
            i32,
        >,
    ) -> Result<Vec<CustomerSearchHit>> {
        super::search::search_customers(ctx, query, first).await
    }

    /// The search backend and how many of this workspace's changes are not indexed yet.
    async fn search_status(&self, ctx: &Context<'_>) -> Result<SearchStatusInfo> {
        super::search::search_status(ctx).await
    }

    /// Interactions across every customer and channel, newest first.
    async fn interactions(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "Which interactions; all of the workspace when left out.")] filter: Option<
            InteractionFilterInput,
        >,
        #[graphql(
            desc = "How many to return, 0 to 100 (default 20); `BAD_USER_INPUT` outside that range."
        )]
        first: Option<i32>,
        #[graphql(
            desc = "The `endCursor` (or an edge's `cursor`) of the previous page, to get the items after it; `BAD_USER_INPUT` for a cursor this list did not hand out."
        )]
        after: Option<String>,
        #[graphql(
            desc = "How many to return from the end (backward paging), 0 to 100; not with `first`."
        )]
        last: Option<i32>,
        #[graphql(
            desc = "The `startCursor` of the following page, to get the items before it (backward paging)."
        )]
        before: Option<String>,
    ) -> Result<InteractionConnection> {
        let page = PageArgs {
            first,
            after,
            last,
            before,
        };
        super::interaction::interactions(ctx, filter, page).await
    }

    /// The workspace's publications, newest first: what its own accounts posted on a
    /// channel that answers nothing stored (a post, a toot, a new topic). They belong to no
    /// customer (the workspace's own accounts never become customers); each has a
    /// conversation that the answers of every customer join.
    #[expect(
        clippy::too_many_arguments,
        reason = "two filters and a Relay connection's four paging arguments are GraphQL arguments, so resolver parameters"
    )]
    async fn publications(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "Only this source's (`src_…`).")] source_id: Option<ID>,
        #[graphql(desc = "Only these channels.")] channels: Option<Vec<Channel>>,
        #[graphql(
            desc = "How many to return, 0 to 100 (default 20); `BAD_USER_INPUT` outside that range."
        )]
        first: Option<i32>,
        #[graphql(
            desc = "The `endCursor` (or an edge's `cursor`) of the previous page, to get the items after it; `BAD_USER_INPUT` for a cursor this list did not hand out."
        )]
        after: Option<String>,
        #[graphql(
            desc = "How many to return from the end (backward paging), 0 to 100; not with `first`."
        )]
        last: Option<i32>,
        #[graphql(
            desc = "The `startCursor` of the following page, to get the items before it (backward paging)."
        )]
        before: Option<String>,
    ) -> Result<InteractionConnection> {
        let page = PageArgs {
            first,
            after,
            last,
            before,
        };
        super::interaction::publications(ctx, source_id, channels, page).await
    }

    /// Pairs of customers who may be one person, highest score first: pending suggestions
    /// (not merged, not dismissed) scoring at least `minScore`.
    async fn duplicate_suggestions(
        &self,
        ctx: &Context<'_>,
        #[graphql(
            desc = "The lowest score listed, 0 to 1 (default 0.5); `BAD_USER_INPUT` outside that range."
        )]
        min_score: Option<f64>,
        #[graphql(
            desc = "How many to return, 0 to 100 (default 20); `BAD_USER_INPUT` outside that range."
        )]
        first: Option<i32>,
        #[graphql(
            desc = "The `endCursor` (or an edge's `cursor`) of the previous page, to get the suggestions after it."
        )]
        after: Option<String>,
        #[graphql(
            desc = "How many to return from the end (backward paging), 0 to 100; not with `first`."
        )]
        last: Option<i32>,
        #[graphql(desc = "The `startCursor` of the following page (backward paging).")]
        before: Option<String>,
    ) -> Result<super::duplicate::DuplicateSuggestionConnection> {
        let page = PageArgs {
            first,
            after,
            last,
            before,
        };
        super::duplicate::duplicate_suggestions(ctx, min_score, page).await
    }

    /// Service metrics over `range` (see `ServiceMetrics` for what each figure counts),
    /// in total and per group, computed from the event log.
    async fn service_metrics(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The span measured, at most 400 days.")] range: ServiceRangeInput,
        #[graphql(desc = "How to split the figures into `groups`; no groups when left out.")]
        group_by: Option<ServiceGroupBy>,
        #[graphql(desc = "Which conversations count; all when left out.")] filter: Option<
            ServiceMetricsFilterInput,
        >,
    ) -> Result<ServiceMetrics> {
        super::service::service_metrics(ctx, range, group_by, filter).await
    }

    /// The data quality of the workspace's customers (completeness per field, invalid
    /// values, dropped values, pending duplicates, customers without a contact point,
    /// stale customers, a score) and its daily trend; any role.
    async fn data_quality(&self, ctx: &Context<'_>) -> Result<DataQuality> {
        super::caller(ctx)?;
        Ok(super::quality::data_quality())
    }

    /// The workspace's SLA rules, the any-channel rule (`channel: null`) first.
    async fn sla_rules(&self, ctx: &Context<'_>) -> Result<Vec<SlaRuleObject>> {
        Ok(super::charged(ctx, super::service::sla_rules(ctx).await?)?)
    }

    /// The workspace's time zone and business hours (UTC, Monday to Friday 09:00–17:00
    /// until set).
    async fn business_hours(&self, ctx: &Context<'_>) -> Result<BusinessHoursObject> {
        super::service::business_hours(ctx).await
    }

    /// The workspace's trusted documents (admin role), by hash: what its
    /// trusted-documents-only keys may run. `first` at most 500 (100 when not given);
    /// `after` a hash, to read the next page.
    async fn trusted_documents(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "How many documents to return: at most 500, 100 when left out.")]
        first: Option<i32>,
        #[graphql(desc = "The hash of the last document of the previous page.")] after: Option<
            String,
        >,
    ) -> Result<Vec<TrustedDocument>> {
        super::trusted_document::trusted_documents(ctx, first, after).await
    }
}
