//! A customer with the relations its 360 view asks for, read in the customer's own
//! statement.
//!
//! A 360 view through the loaders costs a statement per relation (contact points,
//! identities, organization, tags, timeline, conversations, deals, notes), each a round
//! trip with its own planning and execution in PostgreSQL: measured beside PostGraphile,
//! which answers the same view with one statement, that was most of the gap (BENCHMARKS.md).
//! On PostgreSQL a view is read as a page of one customer ([`list`]'s statement, a
//! `UNION ALL` of binary rows): the customer's row, then the rows of each relation of
//! many rows asked for, in the columns the selection shows; the organization and the tags,
//! a row or a few, as JSON columns of the customer's row ([`Wanted::singles`]). It was one
//! row with every relation aggregated as JSON, and decoding that JSON (timestamps parsed
//! from text among it) was a fifth of the server's CPU on the view (BENCHMARKS.md). A
//! relation read here and one read through its loader are the same models, in the same
//! order.
//!
//! SQLite answers in-process, where a statement costs microseconds: there the customer is
//! read alone and the relations go through the loaders as before ([`Related`] empty).
//!
//! A page of customers ([`list`], PostgreSQL) reads its relations of many rows in the
//! page's own statement the same way (binary rows: for 50 customers' timelines, JSON
//! built and parsed per row cost more than the round trips it saved); its organizations
//! and tags go through the loaders, which share them among the page's customers.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseBackend, EntityTrait, IdenStatic, Iterable, QueryFilter,
    QueryResult, QueryTrait, Statement,
};
use serde::de::DeserializeOwned;

use super::page::{self, Page, PageArgs};
use super::Caller;
use crate::error::{Error, Result};
use entity::customer::{self, Model};
use entity::{contact_point, conversation, deal, identity, interaction, note, organization, tag};
use entity::{CustomerId, WorkspaceId};

/// The relations a view of customers selects, read with the customers when the database
/// can ([`Related`] holds what was read).
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Wanted {
    pub contact_points: bool,
    pub identities: bool,
    pub organization: bool,
    pub tags: bool,
    pub conversations: bool,
    pub deals: bool,
    pub notes: bool,
    /// The first page of the unfiltered timeline, of this many items.
    pub timeline: Option<u64>,
    /// Columns of the customers that no field of a list's selection shows, left out of
    /// its rows ([`customers_unread`]; the list's order is always read); empty: every
    /// column is read.
    pub customers_unread: Vec<&'static str>,
    /// The same for each relation's rows ([`Relation::unread`]), in a list's and a view's
    /// rows alike (a view's organization and tags in their JSON), by [`Relation`] (see
    /// [`Wanted::unread`]).
    pub relations_unread: [Vec<&'static str>; Relation::ALL.len()],
    /// The same for the timeline's interactions.
    pub timeline_unread: Vec<&'static str>,
}

/// What was read of a customer's relations with the customer; `None` for a relation not
/// read here (not asked for, or the database reads relations through the loaders).
#[derive(Debug, Default)]
pub struct Related {
    pub contact_points: Option<Vec<contact_point::Model>>,
    pub identities: Option<Vec<identity::Model>>,
    /// `Some(None)`: read, and the customer has no organization.
    pub organization: Option<Option<organization::Model>>,
    pub tags: Option<Vec<tag::Model>>,
    pub conversations: Option<Vec<conversation::Model>>,
    pub deals: Option<Vec<deal::Model>>,
    pub notes: Option<Vec<note::Model>>,
    /// The timeline's first page of [`Wanted::timeline`] items: its size and the page.
    pub timeline: Option<(u64, Page<interaction::Model>)>,
}

impl Wanted {
    /// What either selection asks for (of two places a list's nodes are selected: edges
    /// and nodes); a timeline read ahead only when both that ask for one ask the same.
    pub fn or(self, other: Wanted) -> Wanted {
        Wanted {
            contact_points: self.contact_points || other.contact_points,
            identities: self.identities || other.identities,
            organization: self.organization || other.organization,
            tags: self.tags || other.tags,
            conversations: self.conversations || other.conversations,
            deals: self.deals || other.deals,
            notes: self.notes || other.notes,
            timeline: match (self.timeline, other.timeline) {
                (Some(a), Some(b)) if a != b => None,
                (a, b) => a.or(b),
            },
            // What a selection leaves out is known from all its fields at once: the
            // caller says it of the sum (`graphql::customer::listed`).
            customers_unread: Vec::new(),
            relations_unread: Default::default(),
            timeline_unread: Vec::new(),
        }
    }

    /// Whether `relation` is read with the customers.
    pub fn reads(&self, relation: Relation) -> bool {
        match relation {
            Relation::ContactPoints => self.contact_points,
            Relation::Identities => self.identities,
            Relation::Organization => self.organization,
            Relation::Tags => self.tags,
            Relation::Conversations => self.conversations,
            Relation::Deals => self.deals,
            Relation::Notes => self.notes,
        }
    }

    /// The columns of `relation`'s rows left out (none: every column is read).
    pub fn unread(&self, relation: Relation) -> &[&'static str] {
        &self.relations_unread[relation as usize]
    }

    /// `self` leaving out of `relation`'s rows the columns none of the GraphQL `fields`
    /// selected on its objects shows ([`Relation::unread`]).
    pub fn showing<'a>(
        mut self,
        relation: Relation,
        fields: impl IntoIterator<Item = &'a str>,
    ) -> Wanted {
        self.relations_unread[relation as usize] = relation.unread(fields);
        self
    }

    fn is_empty(&self) -> bool {
        !(self.contact_points
            || self.identities
            || self.organization
            || self.tags
            || self.conversations
            || self.deals
            || self.notes
            || self.timeline.is_some())
    }

    /// The timeline's first page of `first` items (the page size the timeline field itself
    /// would use), or `None` when `first` is out of range (the field reports it).
    pub fn timeline_window(first: Option<i32>) -> Option<u64> {
        let args = PageArgs {
            first,
            ..PageArgs::default()
        };
        super::interaction::window(&args)
            .ok()
            .map(|window| window.size)
    }

    /// The relations of one row a view reads as JSON columns of its customer's row in
    /// [`list`]'s statement (`(alias, correlated subquery)`, the customer read from
    /// `outer`): its organization and its tags, a row or a few, where a block of their own
    /// would cost the statement more than their JSON costs to read. Scoped by the outer
    /// row's workspace as well as its ids.
    fn singles(&self, outer: &str) -> Vec<(&'static str, String)> {
        let mut columns = Vec::new();
        if self.organization {
            let select = self.select::<organization::Entity>(Relation::Organization);
            columns.push((
                "rel_organization",
                format!(
                    "(SELECT row_to_json(r)::text FROM (SELECT {select} FROM organization c \
                     WHERE c.workspace_id = {outer}.workspace_id AND c.id = {outer}.organization_id) r)"
                ),
            ));
        }
        if self.tags {
            // The loader's order: by name, byte by byte (as Rust compares strings, not
            // as the database's collation would), then id.
            let select = self.select::<tag::Entity>(Relation::Tags);
            columns.push((
                "rel_tags",
                format!(
                    "(SELECT coalesce(json_agg(r ORDER BY r.name COLLATE \"C\", r.id), '[]')::text FROM \
                     (SELECT {select} FROM tag c \
                     JOIN customer_tag l ON l.tag_id = c.id AND l.workspace_id = c.workspace_id \
                     WHERE l.workspace_id = {outer}.workspace_id AND l.customer_id = {outer}.id) r)"
                ),
            ));
        }
        columns
    }

    /// The select list of `relation`'s JSON, from `c`: every column but those left out.
    fn select<E>(&self, relation: Relation) -> String
    where
        E: EntityTrait,
        E::Column: IdenStatic,
    {
        json_select::<E>("c", self.unread(relation))
    }
}

