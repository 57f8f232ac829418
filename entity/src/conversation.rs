//! A thread, the unit of the inbox.

use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

use crate::enums::{ConversationStatus, Priority};
use crate::id::{ConversationId, CustomerId, SourceId, WorkspaceId};
use connectors::Channel;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel, Serialize, Deserialize)]
#[sea_orm(table_name = "conversation")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: ConversationId,
    pub workspace_id: WorkspaceId,
    pub customer_id: CustomerId,
    pub source_id: Option<SourceId>,
    pub thread_key: Option<String>,
    pub channel: Channel,
    pub subject: Option<String>,
    pub status: ConversationStatus,
    pub priority: Priority,
    pub assignee: Option<String>,
    pub first_response_at: Option<DateTimeUtc>,
    pub resolved_at: Option<DateTimeUtc>,
    pub last_message_at: DateTimeUtc,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
