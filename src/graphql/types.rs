//! The object types of the schema. Each wraps an entity row; relations go through the
//! request's [`Loaders`](super::loaders::Loaders) so lists never issue a query per row.

use async_graphql::connection::{Connection, Edge, EmptyFields};
use async_graphql::{Context, Enum, Interface, Json, Object, Result, SimpleObject, ID};
use chrono::{DateTime, NaiveDate, Utc};

use super::loaders::*;
use super::{caller, load};
use crate::domain::interaction::{InteractionFilter, Parent};
use crate::domain::page::{Page, PageArgs};
use crate::domain::{
    self, ContactPointKind, ConversationStatus, DealStage, Direction, InteractionKind,
    LifecycleStage, Priority, Role,
};
use crate::error::Error;
use crate::ids::{encode, Kind};
use entity::*;

/// The channels Rapport talks to.
#[derive(Enum, Copy, Clone, Debug, PartialEq, Eq, Hash)]
#[graphql(remote = "connectors::Channel")]
pub enum Channel {
    Mastodon,
    Bluesky,
    Reddit,
    HackerNews,
    Rss,
    Email,
    Webhook,
    Phone,
    Meeting,
    Manual,
}

impl Channel {
    pub fn as_str(self) -> &'static str {
        connectors::Channel::from(self).as_str()
    }

    /// Reads a stored channel name; an unknown one is a corrupt row.
    pub fn from_db(name: &str) -> async_graphql::Result<Channel> {
        connectors::Channel::parse(name)
            .map(Channel::from)
            .ok_or_else(|| {
                Error::Internal(format!("unknown channel `{name}` in the database")).into()
            })
    }
}

/// Sort direction.
#[derive(Enum, Copy, Clone, Debug, Default, PartialEq, Eq)]
pub enum OrderDirection {
    Asc,
    #[default]
    Desc,
}

/// Any object that can be fetched by its id with `node(id:)`.
#[derive(Interface)]
#[graphql(field(
    name = "id",
    ty = "ID",
    desc = "The object's opaque, typed id (`cus_…`, `org_…`, …)."
))]
pub enum Node {
    Workspace(Workspace),
    Customer(Customer),
    Organization(Organization),
    ContactPoint(ContactPoint),
    Identity(Identity),
    Interaction(Interaction),
    Conversation(Conversation),
    Deal(Deal),
    Note(Note),
    Tag(Tag),
    Source(Source),
}

fn enum_of<T>(parse: fn(&str) -> crate::error::Result<T>, text: &str) -> Result<T> {
    Ok(parse(text)?)
}

/// A tenant: every object belongs to exactly one.
pub struct Workspace(pub workspace::Model);

#[Object]
impl Workspace {
    async fn id(&self) -> ID {
        ID(encode(Kind::Workspace, self.0.id))
    }
    async fn slug(&self) -> &str {
        &self.0.slug
    }
    async fn name(&self) -> &str {
        &self.0.name
    }
    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }
}

/// Who is calling.
pub struct Viewer {
    pub workspace: workspace::Model,
    pub role: Role,
    pub key_name: String,
}

#[Object]
impl Viewer {
    async fn workspace(&self) -> Workspace {
        Workspace(self.workspace.clone())
    }
    /// What this key may do.
    async fn role(&self) -> Role {
        self.role
    }
    /// The name given to the API key when it was created.
    async fn key_name(&self) -> &str {
        &self.key_name
    }
}

/// A person: the centre of the 360-degree view.
pub struct Customer(pub customer::Model);

