//! GDPR: everything held about one person as one document ([`export`]), the person
//! removed with everything that identifies them ([`erase`]), and kept out afterwards.
//!
//! Erasure leaves two things: an audit row (`erasure`: who, when, how many rows of each
//! kind — nothing that names the person) and tombstones (`erasure_tombstone`): keyed
//! hashes, HMAC-SHA-256 under the server key `erasure` (made once per database in
//! `server_secret`, see [`super::secret`]), of their items' external ids (per channel),
//! their platform ids (per channel), their e-mail addresses and phone numbers (as
//! [`super::contact_point::normalize`] writes them). Ingestion hashes a batch the same way
//! and looks every hash up in one query ([`keep_mask`]): an erased item never returns; a
//! new item whose author carries a tombstoned platform id or address is dropped, unless
//! the workspace's `new_contact_after_erasure` is on, when it makes a fresh customer.
//! Without the key a hash names no one; a leaked database does not say who was erased.
//!
//! Deleting a customer ([`delete`]) is the lighter form: their items are tombstoned, so
//! a re-pull does not bring them back, but the person is not (a new item of theirs makes a
//! new customer, as for anyone): deletion tidies the CRM, erasure answers a request to be
//! forgotten. Neither touches the event log of a delete but erasure's ([`erase`] removes
//! the events about the person's rows).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use hmac::{Hmac, Mac};
use sea_orm::sea_query::{Expr, OnConflict, Query};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, Condition, ConnectionTrait, EntityTrait, PaginatorTrait,
    QueryFilter, QueryOrder, QuerySelect, TransactionTrait,
};
use serde_json::{json, Value};
use sha2::Sha256;

use super::event::{self, Actor, Event};
use super::{Caller, ContactPointKind, Direction, Role};
use crate::error::{Error, Result};
use connectors::{Channel, InboundItem};
use entity::{
    contact_point, conversation, customer, customer_tag, deal, duplicate_suggestion, erasure,
    erasure_tombstone, identity, identity_link, interaction, note, tag,
};
use entity::{
    ConversationId, CustomerId, DealId, IdentityId, InteractionId, SourceId, WorkspaceId,
};

/// The `server_secret` row the tombstones are keyed with.
const KEY: &str = "erasure";

/// Rows read a page at a time (interactions of a large customer), and hashes looked up or
/// written per statement: below both databases' bound-parameter limits.
const PAGE: u64 = 2_000;

/// What a tombstone stands for (stored in its `kind`, and hashed with the value, so an
/// e-mail address and an item id that happen to be equal do not collide).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mark {
    /// An item: its channel and external id.
    Item,
    /// An author's account: its channel and platform id.
    PlatformId,
    /// A normalised e-mail address, on any channel.
    Email,
    /// A normalised phone number, on any channel.
    Phone,
    /// The workspace's own id for the customer (`externalId`), which an import upserts on.
    ExternalId,
}

impl Mark {
    fn as_str(self) -> &'static str {
        match self {
            Mark::Item => "item",
            Mark::PlatformId => "platform_id",
            Mark::Email => "email",
            Mark::Phone => "phone",
            Mark::ExternalId => "external_id",
        }
    }
}

/// Keyed hashes of one workspace's values.
struct Hasher {
    mac: Hmac<Sha256>,
}

impl Hasher {
    fn new(key: &[u8; 32], workspace_id: WorkspaceId) -> Result<Hasher> {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key)
            .map_err(|err| Error::Internal(format!("the erasure key was refused: {err}")))?;
        mac.update(workspace_id.uuid().as_bytes());
        Ok(Hasher { mac })
    }

    /// The hash of `value` of kind `mark` within `scope` (a channel, or nothing).
    fn hash(&self, mark: Mark, scope: &str, value: &str) -> String {
        let mut mac = self.mac.clone();
        for part in [mark.as_str(), scope, value] {
            mac.update(&(part.len() as u64).to_be_bytes());
            mac.update(part.as_bytes());
        }
        hex::encode(mac.finalize().into_bytes())
    }

    /// An item is named by its source and external id, the key ingestion deduplicates
    /// on: external ids are unique only within a source (a forum's `post:12`, a webhook
    /// sender's own ids), so a channel-wide key would drop other people's items.
    fn item(&self, source: SourceId, external_id: &str) -> String {
        self.hash(Mark::Item, &source.uuid().to_string(), external_id)
    }

    fn external_id(&self, external_id: &str) -> String {
        self.hash(Mark::ExternalId, "", external_id)
    }

    fn platform_id(&self, channel: Channel, platform_id: &str) -> String {
        self.hash(
            Mark::PlatformId,
            channel.as_str(),
            &super::clean(platform_id),
        )
    }

    /// The hash of an address as a contact point stores it (`normalized`).
    fn point(&self, kind: ContactPointKind, normalized: &str) -> Option<String> {
        match kind {
            ContactPointKind::Email => Some(self.hash(Mark::Email, "", normalized)),
            ContactPointKind::Phone => Some(self.hash(Mark::Phone, "", normalized)),
            _ => None,
        }
    }

    /// The hashes of an inbound author's e-mail address and phone, normalised as
    /// ingestion normalises them before matching contact points.
    fn author_points(&self, author: &connectors::Author) -> Vec<String> {
        [
            (ContactPointKind::Email, author.email.as_deref()),
            (ContactPointKind::Phone, author.phone.as_deref()),
        ]
        .into_iter()
        .filter_map(|(kind, value)| {
            let (_, normalized) = super::contact_point::normalize(kind, value?).ok()?;
            self.point(kind, &normalized)
        })
        .collect()
    }
}

