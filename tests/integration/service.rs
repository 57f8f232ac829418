//! Service metrics and service levels: a fixed data set whose medians, p90 and breaches
//! are worked out by hand below; business hours across a weekend and a DST change;
//! grouping by day, channel and assignee; the same answer on a re-run; tenancy; bad input.
//!
//! Messages carry the times chosen here (`occurred_at`). A status or an assignment is
//! stamped with the time its event is written, so after making one through the API the
//! test moves its event's `created_at` to the chosen time (`redate`): a log written at
//! those times, without any clock in the program.

use chrono::{DateTime, TimeZone, Utc};
use connectors::{Author, InboundItem};
use rapport::domain::{self, Caller, Role};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder};
use serde_json::{json, Value};

use crate::backend_test;
use crate::common::TestApp;

fn utc(month: u32, day: u32, hour: u32, minute: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, month, day, hour, minute, 0)
        .unwrap()
}

/// A message of `thread` at `at`: the customer's, or ours when `outbound`.
fn item(thread: &str, n: u32, at: DateTime<Utc>, outbound: bool) -> InboundItem {
    InboundItem {
        external_id: format!("{thread}-{n}"),
        author: Author {
            platform_id: format!("acct:{thread}"),
            handle: Some(format!("@{thread}")),
            display_name: Some(format!("Customer {thread}")),
            ..Author::default()
        },
        outbound,
        kind: "mention".into(),
        subject: None,
        text: format!("message {n} of {thread}"),
        html: None,
        url: None,
        language: Some("en".into()),
        occurred_at: at,
        thread_key: Some(thread.into()),
        in_reply_to: None,
        raw: json!({ "id": format!("{thread}-{n}") }),
    }
}

struct Fixture {
    admin: String,
    viewer: String,
    /// Conversation ids by thread name.
    ids: std::collections::HashMap<&'static str, String>,
    ana_customer: String,
}

async fn source(app: &TestApp, admin: &str, channel: &str, config: Value) -> entity::source::Model {
    let data = app
        .gql(admin, "mutation($input: CreateSourceInput!) { createSource(input: $input) { source { id } } }",
            json!({ "input": { "channel": channel, "name": channel.to_lowercase(), "config": config } }))
        .await;
    let id: entity::SourceId =
        rapport::ids::decode("id", data["createSource"]["source"]["id"].as_str().unwrap()).unwrap();
    entity::source::Entity::find_by_id(id)
        .one(&app.app.db)
        .await
        .unwrap()
        .unwrap()
}

async fn ingest(app: &TestApp, source: &entity::source::Model, item: InboundItem) {
    rapport::ingest::ingest(&app.app.db, source, &[item], None, None)
        .await
        .unwrap();
}

/// Moves the latest `kind` event of conversation `id` to `at`.
async fn redate(app: &TestApp, id: &str, kind: &str, at: DateTime<Utc>) {
    let id: entity::ConversationId = rapport::ids::decode("id", id).unwrap();
    let event = entity::event::Entity::find()
        .filter(entity::event::Column::EntityId.eq(id.uuid()))
        .filter(entity::event::Column::Kind.eq(kind))
        .order_by_desc(entity::event::Column::Seq)
        .one(&app.app.db)
        .await
        .unwrap()
        .unwrap();
    entity::event::Entity::update_many()
        .col_expr(
            entity::event::Column::CreatedAt,
            sea_orm::sea_query::Expr::value(at),
        )
        .filter(entity::event::Column::Seq.eq(event.seq))
        .exec(&app.app.db)
        .await
        .unwrap();
}

/// The fixture's Mastodon source of `acme`.
async fn acme_mastodon(app: &TestApp) -> entity::source::Model {
    let workspace = domain::workspace::ensure(&app.app.db, "acme")
        .await
        .unwrap()
        .id;
    entity::source::Entity::find()
        .filter(entity::source::Column::WorkspaceId.eq(workspace))
        .filter(entity::source::Column::Channel.eq("mastodon"))
        .one(&app.app.db)
        .await
        .unwrap()
        .unwrap()
}

/// The id of the conversation of `thread`'s customer ("Customer <thread>"), from the inbox.
async fn conversation_of(app: &TestApp, key: &str, thread: &str) -> String {
    let data = app
        .gql(
            key,
            "{ inbox(first: 100) { edges { node { id customer { displayName } } } } }",
            json!({}),
        )
        .await;
    data["inbox"]["edges"]
        .as_array()
        .unwrap()
        .iter()
        .find(|edge| edge["node"]["customer"]["displayName"] == format!("Customer {thread}"))
        .map(|edge| edge["node"]["id"].as_str().unwrap().to_owned())
        .unwrap()
}

const RESOLVE: &str = "mutation($id: ID!) { setConversationStatus(input: {conversationId: $id, status: RESOLVED}) { conversation { status } } }";
const ASSIGN: &str = "mutation($id: ID!, $user: ID) { assignConversation(input: {conversationId: $id, assigneeId: $user}) { conversation { id } } }";

async fn resolve(app: &TestApp, key: &str, id: &str, at: DateTime<Utc>) {
    app.gql(key, RESOLVE, json!({ "id": id })).await;
    redate(app, id, "conversation.status_set", at).await;
}

