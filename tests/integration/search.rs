//! Search: one contract suite run against every backend (the embedded one always,
//! Meilisearch when `RAPPORT_MEILI_URL` is set, on uniquely named indexes deleted after),
//! the indexer (restart mid-backlog, backend down then up, 50,000 events), and search
//! through GraphQL on SQLite and PostgreSQL.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{TimeZone, Utc};
use entity::{ConversationId, CustomerId, InteractionId, WorkspaceId};
use rapport::domain::Role;
use rapport::search::{
    CustomerDoc, Hits, IndexName, InteractionDoc, InteractionQuery, Rebuild, SearchFilter,
    SearchIndex, SearchSort,
};
use serde_json::json;
use uuid::Uuid;

use crate::backend_test;
use crate::common::TestApp;

/// Rebuilds both indexes of `index` from `app`'s database (as `rapport reindex` does).
async fn rebuild(app: &TestApp, index: &Arc<dyn SearchIndex>) {
    let progress = |_: IndexName, _: u64, _: u64| {};
    rapport::search::indexer::reindex(
        &app.app.db,
        index,
        &app.app.search_consumer,
        None,
        &progress,
    )
    .await
    .unwrap();
}

/// The backends the contract runs against, with a name for messages.
async fn backends(dir: &std::path::Path) -> Vec<(String, Arc<dyn SearchIndex>)> {
    let mut list: Vec<(String, Arc<dyn SearchIndex>)> = vec![(
        "embedded".into(),
        Arc::new(rapport::search::embedded::Embedded::open(&dir.join("search")).unwrap()),
    )];
    match std::env::var("RAPPORT_MEILI_URL")
        .ok()
        .filter(|url| !url.is_empty())
    {
        Some(url) => {
            let key = std::env::var("RAPPORT_MEILI_KEY").ok();
            let prefix = format!("rt_{}_", Uuid::now_v7().simple());
            let meili = rapport::search::meili::Meili::connect(&url, key.as_deref(), &prefix)
                .await
                .expect("RAPPORT_MEILI_URL must point at a reachable Meilisearch");
            list.push(("meilisearch".into(), Arc::new(meili)));
        }
        None => eprintln!("Meilisearch variant skipped: set RAPPORT_MEILI_URL to run it"),
    }
    list
}

fn at(day: u32, hour: u32) -> i64 {
    Utc.with_ymd_and_hms(2026, 11, day, hour, 0, 0)
        .unwrap()
        .timestamp_millis()
}

struct World {
    acme: WorkspaceId,
    globex: WorkspaceId,
    ana: CustomerId,
    ben: CustomerId,
    conversation: ConversationId,
    docs: Vec<InteractionDoc>,
}

/// Channel, kind, direction and conversation status of a document.
type Labels<'a> = (&'a str, &'a str, &'a str, &'a str);

fn doc(
    world: (WorkspaceId, CustomerId, Option<ConversationId>),
    text: &str,
    labels: Labels<'_>,
    sentiment: Option<f64>,
    language: &str,
    occurred_at: i64,
) -> InteractionDoc {
    let (workspace_id, customer_id, conversation_id) = world;
    let (channel, kind, direction, status) = labels;
    InteractionDoc {
        id: InteractionId::new(),
        workspace_id,
        customer_id: Some(customer_id),
        conversation_id,
        channel: channel.into(),
        kind: kind.into(),
        direction: direction.into(),
        status: status.into(),
        sentiment,
        sentiment_label: rapport::search::sentiment_label(sentiment).into(),
        language: language.into(),
        occurred_at,
        subject: String::new(),
        text: text.into(),
        author: "Ana Souza @ana@social.example".into(),
    }
}

fn world() -> World {
    let (acme, globex, ana, ben, conversation) = (
        WorkspaceId::new(),
        WorkspaceId::new(),
        CustomerId::new(),
        CustomerId::new(),
        ConversationId::new(),
    );
    let a = (acme, ana, Some(conversation));
    let b = (acme, ben, None);
    let docs = vec![
        doc(
            a,
            "The CSV export is broken since the update",
            ("mastodon", "mention", "inbound", "open"),
            Some(-0.6),
            "en",
            at(1, 9),
        ),
        doc(
            a,
            "Any news about the export? It is blocking our integration",
            ("mastodon", "mention", "inbound", "open"),
            Some(-0.3),
            "en",
            at(2, 9),
        ),
        doc(
            a,
            "We shipped a fix for the export today",
            ("mastodon", "reply", "outbound", "open"),
            Some(0.4),
            "en",
            at(3, 9),
        ),
        doc(
            b,
            "Me encanta la canción del anuncio 🎉 https://example.com/anuncio?x=1",
            ("email", "email", "inbound", "none"),
            Some(0.8),
            "es",
            at(4, 9),
        ),
        doc(
            b,
            "Quiero cancelar la suscripción, el servicio es pésimo",
            ("email", "email", "inbound", "none"),
            Some(-0.8),
            "es",
            at(5, 9),
        ),
        doc(
            b,
            "Reporting works great, thanks for the integration guide",
            ("rss", "post", "inbound", "none"),
            None,
            "en",
            at(6, 9),
        ),
        // Another workspace, same words: never visible to acme.
        doc(
            (globex, CustomerId::new(), None),
            "Globex export broken, integration down",
            ("mastodon", "mention", "inbound", "open"),
            Some(-0.5),
            "en",
            at(1, 10),
        ),
    ];
    World {
        acme,
        globex,
        ana,
        ben,
        conversation,
        docs,
    }
}

fn query(workspace: WorkspaceId, text: &str) -> InteractionQuery {
    InteractionQuery {
        workspace_id: workspace,
        text: text.into(),
        filter: SearchFilter::default(),
        sort: SearchSort::Newest,
        offset: 0,
        limit: 20,
        facets: false,
        totals: true,
    }
}

async fn texts(index: &Arc<dyn SearchIndex>, world: &World, q: InteractionQuery) -> Vec<String> {
    let hits = index.search_interactions(&q).await.unwrap();
    hits.ids
        .iter()
        .map(|id| {
            world
                .docs
                .iter()
                .find(|d| d.id == *id)
                .map(|d| d.text.clone())
                .unwrap_or_else(|| format!("unknown {id}"))
        })
        .collect()
}

