//! GDPR end to end: `exportCustomer` holds every part of a person (raw payloads
//! included); `eraseCustomer` leaves nothing of their name, e-mail, phone, handle or
//! platform id in any table (event payloads included) nor in the search index, and a
//! re-sync of the source — a local Mastodon serving the same statuses — brings nothing
//! back; with `newContactAfterErasure` a new status of theirs makes a fresh customer while
//! the erased ones stay out; `deleteCustomer`'s items do not return on a re-pull either;
//! roles and tenancy.

use std::sync::{Arc, Mutex};

use chrono::TimeZone;
use connectors::{Author, InboundItem};
use rapport::domain::Role;
use rapport::search::{InteractionQuery, SearchFilter, SearchSort};
use sea_orm::{ConnectionTrait, Statement};
use serde_json::{json, Value};

use crate::backend_test;
use crate::common::{Backend, TestApp};
use crate::feeds::{items, sync};
use crate::platform::{fixture, Platform, Reply};

const TOKEN: &str = "gdpr-mastodon-token-4Kp9";
const EXPORT: &str = "query($id: ID!) { exportCustomer(id: $id) }";
const ERASE: &str = "mutation($id: ID!) { eraseCustomer(input: { id: $id }) { erasedCustomerId removed { interactions conversations conversationsKept notes deals identities contactPoints duplicateSuggestions events tombstones } } }";
const DELETE: &str =
    "mutation($id: ID!) { deleteCustomer(input: { id: $id }) { deletedCustomerId } }";
const SETTINGS: &str = "mutation($on: Boolean!) { updateWorkspaceSettings(input: { newContactAfterErasure: $on }) { workspace { settings { newContactAfterErasure } } } }";

/// The person asking to be forgotten, and what identifies them.
const NAME: &str = "Zofia Quennell-Brightwater";
const HANDLE: &str = "zquennell@social.example";
const PLATFORM_ID: &str = "https://social.example/users/zquennell";
const EMAIL: &str = "zofia.quennell@mailbox.example";
const PHONE: &str = "+44 7911 123456";
/// A word only her posts use, to look for them in the search index.
const HER_WORD: &str = "xylophonist";

/// A word only our reply in her thread uses.
const OUR_WORD: &str = "zebrafix";

/// Her Mastodon account's numeric id, which replies to her carry.
const ACCOUNT_ID: &str = "109555000000000777";

/// What must not be found anywhere once she is erased (lower case).
const TRACES: [&str; 6] = [
    "quennell",
    "brightwater",
    "zofia",
    "7911123456",
    HER_WORD,
    ACCOUNT_ID,
];

/// Someone else, whose reply in her thread stays.
const OTHER: (&str, &str, &str) = (
    "Ravi Okonkwo",
    "ravi@fosstodon.example",
    "https://fosstodon.example/users/ravi",
);

/// A Mastodon account as the API gives it.
fn account(id: &str, name: &str, acct: &str, uri: &str, fields: Value) -> Value {
    let username = acct.split('@').next().unwrap_or(acct);
    let host = acct.split('@').nth(1).unwrap_or("social.example");
    json!({
        "id": id, "username": username, "acct": acct, "display_name": name,
        "locked": false, "bot": false, "discoverable": true, "group": false,
        "created_at": "2022-11-05T00:00:00.000Z", "note": "<p>Hello.</p>",
        "url": format!("https://{host}/@{username}"), "uri": uri,
        "avatar": format!("https://files.{host}/avatars/{id}.png"),
        "avatar_static": format!("https://files.{host}/avatars/{id}.png"),
        "header": "", "header_static": "", "followers_count": 1, "following_count": 1,
        "statuses_count": 1, "last_status_at": "2026-11-22", "emojis": [], "fields": fields,
    })
}

fn zofia() -> Value {
    account(
        ACCOUNT_ID,
        NAME,
        HANDLE,
        PLATFORM_ID,
        json!([{ "name": "Mail", "value": EMAIL, "verified_at": null }]),
    )
}

fn ravi() -> Value {
    account("108999111222333444", OTHER.0, OTHER.1, OTHER.2, json!([]))
}

/// A mention notification (the documented shape, from the fixture) of status `id` by
/// `account`, answering status `in_reply_to` of its author's when given. A reply to
/// someone else names them as Mastodon writes it: `in_reply_to_account_id`, a mention in
/// `mentions` and one in the content, after ours.
fn mention(id: u64, account: Value, text: &str, in_reply_to: Option<(u64, &Value)>) -> Value {
    let template: Value = serde_json::from_slice(&fixture("mastodon/notifications.json")).unwrap();
    let mut entry = template[0].clone();
    let at = chrono::Utc
        .timestamp_opt(1_795_000_000 + id as i64 * 60, 0)
        .unwrap();
    let at = at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let username = account["username"].as_str().unwrap().to_owned();
    let host = account["acct"]
        .as_str()
        .unwrap()
        .split('@')
        .nth(1)
        .unwrap()
        .to_owned();
    entry["id"] = json!(format!("{}", 40_000_000 + id));
    entry["created_at"] = json!(at);
    entry["account"] = account.clone();
    let status = &mut entry["status"];
    status["id"] = json!(format!("{}", 113_100_000_000_000_000 + id));
    status["created_at"] = json!(at);
    status["uri"] = json!(format!("https://{host}/users/{username}/statuses/{id}"));
    status["url"] = json!(format!("https://{host}/@{username}/{id}"));
    let mut content = "@acmehq".to_owned();
    if let Some((parent, author)) = in_reply_to {
        status["in_reply_to_id"] = json!(format!("{}", 113_100_000_000_000_000 + parent));
        status["in_reply_to_account_id"] = author["id"].clone();
        if author["id"] != account["id"] {
            let (name, url) = (&author["username"], &author["url"]);
            content.push_str(&format!(
                " <span class=\"h-card\"><a href=\"{}\" class=\"u-url mention\">@<span>{}</span></a></span>",
                url.as_str().unwrap(),
                name.as_str().unwrap()
            ));
            status["mentions"].as_array_mut().unwrap().push(
                json!({ "id": author["id"], "username": name, "url": url, "acct": author["acct"] }),
            );
        }
    }
    status["content"] = json!(format!("<p>{content} {text}</p>"));
    status["language"] = json!("en");
    status["account"] = account;
    entry
}

