//! Keyset (cursor) pagination shared by every connection. A cursor is opaque to callers:
//! base64url of the sort's name, the sort value and the row id, so pages stay stable while
//! rows are added, and a cursor from one ordering is refused by another.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chrono::{DateTime, Utc};
use sea_orm::{
    ColumnTrait, Condition, EntityTrait, Order, QueryFilter, QueryOrder, QuerySelect, Select, Value,
};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::config::MAX_PAGE_SIZE;
use crate::error::{Error, Result};
use crate::ids::TypedId;

/// Relay arguments: `first`/`after` forwards, `last`/`before` backwards.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct PageArgs {
    pub first: Option<i32>,
    pub after: Option<String>,
    pub last: Option<i32>,
    pub before: Option<String>,
}

/// The page size when neither `first` nor `last` is given.
pub const DEFAULT_PAGE_SIZE: i32 = 20;

/// A decoded position: the value of the sort column and the id of the row (a bare UUID:
/// a cursor is an edge of the domain, and only ever compared with the list's id column).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Position {
    #[serde(rename = "s")]
    pub sort: String,
    #[serde(rename = "v")]
    pub value: String,
    pub id: Uuid,
}

/// What to fetch: validated arguments.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Window {
    pub size: u64,
    pub backward: bool,
    pub after: Option<Position>,
    pub before: Option<Position>,
}

/// One page of rows and whether more lie on either side.
#[derive(Clone, Debug)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub has_next: bool,
    pub has_previous: bool,
}

impl PageArgs {
    /// Validates sizes (0 to 100) and decodes the cursors for `sort`.
    pub fn window(&self, sort: &str) -> Result<Window> {
        if self.first.is_some() && self.last.is_some() {
            return Err(Error::bad_input("give either `first` or `last`, not both"));
        }
        let check = |field: &str, size: i32| {
            if (0..=MAX_PAGE_SIZE).contains(&size) {
                Ok(size as u64)
            } else {
                Err(Error::field(
                    field,
                    format!("{field} must be between 0 and {MAX_PAGE_SIZE}, got {size}"),
                ))
            }
        };
        let (size, backward) = match (self.first, self.last) {
            (_, Some(last)) => (check("last", last)?, true),
            (Some(first), None) => (check("first", first)?, false),
            (None, None) => (DEFAULT_PAGE_SIZE as u64, false),
        };
        let after = self
            .after
            .as_deref()
            .map(|cursor| decode("after", cursor, sort))
            .transpose()?;
        let before = self
            .before
            .as_deref()
            .map(|cursor| decode("before", cursor, sort))
            .transpose()?;
        Ok(Window {
            size,
            backward,
            after,
            before,
        })
    }
}

/// The opaque cursor of a row.
pub fn encode(sort: &str, value: String, id: impl TypedId) -> String {
    encode_position(sort, value, id.uuid())
}

fn encode_position(sort: &str, value: String, id: Uuid) -> String {
    let position = Position {
        sort: sort.to_owned(),
        value,
        id,
    };
    let json = serde_json::to_vec(&position).unwrap_or_default();
    URL_SAFE_NO_PAD.encode(json)
}

/// A row's cursor, encoded ([`Cursor::encode`], the same text as [`encode`]) only when an
/// answer shows it: a page of 50 customers with their last 5 interactions holds 300 rows,
/// and formatting, serialising and base64-encoding a position for each was work done for
/// nothing whenever the query asked for no cursor.
#[derive(Clone, Debug, PartialEq)]
pub struct Cursor(Held);

