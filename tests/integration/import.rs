//! Bulk import of customers (`importCustomers`, `rapport import customers`): good rows land
//! while each bad line is reported, a second import of the same data changes nothing, an
//! import killed mid-way and re-run stores what one clean run stores, and a workspace
//! imports only into itself.

use std::collections::HashMap;

use rapport::domain::Role;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder};
use serde_json::{json, Value};

use crate::backend_test;
use crate::common::TestApp;
use crate::processes::{config_file, rapport};

const IMPORT: &str = "mutation($input: ImportCustomersInput!) { importCustomers(input: $input) { created updated unchanged rejected issues { line field message rejected } } }";
const BY_EXTERNAL_ID: &str = "query($id: String!) { customerByExternalId(externalId: $id) { id displayName givenName familyName lifecycleStage birthDate customAttributes postalAddress { street street2 locality region postalCode country } organization { name } tags { name } contactPoints { kind value normalizedValue primary } } }";

/// A CSV with good rows and bad ones: line 3 drops a bad e-mail, line 4 has no
/// external_id, line 5 too few fields, line 6 repeats line 2's external_id, line 7 drops a
/// birth date in the future and an unknown country, line 8 has nothing to name it by.
const MIXED: &str = "external_id,given_name,family_name,display_name,email,phone,street,street2,locality,region,postal_code,country,birth_date,organization,tags,lifecycle_stage,plan\n\
c-1,Lucía,García,,lucia@example.com,+34 600 123 456,Calle Mayor 1,,Madrid,,28013,Spain,1990-02-28,Acme,vip;beta,customer,team\n\
c-2,Bo,Lindqvist,,not-an-email,,,,,,,,,Acme,vip,,\n\
,Nobody,,,,,,,,,,,,,,,\n\
c-4,Short\n\
c-1,Again,,,,,,,,,,,,,,,\n\
c-5,Cy,Zhang,,,,,,,,,Atlantis,2999-01-01,,,,free\n\
c-6,,,,,,,,,,,,,,,,\n";

async fn import(app: &TestApp, key: &str, format: &str, data: &str) -> Value {
    app.gql(
        key,
        IMPORT,
        json!({ "input": { "format": format, "data": data } }),
    )
    .await["importCustomers"]
        .clone()
}

fn counts(summary: &Value) -> [u64; 4] {
    ["created", "updated", "unchanged", "rejected"].map(|k| summary[k].as_u64().unwrap())
}

async fn by_external_id(app: &TestApp, key: &str, id: &str) -> Value {
    app.gql(key, BY_EXTERNAL_ID, json!({ "id": id })).await["customerByExternalId"].clone()
}

async fn rows(app: &TestApp, table: &str) -> i64 {
    use sea_orm::ConnectionTrait;
    let row = app
        .app
        .db
        .query_one(sea_orm::Statement::from_string(
            app.app.db.get_database_backend(),
            format!("SELECT count(*) AS n FROM {table}"),
        ))
        .await
        .unwrap()
        .unwrap();
    row.try_get::<i64>("", "n").unwrap()
}

