//! An internal note on a customer.

use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

use crate::id::{CustomerId, NoteId, WorkspaceId};

#[derive(Clone, Debug, PartialEq, DeriveEntityModel, Serialize, Deserialize)]
#[sea_orm(table_name = "note")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: NoteId,
    pub workspace_id: WorkspaceId,
    pub customer_id: CustomerId,
    pub body: String,
    pub author: String,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
