//! A keyed hash of something that identified an erased or deleted customer (an item's
//! external id, a platform id, an e-mail address, a phone number): ingestion drops what
//! matches one, so the person does not come back.

use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

use crate::id::{CustomerId, WorkspaceId};

#[derive(Clone, Debug, PartialEq, DeriveEntityModel, Serialize, Deserialize)]
#[sea_orm(table_name = "erasure_tombstone")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub workspace_id: WorkspaceId,
    /// HMAC-SHA-256 of the workspace, the kind and the value, hex.
    #[sea_orm(primary_key, auto_increment = false)]
    pub hash: String,
    /// `item`, `platform_id`, `email` or `phone`.
    pub kind: String,
    /// The `erasure` this tombstone belongs to.
    pub customer_id: CustomerId,
    pub created_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
