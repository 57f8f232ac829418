//! Duplicate suggestions from profile links: one person on two platforms whose profile
//! on one links the other (a profile field with a GitHub address, a website in a bio, a
//! customer's e-mail address) becomes a suggestion with that reason, never a merge; in
//! both orders of arrival, through the set-based writer and the one-by-one path; a
//! dismissed pair stays dismissed; another workspace sees and changes nothing.

use chrono::TimeZone;
use connectors::{Author, InboundItem, ProfileLink};
use rapport::domain::Role;
use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter};
use serde_json::{json, Value};

use crate::backend_test;
use crate::common::TestApp;

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

const LIST: &str = "query($min: Float) { duplicateSuggestions(minScore: $min, first: 10) { totalCount edges { cursor node { id score status reasons { field kind detail score } a { id displayName } b { id displayName } } } } }";

async fn source(app: &TestApp, key: &str) -> entity::source::Model {
    let input = json!({ "channel": "WEBHOOK", "name": "forms", "config": { "secret": SECRET } });
    let data = app
        .gql(key, "mutation($input: CreateSourceInput!) { createSource(input: $input) { source { id } } }", json!({ "input": input }))
        .await;
    let id: entity::SourceId =
        rapport::ids::decode("id", data["createSource"]["source"]["id"].as_str().unwrap()).unwrap();
    rapport::domain::source::for_webhook(&app.app.db, id)
        .await
        .unwrap()
}

fn item(id: &str, who: &str, profile: Option<&str>, links: &[(&str, &str, bool)]) -> InboundItem {
    InboundItem {
        external_id: id.into(),
        author: Author {
            platform_id: format!("acct:{who}"),
            handle: Some(format!("@{who}")),
            display_name: Some(who.into()),
            profile_url: profile.map(str::to_owned),
            links: links
                .iter()
                .map(|(url, label, verified)| ProfileLink {
                    url: (*url).into(),
                    label: Some((*label).into()),
                    verified: *verified,
                })
                .collect(),
            ..Author::default()
        },
        outbound: false,
        kind: "mention".into(),
        subject: None,
        text: format!("message {id} from {who}"),
        html: None,
        url: None,
        language: None,
        occurred_at: chrono::Utc.with_ymd_and_hms(2026, 11, 1, 12, 0, 0).unwrap(),
        thread_key: None,
        in_reply_to: None,
        raw: json!({ "id": id }),
    }
}

fn names(edge: &Value) -> Vec<String> {
    let node = &edge["node"];
    let mut names = vec![
        node["a"]["displayName"].as_str().unwrap().to_owned(),
        node["b"]["displayName"].as_str().unwrap().to_owned(),
    ];
    names.sort();
    names
}

