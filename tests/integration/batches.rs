//! The set-based pipeline (`domain::batch`) on what only a batch can hold: an item and
//! its reply together, one author twice, the same external id twice, and two app
//! instances on one database committing the same new author at once.

use chrono::TimeZone;
use connectors::{Author, InboundItem};
use rapport::domain::Role;
use sea_orm::{
    ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder, TransactionTrait,
};
use serde_json::{json, Value};

use crate::backend_test;
use crate::common::TestApp;

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// A webhook source of workspace `acme` named `name`; returns its row.
async fn source(app: &TestApp, key: &str, name: &str) -> entity::source::Model {
    let input = json!({ "channel": "WEBHOOK", "name": name, "config": { "secret": SECRET } });
    let data = app
        .gql(key, "mutation($input: CreateSourceInput!) { createSource(input: $input) { source { id } } }", json!({ "input": input }))
        .await;
    let id: entity::SourceId =
        rapport::ids::decode("id", data["createSource"]["source"]["id"].as_str().unwrap()).unwrap();
    rapport::domain::source::for_webhook(&app.app.db, id)
        .await
        .unwrap()
}

fn item(id: &str, who: &str, minute: u32) -> InboundItem {
    InboundItem {
        external_id: id.into(),
        author: Author {
            platform_id: format!("acct:{who}"),
            handle: Some(format!("@{who}")),
            display_name: Some(who.into()),
            ..Author::default()
        },
        outbound: false,
        kind: "mention".into(),
        subject: None,
        text: format!("message {id} from {who}"),
        html: None,
        url: None,
        language: None,
        occurred_at: chrono::Utc
            .with_ymd_and_hms(2026, 11, 1, 12, minute, 0)
            .unwrap(),
        thread_key: None,
        in_reply_to: None,
        raw: json!({ "id": id }),
    }
}

fn reply(id: &str, who: &str, minute: u32, to: &str) -> InboundItem {
    InboundItem {
        in_reply_to: Some(to.into()),
        ..item(id, who, minute)
    }
}

async fn event_kinds(app: &TestApp) -> Vec<String> {
    entity::event::Entity::find()
        .filter(entity::event::Column::Kind.ne("source.created"))
        .order_by_asc(entity::event::Column::Seq)
        .all(&app.app.db)
        .await
        .unwrap()
        .into_iter()
        .map(|event| event.kind)
        .collect()
}

async fn interactions(app: &TestApp) -> Vec<entity::interaction::Model> {
    entity::interaction::Entity::find()
        .order_by_asc(entity::interaction::Column::OccurredAt)
        .all(&app.app.db)
        .await
        .unwrap()
}

