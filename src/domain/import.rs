//! Bulk import of customers from CSV (a header row, RFC 4180 quoting) or JSON Lines (one
//! object a line), for `rapport import customers FILE` and `importCustomers`.
//!
//! Columns: `external_id, given_name, family_name, display_name, email, phone, street,
//! street2, locality, region, postal_code, country, birth_date, organization, tags,
//! lifecycle_stage` (also written camelCase or with spaces); any other column becomes a
//! custom attribute. `external_id` is required: it is what the row upserts on (the UNIQUE
//! `(workspace_id, external_id)` with `ON CONFLICT DO UPDATE`), so importing a file twice
//! changes nothing the second time, and a re-run of an interrupted import completes it
//! with the result of one clean run.
//!
//! Every value goes through `domain::validate`. A bad value is dropped and reported with
//! its line and field (and counted for the data-quality report, `domain::quality`), the
//! row kept; a row is rejected (not stored) only when it cannot be
//! one: no `external_id`, an `external_id` an earlier line had, no name and no e-mail to
//! name it, or a line that does not read. Empty cells leave the stored value as it is;
//! `custom` attributes are merged key by key; an e-mail, phone or tag is added when the
//! customer lacks it (an e-mail or phone another customer owns stays theirs, reported).
//!
//! Each batch is one transaction: its customers (one multi-row upsert), contact points and
//! tag links (`ON CONFLICT DO NOTHING`), and the `customer.created` / `customer.updated`
//! events that the search indexes follow. Rows that change nothing write nothing.

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, Read};

use chrono::{DateTime, NaiveDate, Utc};
use sea_orm::sea_query::{OnConflict, Query};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, FromQueryResult, QueryFilter,
    QueryOrder, QueryTrait, TransactionTrait,
};
use serde_json::{Map, Value};

use super::event::Event;
use super::quality::QualityField;
use super::validate::{self, PostalAddress};
use super::{Caller, ContactPointKind, LifecycleStage, Role};
use crate::error::{Error, Result};
use entity::{contact_point, customer, customer_tag, organization, tag};
use entity::{ContactPointId, CustomerId, OrganizationId, TagId, WorkspaceId};

/// Rows a transaction writes, unless the caller says otherwise.
pub const DEFAULT_BATCH_ROWS: usize = 500;
/// The most rows `importCustomers` takes inline (a larger file goes through the CLI).
pub const MAX_INLINE_ROWS: usize = 5_000;
/// The most tags one row may carry.
const MAX_ROW_TAGS: usize = 50;
/// Names in one `IN (…)` list.
const MAX_IN_LIST: usize = 1_000;

/// How the data is written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// Comma-separated values with a header row (RFC 4180).
    Csv,
    /// One JSON object a line.
    JsonLines,
}

impl Format {
    /// The format of a file by its name (`.csv`, `.jsonl`, `.ndjson`), else by its first
    /// character that is not white space (`{` is JSON Lines).
    pub fn guess(name: &str, start: &[u8]) -> Format {
        let lower = name.to_ascii_lowercase();
        let json_lines = lower.ends_with(".jsonl")
            || lower.ends_with(".ndjson")
            || (!lower.ends_with(".csv")
                && start
                    .iter()
                    .find(|b| !b.is_ascii_whitespace())
                    .is_some_and(|b| *b == b'{'));
        if json_lines {
            Format::JsonLines
        } else {
            Format::Csv
        }
    }
}

/// One row of the file: the line it starts on and its fields by column name.
#[derive(Debug)]
pub struct Record {
    pub line: u64,
    pub fields: Vec<(String, Value)>,
}

/// A problem with one line: the row was rejected (not stored), or one value was dropped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Issue {
    pub line: u64,
    /// The column, when one value is at fault.
    pub field: Option<String>,
    pub message: String,
    /// The whole row was left out.
    pub rejected: bool,
}

impl std::fmt::Display for Issue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let what = if self.rejected {
            "row rejected"
        } else {
            "value dropped"
        };
        match &self.field {
            Some(field) => write!(f, "line {}: {field}: {} ({what})", self.line, self.message),
            None => write!(f, "line {}: {} ({what})", self.line, self.message),
        }
    }
}

/// What an import did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Summary {
    pub created: u64,
    pub updated: u64,
    pub unchanged: u64,
    pub rejected: u64,
    /// Every rejected row and every dropped value, in line order.
    pub issues: Vec<Issue>,
}

/// How far an import is (for a progress bar).
#[derive(Clone, Copy, Debug)]
pub struct Progress {
    pub rows: u64,
    /// Bytes of the input read so far.
    pub bytes: u64,
}

/// The rows of `input`, each a [`Record`] or the [`Issue`] that rejects its line. An I/O
/// failure ends the rows with an error.
pub fn records<'a>(
    format: Format,
    input: impl Read + Send + 'a,
    read: &'a std::sync::atomic::AtomicU64,
) -> Box<dyn Iterator<Item = Result<std::result::Result<Record, Issue>>> + Send + 'a> {
    let counted = Counted { inner: input, read };
    match format {
        Format::Csv => Box::new(CsvRows::new(counted)),
        Format::JsonLines => Box::new(JsonRows {
            input: std::io::BufReader::new(counted),
            line: 0,
        }),
    }
}

/// A reader that counts the bytes read through it.
struct Counted<'a, R> {
    inner: R,
    read: &'a std::sync::atomic::AtomicU64,
}

impl<R: Read> Read for Counted<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read
            .fetch_add(n as u64, std::sync::atomic::Ordering::Relaxed);
        Ok(n)
    }
}

struct CsvRows<R> {
    reader: csv::Reader<R>,
    header: std::result::Result<Vec<String>, String>,
    record: csv::StringRecord,
    done: bool,
}

