//! The business rules and every SQL statement of Rapport. Resolvers call these functions
//! with the [`Caller`]; each function scopes its queries to the caller's workspace through
//! [`scoped`] so no path can read or change another workspace's rows.

/// Declares a closed set of values named by lowercase strings (not stored in a column:
/// those are `entity::enums`) and served as a GraphQL enum.
macro_rules! string_enum {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(async_graphql::Enum, Copy, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $name { $($(#[$vmeta])* $variant),+ }

        impl $name {
            /// Its name (in cursors and sort keys).
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }

            /// Parses a name.
            pub fn parse(text: &str) -> Option<$name> {
                match text { $($text => Some($name::$variant),)+ _ => None }
            }
        }
    };
}

pub mod batch;
pub mod bulk;
pub mod callers;
pub mod contact_point;
pub mod conversation;
pub mod customer;
pub mod deal;
pub mod decode;
pub mod dedupe;
pub mod document;
pub mod duplicate;
pub mod enrich;
pub mod erase;
pub mod event;
pub mod identity;
pub mod import;
pub mod inbox;
pub mod interaction;
pub mod merge;
pub mod note;
pub mod organization;
pub mod page;
pub mod quality;
pub mod reply;
pub mod saved_reply;
pub mod secret;
pub mod service;
pub mod source;
pub mod tag;
pub mod text;
pub mod trusted_document;
pub mod user;
pub mod validate;
pub mod view;
pub mod workspace;

use std::collections::HashMap;
use std::hash::Hash;
use std::str::FromStr;

use chrono::{DateTime, SubsecRound, Utc};
use entity::{ApiKeyId, UserId, WorkspaceId};
use sea_orm::{
    ActiveModelBehavior, ActiveModelTrait, ColumnTrait, ConnectionTrait, DatabaseTransaction,
    EntityTrait, IntoActiveModel, QueryFilter, QueryOrder, Select, TransactionTrait, Value,
};

use crate::error::{Error, Result};
use crate::ids::{self, TypedId};

pub use entity::enums::{
    ContactPointKind, ConversationStatus, DealStage, DeliveryStatus, Direction, InteractionKind,
    LifecycleStage, Priority, Role, SourceStatus,
};

/// Who is calling: the workspace and role of the API key that authenticated the request.
#[derive(Clone, Debug)]
pub struct Caller {
    pub workspace_id: WorkspaceId,
    pub role: Role,
    pub key_id: ApiKeyId,
    pub key_name: String,
    /// The person the key belongs to, if any: "me" in the inbox.
    pub user_id: Option<UserId>,
    /// The key runs only the workspace's trusted documents (`/graphql` checks each
    /// request before it runs).
    pub trusted_documents_only: bool,
}

impl Caller {
    /// The workspace's owner acting without a key (the command line, the demo, benchmarks);
    /// `name` stands for the key's name in what it writes. Its key id is the nil UUID,
    /// which no key has.
    pub fn owner_without_key(workspace_id: WorkspaceId, name: &str) -> Caller {
        Caller {
            workspace_id,
            role: Role::Owner,
            key_id: ApiKeyId::from_uuid(uuid::Uuid::nil()),
            key_name: name.to_owned(),
            user_id: None,
            trusted_documents_only: false,
        }
    }

    /// `FORBIDDEN` unless the caller's role is at least `role`.
    pub fn require(&self, role: Role, action: &str) -> Result<()> {
        if self.role >= role {
            Ok(())
        } else {
            Err(Error::Forbidden(format!(
                "{action} needs the {} role or higher; this key has the {} role",
                role.as_str(),
                self.role.as_str()
            )))
        }
    }
}

/// `rows` cut into chunks of at most `max` rows (a multi-row statement each), every chunk
/// a power of two long: the largest that fits what is left, so 667 rows go as 512, 128,
/// 16, 8, 2 and 1. A connection keeps the statements it prepared by their text, and
/// SQLite parses and compiles a statement of a text it has not seen (for a thousand rows,
/// tens of thousands of parameters) anew; a batch's row counts vary from batch to batch,
/// so chunks of any length made a new text nearly every time, whereas these make a dozen.
pub fn statement_chunks<T>(rows: &[T], max: usize) -> impl Iterator<Item = &[T]> {
    let floor = |n: usize| 1usize << (usize::BITS - 1 - n.max(1).leading_zeros());
    let max = floor(max);
    let mut rest = rows;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let (chunk, tail) = rest.split_at(floor(rest.len()).min(max));
        rest = tail;
        Some(chunk)
    })
}

