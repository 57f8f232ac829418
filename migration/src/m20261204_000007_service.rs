//! Service levels: `sla_rule` (per workspace, one rule per channel and one for any
//! channel: the primary key is the workspace and the channel, `*` standing for any,
//! because a NULL in a UNIQUE key would not keep two "any" rules apart on either
//! database) and `service_settings` (the workspace's IANA time zone and weekly business
//! hours, read by business-hour SLA rules and DAY/WEEK metrics buckets).

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

fn id(name: &str) -> Alias {
    Alias::new(name)
}

fn workspace_fk(table: &str) -> ForeignKeyCreateStatement {
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
                    .table(id("sla_rule"))
                    .col(ColumnDef::new(id("workspace_id")).uuid().not_null())
                    .col(ColumnDef::new(id("channel")).text().not_null())
                    .col(
                        ColumnDef::new(id("first_response_secs"))
                            .big_integer()
                            .null(),
                    )
                    .col(ColumnDef::new(id("resolution_secs")).big_integer().null())
                    .col(
                        ColumnDef::new(id("business_hours_only"))
                            .boolean()
                            .not_null()
                            .default(false),
                    )
                    .col(
                        ColumnDef::new(id("updated_at"))
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .primary_key(Index::create().col(id("workspace_id")).col(id("channel")))
                    .foreign_key(&mut workspace_fk("sla_rule"))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(id("service_settings"))
                    .col(
                        ColumnDef::new(id("workspace_id"))
                            .uuid()
                            .not_null()
                            .primary_key(),
                    )
                    .col(ColumnDef::new(id("time_zone")).text().not_null())
                    .col(ColumnDef::new(id("hours")).json_binary().not_null())
                    .col(
                        ColumnDef::new(id("updated_at"))
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .foreign_key(&mut workspace_fk("service_settings"))
                    .to_owned(),
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in ["service_settings", "sla_rule"] {
            manager
                .drop_table(Table::drop().table(id(table)).to_owned())
                .await?;
        }
        Ok(())
    }
}
