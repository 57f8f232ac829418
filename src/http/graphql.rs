//! `/graphql`, following the GraphQL-over-HTTP specification: POST with
//! `application/json`, GET for queries only, `application/graphql-response+json` or
//! `application/json` answers, 4xx for requests that cannot run. This is the transport
//! only: execution, limits and the error mapping are [`crate::graphql::execute`]'s.
//! Two client conventions on top: automatic persisted queries ([`persisted`]) and
//! batches (a JSON array of requests answered by an array, [`MAX_BATCH`] at most).

mod persisted;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use async_graphql::parser::types::OperationType;
use axum::body::Bytes;
use axum::extract::{Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{json, Value};

use super::{error_body, reject, HttpState, MediaType, Rejection, GRAPHQL_RESPONSE, JSON};
use crate::domain::Caller;
use crate::error::{Code, Error};
pub(super) use persisted::PersistedQueries;

/// Requests one batch (a JSON array body) may hold. Each one counts toward the key's
/// request rate, their costs and mutations add up against the limits of one request, and
/// the whole batch shares one request's time budget.
const MAX_BATCH: usize = 10;

/// The code of the answer to a hash this workspace has not registered (in this process):
/// Apollo's link then sends the query's text with its hash. Not in the error table: it is
/// a step of the protocol, answered 200, rather than a failure.
const PERSISTED_QUERY_NOT_FOUND: &str = "PERSISTED_QUERY_NOT_FOUND";

/// A GraphQL request as the specification names its parameters.
struct GraphqlRequest {
    /// Absent when the request names a persisted query by its hash alone.
    query: Option<String>,
    operation_name: Option<String>,
    variables: Option<serde_json::Map<String, Value>>,
    /// `extensions.persistedQuery.sha256Hash`, in lowercase hex.
    persisted: Option<String>,
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

#[derive(Deserialize)]
pub(super) struct GetParams {
    query: Option<String>,
    #[serde(rename = "operationName")]
    operation_name: Option<String>,
    variables: Option<String>,
    extensions: Option<String>,
}

/// `GET /graphql`: a query in the query string, or GraphiQL for a browser.
pub(super) async fn get(
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
    if params.query.is_none() && params.extensions.is_none() && wants_html {
        return super::graphiql::page(state.app().graphiql_key.as_deref(), &headers);
    }
    let Some(media) = negotiate(&headers) else {
        return not_acceptable(&state);
    };
    let request = (|| {
        let extensions = match params.extensions.as_deref() {
            None | Some("") => None,
            Some(text) => match serde_json::from_str::<Value>(text) {
                Ok(value @ (Value::Object(_) | Value::Null)) => Some(value),
                _ => return Err(Rejection::bad("`extensions` must be a JSON object")),
            },
        };
        let persisted = persisted_hash(extensions)?;
        if params.query.is_none() && persisted.is_none() {
            return Err(Rejection::bad("a GET request needs a `query` parameter"));
        }
        let variables = match params.variables.as_deref() {
            None | Some("") => None,
            Some(text) => match serde_json::from_str::<Value>(text) {
                Ok(Value::Object(map)) => Some(map),
                Ok(Value::Null) => None,
                _ => return Err(Rejection::bad("`variables` must be a JSON object")),
            },
        };
        Ok(GraphqlRequest {
            query: params.query,
            operation_name: params.operation_name,
            variables,
            persisted,
        })
    })();
    match request {
        Ok(request) => execute(&state, &headers, Method::GET, media, vec![request], false).await,
        Err(rejection) => reject(&state, media, rejection),
    }
}

/// `POST /graphql`: a JSON request body.
pub(super) async fn post(
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
            Rejection::protocol(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                Error::bad_input(message),
            ),
        );
    }
    let body = match body {
        Ok(body) => body,
        Err(rejection) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            let limit = state.app().config.limits.max_body_bytes;
            let message = format!("the request body is larger than {limit} bytes");
            return reject(
                &state,
                media,
                Rejection::protocol(StatusCode::PAYLOAD_TOO_LARGE, Error::bad_input(message)),
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
        Ok((requests, batched)) => {
            execute(&state, &headers, Method::POST, media, requests, batched).await
        }
        Err(rejection) => reject(&state, media, rejection),
    }
}

fn not_acceptable(state: &HttpState) -> Response {
    let message = format!("accept {GRAPHQL_RESPONSE} or {JSON}");
    reject(
        state,
        MediaType::Json,
        Rejection::protocol(StatusCode::NOT_ACCEPTABLE, Error::bad_input(message)),
    )
}

/// The requests of a POST body, and whether they came as a batch (a JSON array).
fn parse_post(body: &[u8]) -> Result<(Vec<GraphqlRequest>, bool), Rejection> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|err| Rejection::bad(format!("the body is not valid JSON: {err}")))?;
    let Value::Array(items) = value else {
        return Ok((vec![parse_request(value)?], false));
    };
    if items.is_empty() {
        return Err(Rejection::bad(
            "the batch is empty: send at least one request in the array",
        ));
    }
    if items.len() > MAX_BATCH {
        return Err(Rejection::bad(format!(
            "the batch holds {} requests (at most {MAX_BATCH}): send them in several batches",
            items.len()
        )));
    }
    let requests = items
        .into_iter()
        .enumerate()
        .map(|(index, item)| match item {
            Value::Object(_) => parse_request(item).map_err(|rejection| in_batch(index, rejection)),
            _ => Err(Rejection::bad(format!(
                "request {index} of the batch must be a JSON object with a `query`"
            ))),
        })
        .collect::<Result<_, _>>()?;
    Ok((requests, true))
}

