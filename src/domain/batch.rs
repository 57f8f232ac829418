//! The set-based ingestion writer: one batch of inbound items of one source stored with a
//! fixed handful of statements whatever its size, inside the caller's transaction
//! (the ingestion orchestrator opens it, locks the source and commits the batch with its
//! cursor).
//!
//! It does what storing the items one by one does, in the same order, and appends the
//! same events in the same sequence: the batch is read with one query per kind of key
//! (stored external ids, answered items, threads, identities, e-mails, phones,
//! customers), replayed item by item in memory — so a reply finds a parent earlier in
//! the same batch and an author met twice is created once — and written back with
//! multi-row statements. Races with other processes are decided by the database, never
//! by what this process read: identities and contact points are inserted with
//! `ON CONFLICT DO NOTHING` and the identities read back, so when another process created
//! the same new author first, its identity and customer win and the customer made here is
//! deleted before anyone can see it; interactions are inserted with `ON CONFLICT DO
//! NOTHING … RETURNING id`, so an item stored meanwhile is a duplicate, not an error.
//! The rows this batch reads and then changes (conversations, customers) are locked on
//! PostgreSQL (`FOR UPDATE`, in id order); SQLite's single writer holds the whole batch.
//!
//! What costs CPU and needs no database — normalisation, language, sentiment — is done
//! by [`prepare`] before the transaction opens, on every core.

use std::collections::{HashMap, HashSet};

use super::enrich::Languages;
use super::event::{Event, EventKind};
use super::interaction::{Enriched, Ingested};
use super::{ContactPointKind, ConversationStatus, Direction, LifecycleStage, Priority};
use crate::error::{Error, Result};
use chrono::{DateTime, Utc};
use connectors::InboundItem;
use entity::{contact_point, conversation, customer, identity, interaction, source};
use entity::{
    ContactPointId, ConversationId, CustomerId, IdentityId, InteractionId, SourceId, WorkspaceId,
};
use sea_orm::sea_query::{Expr, OnConflict};
use sea_orm::{
    ColumnTrait, Condition, ConnectionTrait, DbBackend, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect, QueryTrait,
};

/// Values bound per statement at most: below SQLite's 32,766 and PostgreSQL's 65,535.
const MAX_PARAMS: usize = 30_000;

/// Values in one `IN (…)` list at most.
const MAX_IN_LIST: usize = 5_000;

/// Below this many items a batch is prepared on the calling thread: spreading it over
/// threads costs more than it saves.
pub const PARALLEL_FROM: usize = 64;

/// A batch ready to store: every item normalised ([`super::text::normalize_item`]) and,
/// unless it was known to be stored already, enriched.
pub struct Prepared {
    items: Vec<InboundItem>,
    enriched: Vec<Option<Enriched>>,
    /// The languages detection chose among, for the items [`store`] enriches.
    languages: Languages,
}

impl Prepared {
    /// The normalised items, in batch order.
    pub fn items(&self) -> &[InboundItem] {
        &self.items
    }

    /// The languages the batch's items are detected among (the workspace's setting).
    pub fn languages(&self) -> &Languages {
        &self.languages
    }

    /// Keeps the items `keep` says yes to, in order (`keep` has one flag per item; those
    /// [`super::erase::keep_mask`] refuses are dropped before storing); returns how many went.
    pub fn retain(&mut self, keep: &[bool]) -> usize {
        let before = self.items.len();
        let mut flags = keep.iter();
        let mut kept = keep.iter();
        self.items.retain(|_| flags.next().copied().unwrap_or(true));
        self.enriched
            .retain(|_| kept.next().copied().unwrap_or(true));
        before - self.items.len()
    }
}

/// Normalises `items` on every core, as `urgency` says.
pub fn normalize(mut items: Vec<InboundItem>, urgency: Urgency) -> Vec<InboundItem> {
    par_each(&mut items, urgency, super::text::normalize_item_in_place);
    items
}

/// Enriches the normalised `items` whose external id is not in `stored`, on every core,
/// as `urgency` says, detecting languages among `languages`. Items left out are enriched
/// by [`store`] if they turn out to be new after all.
pub fn prepare(
    items: Vec<InboundItem>,
    stored: &HashSet<String>,
    urgency: Urgency,
    languages: Languages,
) -> Prepared {
    let enriched = par_map(&items, urgency, |item| {
        (!stored.contains(&item.external_id)).then(|| super::interaction::enrich(item, &languages))
    });
    Prepared {
        items,
        enriched,
        languages,
    }
}

/// Normalised `items`, enriched later by [`store`] on the calling thread (small batches),
/// their languages detected among `languages`.
pub fn unprepared(items: Vec<InboundItem>, languages: Languages) -> Prepared {
    let enriched = items.iter().map(|_| None).collect();
    Prepared {
        items,
        enriched,
        languages,
    }
}

/// Who waits for a batch being prepared (normalised, languages detected: about 50 µs an
/// item on this project's 2-core machine).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Urgency {
    /// Someone waits for the batch (a webhook's sender): at the process's priority, the
    /// first part on the calling thread.
    Waited,
    /// A sync's pulls (one someone asked for too: a run of batches, background work all
    /// the same): below the process (on Linux, nice +10), since each is prepared while
    /// the batch before it is stored. That store is a chain of statements, each a
    /// wake-up of another thread (SQLite's worker, PostgreSQL's backend, then the task
    /// awaiting it); with the preparation at the same priority on every core, each
    /// wake-up waited for a time slice. Measured inside a batch's transaction on 2 cores:
    /// a one-row lookup took 0.4–1.0 ms against 0.06–0.13 ms with nothing prepared beside
    /// it (a `SELECT 1` 0.6–1.1 ms), and the store 68–73 ms a batch of 1,000 against
    /// 50–52 ms with the preparation lowered, which still gets every cycle the store
    /// leaves. The nice value ranks Rapport's own threads; PostgreSQL's backend, another
    /// process, is ranked against Rapport as a whole where the kernel groups processes
    /// (autogroup, cgroups).
    Background,
}

/// `f` over `items`, split over the machine's cores; a batch too small to gain from it
/// runs on the calling thread. In the [`Urgency::Background`] every part runs on a
/// thread of its own below the process's priority (the calling thread waits); a waited
/// batch's first part runs on the calling thread. A panic in `f` propagates.
fn par_map<T: Sync, R: Send>(items: &[T], urgency: Urgency, f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    match part_size(items.len(), urgency) {
        None => items.iter().map(f).collect(),
        Some(size) => par_parts(items.chunks(size), urgency, |chunk| {
            chunk.iter().map(&f).collect()
        }),
    }
}

/// `f` on each of `items` in place, split as [`par_map`] splits them.
fn par_each<T: Send>(items: &mut [T], urgency: Urgency, f: impl Fn(&mut T) + Sync) {
    match part_size(items.len(), urgency) {
        None => items.iter_mut().for_each(f),
        Some(size) => {
            par_parts(items.chunks_mut(size), urgency, |chunk| {
                chunk.iter_mut().for_each(&f);
                Vec::<()>::new()
            });
        }
    }
}

/// The items a part of [`par_map`] takes, or `None` for a batch done on the calling thread.
fn part_size(items: usize, urgency: Urgency) -> Option<usize> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get().min(8));
    let waited = urgency == Urgency::Waited;
    (items >= PARALLEL_FROM && !(waited && threads <= 1)).then(|| items.div_ceil(threads))
}

/// `f` over `chunks`, each on a thread of its own as [`par_map`] says; the results in
/// order.
fn par_parts<C: Send, R: Send>(
    mut chunks: impl Iterator<Item = C>,
    urgency: Urgency,
    f: impl Fn(C) -> Vec<R> + Sync,
) -> Vec<R> {
    let waited = urgency == Urgency::Waited;
    let f = &f;
    let part = move |chunk: C| {
        if !waited {
            lower_priority();
        }
        f(chunk)
    };
    // A waited batch's first part runs on the calling thread, as a part does whose thread
    // cannot be made (the process's limit): both are `Err(slot)`, done here in order once
    // every other part's thread is running. A part waits in its slot until a thread takes
    // it, so a thread that cannot be made leaves it to the caller.
    let here = if waited { chunks.next() } else { None };
    let slots: Vec<std::sync::Mutex<Option<C>>> = chunks
        .map(|chunk| std::sync::Mutex::new(Some(chunk)))
        .collect();
    let take = |slot: &std::sync::Mutex<Option<C>>| {
        slot.lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take()
    };
    std::thread::scope(|scope| {
        let spawned = slots.iter().map(|slot| {
            threads_for_tests()
                .and_then(|()| {
                    std::thread::Builder::new()
                        .name("rapport-prepare".into())
                        .spawn_scoped(scope, move || take(slot).map(part).unwrap_or_default())
                })
                .map_err(|err| {
                    tracing::warn!(error = %err, "no thread for preparing a batch; preparing here");
                    slot
                })
        });
        let parts: Vec<_> = spawned.collect();
        let mut done = vec![here.map(f).unwrap_or_default()];
        for spawned in parts {
            done.push(match spawned {
                Ok(thread) => thread
                    .join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic)),
                Err(slot) => take(slot).map(f).unwrap_or_default(),
            });
        }
        let mut out = Vec::with_capacity(done.iter().map(Vec::len).sum());
        done.into_iter().for_each(|part| out.extend(part));
        out
    })
}

