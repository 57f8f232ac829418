//! The e-mail channel (pull + reply): IMAP for the inbox, SMTP submission for replies.
//!
//! - Pull: `SELECT` the mailbox, then `UID SEARCH UID n:*` after the cursor's last UID,
//!   `UID FETCH … RFC822.SIZE` and `UID FETCH … BODY.PEEK[]` (messages stay unread) of at
//!   most [`BATCH`] messages and [`PULL_BYTES`] by their sizes, the oldest first: one
//!   session (a connection, a login, a search) a pull, so a mailbox of small messages is
//!   read a thousand at a time. On a slow link a pull stops fetching after
//!   [`FETCH_WAITS`] of its waits and keeps what came ([`FIRST_WAITS`] for its first
//!   message). The cursor is `(UIDVALIDITY, last UID)` and moves only past messages the
//!   server sent or expunged meanwhile (a UID it gave no size for is searched again); any
//!   other is asked for again, and a pull that reads none fails saying which. A new
//!   UIDVALIDITY starts over from the first message, and the `Message-ID` as external id
//!   keeps that from storing anything twice.
//! - MIME is parsed by mail-parser: the plain-text part preferred, HTML converted to text
//!   otherwise, attachments listed (name, type, size) but never stored. A message larger
//!   than [`MAX_MESSAGE_BYTES`] is fetched as its header only.
//! - Threading: `References` (its first id, the thread's root) is the thread key and
//!   `In-Reply-To` the answered item.
//! - The sender's address is the author's id and e-mail contact point; a message from the
//!   workspace's own address is outbound and is filed under its first recipient.
//! - Reply: SMTP submission (STARTTLS on 587, implicit TLS on 465, `AUTH PLAIN`) with
//!   `In-Reply-To` and `References`, and a `Message-ID` derived from the idempotency key, so
//!   a retried reply carries the same id.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use chrono::{DateTime, TimeZone, Utc};
use futures_util::TryStreamExt;
use mail_parser::{MessageParser, MimeHeaders};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::{
    Author, Capabilities, Channel, Connector, ConnectorError, Cursor, InboundItem, Pull,
    ReplyTarget, Sent,
};

/// Messages fetched per pull at most.
pub const BATCH: usize = 1_000;

/// The bytes of messages one pull fetches at most, by the sizes the server gives (a
/// message fetched as its header alone counts [`HEADER_BYTES`]), but always its first
/// message. On a slow link the fetch stops sooner: [`FETCH_WAITS`].
pub const PULL_BYTES: u64 = 8 * 1024 * 1024;

/// What a message fetched as its header alone counts against [`PULL_BYTES`].
const HEADER_BYTES: u64 = 64 * 1024;

/// Messages larger than this are stored from their header alone.
pub const MAX_MESSAGE_BYTES: u32 = 10 * 1024 * 1024;

/// How long an SMTP submission may take.
const TIMEOUT: Duration = Duration::from_secs(60);

/// An IMAP pull waits for a connection, or for the server's next byte ([`Idle`]), as long
/// as the sync waits for an HTTP answer (`http_timeout_secs`, the connector's `wait`); the
/// sync gives a whole pull four such waits. Once the pull has run for `FETCH_WAITS` of
/// them, it stops fetching and keeps the messages that came: the rest is the next pull's,
/// so a mailbox on a slow link still moves on.
const FETCH_WAITS: u32 = 2;

/// The pull's first message (the oldest left to read) is waited for until the pull has run
/// `FIRST_WAITS` waits, under the sync's four: past it, the pull fails naming it.
const FIRST_WAITS: u32 = 3;

/// How long a pull waits for the server to answer its `LOGOUT`.
const LOGOUT_WAIT: Duration = Duration::from_secs(5);

fn default_mailbox() -> String {
    "INBOX".to_owned()
}

fn default_true() -> bool {
    true
}

/// A source's settings. `password` is a secret: stored apart, never returned.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmailConfig {
    pub imap_host: String,
    pub imap_port: u16,
    pub username: String,
    pub password: String,
    #[serde(default = "default_mailbox")]
    pub mailbox: String,
    /// Implicit TLS for IMAP; STARTTLS (or implicit TLS on 465) for SMTP. `false` only
    /// for servers on a trusted network.
    #[serde(default = "default_true")]
    pub tls: bool,
    #[serde(default)]
    pub smtp_host: Option<String>,
    #[serde(default)]
    pub smtp_port: Option<u16>,
    /// The workspace's own address (its messages are outbound); the username by default.
    #[serde(default)]
    pub address: Option<String>,
}

impl std::fmt::Debug for EmailConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmailConfig")
            .field("imap_host", &self.imap_host)
            .field("imap_port", &self.imap_port)
            .field("username", &self.username)
            .field("password", &"***")
            .field("mailbox", &self.mailbox)
            .field("tls", &self.tls)
            .finish_non_exhaustive()
    }
}

impl EmailConfig {
    /// Reads and checks a source's settings (secrets merged in); the error names the field.
    pub fn parse(config: &Value) -> Result<EmailConfig, (String, String)> {
        let config: EmailConfig = crate::read_config(config, "imap_host")?;
        for (field, value) in [
            ("imap_host", &config.imap_host),
            ("username", &config.username),
            ("password", &config.password),
            ("mailbox", &config.mailbox),
        ] {
            if value.trim().is_empty() {
                return Err((field.into(), format!("{field} must not be empty")));
            }
        }
        if config.imap_port == 0 {
            return Err(("imap_port".into(), "imap_port must be a port number".into()));
        }
        if config.smtp_host.is_some() != config.smtp_port.is_some() {
            return Err((
                "smtp_port".into(),
                "smtp_host and smtp_port go together (replies need both)".into(),
            ));
        }
        if !config.own_address().contains('@') {
            return Err((
                "address".into(),
                "the username is not an e-mail address: give the mailbox's address as `address`"
                    .into(),
            ));
        }
        Ok(config)
    }

