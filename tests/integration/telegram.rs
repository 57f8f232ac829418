//! The Telegram connector against a local stand-in for the Bot API answering as its
//! documentation says (<https://core.telegram.org/bots/api>: "Making requests", "getMe",
//! "getUpdates", "sendMessage", "Update", "Message", "MessageEntity", "ReplyParameters",
//! "ResponseParameters"): every method at `/bot<token>/METHOD`, answers
//! `{"ok": true, "result": …}` or `{"ok": false, "error_code", "description",
//! "parameters"}` with the error code as the HTTP status, `application/json` bodies, and
//! `getUpdates` serving the queue from `offset` (a negative one counts from the end), at
//! most `limit`, forgetting what an offset confirms. The payloads are written here, field
//! for field from those pages, for people made up for the test.

use std::sync::{Arc, Mutex};

use chrono::{DateTime, Duration, Utc};
use rapport::domain::Role;
use sea_orm::{ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter};
use serde_json::{json, Value};

use crate::backend_test;
use crate::common::TestApp;
use crate::feeds::{create_source, items, sync};
use crate::mastodon::{find_interaction, source_row, stored_ids};
use crate::platform::{Platform, Reply, Seen};

const TOKEN: &str = "7654321098:AAHx9kQ2rapportTestZb3Vn_k9v2Lw8XhQpTnS4m";
const BOT: (i64, &str) = (7_654_321_098, "acme_support_bot");
const MAYA: (i64, &str, &str) = (5_111_112, "maya_l", "Maya");
const LUCIA: (i64, &str, &str) = (7_001, "", "Lucía");
const GROUP: i64 = -1_001_234_567_890;
const REPLY: &str = "mutation($input: ReplyToInteractionInput!) { replyToInteraction(input: $input) { interaction { id externalId direction kind text url conversation { id } } } }";

/// What Telegram holds and how it answers.
#[derive(Default)]
struct State {
    /// The update queue; confirmed updates are dropped as Telegram does.
    updates: Vec<Value>,
    /// The next answers of any method, instead of the real one.
    fail: Vec<Reply>,
    /// The next answers of getUpdates only: `None` answers for real.
    fail_updates: Vec<Option<Reply>>,
    /// Messages sent so far.
    sent: i64,
}

#[derive(Clone)]
struct Telegram {
    server: Platform,
    state: Arc<Mutex<State>>,
}

fn path(method: &str) -> String {
    format!("/bot{TOKEN}/{method}")
}

