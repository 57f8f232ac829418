//! The key cache (`domain::callers`): on PostgreSQL a key is read once and then known, and
//! forgotten the moment it is revoked, its user deactivated or demoted, or its workspace
//! deleted — in this process, by another process, or by SQL by hand — and while the
//! cache's listening connection is lost. On SQLite every request reads its key.

use std::time::{Duration, Instant};

use rapport::domain::Role;
use sea_orm::ConnectionTrait;
use serde_json::json;

use crate::backend_test;
use crate::common::{Backend, TestApp};
use crate::processes::{config_file, rapport};

/// The statements a `{ viewer { role } }` request runs (its key's read included), and
/// its role.
async fn viewer(app: &TestApp, key: &str) -> (u64, String) {
    let before = app.app.metrics.statements();
    let data = app.gql(key, "{ viewer { role } }", json!({})).await;
    (
        app.app.metrics.statements() - before,
        data["viewer"]["role"].as_str().unwrap().to_owned(),
    )
}

/// Waits until the cache's listener (started by the first request) has proven it
/// delivers (PostgreSQL).
async fn listening(app: &TestApp, key: &str) {
    viewer(app, key).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while !app.app.callers.listening() {
        assert!(Instant::now() < deadline, "the key cache never listened");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Reads `key` into the cache and proves it is served from there: the next request
/// runs one statement fewer than a request that reads its key. Tried a few times:
/// other tests' changes to keys and users notify this database's every cache too.
async fn cached(app: &TestApp, key: &str) {
    for _ in 0..20 {
        listening(app, key).await;
        let before = app.app.callers.lookups();
        let (read, _) = viewer(app, key).await;
        let between = app.app.callers.lookups();
        let (known, _) = viewer(app, key).await;
        if app.app.callers.lookups() == between {
            if between == before + 1 {
                assert_eq!(known + 1, read, "the second request reads no key");
            }
            return;
        }
    }
    panic!("the key was never served from the cache");
}

/// Requests with `key` until one is refused as UNAUTHENTICATED, within `within`.
async fn refused_within(app: &TestApp, key: &str, within: Duration) -> Duration {
    let start = Instant::now();
    loop {
        let (status, body) = app.post(key, "{ viewer { role } }", json!({})).await;
        if status == 401 {
            assert_eq!(body["errors"][0]["extensions"]["code"], "UNAUTHENTICATED");
            return start.elapsed();
        }
        assert_eq!(status, 200, "{body}");
        assert!(
            start.elapsed() < within,
            "the key still worked {within:?} after its change"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

backend_test! {
    async fn postgresql_reads_a_key_once_and_sqlite_every_time(app: TestApp) {
        let key = app.key(Role::Agent).await;
        if app.backend == Backend::Postgres {
            cached(&app, &key).await;
            // Keys of other workspaces and unknown keys are not served from it.
            let other = app.key_in("globex", Role::Viewer).await;
            assert_eq!(viewer(&app, &other).await.1, "VIEWER");
            let (status, _) = app.post("rpk_0000000000000000000000000000000000000000000000", "{ viewer { role } }", json!({})).await;
            assert_eq!(status, 401);
            assert_eq!(viewer(&app, &key).await.1, "AGENT");
            let metrics = app.client.get(app.url("/metrics")).send().await.unwrap().text().await.unwrap();
            assert!(metrics.contains("\nrapport_key_cache_listening 1\n"), "{metrics}");
            assert!(metrics.contains(&format!("\nrapport_key_lookups_total {}\n", app.app.callers.lookups())), "{metrics}");
        } else {
            let (first, _) = viewer(&app, &key).await;
            let (second, _) = viewer(&app, &key).await;
            assert_eq!(first, second, "SQLite reads the key every time");
            assert!(!app.app.callers.listening());
            let metrics = app.client.get(app.url("/metrics")).send().await.unwrap().text().await.unwrap();
            assert!(metrics.contains("\nrapport_key_cache_listening 0\n"), "{metrics}");
            assert!(metrics.contains("\nrapport_key_lookups_total 2\n"), "{metrics}");
        }
    }
}

backend_test! {
    async fn a_key_known_to_the_cache_is_refused_on_the_next_request_after_this_process_revokes_it(app: TestApp) {
        let key = app.key(Role::Admin).await;
        if app.backend == Backend::Postgres {
            cached(&app, &key).await;
            // No notification from this revocation: only this process's own word
            // (`callers::changed`) can make the next request see it.
            app.app.db.execute_unprepared("ALTER TABLE api_key DISABLE TRIGGER api_key_auth_notify").await.unwrap();
        }
        let workspace = rapport::domain::workspace::ensure(&app.app.db, "acme").await.unwrap();
        let keys = rapport::domain::workspace::list_keys(&app.app.db, workspace.id).await.unwrap();
        rapport::domain::workspace::revoke_key(&app.app.db, workspace.id, keys[0].id).await.unwrap();
        let (status, body) = app.post(&key, "{ viewer { role } }", json!({})).await;
        assert_eq!(status, 401, "{body}");
    }
}

fn postgres_app_skipped() {
    eprintln!("skipped: RAPPORT_TEST_DATABASE_URL is not set");
}

/// Requests with `key` until one is refused, and proves the refusal came from a
/// notification: the cache kept its proof all along (no lost connection, and still
/// usable), so neither a listener starting over nor a lapse of its pings emptied it.
async fn refused_by_notification(app: &TestApp, key: &str) -> Duration {
    let losses = app.app.callers.losses();
    let took = refused_within(app, key, Duration::from_secs(10)).await;
    assert_eq!(
        app.app.callers.losses(),
        losses,
        "the listener was not lost"
    );
    assert!(app.app.callers.listening(), "the cache kept its proof");
    took
}

// A test of its own runtime's threads: the HTTP server, the listener and the pings go on
// while the test waits for the command line.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_revoked_by_another_process_is_refused_once_its_notification_arrives() {
    let Some(app) = TestApp::start(Backend::Postgres).await else {
        return postgres_app_skipped();
    };
    let key = app.key(Role::Admin).await;
    cached(&app, &key).await;
    let workspace = rapport::domain::workspace::ensure(&app.app.db, "acme")
        .await
        .unwrap();
    let id = rapport::ids::encode(
        rapport::domain::workspace::list_keys(&app.app.db, workspace.id)
            .await
            .unwrap()[0]
            .id,
    );
    let config = config_file(&app, "enabled = false\n");
    let output = tokio::task::spawn_blocking(move || {
        rapport(&config)
            .args(["keys", "revoke", &id, "--workspace", "acme"])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(output.status.success(), "{output:?}");
    let took = refused_by_notification(&app, &key).await;
    eprintln!("refused {took:?} after `rapport keys revoke` returned");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_made_by_sql_by_hand_reach_the_cache() {
    let Some(app) = TestApp::start(Backend::Postgres).await else {
        return postgres_app_skipped();
    };
    let db = &app.app.db;
    // A user's key: demoted, then deactivated, by SQL.
    let workspace = rapport::domain::workspace::ensure(db, "acme")
        .await
        .unwrap();
    let owner = rapport::domain::Caller::owner_without_key(workspace.id, "test");
    let new = rapport::domain::user::NewUser {
        name: "Dana",
        email: "dana@example.com",
        role: Role::Admin,
    };
    let user_id = rapport::domain::user::create(db, &owner, new)
        .await
        .unwrap()
        .id;
    let (_, danas) = rapport::domain::workspace::create_key_for(
        db,
        workspace.id,
        Role::Admin,
        "dana",
        Some(user_id),
    )
    .await
    .unwrap();
    cached(&app, &danas).await;
    assert_eq!(viewer(&app, &danas).await.1, "ADMIN");
    let losses = app.app.callers.losses();
    db.execute_unprepared("UPDATE \"user\" SET role = 'viewer'")
        .await
        .unwrap();
    let start = Instant::now();
    while viewer(&app, &danas).await.1 != "VIEWER" {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "the demotion never reached the cache"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(app.app.callers.losses(), losses);
    cached(&app, &danas).await;
    db.execute_unprepared("UPDATE \"user\" SET active = false")
        .await
        .unwrap();
    refused_by_notification(&app, &danas).await;

    // A workspace deleted by SQL: its keys go with it (the cascade notifies).
    let globex = app.key_in("globex", Role::Owner).await;
    cached(&app, &globex).await;
    db.execute_unprepared(
        "DELETE FROM event WHERE workspace_id IN (SELECT id FROM workspace WHERE slug = 'globex')",
    )
    .await
    .unwrap();
    db.execute_unprepared("DELETE FROM workspace WHERE slug = 'globex'")
        .await
        .unwrap();
    refused_by_notification(&app, &globex).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cache_whose_listening_connection_was_lost_starts_over_empty() {
    let Some(app) = TestApp::start(Backend::Postgres).await else {
        return postgres_app_skipped();
    };
    let db = &app.app.db;
    let key = app.key(Role::Admin).await;
    cached(&app, &key).await;
    // A change whose notification is lost: the key's trigger is off in this test's
    // schema, and the listening connection is cut (every key cache's on this database:
    // other tests' caches read keys from the database until theirs is back).
    db.execute_unprepared("ALTER TABLE api_key DISABLE TRIGGER api_key_auth_notify")
        .await
        .unwrap();
    let losses = app.app.callers.losses();
    let cut = db
        .query_one(sea_orm::Statement::from_string(
            sea_orm::DatabaseBackend::Postgres,
            format!(
                "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) AS cut FROM pg_stat_activity \
                 WHERE datname = current_database() AND application_name = '{}' AND query LIKE 'LISTEN%'",
                rapport::domain::callers::APPLICATION_NAME
            ),
        ))
        .await
        .unwrap()
        .unwrap()
        .try_get::<i64>("", "cut")
        .unwrap();
    assert!(cut >= 1, "no listening connection to cut");
    db.execute_unprepared("UPDATE api_key SET revoked_at = now()")
        .await
        .unwrap();
    // No request until the cache listens again: the first one must not be served the
    // revoked key from before the cut.
    let deadline = Instant::now() + Duration::from_secs(10);
    while app.app.callers.losses() == losses || !app.app.callers.listening() {
        assert!(Instant::now() < deadline, "the cache never listened again");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let (status, body) = app.post(&key, "{ viewer { role } }", json!({})).await;
    assert_eq!(status, 401, "{body}");
    // And it serves again: a new key is read once, then known.
    let fresh = app.key(Role::Viewer).await;
    cached(&app, &fresh).await;
}

backend_test! {
    async fn a_deleted_users_keys_are_revoked_not_promoted_to_their_own_role(app: TestApp) {
        // `api_key.user_id` is ON DELETE SET NULL: without the trigger, an admin key of a
        // user capped to viewer would become a machine key acting as admin.
        let db = &app.app.db;
        let workspace = rapport::domain::workspace::ensure(db, "acme").await.unwrap();
        let owner = rapport::domain::Caller::owner_without_key(workspace.id, "test");
        let new = rapport::domain::user::NewUser { name: "Eve", email: "eve@example.com", role: Role::Viewer };
        let user_id = rapport::domain::user::create(db, &owner, new).await.unwrap().id;
        let (_, eves) = rapport::domain::workspace::create_key_for(db, workspace.id, Role::Admin, "eve", Some(user_id)).await.unwrap();
        assert_eq!(viewer(&app, &eves).await.1, "VIEWER", "capped at her role");
        db.execute_unprepared("DELETE FROM \"user\"").await.unwrap();
        refused_within(&app, &eves, Duration::from_secs(10)).await;
        let keys = rapport::domain::workspace::list_keys(db, workspace.id).await.unwrap();
        assert_eq!(keys.len(), 1);
        assert!(keys[0].revoked_at.is_some_and(|at| (chrono::Utc::now() - at).num_seconds().abs() < 60), "{:?}", keys[0].revoked_at);
        assert_eq!(keys[0].user_id, None);
    }
}
