//! Customers: the object, its metrics, its connection and total, and its inputs and
//! payloads. The 360 view (`customer(id:)`) reads the relations its selection asks for
//! with the customer, and a page of `customers` those of many rows each with the page
//! (`domain::view`, PostgreSQL); everything else goes through the request's loaders.
//! The mutations on customers are here too; the `Mutation` root delegates to them.

use std::sync::{Mutex, PoisonError};

use async_graphql::{
    Context, InputObject, Json, Lookahead, MaybeUndefined, Object, Result, SimpleObject, Value, ID,
};
use chrono::{DateTime, NaiveDate, Utc};

use super::charged;
use super::contact_point::{ContactPoint, ContactPointInput};
use super::conversation::Conversation;
use super::deal::Deal;
use super::fast::{enumeration, opt, opt_text, scalar, text, Fast, FastConnection, Plain};
use super::identity::Identity;
use super::inputs::{change, change_id, id, opt_id};
use super::interaction::{interaction_connection, interactions_of, InteractionConnection};
use super::loaders::*;
use super::note::Note;
use super::organization::Organization;
use super::tag::Tag;
use super::types::{Channel, OrderDirection};
use super::{app, caller, load};
use crate::domain::customer::{CustomerChanges, CustomerFilter, CustomerOrderField, NewCustomer};
use crate::domain::interaction::{InteractionFilter, Parent as _};
use crate::domain::page::PageArgs;
use crate::domain::view::{Related, Relation, Wanted};
use crate::domain::{self, ConversationStatus, LifecycleStage};
use crate::ids::encode;
use entity::*;

/// A person: the centre of the 360-degree view. Relations read with the customer
/// (`domain::view`, from the look-ahead of the query that asked for it) are taken from
/// here once; any other read goes through the request's loaders.
pub struct Customer(pub customer::Model, Mutex<Option<Box<Related>>>);

impl Customer {
    pub fn new(model: customer::Model) -> Customer {
        Customer(model, Mutex::new(None))
    }

    fn with(model: customer::Model, related: Related) -> Customer {
        Customer(model, Mutex::new(Some(Box::new(related))))
    }

    /// A relation read with the customer, if it was (at most once: an alias asking for
    /// it again reads it through the loader).
    fn prefetched<T>(&self, pick: impl FnOnce(&mut Related) -> Option<T>) -> Option<T> {
        self.1
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_deref_mut()
            .and_then(pick)
    }
}

// A field added here or below, or one that reads another column, goes into
// `domain::view::CUSTOMER_FIELDS` too: a list leaves out of its rows the columns no selected field
// shows, and reads every column for a field that map does not know.
impl Plain for Customer {
    fn plain(&self, field: &str) -> Option<Value> {
        let row = &self.0;
        Some(match field {
            "id" => text(&encode(row.id)),
            "displayName" => text(&row.display_name),
            "givenName" => opt_text(row.given_name.as_deref()),
            "familyName" => opt_text(row.family_name.as_deref()),
            "lifecycleStage" => enumeration(row.lifecycle_stage),
            "externalId" => opt_text(row.external_id.as_deref()),
            "birthDate" => opt(&row.birth_date),
            "firstSeenAt" => scalar(&row.first_seen_at),
            "lastSeenAt" => scalar(&row.last_seen_at),
            "createdAt" => scalar(&row.created_at),
            "updatedAt" => scalar(&row.updated_at),
            _ => return None,
        })
    }
}

