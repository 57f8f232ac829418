//! The append-only event log (the outbox). Every write that changes a customer,
//! interaction, conversation or deal appends here in the same transaction, so consumers
//! (the search indexer, subscriptions) see exactly what was committed. One exception: a
//! customer's first/last seen (and `updated_at`) moving with a new interaction is told by
//! that interaction's `interaction.created`, which names the customer, not by a
//! `customer.updated` of its own (see `customer::seen_at`).
//!
//! Event kinds are the closed set [`EventKind`]; the stored text (`customer.created`, …)
//! is its wire form and never changes, so rows written before stay readable. A stored
//! kind this build does not know is skipped by readers with a warning.

use chrono::{DateTime, Utc};
use entity::{ApiKeyId, CustomerId, SourceId, UserId, WorkspaceId};
use sea_orm::sea_query::OnConflict;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, Condition, ConnectionTrait, EntityTrait, QueryFilter,
    QueryOrder, QuerySelect,
};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error::{Error, Result};
use crate::ids::TypedId;

/// Declares the event kinds once: each with its stored name and the payload it carries,
/// so an event is typed where it is written ([`Event`]) and named where it is read
/// ([`EventKind`]).
macro_rules! event_kinds {
    ($($(#[$meta:meta])* $variant:ident = $text:literal ($payload:ty),)+) => {
        /// What happened, as stored in `event.kind`.
        #[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
        pub enum EventKind { $($(#[$meta])* $variant),+ }

        impl EventKind {
            /// Every kind, in declaration order.
            pub const ALL: &'static [EventKind] = &[$(EventKind::$variant),+];

            /// The name stored in `event.kind`.
            pub fn as_str(self) -> &'static str {
                match self { $(EventKind::$variant => $text),+ }
            }

            /// Parses a stored name; `None` for a kind this build does not know.
            pub fn parse(text: &str) -> Option<EventKind> {
                match text { $($text => Some(EventKind::$variant),)+ _ => None }
            }
        }

        /// An event to append: its kind together with the payload that kind carries, so
        /// a kind cannot be written with another kind's payload.
        #[derive(Copy, Clone, Debug)]
        pub enum Event<'a> { $($(#[$meta])* $variant(&'a $payload)),+ }

        impl Event<'_> {
            /// The kind stored for this event.
            pub fn kind(&self) -> EventKind {
                match self { $(Event::$variant(_) => EventKind::$variant),+ }
            }

            /// The row the event is about, as the log stores it: a bare UUID, since the
            /// `entity_id` column names rows of every table.
            pub fn entity_id(&self) -> Uuid {
                match self { $(Event::$variant(payload) => Payload::entity_id(*payload)),+ }
            }

            /// The payload as stored: JSON text, written straight from the row (no
            /// `serde_json::Value` tree in between).
            fn to_text(self) -> Result<String> {
                let text = match self { $(Event::$variant(payload) => Payload::to_text(payload)),+ };
                text.map_err(|err| Error::Internal(format!("an event payload did not serialise: {err}")))
            }
        }
    };
}

