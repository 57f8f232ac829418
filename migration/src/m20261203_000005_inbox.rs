//! The inbox: people (`user`), keys that belong to one, and conversations as work —
//! an assignee that is a user, a snooze time, the time the customer has waited since,
//! a spam flag, and labels.
//!
//! The free-text `conversation.assignee` column stays as it was (append-only: its data is
//! kept) but is no longer read: a name typed by hand cannot be mapped to a person safely.
//! Labels reuse the workspace's tags through `conversation_label`, so "vip" is one tag
//! whether it is on a customer or on a conversation. `spam_author` remembers the customers
//! whose conversations were marked as spam, so what they write next is hidden too.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::{ConnectionTrait, DatabaseBackend};

#[derive(DeriveMigrationName)]
pub struct Migration;

fn id(name: &str) -> Alias {
    Alias::new(name)
}

fn fk(
    table: &str,
    column: &str,
    target: &str,
    on_delete: ForeignKeyAction,
) -> ForeignKeyCreateStatement {
    ForeignKey::create()
        .name(format!("fk_{table}_{column}"))
        .from(id(table), id(column))
        .to(id(target), id("id"))
        .on_delete(on_delete)
        .to_owned()
}

fn index(table: &str, name: &str, columns: &[&str], unique: bool) -> IndexCreateStatement {
    let mut statement = Index::create();
    statement
        .name(format!(
            "{}_{table}_{name}",
            if unique { "uq" } else { "ix" }
        ))
        .table(id(table));
    for column in columns {
        statement.col(id(column));
    }
    if unique {
        statement.unique();
    }
    statement.to_owned()
}

/// Adds a nullable reference to `user`: SQLite's ALTER TABLE cannot add a foreign key
/// with the query builder, but accepts one on the column it adds.
async fn add_user_reference(
    manager: &SchemaManager<'_>,
    table: &str,
    column: &str,
) -> Result<(), DbErr> {
    let db = manager.get_connection();
    let kind = match db.get_database_backend() {
        DatabaseBackend::Sqlite => "uuid_text",
        _ => "uuid",
    };
    db.execute_unprepared(&format!(
        "ALTER TABLE \"{table}\" ADD COLUMN \"{column}\" {kind} NULL \
         REFERENCES \"user\" (\"id\") ON DELETE SET NULL"
    ))
    .await?;
    Ok(())
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(id("user"))
                    .col(ColumnDef::new(id("id")).uuid().not_null().primary_key())
                    .col(ColumnDef::new(id("workspace_id")).uuid().not_null())
                    .col(ColumnDef::new(id("name")).text().not_null())
                    .col(ColumnDef::new(id("email")).text().not_null())
                    .col(ColumnDef::new(id("role")).text().not_null())
                    .col(
                        ColumnDef::new(id("active"))
                            .boolean()
                            .not_null()
                            .default(true),
                    )
                    .col(
                        ColumnDef::new(id("created_at"))
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .foreign_key(&mut fk(
                        "user",
                        "workspace_id",
                        "workspace",
                        ForeignKeyAction::Cascade,
                    ))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(id("conversation_label"))
                    .col(ColumnDef::new(id("conversation_id")).uuid().not_null())
                    .col(ColumnDef::new(id("tag_id")).uuid().not_null())
                    .col(ColumnDef::new(id("workspace_id")).uuid().not_null())
                    .col(
                        ColumnDef::new(id("created_at"))
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .primary_key(Index::create().col(id("conversation_id")).col(id("tag_id")))
                    .foreign_key(&mut fk(
                        "conversation_label",
                        "workspace_id",
                        "workspace",
                        ForeignKeyAction::Cascade,
                    ))
                    .foreign_key(&mut fk(
                        "conversation_label",
                        "conversation_id",
                        "conversation",
                        ForeignKeyAction::Cascade,
                    ))
                    .foreign_key(&mut fk(
                        "conversation_label",
                        "tag_id",
                        "tag",
                        ForeignKeyAction::Cascade,
                    ))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(id("spam_author"))
                    .col(ColumnDef::new(id("workspace_id")).uuid().not_null())
                    .col(ColumnDef::new(id("customer_id")).uuid().not_null())
                    .col(
                        ColumnDef::new(id("created_at"))
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .primary_key(
                        Index::create()
                            .col(id("workspace_id"))
                            .col(id("customer_id")),
                    )
                    .foreign_key(&mut fk(
                        "spam_author",
                        "workspace_id",
                        "workspace",
                        ForeignKeyAction::Cascade,
                    ))
                    .foreign_key(&mut fk(
                        "spam_author",
                        "customer_id",
                        "customer",
                        ForeignKeyAction::Cascade,
                    ))
                    .to_owned(),
            )
            .await?;
        add_user_reference(manager, "api_key", "user_id").await?;
        add_user_reference(manager, "conversation", "assignee_id").await?;
        // One column per statement: SQLite's ALTER TABLE adds one at a time.
        for column in [
            ColumnDef::new(id("snoozed_until"))
                .timestamp_with_time_zone()
                .null()
                .to_owned(),
            ColumnDef::new(id("waiting_since"))
                .timestamp_with_time_zone()
                .null()
                .to_owned(),
            ColumnDef::new(id("spam"))
                .boolean()
                .not_null()
                .default(false)
                .to_owned(),
        ] {
            manager
                .alter_table(
                    Table::alter()
                        .table(id("conversation"))
                        .add_column(column)
                        .to_owned(),
                )
                .await?;
        }
        // What already waits: the oldest customer message no reply of ours came after.
        // Not in a resolved thread: resolving ends the wait (the runtime rule), so an old
        // resolved thread never answered waits for nothing until the customer writes again.
        manager
            .get_connection()
            .execute_unprepared(
                "UPDATE conversation SET waiting_since = (\
                   SELECT MIN(i.occurred_at) FROM interaction i \
                   WHERE i.conversation_id = conversation.id AND i.direction = 'inbound' \
                     AND NOT EXISTS (SELECT 1 FROM interaction o \
                       WHERE o.conversation_id = conversation.id AND o.direction = 'outbound' \
                         AND o.occurred_at >= i.occurred_at)) \
                 WHERE status <> 'resolved'",
            )
            .await?;
        for statement in [
            index("user", "email", &["workspace_id", "email"], true),
            index("user", "name", &["workspace_id", "name", "id"], false),
            index("api_key", "user", &["user_id"], false),
            index(
                "conversation",
                "assignee",
                &["workspace_id", "assignee_id", "last_message_at"],
                false,
            ),
            index(
                "conversation",
                "snoozed",
                &["status", "snoozed_until"],
                false,
            ),
            index(
                "conversation",
                "waiting",
                &["workspace_id", "waiting_since"],
                false,
            ),
            index("conversation_label", "tag", &["tag_id"], false),
        ] {
            manager.create_index(statement).await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for (table, name) in [
            ("conversation", "ix_conversation_waiting"),
            ("conversation", "ix_conversation_snoozed"),
            ("conversation", "ix_conversation_assignee"),
            ("api_key", "ix_api_key_user"),
        ] {
            manager
                .drop_index(Index::drop().name(name).table(id(table)).to_owned())
                .await?;
        }
        for (table, column) in [
            ("conversation", "spam"),
            ("conversation", "waiting_since"),
            ("conversation", "snoozed_until"),
            ("conversation", "assignee_id"),
            ("api_key", "user_id"),
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
        for table in ["spam_author", "conversation_label", "user"] {
            manager
                .drop_table(Table::drop().table(id(table)).to_owned())
                .await?;
        }
        Ok(())
    }
}
