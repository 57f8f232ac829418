//! The callers of recent requests by key: [`workspace::authenticate`] without its statement
//! and its round trip on every request, on PostgreSQL, forgotten as soon as anything it
//! read changes.
//!
//! Every `/graphql` request names its key, and looking the key up was a statement and a
//! wait on the database each time: about a fifth of a 360 view at one client. This cache
//! keeps what a lookup found, and forgets it when anything it depends on changes:
//!
//! - **Other processes** (another `rapport serve`, `rapport keys revoke` on the command
//!   line, SQL by hand): on PostgreSQL, triggers on `api_key`, `"user"` and `workspace`
//!   (firing `ALWAYS`, also under `session_replication_role = replica`) notify the channel
//!   `rapport_auth` in the changing transaction, so the notification goes out when it
//!   commits; this process listens on a connection of its own and empties the cache on
//!   every notification. Cascades notify too: a workspace deleted deletes its keys.
//! - **This process**: the domain's functions that revoke a key, change a user's role or
//!   state, or delete a workspace call [`changed`] once they have written, so the caller
//!   who revoked a key is refused with it on their very next request, without waiting for
//!   the notification to come back.
//! - **A lost or silent listening connection**: the cache is read only while the listener is
//!   known to deliver. Every [`PING_EVERY`] while keys are being asked for, the process
//!   notifies the channel itself; PostgreSQL delivers notifications in commit order, so a
//!   ping's arrival proves that every change committed before it was sent has been seen,
//!   and keeps the cache usable until [`LIVE_FOR`] after the ping was sent. A connection
//!   lost (sqlx says so, and listens again) empties the cache; without pings (a connection
//!   dead without a word, a database restarted) the cache is bypassed, and when pings
//!   arrive again it starts empty: what was missed meanwhile cannot be in it. A listener
//!   that hears nothing, not even its pings, for [`SILENT_FOR`] is replaced by a new one.
//! - **A lookup racing a change**: a lookup that began before an invalidation does not
//!   store its answer (a generation number), so an answer read before a revocation
//!   committed cannot land in the cache after the notification emptied it.
//!
//! The bounds, then: a key revoked, a user deactivated or demoted, or a workspace deleted
//! is refused by the process that made the change from its next request; by every other
//! process from the moment PostgreSQL delivers the commit's notification to its listener
//! (pushed at commit: the tests measure a few milliseconds after `rapport keys revoke`
//! returns); and, should a listening connection die without a word so that the
//! notification never arrives, at most [`LIVE_FOR`] after the commit. Only successful
//! lookups are kept: an unknown key always goes to the database (and counts against its
//! address's failures).
//!
//! The listener and the pings use connections of their own, outside the application's
//! pool: a saturated pool delays neither, and a dead listening socket holds no slot of it.
//!
//! SQLite keeps no cache: its lookup is a read in this process, not a round trip, and
//! another process's change (the command line) would have no notification to announce it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use sea_orm::sqlx::postgres::{PgListener, PgPool, PgPoolOptions};
use sea_orm::{ConnectionTrait, DatabaseBackend, DatabaseConnection};
use sha2::{Digest, Sha256};

use super::{workspace, Caller};
use crate::error::Result;

/// The channel the triggers of migration `m20261206_000022_auth_notify` notify.
const CHANNEL: &str = "rapport_auth";
/// How often this process pings its own listener.
const PING_EVERY: Duration = Duration::from_millis(500);
/// How long after a ping was sent its arrival keeps the cache usable: a few pings, so a
/// late one does not turn the cache off under load.
const LIVE_FOR: Duration = Duration::from_secs(2);
/// How long the listener may hear nothing (not even its pings) before it is replaced.
const SILENT_FOR: Duration = Duration::from_secs(10);
/// How long an entry is kept at most (belt and braces: the notifications are what keeps
/// entries fresh), and how long after the last request the pings go on.
const MAX_AGE: Duration = Duration::from_secs(60);
/// Entries kept at most; past it the cache starts over.
const MAX_ENTRIES: usize = 10_000;