#[Object]
impl Customer {
    async fn id(&self) -> ID {
        ID(encode(Kind::Customer, self.0.id))
    }
    async fn display_name(&self) -> &str {
        &self.0.display_name
    }
    async fn given_name(&self) -> Option<&str> {
        self.0.given_name.as_deref()
    }
    async fn family_name(&self) -> Option<&str> {
        self.0.family_name.as_deref()
    }
    async fn lifecycle_stage(&self) -> Result<LifecycleStage> {
        enum_of(LifecycleStage::from_db, &self.0.lifecycle_stage)
    }
    /// Your own id for this customer (from another system), unique in the workspace.
    async fn external_id(&self) -> Option<&str> {
        self.0.external_id.as_deref()
    }
    /// Free-form attributes, always a JSON object.
    async fn custom_attributes(&self) -> Json<serde_json::Value> {
        Json(self.0.custom.clone())
    }
    /// E-mails, phones, addresses and websites; primary first within each kind.
    async fn contact_points(&self, ctx: &Context<'_>) -> Result<Vec<ContactPoint>> {
        Ok(load(ctx, ContactPointsOf(self.0.id))
            .await?
            .unwrap_or_default()
            .into_iter()
            .map(ContactPoint)
            .collect())
    }
    /// The customer's accounts on each channel, optionally only on `channel`.
    async fn identities(
        &self,
        ctx: &Context<'_>,
        channel: Option<Channel>,
    ) -> Result<Vec<Identity>> {
        let identities = load(ctx, IdentitiesOf(self.0.id))
            .await?
            .unwrap_or_default();
        Ok(identities
            .into_iter()
            .filter(|identity| channel.is_none_or(|channel| identity.channel == channel.as_str()))
            .map(Identity)
            .collect())
    }
    async fn organization(&self, ctx: &Context<'_>) -> Result<Option<Organization>> {
        match self.0.organization_id {
            Some(id) => Ok(load(ctx, OrganizationById(id)).await?.map(Organization)),
            None => Ok(None),
        }
    }
    async fn tags(&self, ctx: &Context<'_>) -> Result<Vec<Tag>> {
        Ok(load(ctx, TagsOf(self.0.id))
            .await?
            .unwrap_or_default()
            .into_iter()
            .map(Tag)
            .collect())
    }
    /// Every interaction with this customer across every channel, newest first. With
    /// `search` (at most 500 characters), only those matching it (through the search
    /// index; forward pages only).
    async fn timeline(
        &self,
        ctx: &Context<'_>,
        filter: Option<super::inputs::TimelineFilter>,
        search: Option<String>,
        first: Option<i32>,
        after: Option<String>,
        last: Option<i32>,
        before: Option<String>,
    ) -> Result<InteractionConnection> {
        let filter = filter.map(InteractionFilter::from).unwrap_or_default();
        if let Some(search) = search.filter(|text| !text.trim().is_empty()) {
            if last.is_some() || before.is_some() {
                return Err(crate::Error::field(
                    "search",
                    "a searched timeline pages forward only: use first/after",
                )
                .into());
            }
            return super::search::searched_timeline(ctx, self.0.id, filter, &search, first, after)
                .await;
        }
        interactions_of(
            ctx,
            Parent::Customer,
            self.0.id,
            filter,
            PageArgs {
                first,
                after,
                last,
                before,
            },
        )
        .await
    }
    /// The customer's conversations, most recently active first.
    async fn conversations(
        &self,
        ctx: &Context<'_>,
        status: Option<ConversationStatus>,
    ) -> Result<Vec<Conversation>> {
        let conversations = load(ctx, ConversationsOf(self.0.id))
            .await?
            .unwrap_or_default();
        Ok(conversations
            .into_iter()
            .filter(|c| status.is_none_or(|status| c.status == status.as_str()))
            .map(Conversation)
            .collect())
    }
    async fn deals(&self, ctx: &Context<'_>) -> Result<Vec<Deal>> {
        Ok(load(ctx, DealsOf(self.0.id))
            .await?
            .unwrap_or_default()
            .into_iter()
            .map(Deal)
            .collect())
    }
    /// Internal notes, newest first.
    async fn notes(&self, ctx: &Context<'_>) -> Result<Vec<Note>> {
        Ok(load(ctx, NotesOf(self.0.id))
            .await?
            .unwrap_or_default()
            .into_iter()
            .map(Note)
            .collect())
    }
    async fn metrics(&self) -> CustomerMetrics {
        CustomerMetrics(self.0.clone())
    }
    /// When the customer first appeared (created or first interaction, whichever is earlier).
    async fn first_seen_at(&self) -> DateTime<Utc> {
        self.0.first_seen_at
    }
    /// The latest of creation and the last interaction.
    async fn last_seen_at(&self) -> DateTime<Utc> {
        self.0.last_seen_at
    }
    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }
    async fn updated_at(&self) -> DateTime<Utc> {
        self.0.updated_at
    }
}

/// Figures about one customer.
pub struct CustomerMetrics(customer::Model);

/// How many interactions a customer had on one channel.
#[derive(SimpleObject)]
pub struct ChannelCount {
    pub channel: Channel,
    pub count: i64,
}