    fn own_address(&self) -> String {
        self.address
            .clone()
            .unwrap_or_else(|| self.username.clone())
            .trim()
            .to_lowercase()
    }
}

/// `(UIDVALIDITY, last UID)`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
struct EmailCursor {
    uidvalidity: u32,
    uid: u32,
}

pub struct EmailConnector {
    config: EmailConfig,
    /// Every IMAP and SMTP connection goes through the outbound guard.
    policy: Arc<crate::outbound::OutboundPolicy>,
    /// How long an IMAP pull waits for a connection or the server's next byte
    /// ([`FETCH_WAITS`]).
    wait: Duration,
}

impl EmailConnector {
    pub fn new(
        config: EmailConfig,
        policy: Arc<crate::outbound::OutboundPolicy>,
        wait: Duration,
    ) -> EmailConnector {
        EmailConnector {
            config,
            policy,
            wait,
        }
    }
}

fn imap_error(err: async_imap::error::Error) -> ConnectorError {
    use async_imap::error::Error;
    match err {
        Error::No(message) | Error::Bad(message) => {
            ConnectorError::Payload(format!("the IMAP server refused: {message}"))
        }
        Error::Io(err) => ConnectorError::Transport(format!("IMAP connection failed: {err}")),
        Error::ConnectionLost => ConnectorError::Transport("the IMAP server hung up".into()),
        other => ConnectorError::Payload(format!("IMAP: {other}")),
    }
}

