//! Service levels and service metrics: the workspace's SLA rules, its business hours and
//! time zone (`service_settings`), the business-hour arithmetic the rules count in, and
//! `metrics`, which reads first-response and resolution times, volumes, backlog and SLA
//! breaches from the event log.
//!
//! Metrics read the log, never the current rows, so a past figure cannot change when a
//! conversation changes later, and a re-run over the same log gives the same numbers. One
//! statement reads the log's facts the metrics need (the JSON fields projected in SQL,
//! never the messages' text); pairing a first response with its inbound message and a
//! resolution with its opening, and counting business seconds in the workspace's zone,
//! happen in Rust, where the zone rules live.
//!
//! The time of a fact: a message's `occurred_at` (when it was written, also for an import of
//! old mail); a conversation's opening is its first message's time, a reopening by a new
//! message that message's time; a status someone set, or a snooze that ran out, the time
//! its event was written.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::str::FromStr;

use chrono::{DateTime, Datelike, Duration, NaiveDate, NaiveDateTime, TimeZone, Utc};
use chrono_tz::Tz;
use connectors::Channel;
use sea_orm::sea_query::{Expr, OnConflict};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DatabaseBackend, EntityTrait as _,
    FromQueryResult, QueryFilter, QueryOrder, QuerySelect,
};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::event::EventKind;
use super::{Caller, Role};
use crate::error::{Error, Result};
use entity::{ConversationId, CustomerId, SourceId, UserId, WorkspaceId};

string_enum!(
    /// A day of the week, for business hours.
    Weekday {
        Monday = "monday",
        Tuesday = "tuesday",
        Wednesday = "wednesday",
        Thursday = "thursday",
        Friday = "friday",
        Saturday = "saturday",
        Sunday = "sunday",
    }
);

impl Weekday {
    fn of(day: chrono::Weekday) -> Weekday {
        match day {
            chrono::Weekday::Mon => Weekday::Monday,
            chrono::Weekday::Tue => Weekday::Tuesday,
            chrono::Weekday::Wed => Weekday::Wednesday,
            chrono::Weekday::Thu => Weekday::Thursday,
            chrono::Weekday::Fri => Weekday::Friday,
            chrono::Weekday::Sat => Weekday::Saturday,
            chrono::Weekday::Sun => Weekday::Sunday,
        }
    }
}

string_enum!(
    /// How `serviceMetrics` groups its figures.
    ServiceGroupBy {
        Day = "day",
        Week = "week",
        Channel = "channel",
        Assignee = "assignee",
        Source = "source",
    }
);

/// The longest range metrics answer for: a year and a bit, so DAY groups stay a page.
pub const MAX_RANGE_DAYS: i64 = 400;
/// The most breaching conversation ids a group lists (its count has them all).
pub const MAX_BREACH_IDS: usize = 100;
/// The longest SLA target: a year.
const MAX_TARGET_SECS: i64 = 366 * 24 * 3600;

/// One opening interval of a weekday, in minutes after local midnight (`close` up to
/// 1440, the day's end).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Interval {
    pub weekday: Weekday,
    pub open: u32,
    pub close: u32,
}

/// The workspace's time zone and business hours. Without stored settings: UTC, Monday to
/// Friday 09:00–17:00.
#[derive(Clone, Debug, PartialEq)]
pub struct BusinessHours {
    pub time_zone: Tz,
    pub hours: Vec<Interval>,
}

impl Default for BusinessHours {
    fn default() -> BusinessHours {
        let weekdays = [
            Weekday::Monday,
            Weekday::Tuesday,
            Weekday::Wednesday,
            Weekday::Thursday,
            Weekday::Friday,
        ];
        BusinessHours {
            time_zone: Tz::UTC,
            hours: weekdays
                .into_iter()
                .map(|weekday| Interval {
                    weekday,
                    open: 9 * 60,
                    close: 17 * 60,
                })
                .collect(),
        }
    }
}

/// An interval as stored in `service_settings.hours`.
#[derive(Serialize, Deserialize)]
struct StoredInterval {
    weekday: String,
    open: String,
    close: String,
}

/// `HH:MM` of minutes after midnight (`24:00` for the day's end).
pub fn format_minutes(minutes: u32) -> String {
    format!("{:02}:{:02}", minutes / 60, minutes % 60)
}

/// Minutes after midnight of `HH:MM` (00:00 to 24:00), or `BAD_USER_INPUT` naming `field`.
pub fn parse_minutes(field: &str, text: &str) -> Result<u32> {
    let bad = || {
        Error::field(
            field,
            format!("{field} must be a time of day as HH:MM, from 00:00 to 24:00; got {text:?}"),
        )
    };
    let (hours, minutes) = text.trim().split_once(':').ok_or_else(bad)?;
    if hours.len() != 2 || minutes.len() != 2 {
        return Err(bad());
    }
    let hours: u32 = hours.parse().map_err(|_| bad())?;
    let minutes: u32 = minutes.parse().map_err(|_| bad())?;
    if minutes > 59 || hours > 24 || (hours == 24 && minutes != 0) {
        return Err(bad());
    }
    Ok(hours * 60 + minutes)
}

/// An IANA zone by name, or `BAD_USER_INPUT` naming `field`.
pub fn parse_zone(field: &str, name: &str) -> Result<Tz> {
    Tz::from_str(name.trim()).map_err(|_| {
        Error::field(
            field,
            format!("{field} must be an IANA time zone such as Europe/Madrid or UTC; got {name:?}"),
        )
    })
}

