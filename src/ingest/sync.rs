//! One sync of one pull source: claim it with a lease, pull batches from its connector,
//! store each batch with its cursor, then record how it went (status, last error, next
//! run with backoff) and release the lease.
//!
//! The lease and the run record are [`domain::source`]'s ([`domain::source::claim_due`],
//! [`domain::source::record_run`]): this module decides, the domain writes the row.

use std::time::Duration;

use chrono::{DateTime, Utc};
use rand::Rng;
use sea_orm::DatabaseConnection;

use super::Lease;
use crate::config::SyncConfig;
use crate::domain::{
    self,
    source::{RunOutcome, SourceStatus},
};
use crate::error::{Error, Result};
use crate::ids;
use connectors::{ConnectorError, Cursor};
use entity::source::Model;
use entity::SourceId;

/// What one sync did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SyncReport {
    /// Interactions stored.
    pub new: usize,
    /// Items seen again and dropped.
    pub duplicates: usize,
    /// Batches pulled.
    pub batches: usize,
    /// Why the sync stopped early, when it failed.
    pub error: Option<String>,
}

/// Who runs syncs: the database, the outbound guard (with the shared HTTP client), this
/// process's lease name and the `[sync]` settings.
#[derive(Clone)]
pub struct Syncer {
    pub db: DatabaseConnection,
    pub outbound: connectors::outbound::Outbound,
    pub owner: String,
    pub config: SyncConfig,
    /// The server's `[http] public_url`, for connectors that register their webhook.
    pub public_url: Option<String>,
}

impl Syncer {
    pub fn new(app: &crate::App) -> Syncer {
        Syncer {
            db: app.db.clone(),
            outbound: app.outbound.clone(),
            owner: format!(
                "pid{}-{}",
                std::process::id(),
                hex::encode(rand::random::<[u8; 4]>())
            ),
            config: app.config.sync.clone(),
            public_url: app.config.http.public_url.clone(),
        }
    }

