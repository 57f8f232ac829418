//! Sources: configured connector instances, with their cursor, state and lease.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

fn id(name: &str) -> Alias {
    Alias::new(name)
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let text = |name: &str| ColumnDef::new(id(name)).text().not_null().to_owned();
        let text_null = |name: &str| ColumnDef::new(id(name)).text().null().to_owned();
        let time_null = |name: &str| {
            ColumnDef::new(id(name))
                .timestamp_with_time_zone()
                .null()
                .to_owned()
        };
        manager
            .create_table(
                Table::create()
                    .table(id("source"))
                    .col(ColumnDef::new(id("id")).uuid().not_null().primary_key())
                    .col(ColumnDef::new(id("workspace_id")).uuid().not_null())
                    .col(text("channel"))
                    .col(text("name"))
                    // Settings that may be shown; secrets live apart and are never returned.
                    .col(ColumnDef::new(id("config")).json_binary().not_null())
                    .col(ColumnDef::new(id("secrets")).json_binary().not_null())
                    .col(ColumnDef::new(id("schedule_secs")).integer().not_null())
                    .col(text_null("cursor"))
                    .col(text("status"))
                    .col(text_null("last_error"))
                    .col(
                        ColumnDef::new(id("items_ingested"))
                            .big_integer()
                            .not_null()
                            .default(0),
                    )
                    .col(
                        ColumnDef::new(id("failures"))
                            .integer()
                            .not_null()
                            .default(0),
                    )
                    .col(time_null("last_run_at"))
                    .col(time_null("next_run_at"))
                    .col(text_null("lease_owner"))
                    .col(time_null("lease_until"))
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
                            .name("fk_source_workspace_id")
                            .from(id("source"), id("workspace_id"))
                            .to(id("workspace"), id("id"))
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("uq_source_name")
                    .table(id("source"))
                    .col(id("workspace_id"))
                    .col(id("name"))
                    .unique()
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ix_source_due")
                    .table(id("source"))
                    .col(id("status"))
                    .col(id("next_run_at"))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(id("source")).to_owned())
            .await
    }
}
