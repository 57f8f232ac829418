//! A label on a conversation: a workspace tag (the same vocabulary customers are tagged
//! with), linked to the conversation.

use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

use crate::id::{ConversationId, TagId, WorkspaceId};

#[derive(Clone, Debug, PartialEq, DeriveEntityModel, Serialize, Deserialize)]
#[sea_orm(table_name = "conversation_label")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub conversation_id: ConversationId,
    #[sea_orm(primary_key, auto_increment = false)]
    pub tag_id: TagId,
    pub workspace_id: WorkspaceId,
    pub created_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
