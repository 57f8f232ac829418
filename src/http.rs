//! The axum router. `/graphql` follows the GraphQL-over-HTTP specification: POST with
//! `application/json`, GET for queries only, `application/graphql-response+json` or
//! `application/json` answers, 4xx for requests that cannot run. Every request gets a
//! request id (`x-request-id`, echoed back) on its tracing span and its log lines.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_graphql::parser::types::OperationType;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, MatchedPath, Query, Request, State};
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use serde::Deserialize;
use serde_json::{json, Value};
use tower_http::cors::{Any, CorsLayer};
use tracing::Instrument;

use crate::error::{Code, Error};
use crate::{domain, App};

const GRAPHQL_RESPONSE: &str = "application/graphql-response+json";
const JSON: &str = "application/json";

#[derive(Clone)]
struct HttpState {
    app: App,
    /// Requests a minute per API key.
    limiter: Arc<RateLimiter<uuid::Uuid>>,
    /// Failed authentications (401s of `/graphql`) a minute per client address.
    auth_failures: Arc<RateLimiter<IpAddr>>,
    /// Deliveries with a bad signature a minute per client address.
    webhook_failures: Arc<RateLimiter<IpAddr>>,
    /// Signed deliveries a minute per webhook source.
    webhooks: Arc<RateLimiter<String>>,
}

/// The whole HTTP surface of Rapport.
pub fn router(app: App) -> Router {
    let limits = &app.config.limits;
    let body_limit = limits.max_body_bytes;
    let state = HttpState {
        limiter: Arc::new(RateLimiter::new(limits.requests_per_minute)),
        auth_failures: Arc::new(RateLimiter::new(limits.failed_auth_per_minute)),
        webhook_failures: Arc::new(RateLimiter::new(limits.failed_auth_per_minute)),
        webhooks: Arc::new(RateLimiter::new(limits.webhook_requests_per_minute)),
        app,
    };
    Router::new()
        .route(
            "/graphql",
            get(graphql_get)
                .post(graphql_post)
                .route_layer(middleware::from_fn_with_state(
                    state.clone(),
                    limit_auth_failures,
                )),
        )
        .route(
            "/webhooks/{source_id}",
            axum::routing::post(webhook).route_layer(middleware::from_fn_with_state(
                state.clone(),
                limit_webhooks,
            )),
        )
        .route("/healthz", get(|| async { "ok" }))
        .route("/demo/feed.xml", get(demo_feed))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .fallback(|| async { no_such_route() })
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(cors())
        .layer(middleware::from_fn_with_state(state.clone(), observe))
        .with_state(state)
}

/// Browsers may call the API from any origin: it authenticates with a bearer key, never
/// with cookies, so a foreign page cannot borrow a user's session.
fn cors() -> CorsLayer {
    CorsLayer::new()
        .allow_origin(Any)
        .allow_methods([Method::GET, Method::POST])
        .allow_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            header::ACCEPT,
            HeaderName::from_static("x-request-id"),
        ])
        .expose_headers([HeaderName::from_static("x-request-id"), header::RETRY_AFTER])
        .max_age(Duration::from_secs(3_600))
}

/// Serves `app` on `listener` until `shutdown` completes, then finishes requests in flight.
/// The listener enforces the connection cap and header/idle timeouts ([`crate::listener`]).
pub async fn serve(
    app: App,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let limits = app.config.limits.clone();
    crate::listener::serve(router(app), listener, &limits, shutdown).await
}

/// A client that failed to authenticate too often is refused at `/graphql` for a while
/// without its key being looked at: guessing keys costs a database lookup each, and the
/// failures of one address are bounded like any other work. Health, readiness and metrics
/// stay open to it, and bad webhook signatures are counted apart ([`limit_webhooks`]).
async fn limit_auth_failures(
    State(state): State<HttpState>,
    request: Request,
    next: Next,
) -> Response {
    let Some(ip) = crate::listener::peer(&request).map(|peer| peer.ip()) else {
        return next.run(request).await;
    };
    if let Err(error) = state.auth_failures.peek(&ip) {
        return too_many(&state, error);
    }
    let response = next.run(request).await;
    if response.status() == StatusCode::UNAUTHORIZED {
        let _ = state.auth_failures.check(ip);
    }
    response
}

