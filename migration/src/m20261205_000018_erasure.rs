//! Erasure: `erasure` is the audit of each customer erased (GDPR) or deleted — who did
//! it, when and how many rows went, never who the person was — and `erasure_tombstone`
//! holds keyed hashes (HMAC-SHA-256 under the server key `erasure`) of what identified
//! them: their items' external ids, their platform ids, their e-mail addresses and phone
//! numbers. Ingestion looks a batch's hashes up in one query, so a re-pull of the same
//! items, or the same person arriving again, does not bring them back. A hash without
//! the key names no one; one per workspace and value (the primary key).

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

fn id(name: &str) -> Alias {
    Alias::new(name)
}

fn time(name: &str) -> ColumnDef {
    ColumnDef::new(id(name))
        .timestamp_with_time_zone()
        .not_null()
        .to_owned()
}

fn cascade(table: &str, column: &str, target: &str, key: &str) -> ForeignKeyCreateStatement {
    ForeignKey::create()
        .name(format!("fk_{table}_{column}"))
        .from(id(table), id(column))
        .to(id(target), id(key))
        .on_delete(ForeignKeyAction::Cascade)
        .to_owned()
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(id("erasure"))
                    // The erased customer's id: it names no one once the row is gone, and
                    // answers "was cus_… erased, when, by which key?".
                    .col(
                        ColumnDef::new(id("customer_id"))
                            .uuid()
                            .not_null()
                            .primary_key(),
                    )
                    .col(ColumnDef::new(id("workspace_id")).uuid().not_null())
                    .col(ColumnDef::new(id("kind")).text().not_null())
                    .col(ColumnDef::new(id("actor_key_id")).uuid().null())
                    .col(ColumnDef::new(id("actor_user_id")).uuid().null())
                    .col(ColumnDef::new(id("actor_name")).text().not_null())
                    .col(ColumnDef::new(id("counts")).json_binary().not_null())
                    .col(time("created_at"))
                    .foreign_key(&mut cascade("erasure", "workspace_id", "workspace", "id"))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ix_erasure_workspace")
                    .table(id("erasure"))
                    .col(id("workspace_id"))
                    .col(id("created_at"))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(id("erasure_tombstone"))
                    .col(ColumnDef::new(id("workspace_id")).uuid().not_null())
                    .col(ColumnDef::new(id("hash")).text().not_null())
                    .col(ColumnDef::new(id("kind")).text().not_null())
                    .col(ColumnDef::new(id("customer_id")).uuid().not_null())
                    .col(time("created_at"))
                    .primary_key(
                        Index::create()
                            .name("pk_erasure_tombstone")
                            .col(id("workspace_id"))
                            .col(id("hash")),
                    )
                    .foreign_key(&mut cascade(
                        "erasure_tombstone",
                        "workspace_id",
                        "workspace",
                        "id",
                    ))
                    .foreign_key(&mut cascade(
                        "erasure_tombstone",
                        "customer_id",
                        "erasure",
                        "customer_id",
                    ))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ix_erasure_tombstone_customer")
                    .table(id("erasure_tombstone"))
                    .col(id("customer_id"))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(id("erasure_tombstone")).to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table(id("erasure")).to_owned())
            .await
    }
}
