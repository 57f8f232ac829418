//! The inbox: users and `me`, a conversation worked from ingestion to resolution and
//! snooze, bulk changes all or nothing, the filters and orders of `inbox`, tenancy, and a
//! page of 50 conversations with their relations in a fixed number of statements.

use chrono::TimeZone;
use connectors::{Author, InboundItem};
use rapport::domain::{self, Caller, Role};
use sea_orm::{EntityTrait, QueryFilter, QueryOrder};
use serde_json::{json, Value};

use crate::backend_test;
use crate::cli::{printed_alone, rapport, serve_data_dir};
use crate::common::TestApp;

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// The workspace `slug`'s id.
async fn workspace(app: &TestApp, slug: &str) -> entity::WorkspaceId {
    domain::workspace::ensure(&app.app.db, slug)
        .await
        .unwrap()
        .id
}

/// A user of `slug` with `email`; returns its id.
async fn user(app: &TestApp, slug: &str, name: &str, email: &str) -> entity::UserId {
    let owner = Caller::owner_without_key(workspace(app, slug).await, "test");
    let new = domain::user::NewUser {
        name,
        email,
        role: Role::Agent,
    };
    domain::user::create(&app.app.db, &owner, new)
        .await
        .unwrap()
        .id
}

/// A key with `role` in `slug` belonging to `user`.
async fn key_of(app: &TestApp, slug: &str, role: Role, user: entity::UserId) -> String {
    let workspace = workspace(app, slug).await;
    domain::workspace::create_key_for(&app.app.db, workspace, role, "agent-key", Some(user))
        .await
        .unwrap()
        .1
}

/// A webhook source of workspace `acme`.
async fn source(app: &TestApp, key: &str) -> entity::source::Model {
    let input = json!({ "channel": "WEBHOOK", "name": "form", "config": { "secret": SECRET } });
    let data = app
        .gql(key, "mutation($input: CreateSourceInput!) { createSource(input: $input) { source { id } } }", json!({ "input": input }))
        .await;
    let id: entity::SourceId =
        rapport::ids::decode("id", data["createSource"]["source"]["id"].as_str().unwrap()).unwrap();
    domain::source::for_webhook(&app.app.db, id).await.unwrap()
}

/// An item of the thread `thread`: the customer's, or ours when `outbound`.
fn item(id: &str, minute: u32, outbound: bool) -> InboundItem {
    InboundItem {
        external_id: id.into(),
        author: Author {
            platform_id: "acct:ana".into(),
            handle: Some("@ana".into()),
            display_name: Some("Ana".into()),
            ..Author::default()
        },
        outbound,
        kind: "mention".into(),
        subject: None,
        text: format!("message {id}"),
        html: None,
        url: None,
        language: Some("es".into()),
        occurred_at: chrono::Utc
            .with_ymd_and_hms(2026, 11, 1, 12, minute, 0)
            .unwrap(),
        thread_key: Some("thread-1".into()),
        in_reply_to: None,
        raw: json!({ "id": id }),
    }
}

async fn ingest(app: &TestApp, source: &entity::source::Model, item: InboundItem) {
    rapport::ingest::ingest(&app.app.db, source, &[item], None, None)
        .await
        .unwrap();
}

/// The kinds and payloads of the workspace's events, oldest first.
async fn events(app: &TestApp) -> Vec<(String, Value)> {
    use sea_orm::ColumnTrait;
    entity::event::Entity::find()
        .filter(entity::event::Column::Kind.starts_with("conversation."))
        .order_by_asc(entity::event::Column::Seq)
        .all(&app.app.db)
        .await
        .unwrap()
        .into_iter()
        .map(|event| (event.kind, event.payload))
        .collect()
}

const INBOX: &str =
    "query($filter: InboxFilterInput, $order: InboxOrder, $first: Int, $after: String) {
  inbox(filter: $filter, orderBy: $order, first: $first, after: $after) {
    pageInfo { hasNextPage endCursor }
    edges { cursor node { id status snoozedUntil priority spam waitingSince firstResponseAt
      customer { displayName } assignee { id name } labels { name }
      lastInteraction { text direction } } }
  }
}";

const COUNTS: &str = "query($filter: InboxFilterInput) { inboxCounts(filter: $filter) { open pending snoozed resolved total } }";