/// Webhook deliveries: a client whose deliveries keep failing their signature is refused
/// for a while, and each source accepts so many signed deliveries a minute. Only signed
/// deliveries use a source's budget, so unsigned junk sent to a known source address
/// cannot lock its real sender out.
async fn limit_webhooks(State(state): State<HttpState>, request: Request, next: Next) -> Response {
    let ip = crate::listener::peer(&request).map(|peer| peer.ip());
    let source = request
        .uri()
        .path()
        .rsplit('/')
        .next()
        .unwrap_or_default()
        .chars()
        .take(64)
        .collect::<String>();
    if let Some(ip) = ip {
        if let Err(error) = state.webhook_failures.peek(&ip) {
            return too_many(&state, error);
        }
    }
    if let Err(error) = state.webhooks.peek(&source) {
        return too_many(&state, error);
    }
    let response = next.run(request).await;
    if response.status() == StatusCode::UNAUTHORIZED {
        if let Some(ip) = ip {
            let _ = state.webhook_failures.check(ip);
        }
    } else {
        let _ = state.webhooks.check(source);
    }
    response
}

fn too_many(state: &HttpState, error: Error) -> Response {
    reject(
        state,
        MediaType::Json,
        Rejection(StatusCode::TOO_MANY_REQUESTS, error),
    )
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
    let budget = Duration::from_secs(state.app.config.limits.request_timeout_secs.max(1) + 1);
    let run = crate::telemetry::with_request_id(request_id.clone(), next.run(request))
        .instrument(span.clone());
    let mut response = match tokio::time::timeout(budget, run).await {
        Ok(response) => response,
        Err(_) => {
            let error = Error::Timeout {
                secs: budget.as_secs(),
            };
            let status = StatusCode::from_u16(error.code().http_status())
                .unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
            reject(&state, MediaType::Json, Rejection(status, error))
        }
    };
    let status = response.status().as_u16();
    state
        .app
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

async fn readyz(State(state): State<HttpState>) -> Response {
    match crate::db::ready(&state.app.db).await {
        Ok(()) => (StatusCode::OK, "ready").into_response(),
        Err(reason) => (StatusCode::SERVICE_UNAVAILABLE, reason).into_response(),
    }
}

async fn metrics(State(state): State<HttpState>) -> Response {
    let mut body = state.app.metrics.render();
    // The search lag is read from the database, so it is right in every process.
    let lag = crate::search::indexer::lag(&state.app.db)
        .await
        .unwrap_or(-1);
    let indexed = state
        .app
        .search_status
        .indexed
        .load(std::sync::atomic::Ordering::Relaxed);
    let failing = state
        .app
        .search_status
        .last_error
        .lock()
        .map(|error| u8::from(error.is_some()))
        .unwrap_or(0);
    body.push_str(&format!(
        "# HELP rapport_search_lag_events Events written but not yet indexed (-1: unknown).\n\
         # TYPE rapport_search_lag_events gauge\nrapport_search_lag_events {lag}\n\
         # HELP rapport_search_indexed_events_total Events this process has indexed.\n\
         # TYPE rapport_search_indexed_events_total counter\nrapport_search_indexed_events_total {indexed}\n\
         # HELP rapport_search_indexer_failing 1 while the indexer's last attempt failed.\n\
         # TYPE rapport_search_indexer_failing gauge\nrapport_search_indexer_failing {failing}\n"
    ));
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body).into_response()
}

/// A GraphQL request as the specification names its parameters.
struct GraphqlRequest {
    query: String,
    operation_name: Option<String>,
    variables: Option<serde_json::Map<String, Value>>,
}

/// A request that cannot run: the status, the code and the message.
struct Rejection(StatusCode, Error);

