//! `/graphql/ws`: GraphQL over WebSocket with the `graphql-transport-ws` protocol (the
//! `graphql-ws` client library's), for subscriptions (and queries and mutations, which
//! run as over HTTP).
//!
//! The client authenticates in `connection_init` with `{"Authorization": "Bearer <key>"}`
//! as its payload; a socket that sends anything else first, or nothing for
//! `socket_init_timeout_secs` (10), is closed (`4401` / `4408`, as the protocol says), and a bad key is
//! refused with `4403` and counted with the failed authentications of its address. After
//! that the protocol is async-graphql's, over an executor that measures and maps every
//! operation as `/graphql` does ([`crate::graphql::execute_stream`]).
//!
//! Every operation on the socket looks its key up again and takes a token of the key's
//! request rate, as over HTTP, and the key is looked up every `socket_key_recheck_secs`
//! (30) too: a key
//! revoked while its socket is open ends it (`4403`).
//!
//! Bounded: at most `max_sockets` sockets at once and `max_connections_per_client` from one
//! address, [`MAX_IN_FLIGHT`] operations a socket, `max_subscriptions_per_key` subscriptions
//! per key ([`crate::live`]), messages of at most `max_body_bytes`; an answer the client does not
//! take within [`SEND_TIMEOUT`] closes the socket (nothing is queued for it meanwhile: a
//! subscription that falls behind is stopped with its last cursor, [`crate::live`]).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_graphql::http::{WebSocket as GraphqlSocket, WsMessage};
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use futures_util::{SinkExt, StreamExt};
use serde_json::Value;

use super::{reject, HttpState, MediaType};
use crate::domain::{self, Caller};
use crate::error::Error;

/// The subprotocol spoken.
const PROTOCOL: &str = "graphql-transport-ws";
/// How long one message to the client may take to go out.
const SEND_TIMEOUT: Duration = Duration::from_secs(10);

/// `GET /graphql/ws`: upgrades to a GraphQL socket.
pub(super) async fn upgrade(State(state): State<HttpState>, request: Request) -> Response {
    let ip = super::listener::peer(&request).map(|peer| super::listener::client(peer.ip()));
    if let Some(ip) = ip {
        if let Err(error) = state.auth_failures.peek(&ip) {
            return reject(&state, MediaType::Json, error);
        }
    }
    let (mut parts, _) = request.into_parts();
    let upgrade =
        match <WebSocketUpgrade as axum::extract::FromRequestParts<HttpState>>::from_request_parts(
            &mut parts, &state,
        )
        .await
        {
            Ok(upgrade) => upgrade,
            Err(rejection) => {
                return reject(
                    &state,
                    MediaType::Json,
                    super::Rejection::protocol(
                        rejection.status(),
                        Error::bad_input(format!(
                            "/graphql/ws speaks GraphQL over WebSocket ({PROTOCOL}): {}",
                            rejection.body_text()
                        )),
                    ),
                );
            }
        };
    let Ok(socket_slot) = state.sockets.clone().try_acquire_owned() else {
        return reject(
            &state,
            MediaType::Json,
            Error::RateLimited {
                retry_after_secs: 5,
            },
        );
    };
    // One address may not take every place: it holds at most as many sockets as it may
    // hold connections.
    let Some(client_slot) = ip.and_then(|ip| ClientSlot::take(&state, ip)).or_else(|| {
        ip.is_none().then(|| ClientSlot {
            sockets: state.client_sockets.clone(),
            ip: None,
        })
    }) else {
        return reject(
            &state,
            MediaType::Json,
            Error::RateLimited {
                retry_after_secs: 5,
            },
        );
    };
    let max_message = state.app().config.limits.max_body_bytes;
    upgrade
        .protocols([PROTOCOL])
        .max_message_size(max_message)
        .max_frame_size(max_message)
        .on_upgrade(move |socket| async move {
            serve(state, socket, ip).await;
            drop((socket_slot, client_slot));
        })
        .into_response()
}