/// A Mastodon server whose mention notifications are `entries` (paged by `max_id` and
/// `min_id` as Mastodon pages them, newest first).
async fn mastodon(entries: Arc<Mutex<Vec<Value>>>) -> Platform {
    let server = Platform::start().await;
    server.on(
        "/api/v1/accounts/verify_credentials",
        vec![Reply::ok(
            "application/json",
            fixture("mastodon/verify_credentials.json"),
        )],
    );
    // Our replies, as Mastodon answers the post: a status of its own for each status
    // answered.
    let template: Value = serde_json::from_slice(&fixture("mastodon/status-posted.json")).unwrap();
    server.handle("/api/v1/statuses", move |seen| {
        let asked: Value = serde_json::from_slice(&seen.body).unwrap();
        let answered = asked["in_reply_to_id"].as_str().unwrap();
        let mut posted = template.clone();
        posted["id"] = json!(format!("1139{}", &answered[4..]));
        posted["in_reply_to_id"] = json!(answered);
        posted["content"] = json!(format!("<p>{}</p>", asked["status"].as_str().unwrap()));
        Reply::json(&posted)
    });
    server.handle("/api/v1/notifications", move |seen| {
        let bound = |name: &str| -> Option<u64> {
            seen.query.split('&').find_map(|pair| {
                let (key, value) = pair.split_once('=')?;
                (key == name).then(|| value.parse().ok()).flatten()
            })
        };
        let (max, min) = (bound("max_id"), bound("min_id"));
        let mut page: Vec<Value> = entries
            .lock()
            .unwrap()
            .iter()
            .filter(|entry| {
                let id: u64 = entry["id"].as_str().unwrap().parse().unwrap();
                max.is_none_or(|max| id < max) && min.is_none_or(|min| id > min)
            })
            .cloned()
            .collect();
        page.sort_by_key(|entry| {
            std::cmp::Reverse(entry["id"].as_str().unwrap().parse::<u64>().unwrap())
        });
        Reply::json(&Value::Array(page))
    });
    server
}

struct World {
    key: String,
    source: String,
    entries: Arc<Mutex<Vec<Value>>>,
    _server: Platform,
}

/// An admin, a Mastodon source with two statuses of hers (the second answering the
/// first) and a reply of someone else to her first, naming her, synced and indexed.
async fn world(app: &TestApp) -> World {
    let key = app.key(Role::Admin).await;
    let entries = Arc::new(Mutex::new(vec![
        mention(
            1,
            zofia(),
            &format!("I am a {HER_WORD}, is the export broken?"),
            None,
        ),
        mention(
            2,
            zofia(),
            &format!("Still broken, says this {HER_WORD}."),
            Some((1, &zofia())),
        ),
        mention(
            3,
            ravi(),
            "Same here, the export fails for me too.",
            Some((1, &zofia())),
        ),
    ]));
    let server = mastodon(entries.clone()).await;
    let config = json!({ "base_url": server.base, "access_token": TOKEN });
    let source = crate::feeds::create_source(app, &key, "MASTODON", "acmehq", config).await;
    let report = sync(app, &key, &source).await;
    assert_eq!(report["error"], Value::Null, "{report:#}");
    assert_eq!(report["newItems"], 3, "{report:#}");
    World {
        key,
        source,
        entries,
        _server: server,
    }
}

/// The customer her statuses were filed under.
async fn her_customer(app: &TestApp, key: &str) -> String {
    let all = items(app, key).await;
    let status = all
        .values()
        .find(|item| item["text"].as_str().unwrap_or_default().contains(HER_WORD))
        .expect("one of her statuses");
    status["customer"]["id"].as_str().unwrap().to_owned()
}

async fn catch_up(app: &TestApp) {
    rapport::search::indexer::Indexer::new(&app.app)
        .catch_up()
        .await
        .unwrap();
}

