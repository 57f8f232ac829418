//! The indexer: a consumer of the event log (`consumer_offset` row `search`). It reads the
//! events after its offset in `seq` order, works out which interactions and customers
//! they touch, reloads those rows from the database (the truth; an event's payload may be
//! stale) and upserts or deletes their documents, then stores its new offset.
//!
//! The offset is a visibility-safe watermark. On PostgreSQL, sequence numbers are taken
//! when a transaction inserts and become visible when it commits, so `seq` 41 can appear
//! after 42 has been read. The offset therefore only moves over a contiguous run of
//! seqs. A gap holds it back while another transaction that began before the event after
//! the gap is still open (`pg_stat_activity`), for at most [`GAP_GRACE`]; with none, the
//! gap is a rollback or a deleted workspace's events and is skipped. SQLite assigns seqs in
//! commit order, so its gaps are always skipped. Events after a gap are applied now and again
//! later: every write is an idempotent upsert or delete of the current row, so nothing is
//! lost and applying twice changes nothing.

use std::collections::BTreeSet;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use sea_orm::sea_query::{Expr, OnConflict};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseConnection, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect,
};
use tokio::sync::watch;
use uuid::Uuid;

use super::{sentiment_label, CustomerDoc, IndexName, InteractionDoc, SearchIndex, SearchStatus};
use crate::error::Result;
use entity::{consumer_offset, event};

/// The indexer's row in `consumer_offset`.
pub const CONSUMER: &str = "search";

/// How long a gap in `seq` may hold the offset back while a transaction that could own
/// the missing seqs is still running (a longer one is taken for a rollback).
pub const GAP_GRACE: chrono::Duration = chrono::Duration::minutes(5);

#[derive(Clone)]
pub struct Indexer {
    pub db: DatabaseConnection,
    pub search: Arc<dyn SearchIndex>,
    pub status: Arc<SearchStatus>,
    /// Events read per step.
    pub batch: u64,
}

/// What one step did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Step {
    pub events: usize,
    pub interactions: usize,
    pub customers: usize,
}

pub async fn offset(db: &impl ConnectionTrait) -> Result<i64> {
    Ok(consumer_offset::Entity::find_by_id(CONSUMER.to_owned())
        .one(db)
        .await?
        .map_or(0, |row| row.seq))
}

async fn store_offset(db: &impl ConnectionTrait, seq: i64) -> Result<()> {
    let row = consumer_offset::ActiveModel {
        consumer: sea_orm::ActiveValue::Set(CONSUMER.to_owned()),
        seq: sea_orm::ActiveValue::Set(seq),
        updated_at: sea_orm::ActiveValue::Set(crate::domain::now()),
    };
    consumer_offset::Entity::insert(row)
        .on_conflict(
            OnConflict::column(consumer_offset::Column::Consumer)
                .update_columns([
                    consumer_offset::Column::Seq,
                    consumer_offset::Column::UpdatedAt,
                ])
                .to_owned(),
        )
        .exec_without_returning(db)
        .await?;
    Ok(())
}

/// Moves the offset back to `seq` when it is past it (a rebuild started at `seq`).
pub async fn rewind_to(db: &impl ConnectionTrait, seq: i64) -> Result<()> {
    if offset(db).await? > seq {
        consumer_offset::Entity::update_many()
            .col_expr(consumer_offset::Column::Seq, Expr::value(seq))
            .filter(consumer_offset::Column::Consumer.eq(CONSUMER))
            .exec(db)
            .await?;
    }
    Ok(())
}

/// The highest `seq` written so far.
pub async fn head(db: &impl ConnectionTrait) -> Result<i64> {
    Ok(event::Entity::find()
        .order_by_desc(event::Column::Seq)
        .one(db)
        .await?
        .map_or(0, |row| row.seq))
}

/// Events behind: the head of the log minus the offset.
pub async fn lag(db: &impl ConnectionTrait) -> Result<i64> {
    Ok((head(db).await? - offset(db).await?).max(0))
}

impl Indexer {
    pub fn new(app: &crate::App) -> Indexer {
        Indexer {
            db: app.db.clone(),
            search: app.search.clone(),
            status: app.search_status.clone(),
            batch: 1_000,
        }
    }

