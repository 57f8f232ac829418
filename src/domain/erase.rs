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
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
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
/// messages stays, handed to the first of the others, without the person's messages, our
/// replies to them, or anything else that names them ([`keep_shared`]): the same holds
/// for every conversation filed under someone else that they wrote in. The search
/// indexes follow the `customer.erased` event written here (ids only: both delete the
/// customer and every interaction filed under them, then write again, or delete, the
/// interactions of the conversations kept that changed; the event is
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
    record(&txn, caller, id, "erased").await?;

    // Customers merged into this one are the same person (see below).
    let merged = merged_chain(&txn, workspace_id, id).await?;
    let people: Vec<CustomerId> = std::iter::once(id).chain(merged.iter().copied()).collect();

    // Conversations that others wrote in too stay, without anything that names them;
    // read what does before their rows go.
    let traces = Traces::of(&txn, workspace_id, &people).await?;
    let shared = keep_shared(&txn, workspace_id, id, &people, &traces).await?;
    removed.conversations_kept = shared.kept;
    let moved = shared.touched;

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
    // An address their profiles showed (Mastodon's "Mail" field) is theirs as much as
    // a contact point: a web form from it would bring them back.
    let identity_ids: Vec<IdentityId> = identities.iter().map(|row| row.id).collect();
    for chunk in identity_ids.chunks(PAGE as usize) {
        let keys: Vec<String> = identity_link::Entity::find()
            .select_only()
            .column(identity_link::Column::Key)
            .filter(identity_link::Column::WorkspaceId.eq(workspace_id))
            .filter(identity_link::Column::IdentityId.is_in(chunk.iter().copied()))
            .into_tuple()
            .all(&txn)
            .await?;
        for key in keys {
            // Web addresses are keyed `https://…`; an e-mail address as a contact
            // point normalises it.
            if key.contains("://") || !key.contains('@') {
                continue;
            }
            if let Ok((_, normalized)) =
                super::contact_point::normalize(ContactPointKind::Email, &key)
            {
                if let Some(hash) = hasher.point(ContactPointKind::Email, &normalized) {
                    hashes.push((Mark::Email, hash));
                }
            }
        }
    }
    hashes.sort();
    hashes.dedup();
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
// Shared conversations

/// What names the person in text others wrote: their names (whole and in parts), handles
/// (with and without the instance, as platforms write mentions), platform ids, profile
/// addresses, the links their profiles showed, e-mail addresses and phone numbers. Read
/// before their rows go; longest first, so a handle goes whole before its local part.
struct Traces {
    words: Vec<Vec<char>>,
}

/// What a trace of the person in another row's text becomes.
const ERASED: &str = "[erased]";

impl Traces {
    /// The traces of `people` (the customer erased and those merged into it). Names are
    /// also taken in parts (a family name alone names them too); values under three
    /// characters are left out, as they would match ordinary words.
    async fn of(
        txn: &impl ConnectionTrait,
        workspace_id: WorkspaceId,
        people: &[CustomerId],
    ) -> Result<Traces> {
        let mut words: BTreeSet<String> = BTreeSet::new();
        let mut add = |value: &str| {
            let value = value.trim();
            if value.chars().count() >= 3 {
                words.insert(value.to_lowercase());
            }
        };
        let customers = super::scoped::<customer::Entity>(workspace_id)
            .filter(customer::Column::Id.is_in(people.iter().copied()))
            .all(txn)
            .await?;
        for row in &customers {
            for name in [
                Some(&row.display_name),
                row.given_name.as_ref(),
                row.family_name.as_ref(),
            ]
            .into_iter()
            .flatten()
            {
                add(name);
                name.split(|c: char| c.is_whitespace() || c == '-')
                    .for_each(&mut add);
            }
        }
        let identities = super::scoped::<identity::Entity>(workspace_id)
            .filter(identity::Column::CustomerId.is_in(people.iter().copied()))
            .all(txn)
            .await?;
        for row in &identities {
            add(&row.platform_id);
            for value in [&row.profile_url, &row.profile_key, &row.avatar_url]
                .into_iter()
                .flatten()
            {
                add(value);
            }
            if let Some(name) = &row.display_name {
                add(name);
                name.split(|c: char| c.is_whitespace() || c == '-')
                    .for_each(&mut add);
            }
            if let Some(handle) = &row.handle {
                // `@name@instance` as stored; a mention on the same instance, and the
                // plain text of one, is `@name` or `name`.
                let bare = handle.trim_start_matches('@');
                add(handle);
                add(bare);
                if let Some((local, _)) = bare.split_once('@') {
                    add(&format!("@{local}"));
                    add(local);
                }
            }
        }
        let identity_ids: Vec<IdentityId> = identities.iter().map(|row| row.id).collect();
        for chunk in identity_ids.chunks(PAGE as usize) {
            for link in identity_link::Entity::find()
                .filter(identity_link::Column::WorkspaceId.eq(workspace_id))
                .filter(identity_link::Column::IdentityId.is_in(chunk.iter().copied()))
                .all(txn)
                .await?
            {
                add(&link.url);
                add(&link.key);
            }
        }
        for row in super::scoped::<contact_point::Entity>(workspace_id)
            .filter(contact_point::Column::CustomerId.is_in(people.iter().copied()))
            .all(txn)
            .await?
        {
            add(&row.value);
            add(&row.normalized);
            add(row.normalized.trim_start_matches('+'));
        }
        Ok(Traces::new(words))
    }

