//! No N+1: a page of customers with their relations costs a fixed number of statements,
//! whatever the page size (counted by the app's statement metric).

use rapport::domain::Role;
use serde_json::json;

use crate::backend_test;
use crate::common::{Backend, TestApp};

const QUERY: &str = "query($n: Int) { customers(first: $n) { totalCount edges { node {
    id displayName
    identities { channel handle }
    contactPoints { value }
    tags { name }
    organization { name customerCount }
    timeline(first: 10) { totalCount edges { node { text channel identity { handle } conversation { status } customer { displayName } } } }
    conversations { status interactions(first: 5) { totalCount edges { node { text } } } }
    deals { title organization { name } }
    notes { body }
    metrics { interactionCount openConversations interactionsByChannel { channel count } }
} } } }";

async fn statements_for(app: &TestApp, key: &str, n: usize) -> (u64, usize) {
    let before = app.statements();
    let data = app.gql(key, QUERY, json!({ "n": n })).await;
    let edges = data["customers"]["edges"].as_array().unwrap();
    for edge in edges {
        let node = &edge["node"];
        assert_eq!(
            node["timeline"]["edges"].as_array().unwrap().len(),
            10,
            "every customer shows 10 of 12 interactions"
        );
        assert_eq!(node["timeline"]["totalCount"], 12);
        assert_eq!(node["identities"].as_array().unwrap().len(), 2);
        assert_eq!(node["metrics"]["interactionCount"], 12);
        assert_eq!(
            node["timeline"]["edges"][0]["node"]["customer"]["displayName"],
            node["displayName"]
        );
    }
    (app.statements() - before, edges.len())
}

backend_test! {
    async fn a_page_of_100_customers_with_every_relation_costs_a_fixed_number_of_statements(app: TestApp) {
        let key = app.key(Role::Owner).await;
        let workspace = rapport::domain::workspace::ensure(&app.app.db, "acme").await.unwrap();
        rapport::demo::seed_uniform(&app.app.db, workspace.id, 100, 2, 12).await.unwrap();
        let (small, n_small) = statements_for(&app, &key, 5).await;
        let (large, n_large) = statements_for(&app, &key, 100).await;
        assert_eq!((n_small, n_large), (5, 100));
        assert_eq!(small, large, "the statement count must not grow with the page size");
        // On PostgreSQL the relations of many rows (contact points, identities, timeline,
        // conversations, deals, notes) come with the page (`domain::view::list`): six
        // statements fewer, and one more as the loads left (organizations of customers
        // and of deals) now fall into one batch. Counted without the key's read
        // (`TestApp::statements`).
        let pinned = match app.backend {
            Backend::Sqlite => 20,
            Backend::Postgres => 13,
        };
        assert_eq!(large, pinned, "a page with every relation took {large} statements");
        eprintln!("{:?}: 100 customers with all relations in {large} statements", app.backend);
    }
}

backend_test! {
    async fn nodes_by_id_are_loaded_in_batches(app: TestApp) {
        let key = app.key(Role::Owner).await;
        let workspace = rapport::domain::workspace::ensure(&app.app.db, "acme").await.unwrap();
        rapport::demo::seed_uniform(&app.app.db, workspace.id, 60, 1, 1).await.unwrap();
        let page = app.gql(&key, "{ customers(first: 60) { edges { node { id timeline(first: 1) { edges { node { id } } } } } } }", json!({})).await;
        let mut ids: Vec<String> = Vec::new();
        for edge in page["customers"]["edges"].as_array().unwrap() {
            ids.push(edge["node"]["id"].as_str().unwrap().to_owned());
            ids.push(edge["node"]["timeline"]["edges"][0]["node"]["id"].as_str().unwrap().to_owned());
        }
        let query = "query($ids: [ID!]!) { nodes(ids: $ids) { id } }";
        let before = app.statements();
        let data = app.gql(&key, query, json!({ "ids": ids[..4] })).await;
        let few = app.statements() - before;
        let before = app.statements();
        let data_all = app.gql(&key, query, json!({ "ids": ids[..100] })).await;
        let many = app.statements() - before;
        assert_eq!(data["nodes"].as_array().unwrap().len(), 4);
        let returned: Vec<&str> = data_all["nodes"].as_array().unwrap().iter().map(|n| n["id"].as_str().unwrap()).collect();
        assert_eq!(returned, ids[..100].iter().map(String::as_str).collect::<Vec<_>>(), "in the order asked");
        assert_eq!(few, many, "one query per kind, whatever the number of ids");
        let (code, _) = app.gql_error(&key, query, json!({ "ids": ids[..101] })).await;
        assert_eq!(code, "BAD_USER_INPUT");
    }
}

const VIEW: &str = "query($id: ID!, $n: Int) { customer(id: $id) {
    id displayName
    contactPoints { kind value } identities { channel handle } organization { name } tags { name }
    timeline(first: $n) { edges { node { channel kind direction text occurredAt } } }
    conversations { status subject lastMessageAt }
    deals { title amount currency stage } notes { body createdAt }
} }";

backend_test! {
    async fn a_customer_360_view_costs_a_pinned_number_of_statements_whatever_the_timeline_size(app: TestApp) {
        // On PostgreSQL the customer with every relation in one statement; on SQLite the
        // customer, then one statement for each relation at once (the key's read is not
        // counted: `TestApp::statements`).
        let key = app.key(Role::Owner).await;
        let workspace = rapport::domain::workspace::ensure(&app.app.db, "acme").await.unwrap();
        rapport::demo::seed_uniform(&app.app.db, workspace.id, 3, 2, 12).await.unwrap();
        let page = app.gql(&key, "{ customers(first: 1) { edges { node { id } } } }", json!({})).await;
        let id = page["customers"]["edges"][0]["node"]["id"].clone();
        let mut counts = Vec::new();
        for n in [1, 10] {
            let before = app.statements();
            let data = app.gql(&key, VIEW, json!({ "id": id, "n": n })).await;
            counts.push(app.statements() - before);
            let view = &data["customer"];
            assert_eq!(view["timeline"]["edges"].as_array().unwrap().len(), n as usize);
            assert_eq!(view["identities"].as_array().unwrap().len(), 2);
            assert_eq!(view["tags"].as_array().unwrap().len(), 1);
        }
        let pinned = match app.backend {
            Backend::Sqlite => [9, 9],
            Backend::Postgres => [1, 1],
        };
        assert_eq!(counts, pinned, "statements per 360 view at timeline sizes 1 and 10");
    }
}

