//! How many values of one field ingestion or an import dropped as invalid on one day
//! (UTC), per origin: a source (`src_…`) or `import`.

use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

use crate::id::WorkspaceId;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel, Serialize, Deserialize)]
#[sea_orm(table_name = "dropped_value")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub workspace_id: WorkspaceId,
    #[sea_orm(primary_key, auto_increment = false)]
    pub day: Date,
    /// The source that sent the values (`src_…`), or `import`.
    #[sea_orm(primary_key, auto_increment = false)]
    pub origin: String,
    /// The customer field, as `rapport::domain::quality::QualityField` names it.
    #[sea_orm(primary_key, auto_increment = false)]
    pub field: String,
    pub count: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
