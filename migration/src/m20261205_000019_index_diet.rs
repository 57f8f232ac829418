//! Fewer index entries a message writes (issue 11: ingestion at database speed).
//!
//! - The workspace-leading parent indexes of `m20261123_000003` go: each duplicated a
//!   parent index (`ix_interaction_timeline`, `ix_interaction_conversation`,
//!   `ix_conversation_customer`) behind the workspace column. They were added because
//!   SQLite, without planner statistics, read a workspace index in the order asked for
//!   rather than a parent's; the reads that name a parent now keep the workspace term off
//!   the indexes on SQLite (`domain::scoped_under`), and PostgreSQL plans them with its
//!   statistics. The parent indexes stay: the foreign keys' ON DELETE actions look rows up
//!   by the parent column alone.
//! - The assignee and snooze indexes become partial: a new conversation has neither, and
//!   every query they serve compares the column (`assignee_id = ?`, `snoozed_until <= ?`),
//!   which implies it is not null, so both databases still use them.
//!
//! A message of a new conversation wrote 10 interaction and 8 conversation index entries;
//! now 8 and 5.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

const DROPPED: [&str; 5] = [
    "ix_interaction_customer_time",
    "ix_interaction_conversation_time",
    "ix_conversation_customer_time",
    "ix_conversation_assignee",
    "ix_conversation_snoozed",
];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // One script, so one connection runs it in order: statements sent one by one may
        // go to different pooled connections, and a SQLite connection still reading an
        // older snapshot of the schema found the dropped index there.
        let mut script: Vec<String> = DROPPED
            .iter()
            .map(|name| format!("DROP INDEX IF EXISTS {name}"))
            .collect();
        script.push(
            "CREATE INDEX ix_conversation_assignee ON conversation \
             (workspace_id, assignee_id, last_message_at) WHERE assignee_id IS NOT NULL"
                .into(),
        );
        script.push(
            "CREATE INDEX ix_conversation_snoozed ON conversation \
             (status, snoozed_until) WHERE snoozed_until IS NOT NULL"
                .into(),
        );
        manager
            .get_connection()
            .execute_unprepared(&script.join(";\n"))
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let script = [
            "DROP INDEX IF EXISTS ix_conversation_assignee",
            "DROP INDEX IF EXISTS ix_conversation_snoozed",
            "CREATE INDEX ix_conversation_assignee ON conversation \
             (workspace_id, assignee_id, last_message_at)",
            "CREATE INDEX ix_conversation_snoozed ON conversation (status, snoozed_until)",
            "CREATE INDEX ix_interaction_customer_time ON interaction \
             (workspace_id, customer_id, occurred_at, id)",
            "CREATE INDEX ix_interaction_conversation_time ON interaction \
             (workspace_id, conversation_id, occurred_at, id)",
            "CREATE INDEX ix_conversation_customer_time ON conversation \
             (workspace_id, customer_id, last_message_at)",
        ];
        manager
            .get_connection()
            .execute_unprepared(&script.join(";\n"))
            .await?;
        Ok(())
    }
}
