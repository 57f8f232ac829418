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
    use sea_orm::{ConnectionTrait, Database};
    let db = Database::connect(url).await.unwrap();
    db.execute_unprepared(statement).await.unwrap();
    db.close().await.ok();
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
