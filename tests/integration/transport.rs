//! What browsers and HTTP clients meet before GraphQL runs: the CORS preflight (the headers
//! tracing and GraphQL clients add, and the configured ones), gzip/brotli for clients that
//! ask, and syntax errors as one line.

use std::io::Read;

use futures_util::{SinkExt, StreamExt};
use rapport::domain::Role;
use reqwest::header::HeaderName;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

use crate::cli::rapport;
use crate::common::{Backend, TestApp};

/// Every header a browser page on another origin may send without configuration: the
/// contract frontends rely on (tracing and client-identification headers included).
const ALLOWED_BY_DEFAULT: &[&str] = &[
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

/// The headers a preflight asking for `requested` is answered with allowing, lower-cased,
/// after checking that it is answered and for any origin.
async fn preflight(app: &TestApp, requested: &str) -> Vec<String> {
    let response = app
        .client
        .request(reqwest::Method::OPTIONS, app.url("/graphql"))
        .header("origin", "https://app.example")
        .header("access-control-request-method", "POST")
        .header("access-control-request-headers", requested)
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success(), "{}", response.status());
    assert_eq!(response.headers()["access-control-allow-origin"], "*");
    response.headers()["access-control-allow-headers"]
        .to_str()
        .unwrap()
        .split(',')
        .map(|name| name.trim().to_lowercase())
        .collect()
}

#[tokio::test]
async fn a_preflight_allows_each_tracing_and_client_header_by_default() {
    let app = TestApp::start(Backend::Sqlite).await.unwrap();
    for header in ALLOWED_BY_DEFAULT {
        let allowed = preflight(&app, header).await;
        assert!(
            allowed.iter().any(|name| name == header),
            "{header}: {allowed:?}"
        );
    }
    // As a browser asks: several at once, in its own case.
    let allowed = preflight(&app, "Content-Type, Traceparent, Baggage, Sentry-Trace").await;
    for header in ["content-type", "traceparent", "baggage", "sentry-trace"] {
        assert!(
            allowed.iter().any(|name| name == header),
            "{header}: {allowed:?}"
        );
    }
    assert!(
        !allowed
            .iter()
            .any(|name| name == "*" || name == "x-unlisted"),
        "{allowed:?}"
    );
    // And the request itself goes through with them.
    let key = app.key(Role::Viewer).await;
    let response = app
        .client
        .post(app.url("/graphql"))
        .header("origin", "https://app.example")
        .header(
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        )
        .header("apollographql-client-name", "web")
        .bearer_auth(&key)
        .json(&json!({"query": "{ viewer { role } }"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["access-control-allow-origin"], "*");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["data"]["viewer"]["role"], "VIEWER", "{body}");
}

#[tokio::test]
async fn a_configured_header_is_allowed_and_an_unlisted_one_is_not() {
    let app = TestApp::with_config(Backend::Sqlite, |config| {
        config.http.cors_allow_headers = vec![HeaderName::from_static("x-tenant-hint")];
    })
    .await
    .unwrap();
    let allowed = preflight(&app, "x-tenant-hint, traceparent").await;
    for header in ["x-tenant-hint", "traceparent", "authorization"] {
        assert!(
            allowed.iter().any(|name| name == header),
            "{header}: {allowed:?}"
        );
    }
    let allowed = preflight(&app, "x-unlisted").await;
    assert!(
        !allowed.iter().any(|name| name == "x-unlisted"),
        "{allowed:?}"
    );

    let plain = TestApp::start(Backend::Sqlite).await.unwrap();
    let allowed = preflight(&plain, "x-tenant-hint").await;
    assert!(
        !allowed.iter().any(|name| name == "x-tenant-hint"),
        "{allowed:?}"
    );
}

#[test]
fn an_invalid_cors_header_name_is_refused_at_load_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let output = rapport(
        dir.path(),
        &["migrate", "--cors-allow-headers", "x-tenant,x tenant"],
    );
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("`x tenant`"), "{stderr}");
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_rapport"))
        .args(["migrate", "--data-dir"])
        .arg(dir.path())
        .env_remove("RAPPORT_DATABASE_URL")
        .env_remove("RAPPORT_CONFIG")
        .env("RAPPORT_CORS_ALLOW_HEADERS", "x-ok, x-tenant:1")
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("`x-tenant:1`"), "{stderr}");
    let config = dir.path().join("rapport.toml");
    std::fs::write(&config, "[http]\ncors_allow_headers = [\"*\"]\n").unwrap();
    let output = rapport(
        dir.path(),
        &["migrate", "--config-file", config.to_str().unwrap()],
    );
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("`*`"), "{stderr}");
    let output = rapport(
        dir.path(),
        &["migrate", "--cors-allow-headers", "x-tenant,X-Client-Build"],
    );
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A query whose answer is a few kilobytes of JSON.
const LARGE: &str = "{ __schema { types { name kind } } }";

