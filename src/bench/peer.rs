//! Rapport beside a reference server over the same PostgreSQL rows: the customer 360 view
//! and a customer list, the same data asked for in each server's own schema, sent by the
//! same load generator at several client counts. The reference is PostGraphile 5
//! (`bench/peers/`, started here or already running at a URL); without one, Rapport runs
//! alone (on SQLite, say) and the table has no ratio.
//!
//! Every body of both servers is checked (no `errors`, the expected number of identities
//! and interactions, 50 customers on the page), and before anything is timed a sample of
//! customers is fetched from both and their answers compared field by field, so the two
//! servers are known to do the same work. Rounds alternate the servers so that the noise
//! of a shared machine falls on both alike.

use std::io::BufRead as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use serde_json::{json, Value};

use super::cpu::{own_cpu, process_cpu, Server, ServerCpu, ServerReading};
use super::ScenarioReport;
use crate::domain::{self, Role};
use crate::App;

/// What to compare.
#[derive(Clone, Debug)]
pub struct CompareOptions {
    pub customers: usize,
    pub interactions_per_customer: usize,
    /// Timed requests per server, scenario and client count (split over the rounds).
    pub requests: usize,
    /// Requests in flight at once, one run of every scenario for each.
    pub clients: Vec<usize>,
    /// The scenarios to time, in this order (both when empty).
    pub scenarios: Vec<Scenario>,
    /// Alternations of the two servers per scenario and client count.
    pub rounds: usize,
    /// Customers whose 360 view both servers must answer alike (besides the list page).
    pub sample: usize,
    pub peer: Option<Peer>,
    /// A Rapport already serving this database (`rapport serve`, e.g. under a profiler),
    /// asked instead of one started in this process.
    pub rapport_url: Option<String>,
}

/// The reference server.
#[derive(Clone, Debug)]
pub enum Peer {
    /// PostGraphile 5 already serving this database at this GraphQL URL.
    Url(String),
    /// PostGraphile 5 started from this directory (`bench/peers`, installed with `npm ci`).
    PostGraphile(PathBuf),
}

/// The figures of one scenario at one client count.
#[derive(Debug)]
pub struct CompareRow {
    pub rapport: ScenarioReport,
    pub peer: Option<ScenarioReport>,
    pub clients: usize,
    /// SQL statements Rapport ran per request (its own count, authentication included).
    pub rapport_statements: Option<f64>,
}

/// Everything [`compare`] measured.
#[derive(Debug)]
pub struct CompareReport {
    pub options: CompareOptions,
    pub rows: Vec<CompareRow>,
    /// Customers (plus the list page) answered alike by both servers.
    pub compared: usize,
}

impl CompareRow {
    /// Rapport's throughput over the reference's.
    pub fn ratio(&self) -> Option<f64> {
        self.peer
            .as_ref()
            .map(|peer| self.rapport.per_second / peer.per_second)
    }
}

const RAPPORT_360: &str = "query($id: ID!) { customer(id: $id) {
  id displayName
  contactPoints { kind value } identities { channel handle } organization { name } tags { name }
  timeline(first: 10) { edges { node { channel kind direction text occurredAt } } }
  conversations { status subject lastMessageAt }
  deals { title amount currency stage } notes { body createdAt } } }";

const PEER_360: &str = "query($id: UUID!) { customerByRowId(rowId: $id) {
  rowId displayName
  contactPointsByCustomerId { nodes { kind value } }
  identitiesByCustomerId { nodes { channel handle } }
  organizationByOrganizationId { name }
  customerTagsByCustomerId { nodes { tagByTagId { name } } }
  interactionsByCustomerId(first: 10, orderBy: [OCCURRED_AT_DESC, ROW_ID_DESC]) { nodes { channel kind direction text occurredAt } }
  conversationsByCustomerId(first: 5, orderBy: [LAST_MESSAGE_AT_DESC, ROW_ID_DESC]) { nodes { status subject lastMessageAt } }
  dealsByCustomerId { nodes { title amountMinor currency stage } }
  notesByCustomerId(orderBy: [CREATED_AT_DESC, ROW_ID_DESC]) { nodes { body createdAt } } } }";

const RAPPORT_LIST: &str =
    "{ customers(first: 50, orderBy: {field: LAST_SEEN_AT, direction: DESC}) {
  edges { node { id displayName identities { channel handle }
  timeline(first: 5) { edges { node { text occurredAt } } } } } } }";

const PEER_LIST: &str = "query($workspace: UUID!) {
  allCustomers(first: 50, condition: {workspaceId: $workspace}, orderBy: [LAST_SEEN_AT_DESC, ROW_ID_DESC]) {
  nodes { rowId displayName identitiesByCustomerId { nodes { channel handle } }
  interactionsByCustomerId(first: 5, orderBy: [OCCURRED_AT_DESC, ROW_ID_DESC]) { nodes { text occurredAt } } } } }";

/// Seeds a workspace `bench-compare-…`, serves it (unless `rapport_url`), starts or finds
/// the reference, compares a sample of answers, times both servers, and deletes the
/// workspace again.
pub async fn compare(app: App, options: CompareOptions) -> anyhow::Result<CompareReport> {
    let slug = format!("bench-compare-{}", uuid::Uuid::now_v7().simple());
    let workspace = domain::workspace::ensure(&app.db, &slug).await?;
    let outcome = compare_in(&app, &options, &slug, workspace.id).await;
    domain::workspace::delete(&app.db, workspace.id).await?;
    let (rows, compared) = outcome?;
    Ok(CompareReport {
        options,
        rows,
        compared,
    })
}

