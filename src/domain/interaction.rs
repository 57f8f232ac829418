//! Interactions: every mention, message, e-mail, call or meeting, across channels. Lists
//! are newest first with keyset pagination; customer timelines for a whole page of
//! customers come from one query (a `LATERAL` page per customer on PostgreSQL, `ROW_NUMBER()
//! OVER (PARTITION BY customer_id …)` on SQLite).

use std::collections::HashMap;
use std::hash::Hash;

use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Alias, Asterisk, Expr, Func, JoinType, Query};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, FromQueryResult,
    IdenStatic, Iterable, Order, PaginatorTrait, QueryFilter, QuerySelect, QueryTrait,
    TransactionTrait, TryGetable, Value,
};

use super::event::Event;
use super::page::{self, Page, PageArgs, Sort, SortKind, Window};
use super::{clean_optional, Caller, Direction, InteractionKind, Role};
use crate::error::{Error, Result};
use crate::ids::TypedId;
use entity::interaction::{self, Column, Entity, Model};
use entity::{ConversationId, CustomerId, IdentityId, InteractionId, SourceId, WorkspaceId};

/// Which interactions a list shows; every set field must match.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct InteractionFilter {
    pub customer_id: Option<CustomerId>,
    pub conversation_id: Option<ConversationId>,
    pub channels: Vec<connectors::Channel>,
    pub kinds: Vec<InteractionKind>,
    pub direction: Option<Direction>,
    pub occurred_after: Option<DateTime<Utc>>,
    pub occurred_before: Option<DateTime<Utc>>,
    /// Only this source's items.
    pub source_id: Option<SourceId>,
    /// Only publications: the workspace's own items that are no customer's.
    pub publications: bool,
}

const SORT: &str = "occurred_at";

fn sort() -> Sort<Entity> {
    Sort {
        name: SORT,
        column: Column::OccurredAt,
        id: Column::Id,
        descending: true,
        kind: SortKind::Time,
    }
}

/// The cursor of an interaction in any interaction list.
pub fn cursor(model: &Model) -> page::Cursor {
    page::Cursor::time(SORT, model.occurred_at, model.id)
}

/// The workspace's interactions matching `filter`; `under_parent` when the caller also
/// picks them by customer or conversation (see [`super::scoped_under`]).
fn filtered(
    backend: sea_orm::DatabaseBackend,
    workspace_id: WorkspaceId,
    filter: &InteractionFilter,
    under_parent: bool,
) -> sea_orm::Select<Entity> {
    let under_parent =
        under_parent || filter.customer_id.is_some() || filter.conversation_id.is_some();
    let mut select = if under_parent {
        super::scoped_under::<Entity>(backend, workspace_id)
    } else {
        super::scoped::<Entity>(workspace_id)
    };
    if let Some(customer) = filter.customer_id {
        select = select.filter(Column::CustomerId.eq(customer));
    }
    if let Some(conversation) = filter.conversation_id {
        select = select.filter(Column::ConversationId.eq(conversation));
    }
    if !filter.channels.is_empty() {
        select = select.filter(Column::Channel.is_in(filter.channels.iter().copied()));
    }
    if !filter.kinds.is_empty() {
        select = select.filter(Column::Kind.is_in(filter.kinds.iter().map(|k| k.as_str())));
    }
    if let Some(direction) = filter.direction {
        select = select.filter(Column::Direction.eq(direction.as_str()));
    }
    if let Some(after) = filter.occurred_after {
        select = select.filter(Column::OccurredAt.gte(after));
    }
    if let Some(before) = filter.occurred_before {
        select = select.filter(Column::OccurredAt.lt(before));
    }
    if let Some(source) = filter.source_id {
        select = select.filter(Column::SourceId.eq(source));
    }
    if filter.publications {
        select = select.filter(Column::CustomerId.is_null());
    }
    select
}

/// One page of the workspace's interactions matching `filter`, newest first.
pub async fn list(
    db: &impl ConnectionTrait,
    caller: &Caller,
    filter: &InteractionFilter,
    args: &PageArgs,
) -> Result<Page<Model>> {
    let window = args.window(SORT)?;
    let select = list_query(
        db.get_database_backend(),
        caller.workspace_id,
        filter,
        &window,
    )?;
    Ok(page::finish(select.all(db).await?, &window))
}