backend_test! {
    async fn good_rows_land_and_each_bad_line_is_reported(app: TestApp) {
        let key = app.key(Role::Agent).await;
        let summary = import(&app, &key, "CSV", MIXED).await;
        assert_eq!(counts(&summary), [3, 0, 0, 4], "{summary:#}");
        let issues: Vec<(u64, Option<&str>, bool)> = summary["issues"].as_array().unwrap().iter()
            .map(|i| (i["line"].as_u64().unwrap(), i["field"].as_str(), i["rejected"].as_bool().unwrap()))
            .collect();
        assert_eq!(issues, [
            (3, Some("email"), false),
            (4, Some("external_id"), true),
            (5, None, true),
            (6, Some("external_id"), true),
            (7, Some("country"), false),
            (7, Some("birth_date"), false),
            (8, Some("display_name"), true),
        ], "{summary:#}");
        let message = |line: u64| summary["issues"].as_array().unwrap().iter().find(|i| i["line"] == line).unwrap()["message"].as_str().unwrap().to_owned();
        assert!(message(3).contains("not-an-email"), "{}", message(3));
        assert!(message(6).contains("line 2"), "{}", message(6));

        let lucia = by_external_id(&app, &key, "c-1").await;
        assert_eq!(lucia["displayName"], "Lucía García");
        assert_eq!(lucia["lifecycleStage"], "CUSTOMER");
        assert_eq!(lucia["birthDate"], "1990-02-28");
        assert_eq!(lucia["postalAddress"], json!({ "street": "Calle Mayor 1", "street2": null, "locality": "Madrid", "region": null, "postalCode": "28013", "country": "ES" }));
        assert_eq!(lucia["organization"]["name"], "Acme");
        assert_eq!(lucia["customAttributes"], json!({ "plan": "team" }));
        let tags: Vec<&str> = lucia["tags"].as_array().unwrap().iter().map(|t| t["name"].as_str().unwrap()).collect();
        assert_eq!(tags, ["beta", "vip"]);
        assert_eq!(lucia["contactPoints"], json!([
            { "kind": "EMAIL", "value": "lucia@example.com", "normalizedValue": "lucia@example.com", "primary": true },
            { "kind": "PHONE", "value": "+34 600 123 456", "normalizedValue": "+34600123456", "primary": true },
        ]));
        let bo = by_external_id(&app, &key, "c-2").await;
        assert_eq!(bo["contactPoints"], json!([]), "the bad e-mail was dropped, the row kept");
        assert_eq!(bo["organization"]["name"], "Acme", "one organization of that name");
        assert_eq!(bo["lifecycleStage"], "LEAD");
        let cy = by_external_id(&app, &key, "c-5").await;
        assert_eq!((cy["birthDate"].clone(), cy["postalAddress"].clone()), (Value::Null, Value::Null));
        assert_eq!(cy["customAttributes"], json!({ "plan": "free" }));
        assert_eq!(rows(&app, "organization").await, 1);

        // The same data again: nothing changes, not even the event log.
        let events = rows(&app, "event").await;
        let again = import(&app, &key, "CSV", MIXED).await;
        assert_eq!(counts(&again), [0, 0, 3, 4], "{again:#}");
        assert_eq!(again["issues"], summary["issues"]);
        assert_eq!(rows(&app, "event").await, events, "an unchanged row writes nothing");
        assert_eq!(by_external_id(&app, &key, "c-1").await, lucia);

        // JSON Lines: a changed value updates, an empty one leaves what is stored, a new
        // tag and phone are added, custom attributes merge.
        let lines = [
            json!({ "external_id": "c-1", "given_name": "Lucia", "email": "", "tags": ["vip", "press"], "seats": 12 }),
            json!({ "externalId": "c-2", "phone": "+46 70 123 45 67" }),
            json!({ "external_id": "c-7", "email": "Dee@Example.com", "birth_date": "2001-12-31" }),
        ].iter().map(Value::to_string).collect::<Vec<_>>().join("\n");
        let third = import(&app, &key, "JSON_LINES", &lines).await;
        assert_eq!(counts(&third), [1, 2, 0, 0], "{third:#}");
        let lucia = by_external_id(&app, &key, "c-1").await;
        assert_eq!(lucia["givenName"], "Lucia");
        assert_eq!(lucia["displayName"], "Lucía García", "no display_name given: the stored one stays");
        assert_eq!(lucia["customAttributes"], json!({ "plan": "team", "seats": 12 }));
        assert_eq!(lucia["tags"].as_array().unwrap().len(), 3);
        assert_eq!(by_external_id(&app, &key, "c-2").await["contactPoints"][0]["normalizedValue"], "+46701234567");
        let dee = by_external_id(&app, &key, "c-7").await;
        assert_eq!((dee["displayName"].as_str(), dee["birthDate"].as_str()), (Some("Dee@Example.com"), Some("2001-12-31")));
        assert_eq!(counts(&import(&app, &key, "JSON_LINES", &lines).await), [0, 0, 3, 0]);

        // An e-mail another customer owns stays theirs, reported.
        let taken = import(&app, &key, "CSV", "external_id,display_name,email\nc-8,Eve,lucia@example.com\n").await;
        assert_eq!(counts(&taken), [1, 0, 0, 0]);
        assert_eq!(taken["issues"][0]["field"], "email");
        assert!(taken["issues"][0]["message"].as_str().unwrap().contains("another customer"));

        // Imported customers reach the search index through their events.
        rapport::search::indexer::Indexer::new(&app.app).catch_up().await.unwrap();
        let found = app.gql(&key, "query($q: String!) { searchCustomers(query: $q) { customer { displayName } } }", json!({ "q": "Lindqvist" })).await;
        assert_eq!(found["searchCustomers"][0]["customer"]["displayName"], "Bo Lindqvist", "{found:#}");
    }
}