event_kinds! {
    /// Payload: the customer row.
    CustomerCreated = "customer.created" (entity::customer::Model),
    /// Payload: the customer row (also written when a contact point, tag or note moved).
    CustomerUpdated = "customer.updated" (entity::customer::Model),
    /// Payload: `{ "id" }`; the customer and everything only theirs is gone.
    CustomerDeleted = "customer.deleted" (Deleted<CustomerId>),
    /// Payload: [`Erased`]: the customer was erased (GDPR) with everything that identified
    /// them and the events about their rows; ids only, no personal data.
    CustomerErased = "customer.erased" (Erased),
    /// Payload: the conversation row.
    ConversationCreated = "conversation.created" (entity::conversation::Model),
    /// Payload: the conversation row (a new message, a first response).
    ConversationUpdated = "conversation.updated" (entity::conversation::Model),
    /// Payload: [`ConversationChange`] (the row, reopened by a new message; the actor is
    /// Rapport's `new message`). Its own kind: the search index refreshes the status of
    /// every interaction of the conversation on this event, not on every new message.
    ConversationStatusChanged = "conversation.status_changed" (ConversationChange),
    /// Payload: the row's id and the columns consumers select on ([`InteractionRef`];
    /// [`InteractionPayload`] reads them); the rest is read from the row.
    InteractionCreated = "interaction.created" (entity::interaction::Model),
    /// Payload: the organization row.
    OrganizationCreated = "organization.created" (entity::organization::Model),
    /// Payload: the organization row.
    OrganizationUpdated = "organization.updated" (entity::organization::Model),
    /// Payload: the note row.
    NoteCreated = "note.created" (entity::note::Model),
    /// Payload: the deal row.
    DealCreated = "deal.created" (entity::deal::Model),
    /// Payload: the deal row.
    DealUpdated = "deal.updated" (entity::deal::Model),
    /// Payload: the source row (its secrets are never serialised).
    SourceCreated = "source.created" (entity::source::Model),
    /// Payload: the source row.
    SourceUpdated = "source.updated" (entity::source::Model),
    /// Payload: `{ "id" }`.
    SourceDeleted = "source.deleted" (Deleted<SourceId>),
    /// Payload: the user row.
    UserCreated = "user.created" (entity::user::Model),
    /// Payload: [`ConversationChange`] (the row with its new `assignee_id`, and who).
    ConversationAssigned = "conversation.assigned" (ConversationChange),
    /// Payload: [`ConversationChange`]. A status set by someone (a new message reopening
    /// a thread is `conversation.status_changed`); the search index refreshes the
    /// conversation's interactions on it as on that one.
    ConversationStatusSet = "conversation.status_set" (ConversationChange),
    /// Payload: [`ConversationChange`].
    ConversationPrioritySet = "conversation.priority_set" (ConversationChange),
    /// Payload: [`ConversationChange`] with the `label` put on.
    ConversationLabelAdded = "conversation.label_added" (ConversationChange),
    /// Payload: [`ConversationChange`] with the `label` taken off.
    ConversationLabelRemoved = "conversation.label_removed" (ConversationChange),
    /// Payload: [`ConversationChange`] (the row's `spam` says which way).
    ConversationSpamSet = "conversation.spam_set" (ConversationChange),
    /// Payload: [`ConversationChange`] by the snooze timer: a SNOOZED conversation whose
    /// time came is OPEN again. Refreshes the search index's status as a status change does.
    ConversationWoken = "conversation.woken" (ConversationChange),
    /// Payload: the user row as changed (renamed, a new role, deactivated or reactivated).
    UserUpdated = "user.updated" (entity::user::Model),
    /// Payload: [`DeliveryChange`]: a reply from Rapport was stored to be sent, was sent,
    /// failed, or is being sent again (its `delivery_status` and `delivery_error` say
    /// which), and who. A sent reply also gets its `interaction.created`.
    InteractionDeliveryChanged = "interaction.delivery_changed" (DeliveryChange),
    /// Payload: [`NoteChange`]: an internal note put on a conversation, and who.
    ConversationNoteAdded = "conversation.note_added" (NoteChange),
    /// Payload: [`SettingsChange`]: the workspace's settings as changed, and who.
    WorkspaceSettingsUpdated = "workspace.settings_updated" (SettingsChange),
    /// Payload: [`SavedReplyChange`] (the row, and who).
    SavedReplyCreated = "saved_reply.created" (SavedReplyChange),
    /// Payload: [`SavedReplyChange`].
    SavedReplyUpdated = "saved_reply.updated" (SavedReplyChange),
    /// Payload: [`SavedReplyChange`] (the row as it was).
    SavedReplyDeleted = "saved_reply.deleted" (SavedReplyChange),
    /// Payload: [`ServiceChange`]: an SLA rule set (`before` the channel's rule or null,
    /// `after` the new one), and who. Service metrics judge a conversation by the rules in
    /// force when its clock started, read from these.
    SlaRuleSet = "sla_rule.set" (ServiceChange),
    /// Payload: [`ServiceChange`] (`after` null).
    SlaRuleDeleted = "sla_rule.deleted" (ServiceChange),
    /// Payload: [`ServiceChange`] (`channel` null; `before`/`after` `{time_zone, hours}`).
    BusinessHoursSet = "business_hours.set" (ServiceChange),
    /// Payload: [`MergeChange`]: a customer merged into another (the survivor), and who.
    /// The merged customer is a tombstone now; the interactions it had are the survivor's
    /// (the search index reads which from the merge record).
    CustomerMerged = "customer.merged" (MergeChange),
    /// Payload: [`MergeChange`] of the record undone, and who: both customers are
    /// themselves again.
    CustomerUnmerged = "customer.unmerged" (MergeChange),
}

/// Who made a change: the API key and its user, or Rapport itself (`key_id` and
/// `user_id` both absent, `name` saying what: the snooze timer, the command line).
#[derive(Clone, Debug, Serialize)]
pub struct Actor {
    pub key_id: Option<ApiKeyId>,
    pub user_id: Option<UserId>,
    pub name: String,
}

impl Actor {
    /// The caller as the author of a change (a caller without a key has no key id).
    pub fn of(caller: &super::Caller) -> Actor {
        Actor {
            key_id: (!caller.key_id.uuid().is_nil()).then_some(caller.key_id),
            user_id: caller.user_id,
            name: caller.key_name.clone(),
        }
    }

    /// Rapport itself, doing `what`.
    pub fn system(what: &str) -> Actor {
        Actor {
            key_id: None,
            user_id: None,
            name: what.to_owned(),
        }
    }
}

/// The payload of a change made to a conversation by someone: the row as changed (its
/// fields at the top level, as a `conversation.*` row payload has them), who did it, and
/// the label a label change is about.
#[derive(Clone, Debug, Serialize)]
pub struct ConversationChange {
    #[serde(flatten)]
    pub conversation: entity::conversation::Model,
    pub actor: Actor,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
}

impl Payload for ConversationChange {
    fn entity_id(&self) -> Uuid {
        self.conversation.id.uuid()
    }
}

