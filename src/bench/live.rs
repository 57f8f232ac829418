//! The live-update benchmark: subscribers on `/graphql/ws` while items are stored at a
//! steady rate, each timed from the commit of its transaction to its arrival on every
//! subscriber's socket. Every message is checked: each subscriber must receive every
//! item once, in order, with its text.

use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

use crate::domain::{self, Role};
use crate::App;

/// What to run.
#[derive(Clone, Debug)]
pub struct LiveOptions {
    /// Items stored a second (each one interaction and its conversation's events).
    pub rate: usize,
    pub seconds: u64,
    pub subscribers: usize,
}

/// The figures of the live-update benchmark.
#[derive(Debug)]
pub struct LiveBenchReport {
    pub options: LiveOptions,
    pub items: usize,
    /// Items stored a second, as achieved.
    pub stored_per_second: f64,
    /// Events appended to the log a second over the run (every kind).
    pub events_per_second: f64,
    pub p50: Duration,
    pub p90: Duration,
    pub p99: Duration,
    pub max: Duration,
}

/// Items a transaction: the writer stores a batch every [`TICK`].
const TICK: Duration = Duration::from_millis(10);

/// The text a warm-up item starts with: stored before the timed items, until every
/// socket has received one.
const WARM_UP: &str = "live warm-up";

const SUBSCRIPTION: &str =
    "subscription { interactionReceived { cursor interaction { text direction } } }";

/// Serves `app` on a loopback port, opens `subscribers` sockets subscribed to every new
/// interaction, waits until each has received a warm-up item (its subscription then in
/// the feed, started), stores `rate` items a second for `seconds` (a transaction every 10 ms),
/// and times each item from its commit to its arrival on each socket. Deletes the scratch
/// workspace afterwards.
pub async fn live(app: &App, options: LiveOptions) -> anyhow::Result<LiveBenchReport> {
    let slug = format!("bench-live-{}", uuid::Uuid::now_v7().simple());
    let workspace = domain::workspace::ensure(&app.db, &slug).await?;
    let result = run(app, workspace.id, &options).await;
    domain::workspace::delete(&app.db, workspace.id).await?;
    result
}

