//! What client libraries add on top of GraphQL-over-HTTP: automatic persisted queries
//! (Apollo's protocol, per workspace), batches (a JSON array of requests, Apollo's
//! `BatchHttpLink`, urql), and the `Cache-Control` of every `/graphql` answer.

use rapport::config::Limits;
use rapport::domain::Role;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::backend_test;
use crate::common::{Backend, TestApp};

const VIEWER: &str = "query Viewer { viewer { role } }";

fn sha256(query: &str) -> String {
    hex::encode(Sha256::digest(query.as_bytes()))
}

fn persisted(hash: &str) -> Value {
    json!({ "persistedQuery": { "version": 1, "sha256Hash": hash } })
}

/// POSTs `body` as JSON with `key`; the status, `Cache-Control` and the JSON answer.
async fn post(app: &TestApp, key: &str, body: &Value) -> (u16, String, Value) {
    let response = app
        .client
        .post(app.url("/graphql"))
        .bearer_auth(key)
        .json(body)
        .send()
        .await
        .unwrap();
    answer(response).await
}

/// GETs `/graphql` with `params` and `key`; the status, `Cache-Control` and the answer.
async fn get(app: &TestApp, key: &str, params: &[(&str, String)]) -> (u16, String, Value) {
    let response = app
        .client
        .get(app.url("/graphql"))
        .query(params)
        .bearer_auth(key)
        .send()
        .await
        .unwrap();
    answer(response).await
}