/// The payload of a change to a reply's delivery: the interaction row (its fields at the
/// top level, as an `interaction.created` payload has them, `raw` included: a reply's is
/// small and such changes are rare) and who made the change.
#[derive(Clone, Debug, Serialize)]
pub struct DeliveryChange {
    #[serde(flatten)]
    pub interaction: entity::interaction::Model,
    pub actor: Actor,
}

/// The payload of a note put on a conversation: the note row and who wrote it.
#[derive(Clone, Debug, Serialize)]
pub struct NoteChange {
    #[serde(flatten)]
    pub note: entity::note::Model,
    pub actor: Actor,
}

/// The payload of a change of the workspace's settings: the workspace row and who.
#[derive(Clone, Debug, Serialize)]
pub struct SettingsChange {
    #[serde(flatten)]
    pub workspace: entity::workspace::Model,
    pub actor: Actor,
}

/// The payload of a change to a saved reply: the row and who.
#[derive(Clone, Debug, Serialize)]
pub struct SavedReplyChange {
    #[serde(flatten)]
    pub saved_reply: entity::saved_reply::Model,
    pub actor: Actor,
}

impl Payload for DeliveryChange {
    fn entity_id(&self) -> Uuid {
        self.interaction.id.uuid()
    }
}

impl Payload for NoteChange {
    fn entity_id(&self) -> Uuid {
        self.note.id.uuid()
    }
}

impl Payload for SettingsChange {
    fn entity_id(&self) -> Uuid {
        self.workspace.id.uuid()
    }
}

/// The payload of a change of the workspace's service levels: an SLA rule (`channel` its
/// key, `*` for every channel) or the business hours (`channel` absent), as they were and
/// as they are, in their stored form, and who.
#[derive(Clone, Debug, Serialize)]
pub struct ServiceChange {
    pub workspace_id: WorkspaceId,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub channel: Option<String>,
    pub before: Option<serde_json::Value>,
    pub after: Option<serde_json::Value>,
    pub actor: Actor,
}

impl Payload for ServiceChange {
    fn entity_id(&self) -> Uuid {
        self.workspace_id.uuid()
    }
}

impl Payload for SavedReplyChange {
    fn entity_id(&self) -> Uuid {
        self.saved_reply.id.uuid()
    }
}

/// The payload of an erasure: the customer erased, and our replies that stayed in a
/// conversation they shared with others, now filed under another customer (the search
/// index deletes every interaction filed under the erased one, then writes these again).
#[derive(Clone, Debug, Serialize)]
pub struct Erased {
    pub id: CustomerId,
    pub moved: Vec<entity::InteractionId>,
}

impl Payload for Erased {
    fn entity_id(&self) -> Uuid {
        self.id.uuid()
    }
}

/// The payload of a merge or an unmerge: the merge record's id, the survivor and the
/// merged customer (the event is about the merged one), why, and who.
#[derive(Clone, Debug, Serialize)]
pub struct MergeChange {
    pub merge_id: entity::MergeRecordId,
    pub survivor_id: CustomerId,
    pub merged_id: CustomerId,
    /// `manual` or `automatic`.
    pub reason: String,
    pub score: Option<f64>,
    pub actor: Actor,
}

impl MergeChange {
    /// The payload of `record`'s merge (or unmerge) by `actor`.
    pub fn of(record: &entity::merge_record::Model, actor: &Actor) -> MergeChange {
        MergeChange {
            merge_id: record.id,
            survivor_id: record.survivor_id,
            merged_id: record.merged_id,
            reason: record.reason.clone(),
            score: record.score,
            actor: actor.clone(),
        }
    }
}

impl Payload for MergeChange {
    fn entity_id(&self) -> Uuid {
        self.merged_id.uuid()
    }
}

/// What consumers read from a `customer.merged`/`customer.unmerged` payload.
#[derive(Clone, Copy, Debug)]
pub struct MergePayload {
    pub merge_id: entity::MergeRecordId,
    pub survivor_id: CustomerId,
    pub merged_id: CustomerId,
}

/// The payload of a deletion: the id of what is gone.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct Deleted<I> {
    pub id: I,
}

/// A payload knows the row its event is about.
trait Payload: Serialize {
    fn entity_id(&self) -> Uuid;

    /// The payload as the log stores it.
    fn to_text(&self) -> serde_json::Result<String> {
        serde_json::to_string(self)
    }
}

macro_rules! payload_rows {
    ($($row:ty),+) => {
        $(impl Payload for $row {
            fn entity_id(&self) -> Uuid {
                self.id.uuid()
            }
        })+
    };
}

impl<I: TypedId + Serialize> Payload for Deleted<I> {
    fn entity_id(&self) -> Uuid {
        self.id.uuid()
    }
}

payload_rows!(
    entity::customer::Model,
    entity::conversation::Model,
    entity::organization::Model,
    entity::note::Model,
    entity::deal::Model,
    entity::source::Model,
    entity::user::Model
);

impl Payload for entity::interaction::Model {
    fn entity_id(&self) -> Uuid {
        self.id.uuid()
    }

