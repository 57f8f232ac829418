//! Merging customers who are one person, and undoing it.
//!
//! A merge moves everything of the merged customer to the survivor in one transaction
//! (identities, contact points, interactions, conversations, deals, notes, tags; duplicate
//! suggestions are resolved or re-pointed), chooses each profile field's value
//! ([`FieldChoice`], else the survivor's non-null value, else the merged one's), and keeps
//! the merged row as a tombstone (`merged_into` = the survivor, `external_id` cleared so
//! the survivor may take it) whose id still resolves to the survivor ([`resolve`]). A
//! `merge_record` keeps both rows as they were, the survivor as the merge left it and the
//! small sets changed; `merge_moved` keeps the ids of the moved rows with their
//! `updated_at`. [`unmerge`] puts back every row and link that is still where the merge
//! left it, byte for byte, and sends back with the merged customer what arrived since
//! through its identities.
//!
//! Concurrency. On PostgreSQL a merge locks the merged customer's conversations and
//! identities, then both customers (`FOR UPDATE`, in id order): the order ingestion takes
//! the same rows in (`batch`), so the two wait for each other instead of deadlocking. Its
//! statements run after those locks, so they see every interaction a batch holding them
//! committed. A batch that locks a customer only after the merge committed finds a
//! tombstone and files its items under the survivor ([`follow_merged`]); the per-item
//! path does the same through [`settled_identity`]. SQLite has one writer: a merge and a
//! batch never interleave.

use std::collections::{BTreeMap, HashMap, HashSet};

use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, ConnectionTrait, DbBackend, EntityTrait,
    IntoActiveModel, QueryFilter, QueryOrder, QuerySelect, TransactionTrait, Value,
};
use serde::{Deserialize, Serialize};

use super::event::{Actor, Event, MergeChange};
use super::{Caller, Role};
use crate::error::{Error, Result};
use crate::ids;
use entity::enums::DuplicateStatus;
use entity::{
    contact_point, conversation, customer, customer_tag, duplicate_suggestion, identity,
    merge_record,
};
use entity::{ContactPointId, CustomerId, MergeRecordId, TagId, WorkspaceId};

string_enum!(
    /// A profile field whose value a merge chooses.
    MergeField {
        /// `displayName`.
        DisplayName = "display_name",
        /// `givenName`.
        GivenName = "given_name",
        /// `familyName`.
        FamilyName = "family_name",
        /// `lifecycleStage`.
        LifecycleStage = "lifecycle_stage",
        /// `organization`.
        Organization = "organization",
        /// `externalId`.
        ExternalId = "external_id",
        /// One key of `customAttributes` (named by the choice's `key`).
        CustomAttribute = "custom_attribute",
    }
);

/// Which customer's value of a field the survivor keeps.
#[derive(Clone, Debug)]
pub struct FieldChoice {
    pub field: MergeField,
    /// The custom attribute's key, for [`MergeField::CustomAttribute`].
    pub key: Option<String>,
    pub customer_id: CustomerId,
}

/// A merge asked for: the survivor, the customers merged into it (in this order), and
/// the fields whose value is chosen.
#[derive(Clone, Debug)]
pub struct MergeInput {
    pub survivor_id: CustomerId,
    pub merged_ids: Vec<CustomerId>,
    pub choices: Vec<FieldChoice>,
}

/// The most customers one merge takes.
pub const MAX_MERGED: usize = 20;

/// Why customers were merged.
#[derive(Clone, Copy, Debug)]
enum Why {
    Manual,
    /// A duplicate suggestion scored at least the workspace's threshold.
    Automatic(f64),
}

/// The tables whose rows a merge moves, and whether each has `updated_at`.
const MOVED: [(&str, bool); 6] = [
    ("identity", true),
    ("contact_point", false),
    ("conversation", true),
    ("deal", true),
    ("note", true),
    ("interaction", false),
];

/// What a merge changed besides moving rows, as the record keeps it.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct Changes {
    /// The merged customer's primary contact points made secondary (the survivor had a
    /// primary of their kind).
    demoted: Vec<ContactPointId>,
    /// The merged customer's tag links as they were.
    tags: Vec<TagLink>,
    /// The tags moved to the survivor (the others the survivor had already).
    moved_tags: Vec<TagId>,
    /// The duplicate suggestions naming the merged customer, as they were.
    suggestions: Vec<SuggestionChange>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct TagLink {
    tag_id: TagId,
    created_at: DateTime<Utc>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct SuggestionChange {
    before: duplicate_suggestion::Model,
    action: SuggestionAction,
}

#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum SuggestionAction {
    /// The pair merged: the suggestion is resolved.
    Merged,
    /// Now names the survivor instead.
    Repointed,
    /// The survivor had the same pair already.
    Deleted,
}

/// What a merge answers: the survivor as it is now and one record per merged customer.
pub struct Merged {
    pub survivor: customer::Model,
    pub records: Vec<merge_record::Model>,
}

/// What an unmerge answers: the customer back on its own, and the survivor.
pub struct Unmerged {
    pub customer: customer::Model,
    pub survivor: customer::Model,
    pub record: merge_record::Model,
}

/// Checks an auto-merge threshold: in (0, 1], or `None` (off).
pub fn check_threshold(threshold: Option<f64>) -> Result<Option<f64>> {
    match threshold {
        Some(value) if !(value > 0.0 && value <= 1.0) => Err(Error::field(
            "autoMergeThreshold",
            format!("autoMergeThreshold must be above 0 and at most 1 (or null: off), got {value}"),
        )),
        other => Ok(other),
    }
}

/// Merges `input.merged_ids` into `input.survivor_id` (agent role), all or nothing. An id
/// of a customer merged before stands for its survivor. `BAD_USER_INPUT` naming the field
/// for an empty or repeated list, the survivor among the merged, or a choice naming a
/// customer that is not part of the merge; `NOT_FOUND` for an id of another workspace.
pub async fn merge_customers(
    db: &impl TransactionTrait,
    caller: &Caller,
    input: MergeInput,
) -> Result<Merged> {
    caller.require(Role::Agent, "merging customers")?;
    check_input(&input)?;
    let actor = Actor::of(caller);
    // A deadlock with a batch that took the same rows in another order (a conversation it
    // created after this merge looked) is PostgreSQL's to break; the merge is tried again.
    let mut attempt = 0;
    loop {
        attempt += 1;
        let txn = super::begin_write(db).await?;
        match merge_all(&txn, caller.workspace_id, &actor, &input, Why::Manual).await {
            Ok(merged) => {
                txn.commit().await?;
                return Ok(merged);
            }
            Err(err) if attempt < 3 && is_deadlock(&err) => {
                txn.rollback().await?;
            }
            Err(err) => return Err(err),
        }
    }
}