fn tls_connector() -> tokio_rustls::TlsConnector {
    use tokio_rustls::rustls;
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("ring supports the default protocol versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    tokio_rustls::TlsConnector::from(Arc::new(config))
}

async fn tls_wrap<S: AsyncRead + AsyncWrite + Unpin>(
    stream: S,
    host: &str,
) -> Result<tokio_rustls::client::TlsStream<S>, ConnectorError> {
    let name = tokio_rustls::rustls::pki_types::ServerName::try_from(host.to_owned())
        .map_err(|_| ConnectorError::Config(format!("`{host}` is not a valid host name")))?;
    tls_connector()
        .connect(name, stream)
        .await
        .map_err(|err| ConnectorError::Transport(format!("TLS with {host} failed: {err}")))
}

impl EmailConnector {
    /// The `Message-ID` of a reply: derived from its idempotency key, so every attempt at
    /// one reply carries the same id.
    fn message_id(&self, to: &ReplyTarget) -> String {
        use sha2::Digest;
        let from = self.config.own_address();
        let domain = from.rsplit('@').next().unwrap_or("localhost");
        let digest = sha2::Sha256::digest(to.idempotency_key.as_bytes());
        format!("{}@{domain}", hex::encode(&digest[..16]))
    }

    /// One pull over a connection to the IMAP server, begun at `started`: given up on when
    /// the server sends nothing for the connector's `wait` while a command waits for it,
    /// and fetching no more messages past [`FETCH_WAITS`] of it.
    async fn pull_over<S>(
        &self,
        stream: S,
        cursor: EmailCursor,
        started: Instant,
    ) -> Result<Pull, ConnectorError>
    where
        S: AsyncRead + AsyncWrite + Unpin + std::fmt::Debug + Send,
    {
        let stream = Idle::new(stream, self.wait);
        if self.config.tls {
            let host = self.config.imap_host.as_str();
            let stream = tls_wrap(stream, host).await?;
            self.pull_from(stream, cursor, started).await
        } else {
            self.pull_from(stream, cursor, started).await
        }
    }

    async fn pull_from<T>(
        &self,
        stream: T,
        cursor: EmailCursor,
        started: Instant,
    ) -> Result<Pull, ConnectorError>
    where
        T: AsyncRead + AsyncWrite + Unpin + std::fmt::Debug + Send,
    {
        let fetch_until = started + self.wait * FETCH_WAITS;
        let give_up_at = started + self.wait * FIRST_WAITS;
        let mut client = async_imap::Client::new(stream);
        client
            .read_response()
            .await
            .map_err(|err| ConnectorError::Transport(format!("IMAP greeting: {err}")))?
            .ok_or_else(|| ConnectorError::Transport("the IMAP server sent no greeting".into()))?;
        let mut session = client
            .login(&self.config.username, &self.config.password)
            .await
            .map_err(|(err, _)| match err {
                async_imap::error::Error::No(_) => ConnectorError::Unauthorized(format!(
                    "the IMAP server refused the login of {}",
                    self.config.username
                )),
                other => imap_error(other),
            })?;
        let mailbox = session
            .select(&self.config.mailbox)
            .await
            .map_err(imap_error)?;
        let uidvalidity = mailbox.uid_validity.unwrap_or(0);
        let last = if cursor.uidvalidity == uidvalidity {
            cursor.uid
        } else {
            0
        };
        let mut uids: Vec<u32> = session
            .uid_search(format!("UID {}:*", last.saturating_add(1)))
            .await
            .map_err(imap_error)?
            .into_iter()
            .filter(|uid| *uid > last)
            .collect();
        uids.sort_unstable();
        uids.dedup();
        let found = uids.len();
        uids.truncate(BATCH);
        let mut items = Vec::new();
        let mut read = 0;
        let mut cut = false;
        if !uids.is_empty() {
            // Only the server's answers for our UIDs: an unsolicited FETCH (a flag change)
            // carries no size.
            let sizes: HashMap<u32, u32> = session
                .uid_fetch(uid_set(&uids), "(UID RFC822.SIZE)")
                .await
                .map_err(imap_error)?
                .try_collect::<Vec<_>>()
                .await
                .map_err(imap_error)?
                .iter()
                .filter_map(|fetch| Some((fetch.uid?, fetch.size?)))
                .collect();
            let mut planned = within_budget(&uids, &sizes);
            // A UID left without a size between others is expunged, or the server refused
            // it (a tagged NO with partial data, which async-imap does not report): the
            // pull stops before the first one a search still finds.
            let gaps: Vec<u32> = uids[..planned]
                .iter()
                .copied()
                .filter(|uid| !sizes.contains_key(uid))
                .collect();
            if !gaps.is_empty() {
                let present = session
                    .uid_search(format!("UID {}", uid_set(&gaps)))
                    .await
                    .map_err(imap_error)?;
                if let Some(cut) = uids[..planned].iter().position(|uid| present.contains(uid)) {
                    planned = cut;
                }
            }
            if planned == 0 {
                return Err(ConnectorError::Transport(format!(
                    "the IMAP server gave no size for message UID {} and after it",
                    uids[0]
                )));
            }
            uids.truncate(planned);
            // In UID order, as `uids` is.
            let (small, large): (Vec<u32>, Vec<u32>) = uids
                .iter()
                .filter(|uid| sizes.contains_key(uid))
                .partition(|uid| sizes[uid] <= MAX_MESSAGE_BYTES);
            // The pull's first message is fetched first, whatever its size, and waited
            // for until the pull's `give_up_at`; past `fetch_until` the rest is the next
            // pull's, and so is all after a connection that fails once it came. (The
            // session is then dropped, not logged out: the rest of the answer may still be
            // on its way.)
            let first = uids.iter().copied().find(|uid| sizes.contains_key(uid));
            let mut fetches = [
                (small, "(UID RFC822.SIZE BODY.PEEK[])"),
                (large, "(UID RFC822.SIZE BODY.PEEK[HEADER])"),
            ];
            if first.is_some_and(|first| fetches[1].0.contains(&first)) {
                fetches.swap(0, 1);
            }
            let mut sent = HashSet::new();
            for (list, query) in fetches {
                if list.is_empty() || cut {
                    continue;
                }
                let mut answers = session
                    .uid_fetch(uid_set(&list), query)
                    .await
                    .map_err(imap_error)?;
                loop {
                    let came = first.is_some_and(|first| sent.contains(&first));
                    let next = if came {
                        match tokio::time::timeout_at(fetch_until, answers.try_next()).await {
                            Ok(Ok(next)) => next,
                            Ok(Err(_)) | Err(_) => {
                                cut = true;
                                break;
                            }
                        }
                    } else {
                        match tokio::time::timeout_at(give_up_at, answers.try_next()).await {
                            Ok(next) => next.map_err(imap_error)?,
                            Err(_) => {
                                let first = first.unwrap_or_default();
                                return Err(ConnectorError::Transport(format!(
                                    "message UID {first} ({} bytes) did not come within {} s: \
                                     the link to the IMAP server is too slow for it (a larger \
                                     http_timeout_secs gives it more time)",
                                    sizes.get(&first).copied().unwrap_or_default(),
                                    (give_up_at - started).as_secs()
                                )));
                            }
                        }
                    };
                    let Some(fetch) = next else {
                        break;
                    };
                    let (Some(uid), Some(bytes)) = (fetch.uid, fetch.body().or(fetch.header()))
                    else {
                        continue;
                    };
                    if !sizes.contains_key(&uid) || !sent.insert(uid) {
                        continue;
                    }
                    let place = Place {
                        uidvalidity,
                        uid,
                        size: fetch.size.unwrap_or(bytes.len() as u32),
                        truncated: query.contains("HEADER"),
                    };
                    if let Some(item) = parse_message(bytes, &self.config.own_address(), place) {
                        items.push(item);
                    }
                }
            }
            read = read_through(&uids, &sizes, &sent);
            if read == 0 {
                return Err(ConnectorError::Transport(format!(
                    "the IMAP server did not send message UID {}",
                    uids[0]
                )));
            }
            let through = u64::from(uids[read - 1]);
            items.retain(|item| item.raw["uid"].as_u64().is_some_and(|uid| uid <= through));
            items.sort_by_key(|item| item.raw["uid"].as_u64());
        }
        let more = found > read;
        let next = EmailCursor {
            uidvalidity,
            uid: uids[..read].last().copied().unwrap_or(last),
        };
        if !cut {
            tokio::time::timeout(LOGOUT_WAIT, session.logout())
                .await
                .ok();
        }
        Ok(Pull {
            items,
            next_cursor: Some(Cursor(serde_json::to_string(&next).expect("a cursor"))),
            more,
            not_before: None,
        })
    }
}

/// A connection that fails when a read or write waits `limit` for the other side: the
/// wait is counted from when it began, so a large message that keeps coming, however
/// slowly, is not cut off, and time spent between commands is not counted. Reads and
/// writes share one wait, which suits a protocol that writes a command, then reads its
/// answer (IMAP, a TLS handshake), not one that waits on both at once.
struct Idle<S> {
    inner: S,
    limit: Duration,
    /// When the wait under way ends; `None` while nothing waits.
    deadline: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl<S> Idle<S> {
    fn new(inner: S, limit: Duration) -> Idle<S> {
        Idle {
            inner,
            limit,
            deadline: None,
        }
    }

    /// What the inner connection answered: a wait ends with any answer; a pending one
    /// fails once it has waited `limit`.
    fn waited<T>(
        &mut self,
        cx: &mut Context<'_>,
        poll: Poll<io::Result<T>>,
    ) -> Poll<io::Result<T>> {
        if poll.is_ready() {
            self.deadline = None;
            return poll;
        }
        let limit = self.limit;
        let deadline = self
            .deadline
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
        match deadline.as_mut().poll(cx) {
            Poll::Ready(()) => {
                self.deadline = None;
                Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("the server sent nothing for {} s", limit.as_secs_f32()),
                )))
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<S> std::fmt::Debug for Idle<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Idle").field("limit", &self.limit).finish()
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Idle<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.inner).poll_read(cx, buf);
        this.waited(cx, poll)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Idle<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.inner).poll_write(cx, buf);
        this.waited(cx, poll)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.inner).poll_flush(cx);
        this.waited(cx, poll)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.inner).poll_shutdown(cx);
        this.waited(cx, poll)
    }
}

