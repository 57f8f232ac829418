//! Ingestion through the webhook channel and the pipeline: signatures over raw bytes,
//! exactly-once storage, author resolution, threading, secrets that never come back.

use connectors::webhook::Secret;
use rapport::domain::Role;
use serde_json::{json, Value};

use crate::backend_test;
use crate::common::TestApp;

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

const CREATE: &str = "mutation($input: CreateSourceInput!) { createSource(input: $input) { source { id channel name config secretsSet status itemsIngested webhookPath } } }";

pub(crate) async fn webhook_source(app: &TestApp, key: &str) -> Value {
    let input = json!({ "channel": "WEBHOOK", "name": "Contact form", "config": { "secret": SECRET, "reply_url": "https://example.com/reply" } });
    app.gql(key, CREATE, json!({ "input": input })).await["createSource"]["source"].clone()
}

/// POSTs `body` signed the Standard Webhooks way with `id` (unless `signature` overrides).
pub(crate) async fn deliver(
    app: &TestApp,
    path: &str,
    id: &str,
    body: &Value,
    signature: Option<&str>,
) -> (u16, Value) {
    let body = body.to_string();
    let timestamp = chrono::Utc::now().timestamp().to_string();
    let signed = Secret::parse(SECRET)
        .unwrap()
        .sign_standard(id, &timestamp, body.as_bytes())
        .unwrap();
    let response = app
        .client
        .post(app.url(path))
        .header("content-type", "application/json")
        .header("webhook-id", id)
        .header("webhook-timestamp", &timestamp)
        .header("webhook-signature", signature.unwrap_or(&signed))
        .body(body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn counts(app: &TestApp, key: &str) -> (u64, u64) {
    let data = app
        .gql(
            key,
            "{ customers { totalCount } interactions { totalCount } }",
            json!({}),
        )
        .await;
    (
        data["customers"]["totalCount"].as_u64().unwrap(),
        data["interactions"]["totalCount"].as_u64().unwrap(),
    )
}

backend_test! {
    async fn a_signed_delivery_lands_once_on_the_right_customer(app: TestApp) {
        let admin = app.key(Role::Admin).await;
        let source = webhook_source(&app, &admin).await;
        assert_eq!(source["config"], json!({ "reply_url": "https://example.com/reply" }), "the secret is not returned");
        assert_eq!(source["secretsSet"], json!(["secret"]));
        assert_eq!(source["status"], "OK");
        let path = source["webhookPath"].as_str().unwrap().to_owned();
        assert!(path.starts_with("/webhooks/src_"));
        // A customer known by e-mail already.
        let known = app.create_customer(&admin, json!({ "displayName": "Ana García", "contactPoints": [{ "kind": "EMAIL", "value": "ana@example.com" }] })).await;

        let body = json!({ "name": "Ana", "email": "ANA@example.com", "text": "  ¿Podéis llamarme?  ", "thread_id": "chat-1", "occurred_at": "2026-11-20T10:00:00Z" });
        let (status, answer) = deliver(&app, &path, "msg_1", &body, None).await;
        assert_eq!(status, 200, "{answer}");
        assert_eq!((answer["accepted"].as_bool(), answer["duplicate"].as_bool()), (Some(true), Some(false)));
        assert!(answer["interactionId"].as_str().unwrap().starts_with("int_"));
        // A replay of the same delivery is acknowledged and stored once.
        let (status, answer) = deliver(&app, &path, "msg_1", &body, None).await;
        assert_eq!((status, answer["duplicate"].as_bool()), (200, Some(true)));
        // A second message in the same thread, from a newcomer with a phone only.
        let newcomer = json!({ "name": "Bo", "phone": "+46 70 123 45 67", "text": "Me too", "thread_id": "chat-2" });
        assert_eq!(deliver(&app, &path, "msg_2", &newcomer, None).await.0, 200);
        let follow_up = json!({ "email": "ana@example.com", "text": "Gracias", "thread_id": "chat-1", "occurred_at": "2026-11-20T10:05:00Z" });
        assert_eq!(deliver(&app, &path, "msg_3", &follow_up, None).await.0, 200);

        let view = app
            .gql(&admin, "query($id: ID!) { customer(id: $id) { identities { channel platformId displayName } timeline { totalCount edges { node { text channel direction kind externalId conversation { id status } } } } conversations { id interactions { totalCount } } } }", json!({ "id": known }))
            .await["customer"].clone();
        assert_eq!(view["identities"], json!([{ "channel": "WEBHOOK", "platformId": "mailto:ana@example.com", "displayName": "Ana" }]));
        assert_eq!(view["timeline"]["totalCount"], 2);
        let newest = &view["timeline"]["edges"][0]["node"];
        assert_eq!((newest["text"].as_str(), newest["channel"].as_str(), newest["direction"].as_str(), newest["kind"].as_str()), (Some("Gracias"), Some("WEBHOOK"), Some("INBOUND"), Some("MESSAGE")));
        assert_eq!(view["timeline"]["edges"][1]["node"]["text"], "¿Podéis llamarme?", "text is trimmed");
        assert_eq!(view["conversations"].as_array().unwrap().len(), 1, "one thread");
        assert_eq!(view["conversations"][0]["interactions"]["totalCount"], 2);
        // The newcomer became a subscriber with their phone.
        let bo = app.gql(&admin, "{ customers(filter: {search: \"+46701234567\"}) { edges { node { displayName lifecycleStage contactPoints { kind normalizedValue } } } } }", json!({})).await;
        assert_eq!(bo["customers"]["edges"][0]["node"], json!({ "displayName": "Bo", "lifecycleStage": "SUBSCRIBER", "contactPoints": [{ "kind": "PHONE", "normalizedValue": "+46701234567" }] }));
        let data = app.gql(&admin, "query($id: ID!) { node(id: $id) { ... on Source { itemsIngested lastRunAt } } }", json!({ "id": source["id"] })).await;
        assert_eq!(data["node"]["itemsIngested"], 3);
        assert_eq!(counts(&app, &admin).await, (2, 3));
    }
}

backend_test! {
    async fn bad_signatures_and_bodies_store_nothing(app: TestApp) {
        let admin = app.key(Role::Admin).await;
        let path = webhook_source(&app, &admin).await["webhookPath"].as_str().unwrap().to_owned();
        let body = json!({ "email": "x@example.com", "text": "hello" });
        let (status, answer) = deliver(&app, &path, "msg_1", &body, Some("v1,AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=")).await;
        assert_eq!(status, 401);
        insta::assert_json_snapshot!("webhook_bad_signature", answer);
        let unsigned = app.client.post(app.url(&path)).body(body.to_string()).send().await.unwrap();
        assert_eq!(unsigned.status(), 401);
        // A signature over other bytes than the ones sent (a re-serialised body) fails too.
        let timestamp = chrono::Utc::now().timestamp().to_string();
        let signed = Secret::parse(SECRET).unwrap().sign_standard("msg_9", &timestamp, b"{\"text\":\"hello\"}").unwrap();
        let response = app.client.post(app.url(&path)).header("webhook-id", "msg_9").header("webhook-timestamp", &timestamp).header("webhook-signature", signed).body("{\"text\": \"hello\"}").send().await.unwrap();
        assert_eq!(response.status(), 401);
        let (status, answer) = deliver(&app, &path, "msg_2", &json!({ "email": "x@example.com" }), None).await;
        assert_eq!(status, 400);
        insta::assert_json_snapshot!("webhook_missing_text", answer);
        let (status, answer) = deliver(&app, &path, "msg_3", &json!({ "text": "x", "occurred_at": "soon" }), None).await;
        assert_eq!((status, answer["errors"][0]["extensions"]["field"].as_str()), (400, Some("occurred_at")));
        assert_eq!(counts(&app, &admin).await, (0, 0));
        // GitHub-style signatures work too.
        let body = json!({ "name": "Hub", "text": "from a GitHub-style sender" }).to_string();
        let signature = Secret::parse(SECRET).unwrap().sign_github(body.as_bytes());
        let response = app.client.post(app.url(&path)).header("x-hub-signature-256", signature).header("x-github-delivery", "gh-1").body(body).send().await.unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(counts(&app, &admin).await, (1, 1));
        // Unknown and paused sources.
        let (status, _) = deliver(&app, "/webhooks/src_0192f0c5a0a07a1c8e9b6a3f2d1c0b9a", "m", &json!({ "text": "x" }), None).await;
        assert_eq!(status, 404);
        let (status, _) = deliver(&app, "/webhooks/nonsense", "m", &json!({ "text": "x" }), None).await;
        assert_eq!(status, 404);
        let id = path.trim_start_matches("/webhooks/");
        app.gql(&admin, "mutation($id: ID!) { pauseSource(input: {id: $id}) { source { status } } }", json!({ "id": id })).await;
        let (status, _) = deliver(&app, &path, "msg_4", &json!({ "text": "while paused" }), None).await;
        assert_eq!(status, 503);
        let data = app.gql(&admin, "mutation($id: ID!) { resumeSource(input: {id: $id}) { source { status } } }", json!({ "id": id })).await;
        assert_eq!(data["resumeSource"]["source"]["status"], "OK");
        assert_eq!(deliver(&app, &path, "msg_4", &json!({ "text": "resumed" }), None).await.0, 200);
    }
}

backend_test! {
    async fn sources_are_admin_only_tenant_scoped_and_never_echo_secrets(app: TestApp) {
        let admin = app.key(Role::Admin).await;
        let agent = app.key(Role::Agent).await;
        let input = json!({ "channel": "WEBHOOK", "name": "Form", "config": { "secret": SECRET } });
        let (code, _) = app.gql_error(&agent, CREATE, json!({ "input": input })).await;
        assert_eq!(code, "FORBIDDEN");
        let source = webhook_source(&app, &admin).await;
        let (code, _) = app.gql_error(&admin, CREATE, json!({ "input": { "channel": "WEBHOOK", "name": "Contact form", "config": { "secret": SECRET } } })).await;
        assert_eq!(code, "CONFLICT", "names are unique per workspace");
        for (config, field) in [(json!({}), "config.secret"), (json!({ "secret": "short" }), "config.secret"), (json!({ "secret": SECRET, "colour": 1 }), "config.colour")] {
            let (code, body) = app.gql_error(&admin, CREATE, json!({ "input": { "channel": "WEBHOOK", "name": "x", "config": config } })).await;
            assert_eq!((code.as_str(), body["errors"][0]["extensions"]["field"].as_str()), ("BAD_USER_INPUT", Some(field)));
        }
        let (code, body) = app.gql_error(&admin, CREATE, json!({ "input": { "channel": "PHONE", "name": "x", "config": {} } })).await;
        assert_eq!(code, "BAD_USER_INPUT");
        insta::assert_json_snapshot!("source_channel_without_connector", body["errors"]);
        // Renaming keeps the secret (a new reply_url needs it given again); another
        // workspace sees nothing.
        let data = app
            .gql(&admin, &format!("mutation($id: ID!) {{ updateSource(input: {{id: $id, name: \"Renamed\", config: {{reply_url: \"https://example.com/r2\", secret: \"{SECRET}\"}}}}) {{ source {{ name config secretsSet }} }} }}"), json!({ "id": source["id"] }))
            .await;
        assert_eq!(data["updateSource"]["source"], json!({ "name": "Renamed", "config": { "reply_url": "https://example.com/r2" }, "secretsSet": ["secret"] }));
        let other = app.key_in("globex", Role::Owner).await;
        let data = app.gql(&other, "query($id: ID!) { sources { id } source(id: $id) { id } node(id: $id) { id } }", json!({ "id": source["id"] })).await;
        assert_eq!(data, json!({ "sources": [], "source": null, "node": null }));
        let (code, _) = app.gql_error(&other, "mutation($id: ID!) { deleteSource(input: {id: $id}) { deletedSourceId } }", json!({ "id": source["id"] })).await;
        assert_eq!(code, "NOT_FOUND");
        // The secret is in no answer and no event.
        let everything = app.gql(&admin, "{ sources { id name config secretsSet status cursor lastError webhookPath } }", json!({})).await;
        assert!(!everything.to_string().contains("MfKQ9r8"), "{everything}");
        use sea_orm::EntityTrait;
        let events = entity::event::Entity::find().all(&app.app.db).await.unwrap();
        assert!(events.iter().any(|event| event.kind == "source.created"));
        assert!(events.iter().all(|event| !event.payload.to_string().contains("MfKQ9r8")), "an event holds the secret");
        let data = app.gql(&admin, "mutation($id: ID!) { deleteSource(input: {id: $id}) { deletedSourceId } }", json!({ "id": source["id"] })).await;
        assert_eq!(data["deleteSource"]["deletedSourceId"], source["id"]);
    }
}

backend_test! {
    async fn a_batch_is_stored_once_with_its_cursor_and_threads_replies(app: TestApp) {
        use chrono::TimeZone;
        use connectors::{Author, InboundItem};
        let admin = app.key(Role::Admin).await;
        let source_id = webhook_source(&app, &admin).await["id"].as_str().unwrap().to_owned();
        let uuid = rapport::ids::decode::<entity::SourceId>("id", &source_id).unwrap();
        let source = || async { rapport::domain::source::for_webhook(&app.app.db, uuid).await.unwrap() };
        let item = |id: &str, who: &str, reply_to: Option<&str>, minute: u32, outbound: bool| InboundItem {
            external_id: id.into(),
            author: Author { platform_id: format!("acct:{who}"), handle: Some(format!("@{who}")), display_name: Some(who.into()), ..Author::default() },
            outbound,
            kind: "mention".into(),
            subject: None,
            text: format!("cafe\u{301} from {who}"),
            html: None,
            url: None,
            language: Some("es".into()),
            occurred_at: chrono::Utc.with_ymd_and_hms(2026, 11, 1, 12, minute, 0).unwrap(),
            thread_key: None,
            in_reply_to: reply_to.map(str::to_owned),
            raw: json!({ "id": id, "padding": "x".repeat(if id == "3" { 70_000 } else { 10 }) }),
        };
        let batch = vec![item("1", "ana", None, 0, false), item("2", "brand", Some("1"), 5, true), item("3", "ana", Some("2"), 9, false)];
        let report = rapport::ingest::ingest(&app.app.db, &source().await, &batch, Some("cursor-1"), None).await.unwrap();
        // Our own reply ("brand", outbound) joins ana's conversation and customer: it
        // creates no customer for our own account.
        assert_eq!((report.new.len(), report.duplicates, report.new_customers), (3, 0, 1));
        let again = rapport::ingest::ingest(&app.app.db, &source().await, &batch, Some("cursor-2"), None).await.unwrap();
        assert_eq!((again.new.len(), again.duplicates), (0, 3), "a repeated pull stores nothing twice");
        let stored = source().await;
        assert_eq!((stored.cursor.as_deref(), stored.items_ingested), (Some("cursor-2"), 3));
        let data = app
            .gql(&admin, "{ interactions(first: 10) { edges { node { externalId text direction conversation { id firstResponseAt } } } } }", json!({}))
            .await;
        let edges = data["interactions"]["edges"].as_array().unwrap();
        let conversations: std::collections::BTreeSet<String> = edges.iter().map(|e| e["node"]["conversation"]["id"].as_str().unwrap().to_owned()).collect();
        assert_eq!(conversations.len(), 1, "replies join the thread of what they answer: {data}");
        assert_eq!(edges[0]["node"]["text"], "café from ana", "text is NFC-normalised");
        assert_eq!(edges[1]["node"]["direction"], "OUTBOUND");
        assert!(edges[0]["node"]["conversation"]["firstResponseAt"].is_string());
        use sea_orm::EntityTrait;
        let rows = entity::interaction::Entity::find().all(&app.app.db).await.unwrap();
        let big = rows.iter().find(|row| row.external_id.as_deref() == Some("3")).unwrap();
        assert_eq!(big.raw.as_ref().unwrap()["truncated"], true, "raw payloads are size-capped");
    }
}

backend_test! {
    async fn a_thread_id_naming_another_workspaces_conversation_stays_in_its_own_workspace(app: TestApp) {
        let acme = app.key_in("acme", Role::Admin).await;
        let globex = app.key_in("globex", Role::Admin).await;
        let acme_path = webhook_source(&app, &acme).await["webhookPath"].as_str().unwrap().to_owned();
        let globex_path = webhook_source(&app, &globex).await["webhookPath"].as_str().unwrap().to_owned();
        assert_eq!(deliver(&app, &globex_path, "g-1", &json!({ "text": "globex thread" }), None).await.0, 200);
        let thread = "{ interactions { edges { node { conversation { id interactions { totalCount } } } } } }";
        let theirs = app.gql(&globex, thread, json!({})).await["interactions"]["edges"][0]["node"]["conversation"]["id"].as_str().unwrap().to_owned();
        let uuid = rapport::ids::decode::<entity::ConversationId>("id", &theirs).unwrap();
        // The sender controls thread_id; whatever it says, the item is filed in acme's own thread.
        for thread_id in [format!("conversation:{uuid}"), theirs.clone()] {
            let body = json!({ "text": "acme message", "thread_id": thread_id });
            assert_eq!(deliver(&app, &acme_path, &format!("a-{thread_id}"), &body, None).await.0, 200);
        }
        let ours = app.gql(&acme, thread, json!({})).await;
        for edge in ours["interactions"]["edges"].as_array().unwrap() {
            let conversation = &edge["node"]["conversation"];
            assert!(conversation["id"].is_string(), "the interaction lost its conversation: {ours}");
            assert_ne!(conversation["id"].as_str(), Some(theirs.as_str()));
        }
        let data = app.gql(&globex, thread, json!({})).await;
        assert_eq!(data["interactions"]["edges"][0]["node"]["conversation"]["interactions"]["totalCount"], 1);
    }
}

backend_test! {
    async fn a_reply_on_a_webhook_source_is_posted_signed_to_its_reply_url(app: TestApp) {
        let admin = app.key(Role::Admin).await;
        let receiver = crate::platform::Platform::start().await;
        receiver.on("/rapport-replies", vec![crate::platform::Reply::status(204)]);
        let input = json!({ "channel": "WEBHOOK", "name": "Chat widget", "config": { "secret": SECRET, "reply_url": receiver.url("/rapport-replies") } });
        let source = app.gql(&admin, CREATE, json!({ "input": input })).await["createSource"]["source"].clone();
        let path = source["webhookPath"].as_str().unwrap();
        let body = json!({ "name": "Visitor", "email": "visitor@example.com", "text": "Do you ship to Spain?", "thread_id": "chat-42" });
        assert_eq!(deliver(&app, path, "chat-msg-1", &body, None).await.0, 200);
        let target = crate::mastodon::find_interaction(&app, &admin, "chat-msg-1").await;
        let mutation = "mutation($input: ReplyToInteractionInput!) { replyToInteraction(input: $input) { interaction { id externalId direction text source { name } conversation { id interactions { totalCount } } } } }";
        let input = json!({ "interactionId": target, "text": "Yes, in 3 to 5 days." });
        let sent = app.gql(&admin, mutation, json!({ "input": input })).await["replyToInteraction"]["interaction"].clone();
        assert_eq!(sent["direction"], "OUTBOUND");
        assert_eq!(sent["source"]["name"], "Chat widget");
        assert_eq!(sent["conversation"]["interactions"]["totalCount"], 2);
        // Retried: not posted again.
        let again = app.gql(&admin, mutation, json!({ "input": input })).await["replyToInteraction"]["interaction"].clone();
        assert_eq!(again["id"], sent["id"]);
        let posted = receiver.seen("/rapport-replies");
        assert_eq!(posted.len(), 1);
        let delivery = &posted[0];
        let header = |name: &str| delivery.headers[name].to_str().unwrap().to_owned();
        assert_eq!(header("webhook-id"), sent["externalId"].as_str().unwrap());
        // The receiver can check it came from Rapport with the same secret.
        let headers = connectors::webhook::SignatureHeaders {
            webhook_id: Some(&header("webhook-id")),
            webhook_timestamp: Some(&header("webhook-timestamp")),
            webhook_signature: Some(&header("webhook-signature")),
            hub_signature_256: None,
        };
        Secret::parse(SECRET).unwrap().verify(&headers, &delivery.body, chrono::Utc::now()).unwrap();
        let reply: Value = serde_json::from_slice(&delivery.body).unwrap();
        assert_eq!((reply["text"].as_str(), reply["in_reply_to"].as_str(), reply["thread_id"].as_str(), reply["to"].as_str()), (Some("Yes, in 3 to 5 days."), Some("chat-msg-1"), Some("chat-42"), Some("visitor@example.com")));
        // A source without a reply_url says so.
        let manual = app.create_customer(&admin, json!({ "displayName": "Walk-in" })).await;
        let recorded = app.gql(&admin, "mutation($c: ID!) { recordInteraction(input: { customerId: $c, channel: PHONE, kind: CALL, direction: INBOUND, text: \"called\" }) { interaction { id } } }", json!({ "c": manual })).await;
        let (code, body) = app.gql_error(&admin, mutation, json!({ "input": { "interactionId": recorded["recordInteraction"]["interaction"]["id"], "text": "hi" } })).await;
        assert_eq!(code, "BAD_USER_INPUT", "{body:#}");
        assert_eq!(body["errors"][0]["extensions"]["field"], "interactionId");
    }
}
