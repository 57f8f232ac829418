//! Indexes that lead with the workspace and then the parent: every batched child query
//! filters on both (`workspace_id = ? AND customer_id IN (…)`), and with only a
//! workspace-leading index to serve the first predicate SQLite scanned a whole
//! workspace's interactions for one customer's timeline. The parent-only indexes stay:
//! the foreign keys' ON DELETE actions look rows up by the parent column alone. The
//! identity reference gets the index it lacked for the same reason.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

const INDEXES: [(&str, &str, &[&str]); 4] = [
    (
        "interaction",
        "ix_interaction_customer_time",
        &["workspace_id", "customer_id", "occurred_at", "id"],
    ),
    (
        "interaction",
        "ix_interaction_conversation_time",
        &["workspace_id", "conversation_id", "occurred_at", "id"],
    ),
    ("interaction", "ix_interaction_identity", &["identity_id"]),
    (
        "conversation",
        "ix_conversation_customer_time",
        &["workspace_id", "customer_id", "last_message_at"],
    ),
];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for (table, name, columns) in INDEXES {
            let mut index = Index::create();
            index.name(name).table(Alias::new(table));
            for column in columns {
                index.col(Alias::new(*column));
            }
            manager.create_index(index.to_owned()).await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for (table, name, _) in INDEXES {
            manager
                .drop_index(Index::drop().name(name).table(Alias::new(table)).to_owned())
                .await?;
        }
        Ok(())
    }
}
