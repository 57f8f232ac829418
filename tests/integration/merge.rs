//! Merging customers and undoing it: a merge then its unmerge leave every row of every
//! table byte for byte as it was; a merge while ingestion writes to both customers loses
//! no interaction; a merged id resolves to the survivor, which search finds by the merged
//! customer's e-mail and name; an unmerge after new interactions sends back those of the
//! merged customer's identities; several merges into one survivor undo one at a time;
//! roles and tenancy; automatic merging only above the workspace's threshold.

use chrono::TimeZone;
use connectors::{Author, InboundItem, ProfileLink};
use rapport::domain::Role;
use sea_orm::{ActiveModelTrait, ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter};
use serde_json::{json, Value};

use crate::backend_test;
use crate::common::TestApp;

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

const MERGE: &str = "mutation($input: MergeCustomersInput!) { mergeCustomers(input: $input) { survivor { id displayName givenName externalId customAttributes contactPoints { value primary } identities { platformId } tags { name } } merges { id reason score mergedCustomerId survivor { id } unmergedAt } } }";
const UNMERGE: &str = "mutation($id: ID!) { unmergeCustomer(input: { customerId: $id }) { customer { id displayName externalId } survivor { id displayName externalId } merge { id reason score unmergedAt } } }";

async fn source(app: &TestApp, key: &str) -> entity::source::Model {
    let input = json!({ "channel": "WEBHOOK", "name": "forms", "config": { "secret": SECRET } });
    let data = app
        .gql(key, "mutation($input: CreateSourceInput!) { createSource(input: $input) { source { id } } }", json!({ "input": input }))
        .await;
    let id: entity::SourceId =
        rapport::ids::decode("id", data["createSource"]["source"]["id"].as_str().unwrap()).unwrap();
    rapport::domain::source::for_webhook(&app.app.db, id)
        .await
        .unwrap()
}

fn item(id: &str, who: &str, email: Option<&str>, minute: u32) -> InboundItem {
    InboundItem {
        external_id: id.into(),
        author: Author {
            platform_id: format!("acct:{who}"),
            handle: Some(format!("@{who}")),
            display_name: Some(who.into()),
            email: email.map(str::to_owned),
            ..Author::default()
        },
        outbound: false,
        kind: "mention".into(),
        subject: None,
        text: format!("message {id} from {who}"),
        html: None,
        url: None,
        language: None,
        occurred_at: chrono::Utc
            .with_ymd_and_hms(2026, 11, 1, 12, minute % 60, 0)
            .unwrap(),
        thread_key: None,
        in_reply_to: None,
        raw: json!({ "id": id }),
    }
}

fn reply(id: &str, who: &str, minute: u32, to: &str) -> InboundItem {
    InboundItem {
        in_reply_to: Some(to.into()),
        ..item(id, who, None, minute)
    }
}

fn decode(id: &str) -> entity::CustomerId {
    rapport::ids::decode("id", id).unwrap()
}

/// The customer an author's identity belongs to now.
async fn owner(app: &TestApp, who: &str) -> entity::CustomerId {
    entity::identity::Entity::find()
        .filter(entity::identity::Column::PlatformId.eq(format!("acct:{who}")))
        .one(&app.app.db)
        .await
        .unwrap()
        .unwrap_or_else(|| panic!("no identity for {who}"))
        .customer_id
}

/// Every row of every table a merge can touch, as JSON, in a stable order.
async fn dump(app: &TestApp) -> Vec<(String, Vec<String>)> {
    async fn rows<E: EntityTrait>(app: &TestApp) -> Vec<String>
    where
        E::Model: serde::Serialize,
    {
        let mut rows: Vec<String> = E::find()
            .all(&app.app.db)
            .await
            .unwrap()
            .iter()
            .map(|row| serde_json::to_string(row).unwrap())
            .collect();
        rows.sort();
        rows
    }
    use entity::*;
    vec![
        ("customer".into(), rows::<customer::Entity>(app).await),
        (
            "contact_point".into(),
            rows::<contact_point::Entity>(app).await,
        ),
        ("identity".into(), rows::<identity::Entity>(app).await),
        (
            "identity_link".into(),
            rows::<identity_link::Entity>(app).await,
        ),
        ("interaction".into(), rows::<interaction::Entity>(app).await),
        (
            "conversation".into(),
            rows::<conversation::Entity>(app).await,
        ),
        (
            "conversation_label".into(),
            rows::<conversation_label::Entity>(app).await,
        ),
        ("deal".into(), rows::<deal::Entity>(app).await),
        ("note".into(), rows::<note::Entity>(app).await),
        ("tag".into(), rows::<tag::Entity>(app).await),
        (
            "customer_tag".into(),
            rows::<customer_tag::Entity>(app).await,
        ),
        ("spam_author".into(), rows::<spam_author::Entity>(app).await),
        (
            "duplicate_suggestion".into(),
            rows::<duplicate_suggestion::Entity>(app).await,
        ),
        (
            "organization".into(),
            rows::<organization::Entity>(app).await,
        ),
    ]
}

