//! `rapport bench`: a load benchmark of the GraphQL API over real HTTP. It seeds a fresh
//! workspace, starts the server in-process on a loopback port, runs each scenario with a
//! fixed number of requests and concurrency, checks every response body (no errors, the
//! expected shape), and reports latency percentiles and throughput. Numbers go to
//! `BENCHMARKS.md`, never into test assertions. [`ingest`] and [`search`] measure the
//! ingestion pipeline (beside its plain INSERT reference) and the search backend the same
//! way, [`compare`] the 360 view and a list beside a reference server (PostGraphile 5,
//! `bench/peers/`), [`live`] the delay from a commit to a subscriber's socket, [`scale`] several `rapport serve` processes over one database (one
//! killed halfway); [`report`] prints the tables.
//! Only the command line (`rapport bench`) and its tests use this module: nothing on the
//! request path depends on it.

mod cpu;
pub mod dedupe;
mod ingest;
mod live;
mod peer;
pub mod report;
mod scale;
mod search;

pub use cpu::ServerCpu;
pub use ingest::{ingest, IngestBenchReport, IngestSplit};
pub use live::{live, LiveBenchReport, LiveOptions};
pub use peer::{compare, CompareOptions, CompareReport, CompareRow, Peer, Scenario};
pub use scale::{scale, ScaleOptions, ScaleReport};
pub use search::{search, SearchBenchReport};

use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use serde_json::{json, Value};

use crate::domain::{self, Role};
use crate::App;

/// What to measure.
#[derive(Clone, Debug)]
pub struct BenchOptions {
    pub customers: usize,
    pub interactions_per_customer: usize,
    pub requests: usize,
    pub concurrency: usize,
}

/// The figures of one scenario.
#[derive(Debug)]
pub struct ScenarioReport {
    pub name: &'static str,
    pub requests: usize,
    pub p50: Duration,
    pub p95: Duration,
    pub p99: Duration,
    pub per_second: f64,
}

const CUSTOMER_360: &str = "query($id: ID!) { customer(id: $id) {
  id displayName lifecycleStage customAttributes
  contactPoints { kind value } identities { channel handle } organization { name } tags { name }
  timeline(first: 20) { totalCount edges { node { channel kind direction text occurredAt } } }
  conversations { status interactions(first: 3) { totalCount edges { node { text } } } }
  deals { title amount stage } notes { body }
  metrics { interactionCount openConversations interactionsByChannel { channel count } } } }";

const CUSTOMERS_PAGE: &str = "query($after: String) { customers(first: 50, after: $after, orderBy: {field: LAST_SEEN_AT}) {
  totalCount pageInfo { endCursor } edges { node { id displayName identities { channel } tags { name }
  metrics { interactionCount } timeline(first: 5) { edges { node { text } } } } } } }";

const CREATE: &str = "mutation($input: CreateCustomerInput!) { createCustomer(input: $input) { customer { id contactPoints { value } } } }";

/// Seeds a workspace `bench-…` in `app`'s database, serves it on loopback, runs the
/// scenarios and deletes the workspace again.
pub async fn run(app: App, options: BenchOptions) -> anyhow::Result<Vec<ScenarioReport>> {
    let slug = format!("bench-{}", uuid::Uuid::now_v7().simple());
    let workspace = domain::workspace::ensure(&app.db, &slug).await?;
    let started = Instant::now();
    crate::demo::seed_uniform(
        &app.db,
        workspace.id,
        options.customers,
        3,
        options.interactions_per_customer,
    )
    .await?;
    // Measure steady state: planner statistics as a running database has them (on
    // PostgreSQL a fresh bulk load has none until autovacuum analyzes it).
    domain::bulk::analyze(&app.db).await?;
    eprintln!(
        "seeded {} customers with {} interactions each in {:.1} s",
        options.customers,
        options.interactions_per_customer,
        started.elapsed().as_secs_f64()
    );
    let (_, key) =
        domain::workspace::create_key(&app.db, workspace.id, Role::Admin, "bench").await?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/graphql", listener.local_addr()?);
    let server = tokio::spawn(crate::http::serve(
        app.clone(),
        listener,
        std::future::pending(),
    ));
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(options.concurrency)
        .build()?;
    let bench = Bench {
        client,
        url,
        key,
        options: options.clone(),
    };

    let ids = bench.customer_ids().await?;
    let mut reports = Vec::new();
    reports.push(
        bench
            .scenario(
                "customer 360 view",
                |n| (CUSTOMER_360, json!({ "id": ids[n % ids.len()] })),
                |data| {
                    let customer = &data["customer"];
                    let ok = customer["timeline"]["edges"]
                        .as_array()
                        .is_some_and(|edges| !edges.is_empty())
                        && customer["identities"]
                            .as_array()
                            .is_some_and(|identities| identities.len() == 3);
                    ok.then_some(())
                        .context("the 360 view lacks its timeline or identities")
                },
            )
            .await?,
    );
    reports.push(
        bench
            .scenario(
                "customers page of 50 with relations",
                |_| (CUSTOMERS_PAGE, json!({})),
                |data| {
                    let edges = data["customers"]["edges"].as_array().map_or(0, Vec::len);
                    (edges == 50.min(options.customers))
                        .then_some(())
                        .with_context(|| format!("the page has {edges} customers"))
                },
            )
            .await?,
    );
    let run_id = uuid::Uuid::now_v7().simple().to_string();
    reports.push(
        bench
            .scenario(
                "create customer with e-mail",
                |n| {
                    let input = json!({ "displayName": format!("Bench {n}"), "contactPoints": [{ "kind": "EMAIL", "value": format!("b{n}-{run_id}@bench.example") }] });
                    (CREATE, json!({ "input": input }))
                },
                |data| {
                    let created = data["createCustomer"]["customer"]["contactPoints"][0]["value"].as_str().is_some();
                    created.then_some(()).context("the created customer lacks its e-mail")
                },
            )
            .await?,
    );
    server.abort();
    domain::workspace::delete(&app.db, workspace.id).await?;
    Ok(reports)
}