#[cfg(test)]
thread_local! {
    /// Set by a test: [`par_parts`] called on this thread gets no thread for any part, as
    /// when the process is at its limit of threads.
    static NO_THREADS: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Whether a part may have a thread: an error, instead of one, when a test asks for it.
fn threads_for_tests() -> std::io::Result<()> {
    #[cfg(test)]
    if NO_THREADS.with(std::cell::Cell::get) {
        return Err(std::io::Error::other("no threads, for a test"));
    }
    Ok(())
}

/// How much lower than the process a background preparation runs (Linux nice levels: at
/// 10 a thread gets about a tenth of a core that a thread at the process's level wants
/// too).
#[cfg(target_os = "linux")]
const PREPARE_NICE: i32 = 10;

/// Lowers the calling thread's scheduling priority by `PREPARE_NICE` on Linux, where a
/// thread has a nice value of its own (elsewhere nothing). Only for threads that end with
/// their work: a thread's priority cannot be raised back without privileges. A failure
/// leaves the thread as it was.
fn lower_priority() {
    #[cfg(target_os = "linux")]
    // SAFETY: plain system calls about the calling thread (`who` 0 is the caller on
    // Linux) and the thread's own `errno`; no memory is passed.
    unsafe {
        *libc::__errno_location() = 0;
        let now = libc::getpriority(libc::PRIO_PROCESS, 0);
        if now == -1 && *libc::__errno_location() != 0 {
            return;
        }
        libc::setpriority(libc::PRIO_PROCESS, 0, (now + PREPARE_NICE).min(19));
    }
}

/// What a stored batch did.
#[derive(Debug, Default)]
pub struct Stored {
    /// Interactions stored, in batch order.
    pub new: Vec<InteractionId>,
    /// Items stored before, or earlier in the same batch.
    pub duplicates: usize,
    /// Customers created for unknown authors.
    pub new_customers: usize,
}

/// The external ids of `source_id` (a source of the caller's workspace) among
/// `external_ids` that are stored already.
pub async fn stored_external_ids(
    db: &impl ConnectionTrait,
    source_id: SourceId,
    external_ids: &[String],
) -> Result<HashSet<String>> {
    Ok(stored_ids(db, source_id, external_ids)
        .await?
        .into_keys()
        .collect())
}

/// The interactions of `source_id` (a source of the caller's workspace) stored under one
/// of `external_ids`, by external id.
pub async fn stored_ids(
    db: &impl ConnectionTrait,
    source_id: SourceId,
    external_ids: &[String],
) -> Result<HashMap<String, InteractionId>> {
    let mut stored = HashMap::new();
    for chunk in distinct(external_ids.iter().map(String::as_str)).chunks(MAX_IN_LIST) {
        let rows: Vec<(Option<String>, InteractionId)> = if is_postgres(db) {
            let probe = probe_each(
                "interaction",
                vec![("source_id", source_id.into())],
                ("external_id", chunk),
                "r.external_id, r.id",
            );
            let mut rows = Vec::new();
            for row in db.query_all(probe).await? {
                rows.push((row.try_get("", "external_id")?, row.try_get("", "id")?));
            }
            rows
        } else {
            by_source(source_id)
                .filter(interaction::Column::ExternalId.is_in(chunk.iter().copied()))
                .select_only()
                .column(interaction::Column::ExternalId)
                .column(interaction::Column::Id)
                .into_tuple()
                .all(db)
                .await?
        };
        stored.extend(
            rows.into_iter()
                .filter_map(|(external, id)| Some((external?, id))),
        );
    }
    Ok(stored)
}

/// Where a reply goes: the conversation of the item it answers, when that is known.
#[derive(Clone, Copy)]
enum Answered {
    No,
    /// A stored item's conversation, and that item's customer (`None` for a publication).
    Stored(ConversationId, Option<CustomerId>),
    /// The conversation of the new item at this index of the batch.
    InBatch(usize),
}

/// Who wrote an item, once resolved.
#[derive(Clone, Copy)]
struct Author {
    identity_id: IdentityId,
    customer_id: CustomerId,
}

/// A new item of the batch with what it stores.
struct Fresh<'a> {
    item: &'a InboundItem,
    enriched: Option<Enriched>,
    direction: Direction,
    platform_id: String,
}

/// An event of the batch with its payload as it was when the per-item pipeline would
/// have appended it (a row's state after that item).
enum Snapshot {
    CustomerCreated(customer::Model),
    Conversation(EventKind, conversation::Model),
    /// A conversation a new message reopened, with who did it.
    Reopened(super::event::ConversationChange),
    /// The interaction row at this index of the batch's rows.
    Interaction(usize),
}

/// Events of one item, in the order the per-item pipeline appends them.
type Events = Vec<Snapshot>;