backend_test! {
    async fn one_batch_holding_an_item_and_its_replies_threads_them_as_one_by_one_would(app: TestApp) {
        let admin = app.key(Role::Admin).await;
        let source = source(&app, &admin, "form").await;
        let answer = InboundItem { outbound: true, ..reply("c", "brand", 9, "b") };
        // A reply that comes before the item it answers is filed under that item's id,
        // and the item joins it there.
        let batch = vec![item("a", "ana", 0), reply("b", "bo", 5, "a"), answer, reply("y", "cy", 20, "x"), item("x", "dee", 15)];
        let report = rapport::ingest::ingest(&app.app.db, &source, &batch, Some("c1"), None).await.unwrap();
        // ana, bo, cy, dee; our own answer joins ana's thread and makes no customer.
        assert_eq!((report.new.len(), report.duplicates, report.new_customers), (5, 0, 4));
        let rows = interactions(&app).await;
        let by_id = |id: &str| rows.iter().find(|row| row.external_id.as_deref() == Some(id)).unwrap();
        let thread = by_id("a").conversation_id;
        assert_eq!((by_id("b").conversation_id, by_id("c").conversation_id), (thread, thread));
        assert_eq!(by_id("c").customer_id, by_id("a").customer_id, "our answer is filed under the thread's customer");
        assert_eq!(by_id("c").identity_id, None);
        assert_ne!(by_id("b").customer_id, by_id("a").customer_id);
        assert_eq!(by_id("x").conversation_id, by_id("y").conversation_id, "the later parent joins its reply's thread");
        assert_ne!(by_id("x").conversation_id, thread);
        let conversation = entity::conversation::Entity::find_by_id(thread.unwrap()).one(&app.app.db).await.unwrap().unwrap();
        assert_eq!(conversation.first_response_at, Some(batch[2].occurred_at), "the first response is our answer");
        assert_eq!(conversation.last_message_at, batch[2].occurred_at);
        assert_eq!(conversation.customer_id, by_id("a").customer_id);
        let ana = entity::customer::Entity::find_by_id(by_id("a").customer_id.unwrap()).one(&app.app.db).await.unwrap().unwrap();
        assert_eq!((ana.first_seen_at, ana.last_seen_at), (batch[0].occurred_at, batch[2].occurred_at));
        // The events one by one would append, in the same order.
        assert_eq!(
            event_kinds(&app).await,
            [
                // a: ana is new, her thread is new
                "customer.created", "conversation.created", "interaction.created",
                // b answers a: the thread moves, bo is new
                "conversation.updated", "customer.created", "interaction.created",
                // c, ours, answers b: the thread gets its first response (ana, seen later,
                // gets no event of her own: c's names her)
                "conversation.updated", "interaction.created",
                // y answers x, not stored yet: cy is new, y's thread is keyed by x
                "customer.created", "conversation.created", "interaction.created",
                // x: dee is new and joins that thread
                "customer.created", "conversation.updated", "interaction.created",
            ]
        );
        // A later batch's reply to a stored item joins its thread, and reopens it when resolved.
        // No mutation resolves a conversation yet: the row is changed as one would.
        let mut resolved: entity::conversation::ActiveModel = conversation.clone().into();
        resolved.status = sea_orm::ActiveValue::Set(entity::enums::ConversationStatus::Resolved);
        resolved.resolved_at = sea_orm::ActiveValue::Set(Some(chrono::Utc::now()));
        sea_orm::ActiveModelTrait::update(resolved, &app.app.db).await.unwrap();
        let report = rapport::ingest::ingest(&app.app.db, &source, &[reply("d", "ana", 30, "c")], Some("c2"), None).await.unwrap();
        assert_eq!((report.new.len(), report.new_customers), (1, 0));
        let rows = interactions(&app).await;
        let d = rows.iter().find(|row| row.external_id.as_deref() == Some("d")).unwrap();
        assert_eq!((d.conversation_id, d.customer_id), (thread, Some(ana.id)));
        let conversation = entity::conversation::Entity::find_by_id(thread.unwrap()).one(&app.app.db).await.unwrap().unwrap();
        assert_eq!((conversation.status, conversation.resolved_at), (entity::enums::ConversationStatus::Open, None));
        let kinds = event_kinds(&app).await;
        assert_eq!(kinds[kinds.len() - 2..], ["conversation.status_changed", "interaction.created"]);
        // Her seen times moved with the later batch all the same.
        let ana = entity::customer::Entity::find_by_id(ana.id).one(&app.app.db).await.unwrap().unwrap();
        assert_eq!((ana.first_seen_at, ana.last_seen_at), (batch[0].occurred_at, d.occurred_at));
        assert!(!kinds.contains(&"customer.updated".to_owned()), "seen times move with the interactions, without events: {kinds:?}");
    }
}

backend_test! {
    async fn the_same_author_twice_in_one_batch_is_one_customer_seen_at_both_times(app: TestApp) {
        let admin = app.key(Role::Admin).await;
        let source = source(&app, &admin, "form").await;
        let known = app.create_customer(&admin, json!({ "displayName": "Known", "contactPoints": [{ "kind": "EMAIL", "value": "known@example.com" }] })).await;
        let with_email = |id: &str, who: &str, minute: u32, email: &str| {
            let mut item = item(id, who, minute);
            item.author.email = Some(email.into());
            item.author.phone = Some("+34 600 123 456".into());
            item
        };
        let batch = vec![
            item("1", "ana", 10),
            item("2", "ana", 5),
            item("3", "ana", 20),
            // A new account with an e-mail and a phone, then another account with the
            // same phone (written differently): the same customer.
            with_email("4", "bo", 1, "bo@example.com"),
            {
                let mut item = item("5", "bo-alt", 2);
                item.author.phone = Some("0034600123456".into());
                item
            },
            // An account whose e-mail a customer of the workspace has already.
            with_email("6", "kay", 3, "KNOWN@example.com"),
        ];
        let report = rapport::ingest::ingest(&app.app.db, &source, &batch, None, None).await.unwrap();
        assert_eq!((report.new.len(), report.new_customers), (6, 2), "ana and bo are new; bo-alt is bo, kay is Known");
        let rows = interactions(&app).await;
        let customer = |id: &str| rows.iter().find(|row| row.external_id.as_deref() == Some(id)).unwrap().customer_id.unwrap();
        assert_eq!((customer("1"), customer("1")), (customer("2"), customer("3")));
        assert_eq!(customer("4"), customer("5"));
        assert_eq!(rapport::ids::encode(customer("6")), known);
        let ana = entity::customer::Entity::find_by_id(customer("1")).one(&app.app.db).await.unwrap().unwrap();
        assert_eq!((ana.first_seen_at, ana.last_seen_at), (batch[1].occurred_at, batch[2].occurred_at));
        assert_eq!(ana.display_name, "ana");
        let identities = entity::identity::Entity::find().all(&app.app.db).await.unwrap();
        assert_eq!(identities.len(), 4, "ana, bo, bo-alt, kay: one identity each");
        let points = entity::contact_point::Entity::find().order_by_asc(entity::contact_point::Column::Normalized).all(&app.app.db).await.unwrap();
        let points: Vec<_> = points.iter().map(|p| (p.normalized.as_str(), p.customer_id, p.is_primary)).collect();
        let known_id: entity::CustomerId = rapport::ids::decode("id", &known).unwrap();
        assert_eq!(points, [
            ("+34600123456", customer("4"), true),
            ("bo@example.com", customer("4"), true),
            ("known@example.com", known_id, true),
        ], "kay's phone is bo's already; nothing new for Known");
        let created = event_kinds(&app).await.iter().filter(|kind| *kind == "customer.created").count();
        assert_eq!(created, 3, "Known, ana and bo");
    }
}

