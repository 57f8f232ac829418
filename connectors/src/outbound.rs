//! The outbound guard: every connection Rapport opens (feed URLs and their next pages,
//! Mastodon, webhook reply URLs, every redirect hop, IMAP and SMTP) is checked here against
//! the **address it actually connects to**, at connect time, so a name that resolves to a
//! public address when a source is saved and to `127.0.0.1` when it is synced (DNS
//! rebinding) is still refused. Non-public addresses ([`is_public`]) are refused unless the
//! operator's `[outbound] allow` list ([`OutboundPolicy`]) names them.
//!
//! How it hooks into reqwest ([`Outbound::new`] builds the only client connectors get):
//! - a [`reqwest::dns::Resolve`] that resolves names with tokio and keeps only permitted
//!   addresses, so hyper connects to nothing else;
//! - a connector layer (`ClientBuilder::connector_layer`) that sees the target of every
//!   new connection: IP-literal hosts never reach the resolver, so the layer checks
//!   `(ip, port)` itself; for names it passes the port (and whether a name entry allows the
//!   host) to the resolver through a task-local, so `ip:port` entries are exact.
//!
//! A refusal is one message whatever the reason ([`Refused`]); it never says whether the
//! port was open, because nothing is ever sent to a refused address.

use std::fmt;
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::net::TcpStream;

use crate::ConnectorError;

/// The text every refusal starts with.
pub const REFUSED: &str = "refused: not a public address";

/// A connection the policy refused. `host` is the host as the URL or setting named it,
/// never the address it resolved to.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("refused: not a public address ({host})")]
pub struct Refused {
    pub host: String,
}

/// An `[outbound] allow` entry that cannot be read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid [outbound] allow entry `{entry}`: {reason}")]
pub struct InvalidEntry {
    pub entry: String,
    pub reason: String,
}

/// An address block: `10.1.0.0/16`, `fd00::/8`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Cidr {
    network: IpAddr,
    prefix: u8,
}

impl Cidr {
    fn contains(&self, ip: IpAddr) -> bool {
        match (self.network, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => in_v4(ip, u32::from(net), self.prefix),
            (IpAddr::V6(net), IpAddr::V6(ip)) => in_v6(ip, u128::from(net), self.prefix),
            _ => false,
        }
    }
}

fn in_v4(ip: Ipv4Addr, network: u32, prefix: u8) -> bool {
    let mask = if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(prefix))
    };
    u32::from(ip) & mask == network & mask
}

fn in_v6(ip: Ipv6Addr, network: u128, prefix: u8) -> bool {
    let mask = if prefix == 0 {
        0
    } else {
        u128::MAX << (128 - u32::from(prefix))
    };
    u128::from(ip) & mask == network & mask
}

/// One allow entry.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Entry {
    /// An address, on one port or on any.
    Ip(IpAddr, Option<u16>),
    /// A block of addresses, any port.
    Block(Cidr),
    /// A host name (lowercase, without a trailing dot), on one port or on any.
    Host(String, Option<u16>),
}

/// What the operator trusts beyond the public internet: the parsed `[outbound] allow`
/// list. The default allows nothing but public addresses.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OutboundPolicy {
    entries: Vec<Entry>,
}

/// The same address in one spelling: an IPv4-mapped IPv6 address is its IPv4 address.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_canonical(),
        v4 => v4,
    }
}

/// A host name as written in a URL or setting, compared case-insensitively and without
/// its trailing dot (`LOCALHOST.` is `localhost`).
fn normal_host(host: &str) -> String {
    host.trim().trim_end_matches('.').to_ascii_lowercase()
}

fn parse_port(entry: &str, port: &str) -> Result<u16, InvalidEntry> {
    match port.parse::<u16>() {
        Ok(port) if port > 0 => Ok(port),
        _ => Err(invalid(entry, "the port must be a number from 1 to 65535")),
    }
}

fn invalid(entry: &str, reason: &str) -> InvalidEntry {
    InvalidEntry {
        entry: entry.to_owned(),
        reason: reason.to_owned(),
    }
}