/// Stores the prepared batch of `source` inside `db` (the batch's transaction, its
/// source already locked): each new item's author resolved to an identity and a customer
/// (created for an unknown author), the item threaded into a conversation (the answered
/// item's, else its thread key's, else its own id's; reopened by an inbound item, first
/// response set by an outbound one), the interaction inserted, its customer's first and
/// last seen widened, and every event appended. `mid_batch` runs once part of the rows
/// are written (a crash-test hook).
///
/// Fails with the database's error when a statement fails; an error about an item's data
/// ([`super::refused_for_its_data`]) leaves the transaction for the caller to roll back
/// to a savepoint and store the items one by one, skipping the refused ones.
pub async fn store(
    db: &impl ConnectionTrait,
    source: &source::Model,
    prepared: &mut Prepared,
    mid_batch: &(dyn Fn() + Sync),
) -> Result<Stored> {
    let workspace_id = source.workspace_id;
    let channel = source.channel;
    let now = super::now();
    let languages = &prepared.languages;

    // Which items are new: the first of each external id, when not stored already.
    let stored = stored_external_ids(
        db,
        source.id,
        &prepared
            .items
            .iter()
            .map(|item| item.external_id.clone())
            .collect::<Vec<_>>(),
    )
    .await?;
    let mut seen = HashSet::new();
    let mut duplicates = 0;
    let mut fresh = Vec::new();
    for (item, enriched) in prepared.items.iter().zip(prepared.enriched.iter_mut()) {
        if stored.contains(&item.external_id) || !seen.insert(item.external_id.as_str()) {
            duplicates += 1;
            continue;
        }
        fresh.push(Fresh {
            item,
            enriched: enriched.take(),
            direction: if item.outbound {
                Direction::Outbound
            } else {
                Direction::Inbound
            },
            platform_id: super::clean(&item.author.platform_id),
        });
    }
    if fresh.is_empty() {
        return Ok(Stored {
            duplicates,
            ..Stored::default()
        });
    }

    // Replies: the conversations of the stored items they answer. An item of this batch
    // is not stored yet (that is what made it fresh): a reply to it is threaded below
    // without asking the database.
    let in_batch: HashSet<&str> = fresh.iter().map(|f| f.item.external_id.as_str()).collect();
    let parents: Vec<&str> = fresh
        .iter()
        .filter(|f| f.item.thread_key.is_none())
        .filter_map(|f| f.item.in_reply_to.as_deref())
        .filter(|parent| !in_batch.contains(parent))
        .collect();
    let parent_conversations = conversations_of_items(db, source.id, &distinct(parents)).await?;

    // Every conversation an item may join: by the answered item, or by thread key.
    let keys: Vec<&str> = fresh.iter().map(|f| thread_key(f.item)).collect();
    let by_id: Vec<ConversationId> = parent_conversations
        .values()
        .filter_map(|(conversation, _)| *conversation)
        .collect();
    let mut conversations: HashMap<ConversationId, conversation::Model> = HashMap::new();
    let mut by_key: HashMap<String, ConversationId> = HashMap::new();
    for row in conversations_for(db, workspace_id, source.id, &by_id, &distinct(keys)).await? {
        if row.source_id == Some(source.id) {
            if let Some(key) = &row.thread_key {
                by_key.insert(key.clone(), row.id);
            }
        }
        conversations.insert(row.id, row);
    }

    // Which items answer a known conversation (a stored one, or an earlier item's).
    let mut answered = Vec::with_capacity(fresh.len());
    let mut earlier: HashMap<&str, usize> = HashMap::new();
    for (n, f) in fresh.iter().enumerate() {
        let found = match (&f.item.thread_key, &f.item.in_reply_to) {
            (None, Some(parent)) => match earlier.get(parent.as_str()) {
                Some(&index) => Answered::InBatch(index),
                None => match parent_conversations.get(parent.as_str()) {
                    Some((Some(id), customer)) if conversations.contains_key(id) => {
                        Answered::Stored(*id, *customer)
                    }
                    _ => Answered::No,
                },
            },
            _ => Answered::No,
        };
        answered.push(found);
        earlier.insert(f.item.external_id.as_str(), n);
    }
    // The workspace's own items are never a customer's: only inbound authors are resolved.
    let needs_author: Vec<bool> = fresh.iter().map(|f| !f.item.outbound).collect();
    let mut authors =
        resolve_authors(db, workspace_id, channel, &fresh, &needs_author, now).await?;

    // The customers whose first and last seen may move.
    let mut customer_ids: Vec<CustomerId> = authors
        .of_item
        .iter()
        .flatten()
        .map(|author| author.customer_id)
        .chain(conversations.values().filter_map(|c| c.customer_id))
        .filter(|id| !authors.created.contains_key(id))
        .collect();
    customer_ids.sort_unstable();
    customer_ids.dedup();
    let mut customers = locked_customers(db, workspace_id, &customer_ids).await?;
    // Customers merged since their authors were read: the items go to the survivors.
    let redirected = authors
        .of_item
        .iter_mut()
        .flatten()
        .map(|a| &mut a.customer_id);
    let filed = conversations
        .values_mut()
        .filter_map(|c| c.customer_id.as_mut());
    super::merge::follow_merged(db, workspace_id, &mut customers, redirected.chain(filed)).await?;
    customers.extend(
        authors
            .created
            .iter()
            .map(|(id, (_, model))| (*id, model.clone())),
    );

    // Thread every item in order, as one by one would.
    let mut events: Vec<Events> = Vec::with_capacity(fresh.len());
    let mut conversation_of: Vec<ConversationId> = Vec::with_capacity(fresh.len());
    let mut created_conversations: Vec<ConversationId> = Vec::new();
    let mut changed_conversations: HashSet<ConversationId> = HashSet::new();
    let mut rows: Vec<interaction::Model> = Vec::with_capacity(fresh.len());
    for (n, f) in fresh.iter_mut().enumerate() {
        let mut mine = Events::new();
        let at = f.item.occurred_at;
        // The answered item's conversation, and the customer our own answer is filed
        // under: the conversation's, else (in a publication's thread) the answered item's.
        let (answered, parent_customer) = match answered[n] {
            Answered::No => (None, None),
            Answered::Stored(id, customer) => (Some(id), customer),
            Answered::InBatch(index) => (Some(conversation_of[index]), rows[index].customer_id),
        };
        let mut touch = |id: ConversationId, mine: &mut Events| -> Result<()> {
            if let Some(model) = conversations.get_mut(&id) {
                let kind = on_interaction(model, f.direction, at, now);
                mine.push(if kind == EventKind::ConversationStatusChanged {
                    Snapshot::Reopened(super::conversation::reopened(model.clone()))
                } else {
                    Snapshot::Conversation(kind, model.clone())
                });
                changed_conversations.insert(id);
            }
            Ok(())
        };
        if let Some(id) = answered {
            touch(id, &mut mine)?;
        }
        // An inbound item is its author's; our own is filed under the conversation's
        // customer, else the answered item's, else none: a publication.
        let author = authors.of_item[n];
        if let Some(author) = author {
            if let Some((first, model)) = authors.created.get(&author.customer_id) {
                if *first == n {
                    mine.push(Snapshot::CustomerCreated(model.clone()));
                }
            }
        } else if !f.item.outbound {
            return Err(Error::Internal("an inbound item has no author".into()));
        }
        let key = thread_key(f.item);
        let conversation_id = match (answered, by_key.get(key).copied()) {
            (Some(id), _) => id,
            (None, Some(id)) => {
                touch(id, &mut mine)?;
                id
            }
            (None, None) => {
                let model = new_conversation(
                    workspace_id,
                    source.id,
                    channel,
                    key,
                    author.map(|author| author.customer_id),
                    f,
                    now,
                );
                mine.push(Snapshot::Conversation(
                    EventKind::ConversationCreated,
                    model.clone(),
                ));
                by_key.insert(key.to_owned(), model.id);
                created_conversations.push(model.id);
                let id = model.id;
                conversations.insert(id, model);
                id
            }
        };
        let customer_id = match author {
            Some(author) => Some(author.customer_id),
            None => conversations
                .get(&conversation_id)
                .and_then(|c| c.customer_id)
                .or(parent_customer),
        };
        let identity_id = author.map(|author| author.identity_id);
        conversation_of.push(conversation_id);
        let ingested = Ingested {
            workspace_id,
            source_id: source.id,
            channel,
            customer_id,
            identity_id,
            conversation_id,
            item: f.item,
        };
        let enriched = f
            .enriched
            .take()
            .unwrap_or_else(|| super::interaction::enrich(f.item, languages));
        rows.push(enriched.into_model(&ingested, now));
        events.push(mine);
    }

    // Write: conversations (new ones, then changed ones), then the interactions.
    let created: HashSet<ConversationId> = created_conversations.iter().copied().collect();
    insert_rows::<conversation::Entity, ConversationId>(
        db,
        &rows_of(&conversations, &created_conversations),
        Conflict::Fail,
        false,
    )
    .await?;
    let mut changed: Vec<ConversationId> = changed_conversations
        .into_iter()
        .filter(|id| !created.contains(id))
        .collect();
    changed.sort_unstable();
    insert_rows::<conversation::Entity, ConversationId>(
        db,
        &rows_of(&conversations, &changed),
        Conflict::Update(
            conversation::Column::Id,
            vec![
                conversation::Column::LastMessageAt,
                conversation::Column::Status,
                conversation::Column::ResolvedAt,
                conversation::Column::SnoozedUntil,
                conversation::Column::WaitingSince,
                conversation::Column::FirstResponseAt,
                conversation::Column::UpdatedAt,
            ],
        ),
        false,
    )
    .await?;
    let inserted: HashSet<InteractionId> = insert_rows::<interaction::Entity, _>(
        db,
        &rows,
        Conflict::Ignore(vec![
            interaction::Column::SourceId,
            interaction::Column::ExternalId,
        ]),
        true,
    )
    .await?;
    mid_batch();

    // First and last seen of each stored item's customer, in order: the row only, no
    // event (see `customer::seen_at`).
    let mut seen_changed: HashSet<CustomerId> = HashSet::new();
    let mut new = Vec::with_capacity(inserted.len());
    let mut all_events = Events::new();
    for (index, (row, mine)) in rows.iter().zip(events).enumerate() {
        all_events.extend(mine);
        if !inserted.contains(&row.id) {
            // Stored by another writer since it was read: a duplicate after all.
            duplicates += 1;
            continue;
        }
        new.push(row.id);
        all_events.push(Snapshot::Interaction(index));
        if let Some(customer) = row.customer_id.and_then(|id| customers.get_mut(&id)) {
            let at = row.occurred_at;
            if at < customer.first_seen_at || at > customer.last_seen_at {
                customer.first_seen_at = customer.first_seen_at.min(at);
                customer.last_seen_at = customer.last_seen_at.max(at);
                customer.updated_at = now;
                seen_changed.insert(customer.id);
            }
        }
    }
    let mut seen_changed: Vec<CustomerId> = seen_changed.into_iter().collect();
    seen_changed.sort_unstable();
    let seen_changed: Vec<&customer::Model> = seen_changed
        .iter()
        .filter_map(|id| customers.get(id))
        .collect();
    update_seen(db, workspace_id, &seen_changed, now).await?;
    let events = all_events.iter().map(|snapshot| match snapshot {
        Snapshot::CustomerCreated(model) => Event::CustomerCreated(model),
        Snapshot::Conversation(EventKind::ConversationCreated, model) => {
            Event::ConversationCreated(model)
        }
        Snapshot::Reopened(change) => Event::ConversationStatusChanged(change),
        Snapshot::Conversation(_, model) => Event::ConversationUpdated(model),
        Snapshot::Interaction(index) => Event::InteractionCreated(&rows[*index]),
    });
    super::event::append_many(db, workspace_id, events).await?;
    super::duplicate::merge_above_threshold(db, workspace_id, &authors.above_threshold).await?;
    super::quality::count_dropped(
        db,
        workspace_id,
        &crate::ids::encode(source.id),
        now.date_naive(),
        &authors.dropped,
    )
    .await?;
    Ok(Stored {
        new,
        duplicates,
        new_customers: authors.created.len(),
    })
}

