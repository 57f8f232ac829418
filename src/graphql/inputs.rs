//! Helpers for input objects: ids are decoded here, so a malformed or wrongly typed id is
//! a `BAD_USER_INPUT` naming the field. Each noun's input objects live in its own file.

use async_graphql::{MaybeUndefined, ID};
use uuid::Uuid;

use crate::ids::{decode, Kind};

/// Decodes a required id of `kind`.
pub fn id(field: &str, kind: Kind, id: &ID) -> crate::Result<Uuid> {
    decode(field, kind, id.as_str())
}

/// Decodes an optional id of `kind`.
pub fn opt_id(field: &str, kind: Kind, id: Option<&ID>) -> crate::Result<Option<Uuid>> {
    id.map(|id| decode(field, kind, id.as_str())).transpose()
}

/// Absent → leave alone (`None`); `null` → clear (`Some(None)`); a value → set.
pub fn change<T>(value: MaybeUndefined<T>) -> Option<Option<T>> {
    match value {
        MaybeUndefined::Undefined => None,
        MaybeUndefined::Null => Some(None),
        MaybeUndefined::Value(value) => Some(Some(value)),
    }
}

/// Like [`change`] for ids of `kind`.
pub fn change_id(
    field: &str,
    kind: Kind,
    value: MaybeUndefined<ID>,
) -> crate::Result<Option<Option<Uuid>>> {
    change(value)
        .map(|id| id.map(|id| decode(field, kind, id.as_str())).transpose())
        .transpose()
}