    /// The row named, not copied: its id and the columns consumers filter and count on
    /// ([`InteractionRef`]). The text, the HTML and the platform's payload stay in the
    /// row, which a subscription reads by id; copying them made the log write more bytes
    /// than the interactions themselves.
    fn to_text(&self) -> serde_json::Result<String> {
        serde_json::to_string(&InteractionRef::from(self))
    }
}

/// What an `interaction.created` event stores of its row: what never changes once the
/// row is written and what consumers select on (a subscription's filter, the service
/// metrics' facts, the index's customer). Events written before this payload carried the
/// whole row; both read back the same through [`InteractionPayload`] and SQL projections.
#[derive(Serialize)]
struct InteractionRef {
    id: entity::InteractionId,
    customer_id: Option<entity::CustomerId>,
    conversation_id: Option<entity::ConversationId>,
    identity_id: Option<entity::IdentityId>,
    source_id: Option<entity::SourceId>,
    channel: connectors::Channel,
    direction: entity::enums::Direction,
    kind: entity::enums::InteractionKind,
    occurred_at: DateTime<Utc>,
}

impl From<&entity::interaction::Model> for InteractionRef {
    fn from(row: &entity::interaction::Model) -> Self {
        InteractionRef {
            id: row.id,
            customer_id: row.customer_id,
            conversation_id: row.conversation_id,
            identity_id: row.identity_id,
            source_id: row.source_id,
            channel: row.channel,
            direction: row.direction,
            kind: row.kind,
            occurred_at: row.occurred_at,
        }
    }
}

impl std::fmt::Display for EventKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What consumers read from an `interaction.*` payload: the fields every form of it
/// carries (a whole row before `interaction.created` named its row, [`InteractionRef`]
/// since, the row of an `interaction.delivery_changed`). Each field is read on its own,
/// so a value this build does not know (a newer channel) loses only that field.
#[derive(Debug, Default, Clone)]
pub struct InteractionPayload {
    pub id: Option<entity::InteractionId>,
    pub customer_id: Option<CustomerId>,
    pub conversation_id: Option<entity::ConversationId>,
    pub source_id: Option<SourceId>,
    pub channel: Option<connectors::Channel>,
    pub direction: Option<entity::enums::Direction>,
}

impl InteractionPayload {
    fn of(payload: &serde_json::Value) -> InteractionPayload {
        fn field<T: serde::de::DeserializeOwned>(
            payload: &serde_json::Value,
            name: &str,
        ) -> Option<T> {
            T::deserialize(payload.get(name)?).ok()
        }
        InteractionPayload {
            id: field(payload, "id"),
            customer_id: field(payload, "customer_id"),
            conversation_id: field(payload, "conversation_id"),
            source_id: field(payload, "source_id"),
            channel: field(payload, "channel"),
            direction: field(payload, "direction"),
        }
    }
}

/// One stored event as consumers read it.
#[derive(Debug, Clone)]
pub struct StoredEvent {
    pub seq: i64,
    pub workspace_id: WorkspaceId,
    /// `None` for a stored kind this build does not know (skipped, with a warning when read).
    pub kind: Option<EventKind>,
    /// The row the event is about, of the table `kind` names: see [`StoredEvent::entity`].
    pub entity_id: Uuid,
    pub payload: serde_json::Value,
    pub created_at: DateTime<Utc>,
    /// The row an `interaction.created` names, when the live feed read it for every
    /// subscriber at once (`None`: read from the log, or deleted before the feed read it).
    pub interaction_row: Option<std::sync::Arc<entity::interaction::Model>>,
}

impl StoredEvent {
    /// The id of the row the event is about, typed by the table its kind names.
    pub fn entity<I: TypedId>(&self) -> I {
        I::from_uuid(self.entity_id)
    }

    /// The payload of a `customer.merged`/`customer.unmerged` event; `None` when it does
    /// not read.
    pub fn merge(&self) -> Option<MergePayload> {
        let field = |name: &str| uuid::Uuid::deserialize(self.payload.get(name)?).ok();
        Some(MergePayload {
            merge_id: entity::MergeRecordId::from_uuid(field("merge_id")?),
            survivor_id: CustomerId::from_uuid(field("survivor_id")?),
            merged_id: CustomerId::from_uuid(field("merged_id")?),
        })
    }

    /// The payload of an `interaction.*` event (a field that does not parse is `None`).
    pub fn interaction(&self) -> InteractionPayload {
        InteractionPayload::of(&self.payload)
    }
}

impl From<entity::event::Model> for StoredEvent {
    fn from(row: entity::event::Model) -> StoredEvent {
        let kind = EventKind::parse(&row.kind);
        if kind.is_none() {
            tracing::warn!(seq = row.seq, kind = %row.kind, "an event of an unknown kind is skipped");
        }
        StoredEvent {
            seq: row.seq,
            workspace_id: row.workspace_id,
            kind,
            entity_id: row.entity_id,
            payload: row.payload,
            created_at: row.created_at,
            interaction_row: None,
        }
    }
}

/// Appends one event.
pub async fn append(
    db: &impl ConnectionTrait,
    workspace_id: WorkspaceId,
    event: Event<'_>,
) -> Result<()> {
    append_many(db, workspace_id, [event]).await
}

