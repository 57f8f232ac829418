//! The snooze timer inside `rapport serve`: every few seconds it stores the wake of the
//! SNOOZED conversations whose time came ([`crate::domain::inbox::wake_due`]), each with
//! its `conversation.woken` event. Every process runs it; the domain makes each wake
//! happen once. Reads never wait for it: a due conversation already reads as OPEN.

use std::time::Duration;

use sea_orm::DatabaseConnection;
use tokio::sync::watch;

/// How often due conversations are woken: the latency of the `conversation.woken` event.
pub const TICK: Duration = Duration::from_secs(5);
/// The most conversations one tick wakes; the next tick goes on with the rest.
const PER_TICK: u64 = 500;

/// Runs until `shutdown` becomes `true`.
pub async fn run(db: DatabaseConnection, mut shutdown: watch::Receiver<bool>) {
    loop {
        if *shutdown.borrow() {
            break;
        }
        match crate::domain::inbox::wake_due(&db, PER_TICK).await {
            Ok(0) => {}
            Ok(woken) => tracing::info!(woken, "snoozed conversations woke"),
            Err(err) => tracing::error!(error = %err, "waking snoozed conversations failed"),
        }
        tokio::select! {
            () = tokio::time::sleep(TICK) => {}
            _ = shutdown.changed() => {}
        }
    }
}
