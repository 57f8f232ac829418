//! Workspaces (tenants) and their API keys. A key is shown once when created; only its
//! SHA-256 hash is stored, so a leaked database does not leak keys.

use rand::RngCore;
use sea_orm::sea_query::IntoCondition;
use sea_orm::sea_query::OnConflict;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect,
};
use sha2::{Digest, Sha256};

use super::{Caller, Role};
use crate::error::{Error, Result};
use crate::ids;
use entity::{api_key, workspace, ApiKeyId, UserId, WorkspaceId};

/// The prefix of every key, so secret scanners can recognise a leaked one.
pub const KEY_PREFIX: &str = "rpk_";

/// Returns the workspace with `slug`, creating it when missing (safe under concurrency:
/// the UNIQUE slug decides).
pub async fn ensure(db: &impl ConnectionTrait, slug: &str) -> Result<workspace::Model> {
    let slug = slug.trim();
    let valid = !slug.is_empty()
        && slug.len() <= 63
        && slug
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if !valid {
        return Err(Error::field(
            "workspace",
            format!("`{slug}` is not a valid workspace slug (a-z, 0-9 and -)"),
        ));
    }
    let row = workspace::ActiveModel {
        id: Set(WorkspaceId::new()),
        slug: Set(slug.to_owned()),
        name: Set(slug.to_owned()),
        settings: Set(serde_json::json!({})),
        created_at: Set(super::now()),
    };
    workspace::Entity::insert(row)
        .on_conflict(
            OnConflict::column(workspace::Column::Slug)
                .do_nothing()
                .to_owned(),
        )
        .exec_without_returning(db)
        .await?;
    workspace::Entity::find()
        .filter(workspace::Column::Slug.eq(slug))
        .one(db)
        .await?
        .ok_or_else(|| Error::Internal(format!("workspace {slug} vanished after its creation")))
}

/// Creates a key with `role` in `workspace_id`; returns the row and the secret, which is
/// shown this once.
pub async fn create_key(
    db: &impl ConnectionTrait,
    workspace_id: WorkspaceId,
    role: Role,
    name: &str,
) -> Result<(api_key::Model, String)> {
    create_key_for(db, workspace_id, role, name, None).await
}

/// Like [`create_key`], for the user `user_id` of the same workspace (`NOT_FOUND` naming
/// it when the workspace has no such user, so a key never crosses tenants).
pub async fn create_key_for(
    db: &impl ConnectionTrait,
    workspace_id: WorkspaceId,
    role: Role,
    name: &str,
    user_id: Option<UserId>,
) -> Result<(api_key::Model, String)> {
    create_key_with(db, workspace_id, role, name, user_id, false).await
}

/// Like [`create_key_for`]; with `trusted_documents_only`, the key runs only the
/// workspace's trusted documents ([`super::trusted_document`]): for a production app,
/// whose key is in every copy of the app and must not run arbitrary queries.
pub async fn create_key_with(
    db: &impl ConnectionTrait,
    workspace_id: WorkspaceId,
    role: Role,
    name: &str,
    user_id: Option<UserId>,
    trusted_documents_only: bool,
) -> Result<(api_key::Model, String)> {
    if let Some(user_id) = user_id {
        super::find_scoped(db, workspace_id, user_id).await?;
    }
    let mut bytes = [0u8; 24];
    rand::thread_rng().fill_bytes(&mut bytes);
    let secret = format!("{KEY_PREFIX}{}", hex::encode(bytes));
    let row = api_key::ActiveModel {
        id: Set(ApiKeyId::new()),
        workspace_id: Set(workspace_id),
        name: Set(super::clean(name)),
        role: Set(role),
        key_hash: Set(hash(&secret)),
        prefix: Set(secret[..KEY_PREFIX.len() + 6].to_owned()),
        created_at: Set(super::now()),
        last_used_at: Set(None),
        revoked_at: Set(None),
        user_id: Set(user_id),
        trusted_documents_only: Set(trusted_documents_only),
    };
    let model = api_key::Entity::insert(row).exec_with_returning(db).await?;
    Ok((model, secret))
}

