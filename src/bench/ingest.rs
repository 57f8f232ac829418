//! The ingestion pipeline benchmark: synthetic items through [`crate::ingest::ingest`] in
//! batches, then the same items again, checking exactly-once storage; and, in the same
//! run, a plain batched INSERT of the same interaction rows as the reference the
//! pipeline is measured against.

use std::fmt;
use std::time::{Duration, Instant};

use anyhow::bail;
use serde_json::json;

use super::cpu::{own_cpu, Server, ServerCpu};
use crate::domain;
use crate::App;

/// As a sync prepares its batches.
const BACKGROUND: domain::batch::Urgency = domain::batch::Urgency::Background;

/// The figures of the ingestion benchmark.
#[derive(Debug)]
pub struct IngestBenchReport {
    pub items: usize,
    pub batch: usize,
    /// The approximate size of each item's platform payload.
    pub raw_bytes: usize,
    /// New items through the whole pipeline (identity, threading, events, cursor).
    pub new_per_second: f64,
    /// The same items pulled again: every one recognised and dropped.
    pub replay_per_second: f64,
    /// The same interaction rows (under another source) with nothing but a multi-row
    /// INSERT, a transaction per batch: what the database alone does with them.
    pub reference_per_second: f64,
    pub customers: u64,
    pub conversations: u64,
    /// Where the new items' time went, to tell which side decides the rate.
    pub split: IngestSplit,
}

/// How the new items' pass spent its time. A batch's store and the next batch's
/// preparation run side by side, so the longer of the two decides the rate, except for
/// batches under [`domain::batch::PARALLEL_FROM`] items, which are prepared inline and
/// enriched inside the store. And the CPU each process spent, for a machine whose cores
/// are all busy.
#[derive(Debug, Default)]
pub struct IngestSplit {
    pub items: usize,
    pub batches: usize,
    /// Batches too small to prepare apart: their enrichment is counted in the store.
    pub inline: bool,
    /// Storing the batches ([`crate::ingest::store`]: their transactions), in all.
    pub store: Duration,
    /// Preparing them ([`crate::ingest::prepare`]: normalising, language and sentiment),
    /// in all; the first batch's alone, the others' beside the store of the one before.
    pub prepare: Duration,
    /// Rapport's CPU (user and system, every thread) during the pass: whatever else the
    /// process ran meanwhile is in it (SQLite's checkpoints, in tests other tests).
    pub cpu: Duration,
    /// The PostgreSQL server's CPU during the pass (its postmaster and every child of it),
    /// when the database is PostgreSQL on this machine.
    pub database_cpu: Option<ServerCpu>,
}

impl fmt::Display for IngestSplit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let per_batch = |d: Duration| d.as_secs_f64() * 1e3 / self.batches.max(1) as f64;
        let per_item = |d: Duration| d.as_secs_f64() * 1e6 / self.items.max(1) as f64;
        if self.inline {
            write!(
                f,
                "a batch prepared inline and stored, enrichment included, in {:.1} ms",
                per_batch(self.store)
            )?;
        } else {
            write!(
                f,
                "a batch stored in {:.1} ms, the next prepared beside it in {:.1} ms (the longer \
                 decides the rate)",
                per_batch(self.store),
                per_batch(self.prepare)
            )?;
        }
        write!(f, "; CPU an item: Rapport {:.0} µs", per_item(self.cpu))?;
        match &self.database_cpu {
            Some(server) => write!(f, ", PostgreSQL {} µs", server.micros_each(self.items)),
            None => Ok(()),
        }
    }
}