/// Changes written by this process (all of its apps) that callers depend on.
static CHANGES: AtomicU64 = AtomicU64::new(0);

/// Says that a key, a user's role or state, or a workspace changed in this process: every
/// cache in it forgets its callers before its next lookup. Called after the write has
/// committed; a write inside a caller's transaction is announced by its commit's
/// notification instead (a lookup between this call and that commit still reads the old
/// row).
pub fn changed() {
    CHANGES.fetch_add(1, Ordering::SeqCst);
}

/// The key cache of one app.
pub struct Callers {
    db: DatabaseConnection,
    started: AtomicBool,
    /// Keys read from the database (statements run), for tests that count a request's
    /// statements besides its key's.
    lookups: AtomicU64,
    /// Listening connections lost (each emptied the cache).
    losses: AtomicU64,
    /// When a key was last asked for, in milliseconds since `epoch`: pings stop a while
    /// after the last request.
    last_asked: AtomicU64,
    /// Tells this process's pings from other processes' (and other apps').
    nonce: u64,
    /// The instant ping payloads count from.
    epoch: Instant,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    entries: HashMap<[u8; 32], (Caller, Instant)>,
    /// Moves on every invalidation: a lookup stores its answer only if it has not moved.
    generation: u64,
    /// The [`CHANGES`] these entries were read after.
    changes: u64,
    /// Until when the listener is known to have delivered every notification.
    live_until: Option<Instant>,
}

impl State {
    /// Forgets every entry and moves the generation.
    fn invalidate(&mut self) {
        self.entries.clear();
        self.generation += 1;
    }

    /// Catches up with this process's own changes; whether entries may be read now.
    fn usable(&mut self, now: Instant) -> bool {
        let changes = CHANGES.load(Ordering::SeqCst);
        if changes != self.changes {
            self.changes = changes;
            self.invalidate();
        }
        self.live_until.is_some_and(|until| now < until)
    }
}

