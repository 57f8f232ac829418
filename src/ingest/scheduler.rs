//! The scheduler inside `rapport serve`: every tick it claims due sources (as many as it
//! has free slots, `[sync] concurrency`) and runs each in a task of its own. One source
//! never runs twice at once, in this process or another: the claim is a lease in the
//! database (see [`super::sync`]).
//!
//! Shutdown: when `shutdown` flips, no new source is claimed; each running sync stops
//! after the batch in hand is stored, gives its lease back, and [`run`] returns once they
//! all have.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;

use super::sync::Syncer;

/// Runs the scheduler until `shutdown` becomes `true`, then waits for the syncs in hand.
pub async fn run(syncer: Syncer, mut shutdown: watch::Receiver<bool>) {
    let concurrency = syncer.config.concurrency.max(1);
    let slots = Arc::new(Semaphore::new(concurrency));
    let stopping = Arc::new(AtomicBool::new(false));
    let tick = Duration::from_millis(syncer.config.tick_ms.max(10));
    let mut tasks = JoinSet::new();
    tracing::info!(owner = %syncer.owner, concurrency, "scheduler started");
    loop {
        if *shutdown.borrow() {
            break;
        }
        let free = slots.available_permits();
        if free > 0 {
            match syncer.claim_due(free).await {
                Ok(claimed) => {
                    for source in claimed {
                        let permit = slots
                            .clone()
                            .acquire_owned()
                            .await
                            .expect("the semaphore is never closed");
                        let syncer = syncer.clone();
                        let stopping = stopping.clone();
                        tasks.spawn(async move {
                            let stop = move || stopping.load(Ordering::Relaxed);
                            if let Err(err) = syncer.run(source, &stop).await {
                                tracing::error!(error = %err, "a sync could not record its outcome");
                            }
                            drop(permit);
                        });
                    }
                }
                Err(err) => tracing::error!(error = %err, "claiming due sources failed"),
            }
        }
        tokio::select! {
            () = tokio::time::sleep(tick) => {}
            _ = shutdown.changed() => {}
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
        }
    }
    stopping.store(true, Ordering::Relaxed);
    if !tasks.is_empty() {
        tracing::info!(
            running = tasks.len(),
            "scheduler stopping: finishing the batches in hand"
        );
    }
    while tasks.join_next().await.is_some() {}
    tracing::info!("scheduler stopped");
}
