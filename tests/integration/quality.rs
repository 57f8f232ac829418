//! Data quality (`dataQuality`, `rapport quality`): every figure on a small crafted
//! workspace, legacy rows written straight through the entities standing for values
//! stored before today's rules; values dropped by ingestion (batch and item by item) and
//! by an import; another workspace's rows never counted, its key reading only its own;
//! the trend of recorded days, one row a day however often it is recorded, and a serving
//! process recording each workspace's day on its own; the command line's table and JSON;
//! the validity check's chunks over a workspace larger than one.

use chrono::{Duration, TimeZone, Utc};
use connectors::{Author, InboundItem};
use rapport::domain::quality::{self, QualityReport};
use rapport::domain::{Caller, Role};
use sea_orm::{ActiveModelTrait, ActiveValue::Set, EntityTrait, PaginatorTrait};
use serde_json::{json, Value};

use crate::backend_test;
use crate::common::TestApp;
use crate::processes::{config_file, rapport};

const REPORT: &str = "{ dataQuality { customers completeness { field filled ratio } invalidValues { field count } withInvalidValues droppedValues { field count } pendingDuplicates withoutContactPoint stale staleAfterDays score computedAt } }";
const TREND: &str = "query($days: Int) { dataQuality { trend(days: $days) { day recordedAt report { customers score } } } }";
const SETTINGS: &str = "mutation($input: UpdateWorkspaceSettingsInput!) { updateWorkspaceSettings(input: $input) { workspace { settings { staleAfterDays defaultPhoneRegion } } } }";

fn customer_id(id: &str) -> entity::CustomerId {
    rapport::ids::decode("id", id).unwrap()
}

async fn customer(app: &TestApp, id: &str) -> entity::customer::ActiveModel {
    entity::customer::Entity::find_by_id(customer_id(id))
        .one(&app.app.db)
        .await
        .unwrap()
        .unwrap()
        .into()
}

/// A contact point written as a legacy row would be: as stored, never validated.
async fn legacy_point(
    app: &TestApp,
    id: &str,
    kind: rapport::domain::ContactPointKind,
    value: &str,
) {
    let stored = entity::customer::Entity::find_by_id(customer_id(id))
        .one(&app.app.db)
        .await
        .unwrap()
        .unwrap();
    entity::contact_point::ActiveModel {
        id: Set(entity::ContactPointId::new()),
        workspace_id: Set(stored.workspace_id),
        customer_id: Set(stored.id),
        kind: Set(kind),
        value: Set(value.into()),
        normalized: Set(value.to_lowercase()),
        label: Set(None),
        verified: Set(false),
        is_primary: Set(false),
        created_at: Set(Utc::now()),
    }
    .insert(&app.app.db)
    .await
    .unwrap();
}

async fn suggestion(app: &TestApp, a: &str, b: &str, status: entity::enums::DuplicateStatus) {
    let (a, b) = (customer_id(a), customer_id(b));
    let (a, b) = if a < b { (a, b) } else { (b, a) };
    let workspace_id = entity::customer::Entity::find_by_id(a)
        .one(&app.app.db)
        .await
        .unwrap()
        .unwrap()
        .workspace_id;
    entity::duplicate_suggestion::ActiveModel {
        id: Set(entity::DuplicateSuggestionId::new()),
        workspace_id: Set(workspace_id),
        customer_a: Set(a),
        customer_b: Set(b),
        score: Set(0.8),
        reasons: Set("[]".into()),
        status: Set(status),
        created_at: Set(Utc::now()),
        updated_at: Set(Utc::now()),
    }
    .insert(&app.app.db)
    .await
    .unwrap();
}

/// `[field, n]` pairs of a list of `{field, count}` (or `filled`) as a map.
fn by_field(list: &Value, key: &str) -> serde_json::Map<String, Value> {
    list.as_array()
        .unwrap()
        .iter()
        .map(|entry| {
            (
                entry["field"].as_str().unwrap().to_owned(),
                entry[key].clone(),
            )
        })
        .collect()
}