/// Pushes `items` synthetic mentions (every fifth from a new author, the others from
/// earlier authors; a third of the items replies to the item before) through
/// [`crate::ingest::ingest`] in batches of `batch`, as a connector's pulls would, then the
/// same items again; checks every item is stored exactly once; inserts the stored rows
/// again under another source with plain multi-row INSERTs in batches of `batch` (the
/// reference); and deletes the scratch workspace. Each item carries a platform payload
/// (`raw`) of about `raw_bytes` bytes, shaped like a Mastodon notification (0: a bare
/// `{"id"}`, as the figures before this option had). With `languages`, the scratch
/// workspace names them (its `languages` setting), so detection chooses among those.
pub async fn ingest(
    app: &App,
    items: usize,
    batch: usize,
    raw_bytes: usize,
    languages: &[String],
) -> anyhow::Result<IngestBenchReport> {
    // Checked before the scratch workspace exists, so a bad code leaves nothing behind.
    domain::enrich::check_languages("--ingest-languages", languages)?;
    let slug = format!("bench-ingest-{}", uuid::Uuid::now_v7().simple());
    let workspace = domain::workspace::ensure(&app.db, &slug).await?;
    let caller = domain::Caller::owner_without_key(workspace.id, "bench");
    if !languages.is_empty() {
        // As a workspace that names its customers' languages: detection chooses among them.
        let update = domain::workspace::SettingsUpdate {
            languages: Some(languages.to_vec()),
            ..Default::default()
        };
        domain::workspace::update_settings(&app.db, &caller, update).await?;
    }
    let source = domain::source::create(
        &app.db,
        &caller,
        domain::source::NewSource {
            channel: connectors::Channel::Webhook,
            name: "bench".into(),
            config: json!({ "secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw" }),
            schedule_secs: None,
        },
    )
    .await?;
    let base = chrono::Utc::now() - chrono::Duration::days(30);
    let all: Vec<connectors::InboundItem> = (0..items)
        .map(|n| {
            // Every fifth item brings a new author; the others come from authors met
            // before (the same few again and again early on, spread out later).
            let author = if n % 5 == 0 {
                n / 5
            } else {
                (n * 7) % (n / 5 + 1)
            };
            connectors::InboundItem {
                external_id: format!("item-{n}"),
                author: connectors::Author {
                    platform_id: format!("https://social.example/users/u{author}"),
                    handle: Some(format!("@u{author}@social.example")),
                    display_name: Some(format!("User {author}")),
                    email: (author % 3 == 0).then(|| format!("u{author}@mail.example")),
                    ..connectors::Author::default()
                },
                outbound: false,
                kind: "mention".into(),
                subject: None,
                text: format!(
                    "@acme item {n}: the export {} since the update, can you help? 🙏",
                    if n % 2 == 0 { "is slow" } else { "works great" }
                ),
                html: None,
                url: Some(format!("https://social.example/@u{author}/{n}")),
                language: None,
                occurred_at: base + chrono::Duration::seconds(n as i64),
                thread_key: None,
                in_reply_to: (n % 3 == 2).then(|| format!("item-{}", n - 1)),
                raw: raw_payload(n, author, raw_bytes),
            }
        })
        .collect();
    let server = Server::of(&app.db).await?;
    let run = |label: &'static str| {
        let all = &all;
        let source = &source;
        async move {
            // As a sync does: batch N+1 is prepared while batch N's transaction runs.
            let server_before = server.and_then(Server::read);
            let cpu_before = own_cpu();
            let started = Instant::now();
            let mut split = IngestSplit {
                items,
                inline: batch < domain::batch::PARALLEL_FROM,
                ..IngestSplit::default()
            };
            let mut stored = 0;
            let mut chunks = all.chunks(batch.max(1)).enumerate().peekable();
            let timed_prepare = |chunk| async move {
                let started = Instant::now();
                let prepared = crate::ingest::prepare(&app.db, source, chunk, BACKGROUND).await;
                (prepared, started.elapsed())
            };
            let mut prepared = match chunks.peek() {
                Some((_, chunk)) => {
                    let (prepared, took) = timed_prepare(chunk).await;
                    split.prepare += took;
                    Some(prepared?)
                }
                None => None,
            };
            while let (Some((index, _)), Some(current)) = (chunks.next(), prepared.take()) {
                let cursor = format!("{label}-{index}");
                let store = async {
                    let started = Instant::now();
                    let report =
                        crate::ingest::store(&app.db, source, current, Some(&cursor), None).await;
                    (report, started.elapsed())
                };
                let ((report, took), next) = match chunks.peek() {
                    Some((_, chunk)) => {
                        let (stored_in, (next, prepared_in)) =
                            tokio::join!(store, timed_prepare(chunk));
                        split.prepare += prepared_in;
                        (stored_in, Some(next))
                    }
                    None => (store.await, None),
                };
                split.store += took;
                split.batches += 1;
                stored += report?.new.len();
                prepared = next.transpose()?;
            }
            let elapsed = started.elapsed();
            split.cpu = own_cpu().saturating_sub(cpu_before);
            split.database_cpu = server_before
                .zip(server.and_then(Server::read))
                .map(|(before, after)| after.since(&before));
            anyhow::Ok((stored, items as f64 / elapsed.as_secs_f64(), split))
        }
    };
    let (stored, new_per_second, split) = run("first").await?;
    if stored != items {
        bail!("{stored} of {items} items were stored");
    }
    let (again, replay_per_second, _) = run("replay").await?;
    if again != 0 {
        bail!("the replay stored {again} items twice");
    }
    let reference_per_second = reference(app, &caller, &source, batch).await?;
    let counts = domain::bulk::counts(&app.db, workspace.id).await?;
    if counts.interactions != 2 * items as u64 {
        bail!(
            "{} interactions stored for {items} items and their reference copies",
            counts.interactions
        );
    }
    domain::workspace::delete(&app.db, workspace.id).await?;
    eprintln!(
        "ingestion, {items} items in batches of {batch}: {new_per_second:.0} new items/s, \
         {replay_per_second:.0} replayed items/s; plain INSERT of the same rows \
         {reference_per_second:.0} rows/s; pipeline / reference {:.0} %; {split}; \
         languages detected among {}",
        100.0 * new_per_second / reference_per_second,
        if languages.is_empty() {
            "all".to_owned()
        } else {
            languages.join(", ")
        },
    );
    Ok(IngestBenchReport {
        items,
        batch,
        raw_bytes,
        new_per_second,
        replay_per_second,
        reference_per_second,
        customers: counts.customers,
        conversations: counts.conversations,
        split,
    })
}