/// `rows` with the `updated_at` of the customer `id` left out.
fn without_updated_at(rows: &[(String, Vec<String>)], id: &str) -> Vec<(String, Vec<String>)> {
    let uuid = decode(id).to_string();
    rows.iter()
        .map(|(table, rows)| {
            let rows = rows
                .iter()
                .map(|row| {
                    let mut value: Value = serde_json::from_str(row).unwrap();
                    if table == "customer" && value["id"] == json!(uuid) {
                        value["updated_at"] = Value::Null;
                    }
                    value.to_string()
                })
                .collect();
            (table.clone(), rows)
        })
        .collect()
}

fn assert_same(before: &[(String, Vec<String>)], after: &[(String, Vec<String>)]) {
    for ((table, was), (_, is)) in before.iter().zip(after) {
        for row in was {
            assert!(
                is.contains(row),
                "{table}: the row {row} is not back as it was; now {is:#?}"
            );
        }
        assert_eq!(was.len(), is.len(), "{table}: {is:#?}");
    }
}

async fn suggest(app: &TestApp, x: &str, y: &str, score: f64) {
    let (x, y) = (decode(x), decode(y));
    let workspace = rapport::domain::workspace::ensure(&app.app.db, "acme")
        .await
        .unwrap();
    let now = rapport::domain::now();
    entity::duplicate_suggestion::ActiveModel::from(entity::duplicate_suggestion::Model {
        id: entity::DuplicateSuggestionId::new(),
        workspace_id: workspace.id,
        customer_a: x.min(y),
        customer_b: x.max(y),
        score,
        reasons: "[]".into(),
        status: entity::enums::DuplicateStatus::Pending,
        created_at: now,
        updated_at: now,
    })
    .insert(&app.app.db)
    .await
    .unwrap();
}

