//! Data quality of a workspace (`dataQuality`, `rapport quality`): over its live customers
//! (not merged away), how complete each field is, how many stored values today's rules
//! ([`super::validate`]) refuse, how many values ingestion and imports dropped as invalid,
//! the pending duplicate suggestions, the customers without a contact point and the stale
//! ones, with a score; and the same report kept once a day (`quality_snapshot`) for its
//! trend. The figures come from one aggregate statement; the validity check reads the
//! stored values in keyset chunks, so a large workspace is never held in memory.
//!
//! Dropped values are counted where ingestion drops them ([`Dropped`], written by the
//! batch in its own transaction, so a rolled-back batch counts nothing) and where an
//! import does, per workspace, day (UTC), origin and field (`dropped_value`).

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};

use chrono::{DateTime, NaiveDate, Utc};
use sea_orm::sea_query::{Expr, OnConflict, Query};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, FromQueryResult, QueryFilter,
    QueryOrder, QuerySelect, Value,
};
use serde::{Deserialize, Serialize};

use super::{validate, Caller, ContactPointKind};
use crate::error::{Error, Result};
use entity::{contact_point, customer, dropped_value, quality_snapshot, workspace};
use entity::{CustomerId, WorkspaceId};

/// Rows read at a time by the validity check.
const CHUNK: u64 = 1_000;
/// The longest trend, in days (a year, leap day included).
pub const MAX_TREND_DAYS: i64 = 366;
/// The trend's length when not given.
pub const DEFAULT_TREND_DAYS: i64 = 30;
/// The origin of the values an import dropped (a source's are its id, `src_…`).
pub const IMPORT_ORIGIN: &str = "import";

string_enum!(
    /// A customer field the data-quality report measures.
    QualityField {
        /// The name shown for the customer.
        DisplayName = "display_name",
        /// The given (first) name.
        GivenName = "given_name",
        /// The family (last) name.
        FamilyName = "family_name",
        /// The birth date.
        BirthDate = "birth_date",
        /// The postal address's first line.
        Street = "street",
        /// The postal address's second line.
        #[graphql(name = "STREET2")]
        Street2 = "street2",
        /// The city or town.
        Locality = "locality",
        /// The region, state or province.
        Region = "region",
        /// The postal code.
        PostalCode = "postal_code",
        /// The country (ISO 3166-1 alpha-2).
        Country = "country",
        /// The organization the customer belongs to.
        Organization = "organization",
        /// An e-mail contact point.
        Email = "email",
        /// A phone contact point.
        Phone = "phone",
        /// A website contact point.
        Website = "website",
    }
);

/// The fields whose completeness is measured, in the report's order.
pub const COMPLETENESS_FIELDS: [QualityField; 10] = [
    QualityField::GivenName,
    QualityField::FamilyName,
    QualityField::BirthDate,
    QualityField::Street,
    QualityField::Locality,
    QualityField::PostalCode,
    QualityField::Country,
    QualityField::Organization,
    QualityField::Email,
    QualityField::Phone,
];

/// The fields whose stored values are checked against today's rules, in the report's order.
pub const CHECKED_FIELDS: [QualityField; 13] = [
    QualityField::DisplayName,
    QualityField::GivenName,
    QualityField::FamilyName,
    QualityField::BirthDate,
    QualityField::Street,
    QualityField::Street2,
    QualityField::Locality,
    QualityField::Region,
    QualityField::PostalCode,
    QualityField::Country,
    QualityField::Email,
    QualityField::Phone,
    QualityField::Website,
];

impl Serialize for QualityField {
    fn serialize<S: serde::Serializer>(
        &self,
        serializer: S,
    ) -> std::result::Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for QualityField {
    fn deserialize<D: serde::Deserializer<'de>>(
        deserializer: D,
    ) -> std::result::Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        QualityField::parse(&text)
            .ok_or_else(|| serde::de::Error::custom(format!("`{text}` is not a quality field")))
    }
}

/// How many live customers have a field.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FieldCompleteness {
    pub field: QualityField,
    pub filled: u64,
    /// `filled` over the live customers; 1 when there are none (nothing is missing).
    pub ratio: f64,
}

/// A number of values of one field.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FieldCount {
    pub field: QualityField,
    pub count: u64,
}

