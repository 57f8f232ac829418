//! Customers: the people at the centre of the 360-degree view. Listing with filters and
//! keyset pagination, creation with contact points and tags in one transaction, updates,
//! and deletion (which erases their identities, conversations, interactions and notes).

use chrono::{DateTime, NaiveDate, Utc};
use sea_orm::sea_query::{Expr, Func, Query};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, Condition, ConnectionTrait,
    DatabaseTransaction, EntityTrait, PaginatorTrait, QueryFilter, TransactionTrait,
};

use super::contact_point::{self, NewContactPoint};
use super::event::Event;
use super::organization::like_pattern;
use super::page::{self, Page, PageArgs, Sort, SortKind};
use super::validate::{self, PostalAddress};
use super::{clean_optional, custom_object, Caller, ContactPointKind, LifecycleStage, Role};
use crate::error::{Error, Result};
use entity::customer::{self, Column, Entity, Model};
use entity::{contact_point as cp, customer_tag, identity, tag};
use entity::{CustomerId, OrganizationId, WorkspaceId};

string_enum!(
    /// What a customer list can be ordered by.
    CustomerOrderField {
        /// When the customer was created.
        CreatedAt = "created_at",
        /// When the customer was last changed.
        UpdatedAt = "updated_at",
        /// `lastSeenAt`: the latest of creation and the last interaction.
        LastSeenAt = "last_seen_at",
        /// `displayName`, as stored (case-sensitive).
        DisplayName = "display_name",
    }
);

/// Which customers a list shows; every set field must match.
#[derive(Clone, Debug, Default)]
pub struct CustomerFilter {
    /// Part of a name, e-mail, phone number or handle (case-insensitive).
    pub search: Option<String>,
    pub lifecycle_stages: Vec<LifecycleStage>,
    /// Customers carrying every one of these tags.
    pub tags: Vec<String>,
    pub organization_id: Option<OrganizationId>,
    /// Customers with an identity on this channel.
    pub channel: Option<connectors::Channel>,
    pub created_after: Option<DateTime<Utc>>,
    pub created_before: Option<DateTime<Utc>>,
    pub last_seen_after: Option<DateTime<Utc>>,
    pub last_seen_before: Option<DateTime<Utc>>,
}

/// The longest `search` of a customer filter, in characters.
pub const MAX_FILTER_SEARCH_CHARS: usize = 200;
/// The most tags a customer filter may require.
pub const MAX_FILTER_TAGS: usize = 20;

