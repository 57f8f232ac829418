//! `rapport bench` keeps working: a tiny run checks every body and leaves no data behind.
//! (Its figures are for BENCHMARKS.md; nothing here asserts on time.)

use rapport::bench::BenchOptions;

use crate::backend_test;

backend_test! {
    async fn a_small_benchmark_run_checks_bodies_and_cleans_up(app: TestApp) {
        let options = BenchOptions { customers: 60, interactions_per_customer: 3, requests: 30, concurrency: 4 };
        let reports = rapport::bench::run(app.app.clone(), options).await.unwrap();
        assert_eq!(reports.len(), 3);
        assert!(reports.iter().all(|report| report.requests == 30 && report.p50 <= report.p95 && report.p95 <= report.p99));
        use sea_orm::{EntityTrait, PaginatorTrait};
        assert_eq!(entity::customer::Entity::find().count(&app.app.db).await.unwrap(), 0);
        assert_eq!(entity::event::Entity::find().count(&app.app.db).await.unwrap(), 0);
        assert_eq!(entity::workspace::Entity::find().count(&app.app.db).await.unwrap(), 0);
        // The search benchmark checks every answer and cleans up too.
        let report = rapport::bench::search(&app.app, 50, 5).await.unwrap();
        assert_eq!((report.interactions, report.scenarios.len()), (1_000, 5));
        assert_eq!(entity::interaction::Entity::find().count(&app.app.db).await.unwrap(), 0);
        // The ingestion benchmark stores each item once and cleans up too.
        let report = rapport::bench::ingest(&app.app, 300, 100, 2_000, &[]).await.unwrap();
        assert_eq!((report.items, report.customers), (300, 60));
        // It says where the new items' time went: three batches stored, each prepared
        // apart (100 items: enough to prepare beside the store), and the CPU spent.
        let split = &report.split;
        assert_eq!((split.items, split.batches, split.inline), (300, 3, false));
        assert!(!split.store.is_zero() && !split.prepare.is_zero() && !split.cpu.is_zero());
        // The database's CPU is read from a PostgreSQL server on this machine, and only then
        // (CI's server is always on the machine; a developer's may be in a container).
        match (&split.database_cpu, &app.backend) {
            (Some(_), crate::common::Backend::Sqlite) => panic!("a PostgreSQL CPU on SQLite"),
            (Some(server), crate::common::Backend::Postgres) => assert!(!server.cpu.is_zero()),
            (None, crate::common::Backend::Postgres) if std::env::var("CI").is_ok_and(|ci| ci == "true") => {
                panic!("CI's PostgreSQL runs on this machine: its CPU should have been read")
            }
            (None, _) => {}
        }
        assert_eq!(entity::interaction::Entity::find().count(&app.app.db).await.unwrap(), 0);
        assert_eq!(entity::workspace::Entity::find().count(&app.app.db).await.unwrap(), 0);
        // The live-update benchmark receives every item once on every socket and cleans up.
        let options = rapport::bench::LiveOptions { rate: 200, seconds: 1, subscribers: 2 };
        let report = rapport::bench::live(&app.app, options).await.unwrap();
        assert_eq!(report.items, 200);
        assert!(report.p50 <= report.p99 && report.p99 <= report.max);
        assert_eq!(entity::interaction::Entity::find().count(&app.app.db).await.unwrap(), 0);
        assert_eq!(entity::workspace::Entity::find().count(&app.app.db).await.unwrap(), 0);
    }
}

backend_test! {
    async fn the_comparison_checks_bodies_and_cleans_up(app: TestApp) {
        // Rapport alone (a reference server is outside the tests): every row timed, the
        // statement count read, and nothing left behind.
        let options = rapport::bench::CompareOptions {
            customers: 30,
            interactions_per_customer: 6,
            requests: 8,
            clients: vec![1, 3],
            scenarios: Vec::new(),
            rounds: 2,
            sample: 5,
            peer: None,
            rapport_url: None,
        };
        let report = rapport::bench::compare(app.app.clone(), options).await.unwrap();
        assert_eq!(report.rows.len(), 4);
        assert!(report.rows.iter().all(|row| row.rapport.requests == 8 && row.peer.is_none() && row.ratio().is_none()));
        // At least the view's own statement (on PostgreSQL the key is read once, then known).
        assert!(report.rows.iter().all(|row| row.rapport_statements.is_some_and(|n| n >= 1.0)));
        use sea_orm::{EntityTrait, PaginatorTrait};
        assert_eq!(entity::interaction::Entity::find().count(&app.app.db).await.unwrap(), 0);
        assert_eq!(entity::customer::Entity::find().count(&app.app.db).await.unwrap(), 0);
        assert_eq!(entity::workspace::Entity::find().count(&app.app.db).await.unwrap(), 0);
    }
}
