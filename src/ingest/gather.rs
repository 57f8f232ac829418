//! Webhook deliveries gathered into batches, per source. A batch of one source holds its
//! source's row lock from its first statement to its commit (see
//! `domain::source::lock_for_batch`), so deliveries stored one transaction each went one
//! at a time, however many senders and processes there were: about 130 a second on
//! PostgreSQL. Here each source has a worker that takes every delivery waiting when it
//! starts a batch (up to [`MAX_BATCH`]) and stores them in one transaction through the
//! same pipeline as a sync; each delivery is answered once its batch committed. A lone
//! delivery waits for nothing: a batch starts as soon as the worker is free, so batches
//! grow only while one is being stored.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use connectors::InboundItem;
use entity::{source, InteractionId, SourceId};
use sea_orm::DatabaseConnection;
use tokio::sync::{mpsc, oneshot};

use crate::domain;
use crate::error::{Error, Result};

/// Deliveries stored in one transaction, at most.
pub const MAX_BATCH: usize = 500;

/// How long a source's worker waits for a delivery before it goes away.
const IDLE: Duration = Duration::from_secs(30);

/// What storing one delivery did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivered {
    /// Stored now, as this interaction.
    New(InteractionId),
    /// Stored before (a replay): nothing changed.
    Duplicate,
    /// The database refused its content (not retried).
    Refused,
}

struct Job {
    source: source::Model,
    item: InboundItem,
    answer: oneshot::Sender<Result<Delivered>>,
}

/// The per-source workers of one process.
pub struct Deliveries {
    db: DatabaseConnection,
    workers: Mutex<HashMap<SourceId, mpsc::UnboundedSender<Job>>>,
}

impl Deliveries {
    pub fn new(db: DatabaseConnection) -> Arc<Deliveries> {
        Arc::new(Deliveries {
            db,
            workers: Mutex::new(HashMap::new()),
        })
    }

    /// Stores `item` for webhook `source` in the next batch of its source and answers
    /// once that batch committed (an error when the batch failed: nothing of it was
    /// stored, and the sender retries).
    pub async fn deliver(
        self: &Arc<Self>,
        source: &source::Model,
        item: InboundItem,
    ) -> Result<Delivered> {
        let mut job = Job {
            source: source.clone(),
            item,
            answer: oneshot::channel().0,
        };
        // Twice at most: a worker that went idle just as this was handed to it.
        for _ in 0..2 {
            let (answer, answered) = oneshot::channel();
            job.answer = answer;
            let sender = self.worker(source.id);
            match sender.send(job) {
                Ok(()) => {
                    return answered.await.unwrap_or_else(|_| {
                        Err(Error::Internal(
                            "the delivery's batch stopped before it answered".into(),
                        ))
                    })
                }
                Err(mpsc::error::SendError(back)) => {
                    self.forget(source.id, &sender);
                    job = back;
                }
            }
        }
        Err(Error::Internal("no worker took the delivery; retry".into()))
    }

    /// The worker of `source`, started if there is none.
    fn worker(self: &Arc<Self>, source: SourceId) -> mpsc::UnboundedSender<Job> {
        let mut workers = self.workers.lock().expect("never poisoned");
        if let Some(sender) = workers.get(&source) {
            if !sender.is_closed() {
                return sender.clone();
            }
        }
        let (sender, receiver) = mpsc::unbounded_channel();
        workers.insert(source, sender.clone());
        tokio::spawn(self.clone().work(source, sender.clone(), receiver));
        sender
    }

    /// Drops `sender` from the workers unless another took its place.
    fn forget(&self, source: SourceId, sender: &mpsc::UnboundedSender<Job>) {
        let mut workers = self.workers.lock().expect("never poisoned");
        if workers
            .get(&source)
            .is_some_and(|current| current.same_channel(sender))
        {
            workers.remove(&source);
        }
    }