/// The thread key an item is filed under when it answers no known conversation: its
/// own thread key, else the id of the item it answers, else its own id.
fn thread_key(item: &InboundItem) -> &str {
    item.thread_key
        .as_deref()
        .or(item.in_reply_to.as_deref())
        .unwrap_or(&item.external_id)
}

/// A conversation's state after a new interaction in it (the rule of
/// [`super::conversation::follow_interaction`]). Returns the kind of the event to append.
fn on_interaction(
    model: &mut conversation::Model,
    direction: Direction,
    at: DateTime<Utc>,
    now: DateTime<Utc>,
) -> EventKind {
    let status_changed = super::conversation::follow_interaction(model, direction, at);
    model.updated_at = now;
    if status_changed {
        EventKind::ConversationStatusChanged
    } else {
        EventKind::ConversationUpdated
    }
}

/// A new conversation for the item `f` under `key` (the rule of
/// [`super::conversation::thread`]).
fn new_conversation(
    workspace_id: WorkspaceId,
    source_id: SourceId,
    channel: connectors::Channel,
    key: &str,
    customer_id: Option<CustomerId>,
    f: &Fresh<'_>,
    now: DateTime<Utc>,
) -> conversation::Model {
    let at = f.item.occurred_at;
    conversation::Model {
        id: ConversationId::new(),
        workspace_id,
        customer_id,
        source_id: Some(source_id),
        thread_key: Some(key.to_owned()),
        channel,
        subject: f.item.subject.clone(),
        status: ConversationStatus::Open,
        priority: Priority::Normal,
        assignee_id: None,
        snoozed_until: None,
        waiting_since: (f.direction == Direction::Inbound).then_some(at),
        spam: false,
        first_response_at: (f.direction == Direction::Outbound).then_some(at),
        resolved_at: None,
        last_message_at: at,
        created_at: now,
        updated_at: now,
    }
}

/// The authors of a batch, resolved.
struct Authors {
    /// Each new item's author; `None` for the workspace's own items.
    of_item: Vec<Option<Author>>,
    /// Customers created by this batch (and kept): id → (the index of the item that
    /// created it, the row as inserted).
    created: HashMap<CustomerId, (usize, customer::Model)>,
    /// New duplicate suggestions to merge once the batch is written.
    above_threshold: Vec<super::duplicate::AutoMerge>,
    /// The authors' contact values dropped as invalid, counted once the batch is written.
    dropped: super::quality::Dropped,
}

/// The profiles of the customers a batch creates (`created`, those that survived the
/// race for their identities), as it stores them: their rows, the contact points planned
/// for them and the handles of the identities of theirs that won (`won`), in id order
/// (their creation order), `points` being those it inserted. Built, not read back:
/// reading them cost most of the duplicate check.
fn profiles_of_created(
    created: &HashMap<CustomerId, (usize, customer::Model)>,
    identities: &[identity::Model],
    won: &HashSet<IdentityId>,
    points: &[contact_point::Model],
) -> Vec<super::dedupe::Profile> {
    let mut profiles: HashMap<CustomerId, super::dedupe::Profile> = created
        .iter()
        .map(|(id, (_, model))| (*id, super::dedupe::Profile::of_customer(model.clone())))
        .collect();
    for point in points {
        if let Some(profile) = profiles.get_mut(&point.customer_id) {
            match point.kind {
                ContactPointKind::Email => profile.emails.push(point.normalized.clone()),
                ContactPointKind::Phone => profile.phones.push(point.normalized.clone()),
                _ => {}
            }
        }
    }
    for identity in identities.iter().filter(|row| won.contains(&row.id)) {
        if let (Some(profile), Some(handle)) =
            (profiles.get_mut(&identity.customer_id), &identity.handle)
        {
            profile
                .handles
                .push((identity.channel.as_str().to_owned(), handle.clone()));
        }
    }
    let mut profiles: Vec<super::dedupe::Profile> = profiles.into_values().collect();
    profiles.sort_unstable_by_key(|profile| profile.id);
    profiles
}

