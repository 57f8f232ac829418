//! The indexer: a consumer of the event log (`consumer_offset` row `search`). It reads the
//! events after its offset in `seq` order, works out which interactions and customers
//! they touch, reloads those rows from the database (the truth; an event's payload may be
//! stale) and upserts or deletes their documents, then stores its new offset.
//!
//! The offset is a visibility-safe watermark. On PostgreSQL, sequence numbers are taken
//! when a transaction inserts and become visible when it commits, so `seq` 41 can appear
//! after 42 has been read. The offset therefore only moves over a contiguous run of
//! seqs. A gap holds it back while another transaction that began before the event after
//! the gap is still open (`pg_stat_activity`), for at most [`GAP_GRACE`]; with none, the
//! gap is a rollback or a deleted workspace's events and is skipped. SQLite assigns seqs in
//! commit order, so its gaps are always skipped. Events after a gap are applied now and again
//! later: every write is an idempotent upsert or delete of the current row, so nothing is
//! lost and applying twice changes nothing.

use std::collections::BTreeSet;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use entity::{CustomerId, InteractionId};
use sea_orm::DatabaseConnection;
use tokio::sync::watch;

use super::{IndexName, SearchIndex, SearchStatus};
use crate::domain::document::{self, customer_docs, interaction_docs};
use crate::domain::event::{self, EventKind, StoredEvent};
use crate::error::Result;

/// The indexer's row in `consumer_offset`.
pub const CONSUMER: &str = "search";

/// How long a gap in `seq` may hold the offset back while a transaction that could own
/// the missing seqs is still running (a longer one is taken for a rollback).
pub const GAP_GRACE: chrono::Duration = chrono::Duration::minutes(5);

#[derive(Clone)]
pub struct Indexer {
    pub db: DatabaseConnection,
    pub search: Arc<dyn SearchIndex>,
    pub status: Arc<SearchStatus>,
    /// Events read per step.
    pub batch: u64,
}

/// What one step did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Step {
    pub events: usize,
    pub interactions: usize,
    pub customers: usize,
}

/// The indexer's offset in the event log.
pub async fn offset(db: &DatabaseConnection) -> Result<i64> {
    event::offset(db, CONSUMER).await
}

/// Moves the offset back to `seq` when it is past it (a rebuild started at `seq`).
pub async fn rewind_to(db: &DatabaseConnection, seq: i64) -> Result<()> {
    event::rewind_to(db, CONSUMER, seq).await
}

/// The highest `seq` written so far.
pub async fn head(db: &DatabaseConnection) -> Result<i64> {
    event::head(db).await
}

/// Events behind: the head of the log minus the offset.
pub async fn lag(db: &DatabaseConnection) -> Result<i64> {
    Ok((head(db).await? - offset(db).await?).max(0))
}

impl Indexer {
    pub fn new(app: &crate::App) -> Indexer {
        Indexer {
            db: app.db.clone(),
            search: app.search.clone(),
            status: app.search_status.clone(),
            batch: 1_000,
        }
    }