backend_test! {
    async fn a_duplicate_inside_one_batch_and_across_batches_is_stored_once(app: TestApp) {
        let admin = app.key(Role::Admin).await;
        let source = source(&app, &admin, "form").await;
        let again = InboundItem { text: "an edited copy".into(), ..item("a", "ana", 1) };
        let report = rapport::ingest::ingest(&app.app.db, &source, &[item("a", "ana", 0), again, item("b", "bo", 2)], Some("c1"), None).await.unwrap();
        assert_eq!((report.new.len(), report.duplicates, report.new_customers), (2, 1, 2));
        let report = rapport::ingest::ingest(&app.app.db, &source, &[item("b", "bo", 2), item("c", "bo", 3), item("a", "ana", 0)], Some("c2"), None).await.unwrap();
        assert_eq!((report.new.len(), report.duplicates, report.new_customers), (1, 2, 0));
        let rows = interactions(&app).await;
        let ids: Vec<_> = rows.iter().map(|row| row.external_id.clone().unwrap()).collect();
        assert_eq!(ids, ["a", "b", "c"]);
        assert_eq!(rows[0].text, "message a from ana", "the first copy in the batch is the one kept");
        let created = event_kinds(&app).await.iter().filter(|kind| *kind == "interaction.created").count();
        assert_eq!(created, 3);
        let stored = rapport::domain::source::for_webhook(&app.app.db, source.id).await.unwrap();
        assert_eq!((stored.items_ingested, stored.cursor.as_deref()), (3, Some("c2")));
    }
}

backend_test! {
    async fn two_instances_committing_the_same_new_author_at_once_make_one_customer(app: TestApp) {
        let admin = app.key(Role::Admin).await;
        let first = source(&app, &admin, "first").await;
        let second = source(&app, &admin, "second").await;
        // A second app instance on the same database, with connections of its own.
        let scratch = tempfile::tempdir().unwrap();
        let mut config = (*app.app.config).clone();
        config.database_url = Some(config.effective_database_url());
        config.data_dir = scratch.path().to_owned();
        let other = rapport::App::start(config).await.unwrap();
        let batch = |prefix: &str| {
            vec![item(&format!("{prefix}-1"), "ana", 0), item(&format!("{prefix}-2"), "bo", 1), item(&format!("{prefix}-3"), "ana", 2)]
        };
        // The first batch writes its new authors and stays open.
        let txn = app.app.db.begin().await.unwrap();
        rapport::domain::source::lock_for_batch(&txn, first.id).await.unwrap();
        let mut prepared = rapport::domain::batch::unprepared(batch("one"), Default::default());
        let stored = rapport::domain::batch::store(&txn, &first, &mut prepared, &|| {}).await.unwrap();
        assert_eq!(stored.new_customers, 2);
        // The second, from the other instance, meets the same new authors meanwhile: on
        // PostgreSQL it waits on the identities, on SQLite on the write lock.
        let writer = tokio::spawn({
            let db = other.db.clone();
            let second = second.clone();
            async move {
                let txn = db.begin().await.unwrap();
                rapport::domain::source::lock_for_batch(&txn, second.id).await.unwrap();
                let mut prepared = rapport::domain::batch::unprepared(batch("two"), Default::default());
                let stored = rapport::domain::batch::store(&txn, &second, &mut prepared, &|| {}).await.unwrap();
                txn.commit().await.unwrap();
                stored
            }
        });
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        assert!(!writer.is_finished(), "the second batch waits for the first");
        txn.commit().await.unwrap();
        let stored = writer.await.unwrap();
        assert_eq!((stored.new.len(), stored.new_customers), (3, 0), "the first batch's customers won");
        assert_eq!(entity::customer::Entity::find().count(&app.app.db).await.unwrap(), 2, "one customer per author");
        assert_eq!(entity::identity::Entity::find().count(&app.app.db).await.unwrap(), 2);
        let rows = interactions(&app).await;
        let customer_of = |id: &str| rows.iter().find(|row| row.external_id.as_deref() == Some(id)).unwrap().customer_id;
        assert_eq!(customer_of("one-1"), customer_of("two-1"));
        assert_eq!(customer_of("one-2"), customer_of("two-2"));
        assert_eq!(customer_of("two-1"), customer_of("two-3"));
        // Exactly one created event per customer, none for the customers that lost.
        let created = event_kinds(&app).await.iter().filter(|kind| *kind == "customer.created").count();
        assert_eq!(created, 2);
        // Every interaction points at a live customer and identity.
        let identities: std::collections::HashSet<_> = entity::identity::Entity::find().all(&app.app.db).await.unwrap().into_iter().map(|i| i.id).collect();
        assert!(rows.iter().all(|row| row.identity_id.is_some_and(|id| identities.contains(&id))));
        other.db.close().await.ok();
    }
}

