//! Sources: configured connector instances. A source's configuration is split when it is
//! written: settings that may be shown (`config`) and secrets (`secrets`: tokens,
//! passwords, webhook secrets) that are write-only, never returned, never logged.

use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Expr, LockBehavior, LockType, Query};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, Condition, ConnectionTrait, EntityTrait,
    FromQueryResult, Order, QueryFilter, QueryOrder, TransactionTrait,
};
use serde_json::{Map, Value};

use super::event::Event;
use super::{Caller, Role};
use crate::error::{Error, Result};
use crate::ids;
use entity::source::{self, Column, Entity, Model};
use entity::SourceId;

pub use entity::enums::SourceStatus;

/// How often a pull source runs unless configured otherwise.
pub const DEFAULT_SCHEDULE_SECS: i32 = 300;

/// Checks `config` for `channel` and splits it into shown settings and secrets. Fails
/// with `BAD_USER_INPUT` naming the field (`config.<name>`) that is missing or wrong.
pub fn split_config(channel: connectors::Channel, config: Value) -> Result<(Value, Value)> {
    super::text::check_json_size("config", &config, super::text::SOURCE_CONFIG)?;
    let Value::Object(mut object) = config else {
        return Err(Error::field("config", "config must be a JSON object"));
    };
    connectors::check_config(channel, &Value::Object(object.clone())).map_err(
        |(field, message)| {
            let field = if field == "channel" {
                field
            } else {
                format!("config.{field}")
            };
            Error::field(field, message)
        },
    )?;
    let mut secrets = Map::new();
    for field in connectors::secret_fields(channel) {
        if let Some(value) = object.remove(field.name) {
            secrets.insert(field.name.to_owned(), value);
        }
    }
    Ok((Value::Object(object), Value::Object(secrets)))
}

/// A source's settings and secrets in one object, as its connector reads them.
pub fn full_config(model: &Model) -> Value {
    let mut config = model.config.clone();
    if let (Value::Object(config), Value::Object(secrets)) = (&mut config, &model.secrets) {
        for (key, value) in secrets {
            config.insert(key.clone(), value.clone());
        }
    }
    config
}