fn check_input(input: &MergeInput) -> Result<()> {
    if input.merged_ids.is_empty() {
        return Err(Error::field(
            "mergedIds",
            "name at least one customer to merge",
        ));
    }
    if input.merged_ids.len() > MAX_MERGED {
        return Err(Error::field(
            "mergedIds",
            format!("merge at most {MAX_MERGED} customers at once"),
        ));
    }
    let mut seen = HashSet::new();
    for (index, id) in input.merged_ids.iter().enumerate() {
        if *id == input.survivor_id {
            return Err(Error::field(
                format!("mergedIds[{index}]"),
                "the survivor cannot be merged into itself",
            ));
        }
        if !seen.insert(*id) {
            return Err(Error::field(
                format!("mergedIds[{index}]"),
                format!("{} is named twice", ids::encode(*id)),
            ));
        }
    }
    let mut chosen = HashSet::new();
    for (index, choice) in input.choices.iter().enumerate() {
        let field = |name: &str| format!("fieldChoices[{index}].{name}");
        if choice.customer_id != input.survivor_id && !seen.contains(&choice.customer_id) {
            return Err(Error::field(
                field("customerId"),
                "choose the survivor or one of mergedIds",
            ));
        }
        let key = match (choice.field, choice.key.as_deref()) {
            (MergeField::CustomAttribute, Some(key)) if !key.trim().is_empty() => {
                Some(key.to_owned())
            }
            (MergeField::CustomAttribute, _) => {
                return Err(Error::field(
                    field("key"),
                    "name the custom attribute's key",
                ))
            }
            (_, Some(_)) => {
                return Err(Error::field(
                    field("key"),
                    "a key is given only for CUSTOM_ATTRIBUTE",
                ))
            }
            (_, None) => None,
        };
        if !chosen.insert((choice.field, key)) {
            return Err(Error::field(field("field"), "this field is chosen twice"));
        }
    }
    Ok(())
}

/// Whether PostgreSQL broke a deadlock (or a serialisation failure) by failing this
/// transaction: trying again is right.
fn is_deadlock(err: &Error) -> bool {
    use sea_orm::{DbErr, RuntimeErr};
    let Error::Database(
        DbErr::Exec(RuntimeErr::SqlxError(err)) | DbErr::Query(RuntimeErr::SqlxError(err)),
    ) = err
    else {
        return false;
    };
    err.as_database_error()
        .and_then(|err| err.code())
        .is_some_and(|code| code == "40P01" || code == "40001")
}

/// The live customer an id stands for: itself, or the survivor it was merged into
/// (followed through later merges); `None` when the workspace has no such customer.
pub async fn resolve(
    db: &impl ConnectionTrait,
    workspace_id: WorkspaceId,
    id: CustomerId,
) -> Result<Option<customer::Model>> {
    let mut id = id;
    for _ in 0..MAX_CHAIN {
        let Some(row) = super::scoped::<customer::Entity>(workspace_id)
            .filter(customer::Column::Id.eq(id))
            .one(db)
            .await?
        else {
            return Ok(None);
        };
        match row.merged_into {
            Some(survivor) => id = survivor,
            None => return Ok(Some(row)),
        }
    }
    Err(Error::Internal(format!(
        "customer {} is merged through more than {MAX_CHAIN} customers",
        ids::encode(id)
    )))
}

/// Customers by id within the workspace (for the loader): the id of a merged customer
/// maps to its survivor's row. One statement unless some are merged.
pub async fn by_ids_resolved(
    db: &impl ConnectionTrait,
    workspace_id: WorkspaceId,
    ids: &[CustomerId],
) -> Result<HashMap<CustomerId, customer::Model>> {
    let mut rows =
        super::by_ids::<customer::Entity, _>(db, workspace_id, ids, |row| row.id).await?;
    let mut survivors: HashMap<CustomerId, CustomerId> = rows
        .values()
        .filter_map(|row| Some((row.id, row.merged_into?)))
        .collect();
    for _ in 0..MAX_CHAIN {
        let mut advanced = false;
        for survivor in survivors.values_mut() {
            if let Some(further) = rows.get(survivor).and_then(|row| row.merged_into) {
                *survivor = further;
                advanced = true;
            }
        }
        let wanted: Vec<CustomerId> = survivors
            .values()
            .filter(|id| !rows.contains_key(id))
            .copied()
            .collect();
        if wanted.is_empty() && !advanced {
            break;
        }
        if !wanted.is_empty() {
            let found =
                super::by_ids::<customer::Entity, _>(db, workspace_id, &wanted, |row| row.id)
                    .await?;
            if found.is_empty() {
                break;
            }
            rows.extend(found);
        }
    }
    for (merged, survivor) in survivors {
        match rows
            .get(&survivor)
            .filter(|row| row.merged_into.is_none())
            .cloned()
        {
            Some(row) => rows.insert(merged, row),
            None => rows.remove(&merged),
        };
    }
    Ok(rows)
}

/// How many merges deep a tombstone may be followed.
pub const MAX_CHAIN: usize = 32;

/// Merges every customer of `input` into the survivor inside `db` (a write transaction).
async fn merge_all(
    db: &impl ConnectionTrait,
    workspace_id: WorkspaceId,
    actor: &Actor,
    input: &MergeInput,
    why: Why,
) -> Result<Merged> {
    let survivor = resolve(db, workspace_id, input.survivor_id)
        .await?
        .ok_or_else(|| Error::not_found("customer", ids::encode(input.survivor_id)))?;
    let mut merged = Vec::new();
    for (index, id) in input.merged_ids.iter().enumerate() {
        let live = resolve(db, workspace_id, *id)
            .await?
            .ok_or_else(|| Error::not_found("customer", ids::encode(*id)))?;
        if live.id == survivor.id || merged.contains(&live.id) {
            return Err(Error::field(
                format!("mergedIds[{index}]"),
                format!(
                    "{} is merged into {} already",
                    ids::encode(*id),
                    ids::encode(live.id)
                ),
            ));
        }
        merged.push(live.id);
    }
    let choices: Vec<FieldChoice> = input
        .choices
        .iter()
        .map(|choice| FieldChoice {
            customer_id: if choice.customer_id == input.survivor_id {
                survivor.id
            } else {
                let index = input
                    .merged_ids
                    .iter()
                    .position(|id| *id == choice.customer_id)
                    .unwrap_or_default();
                merged[index]
            },
            ..choice.clone()
        })
        .collect();
    lock(db, workspace_id, survivor.id, &merged).await?;
    let mut records = Vec::new();
    for merged_id in &merged {
        records.push(
            merge_one(
                db,
                workspace_id,
                actor,
                survivor.id,
                *merged_id,
                &choices,
                why,
            )
            .await?,
        );
    }
    let survivor = customer::Entity::find_by_id(survivor.id)
        .one(db)
        .await?
        .ok_or_else(|| Error::Internal("the survivor vanished during its merge".into()))?;
    super::event::append(db, workspace_id, Event::CustomerUpdated(&survivor)).await?;
    let keyed: Vec<CustomerId> = std::iter::once(survivor.id).chain(merged).collect();
    super::dedupe::refresh_keys(db, workspace_id, &keyed).await?;
    Ok(Merged { survivor, records })
}

/// Locks what a merge changes, in the order ingestion locks the same rows: the merged
/// customers' conversations and identities, then the customers, each in id order.
async fn lock(
    db: &impl ConnectionTrait,
    workspace_id: WorkspaceId,
    survivor: CustomerId,
    merged: &[CustomerId],
) -> Result<()> {
    if db.get_database_backend() != DbBackend::Postgres {
        return Ok(());
    }
    super::scoped::<conversation::Entity>(workspace_id)
        .select_only()
        .column(conversation::Column::Id)
        .filter(conversation::Column::CustomerId.is_in(merged.iter().copied()))
        .order_by_asc(conversation::Column::Id)
        .lock_exclusive()
        .into_tuple::<entity::ConversationId>()
        .all(db)
        .await?;
    super::scoped::<identity::Entity>(workspace_id)
        .select_only()
        .column(identity::Column::Id)
        .filter(identity::Column::CustomerId.is_in(merged.iter().copied()))
        .order_by_asc(identity::Column::Id)
        .lock_exclusive()
        .into_tuple::<entity::IdentityId>()
        .all(db)
        .await?;
    lock_customers(db, workspace_id, merged.iter().copied().chain([survivor])).await
}

