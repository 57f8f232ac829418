//! `rapport bench`: a load benchmark of the GraphQL API over real HTTP. It seeds a fresh
//! workspace, starts the server in-process on a loopback port, runs each scenario with a
//! fixed number of requests and concurrency, checks every response body (no errors, the
//! expected shape), and reports latency percentiles and throughput. Numbers go to
//! `BENCHMARKS.md`, never into test assertions.

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
    domain::demo::seed_uniform(
        &app.db,
        workspace.id,
        options.customers,
        3,
        options.interactions_per_customer,
    )
    .await?;
    // Measure steady state: planner statistics as a running database has them (on
    // PostgreSQL a fresh bulk load has none until autovacuum analyzes it).
    domain::workspace::analyze(&app.db).await?;
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

impl Bench {
    async fn post(&self, query: &str, variables: Value) -> anyhow::Result<Value> {
        let response = self
            .client
            .post(&self.url)
            .bearer_auth(&self.key)
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

impl ScenarioReport {
    /// One Markdown table row.
    pub fn line(&self) -> String {
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        format!(
            "| {} | {} | {:.1} | {:.1} | {:.1} | {:.0} |",
            self.name,
            self.requests,
            ms(self.p50),
            ms(self.p95),
            ms(self.p99),
            self.per_second
        )
    }
}

/// The figures of the ingestion benchmark.
#[derive(Debug)]
pub struct IngestBenchReport {
    pub items: usize,
    pub batch: usize,
    /// New items through the whole pipeline (identity, threading, events, cursor).
    pub new_per_second: f64,
    /// The same items pulled again: every one recognised and dropped.
    pub replay_per_second: f64,
    pub customers: u64,
    pub conversations: u64,
}

/// Pushes `items` synthetic mentions (a fifth of the authors new, a third of the items
/// replies) through [`crate::ingest::ingest`] in batches of `batch`, as a connector's pulls
/// would, then the same items again; checks every item is stored exactly once, and deletes
/// the scratch workspace.
pub async fn ingest(app: &App, items: usize, batch: usize) -> anyhow::Result<IngestBenchReport> {
    let slug = format!("bench-ingest-{}", uuid::Uuid::now_v7().simple());
    let workspace = domain::workspace::ensure(&app.db, &slug).await?;
    let caller = domain::Caller {
        workspace_id: workspace.id,
        role: Role::Owner,
        key_id: uuid::Uuid::nil(),
        key_name: "bench".into(),
    };
    let source = domain::source::create(
        &app.db,
        &caller,
        domain::source::NewSource {
            channel: connectors::Channel::Webhook,
            name: "bench".into(),
            config: json!({ "secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw" }),
            schedule_secs: None,
        },
    )
    .await?;
    let authors = (items / 5).max(1);
    let base = chrono::Utc::now() - chrono::Duration::days(30);
    let all: Vec<connectors::InboundItem> = (0..items)
        .map(|n| {
            let author = n % authors;
            connectors::InboundItem {
                external_id: format!("item-{n}"),
                author: connectors::Author {
                    platform_id: format!("https://social.example/users/u{author}"),
                    handle: Some(format!("@u{author}@social.example")),
                    display_name: Some(format!("User {author}")),
                    email: (author % 3 == 0).then(|| format!("u{author}@mail.example")),
                    ..connectors::Author::default()
                },
                outbound: false,
                kind: "mention".into(),
                subject: None,
                text: format!(
                    "@acme item {n}: the export {} since the update, can you help? 🙏",
                    if n % 2 == 0 { "is slow" } else { "works great" }
                ),
                html: None,
                url: Some(format!("https://social.example/@u{author}/{n}")),
                language: None,
                occurred_at: base + chrono::Duration::seconds(n as i64),
                thread_key: None,
                in_reply_to: (n % 3 == 2).then(|| format!("item-{}", n - 1)),
                raw: json!({ "id": n }),
            }
        })
        .collect();
    let run = |label: &'static str| {
        let all = &all;
        let source = &source;
        async move {
            let started = Instant::now();
            let mut stored = 0;
            for (index, chunk) in all.chunks(batch.max(1)).enumerate() {
                let cursor = format!("{label}-{index}");
                let report =
                    crate::ingest::ingest(&app.db, source, chunk, Some(&cursor), None).await?;
                stored += report.new.len();
            }
            anyhow::Ok((stored, items as f64 / started.elapsed().as_secs_f64()))
        }
    };
    let (stored, new_per_second) = run("first").await?;
    if stored != items {
        bail!("{stored} of {items} items were stored");
    }
    let (again, replay_per_second) = run("replay").await?;
    if again != 0 {
        bail!("the replay stored {again} items twice");
    }
    let domain::workspace::RowCounts {
        interactions: total,
        customers,
        conversations,
    } = domain::workspace::row_counts(&app.db, workspace.id).await?;
    if total != items as u64 {
        bail!("{total} interactions stored for {items} items");
    }
    domain::workspace::delete(&app.db, workspace.id).await?;
    Ok(IngestBenchReport {
        items,
        batch,
        new_per_second,
        replay_per_second,
        customers,
        conversations,
    })
}

/// The figures of the search benchmark.
#[derive(Debug)]
pub struct SearchBenchReport {
    pub backend: &'static str,
    pub interactions: usize,
    /// Events through the indexer (database → documents → index) per second.
    pub events_per_second: f64,
    pub documents_per_second: f64,
    pub scenarios: Vec<ScenarioReport>,
}

/// Seeds `customers` × 20 interactions in a scratch workspace, indexes them through the
/// indexer from the event log, then runs typical searches `requests` times each against
/// the app's search backend, checking every answer, and deletes the workspace.
pub async fn search(
    app: &App,
    customers: usize,
    requests: usize,
) -> anyhow::Result<SearchBenchReport> {
    use crate::search::{InteractionQuery, SearchFilter, SearchSort};
    let slug = format!("bench-search-{}", uuid::Uuid::now_v7().simple());
    let workspace = domain::workspace::ensure(&app.db, &slug).await?;
    let per_customer = 20;
    domain::demo::seed_uniform(&app.db, workspace.id, customers, 2, per_customer).await?;
    let interactions = customers * per_customer;
    let indexer = crate::search::indexer::Indexer {
        batch: 5_000,
        ..crate::search::indexer::Indexer::new(app)
    };
    let started = Instant::now();
    let events = indexer.catch_up().await?;
    let elapsed = started.elapsed().as_secs_f64();
    let base = |text: &str| InteractionQuery {
        workspace_id: workspace.id,
        text: text.to_owned(),
        filter: SearchFilter::default(),
        sort: SearchSort::Relevance,
        offset: 0,
        limit: 20,
        facets: false,
    };
    let last = customers - 1;
    let scenarios: Vec<(&'static str, InteractionQuery, usize)> = vec![
        ("one word, 20 best of all", base("message"), interactions),
        (
            "two words with a typo",
            base(&format!("mesage custmer {last}")),
            per_customer,
        ),
        (
            "prefix as you type",
            base(&format!("message 7 from customer {}", last / 10)),
            11,
        ),
        (
            "word + channel filter, newest first",
            InteractionQuery {
                filter: SearchFilter {
                    channels: vec!["bluesky".into()],
                    ..SearchFilter::default()
                },
                sort: SearchSort::Newest,
                ..base("message")
            },
            1,
        ),
        (
            "word + facets",
            InteractionQuery {
                facets: true,
                ..base("customer")
            },
            interactions,
        ),
    ];
    let mut reports = Vec::new();
    for (name, query, at_least) in scenarios {
        let mut latencies = Vec::with_capacity(requests);
        let started = Instant::now();
        for _ in 0..requests.max(1) {
            let one = Instant::now();
            let hits = app.search.search_interactions(&query).await?;
            latencies.push(one.elapsed());
            if (hits.estimated_total as usize) < at_least.min(1) || hits.ids.is_empty() {
                bail!("search `{name}` found nothing");
            }
            if query.facets && hits.facets.as_ref().is_none_or(|f| f.channel.is_empty()) {
                bail!("search `{name}` returned no facets");
            }
        }
        let elapsed = started.elapsed();
        latencies.sort();
        let at =
            |q: f64| latencies[((latencies.len() as f64 * q) as usize).min(latencies.len() - 1)];
        reports.push(ScenarioReport {
            name,
            requests: latencies.len(),
            p50: at(0.50),
            p95: at(0.95),
            p99: at(0.99),
            per_second: latencies.len() as f64 / elapsed.as_secs_f64(),
        });
    }
    // Leave nothing behind: the workspace's rows, then (through the indexer) its documents.
    let customer_ids = domain::workspace::customer_ids(&app.db, workspace.id).await?;
    app.search.delete_customers(customer_ids.clone()).await?;
    app.search.delete_interactions_of(customer_ids).await?;
    domain::workspace::delete(&app.db, workspace.id).await?;
    Ok(SearchBenchReport {
        backend: app.search.backend(),
        interactions,
        events_per_second: events as f64 / elapsed,
        documents_per_second: interactions as f64 / elapsed,
        scenarios: reports,
    })
}
