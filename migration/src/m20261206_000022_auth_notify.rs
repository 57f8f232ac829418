//! On PostgreSQL, a change to what authenticates a request (a key revoked or deleted, a
//! user's role or active flag changed or the user deleted, a workspace deleted) notifies
//! the channel `rapport_auth` when its transaction commits, so every `rapport serve`
//! process over the database forgets the callers it keeps by key (`domain::callers`). The
//! notification carries nothing: the tables stay the truth, and processes read them again.
//! One notification per statement, and PostgreSQL folds equal notifications of a
//! transaction into one. The triggers fire `ALWAYS`, also where a session replicates
//! (`session_replication_role = replica`: `pg_restore --disable-triggers`, logical
//! replication's apply worker), which skips ordinary triggers: a change that did not
//! notify would stay unseen until the cached entry's age ran out. The key's trigger fires
//! only on the columns authentication reads, so a future write of `last_used_at` would
//! not empty every cache. SQLite keeps no such cache: nothing to do there.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::DatabaseBackend;

#[derive(DeriveMigrationName)]
pub struct Migration;

/// The trigger of each table, and the changes it fires on.
const TRIGGERS: [(&str, &str, &str); 3] = [
    (
        "api_key_auth_notify",
        "api_key",
        "UPDATE OF revoked_at, role, user_id, workspace_id, key_hash, name, \
         trusted_documents_only OR DELETE OR TRUNCATE",
    ),
    (
        "user_auth_notify",
        "\"user\"",
        "UPDATE OF role, active, workspace_id OR DELETE OR TRUNCATE",
    ),
    ("workspace_auth_notify", "workspace", "DELETE OR TRUNCATE"),
];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if manager.get_database_backend() != DatabaseBackend::Postgres {
            return Ok(());
        }
        let db = manager.get_connection();
        db.execute_unprepared(
            "CREATE OR REPLACE FUNCTION rapport_auth_notify() RETURNS trigger \
             LANGUAGE plpgsql AS $$ BEGIN PERFORM pg_notify('rapport_auth', ''); RETURN NULL; END $$",
        )
        .await?;
        for (name, table, events) in TRIGGERS {
            db.execute_unprepared(&format!(
                "CREATE TRIGGER {name} AFTER {events} ON {table} \
                 FOR EACH STATEMENT EXECUTE FUNCTION rapport_auth_notify()"
            ))
            .await?;
            db.execute_unprepared(&format!("ALTER TABLE {table} ENABLE ALWAYS TRIGGER {name}"))
                .await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if manager.get_database_backend() != DatabaseBackend::Postgres {
            return Ok(());
        }
        let db = manager.get_connection();
        for (name, table, _) in TRIGGERS {
            db.execute_unprepared(&format!("DROP TRIGGER IF EXISTS {name} ON {table}"))
                .await?;
        }
        db.execute_unprepared("DROP FUNCTION IF EXISTS rapport_auth_notify()")
            .await?;
        Ok(())
    }
}
