//! The ingestion pipeline benchmark: synthetic items through [`crate::ingest::ingest`] in
//! batches, then the same items again, checking exactly-once storage.

use std::time::Instant;

use anyhow::bail;
use serde_json::json;

use crate::domain;
use crate::App;

/// The figures of the ingestion benchmark.
#[derive(Debug)]
pub struct IngestBenchReport {
    pub items: usize,
    pub batch: usize,
    /// New items through the whole pipeline (identity, threading, events, cursor).
    pub new_per_second: f64,
    /// The same items pulled again: every one recognised and dropped.
    pub replay_per_second: f64,
    pub customers: u64,
    pub conversations: u64,
}

/// Pushes `items` synthetic mentions (a fifth of the authors new, a third of the items
/// replies) through [`crate::ingest::ingest`] in batches of `batch`, as a connector's pulls
/// would, then the same items again; checks every item is stored exactly once, and deletes
/// the scratch workspace.
pub async fn ingest(app: &App, items: usize, batch: usize) -> anyhow::Result<IngestBenchReport> {
    let slug = format!("bench-ingest-{}", uuid::Uuid::now_v7().simple());
    let workspace = domain::workspace::ensure(&app.db, &slug).await?;
    let caller = domain::Caller::owner_without_key(workspace.id, "bench");
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
    let authors = (items / 5).max(1);
    let base = chrono::Utc::now() - chrono::Duration::days(30);
    let all: Vec<connectors::InboundItem> = (0..items)
        .map(|n| {
            let author = n % authors;
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
                raw: json!({ "id": n }),
            }
        })
        .collect();
    let run = |label: &'static str| {
        let all = &all;
        let source = &source;
        async move {
            let started = Instant::now();
            let mut stored = 0;
            for (index, chunk) in all.chunks(batch.max(1)).enumerate() {
                let cursor = format!("{label}-{index}");
                let report =
                    crate::ingest::ingest(&app.db, source, chunk, Some(&cursor), None).await?;
                stored += report.new.len();
            }
            anyhow::Ok((stored, items as f64 / started.elapsed().as_secs_f64()))
        }
    };
    let (stored, new_per_second) = run("first").await?;
    if stored != items {
        bail!("{stored} of {items} items were stored");
    }
    let (again, replay_per_second) = run("replay").await?;
    if again != 0 {
        bail!("the replay stored {again} items twice");
    }
    let counts = domain::bulk::counts(&app.db, workspace.id).await?;
    if counts.interactions != items as u64 {
        bail!(
            "{} interactions stored for {items} items",
            counts.interactions
        );
    }
    domain::workspace::delete(&app.db, workspace.id).await?;
    Ok(IngestBenchReport {
        items,
        batch,
        new_per_second,
        replay_per_second,
        customers: counts.customers,
        conversations: counts.conversations,
    })
}