impl<R: Read> CsvRows<R> {
    fn new(input: R) -> CsvRows<R> {
        // Records end at a line feed alone: with the default (CR, LF or CRLF), the LF of a
        // CRLF is read with the next record, whose line then comes out one short. The CR
        // left at the end of a CRLF line is taken off its last field below.
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(true)
            .flexible(true)
            .terminator(csv::Terminator::Any(b'\n'))
            .from_reader(input);
        let header = match reader.headers() {
            Ok(header) => Ok(header.iter().map(|name| name.trim().to_owned()).collect()),
            Err(err) => Err(format!("the header row does not read: {err}")),
        };
        CsvRows {
            reader,
            header,
            record: csv::StringRecord::new(),
            done: false,
        }
    }
}

impl<R: Read> Iterator for CsvRows<R> {
    type Item = Result<std::result::Result<Record, Issue>>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let header = match &self.header {
            Ok(header) => header,
            Err(message) => {
                self.done = true;
                return Some(Ok(Err(Issue {
                    line: 1,
                    field: None,
                    message: message.clone(),
                    rejected: true,
                })));
            }
        };
        loop {
            return match self.reader.read_record(&mut self.record) {
                Ok(false) => None,
                Ok(true) => {
                    let line = self.record.position().map_or(0, csv::Position::line);
                    let last = self.record.len().saturating_sub(1);
                    let field = |n: usize| {
                        let value = self.record.get(n).unwrap_or_default();
                        if n == last {
                            value.strip_suffix('\r').unwrap_or(value)
                        } else {
                            value
                        }
                    };
                    if self.record.len() == 1 && field(0).is_empty() {
                        // A blank line (CRLF): nothing to import. Read on in this loop, not
                        // by recursion: a body of blank lines would overflow the stack.
                        continue;
                    }
                    if self.record.len() != header.len() {
                        return Some(Ok(Err(Issue {
                            line,
                            field: None,
                            message: format!(
                                "the row has {} fields, the header {}",
                                self.record.len(),
                                header.len()
                            ),
                            rejected: true,
                        })));
                    }
                    let fields = header
                        .iter()
                        .enumerate()
                        .map(|(n, name)| (name.clone(), Value::String(field(n).to_owned())))
                        .collect();
                    Some(Ok(Ok(Record { line, fields })))
                }
                Err(err) => {
                    let line = err.position().map_or(0, csv::Position::line);
                    match err.kind() {
                        csv::ErrorKind::Io(_) => {
                            self.done = true;
                            Some(Err(Error::bad_input(format!(
                                "reading the input failed: {err}"
                            ))))
                        }
                        _ => Some(Ok(Err(Issue {
                            line,
                            field: None,
                            message: format!("the row does not read: {err}"),
                            rejected: true,
                        }))),
                    }
                }
            };
        }
    }
}

struct JsonRows<R> {
    input: R,
    line: u64,
}

impl<R: BufRead> Iterator for JsonRows<R> {
    type Item = Result<std::result::Result<Record, Issue>>;

    fn next(&mut self) -> Option<Self::Item> {
        let mut buffer = Vec::new();
        loop {
            buffer.clear();
            match self.input.read_until(b'\n', &mut buffer) {
                Ok(0) => return None,
                Ok(_) => {}
                Err(err) => {
                    return Some(Err(Error::bad_input(format!(
                        "reading the input failed: {err}"
                    ))))
                }
            }
            self.line += 1;
            let line = self.line;
            let reject = |message: String| {
                Some(Ok(Err(Issue {
                    line,
                    field: None,
                    message,
                    rejected: true,
                })))
            };
            let Ok(text) = std::str::from_utf8(&buffer) else {
                return reject("the line is not UTF-8".to_owned());
            };
            let text = text.trim_start_matches('\u{feff}').trim();
            if text.is_empty() {
                continue;
            }
            return match serde_json::from_str::<Value>(text) {
                Ok(Value::Object(object)) => Some(Ok(Ok(Record {
                    line,
                    fields: object.into_iter().collect(),
                }))),
                Ok(_) => reject("the line is not a JSON object".to_owned()),
                Err(err) => reject(format!("the line is not JSON: {err}")),
            };
        }
    }
}

/// The known column a header names (`givenName`, `Given Name`, `given-name` are
/// `given_name`), or `None` for a custom attribute.
fn column(name: &str) -> Option<&'static str> {
    const COLUMNS: [&str; 16] = [
        "external_id",
        "given_name",
        "family_name",
        "display_name",
        "email",
        "phone",
        "street",
        "street2",
        "locality",
        "region",
        "postal_code",
        "country",
        "birth_date",
        "organization",
        "tags",
        "lifecycle_stage",
    ];
    let mut snake = String::new();
    for c in name.trim().chars() {
        if c.is_uppercase() {
            if !snake.is_empty() && !snake.ends_with('_') {
                snake.push('_');
            }
            snake.extend(c.to_lowercase());
        } else if c == ' ' || c == '-' {
            snake.push('_');
        } else {
            snake.push(c);
        }
    }
    COLUMNS.into_iter().find(|known| *known == snake)
}

/// A row checked and normalised, ready to be written.
#[derive(Clone, Debug)]
struct Candidate {
    line: u64,
    external_id: String,
    display_name: Option<String>,
    given_name: Option<String>,
    family_name: Option<String>,
    email: Option<(String, String)>,
    phone: Option<(String, String)>,
    address: PostalAddress,
    birth_date: Option<NaiveDate>,
    organization: Option<String>,
    tags: Vec<String>,
    lifecycle_stage: Option<LifecycleStage>,
    custom: Map<String, Value>,
}

/// What a workspace's import reads its rows with.
struct Rules<'a> {
    region: Option<&'a str>,
    today: NaiveDate,
}

fn text_of(value: &Value) -> Option<String> {
    match value {
        Value::Null => None,
        Value::String(text) => Some(text.clone()),
        Value::Array(_) | Value::Object(_) => Some(value.to_string()),
        other => Some(other.to_string()),
    }
    .filter(|text| !text.trim().is_empty())
}