impl Callers {
    /// The key cache over `db`: empty, and listening from the first key asked for.
    pub fn new(db: DatabaseConnection) -> Arc<Callers> {
        Arc::new(Callers {
            db,
            started: AtomicBool::new(false),
            lookups: AtomicU64::new(0),
            losses: AtomicU64::new(0),
            last_asked: AtomicU64::new(0),
            nonce: rand::random(),
            epoch: Instant::now(),
            state: Mutex::new(State::default()),
        })
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The caller of `secret`, as [`workspace::authenticate`] says, from the cache when it
    /// is proven fresh.
    pub async fn authenticate(self: &Arc<Self>, secret: &str) -> Result<Caller> {
        if !workspace::shaped_like_a_key(secret) {
            return workspace::authenticate(&self.db, secret).await;
        }
        if self.db.get_database_backend() != DatabaseBackend::Postgres {
            self.lookups.fetch_add(1, Ordering::Relaxed);
            return workspace::authenticate(&self.db, secret).await;
        }
        self.start();
        self.last_asked
            .store(self.millis(Instant::now()), Ordering::Relaxed);
        let digest: [u8; 32] = Sha256::digest(secret.as_bytes()).into();
        let generation = {
            let now = Instant::now();
            let mut state = self.state();
            if state.usable(now) {
                if let Some((caller, at)) = state.entries.get(&digest) {
                    if now.duration_since(*at) < MAX_AGE {
                        return Ok(caller.clone());
                    }
                }
            }
            state.generation
        };
        self.lookups.fetch_add(1, Ordering::Relaxed);
        let caller = workspace::authenticate(&self.db, secret).await?;
        let now = Instant::now();
        let mut state = self.state();
        if state.usable(now) && state.generation == generation {
            if state.entries.len() >= MAX_ENTRIES {
                state.entries.clear();
            }
            state.entries.insert(digest, (caller.clone(), now));
        }
        Ok(caller)
    }

    /// How many keys this cache has read from the database.
    pub fn lookups(&self) -> u64 {
        self.lookups.load(Ordering::Relaxed)
    }

    /// Whether entries may be read now (the listener delivers).
    pub fn listening(&self) -> bool {
        self.state().usable(Instant::now())
    }

    /// How many listening connections were lost so far.
    pub fn losses(&self) -> u64 {
        self.losses.load(Ordering::Relaxed)
    }

    fn millis(&self, at: Instant) -> u64 {
        u64::try_from(at.duration_since(self.epoch).as_millis()).unwrap_or(u64::MAX)
    }

    /// Whether a key was asked for within [`MAX_AGE`]: pings go on only then.
    fn in_use(&self) -> bool {
        let idle = self
            .millis(Instant::now())
            .saturating_sub(self.last_asked.load(Ordering::Relaxed));
        u128::from(idle) < MAX_AGE.as_millis()
    }

    /// Starts the listener and the pings, once.
    fn start(self: &Arc<Self>) {
        if self.started.load(Ordering::Relaxed) || self.started.swap(true, Ordering::SeqCst) {
            return;
        }
        tokio::spawn(listen(Arc::downgrade(self)));
        tokio::spawn(ping(Arc::downgrade(self)));
    }

    /// A ping's payload: this cache's nonce and when it was sent.
    fn ping_payload(&self) -> String {
        format!("ping {:016x} {}", self.nonce, self.millis(Instant::now()))
    }

    /// What a notification says to this cache.
    fn receive(&self, payload: &str) {
        let mut state = self.state();
        let Some(rest) = payload.strip_prefix("ping ") else {
            // A change, from any process.
            state.invalidate();
            return;
        };
        let mut parts = rest.split(' ');
        let (Some(nonce), Some(millis)) = (parts.next(), parts.next()) else {
            state.invalidate();
            return;
        };
        if u64::from_str_radix(nonce, 16).ok() != Some(self.nonce) {
            return; // another cache's ping
        }
        let Ok(millis) = millis.parse::<u64>() else {
            return;
        };
        let now = Instant::now();
        // Never later than now (a payload is only this process's, but a bound costs nothing).
        let sent = (self.epoch + Duration::from_millis(millis)).min(now);
        if !state.usable(now) {
            // Back from a time without proof: what was missed may be in the entries.
            state.invalidate();
        }
        let until = sent + LIVE_FOR;
        if state.live_until.is_none_or(|live| live < until) {
            state.live_until = Some(until);
        }
    }

    /// The listening connection was lost: nothing cached is proven any more.
    fn lost(&self) {
        self.losses.fetch_add(1, Ordering::Relaxed);
        let mut state = self.state();
        state.live_until = None;
        state.invalidate();
    }
}

/// The name the cache's own connections give PostgreSQL (`pg_stat_activity`).
pub const APPLICATION_NAME: &str = "rapport key cache";

/// A pool of `size` connections of the cache's own, to the database of `db`.
fn own_pool(db: &DatabaseConnection, size: u32) -> PgPool {
    let options = (*db.get_postgres_connection_pool().connect_options())
        .clone()
        .application_name(APPLICATION_NAME);
    PgPoolOptions::new()
        .max_connections(size)
        .min_connections(0)
        .acquire_timeout(Duration::from_secs(5))
        .connect_lazy_with(options)
}

/// Listens on the channel while the cache lives: each listener on a pool of its own (a
/// listener replaced for silence leaves its dead socket there, not in a pool it shares).
async fn listen(cache: Weak<Callers>) {
    loop {
        let Some(pool) = cache.upgrade().map(|cache| own_pool(&cache.db, 2)) else {
            return;
        };
        let listening = async {
            let mut listener = PgListener::connect_with(&pool).await?;
            listener.listen(CHANNEL).await?;
            Ok::<_, sea_orm::sqlx::Error>(listener)
        };
        let mut listener = match listening.await {
            Ok(listener) => listener,
            Err(err) => {
                tracing::warn!(error = %err, "the key cache cannot listen: keys are read from the database");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        loop {
            // This process's own pings arrive every PING_EVERY while keys are asked for:
            // silence this long then means a connection dead without a word, which only a
            // new one cures.
            let Ok(received) = tokio::time::timeout(SILENT_FOR, listener.try_recv()).await else {
                match cache.upgrade() {
                    Some(cache) if !cache.in_use() => continue,
                    Some(cache) => cache.lost(),
                    None => return,
                }
                tracing::warn!("the key cache's listener fell silent: listening again");
                break;
            };
            let Some(cache) = cache.upgrade() else {
                return;
            };
            match received {
                Ok(Some(notification)) => cache.receive(notification.payload()),
                // Lost, and connected again by sqlx: what was notified meanwhile is gone.
                Ok(None) => cache.lost(),
                Err(err) => {
                    cache.lost();
                    tracing::warn!(error = %err, "the key cache's listener failed: keys are read from the database until it is back");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    break;
                }
            }
        }
    }
}

/// Notifies the channel every [`PING_EVERY`] while keys are asked for, so the listener
/// can prove it delivers. On a connection of its own (outside the application's pool and
/// its statement count), so a saturated pool does not delay it.
async fn ping(cache: Weak<Callers>) {
    let Some(pool) = cache.upgrade().map(|cache| own_pool(&cache.db, 1)) else {
        return;
    };
    let mut every = tokio::time::interval(PING_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        let Some(cache) = cache.upgrade() else {
            return;
        };
        if !cache.in_use() {
            continue;
        }
        let sent = sea_orm::sqlx::query("SELECT pg_notify($1, $2)")
            .bind(CHANNEL)
            .bind(cache.ping_payload())
            .execute(&pool)
            .await;
        if let Err(err) = sent {
            tracing::debug!(error = %err, "the key cache's ping failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cache() -> Callers {
        Callers {
            db: DatabaseConnection::Disconnected,
            started: AtomicBool::new(true),
            lookups: AtomicU64::new(0),
            losses: AtomicU64::new(0),
            last_asked: AtomicU64::new(0),
            nonce: 7,
            epoch: Instant::now(),
            state: Mutex::new(State::default()),
        }
    }

    #[test]
    fn only_its_own_pings_make_the_cache_usable_and_any_other_notification_empties_it() {
        let cache = cache();
        assert!(!cache.listening(), "no ping yet");
        cache.receive("ping 0000000000000008 0");
        assert!(
            !cache.listening(),
            "another cache's ping proves nothing here"
        );
        cache.receive(&cache.ping_payload());
        assert!(cache.listening());
        let generation = cache.state().generation;
        cache.receive("");
        assert!(cache.state().generation > generation, "a change empties it");
        assert!(cache.listening(), "a change does not stop the proof");
        cache.lost();
        assert!(!cache.listening(), "a lost connection does");
    }

    #[test]
    fn coming_back_from_a_time_without_proof_starts_empty() {
        let cache = cache();
        cache.receive(&cache.ping_payload());
        let generation = cache.state().generation;
        // A ping sent long ago arrives: no proof for now, and entries stay unread.
        cache.state().live_until = Some(Instant::now() - Duration::from_millis(1));
        assert!(!cache.listening());
        cache.receive(&cache.ping_payload());
        assert!(cache.listening());
        assert!(
            cache.state().generation > generation,
            "a lookup that began without proof must not store its answer"
        );
    }

    #[test]
    fn a_change_in_this_process_moves_the_generation() {
        let cache = cache();
        cache.receive(&cache.ping_payload());
        let generation = cache.state().generation;
        changed();
        assert!(cache.listening());
        assert!(cache.state().generation > generation);
    }
}
