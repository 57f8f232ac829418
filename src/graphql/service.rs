//! Service levels and metrics: `serviceMetrics`, `slaRules`, `businessHours`, the
//! mutations that set them, and the figures `Customer.metrics.service` shares. Rules and
//! arithmetic live in `domain::service`.

use std::collections::HashMap;

use async_graphql::dataloader::Loader;
use async_graphql::{Context, InputObject, Object, Result, SimpleObject, ID};
use chrono::{DateTime, NaiveDate, Utc};

use super::inputs::opt_id;
use super::loaders::{LoadError, Loaders};
use super::types::Channel;
use super::user::{User, UserById};
use super::{app, caller, load};
use crate::domain::service::{
    self, BacklogPoint, BusinessHours, CustomerRange, Durations, Figures, GroupKey, Interval,
    Metrics, MetricsQuery, NewSlaRule, ServiceGroupBy, SlaRule, Weekday,
};
use crate::domain::Role;
use crate::ids::encode;
use entity::{SourceId, UserId};

/// A span of time, `from` included, `to` excluded (at most 400 days).
#[derive(InputObject, Clone, Copy)]
pub struct ServiceRangeInput {
    /// The first moment counted.
    pub from: DateTime<Utc>,
    /// The first moment not counted; after `from`.
    pub to: DateTime<Utc>,
}

/// Which conversations (and their messages) the metrics count; every given field must match.
#[derive(InputObject, Default)]
pub struct ServiceMetricsFilterInput {
    /// Conversations on this channel.
    pub channel: Option<Channel>,
    /// Conversations assigned to this user (usr_…) at the end of the range.
    pub assignee_id: Option<ID>,
    /// Conversations of this source (`src_…`).
    pub source_id: Option<ID>,
}

/// `serviceMetrics`' answer (its definitions are the GraphQL type's doc, below).
pub struct ServiceMetrics(Metrics, Option<ServiceGroupBy>);

/// Service metrics, computed from the event log (a re-run over the same log gives the same
/// numbers; later changes to a conversation do not rewrite past figures).
///
/// Definitions. **First response**: per conversation, from its first inbound message to
/// the first outbound one at or after it, counted where that inbound message falls (a
/// conversation whose first inbound message lies before the range is not measured; a
/// conversation's first response is measured once, not again after a reopening).
/// **Resolution**: from the conversation's opening (its first message) or its reopening
/// (a new message or a status set after a resolution) to a status RESOLVED, counted where
/// the resolution falls. Times are wall-clock seconds; medians and p90 are nearest-rank.
/// **Volume**: messages by `occurred_at` in the range, inbound and outbound. **Opened**:
/// openings and reopenings in the range; **resolved**: resolutions in it. **Backlog**:
/// conversations not resolved at the end of each local day (DAY, WEEK: of the group's
/// last day; other groupings and the total: at `to`); PENDING and SNOOZED conversations
/// are not resolved, and spam counts like any other conversation. **SLA breaches** against
/// the workspace's rules and business hours as they were when Rapport recorded the fact
/// that started the wait (the first inbound message, the opening): `slaRules` and
/// `businessHours` for waits since their last change, the logged earlier ones before
/// (business seconds for a rule with `businessHoursOnly`): a first response slower than the target, or still missing after
/// longer than it at `to` (at the time of the request when `to` is still ahead: a
/// deadline that has not passed is no breach), a resolution slower than its target. DAY
/// and WEEK buckets (weeks start on Monday) are local days of the workspace's time zone
/// (`businessHours`).
///
/// **Time of a fact**: a message's `occurredAt`; an opening or a reopening by a message,
/// that message's; a status someone set, or a snooze that ran out, when it happened. A
/// conversation's status changes keep the order they were recorded in, and time never
/// runs backwards within a conversation: each change takes the later of its own time and
/// the previous change's. So a message written before a resolution but received after
/// it reopens the conversation at the resolution's time.
#[Object]
impl ServiceMetrics {
    /// The zone DAY/WEEK buckets and the backlog's days are in.
    async fn time_zone(&self) -> &str {
        self.0.time_zone.name()
    }
    /// The grouping asked for; `null` when none was (then `groups` is empty).
    async fn group_by(&self) -> Option<ServiceGroupBy> {
        self.1
    }
    /// The whole range.
    async fn total(&self) -> ServiceFigures {
        ServiceFigures(self.0.total.clone())
    }
    /// One entry per group: every local day (week) of the range for DAY (WEEK), in order;
    /// the groups something happened in for CHANNEL, ASSIGNEE and SOURCE.
    async fn groups(&self, ctx: &Context<'_>) -> Result<Vec<ServiceGroup>> {
        let groups = self
            .0
            .groups
            .iter()
            .map(|(key, figures)| ServiceGroup(*key, figures.clone()))
            .collect();
        Ok(super::charged(ctx, groups)?)
    }
    /// Conversations not resolved at the end of each local day of the range (the last
    /// day's at `to`).
    async fn backlog(&self, ctx: &Context<'_>) -> Result<Vec<ServiceBacklogPoint>> {
        let backlog = self.0.backlog.iter().map(ServiceBacklogPoint::of).collect();
        Ok(super::charged(ctx, backlog)?)
    }
}