    /// Indexes the next batch of events; `Ok` with zero events when caught up.
    pub async fn step(&self) -> Result<Step> {
        let from = offset(&self.db).await?;
        let events = event::Entity::find()
            .filter(event::Column::Seq.gt(from))
            .order_by_asc(event::Column::Seq)
            .limit(self.batch)
            .all(&self.db)
            .await?;
        if events.is_empty() {
            self.status.lag.store(0, Ordering::Relaxed);
            return Ok(Step::default());
        }
        let mut interactions = BTreeSet::new();
        let mut conversations = BTreeSet::new();
        let mut customers = BTreeSet::new();
        let mut erased = BTreeSet::new();
        let mut organizations = BTreeSet::new();
        let uuid = |value: &serde_json::Value| value.as_str().and_then(|s| Uuid::parse_str(s).ok());
        for event in &events {
            let (entity, action) = event.kind.split_once('.').unwrap_or((&event.kind, ""));
            match entity {
                "interaction" => {
                    interactions.insert(event.entity_id);
                    if let Some(customer) = uuid(&event.payload["customer_id"]) {
                        customers.insert(customer);
                    }
                }
                // A status change re-indexes the conversation's interactions (their
                // `status`); a new message in it does not need to.
                "conversation" if action == "status_changed" => {
                    conversations.insert(event.entity_id);
                }
                "customer" if action == "deleted" => {
                    erased.insert(event.entity_id);
                }
                "customer" => {
                    customers.insert(event.entity_id);
                }
                "organization" => {
                    organizations.insert(event.entity_id);
                }
                _ => {}
            }
        }
        if !conversations.is_empty() {
            let ids: Vec<Uuid> = entity::interaction::Entity::find()
                .select_only()
                .column(entity::interaction::Column::Id)
                .filter(entity::interaction::Column::ConversationId.is_in(conversations))
                .into_tuple()
                .all(&self.db)
                .await?;
            interactions.extend(ids);
        }
        if !organizations.is_empty() {
            let ids: Vec<Uuid> = entity::customer::Entity::find()
                .select_only()
                .column(entity::customer::Column::Id)
                .filter(entity::customer::Column::OrganizationId.is_in(organizations))
                .into_tuple()
                .all(&self.db)
                .await?;
            customers.extend(ids);
        }
        let erased: Vec<Uuid> = erased.into_iter().collect();
        customers.retain(|id| !erased.contains(id));
        if !erased.is_empty() {
            self.search.delete_customers(erased.clone()).await?;
            self.search.delete_interactions_of(erased).await?;
        }
        let interactions: Vec<Uuid> = interactions.into_iter().collect();
        let customers: Vec<Uuid> = customers.into_iter().collect();
        let step = Step {
            events: events.len(),
            interactions: interactions.len(),
            customers: customers.len(),
        };
        for chunk in interactions.chunks(500) {
            let docs = interaction_docs(&self.db, chunk).await?;
            let found: BTreeSet<Uuid> = docs.iter().map(|doc| doc.id).collect();
            let gone: Vec<Uuid> = chunk
                .iter()
                .filter(|id| !found.contains(id))
                .copied()
                .collect();
            self.search.upsert_interactions(docs).await?;
            self.search.delete_interactions(gone).await?;
        }
        for chunk in customers.chunks(500) {
            let docs = customer_docs(&self.db, chunk).await?;
            let found: BTreeSet<Uuid> = docs.iter().map(|doc| doc.id).collect();
            let gone: Vec<Uuid> = chunk
                .iter()
                .filter(|id| !found.contains(id))
                .copied()
                .collect();
            self.search.upsert_customers(docs).await?;
            if !gone.is_empty() {
                self.search.delete_customers(gone.clone()).await?;
                self.search.delete_interactions_of(gone).await?;
            }
        }
        crate::failpoint::failpoint("indexer.after_write");
        let watermark = self.watermark(from, &events).await?;
        if watermark > from {
            store_offset(&self.db, watermark).await?;
        }
        self.status
            .indexed
            .fetch_add(events.len() as u64, Ordering::Relaxed);
        self.status
            .lag
            .store(lag(&self.db).await?, Ordering::Relaxed);
        Ok(step)
    }

