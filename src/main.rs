//! The `rapport` command: serve the API, migrate, seed demo data, manage keys, print the
//! schema. Results go to stdout (a key, the SDL) so scripts can capture them; logs and
//! progress go to stderr.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};

use rapport::config::{Config, LogFormat, Overrides};
use rapport::domain::{self, Role};
use rapport::{ids, App};

#[derive(Parser)]
#[command(
    name = "rapport",
    version,
    about = "Rapport: a social CRM served as a GraphQL API"
)]
struct Cli {
    #[command(flatten)]
    global: Global,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Args, Clone)]
struct Global {
    /// Directory for the SQLite database and other local data.
    #[arg(long, global = true, env = "RAPPORT_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Database URL: postgres://user:pass@host/db, or sqlite://path. Default: SQLite in the data directory.
    #[arg(long, global = true, env = "RAPPORT_DATABASE_URL")]
    database_url: Option<String>,
    /// Configuration file (TOML). Default: ./rapport.toml when it exists.
    #[arg(long, global = true, env = "RAPPORT_CONFIG")]
    config_file: Option<PathBuf>,
    /// Meilisearch URL; the embedded search backend is used without it.
    #[arg(long, global = true, env = "RAPPORT_MEILI_URL")]
    meili_url: Option<String>,
    /// Meilisearch API key.
    #[arg(long, global = true, env = "RAPPORT_MEILI_KEY", hide_env_values = true)]
    meili_key: Option<String>,
    /// Log format on stderr; the level comes from RUST_LOG (default info).
    #[arg(long, global = true, env = "RAPPORT_LOG_FORMAT", value_enum)]
    log_format: Option<LogFormat>,
    /// Non-public addresses connectors may reach, added to `[outbound] allow`
    /// (comma-separated): 127.0.0.1:8080, 10.1.0.0/16, [::1]:8080, intranet.example:8443.
    /// Everything else that is not a public address is refused.
    #[arg(
        long,
        global = true,
        env = "RAPPORT_OUTBOUND_ALLOW",
        value_delimiter = ','
    )]
    outbound_allow: Vec<String>,
}

#[derive(Subcommand)]
enum Command {
    /// Migrate the database and serve the GraphQL API (the default command).
    Serve(ServeArgs),
    /// Apply pending database migrations and exit.
    Migrate,
    /// Seed the `default` workspace with demo data when it is empty, and print an admin key.
    Demo,
    /// Manage API keys.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Manage the sources (connector instances) of a workspace.
    #[command(subcommand)]
    Sources(SourcesCommand),
    /// Sync a pull source now (or every pull source of the workspace) and print, alone on
    /// stdout, how many new items landed. Exits non-zero when a sync failed.
    Sync {
        /// The source's id (src_…); all pull sources of the workspace when left out.
        source_id: Option<String>,
        #[arg(long, default_value = "default")]
        workspace: String,
    },
    /// Rebuild the search indexes from the database (aside, then swapped in: searches keep
    /// working meanwhile), then index what happened during the rebuild.
    Reindex {
        /// `interactions` or `customers`; both when left out.
        #[arg(long)]
        index: Option<String>,
    },
    /// Print the GraphQL schema (SDL) on stdout.
    Schema,
    /// Load-test the GraphQL API over loopback HTTP and print a Markdown table of latencies.
    /// Without --database-url it runs on a temporary SQLite database; with one, it uses a
    /// temporary workspace there and deletes it afterwards.
    Bench(BenchArgs),
}

#[derive(Args)]
struct BenchArgs {
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

#[derive(Args, Default)]
struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "RAPPORT_ADDR")]
    addr: Option<SocketAddr>,
    /// Seed the `default` workspace with demo data if it is empty and print an admin key.
    #[arg(long)]
    demo: bool,
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Create an API key and print it, alone, on stdout. It is shown only this once.
    Create {
        /// What the key may do: viewer (read), agent (work customers, conversations and notes), admin (also delete, keys, sources), owner.
        #[arg(long, value_parser = parse_role)]
        role: Role,
        /// The workspace slug; created when missing.
        #[arg(long, default_value = "default")]
        workspace: String,
        /// A name to recognise the key by (shown as the author of its notes).
        #[arg(long, default_value = "cli")]
        name: String,
    },
    /// List the keys of a workspace (never the secrets).
    List {
        #[arg(long, default_value = "default")]
        workspace: String,
    },
    /// Revoke a key by its id (key_…); requests with it fail from then on.
    Revoke {
        /// The key's id (key_…), as `keys list` shows it.
        id: String,
        #[arg(long, default_value = "default")]
        workspace: String,
    },
}

