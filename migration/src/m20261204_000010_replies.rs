//! Replies as work: the delivery state of a reply sent from Rapport (written before it is
//! sent, so a crash or a refusal leaves a row to retry instead of nothing), internal notes
//! on a conversation, and the workspace's saved replies.
//!
//! `interaction.idempotency_key` is UNIQUE per workspace: the reply row is inserted with
//! `ON CONFLICT DO NOTHING` before anything goes out, so a second call with the same key
//! finds the first row and sends nothing. NULL for every other interaction (both
//! databases let NULLs repeat in a UNIQUE index). A conversation note is a `note` row of
//! the conversation's customer with `conversation_id` set.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::{ConnectionTrait, DatabaseBackend};

#[derive(DeriveMigrationName)]
pub struct Migration;

fn id(name: &str) -> Alias {
    Alias::new(name)
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // One column per statement: SQLite's ALTER TABLE adds one at a time.
        for column in ["delivery_status", "delivery_error", "idempotency_key"] {
            manager
                .alter_table(
                    Table::alter()
                        .table(id("interaction"))
                        .add_column(ColumnDef::new(id(column)).text().null())
                        .to_owned(),
                )
                .await?;
        }
        manager
            .alter_table(
                Table::alter()
                    .table(id("interaction"))
                    .add_column(
                        ColumnDef::new(id("delivery_attempted_at"))
                            .timestamp_with_time_zone()
                            .null(),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("uq_interaction_idempotency_key")
                    .table(id("interaction"))
                    .col(id("workspace_id"))
                    .col(id("idempotency_key"))
                    .unique()
                    .to_owned(),
            )
            .await?;
        // SQLite's ALTER TABLE cannot add a foreign key with the query builder, but accepts
        // one on the column it adds.
        let db = manager.get_connection();
        let uuid = match db.get_database_backend() {
            DatabaseBackend::Sqlite => "uuid_text",
            _ => "uuid",
        };
        db.execute_unprepared(&format!(
            "ALTER TABLE \"note\" ADD COLUMN \"conversation_id\" {uuid} NULL \
             REFERENCES \"conversation\" (\"id\") ON DELETE CASCADE"
        ))
        .await?;
        manager
            .create_index(
                Index::create()
                    .name("ix_note_conversation")
                    .table(id("note"))
                    .col(id("conversation_id"))
                    .col(id("created_at"))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(id("saved_reply"))
                    .col(ColumnDef::new(id("id")).uuid().not_null().primary_key())
                    .col(ColumnDef::new(id("workspace_id")).uuid().not_null())
                    .col(ColumnDef::new(id("name")).text().not_null())
                    .col(ColumnDef::new(id("body")).text().not_null())
                    .col(ColumnDef::new(id("created_by")).text().not_null())
                    .col(
                        ColumnDef::new(id("created_at"))
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(id("updated_at"))
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_saved_reply_workspace_id")
                            .from(id("saved_reply"), id("workspace_id"))
                            .to(id("workspace"), id("id"))
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("uq_saved_reply_name")
                    .table(id("saved_reply"))
                    .col(id("workspace_id"))
                    .col(id("name"))
                    .unique()
                    .to_owned(),
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(id("saved_reply")).to_owned())
            .await?;
        for (table, name) in [
            ("note", "ix_note_conversation"),
            ("interaction", "uq_interaction_idempotency_key"),
        ] {
            manager
                .drop_index(Index::drop().name(name).table(id(table)).to_owned())
                .await?;
        }
        for (table, column) in [
            ("note", "conversation_id"),
            ("interaction", "delivery_attempted_at"),
            ("interaction", "idempotency_key"),
            ("interaction", "delivery_error"),
            ("interaction", "delivery_status"),
        ] {
            manager
                .alter_table(
                    Table::alter()
                        .table(id(table))
                        .drop_column(id(column))
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }
}
