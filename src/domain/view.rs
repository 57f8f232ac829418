//! A customer with the relations its 360 view asks for, read in the customer's own
//! statement.
//!
//! A 360 view through the loaders costs a statement per relation (contact points,
//! identities, organization, tags, timeline, conversations, deals, notes), each a round
//! trip with its own planning and execution in PostgreSQL: measured beside PostGraphile,
//! which answers the same view with one statement, that was most of the gap (BENCHMARKS.md).
//! On PostgreSQL each relation asked for becomes a column of the customer select: a
//! correlated subquery that aggregates the relation's rows as JSON, in the order its
//! loader reads them. The row mapping is the entities' own `Deserialize` (the JSON keys
//! are the column names, the enum values their stored names), so a relation read here
//! and one read through its loader are the same models.
//!
//! SQLite answers in-process, where a statement costs microseconds: there the customer is
//! read alone and the relations go through the loaders as before ([`Related`] empty).

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock, PoisonError};

use sea_orm::sea_query::Expr;
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseBackend, FromQueryResult, IdenStatic, Iterable,
    QueryFilter, QueryResult, QuerySelect, QueryTrait, Statement,
};
use serde::de::DeserializeOwned;

use super::page::{self, Page, PageArgs};
use super::Caller;
use crate::error::{Error, Result};
use entity::customer::{self, Model};
use entity::{contact_point, conversation, deal, identity, interaction, note, organization, tag};
use entity::{CustomerId, WorkspaceId};

/// The relations a view of customers selects, read with the customers when the database
/// can ([`Related`] holds what was read).
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Wanted {
    pub contact_points: bool,
    pub identities: bool,
    pub organization: bool,
    pub tags: bool,
    pub conversations: bool,
    pub deals: bool,
    pub notes: bool,
    /// The first page of the unfiltered timeline, of this many items.
    pub timeline: Option<u64>,
}

/// What was read of a customer's relations with the customer; `None` for a relation not
/// read here (not asked for, or the database reads relations through the loaders).
#[derive(Debug, Default)]
pub struct Related {
    pub contact_points: Option<Vec<contact_point::Model>>,
    pub identities: Option<Vec<identity::Model>>,
    /// `Some(None)`: read, and the customer has no organization.
    pub organization: Option<Option<organization::Model>>,
    pub tags: Option<Vec<tag::Model>>,
    pub conversations: Option<Vec<conversation::Model>>,
    pub deals: Option<Vec<deal::Model>>,
    pub notes: Option<Vec<note::Model>>,
    /// The timeline's first page of [`Wanted::timeline`] items: its size and the page.
    pub timeline: Option<(u64, Page<interaction::Model>)>,
}

impl Wanted {
    fn is_empty(&self) -> bool {
        *self == Wanted::default()
    }

    /// The timeline's first page of `first` items (the page size the timeline field itself
    /// would use), or `None` when `first` is out of range (the field reports it).
    pub fn timeline_window(first: Option<i32>) -> Option<u64> {
        let args = PageArgs {
            first,
            ..PageArgs::default()
        };
        super::interaction::window(&args)
            .ok()
            .map(|window| window.size)
    }

