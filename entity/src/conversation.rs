//! A thread, the unit of the inbox.

use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

use crate::enums::{ConversationStatus, Priority};
use crate::id::{ConversationId, CustomerId, SourceId, UserId, WorkspaceId};
use connectors::Channel;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel, Serialize, Deserialize)]
#[sea_orm(table_name = "conversation")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: ConversationId,
    pub workspace_id: WorkspaceId,
    /// `None` for the thread of a publication, which answers of many customers join.
    pub customer_id: Option<CustomerId>,
    pub source_id: Option<SourceId>,
    pub thread_key: Option<String>,
    pub channel: Channel,
    pub subject: Option<String>,
    pub status: ConversationStatus,
    pub priority: Priority,
    /// The user who works it. (The free-text `assignee` column of before users existed
    /// stays in the table, unread: a name cannot be mapped to a person safely.)
    pub assignee_id: Option<UserId>,
    /// While `status` is SNOOZED: when it wakes (it reads as OPEN from then on).
    pub snoozed_until: Option<DateTimeUtc>,
    /// Since when the customer has waited for an answer: their oldest message after our
    /// last reply or the conversation's resolution; `None` when nothing waits.
    pub waiting_since: Option<DateTimeUtc>,
    /// Marked as spam: hidden from the inbox unless asked for.
    pub spam: bool,
    pub first_response_at: Option<DateTimeUtc>,
    pub resolved_at: Option<DateTimeUtc>,
    pub last_message_at: DateTimeUtc,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