/// A workspace's data quality at one moment. Its JSON form is what `quality_snapshot`
/// stores and `rapport quality --json` prints; fields a newer build adds read as their
/// defaults from older snapshots.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct QualityReport {
    /// Live customers (merged ones aside).
    pub customers: u64,
    /// Per field of [`COMPLETENESS_FIELDS`].
    pub completeness: Vec<FieldCompleteness>,
    /// Stored values today's rules refuse, per field of [`CHECKED_FIELDS`] (zeros included).
    pub invalid_values: Vec<FieldCount>,
    /// Customers with at least one such value.
    pub with_invalid_values: u64,
    /// Values ingestion and imports dropped as invalid on the report's day (UTC), per
    /// field (only fields with some).
    pub dropped_values: Vec<FieldCount>,
    /// Pending duplicate suggestions between two live customers.
    pub pending_duplicates: u64,
    /// Customers without any contact point (e-mail, phone, address or website).
    pub without_contact_point: u64,
    /// Customers with no activity (`lastSeenAt`) and no change (`updatedAt`) for
    /// `stale_after_days`.
    pub stale: u64,
    /// The workspace's setting the report used.
    pub stale_after_days: u32,
    /// See [`score`].
    pub score: f64,
    /// When it was computed.
    pub computed_at: DateTime<Utc>,
}

/// The overall score in [0, 1], 1 for an empty workspace: the mean of five parts, each in
/// [0, 1] — completeness (the mean ratio of the completeness fields), validity (customers
/// without an invalid value), reachability (customers with a contact point), freshness
/// (customers not stale) and uniqueness (1 − pending duplicates per customer, at least 0)
/// — rounded to three decimals.
pub fn score(report: &QualityReport) -> f64 {
    if report.customers == 0 {
        return 1.0;
    }
    let customers = report.customers as f64;
    let part = |bad: u64| (1.0 - bad as f64 / customers).clamp(0.0, 1.0);
    let completeness = if report.completeness.is_empty() {
        1.0
    } else {
        report.completeness.iter().map(|c| c.ratio).sum::<f64>() / report.completeness.len() as f64
    };
    let parts = [
        completeness,
        part(report.with_invalid_values),
        part(report.without_contact_point),
        part(report.stale),
        part(report.pending_duplicates),
    ];
    let mean = parts.iter().sum::<f64>() / parts.len() as f64;
    (mean * 1_000.0).round() / 1_000.0
}

/// The report of the caller's workspace at `now` (any role that reads customers).
pub async fn report(
    db: &impl ConnectionTrait,
    caller: &Caller,
    now: DateTime<Utc>,
) -> Result<QualityReport> {
    compute(db, caller.workspace_id, now).await
}

async fn compute(
    db: &impl ConnectionTrait,
    workspace_id: WorkspaceId,
    now: DateTime<Utc>,
) -> Result<QualityReport> {
    let settings = super::workspace::settings(db, workspace_id).await?;
    let stale_after_days = settings.stale_after_days();
    let cutoff = now - chrono::Duration::days(i64::from(stale_after_days));
    let figures = figures(db, workspace_id, cutoff).await?;
    let customers = figures.customers;
    let completeness = COMPLETENESS_FIELDS
        .iter()
        .map(|&field| {
            let filled = figures.filled(field);
            FieldCompleteness {
                field,
                filled,
                ratio: if customers == 0 {
                    1.0
                } else {
                    filled as f64 / customers as f64
                },
            }
        })
        .collect();
    let invalid = invalid_values(
        db,
        workspace_id,
        settings.default_phone_region.as_deref(),
        now.date_naive(),
    )
    .await?;
    let dropped = dropped_on(db, workspace_id, now.date_naive()).await?;
    let mut report = QualityReport {
        customers,
        completeness,
        invalid_values: CHECKED_FIELDS
            .iter()
            .map(|&field| FieldCount {
                field,
                count: invalid.counts.get(&field).copied().unwrap_or(0),
            })
            .collect(),
        with_invalid_values: invalid.customers.len() as u64,
        dropped_values: dropped,
        pending_duplicates: figures.pending_duplicates,
        without_contact_point: figures.without_contact_point,
        stale: figures.stale,
        stale_after_days,
        score: 0.0,
        computed_at: now,
    };
    report.score = score(&report);
    Ok(report)
}

/// What the aggregate statement counts.
struct Figures {
    customers: u64,
    filled: BTreeMap<QualityField, u64>,
    without_contact_point: u64,
    stale: u64,
    pending_duplicates: u64,
}