async fn lock_customers(
    db: &impl ConnectionTrait,
    workspace_id: WorkspaceId,
    ids: impl IntoIterator<Item = CustomerId>,
) -> Result<()> {
    let mut ids: Vec<CustomerId> = ids.into_iter().collect();
    ids.sort_unstable();
    ids.dedup();
    super::scoped::<customer::Entity>(workspace_id)
        .select_only()
        .column(customer::Column::Id)
        .filter(customer::Column::Id.is_in(ids))
        .order_by_asc(customer::Column::Id)
        .lock_exclusive()
        .into_tuple::<CustomerId>()
        .all(db)
        .await?;
    Ok(())
}

/// One customer's row, within the workspace.
async fn row(
    db: &impl ConnectionTrait,
    workspace_id: WorkspaceId,
    id: CustomerId,
) -> Result<customer::Model> {
    super::scoped::<customer::Entity>(workspace_id)
        .filter(customer::Column::Id.eq(id))
        .one(db)
        .await?
        .ok_or_else(|| Error::not_found("customer", ids::encode(id)))
}

/// Merges one live customer into a live survivor, both locked.
async fn merge_one(
    db: &impl ConnectionTrait,
    workspace_id: WorkspaceId,
    actor: &Actor,
    survivor_id: CustomerId,
    merged_id: CustomerId,
    choices: &[FieldChoice],
    why: Why,
) -> Result<merge_record::Model> {
    let now = super::now();
    let before = row(db, workspace_id, survivor_id).await?;
    let gone = row(db, workspace_id, merged_id).await?;
    if before.merged_into.is_some() || gone.merged_into.is_some() {
        return Err(Error::Conflict(format!(
            "{} or {} was merged meanwhile; try again",
            ids::encode(survivor_id),
            ids::encode(merged_id)
        )));
    }
    let merge_id = MergeRecordId::new();
    let (reason, score) = match why {
        Why::Manual => ("manual", None),
        Why::Automatic(score) => ("automatic", Some(score)),
    };
    // The record first (the moved rows name it); completed once the merge is done.
    let record = merge_record::ActiveModel {
        id: Set(merge_id),
        workspace_id: Set(workspace_id),
        survivor_id: Set(survivor_id),
        merged_id: Set(merged_id),
        reason: Set(reason.to_owned()),
        score: Set(score),
        actor: Set(json(actor)?),
        survivor_before: Set(json(&before)?),
        survivor_after: Set(json(&before)?),
        merged_before: Set(json(&gone)?),
        changes: Set(json(&Changes::default())?),
        created_at: Set(now),
        unmerged_at: Set(None),
        unmerged_by: Set(None),
    }
    .insert(db)
    .await?;
    let mut changes = Changes {
        demoted: demote_points(db, workspace_id, survivor_id, merged_id).await?,
        ..Changes::default()
    };

    for (table, stamped) in MOVED {
        let stamp = if stamped { ", updated_at" } else { "" };
        execute(
            db,
            &format!(
                "INSERT INTO merge_moved (merge_id, tbl, row_id, workspace_id{stamp}) \
                 SELECT ?, ?, id, workspace_id{stamp} FROM {table} \
                 WHERE workspace_id = ? AND customer_id = ?"
            ),
            vec![
                merge_id.into(),
                table.into(),
                workspace_id.into(),
                merged_id.into(),
            ],
        )
        .await?;
        let (set, mut values) = if stamped {
            (
                "customer_id = ?, updated_at = ?",
                vec![survivor_id.into(), now.into()],
            )
        } else {
            ("customer_id = ?", vec![survivor_id.into()])
        };
        values.extend([workspace_id.into(), merged_id.into()]);
        execute(
            db,
            &format!("UPDATE {table} SET {set} WHERE workspace_id = ? AND customer_id = ?"),
            values,
        )
        .await?;
    }
    move_tags(db, workspace_id, survivor_id, merged_id, &mut changes).await?;
    changes.suggestions =
        resolve_suggestions(db, workspace_id, survivor_id, merged_id, now).await?;

    // The tombstone first: the survivor may take its external id.
    let mut tombstone: customer::ActiveModel = gone.clone().into();
    tombstone.merged_into = Set(Some(survivor_id));
    tombstone.external_id = Set(None);
    tombstone.updated_at = Set(now);
    tombstone.update(db).await?;
    let after = chosen(&before, &gone, choices, now)?;
    let external_id = after.external_id.clone();
    let after = write_whole(db, after).await.map_err(|err| {
        Error::on_unique(err, || {
            super::customer::external_id_taken(external_id.as_deref())
        })
    })?;

    let mut record: merge_record::ActiveModel = record.into();
    record.survivor_after = Set(json(&after)?);
    record.changes = Set(json(&changes)?);
    let record = record.update(db).await?;
    let change = MergeChange::of(&record, actor);
    super::event::append(db, workspace_id, Event::CustomerMerged(&change)).await?;
    Ok(record)
}

fn json(value: &impl Serialize) -> Result<serde_json::Value> {
    serde_json::to_value(value)
        .map_err(|err| Error::Internal(format!("a merge record did not serialise: {err}")))
}

fn read<T: serde::de::DeserializeOwned>(value: &serde_json::Value) -> Result<T> {
    serde_json::from_value(value.clone())
        .map_err(|err| Error::Internal(format!("a merge record did not read back: {err}")))
}

/// Writes every column of a customer row.
async fn write_whole(
    db: &impl ConnectionTrait,
    model: customer::Model,
) -> std::result::Result<customer::Model, sea_orm::DbErr> {
    model.into_active_model().reset_all().update(db).await
}