async fn compare_in(
    app: &App,
    options: &CompareOptions,
    slug: &str,
    workspace_id: entity::WorkspaceId,
) -> anyhow::Result<(Vec<CompareRow>, usize)> {
    let started = Instant::now();
    crate::demo::seed_uniform(
        &app.db,
        workspace_id,
        options.customers,
        IDENTITIES,
        options.interactions_per_customer,
    )
    .await?;
    domain::bulk::analyze(&app.db).await?;
    eprintln!(
        "compare: seeded {} customers with {} interactions each in {:.1} s",
        options.customers,
        options.interactions_per_customer,
        started.elapsed().as_secs_f64()
    );
    let (_, key) =
        domain::workspace::create_key(&app.db, workspace_id, Role::Admin, "bench").await?;
    let most = options.clients.iter().copied().max().unwrap_or(1);
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(most)
        .build()?;

    let (rapport_url, server) = match &options.rapport_url {
        Some(url) => (url.clone(), None),
        None => {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
            let url = format!("http://{}/graphql", listener.local_addr()?);
            let server = tokio::spawn(crate::http::serve(
                app.clone(),
                listener,
                std::future::pending(),
            ));
            (url, Some(server))
        }
    };
    let _server = AbortOnDrop(server);
    let rapport = Target {
        name: "Rapport",
        url: rapport_url,
        key: Some(key),
    };
    // The process lives as long as this function: dropped, it is killed.
    let mut process = None;
    let peer = match &options.peer {
        None => None,
        Some(peer) => {
            let url = match peer {
                Peer::Url(url) => url.clone(),
                Peer::PostGraphile(dir) => {
                    let started = start_postgraphile(dir, app)?;
                    let url = started.url.clone();
                    process = Some(started);
                    url
                }
            };
            let target = Target {
                name: "PostGraphile",
                url,
                key: None,
            };
            target
                .wait_ready(&client, process.as_mut())
                .await
                .context("the reference server did not answer")?;
            Some(target)
        }
    };

    let ids = rapport_customer_ids(&client, &rapport).await?;
    if ids.len() != options.customers {
        bail!(
            "Rapport lists {} customers, {} were seeded",
            ids.len(),
            options.customers
        );
    }
    let peer_workspace = match &peer {
        Some(peer) => Some(peer_workspace_id(&client, peer, slug).await?),
        None => None,
    };
    let expect = Expect {
        identities: IDENTITIES,
        timeline: options.interactions_per_customer.min(10),
        page: options.customers.min(50),
        page_timeline: options.interactions_per_customer.min(5),
    };

    // Same data from both, checked before anything is timed (and warming both up).
    let mut compared = 0;
    if let (Some(peer), Some(workspace)) = (&peer, &peer_workspace) {
        let step = (ids.len() / options.sample.max(1)).max(1);
        for id in ids.iter().step_by(step).take(options.sample) {
            let ours = rapport_360(
                &rapport
                    .post(&client, RAPPORT_360, json!({ "id": id }))
                    .await?,
            )?;
            let theirs = peer_360(
                &peer
                    .post(&client, PEER_360, json!({ "id": peer_id(id)? }))
                    .await?,
            )?;
            same("the 360 view", id, &ours, &theirs)?;
            compared += 1;
        }
        let ours = rapport_list(&rapport.post(&client, RAPPORT_LIST, json!({})).await?)?;
        let theirs = peer_list(
            &peer
                .post(&client, PEER_LIST, json!({ "workspace": workspace }))
                .await?,
        )?;
        same("the list", "page 1", &ours, &theirs)?;
        compared += 1;
        eprintln!("compare: both servers answered alike for {compared} samples");
    }

    let mut rows = Vec::new();
    let peer_pid = process.as_ref().map(|process| process.child.id());
    let server = Server::of(&app.db).await?;
    let (client, ids, expect) = (&client, &ids[..], &expect);
    let peer_workspace = peer_workspace.as_deref();
    let per_round = (options.requests / options.rounds.max(1)).max(1);
    let warm_up = (per_round / 10).clamp(1, 100);
    let scenarios = if options.scenarios.is_empty() {
        vec![Scenario::View, Scenario::List]
    } else {
        options.scenarios.clone()
    };
    for scenario in scenarios {
        for &clients in &options.clients {
            let clients = clients.max(1);
            let mut rapport_runs = Runs::default();
            let mut peer_runs = Runs::default();
            let mut rapport_statements = Some(0u64);
            for round in 0..options.rounds.max(1) {
                // Alternate who goes first, so neither always runs on a warmer machine.
                let order = if round % 2 == 0 {
                    [true, false]
                } else {
                    [false, true]
                };
                for ours in order {
                    let (target, workspace) = match (ours, &peer) {
                        (true, _) => (&rapport, None),
                        (false, Some(peer)) => (peer, peer_workspace),
                        (false, None) => continue,
                    };
                    let run = |requests, offset| {
                        scenario.run(
                            client, target, ours, ids, workspace, expect, requests, clients, offset,
                        )
                    };
                    if round == 0 {
                        run(warm_up, 7 * per_round).await?;
                    }
                    let before = statements(app, client, &rapport, &options.rapport_url).await;
                    let cpu_before = CpuReading::now(server, peer_pid);
                    let (latencies, elapsed) = run(per_round, round * per_round).await?;
                    let cpu = CpuReading::now(server, peer_pid).since(&cpu_before);
                    let runs = if ours {
                        let after = statements(app, client, &rapport, &options.rapport_url).await;
                        rapport_statements = match (rapport_statements, before, after) {
                            (Some(sum), Some(before), Some(after)) => {
                                Some(sum + after.saturating_sub(before))
                            }
                            _ => None,
                        };
                        &mut rapport_runs
                    } else {
                        &mut peer_runs
                    };
                    runs.latencies.extend(latencies);
                    runs.elapsed += elapsed;
                    runs.cpu.add(&cpu);
                }
            }
            eprintln!(
                "{}",
                cpu_line(&rapport_runs, &peer_runs, options.rapport_url.is_some())
            );
            let rapport_report = rapport_runs
                .report(scenario.name())
                .context("no Rapport request was timed")?;
            let row = CompareRow {
                rapport_statements: rapport_statements
                    .map(|sum| sum as f64 / rapport_report.requests as f64),
                rapport: rapport_report,
                peer: peer_runs.report(scenario.name()),
                clients,
            };
            eprintln!("{}", row.line());
            rows.push(row);
        }
    }
    Ok((rows, compared))
}