async fn inbox(app: &TestApp, key: &str, filter: Value) -> Vec<Value> {
    let data = app.gql(key, INBOX, json!({ "filter": filter })).await;
    data["inbox"]["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|edge| edge["node"].clone())
        .collect()
}

/// Sleeps until just after `until`.
async fn sleep_past(until: chrono::DateTime<chrono::Utc>) {
    let left = (until - domain::now()).to_std().unwrap_or_default();
    tokio::time::sleep(left + std::time::Duration::from_millis(100)).await;
}

const SET_STATUS: &str = "mutation($input: SetConversationStatusInput!) { setConversationStatus(input: $input) { conversation { status snoozedUntil } } }";

backend_test! {
    async fn users_own_keys_and_me_is_the_calling_keys_user(app: TestApp) {
        let carmen = user(&app, "acme", "Carmen", "Carmen@Example.com").await;
        user(&app, "acme", "Ana", "ana@example.com").await;
        let owner = Caller::owner_without_key(workspace(&app, "acme").await, "test");
        let twice = domain::user::create(&app.app.db, &owner, domain::user::NewUser { name: "Other", email: "CARMEN@example.com", role: Role::Agent }).await.unwrap_err();
        assert_eq!(twice.to_string(), "the workspace has a user with the e-mail carmen@example.com already");
        let bad = domain::user::create(&app.app.db, &owner, domain::user::NewUser { name: "X", email: "not-an-address", role: Role::Agent }).await.unwrap_err();
        assert!(matches!(bad, rapport::Error::BadInput { .. }), "{bad:?}");

        let key = key_of(&app, "acme", Role::Agent, carmen).await;
        let data = app.gql(&key, "{ me { id name email role active } users { name email } }", json!({})).await;
        assert_eq!(data["me"]["id"], rapport::ids::encode(carmen));
        assert_eq!(data["me"]["email"], "carmen@example.com");
        assert_eq!((data["me"]["role"].as_str(), data["me"]["active"].as_bool()), (Some("AGENT"), Some(true)));
        assert_eq!(data["users"], json!([{ "name": "Ana", "email": "ana@example.com" }, { "name": "Carmen", "email": "carmen@example.com" }]));
        let machine = app.key(Role::Viewer).await;
        assert_eq!(app.gql(&machine, "{ me { id } }", json!({})).await["me"], Value::Null);
        let node = app.gql(&machine, "query($id: ID!) { node(id: $id) { ... on User { name } } }", json!({ "id": rapport::ids::encode(carmen) })).await;
        assert_eq!(node["node"]["name"], "Carmen");

        // A key for a user of another workspace is refused.
        let other = workspace(&app, "globex").await;
        let err = domain::workspace::create_key_for(&app.app.db, other, Role::Agent, "x", Some(carmen)).await.unwrap_err();
        assert!(matches!(err, rapport::Error::NotFound { .. }), "{err:?}");
    }
}

backend_test! {
    async fn a_conversation_is_assigned_labelled_answered_resolved_reopened_and_snoozed(app: TestApp) {
        let admin = app.key(Role::Admin).await;
        let carmen = user(&app, "acme", "Carmen", "carmen@example.com").await;
        let agent = key_of(&app, "acme", Role::Agent, carmen).await;
        let viewer = app.key(Role::Viewer).await;
        let source = source(&app, &admin).await;
        ingest(&app, &source, item("1", 0, false)).await;

        let rows = inbox(&app, &agent, json!({})).await;
        assert_eq!(rows.len(), 1);
        let conversation = rows[0]["id"].as_str().unwrap().to_owned();
        assert_eq!(rows[0]["status"], "OPEN");
        assert_eq!(rows[0]["customer"]["displayName"], "Ana");
        assert_eq!(rows[0]["lastInteraction"], json!({ "text": "message 1", "direction": "INBOUND" }));
        assert_eq!((rows[0]["assignee"].clone(), rows[0]["labels"].clone()), (Value::Null, json!([])));
        assert_eq!(rows[0]["waitingSince"], "2026-11-01T12:00:00+00:00");
        assert_eq!(inbox(&app, &agent, json!({ "unanswered": true, "language": "es", "waitingLongerThan": 3600 })).await.len(), 1);
        assert_eq!(inbox(&app, &agent, json!({ "language": "en" })).await.len(), 0);
        let source_id = rapport::ids::encode(source.id);
        assert_eq!(inbox(&app, &agent, json!({ "channel": "WEBHOOK", "sourceId": source_id })).await.len(), 1);
        assert_eq!(inbox(&app, &agent, json!({ "channel": "EMAIL" })).await.len(), 0);
        assert_eq!(inbox(&app, &agent, json!({ "sourceId": rapport::ids::encode(entity::SourceId::new()) })).await.len(), 0);
        assert_eq!(inbox(&app, &agent, json!({ "waitingLongerThan": 3_000_000_000i64 })).await.len(), 0, "not waiting for 95 years");

        // Assigned to me; ME and NOBODY filter on it; a viewer may not assign.
        let assign = "mutation($input: AssignConversationInput!) { assignConversation(input: $input) { conversation { assignee { name } } } }";
        let data = app.gql(&agent, assign, json!({ "input": { "conversationId": conversation, "assigneeId": rapport::ids::encode(carmen) } })).await;
        assert_eq!(data["assignConversation"]["conversation"]["assignee"]["name"], "Carmen");
        assert_eq!(inbox(&app, &agent, json!({ "assignee": "ME" })).await.len(), 1);
        assert_eq!(inbox(&app, &agent, json!({ "assignee": "NOBODY" })).await.len(), 0);
        let (code, _) = app.gql_error(&admin, INBOX, json!({ "filter": { "assignee": "ME" } })).await;
        assert_eq!(code, "BAD_USER_INPUT", "a key of nobody has no ME");
        let (code, _) = app.gql_error(&viewer, assign, json!({ "input": { "conversationId": conversation, "assigneeId": null } })).await;
        assert_eq!(code, "FORBIDDEN");

        // Priority and labels.
        app.gql(&agent, "mutation($id: ID!) { setConversationPriority(input: { conversationId: $id, priority: URGENT }) { conversation { priority } } }", json!({ "id": conversation })).await;
        let label = "mutation($id: ID!, $label: String!) { addConversationLabel(input: { conversationId: $id, label: $label }) { conversation { labels { name } } } }";
        app.gql(&agent, label, json!({ "id": conversation, "label": "billing" })).await;
        let data = app.gql(&agent, label, json!({ "id": conversation, "label": "billing" })).await;
        assert_eq!(data["addConversationLabel"]["conversation"]["labels"], json!([{ "name": "billing" }]), "labelling twice is a no-op");
        assert_eq!(inbox(&app, &agent, json!({ "label": "billing", "priorities": ["URGENT"] })).await.len(), 1);
        assert_eq!(inbox(&app, &agent, json!({ "label": "refunds" })).await.len(), 0);
        let unlabel = "mutation($id: ID!, $label: String!) { removeConversationLabel(input: { conversationId: $id, label: $label }) { conversation { labels { name } } } }";
        let (code, _) = app.gql_error(&agent, unlabel, json!({ "id": conversation, "label": "refunds" })).await;
        assert_eq!(code, "NOT_FOUND");

        // PENDING, then the customer writes again: OPEN.
        app.gql(&agent, SET_STATUS, json!({ "input": { "conversationId": conversation, "status": "PENDING" } })).await;
        assert_eq!(app.gql(&agent, COUNTS, json!({})).await["inboxCounts"], json!({ "open": 0, "pending": 1, "snoozed": 0, "resolved": 0, "total": 1 }));
        ingest(&app, &source, item("2", 5, false)).await;
        assert_eq!(inbox(&app, &agent, json!({ "statuses": ["OPEN"] })).await.len(), 1);
        // Our answer ends the wait and is the first response.
        ingest(&app, &source, item("3", 10, true)).await;
        let rows = inbox(&app, &agent, json!({ "unanswered": false })).await;
        assert_eq!((rows[0]["waitingSince"].clone(), rows[0]["firstResponseAt"].clone()), (Value::Null, json!("2026-11-01T12:10:00+00:00")));
        assert_eq!(rows[0]["lastInteraction"]["direction"], "OUTBOUND");

        // RESOLVED, reopened by a new message.
        ingest(&app, &source, item("3b", 12, false)).await;
        app.gql(&agent, SET_STATUS, json!({ "input": { "conversationId": conversation, "status": "RESOLVED" } })).await;
        let rows = inbox(&app, &agent, json!({ "statuses": ["RESOLVED"] })).await;
        assert_eq!((rows.len(), rows[0]["waitingSince"].clone()), (1, Value::Null), "resolved: nothing waits");
        ingest(&app, &source, item("4", 20, false)).await;
        let rows = inbox(&app, &agent, json!({ "statuses": ["OPEN"] })).await;
        assert_eq!((rows.len(), rows[0]["waitingSince"].clone()), (1, json!("2026-11-01T12:20:00+00:00")), "reopened: a new wait");

        // SNOOZED needs a future time; it reads as OPEN once the time has come, and the
        // timer stores the wake once.
        for until in [Value::Null, json!("2020-01-01T00:00:00Z")] {
            let (code, body) = app.gql_error(&agent, SET_STATUS, json!({ "input": { "conversationId": conversation, "status": "SNOOZED", "snoozedUntil": until } })).await;
            assert_eq!(code, "BAD_USER_INPUT", "{body}");
        }
        let (code, _) = app.gql_error(&agent, SET_STATUS, json!({ "input": { "conversationId": conversation, "status": "OPEN", "snoozedUntil": "2099-01-01T00:00:00Z" } })).await;
        assert_eq!(code, "BAD_USER_INPUT");
        // Far enough ahead for a slow machine to set it before it passes.
        let until = domain::now() + chrono::Duration::seconds(2);
        let data = app.gql(&agent, SET_STATUS, json!({ "input": { "conversationId": conversation, "status": "SNOOZED", "snoozedUntil": until } })).await;
        assert_eq!(data["setConversationStatus"]["conversation"]["status"], "SNOOZED");
        assert_eq!(app.gql(&agent, COUNTS, json!({})).await["inboxCounts"]["snoozed"], 1);
        assert_eq!(domain::inbox::wake_due(&app.app.db, 100).await.unwrap(), 0, "not due yet");
        sleep_past(until).await;
        let rows = inbox(&app, &agent, json!({ "statuses": ["OPEN"] })).await;
        assert_eq!((rows.len(), rows[0]["snoozedUntil"].clone()), (1, Value::Null), "due: it reads as OPEN before the timer ran");
        // The customer's view agrees, through its loader and read with the customer alike.
        for query in [
            "query($id: ID!) { node(id: $id) { ... on Conversation { customer { open: conversations(status: OPEN) { id } snoozed: conversations(status: SNOOZED) { id } } } } }",
            "query($id: ID!) { node(id: $id) { ... on Conversation { customer { id } } } }",
        ] {
            let data = app.gql(&agent, query, json!({ "id": conversation })).await;
            let customer = &data["node"]["customer"];
            if customer.get("open").is_some() {
                assert_eq!((customer["open"].as_array().unwrap().len(), customer["snoozed"].as_array().unwrap().len()), (1, 0), "{customer}");
            } else {
                let id = customer["id"].clone();
                let view = app.gql(&agent, "query($id: ID!) { customer(id: $id) { conversations(status: OPEN) { id } } }", json!({ "id": id })).await;
                assert_eq!(view["customer"]["conversations"].as_array().unwrap().len(), 1, "{view}");
            }
        }
        assert_eq!(app.gql(&agent, COUNTS, json!({})).await["inboxCounts"], json!({ "open": 1, "pending": 0, "snoozed": 0, "resolved": 0, "total": 1 }));
        assert_eq!(domain::inbox::wake_due(&app.app.db, 100).await.unwrap(), 1);
        assert_eq!(domain::inbox::wake_due(&app.app.db, 100).await.unwrap(), 0, "woken once");

        // Spam is hidden unless asked for.
        app.gql(&agent, "mutation($id: ID!) { markConversationSpam(input: { conversationId: $id, spam: true }) { conversation { spam } } }", json!({ "id": conversation })).await;
        assert_eq!(inbox(&app, &agent, json!({})).await.len(), 0);
        assert_eq!(inbox(&app, &agent, json!({ "spam": true })).await.len(), 1);
        // What the author writes next, in a new thread, is hidden too; until unmarked.
        ingest(&app, &source, InboundItem { thread_key: Some("thread-2".into()), ..item("5", 30, false) }).await;
        assert_eq!(inbox(&app, &agent, json!({})).await.len(), 0);
        assert_eq!(inbox(&app, &agent, json!({ "spam": true })).await.len(), 2);
        assert_eq!(app.gql(&agent, COUNTS, json!({})).await["inboxCounts"]["total"], 0);
        app.gql(&agent, "mutation($id: ID!) { markConversationSpam(input: { conversationId: $id, spam: false }) { conversation { spam } } }", json!({ "id": conversation })).await;
        assert_eq!(inbox(&app, &agent, json!({})).await.len(), 2);

        // Every change is an event naming who made it.
        let events = events(&app).await;
        let kinds: Vec<&str> = events.iter().map(|(kind, _)| kind.as_str()).collect();
        for kind in ["conversation.assigned", "conversation.priority_set", "conversation.label_added", "conversation.status_set", "conversation.status_changed", "conversation.woken", "conversation.spam_set"] {
            assert!(kinds.contains(&kind), "{kind} missing from {kinds:?}");
        }
        assert_eq!(kinds.iter().filter(|kind| **kind == "conversation.label_added").count(), 1, "the no-op wrote nothing");
        assert_eq!(kinds.iter().filter(|kind| **kind == "conversation.woken").count(), 1);
        let (_, assigned) = events.iter().find(|(kind, _)| kind == "conversation.assigned").unwrap();
        assert_eq!(assigned["actor"]["user_id"], json!(carmen.uuid()));
        assert_eq!(assigned["assignee_id"], json!(carmen.uuid()));
        assert!(assigned["actor"]["key_id"].is_string(), "{assigned}");
        let (_, reopened) = events.iter().find(|(kind, _)| kind == "conversation.status_changed").unwrap();
        assert_eq!((reopened["status"].as_str(), reopened["actor"]["name"].as_str()), (Some("open"), Some("new message")));
        let (_, woken) = events.iter().find(|(kind, _)| kind == "conversation.woken").unwrap();
        assert_eq!((woken["status"].as_str(), woken["actor"]["name"].as_str()), (Some("open"), Some("snooze timer")));
    }
}

/// `n` uniform customers in `acme`, each with one open conversation of 3 inbound
/// messages; returns the conversation ids, oldest customer first.
async fn seeded(app: &TestApp, n: usize) -> Vec<String> {
    rapport::demo::seed_uniform(&app.app.db, workspace(app, "acme").await, n, 1, 3)
        .await
        .unwrap();
    entity::conversation::Entity::find()
        .order_by_asc(entity::conversation::Column::CreatedAt)
        .order_by_asc(entity::conversation::Column::Id)
        .all(&app.app.db)
        .await
        .unwrap()
        .into_iter()
        .map(|row| rapport::ids::encode(row.id))
        .collect()
}

backend_test! {
    async fn bulk_changes_are_all_or_nothing(app: TestApp) {
        let carmen = user(&app, "acme", "Carmen", "carmen@example.com").await;
        let agent = key_of(&app, "acme", Role::Agent, carmen).await;
        let ids = seeded(&app, 5).await;
        let status = "mutation($input: BulkSetConversationStatusInput!) { bulkSetConversationStatus(input: $input) { conversations { id status } } }";
        let mut with_unknown = ids[..4].to_vec();
        with_unknown.push(rapport::ids::encode(entity::ConversationId::new()));
        let (code, body) = app.gql_error(&agent, status, json!({ "input": { "conversationIds": with_unknown, "status": "RESOLVED" } })).await;
        assert_eq!(code, "NOT_FOUND", "{body}");
        assert!(body["errors"][0]["message"].as_str().unwrap().contains(with_unknown[4].as_str()), "{body}");
        assert_eq!(app.gql(&agent, COUNTS, json!({})).await["inboxCounts"]["resolved"], 0, "nothing changed");
        let too_many: Vec<String> = (0..101).map(|_| rapport::ids::encode(entity::ConversationId::new())).collect();
        let (code, _) = app.gql_error(&agent, status, json!({ "input": { "conversationIds": too_many, "status": "RESOLVED" } })).await;
        assert_eq!(code, "BAD_USER_INPUT");
        let data = app.gql(&agent, status, json!({ "input": { "conversationIds": ids[..3], "status": "RESOLVED" } })).await;
        let returned: Vec<&str> = data["bulkSetConversationStatus"]["conversations"].as_array().unwrap().iter().map(|c| c["id"].as_str().unwrap()).collect();
        assert_eq!(returned, ids[..3].iter().map(String::as_str).collect::<Vec<_>>(), "in the order asked");
        assert_eq!(app.gql(&agent, COUNTS, json!({})).await["inboxCounts"], json!({ "open": 2, "pending": 0, "snoozed": 0, "resolved": 3, "total": 5 }));

        let assign = "mutation($input: BulkAssignConversationsInput!) { bulkAssignConversations(input: $input) { conversations { assignee { name } } } }";
        app.gql(&agent, assign, json!({ "input": { "conversationIds": ids[1..4], "assigneeId": rapport::ids::encode(carmen) } })).await;
        assert_eq!(inbox(&app, &agent, json!({ "assigneeId": rapport::ids::encode(carmen) })).await.len(), 3);
        assert_eq!(app.gql(&agent, COUNTS, json!({ "filter": { "assignee": "ME" } })).await["inboxCounts"], json!({ "open": 1, "pending": 0, "snoozed": 0, "resolved": 2, "total": 3 }));

        let label = "mutation($input: BulkLabelConversationsInput!) { bulkLabelConversations(input: $input) { conversations { labels { name } } } }";
        app.gql(&agent, label, json!({ "input": { "conversationIds": ids, "label": "vip" } })).await;
        app.gql(&agent, label, json!({ "input": { "conversationIds": ids[..2], "label": "vip", "remove": true } })).await;
        assert_eq!(inbox(&app, &agent, json!({ "label": "vip" })).await.len(), 3);
    }
}

backend_test! {
    async fn the_inbox_orders_by_activity_waiting_and_priority_and_pages_with_cursors(app: TestApp) {
        let agent = app.key(Role::Agent).await;
        let ids = seeded(&app, 7).await;
        let priority = "mutation($id: ID!, $p: Priority!) { setConversationPriority(input: { conversationId: $id, priority: $p }) { conversation { id } } }";
        app.gql(&agent, priority, json!({ "id": ids[2], "p": "URGENT" })).await;
        app.gql(&agent, priority, json!({ "id": ids[5], "p": "HIGH" })).await;
        app.gql(&agent, priority, json!({ "id": ids[0], "p": "LOW" })).await;
        let order = |order: &'static str| {
            let app = &app;
            let agent = agent.clone();
            async move {
                let mut seen = Vec::new();
                let mut after = Value::Null;
                loop {
                    let data = app.gql(&agent, INBOX, json!({ "order": order, "first": 3, "after": after })).await;
                    for edge in data["inbox"]["edges"].as_array().unwrap() {
                        seen.push(edge["node"]["id"].as_str().unwrap().to_owned());
                    }
                    if !data["inbox"]["pageInfo"]["hasNextPage"].as_bool().unwrap() {
                        return seen;
                    }
                    after = data["inbox"]["pageInfo"]["endCursor"].clone();
                }
            }
        };
        // Uniform customers are a day apart: the newest is the most recently active and
        // the oldest has waited longest.
        let newest_first: Vec<String> = ids.iter().rev().cloned().collect();
        assert_eq!(order("LAST_ACTIVITY").await, newest_first);
        assert_eq!(order("OLDEST_WAITING").await, ids);
        let by_priority = order("PRIORITY").await;
        let rest: Vec<String> = newest_first.iter().filter(|id| ![&ids[0], &ids[2], &ids[5]].contains(id)).cloned().collect();
        let mut expected = vec![ids[2].clone(), ids[5].clone()];
        expected.extend(rest);
        expected.push(ids[0].clone());
        assert_eq!(by_priority, expected);
        let cursor = app.gql(&agent, INBOX, json!({ "order": "PRIORITY", "first": 1 })).await["inbox"]["pageInfo"]["endCursor"].clone();
        let (code, _) = app.gql_error(&agent, INBOX, json!({ "order": "LAST_ACTIVITY", "after": cursor })).await;
        assert_eq!(code, "BAD_USER_INPUT", "a cursor of another order is refused");
    }
}

