//! Trusted documents: an admin registers a workspace's operations ahead of time (the
//! API or `rapport documents register` at deploy), and a key created
//! trusted-documents-only runs those and nothing else, by hash or by exact text, over
//! `/graphql` and `/graphql/ws`. Other keys are unaffected.

use rapport::domain::{self, Role};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::backend_test;
use crate::cli::{printed_alone, rapport, serve_data_dir};
use crate::common::TestApp;
use crate::live::Client;

const VIEWER: &str = "query Viewer { viewer { role trustedDocumentsOnly } }";
const OTHER: &str = "query Other { viewer { keyName } }";
const REGISTER: &str = "mutation($input: RegisterTrustedDocumentsInput!) { registerTrustedDocuments(input: $input) { documents { hash name query } } }";

fn sha256(query: &str) -> String {
    hex::encode(Sha256::digest(query.as_bytes()))
}

fn by_hash(hash: &str) -> Value {
    json!({ "extensions": { "persistedQuery": { "version": 1, "sha256Hash": hash } } })
}

/// A trusted-documents-only key with `role` in the workspace `slug`.
async fn trusted_key(app: &TestApp, slug: &str, role: Role) -> String {
    let workspace = domain::workspace::ensure(&app.app.db, slug).await.unwrap();
    domain::workspace::create_key_with(&app.app.db, workspace.id, role, "app", None, true)
        .await
        .unwrap()
        .1
}

/// POSTs `body` with `key`: the status and the JSON answer.
async fn post(app: &TestApp, key: &str, body: &Value) -> (u16, Value) {
    let response = app
        .client
        .post(app.url("/graphql"))
        .bearer_auth(key)
        .json(body)
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.json().await.unwrap())
}