/// The statement of [`list`].
fn list_query(
    backend: sea_orm::DatabaseBackend,
    workspace_id: WorkspaceId,
    filter: &InteractionFilter,
    window: &Window,
) -> Result<sea_orm::Select<Entity>> {
    let sort = sort();
    Ok(sort.order_and_limit(
        sort.between(filtered(backend, workspace_id, filter, false), window)?,
        window,
    ))
}

/// How many interactions match `filter`.
pub async fn count(
    db: &impl ConnectionTrait,
    caller: &Caller,
    filter: &InteractionFilter,
) -> Result<u64> {
    Ok(filtered(
        db.get_database_backend(),
        caller.workspace_id,
        filter,
        false,
    )
    .count(db)
    .await?)
}

/// How many interactions `source` of `workspace_id` holds, and how many distinct
/// external ids among them (the two differ only if an item was stored twice).
pub async fn stored_of_source(
    db: &impl ConnectionTrait,
    workspace_id: WorkspaceId,
    source: SourceId,
) -> Result<(u64, u64)> {
    let query = Query::select()
        .expr_as(Expr::col(Column::Id).count(), Alias::new("stored"))
        .expr_as(
            Expr::cust("count(DISTINCT external_id)"),
            Alias::new("distinct_ids"),
        )
        .from(Entity)
        .and_where(Expr::col(Column::WorkspaceId).eq(workspace_id))
        .and_where(Expr::col(Column::SourceId).eq(source))
        .to_owned();
    let row = db
        .query_one(db.get_database_backend().build(&query))
        .await?
        .ok_or_else(|| Error::Internal("a count returned no row".into()))?;
    let stored: i64 = row.try_get("", "stored")?;
    let distinct: i64 = row.try_get("", "distinct_ids")?;
    Ok((stored.max(0) as u64, distinct.max(0) as u64))
}

/// Validates paging arguments once, so a batch of per-parent lists shares one window.
pub fn window(args: &PageArgs) -> Result<Window> {
    args.window(SORT)
}

/// What a batch of interaction lists hangs off, by its id: a customer (its timeline) or a
/// conversation (its thread).
pub trait Parent: TypedId + Eq + Hash + Into<Value> + TryGetable + Send + Sync + 'static {
    /// The interaction column holding the parent's id.
    const COLUMN: Column;

    /// The parent of `model` of this kind, if it has one.
    fn of(model: &Model) -> Option<Self>;

    /// `filter` narrowed to this parent's interactions.
    fn narrow(self, filter: InteractionFilter) -> InteractionFilter;
}

impl Parent for CustomerId {
    const COLUMN: Column = Column::CustomerId;

    fn of(model: &Model) -> Option<Self> {
        model.customer_id
    }

    fn narrow(self, filter: InteractionFilter) -> InteractionFilter {
        InteractionFilter {
            customer_id: Some(self),
            ..filter
        }
    }
}

impl Parent for ConversationId {
    const COLUMN: Column = Column::ConversationId;

    fn of(model: &Model) -> Option<Self> {
        model.conversation_id
    }

    fn narrow(self, filter: InteractionFilter) -> InteractionFilter {
        InteractionFilter {
            conversation_id: Some(self),
            ..filter
        }
    }
}

/// The same page of each parent's interactions, in one statement for all `parents`,
/// without their `raw` payload (`raw` is `None` in these models: see [`without_raw`]). On
/// PostgreSQL each parent's page is read by a `LATERAL` subquery with the limit inside
/// (n + 1 rows by the parent's index, however many interactions it has, and one
/// statement text for any number of parents); SQLite has no `LATERAL`, so there
/// `ROW_NUMBER() OVER (PARTITION BY parent …)` keeps the first rows of each.
pub async fn pages_of<P: Parent>(
    db: &impl ConnectionTrait,
    workspace_id: WorkspaceId,
    parents: &[P],
    filter: &InteractionFilter,
    window: &Window,
) -> Result<HashMap<P, Page<Model>>> {
    let rows = if db.get_database_backend() == sea_orm::DatabaseBackend::Postgres {
        pages_lateral(db, workspace_id, parents, filter, window).await?
    } else {
        pages_windowed(db, workspace_id, parents, filter, window).await?
    };
    let mut grouped: HashMap<P, Vec<Model>> = HashMap::new();
    for row in rows {
        if let Some(id) = P::of(&row) {
            grouped.entry(id).or_default().push(row);
        }
    }
    Ok(parents
        .iter()
        .map(|id| {
            (
                *id,
                page::finish(grouped.remove(id).unwrap_or_default(), window),
            )
        })
        .collect())
}

