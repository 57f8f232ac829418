//! The abuse suite: each class of hostile request found when Rapport was probed, in several
//! variants, against a live server. Each is refused or bounded with a clear code, before
//! it can do the work it asks for, and the server keeps answering another tenant.
//!
//! Time bounds here are hang detectors (seconds, where the defects took minutes), not
//! performance assertions: `benches/` and `rapport bench` measure speed.

use std::time::{Duration, Instant};

use rapport::config::Limits;
use rapport::domain::Role;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::backend_test;
use crate::common::{Backend, TestApp};
use crate::feeds::create_source;
use crate::platform::{Platform, Reply};

/// What a refused or bounded request may take at most: the defects took 16 to 46 s.
const HANG: Duration = Duration::from_secs(5);

/// Another tenant gets its own data back.
async fn other_tenant_is_served(app: &TestApp, key: &str) {
    let started = Instant::now();
    let data = app
        .gql(
            key,
            "{ customers(first: 5) { edges { node { displayName } } } }",
            json!({}),
        )
        .await;
    assert_eq!(
        data["customers"]["edges"][0]["node"]["displayName"],
        "Bystander"
    );
    assert!(
        started.elapsed() < HANG,
        "another tenant waited {:?}",
        started.elapsed()
    );
    let health = app.client.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200);
}

async fn bystander(app: &TestApp) -> String {
    let key = app.key_in("bystander", Role::Admin).await;
    app.create_customer(&key, json!({ "displayName": "Bystander" }))
        .await;
    key
}