/// Four live customers and one merged away, in `acme`:
/// - ana: every field, e-mail and phone, an organization;
/// - bo: a valid e-mail, and a legacy one that is not an address;
/// - cy: a legacy given name of punctuation only and a legacy country, no contact point;
/// - dee: a legacy phone without country code (valid in the default region ES), untouched
///   for 60 days (stale after 30);
/// - eve: merged into ana, with a legacy bad e-mail: never counted.
///
/// Suggestions: ana–bo pending (counted), bo–cy dismissed, cy–eve pending (eve merged).
async fn crafted(app: &TestApp, admin: &str) -> [String; 5] {
    let settings = app
        .gql(
            admin,
            SETTINGS,
            json!({ "input": { "staleAfterDays": 30, "defaultPhoneRegion": "ES" } }),
        )
        .await;
    assert_eq!(
        settings["updateWorkspaceSettings"]["workspace"]["settings"]["staleAfterDays"],
        30
    );
    let org = app
        .gql(
            admin,
            r#"mutation { createOrganization(input: {name: "Acme"}) { organization { id } } }"#,
            json!({}),
        )
        .await["createOrganization"]["organization"]["id"]
        .clone();
    let ana = app
        .create_customer(admin, json!({
            "givenName": "Ana", "familyName": "López", "birthDate": "1990-02-28", "organizationId": org,
            "postalAddress": { "street": "Calle Mayor 1", "locality": "Madrid", "postalCode": "28013", "country": "ES" },
            "contactPoints": [ { "kind": "EMAIL", "value": "ana@example.com" }, { "kind": "PHONE", "value": "+34 600 123 456" } ],
        }))
        .await;
    let bo = app
        .create_customer(admin, json!({ "displayName": "Bo", "contactPoints": [ { "kind": "EMAIL", "value": "bo@example.com" } ] }))
        .await;
    let cy = app
        .create_customer(admin, json!({ "displayName": "Cy" }))
        .await;
    let dee = app
        .create_customer(admin, json!({ "displayName": "Dee", "givenName": "Dee" }))
        .await;
    let eve = app
        .create_customer(admin, json!({ "displayName": "Eve", "contactPoints": [ { "kind": "EMAIL", "value": "eve@example.com" } ] }))
        .await;

    use rapport::domain::ContactPointKind::{Email, Phone};
    legacy_point(app, &bo, Email, "bo at example").await;
    legacy_point(app, &dee, Phone, "600 123 457").await;
    legacy_point(app, &eve, Email, "eve at example").await;
    let mut row = customer(app, &cy).await;
    row.given_name = Set(Some("!!!".into()));
    row.country = Set(Some("Atlantis".into()));
    row.update(&app.app.db).await.unwrap();
    let long_ago = Utc::now() - Duration::days(60);
    let mut row = customer(app, &dee).await;
    row.last_seen_at = Set(long_ago);
    row.updated_at = Set(long_ago);
    row.update(&app.app.db).await.unwrap();
    let mut row = customer(app, &eve).await;
    row.merged_into = Set(Some(customer_id(&ana)));
    row.given_name = Set(Some("???".into()));
    row.update(&app.app.db).await.unwrap();

    use entity::enums::DuplicateStatus::{Dismissed, Pending};
    suggestion(app, &ana, &bo, Pending).await;
    suggestion(app, &bo, &cy, Dismissed).await;
    suggestion(app, &cy, &eve, Pending).await;
    [ana, bo, cy, dee, eve]
}

