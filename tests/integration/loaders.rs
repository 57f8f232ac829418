//! No N+1: a page of customers with their relations costs a fixed number of statements,
//! whatever the page size (counted by the app's statement metric).

use rapport::domain::Role;
use serde_json::json;

use crate::backend_test;
use crate::common::TestApp;

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
        assert_eq!(large, 21, "a page with every relation took {large} statements");
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
        // The API key lookup, the customer, then one statement for each relation at once.
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
        assert_eq!(counts, [10, 10], "statements per 360 view at timeline sizes 1 and 10");
    }
}