// ---------------------------------------------------------------------------------------
// Ingestion

/// Which of a batch's (normalised) `items` of `source` may be stored: `false` for an item
/// erased or deleted before (its source and external id tombstoned), and for an inbound
/// item whose author's platform id, e-mail or phone is an erased person's unless the
/// workspace lets new contact after erasure make a fresh customer.
///
/// One lookup of the key (none made yet: nothing was ever erased, nothing else is read)
/// and one query for every hash of the batch (more only past 2,000 hashes); the
/// workspace's settings are read only when an author matched.
pub async fn keep_mask(
    db: &impl ConnectionTrait,
    source: &entity::source::Model,
    items: &[InboundItem],
) -> Result<Vec<bool>> {
    let keep = vec![true; items.len()];
    if items.is_empty() {
        return Ok(keep);
    }
    let Some(key) = super::secret::existing_key(db, KEY).await? else {
        return Ok(keep);
    };
    let hasher = Hasher::new(&key, source.workspace_id)?;
    let hashed: Vec<(String, Vec<String>)> = items
        .iter()
        .map(|item| {
            let own = hasher.item(source.id, &item.external_id);
            let mut author = Vec::new();
            if !item.outbound {
                author.push(hasher.platform_id(source.channel, &item.author.platform_id));
                author.extend(hasher.author_points(&item.author));
            }
            (own, author)
        })
        .collect();
    Ok(matched(db, source.workspace_id, &hashed)
        .await?
        .into_iter()
        .map(|stopped| !stopped)
        .collect())
}

/// Which of an import's `rows` (each the workspace's external id for a customer and its
/// normalised e-mail and phone) name an erased person: the external id of an erased
/// record always (it is the record itself coming back); an e-mail or phone of theirs
/// unless the workspace lets new contact after erasure make a fresh record. One lookup
/// of the key (none made: nothing was erased) and one query for the rows' hashes.
pub async fn erased_records(
    db: &impl ConnectionTrait,
    workspace_id: WorkspaceId,
    rows: &[(&str, Vec<(ContactPointKind, &str)>)],
) -> Result<Vec<bool>> {
    let erased = vec![false; rows.len()];
    if rows.is_empty() {
        return Ok(erased);
    }
    let Some(key) = super::secret::existing_key(db, KEY).await? else {
        return Ok(erased);
    };
    let hasher = Hasher::new(&key, workspace_id)?;
    let hashed: Vec<(String, Vec<String>)> = rows
        .iter()
        .map(|(external_id, points)| {
            let points = points
                .iter()
                .filter_map(|(kind, normalized)| hasher.point(*kind, normalized))
                .collect();
            (hasher.external_id(external_id), points)
        })
        .collect();
    matched(db, workspace_id, &hashed).await
}

/// For each `(own, others)` of `hashed`, whether it is stopped by a tombstone: its own hash
/// (an item, a record) always; one of the others (an author's account or addresses)
/// unless the workspace lets new contact after erasure make a fresh customer. One query
/// for all the hashes; the settings are read only when one of the others matched.
async fn matched(
    db: &impl ConnectionTrait,
    workspace_id: WorkspaceId,
    hashed: &[(String, Vec<String>)],
) -> Result<Vec<bool>> {
    let mut stopped = vec![false; hashed.len()];
    let all: Vec<&str> = hashed
        .iter()
        .flat_map(|(own, others)| std::iter::once(own).chain(others))
        .map(String::as_str)
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let found = tombstoned(db, workspace_id, &all).await?;
    if found.is_empty() {
        return Ok(stopped);
    }
    let mut by_others = Vec::new();
    for (n, (own, others)) in hashed.iter().enumerate() {
        if found.contains(own) {
            stopped[n] = true;
        } else if others.iter().any(|hash| found.contains(hash)) {
            by_others.push(n);
        }
    }
    if !by_others.is_empty()
        && !super::workspace::settings(db, workspace_id)
            .await?
            .new_contact_after_erasure
    {
        for n in by_others {
            stopped[n] = true;
        }
    }
    Ok(stopped)
}

