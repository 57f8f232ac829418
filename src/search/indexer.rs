//! The indexer: a consumer of the event log (its `consumer_offset` row, named by
//! [`super::consumer`]: one per embedded index directory, one for a Meilisearch index that
//! every process shares). It reads the
//! events after its offset in `seq` order, works out which interactions and customers
//! they touch, reloads those rows from the database (the truth; an event's payload may be
//! stale) and upserts or deletes their documents, then stores its new offset.
//!
//! Writes are pipelined: a batch's writes are handed to the backend ([`SearchIndex::submit`])
//! and the next batch is read while the backend applies them (Meilisearch queues them as
//! tasks), up to [`IN_FLIGHT`] batches ahead. The offset moves only past batches whose
//! writes were all applied, oldest first; when a write fails, everything after the offset
//! is read and sent again. Every write is an idempotent upsert or delete of the current
//! row, so sending a batch twice changes nothing.
//!
//! The offset is a visibility-safe watermark. On PostgreSQL, sequence numbers are taken
//! when a transaction inserts and become visible when it commits, so `seq` 41 can appear
//! after 42 has been read. The offset therefore only moves over a contiguous run of
//! seqs. A gap holds it back while another transaction that began before the event after
//! the gap is still open (`pg_stat_activity`), for at most [`GAP_GRACE`]; with none, the
//! gap is a rollback or a deleted workspace's events and is skipped. SQLite assigns seqs in
//! commit order, so its gaps are always skipped. Events after a held gap are applied now
//! and read again from the offset once the batches before them are applied: nothing is
//! lost and applying twice changes nothing.
//!
//! One process at a time indexes a shared index: [`Indexer::run`] works only while it
//! holds the lease on its consumer row (taken and renewed with one conditional `UPDATE`,
//! given back on a graceful stop, run out after `indexer_lease_secs` when its process
//! dies), and its offset writes are fenced by that lease, so a process that stalled past
//! its lease cannot move the offset of the one that took over. The others wait and try
//! to take the lease as it would run out.

use std::collections::{BTreeSet, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use entity::{CustomerId, InteractionId};
use sea_orm::DatabaseConnection;
use tokio::sync::watch;

use super::{Change, Changes, IndexName, Progress, SearchIndex, SearchStatus, Submitted};
use crate::domain::document::{self, customer_docs, interaction_docs};
use crate::domain::event::{self, EventKind};
use crate::error::{Error, Result};

/// The shared indexer's row in `consumer_offset` (Meilisearch, and embedded directories
/// indexed before each had its own row).
pub const CONSUMER: &str = "search";

pub use crate::domain::event::GAP_GRACE;

/// Batches sent to the backend and not yet known applied, at most.
pub const IN_FLIGHT: usize = 4;

/// How often the indexer looks for new events when it has caught up.
const IDLE_POLL: Duration = Duration::from_millis(50);

/// How often it asks the backend about writes still being applied.
const APPLY_POLL: Duration = Duration::from_millis(10);

/// How long it waits before reading again past a gap a running transaction may fill.
const GAP_POLL: Duration = Duration::from_millis(100);

/// How long one write may take to apply before the step gives up (and tries again).
const APPLY_TIMEOUT: Duration = Duration::from_secs(120);

#[derive(Clone)]
pub struct Indexer {
    pub db: DatabaseConnection,
    pub search: Arc<dyn SearchIndex>,
    pub status: Arc<SearchStatus>,
    /// Events read per step.
    pub batch: u64,
    /// Its row in `consumer_offset` ([`super::consumer`]).
    pub consumer: String,
    /// This process's name on the lease.
    pub owner: String,
    /// How long a lease lasts without renewal (renewed every fifth of it).
    pub lease: Duration,
}

/// What one step did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Step {
    pub events: usize,
    pub interactions: usize,
    pub customers: usize,
}

/// The offset in the event log of the indexer of `consumer`.
pub async fn offset(db: &DatabaseConnection, consumer: &str) -> Result<i64> {
    event::offset(db, consumer).await
}

/// Moves the offset back to `seq` when it is past it (a rebuild started at `seq`).
pub async fn rewind_to(db: &DatabaseConnection, consumer: &str, seq: i64) -> Result<()> {
    event::rewind_to(db, consumer, seq).await
}

