//! Scale-out: `processes` real `rapport serve` processes (this binary) over the
//! benchmark's database, webhook deliveries spread over all of them by `clients` senders,
//! every answer checked (accepted, not a duplicate). Each row is one process count on a
//! fresh webhook source; the last row, with `kill`, SIGKILLs the process holding the
//! indexer's lease halfway through, sends what it did not answer to the next process (as
//! a webhook sender retries), and then counts what was stored (nothing lost, nothing
//! doubled) and how long the index took to catch up under another process's indexer.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use serde_json::{json, Value};

use crate::domain;
use crate::App;

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// What to measure.
#[derive(Clone, Debug)]
pub struct ScaleOptions {
    /// Process counts, one row each.
    pub processes: Vec<usize>,
    /// Deliveries per row.
    pub items: usize,
    /// Deliveries in flight at once.
    pub clients: usize,
    /// Webhook sources the deliveries are spread over: one source's batches take turns
    /// (each holds the source's row until it commits), several sources' run side by side.
    pub sources: usize,
    /// Also run the largest process count again, killing the indexing process halfway.
    pub kill: bool,
}

/// One row: `processes` serving, the deliveries' rate and latency.
#[derive(Debug)]
pub struct ScaleRow {
    pub processes: usize,
    pub items: usize,
    pub per_second: f64,
    pub p50: Duration,
    pub p99: Duration,
    /// The row with a process killed halfway.
    pub killed: Option<Killed>,
    /// From the last delivery until the index had every event (the indexer's offset at
    /// the head of the log).
    pub index_caught_up: Duration,
}

/// What a run with a process killed halfway stored.
#[derive(Debug)]
pub struct Killed {
    /// Deliveries the killed process did not answer, sent again to another.
    pub resent: usize,
    /// Interactions stored for the row's source.
    pub stored: u64,
    /// Distinct external ids among them.
    pub distinct: u64,
}

#[derive(Debug)]
pub struct ScaleReport {
    pub options: ScaleOptions,
    pub rows: Vec<ScaleRow>,
}

/// Runs the rows (see the module). The processes share `app`'s database and one data
/// directory of their own (so one embedded index, one indexer at a time) and run without
/// the rate limits.
pub async fn scale(app: &App, options: ScaleOptions) -> anyhow::Result<ScaleReport> {
    let slug = format!("bench-scale-{}", uuid::Uuid::now_v7().simple());
    let workspace = domain::workspace::ensure(&app.db, &slug).await?;
    let (config, consumer) = child_config(app)?;
    let mut runs: Vec<(usize, bool)> = options.processes.iter().map(|&n| (n, false)).collect();
    if options.kill {
        if let Some(&most) = options.processes.iter().max() {
            runs.push((most.max(2), true));
        }
    }
    let mut rows = Vec::new();
    for (row, (processes, kill)) in runs.into_iter().enumerate() {
        let caller = domain::Caller::owner_without_key(workspace.id, "bench");
        let mut sources = Vec::new();
        for n in 0..options.sources.max(1) {
            sources.push(
                domain::source::create(
                    &app.db,
                    &caller,
                    domain::source::NewSource {
                        channel: connectors::Channel::Webhook,
                        name: format!("scale {row}.{n}"),
                        config: json!({ "secret": SECRET }),
                        schedule_secs: None,
                    },
                )
                .await?,
            );
        }
        let paths: Vec<String> = sources
            .iter()
            .map(|source| format!("/webhooks/{}", crate::ids::encode(source.id)))
            .collect();
        let mut fleet = Fleet::start(&config, processes).await?;
        let result = run_row(app, &consumer, &options, &mut fleet, &paths, kill).await;
        fleet.stop();
        let mut row = result?;
        row.processes = processes;
        let (mut stored, mut distinct) = (0, 0);
        for source in &sources {
            let (rows, ids) =
                domain::interaction::stored_of_source(&app.db, workspace.id, source.id).await?;
            stored += rows;
            distinct += ids;
        }
        if stored != options.items as u64 || distinct != stored {
            bail!(
                "{processes} processes{}: {} deliveries answered, {stored} interactions stored ({distinct} distinct)",
                if kill { ", one killed" } else { "" },
                options.items
            );
        }
        if let Some(killed) = row.killed.as_mut() {
            killed.stored = stored;
            killed.distinct = distinct;
        }
        eprintln!(
            "{processes} processes{}: {:.0} deliveries/s",
            if kill { " (one killed halfway)" } else { "" },
            row.per_second
        );
        rows.push(row);
    }
    domain::workspace::delete(&app.db, workspace.id).await?;
    let _ = std::fs::remove_file(&config);
    Ok(ScaleReport { options, rows })
}

