//! A lease on each consumer of the event log, beside its offset: several `rapport serve`
//! processes over one PostgreSQL share an index (Meilisearch), and one of them at a time
//! indexes it. The holder renews the lease as it works and moves the offset only while it
//! holds it (the offset write is fenced by the owner), so a process that stalls past its
//! lease cannot move the offset of the one that took over; a process that dies leaves a
//! lease that simply runs out.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

fn table() -> Alias {
    Alias::new("consumer_offset")
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // One column per statement: SQLite's ALTER TABLE adds one at a time.
        manager
            .alter_table(
                Table::alter()
                    .table(table())
                    .add_column(ColumnDef::new(Alias::new("lease_owner")).text().null())
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(table())
                    .add_column(
                        ColumnDef::new(Alias::new("lease_until"))
                            .timestamp_with_time_zone()
                            .null(),
                    )
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for column in ["lease_until", "lease_owner"] {
            manager
                .alter_table(
                    Table::alter()
                        .table(table())
                        .drop_column(Alias::new(column))
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }
}