/// The highest `seq` written so far.
pub async fn head(db: &DatabaseConnection) -> Result<i64> {
    event::head(db).await
}

/// Events behind: the head of the log minus the offset of `consumer`.
pub async fn lag(db: &DatabaseConnection, consumer: &str) -> Result<i64> {
    Ok((head(db).await? - offset(db, consumer).await?).max(0))
}

/// One batch of events read and turned into index writes.
struct Batch {
    /// The seq of the last event read.
    last: i64,
    /// How far the offset may move once the writes are applied (below `last` while a
    /// gap is held open).
    watermark: i64,
    changes: Changes,
    step: Step,
}

/// A batch handed to the backend.
struct Sent {
    submitted: Submitted,
    watermark: i64,
    events: usize,
}

/// The pipeline's state between two pumps.
struct Pipeline {
    /// The stored offset.
    stored: i64,
    /// Where the next read starts (ahead of `stored` while batches are in flight).
    read_from: i64,
    in_flight: VecDeque<Sent>,
    /// A batch stopped at a gap: read nothing more until the batches sent are applied,
    /// then read again from the offset.
    held: bool,
    /// Whether offset writes are fenced by this process's lease ([`Indexer::run`]).
    leased: bool,
    /// With a lease: when this process stops trusting it (renewed well before), so a
    /// process that stalled past its lease sends nothing more to a shared index.
    trusted_until: Option<tokio::time::Instant>,
}

/// What one pump did.
#[derive(Debug, Default, Clone, Copy)]
struct Pumped {
    /// Events read and sent.
    read: usize,
    /// Whether the offset moved.
    moved: bool,
    /// Whether a gap stopped the reading.
    held: bool,
    /// Whether a read found no event after those read before. A pump that sent nothing
    /// because its batches were all in flight has not drained the log, even when they
    /// were all applied by the time it returned.
    drained: bool,
}

impl Indexer {
    pub fn new(app: &crate::App) -> Indexer {
        Indexer {
            db: app.db.clone(),
            search: app.search.clone(),
            status: app.search_status.clone(),
            batch: 1_000,
            consumer: app.search_consumer.clone(),
            owner: format!(
                "pid{}-{}",
                std::process::id(),
                hex::encode(rand::random::<[u8; 4]>())
            ),
            lease: Duration::from_secs(app.config.indexer_lease_secs.max(1)),
        }
    }

    /// Stores the offset; with a `leased` pipeline only while this process holds the
    /// lease (`CONFLICT` when another took it over, and nothing is written).
    async fn store_offset(&self, leased: bool, seq: i64) -> Result<()> {
        if !leased {
            return event::store_offset(&self.db, &self.consumer, seq).await;
        }
        if event::store_leased_offset(&self.db, &self.consumer, &self.owner, seq).await? {
            Ok(())
        } else {
            Err(Error::Conflict(
                "the indexer's lease was taken over by another process".into(),
            ))
        }
    }

    /// Takes or renews this process's lease on the index: whether it holds it now.
    async fn claim(&self) -> Result<bool> {
        let until = crate::domain::now()
            + chrono::Duration::from_std(self.lease).unwrap_or(chrono::Duration::seconds(15));
        event::claim(&self.db, &self.consumer, &self.owner, until).await
    }