/// Every relation the 360 view reads ahead, with every field and the timeline's paging, as
/// a fragment: asked through `customer` (read with the customer on PostgreSQL) and through
/// `node` (always through the loaders).
const EVERY_RELATION: &str = "fragment view on Customer {
    id displayName givenName familyName lifecycleStage externalId customAttributes
    contactPoints { id kind value normalizedValue label primary verified }
    identities { id channel platformId handle displayName profileUrl avatarUrl createdAt }
    organization { id name domain customAttributes createdAt updatedAt }
    tags { id name color }
    timeline(first: 3) { totalCount edges { cursor node { id channel direction kind subject text html url
            language sentiment externalId occurredAt ingestedAt } }
        pageInfo { hasNextPage hasPreviousPage startCursor endCursor } }
    conversations { id channel subject status priority assignee { id name } firstResponseAt resolvedAt lastMessageAt createdAt updatedAt }
    deals { id title amount currency stage closeDate createdAt updatedAt }
    notes { id body author createdAt updatedAt }
}";

backend_test! {
    async fn relations_read_with_the_customer_equal_those_read_through_the_loaders(app: TestApp) {
        let key = app.key(Role::Owner).await;
        let workspace = rapport::domain::workspace::ensure(&app.app.db, "acme").await.unwrap();
        assert!(rapport::demo::seed(&app.app.db, workspace.id).await.unwrap() >= 50);
        let list = app
            .gql(&key, &format!("{{ customers(first: 50, orderBy: {{field: DISPLAY_NAME}}) {{ edges {{ node {{ ...view }} }} }} }} {EVERY_RELATION}"), json!({}))
            .await;
        let customers: Vec<serde_json::Value> = list["customers"]["edges"]
            .as_array()
            .unwrap()
            .iter()
            .map(|edge| edge["node"].clone())
            .collect();
        assert_eq!(customers.len(), 50);
        // The data is varied enough for the comparison to mean something.
        let with = |field: &str| customers.iter().filter(|c| c[field].as_array().is_some_and(|a| !a.is_empty())).count();
        let counts = ["contactPoints", "identities", "tags", "conversations", "deals", "notes"].map(with);
        assert!(counts.iter().all(|&n| n > 0), "{counts:?}");
        assert!(customers.iter().any(|c| c["organization"].is_null()) && customers.iter().any(|c| !c["organization"].is_null()));
        for listed in &customers {
            let id = listed["id"].as_str().unwrap();
            let one = app
                .gql(&key, &format!("query($id: ID!) {{ customer(id: $id) {{ ...view }} node(id: $id) {{ ...view }} }} {EVERY_RELATION}"), json!({ "id": id }))
                .await;
            assert_eq!(one["customer"], one["node"], "the 360 view of {id}");
            assert_eq!(&one["customer"], listed, "the 360 view of {id} and its row in the list");
        }
        // Aliases, default and differing page sizes, filters and arguments on relations:
        // whatever the root reads ahead, the answer is the loaders'.
        const ODD: &str = "fragment odd on Customer {
            t1: timeline { totalCount edges { node { id } } pageInfo { hasNextPage } }
            t2: timeline(first: 2) { edges { node { id } } }
            t3: timeline(first: 2, filter: { direction: INBOUND }) { edges { node { id direction } } }
            mastodon: identities(channel: MASTODON) { id }
            all: identities { id }
            again: identities { handle }
            open: conversations(status: OPEN) { id }
            organization { name } org: organization { id }
        }";
        for listed in customers.iter().take(8) {
            let id = listed["id"].as_str().unwrap();
            let one = app
                .gql(&key, &format!("query($id: ID!) {{ customer(id: $id) {{ ...odd }} node(id: $id) {{ ...odd }} }} {ODD}"), json!({ "id": id }))
                .await;
            assert_eq!(one["customer"], one["node"], "the odd view of {id}");
        }
        // The same through a list (read with the page on PostgreSQL), asked both as edges
        // and as nodes, and on a page read backwards.
        let odd_list = app
            .gql(&key, &format!("{{ customers(first: 8, orderBy: {{field: DISPLAY_NAME}}) {{ edges {{ node {{ id ...odd }} }} nodes {{ id ...odd }} }} }} {ODD}"), json!({}))
            .await;
        let edges = odd_list["customers"]["edges"].as_array().unwrap();
        assert_eq!(edges.len(), 8);
        for (edge, node) in edges.iter().zip(odd_list["customers"]["nodes"].as_array().unwrap()) {
            let id = edge["node"]["id"].as_str().unwrap();
            let one = app
                .gql(&key, &format!("query($id: ID!) {{ node(id: $id) {{ id ...odd }} }} {ODD}"), json!({ "id": id }))
                .await;
            assert_eq!(edge["node"], one["node"], "the odd view of {id} in a list");
            assert_eq!(node, &one["node"], "the odd view of {id} among a list's nodes");
        }
        let ahead = app
            .gql(&key, "{ customers(first: 10, orderBy: {field: DISPLAY_NAME}) { edges { cursor node { id } } } }", json!({}))
            .await;
        let ahead = ahead["customers"]["edges"].as_array().unwrap();
        let backwards = app
            .gql(&key, &format!("query($before: String) {{ customers(last: 7, before: $before, orderBy: {{field: DISPLAY_NAME}}) {{ edges {{ node {{ ...view }} }} }} }} {EVERY_RELATION}"), json!({ "before": ahead[9]["cursor"] }))
            .await;
        let last: Vec<&serde_json::Value> = backwards["customers"]["edges"].as_array().unwrap().iter().map(|edge| &edge["node"]).collect();
        let expected: Vec<&serde_json::Value> = ahead[2..9].iter().map(|edge| &edge["node"]["id"]).collect();
        assert_eq!(last.iter().map(|node| &node["id"]).collect::<Vec<_>>(), expected, "the 7 before the 10th, in the list's order");
        for listed in last {
            let id = listed["id"].as_str().unwrap();
            let one = app
                .gql(&key, &format!("query($id: ID!) {{ node(id: $id) {{ ...view }} }} {EVERY_RELATION}"), json!({ "id": id }))
                .await;
            assert_eq!(listed, &one["node"], "{id} on a page read backwards");
        }
    }
}

