//! The shared harness: [`TestApp`] starts Rapport in-process on an ephemeral port over a
//! fresh SQLite file or a fresh PostgreSQL schema, hands out API keys, and speaks GraphQL.

use std::net::SocketAddr;

use rapport::config::{Config, Limits};
use rapport::domain::{self, Role};
use rapport::App;
use serde_json::{json, Value};

/// Which database a test runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Declares a test that runs once per backend: `name::sqlite` and `name::postgres`.
#[macro_export]
macro_rules! backend_test {
    ($(#[$meta:meta])* async fn $name:ident($app:ident: TestApp $(,)?) $body:block) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            async fn run($app: $crate::common::TestApp) $body

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                run($crate::common::TestApp::start($crate::common::Backend::Sqlite).await.unwrap()).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                match $crate::common::TestApp::start($crate::common::Backend::Postgres).await {
                    Some(app) => run(app).await,
                    None => eprintln!("skipped: set RAPPORT_TEST_DATABASE_URL to run the PostgreSQL variant"),
                }
            }
        }
    };
}

pub struct TestApp {
    pub app: App,
    pub addr: SocketAddr,
    pub client: reqwest::Client,
    pub backend: Backend,
    _dir: tempfile::TempDir,
    pg_schema: Option<(String, String)>,
    server: tokio::task::JoinHandle<()>,
}

/// The URL of the PostgreSQL server tests may use, if any.
pub fn postgres_url() -> Option<String> {
    std::env::var("RAPPORT_TEST_DATABASE_URL")
        .ok()
        .filter(|url| !url.trim().is_empty())
}

impl TestApp {
    /// Starts an app on `backend` with default limits; `None` when PostgreSQL is asked
    /// for but not configured.
    pub async fn start(backend: Backend) -> Option<TestApp> {
        TestApp::with_limits(backend, Limits::default()).await
    }

    pub async fn with_limits(backend: Backend, limits: Limits) -> Option<TestApp> {
        TestApp::with_config(backend, |config| config.limits = limits).await
    }

    /// Starts an app on `backend` with the configuration `adjust` leaves. The scheduler
    /// does not run: tests sync sources explicitly.
    pub async fn with_config(
        backend: Backend,
        adjust: impl FnOnce(&mut Config),
    ) -> Option<TestApp> {
        let dir = tempfile::tempdir().expect("temporary directory");
        let mut config = Config {
            data_dir: dir.path().to_owned(),
            ..Config::default()
        };
        // Tests serve platforms on loopback: allow it (tests of the guard set their own).
        config.outbound.allow = vec!["127.0.0.1".into(), "::1".into()];
        // With RAPPORT_MEILI_URL every test searches through Meilisearch, on indexes of
        // its own (deleted when the test ends).
        if let Some(url) = std::env::var("RAPPORT_MEILI_URL")
            .ok()
            .filter(|u| !u.is_empty())
        {
            config.meili_url = Some(url);
            config.meili_key = std::env::var("RAPPORT_MEILI_KEY").ok();
            config.meili_index_prefix = format!("rt_{}_", uuid::Uuid::now_v7().simple());
        }
        adjust(&mut config);
        let mut pg_schema = None;
        if backend == Backend::Postgres {
            let url = postgres_url()?;
            let schema = format!("rt_{}", uuid::Uuid::now_v7().simple());
            run_sql(&url, &format!("CREATE SCHEMA {schema}")).await;
            config.database_url = Some(url.clone());
            config.database_schema = Some(schema.clone());
            pg_schema = Some((url, schema));
        }
        let app = App::start(config).await.expect("the app starts");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a free port");
        let addr = listener.local_addr().unwrap();
        let server_app = app.clone();
        let server = tokio::spawn(async move {
            rapport::http::serve(server_app, listener, std::future::pending())
                .await
                .unwrap();
        });
        Some(TestApp {
            app,
            addr,
            client: reqwest::Client::new(),
            backend,
            _dir: dir,
            pg_schema,
            server,
        })
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// A new key with `role` in the workspace `slug` (created when missing).
    pub async fn key_in(&self, slug: &str, role: Role) -> String {
        let workspace = domain::workspace::ensure(&self.app.db, slug).await.unwrap();
        domain::workspace::create_key(
            &self.app.db,
            workspace.id,
            role,
            &format!("{}-key", role.as_str()),
        )
        .await
        .unwrap()
        .1
    }

    /// A new key with `role` in the workspace `acme`.
    pub async fn key(&self, role: Role) -> String {
        self.key_in("acme", role).await
    }

    /// POSTs a GraphQL request and returns the status and the JSON body.
    pub async fn post(&self, key: &str, query: &str, variables: Value) -> (u16, Value) {
        let response = self
            .client
            .post(self.url("/graphql"))
            .bearer_auth(key)
            .json(&json!({ "query": query, "variables": variables }))
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap())
    }

    /// Runs a GraphQL request that must succeed without errors; returns `data`.
    pub async fn gql(&self, key: &str, query: &str, variables: Value) -> Value {
        let (status, body) = self.post(key, query, variables).await;
        assert_eq!(status, 200, "{body:#}");
        assert!(body.get("errors").is_none(), "unexpected errors: {body:#}");
        body["data"].clone()
    }

    /// Runs a GraphQL request that must fail; returns its first error's code.
    pub async fn gql_error(&self, key: &str, query: &str, variables: Value) -> (String, Value) {
        let (_, body) = self.post(key, query, variables).await;
        let code = body["errors"][0]["extensions"]["code"]
            .as_str()
            .unwrap_or_else(|| panic!("no error code in {body:#}"))
            .to_owned();
        (code, body)
    }

    /// SQL statements run so far by this app, besides reading the keys of requests: on
    /// PostgreSQL a key is read once and then known until something changes it
    /// (`domain::callers`, tested in `callers.rs`), so whether a request reads its key
    /// depends on what other tests' processes changed meanwhile.
    pub fn statements(&self) -> u64 {
        self.app.metrics.statements() - self.app.callers.lookups()
    }

    /// Creates a customer through the API; returns its id.
    pub async fn create_customer(&self, key: &str, input: Value) -> String {
        let data = self
            .gql(key, "mutation($input: CreateCustomerInput!) { createCustomer(input: $input) { customer { id } } }", json!({ "input": input }))
            .await;
        data["createCustomer"]["customer"]["id"]
            .as_str()
            .unwrap()
            .to_owned()
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.server.abort();
        if let Some(url) = self.app.config.meili_url.clone() {
            // A client of its own: the app's is bound to the runtime this Drop blocks.
            let key = self.app.config.meili_key.clone();
            let prefix = self.app.config.meili_index_prefix.clone();
            let _ = std::thread::spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                let _ = runtime.block_on(rapport::search::meili::Meili::drop_indexes(
                    &url,
                    key.as_deref(),
                    &prefix,
                ));
            })
            .join();
        }
        if let Some((url, schema)) = self.pg_schema.take() {
            // Drop the test's schema on a thread of its own: Drop cannot await.
            let _ = std::thread::spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                runtime.block_on(run_sql(
                    &url,
                    &format!("DROP SCHEMA IF EXISTS {schema} CASCADE"),
                ));
            })
            .join();
        }
    }
}

async fn run_sql(url: &str, sql: &str) {
    use sea_orm::{ConnectionTrait, Database};
    let db = Database::connect(url)
        .await
        .expect("RAPPORT_TEST_DATABASE_URL must point at a reachable PostgreSQL");
    db.execute_unprepared(sql).await.unwrap();
    db.close().await.ok();
}

/// A port free now on loopback (a server started right after binds it).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