    /// Reads the events after `from` and works out their writes; `None` when there is none.
    async fn read(&self, from: i64) -> Result<Option<Batch>> {
        let events = event::after(&self.db, from, self.batch).await?;
        let Some(last) = events.last().map(|event| event.seq) else {
            return Ok(None);
        };
        let mut interactions = BTreeSet::new();
        let mut conversations = BTreeSet::new();
        let mut customers = BTreeSet::new();
        let mut erased = BTreeSet::new();
        let mut organizations = BTreeSet::new();
        let mut merges = Vec::new();
        for event in &events {
            // An unknown kind was logged when read and touches nothing here.
            let Some(kind) = event.kind else { continue };
            match kind {
                // A reply's delivery may change its text (the mention a platform needs).
                EventKind::InteractionCreated | EventKind::InteractionDeliveryChanged => {
                    interactions.insert(event.entity());
                    if let Some(customer) = event.interaction().customer_id {
                        customers.insert(customer);
                    }
                }
                // A status change re-indexes the conversation's interactions (their
                // `status`); a new message in it does not need to.
                EventKind::ConversationStatusChanged
                | EventKind::ConversationStatusSet
                | EventKind::ConversationWoken => {
                    conversations.insert(event.entity());
                }
                EventKind::CustomerDeleted => {
                    erased.insert(event.entity());
                }
                // Written after the interactions moved away were, so they are upserted
                // after the erased customer's are deleted (see the order below).
                EventKind::CustomerErased => {
                    erased.insert(event.entity());
                    if let Some(moved) = event.payload.get("moved") {
                        interactions.extend(
                            serde_json::from_value::<Vec<InteractionId>>(moved.clone())
                                .unwrap_or_default(),
                        );
                    }
                }
                EventKind::CustomerCreated | EventKind::CustomerUpdated => {
                    customers.insert(event.entity());
                }
                // The merged customer leaves the index (its document is gone, and with it
                // the interactions still filed under it), the survivor is rewritten with
                // the merged one's names and addresses, and the moved interactions are
                // filed under whoever holds them now; an unmerge files back those of
                // the customer restored.
                EventKind::CustomerMerged | EventKind::CustomerUnmerged => {
                    if let Some(merge) = event.merge() {
                        customers.insert(merge.survivor_id);
                        customers.insert(merge.merged_id);
                        merges.push((kind, merge));
                    }
                }
                EventKind::OrganizationCreated | EventKind::OrganizationUpdated => {
                    organizations.insert(event.entity());
                }
                EventKind::ConversationCreated
                | EventKind::ConversationUpdated
                | EventKind::NoteCreated
                | EventKind::DealCreated
                | EventKind::DealUpdated
                | EventKind::SourceCreated
                | EventKind::SourceUpdated
                | EventKind::SourceDeleted
                | EventKind::UserCreated
                | EventKind::UserUpdated
                | EventKind::ConversationAssigned
                | EventKind::ConversationPrioritySet
                | EventKind::ConversationLabelAdded
                | EventKind::ConversationLabelRemoved
                | EventKind::ConversationSpamSet
                | EventKind::ConversationNoteAdded
                | EventKind::WorkspaceSettingsUpdated
                | EventKind::SavedReplyCreated
                | EventKind::SavedReplyUpdated
                | EventKind::SavedReplyDeleted
                | EventKind::SlaRuleSet
                | EventKind::SlaRuleDeleted
                | EventKind::BusinessHoursSet => {}
            }
        }
        if !conversations.is_empty() {
            interactions
                .extend(document::interactions_of_conversations(&self.db, conversations).await?);
        }
        if !organizations.is_empty() {
            customers.extend(document::customers_of_organizations(&self.db, organizations).await?);
        }
        for (kind, merge) in merges {
            interactions.extend(match kind {
                EventKind::CustomerMerged => {
                    document::interactions_of_merge(&self.db, merge.merge_id).await?
                }
                _ => document::interactions_of_customer(&self.db, merge.merged_id).await?,
            });
        }
        let erased: Vec<CustomerId> = erased.into_iter().collect();
        customers.retain(|id| !erased.contains(id));
        let interactions: Vec<InteractionId> = interactions.into_iter().collect();
        let customers: Vec<CustomerId> = customers.into_iter().collect();
        let step = Step {
            events: events.len(),
            interactions: interactions.len(),
            customers: customers.len(),
        };
        // In this order: what is erased goes first; interactions before customers, so
        // an interaction moved to another customer is written before the interactions
        // of a customer gone (merged) are deleted.
        let mut changes = Changes::default();
        if !erased.is_empty() {
            changes.push(Change::DeleteCustomers(erased.clone()));
            changes.push(Change::DeleteInteractionsOf(erased));
        }
        let mut docs = Vec::with_capacity(interactions.len());
        let mut gone = Vec::new();
        for chunk in interactions.chunks(500) {
            let found = interaction_docs(&self.db, chunk).await?;
            let ids: BTreeSet<InteractionId> = found.iter().map(|doc| doc.id).collect();
            gone.extend(chunk.iter().filter(|id| !ids.contains(id)).copied());
            docs.extend(found);
        }
        changes.push(Change::UpsertInteractions(docs));
        changes.push(Change::DeleteInteractions(gone));
        let mut docs = Vec::with_capacity(customers.len());
        let mut gone = Vec::new();
        for chunk in customers.chunks(500) {
            let found = customer_docs(&self.db, chunk).await?;
            let ids: BTreeSet<CustomerId> = found.iter().map(|doc| doc.id).collect();
            gone.extend(chunk.iter().filter(|id| !ids.contains(id)).copied());
            docs.extend(found);
        }
        changes.push(Change::UpsertCustomers(docs));
        if !gone.is_empty() {
            changes.push(Change::DeleteCustomers(gone.clone()));
            changes.push(Change::DeleteInteractionsOf(gone));
        }
        let watermark = event::visible_until(&self.db, from, &events).await?;
        Ok(Some(Batch {
            last,
            watermark,
            changes,
            step,
        }))
    }