/// A malformed request of a batch refuses the whole batch, naming which one it was.
fn in_batch(index: usize, Rejection(status, error): Rejection) -> Rejection {
    let error = match error {
        Error::BadInput { field, message } => Error::BadInput {
            field,
            message: format!("request {index} of the batch: {message}"),
        },
        other => other,
    };
    Rejection(status, error)
}

fn parse_request(value: Value) -> Result<GraphqlRequest, Rejection> {
    let Value::Object(mut object) = value else {
        return Err(Rejection::bad(
            "the body must be a JSON object with a `query`",
        ));
    };
    let query = match object.remove("query") {
        None | Some(Value::Null) => None,
        Some(Value::String(query)) => Some(query),
        Some(_) => return Err(Rejection::bad("`query` must be a string")),
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
    let persisted = match object.remove("extensions") {
        None | Some(Value::Null) => None,
        Some(extensions @ Value::Object(_)) => persisted_hash(Some(extensions))?,
        Some(_) => return Err(Rejection::bad("`extensions` must be a JSON object")),
    };
    if query.is_none() && persisted.is_none() {
        return Err(Rejection::bad("the body has no `query`"));
    }
    Ok(GraphqlRequest {
        query,
        operation_name,
        variables,
        persisted,
    })
}

/// The hash of `extensions.persistedQuery`, when the request names one.
fn persisted_hash(extensions: Option<Value>) -> Result<Option<String>, Rejection> {
    let Some(Value::Object(mut extensions)) = extensions else {
        return Ok(None);
    };
    let persisted = match extensions.remove("persistedQuery") {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Object(persisted)) => persisted,
        Some(_) => {
            return Err(Rejection::from(Error::field(
                "extensions.persistedQuery",
                "`persistedQuery` must be an object with `version` and `sha256Hash`",
            )))
        }
    };
    match persisted.get("version") {
        Some(version) if version.as_u64() == Some(1) => {}
        Some(version) => {
            return Err(Rejection::from(Error::field(
                "extensions.persistedQuery.version",
                format!("persisted query version {version} is not supported: send version 1"),
            )))
        }
        None => {
            return Err(Rejection::from(Error::field(
                "extensions.persistedQuery.version",
                "a persisted query needs `version`: 1",
            )))
        }
    }
    let hash = persisted
        .get("sha256Hash")
        .and_then(Value::as_str)
        .filter(|hash| crate::domain::trusted_document::is_hash(hash))
        .ok_or_else(|| {
            Rejection::from(Error::field(
                "extensions.persistedQuery.sha256Hash",
                "`sha256Hash` must be the 64 hex digits of the query's SHA-256",
            ))
        })?;
    Ok(Some(hash.to_ascii_lowercase()))
}

/// The operation the request would run, to refuse mutations over GET.
fn operation_type(query: &str, operation_name: Option<&str>) -> Option<OperationType> {
    let document = async_graphql::parser::parse_query(query).ok()?;
    let mut operations = document.operations.iter();
    match operation_name {
        Some(name) => operations
            .find(|(op_name, _)| op_name.is_some_and(|n| n.as_str() == name))
            .map(|(_, op)| op.node.ty),
        None => operations.next().map(|(_, op)| op.node.ty),
    }
}

