//! A saved reply: a named answer with placeholders that agents reuse.

use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

use crate::id::{SavedReplyId, WorkspaceId};

#[derive(Clone, Debug, PartialEq, DeriveEntityModel, Serialize, Deserialize)]
#[sea_orm(table_name = "saved_reply")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: SavedReplyId,
    pub workspace_id: WorkspaceId,
    pub name: String,
    pub body: String,
    /// The name of the key (or its user) that created it.
    pub created_by: String,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