/// Identities seeded per customer (the 360 view must show them all).
const IDENTITIES: usize = 3;

/// What every answer must hold.
struct Expect {
    identities: usize,
    timeline: usize,
    page: usize,
    page_timeline: usize,
}

/// What the comparison asks both servers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scenario {
    /// One customer with contact points, identities, organization, tags, the last 10
    /// interactions, the 5 latest conversations, deals and notes; a different customer
    /// each request.
    View,
    /// The 50 customers seen last, each with identities and last 5 interactions.
    List,
}

impl Scenario {
    fn name(self) -> &'static str {
        match self {
            Scenario::View => "customer 360 view",
            Scenario::List => "50 customers with identities and last 5 interactions",
        }
    }

    /// Sends `requests` requests, `clients` at a time, to `target` (Rapport's schema when
    /// `ours`), checking each answer; the latencies and the wall time.
    #[expect(
        clippy::too_many_arguments,
        reason = "one call site, the loop above; a struct would only rename them"
    )]
    async fn run(
        self,
        client: &reqwest::Client,
        target: &Target,
        ours: bool,
        ids: &[String],
        workspace: Option<&str>,
        expect: &Expect,
        requests: usize,
        clients: usize,
        offset: usize,
    ) -> anyhow::Result<(Vec<Duration>, Duration)> {
        use futures_util::stream::{self, StreamExt};
        let started = Instant::now();
        let latencies: Vec<Duration> = stream::iter(0..requests)
            .map(|n| async move {
                let (query, variables) = match (self, ours) {
                    (Scenario::View, true) => {
                        (RAPPORT_360, json!({ "id": ids[(offset + n) % ids.len()] }))
                    }
                    (Scenario::View, false) => (
                        PEER_360,
                        json!({ "id": peer_id(&ids[(offset + n) % ids.len()])? }),
                    ),
                    (Scenario::List, true) => (RAPPORT_LIST, json!({})),
                    (Scenario::List, false) => (PEER_LIST, json!({ "workspace": workspace })),
                };
                let sent = Instant::now();
                let checked = match (self, ours) {
                    (Scenario::View, true) => {
                        target
                            .ask::<RapportView>(client, query, variables, expect)
                            .await
                    }
                    (Scenario::View, false) => {
                        target
                            .ask::<PeerView>(client, query, variables, expect)
                            .await
                    }
                    (Scenario::List, true) => {
                        target
                            .ask::<RapportList>(client, query, variables, expect)
                            .await
                    }
                    (Scenario::List, false) => {
                        target
                            .ask::<PeerList>(client, query, variables, expect)
                            .await
                    }
                };
                let latency = sent.elapsed();
                checked.with_context(|| format!("{}: {} request {n}", self.name(), target.name))?;
                anyhow::Ok(latency)
            })
            .buffer_unordered(clients)
            .collect::<Vec<_>>()
            .await
            .into_iter()
            .collect::<anyhow::Result<_>>()?;
        Ok((latencies, started.elapsed()))
    }
}

/// An answer of a timed request, read only as far as its check needs: the body is parsed
/// whole (the JSON must be well formed) but nothing is kept of what is not counted, so
/// the load generator spends little of the CPU the servers share with it.
trait Counted: serde::de::DeserializeOwned {
    fn check(&self, expect: &Expect) -> anyhow::Result<()>;
}

/// The shape of a timed answer: `data`, and `errors` when there are any.
#[derive(serde::Deserialize)]
struct Answer<T> {
    data: Option<T>,
    errors: Option<serde::de::IgnoredAny>,
}

/// A list of which only the length is kept.
type Many = Vec<serde::de::IgnoredAny>;

#[derive(serde::Deserialize)]
struct Nodes<T> {
    nodes: Vec<T>,
}

#[derive(serde::Deserialize)]
struct Edges<T> {
    edges: Vec<Edge<T>>,
}

#[derive(serde::Deserialize)]
struct Edge<T> {
    node: T,
}

/// The 360 view's counts, the same in either schema.
fn check_view(
    identities: usize,
    timeline: usize,
    organization: bool,
    expect: &Expect,
) -> anyhow::Result<()> {
    if identities != expect.identities || timeline != expect.timeline {
        bail!("{identities} identities and {timeline} interactions");
    }
    if !organization {
        bail!("no organization");
    }
    Ok(())
}

/// The list's counts (customers, and each one's identities and interactions).
fn check_list(customers: &[(usize, usize)], expect: &Expect) -> anyhow::Result<()> {
    if customers.len() != expect.page {
        bail!("{} customers on the page", customers.len());
    }
    for &(identities, timeline) in customers {
        if identities != expect.identities || timeline != expect.page_timeline {
            bail!("a customer with {identities} identities and {timeline} interactions");
        }
    }
    Ok(())
}

#[derive(serde::Deserialize)]
struct RapportView {
    customer: Option<RapportCustomer>,
}

