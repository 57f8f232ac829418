//! Answers list each object's fields in the order the query selected them (the spec's
//! ordered result map), though the engine resolves them all together: fields read through
//! loaders (tags, timeline) finish after the customer's own columns.

use rapport::domain::Role;
use serde_json::json;

use crate::backend_test;

backend_test! {
    async fn fields_come_back_in_selection_order(app: TestApp) {
        let key = app.key(Role::Admin).await;
        for name in ["Ada", "Grace"] {
            let id = app.create_customer(&key, json!({ "displayName": name })).await;
            app.gql(&key, "mutation($id: ID!) { addTag(input: {customerId: $id, name: \"vip\"}) { customer { id } } }", json!({ "id": id })).await;
        }
        let query = "{ customers(first: 2) { edges { node { timeline(first: 1) { totalCount } tagged: tags { name } ...Names id } } } viewer { role } }
                     fragment Names on Customer { displayName lifecycleStage }";
        let response = app
            .client
            .post(app.url("/graphql"))
            .bearer_auth(&key)
            .json(&json!({ "query": query }))
            .send()
            .await
            .unwrap();
        // serde_json keeps the order of the text (`preserve_order`).
        let body: serde_json::Value = response.json().await.unwrap();
        assert!(body.get("errors").is_none(), "{body}");
        let keys = |value: &serde_json::Value| value.as_object().unwrap().keys().cloned().collect::<Vec<_>>();
        assert_eq!(keys(&body["data"]), ["customers", "viewer"]);
        for edge in body["data"]["customers"]["edges"].as_array().unwrap() {
            assert_eq!(keys(&edge["node"]), ["timeline", "tagged", "displayName", "lifecycleStage", "id"], "{body}");
        }
    }
}
