//! Tags: labels on customers, unique by name per workspace.

use std::collections::HashMap;

use sea_orm::sea_query::OnConflict;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder,
    TransactionTrait,
};

use super::{clean_optional, clean_required, Caller, Role};
use crate::error::{Error, Result};
use entity::{customer_tag, tag, CustomerId, TagId, WorkspaceId};

/// Puts the tag `name` on a customer inside the caller's transaction, creating the tag
/// when the workspace has none by that name. Tagging twice is a no-op.
pub async fn attach(
    db: &impl ConnectionTrait,
    workspace_id: WorkspaceId,
    customer_id: CustomerId,
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
    let tag = super::scoped::<tag::Entity>(workspace_id)
        .filter(tag::Column::Name.eq(name.clone()))
        .one(db)
        .await?
        .ok_or_else(|| Error::Internal(format!("tag {name} vanished after its creation")))?;
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
        let tag = super::scoped::<tag::Entity>(caller.workspace_id)
            .filter(tag::Column::Name.eq(name.clone()))
            .one(txn)
            .await?;
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

/// The tags of each customer, by name (two queries for any number of customers).
pub async fn of_customers(
    db: &impl ConnectionTrait,
    workspace_id: WorkspaceId,
    customers: &[CustomerId],
) -> Result<HashMap<CustomerId, Vec<tag::Model>>> {
    let links = super::scoped::<customer_tag::Entity>(workspace_id)
        .filter(customer_tag::Column::CustomerId.is_in(customers.iter().copied()))
        .all(db)
        .await?;
    let tag_ids: Vec<TagId> = links.iter().map(|link| link.tag_id).collect();
    let tags: HashMap<TagId, tag::Model> = super::scoped::<tag::Entity>(workspace_id)
        .filter(tag::Column::Id.is_in(tag_ids))
        .order_by_asc(tag::Column::Name)
        .all(db)
        .await?
        .into_iter()
        .map(|tag| (tag.id, tag))
        .collect();
    let mut grouped: HashMap<CustomerId, Vec<tag::Model>> = HashMap::new();
    for link in links {
        if let Some(tag) = tags.get(&link.tag_id) {
            grouped
                .entry(link.customer_id)
                .or_default()
                .push(tag.clone());
        }
    }
    for list in grouped.values_mut() {
        list.sort_by(|a, b| a.name.cmp(&b.name));
    }
    Ok(grouped)
}
