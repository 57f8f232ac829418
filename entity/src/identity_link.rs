//! A link an identity's profile shows (a profile field, a website, an address in its bio),
//! normalised into a key: what duplicate detection matches against other records.

use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

use crate::id::{IdentityId, WorkspaceId};

#[derive(Clone, Debug, PartialEq, DeriveEntityModel, Serialize, Deserialize)]
#[sea_orm(table_name = "identity_link")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub identity_id: IdentityId,
    /// The normalised link (`https://github.com/ana`, `ana@example.com`).
    #[sea_orm(primary_key, auto_increment = false)]
    pub key: String,
    pub workspace_id: WorkspaceId,
    /// The link as the profile shows it.
    pub url: String,
    /// Where the profile shows it: a profile field's name, or `bio`.
    pub label: Option<String>,
    /// The platform checked that the linked page links back (Mastodon's `rel="me"`).
    pub verified: bool,
    pub created_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