/// A person the workspace deals with, on any number of channels: their profile, contact
/// points, identities, organization, tags, timeline, conversations, deals, notes and
/// metrics. Identities that turn out to be one person are merged into one customer.
#[Object]
impl Customer {
    /// The customer's id (`cus_…`).
    pub(super) async fn id(&self) -> ID {
        ID(encode(self.0.id))
    }
    /// The name to show, never empty (at most 200 characters): as given, else made of the
    /// given and family names or the first e-mail when the customer was created; for a
    /// customer first seen on a channel, the account's display name, handle, e-mail or
    /// platform id, the first one known.
    async fn display_name(&self) -> &str {
        &self.0.display_name
    }
    /// First name; `null` when unknown.
    async fn given_name(&self) -> Option<&str> {
        self.0.given_name.as_deref()
    }
    /// Last name; `null` when unknown.
    async fn family_name(&self) -> Option<&str> {
        self.0.family_name.as_deref()
    }
    /// Where they stand in the relationship: SUBSCRIBER when first seen on a channel, LEAD
    /// when created by `createCustomer` without one, until someone changes it.
    async fn lifecycle_stage(&self) -> LifecycleStage {
        self.0.lifecycle_stage
    }
    /// Your own id for this customer (from another system), unique in the workspace.
    async fn external_id(&self) -> Option<&str> {
        self.0.external_id.as_deref()
    }
    /// Date of birth (a past date, not before 1900); `null` when unknown.
    async fn birth_date(&self) -> Option<NaiveDate> {
        self.0.birth_date
    }
    /// Their postal address; `null` when no part of it is known.
    async fn postal_address(&self) -> Option<PostalAddress> {
        let address = domain::validate::PostalAddress::of(&self.0);
        (!address.is_empty()).then(|| PostalAddress::from(address))
    }
    /// Free-form attributes, always a JSON object.
    async fn custom_attributes(&self) -> Json<serde_json::Value> {
        Json(self.0.custom.clone())
    }
    /// E-mails, phones, addresses and websites; primary first within each kind.
    async fn contact_points(&self, ctx: &Context<'_>) -> Result<Vec<Fast<ContactPoint>>> {
        let points = match self.prefetched(|r| r.contact_points.take()) {
            Some(points) => points,
            None => load(ctx, ContactPointsOf(self.0.id))
                .await?
                .unwrap_or_default(),
        };
        Ok(charged(ctx, points)?
            .into_iter()
            .map(|row| Fast(ContactPoint(row)))
            .collect())
    }
    /// Pending duplicate suggestions naming this customer, highest score first (the 20
    /// highest; `duplicateSuggestions` pages through them all).
    async fn duplicate_suggestions(
        &self,
        ctx: &Context<'_>,
    ) -> Result<Vec<super::duplicate::DuplicateSuggestion>> {
        let mut rows = load(ctx, DuplicatesOf(self.0.id))
            .await?
            .unwrap_or_default();
        rows.truncate(20);
        Ok(rows
            .into_iter()
            .map(super::duplicate::DuplicateSuggestion)
            .collect())
    }
    /// The customer's accounts on each channel, optionally only on `channel`.
    async fn identities(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "Only the identities on this channel; all when left out.")]
        channel: Option<Channel>,
    ) -> Result<Vec<Fast<Identity>>> {
        let identities = match self.prefetched(|r| r.identities.take()) {
            Some(identities) => identities,
            None => load(ctx, IdentitiesOf(self.0.id))
                .await?
                .unwrap_or_default(),
        };
        let identities: Vec<_> = identities
            .into_iter()
            .filter(|identity| channel.is_none_or(|channel| identity.channel == channel))
            .map(|row| Fast(Identity(row)))
            .collect();
        Ok(charged(ctx, identities)?)
    }
    /// The organization they belong to; `null` when none.
    async fn organization(&self, ctx: &Context<'_>) -> Result<Option<Organization>> {
        if let Some(organization) = self.prefetched(|r| r.organization.take()) {
            return Ok(organization.map(Organization));
        }
        match self.0.organization_id {
            Some(id) => Ok(load(ctx, OrganizationById(id)).await?.map(Organization)),
            None => Ok(None),
        }
    }
    /// The workspace tags they carry, by name.
    async fn tags(&self, ctx: &Context<'_>) -> Result<Vec<Fast<Tag>>> {
        let tags = match self.prefetched(|r| r.tags.take()) {
            Some(tags) => tags,
            None => load(ctx, TagsOf(self.0.id)).await?.unwrap_or_default(),
        };
        Ok(charged(ctx, tags)?
            .into_iter()
            .map(|row| Fast(Tag(row)))
            .collect())
    }
    /// Every interaction with this customer across every channel, newest first. With
    /// `search` (at most 500 characters), only those matching it (through the search
    /// index; forward pages only).
    #[expect(
        clippy::too_many_arguments,
        reason = "a Relay connection's filter, order and four paging arguments are GraphQL arguments, so resolver parameters"
    )]
    async fn timeline(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "Only the interactions it lets through; all when left out.")]
        filter: Option<super::interaction::TimelineFilter>,
        #[graphql(
            desc = "Words to find, as `search` finds them; at most 500 characters. Empty or blank means no search. Not with `last`/`before` (`BAD_USER_INPUT`)."
        )]
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
    ) -> Result<InteractionConnection> {
        let first_page = filter.is_none()
            && search.is_none()
            && after.is_none()
            && last.is_none()
            && before.is_none();
        if first_page {
            let size = Wanted::timeline_window(first);
            let page = self.prefetched(|r| r.timeline.take_if(|(read, _)| Some(*read) == size));
            if let Some((_, page)) = page {
                return Ok(interaction_connection(
                    page,
                    self.0.id.narrow(InteractionFilter::default()),
                ));
            }
        }
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
        #[graphql(
            desc = "Only those in this status, as `Conversation.status` reads it (a snooze past its time is OPEN); all when left out."
        )]
        status: Option<ConversationStatus>,
    ) -> Result<Vec<Conversation>> {
        let now = domain::now();
        let conversations = match self.prefetched(|r| r.conversations.take()) {
            Some(conversations) => conversations,
            None => load(ctx, ConversationsOf(self.0.id))
                .await?
                .unwrap_or_default(),
        };
        let conversations: Vec<_> = conversations
            .into_iter()
            .filter(|c| {
                // As the conversation's own `status` reads it: a snooze past its time is OPEN.
                status.is_none_or(|status| domain::inbox::effective_status(c, now) == status)
            })
            .map(Conversation)
            .collect();
        Ok(charged(ctx, conversations)?)
    }
    /// Their deals, newest first.
    async fn deals(&self, ctx: &Context<'_>) -> Result<Vec<Fast<Deal>>> {
        let deals = match self.prefetched(|r| r.deals.take()) {
            Some(deals) => deals,
            None => load(ctx, DealsOf(self.0.id)).await?.unwrap_or_default(),
        };
        Ok(charged(ctx, deals)?
            .into_iter()
            .map(|row| Fast(Deal(row)))
            .collect())
    }
    /// Internal notes, newest first.
    async fn notes(&self, ctx: &Context<'_>) -> Result<Vec<Fast<Note>>> {
        let notes = match self.prefetched(|r| r.notes.take()) {
            Some(notes) => notes,
            None => load(ctx, NotesOf(self.0.id)).await?.unwrap_or_default(),
        };
        Ok(charged(ctx, notes)?
            .into_iter()
            .map(|row| Fast(Note(row)))
            .collect())
    }
    /// Figures about them: first and last seen, interactions by channel, open
    /// conversations, service figures over a range.
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
    /// When the customer was created in Rapport.
    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }
    /// When the customer last changed, a change to their contact points, tags or notes
    /// included.
    async fn updated_at(&self) -> DateTime<Utc> {
        self.0.updated_at
    }
}

