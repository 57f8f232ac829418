//! Replies to conversations against a local Mastodon server (the documented
//! notifications, `POST /api/v1/statuses` and `GET /api/v2/instance`): a reply reaches the
//! platform with the answered status's id and the Idempotency-Key, once; failures (429,
//! 500, 401) are stored FAILED with the platform's error and retried into exactly one
//! post; text over the instance's limit never reaches it; the workspace's
//! `replySetsPending`; conversation notes; saved replies and their placeholders; tenancy.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use rapport::domain::event::EventKind;
use rapport::domain::Role;
use serde_json::{json, Value};

use crate::backend_test;
use crate::common::TestApp;
use crate::feeds::{sync, CREATE};
use crate::platform::{fixture, Platform, Reply};

const TOKEN: &str = "Xy7Qp2mastodon-secret-token-Lk9";
const REPLY: &str = "mutation($input: ReplyToConversationInput!) { replyToConversation(input: $input) { interaction { id externalId direction kind text deliveryStatus deliveryError conversation { id status firstResponseAt waitingSince } } } }";
const RETRY: &str = "mutation($id: ID!) { retryReply(input: { interactionId: $id }) { interaction { id externalId deliveryStatus deliveryError text conversation { firstResponseAt } } } }";
const CONVERSATION: &str = "query($id: ID!) { node(id: $id) { ... on Conversation { status firstResponseAt waitingSince notes { body author conversation { id } } } } }";
const POSTED: &str = "/api/v1/statuses";

/// A Mastodon server whose mentions are added by the test and whose answers to posted
/// statuses are scripted by status code (200 when none is queued).
struct Mastodon {
    server: Platform,
    mentions: Arc<Mutex<Vec<Value>>>,
    answers: Arc<Mutex<VecDeque<u16>>>,
}

impl Mastodon {
    async fn start() -> Mastodon {
        let server = Platform::start().await;
        server.on(
            "/api/v1/accounts/verify_credentials",
            vec![Reply::ok(
                "application/json",
                fixture("mastodon/verify_credentials.json"),
            )],
        );
        let mentions: Arc<Mutex<Vec<Value>>> = Arc::default();
        let shown = mentions.clone();
        server.handle("/api/v1/notifications", move |seen| {
            let min_id: u64 = seen
                .query
                .split('&')
                .find_map(|pair| pair.strip_prefix("min_id="))
                .and_then(|id| id.parse().ok())
                .unwrap_or(0);
            let mut page: Vec<Value> = shown
                .lock()
                .unwrap()
                .iter()
                .filter(|n| n["id"].as_str().unwrap().parse::<u64>().unwrap() > min_id)
                .cloned()
                .collect();
            page.reverse();
            Reply::json(&json!(page))
        });
        let answers: Arc<Mutex<VecDeque<u16>>> = Arc::default();
        let queued = answers.clone();
        let count = Arc::new(Mutex::new(0u64));
        server.handle(POSTED, move |seen| {
            let status = queued.lock().unwrap().pop_front().unwrap_or(200);
            match status {
                200 => {
                    let mut count = count.lock().unwrap();
                    *count += 1;
                    let body: Value = serde_json::from_slice(&seen.body).unwrap();
                    let id = format!("{}", 113_200_000_000_000_000u64 + *count);
                    Reply::json(&json!({
                        "id": id,
                        "url": format!("https://mastodon.local/@acmehq/{id}"),
                        "in_reply_to_id": body["in_reply_to_id"],
                        "content": format!("<p>{}</p>", body["status"].as_str().unwrap()),
                    }))
                }
                429 => Reply::status(429).header("retry-after", "30"),
                other => Reply::status(other),
            }
        });
        Mastodon {
            server,
            mentions,
            answers,
        }
    }

    /// Adds mention `n` (from fan `fan`) and returns its status id.
    fn mention(&self, n: u64, fan: u64) -> String {
        self.answer(n, fan, None)
    }

    /// Adds mention `n` (from fan `fan`) answering the status `answers`; returns its id.
    fn answer(&self, n: u64, fan: u64, answers: Option<&str>) -> String {
        let id = (113_100_000_000_000_000u64 + n).to_string();
        let account = json!({
            "id": (109_000_000_000_000_100u64 + fan).to_string(),
            "username": format!("fan{fan}"),
            "acct": format!("fan{fan}@fans.example"),
            "display_name": format!("Fan {fan}"),
            "url": format!("https://fans.example/@fan{fan}"),
            "uri": format!("https://fans.example/users/fan{fan}"),
        });
        let at = (chrono::Utc::now() - chrono::Duration::minutes(60 - n as i64))
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        self.mentions.lock().unwrap().push(json!({
            "id": (40_000_000 + n).to_string(),
            "type": "mention",
            "created_at": at,
            "account": account,
            "status": {
                "id": id,
                "created_at": at,
                "in_reply_to_id": answers,
                "visibility": "unlisted",
                "language": "en",
                "uri": format!("https://fans.example/users/fan{fan}/statuses/{id}"),
                "url": format!("https://fans.example/@fan{fan}/{id}"),
                "content": format!("<p>@acmehq question {n} about the export</p>"),
                "account": account,
            }
        }));
        id
    }

    fn fail_next(&self, statuses: &[u16]) {
        self.answers.lock().unwrap().extend(statuses);
    }

    fn posts(&self) -> Vec<crate::platform::Seen> {
        self.server.seen(POSTED)
    }
}

