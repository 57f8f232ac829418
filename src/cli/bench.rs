//! `rapport bench`: the benchmarks of [`rapport::bench`] on a scratch data directory, their
//! tables on stdout.

use std::path::PathBuf;

use clap::{Args, ValueEnum};

use rapport::bench::report::Results;
use rapport::config::Config;
use rapport::App;

#[derive(Args)]
pub struct BenchArgs {
    /// Customers to seed.
    #[arg(long, default_value_t = 2_000)]
    customers: usize,
    /// Interactions per customer.
    #[arg(long, default_value_t = 20)]
    interactions: usize,
    /// Requests per scenario (0 skips these scenarios).
    #[arg(long, default_value_t = 2_000)]
    requests: usize,
    /// Requests in flight at once.
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// Items for the ingestion pipeline benchmark (0 skips it).
    #[arg(long, default_value_t = 20_000)]
    ingest_items: usize,
    /// Items per batch (one transaction each) in the ingestion benchmark: a connector's
    /// backlog arrives in pulls of about a thousand.
    #[arg(long, default_value_t = 1_000)]
    ingest_batch: usize,
    /// The approximate size of each ingested item's platform payload (`raw`), shaped
    /// like a Mastodon notification (a real one is 2 to 4 KB); 0 gives a bare `{"id"}`.
    /// At most 60,000: a larger payload is stored as a truncation marker.
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u32).range(0..=60_000))]
    ingest_raw_bytes: u32,
    /// The languages the ingestion benchmark's workspace names (its `languages` setting,
    /// e.g. `en,de,fr,es,pt,it`): detection chooses among those only. None: all.
    #[arg(long, value_delimiter = ',')]
    ingest_languages: Vec<String>,
    /// Customers (× 20 interactions) for the search benchmark (0 skips it).
    #[arg(long, default_value_t = 5_000)]
    search_customers: usize,
    /// Searches per search scenario.
    #[arg(long, default_value_t = 200)]
    search_requests: usize,
    /// Timed requests per server for each row of the comparison with a reference server
    /// (the 360 view and a list of 50 at each `--compare-clients`; 0 skips it).
    #[arg(long, default_value_t = 2_000)]
    compare_requests: usize,
    /// Clients (requests in flight) of the comparison, one row each.
    #[arg(long, value_delimiter = ',', default_value = "1,16")]
    compare_clients: Vec<usize>,
    /// The comparison's scenarios: `view` (a customer's 360 view), `list` (50 customers
    /// with identities and last interactions).
    #[arg(long, value_enum, value_delimiter = ',', default_value = "view,list")]
    compare_scenarios: Vec<CompareScenario>,
    /// Rounds the comparison alternates the servers in.
    #[arg(long, default_value_t = 4)]
    compare_rounds: usize,
    /// Customers whose 360 view both servers must answer alike before timing.
    #[arg(long, default_value_t = 200)]
    compare_sample: usize,
    /// The reference server to start beside Rapport over the same PostgreSQL database.
    #[arg(long, value_enum)]
    peer: Option<PeerKind>,
    /// Where the reference servers are installed (`npm ci` there).
    #[arg(long, default_value = "bench/peers")]
    peers_dir: PathBuf,
    /// A reference server already serving this database (its GraphQL URL), instead of
    /// starting one.
    #[arg(long, conflicts_with = "peer")]
    peer_url: Option<String>,
    /// Scale-out: rows of this many `rapport serve` processes over the benchmark's
    /// database, webhook deliveries spread over all of them (e.g. `1,2,4`; none skips it).
    #[arg(long, value_delimiter = ',')]
    processes: Vec<usize>,
    /// Deliveries per scale-out row.
    #[arg(long, default_value_t = 4_000)]
    scale_items: usize,
    /// Webhook sources the scale-out deliveries are spread over.
    #[arg(long, default_value_t = 1)]
    scale_sources: usize,
    /// Whether the scale-out benchmark also runs its largest row again with the
    /// indexing process killed halfway (nothing may be lost or doubled).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    scale_kill: bool,
    /// Items stored a second in the live-update benchmark (subscribers timed from each
    /// commit to their socket).
    #[arg(long, default_value_t = 1_000)]
    live_rate: usize,
    /// Seconds the live-update benchmark stores items for (0 skips it).
    #[arg(long, default_value_t = 10)]
    live_seconds: u64,
    /// Sockets subscribed in the live-update benchmark.
    #[arg(long, default_value_t = 4)]
    live_subscribers: usize,
    /// A Rapport already serving this database (its GraphQL URL, e.g. under a profiler),
    /// asked in the comparison instead of one in this process.
    #[arg(long)]
    rapport_url: Option<String>,
}