fn parse_entry(raw: &str) -> Result<Entry, InvalidEntry> {
    let entry = raw.trim();
    if entry.is_empty() {
        return Err(invalid(raw, "the entry is empty"));
    }
    if let Some((address, prefix)) = entry.split_once('/') {
        let network: IpAddr = address
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse()
            .map_err(|_| invalid(entry, "a block is an address and a prefix: 10.1.0.0/16"))?;
        let max = if network.is_ipv4() { 32 } else { 128 };
        let prefix = prefix
            .parse::<u8>()
            .ok()
            .filter(|prefix| *prefix <= max)
            .ok_or_else(|| invalid(entry, &format!("the prefix must be 0 to {max}")))?;
        // A block written in IPv4-mapped IPv6 form (`::ffff:10.0.0.0/104`) is an IPv4
        // block: its prefix loses the 96 bits of the mapping.
        let canonical_network = canonical(network);
        let prefix = if network.is_ipv6() && canonical_network.is_ipv4() {
            prefix
                .checked_sub(96)
                .ok_or_else(|| invalid(entry, "an IPv4-mapped block needs a prefix of 96 to 128"))?
        } else {
            prefix
        };
        return Ok(Entry::Block(Cidr {
            network: canonical_network,
            prefix,
        }));
    }
    if let Ok(socket) = entry.parse::<SocketAddr>() {
        if socket.port() == 0 {
            return Err(invalid(entry, "the port must be a number from 1 to 65535"));
        }
        return Ok(Entry::Ip(canonical(socket.ip()), Some(socket.port())));
    }
    let bare = entry
        .strip_prefix('[')
        .and_then(|rest| rest.strip_suffix(']'))
        .unwrap_or(entry);
    if let Ok(ip) = bare.parse::<IpAddr>() {
        return Ok(Entry::Ip(canonical(ip), None));
    }
    let (host, port) = match entry.rsplit_once(':') {
        Some((host, port)) => (host, Some(parse_port(entry, port)?)),
        None => (entry, None),
    };
    let host = normal_host(host);
    let label_ok = |label: &str| {
        !label.is_empty()
            && label.len() <= 63
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    if host.is_empty() || host.len() > 253 || !host.split('.').all(label_ok) {
        return Err(invalid(
            entry,
            "expected an address (127.0.0.1, ::1), an address and port (127.0.0.1:8080, [::1]:8080), a block (10.1.0.0/16) or a host name (intranet.example, intranet.example:8443)",
        ));
    }
    if host
        .rsplit('.')
        .next()
        .is_some_and(|last| last.bytes().all(|b| b.is_ascii_digit()))
    {
        return Err(invalid(
            entry,
            "this looks like an address but is not one: write it as a.b.c.d",
        ));
    }
    Ok(Entry::Host(host, port))
}

impl OutboundPolicy {
    /// Reads `[outbound] allow` entries: `127.0.0.1`, `127.0.0.1:8080`, `::1`,
    /// `[::1]:8080`, `10.1.0.0/16`, `fd00::/8`, `intranet.example`,
    /// `intranet.example:8443`. Fails on the first entry that is none of these, naming it.
    pub fn parse<I, S>(entries: I) -> Result<OutboundPolicy, InvalidEntry>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let entries = entries
            .into_iter()
            .map(|entry| parse_entry(entry.as_ref()))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(OutboundPolicy { entries })
    }

    /// Whether a connection to `ip` on `port` is allowed: a public address, or one an
    /// entry names. `port` is `None` when it is not known; then only entries without a
    /// port apply.
    pub fn permits(&self, ip: IpAddr, port: Option<u16>) -> bool {
        let ip = canonical(ip);
        if is_public(ip) {
            return true;
        }
        self.entries.iter().any(|entry| match entry {
            Entry::Ip(allowed, allowed_port) => {
                *allowed == ip && (allowed_port.is_none() || *allowed_port == port)
            }
            Entry::Block(block) => block.contains(ip),
            Entry::Host(..) => false,
        })
    }

    /// Whether a host-name entry names `host` on `port` (then every address it resolves
    /// to is allowed).
    pub fn names(&self, host: &str, port: u16) -> bool {
        let host = normal_host(host);
        self.entries.iter().any(|entry| match entry {
            Entry::Host(name, allowed_port) => {
                *name == host && allowed_port.is_none_or(|allowed| allowed == port)
            }
            _ => false,
        })
    }

    /// Resolves `host` (a name or an address literal, IPv6 with or without brackets) and
    /// keeps the addresses a connection to `port` may go to. [`Refused`] when none is left.
    pub async fn resolve(&self, host: &str, port: u16) -> Result<Vec<SocketAddr>, ResolveError> {
        let bare = host
            .trim()
            .strip_prefix('[')
            .and_then(|rest| rest.strip_suffix(']'))
            .unwrap_or(host.trim());
        if let Ok(ip) = bare.parse::<IpAddr>() {
            return if self.permits(ip, Some(port)) {
                Ok(vec![SocketAddr::new(ip, port)])
            } else {
                Err(ResolveError::Refused(refused(host)))
            };
        }
        let named = self.names(bare, port);
        let addresses = lookup(bare, port).await.map_err(ResolveError::Lookup)?;
        let permitted: Vec<SocketAddr> = addresses
            .into_iter()
            .filter(|address| named || self.permits(address.ip(), Some(port)))
            .collect();
        if permitted.is_empty() {
            Err(ResolveError::Refused(refused(host)))
        } else {
            Ok(permitted)
        }
    }

    /// Opens a TCP connection to `host:port` for a connector that speaks its own protocol
    /// (IMAP, SMTP): resolves, keeps the permitted addresses, connects to the first that
    /// answers. A refusal is [`ConnectorError::Refused`]; nothing is sent to a refused
    /// address, so open and closed ports look the same.
    pub async fn connect(&self, host: &str, port: u16) -> Result<TcpStream, ConnectorError> {
        let addresses = self.resolve(host, port).await.map_err(|err| match err {
            ResolveError::Refused(refused) => ConnectorError::Refused(refused.host),
            ResolveError::Lookup(err) => {
                ConnectorError::Transport(format!("could not resolve {host}: {err}"))
            }
        })?;
        let mut last = None;
        for address in addresses {
            match TcpStream::connect(address).await {
                Ok(stream) => return Ok(stream),
                Err(err) => last = Some(err),
            }
        }
        Err(ConnectorError::Transport(format!(
            "could not connect to {host}:{port}: {}",
            last.map(|err| err.to_string()).unwrap_or_default()
        )))
    }
}