/// Publications (`Query.publications`): external id, customer, conversation; and the total.
const PUBLICATIONS: &str = "query($source: ID) { publications(sourceId: $source, first: 10) { totalCount edges { node { externalId direction customer { id } conversation { id customer { id } } } } } }";

backend_test! {
    async fn the_workspaces_own_items_are_never_a_customer_and_its_posts_are_publications(app: TestApp) {
        let admin = app.key(Role::Admin).await;
        let other_source = source(&app, &admin, "other").await;
        let source = source(&app, &admin, "brand").await;
        let ours = |id: &str, minute: u32| InboundItem { outbound: true, ..item(id, "brand", minute) };
        let our_answer = |id: &str, minute: u32, to: &str| InboundItem { outbound: true, ..reply(id, "brand", minute, to) };
        let rows_by_id = |rows: Vec<entity::interaction::Model>| move |id: &str| rows.iter().find(|row| row.external_id.as_deref() == Some(id)).unwrap().clone();

        // The set-based writer: our post p, ana answers it, we answer ana, bo answers p.
        let batch = vec![ours("p", 0), reply("q", "ana", 5, "p"), our_answer("r", 9, "q"), reply("t", "bo", 10, "p")];
        let report = rapport::ingest::ingest(&app.app.db, &source, &batch, Some("c1"), None).await.unwrap();
        assert_eq!((report.new.len(), report.new_customers), (4, 2), "ana and bo; our own account is nobody's customer");
        let by_id = rows_by_id(interactions(&app).await);
        let (p, q, r, t) = (by_id("p"), by_id("q"), by_id("r"), by_id("t"));
        assert_eq!((p.customer_id, p.identity_id), (None, None), "a publication: no customer, no identity");
        assert!(p.conversation_id.is_some());
        assert_eq!([q.conversation_id, r.conversation_id, t.conversation_id], [p.conversation_id; 3], "the answers join the publication's thread");
        assert!(q.customer_id.is_some() && t.customer_id.is_some() && q.customer_id != t.customer_id);
        assert_eq!((r.customer_id, r.identity_id), (q.customer_id, None), "our answer is filed under the customer it answers");
        let thread = entity::conversation::Entity::find_by_id(p.conversation_id.unwrap()).one(&app.app.db).await.unwrap().unwrap();
        assert_eq!(thread.customer_id, None, "a publication's thread is no one customer's");
        assert_eq!(thread.waiting_since, Some(t.occurred_at), "bo waits for an answer; ana had hers");
        assert_eq!(thread.first_response_at, Some(p.occurred_at));
        let brand = entity::identity::Entity::find().filter(entity::identity::Column::PlatformId.eq("acct:brand")).count(&app.app.db).await.unwrap();
        assert_eq!(brand, 0, "no identity for the workspace's own account");
        assert_eq!(entity::customer::Entity::find().count(&app.app.db).await.unwrap(), 2);

        // The one-by-one path (a batch the set-based writer could not store whole) keeps
        // the same rules: our second post u, ana answers it, we answer her; and our answer
        // to her stored item q.
        let report = rapport::ingest::ingest_item_by_item(&app.app.db, &source, &[ours("u", 20), reply("v", "ana", 25, "u"), our_answer("w", 26, "v"), our_answer("x", 30, "q")]).await.unwrap();
        assert_eq!((report.new.len(), report.new_customers), (4, 0));
        let by_id = rows_by_id(interactions(&app).await);
        let (u, v, w, x) = (by_id("u"), by_id("v"), by_id("w"), by_id("x"));
        assert_eq!((u.customer_id, u.identity_id), (None, None));
        assert_ne!(u.conversation_id, p.conversation_id, "a second publication, a second thread");
        assert_eq!([v.conversation_id, w.conversation_id], [u.conversation_id; 2]);
        assert_eq!((v.customer_id, w.customer_id), (q.customer_id, q.customer_id));
        assert_eq!((x.customer_id, x.conversation_id), (q.customer_id, p.conversation_id));
        let thread = entity::conversation::Entity::find_by_id(u.conversation_id.unwrap()).one(&app.app.db).await.unwrap().unwrap();
        assert_eq!((thread.customer_id, thread.waiting_since), (None, None));
        // And the set-based writer answers a stored customer item in a publication's
        // thread under that customer too.
        rapport::ingest::ingest(&app.app.db, &source, &[our_answer("y", 40, "t")], Some("c2"), None).await.unwrap();
        let by_id = rows_by_id(interactions(&app).await);
        assert_eq!((by_id("y").customer_id, by_id("y").conversation_id), (t.customer_id, p.conversation_id));
        assert_eq!(entity::customer::Entity::find().count(&app.app.db).await.unwrap(), 2);

        // The API: publications newest first, no customer; the answers are in their
        // customers' timelines, not here.
        let data = app.gql(&admin, PUBLICATIONS, json!({})).await;
        let list = &data["publications"];
        assert_eq!(list["totalCount"], 2, "{data:#}");
        let ids: Vec<&str> = list["edges"].as_array().unwrap().iter().map(|e| e["node"]["externalId"].as_str().unwrap()).collect();
        assert_eq!(ids, ["u", "p"]);
        let node = &list["edges"][1]["node"];
        assert_eq!((&node["direction"], &node["customer"], &node["conversation"]["customer"]), (&json!("OUTBOUND"), &Value::Null, &Value::Null));
        assert_eq!(node["conversation"]["id"], json!(rapport::ids::encode(p.conversation_id.unwrap())));
        let of_other = app.gql(&admin, PUBLICATIONS, json!({ "source": rapport::ids::encode(other_source.id) })).await;
        assert_eq!(of_other["publications"]["totalCount"], 0);
        let ana = rapport::ids::encode(q.customer_id.unwrap());
        let timeline = app.gql(&admin, "query($id: ID!) { customer(id: $id) { timeline(first: 20) { edges { node { externalId } } } } }", json!({ "id": ana })).await;
        let ids: Vec<&str> = timeline["customer"]["timeline"]["edges"].as_array().unwrap().iter().map(|e| e["node"]["externalId"].as_str().unwrap()).collect();
        assert_eq!(ids, ["x", "w", "v", "r", "q"], "{timeline:#}");
        // Another workspace sees none of them.
        let stranger = app.key_in("globex", Role::Admin).await;
        let theirs = app.gql(&stranger, PUBLICATIONS, json!({})).await;
        assert_eq!(theirs["publications"]["totalCount"], 0);
        let theirs = app.gql(&stranger, PUBLICATIONS, json!({ "source": rapport::ids::encode(source.id) })).await;
        assert_eq!(theirs["publications"]["totalCount"], 0, "another workspace's source filters to nothing");
    }
}

