//! The inbox: conversations as the unit of a team's work. Who works each one (a user of
//! the workspace), where it stands (OPEN, PENDING, SNOOZED until a time, RESOLVED), its
//! priority, labels and spam flag; the filtered, keyset-paged list agents work from and
//! its per-status counts; and the snooze timer.
//!
//! Every change goes through [`apply`]: one transaction for one conversation or a bulk of
//! up to [`MAX_BULK`], all or nothing (one id the workspace does not have and nothing is
//! changed), each changed conversation recorded by an event naming who changed it.
//!
//! A SNOOZED conversation whose time has come reads as OPEN at once (in filters, counts
//! and the API), whoever looks; [`wake_due`], run by every `rapport serve` process, then
//! stores the change and its `conversation.woken` event exactly once, even with several
//! processes on one database (a conditional `UPDATE` per row decides).

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, TimeZone, Utc};
use sea_orm::sea_query::{Alias, Expr, Func, OnConflict, Query, SimpleExpr};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, Condition, ConnectionTrait, EntityTrait, Order, QueryFilter,
    QueryOrder, QuerySelect, Select, TransactionTrait,
};

use super::event::{Actor, ConversationChange, Event};
use super::page::{self, Page, PageArgs, Window};
use super::{Caller, ConversationStatus, Priority, Role};
use crate::error::{Error, Result};
use crate::ids;
use entity::conversation::{Column, Entity, Model};
use entity::{
    conversation_label, interaction, spam_author, tag, ConversationId, CustomerId, SourceId, TagId,
    UserId, WorkspaceId,
};

/// The most conversations one bulk change takes.
pub const MAX_BULK: usize = 100;

string_enum!(
    /// How the inbox is ordered. LAST_ACTIVITY: the most recent message first.
    /// OLDEST_WAITING: the customer who has waited longest for an answer first (those
    /// waiting for nothing last). PRIORITY: URGENT first, then by last activity.
    InboxOrder {
        /// The most recent message (either way) first.
        LastActivity = "last_activity",
        /// The longest `waitingSince` first; conversations waiting for nothing last.
        OldestWaiting = "oldest_waiting",
        /// URGENT, HIGH, NORMAL, LOW; the most recent message first within each.
        Priority = "priority",
    }
);

/// Whose conversations a list shows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AssigneeFilter {
    /// Assigned to nobody.
    Nobody,
    /// Assigned to this user.
    User(UserId),
}

/// Which conversations the inbox shows; every set field must match.
#[derive(Clone, Debug, Default)]
pub struct InboxFilter {
    /// Any of these statuses, as they read now (a SNOOZED one whose time came is OPEN).
    pub statuses: Vec<ConversationStatus>,
    pub assignee: Option<AssigneeFilter>,
    pub channel: Option<connectors::Channel>,
    pub source_id: Option<SourceId>,
    /// Carrying the label with this name.
    pub label: Option<String>,
    /// Any of these priorities.
    pub priorities: Vec<Priority>,
    /// Holding an interaction detected in this language (ISO 639-1, as `Interaction.language`).
    pub language: Option<String>,
    /// `true`: nothing of ours answered yet; `false`: answered at least once.
    pub unanswered: Option<bool>,
    /// The customer has waited at least this many seconds for an answer.
    pub waiting_longer_than_secs: Option<i64>,
    /// The sentiment of the customer's latest message in the conversation lies in this
    /// range (each end in [-1, 1], inclusive; either may be open). A conversation whose
    /// latest customer message has no score is left out.
    pub sentiment: Option<(Option<f64>, Option<f64>)>,
    /// `true`: only spam (conversations marked, and those of customers one was marked
    /// of); `false` (the default): spam hidden.
    pub spam: bool,
}

impl InboxFilter {
    /// The filter with its texts checked (`BAD_USER_INPUT` naming the field).
    pub fn checked(mut self) -> Result<InboxFilter> {
        if let Some(label) = self.label.take() {
            self.label = Some(super::text::check_lookup("filter.label", &label, 64)?);
        }
        if let Some(language) = self.language.take() {
            self.language = Some(super::text::check_lookup("filter.language", &language, 16)?);
        }
        if let Some((min, max)) = self.sentiment {
            let outside = |end: Option<f64>| end.is_some_and(|v| !(-1.0..=1.0).contains(&v));
            if outside(min) || outside(max) {
                return Err(Error::field(
                    "filter.sentiment",
                    "a sentiment score lies between -1 (negative) and 1 (positive)",
                ));
            }
            if let (Some(min), Some(max)) = (min, max) {
                if min > max {
                    return Err(Error::field(
                        "filter.sentiment",
                        "sentiment.min must not be above sentiment.max",
                    ));
                }
            }
        }
        if self.waiting_longer_than_secs.is_some_and(|secs| secs < 0) {
            return Err(Error::field(
                "filter.waitingLongerThan",
                "waitingLongerThan is a number of seconds, 0 or more",
            ));
        }
        Ok(self)
    }
}

/// The status `model` reads as at `now`: a SNOOZED conversation whose time came is OPEN,
/// whether or not the snooze timer has stored that yet.
pub fn effective_status(model: &Model, now: DateTime<Utc>) -> ConversationStatus {
    match (model.status, model.snoozed_until) {
        (ConversationStatus::Snoozed, Some(until)) if until <= now => ConversationStatus::Open,
        (status, _) => status,
    }
}