/// The survivor as the merge of `gone` leaves it: each field from the customer its choice
/// names, else the survivor's own unless it has none; seen times widened.
fn chosen(
    survivor: &customer::Model,
    gone: &customer::Model,
    choices: &[FieldChoice],
    now: DateTime<Utc>,
) -> Result<customer::Model> {
    let choice = |field: MergeField, key: Option<&str>| {
        choices
            .iter()
            .find(|c| c.field == field && c.key.as_deref() == key)
            .map(|c| c.customer_id)
    };
    // Whether the merged customer's value wins: chosen, or the survivor has none and no
    // choice keeps the survivor's.
    let takes =
        |field: MergeField, key: Option<&str>, survivor_empty: bool| match choice(field, key) {
            Some(id) => id == gone.id,
            None => survivor_empty,
        };
    let mut after = survivor.clone();
    if takes(MergeField::DisplayName, None, false) {
        after.display_name = gone.display_name.clone();
    }
    if takes(MergeField::GivenName, None, survivor.given_name.is_none()) {
        after.given_name = gone.given_name.clone();
    }
    if takes(MergeField::FamilyName, None, survivor.family_name.is_none()) {
        after.family_name = gone.family_name.clone();
    }
    if takes(MergeField::LifecycleStage, None, false) {
        after.lifecycle_stage = gone.lifecycle_stage;
    }
    if takes(
        MergeField::Organization,
        None,
        survivor.organization_id.is_none(),
    ) {
        after.organization_id = gone.organization_id;
    }
    if takes(MergeField::ExternalId, None, survivor.external_id.is_none()) {
        after.external_id = gone.external_id.clone();
    }
    // A birth date and a postal address the survivor lacks come from the merged record;
    // the address whole (the parts of two addresses make none).
    if survivor.birth_date.is_none() {
        after.birth_date = gone.birth_date;
    }
    let no_address = [
        &survivor.street,
        &survivor.street2,
        &survivor.locality,
        &survivor.region,
        &survivor.postal_code,
        &survivor.country,
    ]
    .iter()
    .all(|part| part.is_none());
    if no_address {
        after.street = gone.street.clone();
        after.street2 = gone.street2.clone();
        after.locality = gone.locality.clone();
        after.region = gone.region.clone();
        after.postal_code = gone.postal_code.clone();
        after.country = gone.country.clone();
    }
    let mut custom = survivor.custom.as_object().cloned().unwrap_or_default();
    let theirs = gone.custom.as_object().cloned().unwrap_or_default();
    let keys: Vec<String> = theirs
        .keys()
        .cloned()
        .chain(
            choices
                .iter()
                .filter(|c| c.field == MergeField::CustomAttribute && c.customer_id == gone.id)
                .filter_map(|c| c.key.clone()),
        )
        .collect();
    for key in keys {
        let empty = custom.get(&key).is_none_or(serde_json::Value::is_null);
        if takes(MergeField::CustomAttribute, Some(&key), empty) {
            match theirs.get(&key) {
                Some(value) => custom.insert(key, value.clone()),
                None => custom.remove(&key),
            };
        }
    }
    after.custom = super::custom_object("customAttributes", Some(custom.into()))?;
    after.first_seen_at = survivor.first_seen_at.min(gone.first_seen_at);
    after.last_seen_at = survivor.last_seen_at.max(gone.last_seen_at);
    after.updated_at = now;
    Ok(after)
}

/// Makes the merged customer's primary contact points secondary where the survivor has a
/// primary of the same kind (one primary a kind); returns those changed.
async fn demote_points(
    db: &impl ConnectionTrait,
    workspace_id: WorkspaceId,
    survivor_id: CustomerId,
    merged_id: CustomerId,
) -> Result<Vec<ContactPointId>> {
    let points = super::scoped::<contact_point::Entity>(workspace_id)
        .filter(contact_point::Column::CustomerId.is_in([survivor_id, merged_id]))
        .filter(contact_point::Column::IsPrimary.eq(true))
        .all(db)
        .await?;
    let kinds: HashSet<_> = points
        .iter()
        .filter(|p| p.customer_id == survivor_id)
        .map(|p| p.kind)
        .collect();
    let mut demoted: Vec<ContactPointId> = points
        .iter()
        .filter(|p| p.customer_id == merged_id && kinds.contains(&p.kind))
        .map(|p| p.id)
        .collect();
    demoted.sort_unstable();
    set_primary(db, workspace_id, &demoted, false).await?;
    Ok(demoted)
}

async fn set_primary(
    db: &impl ConnectionTrait,
    workspace_id: WorkspaceId,
    ids: &[ContactPointId],
    primary: bool,
) -> Result<()> {
    if ids.is_empty() {
        return Ok(());
    }
    contact_point::Entity::update_many()
        .col_expr(
            contact_point::Column::IsPrimary,
            sea_orm::sea_query::Expr::value(primary),
        )
        .filter(contact_point::Column::WorkspaceId.eq(workspace_id))
        .filter(contact_point::Column::Id.is_in(ids.iter().copied()))
        .exec(db)
        .await?;
    Ok(())
}

/// Moves the merged customer's tags to the survivor: a tag the survivor has already is
/// dropped from the merged one. Records the links as they were.
async fn move_tags(
    db: &impl ConnectionTrait,
    workspace_id: WorkspaceId,
    survivor_id: CustomerId,
    merged_id: CustomerId,
    changes: &mut Changes,
) -> Result<()> {
    let links = super::scoped::<customer_tag::Entity>(workspace_id)
        .filter(customer_tag::Column::CustomerId.is_in([survivor_id, merged_id]))
        .all(db)
        .await?;
    let held: HashSet<TagId> = links
        .iter()
        .filter(|l| l.customer_id == survivor_id)
        .map(|l| l.tag_id)
        .collect();
    let mut theirs: Vec<&customer_tag::Model> = links
        .iter()
        .filter(|l| l.customer_id == merged_id)
        .collect();
    theirs.sort_unstable_by_key(|l| l.tag_id);
    changes.tags = theirs
        .iter()
        .map(|l| TagLink {
            tag_id: l.tag_id,
            created_at: l.created_at,
        })
        .collect();
    changes.moved_tags = theirs
        .iter()
        .map(|l| l.tag_id)
        .filter(|tag| !held.contains(tag))
        .collect();
    if !changes.moved_tags.is_empty() {
        customer_tag::Entity::update_many()
            .col_expr(
                customer_tag::Column::CustomerId,
                sea_orm::sea_query::Expr::value(survivor_id),
            )
            .filter(customer_tag::Column::WorkspaceId.eq(workspace_id))
            .filter(customer_tag::Column::CustomerId.eq(merged_id))
            .filter(customer_tag::Column::TagId.is_in(changes.moved_tags.iter().copied()))
            .exec(db)
            .await?;
    }
    customer_tag::Entity::delete_many()
        .filter(customer_tag::Column::WorkspaceId.eq(workspace_id))
        .filter(customer_tag::Column::CustomerId.eq(merged_id))
        .exec(db)
        .await?;
    Ok(())
}

/// The suggestions naming the merged customer: the pair merged is resolved, a pair with
/// a third customer now names the survivor (or goes, when the survivor has that pair).
async fn resolve_suggestions(
    db: &impl ConnectionTrait,
    workspace_id: WorkspaceId,
    survivor_id: CustomerId,
    merged_id: CustomerId,
    now: DateTime<Utc>,
) -> Result<Vec<SuggestionChange>> {
    use duplicate_suggestion::{Column, Entity};
    let theirs = super::scoped::<Entity>(workspace_id)
        .filter(
            sea_orm::Condition::any()
                .add(Column::CustomerA.eq(merged_id))
                .add(Column::CustomerB.eq(merged_id)),
        )
        .order_by_asc(Column::Id)
        .all(db)
        .await?;
    let survivors: HashSet<(CustomerId, CustomerId)> = super::scoped::<Entity>(workspace_id)
        .filter(
            sea_orm::Condition::any()
                .add(Column::CustomerA.eq(survivor_id))
                .add(Column::CustomerB.eq(survivor_id)),
        )
        .all(db)
        .await?
        .into_iter()
        .map(|row| (row.customer_a, row.customer_b))
        .collect();
    let mut changes = Vec::new();
    for row in theirs {
        let other = if row.customer_a == merged_id {
            row.customer_b
        } else {
            row.customer_a
        };
        let pair = (survivor_id.min(other), survivor_id.max(other));
        let action = if other == survivor_id {
            let mut active: duplicate_suggestion::ActiveModel = row.clone().into();
            active.status = Set(DuplicateStatus::Merged);
            active.updated_at = Set(now);
            active.update(db).await?;
            SuggestionAction::Merged
        } else if survivors.contains(&pair) {
            Entity::delete_by_id(row.id).exec(db).await?;
            SuggestionAction::Deleted
        } else {
            let mut active: duplicate_suggestion::ActiveModel = row.clone().into();
            active.customer_a = Set(pair.0);
            active.customer_b = Set(pair.1);
            active.updated_at = Set(now);
            active.update(db).await?;
            SuggestionAction::Repointed
        };
        changes.push(SuggestionChange {
            before: row,
            action,
        });
    }
    Ok(changes)
}