/// Every stored column of what ingestion wrote in `workspace_id`, with ids replaced by
/// what names the row (a customer's display name, an item's external id) and the write
/// times (`created_at`, `updated_at`: the clock's) left out, `source_id` as whether it is
/// `source_id`, sorted.
async fn written(
    app: &TestApp,
    workspace_id: entity::WorkspaceId,
    source_id: entity::SourceId,
) -> Value {
    use entity::{
        contact_point, conversation, customer, duplicate_suggestion, identity, interaction,
    };
    let db = &app.app.db;
    let customers = customer::Entity::find()
        .filter(customer::Column::WorkspaceId.eq(workspace_id))
        .all(db)
        .await
        .unwrap();
    let name = |id: Option<entity::CustomerId>| -> Value {
        id.map_or(Value::Null, |id| {
            json!(customers.iter().find(|c| c.id == id).unwrap().display_name)
        })
    };
    let rows = entity::interaction::Entity::find()
        .filter(interaction::Column::WorkspaceId.eq(workspace_id))
        .all(db)
        .await
        .unwrap();
    // A conversation is named by its first item.
    let thread = |id: Option<entity::ConversationId>| -> Value {
        rows.iter()
            .filter(|row| row.conversation_id == id && id.is_some())
            .map(|row| row.external_id.clone().unwrap())
            .min()
            .map_or(Value::Null, Value::from)
    };
    let identities = identity::Entity::find()
        .filter(identity::Column::WorkspaceId.eq(workspace_id))
        .all(db)
        .await
        .unwrap();
    let own = |id: Option<entity::SourceId>| id == Some(source_id);
    let mut out = json!({
        "customers": customers.iter().map(|c| json!([c.display_name, c.given_name, c.family_name, c.lifecycle_stage, c.external_id, c.organization_id, c.custom, name(c.merged_into), c.first_seen_at, c.last_seen_at, c.birth_date, c.street, c.street2, c.locality, c.region, c.postal_code, c.country])).collect::<Vec<_>>(),
        "identities": identities.iter().map(|i| json!([i.platform_id, name(Some(i.customer_id)), i.channel, i.handle, i.display_name, i.profile_url, i.avatar_url, i.profile_key])).collect::<Vec<_>>(),
        "points": contact_point::Entity::find().filter(contact_point::Column::WorkspaceId.eq(workspace_id)).all(db).await.unwrap()
            .iter().map(|p| json!([p.normalized, name(Some(p.customer_id)), p.kind, p.value, p.label, p.verified, p.is_primary])).collect::<Vec<_>>(),
        "conversations": conversation::Entity::find().filter(conversation::Column::WorkspaceId.eq(workspace_id)).all(db).await.unwrap()
            .iter().map(|c| json!([thread(Some(c.id)), name(c.customer_id), own(c.source_id), c.thread_key, c.channel, c.subject, c.status, c.priority, c.assignee_id, c.snoozed_until, c.waiting_since, c.spam, c.first_response_at, c.resolved_at, c.last_message_at])).collect::<Vec<_>>(),
        "interactions": rows.iter().map(|r| {
            let identity = r.identity_id.map(|id| identities.iter().find(|i| i.id == id).unwrap().platform_id.clone());
            json!([r.external_id, own(r.source_id), name(r.customer_id), identity, thread(r.conversation_id), r.channel, r.direction, r.kind, r.subject, r.text, r.html, r.url, r.language, r.sentiment, r.occurred_at, r.raw, r.delivery_status, r.delivery_error])
        }).collect::<Vec<_>>(),
        "suggestions": duplicate_suggestion::Entity::find().filter(duplicate_suggestion::Column::WorkspaceId.eq(workspace_id)).all(db).await.unwrap()
            .iter().map(|s| { let mut pair = [name(Some(s.customer_a)), name(Some(s.customer_b))]; pair.sort_by_key(|v| v.to_string()); json!([pair, s.score, s.status]) }).collect::<Vec<_>>(),
    });
    for list in out.as_object_mut().unwrap().values_mut() {
        list.as_array_mut()
            .unwrap()
            .sort_by_key(|row| row.to_string());
    }
    out
}