backend_test! {
    async fn a_merge_then_its_unmerge_leave_every_row_as_it_was(app: TestApp) {
        let admin = app.key(Role::Admin).await;
        let agent = app.key(Role::Agent).await;
        let source = source(&app, &admin).await;
        let ana = app.create_customer(&admin, json!({ "displayName": "Ana Souza", "externalId": "crm-1", "customAttributes": { "tier": "gold" }, "contactPoints": [{ "kind": "EMAIL", "value": "ana@souza.example" }], "tags": ["vip"] })).await;
        let anna = app.create_customer(&admin, json!({ "displayName": "Anna S.", "givenName": "Anna", "externalId": "crm-2", "customAttributes": { "tier": "silver", "city": "Lisbon" }, "contactPoints": [{ "kind": "EMAIL", "value": "anna@mail.example" }, { "kind": "PHONE", "value": "+34 600 111 222" }], "tags": ["vip", "newsletter"] })).await;
        let other = app.create_customer(&admin, json!({ "displayName": "Other" })).await;
        rapport::ingest::ingest(&app.app.db, &source, &[
            item("1", "ana", Some("ana@souza.example"), 1),
            item("2", "anna", Some("anna@mail.example"), 2),
            reply("3", "anna", 3, "2"),
            InboundItem { outbound: true, ..reply("4", "us", 4, "2") },
        ], Some("c1"), None).await.unwrap();
        assert_eq!(owner(&app, "anna").await, decode(&anna));
        app.gql(&agent, "mutation($id: ID!) { addNote(input: { customerId: $id, body: \"called her\" }) { note { id } } }", json!({ "id": anna })).await;
        app.gql(&agent, "mutation($id: ID!) { createDeal(input: { customerId: $id, title: \"Renewal\" }) { deal { id } } }", json!({ "id": anna })).await;
        suggest(&app, &ana, &anna, 0.9).await;
        suggest(&app, &anna, &other, 0.8).await;
        let before = dump(&app).await;

        let input = json!({ "survivorId": ana, "mergedIds": [anna], "fieldChoices": [
            { "field": "DISPLAY_NAME", "customerId": anna },
            { "field": "CUSTOM_ATTRIBUTE", "key": "tier", "customerId": anna },
        ] });
        let data = app.gql(&agent, MERGE, json!({ "input": input })).await;
        let survivor = &data["mergeCustomers"]["survivor"];
        assert_eq!(survivor["id"], json!(ana));
        assert_eq!(survivor["displayName"], "Anna S.", "chosen");
        assert_eq!(survivor["givenName"], "Anna", "the survivor had none");
        assert_eq!(survivor["externalId"], "crm-1", "the survivor's by default");
        assert_eq!(survivor["customAttributes"], json!({ "tier": "silver", "city": "Lisbon" }));
        assert_eq!(survivor["contactPoints"].as_array().unwrap().len(), 3, "{survivor:#}");
        let primaries = survivor["contactPoints"].as_array().unwrap().iter().filter(|p| p["primary"] == true).count();
        assert_eq!(primaries, 2, "one primary e-mail and the phone: {survivor:#}");
        assert_eq!(survivor["identities"].as_array().unwrap().len(), 2);
        let mut tags: Vec<&str> = survivor["tags"].as_array().unwrap().iter().map(|t| t["name"].as_str().unwrap()).collect();
        tags.sort();
        assert_eq!(tags, ["newsletter", "vip"]);
        let merge = &data["mergeCustomers"]["merges"][0];
        assert_eq!((&merge["reason"], &merge["mergedCustomerId"], &merge["survivor"]["id"]), (&json!("MANUAL"), &json!(anna), &json!(ana)));

        // Everything of hers is the survivor's; her id resolves to it; lists skip her.
        let data = app.gql(&admin, "query($id: ID!) { customer(id: $id) { id timeline { totalCount } conversations { id } deals { title } notes { body } } node(id: $id) { id } customers { totalCount } }", json!({ "id": anna })).await;
        assert_eq!(data["customer"]["id"], json!(ana));
        assert_eq!(data["node"]["id"], json!(ana));
        assert_eq!(data["customer"]["timeline"]["totalCount"], 4);
        assert_eq!(data["customer"]["conversations"].as_array().unwrap().len(), 2);
        assert_eq!(data["customer"]["deals"], json!([{ "title": "Renewal" }]));
        assert_eq!(data["customer"]["notes"], json!([{ "body": "called her" }]));
        assert_eq!(data["customers"]["totalCount"], 2);
        assert_eq!(owner(&app, "anna").await, decode(&ana));
        let tombstone = entity::customer::Entity::find_by_id(decode(&anna)).one(&app.app.db).await.unwrap().unwrap();
        assert_eq!((tombstone.merged_into, tombstone.external_id), (Some(decode(&ana)), None));
        let data = app.gql(&admin, "{ duplicateSuggestions(minScore: 0) { totalCount edges { node { score a { id } b { id } } } } }", json!({})).await;
        assert_eq!(data["duplicateSuggestions"]["totalCount"], 1, "the merged pair is resolved: {data:#}");
        let pair = &data["duplicateSuggestions"]["edges"][0]["node"];
        let mut named = vec![pair["a"]["id"].as_str().unwrap(), pair["b"]["id"].as_str().unwrap()];
        named.sort();
        let mut expected = vec![ana.as_str(), other.as_str()];
        expected.sort();
        assert_eq!(named, expected, "the third customer's suggestion names the survivor now");

        let data = app.gql(&agent, UNMERGE, json!({ "id": anna })).await;
        let undone = &data["unmergeCustomer"];
        assert_eq!(undone["customer"], json!({ "id": anna, "displayName": "Anna S.", "externalId": "crm-2" }));
        assert_eq!(undone["survivor"], json!({ "id": ana, "displayName": "Ana Souza", "externalId": "crm-1" }));
        assert!(undone["merge"]["unmergedAt"].is_string());
        assert_same(&before, &dump(&app).await);
        assert_eq!(app.gql(&admin, "{ customers { totalCount } }", json!({})).await["customers"]["totalCount"], 3);

        // Nothing left to undo.
        let (code, body) = app.gql_error(&agent, UNMERGE, json!({ "id": anna })).await;
        assert_eq!(code, "BAD_USER_INPUT", "{body}");
        let (code, _) = app.gql_error(&agent, UNMERGE, json!({ "id": ana })).await;
        assert_eq!(code, "BAD_USER_INPUT");

        // The survivor may take the merged one's external id: it is freed on the
        // tombstone and given back by the unmerge.
        let input = json!({ "survivorId": ana, "mergedIds": [anna], "fieldChoices": [{ "field": "EXTERNAL_ID", "customerId": anna }] });
        let data = app.gql(&agent, MERGE, json!({ "input": input })).await;
        assert_eq!(data["mergeCustomers"]["survivor"]["externalId"], "crm-2");
        let data = app.gql(&admin, "{ customerByExternalId(externalId: \"crm-2\") { id } }", json!({})).await;
        assert_eq!(data["customerByExternalId"]["id"], json!(ana));
        app.gql(&agent, UNMERGE, json!({ "id": anna })).await;
        assert_same(&before, &dump(&app).await);
    }
}

