//! The command line contracts scripts rely on: `keys create` prints the key alone,
//! `schema` prints the SDL, bad arguments name themselves, `demo` seeds realistic data.

use std::process::Command;

use serde_json::json;

/// Runs the `rapport` binary on the SQLite database of `data_dir`, nothing from the
/// environment leaking in.
pub(crate) fn rapport(data_dir: &std::path::Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_rapport"))
        .args(args)
        .arg("--data-dir")
        .arg(data_dir)
        .env_remove("RAPPORT_DATABASE_URL")
        .env_remove("RAPPORT_MEILI_URL")
        .env_remove("RAPPORT_CONFIG")
        .env_remove("RAPPORT_OUTBOUND_ALLOW")
        .env_remove("RAPPORT_CORS_ALLOW_HEADERS")
        .env("RUST_LOG", "warn")
        .output()
        .expect("the rapport binary runs")
}

/// The one line a command that succeeded printed on stdout (a key, an id): scripts
/// capture it whole.
pub(crate) fn printed_alone(output: std::process::Output, what: &str) -> String {
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8(output.stdout).unwrap();
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(
        lines.len(),
        1,
        "stdout must hold the {what} alone: {stdout:?}"
    );
    lines[0].to_owned()
}

/// Serves the SQLite database of `data_dir` on a loopback port, as `rapport serve` would.
pub(crate) async fn serve_data_dir(data_dir: &std::path::Path) -> std::net::SocketAddr {
    let config = rapport::Config {
        data_dir: data_dir.to_owned(),
        ..rapport::Config::default()
    };
    let app = rapport::App::start(config).await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(rapport::http::serve(app, listener, std::future::pending()));
    addr
}

#[tokio::test]
async fn keys_create_prints_the_key_alone_and_it_works_in_its_workspace() {
    let dir = tempfile::tempdir().unwrap();
    let output = rapport(
        dir.path(),
        &[
            "keys",
            "create",
            "--role",
            "viewer",
            "--workspace",
            "initech",
        ],
    );
    let key = printed_alone(output, "key");
    let key = key.as_str();
    assert!(key.starts_with("rpk_") && key.len() > 40, "{key}");
    // Without --workspace the key is for `default`.
    let output = rapport(dir.path(), &["keys", "create", "--role", "admin"]);
    let default_key = String::from_utf8(output.stdout).unwrap().trim().to_owned();
    // Serve the same data directory and use both keys.
    let addr = serve_data_dir(dir.path()).await;
    let client = reqwest::Client::new();
    for (key, slug, role) in [
        (key, "initech", "VIEWER"),
        (default_key.as_str(), "default", "ADMIN"),
    ] {
        let body: serde_json::Value = client
            .post(format!("http://{addr}/graphql"))
            .bearer_auth(key)
            .json(&json!({ "query": "{ viewer { role workspace { slug } } }" }))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(
            body["data"]["viewer"],
            json!({ "role": role, "workspace": { "slug": slug } })
        );
    }
    // The key list shows the keys but never their secrets.
    let output = rapport(dir.path(), &["keys", "list", "--workspace", "initech"]);
    let listing = String::from_utf8(output.stdout).unwrap();
    assert!(
        listing.contains("viewer") && !listing.contains(key),
        "{listing}"
    );
}

#[test]
fn bad_arguments_are_named_in_the_error() {
    let dir = tempfile::tempdir().unwrap();
    let output = rapport(dir.path(), &["keys", "create", "--role", "god"]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("--role") && stderr.contains("`god` is not a role"),
        "{stderr}"
    );
    let output = rapport(
        dir.path(),
        &[
            "keys",
            "create",
            "--role",
            "viewer",
            "--workspace",
            "Not A Slug",
        ],
    );
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("`Not A Slug` is not a valid workspace slug"),
        "{stderr}"
    );
}

#[test]
fn schema_prints_the_committed_sdl() {
    let dir = tempfile::tempdir().unwrap();
    let output = rapport(dir.path(), &["schema"]);
    assert!(output.status.success());
    let committed =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/schema.graphql")).unwrap();
    assert_eq!(String::from_utf8(output.stdout).unwrap(), committed);
}

