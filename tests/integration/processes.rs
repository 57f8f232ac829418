//! Exactly-once across processes: a `rapport sync` killed between fetching and committing,
//! two `rapport serve` schedulers over one database, and a graceful stop in the middle of
//! a paged sync. Each runs the real binary against the test's database.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rapport::domain::Role;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
use serde_json::json;

use crate::backend_test;
use crate::common::TestApp;
use crate::feeds::create_source;
use crate::platform::{fixture, Platform, Reply};

/// Writes a configuration file that points the binary at the test's database.
pub(crate) fn config_file(app: &TestApp, sync: &str) -> PathBuf {
    let config = &app.app.config;
    let mut text = format!("data_dir = {:?}\n", config.data_dir.display().to_string());
    if let Some(url) = &config.database_url {
        text.push_str(&format!("database_url = {url:?}\n"));
    }
    if let Some(schema) = &config.database_schema {
        text.push_str(&format!("database_schema = {schema:?}\n"));
    }
    // With Meilisearch, the processes index into the test's own indexes (the binary is
    // started without `RAPPORT_MEILI_URL`: the file says where), as the indexer's
    // consumer name and lease are per index.
    if let Some(url) = &config.meili_url {
        text.push_str(&format!("meili_url = {url:?}\n"));
        text.push_str(&format!(
            "meili_index_prefix = {:?}\n",
            config.meili_index_prefix
        ));
        if let Some(key) = &config.meili_key {
            text.push_str(&format!("meili_key = {key:?}\n"));
        }
    }
    // A process killed in a test leaves its indexer lease behind: the next one takes
    // over within two seconds instead of the default fifteen.
    text.push_str("indexer_lease_secs = 2\n");
    text.push_str("[sync]\n");
    text.push_str(sync);
    let path = config
        .data_dir
        .join(format!("rapport-{}.toml", uuid::Uuid::now_v7().simple()));
    std::fs::write(&path, text).unwrap();
    path
}

pub(crate) fn rapport(config: &PathBuf) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_rapport"));
    command
        .arg("--config-file")
        .arg(config)
        .env_remove("RAPPORT_DATABASE_URL")
        .env_remove("RAPPORT_DATA_DIR")
        .env_remove("RAPPORT_FAILPOINT")
        .env_remove("RAPPORT_MEILI_URL")
        // The platforms these tests serve are on loopback.
        .env("RAPPORT_OUTBOUND_ALLOW", "127.0.0.1")
        .env("RUST_LOG", "warn");
    command
}

async fn source_row(app: &TestApp, id: &str) -> entity::source::Model {
    let id = rapport::ids::decode::<entity::SourceId>("id", id).unwrap();
    entity::source::Entity::find_by_id(id)
        .one(&app.app.db)
        .await
        .unwrap()
        .unwrap()
}

async fn stored(app: &TestApp) -> usize {
    entity::interaction::Entity::find()
        .all(&app.app.db)
        .await
        .unwrap()
        .len()
}

