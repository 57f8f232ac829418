//! A partial index over the event log's service-level changes (`sla_rule.set`,
//! `sla_rule.deleted`, `business_hours.set`): service metrics read a workspace's few
//! changes on every computation, and without it that read walked the workspace's whole
//! log. Partial, so ingestion's inserts (none of these kinds) only test the predicate.
//! The query repeats the predicate with the same literals, which SQLite needs to use it.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .get_connection()
            .execute_unprepared(
                "CREATE INDEX ix_event_levels ON event (workspace_id, seq) \
                 WHERE kind IN ('sla_rule.set', 'sla_rule.deleted', 'business_hours.set')",
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .get_connection()
            .execute_unprepared("DROP INDEX IF EXISTS ix_event_levels")
            .await?;
        Ok(())
    }
}