/// Appends events in order, several rows a statement. Each payload is bound as JSON text
/// (cast to `jsonb` on PostgreSQL): building a `serde_json::Value` of every row first, as
/// an entity insert does, was a tenth of an ingestion batch's time.
pub async fn append_many<'a>(
    db: &impl ConnectionTrait,
    workspace_id: WorkspaceId,
    events: impl IntoIterator<Item = Event<'a>>,
) -> Result<()> {
    use entity::event::{Column, Entity};
    use sea_orm::sea_query::{Alias, Expr, Query, SimpleExpr};
    let backend = db.get_database_backend();
    let created_at = super::now();
    if backend == sea_orm::DatabaseBackend::Postgres {
        return append_unnested(db, workspace_id, created_at, events).await;
    }
    let rows = events
        .into_iter()
        .map(|event| {
            let payload = Expr::val(event.to_text()?);
            let payload: SimpleExpr = if backend == sea_orm::DatabaseBackend::Postgres {
                payload.cast_as(Alias::new("jsonb"))
            } else {
                payload.into()
            };
            Ok([
                Expr::val(workspace_id).into(),
                Expr::val(event.kind().as_str()).into(),
                Expr::val(event.entity_id()).into(),
                payload,
                Expr::val(created_at).into(),
            ])
        })
        .collect::<Result<Vec<_>>>()?;
    // Rows are moved into the statements, not cloned: each holds its payload's text.
    let sizes: Vec<usize> = super::statement_chunks(&rows, 512)
        .map(<[_]>::len)
        .collect();
    let mut rows = rows.into_iter();
    for size in sizes {
        let mut insert = Query::insert();
        insert.into_table(Entity).columns([
            Column::WorkspaceId,
            Column::Kind,
            Column::EntityId,
            Column::Payload,
            Column::CreatedAt,
        ]);
        for row in rows.by_ref().take(size) {
            insert.values_panic(row);
        }
        db.execute(backend.build(&insert)).await?;
    }
    Ok(())
}

/// [`append_many`] on PostgreSQL: one statement whatever the number of events, each
/// column bound as one array and the rows taken from `unnest` in the given order (the
/// order their seqs are drawn in). A multi-row `VALUES` list of a thousand events binds
/// five thousand parameters, which the server parses and plans row by row.
async fn append_unnested<'a>(
    db: &impl ConnectionTrait,
    workspace_id: WorkspaceId,
    created_at: DateTime<Utc>,
    events: impl IntoIterator<Item = Event<'a>>,
) -> Result<()> {
    let (mut kinds, mut entities, mut payloads) = (Vec::new(), Vec::new(), Vec::new());
    for event in events {
        kinds.push(event.kind().as_str().to_owned());
        entities.push(event.entity_id());
        payloads.push(event.to_text()?);
    }
    if kinds.is_empty() {
        return Ok(());
    }
    db.execute(sea_orm::Statement::from_sql_and_values(
        sea_orm::DatabaseBackend::Postgres,
        "INSERT INTO event (workspace_id, kind, entity_id, payload, created_at) \
         SELECT $1, t.kind, t.entity_id, CAST(t.payload AS jsonb), $2 \
         FROM unnest($3::text[], $4::uuid[], $5::text[]) WITH ORDINALITY \
           AS t(kind, entity_id, payload, n) \
         ORDER BY t.n",
        [
            workspace_id.into(),
            created_at.into(),
            kinds.into(),
            entities.into(),
            payloads.into(),
        ],
    ))
    .await?;
    Ok(())
}

/// How many events of `workspace_id` come after `seq` (a consumer's offset): what that
/// consumer has still to read for this workspace, and nothing about any other.
pub async fn count_after(
    db: &impl ConnectionTrait,
    workspace_id: WorkspaceId,
    seq: i64,
) -> Result<i64> {
    use sea_orm::PaginatorTrait;
    let count = super::scoped::<entity::event::Entity>(workspace_id)
        .filter(entity::event::Column::Seq.gt(seq))
        .count(db)
        .await?;
    Ok(i64::try_from(count).unwrap_or(i64::MAX))
}

/// The highest `seq` written so far.
pub async fn head(db: &impl ConnectionTrait) -> Result<i64> {
    Ok(entity::event::Entity::find()
        .order_by_desc(entity::event::Column::Seq)
        .one(db)
        .await?
        .map_or(0, |row| row.seq))
}

/// The seq of `workspace_id`'s last event at or before `upto` (0 when it has none): a
/// position of the workspace's own, to show it instead of the log's global one.
pub async fn last_of_workspace(
    db: &impl ConnectionTrait,
    workspace_id: WorkspaceId,
    upto: i64,
) -> Result<i64> {
    Ok(super::scoped::<entity::event::Entity>(workspace_id)
        .filter(entity::event::Column::Seq.lte(upto))
        .order_by_desc(entity::event::Column::Seq)
        .one(db)
        .await?
        .map_or(0, |row| row.seq))
}