backend_test! {
    async fn every_figure_of_a_crafted_workspace_is_counted(app: TestApp) {
        let admin = app.key(Role::Admin).await;
        crafted(&app, &admin).await;
        // Any role that reads customers reads the report.
        let viewer = app.key(Role::Viewer).await;
        let report = app.gql(&viewer, REPORT, json!({})).await["dataQuality"].clone();

        assert_eq!(report["customers"], 4);
        let filled = by_field(&report["completeness"], "filled");
        let expected = json!({
            "GIVEN_NAME": 3, "FAMILY_NAME": 1, "BIRTH_DATE": 1, "STREET": 1, "LOCALITY": 1,
            "POSTAL_CODE": 1, "COUNTRY": 2, "ORGANIZATION": 1, "EMAIL": 2, "PHONE": 2,
        });
        assert_eq!(Value::Object(filled), expected);
        let ratios = by_field(&report["completeness"], "ratio");
        assert_eq!(ratios["GIVEN_NAME"], 0.75);
        assert_eq!(ratios["EMAIL"], 0.5);

        let invalid = by_field(&report["invalidValues"], "count");
        assert_eq!(invalid.len(), 13, "every checked field is listed: {invalid:?}");
        let nonzero: serde_json::Map<String, Value> =
            invalid.into_iter().filter(|(_, count)| *count != 0).collect();
        assert_eq!(Value::Object(nonzero), json!({ "GIVEN_NAME": 1, "COUNTRY": 1, "EMAIL": 1 }),
            "cy's name and country, bo's legacy e-mail; dee's phone reads in ES; eve is merged");
        assert_eq!(report["withInvalidValues"], 2);
        assert_eq!(report["droppedValues"], json!([]));
        assert_eq!(report["pendingDuplicates"], 1);
        assert_eq!(report["withoutContactPoint"], 1);
        assert_eq!(report["stale"], 1);
        assert_eq!(report["staleAfterDays"], 30);
        // completeness 15/40, validity 2/4, reachability, freshness, uniqueness 3/4 each.
        assert_eq!(report["score"], 0.625);

        // Without the default region dee's phone is refused too.
        app.gql(&admin, SETTINGS, json!({ "input": { "defaultPhoneRegion": null, "staleAfterDays": null } })).await;
        let report = app.gql(&viewer, REPORT, json!({})).await["dataQuality"].clone();
        assert_eq!(by_field(&report["invalidValues"], "count")["PHONE"], 1);
        assert_eq!(report["withInvalidValues"], 3);
        assert_eq!(report["staleAfterDays"], 365);
        assert_eq!(report["stale"], 0, "60 days is not stale under the default 365");

        let (code, body) = app
            .gql_error(&admin, SETTINGS, json!({ "input": { "staleAfterDays": 0 } }))
            .await;
        assert_eq!(code, "BAD_USER_INPUT", "{body}");
    }
}

fn item(id: &str, who: &str, email: Option<&str>, phone: Option<&str>) -> InboundItem {
    InboundItem {
        external_id: id.into(),
        author: Author {
            platform_id: format!("acct:{who}"),
            display_name: Some(who.into()),
            email: email.map(str::to_owned),
            phone: phone.map(str::to_owned),
            ..Author::default()
        },
        outbound: false,
        kind: "mention".into(),
        subject: None,
        text: format!("message {id}"),
        html: None,
        url: None,
        language: None,
        occurred_at: Utc.with_ymd_and_hms(2026, 11, 1, 12, 0, 0).unwrap(),
        thread_key: None,
        in_reply_to: None,
        raw: json!({ "id": id }),
    }
}

backend_test! {
    async fn values_dropped_by_ingestion_and_imports_are_counted_per_field(app: TestApp) {
        let admin = app.key(Role::Admin).await;
        let input = json!({ "channel": "WEBHOOK", "name": "forms", "config": { "secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw" } });
        let data = app
            .gql(&admin, "mutation($input: CreateSourceInput!) { createSource(input: $input) { source { id } } }", json!({ "input": input }))
            .await;
        let source_id: entity::SourceId =
            rapport::ids::decode("id", data["createSource"]["source"]["id"].as_str().unwrap()).unwrap();
        let source = rapport::domain::source::for_webhook(&app.app.db, source_id).await.unwrap();

        // A batch: one bad e-mail and one bad phone; item by item: one more bad e-mail.
        rapport::ingest::ingest(&app.app.db, &source, &[
            item("i1", "ann", Some("not-an-email"), Some("12a45")),
            item("i2", "ben", Some("ben@example.com"), None),
        ], Some("c1"), None).await.unwrap();
        rapport::ingest::ingest_item_by_item(&app.app.db, &source, &[item("i3", "cat", Some("cat@@example"), None)])
            .await
            .unwrap();
        // A replayed item stores nothing and drops nothing again.
        rapport::ingest::ingest(&app.app.db, &source, &[item("i1", "ann", Some("not-an-email"), Some("12a45"))], Some("c2"), None)
            .await
            .unwrap();
        // An import: a birth date in the future and an unknown country are dropped.
        let summary = app
            .gql(&admin, "mutation($input: ImportCustomersInput!) { importCustomers(input: $input) { created } }",
                json!({ "input": { "format": "CSV", "data": "external_id,given_name,birth_date,country\nk-1,Dan,2999-01-01,Atlantis\n" } }))
            .await;
        assert_eq!(summary["importCustomers"]["created"], 1);

        let report = app.gql(&admin, REPORT, json!({})).await["dataQuality"].clone();
        assert_eq!(report["customers"], 4);
        assert_eq!(report["droppedValues"], json!([
            { "field": "BIRTH_DATE", "count": 1 },
            { "field": "COUNTRY", "count": 1 },
            { "field": "EMAIL", "count": 2 },
            { "field": "PHONE", "count": 1 },
        ]));
        assert_eq!(report["withoutContactPoint"], 3, "only ben kept an e-mail");
        let rows = entity::dropped_value::Entity::find().all(&app.app.db).await.unwrap();
        let mut origins: Vec<String> = rows.iter().map(|row| row.origin.clone()).collect();
        origins.sort();
        origins.dedup();
        assert_eq!(origins, vec!["import".to_owned(), rapport::ids::encode(source_id)]);
    }
}

