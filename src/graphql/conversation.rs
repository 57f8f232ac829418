//! Conversations: a thread of interactions with one customer.

use async_graphql::{Context, Object, Result, ID};
use chrono::{DateTime, Utc};

use super::customer::Customer;
use super::interaction::{interactions_of, InteractionConnection};
use super::load;
use super::loaders::*;
use super::types::Channel;
use crate::domain::interaction::InteractionFilter;
use crate::domain::page::PageArgs;
use crate::domain::{ConversationStatus, Priority};
use crate::ids::encode;
use entity::*;

/// A thread with one customer: the unit of the inbox.
pub struct Conversation(pub conversation::Model);

#[Object]
impl Conversation {
    pub(super) async fn id(&self) -> ID {
        ID(encode(self.0.id))
    }
    async fn channel(&self) -> Channel {
        self.0.channel
    }
    async fn subject(&self) -> Option<&str> {
        self.0.subject.as_deref()
    }
    async fn status(&self) -> ConversationStatus {
        self.0.status
    }
    async fn priority(&self) -> Priority {
        self.0.priority
    }
    /// Who works it.
    async fn assignee(&self) -> Option<&str> {
        self.0.assignee.as_deref()
    }
    async fn customer(&self, ctx: &Context<'_>) -> Result<Option<Customer>> {
        Ok(load(ctx, CustomerById(self.0.customer_id))
            .await?
            .map(Customer::new))
    }
    /// The messages of this thread, newest first.
    async fn interactions(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
        last: Option<i32>,
        before: Option<String>,
    ) -> Result<InteractionConnection> {
        let args = PageArgs {
            first,
            after,
            last,
            before,
        };
        interactions_of(ctx, self.0.id, InteractionFilter::default(), args).await
    }
    async fn first_response_at(&self) -> Option<DateTime<Utc>> {
        self.0.first_response_at
    }
    async fn resolved_at(&self) -> Option<DateTime<Utc>> {
        self.0.resolved_at
    }
    async fn last_message_at(&self) -> DateTime<Utc> {
        self.0.last_message_at
    }
    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }
    async fn updated_at(&self) -> DateTime<Utc> {
        self.0.updated_at
    }
}
