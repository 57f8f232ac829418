//! A customer's birth date and postal address, as nullable columns of `customer`: one
//! address per person is what imports and forms carry, and columns (rather than an
//! address contact point holding JSON) let the API, imports and quality checks read each
//! part. `country` holds an ISO 3166-1 alpha-2 code; `birth_date` a calendar date.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

const TEXT_COLUMNS: [&str; 6] = [
    "street",
    "street2",
    "locality",
    "region",
    "postal_code",
    "country",
];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // SQLite alters one column a statement.
        manager
            .alter_table(
                Table::alter()
                    .table(Alias::new("customer"))
                    .add_column(ColumnDef::new(Alias::new("birth_date")).date().null())
                    .to_owned(),
            )
            .await?;
        for column in TEXT_COLUMNS {
            manager
                .alter_table(
                    Table::alter()
                        .table(Alias::new("customer"))
                        .add_column(ColumnDef::new(Alias::new(column)).text().null())
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for column in TEXT_COLUMNS.iter().rev().chain(["birth_date"].iter()) {
            manager
                .alter_table(
                    Table::alter()
                        .table(Alias::new("customer"))
                        .drop_column(Alias::new(*column))
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }
}