/// Every row of every table as text, lower-cased: what a dump of the database shows.
async fn dump(app: &TestApp) -> String {
    let db = &app.app.db;
    let backend = db.get_database_backend();
    let rows = |sql: String| async move {
        db.query_all(Statement::from_string(backend, sql))
            .await
            .unwrap()
    };
    let tables: Vec<String> = match app.backend {
        Backend::Sqlite => rows("SELECT name FROM sqlite_master WHERE type = 'table'".into()).await,
        Backend::Postgres => {
            rows("SELECT table_name AS name FROM information_schema.tables WHERE table_schema = current_schema() AND table_type = 'BASE TABLE'".into())
                .await
        }
    }
    .iter()
    .map(|row| row.try_get::<String>("", "name").unwrap())
    .collect();
    assert!(tables.iter().any(|table| table == "event"), "{tables:?}");
    let mut text = String::new();
    for table in tables {
        let select = match app.backend {
            Backend::Sqlite => {
                let columns: Vec<String> = rows(format!("PRAGMA table_info(\"{table}\")"))
                    .await
                    .iter()
                    .map(|row| row.try_get::<String>("", "name").unwrap())
                    .collect();
                let parts: Vec<String> = columns
                    .iter()
                    .map(|column| {
                        // A UUID may be stored as 16 bytes: shown in hex, as text would not be.
                        format!("coalesce(CASE WHEN typeof(\"{column}\") = 'blob' THEN hex(\"{column}\") ELSE CAST(\"{column}\" AS TEXT) END, '')")
                    })
                    .collect();
                format!(
                    "SELECT {} AS line FROM \"{table}\"",
                    parts.join(" || '|' || ")
                )
            }
            Backend::Postgres => format!("SELECT CAST(t AS TEXT) AS line FROM \"{table}\" AS t"),
        };
        for row in rows(select).await {
            text.push_str(&table);
            text.push_str(": ");
            text.push_str(&row.try_get::<String>("", "line").unwrap());
            text.push('\n');
        }
    }
    text.to_lowercase()
}

/// The lines of `dump` that hold one of her traces.
fn traces(dump: &str) -> Vec<&str> {
    dump.lines()
        .filter(|line| TRACES.iter().any(|trace| line.contains(trace)) || line.contains(EMAIL))
        .collect()
}

async fn workspace_id(app: &TestApp) -> entity::WorkspaceId {
    rapport::domain::workspace::ensure(&app.app.db, "acme")
        .await
        .unwrap()
        .id
}

async fn indexed(app: &TestApp, text: &str) -> (usize, usize) {
    let workspace = workspace_id(app).await;
    let search = &app.app.search;
    let interactions = search
        .search_interactions(&InteractionQuery {
            workspace_id: workspace,
            text: text.to_owned(),
            filter: SearchFilter::default(),
            sort: SearchSort::Relevance,
            offset: 0,
            limit: 50,
            facets: false,
            totals: true,
        })
        .await
        .unwrap();
    let customers = search.search_customers(workspace, text, 50).await.unwrap();
    (interactions.ids.len(), customers.ids.len())
}

/// Makes the `interaction.created` event of interaction `id` (`int_…`) hold the whole
/// row, as builds before the event named its row wrote it.
async fn whole_row_event(app: &TestApp, id: &str) {
    use sea_orm::sea_query::Expr;
    use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
    let id: entity::InteractionId = rapport::ids::decode("id", id).unwrap();
    let row = entity::interaction::Entity::find_by_id(id)
        .one(&app.app.db)
        .await
        .unwrap()
        .unwrap();
    assert!(row.raw.as_ref().unwrap().to_string().contains(ACCOUNT_ID));
    let changed = entity::event::Entity::update_many()
        .col_expr(
            entity::event::Column::Payload,
            Expr::value(serde_json::to_value(&row).unwrap()),
        )
        .filter(entity::event::Column::Kind.eq("interaction.created"))
        .filter(entity::event::Column::EntityId.eq(id.uuid()))
        .exec(&app.app.db)
        .await
        .unwrap();
    assert_eq!(changed.rows_affected, 1);
}

/// Her other record: made by hand in the CRM with her e-mail, which her Mastodon
/// profile names (a duplicate suggestion), and her phone.
async fn crm_record(app: &TestApp, key: &str) -> String {
    app.create_customer(
        key,
        json!({ "displayName": "Zofia Q.", "givenName": "Zofia", "familyName": "Quennell-Brightwater",
                "contactPoints": [{ "kind": "EMAIL", "value": EMAIL }] }),
    )
    .await
}

/// Her Mastodon record with a phone, a note, a deal and a tag.
async fn enrich(app: &TestApp, key: &str, customer: &str) {
    app.gql(key, "mutation($input: AddContactPointInput!) { addContactPoint(input: $input) { contactPoint { id } } }",
        json!({ "input": { "customerId": customer, "contactPoint": { "kind": "PHONE", "value": PHONE } } })).await;
    app.gql(key, "mutation($input: AddNoteInput!) { addNote(input: $input) { note { id } } }",
        json!({ "input": { "customerId": customer, "body": format!("{NAME} called about exports") } })).await;
    app.gql(
        key,
        "mutation($input: CreateDealInput!) { createDeal(input: $input) { deal { id } } }",
        json!({ "input": { "customerId": customer, "title": format!("Renewal for {NAME}") } }),
    )
    .await;
    app.gql(
        key,
        "mutation($input: AddTagInput!) { addTag(input: $input) { customer { id } } }",
        json!({ "input": { "customerId": customer, "name": "vip" } }),
    )
    .await;
}