/// Every column but `raw`, which reads as NULL: the platform's payload (often kilobytes
/// of JSON to parse per row) is kept for reprocessing, and no API field returns it.
fn without_raw(select: sea_orm::Select<Entity>) -> sea_orm::Select<Entity> {
    select
        .select_only()
        .columns(Column::iter().filter(|column| !matches!(column, Column::Raw)))
        .expr_as(Expr::cust("NULL"), Column::Raw.as_str())
}

/// PostgreSQL: `unnest` of the parents' ids, each joined laterally to its own page in
/// reading order; rows come grouped by parent, each group in reading order.
async fn pages_lateral<P: Parent>(
    db: &impl ConnectionTrait,
    workspace_id: WorkspaceId,
    parents: &[P],
    filter: &InteractionFilter,
    window: &Window,
) -> Result<Vec<Model>> {
    let sort = sort();
    let order = if sort.read_descending(window) {
        Order::Desc
    } else {
        Order::Asc
    };
    let parent = Alias::new("p");
    let page = Alias::new("t");
    let inner = sort
        .order_and_limit(
            sort.between(
                without_raw(filtered(
                    db.get_database_backend(),
                    workspace_id,
                    filter,
                    true,
                )),
                window,
            )?,
            window,
        )
        .filter(Expr::col((Entity, P::COLUMN)).equals((parent.clone(), parent.clone())))
        .into_query();
    // The ids as one array literal in one parameter: the statement text does not depend
    // on how many parents there are.
    let ids = parents
        .iter()
        .map(|id| id.uuid().to_string())
        .collect::<Vec<_>>()
        .join(",");
    let outer = Query::select()
        .column((page.clone(), Asterisk))
        .from_function(
            Func::cust(Alias::new("unnest"))
                .arg(Expr::val(format!("{{{ids}}}")).cast_as(Alias::new("uuid[]"))),
            parent.clone(),
        )
        // `JOIN LATERAL … ON TRUE` is `CROSS JOIN LATERAL` (sea-query writes an empty
        // `ON` after a cross join).
        .join_lateral(JoinType::InnerJoin, inner, page.clone(), Expr::cust("TRUE"))
        .order_by((page.clone(), P::COLUMN), Order::Asc)
        .order_by((page.clone(), Column::OccurredAt), order.clone())
        .order_by((page, Column::Id), order)
        .to_owned();
    Ok(super::decode::all(db, db.get_database_backend().build(&outer)).await?)
}

/// SQLite: every matching interaction of the parents numbered per parent in reading
/// order, the first n + 1 of each kept.
async fn pages_windowed<P: Parent>(
    db: &impl ConnectionTrait,
    workspace_id: WorkspaceId,
    parents: &[P],
    filter: &InteractionFilter,
    window: &Window,
) -> Result<Vec<Model>> {
    let backend = db.get_database_backend();
    let outer = windowed_query(backend, workspace_id, parents, filter, window)?;
    Ok(super::decode::all(db, backend.build(&outer)).await?)
}

/// The statement of [`pages_windowed`].
fn windowed_query<P: Parent>(
    backend: sea_orm::DatabaseBackend,
    workspace_id: WorkspaceId,
    parents: &[P],
    filter: &InteractionFilter,
    window: &Window,
) -> Result<sea_orm::sea_query::SelectStatement> {
    let sort = sort();
    let select = sort
        .between(
            without_raw(filtered(backend, workspace_id, filter, true)),
            window,
        )?
        .filter(P::COLUMN.is_in(parents.iter().copied()));
    let direction = if sort.read_descending(window) {
        "DESC"
    } else {
        "ASC"
    };
    let mut inner = select.into_query();
    inner.expr_as(
        Expr::cust(format!(
            "ROW_NUMBER() OVER (PARTITION BY {} ORDER BY occurred_at {direction}, id {direction})",
            P::COLUMN.as_str()
        )),
        Alias::new("rn"),
    );
    Ok(Query::select()
        .column(Asterisk)
        .from_subquery(inner, Alias::new("t"))
        .and_where(Expr::col(Alias::new("rn")).lte(window.size as i64 + 1))
        .order_by(Alias::new(P::COLUMN.as_str()), Order::Asc)
        .order_by(Alias::new("rn"), Order::Asc)
        .to_owned())
}

