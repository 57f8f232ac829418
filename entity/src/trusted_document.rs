//! A trusted document: a GraphQL document a workspace registered ahead of time, by the
//! SHA-256 of its exact text; keys marked trusted-documents-only run nothing else.

use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

use crate::id::WorkspaceId;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel, Serialize, Deserialize)]
#[sea_orm(table_name = "trusted_document")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub workspace_id: WorkspaceId,
    /// The lowercase hex SHA-256 of `body`, as Apollo's persisted-query link computes it.
    #[sea_orm(primary_key, auto_increment = false)]
    pub hash: String,
    pub name: Option<String>,
    pub body: String,
    pub created_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
