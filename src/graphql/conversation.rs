//! Conversations: a thread of interactions with one customer.

use async_graphql::{Context, Object, Result, ID};
use chrono::{DateTime, Utc};

use super::customer::Customer;
use super::inbox::{AuthorMarkedSpam, LabelsOf, LastInteractionOf};
use super::interaction::{interactions_of, Interaction, InteractionConnection};
use super::load;
use super::loaders::*;
use super::tag::Tag;
use super::types::Channel;
use super::user::{User, UserById};
use crate::domain::inbox;
use crate::domain::interaction::InteractionFilter;
use crate::domain::page::PageArgs;
use crate::domain::{ConversationStatus, Priority};
use crate::ids::encode;
use entity::*;

/// A thread with one customer: the unit of the inbox.
pub struct Conversation(pub conversation::Model);

/// A thread with one customer on one channel: the unit of the inbox. Interactions are
/// filed into conversations as they arrive; a customer's new message reopens it.
#[Object]
impl Conversation {
    /// The conversation's id (`cnv_…`).
    pub(super) async fn id(&self) -> ID {
        ID(encode(self.0.id))
    }
    /// The channel the thread is on.
    async fn channel(&self) -> Channel {
        self.0.channel
    }
    /// The thread's subject (an e-mail's, a post's title); `null` on channels without one.
    async fn subject(&self) -> Option<&str> {
        self.0.subject.as_deref()
    }
    /// Where it stands now: a SNOOZED conversation whose time came reads as OPEN.
    async fn status(&self) -> ConversationStatus {
        inbox::effective_status(&self.0, crate::domain::now())
    }
    /// When a SNOOZED conversation wakes; `null` otherwise.
    async fn snoozed_until(&self) -> Option<DateTime<Utc>> {
        inbox::effective_snoozed_until(&self.0, crate::domain::now())
    }
    /// How urgent it is (NORMAL unless set).
    async fn priority(&self) -> Priority {
        self.0.priority
    }
    /// Who works it; `null` when nobody does.
    async fn assignee(&self, ctx: &Context<'_>) -> Result<Option<User>> {
        match self.0.assignee_id {
            Some(id) => Ok(load(ctx, UserById(id)).await?.map(User)),
            None => Ok(None),
        }
    }
    /// Its labels (workspace tags), by name.
    async fn labels(&self, ctx: &Context<'_>) -> Result<Vec<Tag>> {
        let labels = load(ctx, LabelsOf(self.0.id)).await?.unwrap_or_default();
        Ok(super::charged(ctx, labels)?.into_iter().map(Tag).collect())
    }
    /// Hidden from the inbox as spam (unless asked for): marked itself, or its customer is
    /// (marking any conversation marks its customer, so all their conversations, later
    /// ones too, read `true`). `markConversationSpam(spam: false)` on it clears both.
    async fn spam(&self, ctx: &Context<'_>) -> Result<bool> {
        if self.0.spam {
            return Ok(true);
        }
        let Some(customer) = self.0.customer_id else {
            return Ok(false);
        };
        Ok(load(ctx, AuthorMarkedSpam(customer))
            .await?
            .unwrap_or(false))
    }
    /// Since when the customer has waited for our answer: their oldest message after our
    /// last reply (or since the conversation was resolved); `null` when nothing waits.
    async fn waiting_since(&self) -> Option<DateTime<Utc>> {
        self.0.waiting_since
    }
    /// The latest message of the thread, either way.
    async fn last_interaction(&self, ctx: &Context<'_>) -> Result<Option<Interaction>> {
        Ok(load(ctx, LastInteractionOf(self.0.id))
            .await?
            .map(Interaction))
    }
    /// The customer the thread is with; `null` for the thread of a publication, which the
    /// answers of many customers join (each answer's `customer` says whose it is).
    async fn customer(&self, ctx: &Context<'_>) -> Result<Option<Customer>> {
        let Some(customer) = self.0.customer_id else {
            return Ok(None);
        };
        Ok(load(ctx, CustomerById(customer)).await?.map(Customer::new))
    }
    /// The messages of this thread, newest first.
    async fn interactions(
        &self,
        ctx: &Context<'_>,
        #[graphql(
            desc = "How many to return, 0 to 100 (default 20); `BAD_USER_INPUT` outside that range."
        )]
        first: Option<i32>,
        #[graphql(
            desc = "The `endCursor` (or an edge's `cursor`) of the previous page, to get the items after it; `BAD_USER_INPUT` for a cursor this list did not hand out."
        )]
        after: Option<String>,
        #[graphql(
            desc = "How many to return from the end (backward paging), 0 to 100; not with `first`."
        )]
        last: Option<i32>,
        #[graphql(
            desc = "The `startCursor` of the following page, to get the items before it (backward paging)."
        )]
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
    /// The team's internal notes on it, newest first.
    async fn notes(&self, ctx: &Context<'_>) -> Result<Vec<super::note::Note>> {
        let notes = load(ctx, super::note::NotesOfConversation(self.0.id))
            .await?
            .unwrap_or_default();
        Ok(super::charged(ctx, notes)?
            .into_iter()
            .map(super::note::Note)
            .collect())
    }
    /// When our first message in the thread was sent; `null` until we answer.
    async fn first_response_at(&self) -> Option<DateTime<Utc>> {
        self.0.first_response_at
    }
    /// When it was set RESOLVED; `null` unless it is RESOLVED now.
    async fn resolved_at(&self) -> Option<DateTime<Utc>> {
        self.0.resolved_at
    }
    /// When its latest message (either way) occurred.
    async fn last_message_at(&self) -> DateTime<Utc> {
        self.0.last_message_at
    }
    /// When Rapport created the conversation.
    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }
    /// When anything of it last changed (a message, its status, assignee, labels, …).
    async fn updated_at(&self) -> DateTime<Utc> {
        self.0.updated_at
    }
}
