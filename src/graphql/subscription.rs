//! Subscriptions, served at `/graphql/ws` (graphql-transport-ws): new interactions,
//! conversation changes and the inbox's tab counts, live. Each is fed from the event log
//! through this process's [`crate::live::Feed`], so a change written by any process
//! arrives, in `seq` order. Every message carries a `cursor`; subscribing again with
//! `after: <last cursor>` first replays, from the log, what the client missed, then goes
//! on live: nothing lost, nothing repeated. Scoped to the key's workspace; every role may
//! read, so every role may subscribe.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use async_graphql::{Context, Enum, InputObject, Result, SimpleObject, Subscription, ID};
use futures_util::Stream;
use tokio::sync::broadcast::error::RecvError;

use super::conversation::Conversation;
use super::inbox::{InboxCounts, InboxFilterInput};
use super::inputs::opt_id;
use super::interaction::Interaction;
use super::types::Channel;
use super::user::{User, UserById};
use super::{app, caller, load};
use crate::domain::event::{self, EventKind, StoredEvent};
use crate::domain::{inbox, interaction, ConversationStatus, Direction};
use crate::error::Error;
use crate::live::Subscription as Joined;
use crate::App;
use entity::{ConversationId, CustomerId, InteractionId, SourceId, UserId, WorkspaceId};

pub struct Subscription;