#[Object]
impl CustomerMetrics {
    async fn first_seen_at(&self) -> DateTime<Utc> {
        self.0.first_seen_at
    }
    async fn last_seen_at(&self) -> DateTime<Utc> {
        self.0.last_seen_at
    }
    /// All interactions, every channel.
    async fn interaction_count(&self, ctx: &Context<'_>) -> Result<i64> {
        Ok(load(ctx, ChannelCountsOf(self.0.id))
            .await?
            .unwrap_or_default()
            .iter()
            .map(|(_, n)| n)
            .sum())
    }
    /// Interactions per channel, most first.
    async fn interactions_by_channel(&self, ctx: &Context<'_>) -> Result<Vec<ChannelCount>> {
        load(ctx, ChannelCountsOf(self.0.id))
            .await?
            .unwrap_or_default()
            .into_iter()
            .map(|(channel, count)| {
                Ok(ChannelCount {
                    channel: Channel::from_db(&channel)?,
                    count,
                })
            })
            .collect()
    }
    /// Conversations not yet resolved (open or pending).
    async fn open_conversations(&self, ctx: &Context<'_>) -> Result<i64> {
        Ok(load(ctx, OpenConversationsOf(self.0.id))
            .await?
            .unwrap_or(0))
    }
}

/// An e-mail, phone, postal address or website of a customer.
pub struct ContactPoint(pub contact_point::Model);

#[Object]
impl ContactPoint {
    async fn id(&self) -> ID {
        ID(encode(Kind::ContactPoint, self.0.id))
    }
    async fn kind(&self) -> Result<ContactPointKind> {
        enum_of(ContactPointKind::from_db, &self.0.kind)
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
            .map(Customer))
    }
}

/// A customer's account on one channel.
pub struct Identity(pub identity::Model);

#[Object]
impl Identity {
    async fn id(&self) -> ID {
        ID(encode(Kind::Identity, self.0.id))
    }
    async fn channel(&self) -> Result<Channel> {
        Channel::from_db(&self.0.channel)
    }
    /// The platform's stable id for the account (Mastodon account URI, Bluesky DID, …).
    async fn platform_id(&self) -> &str {
        &self.0.platform_id
    }
    async fn handle(&self) -> Option<&str> {
        self.0.handle.as_deref()
    }
    async fn display_name(&self) -> Option<&str> {
        self.0.display_name.as_deref()
    }
    async fn profile_url(&self) -> Option<&str> {
        self.0.profile_url.as_deref()
    }
    async fn avatar_url(&self) -> Option<&str> {
        self.0.avatar_url.as_deref()
    }
    async fn customer(&self, ctx: &Context<'_>) -> Result<Option<Customer>> {
        Ok(load(ctx, CustomerById(self.0.customer_id))
            .await?
            .map(Customer))
    }
    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }
}

/// A company (B2B account).
pub struct Organization(pub organization::Model);

#[Object]
impl Organization {
    async fn id(&self) -> ID {
        ID(encode(Kind::Organization, self.0.id))
    }
    async fn name(&self) -> &str {
        &self.0.name
    }
    /// The web domain (`example.com`), unique in the workspace.
    async fn domain(&self) -> Option<&str> {
        self.0.domain.as_deref()
    }
    async fn custom_attributes(&self) -> Json<serde_json::Value> {
        Json(self.0.custom.clone())
    }
    /// How many customers belong to it; list them with `customers(filter: {organizationId})`.
    async fn customer_count(&self, ctx: &Context<'_>) -> Result<i64> {
        Ok(load(ctx, CustomerCountOf(self.0.id)).await?.unwrap_or(0))
    }
    async fn deals(&self, ctx: &Context<'_>) -> Result<Vec<Deal>> {
        Ok(load(ctx, DealsOfOrganization(self.0.id))
            .await?
            .unwrap_or_default()
            .into_iter()
            .map(Deal)
            .collect())
    }
    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }
    async fn updated_at(&self) -> DateTime<Utc> {
        self.0.updated_at
    }
}

/// One mention, message, comment, review, e-mail, call, meeting or reply.
pub struct Interaction(pub interaction::Model);