/// Undoes the latest merge of `customer_id` (the merged customer's id; agent role): every
/// row and link the merge moved and that is still on the survivor goes back, each as it
/// was unless it changed since; what arrived since through the merged customer's
/// identities (and our answers in their conversations) goes with them. `NOT_FOUND` for an
/// id of another workspace; `BAD_USER_INPUT` naming `customerId` when the customer has no
/// merge to undo; `CONFLICT` when its survivor was merged in turn (undo that first).
pub async fn unmerge(
    db: &impl TransactionTrait,
    caller: &Caller,
    customer_id: CustomerId,
) -> Result<Unmerged> {
    caller.require(Role::Agent, "unmerging a customer")?;
    let actor = Actor::of(caller);
    let mut attempt = 0;
    loop {
        attempt += 1;
        let txn = super::begin_write(db).await?;
        match unmerge_within(&txn, caller.workspace_id, &actor, customer_id).await {
            Ok(unmerged) => {
                txn.commit().await?;
                return Ok(unmerged);
            }
            Err(err) if attempt < 3 && is_deadlock(&err) => {
                txn.rollback().await?;
            }
            Err(err) => return Err(err),
        }
    }
}

async fn unmerge_within(
    db: &impl ConnectionTrait,
    workspace_id: WorkspaceId,
    actor: &Actor,
    merged_id: CustomerId,
) -> Result<Unmerged> {
    let record = merge_record::Entity::find()
        .filter(merge_record::Column::WorkspaceId.eq(workspace_id))
        .filter(merge_record::Column::MergedId.eq(merged_id))
        .filter(merge_record::Column::UnmergedAt.is_null())
        .order_by_desc(merge_record::Column::CreatedAt)
        .one(db)
        .await?;
    let Some(record) = record else {
        row(db, workspace_id, merged_id).await?;
        return Err(Error::field(
            "customerId",
            format!(
                "{} has no merge to undo: it was never merged, or was unmerged already",
                ids::encode(merged_id)
            ),
        ));
    };
    let survivor_id = record.survivor_id;
    if db.get_database_backend() == DbBackend::Postgres {
        let moved = moved_ids(db, record.id, "conversation").await?;
        let mut ids: Vec<entity::ConversationId> = moved
            .into_iter()
            .map(entity::ConversationId::from_uuid)
            .collect();
        ids.sort_unstable();
        for chunk in ids.chunks(5_000) {
            super::scoped::<conversation::Entity>(workspace_id)
                .select_only()
                .column(conversation::Column::Id)
                .filter(conversation::Column::Id.is_in(chunk.iter().copied()))
                .order_by_asc(conversation::Column::Id)
                .lock_exclusive()
                .into_tuple::<entity::ConversationId>()
                .all(db)
                .await?;
        }
        lock_customers(db, workspace_id, [survivor_id, merged_id]).await?;
    }
    let survivor = row(db, workspace_id, survivor_id).await?;
    let tombstone = row(db, workspace_id, merged_id).await?;
    if let Some(next) = survivor.merged_into {
        return Err(Error::Conflict(format!(
            "{} was merged into {} since; unmerge it first",
            ids::encode(survivor_id),
            ids::encode(next)
        )));
    }
    // Read again under the locks: another unmerge of the same customer may have
    // committed while this one waited for them (and a new merge after it made a new
    // record), so the record read first may be undone already.
    let still_active = merge_record::Entity::find()
        .filter(merge_record::Column::WorkspaceId.eq(workspace_id))
        .filter(merge_record::Column::Id.eq(record.id))
        .filter(merge_record::Column::UnmergedAt.is_null())
        .one(db)
        .await?
        .is_some();
    if !still_active {
        return Err(Error::field(
            "customerId",
            format!(
                "{} was unmerged already, by another request at the same time",
                ids::encode(merged_id)
            ),
        ));
    }
    if tombstone.merged_into != Some(survivor_id) {
        return Err(Error::Conflict(format!(
            "{} is no longer merged into {}: its merge changed meanwhile, try again",
            ids::encode(merged_id),
            ids::encode(survivor_id)
        )));
    }
    let now = super::now();
    let stamp = record.created_at;
    let merge_id: Value = record.id.into();
    let (w, s, m): (Value, Value, Value) =
        (workspace_id.into(), survivor_id.into(), merged_id.into());
    let moved = |table: &str| {
        format!("SELECT row_id FROM merge_moved WHERE merge_id = ? AND tbl = '{table}'")
    };

    // Rows that arrived since, through the merged customer's identities: conversations
    // whose every identified message is theirs, then those messages and our answers in
    // the merged customer's conversations.
    for (table, stamped) in MOVED {
        if stamped {
            execute(
                db,
                &format!(
                    "UPDATE {table} SET customer_id = ?, updated_at = (SELECT m.updated_at \
                     FROM merge_moved m WHERE m.merge_id = ? AND m.tbl = '{table}' \
                     AND m.row_id = {table}.id) \
                     WHERE workspace_id = ? AND customer_id = ? AND updated_at = ? \
                     AND id IN ({})",
                    moved(table)
                ),
                vec![
                    m.clone(),
                    merge_id.clone(),
                    w.clone(),
                    s.clone(),
                    stamp.into(),
                    merge_id.clone(),
                ],
            )
            .await?;
            execute(
                db,
                &format!(
                    "UPDATE {table} SET customer_id = ?, updated_at = ? \
                     WHERE workspace_id = ? AND customer_id = ? AND id IN ({})",
                    moved(table)
                ),
                vec![
                    m.clone(),
                    now.into(),
                    w.clone(),
                    s.clone(),
                    merge_id.clone(),
                ],
            )
            .await?;
        } else {
            execute(
                db,
                &format!(
                    "UPDATE {table} SET customer_id = ? \
                     WHERE workspace_id = ? AND customer_id = ? AND id IN ({})",
                    moved(table)
                ),
                vec![m.clone(), w.clone(), s.clone(), merge_id.clone()],
            )
            .await?;
        }
        if table == "conversation" {
            execute(
                db,
                &format!(
                    "UPDATE conversation SET customer_id = ?, updated_at = ? \
                     WHERE workspace_id = ? AND customer_id = ? \
                     AND id NOT IN ({moved_conversations}) \
                     AND EXISTS (SELECT 1 FROM interaction i \
                       WHERE i.conversation_id = conversation.id \
                       AND i.identity_id IN ({moved_identities})) \
                     AND NOT EXISTS (SELECT 1 FROM interaction i \
                       WHERE i.conversation_id = conversation.id \
                       AND i.identity_id IS NOT NULL \
                       AND i.identity_id NOT IN ({moved_identities}))",
                    moved_conversations = moved("conversation"),
                    moved_identities = moved("identity"),
                ),
                vec![
                    m.clone(),
                    now.into(),
                    w.clone(),
                    s.clone(),
                    merge_id.clone(),
                    merge_id.clone(),
                    merge_id.clone(),
                ],
            )
            .await?;
        }
    }
    let arrived = execute(
        db,
        &format!(
            "UPDATE interaction SET customer_id = ? \
             WHERE workspace_id = ? AND customer_id = ? \
             AND (identity_id IN ({}) OR (identity_id IS NULL AND conversation_id IN \
               (SELECT id FROM conversation WHERE workspace_id = ? AND customer_id = ?)))",
            moved("identity")
        ),
        vec![
            m.clone(),
            w.clone(),
            s.clone(),
            merge_id.clone(),
            w.clone(),
            m.clone(),
        ],
    )
    .await?;

    let changes: Changes = read(&record.changes)?;
    set_primary(db, workspace_id, &changes.demoted, true).await?;
    if !changes.moved_tags.is_empty() {
        customer_tag::Entity::delete_many()
            .filter(customer_tag::Column::WorkspaceId.eq(workspace_id))
            .filter(customer_tag::Column::CustomerId.eq(survivor_id))
            .filter(customer_tag::Column::TagId.is_in(changes.moved_tags.iter().copied()))
            .exec(db)
            .await?;
    }
    if !changes.tags.is_empty() {
        let existing: HashSet<TagId> = super::scoped::<entity::tag::Entity>(workspace_id)
            .select_only()
            .column(entity::tag::Column::Id)
            .filter(entity::tag::Column::Id.is_in(changes.tags.iter().map(|t| t.tag_id)))
            .into_tuple::<TagId>()
            .all(db)
            .await?
            .into_iter()
            .collect();
        let rows: Vec<customer_tag::ActiveModel> = changes
            .tags
            .iter()
            .filter(|t| existing.contains(&t.tag_id))
            .map(|t| customer_tag::ActiveModel {
                customer_id: Set(merged_id),
                tag_id: Set(t.tag_id),
                workspace_id: Set(workspace_id),
                created_at: Set(t.created_at),
            })
            .collect();
        if !rows.is_empty() {
            customer_tag::Entity::insert_many(rows)
                .on_conflict(
                    sea_orm::sea_query::OnConflict::columns([
                        customer_tag::Column::CustomerId,
                        customer_tag::Column::TagId,
                    ])
                    .do_nothing()
                    .to_owned(),
                )
                .exec_without_returning(db)
                .await?;
        }
    }
    restore_suggestions(db, workspace_id, &changes.suggestions).await?;

    // The survivor first: it gives back an external id the merged customer takes again.
    let before: customer::Model = read(&record.survivor_before)?;
    let after: customer::Model = read(&record.survivor_after)?;
    let mut restored = three_way(&before, &after, &survivor, now)?;
    // Seen times follow from what the survivor still holds: its own before this merge,
    // the customers still merged into it, and its interactions.
    let (first, last) = seen_of(db, workspace_id, survivor_id, record.id, &before).await?;
    if (first, last) != (restored.first_seen_at, restored.last_seen_at) {
        restored.first_seen_at = first;
        restored.last_seen_at = last;
        restored.updated_at = now;
    }
    let survivor = if restored == survivor {
        survivor
    } else {
        let external_id = restored.external_id.clone();
        write_whole(db, restored).await.map_err(|err| {
            Error::on_unique(err, || {
                format!(
                    "the survivor's former externalId {} is taken by another customer now",
                    external_id.unwrap_or_default()
                )
            })
        })?
    };
    let mut back: customer::Model = read(&record.merged_before)?;
    if arrived > 0 {
        let (first, last) = seen_since(db, workspace_id, merged_id, record.id).await?;
        if let (Some(first), Some(last)) = (first, last) {
            back.first_seen_at = back.first_seen_at.min(first);
            back.last_seen_at = back.last_seen_at.max(last);
            back.updated_at = now;
        }
    }
    let external_id = back.external_id.clone();
    let customer = write_whole(db, back).await.map_err(|err| {
        Error::on_unique(err, || {
            format!(
                "the externalId {} of the merged customer is taken by another customer now",
                external_id.unwrap_or_default()
            )
        })
    })?;

    let mut done: merge_record::ActiveModel = record.into();
    done.unmerged_at = Set(Some(now));
    done.unmerged_by = Set(Some(json(actor)?));
    let record = done.update(db).await?;
    let change = MergeChange::of(&record, actor);
    super::event::append_many(
        db,
        workspace_id,
        [
            Event::CustomerUnmerged(&change),
            Event::CustomerUpdated(&survivor),
            Event::CustomerUpdated(&customer),
        ],
    )
    .await?;
    super::dedupe::refresh_keys(db, workspace_id, &[customer.id, survivor.id]).await?;
    Ok(Unmerged {
        customer,
        survivor,
        record,
    })
}