pub struct CustomerMetrics(customer::Model);

/// How many interactions a customer had on one channel.
#[derive(SimpleObject)]
pub struct ChannelCount {
    /// The channel.
    pub channel: Channel,
    /// Interactions on it, both directions.
    pub count: i64,
}

/// Figures about one customer.
#[Object]
impl CustomerMetrics {
    /// As `Customer.firstSeenAt`: creation or the first interaction, whichever is earlier.
    async fn first_seen_at(&self) -> DateTime<Utc> {
        self.0.first_seen_at
    }
    /// As `Customer.lastSeenAt`: the latest of creation and the last interaction.
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
        Ok(load(ctx, ChannelCountsOf(self.0.id))
            .await?
            .unwrap_or_default()
            .into_iter()
            .map(|(channel, count)| ChannelCount { channel, count })
            .collect())
    }
    /// Service figures of this customer's conversations and messages over `range`, as
    /// `serviceMetrics` counts them for the workspace.
    async fn service(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The span measured, at most 400 days.")]
        range: super::service::ServiceRangeInput,
    ) -> Result<super::service::ServiceFigures> {
        super::service::customer_service(ctx, self.0.id, range).await
    }
    /// Conversations not resolved: OPEN, PENDING or SNOOZED.
    async fn open_conversations(&self, ctx: &Context<'_>) -> Result<i64> {
        Ok(load(ctx, OpenConversationsOf(self.0.id))
            .await?
            .unwrap_or(0))
    }
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

pub type CustomerConnection = FastConnection<Customer, CustomerTotal>;