backend_test! {
    async fn an_unmerge_after_new_interactions_sends_back_those_of_the_merged_identities(app: TestApp) {
        let admin = app.key(Role::Admin).await;
        let source = source(&app, &admin).await;
        rapport::ingest::ingest(&app.app.db, &source, &[item("s1", "sam", None, 1)], Some("c1"), None).await.unwrap();
        rapport::ingest::ingest(&app.app.db, &source, &[item("m1", "max", None, 2)], Some("c2"), None).await.unwrap();
        let (sam, max) = (owner(&app, "sam").await, owner(&app, "max").await);
        let (sam_id, max_id) = (rapport::ids::encode(sam), rapport::ids::encode(max));
        app.gql(&admin, MERGE, json!({ "input": { "survivorId": sam_id, "mergedIds": [max_id] } })).await;

        // New messages on the survivor: from max's account (a new thread, and a reply in
        // his old one), our answer in his old thread, and one from sam.
        rapport::ingest::ingest(&app.app.db, &source, &[
            item("m2", "max", None, 10),
            reply("m3", "max", 11, "m1"),
            InboundItem { outbound: true, ..reply("o1", "us", 12, "m1") },
            item("s2", "sam", None, 13),
        ], Some("c3"), None).await.unwrap();
        rapport::ingest::ingest_item_by_item(&app.app.db, &source, &[item("m4", "max", None, 14)]).await.unwrap();
        let on = |customer: entity::CustomerId| {
            let db = app.app.db.clone();
            async move {
                let mut ids: Vec<String> = entity::interaction::Entity::find()
                    .filter(entity::interaction::Column::CustomerId.eq(customer))
                    .all(&db)
                    .await
                    .unwrap()
                    .into_iter()
                    .map(|row| row.external_id.unwrap())
                    .collect();
                ids.sort();
                ids
            }
        };
        assert_eq!(on(max).await, Vec::<String>::new(), "all on the survivor while merged");
        assert_eq!(on(sam).await.len(), 7);

        app.gql(&admin, UNMERGE, json!({ "id": max_id })).await;
        assert_eq!(on(max).await, ["m1", "m2", "m3", "m4", "o1"]);
        assert_eq!(on(sam).await, ["s1", "s2"]);
        let conversations = entity::conversation::Entity::find()
            .filter(entity::conversation::Column::CustomerId.eq(max))
            .count(&app.app.db)
            .await
            .unwrap();
        assert_eq!(conversations, 3, "his old thread and the two he started since");
        let customer = entity::customer::Entity::find_by_id(max).one(&app.app.db).await.unwrap().unwrap();
        assert_eq!(customer.merged_into, None);
        assert_eq!(customer.last_seen_at, chrono::Utc.with_ymd_and_hms(2026, 11, 1, 12, 14, 0).unwrap(), "seen when his last message came");
        assert_eq!(owner(&app, "max").await, max);
    }
}