/// Whether `query` over GET would run something other than a query.
fn refused_over_get(query: &str, operation_name: Option<&str>) -> bool {
    operation_type(query, operation_name).is_some_and(|ty| ty != OperationType::Query)
}

fn mutation_over_get(state: &HttpState, media: MediaType) -> Response {
    let mut response = reject(
        state,
        media,
        Rejection::protocol(
            StatusCode::METHOD_NOT_ALLOWED,
            Error::bad_input("mutations need POST"),
        ),
    );
    response
        .headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static("POST"));
    response
}

/// A request once its persisted query is looked up.
enum Resolved {
    Run {
        query: String,
        operation_name: Option<String>,
        variables: Option<serde_json::Map<String, Value>>,
        /// The hash to register the query under once it ran (it was sent with its text).
        register: Option<String>,
        /// Whether the text came from the store rather than the request.
        by_hash: bool,
    },
    /// The hash is not registered for this workspace: the client sends the text next.
    NotFound,
    /// Refused before running (a hash that is not the text's).
    Refused(Error),
}

async fn resolve(state: &HttpState, caller: &Caller, request: GraphqlRequest) -> Resolved {
    let GraphqlRequest {
        query,
        operation_name,
        variables,
        persisted,
    } = request;
    if let (Some(query), Some(hash)) = (&query, &persisted) {
        if persisted::hash(query) != *hash {
            return Resolved::Refused(Error::field(
                "extensions.persistedQuery.sha256Hash",
                "`sha256Hash` is not the SHA-256 of `query`: hash the exact text sent, as lowercase hex",
            ));
        }
    }
    if caller.trusted_documents_only {
        return match super::trusted::admit(state, caller, query.as_deref(), persisted.as_deref())
            .await
        {
            Ok(stored) => {
                let by_hash = stored.is_some();
                let Some(query) = stored.or(query) else {
                    return Resolved::Refused(Error::bad_input("the request has no `query`"));
                };
                Resolved::Run {
                    query,
                    operation_name,
                    variables,
                    register: None,
                    by_hash,
                }
            }
            Err(error) => Resolved::Refused(error),
        };
    }
    let (query, register, by_hash) = match (query, persisted) {
        (Some(query), None) => (query, None, false),
        // Checked above: the hash is the text's.
        (Some(query), Some(hash)) => (query, Some(hash), false),
        (None, Some(hash)) => match state.persisted.get(caller.workspace_id, &hash) {
            Some(query) => (query.to_string(), None, true),
            None => return Resolved::NotFound,
        },
        // Parsing refuses a request with neither.
        (None, None) => return Resolved::Refused(Error::bad_input("the request has no `query`")),
    };
    Resolved::Run {
        query,
        operation_name,
        variables,
        register,
        by_hash,
    }
}

/// What one request of the body is answered with.
enum Answer {
    Ran(async_graphql::Response),
    NotFound,
    Refused(Error),
}

impl Answer {
    /// A request error (it did not run: unparsable, invalid, over a limit) rather than a
    /// result, possibly with field errors.
    fn is_request_error(&self) -> bool {
        match self {
            Answer::Ran(response) => {
                !response.errors.is_empty()
                    && response.data == async_graphql::Value::Null
                    && response.errors.iter().all(|e| e.path.is_empty())
            }
            Answer::NotFound | Answer::Refused(_) => true,
        }
    }