/// Checks one record: the [`Candidate`], or `None` when the row is rejected; every
/// problem goes to `issues`.
fn check(record: Record, rules: &Rules<'_>, issues: &mut Vec<Issue>) -> Option<Candidate> {
    let line = record.line;
    let found = std::cell::RefCell::new(Vec::new());
    let dropped = |field: &str, err: Error| {
        found.borrow_mut().push(Issue {
            line,
            field: Some(field.to_owned()),
            message: validate::message(&err),
            rejected: false,
        });
    };
    let mut known: HashMap<&'static str, Value> = HashMap::new();
    let mut custom = Map::new();
    for (name, value) in record.fields {
        match column(&name) {
            Some(known_column) => {
                known.insert(known_column, value);
            }
            None => {
                if !value.is_null() && value.as_str().is_none_or(|text| !text.trim().is_empty()) {
                    custom.insert(name, value);
                }
            }
        }
    }
    let text = |name: &str| known.get(name).and_then(text_of);
    let reject = |issues: &mut Vec<Issue>, field: Option<&str>, message: String| {
        issues.push(Issue {
            line,
            field: field.map(str::to_owned),
            message,
            rejected: true,
        });
    };

    let external_id = match super::clean_optional("external_id", text("external_id"), 200) {
        Ok(Some(id)) => id,
        Ok(None) => {
            reject(
                issues,
                Some("external_id"),
                "external_id is required: it is what a re-run finds the row by".to_owned(),
            );
            return None;
        }
        Err(err) => {
            reject(issues, Some("external_id"), validate::message(&err));
            return None;
        }
    };
    let name = |field: &str| match validate::name(field, text(field)) {
        Ok(name) => name,
        Err(err) => {
            dropped(field, err);
            None
        }
    };
    let display_name = name("display_name");
    let given_name = name("given_name");
    let family_name = name("family_name");
    let point = |field: &str, kind: ContactPointKind, region: Option<&str>| {
        let value = text(field)?;
        match super::contact_point::normalize_in(kind, &value, region) {
            Ok(point) => Some(point),
            Err(err) => {
                dropped(field, err);
                None
            }
        }
    };
    let email = point("email", ContactPointKind::Email, None);
    let phone = point("phone", ContactPointKind::Phone, rules.region);

    let country = text("country").and_then(|value| {
        validate::country("country", &value)
            .map_err(|err| dropped("country", err))
            .ok()
    });
    let postal_code = text("postal_code").and_then(|value| {
        super::clean_optional("postal_code", Some(value), 100)
            .and_then(|code| {
                code.map(|code| validate::postal_code("postal_code", &code, country.as_deref()))
                    .transpose()
            })
            .map_err(|err| dropped("postal_code", err))
            .ok()
            .flatten()
    });
    let line_of = |field: &str, max: usize| {
        validate::address_line(field, text(field), max)
            .map_err(|err| dropped(field, err))
            .ok()
            .flatten()
    };
    let address = PostalAddress {
        street: line_of("street", validate::MAX_STREET_CHARS),
        street2: line_of("street2", validate::MAX_STREET_CHARS),
        locality: line_of("locality", validate::MAX_PLACE_CHARS),
        region: line_of("region", validate::MAX_PLACE_CHARS),
        postal_code,
        country,
    };
    let birth_date = text("birth_date").and_then(|value| {
        validate::birth_date_text("birth_date", &value, rules.today)
            .map_err(|err| dropped("birth_date", err))
            .ok()
    });
    let organization = super::clean_optional("organization", text("organization"), 200)
        .map_err(|err| dropped("organization", err))
        .ok()
        .flatten();
    let lifecycle_stage = text("lifecycle_stage").and_then(|value| {
        let stage = LifecycleStage::parse(&value.trim().to_lowercase());
        if stage.is_none() {
            dropped(
                "lifecycle_stage",
                Error::bad_input(format!(
                    "`{}` is not a lifecycle stage (subscriber, lead, prospect, customer, advocate, churned)",
                    value.trim()
                )),
            );
        }
        stage
    });
    let mut tags = Vec::new();
    let given_tags: Vec<String> = match known.get("tags") {
        Some(Value::Array(items)) => items.iter().filter_map(text_of).collect(),
        Some(value) => text_of(value)
            .map(|text| text.split([';', ',', '|']).map(str::to_owned).collect())
            .unwrap_or_default(),
        None => Vec::new(),
    };
    for tag in given_tags {
        match super::clean_optional("tags", Some(tag), 64) {
            Ok(Some(tag)) if !tags.contains(&tag) => tags.push(tag),
            Ok(_) => {}
            Err(err) => dropped("tags", err),
        }
    }
    if tags.len() > MAX_ROW_TAGS {
        dropped(
            "tags",
            Error::bad_input(format!(
                "{} tags; the first {MAX_ROW_TAGS} are kept",
                tags.len()
            )),
        );
        tags.truncate(MAX_ROW_TAGS);
    }
    let custom = if custom.is_empty() {
        custom
    } else {
        match super::custom_object("custom attributes", Some(Value::Object(custom))) {
            Ok(Value::Object(custom)) => custom,
            Ok(_) => Map::new(),
            Err(err) => {
                dropped("custom attributes", err);
                Map::new()
            }
        }
    };
    issues.extend(found.into_inner());
    Some(Candidate {
        line,
        external_id,
        display_name,
        given_name,
        family_name,
        email,
        phone,
        address,
        birth_date,
        organization,
        tags,
        lifecycle_stage,
        custom,
    })
}