/// The data set, in workspace `acme`, time zone Europe/Madrid (summer time ends on Sunday
/// 2026-10-25), business hours Monday to Friday 09:00–17:00. Times are UTC: 08:00Z is
/// 10:00 in Madrid before the change and 09:00 after it.
///
/// Rules: MASTODON first response 1 h (3,600 s) and resolution 1 day (86,400 s),
/// wall-clock; any other channel first response 8 business hours (28,800 s).
///
/// | thread | channel  | assignee | messages (in / out)                          | status |
/// |--------|----------|----------|----------------------------------------------|--------|
/// | m1     | mastodon | Carmen   | in 10-19 08:00, out 08:30                    | resolved 10-19 10:00 |
/// | m2     | mastodon | Carmen   | in 10-20 08:00, out 10:00; in 10-22 08:00    | resolved 10-21 12:00, reopened by the 10-22 message, resolved 10-22 09:00 |
/// | m3     | mastodon | —        | in 10-21 08:00, out 08:10                    | open |
/// | m4     | mastodon | —        | in 10-24 10:00 (Saturday), never answered    | open |
/// | w1     | webhook  | Dan      | in Fri 10-23 14:00 (16:00 CEST), out Mon 10-26 09:00 (10:00 CET) | open |
/// | w2     | webhook  | Dan      | in Mon 10-26 08:00 (09:00 CET), out Tue 10-27 15:00 (16:00 CET)  | open |
/// | w3     | webhook  | —        | in 10-15 08:00 (before the range), out 10-19 09:00 | resolved 10-20 08:00 |
async fn fixture(app: &TestApp) -> Fixture {
    let admin = app.key_in("acme", Role::Admin).await;
    let agent = app.key_in("acme", Role::Agent).await;
    let viewer = app.key_in("acme", Role::Viewer).await;
    let workspace = domain::workspace::ensure(&app.app.db, "acme")
        .await
        .unwrap()
        .id;
    let owner = Caller::owner_without_key(workspace, "test");
    let mut users = Vec::new();
    for (name, email) in [
        ("Carmen", "carmen@acme.example"),
        ("Dan", "dan@acme.example"),
    ] {
        let new = domain::user::NewUser {
            name,
            email,
            role: Role::Agent,
        };
        let user = domain::user::create(&app.app.db, &owner, new)
            .await
            .unwrap();
        users.push(rapport::ids::encode(user.id));
    }
    let hours: Vec<Value> = ["MONDAY", "TUESDAY", "WEDNESDAY", "THURSDAY", "FRIDAY"]
        .iter()
        .map(|day| json!({ "weekday": day, "open": "09:00", "close": "17:00" }))
        .collect();
    app.gql(&admin, "mutation($input: SetBusinessHoursInput!) { setBusinessHours(input: $input) { businessHours { timeZone } } }",
        json!({ "input": { "timeZone": "Europe/Madrid", "hours": hours } })).await;
    let set_rule =
        "mutation($input: SetSlaRuleInput!) { setSlaRule(input: $input) { slaRule { channel } } }";
    app.gql(&admin, set_rule, json!({ "input": { "channel": "MASTODON", "firstResponseSecs": 3600, "resolutionSecs": 86400 } })).await;
    app.gql(
        &admin,
        set_rule,
        json!({ "input": { "firstResponseSecs": 28800, "businessHoursOnly": true } }),
    )
    .await;

    let mastodon = source(
        app,
        &admin,
        "MASTODON",
        json!({ "base_url": "https://m.example", "access_token": "t0k3n-secret" }),
    )
    .await;
    let webhook = source(
        app,
        &admin,
        "WEBHOOK",
        json!({ "secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw" }),
    )
    .await;

    // In the order things happened, so each reopening finds its thread resolved.
    ingest(app, &webhook, item("w3", 1, utc(10, 15, 8, 0), false)).await;
    ingest(app, &mastodon, item("m1", 1, utc(10, 19, 8, 0), false)).await;
    ingest(app, &mastodon, item("m1", 2, utc(10, 19, 8, 30), true)).await;
    ingest(app, &webhook, item("w3", 2, utc(10, 19, 9, 0), true)).await;
    ingest(app, &mastodon, item("m2", 1, utc(10, 20, 8, 0), false)).await;
    ingest(app, &mastodon, item("m2", 2, utc(10, 20, 10, 0), true)).await;
    ingest(app, &mastodon, item("m3", 1, utc(10, 21, 8, 0), false)).await;
    ingest(app, &mastodon, item("m3", 2, utc(10, 21, 8, 10), true)).await;
    ingest(app, &webhook, item("w1", 1, utc(10, 23, 14, 0), false)).await;
    ingest(app, &mastodon, item("m4", 1, utc(10, 24, 10, 0), false)).await;
    ingest(app, &webhook, item("w1", 2, utc(10, 26, 9, 0), true)).await;
    ingest(app, &webhook, item("w2", 1, utc(10, 26, 8, 0), false)).await;
    ingest(app, &webhook, item("w2", 2, utc(10, 27, 15, 0), true)).await;

    let data = app
        .gql(
            &admin,
            "{ inbox(first: 100) { edges { node { id customer { id displayName } } } } }",
            json!({}),
        )
        .await;
    let mut ids = std::collections::HashMap::new();
    let mut ana_customer = String::new();
    for edge in data["inbox"]["edges"].as_array().unwrap() {
        let name = edge["node"]["customer"]["displayName"].as_str().unwrap();
        let thread: &'static str = ["m1", "m2", "m3", "m4", "w1", "w2", "w3"]
            .into_iter()
            .find(|thread| name == format!("Customer {thread}"))
            .unwrap();
        if thread == "m2" {
            ana_customer = edge["node"]["customer"]["id"].as_str().unwrap().to_owned();
        }
        ids.insert(thread, edge["node"]["id"].as_str().unwrap().to_owned());
    }
    assert_eq!(ids.len(), 7);

    resolve(app, &agent, &ids["m1"], utc(10, 19, 10, 0)).await;
    resolve(app, &agent, &ids["w3"], utc(10, 20, 8, 0)).await;
    resolve(app, &agent, &ids["m2"], utc(10, 21, 12, 0)).await;
    // The customer writes again: the thread reopens at their message's time.
    ingest(app, &mastodon, item("m2", 3, utc(10, 22, 8, 0), false)).await;
    resolve(app, &agent, &ids["m2"], utc(10, 22, 9, 0)).await;
    for (thread, user) in [
        ("m1", &users[0]),
        ("m2", &users[0]),
        ("w1", &users[1]),
        ("w2", &users[1]),
    ] {
        app.gql(&agent, ASSIGN, json!({ "id": ids[thread], "user": user }))
            .await;
        redate(
            app,
            &ids[thread],
            "conversation.assigned",
            utc(10, 19, 7, 0),
        )
        .await;
    }
    Fixture {
        admin,
        viewer,
        ids,
        ana_customer,
    }
}