/// A close frame with a protocol code.
fn close(code: u16, reason: &str) -> Message {
    // A close reason is at most 123 bytes.
    let mut reason = reason.to_owned();
    while reason.len() > 123 {
        reason.pop();
    }
    Message::Close(Some(CloseFrame {
        code,
        reason: reason.into(),
    }))
}

/// One socket, from `connection_init` to its close.
async fn serve(state: HttpState, socket: WebSocket, ip: Option<IpAddr>) {
    let (mut sink, mut incoming) = socket.split();
    let limits = &state.app().config.limits;
    // Clamped: a day at most, so no setting can overflow the timers.
    let init_timeout = Duration::from_secs(limits.socket_init_timeout_secs.clamp(1, 86_400));
    let key_recheck = Duration::from_secs(limits.socket_key_recheck_secs.clamp(1, 86_400));
    let init = match tokio::time::timeout(init_timeout, first_text(&mut incoming)).await {
        Err(_) => {
            let _ = sink
                .send(close(4408, "Connection initialisation timeout"))
                .await;
            return;
        }
        Ok(None) => return,
        Ok(Some(text)) => text,
    };
    let payload = match serde_json::from_str::<Value>(&init) {
        Ok(message) if message.get("type").and_then(Value::as_str) == Some("connection_init") => {
            message.get("payload").cloned().unwrap_or(Value::Null)
        }
        _ => {
            let _ = sink
                .send(close(4401, "Unauthorized: send connection_init first"))
                .await;
            return;
        }
    };
    let caller = match authenticate(&state, &payload).await {
        Ok(caller) => caller,
        Err(error) => {
            if let (Error::Unauthenticated(_), Some(ip)) = (&error, ip) {
                let _ = state.auth_failures.check(ip);
            }
            let _ = sink.send(refusal(&state, &error)).await;
            return;
        }
    };
    let secret: Arc<str> = bearer(&payload).unwrap_or_default().into();
    let executor = Executor {
        state: state.clone(),
        secret: secret.clone(),
        key_id: caller.key_id,
        in_flight: Arc::new(AtomicUsize::new(0)),
    };
    // The protocol engine sees `connection_init` too, and acknowledges it.
    let messages = futures_util::stream::once(async move { init.into_bytes() }).chain(
        incoming.filter_map(|message| async move {
            match message {
                Ok(Message::Text(text)) => Some(text.as_bytes().to_vec()),
                Ok(Message::Binary(bytes)) => Some(bytes.to_vec()),
                // Pings are answered by the socket itself; a close ends the stream.
                Ok(_) => None,
                Err(_) => None,
            }
        }),
    );
    let protocol = GraphqlSocket::new(
        executor,
        messages,
        async_graphql::http::WebSocketProtocols::GraphQLWS,
    )
    .on_connection_init(|_| async { Ok(async_graphql::Data::default()) });
    let mut protocol = std::pin::pin!(protocol);
    let mut recheck =
        tokio::time::interval_at(tokio::time::Instant::now() + key_recheck, key_recheck);
    loop {
        let message = tokio::select! {
            message = protocol.next() => message,
            _ = recheck.tick() => {
                // A key revoked (or its workspace deleted) while the socket is open ends it.
                match current_caller(&state, &secret, caller.key_id).await {
                    Ok(_) => continue,
                    Err(error) => {
                        let _ = tokio::time::timeout(SEND_TIMEOUT, sink.send(refusal(&state, &error))).await;
                        return;
                    }
                }
            }
        };
        let Some(message) = message else { break };
        let (message, last) = match message {
            WsMessage::Text(text) => (Message::Text(text.into()), false),
            WsMessage::Close(code, reason) => (close(code, &reason), true),
        };
        match tokio::time::timeout(SEND_TIMEOUT, sink.send(message)).await {
            Ok(Ok(())) if !last => {}
            Ok(Ok(())) => return,
            Ok(Err(_)) => return,
            Err(_) => {
                tracing::info!("a subscription socket did not take its messages; closed");
                return;
            }
        }
    }
    let _ = sink.send(Message::Close(None)).await;
}