impl BusinessHours {
    /// Checked business hours: every interval closes after it opens, and no two of one
    /// weekday overlap (`BAD_USER_INPUT` naming `hours[i]`).
    pub fn new(time_zone: Tz, mut hours: Vec<Interval>) -> Result<BusinessHours> {
        for (index, interval) in hours.iter().enumerate() {
            if interval.close <= interval.open {
                return Err(Error::field(
                    format!("hours[{index}].close"),
                    format!(
                        "hours[{index}].close ({}) must come after open ({})",
                        format_minutes(interval.close),
                        format_minutes(interval.open)
                    ),
                ));
            }
        }
        let mut order: Vec<usize> = (0..hours.len()).collect();
        order.sort_by_key(|&i| (hours[i].weekday, hours[i].open));
        for pair in order.windows(2) {
            let (a, b) = (hours[pair[0]], hours[pair[1]]);
            if a.weekday == b.weekday && b.open < a.close {
                let index = pair[0].max(pair[1]);
                return Err(Error::field(
                    format!("hours[{index}]"),
                    format!(
                        "hours[{index}] overlaps another interval of {}: {}–{} and {}–{}",
                        a.weekday.as_str().to_uppercase(),
                        format_minutes(a.open),
                        format_minutes(a.close),
                        format_minutes(b.open),
                        format_minutes(b.close)
                    ),
                ));
            }
        }
        hours.sort_by_key(|interval| (interval.weekday, interval.open));
        Ok(BusinessHours { time_zone, hours })
    }

    /// The business seconds between `start` and `end` (0 when `end` is not after `start`):
    /// the parts of that span inside an interval, each interval placed on its local date in
    /// the zone, so a day of a DST change counts the hours it really has.
    pub fn seconds_between(&self, start: DateTime<Utc>, end: DateTime<Utc>) -> i64 {
        if end <= start || self.hours.is_empty() {
            return 0;
        }
        let zone = self.time_zone;
        // A day either side: an interval of a local date can reach into the UTC day before
        // or after.
        let first = start.with_timezone(&zone).date_naive() - Duration::days(1);
        let last = end.with_timezone(&zone).date_naive() + Duration::days(1);
        let mut total = 0;
        for date in first.iter_days().take_while(|date| *date <= last) {
            let weekday = Weekday::of(date.weekday());
            for interval in self.hours.iter().filter(|i| i.weekday == weekday) {
                let open = local_instant(zone, date, interval.open).max(start);
                let close = local_instant(zone, date, interval.close).min(end);
                if close > open {
                    total += (close - open).num_seconds();
                }
            }
        }
        total
    }

    fn to_stored(&self) -> serde_json::Value {
        let hours: Vec<StoredInterval> = self
            .hours
            .iter()
            .map(|interval| StoredInterval {
                weekday: interval.weekday.as_str().to_owned(),
                open: format_minutes(interval.open),
                close: format_minutes(interval.close),
            })
            .collect();
        serde_json::to_value(hours).unwrap_or_default()
    }