impl CustomerFilter {
    /// The filter with its texts checked (no control characters, within the caps;
    /// `BAD_USER_INPUT` naming `filter.search` or `filter.tags[i]`) and normalised.
    pub fn checked(self) -> Result<CustomerFilter> {
        let search = self
            .search
            .as_deref()
            .map(|search| {
                super::text::check_lookup("filter.search", search, MAX_FILTER_SEARCH_CHARS)
            })
            .transpose()?;
        if self.tags.len() > MAX_FILTER_TAGS {
            return Err(Error::field(
                "filter.tags",
                format!("give at most {MAX_FILTER_TAGS} tags"),
            ));
        }
        let tags = self
            .tags
            .iter()
            .enumerate()
            .map(|(index, tag)| {
                super::text::check_lookup(&format!("filter.tags[{index}]"), tag, 64)
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(CustomerFilter {
            search,
            tags,
            ..self
        })
    }
}

pub struct NewCustomer {
    pub display_name: Option<String>,
    pub given_name: Option<String>,
    pub family_name: Option<String>,
    pub lifecycle_stage: Option<LifecycleStage>,
    pub external_id: Option<String>,
    pub organization_id: Option<OrganizationId>,
    pub custom: Option<serde_json::Value>,
    pub contact_points: Vec<NewContactPoint>,
    pub tags: Vec<String>,
    pub birth_date: Option<NaiveDate>,
    pub postal_address: Option<PostalAddress>,
}

/// Changes to a customer: `None` leaves a field alone, `Some(None)` clears it.
#[derive(Default)]
pub struct CustomerChanges {
    pub display_name: Option<String>,
    pub given_name: Option<Option<String>>,
    pub family_name: Option<Option<String>>,
    pub lifecycle_stage: Option<LifecycleStage>,
    pub external_id: Option<Option<String>>,
    pub organization_id: Option<Option<OrganizationId>>,
    pub custom: Option<serde_json::Value>,
    pub birth_date: Option<Option<NaiveDate>>,
    /// Replaces every part of the address (parts left out are cleared).
    pub postal_address: Option<Option<PostalAddress>>,
}

fn sort(field: CustomerOrderField, descending: bool) -> Sort<Entity> {
    let (column, kind) = match field {
        CustomerOrderField::CreatedAt => (Column::CreatedAt, SortKind::Time),
        CustomerOrderField::UpdatedAt => (Column::UpdatedAt, SortKind::Time),
        CustomerOrderField::LastSeenAt => (Column::LastSeenAt, SortKind::Time),
        CustomerOrderField::DisplayName => (Column::DisplayName, SortKind::Text),
    };
    Sort {
        name: field.as_str(),
        column,
        id: Column::Id,
        descending,
        kind,
    }
}

/// The cursor of `model` in a list ordered by `field`.
pub fn cursor(model: &Model, field: CustomerOrderField) -> page::Cursor {
    let sort = field.as_str();
    match field {
        CustomerOrderField::CreatedAt => page::Cursor::time(sort, model.created_at, model.id),
        CustomerOrderField::UpdatedAt => page::Cursor::time(sort, model.updated_at, model.id),
        CustomerOrderField::LastSeenAt => page::Cursor::time(sort, model.last_seen_at, model.id),
        CustomerOrderField::DisplayName => {
            page::Cursor::text(sort, model.display_name.clone(), model.id)
        }
    }
}

fn filtered(workspace_id: WorkspaceId, filter: &CustomerFilter) -> sea_orm::Select<Entity> {
    let mut select = super::scoped::<Entity>(workspace_id).filter(Column::MergedInto.is_null());
    if let Some(search) = filter
        .search
        .as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty())
    {
        select = select.filter(search_condition(workspace_id, search));
    }
    if !filter.lifecycle_stages.is_empty() {
        select = select.filter(
            Column::LifecycleStage.is_in(filter.lifecycle_stages.iter().map(|s| s.as_str())),
        );
    }
    for name in &filter.tags {
        let tagged = Query::select()
            .column((customer_tag::Entity, customer_tag::Column::CustomerId))
            .from(customer_tag::Entity)
            .inner_join(
                tag::Entity,
                Expr::col((tag::Entity, tag::Column::Id))
                    .equals((customer_tag::Entity, customer_tag::Column::TagId)),
            )
            .and_where(Expr::col((tag::Entity, tag::Column::WorkspaceId)).eq(workspace_id))
            .and_where(Expr::col((tag::Entity, tag::Column::Name)).eq(super::clean(name)))
            .to_owned();
        select = select.filter(Column::Id.in_subquery(tagged));
    }
    if let Some(organization) = filter.organization_id {
        select = select.filter(Column::OrganizationId.eq(organization));
    }
    if let Some(channel) = &filter.channel {
        let on_channel = Query::select()
            .column(identity::Column::CustomerId)
            .from(identity::Entity)
            .and_where(identity::Column::WorkspaceId.eq(workspace_id))
            .and_where(identity::Column::Channel.eq(*channel))
            .to_owned();
        select = select.filter(Column::Id.in_subquery(on_channel));
    }
    let ranges = [
        (
            Column::CreatedAt,
            filter.created_after,
            filter.created_before,
        ),
        (
            Column::LastSeenAt,
            filter.last_seen_after,
            filter.last_seen_before,
        ),
    ];
    for (column, after, before) in ranges {
        if let Some(after) = after {
            select = select.filter(column.gte(after));
        }
        if let Some(before) = before {
            select = select.filter(column.lt(before));
        }
    }
    select
}

/// Names, contact points (e-mail, phone: also by digits alone) and handles containing `search`.
fn search_condition(workspace_id: WorkspaceId, search: &str) -> Condition {
    let pattern = like_pattern(search);
    let lower = |column: Column| Expr::expr(Func::lower(Expr::col((Entity, column))));
    let mut points = Condition::any().add(Expr::col(cp::Column::Normalized).like(pattern.clone()));
    let digits: String = search.chars().filter(char::is_ascii_digit).collect();
    if digits.len() >= 4
        && search
            .chars()
            .all(|c| c.is_ascii_digit() || " +-().".contains(c))
    {
        points = points.add(Expr::col(cp::Column::Normalized).like(like_pattern(&digits)));
    }
    let by_point = Query::select()
        .column(cp::Column::CustomerId)
        .from(cp::Entity)
        .and_where(cp::Column::WorkspaceId.eq(workspace_id))
        .cond_where(points)
        .to_owned();
    let by_handle = Query::select()
        .column(identity::Column::CustomerId)
        .from(identity::Entity)
        .and_where(identity::Column::WorkspaceId.eq(workspace_id))
        .cond_where(
            Condition::any()
                .add(
                    Expr::expr(Func::lower(Expr::col(identity::Column::Handle)))
                        .like(pattern.clone()),
                )
                .add(
                    Expr::expr(Func::lower(Expr::col(identity::Column::DisplayName)))
                        .like(pattern.clone()),
                ),
        )
        .to_owned();
    Condition::any()
        .add(lower(Column::DisplayName).like(pattern.clone()))
        .add(lower(Column::GivenName).like(pattern.clone()))
        .add(lower(Column::FamilyName).like(pattern))
        .add(Column::Id.in_subquery(by_point))
        .add(Column::Id.in_subquery(by_handle))
}

/// One page of the workspace's customers matching `filter`, each with the relations
/// `wanted` that a page reads in its own statement on PostgreSQL (`domain::view::list`);
/// elsewhere, or when that statement fails, the page alone (the relations, `Related`
/// empty, then go through the loaders).
pub async fn list(
    db: &impl ConnectionTrait,
    caller: &Caller,
    filter: &CustomerFilter,
    order: CustomerOrderField,
    descending: bool,
    args: &PageArgs,
    wanted: &super::view::Wanted,
) -> Result<Page<(Model, super::view::Related)>> {
    let (statement, sort, window) = page_statement(db, caller, filter, order, descending, args)?;
    if db.get_database_backend() == sea_orm::DatabaseBackend::Postgres && wanted.has_list_blocks() {
        let read = super::view::list(
            db,
            statement.clone(),
            sea_orm::IdenStatic::as_str(&sort.column),
            sort.read_descending(&window),
            window.size,
            wanted,
        )
        .await?;
        if let Some(rows) = read {
            return Ok(page::finish(rows, &window));
        }
    }
    let rows: Vec<Model> = super::decode::all(db, statement).await?;
    let rows = rows
        .into_iter()
        .map(|row| (row, Default::default()))
        .collect();
    Ok(page::finish(rows, &window))
}

/// The statement of a page of [`list`] (the customers alone), its sort and its window.
fn page_statement(
    db: &impl ConnectionTrait,
    caller: &Caller,
    filter: &CustomerFilter,
    order: CustomerOrderField,
    descending: bool,
    args: &PageArgs,
) -> Result<(sea_orm::Statement, Sort<Entity>, page::Window)> {
    let sort = sort(order, descending);
    let window = args.window(sort.name)?;
    let filter = &filter.clone().checked()?;
    let select = sort.order_and_limit(
        sort.between(filtered(caller.workspace_id, filter), &window)?,
        &window,
    );
    let statement = sea_orm::QueryTrait::build(&select, db.get_database_backend());
    Ok((statement, sort, window))
}

/// How many customers match `filter`.
pub async fn count(
    db: &impl ConnectionTrait,
    caller: &Caller,
    filter: &CustomerFilter,
) -> Result<u64> {
    let filter = &filter.clone().checked()?;
    Ok(filtered(caller.workspace_id, filter).count(db).await?)
}

/// A customer of the caller's workspace, or `NOT_FOUND`.
pub async fn get(db: &impl ConnectionTrait, caller: &Caller, id: CustomerId) -> Result<Model> {
    super::find_scoped(db, caller.workspace_id, id).await
}

/// A customer something is about to be written to or linked with: `NOT_FOUND`, and
/// `CONFLICT` for a customer merged into another (what is written to its tombstone would
/// be seen nowhere).
pub async fn get_live(db: &impl ConnectionTrait, caller: &Caller, id: CustomerId) -> Result<Model> {
    let model = get(db, caller, id).await?;
    match model.merged_into {
        Some(survivor) => Err(Error::Conflict(format!(
            "customer {} was merged into {}: use that id, or unmerge it first",
            crate::ids::encode(id),
            crate::ids::encode(survivor)
        ))),
        None => Ok(model),
    }
}

/// A customer by the caller's own id for them (`externalId`).
pub async fn by_external_id(
    db: &impl ConnectionTrait,
    caller: &Caller,
    external_id: &str,
) -> Result<Option<Model>> {
    let external_id = super::text::check_lookup("externalId", external_id, 200)?;
    Ok(super::scoped::<Entity>(caller.workspace_id)
        .filter(Column::ExternalId.eq(external_id))
        .one(db)
        .await?)
}

pub(super) fn external_id_taken(external_id: Option<&str>) -> String {
    format!(
        "another customer already has the externalId {}",
        external_id.unwrap_or_default()
    )
}

async fn check_organization(
    db: &impl ConnectionTrait,
    caller: &Caller,
    organization: Option<OrganizationId>,
) -> Result<()> {
    if let Some(organization) = organization {
        super::organization::get(db, caller, organization).await?;
    }
    Ok(())
}

/// Creates a customer with its contact points and tags, all or nothing.
pub async fn create(
    db: &impl TransactionTrait,
    caller: &Caller,
    input: NewCustomer,
) -> Result<Model> {
    caller.require(Role::Agent, "creating a customer")?;
    let given_name = validate::name("givenName", input.given_name)?;
    let family_name = validate::name("familyName", input.family_name)?;
    let display_name = match validate::name("displayName", input.display_name)? {
        Some(name) => name,
        None => derive_display_name(
            given_name.as_deref(),
            family_name.as_deref(),
            &input.contact_points,
        )?,
    };
    let external_id = clean_optional("externalId", input.external_id, 200)?;
    let custom = custom_object("customAttributes", input.custom)?;
    let now = super::now();
    let birth_date = input
        .birth_date
        .map(|date| validate::birth_date("birthDate", date, now.date_naive()))
        .transpose()?;
    let address = input
        .postal_address
        .map(|address| address.checked("postalAddress"))
        .transpose()?
        .unwrap_or_default();
    let row = customer::ActiveModel {
        id: Set(CustomerId::new()),
        workspace_id: Set(caller.workspace_id),
        display_name: Set(display_name),
        given_name: Set(given_name),
        family_name: Set(family_name),
        lifecycle_stage: Set(input.lifecycle_stage.unwrap_or(LifecycleStage::Lead)),
        external_id: Set(external_id.clone()),
        organization_id: Set(input.organization_id),
        custom: Set(custom),
        merged_into: Set(None),
        first_seen_at: Set(now),
        last_seen_at: Set(now),
        created_at: Set(now),
        updated_at: Set(now),
        birth_date: Set(birth_date),
        street: Set(address.street),
        street2: Set(address.street2),
        locality: Set(address.locality),
        region: Set(address.region),
        postal_code: Set(address.postal_code),
        country: Set(address.country),
    };
    let txn = super::begin_write(db).await?;
    check_organization(&txn, caller, input.organization_id).await?;
    let model = row
        .insert(&txn)
        .await
        .map_err(|err| Error::on_unique(err, || external_id_taken(external_id.as_deref())))?;
    for (index, point) in input.contact_points.into_iter().enumerate() {
        contact_point::insert(&txn, caller.workspace_id, model.id, point)
            .await
            .map_err(|err| err.within(&format!("contactPoints[{index}]")))?;
    }
    for (index, name) in input.tags.iter().enumerate() {
        super::tag::attach(&txn, caller.workspace_id, model.id, name, None)
            .await
            .map_err(|err| err.within(&format!("tags[{index}]")))?;
    }
    super::event::append(&txn, caller.workspace_id, Event::CustomerCreated(&model)).await?;
    // Suggested, never merged: the caller asked for this record.
    super::dedupe::check(&txn, caller.workspace_id, &[model.id], now).await?;
    txn.commit().await?;
    Ok(model)
}

fn derive_display_name(
    given: Option<&str>,
    family: Option<&str>,
    points: &[NewContactPoint],
) -> Result<String> {
    let joined = [given, family]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join(" ");
    if !joined.is_empty() {
        return Ok(joined);
    }
    points
        .iter()
        .find(|point| point.kind == ContactPointKind::Email)
        .map(|point| point.value.trim().to_owned())
        .filter(|email| !email.is_empty())
        .ok_or_else(|| {
            Error::field(
                "displayName",
                "give a displayName, a givenName or familyName, or an e-mail contact point",
            )
        })
}

/// Applies `changes` to a customer of the caller's workspace.
pub async fn update(
    db: &impl TransactionTrait,
    caller: &Caller,
    id: CustomerId,
    changes: CustomerChanges,
) -> Result<Model> {
    let how = super::Update {
        role: Role::Agent,
        action: "updating a customer",
        taken: Some(|row: &customer::ActiveModel| {
            external_id_taken(super::set_value(&row.external_id).and_then(Option::as_deref))
        }),
        event: |model| Event::CustomerUpdated(model),
    };
    let model = super::update(db, caller, id, how, async |txn, current, row| {
        if current.merged_into.is_some() {
            get_live(txn, caller, id).await?;
        }
        if let Some(name) = changes.display_name {
            row.display_name = Set(validate::required_name("displayName", &name)?);
        }
        if let Some(given) = changes.given_name {
            row.given_name = Set(validate::name("givenName", given)?);
        }
        if let Some(family) = changes.family_name {
            row.family_name = Set(validate::name("familyName", family)?);
        }
        if let Some(date) = changes.birth_date {
            let today = super::now().date_naive();
            row.birth_date = Set(date
                .map(|date| validate::birth_date("birthDate", date, today))
                .transpose()?);
        }
        if let Some(address) = changes.postal_address {
            let address = address
                .map(|address| address.checked("postalAddress"))
                .transpose()?
                .unwrap_or_default();
            row.street = Set(address.street);
            row.street2 = Set(address.street2);
            row.locality = Set(address.locality);
            row.region = Set(address.region);
            row.postal_code = Set(address.postal_code);
            row.country = Set(address.country);
        }
        if let Some(stage) = changes.lifecycle_stage {
            row.lifecycle_stage = Set(stage);
        }
        if let Some(external_id) = changes.external_id {
            row.external_id = Set(clean_optional("externalId", external_id, 200)?);
        }
        if let Some(organization) = changes.organization_id {
            check_organization(txn, caller, organization).await?;
            row.organization_id = Set(organization);
        }
        if let Some(custom) = changes.custom {
            row.custom = Set(custom_object("customAttributes", Some(custom))?);
        }
        Ok(())
    })
    .await?;
    // The changed profile is checked again (its keys follow it); a suggestion, never a
    // merge, and in a transaction of its own: the change stands either way.
    let checked = async {
        let txn = super::begin_write(db).await?;
        super::dedupe::check(&txn, caller.workspace_id, &[model.id], model.updated_at).await?;
        txn.commit().await?;
        Ok::<(), Error>(())
    };
    if let Err(err) = checked.await {
        // The change is stored; the check runs again with the next write or `rapport dedupe`.
        tracing::warn!(customer = %model.id, error = %err, "duplicate check after an update failed");
    }
    Ok(model)
}

/// Deletes a customer and everything that is only theirs (identities, contact points,
/// conversations, interactions, notes); deals stay, unlinked. Admins only. Their items
/// are tombstoned so a re-pull does not store them again ([`super::erase::delete`]).
pub async fn delete(db: &impl TransactionTrait, caller: &Caller, id: CustomerId) -> Result<()> {
    super::erase::delete(db, caller, id).await
}

/// The one shape of a change to what belongs to a customer (contact points, tags, notes):
/// a write transaction, the customer (`NOT_FOUND`), the `change`, the customer marked as
/// changed ([`touch`]), the commit. The caller checks its role and input before.
pub async fn change_belonging<T>(
    db: &impl TransactionTrait,
    caller: &Caller,
    id: CustomerId,
    change: impl AsyncFnOnce(&DatabaseTransaction) -> Result<T>,
) -> Result<T> {
    let txn = super::begin_write(db).await?;
    get_live(&txn, caller, id).await?;
    let changed = change(&txn).await?;
    touch(&txn, caller.workspace_id, id).await?;
    txn.commit().await?;
    Ok(changed)
}

/// Marks a customer as changed (a contact point, tag or note moved) and logs the change.
pub async fn touch(
    db: &impl ConnectionTrait,
    workspace_id: WorkspaceId,
    id: CustomerId,
) -> Result<()> {
    let now = super::now();
    Entity::update_many()
        .col_expr(Column::UpdatedAt, Expr::value(now))
        .filter(Column::WorkspaceId.eq(workspace_id))
        .filter(Column::Id.eq(id))
        .exec(db)
        .await?;
    if let Some(model) = Entity::find_by_id(id).one(db).await? {
        super::event::append(db, workspace_id, Event::CustomerUpdated(&model)).await?;
    }
    Ok(())
}

/// Widens a customer's first/last seen to include `at` (after a new interaction). No
/// event: the interaction's own `interaction.created` names the customer, and the seen
/// times follow from the interactions; consumers that keep them (the search index)
/// refresh the customer on that event. A `customer.updated` per new item was a quarter of
/// the rows ingestion wrote to the log, each a whole customer row. So a caller must
/// append that interaction's `interaction.created` in the same transaction.
pub async fn seen_at(
    db: &impl ConnectionTrait,
    workspace_id: WorkspaceId,
    id: CustomerId,
    at: DateTime<Utc>,
) -> Result<()> {
    let Some(model) = Entity::find_by_id(id)
        .one(db)
        .await?
        .filter(|m| m.workspace_id == workspace_id)
    else {
        return Ok(());
    };
    if at >= model.first_seen_at && at <= model.last_seen_at {
        return Ok(());
    }
    let mut row: customer::ActiveModel = model.clone().into();
    row.first_seen_at = Set(model.first_seen_at.min(at));
    row.last_seen_at = Set(model.last_seen_at.max(at));
    row.updated_at = Set(super::now());
    row.update(db).await?;
    Ok(())
}

/// Creates a customer for an unknown author of an inbound item (stage `subscriber`),
/// inside the caller's transaction, with its event.
pub async fn create_subscriber(
    db: &impl ConnectionTrait,
    workspace_id: WorkspaceId,
    name: &str,
    at: DateTime<Utc>,
) -> Result<Model> {
    let now = super::now();
    let name: String = name.chars().take(200).collect();
    let row = customer::ActiveModel {
        id: Set(CustomerId::new()),
        workspace_id: Set(workspace_id),
        display_name: Set(name),
        given_name: Set(None),
        family_name: Set(None),
        lifecycle_stage: Set(LifecycleStage::Subscriber),
        external_id: Set(None),
        organization_id: Set(None),
        custom: Set(serde_json::json!({})),
        merged_into: Set(None),
        first_seen_at: Set(at.min(now)),
        last_seen_at: Set(at.min(now)),
        created_at: Set(now),
        updated_at: Set(now),
        birth_date: Set(None),
        street: Set(None),
        street2: Set(None),
        locality: Set(None),
        region: Set(None),
        postal_code: Set(None),
        country: Set(None),
    };
    let model = row.insert(db).await?;
    super::event::append(db, workspace_id, Event::CustomerCreated(&model)).await?;
    Ok(model)
}