    /// Steps until no event is left (tests, benchmarks); waits while a gap is held open
    /// by a transaction still running.
    pub async fn catch_up(&self) -> Result<usize> {
        let mut total = 0;
        let mut stalled = 0;
        loop {
            let before = offset(&self.db).await?;
            let step = self.step().await?;
            if step.events == 0 {
                return Ok(total);
            }
            total += step.events;
            if offset(&self.db).await? == before {
                stalled += 1;
                if stalled > 300 {
                    return Ok(total);
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            } else {
                stalled = 0;
            }
        }
    }

    /// Runs until `shutdown`: steps while there is work, polls when caught up, and backs
    /// off (1 s doubling to 30 s) while the search backend or the database fails, with
    /// the error in [`SearchStatus::last_error`].
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let mut backoff = Duration::from_secs(1);
        tracing::info!(backend = self.search.backend(), "indexer started");
        loop {
            if *shutdown.borrow() {
                break;
            }
            let pause = match self.step().await {
                Ok(step) => {
                    *self.status.last_error.lock().expect("never poisoned") = None;
                    backoff = Duration::from_secs(1);
                    if step.events > 0 && self.status.lag.load(Ordering::Relaxed) > 0 {
                        Duration::ZERO
                    } else {
                        Duration::from_millis(200)
                    }
                }
                Err(err) => {
                    tracing::warn!(error = %err, retry_in_secs = backoff.as_secs(), "indexing failed");
                    *self.status.last_error.lock().expect("never poisoned") = Some(err.to_string());
                    if let Ok(lag) = lag(&self.db).await {
                        self.status.lag.store(lag, Ordering::Relaxed);
                    }
                    let pause = backoff;
                    backoff = (backoff * 2).min(Duration::from_secs(30));
                    pause
                }
            };
            tokio::select! {
                () = tokio::time::sleep(pause) => {}
                _ = shutdown.changed() => {}
            }
        }
        tracing::info!("indexer stopped");
    }
}

impl Indexer {
    /// The new offset after reading `events` (ascending) from `from`: the end of the
    /// contiguous run, going past gaps that no open transaction can still fill.
    async fn watermark(&self, from: i64, events: &[event::Model]) -> Result<i64> {
        let mut mark = from;
        for event in events {
            if event.seq != mark + 1 && self.gap_may_fill(event.created_at).await? {
                break;
            }
            mark = event.seq;
        }
        Ok(mark)
    }

    /// Whether a transaction that began before `at` is still open and has written, so it
    /// may commit an event with a seq below the one written at `at`.
    async fn gap_may_fill(&self, at: chrono::DateTime<chrono::Utc>) -> Result<bool> {
        if !crate::db::is_postgres(&self.db) || at < crate::domain::now() - GAP_GRACE {
            return Ok(false);
        }
        let row = self
            .db
            .query_one(sea_orm::Statement::from_sql_and_values(
                sea_orm::DatabaseBackend::Postgres,
                "SELECT count(*) AS open FROM pg_stat_activity \
                 WHERE datname = current_database() AND pid <> pg_backend_pid() \
                   AND backend_xid IS NOT NULL AND xact_start <= $1",
                [at.into()],
            ))
            .await?;
        let open: i64 = row
            .map(|row| row.try_get("", "open"))
            .transpose()?
            .unwrap_or(0);
        Ok(open > 0)
    }
}

