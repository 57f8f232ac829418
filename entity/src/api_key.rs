//! A machine key: only its SHA-256 hash is stored; `prefix` is shown to tell keys apart.

use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

use crate::enums::Role;
use crate::id::{ApiKeyId, UserId, WorkspaceId};

#[derive(Clone, Debug, PartialEq, DeriveEntityModel, Serialize, Deserialize)]
#[sea_orm(table_name = "api_key")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: ApiKeyId,
    pub workspace_id: WorkspaceId,
    pub name: String,
    pub role: Role,
    #[sea_orm(unique)]
    pub key_hash: String,
    pub prefix: String,
    pub created_at: DateTimeUtc,
    pub last_used_at: Option<DateTimeUtc>,
    pub revoked_at: Option<DateTimeUtc>,
    /// The person the key belongs to (`me` in the inbox); `None` for a machine key.
    pub user_id: Option<UserId>,
    /// The key runs only the workspace's trusted documents (registered ahead of time).
    pub trusted_documents_only: bool,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