impl Figures {
    fn filled(&self, field: QualityField) -> u64 {
        self.filled.get(&field).copied().unwrap_or(0)
    }
}

/// Every count of the report but the validity check's, in one statement: the live
/// customers, each with their contact points' kinds (one grouped read of the workspace's
/// contact points, joined), and the pending suggestions between live customers.
async fn figures(
    db: &impl ConnectionTrait,
    workspace_id: WorkspaceId,
    cutoff: DateTime<Utc>,
) -> Result<Figures> {
    let text = |column: &str| {
        format!(
            "COUNT(CASE WHEN c.{column} IS NOT NULL AND c.{column} <> '' THEN 1 END) AS {column}"
        )
    };
    let sql = format!(
        "SELECT COUNT(*) AS customers, {given}, {family}, COUNT(c.birth_date) AS birth_date, \
         {street}, {locality}, {postal}, {country}, \
         COUNT(c.organization_id) AS organization, \
         COUNT(CASE WHEN p.emails > 0 THEN 1 END) AS email, \
         COUNT(CASE WHEN p.phones > 0 THEN 1 END) AS phone, \
         COUNT(CASE WHEN p.customer_id IS NULL THEN 1 END) AS without_contact_point, \
         COUNT(CASE WHEN c.last_seen_at < ? AND c.updated_at < ? THEN 1 END) AS stale, \
         (SELECT COUNT(*) FROM duplicate_suggestion d \
            JOIN customer a ON a.id = d.customer_a AND a.merged_into IS NULL \
            JOIN customer b ON b.id = d.customer_b AND b.merged_into IS NULL \
          WHERE d.workspace_id = ? AND d.status = 'pending') AS pending_duplicates \
         FROM customer c \
         LEFT JOIN (SELECT customer_id, \
              COUNT(CASE WHEN kind = 'email' THEN 1 END) AS emails, \
              COUNT(CASE WHEN kind = 'phone' THEN 1 END) AS phones \
            FROM contact_point WHERE workspace_id = ? GROUP BY customer_id) p \
           ON p.customer_id = c.id \
         WHERE c.workspace_id = ? AND c.merged_into IS NULL",
        given = text("given_name"),
        family = text("family_name"),
        street = text("street"),
        locality = text("locality"),
        postal = text("postal_code"),
        country = text("country"),
    );
    let values: Vec<Value> = vec![
        cutoff.into(),
        cutoff.into(),
        workspace_id.into(),
        workspace_id.into(),
        workspace_id.into(),
    ];
    let row = db
        .query_one(super::statement(db.get_database_backend(), &sql, values))
        .await?
        .ok_or_else(|| Error::Internal("the quality aggregate returned no row".into()))?;
    let count = |name: &str| -> Result<u64> {
        Ok(u64::try_from(row.try_get::<i64>("", name)?).unwrap_or(0))
    };
    let mut filled = BTreeMap::new();
    for field in COMPLETENESS_FIELDS {
        filled.insert(field, count(field.as_str())?);
    }
    Ok(Figures {
        customers: count("customers")?,
        filled,
        without_contact_point: count("without_contact_point")?,
        stale: count("stale")?,
        pending_duplicates: count("pending_duplicates")?,
    })
}

/// The validity check's result.
#[derive(Default)]
struct Invalid {
    counts: BTreeMap<QualityField, u64>,
    customers: HashSet<CustomerId>,
}

impl Invalid {
    fn note(&mut self, customer: CustomerId, field: QualityField) {
        *self.counts.entry(field).or_default() += 1;
        self.customers.insert(customer);
    }
}

/// The columns of a customer the validity check reads.
#[derive(FromQueryResult)]
struct StoredFields {
    id: CustomerId,
    display_name: String,
    given_name: Option<String>,
    family_name: Option<String>,
    birth_date: Option<NaiveDate>,
    street: Option<String>,
    street2: Option<String>,
    locality: Option<String>,
    region: Option<String>,
    postal_code: Option<String>,
    country: Option<String>,
}

