//! A workspace's data-quality report of one day (UTC): one row a workspace and day, the
//! latest recording of that day.

use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

use crate::id::WorkspaceId;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel, Serialize, Deserialize)]
#[sea_orm(table_name = "quality_snapshot")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub workspace_id: WorkspaceId,
    #[sea_orm(primary_key, auto_increment = false)]
    pub day: Date,
    /// The report as `rapport::domain::quality::QualityReport` serialises it.
    #[sea_orm(column_type = "JsonBinary")]
    pub report: Json,
    /// When the day was first recorded.
    pub created_at: DateTimeUtc,
    /// When the report was last recorded (it is the one kept).
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
