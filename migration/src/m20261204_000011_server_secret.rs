//! Secrets the server keeps for itself, one row a purpose, made once by whichever process
//! needs one first (`INSERT … ON CONFLICT DO NOTHING`, then read back, so every process
//! over the database uses the same). The first: the key subscription cursors are
//! encrypted with, so a cursor shows nothing of the log's global order (how busy other
//! workspaces are) and a cursor of one workspace means nothing in another.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

fn id(name: &str) -> Alias {
    Alias::new(name)
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(id("server_secret"))
                    .col(ColumnDef::new(id("name")).text().not_null().primary_key())
                    .col(ColumnDef::new(id("value")).text().not_null())
                    .col(
                        ColumnDef::new(id("created_at"))
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(id("server_secret")).to_owned())
            .await
    }
}
