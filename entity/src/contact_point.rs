//! An e-mail, phone, postal address or website of a customer; `normalized` is unique per workspace and kind.

use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

use crate::enums::ContactPointKind;
use crate::id::{ContactPointId, CustomerId, WorkspaceId};

#[derive(Clone, Debug, PartialEq, DeriveEntityModel, Serialize, Deserialize)]
#[sea_orm(table_name = "contact_point")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: ContactPointId,
    pub workspace_id: WorkspaceId,
    pub customer_id: CustomerId,
    pub kind: ContactPointKind,
    pub value: String,
    pub normalized: String,
    pub label: Option<String>,
    pub verified: bool,
    pub is_primary: bool,
    pub created_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
