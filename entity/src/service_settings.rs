//! A workspace's time zone and business hours, for SLA rules and metrics buckets.

use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

use crate::id::WorkspaceId;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel, Serialize, Deserialize)]
#[sea_orm(table_name = "service_settings")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub workspace_id: WorkspaceId,
    /// An IANA zone name (`Europe/Madrid`).
    pub time_zone: String,
    /// `[{"weekday": 0..=6 (Monday = 0), "open": "HH:MM", "close": "HH:MM"}]`.
    #[sea_orm(column_type = "JsonBinary")]
    pub hours: Json,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
