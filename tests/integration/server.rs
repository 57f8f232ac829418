//! The serve start-up the binary runs (`rapport::server`), driven in-process: `--demo`
//! seeds once, allows exactly its own address for its feed, hands back a working admin
//! key; the scheduler, indexer and HTTP server stop when the shutdown future completes.

use std::net::SocketAddr;

use rapport::config::Config;
use rapport::server::{Options, Server};
use serde_json::{json, Value};

use crate::common::{postgres_url, Backend};

/// A configuration on a fresh database of `backend` listening on a free loopback port;
/// `None` when PostgreSQL is asked for but not configured. The schema it names (if any)
/// is the caller's to drop.
async fn config(backend: Backend, dir: &std::path::Path) -> Option<(Config, Option<String>)> {
    let mut config = Config {
        data_dir: dir.to_owned(),
        addr: SocketAddr::from(([127, 0, 0, 1], 0)),
        ..Config::default()
    };
    let mut schema = None;
    if backend == Backend::Postgres {
        let url = postgres_url()?;
        let name = format!("rt_{}", uuid::Uuid::now_v7().simple());
        sql(&url, &format!("CREATE SCHEMA {name}")).await;
        config.database_url = Some(url);
        config.database_schema = Some(name.clone());
        schema = Some(name);
    }
    Some((config, schema))
}

async fn sql(url: &str, statement: &str) {
    try_sql(url, statement).await.unwrap();
}

async fn try_sql(url: &str, statement: &str) -> Result<(), sea_orm::DbErr> {
    use sea_orm::{ConnectionTrait, Database};
    let db = Database::connect(url).await?;
    let done = db.execute_unprepared(statement).await.map(|_| ());
    db.close().await.ok();
    done
}