#[Object]
impl Interaction {
    async fn id(&self) -> ID {
        ID(encode(Kind::Interaction, self.0.id))
    }
    async fn channel(&self) -> Result<Channel> {
        Channel::from_db(&self.0.channel)
    }
    async fn direction(&self) -> Result<Direction> {
        enum_of(Direction::from_db, &self.0.direction)
    }
    async fn kind(&self) -> Result<InteractionKind> {
        enum_of(InteractionKind::from_db, &self.0.kind)
    }
    async fn subject(&self) -> Option<&str> {
        self.0.subject.as_deref()
    }
    async fn text(&self) -> &str {
        &self.0.text
    }
    async fn html(&self) -> Option<&str> {
        self.0.html.as_deref()
    }
    /// Where the item lives on its platform.
    async fn url(&self) -> Option<&str> {
        self.0.url.as_deref()
    }
    /// ISO 639-1 language code, when known.
    async fn language(&self) -> Option<&str> {
        self.0.language.as_deref()
    }
    /// From -1 (negative) to 1 (positive), when known.
    async fn sentiment(&self) -> Option<f64> {
        self.0.sentiment
    }
    /// The platform's id of the item, for items that came from a source.
    async fn external_id(&self) -> Option<&str> {
        self.0.external_id.as_deref()
    }
    async fn occurred_at(&self) -> DateTime<Utc> {
        self.0.occurred_at
    }
    async fn ingested_at(&self) -> DateTime<Utc> {
        self.0.ingested_at
    }
    async fn customer(&self, ctx: &Context<'_>) -> Result<Option<Customer>> {
        Ok(load(ctx, CustomerById(self.0.customer_id))
            .await?
            .map(Customer))
    }
    /// The account that wrote it, for inbound items from a channel.
    async fn identity(&self, ctx: &Context<'_>) -> Result<Option<Identity>> {
        match self.0.identity_id {
            Some(id) => Ok(load(ctx, IdentityById(id)).await?.map(Identity)),
            None => Ok(None),
        }
    }
    async fn conversation(&self, ctx: &Context<'_>) -> Result<Option<Conversation>> {
        match self.0.conversation_id {
            Some(id) => Ok(load(ctx, ConversationById(id)).await?.map(Conversation)),
            None => Ok(None),
        }
    }
    /// The source it was ingested from or sent through; `null` when recorded by hand or
    /// when the source was deleted.
    async fn source(&self, ctx: &Context<'_>) -> Result<Option<Source>> {
        match self.0.source_id {
            Some(id) => Ok(load(ctx, SourceById(id)).await?.map(Source)),
            None => Ok(None),
        }
    }
}

/// A thread with one customer: the unit of the inbox.
pub struct Conversation(pub conversation::Model);

#[Object]
impl Conversation {
    async fn id(&self) -> ID {
        ID(encode(Kind::Conversation, self.0.id))
    }
    async fn channel(&self) -> Result<Channel> {
        Channel::from_db(&self.0.channel)
    }
    async fn subject(&self) -> Option<&str> {
        self.0.subject.as_deref()
    }
    async fn status(&self) -> Result<ConversationStatus> {
        enum_of(ConversationStatus::from_db, &self.0.status)
    }
    async fn priority(&self) -> Result<Priority> {
        enum_of(Priority::from_db, &self.0.priority)
    }
    /// Who works it.
    async fn assignee(&self) -> Option<&str> {
        self.0.assignee.as_deref()
    }
    async fn customer(&self, ctx: &Context<'_>) -> Result<Option<Customer>> {
        Ok(load(ctx, CustomerById(self.0.customer_id))
            .await?
            .map(Customer))
    }
    /// The messages of this thread, newest first.
    async fn interactions(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
        last: Option<i32>,
        before: Option<String>,
    ) -> Result<InteractionConnection> {
        let args = PageArgs {
            first,
            after,
            last,
            before,
        };
        interactions_of(
            ctx,
            Parent::Conversation,
            self.0.id,
            InteractionFilter::default(),
            args,
        )
        .await
    }
    async fn first_response_at(&self) -> Option<DateTime<Utc>> {
        self.0.first_response_at
    }
    async fn resolved_at(&self) -> Option<DateTime<Utc>> {
        self.0.resolved_at
    }
    async fn last_message_at(&self) -> DateTime<Utc> {
        self.0.last_message_at
    }
    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }
    async fn updated_at(&self) -> DateTime<Utc> {
        self.0.updated_at
    }
}

/// An opportunity with a customer or an organization.
pub struct Deal(pub deal::Model);

