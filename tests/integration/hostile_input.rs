//! Hostile input (issue 9): cursors and offsets that are huge, malformed or another
//! list's; NUL and control characters on every path into storage; oversized free-text
//! arguments and custom attributes; replayed GitHub-signed webhooks; `searchStatus`
//! seen from another workspace. Each is refused with `BAD_USER_INPUT` (or stored
//! normalised), never `INTERNAL`, a 500 or a dead process, on SQLite and PostgreSQL.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use connectors::webhook::Secret;
use rapport::domain::Role;
use serde_json::{json, Value};

use crate::backend_test;
use crate::common::TestApp;

fn b64(text: &str) -> String {
    URL_SAFE_NO_PAD.encode(text)
}

async fn catch_up(app: &TestApp) {
    rapport::search::indexer::Indexer::new(&app.app)
        .catch_up()
        .await
        .unwrap();
}

/// The request fails with `BAD_USER_INPUT` whose `field` starts with `field`.
async fn refused(app: &TestApp, key: &str, query: &str, variables: Value, field: &str) {
    let (status, body) = app.post(key, query, variables.clone()).await;
    let error = &body["errors"][0];
    assert_eq!(
        error["extensions"]["code"], "BAD_USER_INPUT",
        "{query} {variables}: {status} {body:#}"
    );
    let named = error["extensions"]["field"].as_str().unwrap_or_default();
    assert!(
        named.starts_with(field),
        "{query} {variables}: field `{named}`, expected `{field}`: {body:#}"
    );
}

/// The server still answers: `/healthz` and a query of another workspace.
async fn still_answers(app: &TestApp) {
    let health = app.client.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    let other = app.key_in("bystander", Role::Viewer).await;
    let data = app
        .gql(&other, "{ customers(first: 5) { totalCount } }", json!({}))
        .await;
    assert_eq!(data["customers"]["totalCount"], 0);
}

const SEARCH: &str = "query($q: String!, $sort: SearchSort, $first: Int, $after: String) { search(query: $q, sort: $sort, first: $first, after: $after) { estimatedTotal edges { cursor node { interaction { id occurredAt } } } pageInfo { hasNextPage endCursor } } }";
const SEARCH_FACETS: &str = "query($q: String!, $sort: SearchSort, $first: Int, $after: String) { search(query: $q, sort: $sort, first: $first, after: $after) { estimatedTotal facets { channel { value count } kind { value count } } edges { cursor node { interaction { id occurredAt } } } pageInfo { hasNextPage endCursor } } }";
const TIMELINE: &str = "query($id: ID!, $s: String, $first: Int, $after: String, $last: Int, $before: String) { customer(id: $id) { timeline(search: $s, first: $first, after: $after, last: $last, before: $before) { edges { cursor node { id } } pageInfo { hasNextPage endCursor } } } }";

