//! The HTTP surface: the router and the middleware every route runs under (request id,
//! tracing span, metrics, time budget, CORS, compression, body limit).
//! The routes live in rooms of their own:
//! - [`graphql`]: `/graphql`, the GraphQL-over-HTTP transport;
//! - [`graphiql`]: GraphiQL for a browser's `GET /graphql`, its assets at `/graphiql/…`;
//! - [`ws`]: `/graphql/ws`, GraphQL over WebSocket (subscriptions);
//! - [`auth`]: bearer keys, authentication and the rate limiters;
//! - [`webhook`]: `POST /webhooks/{source_id}`, signed deliveries into ingest;
//! - [`ops`]: `/healthz`, `/readyz`, `/metrics` and the demo feed;
//! - [`listener`]: the connection listener (connection cap, header and idle timeouts).
//!
//! Every error answer is built by [`reject`]: its status comes from the error's code
//! ([`Code::http_status`]) unless the transport's protocol decides it
//! ([`Rejection::protocol`]: 405, 406, 413, 415, and a webhook's 422 and 503).

mod auth;
mod graphiql;
mod graphql;
pub mod listener;
mod ops;
mod trusted;
mod webhook;
mod ws;

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::{header, HeaderName, HeaderValue, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use serde_json::{json, Value};
use tower_http::compression::predicate::{NotForContentType, Predicate, SizeAbove};
use tower_http::compression::CompressionLayer;
use tower_http::cors::{Any, CorsLayer};
use tracing::Instrument;

use crate::error::{Code, Error};
use crate::App;
use auth::RateLimiter;

const GRAPHQL_RESPONSE: &str = "application/graphql-response+json";
const JSON: &str = "application/json";

#[derive(Clone)]
struct HttpState {
    /// The app and its GraphQL schema, built once for this router.
    api: crate::graphql::Api,
    /// Requests a minute per API key.
    limiter: Arc<RateLimiter<entity::ApiKeyId>>,
    /// Failed authentications (401s of `/graphql`) a minute per client address.
    auth_failures: Arc<RateLimiter<std::net::IpAddr>>,
    /// Deliveries with a bad signature a minute per source and client address.
    webhook_failures: Arc<RateLimiter<(String, std::net::IpAddr)>>,
    /// Signed deliveries a minute per webhook source.
    webhooks: Arc<RateLimiter<String>>,
    /// The connectors of sources that take deliveries, kept between deliveries.
    hooked: Arc<webhook::Connectors>,
    /// Places for open subscription sockets.
    sockets: Arc<tokio::sync::Semaphore>,
    /// Open subscription sockets per client address.
    client_sockets: Arc<std::sync::Mutex<std::collections::HashMap<std::net::IpAddr, usize>>>,
    /// Automatic persisted queries, per workspace.
    persisted: Arc<graphql::PersistedQueries>,
}

impl HttpState {
    fn app(&self) -> &App {
        self.api.app()
    }
}

/// The whole HTTP surface of Rapport. Builds the GraphQL schema for `app` once.
pub fn router(app: App) -> Router {
    let limits = &app.config.limits;
    let body_limit = limits.max_body_bytes;
    let state = HttpState {
        limiter: Arc::new(RateLimiter::new(limits.requests_per_minute)),
        auth_failures: Arc::new(RateLimiter::new(limits.failed_auth_per_minute)),
        webhook_failures: Arc::new(RateLimiter::new(limits.failed_auth_per_minute)),
        webhooks: Arc::new(RateLimiter::new(limits.webhook_requests_per_minute)),
        hooked: Arc::default(),
        sockets: Arc::new(tokio::sync::Semaphore::new(limits.max_sockets)),
        client_sockets: Arc::default(),
        persisted: Arc::default(),
        api: crate::graphql::Api::new(app),
    };
    let cors = cors(&state.app().config.http);
    // The socket route stays out of compression: its 101 answer has no body to compress,
    // and its frames are the WebSocket protocol's business (permessage-deflate), not HTTP's.
    let sockets = Router::new().route("/graphql/ws", get(ws::upgrade));
    Router::new()
        .route(
            "/graphql",
            get(graphql::get)
                .post(graphql::post)
                .route_layer(middleware::from_fn_with_state(
                    state.clone(),
                    auth::limit_auth_failures,
                ))
                .route_layer(middleware::from_fn(graphql::cache_control)),
        )
        .route("/graphiql/{file}", get(graphiql::asset))
        .route(
            "/webhooks/{source_id}",
            axum::routing::post(webhook::deliver).route_layer(middleware::from_fn_with_state(
                state.clone(),
                auth::limit_webhooks,
            )),
        )
        .route("/healthz", get(ops::healthz))
        .route("/demo/feed.xml", get(ops::demo_feed))
        .route("/readyz", get(ops::readyz))
        .route("/metrics", get(ops::metrics))
        .fallback(|| async { no_such_route() })
        .layer(compression())
        .merge(sockets)
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(cors)
        .layer(middleware::from_fn(graphiql::unshared))
        .layer(middleware::from_fn_with_state(state.clone(), observe))
        .with_state(state)
}

/// The request headers a browser page on another origin may always send: the key and the
/// body's type, a request id, the tracing contexts of W3C Trace Context and Baggage,
/// Sentry and Zipkin B3, and the client names and flags Apollo Client, Apollo Router and
/// other GraphQL clients add. Without one of them in the preflight's answer, the browser
/// refuses every request that carries it. `[http] cors_allow_headers` adds more.
pub const DEFAULT_CORS_ALLOW_HEADERS: &[&str] = &[
    "authorization",
    "content-type",
    "accept",
    "x-request-id",
    "traceparent",
    "tracestate",
    "baggage",
    "sentry-trace",
    "b3",
    "apollographql-client-name",
    "apollographql-client-version",
    "apollo-require-preflight",
    "x-apollo-operation-name",
    "graphql-client-name",
    "graphql-client-version",
];

/// Browsers may call the API from any origin: it authenticates with a bearer key, never
/// with cookies, so a foreign page cannot borrow a user's session.
fn cors(config: &crate::config::HttpConfig) -> CorsLayer {
    let mut allowed: Vec<HeaderName> = DEFAULT_CORS_ALLOW_HEADERS
        .iter()
        .map(|name| HeaderName::from_static(name))
        .collect();
    for name in &config.cors_allow_headers {
        if !allowed.contains(name) {
            allowed.push(name.clone());
        }
    }
    CorsLayer::new()
        .allow_origin(Any)
        .allow_methods([Method::GET, Method::POST])
        .allow_headers(allowed)
        .expose_headers([HeaderName::from_static("x-request-id"), header::RETRY_AFTER])
        .max_age(Duration::from_secs(3_600))
}

/// gzip or brotli (tower-http's brotli level 4, as on-the-fly servers use) for clients that
/// ask with `Accept-Encoding`. Bodies under a kilobyte stay as they are (the saving would
/// not pay for the work), and so do streams a client reads as they come (Server-Sent
/// Events, `multipart/mixed` incremental delivery): an encoder holds bytes back until it
/// has enough to compress, which would delay each part.
fn compression() -> CompressionLayer<impl Predicate> {
    CompressionLayer::new().compress_when(
        SizeAbove::new(1024)
            .and(NotForContentType::SSE)
            .and(NotForContentType::const_new("multipart/"))
            // GraphiQL's files are stored gzip-compressed; a client that takes only other
            // codings gets them as they are rather than recompressed on every request.
            .and(NotForContentType::const_new("text/javascript"))
            .and(NotForContentType::const_new("text/css")),
    )
}

/// Serves `app` on `listener` until `shutdown` completes, then finishes requests in flight.
/// The listener enforces the connection cap and header/idle timeouts ([`listener`]).
pub async fn serve(
    app: App,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let limits = app.config.limits.clone();
    listener::serve(router(app), listener, &limits, shutdown).await
}

/// Request id, tracing span, metrics, and the time budget of every route: a request (a
/// slow upload included) that outlasts `limits.request_timeout_secs` (plus a second for
/// the GraphQL executor's own, more precise budget to answer first) is answered `TIMEOUT`.
async fn observe(State(state): State<HttpState>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let request_id = request
        .headers()
        .get("x-request-id")
        .and_then(|value| value.to_str().ok())
        .filter(|id| {
            !id.is_empty()
                && id.len() <= 64
                && id
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        })
        .map(str::to_owned)
        .unwrap_or_else(|| uuid::Uuid::now_v7().simple().to_string());
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", |path| path.as_str())
        .to_owned();
    let span = tracing::info_span!("request", request_id = %request_id, method = %request.method(), route = %route);
    let budget = Duration::from_secs(state.app().config.limits.request_timeout_secs.max(1) + 1);
    let run = crate::telemetry::with_request_id(request_id.clone(), next.run(request))
        .instrument(span.clone());
    let mut response = match tokio::time::timeout(budget, run).await {
        Ok(response) => response,
        Err(_) => {
            let error = Error::Timeout {
                secs: budget.as_secs(),
            };
            reject(&state, MediaType::Json, error)
        }
    };
    let status = response.status().as_u16();
    state
        .app()
        .metrics
        .record_request(&route, status, started.elapsed());
    span.in_scope(|| {
        tracing::info!(
            status,
            elapsed_ms = started.elapsed().as_secs_f64() * 1e3,
            "served"
        )
    });
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert("x-request-id", value);
    }
    response
}