async fn answer(response: reqwest::Response) -> (u16, String, Value) {
    let status = response.status().as_u16();
    let cache = response
        .headers()
        .get("cache-control")
        .map(|value| value.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let text = response.text().await.unwrap();
    (
        status,
        cache,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

backend_test! {
    async fn a_persisted_query_is_not_found_then_registered_then_run_by_its_hash(app: TestApp) {
        let key = app.key(Role::Viewer).await;
        let hash = sha256(VIEWER);
        // The hash alone, never sent before: the miss Apollo's link retries on, 200 for
        // both media types.
        let (status, _, body) = post(&app, &key, &json!({ "extensions": persisted(&hash) })).await;
        assert_eq!(status, 200, "{body:#}");
        insta::assert_json_snapshot!("persisted_query_not_found", body);
        let response = app
            .client
            .post(app.url("/graphql"))
            .bearer_auth(&key)
            .header("accept", "application/graphql-response+json")
            .json(&json!({ "extensions": persisted(&hash) }))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["errors"][0]["extensions"]["code"], "PERSISTED_QUERY_NOT_FOUND");
        // The text with its hash registers it and runs it.
        let (status, _, body) = post(&app, &key, &json!({ "query": VIEWER, "extensions": persisted(&hash) })).await;
        assert_eq!((status, &body), (200, &json!({ "data": { "viewer": { "role": "VIEWER" } } })));
        // Then the hash alone runs it, over POST and over GET; uppercase hex too.
        let (status, _, body) = post(&app, &key, &json!({ "extensions": persisted(&hash.to_uppercase()), "operationName": "Viewer" })).await;
        assert_eq!((status, &body), (200, &json!({ "data": { "viewer": { "role": "VIEWER" } } })));
        let (status, _, body) = get(&app, &key, &[("extensions", persisted(&hash).to_string())]).await;
        assert_eq!((status, &body), (200, &json!({ "data": { "viewer": { "role": "VIEWER" } } })));
        // A GET with the hash and variables, the way Apollo sends hashed queries over GET.
        let paged = "query Paged($n: Int) { customers(first: $n) { totalCount } }";
        post(&app, &key, &json!({ "query": paged, "extensions": persisted(&sha256(paged)) })).await;
        let (status, _, body) = get(&app, &key, &[
            ("operationName", "Paged".to_owned()),
            ("variables", json!({ "n": 1 }).to_string()),
            ("extensions", persisted(&sha256(paged)).to_string()),
        ]).await;
        assert_eq!((status, &body), (200, &json!({ "data": { "customers": { "totalCount": 0 } } })));
    }
}

backend_test! {
    async fn a_persisted_mutation_still_needs_post(app: TestApp) {
        let key = app.key(Role::Admin).await;
        let mutation = "mutation { addTag(input: {customerId: \"cus_0192f0c5a0a07a1c8e9b6a3f2d1c0b9a\", name: \"x\"}) { customer { id } } }";
        let hash = sha256(mutation);
        let (status, _, body) = post(&app, &key, &json!({ "query": mutation, "extensions": persisted(&hash) })).await;
        assert_eq!(status, 200);
        assert_eq!(body["errors"][0]["extensions"]["code"], "NOT_FOUND", "{body:#}");
        let response = app
            .client
            .get(app.url("/graphql"))
            .query(&[("extensions", persisted(&hash).to_string())])
            .bearer_auth(&key)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 405);
        assert_eq!(response.headers()["allow"], "POST");
        let (status, _, body) = post(&app, &key, &json!({ "extensions": persisted(&hash) })).await;
        assert_eq!(status, 200);
        assert_eq!(body["errors"][0]["extensions"]["code"], "NOT_FOUND", "ran again over POST: {body:#}");
    }
}

backend_test! {
    async fn a_hash_that_is_not_the_querys_or_an_unknown_version_is_refused(app: TestApp) {
        let key = app.key(Role::Viewer).await;
        let wrong = sha256("{ something { else } }");
        let (status, _, body) = post(&app, &key, &json!({ "query": VIEWER, "extensions": persisted(&wrong) })).await;
        assert_eq!(status, 400);
        insta::assert_json_snapshot!("persisted_query_hash_mismatch", body);
        // Nothing was registered under the wrong hash.
        let (_, _, body) = post(&app, &key, &json!({ "extensions": persisted(&wrong) })).await;
        assert_eq!(body["errors"][0]["extensions"]["code"], "PERSISTED_QUERY_NOT_FOUND");
        let (status, _, body) = post(&app, &key, &json!({ "query": VIEWER, "extensions": { "persistedQuery": { "version": 2, "sha256Hash": sha256(VIEWER) } } })).await;
        assert_eq!(status, 400);
        insta::assert_json_snapshot!("persisted_query_unknown_version", body);
        let (status, _, body) = post(&app, &key, &json!({ "extensions": { "persistedQuery": { "version": 1, "sha256Hash": "abc" } } })).await;
        assert_eq!(status, 400);
        assert_eq!(body["errors"][0]["extensions"]["field"], "extensions.persistedQuery.sha256Hash");
        let (status, _, body) = get(&app, &key, &[("extensions", json!({ "persistedQuery": { "version": 0, "sha256Hash": sha256(VIEWER) } }).to_string())]).await;
        assert_eq!(status, 400);
        assert_eq!(body["errors"][0]["extensions"]["field"], "extensions.persistedQuery.version");
    }
}

backend_test! {
    async fn a_query_registered_in_one_workspace_is_not_found_in_another(app: TestApp) {
        let acme = app.key(Role::Viewer).await;
        let globex = app.key_in("globex", Role::Viewer).await;
        let hash = sha256(VIEWER);
        let (status, _, _) = post(&app, &acme, &json!({ "query": VIEWER, "extensions": persisted(&hash) })).await;
        assert_eq!(status, 200);
        let (status, _, body) = post(&app, &globex, &json!({ "extensions": persisted(&hash) })).await;
        assert_eq!(status, 200);
        assert_eq!(body["errors"][0]["extensions"]["code"], "PERSISTED_QUERY_NOT_FOUND", "{body:#}");
        let (_, _, body) = get(&app, &globex, &[("extensions", persisted(&hash).to_string())]).await;
        assert_eq!(body["errors"][0]["extensions"]["code"], "PERSISTED_QUERY_NOT_FOUND", "{body:#}");
        // Another key of the first workspace finds it.
        let admin = app.key(Role::Admin).await;
        let (_, _, body) = post(&app, &admin, &json!({ "extensions": persisted(&hash) })).await;
        assert_eq!(body, json!({ "data": { "viewer": { "role": "ADMIN" } } }));
    }
}

backend_test! {
    async fn a_batch_is_answered_in_order_each_request_with_its_own_result(app: TestApp) {
        let key = app.key(Role::Viewer).await;
        let batch = json!([
            { "query": "{ customers(first: 1) { totalCount } }" },
            { "query": VIEWER, "operationName": "Viewer" },
        ]);
        let (status, cache, body) = post(&app, &key, &batch).await;
        assert_eq!((status, cache.as_str()), (200, "no-store"), "{body:#}");
        assert_eq!(body, json!([
            { "data": { "customers": { "totalCount": 0 } } },
            { "data": { "viewer": { "role": "VIEWER" } } },
        ]));
        // One valid and one invalid request: one result, one error; and a persisted miss
        // answered in its place.
        let batch = json!([
            { "query": VIEWER },
            { "query": "{ customers { edges { node { shoeSize } } } }" },
            { "extensions": persisted(&sha256("{ never { sent } }")) },
        ]);
        let (status, _, body) = post(&app, &key, &batch).await;
        assert_eq!(status, 200);
        let answers = body.as_array().unwrap();
        assert_eq!(answers.len(), 3, "{body:#}");
        assert_eq!(answers[0], json!({ "data": { "viewer": { "role": "VIEWER" } } }));
        assert!(answers[1].get("data").is_none(), "{body:#}");
        assert_eq!(answers[1]["errors"][0]["extensions"]["code"], "BAD_USER_INPUT");
        assert_eq!(answers[2]["errors"][0]["extensions"]["code"], "PERSISTED_QUERY_NOT_FOUND");
        // Registered in a batch, run by hash in another.
        let batch = json!([{ "query": VIEWER, "extensions": persisted(&sha256(VIEWER)) }]);
        post(&app, &key, &batch).await;
        let (_, _, body) = post(&app, &key, &json!([{ "extensions": persisted(&sha256(VIEWER)) }])).await;
        assert_eq!(body, json!([{ "data": { "viewer": { "role": "VIEWER" } } }]));
    }
}

backend_test! {
    async fn an_empty_an_oversized_or_a_malformed_batch_is_refused(app: TestApp) {
        let key = app.key(Role::Viewer).await;
        let (status, _, body) = post(&app, &key, &json!([])).await;
        assert_eq!(status, 400);
        insta::assert_json_snapshot!("batch_empty", body);
        let batch: Vec<Value> = (0..11).map(|_| json!({ "query": VIEWER })).collect();
        let (status, _, body) = post(&app, &key, &Value::Array(batch)).await;
        assert_eq!(status, 400);
        insta::assert_json_snapshot!("batch_too_large", body);
        // Ten is the cap, not over it.
        let batch: Vec<Value> = (0..10).map(|_| json!({ "query": VIEWER })).collect();
        let (status, _, body) = post(&app, &key, &Value::Array(batch)).await;
        assert_eq!(status, 200);
        assert_eq!(body.as_array().unwrap().len(), 10);
        let (status, _, body) = post(&app, &key, &json!([{ "query": VIEWER }, { "variables": {} }])).await;
        assert_eq!(status, 400);
        insta::assert_json_snapshot!("batch_request_without_query", body);
    }
}

#[tokio::test]
async fn every_request_of_a_batch_counts_toward_the_rate_and_the_limits_of_one_request() {
    let limits = Limits {
        requests_per_minute: 5,
        max_mutations: 2,
        ..Limits::default()
    };
    let app = TestApp::with_limits(Backend::Sqlite, limits).await.unwrap();
    let key = app.key(Role::Admin).await;
    // Three mutations, one each: within the limit alone, over it together, so none runs.
    // The rate counted all three.
    let mutation = "mutation { addTag(input: {customerId: \"cus_0192f0c5a0a07a1c8e9b6a3f2d1c0b9a\", name: \"x\"}) { customer { id } } }";
    let batch: Vec<Value> = (0..3).map(|_| json!({ "query": mutation })).collect();
    let (status, _, body) = post(&app, &key, &Value::Array(batch)).await;
    assert_eq!(status, 400, "{body:#}");
    insta::assert_json_snapshot!("batch_over_the_mutation_limit", body);
    // Two tokens left: a batch of three is refused.
    let batch: Vec<Value> = (0..3).map(|_| json!({ "query": VIEWER })).collect();
    let (status, _, body) = post(&app, &key, &Value::Array(batch)).await;
    assert_eq!(status, 429, "{body:#}");
    assert_eq!(body["errors"][0]["extensions"]["code"], "RATE_LIMITED");
}

backend_test! {
    async fn graphql_answers_are_never_stored_by_caches(app: TestApp) {
        let key = app.key(Role::Admin).await;
        let (status, cache, _) = get(&app, &key, &[("query", VIEWER.to_owned())]).await;
        assert_eq!((status, cache.as_str()), (200, "private, no-store"));
        let (status, cache, _) = get(&app, &key, &[("query", "mutation { deleteCustomer(id: \"cus_0192f0c5a0a07a1c8e9b6a3f2d1c0b9a\") { deletedId } }".to_owned())]).await;
        assert_eq!((status, cache.as_str()), (405, "private, no-store"));
        let (status, cache, _) = get(&app, "rpk_not_a_real_key", &[("query", VIEWER.to_owned())]).await;
        assert_eq!((status, cache.as_str()), (401, "private, no-store"));
        let (status, cache, _) = post(&app, &key, &json!({ "query": VIEWER })).await;
        assert_eq!((status, cache.as_str()), (200, "no-store"));
        let (status, cache, _) = post(&app, &key, &json!({ "query": "{ viewer { " })).await;
        assert_eq!((status, cache.as_str()), (200, "no-store"));
        let (status, cache, _) = post(&app, &key, &json!({ "variables": {} })).await;
        assert_eq!((status, cache.as_str()), (400, "no-store"));
        let (status, cache, _) = post(&app, "rpk_not_a_real_key", &json!({ "query": VIEWER })).await;
        assert_eq!((status, cache.as_str()), (401, "no-store"));
    }
}

#[tokio::test]
async fn the_answer_bound_holds_for_a_batch_together() {
    let limits = Limits {
        max_values: 12,
        ..Limits::default()
    };
    let app = TestApp::with_limits(Backend::Sqlite, limits).await.unwrap();
    let key = app.key(Role::Admin).await;
    // Five values each (viewer, role, workspace, id, name): one alone is well within 12,
    // three together are not.
    let query = "{ viewer { role workspace { id name } } }";
    let (status, _, alone) = post(&app, &key, &json!({ "query": query })).await;
    assert_eq!(status, 200);
    assert!(alone.get("errors").is_none(), "{alone:#}");
    let batch: Vec<Value> = (0..3).map(|_| json!({ "query": query })).collect();
    let (status, _, body) = post(&app, &key, &Value::Array(batch)).await;
    assert_eq!(status, 200, "{body:#}");
    let answers = body.as_array().unwrap();
    assert!(answers[0].get("errors").is_none(), "{body:#}");
    assert!(answers[1].get("errors").is_none(), "{body:#}");
    let error = &answers[2]["errors"][0];
    assert_eq!(error["extensions"]["code"], "BAD_USER_INPUT", "{body:#}");
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .contains("more than 12 values"),
        "{body:#}"
    );
}

