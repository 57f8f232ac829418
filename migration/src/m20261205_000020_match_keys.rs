//! Blocking keys for duplicate detection over customers' fields (`customer_match_key`):
//! a customer is compared only with those sharing a key, so a new record is checked with
//! a few index probes and a workspace never compares all pairs. The keys (phonetic codes,
//! canonical e-mail addresses, …) are computed in Rust; `rapport dedupe` fills them for
//! the customers stored before this migration.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

fn id(name: &str) -> Alias {
    Alias::new(name)
}

fn cascade(column: &str, target: &str) -> ForeignKeyCreateStatement {
    ForeignKey::create()
        .name(format!("fk_customer_match_key_{column}"))
        .from(id("customer_match_key"), id(column))
        .to(id(target), id("id"))
        .on_delete(ForeignKeyAction::Cascade)
        .to_owned()
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(id("customer_match_key"))
                    .col(ColumnDef::new(id("customer_id")).uuid().not_null())
                    .col(ColumnDef::new(id("key")).text().not_null())
                    .col(ColumnDef::new(id("workspace_id")).uuid().not_null())
                    .primary_key(
                        Index::create()
                            .name("pk_customer_match_key")
                            .col(id("customer_id"))
                            .col(id("key")),
                    )
                    .foreign_key(&mut cascade("workspace_id", "workspace"))
                    .foreign_key(&mut cascade("customer_id", "customer"))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ix_customer_match_key_key")
                    .table(id("customer_match_key"))
                    .col(id("workspace_id"))
                    .col(id("key"))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(id("customer_match_key")).to_owned())
            .await
    }
}
