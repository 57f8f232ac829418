//! Rows of the models every list reads, decoded straight from sqlx's PostgreSQL row.
//!
//! sea-orm's derived decoder asks for each column as `format!("{prefix}{column}")`, and
//! for each NULL it builds an error whose message formats the column's name, which the
//! `Option` around it then throws away. On a page of 50 customers with their identities and
//! last 5 interactions (about 400 rows of up to 23 columns, a third of them NULL) that was
//! 19 % of the server's CPU (`perf`, BENCHMARKS.md "Rows decoded by name, once"). [`Fast`]
//! reads the same columns by the same names with the same sqlx decoders (type checks
//! included), without the strings; on SQLite, or under a prefix, it is sea-orm's decoder
//! unchanged. The names are the fields' own (`stringify!`): a model whose column is renamed
//! with `column_name` cannot be listed here as it is (the unit test below compares them).

use sea_orm::sqlx::postgres::PgRow;
use sea_orm::sqlx::Row;
use sea_orm::{ActiveEnum, DbErr, FromQueryResult, QueryResult};
use uuid::Uuid;

/// A model decoded by [`Decode`] on PostgreSQL (`Fast::<Model>::find_by_statement`,
/// `select.into_model::<Fast<Model>>()`).
pub struct Fast<M>(pub M);

/// Builds a model from a PostgreSQL row whose columns carry the model's column names.
pub trait Decode: Sized {
    /// The column names it reads, one per field.
    const COLUMNS: &'static [&'static str];

    fn decode(row: &PgRow) -> Result<Self, DbErr>;
}

impl<M: Decode + FromQueryResult> FromQueryResult for Fast<M> {
    fn from_query_result(res: &QueryResult, pre: &str) -> Result<Self, DbErr> {
        match res.try_as_pg_row() {
            Some(row) if pre.is_empty() => M::decode(row).map(Fast),
            _ => M::from_query_result(res, pre).map(Fast),
        }
    }
}

/// The models of a statement read through [`Fast`].
pub fn models<M>(rows: Vec<Fast<M>>) -> Vec<M> {
    rows.into_iter().map(|Fast(model)| model).collect()
}

/// sea-orm's error for a column that would not decode, as its own decoder reports it.
fn column(error: sea_orm::sqlx::Error) -> DbErr {
    DbErr::Query(sea_orm::RuntimeErr::SqlxError(error))
}

/// One field: `name` (decoded as the field's type), `name: id(Type)` / `opt_id(Type)` (a
/// typed id over a UUID), `name: enumeration` / `opt_enumeration` (a text column of an
/// `ActiveEnum`).
macro_rules! field {
    ($row:ident, $name:ident) => {
        $row.try_get(stringify!($name)).map_err(column)?
    };
    ($row:ident, $name:ident, id, $ty:ty) => {
        <$ty>::from_uuid($row.try_get::<Uuid, _>(stringify!($name)).map_err(column)?)
    };
    ($row:ident, $name:ident, opt_id, $ty:ty) => {
        $row.try_get::<Option<Uuid>, _>(stringify!($name))
            .map_err(column)?
            .map(<$ty>::from_uuid)
    };
    ($row:ident, $name:ident, enumeration) => {
        ActiveEnum::try_from_value(
            &$row
                .try_get::<String, _>(stringify!($name))
                .map_err(column)?,
        )?
    };
    ($row:ident, $name:ident, opt_enumeration) => {
        match $row
            .try_get::<Option<String>, _>(stringify!($name))
            .map_err(column)?
        {
            Some(value) => Some(ActiveEnum::try_from_value(&value)?),
            None => None,
        }
    };
}

/// Implements [`Decode`] for each model from its field list (every field, in any order).
macro_rules! decode {
    ($($model:path { $($name:ident $(: $kind:ident $(($ty:ty))?)?),+ $(,)? })+) => {$(
        impl Decode for $model {
            const COLUMNS: &'static [&'static str] = &[$(stringify!($name)),+];

            fn decode(row: &PgRow) -> Result<Self, DbErr> {
                Ok(Self { $($name: field!(row, $name $(, $kind $(, $ty)?)?)),+ })
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