/// Open conversations at one moment.
#[derive(SimpleObject)]
pub struct ServiceBacklogPoint {
    /// The local day.
    pub date: NaiveDate,
    /// The moment counted: the day's end (its next local midnight), or `to`.
    pub at: DateTime<Utc>,
    /// Conversations not resolved at `at`.
    pub open: i64,
}

impl ServiceBacklogPoint {
    fn of(point: &BacklogPoint) -> ServiceBacklogPoint {
        ServiceBacklogPoint {
            date: point.date,
            at: point.at,
            open: point.open,
        }
    }
}

/// One group of `serviceMetrics`: the field of its grouping is set.
pub struct ServiceGroup(GroupKey, Figures);

/// One group of `serviceMetrics`: the field of its grouping (`date`, `channel`,
/// `assignee` or `sourceId`) is set, the others are `null`.
#[Object]
impl ServiceGroup {
    /// The group as text: the day or week's first day (`2026-11-02`), the channel's
    /// stored name, the assignee's or source's id, or `none`.
    async fn key(&self) -> String {
        match self.0 {
            GroupKey::Day(date) | GroupKey::Week(date) => date.to_string(),
            GroupKey::Channel(channel) => channel.unwrap_or("none").to_owned(),
            GroupKey::Assignee(user) => user.map_or_else(|| "none".to_owned(), encode),
            GroupKey::Source(source) => source.map_or_else(|| "none".to_owned(), encode),
        }
    }
    /// DAY: the local day; WEEK: its Monday.
    async fn date(&self) -> Option<NaiveDate> {
        match self.0 {
            GroupKey::Day(date) | GroupKey::Week(date) => Some(date),
            _ => None,
        }
    }
    /// CHANNEL: the channel.
    async fn channel(&self) -> Option<Channel> {
        match self.0 {
            GroupKey::Channel(Some(name)) => Channel::parse(name),
            _ => None,
        }
    }
    /// ASSIGNEE: the user (`null` for the unassigned group).
    async fn assignee(&self, ctx: &Context<'_>) -> Result<Option<User>> {
        match self.0 {
            GroupKey::Assignee(Some(user)) => Ok(load(ctx, UserById(user)).await?.map(User)),
            _ => Ok(None),
        }
    }
    /// SOURCE: the source's id (`src_…`); `null` for the group of conversations of no
    /// source (`key` `none`).
    async fn source_id(&self) -> Option<ID> {
        match self.0 {
            GroupKey::Source(Some(source)) => Some(ID(encode(source))),
            _ => None,
        }
    }
    /// The group's figures.
    async fn figures(&self) -> ServiceFigures {
        ServiceFigures(self.1.clone())
    }
}

