//! One typed [`Config`], built once at start from defaults, an optional `rapport.toml`
//! and the command line / `RAPPORT_*` environment (which clap reads for us). Nothing else
//! in the program reads environment variables.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// The largest page any connection returns; asking for more is a `BAD_USER_INPUT`.
pub const MAX_PAGE_SIZE: i32 = 100;

#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    /// Where `rapport serve` listens.
    pub addr: SocketAddr,
    /// Holds the SQLite database (and, later, the embedded search index).
    pub data_dir: PathBuf,
    /// A `postgres://` or `sqlite://` URL; `None` means SQLite in `data_dir`.
    pub database_url: Option<String>,
    /// PostgreSQL only: the schema to use (tests give each run its own).
    pub database_schema: Option<String>,
    pub meili_url: Option<String>,
    pub meili_key: Option<String>,
    /// Prefix of the Meilisearch index names (`rapport_interactions`, …).
    pub meili_index_prefix: String,
    pub log_format: LogFormat,
    pub limits: Limits,
    pub sync: SyncConfig,
    /// Whether `rapport serve` runs the search indexer.
    pub indexer: bool,
    /// How long the indexer's lease on a shared index lasts without renewal: when its
    /// process dies, another process's indexer takes over within this time.
    pub indexer_lease_secs: u64,
    pub outbound: OutboundConfig,
    pub http: HttpConfig,
}

/// The HTTP transport (`[http]`).
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpConfig {
    /// Request headers a browser page on another origin may send, on top of the ones the
    /// CORS preflight always allows ([`crate::http::DEFAULT_CORS_ALLOW_HEADERS`]: auth,
    /// tracing, client identification). Checked when the configuration is read.
    #[serde(deserialize_with = "header_names")]
    pub cors_allow_headers: Vec<axum::http::HeaderName>,
    /// The address clients and platforms reach this server at (`https://crm.example`),
    /// when it is not the listening address (behind a proxy). Telegram sources in webhook
    /// mode register `{public_url}/webhooks/{source_id}` with `setWebhook`; without it they
    /// cannot. Checked when the configuration is read: an http(s) URL.
    #[serde(deserialize_with = "public_url")]
    pub public_url: Option<String>,
}

/// `[http] public_url`: an http(s) URL, kept without a trailing slash.
fn public_url<'de, D>(deserializer: D) -> Result<Option<String>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    let Some(url) = Option::<String>::deserialize(deserializer)? else {
        return Ok(None);
    };
    connectors::check_http_url("public_url", &url)
        .map_err(|(_, message)| serde::de::Error::custom(message))?;
    Ok(Some(url.trim().trim_end_matches('/').to_owned()))
}

/// `[http] cors_allow_headers` as header names; a bad entry fails the file's parse, and
/// the parse error names the key and the line.
fn header_names<'de, D>(deserializer: D) -> Result<Vec<axum::http::HeaderName>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    let names = Vec::<String>::deserialize(deserializer)?;
    names
        .iter()
        .map(|name| header_name(name).map_err(serde::de::Error::custom))
        .collect()
}

/// `name` as an HTTP header name (lower-cased), or an error that names it. `*` is
/// refused: in a preflight's answer it would let every header through.
pub fn header_name(name: &str) -> Result<axum::http::HeaderName, String> {
    let name = name.trim();
    if name == "*" {
        return Err(
            "`*` in cors_allow_headers: name each header; a wildcard would allow any".to_owned(),
        );
    }
    axum::http::HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
        format!(
            "`{name}` in cors_allow_headers is not an HTTP header name \
             (letters, digits and `-`, e.g. `x-client-version`)"
        )
    })
}

/// Which non-public addresses connectors may reach (`[outbound]`). Every outbound
/// connection is refused when its resolved address is not public (loopback, private,
/// link-local, …) unless an entry here names it: `"127.0.0.1:8080"`, `"10.1.0.0/16"`,
/// `"::1"`, `"[::1]:8080"`, `"intranet.example"`, `"intranet.example:8443"`.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OutboundConfig {
    pub allow: Vec<String>,
}

/// How pull sources are run.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SyncConfig {
    /// Whether `rapport serve` runs the scheduler.
    pub enabled: bool,
    /// Sources synced at once by one process.
    pub concurrency: usize,
    /// How often the scheduler looks for due sources, in milliseconds.
    pub tick_ms: u64,
    /// How long a claimed source stays leased to its process; renewed after each batch.
    pub lease_secs: u64,
    /// Timeout of one request to a platform.
    pub http_timeout_secs: u64,
    /// The first backoff after an error; it doubles with each failure in a row.
    pub backoff_base_secs: u64,
    /// The longest backoff.
    pub backoff_max_secs: u64,
    /// Batches one run pulls at most before yielding to other sources.
    pub max_batches: usize,
}

