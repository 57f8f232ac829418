//! `rapport reindex`: rebuild the search indexes from the database, with progress on
//! stderr (a bar on a terminal, a log line every tenth otherwise).

use rapport::App;

/// Rebuilds one index (`--index`) or both, then applies the events of the meantime.
pub async fn run(app: App, index: Option<String>) -> anyhow::Result<()> {
    use std::io::{IsTerminal, Write};
    let only = match index.as_deref() {
        None => None,
        Some(name) => Some(rapport::search::IndexName::parse(name).ok_or_else(|| {
            anyhow::anyhow!("--index: `{name}` is not an index (interactions, customers)")
        })?),
    };
    let terminal = std::io::stderr().is_terminal();
    let last_tenth = std::sync::atomic::AtomicU64::new(u64::MAX);
    let progress = |index: rapport::search::IndexName, done: u64, total: u64| {
        let percent = (done * 100).checked_div(total).unwrap_or(100).min(100);
        if terminal {
            let filled = (percent / 5) as usize;
            eprint!(
                "\r{:<12} [{}{}] {percent:>3}% {done}/{total}",
                index.as_str(),
                "#".repeat(filled),
                " ".repeat(20 - filled)
            );
            let _ = std::io::stderr().flush();
        } else if last_tenth.swap(percent / 10, std::sync::atomic::Ordering::Relaxed)
            != percent / 10
        {
            tracing::info!(index = index.as_str(), done, total, "reindexing");
        }
    };
    let started = std::time::Instant::now();
    let done = rapport::search::indexer::reindex(
        &app.db,
        &app.search,
        &app.search_consumer,
        only,
        &progress,
    )
    .await?;
    if terminal {
        eprintln!();
    }
    let indexer = rapport::search::indexer::Indexer::new(&app);
    let applied = indexer.catch_up().await?;
    for (index, count) in done {
        eprintln!("{}: {count} documents", index.as_str());
    }
    eprintln!(
        "reindexed on {} in {:.1} s; {applied} events applied since",
        app.search.backend(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
