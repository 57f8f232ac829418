//! The search documents of interactions and customers: what the index holds of each row,
//! built from the database (the truth) in a few queries per batch of ids, and the id
//! paging a rebuild walks. The search backends store these documents; only this module
//! knows how a row becomes one.

use std::collections::BTreeSet;

use sea_orm::{
    ColumnTrait, Condition, ConnectionTrait, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder,
    QuerySelect,
};
use serde::{Deserialize, Serialize};

use super::{ContactPointKind, ConversationStatus};
use crate::error::Result;
use entity::{
    ConversationId, CustomerId, IdentityId, InteractionId, OrganizationId, TagId, WorkspaceId,
};

/// An interaction as the index sees it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct InteractionDoc {
    pub id: InteractionId,
    pub workspace_id: WorkspaceId,
    /// `None` for a publication.
    pub customer_id: Option<CustomerId>,
    pub conversation_id: Option<ConversationId>,
    pub channel: String,
    pub kind: String,
    pub direction: String,
    /// The conversation's status (`open`, `pending`, `resolved`), `none` without one.
    pub status: String,
    pub sentiment: Option<f64>,
    /// `negative`, `neutral`, `positive` or `unknown`, for facet counts.
    pub sentiment_label: String,
    /// ISO 639-1 (or `und`).
    pub language: String,
    /// Unix milliseconds.
    pub occurred_at: i64,
    pub subject: String,
    pub text: String,
    /// The author's name and handle.
    pub author: String,
}

/// A customer as the index sees it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CustomerDoc {
    pub id: CustomerId,
    pub workspace_id: WorkspaceId,
    pub names: Vec<String>,
    pub emails: Vec<String>,
    /// E.164 digits, and the national part (last 9 digits) so local numbers match.
    pub phones: Vec<String>,
    pub handles: Vec<String>,
    pub organization: String,
    pub tags: Vec<String>,
    /// Unix milliseconds of the last interaction (or creation).
    pub last_seen_at: i64,
}

/// The sentiment bucket of a score.
pub fn sentiment_label(score: Option<f64>) -> &'static str {
    match score {
        None => "unknown",
        Some(s) if s <= -0.05 => "negative",
        Some(s) if s >= 0.05 => "positive",
        Some(_) => "neutral",
    }
}

/// The documents of the interactions `ids` that exist.
pub async fn interaction_docs(
    db: &impl ConnectionTrait,
    ids: &[InteractionId],
) -> Result<Vec<InteractionDoc>> {
    use entity::interaction;
    let rows = interaction::Entity::find()
        .filter(interaction::Column::Id.is_in(ids.to_vec()))
        .all(db)
        .await?;
    use entity::{conversation, identity};
    let conversation_ids: BTreeSet<ConversationId> =
        rows.iter().filter_map(|r| r.conversation_id).collect();
    let identity_ids: BTreeSet<IdentityId> = rows.iter().filter_map(|r| r.identity_id).collect();
    let statuses: std::collections::HashMap<ConversationId, ConversationStatus> =
        if conversation_ids.is_empty() {
            Default::default()
        } else {
            conversation::Entity::find()
                .filter(conversation::Column::Id.is_in(conversation_ids))
                .all(db)
                .await?
                .into_iter()
                .map(|c| (c.id, c.status))
                .collect()
        };
    let authors: std::collections::HashMap<IdentityId, String> = if identity_ids.is_empty() {
        Default::default()
    } else {
        identity::Entity::find()
            .filter(identity::Column::Id.is_in(identity_ids))
            .all(db)
            .await?
            .into_iter()
            .map(|i| {
                let parts: Vec<String> = [i.display_name, i.handle].into_iter().flatten().collect();
                (i.id, parts.join(" "))
            })
            .collect()
    };
    Ok(rows
        .into_iter()
        .map(|row| InteractionDoc {
            id: row.id,
            workspace_id: row.workspace_id,
            customer_id: row.customer_id,
            conversation_id: row.conversation_id,
            status: row
                .conversation_id
                .and_then(|c| statuses.get(&c))
                .map_or("none", |status| status.as_str())
                .to_owned(),
            sentiment_label: sentiment_label(row.sentiment).to_owned(),
            sentiment: row.sentiment,
            language: row
                .language
                .as_deref()
                .map(|l| l.split(['-', '_']).next().unwrap_or(l).to_lowercase())
                .unwrap_or_else(|| "und".to_owned()),
            occurred_at: row.occurred_at.timestamp_millis(),
            subject: row.subject.unwrap_or_default(),
            author: row
                .identity_id
                .and_then(|i| authors.get(&i).cloned())
                .unwrap_or_default(),
            text: row.text,
            channel: row.channel.as_str().to_owned(),
            kind: row.kind.as_str().to_owned(),
            direction: row.direction.as_str().to_owned(),
        })
        .collect())
}

