//! Organizations: the companies (B2B accounts) customers belong to.

use sea_orm::sea_query::{Expr, Func, LikeExpr};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, ConnectionTrait, QueryFilter, TransactionTrait,
};

use super::event::Event;
use super::page::{self, Page, PageArgs, Sort, SortKind};
use super::{clean_required, custom_object, Caller, Role};
use crate::error::{Error, Result};
use entity::organization::{self, Column, Entity, Model};
use entity::{OrganizationId, WorkspaceId};

pub struct NewOrganization {
    pub name: String,
    pub domain: Option<String>,
    pub custom: Option<serde_json::Value>,
}

/// Changes to an organization: `None` leaves a field alone, `Some(None)` clears it.
#[derive(Default)]
pub struct OrganizationChanges {
    pub name: Option<String>,
    pub domain: Option<Option<String>>,
    pub custom: Option<serde_json::Value>,
}

/// A domain as stored: lowercase, without scheme, `www.` or path.
pub fn normalize_domain(domain: &str) -> Result<String> {
    let lower = domain.trim().to_lowercase();
    let without_scheme = lower
        .split_once("://")
        .map_or(lower.as_str(), |(_, rest)| rest);
    let host = without_scheme.split('/').next().unwrap_or_default();
    let host = host.strip_prefix("www.").unwrap_or(host);
    // RFC 1035: at most 253 characters, labels of at most 63.
    let valid = host.len() <= 253
        && host.split('.').all(|label| label.len() <= 63)
        && host.contains('.')
        && !host.starts_with('.')
        && !host.ends_with('.')
        && host
            .chars()
            .all(|c| c.is_alphanumeric() || c == '.' || c == '-');
    if valid {
        Ok(host.to_owned())
    } else {
        Err(Error::field(
            "domain",
            format!("`{domain}` is not a domain name such as example.com"),
        ))
    }
}

fn domain_taken(domain: &str) -> String {
    format!("another organization already has the domain {domain}")
}

pub async fn create(
    db: &impl TransactionTrait,
    caller: &Caller,
    input: NewOrganization,
) -> Result<Model> {
    caller.require(Role::Agent, "creating an organization")?;
    let name = clean_required("name", &input.name, 200)?;
    let domain = input
        .domain
        .as_deref()
        .filter(|d| !d.trim().is_empty())
        .map(normalize_domain)
        .transpose()?;
    let custom = custom_object("customAttributes", input.custom)?;
    let now = super::now();
    let row = organization::ActiveModel {
        id: Set(OrganizationId::new()),
        workspace_id: Set(caller.workspace_id),
        name: Set(name),
        domain: Set(domain.clone()),
        custom: Set(custom),
        created_at: Set(now),
        updated_at: Set(now),
    };
    let txn = super::begin_write(db).await?;
    let model = row
        .insert(&txn)
        .await
        .map_err(|err| Error::on_unique(err, || domain_taken(domain.as_deref().unwrap_or(""))))?;
    super::event::append(
        &txn,
        caller.workspace_id,
        Event::OrganizationCreated(&model),
    )
    .await?;
    txn.commit().await?;
    Ok(model)
}

pub async fn update(
    db: &impl TransactionTrait,
    caller: &Caller,
    id: OrganizationId,
    changes: OrganizationChanges,
) -> Result<Model> {
    let how = super::Update {
        role: Role::Agent,
        action: "updating an organization",
        taken: Some(|row: &organization::ActiveModel| {
            domain_taken(
                super::set_value(&row.domain)
                    .and_then(Option::as_deref)
                    .unwrap_or(""),
            )
        }),
        event: |model| Event::OrganizationUpdated(model),
    };
    super::update(db, caller, id, how, async |_, _, row| {
        if let Some(name) = changes.name {
            row.name = Set(clean_required("name", &name, 200)?);
        }
        if let Some(domain) = changes.domain {
            row.domain = Set(domain
                .as_deref()
                .filter(|d| !d.trim().is_empty())
                .map(normalize_domain)
                .transpose()?);
        }
        if let Some(custom) = changes.custom {
            row.custom = Set(custom_object("customAttributes", Some(custom))?);
        }
        Ok(())
    })
    .await
}