/// A Mastodon source of `acme` on `server`, synced; returns its id.
async fn source(app: &TestApp, admin: &str, server: &Mastodon, name: &str) -> String {
    let config = json!({ "base_url": server.server.base, "access_token": TOKEN });
    let input = json!({ "channel": "MASTODON", "name": name, "config": config });
    let id = app.gql(admin, CREATE, json!({ "input": input })).await["createSource"]["source"]
        ["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let report = sync(app, admin, &id).await;
    assert_eq!(report["error"], Value::Null, "{report:#}");
    id
}

/// The conversation and the id of the interaction with `external_id`.
async fn conversation_of(app: &TestApp, key: &str, external_id: &str) -> (String, String) {
    let data = app
        .gql(
            key,
            "{ interactions(first: 100) { edges { node { id externalId conversation { id } } } } }",
            json!({}),
        )
        .await;
    let node = data["interactions"]["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|edge| &edge["node"])
        .find(|node| node["externalId"] == external_id)
        .unwrap_or_else(|| panic!("no interaction {external_id} in {data:#}"))
        .clone();
    (
        node["conversation"]["id"].as_str().unwrap().to_owned(),
        node["id"].as_str().unwrap().to_owned(),
    )
}

async fn reply(app: &TestApp, key: &str, input: Value) -> Value {
    app.gql(key, REPLY, json!({ "input": input })).await["replyToConversation"]["interaction"]
        .clone()
}

async fn conversation(app: &TestApp, key: &str, id: &str) -> Value {
    app.gql(key, CONVERSATION, json!({ "id": id })).await["node"].clone()
}

/// The stored events of `kind`, oldest first.
async fn events(app: &TestApp, kind: EventKind) -> Vec<Value> {
    rapport::domain::event::after(&app.app.db, 0, 10_000)
        .await
        .unwrap()
        .into_iter()
        .filter(|event| event.kind == Some(kind))
        .map(|event| event.payload)
        .collect()
}

backend_test!(
    async fn a_reply_reaches_mastodon_once_and_is_the_first_response(app: TestApp) {
        let admin = app.key(Role::Admin).await;
        let agent = app.key(Role::Agent).await;
        let mastodon = Mastodon::start().await;
        let first = mastodon.mention(1, 1);
        let source_id = source(&app, &admin, &mastodon, "acmehq").await;
        let (conversation_id, _) = conversation_of(&app, &agent, &first).await;
        let before = conversation(&app, &agent, &conversation_id).await;
        assert_eq!(before["firstResponseAt"], Value::Null);
        assert!(before["waitingSince"].is_string());

        let input = json!({ "conversationId": conversation_id, "text": " fixed now, thanks! ", "idempotencyKey": "reply-1" });
        let sent = reply(&app, &agent, input.clone()).await;
        assert_eq!(sent["deliveryStatus"], "SENT", "{sent:#}");
        assert_eq!(sent["deliveryError"], Value::Null);
        assert_eq!(sent["direction"], "OUTBOUND");
        assert_eq!(sent["kind"], "REPLY");
        assert_eq!(sent["externalId"], "113200000000000001");
        assert_eq!(sent["text"], "@fan1@fans.example fixed now, thanks!");
        assert_eq!(sent["conversation"]["id"], conversation_id.as_str());
        assert_eq!(sent["conversation"]["status"], "OPEN");
        assert_eq!(sent["conversation"]["waitingSince"], Value::Null);
        let first_response = sent["conversation"]["firstResponseAt"].clone();
        assert!(first_response.is_string(), "{sent:#}");

        // The status answers the latest mention, in its visibility, with the key.
        let posts = mastodon.posts();
        assert_eq!(posts.len(), 1);
        assert_eq!(posts[0].headers["idempotency-key"], "reply-1");
        assert_eq!(posts[0].headers["authorization"], format!("Bearer {TOKEN}"));
        let body: Value = serde_json::from_slice(&posts[0].body).unwrap();
        assert_eq!(body["in_reply_to_id"], first.as_str());
        assert_eq!(body["visibility"], "unlisted");
        assert_eq!(body["status"], "@fan1@fans.example fixed now, thanks!");

        // The same key again: the same reply, nothing sent.
        let again = reply(&app, &agent, input).await;
        assert_eq!(again["id"], sent["id"]);
        assert_eq!(mastodon.posts().len(), 1);

        // The fan answers our reply (same conversation); a second reply, to that
        // interaction by name: sent, but the first response stays.
        let second = mastodon.answer(2, 1, sent["externalId"].as_str());
        sync(&app, &admin, &source_id).await;
        let (same, answered) = conversation_of(&app, &agent, &second).await;
        assert_eq!(same, conversation_id);
        let later = reply(
            &app,
            &agent,
            json!({ "conversationId": conversation_id, "text": "and the second", "inReplyToId": answered }),
        )
        .await;
        assert_eq!(later["deliveryStatus"], "SENT");
        assert_eq!(later["conversation"]["firstResponseAt"], first_response);
        let posts = mastodon.posts();
        assert_eq!(posts.len(), 2);
        let body: Value = serde_json::from_slice(&posts[1].body).unwrap();
        assert_eq!(body["in_reply_to_id"], second.as_str());
        // Without a key, the same text to the same item is one reply too.
        let same_text = json!({ "conversationId": conversation_id, "text": "and the second", "inReplyToId": answered });
        assert_eq!(reply(&app, &agent, same_text).await["id"], later["id"]);
        assert_eq!(mastodon.posts().len(), 2);

        // The same key twice at once: one row, one post.
        let both = json!({ "conversationId": conversation_id, "text": "at once", "idempotencyKey": "reply-parallel" });
        let (one, two) = tokio::join!(
            reply(&app, &agent, both.clone()),
            reply(&app, &agent, both.clone())
        );
        assert_eq!(one["id"], two["id"]);
        assert_eq!(mastodon.posts().len(), 3);

        // Every change is an event naming who.
        let deliveries = events(&app, EventKind::InteractionDeliveryChanged).await;
        let statuses: Vec<&str> = deliveries
            .iter()
            .map(|event| event["delivery_status"].as_str().unwrap())
            .collect();
        assert_eq!(statuses, ["sending", "sent"].repeat(3));
        assert!(deliveries
            .iter()
            .all(|event| event["actor"]["name"] == "agent-key"));
        // Each reply is an interaction once sent.
        let created = events(&app, EventKind::InteractionCreated).await;
        let outbound = created
            .iter()
            .filter(|event| event["direction"] == "outbound")
            .count();
        assert_eq!(outbound, 3);

        // A viewer may not reply; a reply without text or saved reply is refused.
        let viewer = app.key(Role::Viewer).await;
        let (code, _) = app
            .gql_error(
                &viewer,
                REPLY,
                json!({ "input": { "conversationId": conversation_id, "text": "hi" } }),
            )
            .await;
        assert_eq!(code, "FORBIDDEN");
        let (code, _) = app
            .gql_error(
                &agent,
                REPLY,
                json!({ "input": { "conversationId": conversation_id } }),
            )
            .await;
        assert_eq!(code, "BAD_USER_INPUT");
        assert_eq!(mastodon.posts().len(), 3);
    }
);

backend_test!(
    async fn failed_replies_keep_the_platform_error_and_a_retry_posts_once(app: TestApp) {
        let admin = app.key(Role::Admin).await;
        let agent = app.key(Role::Agent).await;
        let mastodon = Mastodon::start().await;
        let mention = mastodon.mention(1, 1);
        source(&app, &admin, &mastodon, "acmehq").await;
        let (conversation_id, _) = conversation_of(&app, &agent, &mention).await;
        for (n, (status, says)) in [
            (429, "rate-limited the reply (429); retry after"),
            (500, "answered 500"),
            (401, "answered 401: check the source's credentials"),
        ]
        .into_iter()
        .enumerate()
        {
            let key = format!("reply-{status}");
            mastodon.fail_next(&[status]);
            let input = json!({ "conversationId": conversation_id, "text": format!("attempt {status}"), "idempotencyKey": key });
            let failed = reply(&app, &agent, input.clone()).await;
            assert_eq!(failed["deliveryStatus"], "FAILED", "{failed:#}");
            assert_eq!(failed["externalId"], Value::Null);
            let error = failed["deliveryError"].as_str().unwrap();
            assert!(error.contains(says), "{error}");
            assert!(
                !error.contains(TOKEN) && !error.contains("Bearer"),
                "{error}"
            );
            // The first successful reply is the first response, not a failed one.
            if n == 0 {
                assert_eq!(failed["conversation"]["firstResponseAt"], Value::Null);
            }
            assert_eq!(mastodon.posts().len(), 2 * n + 1);
            // The same key again returns the failed reply and sends nothing.
            assert_eq!(reply(&app, &agent, input).await["id"], failed["id"]);
            assert_eq!(mastodon.posts().len(), 2 * n + 1);

            let retried = app.gql(&agent, RETRY, json!({ "id": failed["id"] })).await["retryReply"]
                ["interaction"]
                .clone();
            assert_eq!(retried["id"], failed["id"]);
            assert_eq!(retried["deliveryStatus"], "SENT", "{retried:#}");
            assert_eq!(retried["deliveryError"], Value::Null);
            assert!(retried["externalId"].is_string());
            assert!(retried["conversation"]["firstResponseAt"].is_string());
            let posts = mastodon.posts();
            assert_eq!(posts.len(), 2 * n + 2);
            // Both attempts carried the reply's key, so Mastodon can drop a repeat.
            assert_eq!(posts[2 * n].headers["idempotency-key"], key.as_str());
            assert_eq!(posts[2 * n + 1].headers["idempotency-key"], key.as_str());
            // A SENT reply is returned untouched.
            let untouched = app.gql(&agent, RETRY, json!({ "id": failed["id"] })).await
                ["retryReply"]["interaction"]
                .clone();
            assert_eq!(untouched, retried);
            assert_eq!(mastodon.posts().len(), 2 * n + 2);
        }
        // Failing, retrying and sending are events naming who.
        let deliveries = events(&app, EventKind::InteractionDeliveryChanged).await;
        let statuses: Vec<&str> = deliveries
            .iter()
            .map(|event| event["delivery_status"].as_str().unwrap())
            .collect();
        assert_eq!(statuses, ["sending", "failed", "sending", "sent"].repeat(3));

        // A reply whose process stopped between sending and recording stays SENDING: a
        // retry leaves it while it may still be under way, and sends it again (same key)
        // once it is abandoned.
        mastodon.fail_next(&[500]);
        let stuck = reply(&app, &agent, json!({ "conversationId": conversation_id, "text": "stuck", "idempotencyKey": "reply-stuck" })).await;
        let posts = mastodon.posts().len();
        let stuck_id: entity::InteractionId =
            rapport::ids::decode("id", stuck["id"].as_str().unwrap()).unwrap();
        let sending = |minutes_ago: i64| {
            use sea_orm::sea_query::Expr;
            use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
            let at = rapport::domain::now() - chrono::Duration::minutes(minutes_ago);
            entity::interaction::Entity::update_many()
                .col_expr(
                    entity::interaction::Column::DeliveryStatus,
                    Expr::value("sending"),
                )
                .col_expr(
                    entity::interaction::Column::DeliveryAttemptedAt,
                    Expr::value(Some(at)),
                )
                .filter(entity::interaction::Column::Id.eq(stuck_id))
                .exec(&app.app.db)
        };
        sending(0).await.unwrap();
        let left = app.gql(&agent, RETRY, json!({ "id": stuck["id"] })).await["retryReply"]
            ["interaction"]
            .clone();
        assert_eq!(left["deliveryStatus"], "SENDING");
        assert_eq!(mastodon.posts().len(), posts);
        sending(10).await.unwrap();
        let resent = app.gql(&agent, RETRY, json!({ "id": stuck["id"] })).await["retryReply"]
            ["interaction"]
            .clone();
        assert_eq!(resent["deliveryStatus"], "SENT", "{resent:#}");
        let all = mastodon.posts();
        assert_eq!(all.len(), posts + 1);
        assert_eq!(all[posts].headers["idempotency-key"], "reply-stuck");
        // An interaction that is not a reply from Rapport has nothing to retry.
        let (_, inbound) = conversation_of(&app, &agent, &mention).await;
        let (code, _) = app.gql_error(&agent, RETRY, json!({ "id": inbound })).await;
        assert_eq!(code, "BAD_USER_INPUT");
    }
);

backend_test!(
    async fn text_over_the_instance_limit_never_reaches_it(app: TestApp) {
        let admin = app.key(Role::Admin).await;
        let agent = app.key(Role::Agent).await;
        // An instance that does not say its limit: Mastodon's default 500.
        let mastodon = Mastodon::start().await;
        let mention = mastodon.mention(1, 1);
        source(&app, &admin, &mastodon, "default").await;
        let (conversation_id, _) = conversation_of(&app, &agent, &mention).await;
        // The mention Rapport adds counts as Mastodon counts it: `@fan1` and a space.
        let too_long = "x".repeat(495);
        let (code, body) = app
            .gql_error(
                &agent,
                REPLY,
                json!({ "input": { "conversationId": conversation_id, "text": too_long } }),
            )
            .await;
        assert_eq!(code, "BAD_USER_INPUT", "{body:#}");
        let message = body["errors"][0]["message"].as_str().unwrap();
        assert!(message.contains("at most 500 characters"), "{message}");
        assert!(message.contains("501 characters"), "{message}");
        assert_eq!(mastodon.posts().len(), 0);
        let fits = reply(
            &app,
            &agent,
            json!({ "conversationId": conversation_id, "text": "x".repeat(494) }),
        )
        .await;
        assert_eq!(fits["deliveryStatus"], "SENT");
        assert_eq!(mastodon.posts().len(), 1);

        // An instance that allows 100: its own limit, asked once.
        let small = Mastodon::start().await;
        small.server.on(
            "/api/v2/instance",
            vec![Reply::json(&json!({ "domain": "small.example", "configuration": { "statuses": { "max_characters": 100, "max_media_attachments": 4 } } }))],
        );
        let mention = small.mention(1, 2);
        source(&app, &admin, &small, "small").await;
        let (small_conversation, _) = conversation_of(&app, &agent, &mention).await;
        for _ in 0..2 {
            let (code, body) = app
                .gql_error(&agent, REPLY, json!({ "input": { "conversationId": small_conversation, "text": "y".repeat(150) } }))
                .await;
            assert_eq!(code, "BAD_USER_INPUT");
            let message = body["errors"][0]["message"].as_str().unwrap();
            assert!(message.contains("at most 100 characters"), "{message}");
        }
        assert_eq!(small.posts().len(), 0);
        assert_eq!(small.server.seen("/api/v2/instance").len(), 1);
        let fits = reply(
            &app,
            &agent,
            json!({ "conversationId": small_conversation, "text": "y".repeat(90) }),
        )
        .await;
        assert_eq!(fits["deliveryStatus"], "SENT");
        assert_eq!(small.posts().len(), 1);
        // Nothing was stored for the refused replies.
        let outbound = app
            .gql(
                &agent,
                "{ interactions(filter: { direction: OUTBOUND }) { totalCount } }",
                json!({}),
            )
            .await;
        assert_eq!(outbound["interactions"]["totalCount"], 2);
    }
);

const SETTINGS: &str = "mutation($on: Boolean) { updateWorkspaceSettings(input: { replySetsPending: $on }) { workspace { settings { replySetsPending } } } }";

backend_test!(
    async fn our_reply_moves_open_to_pending_only_when_the_workspace_says_so(app: TestApp) {
        let admin = app.key(Role::Admin).await;
        let agent = app.key(Role::Agent).await;
        let mastodon = Mastodon::start().await;
        let mention = mastodon.mention(1, 1);
        let source_id = source(&app, &admin, &mastodon, "acmehq").await;
        let (conversation_id, _) = conversation_of(&app, &agent, &mention).await;
        let viewer = app.key(Role::Viewer).await;
        let settings = app
            .gql(
                &viewer,
                "{ viewer { workspace { settings { replySetsPending } } } }",
                json!({}),
            )
            .await;
        assert_eq!(
            settings["viewer"]["workspace"]["settings"]["replySetsPending"],
            false
        );

        // Off (the default): the conversation stays OPEN.
        let sent = reply(
            &app,
            &agent,
            json!({ "conversationId": conversation_id, "text": "one" }),
        )
        .await;
        assert_eq!(sent["conversation"]["status"], "OPEN");

        // Only an admin changes it.
        let (code, _) = app.gql_error(&agent, SETTINGS, json!({ "on": true })).await;
        assert_eq!(code, "FORBIDDEN");
        let on = app.gql(&admin, SETTINGS, json!({ "on": true })).await;
        assert_eq!(
            on["updateWorkspaceSettings"]["workspace"]["settings"]["replySetsPending"],
            true
        );
        let changed = events(&app, EventKind::WorkspaceSettingsUpdated).await;
        assert_eq!(changed.len(), 1);
        assert_eq!(changed[0]["actor"]["name"], "admin-key");
        assert_eq!(changed[0]["settings"]["reply_sets_pending"], true);
        // Setting nothing changes nothing.
        let same = app.gql(&admin, SETTINGS, json!({})).await;
        assert_eq!(
            same["updateWorkspaceSettings"]["workspace"]["settings"]["replySetsPending"],
            true
        );

        // On: our reply moves OPEN → PENDING, as a status set by the agent.
        let sent = reply(
            &app,
            &agent,
            json!({ "conversationId": conversation_id, "text": "two" }),
        )
        .await;
        assert_eq!(sent["conversation"]["status"], "PENDING", "{sent:#}");
        let set = events(&app, EventKind::ConversationStatusSet).await;
        assert_eq!(set.len(), 1);
        assert_eq!(set[0]["status"], "pending");
        assert_eq!(set[0]["actor"]["name"], "agent-key");
        // The customer writes again: OPEN.
        let answer = mastodon.answer(2, 1, sent["externalId"].as_str());
        sync(&app, &admin, &source_id).await;
        let (same_conversation, _) = conversation_of(&app, &agent, &answer).await;
        assert_eq!(same_conversation, conversation_id);
        assert_eq!(
            conversation(&app, &agent, &conversation_id).await["status"],
            "OPEN"
        );
        // A failed reply leaves it OPEN.
        mastodon.fail_next(&[500]);
        let failed = reply(
            &app,
            &agent,
            json!({ "conversationId": conversation_id, "text": "three" }),
        )
        .await;
        assert_eq!(failed["deliveryStatus"], "FAILED");
        assert_eq!(failed["conversation"]["status"], "OPEN");
        // Off again: OPEN stays OPEN.
        app.gql(&admin, SETTINGS, json!({ "on": false })).await;
        let sent = reply(
            &app,
            &agent,
            json!({ "conversationId": conversation_id, "text": "four" }),
        )
        .await;
        assert_eq!(sent["conversation"]["status"], "OPEN");
    }
);

/// A user of `acme` named `name` and a key of theirs with `role`.
async fn user_key(app: &TestApp, name: &str, role: Role) -> String {
    let workspace = rapport::domain::workspace::ensure(&app.app.db, "acme")
        .await
        .unwrap();
    let owner = rapport::domain::Caller::owner_without_key(workspace.id, "test");
    let email = format!("{}@acme.example", name.to_lowercase());
    let user = rapport::domain::user::create(
        &app.app.db,
        &owner,
        rapport::domain::user::NewUser {
            name,
            email: &email,
            role,
        },
    )
    .await
    .unwrap();
    rapport::domain::workspace::create_key_for(
        &app.app.db,
        workspace.id,
        role,
        "ana-key",
        Some(user.id),
    )
    .await
    .unwrap()
    .1
}

const NOTE: &str = "mutation($id: ID!, $body: String!) { addConversationNote(input: { conversationId: $id, body: $body }) { note { body author conversation { id } } } }";
const SAVE: &str = "mutation($name: String!, $body: String!) { createSavedReply(input: { name: $name, body: $body }) { savedReply { id name body createdBy } } }";
const SAVED: &str =
    "{ savedReplies(first: 10) { edges { node { id name body } } pageInfo { hasNextPage } } }";

backend_test!(
    async fn notes_stay_inside_and_saved_replies_fill_their_placeholders(app: TestApp) {
        let admin = app.key(Role::Admin).await;
        let agent = app.key(Role::Agent).await;
        let ana = user_key(&app, "Ana", Role::Agent).await;
        let mastodon = Mastodon::start().await;
        let mention = mastodon.mention(1, 1);
        source(&app, &admin, &mastodon, "acmehq").await;
        let (conversation_id, _) = conversation_of(&app, &agent, &mention).await;

        // Notes: newest first, by the user (else the key), never sent anywhere.
        app.gql(
            &agent,
            NOTE,
            json!({ "id": conversation_id, "body": "customer is on the old plan" }),
        )
        .await;
        let note = app
            .gql(
                &ana,
                NOTE,
                json!({ "id": conversation_id, "body": "I'll take it" }),
            )
            .await;
        assert_eq!(note["addConversationNote"]["note"]["author"], "Ana");
        assert_eq!(
            note["addConversationNote"]["note"]["conversation"]["id"],
            conversation_id.as_str()
        );
        let notes = conversation(&app, &agent, &conversation_id).await["notes"].clone();
        assert_eq!(notes[0]["body"], "I'll take it");
        assert_eq!(notes[1]["body"], "customer is on the old plan");
        assert_eq!(notes[1]["author"], "agent-key");
        assert_eq!(mastodon.posts().len(), 0);
        let added = events(&app, EventKind::ConversationNoteAdded).await;
        assert_eq!(added.len(), 2);
        assert_eq!(added[1]["actor"]["name"], "ana-key");
        let viewer = app.key(Role::Viewer).await;
        let (code, _) = app
            .gql_error(&viewer, NOTE, json!({ "id": conversation_id, "body": "x" }))
            .await;
        assert_eq!(code, "FORBIDDEN");

        // Saved replies: an unknown placeholder is refused when saved.
        let (code, body) = app
            .gql_error(
                &agent,
                SAVE,
                json!({ "name": "bad", "body": "Hi {{customer.email}}" }),
            )
            .await;
        assert_eq!(code, "BAD_USER_INPUT");
        assert!(
            body["errors"][0]["message"]
                .as_str()
                .unwrap()
                .contains("{{customer.email}}"),
            "{body:#}"
        );
        let saved = app
            .gql(&ana, SAVE, json!({ "name": "thanks", "body": "Hi {{customer.givenName}}{{ customer.familyName }}, {{agent.name}} here: fixed." }))
            .await["createSavedReply"]["savedReply"]
            .clone();
        assert_eq!(saved["createdBy"], "Ana");
        let (code, _) = app
            .gql_error(&agent, SAVE, json!({ "name": "thanks", "body": "again" }))
            .await;
        assert_eq!(code, "CONFLICT");
        let customer = app
            .gql(
                &agent,
                "query($id: ID!) { node(id: $id) { ... on Conversation { customer { id } } } }",
                json!({ "id": conversation_id }),
            )
            .await["node"]["customer"]["id"]
            .clone();
        app.gql(
            &agent,
            "mutation($id: ID!) { updateCustomer(input: { id: $id, givenName: \"Maya\" }) { customer { id } } }",
            json!({ "id": customer }),
        )
        .await;

        // Used in a reply: rendered for the customer and the sending user; a missing
        // value is empty.
        let sent = reply(
            &app,
            &ana,
            json!({ "conversationId": conversation_id, "savedReplyId": saved["id"] }),
        )
        .await;
        assert_eq!(sent["deliveryStatus"], "SENT");
        let body: Value = serde_json::from_slice(&mastodon.posts()[0].body).unwrap();
        assert_eq!(
            body["status"],
            "@fan1@fans.example Hi Maya, Ana here: fixed."
        );
        // A key of nobody cannot fill {{agent.name}}; text and a saved reply together
        // (or neither) are refused; nothing was sent.
        let (code, _) = app
            .gql_error(&agent, REPLY, json!({ "input": { "conversationId": conversation_id, "savedReplyId": saved["id"] } }))
            .await;
        assert_eq!(code, "BAD_USER_INPUT");
        let (code, _) = app
            .gql_error(&agent, REPLY, json!({ "input": { "conversationId": conversation_id, "savedReplyId": saved["id"], "text": "hi" } }))
            .await;
        assert_eq!(code, "BAD_USER_INPUT");
        assert_eq!(mastodon.posts().len(), 1);

        // Update, list, delete.
        let (code, _) = app
            .gql_error(&agent, "mutation($id: ID!) { updateSavedReply(input: { id: $id, body: \"{{nope}}\" }) { savedReply { id } } }", json!({ "id": saved["id"] }))
            .await;
        assert_eq!(code, "BAD_USER_INPUT");
        let updated = app
            .gql(&agent, "mutation($id: ID!) { updateSavedReply(input: { id: $id, name: \"thanks-short\" }) { savedReply { name body } } }", json!({ "id": saved["id"] }))
            .await;
        assert_eq!(
            updated["updateSavedReply"]["savedReply"]["name"],
            "thanks-short"
        );
        app.gql(
            &agent,
            SAVE,
            json!({ "name": "apology", "body": "Sorry, {{customer.displayName}}." }),
        )
        .await;
        let list = app.gql(&viewer, SAVED, json!({})).await;
        let names: Vec<&str> = list["savedReplies"]["edges"]
            .as_array()
            .unwrap()
            .iter()
            .map(|edge| edge["node"]["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["apology", "thanks-short"]);
        app.gql(
            &agent,
            "mutation($id: ID!) { deleteSavedReply(input: { id: $id }) { savedReply { name } } }",
            json!({ "id": saved["id"] }),
        )
        .await;
        let list = app.gql(&viewer, SAVED, json!({})).await;
        assert_eq!(list["savedReplies"]["edges"].as_array().unwrap().len(), 1);
        assert_eq!(events(&app, EventKind::SavedReplyDeleted).await.len(), 1);
    }
);

backend_test!(
    async fn another_workspace_cannot_reply_retry_note_or_use_saved_replies(app: TestApp) {
        let admin = app.key(Role::Admin).await;
        let agent = app.key(Role::Agent).await;
        let mastodon = Mastodon::start().await;
        let mention = mastodon.mention(1, 1);
        source(&app, &admin, &mastodon, "acmehq").await;
        let (conversation_id, answered) = conversation_of(&app, &agent, &mention).await;
        mastodon.fail_next(&[500]);
        let failed = reply(
            &app,
            &agent,
            json!({ "conversationId": conversation_id, "text": "hi" }),
        )
        .await;
        assert_eq!(failed["deliveryStatus"], "FAILED");
        let saved = app
            .gql(&agent, SAVE, json!({ "name": "thanks", "body": "Thanks!" }))
            .await["createSavedReply"]["savedReply"]["id"]
            .clone();
        let posts = mastodon.posts().len();

        let other = app.key_in("globex", Role::Owner).await;
        let attempts = [
            (REPLY, json!({ "input": { "conversationId": conversation_id, "text": "hi" } })),
            (REPLY, json!({ "input": { "conversationId": conversation_id, "text": "hi", "inReplyToId": answered } })),
            (RETRY, json!({ "id": failed["id"] })),
            (NOTE, json!({ "id": conversation_id, "body": "peek" })),
            ("mutation($id: ID!) { updateSavedReply(input: { id: $id, name: \"mine\" }) { savedReply { id } } }", json!({ "id": saved })),
            ("mutation($id: ID!) { deleteSavedReply(input: { id: $id }) { savedReply { id } } }", json!({ "id": saved })),
        ];
        for (query, variables) in attempts {
            let (code, body) = app.gql_error(&other, query, variables).await;
            assert_eq!(code, "NOT_FOUND", "{body:#}");
        }
        // Their own conversation with our saved reply: the saved reply is not found.
        let theirs = Mastodon::start().await;
        let their_mention = theirs.mention(1, 3);
        let config = json!({ "base_url": theirs.server.base, "access_token": TOKEN });
        let id = app
            .gql(
                &other,
                CREATE,
                json!({ "input": { "channel": "MASTODON", "name": "globex", "config": config } }),
            )
            .await["createSource"]["source"]["id"]
            .as_str()
            .unwrap()
            .to_owned();
        sync(&app, &other, &id).await;
        let (their_conversation, _) = conversation_of(&app, &other, &their_mention).await;
        let (code, _) = app
            .gql_error(
                &other,
                REPLY,
                json!({ "input": { "conversationId": their_conversation, "savedReplyId": saved } }),
            )
            .await;
        assert_eq!(code, "NOT_FOUND");
        let list = app.gql(&other, SAVED, json!({})).await;
        assert_eq!(list["savedReplies"]["edges"], json!([]));
        assert_eq!(mastodon.posts().len(), posts);
        assert_eq!(theirs.posts().len(), 0);
    }
);

backend_test!(
    async fn a_reply_a_sync_stored_first_is_sent_not_failed_and_a_stale_attempt_changes_nothing(
        app: TestApp,
    ) {
        use rapport::domain;
        let admin = app.key(Role::Admin).await;
        let agent = app.key(Role::Agent).await;
        let mastodon = Mastodon::start().await;
        let mention = mastodon.mention(1, 1);
        let source_id = source(&app, &admin, &mastodon, "acmehq").await;
        let (conversation_id, _) = conversation_of(&app, &agent, &mention).await;
        mastodon.fail_next(&[500]);
        let input = json!({ "conversationId": conversation_id, "text": "on its way", "idempotencyKey": "k-1" });
        let failed = reply(&app, &agent, input).await;
        assert_eq!(failed["deliveryStatus"], "FAILED");
        let id: entity::InteractionId =
            rapport::ids::decode("id", failed["id"].as_str().unwrap()).unwrap();
        let caller = domain::workspace::authenticate(&app.app.db, &agent)
            .await
            .unwrap();

        // A retry claims it; meanwhile the platform did take the first attempt, and a
        // listening sync stored our post under its platform id.
        let (claimed, ok) = domain::reply::claim_retry(&app.app.db, &caller, id)
            .await
            .unwrap();
        assert!(ok);
        let source_id: entity::SourceId = rapport::ids::decode("id", &source_id).unwrap();
        let source = domain::source::get(&app.app.db, &caller, source_id)
            .await
            .unwrap();
        let ours = connectors::InboundItem {
            external_id: "post-999".into(),
            author: connectors::Author {
                platform_id: "https://mastodon.example/users/acmehq".into(),
                ..Default::default()
            },
            outbound: true,
            kind: "mention".into(),
            subject: None,
            text: "on its way".into(),
            html: None,
            url: None,
            language: None,
            occurred_at: domain::now(),
            thread_key: None,
            in_reply_to: None,
            raw: json!({}),
        };
        rapport::ingest::ingest(&app.app.db, &source, &[ours], None, None)
            .await
            .unwrap();

        // The first attempt's late failure is not the reply's any more: nothing changes.
        let stale = Some(domain::now() - chrono::Duration::minutes(10));
        let row = domain::reply::mark_failed(&app.app.db, &caller, id, stale, "late".into())
            .await
            .unwrap();
        assert_eq!(row.delivery_status, Some(domain::DeliveryStatus::Sending));

        // The retry's answer names the post the sync stored: SENT (never to be sent
        // again), pointing at the stored post rather than failing on its id.
        let delivered = domain::reply::Delivered {
            external_id: "post-999".into(),
            url: None,
            text: "on its way".into(),
        };
        let row = domain::reply::mark_sent(
            &app.app.db,
            &caller,
            id,
            claimed.delivery_attempted_at,
            delivered,
            false,
        )
        .await
        .unwrap();
        assert_eq!(row.delivery_status, Some(domain::DeliveryStatus::Sent));
        assert_eq!(row.external_id, None);
        assert!(
            row.delivery_error
                .as_deref()
                .unwrap_or_default()
                .contains("post-999"),
            "{:?}",
            row.delivery_error
        );
        let again = app.gql(&agent, RETRY, json!({ "id": failed["id"] })).await["retryReply"]
            ["interaction"]
            .clone();
        assert_eq!(again["deliveryStatus"], "SENT");
        assert_eq!(
            mastodon.posts().len(),
            1,
            "one attempt reached the platform, and no other"
        );
    }
);

/// Reads `live` until a message for which `wanted` holds; panics after 40 others.
async fn until(
    live: &mut crate::live::Client,
    what: &str,
    wanted: impl Fn(&Value) -> bool,
) -> Value {
    for _ in 0..40 {
        let message = live.next().await;
        assert!(message["payload"]["errors"].is_null(), "{message}");
        if wanted(&message) {
            return message;
        }
    }
    panic!("no {what} arrived");
}

backend_test!(
    async fn the_whole_life_of_a_conversation_through_graphql(app: TestApp) {
        let admin = app.key(Role::Admin).await;
        let agent = user_key(&app, "Ana", Role::Agent).await;
        let mastodon = Mastodon::start().await;
        // An agent's live view, open before anything happens.
        let mut live = crate::live::Client::open(&app, &agent).await;
        live.subscribe("in", "subscription { interactionReceived(filter: { direction: INBOUND }) { interaction { externalId } } }", json!({})).await;
        live.subscribe(
            "c",
            "subscription { conversationChanged { change conversation { id status customer { displayName } } } }",
            json!({}),
        )
        .await;
        live.subscribe("q", "{ me { id } }", json!({})).await;
        let me = live.next().await["payload"]["data"]["me"]["id"]
            .as_str()
            .unwrap()
            .to_owned();
        assert_eq!(live.next().await, json!({ "type": "complete", "id": "q" }));
        // The answer above proves nothing of the subscriptions: wait until both joined.
        let markers = crate::live::source(&app, &admin).await;
        crate::live::joined(&app, &mut live, &markers, &["in", "c"], false).await;
        let changed = |change: &'static str| {
            move |message: &Value| {
                message["id"] == "c"
                    && message["payload"]["data"]["conversationChanged"]["change"] == change
            }
        };

        // A mention is ingested: seen live, and in the inbox.
        let first = mastodon.mention(1, 1);
        let source_id = source(&app, &admin, &mastodon, "acmehq").await;
        let seen = until(&mut live, "the mention", |m| m["id"] == "in").await;
        assert_eq!(
            seen["payload"]["data"]["interactionReceived"]["interaction"]["externalId"],
            first.as_str()
        );
        let (conversation_id, _) = conversation_of(&app, &agent, &first).await;
        // (On Mastodon: the markers above are webhook conversations.)
        let inbox = app.gql(&agent, "{ inbox(filter: { statuses: [OPEN], unanswered: true, channel: MASTODON }) { edges { node { id } } } }", json!({})).await;
        assert_eq!(
            inbox["inbox"]["edges"],
            json!([{ "node": { "id": conversation_id } }])
        );

        // Assigned to me, seen live.
        app.gql(&agent, "mutation($id: ID!, $me: ID) { assignConversation(input: { conversationId: $id, assigneeId: $me }) { conversation { id } } }", json!({ "id": conversation_id, "me": me })).await;
        until(&mut live, "the assignment", changed("ASSIGNED")).await;
        let mine = app
            .gql(
                &agent,
                "{ inbox(filter: { assignee: ME }) { edges { node { id } } } }",
                json!({}),
            )
            .await;
        assert_eq!(mine["inbox"]["edges"].as_array().unwrap().len(), 1);

        // Replied: the post answers the mention on the platform; the first response is recorded.
        let sent = reply(
            &app,
            &agent,
            json!({ "conversationId": conversation_id, "text": "on it" }),
        )
        .await;
        assert_eq!(sent["deliveryStatus"], "SENT", "{sent:#}");
        let body: Value = serde_json::from_slice(&mastodon.posts()[0].body).unwrap();
        assert_eq!(body["in_reply_to_id"], first.as_str());
        let first_response = sent["conversation"]["firstResponseAt"].clone();
        assert!(first_response.is_string());

        // PENDING; the customer writes again: OPEN, seen live.
        let status = "mutation($id: ID!, $status: ConversationStatus!, $until: DateTime) { setConversationStatus(input: { conversationId: $id, status: $status, snoozedUntil: $until }) { conversation { status } } }";
        app.gql(
            &agent,
            status,
            json!({ "id": conversation_id, "status": "PENDING" }),
        )
        .await;
        let second = mastodon.answer(2, 1, sent["externalId"].as_str());
        sync(&app, &admin, &source_id).await;
        until(&mut live, "the reopening", changed("REOPENED")).await;
        let now = conversation(&app, &agent, &conversation_id).await;
        assert_eq!(
            (now["status"].clone(), now["firstResponseAt"].clone()),
            (json!("OPEN"), first_response.clone())
        );
        let (same, _) = conversation_of(&app, &agent, &second).await;
        assert_eq!(same, conversation_id);

        // RESOLVED, then reopened by a new mention.
        app.gql(
            &agent,
            status,
            json!({ "id": conversation_id, "status": "RESOLVED" }),
        )
        .await;
        assert_eq!(
            conversation(&app, &agent, &conversation_id).await["status"],
            "RESOLVED"
        );
        mastodon.answer(3, 1, sent["externalId"].as_str());
        sync(&app, &admin, &source_id).await;
        until(&mut live, "the second reopening", changed("REOPENED")).await;
        assert_eq!(
            conversation(&app, &agent, &conversation_id).await["status"],
            "OPEN"
        );

        // SNOOZED, and woken by time: OPEN once due, the timer's wake seen live.
        let until_at = rapport::domain::now() + chrono::Duration::seconds(2);
        app.gql(
            &agent,
            status,
            json!({ "id": conversation_id, "status": "SNOOZED", "until": until_at }),
        )
        .await;
        assert_eq!(
            conversation(&app, &agent, &conversation_id).await["status"],
            "SNOOZED"
        );
        let left = (until_at - rapport::domain::now())
            .to_std()
            .unwrap_or_default();
        tokio::time::sleep(left + std::time::Duration::from_millis(100)).await;
        assert_eq!(
            conversation(&app, &agent, &conversation_id).await["status"],
            "OPEN"
        );
        assert_eq!(
            rapport::domain::inbox::wake_due(&app.app.db, 100)
                .await
                .unwrap(),
            1
        );
        until(&mut live, "the wake", changed("WOKEN")).await;
    }
);
