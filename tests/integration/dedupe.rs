//! Duplicate detection over customers' fields (`domain::dedupe`): two records of one
//! person (nickname, phonetic spelling, plus-addressing, birth day and month swapped)
//! become a suggestion with its reasons as soon as the second is written, through
//! GraphQL, an update, an import and ingestion; namesakes and relatives do not; `rapport
//! dedupe` finds the pairs of records stored without keys and a second run changes
//! nothing; a threshold merges by itself only when the workspace sets one; another
//! workspace's records are never compared with ours, nor can its key see or dismiss ours.

use chrono::TimeZone;
use connectors::{Author, InboundItem};
use rapport::domain::Role;
use sea_orm::{ActiveModelTrait, ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter};
use serde_json::{json, Value};

use crate::backend_test;
use crate::common::TestApp;

const LIST: &str = "query($min: Float) { duplicateSuggestions(minScore: $min, first: 20) { totalCount edges { node { id score status reasons { field kind detail score } a { id displayName } b { id displayName } } } } }";

async fn suggestions(app: &TestApp, key: &str) -> Vec<Value> {
    app.gql(key, LIST, json!({})).await["duplicateSuggestions"]["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|edge| edge["node"].clone())
        .collect()
}

fn pair(node: &Value) -> Vec<String> {
    let mut names = vec![
        node["a"]["displayName"].as_str().unwrap().to_owned(),
        node["b"]["displayName"].as_str().unwrap().to_owned(),
    ];
    names.sort();
    names
}

/// A webhook source (a web form) of the caller's workspace.
async fn forms(app: &TestApp, key: &str) -> entity::source::Model {
    let data = app.gql(key, "mutation($input: CreateSourceInput!) { createSource(input: $input) { source { id } } }", json!({ "input": { "channel": "WEBHOOK", "name": "forms", "config": { "secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw" } } })).await;
    let id: entity::SourceId =
        rapport::ids::decode("id", data["createSource"]["source"]["id"].as_str().unwrap()).unwrap();
    rapport::domain::source::for_webhook(&app.app.db, id)
        .await
        .unwrap()
}

/// A message from `author`.
fn message(external_id: &str, author: Author) -> InboundItem {
    InboundItem {
        external_id: external_id.into(),
        author,
        outbound: false,
        kind: "message".into(),
        subject: None,
        text: "Hello, about my order".into(),
        html: None,
        url: None,
        language: None,
        occurred_at: chrono::Utc.with_ymd_and_hms(2026, 11, 1, 12, 0, 0).unwrap(),
        thread_key: None,
        in_reply_to: None,
        raw: json!({ "id": external_id }),
    }
}

fn kinds(node: &Value) -> Vec<(String, String)> {
    node["reasons"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["field"].as_str().unwrap().to_owned(),
                r["kind"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

backend_test! {
    async fn two_records_of_one_person_are_suggested_at_once_with_their_reasons(app: TestApp) {
        let admin = app.key(Role::Admin).await;
        app.create_customer(&admin, json!({
            "givenName": "Katherine", "familyName": "Smith", "birthDate": "1985-03-07",
            "contactPoints": [{ "kind": "EMAIL", "value": "kate.smith+news@gmail.com" }],
        })).await;
        assert!(suggestions(&app, &admin).await.is_empty());
        // The same woman through a web form: a nickname, a spelling heard over the phone,
        // day and month swapped, the address without its tag and dots.
        app.create_customer(&admin, json!({
            "givenName": "Kate", "familyName": "Smyth", "birthDate": "1985-07-03",
            "contactPoints": [{ "kind": "EMAIL", "value": "katesmith@gmail.com" }],
        })).await;
        let list = suggestions(&app, &admin).await;
        assert_eq!(list.len(), 1, "{list:#?}");
        assert_eq!(pair(&list[0]), ["Kate Smyth", "Katherine Smith"]);
        assert!(list[0]["score"].as_f64().unwrap() >= 0.95, "{:#}", list[0]);
        assert_eq!(list[0]["status"], "PENDING");
        let reasons = kinds(&list[0]);
        for expected in [("email", "canonical"), ("birthDate", "day_month_swapped"), ("givenName", "nickname"), ("familyName", "phonetic")] {
            assert!(reasons.contains(&(expected.0.to_owned(), expected.1.to_owned())), "{expected:?} in {reasons:?}");
        }
        let email = list[0]["reasons"].as_array().unwrap().iter().find(|r| r["field"] == "email").unwrap();
        assert!(email["detail"].as_str().unwrap().contains("plus-addressing"), "{email}");

        // A namesake born another year, and a relative at the same address: not suggested.
        app.create_customer(&admin, json!({
            "givenName": "Katherine", "familyName": "Smith", "birthDate": "1962-11-30",
            "contactPoints": [{ "kind": "EMAIL", "value": "k.smith@example.org" }],
        })).await;
        let home = json!({ "street": "12 Calle Mayor", "postalCode": "28013", "locality": "Madrid", "country": "ES" });
        app.create_customer(&admin, json!({ "givenName": "Pedro", "familyName": "García", "postalAddress": home })).await;
        app.create_customer(&admin, json!({ "givenName": "Lucía", "familyName": "García", "postalAddress": home })).await;
        assert_eq!(suggestions(&app, &admin).await.len(), 1, "namesakes and relatives stay apart");

        // Born on two dates, two people; the birth date corrected and the home added by
        // an update makes the pair, checked at once.
        let first = app.create_customer(&admin, json!({ "givenName": "Jon", "familyName": "Baptiste", "birthDate": "1979-10-02", "postalAddress": { "street": "4 Rue de la Paix", "postalCode": "75002", "locality": "Paris" } })).await;
        let second = app.create_customer(&admin, json!({ "givenName": "John", "familyName": "Baptiste", "birthDate": "1991-05-17" })).await;
        assert_eq!(suggestions(&app, &admin).await.len(), 1);
        app.gql(&admin, "mutation($input: UpdateCustomerInput!) { updateCustomer(input: $input) { customer { id } } }", json!({ "input": {
            "id": second, "birthDate": "1979-10-02", "postalAddress": { "street": "4 rue de la Paix", "postalCode": "75002", "locality": "Paris" },
        } })).await;
        let list = suggestions(&app, &admin).await;
        assert_eq!(list.len(), 2, "{list:#?}");
        let jon = list.iter().find(|n| pair(n) == ["John Baptiste", "Jon Baptiste"]).expect("the pair after the update");
        assert!(kinds(jon).contains(&("postalAddress".to_owned(), "same_address".to_owned())), "{jon:#}");

        // On the customer, and a dismissal sticks through a later change.
        let data = app.gql(&admin, "query($id: ID!) { customer(id: $id) { duplicateSuggestions { id score } } }", json!({ "id": first })).await;
        let of_first = data["customer"]["duplicateSuggestions"].as_array().unwrap().clone();
        assert_eq!(of_first.len(), 1, "{data:#}");
        app.gql(&admin, "mutation($id: ID!) { dismissDuplicate(input: { id: $id }) { duplicateSuggestion { status } } }", json!({ "id": of_first[0]["id"] })).await;
        app.gql(&admin, "mutation($input: UpdateCustomerInput!) { updateCustomer(input: $input) { customer { id } } }", json!({ "input": { "id": second, "givenName": "Jon" } })).await;
        assert_eq!(suggestions(&app, &admin).await.len(), 1, "a dismissed pair stays dismissed");
        let data = app.gql(&admin, "{ duplicateSuggestions(first: 5, minScore: 0.45) { edges { node { status } } } }", json!({})).await;
        assert!(data["duplicateSuggestions"]["edges"].as_array().unwrap().iter().all(|e| e["node"]["status"] == "PENDING"));

        // Another workspace: the same person there is not paired with ours, its key sees
        // none of ours and cannot dismiss them.
        let other = app.key_in("other", Role::Admin).await;
        app.create_customer(&other, json!({
            "givenName": "Katherine", "familyName": "Smith", "birthDate": "1985-03-07",
            "contactPoints": [{ "kind": "EMAIL", "value": "katesmith@gmail.com" }],
        })).await;
        assert!(suggestions(&app, &other).await.is_empty(), "nothing across workspaces");
        let ours = suggestions(&app, &admin).await;
        let (code, _) = app.gql_error(&other, "mutation($id: ID!) { dismissDuplicate(input: { id: $id }) { duplicateSuggestion { status } } }", json!({ "id": ours[0]["id"] })).await;
        assert_eq!(code, "NOT_FOUND");
        assert_eq!(suggestions(&app, &admin).await[0]["status"], "PENDING");
    }
}

backend_test! {
    async fn imported_and_ingested_records_are_checked_as_they_land(app: TestApp) {
        let admin = app.key(Role::Admin).await;
        // Given and family names swapped by a spreadsheet, with one birth date.
        let csv = "external_id,given_name,family_name,birth_date,phone\n\
                   r-1,Ana,Lopez,1990-02-01,\n\
                   r-2,Lopez,Ana,1990-02-01,\n\
                   r-3,Wei,Chen,1971-06-30,+34 912 345 678\n";
        let summary = app.gql(&admin, "mutation($input: ImportCustomersInput!) { importCustomers(input: $input) { created rejected } }", json!({ "input": { "format": "CSV", "data": csv } })).await;
        assert_eq!(summary["importCustomers"]["created"], 3, "{summary:#}");
        let list = suggestions(&app, &admin).await;
        assert_eq!(list.len(), 1, "{list:#?}");
        assert!(list[0]["reasons"].as_array().unwrap().iter().any(|r| r["detail"].as_str().unwrap().contains("swapped")), "{:#}", list[0]);
        // Importing the same file again suggests nothing new.
        app.gql(&admin, "mutation($input: ImportCustomersInput!) { importCustomers(input: $input) { created } }", json!({ "input": { "format": "CSV", "data": csv } })).await;
        assert_eq!(suggestions(&app, &admin).await.len(), 1);

        // An author who wrote through a web form with another address of the same
        // mailbox and the same name: a new customer (no contact point matched exactly),
        // and at once a suggestion with the imported record.
        let source = forms(&app, &admin).await;
        app.create_customer(&admin, json!({ "givenName": "Maria", "familyName": "Rossi", "contactPoints": [{ "kind": "EMAIL", "value": "maria.rossi@example.org" }] })).await;
        let item = |external_id: &str, email: &str, name: &str| {
            message(external_id, Author { platform_id: email.into(), display_name: Some(name.into()), email: Some(email.into()), ..Author::default() })
        };
        let report = rapport::ingest::ingest(&app.app.db, &source, &[item("f-1", "maria.rossi+orders@example.org", "Maria Rossi")], Some("c1"), None).await.unwrap();
        assert_eq!(report.new_customers, 1);
        let list = suggestions(&app, &admin).await;
        assert_eq!(list.len(), 2, "{list:#?}");
        let maria = list.iter().find(|n| pair(n) == ["Maria Rossi", "Maria Rossi"]).expect("the author and the record");
        assert!(kinds(maria).contains(&("email".to_owned(), "canonical".to_owned())), "{maria:#}");
        // One by one (the fallback path) too: a name and nothing against it is kept
        // below the default threshold (two people may share the rarest name).
        rapport::ingest::ingest_item_by_item(&app.app.db, &source, &[item("f-2", "wei.chen@example.net", "Wei Chen")]).await.unwrap();
        assert_eq!(suggestions(&app, &admin).await.len(), 2);
        let low = app.gql(&admin, LIST, json!({ "min": 0.45 })).await;
        let low: Vec<Value> = low["duplicateSuggestions"]["edges"].as_array().unwrap().iter().map(|e| e["node"].clone()).collect();
        let wei = low.iter().find(|n| pair(n) == ["Wei Chen", "Wei Chen"]).expect("the two Wei Chens, below the default");
        assert!(wei["score"].as_f64().unwrap() < 0.5, "{wei:#}");
        // An imported row giving an address another customer has: the address stays
        // theirs (contact points are unique), and the two are suggested on it.
        let summary = app.gql(&admin, "mutation($input: ImportCustomersInput!) { importCustomers(input: $input) { created issues { line field message } } }", json!({ "input": { "format": "CSV", "data": "external_id,given_name,family_name,email\nr-9,M,Rossi,Maria.Rossi@example.org\n" } })).await;
        assert_eq!(summary["importCustomers"]["issues"][0]["field"], "email", "{summary:#}");
        let list = suggestions(&app, &admin).await;
        assert_eq!(list.len(), 3, "{list:#?}");
        let claimed = list.iter().find(|n| pair(n) == ["M Rossi", "Maria Rossi"]).expect("the row and the address's owner");
        assert!(kinds(claimed).contains(&("email".to_owned(), "exact".to_owned())), "{claimed:#}");

        // A threshold set, ingestion still only suggests on fields: a name and a variant
        // of someone's address are what anyone can type into a form.
        app.gql(&admin, "mutation { updateWorkspaceSettings(input: { autoMergeThreshold: 0.9 }) { workspace { id } } }", json!({})).await;
        app.create_customer(&admin, json!({ "givenName": "Olga", "familyName": "Ivanova", "contactPoints": [{ "kind": "EMAIL", "value": "olga.ivanova@gmail.com" }] })).await;
        let live = || async {
            entity::customer::Entity::find()
                .filter(entity::customer::Column::MergedInto.is_null())
                .count(&app.app.db)
                .await
                .unwrap()
        };
        let before = live().await;
        rapport::ingest::ingest(&app.app.db, &source, &[item("f-3", "olgaivanova+shop@gmail.com", "Olga Ivanova")], Some("c2"), None).await.unwrap();
        assert_eq!(live().await, before + 1, "not merged into Olga's record");
        let list = suggestions(&app, &admin).await;
        let olga = list.iter().find(|n| pair(n) == ["Olga Ivanova", "Olga Ivanova"]).expect("suggested");
        assert!(olga["score"].as_f64().unwrap() >= 0.9, "{olga:#}");
        // Nor does a display name with the same handle on another platform.
        app.create_customer(&admin, json!({ "givenName": "Ana", "familyName": "García" })).await;
        let ana = InboundItem {
            author: Author { platform_id: "did:plc:ana".into(), handle: Some("anagarcia.bsky.social".into()), display_name: Some("Ana García".into()), ..Author::default() },
            ..item("f-4", "unused@example.org", "unused")
        };
        rapport::ingest::ingest(&app.app.db, &source, &[ana], Some("c3"), None).await.unwrap();
        assert_eq!(live().await, before + 3);
    }
}

backend_test! {
    async fn rapport_dedupe_finds_pairs_stored_without_keys_and_a_rerun_changes_nothing(app: TestApp) {
        let admin = app.key(Role::Admin).await;
        let workspace = rapport::domain::workspace::ensure(&app.app.db, "acme").await.unwrap();
        // Records written before detection existed: rows only, no keys.
        let now = chrono::Utc::now();
        let row = |given: &str, family: &str, birth: Option<(i32, u32, u32)>| entity::customer::ActiveModel {
            id: sea_orm::ActiveValue::Set(entity::CustomerId::new()),
            workspace_id: sea_orm::ActiveValue::Set(workspace.id),
            display_name: sea_orm::ActiveValue::Set(format!("{given} {family}")),
            given_name: sea_orm::ActiveValue::Set(Some(given.into())),
            family_name: sea_orm::ActiveValue::Set(Some(family.into())),
            lifecycle_stage: sea_orm::ActiveValue::Set(entity::enums::LifecycleStage::Lead),
            external_id: sea_orm::ActiveValue::Set(None),
            organization_id: sea_orm::ActiveValue::Set(None),
            custom: sea_orm::ActiveValue::Set(json!({})),
            merged_into: sea_orm::ActiveValue::Set(None),
            first_seen_at: sea_orm::ActiveValue::Set(now),
            last_seen_at: sea_orm::ActiveValue::Set(now),
            created_at: sea_orm::ActiveValue::Set(now),
            updated_at: sea_orm::ActiveValue::Set(now),
            birth_date: sea_orm::ActiveValue::Set(birth.and_then(|(y, m, d)| chrono::NaiveDate::from_ymd_opt(y, m, d))),
            street: sea_orm::ActiveValue::Set(None),
            street2: sea_orm::ActiveValue::Set(None),
            locality: sea_orm::ActiveValue::Set(None),
            region: sea_orm::ActiveValue::Set(None),
            postal_code: sea_orm::ActiveValue::Set(None),
            country: sea_orm::ActiveValue::Set(None),
        };
        for (given, family, birth) in [
            ("Stephen", "Thompson", Some((1958, 4, 12))),
            ("Steven", "Thomson", Some((1958, 4, 12))),
            ("Giulia", "Bianchi", Some((2001, 1, 9))),
            ("Giulia", "Bianchi", Some((1950, 8, 21))),
            ("Priya", "Sharma", None),
        ] {
            row(given, family, birth).insert(&app.app.db).await.unwrap();
        }
        let other = rapport::domain::workspace::ensure(&app.app.db, "elsewhere").await.unwrap();
        let mut theirs = row("Steven", "Thompson", Some((1958, 4, 12)));
        theirs.workspace_id = sea_orm::ActiveValue::Set(other.id);
        theirs.insert(&app.app.db).await.unwrap();
        assert!(suggestions(&app, &admin).await.is_empty());

        let mut phases = Vec::new();
        let report = rapport::domain::dedupe::run(&app.app.db, workspace.id, false, &mut |phase: &str, _, _| {
            if phases.last().map(String::as_str) != Some(phase) {
                phases.push(phase.to_owned());
            }
        })
        .await
        .unwrap();
        assert_eq!(phases, ["keys", "compare", "store"]);
        assert_eq!(report.stats.customers, 5, "{report:?}");
        assert_eq!((report.new, report.updated, report.merged), (1, 0, 0), "{report:?}");
        let list = suggestions(&app, &admin).await;
        assert_eq!(list.len(), 1);
        assert_eq!(pair(&list[0]), ["Stephen Thompson", "Steven Thomson"]);
        let keys = entity::customer_match_key::Entity::find()
            .filter(entity::customer_match_key::Column::WorkspaceId.eq(workspace.id))
            .count(&app.app.db)
            .await
            .unwrap();
        assert!(keys >= 10, "every customer's keys are stored: {keys}");

        let again = rapport::domain::dedupe::run(&app.app.db, workspace.id, false, &mut |_: &str, _, _| {}).await.unwrap();
        assert_eq!((again.new, again.updated, again.merged), (0, 0, 0), "{again:?}");
        // The keys now serve the real-time check: a new record meets the old ones.
        app.create_customer(&admin, json!({ "givenName": "Priya", "familyName": "Sharma", "contactPoints": [{ "kind": "PHONE", "value": "+34 912 345 679" }] })).await;
        assert_eq!(suggestions(&app, &admin).await.len(), 1, "a name alone stays below the default");
        let low = app.gql(&admin, LIST, json!({ "min": 0.45 })).await;
        assert_eq!(low["duplicateSuggestions"]["totalCount"], 2, "{low:#}");
    }
}

backend_test! {
    async fn link_evidence_after_a_field_suggestion_adds_its_reason_and_can_merge(app: TestApp) {
        let admin = app.key(Role::Admin).await;
        let source = forms(&app, &admin).await;
        app.create_customer(&admin, json!({ "givenName": "Nadia", "familyName": "Haddad", "contactPoints": [{ "kind": "WEBSITE", "value": "https://nadia-haddad.example/" }] })).await;
        let item = |external_id: &str, links: Vec<connectors::ProfileLink>| {
            message(external_id, Author { platform_id: "acct:nadia".into(), handle: Some("@nadia".into()), display_name: Some("Nadia Haddad".into()), links, ..Author::default() })
        };
        // First the name alone: stored below the default.
        rapport::ingest::ingest(&app.app.db, &source, &[item("n-1", Vec::new())], Some("c1"), None).await.unwrap();
        let low = app.gql(&admin, LIST, json!({ "min": 0.45 })).await;
        let edges = low["duplicateSuggestions"]["edges"].as_array().unwrap().clone();
        assert_eq!(edges.len(), 1, "{low:#}");
        let before = edges[0]["node"]["score"].as_f64().unwrap();
        assert!(before < 0.5, "{low:#}");
        // Then her profile shows a verified link to the record's site: the link's reason
        // joins the name's, the score rises, and the workspace's threshold merges them.
        app.gql(&admin, "mutation { updateWorkspaceSettings(input: { autoMergeThreshold: 0.9 }) { workspace { id } } }", json!({})).await;
        let link = connectors::ProfileLink { url: "https://nadia-haddad.example".into(), label: Some("Website".into()), verified: true };
        rapport::ingest::ingest(&app.app.db, &source, &[item("n-2", vec![link])], Some("c2"), None).await.unwrap();
        let live = entity::customer::Entity::find()
            .filter(entity::customer::Column::MergedInto.is_null())
            .count(&app.app.db)
            .await
            .unwrap();
        assert_eq!(live, 1, "merged above the threshold");
        let row = entity::duplicate_suggestion::Entity::find().one(&app.app.db).await.unwrap().unwrap();
        assert!(row.score >= 0.95, "{row:?}");
        let reasons: Vec<Value> = serde_json::from_str(&row.reasons).unwrap();
        assert!(reasons.iter().any(|r| r["kind"] == "profile_link"), "{reasons:?}");
        assert!(reasons.iter().any(|r| r["field"] == "familyName"), "{reasons:?}");
    }
}