pub struct ServiceFigures(pub Figures);

/// The figures of a group, a range or a customer (see `ServiceMetrics` for definitions).
#[Object]
impl ServiceFigures {
    /// Seconds from a conversation's first inbound message to our first answer.
    async fn first_response(&self) -> DurationStats {
        DurationStats::of(&self.0.first_response)
    }
    /// Seconds from an opening or reopening to RESOLVED.
    async fn resolution(&self) -> DurationStats {
        DurationStats::of(&self.0.resolution)
    }
    /// Inbound messages.
    async fn volume_in(&self) -> i64 {
        self.0.volume_in
    }
    /// Outbound messages (our replies and posts).
    async fn volume_out(&self) -> i64 {
        self.0.volume_out
    }
    /// Conversations opened or reopened.
    async fn opened(&self) -> i64 {
        self.0.opened
    }
    /// Resolutions.
    async fn resolved(&self) -> i64 {
        self.0.resolved
    }
    /// Conversations not resolved at the group's end (see `ServiceMetrics`).
    async fn backlog(&self) -> i64 {
        self.0.backlog
    }
    /// Breaches of the SLA rules (see `ServiceMetrics`).
    async fn sla_breaches(&self) -> SlaBreaches {
        let breaches = &self.0.breaches;
        SlaBreaches {
            count: breaches.first_response + breaches.resolution,
            first_response: breaches.first_response,
            resolution: breaches.resolution,
            conversation_count: breaches.conversation_count,
            conversation_ids: breaches
                .conversations
                .iter()
                .map(|id| ID(encode(*id)))
                .collect(),
        }
    }
}

/// How many durations were measured, and their median and 90th percentile in seconds
/// (nearest rank; `null` when none were).
#[derive(SimpleObject)]
pub struct DurationStats {
    /// How many durations were measured.
    pub count: i64,
    /// Their median in seconds; `null` when none were measured.
    pub median_secs: Option<i64>,
    /// Their 90th percentile in seconds; `null` when none were measured.
    pub p90_secs: Option<i64>,
}

impl DurationStats {
    fn of(durations: &Durations) -> DurationStats {
        DurationStats {
            count: durations.count,
            median_secs: durations.median,
            p90_secs: durations.p90,
        }
    }
}

/// Breaches of the workspace's SLA rules.
#[derive(SimpleObject)]
pub struct SlaBreaches {
    /// First-response and resolution breaches together.
    pub count: i64,
    /// First responses slower than the target, or still missing past it.
    pub first_response: i64,
    /// Resolutions slower than the target.
    pub resolution: i64,
    /// How many conversations breached a target.
    pub conversation_count: i64,
    /// The breaching conversations, by id, at most 100.
    pub conversation_ids: Vec<ID>,
}

/// `serviceMetrics`.
pub(super) async fn service_metrics(
    ctx: &Context<'_>,
    range: ServiceRangeInput,
    group_by: Option<ServiceGroupBy>,
    filter: Option<ServiceMetricsFilterInput>,
) -> Result<ServiceMetrics> {
    let filter = filter.unwrap_or_default();
    let query = MetricsQuery {
        from: range.from,
        to: range.to,
        group_by,
        channel: filter.channel,
        assignee_id: opt_id::<UserId>("filter.assigneeId", filter.assignee_id.as_ref())?,
        source_id: opt_id::<SourceId>("filter.sourceId", filter.source_id.as_ref())?,
    };
    let metrics = service::metrics(&app(ctx).db, caller(ctx)?, &query).await?;
    Ok(ServiceMetrics(metrics, group_by))
}

/// `Customer.metrics.service`: the totals of one customer's conversations, through the
/// request's loader so a page of customers shares one log read.
pub(super) async fn customer_service(
    ctx: &Context<'_>,
    customer: entity::CustomerId,
    range: ServiceRangeInput,
) -> Result<ServiceFigures> {
    // The range's error names its field here, not as a loader's failure.
    service::check_range(range.from, range.to)?;
    let key = CustomerServiceOf(CustomerRange {
        customer,
        from: range.from,
        to: range.to,
    });
    Ok(ServiceFigures(load(ctx, key).await?.unwrap_or_default()))
}