/// The configuration file of the child processes and their indexer's offset row: `app`'s
/// database, a data directory of their own, no rate limits, no scheduler, a short indexer
/// lease.
fn child_config(app: &App) -> anyhow::Result<(PathBuf, String)> {
    let config = &app.config;
    // The processes' own data directory, for their embedded index: this process may hold
    // the writer of its own (the search benchmark indexed into it).
    let mut shared = (**config).clone();
    shared.data_dir = config.data_dir.join("scale");
    let consumer = crate::search::consumer(&shared)?;
    let mut text = format!("data_dir = {:?}\n", shared.data_dir.display().to_string());
    text.push_str(&format!(
        "database_url = {:?}\n",
        config.effective_database_url()
    ));
    if let Some(schema) = &config.database_schema {
        text.push_str(&format!("database_schema = {schema:?}\n"));
    }
    if let Some(url) = &config.meili_url {
        text.push_str(&format!("meili_url = {url:?}\n"));
        text.push_str(&format!(
            "meili_index_prefix = {:?}\n",
            config.meili_index_prefix
        ));
    }
    text.push_str("indexer_lease_secs = 3\n");
    text.push_str("[limits]\nrequests_per_minute = 0\nwebhook_requests_per_minute = 0\n");
    text.push_str("[sync]\nenabled = false\n");
    let path = shared
        .data_dir
        .join(format!("scale-{}.toml", uuid::Uuid::now_v7().simple()));
    std::fs::write(&path, text)?;
    Ok((path, consumer))
}

/// The serving processes of one row.
struct Fleet {
    children: Vec<Child>,
    urls: Vec<String>,
    alive: Vec<bool>,
}

