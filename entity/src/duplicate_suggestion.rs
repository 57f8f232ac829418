//! Two customers who may be one person, with a score in [0, 1] and the reasons; unique per
//! pair (`customer_a` is the smaller id), so every detector and every process share it.

use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

use crate::enums::DuplicateStatus;
use crate::id::{CustomerId, DuplicateSuggestionId, WorkspaceId};

#[derive(Clone, Debug, PartialEq, DeriveEntityModel, Serialize, Deserialize)]
#[sea_orm(table_name = "duplicate_suggestion")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: DuplicateSuggestionId,
    pub workspace_id: WorkspaceId,
    pub customer_a: CustomerId,
    pub customer_b: CustomerId,
    #[sea_orm(column_type = "Double")]
    pub score: f64,
    /// A JSON array of `{field, kind, detail}`: which fields matched and how.
    #[sea_orm(column_type = "Text")]
    pub reasons: String,
    pub status: DuplicateStatus,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