backend_test! {
    async fn another_workspace_is_never_counted_and_its_key_reads_only_its_own(app: TestApp) {
        let admin = app.key(Role::Admin).await;
        crafted(&app, &admin).await;
        let other = app.key_in("other", Role::Admin).await;
        let mut their = app.create_customer(&other, json!({ "displayName": "Zed" })).await;
        let mut row = customer(&app, &their).await;
        row.given_name = Set(Some("###".into()));
        row.update(&app.app.db).await.unwrap();
        their = app.create_customer(&other, json!({ "displayName": "Yan", "contactPoints": [ { "kind": "EMAIL", "value": "yan@example.com" } ] })).await;
        legacy_point(&app, &their, rapport::domain::ContactPointKind::Website, "not a site").await;

        let ours = app.gql(&admin, REPORT, json!({})).await["dataQuality"].clone();
        assert_eq!(ours["customers"], 4);
        assert_eq!(ours["withInvalidValues"], 2);
        assert_eq!(by_field(&ours["invalidValues"], "count")["WEBSITE"], 0);
        assert_eq!(ours["pendingDuplicates"], 1);

        let theirs = app.gql(&other, REPORT, json!({})).await["dataQuality"].clone();
        assert_eq!(theirs["customers"], 2);
        assert_eq!(theirs["withoutContactPoint"], 1);
        assert_eq!(theirs["pendingDuplicates"], 0);
        assert_eq!(theirs["stale"], 0);
        assert_eq!(theirs["staleAfterDays"], 365, "acme's setting is acme's");
        let invalid = by_field(&theirs["invalidValues"], "count");
        assert_eq!((invalid["GIVEN_NAME"].clone(), invalid["WEBSITE"].clone(), invalid["EMAIL"].clone()), (json!(1), json!(1), json!(0)));
        assert_eq!(by_field(&theirs["completeness"], "filled")["COUNTRY"], 0);

        // Acme's recorded days are not theirs either.
        let acme = rapport::domain::workspace::find(&app.app.db, "acme").await.unwrap();
        let caller = Caller::owner_without_key(acme.id, "test");
        let report = quality::report(&app.app.db, &caller, rapport::domain::now()).await.unwrap();
        quality::record(&app.app.db, &caller, Utc::now().date_naive(), &report).await.unwrap();
        let trend = app.gql(&other, TREND, json!({})).await;
        assert_eq!(trend["dataQuality"]["trend"], json!([]));
        assert_eq!(app.gql(&admin, TREND, json!({})).await["dataQuality"]["trend"].as_array().unwrap().len(), 1);
    }
}

