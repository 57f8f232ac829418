//! The live feed: the event log as it grows, fanned out to this process's subscriptions.
//!
//! One task per process tails the log while anyone listens (and a minute longer): it wakes on PostgreSQL's
//! notification (every process's writes notify, [`event::Wakeups`]) or on a short poll
//! (SQLite, and as a safety net), reads the events after its position, moves only over
//! seqs no open transaction can still fill ([`event::visible_until`]), and broadcasts them
//! in `seq` order. A subscriber is handed the feed's position when it joins: what came
//! before is its backlog, read from the log itself ([`Subscription::backlog`]); what comes
//! after arrives through the broadcast. Joining and broadcasting take the same lock, so no
//! event falls between the two, and a subscriber skips what it already delivered, so none
//! is repeated.
//!
//! Each workspace with subscribers has a broadcast of its own, so tenants do not share a
//! buffer: a burst in one workspace cannot push another's subscribers behind.
//!
//! Bounded: a subscriber may fall [`crate::config::Limits::subscription_backlog`] events
//! of its workspace behind the broadcast; past that it is told to subscribe again from its
//! last cursor (nothing is lost, the log has it) instead of being buffered without end. A
//! key holds at most `max_subscriptions_per_key` subscriptions in this process.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use sea_orm::DatabaseConnection;
use tokio::sync::broadcast;

use crate::domain;
use crate::domain::event::{self, EventKind, StoredEvent, Wakeups};
use crate::error::{Error, Result};
use entity::{ApiKeyId, InteractionId, WorkspaceId};
use uuid::Uuid;

/// How often the tail looks at the log without a notification: SQLite's only wake-up,
/// PostgreSQL's safety net for a notification lost with its connection.
const POLL_SQLITE: Duration = Duration::from_millis(20);
const POLL_POSTGRES: Duration = Duration::from_millis(500);
/// How soon it looks again past a gap an open transaction may still fill.
const GAP_POLL: Duration = Duration::from_millis(100);
/// How long the tail goes on after its last subscriber left: a client reconnecting
/// finds it where it was (and its database connection still listening).
const LINGER: Duration = Duration::from_secs(60);
/// How far back from the head the tail looks, when it starts, for a gap an open
/// transaction may still fill.
const START_WINDOW: i64 = 10_000;
/// Events read from the log at a time.
const READ: u64 = 1_000;

/// This process's view of the log as it grows.
pub struct Feed {
    db: DatabaseConnection,
    max_per_key: usize,
    capacity: usize,
    state: tokio::sync::Mutex<Tail>,
    per_key: Mutex<HashMap<ApiKeyId, usize>>,
}

/// The tail's position and the broadcast of each workspace with subscribers; `running`
/// while its task lives.
struct Tail {
    position: i64,
    senders: HashMap<WorkspaceId, broadcast::Sender<Arc<StoredEvent>>>,
    running: bool,
}

impl Tail {
    /// Drops the broadcasts nobody listens to, and says whether anyone listens.
    fn prune(&mut self) -> bool {
        self.senders.retain(|_, sender| sender.receiver_count() > 0);
        !self.senders.is_empty()
    }
}

/// One subscriber's place in the feed. Dropping it frees the key's slot.
pub struct Subscription {
    /// Events of its workspace after the feed's position when this subscriber joined.
    pub events: broadcast::Receiver<Arc<StoredEvent>>,
    /// The feed's position when it joined: the backlog ends here.
    pub joined_at: i64,
    _slot: Slot,
}

struct Slot {
    feed: Arc<Feed>,
    key: ApiKeyId,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut per_key = self
            .feed
            .per_key
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(count) = per_key.get_mut(&self.key) {
            *count -= 1;
            if *count == 0 {
                per_key.remove(&self.key);
            }
        }
    }
}

impl Feed {
    pub fn new(db: DatabaseConnection, limits: &crate::config::Limits) -> Arc<Feed> {
        let capacity = limits.subscription_backlog.max(16);
        Arc::new(Feed {
            db,
            max_per_key: limits.max_subscriptions_per_key,
            capacity,
            state: tokio::sync::Mutex::new(Tail {
                position: 0,
                senders: HashMap::new(),
                running: false,
            }),
            per_key: Mutex::new(HashMap::new()),
        })
    }

    /// Joins the feed of `workspace` for `key` (starting the tail if nobody listened), or
    /// `BAD_USER_INPUT` when the key holds its most subscriptions already.
    pub async fn subscribe(
        self: &Arc<Feed>,
        key: ApiKeyId,
        workspace: WorkspaceId,
    ) -> Result<Subscription> {
        {
            let mut per_key = self
                .per_key
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            let count = per_key.entry(key).or_insert(0);
            if *count >= self.max_per_key {
                return Err(Error::bad_input(format!(
                    "this API key holds {} subscriptions already, the most it may (close one first)",
                    self.max_per_key
                )));
            }
            *count += 1;
        }
        let slot = Slot {
            feed: self.clone(),
            key,
        };
        let mut tail = self.state.lock().await;
        if !tail.running {
            tail.position = start(&self.db).await?;
            tail.senders.clear();
            tail.running = true;
            let wakeups = match Wakeups::listen(&self.db).await {
                Ok(wakeups) => wakeups,
                Err(err) => {
                    tracing::warn!(error = %err, "no notifications from the database: the live feed polls");
                    None
                }
            };
            tokio::spawn(run(Arc::downgrade(self), wakeups));
        }
        let capacity = self.capacity;
        let events = tail
            .senders
            .entry(workspace)
            .or_insert_with(|| broadcast::channel(capacity).0)
            .subscribe();
        Ok(Subscription {
            events,
            joined_at: tail.position,
            _slot: slot,
        })
    }