/// When a conversation wakes, as it reads at `now` (`None` once it has woken).
pub fn effective_snoozed_until(model: &Model, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    (effective_status(model, now) == ConversationStatus::Snoozed)
        .then_some(model.snoozed_until)
        .flatten()
}

/// Rows reading as `status` at `now` (see [`effective_status`]).
fn status_condition(status: ConversationStatus, now: DateTime<Utc>) -> Condition {
    let snoozed = Column::Status.eq(ConversationStatus::Snoozed.as_str());
    match status {
        ConversationStatus::Open => Condition::any()
            .add(Column::Status.eq(ConversationStatus::Open.as_str()))
            .add(
                Condition::all()
                    .add(snoozed)
                    .add(Column::SnoozedUntil.lte(now)),
            ),
        ConversationStatus::Snoozed => Condition::all().add(snoozed).add(
            Condition::any()
                .add(Column::SnoozedUntil.is_null())
                .add(Column::SnoozedUntil.gt(now)),
        ),
        other => Condition::all().add(Column::Status.eq(other.as_str())),
    }
}

/// `SELECT … FROM conversation` within the workspace narrowed by `filter` (its statuses
/// too unless `with_statuses` is false).
fn filtered(
    workspace_id: WorkspaceId,
    filter: &InboxFilter,
    now: DateTime<Utc>,
    with_statuses: bool,
) -> Select<Entity> {
    // Spam: the conversation marked, or any conversation of an author one was marked of
    // (what they write after the mark included).
    let of_spam_author = Expr::exists(
        Query::select()
            .expr(Expr::val(1))
            .from(spam_author::Entity)
            .and_where(
                Expr::col((spam_author::Entity, spam_author::Column::WorkspaceId)).eq(workspace_id),
            )
            .and_where(
                Expr::col((spam_author::Entity, spam_author::Column::CustomerId))
                    .equals((Entity, Column::CustomerId)),
            )
            .to_owned(),
    );
    let spam = if filter.spam {
        Condition::any()
            .add(Column::Spam.eq(true))
            .add(of_spam_author)
    } else {
        Condition::all()
            .add(Column::Spam.eq(false))
            .add(of_spam_author.not())
    };
    let mut select = super::scoped::<Entity>(workspace_id).filter(spam);
    if with_statuses && !filter.statuses.is_empty() {
        let mut any = Condition::any();
        for status in &filter.statuses {
            any = any.add(status_condition(*status, now));
        }
        select = select.filter(any);
    }
    match filter.assignee {
        Some(AssigneeFilter::Nobody) => select = select.filter(Column::AssigneeId.is_null()),
        Some(AssigneeFilter::User(user)) => select = select.filter(Column::AssigneeId.eq(user)),
        None => {}
    }
    if let Some(channel) = filter.channel {
        select = select.filter(Column::Channel.eq(channel));
    }
    if let Some(source) = filter.source_id {
        select = select.filter(Column::SourceId.eq(source));
    }
    if !filter.priorities.is_empty() {
        select = select.filter(
            Column::Priority.is_in(filter.priorities.iter().map(|p| p.as_str().to_owned())),
        );
    }
    match filter.unanswered {
        Some(true) => select = select.filter(Column::FirstResponseAt.is_null()),
        Some(false) => select = select.filter(Column::FirstResponseAt.is_not_null()),
        None => {}
    }
    if let Some(secs) = filter.waiting_longer_than_secs {
        let since = now - chrono::Duration::seconds(secs.min(100 * 365 * 86_400));
        select = select.filter(Column::WaitingSince.lte(since));
    }
    if let Some(label) = &filter.label {
        let labelled = Query::select()
            .expr(Expr::val(1))
            .from(conversation_label::Entity)
            .inner_join(
                tag::Entity,
                Expr::col((tag::Entity, tag::Column::Id)).equals((
                    conversation_label::Entity,
                    conversation_label::Column::TagId,
                )),
            )
            .and_where(
                Expr::col((
                    conversation_label::Entity,
                    conversation_label::Column::ConversationId,
                ))
                .equals((Entity, Column::Id)),
            )
            .and_where(Expr::col((tag::Entity, tag::Column::WorkspaceId)).eq(workspace_id))
            .and_where(Expr::col((tag::Entity, tag::Column::Name)).eq(label.clone()))
            .to_owned();
        select = select.filter(Expr::exists(labelled));
    }
    if let Some((min, max)) = filter.sentiment {
        // The latest customer message's score, by the conversation's timeline index.
        let latest = Query::select()
            .column((interaction::Entity, interaction::Column::Sentiment))
            .from(interaction::Entity)
            .and_where(
                Expr::col((interaction::Entity, interaction::Column::ConversationId))
                    .equals((Entity, Column::Id)),
            )
            .and_where(
                Expr::col((interaction::Entity, interaction::Column::Direction))
                    .eq(super::Direction::Inbound.as_str()),
            )
            .order_by(
                (interaction::Entity, interaction::Column::OccurredAt),
                sea_orm::Order::Desc,
            )
            .order_by(
                (interaction::Entity, interaction::Column::Id),
                sea_orm::Order::Desc,
            )
            .limit(1)
            .to_owned();
        let latest =
            || SimpleExpr::SubQuery(None, Box::new(latest.clone().into_sub_query_statement()));
        if let Some(min) = min {
            select = select.filter(Expr::expr(latest()).gte(min));
        }
        if let Some(max) = max {
            select = select.filter(Expr::expr(latest()).lte(max));
        }
        if min.is_none() && max.is_none() {
            select = select.filter(Expr::expr(latest()).is_not_null());
        }
    }
    if let Some(language) = &filter.language {
        let spoken = Query::select()
            .expr(Expr::val(1))
            .from(interaction::Entity)
            .and_where(
                Expr::col((interaction::Entity, interaction::Column::ConversationId))
                    .equals((Entity, Column::Id)),
            )
            .and_where(
                Expr::col((interaction::Entity, interaction::Column::Language))
                    .eq(language.clone()),
            )
            .to_owned();
        select = select.filter(Expr::exists(spoken));
    }
    select
}