async fn tombstoned(
    db: &impl ConnectionTrait,
    workspace_id: WorkspaceId,
    hashes: &[&str],
) -> Result<HashSet<String>> {
    let mut found = HashSet::new();
    for chunk in hashes.chunks(PAGE as usize) {
        let rows: Vec<String> = erasure_tombstone::Entity::find()
            .select_only()
            .column(erasure_tombstone::Column::Hash)
            .filter(erasure_tombstone::Column::WorkspaceId.eq(workspace_id))
            .filter(erasure_tombstone::Column::Hash.is_in(chunk.iter().copied()))
            .into_tuple()
            .all(db)
            .await?;
        found.extend(rows);
    }
    Ok(found)
}

// ---------------------------------------------------------------------------------------
// Erasure and deletion

/// How many rows an erasure or deletion removed, by kind (the audit row's `counts`).
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Removed {
    pub interactions: u64,
    pub conversations: u64,
    /// Conversations that also held other people's messages: kept, handed to the first
    /// of them, with the person's messages taken out.
    pub conversations_kept: u64,
    pub notes: u64,
    pub deals: u64,
    pub identities: u64,
    pub contact_points: u64,
    pub duplicate_suggestions: u64,
    pub events: u64,
    pub tombstones: u64,
}

/// Erases a customer (admin role): the customer, their identities and the links their
/// profiles showed, contact points, tags, interactions (text, HTML and raw payloads),
/// the conversations that held only their messages, their notes, their deals that belong
/// to no organization (one with an organization stays, unlinked: it is the
/// organization's), the duplicate suggestions naming them, and the events about any of
/// these (their payloads carry the rows). A conversation that also holds other people's
/// messages stays, handed to the first of the others with our replies in it, without the
/// person's messages. The search indexes follow the `customer.erased` event written here
/// (ids only: both delete the customer and every interaction filed under them, then
/// write again our replies that moved to the conversation's new customer; the event is
/// also the log's record that an erasure happened). Tombstones keep
/// them out (see the module's text); the `erasure` row records who did it and how much
/// went. All in one transaction. `NOT_FOUND` for an id of no customer of the workspace.
pub async fn erase(db: &impl TransactionTrait, caller: &Caller, id: CustomerId) -> Result<Removed> {
    caller.require(Role::Admin, "erasing a customer")?;
    let workspace_id = caller.workspace_id;
    let txn = super::begin_write(db).await?;
    let erased = settle(&txn, caller, id).await?;
    let hasher = Hasher::new(&super::secret::key(&txn, KEY).await?, workspace_id)?;
    let mut removed = Removed::default();
    let mut moved: Vec<InteractionId> = Vec::new();
    record(&txn, caller, id, "erased").await?;

    // Conversations that others wrote in too stay, with our replies in them, under the
    // first other author; this customer's own messages go with them below.
    let shared: Vec<Option<ConversationId>> = super::scoped::<interaction::Entity>(workspace_id)
        .select_only()
        .column(interaction::Column::ConversationId)
        .distinct()
        .filter(interaction::Column::CustomerId.is_not_null())
        .filter(interaction::Column::CustomerId.ne(id))
        .filter(
            interaction::Column::ConversationId.in_subquery(
                Query::select()
                    .column(conversation::Column::Id)
                    .from(conversation::Entity)
                    .and_where(conversation::Column::WorkspaceId.eq(workspace_id))
                    .and_where(conversation::Column::CustomerId.eq(id))
                    .to_owned(),
            ),
        )
        .into_tuple()
        .all(&txn)
        .await?;
    for conversation_id in shared.into_iter().flatten() {
        let other: Option<CustomerId> = super::scoped::<interaction::Entity>(workspace_id)
            .select_only()
            .column(interaction::Column::CustomerId)
            .filter(interaction::Column::ConversationId.eq(conversation_id))
            .filter(interaction::Column::CustomerId.is_not_null())
            .filter(interaction::Column::CustomerId.ne(id))
            .order_by_asc(interaction::Column::OccurredAt)
            .order_by_asc(interaction::Column::Id)
            .into_tuple::<Option<CustomerId>>()
            .one(&txn)
            .await?
            .flatten();
        let Some(other) = other else { continue };
        let ours: Vec<InteractionId> = super::scoped::<interaction::Entity>(workspace_id)
            .select_only()
            .column(interaction::Column::Id)
            .filter(interaction::Column::ConversationId.eq(conversation_id))
            .filter(interaction::Column::CustomerId.eq(id))
            .filter(interaction::Column::Direction.eq(Direction::Outbound))
            .into_tuple()
            .all(&txn)
            .await?;
        moved.extend(ours);
        interaction::Entity::update_many()
            .col_expr(interaction::Column::CustomerId, Expr::value(other))
            .filter(interaction::Column::WorkspaceId.eq(workspace_id))
            .filter(interaction::Column::ConversationId.eq(conversation_id))
            .filter(interaction::Column::CustomerId.eq(id))
            .filter(interaction::Column::Direction.eq(Direction::Outbound))
            .exec(&txn)
            .await?;
        let now = super::now();
        conversation::Entity::update_many()
            .col_expr(conversation::Column::CustomerId, Expr::value(other))
            .col_expr(conversation::Column::UpdatedAt, Expr::value(now))
            .filter(conversation::Column::WorkspaceId.eq(workspace_id))
            .filter(conversation::Column::Id.eq(conversation_id))
            .exec(&txn)
            .await?;
        let row = super::find_scoped(&txn, workspace_id, conversation_id).await?;
        event::append(&txn, workspace_id, Event::ConversationUpdated(&row)).await?;
        removed.conversations_kept += 1;
    }

    // Tombstones: what identified them, hashed (the workspace's own id for them too, so
    // an import of an old export does not bring the record back).
    let mut hashes: Vec<(Mark, String)> = Vec::new();
    if let Some(external_id) = &erased.external_id {
        hashes.push((Mark::ExternalId, hasher.external_id(external_id)));
    }
    let identities: Vec<identity::Model> = super::scoped::<identity::Entity>(workspace_id)
        .filter(identity::Column::CustomerId.eq(id))
        .all(&txn)
        .await?;
    for row in &identities {
        hashes.push((
            Mark::PlatformId,
            hasher.platform_id(row.channel, &row.platform_id),
        ));
    }
    let points: Vec<contact_point::Model> = super::scoped::<contact_point::Entity>(workspace_id)
        .filter(contact_point::Column::CustomerId.eq(id))
        .all(&txn)
        .await?;
    for row in &points {
        if let Some(hash) = hasher.point(row.kind, &row.normalized) {
            let mark = if row.kind == ContactPointKind::Email {
                Mark::Email
            } else {
                Mark::Phone
            };
            hashes.push((mark, hash));
        }
    }
    removed.identities = identities.len() as u64;
    removed.contact_points = points.len() as u64;
    removed.tombstones += insert_tombstones(&txn, workspace_id, id, hashes).await?;
    let (items, tombstones) = tombstone_items(&txn, workspace_id, id, &hasher).await?;
    removed.interactions = items;
    removed.tombstones += tombstones;

    // The events about their rows: their payloads are the rows (names, texts, raw
    // payloads of old events). Read before the rows go.
    let gone_conversations: Vec<ConversationId> =
        super::scoped::<conversation::Entity>(workspace_id)
            .select_only()
            .column(conversation::Column::Id)
            .filter(conversation::Column::CustomerId.eq(id))
            .into_tuple()
            .all(&txn)
            .await?;
    removed.conversations = gone_conversations.len() as u64;
    let gone_deals: Vec<DealId> = super::scoped::<deal::Entity>(workspace_id)
        .select_only()
        .column(deal::Column::Id)
        .filter(deal::Column::CustomerId.eq(id))
        .filter(deal::Column::OrganizationId.is_null())
        .into_tuple()
        .all(&txn)
        .await?;
    removed.deals = gone_deals.len() as u64;
    removed.notes = super::scoped::<note::Entity>(workspace_id)
        .filter(note::Column::CustomerId.eq(id))
        .count(&txn)
        .await?;
    removed.duplicate_suggestions = super::scoped::<duplicate_suggestion::Entity>(workspace_id)
        .filter(
            Condition::any()
                .add(duplicate_suggestion::Column::CustomerA.eq(id))
                .add(duplicate_suggestion::Column::CustomerB.eq(id)),
        )
        .count(&txn)
        .await?;
    removed.events = delete_events(&txn, workspace_id, id).await?;

    // Customers merged into this one are the same person: their rows (the profile as it
    // was before the merge) and the events about them go too. Left alone they would come
    // back as customers when the survivor's row goes (its foreign key sets their
    // `merged_into` to NULL); their merge records go with the survivor's row.
    let merged = merged_chain(&txn, workspace_id, id).await?;
    for tombstone in &merged {
        removed.events += delete_events(&txn, workspace_id, *tombstone).await?;
        let (items, tombstones) = tombstone_items(&txn, workspace_id, *tombstone, &hasher).await?;
        removed.interactions += items;
        removed.tombstones += tombstones;
    }
    delete_customers(&txn, workspace_id, &merged).await?;

    // The rows: deals of no organization, then the customer, whose foreign keys take
    // the rest (identities and their links, contact points, tags, interactions, their
    // conversations, notes, duplicate suggestions, spam marks; deals of an organization
    // are unlinked).
    if !gone_deals.is_empty() {
        deal::Entity::delete_many()
            .filter(deal::Column::WorkspaceId.eq(workspace_id))
            .filter(deal::Column::Id.is_in(gone_deals))
            .exec(&txn)
            .await?;
    }
    customer::Entity::delete_many()
        .filter(customer::Column::WorkspaceId.eq(workspace_id))
        .filter(customer::Column::Id.eq(id))
        .exec(&txn)
        .await?;
    event::append(
        &txn,
        workspace_id,
        Event::CustomerErased(&event::Erased { id, moved }),
    )
    .await?;
    finish(&txn, id, &removed).await?;
    txn.commit().await?;
    Ok(removed)
}