#[derive(Clone, Copy, ValueEnum)]
enum CompareScenario {
    View,
    List,
}

#[derive(Clone, Copy, ValueEnum)]
enum PeerKind {
    /// PostGraphile 5 (`bench/peers/postgraphile.mjs`).
    Postgraphile,
}

/// Runs the benchmarks on a scratch data directory (removed afterwards), without the rate
/// limit, and prints their tables.
pub async fn run(mut config: Config, args: BenchArgs) -> anyhow::Result<()> {
    // A scratch data directory: the SQLite database (without --database-url) and the
    // embedded search index live there and go away afterwards.
    let scratch =
        Some(std::env::temp_dir().join(format!("rapport-bench-{}", uuid::Uuid::now_v7().simple())));
    if let Some(dir) = &scratch {
        config.data_dir = dir.clone();
    }
    config.limits.requests_per_minute = 0;
    let database = if config.database_url.is_some() {
        "PostgreSQL"
    } else {
        "SQLite"
    };
    let options = rapport::bench::BenchOptions {
        customers: args.customers,
        interactions_per_customer: args.interactions,
        requests: args.requests,
        concurrency: args.concurrency.max(1),
    };
    let app = App::start(config).await?;
    let ingest = if args.ingest_items > 0 {
        Some(
            rapport::bench::ingest(
                &app,
                args.ingest_items,
                args.ingest_batch,
                args.ingest_raw_bytes as usize,
                &args.ingest_languages,
            )
            .await,
        )
    } else {
        None
    };
    let search = if args.search_customers > 0 {
        Some(rapport::bench::search(&app, args.search_customers, args.search_requests).await)
    } else {
        None
    };
    let scale = if args.processes.is_empty() {
        None
    } else {
        let options = rapport::bench::ScaleOptions {
            processes: args.processes.clone(),
            items: args.scale_items.max(2),
            clients: args.concurrency.max(1),
            sources: args.scale_sources.max(1),
            kill: args.scale_kill,
        };
        Some(rapport::bench::scale(&app, options).await)
    };
    let live = if args.live_seconds > 0 {
        let options = rapport::bench::LiveOptions {
            rate: args.live_rate.max(1),
            seconds: args.live_seconds,
            subscribers: args.live_subscribers.max(1),
        };
        Some(rapport::bench::live(&app, options).await)
    } else {
        None
    };
    let result = if args.requests > 0 {
        rapport::bench::run(app.clone(), options.clone()).await
    } else {
        Ok(Vec::new())
    };
    let compare = if args.compare_requests > 0 {
        let peer = match (args.peer, args.peer_url) {
            (Some(PeerKind::Postgraphile), _) => {
                Some(rapport::bench::Peer::PostGraphile(args.peers_dir))
            }
            (None, Some(url)) => Some(rapport::bench::Peer::Url(url)),
            (None, None) => None,
        };
        let compare = rapport::bench::CompareOptions {
            customers: args.customers,
            interactions_per_customer: args.interactions,
            requests: args.compare_requests,
            clients: args.compare_clients,
            scenarios: args
                .compare_scenarios
                .into_iter()
                .map(|scenario| match scenario {
                    CompareScenario::View => rapport::bench::Scenario::View,
                    CompareScenario::List => rapport::bench::Scenario::List,
                })
                .collect(),
            rounds: args.compare_rounds.max(1),
            sample: args.compare_sample,
            peer,
            rapport_url: args.rapport_url,
        };
        Some(rapport::bench::compare(app, compare).await)
    } else {
        None
    };
    if let Some(dir) = scratch {
        let _ = std::fs::remove_dir_all(dir);
    }
    Results {
        database,
        options,
        scenarios: result?,
        ingest,
        search,
        compare,
        scale,
        live,
    }
    .print()
}
