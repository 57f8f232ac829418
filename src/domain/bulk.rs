//! Bulk loads and whole-workspace figures for fixtures and benchmarks (`crate::demo`,
//! `crate::bench`): rows built elsewhere are written here, in one transaction with their
//! events, so the SQL stays in the domain. Nothing on the request path uses this module.

use sea_orm::{ConnectionTrait, EntityTrait, PaginatorTrait, QuerySelect, TransactionTrait};

use super::event::Event;
use crate::error::Result;
use entity::*;

/// Rows to load at once, parents before children in the order of the fields.
#[derive(Default)]
pub struct Rows {
    pub organizations: Vec<organization::ActiveModel>,
    pub tags: Vec<tag::ActiveModel>,
    pub customers: Vec<customer::ActiveModel>,
    pub points: Vec<contact_point::ActiveModel>,
    pub customer_tags: Vec<customer_tag::ActiveModel>,
    pub identities: Vec<identity::ActiveModel>,
    pub conversations: Vec<conversation::ActiveModel>,
    pub interactions: Vec<interaction::ActiveModel>,
    pub deals: Vec<deal::ActiveModel>,
    pub notes: Vec<note::ActiveModel>,
}

impl Rows {
    /// Inserts every row and the `*.created` events of customers, conversations,
    /// interactions and deals (so the indexer and other consumers see them), in one
    /// transaction: all or nothing. Every row must set every field (its event carries the
    /// whole row, as the events of the request path do); fails on a database error or a violated constraint.
    pub async fn insert(self, db: &impl TransactionTrait, workspace_id: WorkspaceId) -> Result<()> {
        let txn = db.begin().await?;
        insert_all(&txn, self.organizations).await?;
        insert_all(&txn, self.tags).await?;
        let customers = models(&self.customers)?;
        let conversations = models(&self.conversations)?;
        let interactions = models(&self.interactions)?;
        let deals = models(&self.deals)?;
        insert_all(&txn, self.customers).await?;
        insert_all(&txn, self.points).await?;
        insert_all(&txn, self.customer_tags).await?;
        insert_all(&txn, self.identities).await?;
        insert_all(&txn, self.conversations).await?;
        insert_all(&txn, self.interactions).await?;
        insert_all(&txn, self.deals).await?;
        insert_all(&txn, self.notes).await?;
        let events = (customers.iter().map(Event::CustomerCreated))
            .chain(conversations.iter().map(Event::ConversationCreated))
            .chain(interactions.iter().map(Event::InteractionCreated))
            .chain(deals.iter().map(Event::DealCreated));
        super::event::append_many(&txn, workspace_id, events).await?;
        txn.commit().await?;
        Ok(())
    }
}

/// Events for seeded rows: the id and one telling field (consumers re-read the row).
/// The rows as their events carry them; every field must be set.
fn models<A>(rows: &[A]) -> Result<Vec<<A::Entity as EntityTrait>::Model>>
where
    A: sea_orm::ActiveModelTrait + sea_orm::TryIntoModel<<A::Entity as EntityTrait>::Model> + Clone,
{
    rows.iter()
        .map(|row| Ok(row.clone().try_into_model()?))
        .collect()
}

async fn insert_all<A>(db: &impl ConnectionTrait, rows: Vec<A>) -> Result<()>
where
    A: sea_orm::ActiveModelTrait + Send + Clone,
    <A::Entity as EntityTrait>::Model: sea_orm::IntoActiveModel<A>,
{
    for chunk in rows.chunks(200) {
        <A::Entity as EntityTrait>::insert_many(chunk.to_vec())
            .exec_without_returning(db)
            .await?;
    }
    Ok(())
}

/// The interactions of the workspace's source `source_id`, in id order (a benchmark's
/// reference rows).
pub async fn interactions_of_source(
    db: &impl ConnectionTrait,
    workspace_id: entity::WorkspaceId,
    source_id: entity::SourceId,
) -> Result<Vec<interaction::Model>> {
    use sea_orm::{ColumnTrait, QueryFilter, QueryOrder};
    Ok(super::scoped::<interaction::Entity>(workspace_id)
        .filter(interaction::Column::SourceId.eq(source_id))
        .order_by_asc(interaction::Column::Id)
        .all(db)
        .await?)
}