/// Payload of mutations that change a customer.
#[derive(SimpleObject)]
pub struct CustomerPayload {
    /// The customer as the mutation left it.
    pub customer: Customer,
}

/// What `deleteCustomer` answers.
#[derive(SimpleObject)]
pub struct DeleteCustomerPayload {
    /// The id of the customer deleted (drop it from client caches).
    pub deleted_customer_id: ID,
}

/// Which customers a list shows; every given field must match.
#[derive(InputObject, Default)]
pub struct CustomerFilterInput {
    /// Part of a name, e-mail, phone number or channel handle; case-insensitive; at most
    /// 200 characters.
    pub search: Option<String>,
    /// Any of these stages.
    pub lifecycle_stages: Option<Vec<LifecycleStage>>,
    /// Carrying every one of these tags (at most 20).
    pub tags: Option<Vec<String>>,
    /// Belonging to this organization (`org_…`).
    pub organization_id: Option<ID>,
    /// With an identity on this channel.
    pub channel: Option<Channel>,
    /// Created at or after.
    pub created_after: Option<DateTime<Utc>>,
    /// Created before.
    pub created_before: Option<DateTime<Utc>>,
    /// Last seen at or after.
    pub last_seen_after: Option<DateTime<Utc>>,
    /// Last seen before.
    pub last_seen_before: Option<DateTime<Utc>>,
}

impl CustomerFilterInput {
    /// The domain filter, its texts checked (`BAD_USER_INPUT` naming `filter.search` or
    /// `filter.tags[i]` for a control character or a text over its cap).
    pub fn into_domain(self) -> crate::Result<CustomerFilter> {
        CustomerFilter {
            search: self.search,
            lifecycle_stages: self.lifecycle_stages.unwrap_or_default(),
            tags: self.tags.unwrap_or_default(),
            organization_id: opt_id::<OrganizationId>(
                "organizationId",
                self.organization_id.as_ref(),
            )?,
            channel: self.channel,
            created_after: self.created_after,
            created_before: self.created_before,
            last_seen_after: self.last_seen_after,
            last_seen_before: self.last_seen_before,
        }
        .checked()
    }
}

/// How a customer list is ordered; ties are broken by id, so paging is stable.
#[derive(InputObject)]
pub struct CustomerOrder {
    /// What to order by.
    #[graphql(default_with = "CustomerOrderField::CreatedAt")]
    pub field: CustomerOrderField,
    /// Which way.
    #[graphql(default)]
    pub direction: OrderDirection,
}

/// A new customer. It needs a `displayName`, a `givenName` or `familyName`, or an e-mail
/// contact point (`BAD_USER_INPUT` naming `displayName` otherwise). Names have at most 200
/// characters.
#[derive(InputObject)]
pub struct CreateCustomerInput {
    /// Defaults to the given and family names, or else the first e-mail.
    pub display_name: Option<String>,
    /// First name.
    pub given_name: Option<String>,
    /// Last name.
    pub family_name: Option<String>,
    /// Defaults to LEAD.
    pub lifecycle_stage: Option<LifecycleStage>,
    /// Your own id for the customer, unique in the workspace.
    pub external_id: Option<String>,
    /// The organization they belong to (`org_…`).
    pub organization_id: Option<ID>,
    /// A JSON object of free-form attributes. At most 16 KiB serialized, 200 keys, 5 levels deep, keys of at most 100
    /// characters; no control characters.
    pub custom_attributes: Option<Json<serde_json::Value>>,
    /// Their e-mails, phones, addresses and websites; one the workspace has already (on
    /// any customer) is `CONFLICT`, and nothing is created.
    pub contact_points: Option<Vec<ContactPointInput>>,
    /// Tag names; missing tags are created.
    pub tags: Option<Vec<String>>,
    /// Date of birth: a past date, not before 1900.
    pub birth_date: Option<NaiveDate>,
    /// Their postal address.
    pub postal_address: Option<PostalAddressInput>,
}

/// A postal address in parts; every part may be `null`.
#[derive(SimpleObject)]
pub struct PostalAddress {
    /// Street and number.
    pub street: Option<String>,
    /// A second address line (floor, building, c/o).
    pub street2: Option<String>,
    /// City, town or village.
    pub locality: Option<String>,
    /// State, province or county.
    pub region: Option<String>,
    /// Postal code, upper case.
    pub postal_code: Option<String>,
    /// ISO 3166-1 alpha-2 country code (ES, US, …).
    pub country: Option<String>,
}