/// Now, truncated to microseconds so SQLite and PostgreSQL store the same instant and
/// cursors built from a read value match the stored one exactly.
pub fn now() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(6)
}

/// Unicode NFC, control characters removed ([`text::normalize`]) and trimmed: for text
/// that is not the caller's own input (ingestion, lookups of stored values).
pub fn clean(text: &str) -> String {
    text::clean(text)
}

/// A cleaned optional text: blank becomes `None`; a control character (NUL included) or
/// more than `max` characters is `BAD_USER_INPUT` naming `field`.
pub fn clean_optional(field: &str, text: Option<String>, max: usize) -> Result<Option<String>> {
    if let Some(text) = &text {
        // Refused before the (possibly huge) text is normalised.
        if text.len() > max.saturating_mul(4).saturating_add(1_024) {
            return Err(Error::field(
                field,
                format!("{field} is longer than {max} characters"),
            ));
        }
        text::check(field, text)?;
    }
    match text
        .map(|text| clean(&text))
        .filter(|text| !text.is_empty())
    {
        Some(text) if text.chars().count() > max => Err(Error::field(
            field,
            format!("{field} is longer than {max} characters"),
        )),
        other => Ok(other),
    }
}

/// A cleaned required text: blank, a control character or longer than `max` characters
/// is an error.
pub fn clean_required(field: &str, text: &str, max: usize) -> Result<String> {
    clean_optional(field, Some(text.to_owned()), max)?
        .ok_or_else(|| Error::field(field, format!("{field} must not be empty")))
}

/// Begins a transaction that will write. On SQLite it takes the write lock at once (a
/// no-op `UPDATE`): a transaction that reads first and writes later fails at once with
/// SQLITE_BUSY_SNAPSHOT ("database is locked", code 517) when another connection (another
/// request, the indexer) committed in between, and the busy timeout cannot help it; a
/// transaction that writes first waits under the busy timeout instead. PostgreSQL needs
/// nothing: its row locks and MVCC handle the same interleaving.
pub async fn begin_write(
    db: &impl sea_orm::TransactionTrait,
) -> Result<sea_orm::DatabaseTransaction> {
    let txn = db.begin().await?;
    if txn.get_database_backend() == sea_orm::DatabaseBackend::Sqlite {
        txn.execute_unprepared("UPDATE workspace SET id = id WHERE 1 = 0")
            .await?;
    }
    Ok(txn)
}

/// Custom attributes: a JSON object within [`text::CUSTOM_ATTRIBUTES`] (size, keys, depth,
/// key length), no control character in any key or string; stored normalised.
pub fn custom_object(field: &str, value: Option<serde_json::Value>) -> Result<serde_json::Value> {
    match value {
        None | Some(serde_json::Value::Null) => Ok(serde_json::json!({})),
        Some(value @ serde_json::Value::Object(_)) => {
            text::check_json_size(field, &value, text::CUSTOM_ATTRIBUTES)?;
            text::check_json(field, &value)
        }
        Some(_) => Err(Error::field(
            field,
            format!("{field} must be a JSON object"),
        )),
    }
}

fn column<E: EntityTrait>(name: &str) -> E::Column {
    // Every table of the workspace has these columns; a missing one is a programming
    // error caught by the first test that touches the table.
    E::Column::from_str(name).unwrap_or_else(|_| panic!("table has no `{name}` column"))
}

/// `SELECT … FROM E WHERE workspace_id = ?`: the start of every read of tenant data.
pub fn scoped<E: EntityTrait>(workspace_id: WorkspaceId) -> Select<E> {
    E::find().filter(column::<E>("workspace_id").eq(workspace_id))
}

/// [`scoped`], for a read that also picks its rows by their parent (`customer_id`,
/// `conversation_id`): on SQLite the workspace term is kept off the indexes with a unary
/// `+` (see [`by_ids_query`]), so the parent's index is the one read. Without planner
/// statistics SQLite would rather read a workspace-leading index in the order asked for,
/// through every row of the workspace; the parent indexes lead with the parent alone
/// (they also serve the foreign keys' ON DELETE look-ups), and the workspace is checked
/// on each row found. PostgreSQL, whose statistics can still take a large workspace for a
/// small one (see [`by_ids_query`]), gets the same with `(… = ?) IS TRUE`.
pub fn scoped_under<E: EntityTrait>(
    backend: sea_orm::DatabaseBackend,
    workspace_id: WorkspaceId,
) -> Select<E> {
    E::find().filter(workspace_off_indexes(
        backend,
        E::default().table_name(),
        workspace_id,
    ))
}