/// Deletes a customer (admin role) and everything that is only theirs (identities,
/// contact points, conversations, interactions, notes); deals stay, unlinked. Their items
/// are tombstoned, so a re-pull of the source does not store them again; the person is
/// not (their next item makes a new customer). The `erasure` row records the deletion.
pub async fn delete(db: &impl TransactionTrait, caller: &Caller, id: CustomerId) -> Result<()> {
    caller.require(Role::Admin, "deleting a customer")?;
    let workspace_id = caller.workspace_id;
    let txn = super::begin_write(db).await?;
    settle(&txn, caller, id).await?;
    let hasher = Hasher::new(&super::secret::key(&txn, KEY).await?, workspace_id)?;
    record(&txn, caller, id, "deleted").await?;
    let (mut items, mut tombstones) = tombstone_items(&txn, workspace_id, id, &hasher).await?;
    // The customers merged into this one go with it (see `erase`).
    let merged = merged_chain(&txn, workspace_id, id).await?;
    for tombstone in &merged {
        let (more_items, more_tombstones) =
            tombstone_items(&txn, workspace_id, *tombstone, &hasher).await?;
        items += more_items;
        tombstones += more_tombstones;
    }
    delete_customers(&txn, workspace_id, &merged).await?;
    customer::Entity::delete_many()
        .filter(customer::Column::WorkspaceId.eq(workspace_id))
        .filter(customer::Column::Id.eq(id))
        .exec(&txn)
        .await?;
    event::append(
        &txn,
        workspace_id,
        Event::CustomerDeleted(&event::Deleted { id }),
    )
    .await?;
    let removed = Removed {
        interactions: items,
        tombstones,
        ..Removed::default()
    };
    finish(&txn, id, &removed).await?;
    txn.commit().await?;
    Ok(())
}