    /// Waits until the backend has applied `submitted` (an error when a write failed).
    async fn applied(&self, submitted: &Submitted) -> Result<()> {
        let deadline = tokio::time::Instant::now() + APPLY_TIMEOUT;
        loop {
            match self.search.progress(submitted).await? {
                Progress::Applied => return Ok(()),
                Progress::Failed(reason) => return Err(write_failed(&reason)),
                Progress::Applying if tokio::time::Instant::now() >= deadline => {
                    return Err(Error::Internal(
                        "the search backend did not apply a write in time".into(),
                    ))
                }
                Progress::Applying => tokio::time::sleep(APPLY_POLL).await,
            }
        }
    }

    /// Indexes the next batch of events and waits until it is searchable; `Ok` with zero
    /// events when caught up.
    pub async fn step(&self) -> Result<Step> {
        let from = offset(&self.db, &self.consumer).await?;
        let Some(batch) = self.read(from).await? else {
            self.status.lag.store(0, Ordering::Relaxed);
            return Ok(Step::default());
        };
        let submitted = self.search.submit(batch.changes).await?;
        self.applied(&submitted).await?;
        crate::failpoint::failpoint("indexer.after_write");
        if batch.watermark > from {
            self.store_offset(false, batch.watermark).await?;
        }
        self.status
            .indexed
            .fetch_add(batch.step.events as u64, Ordering::Relaxed);
        self.status
            .lag
            .store(lag(&self.db, &self.consumer).await?, Ordering::Relaxed);
        Ok(batch.step)
    }

    async fn pipeline(&self, leased: bool) -> Result<Pipeline> {
        let stored = offset(&self.db, &self.consumer).await?;
        Ok(Pipeline {
            stored,
            read_from: stored,
            in_flight: VecDeque::new(),
            held: false,
            leased,
            trusted_until: None,
        })
    }

    /// Sends batches while fewer than [`IN_FLIGHT`] are in flight, then moves the offset
    /// over the ones applied, oldest first; a batch applied when submitted (the embedded
    /// backend) has the offset moved past it before the next is read. A failed write is an
    /// error, after which the pipeline must be started again from the stored offset.
    async fn pump(&self, pipeline: &mut Pipeline) -> Result<Pumped> {
        let mut pumped = Pumped::default();
        // At most IN_FLIGHT batches a pump, applied on submit or not, so that the caller
        // gets to look at its shutdown signal under steady ingestion.
        let mut sent = 0;
        while sent < IN_FLIGHT && pipeline.in_flight.len() < IN_FLIGHT && !pipeline.held {
            sent += 1;
            let Some(batch) = self.read(pipeline.read_from).await? else {
                pumped.drained = true;
                break;
            };
            if pipeline
                .trusted_until
                .is_some_and(|until| tokio::time::Instant::now() >= until)
            {
                // Stalled past the lease: another process may index now, and what was
                // read before the stall must not overwrite what it wrote.
                return Err(Error::Conflict(
                    "the indexer's lease ran out before it could renew it".into(),
                ));
            }
            let submitted = self.search.submit(batch.changes).await?;
            pumped.read += batch.step.events;
            pipeline.held = batch.watermark < batch.last;
            pipeline.read_from = batch.last;
            let applied = submitted.tasks.is_empty();
            pipeline.in_flight.push_back(Sent {
                submitted,
                watermark: batch.watermark,
                events: batch.step.events,
            });
            if applied {
                // Applied when submitted (the embedded backend): the offset passes it now,
                // not after the reads and writes of the batches behind it.
                self.settle(pipeline, &mut pumped).await?;
            }
        }
        pumped.held = pipeline.held;
        self.settle(pipeline, &mut pumped).await?;
        if pipeline.held && pipeline.in_flight.is_empty() {
            // Everything before the gap is applied: read again from the offset.
            pipeline.held = false;
            pipeline.read_from = pipeline.stored;
        }
        if pumped.drained && pipeline.in_flight.is_empty() && !pumped.held {
            self.status.lag.store(0, Ordering::Relaxed);
        } else if pumped.moved {
            let behind = (head(&self.db).await? - pipeline.stored).max(0);
            self.status.lag.store(behind, Ordering::Relaxed);
        }
        Ok(pumped)
    }

