//! A service-level target of a workspace for one channel, or for any channel (`*`).

use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

use crate::id::WorkspaceId;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel, Serialize, Deserialize)]
#[sea_orm(table_name = "sla_rule")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub workspace_id: WorkspaceId,
    /// A channel's stored name, or `*` for the rule of every channel without its own.
    #[sea_orm(primary_key, auto_increment = false)]
    pub channel: String,
    pub first_response_secs: Option<i64>,
    pub resolution_secs: Option<i64>,
    /// Counts only the workspace's business hours (`service_settings`) towards the targets.
    pub business_hours_only: bool,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