/// The select list of `E`'s columns read from `from` for a relation's JSON, but those
/// `unread`: such a column that may be NULL is left out (its field reads as `None`), one
/// that may not is given its type's zero (its field is one no field asked shows; a column
/// of a type without one is read). The JSON keys are the column names, as the models'
/// `Deserialize` reads them.
fn json_select<E>(from: &str, unread: &[&str]) -> String
where
    E: EntityTrait,
    E::Column: IdenStatic,
{
    use sea_orm::ColumnType;
    let mut select = Vec::new();
    for column in E::Column::iter() {
        let name = IdenStatic::as_str(&column);
        let def = column.def();
        let zero = match def.get_column_type() {
            ColumnType::String(_) | ColumnType::Text | ColumnType::Char(_) => Some("''"),
            ColumnType::Uuid => Some("'00000000-0000-0000-0000-000000000000'::uuid"),
            ColumnType::TimestampWithTimeZone => Some("'epoch'::timestamptz"),
            ColumnType::Integer | ColumnType::BigInteger | ColumnType::Double => Some("0"),
            ColumnType::Boolean => Some("false"),
            ColumnType::Json | ColumnType::JsonBinary => Some("'{}'::jsonb"),
            _ => None,
        };
        match (unread.contains(&name), def.is_null(), zero) {
            (true, true, _) => {}
            (true, false, Some(zero)) => select.push(format!("{zero} AS \"{name}\"")),
            _ => select.push(format!("{from}.\"{name}\"")),
        }
    }
    select.join(", ")
}

/// What a field of a listed customer shows of its row, among the columns a list may
/// leave out (the ids, the lifecycle stage and the list's order are always read; a
/// relation reads by the customer's id).
const CUSTOMER_FIELDS: &[(&str, &[&str])] = &[
    ("__typename", &[]),
    ("id", &[]),
    ("lifecycleStage", &[]),
    ("displayName", &["display_name"]),
    ("givenName", &["given_name"]),
    ("familyName", &["family_name"]),
    ("externalId", &["external_id"]),
    ("birthDate", &["birth_date"]),
    ("firstSeenAt", &["first_seen_at"]),
    ("lastSeenAt", &["last_seen_at"]),
    ("createdAt", &["created_at"]),
    ("updatedAt", &["updated_at"]),
    ("organization", &["organization_id"]),
    ("contactPoints", &[]),
    ("identities", &[]),
    ("tags", &[]),
    ("timeline", &[]),
    ("conversations", &[]),
    ("deals", &[]),
    ("notes", &[]),
];
const CUSTOMER_OPTIONAL: &[&str] = &[
    "display_name",
    "given_name",
    "family_name",
    "external_id",
    "organization_id",
    "custom",
    "merged_into",
    "first_seen_at",
    "last_seen_at",
    "created_at",
    "updated_at",
    "birth_date",
    "street",
    "street2",
    "locality",
    "region",
    "postal_code",
    "country",
];

/// What a field of an identity shows of its row, among the columns a list's or a view's rows
/// may leave out (the others, ids, the channel and `created_at`, which orders them,
/// are always read).
const IDENTITY_FIELDS: &[(&str, &[&str])] = &[
    ("__typename", &[]),
    ("id", &[]),
    ("channel", &[]),
    ("createdAt", &[]),
    ("customer", &[]),
    ("platformId", &["platform_id"]),
    ("handle", &["handle"]),
    ("displayName", &["display_name"]),
    ("profileUrl", &["profile_url"]),
    ("avatarUrl", &["avatar_url"]),
];
const IDENTITY_OPTIONAL: &[&str] = &[
    "platform_id",
    "handle",
    "display_name",
    "profile_url",
    "avatar_url",
    "profile_key",
    "updated_at",
];

/// The same for an interaction of the timeline (ids, the customer, the channel,
/// direction, kind and `occurred_at`, which orders and pages them, are always read).
const INTERACTION_FIELDS: &[(&str, &[&str])] = &[
    ("__typename", &[]),
    ("id", &[]),
    ("channel", &[]),
    ("direction", &[]),
    ("kind", &[]),
    ("occurredAt", &[]),
    ("customer", &[]),
    ("text", &["text"]),
    ("subject", &["subject"]),
    ("html", &["html"]),
    ("url", &["url"]),
    ("language", &["language"]),
    ("sentiment", &["sentiment"]),
    ("externalId", &["external_id"]),
    ("ingestedAt", &["ingested_at"]),
    ("deliveryStatus", &["delivery_status"]),
    ("deliveryError", &["delivery_error"]),
];
const INTERACTION_OPTIONAL: &[&str] = &[
    "conversation_id",
    "identity_id",
    "source_id",
    "external_id",
    "subject",
    "text",
    "html",
    "url",
    "language",
    "sentiment",
    "ingested_at",
    "delivery_status",
    "delivery_error",
    "idempotency_key",
    "delivery_attempted_at",
];

/// The same for a contact point (ids, the kind, `is_primary` and `created_at`, which
/// order them, are always read).
const CONTACT_POINT_FIELDS: &[(&str, &[&str])] = &[
    ("__typename", &[]),
    ("id", &[]),
    ("kind", &[]),
    ("primary", &[]),
    ("customer", &[]),
    ("value", &["value"]),
    ("normalizedValue", &["normalized"]),
    ("label", &["label"]),
    ("verified", &["verified"]),
];
const CONTACT_POINT_OPTIONAL: &[&str] = &["value", "normalized", "label", "verified"];

/// The same for a conversation (ids, the enumerations, `snoozed_until`, which the status
/// reads and `conversations(status:)` filters by, and `last_message_at`, which orders
/// them, are always read; `spam` reads the customer's id as well).
const CONVERSATION_FIELDS: &[(&str, &[&str])] = &[
    ("__typename", &[]),
    ("id", &[]),
    ("channel", &[]),
    ("status", &[]),
    ("snoozedUntil", &[]),
    ("priority", &[]),
    ("lastMessageAt", &[]),
    ("customer", &[]),
    ("labels", &[]),
    ("lastInteraction", &[]),
    ("interactions", &[]),
    ("notes", &[]),
    ("subject", &["subject"]),
    ("assignee", &["assignee_id"]),
    ("spam", &["spam"]),
    ("waitingSince", &["waiting_since"]),
    ("firstResponseAt", &["first_response_at"]),
    ("resolvedAt", &["resolved_at"]),
    ("createdAt", &["created_at"]),
    ("updatedAt", &["updated_at"]),
];
const CONVERSATION_OPTIONAL: &[&str] = &[
    "thread_key",
    "subject",
    "assignee_id",
    "spam",
    "waiting_since",
    "first_response_at",
    "resolved_at",
    "created_at",
    "updated_at",
];

/// The same for a deal (ids, the stage and `created_at`, which orders them, are always
/// read).
const DEAL_FIELDS: &[(&str, &[&str])] = &[
    ("__typename", &[]),
    ("id", &[]),
    ("stage", &[]),
    ("createdAt", &[]),
    ("customer", &[]),
    ("title", &["title"]),
    ("amount", &["amount_minor"]),
    ("currency", &["currency"]),
    ("closeDate", &["close_date"]),
    ("organization", &["organization_id"]),
    ("updatedAt", &["updated_at"]),
];
const DEAL_OPTIONAL: &[&str] = &[
    "organization_id",
    "title",
    "amount_minor",
    "currency",
    "close_date",
    "updated_at",
];

/// The same for a note (ids and `created_at`, which orders them, are always read).
const NOTE_FIELDS: &[(&str, &[&str])] = &[
    ("__typename", &[]),
    ("id", &[]),
    ("createdAt", &[]),
    ("customer", &[]),
    ("body", &["body"]),
    ("author", &["author"]),
    ("conversation", &["conversation_id"]),
    ("updatedAt", &["updated_at"]),
];
const NOTE_OPTIONAL: &[&str] = &["body", "author", "conversation_id", "updated_at"];

/// The same for an organization (its ids are always read; `customerCount` and `deals`
/// read by its id).
const ORGANIZATION_FIELDS: &[(&str, &[&str])] = &[
    ("__typename", &[]),
    ("id", &[]),
    ("customerCount", &[]),
    ("deals", &[]),
    ("name", &["name"]),
    ("domain", &["domain"]),
    ("customAttributes", &["custom"]),
    ("createdAt", &["created_at"]),
    ("updatedAt", &["updated_at"]),
];
const ORGANIZATION_OPTIONAL: &[&str] = &["name", "domain", "custom", "created_at", "updated_at"];