/// What a [`Cursor`] holds until it is encoded.
#[derive(Clone, Debug, PartialEq)]
enum Held {
    Time(&'static str, DateTime<Utc>, Uuid),
    Text(&'static str, String, Uuid),
    /// Encoded by whoever made it (a search backend's position).
    Encoded(String),
}

impl Cursor {
    /// The cursor of a row sorted by a time column.
    pub fn time(sort: &'static str, time: DateTime<Utc>, id: impl TypedId) -> Cursor {
        Cursor(Held::Time(sort, time, id.uuid()))
    }

    /// The cursor of a row sorted by a text column.
    pub fn text(sort: &'static str, value: String, id: impl TypedId) -> Cursor {
        Cursor(Held::Text(sort, value, id.uuid()))
    }

    /// A cursor already encoded.
    pub fn encoded(text: String) -> Cursor {
        Cursor(Held::Encoded(text))
    }

    /// The opaque text.
    pub fn encode(&self) -> String {
        match &self.0 {
            Held::Time(sort, time, id) => encode_position(sort, time_value(time), *id),
            Held::Text(sort, text, id) => encode_position(sort, text.clone(), *id),
            Held::Encoded(text) => text.clone(),
        }
    }
}

/// The longest cursor accepted, in characters: more than any cursor of a 200-character
/// sort value, far less than what could cost anything to decode.
pub const MAX_CURSOR_CHARS: usize = 4_096;
/// The longest sort value a cursor may carry, in characters.
const MAX_VALUE_CHARS: usize = 1_000;

/// Decodes and validates a cursor for `sort`: its size, its encoding, its sort, and its
/// value (no control character, bounded length); the value's type is checked when it is
/// turned into a bound ([`Sort::between`]). Anything else is `BAD_USER_INPUT` naming
/// `field`, never an internal error.
fn decode(field: &str, cursor: &str, sort: &str) -> Result<Position> {
    let shown: String = cursor.chars().take(64).collect();
    let invalid = || Error::field(field, format!("`{shown}` is not a cursor of this list"));
    if cursor.len() > MAX_CURSOR_CHARS {
        return Err(invalid());
    }
    let bytes = URL_SAFE_NO_PAD.decode(cursor).map_err(|_| invalid())?;
    let position: Position = serde_json::from_slice(&bytes).map_err(|_| invalid())?;
    if position.sort != sort {
        return Err(Error::field(
            field,
            format!("the cursor `{shown}` belongs to another ordering"),
        ));
    }
    if position.value.chars().count() > MAX_VALUE_CHARS
        || position.value.chars().any(super::text::is_forbidden)
    {
        return Err(invalid());
    }
    Ok(position)
}

/// The column a list is ordered by, the id column that breaks ties, and the direction.
pub struct Sort<E: EntityTrait> {
    pub name: &'static str,
    pub column: E::Column,
    pub id: E::Column,
    pub descending: bool,
    pub kind: SortKind,
}

/// How sort values are written into cursors.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SortKind {
    Time,
    Text,
    /// A floating-point column (a score), written as Rust prints an `f64`: the shortest
    /// text that reads back as the same number.
    Number,
}

/// A sort value as written into a cursor.
pub fn time_value(time: &DateTime<Utc>) -> String {
    time.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

impl<E: EntityTrait> Sort<E> {
    fn value(&self, field: &str, position: &Position) -> Result<Value> {
        match self.kind {
            SortKind::Text => Ok(position.value.clone().into()),
            SortKind::Number => position
                .value
                .parse::<f64>()
                .ok()
                .filter(|number| number.is_finite())
                .map(Value::from)
                .ok_or_else(|| Error::field(field, "the cursor is damaged")),
            SortKind::Time => DateTime::parse_from_rfc3339(&position.value)
                .map(|time| time.with_timezone(&Utc).into())
                .map_err(|_| Error::field(field, "the cursor is damaged")),
        }
    }

    /// `true` when the direction the rows are read in is descending.
    pub fn read_descending(&self, window: &Window) -> bool {
        self.descending != window.backward
    }

    /// Rows strictly beyond `position` in the list's own order (`forward`) or before it.
    fn beyond(&self, field: &str, position: &Position, forward: bool) -> Result<Condition> {
        let value = self.value(field, position)?;
        let descending = self.descending == forward;
        let (sort, id) = if descending {
            (self.column.lt(value.clone()), self.id.lt(position.id))
        } else {
            (self.column.gt(value.clone()), self.id.gt(position.id))
        };
        Ok(Condition::any()
            .add(sort)
            .add(Condition::all().add(self.column.eq(value)).add(id)))
    }

    /// Restricts `select` to the rows between the window's cursors.
    pub fn between(&self, mut select: Select<E>, window: &Window) -> Result<Select<E>> {
        if let Some(after) = &window.after {
            select = select.filter(self.beyond("after", after, true)?);
        }
        if let Some(before) = &window.before {
            select = select.filter(self.beyond("before", before, false)?);
        }
        Ok(select)
    }

    /// Orders `select` in reading direction and fetches one row more than the page, to
    /// know whether another page follows.
    pub fn order_and_limit(&self, select: Select<E>, window: &Window) -> Select<E> {
        let order = if self.read_descending(window) {
            Order::Desc
        } else {
            Order::Asc
        };
        select
            .order_by(self.column, order.clone())
            .order_by(self.id, order)
            .limit(window.size + 1)
    }
}

/// Cuts the extra row and restores the list's order when reading backwards.
pub fn finish<T>(mut rows: Vec<T>, window: &Window) -> Page<T> {
    let more = rows.len() as u64 > window.size;
    rows.truncate(window.size as usize);
    if window.backward {
        rows.reverse();
        Page {
            items: rows,
            has_next: window.before.is_some(),
            has_previous: more,
        }
    } else {
        Page {
            items: rows,
            has_next: more,
            has_previous: window.after.is_some(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id() -> entity::CustomerId {
        entity::CustomerId::from_uuid(Uuid::nil())
    }

    #[test]
    fn a_held_cursor_encodes_to_the_text_the_window_decodes() {
        let at = DateTime::parse_from_rfc3339("2026-12-06T01:02:03.456789Z")
            .unwrap()
            .with_timezone(&Utc);
        let by_time = Cursor::time("created_at", at, id()).encode();
        assert_eq!(by_time, encode("created_at", time_value(&at), id()));
        let position = decode("after", &by_time, "created_at").unwrap();
        assert_eq!(position.value, "2026-12-06T01:02:03.456789Z");
        assert_eq!(position.id, Uuid::nil());
        let by_name = Cursor::text("display_name", "Ada \"A\" L.".into(), id()).encode();
        assert_eq!(by_name, encode("display_name", "Ada \"A\" L.".into(), id()));
        assert_eq!(
            decode("after", &by_name, "display_name").unwrap().value,
            "Ada \"A\" L."
        );
        assert_eq!(Cursor::encoded("abc".into()).encode(), "abc");
    }

    #[test]
    fn page_sizes_outside_zero_to_a_hundred_are_refused() {
        for (first, last) in [(Some(101), None), (Some(-1), None), (None, Some(10_000))] {
            let err = PageArgs {
                first,
                last,
                ..PageArgs::default()
            }
            .window("x")
            .unwrap_err();
            assert!(err.to_string().contains("between 0 and 100"), "{err}");
        }
        assert_eq!(
            PageArgs::default().window("x").unwrap().size,
            DEFAULT_PAGE_SIZE as u64
        );
    }

    #[test]
    fn a_cursor_of_another_ordering_is_refused() {
        let cursor = encode("created_at", "2026-01-01T00:00:00Z".into(), id());
        let args = PageArgs {
            after: Some(cursor.clone()),
            ..PageArgs::default()
        };
        assert!(args.window("created_at").is_ok());
        assert!(args.window("display_name").is_err());
        let garbage = PageArgs {
            after: Some("not-a-cursor".into()),
            ..PageArgs::default()
        };
        assert!(garbage.window("created_at").is_err());
    }

    #[test]
    fn damaged_huge_and_control_character_cursors_are_bad_input_naming_the_field() {
        let bad = [
            encode("name", "a\u{0}b".into(), id()),
            encode("name", "x".repeat(1_001), id()),
            URL_SAFE_NO_PAD.encode("x".repeat(10_000)),
            URL_SAFE_NO_PAD.encode(r#"{"s":"name","v":"a","id":"nope"}"#),
        ];
        for cursor in bad {
            let args = PageArgs {
                before: Some(cursor),
                ..PageArgs::default()
            };
            let err = args.window("name").unwrap_err();
            assert!(
                matches!(&err, Error::BadInput { field: Some(f), .. } if f == "before"),
                "{err:?}"
            );
        }
    }
}
