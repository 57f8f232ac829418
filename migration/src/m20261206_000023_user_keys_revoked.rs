//! A user's keys are revoked when the user row is deleted. `api_key.user_id` is `ON DELETE
//! SET NULL`, which alone would turn the deleted user's keys into keys of nobody acting at
//! the key's own role — above the role the user was capped to (an admin key of a user
//! demoted to viewer would authenticate as admin again). Rapport deletes users only with
//! their workspace (which deletes the keys too); this holds for SQL by hand and for any
//! later path. The keys stay listed, revoked at the moment of the deletion.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::DatabaseBackend;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        match manager.get_database_backend() {
            DatabaseBackend::Postgres => {
                db.execute_unprepared(
                    "CREATE OR REPLACE FUNCTION rapport_user_keys_revoked() RETURNS trigger \
                     LANGUAGE plpgsql AS $$ BEGIN \
                     UPDATE api_key SET revoked_at = now() \
                     WHERE user_id = OLD.id AND revoked_at IS NULL; \
                     RETURN OLD; END $$",
                )
                .await?;
                db.execute_unprepared(
                    "CREATE TRIGGER user_keys_revoked BEFORE DELETE ON \"user\" \
                     FOR EACH ROW EXECUTE FUNCTION rapport_user_keys_revoked()",
                )
                .await?;
                db.execute_unprepared(
                    "ALTER TABLE \"user\" ENABLE ALWAYS TRIGGER user_keys_revoked",
                )
                .await?;
            }
            _ => {
                // Timestamps as the application writes them (RFC 3339, UTC).
                db.execute_unprepared(
                    "CREATE TRIGGER user_keys_revoked BEFORE DELETE ON \"user\" \
                     FOR EACH ROW BEGIN \
                     UPDATE api_key SET revoked_at = strftime('%Y-%m-%dT%H:%M:%f', 'now') || '+00:00' \
                     WHERE user_id = OLD.id AND revoked_at IS NULL; END",
                )
                .await?;
            }
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        if manager.get_database_backend() == DatabaseBackend::Postgres {
            db.execute_unprepared("DROP TRIGGER IF EXISTS user_keys_revoked ON \"user\"")
                .await?;
            db.execute_unprepared("DROP FUNCTION IF EXISTS rapport_user_keys_revoked()")
                .await?;
        } else {
            db.execute_unprepared("DROP TRIGGER IF EXISTS user_keys_revoked")
                .await?;
        }
        Ok(())
    }
}