async fn post(app: &TestApp, key: &str, query: &str, encoding: Option<&str>) -> reqwest::Response {
    let mut request = app
        .client
        .post(app.url("/graphql"))
        .bearer_auth(key)
        .json(&json!({ "query": query }));
    if let Some(encoding) = encoding {
        request = request.header("accept-encoding", encoding);
    }
    request.send().await.unwrap()
}

#[tokio::test]
async fn answers_are_compressed_for_clients_that_ask_and_only_for_them() {
    let app = TestApp::start(Backend::Sqlite).await.unwrap();
    let key = app.key(Role::Viewer).await;

    let plain = post(&app, &key, LARGE, None).await;
    assert_eq!(plain.status(), 200);
    assert!(plain.headers().get("content-encoding").is_none());
    let plain: Value = serde_json::from_slice(&plain.bytes().await.unwrap()).unwrap();
    assert!(plain.to_string().len() > 2_000, "large enough to compress");

    let gzipped = post(&app, &key, LARGE, Some("gzip")).await;
    assert_eq!(gzipped.status(), 200);
    assert_eq!(gzipped.headers()["content-encoding"], "gzip");
    assert!(gzipped.headers()["vary"]
        .to_str()
        .unwrap()
        .to_lowercase()
        .contains("accept-encoding"));
    let compressed = gzipped.bytes().await.unwrap();
    let mut text = String::new();
    flate2::read::GzDecoder::new(&compressed[..])
        .read_to_string(&mut text)
        .unwrap();
    assert!(
        compressed.len() * 3 < text.len(),
        "{} of {}",
        compressed.len(),
        text.len()
    );
    assert_eq!(serde_json::from_str::<Value>(&text).unwrap(), plain);

    let brotli = post(&app, &key, LARGE, Some("br;q=1.0, gzip;q=0.5")).await;
    assert_eq!(brotli.headers()["content-encoding"], "br");

    // A tiny answer is not worth compressing.
    let tiny = post(&app, &key, "{ viewer { role } }", Some("gzip, br")).await;
    assert!(tiny.headers().get("content-encoding").is_none());
    let tiny: Value = tiny.json().await.unwrap();
    assert_eq!(tiny["data"]["viewer"]["role"], "VIEWER");

    // /metrics is compressed too, and still complete.
    let metrics = app
        .client
        .get(app.url("/metrics"))
        .header("accept-encoding", "gzip")
        .send()
        .await
        .unwrap();
    assert_eq!(metrics.headers()["content-encoding"], "gzip");
    let compressed = metrics.bytes().await.unwrap();
    let mut text = String::new();
    flate2::read::GzDecoder::new(&compressed[..])
        .read_to_string(&mut text)
        .unwrap();
    assert!(
        text.contains("rapport_http_requests_total{route=\"/graphql\",status=\"200\"}"),
        "{text}"
    );
}

#[tokio::test]
async fn a_socket_opened_by_a_client_accepting_gzip_speaks_plain_frames() {
    let app = TestApp::start(Backend::Sqlite).await.unwrap();
    let key = app.key(Role::Viewer).await;
    let mut request = format!("ws://{}/graphql/ws", app.addr)
        .into_client_request()
        .unwrap();
    request.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        "graphql-transport-ws".parse().unwrap(),
    );
    request
        .headers_mut()
        .insert("Accept-Encoding", "gzip, br".parse().unwrap());
    let (mut socket, response) = tokio_tungstenite::connect_async(request).await.unwrap();
    assert!(response.headers().get("content-encoding").is_none());
    socket
        .send(Message::text(
            json!({ "type": "connection_init", "payload": { "Authorization": format!("Bearer {key}") } })
                .to_string(),
        ))
        .await
        .unwrap();
    let answer = tokio::time::timeout(std::time::Duration::from_secs(20), socket.next())
        .await
        .unwrap();
    match answer {
        Some(Ok(Message::Text(text))) => {
            let value: Value = serde_json::from_str(&text).unwrap();
            assert_eq!(value["type"], "connection_ack", "{value}");
        }
        other => panic!("expected connection_ack, got {other:?}"),
    }
}

#[tokio::test]
async fn a_syntax_error_is_one_line_naming_line_and_column() {
    let app = TestApp::start(Backend::Sqlite).await.unwrap();
    let key = app.key(Role::Viewer).await;
    let body: Value = post(&app, &key, "query {\n  viewer { role ) }\n}", None)
        .await
        .json()
        .await
        .unwrap();
    let error = &body["errors"][0];
    let message = error["message"].as_str().unwrap();
    assert!(!message.contains('\n'), "{message}");
    assert_eq!(
        message,
        "syntax error at line 2, column 17: expected selection set, selection, directive or arguments, found `)`"
    );
    assert_eq!(error["locations"], json!([{ "line": 2, "column": 17 }]));
    assert_eq!(error["extensions"]["code"], "BAD_USER_INPUT");
}