backend_test!(
    async fn an_export_holds_every_part_of_the_person_with_raw_payloads(app: TestApp) {
        let crm = crm_record(&app, &app.key(Role::Admin).await).await;
        let w = world(&app).await;
        let her = her_customer(&app, &w.key).await;
        enrich(&app, &w.key, &her).await;

        let data = app.gql(&w.key, EXPORT, json!({ "id": her })).await;
        let doc = &data["exportCustomer"];
        assert_eq!(doc["format"], "rapport.customer-export/1");
        assert_eq!(doc["customer"]["display_name"], NAME);
        let points = doc["contact_points"].as_array().unwrap();
        assert_eq!(points.len(), 1, "{doc:#}");
        assert_eq!(points[0]["normalized"], "+447911123456");
        let identities = doc["identities"].as_array().unwrap();
        assert_eq!(identities.len(), 1);
        assert_eq!(identities[0]["platform_id"], PLATFORM_ID);
        assert_eq!(identities[0]["handle"], format!("@{HANDLE}"));
        assert!(
            identities[0]["links"].to_string().contains(EMAIL),
            "the profile's links: {doc:#}"
        );
        assert_eq!(doc["tags"][0]["name"], "vip");
        assert!(doc["notes"][0]["body"].as_str().unwrap().contains(NAME));
        assert!(doc["deals"][0]["title"].as_str().unwrap().contains(NAME));
        let suggestions = doc["duplicate_suggestions"].as_array().unwrap();
        assert_eq!(suggestions.len(), 1, "her two records: {doc:#}");
        let crm_uuid = rapport::ids::decode::<entity::CustomerId>("id", &crm)
            .unwrap()
            .uuid()
            .to_string();
        assert!(suggestions[0].to_string().contains(&crm_uuid));
        assert!(suggestions[0]["reasons"].is_array());

        // Her two statuses, whole, raw payload included, in her conversation; the
        // other author's reply in it is not hers and is not exported.
        let conversations = doc["conversations"].as_array().unwrap();
        assert_eq!(conversations.len(), 1, "{doc:#}");
        let messages = conversations[0]["messages"].as_array().unwrap();
        assert_eq!(messages.len(), 2, "{doc:#}");
        for message in messages {
            assert!(message["text"].as_str().unwrap().contains(HER_WORD));
            assert_eq!(message["raw"]["account"]["uri"], PLATFORM_ID, "{message:#}");
            assert!(message["html"].as_str().unwrap().contains(HER_WORD));
        }
        assert!(!doc.to_string().contains(OTHER.0));
        assert_eq!(doc["interactions"], json!([]));
        assert_eq!(doc["merges"], json!([]), "no merge names her");

        // Her other record's export names the same pair.
        let data = app.gql(&w.key, EXPORT, json!({ "id": crm })).await;
        assert_eq!(
            data["exportCustomer"]["contact_points"][0]["value"], EMAIL,
            "{data:#}"
        );
        assert_eq!(
            data["exportCustomer"]["duplicate_suggestions"]
                .as_array()
                .unwrap()
                .len(),
            1
        );
    }
);