/// A platform payload of about `bytes` bytes for item `n` by `author`: a notification
/// with its account and status objects, as Mastodon sends them (the account's profile
/// note and the status's HTML take the size); `{"id"}` alone for 0.
fn raw_payload(n: usize, author: usize, bytes: usize) -> serde_json::Value {
    if bytes == 0 {
        return json!({ "id": n });
    }
    let mut raw = json!({
        "id": n.to_string(),
        "type": "mention",
        "created_at": "2026-11-03T10:00:00.000Z",
        "account": {
            "id": author.to_string(),
            "username": format!("u{author}"),
            "acct": format!("u{author}@social.example"),
            "display_name": format!("User {author}"),
            "url": format!("https://social.example/@u{author}"),
            "followers_count": 120,
            "following_count": 80,
            "statuses_count": 3_400,
            "fields": [{ "name": "Web", "value": "<a href=\"https://u.example\">u.example</a>" }],
        },
        "status": {
            "id": n.to_string(),
            "visibility": "public",
            "language": "en",
            "uri": format!("https://social.example/users/u{author}/statuses/{n}"),
            "replies_count": 0,
            "reblogs_count": 0,
            "favourites_count": 0,
            "mentions": [{ "id": "1", "username": "acme", "acct": "acme" }],
        },
    });
    let have = raw.to_string().len();
    let padding = bytes.saturating_sub(have) / 2;
    raw["account"]["note"] = json!(format!("<p>{}</p>", "profile ".repeat(padding / 8)));
    raw["status"]["content"] = json!(format!("<p>{}</p>", "status text ".repeat(padding / 12)));
    raw
}

/// Inserts the interaction rows `source` holds again, under a new source of the same
/// workspace, with plain multi-row INSERTs in transactions of `batch` rows; returns rows
/// a second. The rows are built before the clock starts.
async fn reference(
    app: &App,
    caller: &domain::Caller,
    source: &entity::source::Model,
    batch: usize,
) -> anyhow::Result<f64> {
    let copy = domain::source::create(
        &app.db,
        caller,
        domain::source::NewSource {
            channel: connectors::Channel::Webhook,
            name: "bench reference".into(),
            config: json!({ "secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw" }),
            schedule_secs: None,
        },
    )
    .await?;
    let now = domain::now();
    let rows: Vec<entity::interaction::Model> =
        domain::bulk::interactions_of_source(&app.db, source.workspace_id, source.id)
            .await?
            .into_iter()
            .map(|row| entity::interaction::Model {
                id: entity::InteractionId::new(),
                source_id: Some(copy.id),
                ingested_at: now,
                ..row
            })
            .collect();
    let count = rows.len();
    let mut rows = rows.into_iter().peekable();
    let mut batches = Vec::new();
    while rows.peek().is_some() {
        batches.push(rows.by_ref().take(batch.max(1)).collect::<Vec<_>>());
    }
    let started = Instant::now();
    for rows in batches {
        domain::bulk::insert_interactions_plain(&app.db, rows).await?;
    }
    Ok(count as f64 / started.elapsed().as_secs_f64())
}