/// The fields of `row` today's rules refuse.
fn refused_fields(row: &StoredFields, today: NaiveDate) -> Vec<QualityField> {
    use QualityField as F;
    let mut refused = Vec::new();
    if validate::required_name("displayName", &row.display_name).is_err() {
        refused.push(F::DisplayName);
    }
    for (field, value) in [
        (F::GivenName, &row.given_name),
        (F::FamilyName, &row.family_name),
    ] {
        if value
            .as_ref()
            .is_some_and(|value| validate::name(field.as_str(), Some(value.clone())).is_err())
        {
            refused.push(field);
        }
    }
    if row
        .birth_date
        .is_some_and(|date| validate::birth_date("birthDate", date, today).is_err())
    {
        refused.push(F::BirthDate);
    }
    for (field, value, max) in [
        (F::Street, &row.street, validate::MAX_STREET_CHARS),
        (F::Street2, &row.street2, validate::MAX_STREET_CHARS),
        (F::Locality, &row.locality, validate::MAX_PLACE_CHARS),
        (F::Region, &row.region, validate::MAX_PLACE_CHARS),
    ] {
        if value.as_ref().is_some_and(|value| {
            validate::address_line(field.as_str(), Some(value.clone()), max).is_err()
        }) {
            refused.push(field);
        }
    }
    let country = row
        .country
        .as_ref()
        .map(|value| validate::country("country", value));
    if matches!(country, Some(Err(_))) {
        refused.push(F::Country);
    }
    let country = country.and_then(|country| country.ok());
    if row
        .postal_code
        .as_ref()
        .is_some_and(|code| validate::postal_code("postalCode", code, country.as_deref()).is_err())
    {
        refused.push(F::PostalCode);
    }
    refused
}

/// The stored contact points the validity check reads.
#[derive(FromQueryResult)]
struct StoredPoint {
    customer_id: CustomerId,
    value: String,
    normalized: String,
}

/// Reads the live customers' fields and their e-mail, phone and website contact points
/// in chunks of [`CHUNK`] rows and checks each value as a write would today (a phone in
/// the workspace's default region). The chunks follow indexes that start with the
/// workspace: customers by (display name, id), contact points of each kind by normalised
/// value (unique in the workspace), so a small workspace in a large database reads only
/// its own rows.
async fn invalid_values(
    db: &impl ConnectionTrait,
    workspace_id: WorkspaceId,
    region: Option<&str>,
    today: NaiveDate,
) -> Result<Invalid> {
    let mut invalid = Invalid::default();
    let mut after: Option<(String, CustomerId)> = None;
    loop {
        let mut query = customer::Entity::find()
            .select_only()
            .columns([
                customer::Column::Id,
                customer::Column::DisplayName,
                customer::Column::GivenName,
                customer::Column::FamilyName,
                customer::Column::BirthDate,
                customer::Column::Street,
                customer::Column::Street2,
                customer::Column::Locality,
                customer::Column::Region,
                customer::Column::PostalCode,
                customer::Column::Country,
            ])
            .filter(customer::Column::WorkspaceId.eq(workspace_id))
            .filter(customer::Column::MergedInto.is_null());
        if let Some((name, id)) = after.take() {
            query = query.filter(
                Expr::tuple([
                    Expr::col((customer::Entity, customer::Column::DisplayName)).into(),
                    Expr::col((customer::Entity, customer::Column::Id)).into(),
                ])
                .gt(Expr::tuple([Expr::val(name).into(), Expr::val(id).into()])),
            );
        }
        let rows = query
            .order_by_asc(customer::Column::DisplayName)
            .order_by_asc(customer::Column::Id)
            .limit(CHUNK)
            .into_model::<StoredFields>()
            .all(db)
            .await?;
        for row in &rows {
            for field in refused_fields(row, today) {
                invalid.note(row.id, field);
            }
        }
        match rows.last() {
            Some(last) if rows.len() as u64 == CHUNK => {
                after = Some((last.display_name.clone(), last.id));
            }
            _ => break,
        }
    }
    for (kind, field) in [
        (ContactPointKind::Email, QualityField::Email),
        (ContactPointKind::Phone, QualityField::Phone),
        (ContactPointKind::Website, QualityField::Website),
    ] {
        let mut after: Option<String> = None;
        loop {
            let mut query = contact_point::Entity::find()
                .select_only()
                .columns([
                    contact_point::Column::CustomerId,
                    contact_point::Column::Value,
                    contact_point::Column::Normalized,
                ])
                .filter(contact_point::Column::WorkspaceId.eq(workspace_id))
                .filter(contact_point::Column::Kind.eq(kind.as_str()))
                .filter(Expr::cust(
                    "EXISTS (SELECT 1 FROM customer cu WHERE cu.id = contact_point.customer_id \
                     AND cu.merged_into IS NULL)",
                ));
            if let Some(after) = after.take() {
                query = query.filter(contact_point::Column::Normalized.gt(after));
            }
            let rows = query
                .order_by_asc(contact_point::Column::Normalized)
                .limit(CHUNK)
                .into_model::<StoredPoint>()
                .all(db)
                .await?;
            for row in &rows {
                if super::contact_point::normalize_in(kind, &row.value, region).is_err() {
                    invalid.note(row.customer_id, field);
                }
            }
            match rows.last() {
                Some(last) if rows.len() as u64 == CHUNK => after = Some(last.normalized.clone()),
                _ => break,
            }
        }
    }
    Ok(invalid)
}

