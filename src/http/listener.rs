//! The HTTP listener: accepts connections and serves the router on them with the limits
//! one client must not be able to exceed.
//!
//! `axum::serve` has no timeouts and no connection cap: 500 clients that send their
//! headers one byte a minute, or a few hundred idle sockets under a low file-descriptor
//! limit, kept the server from answering anyone, `/healthz` included. Here:
//! - a client has `header_read_timeout_secs` to send a request's headers, and a kept-alive
//!   connection may stay idle between requests that long too (hyper's header timer runs
//!   whenever the connection waits for a request head);
//! - at most `max_connections` are open (lowered to fit the process's file-descriptor limit,
//!   which is first raised to its hard limit); when a new client arrives at the cap, the
//!   longest-idle connection (no request in flight) is closed to make room, so idle crowds
//!   cannot lock out a new client; only when every connection is busy is the newcomer
//!   turned away;
//! - one client address holds at most `max_connections_per_client` of them, so a single
//!   client sending slow bodies cannot take every place: past that, its own longest-idle
//!   connection makes room, or its new one is refused;
//! - on shutdown, the listener closes, every connection finishes the request in hand and
//!   closes, and after the request budget and a grace period the server stops regardless.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::ConnectInfo;
use axum::Router;
use hyper::body::{Body as _, Incoming};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::{watch, Notify};

use crate::config::Limits;

/// File descriptors kept for the database pool, the search index, log files and
/// outbound connections when the connection cap is fitted to the descriptor limit.
const RESERVED_FDS: u64 = 256;

/// Serves `router` on `listener` until `shutdown` completes, then lets every connection
/// finish the request in hand.
pub async fn serve(
    router: Router,
    listener: TcpListener,
    limits: &Limits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let cap = connection_cap(limits.max_connections);
    let per_client = limits.max_connections_per_client.max(1);
    let drain = Duration::from_secs(limits.request_timeout_secs.max(1) + 5);
    let header_timeout = Duration::from_secs(limits.header_read_timeout_secs.max(1));
    let connections = Arc::new(Connections::default());
    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut shutdown => break,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(err) => {
                // Out of descriptors (EMFILE/ENFILE) or a connection reset before accept:
                // make room if we can and try again shortly, never spin.
                tracing::warn!(error = %err, "accepting a connection failed");
                connections.evict_idle();
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
        };
        let client = client(peer.ip());
        if connections.of(client) >= per_client && !connections.evict_idle_of(Some(client)) {
            tracing::warn!(%peer, per_client, "a client holds too many busy connections; refusing a new one");
            drop(stream);
            continue;
        }
        if connections.len() >= cap && !connections.evict_idle() {
            tracing::warn!(%peer, cap, "every connection is busy; refusing a new one");
            drop(stream);
            continue;
        }
        let _ = stream.set_nodelay(true);
        let slot = connections.open(client);
        let connections = connections.clone();
        let router = router.clone();
        let mut stop = stop_rx.clone();
        tokio::spawn(async move {
            let id = slot.id;
            // Leaves the table however the task ends, a panic included.
            let _leave = Leave {
                connections: connections.clone(),
                id,
            };
            let tracked = connections.clone();
            let service = hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
                let mut router = router.clone();
                // Busy from the moment the request's body has arrived whole (at once when
                // it has none) until its answer is ready: a client still trickling a body
                // holds no work of ours yet and stays evictable like an idle one.
                let busy = Arc::new(BusySlot {
                    connections: tracked.clone(),
                    id,
                    guard: Mutex::new(None),
                    done: std::sync::atomic::AtomicBool::new(false),
                });
                if request.body().is_end_stream() {
                    busy.arrived();
                }
                let arrival = busy.clone();
                async move {
                    let mut request = request.map(|body| {
                        axum::body::Body::new(Arrival {
                            inner: body,
                            slot: Some(arrival),
                        })
                    });
                    request.extensions_mut().insert(ConnectInfo(peer));
                    let response = tower::Service::call(&mut router, request).await;
                    busy.finished();
                    Ok::<_, Infallible>(match response {
                        Ok(response) => response,
                        Err(never) => match never {},
                    })
                }
            });
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(header_timeout)
                .keep_alive(true);
            let connection = builder
                .serve_connection(TokioIo::new(stream), service)
                .with_upgrades();
            tokio::pin!(connection);
            tokio::select! {
                _ = connection.as_mut() => {}
                // Evicted: it was idle (or still sending its headers) when picked; it is
                // dropped at once, so its place is free the moment it leaves the table.
                () = slot.close.notified() => {}
                () = async { let _ = stop.wait_for(|stop| *stop).await; } => {
                    // Shutting down: the request in hand finishes, then the connection closes.
                    connection.as_mut().graceful_shutdown();
                    let _ = connection.as_mut().await;
                }
            }
        });
    }
    // New clients are refused at once rather than left waiting in the backlog.
    drop(listener);
    let _ = stop_tx.send(true);
    // Connections finish their request in hand within its time budget; one whose client
    // stopped reading its answer gets a grace period, then the server stops regardless.
    let deadline = Instant::now() + drain;
    while connections.len() > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

/// One request's claim on its connection's busy mark.
struct BusySlot {
    connections: Arc<Connections>,
    id: u64,
    guard: Mutex<Option<Busy>>,
    /// The answer is ready: a body that ends later marks nothing.
    done: std::sync::atomic::AtomicBool,
}

impl BusySlot {
    fn arrived(&self) {
        if self.done.load(Ordering::SeqCst) {
            return;
        }
        let mut guard = self
            .guard
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if guard.is_none() {
            *guard = Some(self.connections.busy(self.id));
        }
    }