/// Where conversations that wait for nothing sort in OLDEST_WAITING: after every waiting one.
fn never() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(9999, 12, 31, 0, 0, 0)
        .single()
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}

/// The sort keys of an order before the id, all in one direction: descending for
/// LAST_ACTIVITY and PRIORITY, ascending for OLDEST_WAITING.
fn keys(order: InboxOrder) -> (Vec<SimpleExpr>, bool) {
    let last = Expr::col((Entity, Column::LastMessageAt)).into();
    match order {
        InboxOrder::LastActivity => (vec![last], true),
        InboxOrder::OldestWaiting => (
            vec![Func::coalesce([
                Expr::col((Entity, Column::WaitingSince)).into(),
                Expr::val(never()).into(),
            ])
            .into()],
            false,
        ),
        InboxOrder::Priority => (vec![priority_rank(), last], true),
    }
}

/// URGENT 3, HIGH 2, NORMAL 1, LOW 0: priorities are stored by name.
fn priority_rank() -> SimpleExpr {
    Expr::case(Column::Priority.eq(Priority::Urgent.as_str()), 3)
        .case(Column::Priority.eq(Priority::High.as_str()), 2)
        .case(Column::Priority.eq(Priority::Normal.as_str()), 1)
        .finally(0)
        .into()
}

fn rank(priority: Priority) -> i64 {
    match priority {
        Priority::Urgent => 3,
        Priority::High => 2,
        Priority::Normal => 1,
        Priority::Low => 0,
    }
}

/// The values of a row's sort keys as its cursor carries them, `|`-separated.
fn key_values(order: InboxOrder, model: &Model) -> String {
    match order {
        InboxOrder::LastActivity => page::time_value(&model.last_message_at),
        InboxOrder::OldestWaiting => page::time_value(&model.waiting_since.unwrap_or_else(never)),
        InboxOrder::Priority => format!(
            "{}|{}",
            rank(model.priority),
            page::time_value(&model.last_message_at)
        ),
    }
}

/// The opaque cursor of `model` in a list in `order`.
pub fn cursor(order: InboxOrder, model: &Model) -> String {
    page::encode(order.as_str(), key_values(order, model), model.id)
}

/// Rows strictly after the cursor's position: a lexicographic comparison of the sort
/// keys and the id, written out term by term (row values are not portable enough).
fn after_position(order: InboxOrder, position: &page::Position) -> Result<Condition> {
    let damaged = || Error::field("after", "the cursor is damaged");
    let (keys, descending) = keys(order);
    let parts: Vec<&str> = position.value.split('|').collect();
    if parts.len() != keys.len() {
        return Err(damaged());
    }
    let mut values: Vec<sea_orm::Value> = Vec::with_capacity(parts.len());
    for (index, part) in parts.iter().enumerate() {
        let is_rank = order == InboxOrder::Priority && index == 0;
        values.push(if is_rank {
            part.parse::<i64>().map_err(|_| damaged())?.into()
        } else {
            DateTime::parse_from_rfc3339(part)
                .map_err(|_| damaged())?
                .with_timezone(&Utc)
                .into()
        });
    }
    let beyond = |expr: SimpleExpr, value: SimpleExpr| {
        if descending {
            Expr::expr(expr).lt(value)
        } else {
            Expr::expr(expr).gt(value)
        }
    };
    let mut any = Condition::any();
    let mut equal_so_far = Condition::all();
    for (key, value) in keys.iter().zip(values) {
        let value: SimpleExpr = Expr::val(value).into();
        any = any.add(equal_so_far.clone().add(beyond(key.clone(), value.clone())));
        equal_so_far = equal_so_far.add(Expr::expr(key.clone()).eq(value));
    }
    let id: SimpleExpr = Expr::col((Entity, Column::Id)).into();
    Ok(any.add(equal_so_far.add(beyond(id, Expr::val(position.id).into()))))
}

/// One page of the caller's inbox (forward paging: `first`, `after`).
pub async fn list(
    db: &impl ConnectionTrait,
    caller: &Caller,
    filter: &InboxFilter,
    order: InboxOrder,
    args: &PageArgs,
) -> Result<Page<Model>> {
    let window: Window = args.window(order.as_str())?;
    let mut select = filtered(caller.workspace_id, filter, super::now(), true);
    if let Some(after) = &window.after {
        select = select.filter(after_position(order, after)?);
    }
    let (keys, descending) = keys(order);
    let direction = if descending { Order::Desc } else { Order::Asc };
    for key in keys {
        select = select.order_by(key, direction.clone());
    }
    let rows = select
        .order_by(Column::Id, direction)
        .limit(window.size + 1)
        .all(db)
        .await?;
    Ok(page::finish(rows, &window))
}