    /// The traces `words` (lower case), longest first.
    fn new(words: BTreeSet<String>) -> Traces {
        let mut words: Vec<Vec<char>> = words.into_iter().map(|w| w.chars().collect()).collect();
        words.sort_by_key(|word| std::cmp::Reverse(word.len()));
        Traces { words }
    }

    /// `text` with every trace of the person, compared without case and standing as a
    /// word of its own (not inside a longer one), replaced by [`ERASED`].
    fn scrub(&self, text: &str) -> String {
        let chars: Vec<char> = text.chars().collect();
        let mut out = String::with_capacity(text.len());
        let mut at = 0;
        'next: while at < chars.len() {
            let starts_word = at == 0 || !chars[at - 1].is_alphanumeric();
            if starts_word {
                for word in &self.words {
                    let end = at + word.len();
                    if end <= chars.len()
                        && chars[at..end]
                            .iter()
                            .zip(word)
                            .all(|(c, w)| c.to_lowercase().eq(w.to_lowercase()))
                        && chars.get(end).is_none_or(|c| !c.is_alphanumeric())
                    {
                        out.push_str(ERASED);
                        at = end;
                        continue 'next;
                    }
                }
            }
            out.push(chars[at]);
            at += 1;
        }
        out
    }

    /// Whether `text` holds a trace of the person.
    fn names_them(&self, text: &str) -> bool {
        self.scrub(text) != text
    }
}

/// What the conversations the person wrote in became: the interactions touched (our
/// replies handed to another customer, the rows scrubbed, our replies to the person
/// filed under them to go with their rows), and how many of their conversations stayed.
#[derive(Default)]
struct Shared {
    touched: Vec<InteractionId>,
    kept: u64,
}