/// Live events over WebSocket (`graphql-transport-ws`), fed from the event log, so changes
/// made by any Rapport process arrive.
#[Subscription]
impl Subscription {
    /// Every interaction stored from now on (mentions, messages, our replies) that matches
    /// `filter`. With `after` (a `cursor` this subscription gave), the ones stored since
    /// that cursor come first, from the log.
    async fn interaction_received(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "Which interactions; every one of the workspace when left out.")]
        filter: Option<InteractionReceivedFilter>,
        #[graphql(
            desc = "A `cursor` this subscription handed out, to replay what was stored since it before the live events; `BAD_USER_INPUT` for any other string."
        )]
        after: Option<String>,
    ) -> Result<impl Stream<Item = Result<InteractionReceived>>> {
        let filter = filter.unwrap_or_default().checked()?;
        let reader = Reader::join(ctx, INTERACTION_KINDS, after).await?;
        Ok(futures_util::stream::unfold(
            (reader, filter, HashMap::new()),
            |(mut reader, filter, mut rows)| async move {
                loop {
                    let event = match reader.next().await? {
                        Ok(event) => event,
                        Err(err) => return Some((Err(err.into()), (reader, filter, rows))),
                    };
                    if !filter.matches(&event.interaction()) {
                        continue;
                    }
                    // The event names its row: read it, with the rows of the other
                    // matching events already read from the log (a replay's page).
                    let id: InteractionId = event.entity();
                    if let Some(row) = &event.interaction_row {
                        rows.insert(id, row.as_ref().clone());
                    }
                    if !rows.contains_key(&id) {
                        let ids: Vec<InteractionId> = std::iter::once(id)
                            .chain(
                                reader
                                    .backlog
                                    .iter()
                                    .filter(|later| filter.matches(&later.interaction()))
                                    .map(StoredEvent::entity),
                            )
                            .collect();
                        match interaction::rows(&reader.app.db, reader.workspace_id, &ids).await {
                            Ok(found) => rows.extend(found),
                            Err(err) => return Some((Err(err.into()), (reader, filter, rows))),
                        }
                    }
                    // An interaction deleted since (with its customer) is left out.
                    let Some(row) = rows.remove(&id) else {
                        continue;
                    };
                    let item = InteractionReceived {
                        cursor: reader.cursor(event.seq),
                        interaction: Interaction(row),
                    };
                    return Some((Ok(item), (reader, filter, rows)));
                }
            },
        ))
    }

    /// Every change to a conversation from now on (created, a new message, a status set
    /// by someone or by a new message or the snooze timer, assigned, priority, labels,
    /// spam) whose conversation, as changed, matches `filter`. `after` replays as for
    /// `interactionReceived`.
    async fn conversation_changed(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "Which changes; every one of the workspace when left out.")]
        filter: Option<ConversationChangedFilter>,
        #[graphql(
            desc = "A `cursor` this subscription handed out, to replay what was stored since it before the live events; `BAD_USER_INPUT` for any other string."
        )]
        after: Option<String>,
    ) -> Result<impl Stream<Item = Result<ConversationChanged>>> {
        let filter = filter.unwrap_or_default().checked(caller(ctx)?.user_id)?;
        let reader = Reader::join(ctx, CONVERSATION_KINDS, after).await?;
        Ok(futures_util::stream::unfold(
            (reader, filter),
            |(mut reader, filter)| async move {
                loop {
                    let event = match reader.next().await? {
                        Ok(event) => event,
                        Err(err) => return Some((Err(err.into()), (reader, filter))),
                    };
                    let Some(change) = ConversationChanged::of(&event, reader.cursor(event.seq))
                    else {
                        tracing::warn!(seq = event.seq, "a conversation event did not parse");
                        continue;
                    };
                    if filter.matches(&change.row, event.created_at) {
                        return Some((Ok(change), (reader, filter)));
                    }
                }
            },
        ))
    }

    /// The inbox's tab counts (as `inboxCounts(filter)`): once at once, then whenever a
    /// conversation change moves them (changes a moment apart are counted together).
    /// Counts that move with time alone (`waitingLongerThan`) are recounted on the next change.
    async fn inbox_counts_changed(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "As `inboxCounts` takes it; all but spam when left out.")] filter: Option<
            InboxFilterInput,
        >,
    ) -> Result<impl Stream<Item = Result<InboxCountsChanged>>> {
        let filter = filter.unwrap_or_default().into_domain(ctx)?;
        let reader = Reader::join(ctx, CONVERSATION_KINDS, None).await?;
        let app = app(ctx).clone();
        let caller = caller(ctx)?.clone();
        let cursor = reader.last;
        let first = super::inbox::counts_of(&app, &caller, &filter).await?;
        let state = CountsState {
            reader,
            app,
            caller,
            filter,
            last: None,
            pending: Some((cursor, first)),
        };
        Ok(futures_util::stream::unfold(
            state,
            |mut state| async move {
                loop {
                    if let Some((cursor, counts)) = state.pending.take() {
                        if state.last.as_ref() != Some(&counts) {
                            state.last = Some(counts.clone());
                            let item = InboxCountsChanged {
                                cursor: state.reader.cursor(cursor),
                                counts,
                            };
                            return Some((Ok(item), state));
                        }
                    }
                    // A change, then whatever follows it within a moment: one recount.
                    let mut cursor = match state.reader.next().await? {
                        Ok(event) => event.seq,
                        Err(err) => return Some((Err(err.into()), state)),
                    };
                    let deadline = tokio::time::Instant::now() + COUNTS_SETTLE_MAX;
                    while let Ok(next) = tokio::time::timeout_at(
                        deadline.min(tokio::time::Instant::now() + COUNTS_SETTLE),
                        state.reader.next(),
                    )
                    .await
                    {
                        match next? {
                            Ok(event) => cursor = event.seq,
                            Err(err) => return Some((Err(err.into()), state)),
                        }
                    }
                    match super::inbox::counts_of(&state.app, &state.caller, &state.filter).await {
                        Ok(counts) => state.pending = Some((cursor, counts)),
                        Err(err) => return Some((Err(err.into()), state)),
                    }
                }
            },
        ))
    }
}

/// How long a recount of the inbox waits for further changes to count together, and at
/// most after the first (a busy inbox is recounted at least that often).
const COUNTS_SETTLE: Duration = Duration::from_millis(50);
const COUNTS_SETTLE_MAX: Duration = Duration::from_millis(250);

const INTERACTION_KINDS: &[EventKind] = &[EventKind::InteractionCreated];

const CONVERSATION_KINDS: &[EventKind] = &[
    EventKind::ConversationCreated,
    EventKind::ConversationUpdated,
    EventKind::ConversationStatusChanged,
    EventKind::ConversationStatusSet,
    EventKind::ConversationWoken,
    EventKind::ConversationAssigned,
    EventKind::ConversationPrioritySet,
    EventKind::ConversationLabelAdded,
    EventKind::ConversationLabelRemoved,
    EventKind::ConversationSpamSet,
];

/// One subscriber's events: its backlog from the log (after its cursor, up to where it
/// joined the feed), then the feed's, of its workspace and kinds, each once.
struct Reader {
    app: App,
    workspace_id: WorkspaceId,
    kinds: &'static [EventKind],
    joined: Joined,
    /// The seq of the last event handed out (or skipped as delivered before).
    last: i64,
    backlog: VecDeque<StoredEvent>,
    backlog_done: bool,
    ended: bool,
}