#[derive(Subcommand)]
enum SourcesCommand {
    /// Add a source and print its id, alone, on stdout.
    Add {
        /// The channel: rss, mastodon, email or webhook.
        #[arg(long)]
        channel: String,
        /// A name unique in the workspace.
        #[arg(long)]
        name: String,
        /// The channel's settings as JSON, e.g. '{"url": "https://…/feed.xml"}' for rss,
        /// '{"secret": "whsec_…"}' for a webhook (README lists every channel's settings).
        #[arg(long)]
        config: String,
        /// Seconds between two pulls (30 to 86400; default 300).
        #[arg(long)]
        schedule: Option<i32>,
        /// The workspace slug; created when missing.
        #[arg(long, default_value = "default")]
        workspace: String,
    },
    /// List the sources of a workspace: id, channel, name, status, items ingested (never secrets).
    List {
        #[arg(long, default_value = "default")]
        workspace: String,
    },
    /// Remove a source by its id (src_…); what it ingested stays.
    Remove {
        id: String,
        #[arg(long, default_value = "default")]
        workspace: String,
    },
}

fn parse_role(text: &str) -> Result<Role, String> {
    Role::parse(&text.to_ascii_lowercase())
        .ok_or_else(|| format!("`{text}` is not a role: use viewer, agent, admin or owner"))
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    match run(cli).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let serve_args = match &cli.command {
        Some(Command::Serve(args)) => Some(ServeArgs {
            addr: args.addr,
            demo: args.demo,
        }),
        None => Some(ServeArgs::default()),
        _ => None,
    };
    let overrides = Overrides {
        addr: serve_args.as_ref().and_then(|args| args.addr),
        data_dir: cli.global.data_dir.clone(),
        database_url: cli.global.database_url.clone(),
        meili_url: cli.global.meili_url.clone(),
        meili_key: cli.global.meili_key.clone(),
        log_format: cli.global.log_format,
        outbound_allow: cli.global.outbound_allow.clone(),
    };
    let config = Config::load(cli.global.config_file.as_deref(), overrides)?;
    rapport::telemetry::init(config.log_format);
    match cli.command {
        Some(Command::Schema) => {
            print!("{}", rapport::graphql::sdl());
            Ok(())
        }
        Some(Command::Migrate) => {
            App::start(config).await?;
            eprintln!("migrations applied");
            Ok(())
        }
        Some(Command::Demo) => {
            let base = format!("http://{}", config.addr);
            let app = App::start(config).await?;
            let key = seed_demo(&app).await?;
            print_demo_webhook(&base, demo_webhook(&app).await?);
            println!("{key}");
            Ok(())
        }
        Some(Command::Keys(command)) => keys(App::start(config).await?, command).await,
        Some(Command::Bench(args)) => bench(config, args).await,
        Some(Command::Sources(command)) => sources(App::start(config).await?, command).await,
        Some(Command::Sync {
            source_id,
            workspace,
        }) => sync(App::start(config).await?, source_id, &workspace).await,
        Some(Command::Reindex { index }) => reindex(App::start(config).await?, index).await,
        Some(Command::Serve(_)) | None => serve(config, serve_args.unwrap_or_default()).await,
    }
}

async fn bench(mut config: Config, args: BenchArgs) -> anyhow::Result<()> {
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
    let reports = result?;
    println!(
        "{database}, {} customers × {} interactions, {} requests per scenario, {} in flight\n",
        options.customers, options.interactions_per_customer, options.requests, options.concurrency
    );
    println!(
        "| scenario | requests | p50 ms | p95 ms | p99 ms | req/s |\n|---|---|---|---|---|---|"
    );
    for report in reports {
        println!("{}", report.line());
    }
    if let Some(ingest) = ingest {
        let ingest = ingest?;
        println!(
            "\n{database}, ingestion pipeline: {} items in batches of {} ({} customers, {} conversations made)\n",
            ingest.items, ingest.batch, ingest.customers, ingest.conversations
        );
        println!("| pass | items/s |\n|---|---|");
        println!("| new items | {:.0} |", ingest.new_per_second);
        println!(
            "| the same items again (dropped) | {:.0} |",
            ingest.replay_per_second
        );
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
    }
    Ok(())
}