struct Bench {
    client: reqwest::Client,
    url: String,
    key: String,
    options: BenchOptions,
}

/// POSTs one GraphQL request with `key`; its `data`, or an error naming the status and
/// body when the request failed or answered with errors.
async fn graphql(
    client: &reqwest::Client,
    url: &str,
    key: &str,
    query: &str,
    variables: &Value,
) -> anyhow::Result<Value> {
    let response = client
        .post(url)
        .bearer_auth(key)
        .json(&json!({ "query": query, "variables": variables }))
        .send()
        .await?;
    let status = response.status();
    let body: Value = response.json().await?;
    if !status.is_success() || body.get("errors").is_some() {
        bail!("request failed with {status}: {body}");
    }
    Ok(body["data"].clone())
}

impl Bench {
    async fn post(&self, query: &str, variables: Value) -> anyhow::Result<Value> {
        graphql(&self.client, &self.url, &self.key, query, &variables).await
    }

    async fn customer_ids(&self) -> anyhow::Result<Vec<String>> {
        let mut ids = Vec::new();
        let mut after = Value::Null;
        loop {
            let data = self
                .post("query($after: String) { customers(first: 100, after: $after) { pageInfo { hasNextPage endCursor } edges { node { id } } } }", json!({ "after": after }))
                .await?;
            for edge in data["customers"]["edges"].as_array().into_iter().flatten() {
                ids.push(edge["node"]["id"].as_str().unwrap_or_default().to_owned());
            }
            if data["customers"]["pageInfo"]["hasNextPage"] != json!(true) {
                break;
            }
            after = data["customers"]["pageInfo"]["endCursor"].clone();
        }
        if ids.is_empty() {
            bail!("no customers were seeded");
        }
        Ok(ids)
    }

    /// Runs `requests` requests, `concurrency` at a time; every body must pass `check`.
    async fn scenario(
        &self,
        name: &'static str,
        request: impl Fn(usize) -> (&'static str, Value),
        check: impl Fn(&Value) -> anyhow::Result<()>,
    ) -> anyhow::Result<ScenarioReport> {
        use futures_util::stream::{self, StreamExt};
        let started = Instant::now();
        let check = &check;
        let mut latencies: Vec<Duration> = stream::iter(0..self.options.requests)
            .map(|n| {
                let (query, variables) = request(n);
                async move {
                    let sent = Instant::now();
                    let data = self.post(query, variables).await?;
                    let latency = sent.elapsed();
                    check(&data).with_context(|| format!("{name}: request {n} answered {data}"))?;
                    anyhow::Ok(latency)
                }
            })
            .buffer_unordered(self.options.concurrency)
            .collect::<Vec<_>>()
            .await
            .into_iter()
            .collect::<anyhow::Result<_>>()?;
        let elapsed = started.elapsed();
        latencies.sort();
        let at = |q: f64| {
            latencies[((latencies.len() as f64 * q).ceil() as usize).clamp(1, latencies.len()) - 1]
        };
        let report = ScenarioReport {
            name,
            requests: latencies.len(),
            p50: at(0.50),
            p95: at(0.95),
            p99: at(0.99),
            per_second: latencies.len() as f64 / elapsed.as_secs_f64(),
        };
        eprintln!("{}", report.line());
        Ok(report)
    }
}