async fn viewer_role(addr: SocketAddr, key: &str) -> Value {
    let body: Value = reqwest::Client::new()
        .post(format!("http://{addr}/graphql"))
        .bearer_auth(key)
        .json(&json!({ "query": "{ viewer { role workspace { slug } } }" }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    body["data"]["viewer"].clone()
}

async fn run(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let Some((config, schema)) = config(backend, dir.path()).await else {
        eprintln!("skipped: set RAPPORT_TEST_DATABASE_URL to run the PostgreSQL variant");
        return;
    };
    let allowed_before = config.outbound.allow.clone();

    let mut server = Server::start(config.clone(), Options { demo: true })
        .await
        .unwrap();
    let local = server.local_addr();
    assert_ne!(local.port(), 0, "port 0 is resolved to the bound port");
    // The demo's feed source reads this very server: that address, and nothing more.
    let mut expected = allowed_before.clone();
    expected.push(local.to_string());
    assert_eq!(server.app().config.outbound.allow, expected);
    let demo = server.take_demo().expect("--demo reports what it set up");
    assert!(
        server.take_demo().is_none(),
        "the demo's key is handed out once"
    );
    assert!(demo.seeded.customers > 0);
    let webhook = demo.webhook.expect("the webhook source is new");
    assert!(webhook.id.starts_with("src_") && webhook.secret.starts_with("whsec_"));
    let sources = rapport::domain::source::list(
        &server.app().db,
        &rapport::domain::Caller::owner_without_key(
            rapport::domain::workspace::ensure(&server.app().db, "default")
                .await
                .unwrap()
                .id,
            "test",
        ),
    )
    .await
    .unwrap();
    let feed = sources
        .iter()
        .find(|source| source.name == "Demo community feed")
        .expect("the demo feed source");
    assert_eq!(
        feed.config["url"],
        json!(format!("http://{local}/demo/feed.xml"))
    );

    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(server.run(async move {
        let _ = stopped.await;
    }));
    assert_eq!(
        viewer_role(local, &demo.seeded.key).await,
        json!({ "role": "ADMIN", "workspace": { "slug": "default" } })
    );
    stop.send(()).unwrap();
    running
        .await
        .unwrap()
        .expect("the server, scheduler and indexer stop cleanly");

    // Again on the same database: nothing seeded twice, no second webhook secret, and
    // without --demo nothing of the demo at all.
    let mut again = Server::start(config.clone(), Options { demo: true })
        .await
        .unwrap();
    let demo = again.take_demo().unwrap();
    assert_eq!(demo.seeded.customers, 0);
    assert!(demo.webhook.is_none());
    drop(again);
    let mut plain = Server::start(config, Options::default()).await.unwrap();
    assert!(plain.take_demo().is_none());
    assert_eq!(plain.app().config.outbound.allow, allowed_before);
    drop(plain);

    if let (Some(schema), Some(url)) = (schema, postgres_url()) {
        sql(&url, &format!("DROP SCHEMA IF EXISTS {schema} CASCADE")).await;
    }
}

mod demo_start_seeds_once_allows_its_own_address_and_stops_on_shutdown {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sqlite() {
        run(Backend::Sqlite).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres() {
        run(Backend::Postgres).await;
    }
}

/// Three processes starting at once on a fresh database (the first start of a scale-out,
/// or `serve` beside a CLI command): each migrates it, one at a time, and every migration
/// is applied once. Unserialised, two of them create the same tables in the same moment
/// and one fails (`pg_type_typname_nsp_index` on PostgreSQL). Several rounds, each on a
/// database of its own, so the race is met, not hoped for. On PostgreSQL four more rounds
/// run on a database created for each, with no schema configured, where one process names
/// `public` and the others leave it unset: the same schema, so the same turn.
async fn migrate_together(backend: Backend) {
    use futures_util::FutureExt;

    let rounds = if backend == Backend::Postgres { 10 } else { 6 };
    for round in 0..rounds {
        let dir = tempfile::tempdir().unwrap();
        let (config, schema, database) = if round >= 6 {
            let Some(url) = postgres_url() else { return };
            let name = format!("rt_{}", uuid::Uuid::now_v7().simple());
            if let Err(err) = try_sql(&url, &format!("CREATE DATABASE {name}")).await {
                eprintln!("skipped the rounds on a database of their own: {err}");
                return;
            }
            let config = Config {
                data_dir: dir.path().to_owned(),
                database_url: Some(database_url(&url, &name)),
                ..Config::default()
            };
            (config, None, Some(name))
        } else {
            let Some((config, schema)) = config(backend, dir.path()).await else {
                eprintln!("skipped: set RAPPORT_TEST_DATABASE_URL to run the PostgreSQL variant");
                return;
            };
            (config, schema, None)
        };
        let outcome =
            std::panic::AssertUnwindSafe(migrate_round(round, config, database.is_some()))
                .catch_unwind()
                .await;
        // Dropped whatever the round did: a failure leaves nothing on a shared server.
        if let (Some(schema), Some(url)) = (schema, postgres_url()) {
            sql(&url, &format!("DROP SCHEMA IF EXISTS {schema} CASCADE")).await;
        }
        if let (Some(name), Some(url)) = (database, postgres_url()) {
            sql(
                &url,
                &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
            )
            .await;
        }
        if let Err(panic) = outcome {
            std::panic::resume_unwind(panic);
        }
    }
}

/// One round of [`migrate_together`] on `config`'s fresh database; with `public_named`
/// (no schema configured) the first process names `public`, the others nothing.
async fn migrate_round(round: usize, mut config: Config, public_named: bool) {
    use migration::MigratorTrait;
    use sea_orm::{ConnectionTrait, Statement};

    // Half the rounds on a server whose transactions default to SERIALIZABLE: a process
    // that waited must still see what the other committed meanwhile.
    if let Some(url) = config.database_url.as_mut().filter(|_| round % 2 == 1) {
        let joint = if url.contains('?') { '&' } else { '?' };
        url.push_str(&format!(
            "{joint}options=-c%20default_transaction_isolation%3Dserializable"
        ));
    }
    // Each its own pool, as each process has: no connection is shared.
    let mut pools = Vec::new();
    for process in 0..3 {
        let metrics = std::sync::Arc::new(rapport::metrics::Metrics::default());
        let mut config = config.clone();
        if public_named && process == 0 {
            config.database_schema = Some("public".to_owned());
        }
        pools.push(rapport::db::connect(&config, metrics).await.unwrap());
    }
    let started = pools.iter().map(rapport::db::migrate);
    for (process, result) in futures_util::future::join_all(started)
        .await
        .into_iter()
        .enumerate()
    {
        if let Err(err) = result {
            panic!("round {round}: process {process} failed to migrate: {err:#}");
        }
    }
    let db = &pools[0];
    let applied = db
        .query_one(Statement::from_string(
            db.get_database_backend(),
            "SELECT COUNT(*), COUNT(DISTINCT version) FROM seaql_migrations",
        ))
        .await
        .unwrap()
        .unwrap();
    let (rows, versions): (i64, i64) = (
        applied.try_get_by_index(0).unwrap(),
        applied.try_get_by_index(1).unwrap(),
    );
    let all = migration::Migrator::migrations().len() as i64;
    assert_eq!((rows, versions), (all, all), "round {round}");
    assert!(rapport::db::ready(db).await.is_ok(), "round {round}");
    for pool in pools {
        pool.close().await.ok();
    }
}

/// `url` naming the database `name` instead of its own. Its `dbname` parameter (which
/// would win over the path) and `options` (which may set a schema) are left out.
fn database_url(url: &str, name: &str) -> String {
    let mut url = reqwest::Url::parse(url).expect("RAPPORT_TEST_DATABASE_URL is a URL");
    url.set_path(&format!("/{name}"));
    let kept: Vec<(String, String)> = url
        .query_pairs()
        .filter(|(key, _)| key != "dbname" && key != "options")
        .map(|(key, value)| (key.into_owned(), value.into_owned()))
        .collect();
    if kept.is_empty() {
        url.set_query(None);
    } else {
        url.query_pairs_mut().clear().extend_pairs(kept);
    }
    url.to_string()
}

mod processes_started_together_on_a_fresh_database_migrate_it_once {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sqlite() {
        migrate_together(Backend::Sqlite).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres() {
        migrate_together(Backend::Postgres).await;
    }
}