backend_test!(
    async fn an_erased_person_leaves_no_trace_and_a_resync_brings_nothing_back(app: TestApp) {
        let crm = crm_record(&app, &app.key(Role::Admin).await).await;
        let w = world(&app).await;
        let her = her_customer(&app, &w.key).await;
        enrich(&app, &w.key, &her).await;
        catch_up(&app).await;
        // Our reply to the other author in her thread is filed under her, the
        // conversation's customer.
        let ids = app
            .gql(
                &w.key,
                "{ interactions(first: 10) { edges { node { id externalId } } } }",
                json!({}),
            )
            .await;
        let ravis = ids["interactions"]["edges"]
            .as_array()
            .unwrap()
            .iter()
            .find(|edge| edge["node"]["externalId"] == "113100000000000003")
            .unwrap()["node"]["id"]
            .clone();
        let agent = app.key(Role::Agent).await;
        let sent = app
            .gql(&agent, "mutation($input: ReplyToInteractionInput!) { replyToInteraction(input: $input) { interaction { customer { id } conversation { id } } } }",
                json!({ "input": { "interactionId": ravis, "text": format!("thanks, the {OUR_WORD} is live"), "idempotencyKey": "gdpr-reply-1" } }))
            .await;
        assert_eq!(
            sent["replyToInteraction"]["interaction"]["customer"]["id"],
            her.as_str()
        );
        // Our reply to her: a saved reply filled with her name, after the mention of
        // her Mastodon adds. It answers her, so it goes with her.
        app.gql(
            &w.key,
            "mutation($input: UpdateCustomerInput!) { updateCustomer(input: $input) { customer { id } } }",
            json!({ "input": { "id": her, "givenName": "Zofia" } }),
        )
        .await;
        let saved = app
            .gql(
                &agent,
                "mutation($name: String!, $body: String!) { createSavedReply(input: { name: $name, body: $body }) { savedReply { id } } }",
                json!({ "name": "fixed", "body": "Hi {{customer.givenName}}, the fix ships today." }),
            )
            .await["createSavedReply"]["savedReply"]["id"]
            .clone();
        let hers = ids["interactions"]["edges"]
            .as_array()
            .unwrap()
            .iter()
            .find(|edge| edge["node"]["externalId"] == "113100000000000001")
            .unwrap()["node"]["id"]
            .clone();
        let to_her = app
            .gql(&agent, "mutation($input: ReplyToConversationInput!) { replyToConversation(input: $input) { interaction { text deliveryStatus } } }",
                json!({ "input": { "conversationId": sent["replyToInteraction"]["interaction"]["conversation"]["id"], "savedReplyId": saved, "inReplyToId": hers } }))
            .await;
        assert_eq!(
            to_her["replyToConversation"]["interaction"],
            json!({ "text": "@zquennell@social.example Hi Zofia, the fix ships today.", "deliveryStatus": "SENT" })
        );
        catch_up(&app).await;
        assert_eq!(indexed(&app, OUR_WORD).await.0, 1);
        assert!(!traces(&dump(&app).await).is_empty(), "she is there first");
        assert_eq!(indexed(&app, HER_WORD).await.0, 2);
        assert!(indexed(&app, "Quennell").await.1 >= 1);
        // Ravi's reply as an older build logged it: the whole row, raw payload (her
        // account id, her mention) included.
        whole_row_event(&app, ravis.as_str().unwrap()).await;

        // Both her records: the one from Mastodon and the one made by hand.
        let data = app.gql(&w.key, ERASE, json!({ "id": her })).await;
        let removed = &data["eraseCustomer"]["removed"];
        assert_eq!(data["eraseCustomer"]["erasedCustomerId"], her.as_str());
        // Her two statuses and our reply to her.
        assert_eq!(removed["interactions"], 3, "{data:#}");
        assert_eq!(removed["conversations"], 0, "{data:#}");
        assert_eq!(removed["conversationsKept"], 1, "{data:#}");
        assert_eq!(removed["notes"], 1);
        assert_eq!(removed["deals"], 1);
        assert_eq!(removed["identities"], 1);
        assert_eq!(removed["contactPoints"], 1);
        assert_eq!(removed["duplicateSuggestions"], 1);
        assert!(removed["events"].as_i64().unwrap() >= 5, "{data:#}");
        // Three items (hers and our reply to her), her platform id, her phone and the
        // e-mail address her profile shows.
        assert_eq!(removed["tombstones"], 6, "{data:#}");
        let data = app.gql(&w.key, ERASE, json!({ "id": crm })).await;
        assert_eq!(data["eraseCustomer"]["removed"]["contactPoints"], 1);
        catch_up(&app).await;

        let dumped = dump(&app).await;
        assert_eq!(traces(&dumped), Vec::<&str>::new());
        // Her statuses' ids are gone too: the thread she started was keyed by the first.
        for status in ["113100000000000001", "113100000000000002"] {
            assert!(!dumped.contains(status), "{status}: {dumped}");
        }
        assert_eq!(indexed(&app, HER_WORD).await, (0, 0));
        assert_eq!(indexed(&app, "Quennell").await, (0, 0));
        assert_eq!(indexed(&app, "Zofia").await, (0, 0));
        // The other author's reply stays, in the thread she started, now his, with our
        // answer to him, still searchable; his mention of her is gone.
        let all = items(&app, &w.key).await;
        assert_eq!(all.len(), 2, "{all:#?}");
        for item in all.values() {
            assert_eq!(item["customer"]["displayName"], OTHER.0, "{item:#}");
            assert_eq!(
                item["conversation"]["id"],
                sent["replyToInteraction"]["interaction"]["conversation"]["id"]
            );
        }
        assert_eq!(
            all["113100000000000003"]["text"],
            "@acmehq [erased] Same here, the export fails for me too."
        );
        assert_eq!(indexed(&app, "fails").await.0, 1);
        assert_eq!(indexed(&app, OUR_WORD).await.0, 1);
        // The audit: two erasures, no personal data (the dump above holds them).
        assert!(dumped.contains("erasure: "));
        for id in [&her, &crm] {
            let (code, _) = app.gql_error(&w.key, EXPORT, json!({ "id": id })).await;
            assert_eq!(code, "NOT_FOUND");
            let (code, _) = app.gql_error(&w.key, ERASE, json!({ "id": id })).await;
            assert_eq!(code, "NOT_FOUND");
        }

        // The source is read again from the start: nothing of hers comes back.
        crate::feeds::forget_cursors(&app).await;
        let report = sync(&app, &w.key, &w.source).await;
        assert_eq!(report["error"], Value::Null, "{report:#}");
        assert_eq!(report["newItems"], 0, "{report:#}");
        catch_up(&app).await;
        assert_eq!(traces(&dump(&app).await), Vec::<&str>::new());
        assert_eq!(indexed(&app, HER_WORD).await, (0, 0));

        // A new status of hers: dropped, her platform id is erased (the default).
        w.entries.lock().unwrap().push(mention(
            4,
            zofia(),
            "Hello again, the importer works now.",
            None,
        ));
        let report = sync(&app, &w.key, &w.source).await;
        assert_eq!(report["newItems"], 0, "{report:#}");
        // Her e-mail address arriving on another channel: dropped too.
        let webhook = webhook_source(&app, &w.key).await;
        let report = rapport::ingest::ingest(
            &app.app.db,
            &webhook,
            &[form_item("form-1", EMAIL, "Please call me back")],
            None,
            None,
        )
        .await
        .unwrap();
        assert_eq!((report.new.len(), report.erased), (0, 1));
        assert_eq!(traces(&dump(&app).await), Vec::<&str>::new());

        // With new contact allowed, her new status makes a fresh customer; the erased
        // statuses still stay out, read again from the start.
        let data = app.gql(&w.key, SETTINGS, json!({ "on": true })).await;
        assert_eq!(
            data["updateWorkspaceSettings"]["workspace"]["settings"]["newContactAfterErasure"],
            true
        );
        crate::feeds::forget_cursors(&app).await;
        let report = sync(&app, &w.key, &w.source).await;
        assert_eq!(report["newItems"], 1, "{report:#}");
        let all = items(&app, &w.key).await;
        assert_eq!(all.len(), 3, "{all:#?}");
        let fresh: Vec<&Value> = all
            .values()
            .filter(|item| item["customer"]["displayName"] == NAME)
            .collect();
        assert_eq!(fresh.len(), 1, "{all:#?}");
        assert_eq!(
            fresh[0]["text"],
            "@acmehq Hello again, the importer works now."
        );
        assert_ne!(fresh[0]["customer"]["id"], her.as_str());
        assert!(!all
            .values()
            .any(|item| item["text"].as_str().unwrap().contains(HER_WORD)));
        catch_up(&app).await;
        assert_eq!(indexed(&app, HER_WORD).await, (0, 0));
    }
);