/// The first text message (a binary one read as text); `None` when the socket closed.
async fn first_text(incoming: &mut futures_util::stream::SplitStream<WebSocket>) -> Option<String> {
    while let Some(Ok(message)) = incoming.next().await {
        match message {
            Message::Text(text) => return Some(text.to_string()),
            Message::Binary(bytes) => return Some(String::from_utf8_lossy(&bytes).into_owned()),
            Message::Close(_) => return None,
            _ => {}
        }
    }
    None
}

/// The key of a `connection_init` payload: `{"Authorization": "Bearer <key>"}` (the
/// header's name in any case).
fn bearer(payload: &Value) -> Result<&str, Error> {
    let value = payload
        .as_object()
        .and_then(|payload| {
            payload
                .iter()
                .find(|(name, _)| name.eq_ignore_ascii_case("authorization"))
        })
        .and_then(|(_, value)| value.as_str())
        .ok_or_else(|| {
            Error::Unauthenticated(
                "send the API key in connection_init: {\"Authorization\": \"Bearer <key>\"}".into(),
            )
        })?;
    value
        .strip_prefix("Bearer ")
        .or_else(|| value.strip_prefix("bearer "))
        .map(str::trim)
        .ok_or_else(|| Error::Unauthenticated("Authorization must be `Bearer <key>`".into()))
}

/// The caller of a `connection_init` payload, within its key's request rate.
async fn authenticate(state: &HttpState, payload: &Value) -> Result<Caller, Error> {
    let caller = domain::workspace::authenticate(&state.app().db, bearer(payload)?).await?;
    state.limiter.check(caller.key_id)?;
    Ok(caller)
}

/// The socket's key looked up again: still valid, still the same key, its role as it is
/// now (a key revoked or a workspace deleted since the socket opened is refused).
async fn current_caller(
    state: &HttpState,
    secret: &str,
    key_id: entity::ApiKeyId,
) -> Result<Caller, Error> {
    let caller = domain::workspace::authenticate(&state.app().db, secret).await?;
    if caller.key_id != key_id {
        return Err(Error::Unauthenticated(
            "the API key is unknown or revoked".into(),
        ));
    }
    Ok(caller)
}

/// The close frame refusing a socket for `error`: 4403 for a bad key or role, 4429 over
/// the key's rate, 1011 for anything else (whose details stay in the log).
fn refusal(state: &HttpState, error: &Error) -> Message {
    state.app().metrics.record_error(error.code().as_str());
    match error {
        Error::Unauthenticated(_) | Error::Forbidden(_) => {
            close(4403, &format!("Forbidden: {error}"))
        }
        Error::RateLimited { .. } => close(4429, "Too many requests: slow down and connect again"),
        _ => {
            tracing::warn!(error = %error, "a subscription socket could not authenticate");
            close(1011, "Internal error")
        }
    }
}

/// A place of one client address among the sockets open.
pub(super) struct ClientSlot {
    sockets: Arc<std::sync::Mutex<HashMap<IpAddr, usize>>>,
    ip: Option<IpAddr>,
}

impl ClientSlot {
    fn take(state: &HttpState, ip: IpAddr) -> Option<ClientSlot> {
        let cap = state.app().config.limits.max_connections_per_client.max(1);
        let mut sockets = state
            .client_sockets
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let count = sockets.entry(ip).or_insert(0);
        if *count >= cap {
            return None;
        }
        *count += 1;
        Some(ClientSlot {
            sockets: state.client_sockets.clone(),
            ip: Some(ip),
        })
    }
}