/// How many conversations match `filter` (its statuses aside) in each status, as they
/// read now: a snoozed conversation already due counts as OPEN. One statement (a count
/// per status through CASE, no GROUP BY), so the counts are of one snapshot even while the
/// snooze timer wakes rows: a wake between two statements would count a row twice or not
/// at all.
pub async fn counts(
    db: &impl ConnectionTrait,
    caller: &Caller,
    filter: &InboxFilter,
) -> Result<HashMap<ConversationStatus, i64>> {
    #[derive(sea_orm::FromQueryResult)]
    struct Row {
        open: i64,
        pending: i64,
        snoozed: i64,
        resolved: i64,
    }
    let now = super::now();
    let status = |status: ConversationStatus| Expr::col(Column::Status).eq(status.as_str());
    let due = || status(ConversationStatus::Snoozed).and(Expr::col(Column::SnoozedUntil).lte(now));
    // COUNT of a CASE without ELSE counts the rows it is 1 for (0, never NULL, on none).
    let count_when =
        |condition: SimpleExpr| -> SimpleExpr { Expr::expr(Expr::case(condition, 1)).count() };
    let row = filtered(caller.workspace_id, filter, now, false)
        .select_only()
        .column_as(
            count_when(status(ConversationStatus::Open).or(due())),
            "open",
        )
        .column_as(count_when(status(ConversationStatus::Pending)), "pending")
        .column_as(
            count_when(
                status(ConversationStatus::Snoozed).and(
                    Expr::col(Column::SnoozedUntil)
                        .is_null()
                        .or(Expr::col(Column::SnoozedUntil).gt(now)),
                ),
            ),
            "snoozed",
        )
        .column_as(count_when(status(ConversationStatus::Resolved)), "resolved")
        .into_model::<Row>()
        .one(db)
        .await?
        .ok_or_else(|| Error::Internal("a count without a row".into()))?;
    Ok(HashMap::from([
        (ConversationStatus::Open, row.open),
        (ConversationStatus::Pending, row.pending),
        (ConversationStatus::Snoozed, row.snoozed),
        (ConversationStatus::Resolved, row.resolved),
    ]))
}

/// Which of `customers` are marked as spam authors (one statement for any number).
pub async fn spam_authors(
    db: &impl ConnectionTrait,
    workspace_id: WorkspaceId,
    customers: &[CustomerId],
) -> Result<HashSet<CustomerId>> {
    if customers.is_empty() {
        return Ok(HashSet::new());
    }
    Ok(spam_author::Entity::find()
        .filter(spam_author::Column::WorkspaceId.eq(workspace_id))
        .filter(spam_author::Column::CustomerId.is_in(customers.iter().copied()))
        .all(db)
        .await?
        .into_iter()
        .map(|row| row.customer_id)
        .collect())
}

/// The labels of each conversation, by name (one statement for any number).
pub async fn labels_of(
    db: &impl ConnectionTrait,
    workspace_id: WorkspaceId,
    conversations: &[ConversationId],
) -> Result<HashMap<ConversationId, Vec<tag::Model>>> {
    let links = super::scoped::<conversation_label::Entity>(workspace_id)
        .filter(conversation_label::Column::ConversationId.is_in(conversations.iter().copied()))
        .all(db)
        .await?;
    if links.is_empty() {
        return Ok(HashMap::new());
    }
    // Two statements rather than a join: the tag rows of a page are few and shared.
    let tag_ids: Vec<TagId> = links
        .iter()
        .map(|link| link.tag_id)
        .collect::<HashSet<_>>()
        .into_iter()
        .collect();
    let tags = super::by_ids::<tag::Entity, _>(db, workspace_id, &tag_ids, |t| t.id).await?;
    let mut grouped: HashMap<ConversationId, Vec<tag::Model>> = HashMap::new();
    for link in links {
        if let Some(tag) = tags.get(&link.tag_id) {
            grouped
                .entry(link.conversation_id)
                .or_default()
                .push(tag.clone());
        }
    }
    for list in grouped.values_mut() {
        list.sort_by(|a, b| a.name.cmp(&b.name));
    }
    Ok(grouped)
}

/// The latest interaction of each conversation (one statement for any number): the one
/// no other interaction of its conversation comes after.
pub async fn last_interactions(
    db: &impl ConnectionTrait,
    workspace_id: WorkspaceId,
    conversations: &[ConversationId],
) -> Result<HashMap<ConversationId, interaction::Model>> {
    use interaction::Column as I;
    let newer = Alias::new("newer");
    let later = Query::select()
        .expr(Expr::val(1))
        .from_as(interaction::Entity, newer.clone())
        .and_where(
            Expr::col((newer.clone(), I::ConversationId))
                .equals((interaction::Entity, I::ConversationId)),
        )
        .cond_where(
            Condition::any()
                .add(
                    Expr::col((newer.clone(), I::OccurredAt))
                        .gt(Expr::col((interaction::Entity, I::OccurredAt))),
                )
                .add(
                    Condition::all()
                        .add(
                            Expr::col((newer.clone(), I::OccurredAt))
                                .equals((interaction::Entity, I::OccurredAt)),
                        )
                        .add(Expr::col((newer, I::Id)).gt(Expr::col((interaction::Entity, I::Id)))),
                ),
        )
        .to_owned();
    let rows = super::scoped_under::<interaction::Entity>(db.get_database_backend(), workspace_id)
        .filter(I::ConversationId.is_in(conversations.iter().copied()))
        .filter(Expr::exists(later).not())
        .all(db)
        .await?;
    Ok(rows
        .into_iter()
        .filter_map(|row| row.conversation_id.map(|id| (id, row)))
        .collect())
}