/// For each parent, how many of its interactions match `filter` (one query).
pub async fn counts_of<P: Parent>(
    db: &impl ConnectionTrait,
    workspace_id: WorkspaceId,
    parents: &[P],
    filter: &InteractionFilter,
) -> Result<HashMap<P, i64>> {
    let rows: Vec<(Option<P>, i64)> =
        filtered(db.get_database_backend(), workspace_id, filter, true)
            .filter(P::COLUMN.is_in(parents.iter().copied()))
            .select_only()
            .column_as(P::COLUMN, "parent")
            .column_as(Column::Id.count(), "count")
            .group_by(P::COLUMN)
            .into_tuple()
            .all(db)
            .await?;
    Ok(rows
        .into_iter()
        .filter_map(|(parent, count)| parent.map(|id| (id, count)))
        .collect())
}

#[derive(FromQueryResult)]
struct GroupCount {
    customer_id: CustomerId,
    channel: connectors::Channel,
    count: i64,
}

/// For each customer, how many interactions they have on each channel, most first.
pub async fn by_channel(
    db: &impl ConnectionTrait,
    workspace_id: WorkspaceId,
    customers: &[CustomerId],
    filter: &InteractionFilter,
) -> Result<HashMap<CustomerId, Vec<(connectors::Channel, i64)>>> {
    let rows = filtered(db.get_database_backend(), workspace_id, filter, true)
        .filter(Column::CustomerId.is_in(customers.iter().copied()))
        .select_only()
        .column(Column::CustomerId)
        .column(Column::Channel)
        .column_as(Column::Id.count(), "count")
        .group_by(Column::CustomerId)
        .group_by(Column::Channel)
        .into_model::<GroupCount>()
        .all(db)
        .await?;
    let mut grouped: HashMap<CustomerId, Vec<(connectors::Channel, i64)>> = HashMap::new();
    for row in rows {
        grouped
            .entry(row.customer_id)
            .or_default()
            .push((row.channel, row.count));
    }
    for channels in grouped.values_mut() {
        channels.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.as_str().cmp(b.0.as_str())));
    }
    Ok(grouped)
}

/// An interaction logged by hand: a call, a meeting, an e-mail sent outside Rapport.
pub struct NewInteraction {
    pub customer_id: CustomerId,
    pub conversation_id: Option<ConversationId>,
    pub channel: connectors::Channel,
    pub kind: InteractionKind,
    pub direction: Direction,
    pub subject: Option<String>,
    pub text: String,
    pub url: Option<String>,
    pub language: Option<String>,
    pub occurred_at: Option<DateTime<Utc>>,
}

/// The longest text an interaction keeps.
pub const MAX_TEXT_CHARS: usize = 100_000;