backend_test! {
    async fn several_merges_into_one_survivor_are_undone_one_at_a_time(app: TestApp) {
        let agent = app.key(Role::Agent).await;
        let ana = app.create_customer(&agent, json!({ "displayName": "Ana", "contactPoints": [{ "kind": "EMAIL", "value": "ana@one.example" }] })).await;
        let two = app.create_customer(&agent, json!({ "displayName": "Ana Two", "contactPoints": [{ "kind": "EMAIL", "value": "ana@two.example" }] })).await;
        let three = app.create_customer(&agent, json!({ "displayName": "Ana Three", "familyName": "Three", "contactPoints": [{ "kind": "EMAIL", "value": "ana@three.example" }] })).await;
        let before = dump(&app).await;
        app.gql(&agent, MERGE, json!({ "input": { "survivorId": ana, "mergedIds": [two] } })).await;
        let data = app.gql(&agent, MERGE, json!({ "input": { "survivorId": two, "mergedIds": [three] } })).await;
        assert_eq!(data["mergeCustomers"]["survivor"]["id"], json!(ana), "a merged id stands for its survivor");
        assert_eq!(data["mergeCustomers"]["survivor"]["contactPoints"].as_array().unwrap().len(), 3);

        app.gql(&agent, UNMERGE, json!({ "id": two })).await;
        let data = app.gql(&agent, "query($a: ID!, $t: ID!) { a: customer(id: $a) { familyName contactPoints { value } } t: customer(id: $t) { id } }", json!({ "a": ana, "t": three })).await;
        let values: Vec<&str> = data["a"]["contactPoints"].as_array().unwrap().iter().map(|p| p["value"].as_str().unwrap()).collect();
        assert_eq!(values, ["ana@one.example", "ana@three.example"], "the other merge holds");
        assert_eq!(data["a"]["familyName"], "Three");
        assert_eq!(data["t"]["id"], json!(ana));
        app.gql(&agent, UNMERGE, json!({ "id": three })).await;
        // Undone out of order, the survivor was changed between the two unmerges: it
        // is as it was but for when it last changed.
        assert_same(&without_updated_at(&before, &ana), &without_updated_at(&dump(&app).await, &ana));
    }
}

backend_test! {
    async fn merging_needs_the_agent_role_and_stays_in_its_workspace(app: TestApp) {
        let agent = app.key(Role::Agent).await;
        let viewer = app.key(Role::Viewer).await;
        let stranger = app.key_in("globex", Role::Admin).await;
        let ana = app.create_customer(&agent, json!({ "displayName": "Ana" })).await;
        let bo = app.create_customer(&agent, json!({ "displayName": "Bo" })).await;
        let theirs = app.create_customer(&stranger, json!({ "displayName": "Theirs" })).await;
        let merge = |survivor: &str, merged: &str| json!({ "input": { "survivorId": survivor, "mergedIds": [merged] } });

        let (code, _) = app.gql_error(&viewer, MERGE, merge(&ana, &bo)).await;
        assert_eq!(code, "FORBIDDEN");
        for (survivor, merged) in [(&ana, &theirs), (&theirs, &ana)] {
            let (code, body) = app.gql_error(&agent, MERGE, merge(survivor, merged)).await;
            assert_eq!(code, "NOT_FOUND", "{body}");
        }
        let (code, _) = app.gql_error(&stranger, MERGE, merge(&ana, &bo)).await;
        assert_eq!(code, "NOT_FOUND");
        for input in [
            json!({ "survivorId": ana, "mergedIds": [] }),
            json!({ "survivorId": ana, "mergedIds": [ana] }),
            json!({ "survivorId": ana, "mergedIds": [bo, bo] }),
            json!({ "survivorId": ana, "mergedIds": [bo], "fieldChoices": [{ "field": "DISPLAY_NAME", "customerId": theirs }] }),
            json!({ "survivorId": ana, "mergedIds": [bo], "fieldChoices": [{ "field": "CUSTOM_ATTRIBUTE", "customerId": bo }] }),
        ] {
            let (code, body) = app.gql_error(&agent, MERGE, json!({ "input": input })).await;
            assert_eq!(code, "BAD_USER_INPUT", "{input}: {body}");
        }

        app.gql(&agent, MERGE, merge(&ana, &bo)).await;
        let (code, _) = app.gql_error(&viewer, UNMERGE, json!({ "id": bo })).await;
        assert_eq!(code, "FORBIDDEN");
        let (code, _) = app.gql_error(&stranger, UNMERGE, json!({ "id": bo })).await;
        assert_eq!(code, "NOT_FOUND");
        let data = app.gql(&stranger, "query($id: ID!) { customer(id: $id) { id } node(id: $id) { id } }", json!({ "id": bo })).await;
        assert_eq!((&data["customer"], &data["node"]), (&Value::Null, &Value::Null));
        let data = app.gql(&viewer, "query($id: ID!) { customer(id: $id) { id } }", json!({ "id": bo })).await;
        assert_eq!(data["customer"]["id"], json!(ana), "a viewer reads the survivor through the merged id");
        // Nothing is written to a tombstone, where no one would see it.
        for write in [
            "mutation($id: ID!) { addNote(input: { customerId: $id, body: \"x\" }) { note { id } } }",
            "mutation($id: ID!) { updateCustomer(input: { id: $id, displayName: \"X\" }) { customer { id } } }",
            "mutation($id: ID!) { createDeal(input: { customerId: $id, title: \"X\" }) { deal { id } } }",
        ] {
            let (code, body) = app.gql_error(&agent, write, json!({ "id": bo })).await;
            assert_eq!(code, "CONFLICT", "{write}: {body}");
        }
        app.gql(&agent, UNMERGE, json!({ "id": bo })).await;
    }
}

