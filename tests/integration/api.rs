//! The HTTP surface: GraphQL-over-HTTP status codes and media types, malformed requests,
//! limits, authentication, health, readiness and metrics. Every error body is pinned by a
//! snapshot so a changed code or message is a reviewed change.

use rapport::config::Limits;
use rapport::domain::Role;
use serde_json::{json, Value};

use crate::backend_test;
use crate::common::{Backend, TestApp};

async fn raw(
    app: &TestApp,
    key: Option<&str>,
    content_type: &str,
    accept: Option<&str>,
    body: &str,
) -> (u16, String, Value) {
    let mut request = app
        .client
        .post(app.url("/graphql"))
        .header("content-type", content_type)
        .body(body.to_owned());
    if let Some(key) = key {
        request = request.bearer_auth(key);
    }
    if let Some(accept) = accept {
        request = request.header("accept", accept);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let media = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let text = response.text().await.unwrap();
    (
        status,
        media,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

async fn still_serving(app: &TestApp, key: &str) {
    let data = app.gql(key, "{ viewer { role } }", json!({})).await;
    assert_eq!(data["viewer"]["role"], "VIEWER");
}

backend_test! {
    async fn malformed_requests_get_clear_errors_and_the_server_keeps_serving(app: TestApp) {
        let key = app.key(Role::Viewer).await;
        let cases: Vec<(&str, &str, &str, u16)> = vec![
            ("malformed_json", "application/json", "{\"query\": ", 400),
            ("body_not_an_object", "application/json", "[1, 2]", 400),
            ("no_query", "application/json", "{\"variables\": {}}", 400),
            ("query_not_a_string", "application/json", "{\"query\": 42}", 400),
            ("variables_not_an_object", "application/json", "{\"query\": \"{ viewer { role } }\", \"variables\": [1]}", 400),
            ("wrong_content_type", "text/plain", "{ viewer { role } }", 415),
        ];
        for (name, content_type, body, status) in cases {
            let (got, media, body) = raw(&app, Some(&key), content_type, None, body).await;
            assert_eq!(got, status, "{name}: {body:#}");
            assert_eq!(media, "application/json", "{name}");
            let mut body = body;
            if name == "malformed_json" {
                // serde's position detail is fine to change; the prefix is the contract.
                let message = body["errors"][0]["message"].as_str().unwrap().to_owned();
                assert!(message.starts_with("the body is not valid JSON"), "{message}");
                body["errors"][0]["message"] = json!("the body is not valid JSON: …");
            }
            insta::assert_json_snapshot!(format!("request_{name}"), body);
        }
        still_serving(&app, &key).await;
    }
}

backend_test! {
    async fn invalid_queries_are_bad_user_input_with_the_right_status_per_media_type(app: TestApp) {
        let key = app.key(Role::Viewer).await;
        let unknown_field = json!({ "query": "{ customers { edges { node { shoeSize } } } }" }).to_string();
        // application/json: a well-formed request that fails validation is still 200.
        let (status, media, body) = raw(&app, Some(&key), "application/json", Some("application/json"), &unknown_field).await;
        assert_eq!((status, media.as_str()), (200, "application/json"));
        assert!(body.get("data").is_none(), "a request error has no data: {body:#}");
        insta::assert_json_snapshot!("query_unknown_field", body);
        // application/graphql-response+json: 400, and the same body.
        let (status, media, body2) = raw(&app, Some(&key), "application/json", Some("application/graphql-response+json"), &unknown_field).await;
        assert_eq!((status, media.as_str()), (400, "application/graphql-response+json"));
        assert_eq!(body, body2);
        // A syntax error.
        let (status, _, body) = raw(&app, Some(&key), "application/json", Some("application/graphql-response+json"), r#"{"query": "{ viewer { "}"#).await;
        assert_eq!(status, 400);
        assert_eq!(body["errors"][0]["extensions"]["code"], "BAD_USER_INPUT");
        // Nothing acceptable to answer with.
        let (status, _, body) = raw(&app, Some(&key), "application/json", Some("text/csv"), &unknown_field).await;
        assert_eq!(status, 406);
        insta::assert_json_snapshot!("request_not_acceptable", body);
        still_serving(&app, &key).await;
    }
}

backend_test! {
    async fn an_invalid_id_is_bad_user_input_naming_the_field(app: TestApp) {
        let key = app.key(Role::Admin).await;
        for (query, snapshot) in [
            ("{ customer(id: \"nope\") { id } }", "id_malformed"),
            ("{ customer(id: \"org_0192f0c5a0a07a1c8e9b6a3f2d1c0b9a\") { id } }", "id_wrong_kind"),
            ("{ node(id: \"cus_zz\") { id } }", "id_node_malformed"),
        ] {
            let (status, body) = app.post(&key, query, json!({})).await;
            assert_eq!(status, 200);
            assert_eq!(body["data"], Value::Null, "{body:#}");
            insta::assert_json_snapshot!(snapshot, body["errors"]);
        }
        let (code, body) = app
            .gql_error(&key, "mutation { addNote(input: {customerId: \"cus_123\", body: \"x\"}) { note { id } } }", json!({}))
            .await;
        assert_eq!(code, "BAD_USER_INPUT");
        assert_eq!(body["errors"][0]["extensions"]["field"], "customerId");
        // A well-formed id that names nothing: null for queries, NOT_FOUND for mutations.
        let missing = "cus_0192f0c5a0a07a1c8e9b6a3f2d1c0b9a";
        let data = app.gql(&key, "query($id: ID!) { customer(id: $id) { id } node(id: $id) { id } }", json!({ "id": missing })).await;
        assert_eq!(data, json!({ "customer": null, "node": null }));
        let (code, body) = app
            .gql_error(&key, "mutation($id: ID!) { addNote(input: {customerId: $id, body: \"x\"}) { note { id } } }", json!({ "id": missing }))
            .await;
        assert_eq!(code, "NOT_FOUND");
        insta::assert_json_snapshot!("mutation_not_found", body["errors"]);
    }
}

backend_test! {
    async fn page_sizes_over_a_hundred_are_refused_clearly(app: TestApp) {
        let key = app.key(Role::Viewer).await;
        for query in [
            "{ customers(first: 10000) { edges { node { id } } } }",
            "{ customers(last: 101) { edges { node { id } } } }",
            "{ interactions(first: -1) { edges { node { id } } } }",
        ] {
            let (code, body) = app.gql_error(&key, query, json!({})).await;
            assert_eq!(code, "BAD_USER_INPUT", "{body:#}");
            assert!(body["errors"][0]["message"].as_str().unwrap().contains("between 0 and 100"), "{body:#}");
        }
        let (_, body) = app.gql_error(&key, "{ customers(first: 10000) { edges { node { id } } } }", json!({})).await;
        insta::assert_json_snapshot!("page_size_too_large", body);
        let (code, _) = app.gql_error(&key, "{ customers(first: 1, last: 1) { edges { node { id } } } }", json!({})).await;
        assert_eq!(code, "BAD_USER_INPUT");
        let (code, _) = app.gql_error(&key, "{ customers(after: \"garbage\") { edges { node { id } } } }", json!({})).await;
        assert_eq!(code, "BAD_USER_INPUT");
        still_serving(&app, &key).await;
    }
}

backend_test! {
    async fn deep_and_expensive_queries_are_refused_before_running(app: TestApp) {
        let key = app.key(Role::Viewer).await;
        let mut deep = String::from("id");
        for _ in 0..6 {
            deep = format!("customer {{ timeline(first: 1) {{ edges {{ node {{ {deep} }} }} }} }}");
        }
        let query = format!("{{ interactions(first: 1) {{ edges {{ node {{ {deep} }} }} }} }}");
        let (status, media, body) = raw(&app, Some(&key), "application/json", Some("application/graphql-response+json"), &json!({ "query": query }).to_string()).await;
        assert_eq!((status, media.as_str()), (400, "application/graphql-response+json"), "{body:#}");
        assert_eq!(body["errors"][0]["extensions"]["code"], "BAD_USER_INPUT");
        insta::assert_json_snapshot!("query_too_deep", body);
        let statements = app.statements();
        let expensive = "{ customers(first: 100) { edges { node { timeline(first: 100) { edges { node { customer { timeline(first: 100) { edges { node { id } } } } } } } } } } }";
        let (code, body) = app.gql_error(&key, expensive, json!({})).await;
        assert_eq!(code, "BAD_USER_INPUT");
        insta::assert_json_snapshot!("query_too_complex", body);
        assert_eq!(app.statements() - statements, 0, "a refused query must not reach the database (its key's read aside)");
        still_serving(&app, &key).await;
    }
}

backend_test! {
    async fn get_runs_queries_and_refuses_mutations(app: TestApp) {
        let key = app.key(Role::Admin).await;
        let response = app
            .client
            .get(app.url("/graphql"))
            .query(&[("query", "query($n: Int) { customers(first: $n) { totalCount } }"), ("variables", "{\"n\": 1}")])
            .bearer_auth(&key)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["data"]["customers"]["totalCount"], 0);
        let response = app
            .client
            .get(app.url("/graphql"))
            .query(&[("query", "mutation { addTag(input: {customerId: \"cus_0192f0c5a0a07a1c8e9b6a3f2d1c0b9a\", name: \"x\"}) { customer { id } } }")])
            .bearer_auth(&key)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 405);
        assert_eq!(response.headers()["allow"], "POST");
        let body: Value = response.json().await.unwrap();
        insta::assert_json_snapshot!("get_mutation", body);
        // A browser without a query gets GraphiQL.
        let response = app.client.get(app.url("/graphql")).header("accept", "text/html").send().await.unwrap();
        assert_eq!(response.status(), 200);
        assert!(response.text().await.unwrap().contains("graphiql"));
    }
}

backend_test! {
    async fn missing_and_wrong_keys_are_unauthenticated(app: TestApp) {
        let body = json!({ "query": "{ viewer { role } }" }).to_string();
        let (status, _, missing) = raw(&app, None, "application/json", None, &body).await;
        assert_eq!(status, 401);
        insta::assert_json_snapshot!("auth_missing_key", missing);
        let (status, _, wrong) = raw(&app, Some("rpk_not_a_real_key"), "application/json", None, &body).await;
        assert_eq!(status, 401);
        insta::assert_json_snapshot!("auth_wrong_key", wrong);
        let response = app.client.post(app.url("/graphql")).header("authorization", "Basic abc").json(&json!({"query": "{ viewer { role } }"})).send().await.unwrap();
        assert_eq!(response.status(), 401);
        assert_eq!(response.headers()["www-authenticate"], "Bearer");
    }
}

backend_test! {
    async fn a_revoked_key_stops_working(app: TestApp) {
        let key = app.key(Role::Admin).await;
        let workspace = rapport::domain::workspace::ensure(&app.app.db, "acme").await.unwrap();
        let keys = rapport::domain::workspace::list_keys(&app.app.db, workspace.id).await.unwrap();
        rapport::domain::workspace::revoke_key(&app.app.db, workspace.id, keys[0].id).await.unwrap();
        let (status, body) = app.post(&key, "{ viewer { role } }", json!({})).await;
        assert_eq!(status, 401);
        assert_eq!(body["errors"][0]["extensions"]["code"], "UNAUTHENTICATED");
    }
}

#[tokio::test]
async fn an_oversized_body_is_refused_with_413() {
    let limits = Limits {
        max_body_bytes: 2_048,
        ..Limits::default()
    };
    let app = TestApp::with_limits(Backend::Sqlite, limits).await.unwrap();
    let key = app.key(Role::Viewer).await;
    let padding = " ".repeat(4_096);
    let (status, _, body) = raw(
        &app,
        Some(&key),
        "application/json",
        None,
        &format!("{{\"query\": \"{{ viewer {{ role }} }}{padding}\"}}"),
    )
    .await;
    assert_eq!(status, 413);
    insta::assert_json_snapshot!("request_too_large", body);
    still_serving(&app, &key).await;
}

#[tokio::test]
async fn a_key_over_its_rate_is_rate_limited_with_retry_after() {
    let limits = Limits {
        requests_per_minute: 3,
        ..Limits::default()
    };
    let app = TestApp::with_limits(Backend::Sqlite, limits).await.unwrap();
    let key = app.key(Role::Viewer).await;
    for _ in 0..3 {
        app.gql(&key, "{ viewer { role } }", json!({})).await;
    }
    let response = app
        .client
        .post(app.url("/graphql"))
        .bearer_auth(&key)
        .json(&json!({"query": "{ viewer { role } }"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 429);
    assert!(
        response.headers()["retry-after"]
            .to_str()
            .unwrap()
            .parse::<u64>()
            .unwrap()
            >= 1
    );
    let mut body: Value = response.json().await.unwrap();
    assert!(
        body["errors"][0]["extensions"]["retryAfter"]
            .as_u64()
            .unwrap()
            >= 1
    );
    body["errors"][0]["extensions"]["retryAfter"] = json!("[seconds]");
    insta::assert_json_snapshot!("rate_limited", body);
    // Another key is not affected.
    let other = app.key(Role::Viewer).await;
    app.gql(&other, "{ viewer { role } }", json!({})).await;
}

backend_test! {
    async fn internal_errors_are_opaque_and_carry_the_request_id(app: TestApp) {
        use sea_orm::ConnectionTrait;
        let key = app.key(Role::Admin).await;
        let id = app.create_customer(&key, json!({ "displayName": "Ana" })).await;
        // Break the database behind the server's back.
        app.app.db.execute_unprepared("DROP TABLE note").await.unwrap();
        let response = app
            .client
            .post(app.url("/graphql"))
            .bearer_auth(&key)
            .header("x-request-id", "test-req-42")
            .json(&json!({ "query": "query($id: ID!) { customer(id: $id) { displayName notes { body } } }", "variables": { "id": id } }))
            .send()
            .await
            .unwrap();
        assert_eq!(response.headers()["x-request-id"], "test-req-42");
        let body: Value = response.json().await.unwrap();
        let text = body.to_string().to_lowercase();
        for leak in ["select", "note\"", "sqlite", "postgres", "relation", "no such table"] {
            assert!(!text.contains(leak), "the error leaks `{leak}`: {body:#}");
        }
        assert_eq!(body["errors"][0]["extensions"]["code"], "INTERNAL");
        assert!(body["errors"][0]["message"].as_str().unwrap().contains("test-req-42"), "{body:#}");
        // The rest of the answer is still there.
        assert_eq!(body["data"]["customer"]["displayName"], "Ana");
    }
}

backend_test! {
    async fn health_readiness_and_metrics(app: TestApp) {
        let key = app.key(Role::Viewer).await;
        let health = app.client.get(app.url("/healthz")).send().await.unwrap();
        assert_eq!(health.status(), 200);
        let ready = app.client.get(app.url("/readyz")).send().await.unwrap();
        assert_eq!(ready.status(), 200);
        app.gql(&key, "{ viewer { role } }", json!({})).await;
        app.post(&key, "{ nope }", json!({})).await;
        let metrics = app.client.get(app.url("/metrics")).send().await.unwrap().text().await.unwrap();
        assert!(metrics.contains("rapport_http_requests_total{route=\"/graphql\",status=\"200\"}"), "{metrics}");
        assert!(metrics.contains("rapport_http_request_duration_seconds_bucket{route=\"/graphql\",le=\"+Inf\"}"), "{metrics}");
        assert!(metrics.contains("rapport_graphql_errors_total{code=\"BAD_USER_INPUT\"} 1"), "{metrics}");
        assert!(metrics.contains("rapport_db_statements_total"), "{metrics}");
        assert!(metrics.contains("rapport_graphql_validations_skipped_total"), "{metrics}");
        let missing = app.client.get(app.url("/nowhere")).send().await.unwrap();
        assert_eq!(missing.status(), 404);
    }
}

#[tokio::test]
async fn browsers_may_call_the_api_from_another_origin() {
    let app = TestApp::start(Backend::Sqlite).await.unwrap();
    let preflight = app
        .client
        .request(reqwest::Method::OPTIONS, app.url("/graphql"))
        .header("origin", "https://app.example")
        .header("access-control-request-method", "POST")
        .header(
            "access-control-request-headers",
            "authorization, content-type",
        )
        .send()
        .await
        .unwrap();
    assert!(preflight.status().is_success(), "{}", preflight.status());
    assert_eq!(preflight.headers()["access-control-allow-origin"], "*");
    let allowed = preflight.headers()["access-control-allow-headers"]
        .to_str()
        .unwrap()
        .to_lowercase();
    assert!(
        allowed.contains("authorization") && allowed.contains("content-type"),
        "{allowed}"
    );
    let key = app.key(Role::Viewer).await;
    let response = app
        .client
        .post(app.url("/graphql"))
        .header("origin", "https://app.example")
        .bearer_auth(&key)
        .json(&json!({"query": "{ viewer { role } }"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["access-control-allow-origin"], "*");
    assert!(response.headers()["access-control-expose-headers"]
        .to_str()
        .unwrap()
        .contains("x-request-id"));
}
