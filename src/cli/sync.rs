//! `rapport sync`: pull a source (or every pull source of a workspace) now.

use rapport::domain;
use rapport::{ids, App};

use super::owner_of;

/// Prints, alone on stdout, how many new items landed; fails when a source failed.
pub async fn run(app: App, source_id: Option<String>, workspace: &str) -> anyhow::Result<()> {
    let caller = owner_of(&app, workspace).await?;
    let syncer = rapport::ingest::sync::Syncer::new(&app);
    let ids: Vec<entity::SourceId> = match source_id {
        Some(id) => vec![ids::decode("SOURCE_ID", &id)?],
        None => domain::source::list(&app.db, &caller)
            .await?
            .into_iter()
            .filter(|source| {
                source.channel != connectors::Channel::Webhook
                    && source.status != domain::source::SourceStatus::Paused
            })
            .map(|source| source.id)
            .collect(),
    };
    let mut new = 0;
    let mut failed = 0;
    for id in ids {
        let (report, source) = rapport::ingest::sync::sync_now(&syncer, &caller, id).await?;
        let name = ids::encode(id);
        match &report.error {
            None => eprintln!(
                "{name} ({}): {} new, {} already stored, {} batches",
                source.name, report.new, report.duplicates, report.batches
            ),
            Some(error) => {
                failed += 1;
                eprintln!(
                    "{name} ({}): failed after {} new items: {error} (status {}, next try {})",
                    source.name,
                    report.new,
                    source.status,
                    source
                        .next_run_at
                        .map(|at| at.to_rfc3339())
                        .unwrap_or_default()
                );
            }
        }
        new += report.new;
    }
    println!("{new}");
    if failed > 0 {
        anyhow::bail!("{failed} source(s) failed to sync");
    }
    Ok(())
}