const FIGURES: &str =
    "firstResponse { count medianSecs p90Secs } resolution { count medianSecs p90Secs }
    volumeIn volumeOut opened resolved backlog
    slaBreaches { count firstResponse resolution conversationCount conversationIds }";

fn metrics_query() -> String {
    format!(
        "query($range: ServiceRangeInput!, $groupBy: ServiceGroupBy, $filter: ServiceMetricsFilterInput) {{
          serviceMetrics(range: $range, groupBy: $groupBy, filter: $filter) {{
            timeZone groupBy
            total {{ {FIGURES} }}
            groups {{ key date channel assignee {{ name }} sourceId figures {{ {FIGURES} }} }}
            backlog {{ date at open }}
          }}
        }}"
    )
}

/// Monday 2026-10-19 00:00 to Monday 2026-11-02 00:00, Madrid time: two weeks.
fn range() -> Value {
    json!({ "from": "2026-10-18T22:00:00Z", "to": "2026-11-01T23:00:00Z" })
}

fn stats(count: i64, median: Option<i64>, p90: Option<i64>) -> Value {
    json!({ "count": count, "medianSecs": median, "p90Secs": p90 })
}

fn sorted_ids(value: &Value) -> Vec<String> {
    let mut ids: Vec<String> = value
        .as_array()
        .unwrap()
        .iter()
        .map(|id| id.as_str().unwrap().to_owned())
        .collect();
    ids.sort();
    ids
}

fn ids_of(fixture: &Fixture, threads: &[&str]) -> Vec<String> {
    let mut ids: Vec<String> = threads.iter().map(|t| fixture.ids[t].clone()).collect();
    ids.sort();
    ids
}

backend_test! {
    async fn service_metrics_match_figures_worked_out_by_hand(app: TestApp) {
        let fixture = fixture(&app).await;
        let data = app.gql(&fixture.viewer, &metrics_query(), json!({ "range": range() })).await;
        let metrics = &data["serviceMetrics"];
        assert_eq!(metrics["timeZone"], "Europe/Madrid");
        let total = &metrics["total"];
        // First responses, measured for conversations whose first inbound message is in
        // the range (w3's is not; m4 has none):
        //   m1 08:30−08:00 = 1,800; m2 10:00−08:00 = 7,200; m3 08:10−08:00 = 600;
        //   w1 Fri 14:00 → Mon 09:00 = 2 d 19 h = 241,200; w2 Mon 08:00 → Tue 15:00 = 31 h = 111,600.
        //   Sorted 600, 1,800, 7,200, 111,600, 241,200: median rank ⌈5×0.5⌉ = 3 → 7,200;
        //   p90 rank ⌈5×0.9⌉ = 5 → 241,200.
        assert_eq!(total["firstResponse"], stats(5, Some(7200), Some(241_200)));
        // Resolutions in the range: m1 10:00−08:00 = 7,200; m2 10-20 08:00 → 10-21 12:00
        //   = 28 h = 100,800; m2 again 10-22 08:00 → 09:00 = 3,600; w3 10-15 08:00 →
        //   10-20 08:00 = 5 d = 432,000. Sorted 3,600, 7,200, 100,800, 432,000: median rank
        //   2 → 7,200; p90 rank ⌈3.6⌉ = 4 → 432,000.
        assert_eq!(total["resolution"], stats(4, Some(7200), Some(432_000)));
        // In: m1, m2 ×2, m3, m4, w1, w2 = 7 (w3's is before the range). Out: m1, m2, m3,
        // w1, w2, w3 = 6.
        assert_eq!((total["volumeIn"].as_i64(), total["volumeOut"].as_i64()), (Some(7), Some(6)));
        // Opened: m1, m2, m2's reopening, m3, m4, w1, w2 = 7; resolved: 4 (above); open at
        // the end: m3, m4, w1, w2 = 4.
        assert_eq!((total["opened"].as_i64(), total["resolved"].as_i64(), total["backlog"].as_i64()), (Some(7), Some(4), Some(4)));
        // Breaches. Mastodon (1 h): m2's 7,200 > 3,600; m4 unanswered for days. Its
        // resolution target (1 day): m2's 100,800 > 86,400. Webhook (8 business hours,
        // 28,800 s): w1 = Fri 16:00–17:00 CEST + Mon 09:00–10:00 CET = 7,200, within
        // though 67 wall-clock hours passed over the weekend and the DST change;
        // w2 = Mon 09:00–17:00 + Tue 09:00–16:00 CET = 15 h = 54,000 > 28,800.
        let breaches = &total["slaBreaches"];
        assert_eq!((breaches["count"].as_i64(), breaches["firstResponse"].as_i64(), breaches["resolution"].as_i64(), breaches["conversationCount"].as_i64()),
            (Some(4), Some(3), Some(1), Some(3)));
        assert_eq!(sorted_ids(&breaches["conversationIds"]), ids_of(&fixture, &["m2", "m4", "w2"]));

        // The backlog at the end of each local day: w3 until 10-20; then one of m2/m3;
        // w1 from Friday 10-23, m4 from Saturday, w2 from Monday 10-26.
        let backlog = metrics["backlog"].as_array().unwrap();
        let open: Vec<i64> = backlog.iter().map(|point| point["open"].as_i64().unwrap()).collect();
        assert_eq!(open, vec![1, 1, 1, 1, 2, 3, 3, 4, 4, 4, 4, 4, 4, 4]);
        // Sunday 10-25 has 25 hours: it ends at 23:00Z, the day before at 22:00Z.
        assert_eq!((backlog[5]["date"].as_str(), backlog[5]["at"].as_str()), (Some("2026-10-24"), Some("2026-10-24T22:00:00+00:00")));
        assert_eq!((backlog[6]["date"].as_str(), backlog[6]["at"].as_str()), (Some("2026-10-25"), Some("2026-10-25T23:00:00+00:00")));
        assert_eq!(backlog[13]["at"].as_str(), Some("2026-11-01T23:00:00+00:00"));
        assert!(metrics["groups"].as_array().unwrap().is_empty());

        // A re-run over the same log gives the same answer, and so it does after later
        // changes: resolving m3 now writes a new event, after the range.
        let again = app.gql(&fixture.viewer, &metrics_query(), json!({ "range": range() })).await;
        assert_eq!(again, data);
        app.gql(&fixture.admin, RESOLVE, json!({ "id": fixture.ids["m3"] })).await;
        let later = app.gql(&fixture.viewer, &metrics_query(), json!({ "range": range() })).await;
        assert_eq!(later, data);
    }
}