impl Rejection {
    fn bad(message: impl Into<String>) -> Rejection {
        Rejection(StatusCode::BAD_REQUEST, Error::bad_input(message))
    }
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

/// Picks the response media type from `Accept`; no header means `application/json`.
fn negotiate(headers: &HeaderMap) -> Option<MediaType> {
    let Some(accept) = headers
        .get(header::ACCEPT)
        .and_then(|value| value.to_str().ok())
    else {
        return Some(MediaType::Json);
    };
    let accepted: Vec<String> = accept
        .split(',')
        .filter(|part| {
            !part
                .split(';')
                .skip(1)
                .any(|param| param.trim().replace(' ', "") == "q=0")
        })
        .map(|part| {
            part.split(';')
                .next()
                .unwrap_or_default()
                .trim()
                .to_ascii_lowercase()
        })
        .collect();
    if accepted.iter().any(|media| media == GRAPHQL_RESPONSE) {
        Some(MediaType::GraphqlResponse)
    } else if accepted
        .iter()
        .any(|media| media == JSON || media == "application/*" || media == "*/*")
    {
        Some(MediaType::Json)
    } else {
        None
    }
}

fn error_body(error: &Error) -> Value {
    let error = error.to_graphql();
    json!({ "errors": [{ "message": error.message, "extensions": error.extensions }] })
}

/// The answer for a path that is not a route.
fn no_such_route() -> Response {
    let body = json!({ "errors": [{ "message": "no such route; the API is at /graphql", "extensions": { "code": Code::NotFound.as_str() } }] });
    (
        StatusCode::NOT_FOUND,
        [(header::CONTENT_TYPE, JSON)],
        body.to_string(),
    )
        .into_response()
}

fn reject(state: &HttpState, media: MediaType, Rejection(status, error): Rejection) -> Response {
    state.app.metrics.record_error(error.code().as_str());
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

#[derive(Deserialize)]
struct GetParams {
    query: Option<String>,
    #[serde(rename = "operationName")]
    operation_name: Option<String>,
    variables: Option<String>,
    extensions: Option<String>,
}

async fn graphql_get(
    State(state): State<HttpState>,
    headers: HeaderMap,
    params: Result<Query<GetParams>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let wants_html = headers
        .get(header::ACCEPT)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|accept| accept.contains("text/html"));
    let Ok(Query(params)) = params else {
        return reject(
            &state,
            MediaType::Json,
            Rejection::bad("the query string is malformed"),
        );
    };
    if params.query.is_none() && wants_html {
        return Html(
            async_graphql::http::GraphiQLSource::build()
                .endpoint("/graphql")
                .title("Rapport GraphiQL")
                .finish(),
        )
        .into_response();
    }
    let Some(media) = negotiate(&headers) else {
        return not_acceptable(&state);
    };
    let request = (|| {
        let query = params
            .query
            .ok_or_else(|| Rejection::bad("a GET request needs a `query` parameter"))?;
        let variables = match params.variables.as_deref() {
            None | Some("") => None,
            Some(text) => match serde_json::from_str::<Value>(text) {
                Ok(Value::Object(map)) => Some(map),
                Ok(Value::Null) => None,
                _ => return Err(Rejection::bad("`variables` must be a JSON object")),
            },
        };
        match params.extensions.as_deref() {
            None | Some("") => {}
            Some(text) => match serde_json::from_str::<Value>(text) {
                Ok(Value::Object(_) | Value::Null) => {}
                _ => return Err(Rejection::bad("`extensions` must be a JSON object")),
            },
        }
        Ok(GraphqlRequest {
            query,
            operation_name: params.operation_name,
            variables,
        })
    })();
    match request {
        Ok(request) => execute(&state, &headers, Method::GET, media, request).await,
        Err(rejection) => reject(&state, media, rejection),
    }
}

async fn graphql_post(
    State(state): State<HttpState>,
    headers: HeaderMap,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Response {
    let Some(media) = negotiate(&headers) else {
        return not_acceptable(&state);
    };
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default();
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    if essence != JSON {
        let message = format!("send the request as {JSON} (got `{content_type}`)");
        return reject(
            &state,
            media,
            Rejection(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                Error::bad_input(message),
            ),
        );
    }
    let body = match body {
        Ok(body) => body,
        Err(rejection) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            let limit = state.app.config.limits.max_body_bytes;
            let message = format!("the request body is larger than {limit} bytes");
            return reject(
                &state,
                media,
                Rejection(StatusCode::PAYLOAD_TOO_LARGE, Error::bad_input(message)),
            );
        }
        Err(_) => {
            return reject(
                &state,
                media,
                Rejection::bad("the request body could not be read"),
            )
        }
    };
    match parse_post(&body) {
        Ok(request) => execute(&state, &headers, Method::POST, media, request).await,
        Err(rejection) => reject(&state, media, rejection),
    }
}

fn not_acceptable(state: &HttpState) -> Response {
    let message = format!("accept {GRAPHQL_RESPONSE} or {JSON}");
    reject(
        state,
        MediaType::Json,
        Rejection(StatusCode::NOT_ACCEPTABLE, Error::bad_input(message)),
    )
}

fn parse_post(body: &[u8]) -> Result<GraphqlRequest, Rejection> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|err| Rejection::bad(format!("the body is not valid JSON: {err}")))?;
    let Value::Object(mut object) = value else {
        return Err(Rejection::bad(
            "the body must be a JSON object with a `query`",
        ));
    };
    let query = match object.remove("query") {
        Some(Value::String(query)) => query,
        Some(_) => return Err(Rejection::bad("`query` must be a string")),
        None => return Err(Rejection::bad("the body has no `query`")),
    };
    let operation_name = match object.remove("operationName") {
        None | Some(Value::Null) => None,
        Some(Value::String(name)) => Some(name),
        Some(_) => return Err(Rejection::bad("`operationName` must be a string")),
    };
    let variables = match object.remove("variables") {
        None | Some(Value::Null) => None,
        Some(Value::Object(map)) => Some(map),
        Some(_) => return Err(Rejection::bad("`variables` must be a JSON object")),
    };
    match object.remove("extensions") {
        None | Some(Value::Null) | Some(Value::Object(_)) => {}
        Some(_) => return Err(Rejection::bad("`extensions` must be a JSON object")),
    }
    Ok(GraphqlRequest {
        query,
        operation_name,
        variables,
    })
}

