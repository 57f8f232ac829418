//! Data quality over time: `quality_snapshot` keeps one report a workspace a day (UTC),
//! written by the server's daily task and by `rapport quality`; several processes may
//! record the same day, so the primary key (workspace, day) and `ON CONFLICT … DO UPDATE`
//! keep one row, the latest report. `dropped_value` counts the values ingestion and
//! imports dropped as invalid, a row per workspace, day, origin (the source, or `import`)
//! and field: keyed by origin so that only one source's writers, which its lease already
//! serialises, ever update a row inside their transaction.

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

fn to_workspace(table: &str) -> ForeignKeyCreateStatement {
    ForeignKey::create()
        .name(format!("fk_{table}_workspace_id"))
        .from(id(table), id("workspace_id"))
        .to(id("workspace"), id("id"))
        .on_delete(ForeignKeyAction::Cascade)
        .to_owned()
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(id("quality_snapshot"))
                    .col(ColumnDef::new(id("workspace_id")).uuid().not_null())
                    .col(ColumnDef::new(id("day")).date().not_null())
                    .col(ColumnDef::new(id("report")).json_binary().not_null())
                    .col(time("created_at"))
                    .col(time("updated_at"))
                    .primary_key(
                        Index::create()
                            .name("pk_quality_snapshot")
                            .col(id("workspace_id"))
                            .col(id("day")),
                    )
                    .foreign_key(&mut to_workspace("quality_snapshot"))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(id("dropped_value"))
                    .col(ColumnDef::new(id("workspace_id")).uuid().not_null())
                    .col(ColumnDef::new(id("day")).date().not_null())
                    .col(ColumnDef::new(id("origin")).text().not_null())
                    .col(ColumnDef::new(id("field")).text().not_null())
                    .col(ColumnDef::new(id("count")).big_integer().not_null())
                    .primary_key(
                        Index::create()
                            .name("pk_dropped_value")
                            .col(id("workspace_id"))
                            .col(id("day"))
                            .col(id("origin"))
                            .col(id("field")),
                    )
                    .foreign_key(&mut to_workspace("dropped_value"))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(id("dropped_value")).to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table(id("quality_snapshot")).to_owned())
            .await
    }
}
