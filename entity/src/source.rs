//! A configured connector instance: its settings, its secrets (never returned by the
//! API), its cursor, its state and the lease of the process running it.

use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

use crate::enums::SourceStatus;
use crate::id::{SourceId, WorkspaceId};
use connectors::Channel;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel, Serialize, Deserialize)]
#[sea_orm(table_name = "source")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: SourceId,
    pub workspace_id: WorkspaceId,
    pub channel: Channel,
    pub name: String,
    #[sea_orm(column_type = "JsonBinary")]
    pub config: Json,
    #[serde(skip_serializing, default)]
    #[sea_orm(column_type = "JsonBinary")]
    pub secrets: Json,
    pub schedule_secs: i32,
    pub cursor: Option<String>,
    pub status: SourceStatus,
    pub last_error: Option<String>,
    pub items_ingested: i64,
    pub failures: i32,
    pub last_run_at: Option<DateTimeUtc>,
    pub next_run_at: Option<DateTimeUtc>,
    pub lease_owner: Option<String>,
    pub lease_until: Option<DateTimeUtc>,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