/// Inserts `rows` as they are, nothing else (no events, no lookups), with multi-row
/// INSERTs in one transaction: the reference an ingestion benchmark measures the
/// pipeline against.
pub async fn insert_interactions_plain(
    db: &impl TransactionTrait,
    rows: Vec<interaction::Model>,
) -> Result<()> {
    use sea_orm::Iterable;
    // Below SQLite's 32,766 bound values a statement.
    let per_statement = 30_000 / interaction::Column::iter().count();
    let txn = db.begin().await?;
    let mut rows = rows
        .into_iter()
        .map(interaction::ActiveModel::from)
        .peekable();
    while rows.peek().is_some() {
        let chunk: Vec<_> = rows.by_ref().take(per_statement).collect();
        interaction::Entity::insert_many(chunk)
            .exec_without_returning(&txn)
            .await?;
    }
    txn.commit().await?;
    Ok(())
}

/// How many customers the workspace holds (merged ones included).
pub async fn customer_count(db: &impl ConnectionTrait, workspace_id: WorkspaceId) -> Result<u64> {
    Ok(super::scoped::<customer::Entity>(workspace_id)
        .count(db)
        .await?)
}

/// The ids of every customer of the workspace.
pub async fn customer_ids(
    db: &impl ConnectionTrait,
    workspace_id: WorkspaceId,
) -> Result<Vec<CustomerId>> {
    Ok(super::scoped::<customer::Entity>(workspace_id)
        .select_only()
        .column(customer::Column::Id)
        .into_tuple()
        .all(db)
        .await?)
}

/// Rows of a workspace, for a benchmark to check what it stored.
#[derive(Clone, Copy, Debug)]
pub struct Counts {
    pub interactions: u64,
    pub customers: u64,
    pub conversations: u64,
}

/// The PostgreSQL backend serving a connection of `db` (`None` on SQLite), so a benchmark
/// can read the server's CPU when it runs on the same machine.
pub async fn backend(db: &impl ConnectionTrait) -> Result<Option<Backend>> {
    if db.get_database_backend() != sea_orm::DatabaseBackend::Postgres {
        return Ok(None);
    }
    let row = db
        .query_one(sea_orm::Statement::from_string(
            sea_orm::DatabaseBackend::Postgres,
            "SELECT pg_backend_pid() AS pid, inet_client_port() AS port, \
             current_user::text AS role, current_database()::text AS database",
        ))
        .await?;
    let Some(row) = row else { return Ok(None) };
    let pid = u32::try_from(row.try_get::<i32>("", "pid")?).ok();
    let port = row.try_get::<Option<i32>>("", "port")?;
    let role = row.try_get::<String>("", "role")?;
    let database = row.try_get::<String>("", "database")?;
    Ok(pid.map(|pid| Backend {
        pid,
        client_port: port.and_then(|port| u16::try_from(port).ok()),
        role,
        database,
    }))
}

/// A PostgreSQL backend process, as the server names it.
#[derive(Clone, Debug)]
pub struct Backend {
    /// Its process id in the server's own view (another machine's, or a container's).
    pub pid: u32,
    /// The client's TCP port, which the backend's process title shows; `None` over a
    /// Unix socket (`[local]`).
    pub client_port: Option<u16>,
    /// The role and database it serves, which its title shows before the client.
    pub role: String,
    pub database: String,
}

/// Counts the interactions, customers and conversations of the workspace.
pub async fn counts(db: &impl ConnectionTrait, workspace_id: WorkspaceId) -> Result<Counts> {
    Ok(Counts {
        interactions: super::scoped::<interaction::Entity>(workspace_id)
            .count(db)
            .await?,
        customers: super::scoped::<customer::Entity>(workspace_id)
            .count(db)
            .await?,
        conversations: super::scoped::<conversation::Entity>(workspace_id)
            .count(db)
            .await?,
    })
}

/// Refreshes the planner's statistics after a bulk load, as a running database has them
/// (on PostgreSQL a fresh bulk load has none until autovacuum analyzes it).
pub async fn analyze(db: &impl ConnectionTrait) -> Result<()> {
    db.execute_unprepared("ANALYZE").await?;
    Ok(())
}
