//! Interactions: the object, its connection and total (also used by customer and
//! conversation timelines), filters, inputs and payloads.
//! The mutations on interactions are here too; the `Mutation` root delegates to them.

use async_graphql::{Context, InputObject, Object, Result, SimpleObject, Value, ID};
use chrono::{DateTime, Utc};

use super::conversation::Conversation;
use super::customer::Customer;
use super::fast::{
    enumeration, opt, opt_enumeration, opt_text, scalar, text, Fast, FastConnection, Plain,
};
use super::identity::Identity;
use super::inputs::{id, opt_id};
use super::loaders::*;
use super::source::Source;
use super::types::{connection, Channel};
use super::{app, caller, load};
use crate::domain::interaction::{InteractionFilter, NewInteraction, Parent};
use crate::domain::page::{Page, PageArgs};
use crate::domain::{self, Direction, InteractionKind};
use crate::ids::encode;
use entity::*;

/// One mention, message, comment, review, e-mail, call, meeting or reply.
pub struct Interaction(pub interaction::Model);

// A field added here or below, or one that reads another column, goes into
// `domain::view::INTERACTION_FIELDS` too: a list's rows and a customer view's JSON leave out the
// columns no selected field shows, and read every column for a field that map does not know.
impl Plain for Interaction {
    fn plain(&self, field: &str) -> Option<Value> {
        let row = &self.0;
        Some(match field {
            "id" => text(&encode(row.id)),
            "channel" => enumeration(row.channel),
            "direction" => enumeration(row.direction),
            "kind" => enumeration(row.kind),
            "subject" => opt_text(row.subject.as_deref()),
            "text" => text(&row.text),
            "html" => opt_text(row.html.as_deref()),
            "url" => opt_text(row.url.as_deref()),
            "language" => opt_text(row.language.as_deref()),
            "sentiment" => opt(&row.sentiment),
            "externalId" => opt_text(row.external_id.as_deref()),
            "occurredAt" => scalar(&row.occurred_at),
            "ingestedAt" => scalar(&row.ingested_at),
            "deliveryStatus" => opt_enumeration(row.delivery_status),
            "deliveryError" => opt_text(row.delivery_error.as_deref()),
            _ => return None,
        })
    }
}

/// One mention, message, comment, review, e-mail, note, reply, post, call or meeting with a
/// customer, either way: ingested from a source, recorded by hand, or sent from Rapport.
#[Object]
impl Interaction {
    /// The interaction's id (`int_…`).
    pub(super) async fn id(&self) -> ID {
        ID(encode(self.0.id))
    }
    /// The channel it happened on.
    async fn channel(&self) -> Channel {
        self.0.channel
    }
    /// INBOUND from the customer, OUTBOUND from us.
    async fn direction(&self) -> Direction {
        self.0.direction
    }
    /// What it is.
    async fn kind(&self) -> InteractionKind {
        self.0.kind
    }
    /// Its subject or title (an e-mail's, a feed entry's); `null` when it has none.
    async fn subject(&self) -> Option<&str> {
        self.0.subject.as_deref()
    }
    /// Its content as plain text (HTML turned into text), at most 100,000 characters.
    async fn text(&self) -> &str {
        &self.0.text
    }
    /// Its content as HTML, when the platform gave HTML (Mastodon posts, HTML e-mails);
    /// markup from outside, to sanitize before rendering. `null` otherwise.
    async fn html(&self) -> Option<&str> {
        self.0.html.as_deref()
    }
    /// Where the item lives on its platform.
    async fn url(&self) -> Option<&str> {
        self.0.url.as_deref()
    }
    /// ISO 639-1 language code, when known.
    async fn language(&self) -> Option<&str> {
        self.0.language.as_deref()
    }
    /// From -1 (negative) to 1 (positive), when known.
    async fn sentiment(&self) -> Option<f64> {
        self.0.sentiment
    }
    /// The platform's id of the item, for items that came from a source.
    async fn external_id(&self) -> Option<&str> {
        self.0.external_id.as_deref()
    }
    /// When it happened, as the platform dates it; for one recorded by hand, as given
    /// (else when it was recorded).
    async fn occurred_at(&self) -> DateTime<Utc> {
        self.0.occurred_at
    }
    /// When Rapport stored it.
    async fn ingested_at(&self) -> DateTime<Utc> {
        self.0.ingested_at
    }
    /// Where a reply sent with `replyToConversation` stands; `null` for every other item.
    async fn delivery_status(&self) -> Option<crate::domain::DeliveryStatus> {
        self.0.delivery_status
    }
    /// Why the platform did not take a FAILED reply (its answer, without secrets).
    async fn delivery_error(&self) -> Option<&str> {
        self.0.delivery_error.as_deref()
    }
    /// The customer it is with; `null` for a publication (what the workspace's own account
    /// posted that answers nothing stored: see `Query.publications`).
    async fn customer(&self, ctx: &Context<'_>) -> Result<Option<Customer>> {
        let Some(customer) = self.0.customer_id else {
            return Ok(None);
        };
        Ok(load(ctx, CustomerById(customer)).await?.map(Customer::new))
    }
    /// The account that wrote it, for inbound items from a channel.
    async fn identity(&self, ctx: &Context<'_>) -> Result<Option<Identity>> {
        match self.0.identity_id {
            Some(id) => Ok(load(ctx, IdentityById(id)).await?.map(Identity)),
            None => Ok(None),
        }
    }
    /// The conversation it belongs to; `null` when it was filed in none.
    async fn conversation(&self, ctx: &Context<'_>) -> Result<Option<Conversation>> {
        match self.0.conversation_id {
            Some(id) => Ok(load(ctx, ConversationById(id)).await?.map(Conversation)),
            None => Ok(None),
        }
    }
    /// The source it was ingested from or sent through; `null` when recorded by hand or
    /// when the source was deleted.
    async fn source(&self, ctx: &Context<'_>) -> Result<Option<Source>> {
        match self.0.source_id {
            Some(id) => Ok(load(ctx, SourceById(id)).await?.map(Source)),
            None => Ok(None),
        }
    }
}