/// A change to conversations (see [`apply`]).
#[derive(Clone, Debug)]
pub enum Change {
    /// Assign to a user of the workspace, or unassign (`None`).
    Assign(Option<UserId>),
    /// Set the status; `snoozed_until` goes with SNOOZED only, and must be in the future.
    Status {
        status: ConversationStatus,
        snoozed_until: Option<DateTime<Utc>>,
    },
    Priority(Priority),
    /// Put a label on (a workspace tag, created when missing); a no-op where it is.
    AddLabel {
        name: String,
        color: Option<String>,
    },
    /// Take a label off; a no-op where it is not, `NOT_FOUND` when no such label exists.
    RemoveLabel(String),
    /// Mark as spam or not: a marked conversation and every conversation of its customer,
    /// those to come included, are hidden from the inbox until the mark is taken off.
    Spam(bool),
}

impl Change {
    fn action(&self) -> &'static str {
        match self {
            Change::Assign(_) => "assigning a conversation",
            Change::Status { .. } => "setting a conversation's status",
            Change::Priority(_) => "setting a conversation's priority",
            Change::AddLabel { .. } | Change::RemoveLabel(_) => "labelling a conversation",
            Change::Spam(_) => "marking a conversation as spam",
        }
    }

    /// The change with its inputs checked.
    fn checked(self, now: DateTime<Utc>) -> Result<Change> {
        Ok(match self {
            Change::Status {
                status: ConversationStatus::Snoozed,
                snoozed_until,
            } => match snoozed_until {
                Some(until) if until > now => Change::Status {
                    status: ConversationStatus::Snoozed,
                    snoozed_until: Some(until),
                },
                Some(_) => {
                    return Err(Error::field(
                        "snoozedUntil",
                        "snoozedUntil must be in the future",
                    ))
                }
                None => {
                    return Err(Error::field(
                        "snoozedUntil",
                        "SNOOZED needs snoozedUntil, the time the conversation wakes",
                    ))
                }
            },
            Change::Status {
                snoozed_until: Some(_),
                ..
            } => {
                return Err(Error::field(
                    "snoozedUntil",
                    "snoozedUntil goes with the SNOOZED status only",
                ))
            }
            Change::AddLabel { name, color } => Change::AddLabel {
                name: super::clean_required("label", &name, 64)?,
                color: super::clean_optional("color", color, 32)?,
            },
            Change::RemoveLabel(name) => {
                Change::RemoveLabel(super::text::check_lookup("label", &name, 64)?)
            }
            other => other,
        })
    }
}