/// Keeps the conversations the person shares with others without anything that names
/// them, before their own rows go (`people`: the customer erased and those merged into
/// it; `id` the one erased). In every conversation they wrote in or that is filed under
/// them and holds someone else's message:
/// - our replies *to them* (the item they answer is theirs: their text mentions the
///   person and may be a saved reply filled with their name) are filed under `id`, so
///   they are tombstoned and go with the person's rows; our other replies filed under
///   them go to the conversation's new customer, the first other author;
/// - the remaining interactions lose their `raw` and `html` (others' payloads name the
///   person: Mastodon's `in_reply_to_account_id` and `mentions`, Bluesky's reply URIs
///   holding their DID), but for our replies sent from Rapport, whose `raw` says only
///   who sent them and which (not their) item they answer; the person's traces in
///   `text` and `subject` become "[erased]";
/// - the conversation's subject is the earliest remaining message's, and a thread key
///   naming them (their item's id, a URI with their DID) is cleared: later replies
///   still find the conversation through the item they answer;
/// - the events holding those rows as they were go: a changed conversation's
///   `conversation.*` events (its status and assignment history with them: the
///   service metrics no longer count it) and the changed interactions'
///   `interaction.delivery_changed`; an `interaction.created` of the form that held
///   the whole row keeps only what the current form names. One `conversation.updated`
///   then says what each changed conversation is now. A conversation of someone else
///   whose row names nothing of theirs keeps its events.
///
/// The changed interactions are listed in `customer.erased` so both search indexes
/// write them again (or delete them, for the replies that went).
async fn keep_shared(
    txn: &impl ConnectionTrait,
    workspace_id: WorkspaceId,
    id: CustomerId,
    people: &[CustomerId],
    traces: &Traces,
) -> Result<Shared> {
    let mut candidates: BTreeSet<ConversationId> =
        super::scoped::<interaction::Entity>(workspace_id)
            .select_only()
            .column(interaction::Column::ConversationId)
            .distinct()
            .filter(interaction::Column::CustomerId.is_in(people.iter().copied()))
            .filter(interaction::Column::ConversationId.is_not_null())
            .into_tuple::<Option<ConversationId>>()
            .all(txn)
            .await?
            .into_iter()
            .flatten()
            .collect();
    candidates.extend(
        super::scoped::<conversation::Entity>(workspace_id)
            .select_only()
            .column(conversation::Column::Id)
            .filter(conversation::Column::CustomerId.is_in(people.iter().copied()))
            .into_tuple::<ConversationId>()
            .all(txn)
            .await?,
    );
    let candidates: Vec<ConversationId> = candidates.into_iter().collect();
    let mut shared = Shared::default();
    let mut touched_conversations = Vec::new();
    // A hundred conversations at a time: their rows are read whole (raw payloads too),
    // and only for those holding a row that is not theirs (the rest go whole).
    for chunk in candidates.chunks(100) {
        let chunk: Vec<ConversationId> = super::scoped::<interaction::Entity>(workspace_id)
            .select_only()
            .column(interaction::Column::ConversationId)
            .distinct()
            .filter(interaction::Column::ConversationId.is_in(chunk.iter().copied()))
            .filter(
                Condition::any()
                    .add(interaction::Column::CustomerId.is_null())
                    .add(interaction::Column::CustomerId.is_not_in(people.iter().copied())),
            )
            .into_tuple::<Option<ConversationId>>()
            .all(txn)
            .await?
            .into_iter()
            .flatten()
            .collect();
        if chunk.is_empty() {
            continue;
        }
        let conversations = super::scoped::<conversation::Entity>(workspace_id)
            .filter(conversation::Column::Id.is_in(chunk.iter().copied()))
            .order_by_asc(conversation::Column::Id)
            .all(txn)
            .await?;
        let mut rows: HashMap<ConversationId, Vec<interaction::Model>> = HashMap::new();
        for row in super::scoped::<interaction::Entity>(workspace_id)
            .filter(interaction::Column::ConversationId.is_in(chunk.iter().copied()))
            .order_by_asc(interaction::Column::OccurredAt)
            .order_by_asc(interaction::Column::Id)
            .all(txn)
            .await?
        {
            if let Some(conversation) = row.conversation_id {
                rows.entry(conversation).or_default().push(row);
            }
        }
        for conversation in conversations {
            let rows = rows.remove(&conversation.id).unwrap_or_default();
            let customer = if conversation
                .customer_id
                .is_some_and(|customer| people.contains(&customer))
            {
                // Theirs: kept under the first other author when there is one, else it
                // goes whole with their rows.
                let other = rows
                    .iter()
                    .filter_map(|row| row.customer_id)
                    .find(|customer| !people.contains(customer));
                let Some(other) = other else { continue };
                shared.kept += 1;
                Some(other)
            } else {
                conversation.customer_id
            };
            let thread = Thread {
                id,
                people,
                traces,
                conversation: &conversation,
                customer,
                rows: &rows,
            };
            let (rows, changed) = thread.scrub(txn, workspace_id).await?;
            shared.touched.extend(rows);
            if changed {
                touched_conversations.push(conversation.id);
            }
        }
    }
    if touched_conversations.is_empty() && shared.touched.is_empty() {
        return Ok(shared);
    }
    forget_events(txn, workspace_id, &touched_conversations, &shared.touched).await?;
    for chunk in touched_conversations.chunks(PAGE as usize) {
        let rows = super::scoped::<conversation::Entity>(workspace_id)
            .filter(conversation::Column::Id.is_in(chunk.iter().copied()))
            .order_by_asc(conversation::Column::Id)
            .all(txn)
            .await?;
        event::append_many(
            txn,
            workspace_id,
            rows.iter().map(Event::ConversationUpdated),
        )
        .await?;
    }
    Ok(shared)
}

/// One conversation the person shares with others, as [`keep_shared`] leaves it.
struct Thread<'a> {
    /// The customer erased.
    id: CustomerId,
    /// The customer erased and those merged into it.
    people: &'a [CustomerId],
    traces: &'a Traces,
    conversation: &'a conversation::Model,
    /// Whom the conversation is filed under afterwards.
    customer: Option<CustomerId>,
    /// Its interactions, oldest first.
    rows: &'a [interaction::Model],
}