backend_test! {
    async fn changing_the_service_levels_does_not_rewrite_past_figures(app: TestApp) {
        let fixture = fixture(&app).await;
        let before = app.gql(&fixture.viewer, &metrics_query(), json!({ "range": range() })).await;
        assert_eq!(before["serviceMetrics"]["total"]["slaBreaches"]["count"], 4);

        // Today the admin loosens Mastodon's first response to a day and tightens its
        // resolution to 10 minutes, drops the any-channel rule, and opens around the clock
        // (same zone, so days are the same days).
        let all_day: Vec<Value> = ["MONDAY", "TUESDAY", "WEDNESDAY", "THURSDAY", "FRIDAY", "SATURDAY", "SUNDAY"]
            .iter()
            .map(|day| json!({ "weekday": day, "open": "00:00", "close": "24:00" }))
            .collect();
        app.gql(&fixture.admin, "mutation { setSlaRule(input: {channel: MASTODON, firstResponseSecs: 86400, resolutionSecs: 600}) { slaRule { channel } } }", json!({})).await;
        app.gql(&fixture.admin, "mutation { deleteSlaRule(input: {channel: null}) { deleted } }", json!({})).await;
        app.gql(&fixture.admin, "mutation($input: SetBusinessHoursInput!) { setBusinessHours(input: $input) { businessHours { timeZone } } }",
            json!({ "input": { "timeZone": "Europe/Madrid", "hours": all_day } })).await;
        let rules = app.gql(&fixture.viewer, "{ slaRules { channel firstResponseSecs resolutionSecs } }", json!({})).await;
        assert_eq!(rules["slaRules"], json!([{ "channel": "MASTODON", "firstResponseSecs": 86400, "resolutionSecs": 600 }]));

        // The two weeks already measured keep every figure, breaches included: each wait
        // is judged by the levels in force when it started.
        let after = app.gql(&fixture.viewer, &metrics_query(), json!({ "range": range() })).await;
        assert_eq!(after, before);
        let customer = "query($id: ID!) { customer(id: $id) { metrics { service(range: {from: \"2026-10-18T22:00:00Z\", to: \"2026-11-01T23:00:00Z\"}) { slaBreaches { firstResponse resolution } } } } }";
        let m2 = app.gql(&fixture.viewer, customer, json!({ "id": fixture.ana_customer })).await;
        assert_eq!(m2["customer"]["metrics"]["service"]["slaBreaches"], json!({ "firstResponse": 1, "resolution": 1 }), "m2's breaches stand");

        // A conversation that starts after the change is judged by the new levels: a first
        // response after 2 h is within a day (the old hour would have breached), and a
        // resolution after 3 h is over 10 minutes (the old day would not have).
        let mastodon = acme_mastodon(&app).await;
        ingest(&app, &mastodon, item("m5", 1, utc(11, 3, 8, 0), false)).await;
        ingest(&app, &mastodon, item("m5", 2, utc(11, 3, 10, 0), true)).await;
        let m5 = conversation_of(&app, &fixture.admin, "m5").await;
        resolve(&app, &fixture.admin, &m5, utc(11, 3, 11, 0)).await;
        let week = json!({ "from": "2026-11-02T23:00:00Z", "to": "2026-11-09T23:00:00Z" });
        let data = app.gql(&fixture.viewer, &metrics_query(), json!({ "range": week })).await;
        let total = &data["serviceMetrics"]["total"];
        assert_eq!(total["firstResponse"], stats(1, Some(7200), Some(7200)));
        assert_eq!(total["resolution"], stats(1, Some(10_800), Some(10_800)));
        assert_eq!((total["slaBreaches"]["firstResponse"].as_i64(), total["slaBreaches"]["resolution"].as_i64()), (Some(0), Some(1)));
        assert_eq!(sorted_ids(&total["slaBreaches"]["conversationIds"]), vec![m5]);

        // History imported after the change is judged by the levels at its import, whatever
        // its own date: m6's first response of 2 h on 10-28 is within the new day (the
        // hour in force on 10-28 would have breached), so the figures of past ranges move
        // only by what is added to them.
        ingest(&app, &mastodon, item("m6", 1, utc(10, 28, 8, 0), false)).await;
        ingest(&app, &mastodon, item("m6", 2, utc(10, 28, 10, 0), true)).await;
        let day = json!({ "from": "2026-10-27T23:00:00Z", "to": "2026-10-28T23:00:00Z" });
        let data = app.gql(&fixture.viewer, &metrics_query(), json!({ "range": day })).await;
        let total = &data["serviceMetrics"]["total"];
        assert_eq!(total["firstResponse"], stats(1, Some(7200), Some(7200)));
        assert_eq!(total["slaBreaches"]["firstResponse"], 0);

        // Each change is in the log with who made it and what it replaced.
        let changes = entity::event::Entity::find()
            .filter(entity::event::Column::Kind.is_in(["sla_rule.set", "sla_rule.deleted", "business_hours.set"]))
            .order_by_asc(entity::event::Column::Seq)
            .all(&app.app.db)
            .await
            .unwrap();
        let kinds: Vec<&str> = changes.iter().map(|change| change.kind.as_str()).collect();
        assert_eq!(kinds, ["business_hours.set", "sla_rule.set", "sla_rule.set", "sla_rule.set", "sla_rule.deleted", "business_hours.set"]);
        let loosened = &changes[3].payload;
        assert_eq!(loosened["channel"], "mastodon");
        assert_eq!(loosened["before"], json!({ "first_response_secs": 3600, "resolution_secs": 86400, "business_hours_only": false }));
        assert_eq!(loosened["after"], json!({ "first_response_secs": 86400, "resolution_secs": 600, "business_hours_only": false }));
        assert_eq!(loosened["actor"]["name"], "admin-key");
        assert_eq!(changes[4].payload["after"], json!(null));
        assert_eq!(changes[5].payload["before"]["time_zone"], "Europe/Madrid");
        assert_eq!(changes[5].payload["after"]["hours"].as_array().map(Vec::len), Some(7));
    }
}