/// Checks `id` names a live customer of the caller's workspace and, on PostgreSQL, takes
/// the workspace's sources' row locks (in id order) until the erasure commits. A batch
/// holds its source's lock from before it reads the tombstones until it commits, so a
/// batch either committed before (its rows are erased here) or reads the tombstones
/// after: none stores the person again behind the erasure's back. SQLite's writers
/// take turns already.
///
/// `CONFLICT` for a customer merged into another: its tombstone holds nothing, the
/// person's rows are the survivor's, and erasing the empty row would look done.
async fn settle(
    txn: &impl ConnectionTrait,
    caller: &Caller,
    id: CustomerId,
) -> Result<customer::Model> {
    let model = super::customer::get_live(txn, caller, id).await?;
    if txn.get_database_backend() == sea_orm::DatabaseBackend::Postgres {
        let _: Vec<SourceId> = super::scoped::<entity::source::Entity>(caller.workspace_id)
            .select_only()
            .column(entity::source::Column::Id)
            .order_by_asc(entity::source::Column::Id)
            .lock_exclusive()
            .into_tuple()
            .all(txn)
            .await?;
    }
    Ok(model)
}

/// The customers merged into `id`, directly or through a chain of merges (their rows are
/// tombstones of the same person), at most 32 merges deep as `merge::resolve` follows them.
async fn merged_chain(
    txn: &impl ConnectionTrait,
    workspace_id: WorkspaceId,
    id: CustomerId,
) -> Result<Vec<CustomerId>> {
    let mut all = Vec::new();
    let mut frontier = vec![id];
    for _ in 0..32 {
        let next: Vec<CustomerId> = super::scoped::<customer::Entity>(workspace_id)
            .select_only()
            .column(customer::Column::Id)
            .filter(customer::Column::MergedInto.is_in(frontier))
            .into_tuple()
            .all(txn)
            .await?;
        if next.is_empty() {
            break;
        }
        all.extend(next.iter().copied());
        frontier = next;
    }
    Ok(all)
}