/// Resolves the authors of the items that need one, as [`super::identity::resolve_author`]
/// does item by item: the identity with the same (channel, platform id); else the customer
/// owning the author's e-mail, else phone; else a new customer (stage `subscriber`). One
/// query per kind of key, then the missing customers, identities and contact points are
/// inserted together. An identity another process inserted first wins: it is read back,
/// and a customer made here for that author is deleted.
async fn resolve_authors(
    db: &impl ConnectionTrait,
    workspace_id: WorkspaceId,
    channel: connectors::Channel,
    fresh: &[Fresh<'_>],
    needs_author: &[bool],
    now: DateTime<Utc>,
) -> Result<Authors> {
    let wanted: Vec<usize> = (0..fresh.len()).filter(|&n| needs_author[n]).collect();
    let platform_ids = distinct(wanted.iter().map(|&n| fresh[n].platform_id.as_str()));
    let stored = identities(db, workspace_id, channel, &platform_ids).await?;
    super::duplicate::fill_profile_keys(db, &stored).await?;
    let mut known: HashMap<String, Author> = stored
        .into_iter()
        .map(|row| {
            let author = Author {
                identity_id: row.id,
                customer_id: row.customer_id,
            };
            (row.platform_id, author)
        })
        .collect();

    // The contact points of the authors without an identity, normalised.
    let dropped = super::quality::Dropped::default();
    let points_of = |f: &Fresh<'_>| -> Vec<(ContactPointKind, String, String)> {
        [
            (ContactPointKind::Email, f.item.author.email.as_deref()),
            (ContactPointKind::Phone, f.item.author.phone.as_deref()),
        ]
        .into_iter()
        .filter_map(|(kind, value)| {
            let Some((value, normalized)) = super::validate::ingested_point(kind, value?) else {
                dropped.note_point(kind);
                return None;
            };
            Some((kind, value, normalized))
        })
        .collect()
    };
    let unknown: Vec<usize> = wanted
        .iter()
        .copied()
        .filter(|&n| !known.contains_key(&fresh[n].platform_id))
        .collect();
    let points: HashMap<usize, Vec<(ContactPointKind, String, String)>> =
        unknown.iter().map(|&n| (n, points_of(&fresh[n]))).collect();
    let mut owners: HashMap<(ContactPointKind, String), CustomerId> = HashMap::new();
    for kind in [ContactPointKind::Email, ContactPointKind::Phone] {
        let values = distinct(
            points
                .values()
                .flatten()
                .filter(|(k, _, _)| *k == kind)
                .map(|(_, _, normalized)| normalized.as_str()),
        );
        for (normalized, customer) in point_owners(db, workspace_id, kind, &values).await? {
            owners.insert((kind, normalized), customer);
        }
    }

    // In batch order: an author met earlier in the batch is that author again, and a
    // contact point given earlier in the batch is that customer's.
    let mut created: HashMap<CustomerId, (usize, customer::Model)> = HashMap::new();
    let mut new_identities: Vec<identity::Model> = Vec::new();
    let mut new_points: Vec<contact_point::Model> = Vec::new();
    for &n in &unknown {
        let f = &fresh[n];
        if known.contains_key(&f.platform_id) {
            continue;
        }
        let points = &points[&n];
        let owner = points
            .iter()
            .find_map(|(kind, _, normalized)| owners.get(&(*kind, normalized.clone())).copied());
        let customer_id = match owner {
            Some(id) => id,
            None => {
                let model = new_subscriber(workspace_id, f, now);
                let id = model.id;
                created.insert(id, (n, model));
                id
            }
        };
        for (kind, value, normalized) in points {
            let key = (*kind, normalized.clone());
            if owners.contains_key(&key) {
                continue;
            }
            owners.insert(key, customer_id);
            new_points.push(contact_point::Model {
                id: ContactPointId::new(),
                workspace_id,
                customer_id,
                kind: *kind,
                value: value.clone(),
                normalized: normalized.clone(),
                label: None,
                verified: false,
                is_primary: owner.is_none(),
                created_at: now,
            });
        }
        let author = &f.item.author;
        let identity = identity::Model {
            id: IdentityId::new(),
            workspace_id,
            customer_id,
            channel,
            platform_id: f.platform_id.clone(),
            handle: author.handle.clone(),
            display_name: author.display_name.clone(),
            profile_url: author.profile_url.clone(),
            avatar_url: author.avatar_url.clone(),
            profile_key: super::duplicate::profile_key(
                channel,
                &f.platform_id,
                author.handle.as_deref(),
                author.profile_url.as_deref(),
            ),
            created_at: now,
            updated_at: now,
        };
        known.insert(
            f.platform_id.clone(),
            Author {
                identity_id: identity.id,
                customer_id,
            },
        );
        new_identities.push(identity);
    }

    // What a profile link may name, new in this batch: the identities this batch inserts
    // (another writer's winner is theirs to check) and the e-mail addresses it stores.
    let mut targets: Vec<super::duplicate::Target> = Vec::new();
    // The new customers' profiles as this batch stores them, for the duplicate check.
    let mut new_profiles = Vec::new();
    if !new_identities.is_empty() {
        let mut customers: Vec<customer::Model> =
            created.values().map(|(_, m)| m.clone()).collect();
        customers.sort_unstable_by_key(|m| m.id);
        insert_rows::<customer::Entity, CustomerId>(db, &customers, Conflict::Fail, false).await?;
        // In key order, so two writers inserting overlapping authors wait for each other
        // instead of deadlocking.
        new_identities.sort_unstable_by(|a, b| a.platform_id.cmp(&b.platform_id));
        let won: HashSet<IdentityId> = insert_rows::<identity::Entity, _>(
            db,
            &new_identities,
            Conflict::Ignore(vec![
                identity::Column::WorkspaceId,
                identity::Column::Channel,
                identity::Column::PlatformId,
            ]),
            true,
        )
        .await?;
        // Only an identity another writer inserted first is read (its id and customer).
        let lost: Vec<&str> = new_identities
            .iter()
            .filter(|row| !won.contains(&row.id))
            .map(|row| row.platform_id.as_str())
            .collect();
        let winners: HashMap<String, identity::Model> = if lost.is_empty() {
            HashMap::new()
        } else {
            identities(db, workspace_id, channel, &lost)
                .await?
                .into_iter()
                .map(|row| (row.platform_id.clone(), row))
                .collect()
        };
        // Authors another writer created first: theirs wins, ours goes.
        let mut replaced: HashMap<CustomerId, CustomerId> = HashMap::new();
        for planned in &new_identities {
            if won.contains(&planned.id) {
                targets.extend(super::duplicate::identity_target(planned));
            } else {
                let winner = winners.get(&planned.platform_id).ok_or_else(|| {
                    Error::Internal("an identity vanished after its insertion".into())
                })?;
                known.insert(
                    planned.platform_id.clone(),
                    Author {
                        identity_id: winner.id,
                        customer_id: winner.customer_id,
                    },
                );
                if created.contains_key(&planned.customer_id) {
                    replaced.insert(planned.customer_id, winner.customer_id);
                }
            }
        }
        if !replaced.is_empty() {
            forget_customers(db, workspace_id, &replaced, &mut known, &mut new_points).await?;
            created.retain(|id, _| !replaced.contains_key(id));
        }
        targets.extend(
            new_points
                .iter()
                .filter_map(super::duplicate::contact_point_target),
        );
        new_points.sort_unstable_by(|a, b| (&a.kind, &a.normalized).cmp(&(&b.kind, &b.normalized)));
        let stored: HashSet<ContactPointId> = insert_rows::<contact_point::Entity, _>(
            db,
            &new_points,
            Conflict::Ignore(vec![
                contact_point::Column::WorkspaceId,
                contact_point::Column::Kind,
                contact_point::Column::Normalized,
            ]),
            true,
        )
        .await?;
        // A point another writer stored first (for its own customer) is not ours.
        new_points.retain(|point| stored.contains(&point.id));
        new_profiles = profiles_of_created(&created, &new_identities, &won, &new_points);
    }

    let mut seen_identities = std::collections::HashSet::new();
    let linked: Vec<super::duplicate::Linked<'_>> = wanted
        .iter()
        .filter(|&&n| !fresh[n].item.author.links.is_empty())
        .filter_map(|&n| {
            let author = known.get(&fresh[n].platform_id)?;
            seen_identities
                .insert(author.identity_id)
                .then_some(super::duplicate::Linked {
                    identity_id: author.identity_id,
                    customer_id: author.customer_id,
                    channel,
                    links: &fresh[n].item.author.links,
                })
        })
        .collect();
    let above_threshold =
        super::duplicate::after_authors(db, workspace_id, &linked, &targets, now).await?;
    // Suggested, never merged: a name, a handle or a variant of an address is what an
    // author says of themselves, and anyone can say it of someone else.
    let new_customers: HashSet<CustomerId> = created.keys().copied().collect();
    super::dedupe::check_profiles(db, workspace_id, new_profiles, &new_customers, now).await?;

    let of_item = (0..fresh.len())
        .map(|n| {
            needs_author[n]
                .then(|| known.get(&fresh[n].platform_id).copied())
                .flatten()
        })
        .collect::<Vec<_>>();
    if of_item
        .iter()
        .zip(needs_author)
        .any(|(author, needed)| *needed && author.is_none())
    {
        return Err(Error::Internal("an author was left unresolved".into()));
    }
    Ok(Authors {
        of_item,
        created,
        above_threshold,
        dropped,
    })
}

/// Deletes the customers this batch created for authors another writer created first
/// (`replaced`: ours → theirs), after moving to theirs whatever of the batch pointed at
/// ours: the batch's other authors (found by a contact point ours was given) and the
/// contact points planned for ours (not primary: theirs may have one).
async fn forget_customers(
    db: &impl ConnectionTrait,
    workspace_id: WorkspaceId,
    replaced: &HashMap<CustomerId, CustomerId>,
    known: &mut HashMap<String, Author>,
    new_points: &mut [contact_point::Model],
) -> Result<()> {
    for (ours, theirs) in replaced {
        // Identities of this batch that won but point at a customer that lost.
        identity::Entity::update_many()
            .col_expr(identity::Column::CustomerId, Expr::value(*theirs))
            .filter(identity::Column::WorkspaceId.eq(workspace_id))
            .filter(identity::Column::CustomerId.eq(*ours))
            .exec(db)
            .await?;
    }
    for author in known.values_mut() {
        if let Some(theirs) = replaced.get(&author.customer_id) {
            author.customer_id = *theirs;
        }
    }
    for point in new_points.iter_mut() {
        if let Some(theirs) = replaced.get(&point.customer_id) {
            point.customer_id = *theirs;
            point.is_primary = false;
        }
    }
    customer::Entity::delete_many()
        .filter(customer::Column::WorkspaceId.eq(workspace_id))
        .filter(customer::Column::Id.is_in(replaced.keys().copied()))
        .exec(db)
        .await?;
    Ok(())
}

/// A new customer (stage `subscriber`) for the unknown author of `f` (the rule of
/// [`super::customer::create_subscriber`]), named by [`super::identity::author_name`].
fn new_subscriber(workspace_id: WorkspaceId, f: &Fresh<'_>, now: DateTime<Utc>) -> customer::Model {
    let name = super::identity::author_name(&f.item.author, &f.platform_id);
    let seen = f.item.occurred_at.min(now);
    customer::Model {
        id: CustomerId::new(),
        workspace_id,
        display_name: name.chars().take(200).collect(),
        given_name: None,
        family_name: None,
        lifecycle_stage: LifecycleStage::Subscriber,
        external_id: None,
        organization_id: None,
        custom: serde_json::json!({}),
        merged_into: None,
        first_seen_at: seen,
        last_seen_at: seen,
        created_at: now,
        updated_at: now,
        birth_date: None,
        street: None,
        street2: None,
        locality: None,
        region: None,
        postal_code: None,
        country: None,
    }
}