backend_test! {
    async fn a_key_of_another_workspace_can_neither_see_nor_change_nor_assign_across(app: TestApp) {
        let ids = seeded(&app, 2).await;
        let carmen = user(&app, "acme", "Carmen", "carmen@example.com").await;
        let acme = key_of(&app, "acme", Role::Agent, carmen).await;
        let bo = user(&app, "globex", "Bo", "bo@example.com").await;
        let globex = key_of(&app, "globex", Role::Owner, bo).await;
        assert_eq!(inbox(&app, &globex, json!({})).await.len(), 0);
        assert_eq!(app.gql(&globex, COUNTS, json!({})).await["inboxCounts"]["total"], 0);
        assert_eq!(app.gql(&globex, "{ users { name } }", json!({})).await["users"], json!([{ "name": "Bo" }]));
        let node = app.gql(&globex, "query($id: ID!) { node(id: $id) { id } }", json!({ "id": rapport::ids::encode(carmen) })).await;
        assert_eq!(node["node"], Value::Null);
        let assign = "mutation($input: AssignConversationInput!) { assignConversation(input: $input) { conversation { id } } }";
        let (code, _) = app.gql_error(&globex, assign, json!({ "input": { "conversationId": ids[0], "assigneeId": rapport::ids::encode(bo) } })).await;
        assert_eq!(code, "NOT_FOUND", "B cannot touch A's conversation");
        let (code, _) = app.gql_error(&acme, assign, json!({ "input": { "conversationId": ids[0], "assigneeId": rapport::ids::encode(bo) } })).await;
        assert_eq!(code, "NOT_FOUND", "A's conversation cannot go to B's user");
        let (code, _) = app.gql_error(&globex, SET_STATUS, json!({ "input": { "conversationId": ids[1], "status": "RESOLVED" } })).await;
        assert_eq!(code, "NOT_FOUND");
        let bulk = "mutation($input: BulkLabelConversationsInput!) { bulkLabelConversations(input: $input) { conversations { id } } }";
        let (code, _) = app.gql_error(&globex, bulk, json!({ "input": { "conversationIds": ids, "label": "x" } })).await;
        assert_eq!(code, "NOT_FOUND");
        let rows = inbox(&app, &acme, json!({})).await;
        assert!(rows.iter().all(|row| row["assignee"].is_null() && row["labels"] == json!([]) && row["status"] == "OPEN"), "nothing changed: {rows:?}");
    }
}

