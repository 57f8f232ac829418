//! Merges: `merge_record` holds each merge of one customer into another (who, why, the
//! score of an automatic one, both rows as they were before and the survivor as the merge
//! left it, the small sets it changed as JSON), and `merge_moved` the ids of the child rows
//! it moved, per table, with their `updated_at` before the move: enough for an unmerge to
//! put every row back as it was. A record stays after its unmerge (`unmerged_at`) as the
//! audit of both.

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

fn cascade(table: &str, column: &str, target: &str) -> ForeignKeyCreateStatement {
    ForeignKey::create()
        .name(format!("fk_{table}_{column}"))
        .from(id(table), id(column))
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
                    .table(id("merge_record"))
                    .col(ColumnDef::new(id("id")).uuid().not_null().primary_key())
                    .col(ColumnDef::new(id("workspace_id")).uuid().not_null())
                    .col(ColumnDef::new(id("survivor_id")).uuid().not_null())
                    .col(ColumnDef::new(id("merged_id")).uuid().not_null())
                    // `manual` or `automatic`.
                    .col(ColumnDef::new(id("reason")).text().not_null())
                    .col(ColumnDef::new(id("score")).double().null())
                    .col(ColumnDef::new(id("actor")).json_binary().not_null())
                    .col(
                        ColumnDef::new(id("survivor_before"))
                            .json_binary()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(id("survivor_after"))
                            .json_binary()
                            .not_null(),
                    )
                    .col(ColumnDef::new(id("merged_before")).json_binary().not_null())
                    .col(ColumnDef::new(id("changes")).json_binary().not_null())
                    .col(time("created_at"))
                    .col(
                        ColumnDef::new(id("unmerged_at"))
                            .timestamp_with_time_zone()
                            .null(),
                    )
                    .col(ColumnDef::new(id("unmerged_by")).json_binary().null())
                    .foreign_key(&mut cascade("merge_record", "workspace_id", "workspace"))
                    .foreign_key(&mut cascade("merge_record", "survivor_id", "customer"))
                    .foreign_key(&mut cascade("merge_record", "merged_id", "customer"))
                    .to_owned(),
            )
            .await?;
        for (name, columns) in [
            ("ix_merge_record_merged", ["workspace_id", "merged_id"]),
            ("ix_merge_record_survivor", ["workspace_id", "survivor_id"]),
        ] {
            let mut index = Index::create();
            index.name(name).table(id("merge_record"));
            for column in columns {
                index.col(id(column));
            }
            manager.create_index(index.to_owned()).await?;
        }
        // The search index reads the names of the customers merged into those it writes.
        manager
            .create_index(
                Index::create()
                    .name("ix_customer_merged_into")
                    .table(id("customer"))
                    .col(id("merged_into"))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(id("merge_moved"))
                    .col(ColumnDef::new(id("merge_id")).uuid().not_null())
                    // The table of the row: `identity`, `contact_point`, `interaction`,
                    // `conversation`, `deal`, `note`.
                    .col(ColumnDef::new(id("tbl")).text().not_null())
                    .col(ColumnDef::new(id("row_id")).uuid().not_null())
                    .col(ColumnDef::new(id("workspace_id")).uuid().not_null())
                    .col(
                        ColumnDef::new(id("updated_at"))
                            .timestamp_with_time_zone()
                            .null(),
                    )
                    .primary_key(
                        Index::create()
                            .name("pk_merge_moved")
                            .col(id("merge_id"))
                            .col(id("tbl"))
                            .col(id("row_id")),
                    )
                    .foreign_key(&mut cascade("merge_moved", "merge_id", "merge_record"))
                    .foreign_key(&mut cascade("merge_moved", "workspace_id", "workspace"))
                    .to_owned(),
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(id("merge_moved")).to_owned())
            .await?;
        manager
            .drop_index(
                Index::drop()
                    .name("ix_customer_merged_into")
                    .table(id("customer"))
                    .to_owned(),
            )
            .await?;
        manager
            .drop_table(Table::drop().table(id("merge_record")).to_owned())
            .await
    }
}