impl From<domain::validate::PostalAddress> for PostalAddress {
    fn from(address: domain::validate::PostalAddress) -> Self {
        PostalAddress {
            street: address.street,
            street2: address.street2,
            locality: address.locality,
            region: address.region,
            postal_code: address.postal_code,
            country: address.country,
        }
    }
}

/// A postal address. Lines of at most 200 characters (street) or 100 (locality, region),
/// on one line; a postal code of letters, digits, spaces and dashes (at most 16, checked
/// against the country's format where Rapport knows it); the country as an ISO 3166-1
/// alpha-2 or alpha-3 code or its name, stored as alpha-2. A bad part is `BAD_USER_INPUT`
/// naming it (`postalAddress.postalCode`).
#[derive(InputObject)]
pub struct PostalAddressInput {
    /// Street and number, at most 200 characters.
    pub street: Option<String>,
    /// A second address line, at most 200 characters.
    pub street2: Option<String>,
    /// City, town or village, at most 100 characters.
    pub locality: Option<String>,
    /// State, province or county, at most 100 characters.
    pub region: Option<String>,
    /// Postal code: letters, digits, spaces and dashes, at most 16.
    pub postal_code: Option<String>,
    /// ISO 3166-1 alpha-2 or alpha-3 code, or the country's name.
    pub country: Option<String>,
}

impl From<PostalAddressInput> for domain::validate::PostalAddress {
    fn from(input: PostalAddressInput) -> Self {
        domain::validate::PostalAddress {
            street: input.street,
            street2: input.street2,
            locality: input.locality,
            region: input.region,
            postal_code: input.postal_code,
            country: input.country,
        }
    }
}

/// Fields left out stay as they are; `null` clears a nullable field.
#[derive(InputObject)]
pub struct UpdateCustomerInput {
    /// The customer to change (`cus_…`).
    pub id: ID,
    /// A new name to show, 1 to 200 characters (it cannot be cleared: `null` leaves it).
    pub display_name: Option<String>,
    /// A new first name; `null` clears it.
    pub given_name: MaybeUndefined<String>,
    /// A new last name; `null` clears it.
    pub family_name: MaybeUndefined<String>,
    /// A new stage.
    pub lifecycle_stage: Option<LifecycleStage>,
    /// Your own id for them, unique in the workspace (`CONFLICT` when another customer has
    /// it); `null` clears it.
    pub external_id: MaybeUndefined<String>,
    /// Their organization (`org_…`); `null` takes them out of theirs.
    pub organization_id: MaybeUndefined<ID>,
    /// Replaces all custom attributes. At most 16 KiB serialized, 200 keys, 5 levels deep, keys of at most 100
    /// characters; no control characters.
    pub custom_attributes: Option<Json<serde_json::Value>>,
    /// Date of birth (a past date, not before 1900); `null` clears it.
    pub birth_date: MaybeUndefined<NaiveDate>,
    /// Replaces the whole postal address (parts left out are cleared); `null` clears it.
    pub postal_address: MaybeUndefined<PostalAddressInput>,
}

/// The customer to delete.
#[derive(InputObject)]
pub struct DeleteCustomerInput {
    /// The customer (`cus_…`).
    pub id: ID,
}

// The mutations on this noun; the `Mutation` root delegates to them.

/// The customer a contact-point or tag mutation changed, as its payload shows it.
pub(super) async fn customer_payload(ctx: &Context<'_>, id: CustomerId) -> Result<Customer> {
    Ok(Customer::new(
        domain::customer::get(&app(ctx).db, caller(ctx)?, id).await?,
    ))
}

pub(super) async fn create_customer(
    ctx: &Context<'_>,
    input: CreateCustomerInput,
) -> Result<CustomerPayload> {
    let new = NewCustomer {
        display_name: input.display_name,
        given_name: input.given_name,
        family_name: input.family_name,
        lifecycle_stage: input.lifecycle_stage,
        external_id: input.external_id,
        organization_id: opt_id::<OrganizationId>(
            "organizationId",
            input.organization_id.as_ref(),
        )?,
        custom: input.custom_attributes.map(|json| json.0),
        contact_points: input
            .contact_points
            .unwrap_or_default()
            .into_iter()
            .map(Into::into)
            .collect(),
        tags: input.tags.unwrap_or_default(),
        birth_date: input.birth_date,
        postal_address: input.postal_address.map(Into::into),
    };
    let model = domain::customer::create(&app(ctx).db, caller(ctx)?, new).await?;
    Ok(CustomerPayload {
        customer: Customer::new(model),
    })
}