async fn webhook_source(app: &TestApp, key: &str) -> entity::source::Model {
    named_webhook_source(app, key, "forms").await
}

async fn named_webhook_source(app: &TestApp, key: &str, name: &str) -> entity::source::Model {
    let input = json!({ "channel": "WEBHOOK", "name": name, "config": { "secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw" } });
    let data = app
        .gql(key, "mutation($input: CreateSourceInput!) { createSource(input: $input) { source { id } } }", json!({ "input": input }))
        .await;
    let id: entity::SourceId =
        rapport::ids::decode("id", data["createSource"]["source"]["id"].as_str().unwrap()).unwrap();
    rapport::domain::source::for_webhook(&app.app.db, id)
        .await
        .unwrap()
}

/// A web form delivery from `email`.
fn form_item(id: &str, email: &str, text: &str) -> InboundItem {
    InboundItem {
        external_id: id.into(),
        author: Author {
            platform_id: email.into(),
            handle: None,
            display_name: Some("Someone".into()),
            profile_url: None,
            avatar_url: None,
            email: Some(email.into()),
            phone: None,
            links: Vec::new(),
        },
        outbound: false,
        kind: "message".into(),
        subject: None,
        text: text.into(),
        html: None,
        url: None,
        language: None,
        occurred_at: chrono::Utc.with_ymd_and_hms(2026, 11, 30, 9, 0, 0).unwrap(),
        thread_key: None,
        in_reply_to: None,
        raw: json!({ "email": email, "text": text }),
    }
}

backend_test!(
    async fn a_deleted_customers_items_do_not_return_on_a_repull(app: TestApp) {
        let w = world(&app).await;
        let her = her_customer(&app, &w.key).await;
        let data = app.gql(&w.key, DELETE, json!({ "id": her })).await;
        assert_eq!(data["deleteCustomer"]["deletedCustomerId"], her.as_str());
        assert_eq!(items(&app, &w.key).await.len(), 1);

        crate::feeds::forget_cursors(&app).await;
        let report = sync(&app, &w.key, &w.source).await;
        assert_eq!(report["error"], Value::Null, "{report:#}");
        assert_eq!(report["newItems"], 0, "{report:#}");
        let all = items(&app, &w.key).await;
        assert_eq!(all.len(), 1, "{all:#?}");
        assert!(!all
            .values()
            .any(|item| item["text"].as_str().unwrap().contains(HER_WORD)));

        // Deletion is not erasure: the person is not tombstoned, so a new status of
        // hers makes a new customer (her deleted ones still stay out).
        w.entries
            .lock()
            .unwrap()
            .push(mention(4, zofia(), "Back again.", None));
        crate::feeds::forget_cursors(&app).await;
        let report = sync(&app, &w.key, &w.source).await;
        assert_eq!(report["newItems"], 1, "{report:#}");
        let all = items(&app, &w.key).await;
        assert_eq!(all.len(), 2, "{all:#?}");
        let back = all
            .values()
            .find(|item| item["customer"]["displayName"] == NAME)
            .unwrap();
        assert_ne!(back["customer"]["id"], her.as_str());
    }
);

backend_test!(
    async fn export_and_erase_are_for_admins_of_the_same_workspace(app: TestApp) {
        let admin = app.key(Role::Admin).await;
        let her = crm_record(&app, &admin).await;
        for role in [Role::Viewer, Role::Agent] {
            let key = app.key(role).await;
            let (code, body) = app.gql_error(&key, EXPORT, json!({ "id": her })).await;
            assert_eq!(code, "FORBIDDEN", "{body:#}");
            let (code, body) = app.gql_error(&key, ERASE, json!({ "id": her })).await;
            assert_eq!(code, "FORBIDDEN", "{body:#}");
        }
        let stranger = app.key_in("globex", Role::Owner).await;
        let (code, body) = app.gql_error(&stranger, EXPORT, json!({ "id": her })).await;
        assert_eq!(code, "NOT_FOUND", "{body:#}");
        let (code, body) = app.gql_error(&stranger, ERASE, json!({ "id": her })).await;
        assert_eq!(code, "NOT_FOUND", "{body:#}");
        let (code, body) = app
            .gql_error(
                &admin,
                EXPORT,
                json!({ "id": "org_00000000000000000000000000" }),
            )
            .await;
        assert_eq!(code, "BAD_USER_INPUT", "{body:#}");
        // Still there, whole, for her own workspace's admin.
        let data = app.gql(&admin, EXPORT, json!({ "id": her })).await;
        assert_eq!(data["exportCustomer"]["contact_points"][0]["value"], EMAIL);
        let owner = app.key(Role::Owner).await;
        app.gql(&owner, ERASE, json!({ "id": her })).await;
    }
);

