//! The search benchmark: a uniform workspace indexed from the event log, then typical
//! searches through GraphQL over loopback HTTP (as a client sees them: the search, the
//! rows, the highlights), then the index lag while items arrive at a steady rate.

use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use serde_json::{json, Value};

use super::ScenarioReport;
use crate::domain::{self, Role};
use crate::App;

/// The figures of the search benchmark.
#[derive(Debug)]
pub struct SearchBenchReport {
    pub backend: &'static str,
    pub interactions: usize,
    /// Events through the indexer (database → documents → index) per second.
    pub events_per_second: f64,
    pub documents_per_second: f64,
    /// One row per search, through GraphQL.
    pub scenarios: Vec<ScenarioReport>,
    /// The index lag while items are ingested at [`LAG_ITEMS_PER_SECOND`]: `requests` is
    /// the number of batches, the percentiles are the time from a batch's commit to its
    /// items being searchable, `per_second` the ingestion rate reached.
    pub index_lag: ScenarioReport,
}

/// The steady ingestion rate of the index lag measurement.
pub const LAG_ITEMS_PER_SECOND: usize = 1_000;

const SEARCH: &str = "query($q: String!, $filter: SearchFilterInput, $sort: SearchSort) {
  search(query: $q, filter: $filter, sort: $sort, first: 20) {
    estimatedTotal
    edges { cursor node { highlights { field snippet } interaction { id text channel occurredAt } } } } }";

const SEARCH_WITH_FACETS: &str = "query($q: String!) {
  search(query: $q, first: 20) {
    estimatedTotal
    facets { channel { value count } kind { value count } sentiment { value count } language { value count } }
    edges { cursor node { highlights { field snippet } interaction { id text channel occurredAt } } } } }";

/// Seeds `customers` × 20 interactions in a scratch workspace, indexes them through the
/// indexer from the event log, runs typical searches `requests` times each through
/// GraphQL (one client, every answer checked), measures the index lag under steady
/// ingestion (`customers / 2,500` seconds, 10 to 20: at least 100 batches), and deletes the workspace.
pub async fn search(
    app: &App,
    customers: usize,
    requests: usize,
) -> anyhow::Result<SearchBenchReport> {
    let slug = format!("bench-search-{}", uuid::Uuid::now_v7().simple());
    let workspace = domain::workspace::ensure(&app.db, &slug).await?;
    let per_customer = 20;
    crate::demo::seed_uniform(&app.db, workspace.id, customers, 2, per_customer).await?;
    let interactions = customers * per_customer;
    let indexer = crate::search::indexer::Indexer {
        batch: 5_000,
        ..crate::search::indexer::Indexer::new(app)
    };
    let started = Instant::now();
    let events = indexer.catch_up().await?;
    let elapsed = started.elapsed().as_secs_f64();
    eprintln!("indexed {events} events ({interactions} interactions) in {elapsed:.1} s");

    let (_, key) =
        domain::workspace::create_key(&app.db, workspace.id, Role::Admin, "bench").await?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/graphql", listener.local_addr()?);
    let server = tokio::spawn(crate::http::serve(
        app.clone(),
        listener,
        std::future::pending(),
    ));
    let client = Client {
        http: reqwest::Client::new(),
        url,
        key,
    };
    let result = async {
        let scenarios = searches(&client, customers, interactions, requests).await?;
        let seconds = (customers / 2_500).clamp(10, 20);
        let index_lag = index_lag(app, &client, workspace.id, seconds).await?;
        anyhow::Ok((scenarios, index_lag))
    }
    .await;
    server.abort();
    // Leave nothing behind: the workspace's rows, then (through the indexer) its documents.
    // In slices: Meilisearch deletes by a filter naming the customers, and one naming
    // 50,000 of them did not finish within a write's minute.
    let customer_ids = domain::bulk::customer_ids(&app.db, workspace.id).await?;
    for slice in customer_ids.chunks(1_000) {
        app.search.delete_customers(slice.to_vec()).await?;
        app.search.delete_interactions_of(slice.to_vec()).await?;
    }
    domain::workspace::delete(&app.db, workspace.id).await?;
    let (scenarios, index_lag) = result?;
    Ok(SearchBenchReport {
        backend: app.search.backend(),
        interactions,
        events_per_second: events as f64 / elapsed,
        documents_per_second: interactions as f64 / elapsed,
        scenarios,
        index_lag,
    })
}