/// The survivor after an unmerge: each column the merge set and nothing changed since
/// goes back to its value before the merge; one changed since stays.
fn three_way(
    before: &customer::Model,
    after: &customer::Model,
    current: &customer::Model,
    now: DateTime<Utc>,
) -> Result<customer::Model> {
    let (before, after, current) = (json(before)?, json(after)?, json(current)?);
    let (Some(before), Some(after), Some(current)) =
        (before.as_object(), after.as_object(), current.as_object())
    else {
        return Err(Error::Internal("a customer row is not an object".into()));
    };
    let mut restored = current.clone();
    let mut kept = false;
    for (column, value) in current {
        if column == "updated_at" {
            continue;
        }
        if after.get(column) == Some(value) {
            if let Some(old) = before.get(column) {
                restored.insert(column.clone(), old.clone());
            }
        } else {
            kept = true;
        }
    }
    let untouched = after.get("updated_at") == current.get("updated_at");
    let stamp = match (untouched, kept) {
        (true, false) => before.get("updated_at").cloned(),
        _ => Some(json(&now)?),
    };
    if let Some(stamp) = stamp {
        restored.insert("updated_at".into(), stamp);
    }
    read(&serde_json::Value::Object(restored))
}

/// The survivor's first and last seen once `merge_id` is undone: its own before it was
/// first a survivor (what later merges added is theirs), widened by the customers still
/// merged into it and by its interactions.
async fn seen_of(
    db: &impl ConnectionTrait,
    workspace_id: WorkspaceId,
    survivor_id: CustomerId,
    merge_id: MergeRecordId,
    before: &customer::Model,
) -> Result<(DateTime<Utc>, DateTime<Utc>)> {
    let earliest = merge_record::Entity::find()
        .filter(merge_record::Column::WorkspaceId.eq(workspace_id))
        .filter(merge_record::Column::SurvivorId.eq(survivor_id))
        .order_by_asc(merge_record::Column::CreatedAt)
        .order_by_asc(merge_record::Column::Id)
        .one(db)
        .await?;
    let own: customer::Model = match earliest {
        Some(record) => read(&record.survivor_before)?,
        None => before.clone(),
    };
    let (mut first, mut last) = (own.first_seen_at, own.last_seen_at);
    let others = merge_record::Entity::find()
        .filter(merge_record::Column::WorkspaceId.eq(workspace_id))
        .filter(merge_record::Column::SurvivorId.eq(survivor_id))
        .filter(merge_record::Column::UnmergedAt.is_null())
        .filter(merge_record::Column::Id.ne(merge_id))
        .all(db)
        .await?;
    for other in others {
        let merged: customer::Model = read(&other.merged_before)?;
        first = first.min(merged.first_seen_at);
        last = last.max(merged.last_seen_at);
    }
    let row = db
        .query_one(super::statement(
            db.get_database_backend(),
            "SELECT min(occurred_at) AS first, max(occurred_at) AS last FROM interaction \
             WHERE workspace_id = ? AND customer_id = ?",
            vec![workspace_id.into(), survivor_id.into()],
        ))
        .await?;
    if let Some(row) = row {
        let (lo, hi): (Option<DateTime<Utc>>, Option<DateTime<Utc>>) =
            (row.try_get("", "first")?, row.try_get("", "last")?);
        first = lo.map_or(first, |lo| first.min(lo));
        last = hi.map_or(last, |hi| last.max(hi));
    }
    Ok((first, last))
}