/// The documents of the interactions `ids` that exist.
pub async fn interaction_docs(
    db: &impl ConnectionTrait,
    ids: &[Uuid],
) -> Result<Vec<InteractionDoc>> {
    use entity::interaction;
    let rows = interaction::Entity::find()
        .filter(interaction::Column::Id.is_in(ids.to_vec()))
        .all(db)
        .await?;
    use entity::{conversation, identity};
    let conversation_ids: BTreeSet<Uuid> = rows.iter().filter_map(|r| r.conversation_id).collect();
    let identity_ids: BTreeSet<Uuid> = rows.iter().filter_map(|r| r.identity_id).collect();
    let statuses: std::collections::HashMap<Uuid, String> = if conversation_ids.is_empty() {
        Default::default()
    } else {
        conversation::Entity::find()
            .filter(conversation::Column::Id.is_in(conversation_ids))
            .all(db)
            .await?
            .into_iter()
            .map(|c| (c.id, c.status))
            .collect()
    };
    let authors: std::collections::HashMap<Uuid, String> = if identity_ids.is_empty() {
        Default::default()
    } else {
        identity::Entity::find()
            .filter(identity::Column::Id.is_in(identity_ids))
            .all(db)
            .await?
            .into_iter()
            .map(|i| {
                let parts: Vec<String> = [i.display_name, i.handle].into_iter().flatten().collect();
                (i.id, parts.join(" "))
            })
            .collect()
    };
    Ok(rows
        .into_iter()
        .map(|row| InteractionDoc {
            id: row.id,
            workspace_id: row.workspace_id,
            customer_id: row.customer_id,
            conversation_id: row.conversation_id,
            status: row
                .conversation_id
                .and_then(|c| statuses.get(&c).cloned())
                .unwrap_or_else(|| "none".to_owned()),
            sentiment_label: sentiment_label(row.sentiment).to_owned(),
            sentiment: row.sentiment,
            language: row
                .language
                .as_deref()
                .map(|l| l.split(['-', '_']).next().unwrap_or(l).to_lowercase())
                .unwrap_or_else(|| "und".to_owned()),
            occurred_at: row.occurred_at.timestamp_millis(),
            subject: row.subject.unwrap_or_default(),
            author: row
                .identity_id
                .and_then(|i| authors.get(&i).cloned())
                .unwrap_or_default(),
            text: row.text,
            channel: row.channel,
            kind: row.kind,
            direction: row.direction,
        })
        .collect())
}

/// The documents of the customers `ids` that exist (merged ones are left out).
pub async fn customer_docs(db: &impl ConnectionTrait, ids: &[Uuid]) -> Result<Vec<CustomerDoc>> {
    let rows = entity::customer::Entity::find()
        .filter(entity::customer::Column::Id.is_in(ids.to_vec()))
        .filter(entity::customer::Column::MergedInto.is_null())
        .all(db)
        .await?;
    use entity::{contact_point, customer_tag, identity, organization, tag};
    use std::collections::HashMap;
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<Uuid> = rows.iter().map(|r| r.id).collect();
    let mut points: HashMap<Uuid, Vec<contact_point::Model>> = HashMap::new();
    for point in contact_point::Entity::find()
        .filter(contact_point::Column::CustomerId.is_in(ids.clone()))
        .all(db)
        .await?
    {
        points.entry(point.customer_id).or_default().push(point);
    }
    let mut handles: HashMap<Uuid, Vec<String>> = HashMap::new();
    for identity in identity::Entity::find()
        .filter(identity::Column::CustomerId.is_in(ids.clone()))
        .all(db)
        .await?
    {
        let entry = handles.entry(identity.customer_id).or_default();
        entry.extend(identity.handle);
        entry.extend(identity.display_name);
    }
    let links = customer_tag::Entity::find()
        .filter(customer_tag::Column::CustomerId.is_in(ids.clone()))
        .all(db)
        .await?;
    let tag_names: HashMap<Uuid, String> = if links.is_empty() {
        HashMap::new()
    } else {
        tag::Entity::find()
            .filter(tag::Column::Id.is_in(links.iter().map(|l| l.tag_id).collect::<Vec<_>>()))
            .all(db)
            .await?
            .into_iter()
            .map(|t| (t.id, t.name))
            .collect()
    };
    let mut tags: HashMap<Uuid, Vec<String>> = HashMap::new();
    for link in links {
        if let Some(name) = tag_names.get(&link.tag_id) {
            tags.entry(link.customer_id).or_default().push(name.clone());
        }
    }
    let org_ids: Vec<Uuid> = rows.iter().filter_map(|r| r.organization_id).collect();
    let orgs: HashMap<Uuid, String> = if org_ids.is_empty() {
        HashMap::new()
    } else {
        organization::Entity::find()
            .filter(organization::Column::Id.is_in(org_ids))
            .all(db)
            .await?
            .into_iter()
            .map(|o| (o.id, o.name))
            .collect()
    };
    Ok(rows
        .into_iter()
        .map(|row| {
            let points = points.remove(&row.id).unwrap_or_default();
            let of = |kind: &str| {
                points
                    .iter()
                    .filter(|p| p.kind == kind)
                    .map(|p| p.value.clone())
                    .collect::<Vec<_>>()
            };
            let mut phones = Vec::new();
            for phone in points.iter().filter(|p| p.kind == "phone") {
                let digits: String = phone
                    .normalized
                    .chars()
                    .filter(char::is_ascii_digit)
                    .collect();
                if digits.len() > 9 {
                    phones.push(digits[digits.len() - 9..].to_owned());
                }
                phones.push(digits);
            }
            let names = [
                Some(row.display_name.clone()),
                row.given_name.clone(),
                row.family_name.clone(),
            ]
            .into_iter()
            .flatten()
            .collect();
            CustomerDoc {
                id: row.id,
                workspace_id: row.workspace_id,
                names,
                emails: of("email"),
                phones,
                handles: handles.remove(&row.id).unwrap_or_default(),
                organization: row
                    .organization_id
                    .and_then(|o| orgs.get(&o).cloned())
                    .unwrap_or_default(),
                tags: tags.remove(&row.id).unwrap_or_default(),
                last_seen_at: row.last_seen_at.timestamp_millis(),
            }
        })
        .collect())
}

