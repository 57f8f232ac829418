//! A merge of one customer (`merged_id`, kept as a tombstone whose `merged_into` is the
//! survivor) into another, with what an unmerge needs to put everything back: both rows
//! as they were, the survivor as the merge left it, and the small sets it changed
//! (`changes`); the moved child rows are in `merge_moved`. Kept after the unmerge
//! (`unmerged_at`) as the audit of both.

use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

use crate::id::{CustomerId, MergeRecordId, WorkspaceId};

#[derive(Clone, Debug, PartialEq, DeriveEntityModel, Serialize, Deserialize)]
#[sea_orm(table_name = "merge_record")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: MergeRecordId,
    pub workspace_id: WorkspaceId,
    pub survivor_id: CustomerId,
    pub merged_id: CustomerId,
    /// `manual` (someone asked) or `automatic` (a suggestion above the threshold).
    pub reason: String,
    /// The suggestion's score, for an automatic merge.
    #[sea_orm(column_type = "Double", nullable)]
    pub score: Option<f64>,
    /// Who merged: `{key_id, user_id, name}`.
    #[sea_orm(column_type = "JsonBinary")]
    pub actor: Json,
    /// The survivor's row before the merge.
    #[sea_orm(column_type = "JsonBinary")]
    pub survivor_before: Json,
    /// The survivor's row as the merge left it (an unmerge restores a column only if it
    /// still holds this value).
    #[sea_orm(column_type = "JsonBinary")]
    pub survivor_after: Json,
    /// The merged customer's row before the merge.
    #[sea_orm(column_type = "JsonBinary")]
    pub merged_before: Json,
    /// The small sets the merge changed: tags, primary flags, duplicate suggestions.
    #[sea_orm(column_type = "JsonBinary")]
    pub changes: Json,
    pub created_at: DateTimeUtc,
    pub unmerged_at: Option<DateTimeUtc>,
    #[sea_orm(column_type = "JsonBinary", nullable)]
    pub unmerged_by: Option<Json>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