/// Applies `change` to the conversations `ids` of the caller's workspace (agent role), at
/// most [`MAX_BULK`] at once, in one transaction: an id the workspace does not have is
/// `NOT_FOUND` naming it and nothing is changed; an assignee must be an active user of
/// the same workspace (`NOT_FOUND` otherwise, as for another workspace's user). Each
/// conversation the change really changes gets `updated_at` and an event naming the
/// caller; the rest are left as they are. Returns the conversations in the order asked.
pub async fn apply(
    db: &impl TransactionTrait,
    caller: &Caller,
    ids: &[ConversationId],
    change: Change,
) -> Result<Vec<Model>> {
    caller.require(Role::Agent, change.action())?;
    if ids.is_empty() {
        return Err(Error::field(
            "conversationIds",
            "give at least one conversation id",
        ));
    }
    if ids.len() > MAX_BULK {
        return Err(Error::field(
            "conversationIds",
            format!(
                "at most {MAX_BULK} conversations at once, got {}",
                ids.len()
            ),
        ));
    }
    let mut seen = HashSet::new();
    let ids: Vec<ConversationId> = ids.iter().copied().filter(|id| seen.insert(*id)).collect();
    let now = super::now();
    let change = change.checked(now)?;
    let workspace_id = caller.workspace_id;
    let txn = super::begin_write(db).await?;
    // Locked (PostgreSQL; SQLite's writers take turns already) and in id order: two agents
    // making the same change at once must not both see the old value and both write an
    // event, and two bulk changes over the same rows must not lock them crosswise.
    let rows: HashMap<ConversationId, Model> =
        super::by_ids_query::<Entity, _>(txn.get_database_backend(), workspace_id, &ids)
            .order_by_asc(Column::Id)
            .lock_exclusive()
            .all(&txn)
            .await?
            .into_iter()
            .map(|row| (row.id, row))
            .collect();
    if let Some(missing) = ids.iter().find(|id| !rows.contains_key(id)) {
        return Err(Error::not_found("conversation", ids::encode(*missing)));
    }
    let update = || {
        Entity::update_many()
            .col_expr(Column::UpdatedAt, Expr::value(now))
            .filter(Column::WorkspaceId.eq(workspace_id))
    };
    let unlike = |differs: &dyn Fn(&Model) -> bool| -> Vec<ConversationId> {
        ids.iter()
            .copied()
            .filter(|id| rows.get(id).is_some_and(differs))
            .collect()
    };
    let mut label = None;
    let (changed, kind): (Vec<ConversationId>, ChangeKind) = match &change {
        Change::Assign(assignee) => {
            if let Some(user) = assignee {
                let user = super::find_scoped(&txn, workspace_id, *user).await?;
                if !user.active {
                    return Err(Error::field(
                        "assigneeId",
                        format!("the user {} is deactivated", ids::encode(user.id)),
                    ));
                }
            }
            let changed = unlike(&|row| row.assignee_id != *assignee);
            if !changed.is_empty() {
                update()
                    .col_expr(Column::AssigneeId, Expr::value(*assignee))
                    .filter(Column::Id.is_in(changed.clone()))
                    .exec(&txn)
                    .await?;
            }
            (changed, ChangeKind::Assigned)
        }
        Change::Status {
            status,
            snoozed_until,
        } => {
            let changed = unlike(&|row| {
                effective_status(row, now) != *status
                    || (*status == ConversationStatus::Snoozed
                        && row.snoozed_until != *snoozed_until)
            });
            if !changed.is_empty() {
                let resolved = *status == ConversationStatus::Resolved;
                let mut statement = update()
                    .col_expr(Column::Status, Expr::value(status.as_str()))
                    .col_expr(Column::SnoozedUntil, Expr::value(*snoozed_until))
                    .col_expr(Column::ResolvedAt, Expr::value(resolved.then_some(now)));
                if resolved {
                    // Resolved, nothing waits any more (answered or not): the customer's
                    // next message starts a new wait.
                    statement = statement.col_expr(
                        Column::WaitingSince,
                        Expr::value(Option::<DateTime<Utc>>::None),
                    );
                }
                statement
                    .filter(Column::Id.is_in(changed.clone()))
                    .exec(&txn)
                    .await?;
            }
            (changed, ChangeKind::StatusSet)
        }
        Change::Priority(priority) => {
            let changed = unlike(&|row| row.priority != *priority);
            if !changed.is_empty() {
                update()
                    .col_expr(Column::Priority, Expr::value(priority.as_str()))
                    .filter(Column::Id.is_in(changed.clone()))
                    .exec(&txn)
                    .await?;
            }
            (changed, ChangeKind::PrioritySet)
        }
        Change::Spam(true) => {
            let changed = unlike(&|row| !row.spam);
            if !changed.is_empty() {
                update()
                    .col_expr(Column::Spam, Expr::value(true))
                    .filter(Column::Id.is_in(changed.clone()))
                    .exec(&txn)
                    .await?;
                let authors: HashSet<CustomerId> = changed
                    .iter()
                    .filter_map(|id| rows.get(id).and_then(|row| row.customer_id))
                    .collect();
                mark_authors(&txn, workspace_id, authors, true, now).await?;
            }
            (changed, ChangeKind::SpamSet)
        }
        Change::Spam(false) => {
            // "Not spam" on any conversation the inbox hides as spam: its own mark and its
            // author's mark go, whichever hid it (a later thread of a marked author has
            // no mark of its own), so every conversation of those authors shows again.
            let customers: Vec<CustomerId> = rows
                .values()
                .filter_map(|row| row.customer_id)
                .collect::<HashSet<_>>()
                .into_iter()
                .collect();
            let marked = spam_authors(&txn, workspace_id, &customers).await?;
            let mut changed =
                unlike(&|row| row.spam || row.customer_id.is_some_and(|id| marked.contains(&id)));
            if !marked.is_empty() {
                // The author's threads marked themselves show again too: the mark was on
                // the author, whichever of their threads it was given through.
                let asked: HashSet<ConversationId> = ids.iter().copied().collect();
                let flagged =
                    super::scoped_under::<Entity>(txn.get_database_backend(), workspace_id)
                        .filter(Column::CustomerId.is_in(marked.iter().copied()))
                        .filter(Column::Spam.eq(true))
                        .order_by_asc(Column::Id)
                        .all(&txn)
                        .await?;
                changed.extend(
                    flagged
                        .into_iter()
                        .map(|row| row.id)
                        .filter(|id| !asked.contains(id)),
                );
            }
            if !changed.is_empty() {
                update()
                    .col_expr(Column::Spam, Expr::value(false))
                    .filter(Column::Id.is_in(changed.clone()))
                    .exec(&txn)
                    .await?;
                mark_authors(&txn, workspace_id, marked, false, now).await?;
            }
            (changed, ChangeKind::SpamSet)
        }
        Change::AddLabel { name, color } => {
            let tag = super::tag::ensure(&txn, workspace_id, name, color.clone()).await?;
            let carrying = carrying(&txn, workspace_id, tag.id, &ids).await?;
            let changed = unlike(&|row| !carrying.contains(&row.id));
            if !changed.is_empty() {
                let links = changed.iter().map(|id| conversation_label::ActiveModel {
                    conversation_id: Set(*id),
                    tag_id: Set(tag.id),
                    workspace_id: Set(workspace_id),
                    created_at: Set(now),
                });
                conversation_label::Entity::insert_many(links)
                    .on_conflict(
                        OnConflict::columns([
                            conversation_label::Column::ConversationId,
                            conversation_label::Column::TagId,
                        ])
                        .do_nothing()
                        .to_owned(),
                    )
                    .exec_without_returning(&txn)
                    .await?;
                update()
                    .filter(Column::Id.is_in(changed.clone()))
                    .exec(&txn)
                    .await?;
            }
            label = Some(tag.name);
            (changed, ChangeKind::LabelAdded)
        }
        Change::RemoveLabel(name) => {
            let tag = super::tag::by_name(&txn, workspace_id, name)
                .await?
                .ok_or_else(|| Error::not_found("label", name.clone()))?;
            let carrying = carrying(&txn, workspace_id, tag.id, &ids).await?;
            let changed = unlike(&|row| carrying.contains(&row.id));
            if !changed.is_empty() {
                conversation_label::Entity::delete_many()
                    .filter(conversation_label::Column::WorkspaceId.eq(workspace_id))
                    .filter(conversation_label::Column::TagId.eq(tag.id))
                    .filter(conversation_label::Column::ConversationId.is_in(changed.clone()))
                    .exec(&txn)
                    .await?;
                update()
                    .filter(Column::Id.is_in(changed.clone()))
                    .exec(&txn)
                    .await?;
            }
            label = Some(tag.name);
            (changed, ChangeKind::LabelRemoved)
        }
    };
    // The asked rows, and the others a change reached (an author's other spam threads).
    let mut read = ids.clone();
    read.extend(changed.iter().filter(|id| !rows.contains_key(id)));
    let mut after = super::by_ids::<Entity, _>(&txn, workspace_id, &read, |row| row.id).await?;
    let actor = Actor::of(caller);
    let changes: Vec<ConversationChange> = changed
        .iter()
        .filter_map(|id| after.get(id))
        .map(|model| ConversationChange {
            conversation: model.clone(),
            actor: actor.clone(),
            label: label.clone(),
        })
        .collect();
    super::event::append_many(&txn, workspace_id, changes.iter().map(|c| kind.event(c))).await?;
    txn.commit().await?;
    Ok(ids.iter().filter_map(|id| after.remove(id)).collect())
}