/// Runs `query` and returns its error code and message, timing it against [`HANG`].
async fn refused(app: &TestApp, key: &str, query: &str, variables: Value) -> (String, String) {
    let started = Instant::now();
    let (code, body) = app.gql_error(key, query, variables).await;
    assert!(
        started.elapsed() < HANG,
        "took {:?}: {body:#}",
        started.elapsed()
    );
    let message = body["errors"][0]["message"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    (code, message)
}

/// F0 … F{levels-1}, each spreading the next `width` times, the last `{ leaf }`.
fn fragment_bomb(levels: usize, width: usize, on: &str, leaf: &str) -> String {
    let mut query = format!(
        "query {{ {} }}\n",
        if on == "Query" {
            "...F0"
        } else {
            "viewer { ...F0 }"
        }
    );
    for level in 0..levels {
        let spreads = (0..width)
            .map(|_| format!("...F{}", level + 1))
            .collect::<Vec<_>>()
            .join(" ");
        query.push_str(&format!("fragment F{level} on {on} {{ {spreads} }}\n"));
    }
    query.push_str(&format!("fragment F{levels} on {on} {{ {leaf} }}\n"));
    query
}

backend_test! {
    async fn exponential_fragments_are_refused_before_any_expansion(app: TestApp) {
        let other = bystander(&app).await;
        let key = app.key(Role::Viewer).await;
        let variants = [
            fragment_bomb(24, 2, "Query", "__typename"),
            fragment_bomb(40, 2, "Query", "__typename"),
            fragment_bomb(16, 3, "Query", "viewer { role }"),
            fragment_bomb(30, 2, "Viewer", "role"),
            // A cycle: the engine would recurse until its depth limit.
            "{ ...A } fragment A on Query { ...B viewer { role } } fragment B on Query { ...A }".to_owned(),
        ];
        for query in variants {
            assert!(query.len() < 2_000, "a small document: {}", query.len());
            let (code, message) = refused(&app, &key, &query, json!({})).await;
            assert_eq!(code, "BAD_USER_INPUT", "{message}");
            assert!(message.contains("selections") || message.contains("spreads itself"), "{message}");
        }
        // A chain of 1,000 fragments each spreading the next: no depth for the engine, a
        // stack overflow for a recursive walk (it killed the process).
        let mut chain = String::from("{ ...F0 }\n");
        for level in 0..1_000 {
            chain.push_str(&format!("fragment F{level} on Query {{ ...F{} }}\n", level + 1));
        }
        chain.push_str("fragment F1000 on Query { __typename }\n");
        let (code, message) = refused(&app, &key, &chain, json!({})).await;
        assert_eq!(code, "BAD_USER_INPUT", "{message}");
        // The bomb in an operation that is not the one asked for: validation walks it.
        let hidden = fragment_bomb(25, 2, "Query", "__typename")
            .replacen("query {", "query A { __typename } query B {", 1);
        let started = Instant::now();
        let (_, body) = app
            .post(&key, &hidden, json!({}))
            .await;
        assert!(started.elapsed() < HANG, "took {:?}", started.elapsed());
        assert_eq!(body["errors"][0]["extensions"]["code"], "BAD_USER_INPUT", "{body:#}");
        let (_, body) = {
            let response = app
                .client
                .post(app.url("/graphql"))
                .bearer_auth(&key)
                .json(&json!({ "query": hidden, "operationName": "A" }))
                .send()
                .await
                .unwrap();
            (response.status(), response.json::<Value>().await.unwrap())
        };
        assert_eq!(body["errors"][0]["extensions"]["code"], "BAD_USER_INPUT", "{body:#}");
        other_tenant_is_served(&app, &other).await;
    }
}

backend_test! {
    async fn aliases_cost_the_work_they_ask_for(app: TestApp) {
        let other = bystander(&app).await;
        let key = app.key(Role::Viewer).await;
        let aliased = |count: usize, field: &str| {
            let fields: String = (0..count).map(|i| format!("a{i}: {field} ")).collect();
            format!("{{ {fields} }}")
        };
        let ids: Vec<String> = (0..100).map(|_| format!("cus_{}", uuid::Uuid::now_v7().simple())).collect();
        let nodes = format!(
            "nodes(ids: {}) {{ ... on Customer {{ timeline(first: 100) {{ edges {{ node {{ text }} }} }} }} }}",
            serde_json::to_string(&ids).unwrap()
        );
        let variants = [
            aliased(12_000, r#"customers(first: 1, filter: {search: "a"}) { totalCount }"#),
            aliased(500, r#"customers(first: 1, filter: {search: "a"}) { totalCount }"#),
            aliased(300, r#"search(query: "export", first: 1) { totalCount }"#),
            aliased(1_000, "__schema { types { name } }"),
            aliased(20, "__schema { types { name fields { name } } }"),
            aliased(3, &nodes),
        ];
        for query in &variants {
            let (code, message) = refused(&app, &key, query, json!({})).await;
            assert_eq!(code, "BAD_USER_INPUT", "{message}");
            assert!(message.contains("cost") || message.contains("selections"), "{message}");
        }
        // The same with the page size in a variable: counted as given.
        let (code, message) = refused(
            &app,
            &key,
            "query($n: Int) { customers(first: $n) { edges { node { timeline(first: $n) { edges { node { customer { timeline(first: $n) { edges { node { id } } } } } } } } } } } }",
            json!({ "n": 100 }),
        )
        .await;
        assert_eq!(code, "BAD_USER_INPUT", "{message}");
        // A wide but honest request still runs.
        let data = app.gql(&key, &aliased(50, "customers(first: 1) { totalCount }"), json!({})).await;
        assert_eq!(data["a49"]["totalCount"], 0);
        other_tenant_is_served(&app, &other).await;
    }
}

backend_test! {
    async fn outbound_mutations_are_capped_per_request(app: TestApp) {
        let other = bystander(&app).await;
        let platform = Platform::start().await;
        platform.on("/feed.xml", vec![Reply::status(304)]);
        let admin = app.key(Role::Admin).await;
        let source = create_source(&app, &admin, "RSS", "feed", json!({ "url": platform.url("/feed.xml") })).await;
        let many: String = (0..300)
            .map(|i| format!("s{i}: syncSource(input: {{id: \"{source}\"}}) {{ newItems }} "))
            .collect();
        let (code, message) = refused(&app, &admin, &format!("mutation {{ {many} }}"), json!({})).await;
        assert_eq!(code, "BAD_USER_INPUT", "{message}");
        let through_a_fragment = format!(
            "mutation {{ ...M }} fragment M on Mutation {{ {} }}",
            (0..4).map(|i| format!("s{i}: syncSource(input: {{id: \"{source}\"}}) {{ newItems }}")).collect::<Vec<_>>().join(" ")
        );
        let (code, message) = refused(&app, &admin, &through_a_fragment, json!({})).await;
        assert_eq!(code, "BAD_USER_INPUT", "{message}");
        assert!(message.contains("platforms"), "{message}");
        let many_tags: String = (0..30)
            .map(|i| format!("t{i}: addTag(input: {{customerId: \"cus_x\", name: \"t{i}\"}}) {{ customer {{ id }} }} "))
            .collect();
        let (code, message) = refused(&app, &admin, &format!("mutation {{ {many_tags} }}"), json!({})).await;
        assert_eq!(code, "BAD_USER_INPUT", "{message}");
        assert!(message.contains("mutations"), "{message}");
        assert!(platform.seen("/feed.xml").is_empty(), "a refused request made no outbound call");
        other_tenant_is_served(&app, &other).await;
    }
}

backend_test! {
    async fn the_standard_introspection_query_runs(app: TestApp) {
        let key = app.key(Role::Viewer).await;
        let data = app.gql(&key, INTROSPECTION, json!({})).await;
        let types = data["__schema"]["types"].as_array().unwrap();
        assert!(types.iter().any(|t| t["name"] == "Customer"), "Customer is listed");
    }
}

backend_test! {
    async fn error_lists_are_bounded(app: TestApp) {
        let key = app.key(Role::Viewer).await;
        let fields: String = (0..1_500).map(|i| format!("f{i}: noSuchField ")).collect();
        let (status, body) = app.post(&key, &format!("{{ {fields} }}"), json!({})).await;
        assert_eq!(status, 200, "{body:#}");
        let errors = body["errors"].as_array().unwrap();
        assert_eq!(errors.len(), 21, "20 errors and one that counts the rest");
        assert_eq!(errors[20]["extensions"]["omitted"], 1_480);
        assert!(body.to_string().len() < 20_000);
    }
}

backend_test! {
    async fn non_object_extensions_are_bad_requests(app: TestApp) {
        let key = app.key(Role::Viewer).await;
        for extensions in [json!("x"), json!(1), json!([1]), json!(true)] {
            let response = app
                .client
                .post(app.url("/graphql"))
                .bearer_auth(&key)
                .header("accept", "application/graphql-response+json")
                .json(&json!({ "query": "{ viewer { role } }", "extensions": extensions }))
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 400, "{extensions}");
            let body: Value = response.json().await.unwrap();
            assert_eq!(body["errors"][0]["extensions"]["code"], "BAD_USER_INPUT");
            let response = app
                .client
                .get(app.url("/graphql"))
                .bearer_auth(&key)
                .query(&[("query", "{ viewer { role } }"), ("extensions", &extensions.to_string())])
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 400, "GET {extensions}");
        }
        let data = app
            .client
            .post(app.url("/graphql"))
            .bearer_auth(&key)
            .json(&json!({ "query": "{ viewer { role } }", "extensions": { "persistedQuery": null } }))
            .send()
            .await
            .unwrap();
        assert_eq!(data.status(), 200);
    }
}

backend_test! {
    async fn guessing_keys_is_rate_limited_per_client(app: TestApp) {
        let key = app.key(Role::Viewer).await;
        let mut failures = 0;
        let mut limited = false;
        for attempt in 0..100 {
            let (status, _) = app.post(&format!("rk_guess_{attempt}"), "{ viewer { role } }", json!({})).await;
            match status {
                401 => failures += 1,
                429 => {
                    limited = true;
                    break;
                }
                other => panic!("unexpected status {other}"),
            }
        }
        // 60 a minute, refilled at one a second while the guesses run.
        assert!(limited, "guessing was never limited");
        assert!((60..70).contains(&failures), "{failures} guesses were checked");
        // Locked out for a while, even with a good key: the lock is on the address.
        let (status, body) = app.post(&key, "{ viewer { role } }", json!({})).await;
        assert_eq!(status, 429, "{body:#}");
        assert_eq!(body["errors"][0]["extensions"]["code"], "RATE_LIMITED");
    }
}

/// Starts an app whose limits `adjust` changes.
async fn with_limits(backend: Backend, adjust: impl FnOnce(&mut Limits)) -> Option<TestApp> {
    let mut limits = Limits::default();
    adjust(&mut limits);
    TestApp::with_limits(backend, limits).await
}

macro_rules! limits_test {
    ($name:ident, |$limits:ident| $adjust:block, |$app:ident| $body:block) => {
        mod $name {
            use super::*;

            async fn run($app: TestApp) $body

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                run(with_limits(Backend::Sqlite, |$limits| $adjust).await.unwrap()).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                match with_limits(Backend::Postgres, |$limits| $adjust).await {
                    Some(app) => run(app).await,
                    None => eprintln!("skipped: set RAPPORT_TEST_DATABASE_URL to run the PostgreSQL variant"),
                }
            }
        }
    };
}

limits_test!(
    webhook_deliveries_are_rate_limited_per_source,
    |limits| {
        limits.webhook_requests_per_minute = 5;
    },
    |app| {
        let admin = app.key(Role::Admin).await;
        let source = create_source(
            &app,
            &admin,
            "WEBHOOK",
            "hook",
            json!({ "secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw" }),
        )
        .await;
        let path = format!("/webhooks/{source}");
        let secret =
            connectors::webhook::Secret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let send = |id: Option<String>| {
            let body = json!({ "email": "ada@example.com", "text": "hello" }).to_string();
            let timestamp = chrono::Utc::now().timestamp().to_string();
            let mut request = app
                .client
                .post(app.url(&path))
                .header("content-type", "application/json");
            if let Some(id) = id {
                let signature = secret
                    .sign_standard(&id, &timestamp, body.as_bytes())
                    .unwrap();
                request = request
                    .header("webhook-id", id)
                    .header("webhook-timestamp", timestamp)
                    .header("webhook-signature", signature);
            }
            async move { request.body(body).send().await.unwrap().status().as_u16() }
        };
        // Unsigned junk to a known source address: refused, and it uses none of the
        // source's budget.
        for _ in 0..8 {
            assert_eq!(send(None).await, 401);
        }
        // Signed deliveries: 5 a minute, then 429 before any work.
        let mut statuses = Vec::new();
        for i in 0..7 {
            statuses.push(send(Some(format!("msg_{i}"))).await);
        }
        assert!(
            statuses[..5].iter().all(|status| *status == 200),
            "{statuses:?}"
        );
        assert!(
            statuses[5..].iter().all(|status| *status == 429),
            "{statuses:?}"
        );
    }
);

limits_test!(
    slow_headers_and_idle_sockets_are_closed,
    |limits| {
        limits.header_read_timeout_secs = 1;
    },
    |app| {
        // A client that sends half its headers, then nothing.
        let mut slow = TcpStream::connect(app.addr).await.unwrap();
        slow.write_all(b"POST /graphql HTTP/1.1\r\nHost: x\r\nContent-")
            .await
            .unwrap();
        // A client that connects and says nothing.
        let mut idle = TcpStream::connect(app.addr).await.unwrap();
        for stream in [&mut slow, &mut idle] {
            let mut buffer = [0u8; 512];
            let read = tokio::time::timeout(HANG, stream.read(&mut buffer)).await;
            match read {
                Ok(Ok(_)) | Ok(Err(_)) => {} // closed (possibly after a 408), or reset
                Err(_) => panic!("the server kept a silent connection open"),
            }
        }
        let health = app.client.get(app.url("/healthz")).send().await.unwrap();
        assert_eq!(health.status(), 200);
    }
);

limits_test!(
    a_crowd_of_idle_sockets_cannot_lock_out_healthz,
    |limits| {
        limits.max_connections = 50;
    },
    |app| {
        let mut crowd = Vec::new();
        for _ in 0..120 {
            if let Ok(stream) = TcpStream::connect(app.addr).await {
                crowd.push(stream);
            }
        }
        let started = Instant::now();
        let health =
            tokio::time::timeout(HANG, reqwest::Client::new().get(app.url("/healthz")).send())
                .await
                .expect("/healthz answers behind a crowd of idle sockets")
                .unwrap();
        assert_eq!(health.status(), 200);
        assert!(started.elapsed() < HANG);
        drop(crowd);
    }
);

limits_test!(
    a_request_past_its_time_budget_is_cancelled_with_timeout,
    |limits| {
        limits.request_timeout_secs = 1;
        limits.header_read_timeout_secs = 30;
    },
    |app| {
        let key = app.key(Role::Viewer).await;
        // A body that trickles in: the request outlives its budget while it is read.
        let mut stream = TcpStream::connect(app.addr).await.unwrap();
        let body = r#"{"query":"{ viewer { role } }"}"#;
        let head = format!(
        "POST /graphql HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
        stream.write_all(head.as_bytes()).await.unwrap();
        stream.write_all(&body.as_bytes()[..5]).await.unwrap();
        let mut answer = Vec::new();
        let read = tokio::time::timeout(HANG, async {
            let mut buffer = [0u8; 4096];
            loop {
                let read = stream.read(&mut buffer).await.unwrap_or(0);
                if read == 0 {
                    break;
                }
                answer.extend_from_slice(&buffer[..read]);
                if answer.windows(9).any(|w| w == b"\"TIMEOUT\"") {
                    break;
                }
            }
        })
        .await;
        assert!(read.is_ok(), "no answer within the budget");
        let answer = String::from_utf8_lossy(&answer);
        assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
        assert!(answer.contains("\"TIMEOUT\""), "{answer}");
    }
);

/// graphql-js's `getIntrospectionQuery({ descriptions: true, specifiedByUrl: true,
/// directiveIsRepeatable: true, schemaDescription: true, inputValueDeprecation: true,
/// oneOf: true })`, as GraphiQL, codegen and IDE plugins send it.
const INTROSPECTION: &str = r#"
query IntrospectionQuery {
  __schema {
    description
    queryType { name kind }
    mutationType { name kind }
    subscriptionType { name kind }
    types { ...FullType }
    directives {
      name
      description
      isRepeatable
      locations
      args(includeDeprecated: true) { ...InputValue }
    }
  }
}
fragment FullType on __Type {
  kind
  name
  description
  specifiedByURL
  isOneOf
  fields(includeDeprecated: true) {
    name
    description
    args(includeDeprecated: true) { ...InputValue }
    type { ...TypeRef }
    isDeprecated
    deprecationReason
  }
  inputFields(includeDeprecated: true) { ...InputValue }
  interfaces { ...TypeRef }
  enumValues(includeDeprecated: true) {
    name
    description
    isDeprecated
    deprecationReason
  }
  possibleTypes { ...TypeRef }
}
fragment InputValue on __InputValue {
  name
  description
  type { ...TypeRef }
  defaultValue
  isDeprecated
  deprecationReason
}
fragment TypeRef on __Type {
  kind
  name
  ofType {
    kind
    name
    ofType {
      kind
      name
      ofType {
        kind
        name
        ofType {
          kind
          name
          ofType {
            kind
            name
            ofType {
              kind
              name
              ofType {
                kind
                name
                ofType {
                  kind
                  name
                  ofType {
                    kind
                    name
                  }
                }
              }
            }
          }
        }
      }
    }
  }
}
"#;

limits_test!(
    an_answer_holds_at_most_max_values,
    |limits| {
        limits.max_values = 500;
    },
    |app| {
        let key = app.key(Role::Agent).await;
        let customer = app
            .create_customer(&key, json!({ "displayName": "Chatty" }))
            .await;
        let notes: String = (0..24)
            .map(|i| format!("n{i}: addNote(input: {{customerId: \"{customer}\", body: \"note {i}\"}}) {{ note {{ id }} }} "))
            .collect();
        app.gql(&key, &format!("mutation {{ {notes} }}"), json!({}))
            .await;
        // Lists without paging grow with the data: the same customer ten times over.
        let ids = serde_json::to_string(&vec![customer.clone(); 10]).unwrap();
        let query = format!("{{ nodes(ids: {ids}) {{ ... on Customer {{ notes {{ body }} }} }} }}");
        let (status, body) = app.post(&key, &query, json!({})).await;
        assert_eq!(status, 200);
        assert_eq!(
            body["errors"][0]["extensions"]["code"], "BAD_USER_INPUT",
            "{body:#}"
        );
        assert!(
            body["errors"][0]["message"]
                .as_str()
                .unwrap()
                .contains("500 values"),
            "{body:#}"
        );
        assert!(body.to_string().len() < 100_000);
        // Within the cap the same list answers whole.
        let data = app
            .gql(
                &key,
                &format!("{{ customer(id: \"{customer}\") {{ notes {{ body }} }} }}"),
                json!({}),
            )
            .await;
        assert_eq!(data["customer"]["notes"].as_array().unwrap().len(), 24);
    }
);

limits_test!(
    one_client_cannot_take_every_connection_with_slow_bodies,
    |limits| {
        limits.max_connections = 60;
        limits.max_connections_per_client = 20;
    },
    |app| {
        // An attacker at 127.0.0.2 opens requests whose bodies never finish.
        let mut held = Vec::new();
        for _ in 0..40 {
            let socket = tokio::net::TcpSocket::new_v4().unwrap();
            socket.bind("127.0.0.2:0".parse().unwrap()).unwrap();
            let Ok(mut stream) = socket.connect(app.addr).await else {
                continue;
            };
            let head = "POST /graphql HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n{\"query\":";
            if stream.write_all(head.as_bytes()).await.is_ok() {
                held.push(stream);
            }
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        // Everyone else still gets in.
        let health =
            tokio::time::timeout(HANG, reqwest::Client::new().get(app.url("/healthz")).send())
                .await
                .expect("/healthz answers while one client holds slow bodies")
                .unwrap();
        assert_eq!(health.status(), 200);
        // And the attacker holds at most its share: the ones past it were closed.
        let mut open = 0;
        for stream in &mut held {
            let mut buffer = [0u8; 64];
            match tokio::time::timeout(Duration::from_millis(50), stream.read(&mut buffer)).await {
                Err(_) => open += 1,         // still waiting for its body
                Ok(Ok(0)) | Ok(Err(_)) => {} // closed
                Ok(Ok(_)) => {}              // answered (an error) and closed
            }
        }
        assert!(open <= 20, "{open} slow bodies still open from one client");
        // Several addresses, each within its share, together over the cap: a body still
        // arriving is no work of ours, so those connections make room for newcomers.
        let mut crowd = Vec::new();
        for address in ["127.0.0.3", "127.0.0.4", "127.0.0.5", "127.0.0.6"] {
            for _ in 0..20 {
                let socket = tokio::net::TcpSocket::new_v4().unwrap();
                socket
                    .bind(format!("{address}:0").parse().unwrap())
                    .unwrap();
                let Ok(mut stream) = socket.connect(app.addr).await else {
                    continue;
                };
                let head = "POST /graphql HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n{\"query\":";
                if stream.write_all(head.as_bytes()).await.is_ok() {
                    crowd.push(stream);
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        let health =
            tokio::time::timeout(HANG, reqwest::Client::new().get(app.url("/healthz")).send())
                .await
                .expect("/healthz answers while many clients hold slow bodies")
                .unwrap();
        assert_eq!(health.status(), 200);
        drop((held, crowd));
    }
);

backend_test! {
    async fn oversized_keys_from_platforms_and_domains_never_fail_postgres(app: TestApp) {
        let admin = app.key(Role::Admin).await;
        let long: String = (0..3_000).map(|i| char::from(b'a' + (i * 7 % 26) as u8)).collect();
        let (code, _) = app
            .gql_error(
                &admin,
                "mutation($input: CreateOrganizationInput!) { createOrganization(input: $input) { organization { id } } }",
                json!({ "input": { "name": "o", "domain": format!("{long}.example") } }),
            )
            .await;
        assert_eq!(code, "BAD_USER_INPUT");
        let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        let source = create_source(&app, &admin, "WEBHOOK", "hook", json!({ "secret": secret })).await;
        let body = json!({
            "email": format!("{long}@x.example"),
            "thread_id": long.clone(),
            "id": long.clone(),
            "name": long.repeat(100),
            "text": "hello",
        })
        .to_string();
        for attempt in 0..2 {
            let timestamp = chrono::Utc::now().timestamp().to_string();
            let signature = connectors::webhook::Secret::parse(secret)
                .unwrap()
                .sign_standard("msg_long", &timestamp, body.as_bytes())
                .unwrap();
            let response = app
                .client
                .post(app.url(&format!("/webhooks/{source}")))
                .header("content-type", "application/json")
                .header("webhook-id", "msg_long")
                .header("webhook-timestamp", timestamp)
                .header("webhook-signature", signature)
                .body(body.clone())
                .send()
                .await
                .unwrap();
            let status = response.status().as_u16();
            let answer: Value = response.json().await.unwrap_or(Value::Null);
            assert_eq!(status, 200, "attempt {attempt}: {answer:#}");
            assert_eq!(answer["duplicate"], attempt == 1, "{answer:#}");
        }
    }
}

backend_test! {
    async fn concurrent_writers_never_see_database_is_locked(app: TestApp) {
        let key = app.key(Role::Agent).await;
        let customer = app.create_customer(&key, json!({ "displayName": "Busy" })).await;
        let mut writers = Vec::new();
        for writer in 0..6 {
            let client = app.client.clone();
            let url = app.url("/graphql");
            let key = key.clone();
            let customer = customer.clone();
            writers.push(tokio::spawn(async move {
                let mut failures = Vec::new();
                for round in 0..15 {
                    let body = json!({
                        "query": "mutation($input: AddNoteInput!) { addNote(input: $input) { note { id } } }",
                        "variables": { "input": { "customerId": customer, "body": format!("{writer}/{round}") } },
                    });
                    let answer: Value = client.post(&url).bearer_auth(&key).json(&body).send().await.unwrap().json().await.unwrap();
                    if answer.get("errors").is_some() {
                        failures.push(answer);
                    }
                }
                failures
            }));
        }
        for writer in writers {
            let failures = writer.await.unwrap();
            assert!(failures.is_empty(), "{failures:#?}");
        }
    }
}

limits_test!(
    a_query_runs_at_most_max_parallel_fields_root_fields_at_once,
    |limits| {
        limits.max_parallel_fields = 1;
    },
    |app| {
        let key = app.key(Role::Agent).await;
        let mut customers = Vec::new();
        for n in 0..4 {
            let customer = app
                .create_customer(&key, json!({ "displayName": format!("Root {n}") }))
                .await;
            app.gql(
                &key,
                &format!("mutation {{ addNote(input: {{customerId: \"{customer}\", body: \"hello {n}\"}}) {{ note {{ id }} }} }}"),
                json!({}),
            )
            .await;
            customers.push(customer);
        }
        let field = |n: usize| {
            format!(
                "c{n}: customer(id: \"{}\") {{ displayName notes {{ body }} }}",
                customers[n]
            )
        };
        let before = app.statements();
        let alone = app
            .gql(&key, &format!("{{ {} }}", field(0)), json!({}))
            .await;
        let one = app.statements() - before;
        assert_eq!(alone["c0"]["notes"][0]["body"], "hello 0");
        // Run together, the fields' loads would share batches (one statement per relation
        // for all of them); one at a time, each field costs what it costs alone.
        let all: Vec<String> = (0..4).map(field).collect();
        let before = app.statements();
        app.gql(&key, &format!("{{ {} }}", all[..2].join(" ")), json!({}))
            .await;
        let two = app.statements() - before;
        let before = app.statements();
        let data = app
            .gql(&key, &format!("{{ {} }}", all.join(" ")), json!({}))
            .await;
        let four = app.statements() - before;
        for n in 0..4 {
            assert_eq!(
                data[format!("c{n}")]["notes"][0]["body"],
                format!("hello {n}")
            );
        }
        assert!(
            two > one,
            "a second root field shared the first one's batches"
        );
        assert_eq!(
            four,
            one + 3 * (two - one),
            "{four} statements for four root fields, {two} for two, {one} for one"
        );
    }
);

limits_test!(
    a_list_without_paging_is_refused_before_its_items_resolve,
    |limits| {
        limits.max_values = 40;
    },
    |app| {
        let key = app.key(Role::Agent).await;
        let customer = app
            .create_customer(&key, json!({ "displayName": "Chatty" }))
            .await;
        for i in 0..24 {
            let note = format!("mutation {{ addNote(input: {{customerId: \"{customer}\", body: \"note {i}\"}}) {{ note {{ id }} }} }}");
            app.gql(&key, &note, json!({})).await;
        }
        // 24 notes of two values each are over 40 before one of them resolves: the list's
        // own field is refused (its path), not the finished answer.
        let query = format!("{{ customer(id: \"{customer}\") {{ notes {{ body }} }} }}");
        let (status, body) = app.post(&key, &query, json!({})).await;
        assert_eq!(status, 200);
        let error = &body["errors"][0];
        assert_eq!(error["extensions"]["code"], "BAD_USER_INPUT", "{body:#}");
        assert_eq!(error["path"], json!(["customer", "notes"]), "{body:#}");
        assert!(
            error["message"].as_str().unwrap().contains("40 values"),
            "{body:#}"
        );
        // Without the list the customer answers.
        let query = format!("{{ customer(id: \"{customer}\") {{ displayName }} }}");
        let data = app.gql(&key, &query, json!({})).await;
        assert_eq!(data["customer"]["displayName"], "Chatty");
    }
);

limits_test!(
    a_cycle_through_a_customers_conversations_is_refused_while_it_resolves,
    |limits| {
        limits.max_values = 200;
    },
    |app| {
        let admin = app.key(Role::Admin).await;
        let source = crate::ingest::webhook_source(&app, &admin).await;
        let source = crate::mastodon::source_row(&app, source["id"].as_str().unwrap()).await;
        // One author in four threads: one customer with four conversations.
        let items: Vec<connectors::InboundItem> = (0..4)
            .map(|n| connectors::InboundItem {
                external_id: format!("loop-{n}"),
                author: connectors::Author {
                    platform_id: "acct:loop".into(),
                    display_name: Some("Looped".into()),
                    ..connectors::Author::default()
                },
                outbound: false,
                kind: "message".into(),
                subject: None,
                text: format!("thread {n}"),
                html: None,
                url: None,
                language: None,
                occurred_at: chrono::Utc::now(),
                thread_key: Some(format!("thread-{n}")),
                in_reply_to: None,
                raw: json!({ "id": n }),
            })
            .collect();
        rapport::ingest::ingest(&app.app.db, &source, &items, None, None)
            .await
            .unwrap();
        let data = app
            .gql(
                &admin,
                "{ customers(first: 1) { nodes { id conversations { id } } } }",
                json!({}),
            )
            .await;
        let customer = data["customers"]["nodes"][0]["id"]
            .as_str()
            .unwrap()
            .to_owned();
        assert_eq!(
            data["customers"]["nodes"][0]["conversations"]
                .as_array()
                .unwrap()
                .len(),
            4
        );
        let key = admin;
        // Four conversations, each leading back to the customer: 4^k objects at depth k
        // (1,024 at the fifth), a few statements and a small static cost.
        let mut selection = String::from("id");
        for _ in 0..5 {
            selection = format!("conversations {{ customer {{ {selection} }} }}");
        }
        let query = format!("{{ customer(id: \"{customer}\") {{ {selection} }} }}");
        let (status, body) = app.post(&key, &query, json!({})).await;
        assert_eq!(status, 200);
        let errors = body["errors"].as_array().unwrap();
        assert!(body["data"].is_null(), "{body:#}");
        assert!(
            errors
                .iter()
                .all(|error| error["extensions"]["code"] == "BAD_USER_INPUT"),
            "{body:#}"
        );
        assert!(
            errors[0]["path"]
                .as_array()
                .is_some_and(|path| path.len() > 2),
            "refused at a list while resolving, not once built: {body:#}"
        );
    }
);

limits_test!(
    a_search_charges_every_match_it_would_list,
    |limits| {
        limits.max_values = 500;
    },
    |app| {
        let key = app.key(Role::Agent).await;
        let customer = app
            .create_customer(&key, json!({ "displayName": "Echo" }))
            .await;
        // One text, 600 matches of one word.
        let text = "echo ".repeat(600);
        let record = "mutation($input: RecordInteractionInput!) { recordInteraction(input: $input) { interaction { id } } }";
        let input = json!({ "customerId": customer, "kind": "NOTE", "text": text });
        app.gql(&key, record, json!({ "input": input })).await;
        rapport::search::indexer::Indexer::new(&app.app)
            .catch_up()
            .await
            .unwrap();
        let (status, body) = app
            .post(
                &key,
                "{ search(query: \"echo\") { nodes { highlights { field matches { start } } } } }",
                json!({}),
            )
            .await;
        assert_eq!(status, 200);
        let error = &body["errors"][0];
        assert_eq!(error["extensions"]["code"], "BAD_USER_INPUT", "{body:#}");
        assert_eq!(
            error["path"],
            json!(["search"]),
            "refused before the matches were built: {body:#}"
        );
        // Without the matches the same search answers.
        let data = app
            .gql(
                &key,
                "{ search(query: \"echo\") { nodes { highlights { field snippet } } } }",
                json!({}),
            )
            .await;
        assert_eq!(data["search"]["nodes"].as_array().unwrap().len(), 1);
    }
);