    /// Moves the offset over the batches in flight that are applied, oldest first.
    async fn settle(&self, pipeline: &mut Pipeline, pumped: &mut Pumped) -> Result<()> {
        while let Some(front) = pipeline.in_flight.front() {
            match self.search.progress(&front.submitted).await? {
                Progress::Applying => break,
                Progress::Failed(reason) => return Err(write_failed(&reason)),
                Progress::Applied => {
                    crate::failpoint::failpoint("indexer.after_write");
                    if front.watermark > pipeline.stored {
                        self.store_offset(pipeline.leased, front.watermark).await?;
                        pipeline.stored = front.watermark;
                        pumped.moved = true;
                    }
                    self.status
                        .indexed
                        .fetch_add(front.events as u64, Ordering::Relaxed);
                    pipeline.in_flight.pop_front();
                }
            }
        }
        Ok(())
    }

    /// Indexes until no event is left (tests, benchmarks), with the pipeline; waits while
    /// a gap is held open by a transaction still running. Returns the events read.
    pub async fn catch_up(&self) -> Result<usize> {
        let mut pipeline = self.pipeline(false).await?;
        let mut total = 0;
        let mut stalled = 0;
        loop {
            let pumped = self.pump(&mut pipeline).await?;
            total += pumped.read;
            if pumped.drained && pipeline.in_flight.is_empty() && !pumped.held {
                return Ok(total);
            }
            if pumped.moved || pumped.read > 0 && !pumped.held {
                stalled = 0;
            } else if pumped.held {
                // Only a gap holds it back.
                stalled += 1;
                if stalled > 300 {
                    return Ok(total);
                }
                tokio::time::sleep(GAP_POLL).await;
            } else if !pipeline.in_flight.is_empty() {
                tokio::time::sleep(APPLY_POLL).await;
            }
        }
    }

