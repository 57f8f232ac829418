//! A person of the workspace (an agent of the inbox): owns API keys, is assigned
//! conversations. E-mail unique per workspace.

use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

use crate::enums::Role;
use crate::id::{UserId, WorkspaceId};

#[derive(Clone, Debug, PartialEq, DeriveEntityModel, Serialize, Deserialize)]
#[sea_orm(table_name = "user")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: UserId,
    pub workspace_id: WorkspaceId,
    pub name: String,
    /// Stored lowercased, so the UNIQUE (workspace, email) ignores case.
    pub email: String,
    pub role: Role,
    pub active: bool,
    pub created_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