backend_test! {
    async fn an_import_stays_in_its_workspace(app: TestApp) {
        let key = app.key(Role::Agent).await;
        let other = app.key_in("other", Role::Admin).await;
        import(&app, &key, "CSV", MIXED).await;
        let lucia = by_external_id(&app, &key, "c-1").await;
        // The other workspace sees none of them, and importing the same ids makes its own.
        assert_eq!(by_external_id(&app, &other, "c-1").await, Value::Null);
        let theirs = import(&app, &other, "CSV", "external_id,display_name,email\nc-1,Mallory,lucia@example.com\n").await;
        assert_eq!(counts(&theirs), [1, 0, 0, 0], "{theirs:#}");
        assert_eq!(theirs["issues"], json!([]), "an e-mail of another workspace is free here");
        assert_eq!(by_external_id(&app, &key, "c-1").await, lucia, "the first workspace's customer is untouched");
        assert_eq!(by_external_id(&app, &other, "c-1").await["displayName"], "Mallory");
        // A viewer may not import; a key that is no key gets nothing.
        let viewer = app.key(Role::Viewer).await;
        let (code, _) = app.gql_error(&viewer, IMPORT, json!({ "input": { "format": "CSV", "data": MIXED } })).await;
        assert_eq!(code, "FORBIDDEN");
        // Too many rows inline is refused naming `data`.
        let many: String = std::iter::once("external_id,display_name\n".to_owned())
            .chain((0..5_001).map(|n| format!("x{n},X {n}\n")))
            .collect();
        let (code, body) = app.gql_error(&other, IMPORT, json!({ "input": { "format": "CSV", "data": many } })).await;
        assert_eq!((code.as_str(), &body["errors"][0]["extensions"]["field"]), ("BAD_USER_INPUT", &json!("data")), "{body:#}");
    }
}

/// Everything an import stores for a workspace, without ids and times: customers by
/// external id with their contact points, tags and organization.
async fn dump(app: &TestApp, slug: &str) -> Value {
    let workspace = rapport::domain::workspace::ensure(&app.app.db, slug)
        .await
        .unwrap();
    let db = &app.app.db;
    let organizations: HashMap<_, _> = entity::organization::Entity::find()
        .filter(entity::organization::Column::WorkspaceId.eq(workspace.id))
        .all(db)
        .await
        .unwrap()
        .into_iter()
        .map(|o| (o.id, o.name))
        .collect();
    let tags: HashMap<_, _> = entity::tag::Entity::find()
        .filter(entity::tag::Column::WorkspaceId.eq(workspace.id))
        .all(db)
        .await
        .unwrap()
        .into_iter()
        .map(|t| (t.id, t.name))
        .collect();
    let mut out = Vec::new();
    for customer in entity::customer::Entity::find()
        .filter(entity::customer::Column::WorkspaceId.eq(workspace.id))
        .order_by_asc(entity::customer::Column::ExternalId)
        .all(db)
        .await
        .unwrap()
    {
        let points: Vec<Value> = entity::contact_point::Entity::find()
            .filter(entity::contact_point::Column::CustomerId.eq(customer.id))
            .order_by_asc(entity::contact_point::Column::Normalized)
            .all(db)
            .await
            .unwrap()
            .into_iter()
            .map(|p| json!([p.kind.as_str(), p.value, p.normalized, p.is_primary]))
            .collect();
        let mut tag_names: Vec<String> = entity::customer_tag::Entity::find()
            .filter(entity::customer_tag::Column::CustomerId.eq(customer.id))
            .all(db)
            .await
            .unwrap()
            .into_iter()
            .map(|l| tags[&l.tag_id].clone())
            .collect();
        tag_names.sort();
        out.push(json!({
            "external_id": customer.external_id, "display_name": customer.display_name,
            "given_name": customer.given_name, "family_name": customer.family_name,
            "stage": customer.lifecycle_stage.as_str(), "custom": customer.custom,
            "organization": customer.organization_id.map(|id| organizations[&id].clone()),
            "birth_date": customer.birth_date, "street": customer.street, "street2": customer.street2,
            "locality": customer.locality, "region": customer.region, "postal_code": customer.postal_code,
            "country": customer.country, "points": points, "tags": tag_names,
        }));
    }
    json!({ "customers": out, "organizations": organizations.len(), "tags": tags.len() })
}