/// `"table"."workspace_id" = ?` in a form no index serves: a unary `+` on SQLite, `IS TRUE`
/// on PostgreSQL. The same rows; the workspace is checked on each row another index found.
fn workspace_off_indexes(
    backend: sea_orm::DatabaseBackend,
    table: &str,
    workspace_id: WorkspaceId,
) -> sea_orm::sea_query::SimpleExpr {
    use sea_orm::sea_query::{Alias, Expr};
    match backend {
        sea_orm::DatabaseBackend::Sqlite => {
            Expr::cust_with_values(format!("+\"{table}\".\"workspace_id\" = ?"), [workspace_id])
        }
        _ => Expr::cust_with_expr(
            "($1) IS TRUE",
            Expr::col((Alias::new(table), Alias::new("workspace_id"))).eq(workspace_id),
        ),
    }
}

/// A statement with `?` placeholders, numbered `$1…` on PostgreSQL (for the hand-written
/// SQL of `merge` and `quality`).
pub(crate) fn statement(
    backend: sea_orm::DatabaseBackend,
    sql: &str,
    values: Vec<sea_orm::Value>,
) -> sea_orm::Statement {
    let sql = if backend == sea_orm::DatabaseBackend::Postgres {
        let mut numbered = String::with_capacity(sql.len() + 16);
        let mut n = 0;
        for c in sql.chars() {
            if c == '?' {
                n += 1;
                numbered.push_str(&format!("${n}"));
            } else {
                numbered.push(c);
            }
        }
        numbered
    } else {
        sql.to_owned()
    };
    sea_orm::Statement::from_sql_and_values(backend, sql, values)
}

/// A typed id of a table the domain reads and changes by id: it names the table's entity,
/// so [`find_scoped`] and [`update`] need nothing but the id.
pub trait Stored: TypedId + Into<Value> {
    type Entity: EntityTrait<Model: IntoActiveModel<Self::ActiveModel>>;
    type ActiveModel: ActiveModelTrait<Entity = Self::Entity> + ActiveModelBehavior + Send;
}

/// The model of the row a [`Stored`] id names.
pub type ModelOf<I> = <<I as Stored>::Entity as EntityTrait>::Model;

macro_rules! stored {
    ($($id:ident => $table:ident),+ $(,)?) => {$(
        impl Stored for entity::$id {
            type Entity = entity::$table::Entity;
            type ActiveModel = entity::$table::ActiveModel;
        }
    )+};
}

stored!(
    CustomerId => customer,
    OrganizationId => organization,
    ContactPointId => contact_point,
    InteractionId => interaction,
    ConversationId => conversation,
    DealId => deal,
    SourceId => source,
    UserId => user,
);

/// One row by id within the workspace, or `NOT_FOUND` naming the id's kind and id.
pub async fn find_scoped<I: Stored>(
    db: &impl ConnectionTrait,
    workspace_id: WorkspaceId,
    id: I,
) -> Result<ModelOf<I>> {
    scoped::<I::Entity>(workspace_id)
        .filter(column::<I::Entity>("id").eq(id))
        .one(db)
        .await?
        .ok_or_else(|| Error::not_found(I::KIND.noun(), ids::encode(id)))
}

/// How a noun's [`update`] is checked and recorded.
pub struct Update<I: Stored> {
    /// The role the change needs, and the change as a `FORBIDDEN` message names it
    /// ("updating a customer").
    pub role: Role,
    pub action: &'static str,
    /// The `CONFLICT` message when the changed row collides with another on a UNIQUE
    /// constraint, from the row as changed; `None` where no change can collide.
    pub taken: Option<fn(&I::ActiveModel) -> String>,
    /// The event that records the change.
    pub event: for<'m> fn(&'m ModelOf<I>) -> event::Event<'m>,
}

