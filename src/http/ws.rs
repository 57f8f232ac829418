//! `/graphql/ws`: GraphQL over WebSocket with the `graphql-transport-ws` protocol (the
//! `graphql-ws` client library's), for subscriptions (and queries and mutations, which
//! run as over HTTP).
//!
//! The client authenticates in `connection_init` with `{"Authorization": "Bearer <key>"}`
//! as its payload; a socket that sends anything else first, or nothing for
//! [`INIT_TIMEOUT`], is closed (`4401` / `4408`, as the protocol says), and a bad key is
//! refused with `4403` and counted with the failed authentications of its address. After
//! that the protocol is async-graphql's, over an executor that measures and maps every
//! operation as `/graphql` does ([`crate::graphql::execute_stream`]).
//!
//! Bounded: at most `max_sockets` sockets at once, `max_subscriptions_per_key` per key
//! ([`crate::live`]), messages of at most `max_body_bytes`; an answer the client does not
//! take within [`SEND_TIMEOUT`] closes the socket (nothing is queued for it meanwhile: a
//! subscription that falls behind is stopped with its last cursor, [`crate::live`]).

use std::net::IpAddr;
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
/// How long a socket may take to send `connection_init`.
const INIT_TIMEOUT: Duration = Duration::from_secs(10);
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
    let max_message = state.app().config.limits.max_body_bytes;
    upgrade
        .protocols([PROTOCOL])
        .max_message_size(max_message)
        .max_frame_size(max_message)
        .on_upgrade(move |socket| async move {
            serve(state, socket, ip).await;
            drop(socket_slot);
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
    let init = match tokio::time::timeout(INIT_TIMEOUT, first_text(&mut incoming)).await {
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
            state.app().metrics.record_error(error.code().as_str());
            let _ = sink.send(close(4403, &format!("Forbidden: {error}"))).await;
            return;
        }
    };
    let executor = Executor {
        api: state.api.clone(),
        caller: Arc::new(caller),
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
    while let Some(message) = protocol.next().await {
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

/// The caller of a `connection_init` payload: `{"Authorization": "Bearer <key>"}`
/// (the header's name in any case).
async fn authenticate(state: &HttpState, payload: &Value) -> Result<Caller, Error> {
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
    let key = value
        .strip_prefix("Bearer ")
        .or_else(|| value.strip_prefix("bearer "))
        .map(str::trim)
        .ok_or_else(|| Error::Unauthenticated("Authorization must be `Bearer <key>`".into()))?;
    let caller = domain::workspace::authenticate(&state.app().db, key).await?;
    state.limiter.check(caller.key_id)?;
    Ok(caller)
}

/// Runs one socket's operations as its caller.
#[derive(Clone)]
struct Executor {
    api: crate::graphql::Api,
    caller: Arc<Caller>,
}

impl async_graphql::Executor for Executor {
    async fn execute(&self, request: async_graphql::Request) -> async_graphql::Response {
        crate::graphql::execute(&self.api, (*self.caller).clone(), request).await
    }

    fn execute_stream(
        &self,
        request: async_graphql::Request,
        _session: Option<Arc<async_graphql::Data>>,
    ) -> futures_util::stream::BoxStream<'static, async_graphql::Response> {
        crate::graphql::execute_stream(&self.api, (*self.caller).clone(), request)
    }
}