/// `totalCount` of an interaction list or timeline, computed only when asked for.
pub struct InteractionTotal(pub InteractionFilter, pub Option<u64>);

#[Object]
impl InteractionTotal {
    /// How many interactions match the filter, on every page together (with a `search`,
    /// the index's estimate).
    async fn total_count(&self, ctx: &Context<'_>) -> Result<u64> {
        if let Some(known) = self.1 {
            return Ok(known);
        }
        // Keyed without the parent's id so a page of timelines shares one count query.
        let filter = InteractionFilter {
            customer_id: None,
            conversation_id: None,
            ..self.0.clone()
        };
        let count = match (self.0.customer_id, self.0.conversation_id) {
            (Some(id), None) => load(ctx, InteractionCountOf { id, filter }).await?,
            (None, Some(id)) => load(ctx, InteractionCountOf { id, filter }).await?,
            _ => {
                return Ok(
                    domain::interaction::count(&super::app(ctx).db, caller(ctx)?, &self.0).await?,
                )
            }
        };
        Ok(count.unwrap_or(0) as u64)
    }
}

pub type InteractionConnection = FastConnection<Interaction, InteractionTotal>;

/// One page of a customer's or conversation's interactions through the loader, so the
/// lists of a whole page of parents come from one query.
pub(super) async fn interactions_of<P: Parent>(
    ctx: &Context<'_>,
    id: P,
    filter: InteractionFilter,
    args: PageArgs,
) -> Result<InteractionConnection> {
    let window = domain::interaction::window(&args)?;
    let key = InteractionsOf {
        id,
        filter: filter.clone(),
        window,
    };
    let page = load(ctx, key).await?.unwrap_or(Page {
        items: vec![],
        has_next: false,
        has_previous: false,
    });
    Ok(interaction_connection(page, id.narrow(filter)))
}

pub fn interaction_connection(
    page: Page<interaction::Model>,
    filter: InteractionFilter,
) -> InteractionConnection {
    FastConnection(connection(
        page,
        InteractionTotal(filter, None),
        domain::interaction::cursor,
        |row| Fast(Interaction(row)),
    ))
}

/// What a mutation that records or sends an interaction answers.
#[derive(SimpleObject)]
pub struct InteractionPayload {
    /// The interaction as stored (for a reply, with its `deliveryStatus`).
    pub interaction: Interaction,
}

/// Narrows a customer's timeline.
#[derive(InputObject, Default)]
pub struct TimelineFilter {
    /// Any of these channels.
    pub channels: Option<Vec<Channel>>,
    /// Any of these kinds.
    pub kinds: Option<Vec<InteractionKind>>,
    /// Only this direction.
    pub direction: Option<Direction>,
    /// Occurred at or after.
    pub occurred_after: Option<DateTime<Utc>>,
    /// Occurred before.
    pub occurred_before: Option<DateTime<Utc>>,
}

impl From<TimelineFilter> for InteractionFilter {
    fn from(filter: TimelineFilter) -> Self {
        InteractionFilter {
            customer_id: None,
            conversation_id: None,
            channels: filter.channels.unwrap_or_default(),
            kinds: filter.kinds.unwrap_or_default(),
            direction: filter.direction,
            occurred_after: filter.occurred_after,
            occurred_before: filter.occurred_before,
            source_id: None,
            publications: false,
        }
    }
}

/// Which interactions a list shows; every given field must match.
#[derive(InputObject, Default)]
pub struct InteractionFilterInput {
    /// Only this customer's (`cus_…`).
    pub customer_id: Option<ID>,
    /// Only this conversation's (`cnv_…`).
    pub conversation_id: Option<ID>,
    /// Any of these channels.
    pub channels: Option<Vec<Channel>>,
    /// Any of these kinds.
    pub kinds: Option<Vec<InteractionKind>>,
    /// Only this direction.
    pub direction: Option<Direction>,
    /// Occurred at or after.
    pub occurred_after: Option<DateTime<Utc>>,
    /// Occurred before.
    pub occurred_before: Option<DateTime<Utc>>,
}