impl Drop for ClientSlot {
    fn drop(&mut self) {
        let Some(ip) = self.ip else { return };
        let mut sockets = self
            .sockets
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(count) = sockets.get_mut(&ip) {
            *count -= 1;
            if *count == 0 {
                sockets.remove(&ip);
            }
        }
    }
}

/// Runs one socket's operations as its caller. Each operation looks the key up again and
/// takes a token of the key's request rate, as a request to `/graphql` does, and a socket
/// runs at most [`MAX_IN_FLIGHT`] operations at once.
#[derive(Clone)]
struct Executor {
    state: HttpState,
    secret: Arc<str>,
    key_id: entity::ApiKeyId,
    in_flight: Arc<AtomicUsize>,
}

/// Operations (subscriptions included) one socket runs at once.
const MAX_IN_FLIGHT: usize = 64;

impl Executor {
    async fn caller(&self) -> Result<Caller, Error> {
        let caller = current_caller(&self.state, &self.secret, self.key_id).await?;
        self.state.limiter.check(caller.key_id)?;
        Ok(caller)
    }
}

/// An operation's place among its socket's operations in flight.
struct InFlight(Arc<AtomicUsize>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The answer to an operation that may not run, as `/graphql` words its errors.
fn refused(error: Error) -> async_graphql::Response {
    let error =
        crate::graphql::errors::to_graphql(&error).into_server_error(async_graphql::Pos::default());
    async_graphql::Response::from_errors(vec![error])
}

/// `request` as a trusted-only caller may run it (its text looked up when it named a
/// registered hash alone), or its refusal; any other caller's as it is.
async fn admit(
    state: &HttpState,
    caller: &Caller,
    mut request: async_graphql::Request,
) -> Result<async_graphql::Request, Error> {
    if !caller.trusted_documents_only {
        return Ok(request);
    }
    let hash = match request.extensions.0.get("persistedQuery") {
        Some(async_graphql::Value::Object(persisted)) => match persisted.get("sha256Hash") {
            Some(async_graphql::Value::String(hash)) => Some(hash.clone()),
            _ => None,
        },
        _ => None,
    };
    let query = (!request.query.is_empty()).then_some(request.query.as_str());
    if let Some(text) = super::trusted::admit(state, caller, query, hash.as_deref()).await? {
        request.query = text;
    }
    Ok(request)
}

impl async_graphql::Executor for Executor {
    async fn execute(&self, request: async_graphql::Request) -> async_graphql::Response {
        let caller = match self.caller().await {
            Ok(caller) => caller,
            Err(error) => return refused(error),
        };
        match admit(&self.state, &caller, request).await {
            Ok(request) => crate::graphql::execute(&self.state.api, caller, request).await,
            Err(error) => refused(error),
        }
    }

    fn execute_stream(
        &self,
        request: async_graphql::Request,
        _session: Option<Arc<async_graphql::Data>>,
    ) -> futures_util::stream::BoxStream<'static, async_graphql::Response> {
        let this = self.clone();
        if this.in_flight.fetch_add(1, Ordering::SeqCst) >= MAX_IN_FLIGHT {
            this.in_flight.fetch_sub(1, Ordering::SeqCst);
            let error = Error::bad_input(format!(
                "a socket runs at most {MAX_IN_FLIGHT} operations at once: complete some first"
            ));
            return futures_util::stream::once(async move { refused(error) }).boxed();
        }
        let slot = InFlight(this.in_flight.clone());
        futures_util::stream::once(async move {
            let admitted = match this.caller().await {
                Ok(caller) => admit(&this.state, &caller, request)
                    .await
                    .map(|request| (caller, request)),
                Err(error) => Err(error),
            };
            match admitted {
                Ok((caller, request)) => {
                    crate::graphql::execute_stream(&this.state.api, caller, request)
                }
                Err(error) => futures_util::stream::once(async move { refused(error) }).boxed(),
            }
        })
        .flatten()
        // The place is held as long as the operation's stream lives.
        .map(move |response| {
            let _ = &slot;
            response
        })
        .boxed()
    }
}