#[tokio::test]
async fn a_mutation_keeps_its_answer_and_a_batch_past_the_bound_runs_nothing_more() {
    let limits = Limits {
        max_values: 12,
        ..Limits::default()
    };
    let app = TestApp::with_limits(Backend::Sqlite, limits).await.unwrap();
    let key = app.key(Role::Admin).await;
    // A mutation's answer over the bound is given: its write is done, and a refusal
    // would have the client send it again.
    let create = r#"mutation { createCustomer(input: { displayName: "Ada", givenName: "Ada", familyName: "Lovelace" }) {
        customer { id displayName givenName familyName lifecycleStage externalId birthDate createdAt updatedAt firstSeenAt lastSeenAt }
    } }"#;
    let (status, _, created) = post(&app, &key, &json!({ "query": create })).await;
    assert_eq!(status, 200);
    assert!(created.get("errors").is_none(), "{created:#}");
    assert_eq!(
        created["data"]["createCustomer"]["customer"]["familyName"],
        "Lovelace"
    );
    // In a batch, once the answers hold all they may, the requests after run nothing.
    let query = "{ viewer { role workspace { id name } } }";
    let note = "mutation { createCustomer(input: { displayName: \"Never\" }) { customer { id } } }";
    let mut batch: Vec<Value> = (0..3).map(|_| json!({ "query": query })).collect();
    batch.push(json!({ "query": note }));
    let (status, _, body) = post(&app, &key, &Value::Array(batch)).await;
    assert_eq!(status, 200, "{body:#}");
    let answers = body.as_array().unwrap();
    assert_eq!(
        answers[2]["errors"][0]["extensions"]["code"], "BAD_USER_INPUT",
        "{body:#}"
    );
    assert_eq!(
        answers[3]["errors"][0]["extensions"]["code"], "BAD_USER_INPUT",
        "{body:#}"
    );
    let (_, _, found) = post(
        &app,
        &key,
        &json!({ "query": "{ customers(first: 10) { totalCount } }" }),
    )
    .await;
    assert_eq!(
        found["data"]["customers"]["totalCount"], 1,
        "the mutation after the bound did not run: {found:#}"
    );
}