const PAGE: &str = "query($n: Int) { inbox(first: $n) { edges { node {
    id status priority
    customer { displayName }
    lastInteraction { text }
    assignee { name }
    labels { name }
} } } }";

async fn statements_for(app: &TestApp, key: &str, n: usize) -> (u64, usize) {
    let before = app.statements();
    let data = app.gql(key, PAGE, json!({ "n": n })).await;
    let edges = data["inbox"]["edges"].as_array().unwrap();
    for edge in edges {
        let node = &edge["node"];
        assert!(node["customer"]["displayName"].is_string());
        assert_eq!(
            node["lastInteraction"]["text"]
                .as_str()
                .unwrap()
                .split(' ')
                .nth(1),
            Some("2"),
            "{node}"
        );
    }
    (app.statements() - before, edges.len())
}

backend_test! {
    async fn a_page_of_50_conversations_with_their_relations_costs_a_fixed_number_of_statements(app: TestApp) {
        let carmen = user(&app, "acme", "Carmen", "carmen@example.com").await;
        let key = key_of(&app, "acme", Role::Agent, carmen).await;
        let ids = seeded(&app, 60).await;
        let assign = "mutation($input: BulkAssignConversationsInput!) { bulkAssignConversations(input: $input) { conversations { id } } }";
        // The newest (first in the page) are assigned and labelled, so both pages load every relation.
        app.gql(&key, assign, json!({ "input": { "conversationIds": ids[30..60], "assigneeId": rapport::ids::encode(carmen) } })).await;
        let label = "mutation($input: BulkLabelConversationsInput!) { bulkLabelConversations(input: $input) { conversations { id } } }";
        app.gql(&key, label, json!({ "input": { "conversationIds": ids[20..60], "label": "vip" } })).await;
        app.gql(&key, label, json!({ "input": { "conversationIds": ids[40..60], "label": "billing" } })).await;
        let (small, n_small) = statements_for(&app, &key, 5).await;
        let (large, n_large) = statements_for(&app, &key, 50).await;
        assert_eq!((n_small, n_large), (5, 50));
        assert_eq!(small, large, "the statement count must not grow with the page size");
        assert_eq!(large, 6, "a page of the inbox took {large} statements (its key's read aside)");
    }
}

