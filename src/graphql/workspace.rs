//! The workspace (tenant) and the viewer (the calling key) objects.

use async_graphql::{Object, ID};
use chrono::{DateTime, Utc};

use crate::domain::Role;
use crate::ids::encode;
use entity::*;

/// A tenant: every object belongs to exactly one.
pub struct Workspace(pub workspace::Model);

/// A tenant: every object belongs to exactly one, and an API key sees only its own.
#[Object]
impl Workspace {
    /// The workspace's id (`wsp_…`).
    pub(super) async fn id(&self) -> ID {
        ID(encode(self.0.id))
    }
    /// Its short unique name, as `rapport keys create --workspace` takes it (`default`).
    async fn slug(&self) -> &str {
        &self.0.slug
    }
    /// Its display name.
    async fn name(&self) -> &str {
        &self.0.name
    }
    /// When it was created.
    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }
    /// How the workspace works; admins change it with `updateWorkspaceSettings`.
    async fn settings(&self) -> WorkspaceSettings {
        WorkspaceSettings(crate::domain::workspace::WorkspaceSettings::of(&self.0))
    }
}

/// How the workspace works.
pub struct WorkspaceSettings(pub crate::domain::workspace::WorkspaceSettings);

/// How the workspace works.
#[Object]
impl WorkspaceSettings {
    /// Our successful reply moves an OPEN conversation to PENDING (waiting on the
    /// customer); the customer's next message reopens it. Off by default.
    async fn reply_sets_pending(&self) -> bool {
        self.0.reply_sets_pending
    }
    /// A new item whose author has an erased person's platform id, e-mail address or
    /// phone number is stored under a fresh customer; off (the default), it is dropped so
    /// the person does not come back. The erased items themselves never return.
    async fn new_contact_after_erasure(&self) -> bool {
        self.0.new_contact_after_erasure
    }
    /// A duplicate suggestion scoring at least this (in (0, 1]) merges its two customers
    /// at once, the older one surviving (`unmergeCustomer` undoes it); `null`, the
    /// default, merges nothing without a person.
    async fn auto_merge_threshold(&self) -> Option<f64> {
        self.0.auto_merge_threshold
    }
    /// The region (ISO 3166-1 alpha-2) a phone number written without country code is
    /// read in, on every write path (GraphQL, import); `null`: such a number is refused.
    async fn default_phone_region(&self) -> Option<&str> {
        self.0.default_phone_region.as_deref()
    }
    /// A customer with no activity (`lastSeenAt`) and no change (`updatedAt`) for this
    /// many days counts as stale in `dataQuality`; 365 until set.
    async fn stale_after_days(&self) -> i32 {
        i32::try_from(self.0.stale_after_days()).unwrap_or(i32::MAX)
    }
    /// The languages the workspace's customers write in, as interactions' `language`
    /// shows them (ISO 639-1 for the thirty most common, else ISO 639-3): detection of new
    /// items' languages chooses among these only, which names short posts' language more
    /// often and costs less. A text in a language not named gets the nearest named one
    /// written in its script (or none when two are too close to call), or none when no
    /// named one is written in its script. Platforms' own language tags are kept whatever
    /// this says. Empty, the default: detection chooses among every language it knows
    /// (about 70).
    async fn languages(&self) -> &[String] {
        &self.0.languages
    }
}

/// A change of the workspace's settings: each given field is set, the rest stay.
#[derive(async_graphql::InputObject)]
pub struct UpdateWorkspaceSettingsInput {
    /// Whether our reply moves an OPEN conversation to PENDING (see `WorkspaceSettings`).
    pub reply_sets_pending: Option<bool>,
    /// Whether new contact from an erased person makes a fresh customer (see
    /// `WorkspaceSettings`).
    pub new_contact_after_erasure: Option<bool>,
    /// The score from which duplicate suggestions merge at once (see `WorkspaceSettings`);
    /// `null` turns automatic merging off.
    pub auto_merge_threshold: async_graphql::MaybeUndefined<f64>,
    /// The default phone region: an ISO 3166-1 code (alpha-2 or alpha-3) or a country's
    /// name, stored as alpha-2; `null` clears it.
    pub default_phone_region: async_graphql::MaybeUndefined<String>,
    /// Days without activity or change after which a customer is stale, 1 to 3650;
    /// `null` goes back to the default (365).
    pub stale_after_days: async_graphql::MaybeUndefined<i32>,
    /// The languages the workspace's customers write in (see `WorkspaceSettings`): ISO
    /// 639-1 codes (`"en"`) or ISO 639-3 (`"afr"`), in any case, at most 200; `[]` or
    /// `null` goes back to every language. Applies to items stored from then on.
    pub languages: async_graphql::MaybeUndefined<Vec<String>>,
}

/// What a change to the workspace answers.
#[derive(async_graphql::SimpleObject)]
pub struct WorkspacePayload {
    /// The workspace as the change left it.
    pub workspace: Workspace,
}

pub(super) async fn update_workspace_settings(
    ctx: &async_graphql::Context<'_>,
    input: UpdateWorkspaceSettingsInput,
) -> async_graphql::Result<WorkspacePayload> {
    let update = crate::domain::workspace::SettingsUpdate {
        reply_sets_pending: input.reply_sets_pending,
        new_contact_after_erasure: input.new_contact_after_erasure,
        auto_merge_threshold: super::inputs::change(input.auto_merge_threshold),
        default_phone_region: match input.default_phone_region {
            async_graphql::MaybeUndefined::Undefined => None,
            async_graphql::MaybeUndefined::Null => Some(None),
            async_graphql::MaybeUndefined::Value(region) => Some(Some(region)),
        },
        stale_after_days: super::inputs::change(input.stale_after_days)
            .map(|days| days.map(i64::from)),
        // `null` goes back to every language, as `[]` does.
        languages: super::inputs::change(input.languages).map(Option::unwrap_or_default),
    };
    let model =
        crate::domain::workspace::update_settings(&super::app(ctx).db, super::caller(ctx)?, update)
            .await?;
    Ok(WorkspacePayload {
        workspace: Workspace(model),
    })
}

/// Who is calling.
pub struct Viewer {
    pub workspace: workspace::Model,
    pub role: Role,
    pub key_name: String,
    pub trusted_documents_only: bool,
}

/// Who is calling: the API key's workspace, role and name.
#[Object]
impl Viewer {
    /// The workspace the key belongs to; everything the key reads and changes is in it.
    async fn workspace(&self) -> Workspace {
        Workspace(self.workspace.clone())
    }
    /// What this key may do.
    async fn role(&self) -> Role {
        self.role
    }
    /// The name given to the API key when it was created.
    async fn key_name(&self) -> &str {
        &self.key_name
    }
    /// Whether this key runs only the workspace's trusted documents.
    async fn trusted_documents_only(&self) -> bool {
        self.trusted_documents_only
    }
}

/// `viewer`: the caller's workspace and role.
pub async fn viewer(ctx: &async_graphql::Context<'_>) -> async_graphql::Result<Viewer> {
    let caller = super::caller(ctx)?;
    let workspace = crate::domain::workspace::get(&super::app(ctx).db, caller.workspace_id).await?;
    Ok(Viewer {
        workspace,
        role: caller.role,
        key_name: caller.key_name.clone(),
        trusted_documents_only: caller.trusted_documents_only,
    })
}