/// The one shape of a change to a row of the caller's workspace: the role check, a write
/// transaction, the current row (`NOT_FOUND`), the noun's `change` to it (given the current
/// row and the row to change), a new `updated_at`, the update (a UNIQUE violation is
/// `CONFLICT` as `how.taken` says), the event, the commit.
pub async fn update<I: Stored>(
    db: &impl TransactionTrait,
    caller: &Caller,
    id: I,
    how: Update<I>,
    change: impl AsyncFnOnce(&DatabaseTransaction, &ModelOf<I>, &mut I::ActiveModel) -> Result<()>,
) -> Result<ModelOf<I>> {
    caller.require(how.role, how.action)?;
    let txn = begin_write(db).await?;
    let current = find_scoped(&txn, caller.workspace_id, id).await?;
    let mut row: I::ActiveModel = current.clone().into_active_model();
    change(&txn, &current, &mut row).await?;
    row.set(column::<I::Entity>("updated_at"), now().into());
    let taken = how.taken.map(|taken| taken(&row));
    let model = row.update(&txn).await.map_err(|err| match taken {
        Some(taken) => Error::on_unique(err, || taken),
        None => Error::from(err),
    })?;
    event::append(&txn, caller.workspace_id, (how.event)(&model)).await?;
    txn.commit().await?;
    Ok(model)
}

/// The one shape of a deletion of a row of the caller's workspace: the role check (`action`
/// names the deletion in the `FORBIDDEN` message), a write transaction, the row
/// (`NOT_FOUND`), the delete, the event (given the deleted id), the commit.
pub async fn delete<I: Stored>(
    db: &impl TransactionTrait,
    caller: &Caller,
    id: I,
    (role, action): (Role, &str),
    event: for<'d> fn(&'d event::Deleted<I>) -> event::Event<'d>,
) -> Result<()> {
    caller.require(role, action)?;
    let txn = begin_write(db).await?;
    find_scoped(&txn, caller.workspace_id, id).await?;
    I::Entity::delete_many()
        .filter(column::<I::Entity>("workspace_id").eq(caller.workspace_id))
        .filter(column::<I::Entity>("id").eq(id))
        .exec(&txn)
        .await?;
    event::append(&txn, caller.workspace_id, event(&event::Deleted { id })).await?;
    txn.commit().await?;
    Ok(())
}

/// The value a change set on a column, if it set one (for [`Update::taken`] messages).
pub fn set_value<V: Into<Value>>(value: &sea_orm::ActiveValue<V>) -> Option<&V> {
    match value {
        sea_orm::ActiveValue::Set(value) => Some(value),
        _ => None,
    }
}

/// Rows of `E` by id within the workspace, keyed by id (for DataLoaders).
pub async fn by_ids<E: EntityTrait, I: Copy + Eq + Hash + Into<Value>>(
    db: &impl ConnectionTrait,
    workspace_id: WorkspaceId,
    ids: &[I],
    id_of: impl Fn(&E::Model) -> I,
) -> Result<HashMap<I, E::Model>> {
    let rows = by_ids_query::<E, I>(db.get_database_backend(), workspace_id, ids)
        .all(db)
        .await?;
    Ok(rows.into_iter().map(|row| (id_of(&row), row)).collect())
}

/// The query of [`by_ids`]: each id looked up by its key, within the workspace.
///
/// SQLite gathers no planner statistics by itself, and without them it costs
/// `workspace_id = ?` at ten rows: with more than ten ids it preferred a workspace index
/// to the key and read every row of the workspace (a million interactions to load the
/// twenty hits of a search). A unary `+` keeps the workspace term off the indexes (SQLite's
/// query optimizer overview, "Disqualifying WHERE clause terms using unary +"), so the
/// ids go through the key and the workspace is checked on each row found. PostgreSQL's
/// statistics can be as wrong: after a workspace grew to a million interactions they still
/// counted it at 1,699 rows, and the twenty hits of a search were found by intersecting the
/// key with a bitmap of the whole workspace (14 ms a search; 0.2 ms by the key alone,
/// BENCHMARKS.md "Search at 1,000,000 interactions"). There `(… = ?) IS TRUE` does what the
/// `+` does.
pub fn by_ids_query<E: EntityTrait, I: Copy + Into<Value>>(
    backend: sea_orm::DatabaseBackend,
    workspace_id: WorkspaceId,
    ids: &[I],
) -> Select<E> {
    let ids = column::<E>("id").is_in(ids.iter().copied());
    E::find()
        .filter(workspace_off_indexes(
            backend,
            E::default().table_name(),
            workspace_id,
        ))
        .filter(ids)
}