pub(super) async fn update_customer(
    ctx: &Context<'_>,
    input: UpdateCustomerInput,
) -> Result<CustomerPayload> {
    let id = id::<CustomerId>("id", &input.id)?;
    let changes = CustomerChanges {
        display_name: input.display_name,
        given_name: change(input.given_name),
        family_name: change(input.family_name),
        lifecycle_stage: input.lifecycle_stage,
        external_id: change(input.external_id),
        organization_id: change_id::<OrganizationId>("organizationId", input.organization_id)?,
        custom: input.custom_attributes.map(|json| json.0),
        birth_date: change(input.birth_date),
        postal_address: change(input.postal_address).map(|address| address.map(Into::into)),
    };
    let model = domain::customer::update(&app(ctx).db, caller(ctx)?, id, changes).await?;
    Ok(CustomerPayload {
        customer: Customer::new(model),
    })
}

pub(super) async fn delete_customer(
    ctx: &Context<'_>,
    input: DeleteCustomerInput,
) -> Result<DeleteCustomerPayload> {
    let id = id::<CustomerId>("id", &input.id)?;
    domain::customer::delete(&app(ctx).db, caller(ctx)?, id).await?;
    Ok(DeleteCustomerPayload {
        deleted_customer_id: input.id,
    })
}

/// `customer(id:)`: `null` when not found.
pub async fn customer(ctx: &Context<'_>, id: &ID) -> Result<Option<Customer>> {
    let id = super::inputs::id::<CustomerId>("id", id)?;
    let wanted = wanted(&ctx.look_ahead());
    let read = domain::view::get(&app(ctx).db, caller(ctx)?, id, &wanted).await;
    Ok(super::found(read)?.map(|(model, related)| Customer::with(model, related)))
}

/// `customerByExternalId`.
pub async fn customer_by_external_id(
    ctx: &Context<'_>,
    external_id: &str,
) -> Result<Option<Customer>> {
    Ok(
        domain::customer::by_external_id(&app(ctx).db, caller(ctx)?, external_id)
            .await?
            .map(Customer::new),
    )
}

/// `customers`: filtered and ordered (newest first by default).
pub async fn customers(
    ctx: &Context<'_>,
    filter: Option<CustomerFilterInput>,
    order_by: Option<CustomerOrder>,
    args: PageArgs,
) -> Result<CustomerConnection> {
    let filter = filter.unwrap_or_default().into_domain()?;
    let (field, direction) = order_by
        .map_or((CustomerOrderField::CreatedAt, OrderDirection::Desc), |o| {
            (o.field, o.direction)
        });
    let descending = direction == OrderDirection::Desc;
    // The relations of many rows that the nodes ask for come with the page on PostgreSQL
    // (`domain::view::list`, binary rows); the others through the loaders.
    let look = ctx.look_ahead();
    let wanted = listed(&[look.field("edges").field("node"), look.field("nodes")]);
    let page = domain::customer::list(
        &app(ctx).db,
        caller(ctx)?,
        &filter,
        field,
        descending,
        &args,
        &wanted,
    )
    .await?;
    Ok(FastConnection(super::types::connection(
        page,
        CustomerTotal(filter),
        |(row, _)| domain::customer::cursor(row, field),
        |(row, related)| Fast(Customer::with(row, related)),
    )))
}

/// The relations a selection of customer fields asks for, to read with the customers
/// (see `domain::view`). The timeline is read ahead only as the first page of a given
/// size, unfiltered and unsearched, the same for every place the selection asks for it.
fn wanted(customer: &Lookahead<'_>) -> Wanted {
    let mut wanted = asked(customer);
    let mut fields = RelationFields::default();
    fields.add(customer);
    fields.leave_out(&mut wanted, |_| true);
    wanted
}