#[derive(serde::Deserialize)]
struct RapportCustomer {
    identities: Many,
    #[serde(default)]
    organization: Option<serde::de::IgnoredAny>,
    timeline: Edges<serde::de::IgnoredAny>,
}

impl Counted for RapportView {
    fn check(&self, expect: &Expect) -> anyhow::Result<()> {
        let c = self.customer.as_ref().context("no customer")?;
        check_view(
            c.identities.len(),
            c.timeline.edges.len(),
            c.organization.is_some(),
            expect,
        )
    }
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct PeerView {
    customer_by_row_id: Option<PeerCustomer>,
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct PeerCustomer {
    identities_by_customer_id: Nodes<serde::de::IgnoredAny>,
    #[serde(default)]
    organization_by_organization_id: Option<serde::de::IgnoredAny>,
    interactions_by_customer_id: Nodes<serde::de::IgnoredAny>,
}

impl Counted for PeerView {
    fn check(&self, expect: &Expect) -> anyhow::Result<()> {
        let c = self.customer_by_row_id.as_ref().context("no customer")?;
        check_view(
            c.identities_by_customer_id.nodes.len(),
            c.interactions_by_customer_id.nodes.len(),
            c.organization_by_organization_id.is_some(),
            expect,
        )
    }
}

#[derive(serde::Deserialize)]
struct RapportList {
    customers: Edges<RapportListed>,
}

#[derive(serde::Deserialize)]
struct RapportListed {
    identities: Many,
    timeline: Edges<serde::de::IgnoredAny>,
}

impl Counted for RapportList {
    fn check(&self, expect: &Expect) -> anyhow::Result<()> {
        let counts: Vec<_> = (self.customers.edges.iter())
            .map(|c| (c.node.identities.len(), c.node.timeline.edges.len()))
            .collect();
        check_list(&counts, expect)
    }
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct PeerList {
    all_customers: Nodes<PeerListed>,
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct PeerListed {
    identities_by_customer_id: Nodes<serde::de::IgnoredAny>,
    interactions_by_customer_id: Nodes<serde::de::IgnoredAny>,
}

impl Counted for PeerList {
    fn check(&self, expect: &Expect) -> anyhow::Result<()> {
        let counts: Vec<_> = (self.all_customers.nodes.iter())
            .map(|c| {
                (
                    c.identities_by_customer_id.nodes.len(),
                    c.interactions_by_customer_id.nodes.len(),
                )
            })
            .collect();
        check_list(&counts, expect)
    }
}

/// The timed runs of one server.
#[derive(Default)]
struct Runs {
    latencies: Vec<Duration>,
    elapsed: Duration,
    /// The CPU time spent while they ran.
    cpu: Cpu,
}

/// CPU time (user and system) of the processes a comparison runs on, where `/proc` tells
/// (Linux): both servers share the machine with the load generator and PostgreSQL, so
/// what each spends a request says where a ratio comes from.
#[derive(Clone, Copy)]
struct Cpu {
    /// This process: the load generator, and Rapport when it serves in this process.
    own: Duration,
    /// The PostgreSQL server both read, when it runs on this machine.
    database: Option<ServerCpu>,
    /// The reference server's process, when started here.
    peer: Option<Duration>,
}

/// What [`Cpu`] is the difference of.
struct CpuReading {
    own: Duration,
    database: Option<ServerReading>,
    peer: Option<Duration>,
}

impl Default for Cpu {
    /// Nothing spent yet: a sum that stays unknown once any part of it is.
    fn default() -> Cpu {
        Cpu {
            own: Duration::ZERO,
            database: Some(ServerCpu::default()),
            peer: Some(Duration::ZERO),
        }
    }
}

impl CpuReading {
    fn now(server: Option<Server>, peer: Option<u32>) -> CpuReading {
        CpuReading {
            own: own_cpu(),
            database: server.and_then(Server::read),
            peer: peer.and_then(process_cpu),
        }
    }

    fn since(&self, earlier: &CpuReading) -> Cpu {
        Cpu {
            own: self.own.saturating_sub(earlier.own),
            database: (self.database.as_ref())
                .zip(earlier.database.as_ref())
                .map(|(now, then)| now.since(then)),
            peer: self
                .peer
                .zip(earlier.peer)
                .map(|(now, then)| now.saturating_sub(then)),
        }
    }
}

impl Cpu {
    fn add(&mut self, other: &Cpu) {
        self.own += other.own;
        self.database = self.database.zip(other.database).map(|(mut sum, more)| {
            sum.add(&more);
            sum
        });
        self.peer = self.peer.zip(other.peer).map(|(sum, more)| sum + more);
    }
}

/// What each process spent a request, in µs, for one scenario at one client count.
fn cpu_line(rapport: &Runs, peer: &Runs, rapport_elsewhere: bool) -> String {
    let per = |runs: &Runs, cpu: Option<Duration>| match cpu {
        Some(cpu) if !runs.latencies.is_empty() => {
            format!(
                "{:.0}",
                cpu.as_secs_f64() * 1e6 / runs.latencies.len() as f64
            )
        }
        _ => "–".to_owned(),
    };
    // A backend that ended during the runs took its CPU along: the rest is a lower bound.
    let server = |runs: &Runs| match runs.cpu.database {
        Some(server) if !runs.latencies.is_empty() => server.micros_each(runs.latencies.len()),
        _ => "–".to_owned(),
    };
    let own = if rapport_elsewhere {
        "load generator"
    } else {
        "this process (Rapport and the load generator)"
    };
    format!(
        "compare: CPU µs a request, Rapport · reference: {own} {} · {}; PostgreSQL {} · {}; the reference's process {}",
        per(rapport, Some(rapport.cpu.own)),
        per(peer, Some(peer.cpu.own)),
        server(rapport),
        server(peer),
        per(peer, peer.cpu.peer),
    )
}

impl Runs {
    fn report(mut self, name: &'static str) -> Option<ScenarioReport> {
        if self.latencies.is_empty() {
            return None;
        }
        self.latencies.sort();
        let latencies = &self.latencies;
        let at = |q: f64| {
            latencies[((latencies.len() as f64 * q).ceil() as usize).clamp(1, latencies.len()) - 1]
        };
        Some(ScenarioReport {
            name,
            requests: latencies.len(),
            p50: at(0.50),
            p95: at(0.95),
            p99: at(0.99),
            per_second: latencies.len() as f64 / self.elapsed.as_secs_f64(),
        })
    }
}

/// A GraphQL endpoint.
struct Target {
    name: &'static str,
    url: String,
    key: Option<String>,
}

impl Target {
    /// The `data` of a successful answer; fails on a transport error, a non-2xx status or
    /// any `errors`.
    /// A GraphQL request of `query` with `variables`, with the key when there is one.
    fn request(
        &self,
        client: &reqwest::Client,
        query: &str,
        variables: Value,
    ) -> reqwest::RequestBuilder {
        let request = client
            .post(&self.url)
            .json(&json!({ "query": query, "variables": variables }));
        match &self.key {
            Some(key) => request.bearer_auth(key),
            None => request,
        }
    }

    async fn post(
        &self,
        client: &reqwest::Client,
        query: &str,
        variables: Value,
    ) -> anyhow::Result<Value> {
        let response = self.request(client, query, variables).send().await?;
        let status = response.status();
        let body: Value = response.json().await?;
        if !status.is_success() || body.get("errors").is_some() {
            bail!("{} answered {status}: {body}", self.name);
        }
        match body {
            Value::Object(mut body) => Ok(body.remove("data").unwrap_or(Value::Null)),
            _ => bail!("{} answered {status} without an object", self.name),
        }
    }

    /// Sends a timed request and checks its answer ([`Counted`]): a transport error, a
    /// non-2xx status, any `errors` or a count that differs fails it, with the body.
    async fn ask<T: Counted>(
        &self,
        client: &reqwest::Client,
        query: &str,
        variables: Value,
        expect: &Expect,
    ) -> anyhow::Result<()> {
        let response = self.request(client, query, variables).send().await?;
        let status = response.status();
        let body = response.bytes().await?;
        let shown = || String::from_utf8_lossy(&body).into_owned();
        let answer: Answer<T> = serde_json::from_slice(&body)
            .with_context(|| format!("{} answered {status}: {}", self.name, shown()))?;
        match answer {
            Answer {
                data: Some(data),
                errors: None,
            } if status.is_success() => data
                .check(expect)
                .with_context(|| format!("{} answered {}", self.name, shown())),
            _ => bail!("{} answered {status}: {}", self.name, shown()),
        }
    }

    /// Waits (at most a minute) until the server answers a trivial query.
    async fn wait_ready(
        &self,
        client: &reqwest::Client,
        mut process: Option<&mut PeerProcess>,
    ) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let error = match self.post(client, "{ __typename }", json!({})).await {
                Ok(_) => return Ok(()),
                Err(error) => error,
            };
            if let Some(process) = process.as_deref_mut() {
                if let Some(status) = process.child.try_wait()? {
                    bail!("{} exited with {status} before answering", self.name);
                }
            }
            if Instant::now() > deadline {
                return Err(error);
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
}

/// Aborts the in-process server when the comparison ends, however it ends.
struct AbortOnDrop(Option<tokio::task::JoinHandle<std::io::Result<()>>>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        if let Some(server) = &self.0 {
            server.abort();
        }
    }
}

/// PostGraphile started from `bench/peers`; killed when dropped.
struct PeerProcess {
    child: Child,
    url: String,
}

impl Drop for PeerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `bench/peers/postgraphile.mjs` with the Node 22 installed beside it, over the
/// app's PostgreSQL database (and schema), on a free loopback port. Its output goes to
/// our stderr (stdout holds the tables).
fn start_postgraphile(dir: &Path, app: &App) -> anyhow::Result<PeerProcess> {
    let url = app.config.effective_database_url();
    if !url.starts_with("postgres") {
        bail!("PostGraphile serves PostgreSQL only: give --database-url postgres://…");
    }
    // Absolute: a relative program path would be looked up from the child's directory.
    let dir = &std::path::absolute(dir)?;
    let node = dir.join("node_modules/.bin/node");
    if !node.exists() {
        bail!(
            "{} is missing: run `npm ci` in {} first (see its README)",
            node.display(),
            dir.display()
        );
    }
    // A free port: bound, read and released (the peer binds it a moment later).
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let mut child = Command::new(&node)
        .arg("postgraphile.mjs")
        .current_dir(dir)
        .env("DATABASE_URL", &url)
        .env(
            "PG_SCHEMA",
            app.config.database_schema.as_deref().unwrap_or("public"),
        )
        .env("PORT", port.to_string())
        .env("GRAPHILE_ENV", "production")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .with_context(|| format!("cannot start {}", node.display()))?;
    if let Some(stdout) = child.stdout.take() {
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
            {
                eprintln!("postgraphile: {line}");
            }
        });
    }
    Ok(PeerProcess {
        child,
        url: format!("http://127.0.0.1:{port}/graphql"),
    })
}

/// Rapport's statement count: its own counter in this process, or the `/metrics` of the
/// Rapport at `rapport_url` (whose answer runs a statement or two of its own: noise of
/// under 0.01 a request over a run of hundreds).
async fn statements(
    app: &App,
    client: &reqwest::Client,
    rapport: &Target,
    rapport_url: &Option<String>,
) -> Option<u64> {
    if rapport_url.is_none() {
        return Some(app.metrics.statements());
    }
    let origin = rapport.url.strip_suffix("/graphql")?;
    let body = client
        .get(format!("{origin}/metrics"))
        .send()
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    body.lines()
        .find_map(|line| line.strip_prefix("rapport_db_statements_total "))
        .and_then(|n| n.trim().parse().ok())
}

/// Every customer id Rapport lists in the workspace, in its default order.
async fn rapport_customer_ids(
    client: &reqwest::Client,
    rapport: &Target,
) -> anyhow::Result<Vec<String>> {
    let mut ids = Vec::new();
    let mut after = Value::Null;
    loop {
        let data = rapport
            .post(client, "query($after: String) { customers(first: 100, after: $after) { pageInfo { hasNextPage endCursor } edges { node { id } } } }", json!({ "after": after }))
            .await?;
        for edge in data["customers"]["edges"].as_array().into_iter().flatten() {
            ids.push(edge["node"]["id"].as_str().unwrap_or_default().to_owned());
        }
        if data["customers"]["pageInfo"]["hasNextPage"] != json!(true) {
            return Ok(ids);
        }
        after = data["customers"]["pageInfo"]["endCursor"].clone();
    }
}

/// The reference's id of a customer: the row's UUID, which Rapport's id carries after its
/// kind prefix (`cus_<uuid>`).
fn peer_id(id: &str) -> anyhow::Result<String> {
    let (_, hex) = id
        .split_once('_')
        .with_context(|| format!("`{id}` is not a Rapport id"))?;
    Ok(uuid::Uuid::parse_str(hex)
        .with_context(|| format!("`{id}` does not carry a UUID"))?
        .to_string())
}

/// The workspace's row id, as the reference sees it.
async fn peer_workspace_id(
    client: &reqwest::Client,
    peer: &Target,
    slug: &str,
) -> anyhow::Result<String> {
    let data = peer
        .post(
            client,
            "query($slug: String!) { workspaceBySlug(slug: $slug) { rowId } }",
            json!({ "slug": slug }),
        )
        .await?;
    data["workspaceBySlug"]["rowId"]
        .as_str()
        .map(str::to_owned)
        .with_context(|| format!("the reference does not show the workspace {slug}: {data}"))
}

/// Fails naming the first field where the two servers' answers differ.
fn same(what: &str, which: &str, ours: &Value, theirs: &Value) -> anyhow::Result<()> {
    if ours == theirs {
        return Ok(());
    }
    let (Value::Object(ours_map), Value::Object(theirs_map)) = (ours, theirs) else {
        bail!("{what} of {which} differs: Rapport {ours}, reference {theirs}");
    };
    for (field, value) in ours_map {
        if theirs_map.get(field) != Some(value) {
            bail!(
                "{what} of {which} differs in `{field}`: Rapport {value}, reference {}",
                theirs_map.get(field).unwrap_or(&Value::Null)
            );
        }
    }
    bail!("{what} of {which} differs: Rapport {ours}, reference {theirs}")
}

// Both servers' answers brought to one shape: enum values in lower case (Rapport's
// `EMAIL` is the stored `email`), instants as microseconds, amounts in minor units,
// lists without a defined order sorted.

fn rapport_360(data: &Value) -> anyhow::Result<Value> {
    let c = object(&data["customer"], "customer")?;
    Ok(json!({
        "name": c["displayName"],
        "contactPoints": sorted(items(&c["contactPoints"])?.iter().map(|p| join(&[lower(&p["kind"]), text(&p["value"])])).collect()),
        "identities": sorted(items(&c["identities"])?.iter().map(|i| join(&[lower(&i["channel"]), text(&i["handle"])])).collect()),
        "organization": c["organization"]["name"],
        "tags": sorted(items(&c["tags"])?.iter().map(|t| text(&t["name"])).collect()),
        "timeline": edges(&c["timeline"])?.iter().map(|i| Ok(join(&[lower(&i["channel"]), lower(&i["kind"]), lower(&i["direction"]), text(&i["text"]), instant(&i["occurredAt"])?]))).collect::<anyhow::Result<Vec<_>>>()?,
        // The reference asks for the 5 most recent; Rapport's field has no limit.
        "conversations": items(&c["conversations"])?.iter().take(5).map(|v| Ok(join(&[lower(&v["status"]), text(&v["subject"]), instant(&v["lastMessageAt"])?]))).collect::<anyhow::Result<Vec<_>>>()?,
        "deals": sorted(items(&c["deals"])?.iter().map(|d| Ok(join(&[text(&d["title"]), minor_units(&d["amount"])?, text(&d["currency"]), lower(&d["stage"])]))).collect::<anyhow::Result<Vec<_>>>()?),
        "notes": items(&c["notes"])?.iter().map(|n| Ok(join(&[text(&n["body"]), instant(&n["createdAt"])?]))).collect::<anyhow::Result<Vec<_>>>()?,
    }))
}

fn peer_360(data: &Value) -> anyhow::Result<Value> {
    let c = object(&data["customerByRowId"], "customerByRowId")?;
    Ok(json!({
        "name": c["displayName"],
        "contactPoints": sorted(nodes(&c["contactPointsByCustomerId"])?.iter().map(|p| join(&[lower(&p["kind"]), text(&p["value"])])).collect()),
        "identities": sorted(nodes(&c["identitiesByCustomerId"])?.iter().map(|i| join(&[lower(&i["channel"]), text(&i["handle"])])).collect()),
        "organization": c["organizationByOrganizationId"]["name"],
        "tags": sorted(nodes(&c["customerTagsByCustomerId"])?.iter().map(|t| text(&t["tagByTagId"]["name"])).collect()),
        "timeline": nodes(&c["interactionsByCustomerId"])?.iter().map(|i| Ok(join(&[lower(&i["channel"]), lower(&i["kind"]), lower(&i["direction"]), text(&i["text"]), instant(&i["occurredAt"])?]))).collect::<anyhow::Result<Vec<_>>>()?,
        "conversations": nodes(&c["conversationsByCustomerId"])?.iter().map(|v| Ok(join(&[lower(&v["status"]), text(&v["subject"]), instant(&v["lastMessageAt"])?]))).collect::<anyhow::Result<Vec<_>>>()?,
        "deals": sorted(nodes(&c["dealsByCustomerId"])?.iter().map(|d| join(&[text(&d["title"]), text(&d["amountMinor"]), text(&d["currency"]), lower(&d["stage"])])).collect()),
        "notes": nodes(&c["notesByCustomerId"])?.iter().map(|n| Ok(join(&[text(&n["body"]), instant(&n["createdAt"])?]))).collect::<anyhow::Result<Vec<_>>>()?,
    }))
}

fn rapport_list(data: &Value) -> anyhow::Result<Value> {
    edges(&data["customers"])?
        .iter()
        .map(|c| {
            Ok(json!({
                "name": c["displayName"],
                "identities": sorted(items(&c["identities"])?.iter().map(|i| join(&[lower(&i["channel"]), text(&i["handle"])])).collect()),
                "timeline": edges(&c["timeline"])?.iter().map(|i| Ok(join(&[text(&i["text"]), instant(&i["occurredAt"])?]))).collect::<anyhow::Result<Vec<_>>>()?,
            }))
        })
        .collect::<anyhow::Result<Vec<_>>>()
        .map(Value::Array)
}

fn peer_list(data: &Value) -> anyhow::Result<Value> {
    nodes(&data["allCustomers"])?
        .iter()
        .map(|c| {
            Ok(json!({
                "name": c["displayName"],
                "identities": sorted(nodes(&c["identitiesByCustomerId"])?.iter().map(|i| join(&[lower(&i["channel"]), text(&i["handle"])])).collect()),
                "timeline": nodes(&c["interactionsByCustomerId"])?.iter().map(|i| Ok(join(&[text(&i["text"]), instant(&i["occurredAt"])?]))).collect::<anyhow::Result<Vec<_>>>()?,
            }))
        })
        .collect::<anyhow::Result<Vec<_>>>()
        .map(Value::Array)
}

fn object<'a>(value: &'a Value, what: &str) -> anyhow::Result<&'a Value> {
    if value.is_object() {
        Ok(value)
    } else {
        bail!("`{what}` is {value}")
    }
}