    fn from_stored(row: &entity::service_settings::Model) -> Result<BusinessHours> {
        let broken = || {
            Error::Internal(format!(
                "stored business hours of {} do not read",
                row.workspace_id
            ))
        };
        let time_zone = Tz::from_str(&row.time_zone).map_err(|_| broken())?;
        let stored: Vec<StoredInterval> =
            serde_json::from_value(row.hours.clone()).map_err(|_| broken())?;
        let hours = stored
            .iter()
            .map(|interval| {
                Ok(Interval {
                    weekday: Weekday::parse(&interval.weekday).ok_or_else(broken)?,
                    open: parse_minutes("open", &interval.open).map_err(|_| broken())?,
                    close: parse_minutes("close", &interval.close).map_err(|_| broken())?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(BusinessHours { time_zone, hours })
    }
}

/// The instant of `minutes` after midnight of local `date` in `zone`. A time the clocks
/// passed twice (DST ends) is its first passing; a time they skipped (DST starts) is the
/// moment they jumped, the first local minute after it that exists.
fn local_instant(zone: Tz, date: NaiveDate, minutes: u32) -> DateTime<Utc> {
    let midnight: NaiveDateTime = date.and_time(chrono::NaiveTime::MIN);
    let mut local = midnight + Duration::minutes(i64::from(minutes));
    // No zone skips more than a day; the bound only keeps a corrupt zone from looping.
    for _ in 0..1_440 {
        if let Some(instant) = zone.from_local_datetime(&local).earliest() {
            return instant.with_timezone(&Utc);
        }
        local += Duration::minutes(1);
    }
    Utc.from_utc_datetime(&local)
}

/// The workspace's business hours (the defaults when none were set). Any role.
pub async fn business_hours(db: &impl ConnectionTrait, caller: &Caller) -> Result<BusinessHours> {
    hours_of(db, caller.workspace_id).await
}

async fn hours_of(db: &impl ConnectionTrait, workspace_id: WorkspaceId) -> Result<BusinessHours> {
    let row = super::scoped::<entity::service_settings::Entity>(workspace_id)
        .one(db)
        .await?;
    match row {
        Some(row) => BusinessHours::from_stored(&row),
        None => Ok(BusinessHours::default()),
    }
}

/// Replaces the workspace's time zone and business hours (admin role). `BAD_USER_INPUT`
/// naming `timeZone` or `hours[i]` for an unknown zone, an interval that does not close
/// after it opens, or two that overlap.
pub async fn set_business_hours(
    db: &impl ConnectionTrait,
    caller: &Caller,
    hours: BusinessHours,
) -> Result<BusinessHours> {
    caller.require(Role::Admin, "setting business hours")?;
    let hours = BusinessHours::new(hours.time_zone, hours.hours)?;
    use entity::service_settings::{ActiveModel, Column, Entity};
    let row = ActiveModel {
        workspace_id: Set(caller.workspace_id),
        time_zone: Set(hours.time_zone.name().to_owned()),
        hours: Set(hours.to_stored()),
        updated_at: Set(super::now()),
    };
    Entity::insert(row)
        .on_conflict(
            OnConflict::column(Column::WorkspaceId)
                .update_columns([Column::TimeZone, Column::Hours, Column::UpdatedAt])
                .to_owned(),
        )
        .exec_without_returning(db)
        .await?;
    Ok(hours)
}

/// A service-level target: for one channel, or (`channel: None`) for every channel
/// without a rule of its own.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SlaRule {
    pub channel: Option<Channel>,
    pub first_response_secs: Option<i64>,
    pub resolution_secs: Option<i64>,
    pub business_hours_only: bool,
    pub updated_at: DateTime<Utc>,
}

/// The stored key of "any channel".
const ANY_CHANNEL: &str = "*";

impl SlaRule {
    fn from_row(row: entity::sla_rule::Model) -> SlaRule {
        SlaRule {
            channel: Channel::parse(&row.channel),
            first_response_secs: row.first_response_secs,
            resolution_secs: row.resolution_secs,
            business_hours_only: row.business_hours_only,
            updated_at: row.updated_at,
        }
    }
}

fn channel_key(channel: Option<Channel>) -> &'static str {
    channel.map_or(ANY_CHANNEL, Channel::as_str)
}

/// The workspace's SLA rules, the any-channel rule first. Any role.
pub async fn sla_rules(db: &impl ConnectionTrait, caller: &Caller) -> Result<Vec<SlaRule>> {
    rules_of(db, caller.workspace_id).await
}

async fn rules_of(db: &impl ConnectionTrait, workspace_id: WorkspaceId) -> Result<Vec<SlaRule>> {
    use entity::sla_rule::{Column, Entity};
    Ok(super::scoped::<Entity>(workspace_id)
        .order_by_asc(Column::Channel)
        .all(db)
        .await?
        .into_iter()
        .map(SlaRule::from_row)
        .collect())
}

/// What `setSlaRule` asks for.
pub struct NewSlaRule {
    pub channel: Option<Channel>,
    pub first_response_secs: Option<i64>,
    pub resolution_secs: Option<i64>,
    pub business_hours_only: bool,
}

/// Sets the rule of `rule.channel`, replacing the one it had (admin role; the primary key
/// (workspace, channel) and `ON CONFLICT` keep one rule a channel). `BAD_USER_INPUT` for a
/// rule without a target or a target outside 1 second to a year.
pub async fn set_sla_rule(
    db: &impl ConnectionTrait,
    caller: &Caller,
    rule: NewSlaRule,
) -> Result<SlaRule> {
    caller.require(Role::Admin, "setting an SLA rule")?;
    for (field, value) in [
        ("firstResponseSecs", rule.first_response_secs),
        ("resolutionSecs", rule.resolution_secs),
    ] {
        if value.is_some_and(|secs| !(1..=MAX_TARGET_SECS).contains(&secs)) {
            return Err(Error::field(
                field,
                format!("{field} must lie between 1 and {MAX_TARGET_SECS} seconds (a year)"),
            ));
        }
    }
    if rule.first_response_secs.is_none() && rule.resolution_secs.is_none() {
        return Err(Error::field(
            "firstResponseSecs",
            "give firstResponseSecs, resolutionSecs or both: a rule without a target measures nothing",
        ));
    }
    use entity::sla_rule::{ActiveModel, Column, Entity};
    let row = entity::sla_rule::Model {
        workspace_id: caller.workspace_id,
        channel: channel_key(rule.channel).to_owned(),
        first_response_secs: rule.first_response_secs,
        resolution_secs: rule.resolution_secs,
        business_hours_only: rule.business_hours_only,
        updated_at: super::now(),
    };
    Entity::insert(ActiveModel::from(row.clone()))
        .on_conflict(
            OnConflict::columns([Column::WorkspaceId, Column::Channel])
                .update_columns([
                    Column::FirstResponseSecs,
                    Column::ResolutionSecs,
                    Column::BusinessHoursOnly,
                    Column::UpdatedAt,
                ])
                .to_owned(),
        )
        .exec_without_returning(db)
        .await?;
    Ok(SlaRule::from_row(row))
}

/// Deletes the rule of `channel` (admin role); `false` when there was none.
pub async fn delete_sla_rule(
    db: &impl ConnectionTrait,
    caller: &Caller,
    channel: Option<Channel>,
) -> Result<bool> {
    caller.require(Role::Admin, "deleting an SLA rule")?;
    use entity::sla_rule::{Column, Entity};
    let deleted = Entity::delete_many()
        .filter(Column::WorkspaceId.eq(caller.workspace_id))
        .filter(Column::Channel.eq(channel_key(channel)))
        .exec(db)
        .await?;
    Ok(deleted.rows_affected > 0)
}

/// What metrics are asked about.
#[derive(Clone, Debug)]
pub struct MetricsQuery {
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub group_by: Option<ServiceGroupBy>,
    pub channel: Option<Channel>,
    pub assignee_id: Option<UserId>,
    pub source_id: Option<SourceId>,
}

/// Durations in seconds: how many were measured, their median and 90th percentile
/// (nearest rank: the smallest value with at least half, or 90 %, of the values at or
/// below it), `None` when none were.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Durations {
    pub count: i64,
    pub median: Option<i64>,
    pub p90: Option<i64>,
}

impl Durations {
    fn of(mut values: Vec<i64>) -> Durations {
        values.sort_unstable();
        Durations {
            count: values.len() as i64,
            median: nearest_rank(&values, 50),
            p90: nearest_rank(&values, 90),
        }
    }
}

/// The `percent` percentile of sorted `values` by nearest rank.
fn nearest_rank(values: &[i64], percent: usize) -> Option<i64> {
    if values.is_empty() {
        return None;
    }
    let rank = (values.len() * percent).div_ceil(100).max(1);
    values.get(rank - 1).copied()
}

/// SLA breaches: of first response, of resolution, and the conversations (sorted by id,
/// at most [`MAX_BREACH_IDS`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Breaches {
    pub first_response: i64,
    pub resolution: i64,
    pub conversations: Vec<ConversationId>,
    pub conversation_count: i64,
}