/// Up to `limit` events after `seq`, in `seq` order (every workspace: for consumers).
pub async fn after(db: &impl ConnectionTrait, seq: i64, limit: u64) -> Result<Vec<StoredEvent>> {
    Ok(entity::event::Entity::find()
        .filter(entity::event::Column::Seq.gt(seq))
        .order_by_asc(entity::event::Column::Seq)
        .limit(limit)
        .all(db)
        .await?
        .into_iter()
        .map(StoredEvent::from)
        .collect())
}

/// Up to `limit` events of `workspace_id` with `from < seq <= upto` whose kind is one of
/// `kinds`, in `seq` order: a subscriber's backlog, read from the log that is the truth.
pub async fn of_workspace(
    db: &impl ConnectionTrait,
    workspace_id: WorkspaceId,
    (from, upto): (i64, i64),
    kinds: &[EventKind],
    limit: u64,
) -> Result<Vec<StoredEvent>> {
    Ok(super::scoped::<entity::event::Entity>(workspace_id)
        .filter(entity::event::Column::Seq.gt(from))
        .filter(entity::event::Column::Seq.lte(upto))
        .filter(entity::event::Column::Kind.is_in(kinds.iter().map(|kind| kind.as_str())))
        .order_by_asc(entity::event::Column::Seq)
        .limit(limit)
        .all(db)
        .await?
        .into_iter()
        .map(StoredEvent::from)
        .collect())
}

/// How long a gap in `seq` may hold a reader back while a transaction that could own the
/// missing seqs is still running (a longer one is taken for a rollback).
pub const GAP_GRACE: chrono::Duration = chrono::Duration::minutes(5);

/// An event's `created_at` is Rapport's clock read before its batch was inserted, and
/// `xact_start` is the database's: a transaction that began up to this long after it is
/// still taken as one that may own a lower seq (a batch inserted slowly, clocks apart).
const GAP_CLOCK_MARGIN: chrono::Duration = chrono::Duration::seconds(2);

/// How far a reader that read `events` (ascending, every event after `from` up to some
/// limit) may move its position: to the end of the contiguous run of seqs, going past
/// gaps that no open transaction can still fill. On PostgreSQL sequence numbers are taken
/// at insert and become visible at commit, so seq 41 can appear after 42 was read: a gap
/// holds the reader back while a transaction that began before the event after it is
/// still open, for at most [`GAP_GRACE`]; with none, the gap is a rollback and is skipped.
/// SQLite assigns seqs in commit order, so its gaps are always skipped.
pub async fn visible_until(
    db: &impl ConnectionTrait,
    from: i64,
    events: &[StoredEvent],
) -> Result<i64> {
    let mut mark = from;
    for event in events {
        if event.seq != mark + 1
            && event.created_at >= super::now() - GAP_GRACE
            && writer_open_since(db, event.created_at + GAP_CLOCK_MARGIN).await?
        {
            break;
        }
        mark = event.seq;
    }
    Ok(mark)
}

/// The PostgreSQL channel a trigger on `event` notifies after every insert (migration
/// `m20261204_000008_event_notify`), so readers in any process wake at once.
const NOTIFY_CHANNEL: &str = "rapport_events";

/// Wake-ups when events are committed, from any process: PostgreSQL's `LISTEN` on the
/// channel the `event` table's trigger notifies. Readers still read the log itself (a
/// notification says only "look"), and poll too, so a lost notification delays, never loses.
pub struct Wakeups(sea_orm::sqlx::postgres::PgListener);

impl Wakeups {
    /// Listens on `db`, or `None` on SQLite (whose writers are in this process: readers poll).
    pub async fn listen(db: &sea_orm::DatabaseConnection) -> Result<Option<Wakeups>> {
        if db.get_database_backend() != sea_orm::DatabaseBackend::Postgres {
            return Ok(None);
        }
        let pool = db.get_postgres_connection_pool();
        let mut listener = sea_orm::sqlx::postgres::PgListener::connect_with(pool)
            .await
            .map_err(|err| Error::Internal(format!("LISTEN failed: {err}")))?;
        listener
            .listen(NOTIFY_CHANNEL)
            .await
            .map_err(|err| Error::Internal(format!("LISTEN failed: {err}")))?;
        Ok(Some(Wakeups(listener)))
    }

    /// Waits for the next notification (after a lost connection, the next one on the
    /// connection it makes again).
    pub async fn next(&mut self) -> Result<()> {
        self.0
            .recv()
            .await
            .map(drop)
            .map_err(|err| Error::Internal(format!("LISTEN failed: {err}")))
    }
}

/// Whether a transaction that began before `at` is still open and has written, so it may
/// commit an event with a seq below the one written at `at` (PostgreSQL takes sequence
/// numbers at insert and shows them at commit). Always `false` on SQLite, whose single
/// writer assigns seqs in commit order.
pub async fn writer_open_since(db: &impl ConnectionTrait, at: DateTime<Utc>) -> Result<bool> {
    if db.get_database_backend() != sea_orm::DatabaseBackend::Postgres {
        return Ok(false);
    }
    let row = db
        .query_one(sea_orm::Statement::from_sql_and_values(
            sea_orm::DatabaseBackend::Postgres,
            "SELECT count(*) AS open FROM pg_stat_activity \
             WHERE datname = current_database() AND pid <> pg_backend_pid() \
               AND backend_xid IS NOT NULL AND xact_start <= $1",
            [at.into()],
        ))
        .await?;
    let open: i64 = row
        .map(|row| row.try_get("", "open"))
        .transpose()?
        .unwrap_or(0);
    Ok(open > 0)
}