/// Rows per page of a rebuild.
const REBUILD_PAGE: u64 = 2_000;

/// The ids of one page of the rows `index` holds (not merged customers), after `after`.
async fn page_ids(
    db: &impl ConnectionTrait,
    index: IndexName,
    after: Option<Uuid>,
) -> Result<Vec<Uuid>> {
    use sea_orm::Condition;
    let ids = match index {
        IndexName::Interactions => {
            use entity::interaction::{Column, Entity};
            Entity::find()
                .select_only()
                .column(Column::Id)
                .filter(Condition::all().add_option(after.map(|after| Column::Id.gt(after))))
                .order_by_asc(Column::Id)
                .limit(REBUILD_PAGE)
                .into_tuple()
                .all(db)
                .await?
        }
        IndexName::Customers => {
            use entity::customer::{Column, Entity};
            Entity::find()
                .select_only()
                .column(Column::Id)
                .filter(Column::MergedInto.is_null())
                .filter(Condition::all().add_option(after.map(|after| Column::Id.gt(after))))
                .order_by_asc(Column::Id)
                .limit(REBUILD_PAGE)
                .into_tuple()
                .all(db)
                .await?
        }
    };
    Ok(ids)
}

/// How many rows `index` holds.
async fn rows_of(db: &impl ConnectionTrait, index: IndexName) -> Result<u64> {
    use sea_orm::PaginatorTrait;
    Ok(match index {
        IndexName::Interactions => entity::interaction::Entity::find().count(db).await?,
        IndexName::Customers => {
            entity::customer::Entity::find()
                .filter(entity::customer::Column::MergedInto.is_null())
                .count(db)
                .await?
        }
    })
}

/// Rebuilds `index` (or both) from the database aside and swaps it in, reporting
/// `(done, total)` as it goes; events written meanwhile are applied again afterwards.
pub async fn reindex(
    db: &DatabaseConnection,
    search: &Arc<dyn SearchIndex>,
    only: Option<IndexName>,
    progress: &(dyn Fn(IndexName, u64, u64) + Sync),
) -> Result<Vec<(IndexName, u64)>> {
    let started_at = head(db).await?;
    let mut done = Vec::new();
    for index in IndexName::ALL {
        if only.is_some_and(|only| only != index) {
            continue;
        }
        let mut rebuild = search.begin_rebuild(index).await?;
        let total = rows_of(db, index).await?;
        let mut count = 0u64;
        let mut after = None;
        loop {
            let ids = page_ids(db, index, after).await?;
            let Some(last) = ids.last() else { break };
            after = Some(*last);
            count += ids.len() as u64;
            match index {
                IndexName::Interactions => {
                    rebuild
                        .add_interactions(interaction_docs(db, &ids).await?)
                        .await?
                }
                IndexName::Customers => {
                    rebuild
                        .add_customers(customer_docs(db, &ids).await?)
                        .await?
                }
            }
            progress(index, count, total);
        }
        rebuild.finish().await?;
        done.push((index, count));
    }
    rewind_to(db, started_at).await?;
    Ok(done)
}
