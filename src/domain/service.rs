//! Service levels and service metrics: the workspace's SLA rules, its business hours and
//! time zone (`service_settings`), the business-hour arithmetic the rules count in, and
//! `metrics`, which reads first-response and resolution times, volumes, backlog and SLA
//! breaches from the event log.
//!
//! Metrics read the log, never the current conversations, so a past figure cannot change
//! when a conversation changes later, and a re-run over the same log gives the same
//! numbers. The service levels are read from the log too (their logged changes; the
//! current rows only for levels set before changes were logged): a wait is judged by the
//! levels in force at the point of the log where it started. One
//! statement reads the log's facts the metrics need (the JSON fields projected in SQL,
//! never the messages' text); pairing a first response with its inbound message and a
//! resolution with its opening, and counting business seconds in the workspace's zone,
//! happen in Rust, where the zone rules live.
//!
//! The time of a fact: a message's `occurred_at` (when it was written, also for an import of
//! old mail); a conversation's opening is its first message's time, a reopening by a new
//! message that message's time; a status someone set, or a snooze that ran out, the time
//! its event was written. A conversation's status facts keep their log order (`seq`), and
//! time never runs backwards within one: a fact's time is the later of its own and the
//! previous fact's, so a message written before a resolution but ingested after it still
//! reopens the conversation (at the resolution's time), as it did in the data.
//!
//! The figures are worked out off the async executor (`spawn_blocking`), at most
//! [`COMPUTE_SLOTS`] at once in the process, and in time that grows with the facts and the
//! days, not their product: business seconds come from a per-day calendar built once per
//! version of the levels a business-hours rule needs, the
//! backlog from one sweep over the sorted openings and closings.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::str::FromStr;
use std::sync::LazyLock;

use chrono::{DateTime, Datelike, Duration, NaiveDate, NaiveDateTime, TimeZone, Utc};
use chrono_tz::Tz;
use connectors::Channel;
use sea_orm::sea_query::{Expr, OnConflict};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DatabaseBackend, DatabaseTransaction,
    EntityTrait as _, FromQueryResult, QueryFilter, QueryOrder, QuerySelect, TransactionTrait,
};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::event::{Actor, Event, EventKind, ServiceChange};
use super::{Caller, Role};
use crate::error::{Error, Result};
use entity::{ConversationId, CustomerId, SourceId, UserId, WorkspaceId};