    /// The columns to add to a customer select: `(alias, correlated subquery)`. Every
    /// subquery is scoped by the outer row's workspace as well as its id.
    fn columns(&self) -> Vec<(&'static str, String)> {
        let mut columns = Vec::new();
        let mut children = |alias, table: &str, order: &str| {
            columns.push((
                alias,
                format!(
                    "(SELECT coalesce(json_agg(r ORDER BY {order}), '[]')::text FROM {table} r \
                     WHERE r.workspace_id = customer.workspace_id AND r.customer_id = customer.id)"
                ),
            ));
        };
        // The orders are the loaders' (`children_of`): its column, then the id.
        if self.contact_points {
            children("rel_contact_points", "contact_point", "r.created_at, r.id");
        }
        if self.identities {
            children("rel_identities", "identity", "r.created_at, r.id");
        }
        if self.conversations {
            children(
                "rel_conversations",
                "conversation",
                "r.last_message_at DESC, r.id DESC",
            );
        }
        if self.deals {
            children("rel_deals", "deal", "r.created_at DESC, r.id DESC");
        }
        if self.notes {
            children("rel_notes", "note", "r.created_at DESC, r.id DESC");
        }
        if self.organization {
            columns.push((
                "rel_organization",
                "(SELECT row_to_json(r)::text FROM organization r \
                 WHERE r.workspace_id = customer.workspace_id AND r.id = customer.organization_id)"
                    .to_owned(),
            ));
        }
        if self.tags {
            columns.push((
                "rel_tags",
                "(SELECT coalesce(json_agg(r ORDER BY r.name, r.id), '[]')::text FROM tag r \
                 JOIN customer_tag l ON l.tag_id = r.id AND l.workspace_id = r.workspace_id \
                 WHERE l.workspace_id = customer.workspace_id AND l.customer_id = customer.id)"
                    .to_owned(),
            ));
        }
        if let Some(size) = self.timeline {
            // Every column but `raw`, as the timeline loader reads them; one row past the
            // page says whether there is a next one.
            let columns_but_raw = interaction::Column::iter()
                .filter(|column| !matches!(column, interaction::Column::Raw))
                .map(|column| format!("i.{}", column.as_str()))
                .collect::<Vec<_>>()
                .join(", ");
            columns.push((
                "rel_timeline",
                format!(
                    "(SELECT coalesce(json_agg(r ORDER BY r.occurred_at DESC, r.id DESC), '[]')::text \
                     FROM (SELECT {columns_but_raw}, NULL::jsonb AS raw FROM interaction i \
                     WHERE i.workspace_id = customer.workspace_id AND i.customer_id = customer.id \
                     ORDER BY i.occurred_at DESC, i.id DESC LIMIT {}) r)",
                    size + 1
                ),
            ));
        }
        columns
    }
}

/// A customer of the caller's workspace with the relations `wanted`, or `NOT_FOUND`. The
/// id of a customer merged into another stands for that survivor.
pub async fn get(
    db: &impl ConnectionTrait,
    caller: &Caller,
    id: CustomerId,
    wanted: &Wanted,
) -> Result<(Model, Related)> {
    let mut id = id;
    for _ in 0..super::merge::MAX_CHAIN {
        let (model, related) = get_one(db, caller, id, wanted).await?;
        match model.merged_into {
            Some(survivor) => id = survivor,
            None => return Ok((model, related)),
        }
    }
    Err(Error::Internal(format!(
        "customer {} is merged through too many customers",
        crate::ids::encode(id)
    )))
}

async fn get_one(
    db: &impl ConnectionTrait,
    caller: &Caller,
    id: CustomerId,
    wanted: &Wanted,
) -> Result<(Model, Related)> {
    let missing = || Error::not_found("customer", crate::ids::encode(id));
    if !wanted.is_empty() && db.get_database_backend() == DatabaseBackend::Postgres {
        match db
            .query_one(statement(wanted, caller.workspace_id, id))
            .await
        {
            Ok(Some(row)) => {
                let model = super::decode::Fast::<Model>::from_query_result(&row, "")?.0;
                return Ok((model, related(&row, wanted)?));
            }
            Ok(None) => return Err(missing()),
            // One relation that cannot be read must not cost the customer and every other
            // relation: read the customer alone, and each relation through its loader,
            // where only the broken one fails (a GraphQL answer keeps its other fields).
            Err(err) => {
                tracing::warn!(error = %err, "reading a customer with its relations failed; reading them one relation at a time")
            }
        }
    }
    let model = by_id(caller.workspace_id, id)
        .one(db)
        .await?
        .ok_or_else(missing)?;
    Ok((model, Related::default()))
}

/// The customer's select with a column per relation `wanted`: (`workspace_id`, `id`)
/// are its parameters, the text depends on `wanted` alone, so it is built once per shape
/// of view (building it was 7 % of the server's CPU on the 360 view).
fn statement(wanted: &Wanted, workspace_id: WorkspaceId, id: CustomerId) -> Statement {
    static TEXTS: OnceLock<Mutex<HashMap<Wanted, String>>> = OnceLock::new();
    let texts = TEXTS.get_or_init(Mutex::default);
    let cached = texts
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .get(wanted)
        .cloned();
    if let Some(sql) = cached {
        return Statement::from_sql_and_values(
            DatabaseBackend::Postgres,
            sql,
            [workspace_id.into(), id.into()],
        );
    }
    let statement = built(wanted, workspace_id, id);
    // Kept only while the builder binds exactly these two values, in this order: a
    // relation column that ever binds one of its own is simply never cached.
    let expected: [sea_orm::Value; 2] = [workspace_id.into(), id.into()];
    if statement.values.as_ref().map(|values| &values.0[..]) != Some(&expected[..]) {
        return statement;
    }
    let mut texts = texts.lock().unwrap_or_else(PoisonError::into_inner);
    // At most 2^7 relation sets × 101 page sizes exist; a client cycling through them
    // empties the cache instead of growing it.
    if texts.len() >= 256 {
        texts.clear();
    }
    texts.insert(wanted.clone(), statement.sql.clone());
    statement
}