pub async fn get(db: &impl ConnectionTrait, caller: &Caller, id: OrganizationId) -> Result<Model> {
    super::find_scoped(db, caller.workspace_id, id).await
}

/// Organizations by name (then id), optionally those whose name or domain contains `search`.
pub async fn list(
    db: &impl ConnectionTrait,
    caller: &Caller,
    search: Option<&str>,
    args: &PageArgs,
) -> Result<Page<Model>> {
    let sort = Sort::<Entity> {
        name: "name",
        column: Column::Name,
        id: Column::Id,
        descending: false,
        kind: SortKind::Text,
    };
    let window = args.window(sort.name)?;
    let search = checked_search(search)?;
    let mut select = super::scoped::<Entity>(caller.workspace_id);
    if let Some(search) = search.as_deref().filter(|s| !s.is_empty()) {
        let pattern = like_pattern(search);
        select = select.filter(
            sea_orm::Condition::any()
                .add(Expr::expr(Func::lower(Expr::col(Column::Name))).like(pattern.clone()))
                .add(Expr::col(Column::Domain).like(pattern)),
        );
    }
    let select = sort.order_and_limit(sort.between(select, &window)?, &window);
    Ok(page::finish(select.all(db).await?, &window))
}

/// The `search` of [`list`] checked (no control characters, at most 200 characters).
fn checked_search(search: Option<&str>) -> Result<Option<String>> {
    search
        .map(|search| super::text::check_lookup("search", search, 200))
        .transpose()
}

/// The cursor of an organization in [`list`].
pub fn cursor(model: &Model) -> String {
    page::encode("name", model.name.clone(), model.id)
}

/// A case-insensitive `LIKE '%text%'` pattern with the wildcards of `text` escaped.
pub fn like_pattern(text: &str) -> LikeExpr {
    let escaped: String = text
        .to_lowercase()
        .chars()
        .flat_map(|c| match c {
            '%' | '_' | '\\' => vec!['\\', c],
            c => vec![c],
        })
        .collect();
    LikeExpr::new(format!("%{escaped}%")).escape('\\')
}

/// How many customers each organization has (one query).
pub async fn customer_counts(
    db: &impl ConnectionTrait,
    workspace_id: WorkspaceId,
    organizations: &[OrganizationId],
) -> Result<std::collections::HashMap<OrganizationId, i64>> {
    use sea_orm::{EntityTrait, FromQueryResult, QuerySelect};
    #[derive(FromQueryResult)]
    struct Row {
        organization_id: Option<OrganizationId>,
        count: i64,
    }
    let rows = entity::customer::Entity::find()
        .select_only()
        .column(entity::customer::Column::OrganizationId)
        .column_as(entity::customer::Column::Id.count(), "count")
        .filter(entity::customer::Column::WorkspaceId.eq(workspace_id))
        .filter(entity::customer::Column::OrganizationId.is_in(organizations.iter().copied()))
        .group_by(entity::customer::Column::OrganizationId)
        .into_model::<Row>()
        .all(db)
        .await?;
    Ok(rows
        .into_iter()
        .filter_map(|row| row.organization_id.map(|id| (id, row.count)))
        .collect())
}

/// How many organizations [`list`] would show for `search`, on all pages together.
pub async fn count(
    db: &impl ConnectionTrait,
    caller: &Caller,
    search: Option<&str>,
) -> Result<u64> {
    use sea_orm::PaginatorTrait;
    let search = checked_search(search)?;
    let mut select = super::scoped::<Entity>(caller.workspace_id);
    if let Some(search) = search.as_deref().filter(|s| !s.is_empty()) {
        let pattern = like_pattern(search);
        select = select.filter(
            sea_orm::Condition::any()
                .add(Expr::expr(Func::lower(Expr::col(Column::Name))).like(pattern.clone()))
                .add(Expr::col(Column::Domain).like(pattern)),
        );
    }
    Ok(select.count(db).await?)
}