/// How many of `uids` (ascending) one pull plans to fetch: at most [`PULL_BYTES`] by
/// `sizes`, always the first message, and only up to the last UID the server gave a size
/// for. A UID without a size before that one costs nothing (the pull checks it is gone);
/// those after it are left for the next pull (the answer may have been cut short).
fn within_budget(uids: &[u32], sizes: &HashMap<u32, u32>) -> usize {
    let Some(last_sized) = uids.iter().rposition(|uid| sizes.contains_key(uid)) else {
        return 0;
    };
    let mut spent = 0u64;
    for (taken, uid) in uids[..=last_sized].iter().enumerate() {
        let cost = match sizes.get(uid) {
            Some(size) if *size <= MAX_MESSAGE_BYTES => u64::from(*size),
            Some(_) => HEADER_BYTES,
            None => 0,
        };
        if taken > 0 && spent + cost > PULL_BYTES {
            return taken;
        }
        spent += cost;
    }
    last_sized + 1
}

/// How many of `uids` (ascending) a pull has read: up to the first with a size whose
/// message the server did not send (`sent`). The cursor moves past those only, so a
/// message the server failed to send is asked for again.
fn read_through(uids: &[u32], sizes: &HashMap<u32, u32>, sent: &HashSet<u32>) -> usize {
    uids.iter()
        .position(|uid| sizes.contains_key(uid) && !sent.contains(uid))
        .unwrap_or(uids.len())
}

/// `uids` (ascending) as an IMAP sequence set, runs written `first:last`.
fn uid_set(uids: &[u32]) -> String {
    let mut set = String::new();
    let mut rest = uids.iter().copied().peekable();
    while let Some(first) = rest.next() {
        let mut last = first;
        while let Some(next) = rest.next_if(|next| Some(*next) == last.checked_add(1)) {
            last = next;
        }
        if !set.is_empty() {
            set.push(',');
        }
        if last == first {
            set.push_str(&first.to_string());
        } else {
            set.push_str(&format!("{first}:{last}"));
        }
    }
    set
}

#[async_trait::async_trait]
impl Connector for EmailConnector {
    fn channel(&self) -> Channel {
        Channel::Email
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            pull: true,
            webhook: false,
            reply: self.config.smtp_host.is_some(),
        }
    }

    async fn pull(&self, cursor: Option<&Cursor>) -> Result<Pull, ConnectorError> {
        let started = Instant::now();
        let cursor: EmailCursor = cursor
            .and_then(|cursor| serde_json::from_str(&cursor.0).ok())
            .unwrap_or_default();
        let (host, port) = (self.config.imap_host.as_str(), self.config.imap_port);
        let stream = tokio::time::timeout(self.wait, self.policy.connect(host, port))
            .await
            .map_err(|_| {
                ConnectorError::Transport(format!(
                    "could not connect to {host}:{port} within {} s",
                    self.wait.as_secs_f32()
                ))
            })??;
        self.pull_over(stream, cursor, started).await
    }

    fn planned_external_id(&self, to: &ReplyTarget) -> Option<String> {
        Some(self.message_id(to))
    }

    async fn reply(&self, to: &ReplyTarget, text: &str) -> Result<Sent, ConnectorError> {
        let (Some(host), Some(port)) = (&self.config.smtp_host, self.config.smtp_port) else {
            return Err(ConnectorError::Unsupported(
                "reply without smtp_host and smtp_port",
            ));
        };
        let recipient = to
            .recipient
            .clone()
            .filter(|r| r.contains('@'))
            .ok_or_else(|| {
                ConnectorError::Config("the answered message has no sender address".into())
            })?;
        let from = self.config.own_address();
        let message_id = self.message_id(to);
        let message = compose(&Compose {
            from: &from,
            to: &recipient,
            subject: to.context.get("subject").and_then(Value::as_str),
            message_id: &message_id,
            in_reply_to: &to.external_id,
            references: to
                .context
                .get("references")
                .and_then(Value::as_array)
                .map(|refs| refs.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default(),
            text: text.trim(),
            date: Utc::now(),
        });
        let work = async {
            let tcp = self.policy.connect(host, port).await?;
            let session = Smtp {
                host,
                username: &self.config.username,
                password: &self.config.password,
                from: &from,
                to: &recipient,
                message: &message,
            };
            let security = match (self.config.tls, port) {
                (false, _) => Security::Plain,
                (true, 465) => Security::Implicit,
                (true, _) => Security::StartTls,
            };
            session.submit(tcp, security).await
        };
        tokio::time::timeout(TIMEOUT, work)
            .await
            .map_err(|_| ConnectorError::Transport("the SMTP server timed out".into()))??;
        Ok(Sent {
            external_id: message_id,
            url: None,
            text: text.trim().to_owned(),
        })
    }
}

/// Where a message was found.
#[derive(Clone, Copy, Debug)]
pub struct Place {
    pub uidvalidity: u32,
    pub uid: u32,
    pub size: u32,
    /// Only the header was fetched (the message is too large).
    pub truncated: bool,
}

/// A strips `<…>` and spaces from a message id.
fn bare_id(id: &str) -> String {
    id.trim()
        .trim_start_matches('<')
        .trim_end_matches('>')
        .to_owned()
}