impl Thread<'_> {
    fn theirs(&self, row: &interaction::Model) -> bool {
        row.customer_id
            .is_some_and(|customer| self.people.contains(&customer))
    }

    /// Whether our reply `row` answers one of the person's items: by our id of it (a
    /// reply sent from Rapport), or by its platform id (ours, Mastodon's
    /// `in_reply_to_id`, Bluesky's `reply.parent.uri`, as our own posts are pulled).
    fn answers_them(
        row: &interaction::Model,
        ids: &HashSet<String>,
        external_ids: &HashSet<&str>,
    ) -> bool {
        let Some(raw) = &row.raw else { return false };
        let at = |pointer: &str| raw.pointer(pointer).and_then(Value::as_str);
        at("/in_reply_to").is_some_and(|answered| ids.contains(answered))
            || [
                "/in_reply_to_external_id",
                "/in_reply_to_id",
                "/record/reply/parent/uri",
            ]
            .into_iter()
            .filter_map(at)
            .any(|answered| external_ids.contains(answered))
    }

    /// Writes the conversation and its rows as [`keep_shared`] says; returns the
    /// interactions changed (our replies to them included) and whether the
    /// conversation's row changed (its customer, subject or thread key).
    async fn scrub(
        &self,
        txn: &impl ConnectionTrait,
        workspace_id: WorkspaceId,
    ) -> Result<(Vec<InteractionId>, bool)> {
        let their_items: Vec<&interaction::Model> = self
            .rows
            .iter()
            .filter(|row| row.direction == Direction::Inbound && self.theirs(row))
            .collect();
        let ids: HashSet<String> = their_items
            .iter()
            .map(|row| crate::ids::encode(row.id))
            .collect();
        let external_ids: HashSet<&str> = their_items
            .iter()
            .filter_map(|row| row.external_id.as_deref())
            .collect();
        let (mut to_them, mut handed, mut left) = (Vec::new(), Vec::new(), Vec::new());
        for row in self.rows {
            if row.direction == Direction::Outbound && Self::answers_them(row, &ids, &external_ids)
            {
                to_them.push(row);
            } else if !self.theirs(row) {
                left.push(row);
            } else if row.direction == Direction::Outbound {
                handed.push(row);
                left.push(row);
            }
        }
        let refile = |rows: &[&interaction::Model], customer: Option<CustomerId>| {
            let ids: Vec<InteractionId> = rows.iter().map(|row| row.id).collect();
            async move {
                if !ids.is_empty() {
                    interaction::Entity::update_many()
                        .col_expr(interaction::Column::CustomerId, Expr::value(customer))
                        .filter(interaction::Column::WorkspaceId.eq(workspace_id))
                        .filter(interaction::Column::Id.is_in(ids))
                        .exec(txn)
                        .await?;
                }
                Ok::<_, Error>(())
            }
        };
        // Our replies to them go with their rows (tombstoned, their events deleted).
        refile(&to_them, Some(self.id)).await?;
        refile(&handed, self.customer).await?;
        let mut changed: BTreeSet<InteractionId> = handed.iter().map(|row| row.id).collect();
        let payloads: Vec<InteractionId> = left
            .iter()
            .filter(|row| {
                row.delivery_status.is_none() && (row.raw.is_some() || row.html.is_some())
            })
            .map(|row| row.id)
            .collect();
        changed.extend(payloads.iter().copied());
        for chunk in payloads.chunks(PAGE as usize) {
            interaction::Entity::update_many()
                .col_expr(
                    interaction::Column::Raw,
                    Expr::value(sea_orm::Value::Json(None)),
                )
                .col_expr(
                    interaction::Column::Html,
                    Expr::value(Option::<String>::None),
                )
                .filter(interaction::Column::WorkspaceId.eq(workspace_id))
                .filter(interaction::Column::Id.is_in(chunk.iter().copied()))
                .exec(txn)
                .await?;
        }
        let mut subject = None;
        for (n, row) in left.iter().enumerate() {
            let text = self.traces.scrub(&row.text);
            let row_subject = row.subject.as_deref().map(|s| self.traces.scrub(s));
            if n == 0 {
                subject = row_subject.clone();
            }
            if text != row.text || row_subject != row.subject {
                changed.insert(row.id);
                interaction::Entity::update_many()
                    .col_expr(interaction::Column::Text, Expr::value(text))
                    .col_expr(interaction::Column::Subject, Expr::value(row_subject))
                    .filter(interaction::Column::WorkspaceId.eq(workspace_id))
                    .filter(interaction::Column::Id.eq(row.id))
                    .exec(txn)
                    .await?;
            }
        }
        let thread_key = self.conversation.thread_key.clone().filter(|key| {
            !external_ids.contains(key.as_str())
                && !to_them
                    .iter()
                    .any(|row| row.external_id.as_ref() == Some(key))
                && !self.traces.names_them(key)
        });
        let row = self.conversation;
        let renamed = self.customer != row.customer_id
            || subject != row.subject
            || thread_key != row.thread_key;
        if renamed {
            conversation::Entity::update_many()
                .col_expr(conversation::Column::CustomerId, Expr::value(self.customer))
                .col_expr(conversation::Column::Subject, Expr::value(subject))
                .col_expr(conversation::Column::ThreadKey, Expr::value(thread_key))
                .col_expr(conversation::Column::UpdatedAt, Expr::value(super::now()))
                .filter(conversation::Column::WorkspaceId.eq(workspace_id))
                .filter(conversation::Column::Id.eq(row.id))
                .exec(txn)
                .await?;
        }
        changed.extend(to_them.iter().map(|row| row.id));
        Ok((changed.into_iter().collect(), renamed))
    }
}

