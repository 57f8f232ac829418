//! A child row a merge moved to the survivor: its table, its id, and its `updated_at`
//! before the move (for the tables that have one), so an unmerge moves it back as it was.

use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

use crate::id::{MergeRecordId, WorkspaceId};

#[derive(Clone, Debug, PartialEq, DeriveEntityModel, Serialize, Deserialize)]
#[sea_orm(table_name = "merge_moved")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub merge_id: MergeRecordId,
    /// `identity`, `contact_point`, `interaction`, `conversation`, `deal` or `note`.
    #[sea_orm(primary_key, auto_increment = false)]
    pub tbl: String,
    #[sea_orm(primary_key, auto_increment = false)]
    pub row_id: Uuid,
    pub workspace_id: WorkspaceId,
    pub updated_at: Option<DateTimeUtc>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
