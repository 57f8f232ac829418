//! A customer's account on one channel; unique per (workspace, channel, platform_id).

use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

use crate::id::{CustomerId, IdentityId, WorkspaceId};
use connectors::Channel;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel, Serialize, Deserialize)]
#[sea_orm(table_name = "identity")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: IdentityId,
    pub workspace_id: WorkspaceId,
    pub customer_id: CustomerId,
    pub channel: Channel,
    pub platform_id: String,
    pub handle: Option<String>,
    pub display_name: Option<String>,
    pub profile_url: Option<String>,
    pub avatar_url: Option<String>,
    /// What this account is, as a link to it is written once normalised (its profile
    /// address, or `https://{handle}` for a Bluesky handle on a domain): what another
    /// profile's links are matched against to suggest duplicates.
    pub profile_key: Option<String>,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