backend_test! {
    async fn service_metrics_group_by_day_channel_and_assignee(app: TestApp) {
        let fixture = fixture(&app).await;
        let query = metrics_query();

        let data = app.gql(&fixture.viewer, &query, json!({ "range": range(), "groupBy": "CHANNEL" })).await;
        let groups = data["serviceMetrics"]["groups"].as_array().unwrap();
        assert_eq!(groups.len(), 2);
        let (mastodon, webhook) = (&groups[0], &groups[1]);
        assert_eq!((mastodon["key"].as_str(), mastodon["channel"].as_str()), (Some("mastodon"), Some("MASTODON")));
        assert_eq!(webhook["channel"], "WEBHOOK");
        let m = &mastodon["figures"];
        // Mastodon: first responses 600, 1,800, 7,200 → median rank 2 = 1,800, p90 rank
        // ⌈2.7⌉ = 3 = 7,200; resolutions 3,600, 7,200, 100,800 → 7,200 and 100,800.
        assert_eq!(m["firstResponse"], stats(3, Some(1800), Some(7200)));
        assert_eq!(m["resolution"], stats(3, Some(7200), Some(100_800)));
        // In: m1, m2 ×2, m3, m4; out: m1, m2, m3. Opened m1, m2 twice, m3, m4; open m3, m4.
        assert_eq!((m["volumeIn"].as_i64(), m["volumeOut"].as_i64(), m["opened"].as_i64(), m["resolved"].as_i64(), m["backlog"].as_i64()),
            (Some(5), Some(3), Some(5), Some(3), Some(2)));
        assert_eq!((m["slaBreaches"]["count"].as_i64(), m["slaBreaches"]["firstResponse"].as_i64(), m["slaBreaches"]["resolution"].as_i64()), (Some(3), Some(2), Some(1)));
        assert_eq!(sorted_ids(&m["slaBreaches"]["conversationIds"]), ids_of(&fixture, &["m2", "m4"]));
        let w = &webhook["figures"];
        // Webhook: 111,600 and 241,200 → median rank 1 = 111,600, p90 rank 2 = 241,200;
        // w3's one resolution, 432,000.
        assert_eq!(w["firstResponse"], stats(2, Some(111_600), Some(241_200)));
        assert_eq!(w["resolution"], stats(1, Some(432_000), Some(432_000)));
        assert_eq!((w["volumeIn"].as_i64(), w["volumeOut"].as_i64(), w["opened"].as_i64(), w["resolved"].as_i64(), w["backlog"].as_i64()),
            (Some(2), Some(3), Some(2), Some(1), Some(2)));
        assert_eq!(sorted_ids(&w["slaBreaches"]["conversationIds"]), ids_of(&fixture, &["w2"]));

        let data = app.gql(&fixture.viewer, &query, json!({ "range": range(), "groupBy": "ASSIGNEE" })).await;
        let groups = data["serviceMetrics"]["groups"].as_array().unwrap();
        let by_name = |name: Option<&str>| {
            groups.iter().find(|g| g["assignee"]["name"].as_str() == name).unwrap()["figures"].clone()
        };
        assert_eq!(groups.len(), 3);
        // Carmen (m1, m2): 1,800 and 7,200 → median 1,800, p90 7,200; resolutions as
        // Mastodon's; m2 breached both targets.
        let carmen = by_name(Some("Carmen"));
        assert_eq!(carmen["firstResponse"], stats(2, Some(1800), Some(7200)));
        assert_eq!(carmen["resolution"], stats(3, Some(7200), Some(100_800)));
        assert_eq!((carmen["volumeIn"].as_i64(), carmen["volumeOut"].as_i64(), carmen["backlog"].as_i64(), carmen["slaBreaches"]["count"].as_i64()),
            (Some(3), Some(2), Some(0), Some(2)));
        // Dan (w1, w2): as the webhook's first responses, nothing resolved, both open.
        let dan = by_name(Some("Dan"));
        assert_eq!(dan["firstResponse"], stats(2, Some(111_600), Some(241_200)));
        assert_eq!(dan["resolution"], stats(0, None, None));
        assert_eq!((dan["opened"].as_i64(), dan["backlog"].as_i64(), dan["slaBreaches"]["count"].as_i64()), (Some(2), Some(2), Some(1)));
        // Nobody's (m3, m4, w3): 600; w3's 432,000; m4's missing answer.
        let nobody = by_name(None);
        assert_eq!(nobody["firstResponse"], stats(1, Some(600), Some(600)));
        assert_eq!(nobody["resolution"], stats(1, Some(432_000), Some(432_000)));
        assert_eq!((nobody["volumeIn"].as_i64(), nobody["volumeOut"].as_i64(), nobody["backlog"].as_i64()), (Some(2), Some(2), Some(2)));
        assert_eq!(sorted_ids(&nobody["slaBreaches"]["conversationIds"]), ids_of(&fixture, &["m4"]));

        let data = app.gql(&fixture.viewer, &query, json!({ "range": range(), "groupBy": "DAY" })).await;
        let groups = data["serviceMetrics"]["groups"].as_array().unwrap();
        // Every local day of the range, in order, each with the backlog at its end.
        assert_eq!(groups.len(), 14);
        assert_eq!((groups[0]["date"].as_str(), groups[13]["date"].as_str()), (Some("2026-10-19"), Some("2026-11-01")));
        let backlog: Vec<i64> = groups.iter().map(|g| g["figures"]["backlog"].as_i64().unwrap()).collect();
        assert_eq!(backlog, vec![1, 1, 1, 1, 2, 3, 3, 4, 4, 4, 4, 4, 4, 4]);
        // Monday 10-19: m1 answered in 1,800 and resolved in 7,200; in m1; out m1 and w3.
        let monday = &groups[0]["figures"];
        assert_eq!((monday["firstResponse"].clone(), monday["resolution"].clone()), (stats(1, Some(1800), Some(1800)), stats(1, Some(7200), Some(7200))));
        assert_eq!((monday["volumeIn"].as_i64(), monday["volumeOut"].as_i64(), monday["opened"].as_i64()), (Some(1), Some(2), Some(1)));
        // Friday 10-23: w1's first message (its response is counted on the day it waited from).
        assert_eq!(groups[4]["figures"]["firstResponse"], stats(1, Some(241_200), Some(241_200)));

        let data = app.gql(&fixture.viewer, &query, json!({ "range": range(), "groupBy": "WEEK" })).await;
        let groups = data["serviceMetrics"]["groups"].as_array().unwrap();
        // Week of 10-19: m1, m2, m3, w1 answered (600, 1,800, 7,200, 241,200 → median rank 2
        // = 1,800); week of 10-26: w2.
        assert_eq!(groups.len(), 2);
        assert_eq!(groups[0]["figures"]["firstResponse"], stats(4, Some(1800), Some(241_200)));
        assert_eq!(groups[1]["figures"]["firstResponse"], stats(1, Some(111_600), Some(111_600)));
        assert_eq!((groups[0]["figures"]["backlog"].as_i64(), groups[1]["figures"]["backlog"].as_i64()), (Some(3), Some(4)));

        // A filter narrows every figure: Mastodon alone is the Mastodon group.
        let data = app.gql(&fixture.viewer, &query, json!({ "range": range(), "filter": { "channel": "MASTODON" } })).await;
        assert_eq!(data["serviceMetrics"]["total"], mastodon["figures"]);

        // The same numbers for one customer in the 360 view (m2's author).
        let data = app.gql(&fixture.viewer, &format!("query($id: ID!, $range: ServiceRangeInput!) {{ customer(id: $id) {{ metrics {{ service(range: $range) {{ {FIGURES} }} }} }} }}"),
            json!({ "id": fixture.ana_customer, "range": range() })).await;
        let m2 = &data["customer"]["metrics"]["service"];
        assert_eq!(m2["firstResponse"], stats(1, Some(7200), Some(7200)));
        assert_eq!(m2["resolution"], stats(2, Some(3600), Some(100_800)));
        assert_eq!((m2["volumeIn"].as_i64(), m2["volumeOut"].as_i64(), m2["opened"].as_i64(), m2["backlog"].as_i64()), (Some(2), Some(1), Some(2), Some(0)));
        assert_eq!(sorted_ids(&m2["slaBreaches"]["conversationIds"]), ids_of(&fixture, &["m2"]));
    }
}