/// The command line acts as the owner of the workspace it names.
async fn owner_of(app: &App, slug: &str) -> anyhow::Result<domain::Caller> {
    let workspace = domain::workspace::ensure(&app.db, slug).await?;
    Ok(domain::Caller {
        workspace_id: workspace.id,
        role: Role::Owner,
        key_id: uuid::Uuid::nil(),
        key_name: "cli".into(),
    })
}

async fn sources(app: App, command: SourcesCommand) -> anyhow::Result<()> {
    match command {
        SourcesCommand::Add {
            channel,
            name,
            config,
            schedule,
            workspace,
        } => {
            let channel = connectors::Channel::parse(&channel).ok_or_else(|| {
                anyhow::anyhow!(
                    "--channel: `{channel}` is not a channel (webhook, rss, mastodon, email, …)"
                )
            })?;
            let config: serde_json::Value = serde_json::from_str(&config)
                .map_err(|err| anyhow::anyhow!("--config: not valid JSON: {err}"))?;
            let caller = owner_of(&app, &workspace).await?;
            let new = domain::source::NewSource {
                channel,
                name,
                config,
                schedule_secs: schedule,
            };
            let source = domain::source::create(&app.db, &caller, new)
                .await
                .map_err(|err| match &err {
                    rapport::Error::BadInput {
                        field: Some(field), ..
                    } => anyhow::anyhow!("--{}: {err}", field.split('.').next().unwrap_or(field)),
                    _ => anyhow::anyhow!("{err}"),
                })?;
            println!("{}", ids::encode(ids::Kind::Source, source.id));
        }
        SourcesCommand::List { workspace } => {
            let caller = owner_of(&app, &workspace).await?;
            for source in domain::source::list(&app.db, &caller).await? {
                println!(
                    "{}\t{}\t{}\t{}\t{}",
                    ids::encode(ids::Kind::Source, source.id),
                    source.channel,
                    source.name,
                    source.status,
                    source.items_ingested
                );
            }
        }
        SourcesCommand::Remove { id, workspace } => {
            let source = ids::decode("id", ids::Kind::Source, &id)?;
            let caller = owner_of(&app, &workspace).await?;
            domain::source::delete(&app.db, &caller, source).await?;
            eprintln!("removed {id}");
        }
    }
    Ok(())
}

