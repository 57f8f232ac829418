//! On PostgreSQL, every insert into the event log notifies the channel `rapport_events`
//! when its transaction commits, so subscriptions in every `rapport serve` process over
//! the database wake at once instead of polling. The notification carries nothing: the
//! log stays the truth, and readers read it. SQLite has one writing process, whose
//! readers poll; nothing to do there.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::DatabaseBackend;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if manager.get_database_backend() != DatabaseBackend::Postgres {
            return Ok(());
        }
        let db = manager.get_connection();
        // One notification per statement, and PostgreSQL folds equal notifications of a
        // transaction into one: a batch of a thousand events wakes readers once.
        db.execute_unprepared(
            "CREATE OR REPLACE FUNCTION rapport_event_notify() RETURNS trigger \
             LANGUAGE plpgsql AS $$ BEGIN PERFORM pg_notify('rapport_events', ''); RETURN NULL; END $$",
        )
        .await?;
        db.execute_unprepared(
            "CREATE TRIGGER event_notify AFTER INSERT ON event \
             FOR EACH STATEMENT EXECUTE FUNCTION rapport_event_notify()",
        )
        .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if manager.get_database_backend() != DatabaseBackend::Postgres {
            return Ok(());
        }
        let db = manager.get_connection();
        db.execute_unprepared("DROP TRIGGER IF EXISTS event_notify ON event")
            .await?;
        db.execute_unprepared("DROP FUNCTION IF EXISTS rapport_event_notify()")
            .await?;
        Ok(())
    }
}