/// Records an interaction by hand. A conversation, when named, must be the customer's;
/// it is reopened by an inbound item and gets its first response from an outbound one.
pub async fn record(
    db: &impl TransactionTrait,
    caller: &Caller,
    input: NewInteraction,
) -> Result<Model> {
    caller.require(Role::Agent, "recording an interaction")?;
    let text = super::clean_required("text", &input.text, MAX_TEXT_CHARS)?;
    let subject = clean_optional("subject", input.subject, 500)?;
    let url = clean_optional("url", input.url, 2_000)?;
    let language = clean_optional("language", input.language, 35)?;
    let now = super::now();
    let occurred_at = input
        .occurred_at
        .map(|at| at.trunc_subsecs_micros())
        .unwrap_or(now);
    if occurred_at > now + chrono::Duration::days(1) {
        return Err(Error::field(
            "occurredAt",
            "occurredAt lies more than a day in the future",
        ));
    }
    let txn = super::begin_write(db).await?;
    super::customer::get_live(&txn, caller, input.customer_id).await?;
    if let Some(conversation) = input.conversation_id {
        let conversation = super::conversation::get(&txn, caller, conversation).await?;
        // A publication's thread is no one customer's: anyone's interaction may join it.
        if conversation
            .customer_id
            .is_some_and(|owner| owner != input.customer_id)
        {
            return Err(Error::field(
                "conversationId",
                "the conversation belongs to another customer",
            ));
        }
    }
    // Recorded by hand or ingested, an interaction gets the same language and sentiment.
    let language = match language {
        Some(language) => Some(language),
        None => {
            let languages = super::workspace::languages(&txn, caller.workspace_id).await?;
            super::enrich::language(&text, &languages)
        }
    };
    let sentiment = super::enrich::sentiment(&text, language.as_deref());
    let row = interaction::ActiveModel {
        id: Set(InteractionId::new()),
        workspace_id: Set(caller.workspace_id),
        customer_id: Set(Some(input.customer_id)),
        conversation_id: Set(input.conversation_id),
        identity_id: Set(None),
        source_id: Set(None),
        external_id: Set(None),
        channel: Set(input.channel),
        direction: Set(input.direction),
        kind: Set(input.kind),
        subject: Set(subject),
        text: Set(text),
        html: Set(None),
        url: Set(url),
        language: Set(language),
        sentiment: Set(sentiment),
        occurred_at: Set(occurred_at),
        ingested_at: Set(now),
        raw: Set(None),
        delivery_status: Set(None),
        delivery_error: Set(None),
        idempotency_key: Set(None),
        delivery_attempted_at: Set(None),
    };
    let model = row.insert(&txn).await?;
    super::event::append(&txn, caller.workspace_id, Event::InteractionCreated(&model)).await?;
    super::customer::seen_at(&txn, caller.workspace_id, input.customer_id, occurred_at).await?;
    if let Some(conversation) = model.conversation_id {
        super::conversation::on_interaction(
            &txn,
            caller.workspace_id,
            conversation,
            input.direction,
            occurred_at,
        )
        .await?;
    }
    txn.commit().await?;
    Ok(model)
}

trait TruncMicros {
    fn trunc_subsecs_micros(self) -> Self;
}

impl TruncMicros for DateTime<Utc> {
    fn trunc_subsecs_micros(self) -> Self {
        chrono::SubsecRound::trunc_subsecs(self, 6)
    }
}

/// The most bytes of an item's raw payload kept with it.
pub const MAX_RAW_BYTES: usize = 64 * 1024;

/// An inbound item ready to store: who wrote it and where it belongs.
pub struct Ingested<'a> {
    pub workspace_id: WorkspaceId,
    pub source_id: SourceId,
    pub channel: connectors::Channel,
    /// `None` for a publication.
    pub customer_id: Option<CustomerId>,
    /// The author's identity; `None` for the workspace's own items.
    pub identity_id: Option<IdentityId>,
    pub conversation_id: ConversationId,
    pub item: &'a connectors::InboundItem,
}

/// The external ids of `source` among `external_ids` that are stored already.
pub async fn stored_external_ids(
    db: &impl ConnectionTrait,
    source_id: SourceId,
    external_ids: &[String],
) -> Result<Vec<String>> {
    let rows = Entity::find()
        .filter(Column::SourceId.eq(source_id))
        .filter(Column::ExternalId.is_in(external_ids.iter().cloned()))
        .all(db)
        .await?;
    Ok(rows.into_iter().filter_map(|row| row.external_id).collect())
}

/// The conversation of an item of `source` by its external id, with that item's customer
/// (`None` for a publication): where a reply to it goes.
pub async fn conversation_of(
    db: &impl ConnectionTrait,
    source_id: SourceId,
    external_id: &str,
) -> Result<Option<(ConversationId, Option<CustomerId>)>> {
    let row = Entity::find()
        .filter(Column::SourceId.eq(source_id))
        .filter(Column::ExternalId.eq(external_id))
        .one(db)
        .await?;
    Ok(row.and_then(|row| Some((row.conversation_id?, row.customer_id))))
}

/// The interactions of `workspace_id` among `ids` that exist, by id (one statement).
pub async fn rows(
    db: &impl ConnectionTrait,
    workspace_id: WorkspaceId,
    ids: &[InteractionId],
) -> Result<HashMap<InteractionId, Model>> {
    super::by_ids::<Entity, _>(db, workspace_id, ids, |row| row.id).await
}

