//! Identities: a customer as a platform knows them.

use async_graphql::{Context, Object, Result, ID};
use chrono::{DateTime, Utc};

use super::customer::Customer;
use super::load;
use super::loaders::*;
use super::types::Channel;
use crate::ids::encode;
use entity::*;

/// A customer's account on one channel.
pub struct Identity(pub identity::Model);

#[Object]
impl Identity {
    pub(super) async fn id(&self) -> ID {
        ID(encode(self.0.id))
    }
    async fn channel(&self) -> Channel {
        self.0.channel
    }
    /// The platform's stable id for the account (Mastodon account URI, Bluesky DID, …).
    async fn platform_id(&self) -> &str {
        &self.0.platform_id
    }
    async fn handle(&self) -> Option<&str> {
        self.0.handle.as_deref()
    }
    async fn display_name(&self) -> Option<&str> {
        self.0.display_name.as_deref()
    }
    async fn profile_url(&self) -> Option<&str> {
        self.0.profile_url.as_deref()
    }
    async fn avatar_url(&self) -> Option<&str> {
        self.0.avatar_url.as_deref()
    }
    async fn customer(&self, ctx: &Context<'_>) -> Result<Option<Customer>> {
        Ok(load(ctx, CustomerById(self.0.customer_id))
            .await?
            .map(Customer::new))
    }
    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }
}