backend_test! {
    async fn service_levels_are_workspace_scoped_and_refuse_bad_input(app: TestApp) {
        let fixture = fixture(&app).await;
        let other = app.key_in("globex", Role::Admin).await;
        // Workspace B sees none of A's numbers, rules or hours.
        let data = app.gql(&other, &metrics_query(), json!({ "range": range(), "groupBy": "CHANNEL" })).await;
        let total = &data["serviceMetrics"]["total"];
        assert_eq!((total["volumeIn"].as_i64(), total["opened"].as_i64(), total["backlog"].as_i64(), total["slaBreaches"]["count"].as_i64()), (Some(0), Some(0), Some(0), Some(0)));
        assert_eq!(total["firstResponse"], stats(0, None, None));
        assert_eq!(data["serviceMetrics"]["groups"], json!([]));
        assert_eq!(data["serviceMetrics"]["timeZone"], "UTC");
        let rules = "{ slaRules { channel firstResponseSecs resolutionSecs businessHoursOnly } businessHours { timeZone hours { weekday open close } } }";
        let theirs = app.gql(&other, rules, json!({})).await;
        assert_eq!(theirs["slaRules"], json!([]));
        assert_eq!(theirs["businessHours"]["timeZone"], "UTC");
        // B's changes are B's own: A's rules stay as they were.
        let ours_before = app.gql(&fixture.viewer, rules, json!({})).await;
        assert_eq!(ours_before["slaRules"], json!([
            { "channel": null, "firstResponseSecs": 28800, "resolutionSecs": null, "businessHoursOnly": true },
            { "channel": "MASTODON", "firstResponseSecs": 3600, "resolutionSecs": 86400, "businessHoursOnly": false },
        ]));
        let delete = "mutation($channel: Channel) { deleteSlaRule(input: {channel: $channel}) { deleted } }";
        let data = app.gql(&other, delete, json!({ "channel": "MASTODON" })).await;
        assert_eq!(data["deleteSlaRule"]["deleted"], false);
        app.gql(&other, "mutation { setSlaRule(input: {channel: MASTODON, firstResponseSecs: 60}) { slaRule { channel } } }", json!({})).await;
        app.gql(&other, "mutation { setBusinessHours(input: {timeZone: \"Asia/Tokyo\", hours: []}) { businessHours { timeZone } } }", json!({})).await;
        assert_eq!(app.gql(&fixture.viewer, rules, json!({})).await, ours_before);
        let theirs = app.gql(&other, rules, json!({})).await;
        assert_eq!(theirs["slaRules"][0]["firstResponseSecs"], 60);
        assert_eq!(theirs["businessHours"], json!({ "timeZone": "Asia/Tokyo", "hours": [] }));
        // A fixed number of statements whatever the log holds (no query per
        // conversation): B's empty workspace costs what A's seven conversations do.
        let statements = |key: String| {
            let app = &app;
            async move {
                let before = app.statements();
                app.gql(&key, &metrics_query(), json!({ "range": range(), "groupBy": "CHANNEL" })).await;
                app.statements() - before
            }
        };
        let (empty, full) = (statements(other.clone()).await, statements(fixture.viewer.clone()).await);
        assert_eq!(full, empty, "statements for an empty and a full workspace");
        assert!(full <= 6, "{full} statements");
        // A customer of A is no customer of B.
        let data = app.gql(&other, "query($id: ID!) { customer(id: $id) { metrics { service(range: {from: \"2026-10-01T00:00:00Z\", to: \"2026-11-01T00:00:00Z\"}) { volumeIn } } } }",
            json!({ "id": fixture.ana_customer })).await;
        assert_eq!(data["customer"], json!(null));
        // Setting a rule again replaces it (one rule a channel); deleting it works once.
        app.gql(&fixture.admin, "mutation { setSlaRule(input: {channel: MASTODON, firstResponseSecs: 7200}) { slaRule { channel } } }", json!({})).await;
        let ours = app.gql(&fixture.viewer, rules, json!({})).await;
        assert_eq!(ours["slaRules"][1], json!({ "channel": "MASTODON", "firstResponseSecs": 7200, "resolutionSecs": null, "businessHoursOnly": false }));
        assert_eq!(app.gql(&fixture.admin, delete, json!({ "channel": null })).await["deleteSlaRule"]["deleted"], true);
        assert_eq!(app.gql(&fixture.admin, delete, json!({ "channel": null })).await["deleteSlaRule"]["deleted"], false);

        // Viewers read but do not change.
        let (code, _) = app.gql_error(&fixture.viewer, "mutation { setSlaRule(input: {firstResponseSecs: 60}) { slaRule { channel } } }", json!({})).await;
        assert_eq!(code, "FORBIDDEN");
        let (code, body) = app.gql_error(&fixture.viewer, "mutation { setBusinessHours(input: {timeZone: \"Nowhere/Else\", hours: []}) { businessHours { timeZone } } }", json!({})).await;
        assert_eq!(code, "FORBIDDEN", "the role is checked before the input: {body:#}");

        // Bad input names its field.
        let set_hours = "mutation($input: SetBusinessHoursInput!) { setBusinessHours(input: $input) { businessHours { timeZone } } }";
        let cases = [
            (json!({ "timeZone": "Nowhere/Else", "hours": [] }), "timeZone"),
            (json!({ "timeZone": "UTC", "hours": [{ "weekday": "MONDAY", "open": "17:00", "close": "09:00" }] }), "hours[0].close"),
            (json!({ "timeZone": "UTC", "hours": [{ "weekday": "MONDAY", "open": "09:00", "close": "09:00" }] }), "hours[0].close"),
            (json!({ "timeZone": "UTC", "hours": [{ "weekday": "MONDAY", "open": "09:00", "close": "13:00" }, { "weekday": "MONDAY", "open": "12:00", "close": "17:00" }] }), "hours[1]"),
            (json!({ "timeZone": "UTC", "hours": [{ "weekday": "MONDAY", "open": "9am", "close": "17:00" }] }), "hours[0].open"),
        ];
        for (input, field) in cases {
            let (code, body) = app.gql_error(&fixture.admin, set_hours, json!({ "input": input })).await;
            assert_eq!((code.as_str(), body["errors"][0]["extensions"]["field"].as_str()), ("BAD_USER_INPUT", Some(field)), "{body:#}");
        }
        let (_, body) = app.gql_error(&fixture.admin, set_hours, json!({ "input": { "timeZone": "UTC", "hours": [{ "weekday": "MONDAY", "open": "09:00", "close": "13:00" }, { "weekday": "MONDAY", "open": "12:00", "close": "17:00" }] } })).await;
        insta::assert_json_snapshot!("service_overlapping_hours", body);
        let (_, body) = app.gql_error(&fixture.admin, set_hours, json!({ "input": { "timeZone": "Nowhere/Else", "hours": [] } })).await;
        insta::assert_json_snapshot!("service_bad_time_zone", body);
        for (input, field) in [
            (json!({ "channel": "EMAIL" }), "firstResponseSecs"),
            (json!({ "firstResponseSecs": 0 }), "firstResponseSecs"),
            (json!({ "resolutionSecs": -5 }), "resolutionSecs"),
        ] {
            let (code, body) = app.gql_error(&fixture.admin, "mutation($input: SetSlaRuleInput!) { setSlaRule(input: $input) { slaRule { channel } } }", json!({ "input": input })).await;
            assert_eq!((code.as_str(), body["errors"][0]["extensions"]["field"].as_str()), ("BAD_USER_INPUT", Some(field)), "{body:#}");
        }
        for bad in [
            json!({ "from": "2026-11-01T00:00:00Z", "to": "2026-11-01T00:00:00Z" }),
            json!({ "from": "2026-11-01T00:00:00Z", "to": "2026-10-01T00:00:00Z" }),
            json!({ "from": "2020-01-01T00:00:00Z", "to": "2026-10-01T00:00:00Z" }),
        ] {
            let (code, body) = app.gql_error(&fixture.viewer, &metrics_query(), json!({ "range": bad })).await;
            assert_eq!((code.as_str(), body["errors"][0]["extensions"]["field"].as_str()), ("BAD_USER_INPUT", Some("range.to")), "{body:#}");
        }
        let (_, body) = app.gql_error(&fixture.viewer, &metrics_query(), json!({ "range": { "from": "2026-11-01T00:00:00Z", "to": "2026-10-01T00:00:00Z" } })).await;
        insta::assert_json_snapshot!("service_range_backwards", body);
    }
}