/// The figures of one group, or of the whole answer.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Figures {
    pub first_response: Durations,
    pub resolution: Durations,
    pub volume_in: i64,
    pub volume_out: i64,
    pub opened: i64,
    pub resolved: i64,
    pub backlog: i64,
    pub breaches: Breaches,
}

/// What a group is: a local day or week (its first day, a Monday), a channel, an assignee
/// or a source (`None`: nobody's, or no source).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum GroupKey {
    Day(NaiveDate),
    Week(NaiveDate),
    Channel(Option<&'static str>),
    Assignee(Option<UserId>),
    Source(Option<SourceId>),
}

/// The open conversations at one moment (the end of a local day, or `to`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BacklogPoint {
    pub date: NaiveDate,
    pub at: DateTime<Utc>,
    pub open: i64,
}

/// The answer of [`metrics`].
#[derive(Clone, Debug, PartialEq)]
pub struct Metrics {
    pub time_zone: Tz,
    pub total: Figures,
    pub groups: Vec<(GroupKey, Figures)>,
    /// At the end of each local day of the range (the last one at `to`).
    pub backlog: Vec<BacklogPoint>,
}

/// Service metrics of the caller's workspace over `query`'s range (any role).
pub async fn metrics(
    db: &impl ConnectionTrait,
    caller: &Caller,
    query: &MetricsQuery,
) -> Result<Metrics> {
    check_range(query.from, query.to)?;
    let settings = hours_of(db, caller.workspace_id).await?;
    let rules = rules_of(db, caller.workspace_id).await?;
    let log = read_log(db, caller.workspace_id, None).await?;
    Ok(compute(&log, &settings, &rules, query))
}