async fn moved_ids(
    db: &impl ConnectionTrait,
    merge_id: MergeRecordId,
    table: &str,
) -> Result<Vec<uuid::Uuid>> {
    Ok(entity::merge_moved::Entity::find()
        .select_only()
        .column(entity::merge_moved::Column::RowId)
        .filter(entity::merge_moved::Column::MergeId.eq(merge_id))
        .filter(entity::merge_moved::Column::Tbl.eq(table))
        .into_tuple()
        .all(db)
        .await?)
}

/// The first and last time of the merged customer's interactions that were not theirs
/// before the merge (those that arrived since and came back with them).
async fn seen_since(
    db: &impl ConnectionTrait,
    workspace_id: WorkspaceId,
    merged_id: CustomerId,
    merge_id: MergeRecordId,
) -> Result<(Option<DateTime<Utc>>, Option<DateTime<Utc>>)> {
    let backend = db.get_database_backend();
    let row = db
        .query_one(super::statement(
            backend,
            "SELECT min(occurred_at) AS first, max(occurred_at) AS last FROM interaction \
             WHERE workspace_id = ? AND customer_id = ? AND id NOT IN \
             (SELECT row_id FROM merge_moved WHERE merge_id = ? AND tbl = 'interaction')",
            vec![workspace_id.into(), merged_id.into(), merge_id.into()],
        ))
        .await?;
    let Some(row) = row else {
        return Ok((None, None));
    };
    Ok((row.try_get("", "first")?, row.try_get("", "last")?))
}

async fn restore_suggestions(
    db: &impl ConnectionTrait,
    workspace_id: WorkspaceId,
    changes: &[SuggestionChange],
) -> Result<()> {
    use duplicate_suggestion::{ActiveModel, Column, Entity};
    use sea_orm::PaginatorTrait;
    for change in changes {
        let before = &change.before;
        match change.action {
            SuggestionAction::Merged | SuggestionAction::Repointed => {
                let Some(current) = super::scoped::<Entity>(workspace_id)
                    .filter(Column::Id.eq(before.id))
                    .one(db)
                    .await?
                else {
                    continue;
                };
                let mut active: ActiveModel = current.into();
                active.customer_a = Set(before.customer_a);
                active.customer_b = Set(before.customer_b);
                active.status = Set(before.status);
                active.updated_at = Set(before.updated_at);
                active.update(db).await?;
            }
            SuggestionAction::Deleted => {
                let present = super::scoped::<customer::Entity>(workspace_id)
                    .filter(customer::Column::Id.is_in([before.customer_a, before.customer_b]))
                    .count(db)
                    .await?;
                if present == 2 {
                    Entity::insert(ActiveModel::from(before.clone()))
                        .on_conflict(
                            sea_orm::sea_query::OnConflict::columns([
                                Column::WorkspaceId,
                                Column::CustomerA,
                                Column::CustomerB,
                            ])
                            .do_nothing()
                            .to_owned(),
                        )
                        .exec_without_returning(db)
                        .await?;
                }
            }
        }
    }
    Ok(())
}

/// Runs a statement of this module; the number of rows it changed.
async fn execute(db: &impl ConnectionTrait, sql: &str, values: Vec<Value>) -> Result<u64> {
    let result = db
        .execute(super::statement(db.get_database_backend(), sql, values))
        .await?;
    Ok(result.rows_affected())
}

/// For the customers a batch has locked (`customers`): those merged since the batch read
/// who wrote its items are replaced by their survivors (locked too), each id in `ids`
/// naming one is changed to its survivor, and the identities and contact points the
/// batch gave a merged customer are moved to the survivor. Nothing to do, and no
/// statement, when no locked customer is merged.
pub async fn follow_merged<'a>(
    db: &impl ConnectionTrait,
    workspace_id: WorkspaceId,
    customers: &mut HashMap<CustomerId, customer::Model>,
    ids: impl IntoIterator<Item = &'a mut CustomerId>,
) -> Result<()> {
    let mut survivors: BTreeMap<CustomerId, CustomerId> = customers
        .values()
        .filter_map(|row| Some((row.id, row.merged_into?)))
        .collect();
    if survivors.is_empty() {
        return Ok(());
    }
    let gone: Vec<CustomerId> = survivors.keys().copied().collect();
    for id in &gone {
        customers.remove(id);
    }
    for _ in 0..MAX_CHAIN {
        let wanted: Vec<CustomerId> = survivors
            .values()
            .filter(|id| !customers.contains_key(id))
            .copied()
            .collect();
        if wanted.is_empty() {
            break;
        }
        let mut sorted = wanted.clone();
        sorted.sort_unstable();
        sorted.dedup();
        let rows = super::scoped::<customer::Entity>(workspace_id)
            .filter(customer::Column::Id.is_in(sorted))
            .order_by_asc(customer::Column::Id)
            .lock_exclusive()
            .all(db)
            .await?;
        let mut next: HashMap<CustomerId, CustomerId> = HashMap::new();
        for row in rows {
            match row.merged_into {
                Some(further) => {
                    next.insert(row.id, further);
                }
                None => {
                    customers.insert(row.id, row);
                }
            }
        }
        for survivor in survivors.values_mut() {
            if let Some(further) = next.get(survivor) {
                *survivor = *further;
            }
        }
    }
    for (merged, survivor) in &survivors {
        for table in ["identity", "contact_point"] {
            execute(
                db,
                &format!(
                    "UPDATE {table} SET customer_id = ? WHERE workspace_id = ? AND customer_id = ?"
                ),
                vec![(*survivor).into(), workspace_id.into(), (*merged).into()],
            )
            .await?;
        }
    }
    for id in ids {
        if let Some(survivor) = survivors.get(id) {
            *id = *survivor;
        }
    }
    Ok(())
}

/// The identity an item of the per-item path is stored under, once its customer is
/// locked: when that customer was merged meanwhile (or by this transaction), the identity
/// (and any other row given to the tombstone since) is the survivor's.
pub async fn settled_identity(
    db: &impl ConnectionTrait,
    workspace_id: WorkspaceId,
    identity: identity::Model,
) -> Result<identity::Model> {
    let locked = super::scoped::<customer::Entity>(workspace_id)
        .filter(customer::Column::Id.eq(identity.customer_id))
        .lock_exclusive()
        .one(db)
        .await?;
    let Some(customer) = locked else {
        return Ok(identity);
    };
    if customer.merged_into.is_none() {
        return Ok(identity);
    }
    let mut customers = HashMap::from([(customer.id, customer)]);
    let mut customer_id = identity.customer_id;
    follow_merged(db, workspace_id, &mut customers, [&mut customer_id]).await?;
    Ok(identity::Model {
        customer_id,
        ..identity
    })
}