#[Object]
impl Deal {
    async fn id(&self) -> ID {
        ID(encode(Kind::Deal, self.0.id))
    }
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
    async fn stage(&self) -> Result<DealStage> {
        enum_of(DealStage::from_db, &self.0.stage)
    }
    async fn close_date(&self) -> Option<NaiveDate> {
        self.0.close_date
    }
    async fn customer(&self, ctx: &Context<'_>) -> Result<Option<Customer>> {
        match self.0.customer_id {
            Some(id) => Ok(load(ctx, CustomerById(id)).await?.map(Customer)),
            None => Ok(None),
        }
    }
    async fn organization(&self, ctx: &Context<'_>) -> Result<Option<Organization>> {
        match self.0.organization_id {
            Some(id) => Ok(load(ctx, OrganizationById(id)).await?.map(Organization)),
            None => Ok(None),
        }
    }
    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }
    async fn updated_at(&self) -> DateTime<Utc> {
        self.0.updated_at
    }
}

/// An internal note on a customer.
pub struct Note(pub note::Model);

#[Object]
impl Note {
    async fn id(&self) -> ID {
        ID(encode(Kind::Note, self.0.id))
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
            .map(Customer))
    }
    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }
    async fn updated_at(&self) -> DateTime<Utc> {
        self.0.updated_at
    }
}

/// A label on customers.
pub struct Tag(pub tag::Model);

#[Object]
impl Tag {
    async fn id(&self) -> ID {
        ID(encode(Kind::Tag, self.0.id))
    }
    async fn name(&self) -> &str {
        &self.0.name
    }
    async fn color(&self) -> Option<&str> {
        self.0.color.as_deref()
    }
}

/// A configured connector instance. Its secrets are write-only: `secretsSet` names them,
/// nothing returns their values.
pub struct Source(pub entity::source::Model);

#[Object]
impl Source {
    async fn id(&self) -> ID {
        ID(encode(Kind::Source, self.0.id))
    }
    async fn channel(&self) -> Result<Channel> {
        Channel::from_db(&self.0.channel)
    }
    async fn name(&self) -> &str {
        &self.0.name
    }
    /// The settings that are not secrets.
    async fn config(&self) -> Json<serde_json::Value> {
        Json(self.0.config.clone())
    }
    /// The names of the secrets that are set (`secret`, `access_token`, …), never their values.
    async fn secrets_set(&self) -> Vec<String> {
        domain::source::secret_names(&self.0)
    }
    /// Seconds between two pulls, for pull channels.
    async fn schedule_secs(&self) -> i32 {
        self.0.schedule_secs
    }
    /// Where the source has read up to, as its platform names positions.
    async fn cursor(&self) -> Option<&str> {
        self.0.cursor.as_deref()
    }
    async fn status(&self) -> Result<domain::source::SourceStatus> {
        enum_of(domain::source::SourceStatus::from_db, &self.0.status)
    }
    async fn last_error(&self) -> Option<&str> {
        self.0.last_error.as_deref()
    }
    async fn items_ingested(&self) -> i64 {
        self.0.items_ingested
    }
    async fn last_run_at(&self) -> Option<DateTime<Utc>> {
        self.0.last_run_at
    }
    async fn next_run_at(&self) -> Option<DateTime<Utc>> {
        self.0.next_run_at
    }
    /// For webhook sources: the path to POST deliveries to.
    async fn webhook_path(&self) -> Option<String> {
        (self.0.channel == Channel::Webhook.as_str())
            .then(|| format!("/webhooks/{}", encode(Kind::Source, self.0.id)))
    }
    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }
    async fn updated_at(&self) -> DateTime<Utc> {
        self.0.updated_at
    }
}

#[derive(SimpleObject)]
pub struct SourcePayload {
    pub source: Source,
}

/// What a sync did.
#[derive(SimpleObject)]
pub struct SyncSourcePayload {
    /// The source after the sync: status, cursor, lastError, nextRunAt.
    pub source: Source,
    /// Interactions stored by this sync.
    pub new_items: i32,
    /// Items seen again and dropped.
    pub duplicates: i32,
    /// Batches pulled.
    pub batches: i32,
    /// Why the sync failed, when it did (also the source's `lastError`).
    pub error: Option<String>,
}

#[derive(SimpleObject)]
pub struct DeleteSourcePayload {
    pub deleted_source_id: ID,
}