/// The same figures for one customer's conversations and messages (no groups).
pub async fn customer_metrics(
    db: &impl ConnectionTrait,
    caller: &Caller,
    customer: CustomerId,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<Metrics> {
    check_range(from, to)?;
    let settings = hours_of(db, caller.workspace_id).await?;
    let rules = rules_of(db, caller.workspace_id).await?;
    let log = read_log(db, caller.workspace_id, Some(customer)).await?;
    let query = MetricsQuery {
        from,
        to,
        group_by: None,
        channel: None,
        assignee_id: None,
        source_id: None,
    };
    Ok(compute(&log, &settings, &rules, &query))
}

fn check_range(from: DateTime<Utc>, to: DateTime<Utc>) -> Result<()> {
    if to <= from {
        return Err(Error::field(
            "range.to",
            "range.to must come after range.from",
        ));
    }
    if to - from > Duration::days(MAX_RANGE_DAYS) {
        return Err(Error::field(
            "range.to",
            format!("a range spans at most {MAX_RANGE_DAYS} days: ask for several"),
        ));
    }
    Ok(())
}

/// The kinds of event metrics read.
const LOG_KINDS: [EventKind; 6] = [
    EventKind::InteractionCreated,
    EventKind::ConversationCreated,
    EventKind::ConversationStatusChanged,
    EventKind::ConversationStatusSet,
    EventKind::ConversationWoken,
    EventKind::ConversationAssigned,
];

/// The payload fields metrics read, projected in SQL.
const LOG_FIELDS: [&str; 9] = [
    "id",
    "conversation_id",
    "direction",
    "channel",
    "occurred_at",
    "last_message_at",
    "status",
    "assignee_id",
    "source_id",
];

#[derive(Debug, FromQueryResult)]
struct LogRow {
    seq: i64,
    kind: String,
    created_at: DateTime<Utc>,
    f_id: Option<String>,
    f_conversation_id: Option<String>,
    f_direction: Option<String>,
    f_channel: Option<String>,
    f_occurred_at: Option<String>,
    f_last_message_at: Option<String>,
    f_status: Option<String>,
    f_assignee_id: Option<String>,
    f_source_id: Option<String>,
}

/// One statement: the workspace's metric facts in log order (of one customer's
/// conversations and messages when `customer` is given).
async fn read_log(
    db: &impl ConnectionTrait,
    workspace_id: WorkspaceId,
    customer: Option<CustomerId>,
) -> Result<Vec<LogRow>> {
    use entity::event::{Column, Entity};
    let backend = db.get_database_backend();
    let field = |name: &str| match backend {
        DatabaseBackend::Postgres => format!("payload->>'{name}'"),
        _ => format!("json_extract(payload, '$.{name}')"),
    };
    let mut select = super::scoped::<Entity>(workspace_id)
        .select_only()
        .column(Column::Seq)
        .column(Column::Kind)
        .column(Column::CreatedAt);
    for name in LOG_FIELDS {
        select = select.column_as(Expr::cust(field(name)), format!("f_{name}"));
    }
    select = select.filter(Column::Kind.is_in(LOG_KINDS.map(EventKind::as_str)));
    if let Some(customer) = customer {
        // A UUID's own text: nothing of the caller's reaches the SQL.
        let uuid: Uuid = customer.uuid();
        select = select.filter(Expr::cust(format!("{} = '{uuid}'", field("customer_id"))));
    }
    Ok(select
        .order_by_asc(Column::Seq)
        .into_model::<LogRow>()
        .all(db)
        .await?)
}

fn instant(text: &Option<String>) -> Option<DateTime<Utc>> {
    text.as_deref()
        .and_then(|text| DateTime::parse_from_rfc3339(text).ok())
        .map(|at| at.with_timezone(&Utc))
}

fn uuid_of(text: &Option<String>) -> Option<Uuid> {
    text.as_deref().and_then(|text| Uuid::parse_str(text).ok())
}

/// A conversation as the log tells it up to `to`.
#[derive(Default)]
struct Thread {
    channel: Option<&'static str>,
    assignee: Option<UserId>,
    source: Option<SourceId>,
    /// (time, seq, resolved?) of each status fact.
    statuses: Vec<(DateTime<Utc>, i64, bool)>,
    first_inbound: Option<DateTime<Utc>>,
    /// Outbound message times, to find the first one after the first inbound.
    outbound: Vec<DateTime<Utc>>,
}

impl Thread {
    fn key(&self, by: ServiceGroupBy) -> Option<GroupKey> {
        match by {
            ServiceGroupBy::Channel => Some(GroupKey::Channel(self.channel)),
            ServiceGroupBy::Assignee => Some(GroupKey::Assignee(self.assignee)),
            ServiceGroupBy::Source => Some(GroupKey::Source(self.source)),
            ServiceGroupBy::Day | ServiceGroupBy::Week => None,
        }
    }

    /// Whether the conversation was open (created and not resolved) at `at`.
    fn open_at(&self, at: DateTime<Utc>) -> bool {
        self.statuses
            .iter()
            .take_while(|(time, _, _)| *time <= at)
            .last()
            .is_some_and(|(_, _, resolved)| !resolved)
    }

    /// (start, end) of each resolution: from the opening, or the reopening after the last
    /// resolution, to a status RESOLVED.
    fn resolutions(&self) -> Vec<(DateTime<Utc>, DateTime<Utc>)> {
        let mut spans = Vec::new();
        let mut opened: Option<DateTime<Utc>> = None;
        for &(at, _, resolved) in &self.statuses {
            match (resolved, opened) {
                (true, Some(start)) => {
                    spans.push((start, at));
                    opened = None;
                }
                (false, None) => opened = Some(at),
                _ => {}
            }
        }
        spans
    }

    /// The starts of each opening (the creation and every reopening).
    fn openings(&self) -> Vec<DateTime<Utc>> {
        let mut starts = Vec::new();
        let mut open = false;
        for &(at, _, resolved) in &self.statuses {
            if !resolved && !open {
                starts.push(at);
            }
            open = !resolved;
        }
        starts
    }

    fn first_response(&self) -> Option<(DateTime<Utc>, Option<DateTime<Utc>>)> {
        let inbound = self.first_inbound?;
        let reply = self
            .outbound
            .iter()
            .copied()
            .filter(|at| *at >= inbound)
            .min();
        Some((inbound, reply))
    }
}

/// A message in the range, for the volumes.
struct Message {
    at: DateTime<Utc>,
    inbound: bool,
    channel: Option<&'static str>,
    source: Option<SourceId>,
    conversation: Option<ConversationId>,
}

/// Accumulates one group's figures.
#[derive(Default)]
struct Tally {
    first_response: Vec<i64>,
    resolution: Vec<i64>,
    volume_in: i64,
    volume_out: i64,
    opened: i64,
    resolved: i64,
    backlog: i64,
    first_response_breaches: i64,
    resolution_breaches: i64,
    breaching: BTreeSet<ConversationId>,
}

impl Tally {
    fn figures(self) -> Figures {
        Figures {
            first_response: Durations::of(self.first_response),
            resolution: Durations::of(self.resolution),
            volume_in: self.volume_in,
            volume_out: self.volume_out,
            opened: self.opened,
            resolved: self.resolved,
            backlog: self.backlog,
            breaches: Breaches {
                first_response: self.first_response_breaches,
                resolution: self.resolution_breaches,
                conversation_count: self.breaching.len() as i64,
                conversations: self.breaching.into_iter().take(MAX_BREACH_IDS).collect(),
            },
        }
    }
}

/// The rule for `channel`: its own, else the any-channel rule.
fn rule_for<'a>(rules: &'a [SlaRule], channel: Option<&'static str>) -> Option<&'a SlaRule> {
    let own = channel.and_then(|name| {
        rules
            .iter()
            .find(|rule| rule.channel.map(Channel::as_str) == Some(name))
    });
    own.or_else(|| rules.iter().find(|rule| rule.channel.is_none()))
}

/// The seconds a rule counts from `start` to `end`: business seconds or wall-clock ones.
fn counted(rule: &SlaRule, hours: &BusinessHours, start: DateTime<Utc>, end: DateTime<Utc>) -> i64 {
    if rule.business_hours_only {
        hours.seconds_between(start, end)
    } else {
        (end - start).num_seconds()
    }
}

/// The figures of `log` (pure: the same log, settings and query give the same answer).
fn compute(
    log: &[LogRow],
    hours: &BusinessHours,
    rules: &[SlaRule],
    query: &MetricsQuery,
) -> Metrics {
    let (from, to) = (query.from, query.to);
    let mut threads: HashMap<ConversationId, Thread> = HashMap::new();
    let mut messages: Vec<Message> = Vec::new();
    for row in log {
        let Some(kind) = EventKind::parse(&row.kind) else {
            continue;
        };
        if kind == EventKind::InteractionCreated {
            let Some(at) = instant(&row.f_occurred_at) else {
                continue;
            };
            if at >= to {
                continue;
            }
            let inbound = row.f_direction.as_deref() == Some("inbound");
            let conversation = uuid_of(&row.f_conversation_id).map(ConversationId::from_uuid);
            if let Some(id) = conversation {
                let thread = threads.entry(id).or_default();
                if inbound {
                    thread.first_inbound = Some(thread.first_inbound.map_or(at, |t| t.min(at)));
                } else {
                    thread.outbound.push(at);
                }
            }
            if at >= from {
                messages.push(Message {
                    at,
                    inbound,
                    channel: row
                        .f_channel
                        .as_deref()
                        .and_then(Channel::parse)
                        .map(Channel::as_str),
                    source: uuid_of(&row.f_source_id).map(SourceId::from_uuid),
                    conversation,
                });
            }
            continue;
        }
        let Some(id) = uuid_of(&row.f_id).map(ConversationId::from_uuid) else {
            continue;
        };
        // A conversation's opening and a reopening by a message are the message's time;
        // a status someone set, the time it was written.
        let at = match kind {
            EventKind::ConversationCreated | EventKind::ConversationStatusChanged => {
                instant(&row.f_last_message_at).unwrap_or(row.created_at)
            }
            _ => row.created_at,
        };
        if at >= to {
            continue;
        }
        let thread = threads.entry(id).or_default();
        thread.channel = row
            .f_channel
            .as_deref()
            .and_then(Channel::parse)
            .map(Channel::as_str)
            .or(thread.channel);
        thread.assignee = uuid_of(&row.f_assignee_id).map(UserId::from_uuid);
        thread.source = uuid_of(&row.f_source_id).map(SourceId::from_uuid);
        if kind != EventKind::ConversationAssigned {
            let resolved = row.f_status.as_deref() == Some("resolved");
            thread.statuses.push((at, row.seq, resolved));
        }
    }
    // Threads known only by messages (no conversation event up to `to`) are not counted.
    threads.retain(|_, thread| !thread.statuses.is_empty());
    for thread in threads.values_mut() {
        thread.statuses.sort_by_key(|&(at, seq, _)| (at, seq));
    }
    let wanted = |thread: &Thread| {
        query
            .channel
            .is_none_or(|c| thread.channel == Some(c.as_str()))
            && query.assignee_id.is_none_or(|a| thread.assignee == Some(a))
            && query.source_id.is_none_or(|s| thread.source == Some(s))
    };
    threads.retain(|_, thread| wanted(thread));

    let zone = hours.time_zone;
    let local_date = |at: DateTime<Utc>| at.with_timezone(&zone).date_naive();
    let time_key = |at: DateTime<Utc>| match query.group_by {
        Some(ServiceGroupBy::Day) => Some(GroupKey::Day(local_date(at))),
        Some(ServiceGroupBy::Week) => {
            let date = local_date(at);
            let monday = date - Duration::days(i64::from(date.weekday().num_days_from_monday()));
            Some(GroupKey::Week(monday))
        }
        _ => None,
    };
    let key_of = |thread: &Thread, at: DateTime<Utc>| {
        query
            .group_by
            .and_then(|by| thread.key(by))
            .or_else(|| time_key(at))
    };

    let mut total = Tally::default();
    let mut groups: BTreeMap<GroupKey, Tally> = BTreeMap::new();
    // The days of the range, each ending at its local midnight (the last at `to`).
    let days = range_days(zone, from, to);
    if matches!(
        query.group_by,
        Some(ServiceGroupBy::Day | ServiceGroupBy::Week)
    ) {
        for (date, _) in &days {
            if let Some(key) = time_key(zone_start(zone, *date).max(from)) {
                groups.entry(key).or_default();
            }
        }
    }
    let mut add = |key: Option<GroupKey>, change: &dyn Fn(&mut Tally)| {
        change(&mut total);
        if let Some(key) = key {
            change(groups.entry(key).or_default());
        }
    };

    let mut ids: Vec<&ConversationId> = threads.keys().collect();
    ids.sort();
    for id in ids {
        let thread = &threads[id];
        let rule = rule_for(rules, thread.channel);
        if let Some((inbound, reply)) = thread.first_response() {
            if inbound >= from {
                let key = key_of(thread, inbound);
                if let Some(reply) = reply {
                    let secs = (reply - inbound).num_seconds();
                    add(key, &|t| t.first_response.push(secs));
                }
                let target = rule.and_then(|r| r.first_response_secs.map(|secs| (r, secs)));
                if let Some((rule, target)) = target {
                    // Unanswered at `to`: breached once the wait so far passed the target.
                    if counted(rule, hours, inbound, reply.unwrap_or(to)) > target {
                        let id = *id;
                        add(key, &|t| {
                            t.first_response_breaches += 1;
                            t.breaching.insert(id);
                        });
                    }
                }
            }
        }
        for (start, end) in thread.resolutions() {
            if end < from {
                continue;
            }
            let key = key_of(thread, end);
            let secs = (end - start).num_seconds();
            add(key, &|t| {
                t.resolution.push(secs);
                t.resolved += 1;
            });
            let target = rule.and_then(|r| r.resolution_secs.map(|secs| (r, secs)));
            if let Some((rule, target)) = target {
                if counted(rule, hours, start, end) > target {
                    let id = *id;
                    add(key, &|t| {
                        t.resolution_breaches += 1;
                        t.breaching.insert(id);
                    });
                }
            }
        }
        for start in thread.openings() {
            if start >= from {
                add(key_of(thread, start), &|t| t.opened += 1);
            }
        }
        // The backlog of a time group is at its end; of any other group, and in total, at `to`.
        if thread.open_at(to - Duration::microseconds(1)) {
            add(query.group_by.and_then(|by| thread.key(by)), &|t| {
                t.backlog += 1
            });
        }
    }
    for message in &messages {
        let thread = message.conversation.and_then(|id| threads.get(&id));
        if message.conversation.is_some() && thread.is_none() {
            continue; // a conversation the filter leaves out
        }
        if thread.is_none()
            && (query.assignee_id.is_some()
                || query
                    .channel
                    .is_some_and(|c| message.channel != Some(c.as_str()))
                || query.source_id.is_some_and(|s| message.source != Some(s)))
        {
            continue;
        }
        let key = match query.group_by {
            Some(ServiceGroupBy::Channel) => Some(GroupKey::Channel(message.channel)),
            Some(ServiceGroupBy::Source) => Some(GroupKey::Source(message.source)),
            Some(ServiceGroupBy::Assignee) => {
                Some(GroupKey::Assignee(thread.and_then(|t| t.assignee)))
            }
            _ => time_key(message.at),
        };
        let inbound = message.inbound;
        add(key, &|t| {
            if inbound {
                t.volume_in += 1;
            } else {
                t.volume_out += 1;
            }
        });
    }
    let backlog: Vec<BacklogPoint> = days
        .iter()
        .map(|&(date, end)| {
            let closing = end - Duration::microseconds(1);
            BacklogPoint {
                date,
                at: end,
                open: threads.values().filter(|t| t.open_at(closing)).count() as i64,
            }
        })
        .collect();
    // A time group's backlog: at the end of its last day in the range.
    for (key, tally) in groups.iter_mut() {
        let last_day = match *key {
            GroupKey::Day(date) => Some(date),
            GroupKey::Week(monday) => Some(monday + Duration::days(6)),
            _ => None,
        };
        if let Some(last_day) = last_day {
            tally.backlog = backlog
                .iter()
                .rfind(|point| point.date <= last_day)
                .map_or(0, |point| point.open);
        }
    }
    Metrics {
        time_zone: zone,
        total: total.figures(),
        groups: groups
            .into_iter()
            .map(|(key, tally)| (key, tally.figures()))
            .collect(),
        backlog,
    }
}

/// The local midnight that starts `date` in `zone`.
fn zone_start(zone: Tz, date: NaiveDate) -> DateTime<Utc> {
    local_instant(zone, date, 0)
}

/// The local dates the range touches, each with the instant it ends within the range
/// (its next local midnight, or `to` for the last).
fn range_days(zone: Tz, from: DateTime<Utc>, to: DateTime<Utc>) -> Vec<(NaiveDate, DateTime<Utc>)> {
    let first = from.with_timezone(&zone).date_naive();
    let mut days = Vec::new();
    for date in first.iter_days() {
        let start = zone_start(zone, date);
        if start >= to {
            break;
        }
        let next = date.succ_opt().map_or(to, |next| zone_start(zone, next));
        days.push((date, next.min(to)));
    }
    days
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .unwrap()
            .with_timezone(&Utc)
    }

    fn weekdays(zone: &str, open: u32, close: u32) -> BusinessHours {
        let mut hours = BusinessHours {
            time_zone: parse_zone("timeZone", zone).unwrap(),
            ..BusinessHours::default()
        };
        for interval in &mut hours.hours {
            interval.open = open * 60;
            interval.close = close * 60;
        }
        hours
    }

    fn every_day(zone: &str, open: u32, close: u32) -> BusinessHours {
        let days = [
            Weekday::Monday,
            Weekday::Tuesday,
            Weekday::Wednesday,
            Weekday::Thursday,
            Weekday::Friday,
            Weekday::Saturday,
            Weekday::Sunday,
        ];
        BusinessHours::new(
            parse_zone("timeZone", zone).unwrap(),
            days.into_iter()
                .map(|weekday| Interval {
                    weekday,
                    open,
                    close,
                })
                .collect(),
        )
        .unwrap()
    }

    #[test]
    fn business_seconds_skip_the_night_and_the_weekend() {
        let hours = weekdays("UTC", 9, 17);
        // Friday 2026-11-06 16:00 → Monday 2026-11-09 10:00: 1 h on Friday, 1 h on Monday.
        assert_eq!(
            hours.seconds_between(at("2026-11-06T16:00:00Z"), at("2026-11-09T10:00:00Z")),
            2 * 3600
        );
        // Inside one day.
        assert_eq!(
            hours.seconds_between(at("2026-11-04T09:30:00Z"), at("2026-11-04T10:00:00Z")),
            1800
        );
        // Saturday to Sunday: nothing.
        assert_eq!(
            hours.seconds_between(at("2026-11-07T08:00:00Z"), at("2026-11-08T20:00:00Z")),
            0
        );
        // A whole week: 5 × 8 h.
        assert_eq!(
            hours.seconds_between(at("2026-11-02T00:00:00Z"), at("2026-11-09T00:00:00Z")),
            40 * 3600
        );
        // Backwards or empty: 0.
        assert_eq!(
            hours.seconds_between(at("2026-11-04T10:00:00Z"), at("2026-11-04T09:00:00Z")),
            0
        );
    }

    #[test]
    fn business_seconds_follow_the_zone_across_a_dst_change() {
        // Madrid leaves summer time on Sunday 2026-10-25 (03:00 CEST → 02:00 CET).
        let hours = weekdays("Europe/Madrid", 9, 17);
        // Friday 23 16:00 CEST (14:00Z) → Monday 26 10:00 CET (09:00Z): 1 h + 1 h, though
        // the wall clock says 67 h.
        assert_eq!(
            hours.seconds_between(at("2026-10-23T14:00:00Z"), at("2026-10-26T09:00:00Z")),
            2 * 3600
        );
        // Monday 09:00 local is 08:00Z after the change (07:00Z before it).
        assert_eq!(
            hours.seconds_between(at("2026-10-26T07:00:00Z"), at("2026-10-26T08:00:00Z")),
            0
        );
        // A whole local Sunday of the change has 25 hours; the one in March 23.
        let all_day = every_day("Europe/Madrid", 0, 24 * 60);
        assert_eq!(
            all_day.seconds_between(at("2026-10-24T22:00:00Z"), at("2026-10-25T23:00:00Z")),
            25 * 3600
        );
        assert_eq!(
            all_day.seconds_between(at("2026-03-28T23:00:00Z"), at("2026-03-29T22:00:00Z")),
            23 * 3600
        );
        // 01:00–04:00 local: 4 real hours on the night the clocks go back (02:00–03:00
        // passes twice), 2 on the night they go forward (02:00–03:00 never happens).
        let night = every_day("Europe/Madrid", 60, 4 * 60);
        assert_eq!(
            night.seconds_between(at("2026-10-24T12:00:00Z"), at("2026-10-25T12:00:00Z")),
            4 * 3600
        );
        assert_eq!(
            night.seconds_between(at("2026-03-28T12:00:00Z"), at("2026-03-29T12:00:00Z")),
            2 * 3600
        );
    }

    #[test]
    fn bad_business_hours_name_their_field() {
        let zone = Tz::UTC;
        let interval = |weekday, open, close| Interval {
            weekday,
            open,
            close,
        };
        let field = |err: Error| match err {
            Error::BadInput { field, .. } => field,
            other => panic!("{other:?}"),
        };
        let closed_before_open =
            BusinessHours::new(zone, vec![interval(Weekday::Monday, 600, 540)]).unwrap_err();
        assert_eq!(field(closed_before_open).as_deref(), Some("hours[0].close"));
        let overlapping = BusinessHours::new(
            zone,
            vec![
                interval(Weekday::Monday, 540, 720),
                interval(Weekday::Tuesday, 540, 720),
                interval(Weekday::Monday, 700, 800),
            ],
        )
        .unwrap_err();
        assert_eq!(field(overlapping).as_deref(), Some("hours[2]"));
        assert!(BusinessHours::new(
            zone,
            vec![
                interval(Weekday::Monday, 540, 720),
                interval(Weekday::Monday, 720, 800)
            ]
        )
        .is_ok());
        assert_eq!(
            field(parse_zone("timeZone", "Mars/Olympus").unwrap_err()).as_deref(),
            Some("timeZone")
        );
        assert_eq!(parse_minutes("open", "24:00").unwrap(), 1440);
        assert_eq!(parse_minutes("open", "09:30").unwrap(), 570);
        for bad in ["24:01", "9:00", "09:60", "nine", ""] {
            assert!(parse_minutes("open", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn percentiles_are_nearest_rank() {
        assert_eq!(Durations::of(vec![]), Durations::default());
        let d = Durations::of(vec![40, 10, 30, 20]);
        // 4 values: median rank ceil(2) = 2nd (20), p90 rank ceil(3.6) = 4th (40).
        assert_eq!((d.count, d.median, d.p90), (4, Some(20), Some(40)));
        let d = Durations::of((1..=10).collect());
        // 10 values: median rank 5 (5), p90 rank 9 (9).
        assert_eq!((d.median, d.p90), (Some(5), Some(9)));
    }
}