/// A consumer's offset: the `seq` it has read up to (0 before its first step).
pub async fn offset(db: &impl ConnectionTrait, consumer: &str) -> Result<i64> {
    Ok(
        entity::consumer_offset::Entity::find_by_id(consumer.to_owned())
            .one(db)
            .await?
            .map_or(0, |row| row.seq),
    )
}

/// Stores a consumer's offset.
pub async fn store_offset(db: &impl ConnectionTrait, consumer: &str, seq: i64) -> Result<()> {
    use entity::consumer_offset;
    let row = consumer_offset::ActiveModel {
        consumer: Set(consumer.to_owned()),
        seq: Set(seq),
        updated_at: Set(super::now()),
        ..Default::default()
    };
    consumer_offset::Entity::insert(row)
        .on_conflict(
            OnConflict::column(consumer_offset::Column::Consumer)
                .update_columns([
                    consumer_offset::Column::Seq,
                    consumer_offset::Column::UpdatedAt,
                ])
                .to_owned(),
        )
        .exec_without_returning(db)
        .await?;
    Ok(())
}

/// Stores a consumer's offset if `owner` still holds its lease (see [`claim`]); `false`,
/// and nothing written, when another process took the lease over.
pub async fn store_leased_offset(
    db: &impl ConnectionTrait,
    consumer: &str,
    owner: &str,
    seq: i64,
) -> Result<bool> {
    use entity::consumer_offset::{Column, Entity};
    use sea_orm::sea_query::Expr;
    let stored = Entity::update_many()
        .col_expr(Column::Seq, Expr::value(seq))
        .col_expr(Column::UpdatedAt, Expr::value(super::now()))
        .filter(Column::Consumer.eq(consumer))
        .filter(Column::LeaseOwner.eq(owner))
        .exec(db)
        .await?;
    Ok(stored.rows_affected == 1)
}

/// Takes or renews the lease on `consumer` for `owner` until `until`: `true` when `owner`
/// holds it afterwards. Free, already `owner`'s or run out: taken, in one conditional
/// `UPDATE`, so two processes asking at once never both get it.
pub async fn claim(
    db: &impl ConnectionTrait,
    consumer: &str,
    owner: &str,
    until: DateTime<Utc>,
) -> Result<bool> {
    use entity::consumer_offset::{self, Column, Entity};
    use sea_orm::sea_query::Expr;
    let now = super::now();
    let row = consumer_offset::ActiveModel {
        consumer: Set(consumer.to_owned()),
        seq: Set(0),
        updated_at: Set(now),
        ..Default::default()
    };
    Entity::insert(row)
        .on_conflict(OnConflict::column(Column::Consumer).do_nothing().to_owned())
        .exec_without_returning(db)
        .await?;
    let claimed = Entity::update_many()
        .col_expr(Column::LeaseOwner, Expr::value(owner))
        .col_expr(Column::LeaseUntil, Expr::value(until))
        .filter(Column::Consumer.eq(consumer))
        .filter(
            Condition::any()
                .add(Column::LeaseOwner.is_null())
                .add(Column::LeaseOwner.eq(owner))
                .add(Column::LeaseUntil.is_null())
                .add(Column::LeaseUntil.lt(now)),
        )
        .exec(db)
        .await?;
    Ok(claimed.rows_affected == 1)
}

/// Gives `owner`'s lease on `consumer` back, so another process takes over at once.
pub async fn release(db: &impl ConnectionTrait, consumer: &str, owner: &str) -> Result<()> {
    use entity::consumer_offset::{Column, Entity};
    use sea_orm::sea_query::Expr;
    Entity::update_many()
        .col_expr(Column::LeaseOwner, Expr::value(Option::<String>::None))
        .col_expr(
            Column::LeaseUntil,
            Expr::value(Option::<DateTime<Utc>>::None),
        )
        .filter(Column::Consumer.eq(consumer))
        .filter(Column::LeaseOwner.eq(owner))
        .exec(db)
        .await?;
    Ok(())
}

/// Who holds the lease on `consumer` now, if anyone (an owner whose lease ran out is none).
pub async fn lease_holder(db: &impl ConnectionTrait, consumer: &str) -> Result<Option<String>> {
    let row = entity::consumer_offset::Entity::find_by_id(consumer.to_owned())
        .one(db)
        .await?;
    let now = super::now();
    Ok(row.and_then(|row| match row.lease_until {
        Some(until) if until >= now => row.lease_owner,
        _ => None,
    }))
}

