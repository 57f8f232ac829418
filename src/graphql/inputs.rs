//! Helpers for input objects: ids are decoded here, so a malformed or wrongly typed id is
//! a `BAD_USER_INPUT` naming the field. Each noun's input objects live in its own file.

use async_graphql::{MaybeUndefined, ID};

use crate::ids::{decode, TypedId};

/// Decodes a required id of the kind of `I`.
pub fn id<I: TypedId>(field: &str, id: &ID) -> crate::Result<I> {
    decode(field, id.as_str())
}

/// Decodes an optional id of the kind of `I`.
pub fn opt_id<I: TypedId>(field: &str, id: Option<&ID>) -> crate::Result<Option<I>> {
    id.map(|id| decode(field, id.as_str())).transpose()
}

/// Absent → leave alone (`None`); `null` → clear (`Some(None)`); a value → set.
pub fn change<T>(value: MaybeUndefined<T>) -> Option<Option<T>> {
    match value {
        MaybeUndefined::Undefined => None,
        MaybeUndefined::Null => Some(None),
        MaybeUndefined::Value(value) => Some(Some(value)),
    }
}

/// Like [`change`] for ids of the kind of `I`.
pub fn change_id<I: TypedId>(
    field: &str,
    value: MaybeUndefined<ID>,
) -> crate::Result<Option<Option<I>>> {
    change(value)
        .map(|id| id.map(|id| decode(field, id.as_str())).transpose())
        .transpose()
}
