//! A scripted stand-in for a platform's HTTP API, served on 127.0.0.1 inside the test:
//! each path answers with queued responses (the last one repeats) or with what a handler
//! computes from the request (paging by its query), and every request is logged with its
//! query, headers and body so tests can check what a connector sent.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};

/// One scripted answer.
#[derive(Clone, Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// Wait this long before answering (timeouts).
    pub delay: Option<Duration>,
    /// Answer `304 Not Modified` when the request's `If-None-Match` equals this `ETag`.
    pub etag: Option<String>,
}

impl Reply {
    pub fn ok(content_type: &str, body: impl Into<Vec<u8>>) -> Reply {
        Reply {
            status: 200,
            headers: vec![("content-type".into(), content_type.into())],
            body: body.into(),
            delay: None,
            etag: None,
        }
    }

    pub fn json(body: &serde_json::Value) -> Reply {
        Reply::ok("application/json; charset=utf-8", body.to_string())
    }

    pub fn status(status: u16) -> Reply {
        Reply {
            status,
            ..Reply::ok("text/plain", format!("status {status}"))
        }
    }

    pub fn header(mut self, name: &str, value: &str) -> Reply {
        self.headers.push((name.into(), value.into()));
        self
    }

    pub fn etag(mut self, etag: &str) -> Reply {
        self.etag = Some(etag.into());
        self.header("etag", etag)
    }

    pub fn delay(mut self, delay: Duration) -> Reply {
        self.delay = Some(delay);
        self
    }
}

/// A request the platform received.
#[derive(Clone, Debug)]
pub struct Seen {
    pub method: String,
    pub path: String,
    pub query: String,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

/// Computes the answer to a request.
pub type Handler = Arc<dyn Fn(&Seen) -> Reply + Send + Sync>;

#[derive(Default)]
struct State {
    routes: HashMap<String, Vec<Reply>>,
    handlers: HashMap<String, Handler>,
    seen: Vec<Seen>,
}

#[derive(Clone)]
pub struct Platform {
    pub base: String,
    state: Arc<Mutex<State>>,
}

impl Platform {
    pub async fn start() -> Platform {
        let state = Arc::new(Mutex::new(State::default()));
        let shared = state.clone();
        let app = axum::Router::new().fallback(
            move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
                let state = shared.clone();
                async move { answer(state, method, uri, headers, body).await }
            },
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.ok() });
        Platform { base, state }
    }

    /// Queues answers for `path` (the last one repeats).
    pub fn on(&self, path: &str, replies: Vec<Reply>) {
        self.state
            .lock()
            .unwrap()
            .routes
            .insert(path.to_owned(), replies);
    }

    /// Answers every request for `path` with what `handler` computes from it (replacing
    /// queued answers for that path).
    pub fn handle(&self, path: &str, handler: impl Fn(&Seen) -> Reply + Send + Sync + 'static) {
        let mut state = self.state.lock().unwrap();
        state.routes.remove(path);
        state.handlers.insert(path.to_owned(), Arc::new(handler));
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// The requests seen for `path`.
    pub fn seen(&self, path: &str) -> Vec<Seen> {
        self.state
            .lock()
            .unwrap()
            .seen
            .iter()
            .filter(|seen| seen.path == path)
            .cloned()
            .collect()
    }
}

enum Answer {
    Queued(Option<Reply>),
    Computed(Handler, Seen),
}

async fn answer(
    state: Arc<Mutex<State>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path().to_owned();
    let reply = {
        let mut state = state.lock().unwrap();
        let seen = Seen {
            method: method.to_string(),
            path: path.clone(),
            query: uri.query().unwrap_or_default().to_owned(),
            headers: headers.clone(),
            body: body.to_vec(),
        };
        state.seen.push(seen.clone());
        match state.handlers.get(&path) {
            // Called outside the lock: a handler may take its time, or look at the log.
            Some(handler) => Answer::Computed(handler.clone(), seen),
            None => Answer::Queued(match state.routes.get_mut(&path) {
                Some(replies) if replies.len() > 1 => Some(replies.remove(0)),
                Some(replies) => replies.first().cloned(),
                None => None,
            }),
        }
    };
    let reply = match reply {
        Answer::Queued(reply) => reply,
        Answer::Computed(handler, seen) => Some(handler(&seen)),
    };
    let Some(reply) = reply else {
        return (StatusCode::NOT_FOUND, "no such path").into_response();
    };
    if let Some(delay) = reply.delay {
        tokio::time::sleep(delay).await;
    }
    let not_modified = reply.etag.as_deref().is_some_and(|etag| {
        headers.get("if-none-match").and_then(|v| v.to_str().ok()) == Some(etag)
    });
    let mut builder =
        axum::http::Response::builder().status(if not_modified { 304 } else { reply.status });
    for (name, value) in &reply.headers {
        builder = builder.header(name, value);
    }
    let body = if not_modified { Vec::new() } else { reply.body };
    builder.body(axum::body::Body::from(body)).unwrap()
}

/// A fixture file under `tests/fixtures`.
pub fn fixture(path: &str) -> Vec<u8> {
    let full = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/");
    std::fs::read(format!("{full}{path}")).unwrap_or_else(|err| panic!("fixture {path}: {err}"))
}