backend_test! {
    async fn a_relation_that_cannot_be_read_fails_as_its_field_and_is_not_read_unless_asked(app: TestApp) {
        use sea_orm::ConnectionTrait;
        let key = app.key(Role::Owner).await;
        let workspace = rapport::domain::workspace::ensure(&app.app.db, "acme").await.unwrap();
        rapport::demo::seed(&app.app.db, workspace.id).await.unwrap();
        let without_deals = "{ customers(first: 20) { edges { node { id displayName identities { handle } timeline(first: 2) { edges { node { text } } } } } } }";
        let before = app.gql(&key, without_deals, json!({})).await;
        // The deals' table loses a column every read of a deal needs.
        app.app
            .db
            .execute_unprepared("ALTER TABLE deal RENAME COLUMN title TO headline")
            .await
            .unwrap();
        // A page that does not ask for deals does not read them.
        assert_eq!(app.gql(&key, without_deals, json!({})).await, before);
        // One that does: on PostgreSQL its one statement (deals included) fails, the page
        // is read again alone and each relation through its loader, so the error is the
        // deals' own, at each customer's `deals` (not the list's), as on SQLite.
        let with_deals = "{ customers(first: 20) { edges { node { id identities { handle } deals { title } } } } }";
        let (status, body) = app.post(&key, with_deals, json!({})).await;
        assert_eq!(status, 200, "{body:#}");
        let errors = body["errors"].as_array().expect("the deals fail");
        assert!(!errors.is_empty());
        for error in errors {
            let path = error["path"].as_array().unwrap();
            assert_eq!(path.last().unwrap(), "deals", "{error}");
            assert_eq!(&path[..2], &[json!("customers"), json!("edges")], "{error}");
        }
        // The same for one customer's view: its identities, organization and tags are
        // answered as the loaders answer them (`node` reads through them), its deals fail
        // at `deals` alone.
        let id = &before["customers"]["edges"][0]["node"]["id"];
        let fields = "id identities { handle } organization { name } tags { name } deals { title }";
        let view = format!("query($id: ID!) {{ customer(id: $id) {{ {fields} }} node(id: $id) {{ ... on Customer {{ {fields} }} }} }}");
        let (status, body) = app.post(&key, &view, json!({ "id": id })).await;
        assert_eq!(status, 200, "{body:#}");
        let mut paths: Vec<String> = body["errors"].as_array().expect("the deals fail").iter().map(|e| e["path"].to_string()).collect();
        paths.sort();
        assert_eq!(paths, [r#"["customer","deals"]"#, r#"["node","deals"]"#], "{body:#}");
        let customer = &body["data"]["customer"];
        assert_eq!(customer, &body["data"]["node"]);
        assert_eq!(customer["id"], *id);
        assert_eq!(customer["identities"], before["customers"]["edges"][0]["node"]["identities"]);
    }
}

backend_test! {
    async fn rows_read_by_position_equal_the_orms_and_a_wrong_column_type_is_an_error(app: TestApp) {
        use sea_orm::{ConnectionTrait, EntityTrait, Statement};
        let workspace = rapport::domain::workspace::ensure(&app.app.db, "acme").await.unwrap();
        rapport::demo::seed_uniform(&app.app.db, workspace.id, 30, 1, 1).await.unwrap();
        let backend = app.app.db.get_database_backend();
        // The columns in the reverse order of the model's fields.
        let columns = "updated_at, created_at, conversation_id, author, body, customer_id, workspace_id, id";
        let sql = format!("SELECT {columns} FROM note ORDER BY id");
        let read: Vec<entity::note::Model> =
            rapport::domain::decode::all(&app.app.db, Statement::from_string(backend, sql))
                .await
                .unwrap();
        let mut stored = entity::note::Entity::find().all(&app.app.db).await.unwrap();
        stored.sort_by_key(|note| note.id.uuid());
        assert_eq!(read.len(), 30);
        assert_eq!(read, stored);
        // Of two columns of one name, the last is read (as sqlx reads by name).
        let twice = format!("SELECT 'not an id' AS id, {columns} FROM note ORDER BY note.id");
        let read: Vec<entity::note::Model> =
            rapport::domain::decode::all(&app.app.db, Statement::from_string(backend, twice))
                .await
                .unwrap();
        assert_eq!(read, stored);
        // A column of another type is refused as an error, never read as the field's.
        let wrong = "SELECT updated_at, created_at, conversation_id, author, body, customer_id, workspace_id, 1.5 AS id FROM note".to_owned();
        let refused = rapport::domain::decode::all::<entity::note::Model>(
            &app.app.db,
            Statement::from_string(backend, wrong),
        )
        .await;
        assert!(refused.is_err(), "{refused:?}");
    }
}

/// Changes every `every`-th row of `E` (numbered in the order read) with `change`.
async fn change_rows<E, A>(app: &TestApp, every: usize, change: impl Fn(usize, &mut A))
where
    E: sea_orm::EntityTrait,
    E::Model: sea_orm::IntoActiveModel<A>,
    A: sea_orm::ActiveModelTrait<Entity = E> + sea_orm::ActiveModelBehavior + Send,
{
    use sea_orm::IntoActiveModel;
    let rows = E::find().all(&app.app.db).await.unwrap();
    for (n, row) in rows.into_iter().enumerate().step_by(every) {
        let mut row = row.into_active_model();
        change(n, &mut row);
        row.update(&app.app.db).await.unwrap();
    }
}

/// Sets the optional columns the demo data leaves empty (and varies its flags and times)
/// on a few rows of every kind, each to a value of its own, so that a field answered
/// from the wrong column shows.
async fn fill_every_column(app: &TestApp) {
    use chrono::NaiveDate;
    use entity::enums::DeliveryStatus;
    use entity::*;
    use sea_orm::Set;
    change_rows::<interaction::Entity, _>(app, 3, |n, row| {
        row.html = Set(Some(format!("<p>html {n}</p>")));
        row.external_id = Set(Some(format!("ext-{n}")));
        row.url = Set(Some(format!("https://example.com/i/{n}")));
        row.ingested_at =
            Set(row.occurred_at.as_ref().to_owned() + chrono::Duration::seconds(n as i64 + 1));
        let statuses = [
            DeliveryStatus::Sending,
            DeliveryStatus::Sent,
            DeliveryStatus::Failed,
        ];
        row.delivery_status = Set(Some(statuses[n / 3 % 3]));
        row.delivery_error = Set(Some(format!("refused {n}")));
    })
    .await;
    change_rows::<customer::Entity, _>(app, 2, |n, row| {
        let (year, month, day) = (1950 + n as i32 % 50, 1 + n as u32 % 12, 1 + n as u32 % 28);
        row.birth_date = Set(NaiveDate::from_ymd_opt(year, month, day));
        row.external_id = Set(Some(format!("crm-{n}")));
        row.given_name = Set(Some(format!("Given {n}")));
        row.family_name = Set(Some(format!("Family {n}")));
    })
    .await;
    change_rows::<identity::Entity, _>(app, 2, |n, row| {
        row.avatar_url = Set(Some(format!("https://example.com/a/{n}.png")));
        row.profile_url = Set(Some(format!("https://example.com/p/{n}")));
        row.display_name = Set(Some(format!("Shown {n}")));
        row.handle = Set(Some(format!("handle{n}")));
    })
    .await;
    change_rows::<contact_point::Entity, _>(app, 2, |n, row| {
        row.label = Set(Some(format!("label {n}")));
        row.verified = Set(true);
        row.is_primary = Set(n % 4 != 0);
    })
    .await;
    change_rows::<tag::Entity, _>(app, 1, |n, row| {
        row.color = Set(Some(format!("#00{n:04}")));
    })
    .await;
    change_rows::<conversation::Entity, _>(app, 2, |n, row| {
        use entity::enums::ConversationStatus;
        let at = *row.last_message_at.as_ref();
        row.subject = Set(Some(format!("Subject {n}")));
        row.waiting_since = Set(Some(at - chrono::Duration::minutes(n as i64 + 1)));
        row.spam = Set(n % 4 == 0);
        if n % 6 == 0 {
            // Snoozed until later than any test runs: its status and time read as set.
            row.status = Set(ConversationStatus::Snoozed);
            row.snoozed_until = Set(Some(at + chrono::Duration::days(36_500)));
        }
    })
    .await;
    change_rows::<deal::Entity, _>(app, 2, |n, row| {
        let (month, day) = (1 + n as u32 % 12, 1 + n as u32 % 28);
        row.close_date = Set(NaiveDate::from_ymd_opt(2027, month, day));
        row.amount_minor = Set(Some(100_000 + n as i64 * 101));
    })
    .await;
}

/// The fields of `type_name` a parity check can select bare: no arguments, a scalar or
/// enum (through any non-null / list wrappers).
async fn bare_fields(app: &TestApp, key: &str, type_name: &str) -> Vec<String> {
    let data = app
        .gql(
            key,
            "query($name: String!) { __type(name: $name) { fields { name args { name }
                type { kind ofType { kind ofType { kind ofType { kind } } } } } } }",
            json!({ "name": type_name }),
        )
        .await;
    let mut names = Vec::new();
    for field in data["__type"]["fields"].as_array().unwrap() {
        let mut ty = &field["type"];
        while matches!(ty["kind"].as_str(), Some("NON_NULL" | "LIST")) {
            ty = &ty["ofType"];
        }
        let leaf = matches!(ty["kind"].as_str(), Some("SCALAR" | "ENUM"));
        if leaf && field["args"].as_array().unwrap().is_empty() {
            names.push(field["name"].as_str().unwrap().to_owned());
        }
    }
    names
}

