//! Scale-out: several processes over one database. The indexer of a shared index runs in
//! one process at a time (a lease on its offset row, with fenced offset writes) and
//! another takes over when it dies; webhooks land on any process; killing a process in
//! the middle of a run loses and doubles nothing.

use std::net::SocketAddr;
use std::process::Child;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use connectors::webhook::Secret;
use rapport::domain::{event, Role};
use rapport::search::indexer::{self, Indexer};
use serde_json::{json, Value};

use crate::backend_test;
use crate::common::{free_port, TestApp};
use crate::processes::{config_file, rapport, terminate};

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

const CREATE: &str = "mutation($input: CreateSourceInput!) { createSource(input: $input) { source { webhookPath } } }";

async fn webhook_path(app: &TestApp, key: &str) -> String {
    let input = json!({ "channel": "WEBHOOK", "name": "Form", "config": { "secret": SECRET } });
    app.gql(key, CREATE, json!({ "input": input })).await["createSource"]["source"]["webhookPath"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// Delivers item `n` to `base` signed the Standard Webhooks way: the status and body, or
/// `None` when the process did not answer (killed).
async fn deliver(client: &reqwest::Client, base: &str, path: &str, n: usize) -> Option<Value> {
    let body = json!({
        "name": format!("Person {}", n % 40),
        "email": format!("p{}@scale.example", n % 40),
        "text": format!("scaleword item{n} asks about the invoice"),
        "thread_id": format!("thread-{}", n % 40),
    })
    .to_string();
    let id = format!("msg_{n}");
    let timestamp = chrono::Utc::now().timestamp().to_string();
    let signature = Secret::parse(SECRET)
        .unwrap()
        .sign_standard(&id, &timestamp, body.as_bytes())
        .unwrap();
    let response = client
        .post(format!("{base}{path}"))
        .header("content-type", "application/json")
        .header("webhook-id", &id)
        .header("webhook-timestamp", &timestamp)
        .header("webhook-signature", signature)
        .timeout(Duration::from_secs(10))
        .body(body)
        .send()
        .await
        .ok()?;
    let status = response.status().as_u16();
    let answer: Value = response.json().await.ok()?;
    assert_eq!(status, 200, "item {n}: {answer}");
    assert_eq!(answer["accepted"], true, "item {n}: {answer}");
    Some(answer)
}

async fn interactions(app: &TestApp, key: &str) -> u64 {
    app.gql(key, "{ interactions { totalCount } }", json!({}))
        .await["interactions"]["totalCount"]
        .as_u64()
        .unwrap()
}

/// Polls `check` every 50 ms for up to `secs` seconds.
async fn eventually<F: std::future::Future<Output = bool>>(
    what: &str,
    secs: u64,
    mut check: impl FnMut() -> F,
) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !check().await {
        assert!(Instant::now() < deadline, "never: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

backend_test!(
    async fn the_indexer_lease_is_one_holders_and_fences_its_offset(app: TestApp) {
        let db = &app.app.db;
        let consumer = "search:lease-test";
        let soon = || rapport::domain::now() + chrono::Duration::seconds(30);
        assert!(event::claim(db, consumer, "a", soon()).await.unwrap());
        assert!(
            !event::claim(db, consumer, "b", soon()).await.unwrap(),
            "held by a"
        );
        assert!(
            event::claim(db, consumer, "a", soon()).await.unwrap(),
            "renewed"
        );
        assert!(event::store_leased_offset(db, consumer, "a", 7)
            .await
            .unwrap());
        assert!(!event::store_leased_offset(db, consumer, "b", 9)
            .await
            .unwrap());
        assert_eq!(event::offset(db, consumer).await.unwrap(), 7);
        // Another's release does nothing; a's own frees it at once.
        event::release(db, consumer, "b").await.unwrap();
        assert_eq!(
            event::lease_holder(db, consumer).await.unwrap().as_deref(),
            Some("a")
        );
        event::release(db, consumer, "a").await.unwrap();
        assert!(event::claim(db, consumer, "b", soon()).await.unwrap());
        // A lease that ran out is taken over, and its old holder's writes are refused.
        let past = rapport::domain::now() - chrono::Duration::seconds(1);
        assert!(event::claim(db, consumer, "b", past).await.unwrap());
        assert_eq!(event::lease_holder(db, consumer).await.unwrap(), None);
        assert!(event::claim(db, consumer, "c", soon()).await.unwrap());
        assert!(!event::store_leased_offset(db, consumer, "b", 11)
            .await
            .unwrap());
        assert_eq!(event::offset(db, consumer).await.unwrap(), 7, "kept");
    }
);

async fn search_count(app: &TestApp, key: &str) -> u64 {
    app.gql(
        key,
        "{ search(query: \"scaleword\", first: 1) { estimatedTotal } }",
        json!({}),
    )
    .await["search"]["estimatedTotal"]
        .as_u64()
        .unwrap()
}

backend_test!(
    async fn one_indexer_runs_a_shared_index_and_another_takes_over_when_it_dies(app: TestApp) {
        let key = app.key(Role::Admin).await;
        let path = webhook_path(&app, &key).await;
        let base = format!("http://{}", app.addr);
        for n in 0..40 {
            deliver(&app.client, &base, &path, n).await.unwrap();
        }
        // Two processes' indexers over one index (as with Meilisearch): same index, same
        // offset row, their own names on the lease.
        let start = |owner: &str| {
            let status = Arc::new(rapport::search::SearchStatus::default());
            let indexer = Indexer {
                owner: owner.into(),
                status: status.clone(),
                // Renewed every second; long enough that a loaded machine does not
                // let it run out while its holder lives.
                lease: Duration::from_secs(5),
                batch: 10,
                ..Indexer::new(&app.app)
            };
            let (stop, stopped) = tokio::sync::watch::channel(false);
            (tokio::spawn(indexer.run(stopped)), status, stop)
        };
        let (first, first_status, _first_stop) = start("first");
        eventually("the first indexer holds the lease", 10, || async {
            first_status.active.load(Ordering::Relaxed)
        })
        .await;
        let (second, second_status, second_stop) = start("second");
        let consumer = app.app.search_consumer.clone();
        eventually("the first indexer catches up", 20, || async {
            indexer::lag(&app.app.db, &consumer).await.unwrap() == 0
        })
        .await;
        assert_eq!(search_count(&app, &key).await, 40);
        assert!(
            !second_status.active.load(Ordering::Relaxed),
            "one at a time"
        );
        assert_eq!(second_status.indexed.load(Ordering::Relaxed), 0);

        // The first process dies (no graceful stop: its lease runs out).
        first.abort();
        let _ = first.await;
        for n in 40..100 {
            deliver(&app.client, &base, &path, n).await.unwrap();
        }
        eventually(
            "the second indexer takes over and catches up",
            20,
            || async {
                second_status.active.load(Ordering::Relaxed)
                    && indexer::lag(&app.app.db, &consumer).await.unwrap() == 0
            },
        )
        .await;
        assert_eq!(search_count(&app, &key).await, 100, "nothing lost");
        assert_eq!(interactions(&app, &key).await, 100);
        assert!(second_status.indexed.load(Ordering::Relaxed) > 0);
        assert_eq!(
            event::lease_holder(&app.app.db, &consumer)
                .await
                .unwrap()
                .as_deref(),
            Some("second")
        );
        // A graceful stop gives the lease back at once.
        second_stop.send(true).unwrap();
        second.await.unwrap();
        assert_eq!(
            event::lease_holder(&app.app.db, &consumer).await.unwrap(),
            None
        );
    }
);

fn serve_at(config: &std::path::PathBuf, addr: SocketAddr) -> Child {
    rapport(config)
        .args(["serve", "--addr", &addr.to_string()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap()
}

backend_test!(
    async fn three_processes_share_webhooks_and_the_indexer_and_one_killed_loses_nothing(
        app: TestApp,
    ) {
        let key = app.key(Role::Admin).await;
        let path = webhook_path(&app, &key).await;
        // One data directory (the SQLite file, the embedded index): one index, so one
        // indexer at a time; the scheduler has nothing to pull.
        // (The file sets a two-second indexer lease.)
        let config = config_file(&app, "tick_ms = 200\n");
        let mut processes: Vec<(Child, String)> = (0..3)
            .map(|_| {
                let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
                (serve_at(&config, addr), format!("http://{addr}"))
            })
            .collect();
        let client = reqwest::Client::new();
        for (_, base) in &processes {
            let base = base.clone();
            let client = client.clone();
            eventually("the process answers", 60, move || {
                let client = client.clone();
                let base = base.clone();
                async move { client.get(format!("{base}/readyz")).send().await.is_ok() }
            })
            .await;
        }
        let consumer = app.app.search_consumer.clone();
        let holder = || async { event::lease_holder(&app.app.db, &consumer).await.unwrap() };
        eventually("an indexer holds the lease", 30, || async {
            holder().await.is_some()
        })
        .await;

        // Deliveries go round the processes, four at a time; halfway, the process that
        // indexes is killed (SIGKILL: no graceful stop). A delivery it did not answer is
        // sent again to the next process, as a webhook sender retries.
        let total = 240;
        let mut alive = vec![true; processes.len()];
        let mut killed = None;
        let mut next = 0;
        let mut answered = vec![false; total];
        for round in 0..total / 4 {
            if round == total / 8 {
                // A two-second lease on a loaded machine may lapse between renewals (the
                // next renewal or another process takes it again): wait for a holder.
                eventually("an indexer holds the lease", 30, || async {
                    holder().await.is_some()
                })
                .await;
                let owner = holder().await.expect("an indexer holds the lease");
                let victim = processes
                    .iter()
                    .position(|(child, _)| owner.starts_with(&format!("pid{}-", child.id())))
                    .expect("the lease holder is one of the processes");
                processes[victim].0.kill().unwrap();
                processes[victim].0.wait().unwrap();
                alive[victim] = false;
                killed = Some(victim);
            }
            let mut batch = Vec::new();
            for n in round * 4..round * 4 + 4 {
                while !alive[next % processes.len()] {
                    next += 1;
                }
                batch.push((n, processes[next % processes.len()].1.clone()));
                next += 1;
            }
            let sent = futures_util::future::join_all(batch.iter().map(|(n, base)| {
                let client = client.clone();
                let path = path.clone();
                async move { deliver(&client, base, &path, *n).await.is_some() }
            }))
            .await;
            for ((n, _), ok) in batch.into_iter().zip(sent) {
                answered[n] = ok;
            }
        }
        let survivor = processes
            .iter()
            .zip(&alive)
            .find(|(_, alive)| **alive)
            .map(|((_, base), _)| base.clone())
            .unwrap();
        for n in (0..total).filter(|n| !answered[*n]) {
            deliver(&client, &survivor, &path, n)
                .await
                .expect("a surviving process answers");
        }
        assert!(killed.is_some());

        // Every item once, and another process took the index over and caught up.
        assert_eq!(interactions(&app, &key).await, total as u64);
        eventually("another indexer takes over and catches up", 60, || async {
            holder().await.is_some() && indexer::lag(&app.app.db, &consumer).await.unwrap() == 0
        })
        .await;
        let owner = holder().await.unwrap();
        let victim = killed.unwrap();
        let indexing = processes
            .iter()
            .position(|(child, _)| owner.starts_with(&format!("pid{}-", child.id())))
            .expect("the new holder is one of the processes");
        assert_ne!(indexing, victim);
        // Searching through any live process finds every item, each once: the indexing
        // one, and the one standing by, which follows its commits.
        for (n, (_, base)) in processes.iter().enumerate().filter(|(n, _)| alive[*n]) {
            let search = || async {
                client
                    .post(format!("{base}/graphql"))
                    .header("authorization", format!("Bearer {key}"))
                    .json(&json!({ "query": "{ search(query: \"scaleword\", first: 1) { estimatedTotal } }" }))
                    .send()
                    .await
                    .unwrap()
                    .json::<Value>()
                    .await
                    .unwrap()["data"]["search"]["estimatedTotal"]
                    .as_u64()
            };
            let what = format!("process {n} (indexing: {}) finds every item", n == indexing);
            eventually(&what, 10, || async { search().await == Some(total as u64) }).await;
        }
        for ((child, _), alive) in processes.iter_mut().zip(&alive) {
            if *alive {
                assert!(terminate(child).success());
            }
        }
    }
);

backend_test!(
    async fn concurrent_deliveries_and_their_replays_are_each_stored_once_and_answered_once_as_new(
        app: TestApp,
    ) {
        // Deliveries to one source arrive together and are gathered into batches: each
        // still gets its own answer, and a replay racing its original is the duplicate.
        let key = app.key(Role::Admin).await;
        let path = webhook_path(&app, &key).await;
        let base = format!("http://{}", app.addr);
        let answers = futures_util::future::join_all(
            (0..120).map(|n| deliver(&app.client, &base, &path, n % 60)),
        )
        .await;
        let mut new = std::collections::HashMap::new();
        let mut duplicates = 0;
        for (n, answer) in answers.into_iter().enumerate() {
            let answer = answer.expect("answered");
            if answer["duplicate"] == true {
                assert_eq!(answer["interactionId"], Value::Null, "{answer}");
                duplicates += 1;
            } else {
                let id = answer["interactionId"].as_str().unwrap().to_owned();
                assert!(id.starts_with("int_"), "{answer}");
                assert!(
                    new.insert(n % 60, id).is_none(),
                    "item {} answered new twice",
                    n % 60
                );
            }
        }
        assert_eq!((new.len(), duplicates), (60, 60));
        let distinct: std::collections::HashSet<&String> = new.values().collect();
        assert_eq!(distinct.len(), 60, "one interaction per item");
        assert_eq!(interactions(&app, &key).await, 60);
        // Each answer names the interaction stored for its item.
        for (n, id) in &new {
            let node = app
                .gql(
                    &key,
                    "query($id: ID!) { node(id: $id) { ... on Interaction { externalId } } }",
                    json!({ "id": id }),
                )
                .await;
            assert_eq!(node["node"]["externalId"], format!("msg_{n}"), "{node}");
        }
    }
);