#[tokio::test]
async fn demo_seeds_a_realistic_workspace_once() {
    let dir = tempfile::tempdir().unwrap();
    let output = rapport(dir.path(), &["demo"]);
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(output.status.success(), "{stderr}");
    let key = String::from_utf8(output.stdout).unwrap().trim().to_owned();
    assert_eq!(key.lines().count(), 1, "stdout holds the key alone");
    let secret = stderr
        .split_whitespace()
        .find(|word| word.starts_with("whsec_"))
        .expect("the demo webhook secret is printed")
        .to_owned();
    let webhook_path = stderr
        .split_whitespace()
        .find(|word| word.contains("/webhooks/src_"))
        .unwrap()
        .to_owned();
    let webhook_path = webhook_path[webhook_path.find("/webhooks/").unwrap()..].to_owned();
    let addr = serve_data_dir(dir.path()).await;
    let query = "{ customers(filter: {channel: MASTODON}) { totalCount } all: customers { totalCount } interactions { totalCount }
        organizations { totalCount }
        open: interactions(filter: {direction: OUTBOUND}) { totalCount }
        customers100: customers(first: 100) { edges { node { identities { channel } conversations { status } deals { stage } notes { body } timeline(first: 20) { edges { node { language occurredAt } } } } } } }";
    let body: serde_json::Value = reqwest::Client::new()
        .post(format!("http://{addr}/graphql"))
        .bearer_auth(&key)
        .json(&json!({ "query": query }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(body.get("errors").is_none(), "{body:#}");
    let data = &body["data"];
    assert!(
        data["all"]["totalCount"].as_u64().unwrap() >= 200,
        "{body:#}"
    );
    assert!(data["interactions"]["totalCount"].as_u64().unwrap() >= 2_000);
    assert!(data["organizations"]["totalCount"].as_u64().unwrap() >= 10);
    assert!(data["customers"]["totalCount"].as_u64().unwrap() > 0);
    assert!(data["open"]["totalCount"].as_u64().unwrap() > 0);
    let nodes: Vec<&serde_json::Value> = data["customers100"]["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| &e["node"])
        .collect();
    let mut statuses = std::collections::BTreeSet::new();
    let mut languages = std::collections::BTreeSet::new();
    let mut months = std::collections::BTreeSet::new();
    for node in &nodes {
        assert!(
            node["identities"].as_array().unwrap().len() >= 2,
            "several identities per customer"
        );
        for c in node["conversations"].as_array().unwrap() {
            statuses.insert(c["status"].as_str().unwrap().to_owned());
        }
        for e in node["timeline"]["edges"].as_array().unwrap() {
            languages.insert(e["node"]["language"].as_str().unwrap().to_owned());
            months.insert(e["node"]["occurredAt"].as_str().unwrap()[..7].to_owned());
        }
    }
    assert_eq!(
        statuses.len(),
        3,
        "conversations in every status: {statuses:?}"
    );
    assert!(languages.len() >= 4, "several languages: {languages:?}");
    assert!(months.len() >= 4, "spread over months: {months:?}");
    assert!(nodes
        .iter()
        .any(|n| !n["deals"].as_array().unwrap().is_empty()));
    assert!(nodes
        .iter()
        .any(|n| !n["notes"].as_array().unwrap().is_empty()));
    // The demo webhook source accepts a delivery signed with the printed secret.
    let body = r#"{"name": "Demo visitor", "email": "visitor@example.com", "text": "Hello from the demo form"}"#;
    let timestamp = chrono::Utc::now().timestamp().to_string();
    let signature = connectors::webhook::Secret::parse(&secret)
        .unwrap()
        .sign_standard("demo-1", &timestamp, body.as_bytes())
        .unwrap();
    let response = reqwest::Client::new()
        .post(format!("http://{addr}{webhook_path}"))
        .header("webhook-id", "demo-1")
        .header("webhook-timestamp", timestamp)
        .header("webhook-signature", signature)
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    // A second run seeds nothing more.
    let output = rapport(dir.path(), &["demo"]);
    assert!(String::from_utf8_lossy(&output.stderr).contains("nothing seeded"));
}

#[test]
fn sources_add_prints_the_id_alone_and_list_shows_no_secret() {
    let dir = tempfile::tempdir().unwrap();
    let config = r#"{"secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"}"#;
    let output = rapport(
        dir.path(),
        &[
            "sources",
            "add",
            "--channel",
            "webhook",
            "--name",
            "Form",
            "--config",
            config,
        ],
    );
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8(output.stdout).unwrap();
    assert_eq!(stdout.lines().count(), 1);
    assert!(stdout.starts_with("src_"), "{stdout}");
    let listing = String::from_utf8(rapport(dir.path(), &["sources", "list"]).stdout).unwrap();
    assert!(
        listing.contains("webhook\tForm\tok\t0") && !listing.contains("MfKQ9r8"),
        "{listing}"
    );
    let output = rapport(
        dir.path(),
        &[
            "sources",
            "add",
            "--channel",
            "webhook",
            "--name",
            "Bad",
            "--config",
            "{}",
        ],
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !output.status.success()
            && stderr.contains("--config")
            && stderr.contains("signing secret"),
        "{stderr}"
    );
    let output = rapport(
        dir.path(),
        &[
            "sources",
            "add",
            "--channel",
            "myspace",
            "--name",
            "X",
            "--config",
            "{}",
        ],
    );
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("--channel: `myspace` is not a channel")
    );
    let output = rapport(
        dir.path(),
        &[
            "sources",
            "add",
            "--channel",
            "webhook",
            "--name",
            "X",
            "--config",
            "{nope",
        ],
    );
    assert!(String::from_utf8_lossy(&output.stderr).contains("--config: not valid JSON"));
    let id = stdout.trim();
    assert!(rapport(dir.path(), &["sources", "remove", id])
        .status
        .success());
    assert_eq!(
        String::from_utf8(rapport(dir.path(), &["sources", "list"]).stdout).unwrap(),
        ""
    );
}

#[tokio::test]
async fn reindex_rebuilds_the_search_indexes_and_reports_counts() {
    let dir = tempfile::tempdir().unwrap();
    assert!(rapport(dir.path(), &["demo"]).status.success());
    let output = rapport(dir.path(), &["reindex"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(stderr.contains("reindexed on embedded"), "{stderr}");
    let interactions: u64 = stderr
        .lines()
        .find_map(|line| {
            line.strip_prefix("interactions: ")?
                .split(' ')
                .next()?
                .parse()
                .ok()
        })
        .unwrap_or_else(|| panic!("{stderr}"));
    assert!(interactions >= 2_000, "{stderr}");
    let output = rapport(dir.path(), &["reindex", "--index", "contacts"]);
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("--index: `contacts` is not an index"));
    // The rebuilt index answers through the API.
    let key =
        String::from_utf8(rapport(dir.path(), &["keys", "create", "--role", "viewer"]).stdout)
            .unwrap();
    let addr = serve_data_dir(dir.path()).await;
    let body: serde_json::Value = reqwest::Client::new()
        .post(format!("http://{addr}/graphql"))
        .bearer_auth(key.trim())
        .json(&json!({ "query": "{ search(query: \"\") { estimatedTotal } }" }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        body["data"]["search"]["estimatedTotal"].as_u64(),
        Some(interactions),
        "{body}"
    );
}

#[test]
fn an_invalid_outbound_allow_entry_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let output = rapport(
        dir.path(),
        &[
            "migrate",
            "--outbound-allow",
            "127.0.0.1:8080,http://intranet",
        ],
    );
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("`http://intranet`"), "{stderr}");
    let output = Command::new(env!("CARGO_BIN_EXE_rapport"))
        .args(["migrate", "--data-dir"])
        .arg(dir.path())
        .env_remove("RAPPORT_DATABASE_URL")
        .env_remove("RAPPORT_CONFIG")
        .env("RAPPORT_OUTBOUND_ALLOW", "10.0.0.0/8, 10.0.0.0/40")
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("`10.0.0.0/40`"), "{stderr}");
    let output = rapport(
        dir.path(),
        &[
            "migrate",
            "--outbound-allow",
            "10.0.0.0/8,[::1]:8080,intranet.example",
        ],
    );
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[tokio::test]
async fn serve_demo_syncs_its_own_feed_and_reaches_nothing_else() {
    use std::io::BufRead;
    use std::process::Stdio;
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_rapport"))
        .args(["serve", "--demo", "--addr", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path())
        .env_remove("RAPPORT_DATABASE_URL")
        .env_remove("RAPPORT_MEILI_URL")
        .env_remove("RAPPORT_CONFIG")
        .env_remove("RAPPORT_OUTBOUND_ALLOW")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = std::io::BufReader::new(child.stderr.take().unwrap());
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in stderr.lines().map_while(Result::ok) {
            if let Some(rest) = line.trim().strip_prefix("GraphiQL: ") {
                let _ = tx.send(rest.trim_end_matches("/graphql").to_owned());
            }
        }
    });
    /// Stops the server however the test ends.
    struct Stop(std::process::Child);
    impl Drop for Stop {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let stdout = child.stdout.take().unwrap();
    let _stop = Stop(child);
    let mut key = String::new();
    std::io::BufReader::new(stdout).read_line(&mut key).unwrap();
    let base = rx
        .recv_timeout(std::time::Duration::from_secs(60))
        .expect("serve --demo prints its address");
    let key = key.trim().to_owned();
    let client = reqwest::Client::new();
    let gql = |query: &'static str, variables: serde_json::Value| {
        let request = client
            .post(format!("{base}/graphql"))
            .bearer_auth(&key)
            .json(&json!({ "query": query, "variables": variables }));
        async move {
            request
                .send()
                .await
                .unwrap()
                .json::<serde_json::Value>()
                .await
                .unwrap()
        }
    };
    // The scheduler syncs the demo feed (due at once) from this very server.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let feed = loop {
        let data = gql("{ sources { id name lastError itemsIngested } }", json!({})).await;
        let feed = data["data"]["sources"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["name"] == "Demo community feed")
            .cloned()
            .unwrap();
        if feed["itemsIngested"].as_u64().unwrap_or(0) > 0 || !feed["lastError"].is_null() {
            break feed;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the demo feed never synced: {feed}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    };
    assert!(feed["lastError"].is_null(), "{feed}");
    // Another port on the same machine stays refused.
    let other = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/feed.xml", other.local_addr().unwrap());
    let created = gql(
        "mutation($input: CreateSourceInput!) { createSource(input: $input) { source { id } } }",
        json!({ "input": { "channel": "RSS", "name": "elsewhere", "config": { "url": url } } }),
    )
    .await;
    let id = created["data"]["createSource"]["source"]["id"].clone();
    let synced = gql(
        "mutation($id: ID!) { syncSource(input: { id: $id }) { error } }",
        json!({ "id": id }),
    )
    .await;
    let error = synced["data"]["syncSource"]["error"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(
        error.starts_with("refused: not a public address"),
        "{synced}"
    );
}