    fn to_json(&self) -> Vec<u8> {
        match self {
            Answer::Ran(response) => {
                // Written straight from the engine's values: a copy into
                // `serde_json::Value` first cost a tree of allocations per answer.
                #[derive(serde::Serialize)]
                struct Body<'a> {
                    #[serde(skip_serializing_if = "Option::is_none")]
                    data: Option<&'a async_graphql::Value>,
                    #[serde(skip_serializing_if = "<[_]>::is_empty")]
                    errors: &'a [async_graphql::ServerError],
                }
                let body = Body {
                    data: (!self.is_request_error()).then_some(&response.data),
                    errors: &response.errors,
                };
                // Sized as the last answer was, up to 256 KiB (a larger one grows from
                // there; the buffer lives until the body is sent): grown from nothing, a
                // list's answer was copied about eight times on its way to its size.
                static LAST: AtomicUsize = AtomicUsize::new(0);
                let mut out = Vec::with_capacity(LAST.load(Ordering::Relaxed).min(256 << 10));
                match serde_json::to_writer(&mut out, &body) {
                    Ok(()) => {
                        LAST.store(out.len(), Ordering::Relaxed);
                        out
                    }
                    Err(err) => {
                        tracing::error!(error = %err, "an answer could not be written as JSON");
                        json!({ "errors": [{ "message": "the answer could not be written", "extensions": { "code": "INTERNAL" } }] })
                            .to_string()
                            .into_bytes()
                    }
                }
            }
            // Apollo's links recognise the miss by this message and code.
            Answer::NotFound => json!({ "errors": [{
                "message": "PersistedQueryNotFound",
                "extensions": { "code": PERSISTED_QUERY_NOT_FOUND },
            }] })
            .to_string()
            .into_bytes(),
            Answer::Refused(error) => error_body(error).to_string().into_bytes(),
        }
    }
}

async fn execute(
    state: &HttpState,
    headers: &HeaderMap,
    method: Method,
    media: MediaType,
    requests: Vec<GraphqlRequest>,
    batched: bool,
) -> Response {
    // Before authentication, as for any request that cannot run; a hash alone is
    // checked once its text is looked up.
    if method == Method::GET
        && requests.iter().any(|request| {
            request
                .query
                .as_deref()
                .is_some_and(|query| refused_over_get(query, request.operation_name.as_deref()))
        })
    {
        return mutation_over_get(state, media);
    }
    let caller = match super::auth::authenticate(state, headers).await {
        Ok(caller) => caller,
        Err(err) => {
            if err.code() == Code::Internal {
                tracing::error!(error = %err, "authentication failed");
            }
            return reject(state, media, err);
        }
    };
    // Every request of a batch counts toward the key's rate; authenticating took one.
    for _ in 1..requests.len() {
        if let Err(err) = state.limiter.check(caller.key_id) {
            return reject(state, media, err);
        }
    }
    let mut resolved = Vec::with_capacity(requests.len());
    for request in requests {
        resolved.push(resolve(state, &caller, request).await);
    }
    if method == Method::GET
        && resolved.iter().any(|request| match request {
            Resolved::Run {
                query,
                operation_name,
                by_hash: true,
                ..
            } => refused_over_get(query, operation_name.as_deref()),
            _ => false,
        })
    {
        return mutation_over_get(state, media);
    }
    if batched {
        if let Err(rejection) = measure_batch(&resolved, &state.app().config.limits) {
            return reject(state, media, rejection);
        }
    }
    // A batch shares one request's budget: what has not finished by then is a TIMEOUT.
    let budget = Duration::from_secs(state.app().config.limits.request_timeout_secs.max(1));
    let deadline = Instant::now() + budget;
    let values = crate::graphql::BatchValues::default();
    let mut answers = Vec::with_capacity(resolved.len());
    for request in resolved {
        let answer = match request {
            Resolved::NotFound => Answer::NotFound,
            Resolved::Refused(error) => Answer::Refused(error),
            // A request that does not wait (all computing) is not cut by the timeout
            // below: one that would start after the budget is spent does not start.
            Resolved::Run { .. } if batched && Instant::now() >= deadline => {
                Answer::Refused(Error::Timeout {
                    secs: budget.as_secs(),
                })
            }
            Resolved::Run {
                query,
                operation_name,
                variables,
                register,
                ..
            } => {
                let registered = register.map(|hash| (hash, query.clone()));
                let mut gql = async_graphql::Request::new(query);
                if let Some(name) = operation_name {
                    gql = gql.operation_name(name);
                }
                if let Some(variables) = variables {
                    gql = gql.variables(async_graphql::Variables::from_json(Value::Object(
                        variables,
                    )));
                }
                if batched {
                    gql = gql.data(values.clone());
                }
                // Errors arrive mapped and counted (`graphql::execute`): their code, field
                // and public message are already what the caller may see.
                let run = crate::graphql::execute(&state.api, caller.clone(), gql);
                let answer = if batched {
                    match tokio::time::timeout_at(deadline.into(), run).await {
                        Ok(response) => Answer::Ran(response),
                        Err(_) => Answer::Refused(Error::Timeout {
                            secs: budget.as_secs(),
                        }),
                    }
                } else {
                    Answer::Ran(run.await)
                };
                // Only a query the engine accepted is worth keeping.
                if let Some((hash, query)) = registered {
                    if !answer.is_request_error() {
                        state.persisted.insert(caller.workspace_id, hash, &query);
                    }
                }
                answer
            }
        };
        // A lone request's refusal is counted by `reject`, a batch's here.
        if let (true, Answer::Refused(error)) = (batched, &answer) {
            state.app().metrics.record_error(error.code().as_str());
        }
        answers.push(answer);
    }
    if batched {
        // Each answer carries its own errors: the batch itself ran, whatever they say.
        let mut body = vec![b'['];
        for (i, answer) in answers.iter().enumerate() {
            if i > 0 {
                body.push(b',');
            }
            body.extend_from_slice(&answer.to_json());
        }
        body.push(b']');
        return (
            StatusCode::OK,
            [(header::CONTENT_TYPE, media.as_str())],
            body,
        )
            .into_response();
    }
    let Some(answer) = answers.pop() else {
        return reject(
            state,
            media,
            Rejection::bad("the request holds no operation"),
        );
    };
    if let Answer::Refused(error) = answer {
        return reject(state, media, error);
    }
    // GraphQL-over-HTTP: with its own media type, a request that could not run is a 4xx;
    // with `application/json` every executed request is 200. A persisted query's miss is
    // 200 whatever the media type, as Apollo Server answers it: clients that look for the
    // miss only in a successful answer's errors retry with the text too.
    let status = if matches!(answer, Answer::Ran(_))
        && answer.is_request_error()
        && media == MediaType::GraphqlResponse
    {
        StatusCode::BAD_REQUEST
    } else {
        StatusCode::OK
    };
    (
        status,
        [(header::CONTENT_TYPE, media.as_str())],
        answer.to_json(),
    )
        .into_response()
}

