//! Walks past pages with nothing to read. A platform may answer a page of its history
//! with nothing in it and still a token for the next one, having left out what it filters
//! after paging (Matrix events the account may not see; Reddit, Bluesky and X removed,
//! hidden, blocked or withheld posts; YouTube may too): the walk goes on past such pages,
//! at most [`EMPTY_PAGES`] in a row, and a walk that gives up there keeps saying so, with
//! the date, for [`GAVE_UP_SHOWN`] after (the history behind was not read). A walk that
//! may take nothing more (a `backfill_limit` of 0, which only sets the mark) ends at its
//! first page with something readable, not at an empty one.

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

/// Counts a page into a walk's `empty` (`nothing`: the page had nothing to read) and says
/// whether the walk gives up at it: one more such page, with a token to go on with
/// (`more`), past [`EMPTY_PAGES`] in a row.
pub(crate) fn gives_up(empty: &mut u8, nothing: bool, more: bool) -> bool {
    *empty = counted(*empty, nothing);
    more && *empty > EMPTY_PAGES
}

/// Records that a walk gives up now; returns its warning (`what`: who answered the empty
/// pages).
pub(crate) fn gave_up_now(gave_up: &mut Option<DateTime<Utc>>, what: &str) -> Option<String> {
    let now = Utc::now();
    *gave_up = Some(now);
    shown(gave_up, what, now)
}

/// The warning of a walk that gave up at `gave_up` (`what`: who answered the empty pages)
/// while it is shown; past that the time is forgotten.
pub(crate) fn shown(
    gave_up: &mut Option<DateTime<Utc>>,
    what: &str,
    now: DateTime<Utc>,
) -> Option<String> {
    let said = gave_up.and_then(|at| gave_up_warning(what, at, now));
    if said.is_none() {
        *gave_up = None;
    }
    said
}

/// Adds `said` to a stream's `warning`, after what it already says (a give-up shown for
/// a week stays beside a failure of this pull).
pub(crate) fn warn(warning: &mut Option<String>, said: String) {
    *warning = Some(match warning.take() {
        Some(earlier) if earlier.contains(&said) => earlier,
        Some(earlier) => format!("{earlier}; {said}"),
        None => said,
    });
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
        let mut kept = Some(at);
        assert_eq!(
            shown(&mut kept, "/messages", at).as_deref(),
            Some(&said[..])
        );
        assert_eq!(kept, Some(at));
        assert_eq!(shown(&mut kept, "/messages", at + GAVE_UP_SHOWN), None);
        assert_eq!(kept, None);
        let mut warning = None;
        warn(&mut warning, "a".into());
        warn(&mut warning, "b".into());
        warn(&mut warning, "b".into());
        assert_eq!(warning.as_deref(), Some("a; b"));
        let mut empty = EMPTY_PAGES - 1;
        assert!(!gives_up(&mut empty, true, true));
        assert!(!gives_up(&mut empty, true, false));
        assert!(gives_up(&mut empty, true, true));
        assert!(!gives_up(&mut empty, false, true));
        assert_eq!(empty, 0);
        let mut gave_up = None;
        let said = gave_up_now(&mut gave_up, "X").unwrap();
        assert!(
            gave_up.is_some() && said.starts_with("X answered 11 pages"),
            "{said}"
        );
        assert_eq!(counted(3, true), 4);
        assert_eq!(counted(3, false), 0);
        assert_eq!(counted(u8::MAX, true), u8::MAX);
    }
}
