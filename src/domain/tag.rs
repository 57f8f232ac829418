//! Tags: labels on customers, unique by name per workspace.

use std::collections::HashMap;

use sea_orm::sea_query::OnConflict;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DbErr, EntityTrait, FromQueryResult, JoinType,
    QueryFilter, QueryOrder, QueryResult, QuerySelect, TransactionTrait,
};

use super::{clean_optional, clean_required, Caller, Role};
use crate::error::{Error, Result};
use entity::{customer_tag, tag, CustomerId, TagId, WorkspaceId};

/// The workspace's tag `name` (checked: at most 64 characters, a colour of at most 32),
/// created when missing; the UNIQUE name decides a race between two creators.
pub(super) async fn ensure(
    db: &impl ConnectionTrait,
    workspace_id: WorkspaceId,
    name: &str,
    color: Option<String>,
) -> Result<tag::Model> {
    let name = clean_required("name", name, 64)?;
    let color = clean_optional("color", color, 32)?;
    let row = tag::ActiveModel {
        id: Set(TagId::new()),
        workspace_id: Set(workspace_id),
        name: Set(name.clone()),
        color: Set(color),
        created_at: Set(super::now()),
    };
    tag::Entity::insert(row)
        .on_conflict(
            OnConflict::columns([tag::Column::WorkspaceId, tag::Column::Name])
                .do_nothing()
                .to_owned(),
        )
        .exec_without_returning(db)
        .await?;
    by_name(db, workspace_id, &name)
        .await?
        .ok_or_else(|| Error::Internal(format!("tag {name} vanished after its creation")))
}

/// The workspace's tag `name`, if it has one.
pub(super) async fn by_name(
    db: &impl ConnectionTrait,
    workspace_id: WorkspaceId,
    name: &str,
) -> Result<Option<tag::Model>> {
    Ok(super::scoped::<tag::Entity>(workspace_id)
        .filter(tag::Column::Name.eq(name))
        .one(db)
        .await?)
}

/// Puts the tag `name` on a customer inside the caller's transaction, creating the tag
/// when the workspace has none by that name. Tagging twice is a no-op.
pub async fn attach(
    db: &impl ConnectionTrait,
    workspace_id: WorkspaceId,
    customer_id: CustomerId,
    name: &str,
    color: Option<String>,
) -> Result<tag::Model> {
    let tag = ensure(db, workspace_id, name, color).await?;
    let link = customer_tag::ActiveModel {
        customer_id: Set(customer_id),
        tag_id: Set(tag.id),
        workspace_id: Set(workspace_id),
        created_at: Set(super::now()),
    };
    customer_tag::Entity::insert(link)
        .on_conflict(
            OnConflict::columns([
                customer_tag::Column::CustomerId,
                customer_tag::Column::TagId,
            ])
            .do_nothing()
            .to_owned(),
        )
        .exec_without_returning(db)
        .await?;
    Ok(tag)
}

pub async fn add(
    db: &impl TransactionTrait,
    caller: &Caller,
    customer_id: CustomerId,
    name: &str,
    color: Option<String>,
) -> Result<()> {
    caller.require(Role::Agent, "tagging a customer")?;
    super::customer::change_belonging(db, caller, customer_id, async |txn| {
        attach(txn, caller.workspace_id, customer_id, name, color).await
    })
    .await
    .map(drop)
}

/// Takes the tag `name` off a customer; `NOT_FOUND` when the customer does not carry it.
pub async fn remove(
    db: &impl TransactionTrait,
    caller: &Caller,
    customer_id: CustomerId,
    name: &str,
) -> Result<()> {
    caller.require(Role::Agent, "untagging a customer")?;
    let name = super::text::check_lookup("name", name, 64)?;
    super::customer::change_belonging(db, caller, customer_id, async |txn| {
        let tag = by_name(txn, caller.workspace_id, &name).await?;
        let removed = match tag {
            Some(tag) => {
                customer_tag::Entity::delete_many()
                    .filter(customer_tag::Column::CustomerId.eq(customer_id))
                    .filter(customer_tag::Column::TagId.eq(tag.id))
                    .exec(txn)
                    .await?
                    .rows_affected
            }
            None => 0,
        };
        if removed == 0 {
            return Err(Error::not_found("tag on this customer", name));
        }
        Ok(())
    })
    .await
}

/// A tag with the customer it is on, from the join of `tag` and `customer_tag`.
struct Tagged {
    customer_id: CustomerId,
    tag: tag::Model,
}

impl FromQueryResult for Tagged {
    fn from_query_result(row: &QueryResult, prefix: &str) -> std::result::Result<Self, DbErr> {
        Ok(Tagged {
            customer_id: row.try_get(prefix, "tagged_customer_id")?,
            tag: tag::Model::from_query_result(row, prefix)?,
        })
    }
}

/// The tags of each customer, by name (one query for any number of customers).
pub async fn of_customers(
    db: &impl ConnectionTrait,
    workspace_id: WorkspaceId,
    customers: &[CustomerId],
) -> Result<HashMap<CustomerId, Vec<tag::Model>>> {
    let links = customer_tag::Entity::belongs_to(tag::Entity)
        .from(customer_tag::Column::TagId)
        .to(tag::Column::Id)
        .into();
    let rows = super::scoped::<tag::Entity>(workspace_id)
        .join_rev(JoinType::InnerJoin, links)
        .filter(customer_tag::Column::WorkspaceId.eq(workspace_id))
        .filter(customer_tag::Column::CustomerId.is_in(customers.iter().copied()))
        .column_as(customer_tag::Column::CustomerId, "tagged_customer_id")
        .order_by_asc(tag::Column::Name)
        .into_model::<Tagged>()
        .all(db)
        .await?;
    let mut grouped: HashMap<CustomerId, Vec<tag::Model>> = HashMap::new();
    for row in rows {
        grouped.entry(row.customer_id).or_default().push(row.tag);
    }
    for list in grouped.values_mut() {
        list.sort_by(|a, b| a.name.cmp(&b.name));
    }
    Ok(grouped)
}