/// Parses one RFC 5322 message into an item; `None` when it has no sender.
pub fn parse_message(bytes: &[u8], own_address: &str, place: Place) -> Option<InboundItem> {
    // mail-parser debug-asserts on some nested multiparts: a hostile message is skipped,
    // it does not take the sync down with it.
    let message = std::panic::catch_unwind(|| MessageParser::default().parse(bytes)).ok()??;
    let sender = message.from()?.first()?;
    let address = sender.address()?.trim().to_lowercase();
    let outbound = address == own_address;
    let recipients: Vec<(String, Option<String>)> = message
        .to()
        .map(|to| {
            to.iter()
                .filter_map(|addr| {
                    Some((
                        addr.address()?.trim().to_lowercase(),
                        addr.name().map(str::to_owned),
                    ))
                })
                .collect()
        })
        .unwrap_or_default();
    let (author_address, author_name) = if outbound {
        recipients.first().cloned()?
    } else {
        (address.clone(), sender.name().map(str::to_owned))
    };
    let message_id = message
        .message_id()
        .map(bare_id)
        .filter(|id| !id.is_empty());
    let external_id = message_id
        .clone()
        .unwrap_or_else(|| format!("imap:{}:{}", place.uidvalidity, place.uid));
    let list = |value: &mail_parser::HeaderValue<'_>| -> Vec<String> {
        value
            .as_text_list()
            .map(|ids| ids.iter().map(|id| bare_id(id)).collect())
            .unwrap_or_default()
    };
    let references = list(message.references());
    let in_reply_to = list(message.in_reply_to()).into_iter().next();
    let html = message.body_html(0).map(|html| html.into_owned());
    let mut text = match message.text_body_count() {
        0 => html
            .as_deref()
            .map(crate::text::html_to_text)
            .unwrap_or_default(),
        _ => message
            .body_text(0)
            .map(|text| text.trim().to_owned())
            .unwrap_or_default(),
    };
    let subject = message
        .subject()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty());
    if place.truncated {
        text = format!(
            "(message of {} MiB: only its header was fetched)",
            place.size / (1024 * 1024)
        );
    }
    if text.is_empty() {
        text = subject
            .clone()
            .unwrap_or_else(|| "(empty message)".to_owned());
    }
    let attachments: Vec<Value> = message
        .attachments()
        .map(|part| {
            json!({
                "name": part.attachment_name(),
                "content_type": part.content_type().map(|ct| match ct.subtype() {
                    Some(sub) => format!("{}/{}", ct.ctype(), sub),
                    None => ct.ctype().to_owned(),
                }),
                "size": part.contents().len(),
            })
        })
        .collect();
    let occurred_at = message
        .date()
        .and_then(|date| Utc.timestamp_opt(date.to_timestamp(), 0).single())
        .unwrap_or_else(Utc::now);
    let raw = json!({
        "uid": place.uid,
        "uidvalidity": place.uidvalidity,
        "size": place.size,
        "message_id": message_id,
        "from": address,
        "to": recipients.iter().map(|(a, _)| a).collect::<Vec<_>>(),
        "subject": subject,
        "date": occurred_at,
        "in_reply_to": in_reply_to,
        "references": references,
        "attachments": attachments,
    });
    Some(InboundItem {
        external_id,
        author: Author {
            platform_id: author_address.clone(),
            handle: None,
            display_name: author_name.filter(|name| !name.trim().is_empty()),
            profile_url: None,
            avatar_url: None,
            email: Some(author_address),
            phone: None,
            links: Vec::new(),
        },
        outbound,
        kind: "email".to_owned(),
        subject,
        text,
        html,
        url: None,
        language: None,
        occurred_at: occurred_at.min(Utc::now()),
        thread_key: references.first().cloned(),
        in_reply_to,
        raw,
    })
}

/// What a reply message says.
pub struct Compose<'a> {
    pub from: &'a str,
    pub to: &'a str,
    pub subject: Option<&'a str>,
    pub message_id: &'a str,
    pub in_reply_to: &'a str,
    pub references: Vec<&'a str>,
    pub text: &'a str,
    pub date: DateTime<Utc>,
}

/// Writes a reply as an RFC 5322 message: UTF-8 text in base64, a subject with `Re:`
/// (RFC 2047 encoded when not ASCII), and the threading headers.
pub fn compose(reply: &Compose<'_>) -> String {
    let subject = match reply.subject {
        Some(subject) if subject.to_lowercase().starts_with("re:") => subject.to_owned(),
        Some(subject) => format!("Re: {subject}"),
        None => "Re: your message".to_owned(),
    };
    let subject = if subject.is_ascii() {
        subject
    } else {
        format!("=?utf-8?b?{}?=", B64.encode(subject.as_bytes()))
    };
    let mut references: Vec<String> = reply
        .references
        .iter()
        .map(|id| format!("<{}>", bare_id(id)))
        .collect();
    let answered = format!("<{}>", bare_id(reply.in_reply_to));
    if !references.contains(&answered) {
        references.push(answered.clone());
    }
    let body = B64.encode(
        reply
            .text
            .replace("\r\n", "\n")
            .replace('\n', "\r\n")
            .as_bytes(),
    );
    let wrapped: Vec<&str> = body
        .as_bytes()
        .chunks(76)
        .map(|chunk| std::str::from_utf8(chunk).expect("base64 is ASCII"))
        .collect();
    [
        format!("From: <{}>", reply.from),
        format!("To: <{}>", reply.to),
        format!("Subject: {subject}"),
        format!("Date: {}", reply.date.to_rfc2822()),
        format!("Message-ID: <{}>", reply.message_id),
        format!("In-Reply-To: {answered}"),
        format!("References: {}", references.join(" ")),
        "MIME-Version: 1.0".to_owned(),
        "Content-Type: text/plain; charset=utf-8".to_owned(),
        "Content-Transfer-Encoding: base64".to_owned(),
        String::new(),
        wrapped.join("\r\n"),
        String::new(),
    ]
    .join("\r\n")
}

/// One SMTP submission.
struct Smtp<'a> {
    host: &'a str,
    username: &'a str,
    password: &'a str,
    from: &'a str,
    to: &'a str,
    message: &'a str,
}

/// Reads one SMTP reply (all its lines); returns the code and the text.
async fn read_reply<S: AsyncRead + Unpin>(
    stream: &mut BufReader<S>,
) -> Result<(u16, String), ConnectorError> {
    let mut text = String::new();
    loop {
        let mut line = String::new();
        let read = stream
            .read_line(&mut line)
            .await
            .map_err(|err| ConnectorError::Transport(format!("SMTP: {err}")))?;
        if read == 0 {
            return Err(ConnectorError::Transport("the SMTP server hung up".into()));
        }
        let code = line
            .get(..3)
            .and_then(|code| code.parse::<u16>().ok())
            .ok_or_else(|| {
                ConnectorError::Payload(format!("SMTP: unreadable reply `{}`", line.trim()))
            })?;
        text.push_str(line.get(4..).unwrap_or_default());
        if line.as_bytes().get(3) != Some(&b'-') {
            return Ok((code, text));
        }
    }
}