/// The values dropped on `day`, per field, summed over origins.
async fn dropped_on(
    db: &impl ConnectionTrait,
    workspace_id: WorkspaceId,
    day: NaiveDate,
) -> Result<Vec<FieldCount>> {
    let by_day = dropped_between(db, workspace_id, day, day).await?;
    Ok(by_day.into_values().next().unwrap_or_default())
}

/// The values dropped from `first` to `last` (both included), per day and field.
async fn dropped_between(
    db: &impl ConnectionTrait,
    workspace_id: WorkspaceId,
    first: NaiveDate,
    last: NaiveDate,
) -> Result<BTreeMap<NaiveDate, Vec<FieldCount>>> {
    let rows: Vec<(NaiveDate, String, i64)> = dropped_value::Entity::find()
        .select_only()
        .column(dropped_value::Column::Day)
        .column(dropped_value::Column::Field)
        .column_as(Expr::cust("CAST(SUM(\"count\") AS BIGINT)"), "count")
        .filter(dropped_value::Column::WorkspaceId.eq(workspace_id))
        .filter(dropped_value::Column::Day.gte(first))
        .filter(dropped_value::Column::Day.lte(last))
        .group_by(dropped_value::Column::Day)
        .group_by(dropped_value::Column::Field)
        .into_tuple()
        .all(db)
        .await?;
    let mut by_day: BTreeMap<NaiveDate, Vec<FieldCount>> = BTreeMap::new();
    for (day, field, count) in rows {
        // A field this build does not know (a newer one's) is left out.
        if let Some(field) = QualityField::parse(&field) {
            by_day.entry(day).or_default().push(FieldCount {
                field,
                count: u64::try_from(count).unwrap_or(0),
            });
        }
    }
    for counts in by_day.values_mut() {
        counts.sort_by_key(|count| count.field);
    }
    Ok(by_day)
}

/// Values of each field dropped as invalid while writing one batch (or one import
/// batch); shared by reference with the closures that validate, hence atomics.
#[derive(Debug, Default)]
pub struct Dropped {
    counts: [AtomicU64; CHECKED_FIELDS.len()],
}