async fn run(
    app: &App,
    workspace: entity::WorkspaceId,
    options: &LiveOptions,
) -> anyhow::Result<LiveBenchReport> {
    let caller = domain::Caller::owner_without_key(workspace, "bench");
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
    let (_, key) =
        domain::workspace::create_key(&app.db, workspace, Role::Viewer, "bench-live").await?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(crate::http::serve(app.clone(), listener, async {
        let _ = stopped.await;
    }));

    let per_tick = (options.rate as f64 * TICK.as_secs_f64()).ceil().max(1.0) as usize;
    let ticks = (options.seconds as f64 / TICK.as_secs_f64()).ceil() as usize;
    let items = per_tick * ticks;
    // When each item's transaction committed (as seen by the writer).
    let mut committed = Vec::with_capacity(items);
    let mut readers = Vec::new();
    let subscribers = options.subscribers.max(1);
    // Each socket says when its first warm-up item arrived: its subscription is then in
    // the feed, and everything stored after it reaches it.
    let (joined, mut joins) = tokio::sync::mpsc::channel::<()>(subscribers);
    for _ in 0..subscribers {
        let mut socket = subscribe(&addr, &key).await?;
        let joined = joined.clone();
        readers.push(tokio::spawn(async move {
            let mut joined = Some(joined);
            let mut arrivals = Vec::with_capacity(items);
            let mut last_cursor = String::new();
            while arrivals.len() < items {
                let message = tokio::time::timeout(Duration::from_secs(30), socket.next())
                    .await
                    .context("no message for 30 s")?;
                let Some(Ok(Message::Text(text))) = message else {
                    bail!("the socket closed: {message:?}");
                };
                let arrived = Instant::now();
                let value: Value = serde_json::from_str(&text)?;
                if value["type"] == "ping" {
                    continue;
                }
                let data = &value["payload"]["data"]["interactionReceived"];
                if value["type"] != "next" || data.is_null() {
                    bail!("an unexpected message: {value}");
                }
                // Cursors are opaque: the order is checked on the items' numbers below.
                let cursor = data["cursor"].as_str().unwrap_or_default().to_owned();
                if cursor.is_empty() || cursor == last_cursor {
                    bail!("cursor {cursor:?} after {last_cursor:?}: missing or repeated");
                }
                last_cursor = cursor;
                let text = data["interaction"]["text"].as_str();
                if text.is_some_and(|text| text.starts_with(WARM_UP)) {
                    if !arrivals.is_empty() {
                        bail!("a warm-up item arrived after item {}", arrivals.len() - 1);
                    }
                    if let Some(joined) = joined.take() {
                        joined.send(()).await?;
                    }
                    continue;
                }
                let n: usize = text
                    .and_then(|text| text.strip_prefix("live item "))
                    .and_then(|n| n.parse().ok())
                    .with_context(|| format!("an unexpected interaction: {data}"))?;
                if n != arrivals.len() {
                    bail!("item {n} arrived where item {} was due", arrivals.len());
                }
                arrivals.push(arrived);
            }
            Ok(arrivals)
        }));
    }

    // The `ready` answer does not prove a subscription joined the feed (the server starts
    // a socket's operations side by side): store warm-up items until each socket has seen one.
    drop(joined);
    let base = chrono::Utc::now();
    let mut seen = 0;
    let deadline = Instant::now() + Duration::from_secs(10);
    for n in 0.. {
        crate::ingest::ingest(&app.db, &source, &[warm_up(n, base)], None, None).await?;
        while seen < subscribers {
            match tokio::time::timeout(TICK, joins.recv()).await {
                Ok(Some(())) => seen += 1,
                Ok(None) => {
                    failed(readers).await?;
                    bail!("a subscriber ended before its first warm-up item");
                }
                Err(_) => break,
            }
        }
        if seen == subscribers {
            break;
        }
        if Instant::now() > deadline {
            failed(readers).await?;
            bail!(
                "{} of {subscribers} subscriptions received no warm-up item in 10 s",
                subscribers - seen
            );
        }
    }

    let head = domain::event::head(&app.db).await?;
    let started = Instant::now();
    let mut interval = tokio::time::interval(TICK);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    for tick in 0..ticks {
        interval.tick().await;
        let batch: Vec<connectors::InboundItem> = (tick * per_tick..(tick + 1) * per_tick)
            .map(|n| item(n, base))
            .collect();
        crate::ingest::ingest(&app.db, &source, &batch, None, None).await?;
        let at = Instant::now();
        committed.extend(std::iter::repeat_n(at, per_tick));
    }
    let elapsed = started.elapsed().as_secs_f64();
    let events = domain::event::head(&app.db).await? - head;
    let mut latencies = Vec::new();
    for reader in readers {
        let arrivals: Vec<Instant> = reader.await.context("a subscriber panicked")??;
        // An item may reach a socket before the writer's own call has returned: zero.
        latencies.extend(
            arrivals
                .iter()
                .zip(&committed)
                .map(|(arrived, at)| arrived.saturating_duration_since(*at)),
        );
    }
    let _ = stop.send(());
    let _ = server.await;
    latencies.sort();
    let at = |q: f64| latencies[((latencies.len() as f64 * q) as usize).min(latencies.len() - 1)];
    Ok(LiveBenchReport {
        options: options.clone(),
        items,
        stored_per_second: items as f64 / elapsed,
        events_per_second: events as f64 / elapsed,
        p50: at(0.50),
        p90: at(0.90),
        p99: at(0.99),
        max: *latencies.last().expect("at least one item"),
    })
}

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A socket initialised with `key` and subscribed.
async fn subscribe(addr: &std::net::SocketAddr, key: &str) -> anyhow::Result<Socket> {
    let mut request = format!("ws://{addr}/graphql/ws").into_client_request()?;
    request
        .headers_mut()
        .insert("Sec-WebSocket-Protocol", "graphql-transport-ws".parse()?);
    let (mut socket, _) = tokio_tungstenite::connect_async(request).await?;
    let send = |value: Value| Message::text(value.to_string());
    socket
        .send(send(json!({ "type": "connection_init", "payload": { "Authorization": format!("Bearer {key}") } })))
        .await?;
    socket
        .send(send(
            json!({ "id": "live", "type": "subscribe", "payload": { "query": SUBSCRIPTION } }),
        ))
        .await?;
    // A query after it: its answer says the socket is initialised, not that the
    // subscription joined the feed (the warm-up in `run` makes sure of that).
    socket
        .send(send(
            json!({ "id": "ready", "type": "subscribe", "payload": { "query": "{ me { id } }" } }),
        ))
        .await?;
    loop {
        let message = tokio::time::timeout(Duration::from_secs(10), socket.next())
            .await
            .context("the subscription did not start")?;
        let Some(Ok(Message::Text(text))) = message else {
            bail!("the socket closed: {message:?}");
        };
        let value: Value = serde_json::from_str(&text)?;
        if value["type"] == "complete" && value["id"] == "ready" {
            return Ok(socket);
        }
        if value["type"] == "connection_error" || value["payload"]["errors"].is_array() {
            bail!("the subscription failed: {value}");
        }
    }
}

/// The error of the first subscriber that has ended, given a second to end (the others
/// still wait for items).
async fn failed(
    readers: Vec<tokio::task::JoinHandle<anyhow::Result<Vec<Instant>>>>,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(1);
    while !readers.iter().any(|reader| reader.is_finished()) && Instant::now() < deadline {
        tokio::time::sleep(TICK).await;
    }
    for reader in readers.into_iter().filter(|reader| reader.is_finished()) {
        reader.await.context("a subscriber panicked")??;
    }
    Ok(())
}

/// Warm-up item `n`: by an author and in a thread of its own, so the timed items make
/// the same customers, conversations and events as without it.
fn warm_up(n: usize, base: chrono::DateTime<chrono::Utc>) -> connectors::InboundItem {
    connectors::InboundItem {
        external_id: format!("live-warm-up-{n}"),
        author: connectors::Author {
            platform_id: "https://social.example/users/live-warm-up".into(),
            display_name: Some("Warm-up".into()),
            ..connectors::Author::default()
        },
        text: format!("{WARM_UP} {n}"),
        thread_key: Some("live-warm-up".into()),
        ..item(n, base)
    }
}

/// Item `n`: a mention by one of a hundred authors.
fn item(n: usize, base: chrono::DateTime<chrono::Utc>) -> connectors::InboundItem {
    let author = n % 100;
    connectors::InboundItem {
        external_id: format!("live-{n}"),
        author: connectors::Author {
            platform_id: format!("https://social.example/users/live{author}"),
            display_name: Some(format!("Live {author}")),
            ..connectors::Author::default()
        },
        outbound: false,
        kind: "mention".into(),
        subject: None,
        text: format!("live item {n}"),
        html: None,
        url: None,
        language: None,
        occurred_at: base + chrono::Duration::milliseconds(n as i64),
        thread_key: Some(format!("live-thread-{author}")),
        in_reply_to: None,
        raw: json!({ "n": n }),
    }
}
