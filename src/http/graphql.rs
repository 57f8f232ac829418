//! `/graphql`, following the GraphQL-over-HTTP specification: POST with
//! `application/json`, GET for queries only, `application/graphql-response+json` or
//! `application/json` answers, 4xx for requests that cannot run. This is the transport
//! only: execution, limits and the error mapping are [`crate::graphql::execute`]'s.

use async_graphql::parser::types::OperationType;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{json, Value};

use super::{reject, HttpState, MediaType, Rejection, GRAPHQL_RESPONSE, JSON};
use crate::error::{Code, Error};

/// A GraphQL request as the specification names its parameters.
struct GraphqlRequest {
    query: String,
    operation_name: Option<String>,
    variables: Option<serde_json::Map<String, Value>>,
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
    if params.query.is_none() && wants_html {
        return super::graphiql::page(state.app().graphiql_key.as_deref());
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
        Ok(request) => execute(&state, &headers, Method::POST, media, request).await,
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
            Rejection::protocol(
                StatusCode::METHOD_NOT_ALLOWED,
                Error::bad_input("mutations need POST"),
            ),
        );
        response
            .headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("POST"));
        return response;
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
    let mut gql = async_graphql::Request::new(request.query);
    if let Some(name) = request.operation_name {
        gql = gql.operation_name(name);
    }
    if let Some(variables) = request.variables {
        gql = gql.variables(async_graphql::Variables::from_json(Value::Object(
            variables,
        )));
    }
    // Errors arrive mapped and counted (`graphql::execute`): their code, field and
    // public message are already what the caller may see.
    let response = crate::graphql::execute(&state.api, caller, gql).await;
    let request_error = !response.errors.is_empty()
        && response.data == async_graphql::Value::Null
        && response.errors.iter().all(|e| e.path.is_empty());
    // Written straight from the engine's values: a copy into `serde_json::Value` first
    // cost a tree of allocations per answer.
    #[derive(serde::Serialize)]
    struct Body<'a> {
        #[serde(skip_serializing_if = "Option::is_none")]
        data: Option<&'a async_graphql::Value>,
        #[serde(skip_serializing_if = "<[_]>::is_empty")]
        errors: &'a [async_graphql::ServerError],
    }
    let body = Body {
        data: (!request_error).then_some(&response.data),
        errors: &response.errors,
    };
    let body = serde_json::to_string(&body).unwrap_or_else(|err| {
        tracing::error!(error = %err, "an answer could not be written as JSON");
        json!({ "errors": [{ "message": "the answer could not be written", "extensions": { "code": "INTERNAL" } }] })
            .to_string()
    });
    // GraphQL-over-HTTP: with its own media type, a request that could not run is a 4xx;
    // with `application/json` every executed request is 200.
    let status = if request_error && media == MediaType::GraphqlResponse {
        StatusCode::BAD_REQUEST
    } else {
        StatusCode::OK
    };
    (status, [(header::CONTENT_TYPE, media.as_str())], body).into_response()
}
