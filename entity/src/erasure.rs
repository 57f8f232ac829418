//! The audit of a customer erased (GDPR) or deleted: who did it, when, how many rows of
//! each kind went; nothing that names the person (their id names no one once they are
//! gone).

use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

use crate::id::{ApiKeyId, CustomerId, UserId, WorkspaceId};

#[derive(Clone, Debug, PartialEq, DeriveEntityModel, Serialize, Deserialize)]
#[sea_orm(table_name = "erasure")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub customer_id: CustomerId,
    pub workspace_id: WorkspaceId,
    /// `erased` (everything that identified them) or `deleted` (their items only).
    pub kind: String,
    pub actor_key_id: Option<ApiKeyId>,
    pub actor_user_id: Option<UserId>,
    /// The key's name (or what Rapport itself was doing).
    pub actor_name: String,
    /// Rows removed, by table: `{"interaction": 12, …}`.
    pub counts: Json,
    pub created_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
