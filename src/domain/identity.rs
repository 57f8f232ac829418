//! Identities: a customer's accounts on each channel, unique per (workspace, channel,
//! platform id) so the same account always resolves to the same customer.

use std::collections::HashMap;

use sea_orm::ConnectionTrait;
use uuid::Uuid;

use super::Caller;
use crate::error::Result;
use crate::ids::{self, Kind};
use entity::identity::{Entity, Model};

/// An identity of the caller's workspace, or `NOT_FOUND`.
pub async fn get(db: &impl ConnectionTrait, caller: &Caller, id: Uuid) -> Result<Model> {
    super::find_scoped::<Entity>(db, caller.workspace_id, id, "identity", || {
        ids::encode(Kind::Identity, id)
    })
    .await
}

/// The identities of each customer, oldest first.
pub async fn of_customers(
    db: &impl ConnectionTrait,
    workspace_id: Uuid,
    customers: &[Uuid],
) -> Result<HashMap<Uuid, Vec<Model>>> {
    super::children_of::<Entity>(
        db,
        workspace_id,
        "customer_id",
        customers,
        "created_at",
        false,
        |i| Some(i.customer_id),
    )
    .await
}

/// The contact points of each customer, primary first within a kind.
pub async fn contact_points_of(
    db: &impl ConnectionTrait,
    workspace_id: Uuid,
    customers: &[Uuid],
) -> Result<HashMap<Uuid, Vec<entity::contact_point::Model>>> {
    let mut grouped = super::children_of::<entity::contact_point::Entity>(
        db,
        workspace_id,
        "customer_id",
        customers,
        "created_at",
        false,
        |p| Some(p.customer_id),
    )
    .await?;
    for points in grouped.values_mut() {
        points.sort_by_key(|p| (p.kind.clone(), !p.is_primary, p.created_at));
    }
    Ok(grouped)
}