impl InteractionFilterInput {
    pub fn into_domain(self) -> crate::Result<InteractionFilter> {
        let customer_id = opt_id::<CustomerId>("customerId", self.customer_id.as_ref())?;
        let conversation_id =
            opt_id::<ConversationId>("conversationId", self.conversation_id.as_ref())?;
        let timeline = TimelineFilter {
            channels: self.channels,
            kinds: self.kinds,
            direction: self.direction,
            occurred_after: self.occurred_after,
            occurred_before: self.occurred_before,
        };
        Ok(InteractionFilter {
            customer_id,
            conversation_id,
            ..InteractionFilter::from(timeline)
        })
    }
}

/// An interaction logged by hand: a call, a meeting, an e-mail sent outside Rapport.
#[derive(InputObject)]
pub struct RecordInteractionInput {
    /// The customer it was with (`cus_…`).
    pub customer_id: ID,
    /// A conversation of the same customer to file it in.
    pub conversation_id: Option<ID>,
    /// The channel it happened on.
    #[graphql(default_with = "Channel::Manual")]
    pub channel: Channel,
    /// What it was.
    pub kind: InteractionKind,
    /// INBOUND from the customer, OUTBOUND from us.
    #[graphql(default_with = "Direction::Outbound")]
    pub direction: Direction,
    /// A subject or title, at most 500 characters.
    pub subject: Option<String>,
    /// What was said, 1 to 100,000 characters.
    pub text: String,
    /// Where it lives, if anywhere (at most 2,000 characters).
    pub url: Option<String>,
    /// ISO 639-1 code such as "en".
    pub language: Option<String>,
    /// Defaults to now.
    pub occurred_at: Option<DateTime<Utc>>,
}

/// An answer to an ingested interaction.
#[derive(InputObject)]
pub struct ReplyToInteractionInput {
    /// The ingested interaction to answer (`int_…`).
    pub interaction_id: ID,
    /// What to send, within the platform's limit.
    pub text: String,
    /// Makes retries safe: the same key sends and stores the reply once. Defaults to one
    /// derived from the interaction and the text.
    pub idempotency_key: Option<String>,
}

// The mutations on this noun; the `Mutation` root delegates to them.

pub(super) async fn record_interaction(
    ctx: &Context<'_>,
    input: RecordInteractionInput,
) -> Result<InteractionPayload> {
    let new = NewInteraction {
        customer_id: id::<CustomerId>("customerId", &input.customer_id)?,
        conversation_id: opt_id::<ConversationId>(
            "conversationId",
            input.conversation_id.as_ref(),
        )?,
        channel: input.channel,
        kind: input.kind,
        direction: input.direction,
        subject: input.subject,
        text: input.text,
        url: input.url,
        language: input.language,
        occurred_at: input.occurred_at,
    };
    let model = domain::interaction::record(&app(ctx).db, caller(ctx)?, new).await?;
    Ok(InteractionPayload {
        interaction: Interaction(model),
    })
}

pub(super) async fn reply_to_interaction(
    ctx: &Context<'_>,
    input: ReplyToInteractionInput,
) -> Result<InteractionPayload> {
    let target = id::<InteractionId>("interactionId", &input.interaction_id)?;
    if let Some(key) = &input.idempotency_key {
        domain::text::check_lookup("idempotencyKey", key, 200)?;
    }
    let syncer = crate::ingest::sync::Syncer::new(app(ctx));
    let model = crate::ingest::reply::reply(
        &syncer,
        caller(ctx)?,
        target,
        &input.text,
        input.idempotency_key,
    )
    .await?;
    Ok(InteractionPayload {
        interaction: Interaction(model),
    })
}

/// `interactions`: across every customer and channel, newest first.
pub async fn interactions(
    ctx: &Context<'_>,
    filter: Option<InteractionFilterInput>,
    args: PageArgs,
) -> Result<InteractionConnection> {
    let filter = filter.unwrap_or_default().into_domain()?;
    let page = domain::interaction::list(&app(ctx).db, caller(ctx)?, &filter, &args).await?;
    Ok(interaction_connection(page, filter))
}

/// One page of the workspace's publications, newest first: what its own accounts posted
/// that answers nothing stored (see `Query.publications`).
pub async fn publications(
    ctx: &Context<'_>,
    source_id: Option<ID>,
    channels: Option<Vec<Channel>>,
    args: PageArgs,
) -> Result<InteractionConnection> {
    let filter = InteractionFilter {
        source_id: opt_id::<SourceId>("sourceId", source_id.as_ref())?,
        channels: channels.unwrap_or_default(),
        publications: true,
        ..InteractionFilter::default()
    };
    let page = domain::interaction::list(&app(ctx).db, caller(ctx)?, &filter, &args).await?;
    Ok(interaction_connection(page, filter))
}