/// Imports `input` into the caller's workspace in batches of `batch_rows` rows (a
/// transaction each), reporting progress after each batch.
pub async fn run(
    db: &(impl TransactionTrait + ConnectionTrait),
    caller: &Caller,
    format: Format,
    input: impl Read + Send,
    batch_rows: usize,
    progress: &(dyn Fn(Progress) + Sync),
) -> Result<Summary> {
    caller.require(Role::Agent, "importing customers")?;
    let settings = super::workspace::settings(db, caller.workspace_id).await?;
    let rules = Rules {
        region: settings.default_phone_region.as_deref(),
        today: super::now().date_naive(),
    };
    let batch_rows = batch_rows.clamp(1, 1_000);
    let read = std::sync::atomic::AtomicU64::new(0);
    let mut rows = records(format, input, &read);
    let mut summary = Summary::default();
    // Which line gave each external id: a later line with the same id is rejected rather
    // than silently overriding it within one import.
    let mut seen: HashMap<String, u64> = HashMap::new();
    let mut count = 0u64;
    let mut batch_index = 0usize;
    let dropped = super::quality::Dropped::default();
    loop {
        let mut batch = Vec::with_capacity(batch_rows);
        let mut ended = false;
        while batch.len() < batch_rows {
            let Some(row) = rows.next() else {
                ended = true;
                break;
            };
            count += 1;
            let record = match row? {
                Ok(record) => record,
                Err(issue) => {
                    summary.rejected += 1;
                    summary.issues.push(issue);
                    continue;
                }
            };
            let before = summary.issues.len();
            let checked = check(record, &rules, &mut summary.issues);
            for issue in &summary.issues[before..] {
                if let Some(field) = issue.field.as_deref().and_then(QualityField::parse) {
                    if !issue.rejected {
                        dropped.note(field);
                    }
                }
            }
            let Some(candidate) = checked else {
                summary.rejected += 1;
                continue;
            };
            if let Some(first) = seen.get(&candidate.external_id) {
                summary.rejected += 1;
                summary.issues.push(Issue {
                    line: candidate.line,
                    field: Some("external_id".to_owned()),
                    message: format!(
                        "external_id {} was already on line {first}",
                        candidate.external_id
                    ),
                    rejected: true,
                });
                continue;
            }
            seen.insert(candidate.external_id.clone(), candidate.line);
            batch.push(candidate);
        }
        if !batch.is_empty() {
            write_batch(db, caller.workspace_id, batch, batch_index, &mut summary).await?;
            batch_index += 1;
        }
        // The values this batch's rows dropped as invalid, for the data-quality report.
        super::quality::count_dropped(
            db,
            caller.workspace_id,
            super::quality::IMPORT_ORIGIN,
            rules.today,
            &dropped,
        )
        .await?;
        progress(Progress {
            rows: count,
            bytes: read.load(std::sync::atomic::Ordering::Relaxed),
        });
        if ended {
            break;
        }
    }
    summary.issues.sort_by_key(|issue| issue.line);
    Ok(summary)
}

/// [`run`] over data sent inline (`importCustomers`): refused whole, before anything is
/// written, when it holds more than [`MAX_INLINE_ROWS`] rows.
pub async fn run_inline(
    db: &(impl TransactionTrait + ConnectionTrait),
    caller: &Caller,
    format: Format,
    data: &str,
) -> Result<Summary> {
    caller.require(Role::Agent, "importing customers")?;
    let read = std::sync::atomic::AtomicU64::new(0);
    let rows = records(format, data.as_bytes(), &read).count();
    if rows > MAX_INLINE_ROWS {
        return Err(Error::field(
            "data",
            format!(
                "{rows} rows; at most {MAX_INLINE_ROWS} are imported inline, a larger file with `rapport import customers`"
            ),
        ));
    }
    run(
        db,
        caller,
        format,
        data.as_bytes(),
        DEFAULT_BATCH_ROWS,
        &|_| {},
    )
    .await
}

/// The customer a candidate makes of `existing` (or of nothing): every value it has
/// replaces the stored one; its custom attributes are merged in, unless together they
/// would be over the limit of custom attributes (then the stored ones stay, and the
/// second value says the row's were dropped).
fn apply(
    workspace_id: WorkspaceId,
    candidate: &Candidate,
    existing: Option<&customer::Model>,
    organization: Option<OrganizationId>,
    now: DateTime<Utc>,
) -> Option<(customer::Model, bool)> {
    let mut model = match existing {
        Some(model) => model.clone(),
        None => {
            let display_name = candidate.display_name.clone().or_else(|| {
                let joined = [&candidate.given_name, &candidate.family_name]
                    .into_iter()
                    .flatten()
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(" ");
                (!joined.is_empty())
                    .then_some(joined)
                    .or_else(|| candidate.email.as_ref().map(|(value, _)| value.clone()))
            })?;
            customer::Model {
                id: CustomerId::new(),
                workspace_id,
                display_name,
                given_name: None,
                family_name: None,
                lifecycle_stage: LifecycleStage::Lead,
                external_id: Some(candidate.external_id.clone()),
                organization_id: None,
                custom: Value::Object(Map::new()),
                merged_into: None,
                first_seen_at: now,
                last_seen_at: now,
                created_at: now,
                updated_at: now,
                birth_date: None,
                street: None,
                street2: None,
                locality: None,
                region: None,
                postal_code: None,
                country: None,
            }
        }
    };
    fn set<T: Clone>(target: &mut Option<T>, value: &Option<T>) {
        if value.is_some() {
            target.clone_from(value);
        }
    }
    if let Some(name) = &candidate.display_name {
        model.display_name.clone_from(name);
    }
    set(&mut model.given_name, &candidate.given_name);
    set(&mut model.family_name, &candidate.family_name);
    if let Some(stage) = candidate.lifecycle_stage {
        model.lifecycle_stage = stage;
    }
    if organization.is_some() {
        model.organization_id = organization;
    }
    set(&mut model.birth_date, &candidate.birth_date);
    let address = &candidate.address;
    set(&mut model.street, &address.street);
    set(&mut model.street2, &address.street2);
    set(&mut model.locality, &address.locality);
    set(&mut model.region, &address.region);
    set(&mut model.postal_code, &address.postal_code);
    set(&mut model.country, &address.country);
    let mut dropped = false;
    if !candidate.custom.is_empty() {
        let mut custom = model.custom.as_object().cloned().unwrap_or_default();
        for (key, value) in &candidate.custom {
            custom.insert(key.clone(), value.clone());
        }
        match super::custom_object("customAttributes", Some(Value::Object(custom))) {
            Ok(merged) => model.custom = merged,
            Err(_) => dropped = true,
        }
    }
    Some((model, dropped))
}