backend_test! {
    async fn a_merge_while_ingestion_writes_to_both_customers_loses_no_interaction(app: TestApp) {
        let agent = app.key(Role::Agent).await;
        let source = source(&app, &app.key(Role::Admin).await).await;
        rapport::ingest::ingest(&app.app.db, &source, &[item("s0", "sam", None, 0)], Some("c"), None).await.unwrap();
        rapport::ingest::ingest(&app.app.db, &source, &[item("m0", "max", None, 0)], Some("c"), None).await.unwrap();
        let (sam, max) = (owner(&app, "sam").await, owner(&app, "max").await);

        const ROUNDS: u32 = 30;
        let db = app.app.db.clone();
        let writer = source.clone();
        let ingestion = tokio::spawn(async move {
            for round in 0..ROUNDS {
                // Each author in a new thread and in their first one (its conversation
                // is locked by the batch as the merge moves it).
                let batch = [
                    item(&format!("s{round}a"), "sam", None, round),
                    item(&format!("m{round}a"), "max", None, round),
                    reply(&format!("m{round}b"), "max", round, "m0"),
                    reply(&format!("s{round}b"), "sam", round, "s0"),
                ];
                let mut tries = 0;
                // A batch PostgreSQL chose to fail to break a deadlock is pulled again,
                // as the scheduler would.
                while let Err(err) = rapport::ingest::ingest(&db, &writer, &batch, Some("c"), None).await {
                    tries += 1;
                    assert!(tries < 5, "{err}");
                }
                // A scheduler's pause between pulls (SQLite's waiting writer gets its turn).
                tokio::time::sleep(std::time::Duration::from_millis(2)).await;
            }
        });
        let stored = || async {
            entity::interaction::Entity::find().count(&app.app.db).await.unwrap()
        };
        while stored().await < 2 + 4 * u64::from(ROUNDS) / 3 && !ingestion.is_finished() {
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        let data = app.gql(&agent, MERGE, json!({ "input": { "survivorId": rapport::ids::encode(sam), "mergedIds": [rapport::ids::encode(max)] } })).await;
        assert_eq!(data["mergeCustomers"]["survivor"]["id"], json!(rapport::ids::encode(sam)));
        assert!(!ingestion.is_finished(), "the merge ran while batches were being stored");
        ingestion.await.unwrap();

        assert_eq!(stored().await, 2 + 4 * u64::from(ROUNDS), "every item is stored once");
        let elsewhere = entity::interaction::Entity::find()
            .filter(entity::interaction::Column::CustomerId.ne(sam))
            .count(&app.app.db)
            .await
            .unwrap();
        assert_eq!(elsewhere, 0, "every interaction is the survivor's, none is left on the tombstone");
        for table in ["conversation", "identity"] {
            let left = match table {
                "conversation" => entity::conversation::Entity::find().filter(entity::conversation::Column::CustomerId.eq(max)).count(&app.app.db).await.unwrap(),
                _ => entity::identity::Entity::find().filter(entity::identity::Column::CustomerId.eq(max)).count(&app.app.db).await.unwrap(),
            };
            assert_eq!(left, 0, "no {table} left on the tombstone");
        }
        let customer = entity::customer::Entity::find_by_id(max).one(&app.app.db).await.unwrap().unwrap();
        assert_eq!(customer.merged_into, Some(sam));
    }
}

backend_test! {
    async fn search_finds_the_survivor_by_the_merged_customers_email_and_name(app: TestApp) {
        let agent = app.key(Role::Agent).await;
        let ana = app.create_customer(&agent, json!({ "displayName": "Ana Souza", "contactPoints": [{ "kind": "EMAIL", "value": "ana@northwind.example" }] })).await;
        let other = app.create_customer(&agent, json!({ "displayName": "Benedita Quaresma", "contactPoints": [{ "kind": "EMAIL", "value": "bq@quaresma.example" }] })).await;
        let catch_up = || async {
            rapport::search::indexer::Indexer::new(&app.app).catch_up().await.unwrap();
        };
        catch_up().await;
        let find = |q: &'static str| {
            let agent = agent.clone();
            let app = &app;
            async move {
                let data = app.gql(&agent, "query($q: String!) { searchCustomers(query: $q) { customer { id } } }", json!({ "q": q })).await;
                data["searchCustomers"].as_array().unwrap().iter().map(|hit| hit["customer"]["id"].as_str().unwrap().to_owned()).collect::<Vec<_>>()
            }
        };
        assert_eq!(find("quaresma").await, [other.as_str()]);
        app.gql(&agent, MERGE, json!({ "input": { "survivorId": ana, "mergedIds": [other] } })).await;
        catch_up().await;
        for q in ["quaresma", "bq@quaresma", "benedita"] {
            assert_eq!(find(q).await, [ana.as_str()], "{q}");
        }
        assert_eq!(find("souza").await, [ana.as_str()], "one document: the merged one's is gone");
        app.gql(&agent, UNMERGE, json!({ "id": other })).await;
        catch_up().await;
        assert_eq!(find("quaresma").await, [other.as_str()]);
        assert_eq!(find("souza").await, [ana.as_str()]);
    }
}

