//! Validation and normalisation of every customer field on the interactive path
//! (`createCustomer`, `updateCustomer`, `addContactPoint`, the workspace's default phone
//! region): a good value is stored normalised, a bad one is `BAD_USER_INPUT` naming the
//! field and nothing is written.

use rapport::domain::Role;
use serde_json::{json, Value};

use crate::backend_test;
use crate::common::TestApp;

const CREATE: &str = "mutation($input: CreateCustomerInput!) { createCustomer(input: $input) { customer { id displayName givenName familyName birthDate postalAddress { street street2 locality region postalCode country } contactPoints { kind value normalizedValue } } } }";
const UPDATE: &str = "mutation($input: UpdateCustomerInput!) { updateCustomer(input: $input) { customer { id givenName birthDate postalAddress { street postalCode country } } } }";
const SETTINGS: &str = "mutation($input: UpdateWorkspaceSettingsInput!) { updateWorkspaceSettings(input: $input) { workspace { settings { defaultPhoneRegion } } } }";

async fn created(app: &TestApp, key: &str, input: Value) -> Value {
    app.gql(key, CREATE, json!({ "input": input })).await["createCustomer"]["customer"].clone()
}

/// `input` is refused naming `field`.
async fn refused(app: &TestApp, key: &str, query: &str, input: Value, field: &str) {
    let (code, body) = app
        .gql_error(key, query, json!({ "input": input.clone() }))
        .await;
    assert_eq!(code, "BAD_USER_INPUT", "{input}: {body:#}");
    assert_eq!(
        body["errors"][0]["extensions"]["field"], field,
        "{input}: {body:#}"
    );
}

async fn customers(app: &TestApp, key: &str) -> u64 {
    app.gql(key, "{ customers { totalCount } }", json!({}))
        .await["customers"]["totalCount"]
        .as_u64()
        .unwrap()
}

backend_test! {
    async fn every_customer_field_is_normalised_when_good_and_refused_by_name_when_bad(app: TestApp) {
        let key = app.key(Role::Admin).await;
        let good = created(&app, &key, json!({
            "givenName": "  Luci\u{301}a ",
            "familyName": "García",
            "birthDate": "1990-02-28",
            "postalAddress": { "street": " Calle  Mayor 1 ", "street2": "3º B", "locality": "Madrid",
                "region": "Comunidad de Madrid", "postalCode": "28013", "country": "Spain" },
            "contactPoints": [
                { "kind": "EMAIL", "value": "Lucia@Bücher.DE" },
                { "kind": "PHONE", "value": "+34 600 123 456" },
                { "kind": "WEBSITE", "value": "http://Bücher.de/Shop/" }
            ]
        })).await;
        assert_eq!(good["givenName"], "Lucía", "trimmed and in NFC");
        assert_eq!(good["displayName"], "Lucía García");
        assert_eq!(good["birthDate"], "1990-02-28");
        assert_eq!(good["postalAddress"], json!({ "street": "Calle Mayor 1", "street2": "3º B", "locality": "Madrid",
            "region": "Comunidad de Madrid", "postalCode": "28013", "country": "ES" }));
        let normalized: Vec<&str> = good["contactPoints"].as_array().unwrap().iter().map(|p| p["normalizedValue"].as_str().unwrap()).collect();
        assert_eq!(normalized, ["lucia@xn--bcher-kva.de", "+34600123456", "https://xn--bcher-kva.de/shop"]);
        let alpha3 = created(&app, &key, json!({ "displayName": "Bo", "postalAddress": { "country": "usa", "postalCode": "12345-6789" } })).await;
        assert_eq!(alpha3["postalAddress"]["country"], "US");
        let none = created(&app, &key, json!({ "displayName": "Cy" })).await;
        assert_eq!(none["postalAddress"], Value::Null);
        assert_eq!(none["birthDate"], Value::Null);
        let before = customers(&app, &key).await;

        let long = "x".repeat(201);
        let cases = [
            (json!({ "givenName": "Ana\u{7}" }), "givenName"),
            (json!({ "givenName": "Ana\nMaria" }), "givenName"),
            (json!({ "familyName": "!!!" }), "familyName"),
            (json!({ "displayName": long }), "displayName"),
            (json!({ "displayName": "Ana", "birthDate": "1899-12-31" }), "birthDate"),
            (json!({ "displayName": "Ana", "birthDate": "2999-01-01" }), "birthDate"),
            (json!({ "displayName": "Ana", "postalAddress": { "country": "Atlantis" } }), "postalAddress.country"),
            (json!({ "displayName": "Ana", "postalAddress": { "country": "ES", "postalCode": "2801" } }), "postalAddress.postalCode"),
            (json!({ "displayName": "Ana", "postalAddress": { "postalCode": "28#13" } }), "postalAddress.postalCode"),
            (json!({ "displayName": "Ana", "postalAddress": { "street": "Calle\u{0}Mayor" } }), "postalAddress.street"),
            (json!({ "displayName": "Ana", "postalAddress": { "street2": "y".repeat(201) } }), "postalAddress.street2"),
            (json!({ "displayName": "Ana", "postalAddress": { "locality": "z".repeat(101) } }), "postalAddress.locality"),
            (json!({ "displayName": "Ana", "postalAddress": { "region": "r\u{1b}" } }), "postalAddress.region"),
            (json!({ "displayName": "Ana", "contactPoints": [{ "kind": "EMAIL", "value": "ana@localhost" }] }), "contactPoints[0].value"),
            (json!({ "displayName": "Ana", "contactPoints": [{ "kind": "EMAIL", "value": "an..a@example.com" }] }), "contactPoints[0].value"),
            (json!({ "displayName": "Ana", "contactPoints": [{ "kind": "PHONE", "value": "+34 100" }] }), "contactPoints[0].value"),
            (json!({ "displayName": "Ana", "contactPoints": [{ "kind": "PHONE", "value": "600 123 456" }] }), "contactPoints[0].value"),
            (json!({ "displayName": "Ana", "contactPoints": [{ "kind": "WEBSITE", "value": "https://localhost" }] }), "contactPoints[0].value"),
        ];
        for (input, field) in cases {
            refused(&app, &key, CREATE, input, field).await;
        }
        assert_eq!(customers(&app, &key).await, before, "nothing refused was written");

        // Updates: the same rules; `null` clears; an address replaces the whole address.
        let id = good["id"].as_str().unwrap();
        for (input, field) in [
            (json!({ "id": id, "givenName": "\u{0}" }), "givenName"),
            (json!({ "id": id, "birthDate": "1850-01-01" }), "birthDate"),
            (json!({ "id": id, "postalAddress": { "country": "XX" } }), "postalAddress.country"),
        ] {
            refused(&app, &key, UPDATE, input, field).await;
        }
        let updated = app.gql(&key, UPDATE, json!({ "input": { "id": id, "birthDate": null, "postalAddress": { "postalCode": "sw1a 1aa", "country": "United Kingdom" } } })).await;
        let updated = &updated["updateCustomer"]["customer"];
        assert_eq!(updated["birthDate"], Value::Null);
        assert_eq!(updated["postalAddress"], json!({ "street": null, "postalCode": "SW1A 1AA", "country": "GB" }));
        let cleared = app.gql(&key, UPDATE, json!({ "input": { "id": id, "postalAddress": null } })).await;
        assert_eq!(cleared["updateCustomer"]["customer"]["postalAddress"], Value::Null);
    }
}