struct Client {
    http: reqwest::Client,
    url: String,
    key: String,
}

impl Client {
    async fn post(&self, query: &str, variables: &Value) -> anyhow::Result<Value> {
        super::graphql(&self.http, &self.url, &self.key, query, variables).await
    }
}

/// A search scenario: its document, variables, and what its answer must show.
struct Case {
    name: &'static str,
    query: &'static str,
    variables: Value,
    /// The least `estimatedTotal`.
    at_least: u64,
    check: fn(&Value) -> bool,
}

fn edges(data: &Value) -> &[Value] {
    data["search"]["edges"]
        .as_array()
        .map_or(&[], Vec::as_slice)
}

async fn searches(
    client: &Client,
    customers: usize,
    interactions: usize,
    requests: usize,
) -> anyhow::Result<Vec<ScenarioReport>> {
    let last = customers - 1;
    let cases = [
        Case {
            name: "one word, 20 best of all",
            query: SEARCH,
            variables: json!({ "q": "message" }),
            at_least: interactions as u64,
            check: |data| edges(data).len() == 20,
        },
        Case {
            name: "two words with a typo",
            query: SEARCH,
            variables: json!({ "q": format!("mesage custmer {last}") }),
            at_least: 20,
            check: |data| !edges(data).is_empty(),
        },
        Case {
            name: "prefix as you type",
            query: SEARCH,
            variables: json!({ "q": format!("message 7 from customer {}", last / 10) }),
            at_least: 1,
            check: |data| !edges(data).is_empty(),
        },
        Case {
            name: "word + channel filter, newest first",
            query: SEARCH,
            variables: json!({ "q": "message", "filter": { "channels": ["BLUESKY"] }, "sort": "NEWEST" }),
            at_least: 1,
            check: |data| {
                let hits = edges(data);
                let times: Vec<&str> = hits
                    .iter()
                    .filter_map(|e| e["node"]["interaction"]["occurredAt"].as_str())
                    .collect();
                !hits.is_empty()
                    && hits
                        .iter()
                        .all(|e| e["node"]["interaction"]["channel"] == "BLUESKY")
                    && times.len() == hits.len()
                    && times.windows(2).all(|pair| pair[0] >= pair[1])
            },
        },
        Case {
            name: "word + facets",
            query: SEARCH_WITH_FACETS,
            variables: json!({ "q": "customer" }),
            at_least: interactions as u64,
            check: |data| {
                let channels = &data["search"]["facets"]["channel"];
                let counted: u64 = channels
                    .as_array()
                    .map(|list| list.iter().filter_map(|c| c["count"].as_u64()).sum())
                    .unwrap_or(0);
                counted
                    == data["search"]["estimatedTotal"]
                        .as_u64()
                        .unwrap_or(u64::MAX)
                    && !edges(data).is_empty()
            },
        },
    ];
    let mut reports = Vec::new();
    for case in cases {
        // One untimed request first: the first search of a kind pays for page faults.
        client.post(case.query, &case.variables).await?;
        let mut latencies = Vec::with_capacity(requests);
        let started = Instant::now();
        for _ in 0..requests.max(1) {
            let one = Instant::now();
            let data = client.post(case.query, &case.variables).await?;
            latencies.push(one.elapsed());
            let total = data["search"]["estimatedTotal"].as_u64().unwrap_or(0);
            if total < case.at_least || !(case.check)(&data) {
                bail!("search `{}` answered {data}", case.name);
            }
        }
        let report = summarise(case.name, latencies, started.elapsed());
        eprintln!("{}", report.line());
        reports.push(report);
    }
    Ok(reports)
}

fn summarise(
    name: &'static str,
    mut latencies: Vec<Duration>,
    elapsed: Duration,
) -> ScenarioReport {
    latencies.sort();
    let at = |q: f64| {
        latencies[((latencies.len() as f64 * q).ceil() as usize).clamp(1, latencies.len()) - 1]
    };
    ScenarioReport {
        name,
        requests: latencies.len(),
        p50: at(0.50),
        p95: at(0.95),
        p99: at(0.99),
        per_second: latencies.len() as f64 / elapsed.as_secs_f64(),
    }
}

