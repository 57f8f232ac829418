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

/// Checks `value` for `kind` and returns it cleaned and normalised:
/// e-mail lowercased; phone in E.164 (`+` and digits); website as `https://host/path`
/// without a trailing slash; address with folded white space, lowercased.
pub fn normalize(kind: ContactPointKind, value: &str) -> Result<(String, String)> {
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
        ContactPointKind::Email => {
            let lower = value.to_lowercase();
            let (local, domain) = lower
                .split_once('@')
                .ok_or_else(|| invalid("it has no @"))?;
            let ok = !local.is_empty()
                && domain.contains('.')
                && !domain.starts_with('.')
                && !domain.ends_with('.')
                && !lower.chars().any(char::is_whitespace)
                && !domain.contains('@');
            if !ok {
                return Err(invalid("expected name@example.com"));
            }
            lower
        }
        ContactPointKind::Phone => normalize_phone(&value).ok_or_else(|| {
            invalid("use the international format with the country code, such as +34 600 123 456")
        })?,
        ContactPointKind::Website => {
            let lower = value.to_lowercase();
            let rest = lower
                .strip_prefix("https://")
                .or_else(|| lower.strip_prefix("http://"))
                .unwrap_or(&lower);
            let rest = rest.trim_end_matches('/');
            let host = rest.split('/').next().unwrap_or_default();
            if !host.contains('.') || rest.chars().any(char::is_whitespace) {
                return Err(invalid(
                    "expected a web address such as https://example.com",
                ));
            }
            format!("https://{rest}")
        }
        ContactPointKind::Address => value
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
            .to_lowercase(),
    };
    Ok((value, normalized))
}

/// E.164: `+` then 8 to 15 digits; `00` stands for `+`; spaces, dots, dashes and
/// parentheses are dropped. A number without country code is refused rather than guessed.
pub fn normalize_phone(value: &str) -> Option<String> {
    let compact: String = value
        .chars()
        .filter(|c| !matches!(c, ' ' | '.' | '-' | '(' | ')' | '/'))
        .collect();
    let digits = compact
        .strip_prefix('+')
        .or_else(|| compact.strip_prefix("00"))?;
    let ok = (8..=15).contains(&digits.len())
        && digits.chars().all(|c| c.is_ascii_digit())
        && !digits.starts_with('0');
    ok.then(|| format!("+{digits}"))
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
    let (value, normalized) = normalize(input.kind, &input.value)?;
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
        insert(txn, caller.workspace_id, customer_id, input).await
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
