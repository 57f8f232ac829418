//! Users: the people of a workspace (the inbox's agents), `users` and `me`, and the
//! loader conversations' assignees go through.

use std::collections::HashMap;

use async_graphql::dataloader::Loader;
use async_graphql::{Context, InputObject, Object, Result, SimpleObject, ID};
use chrono::{DateTime, Utc};

use super::loaders::{LoadError, Loaders};
use super::{app, caller, load};
use crate::domain::{self, Role};
use crate::ids::encode;
use entity::{user, UserId};

/// A person of the workspace: owns API keys, works conversations.
pub struct User(pub user::Model);

/// A person of the workspace: owns API keys, works conversations.
#[Object]
impl User {
    /// The user's id (`usr_…`).
    pub(super) async fn id(&self) -> ID {
        ID(encode(self.0.id))
    }
    /// Their name (at most 200 characters).
    async fn name(&self) -> &str {
        &self.0.name
    }
    /// Lowercased; unique in the workspace.
    async fn email(&self) -> &str {
        &self.0.email
    }
    /// What they may do; their keys have this role.
    async fn role(&self) -> Role {
        self.0.role
    }
    /// A deactivated user cannot be assigned conversations.
    async fn active(&self) -> bool {
        self.0.active
    }
    /// When the user was added.
    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }
}

/// A user by id, within the request's workspace.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct UserById(pub UserId);

impl Loader<UserById> for Loaders {
    type Value = user::Model;
    type Error = LoadError;

    async fn load(&self, keys: &[UserById]) -> Result<HashMap<UserById, Self::Value>, Self::Error> {
        let ids: Vec<UserId> = keys.iter().map(|key| key.0).collect();
        let rows =
            domain::by_ids::<user::Entity, _>(&self.db, self.workspace_id, &ids, |row| row.id)
                .await?;
        Ok(rows
            .into_iter()
            .map(|(id, row)| (UserById(id), row))
            .collect())
    }
}

/// `users`: the workspace's users by name.
pub(super) async fn users(ctx: &Context<'_>) -> Result<Vec<User>> {
    let caller = caller(ctx)?;
    Ok(domain::user::list(&app(ctx).db, caller.workspace_id)
        .await?
        .into_iter()
        .map(User)
        .collect())
}

/// `me`: the user of the calling key; `null` for a key that belongs to nobody.
pub(super) async fn me(ctx: &Context<'_>) -> Result<Option<User>> {
    match caller(ctx)?.user_id {
        Some(id) => Ok(load(ctx, UserById(id)).await?.map(User)),
        None => Ok(None),
    }
}

/// Changes to a user; a field left out stays as it is.
#[derive(InputObject)]
pub struct UpdateUserInput {
    /// The user (`usr_…`).
    pub user_id: ID,
    /// A new name, 1 to 200 characters.
    pub name: Option<String>,
    /// A new role; OWNER, or any change to an owner, needs the owner role (`FORBIDDEN`).
    pub role: Option<Role>,
    /// `false` deactivates: the user's keys stop working and they cannot be assigned.
    pub active: Option<bool>,
}

/// What `updateUser` answers.
#[derive(SimpleObject)]
pub struct UserPayload {
    /// The user as the change left them.
    pub user: User,
}

pub(super) async fn update_user(ctx: &Context<'_>, input: UpdateUserInput) -> Result<UserPayload> {
    let id = super::inputs::id::<UserId>("userId", &input.user_id)?;
    let changes = domain::user::UserChanges {
        name: input.name.as_deref(),
        role: input.role,
        active: input.active,
    };
    let model = domain::user::update(&app(ctx).db, caller(ctx)?, id, changes).await?;
    Ok(UserPayload { user: User(model) })
}