backend_test! {
    async fn the_set_based_writer_stores_every_column_the_item_by_item_path_stores(app: TestApp) {
        // The same items through the batch writer (workspace acme) and one by one
        // (workspace globex): every column of every row written alike, the duplicate
        // suggestions among the new customers too.
        let acme = app.key(Role::Admin).await;
        let globex = app.key_in("globex", Role::Admin).await;
        let batch_source = source(&app, &acme, "form").await;
        let single_source = source(&app, &globex, "form").await;
        let rich = |id: &str, who: &str, name: &str, minute: u32| {
            let mut item = item(id, who, minute);
            item.author.display_name = Some(name.into());
            item.author.profile_url = Some(format!("https://social.example/@{who}"));
            item.author.avatar_url = Some(format!("https://social.example/{who}.png"));
            item.author.email = Some(format!("{who}@Example.com"));
            item.author.phone = Some(format!("+34 600 {:03} 222", minute + 100));
            item.html = Some(format!("<p>message {id}</p>"));
            item.url = Some(format!("https://social.example/@{who}/{id}"));
            item.subject = Some(format!("about {id}"));
            item.raw = json!({ "id": id, "nested": { "list": [1, 2.5, "three", null], "flag": true } });
            item
        };
        let threaded = |id: &str, who: &str, minute: u32, key: &str| InboundItem { thread_key: Some(key.into()), ..item(id, who, minute) };
        let first = vec![
            rich("a", "ana", "Ana López", 0),
            // A time finer than the databases keep: stored as the same microsecond by both.
            InboundItem {
                text: "thanks, that is great!".into(),
                occurred_at: chrono::Utc.with_ymd_and_hms(2026, 11, 1, 12, 5, 0).unwrap() + chrono::Duration::nanoseconds(999_999_600),
                ..reply("b", "bo", 5, "a")
            },
            InboundItem { outbound: true, ..reply("c", "brand", 9, "b") },
            item("d", "ana", 20),
            // Another account under her name and a variant of her address: a suggestion.
            InboundItem { author: Author { email: Some("ana+shop@example.com".into()), ..rich("e", "ana2", "Ana Lopez", 21).author }, ..rich("e", "ana2", "Ana Lopez", 21) },
            threaded("f", "cy", 22, "t1"),
            threaded("g", "dee", 23, "t1"),
        ];
        let second = vec![reply("h", "ana", 40, "d"), reply("i", "cy", 41, "c"), item("j", "eve", 42), threaded("k", "eve", 43, "t1")];
        for items in [&first, &second] {
            rapport::ingest::ingest(&app.app.db, &batch_source, items, None, None).await.unwrap();
            rapport::ingest::ingest_item_by_item(&app.app.db, &single_source, items).await.unwrap();
        }
        let batched = written(&app, batch_source.workspace_id, batch_source.id).await;
        let single = written(&app, single_source.workspace_id, single_source.id).await;
        assert_eq!(batched, single);
        // What was compared is what was meant to be.
        assert_eq!(batched["interactions"].as_array().unwrap().len(), 11);
        assert!(batched["interactions"].as_array().unwrap().iter().all(|row| row[1] == true), "{batched:#}");
        let bo = batched["customers"].as_array().unwrap().iter().find(|c| c[0] == "bo").unwrap().clone();
        assert_eq!(bo[8], json!("2026-11-01T12:05:00.999999Z"), "{bo}");
        let t1 = batched["conversations"].as_array().unwrap().iter().find(|c| c[0] == "f").unwrap().clone();
        assert_eq!(t1[14], json!(second[3].occurred_at), "the later batch's item joined the thread: {t1}");
        // The later batch moved Ana's seen times and the thread of d: their rows say when.
        for source in [&batch_source, &single_source] {
            let rows = interactions(&app).await;
            let h = rows.iter().find(|row| row.source_id == Some(source.id) && row.external_id.as_deref() == Some("h")).unwrap();
            let ana = entity::customer::Entity::find_by_id(h.customer_id.unwrap()).one(&app.app.db).await.unwrap().unwrap();
            assert!(ana.updated_at > ana.created_at, "{ana:?}");
            let thread = entity::conversation::Entity::find_by_id(h.conversation_id.unwrap()).one(&app.app.db).await.unwrap().unwrap();
            assert!(thread.updated_at > thread.created_at, "{thread:?}");
        }
        assert_eq!(batched["customers"].as_array().unwrap().len(), 6, "{batched:#}");
        assert_eq!(batched["suggestions"].as_array().unwrap().len(), 1, "{batched:#}");
        assert_eq!(batched["points"].as_array().unwrap().len(), 4, "{batched:#}");
        let ana = batched["customers"].as_array().unwrap().iter().find(|c| c[0] == "Ana López").unwrap().clone();
        assert_eq!((&ana[8], &ana[9], &ana[6]), (&json!(first[0].occurred_at), &json!(second[0].occurred_at), &json!({})), "{ana}");
    }
}