/// The rows of `E` whose `parent` column is one of `parents`, grouped by parent and
/// ordered by `order` (ascending unless `descending`): one query for any number of parents.
pub async fn children_of<E: EntityTrait, P: Copy + Eq + Hash + Into<Value>>(
    db: &impl ConnectionTrait,
    workspace_id: WorkspaceId,
    parent: &str,
    parents: &[P],
    order: &str,
    descending: bool,
    parent_of: impl Fn(&E::Model) -> Option<P>,
) -> Result<HashMap<P, Vec<E::Model>>>
where
    E::Model: decode::Decode,
{
    let backend = db.get_database_backend();
    let select = children_query::<E, P>(backend, workspace_id, parent, parents, order, descending);
    let rows: Vec<E::Model> = decode::all(db, sea_orm::QueryTrait::build(&select, backend)).await?;
    let mut grouped: HashMap<P, Vec<E::Model>> = HashMap::new();
    for row in rows {
        if let Some(parent) = parent_of(&row) {
            grouped.entry(parent).or_default().push(row);
        }
    }
    Ok(grouped)
}

/// The statement of [`children_of`].
fn children_query<E: EntityTrait, P: Copy + Into<Value>>(
    backend: sea_orm::DatabaseBackend,
    workspace_id: WorkspaceId,
    parent: &str,
    parents: &[P],
    order: &str,
    descending: bool,
) -> Select<E> {
    let direction = if descending {
        sea_orm::Order::Desc
    } else {
        sea_orm::Order::Asc
    };
    scoped_under::<E>(backend, workspace_id)
        .filter(column::<E>(parent).is_in(parents.iter().copied()))
        .order_by(column::<E>(order), direction.clone())
        .order_by(column::<E>("id"), direction)
}

/// The steps of SQLite's plan for `statement` over a fresh migrated database: no rows and
/// so no planner statistics, as a young or never-analysed database has.
#[cfg(test)]
pub(crate) async fn sqlite_plan(statement: sea_orm::Statement) -> Vec<String> {
    use migration::MigratorTrait;
    let mut options = sea_orm::ConnectOptions::new("sqlite::memory:");
    options.max_connections(1);
    let db = sea_orm::Database::connect(options).await.unwrap();
    migration::Migrator::up(&db, None).await.unwrap();
    let plan = db
        .query_all(sea_orm::Statement::from_sql_and_values(
            sea_orm::DatabaseBackend::Sqlite,
            format!("EXPLAIN QUERY PLAN {}", statement.sql),
            statement.values.map(|values| values.0).unwrap_or_default(),
        ))
        .await
        .unwrap();
    plan.iter()
        .map(|row| row.try_get::<String>("", "detail").unwrap())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statement_chunks_are_powers_of_two_in_order() {
        let rows: Vec<u32> = (0..667).collect();
        let sizes: Vec<usize> = statement_chunks(&rows, 1_304).map(<[u32]>::len).collect();
        assert_eq!(sizes, [512, 128, 16, 8, 2, 1]);
        let sizes: Vec<usize> = statement_chunks(&rows, 300).map(<[u32]>::len).collect();
        assert_eq!(sizes, [256, 256, 128, 16, 8, 2, 1]);
        let again: Vec<u32> = statement_chunks(&rows, 300).flatten().copied().collect();
        assert_eq!(again, rows, "every row once, in order");
        assert_eq!(statement_chunks(&rows[..0], 10).count(), 0);
        assert_eq!(
            statement_chunks(&rows[..3], 0)
                .map(<[u32]>::len)
                .collect::<Vec<_>>(),
            [1, 1, 1]
        );
    }

    #[test]
    fn roles_are_ordered_by_power() {
        assert!(
            Role::Owner > Role::Admin && Role::Admin > Role::Agent && Role::Agent > Role::Viewer
        );
    }

    #[test]
    fn text_is_trimmed_and_composed() {
        assert_eq!(clean("  cafe\u{301} "), "café");
        assert_eq!(clean_optional("x", Some("   ".into()), 10).unwrap(), None);
        assert!(clean_required("name", "", 10).is_err());
        assert!(clean_required("name", "abcdefghijk", 10).is_err());
        assert!(clean_required("name", "a\u{0}b", 10).is_err());
        assert_eq!(clean("a\u{0}b"), "ab");
    }
}