async fn delete_customers(
    txn: &impl ConnectionTrait,
    workspace_id: WorkspaceId,
    ids: &[CustomerId],
) -> Result<()> {
    if !ids.is_empty() {
        customer::Entity::delete_many()
            .filter(customer::Column::WorkspaceId.eq(workspace_id))
            .filter(customer::Column::Id.is_in(ids.iter().copied()))
            .exec(txn)
            .await?;
    }
    Ok(())
}

/// The audit row, written first: the tombstones reference it.
async fn record(
    txn: &impl ConnectionTrait,
    caller: &Caller,
    id: CustomerId,
    kind: &str,
) -> Result<()> {
    let actor = Actor::of(caller);
    let row = erasure::ActiveModel {
        customer_id: Set(id),
        workspace_id: Set(caller.workspace_id),
        kind: Set(kind.to_owned()),
        actor_key_id: Set(actor.key_id),
        actor_user_id: Set(actor.user_id),
        actor_name: Set(actor.name),
        counts: Set(json!({})),
        created_at: Set(super::now()),
    };
    erasure::Entity::insert(row)
        .exec_without_returning(txn)
        .await?;
    Ok(())
}

/// The audit row's counts, once known.
async fn finish(txn: &impl ConnectionTrait, id: CustomerId, removed: &Removed) -> Result<()> {
    let counts = serde_json::to_value(removed)
        .map_err(|err| Error::Internal(format!("erasure counts did not serialise: {err}")))?;
    erasure::Entity::update_many()
        .col_expr(erasure::Column::Counts, Expr::value(counts))
        .filter(erasure::Column::CustomerId.eq(id))
        .exec(txn)
        .await?;
    Ok(())
}

/// Tombstones every item filed under `id` (its channel and external id), a page at a
/// time so a customer with a million items costs a page of memory; returns how many
/// interactions there were and how many tombstones were new.
async fn tombstone_items(
    txn: &impl ConnectionTrait,
    workspace_id: WorkspaceId,
    id: CustomerId,
    hasher: &Hasher,
) -> Result<(u64, u64)> {
    let (mut items, mut written) = (0, 0);
    let mut after: Option<InteractionId> = None;
    loop {
        let mut page = super::scoped::<interaction::Entity>(workspace_id)
            .select_only()
            .column(interaction::Column::Id)
            .column(interaction::Column::SourceId)
            .column(interaction::Column::ExternalId)
            .filter(interaction::Column::CustomerId.eq(id))
            .order_by_asc(interaction::Column::Id)
            .limit(PAGE);
        if let Some(last) = after {
            page = page.filter(interaction::Column::Id.gt(last));
        }
        let rows: Vec<(InteractionId, Option<SourceId>, Option<String>)> =
            page.into_tuple().all(txn).await?;
        let Some((last, _, _)) = rows.last() else {
            break;
        };
        after = Some(*last);
        items += rows.len() as u64;
        let hashes = rows
            .iter()
            .filter_map(|(_, source, external_id)| {
                Some((Mark::Item, hasher.item((*source)?, external_id.as_deref()?)))
            })
            .collect();
        written += insert_tombstones(txn, workspace_id, id, hashes).await?;
        if (rows.len() as u64) < PAGE {
            break;
        }
    }
    Ok((items, written))
}

/// Writes tombstones (one per workspace and hash: an item tombstoned before stays with
/// its first erasure); returns how many were new.
async fn insert_tombstones(
    txn: &impl ConnectionTrait,
    workspace_id: WorkspaceId,
    id: CustomerId,
    hashes: Vec<(Mark, String)>,
) -> Result<u64> {
    let now = super::now();
    let mut written = 0;
    for chunk in hashes.chunks(PAGE as usize) {
        let rows = chunk
            .iter()
            .map(|(mark, hash)| erasure_tombstone::ActiveModel {
                workspace_id: Set(workspace_id),
                hash: Set(hash.clone()),
                kind: Set(mark.as_str().to_owned()),
                customer_id: Set(id),
                created_at: Set(now),
            });
        let result = erasure_tombstone::Entity::insert_many(rows)
            .on_conflict(
                OnConflict::columns([
                    erasure_tombstone::Column::WorkspaceId,
                    erasure_tombstone::Column::Hash,
                ])
                .do_nothing()
                .to_owned(),
            )
            .exec_without_returning(txn)
            .await?;
        written += result;
    }
    Ok(written)
}