/// The requests of a batch are measured together, as one request: their costs,
/// mutations and platform calls add up against the limits of one request (each one is
/// also measured alone when it runs). A request that does not parse or is refused alone
/// costs nothing here: it is answered with its own error.
fn measure_batch(requests: &[Resolved], limits: &crate::config::Limits) -> Result<(), Rejection> {
    let mut total = crate::graphql::cost::Cost::default();
    let no_variables = serde_json::Map::new();
    for request in requests {
        let Resolved::Run {
            query,
            operation_name,
            variables,
            ..
        } = request
        else {
            continue;
        };
        let Ok(document) = async_graphql::parser::parse_query(query) else {
            continue;
        };
        let variables = variables.as_ref().unwrap_or(&no_variables);
        let Ok(cost) =
            crate::graphql::cost::check(&document, operation_name.as_deref(), variables, limits)
        else {
            continue;
        };
        total.values = total.values.saturating_add(cost.values);
        total.queries = total.queries.saturating_add(cost.queries);
        total.mutations = total.mutations.saturating_add(cost.mutations);
        total.outbound = total.outbound.saturating_add(cost.outbound);
    }
    let refusal = if total.cost() > limits.max_complexity as u64 {
        Some(format!(
            "the batch would cost {} together (at most {} a request): send fewer requests in one batch, or ask for smaller pages and fewer fields",
            total.cost(),
            limits.max_complexity
        ))
    } else if total.mutations > u64::from(limits.max_mutations) {
        Some(format!(
            "the batch runs {} mutations together (at most {} a request): send them in several batches",
            total.mutations, limits.max_mutations
        ))
    } else if total.outbound > u64::from(limits.max_outbound_mutations) {
        Some(format!(
            "the batch calls out to platforms {} times together (syncSource, replyToInteraction: at most {} a request): send them in several batches",
            total.outbound, limits.max_outbound_mutations
        ))
    } else {
        None
    };
    match refusal {
        Some(message) => Err(Rejection::bad(message)),
        None => Ok(()),
    }
}

/// `Cache-Control` on every `/graphql` answer, errors included: an answer depends on the
/// bearer key, so no cache may keep it (`private` too over GET, for caches that ignore
/// `no-store` yet honour `private`). An answer that set its own keeps it.
pub(super) async fn cache_control(request: Request, next: Next) -> Response {
    let value = if request.method() == Method::GET {
        "private, no-store"
    } else {
        "no-store"
    };
    let mut response = next.run(request).await;
    response
        .headers_mut()
        .entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static(value));
    response
}