backend_test!(
    async fn a_sync_killed_before_commit_loses_and_duplicates_nothing(app: TestApp) {
        let key = app.key_in("default", Role::Admin).await;
        let platform = Platform::start().await;
        platform.on(
            "/atom.xml",
            vec![Reply::ok("application/atom+xml", fixture("feeds/atom.xml")).etag("\"a1\"")],
        );
        let id = create_source(
            &app,
            &key,
            "RSS",
            "forum",
            json!({ "url": platform.url("/atom.xml") }),
        )
        .await;
        let config = config_file(&app, "lease_secs = 2\n");

        // The process fetches the feed, stores the batch in its transaction, and dies
        // (abort, like kill -9) just before COMMIT.
        let output = rapport(&config)
            .args(["sync", &id])
            .env("RAPPORT_FAILPOINT", "ingest.before_commit")
            .output()
            .unwrap();
        assert!(!output.status.success());
        assert!(String::from_utf8_lossy(&output.stderr).contains("failpoint ingest.before_commit"));
        assert_eq!(platform.seen("/atom.xml").len(), 1, "the feed was fetched");
        assert_eq!(stored(&app).await, 0, "nothing of the batch is stored");
        let row = source_row(&app, &id).await;
        assert_eq!(row.cursor, None, "the cursor did not move");
        assert!(
            row.lease_owner.is_some(),
            "the dead process still holds its lease"
        );

        // While the lease lives, another sync is refused; once it runs out, the next sync
        // stores every item once.
        let output = rapport(&config).args(["sync", &id]).output().unwrap();
        assert!(!output.status.success());
        assert!(
            String::from_utf8_lossy(&output.stderr).contains("being synced right now"),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        tokio::time::sleep(Duration::from_millis(2_100)).await;
        let output = rapport(&config).args(["sync", &id]).output().unwrap();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        assert_eq!(String::from_utf8_lossy(&output.stdout).trim(), "3");
        assert_eq!(stored(&app).await, 3);
        // The conditional GET now gets a 304; a repeat stores nothing.
        let output = rapport(&config).args(["sync"]).output().unwrap();
        assert_eq!(String::from_utf8_lossy(&output.stdout).trim(), "0");
        assert_eq!(stored(&app).await, 3);
        let row = source_row(&app, &id).await;
        assert_eq!((row.lease_owner, row.items_ingested), (None, 3));
    }
);

fn serve(config: &PathBuf) -> Child {
    serve_with(config, &[])
}

fn serve_with(config: &PathBuf, extra: &[&str]) -> Child {
    rapport(config)
        .args(["serve", "--addr", "127.0.0.1:0"])
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

pub(crate) fn terminate(child: &mut Child) -> std::process::ExitStatus {
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(
            Instant::now() < deadline,
            "the process did not stop after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

backend_test!(
    async fn two_schedulers_over_one_database_run_each_source_once(app: TestApp) {
        let key = app.key_in("default", Role::Admin).await;
        let platform = Platform::start().await;
        let mut ids = Vec::new();
        for n in 0..12 {
            let path = format!("/feed-{n}.xml");
            // Each feed answers slowly, so both processes are busy at the same time.
            let body = String::from_utf8(fixture("feeds/rss2.xml"))
                .unwrap()
                .replace(
                    "blog.northwind.example",
                    &format!("blog{n}.northwind.example"),
                );
            platform.on(
                &path,
                vec![Reply::ok("application/rss+xml", body).delay(Duration::from_millis(150))],
            );
            ids.push(
                create_source(
                    &app,
                    &key,
                    "RSS",
                    &format!("feed {n}"),
                    json!({ "url": platform.url(&path) }),
                )
                .await,
            );
        }
        let config = config_file(&app, "tick_ms = 20\nconcurrency = 3\n");
        let mut first = serve(&config);
        let mut second = serve(&config);
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let synced = entity::source::Entity::find()
                .filter(entity::source::Column::LastRunAt.is_not_null())
                .all(&app.app.db)
                .await
                .unwrap();
            if synced.len() == ids.len() && synced.iter().all(|s| s.lease_owner.is_none()) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the schedulers did not run every source"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(terminate(&mut first).success());
        assert!(terminate(&mut second).success());
        // Each source ran once (the next run is 5 minutes away): one fetch per feed,
        // every item stored once.
        for n in 0..12 {
            assert_eq!(
                platform.seen(&format!("/feed-{n}.xml")).len(),
                1,
                "feed {n}"
            );
        }
        assert_eq!(stored(&app).await, 36);
        for id in &ids {
            let row = source_row(&app, id).await;
            assert_eq!((row.status.as_str(), row.items_ingested), ("ok", 3));
        }
    }
);

backend_test!(
    async fn a_graceful_stop_finishes_the_batch_in_hand_and_gives_the_lease_back(app: TestApp) {
        let key = app.key_in("default", Role::Admin).await;
        let platform = Platform::start().await;
        // A JSON Feed of three pages, each taking a second to arrive.
        for page in 1..=3 {
            let next = if page < 3 {
                format!(
                    ", \"next_url\": \"{}\"",
                    platform.url(&format!("/page-{}.json", page + 1))
                )
            } else {
                String::new()
            };
            let body = format!(
                "{{\"version\": \"https://jsonfeed.org/version/1.1\", \"title\": \"paged\"{next}, \"items\": [{{\"id\": \"p{page}\", \"content_text\": \"page {page}\", \"date_published\": \"2026-11-2{page}T10:00:00Z\", \"authors\": [{{\"name\": \"Bot\", \"url\": \"https://bot.example\"}}]}}]}}"
            );
            platform.on(
                &format!("/page-{page}.json"),
                vec![Reply::ok("application/feed+json", body).delay(Duration::from_millis(1_000))],
            );
        }
        let id = create_source(
            &app,
            &key,
            "RSS",
            "paged",
            json!({ "url": platform.url("/page-1.json") }),
        )
        .await;
        let config = config_file(&app, "tick_ms = 20\n");
        let mut server = serve(&config);
        let deadline = Instant::now() + Duration::from_secs(30);
        while platform.seen("/page-1.json").is_empty() {
            assert!(
                Instant::now() < deadline,
                "the scheduler never fetched the feed"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // Stop while the first page is in flight: it is stored, then the run ends.
        let status = terminate(&mut server);
        assert!(status.success(), "{status:?}");
        let row = source_row(&app, &id).await;
        assert_eq!(row.lease_owner, None, "the lease was given back");
        assert_eq!(
            stored(&app).await,
            1,
            "the batch in hand was stored, no more"
        );
        assert!(platform.seen("/page-2.json").is_empty());
        let cursor: serde_json::Value =
            serde_json::from_str(row.cursor.as_deref().unwrap()).unwrap();
        assert_eq!(
            cursor["next"],
            platform.url("/page-2.json"),
            "the next run resumes at page 2"
        );
        // The next run goes on from there.
        let output = rapport(&config).args(["sync", &id]).output().unwrap();
        assert_eq!(
            String::from_utf8_lossy(&output.stdout).trim(),
            "2",
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        assert_eq!(stored(&app).await, 3);
    }
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_demo_ingests_its_bundled_feed_offline() {
    let app = TestApp::start(crate::common::Backend::Sqlite)
        .await
        .unwrap();
    let config = config_file(&app, "tick_ms = 50\n");
    let mut server = serve_with(&config, &["--demo"]);
    let deadline = Instant::now() + Duration::from_secs(90);
    let feed = loop {
        let sources = entity::source::Entity::find()
            .all(&app.app.db)
            .await
            .unwrap_or_default();
        if let Some(feed) = sources
            .into_iter()
            .find(|s| s.channel == connectors::Channel::Rss && s.items_ingested > 0)
        {
            break feed;
        }
        assert!(Instant::now() < deadline, "the demo feed was not ingested");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(terminate(&mut server).success());
    assert_eq!(
        (
            feed.name.as_str(),
            feed.items_ingested,
            feed.status.as_str()
        ),
        ("Demo community feed", 5, "ok")
    );
    let rows = entity::interaction::Entity::find()
        .filter(entity::interaction::Column::SourceId.eq(feed.id))
        .all(&app.app.db)
        .await
        .unwrap();
    let by_id = |suffix: &str| {
        rows.iter()
            .find(|row| {
                row.external_id
                    .as_deref()
                    .is_some_and(|id| id.ends_with(suffix))
            })
            .unwrap()
    };
    // The reply in the demo feed is threaded under the post it answers.
    assert_eq!(by_id("e101").conversation_id, by_id("e102").conversation_id);
    assert_eq!(by_id("e103").language.as_deref(), Some("es"));
}