impl Dropped {
    /// One value of `field` dropped.
    pub fn note(&self, field: QualityField) {
        if let Some(n) = CHECKED_FIELDS.iter().position(|&f| f == field) {
            self.counts[n].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// One contact value of `kind` dropped.
    pub fn note_point(&self, kind: ContactPointKind) {
        match kind {
            ContactPointKind::Email => self.note(QualityField::Email),
            ContactPointKind::Phone => self.note(QualityField::Phone),
            ContactPointKind::Website => self.note(QualityField::Website),
            ContactPointKind::Address => {}
        }
    }

    /// The fields with drops and how many, emptying the counter.
    fn take(&self) -> Vec<(QualityField, u64)> {
        CHECKED_FIELDS
            .iter()
            .zip(&self.counts)
            .filter_map(|(&field, count)| {
                let count = count.swap(0, Ordering::Relaxed);
                (count > 0).then_some((field, count))
            })
            .collect()
    }
}

/// Adds what `dropped` holds to the workspace's counters of `day` for `origin` (a
/// source's id, or [`IMPORT_ORIGIN`]), and empties it; nothing is written when nothing
/// was dropped. Inside ingestion's transaction, so a batch rolled back counts nothing;
/// one origin's rows are only written by that source's batches, which its lease runs
/// one at a time, so the upsert waits on no other writer.
pub async fn count_dropped(
    db: &impl ConnectionTrait,
    workspace_id: WorkspaceId,
    origin: &str,
    day: NaiveDate,
    dropped: &Dropped,
) -> Result<()> {
    let counts = dropped.take();
    if counts.is_empty() {
        return Ok(());
    }
    let rows = counts
        .into_iter()
        .map(|(field, count)| dropped_value::ActiveModel {
            workspace_id: Set(workspace_id),
            day: Set(day),
            origin: Set(origin.to_owned()),
            field: Set(field.as_str().to_owned()),
            count: Set(i64::try_from(count).unwrap_or(i64::MAX)),
        });
    dropped_value::Entity::insert_many(rows)
        .on_conflict(
            OnConflict::columns([
                dropped_value::Column::WorkspaceId,
                dropped_value::Column::Day,
                dropped_value::Column::Origin,
                dropped_value::Column::Field,
            ])
            .value(
                dropped_value::Column::Count,
                Expr::col((dropped_value::Entity, dropped_value::Column::Count))
                    .add(Expr::cust("excluded.\"count\"")),
            )
            .to_owned(),
        )
        .exec_without_returning(db)
        .await?;
    Ok(())
}

/// One day's report.
#[derive(Clone, Debug, PartialEq)]
pub struct Snapshot {
    /// The day (UTC) it stands for.
    pub day: NaiveDate,
    /// When it was last recorded.
    pub recorded_at: DateTime<Utc>,
    /// The report as recorded, its dropped values those of the whole day (read from the
    /// counters, so a report recorded early in the day still shows the day's total).
    pub report: QualityReport,
}

/// Keeps `report` as the caller's workspace's report of `day`: the first of that day
/// inserts it, a later one replaces it (one row per workspace and day, whichever process
/// writes).
pub async fn record(
    db: &impl ConnectionTrait,
    caller: &Caller,
    day: NaiveDate,
    report: &QualityReport,
) -> Result<()> {
    store(db, caller.workspace_id, day, report).await
}

async fn store(
    db: &impl ConnectionTrait,
    workspace_id: WorkspaceId,
    day: NaiveDate,
    report: &QualityReport,
) -> Result<()> {
    let json = serde_json::to_value(report)
        .map_err(|err| Error::Internal(format!("the quality report did not serialise: {err}")))?;
    let now = super::now();
    let row = quality_snapshot::ActiveModel {
        workspace_id: Set(workspace_id),
        day: Set(day),
        report: Set(json),
        created_at: Set(now),
        updated_at: Set(now),
    };
    quality_snapshot::Entity::insert(row)
        .on_conflict(
            OnConflict::columns([
                quality_snapshot::Column::WorkspaceId,
                quality_snapshot::Column::Day,
            ])
            .update_columns([
                quality_snapshot::Column::Report,
                quality_snapshot::Column::UpdatedAt,
            ])
            .to_owned(),
        )
        .exec_without_returning(db)
        .await?;
    Ok(())
}

/// `days` checked for [`trend`]: 1 to [`MAX_TREND_DAYS`], else `BAD_USER_INPUT`.
pub fn check_trend_days(days: i64) -> Result<i64> {
    if (1..=MAX_TREND_DAYS).contains(&days) {
        Ok(days)
    } else {
        Err(Error::field(
            "days",
            format!("days must be 1 to {MAX_TREND_DAYS}, not {days}"),
        ))
    }
}

/// The caller's workspace's recorded reports of the `days` days up to `today` (today
/// included), oldest first; a day nothing recorded is missing. `BAD_USER_INPUT` unless
/// `days` is 1 to [`MAX_TREND_DAYS`].
pub async fn trend(
    db: &impl ConnectionTrait,
    caller: &Caller,
    days: i64,
    today: NaiveDate,
) -> Result<Vec<Snapshot>> {
    let days = check_trend_days(days)?;
    let first = today - chrono::Duration::days(days - 1);
    let rows = super::scoped::<quality_snapshot::Entity>(caller.workspace_id)
        .filter(quality_snapshot::Column::Day.gte(first))
        .filter(quality_snapshot::Column::Day.lte(today))
        .order_by_asc(quality_snapshot::Column::Day)
        .all(db)
        .await?;
    let mut dropped = dropped_between(db, caller.workspace_id, first, today).await?;
    Ok(rows
        .into_iter()
        .map(|row| {
            // A report that does not read (hand-edited) shows as empty rather than
            // failing the whole trend.
            let mut report: QualityReport = serde_json::from_value(row.report).unwrap_or_default();
            report.dropped_values = dropped.remove(&row.day).unwrap_or_default();
            Snapshot {
                day: row.day,
                recorded_at: row.updated_at,
                report,
            }
        })
        .collect())
}

/// Records today's report (`now`'s UTC day) of up to `limit` workspaces that have none
/// yet; the number recorded. The server's daily task calls it: when every workspace has
/// its report of the day it costs one statement, a primary-key probe per workspace. Two
/// processes may both record a workspace; the later report is kept.
pub async fn record_due(db: &impl ConnectionTrait, now: DateTime<Utc>, limit: u64) -> Result<u64> {
    let day = now.date_naive();
    let due: Vec<WorkspaceId> = workspace::Entity::find()
        .select_only()
        .column(workspace::Column::Id)
        .filter(
            Expr::exists(
                Query::select()
                    .expr(Expr::val(1))
                    .from(quality_snapshot::Entity)
                    .and_where(
                        Expr::col((
                            quality_snapshot::Entity,
                            quality_snapshot::Column::WorkspaceId,
                        ))
                        .equals((workspace::Entity, workspace::Column::Id)),
                    )
                    .and_where(quality_snapshot::Column::Day.eq(day))
                    .to_owned(),
            )
            .not(),
        )
        .order_by_asc(workspace::Column::Id)
        .limit(limit)
        .into_tuple()
        .all(db)
        .await?;
    let mut recorded = 0;
    for workspace_id in due {
        let report = compute(db, workspace_id, now).await?;
        store(db, workspace_id, day, &report).await?;
        recorded += 1;
    }
    Ok(recorded)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(customers: u64) -> QualityReport {
        QualityReport {
            customers,
            completeness: vec![FieldCompleteness {
                field: QualityField::GivenName,
                filled: customers / 2,
                ratio: 0.5,
            }],
            ..QualityReport::default()
        }
    }

    #[test]
    fn the_score_is_the_mean_of_five_parts() {
        assert_eq!(score(&report(0)), 1.0, "an empty workspace lacks nothing");
        // completeness 0.5, the four others 1: 4.5 / 5.
        assert_eq!(score(&report(10)), 0.9);
        let mut worse = report(10);
        worse.stale = 10;
        worse.pending_duplicates = 40;
        // completeness 0.5, freshness 0, uniqueness 0 (clamped), two at 1: 2.5 / 5.
        assert_eq!(score(&worse), 0.5);
    }

    #[test]
    fn a_report_reads_back_from_its_json_and_older_ones_default() {
        let mut given = report(3);
        given.invalid_values = vec![FieldCount {
            field: QualityField::Phone,
            count: 2,
        }];
        let json = serde_json::to_value(&given).unwrap();
        assert_eq!(json["invalidValues"][0]["field"], "phone");
        assert_eq!(
            serde_json::from_value::<QualityReport>(json).unwrap(),
            given
        );
        let older: QualityReport =
            serde_json::from_value(serde_json::json!({"customers": 7})).unwrap();
        assert_eq!(older.customers, 7);
        assert!(older.completeness.is_empty());
    }

    #[test]
    fn legacy_values_are_refused_by_field() {
        let today = NaiveDate::from_ymd_opt(2026, 12, 5).unwrap();
        let row = StoredFields {
            id: CustomerId::new(),
            display_name: "!!!".into(),
            given_name: Some("Ana".into()),
            family_name: Some("two\nlines".into()),
            birth_date: NaiveDate::from_ymd_opt(1850, 1, 1),
            street: Some("Calle Mayor 1".into()),
            street2: None,
            locality: None,
            region: None,
            postal_code: Some("2801".into()),
            country: Some("ES".into()),
        };
        assert_eq!(
            refused_fields(&row, today),
            vec![
                QualityField::DisplayName,
                QualityField::FamilyName,
                QualityField::BirthDate,
                QualityField::PostalCode,
            ]
        );
    }

    #[test]
    fn dropped_values_are_taken_once() {
        let dropped = Dropped::default();
        dropped.note_point(ContactPointKind::Phone);
        dropped.note_point(ContactPointKind::Phone);
        dropped.note(QualityField::Country);
        dropped.note_point(ContactPointKind::Address);
        assert_eq!(
            dropped.take(),
            vec![(QualityField::Country, 1), (QualityField::Phone, 2)]
        );
        assert!(dropped.take().is_empty());
    }
}
