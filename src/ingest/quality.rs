//! The daily data-quality snapshot inside `rapport serve`: every few minutes it records
//! today's (UTC) report of each workspace that has none yet
//! ([`crate::domain::quality::record_due`]), so `dataQuality.trend` has a point a day
//! without anyone running `rapport quality`. Every process runs it; once a workspace has
//! its report of the day a tick costs one statement (a primary-key probe per workspace).
//! Two processes racing on a workspace both write the same day's row (`ON CONFLICT … DO
//! UPDATE`): one row stays, the later report.

use std::time::Duration;

use sea_orm::DatabaseConnection;
use tokio::sync::watch;

/// How often the task looks for workspaces without today's report: how late after
/// midnight (UTC) a day's report may be recorded.
pub const TICK: Duration = Duration::from_secs(300);
/// Workspaces recorded per round; the round repeats at once while some are left.
const PER_ROUND: u64 = 20;

/// Runs until `shutdown` becomes `true` (a round under way is abandoned: it only reads,
/// and each report is one statement).
pub async fn run(db: DatabaseConnection, mut shutdown: watch::Receiver<bool>) {
    loop {
        if *shutdown.borrow() {
            break;
        }
        let round = crate::domain::quality::record_due(&db, crate::domain::now(), PER_ROUND);
        let more = tokio::select! {
            result = round => match result {
                Ok(recorded) => {
                    if recorded > 0 {
                        tracing::info!(recorded, "data-quality reports of the day recorded");
                    }
                    recorded == PER_ROUND
                }
                Err(err) => {
                    tracing::error!(error = %err, "recording the data-quality reports failed");
                    false
                }
            },
            _ = shutdown.changed() => break,
        };
        if more {
            continue;
        }
        tokio::select! {
            () = tokio::time::sleep(TICK) => {}
            _ = shutdown.changed() => {}
        }
    }
}