backend_test! {
    async fn a_profile_linking_another_customers_account_site_or_address_is_a_suggestion_not_a_merge(app: TestApp) {
        let admin = app.key(Role::Admin).await;
        let source = source(&app, &admin).await;

        // One batch: ana's GitHub-like account, and her other account whose verified
        // profile field links it (written differently: case, trailing slash).
        let batch = [
            item("1", "ana-gh", Some("https://github.com/ana-dev"), &[]),
            item("2", "ana-social", Some("https://social.example/@ana"), &[("https://GitHub.com/Ana-Dev/", "GitHub", true)]),
            item("3", "noise", None, &[("https://github.com/someone-else", "GitHub", false), ("not a link", "Misc", false)]),
        ];
        let report = rapport::ingest::ingest(&app.app.db, &source, &batch, Some("c1"), None).await.unwrap();
        assert_eq!(report.new_customers, 3, "a suggestion, never a merge");
        let data = app.gql(&admin, LIST, json!({})).await;
        let list = &data["duplicateSuggestions"];
        assert_eq!(list["totalCount"], 1, "{data:#}");
        let first = &list["edges"][0];
        assert_eq!(names(first), ["ana-gh", "ana-social"]);
        assert_eq!(first["node"]["score"], 0.95, "a verified link");
        assert_eq!(first["node"]["status"], "PENDING");
        let reason = &first["node"]["reasons"][0];
        assert_eq!((&reason["field"], &reason["kind"]), (&json!("identity"), &json!("profile_link")));
        let detail = reason["detail"].as_str().unwrap();
        assert!(detail.contains("https://GitHub.com/Ana-Dev/") && detail.contains("verified") && detail.contains("@ana-gh") && detail.contains("GitHub"), "{detail}");

        // The other order, one by one: bo's bio links a site nobody has yet; then an
        // account whose profile is that site arrives, and a customer is given bo's
        // e-mail address that his profile also names.
        let report = rapport::ingest::ingest_item_by_item(&app.app.db, &source, &[item("4", "bo", None, &[("https://bo.example.com/", "bio", false), ("bo@example.com", "Contact", false)])]).await.unwrap();
        assert_eq!(report.new_customers, 1);
        assert_eq!(app.gql(&admin, LIST, json!({})).await["duplicateSuggestions"]["totalCount"], 1, "nothing names bo's links yet");
        rapport::ingest::ingest(&app.app.db, &source, &[item("5", "bo-site", Some("http://bo.example.com"), &[])], Some("c2"), None).await.unwrap();
        let robert = app.create_customer(&admin, json!({ "displayName": "Robert", "contactPoints": [{ "kind": "EMAIL", "value": "Bo@Example.com" }] })).await;
        let data = app.gql(&admin, LIST, json!({})).await;
        let edges = data["duplicateSuggestions"]["edges"].as_array().unwrap().clone();
        assert_eq!(edges.len(), 3, "{data:#}");
        let pairs: Vec<(Vec<String>, f64)> = edges.iter().map(|edge| (names(edge), edge["node"]["score"].as_f64().unwrap())).collect();
        assert_eq!(pairs, [
            (vec!["ana-gh".to_owned(), "ana-social".to_owned()], 0.95),
            (vec!["Robert".to_owned(), "bo".to_owned()], 0.85),
            (vec!["bo".to_owned(), "bo-site".to_owned()], 0.8),
        ], "highest score first; a profile field counts more than a bio");
        // A threshold, and paging by cursor.
        assert_eq!(app.gql(&admin, LIST, json!({ "min": 0.9 })).await["duplicateSuggestions"]["totalCount"], 1);
        let after = edges[0]["cursor"].as_str().unwrap();
        let data = app.gql(&admin, "query($after: String) { duplicateSuggestions(first: 1, after: $after) { edges { node { score } } pageInfo { hasNextPage } } }", json!({ "after": after })).await;
        assert_eq!(data["duplicateSuggestions"]["edges"][0]["node"]["score"], 0.85);
        assert_eq!(data["duplicateSuggestions"]["pageInfo"]["hasNextPage"], true);
        // On the customer, through the loader.
        let data = app.gql(&admin, "query($id: ID!) { customer(id: $id) { duplicateSuggestions { score a { id } b { id } } } }", json!({ "id": robert })).await;
        let of_robert = data["customer"]["duplicateSuggestions"].as_array().unwrap();
        assert_eq!(of_robert.len(), 1, "{data:#}");
        assert!(of_robert[0]["a"]["id"] == json!(robert) || of_robert[0]["b"]["id"] == json!(robert));
        assert_eq!(entity::customer::Entity::find().count(&app.app.db).await.unwrap(), 6, "nothing was merged");

        // Dismissed: out of the lists, and new evidence for the same pair does not bring
        // it back: ana's profile now links a site, and ana-gh's customer is given it.
        let ana_pair = edges[0]["node"]["id"].as_str().unwrap().to_owned();
        let dismiss = "mutation($id: ID!) { dismissDuplicate(input: { id: $id }) { duplicateSuggestion { id status } } }";
        let viewer = app.key(Role::Viewer).await;
        let (code, _) = app.gql_error(&viewer, dismiss, json!({ "id": ana_pair })).await;
        assert_eq!(code, "FORBIDDEN");
        let data = app.gql(&admin, dismiss, json!({ "id": ana_pair })).await;
        assert_eq!(data["dismissDuplicate"]["duplicateSuggestion"]["status"], "DISMISSED");
        let ana_gh = edges[0]["node"]["a"]["id"].as_str().filter(|_| edges[0]["node"]["a"]["displayName"] == "ana-gh").or(edges[0]["node"]["b"]["id"].as_str()).unwrap().to_owned();
        app.gql(&admin, "mutation($input: AddContactPointInput!) { addContactPoint(input: $input) { contactPoint { id } } }", json!({ "input": { "customerId": ana_gh, "contactPoint": { "kind": "WEBSITE", "value": "https://www.ana-site.example/" } } })).await;
        rapport::ingest::ingest(&app.app.db, &source, &[item("6", "ana-social", None, &[("https://ana-site.example", "Site", false)])], Some("c3"), None).await.unwrap();
        let pairs = entity::duplicate_suggestion::Entity::find().all(&app.app.db).await.unwrap();
        let ana_row = pairs.iter().find(|row| rapport::ids::encode(row.id) == ana_pair).unwrap();
        assert!(rapport::domain::duplicate::reasons(ana_row).len() == 1, "the dismissed row was left as it was");
        let data = app.gql(&admin, LIST, json!({})).await;
        assert_eq!(data["duplicateSuggestions"]["totalCount"], 2, "{data:#}");
        let status: Vec<String> = entity::duplicate_suggestion::Entity::find().all(&app.app.db).await.unwrap().into_iter().map(|row| row.status.as_str().to_owned()).collect();
        assert_eq!(status.iter().filter(|s| *s == "dismissed").count(), 1);

        // A Bluesky handle on the domain of another customer's website, in both orders:
        // the handle arrives (set-based) after the site; the site is added after a handle
        // arrived one by one.
        let bluesky = entity::source::Model { channel: connectors::Channel::Bluesky, ..source.clone() };
        let bsky = |id: &str, handle: &str| InboundItem {
            author: Author { platform_id: format!("did:plc:{handle}"), handle: Some(format!("@{handle}")), display_name: Some(handle.into()), ..Author::default() },
            ..item(id, handle, None, &[])
        };
        let cy = app.create_customer(&admin, json!({ "displayName": "Cy", "contactPoints": [{ "kind": "WEBSITE", "value": "https://www.cy.example.org/" }] })).await;
        rapport::ingest::ingest(&app.app.db, &bluesky, &[bsky("b1", "cy.example.org")], Some("c4"), None).await.unwrap();
        let dee = app.create_customer(&admin, json!({ "displayName": "Dee", "contactPoints": [{ "kind": "WEBSITE", "value": "dee.example.net" }] })).await;
        rapport::ingest::ingest_item_by_item(&app.app.db, &bluesky, &[bsky("b2", "dee.example.net")]).await.unwrap();
        rapport::ingest::ingest_item_by_item(&app.app.db, &bluesky, &[bsky("b3", "eve.example.com")]).await.unwrap();
        app.create_customer(&admin, json!({ "displayName": "Eve", "contactPoints": [{ "kind": "WEBSITE", "value": "https://eve.example.com" }] })).await;
        let data = app.gql(&admin, "query($min: Float) { duplicateSuggestions(minScore: $min, first: 10) { edges { node { score reasons { kind detail } a { id } b { id } } } } }", json!({ "min": 0.89 })).await;
        let handles: Vec<&Value> = data["duplicateSuggestions"]["edges"].as_array().unwrap().iter().filter(|e| e["node"]["reasons"][0]["kind"] == "profile_address").collect();
        assert_eq!(handles.len(), 3, "{data:#}");
        for edge in &handles {
            assert_eq!(edge["node"]["score"], 0.9, "a handle on the domain: Bluesky checked it");
        }
        for customer in [&cy, &dee] {
            assert!(handles.iter().any(|e| e["node"]["a"]["id"] == json!(customer) || e["node"]["b"]["id"] == json!(customer)), "{customer}: {data:#}");
        }
        assert!(handles.iter().any(|e| e["node"]["reasons"][0]["detail"].as_str().unwrap().contains("@cy.example.org")));

        // A site linked by many profiles (an employer's) suggests no one.
        let staff: Vec<InboundItem> = (0..6).map(|n| item(&format!("s{n}"), &format!("staff{n}"), None, &[("https://employer.example", "Work", false)])).collect();
        rapport::ingest::ingest(&app.app.db, &source, &staff, Some("c5"), None).await.unwrap();
        let before = app.gql(&admin, LIST, json!({ "min": 0.0 })).await["duplicateSuggestions"]["totalCount"].clone();
        app.create_customer(&admin, json!({ "displayName": "Employer", "contactPoints": [{ "kind": "WEBSITE", "value": "https://employer.example" }] })).await;
        assert_eq!(app.gql(&admin, LIST, json!({ "min": 0.0 })).await["duplicateSuggestions"]["totalCount"], before);

        // Another workspace's profiles linking this one's records suggest nothing in
        // either workspace.
        let stranger = app.key_in("globex", Role::Admin).await;
        let globex = rapport::domain::workspace::ensure(&app.app.db, "globex").await.unwrap();
        let theirs = self::source(&app, &stranger).await;
        let counted = app.gql(&admin, LIST, json!({ "min": 0.0 })).await["duplicateSuggestions"]["totalCount"].clone();
        let report = rapport::ingest::ingest_item_by_item(&app.app.db, &theirs, &[item("g1", "spy", None, &[("https://github.com/ana-dev", "GitHub", true), ("bo@example.com", "Mail", false)])]).await.unwrap();
        assert_eq!(report.new_customers, 1);
        assert_eq!(entity::duplicate_suggestion::Entity::find().filter(entity::duplicate_suggestion::Column::WorkspaceId.eq(globex.id)).count(&app.app.db).await.unwrap(), 0);
        assert_eq!(app.gql(&admin, LIST, json!({ "min": 0.0 })).await["duplicateSuggestions"]["totalCount"], counted);

        // Another workspace sees none of it and cannot dismiss it.
        assert_eq!(app.gql(&stranger, LIST, json!({ "min": 0.0 })).await["duplicateSuggestions"]["totalCount"], 0);
        let other = edges[1]["node"]["id"].as_str().unwrap();
        let (code, _) = app.gql_error(&stranger, dismiss, json!({ "id": other })).await;
        assert_eq!(code, "NOT_FOUND");
        assert_eq!(app.gql(&admin, LIST, json!({})).await["duplicateSuggestions"]["totalCount"], 5);
        let (code, _) = app.gql_error(&admin, LIST, json!({ "min": 1.5 })).await;
        assert_eq!(code, "BAD_USER_INPUT");
    }
}