impl Default for SyncConfig {
    fn default() -> Self {
        SyncConfig {
            enabled: true,
            concurrency: 4,
            tick_ms: 1_000,
            lease_secs: 300,
            http_timeout_secs: 30,
            backoff_base_secs: 30,
            backoff_max_secs: 6 * 3600,
            max_batches: 20,
        }
    }
}

/// Guards against expensive or abusive requests. Every GraphQL document is measured
/// before it runs (`graphql::cost`): the limits below bound what one request may make the
/// server do, and the HTTP ones what one client may hold.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Nesting depth of a query (introspection may nest deeper, see `graphql::cost`).
    pub max_depth: usize,
    /// The most a document may cost: a database query costs 10, a search 100, a page
    /// multiplies what its items cost by its size.
    pub max_complexity: usize,
    /// Selections of a document once every fragment is expanded where it is spread.
    pub max_selections: usize,
    /// Mutation fields in one request (they run one after the other).
    pub max_mutations: u32,
    /// Of those, fields that call a platform (`syncSource`, `replyToInteraction`).
    pub max_outbound_mutations: u32,
    /// Errors one response lists; the rest are counted in one last error.
    pub max_errors: usize,
    /// Root fields of one request that resolve at once: its share of the database pool.
    pub max_parallel_fields: usize,
    /// Fields and list items one answer may hold (lists without paging grow with the data).
    pub max_values: u64,
    pub max_body_bytes: usize,
    /// Requests a minute one API key may make; 0 turns the limit off.
    pub requests_per_minute: u32,
    /// Failed authentications a minute from one client address before it is refused
    /// with `RATE_LIMITED` without checking the key; 0 turns the limit off.
    pub failed_auth_per_minute: u32,
    /// Deliveries a minute one webhook source accepts; 0 turns the limit off.
    pub webhook_requests_per_minute: u32,
    /// How long a platform connector may take to map one verified delivery (the calls it
    /// makes to the platform, such as GitHub's `GET /user`); past it the delivery is
    /// answered 503 and the sender retries. GitHub gives up on a delivery after 10 s.
    pub webhook_timeout_secs: u64,
    /// The time budget of one request, after which it is cancelled with `TIMEOUT`.
    pub request_timeout_secs: u64,
    /// How long a client may take to send a request's headers, and how long a
    /// kept-alive connection may stay idle between requests.
    pub header_read_timeout_secs: u64,
    /// Open client connections at once; at the cap the longest-idle one is closed to
    /// make room, so a crowd of idle sockets cannot lock out `/healthz`.
    pub max_connections: usize,
    /// Open connections from one client address at once.
    pub max_connections_per_client: usize,
    /// Subscriptions one API key may hold at once in one process (`/graphql/ws`).
    pub max_subscriptions_per_key: usize,
    /// Open subscription sockets at once (they leave the connection table once upgraded).
    pub max_sockets: usize,
    /// Events a subscriber may fall behind the live feed before it is stopped and told
    /// to subscribe again from its last cursor (the log keeps what it missed).
    pub subscription_backlog: usize,
    /// Seconds a new `/graphql/ws` socket may take to send `connection_init` (then `4408`).
    pub socket_init_timeout_secs: u64,
    /// Seconds between look-ups of an open socket's key (a revoked key's socket ends).
    pub socket_key_recheck_secs: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_depth: 12,
            max_complexity: 25_000,
            max_selections: 2_000,
            max_mutations: 25,
            max_outbound_mutations: 3,
            max_errors: 20,
            max_parallel_fields: 4,
            max_values: 100_000,
            max_body_bytes: 1 << 20,
            requests_per_minute: 6_000,
            failed_auth_per_minute: 60,
            webhook_requests_per_minute: 1_200,
            webhook_timeout_secs: 8,
            request_timeout_secs: 15,
            header_read_timeout_secs: 10,
            max_connections: 4_096,
            max_connections_per_client: 256,
            max_subscriptions_per_key: 100,
            max_sockets: 1_024,
            subscription_backlog: 10_000,
            socket_init_timeout_secs: 10,
            socket_key_recheck_secs: 30,
        }
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            addr: SocketAddr::from(([127, 0, 0, 1], 8080)),
            data_dir: PathBuf::from("./data"),
            database_url: None,
            database_schema: None,
            meili_url: None,
            meili_key: None,
            meili_index_prefix: "rapport_".to_owned(),
            log_format: LogFormat::Text,
            limits: Limits::default(),
            sync: SyncConfig::default(),
            indexer: true,
            indexer_lease_secs: 15,
            outbound: OutboundConfig::default(),
            http: HttpConfig::default(),
        }
    }
}

