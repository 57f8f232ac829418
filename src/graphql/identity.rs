//! Identities: a customer as a platform knows them.

use async_graphql::{Context, Object, Result, Value, ID};
use chrono::{DateTime, Utc};

use super::customer::Customer;
use super::fast::{enumeration, opt_text, scalar, text, Plain};
use super::load;
use super::loaders::*;
use super::types::Channel;
use crate::ids::encode;
use entity::*;

/// A customer's account on one channel.
pub struct Identity(pub identity::Model);

// A field added here or below, or one that reads another column, goes into
// `domain::view::IDENTITY_FIELDS` too: a list's rows and a customer view's JSON leave out the
// columns no selected field shows, and read every column for a field that map does not know.
impl Plain for Identity {
    fn plain(&self, field: &str) -> Option<Value> {
        let row = &self.0;
        Some(match field {
            "id" => text(&encode(row.id)),
            "channel" => enumeration(row.channel),
            "platformId" => text(&row.platform_id),
            "handle" => opt_text(row.handle.as_deref()),
            "displayName" => opt_text(row.display_name.as_deref()),
            "profileUrl" => opt_text(row.profile_url.as_deref()),
            "avatarUrl" => opt_text(row.avatar_url.as_deref()),
            "createdAt" => scalar(&row.created_at),
            _ => return None,
        })
    }
}

/// A customer's account on one channel, as the platform describes it. Found by its
/// `platformId`, so a renamed handle stays the same identity.
#[Object]
impl Identity {
    /// The identity's id (`idn_…`).
    pub(super) async fn id(&self) -> ID {
        ID(encode(self.0.id))
    }
    /// The channel the account is on.
    async fn channel(&self) -> Channel {
        self.0.channel
    }
    /// The platform's stable id for the account (Mastodon account URI, Bluesky DID, …).
    async fn platform_id(&self) -> &str {
        &self.0.platform_id
    }
    /// The account's handle on its platform (a Mastodon account name, a Bluesky handle,
    /// an e-mail address, …); `null` when the platform gives none.
    async fn handle(&self) -> Option<&str> {
        self.0.handle.as_deref()
    }
    /// The account's own display name; `null` when it has none.
    async fn display_name(&self) -> Option<&str> {
        self.0.display_name.as_deref()
    }
    /// A web page of the account; `null` when unknown.
    async fn profile_url(&self) -> Option<&str> {
        self.0.profile_url.as_deref()
    }
    /// The account's picture, as the platform serves it; `null` when unknown.
    async fn avatar_url(&self) -> Option<&str> {
        self.0.avatar_url.as_deref()
    }
    /// The customer the account belongs to.
    async fn customer(&self, ctx: &Context<'_>) -> Result<Option<Customer>> {
        Ok(load(ctx, CustomerById(self.0.customer_id))
            .await?
            .map(Customer::new))
    }
    /// When Rapport first saw the account.
    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }
}