/// The keys of a workspace, newest first.
pub async fn list_keys(
    db: &impl ConnectionTrait,
    workspace_id: WorkspaceId,
) -> Result<Vec<api_key::Model>> {
    Ok(super::scoped::<api_key::Entity>(workspace_id)
        .order_by_desc(api_key::Column::CreatedAt)
        .all(db)
        .await?)
}

/// Revokes a key of the workspace; `NOT_FOUND` when it has no such key.
pub async fn revoke_key(
    db: &impl ConnectionTrait,
    workspace_id: WorkspaceId,
    key_id: ApiKeyId,
) -> Result<()> {
    let result = api_key::Entity::update_many()
        .col_expr(
            api_key::Column::RevokedAt,
            sea_orm::sea_query::Expr::value(super::now()),
        )
        .filter(api_key::Column::WorkspaceId.eq(workspace_id))
        .filter(api_key::Column::Id.eq(key_id))
        .filter(api_key::Column::RevokedAt.is_null())
        .exec(db)
        .await?;
    if result.rows_affected == 0 {
        return Err(Error::not_found("API key", ids::encode(key_id)));
    }
    super::callers::changed();
    Ok(())
}

/// A key as authentication reads it, with its user's state.
#[derive(sea_orm::FromQueryResult)]
struct KeyRow {
    id: ApiKeyId,
    workspace_id: WorkspaceId,
    name: String,
    role: Role,
    user_id: Option<UserId>,
    trusted_documents_only: bool,
    user_active: Option<bool>,
    user_role: Option<Role>,
}

/// Whether `secret` can be a key at all (else [`authenticate`] refuses it unread).
pub fn shaped_like_a_key(secret: &str) -> bool {
    secret.starts_with(KEY_PREFIX) && secret.len() <= 128
}

/// Resolves a presented key to its caller; `UNAUTHENTICATED` when unknown or revoked.
pub async fn authenticate(db: &impl ConnectionTrait, secret: &str) -> Result<Caller> {
    let invalid = || Error::Unauthenticated("the API key is unknown or revoked".to_owned());
    if !shaped_like_a_key(secret) {
        return Err(invalid());
    }
    // The key and its user (if any) in one statement: every request runs it.
    let key = api_key::Entity::find()
        .select_only()
        .columns([
            api_key::Column::Id,
            api_key::Column::WorkspaceId,
            api_key::Column::Name,
            api_key::Column::Role,
            api_key::Column::UserId,
            api_key::Column::TrustedDocumentsOnly,
        ])
        .column_as(entity::user::Column::Active, "user_active")
        .column_as(entity::user::Column::Role, "user_role")
        .join(
            sea_orm::JoinType::LeftJoin,
            api_key::Entity::belongs_to(entity::user::Entity)
                .from(api_key::Column::UserId)
                .to(entity::user::Column::Id)
                .on_condition(|key, user| {
                    sea_orm::sea_query::Expr::col((user, entity::user::Column::WorkspaceId))
                        .equals((key, api_key::Column::WorkspaceId))
                        .into_condition()
                })
                .into(),
        )
        .filter(api_key::Column::KeyHash.eq(hash(secret)))
        .filter(api_key::Column::RevokedAt.is_null())
        .into_model::<KeyRow>()
        .one(db)
        .await?
        .ok_or_else(invalid)?;
    // A key of a user acts as that user: not once they are deactivated, and never above
    // their role.
    let mut role = key.role;
    if key.user_id.is_some() {
        match (key.user_active, key.user_role) {
            (Some(true), Some(user_role)) => role = role.min(user_role),
            (Some(false), _) => {
                return Err(Error::Unauthenticated(
                    "the API key belongs to a deactivated user".to_owned(),
                ))
            }
            _ => return Err(invalid()),
        }
    }
    Ok(Caller {
        workspace_id: key.workspace_id,
        role,
        key_id: key.id,
        key_name: key.name,
        user_id: key.user_id,
        trusted_documents_only: key.trusted_documents_only,
    })
}