/// The key of one customer's service figures over a range.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct CustomerServiceOf(pub CustomerRange);

impl Loader<CustomerServiceOf> for Loaders {
    type Value = Figures;
    type Error = LoadError;

    async fn load(
        &self,
        keys: &[CustomerServiceOf],
    ) -> std::result::Result<HashMap<CustomerServiceOf, Figures>, LoadError> {
        let wanted: Vec<CustomerRange> = keys.iter().map(|key| key.0).collect();
        let figures = service::customers_metrics(&self.db, self.workspace_id, &wanted).await?;
        Ok(keys.iter().copied().zip(figures).collect())
    }
}

/// A service-level target.
pub struct SlaRuleObject(SlaRule);

/// A service-level target: how fast we answer and resolve a channel's conversations.
#[Object(name = "SlaRule")]
impl SlaRuleObject {
    /// The channel it applies to; `null`: every channel without a rule of its own.
    async fn channel(&self) -> Option<Channel> {
        self.0.channel
    }
    /// Our first answer within this many seconds of the customer's first message.
    async fn first_response_secs(&self) -> Option<i64> {
        self.0.first_response_secs
    }
    /// Resolved within this many seconds of the opening (or reopening).
    async fn resolution_secs(&self) -> Option<i64> {
        self.0.resolution_secs
    }
    /// Whether only the workspace's business hours count towards the targets.
    async fn business_hours_only(&self) -> bool {
        self.0.business_hours_only
    }
    /// When the rule was last set.
    async fn updated_at(&self) -> DateTime<Utc> {
        self.0.updated_at
    }
}

/// `slaRules`.
pub(super) async fn sla_rules(ctx: &Context<'_>) -> Result<Vec<SlaRuleObject>> {
    Ok(service::sla_rules(&app(ctx).db, caller(ctx)?)
        .await?
        .into_iter()
        .map(SlaRuleObject)
        .collect())
}

/// One rule per channel: setting a channel's rule again replaces it.
#[derive(InputObject)]
pub struct SetSlaRuleInput {
    /// The channel; leave out (or `null`) for the rule of every channel without its own.
    pub channel: Option<Channel>,
    /// The first-response target in seconds (1 to a year); no such target when left out.
    /// A rule needs at least one target (`BAD_USER_INPUT` otherwise).
    pub first_response_secs: Option<i64>,
    /// The resolution target in seconds (1 to a year); no such target when left out.
    pub resolution_secs: Option<i64>,
    /// Count only business hours (`setBusinessHours`) towards the targets.
    #[graphql(default)]
    pub business_hours_only: bool,
}

/// What `setSlaRule` answers.
#[derive(SimpleObject)]
pub struct SlaRulePayload {
    /// The rule as set.
    pub sla_rule: SlaRuleObject,
}

/// `setSlaRule`.
pub(super) async fn set_sla_rule(
    ctx: &Context<'_>,
    input: SetSlaRuleInput,
) -> Result<SlaRulePayload> {
    let rule = NewSlaRule {
        channel: input.channel,
        first_response_secs: input.first_response_secs,
        resolution_secs: input.resolution_secs,
        business_hours_only: input.business_hours_only,
    };
    let rule = service::set_sla_rule(&app(ctx).db, caller(ctx)?, rule).await?;
    Ok(SlaRulePayload {
        sla_rule: SlaRuleObject(rule),
    })
}

/// The SLA rule to delete.
#[derive(InputObject)]
pub struct DeleteSlaRuleInput {
    /// The channel whose rule goes; `null` for the any-channel rule.
    pub channel: Option<Channel>,
}

/// What `deleteSlaRule` answers.
#[derive(SimpleObject)]
pub struct DeleteSlaRulePayload {
    /// `false` when there was no such rule.
    pub deleted: bool,
}