/// Moves a consumer's offset back to `seq` when it is past it (a rebuild started at `seq`).
pub async fn rewind_to(db: &impl ConnectionTrait, consumer: &str, seq: i64) -> Result<()> {
    use entity::consumer_offset;
    if offset(db, consumer).await? > seq {
        consumer_offset::Entity::update_many()
            .col_expr(
                consumer_offset::Column::Seq,
                sea_orm::sea_query::Expr::value(seq),
            )
            .filter(consumer_offset::Column::Consumer.eq(consumer))
            .exec(db)
            .await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_round_trips_through_its_stored_name() {
        for kind in EventKind::ALL {
            assert_eq!(EventKind::parse(kind.as_str()), Some(*kind));
        }
        assert_eq!(
            EventKind::parse("conversation.status_changed"),
            Some(EventKind::ConversationStatusChanged)
        );
        assert_eq!(EventKind::parse("customer.exploded"), None);
    }

    #[test]
    fn a_typed_event_keeps_its_stored_name_row_and_wire_form() {
        let id = CustomerId::new();
        let deleted = Event::CustomerDeleted(&Deleted { id });
        assert_eq!(deleted.kind().as_str(), "customer.deleted");
        assert_eq!(deleted.entity_id(), id.uuid());
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&deleted.to_text().unwrap()).unwrap(),
            serde_json::json!({ "id": id.uuid() })
        );
        let id = SourceId::new();
        assert_eq!(
            Event::SourceDeleted(&Deleted { id }).kind(),
            EventKind::SourceDeleted
        );
    }

    #[test]
    fn an_unknown_stored_kind_reads_as_none_and_an_interaction_payload_gives_its_customer() {
        let customer = CustomerId::new();
        let row = |kind: &str, payload: serde_json::Value| entity::event::Model {
            seq: 7,
            workspace_id: WorkspaceId::new(),
            kind: kind.to_owned(),
            entity_id: Uuid::now_v7(),
            payload,
            created_at: super::super::now(),
        };
        let unknown = StoredEvent::from(row("customer.exploded", serde_json::json!({})));
        assert_eq!((unknown.seq, unknown.kind), (7, None));
        let created = StoredEvent::from(row(
            "interaction.created",
            serde_json::json!({ "id": Uuid::now_v7(), "customer_id": customer, "text": "hi" }),
        ));
        assert_eq!(created.kind, Some(EventKind::InteractionCreated));
        assert_eq!(created.interaction().customer_id, Some(customer));
        let odd = StoredEvent::from(row(
            "interaction.created",
            serde_json::json!({ "customer_id": 3 }),
        ));
        assert_eq!(odd.interaction().customer_id, None);
    }

    #[test]
    fn an_interaction_event_names_its_row_with_the_columns_consumers_select_on() {
        let now = super::super::now();
        let row = entity::interaction::Model {
            id: entity::InteractionId::new(),
            workspace_id: WorkspaceId::new(),
            customer_id: Some(CustomerId::new()),
            conversation_id: Some(entity::ConversationId::new()),
            identity_id: Some(entity::IdentityId::new()),
            source_id: Some(SourceId::new()),
            external_id: Some("109".into()),
            channel: connectors::Channel::Mastodon,
            direction: entity::enums::Direction::Outbound,
            kind: entity::enums::InteractionKind::Reply,
            subject: Some("Re: export".into()),
            text: "On it".into(),
            html: Some("<p>On it</p>".into()),
            url: Some("https://social.example/@acme/109".into()),
            language: Some("en".into()),
            sentiment: Some(0.25),
            occurred_at: now,
            ingested_at: now,
            raw: Some(serde_json::json!({ "account": { "note": "a long profile" } })),
            delivery_status: Some(entity::enums::DeliveryStatus::Failed),
            delivery_error: Some("422".into()),
            idempotency_key: Some("k1".into()),
            delivery_attempted_at: Some(now),
        };
        let stored: serde_json::Value =
            serde_json::from_str(&Event::InteractionCreated(&row).to_text().unwrap()).unwrap();
        let whole = serde_json::to_value(&row).unwrap();
        let kept = [
            "id",
            "customer_id",
            "conversation_id",
            "identity_id",
            "source_id",
            "channel",
            "direction",
            "kind",
            "occurred_at",
        ];
        let expected: serde_json::Map<String, serde_json::Value> = kept
            .iter()
            .map(|name| (name.to_string(), whole[name].clone()))
            .collect();
        assert_eq!(
            stored,
            serde_json::Value::Object(expected),
            "in the row's own form"
        );
        let read = StoredEvent::from(entity::event::Model {
            seq: 1,
            workspace_id: row.workspace_id,
            kind: "interaction.created".into(),
            entity_id: row.id.uuid(),
            payload: stored,
            created_at: now,
        })
        .interaction();
        assert_eq!(read.id, Some(row.id));
        assert_eq!(read.customer_id, row.customer_id);
        assert_eq!(read.conversation_id, row.conversation_id);
        assert_eq!(read.source_id, row.source_id);
        assert_eq!(read.channel, Some(row.channel));
        assert_eq!(read.direction, Some(row.direction));

        // A whole row, as events stored before carried it, reads the same; a channel this
        // build does not know loses that field only.
        let mut old = whole.clone();
        old["channel"] = serde_json::json!("myspace");
        let read = InteractionPayload::of(&old);
        assert_eq!((read.id, read.channel), (Some(row.id), None));
        assert_eq!(read.customer_id, row.customer_id);
    }
}