backend_test! {
    async fn the_trend_has_one_report_a_day_however_often_it_is_recorded(app: TestApp) {
        let admin = app.key(Role::Admin).await;
        crafted(&app, &admin).await;
        let acme = rapport::domain::workspace::find(&app.app.db, "acme").await.unwrap();
        let caller = Caller::owner_without_key(acme.id, "test");
        let today = Utc::now().date_naive();
        let three_days_ago = today - Duration::days(3);
        let past = QualityReport { customers: 2, score: 0.5, ..QualityReport::default() };
        quality::record(&app.app.db, &caller, three_days_ago, &past).await.unwrap();
        // Recording that day again replaces its report.
        let past = QualityReport { customers: 3, score: 0.55, ..past };
        quality::record(&app.app.db, &caller, three_days_ago, &past).await.unwrap();

        // The server's daily task records today's report of each workspace once.
        assert_eq!(quality::record_due(&app.app.db, Utc::now(), 100).await.unwrap(), 1);
        assert_eq!(quality::record_due(&app.app.db, Utc::now(), 100).await.unwrap(), 0);

        let trend = app.gql(&admin, TREND, json!({ "days": 7 })).await["dataQuality"]["trend"].clone();
        let days: Vec<&str> = trend.as_array().unwrap().iter().map(|s| s["day"].as_str().unwrap()).collect();
        assert_eq!(days, vec![three_days_ago.to_string(), today.to_string()]);
        assert_eq!(trend[0]["report"], json!({ "customers": 3, "score": 0.55 }));
        assert_eq!(trend[1]["report"], json!({ "customers": 4, "score": 0.625 }));
        // The default is 30 days; one day is today's alone.
        assert_eq!(app.gql(&admin, TREND, json!({})).await["dataQuality"]["trend"].as_array().unwrap().len(), 2);
        let trend = app.gql(&admin, TREND, json!({ "days": 1 })).await["dataQuality"]["trend"].clone();
        assert_eq!(trend.as_array().unwrap().len(), 1);
        assert_eq!(trend[0]["day"], today.to_string());

        // `rapport quality` records today's report again: still one row for today.
        let config = config_file(&app, "");
        let output = rapport(&config).args(["quality", "--workspace", "acme"]).output().unwrap();
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        assert_eq!(entity::quality_snapshot::Entity::find().count(&app.app.db).await.unwrap(), 2);

        for days in [0, 367, -1] {
            let (code, body) = app.gql_error(&admin, TREND, json!({ "days": days })).await;
            assert_eq!(code, "BAD_USER_INPUT", "{body}");
            assert_eq!(body["errors"][0]["extensions"]["field"], "days", "{body}");
        }
    }
}

backend_test! {
    async fn the_command_line_prints_the_report_as_a_table_or_json(app: TestApp) {
        let admin = app.key(Role::Admin).await;
        crafted(&app, &admin).await;
        let config = config_file(&app, "");

        let output = rapport(&config).args(["quality", "--workspace", "acme", "--no-record"]).output().unwrap();
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        let table = String::from_utf8(output.stdout).unwrap();
        // What follows `name` on each line that starts with it (a field has a line in the
        // completeness table and one in the invalid/dropped table).
        let lines = |name: &str| -> Vec<String> {
            table
                .lines()
                .filter(|line| line.starts_with(&format!("{name} ")))
                .map(|line| {
                    line.split_whitespace()
                        .skip(name.split_whitespace().count())
                        .collect::<Vec<_>>()
                        .join(" ")
                })
                .collect()
        };
        let line = |name: &str| {
            let found = lines(name);
            assert_eq!(found.len(), 1, "one `{name}` line in\n{table}");
            found[0].clone()
        };
        assert!(table.starts_with("data quality of acme at "), "{table}");
        assert_eq!(line("customers"), "4");
        assert_eq!(line("score"), "0.625");
        assert_eq!(line("pending duplicates"), "1");
        assert_eq!(line("without contact point"), "1");
        assert_eq!(line("stale (30 days)"), "1");
        assert_eq!(lines("given_name"), ["3 75.0%", "1 0"], "{table}");
        assert_eq!(lines("website"), ["0 0"], "{table}");
        assert_eq!(entity::quality_snapshot::Entity::find().count(&app.app.db).await.unwrap(), 0, "--no-record records nothing");

        // By id, as JSON: the same report, recorded as today's.
        let acme = rapport::domain::workspace::find(&app.app.db, "acme").await.unwrap();
        let output = rapport(&config)
            .args(["quality", "--workspace", &rapport::ids::encode(acme.id), "--json"])
            .output()
            .unwrap();
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        let printed: QualityReport = serde_json::from_slice(&output.stdout).unwrap();
        assert_eq!((printed.customers, printed.stale, printed.score), (4, 1, 0.625));
        let snapshot = entity::quality_snapshot::Entity::find().one(&app.app.db).await.unwrap().unwrap();
        assert_eq!(snapshot.day, Utc::now().date_naive());
        assert_eq!(serde_json::from_value::<QualityReport>(snapshot.report).unwrap(), printed);

        let output = rapport(&config).args(["quality", "--workspace", "nowhere"]).output().unwrap();
        assert!(!output.status.success());
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains("nowhere"), "{stderr}");
        assert!(rapport::domain::workspace::find(&app.app.db, "nowhere").await.is_err(), "nothing was created");
    }
}