fn linked(
    id: &str,
    who: &str,
    profile: Option<&str>,
    links: &[(&str, &str, bool)],
    minute: u32,
) -> InboundItem {
    InboundItem {
        author: Author {
            profile_url: profile.map(str::to_owned),
            links: links
                .iter()
                .map(|(url, label, verified)| ProfileLink {
                    url: (*url).into(),
                    label: Some((*label).into()),
                    verified: *verified,
                })
                .collect(),
            ..item(id, who, None, minute).author
        },
        ..item(id, who, None, minute)
    }
}

backend_test! {
    async fn suggestions_merge_by_themselves_only_above_the_workspace_threshold(app: TestApp) {
        let admin = app.key(Role::Admin).await;
        let source = source(&app, &admin).await;
        let settings = "mutation($t: Float) { updateWorkspaceSettings(input: { autoMergeThreshold: $t }) { workspace { settings { autoMergeThreshold } } } }";
        let live = || async {
            entity::customer::Entity::find()
                .filter(entity::customer::Column::MergedInto.is_null())
                .count(&app.app.db)
                .await
                .unwrap()
        };

        // Off by default: a suggestion, no merge.
        let data = app.gql(&admin, "{ viewer { workspace { settings { autoMergeThreshold } } } }", json!({})).await;
        assert_eq!(data["viewer"]["workspace"]["settings"]["autoMergeThreshold"], Value::Null);
        rapport::ingest::ingest(&app.app.db, &source, &[linked("a1", "ana-gh", Some("https://github.com/ana-dev"), &[], 1)], Some("c1"), None).await.unwrap();
        rapport::ingest::ingest(&app.app.db, &source, &[linked("a2", "ana-social", None, &[("https://github.com/ana-dev", "GitHub", true)], 2)], Some("c2"), None).await.unwrap();
        assert_eq!(live().await, 2);
        assert_ne!(owner(&app, "ana-gh").await, owner(&app, "ana-social").await);

        let (code, _) = app.gql_error(&admin, settings, json!({ "t": 1.5 })).await;
        assert_eq!(code, "BAD_USER_INPUT");
        let data = app.gql(&admin, settings, json!({ "t": 0.9 })).await;
        assert_eq!(data["updateWorkspaceSettings"]["workspace"]["settings"]["autoMergeThreshold"], 0.9);

        // A verified link (0.95) merges at once, through a batch and one by one; the older
        // customer survives and holds the new one's interaction.
        rapport::ingest::ingest(&app.app.db, &source, &[linked("b1", "bo-gh", Some("https://github.com/bo-dev"), &[], 3)], Some("c3"), None).await.unwrap();
        let bo = owner(&app, "bo-gh").await;
        rapport::ingest::ingest(&app.app.db, &source, &[linked("b2", "bo-social", None, &[("https://github.com/bo-dev", "GitHub", true)], 4)], Some("c4"), None).await.unwrap();
        assert_eq!(owner(&app, "bo-social").await, bo);
        rapport::ingest::ingest(&app.app.db, &source, &[linked("c1", "cy-gh", Some("https://github.com/cy-dev"), &[], 5)], Some("c5"), None).await.unwrap();
        let cy = owner(&app, "cy-gh").await;
        rapport::ingest::ingest_item_by_item(&app.app.db, &source, &[linked("c2", "cy-social", None, &[("https://github.com/cy-dev", "GitHub", true)], 6)]).await.unwrap();
        assert_eq!(owner(&app, "cy-social").await, cy);
        for (external, customer) in [("b2", bo), ("c2", cy)] {
            let row = entity::interaction::Entity::find().filter(entity::interaction::Column::ExternalId.eq(external)).one(&app.app.db).await.unwrap().unwrap();
            assert_eq!(row.customer_id, Some(customer), "{external}");
        }
        // Below the threshold (a profile field, not verified: 0.85): a suggestion only.
        rapport::ingest::ingest(&app.app.db, &source, &[linked("d1", "di-gh", Some("https://github.com/di-dev"), &[], 7)], Some("c6"), None).await.unwrap();
        rapport::ingest::ingest(&app.app.db, &source, &[linked("d2", "di-social", None, &[("https://github.com/di-dev", "GitHub", false)], 8)], Some("c7"), None).await.unwrap();
        assert_ne!(owner(&app, "di-gh").await, owner(&app, "di-social").await);
        assert_eq!(live().await, 2 + 1 + 1 + 2, "ana twice, bo, cy, di twice");

        // An automatic merge is recorded as such and undone like any other.
        let tombstone = entity::merge_record::Entity::find()
            .filter(entity::merge_record::Column::SurvivorId.eq(bo))
            .one(&app.app.db)
            .await
            .unwrap()
            .unwrap()
            .merged_id;
        let data = app.gql(&admin, UNMERGE, json!({ "id": rapport::ids::encode(tombstone) })).await;
        assert_eq!(data["unmergeCustomer"]["merge"]["reason"], "AUTOMATIC");
        assert_eq!(data["unmergeCustomer"]["merge"]["score"], 0.95);
        assert_eq!(owner(&app, "bo-social").await, tombstone);

        // Off again.
        let data = app.gql(&admin, settings, json!({ "t": null })).await;
        assert_eq!(data["updateWorkspaceSettings"]["workspace"]["settings"]["autoMergeThreshold"], Value::Null);
        rapport::ingest::ingest(&app.app.db, &source, &[linked("e1", "eve-gh", Some("https://github.com/eve-dev"), &[], 9)], Some("c8"), None).await.unwrap();
        rapport::ingest::ingest(&app.app.db, &source, &[linked("e2", "eve-social", None, &[("https://github.com/eve-dev", "GitHub", true)], 10)], Some("c9"), None).await.unwrap();
        assert_ne!(owner(&app, "eve-gh").await, owner(&app, "eve-social").await);
    }
}