/// Marks the customers `authors` as spam authors (their conversations, later ones
/// included, are hidden from the inbox) or takes the mark off.
async fn mark_authors(
    db: &impl ConnectionTrait,
    workspace_id: WorkspaceId,
    authors: HashSet<CustomerId>,
    spam: bool,
    now: DateTime<Utc>,
) -> Result<()> {
    if spam {
        let rows = authors
            .into_iter()
            .map(|customer_id| spam_author::ActiveModel {
                workspace_id: Set(workspace_id),
                customer_id: Set(customer_id),
                created_at: Set(now),
            });
        spam_author::Entity::insert_many(rows)
            .on_conflict(
                OnConflict::columns([
                    spam_author::Column::WorkspaceId,
                    spam_author::Column::CustomerId,
                ])
                .do_nothing()
                .to_owned(),
            )
            .exec_without_returning(db)
            .await?;
    } else {
        spam_author::Entity::delete_many()
            .filter(spam_author::Column::WorkspaceId.eq(workspace_id))
            .filter(spam_author::Column::CustomerId.is_in(authors))
            .exec(db)
            .await?;
    }
    Ok(())
}

/// Which event records a change.
#[derive(Clone, Copy)]
enum ChangeKind {
    Assigned,
    StatusSet,
    PrioritySet,
    SpamSet,
    LabelAdded,
    LabelRemoved,
}

impl ChangeKind {
    fn event(self, change: &ConversationChange) -> Event<'_> {
        match self {
            ChangeKind::Assigned => Event::ConversationAssigned(change),
            ChangeKind::StatusSet => Event::ConversationStatusSet(change),
            ChangeKind::PrioritySet => Event::ConversationPrioritySet(change),
            ChangeKind::SpamSet => Event::ConversationSpamSet(change),
            ChangeKind::LabelAdded => Event::ConversationLabelAdded(change),
            ChangeKind::LabelRemoved => Event::ConversationLabelRemoved(change),
        }
    }
}

/// Which of `ids` carry the tag `tag_id`.
async fn carrying(
    db: &impl ConnectionTrait,
    workspace_id: WorkspaceId,
    tag_id: TagId,
    ids: &[ConversationId],
) -> Result<HashSet<ConversationId>> {
    Ok(super::scoped::<conversation_label::Entity>(workspace_id)
        .filter(conversation_label::Column::TagId.eq(tag_id))
        .filter(conversation_label::Column::ConversationId.is_in(ids.iter().copied()))
        .all(db)
        .await?
        .into_iter()
        .map(|link| link.conversation_id)
        .collect())
}

/// Stores the wake of up to `limit` SNOOZED conversations whose time has come, in every
/// workspace (the snooze timer is Rapport's, not a tenant's), each with a
/// `conversation.woken` event; returns how many woke.
///
/// Exactly once across processes: each row is woken by an `UPDATE … WHERE status =
/// 'snoozed' AND snoozed_until <= now`, and only a row that update changed gets its
/// event. On PostgreSQL a second process's update of the same row waits for the first's
/// commit and then finds the row no longer snoozed; on SQLite writers take turns. A
/// status set meanwhile by an agent wins the same way.
pub async fn wake_due(db: &impl TransactionTrait, limit: u64) -> Result<usize> {
    let now = super::now();
    let txn = super::begin_write(db).await?;
    let due = Entity::find()
        .filter(Column::Status.eq(ConversationStatus::Snoozed.as_str()))
        .filter(Column::SnoozedUntil.lte(now))
        .order_by_asc(Column::SnoozedUntil)
        .limit(limit)
        .all(&txn)
        .await?;
    let mut woken = Vec::new();
    for row in due {
        let result = Entity::update_many()
            .col_expr(
                Column::Status,
                Expr::value(ConversationStatus::Open.as_str()),
            )
            .col_expr(
                Column::SnoozedUntil,
                Expr::value(Option::<DateTime<Utc>>::None),
            )
            .col_expr(Column::UpdatedAt, Expr::value(now))
            .filter(Column::Id.eq(row.id))
            .filter(Column::Status.eq(ConversationStatus::Snoozed.as_str()))
            .filter(Column::SnoozedUntil.lte(now))
            .exec(&txn)
            .await?;
        if result.rows_affected == 1 {
            woken.push(row.id);
        }
    }
    if !woken.is_empty() {
        let rows = Entity::find()
            .filter(Column::Id.is_in(woken.clone()))
            .all(&txn)
            .await?;
        for row in rows {
            let workspace_id = row.workspace_id;
            let change = ConversationChange {
                conversation: row,
                actor: Actor::system("snooze timer"),
                label: None,
            };
            super::event::append(&txn, workspace_id, Event::ConversationWoken(&change)).await?;
        }
    }
    txn.commit().await?;
    Ok(woken.len())
}