backend_test! {
    async fn the_validity_check_reads_a_large_workspace_in_chunks(app: TestApp) {
        let admin = app.key(Role::Admin).await;
        let acme = rapport::domain::workspace::find(&app.app.db, "acme").await.unwrap();
        // 2,500 customers, most of them sharing a display name (the chunks' keyset must
        // not skip or repeat equal names), every 100th with a legacy given name; each with
        // an e-mail, every 250th of them legacy.
        let now = Utc::now();
        let mut customers = Vec::new();
        let mut points = Vec::new();
        for n in 0..2_500 {
            let id = entity::CustomerId::new();
            customers.push(entity::customer::ActiveModel {
                id: Set(id),
                workspace_id: Set(acme.id),
                display_name: Set(if n % 3 == 0 { format!("Person {n}") } else { "Same Name".into() }),
                given_name: Set((n % 100 == 0).then(|| "???".to_owned())),
                family_name: Set(None),
                lifecycle_stage: Set(entity::enums::LifecycleStage::Subscriber),
                external_id: Set(None),
                organization_id: Set(None),
                custom: Set(json!({})),
                merged_into: Set(None),
                first_seen_at: Set(now),
                last_seen_at: Set(now),
                created_at: Set(now),
                updated_at: Set(now),
                birth_date: Set(None),
                street: Set(None),
                street2: Set(None),
                locality: Set(None),
                region: Set(None),
                postal_code: Set(None),
                country: Set(None),
            });
            let value = if n % 250 == 0 { format!("person{n} at example") } else { format!("person{n}@example.com") };
            points.push(entity::contact_point::ActiveModel {
                id: Set(entity::ContactPointId::new()),
                workspace_id: Set(acme.id),
                customer_id: Set(id),
                kind: Set(rapport::domain::ContactPointKind::Email),
                normalized: Set(value.clone()),
                value: Set(value),
                label: Set(None),
                verified: Set(false),
                is_primary: Set(true),
                created_at: Set(now),
            });
        }
        for chunk in customers.chunks(400) {
            entity::customer::Entity::insert_many(chunk.to_vec()).exec(&app.app.db).await.unwrap();
        }
        for chunk in points.chunks(400) {
            entity::contact_point::Entity::insert_many(chunk.to_vec()).exec(&app.app.db).await.unwrap();
        }
        let report = app.gql(&admin, REPORT, json!({})).await["dataQuality"].clone();
        assert_eq!(report["customers"], 2_500);
        let invalid = by_field(&report["invalidValues"], "count");
        assert_eq!((invalid["GIVEN_NAME"].clone(), invalid["EMAIL"].clone()), (json!(25), json!(10)));
        // Customers 0, 500, 1000, 1500 and 2000 have both.
        assert_eq!(report["withInvalidValues"], 25 + 10 - 5);
        assert_eq!(by_field(&report["completeness"], "filled")["EMAIL"], 2_500);
    }
}

backend_test! {
    async fn a_serving_process_records_each_workspace_s_report_of_the_day(app: TestApp) {
        let admin = app.key(Role::Admin).await;
        crafted(&app, &admin).await;
        app.key_in("other", Role::Viewer).await;
        let mut config = (*app.app.config).clone();
        config.addr = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
        config.sync.enabled = false;
        config.indexer = false;
        let server = rapport::server::Server::start(config, rapport::server::Options::default())
            .await
            .unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let running = tokio::spawn(server.run(async move {
            let _ = stopped.await;
        }));
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        let rows = loop {
            let rows = entity::quality_snapshot::Entity::find().all(&app.app.db).await.unwrap();
            if rows.len() == 2 || std::time::Instant::now() > deadline {
                break rows;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        };
        stop.send(()).unwrap();
        running.await.unwrap().expect("the server and its tasks stop cleanly");
        assert_eq!(rows.len(), 2, "one report for acme, one for other: {rows:?}");
        assert!(rows.iter().all(|row| row.day == Utc::now().date_naive()));
        let trend = app.gql(&admin, TREND, json!({})).await["dataQuality"]["trend"].clone();
        assert_eq!(trend[0]["report"], json!({ "customers": 4, "score": 0.625 }));
    }
}