/// Runs the indexer as the server does while a webhook source of `workspace` receives
/// [`LAG_ITEMS_PER_SECOND`] items a second (a batch every 100 ms) for `seconds`; each
/// batch's lag is the time from its commit until the indexer's offset (moved only once
/// the documents are searchable) passes its last event. Then checks every item is found
/// through GraphQL.
async fn index_lag(
    app: &App,
    client: &Client,
    workspace: entity::WorkspaceId,
    seconds: usize,
) -> anyhow::Result<ScenarioReport> {
    let caller = domain::Caller::owner_without_key(workspace, "bench");
    let source = domain::source::create(
        &app.db,
        &caller,
        domain::source::NewSource {
            channel: connectors::Channel::Webhook,
            name: "bench lag".into(),
            config: json!({ "secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw" }),
            schedule_secs: None,
        },
    )
    .await?;
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let indexer = tokio::spawn(crate::search::indexer::Indexer::new(app).run(stopped));
    let per_batch = LAG_ITEMS_PER_SECOND / 10;
    let batches = seconds * 10;
    let base = chrono::Utc::now();
    // The offset is watched by a task of its own, every 5 ms: watched between two
    // ingestions, a batch's lag would also count the next batch's ingestion.
    let pending: std::sync::Arc<std::sync::Mutex<Vec<(i64, Instant)>>> = Default::default();
    let (done, mut finished) = tokio::sync::watch::channel(false);
    let watcher = tokio::spawn({
        let db = app.db.clone();
        let consumer = app.search_consumer.clone();
        let pending = pending.clone();
        async move {
            let mut lags = Vec::with_capacity(batches);
            loop {
                let last = *finished.borrow_and_update();
                let offset = crate::search::indexer::offset(&db, &consumer).await?;
                let now = Instant::now();
                let drained = {
                    let mut pending = pending.lock().expect("never poisoned");
                    pending.retain(|(seq, committed)| {
                        if *seq <= offset {
                            lags.push(now - *committed);
                            false
                        } else {
                            true
                        }
                    });
                    pending.is_empty()
                };
                if last && drained {
                    return anyhow::Ok(lags);
                }
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_millis(5)) => {}
                    _ = finished.changed() => {}
                }
            }
        }
    });
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let started = Instant::now();
    for sent in 0..batches {
        tick.tick().await;
        let items: Vec<connectors::InboundItem> = (0..per_batch)
            .map(|n| lag_item(sent * per_batch + n, base))
            .collect();
        crate::ingest::ingest(&app.db, &source, &items, Some(&format!("lag-{sent}")), None).await?;
        let committed = Instant::now();
        let seq = crate::search::indexer::head(&app.db).await?;
        pending
            .lock()
            .expect("never poisoned")
            .push((seq, committed));
    }
    done.send(true).ok();
    let lags = match tokio::time::timeout(Duration::from_secs(60), watcher).await {
        Ok(joined) => joined.context("the lag watcher failed")??,
        Err(_) => bail!("the indexer did not catch up with the ingested items"),
    };
    let elapsed = started.elapsed();
    stop.send(true).ok();
    indexer.await.context("the indexer task failed")?;
    let data = client.post(SEARCH, &json!({ "q": "lagprobe" })).await?;
    let found = data["search"]["estimatedTotal"].as_u64().unwrap_or(0);
    let items = batches * per_batch;
    if found != items as u64 {
        bail!("{found} of {items} items ingested during the lag measurement are searchable");
    }
    let mut report = summarise("index lag at 1,000 items/s", lags, elapsed);
    report.per_second = items as f64 / elapsed.as_secs_f64();
    eprintln!("{}", report.line());
    Ok(report)
}

/// One webhook-style item of the lag measurement (a new author for every fifth item).
fn lag_item(n: usize, base: chrono::DateTime<chrono::Utc>) -> connectors::InboundItem {
    let author = n / 5;
    connectors::InboundItem {
        external_id: format!("lag-{n}"),
        author: connectors::Author {
            platform_id: format!("https://social.example/users/lag{author}"),
            handle: Some(format!("@lag{author}@social.example")),
            display_name: Some(format!("Lag {author}")),
            ..connectors::Author::default()
        },
        outbound: false,
        kind: "mention".into(),
        subject: None,
        text: format!("lagprobe item {n}: is the export searchable yet?"),
        html: None,
        url: None,
        language: None,
        occurred_at: base + chrono::Duration::milliseconds(n as i64),
        thread_key: None,
        in_reply_to: None,
        raw: json!({ "id": n }),
    }
}