async fn contract(name: &str, index: Arc<dyn SearchIndex>) {
    let w = world();
    index.upsert_interactions(w.docs.clone()).await.unwrap();
    let t = |text: &str| query(w.acme, text);
    let count = |list: Vec<String>| list.len();

    // Words, typos, prefix, accents.
    assert_eq!(
        count(texts(&index, &w, t("export")).await),
        3,
        "{name}: plain word"
    );
    assert_eq!(
        count(texts(&index, &w, t("exprot")).await),
        3,
        "{name}: one typo (a transposition) in a 6-letter word"
    );
    assert_eq!(
        count(texts(&index, &w, t("intgeratoin")).await),
        2,
        "{name}: two typos from 9 letters"
    );
    assert_eq!(
        count(texts(&index, &w, t("brokne")).await),
        1,
        "{name}: one typo"
    );
    assert_eq!(
        count(texts(&index, &w, t("fxi")).await),
        0,
        "{name}: no typo under 5 letters"
    );
    assert_eq!(
        count(texts(&index, &w, t("expo")).await),
        3,
        "{name}: the last word is a prefix"
    );
    assert_eq!(
        count(texts(&index, &w, t("expo fix")).await),
        0,
        "{name}: only the last word is a prefix"
    );
    assert_eq!(
        count(texts(&index, &w, t("fix expo")).await),
        1,
        "{name}: every word must match"
    );
    assert_eq!(
        count(texts(&index, &w, t("cancion")).await),
        1,
        "{name}: accents folded (query without)"
    );
    assert_eq!(
        count(texts(&index, &w, t("PÉSIMO")).await),
        1,
        "{name}: accents and case folded (query with)"
    );
    assert_eq!(
        count(texts(&index, &w, t("anuncio 🎉")).await),
        1,
        "{name}: emoji are harmless"
    );
    assert_eq!(
        count(texts(&index, &w, t("https://example.com/anuncio")).await),
        1,
        "{name}: URLs are harmless"
    );
    assert_eq!(
        count(texts(&index, &w, t("ana souza")).await),
        6,
        "{name}: the author is searchable"
    );

    // Sort by date both ways; relevance returns the same set.
    let newest = texts(&index, &w, t("export")).await;
    assert_eq!(newest[0], "We shipped a fix for the export today", "{name}");
    let mut oldest_q = t("export");
    oldest_q.sort = SearchSort::Oldest;
    let oldest = texts(&index, &w, oldest_q).await;
    assert_eq!(
        oldest.iter().rev().cloned().collect::<Vec<_>>(),
        newest,
        "{name}: oldest is newest reversed"
    );
    let mut relevance = t("export");
    relevance.sort = SearchSort::Relevance;
    let mut by_relevance = texts(&index, &w, relevance).await;
    by_relevance.sort();
    let mut sorted = newest.clone();
    sorted.sort();
    assert_eq!(by_relevance, sorted, "{name}");

    // Every filter.
    let filtered = |f: SearchFilter| {
        let mut q = t("");
        q.filter = f;
        q
    };
    let cases: Vec<(SearchFilter, usize, &str)> = vec![
        (
            SearchFilter {
                customer_ids: vec![w.ana],
                ..Default::default()
            },
            3,
            "customer",
        ),
        (
            SearchFilter {
                customer_ids: vec![w.ana, w.ben],
                ..Default::default()
            },
            6,
            "customers",
        ),
        (
            SearchFilter {
                conversation_ids: vec![w.conversation],
                ..Default::default()
            },
            3,
            "conversation",
        ),
        (
            SearchFilter {
                channels: vec!["email".into(), "rss".into()],
                ..Default::default()
            },
            3,
            "channel",
        ),
        (
            SearchFilter {
                kinds: vec!["reply".into()],
                ..Default::default()
            },
            1,
            "kind",
        ),
        (
            SearchFilter {
                directions: vec!["outbound".into()],
                ..Default::default()
            },
            1,
            "direction",
        ),
        (
            SearchFilter {
                statuses: vec!["open".into()],
                ..Default::default()
            },
            3,
            "status",
        ),
        (
            SearchFilter {
                languages: vec!["es".into()],
                ..Default::default()
            },
            2,
            "language",
        ),
        (
            SearchFilter {
                sentiment_min: Some(0.0),
                ..Default::default()
            },
            2,
            "sentiment min",
        ),
        (
            SearchFilter {
                sentiment_max: Some(-0.5),
                ..Default::default()
            },
            2,
            "sentiment max",
        ),
        (
            SearchFilter {
                sentiment_min: Some(-0.5),
                sentiment_max: Some(0.5),
                ..Default::default()
            },
            2,
            "sentiment range",
        ),
        (
            SearchFilter {
                occurred_after: Some(Utc.timestamp_millis_opt(at(3, 0)).unwrap()),
                ..Default::default()
            },
            4,
            "after",
        ),
        (
            SearchFilter {
                occurred_before: Some(Utc.timestamp_millis_opt(at(3, 0)).unwrap()),
                ..Default::default()
            },
            2,
            "before",
        ),
        (
            SearchFilter {
                occurred_after: Some(Utc.timestamp_millis_opt(at(2, 0)).unwrap()),
                occurred_before: Some(Utc.timestamp_millis_opt(at(5, 0)).unwrap()),
                ..Default::default()
            },
            3,
            "date range",
        ),
    ];
    for (filter, expected, what) in cases {
        assert_eq!(
            count(texts(&index, &w, filtered(filter)).await),
            expected,
            "{name}: filter {what}"
        );
    }
    // Filters combine with words.
    let mut q = t("export");
    q.filter.directions = vec!["inbound".into()];
    assert_eq!(
        count(texts(&index, &w, q).await),
        2,
        "{name}: words and a filter"
    );

    // Facets over every hit, and the estimate.
    let mut q = t("");
    q.facets = true;
    let hits: Hits<InteractionId> = index.search_interactions(&q).await.unwrap();
    assert_eq!(hits.estimated_total, 6, "{name}");
    let facets = hits.facets.expect("facets asked for");
    let sorted = |mut v: Vec<(String, u64)>| {
        v.sort();
        v
    };
    assert_eq!(
        sorted(facets.channel),
        vec![
            ("email".into(), 2),
            ("mastodon".into(), 3),
            ("rss".into(), 1)
        ],
        "{name}"
    );
    assert_eq!(
        sorted(facets.kind),
        vec![
            ("email".into(), 2),
            ("mention".into(), 2),
            ("post".into(), 1),
            ("reply".into(), 1)
        ],
        "{name}"
    );
    assert_eq!(
        sorted(facets.sentiment),
        vec![
            ("negative".into(), 3),
            ("positive".into(), 2),
            ("unknown".into(), 1)
        ],
        "{name}"
    );
    assert_eq!(
        sorted(facets.language),
        vec![("en".into(), 4), ("es".into(), 2)],
        "{name}"
    );

    // Pagination: pages of 2 cover everything once, in order.
    let mut seen = Vec::new();
    for page in 0..4 {
        let mut q = t("");
        q.offset = page * 2;
        q.limit = 2;
        seen.extend(index.search_interactions(&q).await.unwrap().ids);
    }
    let all = index.search_interactions(&t("")).await.unwrap().ids;
    assert_eq!(seen, all, "{name}: pages");
    assert_eq!(all.len(), 6);

    // Workspace isolation: globex sees only its own.
    assert_eq!(
        texts(&index, &w, query(w.globex, "export")).await,
        vec!["Globex export broken, integration down".to_owned()],
        "{name}"
    );
    assert_eq!(
        count(texts(&index, &w, query(WorkspaceId::new(), "")).await),
        0,
        "{name}: an unknown workspace sees nothing"
    );

    // An update replaces the old text; a deletion removes.
    let mut changed = w.docs[0].clone();
    changed.text = "The PDF report is broken".into();
    index.upsert_interactions(vec![changed]).await.unwrap();
    assert_eq!(
        count(texts(&index, &w, t("export")).await),
        2,
        "{name}: the old text is gone"
    );
    assert_eq!(
        index
            .search_interactions(&t("pdf report"))
            .await
            .unwrap()
            .ids,
        vec![w.docs[0].id],
        "{name}: the new text is found"
    );
    index.delete_interactions(vec![w.docs[1].id]).await.unwrap();
    assert_eq!(
        count(texts(&index, &w, t("export")).await),
        1,
        "{name}: deleted"
    );

    // Customers: names, e-mails, phones, handles, organization, tags; prefix as you type.
    let customer = |workspace,
                    names: &[&str],
                    emails: &[&str],
                    phones: &[&str],
                    handles: &[&str],
                    org: &str,
                    tags: &[&str]| CustomerDoc {
        id: CustomerId::new(),
        workspace_id: workspace,
        names: names.iter().map(|s| s.to_string()).collect(),
        emails: emails.iter().map(|s| s.to_string()).collect(),
        phones: phones.iter().map(|s| s.to_string()).collect(),
        handles: handles.iter().map(|s| s.to_string()).collect(),
        organization: org.into(),
        tags: tags.iter().map(|s| s.to_string()).collect(),
        last_seen_at: at(1, 0),
    };
    let ana = CustomerDoc {
        id: w.ana,
        ..customer(
            w.acme,
            &["Ana Souza", "Ana"],
            &["ana@northwind.example"],
            &["34600123456", "600123456"],
            &["@ana@social.example"],
            "Northwind Traders",
            &["vip"],
        )
    };
    let ben = CustomerDoc {
        id: w.ben,
        ..customer(
            w.acme,
            &["Benjamín Okafor"],
            &["ben@okafor.example"],
            &[],
            &["@bokafor"],
            "",
            &["churn-risk"],
        )
    };
    let other = customer(
        w.globex,
        &["Ana Souza"],
        &["ana@globex.example"],
        &[],
        &[],
        "Globex",
        &[],
    );
    index
        .upsert_customers(vec![ana.clone(), ben.clone(), other.clone()])
        .await
        .unwrap();
    let find = |text: &'static str| {
        let index = index.clone();
        let acme = w.acme;
        async move { index.search_customers(acme, text, 10).await.unwrap().ids }
    };
    for (text, expected) in [
        ("an", vec![ana.id]),
        ("ana sou", vec![ana.id]),
        ("benjamin", vec![ben.id]),
        ("okafro", vec![ben.id]),
        ("ana@north", vec![ana.id]),
        ("600123", vec![ana.id]),
        ("bokafor", vec![ben.id]),
        ("northwind trad", vec![ana.id]),
        ("churn", vec![ben.id]),
        ("nobody", vec![]),
    ] {
        assert_eq!(find(text).await, expected, "{name}: customers `{text}`");
    }

    // A customer erased from the database vanishes from both indexes.
    index.delete_customers(vec![ben.id]).await.unwrap();
    index.delete_interactions_of(vec![ben.id]).await.unwrap();
    assert_eq!(find("benjamin").await, Vec::<CustomerId>::new(), "{name}");
    let mut q = t("");
    q.filter.customer_ids = vec![w.ben];
    assert_eq!(
        count(texts(&index, &w, q).await),
        0,
        "{name}: the erased customer's interactions are gone"
    );
    assert_eq!(find("ana").await, vec![ana.id], "{name}: others stay");
    // Nothing that identified them finds them: name, e-mail, handle, tag.
    for text in ["okafor", "ben@okafor.example", "bokafor", "churn"] {
        assert_eq!(
            find(text).await,
            Vec::<CustomerId>::new(),
            "{name}: the erased customer by `{text}`"
        );
    }

    // A rebuild aside replaces the whole index at once; searches work during it.
    let mut rebuild: Box<dyn Rebuild> = index.begin_rebuild(IndexName::Interactions).await.unwrap();
    rebuild
        .add_interactions(vec![w.docs[2].clone()])
        .await
        .unwrap();
    assert_eq!(
        count(texts(&index, &w, t("")).await),
        2,
        "{name}: the old index answers during the rebuild"
    );
    rebuild.finish().await.unwrap();
    assert_eq!(
        index.search_interactions(&t("")).await.unwrap().ids,
        vec![w.docs[2].id],
        "{name}: swapped"
    );
    index
        .upsert_interactions(vec![w.docs[3].clone()])
        .await
        .unwrap();
    assert_eq!(
        count(texts(&index, &w, t("")).await),
        2,
        "{name}: writes go to the new index"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_backend_keeps_the_search_contract() {
    let dir = tempfile::tempdir().unwrap();
    for (name, index) in backends(dir.path()).await {
        contract(&name, index.clone()).await;
        index.destroy().await.unwrap();
    }
}

const RECORD: &str = "mutation($input: RecordInteractionInput!) { recordInteraction(input: $input) { interaction { id } } }";
const SEARCH: &str = "query($q: String!, $filter: SearchFilterInput, $sort: SearchSort, $first: Int, $after: String) {
  search(query: $q, filter: $filter, sort: $sort, first: $first, after: $after) {
    estimatedTotal pageInfo { hasNextPage endCursor }
    facets { channel { value count } kind { value count } sentiment { value count } language { value count } }
    edges { cursor node { highlights { field snippet matches { start length } } interaction { id text channel customer { displayName } } } } } }";