/// An interaction of the caller's workspace, or `NOT_FOUND`.
pub async fn get(db: &impl ConnectionTrait, caller: &Caller, id: InteractionId) -> Result<Model> {
    super::find_scoped(db, caller.workspace_id, id).await
}

/// The interaction of the workspace's source `source_id` with `external_id`, if stored
/// (a reply already sent, found by the external id it was sent with).
pub async fn by_external_id(
    db: &impl ConnectionTrait,
    workspace_id: WorkspaceId,
    source_id: SourceId,
    external_id: String,
) -> Result<Option<Model>> {
    Ok(super::scoped::<Entity>(workspace_id)
        .filter(Column::SourceId.eq(source_id))
        .filter(Column::ExternalId.eq(external_id))
        .one(db)
        .await?)
}

/// Who wrote an interaction (its identity) and the thread key of its conversation: where
/// a reply to it goes.
pub async fn author_and_thread(
    db: &impl ConnectionTrait,
    interaction: &Model,
) -> Result<(Option<entity::identity::Model>, Option<String>)> {
    let identity = match interaction.identity_id {
        Some(identity) => {
            entity::identity::Entity::find_by_id(identity)
                .one(db)
                .await?
        }
        None => None,
    };
    let thread_key = match interaction.conversation_id {
        Some(conversation) => entity::conversation::Entity::find_by_id(conversation)
            .one(db)
            .await?
            .and_then(|conversation| conversation.thread_key),
        None => None,
    };
    Ok((identity, thread_key))
}

/// What an inbound item stores besides its links: its text cleaned and capped at
/// [`MAX_TEXT_CHARS`], its language (the platform's, else detected) and sentiment, its
/// subject cleaned, its raw payload kept up to [`MAX_RAW_BYTES`]. Pure work on the item
/// alone, so a batch computes it for all its items in parallel before its transaction.
#[derive(Clone, Debug)]
pub struct Enriched {
    pub direction: Direction,
    pub kind: InteractionKind,
    pub subject: Option<String>,
    pub text: String,
    pub language: Option<String>,
    pub sentiment: Option<f64>,
    /// Truncated to microseconds, as both databases store it.
    pub occurred_at: DateTime<Utc>,
    pub raw: serde_json::Value,
}

/// Enriches one (normalised) inbound item, its language detected among `languages`
/// unless the platform tagged it; see [`Enriched`].
pub fn enrich(item: &connectors::InboundItem, languages: &super::enrich::Languages) -> Enriched {
    let raw_bytes = json_bytes(&item.raw);
    let raw = if raw_bytes <= MAX_RAW_BYTES {
        item.raw.clone()
    } else {
        serde_json::json!({ "truncated": true, "bytes": raw_bytes })
    };
    let direction = if item.outbound {
        Direction::Outbound
    } else {
        Direction::Inbound
    };
    let kind = InteractionKind::parse(&item.kind).unwrap_or(InteractionKind::Message);
    let text: String = super::clean(&item.text)
        .chars()
        .take(MAX_TEXT_CHARS)
        .collect();
    let language = item
        .language
        .clone()
        .or_else(|| super::enrich::language(&text, languages));
    let sentiment = super::enrich::sentiment(&text, language.as_deref());
    Enriched {
        direction,
        kind,
        subject: item.subject.as_deref().map(super::clean),
        text,
        language,
        sentiment,
        occurred_at: chrono::SubsecRound::trunc_subsecs(item.occurred_at, 6),
        raw,
    }
}