fn header(seen: &Seen, name: &str) -> String {
    seen.headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

fn body(seen: &Seen) -> Value {
    serde_json::from_slice(&seen.body).unwrap()
}

fn error(code: u16, description: &str, parameters: Option<Value>) -> Reply {
    let mut body = json!({ "ok": false, "error_code": code, "description": description });
    if let Some(parameters) = parameters {
        body["parameters"] = parameters;
    }
    Reply {
        status: code,
        ..Reply::json(&body)
    }
}

/// A `User`.
fn user((id, username, first): (i64, &str, &str)) -> Value {
    let mut user = json!({ "id": id, "is_bot": false, "first_name": first, "language_code": "en" });
    if !username.is_empty() {
        user["username"] = json!(username);
        user["last_name"] = json!("L.");
    }
    user
}

fn bot_user() -> Value {
    json!({ "id": BOT.0, "is_bot": true, "first_name": "Acme Support", "username": BOT.1 })
}

fn group() -> Value {
    json!({ "id": GROUP, "title": "Acme Users", "username": "acme_users", "type": "supergroup", "is_forum": true })
}

fn private(person: (i64, &str, &str)) -> Value {
    let mut chat = json!({ "id": person.0, "first_name": person.2, "type": "private" });
    if !person.1.is_empty() {
        chat["username"] = json!(person.1);
    }
    chat
}

/// A `Message`, at second `at` of the test's hour.
fn message(id: i64, from: Value, chat: Value, text: &str, at: i64) -> Value {
    json!({
        "message_id": id, "from": from, "chat": chat,
        "date": 1_794_042_000 + at, "text": text
    })
}

/// An `Update` of `kind` carrying `message`.
fn update(id: i64, kind: &str, message: Value) -> Value {
    json!({ "update_id": id, kind: message })
}

impl Telegram {
    async fn start() -> Telegram {
        let telegram = Telegram {
            server: Platform::start().await,
            state: Arc::new(Mutex::new(State::default())),
        };
        let serving = telegram.clone();
        telegram.server.handle(&path("getMe"), move |seen| {
            serving.failed(seen).unwrap_or_else(|| {
                let mut me = bot_user();
                me["can_join_groups"] = json!(true);
                me["can_read_all_group_messages"] = json!(false);
                me["supports_inline_queries"] = json!(false);
                Reply::json(&json!({ "ok": true, "result": me }))
            })
        });
        let serving = telegram.clone();
        telegram.server.handle(&path("getUpdates"), move |seen| {
            serving
                .failed(seen)
                .or_else(|| {
                    let mut state = serving.state.lock().unwrap();
                    (!state.fail_updates.is_empty())
                        .then(|| state.fail_updates.remove(0))
                        .flatten()
                })
                .unwrap_or_else(|| serving.get_updates(seen))
        });
        let serving = telegram.clone();
        telegram.server.handle(&path("sendMessage"), move |seen| {
            serving
                .failed(seen)
                .unwrap_or_else(|| serving.send_message(seen))
        });
        telegram
    }

    /// Checks what every request carries; a queued failure when there is one.
    fn failed(&self, seen: &Seen) -> Option<Reply> {
        assert_eq!(seen.method, "POST", "{seen:?}");
        assert!(
            header(seen, "content-type").starts_with("application/json"),
            "{seen:?}"
        );
        assert!(
            header(seen, "user-agent").starts_with("rapport/"),
            "{seen:?}"
        );
        let mut state = self.state.lock().unwrap();
        (!state.fail.is_empty()).then(|| state.fail.remove(0))
    }

    fn get_updates(&self, seen: &Seen) -> Reply {
        let asked = body(seen);
        assert_eq!(asked["timeout"], 0, "{asked}");
        assert_eq!(
            asked["allowed_updates"],
            json!(["message", "edited_message", "channel_post"])
        );
        let limit = asked["limit"].as_u64().unwrap() as usize;
        assert!((1..=100).contains(&limit));
        let mut state = self.state.lock().unwrap();
        let start = match asked.get("offset").and_then(Value::as_i64) {
            Some(offset) if offset < 0 => state.updates.len().saturating_sub((-offset) as usize),
            Some(offset) => state
                .updates
                .iter()
                .position(|u| u["update_id"].as_i64().unwrap() >= offset)
                .unwrap_or(state.updates.len()),
            None => 0,
        };
        // An offset confirms (and Telegram forgets) every update before it.
        if asked.get("offset").is_some() {
            state.updates.drain(..start);
        } else {
            assert_eq!(start, 0);
        }
        let result: Vec<Value> = state.updates.iter().take(limit).cloned().collect();
        Reply::json(&json!({ "ok": true, "result": result }))
    }

    fn send_message(&self, seen: &Seen) -> Reply {
        let asked = body(seen);
        let mut state = self.state.lock().unwrap();
        state.sent += 1;
        let chat = if asked["chat_id"] == GROUP {
            group()
        } else {
            private(MAYA)
        };
        let mut sent = message(
            9_000 + state.sent,
            bot_user(),
            chat,
            asked["text"].as_str().unwrap(),
            3_000,
        );
        if let Some(thread) = asked.get("message_thread_id") {
            sent["message_thread_id"] = thread.clone();
            sent["is_topic_message"] = json!(true);
        }
        Reply::json(&json!({ "ok": true, "result": sent }))
    }

    fn push(&self, updates: Vec<Value>) {
        self.state.lock().unwrap().updates.extend(updates);
    }

    fn config(&self, extra: Value) -> Value {
        let mut config = json!({ "base_url": self.server.base, "bot_token": TOKEN });
        for (key, value) in extra.as_object().unwrap() {
            config[key] = value.clone();
        }
        config
    }

    fn updates_seen(&self) -> Vec<Value> {
        self.server
            .seen(&path("getUpdates"))
            .iter()
            .map(body)
            .collect()
    }
}

/// The stored cursor's next offset; it moved (or was first written) within the last minute.
async fn offset_of(app: &TestApp, id: &str) -> Value {
    let cursor = source_row(app, id).await.cursor.unwrap();
    assert!(!cursor.contains("rapportTest"), "{cursor}");
    let cursor: Value = serde_json::from_str(&cursor).unwrap();
    assert_eq!(cursor.as_object().unwrap().len(), 2, "{cursor}");
    let at = cursor["at"].as_i64().unwrap();
    assert!((Utc::now().timestamp() - at).abs() < 60, "{cursor}");
    cursor["offset"].clone()
}

/// `count` private messages from Maya, update and message ids from `from`.
fn chatter(from: i64, count: i64) -> Vec<Value> {
    (from..from + count)
        .map(|n| {
            update(
                n,
                "message",
                message(n, user(MAYA), private(MAYA), &format!("message {n}"), n),
            )
        })
        .collect()
}

backend_test!(
    async fn a_first_sync_takes_the_held_updates_over_pages_then_only_new_ones(app: TestApp) {
        let key = app.key(Role::Admin).await;
        let telegram = Telegram::start().await;
        telegram.push(chatter(1, 250));
        let input =
            json!({ "channel": "TELEGRAM", "name": "bot", "config": telegram.config(json!({})) });
        let created = app
            .gql(&key, crate::feeds::CREATE, json!({ "input": input }))
            .await;
        let source = &created["createSource"]["source"];
        assert_eq!(source["secretsSet"], json!(["bot_token"]));
        assert!(!source["config"].to_string().contains(TOKEN));
        let id = source["id"].as_str().unwrap().to_owned();

        let report = sync(&app, &key, &id).await;
        assert_eq!(report["error"], Value::Null, "{report:#}");
        assert_eq!(report["newItems"], 250, "{report:#}");
        // Three pages: from the end of the queue by the backfill limit, then by offset.
        let offsets: Vec<Value> = telegram
            .updates_seen()
            .iter()
            .map(|asked| {
                assert_eq!(asked["limit"], 100);
                asked["offset"].clone()
            })
            .collect();
        assert_eq!(offsets, [json!(-1000), json!(101), json!(201)]);
        assert_eq!(offset_of(&app, &id).await, 251);
        // The bot is asked for once a sync, not once a page.
        assert_eq!(telegram.server.seen(&path("getMe")).len(), 1);

        // New updates: one message, Maya's edit of message 7 (the same message: not stored
        // twice), another bot's message (skipped).
        let mut edited = message(7, user(MAYA), private(MAYA), "message 7, edited", 7);
        edited["edit_date"] = json!(1_794_042_100);
        let mut other_bot = user((42, "spam_bot", "Spam"));
        other_bot["is_bot"] = json!(true);
        telegram.push(vec![
            update(
                251,
                "message",
                message(251, user(MAYA), private(MAYA), "and one more", 500),
            ),
            update(252, "edited_message", edited),
            update(
                253,
                "message",
                message(253, other_bot, group(), "buy followers", 501),
            ),
        ]);
        let report = sync(&app, &key, &id).await;
        assert_eq!(report["error"], Value::Null, "{report:#}");
        assert_eq!(report["newItems"], 1, "{report:#}");
        assert_eq!(report["duplicates"], 1, "{report:#}");
        assert_eq!(telegram.updates_seen()[3]["offset"], 251);
        let report = sync(&app, &key, &id).await;
        assert_eq!(report["newItems"], 0, "{report:#}");
        assert_eq!(telegram.updates_seen()[4]["offset"], 254);
        let stored = stored_ids(&app).await;
        assert_eq!(stored.len(), 251);
        assert!(stored.values().all(|count| *count == 1));
        assert!(stored.contains_key(&format!("{}:251", MAYA.0)));
        assert!(!stored.contains_key(&format!("{GROUP}:253")));
        let seven = entity::interaction::Entity::find()
            .filter(entity::interaction::Column::ExternalId.eq(format!("{}:7", MAYA.0)))
            .one(&app.app.db)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(seven.text, "message 7");

        // backfill_limit 0: the newest update only marks where the source starts.
        telegram.push(chatter(300, 5));
        let quiet = create_source(
            &app,
            &key,
            "TELEGRAM",
            "quiet",
            telegram.config(json!({ "backfill_limit": 0 })),
        )
        .await;
        let report = sync(&app, &key, &quiet).await;
        assert_eq!(report["newItems"], 0, "{report:#}");
        let asked = telegram.updates_seen().pop().unwrap();
        assert_eq!(
            (asked["offset"].clone(), asked["limit"].clone()),
            (json!(-1), json!(1))
        );
        assert_eq!(offset_of(&app, &quiet).await, 305);
    }
);

backend_test!(
    async fn messages_thread_by_reply_and_topic_and_a_reply_is_a_send_message(app: TestApp) {
        let key = app.key(Role::Admin).await;
        let telegram = Telegram::start().await;
        let mut mention = message(
            20,
            user(MAYA),
            group(),
            "Hi 👋 @Acme_Support_Bot the CSV export fails",
            10,
        );
        // Offsets in UTF-16 code units: "Hi 👋 " is 6 of them.
        mention["entities"] = json!([{ "type": "mention", "offset": 6, "length": 17 }]);
        mention["message_thread_id"] = json!(3);
        mention["is_topic_message"] = json!(true);
        let mut ours = message(21, bot_user(), group(), "Which file size?", 20);
        ours["message_thread_id"] = json!(3);
        ours["is_topic_message"] = json!(true);
        ours["reply_to_message"] = mention.clone();
        let mut answer = message(22, user(LUCIA), group(), "Mine fails at 20k rows", 30);
        answer["message_thread_id"] = json!(3);
        answer["is_topic_message"] = json!(true);
        answer["reply_to_message"] = ours.clone();
        let mut elsewhere = message(23, user(MAYA), group(), "Off topic: nice logo", 40);
        elsewhere["entities"] = json!([{ "type": "mention", "offset": 0, "length": 0 }]);
        let direct = message(5, user(MAYA), private(MAYA), "Any news?", 50);
        let mut channel = json!({
            "message_id": 77, "date": 1_794_042_060,
            "chat": { "id": -1_009_999, "title": "Acme News", "username": "acme_news", "type": "channel" },
            "sender_chat": { "id": -1_009_999, "title": "Acme News", "username": "acme_news", "type": "channel" },
            "text": "Version 2.0 is out"
        });
        channel["author_signature"] = json!("Maya");
        telegram.push(vec![
            update(900, "message", mention),
            update(901, "message", answer),
            update(902, "message", elsewhere),
            update(903, "message", direct),
            update(904, "channel_post", channel),
        ]);
        let id = create_source(&app, &key, "TELEGRAM", "bot", telegram.config(json!({}))).await;
        let report = sync(&app, &key, &id).await;
        assert_eq!(report["error"], Value::Null, "{report:#}");
        assert_eq!(report["newItems"], 5, "{report:#}");

        let all = items(&app, &key).await;
        let named = &all[&format!("{GROUP}:20")];
        assert_eq!(named["kind"], "MENTION");
        assert_eq!(named["channel"], "TELEGRAM");
        assert_eq!(named["direction"], "INBOUND");
        assert_eq!(named["url"], "https://t.me/acme_users/20");
        assert_eq!(named["identity"]["platformId"], MAYA.0.to_string());
        assert_eq!(named["identity"]["displayName"], "Maya L.");
        let answered = &all[&format!("{GROUP}:22")];
        assert_eq!(answered["kind"], "REPLY");
        assert_eq!(answered["identity"]["platformId"], LUCIA.0.to_string());
        // One forum topic, one conversation; the chat outside it another.
        assert_eq!(answered["conversation"]["id"], named["conversation"]["id"]);
        let outside = &all[&format!("{GROUP}:23")];
        assert_eq!(outside["kind"], "MESSAGE");
        assert_ne!(outside["conversation"]["id"], named["conversation"]["id"]);
        let dm = &all[&format!("{}:5", MAYA.0)];
        assert_eq!(dm["kind"], "MESSAGE");
        assert_eq!(dm["url"], Value::Null);
        // Maya is one customer by her user id, in the group and in private.
        assert_eq!(dm["customer"]["id"], named["customer"]["id"]);
        assert_eq!(outside["customer"]["id"], named["customer"]["id"]);
        assert_ne!(answered["customer"]["id"], named["customer"]["id"]);
        let post = &all["-1009999:77"];
        assert_eq!(post["identity"]["platformId"], "-1009999");
        assert_eq!(post["url"], "https://t.me/acme_news/77");

        // A reply: sendMessage into the topic, answering the mention.
        let agent = app.key(Role::Agent).await;
        let target = find_interaction(&app, &key, &format!("{GROUP}:20")).await;
        let text = "Fixed in 2.0.1 — thanks Maya!";
        let sent = app
            .gql(
                &agent,
                REPLY,
                json!({ "input": { "interactionId": target, "text": text } }),
            )
            .await["replyToInteraction"]["interaction"]
            .clone();
        let posted = telegram.server.seen(&path("sendMessage"));
        assert_eq!(posted.len(), 1);
        assert_eq!(
            body(&posted[0]),
            json!({
                "chat_id": GROUP,
                "text": text,
                "message_thread_id": 3,
                "reply_parameters": { "message_id": 20, "allow_sending_without_reply": true }
            })
        );
        assert_eq!(sent["externalId"], format!("{GROUP}:9001"));
        assert_eq!(sent["direction"], "OUTBOUND");
        assert_eq!(sent["url"], "https://t.me/acme_users/9001");
        assert_eq!(sent["conversation"]["id"], named["conversation"]["id"]);

        // In private: no topic.
        let target = find_interaction(&app, &key, &format!("{}:5", MAYA.0)).await;
        app.gql(
            &agent,
            REPLY,
            json!({ "input": { "interactionId": target, "text": "Yes: 2.0.1." } }),
        )
        .await;
        assert_eq!(
            body(&telegram.server.seen(&path("sendMessage"))[1]),
            json!({
                "chat_id": MAYA.0,
                "text": "Yes: 2.0.1.",
                "reply_parameters": { "message_id": 5, "allow_sending_without_reply": true }
            })
        );

        // 4,096 UTF-16 code units at most: 2,049 emoji are 4,098 (and 2,049 characters).
        let long = json!({ "interactionId": target, "text": "👍".repeat(2_049) });
        let (code, _) = app.gql_error(&agent, REPLY, json!({ "input": long })).await;
        assert_eq!(code, "BAD_USER_INPUT");
        assert_eq!(telegram.server.seen(&path("sendMessage")).len(), 2);

        // A 502 from a proxy: Telegram may have sent it, but nothing can be read back, so
        // the reply fails (a retry would send it again) and nothing is taken for it.
        telegram.state.lock().unwrap().fail = vec![Reply::status(502)];
        let (_, answer) = app
            .gql_error(
                &agent,
                REPLY,
                json!({ "input": { "interactionId": target, "text": "Still there?" } }),
            )
            .await;
        let said = answer.to_string();
        assert!(said.contains("502"), "{said}");
        assert!(!said.contains("rapportTest"), "{said}");
        assert_eq!(telegram.server.seen(&path("sendMessage")).len(), 3);
        assert!(!stored_ids(&app)
            .await
            .contains_key(&format!("{}:9003", MAYA.0)));

        // The bot blocked by Maya: 403, said, and the token nowhere in it.
        telegram.state.lock().unwrap().fail =
            vec![error(403, "Forbidden: bot was blocked by the user", None)];
        let (_, answer) = app
            .gql_error(
                &agent,
                REPLY,
                json!({ "input": { "interactionId": target, "text": "Hello?" } }),
            )
            .await;
        let said = answer.to_string();
        assert!(said.contains("blocked by the user"), "{said}");
        assert!(!said.contains("rapportTest"), "{said}");
    }
);

backend_test!(
    async fn retry_after_sets_the_next_run_and_a_bad_token_or_a_webhook_fail_without_the_token(
        app: TestApp,
    ) {
        let key = app.key(Role::Admin).await;
        let telegram = Telegram::start().await;
        telegram.push(chatter(1, 150));
        let input = json!({ "channel": "TELEGRAM", "name": "limits", "scheduleSecs": 30,
            "config": telegram.config(json!({})) });
        let id = app
            .gql(&key, crate::feeds::CREATE, json!({ "input": input }))
            .await["createSource"]["source"]["id"]
            .as_str()
            .unwrap()
            .to_owned();
        // getMe answers, the first page too, then the next pull's page is a 429 with
        // retry_after: the page is kept and the next run waits the 600 s.
        let ok_me = Reply::json(&json!({ "ok": true, "result": bot_user() }));
        let first_page = Reply::json(&json!({ "ok": true, "result": chatter(1, 100) }));
        telegram.state.lock().unwrap().fail = vec![
            ok_me.clone(),
            first_page,
            error(
                429,
                "Too Many Requests: retry after 600",
                Some(json!({ "retry_after": 600 })),
            ),
        ];
        let report = sync(&app, &key, &id).await;
        assert_eq!(report["newItems"], 100, "{report:#}");
        assert_eq!(report["source"]["status"], "RATE_LIMITED", "{report:#}");
        let next: DateTime<Utc> = report["source"]["nextRunAt"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!(next >= Utc::now() + Duration::seconds(590), "{next}");
        assert!(next <= Utc::now() + Duration::seconds(610), "{next}");
        assert_eq!(offset_of(&app, &id).await, 101);

        // A revoked token: 401, and the source's error does not show it.
        telegram.state.lock().unwrap().fail = vec![error(401, "Unauthorized", None)];
        let report = sync(&app, &key, &id).await;
        let said = report.to_string();
        assert!(said.contains("bot_token"), "{report:#}");
        assert!(!said.contains("rapportTest"), "{report:#}");

        // A webhook set on the bot: 409, and what to do about it.
        telegram.state.lock().unwrap().fail = vec![
            ok_me,
            error(
                409,
                "Conflict: can't use getUpdates method while webhook is active; use deleteWebhook to delete the webhook first",
                None,
            ),
        ];
        let report = sync(&app, &key, &id).await;
        let said = report.to_string();
        assert!(said.contains("deleteWebhook"), "{report:#}");
        assert!(!said.contains("rapportTest"), "{report:#}");
        assert_eq!(offset_of(&app, &id).await, 101);

        // A 429 on a first sync's first ask leaves no cursor: the next sync starts from
        // the backfill limit again, not from wherever Telegram's queue begins.
        let fresh =
            create_source(&app, &key, "TELEGRAM", "fresh", telegram.config(json!({}))).await;
        telegram.state.lock().unwrap().fail = vec![
            Reply::json(&json!({ "ok": true, "result": bot_user() })),
            error(
                429,
                "Too Many Requests: retry after 3600",
                Some(json!({ "retry_after": 3_600 })),
            ),
        ];
        let report = sync(&app, &key, &fresh).await;
        assert_eq!(report["source"]["status"], "RATE_LIMITED", "{report:#}");
        assert_eq!(source_row(&app, &fresh).await.cursor, None);
        let report = sync(&app, &key, &fresh).await;
        assert_eq!(report["newItems"], 150, "{report:#}");
        let seen = telegram.updates_seen();
        assert_eq!(seen[seen.len() - 2]["offset"], -1000);

        // Config: webhook mode without its secret, and an unknown mode, are refused by name.
        for (mode, field) in [
            ("webhook", "config.webhook_secret"),
            ("push", "config.mode"),
        ] {
            let input = json!({ "channel": "TELEGRAM", "name": "hook",
                "config": telegram.config(json!({ "mode": mode })) });
            let (code, body) = app
                .gql_error(&key, crate::feeds::CREATE, json!({ "input": input }))
                .await;
            assert_eq!(code, "BAD_USER_INPUT");
            assert_eq!(body["errors"][0]["extensions"]["field"], field, "{body:#}");
            assert!(!body.to_string().contains("rapportTest"));
        }
    }
);

backend_test!(
    async fn a_failed_page_or_a_failed_store_loses_no_update(app: TestApp) {
        let key = app.key(Role::Admin).await;
        let telegram = Telegram::start().await;
        telegram.push(chatter(1, 150));
        let id = create_source(&app, &key, "TELEGRAM", "bot", telegram.config(json!({}))).await;
        // The second page answers 502: the first is stored with its cursor, and the next
        // sync asks from it again, so Telegram forgets it only then.
        telegram.state.lock().unwrap().fail_updates = vec![None, Some(Reply::status(502))];
        let report = sync(&app, &key, &id).await;
        assert!(
            report["error"].as_str().unwrap().contains("502"),
            "{report:#}"
        );
        assert_eq!(report["newItems"], 100, "{report:#}");
        assert_eq!(offset_of(&app, &id).await, 101);
        let report = sync(&app, &key, &id).await;
        assert_eq!(report["error"], Value::Null, "{report:#}");
        assert_eq!(report["newItems"], 50, "{report:#}");
        let offsets: Vec<Value> = telegram
            .updates_seen()
            .iter()
            .map(|asked| asked["offset"].clone())
            .collect();
        assert_eq!(offsets, [json!(-1000), json!(101), json!(101)]);
        assert_eq!(stored_ids(&app).await.len(), 150);

        // Storing the first batch of the next sync fails: nothing is asked after it (an
        // ask would confirm it), and the sync after that stores it.
        telegram.push(chatter(151, 150));
        app.app
            .db
            .execute_unprepared("ALTER TABLE identity RENAME TO identity_gone")
            .await
            .unwrap();
        let report = sync(&app, &key, &id).await;
        app.app
            .db
            .execute_unprepared("ALTER TABLE identity_gone RENAME TO identity")
            .await
            .unwrap();
        assert!(report["error"].is_string(), "{report:#}");
        assert_eq!(report["newItems"], 0, "{report:#}");
        assert_eq!(offset_of(&app, &id).await, 151);
        let report = sync(&app, &key, &id).await;
        assert_eq!(report["error"], Value::Null, "{report:#}");
        let stored = stored_ids(&app).await;
        assert_eq!(stored.len(), 300);
        assert!(stored.values().all(|count| *count == 1));
        assert_eq!(report["newItems"], 150, "{report:#}");
        let offsets: Vec<Value> = telegram.updates_seen()[3..]
            .iter()
            .map(|asked| asked["offset"].clone())
            .collect();
        assert_eq!(offsets, [json!(151), json!(151), json!(251)]);
    }
);

backend_test!(
    async fn after_a_quiet_week_updates_numbered_anew_below_the_offset_are_read(app: TestApp) {
        let key = app.key(Role::Admin).await;
        let telegram = Telegram::start().await;
        telegram.push(chatter(1_000, 3));
        let id = create_source(&app, &key, "TELEGRAM", "bot", telegram.config(json!({}))).await;
        sync(&app, &key, &id).await;
        assert_eq!(offset_of(&app, &id).await, 1_003);
        // Nothing for six days and more: the offset last moved then.
        let week_ago = (Utc::now() - Duration::days(7)).timestamp();
        let mut row: entity::source::ActiveModel = source_row(&app, &id).await.into();
        row.cursor = sea_orm::Set(Some(json!({ "offset": 1_003, "at": week_ago }).to_string()));
        row.update(&app.app.db).await.unwrap();
        // Telegram numbers the next updates at random, here below our offset.
        telegram.push(chatter(500, 2));
        let report = sync(&app, &key, &id).await;
        assert_eq!(report["error"], Value::Null, "{report:#}");
        assert_eq!(report["newItems"], 2, "{report:#}");
        let asked = telegram.updates_seen().pop().unwrap();
        assert_eq!(asked.get("offset"), None, "{asked}");
        // The offset follows the last update read, lower than before.
        assert_eq!(offset_of(&app, &id).await, 502);
        telegram.push(chatter(502, 1));
        let report = sync(&app, &key, &id).await;
        assert_eq!(report["newItems"], 1, "{report:#}");
        assert_eq!(telegram.updates_seen().pop().unwrap()["offset"], 502);
        assert_eq!(offset_of(&app, &id).await, 503);
        assert_eq!(stored_ids(&app).await.len(), 6);

        // Quiet, and still nothing (Telegram keeps an update 24 hours, confirmed or not):
        // asking without an offset confirms nothing, and the cursor stays.
        telegram.state.lock().unwrap().updates.clear();
        let mut row: entity::source::ActiveModel = source_row(&app, &id).await.into();
        row.cursor = sea_orm::Set(Some(json!({ "offset": 503, "at": week_ago }).to_string()));
        row.update(&app.app.db).await.unwrap();
        let report = sync(&app, &key, &id).await;
        assert_eq!(report["newItems"], 0, "{report:#}");
        assert_eq!(telegram.updates_seen().pop().unwrap().get("offset"), None);
        let cursor: Value =
            serde_json::from_str(&source_row(&app, &id).await.cursor.unwrap()).unwrap();
        assert_eq!(cursor, json!({ "offset": 503, "at": week_ago }));
    }
);

backend_test!(
    async fn a_long_description_is_cut_and_an_error_code_out_of_range_is_not_a_status(
        app: TestApp,
    ) {
        let key = app.key(Role::Admin).await;
        let telegram = Telegram::start().await;
        let id = create_source(&app, &key, "TELEGRAM", "bot", telegram.config(json!({}))).await;
        // 65,965 is 429 once cut to 16 bits: the answer's 502 stands, no rate limit.
        let answer = json!({ "ok": false, "error_code": 65_965,
            "description": format!("Bad Gateway {}", "é".repeat(10_000)) });
        telegram.state.lock().unwrap().fail = vec![Reply {
            status: 502,
            ..Reply::json(&answer)
        }];
        let report = sync(&app, &key, &id).await;
        assert_eq!(report["source"]["status"], "BACKING_OFF", "{report:#}");
        let said = report["error"].as_str().unwrap();
        assert!(said.contains("with 502 (Bad Gateway éé"), "{said}");
        assert!(said.chars().count() < 300, "{said}");
        assert_eq!(report["source"]["lastError"], said);
    }
);

const HOOK_SECRET: &str = "tg_hook-Secret_4f8a2c";
const PUBLIC_URL: &str = "https://crm.example.test";

/// POSTs `update` as Telegram delivers to a webhook: JSON, with the secret token header
/// when given. The status and the answer.
async fn deliver_update(
    app: &TestApp,
    path: &str,
    secret: Option<&str>,
    update: &Value,
) -> (u16, Value) {
    let mut request = app
        .client
        .post(app.url(path))
        .header("content-type", "application/json");
    if let Some(secret) = secret {
        request = request.header("x-telegram-bot-api-secret-token", secret);
    }
    let response = request.body(update.to_string()).send().await.unwrap();
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    assert!(
        !text.contains(HOOK_SECRET) && !text.contains("rapportTest"),
        "{text}"
    );
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

backend_test!(
    async fn webhook_mode_sets_the_webhook_and_takes_only_updates_with_the_secret(app: TestApp) {
        // The server knows its public address (`[http] public_url`).
        let app = TestApp::with_config(app.backend, |config| {
            config.http.public_url = Some(PUBLIC_URL.to_owned())
        })
        .await
        .unwrap();
        let key = app.key(Role::Admin).await;
        let telegram = Telegram::start().await;
        // Telegram's webhook: set by setWebhook, told by getWebhookInfo, removed by
        // deleteWebhook; getUpdates is refused while it is set.
        let webhook = Arc::new(Mutex::new(String::new()));
        let set = webhook.clone();
        telegram.server.handle(&path("setWebhook"), move |seen| {
            *set.lock().unwrap() = body(seen)["url"].as_str().unwrap().to_owned();
            Reply::json(&json!({ "ok": true, "result": true, "description": "Webhook was set" }))
        });
        let info = webhook.clone();
        telegram.server.handle(&path("getWebhookInfo"), move |_| {
            Reply::json(
                &json!({ "ok": true, "result": { "url": *info.lock().unwrap(),
                "has_custom_certificate": false, "pending_update_count": 0,
                "max_connections": 40, "ip_address": "192.0.2.10" } }),
            )
        });
        let deleted = webhook.clone();
        telegram.server.handle(&path("deleteWebhook"), move |_| {
            deleted.lock().unwrap().clear();
            Reply::json(
                &json!({ "ok": true, "result": true, "description": "Webhook was deleted" }),
            )
        });

        let input = json!({ "channel": "TELEGRAM", "name": "hook",
            "config": telegram.config(json!({ "mode": "webhook", "webhook_secret": HOOK_SECRET,
                "chats": [MAYA.0, GROUP] })) });
        let created = app
            .gql(&key, "mutation($input: CreateSourceInput!) { createSource(input: $input) { source { id config secretsSet webhookPath } } }", json!({ "input": input }))
            .await;
        let source = &created["createSource"]["source"];
        let id = source["id"].as_str().unwrap().to_owned();
        let mut secrets: Vec<String> =
            serde_json::from_value(source["secretsSet"].clone()).unwrap();
        secrets.sort();
        assert_eq!(secrets, ["bot_token", "webhook_secret"]);
        assert!(
            !source["config"].to_string().contains(HOOK_SECRET),
            "{source}"
        );
        let hook_path = format!("/webhooks/{id}");
        assert_eq!(source["webhookPath"], hook_path.as_str());

        // A sync sets the webhook, exactly so, and never polls.
        let report = sync(&app, &key, &id).await;
        assert_eq!(report["error"], Value::Null, "{report:#}");
        assert_eq!(report["newItems"], 0);
        let asked: Vec<Value> = telegram
            .server
            .seen(&path("setWebhook"))
            .iter()
            .map(body)
            .collect();
        assert_eq!(
            asked,
            [
                json!({ "url": format!("{PUBLIC_URL}{hook_path}"), "secret_token": HOOK_SECRET,
                "allowed_updates": ["message", "edited_message", "channel_post"] })
            ]
        );
        assert!(telegram.updates_seen().is_empty());

        // Maya writes to the bot: Telegram POSTs the update with the secret.
        let hello = update(
            301,
            "message",
            message(41, user(MAYA), private(MAYA), "Hi, is the export fixed?", 5),
        );
        let (status, answer) = deliver_update(&app, &hook_path, Some(HOOK_SECRET), &hello).await;
        assert_eq!(status, 200, "{answer}");
        assert_eq!(answer["duplicate"], false);
        let interaction = answer["interactionId"].as_str().unwrap().to_owned();
        let external = format!("{}:41", MAYA.0);
        assert_eq!(find_interaction(&app, &key, &external).await, interaction);
        let all = items(&app, &key).await;
        let stored = &all[&external];
        assert_eq!(stored["kind"], "MESSAGE");
        assert_eq!(stored["direction"], "INBOUND");
        assert_eq!(stored["channel"], "TELEGRAM");
        assert_eq!(stored["text"], "Hi, is the export fixed?");
        assert_eq!(stored["identity"]["platformId"], MAYA.0.to_string());
        // Delivered again (Telegram retries): stored once.
        let (status, answer) = deliver_update(&app, &hook_path, Some(HOOK_SECRET), &hello).await;
        assert_eq!(
            (status, answer["duplicate"].clone()),
            (200, json!(true)),
            "{answer}"
        );

        // A missing or wrong secret: 401, nothing stored.
        let forged = update(
            302,
            "message",
            message(42, user(MAYA), private(MAYA), "forged", 6),
        );
        for secret in [
            None,
            Some("tg_hook-Secret_4f8a2d"),
            Some(""),
            Some("tg_hook-Secret_4f8a2c0"),
        ] {
            let (status, answer) = deliver_update(&app, &hook_path, secret, &forged).await;
            assert_eq!(status, 401, "{secret:?} {answer}");
            assert_eq!(answer["errors"][0]["extensions"]["code"], "UNAUTHENTICATED");
        }
        assert_eq!(stored_ids(&app).await.len(), 1);

        // Another chat and a bot's message: answered, nothing stored.
        let stranger = update(
            303,
            "message",
            message(43, user(LUCIA), private(LUCIA), "hello?", 7),
        );
        let mut bot = message(44, bot_user(), group(), "I am a bot", 8);
        bot["from"]["is_bot"] = json!(true);
        for ignored in [stranger, update(304, "message", bot)] {
            let (status, answer) =
                deliver_update(&app, &hook_path, Some(HOOK_SECRET), &ignored).await;
            assert_eq!(status, 200, "{answer}");
            assert!(answer["ignored"].is_string(), "{answer}");
        }
        assert_eq!(stored_ids(&app).await.len(), 1);

        // Back to polling: the change deletes our webhook at Telegram.
        let changed = app.gql(&key, "mutation($id: ID!, $config: JSON!) { updateSource(input: {id: $id, config: $config}) { source { webhookPath secretsSet } } }",
            json!({ "id": id, "config": telegram.config(json!({ "mode": "poll" })) })).await;
        assert_eq!(
            changed["updateSource"]["source"]["webhookPath"],
            Value::Null,
            "{changed}"
        );
        assert_eq!(telegram.server.seen(&path("deleteWebhook")).len(), 1);
        assert!(webhook.lock().unwrap().is_empty());
        // Had that failed, the sync finds its own webhook in the way, deletes it, polls.
        *webhook.lock().unwrap() = format!("{PUBLIC_URL}{hook_path}");
        telegram.push(chatter(500, 2));
        telegram.state.lock().unwrap().fail_updates = vec![Some(error(
            409,
            "Conflict: can't use getUpdates method while webhook is active; use deleteWebhook to delete the webhook first",
            None,
        ))];
        let report = sync(&app, &key, &id).await;
        assert_eq!(report["error"], Value::Null, "{report:#}");
        assert_eq!(report["newItems"], 2, "{report:#}");
        assert_eq!(telegram.server.seen(&path("deleteWebhook")).len(), 2);
        assert!(webhook.lock().unwrap().is_empty());
        // A poll-mode source takes no deliveries.
        assert_eq!(
            deliver_update(&app, &hook_path, Some(HOOK_SECRET), &hello)
                .await
                .0,
            404
        );
    }
);

const DELETE: &str = "mutation($id: ID!) { deleteSource(input: {id: $id}) { deletedSourceId } }";

/// Serves Telegram's webhook methods on `telegram` over one shared webhook URL (empty:
/// none set), as `webhook_mode_sets_the_webhook_and_takes_only_updates_with_the_secret`.
fn serve_webhook(telegram: &Telegram) -> Arc<Mutex<String>> {
    let webhook = Arc::new(Mutex::new(String::new()));
    let set = webhook.clone();
    telegram.server.handle(&path("setWebhook"), move |seen| {
        *set.lock().unwrap() = body(seen)["url"].as_str().unwrap().to_owned();
        Reply::json(&json!({ "ok": true, "result": true, "description": "Webhook was set" }))
    });
    let info = webhook.clone();
    telegram.server.handle(&path("getWebhookInfo"), move |_| {
        Reply::json(
            &json!({ "ok": true, "result": { "url": *info.lock().unwrap(),
            "has_custom_certificate": false, "pending_update_count": 0 } }),
        )
    });
    let deleted = webhook.clone();
    telegram.server.handle(&path("deleteWebhook"), move |_| {
        deleted.lock().unwrap().clear();
        Reply::json(&json!({ "ok": true, "result": true, "description": "Webhook was deleted" }))
    });
    webhook
}

backend_test!(
    async fn a_deleted_webhook_source_removes_its_own_webhook_and_no_other(app: TestApp) {
        let app = TestApp::with_config(app.backend, |config| {
            config.http.public_url = Some(PUBLIC_URL.to_owned())
        })
        .await
        .unwrap();
        let key = app.key(Role::Admin).await;
        let telegram = Telegram::start().await;
        let webhook = serve_webhook(&telegram);
        let hooked = |name: &str| {
            json!({ "channel": "TELEGRAM", "name": name,
                "config": telegram.config(json!({ "mode": "webhook", "webhook_secret": HOOK_SECRET })) })
        };
        let create = |input: Value| {
            let app = &app;
            let key = &key;
            async move {
                app.gql(key, crate::feeds::CREATE, json!({ "input": input }))
                    .await["createSource"]["source"]["id"]
                    .as_str()
                    .unwrap()
                    .to_owned()
            }
        };

        // Deleted after its sync set the webhook: the webhook goes with it.
        let id = create(hooked("hook")).await;
        let report = sync(&app, &key, &id).await;
        assert_eq!(report["error"], Value::Null, "{report:#}");
        assert_eq!(
            *webhook.lock().unwrap(),
            format!("{PUBLIC_URL}/webhooks/{id}")
        );
        let deleted = app.gql(&key, DELETE, json!({ "id": id })).await;
        assert_eq!(deleted["deleteSource"]["deletedSourceId"], id.as_str());
        assert_eq!(telegram.server.seen(&path("deleteWebhook")).len(), 1);
        assert!(webhook.lock().unwrap().is_empty());

        // The bot's webhook now points at another program: deleting a source leaves it.
        let other = "https://elsewhere.example/telegram";
        let id = create(hooked("again")).await;
        *webhook.lock().unwrap() = other.to_owned();
        app.gql(&key, DELETE, json!({ "id": id })).await;
        assert_eq!(telegram.server.seen(&path("deleteWebhook")).len(), 1);
        assert_eq!(*webhook.lock().unwrap(), other);

        // A poll-mode source meeting that webhook leaves it too, and says what is in the way.
        let id = create(json!({ "channel": "TELEGRAM", "name": "poll",
            "config": telegram.config(json!({})) }))
        .await;
        let conflict = "Conflict: can't use getUpdates method while webhook is active; use deleteWebhook to delete the webhook first";
        telegram.state.lock().unwrap().fail_updates = vec![Some(error(409, conflict, None))];
        let report = sync(&app, &key, &id).await;
        let said = report["error"].as_str().unwrap_or_default();
        assert!(said.contains(conflict), "{report:#}");
        assert!(said.contains("a webhook is set for this bot"), "{report:#}");
        assert!(!said.contains("rapportTest"), "{report:#}");
        assert_eq!(telegram.server.seen(&path("getWebhookInfo")).len(), 3);
        assert_eq!(telegram.server.seen(&path("deleteWebhook")).len(), 1);
        assert_eq!(*webhook.lock().unwrap(), other);
        assert_eq!(telegram.updates_seen().len(), 1);
    }
);

backend_test!(
    async fn webhook_mode_without_a_public_url_fails_and_never_polls(app: TestApp) {
        let key = app.key(Role::Admin).await;
        let telegram = Telegram::start().await;
        let webhook = serve_webhook(&telegram);
        telegram.push(chatter(1, 3));
        let id = create_source(
            &app,
            &key,
            "TELEGRAM",
            "hook",
            telegram.config(json!({ "mode": "webhook", "webhook_secret": HOOK_SECRET })),
        )
        .await;
        let report = sync(&app, &key, &id).await;
        let said = report["error"].as_str().unwrap_or_default();
        assert!(said.contains("public_url"), "{report:#}");
        assert_eq!(report["newItems"], 0, "{report:#}");
        assert!(telegram.updates_seen().is_empty());
        assert!(telegram.server.seen(&path("setWebhook")).is_empty());
        assert!(webhook.lock().unwrap().is_empty());
        // Deleted: with no address of ours known, nothing is asked of Telegram.
        app.gql(&key, DELETE, json!({ "id": id })).await;
        assert!(telegram.server.seen(&path("getWebhookInfo")).is_empty());
    }
);