/// Why [`OutboundPolicy::resolve`] gave no address.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    #[error(transparent)]
    Refused(Refused),
    #[error("could not resolve the host: {0}")]
    Lookup(std::io::Error),
}

/// Resolves a name: `localhost` and `*.localhost` (any case, trailing dot or not) are the
/// loopback addresses without asking DNS (RFC 6761), everything else through the system
/// resolver.
async fn lookup(host: &str, port: u16) -> std::io::Result<Vec<SocketAddr>> {
    let name = normal_host(host);
    if name == "localhost" || name.ends_with(".localhost") {
        return Ok(vec![
            SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port),
            SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), port),
        ]);
    }
    Ok(tokio::net::lookup_host((host, port)).await?.collect())
}

fn refused(host: &str) -> Refused {
    Refused {
        host: host.trim().to_owned(),
    }
}

/// Address blocks that are not the public internet, IPv4 (IANA special-purpose registry,
/// RFC 6890 and successors).
const BLOCKED_V4: [(Ipv4Addr, u8); 15] = [
    (Ipv4Addr::new(0, 0, 0, 0), 8),       // "this network", unspecified
    (Ipv4Addr::new(10, 0, 0, 0), 8),      // private
    (Ipv4Addr::new(100, 64, 0, 0), 10),   // shared address space (CGNAT)
    (Ipv4Addr::new(127, 0, 0, 0), 8),     // loopback
    (Ipv4Addr::new(169, 254, 0, 0), 16),  // link-local (cloud metadata)
    (Ipv4Addr::new(172, 16, 0, 0), 12),   // private
    (Ipv4Addr::new(192, 0, 0, 0), 24),    // IETF protocol assignments
    (Ipv4Addr::new(192, 0, 2, 0), 24),    // TEST-NET-1
    (Ipv4Addr::new(192, 88, 99, 0), 24),  // 6to4 relay anycast (deprecated)
    (Ipv4Addr::new(192, 168, 0, 0), 16),  // private
    (Ipv4Addr::new(198, 18, 0, 0), 15),   // benchmarking
    (Ipv4Addr::new(198, 51, 100, 0), 24), // TEST-NET-2
    (Ipv4Addr::new(203, 0, 113, 0), 24),  // TEST-NET-3
    (Ipv4Addr::new(224, 0, 0, 0), 4),     // multicast
    (Ipv4Addr::new(240, 0, 0, 0), 4),     // reserved, and 255.255.255.255 broadcast
];

/// The same for IPv6, inside global unicast `2000::/3` (everything outside it is refused
/// apart from the forms that embed an IPv4 address, judged by that address).
const BLOCKED_V6: [(u128, u8); 7] = [
    (0x2001_0000_0000_0000_0000_0000_0000_0000, 23), // IETF protocol assignments, Teredo 2001::/32, benchmarking 2001:2::/48, ORCHID
    (0x2001_0db8_0000_0000_0000_0000_0000_0000, 32), // documentation
    (0x3fff_0000_0000_0000_0000_0000_0000_0000, 20), // documentation (RFC 9637)
    (0x5f00_0000_0000_0000_0000_0000_0000_0000, 16), // SRv6 SIDs
    (0x0064_ff9b_0001_0000_0000_0000_0000_0000, 48), // local-use NAT64 (outside 2000::/3 anyway)
    (0x0100_0000_0000_0000_0000_0000_0000_0000, 64), // discard-only (outside 2000::/3 anyway)
    (0xfc00_0000_0000_0000_0000_0000_0000_0000, 7),  // unique local (outside 2000::/3 anyway)
];

