//! The workspace's own posts are not a customer's: `interaction.customer_id` and
//! `conversation.customer_id` may be NULL. An item our own account wrote that answers
//! nothing stored is a publication (no customer, no identity); its thread is a
//! conversation without a customer, which the answers of many customers join. A partial
//! index lists a workspace's publications newest first.
//!
//! SQLite cannot drop a NOT NULL constraint with ALTER TABLE. Its documentation
//! ("Making Other Kinds Of Table Schema Changes", sqlite.org/lang_altertable.html)
//! gives, for removing a NOT NULL constraint (which changes nothing stored on disk),
//! rewriting the table's `CREATE TABLE` text in `sqlite_schema` under
//! `writable_schema` and bumping `schema_version` so every connection reloads it; the
//! 12-step rebuild would copy both tables and drop the originals, which with foreign
//! keys on cascades into every row that references them. The rewrite is checked: the
//! migration fails unless each table's text changed exactly once and the schema passes
//! `PRAGMA integrity_check` afterwards.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::{ConnectionTrait, DatabaseBackend, Statement, TransactionTrait};

#[derive(DeriveMigrationName)]
pub struct Migration;

const TABLES: [&str; 2] = ["interaction", "conversation"];
const NOT_NULL: &str = "\"customer_id\" uuid_text NOT NULL";
const NULLABLE: &str = "\"customer_id\" uuid_text";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        match manager.get_database_backend() {
            DatabaseBackend::Postgres => {
                for table in TABLES {
                    db.execute_unprepared(&format!(
                        "ALTER TABLE {table} ALTER COLUMN customer_id DROP NOT NULL"
                    ))
                    .await?;
                }
            }
            _ => {
                // One connection for the pragmas and the rewrite: `db` may be a pool.
                let txn = db.begin().await?;
                rewrite_sqlite(&txn, NOT_NULL, NULLABLE).await?;
                txn.commit().await?;
            }
        }
        db.execute_unprepared(
            "CREATE INDEX ix_interaction_publications \
             ON interaction (workspace_id, occurred_at, id) WHERE customer_id IS NULL",
        )
        .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        db.execute_unprepared("DROP INDEX IF EXISTS ix_interaction_publications")
            .await?;
        // Publications cannot be given a customer back: going down removes them.
        db.execute_unprepared("DELETE FROM interaction WHERE customer_id IS NULL")
            .await?;
        db.execute_unprepared("DELETE FROM conversation WHERE customer_id IS NULL")
            .await?;
        match manager.get_database_backend() {
            DatabaseBackend::Postgres => {
                for table in TABLES {
                    db.execute_unprepared(&format!(
                        "ALTER TABLE {table} ALTER COLUMN customer_id SET NOT NULL"
                    ))
                    .await?;
                }
                Ok(())
            }
            _ => {
                let txn = db.begin().await?;
                rewrite_sqlite(&txn, NULLABLE, NOT_NULL).await?;
                txn.commit().await
            }
        }
    }
}

/// Replaces `from` by `to` in the stored `CREATE TABLE` text of each of [`TABLES`].
async fn rewrite_sqlite<C: ConnectionTrait>(db: &C, from: &str, to: &str) -> Result<(), DbErr> {
    let sqlite = DatabaseBackend::Sqlite;
    let version: i64 = db
        .query_one(Statement::from_string(sqlite, "PRAGMA schema_version"))
        .await?
        .ok_or_else(|| DbErr::Migration("no schema_version".into()))?
        .try_get_by_index(0)?;
    db.execute_unprepared("PRAGMA writable_schema = ON").await?;
    for table in TABLES {
        let sql: String = db
            .query_one(Statement::from_sql_and_values(
                sqlite,
                "SELECT sql FROM sqlite_schema WHERE type = 'table' AND name = ?",
                [table.into()],
            ))
            .await?
            .ok_or_else(|| DbErr::Migration(format!("no table {table}")))?
            .try_get_by_index(0)?;
        // `to` may contain `from` (going down): count what is to be replaced exactly.
        let found = sql
            .match_indices(from)
            .filter(|(at, _)| !sql[at + from.len()..].starts_with(" NOT NULL"));
        if found.count() != 1 {
            db.execute_unprepared("PRAGMA writable_schema = OFF")
                .await?;
            return Err(DbErr::Migration(format!(
                "{table}: expected one `{from}` in its schema, found another shape"
            )));
        }
        let rewritten = replace_column(&sql, from, to);
        db.execute(Statement::from_sql_and_values(
            sqlite,
            "UPDATE sqlite_schema SET sql = ? WHERE type = 'table' AND name = ?",
            [rewritten.into(), table.into()],
        ))
        .await?;
    }
    db.execute_unprepared(&format!("PRAGMA schema_version = {}", version + 1))
        .await?;
    db.execute_unprepared("PRAGMA writable_schema = OFF")
        .await?;
    let check: String = db
        .query_one(Statement::from_string(sqlite, "PRAGMA integrity_check"))
        .await?
        .ok_or_else(|| DbErr::Migration("no integrity_check answer".into()))?
        .try_get_by_index(0)?;
    if check != "ok" {
        return Err(DbErr::Migration(format!(
            "the rewritten schema fails integrity_check: {check}"
        )));
    }
    Ok(())
}

/// `sql` with its one `from` column definition (not followed by a further NOT NULL)
/// replaced by `to`.
fn replace_column(sql: &str, from: &str, to: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut rest = sql;
    while let Some(at) = rest.find(from) {
        let after = &rest[at + from.len()..];
        out.push_str(&rest[..at]);
        if after.starts_with(" NOT NULL") {
            out.push_str(from);
        } else {
            out.push_str(to);
        }
        rest = after;
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_customer_column_changes() {
        let sql = "CREATE TABLE \"interaction\" ( \"id\" uuid_text NOT NULL PRIMARY KEY, \
                   \"customer_id\" uuid_text NOT NULL, \"identity_id\" uuid_text NULL )";
        let up = replace_column(sql, NOT_NULL, NULLABLE);
        assert_eq!(
            up,
            "CREATE TABLE \"interaction\" ( \"id\" uuid_text NOT NULL PRIMARY KEY, \
             \"customer_id\" uuid_text, \"identity_id\" uuid_text NULL )"
        );
        assert_eq!(replace_column(&up, NULLABLE, NOT_NULL), sql);
    }
}