/// The identities of the workspace on `channel` with one of `platform_ids`.
async fn identities(
    db: &impl ConnectionTrait,
    workspace_id: WorkspaceId,
    channel: connectors::Channel,
    platform_ids: &[&str],
) -> Result<Vec<identity::Model>> {
    let mut rows = Vec::new();
    for chunk in platform_ids.chunks(MAX_IN_LIST) {
        let found = if is_postgres(db) {
            let probe = probe_each(
                "identity",
                vec![
                    ("workspace_id", workspace_id.into()),
                    ("channel", channel.into()),
                ],
                ("platform_id", chunk),
                "r.*",
            );
            identity::Entity::find().from_raw_sql(probe).all(db).await?
        } else {
            super::scoped::<identity::Entity>(workspace_id)
                .filter(identity::Column::Channel.eq(channel))
                .filter(identity::Column::PlatformId.is_in(chunk.iter().copied()))
                .all(db)
                .await?
        };
        rows.extend(found);
    }
    Ok(rows)
}

/// The owners of the workspace's contact points of `kind` with one of `normalized`.
async fn point_owners(
    db: &impl ConnectionTrait,
    workspace_id: WorkspaceId,
    kind: ContactPointKind,
    normalized: &[&str],
) -> Result<Vec<(String, CustomerId)>> {
    let mut rows = Vec::new();
    for chunk in normalized.chunks(MAX_IN_LIST) {
        if is_postgres(db) {
            let probe = probe_each(
                "contact_point",
                vec![("workspace_id", workspace_id.into()), ("kind", kind.into())],
                ("normalized", chunk),
                "r.normalized, r.customer_id",
            );
            for row in db.query_all(probe).await? {
                rows.push((
                    row.try_get("", "normalized")?,
                    row.try_get("", "customer_id")?,
                ));
            }
        } else {
            let found: Vec<(String, CustomerId)> =
                super::scoped::<contact_point::Entity>(workspace_id)
                    .filter(contact_point::Column::Kind.eq(kind))
                    .filter(contact_point::Column::Normalized.is_in(chunk.iter().copied()))
                    .select_only()
                    .column(contact_point::Column::Normalized)
                    .column(contact_point::Column::CustomerId)
                    .into_tuple()
                    .all(db)
                    .await?;
            rows.extend(found);
        }
    }
    Ok(rows)
}

/// The interactions of `source_id`, a source of the caller's workspace (its row was read
/// scoped), to be narrowed to a list of external ids through the UNIQUE (source_id,
/// external_id) index (on PostgreSQL [`probe_each`] does it); a `workspace_id` filter
/// beside it only offered the planner a worse index.
fn by_source(source_id: SourceId) -> sea_orm::Select<interaction::Entity> {
    interaction::Entity::find().filter(interaction::Column::SourceId.eq(source_id))
}

/// The conversation and customer of each of `external_ids` stored for `source_id`.
async fn conversations_of_items(
    db: &impl ConnectionTrait,
    source_id: SourceId,
    external_ids: &[&str],
) -> Result<HashMap<String, (Option<ConversationId>, Option<CustomerId>)>> {
    type Row = (Option<String>, Option<ConversationId>, Option<CustomerId>);
    let mut found = HashMap::new();
    for chunk in external_ids.chunks(MAX_IN_LIST) {
        let rows: Vec<Row> = if is_postgres(db) {
            let probe = probe_each(
                "interaction",
                vec![("source_id", source_id.into())],
                ("external_id", chunk),
                "r.external_id, r.conversation_id, r.customer_id",
            );
            let mut rows = Vec::new();
            for row in db.query_all(probe).await? {
                rows.push((
                    row.try_get("", "external_id")?,
                    row.try_get("", "conversation_id")?,
                    row.try_get("", "customer_id")?,
                ));
            }
            rows
        } else {
            by_source(source_id)
                .filter(interaction::Column::ExternalId.is_in(chunk.iter().copied()))
                .select_only()
                .column(interaction::Column::ExternalId)
                .column(interaction::Column::ConversationId)
                .column(interaction::Column::CustomerId)
                .into_tuple()
                .all(db)
                .await?
        };
        found.extend(
            rows.into_iter()
                .filter_map(|(id, conversation, customer)| Some((id?, (conversation, customer)))),
        );
    }
    Ok(found)
}

/// The conversations with one of `ids`, and those of `source_id` with one of
/// `thread_keys`; locked until the batch commits (PostgreSQL), in id order.
async fn conversations_for(
    db: &impl ConnectionTrait,
    workspace_id: WorkspaceId,
    source_id: SourceId,
    ids: &[ConversationId],
    thread_keys: &[&str],
) -> Result<Vec<conversation::Model>> {
    use conversation::Column;
    let mut rows = Vec::new();
    let mut ids = ids.to_vec();
    let mut thread_keys = thread_keys;
    if is_postgres(db) {
        // The threads' ids first, one probe a key, then every row locked by id below.
        for chunk in thread_keys.chunks(MAX_IN_LIST) {
            let probe = probe_each(
                "conversation",
                vec![
                    ("workspace_id", workspace_id.into()),
                    ("source_id", source_id.into()),
                ],
                ("thread_key", chunk),
                "r.id",
            );
            for row in db.query_all(probe).await? {
                ids.push(row.try_get("", "id")?);
            }
        }
        thread_keys = &[];
    }
    ids.sort_unstable();
    ids.dedup();
    for chunk in ids.chunks(MAX_IN_LIST) {
        rows.extend(
            super::scoped::<conversation::Entity>(workspace_id)
                .filter(Column::Id.is_in(chunk.iter().copied()))
                .order_by_asc(Column::Id)
                .lock_exclusive()
                .all(db)
                .await?,
        );
    }
    for chunk in thread_keys.chunks(MAX_IN_LIST) {
        rows.extend(
            super::scoped::<conversation::Entity>(workspace_id)
                .filter(
                    Condition::all()
                        .add(Column::SourceId.eq(source_id))
                        .add(Column::ThreadKey.is_in(chunk.iter().copied())),
                )
                .order_by_asc(Column::Id)
                .lock_exclusive()
                .all(db)
                .await?,
        );
    }
    Ok(rows)
}

/// The customers with one of `ids` (sorted), locked until the batch commits (PostgreSQL).
async fn locked_customers(
    db: &impl ConnectionTrait,
    workspace_id: WorkspaceId,
    ids: &[CustomerId],
) -> Result<HashMap<CustomerId, customer::Model>> {
    let mut found = HashMap::new();
    for chunk in ids.chunks(MAX_IN_LIST) {
        let rows = super::scoped::<customer::Entity>(workspace_id)
            .filter(customer::Column::Id.is_in(chunk.iter().copied()))
            .order_by_asc(customer::Column::Id)
            .lock_exclusive()
            .all(db)
            .await?;
        found.extend(rows.into_iter().map(|row| (row.id, row)));
    }
    Ok(found)
}

/// Stores the first and last seen times of `customers` (of `workspace_id`) as they are in
/// the models, `updated_at` set to `now`: one `UPDATE … FROM` a set of (id, first, last)
/// a statement, instead of a whole-row upsert (which bound every column of every row, and
/// on PostgreSQL tried an insert before each update).
async fn update_seen(
    db: &impl ConnectionTrait,
    workspace_id: WorkspaceId,
    customers: &[&customer::Model],
    now: DateTime<Utc>,
) -> Result<()> {
    let backend = db.get_database_backend();
    if customers.is_empty() {
        return Ok(());
    }
    if backend == DbBackend::Postgres {
        let rows: Vec<serde_json::Value> = customers
            .iter()
            .map(|c| {
                serde_json::json!({
                    "id": c.id,
                    "first_seen_at": c.first_seen_at,
                    "last_seen_at": c.last_seen_at,
                })
            })
            .collect();
        // `(…) IS TRUE` keeps the workspace term off the indexes (see
        // `workspace_off_indexes`): the rows are found by id.
        db.execute(sea_orm::Statement::from_sql_and_values(
            DbBackend::Postgres,
            "UPDATE customer AS c SET first_seen_at = t.first_seen_at, \
             last_seen_at = t.last_seen_at, updated_at = $2 \
             FROM json_populate_recordset(NULL::customer, $3::json) AS t \
             WHERE c.id = t.id AND (c.workspace_id = $1) IS TRUE",
            [
                workspace_id.into(),
                now.into(),
                serde_json::Value::Array(rows).to_string().into(),
            ],
        ))
        .await?;
        return Ok(());
    }
    for chunk in super::statement_chunks(customers, MAX_PARAMS / 3) {
        let mut values: Vec<sea_orm::Value> = Vec::with_capacity(3 * chunk.len() + 2);
        for c in chunk {
            values.push(c.id.into());
            values.push(c.first_seen_at.into());
            values.push(c.last_seen_at.into());
        }
        values.push(now.into());
        values.push(workspace_id.into());
        // `+` keeps the workspace term off the indexes: the rows are found by id.
        let sql = format!(
            "WITH t(id, first_seen_at, last_seen_at) AS (VALUES {}) \
             UPDATE customer SET first_seen_at = t.first_seen_at, \
             last_seen_at = t.last_seen_at, updated_at = ? \
             FROM t WHERE customer.id = t.id AND +customer.workspace_id = ?",
            vec!["(?, ?, ?)"; chunk.len()].join(", ")
        );
        db.execute(sea_orm::Statement::from_sql_and_values(
            DbBackend::Sqlite,
            sql,
            values,
        ))
        .await?;
    }
    Ok(())
}