/// What `rapport.toml` may say; every key is optional.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FileConfig {
    pub addr: Option<SocketAddr>,
    pub data_dir: Option<PathBuf>,
    pub database_url: Option<String>,
    /// PostgreSQL only: the schema to use instead of `public`.
    pub database_schema: Option<String>,
    pub meili_url: Option<String>,
    pub meili_key: Option<String>,
    pub meili_index_prefix: Option<String>,
    pub log_format: Option<LogFormat>,
    pub limits: Option<Limits>,
    pub sync: Option<SyncConfig>,
    pub indexer: Option<bool>,
    pub indexer_lease_secs: Option<u64>,
    pub outbound: Option<OutboundConfig>,
    pub http: Option<HttpConfig>,
}

/// Values from the command line or the environment; they win over the file.
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    pub addr: Option<SocketAddr>,
    pub data_dir: Option<PathBuf>,
    pub database_url: Option<String>,
    pub meili_url: Option<String>,
    pub meili_key: Option<String>,
    pub log_format: Option<LogFormat>,
    /// More `[outbound] allow` entries (`--outbound-allow`, `RAPPORT_OUTBOUND_ALLOW`,
    /// comma-separated); added to the file's.
    pub outbound_allow: Vec<String>,
    /// More `[http] cors_allow_headers` entries (`--cors-allow-headers`,
    /// `RAPPORT_CORS_ALLOW_HEADERS`, comma-separated); added to the file's.
    pub cors_allow_headers: Vec<String>,
}

impl Config {
    /// Builds the configuration: defaults, then the file at `path` (or `./rapport.toml`
    /// when it exists), then `overrides`. Fails on an unreadable or invalid file, naming
    /// the file and the key, or on an invalid header name from the command line.
    pub fn load(path: Option<&Path>, overrides: Overrides) -> anyhow::Result<Config> {
        let file = match path {
            Some(path) => Some(read_file(path)?),
            None if Path::new("rapport.toml").exists() => {
                Some(read_file(Path::new("rapport.toml"))?)
            }
            None => None,
        };
        let mut config = Config::default();
        if let Some(file) = file {
            config.apply_file(file);
        }
        config.apply_overrides(overrides)?;
        Ok(config)
    }

    fn apply_file(&mut self, file: FileConfig) {
        if let Some(addr) = file.addr {
            self.addr = addr;
        }
        if let Some(dir) = file.data_dir {
            self.data_dir = dir;
        }
        self.database_url = file.database_url.or(self.database_url.take());
        self.database_schema = file.database_schema.or(self.database_schema.take());
        self.meili_url = file.meili_url.or(self.meili_url.take());
        self.meili_key = file.meili_key.or(self.meili_key.take());
        if let Some(format) = file.log_format {
            self.log_format = format;
        }
        if let Some(limits) = file.limits {
            self.limits = limits;
        }
        if let Some(sync) = file.sync {
            self.sync = sync;
        }
        if let Some(prefix) = file.meili_index_prefix {
            self.meili_index_prefix = prefix;
        }
        if let Some(indexer) = file.indexer {
            self.indexer = indexer;
        }
        if let Some(secs) = file.indexer_lease_secs {
            self.indexer_lease_secs = secs.max(1);
        }
        if let Some(outbound) = file.outbound {
            self.outbound = outbound;
        }
        if let Some(http) = file.http {
            self.http = http;
        }
    }

    fn apply_overrides(&mut self, overrides: Overrides) -> anyhow::Result<()> {
        if let Some(addr) = overrides.addr {
            self.addr = addr;
        }
        if let Some(dir) = overrides.data_dir {
            self.data_dir = dir;
        }
        let non_empty = |value: Option<String>| value.filter(|value| !value.trim().is_empty());
        self.database_url = non_empty(overrides.database_url).or(self.database_url.take());
        self.meili_url = non_empty(overrides.meili_url).or(self.meili_url.take());
        self.meili_key = non_empty(overrides.meili_key).or(self.meili_key.take());
        if let Some(format) = overrides.log_format {
            self.log_format = format;
        }
        for entry in overrides.outbound_allow {
            let entry = entry.trim();
            if !entry.is_empty() && !self.outbound.allow.iter().any(|known| known == entry) {
                self.outbound.allow.push(entry.to_owned());
            }
        }
        for entry in overrides.cors_allow_headers {
            if entry.trim().is_empty() {
                continue;
            }
            let name = header_name(&entry).map_err(|err| {
                anyhow::anyhow!("invalid --cors-allow-headers / RAPPORT_CORS_ALLOW_HEADERS: {err}")
            })?;
            if !self.http.cors_allow_headers.contains(&name) {
                self.http.cors_allow_headers.push(name);
            }
        }
        Ok(())
    }