/// The documents of the customers `ids` that exist (merged ones are left out).
pub async fn customer_docs(
    db: &impl ConnectionTrait,
    ids: &[CustomerId],
) -> Result<Vec<CustomerDoc>> {
    let rows = entity::customer::Entity::find()
        .filter(entity::customer::Column::Id.is_in(ids.to_vec()))
        .filter(entity::customer::Column::MergedInto.is_null())
        .all(db)
        .await?;
    use entity::{contact_point, customer_tag, identity, organization, tag};
    use std::collections::HashMap;
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<CustomerId> = rows.iter().map(|r| r.id).collect();
    let mut points: HashMap<CustomerId, Vec<contact_point::Model>> = HashMap::new();
    for point in contact_point::Entity::find()
        .filter(contact_point::Column::CustomerId.is_in(ids.clone()))
        .all(db)
        .await?
    {
        points.entry(point.customer_id).or_default().push(point);
    }
    let mut handles: HashMap<CustomerId, Vec<String>> = HashMap::new();
    for identity in identity::Entity::find()
        .filter(identity::Column::CustomerId.is_in(ids.clone()))
        .all(db)
        .await?
    {
        let entry = handles.entry(identity.customer_id).or_default();
        entry.extend(identity.handle);
        entry.extend(identity.display_name);
    }
    // The names of the customers merged into these: the survivor is found by them too.
    let mut merged_names: HashMap<CustomerId, Vec<String>> = HashMap::new();
    for merged in entity::customer::Entity::find()
        .filter(entity::customer::Column::MergedInto.is_in(ids.clone()))
        .all(db)
        .await?
    {
        if let Some(survivor) = merged.merged_into {
            merged_names.entry(survivor).or_default().extend(
                [
                    Some(merged.display_name),
                    merged.given_name,
                    merged.family_name,
                ]
                .into_iter()
                .flatten(),
            );
        }
    }
    let links = customer_tag::Entity::find()
        .filter(customer_tag::Column::CustomerId.is_in(ids.clone()))
        .all(db)
        .await?;
    let tag_names: HashMap<TagId, String> = if links.is_empty() {
        HashMap::new()
    } else {
        tag::Entity::find()
            .filter(tag::Column::Id.is_in(links.iter().map(|l| l.tag_id).collect::<Vec<_>>()))
            .all(db)
            .await?
            .into_iter()
            .map(|t| (t.id, t.name))
            .collect()
    };
    let mut tags: HashMap<CustomerId, Vec<String>> = HashMap::new();
    for link in links {
        if let Some(name) = tag_names.get(&link.tag_id) {
            tags.entry(link.customer_id).or_default().push(name.clone());
        }
    }
    let org_ids: Vec<OrganizationId> = rows.iter().filter_map(|r| r.organization_id).collect();
    let orgs: HashMap<OrganizationId, String> = if org_ids.is_empty() {
        HashMap::new()
    } else {
        organization::Entity::find()
            .filter(organization::Column::Id.is_in(org_ids))
            .all(db)
            .await?
            .into_iter()
            .map(|o| (o.id, o.name))
            .collect()
    };
    Ok(rows
        .into_iter()
        .map(|row| {
            let points = points.remove(&row.id).unwrap_or_default();
            let is = |p: &contact_point::Model, kind: ContactPointKind| p.kind == kind;
            let of = |kind: ContactPointKind| {
                points
                    .iter()
                    .filter(|p| is(p, kind))
                    .map(|p| p.value.clone())
                    .collect::<Vec<_>>()
            };
            let mut phones = Vec::new();
            for phone in points.iter().filter(|p| is(p, ContactPointKind::Phone)) {
                let digits: String = phone
                    .normalized
                    .chars()
                    .filter(char::is_ascii_digit)
                    .collect();
                if digits.len() > 9 {
                    phones.push(digits[digits.len() - 9..].to_owned());
                }
                phones.push(digits);
            }
            let mut names: Vec<String> = [
                Some(row.display_name.clone()),
                row.given_name.clone(),
                row.family_name.clone(),
            ]
            .into_iter()
            .flatten()
            .collect();
            for name in merged_names.remove(&row.id).unwrap_or_default() {
                if !names.contains(&name) {
                    names.push(name);
                }
            }
            CustomerDoc {
                id: row.id,
                workspace_id: row.workspace_id,
                names,
                emails: of(ContactPointKind::Email),
                phones,
                handles: handles.remove(&row.id).unwrap_or_default(),
                organization: row
                    .organization_id
                    .and_then(|o| orgs.get(&o).cloned())
                    .unwrap_or_default(),
                tags: tags.remove(&row.id).unwrap_or_default(),
                last_seen_at: row.last_seen_at.timestamp_millis(),
            }
        })
        .collect())
}

