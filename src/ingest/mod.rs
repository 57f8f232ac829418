//! Ingestion: what connectors return enters the database here. [`ingest`] stores one
//! batch in one transaction, the source's new cursor included, so a crash at any point
//! loses nothing and duplicates nothing: either the batch and its cursor are committed,
//! or neither is, and a replayed item is dropped by the UNIQUE (source, external id).
//!
//! Every item is normalised first ([`crate::domain::text::normalize_item`]: NFC, control
//! characters and NUL stripped from every text, author field, id and raw JSON string),
//! so SQLite and PostgreSQL store the same thing. Each item is stored under its own
//! savepoint: an item the database still refuses for its data (PostgreSQL SQLSTATE
//! classes 22 and 23, SQLite's TOOBIG/CONSTRAINT/MISMATCH) is rolled back alone, logged
//! and counted in [`IngestReport::skipped`], and the rest of the batch lands. Any other
//! error (connection, lock, lease) still fails the whole batch, so nothing is lost.

pub mod gather;
pub mod quality;
pub mod reply;
pub mod scheduler;
pub mod snooze;
pub mod sync;
pub mod unlisten;

use std::sync::atomic::{AtomicUsize, Ordering};

use sea_orm::{ConnectionTrait, DatabaseConnection, DatabaseTransaction, TransactionTrait};

pub use crate::domain::batch::Prepared;
pub use crate::domain::source::Lease;
use crate::domain::{self, Direction};
use crate::error::Result;
use crate::failpoint::failpoint;
use connectors::{Connector, ConnectorError, InboundItem};
use entity::{source, InteractionId};

/// What a batch did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct IngestReport {
    /// Interactions stored by this batch.
    pub new: Vec<InteractionId>,
    /// Items already stored before (replays).
    pub duplicates: usize,
    /// Customers created for unknown authors.
    pub new_customers: usize,
    /// External ids of items the database refused for their data: skipped, logged, and
    /// not retried (the cursor moves past them).
    pub skipped: Vec<String>,
    /// Items dropped because they, or their author, were erased or deleted before
    /// ([`domain::erase::keep_mask`]).
    pub erased: usize,
}

/// What storing one item did.
enum Stored {
    New {
        id: InteractionId,
        new_customer: bool,
    },
    Duplicate,
}

/// The connector of `source`, built from its settings and secrets; every connection it
/// opens goes through `outbound`. With the server's `public_url` it is told the address
/// its webhook deliveries reach the server at. The one place a source becomes a connector.
pub fn connector(
    source: &source::Model,
    outbound: &connectors::outbound::Outbound,
    public_url: Option<&str>,
) -> std::result::Result<Box<dyn Connector>, ConnectorError> {
    let channel = source.channel;
    let mut connector = connectors::build(channel, &domain::source::full_config(source), outbound)?;
    if let Some(base) = public_url {
        connector.listen_at(&format!(
            "{}/webhooks/{}",
            base.trim_end_matches('/'),
            crate::ids::encode(source.id)
        ));
    }
    Ok(connector)
}

/// Stores `items` of `source` and moves its cursor to `next_cursor` (when given), all in
/// one transaction. For each item not yet stored: the author is resolved to an identity
/// and a customer, the item is threaded into a conversation (by thread key, else the
/// conversation of the item it answers, else its own id), stored, and events written.
/// The workspace's own replies (outbound items answering a stored item) join the
/// answered conversation and its customer instead of being filed under our own account.
///
/// With a `lease`, the batch commits only if the source is still leased to its owner
/// (`CONFLICT` otherwise, and nothing is stored): a run that lost its lease to another
/// process cannot move the cursor behind that process's back.
pub async fn ingest(
    db: &DatabaseConnection,
    source: &source::Model,
    items: &[InboundItem],
    next_cursor: Option<&str>,
    lease: Option<Lease<'_>>,
) -> Result<IngestReport> {
    let prepared = prepare(db, source, items, domain::batch::Urgency::Waited).await?;
    store(db, source, prepared, next_cursor, lease).await
}

/// New items this process stored since it last asked whether the tables they grew need
/// fresh planner statistics.
static UNCHECKED: AtomicUsize = AtomicUsize::new(0);

/// How many new items between two such questions.
const STATISTICS_EVERY: usize = 500;