backend_test!(
    async fn a_person_merged_from_two_records_is_erased_whole(app: TestApp) {
        // Two records of her, merged: the merged one's row stays as a tombstone holding
        // her name as it was, and the merge record holds both rows as they were.
        let owner = app.key(Role::Owner).await;
        let survivor = crm_record(&app, &owner).await;
        let merged = app
            .create_customer(
                &owner,
                json!({ "displayName": "Zosia Brightwater",
                        "contactPoints": [{ "kind": "PHONE", "value": PHONE }] }),
            )
            .await;
        app.gql(
            &owner,
            "mutation($s: ID!, $m: ID!) { mergeCustomers(input: { survivorId: $s, mergedIds: [$m] }) { survivor { id } } }",
            json!({ "s": survivor, "m": merged }),
        )
        .await;
        let export = app.gql(&owner, EXPORT, json!({ "id": survivor })).await;
        let merges = export["exportCustomer"]["merges"].as_array().unwrap();
        assert_eq!(merges.len(), 1, "{export:#}");
        assert!(
            merges[0].to_string().contains("Zosia Brightwater"),
            "the merge record, with the merged row as it was: {export:#}"
        );

        app.gql(&owner, ERASE, json!({ "id": survivor })).await;
        let dump = dump(&app).await;
        let left = traces(&dump);
        assert!(
            left.is_empty(),
            "traces of her after the erasure: {left:#?}"
        );
        assert!(!dump.contains("zosia"), "the merged record's name stays");
        // Neither id names a customer any more; the tombstone did not come back.
        for id in [&survivor, &merged] {
            let data = app
                .gql(
                    &owner,
                    "query($id: ID!) { customer(id: $id) { id displayName } }",
                    json!({ "id": id }),
                )
                .await;
            assert!(data["customer"].is_null(), "{id}: {data:#}");
        }
        let data = app
            .gql(&owner, "{ customers(first: 10) { totalCount } }", json!({}))
            .await;
        assert_eq!(data["customers"]["totalCount"], 0, "{data:#}");
    }
);

backend_test!(
    async fn a_deleted_item_stays_out_of_its_own_source_only(app: TestApp) {
        // External ids are unique only within a source: two forms both number their
        // deliveries, and deleting one form's sender must not drop the other's.
        let owner = app.key(Role::Owner).await;
        let first = named_webhook_source(&app, &owner, "contact form").await;
        let second = named_webhook_source(&app, &owner, "support form").await;
        let store = |source: entity::source::Model, email: &'static str| {
            let db = app.app.db.clone();
            async move {
                rapport::ingest::ingest(
                    &db,
                    &source,
                    &[form_item("post:12", email, "Hello there")],
                    None,
                    None,
                )
                .await
                .unwrap()
            }
        };
        let report = store(first.clone(), "ana@first.example").await;
        assert_eq!(report.new.len(), 1);
        let all = items(&app, &owner).await;
        let ana = all.values().next().unwrap()["customer"]["id"]
            .as_str()
            .unwrap()
            .to_owned();
        app.gql(&owner, DELETE, json!({ "id": ana })).await;

        let report = store(second, "bo@second.example").await;
        assert_eq!(
            report.new.len(),
            1,
            "the other source's post:12 is someone else's"
        );
        let report = store(first, "ana@first.example").await;
        assert_eq!(
            report.new.len(),
            0,
            "the deleted item stays out of its source"
        );
    }
);

/// Her Bluesky account: the DID is the identity, and every URI of her posts holds it.
const HER_DID: &str = "did:plc:quennellquennellquennell";
const RAVI_DID: &str = "did:plc:raviraviraviraviraviravi";
const OUR_DID: &str = "did:plc:acmeacmeacmeacmeacmeacme";

/// A Bluesky post as the connector hands it over: `n` its record key, by `author` (DID,
/// handle, name), answering `parent` (and through it `root`) when given.
fn bluesky_post(
    n: u32,
    author: (&str, &str, &str),
    text: &str,
    reply: Option<(&str, &str)>,
) -> InboundItem {
    let (did, handle, name) = author;
    let uri = format!("at://{did}/app.bsky.feed.post/3lgdpr{n:07}");
    let mut record = json!({ "$type": "app.bsky.feed.post", "text": text, "createdAt": "2026-11-30T09:00:00.000Z", "langs": ["en"] });
    if let Some((root, parent)) = reply {
        record["reply"] = json!({
            "root": { "uri": root, "cid": format!("bafyreiroot{n}") },
            "parent": { "uri": parent, "cid": format!("bafyreiparent{n}") }
        });
    }
    // A mention of her is a facet naming her DID, as a client writes one.
    if let Some(start) = text.find("@zquennell.bsky.social") {
        record["facets"] = json!([{
            "index": { "byteStart": start, "byteEnd": start + "@zquennell.bsky.social".len() },
            "features": [{ "$type": "app.bsky.richtext.facet#mention", "did": HER_DID }]
        }]);
    }
    InboundItem {
        external_id: uri.clone(),
        author: Author {
            platform_id: did.into(),
            handle: Some(format!("@{handle}")),
            display_name: Some(name.into()),
            profile_url: Some(format!("https://bsky.app/profile/{did}")),
            avatar_url: None,
            email: None,
            phone: None,
            links: Vec::new(),
        },
        outbound: did == OUR_DID,
        kind: if reply.is_some() { "reply" } else { "mention" }.into(),
        subject: None,
        text: text.into(),
        html: None,
        url: Some(format!(
            "https://bsky.app/profile/{handle}/post/3lgdpr{n:07}"
        )),
        language: Some("en".into()),
        occurred_at: chrono::Utc.with_ymd_and_hms(2026, 11, 30, 9, n, 0).unwrap(),
        thread_key: None,
        in_reply_to: reply.map(|(_, parent)| parent.to_owned()),
        raw: json!({
            "uri": uri,
            "cid": format!("bafyreipost{n}"),
            "author": { "did": did, "handle": handle, "displayName": name },
            "record": record,
            "indexedAt": "2026-11-30T09:00:04.000Z"
        }),
    }
}