#[tokio::test]
async fn users_add_prints_the_id_alone_and_keys_create_binds_a_key_to_a_user_of_its_workspace() {
    let dir = tempfile::tempdir().unwrap();
    let output = rapport(
        dir.path(),
        &[
            "users",
            "add",
            "--email",
            "Carmen@Example.com",
            "--name",
            "Carmen",
            "--role",
            "agent",
            "--workspace",
            "acme",
        ],
    );
    let id = printed_alone(output, "id");
    assert!(id.starts_with("usr_") && id.len() == 36, "{id}");
    let again = rapport(
        dir.path(),
        &[
            "users",
            "add",
            "--email",
            "carmen@example.com",
            "--name",
            "C",
            "--workspace",
            "acme",
        ],
    );
    assert!(!again.status.success());
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("already"),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );

    let other = rapport(
        dir.path(),
        &[
            "keys",
            "create",
            "--role",
            "agent",
            "--user",
            &id,
            "--workspace",
            "globex",
        ],
    );
    assert!(
        !other.status.success(),
        "a user of another workspace is refused"
    );
    let stderr = String::from_utf8_lossy(&other.stderr);
    assert!(
        stderr.contains("the workspace `globex` has no user") && stderr.contains(&id),
        "{stderr}"
    );

    let output = rapport(
        dir.path(),
        &[
            "keys",
            "create",
            "--role",
            "agent",
            "--user",
            &id,
            "--workspace",
            "acme",
        ],
    );
    let key = printed_alone(output, "key");
    let addr = serve_data_dir(dir.path()).await;
    let body: Value = reqwest::Client::new()
        .post(format!("http://{addr}/graphql"))
        .bearer_auth(&key)
        .json(&json!({ "query": "{ me { id name email } }" }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        body["data"]["me"],
        json!({ "id": id, "name": "Carmen", "email": "carmen@example.com" })
    );
}