string_enum!(
    /// A day of the week, for business hours.
    Weekday {
        /// Monday.
        Monday = "monday",
        /// Tuesday.
        Tuesday = "tuesday",
        /// Wednesday.
        Wednesday = "wednesday",
        /// Thursday.
        Thursday = "thursday",
        /// Friday.
        Friday = "friday",
        /// Saturday.
        Saturday = "saturday",
        /// Sunday.
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
        /// One group per local day of the range (the workspace's time zone).
        Day = "day",
        /// One group per local week of the range, Monday to Sunday.
        Week = "week",
        /// One group per channel something happened on.
        Channel = "channel",
        /// One group per assignee at the end of the range, and one for the unassigned.
        Assignee = "assignee",
        /// One group per source the conversations came from, and `none` for the rest.
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
        Calendar::new(self, start, end).seconds_between(start, end)
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
        BusinessHours::from_parts(&row.time_zone, &row.hours).ok_or_else(|| {
            Error::Internal(format!(
                "stored business hours of {} do not read",
                row.workspace_id
            ))
        })
    }

    /// The hours of a stored zone name and `hours` value (a row's, or a logged change's).
    fn from_parts(time_zone: &str, hours: &serde_json::Value) -> Option<BusinessHours> {
        let time_zone = Tz::from_str(time_zone).ok()?;
        let stored: Vec<StoredInterval> = serde_json::from_value(hours.clone()).ok()?;
        let hours = stored
            .iter()
            .map(|interval| {
                Some(Interval {
                    weekday: Weekday::parse(&interval.weekday)?,
                    open: parse_minutes("open", &interval.open).ok()?,
                    close: parse_minutes("close", &interval.close).ok()?,
                })
            })
            .collect::<Option<Vec<_>>>()?;
        Some(BusinessHours { time_zone, hours })
    }

    /// As a logged change holds them: `{time_zone, hours}`.
    fn to_logged(&self) -> serde_json::Value {
        serde_json::json!({ "time_zone": self.time_zone.name(), "hours": self.to_stored() })
    }

    fn from_logged(value: &serde_json::Value) -> Option<BusinessHours> {
        BusinessHours::from_parts(value.get("time_zone")?.as_str()?, value.get("hours")?)
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

/// The business intervals of a span of local days as instants, with the business
/// milliseconds before each: built once in O(days × intervals of a day), it answers
/// [`BusinessHours::seconds_between`] for any span inside it with two binary searches.
struct Calendar {
    /// Sorted, not overlapping: (open, close) with close after open.
    spans: Vec<(DateTime<Utc>, DateTime<Utc>)>,
    /// `before[i]`: business milliseconds of `spans[..i]` (one more entry than `spans`).
    before: Vec<i64>,
}

impl Calendar {
    /// The calendar of every local date from `start`'s to `end`'s, a day either side: an
    /// interval of a local date can reach into the UTC day before or after.
    fn new(hours: &BusinessHours, start: DateTime<Utc>, end: DateTime<Utc>) -> Calendar {
        let zone = hours.time_zone;
        let first = start.with_timezone(&zone).date_naive() - Duration::days(1);
        let last = end.with_timezone(&zone).date_naive() + Duration::days(1);
        let mut spans = Vec::new();
        let mut before = vec![0];
        let mut previous_close: Option<DateTime<Utc>> = None;
        for date in first.iter_days().take_while(|date| *date <= last) {
            let weekday = Weekday::of(date.weekday());
            for interval in hours.hours.iter().filter(|i| i.weekday == weekday) {
                let mut open = local_instant(zone, date, interval.open);
                let close = local_instant(zone, date, interval.close);
                // A span never counts twice what an earlier one covered (DST snapping).
                if let Some(previous) = previous_close {
                    open = open.max(previous);
                }
                if close > open {
                    let total = before.last().copied().unwrap_or(0);
                    before.push(total + (close - open).num_milliseconds());
                    spans.push((open, close));
                    previous_close = Some(close);
                }
            }
        }
        Calendar { spans, before }
    }

    /// Business milliseconds from the calendar's start to `at`.
    fn until(&self, at: DateTime<Utc>) -> i64 {
        let index = self.spans.partition_point(|(_, close)| *close <= at);
        let partial = self
            .spans
            .get(index)
            .filter(|(open, _)| at > *open)
            .map_or(0, |(open, _)| (at - *open).num_milliseconds());
        self.before[index] + partial
    }

    /// The business seconds between `start` and `end` (0 when `end` is not after `start`).
    fn seconds_between(&self, start: DateTime<Utc>, end: DateTime<Utc>) -> i64 {
        if end <= start {
            return 0;
        }
        (self.until(end) - self.until(start)) / 1000
    }
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

/// Begins a change of the workspace's service levels: a write transaction holding the
/// workspace's row on PostgreSQL (`FOR NO KEY UPDATE`, which ingestion's foreign-key
/// checks on the row do not wait for), so changes of one workspace's levels log their `before`
/// and `after` in the order they commit (SQLite's write lock already orders them).
async fn begin_levels_change(
    db: &impl TransactionTrait,
    workspace_id: WorkspaceId,
) -> Result<DatabaseTransaction> {
    let txn = super::begin_write(db).await?;
    entity::workspace::Entity::find_by_id(workspace_id)
        .lock(sea_orm::sea_query::LockType::NoKeyUpdate)
        .one(&txn)
        .await?;
    Ok(txn)
}

/// Logs a change of the service levels (`channel` for a rule, `None` for the hours).
async fn log_levels_change(
    txn: &DatabaseTransaction,
    caller: &Caller,
    kind: for<'a> fn(&'a ServiceChange) -> Event<'a>,
    channel: Option<&str>,
    before: Option<serde_json::Value>,
    after: Option<serde_json::Value>,
) -> Result<()> {
    let change = ServiceChange {
        workspace_id: caller.workspace_id,
        channel: channel.map(str::to_owned),
        before,
        after,
        actor: Actor::of(caller),
    };
    super::event::append(txn, caller.workspace_id, kind(&change)).await
}

/// Replaces the workspace's time zone and business hours (admin role), and logs the
/// change (`business_hours.set`, with the hours before). `BAD_USER_INPUT` naming
/// `timeZone` or `hours[i]` for an unknown zone, an interval that does not close after it
/// opens, or two that overlap.
pub async fn set_business_hours(
    db: &impl TransactionTrait,
    caller: &Caller,
    hours: BusinessHours,
) -> Result<BusinessHours> {
    caller.require(Role::Admin, "setting business hours")?;
    let hours = BusinessHours::new(hours.time_zone, hours.hours)?;
    let txn = begin_levels_change(db, caller.workspace_id).await?;
    let before = hours_of(&txn, caller.workspace_id).await?;
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
        .exec_without_returning(&txn)
        .await?;
    log_levels_change(
        &txn,
        caller,
        |change| Event::BusinessHoursSet(change),
        None,
        Some(before.to_logged()),
        Some(hours.to_logged()),
    )
    .await?;
    txn.commit().await?;
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
    /// As a logged change holds it (the targets; the channel is the change's own).
    fn to_logged(&self) -> serde_json::Value {
        serde_json::json!({
            "first_response_secs": self.first_response_secs,
            "resolution_secs": self.resolution_secs,
            "business_hours_only": self.business_hours_only,
        })
    }

    fn from_logged(
        channel: Option<Channel>,
        value: &serde_json::Value,
        at: DateTime<Utc>,
    ) -> Option<SlaRule> {
        let secs = |name: &str| value.get(name).and_then(serde_json::Value::as_i64);
        Some(SlaRule {
            channel,
            first_response_secs: secs("first_response_secs"),
            resolution_secs: secs("resolution_secs"),
            business_hours_only: value.get("business_hours_only")?.as_bool()?,
            updated_at: at,
        })
    }

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

/// The rule of one channel key, if any.
async fn rule_of(
    db: &impl ConnectionTrait,
    workspace_id: WorkspaceId,
    key: &str,
) -> Result<Option<SlaRule>> {
    use entity::sla_rule::{Column, Entity};
    Ok(super::scoped::<Entity>(workspace_id)
        .filter(Column::Channel.eq(key))
        .one(db)
        .await?
        .map(SlaRule::from_row))
}

/// Sets the rule of `rule.channel`, replacing the one it had (admin role; the primary key
/// (workspace, channel) and `ON CONFLICT` keep one rule a channel), and logs the change
/// (`sla_rule.set`, with the rule before). `BAD_USER_INPUT` for a rule without a target or
/// a target outside 1 second to a year.
pub async fn set_sla_rule(
    db: &impl TransactionTrait,
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
    let key = channel_key(rule.channel);
    let txn = begin_levels_change(db, caller.workspace_id).await?;
    let before = rule_of(&txn, caller.workspace_id, key).await?;
    use entity::sla_rule::{ActiveModel, Column, Entity};
    let row = entity::sla_rule::Model {
        workspace_id: caller.workspace_id,
        channel: key.to_owned(),
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
        .exec_without_returning(&txn)
        .await?;
    let rule = SlaRule::from_row(row);
    log_levels_change(
        &txn,
        caller,
        |change| Event::SlaRuleSet(change),
        Some(key),
        before.as_ref().map(SlaRule::to_logged),
        Some(rule.to_logged()),
    )
    .await?;
    txn.commit().await?;
    Ok(rule)
}

/// Deletes the rule of `channel` (admin role) and logs it (`sla_rule.deleted`); `false`
/// when there was none.
pub async fn delete_sla_rule(
    db: &impl TransactionTrait,
    caller: &Caller,
    channel: Option<Channel>,
) -> Result<bool> {
    caller.require(Role::Admin, "deleting an SLA rule")?;
    let key = channel_key(channel);
    let txn = begin_levels_change(db, caller.workspace_id).await?;
    let Some(before) = rule_of(&txn, caller.workspace_id, key).await? else {
        txn.rollback().await?;
        return Ok(false);
    };
    use entity::sla_rule::{Column, Entity};
    Entity::delete_many()
        .filter(Column::WorkspaceId.eq(caller.workspace_id))
        .filter(Column::Channel.eq(key))
        .exec(&txn)
        .await?;
    log_levels_change(
        &txn,
        caller,
        |change| Event::SlaRuleDeleted(change),
        Some(key),
        Some(before.to_logged()),
        None,
    )
    .await?;
    txn.commit().await?;
    Ok(true)
}

/// The service levels in force at a point of the log: the SLA rules and business hours.
#[derive(Clone, Debug)]
struct Levels {
    rules: Vec<SlaRule>,
    hours: BusinessHours,
}

/// The service levels over the log: each version with the seq of the change that made
/// it, the first (what was in force before any logged change) at `i64::MIN`. Metrics
/// judge a wait by the version in force when it started, so changing a rule today does not
/// rewrite last month's breaches, and a re-run over the same log gives the same numbers.
#[derive(Clone, Debug)]
struct History {
    versions: Vec<(i64, Levels)>,
    /// The current time zone: days and weeks are its own, whatever the versions say.
    zone: Tz,
}

impl History {
    /// One version for the whole log.
    #[cfg(test)]
    fn fixed(hours: BusinessHours, rules: Vec<SlaRule>) -> History {
        History {
            zone: hours.time_zone,
            versions: vec![(i64::MIN, Levels { rules, hours })],
        }
    }

    /// The version in force for the fact at `seq`, and its index.
    fn at(&self, seq: i64) -> (usize, &Levels) {
        let index = self
            .versions
            .partition_point(|(from, _)| *from < seq)
            .saturating_sub(1);
        (index, &self.versions[index].1)
    }

    /// Whether any version counts business hours.
    fn any_business_hours(&self) -> bool {
        self.versions
            .iter()
            .any(|(_, levels)| levels.rules.iter().any(|rule| rule.business_hours_only))
    }
}

/// The kinds of event that change the service levels.
const LEVEL_KINDS: [EventKind; 3] = [
    EventKind::SlaRuleSet,
    EventKind::SlaRuleDeleted,
    EventKind::BusinessHoursSet,
];

/// The workspace's service levels over its log: one statement for the current rows'
/// settings, one for the rules, one for the logged changes (a handful of rows). Levels set
/// before changes were logged count as in force from the start.
async fn history_of(db: &impl ConnectionTrait, workspace_id: WorkspaceId) -> Result<History> {
    let current_hours = hours_of(db, workspace_id).await?;
    let current_rules = rules_of(db, workspace_id).await?;
    use entity::event::{Column, Entity};
    // The predicate of the partial index `ix_event_levels`, as literals (constants of
    // ours, never input): SQLite uses a partial index only for a WHERE it can match at
    // prepare time.
    let kinds: Vec<String> = LEVEL_KINDS
        .iter()
        .map(|kind| format!("'{}'", kind.as_str()))
        .collect();
    let changes = super::scoped::<Entity>(workspace_id)
        .filter(Expr::cust(format!("kind IN ({})", kinds.join(", "))))
        .order_by_asc(Column::Seq)
        .all(db)
        .await?;
    Ok(history_from(current_hours, current_rules, &changes))
}

/// [`History`] from the current levels and the logged changes in log order (pure). The
/// levels before the first change: for each rule and the hours, the `before` of its first
/// logged change, or (never changed since logging began) the current one.
fn history_from(
    hours: BusinessHours,
    rules: Vec<SlaRule>,
    changes: &[entity::event::Model],
) -> History {
    let rule_key = |change: &entity::event::Model| {
        change
            .payload
            .get("channel")
            .and_then(serde_json::Value::as_str)
            .map(str::to_owned)
    };
    let apply_rule = |rules: &mut Vec<SlaRule>,
                      key: &str,
                      value: Option<&serde_json::Value>,
                      at: DateTime<Utc>| {
        let channel = Channel::parse(key);
        if key != ANY_CHANNEL && channel.is_none() {
            return;
        }
        rules.retain(|rule| channel_key(rule.channel) != key);
        if let Some(rule) = value
            .filter(|value| !value.is_null())
            .and_then(|value| SlaRule::from_logged(channel, value, at))
        {
            rules.push(rule);
        }
        rules.sort_by(|a, b| channel_key(a.channel).cmp(channel_key(b.channel)));
    };
    let zone = hours.time_zone;
    let mut first = Levels { rules, hours };
    let mut seen_keys = BTreeSet::new();
    let mut hours_seen = false;
    for change in changes {
        let before = change.payload.get("before");
        match EventKind::parse(&change.kind) {
            Some(EventKind::SlaRuleSet | EventKind::SlaRuleDeleted) => {
                if let Some(key) = rule_key(change) {
                    if seen_keys.insert(key.clone()) {
                        apply_rule(&mut first.rules, &key, before, change.created_at);
                    }
                }
            }
            Some(EventKind::BusinessHoursSet) if !hours_seen => {
                hours_seen = true;
                if let Some(hours) = before.and_then(BusinessHours::from_logged) {
                    first.hours = hours;
                }
            }
            _ => {}
        }
    }
    let mut versions = vec![(i64::MIN, first)];
    for change in changes {
        let mut next = versions[versions.len() - 1].1.clone();
        let after = change.payload.get("after");
        match EventKind::parse(&change.kind) {
            Some(EventKind::SlaRuleSet | EventKind::SlaRuleDeleted) => {
                let Some(key) = rule_key(change) else {
                    continue;
                };
                apply_rule(&mut next.rules, &key, after, change.created_at);
            }
            Some(EventKind::BusinessHoursSet) => {
                let Some(hours) = after.and_then(BusinessHours::from_logged) else {
                    continue;
                };
                next.hours = hours;
            }
            _ => continue,
        }
        versions.push((change.seq, next));
    }
    History { versions, zone }
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
    let history = history_of(db, caller.workspace_id).await?;
    let log = read_log(db, caller.workspace_id, None).await?;
    let (query, now) = (query.clone(), super::now());
    off_executor(move || compute(&log, &history, &query, now)).await
}

/// One customer's figures over a range, as [`customers_metrics`] is asked for them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct CustomerRange {
    pub customer: CustomerId,
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
}

/// The figures of several customers' conversations and messages (no groups), one answer
/// per item of `wanted`, in its order: the same 4 statements for one customer or a page
/// of them (settings, rules, their logged changes, and one log read for all of them).
pub async fn customers_metrics(
    db: &impl ConnectionTrait,
    workspace_id: WorkspaceId,
    wanted: &[CustomerRange],
) -> Result<Vec<Figures>> {
    if wanted.is_empty() {
        return Ok(Vec::new());
    }
    for item in wanted {
        check_range(item.from, item.to)?;
    }
    let history = history_of(db, workspace_id).await?;
    let customers: BTreeSet<CustomerId> = wanted.iter().map(|item| item.customer).collect();
    let customers: Vec<CustomerId> = customers.into_iter().collect();
    let log = read_log(db, workspace_id, Some(&customers)).await?;
    let mut by_customer: HashMap<CustomerId, Vec<LogRow>> = HashMap::new();
    for row in log {
        if let Some(customer) = uuid_of(&row.f_customer_id).map(CustomerId::from_uuid) {
            by_customer.entry(customer).or_default().push(row);
        }
    }
    let (wanted, now) = (wanted.to_vec(), super::now());
    off_executor(move || {
        wanted
            .iter()
            .map(|item| {
                let query = MetricsQuery {
                    from: item.from,
                    to: item.to,
                    group_by: None,
                    channel: None,
                    assignee_id: None,
                    source_id: None,
                };
                let log = by_customer
                    .get(&item.customer)
                    .map_or(&[][..], Vec::as_slice);
                compute(log, &history, &query, now).total
            })
            .collect()
    })
    .await
}

/// How many metric computations run at once in the process: each holds a blocking
/// thread and a workspace's log in memory, so a burst of requests (aliases, sockets,
/// tenants) queues here instead of taking every core.
pub const COMPUTE_SLOTS: usize = 2;

static COMPUTING: LazyLock<tokio::sync::Semaphore> =
    LazyLock::new(|| tokio::sync::Semaphore::new(COMPUTE_SLOTS));

/// Runs `work` on tokio's blocking pool once a slot is free: the figures are CPU work the
/// async workers must not wait on.
async fn off_executor<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> Result<T> {
    let _slot = COMPUTING
        .acquire()
        .await
        .map_err(|_| Error::Internal("the metrics slots are closed".into()))?;
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|error| Error::Internal(format!("computing metrics failed: {error}")))
}

/// `BAD_USER_INPUT` naming `range.to` for a range that ends before it starts or spans
/// more than [`MAX_RANGE_DAYS`].
pub fn check_range(from: DateTime<Utc>, to: DateTime<Utc>) -> Result<()> {
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
const LOG_FIELDS: [&str; 10] = [
    "id",
    "customer_id",
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
    f_customer_id: Option<String>,
    f_conversation_id: Option<String>,
    f_direction: Option<String>,
    f_channel: Option<String>,
    f_occurred_at: Option<String>,
    f_last_message_at: Option<String>,
    f_status: Option<String>,
    f_assignee_id: Option<String>,
    f_source_id: Option<String>,
}

/// One statement: the workspace's metric facts in log order (of some customers'
/// conversations and messages when `customers` is given).
async fn read_log(
    db: &impl ConnectionTrait,
    workspace_id: WorkspaceId,
    customers: Option<&[CustomerId]>,
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
    if let Some(customers) = customers {
        // UUIDs' own text: nothing of the caller's reaches the SQL.
        let list: Vec<String> = customers
            .iter()
            .map(|customer| {
                let uuid: Uuid = customer.uuid();
                format!("'{uuid}'")
            })
            .collect();
        select = select.filter(Expr::cust(format!(
            "{} IN ({})",
            field("customer_id"),
            list.join(", ")
        )));
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
    /// (time, seq, resolved?) of each status fact, in log order; times never decrease.
    statuses: Vec<(DateTime<Utc>, i64, bool)>,
    /// The time of the last status fact read, whether before `to` or not.
    clock: Option<DateTime<Utc>>,
    first_inbound: Option<DateTime<Utc>>,
    /// The seq of the first inbound message's event: the levels in force then judge the
    /// first response.
    first_inbound_seq: i64,
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

    /// (start, the seq of the fact that started it, end) of each resolution: from the
    /// opening, or the reopening after the last resolution, to a status RESOLVED.
    fn resolutions(&self) -> Vec<(DateTime<Utc>, i64, DateTime<Utc>)> {
        let mut spans = Vec::new();
        let mut opened: Option<(DateTime<Utc>, i64)> = None;
        for &(at, seq, resolved) in &self.statuses {
            match (resolved, opened) {
                (true, Some((start, start_seq))) => {
                    spans.push((start, start_seq, at));
                    opened = None;
                }
                (false, None) => opened = Some((at, seq)),
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

/// The figures of `log` (pure: the same log, levels, query and `now` give the same
/// answer; `now` only bounds how long an unanswered message has waited). Each wait is
/// judged by the levels in force at the seq of the fact that started it (`history`),
/// whatever that fact's own time (mail imported after a change is judged by the levels
/// at its import); days and weeks are the
/// current time zone's.
fn compute(log: &[LogRow], history: &History, query: &MetricsQuery, now: DateTime<Utc>) -> Metrics {
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
                    if thread.first_inbound.is_none_or(|first| at < first) {
                        thread.first_inbound = Some(at);
                        thread.first_inbound_seq = row.seq;
                    }
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
        let own = match kind {
            EventKind::ConversationCreated | EventKind::ConversationStatusChanged => {
                instant(&row.f_last_message_at).unwrap_or(row.created_at)
            }
            _ => row.created_at,
        };
        let thread = threads.entry(id).or_default();
        // Status facts keep log order and time never runs backwards within a
        // conversation: a reopening by a message written before a resolution but read
        // after it happens at the resolution's time, not before it.
        let at = if kind == EventKind::ConversationAssigned {
            own
        } else {
            let at = thread.clock.map_or(own, |clock| clock.max(own));
            thread.clock = Some(at);
            at
        };
        if at >= to {
            continue;
        }
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
    let wanted = |thread: &Thread| {
        query
            .channel
            .is_none_or(|c| thread.channel == Some(c.as_str()))
            && query.assignee_id.is_none_or(|a| thread.assignee == Some(a))
            && query.source_id.is_none_or(|s| thread.source == Some(s))
    };
    threads.retain(|_, thread| wanted(thread));

    let zone = history.zone;
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

    // Business seconds of every span measured below, in the hours of the levels that
    // judge it: from the earliest fact (a resolution can start long before `from`) to
    // `to`, one calendar per version of the levels a business-hours rule needs.
    let earliest = if history.any_business_hours() {
        threads
            .values()
            .filter_map(|thread| thread.statuses.first().map(|&(at, _, _)| at))
            .chain(threads.values().filter_map(|thread| thread.first_inbound))
            .fold(from, DateTime::min)
    } else {
        from
    };
    let mut calendars: HashMap<usize, Calendar> = HashMap::new();
    let mut breached = |seq: i64,
                        pick: fn(&SlaRule) -> Option<i64>,
                        channel: Option<&'static str>,
                        start: DateTime<Utc>,
                        end: DateTime<Utc>| {
        let (version, levels) = history.at(seq);
        let Some(rule) = rule_for(&levels.rules, channel) else {
            return false;
        };
        let Some(target) = pick(rule) else {
            return false;
        };
        if !rule.business_hours_only {
            return (end - start).num_seconds() > target;
        }
        let calendar = calendars
            .entry(version)
            .or_insert_with(|| Calendar::new(&levels.hours, earliest, to));
        calendar.seconds_between(start, end) > target
    };
    // An unanswered message has waited until `to`, or until now when `to` is still ahead:
    // a deadline that has not passed yet is no breach.
    let waited_until = to.min(now);

    let mut ids: Vec<&ConversationId> = threads.keys().collect();
    ids.sort();
    for id in ids {
        let thread = &threads[id];
        if let Some((inbound, reply)) = thread.first_response() {
            if inbound >= from {
                let key = key_of(thread, inbound);
                if let Some(reply) = reply {
                    let secs = (reply - inbound).num_seconds();
                    add(key, &|t| t.first_response.push(secs));
                }
                // Unanswered: breached once the wait so far passed the target.
                let end = reply.unwrap_or(waited_until);
                let first_response = |rule: &SlaRule| rule.first_response_secs;
                if breached(
                    thread.first_inbound_seq,
                    first_response,
                    thread.channel,
                    inbound,
                    end,
                ) {
                    let id = *id;
                    add(key, &|t| {
                        t.first_response_breaches += 1;
                        t.breaching.insert(id);
                    });
                }
            }
        }
        for (start, start_seq, end) in thread.resolutions() {
            if end < from {
                continue;
            }
            let key = key_of(thread, end);
            let secs = (end - start).num_seconds();
            add(key, &|t| {
                t.resolution.push(secs);
                t.resolved += 1;
            });
            let resolution = |rule: &SlaRule| rule.resolution_secs;
            if breached(start_seq, resolution, thread.channel, start, end) {
                let id = *id;
                add(key, &|t| {
                    t.resolution_breaches += 1;
                    t.breaching.insert(id);
                });
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
    // One sweep: every moment a conversation turns open (+1) or resolved (−1), in time
    // order, walked once along the days.
    let mut changes: Vec<(DateTime<Utc>, i64)> = Vec::new();
    for thread in threads.values() {
        let mut open = false;
        for &(at, _, resolved) in &thread.statuses {
            if open == resolved {
                changes.push((at, if resolved { -1 } else { 1 }));
                open = !resolved;
            }
        }
    }
    changes.sort_unstable_by_key(|&(at, _)| at);
    let mut changes = changes.into_iter().peekable();
    let mut open = 0;
    let backlog: Vec<BacklogPoint> = days
        .iter()
        .map(|&(date, end)| {
            let closing = end - Duration::microseconds(1);
            while let Some((_, change)) = changes.next_if(|&(at, _)| at <= closing) {
                open += change;
            }
            BacklogPoint {
                date,
                at: end,
                open,
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

    /// A log row of `kind` with payload fields `fields`.
    fn row(
        seq: i64,
        kind: EventKind,
        created_at: DateTime<Utc>,
        fields: &[(&str, String)],
    ) -> LogRow {
        let field = |name: &str| {
            fields
                .iter()
                .find(|(key, _)| *key == name)
                .map(|(_, value)| value.clone())
        };
        LogRow {
            seq,
            kind: kind.as_str().to_owned(),
            created_at,
            f_id: field("id"),
            f_customer_id: field("customer_id"),
            f_conversation_id: field("conversation_id"),
            f_direction: field("direction"),
            f_channel: field("channel"),
            f_occurred_at: field("occurred_at"),
            f_last_message_at: field("last_message_at"),
            f_status: field("status"),
            f_assignee_id: field("assignee_id"),
            f_source_id: field("source_id"),
        }
    }

    fn whole(from: DateTime<Utc>, to: DateTime<Utc>) -> MetricsQuery {
        MetricsQuery {
            from,
            to,
            group_by: None,
            channel: None,
            assignee_id: None,
            source_id: None,
        }
    }

    /// One conversation's log: a message at `inbound` opening it, then `statuses` as
    /// (seq, kind, own time, status).
    fn thread_log(
        conversation: Uuid,
        first_seq: i64,
        inbound: DateTime<Utc>,
        statuses: &[(EventKind, DateTime<Utc>, &str)],
    ) -> Vec<LogRow> {
        let id = conversation.to_string();
        let mut log = vec![
            row(
                first_seq,
                EventKind::InteractionCreated,
                inbound,
                &[
                    ("conversation_id", id.clone()),
                    ("direction", "inbound".into()),
                    ("channel", "mastodon".into()),
                    ("occurred_at", inbound.to_rfc3339()),
                ],
            ),
            row(
                first_seq + 1,
                EventKind::ConversationCreated,
                inbound,
                &[
                    ("id", id.clone()),
                    ("channel", "mastodon".into()),
                    ("last_message_at", inbound.to_rfc3339()),
                    ("status", "open".into()),
                ],
            ),
        ];
        for (n, &(kind, time, status)) in statuses.iter().enumerate() {
            let mut fields = vec![("id", id.clone()), ("status", status.to_owned())];
            if kind == EventKind::ConversationStatusChanged {
                fields.push(("last_message_at", time.to_rfc3339()));
            }
            log.push(row(first_seq + 2 + n as i64, kind, time, &fields));
        }
        log
    }

    #[test]
    fn a_reopening_read_after_a_resolve_follows_it_whatever_its_message_time() {
        // Message at 10:00, resolved at 10:05; a message written at 10:04 is read at
        // 10:06 and reopens the conversation: the log has it after the resolve.
        let log = thread_log(
            Uuid::new_v4(),
            1,
            at("2026-11-04T10:00:00Z"),
            &[
                (
                    EventKind::ConversationStatusSet,
                    at("2026-11-04T10:05:00Z"),
                    "resolved",
                ),
                (
                    EventKind::ConversationStatusChanged,
                    at("2026-11-04T10:04:00Z"),
                    "open",
                ),
            ],
        );
        let (from, to) = (at("2026-11-04T00:00:00Z"), at("2026-11-05T00:00:00Z"));
        let levels = History::fixed(BusinessHours::default(), Vec::new());
        let metrics = compute(&log, &levels, &whole(from, to), to);
        // Open at the end; opened at 10:00 and again at 10:05 (the resolve's time, since
        // time does not run backwards within a conversation); one resolution of 5 min.
        assert_eq!(metrics.total.backlog, 1);
        assert_eq!(metrics.total.opened, 2);
        assert_eq!(metrics.total.resolution, Durations::of(vec![300]));
        assert_eq!(metrics.backlog.last().map(|point| point.open), Some(1));
    }

    #[test]
    fn an_unanswered_message_is_no_breach_before_its_deadline() {
        let now = at("2026-11-04T10:00:00Z");
        let log = thread_log(Uuid::new_v4(), 1, now - Duration::minutes(30), &[]);
        let rule = SlaRule {
            channel: None,
            first_response_secs: Some(3600),
            resolution_secs: None,
            business_hours_only: false,
            updated_at: now,
        };
        let query = whole(now - Duration::hours(1), now + Duration::hours(23));
        let levels = History::fixed(BusinessHours::default(), vec![rule]);
        let metrics = compute(&log, &levels, &query, now);
        assert_eq!(metrics.total.breaches, Breaches::default());
        // Two hours on, the deadline has passed.
        let later = compute(&log, &levels, &query, now + Duration::hours(2));
        assert_eq!(later.total.breaches.first_response, 1);
    }

    #[test]
    fn the_calendar_counts_what_a_walk_over_the_days_counts() {
        // The plain definition: every interval of every local day, clipped to the span.
        fn walked(hours: &BusinessHours, start: DateTime<Utc>, end: DateTime<Utc>) -> i64 {
            let zone = hours.time_zone;
            let first = start.with_timezone(&zone).date_naive() - Duration::days(1);
            let last = end.with_timezone(&zone).date_naive() + Duration::days(1);
            let mut total = 0;
            for date in first.iter_days().take_while(|date| *date <= last) {
                let weekday = Weekday::of(date.weekday());
                for interval in hours.hours.iter().filter(|i| i.weekday == weekday) {
                    let open = local_instant(zone, date, interval.open).max(start);
                    let close = local_instant(zone, date, interval.close).min(end);
                    if close > open {
                        total += (close - open).num_seconds();
                    }
                }
            }
            total
        }
        let schedules = [
            weekdays("Europe/Madrid", 9, 17),
            every_day("Europe/Madrid", 60, 4 * 60),
            every_day("America/New_York", 0, 24 * 60),
            weekdays("Australia/Lord_Howe", 8, 18),
        ];
        let base = at("2026-01-01T00:00:00Z");
        for hours in &schedules {
            let calendar = Calendar::new(hours, base, base + Duration::days(500));
            // Spans of minutes to months, starting at odd minutes all year round.
            for n in 0..400_i64 {
                let start = base + Duration::minutes(n * 1_297);
                let end = start + Duration::minutes((n * n * 37) % (60 * 24 * 90) + 1);
                assert_eq!(
                    calendar.seconds_between(start, end),
                    walked(hours, start, end),
                    "{start} → {end}"
                );
            }
        }
    }

    #[test]
    fn ten_thousand_conversations_over_400_days_are_worked_out_quickly() {
        let hours = weekdays("Europe/Madrid", 9, 17);
        let rule = SlaRule {
            channel: None,
            first_response_secs: Some(3600),
            resolution_secs: Some(86_400),
            business_hours_only: true,
            updated_at: at("2026-01-01T00:00:00Z"),
        };
        let to = at("2026-12-31T00:00:00Z");
        let from = to - Duration::days(MAX_RANGE_DAYS);
        let mut log = Vec::new();
        for n in 0..10_000_i64 {
            // Opened up to two years before `from`, resolved, reopened, resolved again.
            let opened = from - Duration::days(730) + Duration::minutes(n * 163);
            let resolved = opened + Duration::days(300 + n % 100);
            let statuses = [
                (EventKind::ConversationStatusSet, resolved, "resolved"),
                (
                    EventKind::ConversationStatusChanged,
                    resolved + Duration::hours(3),
                    "open",
                ),
                (
                    EventKind::ConversationStatusSet,
                    resolved + Duration::days(40),
                    "resolved",
                ),
            ];
            log.extend(thread_log(Uuid::new_v4(), n * 10, opened, &statuses));
        }
        let metrics = compute(
            &log,
            &History::fixed(hours, vec![rule]),
            &whole(from, to),
            to,
        );
        // 400 days of 24 hours touch 401 local dates in Madrid.
        assert_eq!(metrics.backlog.len(), 401);
        assert!(metrics.total.resolved > 0);
        // A walk over the days per item, or over the conversations per day, took minutes
        // here (debug build); the calendar and the sweep take a fraction of a second. The
        // test keeps the size as a guard anyone running it notices; no time is asserted.
    }

    #[test]
    fn the_levels_in_force_follow_the_logged_changes() {
        let when = at("2026-11-01T00:00:00Z");
        let change = |seq: i64,
                      kind: EventKind,
                      channel: Option<&str>,
                      before: serde_json::Value,
                      after: serde_json::Value| {
            entity::event::Model {
                seq,
                workspace_id: WorkspaceId::from_uuid(Uuid::nil()),
                kind: kind.as_str().to_owned(),
                entity_id: Uuid::nil(),
                payload: serde_json::json!({ "channel": channel, "before": before, "after": after }),
                created_at: when,
            }
        };
        let targets = |first: i64| serde_json::json!({ "first_response_secs": first, "resolution_secs": null, "business_hours_only": false });
        let madrid = weekdays("Europe/Madrid", 9, 17);
        // Now: Mastodon 120 s, no any-channel rule, Madrid hours. The log: Mastodon went
        // 60 → 120 at seq 10, the any-channel rule (999 s, set before logging began) went
        // at seq 20, the hours went from the default to Madrid's at seq 30. The e-mail rule
        // was never changed since logging began: in force throughout.
        let current = vec![
            SlaRule {
                channel: Some(Channel::Email),
                first_response_secs: Some(5),
                resolution_secs: None,
                business_hours_only: false,
                updated_at: when,
            },
            SlaRule {
                channel: Some(Channel::Mastodon),
                first_response_secs: Some(120),
                resolution_secs: None,
                business_hours_only: false,
                updated_at: when,
            },
        ];
        let changes = [
            change(
                10,
                EventKind::SlaRuleSet,
                Some("mastodon"),
                targets(60),
                targets(120),
            ),
            change(
                20,
                EventKind::SlaRuleDeleted,
                Some("*"),
                targets(999),
                serde_json::Value::Null,
            ),
            change(
                30,
                EventKind::BusinessHoursSet,
                None,
                BusinessHours::default().to_logged(),
                madrid.to_logged(),
            ),
        ];
        let history = history_from(madrid.clone(), current, &changes);
        let first = |seq: i64, channel: Option<&'static str>| {
            rule_for(&history.at(seq).1.rules, channel).and_then(|rule| rule.first_response_secs)
        };
        assert_eq!(history.versions.len(), 4);
        assert_eq!(
            (
                first(5, Some("mastodon")),
                first(5, Some("webhook")),
                first(5, Some("email"))
            ),
            (Some(60), Some(999), Some(5))
        );
        assert_eq!(
            (first(15, Some("mastodon")), first(15, Some("webhook"))),
            (Some(120), Some(999))
        );
        assert_eq!(
            (
                first(25, Some("mastodon")),
                first(25, Some("webhook")),
                first(25, Some("email"))
            ),
            (Some(120), None, Some(5))
        );
        assert_eq!(history.at(25).1.hours, BusinessHours::default());
        assert_eq!(history.at(31).1.hours, madrid);
        // The change's own seq is the last fact judged by the levels before it.
        assert_eq!(history.at(10).0, 0);
        assert_eq!(history.at(11).0, 1);
        // No change logged: one version, the current levels.
        let plain = history_from(madrid.clone(), Vec::new(), &[]);
        assert_eq!(plain.versions.len(), 1);
        assert_eq!(plain.at(1).1.hours, madrid);
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