/// Whether the database refused an item for its data (so skipping it is right), rather
/// than for a reason that would fail any item (then the batch fails and is retried).
pub fn refused_for_its_data(err: &Error) -> bool {
    use sea_orm::{DbErr, RuntimeErr};
    let Error::Database(
        DbErr::Exec(RuntimeErr::SqlxError(err)) | DbErr::Query(RuntimeErr::SqlxError(err)),
    ) = err
    else {
        return false;
    };
    let Some(code) = err.as_database_error().and_then(|err| err.code()) else {
        return false;
    };
    if code.len() == 5 {
        // A PostgreSQL SQLSTATE: data exception, integrity constraint violation.
        // 54: a program limit (an index row too large) — the item's data again.
        code.starts_with("22") || code.starts_with("23") || code.starts_with("54")
    } else {
        // A SQLite result code (an extended code keeps the primary one in its low byte):
        // TOOBIG, CONSTRAINT, MISMATCH.
        code.parse::<u32>()
            .is_ok_and(|code| matches!(code & 0xff, 18..=20))
    }
}

#[cfg(test)]
mod refused_tests {
    use super::*;
    use sea_orm::Database;

    #[tokio::test]
    async fn only_errors_about_an_items_data_skip_the_item() {
        let db = Database::connect("sqlite::memory:").await.unwrap();
        db.execute_unprepared("CREATE TABLE t (x TEXT NOT NULL UNIQUE)")
            .await
            .unwrap();
        db.execute_unprepared("INSERT INTO t VALUES ('a')")
            .await
            .unwrap();
        for refused in ["INSERT INTO t VALUES (NULL)", "INSERT INTO t VALUES ('a')"] {
            let err = Error::from(db.execute_unprepared(refused).await.unwrap_err());
            assert!(refused_for_its_data(&err), "{refused}: {err:?}");
        }
        for failing in ["INSERT INTO nowhere VALUES (1)", "NOT SQL"] {
            let err = Error::from(db.execute_unprepared(failing).await.unwrap_err());
            assert!(!refused_for_its_data(&err), "{failing}: {err:?}");
        }
        assert!(!refused_for_its_data(&Error::Internal("x".into())));
    }
}

#[cfg(test)]
mod by_ids_tests {
    use super::*;
    use migration::MigratorTrait;
    use sea_orm::{ConnectOptions, Database, DatabaseBackend, QueryTrait, Statement};

    #[tokio::test]
    async fn many_ids_are_looked_up_by_key_on_sqlite_without_statistics() {
        let mut options = ConnectOptions::new("sqlite::memory:");
        options.max_connections(1);
        let db = Database::connect(options).await.unwrap();
        migration::Migrator::up(&db, None).await.unwrap();
        let ids: Vec<entity::InteractionId> =
            (0..50).map(|_| entity::InteractionId::new()).collect();
        let query = by_ids_query::<entity::interaction::Entity, _>(
            DatabaseBackend::Sqlite,
            WorkspaceId::new(),
            &ids,
        )
        .build(DatabaseBackend::Sqlite);
        let plan = db
            .query_all(Statement::from_sql_and_values(
                DatabaseBackend::Sqlite,
                format!("EXPLAIN QUERY PLAN {}", query.sql),
                query.values.map(|values| values.0).unwrap_or_default(),
            ))
            .await
            .unwrap();
        let steps: Vec<String> = plan
            .iter()
            .map(|row| row.try_get::<String>("", "detail").unwrap())
            .collect();
        assert!(
            steps
                .iter()
                .any(|step| step.contains("sqlite_autoindex_interaction_1")),
            "the ids go through the primary key: {steps:?}"
        );
        assert!(
            !steps.iter().any(|step| step.contains("workspace_id")),
            "no workspace index is read: {steps:?}"
        );
        let postgres = by_ids_query::<entity::interaction::Entity, _>(
            DatabaseBackend::Postgres,
            WorkspaceId::new(),
            &ids,
        )
        .build(DatabaseBackend::Postgres)
        .sql;
        assert!(
            postgres.contains("\"interaction\".\"workspace_id\" = $1"),
            "{postgres}"
        );
    }
}

#[cfg(test)]
mod plan_tests {
    use super::*;
    use sea_orm::QueryTrait;

    #[tokio::test]
    async fn a_customers_conversations_are_read_by_their_parent_index_on_sqlite() {
        let customers: Vec<entity::CustomerId> =
            (0..50).map(|_| entity::CustomerId::new()).collect();
        let query = children_query::<entity::conversation::Entity, _>(
            sea_orm::DatabaseBackend::Sqlite,
            WorkspaceId::new(),
            "customer_id",
            &customers,
            "last_message_at",
            true,
        )
        .build(sea_orm::DatabaseBackend::Sqlite);
        let plan = sqlite_plan(query).await;
        assert!(
            plan.iter()
                .any(|step| step.contains("ix_conversation_customer")),
            "{plan:?}"
        );
    }
}