backend_test! {
    async fn an_import_killed_mid_way_and_run_again_equals_one_clean_run(app: TestApp) {
        let config = config_file(&app, "");
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("customers.csv");
        let mut text = String::from("external_id,given_name,family_name,email,phone,country,postal_code,organization,tags,tier\n");
        for n in 0..20 {
            let org = ["Acme", "Globex", "Initech"][n % 3];
            text.push_str(&format!("k-{n:02},Given{n},Family{n},person{n}@example.com,+34 600 000 {n:03},ES,280{n:02},{org},t{};all,gold\n", n % 4));
        }
        text.push_str("k-99,Bad,Row,not-an-email,,,,,,\n");
        std::fs::write(&file, &text).unwrap();
        let run = |slug: &str, failpoint: Option<&str>| {
            let mut command = rapport(&config);
            command.args(["import", "customers"]).arg(&file).args(["--batch-size", "6", "--workspace", slug]);
            if let Some(point) = failpoint {
                command.env("RAPPORT_FAILPOINT", point);
            }
            command.output().unwrap()
        };

        let killed = run("interrupted", Some("import.mid_batch"));
        let stderr = String::from_utf8_lossy(&killed.stderr);
        assert!(!killed.status.success());
        assert!(stderr.contains("failpoint import.mid_batch: aborting"), "{stderr}");
        let partial = dump(&app, "interrupted").await;
        assert_eq!(partial["customers"].as_array().unwrap().len(), 6, "the first batch committed, the second rolled back");

        let rerun = run("interrupted", None);
        let stdout = String::from_utf8_lossy(&rerun.stdout);
        let stderr = String::from_utf8_lossy(&rerun.stderr);
        assert_eq!(stdout.trim(), "created 15, updated 0, unchanged 6, rejected 0", "{stderr}");
        assert!(stderr.contains("line 22: email: `not-an-email` is not a valid email"), "{stderr}");

        let clean = run("clean", None);
        assert_eq!(String::from_utf8_lossy(&clean.stdout).trim(), "created 21, updated 0, unchanged 0, rejected 0");
        let once = dump(&app, "clean").await;
        assert_eq!(dump(&app, "interrupted").await, once);
        assert_eq!(once["customers"].as_array().unwrap().len(), 21);
        assert_eq!(once["organizations"], 3);

        // A rejected row makes the command fail, after the summary and the report.
        let bad = dir.path().join("bad.jsonl");
        std::fs::write(&bad, "{\"external_id\":\"j-1\",\"display_name\":\"Jo\"}\n{\"display_name\":\"No id\"}\n").unwrap();
        let output = rapport(&config).args(["import", "customers"]).arg(&bad).args(["--workspace", "clean"]).output().unwrap();
        assert!(!output.status.success());
        assert_eq!(String::from_utf8_lossy(&output.stdout).trim(), "created 1, updated 0, unchanged 0, rejected 1");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains("line 2: external_id: external_id is required"), "{stderr}");
        // Once more: nothing changes.
        let again = run("clean", None);
        assert_eq!(String::from_utf8_lossy(&again.stdout).trim(), "created 0, updated 0, unchanged 21, rejected 0");
        assert_eq!(dump(&app, "clean").await["customers"].as_array().unwrap().len(), 22);
    }
}

backend_test! {
    async fn an_erased_person_does_not_come_back_with_an_old_export(app: TestApp) {
        // The old CRM export imported, the person erased, the same export imported again:
        // their row stays out, by its external id and by their address under another.
        let owner = app.key(Role::Owner).await;
        let export = "external_id,display_name,email,phone\n\
                      e-1,Ines Varga,ines@example.com,+36 20 123 4567\n\
                      e-2,Olaf Berg,olaf@example.com,\n";
        assert_eq!(counts(&import(&app, &owner, "CSV", export).await), [2, 0, 0, 0]);
        let ines = by_external_id(&app, &owner, "e-1").await["id"].as_str().unwrap().to_owned();
        app.gql(&owner, "mutation($id: ID!) { eraseCustomer(input: { id: $id }) { erasedCustomerId } }", json!({ "id": ines })).await;

        let again = import(&app, &owner, "CSV", export).await;
        assert_eq!(counts(&again), [0, 0, 1, 1], "{again:#}");
        assert_eq!(again["issues"][0]["line"], 2, "{again:#}");
        assert_eq!(by_external_id(&app, &owner, "e-1").await, Value::Null);
        let renamed = import(&app, &owner, "CSV", "external_id,display_name,email\nnew-9,I. Varga,ines@example.com\n").await;
        assert_eq!(counts(&renamed), [0, 0, 0, 1], "her address under another id: {renamed:#}");
        assert_eq!(by_external_id(&app, &owner, "new-9").await, Value::Null);
    }
}
