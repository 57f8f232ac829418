//! Rapport, a social CRM served as a GraphQL API.
//!
//! The layers run one way: [`http`] and [`graphql`] parse and authorise, [`domain`] holds
//! the business rules and all SQL, and the `entity` crate maps the tables. [`App`] is the
//! shared state every layer receives; it holds no API-layer state (the GraphQL schema
//! lives in [`graphql::Api`]), so nothing below the API depends on it.

pub mod bench;
pub mod config;
pub mod db;
pub mod demo;
pub mod domain;
pub mod error;
pub mod failpoint;
pub mod graphql;
pub mod http;
pub mod ids;
pub mod ingest;
pub mod live;
pub mod metrics;
pub mod search;
pub mod server;
pub mod telemetry;

use std::sync::Arc;

use sea_orm::DatabaseConnection;

pub use config::Config;
pub use error::{Error, Result};

/// The state shared by every request and background task: cheap to clone.
#[derive(Clone)]
pub struct App {
    pub config: Arc<Config>,
    pub db: DatabaseConnection,
    pub metrics: Arc<metrics::Metrics>,
    /// The outbound guard and the guarded HTTP client connectors share (timeouts from
    /// `[sync]`, allowed addresses from `[outbound]`).
    pub outbound: connectors::outbound::Outbound,
    /// The search backend (embedded, or Meilisearch when configured).
    pub search: Arc<dyn search::SearchIndex>,
    /// The indexer's lag and last error, for `/metrics` and `searchStatus`.
    pub search_status: Arc<search::SearchStatus>,
    /// The indexer's row in `consumer_offset` for this index ([`search::consumer`]).
    pub search_consumer: String,
    /// Webhook deliveries gathered into one batch per source ([`ingest::gather`]).
    pub deliveries: Arc<ingest::gather::Deliveries>,
    /// The event log as it grows, for this process's subscriptions ([`live`]).
    pub live: Arc<live::Feed>,
    /// The callers of recent requests by key, proven fresh ([`domain::callers`]).
    pub callers: Arc<domain::callers::Callers>,
    /// Subscription cursors, encrypted per workspace with the database's server key.
    pub cursors: domain::secret::Cursors,
    /// The API key GraphiQL's headers editor starts with: the one `serve --demo` printed
    /// (a local demo's), else none.
    pub graphiql_key: Option<Arc<str>>,
}

impl App {
    /// Connects to the database of `config`, applies pending migrations and opens the
    /// search backend. Fails when the database cannot be opened or migrated.
    pub async fn start(config: Config) -> anyhow::Result<App> {
        let policy = connectors::outbound::OutboundPolicy::parse(&config.outbound.allow)?;
        let metrics = Arc::new(metrics::Metrics::default());
        let db = db::connect(&config, metrics.clone()).await?;
        db::migrate(&db).await?;
        let config = Arc::new(config);
        let timeout = std::time::Duration::from_secs(config.sync.http_timeout_secs.max(1));
        let outbound = connectors::outbound::Outbound::new(policy, |builder| {
            builder
                .user_agent(concat!("Rapport/", env!("CARGO_PKG_VERSION")))
                .timeout(timeout)
                .connect_timeout(timeout.min(std::time::Duration::from_secs(10)))
        })?
        .with_wait(timeout);
        let search_consumer = search::consumer(&config)?;
        let search = search::open(&config).await?;
        let deliveries = ingest::gather::Deliveries::new(db.clone());
        let live = live::Feed::new(db.clone(), &config.limits);
        let callers = domain::callers::Callers::new(db.clone());
        let cursors = domain::secret::Cursors::load(&db).await?;
        Ok(App {
            config,
            db,
            metrics,
            outbound,
            search,
            search_status: Arc::new(search::SearchStatus::default()),
            search_consumer,
            deliveries,
            live,
            callers,
            cursors,
            graphiql_key: None,
        })
    }
}
