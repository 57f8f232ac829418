//! The inbox: the `inbox` connection and `inboxCounts`, the loaders a page of it needs
//! (labels and the last interaction of each conversation), and the mutations that work
//! conversations, one or up to 100 at once. Rules live in `domain::inbox`.

use std::collections::HashMap;

use async_graphql::connection::{Connection, EmptyFields};
use async_graphql::dataloader::Loader;
use async_graphql::{Context, Enum, InputObject, Result, SimpleObject, ID};
use chrono::{DateTime, Utc};

use super::conversation::Conversation;
use super::inputs::{id, opt_id};
use super::loaders::{LoadError, Loaders};
use super::types::{connection, Channel};
use super::{app, caller};
use crate::domain::inbox::{self, AssigneeFilter, Change, InboxFilter, InboxOrder};
use crate::domain::page::PageArgs;
use crate::domain::{ConversationStatus, Priority};
use crate::error::Error;
use entity::{interaction, tag, ConversationId, CustomerId, SourceId, UserId};

/// Whose conversations: the caller's own or nobody's (a user's: `assigneeId`).
#[derive(Enum, Copy, Clone, Debug, PartialEq, Eq)]
pub enum InboxAssignee {
    /// Assigned to the user of the calling key (`BAD_USER_INPUT` for a key of nobody).
    Me,
    /// Assigned to nobody.
    Nobody,
}

/// Which conversations the inbox shows; every given field must match. Spam is hidden
/// unless `spam: true` asks for it (and then only spam is shown).
#[derive(InputObject, Default)]
pub struct InboxFilterInput {
    /// Any of these statuses, as they read now: a SNOOZED conversation whose time came
    /// is OPEN. All statuses when left out.
    pub statuses: Option<Vec<ConversationStatus>>,
    /// ME or NOBODY; for a given user use `assigneeId` (not both).
    pub assignee: Option<InboxAssignee>,
    /// Assigned to this user (usr_…).
    pub assignee_id: Option<ID>,
    /// On this channel.
    pub channel: Option<Channel>,
    /// Of this source (`src_…`), the one its interactions come through.
    pub source_id: Option<ID>,
    /// Carrying the label with this name.
    pub label: Option<String>,
    /// Any of these priorities.
    pub priorities: Option<Vec<Priority>>,
    /// Holding an interaction in this language (ISO 639-1, as `Interaction.language`).
    pub language: Option<String>,
    /// `true`: not answered by us yet; `false`: answered at least once.
    pub unanswered: Option<bool>,
    /// The customer has waited at least this many **seconds** for our answer (since
    /// their oldest message after our last reply).
    pub waiting_longer_than: Option<i64>,
    /// The sentiment of the customer's latest message lies in this range (scores run from
    /// -1, negative, to 1, positive): `{max: -0.3}` finds the unhappy ones. Conversations
    /// whose latest customer message has no score are left out.
    pub sentiment: Option<SentimentRange>,
    /// `true` shows only spam: conversations marked as spam, and every conversation of a
    /// customer one was marked of.
    #[graphql(default)]
    pub spam: bool,
}

impl InboxFilterInput {
    pub(super) fn into_domain(self, ctx: &Context<'_>) -> crate::Result<InboxFilter> {
        let assignee = match (self.assignee, self.assignee_id) {
            (Some(_), Some(_)) => {
                return Err(Error::field(
                    "filter.assignee",
                    "give either assignee (ME, NOBODY) or assigneeId, not both",
                ))
            }
            (Some(InboxAssignee::Nobody), None) => Some(AssigneeFilter::Nobody),
            (Some(InboxAssignee::Me), None) => {
                let me = caller(ctx)?.user_id.ok_or_else(|| {
                    Error::field(
                        "filter.assignee",
                        "this API key belongs to no user, so ME means nobody: make a key with `rapport keys create --user`",
                    )
                })?;
                Some(AssigneeFilter::User(me))
            }
            (None, Some(user)) => Some(AssigneeFilter::User(id::<UserId>(
                "filter.assigneeId",
                &user,
            )?)),
            (None, None) => None,
        };
        InboxFilter {
            statuses: self.statuses.unwrap_or_default(),
            assignee,
            channel: self.channel,
            source_id: opt_id::<SourceId>("filter.sourceId", self.source_id.as_ref())?,
            label: self.label,
            priorities: self.priorities.unwrap_or_default(),
            language: self.language,
            unanswered: self.unanswered,
            waiting_longer_than_secs: self.waiting_longer_than,
            sentiment: self.sentiment.map(|range| (range.min, range.max)),
            spam: self.spam,
        }
        .checked()
    }
}