/// Registers `queries` with the admin `key`; the hashes answered.
async fn register(app: &TestApp, key: &str, queries: &[&str]) -> Vec<String> {
    let documents: Vec<Value> = queries
        .iter()
        .map(|query| json!({ "query": query }))
        .collect();
    let data = app
        .gql(
            key,
            REGISTER,
            json!({ "input": { "documents": documents } }),
        )
        .await;
    data["registerTrustedDocuments"]["documents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|document| document["hash"].as_str().unwrap().to_owned())
        .collect()
}

fn assert_refused(status: u16, body: &Value) {
    assert_eq!(status, 403, "{body:#}");
    assert_eq!(
        body["errors"][0]["extensions"]["code"], "FORBIDDEN",
        "{body:#}"
    );
    assert!(
        body["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("trusted documents"),
        "{body:#}"
    );
    assert!(body.get("data").is_none_or(Value::is_null), "{body:#}");
}

backend_test! {
    async fn a_trusted_only_key_runs_registered_documents_by_hash_or_text_and_nothing_else(app: TestApp) {
        let admin = app.key(Role::Admin).await;
        let hashes = register(&app, &admin, &[VIEWER]).await;
        assert_eq!(hashes, [sha256(VIEWER)]);
        // Registering the same text again is harmless and answers the same hash.
        assert_eq!(register(&app, &admin, &[VIEWER, VIEWER]).await, [sha256(VIEWER), sha256(VIEWER)]);
        let listed = app.gql(&admin, "{ trustedDocuments { hash query } }", json!({})).await;
        assert_eq!(listed["trustedDocuments"], json!([{ "hash": sha256(VIEWER), "query": VIEWER }]));

        let key = trusted_key(&app, "acme", Role::Viewer).await;
        let ran = json!({ "data": { "viewer": { "role": "VIEWER", "trustedDocumentsOnly": true } } });
        // By hash alone, as Apollo's persisted-query link sends it with a manifest.
        let (status, body) = post(&app, &key, &by_hash(&sha256(VIEWER))).await;
        assert_eq!((status, &body), (200, &ran));
        // Over GET too.
        let response = app.client.get(app.url("/graphql"))
            .query(&[("extensions", by_hash(&sha256(VIEWER))["extensions"].to_string())])
            .bearer_auth(&key).send().await.unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(response.json::<Value>().await.unwrap(), ran);
        // By its exact text, with or without the hash.
        let (status, body) = post(&app, &key, &json!({ "query": VIEWER })).await;
        assert_eq!((status, &body), (200, &ran));
        let mut both = by_hash(&sha256(VIEWER));
        both["query"] = json!(VIEWER);
        assert_eq!(post(&app, &key, &both).await, (200, ran.clone()));

        // Anything else is refused: another text, the same text changed by a space, an
        // unknown hash; and sending the text with its hash does not register it.
        let (status, body) = post(&app, &key, &json!({ "query": OTHER })).await;
        assert_refused(status, &body);
        let (status, body) = post(&app, &key, &json!({ "query": format!("{VIEWER} ") })).await;
        assert_refused(status, &body);
        let mut other = by_hash(&sha256(OTHER));
        other["query"] = json!(OTHER);
        let (status, body) = post(&app, &key, &other).await;
        assert_refused(status, &body);
        let (status, body) = post(&app, &key, &by_hash(&sha256(OTHER))).await;
        assert_refused(status, &body);
        // A normal key's automatic persisted query is no way in either.
        let normal = app.key(Role::Viewer).await;
        assert_eq!(post(&app, &normal, &other).await.0, 200);
        let (status, body) = post(&app, &key, &by_hash(&sha256(OTHER))).await;
        assert_refused(status, &body);

        // In a batch each request is checked on its own.
        let batch = json!([{ "query": VIEWER }, { "query": OTHER }, by_hash(&sha256(VIEWER))]);
        let (status, body) = post(&app, &key, &batch).await;
        assert_eq!(status, 200);
        assert_eq!(body[0], ran);
        assert_eq!(body[1]["errors"][0]["extensions"]["code"], "FORBIDDEN", "{body:#}");
        assert_eq!(body[2], ran);

        // Removed, it no longer runs.
        let removed = app.gql(&admin, "mutation($hash: String!) { removeTrustedDocument(input: {hash: $hash}) { hash } }", json!({ "hash": sha256(VIEWER) })).await;
        assert_eq!(removed["removeTrustedDocument"]["hash"], sha256(VIEWER));
        let (status, body) = post(&app, &key, &json!({ "query": VIEWER })).await;
        assert_refused(status, &body);
        let (code, _) = app.gql_error(&admin, "mutation($hash: String!) { removeTrustedDocument(input: {hash: $hash}) { hash } }", json!({ "hash": sha256(VIEWER) })).await;
        assert_eq!(code, "NOT_FOUND");
    }
}

backend_test! {
    async fn keys_without_the_flag_run_anything_as_before(app: TestApp) {
        let admin = app.key(Role::Admin).await;
        register(&app, &admin, &[VIEWER]).await;
        let key = app.key(Role::Viewer).await;
        let data = app.gql(&key, OTHER, json!({})).await;
        assert_eq!(data["viewer"]["keyName"], "viewer-key");
        let data = app.gql(&key, VIEWER, json!({})).await;
        assert_eq!(data["viewer"]["trustedDocumentsOnly"], false);
        // Their automatic persisted queries work as before: a miss, then registered.
        let (_, body) = post(&app, &key, &by_hash(&sha256(OTHER))).await;
        assert_eq!(body["errors"][0]["extensions"]["code"], "PERSISTED_QUERY_NOT_FOUND");
    }
}

backend_test! {
    async fn a_document_registered_in_one_workspace_is_not_trusted_in_another(app: TestApp) {
        let acme_admin = app.key_in("acme", Role::Admin).await;
        register(&app, &acme_admin, &[VIEWER]).await;
        let globex = trusted_key(&app, "globex", Role::Viewer).await;
        let (status, body) = post(&app, &globex, &by_hash(&sha256(VIEWER))).await;
        assert_refused(status, &body);
        let (status, body) = post(&app, &globex, &json!({ "query": VIEWER })).await;
        assert_refused(status, &body);
        // globex's admin sees none of acme's documents, and cannot remove them.
        let globex_admin = app.key_in("globex", Role::Admin).await;
        let listed = app.gql(&globex_admin, "{ trustedDocuments { hash } }", json!({})).await;
        assert_eq!(listed["trustedDocuments"], json!([]));
        let (code, _) = app.gql_error(&globex_admin, "mutation($hash: String!) { removeTrustedDocument(input: {hash: $hash}) { hash } }", json!({ "hash": sha256(VIEWER) })).await;
        assert_eq!(code, "NOT_FOUND");
        // Registered in globex too, it runs there.
        register(&app, &globex_admin, &[VIEWER]).await;
        assert_eq!(post(&app, &globex, &by_hash(&sha256(VIEWER))).await.0, 200);
    }
}

backend_test! {
    async fn only_an_admin_registers_lists_or_removes_documents(app: TestApp) {
        for role in [Role::Viewer, Role::Agent] {
            let key = app.key(role).await;
            let (code, _) = app.gql_error(&key, REGISTER, json!({ "input": { "documents": [{ "query": VIEWER }] } })).await;
            assert_eq!(code, "FORBIDDEN");
            let (code, _) = app.gql_error(&key, "{ trustedDocuments { hash } }", json!({})).await;
            assert_eq!(code, "FORBIDDEN");
            let (code, _) = app.gql_error(&key, "mutation { removeTrustedDocument(input: {hash: \"00\"}) { hash } }", json!({})).await;
            assert_eq!(code, "FORBIDDEN");
        }
        // A trusted-only admin key cannot register its way out either: the mutation is
        // itself a document it may not run.
        let key = trusted_key(&app, "acme", Role::Admin).await;
        let (status, body) = post(&app, &key, &json!({ "query": REGISTER, "variables": { "input": { "documents": [{ "query": OTHER }] } } })).await;
        assert_refused(status, &body);
        let admin = app.key(Role::Admin).await;
        let listed = app.gql(&admin, "{ trustedDocuments { hash } }", json!({})).await;
        assert_eq!(listed["trustedDocuments"], json!([]));
        // Nor were the registering and removing mutations registered themselves (an admin
        // console's): such a key never changes the list it is held to.
        const REMOVE: &str = "mutation($hash: String!) { removeTrustedDocument(input: {hash: $hash}) { hash } }";
        register(&app, &admin, &[REGISTER, REMOVE]).await;
        let (status, body) = post(&app, &key, &json!({ "query": REGISTER, "variables": { "input": { "documents": [{ "query": OTHER }] } } })).await;
        assert_eq!(status, 200, "{body:#}");
        assert_eq!(body["errors"][0]["extensions"]["code"], "FORBIDDEN", "{body:#}");
        assert!(body["errors"][0]["message"].as_str().unwrap().contains("cannot register"), "{body:#}");
        let (_, body) = post(&app, &key, &json!({ "query": REMOVE, "variables": { "hash": sha256(REGISTER) } })).await;
        assert_eq!(body["errors"][0]["extensions"]["code"], "FORBIDDEN", "{body:#}");
        let listed = app.gql(&admin, "{ trustedDocuments { hash } }", json!({})).await;
        assert_eq!(listed["trustedDocuments"].as_array().unwrap().len(), 2, "{listed}");
    }
}

backend_test! {
    async fn an_invalid_document_is_refused_naming_its_index_and_none_is_registered(app: TestApp) {
        let admin = app.key(Role::Admin).await;
        let input = json!({ "input": { "documents": [{ "query": VIEWER }, { "query": "{ viewer { " }] } });
        let (code, body) = app.gql_error(&admin, REGISTER, input).await;
        assert_eq!(code, "BAD_USER_INPUT");
        assert_eq!(body["errors"][0]["extensions"]["field"], "documents[1].query", "{body:#}");
        assert!(body["errors"][0]["message"].as_str().unwrap().contains("document 1"), "{body:#}");
        let input = json!({ "input": { "documents": [{ "query": "fragment F on Viewer { role }" }] } });
        let (code, body) = app.gql_error(&admin, REGISTER, input).await;
        assert_eq!((code.as_str(), &body["errors"][0]["extensions"]["field"]), ("BAD_USER_INPUT", &json!("documents[0].query")));
        let too_many: Vec<Value> = (0..=domain::trusted_document::MAX_DOCUMENTS).map(|i| json!({ "query": format!("{{ q{i}: viewer {{ role }} }}") })).collect();
        let (code, _) = app.gql_error(&admin, REGISTER, json!({ "input": { "documents": too_many } })).await;
        assert_eq!(code, "BAD_USER_INPUT");
        let listed = app.gql(&admin, "{ trustedDocuments { hash } }", json!({})).await;
        assert_eq!(listed["trustedDocuments"], json!([]));
        // What is not a hash never reaches the database (PostgreSQL refuses a NUL in text;
        // the fuzzer found it as an internal error).
        let (code, body) = app.gql_error(&admin, "query($after: String) { trustedDocuments(after: $after) { hash } }", json!({ "after": "\u{0}".repeat(80) })).await;
        assert_eq!((code.as_str(), &body["errors"][0]["extensions"]["field"]), ("BAD_USER_INPUT", &json!("after")), "{body:#}");
        let (code, body) = app.gql_error(&admin, "mutation { removeTrustedDocument(input: {hash: \"zz\"}) { hash } }", json!({})).await;
        assert_eq!((code.as_str(), &body["errors"][0]["extensions"]["field"]), ("BAD_USER_INPUT", &json!("input.hash")), "{body:#}");
    }
}

backend_test! {
    async fn subscriptions_of_a_trusted_only_key_are_checked_too(app: TestApp) {
        const COUNTS: &str = "subscription { inboxCountsChanged { counts { total } } }";
        let admin = app.key(Role::Admin).await;
        register(&app, &admin, &[COUNTS]).await;
        let key = trusted_key(&app, "acme", Role::Viewer).await;
        let mut client = Client::open(&app, &key).await;
        client.subscribe("ok", COUNTS, json!({})).await;
        assert_eq!(client.data("ok").await["inboxCountsChanged"]["counts"]["total"], 0);
        let other = "subscription { inboxCountsChanged { counts { open } } }";
        client.subscribe("no", other, json!({})).await;
        let message = client.next().await;
        assert_eq!(message["id"], "no", "{message}");
        assert_eq!(message["payload"]["errors"][0]["extensions"]["code"], "FORBIDDEN", "{message}");
    }
}

#[tokio::test]
async fn the_cli_registers_files_for_a_trusted_only_key_made_by_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("Viewer.graphql");
    std::fs::write(&file, VIEWER).unwrap();
    let manifest = dir.path().join("manifest.json");
    let manifest_body = json!({ "format": "apollo-persisted-query-manifest", "version": 1, "operations": [
        { "id": sha256(OTHER), "name": "Other", "type": "query", "body": OTHER },
    ] });
    std::fs::write(&manifest, manifest_body.to_string()).unwrap();
    let output = rapport(
        dir.path(),
        &[
            "documents",
            "register",
            "--workspace",
            "initech",
            file.to_str().unwrap(),
            manifest.to_str().unwrap(),
        ],
    );
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8(output.stdout).unwrap();
    assert_eq!(
        stdout,
        format!("{}\tViewer\n{}\tOther\n", sha256(VIEWER), sha256(OTHER))
    );
    // A file that does not parse is named, and nothing of the call is registered.
    let bad = dir.path().join("bad.graphql");
    std::fs::write(&bad, "{ viewer { ").unwrap();
    let third = dir.path().join("Third.graphql");
    std::fs::write(&third, "{ me { name } }").unwrap();
    let output = rapport(
        dir.path(),
        &[
            "documents",
            "register",
            "--workspace",
            "initech",
            third.to_str().unwrap(),
            bad.to_str().unwrap(),
        ],
    );
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("bad.graphql") && stderr.contains("is not a GraphQL document"),
        "{stderr}"
    );
    // So is a name too long, though it lies past the first call's hundred documents.
    let operations: Vec<Value> = (0..=domain::trusted_document::MAX_DOCUMENTS)
        .map(|i| {
            let body = format!("query Q{i} {{ viewer {{ role }} }}");
            let name = if i == domain::trusted_document::MAX_DOCUMENTS {
                "n".repeat(300)
            } else {
                format!("Q{i}")
            };
            json!({ "id": sha256(&body), "name": name, "type": "query", "body": body })
        })
        .collect();
    let long = dir.path().join("long.json");
    std::fs::write(&long, json!({ "format": "apollo-persisted-query-manifest", "version": 1, "operations": operations }).to_string()).unwrap();
    let output = rapport(
        dir.path(),
        &[
            "documents",
            "register",
            "--workspace",
            "initech",
            long.to_str().unwrap(),
        ],
    );
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("long.json") && stderr.contains("200 characters"),
        "{stderr}"
    );
    let output = rapport(dir.path(), &["documents", "list", "--workspace", "initech"]);
    let listing = String::from_utf8(output.stdout).unwrap();
    assert_eq!(listing.lines().count(), 2, "{listing}");

    let key = printed_alone(
        rapport(
            dir.path(),
            &[
                "keys",
                "create",
                "--role",
                "viewer",
                "--workspace",
                "initech",
                "--trusted-documents-only",
            ],
        ),
        "key",
    );
    let output = rapport(dir.path(), &["keys", "list", "--workspace", "initech"]);
    let listing = String::from_utf8(output.stdout).unwrap();
    assert!(listing.contains("trusted-documents-only"), "{listing}");
    let addr = serve_data_dir(dir.path()).await;
    let client = reqwest::Client::new();
    let send = |body: Value| {
        client
            .post(format!("http://{addr}/graphql"))
            .bearer_auth(&key)
            .json(&body)
            .send()
    };
    let response = send(by_hash(&sha256(VIEWER))).await.unwrap();
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(
        body["data"]["viewer"],
        json!({ "role": "VIEWER", "trustedDocumentsOnly": true })
    );
    let response = send(json!({ "query": OTHER })).await.unwrap();
    assert_eq!(response.status(), 200);
    let response = send(json!({ "query": "{ me { name } }" })).await.unwrap();
    assert_eq!(response.status(), 403);
}