async fn record(app: &TestApp, key: &str, customer: &str, text: &str) -> String {
    let data = app.gql(key, "mutation($input: RecordInteractionInput!) { recordInteraction(input: $input) { interaction { id } } }", json!({ "input": { "customerId": customer, "kind": "MESSAGE", "direction": "INBOUND", "text": text } })).await;
    data["recordInteraction"]["interaction"]["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

backend_test!(
    async fn huge_malformed_and_foreign_search_cursors_are_refused_and_the_server_lives(
        app: TestApp,
    ) {
        let key = app.key(Role::Agent).await;
        let ana = app
            .create_customer(&key, json!({ "displayName": "Ana" }))
            .await;
        for n in 0..3 {
            record(&app, &key, &ana, &format!("export number {n} failed")).await;
        }
        catch_up(&app).await;

        // The abort of the report: an offset of ten billion.
        let huge = b64("o:10000000000");
        let started = std::time::Instant::now();
        refused(
            &app,
            &key,
            SEARCH,
            json!({ "q": "export", "first": 1, "after": huge }),
            "after",
        )
        .await;
        still_answers(&app).await;
        assert!(
            started.elapsed() < std::time::Duration::from_secs(30),
            "refused without doing the work"
        );

        let date = |letter: &str, millis: &str, id: &str| b64(&format!("d:{letter}:{millis}:{id}"));
        let nil = uuid::Uuid::nil().to_string();
        let relevance_cursors = [
            b64("o:999"),                  // past the 1,000-hit window
            b64("o:18446744073709551615"), // usize::MAX: +1 overflows
            b64("o:18446744073709551616"), // does not fit
            b64("o:-1"),
            b64("o:+1"),
            b64("o:1e9"),
            b64("o:"),
            b64("o:١"),           // a non-ASCII digit
            date("n", "0", &nil), // a date cursor on relevance order
            "not-a-cursor".to_owned(),
            "%%%".to_owned(),
            b64(&"o:1".repeat(10_000)),
            String::new(),
        ];
        for cursor in &relevance_cursors {
            refused(
                &app,
                &key,
                SEARCH,
                json!({ "q": "export", "after": cursor }),
                "after",
            )
            .await;
        }
        let date_cursors = [
            b64("o:1"),                              // an offset cursor on date order
            date("o", "0", &nil),                    // the other date order
            date("n", "99999999999999999999", &nil), // overflows i64
            date("n", "9223372036854775807", &nil),  // no such instant
            date("n", "-9223372036854775808", &nil),
            date("n", "12", "not-a-uuid"),
            date("n", "", &nil),
            date("n", "12", ""),
            b64("d:n:12"),
            b64("d:"),
        ];
        for cursor in &date_cursors {
            refused(
                &app,
                &key,
                SEARCH,
                json!({ "q": "export", "sort": "NEWEST", "after": cursor }),
                "after",
            )
            .await;
            refused(
                &app,
                &key,
                TIMELINE,
                json!({ "id": ana, "s": "export", "after": cursor }),
                "after",
            )
            .await;
        }
        refused(
            &app,
            &key,
            TIMELINE,
            json!({ "id": ana, "s": "export", "after": huge }),
            "after",
        )
        .await;
        refused(
            &app,
            &key,
            SEARCH,
            json!({ "q": "export", "first": 1_000_000 }),
            "first",
        )
        .await;
        refused(
            &app,
            &key,
            "{ searchCustomers(query: \"ana\", first: 100000) { customer { id } } }",
            json!({}),
            "first",
        )
        .await;
        still_answers(&app).await;

        // A truncated real cursor is refused too; the real one works.
        let page = app
            .gql(
                &key,
                SEARCH,
                json!({ "q": "export", "sort": "NEWEST", "first": 1 }),
            )
            .await;
        let end = page["search"]["pageInfo"]["endCursor"]
            .as_str()
            .unwrap()
            .to_owned();
        refused(
            &app,
            &key,
            SEARCH,
            json!({ "q": "export", "sort": "NEWEST", "after": &end[..end.len() - 5] }),
            "after",
        )
        .await;
        refused(
            &app,
            &key,
            SEARCH,
            json!({ "q": "export", "sort": "OLDEST", "after": end }),
            "after",
        )
        .await;
        let next = app
            .gql(
                &key,
                SEARCH,
                json!({ "q": "export", "sort": "NEWEST", "after": end }),
            )
            .await;
        assert_eq!(next["search"]["edges"].as_array().unwrap().len(), 2);
    }
);

backend_test!(
    async fn garbage_cursors_on_every_connection_are_bad_user_input(app: TestApp) {
        let key = app.key(Role::Agent).await;
        let ana = app
            .create_customer(&key, json!({ "displayName": "Ana" }))
            .await;
        record(&app, &key, &ana, "hello").await;
        app.gql(
            &key,
            "mutation { createOrganization(input: { name: \"Northwind\" }) { __typename } }",
            json!({}),
        )
        .await;
        let workspace = rapport::domain::workspace::ensure(&app.app.db, "acme")
            .await
            .unwrap();
        rapport::demo::seed_uniform(&app.app.db, workspace.id, 1, 1, 1)
            .await
            .unwrap();
        let conversation = app
            .gql(
                &key,
                "{ interactions(first: 5) { edges { node { conversation { id } } } } }",
                json!({}),
            )
            .await["interactions"]["edges"]
            .as_array()
            .unwrap()
            .iter()
            .find_map(|edge| {
                edge["node"]["conversation"]["id"]
                    .as_str()
                    .map(str::to_owned)
            })
            .expect("a seeded conversation");
        let customer_cursor = app
            .gql(
                &key,
                "{ customers(first: 1) { pageInfo { endCursor } } }",
                json!({}),
            )
            .await["customers"]["pageInfo"]["endCursor"]
            .as_str()
            .unwrap()
            .to_owned();

        let position = |sort: &str, value: Value, id: &str| {
            b64(&json!({ "s": sort, "v": value, "id": id }).to_string())
        };
        let nil = uuid::Uuid::nil().to_string();
        let garbage = [
            "not-a-cursor".to_owned(),
            "%%%".to_owned(),
            b64("{"),
            b64(&"x".repeat(100_000)),
            b64(&json!({ "s": "created_at" }).to_string()),
            position("created_at", json!("yesterday"), &nil),
            position("created_at", json!("+275760-09-13T00:00:00Z"), &nil),
            position("created_at", json!(12), &nil),
            position("created_at", json!("2026-01-01T00:00:00Z"), "nope"),
            position("display_name", json!("a\u{0}b"), &nil),
            position("name", json!("a\u{0}b"), &nil),
            position("name", json!("x".repeat(10_000)), &nil),
            position("occurred_at", json!("2026-01-01T00:00:00\u{0}Z"), &nil),
            position("elsewhere", json!("2026-01-01T00:00:00Z"), &nil),
            customer_cursor[..customer_cursor.len() - 3].to_owned(),
        ];
        let lists = [
            ("{ customers(first: 2, after: $c) { totalCount } }", "customers"),
            ("{ customers(last: 2, before: $c) { totalCount } }", "customers"),
            ("{ customers(first: 2, after: $c, orderBy: { field: DISPLAY_NAME }) { totalCount } }", "customers"),
            ("{ organizations(first: 2, after: $c) { totalCount } }", "organizations"),
            ("{ interactions(first: 2, after: $c) { totalCount } }", "interactions"),
            ("{ interactions(last: 2, before: $c) { totalCount } }", "interactions"),
        ];
        for (list, _) in lists {
            let query = format!("query($c: String) {}", list);
            for cursor in &garbage {
                let field = if list.contains("before") {
                    "before"
                } else {
                    "after"
                };
                refused(&app, &key, &query, json!({ "c": cursor }), field).await;
            }
        }
        for cursor in &garbage {
            refused(
                &app,
                &key,
                TIMELINE,
                json!({ "id": ana, "first": 2, "after": cursor }),
                "after",
            )
            .await;
            refused(
                &app,
                &key,
                TIMELINE,
                json!({ "id": ana, "last": 2, "before": cursor }),
                "before",
            )
            .await;
            refused(&app, &key, "query($id: ID!, $c: String) { node(id: $id) { ... on Conversation { interactions(first: 2, after: $c) { edges { node { id } } } } } }", json!({ "id": conversation, "c": cursor }), "after").await;
        }
        // A cursor of another list (customers by creation) on organizations (by name).
        refused(
            &app,
            &key,
            "query($c: String) { organizations(after: $c) { totalCount } }",
            json!({ "c": customer_cursor }),
            "after",
        )
        .await;
        still_answers(&app).await;
    }
);

backend_test!(
    async fn date_ordered_search_pages_past_the_relevance_window_once_each(app: TestApp) {
        let key = app.key(Role::Viewer).await;
        let workspace = rapport::domain::workspace::ensure(&app.app.db, "acme")
            .await
            .unwrap();
        // 1,200 interactions; customer i's n-th is at i minutes + n+1 hours, so many pairs
        // share their millisecond (ties broken by id).
        rapport::demo::seed_uniform(&app.app.db, workspace.id, 120, 1, 10)
            .await
            .unwrap();
        catch_up(&app).await;

        for sort in ["NEWEST", "OLDEST"] {
            let mut first_facets: Option<serde_json::Value> = None;
            let mut seen = Vec::new();
            let mut times = Vec::new();
            let mut after: Option<String> = None;
            loop {
                let data = app
                    .gql(
                        &key,
                        SEARCH_FACETS,
                        json!({ "q": "message", "sort": sort, "first": 100, "after": after }),
                    )
                    .await;
                let search = &data["search"];
                // Every page counts and facets the whole search, not what lies past it.
                assert_eq!(search["estimatedTotal"], 1200, "{sort}");
                let facets = &search["facets"];
                assert_eq!(
                    facets["channel"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|c| c["count"].as_u64().unwrap())
                        .sum::<u64>(),
                    1200,
                    "{sort}: {facets}"
                );
                match &first_facets {
                    None => first_facets = Some(facets.clone()),
                    Some(first) => assert_eq!(facets, first, "{sort}: the facets of a later page"),
                }
                for edge in search["edges"].as_array().unwrap() {
                    seen.push(
                        edge["node"]["interaction"]["id"]
                            .as_str()
                            .unwrap()
                            .to_owned(),
                    );
                    times.push(
                        edge["node"]["interaction"]["occurredAt"]
                            .as_str()
                            .unwrap()
                            .to_owned(),
                    );
                }
                if search["pageInfo"]["hasNextPage"] != true {
                    break;
                }
                after = Some(search["pageInfo"]["endCursor"].as_str().unwrap().to_owned());
                assert!(seen.len() <= 1200, "{sort}: paging does not end");
            }
            assert_eq!(seen.len(), 1200, "{sort}: every hit");
            let unique: std::collections::HashSet<_> = seen.iter().collect();
            assert_eq!(unique.len(), 1200, "{sort}: each once");
            let parsed: Vec<chrono::DateTime<chrono::Utc>> =
                times.iter().map(|t| t.parse().unwrap()).collect();
            let ordered = parsed.windows(2).all(|w| {
                if sort == "NEWEST" {
                    w[0] >= w[1]
                } else {
                    w[0] <= w[1]
                }
            });
            assert!(ordered, "{sort}: in date order");
        }

        // Relevance order stops at the window's end, and says so.
        let mut seen = 0;
        let mut after: Option<String> = None;
        loop {
            let data = app
                .gql(
                    &key,
                    SEARCH,
                    json!({ "q": "message", "first": 100, "after": after }),
                )
                .await;
            seen += data["search"]["edges"].as_array().unwrap().len();
            if data["search"]["pageInfo"]["hasNextPage"] != true {
                break;
            }
            after = Some(
                data["search"]["pageInfo"]["endCursor"]
                    .as_str()
                    .unwrap()
                    .to_owned(),
            );
        }
        assert_eq!(seen, 1000);
        refused(
            &app,
            &key,
            SEARCH,
            json!({ "q": "message", "after": b64("o:999") }),
            "after",
        )
        .await;
        let last = app
            .gql(
                &key,
                SEARCH,
                json!({ "q": "message", "first": 100, "after": b64("o:949") }),
            )
            .await;
        assert_eq!(
            last["search"]["edges"].as_array().unwrap().len(),
            50,
            "clamped to the window"
        );
    }
);

const CREATE_CUSTOMER: &str =
    "mutation($input: CreateCustomerInput!) { createCustomer(input: $input) { customer { id } } }";

backend_test!(
    async fn nul_and_control_characters_in_interactive_input_are_refused_naming_the_field(
        app: TestApp,
    ) {
        let key = app.key(Role::Admin).await;
        let ana = app
            .create_customer(&key, json!({ "displayName": "Ana", "externalId": "ext-1" }))
            .await;
        let nul = "a\u{0}b";
        let bell = "a\u{7}b";
        let cases: Vec<(&str, Value, &str)> = vec![
            (CREATE_CUSTOMER, json!({ "input": { "displayName": nul } }), "displayName"),
            (CREATE_CUSTOMER, json!({ "input": { "displayName": bell } }), "displayName"),
            (CREATE_CUSTOMER, json!({ "input": { "displayName": "\u{9b}x" } }), "displayName"),
            (CREATE_CUSTOMER, json!({ "input": { "givenName": nul } }), "givenName"),
            (CREATE_CUSTOMER, json!({ "input": { "displayName": "x", "externalId": nul } }), "externalId"),
            (CREATE_CUSTOMER, json!({ "input": { "displayName": "x", "tags": [nul] } }), "tags[0].name"),
            (CREATE_CUSTOMER, json!({ "input": { "displayName": "x", "contactPoints": [{ "kind": "EMAIL", "value": "a\u{0}@b.example" }] } }), "contactPoints[0].value"),
            (CREATE_CUSTOMER, json!({ "input": { "displayName": "x", "customAttributes": { "pl\u{0}an": "pro" } } }), "customAttributes"),
            (CREATE_CUSTOMER, json!({ "input": { "displayName": "x", "customAttributes": { "plan": { "tier": ["ok", nul] } } } }), "customAttributes"),
            ("mutation($input: UpdateCustomerInput!) { updateCustomer(input: $input) { __typename } }", json!({ "input": { "id": ana, "displayName": nul } }), "displayName"),
            ("mutation($input: UpdateCustomerInput!) { updateCustomer(input: $input) { __typename } }", json!({ "input": { "id": ana, "customAttributes": { "k": nul } } }), "customAttributes"),
            ("mutation($input: AddTagInput!) { addTag(input: $input) { __typename } }", json!({ "input": { "customerId": ana, "name": nul } }), "name"),
            ("mutation($input: AddTagInput!) { addTag(input: $input) { __typename } }", json!({ "input": { "customerId": ana, "name": "vip", "color": nul } }), "color"),
            ("mutation($input: RemoveTagInput!) { removeTag(input: $input) { __typename } }", json!({ "input": { "customerId": ana, "name": nul } }), "name"),
            ("mutation($input: AddNoteInput!) { addNote(input: $input) { __typename } }", json!({ "input": { "customerId": ana, "body": nul } }), "body"),
            ("mutation($input: CreateDealInput!) { createDeal(input: $input) { __typename } }", json!({ "input": { "title": nul } }), "title"),
            ("mutation($input: CreateOrganizationInput!) { createOrganization(input: $input) { __typename } }", json!({ "input": { "name": nul } }), "name"),
            ("mutation($input: CreateOrganizationInput!) { createOrganization(input: $input) { __typename } }", json!({ "input": { "name": "N", "customAttributes": { nul: 1 } } }), "customAttributes"),
            ("mutation($input: RecordInteractionInput!) { recordInteraction(input: $input) { __typename } }", json!({ "input": { "customerId": ana, "kind": "CALL", "text": nul } }), "text"),
            ("mutation($input: RecordInteractionInput!) { recordInteraction(input: $input) { __typename } }", json!({ "input": { "customerId": ana, "kind": "CALL", "text": "ok", "subject": nul } }), "subject"),
            ("mutation($input: CreateSourceInput!) { createSource(input: $input) { __typename } }", json!({ "input": { "channel": "WEBHOOK", "name": nul, "config": { "secret": "0123456789abcdef0123" } } }), "name"),
            ("mutation($input: CreateSourceInput!) { createSource(input: $input) { __typename } }", json!({ "input": { "channel": "WEBHOOK", "name": "w", "config": { "secret": "0123456789abcdef0123", "reply_url": "https://x.example/\u{0}" } } }), "config"),
            // Lookups and filters.
            ("query($x: String!) { customerByExternalId(externalId: $x) { id } }", json!({ "x": nul }), "externalId"),
            ("query($q: String!) { search(query: $q) { estimatedTotal } }", json!({ "q": nul }), "query"),
            ("query($q: String!) { searchCustomers(query: $q) { customer { id } } }", json!({ "q": nul }), "query"),
            ("query($s: String) { customers(filter: { search: $s }) { totalCount } }", json!({ "s": nul }), "filter.search"),
            ("query($s: String!) { customers(filter: { tags: [$s] }) { totalCount } }", json!({ "s": nul }), "filter.tags[0]"),
            ("query($s: String) { organizations(search: $s) { totalCount } }", json!({ "s": nul }), "search"),
            ("query($s: String!) { search(query: \"x\", filter: { languages: [$s] }) { estimatedTotal } }", json!({ "s": nul }), "filter.languages[0]"),
            (TIMELINE, json!({ "id": ana, "s": nul }), "search"),
        ];
        for (query, variables, field) in cases {
            refused(&app, &key, query, variables, field).await;
        }
        // Nothing half-stored, and tabs and line breaks are text, not control.
        let data = app.gql(&key, "{ customers { totalCount } organizations { totalCount } deals: interactions { totalCount } }", json!({})).await;
        assert_eq!(data["customers"]["totalCount"], 1);
        let note = app
            .gql(
                &key,
                "mutation($input: AddNoteInput!) { addNote(input: $input) { note { body } } }",
                json!({ "input": { "customerId": ana, "body": "line one\n\tline two" } }),
            )
            .await;
        assert_eq!(note["addNote"]["note"]["body"], "line one\n\tline two");
        // Valid custom attributes are stored in NFC.
        let stored = app.gql(&key, "mutation($input: UpdateCustomerInput!) { updateCustomer(input: $input) { customer { customAttributes } } }", json!({ "input": { "id": ana, "customAttributes": { "cafe\u{301}": ["cafe\u{301}"] } } })).await;
        assert_eq!(
            stored["updateCustomer"]["customer"]["customAttributes"],
            json!({ "café": ["café"] })
        );
        still_answers(&app).await;
    }
);

backend_test!(
    async fn oversized_free_text_arguments_and_custom_attributes_are_refused(app: TestApp) {
        let key = app.key(Role::Admin).await;
        let ana = app
            .create_customer(&key, json!({ "displayName": "Ana" }))
            .await;
        let long = "x".repeat(60_000);
        let cases: Vec<(&str, Value, &str)> = vec![
            ("query($s: String) { customers(filter: { search: $s }) { totalCount } }", json!({ "s": long }), "filter.search"),
            ("query($s: String!) { customers(filter: { tags: [$s] }) { totalCount } }", json!({ "s": long }), "filter.tags[0]"),
            ("query($s: [String!]) { customers(filter: { tags: $s }) { totalCount } }", json!({ "s": vec!["t"; 21] }), "filter.tags"),
            ("query($s: String) { organizations(search: $s) { totalCount } }", json!({ "s": long }), "search"),
            ("query($q: String!) { search(query: $q) { estimatedTotal } }", json!({ "q": long }), "query"),
            ("query($q: String!) { searchCustomers(query: $q) { customer { id } } }", json!({ "q": long }), "query"),
            ("query($x: String!) { customerByExternalId(externalId: $x) { id } }", json!({ "x": long }), "externalId"),
            ("query($s: [String!]) { search(query: \"x\", filter: { languages: $s }) { estimatedTotal } }", json!({ "s": vec!["en"; 101] }), "filter.languages"),
            ("query($s: String!) { search(query: \"x\", filter: { languages: [$s] }) { estimatedTotal } }", json!({ "s": long }), "filter.languages[0]"),
            (TIMELINE, json!({ "id": ana, "s": long }), "search"),
            (CREATE_CUSTOMER, json!({ "input": { "displayName": long } }), "displayName"),
        ];
        for (query, variables, field) in cases {
            refused(&app, &key, query, variables, field).await;
        }
        let many: serde_json::Map<String, Value> =
            (0..201).map(|i| (format!("k{i}"), json!(i))).collect();
        let deep = json!({ "a": { "b": { "c": { "d": { "e": { "f": 1 } } } } } });
        for attributes in [
            json!({ "blob": "x".repeat(20_000) }),
            Value::Object(many),
            deep,
            json!({ "k".repeat(101): 1 }),
            json!({ "list": [[[[[["too deep"]]]]]] }),
        ] {
            refused(
                &app,
                &key,
                CREATE_CUSTOMER,
                json!({ "input": { "displayName": "x", "customAttributes": attributes.clone() } }),
                "customAttributes",
            )
            .await;
            refused(&app, &key, "mutation($input: UpdateCustomerInput!) { updateCustomer(input: $input) { __typename } }", json!({ "input": { "id": ana, "customAttributes": attributes.clone() } }), "customAttributes").await;
            refused(&app, &key, "mutation($input: CreateOrganizationInput!) { createOrganization(input: $input) { __typename } }", json!({ "input": { "name": "N", "customAttributes": attributes } }), "customAttributes").await;
        }
        // Within the caps is fine.
        let fine = json!({ "plan": { "tier": "pro", "seats": 5 }, "tags": ["a", "b"] });
        app.create_customer(
            &key,
            json!({ "displayName": "Ben", "customAttributes": fine }),
        )
        .await;
        still_answers(&app).await;
    }
);

const WHSEC: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const GITHUB_SECRET: &str = "a-github-style-secret-of-32-chars";

async fn webhook_source(app: &TestApp, key: &str, secret: &str) -> String {
    let data = app.gql(key, "mutation($input: CreateSourceInput!) { createSource(input: $input) { source { webhookPath } } }", json!({ "input": { "channel": "WEBHOOK", "name": format!("hook {secret}"), "config": { "secret": secret } } })).await;
    data["createSource"]["source"]["webhookPath"]
        .as_str()
        .unwrap()
        .to_owned()
}

async fn post_standard(app: &TestApp, path: &str, id: &str, body: &str) -> (u16, Value) {
    let timestamp = chrono::Utc::now().timestamp().to_string();
    let signature = Secret::parse(WHSEC)
        .unwrap()
        .sign_standard(id, &timestamp, body.as_bytes())
        .unwrap();
    let response = app
        .client
        .post(app.url(path))
        .header("content-type", "application/json")
        .header("webhook-id", id)
        .header("webhook-timestamp", timestamp)
        .header("webhook-signature", signature)
        .body(body.to_owned())
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn post_github(app: &TestApp, path: &str, delivery: &str, body: &str) -> u16 {
    let signature = Secret::parse(GITHUB_SECRET)
        .unwrap()
        .sign_github(body.as_bytes());
    app.client
        .post(app.url(path))
        .header("content-type", "application/json")
        .header("x-github-delivery", delivery)
        .header("x-hub-signature-256", signature)
        .body(body.to_owned())
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

async fn interaction_count(app: &TestApp, key: &str) -> u64 {
    app.gql(key, "{ interactions { totalCount } }", json!({}))
        .await["interactions"]["totalCount"]
        .as_u64()
        .unwrap()
}

backend_test!(
    async fn a_github_signed_body_replayed_with_fresh_delivery_ids_is_stored_once(app: TestApp) {
        let key = app.key(Role::Admin).await;
        let path = webhook_source(&app, &key, GITHUB_SECRET).await;
        let body = json!({ "name": "Ana", "email": "ana@example.com", "text": "please call me" })
            .to_string();
        for n in 0..5 {
            assert_eq!(
                post_github(&app, &path, &format!("delivery-{n}"), &body).await,
                200
            );
        }
        assert_eq!(
            interaction_count(&app, &key).await,
            1,
            "one signed body, one interaction"
        );
        for n in 0..5 {
            let other = json!({ "name": "Ana", "email": "ana@example.com", "text": format!("message {n}") }).to_string();
            assert_eq!(
                post_github(&app, &path, "same-delivery-header", &other).await,
                200
            );
        }
        assert_eq!(
            interaction_count(&app, &key).await,
            6,
            "five different bodies, five more"
        );
        // Standard Webhooks still dedupes on its signed webhook-id.
        let standard = webhook_source(&app, &key, WHSEC).await;
        let body = json!({ "text": "hi" }).to_string();
        for _ in 0..3 {
            assert_eq!(
                post_standard(&app, &standard, "msg_same", &body).await.0,
                200
            );
        }
        assert_eq!(
            post_standard(&app, &standard, "msg_other", &body).await.0,
            200
        );
        assert_eq!(interaction_count(&app, &key).await, 8);
    }
);

backend_test!(
    async fn nul_in_any_webhook_field_is_stored_stripped_the_same_on_both_databases(app: TestApp) {
        let key = app.key(Role::Admin).await;
        let path = webhook_source(&app, &key, WHSEC).await;
        let body = json!({
            "name": "A\u{0}na\u{7}",
            "email": "ana@example.com",
            "text": "hi\u{0} there\u{1b}",
            "url": "https://example.com/\u{0}x",
            "thread_id": "chat\u{0}-1",
            "extra": { "k\u{0}ey": ["v\u{0}al", { "n\u{0}": "\u{0}" }] },
        })
        .to_string();
        let (status, answer) = post_standard(&app, &path, "msg-nul", &body).await;
        assert_eq!(status, 200, "{answer}");
        let data = app.gql(&key, "{ interactions(first: 5) { edges { node { text url raw: externalId customer { displayName } identity { displayName } conversation { id } } } } }", json!({})).await;
        let node = &data["interactions"]["edges"][0]["node"];
        assert_eq!(node["text"], "hi there");
        assert_eq!(node["url"], "https://example.com/x");
        assert_eq!(node["customer"]["displayName"], "Ana");
        assert_eq!(node["identity"]["displayName"], "Ana");
        // A replay is still a replay.
        let (status, answer) = post_standard(&app, &path, "msg-nul", &body).await;
        assert_eq!((status, answer["duplicate"].as_bool()), (200, Some(true)));
        // Bad JSON is a 4xx, never a 500.
        let (status, _) = post_standard(&app, &path, "msg-bad", "{\"text\": \"a\\u0000").await;
        assert_eq!(status, 400);
        let (status, answer) = post_standard(
            &app,
            &path,
            "msg-empty",
            &json!({ "text": "\u{0}\u{7}" }).to_string(),
        )
        .await;
        assert_eq!(status, 400, "{answer}");
        assert_eq!(
            answer["errors"][0]["extensions"]["field"], "text",
            "{answer}"
        );
        still_answers(&app).await;
    }
);

backend_test!(
    async fn a_feed_item_with_nul_is_stored_stripped_and_its_batch_lands(app: TestApp) {
        let key = app.key(Role::Admin).await;
        let platform = crate::platform::Platform::start().await;
        let feed = json!({
            "version": "https://jsonfeed.org/version/1.1",
            "title": "Status",
            "items": [
                { "id": "one", "title": "clean", "content_text": "first", "date_published": "2026-11-10T06:00:00Z" },
                { "id": "two\u{0}", "title": "bad\u{0}title", "content_text": "x\u{0}y", "url": "https://status.example/\u{0}2", "date_published": "2026-11-10T07:00:00Z", "authors": [{ "name": "Bo\u{0}t" }] },
                { "id": "three", "title": "clean too", "content_text": "third", "date_published": "2026-11-10T08:00:00Z" },
            ]
        });
        platform.on("/feed.json", vec![crate::platform::Reply::json(&feed)]);
        let id = crate::feeds::create_source(
            &app,
            &key,
            "RSS",
            "status",
            json!({ "url": platform.url("/feed.json") }),
        )
        .await;
        let report = crate::feeds::sync(&app, &key, &id).await;
        assert_eq!(report["error"], Value::Null, "{report:#}");
        assert_eq!(report["newItems"], 3, "{report:#}");
        let items = crate::feeds::items(&app, &key).await;
        let bad = &items["two"];
        assert_eq!(bad["subject"], "badtitle");
        assert_eq!(bad["text"], "xy");
        // The next sync goes on (nothing stuck), and stores nothing twice.
        let again = crate::feeds::sync(&app, &key, &id).await;
        assert_eq!(again["error"], Value::Null, "{again:#}");
        assert_eq!(crate::feeds::items(&app, &key).await.len(), 3);
    }
);

backend_test!(
    async fn search_status_shows_only_the_callers_workspace(app: TestApp) {
        let acme = app.key(Role::Agent).await;
        let globex = app.key_in("globex", Role::Viewer).await;
        let ana = app
            .create_customer(&acme, json!({ "displayName": "Ana" }))
            .await;
        record(&app, &acme, &ana, "busy acme").await;
        let status = |key: String| {
            let app = &app;
            async move {
                app.gql(
                    &key,
                    "{ searchStatus { backend lag lastError } }",
                    json!({}),
                )
                .await["searchStatus"]
                    .clone()
            }
        };
        let mine = status(acme.clone()).await;
        assert!(
            mine["lag"].as_i64().unwrap() >= 2,
            "acme's own events: {mine}"
        );
        let theirs = status(globex.clone()).await;
        assert_eq!(
            theirs["lag"], 0,
            "nothing of acme's shows to globex: {theirs}"
        );
        assert_eq!(theirs["lastError"], Value::Null);
        catch_up(&app).await;
        assert_eq!(status(acme).await["lag"], 0);
        assert_eq!(status(globex).await["lag"], 0);
    }
);
