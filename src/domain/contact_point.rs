//! Contact points (e-mail, phone, postal address, website) of customers. The normalised
//! value is unique per workspace and kind: one e-mail address belongs to one customer,
//! which is what lets ingestion link a message to the right person.

use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter,
    TransactionTrait,
};

use super::{clean_optional, Caller, ContactPointKind, Role};
use crate::error::{Error, Result};
use entity::contact_point::{self, Column, Entity, Model};
use entity::{ContactPointId, CustomerId, WorkspaceId};

pub struct NewContactPoint {
    pub kind: ContactPointKind,
    pub value: String,
    pub label: Option<String>,
    pub primary: bool,
    pub verified: bool,
}

/// Checks `value` for `kind` and returns it cleaned and normalised (the rules are
/// `domain::validate`'s): e-mail with a lower-cased local part and a punycode, lower-case
/// domain; phone in E.164 (`+` and digits); website as `https://host/path` without a
/// trailing slash; address with folded white space, lowercased. A phone without country
/// code is refused: [`normalize_in`] reads it in a region.
pub fn normalize(kind: ContactPointKind, value: &str) -> Result<(String, String)> {
    normalize_in(kind, value, None)
}

/// [`normalize`], reading a phone number without country code in `region` (the
/// workspace's default, ISO 3166-1 alpha-2) when given.
pub fn normalize_in(
    kind: ContactPointKind,
    value: &str,
    region: Option<&str>,
) -> Result<(String, String)> {
    if value.len() > 4 * 320 + 1_024 {
        return Err(Error::field("value", "value is longer than 320 characters"));
    }
    super::text::check("value", value)?;
    let value = super::clean(value);
    let invalid = |hint: &str| {
        Error::field(
            "value",
            format!("`{value}` is not a valid {}: {hint}", kind.as_str()),
        )
    };
    if value.is_empty() {
        return Err(Error::field("value", "value must not be empty"));
    }
    if value.chars().count() > 320 {
        return Err(Error::field("value", "value is longer than 320 characters"));
    }
    let normalized = match kind {
        ContactPointKind::Email => super::validate::email(&value).map_err(invalid)?,
        ContactPointKind::Phone => super::validate::phone(&value, region).ok_or_else(|| {
            invalid(match region {
                None => {
                    "use the international format with the country code, such as +34 600 123 456"
                }
                Some(_) => {
                    "it is not a phone number of its country (or of the workspace's default region)"
                }
            })
        })?,
        ContactPointKind::Website => super::validate::url(&value)
            .ok_or_else(|| invalid("expected a web address such as https://example.com"))?,
        ContactPointKind::Address => value
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
            .to_lowercase(),
    };
    Ok((value, normalized))
}

/// The workspace's default phone region, read only for a phone number that needs one
/// (no `+` or `00` in front).
pub async fn region_for(
    db: &impl ConnectionTrait,
    workspace_id: WorkspaceId,
    kind: ContactPointKind,
    value: &str,
) -> Result<Option<String>> {
    let trimmed = value.trim_start();
    if kind != ContactPointKind::Phone || trimmed.starts_with('+') || trimmed.starts_with("00") {
        return Ok(None);
    }
    Ok(super::workspace::settings(db, workspace_id)
        .await?
        .default_phone_region)
}

fn taken(kind: ContactPointKind, value: &str) -> String {
    format!(
        "the {} {value} already belongs to a customer of this workspace",
        kind.as_str()
    )
}

/// Adds a contact point inside the caller's transaction; the first of its kind becomes primary.
pub async fn insert(
    db: &impl ConnectionTrait,
    workspace_id: WorkspaceId,
    customer_id: CustomerId,
    input: NewContactPoint,
) -> Result<Model> {
    let region = region_for(db, workspace_id, input.kind, &input.value).await?;
    let (value, normalized) = normalize_in(input.kind, &input.value, region.as_deref())?;
    let label = clean_optional("label", input.label, 100)?;
    let existing = Entity::find()
        .filter(Column::CustomerId.eq(customer_id))
        .filter(Column::Kind.eq(input.kind.as_str()))
        .all(db)
        .await?;
    let primary = input.primary || existing.is_empty();
    if primary && !existing.is_empty() {
        Entity::update_many()
            .col_expr(Column::IsPrimary, Expr::value(false))
            .filter(Column::CustomerId.eq(customer_id))
            .filter(Column::Kind.eq(input.kind.as_str()))
            .exec(db)
            .await?;
    }
    let row = contact_point::ActiveModel {
        id: Set(ContactPointId::new()),
        workspace_id: Set(workspace_id),
        customer_id: Set(customer_id),
        kind: Set(input.kind),
        value: Set(value.clone()),
        normalized: Set(normalized),
        label: Set(label),
        verified: Set(input.verified),
        is_primary: Set(primary),
        created_at: Set(super::now()),
    };
    let model = row
        .insert(db)
        .await
        .map_err(|err| Error::on_unique(err, || taken(input.kind, &value)))?;
    // A profile that links this address or site suggests its customer as a duplicate.
    let targets: Vec<super::duplicate::Target> = super::duplicate::contact_point_target(&model)
        .into_iter()
        .collect();
    super::duplicate::after_authors(db, workspace_id, &[], &targets, model.created_at).await?;
    Ok(model)
}

