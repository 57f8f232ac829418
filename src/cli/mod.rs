//! The command line's types and the helpers its commands share. Each command family has a
//! file of its own (its arguments beside its handler); `main.rs` parses and dispatches.
//! Handlers call the library (`rapport::domain`, `rapport::server`, `rapport::demo`,
//! `rapport::bench`, …) and only print: results on stdout (a key, an id, the SDL) so
//! scripts can capture them, logs and progress on stderr.

pub mod bench;
pub mod dedupe;
pub mod demo;
pub mod documents;
pub mod import;
pub mod keys;
pub mod quality;
pub mod reindex;
pub mod schema;
pub mod serve;
pub mod sources;
pub mod sync;
pub mod users;

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use rapport::config::{Config, LogFormat, Overrides};
use rapport::domain;
use rapport::App;

#[derive(Parser)]
#[command(
    name = "rapport",
    version,
    about = "Rapport: a social CRM served as a GraphQL API"
)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Args, Clone)]
pub struct Global {
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
    /// Request headers browser pages on other origins may send, added to `[http]
    /// cors_allow_headers` and to the ones always allowed (auth, W3C/Sentry/B3 tracing,
    /// Apollo and GraphQL client names), comma-separated: x-tenant,x-client-build.
    #[arg(
        long,
        global = true,
        env = "RAPPORT_CORS_ALLOW_HEADERS",
        value_delimiter = ','
    )]
    cors_allow_headers: Vec<String>,
}

#[derive(Subcommand)]
pub enum Command {
    /// Migrate the database and serve the GraphQL API (the default command).
    Serve(serve::ServeArgs),
    /// Apply pending database migrations and exit.
    Migrate,
    /// Seed the `default` workspace with demo data when it is empty, and print an admin key.
    Demo,
    /// Manage API keys.
    #[command(subcommand)]
    Keys(keys::KeysCommand),
    /// Manage the trusted documents of a workspace (what trusted-only keys may run).
    #[command(subcommand)]
    Documents(documents::DocumentsCommand),
    /// Manage the users (people) of a workspace.
    #[command(subcommand)]
    Users(users::UsersCommand),
    /// Import records in bulk (customers from CSV or JSON Lines).
    #[command(subcommand)]
    Import(import::ImportCommand),
    /// Find duplicate customers in a whole workspace: rebuild the blocking keys, compare
    /// the customers sharing one, store the suggestions (with --merge, merging the new ones
    /// at or above the workspace's autoMergeThreshold). Prints `found N, new N, updated N,
    /// merged N`.
    /// With --evaluate N, measures precision and recall on a generated registry instead.
    Dedupe(dedupe::DedupeArgs),
    /// Manage the sources (connector instances) of a workspace.
    #[command(subcommand)]
    Sources(sources::SourcesCommand),
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
    /// Print a workspace's data-quality report (completeness, invalid and dropped values,
    /// pending duplicates, customers without contact point, stale customers, a score) and
    /// record it as today's snapshot of its trend.
    Quality(quality::QualityArgs),
    /// Print the GraphQL schema (SDL) on stdout.
    Schema,
    /// Load-test the GraphQL API over loopback HTTP and print a Markdown table of latencies.
    /// Without --database-url it runs on a temporary SQLite database; with one, it uses a
    /// temporary workspace there and deletes it afterwards.
    Bench(bench::BenchArgs),
}

impl Cli {
    /// The configuration: the file (or defaults) with the command line's flags and env
    /// vars over it; `serve`'s `--addr` counts for the default command too.
    pub fn config(&self) -> anyhow::Result<Config> {
        let addr = match &self.command {
            Some(Command::Serve(args)) => args.addr,
            _ => None,
        };
        let overrides = Overrides {
            addr,
            data_dir: self.global.data_dir.clone(),
            database_url: self.global.database_url.clone(),
            meili_url: self.global.meili_url.clone(),
            meili_key: self.global.meili_key.clone(),
            log_format: self.global.log_format,
            outbound_allow: self.global.outbound_allow.clone(),
            cors_allow_headers: self.global.cors_allow_headers.clone(),
        };
        Config::load(self.global.config_file.as_deref(), overrides)
    }
}

/// The command line acts as the owner of the workspace it names.
pub async fn owner_of(app: &App, slug: &str) -> anyhow::Result<domain::Caller> {
    let workspace = domain::workspace::ensure(&app.db, slug).await?;
    Ok(domain::Caller::owner_without_key(workspace.id, "cli"))
}