/// [`ingest`]'s second half: stores a batch [`prepare`] made ready, and moves the cursor,
/// in one transaction. Split from the first half so a sync can prepare its next batch
/// while this one's transaction runs.
pub async fn store(
    db: &DatabaseConnection,
    source: &source::Model,
    mut prepared: Prepared,
    next_cursor: Option<&str>,
    lease: Option<Lease<'_>>,
) -> Result<IngestReport> {
    let txn = db.begin().await?;
    // Write first: the source's row is locked before anything is read (see
    // `lock_for_batch` for why each backend needs it).
    domain::source::lock_for_batch(&txn, source.id).await?;
    let keep = domain::erase::keep_mask(&txn, source, prepared.items()).await?;
    let erased = prepared.retain(&keep);
    let savepoint = txn.begin().await?;
    let mid_batch = || failpoint("ingest.mid_batch");
    let report = match domain::batch::store(&savepoint, source, &mut prepared, &mid_batch).await {
        Ok(stored) => {
            savepoint.commit().await?;
            IngestReport {
                new: stored.new,
                duplicates: stored.duplicates,
                new_customers: stored.new_customers,
                skipped: Vec::new(),
                erased,
            }
        }
        Err(err) if domain::refused_for_its_data(&err) => {
            // Some item's data is refused: store them one by one, so only that item
            // is skipped.
            savepoint.rollback().await?;
            tracing::info!(
                source = %crate::ids::encode(source.id),
                error = %err,
                "the database refused part of a batch; storing its items one by one"
            );
            IngestReport {
                erased,
                ..ingest_one_by_one(&txn, source, prepared.items(), prepared.languages()).await?
            }
        }
        Err(err) => return Err(err),
    };
    // A lost lease is a `CONFLICT`; dropping the transaction rolls the batch back.
    domain::source::record_batch(&txn, source.id, report.new.len(), next_cursor, lease).await?;
    failpoint("ingest.before_commit");
    txn.commit().await?;
    crate::db::checkpoint_aside(db);
    // The statistics can be stale only after 1,000 changed rows (see
    // `refresh_statistics`): asking the catalogue after every small batch (a webhook
    // delivery's) cost a query a batch for nothing.
    let stored = UNCHECKED.fetch_add(report.new.len(), Ordering::Relaxed) + report.new.len();
    if stored >= STATISTICS_EVERY && UNCHECKED.swap(0, Ordering::Relaxed) > 0 {
        // After the commit: a failure here is no failure of the batch, which is stored.
        if let Err(err) = domain::batch::refresh_statistics(db).await {
            tracing::warn!(error = %err, "refreshing planner statistics failed");
        }
    }
    Ok(report)
}

/// Normalises `items` and, for a batch large enough to gain from it, enriches those not
/// stored yet (language, sentiment) on every core, before any transaction opens: the
/// batch's transaction then holds its locks only for the database's work. A sync prepares
/// in the background ([`domain::batch::Urgency`]).
pub async fn prepare(
    db: &DatabaseConnection,
    source: &source::Model,
    items: &[InboundItem],
    urgency: domain::batch::Urgency,
) -> Result<Prepared> {
    // The workspace's languages, as set when the batch is prepared (a change applies to
    // the batches prepared after it).
    let languages = domain::workspace::languages(db, source.workspace_id).await?;
    if items.len() < domain::batch::PARALLEL_FROM {
        return Ok(domain::batch::unprepared(
            items.iter().map(domain::text::normalize_item).collect(),
            languages,
        ));
    }
    let owned = items.to_vec();
    let normalized = blocking(move || domain::batch::normalize(owned, urgency)).await?;
    let external_ids: Vec<String> = normalized
        .iter()
        .map(|item| item.external_id.clone())
        .collect();
    // Read outside the transaction, so only a hint: an item stored meanwhile is found
    // again inside it, and one found here but gone there is enriched there.
    let stored = domain::batch::stored_external_ids(db, source.id, &external_ids).await?;
    blocking(move || domain::batch::prepare(normalized, &stored, urgency, languages)).await
}

/// Runs CPU-bound `work` on the blocking pool, off the async workers.
async fn blocking<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|err| crate::error::Error::Internal(format!("preparing a batch failed: {err}")))
}

/// Stores `items` of `source` the way a batch the set-based writer refused is stored,
/// item by item ([`ingest_one_by_one`]), in one transaction, cursor untouched. Public so
/// tests can hold the two paths to the same rules; ingestion itself goes through
/// [`ingest`].
#[doc(hidden)]
pub async fn ingest_item_by_item(
    db: &DatabaseConnection,
    source: &source::Model,
    items: &[InboundItem],
) -> Result<IngestReport> {
    let txn = db.begin().await?;
    domain::source::lock_for_batch(&txn, source.id).await?;
    let mut normalized: Vec<InboundItem> = items.iter().map(domain::text::normalize_item).collect();
    let keep = domain::erase::keep_mask(&txn, source, &normalized).await?;
    let mut flags = keep.iter();
    normalized.retain(|_| flags.next().copied().unwrap_or(true));
    let erased = keep.iter().filter(|keep| !**keep).count();
    let languages = domain::workspace::languages(&txn, source.workspace_id).await?;
    let report = IngestReport {
        erased,
        ..ingest_one_by_one(&txn, source, &normalized, &languages).await?
    };
    txn.commit().await?;
    Ok(report)
}