async fn command<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut BufReader<S>,
    line: &str,
    expect: u16,
) -> Result<String, ConnectorError> {
    stream
        .get_mut()
        .write_all(format!("{line}\r\n").as_bytes())
        .await
        .map_err(|err| ConnectorError::Transport(format!("SMTP: {err}")))?;
    let (code, text) = read_reply(stream).await?;
    if code == expect {
        return Ok(text);
    }
    let verb = line.split([' ', ':']).next().unwrap_or_default();
    let summary = text.lines().next().unwrap_or_default().trim();
    Err(match code {
        535 | 530 => ConnectorError::Unauthorized(format!(
            "the SMTP server refused the login ({code} {summary})"
        )),
        400..=499 => ConnectorError::Transport(format!("SMTP {verb}: {code} {summary}")),
        _ => ConnectorError::Payload(format!("SMTP {verb}: {code} {summary}")),
    })
}

/// How an SMTP connection is secured.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Security {
    /// TLS from the first byte (port 465).
    Implicit,
    /// Plain, then `STARTTLS` before anything else is said (port 587).
    StartTls,
    /// No TLS: `tls: false`, for a server on a trusted network.
    Plain,
}

/// Reads the greeting and says `EHLO`; returns the server's capabilities.
async fn greet<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut BufReader<S>,
) -> Result<String, ConnectorError> {
    let (code, text) = read_reply(stream).await?;
    if code != 220 {
        return Err(ConnectorError::Transport(format!(
            "SMTP greeting: {code} {}",
            text.trim()
        )));
    }
    command(stream, "EHLO rapport", 250).await
}