/// Deletes the events about the customer and the rows erased with them (their
/// interactions, the conversations still theirs, their notes, their deals of no
/// organization): one statement over the workspace's part of the log.
async fn delete_events(
    txn: &impl ConnectionTrait,
    workspace_id: WorkspaceId,
    id: CustomerId,
) -> Result<u64> {
    use entity::event::{Column, Entity};
    let of = |table: sea_orm::sea_query::Alias, extra: Option<&str>| {
        let mut select = Query::select();
        select
            .column(sea_orm::sea_query::Alias::new("id"))
            .from(table)
            .and_where(Expr::col(sea_orm::sea_query::Alias::new("workspace_id")).eq(workspace_id))
            .and_where(Expr::col(sea_orm::sea_query::Alias::new("customer_id")).eq(id));
        if let Some(column) = extra {
            select.and_where(Expr::col(sea_orm::sea_query::Alias::new(column)).is_null());
        }
        select.to_owned()
    };
    let alias = sea_orm::sea_query::Alias::new;
    let result = Entity::delete_many()
        .filter(Column::WorkspaceId.eq(workspace_id))
        .filter(
            Condition::any()
                .add(Column::EntityId.eq(id.uuid()))
                .add(Column::EntityId.in_subquery(of(alias("interaction"), None)))
                .add(Column::EntityId.in_subquery(of(alias("conversation"), None)))
                .add(Column::EntityId.in_subquery(of(alias("note"), None)))
                .add(Column::EntityId.in_subquery(of(alias("deal"), Some("organization_id")))),
        )
        .exec(txn)
        .await?;
    Ok(result.rows_affected)
}

// ---------------------------------------------------------------------------------------
// Export

/// The format of an export, stated in the document.
pub const EXPORT_FORMAT: &str = "rapport.customer-export/1";

