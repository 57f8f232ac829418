//! Replies to conversations (`replyToConversation`, `retryReply`) and saved replies: the
//! objects, inputs, payloads and resolvers. Sending lives in `ingest::reply`, the rules
//! and SQL in `domain::reply` and `domain::saved_reply`.

use async_graphql::connection::{Connection, EmptyFields};
use async_graphql::{Context, InputObject, Object, Result, SimpleObject, ID};
use chrono::{DateTime, Utc};

use super::inputs::{id, opt_id};
use super::interaction::{Interaction, InteractionPayload};
use super::types::connection;
use super::{app, caller};
use crate::domain;
use crate::domain::page::PageArgs;
use crate::error::Error;
use crate::ids::encode;
use crate::ingest::reply::{ConversationReply, ReplyText};
use entity::*;

/// An answer to a conversation, sent through its source.
#[derive(InputObject)]
pub struct ReplyToConversationInput {
    /// The conversation (`cnv_…`).
    pub conversation_id: ID,
    /// What to send; give either this or `savedReplyId`.
    pub text: Option<String>,
    /// A saved reply to send, its placeholders filled in for the conversation's customer
    /// and the calling agent; give either this or `text`.
    pub saved_reply_id: Option<ID>,
    /// The interaction of the conversation to answer; its latest inbound one by default.
    pub in_reply_to_id: Option<ID>,
    /// Makes retries safe: the same key (in this workspace) stores and sends the reply
    /// once and returns it again. Defaults to one derived from the conversation, the
    /// answered interaction and the text.
    pub idempotency_key: Option<String>,
}

/// Another attempt at a reply whose sending failed.
#[derive(InputObject)]
pub struct RetryReplyInput {
    /// The reply, an outbound interaction (`int_…`) sent from Rapport.
    pub interaction_id: ID,
}

pub(super) async fn reply_to_conversation(
    ctx: &Context<'_>,
    input: ReplyToConversationInput,
) -> Result<InteractionPayload> {
    let conversation_id = id::<ConversationId>("conversationId", &input.conversation_id)?;
    let text = match (input.text, &input.saved_reply_id) {
        (Some(text), None) => ReplyText::Text(text),
        (None, Some(saved)) => ReplyText::Saved(id::<SavedReplyId>("savedReplyId", saved)?),
        _ => {
            return Err(
                Error::field("text", "give either text or savedReplyId (exactly one)").into(),
            )
        }
    };
    let in_reply_to = opt_id::<InteractionId>("inReplyToId", input.in_reply_to_id.as_ref())?;
    if let Some(key) = &input.idempotency_key {
        domain::text::check_lookup("idempotencyKey", key, 200)?;
    }
    let syncer = crate::ingest::sync::Syncer::new(app(ctx));
    let model = crate::ingest::reply::reply_to_conversation(
        &syncer,
        caller(ctx)?,
        ConversationReply {
            conversation_id,
            text,
            in_reply_to,
            idempotency_key: input.idempotency_key,
        },
    )
    .await?;
    Ok(InteractionPayload {
        interaction: Interaction(model),
    })
}

pub(super) async fn retry_reply(
    ctx: &Context<'_>,
    input: RetryReplyInput,
) -> Result<InteractionPayload> {
    let target = id::<InteractionId>("interactionId", &input.interaction_id)?;
    let syncer = crate::ingest::sync::Syncer::new(app(ctx));
    let model = crate::ingest::reply::retry(&syncer, caller(ctx)?, target).await?;
    Ok(InteractionPayload {
        interaction: Interaction(model),
    })
}

/// A named answer agents reuse. Its body may hold the placeholders
/// `{{customer.givenName}}`, `{{customer.familyName}}`, `{{customer.displayName}}` and
/// `{{agent.name}}` (the sending key's user), filled in when it is sent.
pub struct SavedReply(pub saved_reply::Model);

