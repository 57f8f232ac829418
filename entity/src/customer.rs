//! A person. `merged_into` points at the survivor once merged. The postal address is
//! one per customer, in parts (`street` … `country`).

use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

use crate::enums::LifecycleStage;
use crate::id::{CustomerId, OrganizationId, WorkspaceId};

#[derive(Clone, Debug, PartialEq, DeriveEntityModel, Serialize, Deserialize)]
#[sea_orm(table_name = "customer")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: CustomerId,
    pub workspace_id: WorkspaceId,
    pub display_name: String,
    pub given_name: Option<String>,
    pub family_name: Option<String>,
    pub lifecycle_stage: LifecycleStage,
    pub external_id: Option<String>,
    pub organization_id: Option<OrganizationId>,
    #[sea_orm(column_type = "JsonBinary")]
    pub custom: Json,
    pub merged_into: Option<CustomerId>,
    pub first_seen_at: DateTimeUtc,
    pub last_seen_at: DateTimeUtc,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
    /// A real past date, not before 1900 (`domain::validate::birth_date`).
    pub birth_date: Option<Date>,
    pub street: Option<String>,
    pub street2: Option<String>,
    pub locality: Option<String>,
    pub region: Option<String>,
    pub postal_code: Option<String>,
    /// ISO 3166-1 alpha-2, upper case.
    pub country: Option<String>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