/// Writes one batch in one transaction and counts it into `summary`.
async fn write_batch(
    db: &impl TransactionTrait,
    workspace_id: WorkspaceId,
    batch: Vec<Candidate>,
    batch_index: usize,
    summary: &mut Summary,
) -> Result<()> {
    let txn = super::begin_write(db).await?;
    let now = super::now();
    let backend = txn.get_database_backend();

    // An erased person stays erased: a row naming their record or their address is left
    // out (see `erase::erased_records`).
    let keys: Vec<(&str, Vec<(ContactPointKind, &str)>)> = batch
        .iter()
        .map(|c| {
            let points = [
                (ContactPointKind::Email, &c.email),
                (ContactPointKind::Phone, &c.phone),
            ]
            .into_iter()
            .filter_map(|(kind, value)| Some((kind, value.as_ref()?.1.as_str())))
            .collect();
            (c.external_id.as_str(), points)
        })
        .collect();
    let erased = super::erase::erased_records(&txn, workspace_id, &keys).await?;
    drop(keys);
    let mut batch = batch;
    let mut n = 0;
    batch.retain(|candidate| {
        let keep = !erased[n];
        n += 1;
        if !keep {
            summary.rejected += 1;
            summary.issues.push(Issue {
                line: candidate.line,
                field: Some("external_id".to_owned()),
                message: "the row names a person erased from this workspace (their record, \
                          e-mail or phone): left out"
                    .to_owned(),
                rejected: true,
            });
        }
        keep
    });

    // What the workspace has already: the customers by external id, the owners of the
    // batch's e-mails and phones, the kinds each existing customer has, the organizations
    // by name and the existing customers' tags.
    let external_ids: Vec<&str> = batch.iter().map(|c| c.external_id.as_str()).collect();
    let mut existing: HashMap<String, customer::Model> = HashMap::new();
    for chunk in external_ids.chunks(MAX_IN_LIST) {
        for model in super::scoped::<customer::Entity>(workspace_id)
            .filter(customer::Column::ExternalId.is_in(chunk.iter().copied()))
            .all(&txn)
            .await?
        {
            if let Some(id) = model.external_id.clone() {
                existing.insert(id, model);
            }
        }
    }
    let values: Vec<&str> = batch
        .iter()
        .flat_map(|c| [&c.email, &c.phone])
        .flatten()
        .map(|(_, normalized)| normalized.as_str())
        .collect();
    let mut owners: HashMap<(ContactPointKind, String), CustomerId> = HashMap::new();
    for chunk in values.chunks(MAX_IN_LIST) {
        for point in super::scoped::<contact_point::Entity>(workspace_id)
            .filter(contact_point::Column::Kind.is_in([
                ContactPointKind::Email.as_str(),
                ContactPointKind::Phone.as_str(),
            ]))
            .filter(contact_point::Column::Normalized.is_in(chunk.iter().copied()))
            .all(&txn)
            .await?
        {
            owners.insert((point.kind, point.normalized), point.customer_id);
        }
    }
    let existing_ids: Vec<CustomerId> = existing.values().map(|m| m.id).collect();
    // Whether a stored customer has a contact point of a kind decides if a new one is
    // primary: read only for the customers about to get one (none on a re-import).
    let gaining: Vec<CustomerId> = batch
        .iter()
        .filter_map(|c| {
            let stored = existing.get(&c.external_id)?;
            let new = [
                (ContactPointKind::Email, &c.email),
                (ContactPointKind::Phone, &c.phone),
            ]
            .into_iter()
            .any(|(kind, point)| {
                point.as_ref().is_some_and(|(_, normalized)| {
                    !owners.contains_key(&(kind, normalized.clone()))
                })
            });
            new.then_some(stored.id)
        })
        .collect();
    let mut has_kind: HashSet<(CustomerId, ContactPointKind)> = HashSet::new();
    for chunk in gaining.chunks(MAX_IN_LIST) {
        // By customer id alone, the ids being this workspace's (read scoped above) and
        // the rows checked again below: with `workspace_id = ?` as well, SQLite's planner
        // takes the (workspace_id, kind, normalized) index and reads every contact point
        // of the workspace for each batch.
        for point in contact_point::Entity::find()
            .filter(contact_point::Column::CustomerId.is_in(chunk.iter().copied()))
            .all(&txn)
            .await?
        {
            if point.workspace_id == workspace_id {
                has_kind.insert((point.customer_id, point.kind));
            }
        }
    }
    let mut has_tag: HashSet<(CustomerId, String)> = HashSet::new();
    for chunk in existing_ids.chunks(MAX_IN_LIST) {
        let query = Query::select()
            .column((customer_tag::Entity, customer_tag::Column::CustomerId))
            .column((tag::Entity, tag::Column::Name))
            .from(customer_tag::Entity)
            .inner_join(
                tag::Entity,
                sea_orm::sea_query::Expr::col((tag::Entity, tag::Column::Id))
                    .equals((customer_tag::Entity, customer_tag::Column::TagId)),
            )
            .and_where(
                sea_orm::sea_query::Expr::col((
                    customer_tag::Entity,
                    customer_tag::Column::WorkspaceId,
                ))
                .eq(workspace_id),
            )
            .and_where(
                sea_orm::sea_query::Expr::col((
                    customer_tag::Entity,
                    customer_tag::Column::CustomerId,
                ))
                .is_in(chunk.iter().copied()),
            )
            .to_owned();
        for row in txn.query_all(backend.build(&query)).await? {
            has_tag.insert((
                row.try_get::<CustomerId>("", "customer_id")?,
                row.try_get::<String>("", "name")?,
            ));
        }
    }
    let organizations = organizations(&txn, workspace_id, &batch, now).await?;

    // Each row against what is stored: created, updated or unchanged.
    let mut writes: Vec<(usize, customer::Model, bool)> = Vec::new();
    let mut touched: Vec<usize> = Vec::new();
    for (n, candidate) in batch.iter().enumerate() {
        let stored = existing.get(&candidate.external_id);
        let organization = candidate
            .organization
            .as_ref()
            .and_then(|name| organizations.get(name).copied());
        let Some((model, dropped)) = apply(workspace_id, candidate, stored, organization, now)
        else {
            summary.rejected += 1;
            summary.issues.push(Issue {
                line: candidate.line,
                field: Some("display_name".to_owned()),
                message: "give display_name, given_name or family_name, or an email".to_owned(),
                rejected: true,
            });
            continue;
        };
        if dropped {
            summary.issues.push(Issue {
                line: candidate.line,
                field: Some("custom attributes".to_owned()),
                message: "the custom attributes with those stored would be over the limit of \
                          custom attributes: the row's were dropped"
                    .to_owned(),
                rejected: false,
            });
        }
        match stored {
            None => writes.push((n, model, true)),
            Some(stored) => {
                let new_point = [
                    (ContactPointKind::Email, &candidate.email),
                    (ContactPointKind::Phone, &candidate.phone),
                ]
                .into_iter()
                .any(|(kind, point)| {
                    point.as_ref().is_some_and(|(_, normalized)| {
                        !owners.contains_key(&(kind, normalized.clone()))
                    })
                });
                let new_tag = candidate
                    .tags
                    .iter()
                    .any(|tag| !has_tag.contains(&(stored.id, tag.clone())));
                if model != *stored {
                    let mut model = model;
                    model.updated_at = now;
                    writes.push((n, model, false));
                } else if new_point || new_tag {
                    touched.push(n);
                } else {
                    summary.unchanged += 1;
                }
            }
        }
    }

    // The customers: one upsert on (workspace_id, external_id), returning the stored rows.
    let mut stored_ids: HashMap<String, CustomerId> = existing
        .iter()
        .map(|(external_id, model)| (external_id.clone(), model.id))
        .collect();
    let mut events: Vec<(customer::Model, bool)> = Vec::new();
    for chunk in writes.chunks(500) {
        let mut statement = customer::Entity::insert_many(
            chunk
                .iter()
                .map(|(_, model, _)| customer::ActiveModel::from(model.clone())),
        )
        .on_conflict(
            OnConflict::columns([customer::Column::WorkspaceId, customer::Column::ExternalId])
                .update_columns([
                    customer::Column::DisplayName,
                    customer::Column::GivenName,
                    customer::Column::FamilyName,
                    customer::Column::LifecycleStage,
                    customer::Column::OrganizationId,
                    customer::Column::Custom,
                    customer::Column::BirthDate,
                    customer::Column::Street,
                    customer::Column::Street2,
                    customer::Column::Locality,
                    customer::Column::Region,
                    customer::Column::PostalCode,
                    customer::Column::Country,
                    customer::Column::UpdatedAt,
                ])
                .to_owned(),
        )
        .into_query();
        statement.returning_all();
        let mut returned: HashMap<String, customer::Model> = HashMap::new();
        for row in txn.query_all(backend.build(&statement)).await? {
            let model = customer::Model::from_query_result(&row, "")?;
            if let Some(id) = model.external_id.clone() {
                returned.insert(id, model);
            }
        }
        for (_, model, created) in chunk {
            let external_id = model.external_id.clone().unwrap_or_default();
            let stored = returned.remove(&external_id).ok_or_else(|| {
                Error::Internal(format!("the upsert of {external_id} returned no row"))
            })?;
            // Another writer may have created it since it was read: it was updated then.
            let created = *created && stored.id == model.id;
            if created {
                summary.created += 1;
            } else {
                summary.updated += 1;
            }
            stored_ids.insert(external_id, stored.id);
            events.push((stored, created));
        }
    }
    if batch_index > 0 {
        crate::failpoint::failpoint("import.mid_batch");
    }

    // Contact points and tags the customers lack.
    let mut points: Vec<contact_point::Model> = Vec::new();
    let mut links: Vec<(CustomerId, String)> = Vec::new();
    let written: Vec<usize> = writes
        .iter()
        .map(|(n, _, _)| *n)
        .chain(touched.iter().copied())
        .collect();
    let mut claims: Vec<super::dedupe::Claim> = Vec::new();
    for n in &written {
        let candidate = &batch[*n];
        let Some(customer_id) = stored_ids.get(&candidate.external_id).copied() else {
            continue;
        };
        for (field, kind, point) in [
            ("email", ContactPointKind::Email, &candidate.email),
            ("phone", ContactPointKind::Phone, &candidate.phone),
        ] {
            let Some((value, normalized)) = point else {
                continue;
            };
            match owners.get(&(kind, normalized.clone())) {
                Some(owner) if *owner == customer_id => {}
                Some(owner) => {
                    claims.push(super::dedupe::Claim {
                        claimer: customer_id,
                        owner: *owner,
                        kind,
                        value: normalized.clone(),
                    });
                    summary.issues.push(Issue {
                        line: candidate.line,
                        field: Some(field.to_owned()),
                        message: format!(
                            "the {} {value} already belongs to another customer; it stays theirs",
                            kind.as_str()
                        ),
                        rejected: false,
                    })
                }
                None => {
                    owners.insert((kind, normalized.clone()), customer_id);
                    let primary = has_kind.insert((customer_id, kind));
                    points.push(contact_point::Model {
                        id: ContactPointId::new(),
                        workspace_id,
                        customer_id,
                        kind,
                        value: value.clone(),
                        normalized: normalized.clone(),
                        label: None,
                        verified: false,
                        is_primary: primary,
                        created_at: now,
                    });
                }
            }
        }
        for tag in &candidate.tags {
            if has_tag.insert((customer_id, tag.clone())) {
                links.push((customer_id, tag.clone()));
            }
        }
    }
    // The points actually stored, for the duplicate check below. On PostgreSQL another
    // writer may have taken one since the owners were read (the insert then leaves it
    // out), so the insert says which it stored; on SQLite this transaction has held the
    // one write lock since it began, so every point not owned then is stored (and
    // returning 2,000 rows a batch costs a transfer each).
    let postgres = backend == sea_orm::DatabaseBackend::Postgres;
    let mut stored_points: HashMap<CustomerId, Vec<(ContactPointKind, String)>> = HashMap::new();
    if !postgres {
        for point in &points {
            stored_points
                .entry(point.customer_id)
                .or_default()
                .push((point.kind, point.normalized.clone()));
        }
    }
    for chunk in points.chunks(500) {
        let mut statement = contact_point::Entity::insert_many(
            chunk.iter().cloned().map(contact_point::ActiveModel::from),
        )
        .on_conflict(
            OnConflict::columns([
                contact_point::Column::WorkspaceId,
                contact_point::Column::Kind,
                contact_point::Column::Normalized,
            ])
            .do_nothing()
            .to_owned(),
        )
        .into_query();
        if !postgres {
            txn.execute(backend.build(&statement)).await?;
            continue;
        }
        statement.returning(Query::returning().columns([
            contact_point::Column::CustomerId,
            contact_point::Column::Kind,
            contact_point::Column::Normalized,
        ]));
        for row in txn.query_all(backend.build(&statement)).await? {
            stored_points
                .entry(row.try_get::<CustomerId>("", "customer_id")?)
                .or_default()
                .push((
                    row.try_get::<ContactPointKind>("", "kind")?,
                    row.try_get::<String>("", "normalized")?,
                ));
        }
    }
    attach_tags(&txn, workspace_id, &links, now).await?;
    let targets: Vec<super::duplicate::Target> = points
        .iter()
        .filter_map(super::duplicate::contact_point_target)
        .collect();
    super::duplicate::after_authors(&txn, workspace_id, &[], &targets, now).await?;
    // Every row written is checked against the workspace (and the rest of the batch) at
    // once; suggested, not merged (an import is a deliberate write).
    let checked: Vec<CustomerId> = written
        .iter()
        .filter_map(|n| stored_ids.get(&batch[*n].external_id).copied())
        .collect();
    // A created customer is what this batch wrote (its row as returned, the contact points
    // stored, no identity); the updated ones are read back, with what they had before.
    let mut new_profiles: HashMap<CustomerId, super::dedupe::Profile> = events
        .iter()
        .filter(|(_, created)| *created)
        .map(|(model, _)| {
            let mut profile = super::dedupe::Profile::of_customer(model.clone());
            for (kind, normalized) in stored_points.remove(&model.id).unwrap_or_default() {
                match kind {
                    ContactPointKind::Email => profile.emails.push(normalized),
                    ContactPointKind::Phone => profile.phones.push(normalized),
                    _ => {}
                }
            }
            (model.id, profile)
        })
        .collect();
    let created: HashSet<CustomerId> = new_profiles.keys().copied().collect();
    let changed: Vec<CustomerId> = checked
        .iter()
        .filter(|id| !created.contains(id))
        .copied()
        .collect();
    let mut changed: HashMap<CustomerId, super::dedupe::Profile> =
        super::dedupe::profiles(&txn, workspace_id, &changed)
            .await?
            .into_iter()
            .map(|p| (p.id, p))
            .collect();
    // In the order `dedupe::check` read them back, which decides which record of a pair
    // its reasons name first: within each 500, by external id on SQLite (its planner reads
    // the ids through the workspace's external-id index), by id on PostgreSQL.
    let profiles: Vec<super::dedupe::Profile> = written
        .iter()
        .filter_map(|n| {
            let external_id = batch[*n].external_id.as_str();
            Some((stored_ids.get(external_id).copied()?, external_id))
        })
        .collect::<Vec<_>>()
        .chunks(super::dedupe::CHUNK)
        .flat_map(|chunk| {
            let mut chunk = chunk.to_vec();
            if postgres {
                chunk.sort_unstable_by_key(|(id, _)| *id);
            } else {
                chunk.sort_unstable_by_key(|(_, external_id)| *external_id);
            }
            chunk
        })
        .filter_map(|(id, _)| new_profiles.remove(&id).or_else(|| changed.remove(&id)))
        .collect();
    super::dedupe::check_profiles(&txn, workspace_id, profiles, &created, now).await?;
    super::dedupe::check_claims(&txn, workspace_id, &claims, now).await?;

    // A customer whose row did not change but who got a contact point or tag is updated.
    for n in touched {
        let candidate = &batch[n];
        if let Some(stored) = existing.get(&candidate.external_id) {
            let mut row: customer::ActiveModel = stored.clone().into();
            row.updated_at = Set(now);
            let model = sea_orm::ActiveModelTrait::update(row, &txn).await?;
            summary.updated += 1;
            events.push((model, false));
        }
    }
    super::event::append_many(
        &txn,
        workspace_id,
        events.iter().map(|(model, created)| {
            if *created {
                Event::CustomerCreated(model)
            } else {
                Event::CustomerUpdated(model)
            }
        }),
    )
    .await?;
    txn.commit().await?;
    Ok(())
}