/// A named answer agents reuse. Its body may hold the placeholders
/// `{{customer.givenName}}`, `{{customer.familyName}}`, `{{customer.displayName}}` and
/// `{{agent.name}}` (the sending key's user), filled in when it is sent.
#[Object]
impl SavedReply {
    /// The saved reply's id (`svr_…`).
    async fn id(&self) -> ID {
        ID(encode(self.0.id))
    }
    /// Its name, unique in the workspace (at most 100 characters).
    async fn name(&self) -> &str {
        &self.0.name
    }
    /// Its text with its placeholders unfilled (at most 10,000 characters).
    async fn body(&self) -> &str {
        &self.0.body
    }
    /// The user (or, for a key of nobody, the key) that created it.
    async fn created_by(&self) -> &str {
        &self.0.created_by
    }
    /// When it was created.
    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }
    /// When it was last renamed or rewritten.
    async fn updated_at(&self) -> DateTime<Utc> {
        self.0.updated_at
    }
}

pub type SavedReplyConnection = Connection<String, SavedReply, EmptyFields, EmptyFields>;

/// What a change to a saved reply answers.
#[derive(SimpleObject)]
pub struct SavedReplyPayload {
    /// The saved reply as the mutation left it (for a deletion, as it was).
    pub saved_reply: SavedReply,
}

/// A new saved reply. `CONFLICT` when the workspace has one of that name.
#[derive(InputObject)]
pub struct CreateSavedReplyInput {
    /// Unique in the workspace.
    pub name: String,
    /// Its text, 1 to 10,000 characters; only the placeholders `SavedReply` lists
    /// (`BAD_USER_INPUT` naming `body` for any other).
    pub body: String,
}

/// Changes to a saved reply; a field left out stays as it is.
#[derive(InputObject)]
pub struct UpdateSavedReplyInput {
    /// The saved reply (`svr_…`).
    pub id: ID,
    /// A new name, unique in the workspace (`CONFLICT` otherwise), 1 to 100 characters.
    pub name: Option<String>,
    /// A new text, as `CreateSavedReplyInput.body`.
    pub body: Option<String>,
}

/// The saved reply to delete.
#[derive(InputObject)]
pub struct DeleteSavedReplyInput {
    /// The saved reply (`svr_…`).
    pub id: ID,
}

pub(super) async fn saved_replies(
    ctx: &Context<'_>,
    first: Option<i32>,
    after: Option<String>,
) -> Result<SavedReplyConnection> {
    let args = PageArgs {
        first,
        after,
        last: None,
        before: None,
    };
    let page = domain::saved_reply::list(&app(ctx).db, caller(ctx)?, &args).await?;
    Ok(connection(
        page,
        EmptyFields,
        domain::saved_reply::cursor,
        SavedReply,
    ))
}

pub(super) async fn create_saved_reply(
    ctx: &Context<'_>,
    input: CreateSavedReplyInput,
) -> Result<SavedReplyPayload> {
    let model =
        domain::saved_reply::create(&app(ctx).db, caller(ctx)?, &input.name, &input.body).await?;
    Ok(SavedReplyPayload {
        saved_reply: SavedReply(model),
    })
}

pub(super) async fn update_saved_reply(
    ctx: &Context<'_>,
    input: UpdateSavedReplyInput,
) -> Result<SavedReplyPayload> {
    let target = id::<SavedReplyId>("id", &input.id)?;
    let model = domain::saved_reply::update(
        &app(ctx).db,
        caller(ctx)?,
        target,
        input.name.as_deref(),
        input.body.as_deref(),
    )
    .await?;
    Ok(SavedReplyPayload {
        saved_reply: SavedReply(model),
    })
}

pub(super) async fn delete_saved_reply(
    ctx: &Context<'_>,
    input: DeleteSavedReplyInput,
) -> Result<SavedReplyPayload> {
    let target = id::<SavedReplyId>("id", &input.id)?;
    let model = domain::saved_reply::delete(&app(ctx).db, caller(ctx)?, target).await?;
    Ok(SavedReplyPayload {
        saved_reply: SavedReply(model),
    })
}
