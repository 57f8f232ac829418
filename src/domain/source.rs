//! Sources: configured connector instances. A source's configuration is split when it is
//! written: settings that may be shown (`config`) and secrets (`secrets`: tokens,
//! passwords, webhook secrets) that are write-only, never returned, never logged.

use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter,
    QueryOrder, TransactionTrait,
};
use serde_json::{json, Map, Value};
use uuid::Uuid;

use super::{Caller, Role};
use crate::error::{Error, Result};
use crate::ids::{self, Kind};
use entity::source::{self, Column, Entity, Model};

string_enum!(
    /// How a source is doing.
    SourceStatus { Ok = "ok", BackingOff = "backing_off", RateLimited = "rate_limited", Failing = "failing", Paused = "paused" }
);

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
    let pull = input.channel != connectors::Channel::Webhook;
    let row = source::ActiveModel {
        id: Set(ids::new_id()),
        workspace_id: Set(caller.workspace_id),
        channel: Set(input.channel.as_str().to_owned()),
        name: Set(name.clone()),
        config: Set(config),
        secrets: Set(secrets),
        schedule_secs: Set(schedule),
        cursor: Set(None),
        status: Set(SourceStatus::Ok.as_str().to_owned()),
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
    let txn = db.begin().await?;
    let model = row
        .insert(&txn)
        .await
        .map_err(|err| Error::on_unique(err, || name_taken(&name)))?;
    super::event::append(
        &txn,
        caller.workspace_id,
        "source.created",
        model.id,
        &model,
    )
    .await?;
    txn.commit().await?;
    tracing::info!(source = %ids::encode(Kind::Source, model.id), channel = %model.channel, "source created");
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
    id: Uuid,
    changes: SourceChanges,
) -> Result<Model> {
    caller.require(Role::Admin, "changing a source")?;
    let txn = db.begin().await?;
    let current = get(&txn, caller, id).await?;
    let channel = connectors::Channel::parse(&current.channel).ok_or_else(|| {
        Error::Internal(format!(
            "unknown channel `{}` in the database",
            current.channel
        ))
    })?;
    let mut row: source::ActiveModel = current.clone().into();
    let mut new_name = String::new();
    if let Some(name) = changes.name {
        new_name = super::clean_required("name", &name, 100)?;
        row.name = Set(new_name.clone());
    }
    if let Some(config) = changes.config {
        let config = keep_bound_secrets(channel, &current, config)?;
        let (config, secrets) = split_config(channel, config)?;
        row.config = Set(config);
        row.secrets = Set(secrets);
    }
    if let Some(schedule) = changes.schedule_secs {
        row.schedule_secs = Set(check_schedule(schedule)?);
    }
    match changes.paused {
        Some(true) => row.status = Set(SourceStatus::Paused.as_str().to_owned()),
        Some(false) if current.status == SourceStatus::Paused.as_str() => {
            row.status = Set(SourceStatus::Ok.as_str().to_owned());
            row.failures = Set(0);
            row.next_run_at = Set((channel != connectors::Channel::Webhook).then(super::now));
        }
        _ => {}
    }
    row.updated_at = Set(super::now());
    let model = row
        .update(&txn)
        .await
        .map_err(|err| Error::on_unique(err, || name_taken(&new_name)))?;
    super::event::append(
        &txn,
        caller.workspace_id,
        "source.updated",
        model.id,
        &model,
    )
    .await?;
    txn.commit().await?;
    Ok(model)
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
pub async fn delete(db: &impl TransactionTrait, caller: &Caller, id: Uuid) -> Result<()> {
    caller.require(Role::Admin, "deleting a source")?;
    let txn = db.begin().await?;
    let model = get(&txn, caller, id).await?;
    Entity::delete_by_id(model.id).exec(&txn).await?;
    super::event::append(
        &txn,
        caller.workspace_id,
        "source.deleted",
        model.id,
        &json!({ "id": model.id }),
    )
    .await?;
    txn.commit().await?;
    Ok(())
}

/// A source of the caller's workspace, or `NOT_FOUND`.
pub async fn get(db: &impl ConnectionTrait, caller: &Caller, id: Uuid) -> Result<Model> {
    super::find_scoped::<Entity>(db, caller.workspace_id, id, "source", || {
        ids::encode(Kind::Source, id)
    })
    .await
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
pub async fn for_webhook(db: &impl ConnectionTrait, id: Uuid) -> Result<Model> {
    Entity::find_by_id(id)
        .filter(Column::Channel.eq(connectors::Channel::Webhook.as_str()))
        .one(db)
        .await?
        .ok_or_else(|| Error::not_found("webhook source", ids::encode(Kind::Source, id)))
}

/// The names of the secrets a source has, to show that they are set.
pub fn secret_names(model: &Model) -> Vec<String> {
    model
        .secrets
        .as_object()
        .map(|secrets| secrets.keys().cloned().collect())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use connectors::Channel;

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
