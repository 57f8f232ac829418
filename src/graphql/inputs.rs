//! Input objects of the schema and their conversion into domain values. Ids are decoded
//! here, so a malformed or wrongly typed id is a `BAD_USER_INPUT` naming the field.

use async_graphql::{InputObject, Json, MaybeUndefined, ID};
use chrono::{DateTime, NaiveDate, Utc};
use uuid::Uuid;

use super::types::{Channel, OrderDirection};
use crate::domain::contact_point::NewContactPoint;
use crate::domain::customer::{CustomerFilter, CustomerOrderField};
use crate::domain::interaction::InteractionFilter;
use crate::domain::{ContactPointKind, DealStage, Direction, InteractionKind, LifecycleStage};
use crate::error::Result;
use crate::ids::{decode, Kind};

/// Decodes a required id of `kind`.
pub fn id(field: &str, kind: Kind, id: &ID) -> Result<Uuid> {
    decode(field, kind, id.as_str())
}

/// Decodes an optional id of `kind`.
pub fn opt_id(field: &str, kind: Kind, id: Option<&ID>) -> Result<Option<Uuid>> {
    id.map(|id| decode(field, kind, id.as_str())).transpose()
}

/// Absent → leave alone (`None`); `null` → clear (`Some(None)`); a value → set.
pub fn change<T>(value: MaybeUndefined<T>) -> Option<Option<T>> {
    match value {
        MaybeUndefined::Undefined => None,
        MaybeUndefined::Null => Some(None),
        MaybeUndefined::Value(value) => Some(Some(value)),
    }
}