    /// Indexes the next batch of events; `Ok` with zero events when caught up.
    pub async fn step(&self) -> Result<Step> {
        let from = offset(&self.db).await?;
        let events = event::after(&self.db, from, self.batch).await?;
        if events.is_empty() {
            self.status.lag.store(0, Ordering::Relaxed);
            return Ok(Step::default());
        }
        let mut interactions = BTreeSet::new();
        let mut conversations = BTreeSet::new();
        let mut customers = BTreeSet::new();
        let mut erased = BTreeSet::new();
        let mut organizations = BTreeSet::new();
        for event in &events {
            // An unknown kind was logged when read and touches nothing here.
            let Some(kind) = event.kind else { continue };
            match kind {
                EventKind::InteractionCreated => {
                    interactions.insert(event.entity());
                    if let Some(customer) = event.interaction().customer_id {
                        customers.insert(customer);
                    }
                }
                // A status change re-indexes the conversation's interactions (their
                // `status`); a new message in it does not need to.
                EventKind::ConversationStatusChanged => {
                    conversations.insert(event.entity());
                }
                EventKind::CustomerDeleted => {
                    erased.insert(event.entity());
                }
                EventKind::CustomerCreated | EventKind::CustomerUpdated => {
                    customers.insert(event.entity());
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
                | EventKind::SourceDeleted => {}
            }
        }
        if !conversations.is_empty() {
            interactions
                .extend(document::interactions_of_conversations(&self.db, conversations).await?);
        }
        if !organizations.is_empty() {
            customers.extend(document::customers_of_organizations(&self.db, organizations).await?);
        }
        let erased: Vec<CustomerId> = erased.into_iter().collect();
        customers.retain(|id| !erased.contains(id));
        if !erased.is_empty() {
            self.search.delete_customers(erased.clone()).await?;
            self.search.delete_interactions_of(erased).await?;
        }
        let interactions: Vec<InteractionId> = interactions.into_iter().collect();
        let customers: Vec<CustomerId> = customers.into_iter().collect();
        let step = Step {
            events: events.len(),
            interactions: interactions.len(),
            customers: customers.len(),
        };
        for chunk in interactions.chunks(500) {
            let docs = interaction_docs(&self.db, chunk).await?;
            let found: BTreeSet<InteractionId> = docs.iter().map(|doc| doc.id).collect();
            let gone: Vec<InteractionId> = chunk
                .iter()
                .filter(|id| !found.contains(id))
                .copied()
                .collect();
            self.search.upsert_interactions(docs).await?;
            self.search.delete_interactions(gone).await?;
        }
        for chunk in customers.chunks(500) {
            let docs = customer_docs(&self.db, chunk).await?;
            let found: BTreeSet<CustomerId> = docs.iter().map(|doc| doc.id).collect();
            let gone: Vec<CustomerId> = chunk
                .iter()
                .filter(|id| !found.contains(id))
                .copied()
                .collect();
            self.search.upsert_customers(docs).await?;
            if !gone.is_empty() {
                self.search.delete_customers(gone.clone()).await?;
                self.search.delete_interactions_of(gone).await?;
            }
        }
        crate::failpoint::failpoint("indexer.after_write");
        let watermark = self.watermark(from, &events).await?;
        if watermark > from {
            event::store_offset(&self.db, CONSUMER, watermark).await?;
        }
        self.status
            .indexed
            .fetch_add(events.len() as u64, Ordering::Relaxed);
        self.status
            .lag
            .store(lag(&self.db).await?, Ordering::Relaxed);
        Ok(step)
    }

    /// Steps until no event is left (tests, benchmarks); waits while a gap is held open
    /// by a transaction still running.
    pub async fn catch_up(&self) -> Result<usize> {
        let mut total = 0;
        let mut stalled = 0;
        loop {
            let before = offset(&self.db).await?;
            let step = self.step().await?;
            if step.events == 0 {
                return Ok(total);
            }
            total += step.events;
            if offset(&self.db).await? == before {
                stalled += 1;
                if stalled > 300 {
                    return Ok(total);
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            } else {
                stalled = 0;
            }
        }
    }

    /// Runs until `shutdown`: steps while there is work, polls when caught up, and backs
    /// off (1 s doubling to 30 s) while the search backend or the database fails, with
    /// the error in [`SearchStatus::last_error`].
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let mut backoff = Duration::from_secs(1);
        tracing::info!(backend = self.search.backend(), "indexer started");
        loop {
            if *shutdown.borrow() {
                break;
            }
            let pause = match self.step().await {
                Ok(step) => {
                    *self.status.last_error.lock().expect("never poisoned") = None;
                    backoff = Duration::from_secs(1);
                    if step.events > 0 && self.status.lag.load(Ordering::Relaxed) > 0 {
                        Duration::ZERO
                    } else {
                        Duration::from_millis(200)
                    }
                }
                Err(err) => {
                    tracing::warn!(error = %err, retry_in_secs = backoff.as_secs(), "indexing failed");
                    *self.status.last_error.lock().expect("never poisoned") = Some(err.to_string());
                    if let Ok(lag) = lag(&self.db).await {
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
        tracing::info!("indexer stopped");
    }
}

impl Indexer {
    /// The new offset after reading `events` (ascending) from `from`: the end of the
    /// contiguous run, going past gaps that no open transaction can still fill.
    async fn watermark(&self, from: i64, events: &[StoredEvent]) -> Result<i64> {
        let mut mark = from;
        for event in events {
            if event.seq != mark + 1 && self.gap_may_fill(event.created_at).await? {
                break;
            }
            mark = event.seq;
        }
        Ok(mark)
    }

    /// Whether a transaction that began before `at` is still open and has written, so it
    /// may commit an event with a seq below the one written at `at`.
    async fn gap_may_fill(&self, at: chrono::DateTime<chrono::Utc>) -> Result<bool> {
        if at < crate::domain::now() - GAP_GRACE {
            return Ok(false);
        }
        event::writer_open_since(&self.db, at).await
    }
}

/// Rebuilds `index` (or both) from the database aside and swaps it in, reporting
/// `(done, total)` as it goes; events written meanwhile are applied again afterwards.
pub async fn reindex(
    db: &DatabaseConnection,
    search: &Arc<dyn SearchIndex>,
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
    rewind_to(db, started_at).await?;
    Ok(done)
}