backend_test! {
    async fn viewers_change_nothing_and_the_inbox_errors_say_what_to_do(app: TestApp) {
        let ids = seeded(&app, 1).await;
        let viewer = app.key(Role::Viewer).await;
        let agent = app.key(Role::Agent).await;
        let id = json!({ "id": ids[0], "ids": ids });
        let writes = [
            "mutation($id: ID!) { assignConversation(input: { conversationId: $id, assigneeId: null }) { conversation { id } } }",
            "mutation($id: ID!) { setConversationStatus(input: { conversationId: $id, status: RESOLVED }) { conversation { id } } }",
            "mutation($id: ID!) { setConversationPriority(input: { conversationId: $id, priority: HIGH }) { conversation { id } } }",
            "mutation($id: ID!) { addConversationLabel(input: { conversationId: $id, label: \"x\" }) { conversation { id } } }",
            "mutation($id: ID!) { removeConversationLabel(input: { conversationId: $id, label: \"x\" }) { conversation { id } } }",
            "mutation($id: ID!) { markConversationSpam(input: { conversationId: $id, spam: true }) { conversation { id } } }",
            "mutation($ids: [ID!]!) { bulkSetConversationStatus(input: { conversationIds: $ids, status: RESOLVED }) { conversations { id } } }",
            "mutation($ids: [ID!]!) { bulkAssignConversations(input: { conversationIds: $ids, assigneeId: null }) { conversations { id } } }",
            "mutation($ids: [ID!]!) { bulkLabelConversations(input: { conversationIds: $ids, label: \"x\" }) { conversations { id } } }",
        ];
        for mutation in writes {
            let (code, body) = app.gql_error(&viewer, mutation, id.clone()).await;
            assert_eq!(code, "FORBIDDEN", "{mutation}: {body:#}");
        }
        let (_, body) = app.gql_error(&viewer, writes[0], id.clone()).await;
        insta::assert_json_snapshot!("inbox_forbidden_viewer", body);
        let (_, body) = app.gql_error(&agent, SET_STATUS, json!({ "input": { "conversationId": ids[0], "status": "SNOOZED" } })).await;
        insta::assert_json_snapshot!("inbox_snoozed_without_time", body);
        let unknown = rapport::ids::encode(entity::ConversationId::new());
        let (_, body) = app.gql_error(&agent, writes[6], json!({ "ids": [ids[0], unknown] })).await;
        let body: Value = serde_json::from_str(&body.to_string().replace(&unknown, "cnv_UNKNOWN")).unwrap();
        insta::assert_json_snapshot!("inbox_bulk_unknown_id", body);
        let too_many: Vec<String> = (0..101).map(|_| ids[0].clone()).collect();
        let (_, body) = app.gql_error(&agent, writes[8], json!({ "ids": too_many })).await;
        insta::assert_json_snapshot!("inbox_bulk_too_many", body);
        let rows = inbox(&app, &agent, json!({})).await;
        assert_eq!((rows[0]["status"].as_str(), rows[0]["labels"].clone()), (Some("OPEN"), json!([])), "nothing changed");
    }
}

backend_test! {
    async fn two_timers_waking_at_once_wake_each_conversation_once(app: TestApp) {
        let agent = app.key(Role::Agent).await;
        let ids = seeded(&app, 6).await;
        let until = domain::now() + chrono::Duration::seconds(2);
        let status = "mutation($input: BulkSetConversationStatusInput!) { bulkSetConversationStatus(input: $input) { conversations { status } } }";
        app.gql(&agent, status, json!({ "input": { "conversationIds": ids, "status": "SNOOZED", "snoozedUntil": until } })).await;
        sleep_past(until).await;
        // Two processes' timers, each on its own connection of the pool.
        let (a, b) = tokio::join!(
            domain::inbox::wake_due(&app.app.db, 100),
            domain::inbox::wake_due(&app.app.db, 100)
        );
        assert_eq!(a.unwrap() + b.unwrap(), 6);
        let woken = events(&app).await.into_iter().filter(|(kind, _)| kind == "conversation.woken").count();
        assert_eq!(woken, 6, "one event per wake");
        assert_eq!(app.gql(&agent, COUNTS, json!({})).await["inboxCounts"]["open"], 6);
    }
}