    /// The database URL actually used: the configured one or SQLite in the data directory.
    pub fn effective_database_url(&self) -> String {
        match &self.database_url {
            Some(url) => url.clone(),
            None => format!(
                "sqlite://{}?mode=rwc",
                self.data_dir.join("rapport.db").display()
            ),
        }
    }
}

fn read_file(path: &Path) -> anyhow::Result<FileConfig> {
    let text = std::fs::read_to_string(path).map_err(|err| {
        anyhow::anyhow!(
            "cannot read the configuration file {}: {err}",
            path.display()
        )
    })?;
    toml::from_str(&text)
        .map_err(|err| anyhow::anyhow!("invalid configuration file {}: {err}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overrides_win_over_the_file_and_the_file_over_defaults() {
        let dir = std::env::temp_dir().join(format!("rapport-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("rapport.toml");
        std::fs::write(
            &path,
            "addr = \"127.0.0.1:9999\"\ndata_dir = \"/srv/rapport\"\n[limits]\nmax_depth = 5\n",
        )
        .unwrap();
        let config = Config::load(
            Some(&path),
            Overrides {
                data_dir: Some(PathBuf::from("/tmp/x")),
                ..Overrides::default()
            },
        )
        .unwrap();
        assert_eq!(config.addr, "127.0.0.1:9999".parse().unwrap());
        assert_eq!(config.data_dir, PathBuf::from("/tmp/x"));
        assert_eq!(config.limits.max_depth, 5);
        assert_eq!(
            config.limits.max_complexity,
            Limits::default().max_complexity
        );
    }

    #[test]
    fn outbound_allow_entries_of_the_file_and_the_environment_are_merged() {
        let dir = std::env::temp_dir().join(format!("rapport-config-out-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("rapport.toml");
        std::fs::write(
            &path,
            "[outbound]\nallow = [\"10.1.0.0/16\", \"intranet.example\"]\n",
        )
        .unwrap();
        let config = Config::load(
            Some(&path),
            Overrides {
                outbound_allow: vec![
                    "127.0.0.1:8080".into(),
                    " ".into(),
                    "intranet.example".into(),
                ],
                ..Overrides::default()
            },
        )
        .unwrap();
        assert_eq!(
            config.outbound.allow,
            ["10.1.0.0/16", "intranet.example", "127.0.0.1:8080"]
        );
        assert!(Config::default().outbound.allow.is_empty());
    }

    #[test]
    fn cors_allow_headers_of_the_file_and_the_environment_are_merged_and_checked() {
        let dir = std::env::temp_dir().join(format!("rapport-config-cors-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("rapport.toml");
        std::fs::write(&path, "[http]\ncors_allow_headers = [\"X-Tenant\"]\n").unwrap();
        let config = Config::load(
            Some(&path),
            Overrides {
                cors_allow_headers: vec!["x-tenant".into(), " x-build ".into(), "".into()],
                ..Overrides::default()
            },
        )
        .unwrap();
        assert_eq!(config.http.cors_allow_headers, ["x-tenant", "x-build"]);
        assert!(Config::default().http.cors_allow_headers.is_empty());

        std::fs::write(
            &path,
            "[http]\ncors_allow_headers = [\"x-ok\", \"x bad\"]\n",
        )
        .unwrap();
        let err = Config::load(Some(&path), Overrides::default())
            .unwrap_err()
            .to_string();
        assert!(err.contains("`x bad`") && err.contains("line 2"), "{err}");
        for bad in ["x:y", "*", "é"] {
            let err = Config::load(
                None,
                Overrides {
                    cors_allow_headers: vec![bad.into()],
                    ..Overrides::default()
                },
            )
            .unwrap_err()
            .to_string();
            assert!(err.contains(&format!("`{bad}`")), "{err}");
        }
    }

    #[test]
    fn an_unknown_key_in_the_file_is_an_error_naming_it() {
        let dir = std::env::temp_dir().join(format!("rapport-config-bad-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("rapport.toml");
        std::fs::write(&path, "adress = \"x\"\n").unwrap();
        let err = Config::load(Some(&path), Overrides::default())
            .unwrap_err()
            .to_string();
        assert!(err.contains("adress"), "{err}");
    }
}
