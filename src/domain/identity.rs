//! Identities: a customer's accounts on each channel, unique per (workspace, channel,
//! platform id) so the same account always resolves to the same customer.

use std::collections::HashMap;

use sea_orm::ConnectionTrait;

use crate::error::Result;
use entity::identity::{Entity, Model};
use entity::{CustomerId, IdentityId, WorkspaceId};

/// The identities of each customer, oldest first.
pub async fn of_customers(
    db: &impl ConnectionTrait,
    workspace_id: WorkspaceId,
    customers: &[CustomerId],
) -> Result<HashMap<CustomerId, Vec<Model>>> {
    super::children_of::<Entity, _>(
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
    workspace_id: WorkspaceId,
    customers: &[CustomerId],
) -> Result<HashMap<CustomerId, Vec<entity::contact_point::Model>>> {
    let mut grouped = super::children_of::<entity::contact_point::Entity, _>(
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
        sort_contact_points(points);
    }
    Ok(grouped)
}

/// A customer's contact points in reading order: by kind, primary first within a kind,
/// then oldest first.
pub(super) fn sort_contact_points(points: &mut [entity::contact_point::Model]) {
    points.sort_by_key(|p| (p.kind.as_str(), !p.is_primary, p.created_at));
}

/// Who wrote an inbound item, once resolved.
pub struct ResolvedAuthor {
    pub identity: Model,
    /// A customer was created for this author (stage subscriber).
    pub new_customer: bool,
}

/// Resolves an item's author to an identity and a customer, inside the caller's
/// transaction: the identity with the same (channel, platform id) if there is one; else
/// the customer owning the author's e-mail or phone; else a new customer (stage
/// `subscriber`). UNIQUE constraints decide races: identities and contact points are
/// inserted with `ON CONFLICT DO NOTHING` and read back. A contact value dropped as
/// invalid is counted for `source_id` ([`super::quality::count_dropped`]).
pub async fn resolve_author(
    db: &impl ConnectionTrait,
    workspace_id: WorkspaceId,
    source_id: entity::SourceId,
    channel: connectors::Channel,
    author: &connectors::Author,
    at: chrono::DateTime<chrono::Utc>,
) -> Result<ResolvedAuthor> {
    use entity::identity::{ActiveModel, Column};
    use sea_orm::sea_query::OnConflict;
    use sea_orm::{ActiveValue::Set, ColumnTrait, EntityTrait, QueryFilter};

    let platform_id = super::clean(&author.platform_id);
    let find = || {
        super::scoped::<Entity>(workspace_id)
            .filter(Column::Channel.eq(channel.as_str()))
            .filter(Column::PlatformId.eq(platform_id.clone()))
    };
    let linked = |identity: &Model| super::duplicate::Linked {
        identity_id: identity.id,
        customer_id: identity.customer_id,
        channel,
        links: &author.links,
    };
    if let Some(identity) = find().one(db).await? {
        super::duplicate::fill_profile_keys(db, std::slice::from_ref(&identity)).await?;
        if !author.links.is_empty() {
            let above =
                super::duplicate::after_authors(db, workspace_id, &[linked(&identity)], &[], at)
                    .await?;
            super::duplicate::merge_above_threshold(db, workspace_id, &above).await?;
        }
        return Ok(ResolvedAuthor {
            identity: super::merge::settled_identity(db, workspace_id, identity).await?,
            new_customer: false,
        });
    }
    let dropped = super::quality::Dropped::default();
    let points: Vec<(super::ContactPointKind, String, String)> = [
        (super::ContactPointKind::Email, author.email.as_deref()),
        (super::ContactPointKind::Phone, author.phone.as_deref()),
    ]
    .into_iter()
    .filter_map(|(kind, value)| {
        let Some((value, normalized)) = super::validate::ingested_point(kind, value?) else {
            dropped.note_point(kind);
            return None;
        };
        Some((kind, value, normalized))
    })
    .collect();
    super::quality::count_dropped(
        db,
        workspace_id,
        &crate::ids::encode(source_id),
        super::now().date_naive(),
        &dropped,
    )
    .await?;
    let mut customer = None;
    for (kind, _, normalized) in &points {
        let owner = super::scoped::<entity::contact_point::Entity>(workspace_id)
            .filter(entity::contact_point::Column::Kind.eq(kind.as_str()))
            .filter(entity::contact_point::Column::Normalized.eq(normalized.as_str()))
            .one(db)
            .await?;
        if let Some(owner) = owner {
            customer = Some(owner.customer_id);
            break;
        }
    }
    let new_customer = customer.is_none();
    let customer_id = match customer {
        Some(id) => id,
        None => {
            let name = author_name(author, &platform_id);
            super::customer::create_subscriber(db, workspace_id, &name, at)
                .await?
                .id
        }
    };
    let mut targets: Vec<super::duplicate::Target> = Vec::new();
    for (kind, value, normalized) in points {
        if kind == super::ContactPointKind::Email {
            targets.push(super::duplicate::Target {
                key: normalized.clone(),
                customer_id,
                what: format!("the e-mail address {value}"),
                channel: None,
            });
        }
        super::contact_point::insert_if_free(
            db,
            workspace_id,
            customer_id,
            kind,
            &value,
            &normalized,
            new_customer,
        )
        .await?;
    }
    let now = super::now();
    let planned = IdentityId::new();
    let row = ActiveModel {
        id: Set(planned),
        workspace_id: Set(workspace_id),
        customer_id: Set(customer_id),
        channel: Set(channel),
        platform_id: Set(platform_id.clone()),
        handle: Set(author.handle.clone()),
        display_name: Set(author.display_name.clone()),
        profile_url: Set(author.profile_url.clone()),
        avatar_url: Set(author.avatar_url.clone()),
        profile_key: Set(super::duplicate::profile_key(
            channel,
            &platform_id,
            author.handle.as_deref(),
            author.profile_url.as_deref(),
        )),
        created_at: Set(now),
        updated_at: Set(now),
    };
    Entity::insert(row)
        .on_conflict(
            OnConflict::columns([Column::WorkspaceId, Column::Channel, Column::PlatformId])
                .do_nothing()
                .to_owned(),
        )
        .exec_without_returning(db)
        .await?;
    let identity = find()
        .one(db)
        .await?
        .ok_or_else(|| crate::Error::Internal("an identity vanished after its insertion".into()))?;
    if identity.id == planned {
        targets.extend(super::duplicate::identity_target(&identity));
    }
    let linked: Vec<super::duplicate::Linked<'_>> = (!author.links.is_empty())
        .then(|| linked(&identity))
        .into_iter()
        .collect();
    let above = super::duplicate::after_authors(db, workspace_id, &linked, &targets, at).await?;
    if new_customer {
        // Suggested, never merged (see `batch`): self-asserted fields.
        super::dedupe::check(db, workspace_id, &[identity.customer_id], at).await?;
    }
    super::duplicate::merge_above_threshold(db, workspace_id, &above).await?;
    Ok(ResolvedAuthor {
        identity: super::merge::settled_identity(db, workspace_id, identity).await?,
        new_customer,
    })
}

/// What a customer made for an unknown author is called: their display name, handle,
/// e-mail or platform id, the first of these that is not blank.
pub(crate) fn author_name(author: &connectors::Author, platform_id: &str) -> String {
    [
        author.display_name.as_deref(),
        author.handle.as_deref(),
        author.email.as_deref(),
    ]
    .into_iter()
    .flatten()
    .map(super::clean)
    .find(|name| !name.is_empty())
    .unwrap_or_else(|| platform_id.to_owned())
}
