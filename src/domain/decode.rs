//! Rows of the models every list reads, decoded straight from sqlx's PostgreSQL row.
//!
//! sea-orm's derived decoder asks for each column as `format!("{prefix}{column}")`, and
//! for each NULL it builds an error whose message formats the column's name, which the
//! `Option` around it then throws away. On a page of 50 customers with their identities and
//! last 5 interactions (about 400 rows of up to 23 columns, a third of them NULL) that was
//! 19 % of the server's CPU (`perf`, BENCHMARKS.md "Rows decoded by name, once"). [`all`]
//! finds a result's columns by name and checks their types once (sqlx's `try_get` does both
//! for every value), then reads every row by position with the same sqlx decoders. On SQLite
//! it is sea-orm's decoder unchanged. The names are the fields' own (`stringify!`): a model
//! whose column is renamed with `column_name` cannot be listed here as it is (the unit test
//! below compares them).

use sea_orm::sqlx::postgres::{PgColumn, PgRow};
use sea_orm::sqlx::{Column, Postgres, Row, Type, TypeInfo};
use sea_orm::{ActiveEnum, ConnectionTrait, DbErr, FromQueryResult, QueryResult, Statement};
use uuid::Uuid;

/// Builds a model from a PostgreSQL row whose columns carry the model's column names, or
/// whose columns' places are given ([`plan_named`]).
pub trait Decode: Sized {
    /// The column names it reads, one per field.
    const COLUMNS: &'static [&'static str];

    /// Where each field's column is among `columns`, in field order, and whether its values
    /// need sqlx's type check (what `try_get` checks for every value): only a column whose
    /// type is not one the field decodes (a `NULL` literal reads as `text`) does.
    fn plan(columns: &[PgColumn]) -> Result<Vec<Place>, DbErr> {
        Self::plan_without(columns, &[])
    }

    /// [`Decode::plan`] for a row that leaves out the columns `unread`: their fields
    /// are not looked for and read as their type's default (an id as the nil UUID, an
    /// `Option` as `None`), for a reader that knows nothing shows them (`domain::view`). A
    /// field of an enumeration cannot be left out (reading it fails).
    fn plan_without(columns: &[PgColumn], unread: &[&str]) -> Result<Vec<Place>, DbErr> {
        Self::plan_found(columns, &|name| by_name(columns, name), unread)
    }

    /// [`Decode::plan_without`] with each column found where `find` says among `columns`
    /// rather than by its name ([`plan_named`]).
    fn plan_found(columns: &[PgColumn], find: Find, unread: &[&str]) -> Result<Vec<Place>, DbErr>;

    /// The model of `row`, each field read at its place in `at` (from [`Decode::plan`] of
    /// the row's columns).
    fn decode_at(row: &PgRow, at: &[Place]) -> Result<Self, DbErr>;

    fn decode(row: &PgRow) -> Result<Self, DbErr> {
        Self::decode_at(row, &Self::plan(row.columns())?)
    }
}

/// Every row of `statement` as a model. On PostgreSQL the columns are found and their
/// types checked once for the whole result (its rows share one description), then each
/// row read by position: name look-ups and type checks per value were 10 % of the
/// server's CPU on a list of 50 customers (BENCHMARKS.md, "Without an engine extension").
/// On SQLite, sea-orm's decoder.
pub async fn all<M: Decode + FromQueryResult>(
    db: &impl ConnectionTrait,
    statement: Statement,
) -> Result<Vec<M>, DbErr> {
    let rows = db.query_all(statement).await?;
    decode_all(&rows)
}

fn decode_all<M: Decode + FromQueryResult>(rows: &[QueryResult]) -> Result<Vec<M>, DbErr> {
    let mut models = Vec::with_capacity(rows.len());
    // The plan and the columns it was made for: rows of one result share them (compared
    // by address while every row is alive, so an address cannot have been reused).
    let mut plan: Option<(*const PgColumn, Vec<Place>)> = None;
    for row in rows {
        let Some(pg) = row.try_as_pg_row() else {
            models.push(M::from_query_result(row, "")?);
            continue;
        };
        let columns = pg.columns();
        let at = match &plan {
            Some((made_for, at)) if std::ptr::eq(*made_for, columns.as_ptr()) => at,
            _ => &plan.insert((columns.as_ptr(), M::plan(columns)?)).1,
        };
        models.push(M::decode_at(pg, at)?);
    }
    Ok(models)
}

/// The places of `M`'s fields in a row that holds several models' columns side by side
/// (`domain::view::list`): each column of `M` the row carries is at the position `named`
/// gives it (whatever the row's own column names), the columns `unread` are left out
/// ([`Decode::plan_without`]).
pub fn plan_named<M: Decode>(
    columns: &[PgColumn],
    named: &[(&str, usize)],
    unread: &[&str],
) -> Result<Vec<Place>, DbErr> {
    M::plan_found(
        columns,
        &|name| {
            named
                .iter()
                .find(|(column, _)| *column == name)
                .map(|(_, at)| *at)
        },
        unread,
    )
}