/// `deleteSlaRule`.
pub(super) async fn delete_sla_rule(
    ctx: &Context<'_>,
    input: DeleteSlaRuleInput,
) -> Result<DeleteSlaRulePayload> {
    let deleted = service::delete_sla_rule(&app(ctx).db, caller(ctx)?, input.channel).await?;
    Ok(DeleteSlaRulePayload { deleted })
}

/// One opening interval of a weekday, local times `HH:MM` (`close` may be `24:00`).
#[derive(InputObject, SimpleObject)]
#[graphql(input_name = "BusinessHoursIntervalInput")]
pub struct BusinessHoursInterval {
    /// The day.
    pub weekday: Weekday,
    /// When it opens, local `HH:MM` (`09:00`).
    pub open: String,
    /// When it closes, local `HH:MM`, after `open` (`17:30`, or `24:00` for midnight).
    pub close: String,
}

/// The workspace's time zone and weekly business hours.
#[derive(SimpleObject)]
pub struct BusinessHoursObject {
    /// An IANA zone (`Europe/Madrid`).
    pub time_zone: String,
    /// By weekday and opening time.
    pub hours: Vec<BusinessHoursInterval>,
}

impl BusinessHoursObject {
    fn of(hours: &BusinessHours) -> BusinessHoursObject {
        BusinessHoursObject {
            time_zone: hours.time_zone.name().to_owned(),
            hours: hours
                .hours
                .iter()
                .map(|interval| BusinessHoursInterval {
                    weekday: interval.weekday,
                    open: service::format_minutes(interval.open),
                    close: service::format_minutes(interval.close),
                })
                .collect(),
        }
    }
}

/// `businessHours`.
pub(super) async fn business_hours(ctx: &Context<'_>) -> Result<BusinessHoursObject> {
    let hours = service::business_hours(&app(ctx).db, caller(ctx)?).await?;
    Ok(BusinessHoursObject::of(&hours))
}

/// Replaces the time zone and every interval: weekdays left out are closed.
#[derive(InputObject)]
pub struct SetBusinessHoursInput {
    /// An IANA zone (`Europe/Madrid`).
    pub time_zone: String,
    /// The opening intervals; intervals of one day must not overlap.
    pub hours: Vec<BusinessHoursInterval>,
}

/// What `setBusinessHours` answers.
#[derive(SimpleObject)]
pub struct BusinessHoursPayload {
    /// The time zone and hours as set.
    pub business_hours: BusinessHoursObject,
}

/// The most intervals a week takes.
const MAX_INTERVALS: usize = 50;

/// `setBusinessHours`.
pub(super) async fn set_business_hours(
    ctx: &Context<'_>,
    input: SetBusinessHoursInput,
) -> Result<BusinessHoursPayload> {
    // The role first: a viewer learns nothing about the input it may not send.
    let caller = caller(ctx)?;
    caller.require(Role::Admin, "setting business hours")?;
    if input.hours.len() > MAX_INTERVALS {
        return Err(crate::Error::field(
            "hours",
            format!("give at most {MAX_INTERVALS} intervals"),
        )
        .into());
    }
    let time_zone = service::parse_zone("timeZone", &input.time_zone)?;
    let hours = input
        .hours
        .iter()
        .enumerate()
        .map(|(index, interval)| {
            let field = |name: &str| format!("hours[{index}].{name}");
            Ok(Interval {
                weekday: interval.weekday,
                open: service::parse_minutes(&field("open"), &interval.open)?,
                close: service::parse_minutes(&field("close"), &interval.close)?,
            })
        })
        .collect::<crate::Result<Vec<_>>>()?;
    let hours = BusinessHours::new(time_zone, hours)?;
    let hours = service::set_business_hours(&app(ctx).db, caller, hours).await?;
    Ok(BusinessHoursPayload {
        business_hours: BusinessHoursObject::of(&hours),
    })
}