/// Backlog events read from the log at a time.
const BACKLOG_PAGE: u64 = 200;

impl Reader {
    async fn join(
        ctx: &Context<'_>,
        kinds: &'static [EventKind],
        after: Option<String>,
    ) -> crate::Result<Reader> {
        let caller = caller(ctx)?;
        let app = app(ctx).clone();
        let after = after
            .map(|cursor| {
                app.cursors
                    .decode(caller.workspace_id, &cursor)
                    .ok_or_else(|| {
                        Error::field(
                            "after",
                            "not a cursor this API gave this workspace (the `cursor` field of a message)",
                        )
                    })
            })
            .transpose()?;
        if let Some(after) = after {
            if after > event::head(&app.db).await? {
                return Err(Error::field(
                    "after",
                    "this cursor is ahead of every event stored: give a `cursor` this API gave",
                ));
            }
        }
        let joined = app
            .live
            .subscribe(caller.key_id, caller.workspace_id)
            .await?;
        // Without a cursor, start from the workspace's own last event before the feed's
        // position, never the position itself: every cursor shown (the first inbox counts,
        // a lag's) is then a seq of this workspace, and nothing of other tenants' activity
        // shows through. Nothing of this workspace lies in between, so nothing is replayed.
        let last = match after {
            Some(after) => after,
            None => {
                event::last_of_workspace(&app.db, caller.workspace_id, joined.joined_at).await?
            }
        };
        Ok(Reader {
            workspace_id: caller.workspace_id,
            kinds,
            backlog_done: last >= joined.joined_at,
            last,
            joined,
            app,
            backlog: VecDeque::new(),
            ended: false,
        })
    }

    /// The opaque cursor of the event at `seq` ([`crate::domain::secret::Cursors`]).
    fn cursor(&self, seq: i64) -> String {
        self.app.cursors.encode(self.workspace_id, seq)
    }

    /// The next event, an error that ends the subscription (then `None`), or `None`.
    async fn next(&mut self) -> Option<crate::Result<Arc<StoredEvent>>> {
        if self.ended {
            return None;
        }
        loop {
            if let Some(event) = self.backlog.pop_front() {
                self.last = event.seq;
                return Some(Ok(Arc::new(event)));
            }
            if !self.backlog_done {
                let page = event::of_workspace(
                    &self.app.db,
                    self.workspace_id,
                    (self.last, self.joined.joined_at),
                    self.kinds,
                    BACKLOG_PAGE,
                )
                .await;
                match page {
                    Ok(page) if page.is_empty() => self.backlog_done = true,
                    Ok(page) => self.backlog.extend(page),
                    Err(err) => {
                        self.ended = true;
                        return Some(Err(err));
                    }
                }
                continue;
            }
            match self.joined.events.recv().await {
                Ok(event) => {
                    if event.seq > self.last
                        && event.workspace_id == self.workspace_id
                        && event.kind.is_some_and(|kind| self.kinds.contains(&kind))
                    {
                        self.last = event.seq;
                        return Some(Ok(event));
                    }
                }
                Err(RecvError::Lagged(_)) => {
                    self.ended = true;
                    return Some(Err(Error::Conflict(format!(
                        "this subscription fell more than {} events behind and was stopped; subscribe again with after: \"{}\" (the last cursor received) to go on without missing any",
                        self.app.config.limits.subscription_backlog,
                        self.cursor(self.last)
                    ))));
                }
                Err(RecvError::Closed) => return None,
            }
        }
    }
}

/// Which new interactions `interactionReceived` reports; every given field must match.
#[derive(InputObject, Default)]
pub struct InteractionReceivedFilter {
    /// On this channel.
    pub channel: Option<Channel>,
    /// Ingested from or sent through this source (`src_…`).
    pub source_id: Option<ID>,
    /// With this customer (`cus_…`).
    pub customer_id: Option<ID>,
    /// In this conversation (`cnv_…`).
    pub conversation_id: Option<ID>,
    /// Only this direction.
    pub direction: Option<Direction>,
}

struct InteractionMatch {
    channel: Option<Channel>,
    source_id: Option<SourceId>,
    customer_id: Option<CustomerId>,
    conversation_id: Option<ConversationId>,
    direction: Option<Direction>,
}