async fn reindex(app: App, index: Option<String>) -> anyhow::Result<()> {
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
    let done = rapport::search::indexer::reindex(&app.db, &app.search, only, &progress).await?;
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

async fn sync(app: App, source_id: Option<String>, workspace: &str) -> anyhow::Result<()> {
    let caller = owner_of(&app, workspace).await?;
    let syncer = rapport::ingest::sync::Syncer::new(&app);
    let ids: Vec<uuid::Uuid> = match source_id {
        Some(id) => vec![ids::decode("SOURCE_ID", ids::Kind::Source, &id)?],
        None => domain::source::list(&app.db, &caller)
            .await?
            .into_iter()
            .filter(|source| {
                source.channel != connectors::Channel::Webhook.as_str()
                    && source.status != domain::source::SourceStatus::Paused.as_str()
            })
            .map(|source| source.id)
            .collect(),
    };
    let mut new = 0;
    let mut failed = 0;
    for id in ids {
        let (report, source) = rapport::ingest::sync::sync_now(&syncer, &caller, id).await?;
        let name = ids::encode(ids::Kind::Source, id);
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

/// The demo's feed source, reading the feed Rapport itself serves at `/demo/feed.xml`.
async fn demo_feed(app: &App, base: &str) -> anyhow::Result<()> {
    let caller = owner_of(app, "default").await?;
    if domain::source::list(&app.db, &caller)
        .await?
        .iter()
        .any(|source| source.name == "Demo community feed")
    {
        return Ok(());
    }
    let new = domain::source::NewSource {
        channel: connectors::Channel::Rss,
        name: "Demo community feed".into(),
        config: serde_json::json!({ "url": format!("{base}/demo/feed.xml") }),
        schedule_secs: Some(60),
    };
    domain::source::create(&app.db, &caller, new).await?;
    Ok(())
}

/// The demo's webhook source, created once; its secret can be shown only then.
async fn demo_webhook(app: &App) -> anyhow::Result<Option<(String, String)>> {
    use base64::Engine;
    use rand::RngCore;
    let caller = owner_of(app, "default").await?;
    if domain::source::list(&app.db, &caller)
        .await?
        .iter()
        .any(|source| source.name == "Demo contact form")
    {
        return Ok(None);
    }
    let mut key = [0u8; 24];
    rand::thread_rng().fill_bytes(&mut key);
    let secret = format!(
        "whsec_{}",
        base64::engine::general_purpose::STANDARD.encode(key)
    );
    let new = domain::source::NewSource {
        channel: connectors::Channel::Webhook,
        name: "Demo contact form".into(),
        config: serde_json::json!({ "secret": secret }),
        schedule_secs: None,
    };
    let source = domain::source::create(&app.db, &caller, new).await?;
    Ok(Some((ids::encode(ids::Kind::Source, source.id), secret)))
}

fn print_demo_webhook(base: &str, webhook: Option<(String, String)>) {
    if let Some((id, secret)) = webhook {
        eprintln!(
            "  Demo webhook source {id}: POST {base}/webhooks/{id}\n  signed with Standard Webhooks secret {secret} (shown once)"
        );
    }
}

async fn seed_demo(app: &App) -> anyhow::Result<String> {
    let workspace = domain::workspace::ensure(&app.db, "default").await?;
    let seeded = domain::demo::seed(&app.db, workspace.id).await?;
    if seeded > 0 {
        eprintln!("seeded the default workspace with {seeded} demo customers");
    } else {
        eprintln!("the default workspace already has data; nothing seeded");
    }
    let (_, key) =
        domain::workspace::create_key(&app.db, workspace.id, Role::Admin, "demo").await?;
    Ok(key)
}

async fn keys(app: App, command: KeysCommand) -> anyhow::Result<()> {
    match command {
        KeysCommand::Create {
            role,
            workspace,
            name,
        } => {
            let workspace = domain::workspace::ensure(&app.db, &workspace).await?;
            let (_, key) =
                domain::workspace::create_key(&app.db, workspace.id, role, &name).await?;
            println!("{key}");
        }
        KeysCommand::List { workspace } => {
            let workspace = domain::workspace::ensure(&app.db, &workspace).await?;
            for key in domain::workspace::list_keys(&app.db, workspace.id).await? {
                let state = key.revoked_at.map_or("active".to_owned(), |at| {
                    format!("revoked {}", at.to_rfc3339())
                });
                println!(
                    "{}\t{}\t{}\t{}…\t{}",
                    ids::encode(ids::Kind::ApiKey, key.id),
                    key.role,
                    key.name,
                    key.prefix,
                    state
                );
            }
        }
        KeysCommand::Revoke { id, workspace } => {
            let key = ids::decode("id", ids::Kind::ApiKey, &id)?;
            let workspace = domain::workspace::ensure(&app.db, &workspace).await?;
            domain::workspace::revoke_key(&app.db, workspace.id, key).await?;
            eprintln!("revoked {id}");
        }
    }
    Ok(())
}

async fn serve(mut config: Config, args: ServeArgs) -> anyhow::Result<()> {
    let addr = config.addr;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))?;
    let local = listener.local_addr()?;
    if args.demo {
        // The demo feed source reads /demo/feed.xml from this very server: allow this
        // address (and port) only, nothing else on the machine.
        config.outbound.allow.push(local.to_string());
    }
    let app = App::start(config).await?;
    if args.demo {
        let key = seed_demo(&app).await?;
        let webhook = demo_webhook(&app).await?;
        demo_feed(&app, &format!("http://{local}")).await?;
        eprintln!("Rapport demo is ready.\n  GraphiQL: http://{local}/graphql");
        eprintln!("  Demo feed source: http://{local}/demo/feed.xml, synced every minute");
        print_demo_webhook(&format!("http://{local}"), webhook);
        eprintln!("  Admin API key (shown once):");
        println!("{key}");
    }
    tracing::info!(%local, database = %rapport::db::redact_url(&app.config.effective_database_url()), "serving GraphQL at http://{local}/graphql");
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let scheduler = app.config.sync.enabled.then(|| {
        tokio::spawn(rapport::ingest::scheduler::run(
            rapport::ingest::sync::Syncer::new(&app),
            stopped,
        ))
    });
    let indexer = app
        .config
        .indexer
        .then(|| tokio::spawn(rapport::search::indexer::Indexer::new(&app).run(stop.subscribe())));
    let shutdown = async move {
        shutdown_signal().await;
        let _ = stop.send(true);
    };
    rapport::http::serve(app, listener, shutdown).await?;
    if let Some(scheduler) = scheduler {
        scheduler.await.ok();
    }
    if let Some(indexer) = indexer {
        indexer.await.ok();
    }
    tracing::info!("stopped");
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::info!("shutting down: finishing requests in flight");
}