/// The relations a selection of customer fields asks for, every column of each.
fn asked(customer: &Lookahead<'_>) -> Wanted {
    let timeline = customer.field("timeline");
    Wanted {
        contact_points: customer.field("contactPoints").exists(),
        identities: customer.field("identities").exists(),
        organization: customer.field("organization").exists(),
        tags: customer.field("tags").exists(),
        conversations: customer.field("conversations").exists(),
        deals: customer.field("deals").exists(),
        notes: customer.field("notes").exists(),
        timeline: if timeline.exists() {
            first_page_size(&timeline)
        } else {
            None
        },
        ..Wanted::default()
    }
}

/// The names of the fields selected on each relation of customers ([`Relation`]) and on
/// their timelines' interactions, to leave out of their rows the columns none shows.
#[derive(Default)]
struct RelationFields<'a> {
    relations: [Vec<&'a str>; Relation::ALL.len()],
    interactions: Vec<&'a str>,
}

impl<'a> RelationFields<'a> {
    /// Adds the fields selected on the relations of `customer`.
    fn add(&mut self, customer: &Lookahead<'a>) {
        for relation in Relation::ALL {
            for selected in customer.field(relation.field()).selection_fields() {
                let fields = &mut self.relations[relation as usize];
                fields.extend(selected.selection_set().map(|field| field.name()));
            }
        }
        for timeline in customer.field("timeline").selection_fields() {
            timeline_fields(timeline, &mut self.interactions);
        }
    }

    /// Leaves out of `wanted`'s rows the columns none of the fields shows, of the
    /// relations it reads with the customer and `read_ahead` says are read so (of the
    /// others none: one statement text per shape).
    fn leave_out(self, wanted: &mut Wanted, read_ahead: impl Fn(Relation) -> bool) {
        for (relation, fields) in Relation::ALL.into_iter().zip(self.relations) {
            if wanted.reads(relation) && read_ahead(relation) {
                wanted.relations_unread[relation as usize] = relation.unread(fields);
            }
        }
        if wanted.timeline.is_some() {
            wanted.timeline_unread = domain::view::timeline_unread(self.interactions);
        }
    }
}

/// [`wanted`] of a list's customers (selected in each of `places`: edges and nodes), with
/// the columns of the customers, their identities and timelines that no field of the
/// selection shows (left out of the list's rows).
fn listed(places: &[Lookahead<'_>]) -> Wanted {
    let (mut customer_fields, mut fields) = (Vec::new(), RelationFields::default());
    let mut wanted = Wanted::default();
    for customer in places {
        wanted = wanted.or(asked(customer));
        for node in customer.selection_fields() {
            customer_fields.extend(node.selection_set().map(|field| field.name()));
        }
        fields.add(customer);
    }
    // The columns left out are of all the places' fields together.
    wanted.customers_unread = domain::view::customers_unread(customer_fields);
    fields.leave_out(&mut wanted, Relation::in_list);
    wanted
}

/// The names of the interaction fields a `timeline` selects, under `edges { node }` or
/// `nodes`, added to `fields`. A field of the connection or its edges not known to read no
/// interaction column adds a name no map knows, so that every column is read.
fn timeline_fields<'a>(timeline: async_graphql::SelectionField<'a>, fields: &mut Vec<&'a str>) {
    const UNKNOWN: &str = "";
    for field in timeline.selection_set() {
        match field.name() {
            "edges" => {
                for edge in field.selection_set() {
                    match edge.name() {
                        "node" => fields.extend(edge.selection_set().map(|f| f.name())),
                        "cursor" | "__typename" => {}
                        _ => fields.push(UNKNOWN),
                    }
                }
            }
            "nodes" => fields.extend(field.selection_set().map(|f| f.name())),
            "pageInfo" | "totalCount" | "__typename" => {}
            _ => fields.push(UNKNOWN),
        }
    }
}

/// The page size every `timeline` of the selection asks for with `first` alone, if they
/// all ask for the same one.
fn first_page_size(timeline: &Lookahead<'_>) -> Option<u64> {
    let mut size = None;
    for field in timeline.selection_fields() {
        let mut first = None;
        for (name, value) in field.arguments().ok()? {
            match (name.as_str(), value) {
                (_, async_graphql::Value::Null) => {}
                ("first", async_graphql::Value::Number(n)) => {
                    first = Some(i32::try_from(n.as_i64()?).ok()?);
                }
                _ => return None,
            }
        }
        let this = Wanted::timeline_window(first)?;
        if size.is_some_and(|size| size != this) {
            return None;
        }
        size = Some(this);
    }
    size
}