backend_test! {
    async fn fields_answered_inline_equal_those_answered_by_their_resolvers(app: TestApp) {
        // A customer list answers the column fields of customers and their relations
        // inline (`graphql::fast`); `nodes(ids:)` answers the same objects through their
        // resolvers. Every bare field of each type, as the schema lists them, is compared.
        let key = app.key(Role::Owner).await;
        let workspace = rapport::domain::workspace::ensure(&app.app.db, "acme").await.unwrap();
        assert!(rapport::demo::seed(&app.app.db, workspace.id).await.unwrap() >= 50);
        fill_every_column(&app).await;
        // Notes on conversations (the demo's are all on their customer).
        use sea_orm::ConnectionTrait;
        app.app.db.execute_unprepared(
            "UPDATE note SET conversation_id = (SELECT cv.id FROM conversation cv WHERE cv.customer_id = note.customer_id ORDER BY cv.id LIMIT 1)",
        ).await.unwrap();
        // The first customer's e-mails ordered by more than their time: the newer one
        // primary comes first (contact points are primary first within each kind).
        let first = app.gql(&key, "{ customers(first: 1, orderBy: {field: DISPLAY_NAME}) { nodes { id } } }", json!({})).await;
        let first = first["customers"]["nodes"][0]["id"].as_str().unwrap().to_owned();
        for (value, primary) in [("older@example.com", false), ("newer@example.com", true)] {
            app.gql(&key, "mutation($input: AddContactPointInput!) { addContactPoint(input: $input) { contactPoint { id } } }",
                json!({ "input": { "customerId": first, "contactPoint": { "kind": "EMAIL", "value": value, "primary": primary } } })).await;
        }
        // (type, where the list holds its objects, a field the schema must list)
        let types = [
            ("Customer", "", "lastSeenAt"),
            ("Identity", "identities", "platformId"),
            ("Interaction", "timeline", "deliveryStatus"),
            ("ContactPoint", "contactPoints", "normalizedValue"),
            ("Tag", "tags", "color"),
            ("Deal", "deals", "closeDate"),
            ("Note", "notes", "author"),
            ("Conversation", "conversations", "waitingSince"),
            ("Organization", "organization", "customAttributes"),
        ];
        let mut fields = std::collections::HashMap::new();
        for (name, _, expected) in types {
            let bare = bare_fields(&app, &key, name).await;
            assert!(bare.iter().any(|f| f == expected), "{name}: {bare:?}");
            fields.insert(name, bare.join(" "));
        }
        // Inline answers also go through aliases, `__typename`, a named and an inline
        // fragment, and a field asked twice.
        let relations: String = types[1..]
            .iter()
            .map(|(name, at, _)| match *at {
                "timeline" => format!("timeline(first: 5) {{ edges {{ node {{ {} __typename ...on {name} {{ id }} }} }} }}", fields[name]),
                _ => format!("{at} {{ {} __typename ...same }}", fields[name]),
            })
            .collect::<Vec<_>>()
            .join("\n");
        let list = app
            .gql(&key, &format!(
                "{{ customers(first: 30, orderBy: {{field: DISPLAY_NAME}}) {{ edges {{ node {{ {} __typename again: displayName ...on Node {{ id }}
                    {relations} }} }} }} }}
                 fragment same on Node {{ other: id id }}", fields["Customer"]),
                json!({}))
            .await;
        let mut objects: Vec<(serde_json::Value, &str)> = Vec::new();
        for edge in list["customers"]["edges"].as_array().unwrap() {
            let node = &edge["node"];
            assert_eq!(node["again"], node["displayName"]);
            objects.push((node.clone(), "Customer"));
            for (name, at, _) in &types[1..] {
                for item in items_at(node, at) {
                    assert_eq!(item["__typename"], *name);
                    if *at != "timeline" {
                        assert_eq!(item["other"], item["id"]);
                    }
                    objects.push((item.clone(), name));
                }
            }
        }
        for (name, _, _) in types {
            let n = objects.iter().filter(|(_, kind)| *kind == name).count();
            assert!(n >= 5, "only {n} {name} objects in the demo data's first 30 customers");
        }
        // Varied enough to mean something: optional fields seen set, and null.
        let seen = |name: &str, field: &str| {
            let values: Vec<&serde_json::Value> = objects.iter().filter(|(_, kind)| *kind == name).map(|(o, _)| &o[field]).collect();
            (values.iter().any(|v| v.is_null()), values.iter().any(|v| !v.is_null()))
        };
        for (kind, _, _) in types {
            for field in fields[kind].split(' ') {
                assert!(seen(kind, field).1, "{kind}.{field} is never set in the data");
            }
        }
        let flags = |of: &str, field: &str| objects.iter().filter(|(_, kind)| *kind == of).map(|(o, _)| o[field].as_bool().unwrap()).collect::<std::collections::HashSet<bool>>().len();
        let both = (flags("ContactPoint", "verified"), flags("ContactPoint", "primary"), flags("Conversation", "spam"));
        assert_eq!(both, (2, 2, 2), "both values of the flags");
        let first_emails: Vec<&str> = list["customers"]["edges"][0]["node"]["contactPoints"].as_array().unwrap().iter()
            .filter(|p| p["kind"] == "EMAIL").map(|p| p["value"].as_str().unwrap()).collect();
        assert_eq!(first_emails[0], "newer@example.com", "{first_emails:?}");
        assert!(seen("Interaction", "subject").0, "and sometimes null");
        let every: String = types.iter().map(|(name, _, _)| format!("...on {name} {{ {} }}", fields[name])).collect();
        for chunk in objects.chunks(100) {
            let ids: Vec<&str> = chunk.iter().map(|(o, _)| o["id"].as_str().unwrap()).collect();
            let resolved = app
                .gql(&key, &format!("query($ids: [ID!]!) {{ nodes(ids: $ids) {{ {every} }} }}"), json!({ "ids": ids }))
                .await;
            for ((inline, kind), resolved) in chunk.iter().zip(resolved["nodes"].as_array().unwrap()) {
                for field in fields[kind].split(' ') {
                    assert!(inline.get(field).is_some(), "{kind}.{field} missing inline");
                    assert_eq!(inline[field], resolved[field], "{kind}.{field} of {}", inline["id"]);
                }
            }
        }
        // A list leaves out of its rows the columns no selected field shows
        // (`domain::view`): each field of a customer or of one of its relations asked
        // alone, with nothing else of its object, answers what it answered among all of
        // them.
        for (name, at, _) in types {
            for field in fields[name].split(' ') {
                let inner = match at {
                    // With a relation, so that the page is read with it (`view::list`).
                    "" => format!("{field} identities {{ id }}"),
                    "timeline" => format!("timeline(first: 5) {{ edges {{ node {{ {field} }} }} }}"),
                    _ => format!("{at} {{ {field} }}"),
                };
                let alone = app
                    .gql(&key, &format!(
                        "{{ customers(first: 30, orderBy: {{field: DISPLAY_NAME}}) {{ edges {{ node {{ id {inner} }} }} }} }}"),
                        json!({}))
                    .await;
                let items = |list: &serde_json::Value| -> Vec<serde_json::Value> {
                    let mut values = Vec::new();
                    for edge in list["customers"]["edges"].as_array().unwrap() {
                        let node = &edge["node"];
                        match at {
                            "" => values.push(node[field].clone()),
                            _ => values.extend(items_at(node, at).into_iter().map(|i| i[field].clone())),
                        }
                    }
                    values
                };
                let (alone, among) = (items(&alone), items(&list));
                assert_eq!(alone.len(), among.len(), "{name}.{field}");
                assert!(alone.iter().any(|v| !v.is_null()), "{name}.{field} never set");
                assert_eq!(alone, among, "{name}.{field} asked alone");
                if at.is_empty() {
                    continue;
                }
                // The same through each customer's own view (`customer(id:)`, whose
                // relations' JSON leaves out the same columns), all 30 in one request.
                let ids: Vec<&str> = list["customers"]["edges"].as_array().unwrap().iter().map(|e| e["node"]["id"].as_str().unwrap()).collect();
                let views: String = ids.iter().enumerate().map(|(i, id)| format!("c{i}: customer(id: \"{id}\") {{ {inner} }}")).collect();
                let viewed = app.gql(&key, &format!("{{ {views} }}"), json!({})).await;
                let mut values = Vec::new();
                for i in 0..ids.len() {
                    let node = &viewed[format!("c{i}")];
                    values.extend(items_at(node, at).into_iter().map(|i| i[field].clone()));
                }
                assert_eq!(values, among, "{name}.{field} asked alone in a customer's view");
            }
        }
        // Object fields that load by a column of their row, each asked alone, answer in a
        // list and in each customer's view as they do among every bare field.
        let ids: Vec<String> = list["customers"]["edges"].as_array().unwrap().iter().map(|e| e["node"]["id"].as_str().unwrap().to_owned()).collect();
        for (name, at, field) in [("Deal", "deals", "organization"), ("Note", "notes", "conversation"), ("Conversation", "conversations", "assignee")] {
            let loaded = |answer: &serde_json::Value| -> Vec<serde_json::Value> {
                let nodes: Vec<&serde_json::Value> = match answer.get("customers") {
                    Some(list) => list["edges"].as_array().unwrap().iter().map(|e| &e["node"]).collect(),
                    None => (0..ids.len()).map(|i| &answer[format!("c{i}")]).collect(),
                };
                nodes.into_iter().flat_map(|node| items_at(node, at)).map(|item| item[field]["id"].clone()).collect()
            };
            let list_of = |inner: String| format!("{{ customers(first: 30, orderBy: {{field: DISPLAY_NAME}}) {{ edges {{ node {{ id {at} {{ {inner} }} }} }} }} }}");
            let views_of = |inner: String| ids.iter().enumerate().map(|(i, id)| format!("c{i}: customer(id: \"{id}\") {{ {at} {{ {inner} }} }} ")).collect::<String>();
            let among = loaded(&app.gql(&key, &list_of(format!("{field} {{ id }} {}", fields[name])), json!({})).await);
            assert!(among.iter().any(|id| !id.is_null()), "{name}.{field} never set");
            let alone = loaded(&app.gql(&key, &list_of(format!("{field} {{ id }}")), json!({})).await);
            assert_eq!(alone, among, "{name}.{field} asked alone in a list");
            let viewed = loaded(&app.gql(&key, &format!("{{ {} }}", views_of(format!("{field} {{ id }}"))), json!({})).await);
            assert_eq!(viewed, among, "{name}.{field} asked alone in a customer's view");
        }
    }
}