/// `totalCount` of a customer list, computed only when asked for.
pub struct CustomerTotal(pub domain::customer::CustomerFilter);

#[Object]
impl CustomerTotal {
    /// How many customers match the filter, on every page together.
    async fn total_count(&self, ctx: &Context<'_>) -> Result<u64> {
        Ok(domain::customer::count(&super::app(ctx).db, caller(ctx)?, &self.0).await?)
    }
}

/// `totalCount` of an interaction list or timeline, computed only when asked for.
pub struct InteractionTotal(pub InteractionFilter, pub Option<u64>);

#[Object]
impl InteractionTotal {
    /// How many interactions match the filter, on every page together (with a `search`,
    /// the index's estimate).
    async fn total_count(&self, ctx: &Context<'_>) -> Result<u64> {
        if let Some(known) = self.1 {
            return Ok(known);
        }
        let parent = match (self.0.customer_id, self.0.conversation_id) {
            (Some(customer), None) => Some((Parent::Customer, customer)),
            (None, Some(conversation)) => Some((Parent::Conversation, conversation)),
            _ => None,
        };
        match parent {
            Some((parent, id)) => {
                // Keyed without the parent's id so a page of timelines shares one count query.
                let filter = InteractionFilter {
                    customer_id: None,
                    conversation_id: None,
                    ..self.0.clone()
                };
                Ok(load(ctx, InteractionCountOf { parent, id, filter })
                    .await?
                    .unwrap_or(0) as u64)
            }
            None => {
                Ok(domain::interaction::count(&super::app(ctx).db, caller(ctx)?, &self.0).await?)
            }
        }
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

pub type CustomerConnection = Connection<String, Customer, CustomerTotal, EmptyFields>;
pub type InteractionConnection = Connection<String, Interaction, InteractionTotal, EmptyFields>;
pub type OrganizationConnection = Connection<String, Organization, OrganizationTotal, EmptyFields>;

/// Builds a Relay connection from a page, with `cursor` naming each row's position.
pub fn connection<M, N: async_graphql::OutputType, T: async_graphql::ObjectType>(
    page: Page<M>,
    total: T,
    cursor: impl Fn(&M) -> String,
    node: impl Fn(M) -> N,
) -> Connection<String, N, T, EmptyFields> {
    let mut connection =
        Connection::with_additional_fields(page.has_previous, page.has_next, total);
    connection.edges = page
        .items
        .into_iter()
        .map(|row| Edge::new(cursor(&row), node(row)))
        .collect();
    connection
}

/// One page of a customer's or conversation's interactions through the loader, so the
/// lists of a whole page of parents come from one query.
async fn interactions_of(
    ctx: &Context<'_>,
    parent: Parent,
    id: uuid::Uuid,
    filter: InteractionFilter,
    args: PageArgs,
) -> Result<InteractionConnection> {
    let window = domain::interaction::window(&args)?;
    let key = InteractionsOf {
        parent,
        id,
        filter: filter.clone(),
        window,
    };
    let page = load(ctx, key).await?.unwrap_or(Page {
        items: vec![],
        has_next: false,
        has_previous: false,
    });
    let filter = match parent {
        Parent::Customer => InteractionFilter {
            customer_id: Some(id),
            ..filter
        },
        Parent::Conversation => InteractionFilter {
            conversation_id: Some(id),
            ..filter
        },
    };
    Ok(interaction_connection(page, filter))
}

pub fn interaction_connection(
    page: Page<interaction::Model>,
    filter: InteractionFilter,
) -> InteractionConnection {
    connection(
        page,
        InteractionTotal(filter, None),
        domain::interaction::cursor,
        Interaction,
    )
}

/// Payload of mutations that change a customer.
#[derive(SimpleObject)]
pub struct CustomerPayload {
    pub customer: Customer,
}

#[derive(SimpleObject)]
pub struct DeleteCustomerPayload {
    pub deleted_customer_id: ID,
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

#[derive(SimpleObject)]
pub struct OrganizationPayload {
    pub organization: Organization,
}

#[derive(SimpleObject)]
pub struct DealPayload {
    pub deal: Deal,
}

#[derive(SimpleObject)]
pub struct NotePayload {
    pub note: Note,
}

#[derive(SimpleObject)]
pub struct InteractionPayload {
    pub interaction: Interaction,
}