/// The same for a tag (ids and the name, which orders them, are always read).
const TAG_FIELDS: &[(&str, &[&str])] = &[
    ("__typename", &[]),
    ("id", &[]),
    ("name", &[]),
    ("color", &["color"]),
];
const TAG_OPTIONAL: &[&str] = &["color", "created_at"];

/// A relation of a customer read as a list of its rows (a list's or a view's rows, a view's
/// JSON of its organization and tags), of which a selection may leave out the columns no
/// field it selects shows. The timeline, a connection, is apart ([`timeline_unread`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Relation {
    ContactPoints,
    Identities,
    Organization,
    Tags,
    Conversations,
    Deals,
    Notes,
}

impl Relation {
    pub const ALL: [Relation; 7] = [
        Relation::ContactPoints,
        Relation::Identities,
        Relation::Organization,
        Relation::Tags,
        Relation::Conversations,
        Relation::Deals,
        Relation::Notes,
    ];

    /// The customer's field that selects it.
    pub fn field(self) -> &'static str {
        match self {
            Relation::ContactPoints => "contactPoints",
            Relation::Identities => "identities",
            Relation::Organization => "organization",
            Relation::Tags => "tags",
            Relation::Conversations => "conversations",
            Relation::Deals => "deals",
            Relation::Notes => "notes",
        }
    }

    /// Whether a list reads it with its page ([`list`]); the others (organizations, tags)
    /// come through their loaders, every column.
    pub fn in_list(self) -> bool {
        !matches!(self, Relation::Organization | Relation::Tags)
    }

    /// What each field of its objects shows of its row, and the columns that may be left
    /// out.
    fn shows(
        self,
    ) -> (
        &'static [(&'static str, &'static [&'static str])],
        &'static [&'static str],
    ) {
        match self {
            Relation::ContactPoints => (CONTACT_POINT_FIELDS, CONTACT_POINT_OPTIONAL),
            Relation::Identities => (IDENTITY_FIELDS, IDENTITY_OPTIONAL),
            Relation::Organization => (ORGANIZATION_FIELDS, ORGANIZATION_OPTIONAL),
            Relation::Tags => (TAG_FIELDS, TAG_OPTIONAL),
            Relation::Conversations => (CONVERSATION_FIELDS, CONVERSATION_OPTIONAL),
            Relation::Deals => (DEAL_FIELDS, DEAL_OPTIONAL),
            Relation::Notes => (NOTE_FIELDS, NOTE_OPTIONAL),
        }
    }

    /// The columns of its rows that none of the GraphQL `fields` selected on its objects
    /// shows; none when a field is not one whose columns are known.
    pub fn unread<'a>(self, fields: impl IntoIterator<Item = &'a str>) -> Vec<&'static str> {
        let (shows, optional) = self.shows();
        unread(fields, shows, optional)
    }
}

/// The columns of a list's customers that none of the GraphQL `fields` selected on them
/// shows; none when a field is not one whose columns are known.
pub fn customers_unread<'a>(fields: impl IntoIterator<Item = &'a str>) -> Vec<&'static str> {
    unread(fields, CUSTOMER_FIELDS, CUSTOMER_OPTIONAL)
}

/// The same for the timeline's interactions.
pub fn timeline_unread<'a>(fields: impl IntoIterator<Item = &'a str>) -> Vec<&'static str> {
    unread(fields, INTERACTION_FIELDS, INTERACTION_OPTIONAL)
}