/// The workspace a command line names: by slug, by id (`wsp_…`) or by bare UUID;
/// `NOT_FOUND` naming it when there is none (nothing is created).
pub async fn find(db: &impl ConnectionTrait, slug_or_id: &str) -> Result<workspace::Model> {
    let given = slug_or_id.trim();
    let by_id = ids::decode::<WorkspaceId>("workspace", given)
        .ok()
        .or_else(|| {
            uuid::Uuid::parse_str(given)
                .ok()
                .map(WorkspaceId::from_uuid)
        });
    let found = match by_id {
        Some(id) => workspace::Entity::find_by_id(id).one(db).await?,
        None => None,
    };
    let found = match found {
        Some(found) => Some(found),
        None => {
            workspace::Entity::find()
                .filter(workspace::Column::Slug.eq(given))
                .one(db)
                .await?
        }
    };
    found.ok_or_else(|| Error::not_found("workspace", given))
}

/// The workspace by id.
pub async fn get(db: &impl ConnectionTrait, workspace_id: WorkspaceId) -> Result<workspace::Model> {
    workspace::Entity::find_by_id(workspace_id)
        .one(db)
        .await?
        .ok_or_else(|| Error::not_found("workspace", ids::encode(workspace_id)))
}

fn hash(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// Deletes a workspace and, through the foreign keys, everything in it.
pub async fn delete(db: &impl ConnectionTrait, workspace_id: WorkspaceId) -> Result<()> {
    entity::event::Entity::delete_many()
        .filter(entity::event::Column::WorkspaceId.eq(workspace_id))
        .exec(db)
        .await?;
    workspace::Entity::delete_by_id(workspace_id)
        .exec(db)
        .await?;
    super::callers::changed();
    Ok(())
}

/// The workspace's settings, stored in `workspace.settings` (JSON). Keys this build does
/// not know are kept as they are, so an older process does not drop a newer one's setting.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct WorkspaceSettings {
    /// Our successful reply moves an OPEN conversation to PENDING (waiting on the
    /// customer); their next message reopens it. Off by default.
    #[serde(default)]
    pub reply_sets_pending: bool,
    /// What becomes of a new item whose author has an erased person's platform id,
    /// e-mail address or phone number ([`super::erase`]): on, it is stored under a fresh
    /// customer; off (the default), it is dropped, so the person does not come back. The
    /// erased items themselves never return either way.
    #[serde(default)]
    pub new_contact_after_erasure: bool,
    /// A duplicate suggestion scoring at least this is merged at once (the older customer
    /// survives); `None`, the default, merges nothing without a person.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto_merge_threshold: Option<f64>,
    /// The region (ISO 3166-1 alpha-2) a phone number without country code is read in,
    /// on every write path; without one such a number is refused. None by default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_phone_region: Option<String>,
    /// A customer with no activity (`last_seen_at`) and no change (`updated_at`) for this
    /// many days counts as stale in the data-quality report; `None` is
    /// [`DEFAULT_STALE_AFTER_DAYS`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stale_after_days: Option<u32>,
    /// The languages the workspace's customers write in, as stored codes (ISO 639-1, else
    /// 639-3; [`super::enrich::check_languages`]): detection of new items chooses among
    /// these only. Empty, the default: among every language it knows.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub languages: Vec<String>,
    #[serde(flatten)]
    pub other: serde_json::Map<String, serde_json::Value>,
}

impl WorkspaceSettings {
    /// The settings of a workspace row; a stored value that does not read (hand-edited)
    /// counts as the defaults rather than failing every reply.
    pub fn of(model: &workspace::Model) -> WorkspaceSettings {
        serde_json::from_value(model.settings.clone()).unwrap_or_default()
    }

    /// Days without activity or change after which a customer is stale (the setting, or
    /// [`DEFAULT_STALE_AFTER_DAYS`]).
    pub fn stale_after_days(&self) -> u32 {
        self.stale_after_days.unwrap_or(DEFAULT_STALE_AFTER_DAYS)
    }
}

/// Days without activity or change after which a customer is stale, until set.
pub const DEFAULT_STALE_AFTER_DAYS: u32 = 365;
/// The longest `staleAfterDays` may be (ten years).
pub const MAX_STALE_AFTER_DAYS: u32 = 3_650;