backend_test! {
    async fn a_late_message_reopens_after_the_resolve_it_follows_in_the_log(app: TestApp) {
        let fixture = fixture(&app).await;
        let mastodon = acme_mastodon(&app).await;
        // m5: the customer writes at 08:00, an agent resolves at 09:00, then the customer's
        // message written at 08:59 arrives (polling lag) and reopens the conversation. The
        // log has the reopening after the resolve, so the conversation is open at the end.
        ingest(&app, &mastodon, item("m5", 1, utc(10, 28, 8, 0), false)).await;
        let m5 = conversation_of(&app, &fixture.admin, "m5").await;
        resolve(&app, &fixture.admin, &m5, utc(10, 28, 9, 0)).await;
        ingest(&app, &mastodon, item("m5", 2, utc(10, 28, 8, 59), false)).await;
        let status = app.gql(&fixture.admin, "query($id: ID!) { node(id: $id) { ... on Conversation { status } } }", json!({ "id": m5 })).await;
        assert_eq!(status["node"]["status"], "OPEN");

        let data = app.gql(&fixture.viewer, &metrics_query(), json!({ "range": range() })).await;
        let total = &data["serviceMetrics"]["total"];
        // The fixture's 7 openings and 4 open at the end, plus m5's opening, its reopening,
        // and m5 open at the end; its resolution (08:00 → 09:00) counts too.
        assert_eq!((total["opened"].as_i64(), total["resolved"].as_i64(), total["backlog"].as_i64()), (Some(9), Some(5), Some(5)));
        let backlog = data["serviceMetrics"]["backlog"].as_array().unwrap();
        assert_eq!(backlog.last().unwrap()["open"].as_i64(), Some(5));
        // Wednesday 10-28 ends with m5 open (the reopening took the resolve's time, 09:00).
        assert_eq!((backlog[9]["date"].as_str(), backlog[9]["open"].as_i64()), (Some("2026-10-28"), Some(5)));
    }
}