/// Stores each (normalised) item under its own savepoint: an item the database refuses
/// for its data is rolled back alone, logged and reported as skipped. The path of a batch
/// the set-based writer could not store whole.
async fn ingest_one_by_one(
    txn: &DatabaseTransaction,
    source: &source::Model,
    items: &[InboundItem],
    languages: &domain::enrich::Languages,
) -> Result<IngestReport> {
    let external_ids: Vec<String> = items.iter().map(|item| item.external_id.clone()).collect();
    let stored = domain::interaction::stored_external_ids(txn, source.id, &external_ids).await?;
    let mut report = IngestReport::default();
    for item in items {
        if stored.contains(&item.external_id) {
            report.duplicates += 1;
            continue;
        }
        let savepoint = txn.begin().await?;
        match store_item(&savepoint, source, item, languages).await {
            Ok(outcome) => {
                savepoint.commit().await?;
                match outcome {
                    Stored::New { id, new_customer } => {
                        report.new.push(id);
                        report.new_customers += usize::from(new_customer);
                    }
                    Stored::Duplicate => report.duplicates += 1,
                }
            }
            Err(err) if domain::refused_for_its_data(&err) => {
                savepoint.rollback().await?;
                tracing::warn!(
                    source = %crate::ids::encode(source.id),
                    external_id = %item.external_id,
                    error = %err,
                    "an item the database refused was skipped; the rest of the batch is stored"
                );
                report.skipped.push(item.external_id.clone());
            }
            Err(err) => return Err(err),
        }
        failpoint("ingest.mid_batch");
    }
    Ok(report)
}

/// Stores one (normalised) item inside the batch's transaction: author, conversation,
/// interaction and events.
async fn store_item(
    txn: &impl ConnectionTrait,
    source: &source::Model,
    item: &InboundItem,
    languages: &domain::enrich::Languages,
) -> Result<Stored> {
    let channel = source.channel;
    let direction = if item.outbound {
        Direction::Outbound
    } else {
        Direction::Inbound
    };
    // A reply joins the conversation of the item it answers when that is stored;
    // otherwise the item is filed under its thread key (its own id when it has none).
    let answered = match (&item.thread_key, &item.in_reply_to) {
        (None, Some(parent)) => {
            domain::interaction::conversation_of(txn, source.id, parent).await?
        }
        _ => None,
    };
    let (answered, parent_customer) = match answered {
        Some((conversation, parent_customer)) => (
            domain::conversation::on_interaction(
                txn,
                source.workspace_id,
                conversation,
                direction,
                item.occurred_at,
            )
            .await?,
            parent_customer,
        ),
        None => (None, None),
    };
    // The workspace's own items are never a customer's: only inbound authors are
    // resolved, and our own item is filed under the conversation's customer, else the
    // answered item's, else none (a publication).
    let author = if item.outbound {
        None
    } else {
        Some(
            domain::identity::resolve_author(
                txn,
                source.workspace_id,
                source.id,
                channel,
                &item.author,
                item.occurred_at,
            )
            .await?,
        )
    };
    let conversation = match answered {
        Some(conversation) => conversation,
        None => {
            let thread_key = item
                .thread_key
                .as_ref()
                .or(item.in_reply_to.as_ref())
                .unwrap_or(&item.external_id);
            let threaded = domain::conversation::Threaded {
                workspace_id: source.workspace_id,
                source_id: source.id,
                thread_key,
                customer_id: author.as_ref().map(|author| author.identity.customer_id),
                channel,
                subject: item.subject.as_deref(),
                direction,
                at: item.occurred_at,
            };
            domain::conversation::thread(txn, threaded).await?
        }
    };
    let (customer_id, identity_id, new_customer) = match &author {
        Some(author) => (
            Some(author.identity.customer_id),
            Some(author.identity.id),
            author.new_customer,
        ),
        None => (conversation.customer_id.or(parent_customer), None, false),
    };
    let conversation_id = conversation.id;
    let ingested = domain::interaction::Ingested {
        workspace_id: source.workspace_id,
        source_id: source.id,
        channel,
        customer_id,
        identity_id,
        conversation_id,
        item,
    };
    Ok(
        match domain::interaction::insert_ingested(txn, ingested, languages).await? {
            Some(model) => Stored::New {
                id: model.id,
                new_customer,
            },
            None => Stored::Duplicate,
        },
    )
}