    /// Runs until `shutdown`: while this process holds the index's lease, pumps while
    /// there is work and polls when caught up; without it, tries to take it as it would
    /// run out. Backs off (1 s doubling to 30 s) while the search backend or the database
    /// fails, with the error in [`SearchStatus::last_error`]. Gives the lease back when
    /// it stops, so another process takes over at once.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let mut backoff = Duration::from_secs(1);
        let mut pipeline: Option<Pipeline> = None;
        let renew_every = self.lease / 5;
        let mut renewed: Option<tokio::time::Instant> = None;
        let mut reclaim = false;
        tracing::info!(
            backend = self.search.backend(),
            consumer = %self.consumer,
            owner = %self.owner,
            "indexer started"
        );
        loop {
            if *shutdown.borrow() {
                break;
            }
            let due = reclaim || renewed.is_none_or(|at| at.elapsed() >= renew_every);
            reclaim = false;
            let holding = if due {
                match self.claim().await {
                    Ok(true) => {
                        if renewed.is_none() {
                            tracing::info!(consumer = %self.consumer, "indexer took the lease: indexing");
                        }
                        renewed = Some(tokio::time::Instant::now());
                        Ok(true)
                    }
                    Ok(false) => {
                        if renewed.is_some() {
                            tracing::warn!(consumer = %self.consumer, "indexer lost its lease to another process: standing by");
                        }
                        renewed = None;
                        pipeline = None;
                        Ok(false)
                    }
                    Err(err) => Err(err),
                }
            } else {
                Ok(true)
            };
            self.status
                .active
                .store(matches!(holding, Ok(true)), Ordering::Relaxed);
            let pumped = match holding {
                Ok(false) => {
                    // Standing by: the holder indexes; follow what it writes (a shared
                    // embedded directory) and try again within a renewal.
                    if let Err(err) = self.search.refresh().await {
                        tracing::debug!(error = %err, "following the index failed");
                    }
                    backoff = Duration::from_secs(1);
                    let pause = renew_every.min(Duration::from_secs(1));
                    tokio::select! {
                        () = tokio::time::sleep(pause) => {}
                        _ = shutdown.changed() => {}
                    }
                    continue;
                }
                Err(err) => Err(err),
                Ok(true) => match pipeline.as_mut() {
                    Some(pipeline) => {
                        // Trusted for three fifths of the lease after its last renewal.
                        pipeline.trusted_until = renewed.map(|at| at + self.lease * 3 / 5);
                        self.pump(pipeline).await.map(Some)
                    }
                    None => self.pipeline(true).await.map(|started| {
                        pipeline = Some(started);
                        None
                    }),
                },
            };
            let pause = match pumped {
                Ok(pumped) => {
                    *self.status.last_error.lock().expect("never poisoned") = None;
                    backoff = Duration::from_secs(1);
                    let in_flight = pipeline.as_ref().is_some_and(|p| !p.in_flight.is_empty());
                    match pumped {
                        None => Duration::ZERO,
                        Some(pumped) if pumped.held => GAP_POLL,
                        Some(_) if in_flight => APPLY_POLL,
                        Some(pumped) if pumped.read > 0 || !pumped.drained => Duration::ZERO,
                        Some(_) => IDLE_POLL,
                    }
                }
                Err(err) => {
                    tracing::warn!(error = %err, retry_in_secs = backoff.as_secs(), "indexing failed");
                    *self.status.last_error.lock().expect("never poisoned") = Some(err.to_string());
                    // Start again from the stored offset: what was in flight is sent again.
                    pipeline = None;
                    // And claim again before going on: the lease may be someone else's.
                    reclaim = true;
                    if let Ok(lag) = lag(&self.db, &self.consumer).await {
                        self.status.lag.store(lag, Ordering::Relaxed);
                    }
                    let pause = backoff;
                    backoff = (backoff * 2).min(Duration::from_secs(30));
                    pause
                }
            };
            tokio::select! {
                () = tokio::time::sleep(pause) => {}
                _ = shutdown.changed() => {}
            }
        }
        if renewed.is_some() {
            if let Err(err) = event::release(&self.db, &self.consumer, &self.owner).await {
                tracing::warn!(error = %err, "the indexer could not give its lease back; it runs out by itself");
            }
        }
        self.status.active.store(false, Ordering::Relaxed);
        tracing::info!("indexer stopped");
    }
}

fn write_failed(reason: &str) -> Error {
    Error::Internal(format!("the search backend failed a write: {reason}"))
}

/// Rebuilds `index` (or both) from the database aside and swaps it in, reporting
/// `(done, total)` as it goes; events written meanwhile are applied again afterwards.
pub async fn reindex(
    db: &DatabaseConnection,
    search: &Arc<dyn SearchIndex>,
    consumer: &str,
    only: Option<IndexName>,
    progress: &(dyn Fn(IndexName, u64, u64) + Sync),
) -> Result<Vec<(IndexName, u64)>> {
    let started_at = head(db).await?;
    let mut done = Vec::new();
    for index in IndexName::ALL {
        if only.is_some_and(|only| only != index) {
            continue;
        }
        let mut rebuild = search.begin_rebuild(index).await?;
        let total = match index {
            IndexName::Interactions => document::count_interactions(db).await?,
            IndexName::Customers => document::count_customers(db).await?,
        };
        let mut count = 0u64;
        let mut after_interaction = None;
        let mut after_customer = None;
        loop {
            let added = match index {
                IndexName::Interactions => {
                    let ids = document::interaction_ids_after(db, after_interaction).await?;
                    let Some(last) = ids.last() else { break };
                    after_interaction = Some(*last);
                    rebuild
                        .add_interactions(interaction_docs(db, &ids).await?)
                        .await?;
                    ids.len()
                }
                IndexName::Customers => {
                    let ids = document::customer_ids_after(db, after_customer).await?;
                    let Some(last) = ids.last() else { break };
                    after_customer = Some(*last);
                    rebuild
                        .add_customers(customer_docs(db, &ids).await?)
                        .await?;
                    ids.len()
                }
            };
            count += added as u64;
            progress(index, count, total);
        }
        rebuild.finish().await?;
        done.push((index, count));
    }
    rewind_to(db, consumer, started_at).await?;
    Ok(done)
}
