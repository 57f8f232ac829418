//! Bulk loads and whole-workspace figures for fixtures and benchmarks (`crate::demo`,
//! `crate::bench`): rows built elsewhere are written here, in one transaction with their
//! events, so the SQL stays in the domain. Nothing on the request path uses this module.

use sea_orm::{ConnectionTrait, EntityTrait, PaginatorTrait, QuerySelect, TransactionTrait};

use crate::error::Result;
use crate::ids::TypedId;
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
    /// transaction: all or nothing. Every row must set its id (and the field its event
    /// summarises); fails on a database error or a violated constraint.
    pub async fn insert(self, db: &impl TransactionTrait, workspace_id: WorkspaceId) -> Result<()> {
        let txn = db.begin().await?;
        insert_all(&txn, self.organizations).await?;
        insert_all(&txn, self.tags).await?;
        let customer_events = events(&self.customers, |c| {
            (c.id.clone().unwrap(), c.display_name.clone().unwrap())
        });
        insert_all(&txn, self.customers).await?;
        insert_all(&txn, self.points).await?;
        insert_all(&txn, self.customer_tags).await?;
        insert_all(&txn, self.identities).await?;
        let conversation_events = events(&self.conversations, |c| {
            (c.id.clone().unwrap(), c.status.clone().unwrap())
        });
        insert_all(&txn, self.conversations).await?;
        let interaction_events = events(&self.interactions, |i| {
            (i.id.clone().unwrap(), i.channel.clone().unwrap())
        });
        insert_all(&txn, self.interactions).await?;
        let deal_events = events(&self.deals, |d| {
            (d.id.clone().unwrap(), d.title.clone().unwrap())
        });
        insert_all(&txn, self.deals).await?;
        insert_all(&txn, self.notes).await?;
        use super::event::{append_many, EventKind};
        append_many(
            &txn,
            workspace_id,
            EventKind::CustomerCreated,
            customer_events,
        )
        .await?;
        append_many(
            &txn,
            workspace_id,
            EventKind::ConversationCreated,
            conversation_events,
        )
        .await?;
        append_many(
            &txn,
            workspace_id,
            EventKind::InteractionCreated,
            interaction_events,
        )
        .await?;
        append_many(&txn, workspace_id, EventKind::DealCreated, deal_events).await?;
        txn.commit().await?;
        Ok(())
    }
}

/// Events for seeded rows: the id and one telling field (consumers re-read the row).
fn events<A, I: TypedId + serde::Serialize>(
    rows: &[A],
    key: impl Fn(&A) -> (I, String),
) -> Vec<(I, serde_json::Value)> {
    rows.iter()
        .map(key)
        .map(|(id, summary)| {
            (
                id,
                serde_json::json!({ "id": id, "summary": summary, "seeded": true }),
            )
        })
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
