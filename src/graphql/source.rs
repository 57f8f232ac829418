//! Sources (the channels Rapport syncs from): the object, inputs and payloads.

use async_graphql::{InputObject, Json, Object, Result, SimpleObject, ID};
use chrono::{DateTime, Utc};

use super::types::{enum_of, Channel};
use crate::domain::{self};
use crate::ids::{encode, Kind};

/// A configured connector instance. Its secrets are write-only: `secretsSet` names them,
/// nothing returns their values.
pub struct Source(pub entity::source::Model);

#[Object]
impl Source {
    pub(super) async fn id(&self) -> ID {
        ID(encode(Kind::Source, self.0.id))
    }
    async fn channel(&self) -> Result<Channel> {
        Channel::from_db(&self.0.channel)
    }
    async fn name(&self) -> &str {
        &self.0.name
    }
    /// The settings that are not secrets.
    async fn config(&self) -> Json<serde_json::Value> {
        Json(self.0.config.clone())
    }
    /// The names of the secrets that are set (`secret`, `access_token`, …), never their values.
    async fn secrets_set(&self) -> Vec<String> {
        domain::source::secret_names(&self.0)
    }
    /// Seconds between two pulls, for pull channels.
    async fn schedule_secs(&self) -> i32 {
        self.0.schedule_secs
    }
    /// Where the source has read up to, as its platform names positions.
    async fn cursor(&self) -> Option<&str> {
        self.0.cursor.as_deref()
    }
    async fn status(&self) -> Result<domain::source::SourceStatus> {
        enum_of(domain::source::SourceStatus::from_db, &self.0.status)
    }
    async fn last_error(&self) -> Option<&str> {
        self.0.last_error.as_deref()
    }
    async fn items_ingested(&self) -> i64 {
        self.0.items_ingested
    }
    async fn last_run_at(&self) -> Option<DateTime<Utc>> {
        self.0.last_run_at
    }
    async fn next_run_at(&self) -> Option<DateTime<Utc>> {
        self.0.next_run_at
    }
    /// For webhook sources: the path to POST deliveries to.
    async fn webhook_path(&self) -> Option<String> {
        (self.0.channel == Channel::Webhook.as_str())
            .then(|| format!("/webhooks/{}", encode(Kind::Source, self.0.id)))
    }
    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }
    async fn updated_at(&self) -> DateTime<Utc> {
        self.0.updated_at
    }
}

#[derive(SimpleObject)]
pub struct SourcePayload {
    pub source: Source,
}

/// What a sync did.
#[derive(SimpleObject)]
pub struct SyncSourcePayload {
    /// The source after the sync: status, cursor, lastError, nextRunAt.
    pub source: Source,
    /// Interactions stored by this sync.
    pub new_items: i32,
    /// Items seen again and dropped.
    pub duplicates: i32,
    /// Batches pulled.
    pub batches: i32,
    /// Why the sync failed, when it did (also the source's `lastError`).
    pub error: Option<String>,
}

#[derive(SimpleObject)]
pub struct DeleteSourcePayload {
    pub deleted_source_id: ID,
}

#[derive(InputObject)]
pub struct CreateSourceInput {
    pub channel: Channel,
    /// Unique in the workspace.
    pub name: String,
    /// The channel's settings as README documents them; secrets in it are stored apart
    /// and never returned.
    pub config: Json<serde_json::Value>,
    /// Seconds between pulls (30 to 86400; default 300).
    pub schedule_secs: Option<i32>,
}

/// Fields left out stay as they are. A new `config` replaces the settings; secrets it
/// leaves out are kept.
#[derive(InputObject)]
pub struct UpdateSourceInput {
    pub id: ID,
    pub name: Option<String>,
    pub config: Option<Json<serde_json::Value>>,
    pub schedule_secs: Option<i32>,
}

#[derive(InputObject)]
pub struct SourceIdInput {
    pub id: ID,
}