/// The organizations the batch names, by name: the oldest of that name, created (with its
/// event) when the workspace has none.
async fn organizations(
    db: &impl ConnectionTrait,
    workspace_id: WorkspaceId,
    batch: &[Candidate],
    now: DateTime<Utc>,
) -> Result<HashMap<String, OrganizationId>> {
    let mut names: Vec<&str> = batch
        .iter()
        .filter_map(|c| c.organization.as_deref())
        .collect();
    names.sort_unstable();
    names.dedup();
    let mut found: HashMap<String, OrganizationId> = HashMap::new();
    for chunk in names.chunks(MAX_IN_LIST) {
        for model in super::scoped::<organization::Entity>(workspace_id)
            .filter(organization::Column::Name.is_in(chunk.iter().copied()))
            .order_by_asc(organization::Column::CreatedAt)
            .order_by_asc(organization::Column::Id)
            .all(db)
            .await?
        {
            found.entry(model.name).or_insert(model.id);
        }
    }
    for name in names {
        if found.contains_key(name) {
            continue;
        }
        let row = organization::ActiveModel {
            id: Set(OrganizationId::new()),
            workspace_id: Set(workspace_id),
            name: Set(name.to_owned()),
            domain: Set(None),
            custom: Set(serde_json::json!({})),
            created_at: Set(now),
            updated_at: Set(now),
        };
        let model = sea_orm::ActiveModelTrait::insert(row, db).await?;
        super::event::append(db, workspace_id, Event::OrganizationCreated(&model)).await?;
        found.insert(model.name, model.id);
    }
    Ok(found)
}