/// The secret values of a source, to scrub from anything shown or logged.
pub fn secret_values(model: &Model) -> Vec<String> {
    model
        .secrets
        .as_object()
        .map(|secrets| {
            secrets
                .values()
                .filter_map(Value::as_str)
                .filter(|value| value.len() >= 4)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

/// `message` with every secret value of the source replaced by `***`: the one scrubber for
/// anything about a source that is shown to users or logged.
pub fn scrub(model: &Model, message: String) -> String {
    secret_values(model)
        .iter()
        .fold(message, |message, secret| {
            message.replace(secret.as_str(), "***")
        })
}

pub struct NewSource {
    pub channel: connectors::Channel,
    pub name: String,
    pub config: Value,
    pub schedule_secs: Option<i32>,
}

fn name_taken(name: &str) -> String {
    format!("another source of this workspace is already called {name}")
}

fn check_schedule(schedule: i32) -> Result<i32> {
    if (30..=86_400).contains(&schedule) {
        Ok(schedule)
    } else {
        Err(Error::field(
            "scheduleSecs",
            "scheduleSecs must be between 30 and 86400",
        ))
    }
}

/// Creates a source (admin role).
pub async fn create(
    db: &impl TransactionTrait,
    caller: &Caller,
    input: NewSource,
) -> Result<Model> {
    caller.require(Role::Admin, "adding a source")?;
    let name = super::clean_required("name", &input.name, 100)?;
    let (config, secrets) = split_config(input.channel, input.config)?;
    let schedule = check_schedule(input.schedule_secs.unwrap_or(DEFAULT_SCHEDULE_SECS))?;
    let now = super::now();
    let pull = connectors::is_pulled(input.channel);
    let row = source::ActiveModel {
        id: Set(SourceId::new()),
        workspace_id: Set(caller.workspace_id),
        channel: Set(input.channel),
        name: Set(name.clone()),
        config: Set(config),
        secrets: Set(secrets),
        schedule_secs: Set(schedule),
        cursor: Set(None),
        status: Set(SourceStatus::Ok),
        last_error: Set(None),
        items_ingested: Set(0),
        failures: Set(0),
        last_run_at: Set(None),
        next_run_at: Set(pull.then_some(now)),
        lease_owner: Set(None),
        lease_until: Set(None),
        created_at: Set(now),
        updated_at: Set(now),
    };
    let txn = super::begin_write(db).await?;
    let model = row
        .insert(&txn)
        .await
        .map_err(|err| Error::on_unique(err, || name_taken(&name)))?;
    super::event::append(&txn, caller.workspace_id, Event::SourceCreated(&model)).await?;
    txn.commit().await?;
    tracing::info!(source = %ids::encode(model.id), channel = %model.channel, "source created");
    Ok(model)
}

/// Changes to a source: `None` leaves a field alone. A new `config` replaces the old one,
/// secrets included; secrets it leaves out are kept, unless it changes an endpoint setting
/// a secret is bound to (see [`keep_bound_secrets`]).
#[derive(Default)]
pub struct SourceChanges {
    pub name: Option<String>,
    pub config: Option<Value>,
    pub schedule_secs: Option<i32>,
    pub paused: Option<bool>,
}

pub async fn update(
    db: &impl TransactionTrait,
    caller: &Caller,
    id: SourceId,
    changes: SourceChanges,
) -> Result<Model> {
    let how = super::Update {
        role: Role::Admin,
        action: "changing a source",
        taken: Some(|row: &source::ActiveModel| {
            name_taken(super::set_value(&row.name).map_or("", String::as_str))
        }),
        event: |model| Event::SourceUpdated(model),
    };
    super::update(db, caller, id, how, async |_, current, row| {
        let channel = current.channel;
        if let Some(name) = changes.name {
            row.name = Set(super::clean_required("name", &name, 100)?);
        }
        if let Some(config) = changes.config {
            let config = keep_bound_secrets(channel, current, config)?;
            let (config, secrets) = split_config(channel, config)?;
            row.config = Set(config);
            row.secrets = Set(secrets);
        }
        if let Some(schedule) = changes.schedule_secs {
            row.schedule_secs = Set(check_schedule(schedule)?);
        }
        match changes.paused {
            Some(true) => row.status = Set(SourceStatus::Paused),
            Some(false) if current.status == SourceStatus::Paused => {
                row.status = Set(SourceStatus::Ok);
                row.failures = Set(0);
                row.next_run_at = Set(connectors::is_pulled(channel).then(super::now));
            }
            _ => {}
        }
        Ok(())
    })
    .await
}

/// Puts the stored secrets a new `config` leaves out back into it, as long as the endpoint
/// each is bound to ([`connectors::secret_fields`]) is unchanged: a stored secret is only
/// ever sent where it was given for. Changing a bound setting (Mastodon `base_url`, e-mail
/// `imap_host`, webhook `reply_url`, …) without giving the secret again is a
/// `BAD_USER_INPUT` naming `config.<secret>`.
fn keep_bound_secrets(
    channel: connectors::Channel,
    current: &Model,
    config: Value,
) -> Result<Value> {
    let Value::Object(mut new) = config else {
        return Err(Error::field("config", "config must be a JSON object"));
    };
    for field in connectors::secret_fields(channel) {
        if new.contains_key(field.name) {
            continue;
        }
        let Some(stored) = current.secrets.get(field.name) else {
            continue;
        };
        let moved = field
            .bound_to
            .iter()
            .find(|setting| current.config.get(**setting) != new.get(**setting));
        if let Some(setting) = moved {
            return Err(Error::field(
                format!("config.{}", field.name),
                format!(
                    "changing {setting} requires {} again: a stored secret is only sent to the endpoint it was given for",
                    field.name
                ),
            ));
        }
        new.insert(field.name.to_owned(), stored.clone());
    }
    Ok(Value::Object(new))
}

/// Deletes a source; what it ingested stays.
pub async fn delete(db: &impl TransactionTrait, caller: &Caller, id: SourceId) -> Result<()> {
    let how = (Role::Admin, "deleting a source");
    super::delete(db, caller, id, how, |deleted| Event::SourceDeleted(deleted)).await
}

/// A source of the caller's workspace, or `NOT_FOUND`.
pub async fn get(db: &impl ConnectionTrait, caller: &Caller, id: SourceId) -> Result<Model> {
    super::find_scoped(db, caller.workspace_id, id).await
}

/// The workspace's sources by name.
pub async fn list(db: &impl ConnectionTrait, caller: &Caller) -> Result<Vec<Model>> {
    Ok(super::scoped::<Entity>(caller.workspace_id)
        .order_by_asc(Column::Name)
        .all(db)
        .await?)
}

/// The webhook source a delivery is addressed to: its id is the address, so this is the
/// one lookup not scoped by a caller. `NOT_FOUND` for another channel.
pub async fn for_webhook(db: &impl ConnectionTrait, id: SourceId) -> Result<Model> {
    Entity::find_by_id(id)
        .filter(Column::Channel.eq(connectors::Channel::Webhook.as_str()))
        .one(db)
        .await?
        .ok_or_else(|| Error::not_found("webhook source", ids::encode(id)))
}

/// The source a delivery to `/webhooks/{id}` is addressed to, of any channel (the route
/// asks its connector whether it takes deliveries): its id is the address, so this too is
/// a lookup not scoped by a caller. `NOT_FOUND` when there is none.
pub async fn for_delivery(db: &impl ConnectionTrait, id: SourceId) -> Result<Model> {
    Entity::find_by_id(id)
        .one(db)
        .await?
        .ok_or_else(|| Error::not_found("webhook source", ids::encode(id)))
}

/// The names of the secrets a source has, to show that they are set.
pub fn secret_names(model: &Model) -> Vec<String> {
    model
        .secrets
        .as_object()
        .map(|secrets| secrets.keys().cloned().collect())
        .unwrap_or_default()
}

/// The lease a run holds on its source: a pair of columns (`lease_owner`,
/// `lease_until`). Two processes over one PostgreSQL never claim the same source, and a
/// process that dies leaves a lease that simply runs out. On SQLite the single writer
/// gives the same guarantee.
#[derive(Debug, Clone, Copy)]
pub struct Lease<'a> {
    pub owner: &'a str,
    pub until: DateTime<Utc>,
}

/// Claims up to `limit` due sources for `lease` (pull channels, not paused, `next_run_at`
/// passed, no live lease), oldest due first: one
/// `UPDATE … WHERE id IN (SELECT … FOR UPDATE SKIP LOCKED) RETURNING *` (SQLite has no row
/// locks; the query builder leaves the lock clause out there).
pub async fn claim_due(
    db: &impl ConnectionTrait,
    lease: Lease<'_>,
    limit: usize,
) -> Result<Vec<Model>> {
    let now = super::now();
    let not_pulled = connectors::REGISTRY
        .iter()
        .filter(|spec| !spec.capabilities.pull)
        .map(|spec| spec.channel.as_str());
    let due = Query::select()
        .column(Column::Id)
        .from(Entity)
        .cond_where(
            Condition::all()
                .add(Column::Channel.is_not_in(not_pulled))
                .add(Column::Status.ne(SourceStatus::Paused.as_str()))
                .add(Column::NextRunAt.is_not_null())
                .add(Column::NextRunAt.lte(now))
                .add(
                    Condition::any()
                        .add(Column::LeaseUntil.is_null())
                        .add(Column::LeaseUntil.lt(now)),
                ),
        )
        .order_by(Column::NextRunAt, Order::Asc)
        .limit(limit.max(1) as u64)
        .lock_with_behavior(LockType::Update, LockBehavior::SkipLocked)
        .to_owned();
    let claim = Query::update()
        .table(Entity)
        .value(Column::LeaseOwner, lease.owner)
        .value(Column::LeaseUntil, lease.until)
        .and_where(Column::Id.in_subquery(due))
        .returning_all()
        .to_owned();
    let statement = db.get_database_backend().build(&claim);
    Ok(Model::find_by_statement(statement).all(db).await?)
}

/// Claims `source` for `lease` to sync it now, whatever its schedule. `CONFLICT` while
/// another run holds it; `BAD_USER_INPUT` for a paused source or one that is not pulled.
pub async fn claim(db: &impl ConnectionTrait, source: &Model, lease: Lease<'_>) -> Result<Model> {
    if source.status == SourceStatus::Paused {
        return Err(Error::field("id", "the source is paused: resume it first"));
    }
    if !connectors::is_pulled(source.channel) {
        return Err(Error::field(
            "id",
            "a webhook source is not pulled: deliveries arrive on its address",
        ));
    }
    let now = super::now();
    let claimed = Entity::update_many()
        .col_expr(Column::LeaseOwner, Expr::value(lease.owner))
        .col_expr(Column::LeaseUntil, Expr::value(lease.until))
        .filter(Column::Id.eq(source.id))
        .filter(
            Condition::any()
                .add(Column::LeaseUntil.is_null())
                .add(Column::LeaseUntil.lt(now)),
        )
        .exec(db)
        .await?;
    if claimed.rows_affected == 0 {
        return Err(Error::Conflict(format!(
            "source {} is being synced right now; try again when that run ends",
            ids::encode(source.id)
        )));
    }
    Entity::find_by_id(source.id)
        .one(db)
        .await?
        .ok_or_else(|| Error::not_found("source", ids::encode(source.id)))
}

/// How a run ended, as recorded on its source.
#[derive(Debug, Clone)]
pub struct RunOutcome {
    pub status: SourceStatus,
    /// Shown to the workspace's admins: scrubbed of secrets.
    pub last_error: Option<String>,
    pub failures: i32,
    pub next_run_at: DateTime<Utc>,
    pub ran_at: DateTime<Utc>,
}

/// Records how the run of `owner` on source `id` went and releases its lease. A source
/// paused during the run stays paused (and still gives its lease back); a source whose
/// lease is someone else's now is left alone.
pub async fn record_run(
    db: &impl ConnectionTrait,
    id: SourceId,
    owner: &str,
    outcome: &RunOutcome,
) -> Result<()> {
    Entity::update_many()
        .col_expr(Column::Status, Expr::value(outcome.status.as_str()))
        .col_expr(Column::LastError, Expr::value(outcome.last_error.clone()))
        .col_expr(Column::Failures, Expr::value(outcome.failures))
        .col_expr(Column::NextRunAt, Expr::value(outcome.next_run_at))
        .col_expr(Column::LastRunAt, Expr::value(outcome.ran_at))
        .col_expr(Column::LeaseOwner, Expr::value(Option::<String>::None))
        .col_expr(
            Column::LeaseUntil,
            Expr::value(Option::<DateTime<Utc>>::None),
        )
        .col_expr(Column::UpdatedAt, Expr::value(outcome.ran_at))
        .filter(Column::Id.eq(id))
        .filter(Column::LeaseOwner.eq(owner))
        // A source paused during the run stays paused.
        .filter(Column::Status.ne(SourceStatus::Paused.as_str()))
        .exec(db)
        .await?;
    // A paused source still gives its lease back.
    Entity::update_many()
        .col_expr(Column::LeaseOwner, Expr::value(Option::<String>::None))
        .col_expr(
            Column::LeaseUntil,
            Expr::value(Option::<DateTime<Utc>>::None),
        )
        .filter(Column::Id.eq(id))
        .filter(Column::LeaseOwner.eq(owner))
        .exec(db)
        .await?;
    Ok(())
}

/// Takes the write lock for a batch of source `id` inside `txn`, before anything is read.
/// On SQLite this takes the write lock now, while the busy timeout still applies (a
/// transaction that reads first and writes later fails at once with SQLITE_BUSY when
/// another process wrote meanwhile); on PostgreSQL it locks the source's row, so two
/// batches of one source never interleave.
pub async fn lock_for_batch(txn: &impl ConnectionTrait, id: SourceId) -> Result<()> {
    Entity::update_many()
        .col_expr(Column::UpdatedAt, Expr::col(Column::UpdatedAt).into())
        .filter(Column::Id.eq(id))
        .exec(txn)
        .await?;
    Ok(())
}

/// Records a stored batch on source `id` inside its transaction: `new` more items, the
/// run time and, when given, the new cursor. With a `lease`, only while the source is
/// still leased to its owner (the lease is renewed); `CONFLICT` otherwise, and the caller
/// drops the transaction so nothing of the batch is stored.
pub async fn record_batch(
    txn: &impl ConnectionTrait,
    id: SourceId,
    new: usize,
    next_cursor: Option<&str>,
    lease: Option<Lease<'_>>,
) -> Result<()> {
    let now = super::now();
    let mut update = Entity::update_many()
        .col_expr(
            Column::ItemsIngested,
            Expr::col(Column::ItemsIngested).add(new as i64),
        )
        .col_expr(Column::LastRunAt, Expr::value(now))
        .col_expr(Column::UpdatedAt, Expr::value(now))
        .filter(Column::Id.eq(id));
    if let Some(cursor) = next_cursor {
        update = update.col_expr(Column::Cursor, Expr::value(cursor));
    }
    if let Some(lease) = lease {
        update = update
            .col_expr(Column::LeaseUntil, Expr::value(lease.until))
            .filter(Column::LeaseOwner.eq(lease.owner));
    }
    if update.exec(txn).await?.rows_affected == 0 {
        return Err(Error::Conflict(
            "the source is no longer leased to this process (deleted, or taken over after the lease ran out); the batch was not stored".into(),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use connectors::Channel;
    use serde_json::json;

    #[test]
    fn secrets_are_split_from_settings_and_bad_configs_name_the_field() {
        let (config, secrets) = split_config(Channel::Webhook, json!({ "secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "reply_url": "https://x.example/r" })).unwrap();
        assert_eq!(config, json!({ "reply_url": "https://x.example/r" }));
        assert_eq!(
            secrets,
            json!({ "secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw" })
        );
        for (config, field) in [
            (json!([]), "config"),
            (json!({}), "config.secret"),
            (json!({ "secret": "short" }), "config.secret"),
            (
                json!({ "secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "reply_url": "ftp://x" }),
                "config.reply_url",
            ),
            (
                json!({ "secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "colour": "red" }),
                "config.colour",
            ),
        ] {
            match split_config(Channel::Webhook, config.clone()) {
                Err(Error::BadInput {
                    field: Some(got), ..
                }) => assert_eq!(got, field, "{config}"),
                other => panic!("{config}: {other:?}"),
            }
        }
    }
}