/// The fields of an `interaction.created` payload since it names its row rather than
/// holding it (`InteractionRef` in [`super::event`]): ids, channel, direction, kind, time.
const INTERACTION_REF: [&str; 9] = [
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

/// The events of conversations and interactions [`keep_shared`] touched that hold their
/// rows as they were: every `conversation.*` of the conversations and the
/// `interaction.delivery_changed` of the interactions go; an `interaction.created` of
/// the old form (the whole row) keeps what the current form names.
async fn forget_events(
    txn: &impl ConnectionTrait,
    workspace_id: WorkspaceId,
    conversations: &[ConversationId],
    interactions: &[InteractionId],
) -> Result<()> {
    use entity::event::{Column, Entity};
    for chunk in conversations.chunks(PAGE as usize) {
        Entity::delete_many()
            .filter(Column::WorkspaceId.eq(workspace_id))
            .filter(Column::Kind.starts_with("conversation."))
            .filter(Column::EntityId.is_in(chunk.iter().map(|id| id.uuid())))
            .exec(txn)
            .await?;
    }
    for chunk in interactions.chunks(PAGE as usize) {
        Entity::delete_many()
            .filter(Column::WorkspaceId.eq(workspace_id))
            .filter(Column::Kind.eq(event::EventKind::InteractionDeliveryChanged.as_str()))
            .filter(Column::EntityId.is_in(chunk.iter().map(|id| id.uuid())))
            .exec(txn)
            .await?;
        let created: Vec<(i64, Value)> = super::scoped::<Entity>(workspace_id)
            .select_only()
            .column(Column::Seq)
            .column(Column::Payload)
            .filter(Column::Kind.eq(event::EventKind::InteractionCreated.as_str()))
            .filter(Column::EntityId.is_in(chunk.iter().map(|id| id.uuid())))
            .into_tuple()
            .all(txn)
            .await?;
        for (seq, payload) in created {
            let Value::Object(fields) = payload else {
                continue;
            };
            if !["text", "html", "raw", "subject"]
                .iter()
                .any(|field| fields.contains_key(*field))
            {
                continue;
            }
            let kept: serde_json::Map<String, Value> = fields
                .into_iter()
                .filter(|(field, _)| INTERACTION_REF.contains(&field.as_str()))
                .collect();
            Entity::update_many()
                .col_expr(Column::Payload, Expr::value(Value::Object(kept)))
                .filter(Column::WorkspaceId.eq(workspace_id))
                .filter(Column::Seq.eq(seq))
                .exec(txn)
                .await?;
        }
    }
    Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traces_go_whole_words_only_and_without_regard_to_case() {
        let traces = Traces::new(
            [
                "@zquennell@social.example",
                "@zquennell",
                "zquennell",
                "zofia",
                "quennell",
                "did:plc:quennellquennellquennell",
            ]
            .into_iter()
            .map(str::to_owned)
            .collect(),
        );
        for (text, scrubbed) in [
            ("@acmehq @zquennell Same here", "@acmehq [erased] Same here"),
            (
                "cc @zquennell@social.example and ZOFIA's friend",
                "cc [erased] and [erased]'s friend",
            ),
            (
                "at://did:plc:quennellquennellquennell/app.bsky.feed.post/1",
                "at://[erased]/app.bsky.feed.post/1",
            ),
            // Inside a longer word it is someone else's.
            ("Zofiana and quennells", "Zofiana and quennells"),
            ("Quennell-Smith", "[erased]-Smith"),
            ("", ""),
        ] {
            assert_eq!(traces.scrub(text), scrubbed, "{text}");
        }
        assert!(traces.names_them("113100000000000001 zofia"));
        assert!(!traces.names_them("113100000000000001"));
    }
}
