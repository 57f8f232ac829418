//! The foundation: workspaces, keys, the customer graph, interactions and the event log.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

fn id(name: &str) -> Alias {
    Alias::new(name)
}

fn uuid_pk() -> ColumnDef {
    ColumnDef::new(id("id"))
        .uuid()
        .not_null()
        .primary_key()
        .to_owned()
}

fn uuid(name: &str) -> ColumnDef {
    ColumnDef::new(id(name)).uuid().not_null().to_owned()
}

fn uuid_null(name: &str) -> ColumnDef {
    ColumnDef::new(id(name)).uuid().null().to_owned()
}

fn text(name: &str) -> ColumnDef {
    ColumnDef::new(id(name)).text().not_null().to_owned()
}

fn text_null(name: &str) -> ColumnDef {
    ColumnDef::new(id(name)).text().null().to_owned()
}

fn time(name: &str) -> ColumnDef {
    ColumnDef::new(id(name))
        .timestamp_with_time_zone()
        .not_null()
        .to_owned()
}

fn time_null(name: &str) -> ColumnDef {
    ColumnDef::new(id(name))
        .timestamp_with_time_zone()
        .null()
        .to_owned()
}

fn json(name: &str) -> ColumnDef {
    ColumnDef::new(id(name)).json_binary().not_null().to_owned()
}

/// A foreign key from `table.column` to `target.id`.
fn fk(
    table: &str,
    column: &str,
    target: &str,
    on_delete: ForeignKeyAction,
) -> ForeignKeyCreateStatement {
    ForeignKey::create()
        .name(format!("fk_{table}_{column}"))
        .from(id(table), id(column))
        .to(id(target), id("id"))
        .on_delete(on_delete)
        .to_owned()
}

fn workspace_fk(table: &str) -> ForeignKeyCreateStatement {
    fk(
        table,
        "workspace_id",
        "workspace",
        ForeignKeyAction::Cascade,
    )
}