/// The objects a customer's relation `at` holds in an answer: a timeline's nodes, a
/// list's items, an object alone, none for `null`.
fn items_at<'a>(customer: &'a serde_json::Value, at: &str) -> Vec<&'a serde_json::Value> {
    match &customer[at] {
        _ if at == "timeline" => customer[at]["edges"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| &e["node"])
            .collect(),
        serde_json::Value::Array(items) => items.iter().collect(),
        serde_json::Value::Null => Vec::new(),
        object => vec![object],
    }
}

/// The first customer of the workspace's newest-seen page with identities and interactions.
async fn page_first(app: &TestApp, caller: &rapport::domain::Caller) -> entity::CustomerId {
    use sea_orm::{ConnectionTrait, Statement};
    let sql = format!(
        "SELECT c.id FROM customer c WHERE c.workspace_id = '{}' AND EXISTS (SELECT 1 FROM identity i WHERE i.customer_id = c.id) \
         AND (SELECT count(*) FROM interaction i WHERE i.customer_id = c.id) >= 5 ORDER BY c.id LIMIT 1",
        caller.workspace_id.uuid()
    );
    let row = app
        .app
        .db
        .query_one(Statement::from_string(
            app.app.db.get_database_backend(),
            sql,
        ))
        .await
        .unwrap()
        .unwrap();
    entity::CustomerId::from_uuid(row.try_get::<uuid::Uuid>("", "id").unwrap())
}

