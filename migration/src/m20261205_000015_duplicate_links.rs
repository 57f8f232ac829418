//! Duplicate suggestions from profile links. An identity gets `profile_key`, what it is
//! once normalised as a link to it is written (its profile address; `https://{handle}` for
//! a Bluesky handle, a domain), indexed per workspace; `identity_link` holds the links each
//! identity's profile shows (profile fields, bio), indexed by key; and
//! `duplicate_suggestion` holds each pair of customers who may be one person, once per
//! pair, with a score and its reasons. The existing identities' keys are filled in SQL for
//! the plain cases (an address without query or fragment); ingestion fills the rest when
//! it next sees the identity.

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

/// The backfill of `identity.profile_key`: the same keys as `rapport::domain::duplicate`
/// computes, for the plain cases (a profile address without query or fragment, ASCII);
/// the rest are filled by ingestion when the identity is next seen.
const BACKFILL: &str = "UPDATE identity SET profile_key = CASE
    WHEN channel = 'bluesky' AND handle IS NOT NULL
        THEN 'https://' || lower(ltrim(handle, '@'))
    WHEN channel = 'email' THEN lower(platform_id)
    WHEN lower(profile_url) LIKE 'https://www.%'
        THEN 'https://' || rtrim(substr(lower(profile_url), 13), '/')
    WHEN lower(profile_url) LIKE 'https://%'
        THEN 'https://' || rtrim(substr(lower(profile_url), 9), '/')
    WHEN lower(profile_url) LIKE 'http://www.%'
        THEN 'https://' || rtrim(substr(lower(profile_url), 12), '/')
    WHEN lower(profile_url) LIKE 'http://%'
        THEN 'https://' || rtrim(substr(lower(profile_url), 8), '/')
    END
    WHERE profile_url IS NULL OR (profile_url NOT LIKE '%?%' AND profile_url NOT LIKE '%#%')";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(id("identity"))
                    .add_column(ColumnDef::new(id("profile_key")).text().null())
                    .to_owned(),
            )
            .await?;
        manager
            .get_connection()
            .execute_unprepared(BACKFILL)
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ix_identity_profile_key")
                    .table(id("identity"))
                    .col(id("workspace_id"))
                    .col(id("profile_key"))
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(id("identity_link"))
                    .col(ColumnDef::new(id("identity_id")).uuid().not_null())
                    .col(ColumnDef::new(id("key")).text().not_null())
                    .col(ColumnDef::new(id("workspace_id")).uuid().not_null())
                    .col(ColumnDef::new(id("url")).text().not_null())
                    .col(ColumnDef::new(id("label")).text().null())
                    .col(ColumnDef::new(id("verified")).boolean().not_null())
                    .col(time("created_at"))
                    .primary_key(
                        Index::create()
                            .name("pk_identity_link")
                            .col(id("identity_id"))
                            .col(id("key")),
                    )
                    .foreign_key(&mut cascade("identity_link", "workspace_id", "workspace"))
                    .foreign_key(&mut cascade("identity_link", "identity_id", "identity"))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ix_identity_link_key")
                    .table(id("identity_link"))
                    .col(id("workspace_id"))
                    .col(id("key"))
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(id("duplicate_suggestion"))
                    .col(ColumnDef::new(id("id")).uuid().not_null().primary_key())
                    .col(ColumnDef::new(id("workspace_id")).uuid().not_null())
                    .col(ColumnDef::new(id("customer_a")).uuid().not_null())
                    .col(ColumnDef::new(id("customer_b")).uuid().not_null())
                    .col(ColumnDef::new(id("score")).double().not_null())
                    .col(ColumnDef::new(id("reasons")).text().not_null())
                    .col(ColumnDef::new(id("status")).text().not_null())
                    .col(time("created_at"))
                    .col(time("updated_at"))
                    .foreign_key(&mut cascade(
                        "duplicate_suggestion",
                        "workspace_id",
                        "workspace",
                    ))
                    .foreign_key(&mut cascade(
                        "duplicate_suggestion",
                        "customer_a",
                        "customer",
                    ))
                    .foreign_key(&mut cascade(
                        "duplicate_suggestion",
                        "customer_b",
                        "customer",
                    ))
                    .to_owned(),
            )
            .await?;
        for (name, columns, unique) in [
            (
                "uq_duplicate_suggestion_pair",
                &["workspace_id", "customer_a", "customer_b"][..],
                true,
            ),
            (
                "ix_duplicate_suggestion_list",
                &["workspace_id", "status", "score", "id"][..],
                false,
            ),
            ("ix_duplicate_suggestion_a", &["customer_a"][..], false),
            ("ix_duplicate_suggestion_b", &["customer_b"][..], false),
        ] {
            let mut index = Index::create();
            index.name(name).table(id("duplicate_suggestion"));
            for column in columns {
                index.col(id(column));
            }
            if unique {
                index.unique();
            }
            manager.create_index(index.to_owned()).await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(id("duplicate_suggestion")).to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table(id("identity_link")).to_owned())
            .await?;
        manager
            .drop_index(
                Index::drop()
                    .name("ix_identity_profile_key")
                    .table(id("identity"))
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(id("identity"))
                    .drop_column(id("profile_key"))
                    .to_owned(),
            )
            .await
    }
}