fn items(value: &Value) -> anyhow::Result<&[Value]> {
    value
        .as_array()
        .map(Vec::as_slice)
        .with_context(|| format!("expected a list, got {value}"))
}

/// The nodes of a Relay connection's edges (Rapport).
fn edges(connection: &Value) -> anyhow::Result<Vec<&Value>> {
    Ok(items(&connection["edges"])?
        .iter()
        .map(|edge| &edge["node"])
        .collect())
}

/// The nodes of a connection (PostGraphile).
fn nodes(connection: &Value) -> anyhow::Result<&[Value]> {
    items(&connection["nodes"])
}

fn text(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        Value::Null => "∅".to_owned(),
        other => other.to_string(),
    }
}

fn lower(value: &Value) -> String {
    text(value).to_lowercase()
}

fn join(parts: &[String]) -> String {
    parts.join(" | ")
}

fn sorted(mut values: Vec<String>) -> Vec<String> {
    values.sort();
    values
}

/// An RFC 3339 instant as microseconds since the epoch, whatever its offset notation.
fn instant(value: &Value) -> anyhow::Result<String> {
    let text = value
        .as_str()
        .with_context(|| format!("expected an instant, got {value}"))?;
    Ok(chrono::DateTime::parse_from_rfc3339(text)
        .with_context(|| format!("`{text}` is not an RFC 3339 instant"))?
        .timestamp_micros()
        .to_string())
}