/// Everything held about a customer as one JSON document (admin role; `NOT_FOUND` for
/// an id of no customer of the workspace), read in one transaction:
/// `customer` (the profile row), `organization`, `contact_points`, `identities` (each with
/// the `links` its profile showed), `tags`, `notes`, `deals`, `duplicate_suggestions`
/// (the pairs naming them, with the reasons), `conversations` (every conversation holding
/// one of their interactions, each with its `messages`: the interactions filed under the
/// person, whole, raw platform payload included), `interactions` (theirs that belong
/// to no conversation), and `merges` (the merge records naming them, as survivor or
/// merged, with the rows as they were before each merge). Each interaction appears once.
///
/// The document is built in memory, rows read a page at a time: its size is what the
/// person's rows weigh (with raw payloads about 2 KiB an interaction; 100,000
/// interactions make about 200 MB), and it must be read within the request's time
/// budget.
pub async fn export(db: &impl TransactionTrait, caller: &Caller, id: CustomerId) -> Result<Value> {
    caller.require(Role::Admin, "exporting a customer")?;
    let workspace_id = caller.workspace_id;
    let txn = db.begin().await?;
    let customer = super::find_scoped(&txn, workspace_id, id).await?;
    let organization = match customer.organization_id {
        Some(org) => Some(super::find_scoped(&txn, workspace_id, org).await?),
        None => None,
    };
    let contact_points = super::scoped::<contact_point::Entity>(workspace_id)
        .filter(contact_point::Column::CustomerId.eq(id))
        .order_by_asc(contact_point::Column::CreatedAt)
        .order_by_asc(contact_point::Column::Id)
        .all(&txn)
        .await?;
    let identities = super::scoped::<identity::Entity>(workspace_id)
        .filter(identity::Column::CustomerId.eq(id))
        .order_by_asc(identity::Column::CreatedAt)
        .order_by_asc(identity::Column::Id)
        .all(&txn)
        .await?;
    let identity_ids: Vec<IdentityId> = identities.iter().map(|row| row.id).collect();
    let mut links: HashMap<IdentityId, Vec<Value>> = HashMap::new();
    for chunk in identity_ids.chunks(PAGE as usize) {
        for link in identity_link::Entity::find()
            .filter(identity_link::Column::WorkspaceId.eq(workspace_id))
            .filter(identity_link::Column::IdentityId.is_in(chunk.iter().copied()))
            .order_by_asc(identity_link::Column::Key)
            .all(&txn)
            .await?
        {
            links
                .entry(link.identity_id)
                .or_default()
                .push(to_value(&link)?);
        }
    }
    let identities = identities
        .iter()
        .map(|row| {
            let mut value = to_value(row)?;
            value["links"] = Value::Array(links.remove(&row.id).unwrap_or_default());
            Ok(value)
        })
        .collect::<Result<Vec<Value>>>()?;
    let tags = tag::Entity::find()
        .filter(tag::Column::WorkspaceId.eq(workspace_id))
        .filter(
            tag::Column::Id.in_subquery(
                Query::select()
                    .column(customer_tag::Column::TagId)
                    .from(customer_tag::Entity)
                    .and_where(customer_tag::Column::CustomerId.eq(id))
                    .to_owned(),
            ),
        )
        .order_by_asc(tag::Column::Name)
        .all(&txn)
        .await?;
    let notes = super::scoped::<note::Entity>(workspace_id)
        .filter(note::Column::CustomerId.eq(id))
        .order_by_asc(note::Column::CreatedAt)
        .order_by_asc(note::Column::Id)
        .all(&txn)
        .await?;
    let deals = super::scoped::<deal::Entity>(workspace_id)
        .filter(deal::Column::CustomerId.eq(id))
        .order_by_asc(deal::Column::CreatedAt)
        .order_by_asc(deal::Column::Id)
        .all(&txn)
        .await?;
    let suggestions = super::scoped::<duplicate_suggestion::Entity>(workspace_id)
        .filter(
            Condition::any()
                .add(duplicate_suggestion::Column::CustomerA.eq(id))
                .add(duplicate_suggestion::Column::CustomerB.eq(id)),
        )
        .order_by_asc(duplicate_suggestion::Column::CreatedAt)
        .order_by_asc(duplicate_suggestion::Column::Id)
        .all(&txn)
        .await?
        .into_iter()
        .map(|row| {
            let mut value = to_value(&row)?;
            value["reasons"] = serde_json::from_str(&row.reasons).unwrap_or(Value::Null);
            Ok(value)
        })
        .collect::<Result<Vec<Value>>>()?;

    // Interactions a page at a time, grouped by conversation.
    let mut by_conversation: BTreeMap<ConversationId, Vec<Value>> = BTreeMap::new();
    let mut loose = Vec::new();
    let mut after: Option<InteractionId> = None;
    loop {
        let mut page = super::scoped::<interaction::Entity>(workspace_id)
            .filter(interaction::Column::CustomerId.eq(id))
            .order_by_asc(interaction::Column::Id)
            .limit(PAGE);
        if let Some(last) = after {
            page = page.filter(interaction::Column::Id.gt(last));
        }
        let rows = page.all(&txn).await?;
        let Some(last) = rows.last() else { break };
        after = Some(last.id);
        let full = (rows.len() as u64) == PAGE;
        for row in rows {
            let value = to_value(&row)?;
            match row.conversation_id {
                Some(conversation) => by_conversation.entry(conversation).or_default().push(value),
                None => loose.push(value),
            }
        }
        if !full {
            break;
        }
    }
    let mut wanted: BTreeSet<ConversationId> = by_conversation.keys().copied().collect();
    wanted.extend(
        super::scoped::<conversation::Entity>(workspace_id)
            .select_only()
            .column(conversation::Column::Id)
            .filter(conversation::Column::CustomerId.eq(id))
            .into_tuple::<ConversationId>()
            .all(&txn)
            .await?,
    );
    let wanted: Vec<ConversationId> = wanted.into_iter().collect();
    let mut conversations = Vec::with_capacity(wanted.len());
    for chunk in wanted.chunks(PAGE as usize) {
        for row in super::scoped::<conversation::Entity>(workspace_id)
            .filter(conversation::Column::Id.is_in(chunk.iter().copied()))
            .order_by_asc(conversation::Column::Id)
            .all(&txn)
            .await?
        {
            let mut value = to_value(&row)?;
            let mut messages = by_conversation.remove(&row.id).unwrap_or_default();
            messages.sort_by(|a, b| {
                (a["occurred_at"].as_str(), a["id"].as_str())
                    .cmp(&(b["occurred_at"].as_str(), b["id"].as_str()))
            });
            value["messages"] = Value::Array(messages);
            conversations.push(value);
        }
    }
    // The merges this person was part of, with the rows as they were before each.
    let merges = super::merge::history(&txn, workspace_id, id).await?;
    txn.commit().await?;
    Ok(json!({
        "format": EXPORT_FORMAT,
        "exported_at": super::now(),
        "customer": to_value(&customer)?,
        "organization": organization.as_ref().map(to_value).transpose()?,
        "contact_points": contact_points.iter().map(to_value).collect::<Result<Vec<_>>>()?,
        "identities": identities,
        "tags": tags.iter().map(to_value).collect::<Result<Vec<_>>>()?,
        "notes": notes.iter().map(to_value).collect::<Result<Vec<_>>>()?,
        "deals": deals.iter().map(to_value).collect::<Result<Vec<_>>>()?,
        "duplicate_suggestions": suggestions,
        "conversations": conversations,
        "interactions": loose,
        "merges": merges.iter().map(to_value).collect::<Result<Vec<_>>>()?,
    }))
}

fn to_value(row: &impl serde::Serialize) -> Result<Value> {
    serde_json::to_value(row)
        .map_err(|err| Error::Internal(format!("an exported row did not serialise: {err}")))
}