/// The operation the request would run, to refuse mutations over GET.
fn operation_type(request: &GraphqlRequest) -> Option<OperationType> {
    let document = async_graphql::parser::parse_query(&request.query).ok()?;
    let mut operations = document.operations.iter();
    match &request.operation_name {
        Some(name) => operations
            .find(|(op_name, _)| op_name.is_some_and(|n| n.as_str() == name))
            .map(|(_, op)| op.node.ty),
        None => operations.next().map(|(_, op)| op.node.ty),
    }
}

fn bearer(headers: &HeaderMap) -> Result<&str, Error> {
    let value = headers.get(header::AUTHORIZATION).ok_or_else(|| {
        Error::Unauthenticated("send an API key: Authorization: Bearer <key>".into())
    })?;
    value
        .to_str()
        .ok()
        .and_then(|value| {
            value
                .strip_prefix("Bearer ")
                .or_else(|| value.strip_prefix("bearer "))
        })
        .map(str::trim)
        .ok_or_else(|| {
            Error::Unauthenticated("the Authorization header must be `Bearer <key>`".into())
        })
}

async fn execute(
    state: &HttpState,
    headers: &HeaderMap,
    method: Method,
    media: MediaType,
    request: GraphqlRequest,
) -> Response {
    if method == Method::GET
        && operation_type(&request).is_some_and(|ty| ty != OperationType::Query)
    {
        let mut response = reject(
            state,
            media,
            Rejection(
                StatusCode::METHOD_NOT_ALLOWED,
                Error::bad_input("mutations need POST"),
            ),
        );
        response
            .headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("POST"));
        return response;
    }
    let caller = match authenticate(state, headers).await {
        Ok(caller) => caller,
        Err(err) => {
            let status = StatusCode::from_u16(err.code().http_status())
                .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            if err.code() == Code::Internal {
                tracing::error!(error = %err, "authentication failed");
            }
            return reject(state, media, Rejection(status, err));
        }
    };
    let mut gql = async_graphql::Request::new(request.query);
    if let Some(name) = request.operation_name {
        gql = gql.operation_name(name);
    }
    if let Some(variables) = request.variables {
        gql = gql.variables(async_graphql::Variables::from_json(Value::Object(
            variables,
        )));
    }
    let response = crate::graphql::execute(&state.app, caller, gql).await;
    let request_error = !response.errors.is_empty()
        && response.data == async_graphql::Value::Null
        && response.errors.iter().all(|e| e.path.is_empty());
    let mut errors = Vec::with_capacity(response.errors.len());
    for error in response.errors {
        let mut value =
            serde_json::to_value(&error).unwrap_or_else(|_| json!({ "message": error.message }));
        if let Some(domain_error) = error.source::<Error>() {
            // A domain error that reached GraphQL through `?`: its code, field and public
            // message replace the raw text (which, for internal errors, may hold SQL).
            let graphql = domain_error.to_graphql();
            value["message"] = json!(graphql.message);
            if let Some(extensions) = graphql.extensions {
                value["extensions"] = serde_json::to_value(&extensions).unwrap_or_default();
            }
        }
        if value
            .get("extensions")
            .and_then(|e| e.get("code"))
            .is_none()
        {
            // Parse, validation, limit and variable-coercion errors come from the GraphQL
            // engine without a code: all of them are the caller's input.
            value["extensions"]["code"] = json!(Code::BadUserInput.as_str());
        }
        let code = value["extensions"]["code"].as_str().unwrap_or("INTERNAL");
        state.app.metrics.record_error(Code::parse(code).as_str());
        errors.push(value);
    }
    let mut body = serde_json::Map::new();
    if !request_error {
        body.insert(
            "data".into(),
            serde_json::to_value(&response.data).unwrap_or(Value::Null),
        );
    }
    if !errors.is_empty() {
        body.insert("errors".into(), Value::Array(errors));
    }
    let status = if request_error && media == MediaType::GraphqlResponse {
        StatusCode::BAD_REQUEST
    } else {
        StatusCode::OK
    };
    (
        status,
        [(header::CONTENT_TYPE, media.as_str())],
        Value::Object(body).to_string(),
    )
        .into_response()
}