fn index(table: &str, name: &str, columns: &[&str], unique: bool) -> IndexCreateStatement {
    let mut statement = Index::create();
    statement
        .name(format!(
            "{}_{table}_{name}",
            if unique { "uq" } else { "ix" }
        ))
        .table(id(table));
    for column in columns {
        statement.col(id(column));
    }
    if unique {
        statement.unique();
    }
    statement.to_owned()
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let tables = [
            Table::create()
                .table(id("workspace"))
                .col(uuid_pk())
                .col(text("slug").unique_key())
                .col(text("name"))
                .col(json("settings"))
                .col(time("created_at"))
                .to_owned(),
            Table::create()
                .table(id("api_key"))
                .col(uuid_pk())
                .col(uuid("workspace_id"))
                .col(text("name"))
                .col(text("role"))
                .col(text("key_hash").unique_key())
                .col(text("prefix"))
                .col(time("created_at"))
                .col(time_null("last_used_at"))
                .col(time_null("revoked_at"))
                .foreign_key(&mut workspace_fk("api_key"))
                .to_owned(),
            Table::create()
                .table(id("organization"))
                .col(uuid_pk())
                .col(uuid("workspace_id"))
                .col(text("name"))
                .col(text_null("domain"))
                .col(json("custom"))
                .col(time("created_at"))
                .col(time("updated_at"))
                .foreign_key(&mut workspace_fk("organization"))
                .to_owned(),
            Table::create()
                .table(id("customer"))
                .col(uuid_pk())
                .col(uuid("workspace_id"))
                .col(text("display_name"))
                .col(text_null("given_name"))
                .col(text_null("family_name"))
                .col(text("lifecycle_stage"))
                .col(text_null("external_id"))
                .col(uuid_null("organization_id"))
                .col(json("custom"))
                .col(uuid_null("merged_into"))
                .col(time("first_seen_at"))
                .col(time("last_seen_at"))
                .col(time("created_at"))
                .col(time("updated_at"))
                .foreign_key(&mut workspace_fk("customer"))
                .foreign_key(&mut fk(
                    "customer",
                    "organization_id",
                    "organization",
                    ForeignKeyAction::SetNull,
                ))
                .foreign_key(&mut fk(
                    "customer",
                    "merged_into",
                    "customer",
                    ForeignKeyAction::SetNull,
                ))
                .to_owned(),
            Table::create()
                .table(id("contact_point"))
                .col(uuid_pk())
                .col(uuid("workspace_id"))
                .col(uuid("customer_id"))
                .col(text("kind"))
                .col(text("value"))
                .col(text("normalized"))
                .col(text_null("label"))
                .col(
                    ColumnDef::new(id("verified"))
                        .boolean()
                        .not_null()
                        .default(false),
                )
                .col(
                    ColumnDef::new(id("is_primary"))
                        .boolean()
                        .not_null()
                        .default(false),
                )
                .col(time("created_at"))
                .foreign_key(&mut workspace_fk("contact_point"))
                .foreign_key(&mut fk(
                    "contact_point",
                    "customer_id",
                    "customer",
                    ForeignKeyAction::Cascade,
                ))
                .to_owned(),
            Table::create()
                .table(id("identity"))
                .col(uuid_pk())
                .col(uuid("workspace_id"))
                .col(uuid("customer_id"))
                .col(text("channel"))
                .col(text("platform_id"))
                .col(text_null("handle"))
                .col(text_null("display_name"))
                .col(text_null("profile_url"))
                .col(text_null("avatar_url"))
                .col(time("created_at"))
                .col(time("updated_at"))
                .foreign_key(&mut workspace_fk("identity"))
                .foreign_key(&mut fk(
                    "identity",
                    "customer_id",
                    "customer",
                    ForeignKeyAction::Cascade,
                ))
                .to_owned(),
            Table::create()
                .table(id("conversation"))
                .col(uuid_pk())
                .col(uuid("workspace_id"))
                .col(uuid("customer_id"))
                .col(uuid_null("source_id"))
                .col(text_null("thread_key"))
                .col(text("channel"))
                .col(text_null("subject"))
                .col(text("status"))
                .col(text("priority"))
                .col(text_null("assignee"))
                .col(time_null("first_response_at"))
                .col(time_null("resolved_at"))
                .col(time("last_message_at"))
                .col(time("created_at"))
                .col(time("updated_at"))
                .foreign_key(&mut workspace_fk("conversation"))
                .foreign_key(&mut fk(
                    "conversation",
                    "customer_id",
                    "customer",
                    ForeignKeyAction::Cascade,
                ))
                .to_owned(),
            Table::create()
                .table(id("interaction"))
                .col(uuid_pk())
                .col(uuid("workspace_id"))
                .col(uuid("customer_id"))
                .col(uuid_null("conversation_id"))
                .col(uuid_null("identity_id"))
                .col(uuid_null("source_id"))
                .col(text_null("external_id"))
                .col(text("channel"))
                .col(text("direction"))
                .col(text("kind"))
                .col(text_null("subject"))
                .col(text("text"))
                .col(text_null("html"))
                .col(text_null("url"))
                .col(text_null("language"))
                .col(ColumnDef::new(id("sentiment")).double().null())
                .col(time("occurred_at"))
                .col(time("ingested_at"))
                .col(ColumnDef::new(id("raw")).json_binary().null())
                .foreign_key(&mut workspace_fk("interaction"))
                .foreign_key(&mut fk(
                    "interaction",
                    "customer_id",
                    "customer",
                    ForeignKeyAction::Cascade,
                ))
                .foreign_key(&mut fk(
                    "interaction",
                    "conversation_id",
                    "conversation",
                    ForeignKeyAction::SetNull,
                ))
                .foreign_key(&mut fk(
                    "interaction",
                    "identity_id",
                    "identity",
                    ForeignKeyAction::SetNull,
                ))
                .to_owned(),
            Table::create()
                .table(id("deal"))
                .col(uuid_pk())
                .col(uuid("workspace_id"))
                .col(uuid_null("customer_id"))
                .col(uuid_null("organization_id"))
                .col(text("title"))
                .col(ColumnDef::new(id("amount_minor")).big_integer().null())
                .col(text("currency"))
                .col(text("stage"))
                .col(ColumnDef::new(id("close_date")).date().null())
                .col(time("created_at"))
                .col(time("updated_at"))
                .foreign_key(&mut workspace_fk("deal"))
                .foreign_key(&mut fk(
                    "deal",
                    "customer_id",
                    "customer",
                    ForeignKeyAction::SetNull,
                ))
                .foreign_key(&mut fk(
                    "deal",
                    "organization_id",
                    "organization",
                    ForeignKeyAction::SetNull,
                ))
                .to_owned(),
            Table::create()
                .table(id("note"))
                .col(uuid_pk())
                .col(uuid("workspace_id"))
                .col(uuid("customer_id"))
                .col(text("body"))
                .col(text("author"))
                .col(time("created_at"))
                .col(time("updated_at"))
                .foreign_key(&mut workspace_fk("note"))
                .foreign_key(&mut fk(
                    "note",
                    "customer_id",
                    "customer",
                    ForeignKeyAction::Cascade,
                ))
                .to_owned(),
            Table::create()
                .table(id("tag"))
                .col(uuid_pk())
                .col(uuid("workspace_id"))
                .col(text("name"))
                .col(text_null("color"))
                .col(time("created_at"))
                .foreign_key(&mut workspace_fk("tag"))
                .to_owned(),
            Table::create()
                .table(id("customer_tag"))
                .col(uuid("customer_id"))
                .col(uuid("tag_id"))
                .col(uuid("workspace_id"))
                .col(time("created_at"))
                .primary_key(Index::create().col(id("customer_id")).col(id("tag_id")))
                .foreign_key(&mut workspace_fk("customer_tag"))
                .foreign_key(&mut fk(
                    "customer_tag",
                    "customer_id",
                    "customer",
                    ForeignKeyAction::Cascade,
                ))
                .foreign_key(&mut fk(
                    "customer_tag",
                    "tag_id",
                    "tag",
                    ForeignKeyAction::Cascade,
                ))
                .to_owned(),
            Table::create()
                .table(id("event"))
                .col(
                    ColumnDef::new(id("seq"))
                        .big_integer()
                        .not_null()
                        .auto_increment()
                        .primary_key(),
                )
                .col(uuid("workspace_id"))
                .col(text("kind"))
                .col(uuid("entity_id"))
                .col(json("payload"))
                .col(time("created_at"))
                .to_owned(),
            Table::create()
                .table(id("consumer_offset"))
                .col(
                    ColumnDef::new(id("consumer"))
                        .text()
                        .not_null()
                        .primary_key(),
                )
                .col(ColumnDef::new(id("seq")).big_integer().not_null())
                .col(time("updated_at"))
                .to_owned(),
        ];
        for table in tables {
            manager.create_table(table).await?;
        }
        let indexes = [
            index("api_key", "workspace", &["workspace_id"], false),
            index("organization", "domain", &["workspace_id", "domain"], true),
            index(
                "organization",
                "name",
                &["workspace_id", "name", "id"],
                false,
            ),
            index(
                "customer",
                "external_id",
                &["workspace_id", "external_id"],
                true,
            ),
            index(
                "customer",
                "created",
                &["workspace_id", "created_at", "id"],
                false,
            ),
            index(
                "customer",
                "updated",
                &["workspace_id", "updated_at", "id"],
                false,
            ),
            index(
                "customer",
                "last_seen",
                &["workspace_id", "last_seen_at", "id"],
                false,
            ),
            index(
                "customer",
                "name",
                &["workspace_id", "display_name", "id"],
                false,
            ),
            index("customer", "organization", &["organization_id"], false),
            index(
                "contact_point",
                "value",
                &["workspace_id", "kind", "normalized"],
                true,
            ),
            index("contact_point", "customer", &["customer_id"], false),
            index(
                "identity",
                "platform",
                &["workspace_id", "channel", "platform_id"],
                true,
            ),
            index("identity", "customer", &["customer_id"], false),
            index(
                "conversation",
                "thread",
                &["workspace_id", "source_id", "thread_key"],
                true,
            ),
            index(
                "conversation",
                "customer",
                &["customer_id", "last_message_at"],
                false,
            ),
            index(
                "conversation",
                "status",
                &["workspace_id", "status", "last_message_at"],
                false,
            ),
            index(
                "interaction",
                "external",
                &["source_id", "external_id"],
                true,
            ),
            index(
                "interaction",
                "timeline",
                &["customer_id", "occurred_at", "id"],
                false,
            ),
            index(
                "interaction",
                "occurred",
                &["workspace_id", "occurred_at", "id"],
                false,
            ),
            index(
                "interaction",
                "conversation",
                &["conversation_id", "occurred_at"],
                false,
            ),
            index("deal", "customer", &["customer_id"], false),
            index("deal", "organization", &["organization_id"], false),
            index("note", "customer", &["customer_id", "created_at"], false),
            index("tag", "name", &["workspace_id", "name"], true),
            index("customer_tag", "tag", &["tag_id"], false),
            index("event", "workspace", &["workspace_id", "seq"], false),
        ];
        for statement in indexes {
            manager.create_index(statement).await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            "consumer_offset",
            "event",
            "customer_tag",
            "tag",
            "note",
            "deal",
            "interaction",
            "conversation",
            "identity",
            "contact_point",
            "customer",
            "organization",
            "api_key",
            "workspace",
        ] {
            manager
                .drop_table(Table::drop().table(id(table)).to_owned())
                .await?;
        }
        Ok(())
    }
}