async fn record(
    app: &TestApp,
    key: &str,
    customer: &str,
    text: &str,
    channel: &str,
    direction: &str,
) -> String {
    let input = json!({ "customerId": customer, "channel": channel, "kind": "MESSAGE", "direction": direction, "text": text });
    app.gql(key, RECORD, json!({ "input": input })).await["recordInteraction"]["interaction"]["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

async fn catch_up(app: &TestApp) {
    rapport::search::indexer::Indexer::new(&app.app)
        .catch_up()
        .await
        .unwrap();
}

backend_test!(
    async fn search_through_graphql_finds_highlights_filters_and_stays_in_its_workspace(
        app: TestApp,
    ) {
        let key = app.key(Role::Admin).await;
        let ana = app.create_customer(&key, json!({ "displayName": "Ana Souza", "contactPoints": [{ "kind": "EMAIL", "value": "ana@northwind.example" }, { "kind": "PHONE", "value": "+34 600 123 456" }] })).await;
        let ben = app.create_customer(&key, json!({ "displayName": "Benjamín Okafor", "contactPoints": [{ "kind": "EMAIL", "value": "ben@okafor.example" }] })).await;
        record(
            &app,
            &key,
            &ana,
            "The CSV export is broken since the update",
            "EMAIL",
            "INBOUND",
        )
        .await;
        record(
            &app,
            &key,
            &ana,
            "We shipped a fix for the export today",
            "EMAIL",
            "OUTBOUND",
        )
        .await;
        record(
            &app,
            &key,
            &ben,
            "La canción del anuncio me encanta",
            "PHONE",
            "INBOUND",
        )
        .await;
        let globex = app.key_in("globex", Role::Admin).await;
        let zed = app
            .create_customer(&globex, json!({ "displayName": "Ana Zed" }))
            .await;
        record(
            &app,
            &globex,
            &zed,
            "Globex export broken",
            "EMAIL",
            "INBOUND",
        )
        .await;
        let status = app
            .gql(
                &key,
                "{ searchStatus { backend lag lastError } }",
                json!({}),
            )
            .await;
        let backend = app.app.search.backend();
        assert_eq!(status["searchStatus"]["backend"], backend);
        assert!(
            status["searchStatus"]["lag"].as_i64().unwrap() > 0,
            "nothing indexed yet: {status}"
        );
        catch_up(&app).await;
        let status = app
            .gql(
                &key,
                "{ searchStatus { backend lag lastError } }",
                json!({}),
            )
            .await;
        assert_eq!(
            status["searchStatus"],
            json!({ "backend": backend, "lag": 0, "lastError": null })
        );

        // Typo, highlights with positions, facets, estimate, newest first.
        let data = app
            .gql(&key, SEARCH, json!({ "q": "exprot", "sort": "NEWEST" }))
            .await;
        let result = &data["search"];
        assert_eq!(result["estimatedTotal"], 2);
        let edges = result["edges"].as_array().unwrap();
        assert_eq!(
            edges[0]["node"]["interaction"]["text"],
            "We shipped a fix for the export today"
        );
        assert_eq!(
            edges[0]["node"]["highlights"],
            json!([{ "field": "text", "snippet": "We shipped a fix for the <mark>export</mark> today", "matches": [{ "start": 25, "length": 6 }] }])
        );
        assert_eq!(
            edges[1]["node"]["interaction"]["customer"]["displayName"],
            "Ana Souza"
        );
        assert_eq!(
            result["facets"]["channel"],
            json!([{ "value": "EMAIL", "count": 2 }])
        );
        // Accents; filter by customer and channel; pagination by cursor.
        let data = app.gql(&key, SEARCH, json!({ "q": "cancion", "filter": { "customerIds": [ben], "channels": ["PHONE"], "languages": ["es"] } })).await;
        assert_eq!(
            data["search"]["edges"][0]["node"]["highlights"][0]["snippet"],
            "La <mark>canción</mark> del anuncio me encanta"
        );
        let first = app
            .gql(
                &key,
                SEARCH,
                json!({ "q": "", "sort": "OLDEST", "first": 2 }),
            )
            .await;
        assert_eq!(first["search"]["pageInfo"]["hasNextPage"], true);
        let after = first["search"]["pageInfo"]["endCursor"].as_str().unwrap();
        let next = app
            .gql(
                &key,
                SEARCH,
                json!({ "q": "", "sort": "OLDEST", "first": 2, "after": after }),
            )
            .await;
        assert_eq!(next["search"]["edges"].as_array().unwrap().len(), 1);
        assert_eq!(next["search"]["pageInfo"]["hasNextPage"], false);
        assert_eq!(
            next["search"]["edges"][0]["node"]["interaction"]["text"],
            "La canción del anuncio me encanta"
        );

        // A customer's timeline narrowed by the index.
        let timeline = app.gql(&key, "query($id: ID!) { customer(id: $id) { timeline(search: \"fix\") { totalCount edges { node { text } } } } }", json!({ "id": ana })).await;
        assert_eq!(
            timeline["customer"]["timeline"],
            json!({ "totalCount": 1, "edges": [{ "node": { "text": "We shipped a fix for the export today" } }] })
        );

        // Search as you type over customers.
        for (q, name) in [
            ("ana sou", "Ana Souza"),
            ("ana@north", "Ana Souza"),
            ("600 123", "Ana Souza"),
            ("okafro", "Benjamín Okafor"),
        ] {
            let data = app.gql(&key, "query($q: String!) { searchCustomers(query: $q) { customer { displayName } highlights { snippet } } }", json!({ "q": q })).await;
            assert_eq!(
                data["searchCustomers"][0]["customer"]["displayName"], name,
                "{q}: {data}"
            );
            assert_eq!(
                data["searchCustomers"].as_array().unwrap().len(),
                1,
                "{q}: {data}"
            );
        }

        // The other workspace sees only its own, even naming acme's customer.
        let theirs = app.gql(&globex, SEARCH, json!({ "q": "export" })).await;
        assert_eq!(theirs["search"]["estimatedTotal"], 1);
        assert_eq!(
            theirs["search"]["edges"][0]["node"]["interaction"]["text"],
            "Globex export broken"
        );
        let foreign = app
            .gql(
                &globex,
                SEARCH,
                json!({ "q": "", "filter": { "customerIds": [ana] } }),
            )
            .await;
        assert_eq!(foreign["search"]["edges"], json!([]));
        let customers = app
            .gql(
                &globex,
                "{ searchCustomers(query: \"ana\") { customer { displayName } } }",
                json!({}),
            )
            .await;
        assert_eq!(
            customers["searchCustomers"],
            json!([{ "customer": { "displayName": "Ana Zed" } }])
        );

        // Erasing a customer removes them and their history from both indexes.
        app.gql(
            &key,
            "mutation($id: ID!) { deleteCustomer(input: { id: $id }) { deletedCustomerId } }",
            json!({ "id": ben }),
        )
        .await;
        catch_up(&app).await;
        let gone = app.gql(&key, SEARCH, json!({ "q": "cancion" })).await;
        assert_eq!(gone["search"]["estimatedTotal"], 0);
        let gone = app
            .gql(
                &key,
                "{ searchCustomers(query: \"okafor\") { customer { id } } }",
                json!({}),
            )
            .await;
        assert_eq!(gone["searchCustomers"], json!([]));
        // An update replaces the indexed text.
        let renamed = app.gql(&key, "mutation($id: ID!) { updateCustomer(input: { id: $id, displayName: \"Ana Lima\" }) { customer { id } } }", json!({ "id": ana })).await;
        assert!(renamed["updateCustomer"]["customer"]["id"].is_string());
        catch_up(&app).await;
        let found = app
            .gql(
                &key,
                "{ searchCustomers(query: \"lima\") { customer { displayName } } }",
                json!({}),
            )
            .await;
        assert_eq!(
            found["searchCustomers"],
            json!([{ "customer": { "displayName": "Ana Lima" } }])
        );
        let old = app
            .gql(
                &key,
                "{ searchCustomers(query: \"souza\") { customer { displayName } } }",
                json!({}),
            )
            .await;
        assert_eq!(old["searchCustomers"], json!([]));

        // Bad input names the field.
        for (variables, field) in [
            (json!({ "q": "x".repeat(600) }), "query"),
            (json!({ "q": "export", "first": 500 }), "first"),
            (json!({ "q": "export", "after": "not-a-cursor" }), "after"),
            (
                json!({ "q": "export", "filter": { "sentimentMin": 3.0 } }),
                "filter.sentimentMin",
            ),
            (
                json!({ "q": "export", "filter": { "customerIds": ["cus_nope"] } }),
                "filter.customerIds[0]",
            ),
        ] {
            let (code, body) = app.gql_error(&key, SEARCH, variables).await;
            assert_eq!(code, "BAD_USER_INPUT", "{body}");
            assert_eq!(body["errors"][0]["extensions"]["field"], field, "{body}");
        }

        // A rebuild from the database gives the same answers.
        rebuild(&app, &app.app.search).await;
        catch_up(&app).await;
        let again = app.gql(&key, SEARCH, json!({ "q": "exprot" })).await;
        assert_eq!(again["search"]["estimatedTotal"], 2);
    }
);

/// A backend that fails while `down` is set.
struct Flaky {
    inner: Arc<dyn SearchIndex>,
    down: AtomicBool,
}

impl Flaky {
    fn check(&self) -> rapport::Result<()> {
        if self.down.load(Ordering::Relaxed) {
            Err(rapport::Error::Internal("connection refused (test)".into()))
        } else {
            Ok(())
        }
    }
}

#[async_trait::async_trait]
impl SearchIndex for Flaky {
    fn backend(&self) -> &'static str {
        "flaky"
    }
    async fn upsert_interactions(&self, docs: Vec<InteractionDoc>) -> rapport::Result<()> {
        self.check()?;
        self.inner.upsert_interactions(docs).await
    }
    async fn delete_interactions(&self, ids: Vec<InteractionId>) -> rapport::Result<()> {
        self.check()?;
        self.inner.delete_interactions(ids).await
    }
    async fn delete_interactions_of(&self, ids: Vec<CustomerId>) -> rapport::Result<()> {
        self.check()?;
        self.inner.delete_interactions_of(ids).await
    }
    async fn upsert_customers(&self, docs: Vec<CustomerDoc>) -> rapport::Result<()> {
        self.check()?;
        self.inner.upsert_customers(docs).await
    }
    async fn delete_customers(&self, ids: Vec<CustomerId>) -> rapport::Result<()> {
        self.check()?;
        self.inner.delete_customers(ids).await
    }
    async fn search_interactions(
        &self,
        query: &InteractionQuery,
    ) -> rapport::Result<Hits<InteractionId>> {
        self.inner.search_interactions(query).await
    }
    async fn search_customers(
        &self,
        workspace: WorkspaceId,
        text: &str,
        limit: usize,
    ) -> rapport::Result<Hits<CustomerId>> {
        self.inner.search_customers(workspace, text, limit).await
    }
    async fn begin_rebuild(&self, index: IndexName) -> rapport::Result<Box<dyn Rebuild>> {
        self.inner.begin_rebuild(index).await
    }
    async fn destroy(&self) -> rapport::Result<()> {
        self.inner.destroy().await
    }
}

/// Pushes `count` webhook-style items of one workspace through the pipeline.
async fn ingest_items(app: &TestApp, workspace: &str, count: usize) -> WorkspaceId {
    let source = webhook_source(app, workspace).await;
    let items: Vec<connectors::InboundItem> =
        (0..count).map(|n| bulk_item(n, "invoices")).collect();
    for chunk in items.chunks(50) {
        rapport::ingest::ingest(&app.app.db, &source, chunk, None, None)
            .await
            .unwrap();
    }
    source.workspace_id
}

/// A webhook source of `workspace`.
async fn webhook_source(app: &TestApp, workspace: &str) -> entity::source::Model {
    let admin = app.key_in(workspace, Role::Admin).await;
    let created = app
        .gql(&admin, crate::feeds::CREATE, json!({ "input": { "channel": "WEBHOOK", "name": "bulk", "config": { "secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw" } } }))
        .await;
    let id = rapport::ids::decode::<entity::SourceId>(
        "id",
        created["createSource"]["source"]["id"].as_str().unwrap(),
    )
    .unwrap();
    use sea_orm::EntityTrait;
    let source = entity::source::Entity::find_by_id(id)
        .one(&app.app.db)
        .await
        .unwrap()
        .unwrap();
    source
}

/// Item `n` of a bulk push, about `topic`.
fn bulk_item(n: usize, topic: &str) -> connectors::InboundItem {
    connectors::InboundItem {
        external_id: format!("bulk-{n}"),
        author: connectors::Author {
            platform_id: format!("mailto:u{}@bulk.example", n % 20),
            email: Some(format!("u{}@bulk.example", n % 20)),
            ..Default::default()
        },
        outbound: false,
        kind: "message".into(),
        subject: None,
        text: format!("bulk message number {n} about {topic}"),
        html: None,
        url: None,
        language: None,
        occurred_at: Utc::now(),
        thread_key: None,
        in_reply_to: None,
        raw: json!({}),
    }
}

async fn indexed(
    app: &TestApp,
    index: &Arc<dyn SearchIndex>,
    workspace: WorkspaceId,
    text: &str,
) -> u64 {
    let _ = app;
    index
        .search_interactions(&query(workspace, text))
        .await
        .unwrap()
        .estimated_total
}

backend_test!(
    async fn the_running_indexer_moves_its_offset_past_a_batch_only_once_it_is_searchable(
        app: TestApp,
    ) {
        use rapport::search::indexer;
        let source = webhook_source(&app, "acme").await;
        let db = app.app.db.clone();
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let task = tokio::spawn(indexer::Indexer::new(&app.app).run(stopped));
        // Topics no typo of another reaches.
        let topics = ["invoices", "kangaroo", "pineapple", "volcano", "zeppelin"];
        for (round, topic) in topics.iter().enumerate() {
            let items: Vec<connectors::InboundItem> = (round * 30..round * 30 + 30)
                .map(|n| bulk_item(n, topic))
                .collect();
            for chunk in items.chunks(10) {
                rapport::ingest::ingest(&db, &source, chunk, None, None)
                    .await
                    .unwrap();
            }
            let head = indexer::head(&db).await.unwrap();
            let deadline = Instant::now() + Duration::from_secs(20);
            while indexer::offset(&db, &app.app.search_consumer)
                .await
                .unwrap()
                < head
            {
                assert!(Instant::now() < deadline, "the offset never passed {head}");
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            // Searchable by the time the offset passes them, with nothing more to wait for.
            for (earlier, topic) in topics[..=round].iter().enumerate() {
                assert_eq!(
                    indexed(&app, &app.app.search, source.workspace_id, topic).await,
                    30,
                    "round {round}: the items of round {earlier}"
                );
            }
        }
        stop.send(true).unwrap();
        task.await.unwrap();
    }
);

backend_test!(
    async fn the_indexer_survives_a_restart_mid_backlog_without_losing_or_repeating(app: TestApp) {
        let workspace = ingest_items(&app, "acme", 300).await;
        let head = rapport::search::indexer::head(&app.app.db).await.unwrap();
        let indexer = |batch| rapport::search::indexer::Indexer {
            batch,
            ..rapport::search::indexer::Indexer::new(&app.app)
        };
        // The first process indexes two batches, then dies.
        let first = indexer(100);
        let mut seen = first.step().await.unwrap().events;
        seen += first.step().await.unwrap().events;
        drop(first);
        let offset = rapport::search::indexer::offset(&app.app.db, &app.app.search_consumer)
            .await
            .unwrap();
        assert_eq!(
            offset as usize, seen,
            "the offset is stored after each batch"
        );
        assert!(offset < head);
        // The next one goes on from the stored offset: every event once in all.
        let second = indexer(100);
        let mut rest = 0;
        loop {
            let step = second.step().await.unwrap();
            if step.events == 0 {
                break;
            }
            rest += step.events;
        }
        assert_eq!(
            seen + rest,
            head as usize,
            "no event read twice, none skipped"
        );
        assert_eq!(
            indexed(&app, &app.app.search, workspace, "invoices").await,
            300
        );
        assert_eq!(
            rapport::search::indexer::lag(&app.app.db, &app.app.search_consumer)
                .await
                .unwrap(),
            0
        );
    }
);

backend_test!(
    async fn the_indexer_retries_while_the_backend_is_down_and_catches_up(app: TestApp) {
        let flaky = Arc::new(Flaky {
            inner: app.app.search.clone(),
            down: AtomicBool::new(true),
        });
        let status = Arc::new(rapport::search::SearchStatus::default());
        let indexer = rapport::search::indexer::Indexer {
            search: flaky.clone(),
            status: status.clone(),
            batch: 100,
            ..rapport::search::indexer::Indexer::new(&app.app)
        };
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let task = tokio::spawn(indexer.run(stopped));
        let workspace = ingest_items(&app, "acme", 40).await;
        let deadline = Instant::now() + Duration::from_secs(20);
        while status.last_error.lock().unwrap().is_none() {
            assert!(Instant::now() < deadline, "the outage was never noticed");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(status
            .last_error
            .lock()
            .unwrap()
            .as_deref()
            .unwrap()
            .contains("connection refused"));
        assert!(
            rapport::search::indexer::lag(&app.app.db, &app.app.search_consumer)
                .await
                .unwrap()
                > 0
        );
        assert_eq!(
            indexed(&app, &app.app.search, workspace, "invoices").await,
            0
        );
        flaky.down.store(false, Ordering::Relaxed);
        let deadline = Instant::now() + Duration::from_secs(30);
        while rapport::search::indexer::lag(&app.app.db, &app.app.search_consumer)
            .await
            .unwrap()
            > 0
            || status.last_error.lock().unwrap().is_some()
        {
            assert!(Instant::now() < deadline, "the indexer did not catch up");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(
            indexed(&app, &app.app.search, workspace, "invoices").await,
            40
        );
        stop.send(true).unwrap();
        task.await.unwrap();
    }
);

backend_test!(
    async fn fifty_thousand_events_are_indexed_in_batches(app: TestApp) {
        let workspace = rapport::domain::workspace::ensure(&app.app.db, "bulk")
            .await
            .unwrap();
        rapport::demo::seed_uniform(&app.app.db, workspace.id, 2_500, 1, 20)
            .await
            .unwrap();
        // The seed writes an event for every row it makes, as the API would.
        let head = rapport::search::indexer::head(&app.app.db).await.unwrap();
        assert!(head >= 50_000, "{head}");
        let indexer = rapport::search::indexer::Indexer {
            batch: 5_000,
            ..rapport::search::indexer::Indexer::new(&app.app)
        };
        let events = indexer.catch_up().await.unwrap();
        assert_eq!(events as i64, head);
        assert_eq!(
            indexed(&app, &app.app.search, workspace.id, "").await,
            50_000
        );
        assert_eq!(
            indexed(
                &app,
                &app.app.search,
                workspace.id,
                "message 7 from customer 1999"
            )
            .await,
            1,
            "{}",
            "one exact hit among 50,000"
        );
        let mut q = query(workspace.id, "");
        q.facets = true;
        let hits = app.app.search.search_interactions(&q).await.unwrap();
        let total: u64 = hits
            .facets
            .unwrap()
            .channel
            .iter()
            .map(|(_, count)| count)
            .sum();
        assert_eq!(total, 50_000);
    }
);

backend_test!(
    async fn a_reopened_conversation_updates_the_status_of_its_indexed_interactions(app: TestApp) {
        use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
        let workspace = ingest_items(&app, "acme", 1).await;
        catch_up(&app).await;
        let by_status = |status: &'static str| {
            let search = app.app.search.clone();
            async move {
                let mut q = query(workspace, "");
                q.filter.statuses = vec![status.into()];
                search
                    .search_interactions(&q)
                    .await
                    .unwrap()
                    .estimated_total
            }
        };
        assert_eq!(by_status("open").await, 1);
        // Resolve the conversation (as an inbox mutation would, with its event).
        let conversation = entity::conversation::Entity::find()
            .one(&app.app.db)
            .await
            .unwrap()
            .unwrap();
        entity::conversation::Entity::update_many()
            .col_expr(
                entity::conversation::Column::Status,
                sea_orm::sea_query::Expr::value("resolved"),
            )
            .filter(entity::conversation::Column::Id.eq(conversation.id))
            .exec(&app.app.db)
            .await
            .unwrap();
        let resolved = entity::conversation::Entity::find_by_id(conversation.id)
            .one(&app.app.db)
            .await
            .unwrap()
            .unwrap();
        rapport::domain::event::append(
            &app.app.db,
            workspace,
            rapport::domain::event::Event::ConversationStatusSet(
                &rapport::domain::event::ConversationChange {
                    conversation: resolved,
                    actor: rapport::domain::event::Actor::system("test"),
                    label: None,
                },
            ),
        )
        .await
        .unwrap();
        catch_up(&app).await;
        assert_eq!(
            (by_status("open").await, by_status("resolved").await),
            (0, 1)
        );
        // A new inbound message in the thread reopens it: every interaction is open again.
        let source = entity::source::Entity::find()
            .filter(entity::source::Column::WorkspaceId.eq(workspace))
            .one(&app.app.db)
            .await
            .unwrap()
            .unwrap();
        let item = connectors::InboundItem {
            external_id: "bulk-reply".into(),
            author: connectors::Author {
                platform_id: "mailto:u0@bulk.example".into(),
                ..Default::default()
            },
            outbound: false,
            kind: "message".into(),
            subject: None,
            text: "still broken".into(),
            html: None,
            url: None,
            language: None,
            occurred_at: Utc::now(),
            thread_key: None,
            in_reply_to: Some("bulk-0".into()),
            raw: json!({}),
        };
        rapport::ingest::ingest(&app.app.db, &source, &[item], None, None)
            .await
            .unwrap();
        catch_up(&app).await;
        assert_eq!(
            (by_status("open").await, by_status("resolved").await),
            (2, 0)
        );
    }
);

/// What a workspace's searches answer, in a form two indexes can be compared by: for each
/// search its total, facets, the ids in order where the order is defined (by date, ties
/// by id) and as a set where relevance ties may fall in either index order.
async fn answers(
    index: &Arc<dyn SearchIndex>,
    workspace: WorkspaceId,
) -> Vec<(String, u64, Option<rapport::search::Facets>, Vec<String>)> {
    let mut out = Vec::new();
    for text in [
        "",
        "message",
        "mesage 7",
        "message 7 from customer 1",
        "custmer",
        "nothingatall",
    ] {
        for sort in [
            SearchSort::Relevance,
            SearchSort::Newest,
            SearchSort::Oldest,
        ] {
            let mut q = query(workspace, text);
            q.sort = sort;
            q.facets = true;
            q.limit = rapport::search::MAX_HITS;
            let hits = index.search_interactions(&q).await.unwrap();
            let mut ids: Vec<String> = hits.ids.iter().map(ToString::to_string).collect();
            if sort == SearchSort::Relevance {
                ids.sort();
                if hits.estimated_total > ids.len() as u64 {
                    // Which of the equal hits make the page is index order: only count.
                    ids = vec![format!("{} hits", ids.len())];
                }
            }
            out.push((
                format!("{text:?} {sort:?}"),
                hits.estimated_total,
                hits.facets,
                ids,
            ));
        }
    }
    for text in ["customer", "custmer 1", "nothingatall"] {
        let hits = index
            .search_customers(workspace, text, 1_000)
            .await
            .unwrap();
        let mut ids: Vec<String> = hits.ids.iter().map(ToString::to_string).collect();
        ids.sort();
        out.push((
            format!("customers {text:?}"),
            hits.estimated_total,
            None,
            ids,
        ));
    }
    out
}

/// An empty index of the backend `app` searches (in `dir`, or on new Meilisearch indexes
/// that `destroy` deletes): two engines need not agree on every ranking and count.
async fn fresh_index(app: &TestApp, dir: &std::path::Path) -> Arc<dyn SearchIndex> {
    let config = &app.app.config;
    match &config.meili_url {
        Some(url) => {
            let prefix = format!("rt_{}_", Uuid::now_v7().simple());
            Arc::new(
                rapport::search::meili::Meili::connect(url, config.meili_key.as_deref(), &prefix)
                    .await
                    .unwrap(),
            )
        }
        None => Arc::new(rapport::search::embedded::Embedded::open(&dir.join("search")).unwrap()),
    }
}

/// Asserts two [`answers`] are the same, search by search.
fn same_answers(
    got: &[(String, u64, Option<rapport::search::Facets>, Vec<String>)],
    want: &[(String, u64, Option<rapport::search::Facets>, Vec<String>)],
    what: &str,
) {
    assert_eq!(got.len(), want.len());
    for (got, want) in got.iter().zip(want) {
        assert_eq!(got.0, want.0);
        assert_eq!(got.1, want.1, "{what}: total of {}", got.0);
        assert_eq!(got.2, want.2, "{what}: facets of {}", got.0);
        assert_eq!(got.3, want.3, "{what}: hits of {}", got.0);
    }
}

backend_test!(
    async fn a_rebuild_answers_as_incremental_indexing_did_after_deletes_too(app: TestApp) {
        let workspace = rapport::domain::workspace::ensure(&app.app.db, "acme")
            .await
            .unwrap()
            .id;
        rapport::demo::seed_uniform(&app.app.db, workspace, 60, 1, 20)
            .await
            .unwrap();
        catch_up(&app).await;
        let incremental = answers(&app.app.search, workspace).await;
        assert!(incremental
            .iter()
            .any(|(name, total, _, _)| name.starts_with("\"message\"") && *total == 1_200));

        // From scratch: a new index (of the app's backend) filled from the database
        // answers the same.
        let dir = tempfile::tempdir().unwrap();
        let fresh = fresh_index(&app, dir.path()).await;
        rebuild(&app, &fresh).await;
        same_answers(
            &answers(&fresh, workspace).await,
            &incremental,
            "from scratch",
        );

        // Deletes (a customer erased takes its interactions along), indexed incrementally,
        // then the live index rebuilt aside: both answer the same, and what was deleted is
        // gone from both.
        let key = app.key_in("acme", Role::Admin).await;
        let customers = rapport::domain::bulk::customer_ids(&app.app.db, workspace)
            .await
            .unwrap();
        for id in customers.iter().step_by(7) {
            let id = rapport::ids::encode(*id);
            app.gql(
                &key,
                "mutation($id: ID!) { deleteCustomer(input: {id: $id}) { deletedCustomerId } }",
                json!({ "id": id }),
            )
            .await;
        }
        let deleted = customers.iter().step_by(7).count() as u64;
        catch_up(&app).await;
        let after_deletes = answers(&app.app.search, workspace).await;
        assert_ne!(after_deletes, incremental);
        assert!(after_deletes
            .iter()
            .any(|(name, total, _, _)| name.starts_with("\"message\"")
                && *total == 1_200 - 20 * deleted));
        rebuild(&app, &app.app.search).await;
        catch_up(&app).await;
        same_answers(
            &answers(&app.app.search, workspace).await,
            &after_deletes,
            "rebuilt aside after deletes",
        );
        fresh.destroy().await.unwrap();
        let dir = tempfile::tempdir().unwrap();
        let fresh = fresh_index(&app, dir.path()).await;
        rebuild(&app, &fresh).await;
        same_answers(
            &answers(&fresh, workspace).await,
            &after_deletes,
            "from scratch after deletes",
        );
        fresh.destroy().await.unwrap();
    }
);

/// Where a [`Queued`] task stands.
#[derive(Clone, Copy, Debug, PartialEq)]
enum TaskState {
    Enqueued,
    Succeeded,
    Failed,
}

/// A backend that queues each batch the indexer submits as one task, as Meilisearch does,
/// and applies it to `inner` only when the test lets it succeed (or at once with `auto`,
/// then reported applying until no task was sent for `delay`: tasks queued together
/// finish together, as Meilisearch applies consecutive writes to an index in one batch).
struct Queued {
    inner: Arc<dyn SearchIndex>,
    tasks: std::sync::Mutex<Vec<(rapport::search::Changes, TaskState)>>,
    auto: AtomicBool,
    delay: Duration,
    sent: std::sync::Mutex<Vec<Instant>>,
}

impl Queued {
    fn count(&self) -> usize {
        self.tasks.lock().unwrap().len()
    }

    fn changes(&self, uid: usize) -> rapport::search::Changes {
        self.tasks.lock().unwrap()[uid].0.clone()
    }

    /// Applies task `uid`'s writes to the inner index and marks it succeeded.
    async fn succeed(&self, uid: usize) {
        self.apply(self.changes(uid)).await.unwrap();
        self.tasks.lock().unwrap()[uid].1 = TaskState::Succeeded;
    }

    /// Sends `changes` to the inner index and waits until they are searchable (a
    /// backend that applies its tasks later, as Meilisearch does, says when).
    async fn apply(&self, changes: rapport::search::Changes) -> rapport::Result<()> {
        let submitted = self.inner.submit(changes).await?;
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match self.inner.progress(&submitted).await? {
                rapport::search::Progress::Applied => return Ok(()),
                rapport::search::Progress::Applying => {
                    assert!(Instant::now() < deadline, "a task never applied");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                rapport::search::Progress::Failed(reason) => panic!("{reason}"),
            }
        }
    }

    fn fail(&self, uid: usize) {
        self.tasks.lock().unwrap()[uid].1 = TaskState::Failed;
    }
}

#[async_trait::async_trait]
impl SearchIndex for Queued {
    fn backend(&self) -> &'static str {
        "queued"
    }
    async fn submit(
        &self,
        changes: rapport::search::Changes,
    ) -> rapport::Result<rapport::search::Submitted> {
        let state = if self.auto.load(Ordering::Relaxed) {
            self.apply(changes.clone()).await?;
            TaskState::Succeeded
        } else {
            TaskState::Enqueued
        };
        self.sent.lock().unwrap().push(Instant::now());
        let mut tasks = self.tasks.lock().unwrap();
        tasks.push((changes, state));
        Ok(rapport::search::Submitted {
            tasks: vec![tasks.len() as u64 - 1],
        })
    }
    async fn progress(
        &self,
        submitted: &rapport::search::Submitted,
    ) -> rapport::Result<rapport::search::Progress> {
        use rapport::search::Progress;
        let quiet = self
            .sent
            .lock()
            .unwrap()
            .last()
            .is_none_or(|last| last.elapsed() >= self.delay);
        if !quiet {
            return Ok(Progress::Applying);
        }
        let tasks = self.tasks.lock().unwrap();
        let states: Vec<TaskState> = submitted
            .tasks
            .iter()
            .map(|&uid| tasks[uid as usize].1)
            .collect();
        Ok(if states.contains(&TaskState::Failed) {
            Progress::Failed("task failed (test)".into())
        } else if states.contains(&TaskState::Enqueued) {
            Progress::Applying
        } else {
            Progress::Applied
        })
    }
    async fn upsert_interactions(&self, docs: Vec<InteractionDoc>) -> rapport::Result<()> {
        self.inner.upsert_interactions(docs).await
    }
    async fn delete_interactions(&self, ids: Vec<InteractionId>) -> rapport::Result<()> {
        self.inner.delete_interactions(ids).await
    }
    async fn delete_interactions_of(&self, ids: Vec<CustomerId>) -> rapport::Result<()> {
        self.inner.delete_interactions_of(ids).await
    }
    async fn upsert_customers(&self, docs: Vec<CustomerDoc>) -> rapport::Result<()> {
        self.inner.upsert_customers(docs).await
    }
    async fn delete_customers(&self, ids: Vec<CustomerId>) -> rapport::Result<()> {
        self.inner.delete_customers(ids).await
    }
    async fn search_interactions(
        &self,
        query: &InteractionQuery,
    ) -> rapport::Result<Hits<InteractionId>> {
        self.inner.search_interactions(query).await
    }
    async fn search_customers(
        &self,
        workspace: WorkspaceId,
        text: &str,
        limit: usize,
    ) -> rapport::Result<Hits<CustomerId>> {
        self.inner.search_customers(workspace, text, limit).await
    }
    async fn begin_rebuild(&self, index: IndexName) -> rapport::Result<Box<dyn Rebuild>> {
        self.inner.begin_rebuild(index).await
    }
    async fn destroy(&self) -> rapport::Result<()> {
        self.inner.destroy().await
    }
}

/// Polls `done` every 20 ms for up to 20 s.
async fn eventually(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !done() {
        assert!(Instant::now() < deadline, "never: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

backend_test!(
    async fn the_indexer_sends_batches_ahead_and_moves_its_offset_only_past_succeeded_tasks(
        app: TestApp,
    ) {
        use rapport::search::indexer::{self, IN_FLIGHT};
        let workspace = ingest_items(&app, "acme", 300).await;
        let db = app.app.db.clone();
        let head = indexer::head(&db).await.unwrap();
        let batch = 40u64;
        assert!(head as u64 > batch * (IN_FLIGHT as u64 + 3), "{head}");
        // The seq ending each of the first batches, as the indexer reads them.
        let events = rapport::domain::event::after(&db, 0, batch * 3)
            .await
            .unwrap();
        let end_of = |n: usize| events[n * batch as usize - 1].seq;
        let queued = Arc::new(Queued {
            inner: app.app.search.clone(),
            tasks: std::sync::Mutex::new(Vec::new()),
            auto: AtomicBool::new(false),
            delay: Duration::ZERO,
            sent: std::sync::Mutex::new(Vec::new()),
        });
        let status = Arc::new(rapport::search::SearchStatus::default());
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let task = tokio::spawn(
            indexer::Indexer {
                search: queued.clone(),
                status: status.clone(),
                batch,
                ..indexer::Indexer::new(&app.app)
            }
            .run(stopped),
        );
        let consumer = app.app.search_consumer.clone();
        let offset = || {
            let db = db.clone();
            let consumer = consumer.clone();
            async move { indexer::offset(&db, &consumer).await.unwrap() }
        };

        // Batches are sent without waiting for the ones before, up to IN_FLIGHT.
        eventually("batches sent ahead", || queued.count() == IN_FLIGHT).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(
            queued.count(),
            IN_FLIGHT,
            "no more than IN_FLIGHT unapplied"
        );
        assert_eq!(offset().await, 0, "nothing applied, nothing passed");

        // A later batch applied first does not move the offset past an earlier one.
        queued.succeed(1).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(offset().await, 0, "the oldest batch is still applying");
        queued.succeed(0).await;
        let deadline = Instant::now() + Duration::from_secs(20);
        while offset().await != end_of(2) {
            assert!(
                Instant::now() < deadline,
                "the offset never passed batches 0 and 1"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // Two slots freed: two more batches sent.
        eventually("the pipeline refilled", || queued.count() == IN_FLIGHT + 2).await;

        // A failed task stops the offset before it; its batch and the ones after are
        // read again from the offset and sent again, the same writes.
        queued.fail(2);
        eventually("the failure reported", || {
            status.last_error.lock().unwrap().is_some()
        })
        .await;
        assert!(status
            .last_error
            .lock()
            .unwrap()
            .as_deref()
            .unwrap()
            .contains("task failed (test)"));
        queued.succeed(3).await;
        eventually("the failed batch sent again", || {
            queued.count() > IN_FLIGHT + 2
        })
        .await;
        assert_eq!(offset().await, end_of(2), "not past the failed batch");
        assert_eq!(
            queued.changes(IN_FLIGHT + 2),
            queued.changes(2),
            "sent again from the offset"
        );

        // Once tasks succeed, everything is indexed once the offset reaches the head.
        queued.auto.store(true, Ordering::Relaxed);
        // A bound on liveness, not a timing: on Meilisearch every task here is applied
        // before the next is sent, behind the other tests' tasks in its one queue.
        let deadline = Instant::now() + Duration::from_secs(180);
        while indexer::lag(&db, &consumer).await.unwrap() > 0 {
            assert!(Instant::now() < deadline, "the indexer did not catch up");
            let enqueued: Vec<usize> = (0..queued.count())
                .filter(|&uid| queued.tasks.lock().unwrap()[uid].1 == TaskState::Enqueued)
                .collect();
            for uid in enqueued {
                queued.succeed(uid).await;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(status.last_error.lock().unwrap().is_none());
        assert_eq!(
            indexed(&app, &app.app.search, workspace, "invoices").await,
            300
        );
        stop.send(true).unwrap();
        task.await.unwrap();
    }
);

backend_test!(
    async fn catching_up_with_tasks_that_take_a_while_indexes_every_event(app: TestApp) {
        // With every batch in flight, a pump sends nothing; when the batches are all
        // applied by the time it looks, the pipeline is empty although the log is not:
        // catching up (and the running indexer) must read on, not stop there.
        use rapport::search::indexer::{self, IN_FLIGHT};
        let workspace = ingest_items(&app, "acme", 300).await;
        let db = app.app.db.clone();
        let head = indexer::head(&db).await.unwrap();
        let batch = 20u64;
        assert!(head as u64 > batch * IN_FLIGHT as u64 * 3, "{head}");
        let slow = Arc::new(Queued {
            inner: app.app.search.clone(),
            tasks: std::sync::Mutex::new(Vec::new()),
            auto: AtomicBool::new(true),
            delay: Duration::from_millis(30),
            sent: std::sync::Mutex::new(Vec::new()),
        });
        let indexer = indexer::Indexer {
            search: slow.clone(),
            batch,
            ..indexer::Indexer::new(&app.app)
        };
        let read = indexer.catch_up().await.unwrap();
        assert_eq!(read as i64, head, "every event read");
        assert_eq!(
            indexer::lag(&db, &app.app.search_consumer).await.unwrap(),
            0
        );
        assert_eq!(
            indexed(&app, &app.app.search, workspace, "invoices").await,
            300
        );
    }
);

backend_test!(
    async fn a_facet_value_fed_back_as_a_filter_finds_its_count(app: TestApp) {
        let key = app.key(Role::Admin).await;
        let ana = app
            .create_customer(&key, json!({ "displayName": "Ana Souza" }))
            .await;
        for (channel, kind, text, language) in [
            (
                "HACKER_NEWS",
                "MENTION",
                "Rapport keeps the export simple",
                "en",
            ),
            (
                "HACKER_NEWS",
                "COMMENT",
                "The export is great, thanks",
                "en",
            ),
            ("EMAIL", "EMAIL", "The export is broken and slow", "en"),
            (
                "PHONE",
                "CALL",
                "El export funciona bien, muchas gracias",
                "es",
            ),
        ] {
            let input = json!({ "customerId": ana, "channel": channel, "kind": kind, "direction": "INBOUND", "text": text, "language": language });
            app.gql(&key, RECORD, json!({ "input": input })).await;
        }
        catch_up(&app).await;
        let facets =
            app.gql(&key, SEARCH, json!({ "q": "export" })).await["search"]["facets"].clone();
        assert_eq!(
            facets["channel"],
            json!([{ "value": "HACKER_NEWS", "count": 2 }, { "value": "EMAIL", "count": 1 }, { "value": "PHONE", "count": 1 }]),
            "{facets}"
        );
        let mut fed_back = 0;
        for (facet, filter) in [
            ("channel", "channels"),
            ("kind", "kinds"),
            ("language", "languages"),
            ("sentiment", "sentiments"),
        ] {
            for entry in facets[facet].as_array().unwrap() {
                let narrowed = app
                    .gql(
                        &key,
                        SEARCH,
                        json!({ "q": "export", "filter": { filter: [entry["value"].clone()] } }),
                    )
                    .await;
                assert_eq!(
                    narrowed["search"]["estimatedTotal"], entry["count"],
                    "{facet} {entry} fed back as {filter}"
                );
                fed_back += 1;
            }
        }
        let buckets = facets["sentiment"].as_array().unwrap().len();
        assert!(buckets >= 2, "positive and negative texts: {facets}");
        assert_eq!(fed_back, 3 + 4 + 2 + buckets);
    }
);