backend_test! {
    async fn a_workspace_s_languages_decide_what_detection_answers_on_every_write_path(app: TestApp) {
        const SETTINGS: &str = "mutation($input: UpdateWorkspaceSettingsInput!) { updateWorkspaceSettings(input: $input) { workspace { settings { languages } } } }";
        const SHORT: &str = "awesome support, problem solved in minutes";
        const RUSSIAN: &str = "Здравствуйте! Экспорт отчётов не работает уже третий день, а служба поддержки молчит. Что мне делать?";
        let key = app.key(Role::Admin).await;
        let other = app.key_in("other", Role::Admin).await;
        // A code detection does not know is refused by name, and nothing changes.
        let (code, body) = app
            .gql_error(&key, SETTINGS, json!({ "input": { "languages": ["en", "xx-klingon"] } }))
            .await;
        assert_eq!(code, "BAD_USER_INPUT", "{body:#}");
        assert_eq!(body["errors"][0]["extensions"]["field"], "languages[1]", "{body:#}");
        for (bad, field) in [
            (json!(["en", "xyz"]), "languages[1]"),
            (json!(["en\u{0}"]), "languages[0]"),
            (json!(["e".repeat(100_000)]), "languages[0]"),
            (json!(vec!["en"; 201]), "languages"),
        ] {
            let (code, body) = app.gql_error(&key, SETTINGS, json!({ "input": { "languages": bad } })).await;
            assert_eq!(code, "BAD_USER_INPUT", "{body:#}");
            assert_eq!(body["errors"][0]["extensions"]["field"], field, "{body:#}");
        }
        let set = app.gql(&key, "{ viewer { workspace { settings { languages } } } }", json!({})).await;
        assert_eq!(set["viewer"]["workspace"]["settings"]["languages"], json!([]));
        let set = app.gql(&key, SETTINGS, json!({ "input": { "languages": ["EN", "deu", "en", "af"] } })).await;
        assert_eq!(set["updateWorkspaceSettings"]["workspace"]["settings"]["languages"], json!(["afr", "de", "en"]));
        // `null` goes back to every language, `[]` too.
        let cleared = app.gql(&key, SETTINGS, json!({ "input": { "languages": null } })).await;
        assert_eq!(cleared["updateWorkspaceSettings"]["workspace"]["settings"]["languages"], json!([]));
        let set = app.gql(&key, SETTINGS, json!({ "input": { "languages": ["en", "de"] } })).await;
        assert_eq!(set["updateWorkspaceSettings"]["workspace"]["settings"]["languages"], json!(["de", "en"]));
        // Another workspace's admin changes only their own.
        let theirs = app.gql(&other, "{ viewer { workspace { settings { languages } } } }", json!({})).await;
        assert_eq!(theirs["viewer"]["workspace"]["settings"]["languages"], json!([]));

        let text = |text: &str, id: &str| InboundItem { text: text.into(), ..item(id, &format!("fan{id}"), 0) };
        // A batch large enough to be prepared on every core, a small one enriched inside
        // the store, and the item-by-item path: each detects among English and German.
        let mut large: Vec<InboundItem> = (0..70).map(|n| text(SHORT, &format!("l{n}"))).collect();
        large.push(text(RUSSIAN, "l-ru"));
        large.push(InboundItem { language: Some("fr".into()), ..text(SHORT, "l-fr") });
        let small = vec![text(SHORT, "s1"), text(RUSSIAN, "s-ru")];
        let acme = source(&app, &key, "acme hook").await;
        rapport::ingest::ingest(&app.app.db, &acme, &large, None, None).await.unwrap();
        rapport::ingest::ingest(&app.app.db, &acme, &small, None, None).await.unwrap();
        rapport::ingest::ingest_item_by_item(&app.app.db, &acme, &[text(SHORT, "o1")]).await.unwrap();
        // Another workspace keeps every language: the short post is too unsure to name,
        // the Russian one is Russian.
        let theirs = source(&app, &other, "other hook").await;
        rapport::ingest::ingest(&app.app.db, &theirs, &[text(SHORT, "t1"), text(RUSSIAN, "t-ru")], None, None).await.unwrap();
        let languages: std::collections::HashMap<String, Option<String>> = interactions(&app)
            .await
            .into_iter()
            .map(|row| (row.external_id.unwrap(), row.language))
            .collect();
        for n in 0..70 {
            assert_eq!(languages[&format!("l{n}")].as_deref(), Some("en"), "l{n}");
        }
        assert_eq!(languages["l-ru"], None);
        assert_eq!(languages["l-fr"].as_deref(), Some("fr"), "a platform's tag is kept");
        assert_eq!(languages["s1"].as_deref(), Some("en"));
        assert_eq!(languages["s-ru"], None);
        assert_eq!(languages["o1"].as_deref(), Some("en"));
        assert_eq!(languages["t1"], None);
        assert_eq!(languages["t-ru"].as_deref(), Some("ru"));

        // By hand: the same rule.
        let record = "mutation($input: RecordInteractionInput!) { recordInteraction(input: $input) { interaction { language } } }";
        let customer = app.gql(&key, "mutation { createCustomer(input: { displayName: \"Ana\" }) { customer { id } } }", json!({})).await;
        let id = customer["createCustomer"]["customer"]["id"].clone();
        let recorded = app.gql(&key, record, json!({ "input": { "customerId": id, "kind": "NOTE", "text": SHORT } })).await;
        assert_eq!(recorded["recordInteraction"]["interaction"]["language"], "en");
        // `[]` goes back to every language.
        let cleared = app.gql(&key, SETTINGS, json!({ "input": { "languages": [] } })).await;
        assert_eq!(cleared["updateWorkspaceSettings"]["workspace"]["settings"]["languages"], json!([]));
        let recorded = app.gql(&key, record, json!({ "input": { "customerId": id, "kind": "NOTE", "text": SHORT } })).await;
        assert_eq!(recorded["recordInteraction"]["interaction"]["language"], Value::Null);
    }
}