/// Saves a new message (`direction`) in the conversation `id` while another transaction
/// holds the row with an agent's change (`agent`, columns and values), and commits the
/// agent's change first. On PostgreSQL the message's transaction is running and blocked
/// on the row when the agent commits (checked with `pg_blocking_pids`), so a message that
/// read the row before the change would write its stale copy back; on SQLite the writers
/// take turns.
async fn message_during_agent_change(
    app: &TestApp,
    id: entity::ConversationId,
    agent: Vec<(entity::conversation::Column, sea_orm::Value)>,
    direction: domain::Direction,
) {
    use sea_orm::sea_query::Expr;
    use sea_orm::{ColumnTrait, ConnectionTrait, DatabaseBackend, Statement, TransactionTrait};
    let workspace = workspace(app, "acme").await;
    let db = app.app.db.clone();
    let holder = db.begin().await.unwrap();
    let mut update =
        entity::conversation::Entity::update_many().filter(entity::conversation::Column::Id.eq(id));
    for (column, value) in agent {
        update = update.col_expr(column, Expr::value(value));
    }
    update.exec(&holder).await.unwrap();
    let pid = match app.backend {
        crate::common::Backend::Postgres => Some(
            holder
                .query_one(Statement::from_string(
                    DatabaseBackend::Postgres,
                    "SELECT pg_backend_pid() AS pid",
                ))
                .await
                .unwrap()
                .unwrap()
                .try_get::<i32>("", "pid")
                .unwrap(),
        ),
        crate::common::Backend::Sqlite => None,
    };
    let message = tokio::spawn(async move {
        let txn = domain::begin_write(&db).await.unwrap();
        let at = domain::now();
        domain::conversation::on_interaction(&txn, workspace, id, direction, at)
            .await
            .unwrap();
        txn.commit().await.unwrap();
    });
    match pid {
        Some(pid) => {
            let blocked = Statement::from_sql_and_values(
                DatabaseBackend::Postgres,
                "SELECT count(*) AS n FROM pg_stat_activity WHERE $1 = ANY(pg_blocking_pids(pid))",
                [pid.into()],
            );
            let mut waited = 0;
            loop {
                let row = app
                    .app
                    .db
                    .query_one(blocked.clone())
                    .await
                    .unwrap()
                    .unwrap();
                if row.try_get::<i64>("", "n").unwrap() > 0 {
                    break;
                }
                waited += 1;
                assert!(
                    waited < 500,
                    "the message's transaction never reached the row"
                );
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
        }
        None => tokio::time::sleep(std::time::Duration::from_millis(200)).await,
    }
    holder.commit().await.unwrap();
    message.await.unwrap();
}

backend_test! {
    async fn a_new_message_neither_undoes_an_agents_concurrent_status_change_nor_doubles_a_reopening(app: TestApp) {
        use entity::conversation::Column;
        use sea_orm::sea_query::Expr;
        use sea_orm::ColumnTrait;
        let ids: Vec<entity::ConversationId> = seeded(&app, 3)
            .await
            .iter()
            .map(|id| rapport::ids::decode("id", id).unwrap())
            .collect();
        let row = |id: entity::ConversationId| {
            let db = app.app.db.clone();
            async move { entity::conversation::Entity::find_by_id(id).one(&db).await.unwrap().unwrap() }
        };
        let reopenings = || async {
            events(&app).await.into_iter().filter(|(kind, _)| kind == "conversation.status_changed").count()
        };
        let now = domain::now();
        let status = |status: &str| sea_orm::Value::from(status.to_owned());

        // Our reply arrives while an agent resolves: the thread stays resolved.
        let before = reopenings().await;
        message_during_agent_change(
            &app,
            ids[0],
            vec![
                (Column::Status, status("resolved")),
                (Column::ResolvedAt, Some(now).into()),
                (Column::WaitingSince, Option::<chrono::DateTime<chrono::Utc>>::None.into()),
            ],
            domain::Direction::Outbound,
        )
        .await;
        let resolved = row(ids[0]).await;
        assert_eq!(resolved.status, domain::ConversationStatus::Resolved, "the agent's RESOLVED was overwritten");
        assert_eq!(resolved.resolved_at, Some(now));
        assert_eq!(reopenings().await, before);

        // The customer writes while an agent sets PENDING: the message reopens what the
        // agent set, with exactly one reopening event, and the log ends where the row is.
        message_during_agent_change(
            &app,
            ids[1],
            vec![(Column::Status, status("pending"))],
            domain::Direction::Inbound,
        )
        .await;
        assert_eq!(row(ids[1]).await.status, domain::ConversationStatus::Open);
        assert_eq!(reopenings().await, before + 1, "one reopening of the PENDING thread");

        // The customer writes while a snoozed thread is woken: one wake, no second
        // reopening by the message.
        entity::conversation::Entity::update_many()
            .col_expr(Column::Status, Expr::value("snoozed"))
            .col_expr(Column::SnoozedUntil, Expr::value(Some(now + chrono::Duration::hours(1))))
            .filter(Column::Id.eq(ids[2]))
            .exec(&app.app.db)
            .await
            .unwrap();
        message_during_agent_change(
            &app,
            ids[2],
            vec![
                (Column::Status, status("open")),
                (Column::SnoozedUntil, Option::<chrono::DateTime<chrono::Utc>>::None.into()),
            ],
            domain::Direction::Inbound,
        )
        .await;
        let woken = row(ids[2]).await;
        assert_eq!(woken.status, domain::ConversationStatus::Open);
        assert_eq!(woken.snoozed_until, None);
        assert_eq!(reopenings().await, before + 1, "the woken thread was reopened a second time");
    }
}

backend_test! {
    async fn not_spam_on_a_thread_hidden_by_its_author_shows_all_the_authors_threads_again(app: TestApp) {
        let admin = app.key(Role::Admin).await;
        let agent = app.key(Role::Agent).await;
        let source = source(&app, &admin).await;
        ingest(&app, &source, item("1", 0, false)).await;
        let first = inbox(&app, &agent, json!({})).await[0]["id"].as_str().unwrap().to_owned();
        let spam = "mutation($id: ID!, $spam: Boolean!) { markConversationSpam(input: { conversationId: $id, spam: $spam }) { conversation { id spam } } }";
        app.gql(&agent, spam, json!({ "id": first, "spam": true })).await;
        // The author's next thread is hidden through the author's mark, and says so.
        ingest(&app, &source, InboundItem { thread_key: Some("thread-2".into()), ..item("2", 10, false) }).await;
        assert_eq!(inbox(&app, &agent, json!({})).await.len(), 0);
        let hidden = inbox(&app, &agent, json!({ "spam": true })).await;
        assert_eq!(hidden.len(), 2);
        assert!(hidden.iter().all(|row| row["spam"] == json!(true)), "{hidden:?}");
        let second = hidden.iter().map(|row| row["id"].as_str().unwrap().to_owned()).find(|id| *id != first).unwrap();

        // "Not spam" on the second thread, which has no mark of its own.
        let data = app.gql(&agent, spam, json!({ "id": second, "spam": false })).await;
        assert_eq!(data["markConversationSpam"]["conversation"], json!({ "id": second, "spam": false }));
        let shown = inbox(&app, &agent, json!({})).await;
        assert_eq!(shown.len(), 2, "both threads of the author show again: {shown:?}");
        assert!(shown.iter().all(|row| row["spam"] == json!(false)), "{shown:?}");
        assert_eq!(inbox(&app, &agent, json!({ "spam": true })).await.len(), 0);
        let spam_events = || async {
            events(&app).await.into_iter().filter(|(kind, _)| kind == "conversation.spam_set").map(|(_, payload)| (payload["id"].clone(), payload["spam"].clone())).collect::<Vec<_>>()
        };
        let unmarked = spam_events().await;
        assert_eq!(unmarked.len(), 3, "a mark, then an un-mark for each thread: {unmarked:?}");
        assert!(unmarked[1..].iter().all(|(_, spam)| *spam == json!(false)), "{unmarked:?}");
        // Nothing left to take off: a no-op, no event.
        app.gql(&agent, spam, json!({ "id": second, "spam": false })).await;
        assert_eq!(spam_events().await.len(), 3);
    }
}

backend_test! {
    async fn inbox_counts_read_every_status_in_one_statement(app: TestApp) {
        let agent = app.key(Role::Agent).await;
        let ids = seeded(&app, 4).await;
        let until = domain::now() + chrono::Duration::seconds(2);
        app.gql(&agent, SET_STATUS, json!({ "input": { "conversationId": ids[0], "status": "SNOOZED", "snoozedUntil": until } })).await;
        app.gql(&agent, SET_STATUS, json!({ "input": { "conversationId": ids[1], "status": "SNOOZED", "snoozedUntil": "2099-01-01T00:00:00Z" } })).await;
        app.gql(&agent, SET_STATUS, json!({ "input": { "conversationId": ids[2], "status": "PENDING" } })).await;
        sleep_past(until).await;
        // What any query costs (the key's authentication), then the counts on top of it.
        let before = app.statements();
        app.gql(&agent, "{ __typename }", json!({})).await;
        let base = app.statements() - before;
        let before = app.statements();
        let counts = app.gql(&agent, COUNTS, json!({})).await;
        assert_eq!(app.statements() - before, base + 1, "inboxCounts takes one statement");
        assert_eq!(counts["inboxCounts"], json!({ "open": 2, "pending": 1, "snoozed": 1, "resolved": 0, "total": 4 }), "the due snooze counts as OPEN");
    }
}

backend_test! {
    async fn the_inbox_filters_on_the_sentiment_of_the_customers_latest_message(app: TestApp) {
        let admin = app.key(Role::Admin).await;
        let source = source(&app, &admin).await;
        let said = |id: &str, minute, thread: &str, text: &str, outbound| InboundItem {
            text: text.into(),
            thread_key: Some(thread.into()),
            ..item(id, minute, outbound)
        };
        ingest(&app, &source, said("1", 0, "happy", "I love it, support was amazing! Thanks", false)).await;
        ingest(&app, &source, said("2", 1, "angry", "Broken again, terrible and slow", false)).await;
        ingest(&app, &source, said("3", 2, "plain", "The meeting is on Tuesday at 10", false)).await;
        // Angry first, happy last: the latest customer message counts ...
        ingest(&app, &source, said("4", 3, "turned", "This is terrible", false)).await;
        ingest(&app, &source, said("5", 4, "turned", "Fixed, thanks, you are amazing", false)).await;
        // ... and ours does not.
        ingest(&app, &source, said("6", 5, "angry", "We are so happy to help, wonderful!", true)).await;
        let texts = |rows: Vec<Value>| {
            let mut texts: Vec<String> = rows
                .iter()
                .map(|row| row["lastInteraction"]["text"].as_str().unwrap().to_owned())
                .collect();
            texts.sort();
            texts
        };
        let unhappy = inbox(&app, &admin, json!({ "sentiment": { "max": -0.3 } })).await;
        assert_eq!(texts(unhappy), ["We are so happy to help, wonderful!"], "the angry thread, whatever we answered");
        let happy = inbox(&app, &admin, json!({ "sentiment": { "min": 0.3 } })).await;
        assert_eq!(texts(happy), ["Fixed, thanks, you are amazing", "I love it, support was amazing! Thanks"]);
        let neutral = inbox(&app, &admin, json!({ "sentiment": { "min": -0.1, "max": 0.1 } })).await;
        assert_eq!(texts(neutral), ["The meeting is on Tuesday at 10"]);
        assert_eq!(inbox(&app, &admin, json!({ "sentiment": {} })).await.len(), 4, "every scored conversation");
        for (range, what) in [(json!({ "min": 2 }), "between -1"), (json!({ "min": 0.5, "max": -0.5 }), "must not be above")] {
            let (code, body) = app.gql_error(&admin, INBOX, json!({ "filter": { "sentiment": range } })).await;
            assert_eq!(code, "BAD_USER_INPUT");
            assert!(body.to_string().contains(what), "{body}");
        }
    }
}

backend_test! {
    async fn two_agents_making_the_same_change_at_once_write_one_event(app: TestApp) {
        let admin = app.key(Role::Admin).await;
        let source = source(&app, &admin).await;
        for n in 0..12 {
            let thread = format!("thread-{n}");
            ingest(&app, &source, InboundItem { thread_key: Some(thread), ..item(&n.to_string(), n, false) }).await;
        }
        let ids: Vec<String> = inbox(&app, &admin, json!({})).await.iter().map(|row| row["id"].as_str().unwrap().to_owned()).collect();
        assert_eq!(ids.len(), 12);
        let before = events(&app).await.len();
        // Each conversation resolved by two requests at once, and by a bulk change over all.
        let single = ids.iter().flat_map(|id| {
            let input = json!({ "input": { "conversationId": id, "status": "RESOLVED" } });
            [input.clone(), input]
        });
        let bulk = "mutation($ids: [ID!]!) { bulkSetConversationStatus(input: { conversationIds: $ids, status: RESOLVED }) { conversations { status } } }";
        let (singles, _) = tokio::join!(
            futures_util::future::join_all(single.map(|variables| app.gql(&admin, SET_STATUS, variables))),
            app.gql(&admin, bulk, json!({ "ids": ids })),
        );
        assert!(singles.iter().all(|data| data["setConversationStatus"]["conversation"]["status"] == "RESOLVED"));
        let changes: Vec<_> = events(&app).await.into_iter().skip(before).map(|(kind, _)| kind).collect();
        assert_eq!(changes.len(), 12, "one status change per conversation, whoever made it: {changes:?}");
        assert!(changes.iter().all(|kind| kind == "conversation.status_set"), "{changes:?}");
    }
}

backend_test! {
    async fn a_deactivated_users_keys_stop_working_and_a_key_never_acts_above_its_user(app: TestApp) {
        let admin = app.key(Role::Admin).await;
        let carmen = user(&app, "acme", "Carmen", "carmen@example.com").await;
        // An admin key made for an agent acts as an agent.
        let carmens = key_of(&app, "acme", Role::Admin, carmen).await;
        let update = "mutation($input: UpdateUserInput!) { updateUser(input: $input) { user { name role active } } }";
        let input = json!({ "input": { "userId": rapport::ids::encode(carmen), "name": "Carmen R." } });
        let (code, _) = app.gql_error(&carmens, update, input.clone()).await;
        assert_eq!(code, "FORBIDDEN", "her key is capped at her agent role");
        let data = app.gql(&admin, update, input).await;
        assert_eq!(data["updateUser"]["user"], json!({ "name": "Carmen R.", "role": "AGENT", "active": true }));
        assert_eq!(app.gql(&carmens, "{ me { name } }", json!({})).await["me"]["name"], "Carmen R.");

        // Deactivated: her key is refused at once, she cannot be assigned.
        let off = json!({ "input": { "userId": rapport::ids::encode(carmen), "active": false } });
        assert_eq!(app.gql(&admin, update, off).await["updateUser"]["user"]["active"], false);
        let (status, body) = app.post(&carmens, "{ me { name } }", json!({})).await;
        assert_eq!(status, 401, "{body}");
        assert_eq!(body["errors"][0]["extensions"]["code"], "UNAUTHENTICATED");
        // Reactivated: the key works again.
        let on = json!({ "input": { "userId": rapport::ids::encode(carmen), "active": true } });
        app.gql(&admin, update, on).await;
        assert_eq!(app.gql(&carmens, "{ me { active } }", json!({})).await["me"]["active"], true);

        // Viewers change nobody; another workspace's admin cannot find her; bad input says which field.
        let viewer = app.key(Role::Viewer).await;
        let (code, _) = app.gql_error(&viewer, update, json!({ "input": { "userId": rapport::ids::encode(carmen), "active": false } })).await;
        assert_eq!(code, "FORBIDDEN");
        let other = app.key_in("globex", Role::Admin).await;
        let (code, _) = app.gql_error(&other, update, json!({ "input": { "userId": rapport::ids::encode(carmen), "active": false } })).await;
        assert_eq!(code, "NOT_FOUND");
        let (code, body) = app.gql_error(&admin, update, json!({ "input": { "userId": rapport::ids::encode(carmen), "name": "  " } })).await;
        assert_eq!(code, "BAD_USER_INPUT", "{body}");
        let (code, _) = app.gql_error(&admin, update, json!({ "input": { "userId": rapport::ids::encode(carmen), "role": "OWNER" } })).await;
        assert_eq!(code, "FORBIDDEN", "only an owner makes owners");
        let kinds: Vec<String> = entity::event::Entity::find()
            .order_by_asc(entity::event::Column::Seq)
            .all(&app.app.db)
            .await
            .unwrap()
            .into_iter()
            .map(|event| event.kind)
            .filter(|kind| kind.starts_with("user."))
            .collect();
        assert_eq!(kinds, ["user.created", "user.updated", "user.updated", "user.updated"]);
    }
}