/// Rows per page of a rebuild.
pub const REBUILD_PAGE: u64 = 2_000;

/// One page (at most [`REBUILD_PAGE`]) of interaction ids after `after`, ascending.
pub async fn interaction_ids_after(
    db: &impl ConnectionTrait,
    after: Option<InteractionId>,
) -> Result<Vec<InteractionId>> {
    use entity::interaction::{Column, Entity};
    Ok(Entity::find()
        .select_only()
        .column(Column::Id)
        .filter(Condition::all().add_option(after.map(|after| Column::Id.gt(after))))
        .order_by_asc(Column::Id)
        .limit(REBUILD_PAGE)
        .into_tuple()
        .all(db)
        .await?)
}

/// One page (at most [`REBUILD_PAGE`]) of the ids of customers not merged, after
/// `after`, ascending.
pub async fn customer_ids_after(
    db: &impl ConnectionTrait,
    after: Option<CustomerId>,
) -> Result<Vec<CustomerId>> {
    use entity::customer::{Column, Entity};
    Ok(Entity::find()
        .select_only()
        .column(Column::Id)
        .filter(Column::MergedInto.is_null())
        .filter(Condition::all().add_option(after.map(|after| Column::Id.gt(after))))
        .order_by_asc(Column::Id)
        .limit(REBUILD_PAGE)
        .into_tuple()
        .all(db)
        .await?)
}

/// How many interactions there are (every workspace).
pub async fn count_interactions(db: &impl ConnectionTrait) -> Result<u64> {
    Ok(entity::interaction::Entity::find().count(db).await?)
}

/// How many customers not merged there are (every workspace).
pub async fn count_customers(db: &impl ConnectionTrait) -> Result<u64> {
    Ok(entity::customer::Entity::find()
        .filter(entity::customer::Column::MergedInto.is_null())
        .count(db)
        .await?)
}

/// The ids of the interactions of the conversations `conversations` (their status
/// changed, so their documents must be rewritten).
pub async fn interactions_of_conversations(
    db: &impl ConnectionTrait,
    conversations: impl IntoIterator<Item = ConversationId>,
) -> Result<Vec<InteractionId>> {
    Ok(entity::interaction::Entity::find()
        .select_only()
        .column(entity::interaction::Column::Id)
        .filter(entity::interaction::Column::ConversationId.is_in(conversations))
        .into_tuple()
        .all(db)
        .await?)
}

/// The ids of the customers of the organizations `organizations` (a renamed
/// organization changes their documents).
pub async fn customers_of_organizations(
    db: &impl ConnectionTrait,
    organizations: impl IntoIterator<Item = OrganizationId>,
) -> Result<Vec<CustomerId>> {
    Ok(entity::customer::Entity::find()
        .select_only()
        .column(entity::customer::Column::Id)
        .filter(entity::customer::Column::OrganizationId.is_in(organizations))
        .into_tuple()
        .all(db)
        .await?)
}

/// The ids of the interactions a merge moved to its survivor.
pub async fn interactions_of_merge(
    db: &impl ConnectionTrait,
    merge_id: entity::MergeRecordId,
) -> Result<Vec<InteractionId>> {
    super::merge::moved_interactions(db, merge_id).await
}

/// The ids of a customer's interactions (a customer unmerged gets back what it had).
pub async fn interactions_of_customer(
    db: &impl ConnectionTrait,
    customer: CustomerId,
) -> Result<Vec<InteractionId>> {
    Ok(entity::interaction::Entity::find()
        .select_only()
        .column(entity::interaction::Column::Id)
        .filter(entity::interaction::Column::CustomerId.eq(customer))
        .into_tuple()
        .all(db)
        .await?)
}