/// A request that cannot run: the error, and the status it is answered with.
struct Rejection(StatusCode, Error);

impl Rejection {
    /// A `BAD_USER_INPUT` rejection (400).
    fn bad(message: impl Into<String>) -> Rejection {
        Rejection::from(Error::bad_input(message))
    }

    /// A rejection whose status the HTTP protocol decides rather than the error's code:
    /// 405 (method), 406 (`Accept`), 413 (body size), 415 (`Content-Type`), and the
    /// webhook statuses that tell a sender whether to retry (422: never, 503: later).
    fn protocol(status: StatusCode, error: Error) -> Rejection {
        Rejection(status, error)
    }
}

impl From<Error> for Rejection {
    /// The status of the error's code, from the table in [`crate::error`].
    fn from(error: Error) -> Rejection {
        Rejection(status_of(error.code()), error)
    }
}

/// The HTTP status of `code` ([`Code::http_status`]).
fn status_of(code: Code) -> StatusCode {
    StatusCode::from_u16(code.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum MediaType {
    GraphqlResponse,
    Json,
}

impl MediaType {
    fn as_str(self) -> &'static str {
        match self {
            MediaType::GraphqlResponse => GRAPHQL_RESPONSE,
            MediaType::Json => JSON,
        }
    }
}

/// The body of an error answer: one GraphQL error, as [`crate::graphql::errors`] renders it.
fn error_body(error: &Error) -> Value {
    let error = crate::graphql::errors::to_graphql(error);
    json!({ "errors": [{ "message": error.message, "extensions": error.extensions }] })
}

/// The answer for a path that is not a route.
fn no_such_route() -> Response {
    let body = json!({ "errors": [{ "message": "no such route; the API is at /graphql", "extensions": { "code": Code::NotFound.as_str() } }] });
    (
        status_of(Code::NotFound),
        [(header::CONTENT_TYPE, JSON)],
        body.to_string(),
    )
        .into_response()
}

/// The answer to a request that cannot run, counted in the metrics by its code, with
/// `WWW-Authenticate` on 401s and `Retry-After` on rate limits.
fn reject(state: &HttpState, media: MediaType, rejection: impl Into<Rejection>) -> Response {
    let Rejection(status, error) = rejection.into();
    state.app().metrics.record_error(error.code().as_str());
    let mut response = (
        status,
        [(header::CONTENT_TYPE, media.as_str())],
        error_body(&error).to_string(),
    )
        .into_response();
    match &error {
        Error::Unauthenticated(_) => {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        Error::RateLimited { retry_after_secs } => {
            if let Ok(value) = HeaderValue::from_str(&retry_after_secs.to_string()) {
                response.headers_mut().insert(header::RETRY_AFTER, value);
            }
        }
        _ => {}
    }
    response
}