/// sea-orm's error for a column that would not decode, as its own decoder reports it.
fn column(error: sea_orm::sqlx::Error) -> DbErr {
    DbErr::Query(sea_orm::RuntimeErr::SqlxError(error))
}

/// Where a field's column is in a result, and whether each of its values is type-checked.
#[derive(Clone, Copy, Debug)]
pub struct Place {
    at: usize,
    check: bool,
}

impl Place {
    /// A field whose column the row leaves out: it reads as its default.
    const UNREAD: Place = Place {
        at: usize::MAX,
        check: false,
    };

    fn is_unread(self) -> bool {
        self.at == usize::MAX && !self.check
    }
}

/// Where a model's column of a name is among a row's columns.
pub type Find<'a> = &'a dyn Fn(&str) -> Option<usize>;

/// The position of the column `name` among `columns`: the last of several of one name, as
/// sqlx's look-up by name takes.
fn by_name(columns: &[PgColumn], name: &str) -> Option<usize> {
    columns.iter().rposition(|column| column.name() == name)
}

/// The place of column `name` among `columns` (where `find` says), checked once when its
/// type is one `T` decodes, value by value otherwise (sqlx then refuses any value that is
/// not `NULL`).
fn place<T: Type<Postgres>>(columns: &[PgColumn], find: Find, name: &str) -> Result<Place, DbErr> {
    let not_found = || column(sea_orm::sqlx::Error::ColumnNotFound(name.to_owned()));
    let at = find(name).ok_or_else(not_found)?;
    let ty = columns.get(at).ok_or_else(not_found)?.type_info();
    Ok(Place {
        at,
        check: !ty.is_null() && !T::compatible(ty),
    })
}

/// Reads the value at `place` as `T`.
fn read<'r, T>(row: &'r PgRow, place: Place) -> Result<T, DbErr>
where
    T: sea_orm::sqlx::Decode<'r, Postgres> + Type<Postgres>,
{
    if place.check {
        row.try_get(place.at).map_err(column)
    } else {
        row.try_get_unchecked(place.at).map_err(column)
    }
}

/// [`place`] for the type of the field `field` reads.
fn place_of<M, T: Type<Postgres>>(
    columns: &[PgColumn],
    find: Find,
    name: &str,
    _field: impl FnOnce(M) -> T,
) -> Result<Place, DbErr> {
    place::<T>(columns, find, name)
}

/// One field's place: `name` (the field's own type), `name: id(Type)` / `opt_id(Type)` (a
/// typed id over a UUID), `name: enumeration` / `opt_enumeration` (a text column of an
/// `ActiveEnum`).
macro_rules! place {
    ($columns:ident, $find:ident, $model:path, $name:ident) => {
        place_of($columns, $find, stringify!($name), |model: $model| {
            model.$name
        })?
    };
    ($columns:ident, $find:ident, $model:path, $name:ident, id, $ty:ty) => {
        place::<Uuid>($columns, $find, stringify!($name))?
    };
    ($columns:ident, $find:ident, $model:path, $name:ident, opt_id, $ty:ty) => {
        place::<Option<Uuid>>($columns, $find, stringify!($name))?
    };
    ($columns:ident, $find:ident, $model:path, $name:ident, enumeration) => {
        place::<String>($columns, $find, stringify!($name))?
    };
    ($columns:ident, $find:ident, $model:path, $name:ident, opt_enumeration) => {
        place::<Option<String>>($columns, $find, stringify!($name))?
    };
}

/// One field read at `$at`, as [`place!`] placed it.
macro_rules! field {
    ($row:ident, $at:expr) => {{
        let at = $at;
        if at.is_unread() {
            Default::default()
        } else {
            read($row, at)?
        }
    }};
    ($row:ident, $at:expr, id, $ty:ty) => {{
        let at = $at;
        <$ty>::from_uuid(if at.is_unread() {
            Uuid::nil()
        } else {
            read::<Uuid>($row, at)?
        })
    }};
    ($row:ident, $at:expr, opt_id, $ty:ty) => {{
        let at = $at;
        if at.is_unread() {
            None
        } else {
            read::<Option<Uuid>>($row, at)?.map(<$ty>::from_uuid)
        }
    }};
    ($row:ident, $at:expr, enumeration) => {
        ActiveEnum::try_from_value(&read::<String>($row, $at)?)?
    };
    ($row:ident, $at:expr, opt_enumeration) => {{
        let at = $at;
        let value = if at.is_unread() {
            None
        } else {
            read::<Option<String>>($row, at)?
        };
        match value {
            Some(value) => Some(ActiveEnum::try_from_value(&value)?),
            None => None,
        }
    }};
}