/// Rapport's decimal amount (`"1000.00"`) in minor units (`100000`), as the table stores it.
fn minor_units(value: &Value) -> anyhow::Result<String> {
    let Some(amount) = value.as_str() else {
        return Ok(text(value));
    };
    let (units, cents) = amount.split_once('.').unwrap_or((amount, "00"));
    let minor: i64 = format!("{units}{cents:0<2}")
        .parse()
        .with_context(|| format!("`{amount}` is not an amount"))?;
    Ok(minor.to_string())
}

impl CompareRow {
    /// One Markdown table row.
    pub fn line(&self) -> String {
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        let ours = &self.rapport;
        let mut line = format!(
            "| {} | {} | {:.0} | {:.1} / {:.1} / {:.1} |",
            ours.name,
            self.clients,
            ours.per_second,
            ms(ours.p50),
            ms(ours.p95),
            ms(ours.p99)
        );
        match (&self.peer, self.ratio()) {
            (Some(peer), Some(ratio)) => line.push_str(&format!(
                " {:.0} | {:.1} / {:.1} / {:.1} | **{ratio:.2}×** |",
                peer.per_second,
                ms(peer.p50),
                ms(peer.p95),
                ms(peer.p99)
            )),
            _ => line.push_str(" – | – | – |"),
        }
        match self.rapport_statements {
            Some(statements) => line.push_str(&format!(" {statements:.1} |")),
            None => line.push_str(" – |"),
        }
        line
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    #[test]
    fn answers_of_both_schemas_come_to_one_shape() {
        let ours = json!({ "customer": {
            "id": "cus_0190a0b2c3d47e8f9a0b1c2d3e4f5a6b", "displayName": "Ada",
            "contactPoints": [{ "kind": "EMAIL", "value": "a@x.example" }],
            "identities": [{ "channel": "MASTODON", "handle": "b" }, { "channel": "HACKER_NEWS", "handle": "a" }],
            "organization": { "name": "Org" }, "tags": [{ "name": "t" }],
            "timeline": { "edges": [{ "node": { "channel": "BLUESKY", "kind": "MENTION", "direction": "INBOUND", "text": "hi", "occurredAt": "2026-12-03T10:00:00.123456+00:00" } }] },
            "conversations": [{ "status": "OPEN", "subject": null, "lastMessageAt": "2026-12-03T10:00:00Z" }],
            "deals": [{ "title": "D", "amount": "1000.50", "currency": "EUR", "stage": "PROPOSAL" }],
            "notes": [{ "body": "n", "createdAt": "2026-12-03T09:00:00+00:00" }]
        } });
        let theirs = json!({ "customerByRowId": {
            "rowId": "0190a0b2-c3d4-7e8f-9a0b-1c2d3e4f5a6b", "displayName": "Ada",
            "contactPointsByCustomerId": { "nodes": [{ "kind": "email", "value": "a@x.example" }] },
            "identitiesByCustomerId": { "nodes": [{ "channel": "hacker_news", "handle": "a" }, { "channel": "mastodon", "handle": "b" }] },
            "organizationByOrganizationId": { "name": "Org" },
            "customerTagsByCustomerId": { "nodes": [{ "tagByTagId": { "name": "t" } }] },
            "interactionsByCustomerId": { "nodes": [{ "channel": "bluesky", "kind": "mention", "direction": "inbound", "text": "hi", "occurredAt": "2026-12-03T10:00:00.123456Z" }] },
            "conversationsByCustomerId": { "nodes": [{ "status": "open", "subject": null, "lastMessageAt": "2026-12-03T10:00:00+00:00" }] },
            "dealsByCustomerId": { "nodes": [{ "title": "D", "amountMinor": "100050", "currency": "EUR", "stage": "proposal" }] },
            "notesByCustomerId": { "nodes": [{ "body": "n", "createdAt": "2026-12-03T09:00:00Z" }] }
        } });
        let (ours, theirs) = (
            super::rapport_360(&ours).unwrap(),
            super::peer_360(&theirs).unwrap(),
        );
        super::same("the 360 view", "Ada", &ours, &theirs).unwrap();
        assert_eq!(
            super::peer_id("cus_0190a0b2c3d47e8f9a0b1c2d3e4f5a6b").unwrap(),
            "0190a0b2-c3d4-7e8f-9a0b-1c2d3e4f5a6b"
        );
        let mut other = theirs.clone();
        other["timeline"] = json!([]);
        let error = super::same("the 360 view", "Ada", &ours, &other).unwrap_err();
        assert!(error.to_string().contains("`timeline`"), "{error}");
    }

    /// A timed answer is checked by its counts in either schema: the right counts pass,
    /// one interaction missing, no organization or a missing customer fail.
    #[test]
    fn timed_answers_are_counted_in_both_schemas() {
        use super::{Counted, Expect, PeerList, PeerView, RapportList, RapportView};
        fn read<T: Counted>(value: serde_json::Value) -> T {
            serde_json::from_value(value).unwrap()
        }
        let expect = Expect {
            identities: 2,
            timeline: 1,
            page: 2,
            page_timeline: 1,
        };
        let ours = |timeline: serde_json::Value, organization: serde_json::Value| {
            json!({ "customer": { "identities": [{ "handle": "a" }, { "handle": "b" }],
                "organization": organization, "timeline": { "edges": timeline } } })
        };
        let edge = json!([{ "node": { "text": "hi" } }]);
        read::<RapportView>(ours(edge.clone(), json!({ "name": "Org" })))
            .check(&expect)
            .unwrap();
        assert!(
            read::<RapportView>(ours(json!([]), json!({ "name": "Org" })))
                .check(&expect)
                .is_err()
        );
        assert!(read::<RapportView>(ours(edge.clone(), json!(null)))
            .check(&expect)
            .is_err());
        assert!(read::<RapportView>(json!({ "customer": null }))
            .check(&expect)
            .is_err());
        let theirs = json!({ "customerByRowId": {
            "identitiesByCustomerId": { "nodes": [{}, {}] },
            "organizationByOrganizationId": { "name": "Org" },
            "interactionsByCustomerId": { "nodes": [{ "text": "hi" }] } } });
        read::<PeerView>(theirs).check(&expect).unwrap();

        let listed = json!({ "node": { "identities": [{}, {}], "timeline": { "edges": edge } } });
        read::<RapportList>(json!({ "customers": { "edges": [listed, listed] } }))
            .check(&expect)
            .unwrap();
        assert!(
            read::<RapportList>(json!({ "customers": { "edges": [listed] } }))
                .check(&expect)
                .is_err()
        );
        let listed = json!({ "identitiesByCustomerId": { "nodes": [{}, {}] },
            "interactionsByCustomerId": { "nodes": [] } });
        assert!(
            read::<PeerList>(json!({ "allCustomers": { "nodes": [listed, listed] } }))
                .check(&expect)
                .is_err()
        );
    }
}