/// Links customers to tags by name, creating the missing tags; both `ON CONFLICT DO NOTHING`.
async fn attach_tags(
    db: &impl ConnectionTrait,
    workspace_id: WorkspaceId,
    links: &[(CustomerId, String)],
    now: DateTime<Utc>,
) -> Result<()> {
    if links.is_empty() {
        return Ok(());
    }
    let mut names: Vec<&str> = links.iter().map(|(_, name)| name.as_str()).collect();
    names.sort_unstable();
    names.dedup();
    for chunk in names.chunks(MAX_IN_LIST) {
        tag::Entity::insert_many(chunk.iter().map(|name| tag::ActiveModel {
            id: Set(TagId::new()),
            workspace_id: Set(workspace_id),
            name: Set((*name).to_owned()),
            color: Set(None),
            created_at: Set(now),
        }))
        .on_conflict(
            OnConflict::columns([tag::Column::WorkspaceId, tag::Column::Name])
                .do_nothing()
                .to_owned(),
        )
        .exec_without_returning(db)
        .await?;
    }
    let mut ids: HashMap<String, TagId> = HashMap::new();
    for chunk in names.chunks(MAX_IN_LIST) {
        for model in super::scoped::<tag::Entity>(workspace_id)
            .filter(tag::Column::Name.is_in(chunk.iter().copied()))
            .all(db)
            .await?
        {
            ids.insert(model.name, model.id);
        }
    }
    let rows: Vec<customer_tag::ActiveModel> = links
        .iter()
        .filter_map(|(customer_id, name)| {
            Some(customer_tag::ActiveModel {
                customer_id: Set(*customer_id),
                tag_id: Set(*ids.get(name)?),
                workspace_id: Set(workspace_id),
                created_at: Set(now),
            })
        })
        .collect();
    for chunk in rows.chunks(500) {
        customer_tag::Entity::insert_many(chunk.iter().cloned())
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
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(format: Format, text: &str) -> Vec<std::result::Result<Record, Issue>> {
        let counter = std::sync::atomic::AtomicU64::new(0);
        records(format, text.as_bytes(), &counter)
            .map(|row| row.unwrap())
            .collect()
    }

    #[test]
    fn a_body_of_blank_lines_reads_in_a_loop_not_by_recursion() {
        // Half a million blank CRLF lines (1 MB) after the header: read by recursion they
        // overflowed a worker's stack and took the server down.
        let text = format!(
            "external_id,display_name\r\n{}a1,Ana\r\n",
            "\r\n".repeat(500_000)
        );
        let rows = std::thread::Builder::new()
            .stack_size(256 * 1024)
            .spawn(move || read(Format::Csv, &text).len())
            .unwrap()
            .join()
            .unwrap();
        assert_eq!(rows, 1);
    }

    #[test]
    fn csv_rows_keep_their_lines_and_quoting() {
        let rows = read(
            Format::Csv,
            "external_id,display_name,notes\r\na1,\"Lopez, Ana\",\"two\nlines\"\r\n\r\na2,Bo,x\r\na3\n",
        );
        let first = rows[0].as_ref().unwrap();
        assert_eq!(first.line, 2);
        assert_eq!(first.fields[1].1, Value::String("Lopez, Ana".into()));
        assert_eq!(first.fields[2].1, Value::String("two\nlines".into()));
        let second = rows[1].as_ref().unwrap();
        assert_eq!(
            second.line, 5,
            "a quoted line break counts, a blank line too"
        );
        assert_eq!(second.fields[2].1, Value::String("x".into()), "no CR left");
        let bad = rows[2].as_ref().unwrap_err();
        assert_eq!((bad.line, bad.rejected), (6, true));
    }

    #[test]
    fn json_lines_skip_blanks_and_reject_what_is_not_an_object() {
        let rows = read(Format::JsonLines, "{\"external_id\":\"a\"}\n\n[1]\n{oops\n");
        assert_eq!(rows[0].as_ref().unwrap().line, 1);
        assert_eq!(rows[1].as_ref().unwrap_err().line, 3);
        assert_eq!(rows[2].as_ref().unwrap_err().line, 4);
    }

    #[test]
    fn columns_are_recognised_in_any_case() {
        assert_eq!(column("givenName"), Some("given_name"));
        assert_eq!(column("Postal Code"), Some("postal_code"));
        assert_eq!(column("external-id"), Some("external_id"));
        assert_eq!(column("plan"), None);
        assert_eq!(Format::guess("x.txt", b"  {\"a\":1}"), Format::JsonLines);
        assert_eq!(Format::guess("x.jsonl", b"a,b"), Format::JsonLines);
        assert_eq!(Format::guess("x", b"a,b"), Format::Csv);
    }

    #[test]
    fn a_row_keeps_its_good_values_and_reports_the_bad_ones() {
        let rules = Rules {
            region: Some("ES"),
            today: NaiveDate::from_ymd_opt(2026, 12, 5).unwrap(),
        };
        let mut issues = Vec::new();
        let record = Record {
            line: 7,
            fields: [
                ("external_id", "c-1"),
                ("given_name", "Ana"),
                ("email", "not-an-email"),
                ("phone", "600 123 456"),
                ("country", "Spain"),
                ("birth_date", "1990-13-01"),
                ("tags", "vip; beta"),
                ("plan", "team"),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), Value::String(v.to_owned())))
            .collect(),
        };
        let candidate = check(record, &rules, &mut issues).unwrap();
        assert_eq!(candidate.phone.unwrap().1, "+34600123456");
        assert_eq!(candidate.address.country.as_deref(), Some("ES"));
        assert_eq!(candidate.tags, ["vip", "beta"]);
        assert_eq!(candidate.custom["plan"], "team");
        let fields: Vec<_> = issues.iter().map(|i| i.field.clone().unwrap()).collect();
        assert_eq!(fields, ["email", "birth_date"]);
        assert!(issues.iter().all(|i| i.line == 7 && !i.rejected));
    }
}