/// A range of sentiment scores, both ends inclusive; a missing end is open.
#[derive(InputObject, Default)]
pub struct SentimentRange {
    /// The lowest score let through, -1 to 1.
    pub min: Option<f64>,
    /// The highest score let through, -1 to 1.
    pub max: Option<f64>,
}

pub type InboxConnection = Connection<String, Conversation, EmptyFields, EmptyFields>;

/// `inbox`: one page of conversations, forward (`first` up to 100, `after`).
pub(super) async fn inbox(
    ctx: &Context<'_>,
    filter: Option<InboxFilterInput>,
    order_by: Option<InboxOrder>,
    first: Option<i32>,
    after: Option<String>,
) -> Result<InboxConnection> {
    let filter = filter.unwrap_or_default().into_domain(ctx)?;
    let order = order_by.unwrap_or(InboxOrder::LastActivity);
    let args = PageArgs {
        first,
        after,
        last: None,
        before: None,
    };
    let page = inbox::list(&app(ctx).db, caller(ctx)?, &filter, order, &args).await?;
    Ok(connection(
        page,
        EmptyFields,
        |row| inbox::cursor(order, row),
        Conversation,
    ))
}

/// How many conversations are in each status (the inbox's tabs).
#[derive(SimpleObject, Default, Clone, PartialEq, Eq)]
pub struct InboxCounts {
    /// OPEN, snoozed ones whose time came included.
    pub open: i64,
    /// PENDING.
    pub pending: i64,
    /// SNOOZED and still asleep.
    pub snoozed: i64,
    /// RESOLVED.
    pub resolved: i64,
    /// Every status together.
    pub total: i64,
}

/// `inboxCounts`: the counts per status of the conversations `filter` matches, its
/// `statuses` aside.
pub(super) async fn inbox_counts(
    ctx: &Context<'_>,
    filter: Option<InboxFilterInput>,
) -> Result<InboxCounts> {
    let filter = filter.unwrap_or_default().into_domain(ctx)?;
    Ok(counts_of(app(ctx), caller(ctx)?, &filter).await?)
}

/// The counts per status of the conversations `filter` matches, its `statuses` aside.
pub(super) async fn counts_of(
    app: &crate::App,
    caller: &crate::domain::Caller,
    filter: &InboxFilter,
) -> crate::Result<InboxCounts> {
    let counts = inbox::counts(&app.db, caller, filter).await?;
    let of = |status| counts.get(&status).copied().unwrap_or(0);
    Ok(InboxCounts {
        open: of(ConversationStatus::Open),
        pending: of(ConversationStatus::Pending),
        snoozed: of(ConversationStatus::Snoozed),
        resolved: of(ConversationStatus::Resolved),
        total: counts.values().sum(),
    })
}

/// The labels of a conversation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct LabelsOf(pub ConversationId);

impl Loader<LabelsOf> for Loaders {
    type Value = Vec<tag::Model>;
    type Error = LoadError;

    async fn load(&self, keys: &[LabelsOf]) -> Result<HashMap<LabelsOf, Self::Value>, Self::Error> {
        let ids: Vec<ConversationId> = keys.iter().map(|key| key.0).collect();
        let mut rows = inbox::labels_of(&self.db, self.workspace_id, &ids).await?;
        Ok(ids
            .into_iter()
            .map(|id| (LabelsOf(id), rows.remove(&id).unwrap_or_default()))
            .collect())
    }
}

/// Whether a customer is marked as a spam author (which hides all their conversations).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct AuthorMarkedSpam(pub CustomerId);

impl Loader<AuthorMarkedSpam> for Loaders {
    type Value = bool;
    type Error = LoadError;

    async fn load(
        &self,
        keys: &[AuthorMarkedSpam],
    ) -> Result<HashMap<AuthorMarkedSpam, Self::Value>, Self::Error> {
        let ids: Vec<CustomerId> = keys.iter().map(|key| key.0).collect();
        let marked = inbox::spam_authors(&self.db, self.workspace_id, &ids).await?;
        Ok(ids
            .into_iter()
            .map(|id| (AuthorMarkedSpam(id), marked.contains(&id)))
            .collect())
    }
}