/// A customer's display name as stored.
async fn stored_name(app: &TestApp, id: entity::CustomerId) -> String {
    use sea_orm::EntityTrait;
    entity::customer::Entity::find_by_id(id)
        .one(&app.app.db)
        .await
        .unwrap()
        .unwrap()
        .display_name
}

backend_test! {
    async fn a_page_read_with_its_relations_equals_each_customer_read_with_hers(app: TestApp) {
        use rapport::domain::customer::{list, CustomerFilter, CustomerOrderField};
        use rapport::domain::page::PageArgs;
        use rapport::domain::view::{get, Related, Relation, Wanted};
        use rapport::domain::Caller;
        use sea_orm::ConnectionTrait;
        let workspace = rapport::domain::workspace::ensure(&app.app.db, "acme").await.unwrap();
        rapport::demo::seed(&app.app.db, workspace.id).await.unwrap();
        // Ties everywhere an order could break them wrongly: equal names, equal last-seen
        // times, children created (or occurring) at the same instant.
        for sql in [
            "UPDATE customer SET display_name = 'Same Name' WHERE id IN (SELECT id FROM customer ORDER BY id LIMIT 6)",
            "UPDATE customer SET last_seen_at = '2026-01-02T00:00:00Z' WHERE id IN (SELECT id FROM customer ORDER BY id DESC LIMIT 6)",
            "UPDATE identity SET created_at = '2026-01-01T00:00:00Z'",
            "UPDATE contact_point SET created_at = '2026-01-01T00:00:00Z'",
            "UPDATE interaction SET occurred_at = '2026-01-01T00:00:00Z' WHERE id IN (SELECT id FROM interaction ORDER BY id LIMIT 400)",
            "UPDATE conversation SET last_message_at = '2026-01-01T00:00:00Z' WHERE id IN (SELECT id FROM conversation ORDER BY id LIMIT 40)",
            "UPDATE deal SET created_at = '2026-01-01T00:00:00Z'",
            "UPDATE note SET created_at = '2026-01-01T00:00:00Z'",
        ] {
            app.app.db.execute_unprepared(sql).await.unwrap();
        }
        let caller = Caller::owner_without_key(workspace.id, "test");
        let wanted = Wanted {
            contact_points: true,
            identities: true,
            conversations: true,
            deals: true,
            notes: true,
            timeline: Some(4),
            ..Wanted::default()
        };
        let filter = CustomerFilter::default();
        let postgres = app.backend == Backend::Postgres;
        let mut compared = 0;
        for field in [
            CustomerOrderField::CreatedAt,
            CustomerOrderField::UpdatedAt,
            CustomerOrderField::LastSeenAt,
            CustomerOrderField::DisplayName,
        ] {
            for descending in [false, true] {
                let forward = PageArgs { first: Some(12), ..PageArgs::default() };
                let page = list(&app.app.db, &caller, &filter, field, descending, &forward, &wanted).await.unwrap();
                let alone = list(&app.app.db, &caller, &filter, field, descending, &forward, &Wanted::default()).await.unwrap();
                let ids = |items: &[(entity::customer::Model, Related)]| items.iter().map(|(c, _)| c.id).collect::<Vec<_>>();
                assert_eq!(ids(&page.items), ids(&alone.items), "{field:?} {descending}: the same customers in the same order");
                assert_eq!((page.has_next, page.has_previous), (alone.has_next, alone.has_previous));
                // Backwards: the 5 before the 12th.
                let before = rapport::domain::customer::cursor(&page.items[11].0, field).encode();
                let backward = PageArgs { last: Some(5), before: Some(before), ..PageArgs::default() };
                let back = list(&app.app.db, &caller, &filter, field, descending, &backward, &wanted).await.unwrap();
                assert_eq!(ids(&back.items), ids(&page.items[6..11]), "{field:?} {descending} backwards");
                assert!(back.has_next);
                // An empty page and a page of none with relations asked.
                let none = PageArgs { first: Some(0), ..PageArgs::default() };
                assert!(list(&app.app.db, &caller, &filter, field, descending, &none, &wanted).await.unwrap().items.is_empty());
                for (customer, related) in page.items.into_iter().chain(back.items) {
                    if !postgres {
                        assert!(related.identities.is_none() && related.timeline.is_none(), "SQLite reads relations through the loaders");
                        continue;
                    }
                    // Read with the page, not by the fallback (which reads none).
                    let (_, one) = get(&app.app.db, &caller, customer.id, &wanted).await.unwrap();
                    assert_eq!(related.contact_points, one.contact_points, "{}", customer.id);
                    assert_eq!(related.identities, one.identities);
                    assert_eq!(related.conversations, one.conversations);
                    assert_eq!(related.deals, one.deals);
                    assert_eq!(related.notes, one.notes);
                    let (size, timeline) = related.timeline.expect("the timeline read with the page");
                    let (one_size, one_timeline) = one.timeline.unwrap();
                    assert_eq!((size, timeline.has_next, timeline.has_previous), (one_size, one_timeline.has_next, one_timeline.has_previous));
                    assert_eq!(timeline.items, one_timeline.items);
                    compared += 1;
                }
            }
        }
        if postgres {
            assert_eq!(compared, 8 * 17);
        }
        // The benchmark's list leaves out the columns its fields do not show, in the
        // page's rows and in each customer's view alike: read (not by the fallback), equal
        // to each other, and left out (a required column read as its zero, an optional
        // one as `None`).
        let narrow = Wanted {
            identities: true,
            timeline: Some(5),
            customers_unread: rapport::domain::view::customers_unread(["id", "displayName", "identities", "timeline"]),
            timeline_unread: rapport::domain::view::timeline_unread(["text", "occurredAt"]),
            ..Wanted::default()
        }
        .showing(Relation::Identities, ["channel", "handle"]);
        assert!(narrow.unread(Relation::Identities).contains(&"platform_id") && narrow.timeline_unread.contains(&"ingested_at"));
        let first = PageArgs { first: Some(20), ..PageArgs::default() };
        let page = list(&app.app.db, &caller, &filter, CustomerOrderField::LastSeenAt, true, &first, &narrow).await.unwrap();
        assert_eq!(page.items.len(), 20);
        let epoch = chrono::DateTime::<chrono::Utc>::UNIX_EPOCH;
        let (mut identities, mut interactions, mut in_conversations) = (0, 0, 0);
        for (customer, related) in page.items {
            let full = get(&app.app.db, &caller, customer.id, &Wanted { identities: true, timeline: Some(5), ..Wanted::default() }).await.unwrap().1;
            if !postgres {
                assert!(related.identities.is_none(), "SQLite reads relations through the loaders");
                continue;
            }
            let (_, viewed) = get(&app.app.db, &caller, customer.id, &narrow).await.unwrap();
            assert_eq!(customer.display_name, stored_name(&app, customer.id).await);
            let listed = related.identities.expect("the identities read with the page");
            assert_eq!(Some(&listed), viewed.identities.as_ref(), "{}", customer.id);
            let whole = full.identities.unwrap();
            assert_eq!(listed.len(), whole.len());
            for (identity, whole) in listed.iter().zip(whole) {
                assert_eq!((identity.id, &identity.handle, identity.channel), (whole.id, &whole.handle, whole.channel));
                assert_eq!((identity.platform_id.as_str(), identity.profile_key.as_ref()), ("", None), "left out");
                assert!(!whole.platform_id.is_empty());
                identities += 1;
            }
            let (_, listed) = related.timeline.expect("the timeline read with the page");
            let (_, viewed) = viewed.timeline.unwrap();
            assert_eq!(listed.items, viewed.items);
            let whole = full.timeline.unwrap().1.items;
            assert_eq!(listed.items.len(), whole.len());
            for (interaction, whole) in listed.items.iter().zip(whole) {
                assert_eq!((interaction.id, &interaction.text, interaction.occurred_at), (whole.id, &whole.text, whole.occurred_at));
                assert_eq!((interaction.ingested_at, interaction.conversation_id), (epoch, None), "left out");
                assert!(whole.ingested_at != epoch);
                in_conversations += usize::from(whole.conversation_id.is_some());
                interactions += 1;
            }
        }
        if postgres {
            assert!(identities >= 10 && interactions >= 50, "{identities} identities, {interactions} interactions");
            assert!(in_conversations > 0, "a column left out that the data sets");
            // Each field asked alone is read in the view's own statement, not by the
            // fallback (which reads no relation: `None`), its rows as many as in full.
            let some = page_first(&app, &caller).await;
            let identity_fields = ["__typename", "id", "channel", "createdAt", "customer", "platformId", "handle", "displayName", "profileUrl", "avatarUrl", "profileKey"];
            let interaction_fields = ["__typename", "id", "channel", "direction", "kind", "occurredAt", "customer", "text", "subject", "html", "url", "language", "sentiment", "externalId", "ingestedAt", "deliveryStatus", "deliveryError", "conversation"];
            let full = get(&app.app.db, &caller, some, &Wanted { identities: true, timeline: Some(5), ..Wanted::default() }).await.unwrap().1;
            let shapes = identity_fields.iter().map(|f| (*f, "id")).chain(interaction_fields.iter().map(|f| ("id", *f)));
            for (identity_field, interaction_field) in shapes {
                let shape = Wanted {
                    identities: true,
                    timeline: Some(5),
                    timeline_unread: rapport::domain::view::timeline_unread([interaction_field]),
                    ..Wanted::default()
                }
                .showing(Relation::Identities, [identity_field]);
                let (_, one) = get(&app.app.db, &caller, some, &shape).await.unwrap();
                let read = one.identities.unwrap_or_else(|| panic!("{identity_field}: identities by the fallback"));
                assert_eq!(read.len(), full.identities.as_ref().unwrap().len());
                let (_, timeline) = one.timeline.unwrap_or_else(|| panic!("{interaction_field}: timeline by the fallback"));
                assert_eq!(timeline.items.len(), full.timeline.as_ref().unwrap().1.items.len());
            }
            // The same for every other relation's fields, each alone, and each relation's
            // rows read with none of their optional columns (`__typename` alone) compared
            // with those read whole on what they keep.
            let fields: [(Relation, &[&str]); 6] = [
                (Relation::ContactPoints, &["__typename", "id", "kind", "customer", "value", "normalizedValue", "label", "verified", "primary"]),
                (Relation::Organization, &["__typename", "id", "customerCount", "deals", "name", "domain", "customAttributes", "createdAt", "updatedAt"]),
                (Relation::Tags, &["__typename", "id", "name", "color"]),
                (Relation::Conversations, &["__typename", "id", "channel", "status", "snoozedUntil", "priority", "lastMessageAt", "customer", "labels", "lastInteraction", "interactions", "notes", "subject", "assignee", "spam", "waitingSince", "firstResponseAt", "resolvedAt", "createdAt", "updatedAt"]),
                (Relation::Deals, &["__typename", "id", "stage", "createdAt", "customer", "title", "amount", "currency", "closeDate", "organization", "updatedAt"]),
                (Relation::Notes, &["__typename", "id", "createdAt", "customer", "body", "author", "conversation", "updatedAt"]),
            ];
            let every = Wanted { contact_points: true, organization: true, tags: true, conversations: true, deals: true, notes: true, ..Wanted::default() };
            let counts = |r: &Related| [
                r.contact_points.as_ref().map(Vec::len), r.organization.as_ref().map(|o| usize::from(o.is_some())),
                r.tags.as_ref().map(Vec::len), r.conversations.as_ref().map(Vec::len),
                r.deals.as_ref().map(Vec::len), r.notes.as_ref().map(Vec::len),
            ];
            // For each relation, a customer with rows of it (the demo data gives deals,
            // notes and organizations to some), read whole.
            let mut whole = Vec::new();
            for (candidate, _) in list(&app.app.db, &caller, &filter, CustomerOrderField::CreatedAt, true, &PageArgs { first: Some(100), ..PageArgs::default() }, &Wanted::default()).await.unwrap().items {
                whole.push((candidate.id, get(&app.app.db, &caller, candidate.id, &every).await.unwrap().1));
            }
            let bare = Relation::ALL.iter().fold(every.clone(), |w, r| w.showing(*r, ["__typename"]));
            for (at, (relation, names)) in fields.into_iter().enumerate() {
                let (some, whole) = whole.iter().find(|(_, w)| counts(w)[at].unwrap() > 0).unwrap_or_else(|| panic!("no customer with {relation:?}"));
                for field in names {
                    let shape = every.clone().showing(relation, [*field]);
                    assert!(!shape.unread(relation).is_empty(), "{relation:?}.{field} leaves nothing out");
                    let (_, one) = get(&app.app.db, &caller, *some, &shape).await.unwrap();
                    let read = counts(&one);
                    assert!(read.iter().all(Option::is_some), "{relation:?}.{field}: read by the fallback");
                    assert_eq!(read, counts(whole), "{relation:?}.{field}");
                }
                // What a read of none of the optional columns keeps equals the whole read;
                // what it leaves out reads as its default.
                let (_, narrow) = get(&app.app.db, &caller, *some, &bare).await.unwrap();
                assert_eq!(counts(&narrow), counts(whole));
                match relation {
                    Relation::ContactPoints => {
                        for (point, whole) in narrow.contact_points.unwrap().iter().zip(whole.contact_points.as_ref().unwrap()) {
                            assert_eq!((point.id, point.kind, point.created_at), (whole.id, whole.kind, whole.created_at));
                            assert_eq!((point.value.as_str(), point.label.as_ref(), point.verified), ("", None, false));
                            assert!(!whole.value.is_empty());
                        }
                    }
                    Relation::Organization => {
                        let (organization, whole) = (narrow.organization.unwrap().unwrap(), whole.organization.clone().unwrap().unwrap());
                        assert_eq!(organization.id, whole.id);
                        assert_eq!((organization.name.as_str(), organization.domain.as_ref(), &organization.custom), ("", None, &json!({})));
                        assert!(!whole.name.is_empty() && whole.custom != json!({}));
                    }
                    Relation::Tags => {
                        for (tag, whole) in narrow.tags.unwrap().iter().zip(whole.tags.as_ref().unwrap()) {
                            assert_eq!((tag.id, &tag.name, tag.color.as_ref()), (whole.id, &whole.name, None));
                        }
                    }
                    Relation::Conversations => {
                        for (conversation, whole) in narrow.conversations.unwrap().iter().zip(whole.conversations.as_ref().unwrap()) {
                            assert_eq!((conversation.id, conversation.status, conversation.snoozed_until, conversation.last_message_at), (whole.id, whole.status, whole.snoozed_until, whole.last_message_at));
                            assert_eq!((conversation.subject.as_ref(), conversation.assignee_id, conversation.created_at), (None, None, epoch));
                        }
                    }
                    Relation::Deals => {
                        for (deal, whole) in narrow.deals.unwrap().iter().zip(whole.deals.as_ref().unwrap()) {
                            assert_eq!((deal.id, deal.stage, deal.created_at), (whole.id, whole.stage, whole.created_at));
                            assert_eq!((deal.title.as_str(), deal.amount_minor, deal.updated_at), ("", None, epoch));
                            assert!(!whole.title.is_empty());
                        }
                    }
                    Relation::Notes => {
                        for (note, whole) in narrow.notes.unwrap().iter().zip(whole.notes.as_ref().unwrap()) {
                            assert_eq!((note.id, note.created_at), (whole.id, whole.created_at));
                            assert_eq!((note.body.as_str(), note.author.as_str()), ("", ""));
                            assert!(!whole.body.is_empty());
                        }
                    }
                    Relation::Identities => unreachable!(),
                }
            }
        }
        // Another workspace's customers and relations never come with this one's page.
        let other = rapport::domain::workspace::ensure(&app.app.db, "other").await.unwrap();
        rapport::demo::seed(&app.app.db, other.id).await.unwrap();
        let theirs = Caller::owner_without_key(other.id, "test");
        let all = PageArgs { first: Some(100), ..PageArgs::default() };
        let page = list(&app.app.db, &theirs, &filter, CustomerOrderField::CreatedAt, true, &all, &wanted).await.unwrap();
        for (customer, related) in &page.items {
            assert_eq!(customer.workspace_id, other.id);
            let children = related.identities.iter().flatten().map(|r| r.workspace_id)
                .chain(related.deals.iter().flatten().map(|r| r.workspace_id))
                .chain(related.notes.iter().flatten().map(|r| r.workspace_id))
                .chain(related.conversations.iter().flatten().map(|r| r.workspace_id))
                .chain(related.contact_points.iter().flatten().map(|r| r.workspace_id))
                .chain(related.timeline.iter().flat_map(|(_, p)| p.items.iter().map(|r| r.workspace_id)));
            for workspace_id in children {
                assert_eq!(workspace_id, other.id);
            }
        }
        // A view's organization and tags (read with the customer on PostgreSQL) are this
        // workspace's only, even where a row names another's: a customer pointed at
        // another workspace's organization, and tagged with another workspace's tag (rows
        // the API never writes, planted here; a database that refuses one is as good).
        if !postgres {
            return;
        }
        let all = PageArgs { first: Some(1), ..PageArgs::default() };
        let first = list(&app.app.db, &caller, &filter, CustomerOrderField::CreatedAt, true, &all, &Wanted::default()).await.unwrap();
        let mine = first.items[0].0.id;
        let every = Wanted { organization: true, tags: true, ..wanted.clone() };
        let (_, before) = get(&app.app.db, &caller, mine, &every).await.unwrap();
        let of = |table: &str| format!("(SELECT id FROM {table} WHERE workspace_id = '{}' LIMIT 1)", other.id.uuid());
        let mut planted = Vec::new();
        for sql in [
            format!("UPDATE customer SET organization_id = {} WHERE id = '{}'", of("organization"), mine.uuid()),
            format!("INSERT INTO customer_tag (customer_id, tag_id, workspace_id, created_at) VALUES ('{}', {}, '{}', now())", mine.uuid(), of("tag"), workspace.id.uuid()),
            format!("INSERT INTO customer_tag (customer_id, tag_id, workspace_id, created_at) VALUES ('{}', {}, '{}', now())", mine.uuid(), of("tag"), other.id.uuid()),
        ] {
            planted.push(app.app.db.execute_unprepared(&sql).await.is_ok());
        }
        assert!(planted.contains(&true), "nothing could be planted: this part proves nothing");
        let (_, after) = get(&app.app.db, &caller, mine, &every).await.unwrap();
        if planted[0] {
            assert_eq!(after.organization, Some(None), "another workspace's organization");
        } else {
            assert_eq!(after.organization, before.organization);
        }
        assert_eq!(after.tags, before.tags, "another workspace's tag");
        for tag in after.tags.iter().flatten() {
            assert_eq!(tag.workspace_id, workspace.id);
        }
    }
}
