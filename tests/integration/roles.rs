//! Roles: viewers read; agents also work customers, deals, notes and interactions;
//! admins (and owners) may also delete customers.

use rapport::domain::Role;
use serde_json::json;

use crate::backend_test;

backend_test! {
    async fn each_role_may_do_what_it_should_and_nothing_more(app: TestApp) {
        let viewer = app.key(Role::Viewer).await;
        let agent = app.key(Role::Agent).await;
        let admin = app.key(Role::Admin).await;
        let owner = app.key(Role::Owner).await;
        let id = app.create_customer(&agent, json!({ "displayName": "Vera" })).await;
        // Viewers read everything and change nothing.
        let data = app.gql(&viewer, "query($id: ID!) { customer(id: $id) { displayName } customers { totalCount } }", json!({ "id": id })).await;
        assert_eq!(data["customer"]["displayName"], "Vera");
        let writes = [
            ("mutation { createCustomer(input: {displayName: \"x\"}) { customer { id } } }", json!({})),
            ("mutation($id: ID!) { updateCustomer(input: {id: $id, displayName: \"x\"}) { customer { id } } }", json!({ "id": id })),
            ("mutation($id: ID!) { addNote(input: {customerId: $id, body: \"x\"}) { note { id } } }", json!({ "id": id })),
            ("mutation($id: ID!) { addTag(input: {customerId: $id, name: \"x\"}) { customer { id } } }", json!({ "id": id })),
            ("mutation($id: ID!) { recordInteraction(input: {customerId: $id, kind: CALL, text: \"x\"}) { interaction { id } } }", json!({ "id": id })),
            ("mutation { createOrganization(input: {name: \"x\"}) { organization { id } } }", json!({})),
            ("mutation($id: ID!) { createDeal(input: {title: \"x\", customerId: $id}) { deal { id } } }", json!({ "id": id })),
            ("mutation($id: ID!) { deleteCustomer(input: {id: $id}) { deletedCustomerId } }", json!({ "id": id })),
        ];
        for (mutation, variables) in &writes {
            let (code, body) = app.gql_error(&viewer, mutation, variables.clone()).await;
            assert_eq!(code, "FORBIDDEN", "viewer: {mutation}: {body:#}");
        }
        let (_, body) = app.gql_error(&viewer, writes[0].0, json!({})).await;
        insta::assert_json_snapshot!("forbidden_viewer", body);
        // Agents do all of it but delete.
        for (mutation, variables) in &writes[..writes.len() - 1] {
            let (status, body) = app.post(&agent, mutation, variables.clone()).await;
            assert_eq!(status, 200);
            assert!(body.get("errors").is_none(), "agent: {mutation}: {body:#}");
        }
        let (code, body) = app.gql_error(&agent, writes[7].0, writes[7].1.clone()).await;
        assert_eq!(code, "FORBIDDEN");
        insta::assert_json_snapshot!("forbidden_agent_delete", body);
        // Admins and owners delete.
        app.gql(&admin, writes[7].0, writes[7].1.clone()).await;
        let other = app.create_customer(&agent, json!({ "displayName": "Otto" })).await;
        app.gql(&owner, writes[7].0, json!({ "id": other })).await;
        let data = app.gql(&viewer, "{ customers { totalCount } }", json!({})).await;
        assert_eq!(data["customers"]["totalCount"], 1, "only the agent-created `x` remains");
    }
}