/// The latest interaction of a conversation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct LastInteractionOf(pub ConversationId);

impl Loader<LastInteractionOf> for Loaders {
    type Value = interaction::Model;
    type Error = LoadError;

    async fn load(
        &self,
        keys: &[LastInteractionOf],
    ) -> Result<HashMap<LastInteractionOf, Self::Value>, Self::Error> {
        let ids: Vec<ConversationId> = keys.iter().map(|key| key.0).collect();
        let rows = inbox::last_interactions(&self.db, self.workspace_id, &ids).await?;
        Ok(rows
            .into_iter()
            .map(|(id, row)| (LastInteractionOf(id), row))
            .collect())
    }
}

// The mutations; the `Mutation` root delegates to them.

/// What a change to one conversation answers.
#[derive(SimpleObject)]
pub struct ConversationPayload {
    /// The conversation as the change left it.
    pub conversation: Conversation,
}

/// What a bulk change answers: the conversations, in the order asked.
#[derive(SimpleObject)]
pub struct BulkConversationsPayload {
    /// Every conversation asked for, as the change left it.
    pub conversations: Vec<Conversation>,
}

/// Who works a conversation.
#[derive(InputObject)]
pub struct AssignConversationInput {
    /// The conversation (`cnv_…`).
    pub conversation_id: ID,
    /// A user of the workspace (usr_…); `null` unassigns.
    pub assignee_id: Option<ID>,
}

/// A conversation's new status.
#[derive(InputObject)]
pub struct SetConversationStatusInput {
    /// The conversation (`cnv_…`).
    pub conversation_id: ID,
    /// The new status.
    pub status: ConversationStatus,
    /// Required with SNOOZED (a time in the future), refused with any other status.
    pub snoozed_until: Option<DateTime<Utc>>,
}

/// A conversation's new priority.
#[derive(InputObject)]
pub struct SetConversationPriorityInput {
    /// The conversation (`cnv_…`).
    pub conversation_id: ID,
    /// The new priority.
    pub priority: Priority,
}

/// A label to put on a conversation.
#[derive(InputObject)]
pub struct AddConversationLabelInput {
    /// The conversation (`cnv_…`).
    pub conversation_id: ID,
    /// The label's name (at most 64 characters): a workspace tag, created when missing.
    pub label: String,
    /// The colour of a label created here.
    pub color: Option<String>,
}

/// A label to take off a conversation.
#[derive(InputObject)]
pub struct RemoveConversationLabelInput {
    /// The conversation (`cnv_…`).
    pub conversation_id: ID,
    /// The label's name.
    pub label: String,
}

/// Whether a conversation (and so its customer) is spam.
#[derive(InputObject)]
pub struct MarkConversationSpamInput {
    /// The conversation (`cnv_…`).
    pub conversation_id: ID,
    /// `true` hides it and every conversation of its customer, those to come included;
    /// `false` takes the mark off the customer and every conversation of theirs, also
    /// when this one was hidden only through its customer.
    pub spam: bool,
}

/// A new status for several conversations, all or nothing (one id the workspace does not
/// have and nothing changes: `NOT_FOUND`).
#[derive(InputObject)]
pub struct BulkSetConversationStatusInput {
    /// At most 100.
    pub conversation_ids: Vec<ID>,
    /// The new status.
    pub status: ConversationStatus,
    /// Required with SNOOZED (a time in the future), refused with any other status.
    pub snoozed_until: Option<DateTime<Utc>>,
}

/// A new assignee for several conversations, all or nothing.
#[derive(InputObject)]
pub struct BulkAssignConversationsInput {
    /// At most 100.
    pub conversation_ids: Vec<ID>,
    /// `null` unassigns.
    pub assignee_id: Option<ID>,
}

/// A label to put on (or take off) several conversations, all or nothing.
#[derive(InputObject)]
pub struct BulkLabelConversationsInput {
    /// At most 100.
    pub conversation_ids: Vec<ID>,
    /// The label's name (at most 64 characters): a workspace tag, created when missing.
    pub label: String,
    /// The colour of a label created here.
    pub color: Option<String>,
    /// `true` takes the label off instead.
    #[graphql(default)]
    pub remove: bool,
}