/// A new duplicate suggestion scoring at or above the workspace's threshold: its pair is
/// merged at once, the older customer surviving.
#[derive(Clone, Debug)]
pub struct AutoMerge {
    pub a: CustomerId,
    pub b: CustomerId,
    pub score: f64,
}

/// Merges each pair of `pending` inside `db` (the transaction that created their
/// suggestions), the older customer surviving, recorded as automatic with Rapport as the
/// actor. A pair whose customers are one already (an earlier pair merged them) is skipped.
///
/// Each pair is merged under a savepoint: a merge that fails (the two records' custom
/// attributes together over the limit, a conflict, a deadlock on PostgreSQL) is rolled
/// back alone and leaves its suggestion pending for a person, logged; the batch that
/// found the pair still commits. Failing the batch instead would fail it again on every
/// retry and hold its source's cursor back.
pub async fn merge_automatically(
    db: &impl ConnectionTrait,
    workspace_id: WorkspaceId,
    pending: &[AutoMerge],
) -> Result<()> {
    let actor = Actor::system("automatic merge");
    for pair in pending {
        db.execute_unprepared("SAVEPOINT rapport_auto_merge")
            .await?;
        match merge_pair(db, workspace_id, &actor, pair).await {
            Ok(()) => {
                db.execute_unprepared("RELEASE SAVEPOINT rapport_auto_merge")
                    .await?;
            }
            Err(err) => {
                db.execute_unprepared("ROLLBACK TO SAVEPOINT rapport_auto_merge")
                    .await?;
                db.execute_unprepared("RELEASE SAVEPOINT rapport_auto_merge")
                    .await?;
                tracing::warn!(
                    customer_a = %crate::ids::encode(pair.a),
                    customer_b = %crate::ids::encode(pair.b),
                    error = %err,
                    "an automatic merge failed; the suggestion stays for a person"
                );
            }
        }
    }
    Ok(())
}

async fn merge_pair(
    db: &impl ConnectionTrait,
    workspace_id: WorkspaceId,
    actor: &Actor,
    pair: &AutoMerge,
) -> Result<()> {
    let (Some(a), Some(b)) = (
        resolve(db, workspace_id, pair.a).await?,
        resolve(db, workspace_id, pair.b).await?,
    ) else {
        return Ok(());
    };
    if a.id == b.id {
        return Ok(());
    }
    let (survivor, merged) = if (a.created_at, a.id) <= (b.created_at, b.id) {
        (a.id, b.id)
    } else {
        (b.id, a.id)
    };
    let input = MergeInput {
        survivor_id: survivor,
        merged_ids: vec![merged],
        choices: Vec::new(),
    };
    merge_all(db, workspace_id, actor, &input, Why::Automatic(pair.score)).await?;
    Ok(())
}

/// The merges of a customer as survivor or as merged, newest first (its merge history).
pub async fn history(
    db: &impl ConnectionTrait,
    workspace_id: WorkspaceId,
    customer_id: CustomerId,
) -> Result<Vec<merge_record::Model>> {
    Ok(merge_record::Entity::find()
        .filter(merge_record::Column::WorkspaceId.eq(workspace_id))
        .filter(
            sea_orm::Condition::any()
                .add(merge_record::Column::SurvivorId.eq(customer_id))
                .add(merge_record::Column::MergedId.eq(customer_id)),
        )
        .order_by_desc(merge_record::Column::CreatedAt)
        .order_by_desc(merge_record::Column::Id)
        .all(db)
        .await?)
}

/// The interactions a merge moved (for the search index, which files them under the
/// survivor).
pub async fn moved_interactions(
    db: &impl ConnectionTrait,
    merge_id: MergeRecordId,
) -> Result<Vec<entity::InteractionId>> {
    Ok(moved_ids(db, merge_id, "interaction")
        .await?
        .into_iter()
        .map(entity::InteractionId::from_uuid)
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn customer(name: &str, given: Option<&str>, custom: serde_json::Value) -> customer::Model {
        let now = super::super::now();
        customer::Model {
            id: CustomerId::new(),
            workspace_id: WorkspaceId::new(),
            display_name: name.into(),
            given_name: given.map(Into::into),
            family_name: None,
            lifecycle_stage: entity::enums::LifecycleStage::Lead,
            external_id: None,
            organization_id: None,
            custom,
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

    #[test]
    fn the_survivor_keeps_its_values_and_fills_its_gaps_unless_told_otherwise() {
        let survivor = customer("Ana", None, serde_json::json!({"tier": "gold", "x": null}));
        let gone = customer(
            "Ana Lima",
            Some("Ana"),
            serde_json::json!({"tier": "silver", "x": 1, "y": 2}),
        );
        let now = super::super::now();
        let after = chosen(&survivor, &gone, &[], now).unwrap();
        assert_eq!(after.display_name, "Ana");
        assert_eq!(after.given_name.as_deref(), Some("Ana"));
        assert_eq!(
            after.custom,
            serde_json::json!({"tier": "gold", "x": 1, "y": 2})
        );
        let choices = [
            FieldChoice {
                field: MergeField::DisplayName,
                key: None,
                customer_id: gone.id,
            },
            FieldChoice {
                field: MergeField::CustomAttribute,
                key: Some("tier".into()),
                customer_id: gone.id,
            },
            FieldChoice {
                field: MergeField::GivenName,
                key: None,
                customer_id: survivor.id,
            },
        ];
        let after = chosen(&survivor, &gone, &choices, now).unwrap();
        assert_eq!(after.display_name, "Ana Lima");
        assert_eq!(after.given_name, None);
        assert_eq!(after.custom["tier"], "silver");
    }

    #[test]
    fn an_unmerge_keeps_what_changed_since_the_merge() {
        let before = customer("Ana", None, serde_json::json!({}));
        let mut after = before.clone();
        after.display_name = "Ana Lima".into();
        after.given_name = Some("Ana".into());
        after.updated_at = before.updated_at + chrono::Duration::seconds(1);
        let now = after.updated_at + chrono::Duration::seconds(1);
        assert_eq!(three_way(&before, &after, &after, now).unwrap(), before);
        let mut current = after.clone();
        current.given_name = Some("Anna".into());
        current.updated_at = now;
        let restored = three_way(&before, &after, &current, now).unwrap();
        assert_eq!(restored.display_name, "Ana");
        assert_eq!(restored.given_name.as_deref(), Some("Anna"));
        assert_eq!(restored.updated_at, now);
    }

    #[test]
    fn placeholders_are_numbered_for_postgres() {
        let sql = crate::domain::statement(
            DbBackend::Postgres,
            "a = ? AND b = ?",
            vec![1.into(), 2.into()],
        );
        assert_eq!(sql.sql, "a = $1 AND b = $2");
        let sql = crate::domain::statement(DbBackend::Sqlite, "a = ?", vec![1.into()]);
        assert_eq!(sql.sql, "a = ?");
    }
}