backend_test! {
    async fn a_phone_without_country_code_is_read_in_the_workspace_region(app: TestApp) {
        let key = app.key(Role::Admin).await;
        let input = json!({ "displayName": "Ana", "contactPoints": [{ "kind": "PHONE", "value": "600 123 456" }] });
        refused(&app, &key, CREATE, input.clone(), "contactPoints[0].value").await;
        refused(&app, &key, SETTINGS, json!({ "defaultPhoneRegion": "Narnia" }), "defaultPhoneRegion").await;
        let set = app.gql(&key, SETTINGS, json!({ "input": { "defaultPhoneRegion": "Spain" } })).await;
        assert_eq!(set["updateWorkspaceSettings"]["workspace"]["settings"]["defaultPhoneRegion"], "ES");
        let ana = created(&app, &key, input).await;
        assert_eq!(ana["contactPoints"][0]["normalizedValue"], "+34600123456");
        // An international number is read as written, whatever the region.
        let bo = created(&app, &key, json!({ "displayName": "Bo", "contactPoints": [{ "kind": "PHONE", "value": "+1 (202) 555-0143" }] })).await;
        assert_eq!(bo["contactPoints"][0]["normalizedValue"], "+12025550143");
        let id = bo["id"].as_str().unwrap();
        let added = app.gql(&key, "mutation($input: AddContactPointInput!) { addContactPoint(input: $input) { contactPoint { normalizedValue } } }",
            json!({ "input": { "customerId": id, "contactPoint": { "kind": "PHONE", "value": "91 123 45 67" } } })).await;
        assert_eq!(added["addContactPoint"]["contactPoint"]["normalizedValue"], "+34911234567");
        // Another workspace has no region: the same number is refused there.
        let other = app.key_in("other", Role::Admin).await;
        refused(&app, &other, CREATE, json!({ "displayName": "Cy", "contactPoints": [{ "kind": "PHONE", "value": "600 123 457" }] }), "contactPoints[0].value").await;
        let cleared = app.gql(&key, SETTINGS, json!({ "input": { "defaultPhoneRegion": null } })).await;
        assert_eq!(cleared["updateWorkspaceSettings"]["workspace"]["settings"]["defaultPhoneRegion"], Value::Null);
        // A viewer may not change it.
        let viewer = app.key(Role::Viewer).await;
        let (code, _) = app.gql_error(&viewer, SETTINGS, json!({ "input": { "defaultPhoneRegion": "ES" } })).await;
        assert_eq!(code, "FORBIDDEN");
    }
}