impl Fleet {
    async fn start(config: &Path, processes: usize) -> anyhow::Result<Fleet> {
        let exe = std::env::current_exe().context("this binary's path")?;
        let mut fleet = Fleet {
            children: Vec::new(),
            urls: Vec::new(),
            alive: Vec::new(),
        };
        for _ in 0..processes {
            let port = std::net::TcpListener::bind("127.0.0.1:0")?
                .local_addr()?
                .port();
            let child = Command::new(&exe)
                .arg("--config-file")
                .arg(config)
                .args(["serve", "--addr", &format!("127.0.0.1:{port}")])
                .env_remove("RAPPORT_DATABASE_URL")
                .env_remove("RAPPORT_DATA_DIR")
                .env_remove("RAPPORT_MEILI_URL")
                .env("RUST_LOG", "warn")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .context("starting rapport serve")?;
            fleet.children.push(child);
            fleet.urls.push(format!("http://127.0.0.1:{port}"));
            fleet.alive.push(true);
        }
        let client = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(60);
        for url in fleet.urls.clone() {
            while client
                .get(format!("{url}/readyz"))
                .send()
                .await
                .map_or(true, |r| !r.status().is_success())
            {
                if Instant::now() > deadline {
                    fleet.stop();
                    bail!("rapport serve at {url} did not become ready");
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        Ok(fleet)
    }

    /// SIGKILLs the process whose pid owns `lease`: its index.
    fn kill_owner(&mut self, lease: &str) -> anyhow::Result<usize> {
        let victim = self
            .children
            .iter()
            .position(|child| lease.starts_with(&format!("pid{}-", child.id())))
            .with_context(|| format!("the indexer lease {lease} is no process of this run"))?;
        self.children[victim].kill()?;
        self.children[victim].wait()?;
        self.alive[victim] = false;
        Ok(victim)
    }

    /// Stops every process still running (SIGTERM, then SIGKILL after 20 s).
    fn stop(&mut self) {
        for (child, alive) in self.children.iter_mut().zip(&mut self.alive) {
            if !*alive {
                continue;
            }
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(child.id().to_string())
                .status();
            let deadline = Instant::now() + Duration::from_secs(20);
            while matches!(child.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
            *alive = false;
        }
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        self.stop();
    }
}

/// One delivery's body and headers, signed the Standard Webhooks way.
fn delivery(row: &str, n: usize) -> (String, String, String, String) {
    let body = json!({
        "name": format!("Sender {}", n % 1000),
        "email": format!("sender{}@scale.example", n % 1000),
        "text": format!("delivery {n} of the scale benchmark"),
        "thread_id": format!("thread-{}", n % 500),
    })
    .to_string();
    let id = format!("{row}-{n}");
    let timestamp = chrono::Utc::now().timestamp().to_string();
    let signature = connectors::webhook::Secret::parse(SECRET)
        .ok()
        .and_then(|secret| secret.sign_standard(&id, &timestamp, body.as_bytes()))
        .unwrap_or_default();
    (body, id, timestamp, signature)
}

/// Sends delivery `n` to `url`: `Ok(false)` when the process did not answer (killed),
/// an error when it answered anything but "accepted, new".
async fn send(
    client: &reqwest::Client,
    url: &str,
    path: &str,
    row: &str,
    n: usize,
) -> anyhow::Result<bool> {
    let (body, id, timestamp, signature) = delivery(row, n);
    let Ok(response) = client
        .post(format!("{url}{path}"))
        .header("content-type", "application/json")
        .header("webhook-id", id)
        .header("webhook-timestamp", timestamp)
        .header("webhook-signature", signature)
        .body(body)
        .send()
        .await
    else {
        return Ok(false);
    };
    let status = response.status();
    let Ok(answer) = response.json::<Value>().await else {
        return Ok(false);
    };
    if !status.is_success() || answer["accepted"] != true {
        bail!("delivery {n} to {url}: {status} {answer}");
    }
    // A delivery sent again after its process died may have been stored before it did.
    Ok(true)
}

/// What the senders of a row share.
#[derive(Clone)]
struct Senders {
    client: reqwest::Client,
    /// The sources' webhook paths; delivery `n` goes to `paths[n % len]`.
    paths: Arc<Vec<String>>,
    row: String,
    /// The next delivery to send.
    next: Arc<AtomicUsize>,
    /// The live processes' addresses; delivery `n` goes to `urls[n % len]`.
    urls: Arc<Mutex<Vec<String>>>,
    latencies: Arc<Mutex<Vec<Duration>>>,
    /// Deliveries no process answered (it was killed): sent again at the end.
    unanswered: Arc<Mutex<Vec<usize>>>,
}

impl Senders {
    /// Starts `clients` senders of the deliveries from `next` up to `until`.
    fn spawn(
        &self,
        clients: usize,
        until: usize,
    ) -> Vec<tokio::task::JoinHandle<anyhow::Result<()>>> {
        let mut tasks = Vec::new();
        for _ in 0..clients {
            let this = self.clone();
            tasks.push(tokio::spawn(async move {
                loop {
                    let n = this.next.fetch_add(1, Ordering::Relaxed);
                    if n >= until {
                        return anyhow::Ok(());
                    }
                    let url = {
                        let urls = this.urls.lock().expect("never poisoned");
                        urls[n % urls.len()].clone()
                    };
                    let sent = Instant::now();
                    let path = &this.paths[n % this.paths.len()];
                    if send(&this.client, &url, path, &this.row, n).await? {
                        this.latencies
                            .lock()
                            .expect("never poisoned")
                            .push(sent.elapsed());
                    } else {
                        this.unanswered.lock().expect("never poisoned").push(n);
                    }
                }
            }));
        }
        tasks
    }

    /// Deliveries sent so far, answered or not.
    fn sent(&self) -> usize {
        self.latencies.lock().expect("never poisoned").len()
            + self.unanswered.lock().expect("never poisoned").len()
    }
}

async fn run_row(
    app: &App,
    consumer: &str,
    options: &ScaleOptions,
    fleet: &mut Fleet,
    paths: &[String],
    kill: bool,
) -> anyhow::Result<ScaleRow> {
    let deadline = Instant::now() + Duration::from_secs(30);
    while domain::event::lease_holder(&app.db, consumer)
        .await?
        .is_none()
    {
        if Instant::now() > deadline {
            bail!("no process took the indexer's lease");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let row = uuid::Uuid::now_v7().simple().to_string();
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(options.clients)
        .timeout(Duration::from_secs(30))
        .build()?;
    let shared = Senders {
        client: client.clone(),
        paths: Arc::new(paths.to_vec()),
        row: row.clone(),
        next: Arc::new(AtomicUsize::new(0)),
        urls: Arc::new(Mutex::new(fleet.urls.clone())),
        latencies: Arc::new(Mutex::new(Vec::with_capacity(options.items))),
        unanswered: Arc::new(Mutex::new(Vec::new())),
    };
    let clients = options.clients.max(1);
    let started = Instant::now();
    let senders = shared.spawn(clients, options.items);
    if kill {
        // Halfway, with deliveries in flight to every process, the indexing one dies.
        while shared.sent() < options.items / 2 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let lease = domain::event::lease_holder(&app.db, consumer)
            .await?
            .context("no indexer holds the lease")?;
        let victim = fleet.kill_owner(&lease)?;
        eprintln!("killed process {victim} (it held the indexer's lease)");
        shared.urls.lock().expect("never poisoned").remove(victim);
    }
    for sender in senders {
        sender.await??;
    }
    let mut resent = 0;
    let Senders {
        urls,
        latencies,
        unanswered,
        ..
    } = shared;
    // What a dead process did not answer goes to a live one, as a sender retries.
    let missed: Vec<usize> = std::mem::take(&mut *unanswered.lock().expect("never poisoned"));
    let live = urls.lock().expect("never poisoned").clone();
    for n in missed {
        let path = &paths[n % paths.len()];
        if !send(&client, &live[n % live.len()], path, &row, n).await? {
            bail!("delivery {n} was answered by no live process");
        }
        resent += 1;
    }
    let elapsed = started.elapsed();
    let done = Instant::now();
    let index_deadline = done + Duration::from_secs(300);
    while crate::search::indexer::lag(&app.db, consumer).await? > 0 {
        if Instant::now() > index_deadline {
            bail!("the index did not catch up within 5 minutes");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let index_caught_up = done.elapsed();
    let mut latencies = std::mem::take(&mut *latencies.lock().expect("never poisoned"));
    latencies.sort();
    let at = |q: f64| {
        latencies
            .get(((latencies.len() as f64 * q) as usize).min(latencies.len().saturating_sub(1)))
            .copied()
            .unwrap_or_default()
    };
    Ok(ScaleRow {
        processes: fleet.children.len(),
        items: options.items,
        per_second: options.items as f64 / elapsed.as_secs_f64(),
        p50: at(0.50),
        p99: at(0.99),
        killed: kill.then_some(Killed {
            resent,
            stored: 0,
            distinct: 0,
        }),
        index_caught_up,
    })
}