backend_test!(
    async fn an_erased_bluesky_author_leaves_no_did_in_the_thread_others_keep(app: TestApp) {
        let owner = app.key(Role::Owner).await;
        let pds = Platform::start().await;
        let id = crate::feeds::create_source(
            &app,
            &owner,
            "BLUESKY",
            "acme",
            json!({ "service": pds.base, "identifier": "acme.example", "app_password": "xk2q-7bvn-m3rt-p9wd" }),
        )
        .await;
        let source = crate::mastodon::source_row(&app, &id).await;
        // Her post, Ravi's answer naming her, our answer to her and our answer to him
        // (our own posts, pulled back as outbound items): every reply's URIs hold her
        // DID, as its thread's root or as the post answered.
        let her = (HER_DID, "zquennell.bsky.social", NAME);
        let ravi = (RAVI_DID, "ravi.example", OTHER.0);
        let us = (OUR_DID, "acme.example", "Acme");
        let first = bluesky_post(1, her, &format!("Is the {HER_WORD} export broken?"), None);
        let root = first.external_id.clone();
        let his = bluesky_post(
            2,
            ravi,
            "@zquennell.bsky.social same here, the export fails",
            Some((&root, &root)),
        );
        let to_her = bluesky_post(
            3,
            us,
            "@zquennell.bsky.social thanks Zofia, it is fixed",
            Some((&root, &root)),
        );
        let to_him = bluesky_post(
            4,
            us,
            &format!("@ravi.example the {OUR_WORD} is live"),
            Some((&root, &his.external_id)),
        );
        let report = rapport::ingest::ingest(
            &app.app.db,
            &source,
            &[first, his, to_her, to_him],
            None,
            None,
        )
        .await
        .unwrap();
        assert_eq!(report.new.len(), 4);
        let all = items(&app, &owner).await;
        let conversation = all[&root]["conversation"]["id"].clone();
        assert!(
            all.values()
                .all(|item| item["conversation"]["id"] == conversation),
            "{all:#?}"
        );
        let her_id = all[&root]["customer"]["id"].as_str().unwrap().to_owned();
        catch_up(&app).await;
        assert!(!traces(&dump(&app).await).is_empty(), "she is there first");

        let data = app.gql(&owner, ERASE, json!({ "id": her_id })).await;
        let removed = &data["eraseCustomer"]["removed"];
        assert_eq!(
            removed["interactions"], 2,
            "her post and our answer to her: {data:#}"
        );
        assert_eq!(removed["conversationsKept"], 1, "{data:#}");
        catch_up(&app).await;
        let dumped = dump(&app).await;
        let left = traces(&dumped);
        assert!(
            left.is_empty(),
            "traces of her after the erasure: {left:#?}"
        );
        assert_eq!(indexed(&app, HER_WORD).await, (0, 0));
        assert_eq!(indexed(&app, "Zofia").await, (0, 0));

        // Ravi's answer and ours to him stay, in the same conversation, now his.
        let all = items(&app, &owner).await;
        assert_eq!(all.len(), 2, "{all:#?}");
        for item in all.values() {
            assert_eq!(item["customer"]["displayName"], OTHER.0, "{item:#}");
            assert_eq!(item["conversation"]["id"], conversation, "{item:#}");
        }
        let texts: Vec<&str> = all
            .values()
            .map(|item| item["text"].as_str().unwrap())
            .collect();
        assert!(
            texts.contains(&"[erased] same here, the export fails"),
            "{texts:?}"
        );
        assert_eq!(indexed(&app, OUR_WORD).await.0, 1);
        assert_eq!(indexed(&app, "fails").await.0, 1);

        // Read again, nothing of hers comes back, and a new answer to Ravi's post
        // still finds the conversation.
        let report = rapport::ingest::ingest(
            &app.app.db,
            &source,
            &[
                bluesky_post(1, her, &format!("Is the {HER_WORD} export broken?"), None),
                bluesky_post(
                    5,
                    ravi,
                    "and it works now",
                    Some((
                        &root,
                        &all.keys()
                            .find(|uri| uri.contains(RAVI_DID))
                            .unwrap()
                            .clone(),
                    )),
                ),
            ],
            None,
            None,
        )
        .await
        .unwrap();
        assert_eq!((report.new.len(), report.erased), (1, 1));
        let all = items(&app, &owner).await;
        assert!(
            all.values()
                .all(|item| item["conversation"]["id"] == conversation),
            "{all:#?}"
        );
    }
);

backend_test!(
    async fn an_address_only_her_profile_showed_keeps_her_out_too(app: TestApp) {
        // No record of hers holds her e-mail address as a contact point: her Mastodon
        // profile's "Mail" field names it. After she is erased, a web form from that
        // address is hers coming back.
        let w = world(&app).await;
        let her = her_customer(&app, &w.key).await;
        let export = app.gql(&w.key, EXPORT, json!({ "id": her })).await;
        assert_eq!(export["exportCustomer"]["contact_points"], json!([]));
        app.gql(&w.key, ERASE, json!({ "id": her })).await;

        let webhook = webhook_source(&app, &w.key).await;
        let report = rapport::ingest::ingest(
            &app.app.db,
            &webhook,
            &[form_item("form-1", EMAIL, "Please call me back")],
            None,
            None,
        )
        .await
        .unwrap();
        assert_eq!((report.new.len(), report.erased), (0, 1));
        assert_eq!(traces(&dump(&app).await), Vec::<&str>::new());
    }
);
