//! The search benchmark: a uniform workspace indexed from the event log, then typical
//! searches against the app's search backend.

use std::time::Instant;

use anyhow::bail;

use super::ScenarioReport;
use crate::{domain, App};

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
    crate::demo::seed_uniform(&app.db, workspace.id, customers, 2, per_customer).await?;
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
    let customer_ids = domain::bulk::customer_ids(&app.db, workspace.id).await?;
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