/// What an insert does with a row whose key is stored already.
enum Conflict<C> {
    /// The statement fails: the rows carry fresh ids.
    Fail,
    /// The row is skipped (another writer stored it first).
    Ignore(Vec<C>),
    /// The stored row of the same id takes these columns of the new one.
    Update(C, Vec<C>),
}

impl<C: ColumnTrait> Conflict<C> {
    /// The clause on SQLite, for sea-query.
    fn clause(&self) -> Option<OnConflict> {
        match self {
            Conflict::Fail => None,
            Conflict::Ignore(key) => Some(OnConflict::columns(key.clone()).do_nothing().to_owned()),
            Conflict::Update(id, columns) => Some(
                OnConflict::column(*id)
                    .update_columns(columns.clone())
                    .to_owned(),
            ),
        }
    }

    /// The clause as SQL, for a statement written by hand (PostgreSQL).
    fn sql(&self) -> String {
        let name = |column: &C| format!("\"{}\"", column.to_string());
        match self {
            Conflict::Fail => String::new(),
            Conflict::Ignore(key) => format!(
                " ON CONFLICT ({}) DO NOTHING",
                key.iter().map(name).collect::<Vec<_>>().join(", ")
            ),
            Conflict::Update(id, columns) => format!(
                " ON CONFLICT ({}) DO UPDATE SET {}",
                name(id),
                columns
                    .iter()
                    .map(|column| format!("{0} = EXCLUDED.{0}", name(column)))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }
    }
}

/// Inserts `rows`: on SQLite with as few multi-row statements as the bind-parameter limit
/// allows, on PostgreSQL as JSON ([`insert_as_json`]). With `returning`, answers the ids
/// (`I`, the table's) of the rows inserted, not those `conflict` skipped.
async fn insert_rows<E, I>(
    db: &impl ConnectionTrait,
    rows: &[E::Model],
    conflict: Conflict<E::Column>,
    returning: bool,
) -> Result<HashSet<I>>
where
    E: EntityTrait,
    E::Model: serde::Serialize + sea_orm::IntoActiveModel<E::ActiveModel>,
    E::ActiveModel: Send,
    I: sea_orm::TryGetable + Eq + std::hash::Hash,
{
    use sea_orm::Iterable;
    let backend = db.get_database_backend();
    if rows.is_empty() {
        return Ok(HashSet::new());
    }
    if backend == DbBackend::Postgres {
        return insert_as_json::<E, I>(db, rows, &conflict, returning).await;
    }
    let per_statement = MAX_PARAMS / E::Column::iter().count().max(1);
    let on_conflict = conflict.clause();
    let mut inserted = HashSet::new();
    for chunk in super::statement_chunks(rows, per_statement) {
        let mut insert = E::insert_many(
            chunk
                .iter()
                .cloned()
                .map(sea_orm::IntoActiveModel::into_active_model),
        );
        if let Some(on_conflict) = &on_conflict {
            insert = insert.on_conflict(on_conflict.clone());
        }
        if !returning {
            insert.exec_without_returning(db).await?;
            continue;
        }
        let mut statement = insert.into_query();
        statement.returning_col(sea_orm::sea_query::Alias::new("id"));
        for row in db.query_all(backend.build(&statement)).await? {
            inserted.insert(row.try_get::<I>("", "id")?);
        }
    }
    Ok(inserted)
}

/// The JSON of one statement of [`insert_as_json`] stops growing past this many bytes (a
/// row's text and platform payload are capped, at 100,000 characters and 64 KiB, so a
/// statement stays within a few megabytes whatever the batch).
const JSON_BYTES: usize = 4 << 20;

/// Inserts `rows` of `E` on PostgreSQL as one JSON array a statement, bound as one
/// parameter and turned back into rows by the server (`json_populate_recordset` over the
/// table's own row type). A multi-row `VALUES` list binds a parameter a column a row
/// (23 a row for interactions, 19 for conversations), which the server parses and plans
/// one by one: for a thousand rows that was most of the statement. The JSON is each
/// row's serde form, whose field names are the column names and whose enums, ids and
/// times are their stored forms (the models are the tables'; a test compares what this
/// and the item-by-item path store, column by column). With `returning`, answers the ids
/// (`I`) of the rows inserted, not those `conflict` skipped.
async fn insert_as_json<E, I>(
    db: &impl ConnectionTrait,
    rows: &[E::Model],
    conflict: &Conflict<E::Column>,
    returning: bool,
) -> Result<HashSet<I>>
where
    E: EntityTrait,
    E::Model: serde::Serialize,
    I: sea_orm::TryGetable + Eq + std::hash::Hash,
{
    use sea_orm::{Iden, Iterable};
    let columns = E::Column::iter()
        .map(|column| format!("\"{}\"", column.to_string()))
        .collect::<Vec<_>>()
        .join(", ");
    let table = E::default().table_name().to_owned();
    let sql = format!(
        "INSERT INTO \"{table}\" ({columns}) \
         SELECT {columns} FROM json_populate_recordset(NULL::\"{table}\", $1::json){}{}",
        conflict.sql(),
        if returning { " RETURNING id" } else { "" }
    );
    let mut inserted = HashSet::new();
    let mut rows = rows.iter().peekable();
    while rows.peek().is_some() {
        let mut json = String::from("[");
        for row in rows.by_ref() {
            if json.len() > 1 {
                json.push(',');
            }
            let text = serde_json::to_string(row).map_err(|err| {
                Error::Internal(format!("a {table} row did not serialise: {err}"))
            })?;
            json.push_str(&text);
            if json.len() >= JSON_BYTES {
                break;
            }
        }
        json.push(']');
        let statement =
            sea_orm::Statement::from_sql_and_values(DbBackend::Postgres, &sql, [json.into()]);
        if returning {
            for row in db.query_all(statement).await? {
                inserted.insert(row.try_get::<I>("", "id")?);
            }
        } else {
            db.execute(statement).await?;
        }
    }
    Ok(inserted)
}

/// The rows of `ids` in `models`, in the order of `ids`, ready to insert.
fn rows_of<I, M>(models: &HashMap<I, M>, ids: &[I]) -> Vec<M>
where
    I: Eq + std::hash::Hash,
    M: Clone,
{
    ids.iter()
        .filter_map(|id| models.get(id).cloned())
        .collect()
}

/// The tables a batch grows, whose planner statistics its lookups depend on.
const GROWN_TABLES: [&str; 5] = [
    "interaction",
    "conversation",
    "customer",
    "identity",
    "contact_point",
];

/// On PostgreSQL, analyses each table a batch grows once its rows changed since the last
/// analysis outnumber half of those it had (and a thousand): what the manual advises after
/// a bulk load, and what autovacuum does only on its next round (a minute later at best).
/// Until then the planner takes a new workspace or source for a handful of rows and may
/// read a smaller index's whole workspace prefix for every key of a batch instead of
/// probing the unique index (seen: a thread lookup of 1,000 keys on a 10,000-conversation
/// workspace took 160–290 ms through the status index). One cheap read of the statistics
/// views a batch; an analysis samples at most 30,000 rows and runs a handful of times as
/// a table grows from empty to any size (the threshold doubles with it).
pub async fn refresh_statistics(db: &impl ConnectionTrait) -> Result<()> {
    if !is_postgres(db) {
        return Ok(());
    }
    let tables = GROWN_TABLES
        .iter()
        .map(|table| format!("'{table}'"))
        .collect::<Vec<_>>()
        .join(", ");
    let stale = db
        .query_all(sea_orm::Statement::from_string(
            DbBackend::Postgres,
            format!(
                "SELECT relname::text AS name FROM pg_stat_user_tables \
                 WHERE schemaname = current_schema() AND relname IN ({tables}) \
                 AND n_mod_since_analyze > 1000 + n_live_tup / 2"
            ),
        ))
        .await?;
    for row in stale {
        let name: String = row.try_get("", "name")?;
        // Only names from GROWN_TABLES come back: nothing outside this file reaches the SQL.
        if let Some(table) = GROWN_TABLES.iter().find(|table| **table == name) {
            db.execute_unprepared(&format!(r#"ANALYZE "{table}""#))
                .await?;
        }
    }
    Ok(())
}

fn is_postgres(db: &impl ConnectionTrait) -> bool {
    db.get_database_backend() == DbBackend::Postgres
}

/// On PostgreSQL: `select` (over the alias `r`) from the rows of `table` whose columns
/// `fixed` hold their values and whose text column `key.0` holds one of the keys `key.1`,
/// read with one index probe per key.
///
/// The keys are bound as one array and each is looked up in a `LATERAL` subquery that
/// `OFFSET 0` keeps from being flattened, so the unique index over the fixed columns and
/// the key is probed with every column equal. Asked as `key IN (…)` or `key = ANY($n)`,
/// the planner, with statistics from before a source or a workspace had rows, reckons
/// the fixed columns' prefix of that index holds a row or two and reads all of it,
/// testing each row against the list: the lookup grew with the source (a replayed batch
/// of a thousand items of a 20,000-row source took ~100 ms against ~2 ms) until the table
/// was analysed again. SQLite probes an `IN` list through a temporary index and needs none of this.
fn probe_each(
    table: &str,
    fixed: Vec<(&str, sea_orm::Value)>,
    key: (&str, &[&str]),
    select: &str,
) -> sea_orm::Statement {
    let (key_column, keys) = key;
    let keys: Vec<String> = keys.iter().map(|key| (*key).to_owned()).collect();
    let mut values = vec![sea_orm::Value::from(keys)];
    let mut sql = format!(
        r#"SELECT {select} FROM unnest($1::text[]) AS k(v) CROSS JOIN LATERAL (SELECT * FROM "{table}" WHERE "{key_column}" = k.v"#
    );
    for (column, value) in fixed {
        values.push(value);
        sql.push_str(&format!(r#" AND "{column}" = ${}"#, values.len()));
    }
    sql.push_str(" OFFSET 0) AS r");
    sea_orm::Statement::from_sql_and_values(DbBackend::Postgres, sql, values)
}

/// `values` without repeats, in first-seen order.
fn distinct<'a>(values: impl IntoIterator<Item = &'a str>) -> Vec<&'a str> {
    let mut seen = HashSet::new();
    values.into_iter().filter(|v| seen.insert(*v)).collect()
}

#[cfg(test)]
mod tests {
    use super::{par_each, par_map, Urgency, PARALLEL_FROM};

    /// While it lives, [`super::par_parts`] on this thread gets no thread for any part.
    struct NoThreads;

    impl NoThreads {
        fn set() -> NoThreads {
            super::NO_THREADS.with(|no| no.set(true));
            NoThreads
        }
    }

    impl Drop for NoThreads {
        fn drop(&mut self) {
            super::NO_THREADS.with(|no| no.set(false));
        }
    }

    /// This thread's nice value (0 where threads have none of their own).
    fn nice() -> i32 {
        #[cfg(target_os = "linux")]
        // SAFETY: reads the calling thread's nice value; no memory is passed.
        return unsafe { libc::getpriority(libc::PRIO_PROCESS, 0) };
        #[cfg(not(target_os = "linux"))]
        0
    }

    /// The parts come back in order; in the background (on Linux) each ran below the
    /// caller's priority, a waited batch at it, and the caller's own is untouched.
    #[test]
    fn a_batch_is_prepared_in_order_and_in_the_background_below_the_callers_priority() {
        let items: Vec<usize> = (0..PARALLEL_FROM * 3).collect();
        let before = nice();
        #[cfg(target_os = "linux")]
        assert!(
            before < 19,
            "at nice 19 the lowering cannot show: run the tests below it"
        );
        for urgency in [Urgency::Background, Urgency::Waited] {
            let out = par_map(&items, urgency, |n| (*n * 2, nice()));
            assert_eq!(
                out.iter().map(|(n, _)| *n).collect::<Vec<_>>(),
                items.iter().map(|n| n * 2).collect::<Vec<_>>()
            );
            assert_eq!(nice(), before, "the caller's priority is untouched");
            let expected = match urgency {
                Urgency::Waited => before,
                #[cfg(target_os = "linux")]
                Urgency::Background => (before + super::PREPARE_NICE).min(19),
                #[cfg(not(target_os = "linux"))]
                Urgency::Background => before,
            };
            assert!(
                out.iter().all(|(_, p)| *p == expected),
                "{urgency:?}: {out:?}"
            );
            // In place, split and lowered the same way.
            let mut each: Vec<(usize, i32)> = items.iter().map(|n| (*n, 0)).collect();
            par_each(&mut each, urgency, |(n, p)| {
                *n *= 2;
                *p = nice();
            });
            assert_eq!(each, out, "{urgency:?}");
            assert_eq!(nice(), before, "the caller's priority is untouched");
        }
        // A small batch stays on the calling thread, at its priority.
        let few: Vec<usize> = (0..PARALLEL_FROM - 1).collect();
        let out = par_map(&few, Urgency::Background, |_| nice());
        assert!(out.iter().all(|p| *p == before));
    }

    /// A part whose thread cannot be made (the process at its limit of threads) is done
    /// by the caller, in order, at the caller's priority, which stays as it was.
    #[test]
    fn a_part_without_a_thread_is_prepared_by_the_caller_in_order() {
        let items: Vec<usize> = (0..PARALLEL_FROM * 3).collect();
        let before = nice();
        let caller = std::thread::current().id();
        let _no_threads = NoThreads::set();
        for urgency in [Urgency::Background, Urgency::Waited] {
            let out = par_map(&items, urgency, |n| {
                (*n * 2, std::thread::current().id(), nice())
            });
            assert_eq!(
                out.iter().map(|(n, _, _)| *n).collect::<Vec<_>>(),
                items.iter().map(|n| n * 2).collect::<Vec<_>>(),
                "{urgency:?}"
            );
            assert!(
                out.iter()
                    .all(|(_, thread, p)| *thread == caller && *p == before),
                "{urgency:?}: every part on the caller, at its priority"
            );
            let mut each: Vec<usize> = items.clone();
            par_each(&mut each, urgency, |n| *n *= 2);
            assert_eq!(each, items.iter().map(|n| n * 2).collect::<Vec<_>>());
            assert_eq!(nice(), before, "the caller's priority is untouched");
        }
    }

    /// A panic in any part, on the caller or on a part's thread, reaches the caller with
    /// its own message, in both urgencies, with threads or without.
    #[test]
    fn a_panic_while_preparing_reaches_the_caller() {
        let items: Vec<usize> = (0..PARALLEL_FROM * 3).collect();
        let message = |payload: Box<dyn std::any::Any + Send>| {
            payload
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| payload.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                .unwrap_or_default()
        };
        for threads in [true, false] {
            let _no_threads = (!threads).then(NoThreads::set);
            for urgency in [Urgency::Background, Urgency::Waited] {
                // The first item is in the part a waited batch runs on the caller, the last
                // in a part on a thread of its own.
                for bad in [0, items.len() - 1] {
                    let panicked = std::panic::catch_unwind(|| {
                        par_map(&items, urgency, |n| {
                            assert!(*n != bad, "item {n} is bad");
                            *n
                        })
                    });
                    let payload = panicked.expect_err("the panic reached the caller");
                    assert_eq!(
                        message(payload),
                        format!("item {bad} is bad"),
                        "{urgency:?}"
                    );
                    let mut each = items.clone();
                    let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        par_each(&mut each, urgency, |n| {
                            assert!(*n != bad, "item {n} is bad")
                        })
                    }));
                    let payload = panicked.expect_err("the panic reached the caller");
                    assert_eq!(
                        message(payload),
                        format!("item {bad} is bad"),
                        "{urgency:?}"
                    );
                }
            }
        }
    }
}