fn conversation_ids(field: &str, ids: &[ID]) -> crate::Result<Vec<ConversationId>> {
    if ids.len() > inbox::MAX_BULK {
        // Refused before decoding: a list this long is not worth reading.
        return Err(Error::field(
            field,
            format!(
                "at most {} conversations at once, got {}",
                inbox::MAX_BULK,
                ids.len()
            ),
        ));
    }
    ids.iter()
        .map(|value| id::<ConversationId>(field, value))
        .collect()
}

async fn change_one(
    ctx: &Context<'_>,
    conversation: &ID,
    change: Change,
) -> Result<ConversationPayload> {
    let id = id::<ConversationId>("conversationId", conversation)?;
    let mut changed = inbox::apply(&app(ctx).db, caller(ctx)?, &[id], change).await?;
    let model = changed
        .pop()
        .ok_or_else(|| Error::Internal("a changed conversation vanished".into()))?;
    Ok(ConversationPayload {
        conversation: Conversation(model),
    })
}

async fn change_many(
    ctx: &Context<'_>,
    ids: &[ID],
    change: Change,
) -> Result<BulkConversationsPayload> {
    let ids = conversation_ids("conversationIds", ids)?;
    let changed = inbox::apply(&app(ctx).db, caller(ctx)?, &ids, change).await?;
    Ok(BulkConversationsPayload {
        conversations: changed.into_iter().map(Conversation).collect(),
    })
}

pub(super) async fn assign_conversation(
    ctx: &Context<'_>,
    input: AssignConversationInput,
) -> Result<ConversationPayload> {
    let assignee = opt_id::<UserId>("assigneeId", input.assignee_id.as_ref())?;
    change_one(ctx, &input.conversation_id, Change::Assign(assignee)).await
}

pub(super) async fn set_conversation_status(
    ctx: &Context<'_>,
    input: SetConversationStatusInput,
) -> Result<ConversationPayload> {
    let change = Change::Status {
        status: input.status,
        snoozed_until: input.snoozed_until,
    };
    change_one(ctx, &input.conversation_id, change).await
}

pub(super) async fn set_conversation_priority(
    ctx: &Context<'_>,
    input: SetConversationPriorityInput,
) -> Result<ConversationPayload> {
    change_one(
        ctx,
        &input.conversation_id,
        Change::Priority(input.priority),
    )
    .await
}

pub(super) async fn add_conversation_label(
    ctx: &Context<'_>,
    input: AddConversationLabelInput,
) -> Result<ConversationPayload> {
    let change = Change::AddLabel {
        name: input.label,
        color: input.color,
    };
    change_one(ctx, &input.conversation_id, change).await
}

pub(super) async fn remove_conversation_label(
    ctx: &Context<'_>,
    input: RemoveConversationLabelInput,
) -> Result<ConversationPayload> {
    change_one(
        ctx,
        &input.conversation_id,
        Change::RemoveLabel(input.label),
    )
    .await
}

pub(super) async fn mark_conversation_spam(
    ctx: &Context<'_>,
    input: MarkConversationSpamInput,
) -> Result<ConversationPayload> {
    change_one(ctx, &input.conversation_id, Change::Spam(input.spam)).await
}

pub(super) async fn bulk_set_conversation_status(
    ctx: &Context<'_>,
    input: BulkSetConversationStatusInput,
) -> Result<BulkConversationsPayload> {
    let change = Change::Status {
        status: input.status,
        snoozed_until: input.snoozed_until,
    };
    change_many(ctx, &input.conversation_ids, change).await
}

pub(super) async fn bulk_assign_conversations(
    ctx: &Context<'_>,
    input: BulkAssignConversationsInput,
) -> Result<BulkConversationsPayload> {
    let assignee = opt_id::<UserId>("assigneeId", input.assignee_id.as_ref())?;
    change_many(ctx, &input.conversation_ids, Change::Assign(assignee)).await
}

pub(super) async fn bulk_label_conversations(
    ctx: &Context<'_>,
    input: BulkLabelConversationsInput,
) -> Result<BulkConversationsPayload> {
    let change = if input.remove {
        Change::RemoveLabel(input.label)
    } else {
        Change::AddLabel {
            name: input.label,
            color: input.color,
        }
    };
    change_many(ctx, &input.conversation_ids, change).await
}
