//! One mention, message, comment, review, e-mail, call, meeting or reply.

use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

use crate::enums::{DeliveryStatus, Direction, InteractionKind};
use crate::id::{ConversationId, CustomerId, IdentityId, InteractionId, SourceId, WorkspaceId};
use connectors::Channel;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel, Serialize, Deserialize)]
#[sea_orm(table_name = "interaction")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: InteractionId,
    pub workspace_id: WorkspaceId,
    /// `None` for a publication: an item the workspace's own account wrote that answers
    /// nothing stored.
    pub customer_id: Option<CustomerId>,
    pub conversation_id: Option<ConversationId>,
    pub identity_id: Option<IdentityId>,
    pub source_id: Option<SourceId>,
    pub external_id: Option<String>,
    pub channel: Channel,
    pub direction: Direction,
    pub kind: InteractionKind,
    pub subject: Option<String>,
    pub text: String,
    pub html: Option<String>,
    pub url: Option<String>,
    pub language: Option<String>,
    #[sea_orm(column_type = "Double")]
    pub sentiment: Option<f64>,
    pub occurred_at: DateTimeUtc,
    pub ingested_at: DateTimeUtc,
    #[sea_orm(column_type = "JsonBinary")]
    pub raw: Option<Json>,
    /// Where a reply sent from Rapport stands; `None` for every other item.
    pub delivery_status: Option<DeliveryStatus>,
    /// The platform's answer to a reply that failed, scrubbed of secrets and internals.
    pub delivery_error: Option<String>,
    /// The key of a reply sent from Rapport, UNIQUE per workspace.
    pub idempotency_key: Option<String>,
    /// When the latest attempt at sending a reply from Rapport began.
    pub delivery_attempted_at: Option<DateTimeUtc>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