/// The bytes `value` takes as JSON, counted as it is written out, not kept.
fn json_bytes(value: &serde_json::Value) -> usize {
    struct Counted(usize);
    impl std::io::Write for Counted {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0 += bytes.len();
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut counted = Counted(0);
    match serde_json::to_writer(&mut counted, value) {
        Ok(()) => counted.0,
        Err(_) => 0,
    }
}

impl Enriched {
    /// The interaction row of the enriched item filed where `ingested` says, with a new id.
    pub fn into_model(self, ingested: &Ingested<'_>, now: DateTime<Utc>) -> Model {
        let item = ingested.item;
        Model {
            id: InteractionId::new(),
            workspace_id: ingested.workspace_id,
            customer_id: ingested.customer_id,
            conversation_id: Some(ingested.conversation_id),
            identity_id: ingested.identity_id,
            source_id: Some(ingested.source_id),
            external_id: Some(item.external_id.clone()),
            channel: ingested.channel,
            direction: self.direction,
            kind: self.kind,
            subject: self.subject,
            text: self.text,
            html: item.html.clone(),
            url: item.url.clone(),
            language: self.language,
            sentiment: self.sentiment,
            occurred_at: self.occurred_at,
            ingested_at: now,
            raw: Some(self.raw),
            delivery_status: None,
            delivery_error: None,
            idempotency_key: None,
            delivery_attempted_at: None,
        }
    }
}

/// Stores an inbound item unless its (source, external id) is stored already, in which
/// case it returns `None`: the UNIQUE constraint decides, `ON CONFLICT DO NOTHING`.
/// Text is NFC-normalised; the raw payload is kept up to [`MAX_RAW_BYTES`].
pub async fn insert_ingested(
    db: &impl ConnectionTrait,
    ingested: Ingested<'_>,
    languages: &super::enrich::Languages,
) -> Result<Option<Model>> {
    use sea_orm::sea_query::OnConflict;
    let model = enrich(ingested.item, languages).into_model(&ingested, super::now());
    let inserted = Entity::insert(interaction::ActiveModel::from(model.clone()))
        .on_conflict(
            OnConflict::columns([Column::SourceId, Column::ExternalId])
                .do_nothing()
                .to_owned(),
        )
        .exec_without_returning(db)
        .await?;
    if inserted == 0 {
        return Ok(None);
    }
    super::event::append(db, ingested.workspace_id, Event::InteractionCreated(&model)).await?;
    if let Some(customer) = model.customer_id {
        super::customer::seen_at(db, ingested.workspace_id, customer, model.occurred_at).await?;
    }
    Ok(Some(model))
}

#[cfg(test)]
mod plan_tests {
    use super::*;
    use sea_orm::{DatabaseBackend, QueryTrait};

    const SQLITE: DatabaseBackend = DatabaseBackend::Sqlite;

    fn first(size: i32) -> Window {
        window(&PageArgs {
            first: Some(size),
            ..PageArgs::default()
        })
        .unwrap()
    }

    async fn list_plan(filter: InteractionFilter) -> Vec<String> {
        let query = list_query(SQLITE, WorkspaceId::new(), &filter, &first(20)).unwrap();
        crate::domain::sqlite_plan(query.build(SQLITE)).await
    }

    fn reads(plan: &[String], index: &str) -> bool {
        plan.iter()
            .any(|step| step.contains(&format!("INDEX {index} ")) || step.ends_with(index))
    }

    /// Without planner statistics SQLite would walk a workspace index in the order asked
    /// for; a customer's or a conversation's interactions come by their own index.
    #[tokio::test]
    async fn a_parents_interactions_are_read_by_its_index_on_sqlite() {
        let customer = list_plan(InteractionFilter {
            customer_id: Some(CustomerId::new()),
            ..InteractionFilter::default()
        })
        .await;
        assert!(reads(&customer, "ix_interaction_timeline"), "{customer:?}");
        let conversation = list_plan(InteractionFilter {
            conversation_id: Some(ConversationId::new()),
            channels: vec![connectors::Channel::Mastodon],
            ..InteractionFilter::default()
        })
        .await;
        assert!(
            reads(&conversation, "ix_interaction_conversation"),
            "{conversation:?}"
        );
        let customers: Vec<CustomerId> = (0..50).map(|_| CustomerId::new()).collect();
        let pages = windowed_query(
            SQLITE,
            WorkspaceId::new(),
            &customers,
            &InteractionFilter::default(),
            &first(5),
        )
        .unwrap();
        let pages = crate::domain::sqlite_plan(SQLITE.build(&pages)).await;
        assert!(reads(&pages, "ix_interaction_timeline"), "{pages:?}");
    }

    /// Reads that name no parent keep the workspace's indexes.
    #[tokio::test]
    async fn workspace_lists_keep_the_workspace_indexes_on_sqlite() {
        let all = list_plan(InteractionFilter::default()).await;
        assert!(reads(&all, "ix_interaction_occurred"), "{all:?}");
        let publications = list_plan(InteractionFilter {
            publications: true,
            ..InteractionFilter::default()
        })
        .await;
        assert!(
            reads(&publications, "ix_interaction_publications"),
            "{publications:?}"
        );
    }
}
