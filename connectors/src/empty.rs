//! Walks past pages with nothing to read. A platform may answer a page of its history
//! with nothing in it and still a token for the next one (Matrix leaves out events the
//! account may not see, Reddit things removed or hidden from it): the walk goes on past
//! such pages, at most [`EMPTY_PAGES`] in a row, and a walk that gives up there keeps
//! saying so, with the date, for [`GAVE_UP_SHOWN`] after (the history behind was not read).

use chrono::{DateTime, Utc};

/// How many pages in a row with nothing to read a walk goes past; the next one ends it.
/// The bound stops a platform that hands out new tokens over nothing forever.
pub(crate) const EMPTY_PAGES: u8 = 10;

/// How long a walk's giving up stays in its stream's or room's warning.
pub(crate) const GAVE_UP_SHOWN: chrono::Duration = chrono::Duration::days(7);

/// For `skip_serializing_if`: a walk's count of empty pages is left out while it is 0.
pub(crate) fn is_zero(n: &u8) -> bool {
    *n == 0
}

/// A walk's count of empty pages in a row after one more page.
pub(crate) fn counted(empty: u8, page_is_empty: bool) -> u8 {
    if page_is_empty {
        empty.saturating_add(1)
    } else {
        0
    }
}

/// What the warning says of a walk that gave up at `at` (`what`: who answered the empty
/// pages), while it is shown: for [`GAVE_UP_SHOWN`] after `at`.
pub(crate) fn gave_up_warning(what: &str, at: DateTime<Utc>, now: DateTime<Utc>) -> Option<String> {
    (now - at < GAVE_UP_SHOWN).then(|| {
        format!(
            "{what} answered {} pages in a row with nothing to read on {}: the walk back \
             stopped there, and what is older was not read",
            EMPTY_PAGES + 1,
            at.format("%Y-%m-%d %H:%M UTC")
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_give_up_is_told_for_a_week_with_its_date() {
        let at = DateTime::parse_from_rfc3339("2026-12-07T21:05:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let said = gave_up_warning("/messages", at, at + chrono::Duration::days(6)).unwrap();
        assert_eq!(
            said,
            "/messages answered 11 pages in a row with nothing to read on 2026-12-07 21:05 \
             UTC: the walk back stopped there, and what is older was not read"
        );
        assert_eq!(gave_up_warning("/messages", at, at + GAVE_UP_SHOWN), None);
        assert_eq!(counted(3, true), 4);
        assert_eq!(counted(3, false), 0);
        assert_eq!(counted(u8::MAX, true), u8::MAX);
    }
}
