//! An internal note on a customer, or on one of their conversations.

use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

use crate::id::{ConversationId, CustomerId, NoteId, WorkspaceId};

#[derive(Clone, Debug, PartialEq, DeriveEntityModel, Serialize, Deserialize)]
#[sea_orm(table_name = "note")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: NoteId,
    pub workspace_id: WorkspaceId,
    pub customer_id: CustomerId,
    pub body: String,
    pub author: String,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
    /// The conversation the note is about (`None`: about the customer).
    pub conversation_id: Option<ConversationId>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