impl InteractionReceivedFilter {
    fn checked(self) -> crate::Result<InteractionMatch> {
        Ok(InteractionMatch {
            channel: self.channel,
            source_id: opt_id("filter.sourceId", self.source_id.as_ref())?,
            customer_id: opt_id("filter.customerId", self.customer_id.as_ref())?,
            conversation_id: opt_id("filter.conversationId", self.conversation_id.as_ref())?,
            direction: self.direction,
        })
    }
}

impl InteractionMatch {
    /// Judged on what the event names (every form of an `interaction.created` payload
    /// carries these), before the row is read.
    fn matches(&self, named: &event::InteractionPayload) -> bool {
        self.channel
            .is_none_or(|channel| named.channel.is_some_and(|named| named == channel))
            && self.source_id.is_none_or(|id| named.source_id == Some(id))
            && self
                .customer_id
                .is_none_or(|id| named.customer_id == Some(id))
            && self
                .conversation_id
                .is_none_or(|id| named.conversation_id == Some(id))
            && self
                .direction
                .is_none_or(|direction| named.direction == Some(direction))
    }
}

/// A new interaction, and where it sits in the log.
#[derive(SimpleObject)]
pub struct InteractionReceived {
    /// Give it as `after` to subscribe again from here. Opaque: it is good only in this
    /// workspace, and says nothing of order (compare nothing, keep the last one received).
    pub cursor: String,
    /// The interaction as stored now (one deleted before it is delivered, with its
    /// customer, is left out).
    pub interaction: Interaction,
}

/// Which conversation changes `conversationChanged` reports, judged on the conversation
/// as changed; every given field must match.
#[derive(InputObject, Default)]
pub struct ConversationChangedFilter {
    /// Only this conversation (`cnv_…`).
    pub conversation_id: Option<ID>,
    /// Any of these statuses (as the conversation reads after the change).
    pub statuses: Option<Vec<ConversationStatus>>,
    /// ME or NOBODY; for a given user use `assigneeId` (not both).
    pub assignee: Option<super::inbox::InboxAssignee>,
    /// Assigned to this user (`usr_…`) after the change.
    pub assignee_id: Option<ID>,
    /// On this channel.
    pub channel: Option<Channel>,
    /// Of this source (`src_…`).
    pub source_id: Option<ID>,
}

struct ConversationMatch {
    conversation_id: Option<ConversationId>,
    statuses: Vec<ConversationStatus>,
    /// `Some(None)`: assigned to nobody.
    assignee: Option<Option<UserId>>,
    channel: Option<Channel>,
    source_id: Option<SourceId>,
}

impl ConversationChangedFilter {
    fn checked(self, me: Option<UserId>) -> crate::Result<ConversationMatch> {
        use super::inbox::InboxAssignee;
        let assignee = match (self.assignee, self.assignee_id) {
            (Some(_), Some(_)) => {
                return Err(Error::field(
                    "filter.assignee",
                    "give either assignee (ME, NOBODY) or assigneeId, not both",
                ))
            }
            (Some(InboxAssignee::Nobody), None) => Some(None),
            (Some(InboxAssignee::Me), None) => Some(Some(me.ok_or_else(|| {
                Error::field(
                    "filter.assignee",
                    "this API key belongs to no user, so ME means nobody: make a key with `rapport keys create --user`",
                )
            })?)),
            (None, Some(user)) => Some(Some(super::inputs::id("filter.assigneeId", &user)?)),
            (None, None) => None,
        };
        Ok(ConversationMatch {
            conversation_id: opt_id("filter.conversationId", self.conversation_id.as_ref())?,
            statuses: self.statuses.unwrap_or_default(),
            assignee,
            channel: self.channel,
            source_id: opt_id("filter.sourceId", self.source_id.as_ref())?,
        })
    }
}

impl ConversationMatch {
    /// Whether the conversation as an event at `at` left it matches: its status as it read
    /// then, so a replay judges an event as it was judged live.
    fn matches(
        &self,
        row: &entity::conversation::Model,
        at: chrono::DateTime<chrono::Utc>,
    ) -> bool {
        self.conversation_id.is_none_or(|id| row.id == id)
            && (self.statuses.is_empty()
                || self.statuses.contains(&inbox::effective_status(row, at)))
            && self.assignee.is_none_or(|user| row.assignee_id == user)
            && self.channel.is_none_or(|channel| row.channel == channel)
            && self.source_id.is_none_or(|id| row.source_id == Some(id))
    }
}