    async fn work(
        self: Arc<Self>,
        source: SourceId,
        sender: mpsc::UnboundedSender<Job>,
        mut receiver: mpsc::UnboundedReceiver<Job>,
    ) {
        loop {
            let first = match tokio::time::timeout(IDLE, receiver.recv()).await {
                Ok(Some(job)) => job,
                Ok(None) => return,
                Err(_) => {
                    // Idle: go away, answering whatever arrived meanwhile first.
                    self.forget(source, &sender);
                    receiver.close();
                    let mut late = Vec::new();
                    while let Ok(job) = receiver.try_recv() {
                        late.push(job);
                    }
                    if late.is_empty() {
                        return;
                    }
                    self.store(late).await;
                    return;
                }
            };
            let mut batch = vec![first];
            while batch.len() < MAX_BATCH {
                match receiver.try_recv() {
                    Ok(job) => batch.push(job),
                    Err(_) => break,
                }
            }
            self.store(batch).await;
        }
    }

    /// Stores `jobs` (of one source) in one batch and answers each.
    async fn store(&self, jobs: Vec<Job>) {
        let Some(last) = jobs.last() else { return };
        // The newest view of the source among the deliveries.
        let source = last.source.clone();
        // A delivery sent twice before its batch started is stored once: its replay is a
        // duplicate (the per-item rule), answered below.
        let mut seen = std::collections::HashSet::new();
        let items: Vec<InboundItem> = jobs
            .iter()
            .filter(|job| seen.insert(job.item.external_id.as_str()))
            .map(|job| job.item.clone())
            .collect();
        let outcome = async {
            let report = super::ingest(&self.db, &source, &items, None, None).await?;
            let external: Vec<String> = items.iter().map(|item| item.external_id.clone()).collect();
            let stored = if report.new.is_empty() {
                HashMap::new()
            } else {
                domain::batch::stored_ids(&self.db, source.id, &external).await?
            };
            Ok::<_, Error>((report, stored))
        }
        .await;
        match outcome {
            Ok((report, stored)) => {
                let new: std::collections::HashSet<InteractionId> =
                    report.new.iter().copied().collect();
                let mut answered: std::collections::HashSet<&str> =
                    std::collections::HashSet::new();
                let refused: std::collections::HashSet<&str> =
                    report.skipped.iter().map(String::as_str).collect();
                let mut outcomes = Vec::with_capacity(jobs.len());
                for job in &jobs {
                    let id = job.item.external_id.as_str();
                    let outcome = if refused.contains(id) {
                        Delivered::Refused
                    } else {
                        match stored.get(id) {
                            // The first delivery of an id stored now; a second one in the
                            // same batch is its replay.
                            Some(row) if new.contains(row) && answered.insert(id) => {
                                Delivered::New(*row)
                            }
                            _ => Delivered::Duplicate,
                        }
                    };
                    outcomes.push(outcome);
                }
                for (job, outcome) in jobs.into_iter().zip(outcomes) {
                    let _ = job.answer.send(Ok(outcome));
                }
            }
            Err(err) if jobs.len() > 1 => {
                // One delivery may be what failed the batch: store each on its own, so
                // only that one gets the error (and its sender's retries fail alone).
                tracing::info!(error = %err, deliveries = jobs.len(), "a gathered webhook batch failed; storing its deliveries one by one");
                for job in jobs {
                    Box::pin(self.store(vec![job])).await;
                }
            }
            Err(err) => {
                for job in jobs {
                    let _ = job.answer.send(Err(same_kind(&err)));
                }
            }
        }
    }
}

/// An error like `err`, for each delivery of a batch that failed with it (errors are not
/// `Clone`: a database error becomes an internal one with its message).
fn same_kind(err: &Error) -> Error {
    match err {
        Error::BadInput { field, message } => Error::BadInput {
            field: field.clone(),
            message: message.clone(),
        },
        Error::Unauthenticated(message) => Error::Unauthenticated(message.clone()),
        Error::Forbidden(message) => Error::Forbidden(message.clone()),
        Error::NotFound { what, id } => Error::NotFound {
            what,
            id: id.clone(),
        },
        Error::Conflict(message) => Error::Conflict(message.clone()),
        Error::RateLimited { retry_after_secs } => Error::RateLimited {
            retry_after_secs: *retry_after_secs,
        },
        Error::Upstream(message) => Error::Upstream(message.clone()),
        Error::Timeout { secs } => Error::Timeout { secs: *secs },
        Error::Database(_) | Error::Internal(_) => Error::Internal(err.to_string()),
    }
}
