//! Tenancy: a key of one workspace can neither read nor change another workspace's data,
//! by list, by id, by `node(id:)`, through relations, or by mutation.

use rapport::domain::Role;
use serde_json::json;

use crate::backend_test;

backend_test! {
    async fn another_workspace_can_neither_read_nor_change_the_first_ones_data(app: TestApp) {
        let acme = app.key_in("acme", Role::Owner).await;
        let other = app.key_in("globex", Role::Owner).await;
        let org = app.gql(&acme, "mutation { createOrganization(input: {name: \"Acme\", domain: \"acme.example\"}) { organization { id } } }", json!({})).await;
        let org_id = org["createOrganization"]["organization"]["id"].as_str().unwrap().to_owned();
        let id = app
            .create_customer(&acme, json!({ "displayName": "Secret Sam", "externalId": "sam", "organizationId": org_id, "tags": ["vip"],
                "contactPoints": [{ "kind": "EMAIL", "value": "sam@acme.example" }] }))
            .await;
        let interaction = app.gql(&acme, "mutation($id: ID!) { recordInteraction(input: {customerId: $id, kind: CALL, text: \"private\"}) { interaction { id } } }", json!({ "id": id })).await;
        let interaction_id = interaction["recordInteraction"]["interaction"]["id"].as_str().unwrap().to_owned();
        let deal = app.gql(&acme, "mutation($id: ID!) { createDeal(input: {title: \"Big\", customerId: $id}) { deal { id } } }", json!({ "id": id })).await;
        let deal_id = deal["createDeal"]["deal"]["id"].as_str().unwrap().to_owned();
        let note = app.gql(&acme, "mutation($id: ID!) { addNote(input: {customerId: $id, body: \"private\"}) { note { id } } }", json!({ "id": id })).await;
        let note_id = note["addNote"]["note"]["id"].as_str().unwrap().to_owned();
        let point = app.gql(&acme, "query($id: ID!) { customer(id: $id) { contactPoints { id } } viewer { workspace { id } } }", json!({ "id": id })).await;
        let point_id = point["customer"]["contactPoints"][0]["id"].as_str().unwrap().to_owned();
        let workspace_id = point["viewer"]["workspace"]["id"].as_str().unwrap().to_owned();

        // Lists: empty.
        let lists = app
            .gql(&other, "{ customers { totalCount edges { node { id } } } organizations { totalCount } interactions { totalCount } }", json!({}))
            .await;
        assert_eq!(lists, json!({ "customers": { "totalCount": 0, "edges": [] }, "organizations": { "totalCount": 0 }, "interactions": { "totalCount": 0 } }));
        let search = app.gql(&other, "{ customers(filter: {search: \"sam\"}) { totalCount } }", json!({})).await;
        assert_eq!(search["customers"]["totalCount"], 0);
        // By id: null, exactly as for an id that does not exist.
        for node in [&id, &org_id, &interaction_id, &deal_id, &note_id, &point_id, &workspace_id] {
            let data = app.gql(&other, "query($id: ID!) { node(id: $id) { id } }", json!({ "id": node })).await;
            assert_eq!(data["node"], json!(null), "node({node}) leaked");
        }
        let ids = json!([&id, &org_id, &interaction_id, &deal_id, &note_id, &point_id, &workspace_id]);
        let data = app.gql(&other, "query($ids: [ID!]!) { nodes(ids: $ids) { id } }", json!({ "ids": ids })).await;
        assert_eq!(data["nodes"], json!([null, null, null, null, null, null, null]));
        let data = app
            .gql(&other, "query($id: ID!, $org: ID!) { customer(id: $id) { id } organization(id: $org) { id } customerByExternalId(externalId: \"sam\") { id } }", json!({ "id": id, "org": org_id }))
            .await;
        assert_eq!(data, json!({ "customer": null, "organization": null, "customerByExternalId": null }));
        let data = app.gql(&other, "query($id: ID!) { interactions(filter: {customerId: $id}) { totalCount } }", json!({ "id": id })).await;
        assert_eq!(data["interactions"]["totalCount"], 0);

        // Mutations: NOT_FOUND, and nothing changes.
        let attempts = [
            ("mutation($id: ID!) { updateCustomer(input: {id: $id, displayName: \"Pwned\"}) { customer { id } } }", json!({ "id": id })),
            ("mutation($id: ID!) { deleteCustomer(input: {id: $id}) { deletedCustomerId } }", json!({ "id": id })),
            ("mutation($id: ID!) { addNote(input: {customerId: $id, body: \"x\"}) { note { id } } }", json!({ "id": id })),
            ("mutation($id: ID!) { addTag(input: {customerId: $id, name: \"x\"}) { customer { id } } }", json!({ "id": id })),
            ("mutation($id: ID!) { removeTag(input: {customerId: $id, name: \"vip\"}) { customer { id } } }", json!({ "id": id })),
            ("mutation($id: ID!) { addContactPoint(input: {customerId: $id, contactPoint: {kind: EMAIL, value: \"x@y.example\"}}) { customer { id } } }", json!({ "id": id })),
            ("mutation($id: ID!) { removeContactPoint(input: {id: $id}) { removedContactPointId } }", json!({ "id": point_id })),
            ("mutation($id: ID!) { recordInteraction(input: {customerId: $id, kind: CALL, text: \"x\"}) { interaction { id } } }", json!({ "id": id })),
            ("mutation($id: ID!) { updateOrganization(input: {id: $id, name: \"Pwned\"}) { organization { id } } }", json!({ "id": org_id })),
            ("mutation($id: ID!) { updateDeal(input: {id: $id, title: \"Pwned\"}) { deal { id } } }", json!({ "id": deal_id })),
            ("mutation($id: ID!) { createDeal(input: {title: \"x\", customerId: $id}) { deal { id } } }", json!({ "id": id })),
            ("mutation($id: ID!) { createCustomer(input: {displayName: \"x\", organizationId: $id}) { customer { id } } }", json!({ "id": org_id })),
            ("mutation($id: ID!) { updateDeal(input: {id: $id, customerId: null}) { deal { id } } }", json!({ "id": deal_id })),
        ];
        for (mutation, variables) in attempts {
            let (code, body) = app.gql_error(&other, mutation, variables).await;
            assert_eq!(code, "NOT_FOUND", "{mutation}: {body:#}");
        }
        let view = app
            .gql(&acme, "query($id: ID!) { customer(id: $id) { displayName tags { name } contactPoints { value } notes { body } deals { title customer { id } } timeline { totalCount } organization { name } } }", json!({ "id": id }))
            .await;
        assert_eq!(
            view["customer"],
            json!({ "displayName": "Secret Sam", "tags": [{ "name": "vip" }], "contactPoints": [{ "value": "sam@acme.example" }], "notes": [{ "body": "private" }],
                    "deals": [{ "title": "Big", "customer": { "id": id } }], "timeline": { "totalCount": 1 }, "organization": { "name": "Acme" } })
        );
        // The same e-mail and external id may exist in another workspace: uniqueness is per tenant.
        app.create_customer(&other, json!({ "displayName": "Other Sam", "externalId": "sam", "contactPoints": [{ "kind": "EMAIL", "value": "sam@acme.example" }], "tags": ["vip"] })).await;
        let data = app.gql(&acme, "{ customers { totalCount } }", json!({})).await;
        assert_eq!(data["customers"]["totalCount"], 1);
    }
}
