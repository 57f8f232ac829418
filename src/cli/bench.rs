//! `rapport bench`: the benchmarks of [`rapport::bench`] on a scratch data directory, their
//! tables on stdout.

use clap::Args;

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
    /// Requests per scenario.
    #[arg(long, default_value_t = 2_000)]
    requests: usize,
    /// Requests in flight at once.
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// Items for the ingestion pipeline benchmark (0 skips it).
    #[arg(long, default_value_t = 20_000)]
    ingest_items: usize,
    /// Items per batch (one transaction each) in the ingestion benchmark.
    #[arg(long, default_value_t = 100)]
    ingest_batch: usize,
    /// Customers (× 20 interactions) for the search benchmark (0 skips it).
    #[arg(long, default_value_t = 5_000)]
    search_customers: usize,
    /// Searches per search scenario.
    #[arg(long, default_value_t = 200)]
    search_requests: usize,
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
        Some(rapport::bench::ingest(&app, args.ingest_items, args.ingest_batch).await)
    } else {
        None
    };
    let search = if args.search_customers > 0 {
        Some(rapport::bench::search(&app, args.search_customers, args.search_requests).await)
    } else {
        None
    };
    let result = rapport::bench::run(app, options.clone()).await;
    if let Some(dir) = scratch {
        let _ = std::fs::remove_dir_all(dir);
    }
    Results {
        database,
        options,
        scenarios: result?,
        ingest,
        search,
    }
    .print()
}