#[cfg(test)]
mod migration_tests {
    use chrono::TimeZone;
    use migration::MigratorTrait;
    use sea_orm::{
        ConnectOptions, ConnectionTrait, Database, DatabaseBackend, EntityTrait, Statement, Value,
    };

    /// The inbox migration keeps what was there: the free-text assignee stays, and each
    /// conversation learns since when its customer has waited from its interactions.
    #[tokio::test]
    async fn the_inbox_migration_keeps_data_and_fills_waiting_since() {
        let mut options = ConnectOptions::new("sqlite::memory:");
        options.max_connections(1);
        let db = Database::connect(options).await.unwrap();
        migration::Migrator::up(&db, Some(4)).await.unwrap();
        let uuid = || Value::from(uuid::Uuid::now_v7());
        let (ws, cu, waiting, answered, resolved) = (uuid(), uuid(), uuid(), uuid(), uuid());
        let at = |minute: u32| {
            Value::from(
                chrono::Utc
                    .with_ymd_and_hms(2026, 11, 1, 12, minute, 0)
                    .unwrap(),
            )
        };
        // Rows written as the code of before wrote them, through bound values.
        let mut statements: Vec<(&str, Vec<Value>)> = vec![
            (
                "INSERT INTO workspace (id, slug, name, settings, created_at) VALUES (?, 'w', 'w', '{}', ?)",
                vec![ws.clone(), at(0)],
            ),
            (
                "INSERT INTO customer (id, workspace_id, display_name, lifecycle_stage, custom, first_seen_at, last_seen_at, created_at, updated_at) VALUES (?, ?, 'Ana', 'lead', '{}', ?, ?, ?, ?)",
                vec![cu.clone(), ws.clone(), at(0), at(0), at(0), at(0)],
            ),
        ];
        for (conversation, status, assignee) in [
            (
                waiting.clone(),
                "open",
                Value::from(Some("carmen".to_owned())),
            ),
            (
                answered.clone(),
                "open",
                Value::from(Option::<String>::None),
            ),
            (
                resolved.clone(),
                "resolved",
                Value::from(Option::<String>::None),
            ),
        ] {
            statements.push((
                "INSERT INTO conversation (id, workspace_id, customer_id, channel, status, priority, assignee, last_message_at, created_at, updated_at) VALUES (?, ?, ?, 'email', ?, 'normal', ?, ?, ?, ?)",
                vec![conversation, ws.clone(), cu.clone(), status.into(), assignee, at(40), at(40), at(40)],
            ));
        }
        // `waiting`: in at :00, our answer at :10, in at :20 and :30 → waits since :20.
        // `answered`: in at :00, our answer at :10 → waits for nothing.
        // `resolved`: in at :00, never answered, but resolved → waits for nothing either.
        for (conversation, direction, minute) in [
            (&waiting, "inbound", 0),
            (&waiting, "outbound", 10),
            (&waiting, "inbound", 20),
            (&waiting, "inbound", 30),
            (&answered, "inbound", 0),
            (&answered, "outbound", 10),
            (&resolved, "inbound", 0),
        ] {
            statements.push((
                "INSERT INTO interaction (id, workspace_id, customer_id, conversation_id, channel, direction, kind, text, occurred_at, ingested_at) VALUES (?, ?, ?, ?, 'email', ?, 'email', 'x', ?, ?)",
                vec![uuid(), ws.clone(), cu.clone(), conversation.clone(), direction.into(), at(minute), at(minute)],
            ));
        }
        for (sql, values) in statements {
            db.execute(Statement::from_sql_and_values(
                DatabaseBackend::Sqlite,
                sql,
                values,
            ))
            .await
            .unwrap();
        }
        migration::Migrator::up(&db, None).await.unwrap();
        let rows = entity::conversation::Entity::find().all(&db).await.unwrap();
        let of = |id: &Value| {
            rows.iter()
                .find(|row| Value::from(row.id.uuid()) == *id)
                .unwrap()
        };
        assert_eq!(
            of(&waiting).waiting_since,
            Some(
                chrono::Utc
                    .with_ymd_and_hms(2026, 11, 1, 12, 20, 0)
                    .unwrap()
            )
        );
        assert_eq!(of(&answered).waiting_since, None);
        assert_eq!(of(&resolved).waiting_since, None);
        assert!(!of(&waiting).spam && of(&waiting).assignee_id.is_none());
        let kept = db
            .query_one(Statement::from_sql_and_values(
                DatabaseBackend::Sqlite,
                "SELECT assignee FROM conversation WHERE id = ?",
                [waiting.clone()],
            ))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(kept.try_get::<String>("", "assignee").unwrap(), "carmen");
    }
}
