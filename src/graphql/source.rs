//! Sources (the channels Rapport syncs from): the object, inputs and payloads.
//! The mutations on sources are here too; the `Mutation` root delegates to them.

use async_graphql::{Context, InputObject, Json, Object, Result, SimpleObject, ID};
use chrono::{DateTime, Utc};

use super::inputs::id;
use super::types::Channel;
use super::{app, caller};
use crate::domain::source::{NewSource, SourceChanges};
use crate::domain::{self};
use crate::ids::encode;
use entity::SourceId;

/// A configured connector instance. Its secrets are write-only: `secretsSet` names them,
/// nothing returns their values.
pub struct Source(pub entity::source::Model);

/// A configured connector: where Rapport pulls interactions from (or receives them, for
/// webhooks) and sends replies through. Its secrets are write-only: `secretsSet` names
/// them, nothing returns their values.
#[Object]
impl Source {
    /// The source's id (`src_…`).
    pub(super) async fn id(&self) -> ID {
        ID(encode(self.0.id))
    }
    /// The channel it connects to.
    async fn channel(&self) -> Channel {
        self.0.channel
    }
    /// Its name, unique in the workspace (at most 100 characters).
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
    /// How it is doing.
    async fn status(&self) -> domain::source::SourceStatus {
        self.0.status
    }
    /// Why its last run failed, secrets masked (`***`); `null` after a run that worked.
    async fn last_error(&self) -> Option<&str> {
        self.0.last_error.as_deref()
    }
    /// Interactions it has stored since it was created (duplicates not counted).
    async fn items_ingested(&self) -> i64 {
        self.0.items_ingested
    }
    /// When it last ran; `null` before its first run.
    async fn last_run_at(&self) -> Option<DateTime<Utc>> {
        self.0.last_run_at
    }
    /// When the scheduler pulls it next; `null` for sources that are not pulled
    /// (webhooks).
    async fn next_run_at(&self) -> Option<DateTime<Utc>> {
        self.0.next_run_at
    }
    /// The path the platform POSTs deliveries to, for sources that take them: webhook
    /// sources, GitHub sources with a `webhook_secret`, Telegram sources in webhook mode.
    async fn webhook_path(&self, ctx: &Context<'_>) -> Option<String> {
        let takes = self.0.channel == Channel::Webhook
            || connectors::build(
                self.0.channel,
                &domain::source::full_config(&self.0),
                &app(ctx).outbound,
            )
            .is_ok_and(|connector| connector.capabilities().webhook);
        takes.then(|| format!("/webhooks/{}", encode(self.0.id)))
    }
    /// When it was created.
    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }
    /// When it last changed (settings, status, cursor).
    async fn updated_at(&self) -> DateTime<Utc> {
        self.0.updated_at
    }
}

/// What a change to a source answers.
#[derive(SimpleObject)]
pub struct SourcePayload {
    /// The source as the mutation left it.
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

/// What `deleteSource` answers.
#[derive(SimpleObject)]
pub struct DeleteSourcePayload {
    /// The id of the source deleted.
    pub deleted_source_id: ID,
}

/// A new source. `BAD_USER_INPUT` naming `config.<field>` for a setting that is missing
/// or wrong for the channel.
#[derive(InputObject)]
pub struct CreateSourceInput {
    /// The channel; one without a connector (see `Channel`) is `BAD_USER_INPUT`.
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
    /// The source (`src_…`).
    pub id: ID,
    /// A new name, unique in the workspace, 1 to 100 characters.
    pub name: Option<String>,
    /// New settings, replacing the old ones (secrets it leaves out are kept).
    pub config: Option<Json<serde_json::Value>>,
    /// Seconds between pulls, 30 to 86400.
    pub schedule_secs: Option<i32>,
}

/// The source a mutation acts on.
#[derive(InputObject)]
pub struct SourceIdInput {
    /// The source (`src_…`).
    pub id: ID,
}

// The mutations on this noun; the `Mutation` root delegates to them.

pub(super) async fn create_source(
    ctx: &Context<'_>,
    input: CreateSourceInput,
) -> Result<SourcePayload> {
    let new = NewSource {
        channel: input.channel,
        name: input.name,
        config: domain::text::check_json("config", &input.config.0)?,
        schedule_secs: input.schedule_secs,
    };
    let model = domain::source::create(&app(ctx).db, caller(ctx)?, new).await?;
    Ok(SourcePayload {
        source: Source(model),
    })
}

pub(super) async fn update_source(
    ctx: &Context<'_>,
    input: UpdateSourceInput,
) -> Result<SourcePayload> {
    let id = id::<SourceId>("id", &input.id)?;
    let changes = SourceChanges {
        name: input.name,
        config: input
            .config
            .map(|json| domain::text::check_json("config", &json.0))
            .transpose()?,
        schedule_secs: input.schedule_secs,
        paused: None,
    };
    Ok(SourcePayload {
        source: Source(crate::ingest::unlisten::update(app(ctx), caller(ctx)?, id, changes).await?),
    })
}

pub(super) async fn pause_source(ctx: &Context<'_>, input: SourceIdInput) -> Result<SourcePayload> {
    let id = id::<SourceId>("id", &input.id)?;
    let changes = SourceChanges {
        paused: Some(true),
        ..SourceChanges::default()
    };
    Ok(SourcePayload {
        source: Source(domain::source::update(&app(ctx).db, caller(ctx)?, id, changes).await?),
    })
}

pub(super) async fn resume_source(
    ctx: &Context<'_>,
    input: SourceIdInput,
) -> Result<SourcePayload> {
    let id = id::<SourceId>("id", &input.id)?;
    let changes = SourceChanges {
        paused: Some(false),
        ..SourceChanges::default()
    };
    Ok(SourcePayload {
        source: Source(domain::source::update(&app(ctx).db, caller(ctx)?, id, changes).await?),
    })
}

pub(super) async fn sync_source(
    ctx: &Context<'_>,
    input: SourceIdInput,
) -> Result<SyncSourcePayload> {
    let id = id::<SourceId>("id", &input.id)?;
    let syncer = crate::ingest::sync::Syncer::new(app(ctx));
    let (report, source) = crate::ingest::sync::sync_now(&syncer, caller(ctx)?, id).await?;
    Ok(SyncSourcePayload {
        source: Source(source),
        new_items: report.new as i32,
        duplicates: report.duplicates as i32,
        batches: report.batches as i32,
        error: report.error,
    })
}

pub(super) async fn delete_source(
    ctx: &Context<'_>,
    input: SourceIdInput,
) -> Result<DeleteSourcePayload> {
    let id = id::<SourceId>("id", &input.id)?;
    crate::ingest::unlisten::delete(app(ctx), caller(ctx)?, id).await?;
    Ok(DeleteSourcePayload {
        deleted_source_id: input.id,
    })
}

/// `sources`: the workspace's sources by name.
pub async fn sources(ctx: &Context<'_>) -> Result<Vec<Source>> {
    Ok(domain::source::list(&app(ctx).db, caller(ctx)?)
        .await?
        .into_iter()
        .map(Source)
        .collect())
}

/// `source(id:)`: `null` when not found.
pub async fn source(ctx: &Context<'_>, id: &ID) -> Result<Option<Source>> {
    let id = super::inputs::id::<SourceId>("id", id)?;
    Ok(super::found(domain::source::get(&app(ctx).db, caller(ctx)?, id).await)?.map(Source))
}
