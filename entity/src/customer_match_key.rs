//! A blocking key of a customer (the phonetic code of a name with an initial, a birth
//! date, a canonical e-mail address, a phone's last digits, a postcode with a house
//! number, a handle): duplicate detection compares only customers who share one.
//! Written by `rapport::domain::dedupe`, which says what the keys are.

use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

use crate::id::{CustomerId, WorkspaceId};

#[derive(Clone, Debug, PartialEq, DeriveEntityModel, Serialize, Deserialize)]
#[sea_orm(table_name = "customer_match_key")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub customer_id: CustomerId,
    #[sea_orm(primary_key, auto_increment = false)]
    pub key: String,
    pub workspace_id: WorkspaceId,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