/// Adds a contact point to a customer of the caller's workspace.
pub async fn add(
    db: &impl TransactionTrait,
    caller: &Caller,
    customer_id: CustomerId,
    input: NewContactPoint,
) -> Result<Model> {
    caller.require(Role::Agent, "adding a contact point")?;
    super::customer::change_belonging(db, caller, customer_id, async |txn| {
        let point = insert(txn, caller.workspace_id, customer_id, input).await?;
        super::dedupe::check(txn, caller.workspace_id, &[customer_id], point.created_at).await?;
        Ok(point)
    })
    .await
}

/// Removes a contact point; returns the customer it belonged to.
pub async fn remove(
    db: &impl TransactionTrait,
    caller: &Caller,
    id: ContactPointId,
) -> Result<CustomerId> {
    caller.require(Role::Agent, "removing a contact point")?;
    let txn = super::begin_write(db).await?;
    let point = super::find_scoped(&txn, caller.workspace_id, id).await?;
    Entity::delete_by_id(point.id).exec(&txn).await?;
    if point.is_primary {
        // The oldest remaining one of that kind takes over as primary.
        let next = Entity::find()
            .filter(Column::CustomerId.eq(point.customer_id))
            .filter(Column::Kind.eq(point.kind))
            .all(&txn)
            .await?
            .into_iter()
            .min_by_key(|p| (p.created_at, p.id));
        if let Some(next) = next {
            let mut next: contact_point::ActiveModel = next.into();
            next.is_primary = Set(true);
            next.update(&txn).await?;
        }
    }
    super::customer::touch(&txn, caller.workspace_id, point.customer_id).await?;
    super::dedupe::check(
        &txn,
        caller.workspace_id,
        &[point.customer_id],
        super::now(),
    )
    .await?;
    txn.commit().await?;
    Ok(point.customer_id)
}

/// Adds an already normalised contact point unless the workspace has it already (on any
/// customer): the UNIQUE constraint decides, `ON CONFLICT DO NOTHING`.
pub async fn insert_if_free(
    db: &impl ConnectionTrait,
    workspace_id: WorkspaceId,
    customer_id: CustomerId,
    kind: ContactPointKind,
    value: &str,
    normalized: &str,
    primary: bool,
) -> Result<()> {
    use sea_orm::sea_query::OnConflict;
    let row = contact_point::ActiveModel {
        id: Set(ContactPointId::new()),
        workspace_id: Set(workspace_id),
        customer_id: Set(customer_id),
        kind: Set(kind),
        value: Set(value.to_owned()),
        normalized: Set(normalized.to_owned()),
        label: Set(None),
        verified: Set(false),
        is_primary: Set(primary),
        created_at: Set(super::now()),
    };
    Entity::insert(row)
        .on_conflict(
            OnConflict::columns([Column::WorkspaceId, Column::Kind, Column::Normalized])
                .do_nothing()
                .to_owned(),
        )
        .exec_without_returning(db)
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_normalised_per_kind() {
        let email = normalize(ContactPointKind::Email, " Ana.Lopez@Example.COM ").unwrap();
        assert_eq!(
            email,
            (
                "Ana.Lopez@Example.COM".to_owned(),
                "ana.lopez@example.com".to_owned()
            )
        );
        assert_eq!(
            normalize(ContactPointKind::Phone, "+34 (600) 123-456")
                .unwrap()
                .1,
            "+34600123456"
        );
        assert_eq!(
            normalize(ContactPointKind::Phone, "0034 600 123 456")
                .unwrap()
                .1,
            "+34600123456"
        );
        assert_eq!(
            normalize(ContactPointKind::Website, "Example.com/About/")
                .unwrap()
                .1,
            "https://example.com/about"
        );
        for (kind, bad) in [
            (ContactPointKind::Email, "ana"),
            (ContactPointKind::Email, "ana@localhost"),
            (ContactPointKind::Phone, "600 123 456"),
            (ContactPointKind::Phone, "+34 abc"),
            (ContactPointKind::Website, "not a site"),
        ] {
            assert!(normalize(kind, bad).is_err(), "{bad}");
        }
    }
}