    fn lease(&self) -> Lease<'_> {
        Lease {
            owner: &self.owner,
            until: domain::now() + chrono::Duration::seconds(self.config.lease_secs.max(1) as i64),
        }
    }

    /// Claims up to `limit` due sources (pull channels, not paused, `next_run_at` passed,
    /// no live lease), oldest due first.
    pub async fn claim_due(&self, limit: usize) -> Result<Vec<Model>> {
        domain::source::claim_due(&self.db, self.lease(), limit).await
    }

    /// Claims one source to sync it now, whatever its schedule. `CONFLICT` while another
    /// run holds it; `BAD_USER_INPUT` for a paused source or one that is not pulled.
    pub async fn claim(&self, source: &Model) -> Result<Model> {
        domain::source::claim(&self.db, source, self.lease()).await
    }

    /// Runs a claimed source: pulls batch after batch (at most `max_batches`, stopping
    /// early when `stop` says so after a batch is stored), then records the outcome and
    /// releases the lease. Connector errors become the source's status and backoff; they
    /// are returned in the report, not as an `Err`.
    pub async fn run(&self, source: Model, stop: &(dyn Fn() -> bool + Sync)) -> Result<SyncReport> {
        use tracing::Instrument;
        let span = tracing::info_span!("sync", source = %ids::encode(source.id), channel = %source.channel);
        self.run_claimed(source, stop).instrument(span).await
    }

    async fn run_claimed(
        &self,
        source: Model,
        stop: &(dyn Fn() -> bool + Sync),
    ) -> Result<SyncReport> {
        let started = std::time::Instant::now();
        let mut report = SyncReport::default();
        let mut not_before: Option<DateTime<Utc>> = None;
        let outcome = self
            .pull_batches(&source, &mut report, &mut not_before, stop)
            .await;
        let scrub = |message: String| domain::source::scrub(&source, message);
        let now = domain::now();
        let failures = source.failures;
        let (status, error, failures, next) = match outcome {
            Ok(()) => {
                let scheduled = now + chrono::Duration::seconds(source.schedule_secs as i64);
                let next = not_before.map_or(scheduled, |at| at.max(scheduled));
                let status = if next > scheduled {
                    SourceStatus::RateLimited
                } else {
                    SourceStatus::Ok
                };
                (status, None, 0, next)
            }
            Err(Failure::Connector(err)) => {
                let failures = failures + 1;
                let backoff = self.backoff(failures);
                let (status, next) = match &err {
                    ConnectorError::RateLimited { retry_after_secs } => (
                        SourceStatus::RateLimited,
                        now + retry_after_secs
                            .map(|secs| chrono::Duration::seconds(secs as i64))
                            .unwrap_or(backoff),
                    ),
                    // Needs someone to change the source (or the allow list): failing, and
                    // retried with the usual backoff.
                    ConnectorError::Config(_)
                    | ConnectorError::Unauthorized(_)
                    | ConnectorError::Unsupported(_)
                    | ConnectorError::Refused(_) => (SourceStatus::Failing, now + backoff),
                    _ if failures >= 5 => (SourceStatus::Failing, now + backoff),
                    _ => (SourceStatus::BackingOff, now + backoff),
                };
                (status, Some(scrub(err.to_string())), failures, next)
            }
            Err(Failure::Store(err)) => {
                tracing::error!(error = %err, "storing a batch failed");
                if matches!(err, Error::Conflict(_)) {
                    // The lease is someone else's now: leave the source alone.
                    report.error = Some(err.to_string());
                    return Ok(report);
                }
                let failures = failures + 1;
                (
                    SourceStatus::BackingOff,
                    Some(store_failure_message(&err)),
                    failures,
                    now + self.backoff(failures),
                )
            }
        };
        report.error = error.clone();
        let outcome = RunOutcome {
            status,
            last_error: error.clone(),
            failures,
            next_run_at: next,
            ran_at: now,
        };
        domain::source::record_run(&self.db, source.id, &self.owner, &outcome).await?;
        match &error {
            None => tracing::info!(
                new = report.new,
                duplicates = report.duplicates,
                batches = report.batches,
                elapsed_ms = started.elapsed().as_millis() as u64,
                "sync done"
            ),
            Some(error) => tracing::warn!(
                status = status.as_str(),
                failures,
                next_run_at = %next,
                error = %error,
                "sync failed"
            ),
        }
        Ok(report)
    }

    /// Pulls and stores batches until the connector has no more, the source is rate
    /// limited, `stop` says so or `max_batches` are stored. Batch N+1 is pulled and
    /// prepared (normalised, enriched) while batch N's transaction runs: the cursor it is
    /// pulled from is the connector's, not the database's, and the batches still commit
    /// one after another in order, so a failure or a crash anywhere leaves the cursor
    /// after the last committed batch, as before. A connector whose pull confirms what
    /// comes before its cursor ([`connectors::Connector::confirms_on_read`]) is pulled
    /// again only after batch N is committed.
    async fn pull_batches(
        &self,
        source: &Model,
        report: &mut SyncReport,
        not_before: &mut Option<DateTime<Utc>>,
        stop: &(dyn Fn() -> bool + Sync),
    ) -> std::result::Result<(), Failure> {
        let connector = super::connector(source, &self.outbound, self.public_url.as_deref())
            .map_err(Failure::Connector)?;
        let mut cursor = source.cursor.clone().map(Cursor);
        let mut pulled = self.pull(source, &*connector, cursor.as_ref()).await?;
        for batch in 1..=self.config.max_batches.max(1) {
            let (pull, prepared) = pulled;
            if let Some(at) = pull.not_before {
                *not_before = Some(not_before.map_or(at, |old| old.max(at)));
            }
            let rate_limited = not_before.is_some_and(|at| at > Utc::now());
            let last =
                !pull.more || rate_limited || batch >= self.config.max_batches.max(1) || stop();
            let next_cursor = pull.next_cursor.clone().or(cursor);
            let stored = super::store(
                &self.db,
                source,
                prepared,
                pull.next_cursor.as_ref().map(|cursor| cursor.0.as_str()),
                Some(self.lease()),
            );
            let (stored, next) = if last {
                (stored.await, None)
            } else if connector.confirms_on_read() {
                // The next pull confirms this batch to the platform: only once it is stored.
                let stored = stored.await;
                let next = match stored {
                    Ok(_) => Some(self.pull(source, &*connector, next_cursor.as_ref()).await),
                    Err(_) => None,
                };
                (stored, next)
            } else {
                let (stored, next) =
                    tokio::join!(stored, self.pull(source, &*connector, next_cursor.as_ref()));
                (stored, Some(next))
            };
            let stored = stored.map_err(Failure::Store)?;
            report.batches += 1;
            report.new += stored.new.len();
            report.duplicates += stored.duplicates;
            cursor = next_cursor;
            match next {
                Some(next) => pulled = next?,
                None => break,
            }
        }
        Ok(())
    }

    /// One pull from `cursor`, prepared for storing.
    async fn pull(
        &self,
        source: &Model,
        connector: &dyn connectors::Connector,
        cursor: Option<&Cursor>,
    ) -> std::result::Result<(connectors::Pull, super::Prepared), Failure> {
        let budget = Duration::from_secs(self.config.http_timeout_secs.max(1) * 4);
        let pull = tokio::time::timeout(budget, connector.pull(cursor))
            .await
            .map_err(|_| {
                Failure::Connector(ConnectorError::Transport(format!(
                    "the pull took longer than {} s",
                    budget.as_secs()
                )))
            })?
            .map_err(Failure::Connector)?;
        crate::failpoint::failpoint("sync.after_pull");
        // Background work: each pull but the first is prepared while the batch before it
        // is stored (unless the connector confirms on read).
        let prepared = super::prepare(
            &self.db,
            source,
            &pull.items,
            crate::domain::batch::Urgency::Background,
        )
        .await
        .map_err(Failure::Store)?;
        Ok((pull, prepared))
    }

    /// Exponential backoff with jitter: base · 2^(failures-1), capped, times a random
    /// factor in [0.5, 1] so sources failing together do not retry in lockstep.
    fn backoff(&self, failures: i32) -> chrono::Duration {
        let base = self.config.backoff_base_secs.max(1) as f64;
        let max = self.config.backoff_max_secs.max(1) as f64;
        let exponent = (failures.max(1) - 1).min(30);
        let full = (base * 2f64.powi(exponent)).min(max);
        let jittered = full * rand::thread_rng().gen_range(0.5..=1.0);
        chrono::Duration::milliseconds((jittered * 1000.0) as i64)
    }
}

enum Failure {
    Connector(ConnectorError),
    Store(Error),
}

/// What the source's `lastError` (and `syncSource`'s `error`) says when storing a batch
/// failed. Shown to the workspace's admins, so it never carries database or internal text
/// (SQL, constraint and table names, file paths): those go to the server log only. A
/// domain error meant for users (its message is written for them) is kept.
fn store_failure_message(err: &Error) -> String {
    match err.code() {
        crate::error::Code::Internal => {
            "internal error while storing the batch; see the server log".to_owned()
        }
        _ => format!("storing the batch failed: {err}"),
    }
}

/// Syncs one source of the caller's workspace now (admin role) and reports what landed.
pub async fn sync_now(
    syncer: &Syncer,
    caller: &domain::Caller,
    id: SourceId,
) -> Result<(SyncReport, Model)> {
    caller.require(domain::Role::Admin, "syncing a source")?;
    let source = domain::source::get(&syncer.db, caller, id).await?;
    let claimed = syncer.claim(&source).await?;
    let report = syncer.run(claimed, &|| false).await?;
    let source = domain::source::get(&syncer.db, caller, id).await?;
    Ok((report, source))
}