/// What happened to a conversation.
#[derive(Enum, Copy, Clone, Debug, PartialEq, Eq)]
pub enum ConversationChange {
    /// A new conversation: its first message arrived or was recorded.
    Created,
    /// A new message (either way), or our first response.
    Updated,
    /// Someone set its status.
    StatusSet,
    /// A new message reopened it.
    Reopened,
    /// Its snooze ran out: OPEN again.
    Woken,
    /// Someone assigned it, or unassigned it (`assignee` is then `null`).
    Assigned,
    /// Someone set its priority.
    PrioritySet,
    /// Someone added the label named by `label`.
    LabelAdded,
    /// Someone removed the label named by `label`.
    LabelRemoved,
    /// Someone marked it (or its customer) as spam, or cleared the mark.
    SpamSet,
}

/// A change to a conversation: the conversation as the change left it, and who made it.
#[derive(SimpleObject)]
#[graphql(complex)]
pub struct ConversationChanged {
    /// Give it as `after` to subscribe again from here. Opaque: it is good only in this
    /// workspace, and says nothing of order (compare nothing, keep the last one received).
    pub cursor: String,
    /// What happened.
    pub change: ConversationChange,
    /// The conversation as the change left it (not as it is now, for a replayed change).
    pub conversation: Conversation,
    /// Who made the change: the key's name, or what in Rapport did it (`new message`,
    /// `snooze timer`).
    pub actor_name: Option<String>,
    /// The label a label change is about.
    pub label: Option<String>,
    #[graphql(skip)]
    actor_user: Option<UserId>,
    #[graphql(skip)]
    row: entity::conversation::Model,
}

#[async_graphql::ComplexObject]
impl ConversationChanged {
    /// The user who made the change, when their key belongs to one.
    async fn actor(&self, ctx: &Context<'_>) -> Result<Option<User>> {
        match self.actor_user {
            Some(id) => Ok(load(ctx, UserById(id)).await?.map(User)),
            None => Ok(None),
        }
    }
}

impl ConversationChanged {
    fn of(event: &StoredEvent, cursor: String) -> Option<ConversationChanged> {
        let change = match event.kind? {
            EventKind::ConversationCreated => ConversationChange::Created,
            EventKind::ConversationUpdated => ConversationChange::Updated,
            EventKind::ConversationStatusSet => ConversationChange::StatusSet,
            EventKind::ConversationStatusChanged => ConversationChange::Reopened,
            EventKind::ConversationWoken => ConversationChange::Woken,
            EventKind::ConversationAssigned => ConversationChange::Assigned,
            EventKind::ConversationPrioritySet => ConversationChange::PrioritySet,
            EventKind::ConversationLabelAdded => ConversationChange::LabelAdded,
            EventKind::ConversationLabelRemoved => ConversationChange::LabelRemoved,
            EventKind::ConversationSpamSet => ConversationChange::SpamSet,
            _ => return None,
        };
        let row: entity::conversation::Model =
            serde_json::from_value(event.payload.clone()).ok()?;
        let actor = event.payload.get("actor");
        let text = |value: Option<&serde_json::Value>| {
            value.and_then(|value| value.as_str()).map(str::to_owned)
        };
        Some(ConversationChanged {
            cursor,
            change,
            conversation: Conversation(row.clone()),
            actor_name: text(actor.and_then(|actor| actor.get("name"))),
            label: text(event.payload.get("label")),
            actor_user: actor
                .and_then(|actor| actor.get("user_id"))
                .and_then(|id| serde_json::from_value::<UserId>(id.clone()).ok()),
            row,
        })
    }
}

/// The inbox's tab counts after a change.
#[derive(SimpleObject)]
pub struct InboxCountsChanged {
    /// The last change counted (opaque, as the other subscriptions' cursors).
    pub cursor: String,
    /// The counts after that change.
    pub counts: InboxCounts,
}

struct CountsState {
    reader: Reader,
    app: App,
    caller: crate::domain::Caller,
    filter: inbox::InboxFilter,
    last: Option<InboxCounts>,
    pending: Option<(i64, InboxCounts)>,
}
