//! Crash injection at named points, for the exactly-once tests
//! (`tests/integration/failpoints.rs`): when the environment variable `RAPPORT_FAILPOINT`
//! names a point the process reaches, it aborts there, as a `kill -9` would: no unwinding,
//! no destructors, no transaction rolled back politely, no answer sent.
//!
//! The points, each where a crash could lose or double data:
//! - `sync.after_pull`: a pull returned items, before they are stored;
//! - `ingest.mid_batch`: part of a batch's rows are written inside its transaction;
//! - `ingest.before_commit`: the whole batch and its cursor are written, not committed;
//! - `webhook.after_commit`: a delivery is committed, before the HTTP answer;
//! - `indexer.after_write`: the search backend was written, before the offset is stored;
//! - `reply.after_send`: the platform accepted a reply, before it is stored.
//! - `import.mid_batch`: an import's second or later batch has written its customers
//!   inside its transaction (the earlier batches are committed).
//!
//! The one environment variable read outside the configuration, on purpose: it is a test
//! hook, not a setting, and reading it here keeps it out of `Config`'s documented surface.

use std::sync::OnceLock;

/// The names of every failpoint, for documentation and tests.
pub const POINTS: [&str; 7] = [
    "sync.after_pull",
    "ingest.mid_batch",
    "ingest.before_commit",
    "webhook.after_commit",
    "indexer.after_write",
    "reply.after_send",
    "import.mid_batch",
];

/// Aborts the process when `RAPPORT_FAILPOINT` names `point` (read once per process).
pub fn failpoint(point: &str) {
    static ARMED: OnceLock<Option<String>> = OnceLock::new();
    let armed = ARMED.get_or_init(|| std::env::var("RAPPORT_FAILPOINT").ok());
    if armed.as_deref() == Some(point) {
        eprintln!("failpoint {point}: aborting");
        std::process::abort();
    }
}