    fn finished(&self) {
        self.done.store(true, Ordering::SeqCst);
        self.guard
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take();
    }
}

/// A request body that marks its connection busy once it has arrived whole.
struct Arrival {
    inner: Incoming,
    slot: Option<Arc<BusySlot>>,
}

impl hyper::body::Body for Arrival {
    type Data = hyper::body::Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Self::Data>, Self::Error>>> {
        let polled = std::pin::Pin::new(&mut self.inner).poll_frame(cx);
        let ended = match &polled {
            std::task::Poll::Ready(None) => true,
            std::task::Poll::Ready(Some(Ok(_))) => self.inner.is_end_stream(),
            _ => false,
        };
        if ended {
            if let Some(slot) = self.slot.take() {
                slot.arrived();
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}

/// Takes a connection out of the table when its task ends.
struct Leave {
    connections: Arc<Connections>,
    id: u64,
}

impl Drop for Leave {
    fn drop(&mut self) {
        self.connections.close(self.id);
    }
}

/// The connection cap: the configured one, lowered to what the descriptor limit allows
/// (after raising the soft limit to the hard one).
fn connection_cap(configured: usize) -> usize {
    let limit = raise_fd_limit();
    let fitting = limit.saturating_sub(RESERVED_FDS).max(16);
    configured.clamp(1, usize::try_from(fitting).unwrap_or(usize::MAX))
}

/// Raises the soft limit on open files to the hard limit; returns the limit in force.
fn raise_fd_limit() -> u64 {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct we pass.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return 1_024;
        }
        if limit.rlim_cur < limit.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: limit.rlim_max,
                rlim_max: limit.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                limit = raised;
            }
        }
    }
    limit.rlim_cur
}

/// The open connections: when each was last active and whether a request is in flight.
#[derive(Default)]
struct Connections {
    next: AtomicU64,
    table: Mutex<HashMap<u64, Slot>>,
}

struct Slot {
    client: IpAddr,
    last_active: Instant,
    in_flight: u32,
    close: Arc<Notify>,
}

/// A connection's handle on its own entry.
struct OpenSlot {
    id: u64,
    close: Arc<Notify>,
}

/// Marks a connection busy while a request is in flight.
struct Busy {
    connections: Arc<Connections>,
    id: u64,
}

impl Drop for Busy {
    fn drop(&mut self) {
        if let Some(slot) = self.connections.lock().get_mut(&self.id) {
            slot.in_flight = slot.in_flight.saturating_sub(1);
            slot.last_active = Instant::now();
        }
    }
}

impl Connections {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Slot>> {
        self.table
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn len(&self) -> usize {
        self.lock().len()
    }

    /// Connections open from `client`.
    fn of(&self, client: IpAddr) -> usize {
        self.lock()
            .values()
            .filter(|slot| slot.client == client)
            .count()
    }

    fn open(&self, client: IpAddr) -> OpenSlot {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let close = Arc::new(Notify::new());
        self.lock().insert(
            id,
            Slot {
                client,
                last_active: Instant::now(),
                in_flight: 0,
                close: close.clone(),
            },
        );
        OpenSlot { id, close }
    }

    fn close(&self, id: u64) {
        self.lock().remove(&id);
    }

    fn busy(self: &Arc<Self>, id: u64) -> Busy {
        if let Some(slot) = self.lock().get_mut(&id) {
            slot.in_flight += 1;
            slot.last_active = Instant::now();
        }
        Busy {
            connections: self.clone(),
            id,
        }
    }

    /// Asks the longest-idle connection to close; `false` when every one is busy. The
    /// evicted entry leaves the table at once, so the caller may take its place.
    fn evict_idle(&self) -> bool {
        self.evict_idle_of(None)
    }

    /// The same among the connections of `client` (of every client when `None`).
    fn evict_idle_of(&self, client: Option<IpAddr>) -> bool {
        let mut table = self.lock();
        let oldest = table
            .iter()
            .filter(|(_, slot)| slot.in_flight == 0)
            .filter(|(_, slot)| client.is_none_or(|client| slot.client == client))
            .min_by_key(|(_, slot)| slot.last_active)
            .map(|(id, _)| *id);
        match oldest.and_then(|id| table.remove(&id)) {
            Some(slot) => {
                slot.close.notify_one();
                true
            }
            None => false,
        }
    }
}

/// The client a request counts against: an IPv4 address (an IPv4-mapped IPv6 one read as
/// IPv4), or an IPv6 /64 — one subscriber's allocation, whose addresses a client may
/// rotate through at will.
pub fn client(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => {
            let bits = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(std::net::Ipv6Addr::from(bits))
        }
        v4 => v4,
    }
}

/// The client address of a request, as the listener recorded it.
pub fn peer(request: &axum::http::Request<axum::body::Body>) -> Option<SocketAddr> {
    request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| *addr)
}

#[cfg(test)]
mod tests {
    use super::client;

    #[test]
    fn a_client_is_an_ipv4_address_or_an_ipv6_64() {
        let ip = |text: &str| text.parse().unwrap();
        assert_eq!(client(ip("203.0.113.7")), ip("203.0.113.7"));
        assert_eq!(client(ip("::ffff:203.0.113.7")), ip("203.0.113.7"));
        assert_eq!(client(ip("2001:db8:1:2:aaaa::1")), ip("2001:db8:1:2::"));
        assert_eq!(
            client(ip("2001:db8:1:2:ffff:ffff:ffff:ffff")),
            client(ip("2001:db8:1:2::9"))
        );
        assert_ne!(client(ip("2001:db8:1:3::1")), client(ip("2001:db8:1:2::1")));
    }
}