backend_test! {
    async fn customer_service_figures_of_a_page_cost_the_statements_of_one(app: TestApp) {
        let fixture = fixture(&app).await;
        let query = format!("query($n: Int!, $range: ServiceRangeInput!) {{ customers(first: $n) {{ nodes {{ id metrics {{ service(range: $range) {{ {FIGURES} }} }} }} }} }}");
        let run = |n: i64| {
            let (app, query, key) = (&app, &query, fixture.viewer.clone());
            async move {
                let before = app.statements();
                let data = app.gql(&key, query, json!({ "n": n, "range": range() })).await;
                (app.statements() - before, data)
            }
        };
        let (two, small) = run(2).await;
        let (twenty, large) = run(20).await;
        let nodes = large["customers"]["nodes"].as_array().unwrap();
        assert_eq!((small["customers"]["nodes"].as_array().unwrap().len(), nodes.len()), (2, 7));
        assert_eq!(twenty, two, "statements for 7 customers and for 2");
        // Each customer's figures are its own: the batch answers what one customer's read
        // does (m2's author, as the 360 test checks).
        for node in nodes {
            let one = app.gql(&fixture.viewer, &format!("query($id: ID!, $range: ServiceRangeInput!) {{ customer(id: $id) {{ metrics {{ service(range: $range) {{ {FIGURES} }} }} }} }}"),
                json!({ "id": node["id"], "range": range() })).await;
            assert_eq!(one["customer"]["metrics"]["service"], node["metrics"]["service"]);
        }
        let ana = nodes.iter().find(|node| node["id"] == fixture.ana_customer.as_str()).unwrap();
        assert_eq!(ana["metrics"]["service"]["resolved"].as_i64(), Some(2));
        let volumes: i64 = nodes.iter().map(|node| node["metrics"]["service"]["volumeIn"].as_i64().unwrap()).sum();
        assert_eq!(volumes, 7, "every inbound message of the range, each with its customer");
    }
}