backend_test! {
    async fn ingestion_keeps_the_item_and_drops_an_invalid_contact_value(app: TestApp) {
        use crate::ingest::{deliver, webhook_source};
        let admin = app.key(Role::Admin).await;
        let path = webhook_source(&app, &admin).await["webhookPath"].as_str().unwrap().to_owned();
        let metric = |text: &str| -> u64 {
            text.lines()
                .find_map(|line| line.strip_prefix("rapport_invalid_values_dropped_total "))
                .and_then(|n| n.trim().parse().ok())
                .unwrap()
        };
        let metrics = || async { app.client.get(app.url("/metrics")).send().await.unwrap().text().await.unwrap() };
        let before = metric(&metrics().await);
        let body = json!({ "name": "Dee", "email": "dee..x@example.com", "phone": "+34 100", "text": "Hola", "thread_id": "t-1" });
        let (status, answer) = deliver(&app, &path, "msg_bad", &body, None).await;
        assert_eq!(status, 200, "{answer}");
        let dee = app.gql(&admin, "{ customers(filter: {search: \"Dee\"}) { edges { node { displayName contactPoints { kind } timeline { totalCount } } } } }", json!({})).await;
        assert_eq!(dee["customers"]["edges"][0]["node"], json!({ "displayName": "Dee", "contactPoints": [], "timeline": { "totalCount": 1 } }));
        // Counted per process: other tests running at once may add to it, never take away.
        assert!(metric(&metrics().await) >= before + 2);
    }
}

backend_test! {
    async fn a_document_validated_once_refuses_variables_it_cannot_take_as_a_new_one_does(app: TestApp) {
        // The engine's whole validation runs on a document only until a request of it is
        // answered without error (`graphql::passes_again`); after that, variables it could
        // not take must be refused exactly as they are for a document never seen.
        let key = app.key(Role::Owner).await;
        let id = app.create_customer(&key, json!({ "displayName": "Ada" })).await;
        // (document, variables it is answered with, variables it refuses, whether the
        // second answer skips the whole validation)
        let cases = [
            ("query($id: ID!) { customer(id: $id) { displayName } }", json!({ "id": id }),
             vec![json!({ "id": true }), json!({ "id": null }), json!({ "id": 1.5 }), json!({}), json!({ "id": [id] }), json!({ "id": 7 })], true),
            ("query($first: Int) { customers(first: $first) { nodes { id } } }", json!({ "first": 5 }),
             vec![json!({ "first": "five" }), json!({ "first": 1.5 }), json!({ "first": 99_999_999_999_i64 }), json!({ "first": -1 })], true),
            ("query($filter: CustomerFilterInput) { customers(filter: $filter) { nodes { id } } }", json!({ "filter": {} }),
             vec![json!({ "filter": { "nosuch": 1 } }), json!({ "filter": 3 })], false),
            ("query($order: CustomerOrder) { customers(orderBy: $order) { nodes { id } } }", json!({ "order": { "field": "DISPLAY_NAME" } }),
             vec![json!({ "order": { "field": "NOPE" } })], false),
            ("query($skip: Boolean!) { customers { nodes { id @skip(if: $skip) } } }", json!({ "skip": false }),
             vec![json!({ "skip": "yes" }), json!({ "skip": null })], true),
            // A default lets a nullable variable stand where null may not.
            ("query($skip: Boolean = false) { customers { nodes { id @skip(if: $skip) } } }", json!({ "skip": true }),
             vec![json!({ "skip": null }), json!({ "skip": "no" })], true),
            // Answered without error with the variable left out, as the engine does not
            // check an argument whose variable is missing: that proves nothing of the rest
            // of the argument.
            ("query($s: String) { customers(filter: { nosuch: 1, search: $s }) { totalCount } }", json!({}),
             vec![json!({ "s": "x" })], false),
        ];
        for (query, good, bads, skips) in cases {
            for (n, bad) in bads.iter().enumerate() {
                // The same text with a comment after it is another document, never answered.
                let (_, new) = app.post(&key, &format!("{query} # new {n}"), bad.clone()).await;
                assert!(new.get("errors").is_some(), "{query} with {bad}: {new:#}");
                let answered = app.gql(&key, query, good.clone()).await;
                let skipped = app.app.metrics.validations_skipped();
                assert_eq!(app.gql(&key, query, good.clone()).await, answered, "{query} answered again");
                let skipped = app.app.metrics.validations_skipped() - skipped;
                assert_eq!(skipped, u64::from(skips), "{query}: validation skipped");
                let (_, again) = app.post(&key, query, bad.clone()).await;
                assert_eq!(again, new, "{query} with {bad}");
            }
        }
    }
}
