//! People of a workspace: the agents who own API keys and work conversations. A user is
//! made from the command line (`rapport users add`); "me" in the inbox is the user of the
//! key that calls.

use sea_orm::sea_query::OnConflict;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder,
};

use super::event::Event;
use super::{Caller, Role};
use crate::error::{Error, Result};
use entity::{user, UserId, WorkspaceId};

/// What a new user is made of.
pub struct NewUser<'a> {
    pub name: &'a str,
    pub email: &'a str,
    pub role: Role,
}

/// Adds a user to the caller's workspace (admin role). The e-mail is stored lowercased
/// and is unique per workspace: a second user with it is `CONFLICT` (the UNIQUE index
/// decides, so two at once cannot both get it).
pub async fn create(
    db: &impl sea_orm::TransactionTrait,
    caller: &Caller,
    new: NewUser<'_>,
) -> Result<user::Model> {
    caller.require(Role::Admin, "adding a user")?;
    let name = super::clean_required("name", new.name, 200)?;
    let email = super::clean_required("email", new.email, 320)?.to_lowercase();
    let valid = email
        .split_once('@')
        .is_some_and(|(local, domain)| !local.is_empty() && domain.contains('.'))
        && !email.chars().any(char::is_whitespace);
    if !valid {
        return Err(Error::field(
            "email",
            format!("`{email}` is not an e-mail address"),
        ));
    }
    let txn = super::begin_write(db).await?;
    let row = user::ActiveModel {
        id: Set(UserId::new()),
        workspace_id: Set(caller.workspace_id),
        name: Set(name),
        email: Set(email.clone()),
        role: Set(new.role),
        active: Set(true),
        created_at: Set(super::now()),
    };
    let inserted = user::Entity::insert(row)
        .on_conflict(
            OnConflict::columns([user::Column::WorkspaceId, user::Column::Email])
                .do_nothing()
                .to_owned(),
        )
        .exec_without_returning(&txn)
        .await?;
    if inserted == 0 {
        return Err(Error::Conflict(format!(
            "the workspace has a user with the e-mail {email} already"
        )));
    }
    let model = super::scoped::<user::Entity>(caller.workspace_id)
        .filter(user::Column::Email.eq(email))
        .one(&txn)
        .await?
        .ok_or_else(|| Error::Internal("a user vanished after its insertion".into()))?;
    super::event::append(&txn, caller.workspace_id, Event::UserCreated(&model)).await?;
    txn.commit().await?;
    Ok(model)
}

/// What an update changes; `None` leaves a field as it is.
#[derive(Default)]
pub struct UserChanges<'a> {
    pub name: Option<&'a str>,
    pub role: Option<Role>,
    pub active: Option<bool>,
}

/// Renames a user, changes their role, or deactivates or reactivates them (admin role).
/// A deactivated user's keys stop working at once and they cannot be assigned; their
/// conversations stay assigned to them (reassign with `bulkAssignConversations`).
pub async fn update(
    db: &impl sea_orm::TransactionTrait,
    caller: &Caller,
    id: UserId,
    changes: UserChanges<'_>,
) -> Result<user::Model> {
    caller.require(Role::Admin, "changing a user")?;
    let name = changes
        .name
        .map(|name| super::clean_required("name", name, 200))
        .transpose()?;
    if changes.role == Some(Role::Owner) && caller.role < Role::Owner {
        return Err(Error::Forbidden(
            "making a user an owner needs the owner role".into(),
        ));
    }
    let txn = super::begin_write(db).await?;
    let row = super::find_scoped(&txn, caller.workspace_id, id).await?;
    if row.role == Role::Owner && caller.role < Role::Owner {
        return Err(Error::Forbidden(
            "changing an owner needs the owner role".into(),
        ));
    }
    let mut model: user::ActiveModel = row.clone().into();
    if let Some(name) = name {
        model.name = Set(name);
    }
    if let Some(role) = changes.role {
        model.role = Set(role);
    }
    if let Some(active) = changes.active {
        model.active = Set(active);
    }
    let updated = sea_orm::ActiveModelTrait::update(model, &txn).await?;
    if updated != row {
        super::event::append(&txn, caller.workspace_id, Event::UserUpdated(&updated)).await?;
    }
    txn.commit().await?;
    if (updated.role, updated.active) != (row.role, row.active) {
        super::callers::changed();
    }
    Ok(updated)
}

/// The users of a workspace by name.
pub async fn list(
    db: &impl ConnectionTrait,
    workspace_id: WorkspaceId,
) -> Result<Vec<user::Model>> {
    Ok(super::scoped::<user::Entity>(workspace_id)
        .order_by_asc(user::Column::Name)
        .order_by_asc(user::Column::Id)
        .all(db)
        .await?)
}

/// A user of the workspace, or `NOT_FOUND` (as for another workspace's user).
pub async fn get(
    db: &impl ConnectionTrait,
    workspace_id: WorkspaceId,
    id: UserId,
) -> Result<user::Model> {
    super::find_scoped(db, workspace_id, id).await
}