/// Whether `ip` is an address on the public internet. Refused: loopback, private,
/// link-local, CGNAT, unique-local, site-local, unspecified, multicast, broadcast,
/// documentation, benchmarking and reserved ranges, Teredo; IPv6 forms that embed an IPv4
/// address (IPv4-mapped `::ffff:a.b.c.d`, IPv4-compatible `::a.b.c.d`, IPv4-translated
/// `::ffff:0:a.b.c.d`, NAT64 `64:ff9b::/96`, 6to4 `2002::/16`) are judged by that address.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => is_public_v6(v6),
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    !BLOCKED_V4
        .iter()
        .any(|(network, prefix)| in_v4(ip, u32::from(*network), *prefix))
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    let bits = u128::from(ip);
    let low_v4 = Ipv4Addr::from(bits as u32);
    match bits >> 32 {
        // `::a.b.c.d` (IPv4-compatible; `::` and `::1` land in 0.0.0.0/8), `::ffff:a.b.c.d`
        // (mapped), `::ffff:0:a.b.c.d` (translated), `64:ff9b::a.b.c.d` (NAT64).
        0 | 0xffff | 0xffff_0000 | 0x0064_ff9b_0000_0000_0000_0000 => return is_public_v4(low_v4),
        _ => {}
    }
    if bits >> 112 == 0x2002 {
        // 6to4: the IPv4 address is in bits 16..48.
        return is_public_v4(Ipv4Addr::from((bits >> 80) as u32));
    }
    let global_unicast = bits >> 125 == 0b001;
    global_unicast
        && !BLOCKED_V6
            .iter()
            .any(|(network, prefix)| in_v6(ip, *network, *prefix))
}

/// The target of one new connection, passed from the connector layer to the resolver.
#[derive(Clone, Copy, Debug)]
struct Target {
    port: u16,
    /// A host-name entry allows this host: every address it resolves to is fine.
    named: bool,
}

tokio::task_local! {
    static TARGET: Target;
}

/// The resolver of the guarded client: tokio's resolver, keeping only permitted addresses.
struct GuardResolver {
    policy: Arc<OutboundPolicy>,
}

