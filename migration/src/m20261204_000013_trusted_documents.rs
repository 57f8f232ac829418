//! Trusted documents: the GraphQL documents a workspace registered ahead of time (at
//! deploy), by the SHA-256 of their text, and a flag on an API key that lets it run only
//! those. A production app's key then cannot be used to run arbitrary queries.

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
                    .table(id("trusted_document"))
                    .col(ColumnDef::new(id("workspace_id")).uuid().not_null())
                    .col(ColumnDef::new(id("hash")).text().not_null())
                    .col(ColumnDef::new(id("name")).text().null())
                    .col(ColumnDef::new(id("body")).text().not_null())
                    .col(
                        ColumnDef::new(id("created_at"))
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    // The same text registered twice is one document: the key decides.
                    .primary_key(
                        Index::create()
                            .name("pk_trusted_document")
                            .col(id("workspace_id"))
                            .col(id("hash")),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_trusted_document_workspace_id")
                            .from(id("trusted_document"), id("workspace_id"))
                            .to(id("workspace"), id("id"))
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(id("api_key"))
                    .add_column(
                        ColumnDef::new(id("trusted_documents_only"))
                            .boolean()
                            .not_null()
                            .default(false),
                    )
                    .to_owned(),
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(id("api_key"))
                    .drop_column(id("trusted_documents_only"))
                    .to_owned(),
            )
            .await?;
        manager
            .drop_table(Table::drop().table(id("trusted_document")).to_owned())
            .await
    }
}