async fn authenticate(state: &HttpState, headers: &HeaderMap) -> Result<domain::Caller, Error> {
    let key = bearer(headers)?;
    let caller = domain::workspace::authenticate(&state.app.db, key).await?;
    state.limiter.check(caller.key_id)?;
    Ok(caller)
}

/// Requests a minute per key (an API key, a client address, a webhook source), as token
/// buckets refilled continuously. In memory and per process: it protects this process, it
/// is not a billing quota. Full buckets are forgotten now and then, so the table holds
/// only keys seen in the last minute or so.
struct RateLimiter<K> {
    per_minute: u32,
    buckets: Mutex<HashMap<K, (f64, Instant)>>,
}

/// How many keys a limiter holds before it forgets the ones whose bucket refilled.
const LIMITER_PRUNE_AT: usize = 10_000;

impl<K: std::hash::Hash + Eq> RateLimiter<K> {
    fn new(per_minute: u32) -> RateLimiter<K> {
        RateLimiter {
            per_minute,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes a token for `key`, or says how long to wait for one.
    fn check(&self, key: K) -> Result<(), Error> {
        self.take(key, 1.0)
    }

    /// Whether `key` has a token left, without taking it.
    fn peek(&self, key: &K) -> Result<(), Error>
    where
        K: Clone,
    {
        self.take(key.clone(), 0.0)
    }

    fn take(&self, key: K, cost: f64) -> Result<(), Error> {
        if self.per_minute == 0 {
            return Ok(());
        }
        let capacity = f64::from(self.per_minute);
        let rate = capacity / 60.0;
        let now = Instant::now();
        let mut buckets = self
            .buckets
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if buckets.len() >= LIMITER_PRUNE_AT {
            buckets.retain(|_, (tokens, last)| {
                *tokens + now.duration_since(*last).as_secs_f64() * rate < capacity
            });
        }
        let (tokens, last) = buckets.entry(key).or_insert((capacity, now));
        *tokens = (*tokens + now.duration_since(*last).as_secs_f64() * rate).min(capacity);
        *last = now;
        if *tokens >= 1.0 {
            *tokens -= cost;
            Ok(())
        } else {
            let wait = Duration::from_secs_f64((1.0 - *tokens) / rate);
            Err(Error::RateLimited {
                retry_after_secs: wait.as_secs().max(1),
            })
        }
    }
}

/// `POST /webhooks/{source_id}`: a delivery to a webhook source. The signature is checked
/// over the raw bytes before anything is parsed; a bad signature is 401 and stores
/// nothing; a bad body is 400 naming the field; a replayed `webhook-id` is stored once.
async fn webhook(
    State(state): State<HttpState>,
    axum::extract::Path(source_id): axum::extract::Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Response {
    let refuse = |status: StatusCode, error: Error| {
        reject(&state, MediaType::Json, Rejection(status, error))
    };
    let not_found = || Error::not_found("webhook source", source_id.clone());
    let Ok(id) = crate::ids::decode("source_id", crate::ids::Kind::Source, &source_id) else {
        return refuse(StatusCode::NOT_FOUND, not_found());
    };
    let source = match domain::source::for_webhook(&state.app.db, id).await {
        Ok(source) => source,
        Err(Error::NotFound { .. }) => return refuse(StatusCode::NOT_FOUND, not_found()),
        Err(err) => {
            tracing::error!(error = %err, "looking up a webhook source failed");
            return refuse(StatusCode::INTERNAL_SERVER_ERROR, err);
        }
    };
    let body = match body {
        Ok(body) => body,
        Err(rejection) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            let message = format!(
                "the delivery is larger than {} bytes",
                state.app.config.limits.max_body_bytes
            );
            return refuse(StatusCode::PAYLOAD_TOO_LARGE, Error::bad_input(message));
        }
        Err(_) => {
            return refuse(
                StatusCode::BAD_REQUEST,
                Error::bad_input("the delivery could not be read"),
            )
        }
    };
    let secret = source
        .secrets
        .get("secret")
        .and_then(Value::as_str)
        .map(connectors::webhook::Secret::parse);
    let Some(Ok(secret)) = secret else {
        tracing::error!(source = %source_id, "a webhook source has no usable secret");
        return refuse(
            StatusCode::INTERNAL_SERVER_ERROR,
            Error::Internal("webhook source without a secret".into()),
        );
    };
    let header = |name: &str| headers.get(name).and_then(|value| value.to_str().ok());
    let signature = connectors::webhook::SignatureHeaders {
        webhook_id: header("webhook-id"),
        webhook_timestamp: header("webhook-timestamp"),
        webhook_signature: header("webhook-signature"),
        hub_signature_256: header("x-hub-signature-256"),
    };
    let verified = match secret.verify(&signature, &body, chrono::Utc::now()) {
        Ok(verified) => verified,
        Err(err) => {
            tracing::warn!(source = %source_id, reason = %err, "webhook delivery refused");
            return refuse(
                StatusCode::UNAUTHORIZED,
                Error::Unauthenticated(err.to_string()),
            );
        }
    };
    if source.status == domain::source::SourceStatus::Paused.as_str() {
        return refuse(
            StatusCode::SERVICE_UNAVAILABLE,
            Error::Conflict("the source is paused; retry later".into()),
        );
    }
    // Replays are deduplicated on what the signature covers: the signed `webhook-id`, or
    // the body's hash for GitHub-style signatures (`X-GitHub-Delivery` is not signed).
    let delivery_id = verified.delivery_id();
    let item = match connectors::webhook::parse(&body, &delivery_id, crate::domain::now()) {
        Ok(item) => item,
        Err(err) => {
            return refuse(
                StatusCode::BAD_REQUEST,
                Error::field(err.field, err.to_string()),
            )
        }
    };
    // Stored normalised (control characters removed): nothing left is no text at all.
    if domain::text::clean(&item.text).is_empty() {
        return refuse(
            StatusCode::BAD_REQUEST,
            Error::field("text", "text: is required and must not be empty"),
        );
    }
    match crate::ingest::ingest(
        &state.app.db,
        &source,
        std::slice::from_ref(&item),
        None,
        None,
    )
    .await
    {
        Ok(report) if !report.skipped.is_empty() => refuse(
            StatusCode::UNPROCESSABLE_ENTITY,
            Error::bad_input("the delivery's content cannot be stored; do not retry it unchanged"),
        ),
        Ok(report) => {
            crate::failpoint::failpoint("webhook.after_commit");
            let interaction = report
                .new
                .first()
                .map(|id| crate::ids::encode(crate::ids::Kind::Interaction, *id));
            let body = json!({ "accepted": true, "duplicate": report.new.is_empty(), "interactionId": interaction });
            (
                StatusCode::OK,
                [(header::CONTENT_TYPE, JSON)],
                body.to_string(),
            )
                .into_response()
        }
        Err(err) => {
            // Only a server-side failure is a 5xx (the sender retries); an error about the
            // delivery itself keeps its 4xx status.
            let status = StatusCode::from_u16(err.code().http_status())
                .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            if status.is_server_error() {
                tracing::error!(source = %source_id, error = %err, "storing a webhook delivery failed");
            }
            refuse(status, err)
        }
    }
}

/// The Atom feed bundled for `serve --demo`'s feed source, with an `ETag` so the demo
/// shows conditional GETs (`304 Not Modified`) too.
async fn demo_feed(headers: axum::http::HeaderMap) -> Response {
    const FEED: &str = include_str!("demo/feed.xml");
    const ETAG: &str = "\"rapport-demo-feed-1\"";
    if headers
        .get(axum::http::header::IF_NONE_MATCH)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.split(',').any(|tag| tag.trim() == ETAG))
    {
        return (StatusCode::NOT_MODIFIED, [(axum::http::header::ETAG, ETAG)]).into_response();
    }
    (
        [
            (
                axum::http::header::CONTENT_TYPE,
                "application/atom+xml; charset=utf-8",
            ),
            (axum::http::header::ETAG, ETAG),
        ],
        FEED,
    )
        .into_response()
}