impl reqwest::dns::Resolve for GuardResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        // Set by the connector layer around every connection; without it (never expected)
        // the port is unknown and only port-less entries apply.
        let target = TARGET.try_with(|target| *target).ok();
        let policy = self.policy.clone();
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let port = target.map(|target| target.port);
            let named = target.is_some_and(|target| target.named);
            let addresses = lookup(&host, port.unwrap_or(0)).await?;
            let permitted: Vec<SocketAddr> = addresses
                .into_iter()
                .filter(|address| named || policy.permits(address.ip(), port))
                .collect();
            if permitted.is_empty() {
                return Err(Box::new(refused(&host)) as Box<dyn std::error::Error + Send + Sync>);
            }
            Ok(Box::new(permitted.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// The connector layer of the guarded client (see the module doc).
#[derive(Clone)]
struct GuardLayer {
    policy: Arc<OutboundPolicy>,
}

impl<S> tower_layer::Layer<S> for GuardLayer {
    type Service = GuardService<S>;

    fn layer(&self, inner: S) -> GuardService<S> {
        GuardService {
            inner,
            policy: self.policy.clone(),
        }
    }
}

#[derive(Clone)]
struct GuardService<S> {
    inner: S,
    policy: Arc<OutboundPolicy>,
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The scheme, host and port of a connection request. reqwest hands connector layers its
/// destination `Uri` in a type whose field is private; its `Debug` form is
/// `Unnameable(<uri>)`, which is all a layer can read. Anything else is `None`, and the
/// connection is refused (fail closed); a unit test pins the form.
fn target_of(request: &impl fmt::Debug) -> Option<(url::Host<String>, u16, String)> {
    let text = format!("{request:?}");
    let uri = text.strip_prefix("Unnameable(")?.strip_suffix(')')?;
    let url = reqwest::Url::parse(uri).ok()?;
    let port = url.port_or_known_default()?;
    let shown = url.host_str()?.to_owned();
    Some((url.host()?.to_owned(), port, shown))
}

impl<S, R> tower_service::Service<R> for GuardService<S>
where
    S: tower_service::Service<R, Error = BoxError>,
    S::Future: Send + 'static,
    S::Response: 'static,
    R: fmt::Debug,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: R) -> Self::Future {
        let refuse = |host: String| -> Self::Future {
            Box::pin(async move { Err(Box::new(Refused { host }) as BoxError) })
        };
        let Some((host, port, shown)) = target_of(&request) else {
            return refuse("an unreadable address".to_owned());
        };
        let target = match host {
            url::Host::Ipv4(ip) if !self.policy.permits(IpAddr::V4(ip), Some(port)) => {
                return refuse(shown)
            }
            url::Host::Ipv6(ip) if !self.policy.permits(IpAddr::V6(ip), Some(port)) => {
                return refuse(shown)
            }
            url::Host::Ipv4(_) | url::Host::Ipv6(_) => Target { port, named: false },
            url::Host::Domain(name) => Target {
                port,
                named: self.policy.names(&name, port),
            },
        };
        let inner = TARGET.sync_scope(target, || self.inner.call(request));
        Box::pin(TARGET.scope(target, inner))
    }
}

/// The most redirects a request follows.
pub const MAX_REDIRECTS: usize = 5;

/// The HTTP client connectors use, built only here so it is always guarded, and the policy
/// for connectors that open their own sockets.
#[derive(Clone)]
pub struct Outbound {
    policy: Arc<OutboundPolicy>,
    client: reqwest::Client,
    same_origin: reqwest::Client,
    wait: std::time::Duration,
}

impl Outbound {
    /// Builds the guarded clients: `configure` sets what the caller wants (user agent,
    /// timeouts); the guard (resolver, connector layer, no proxy, at most
    /// [`MAX_REDIRECTS`] redirects) is added after it so it cannot be undone.
    pub fn new(
        policy: OutboundPolicy,
        configure: impl Fn(reqwest::ClientBuilder) -> reqwest::ClientBuilder,
    ) -> Result<Outbound, reqwest::Error> {
        let policy = Arc::new(policy);
        let build = |redirect: reqwest::redirect::Policy| {
            configure(reqwest::Client::builder())
                .dns_resolver(Arc::new(GuardResolver {
                    policy: policy.clone(),
                }))
                .connector_layer(GuardLayer {
                    policy: policy.clone(),
                })
                // A proxy would connect on our behalf to addresses we never see.
                .no_proxy()
                // reqwest sends the previous URL as `Referer` on a redirect, to any host:
                // a token in a path (Telegram's bot URLs) or a key in a query (YouTube's
                // `key=`) would go along.
                .referer(false)
                .redirect(redirect)
                .build()
        };
        let client = build(reqwest::redirect::Policy::limited(MAX_REDIRECTS))?;
        let same_origin = build(same_origin_redirects())?;
        Ok(Outbound {
            policy,
            client,
            same_origin,
            wait: std::time::Duration::from_secs(30),
        })
    }

    /// Sets [`Outbound::wait`] (30 s unless set).
    pub fn with_wait(self, wait: std::time::Duration) -> Outbound {
        Outbound { wait, ..self }
    }

    /// How long a connector that connects itself (IMAP) waits for a connection, or for
    /// the server's next byte: the sync's `http_timeout_secs`, as the HTTP clients'
    /// timeout.
    pub fn wait(&self) -> std::time::Duration {
        self.wait
    }

    /// The guarded HTTP client (cheap to clone).
    pub fn client(&self) -> &reqwest::Client {
        &self.client
    }

    /// The guarded HTTP client that follows a redirect only within the origin (scheme, host
    /// and port) the request was sent to; a redirect elsewhere is not followed, and the
    /// caller gets the 3xx answer. For connectors whose credentials travel in headers of
    /// their own (Discourse's `Api-Key`): reqwest drops only `Authorization`, `Cookie` and
    /// `Proxy-Authorization` when a redirect changes host, and would send any other header
    /// to wherever the platform points.
    pub fn same_origin_client(&self) -> &reqwest::Client {
        &self.same_origin
    }

    /// The policy, for connectors that connect themselves.
    pub fn policy(&self) -> &Arc<OutboundPolicy> {
        &self.policy
    }
}

/// Follows at most [`MAX_REDIRECTS`] redirects, each within the first request's origin.
fn same_origin_redirects() -> reqwest::redirect::Policy {
    reqwest::redirect::Policy::custom(|attempt| {
        let origin = attempt.previous().first().map(|url| url.origin());
        if attempt.previous().len() > MAX_REDIRECTS {
            attempt.error("too many redirects")
        } else if origin != Some(attempt.url().origin()) {
            attempt.stop()
        } else {
            attempt.follow()
        }
    })
}

/// The refusal inside a reqwest error, wherever in its chain of sources it sits.
pub fn refusal_in<'a>(err: &'a (dyn std::error::Error + 'static)) -> Option<&'a Refused> {
    let mut current = Some(err);
    while let Some(err) = current {
        if let Some(refused) = err.downcast_ref::<Refused>() {
            return Some(refused);
        }
        current = err.source();
    }
    None
}

#[cfg(test)]
mod tests {
    #[test]
    fn an_ipv4_mapped_block_is_read_as_the_ipv4_block() {
        let policy = OutboundPolicy::parse(["::ffff:10.0.0.0/104"]).unwrap();
        assert!(policy.permits("10.1.2.3".parse().unwrap(), Some(80)));
        assert!(!policy.permits("192.168.1.1".parse().unwrap(), Some(80)));
        assert!(OutboundPolicy::parse(["::ffff:10.0.0.0/64"]).is_err());
    }

    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn special_purpose_ipv4_ranges_are_not_public() {
        for address in [
            "0.0.0.0",
            "0.1.2.3",
            "10.0.0.1",
            "10.255.255.255",
            "100.64.0.1",
            "100.127.255.254",
            "127.0.0.1",
            "127.255.255.254",
            "169.254.169.254",
            "172.16.0.1",
            "172.31.255.255",
            "192.0.0.1",
            "192.0.0.170",
            "192.0.2.1",
            "192.88.99.1",
            "192.168.1.1",
            "198.18.0.1",
            "198.19.255.255",
            "198.51.100.7",
            "203.0.113.9",
            "224.0.0.1",
            "239.255.255.250",
            "240.0.0.1",
            "255.255.255.255",
        ] {
            assert!(!is_public(ip(address)), "{address} must be refused");
        }
        for address in [
            "1.1.1.1",
            "8.8.8.8",
            "9.255.255.255",
            "11.0.0.1",
            "100.63.255.255",
            "100.128.0.1",
            "172.15.255.255",
            "172.32.0.1",
            "192.0.3.1",
            "192.167.1.1",
            "192.169.0.1",
            "198.17.255.255",
            "198.20.0.1",
            "223.255.255.255",
        ] {
            assert!(is_public(ip(address)), "{address} is public");
        }
    }

    #[test]
    fn special_purpose_ipv6_ranges_and_embedded_ipv4_are_judged() {
        for address in [
            "::",
            "::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "::ffff:169.254.169.254",
            "::127.0.0.1",
            "::10.1.2.3",
            "::ffff:0:127.0.0.1",
            "64:ff9b::127.0.0.1",
            "64:ff9b::a9fe:a9fe",
            "64:ff9b:1::1",
            "2002:7f00:1::1",
            "2002:c0a8:101::1",
            "2001::1",
            "2001:0:4136:e378:8000:63bf:3fff:fdd2",
            "2001:2::1",
            "2001:10::1",
            "2001:db8::1",
            "3fff::1",
            "5f00::1",
            "100::1",
            "fc00::1",
            "fd12:3456::1",
            "fe80::1",
            "febf::1",
            "fec0::1",
            "ff02::1",
            "ff0e::1",
            "4000::1",
            "e000::1",
        ] {
            assert!(!is_public(ip(address)), "{address} must be refused");
        }
        for address in [
            "2606:4700:4700::1111",
            "2a00:1450:4001:80b::200e",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
            "2002:808:808::1",
            "2001:4860:4860::8888",
        ] {
            assert!(is_public(ip(address)), "{address} is public");
        }
    }

    #[test]
    fn odd_spellings_of_loopback_are_normalised_by_the_url_parser_and_refused() {
        for url in [
            "http://2130706433/",
            "http://0x7f.1/",
            "http://127.1/",
            "http://0177.0.0.1/",
            "http://127.0.0.1./",
            "http://[::ffff:127.0.0.1]/",
            "http://[::ffff:7f00:1]/",
            "http://[::1]/",
            "http://[0:0:0:0:0:0:0:1]/",
            "http://0.0.0.0/",
            "http://0/",
        ] {
            let parsed = reqwest::Url::parse(url).unwrap();
            let host = match parsed.host().unwrap() {
                url::Host::Ipv4(v4) => IpAddr::V4(v4),
                url::Host::Ipv6(v6) => IpAddr::V6(v6),
                url::Host::Domain(name) => panic!("{url} parsed as the name {name}"),
            };
            assert!(!is_public(host), "{url} ({host}) must be refused");
            assert!(!OutboundPolicy::default().permits(host, Some(80)), "{url}");
        }
    }

    #[test]
    fn allow_entries_of_every_form_are_read_and_matched() {
        let policy = OutboundPolicy::parse([
            "127.0.0.1:8080",
            "10.1.0.0/16",
            "fd00::/8",
            "::1",
            "[::2]:9000",
            " 192.168.1.5 ",
            "Intranet.Example",
            "mail.intranet.example:993",
        ])
        .unwrap();
        assert!(policy.permits(ip("127.0.0.1"), Some(8080)));
        assert!(!policy.permits(ip("127.0.0.1"), Some(8081)));
        assert!(!policy.permits(ip("127.0.0.1"), None));
        assert!(policy.permits(ip("::ffff:127.0.0.1"), Some(8080)));
        assert!(policy.permits(ip("10.1.200.3"), Some(1)));
        assert!(!policy.permits(ip("10.2.0.1"), Some(80)));
        assert!(policy.permits(ip("fd00::5"), Some(80)));
        assert!(!policy.permits(ip("fc00::5"), Some(80)));
        assert!(policy.permits(ip("::1"), Some(1234)));
        assert!(policy.permits(ip("::2"), Some(9000)));
        assert!(!policy.permits(ip("::2"), Some(9001)));
        assert!(policy.permits(ip("192.168.1.5"), Some(443)));
        assert!(
            policy.permits(ip("8.8.8.8"), Some(443)),
            "public is allowed"
        );
        assert!(policy.names("intranet.example", 80));
        assert!(policy.names("INTRANET.EXAMPLE.", 443));
        assert!(!policy.names("other.example", 80));
        assert!(policy.names("mail.intranet.example", 993));
        assert!(!policy.names("mail.intranet.example", 143));
        assert!(!OutboundPolicy::default().permits(ip("127.0.0.1"), Some(80)));
    }

    #[test]
    fn invalid_allow_entries_name_the_entry() {
        for entry in [
            "",
            "10.0.0.0/33",
            "::/129",
            "10.0.0.0/x",
            "127.0.0.1:0",
            "127.0.0.1:99999",
            "intranet.example:http",
            "http://intranet.example",
            "a b",
            "127.1",
            "*",
        ] {
            let err = OutboundPolicy::parse(["::1", entry]).unwrap_err();
            assert_eq!(err.entry, entry.trim(), "{entry}");
            assert!(err.to_string().contains(&format!("`{}`", entry.trim())));
        }
    }

    #[tokio::test]
    async fn connect_refuses_every_non_public_spelling_and_allows_what_is_named() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let closed = {
            let other = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            other.local_addr().unwrap().port()
        };
        let none = OutboundPolicy::default();
        for host in [
            "127.0.0.1",
            "localhost",
            "LOCALHOST.",
            "::1",
            "[::1]",
            "0.0.0.0",
        ] {
            for port in [port, closed] {
                match none.connect(host, port).await {
                    Err(ConnectorError::Refused(shown)) => assert_eq!(shown, host),
                    other => panic!("{host}:{port}: {other:?}"),
                }
            }
        }
        let exact = OutboundPolicy::parse([format!("127.0.0.1:{port}")]).unwrap();
        assert!(exact.connect("127.0.0.1", port).await.is_ok());
        assert!(matches!(
            exact.connect("127.0.0.1", closed).await,
            Err(ConnectorError::Refused(_))
        ));
        let named = OutboundPolicy::parse([format!("localhost:{port}")]).unwrap();
        assert!(named.connect("localhost", port).await.is_ok());
        assert!(matches!(
            named.connect("localhost", closed).await,
            Err(ConnectorError::Refused(_))
        ));
        drop(listener);
    }

    /// A loopback server that counts the connections it accepts and answers 200.
    async fn counting_server() -> (u16, Arc<std::sync::atomic::AtomicUsize>) {
        use std::sync::atomic::{AtomicUsize, Ordering};
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let count = Arc::new(AtomicUsize::new(0));
        let seen = count.clone();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                seen.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let mut buffer = [0u8; 4096];
                    let _ = stream.read(&mut buffer).await;
                    let _ = stream
                        .write_all(
                            b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok",
                        )
                        .await;
                });
            }
        });
        (port, count)
    }

    fn refusal(err: &reqwest::Error) -> Option<String> {
        refusal_in(err).map(|refused| refused.host.clone())
    }

    #[tokio::test]
    async fn the_guarded_client_refuses_before_connecting_and_ip_port_entries_are_exact() {
        use std::sync::atomic::Ordering;
        let (port, count) = counting_server().await;
        let (other, other_count) = counting_server().await;
        let outbound = Outbound::new(
            OutboundPolicy::parse([format!("127.0.0.1:{port}")]).unwrap(),
            |builder| builder,
        )
        .unwrap();
        let client = outbound.client();
        let ok = client
            .get(format!("http://127.0.0.1:{port}/"))
            .send()
            .await
            .unwrap();
        assert_eq!(ok.status(), 200);
        assert_eq!(count.load(Ordering::SeqCst), 1);
        for url in [
            format!("http://127.0.0.1:{other}/"),
            format!("http://localhost:{other}/"),
            format!("http://LOCALHOST.:{other}/"),
            format!("http://2130706433:{other}/"),
            format!("http://0x7f.1:{other}/"),
            format!("http://127.1:{other}/"),
            format!("http://[::ffff:127.0.0.1]:{other}/"),
            format!("http://[::1]:{other}/"),
            format!("http://0.0.0.0:{other}/"),
            format!("http://foo.localhost:{other}/"),
            // The allowed address on its port, but over IPv6.
            format!("http://[::1]:{port}/"),
        ] {
            let err = client.get(&url).send().await.unwrap_err();
            assert!(refusal(&err).is_some(), "{url}: {err:?}");
        }
        assert_eq!(other_count.load(Ordering::SeqCst), 0, "nothing reached it");
        assert_eq!(count.load(Ordering::SeqCst), 1, "nothing more reached it");
        // A name is judged by the address it resolves to: localhost on the allowed port is
        // 127.0.0.1 on that port (its ::1 address is dropped).
        let ok = client
            .get(format!("http://localhost:{port}/"))
            .send()
            .await
            .unwrap();
        assert_eq!(ok.status(), 200);
        assert_eq!(count.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_named_entry_allows_its_host_on_its_port_only() {
        let (port, _) = counting_server().await;
        let (other, other_count) = counting_server().await;
        let outbound = Outbound::new(
            OutboundPolicy::parse([format!("localhost:{port}")]).unwrap(),
            |builder| builder,
        )
        .unwrap();
        let ok = outbound
            .client()
            .get(format!("http://localhost:{port}/"))
            .send()
            .await
            .unwrap();
        assert_eq!(ok.status(), 200);
        let err = outbound
            .client()
            .get(format!("http://localhost:{other}/"))
            .send()
            .await
            .unwrap_err();
        assert_eq!(refusal(&err).as_deref(), Some("localhost"));
        let err = outbound
            .client()
            .get(format!("http://127.0.0.1:{port}/"))
            .send()
            .await
            .unwrap_err();
        assert_eq!(refusal(&err).as_deref(), Some("127.0.0.1"));
        assert_eq!(other_count.load(std::sync::atomic::Ordering::SeqCst), 0);
    }

    /// A loopback server answering `GET /away` with a 302 to `to` (set once its port is
    /// known) and anything else with 200, keeping each request's head.
    async fn redirecting_server() -> (
        u16,
        Arc<std::sync::Mutex<String>>,
        Arc<std::sync::Mutex<Vec<String>>>,
    ) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let to = Arc::new(std::sync::Mutex::new(String::new()));
        let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
        let (target, log) = (to.clone(), seen.clone());
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let (target, log) = (target.clone(), log.clone());
                tokio::spawn(async move {
                    let mut buffer = [0u8; 4096];
                    let read = stream.read(&mut buffer).await.unwrap_or(0);
                    let head = String::from_utf8_lossy(&buffer[..read]).into_owned();
                    let away = head.starts_with("GET /away ") || head.starts_with("GET /away?");
                    log.lock().unwrap().push(head);
                    let answer = if away {
                        let to = target.lock().unwrap().clone();
                        format!("HTTP/1.1 302 Found\r\nlocation: {to}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                    } else {
                        "HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok"
                            .to_owned()
                    };
                    let _ = stream.write_all(answer.as_bytes()).await;
                });
            }
        });
        (port, to, seen)
    }

    #[tokio::test]
    async fn the_same_origin_client_stops_at_a_redirect_to_another_origin() {
        let (port, to, _) = redirecting_server().await;
        let (elsewhere, _, reached) = redirecting_server().await;
        let outbound = Outbound::new(OutboundPolicy::parse(["127.0.0.1"]).unwrap(), |builder| {
            builder
        })
        .unwrap();
        let key = |request: reqwest::RequestBuilder| request.header("api-key", "k-secret-1");
        // Within the origin: followed, the header kept.
        *to.lock().unwrap() = "/here".to_owned();
        let near = key(outbound
            .same_origin_client()
            .get(format!("http://127.0.0.1:{port}/away")))
        .send()
        .await
        .unwrap();
        assert_eq!(near.status(), 200);
        assert_eq!(near.url().path(), "/here");
        // Another port on the same host is another origin: not followed, the 302 answered.
        *to.lock().unwrap() = format!("http://127.0.0.1:{elsewhere}/posts.json");
        let far = key(outbound
            .same_origin_client()
            .get(format!("http://127.0.0.1:{port}/away")))
        .send()
        .await
        .unwrap();
        assert_eq!(far.status(), 302);
        assert!(
            reached.lock().unwrap().is_empty(),
            "nothing reached the other origin"
        );
        // The plain client follows it, and the custom header goes along: why connectors
        // with such keys use the same-origin client.
        let followed = key(outbound
            .client()
            .get(format!("http://127.0.0.1:{port}/away")))
        .send()
        .await
        .unwrap();
        assert_eq!(followed.status(), 200);
        let heads = reached.lock().unwrap().clone();
        assert_eq!(heads.len(), 1);
        assert!(
            heads[0].to_lowercase().contains("api-key: k-secret-1"),
            "{heads:?}"
        );
        // No client tells the next host where it came from: a secret in the first URL
        // (a bot token in its path, a key in its query) stays with its host.
        reached.lock().unwrap().clear();
        let _ = outbound
            .client()
            .get(format!("http://127.0.0.1:{port}/away?key=k-secret-2"))
            .send()
            .await
            .unwrap();
        let heads = reached.lock().unwrap().clone();
        assert_eq!(heads.len(), 1);
        assert!(
            !heads[0].to_lowercase().contains("referer") && !heads[0].contains("k-secret-2"),
            "{heads:?}"
        );
    }

    #[test]
    fn the_connector_request_debug_form_is_what_the_layer_reads() {
        /// Formats like reqwest's `Unnameable(Uri)` (a `Uri`'s Debug is its Display). That
        /// the real one is read is proven by the client tests: an allowed URL connects.
        struct Raw(&'static str);
        impl fmt::Debug for Raw {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.0)
            }
        }
        let (host, port, shown) = target_of(&Raw("Unnameable(http://[::1]:81/x)")).unwrap();
        assert_eq!(host, url::Host::<String>::Ipv6(Ipv6Addr::LOCALHOST));
        assert_eq!((port, shown.as_str()), (81, "[::1]"));
        let (_, port, _) = target_of(&Raw("Unnameable(https://example.org/)")).unwrap();
        assert_eq!(port, 443);
        assert!(target_of(&Raw("Something(http://x/)")).is_none());
        assert!(
            target_of(&"Unnameable(http://x/)").is_none(),
            "quoted: not read"
        );
    }
}