/// Like [`change`] for ids of `kind`.
pub fn change_id(
    field: &str,
    kind: Kind,
    value: MaybeUndefined<ID>,
) -> Result<Option<Option<Uuid>>> {
    change(value)
        .map(|id| id.map(|id| decode(field, kind, id.as_str())).transpose())
        .transpose()
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
    pub fn into_domain(self) -> Result<CustomerFilter> {
        CustomerFilter {
            search: self.search,
            lifecycle_stages: self.lifecycle_stages.unwrap_or_default(),
            tags: self.tags.unwrap_or_default(),
            organization_id: opt_id(
                "organizationId",
                Kind::Organization,
                self.organization_id.as_ref(),
            )?,
            channel: self.channel.map(|channel| channel.as_str().to_owned()),
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
    #[graphql(default_with = "CustomerOrderField::CreatedAt")]
    pub field: CustomerOrderField,
    #[graphql(default)]
    pub direction: OrderDirection,
}

/// Narrows a customer's timeline.
#[derive(InputObject, Default)]
pub struct TimelineFilter {
    /// Any of these channels.
    pub channels: Option<Vec<Channel>>,
    /// Any of these kinds.
    pub kinds: Option<Vec<InteractionKind>>,
    pub direction: Option<Direction>,
    /// Occurred at or after.
    pub occurred_after: Option<DateTime<Utc>>,
    /// Occurred before.
    pub occurred_before: Option<DateTime<Utc>>,
}

impl From<TimelineFilter> for InteractionFilter {
    fn from(filter: TimelineFilter) -> Self {
        InteractionFilter {
            customer_id: None,
            conversation_id: None,
            channels: filter
                .channels
                .unwrap_or_default()
                .into_iter()
                .map(|c| c.as_str().to_owned())
                .collect(),
            kinds: filter.kinds.unwrap_or_default(),
            direction: filter.direction,
            occurred_after: filter.occurred_after,
            occurred_before: filter.occurred_before,
        }
    }
}

/// Which interactions a list shows; every given field must match.
#[derive(InputObject, Default)]
pub struct InteractionFilterInput {
    pub customer_id: Option<ID>,
    pub conversation_id: Option<ID>,
    /// Any of these channels.
    pub channels: Option<Vec<Channel>>,
    /// Any of these kinds.
    pub kinds: Option<Vec<InteractionKind>>,
    pub direction: Option<Direction>,
    /// Occurred at or after.
    pub occurred_after: Option<DateTime<Utc>>,
    /// Occurred before.
    pub occurred_before: Option<DateTime<Utc>>,
}

impl InteractionFilterInput {
    pub fn into_domain(self) -> Result<InteractionFilter> {
        let customer_id = opt_id("customerId", Kind::Customer, self.customer_id.as_ref())?;
        let conversation_id = opt_id(
            "conversationId",
            Kind::Conversation,
            self.conversation_id.as_ref(),
        )?;
        let timeline = TimelineFilter {
            channels: self.channels,
            kinds: self.kinds,
            direction: self.direction,
            occurred_after: self.occurred_after,
            occurred_before: self.occurred_before,
        };
        Ok(InteractionFilter {
            customer_id,
            conversation_id,
            ..InteractionFilter::from(timeline)
        })
    }
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
pub struct CreateCustomerInput {
    /// Defaults to the given and family names, or else the first e-mail.
    pub display_name: Option<String>,
    pub given_name: Option<String>,
    pub family_name: Option<String>,
    /// Defaults to LEAD.
    pub lifecycle_stage: Option<LifecycleStage>,
    /// Your own id for the customer, unique in the workspace.
    pub external_id: Option<String>,
    pub organization_id: Option<ID>,
    /// A JSON object of free-form attributes. At most 16 KiB serialized, 200 keys, 5 levels deep, keys of at most 100
    /// characters; no control characters.
    pub custom_attributes: Option<Json<serde_json::Value>>,
    pub contact_points: Option<Vec<ContactPointInput>>,
    /// Tag names; missing tags are created.
    pub tags: Option<Vec<String>>,
}

/// Fields left out stay as they are; `null` clears a nullable field.
#[derive(InputObject)]
pub struct UpdateCustomerInput {
    pub id: ID,
    pub display_name: Option<String>,
    pub given_name: MaybeUndefined<String>,
    pub family_name: MaybeUndefined<String>,
    pub lifecycle_stage: Option<LifecycleStage>,
    pub external_id: MaybeUndefined<String>,
    pub organization_id: MaybeUndefined<ID>,
    /// Replaces all custom attributes. At most 16 KiB serialized, 200 keys, 5 levels deep, keys of at most 100
    /// characters; no control characters.
    pub custom_attributes: Option<Json<serde_json::Value>>,
}

#[derive(InputObject)]
pub struct DeleteCustomerInput {
    pub id: ID,
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

#[derive(InputObject)]
pub struct CreateOrganizationInput {
    pub name: String,
    /// Such as example.com; unique in the workspace.
    pub domain: Option<String>,
    /// A JSON object of free-form attributes. At most 16 KiB serialized, 200 keys, 5 levels deep, keys of at most 100
    /// characters; no control characters.
    pub custom_attributes: Option<Json<serde_json::Value>>,
}

#[derive(InputObject)]
pub struct UpdateOrganizationInput {
    pub id: ID,
    pub name: Option<String>,
    pub domain: MaybeUndefined<String>,
    /// Replaces all custom attributes. At most 16 KiB serialized, 200 keys, 5 levels deep, keys of at most 100
    /// characters; no control characters.
    pub custom_attributes: Option<Json<serde_json::Value>>,
}

#[derive(InputObject)]
pub struct CreateDealInput {
    pub title: String,
    pub customer_id: Option<ID>,
    pub organization_id: Option<ID>,
    /// An exact decimal string with at most two fraction digits, such as "1250.00".
    pub amount: Option<String>,
    /// ISO 4217; defaults to EUR.
    pub currency: Option<String>,
    /// Defaults to QUALIFICATION.
    pub stage: Option<DealStage>,
    pub close_date: Option<NaiveDate>,
}

#[derive(InputObject)]
pub struct UpdateDealInput {
    pub id: ID,
    pub title: Option<String>,
    pub customer_id: MaybeUndefined<ID>,
    pub organization_id: MaybeUndefined<ID>,
    pub amount: MaybeUndefined<String>,
    pub currency: Option<String>,
    pub stage: Option<DealStage>,
    pub close_date: MaybeUndefined<NaiveDate>,
}

#[derive(InputObject)]
pub struct AddNoteInput {
    pub customer_id: ID,
    pub body: String,
}

/// An interaction logged by hand: a call, a meeting, an e-mail sent outside Rapport.
#[derive(InputObject)]
pub struct RecordInteractionInput {
    pub customer_id: ID,
    /// A conversation of the same customer to file it in.
    pub conversation_id: Option<ID>,
    #[graphql(default_with = "Channel::Manual")]
    pub channel: Channel,
    pub kind: InteractionKind,
    #[graphql(default_with = "Direction::Outbound")]
    pub direction: Direction,
    pub subject: Option<String>,
    pub text: String,
    pub url: Option<String>,
    /// ISO 639-1 code such as "en".
    pub language: Option<String>,
    /// Defaults to now.
    pub occurred_at: Option<DateTime<Utc>>,
}

#[derive(InputObject)]
pub struct CreateSourceInput {
    pub channel: Channel,
    /// Unique in the workspace.
    pub name: String,
    /// The channel's settings as README documents them; secrets in it are stored apart
    /// and never returned.
    pub config: Json<serde_json::Value>,
    /// Seconds between pulls (30 to 86400; default 300).
    pub schedule_secs: Option<i32>,
}

/// Fields left out stay as they are. A new `config` replaces the settings; secrets it
/// leaves out are kept.
#[derive(InputObject)]
pub struct UpdateSourceInput {
    pub id: ID,
    pub name: Option<String>,
    pub config: Option<Json<serde_json::Value>>,
    pub schedule_secs: Option<i32>,
}

#[derive(InputObject)]
pub struct SourceIdInput {
    pub id: ID,
}

/// An answer to an ingested interaction.
#[derive(InputObject)]
pub struct ReplyToInteractionInput {
    pub interaction_id: ID,
    pub text: String,
    /// Makes retries safe: the same key sends and stores the reply once. Defaults to one
    /// derived from the interaction and the text.
    pub idempotency_key: Option<String>,
}