/// An identity of `customer` as ingestion stores it, with its profile key.
fn identity_row(
    workspace: entity::WorkspaceId,
    customer: entity::CustomerId,
    channel: connectors::Channel,
    platform_id: &str,
    profile: &str,
) -> entity::identity::Model {
    let now = chrono::Utc::now();
    entity::identity::Model {
        id: entity::IdentityId::new(),
        workspace_id: workspace,
        customer_id: customer,
        channel,
        platform_id: platform_id.into(),
        handle: Some(platform_id.into()),
        display_name: None,
        profile_url: Some(profile.into()),
        avatar_url: None,
        profile_key: rapport::domain::duplicate::profile_key(
            channel,
            platform_id,
            None,
            Some(profile),
        ),
        created_at: now,
        updated_at: now,
    }
}

backend_test! {
    async fn two_writers_storing_the_two_sides_of_a_pair_at_once_still_suggest_it(app: TestApp) {
        use rapport::domain::duplicate::{after_authors, identity_target, Linked};
        use sea_orm::{ActiveModelTrait, TransactionTrait};
        if app.backend != crate::common::Backend::Postgres {
            eprintln!("skipped on SQLite: it has one writer at a time, so no two writers interleave");
            return;
        }
        let admin = app.key(Role::Admin).await;
        let workspace = rapport::domain::workspace::ensure(&app.app.db, "acme").await.unwrap();
        let decode = |id: String| rapport::ids::decode::<entity::CustomerId>("id", &id).unwrap();
        let ana = decode(app.create_customer(&admin, json!({ "displayName": "Ana" })).await);
        let ana_too = decode(app.create_customer(&admin, json!({ "displayName": "Ana L." })).await);

        // The first writer stores Ana's GitHub account and looks for links naming it (none
        // committed), and does not commit yet.
        let first = app.app.db.begin().await.unwrap();
        let github = identity_row(workspace.id, ana, connectors::Channel::Github, "ana-dev", "https://github.com/ana-dev");
        entity::identity::ActiveModel::from(github.clone()).insert(&first).await.unwrap();
        let target: Vec<_> = identity_target(&github).into_iter().collect();
        after_authors(&first, workspace.id, &[], &target, chrono::Utc::now()).await.unwrap();

        // The second stores her Mastodon account, whose profile links the GitHub one.
        let db = app.app.db.clone();
        let workspace_id = workspace.id;
        let second = tokio::spawn(async move {
            let txn = db.begin().await.unwrap();
            let mastodon = identity_row(workspace_id, ana_too, connectors::Channel::Mastodon, "https://social.example/users/ana", "https://social.example/@ana");
            entity::identity::ActiveModel::from(mastodon.clone()).insert(&txn).await.unwrap();
            let links = [ProfileLink { url: "https://github.com/ana-dev".into(), label: Some("GitHub".into()), verified: false }];
            let linked = [Linked { identity_id: mastodon.id, customer_id: ana_too, channel: connectors::Channel::Mastodon, links: &links }];
            after_authors(&txn, workspace_id, &linked, &[], chrono::Utc::now()).await.unwrap();
            txn.commit().await.unwrap();
        });
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        assert!(!second.is_finished(), "the second writer waits for the first, which holds the key");
        first.commit().await.unwrap();
        second.await.unwrap();

        let pairs = entity::duplicate_suggestion::Entity::find().all(&app.app.db).await.unwrap();
        assert_eq!(pairs.len(), 1, "{pairs:?}");
        assert_eq!((pairs[0].customer_a.min(pairs[0].customer_b), pairs[0].customer_a.max(pairs[0].customer_b)), (ana.min(ana_too), ana.max(ana_too)));
    }
}
