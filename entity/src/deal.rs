//! An opportunity; `amount_minor` is the amount in hundredths of `currency`.

use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

use crate::enums::DealStage;
use crate::id::{CustomerId, DealId, OrganizationId, WorkspaceId};

#[derive(Clone, Debug, PartialEq, DeriveEntityModel, Serialize, Deserialize)]
#[sea_orm(table_name = "deal")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: DealId,
    pub workspace_id: WorkspaceId,
    pub customer_id: Option<CustomerId>,
    pub organization_id: Option<OrganizationId>,
    pub title: String,
    pub amount_minor: Option<i64>,
    pub currency: String,
    pub stage: DealStage,
    pub close_date: Option<Date>,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