/// `staleAfterDays` checked: 1 to [`MAX_STALE_AFTER_DAYS`], else `BAD_USER_INPUT`.
pub fn check_stale_after_days(days: i64) -> Result<u32> {
    u32::try_from(days)
        .ok()
        .filter(|days| (1..=MAX_STALE_AFTER_DAYS).contains(days))
        .ok_or_else(|| {
            Error::field(
                "staleAfterDays",
                format!("staleAfterDays must be 1 to {MAX_STALE_AFTER_DAYS} days, not {days}"),
            )
        })
}

/// A change of settings: each given field is set, the rest stay.
#[derive(Clone, Debug, Default)]
pub struct SettingsUpdate {
    pub reply_sets_pending: Option<bool>,
    pub new_contact_after_erasure: Option<bool>,
    /// `Some(None)` turns automatic merging off.
    pub auto_merge_threshold: Option<Option<f64>>,
    /// `Some(None)` clears it.
    pub default_phone_region: Option<Option<String>>,
    /// `Some(None)` goes back to the default; a value is checked by
    /// [`check_stale_after_days`].
    pub stale_after_days: Option<Option<i64>>,
    /// Checked by [`super::enrich::check_languages`]; empty: every language.
    pub languages: Option<Vec<String>>,
}

/// The languages detection chooses among for a workspace's new items (its `languages`
/// setting; every language when it names none).
pub async fn languages(
    db: &impl ConnectionTrait,
    workspace_id: WorkspaceId,
) -> Result<super::enrich::Languages> {
    let settings = settings(db, workspace_id).await?;
    Ok(super::enrich::Languages::of(&settings.languages))
}

/// The settings of the caller's workspace.
pub async fn settings(
    db: &impl ConnectionTrait,
    workspace_id: WorkspaceId,
) -> Result<WorkspaceSettings> {
    Ok(WorkspaceSettings::of(&get(db, workspace_id).await?))
}

/// Changes the caller's workspace's settings (admin role), recorded by a
/// `workspace.settings_updated` event naming the caller. Read and written in one
/// transaction with the row locked, so two changes of different settings both stay.
pub async fn update_settings(
    db: &impl sea_orm::TransactionTrait,
    caller: &Caller,
    update: SettingsUpdate,
) -> Result<workspace::Model> {
    use sea_orm::{ActiveModelTrait, QuerySelect};
    caller.require(Role::Admin, "changing the workspace's settings")?;
    let region = match &update.default_phone_region {
        Some(Some(region)) => Some(Some(super::validate::default_phone_region(
            "defaultPhoneRegion",
            region,
        )?)),
        Some(None) => Some(None),
        None => None,
    };
    let stale_after_days = update
        .stale_after_days
        .map(|days| days.map(check_stale_after_days).transpose())
        .transpose()?;
    let languages = update
        .languages
        .as_deref()
        .map(|codes| super::enrich::check_languages("languages", codes))
        .transpose()?;
    let txn = super::begin_write(db).await?;
    let current = workspace::Entity::find_by_id(caller.workspace_id)
        .lock_exclusive()
        .one(&txn)
        .await?
        .ok_or_else(|| Error::not_found("workspace", ids::encode(caller.workspace_id)))?;
    let mut settings = WorkspaceSettings::of(&current);
    if let Some(on) = update.reply_sets_pending {
        settings.reply_sets_pending = on;
    }
    if let Some(on) = update.new_contact_after_erasure {
        settings.new_contact_after_erasure = on;
    }
    if let Some(threshold) = update.auto_merge_threshold {
        settings.auto_merge_threshold = super::merge::check_threshold(threshold)?;
    }
    if let Some(region) = region {
        settings.default_phone_region = region;
    }
    if let Some(days) = stale_after_days {
        settings.stale_after_days = days;
    }
    if let Some(languages) = languages {
        settings.languages = languages;
    }
    let value = serde_json::to_value(&settings)
        .map_err(|err| Error::Internal(format!("settings did not serialise: {err}")))?;
    let mut row: workspace::ActiveModel = current.into();
    row.settings = Set(value);
    let model = row.update(&txn).await?;
    let change = super::event::SettingsChange {
        workspace: model.clone(),
        actor: super::event::Actor::of(caller),
    };
    super::event::append(
        &txn,
        caller.workspace_id,
        super::event::Event::WorkspaceSettingsUpdated(&change),
    )
    .await?;
    txn.commit().await?;
    Ok(model)
}
