//! The Markdown tables `rapport bench` prints on stdout (pasted into `BENCHMARKS.md`).

use std::time::Duration;

use super::{
    BenchOptions, CompareReport, IngestBenchReport, LiveBenchReport, ScaleReport, ScenarioReport,
    SearchBenchReport,
};

/// Everything one `rapport bench` run measured. The ingestion, search and comparison
/// benchmarks are `None` when skipped (the API scenarios empty); their errors surface
/// only after the API table is printed.
pub struct Results {
    /// `SQLite` or `PostgreSQL`.
    pub database: &'static str,
    pub options: BenchOptions,
    pub scenarios: Vec<ScenarioReport>,
    pub ingest: Option<anyhow::Result<IngestBenchReport>>,
    pub search: Option<anyhow::Result<SearchBenchReport>>,
    pub compare: Option<anyhow::Result<CompareReport>>,
    pub scale: Option<anyhow::Result<ScaleReport>>,
    pub live: Option<anyhow::Result<LiveBenchReport>>,
}

impl Results {
    /// Prints the tables on stdout; fails with the ingestion or search benchmark's error,
    /// after printing what came before it.
    pub fn print(self) -> anyhow::Result<()> {
        let Results {
            database,
            options,
            scenarios,
            ingest,
            search,
            compare,
            scale,
            live,
        } = self;
        if !scenarios.is_empty() {
            println!(
                "{database}, {} customers × {} interactions, {} requests per scenario, {} in flight\n",
                options.customers,
                options.interactions_per_customer,
                options.requests,
                options.concurrency
            );
            println!(
                "| scenario | requests | p50 ms | p95 ms | p99 ms | req/s |\n|---|---|---|---|---|---|"
            );
            for report in scenarios {
                println!("{}", report.line());
            }
        }
        if let Some(compare) = compare {
            let compare = compare?;
            let options = &compare.options;
            let beside = if options.peer.is_some() {
                format!(
                    "beside PostGraphile 5 over the same rows ({} answers of both compared alike first)",
                    compare.compared
                )
            } else {
                "alone (no reference server)".to_owned()
            };
            println!(
                "\n{database}, Rapport {beside}: {} customers × {} interactions, {} timed requests per server and row, in {} rounds\n",
                options.customers,
                options.interactions_per_customer,
                options.requests,
                options.rounds,
            );
            println!("| scenario | clients | Rapport req/s | Rapport p50 / p95 / p99 ms | reference req/s | reference p50 / p95 / p99 ms | Rapport / reference | Rapport statements per request |\n|---|---|---|---|---|---|---|---|");
            for row in &compare.rows {
                println!("{}", row.line());
            }
        }
        if let Some(ingest) = ingest {
            let ingest = ingest?;
            println!(
                "\n{database}, ingestion pipeline: {} items in batches of {}, platform payloads of {} ({} customers, {} conversations made)\n",
                ingest.items,
                ingest.batch,
                match ingest.raw_bytes {
                    0 => "a bare id".to_owned(),
                    bytes => format!("about {bytes} bytes"),
                },
                ingest.customers,
                ingest.conversations
            );
            println!("| pass | items/s |\n|---|---|");
            println!("| new items | {:.0} |", ingest.new_per_second);
            println!(
                "| the same items again (dropped) | {:.0} |",
                ingest.replay_per_second
            );
            println!(
                "| reference: plain multi-row INSERT of the same rows | {:.0} |",
                ingest.reference_per_second
            );
            println!(
                "\nNew items at {:.0} % of the plain INSERT's rate, measured in this run.",
                100.0 * ingest.new_per_second / ingest.reference_per_second
            );
            println!("New items: {}.", ingest.split);
        }
        if let Some(live) = live {
            let live = live?;
            let ms = |d: Duration| d.as_secs_f64() * 1e3;
            println!(
                "\n{database}, live updates: {} subscribers on /graphql/ws, {} items stored at {} a second (a transaction every 10 ms), every message checked (each item once, in order, on every socket)\n",
                live.options.subscribers, live.items, live.options.rate
            );
            println!("| items/s stored | events/s in the log | commit → socket p50 ms | p90 ms | p99 ms | max ms |\n|---|---|---|---|---|---|");
            println!(
                "| {:.0} | {:.0} | {:.1} | {:.1} | {:.1} | {:.1} |",
                live.stored_per_second,
                live.events_per_second,
                ms(live.p50),
                ms(live.p90),
                ms(live.p99),
                ms(live.max)
            );
        }
        if let Some(scale) = scale {
            let scale = scale?;
            println!(
                "\n{database}, scale-out: {} webhook deliveries per row to {} source(s) from {} senders, spread over the processes, every answer checked\n",
                scale.options.items, scale.options.sources, scale.options.clients
            );
            println!("| processes | deliveries/s | × one process | p50 / p99 ms | index caught up after, s | killed halfway: resent, stored, distinct |\n|---|---|---|---|---|---|");
            let one = scale
                .rows
                .iter()
                .find(|row| row.processes == 1 && row.killed.is_none())
                .map(|row| row.per_second);
            let ms = |d: Duration| d.as_secs_f64() * 1e3;
            for row in &scale.rows {
                let ratio = one.map_or("—".to_owned(), |one| {
                    format!("{:.2}", row.per_second / one)
                });
                let killed = row.killed.as_ref().map_or("—".to_owned(), |k| {
                    format!("{}, {}, {}", k.resent, k.stored, k.distinct)
                });
                println!(
                    "| {} | {:.0} | {ratio} | {:.1} / {:.1} | {:.1} | {killed} |",
                    row.processes,
                    row.per_second,
                    ms(row.p50),
                    ms(row.p99),
                    row.index_caught_up.as_secs_f64()
                );
            }
        }
        if let Some(search) = search {
            let search = search?;
            println!(
                "\n{database}, search ({} backend), {} interactions: indexed {:.0} events/s ({:.0} interactions/s) from the event log\n",
                search.backend, search.interactions, search.events_per_second, search.documents_per_second
            );
            println!(
                "| search | requests | p50 ms | p95 ms | p99 ms | req/s |\n|---|---|---|---|---|---|"
            );
            for report in search.scenarios {
                println!("{}", report.line());
            }
            println!("{}", search.index_lag.line());
        }
        Ok(())
    }
}

impl ScenarioReport {
    /// One Markdown table row.
    pub fn line(&self) -> String {
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        format!(
            "| {} | {} | {:.1} | {:.1} | {:.1} | {:.0} |",
            self.name,
            self.requests,
            ms(self.p50),
            ms(self.p95),
            ms(self.p99),
            self.per_second
        )
    }
}