fn unread<'a>(
    fields: impl IntoIterator<Item = &'a str>,
    shows: &[(&str, &[&'static str])],
    optional: &[&'static str],
) -> Vec<&'static str> {
    let mut shown: Vec<&str> = Vec::new();
    for field in fields {
        match shows.iter().find(|(name, _)| *name == field) {
            Some((_, columns)) => shown.extend_from_slice(columns),
            None => return Vec::new(),
        }
    }
    (optional.iter().copied())
        .filter(|column| !shown.contains(column))
        .collect()
}

/// A customer of the caller's workspace with the relations `wanted`, or `NOT_FOUND`. The
/// id of a customer merged into another stands for that survivor.
pub async fn get(
    db: &impl ConnectionTrait,
    caller: &Caller,
    id: CustomerId,
    wanted: &Wanted,
) -> Result<(Model, Related)> {
    let mut id = id;
    for _ in 0..super::merge::MAX_CHAIN {
        let (model, related) = get_one(db, caller, id, wanted).await?;
        match model.merged_into {
            Some(survivor) => id = survivor,
            None => return Ok((model, related)),
        }
    }
    Err(Error::Internal(format!(
        "customer {} is merged through too many customers",
        crate::ids::encode(id)
    )))
}

async fn get_one(
    db: &impl ConnectionTrait,
    caller: &Caller,
    id: CustomerId,
    wanted: &Wanted,
) -> Result<(Model, Related)> {
    let missing = || Error::not_found("customer", crate::ids::encode(id));
    if !wanted.is_empty() && db.get_database_backend() == DatabaseBackend::Postgres {
        // A page of this one customer, its relations read with it as a list reads them.
        // When that fails (logged), the customer alone and each relation through its
        // loader, where only a broken one fails (a GraphQL answer keeps its other fields).
        let text = view_text(wanted);
        let page = sea_orm::Values(vec![caller.workspace_id.into(), id.into()]);
        if let Some(mut read) = read_with(db, &text, page, wanted).await? {
            return read.pop().ok_or_else(missing);
        }
    }
    let model = by_id(caller.workspace_id, id)
        .one(db)
        .await?
        .ok_or_else(missing)?;
    Ok((model, Related::default()))
}

/// Statement texts built once per shape and shared by every request of that shape, views
/// and lists alike; at most 256 kept (2^7 relation sets × 101 timeline sizes × the
/// columns each relation leaves out exist for views alone, more for lists): a client
/// cycling through shapes empties the map instead of growing it (and pays the text's
/// building again).
struct Texts<K, V>(OnceLock<Mutex<HashMap<K, V>>>);

impl<K: std::hash::Hash + Eq, V: Clone> Texts<K, V> {
    const fn new() -> Self {
        Texts(OnceLock::new())
    }

    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<K, V>> {
        (self.0.get_or_init(Mutex::default).lock()).unwrap_or_else(PoisonError::into_inner)
    }

    fn get(&self, key: &K) -> Option<V> {
        self.map().get(key).cloned()
    }

    fn keep(&self, key: K, value: V) {
        let mut map = self.map();
        if map.len() >= 256 {
            map.clear();
        }
        map.insert(key, value);
    }
}

/// The customer `id` of the workspace.
fn by_id(workspace_id: WorkspaceId, id: CustomerId) -> sea_orm::Select<customer::Entity> {
    super::scoped::<customer::Entity>(workspace_id).filter(customer::Column::Id.eq(id))
}

/// The text of [`by_id`] on PostgreSQL, its parameters the workspace's id and the
/// customer's, in that order (the unit test holds the builder to it): built once, as
/// building it was 4 % of the server's instructions on the 360 view.
fn by_id_text() -> &'static str {
    static TEXT: OnceLock<String> = OnceLock::new();
    TEXT.get_or_init(|| {
        by_id(WorkspaceId::new(), CustomerId::new())
            .build(DatabaseBackend::Postgres)
            .sql
    })
}

/// [`list`]'s text for a view of one customer `wanted` ([`by_id_text`] as its page, the
/// organization and tags with the customer), built once per shape of view.
fn view_text(wanted: &Wanted) -> Arc<ListText> {
    static TEXTS: Texts<Wanted, Arc<ListText>> = Texts::new();
    if let Some(text) = TEXTS.get(wanted) {
        return text;
    }
    // A view reads every column of its customer (`merged_into` to follow a merge,
    // `organization_id` for its organization), whatever a list's selection would leave out.
    let every = Wanted {
        customers_unread: Vec::new(),
        ..wanted.clone()
    };
    let text = Arc::new(list_built(by_id_text(), "id", false, 1, &every, true));
    TEXTS.keep(wanted.clone(), Arc::clone(&text));
    text
}

/// The columns of [`list`]'s rows that hold the customer or one relation, its rows told
/// apart by the `kind` column.
struct Block {
    kind: i32,
    table: &'static str,
    /// The columns its rows carry: the table's, but those `unread`.
    columns: Vec<String>,
    /// Each column's type, as far as slots go ([`slot_type`]).
    types: Vec<String>,
    /// Each column's slot ([`Slots`]).
    slots: Vec<usize>,
    /// Columns of the table left out of the rows (their fields read as defaults: no field
    /// the selection asks for shows them).
    unread: Vec<&'static str>,
}

impl Block {
    fn of<E>(kind: i32, table: &'static str, unread: Vec<&'static str>) -> Block
    where
        E: EntityTrait,
        E::Column: IdenStatic,
    {
        let (columns, types) = E::Column::iter()
            .filter(|column| !unread.contains(&IdenStatic::as_str(column)))
            .map(|column| {
                (
                    IdenStatic::as_str(&column).to_owned(),
                    slot_type(column.def().get_column_type()),
                )
            })
            .unzip();
        Block {
            kind,
            table,
            columns,
            types,
            slots: Vec::new(),
            unread,
        }
    }

    /// The row's slots in its own rows: its columns read from `from` (an alias), the
    /// slots it does not fill as typed NULLs.
    fn values(&self, from: &str, slots: &Slots) -> Vec<String> {
        let mut out: Vec<String> = slots.0.iter().map(|slot| slot.null.clone()).collect();
        for (column, slot) in self.columns.iter().zip(&self.slots) {
            out[*slot] = format!("{from}.\"{column}\"");
        }
        out
    }

    /// Each column's position in the row (after `kind` and `seq`).
    fn named(&self) -> Vec<(&str, usize)> {
        self.columns
            .iter()
            .zip(&self.slots)
            .map(|(column, slot)| (column.as_str(), 2 + slot))
            .collect()
    }
}

/// What a slot of [`list`]'s rows may hold: columns of this type share one (a `UNION`
/// column has one type). Strings are one type whatever their length (PostgreSQL's union
/// of `varchar` and `text` is `text`).
fn slot_type(ty: &sea_orm::ColumnType) -> String {
    use sea_orm::ColumnType;
    match ty {
        ColumnType::String(_) | ColumnType::Text | ColumnType::Char(_) => "text".to_owned(),
        other => format!("{other:?}"),
    }
}

/// A column of [`list`]'s rows that each kind of row fills with a column of its own or
/// leaves NULL: per type, as many slots as the kind with most columns of it, not as many as
/// all kinds together.
/// Padding each kind's rows with the other kinds' columns as NULLs cost PostgreSQL about
/// as much as the columns themselves (BENCHMARKS.md).
struct Slot {
    ty: String,
    /// The slot's NULL, typed as its first column (`(NULL::table).column` has the
    /// column's type, so the `UNION` agrees).
    null: String,
}

struct Slots(Vec<Slot>);

impl Slots {
    /// Gives every column of the customer's block and the relations' a slot: each block's
    /// columns of one type take the first slots of that type, in order, a new one when
    /// there are not enough.
    fn assign(customer: &mut Block, relations: &mut [Block]) -> Slots {
        let mut slots: Vec<Slot> = Vec::new();
        for block in std::iter::once(customer).chain(relations.iter_mut()) {
            let mut taken = vec![false; slots.len()];
            let mut assigned = Vec::with_capacity(block.columns.len());
            for (column, ty) in block.columns.iter().zip(&block.types) {
                let free = (0..slots.len()).find(|&i| !taken[i] && slots[i].ty == *ty);
                let slot = free.unwrap_or_else(|| {
                    slots.push(Slot {
                        ty: ty.clone(),
                        null: format!("(NULL::\"{}\").\"{column}\"", block.table),
                    });
                    taken.push(false);
                    slots.len() - 1
                });
                taken[slot] = true;
                assigned.push(slot);
            }
            block.slots = assigned;
        }
        Slots(slots)
    }
}

/// The kinds of [`list`]'s rows.
const CUSTOMER: i32 = 0;
const CONTACT_POINTS: i32 = 1;
const IDENTITIES: i32 = 2;
const CONVERSATIONS: i32 = 3;
const DEALS: i32 = 4;
const NOTES: i32 = 5;
const TIMELINE: i32 = 6;

impl Wanted {
    /// The relation blocks a list reads with its page, in branch order: the relations of
    /// many rows per customer (organization and tags go through their loaders).
    fn blocks(&self) -> Vec<Block> {
        let mut blocks = Vec::new();
        if self.contact_points {
            blocks.push(Block::of::<contact_point::Entity>(
                CONTACT_POINTS,
                "contact_point",
                self.unread(Relation::ContactPoints).to_vec(),
            ));
        }
        if self.identities {
            blocks.push(Block::of::<identity::Entity>(
                IDENTITIES,
                "identity",
                self.unread(Relation::Identities).to_vec(),
            ));
        }
        if self.conversations {
            blocks.push(Block::of::<conversation::Entity>(
                CONVERSATIONS,
                "conversation",
                self.unread(Relation::Conversations).to_vec(),
            ));
        }
        if self.deals {
            let unread = self.unread(Relation::Deals).to_vec();
            blocks.push(Block::of::<deal::Entity>(DEALS, "deal", unread));
        }
        if self.notes {
            let unread = self.unread(Relation::Notes).to_vec();
            blocks.push(Block::of::<note::Entity>(NOTES, "note", unread));
        }
        if self.timeline.is_some() {
            // The platform's payload is never shown and may be kilobytes a row.
            let mut unread = self.timeline_unread.clone();
            unread.push("raw");
            blocks.push(Block::of::<interaction::Entity>(
                TIMELINE,
                "interaction",
                unread,
            ));
        }
        blocks
    }

    /// Whether a list reads any of these with its page ([`list`]): the flags
    /// [`Wanted::blocks`] reads, without building the blocks.
    pub fn has_list_blocks(&self) -> bool {
        self.contact_points
            || self.identities
            || self.conversations
            || self.deals
            || self.notes
            || self.timeline.is_some()
    }
}

/// A page of customers and the relations `wanted` of many rows each (contact points,
/// identities, conversations, deals, notes, the timeline's first page), read in one
/// statement on PostgreSQL in binary rows, as the loaders read them (the same read as
/// JSON built in PostgreSQL and parsed here cost more than the round trips it saved:
/// BENCHMARKS.md). `page` is the page's own select, ordered by `order_by` (`descending`)
/// then id, and limited to `size` + 1 rows; its first `size` customers get their
/// relations.
///
/// The statement is a `UNION ALL` of the page and one branch per relation, a `LATERAL`
/// subquery per customer (an index scan by customer whatever the planner estimates of
/// the page). After `kind` and the customer's position in the page, a row holds its kind's
/// columns in slots that the kinds share by type ([`Slots`]), the slots its kind does not
/// fill as typed NULLs: for each type, as many slots as the kind with most columns of it
/// needs, not as all kinds together. It has no `ORDER BY`: sorting its wide rows cost
/// PostgreSQL more than [`read_list`] sorting each customer's few.
///
/// The customers' and every relation's rows carry only the columns a field of the
/// selection shows, besides the ids and those that group and order them
/// ([`Wanted::customers_unread`], [`Wanted::relations_unread`],
/// [`Wanted::timeline_unread`]; the maps are `CUSTOMER_FIELDS` and the like, beside
/// [`customers_unread`]): for every column of a
/// page of 50 customers with their identities and last interactions, PostgreSQL spent
/// twice what it spends for the columns the page shows (BENCHMARKS.md). The fields of a
/// column left out read as their defaults, and no field asked for shows them.
///
/// `None` when the statement could not be read (logged): the caller reads the page
/// alone and the relations through the loaders, where only a broken one fails.
pub async fn list(
    db: &impl ConnectionTrait,
    page: Statement,
    order_by: &str,
    descending: bool,
    size: u64,
    wanted: &Wanted,
) -> Result<Option<Vec<(Model, Related)>>> {
    let text = list_text(&page.sql, order_by, descending, size, wanted);
    let values = page.values.unwrap_or(sea_orm::Values(Vec::new()));
    read_with(db, &text, values, wanted).await
}

/// The customers and relations of `text` (a list's, or a view's with its organization
/// and tags: [`Wanted::singles`]) with the page's parameters `values`.
async fn read_with(
    db: &impl ConnectionTrait,
    text: &ListText,
    values: sea_orm::Values,
    wanted: &Wanted,
) -> Result<Option<Vec<(Model, Related)>>> {
    let statement = Statement::from_sql_and_values(DatabaseBackend::Postgres, &text.sql, values);
    let rows = match db.query_all(statement).await {
        Ok(rows) => rows,
        Err(err) => {
            static WARNING: Warning = Warning::new();
            WARNING.log(
                &err,
                "reading customers with their relations failed; reading them one relation at a time",
            );
            return Ok(None);
        }
    };
    // A row that does not decode (a value a model does not know) fails its relation's
    // field alone through the loaders, as for a statement that fails.
    match read_list(&rows, text, wanted) {
        Ok(customers) => Ok(Some(customers)),
        Err(err) => {
            static WARNING: Warning = Warning::new();
            WARNING.log(
                &err,
                "customers with their relations did not decode; reading them one relation at a time",
            );
            Ok(None)
        }
    }
}

/// The text of [`list`]'s statement and the blocks of its rows, for one shape of list.
struct ListText {
    sql: String,
    customer: Block,
    blocks: Vec<Block>,
    /// The aliases of the customers' JSON columns of one-row relations
    /// ([`Wanted::singles`]), after the slots.
    singles: Vec<&'static str>,
    /// Where each kind's fields are in the rows, found from the first result's columns
    /// (the text fixes them): finding them for each result was 3 % of the server's
    /// instructions on the 360 view.
    plans: OnceLock<Plans>,
}

/// Where [`read_list`] reads each kind's fields in a text's rows.
struct Plans {
    customer: Vec<super::decode::Place>,
    /// By kind (CUSTOMER ..= TIMELINE), for the blocks the text has.
    places: Vec<Option<Vec<super::decode::Place>>>,
    /// Each JSON column of the customers' rows and its position.
    singles: Vec<(&'static str, usize)>,
    /// The types of the columns they were found in.
    types: Vec<sea_orm::sqlx::postgres::PgTypeInfo>,
}

impl Plans {
    fn of(columns: &[sea_orm::sqlx::postgres::PgColumn], text: &ListText) -> Result<Plans> {
        use super::decode::plan_named;
        // Where each block's fields are: in their slots, after `kind` and `seq`.
        let plan = |block: &Block| -> Result<Vec<super::decode::Place>> {
            let (named, unread) = (block.named(), &block.unread[..]);
            let places = match block.kind {
                CUSTOMER => plan_named::<Model>(columns, &named, unread),
                CONTACT_POINTS => plan_named::<contact_point::Model>(columns, &named, unread),
                IDENTITIES => plan_named::<identity::Model>(columns, &named, unread),
                CONVERSATIONS => plan_named::<conversation::Model>(columns, &named, unread),
                DEALS => plan_named::<deal::Model>(columns, &named, unread),
                NOTES => plan_named::<note::Model>(columns, &named, unread),
                TIMELINE => plan_named::<interaction::Model>(columns, &named, unread),
                kind => return Err(Error::Internal(format!("no block of kind {kind}"))),
            }?;
            Ok(places)
        };
        let singles = (text.singles.iter())
            .map(|alias| {
                let at = (columns.iter())
                    .position(|column| sea_orm::sqlx::Column::name(column) == *alias);
                at.map(|at| (*alias, at))
                    .ok_or_else(|| Error::Internal(format!("no column {alias} in a list's rows")))
            })
            .collect::<Result<Vec<_>>>()?;
        let mut places = vec![None; TIMELINE as usize + 1];
        for block in &text.blocks {
            places[block.kind as usize] = Some(plan(block)?);
        }
        Ok(Plans {
            customer: plan(&text.customer)?,
            places,
            singles,
            types: (columns.iter())
                .map(|c| sea_orm::sqlx::Column::type_info(c).clone())
                .collect(),
        })
    }

    /// Whether these plans were found in columns of these types.
    fn made_for(&self, columns: &[sea_orm::sqlx::postgres::PgColumn]) -> bool {
        use sea_orm::sqlx::Column;
        self.types.len() == columns.len()
            && (self.types.iter().zip(columns)).all(|(ty, column)| ty == column.type_info())
    }
}

/// What [`list`]'s text depends on: its values are the page's parameters.
#[derive(PartialEq, Eq, Hash)]
struct ListShape {
    page_sql: String,
    order_by: String,
    descending: bool,
    size: u64,
    wanted: Wanted,
}

/// [`list_built`], built once per shape of list (page filter, order, size, relations) and
/// then shared: formatting a statement of a few hundred columns per request was CPU every
/// list paid for the same text.
fn list_text(
    page_sql: &str,
    order_by: &str,
    descending: bool,
    size: u64,
    wanted: &Wanted,
) -> Arc<ListText> {
    static TEXTS: Texts<ListShape, Arc<ListText>> = Texts::new();
    let shape = ListShape {
        page_sql: page_sql.to_owned(),
        order_by: order_by.to_owned(),
        descending,
        size,
        wanted: wanted.clone(),
    };
    if let Some(text) = TEXTS.get(&shape) {
        return text;
    }
    let text = Arc::new(list_built(
        page_sql, order_by, descending, size, wanted, false,
    ));
    TEXTS.keep(shape, Arc::clone(&text));
    text
}

/// [`list`]'s statement text around the page's own select `page_sql`, and its blocks.
fn list_built(
    page_sql: &str,
    order_by: &str,
    descending: bool,
    size: u64,
    wanted: &Wanted,
    singles: bool,
) -> ListText {
    let singles = if singles {
        wanted.singles("page")
    } else {
        Vec::new()
    };
    // The page is ordered, and its cursors made, by its order's column. (A selection
    // that asks for the organization shows `organization_id`: `CUSTOMER_FIELDS`.)
    let mut unread = wanted.customers_unread.clone();
    unread.retain(|column| *column != order_by);
    let mut customer = Block::of::<customer::Entity>(CUSTOMER, "customer", unread);
    let mut blocks = wanted.blocks();
    let slots = Slots::assign(&mut customer, &mut blocks);
    let direction = if descending { "DESC" } else { "ASC" };
    // The first branch names the slots (the union's column names are its).
    let mut named: Vec<String> = customer
        .values("page", &slots)
        .into_iter()
        .enumerate()
        .map(|(i, value)| format!("{value} AS s{i}"))
        .collect();
    named.extend(
        singles
            .iter()
            .map(|(alias, sql)| format!("{sql} AS {alias}")),
    );
    // The other branches leave the customers' JSON columns NULL.
    let no_singles: String = singles.iter().map(|_| ", NULL::text").collect();
    // The page keeps only the customer's columns the rows carry (its id and workspace
    // among them, which the branches join on): PostgreSQL stores it for the branches.
    let kept: Vec<String> = customer
        .columns
        .iter()
        .map(|column| format!("p.\"{column}\""))
        .collect();
    let mut sql = format!(
        "WITH page AS (SELECT row_number() OVER (ORDER BY p.\"{order_by}\" {direction}, p.\"id\" {direction}) AS seq, {} FROM ({}) p LIMIT {}) \
         SELECT {CUSTOMER} AS kind, page.seq AS seq, {} FROM page",
        kept.join(", "),
        page_sql,
        // The page's own limit is a parameter: written out here too, the planner knows
        // how many customers the relations are read for, and keeps one plan for the text.
        size + 1,
        named.join(", ")
    );
    for branch in &blocks {
        // Each customer's rows by a lateral subquery (an index scan by customer, whatever
        // the planner knows of the page); the timeline's first n + 1 by its index.
        let columns: Vec<String> = branch
            .columns
            .iter()
            .map(|column| format!("c.\"{column}\""))
            .collect();
        let limit = match (branch.kind, wanted.timeline) {
            (TIMELINE, Some(size)) => {
                format!(" ORDER BY c.occurred_at DESC, c.id DESC LIMIT {}", size + 1)
            }
            _ => String::new(),
        };
        sql.push_str(&format!(
            " UNION ALL SELECT {}, page.seq, {}{no_singles} FROM page CROSS JOIN LATERAL (SELECT {} FROM \"{}\" c \
             WHERE c.workspace_id = page.workspace_id AND c.customer_id = page.id{limit}) r \
             WHERE page.seq <= {size}",
            branch.kind,
            branch.values("r", &slots).join(", "),
            columns.join(", "),
            branch.table,
        ));
    }
    ListText {
        sql,
        customer,
        blocks,
        singles: singles.into_iter().map(|(alias, _)| alias).collect(),
        plans: OnceLock::new(),
    }
}

/// The customers of [`list`]'s rows, in reading order, each with its relations.
fn read_list(
    rows: &[QueryResult],
    text: &ListText,
    wanted: &Wanted,
) -> Result<Vec<(Model, Related)>> {
    use super::decode::Decode;
    let Some(first) = rows.first() else {
        return Ok(Vec::new());
    };
    let Some(columns) = first.try_as_pg_row().map(sea_orm::sqlx::Row::columns) else {
        return Err(Error::Internal(
            "a list read ahead on PostgreSQL only".to_owned(),
        ));
    };
    // The text fixes the rows' columns while the schema stays; a column whose type changed
    // under a running process (a migration of a rolling deploy) gets a plan of its own,
    // whose type checks are this result's, rather than the kept plan's.
    let fresh;
    let plans = match text.plans.get() {
        Some(plans) if plans.made_for(columns) => plans,
        Some(_) => {
            fresh = Plans::of(columns, text)?;
            &fresh
        }
        None => {
            // Two first readers find the same plans: either is kept.
            let _ = text.plans.set(Plans::of(columns, text)?);
            text.plans.get().expect("just set")
        }
    };
    let (customer_places, places, singles) = (&plans.customer, &plans.places, &plans.singles);
    let mut read = Vec::with_capacity(rows.len());
    for row in rows {
        let row = row
            .try_as_pg_row()
            .ok_or_else(|| Error::Internal("a list read ahead on PostgreSQL only".to_owned()))?;
        let kind: i32 = sea_orm::sqlx::Row::try_get(row, 0)
            .map_err(|err| Error::Internal(format!("a list row's kind: {err}")))?;
        let seq: i64 = sea_orm::sqlx::Row::try_get(row, 1)
            .map_err(|err| Error::Internal(format!("a list row's position: {err}")))?;
        read.push((kind, seq, row));
    }
    // The customers first, in the page's order (the statement has no `ORDER BY`: sorting
    // its wide rows cost PostgreSQL more than sorting a few here)…
    let mut page: Vec<(i64, Model, Related)> = Vec::new();
    for (kind, seq, row) in &read {
        if *kind == CUSTOMER {
            let mut related = empty(wanted);
            for &(alias, at) in singles {
                let json: Option<String> = sea_orm::sqlx::Row::try_get(*row, at)
                    .map_err(|err| Error::Internal(format!("a list row's {alias}: {err}")))?;
                let json = json.as_deref();
                match alias {
                    "rel_organization" => {
                        related.organization = Some(json.map(parse).transpose()?);
                    }
                    "rel_tags" => {
                        related.tags = Some(json.map(parse).transpose()?.unwrap_or_default());
                    }
                    other => {
                        return Err(Error::Internal(format!("no relation is read as {other}")));
                    }
                }
            }
            page.push((*seq, Model::decode_at(row, customer_places)?, related));
        }
    }
    page.sort_by_key(|(seq, _, _)| *seq);
    let mut customers: Vec<(Model, Related)> = Vec::with_capacity(page.len());
    let mut index: HashMap<CustomerId, usize> = HashMap::with_capacity(page.len());
    for (_, model, related) in page {
        index.insert(model.id, customers.len());
        customers.push((model, related));
    }
    let mut timelines: Vec<Vec<interaction::Model>> = vec![Vec::new(); customers.len()];
    // … then their relations, each put in its reading order below.
    let owner =
        |customer_id: Option<CustomerId>| customer_id.and_then(|id| index.get(&id).copied());
    for (kind, _, row) in read {
        if kind == CUSTOMER {
            continue;
        }
        let at = usize::try_from(kind)
            .ok()
            .and_then(|kind| places.get(kind)?.as_ref())
            .ok_or_else(|| Error::Internal(format!("a row of unknown kind {kind}")))?;
        match kind {
            CONTACT_POINTS => {
                let child = contact_point::Model::decode_at(row, at)?;
                if let Some(i) = owner(Some(child.customer_id)) {
                    push(&mut customers[i].1.contact_points, child);
                }
            }
            IDENTITIES => {
                let child = identity::Model::decode_at(row, at)?;
                if let Some(i) = owner(Some(child.customer_id)) {
                    push(&mut customers[i].1.identities, child);
                }
            }
            CONVERSATIONS => {
                let child = conversation::Model::decode_at(row, at)?;
                if let Some(i) = owner(child.customer_id) {
                    push(&mut customers[i].1.conversations, child);
                }
            }
            DEALS => {
                let child = deal::Model::decode_at(row, at)?;
                if let Some(i) = owner(child.customer_id) {
                    push(&mut customers[i].1.deals, child);
                }
            }
            NOTES => {
                let child = note::Model::decode_at(row, at)?;
                if let Some(i) = owner(Some(child.customer_id)) {
                    push(&mut customers[i].1.notes, child);
                }
            }
            _ => {
                let child = interaction::Model::decode_at(row, at)?;
                if let Some(i) = owner(child.customer_id) {
                    timelines[i].push(child);
                }
            }
        }
    }
    // The loaders' orders (`children_of`; a uuid compares as PostgreSQL compares it, byte
    // by byte).
    for ((_, related), mut rows) in customers.iter_mut().zip(timelines) {
        if let Some(points) = related.contact_points.as_mut() {
            points.sort_by_key(|r| (r.created_at, r.id.uuid()));
            super::identity::sort_contact_points(points);
        }
        if let Some(identities) = related.identities.as_mut() {
            identities.sort_by_key(|r| (r.created_at, r.id.uuid()));
        }
        if let Some(conversations) = related.conversations.as_mut() {
            conversations.sort_by_key(|r| std::cmp::Reverse((r.last_message_at, r.id.uuid())));
        }
        if let Some(deals) = related.deals.as_mut() {
            deals.sort_by_key(|r| std::cmp::Reverse((r.created_at, r.id.uuid())));
        }
        if let Some(notes) = related.notes.as_mut() {
            notes.sort_by_key(|r| std::cmp::Reverse((r.created_at, r.id.uuid())));
        }
        if let Some(size) = wanted.timeline {
            rows.sort_by_key(|r| std::cmp::Reverse((r.occurred_at, r.id.uuid())));
            related.timeline = Some((size, page::finish(rows, &first_page(size))));
        }
    }
    Ok(customers)
}

/// `rows` gets `row` when its relation is read here.
fn push<M>(rows: &mut Option<Vec<M>>, row: M) {
    if let Some(rows) = rows.as_mut() {
        rows.push(row);
    }
}

/// What [`list`] reads of a customer before its rows come: every relation it reads, empty.
fn empty(wanted: &Wanted) -> Related {
    fn read<T>(asked: bool) -> Option<Vec<T>> {
        asked.then(Vec::new)
    }
    Related {
        contact_points: read(wanted.contact_points),
        identities: read(wanted.identities),
        organization: None,
        tags: None,
        conversations: read(wanted.conversations),
        deals: read(wanted.deals),
        notes: read(wanted.notes),
        // Set from the rows once all are read.
        timeline: None,
    }
}

/// The unfiltered first page of `size` items.
fn first_page(size: u64) -> page::Window {
    page::Window {
        size,
        backward: false,
        after: None,
        before: None,
    }
}

/// A warning logged at most once a minute, with how many like it were left out since the
/// last: a relation that cannot be read (a schema that drifted from the models, say) fails
/// every request alike, and a line per request would bury the log.
struct Warning {
    /// When it was last logged, in seconds since the Unix epoch (0: never).
    last: AtomicU64,
    left_out: AtomicU64,
}

impl Warning {
    const EVERY_SECS: u64 = 60;

    const fn new() -> Warning {
        Warning {
            last: AtomicU64::new(0),
            left_out: AtomicU64::new(0),
        }
    }

    fn log(&self, error: &dyn std::fmt::Display, message: &str) {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |since| since.as_secs().max(1));
        let last = self.last.load(Ordering::Relaxed);
        let due = last == 0 || now >= last.saturating_add(Self::EVERY_SECS);
        if !due
            || self
                .last
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_err()
        {
            self.left_out.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let left_out = self.left_out.swap(0, Ordering::Relaxed);
        tracing::warn!(error = %error, left_out, "{message}");
    }
}

fn parse<T: DeserializeOwned>(text: &str) -> Result<T> {
    serde_json::from_str(text)
        .map_err(|err| Error::Internal(format!("a related row did not read back: {err}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A list reads relations with its page exactly when it has blocks to read.
    #[test]
    fn has_list_blocks_says_whether_there_are_blocks() {
        for bits in 0u8..128 {
            for timeline in [None, Some(5)] {
                let wanted = Wanted {
                    contact_points: bits & 1 != 0,
                    identities: bits & 2 != 0,
                    organization: bits & 4 != 0,
                    tags: bits & 8 != 0,
                    conversations: bits & 16 != 0,
                    deals: bits & 32 != 0,
                    notes: bits & 64 != 0,
                    timeline,
                    ..Wanted::default()
                };
                assert_eq!(
                    wanted.has_list_blocks(),
                    !wanted.blocks().is_empty(),
                    "{wanted:?}"
                );
            }
        }
    }

    /// A relation is read with a list's page exactly when it has a block there.
    #[test]
    fn the_relations_in_a_list_are_those_with_blocks() {
        for relation in Relation::ALL {
            let mut wanted = Wanted::default();
            *match relation {
                Relation::ContactPoints => &mut wanted.contact_points,
                Relation::Identities => &mut wanted.identities,
                Relation::Organization => &mut wanted.organization,
                Relation::Tags => &mut wanted.tags,
                Relation::Conversations => &mut wanted.conversations,
                Relation::Deals => &mut wanted.deals,
                Relation::Notes => &mut wanted.notes,
            } = true;
            assert!(wanted.reads(relation));
            assert_eq!(
                relation.in_list(),
                !wanted.blocks().is_empty(),
                "{relation:?}"
            );
        }
    }

    /// A view's page is the text the builder writes for the customer by id, whose values
    /// are the workspace's id and the customer's, in that order (a view's cached text is
    /// checked with the lists' below).
    #[test]
    fn a_views_page_is_the_customer_by_id() {
        let (workspace, customer) = (WorkspaceId::new(), CustomerId::new());
        let built = by_id(workspace, customer).build(DatabaseBackend::Postgres);
        assert_eq!(by_id_text(), built.sql);
        let expected: Vec<sea_orm::Value> = vec![workspace.into(), customer.into()];
        assert_eq!(built.values.unwrap().0, expected);
    }

    /// A list's or a view's cached text is the one built, for each relation set and page
    /// shape, the first time and after; its blocks are the ones read back.
    #[test]
    fn a_cached_list_text_is_the_built_one() {
        for bits in 0u16..512 {
            let wanted = Wanted {
                contact_points: bits & 1 != 0,
                identities: bits & 2 != 0,
                conversations: bits & 16 != 0,
                deals: bits & 32 != 0,
                notes: bits & 64 != 0,
                organization: bits & 128 != 0,
                tags: bits & 256 != 0,
                timeline: (bits & 4 != 0).then_some(5),
                ..Wanted::default()
            };
            let view = "SELECT * FROM customer WHERE workspace_id = $1 AND id = $2";
            // The last: a view's text, with its organization and tags (`view_text`).
            for (page, order_by, descending, size, singles) in [
                (
                    "SELECT * FROM customer WHERE workspace_id = $1 LIMIT $2",
                    "last_seen_at",
                    true,
                    50,
                    false,
                ),
                (
                    "SELECT * FROM customer WHERE workspace_id = $1 LIMIT $2",
                    "created_at",
                    false,
                    10,
                    false,
                ),
                (view, "id", false, 1, false),
                (by_id_text(), "id", false, 1, true),
            ] {
                for _ in 0..2 {
                    let cached = match singles {
                        true => view_text(&wanted),
                        false => list_text(page, order_by, descending, size, &wanted),
                    };
                    let built = list_built(page, order_by, descending, size, &wanted, singles);
                    assert_eq!(cached.sql, built.sql);
                    assert_eq!(cached.singles, built.singles);
                    let expected = match singles {
                        true => [
                            ("rel_organization", wanted.organization),
                            ("rel_tags", wanted.tags),
                        ]
                        .into_iter()
                        .filter_map(|(alias, asked)| asked.then_some(alias))
                        .collect(),
                        false => Vec::new(),
                    };
                    assert_eq!(built.singles, expected);
                    let kinds = |blocks: &[Block]| {
                        blocks
                            .iter()
                            .map(|b| (b.kind, b.columns.clone(), b.slots.clone()))
                            .collect::<Vec<_>>()
                    };
                    assert_eq!(kinds(&cached.blocks), kinds(&built.blocks));
                    assert_eq!(cached.customer.columns, built.customer.columns);
                    assert_eq!(cached.customer.slots, built.customer.slots);
                }
            }
        }
    }

    /// The kinds of a list's rows share slots: each column has one slot of its own type
    /// within its kind, a slot holds one type, and a row is as wide as the widest kind per
    /// type; every branch of the statement has that many columns, in its slots.
    #[test]
    fn kinds_share_slots_of_their_type() {
        let wanted = Wanted {
            contact_points: true,
            identities: true,
            conversations: true,
            deals: true,
            notes: true,
            timeline: Some(5),
            ..Wanted::default()
        };
        let mut customer = Block::of::<customer::Entity>(CUSTOMER, "customer", Vec::new());
        let mut blocks = wanted.blocks();
        let slots = Slots::assign(&mut customer, &mut blocks);
        let mut widest: HashMap<&str, usize> = HashMap::new();
        let mut columns = 0;
        for block in std::iter::once(&customer).chain(&blocks) {
            assert_eq!(block.slots.len(), block.columns.len(), "{}", block.table);
            let mut seen = std::collections::HashSet::new();
            for (slot, ty) in block.slots.iter().zip(&block.types) {
                assert!(seen.insert(*slot), "{}: slot {slot} twice", block.table);
                assert_eq!(&slots.0[*slot].ty, ty, "{}: slot {slot}", block.table);
            }
            let mut by_type: HashMap<&str, usize> = HashMap::new();
            for ty in &block.types {
                *by_type.entry(ty).or_default() += 1;
            }
            for (ty, n) in by_type {
                let widest = widest.entry(ty).or_default();
                *widest = (*widest).max(n);
            }
            columns += block.columns.len();
        }
        assert_eq!(slots.0.len(), widest.values().sum::<usize>());
        // Every type a slot holds is one PostgreSQL type whatever the table (a new kind of
        // column must be checked against its migrations before it joins this list).
        let known = [
            "Uuid",
            "text",
            "TimestampWithTimeZone",
            "Boolean",
            "Date",
            "JsonBinary",
            "BigInteger",
            "Double",
        ];
        for slot in &slots.0 {
            assert!(known.contains(&slot.ty.as_str()), "slot type {}", slot.ty);
        }
        assert!(
            slots.0.len() < columns / 2,
            "{} slots for {columns} columns",
            slots.0.len()
        );
        // Interactions and identities share their ids' slot.
        let timeline = blocks.iter().find(|b| b.kind == TIMELINE).unwrap();
        let identities = blocks.iter().find(|b| b.kind == IDENTITIES).unwrap();
        let at = |block: &Block, column: &str| {
            block.slots[block.columns.iter().position(|c| c == column).unwrap()]
        };
        assert_eq!(at(timeline, "id"), at(identities, "id"));

        let text = list_built(
            "SELECT * FROM customer",
            "created_at",
            false,
            10,
            &wanted,
            false,
        );
        let branches: Vec<&str> = text.sql.split(" UNION ALL ").collect();
        assert_eq!(branches.len(), 1 + text.blocks.len());
        let values = |block: &Block, from: &str| block.values(from, &slots);
        for (block, branch) in text.blocks.iter().zip(&branches[1..]) {
            let expected = values(block, "r").join(", ");
            assert!(branch.contains(&expected), "{}: {branch}", block.table);
            assert!(!branch.contains("NULL::text"), "{branch}");
        }
        assert_eq!(values(&text.customer, "page").len(), slots.0.len());

        // A view's organization and tags: two JSON columns after the customer's slots,
        // NULL in every other branch, just before its FROM.
        let wanted = Wanted {
            organization: true,
            tags: true,
            ..wanted
        };
        let text = list_built("SELECT * FROM customer", "id", false, 1, &wanted, true);
        let branches: Vec<&str> = text.sql.split(" UNION ALL ").collect();
        assert!(branches[0].contains(" AS rel_organization, (SELECT "));
        assert!(branches[0].contains(" AS rel_tags FROM page"));
        for branch in &branches[1..] {
            assert!(branch.contains(", NULL::text, NULL::text FROM page CROSS JOIN LATERAL"));
        }
    }

    /// A warning repeated within the minute is counted, not logged; the next one logged
    /// says how many were left out.
    #[test]
    fn a_repeated_warning_is_counted_until_its_minute_is_over() {
        let warning = Warning::new();
        warning.log(&"broken", "first");
        assert_eq!(warning.left_out.load(Ordering::Relaxed), 0);
        warning.log(&"broken", "again");
        warning.log(&"broken", "again");
        assert_eq!(warning.left_out.load(Ordering::Relaxed), 2);
        let logged = warning.last.load(Ordering::Relaxed);
        warning
            .last
            .store(logged - Warning::EVERY_SECS, Ordering::Relaxed);
        warning.log(&"broken", "a minute later");
        assert_eq!(warning.left_out.load(Ordering::Relaxed), 0);
        assert!(warning.last.load(Ordering::Relaxed) >= logged);
    }

    /// A list leaves out the columns no selected field shows, and reads every column for
    /// a field it does not know.
    #[test]
    fn the_columns_left_out_are_those_no_field_shows() {
        let identities_unread = |fields| Relation::Identities.unread(fields);
        assert_eq!(
            identities_unread(["id", "handle", "__typename"]),
            [
                "platform_id",
                "display_name",
                "profile_url",
                "avatar_url",
                "profile_key",
                "updated_at"
            ]
        );
        assert!(Relation::Identities
            .unread(["handle", "somethingNew"])
            .is_empty());
        // A conversation's status reads its snooze, which is never left out.
        let conversations = Relation::Conversations.unread(["status", "subject"]);
        assert!(!conversations.contains(&"subject") && conversations.contains(&"thread_key"));
        assert!(!CONVERSATION_OPTIONAL.contains(&"snoozed_until"));
        let organization = Relation::Organization.unread(["name"]);
        assert_eq!(
            organization,
            ["domain", "custom", "created_at", "updated_at"]
        );
        let timeline = timeline_unread(["text", "occurredAt"]);
        assert!(!timeline.contains(&"text") && timeline.contains(&"html"));
        assert!(timeline_unread(["text", "conversation"]).is_empty());
        let customers = customers_unread(["id", "displayName", "identities", "organization"]);
        assert!(!customers.contains(&"display_name") && !customers.contains(&"organization_id"));
        assert!(customers.contains(&"custom") && customers.contains(&"last_seen_at"));
        assert!(customers_unread(["id", "customAttributes"]).is_empty());
        // Two places of one selection: what either shows is read.
        assert!(customers_unread(["givenName", "familyName"])
            .iter()
            .all(|column| !["given_name", "family_name"].contains(column)));
    }

    /// The maps name real columns: each column a field shows is one that may be left out,
    /// each of those is a column of its table that a list can do without (neither an id
    /// it groups by nor an enumeration, which cannot read as a default), and a field
    /// showing one column shows the column of its own name.
    #[test]
    fn the_field_maps_name_columns_that_may_be_left_out() {
        fn check<E: EntityTrait>(fields: &[(&str, &[&str])], optional: &[&str], kept: &[&str])
        where
            E::Column: IdenStatic,
        {
            let table: Vec<String> = E::Column::iter()
                .map(|c| IdenStatic::as_str(&c).to_owned())
                .collect();
            for column in optional {
                assert!(
                    table.iter().any(|c| c == column),
                    "{column} is not a column"
                );
                assert!(!kept.contains(column), "{column} cannot be left out");
            }
            for (field, columns) in fields {
                for column in *columns {
                    assert!(optional.contains(column), "{field} shows {column}");
                }
                // Fields named otherwise than the column they show.
                let renamed = [
                    ("normalizedValue", "normalized"),
                    ("amount", "amount_minor"),
                    ("customAttributes", "custom"),
                    ("assignee", "assignee_id"),
                ];
                if let Some((_, column)) = renamed.iter().find(|(f, _)| f == field) {
                    assert_eq!(*columns, [*column], "{field}");
                } else if let [column] = columns {
                    let snake: String = field
                        .chars()
                        .flat_map(|c| match c.is_ascii_uppercase() {
                            true => vec!['_', c.to_ascii_lowercase()],
                            false => vec![c],
                        })
                        .collect();
                    let own = [snake.clone(), format!("{snake}_id")];
                    assert!(
                        own.iter().any(|own| own == column),
                        "{field} shows {column}"
                    );
                }
            }
        }
        check::<contact_point::Entity>(
            CONTACT_POINT_FIELDS,
            CONTACT_POINT_OPTIONAL,
            &[
                "id",
                "workspace_id",
                "customer_id",
                "kind",
                "is_primary",
                "created_at",
            ],
        );
        check::<conversation::Entity>(
            CONVERSATION_FIELDS,
            CONVERSATION_OPTIONAL,
            &[
                "id",
                "workspace_id",
                "customer_id",
                "channel",
                "status",
                "priority",
                "snoozed_until",
                "last_message_at",
            ],
        );
        check::<deal::Entity>(
            DEAL_FIELDS,
            DEAL_OPTIONAL,
            &["id", "workspace_id", "customer_id", "stage", "created_at"],
        );
        check::<note::Entity>(
            NOTE_FIELDS,
            NOTE_OPTIONAL,
            &["id", "workspace_id", "customer_id", "created_at"],
        );
        check::<organization::Entity>(
            ORGANIZATION_FIELDS,
            ORGANIZATION_OPTIONAL,
            &["id", "workspace_id"],
        );
        check::<tag::Entity>(TAG_FIELDS, TAG_OPTIONAL, &["id", "workspace_id", "name"]);
        check::<customer::Entity>(
            CUSTOMER_FIELDS,
            CUSTOMER_OPTIONAL,
            &["id", "workspace_id", "lifecycle_stage"],
        );
        check::<identity::Entity>(
            IDENTITY_FIELDS,
            IDENTITY_OPTIONAL,
            &["id", "workspace_id", "customer_id", "channel", "created_at"],
        );
        check::<interaction::Entity>(
            INTERACTION_FIELDS,
            INTERACTION_OPTIONAL,
            &[
                "id",
                "workspace_id",
                "customer_id",
                "channel",
                "direction",
                "kind",
                "occurred_at",
            ],
        );
    }
}