/// The customer `id` of the workspace.
fn by_id(workspace_id: WorkspaceId, id: CustomerId) -> sea_orm::Select<customer::Entity> {
    super::scoped::<customer::Entity>(workspace_id).filter(customer::Column::Id.eq(id))
}

/// [`statement`] built from the query builder.
fn built(wanted: &Wanted, workspace_id: WorkspaceId, id: CustomerId) -> Statement {
    let mut combined = by_id(workspace_id, id);
    for (alias, sql) in wanted.columns() {
        combined = combined.expr_as(Expr::cust(sql), alias);
    }
    combined.build(DatabaseBackend::Postgres)
}

/// The relations `wanted` from their columns of a customer row.
fn related(row: &QueryResult, wanted: &Wanted) -> Result<Related> {
    let text = |alias: &str| -> Result<Option<String>> { Ok(row.try_get("", alias)?) };
    let mut related = Related::default();
    if wanted.contact_points {
        let mut points: Vec<contact_point::Model> = json(text("rel_contact_points")?)?;
        super::identity::sort_contact_points(&mut points);
        related.contact_points = Some(points);
    }
    if wanted.identities {
        related.identities = Some(json(text("rel_identities")?)?);
    }
    if wanted.conversations {
        related.conversations = Some(json(text("rel_conversations")?)?);
    }
    if wanted.deals {
        related.deals = Some(json(text("rel_deals")?)?);
    }
    if wanted.notes {
        related.notes = Some(json(text("rel_notes")?)?);
    }
    if wanted.organization {
        related.organization = Some(match text("rel_organization")? {
            Some(organization) => Some(parse(&organization)?),
            None => None,
        });
    }
    if wanted.tags {
        related.tags = Some(json(text("rel_tags")?)?);
    }
    if let Some(size) = wanted.timeline {
        let rows: Vec<interaction::Model> = json(text("rel_timeline")?)?;
        let window = page::Window {
            size,
            backward: false,
            after: None,
            before: None,
        };
        related.timeline = Some((size, page::finish(rows, &window)));
    }
    Ok(related)
}

/// A JSON array of rows (`[]` when the aggregate read none).
fn json<T: DeserializeOwned>(text: Option<String>) -> Result<Vec<T>> {
    match text {
        Some(text) => parse(&text),
        None => Ok(Vec::new()),
    }
}

fn parse<T: DeserializeOwned>(text: &str) -> Result<T> {
    serde_json::from_str(text)
        .map_err(|err| Error::Internal(format!("a related row did not read back: {err}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The cached text with fresh parameters is the statement the builder writes, for
    /// every shape (each set of relations, with and without timelines of two sizes), the
    /// first time and every time after.
    #[test]
    fn a_cached_statement_is_the_built_one() {
        for bits in 0u8..128 {
            for timeline in [None, Some(5), Some(11)] {
                let wanted = Wanted {
                    contact_points: bits & 1 != 0,
                    identities: bits & 2 != 0,
                    organization: bits & 4 != 0,
                    tags: bits & 8 != 0,
                    conversations: bits & 16 != 0,
                    deals: bits & 32 != 0,
                    notes: bits & 64 != 0,
                    timeline,
                };
                for _ in 0..2 {
                    let (workspace, customer) = (WorkspaceId::new(), CustomerId::new());
                    let cached = statement(&wanted, workspace, customer);
                    let built = built(&wanted, workspace, customer);
                    assert_eq!(cached.sql, built.sql);
                    assert_eq!(
                        format!("{:?}", cached.values),
                        format!("{:?}", built.values)
                    );
                }
            }
        }
    }
}