    /// The database the feed reads (subscribers read their backlog from it).
    pub fn db(&self) -> &DatabaseConnection {
        &self.db
    }
}

/// The tail: reads and broadcasts until nobody listens (or the feed is gone).
async fn run(feed: Weak<Feed>, mut wakeups: Option<Wakeups>) {
    let poll = if wakeups.is_some() {
        POLL_POSTGRES
    } else {
        POLL_SQLITE
    };
    let mut backoff = Duration::from_millis(100);
    let mut idle_since = None;
    loop {
        let Some(feed) = feed.upgrade() else { return };
        let pause = match step(&feed, &mut idle_since).await {
            Ok(Step::Stop) => return,
            Ok(step) => {
                backoff = Duration::from_millis(100);
                match step {
                    Step::More => Duration::ZERO,
                    Step::Held => GAP_POLL,
                    _ => poll,
                }
            }
            Err(err) => {
                tracing::warn!(error = %err, "the live feed could not read the event log");
                backoff = (backoff * 2).min(Duration::from_secs(5));
                backoff
            }
        };
        drop(feed);
        if pause.is_zero() {
            continue;
        }
        match wakeups.as_mut() {
            Some(wakeups) if pause == poll => {
                tokio::select! {
                    woke = wakeups.next() => {
                        if let Err(err) = woke {
                            tracing::warn!(error = %err, "the live feed's LISTEN connection failed");
                            tokio::time::sleep(backoff).await;
                        }
                    }
                    () = tokio::time::sleep(pause) => {}
                }
            }
            _ => tokio::time::sleep(pause).await,
        }
    }
}

enum Step {
    /// Nobody listened for [`LINGER`]: the tail stopped (the next subscriber starts it again).
    Stop,
    /// A full read: read again at once.
    More,
    /// A gap an open transaction may fill holds the position back.
    Held,
    CaughtUp,
}

/// Where a tail starts: after the last event no open transaction can still precede (the
/// head, unless a transaction that may yet commit a lower seq is open on PostgreSQL), so
/// a subscriber joining there misses nothing committed later below it.
async fn start(db: &DatabaseConnection) -> Result<i64> {
    let head = event::head(db).await?;
    let from = (head - START_WINDOW).max(0);
    let recent = event::after(db, from, START_WINDOW as u64).await?;
    event::visible_until(db, from, &recent).await
}

async fn step(feed: &Feed, idle_since: &mut Option<std::time::Instant>) -> Result<Step> {
    let from = {
        let mut tail = feed.state.lock().await;
        if !tail.prune() {
            let since = *idle_since.get_or_insert_with(std::time::Instant::now);
            if since.elapsed() >= LINGER {
                tail.running = false;
                return Ok(Step::Stop);
            }
        } else {
            *idle_since = None;
        }
        tail.position
    };
    let events = event::after(&feed.db, from, READ).await?;
    let until = event::visible_until(&feed.db, from, &events).await?;
    let step = if until < events.last().map_or(from, |event| event.seq) {
        Step::Held
    } else if events.len() as u64 == READ {
        Step::More
    } else {
        Step::CaughtUp
    };
    let listened: HashSet<WorkspaceId> = feed.state.lock().await.senders.keys().copied().collect();
    let mut rows = interaction_rows(&feed.db, &events, until, &listened).await;
    let mut tail = feed.state.lock().await;
    // Only the tail moves the position, so it is still `from`.
    for mut event in events.into_iter().take_while(|event| event.seq <= until) {
        if let Some(sender) = tail.senders.get(&event.workspace_id) {
            event.interaction_row = rows.remove(&event.entity_id);
            // No receiver is not an error: the last one may just have left.
            let _ = sender.send(Arc::new(event));
        }
    }
    tail.position = until;
    Ok(step)
}

/// The rows the `interaction.created` events up to `until` of the `listened` workspaces
/// name, one statement a workspace: read once here for every subscriber instead of once
/// by each. A failed read leaves them to the subscribers (each reads its own).
async fn interaction_rows(
    db: &DatabaseConnection,
    events: &[StoredEvent],
    until: i64,
    listened: &HashSet<WorkspaceId>,
) -> HashMap<Uuid, Arc<entity::interaction::Model>> {
    let mut named: HashMap<WorkspaceId, Vec<InteractionId>> = HashMap::new();
    for event in events.iter().take_while(|event| event.seq <= until) {
        if event.kind == Some(EventKind::InteractionCreated)
            && listened.contains(&event.workspace_id)
        {
            named
                .entry(event.workspace_id)
                .or_default()
                .push(event.entity());
        }
    }
    let mut rows = HashMap::new();
    for (workspace_id, ids) in named {
        match domain::interaction::rows(db, workspace_id, &ids).await {
            Ok(found) => rows.extend(
                found
                    .into_iter()
                    .map(|(id, row)| (id.uuid(), Arc::new(row))),
            ),
            Err(err) => {
                tracing::warn!(error = %err, "the live feed could not read new interactions; subscribers read their own");
            }
        }
    }
    rows
}