impl Smtp<'_> {
    async fn submit(&self, tcp: TcpStream, security: Security) -> Result<(), ConnectorError> {
        match security {
            Security::Implicit => {
                let mut stream = BufReader::new(tls_wrap(tcp, self.host).await?);
                let capabilities = greet(&mut stream).await?;
                self.finish(stream, &capabilities).await
            }
            Security::StartTls => {
                let mut stream = BufReader::new(tcp);
                greet(&mut stream).await?;
                command(&mut stream, "STARTTLS", 220).await?;
                // The server says nothing more before the handshake: nothing is buffered.
                let mut stream = BufReader::new(tls_wrap(stream.into_inner(), self.host).await?);
                let capabilities = command(&mut stream, "EHLO rapport", 250).await?;
                self.finish(stream, &capabilities).await
            }
            Security::Plain => {
                let mut stream = BufReader::new(tcp);
                let capabilities = greet(&mut stream).await?;
                self.finish(stream, &capabilities).await
            }
        }
    }

    async fn finish<S: AsyncRead + AsyncWrite + Unpin>(
        &self,
        mut stream: BufReader<S>,
        capabilities: &str,
    ) -> Result<(), ConnectorError> {
        let auth = capabilities.lines().any(|line| {
            line.to_uppercase().starts_with("AUTH") && line.to_uppercase().contains("PLAIN")
        });
        if auth {
            let token = B64.encode(format!("\0{}\0{}", self.username, self.password));
            command(&mut stream, &format!("AUTH PLAIN {token}"), 235).await?;
        }
        command(&mut stream, &format!("MAIL FROM:<{}>", self.from), 250).await?;
        command(&mut stream, &format!("RCPT TO:<{}>", self.to), 250).await?;
        command(&mut stream, "DATA", 354).await?;
        let mut data = String::with_capacity(self.message.len() + 8);
        for line in self.message.split("\r\n") {
            if line.starts_with('.') {
                data.push('.');
            }
            data.push_str(line);
            data.push_str("\r\n");
        }
        data.push('.');
        command(&mut stream, &data, 250).await?;
        command(&mut stream, "QUIT", 221).await.ok();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::{
        read_through, uid_set, within_budget, EmailConfig, EmailConnector, EmailCursor, Idle,
        BATCH, HEADER_BYTES, MAX_MESSAGE_BYTES, PULL_BYTES,
    };
    use crate::ConnectorError;
    use std::collections::{HashMap, HashSet};
    use std::sync::Arc;
    use std::time::Duration;
    use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader, DuplexStream};
    use tokio::time::Instant;

    /// An IMAP server over a stream, its mailbox UIDVALIDITY 7 with `messages` (UIDs from
    /// 1), as slow as it is told.
    #[derive(Clone, Default)]
    struct Server {
        messages: Vec<String>,
        /// UIDs whose size it gives as over [`MAX_MESSAGE_BYTES`].
        large: Vec<u32>,
        /// How long it takes to answer each command (and to greet).
        pause: Duration,
        /// How long it takes to send each message after the first of a fetch.
        gap: Duration,
        /// It greets, then answers nothing.
        silent: bool,
    }

    impl Server {
        async fn serve(self, stream: DuplexStream) {
            let mut stream = BufReader::new(stream);
            tokio::time::sleep(self.pause).await;
            stream.write_all(b"* OK IMAP4rev1 ready\r\n").await.unwrap();
            let mut line = String::new();
            while stream.read_line(&mut line).await.unwrap_or(0) > 0 {
                let words: Vec<String> = line.split_whitespace().map(str::to_owned).collect();
                line.clear();
                if self.silent {
                    continue;
                }
                tokio::time::sleep(self.pause).await;
                let (tag, verb) = (&words[0], words[1].to_uppercase());
                let uids = (1..=self.messages.len())
                    .map(|uid| uid.to_string())
                    .collect::<Vec<_>>()
                    .join(" ");
                let answer = match (verb.as_str(), words.get(2).map(String::as_str)) {
                    ("LOGIN", _) => format!("{tag} OK LOGIN completed\r\n"),
                    ("SELECT", _) => format!(
                        "* FLAGS (\\Seen)\r\n* {} EXISTS\r\n* OK [UIDVALIDITY 7] UIDs valid\r\n\
                         {tag} OK [READ-WRITE] SELECT completed\r\n",
                        self.messages.len()
                    ),
                    ("UID", Some("SEARCH")) => {
                        format!("* SEARCH {uids}\r\n{tag} OK SEARCH completed\r\n")
                    }
                    ("UID", Some("FETCH")) => {
                        let (asked, query) = (uids_of(&words[3]), words[4..].join(" "));
                        let header = query.contains("BODY.PEEK[HEADER]");
                        for (n, uid) in asked.into_iter().enumerate() {
                            let message = &self.messages[uid as usize - 1];
                            let size = if self.large.contains(&uid) {
                                MAX_MESSAGE_BYTES as usize + 1
                            } else {
                                message.len()
                            };
                            let answer = if !query.contains("BODY.PEEK") {
                                format!("* {uid} FETCH (UID {uid} RFC822.SIZE {size})\r\n")
                            } else {
                                if n > 0 {
                                    tokio::time::sleep(self.gap).await;
                                }
                                let (section, part) = match header {
                                    true => (
                                        "BODY[HEADER]",
                                        &message[..message.find("\r\n\r\n").unwrap() + 4],
                                    ),
                                    false => ("BODY[]", &message[..]),
                                };
                                let length = part.len();
                                format!("* {uid} FETCH (UID {uid} RFC822.SIZE {size} {section} {{{length}}}\r\n{part})\r\n")
                            };
                            if stream.write_all(answer.as_bytes()).await.is_err() {
                                return;
                            }
                        }
                        format!("{tag} OK FETCH completed\r\n")
                    }
                    ("LOGOUT", _) => format!("* BYE\r\n{tag} OK LOGOUT completed\r\n"),
                    _ => format!("{tag} BAD unexpected\r\n"),
                };
                if stream.write_all(answer.as_bytes()).await.is_err() || verb == "LOGOUT" {
                    return;
                }
            }
        }
    }

    /// The UIDs of an IMAP sequence set (`1:3,5`).
    fn uids_of(set: &str) -> Vec<u32> {
        set.split(',')
            .flat_map(|run| match run.split_once(':') {
                Some((first, last)) => first.parse().unwrap()..=last.parse().unwrap(),
                None => run.parse().unwrap()..=run.parse().unwrap(),
            })
            .collect()
    }

    fn message(n: usize) -> String {
        format!(
            "From: Maya <maya@example.com>\r\nTo: team@example.com\r\nSubject: export {n}\r\n\
             Message-ID: <m{n}@example.com>\r\nDate: Mon, 07 Dec 2026 10:00:00 +0000\r\n\r\n\
             The export is broken ({n})\r\n"
        )
    }

    /// A first pull (no cursor) by a connector without TLS that waits `wait`, over a
    /// connection `server` serves.
    async fn first_pull(server: Server, wait: Duration) -> Result<crate::Pull, ConnectorError> {
        let config = EmailConfig::parse(&serde_json::json!({
            "imap_host": "imap.example.com", "imap_port": 143, "username": "team@example.com",
            "password": "secret", "tls": false,
        }))
        .unwrap();
        let (client, end) = tokio::io::duplex(64 * 1024);
        tokio::spawn(server.serve(end));
        EmailConnector::new(config, Arc::new(Default::default()), wait)
            .pull_over(client, EmailCursor::default(), Instant::now())
            .await
    }

    fn cursor_of(pull: &crate::Pull) -> EmailCursor {
        serde_json::from_str(&pull.next_cursor.as_ref().unwrap().0).unwrap()
    }

    #[tokio::test(start_paused = true)]
    async fn a_slow_server_is_waited_for_while_it_answers_and_given_up_on_when_silent() {
        let wait = Duration::from_secs(60);
        // Answers 50 s apart: the greeting, login, select and search, over three minutes in
        // all, each within the wait; then the logout's, waited for 5 s only.
        let slow = Server {
            pause: Duration::from_secs(50),
            ..Server::default()
        };
        let started = Instant::now();
        let pull = first_pull(slow, wait).await.unwrap();
        assert_eq!(started.elapsed(), Duration::from_secs(205));
        assert!(pull.items.is_empty() && !pull.more);
        let expected = EmailCursor {
            uidvalidity: 7,
            uid: 0,
        };
        assert_eq!(cursor_of(&pull), expected);
        // A server that greets, then never answers the login.
        let silent = Server {
            silent: true,
            ..Server::default()
        };
        let started = Instant::now();
        let err = tokio::time::timeout(10 * wait, first_pull(silent, wait))
            .await
            .expect("given up on")
            .unwrap_err();
        assert!(
            err.to_string().contains("the server sent nothing for 60 s"),
            "{err}"
        );
        assert_eq!(started.elapsed(), wait);
    }

    #[tokio::test(start_paused = true)]
    async fn a_slow_fetch_keeps_what_came_and_leaves_the_rest_to_the_next_pull() {
        let wait = Duration::from_secs(60);
        let texts = |pull: &crate::Pull| -> Vec<String> {
            pull.items.iter().map(|item| item.text.clone()).collect()
        };
        let broken = |range: std::ops::RangeInclusive<usize>| -> Vec<String> {
            range
                .map(|n| format!("The export is broken ({n})"))
                .collect()
        };
        // Messages 50 s apart: the fetch's two waits (120 s) see three of the five.
        let slow = Server {
            messages: (1..=5).map(message).collect(),
            gap: Duration::from_secs(50),
            ..Server::default()
        };
        let pull = first_pull(slow.clone(), wait).await.unwrap();
        assert_eq!(texts(&pull), broken(1..=3));
        assert!(pull.more);
        assert_eq!(cursor_of(&pull).uid, 3);
        // A gap longer than a wait ends the fetch there too, keeping what came.
        let pull = first_pull(slow.clone(), Duration::from_secs(30))
            .await
            .unwrap();
        assert_eq!(texts(&pull), broken(1..=1));
        assert_eq!(cursor_of(&pull).uid, 1);
        // The first message over the message cap (its header alone is fetched) comes
        // first, so the pull moves on past it.
        let large = Server {
            large: vec![1],
            ..slow.clone()
        };
        let pull = first_pull(large, wait).await.unwrap();
        assert_eq!(
            pull.items[0].text,
            "(message of 10 MiB: only its header was fetched)"
        );
        // (The second fetch's first message comes at once, the next two within 120 s.)
        assert_eq!(texts(&pull)[1..], broken(2..=4));
        assert_eq!(cursor_of(&pull).uid, 4);
        // However slow, the pull's first message is waited for past the fetch's time, up to
        // three waits from the pull's start: here it comes after 150 s.
        let slower = Server {
            pause: Duration::from_secs(25),
            ..slow.clone()
        };
        let pull = first_pull(slower, wait).await.unwrap();
        assert_eq!(texts(&pull), broken(1..=1));
        assert_eq!(cursor_of(&pull).uid, 1);
        // After 210 s it would: the pull fails at 180 s, naming it.
        let slowest = Server {
            pause: Duration::from_secs(35),
            ..slow
        };
        let started = Instant::now();
        let err = first_pull(slowest, wait).await.unwrap_err();
        assert!(err.to_string().contains("message UID 1 ("), "{err}");
        assert!(
            err.to_string().contains("did not come within 180 s"),
            "{err}"
        );
        assert_eq!(started.elapsed(), Duration::from_secs(180));
    }

    #[tokio::test(start_paused = true)]
    async fn a_wait_is_counted_from_when_it_began() {
        let (client, mut server) = tokio::io::duplex(64);
        let mut client = Idle::new(client, Duration::from_secs(60));
        client.write_all(b"A1 NOOP\r\n").await.unwrap();
        // The client's own work between commands is not a wait for the server.
        tokio::time::sleep(Duration::from_secs(100)).await;
        let answer = tokio::spawn(async move {
            let mut command = [0; 9];
            server.read_exact(&mut command).await.unwrap();
            tokio::time::sleep(Duration::from_secs(59)).await;
            server.write_all(b"A1 OK\r\n").await.unwrap();
            server
        });
        let mut reply = [0; 7];
        client.read_exact(&mut reply).await.unwrap();
        assert_eq!(&reply, b"A1 OK\r\n");
        // Then nothing: the next read fails once it has waited its 60 s.
        let _server = answer.await.unwrap();
        let started = Instant::now();
        let err = client.read(&mut reply).await.unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::TimedOut);
        assert_eq!(started.elapsed(), Duration::from_secs(60));
    }

    fn all(uids: &[u32], size: u32) -> HashMap<u32, u32> {
        uids.iter().map(|uid| (*uid, size)).collect()
    }

    #[test]
    fn a_pull_takes_messages_within_its_bytes_and_at_least_one() {
        let uids: Vec<u32> = (1..=BATCH as u32).collect();
        // A thousand messages of 5 KB: all of them.
        assert_eq!(within_budget(&uids, &all(&uids, 5_000)), BATCH);
        // Of 1 MiB each: as many as fit in the budget.
        assert_eq!(
            within_budget(&uids, &all(&uids, 1 << 20)),
            (PULL_BYTES / (1 << 20)) as usize
        );
        // One at the message cap, over the budget alone: it goes, alone.
        assert_eq!(within_budget(&uids, &all(&uids, MAX_MESSAGE_BYTES)), 1);
        // Past the message cap only the header is fetched, and counted as such.
        assert_eq!(
            within_budget(&uids, &all(&uids, MAX_MESSAGE_BYTES + 1)),
            BATCH.min((PULL_BYTES / HEADER_BYTES) as usize)
        );
        assert_eq!(within_budget(&[], &HashMap::new()), 0);
    }

    #[test]
    fn a_message_without_a_size_is_passed_only_when_one_after_it_has_one() {
        // UID 2 without a size (gone, unless a search still finds it): planned past it.
        assert_eq!(within_budget(&[1, 2, 3], &all(&[1, 3], 10)), 3);
        // The budget cut next to a gap.
        let mut cut = all(&[1], 9 << 20);
        cut.insert(3, 1);
        assert_eq!(within_budget(&[1, 2, 3], &cut), 1);
        // No size after UID 1 (an answer cut short, a refusal): 2 and 3 wait.
        assert_eq!(within_budget(&[1, 2, 3], &all(&[1], 10)), 1);
        // None at all: nothing is taken (the pull fails saying so).
        assert_eq!(within_budget(&[1, 2, 3], &HashMap::new()), 0);
    }

    #[test]
    fn the_cursor_moves_past_messages_sent_or_gone_only() {
        let sizes = all(&[1, 3, 4], 10);
        let sent = |uids: &[u32]| uids.iter().copied().collect::<HashSet<u32>>();
        assert_eq!(read_through(&[1, 2, 3, 4], &sizes, &sent(&[1, 3, 4])), 4);
        // 3 was not sent: the cursor stops after 2 (expunged), 3 and 4 are asked again.
        assert_eq!(read_through(&[1, 2, 3, 4], &sizes, &sent(&[1, 4])), 2);
        assert_eq!(read_through(&[1, 2, 3, 4], &sizes, &sent(&[])), 0);
    }

    #[test]
    fn uids_are_sent_as_runs() {
        assert_eq!(
            uid_set(&[1, 2, 3, 7, 9, 10, u32::MAX - 1, u32::MAX]),
            "1:3,7,9:10,4294967294:4294967295"
        );
        assert_eq!(uid_set(&[5]), "5");
        assert_eq!(uid_set(&[]), "");
    }
}