/// Implements [`Decode`] for each model from its field list (every field, in any order).
macro_rules! decode {
    ($($model:path { $($name:ident $(: $kind:ident $(($ty:ty))?)?),+ $(,)? })+) => {$(
        impl Decode for $model {
            const COLUMNS: &'static [&'static str] = &[$(stringify!($name)),+];

            fn plan_found(
                columns: &[PgColumn],
                find: Find,
                unread: &[&str],
            ) -> Result<Vec<Place>, DbErr> {
                Ok(vec![$(
                    if unread.contains(&stringify!($name)) {
                        Place::UNREAD
                    } else {
                        place!(columns, find, $model, $name $(, $kind $(, $ty)?)?)
                    }
                ),+])
            }

            fn decode_at(row: &PgRow, at: &[Place]) -> Result<Self, DbErr> {
                // Fields are evaluated in the order written, the order `plan` placed them;
                // a short plan reads past the row's columns, an error.
                let past = Place { at: usize::MAX, check: true };
                let mut at = at.iter().copied();
                Ok(Self {
                    $($name: field!(row, at.next().unwrap_or(past) $(, $kind $(, $ty)?)?)),+
                })
            }
        }
    )+};
}

use entity::id::{
    ContactPointId, ConversationId, CustomerId, DealId, IdentityId, InteractionId, NoteId,
    OrganizationId, SourceId, UserId, WorkspaceId,
};

decode! {
    entity::interaction::Model {
        id: id(InteractionId),
        workspace_id: id(WorkspaceId),
        customer_id: opt_id(CustomerId),
        conversation_id: opt_id(ConversationId),
        identity_id: opt_id(IdentityId),
        source_id: opt_id(SourceId),
        external_id,
        channel: enumeration,
        direction: enumeration,
        kind: enumeration,
        subject,
        text,
        html,
        url,
        language,
        sentiment,
        occurred_at,
        ingested_at,
        raw,
        delivery_status: opt_enumeration,
        delivery_error,
        idempotency_key,
        delivery_attempted_at,
    }
    entity::identity::Model {
        id: id(IdentityId),
        workspace_id: id(WorkspaceId),
        customer_id: id(CustomerId),
        channel: enumeration,
        platform_id,
        handle,
        display_name,
        profile_url,
        avatar_url,
        profile_key,
        created_at,
        updated_at,
    }
    entity::customer::Model {
        id: id(CustomerId),
        workspace_id: id(WorkspaceId),
        display_name,
        given_name,
        family_name,
        lifecycle_stage: enumeration,
        external_id,
        organization_id: opt_id(OrganizationId),
        custom,
        merged_into: opt_id(CustomerId),
        first_seen_at,
        last_seen_at,
        created_at,
        updated_at,
        birth_date,
        street,
        street2,
        locality,
        region,
        postal_code,
        country,
    }
    entity::contact_point::Model {
        id: id(ContactPointId),
        workspace_id: id(WorkspaceId),
        customer_id: id(CustomerId),
        kind: enumeration,
        value,
        normalized,
        label,
        verified,
        is_primary,
        created_at,
    }
    entity::conversation::Model {
        id: id(ConversationId),
        workspace_id: id(WorkspaceId),
        customer_id: opt_id(CustomerId),
        source_id: opt_id(SourceId),
        thread_key,
        channel: enumeration,
        subject,
        status: enumeration,
        priority: enumeration,
        assignee_id: opt_id(UserId),
        snoozed_until,
        waiting_since,
        spam,
        first_response_at,
        resolved_at,
        last_message_at,
        created_at,
        updated_at,
    }
    entity::deal::Model {
        id: id(DealId),
        workspace_id: id(WorkspaceId),
        customer_id: opt_id(CustomerId),
        organization_id: opt_id(OrganizationId),
        title,
        amount_minor,
        currency,
        stage: enumeration,
        close_date,
        created_at,
        updated_at,
    }
    entity::note::Model {
        id: id(NoteId),
        workspace_id: id(WorkspaceId),
        customer_id: id(CustomerId),
        body,
        author,
        created_at,
        updated_at,
        conversation_id: opt_id(ConversationId),
    }
}

#[cfg(test)]
mod tests {
    use super::Decode;
    use sea_orm::{EntityTrait, IdenStatic, Iterable};

    fn same<E: EntityTrait>()
    where
        E::Model: Decode,
    {
        let mut read: Vec<String> = E::Model::COLUMNS.iter().map(|c| c.to_string()).collect();
        let mut stored: Vec<String> = E::Column::iter()
            .map(|column| column.as_str().to_owned())
            .collect();
        read.sort_unstable();
        stored.sort_unstable();
        assert_eq!(read, stored, "{}", E::default().table_name());
    }

    /// Every column of each model is read under its stored name, none twice.
    #[test]
    fn the_names_read_are_the_columns_stored() {
        same::<entity::interaction::Entity>();
        same::<entity::identity::Entity>();
        same::<entity::customer::Entity>();
        same::<entity::contact_point::Entity>();
        same::<entity::conversation::Entity>();
        same::<entity::deal::Entity>();
        same::<entity::note::Entity>();
    }
}
