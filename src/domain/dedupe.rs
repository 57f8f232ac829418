//! Duplicate detection over what customers' profiles say: names (typos, transpositions,
//! phonetic spellings, nicknames, given and family names swapped, missing parts), e-mail
//! addresses (plus-addressing, the provider's dot rule, the same name at another
//! provider), phone numbers, postal addresses, birth dates (day and month swapped, typos),
//! organization and handles (the same handle on two platforms). Profile links, the other
//! detector, live in [`super::duplicate`]; both store into the one suggestion list.
//!
//! **Blocking.** A customer is compared only with customers who share a *blocking key*
//! with it ([`keys`]): the phonetic code of one name with the initial of the other (both
//! orders, so a swap still meets), the birth date with day and month unordered, the birth
//! day with a name initial (a typo in the year), the canonical e-mail address and its local
//! part, the last nine digits of a phone, the postcode with the house number, a handle. A
//! key shared by more than [`MAX_BLOCK`] customers (a common name in a big workspace) says
//! too little to compare everyone under it, and is skipped: those pairs still meet on a
//! rarer key if they share one. So a workspace of a million customers costs a bounded
//! number of comparisons per customer, never all pairs. The keys are stored
//! (`customer_match_key`) so a customer created, imported or ingested is checked at once
//! against the stored ones with a few index probes ([`check`]); `rapport dedupe`
//! ([`run`]) rebuilds them and compares a whole workspace.
//!
//! **Scoring.** Each field compared gives a weight: positive when it agrees (more for
//! rarer agreement: an exact e-mail address outweighs a shared postcode), negative when
//! both records have it and it disagrees (two birth dates that are not a typo of each
//! other say "two people" strongly; two e-mail addresses say little, people have several).
//! The weights add up (a Fellegi–Sunter record-linkage model with hand-set weights) and a
//! logistic curve maps the total to a score in [0, 1]; 0.5 is where the evidence for one
//! person outweighs the evidence against. The household case (same family name, address
//! and landline, another given name) stays below it, as does a namesake with nothing else
//! in common. The weights are checked against a generated registry with known true pairs
//! (`crate::bench::dedupe`): precision and recall at the default threshold are printed by
//! `rapport dedupe --evaluate N` and have floors in a test.
//!
//! A field is what someone said of themselves: the field detector suggests and never
//! merges by itself (only `rapport dedupe --merge` merges its pairs above the workspace's
//! threshold); profile links, which a platform may have verified, keep merging above it.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Datelike, NaiveDate, Utc};
use sea_orm::sea_query::{Expr, OnConflict, Query};
use sea_orm::{
    ColumnTrait, ConnectionTrait, EntityTrait, FromQueryResult, PaginatorTrait, QueryFilter,
    QueryOrder, QuerySelect,
};
use unicode_normalization::UnicodeNormalization;

use super::duplicate::{AutoMerge, Found, Reason};
use super::ContactPointKind;
use crate::error::Result;
use entity::{contact_point, customer, customer_match_key, identity};
use entity::{CustomerId, WorkspaceId};

/// Customers under one key beyond which the key is not compared within, by `rapport
/// dedupe` (which holds the workspace in memory).
pub const MAX_BLOCK: usize = 100;
/// The same bound for the check as records are written ([`check`]): each customer of a
/// write loads and compares at most this many others a key, so a batch of a thousand
/// ingested or imported rows stays a few queries, not a read of every neighbour (a
/// building's hundred residents under one address key are compared by `rapport dedupe`).
pub const MAX_LIVE_BLOCK: usize = 16;
/// Suggestions scoring below this are not stored (the list's `minScore` cannot go lower
/// and still see them).
pub const MIN_STORED: f64 = 0.45;
/// Where the logistic curve crosses 0.5, and how steep it is.
const MIDPOINT: f64 = 6.1;
const SPREAD: f64 = 1.6;
/// Rows per statement.
pub const CHUNK: usize = 500;

/// What the detector reads of a customer.
#[derive(Clone, Debug)]
pub struct Profile {
    pub id: CustomerId,
    pub display_name: String,
    pub given_name: Option<String>,
    pub family_name: Option<String>,
    /// Normalised e-mail addresses (contact points).
    pub emails: Vec<String>,
    /// E.164 phone numbers (contact points).
    pub phones: Vec<String>,
    pub birth_date: Option<NaiveDate>,
    pub street: Option<String>,
    pub postal_code: Option<String>,
    pub locality: Option<String>,
    pub organization: Option<String>,
    /// `(channel, handle)` of its identities.
    pub handles: Vec<(String, String)>,
}

impl Profile {
    /// The profile of a stored customer, without its contact points and identities.
    pub fn of_customer(c: customer::Model) -> Profile {
        Profile::from(ProfileRow {
            id: c.id,
            display_name: c.display_name,
            given_name: c.given_name,
            family_name: c.family_name,
            birth_date: c.birth_date,
            street: c.street,
            postal_code: c.postal_code,
            locality: c.locality,
            organization_id: c.organization_id,
        })
    }

    /// A profile with a name shown and nothing else.
    pub fn new(id: CustomerId, display_name: String) -> Profile {
        Profile {
            id,
            display_name,
            given_name: None,
            family_name: None,
            emails: Vec::new(),
            phones: Vec::new(),
            birth_date: None,
            street: None,
            postal_code: None,
            locality: None,
            organization: None,
            handles: Vec::new(),
        }
    }
}

/// A name part ready to compare.
#[derive(Clone, Debug)]
struct Name {
    /// As written, for the reasons.
    shown: String,
    /// Lower-case ASCII letters and spaces, diacritics dropped.
    plain: String,
    /// The phonetic code of `plain`.
    sound: String,
    /// The formal name a nickname stands for (`bob` → `robert`), else `plain`.
    formal: String,
    /// A generational suffix written after the name (`jr`, `sr`, `iii`), taken out of
    /// `plain`: a father and his son of one name and one home are two people.
    generation: Option<&'static str>,
    /// Written with digits (`Given123`): compared only as written.
    numbered: bool,
}

const GENERATIONS: &[&str] = &["jr", "junior", "sr", "senior", "ii", "iii", "iv"];

#[derive(Clone, Debug)]
struct Email {
    shown: String,
    /// Plus-addressing dropped, and the dots of providers that ignore them.
    canonical: String,
    local: String,
}

/// A profile prepared for comparing: each part normalised once.
#[derive(Clone, Debug)]
pub struct Prepared {
    pub id: CustomerId,
    given: Option<Name>,
    family: Option<Name>,
    emails: Vec<Email>,
    phones: Vec<String>,
    birth_date: Option<NaiveDate>,
    street: Option<String>,
    house: Option<String>,
    postal_code: Option<String>,
    locality: Option<String>,
    organization: Option<String>,
    handles: Vec<(String, String)>,
    /// How many customers of the workspace share its name key (the phonetic family name
    /// with the given name's initial), when known: an agreeing name is strong evidence
    /// when few share it, weak when many do (the frequency of a value, as record linkage
    /// weighs it).
    pub name_count: Option<u32>,
}

impl Prepared {
    pub fn of(profile: &Profile) -> Prepared {
        let mut given = profile.given_name.as_deref().and_then(name);
        let mut family = profile.family_name.as_deref().and_then(name);
        if given.is_none() && family.is_none() {
            // A display name of two words or more is read as given … family; one word
            // is a handle or a nickname more often than a name.
            let words: Vec<&str> = profile
                .display_name
                .split_whitespace()
                .filter(|w| w.chars().any(char::is_alphabetic))
                .collect();
            if words.len() >= 2 {
                given = name(words[0]);
                // "Ana García Jr": the family name with its suffix.
                let last = words[words.len() - 1];
                let generational =
                    GENERATIONS.contains(&last.trim_end_matches('.').to_lowercase().as_str());
                family = if generational && words.len() >= 3 {
                    name(&format!("{} {last}", words[words.len() - 2]))
                } else {
                    name(last)
                };
            }
        }
        let street = profile.street.as_deref().map(plain_street);
        let house = profile.street.as_deref().and_then(house_number);
        Prepared {
            id: profile.id,
            given,
            family,
            emails: profile.emails.iter().filter_map(|e| email(e)).collect(),
            phones: profile
                .phones
                .iter()
                .map(|p| p.chars().filter(char::is_ascii_digit).collect::<String>())
                .filter(|p| p.len() >= 7)
                .collect(),
            birth_date: profile.birth_date,
            street: street.filter(|s| !s.is_empty()),
            house,
            postal_code: profile
                .postal_code
                .as_deref()
                .map(|p| {
                    p.chars()
                        .filter(char::is_ascii_alphanumeric)
                        .collect::<String>()
                        .to_ascii_uppercase()
                })
                .filter(|p| !p.is_empty()),
            locality: profile
                .locality
                .as_deref()
                .map(plain)
                .filter(|l| !l.is_empty()),
            organization: profile.organization.clone(),
            handles: profile
                .handles
                .iter()
                .filter_map(|(channel, handle)| {
                    let local = handle_local(handle)?;
                    Some((channel.clone(), local))
                })
                .collect(),
            name_count: None,
        }
    }

    /// The key whose population says how common its name is ([`Prepared::name_count`]).
    pub fn name_key(&self) -> Option<String> {
        let (given, family) = (self.given.as_ref()?, self.family.as_ref()?);
        let (given, family) = (sound_or_plain(given), sound_or_plain(family));
        Some(format!("n:{}:{}", family.1, initial(&given.0)))
    }
}

/// The blocking keys of a profile (see the module's documentation).
pub fn keys(p: &Prepared) -> Vec<String> {
    let mut keys = Vec::new();
    if let (Some(given), Some(family)) = (&p.given, &p.family) {
        // Names in scripts the phonetic code does not read block on what they are.
        let (given, family) = (sound_or_plain(given), sound_or_plain(family));
        keys.push(format!("n:{}:{}", family.1, initial(&given.0)));
        keys.push(format!("n:{}:{}", given.1, initial(&family.1)));
    }
    if let Some(date) = p.birth_date {
        let (low, high) = ordered(date.month(), date.day());
        keys.push(format!("b:{}-{low}-{high}", date.year()));
        if let Some(given) = &p.given {
            keys.push(format!(
                "bd:{}-{}:{}",
                date.month(),
                date.day(),
                initial(&sound(&given.formal))
            ));
        }
    }
    for email in &p.emails {
        keys.push(format!("e:{}", email.canonical));
        if informative_local(&email.local) {
            keys.push(format!("el:{}", email.local));
        }
    }
    for phone in &p.phones {
        keys.push(format!("p:{}", &phone[phone.len().saturating_sub(9)..]));
    }
    if let (Some(postal), Some(house)) = (&p.postal_code, &p.house) {
        keys.push(format!("a:{postal}:{house}"));
    }
    for (_, handle) in &p.handles {
        keys.push(format!("h:{handle}"));
    }
    keys.sort_unstable();
    keys.dedup();
    keys
}

/// The code a name's initial is taken from (its formal form's sound) and the name's
/// own code, its plain form where it has no sound.
fn sound_or_plain(name: &Name) -> (String, String) {
    let own = if name.sound.is_empty() {
        name.plain.clone()
    } else {
        name.sound.clone()
    };
    let formal = sound(&name.formal);
    (
        if formal.is_empty() {
            own.clone()
        } else {
            formal
        },
        own,
    )
}

fn ordered(a: u32, b: u32) -> (u32, u32) {
    (a.min(b), a.max(b))
}

fn initial(code: &str) -> char {
    code.chars().next().unwrap_or('_')
}

/// What comparing two profiles found: the weight of the evidence and its reasons.
#[derive(Clone, Debug)]
pub struct Comparison {
    pub weight: f64,
    pub reasons: Vec<Reason>,
}

impl Comparison {
    /// The score in [0, 1] the weight maps to.
    pub fn score(&self) -> f64 {
        let score = 1.0 / (1.0 + (-(self.weight - MIDPOINT) / SPREAD).exp());
        (score * 1_000.0).round().min(990.0) / 1_000.0
    }
}

fn reason(field: &str, kind: &str, detail: String, weight: f64) -> Reason {
    Reason {
        field: field.to_owned(),
        kind: kind.to_owned(),
        detail,
        // What this reason alone is worth: its weight on the curve, from nothing else.
        score: if weight > 0.0 {
            let alone = 1.0 / (1.0 + (-(weight - MIDPOINT) / SPREAD).exp());
            (alone * 1_000.0).round() / 1_000.0
        } else {
            0.0
        },
    }
}

/// Compares two prepared profiles.
pub fn compare(a: &Prepared, b: &Prepared) -> Comparison {
    // Names, in both orders: the better reading wins.
    let straight = names(
        a.given.as_ref(),
        a.family.as_ref(),
        b.given.as_ref(),
        b.family.as_ref(),
    );
    let swapped = names(
        a.given.as_ref(),
        a.family.as_ref(),
        b.family.as_ref(),
        b.given.as_ref(),
    );
    let (name_weight, mut name_reasons, is_swapped) = if swapped.0 > straight.0 + 0.5 {
        (swapped.0, swapped.1, true)
    } else {
        (straight.0, straight.1, false)
    };
    if is_swapped {
        for r in &mut name_reasons {
            r.detail.push_str(" (given and family names swapped)");
        }
    }
    // A name agreeing in full (not through a typo, which makes any name look rare)
    // counts for more when it is rare in the workspace, for less when common.
    let in_full = name_reasons.len() == 2
        && name_reasons
            .iter()
            .all(|r| matches!(r.kind.as_str(), "exact" | "nickname" | "phonetic"));
    let name_weight = if in_full {
        let count = match (a.name_count, b.name_count) {
            (Some(x), Some(y)) => Some(x.min(y)),
            (x, y) => x.or(y),
        };
        name_weight
            + match count {
                // At most so much that a full name alone stays below the default
                // threshold: two people may share the rarest name.
                Some(0..=6) => 0.5,
                Some(7..=20) => 0.0,
                Some(21..=50) => -0.8,
                Some(_) => -1.5,
                None => 0.0,
            }
    } else {
        name_weight
    };
    let mut weight = name_weight;
    let mut reasons = name_reasons;
    let mut add = |w: f64, r: Option<Reason>| {
        weight += w;
        if let Some(r) = r {
            reasons.push(r);
        }
    };

    // E-mail addresses: the best agreement of any two.
    let mut best_email: Option<(f64, Reason)> = None;
    for x in &a.emails {
        for y in &b.emails {
            let found = if x.shown == y.shown {
                Some((7.0, "exact", format!("both have {}", x.shown)))
            } else if x.canonical == y.canonical {
                let how = if x.shown.contains('+') || y.shown.contains('+') {
                    "plus-addressing"
                } else {
                    "the provider ignores dots"
                };
                Some((
                    6.5,
                    "canonical",
                    format!("{} and {} are one mailbox ({how})", x.shown, y.shown),
                ))
            } else if x.local == y.local && informative_local(&x.local) {
                // A local part made of the name says little more than the name.
                let of_name = [&a.family, &a.given, &b.family, &b.given]
                    .into_iter()
                    .flatten()
                    .any(|n| n.plain.len() >= 3 && x.local.contains(&n.plain.replace(' ', "")));
                Some((
                    if of_name { 0.5 } else { 3.0 },
                    "local_part",
                    format!(
                        "{} and {}: the same name at two providers",
                        x.shown, y.shown
                    ),
                ))
            } else {
                None
            };
            if let Some((w, kind, detail)) = found {
                if best_email.as_ref().is_none_or(|(bw, _)| w > *bw) {
                    best_email = Some((w, reason("email", kind, detail, w)));
                }
            }
        }
    }
    match best_email {
        Some((w, r)) => add(w, Some(r)),
        None if !a.emails.is_empty() && !b.emails.is_empty() => add(-0.3, None),
        None => {}
    }

    // Phones: the same number, or the same subscriber number written in another plan.
    let mut phone = None;
    for x in &a.phones {
        for y in &b.phones {
            if x == y {
                phone = Some((4.0, "exact", format!("both have +{x}")));
            } else if phone.is_none()
                && x.len() >= 9
                && y.len() >= 9
                && x[x.len() - 9..] == y[y.len() - 9..]
            {
                phone = Some((3.0, "national", format!("+{x} and +{y} end alike")));
            }
        }
    }
    match phone {
        Some((w, kind, detail)) => add(w, Some(reason("phone", kind, detail, w))),
        None if !a.phones.is_empty() && !b.phones.is_empty() => add(-0.5, None),
        None => {}
    }

    // Birth dates: the same, day and month swapped, or one typo apart; otherwise two
    // people (a birth date changes only by mistake).
    if let (Some(x), Some(y)) = (a.birth_date, b.birth_date) {
        if x == y {
            add(
                4.0,
                Some(reason("birthDate", "exact", format!("both born {x}"), 4.0)),
            );
        } else if x.year() == y.year() && x.month() == y.day() && x.day() == y.month() {
            add(
                3.0,
                Some(reason(
                    "birthDate",
                    "day_month_swapped",
                    format!("{x} and {y}: day and month swapped"),
                    3.0,
                )),
            );
        } else if one_typo(&x.to_string(), &y.to_string()) {
            add(
                2.0,
                Some(reason(
                    "birthDate",
                    "typo",
                    format!("{x} and {y}: one typo apart"),
                    2.0,
                )),
            );
        } else {
            add(
                -5.0,
                Some(reason(
                    "birthDate",
                    "different",
                    format!("born {x} and {y}"),
                    -5.0,
                )),
            );
        }
    }

    // Postal address: the same house, or only the same postcode. A different address
    // says little: people move.
    if let (Some(px), Some(py)) = (&a.postal_code, &b.postal_code) {
        if px == py {
            let same_street = match (&a.street, &b.street) {
                (Some(sx), Some(sy)) => jaro_winkler(sx, sy) >= 0.88 && a.house == b.house,
                _ => false,
            };
            if same_street {
                add(
                    2.5,
                    Some(reason(
                        "postalAddress",
                        "same_address",
                        format!(
                            "both live at {} {px}",
                            a.street.as_deref().unwrap_or_default()
                        ),
                        2.5,
                    )),
                );
            } else {
                add(0.5, None);
            }
        } else {
            add(-0.3, None);
        }
    } else if let (Some(lx), Some(ly)) = (&a.locality, &b.locality) {
        if lx == ly {
            add(0.3, None);
        }
    }

    if let (Some(ox), Some(oy)) = (&a.organization, &b.organization) {
        if ox == oy {
            add(
                1.0,
                Some(reason(
                    "organization",
                    "same",
                    "the same organization".into(),
                    1.0,
                )),
            );
        } else {
            add(-0.3, None);
        }
    }

    let mut handle = None;
    for (cx, hx) in &a.handles {
        for (cy, hy) in &b.handles {
            if hx == hy && cx != cy {
                handle = Some(format!("@{hx} on {cx} and on {cy}"));
            }
        }
    }
    if let Some(detail) = handle {
        add(3.0, Some(reason("identity", "same_handle", detail, 3.0)));
    }

    reasons.sort_by(|x, y| y.score.total_cmp(&x.score));
    Comparison { weight, reasons }
}

/// The weight of two (given, family) readings, and its reasons.
fn names(
    ag: Option<&Name>,
    af: Option<&Name>,
    bg: Option<&Name>,
    bf: Option<&Name>,
) -> (f64, Vec<Reason>) {
    let mut weight = 0.0;
    let mut reasons = Vec::new();
    if let (Some(x), Some(y)) = (af, bf) {
        if x.generation != y.generation {
            weight -= 4.0;
            reasons.push(reason(
                "familyName",
                "generation",
                format!("{} and {}: two generations", x.shown, y.shown),
                -4.0,
            ));
        }
        let (w, kind) = if x.plain == y.plain {
            (3.0, Some("exact"))
        } else if x.numbered || y.numbered {
            (-4.0, None)
        } else if !x.sound.is_empty() && x.sound == y.sound {
            (2.2, Some("phonetic"))
        } else if jaro_winkler(&x.plain, &y.plain) >= 0.9 || one_typo(&x.plain, &y.plain) {
            (2.0, Some("typo"))
        } else if compound(&x.plain, &y.plain) {
            (2.0, Some("part"))
        } else if (x.plain.len() == 1 || y.plain.len() == 1)
            && x.plain.chars().next() == y.plain.chars().next()
        {
            (0.5, Some("initial"))
        } else if jaro_winkler(&x.plain, &y.plain) >= 0.8 {
            // Two typos, or a typo and a sound: neither for nor against.
            (0.0, Some("similar"))
        } else {
            (-4.0, None)
        };
        weight += w;
        reasons.push(reason(
            "familyName",
            kind.unwrap_or("different"),
            match kind {
                Some(kind) => describe(kind, &x.shown, &y.shown),
                None => format!("{} and {}", x.shown, y.shown),
            },
            w,
        ));
    }
    if let (Some(x), Some(y)) = (ag, bg) {
        let short = x.plain.len() == 1 || y.plain.len() == 1;
        let (w, kind) = if x.plain == y.plain {
            (2.5, Some("exact"))
        } else if x.numbered || y.numbered {
            (-4.0, None)
        } else if short && x.plain.chars().next() == y.plain.chars().next() {
            (0.8, Some("initial"))
        } else if x.formal == y.formal {
            (2.3, Some("nickname"))
        } else if !short
            && !x.sound.is_empty()
            && (x.sound == y.sound || sound(&x.formal) == sound(&y.formal))
        {
            (2.0, Some("phonetic"))
        } else if !short
            // Gary and Mary are two names: a short name's first letter is no typo.
            && (x.plain.len() > 5 || x.plain.chars().next() == y.plain.chars().next())
            && (jaro_winkler(&x.plain, &y.plain) >= 0.9 || one_typo(&x.plain, &y.plain))
        {
            (1.8, Some("typo"))
        } else if !short && jaro_winkler(&x.plain, &y.plain) >= 0.8 {
            (0.0, Some("similar"))
        } else {
            (-4.0, None)
        };
        weight += w;
        reasons.push(reason(
            "givenName",
            kind.unwrap_or("different"),
            match kind {
                Some(kind) => describe(kind, &x.shown, &y.shown),
                None => format!("{} and {}", x.shown, y.shown),
            },
            w,
        ));
    }
    (weight, reasons)
}

fn describe(kind: &str, x: &str, y: &str) -> String {
    match kind {
        "exact" => format!("both {x}"),
        "phonetic" => format!("{x} and {y} sound alike"),
        "typo" => format!("{x} and {y}: a typo apart"),
        "nickname" => format!("{x} and {y}: a nickname"),
        "initial" => format!("{x} and {y}: an initial"),
        "part" => format!("{x} and {y}: one is part of the other"),
        "similar" => format!("{x} and {y}: alike, more than a typo apart"),
        _ => format!("{x} and {y}"),
    }
}

/// One name is a word of the other (`garcia` in `garcia marquez`).
fn compound(x: &str, y: &str) -> bool {
    let (short, long) = if x.len() <= y.len() { (x, y) } else { (y, x) };
    short.len() >= 3 && long.split(' ').any(|word| word == short)
}

/// One substitution, insertion, deletion or transposition of neighbours apart.
fn one_typo(x: &str, y: &str) -> bool {
    let a: Vec<char> = x.chars().collect();
    let b: Vec<char> = y.chars().collect();
    if a == b {
        return false;
    }
    let prefix = a.iter().zip(&b).take_while(|(p, q)| p == q).count();
    let (ra, rb) = (&a[prefix..], &b[prefix..]);
    match ra.len() as isize - rb.len() as isize {
        0 => {
            ra[1..] == rb[1..]
                || (ra.len() >= 2 && ra[0] == rb[1] && ra[1] == rb[0] && ra[2..] == rb[2..])
        }
        1 => ra[1..] == *rb,
        -1 => *ra == rb[1..],
        _ => false,
    }
}

/// Jaro-Winkler similarity of two strings, in [0, 1].
pub fn jaro_winkler(x: &str, y: &str) -> f64 {
    let a: Vec<char> = x.chars().collect();
    let b: Vec<char> = y.chars().collect();
    if a.is_empty() || b.is_empty() {
        return if a == b { 1.0 } else { 0.0 };
    }
    let window = (a.len().max(b.len()) / 2).saturating_sub(1);
    let mut b_used = vec![false; b.len()];
    let mut a_matched = Vec::new();
    for (i, ca) in a.iter().enumerate() {
        let start = i.saturating_sub(window);
        let end = (i + window + 1).min(b.len());
        for j in start..end {
            if !b_used[j] && b[j] == *ca {
                b_used[j] = true;
                a_matched.push(*ca);
                break;
            }
        }
    }
    let m = a_matched.len();
    if m == 0 {
        return 0.0;
    }
    let b_matched: Vec<char> = b
        .iter()
        .zip(&b_used)
        .filter(|(_, used)| **used)
        .map(|(c, _)| *c)
        .collect();
    let transpositions = a_matched
        .iter()
        .zip(&b_matched)
        .filter(|(p, q)| p != q)
        .count()
        / 2;
    let m = m as f64;
    let jaro = (m / a.len() as f64 + m / b.len() as f64 + (m - transpositions as f64) / m) / 3.0;
    let prefix = a.iter().zip(&b).take(4).take_while(|(p, q)| p == q).count() as f64;
    jaro + prefix * 0.1 * (1.0 - jaro)
}

/// Lower-case ASCII letters and single spaces, diacritics dropped (`Núñez` → `nunez`,
/// `O'Brien` → `obrien`, `Jean-Luc` → `jean luc`).
/// At most this many characters of a name, street or handle are compared (NFKD can
/// turn one character into eighteen; the comparisons are quadratic in length).
const MAX_PART: usize = 64;

fn plain(value: &str) -> String {
    let mut out = String::new();
    for c in value.chars().take(MAX_PART).nfkd() {
        if out.len() >= MAX_PART {
            break;
        }
        if unicode_normalization::char::is_combining_mark(c) {
            continue;
        }
        let c = match c {
            'ß' => {
                out.push_str("ss");
                continue;
            }
            'ø' | 'Ø' => 'o',
            'æ' | 'Æ' => {
                out.push_str("ae");
                continue;
            }
            'ł' | 'Ł' => 'l',
            'đ' | 'Đ' => 'd',
            other => other,
        };
        if c.is_alphabetic() {
            out.extend(c.to_lowercase());
        } else if (c.is_whitespace() || c == '-') && !out.is_empty() && !out.ends_with(' ') {
            out.push(' ');
        }
    }
    out.trim_end().to_owned()
}

fn name(value: &str) -> Option<Name> {
    if value.chars().any(|c| c.is_ascii_digit()) {
        // `User 42`, `Given123`: a label, not a name; the same only when written alike.
        let plain: String = value
            .chars()
            .take(MAX_PART)
            .filter(|c| c.is_alphanumeric() || *c == ' ')
            .flat_map(char::to_lowercase)
            .collect();
        let plain = plain.trim().to_owned();
        return (!plain.is_empty()).then(|| Name {
            shown: value.trim().to_owned(),
            sound: String::new(),
            formal: plain.clone(),
            plain,
            generation: None,
            numbered: true,
        });
    }
    let mut plain = plain(value);
    let mut generation = None;
    if let Some((rest, last)) = plain.rsplit_once(' ') {
        if let Some(g) = GENERATIONS.iter().find(|g| **g == last) {
            generation = Some(match *g {
                "junior" => "jr",
                "senior" => "sr",
                other => other,
            });
            plain = rest.to_owned();
        }
    }
    if plain.is_empty() {
        return None;
    }
    let formal = formal(&plain).unwrap_or(&plain).to_owned();
    Some(Name {
        shown: value.trim().to_owned(),
        sound: sound(&plain),
        formal,
        plain,
        generation,
        numbered: false,
    })
}

/// A phonetic code: letters that sound alike written alike, vowels after the first
/// dropped, doubled letters collapsed, at most six letters (`Catherine` and `Katherine`
/// are `ktrn`, `Stephen` and `Steven` `stfn`, `Smith` and `Smyth` `smt`).
pub fn sound(plain: &str) -> String {
    let word: String = plain.chars().filter(|c| c.is_ascii_lowercase()).collect();
    let w = word.as_bytes();
    let mut out: Vec<u8> = Vec::new();
    let mut i = 0;
    while i < w.len() {
        let c = w[i];
        let next = w.get(i + 1).copied();
        let first = i == 0;
        let (code, skip): (Option<u8>, usize) = match c {
            b'a' | b'e' | b'i' | b'o' | b'u' | b'y' => (first.then_some(b'a'), 1),
            b'p' if next == Some(b'h') => (Some(b'f'), 2),
            // Thom(p)son, Sam(p)son.
            b'p' if i > 0 && w[i - 1] == b'm' && matches!(next, Some(b's' | b't')) => (None, 1),
            b'c' if next == Some(b'k') => (Some(b'k'), 2),
            b'c' if next == Some(b'h') => (Some(b'x'), 2),
            b's' if next == Some(b'h') => (Some(b'x'), 2),
            b'c' if matches!(next, Some(b'e' | b'i' | b'y')) => (Some(b's'), 1),
            b'k' | b'g' | b'w' if first && next == Some(b'n') => (None, 1),
            b'c' | b'q' | b'k' => (Some(b'k'), 1),
            b'g' if next == Some(b'h') => (None, 2),
            b'w' if first && next == Some(b'r') => (None, 1),
            b't' if next == Some(b'h') => (Some(b't'), 2),
            b'd' if next == Some(b'g') => (Some(b'j'), 2),
            b'x' => (Some(b's'), 1),
            b'z' => (Some(b's'), 1),
            b'v' => (Some(b'f'), 1),
            b'h' | b'w' => (first.then_some(c), 1),
            other => (Some(other), 1),
        };
        if let Some(code) = code {
            if out.last() != Some(&code) {
                out.push(code);
            }
        }
        i += skip;
    }
    out.truncate(6);
    String::from_utf8(out).unwrap_or_default()
}

/// The formal name a common nickname or short form stands for.
fn formal(plain: &str) -> Option<&'static str> {
    NICKNAMES
        .iter()
        .find(|(_, nicks)| nicks.split(' ').any(|n| n == plain))
        .map(|(formal, _)| *formal)
}

/// Formal names and their common short forms (English, Spanish, German, French, Italian).
const NICKNAMES: &[(&str, &str)] = &[
    ("robert", "bob bobby rob robbie bert"),
    ("william", "bill billy will willy liam"),
    ("james", "jim jimmy jamie"),
    ("michael", "mike mikey mick"),
    ("david", "dave davy"),
    ("daniel", "dan danny"),
    ("thomas", "tom tommy"),
    ("christopher", "chris kit"),
    ("matthew", "matt matty"),
    ("nicholas", "nick nicky"),
    ("anthony", "tony"),
    ("joseph", "joe joey"),
    ("benjamin", "ben benny"),
    ("samuel", "sam sammy"),
    ("alexander", "alex sasha sandy"),
    ("andrew", "andy drew"),
    ("stephen", "steve stevie"),
    ("richard", "rick ricky dick rich"),
    ("edward", "ed eddie ted teddy ned"),
    ("charles", "charlie chuck chas"),
    ("henry", "harry hank"),
    ("john", "jack johnny jon"),
    ("peter", "pete"),
    ("frederick", "fred freddie"),
    ("gregory", "greg"),
    ("jeffrey", "jeff"),
    ("lawrence", "larry"),
    ("timothy", "tim timmy"),
    ("kenneth", "ken kenny"),
    ("ronald", "ron ronnie"),
    ("donald", "don donnie"),
    ("patrick", "pat paddy"),
    ("katherine", "kate katie kathy kat kay"),
    ("catherine", "cathy cat"),
    ("elizabeth", "liz lizzie beth betty eliza libby"),
    ("margaret", "meg maggie peggy marge"),
    ("jennifer", "jen jenny"),
    ("susan", "sue susie"),
    ("patricia", "patty patsy trish tricia"),
    ("rebecca", "becky becca"),
    ("victoria", "vicky tori"),
    ("abigail", "abby"),
    ("deborah", "debbie deb"),
    ("jessica", "jess jessie"),
    ("christine", "chris chrissy tina"),
    ("barbara", "barb babs"),
    ("dorothy", "dot dottie"),
    ("kimberly", "kim"),
    ("pamela", "pam"),
    ("samantha", "sam sammie"),
    ("alexandra", "alex sasha sandra"),
    ("josé", "pepe"),
    ("jose", "pepe"),
    ("francisco", "paco pancho curro"),
    ("dolores", "lola"),
    ("guadalupe", "lupe"),
    ("manuel", "manolo"),
    ("ignacio", "nacho"),
    ("enrique", "quique"),
    ("jesus", "chucho chuy"),
    ("giuseppe", "beppe peppe"),
    ("johannes", "hans jo"),
    ("wolfgang", "wolf"),
    ("friedrich", "fritz"),
];

/// The local part of a handle (`@ana@mastodon.social` → `ana`, `ana.bsky.social` →
/// `ana`), when it is distinctive enough to say something (four characters or more).
fn handle_local(handle: &str) -> Option<String> {
    let h = handle.trim().trim_start_matches('@').to_lowercase();
    let local = match h.split_once('@') {
        Some((local, _)) => local.to_owned(),
        None => match h.strip_suffix(".bsky.social") {
            Some(local) => local.to_owned(),
            None => h.clone(),
        },
    };
    let local: String = local
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '.')
        .take(MAX_PART)
        .collect();
    (local.len() >= 4).then_some(local)
}

/// An e-mail address's canonical mailbox: the tag after `+` dropped; the dots of the
/// local part dropped at providers that ignore them (Gmail).
fn email(normalized: &str) -> Option<Email> {
    let (local, domain) = normalized.rsplit_once('@')?;
    let local = local.to_lowercase();
    let domain = match domain {
        "googlemail.com" => "gmail.com",
        other => other,
    };
    let untagged = local.split('+').next().unwrap_or_default();
    let untagged = if domain == "gmail.com" {
        untagged.replace('.', "")
    } else {
        untagged.to_owned()
    };
    if untagged.is_empty() {
        return None;
    }
    Some(Email {
        shown: normalized.to_owned(),
        canonical: format!("{untagged}@{domain}"),
        local: untagged.replace(['.', '_', '-'], ""),
    })
}

/// A local part that names a person, not a role or a throwaway (`info`, `sales`, `a1`).
fn informative_local(local: &str) -> bool {
    const ROLES: &[&str] = &[
        "info",
        "contact",
        "hello",
        "admin",
        "sales",
        "support",
        "office",
        "mail",
        "team",
        "noreply",
        "billing",
        "help",
        "enquiries",
        "webmaster",
        "marketing",
        "hola",
    ];
    local.len() >= 5 && !ROLES.contains(&local)
}

/// A street written one way: lower-case words, the common abbreviations spelled out.
fn plain_street(street: &str) -> String {
    plain(street)
        .split(' ')
        .filter(|w| !w.is_empty())
        .map(|w| match w {
            "st" | "str" => "street",
            "rd" => "road",
            "ave" | "av" => "avenue",
            "ln" => "lane",
            "dr" => "drive",
            "blvd" => "boulevard",
            "c" | "cl" => "calle",
            other => other,
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn house_number(street: &str) -> Option<String> {
    street
        .split(|c: char| !c.is_ascii_alphanumeric())
        .find(|w| w.starts_with(|c: char| c.is_ascii_digit()))
        .map(str::to_ascii_lowercase)
}

/// What [`find_pairs`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PairStats {
    pub customers: u64,
    pub keys: u64,
    /// Keys shared by two customers or more.
    pub blocks: u64,
    /// Of those, the ones with more than [`MAX_BLOCK`] customers, not compared within.
    pub skipped_blocks: u64,
    /// Distinct pairs compared.
    pub compared: u64,
}

/// Compares every pair of `profiles` that share a blocking key (in a block of at most
/// [`MAX_BLOCK`]) once, and returns the pairs scoring at least [`MIN_STORED`], by index.
pub fn find_pairs(
    profiles: &mut [Prepared],
    progress: &mut dyn FnMut(u64, u64),
) -> (Vec<(usize, usize, Comparison)>, PairStats) {
    let mut stats = PairStats {
        customers: profiles.len() as u64,
        ..PairStats::default()
    };
    let mut blocks: HashMap<String, Vec<u32>> = HashMap::new();
    for (index, profile) in profiles.iter().enumerate() {
        for key in keys(profile) {
            stats.keys += 1;
            blocks.entry(key).or_default().push(index as u32);
        }
    }
    for profile in profiles.iter_mut() {
        profile.name_count = profile
            .name_key()
            .map(|key| blocks.get(&key).map_or(1, |members| members.len() as u32));
    }
    let profiles: &[Prepared] = profiles;
    let mut seen: HashSet<u64> = HashSet::new();
    let mut found = Vec::new();
    let total = blocks.len() as u64;
    for (done, members) in blocks.values().enumerate() {
        if done % 10_000 == 0 {
            progress(done as u64, total);
        }
        if members.len() < 2 {
            continue;
        }
        stats.blocks += 1;
        if members.len() > MAX_BLOCK {
            stats.skipped_blocks += 1;
            continue;
        }
        for (n, &x) in members.iter().enumerate() {
            for &y in &members[n + 1..] {
                let (x, y) = (x.min(y), x.max(y));
                if x == y || !seen.insert(((x as u64) << 32) | y as u64) {
                    continue;
                }
                stats.compared += 1;
                let comparison = compare(&profiles[x as usize], &profiles[y as usize]);
                if comparison.score() >= MIN_STORED {
                    found.push((x as usize, y as usize, comparison));
                }
            }
        }
    }
    progress(total, total);
    (found, stats)
}

// ---------------------------------------------------------------------------------------
// The database side.

/// Loads the profiles of the live customers among `ids`.
pub async fn profiles(
    db: &impl ConnectionTrait,
    workspace_id: WorkspaceId,
    ids: &[CustomerId],
) -> Result<Vec<Profile>> {
    let mut out = Vec::with_capacity(ids.len());
    for chunk in ids.chunks(CHUNK) {
        // The columns compared, not the whole row: a customer's custom attributes are
        // JSON parsed for nothing, and a write's check loads thousands of candidates.
        let customers = super::scoped::<customer::Entity>(workspace_id)
            .filter(customer::Column::Id.is_in(chunk.iter().copied()))
            .filter(customer::Column::MergedInto.is_null())
            .select_only()
            .columns([
                customer::Column::Id,
                customer::Column::DisplayName,
                customer::Column::GivenName,
                customer::Column::FamilyName,
                customer::Column::BirthDate,
                customer::Column::Street,
                customer::Column::PostalCode,
                customer::Column::Locality,
                customer::Column::OrganizationId,
            ])
            .into_model::<ProfileRow>()
            .all(db)
            .await?;
        out.extend(
            with_contacts(
                db,
                workspace_id,
                customers.into_iter().map(Profile::from).collect(),
            )
            .await?,
        );
    }
    Ok(out)
}

/// What [`profiles`] reads of a customer: the fields a profile compares, which
/// [`Profile::of_customer`] takes from a whole row.
#[derive(FromQueryResult)]
struct ProfileRow {
    id: CustomerId,
    display_name: String,
    given_name: Option<String>,
    family_name: Option<String>,
    birth_date: Option<NaiveDate>,
    street: Option<String>,
    postal_code: Option<String>,
    locality: Option<String>,
    organization_id: Option<entity::OrganizationId>,
}

impl From<ProfileRow> for Profile {
    fn from(c: ProfileRow) -> Profile {
        Profile {
            given_name: c.given_name,
            family_name: c.family_name,
            birth_date: c.birth_date,
            street: c.street,
            postal_code: c.postal_code,
            locality: c.locality,
            organization: c.organization_id.map(|o| o.to_string()),
            ..Profile::new(c.id, c.display_name)
        }
    }
}

/// `customers` with their e-mail addresses, phones and handles.
async fn with_contacts(
    db: &impl ConnectionTrait,
    workspace_id: WorkspaceId,
    customers: Vec<Profile>,
) -> Result<Vec<Profile>> {
    if customers.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<CustomerId> = customers.iter().map(|c| c.id).collect();
    let points =
        super::scoped_under::<contact_point::Entity>(db.get_database_backend(), workspace_id)
            .filter(contact_point::Column::CustomerId.is_in(ids.iter().copied()))
            .filter(
                contact_point::Column::Kind
                    .is_in([ContactPointKind::Email, ContactPointKind::Phone]),
            )
            .all(db)
            .await?;
    let identities =
        super::scoped_under::<identity::Entity>(db.get_database_backend(), workspace_id)
            .filter(identity::Column::CustomerId.is_in(ids.iter().copied()))
            .filter(identity::Column::Handle.is_not_null())
            .all(db)
            .await?;
    let mut by_id: HashMap<CustomerId, Profile> =
        customers.into_iter().map(|c| (c.id, c)).collect();
    for point in points {
        if let Some(p) = by_id.get_mut(&point.customer_id) {
            match point.kind {
                ContactPointKind::Email => p.emails.push(point.normalized),
                ContactPointKind::Phone => p.phones.push(point.normalized),
                _ => {}
            }
        }
    }
    for row in identities {
        if let (Some(p), Some(handle)) = (by_id.get_mut(&row.customer_id), row.handle) {
            p.handles.push((row.channel.as_str().to_owned(), handle));
        }
    }
    Ok(ids.iter().filter_map(|id| by_id.remove(id)).collect())
}

/// Replaces the stored blocking keys of `profiles`.
async fn store_keys(
    db: &impl ConnectionTrait,
    workspace_id: WorkspaceId,
    prepared: &[Prepared],
) -> Result<()> {
    let ids: Vec<CustomerId> = prepared.iter().map(|p| p.id).collect();
    replace_keys(db, workspace_id, &ids, prepared).await
}

/// Deletes the stored keys of `ids` and inserts those of `prepared`.
async fn replace_keys(
    db: &impl ConnectionTrait,
    workspace_id: WorkspaceId,
    ids: &[CustomerId],
    prepared: &[Prepared],
) -> Result<()> {
    delete_keys(db, workspace_id, ids).await?;
    let rows: Vec<(String, CustomerId)> = prepared
        .iter()
        .flat_map(|p| keys(p).into_iter().map(move |key| (key, p.id)))
        .collect();
    insert_keys(db, workspace_id, rows).await
}

async fn delete_keys(
    db: &impl ConnectionTrait,
    workspace_id: WorkspaceId,
    ids: &[CustomerId],
) -> Result<()> {
    for chunk in ids.chunks(CHUNK) {
        customer_match_key::Entity::delete_many()
            .filter(of_workspace(db.get_database_backend(), workspace_id))
            .filter(customer_match_key::Column::CustomerId.is_in(chunk.iter().copied()))
            .exec(db)
            .await?;
    }
    Ok(())
}

/// Inserts `(key, customer)` rows in key order (two writers inserting overlapping keys
/// wait for each other instead of deadlocking).
async fn insert_keys(
    db: &impl ConnectionTrait,
    workspace_id: WorkspaceId,
    mut rows: Vec<(String, CustomerId)>,
) -> Result<()> {
    rows.sort();
    for chunk in rows.chunks(CHUNK) {
        customer_match_key::Entity::insert_many(chunk.iter().map(|(key, id)| {
            customer_match_key::ActiveModel {
                workspace_id: sea_orm::ActiveValue::Set(workspace_id),
                key: sea_orm::ActiveValue::Set(key.clone()),
                customer_id: sea_orm::ActiveValue::Set(*id),
            }
        }))
        .on_conflict(
            OnConflict::columns([
                customer_match_key::Column::CustomerId,
                customer_match_key::Column::Key,
            ])
            .do_nothing()
            .to_owned(),
        )
        .exec_without_returning(db)
        .await?;
    }
    Ok(())
}

/// The workspace term of a statement that names customers: on SQLite written so the
/// planner takes the primary key (customer, key) and not the workspace's key index
/// (see [`super::scoped_under`]).
fn of_workspace(
    backend: sea_orm::DatabaseBackend,
    workspace_id: WorkspaceId,
) -> sea_orm::sea_query::SimpleExpr {
    match backend {
        sea_orm::DatabaseBackend::Sqlite => {
            Expr::cust_with_values("+\"workspace_id\" = ?", [workspace_id])
        }
        _ => customer_match_key::Column::WorkspaceId.eq(workspace_id),
    }
}

/// Rewrites the blocking keys of `ids` from what they are now, without comparing: a
/// merge's survivor gains its merged records' contact points and identities, a merged
/// record's keys go, an unmerged one's come back. Suggestions are left as the merge left
/// them (the next write of either, or `rapport dedupe`, compares again).
pub async fn refresh_keys(
    db: &impl ConnectionTrait,
    workspace_id: WorkspaceId,
    ids: &[CustomerId],
) -> Result<()> {
    let live: Vec<Prepared> = profiles(db, workspace_id, ids)
        .await?
        .iter()
        .map(Prepared::of)
        .collect();
    // A tombstone among `ids` has no profile: its keys go, and none come back.
    replace_keys(db, workspace_id, ids, &live).await
}

#[derive(FromQueryResult)]
struct KeyCount {
    key: String,
    count: i64,
}

/// A name key's population is counted up to this: the rarity of a name
/// ([`Prepared::name_count`]) is read in buckets up to "more than 50".
const NAME_COUNT_CAP: usize = 51;

/// How many stored customers have each of `keys`, for the keys two customers or more
/// have, counted up to what the check reads: [`NAME_COUNT_CAP`] for a name key, one more
/// than [`MAX_LIVE_BLOCK`] for the others. Counting every entry of a block of a thousand
/// (a common birthday, a big building) with `COUNT(*) … GROUP BY key` was a third of an
/// import batch's check; a key of one customer (each row costs a transfer) is left out.
async fn populations_of(
    db: &impl ConnectionTrait,
    workspace_id: WorkspaceId,
    keys: &[String],
) -> Result<Vec<KeyCount>> {
    let (names, others): (Vec<&String>, Vec<&String>) =
        keys.iter().partition(|key| key.starts_with("n:"));
    let mut out = Vec::new();
    for (keys, cap) in [(names, NAME_COUNT_CAP), (others, MAX_LIVE_BLOCK + 1)] {
        if keys.is_empty() {
            continue;
        }
        // The LIMIT ends each key's index scan; the (workspace, key) index answers alone.
        let sql = format!(
            "WITH v(key) AS (VALUES {}) \
             SELECT key, count FROM (SELECT v.key AS key, (SELECT COUNT(*) FROM \
             (SELECT 1 FROM customer_match_key k WHERE k.workspace_id = ? AND k.key = v.key \
             LIMIT {cap}) AS x) AS count FROM v) AS counted WHERE count > 1",
            vec!["(?)"; keys.len()].join(", ")
        );
        let mut values: Vec<sea_orm::Value> =
            keys.into_iter().map(|key| key.clone().into()).collect();
        values.push(workspace_id.into());
        out.extend(
            KeyCount::find_by_statement(super::statement(db.get_database_backend(), &sql, values))
                .all(db)
                .await?,
        );
    }
    Ok(out)
}

/// Checks the customers `ids` (just created, imported, ingested or changed) against the
/// stored ones: stores their blocking keys, compares them with every live customer under
/// a key they share (blocks of at most [`MAX_LIVE_BLOCK`]) and stores the suggestions. Runs in
/// the caller's transaction; returns the new suggestions at or above the workspace's
/// auto-merge threshold, for the caller to merge once its own rows are stored.
pub async fn check(
    db: &impl ConnectionTrait,
    workspace_id: WorkspaceId,
    ids: &[CustomerId],
    now: DateTime<Utc>,
) -> Result<Vec<AutoMerge>> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let mine = profiles(db, workspace_id, ids).await?;
    check_profiles(db, workspace_id, mine, &HashSet::new(), now).await
}

/// [`check`] of profiles the caller already holds (an import batch's new rows, as it
/// wrote them: reading them back cost a third of the check). `created` are those the
/// caller's transaction created: they have no stored keys to replace. The profiles are
/// compared in the order given; [`check`] gives them in [`profiles`]' order.
pub async fn check_profiles(
    db: &impl ConnectionTrait,
    workspace_id: WorkspaceId,
    mine: Vec<Profile>,
    created: &HashSet<CustomerId>,
    now: DateTime<Utc>,
) -> Result<Vec<AutoMerge>> {
    if mine.is_empty() {
        return Ok(Vec::new());
    }
    // Each profile's keys, computed once (they were computed four times).
    let mut once = HashSet::new();
    let mut mine: Vec<(Prepared, Vec<String>)> = mine
        .iter()
        .filter(|profile| once.insert(profile.id))
        .map(|profile| {
            let prepared = Prepared::of(profile);
            let keys = keys(&prepared);
            (prepared, keys)
        })
        .collect();
    let all_keys: Vec<String> = {
        let mut all: Vec<String> = mine.iter().flat_map(|(_, k)| k.iter().cloned()).collect();
        all.sort_unstable();
        all.dedup();
        all
    };
    // Writers storing two sides of a pair wait for each other (PostgreSQL), so the later
    // one sees the earlier one's keys.
    super::duplicate::lock_keys(db, workspace_id, &all_keys).await?;
    let stale: Vec<CustomerId> = mine
        .iter()
        .map(|(p, _)| p.id)
        .filter(|id| !created.contains(id))
        .collect();
    delete_keys(db, workspace_id, &stale).await?;
    insert_keys(
        db,
        workspace_id,
        mine.iter()
            .flat_map(|(p, k)| k.iter().map(|key| (key.clone(), p.id)))
            .collect(),
    )
    .await?;

    let mut members: HashMap<CustomerId, (u32, u32)> = HashMap::new();
    let mut populations: HashMap<String, u32> = HashMap::new();
    for chunk in all_keys.chunks(CHUNK) {
        // A key of the batch alone under it (most: an e-mail address, a phone) comes back
        // with no row and counts 1.
        let counts = populations_of(db, workspace_id, chunk).await?;
        populations.extend(counts.iter().map(|c| (c.key.clone(), c.count as u32)));
        let small: Vec<String> = counts
            .into_iter()
            .filter(|c| (2..=MAX_LIVE_BLOCK as i64).contains(&c.count))
            .map(|c| c.key)
            .collect();
        if small.is_empty() {
            continue;
        }
        let rows = super::scoped::<customer_match_key::Entity>(workspace_id)
            .filter(customer_match_key::Column::Key.is_in(small))
            .select_only()
            .column(customer_match_key::Column::Key)
            .column(customer_match_key::Column::CustomerId)
            .into_tuple::<(String, CustomerId)>()
            .all(db)
            .await?;
        for (key, id) in rows {
            let entry = members.entry(id).or_default();
            entry.0 += u32::from(strong_key(&key));
            entry.1 += 1;
        }
    }
    // Loaded and compared are the candidates sharing a strong key or two keys (see below).
    members.retain(|_, (strong, total)| *strong > 0 || *total >= 2);
    for (p, _) in &mut mine {
        p.name_count = p
            .name_key()
            .map(|key| populations.get(&key).copied().unwrap_or(1));
    }
    let own: HashSet<CustomerId> = mine.iter().map(|(p, _)| p.id).collect();
    let others: Vec<CustomerId> = members.into_keys().filter(|id| !own.contains(id)).collect();
    let theirs: Vec<(Prepared, Vec<String>)> = profiles(db, workspace_id, &others)
        .await?
        .iter()
        .map(|profile| {
            let prepared = Prepared::of(profile);
            let keys = keys(&prepared);
            (prepared, keys)
        })
        .collect();
    let by_key: HashMap<&str, Vec<&Prepared>> = {
        let mut map: HashMap<&str, Vec<&Prepared>> = HashMap::new();
        for (p, keys) in mine.iter().chain(&theirs) {
            for key in keys {
                map.entry(key.as_str()).or_default().push(p);
            }
        }
        map
    };
    // Which keys each pair shares: compared as records are written are the pairs that
    // share a name, a mailbox, a phone or a handle, or two keys of any kind (one shared
    // address or birthday alone is left to `rapport dedupe`, which compares every block).
    let mut shared: HashMap<(CustomerId, CustomerId), (u32, u32, &Prepared, &Prepared)> =
        HashMap::new();
    for (p, keys) in &mine {
        for key in keys {
            let Some(under) = by_key.get(key.as_str()) else {
                continue;
            };
            if under.len() > MAX_LIVE_BLOCK {
                continue;
            }
            let strong = strong_key(key);
            for q in under {
                if q.id == p.id {
                    continue;
                }
                let entry = shared
                    .entry((p.id.min(q.id), p.id.max(q.id)))
                    .or_insert((0, 0, p, q));
                entry.0 += u32::from(strong);
                entry.1 += 1;
            }
        }
    }
    let mut found: Vec<Found> = Vec::new();
    for (strong, total, p, q) in shared.into_values() {
        // A key two new records share was counted from both sides.
        let needed = if own.contains(&p.id) && own.contains(&q.id) {
            4
        } else {
            2
        };
        if strong == 0 && total < needed {
            continue;
        }
        let comparison = compare(p, q);
        if comparison.score() >= MIN_STORED {
            found.push(Found::scored(
                p.id,
                q.id,
                comparison.score(),
                comparison.reasons,
            ));
        }
    }
    super::duplicate::store_found(db, workspace_id, found, now).await
}

/// A key that alone makes two records worth comparing as they are written: a name, a
/// mailbox, a phone, a handle (an address or a birthday is shared by many).
fn strong_key(key: &str) -> bool {
    ["n:", "e:", "p:", "h:"].iter().any(|s| key.starts_with(s))
}

/// A contact point a record gave that another customer already has (an import row's
/// e-mail address or phone, kept with its first owner: contact points are unique in a
/// workspace). The strongest sign of a duplicate there is, and one the blocking keys cannot
/// see, since the value was not stored on the claimer.
#[derive(Clone, Debug)]
pub struct Claim {
    pub claimer: CustomerId,
    pub owner: CustomerId,
    pub kind: ContactPointKind,
    /// As normalised.
    pub value: String,
}

/// Compares each claimer with the owner of the contact point it gave, as if it had
/// kept it, and stores the suggestions.
pub async fn check_claims(
    db: &impl ConnectionTrait,
    workspace_id: WorkspaceId,
    claims: &[Claim],
    now: DateTime<Utc>,
) -> Result<Vec<AutoMerge>> {
    if claims.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<CustomerId> = claims
        .iter()
        .flat_map(|c| [c.claimer, c.owner])
        .collect::<HashSet<_>>()
        .into_iter()
        .collect();
    let by_id: HashMap<CustomerId, Profile> = profiles(db, workspace_id, &ids)
        .await?
        .into_iter()
        .map(|p| (p.id, p))
        .collect();
    let mut found = Vec::new();
    for claim in claims {
        let (Some(claimer), Some(owner)) = (by_id.get(&claim.claimer), by_id.get(&claim.owner))
        else {
            continue;
        };
        if claim.claimer == claim.owner {
            continue;
        }
        let mut claimer = claimer.clone();
        match claim.kind {
            ContactPointKind::Email => claimer.emails.push(claim.value.clone()),
            ContactPointKind::Phone => claimer.phones.push(claim.value.clone()),
            _ => continue,
        }
        let comparison = compare(&Prepared::of(&claimer), &Prepared::of(owner));
        if comparison.score() >= MIN_STORED {
            found.push(Found::scored(
                claim.claimer,
                claim.owner,
                comparison.score(),
                comparison.reasons,
            ));
        }
    }
    super::duplicate::store_found(db, workspace_id, found, now).await
}

/// What `rapport dedupe` did.
#[derive(Clone, Debug, Default)]
pub struct DedupeReport {
    pub stats: PairStats,
    /// Pairs at or above [`MIN_STORED`].
    pub found: u64,
    /// Of those, the pairs not suggested before.
    pub new: u64,
    /// Pending suggestions whose score or reasons changed.
    pub updated: u64,
    /// New suggestions at or above the workspace's auto-merge threshold, merged (with
    /// `merge` only).
    pub merged: u64,
}

/// Progress of [`run`]: the phase, done, total.
pub type Progress<'a> = &'a mut dyn FnMut(&str, u64, u64);

/// `rapport dedupe`: rebuilds the blocking keys of every live customer of the workspace,
/// compares every pair that shares one and stores the suggestions; with `merge` (an
/// explicit choice: the fields are what people said of themselves) merges the new ones
/// at or above the workspace's threshold, when it has one. Reads the workspace in pages;
/// holds the prepared profiles in memory (a few hundred bytes a customer).
pub async fn run(
    db: &(impl sea_orm::TransactionTrait + ConnectionTrait),
    workspace_id: WorkspaceId,
    merge: bool,
    progress: Progress<'_>,
) -> Result<DedupeReport> {
    const PAGE: u64 = 2_000;
    let total = super::scoped::<customer::Entity>(workspace_id)
        .filter(customer::Column::MergedInto.is_null())
        .count(db)
        .await?;
    let mut prepared: Vec<Prepared> = Vec::with_capacity(total as usize);
    let mut after: Option<CustomerId> = None;
    loop {
        let mut page = super::scoped::<customer::Entity>(workspace_id)
            .filter(customer::Column::MergedInto.is_null())
            .order_by_asc(customer::Column::Id)
            .limit(PAGE);
        if let Some(after) = after {
            page = page.filter(customer::Column::Id.gt(after));
        }
        let txn = super::begin_write(db).await?;
        let rows = page.all(&txn).await?;
        let Some(last) = rows.last() else {
            txn.commit().await?;
            break;
        };
        after = Some(last.id);
        let rows = rows.into_iter().map(Profile::of_customer).collect();
        let these: Vec<Prepared> = with_contacts(&txn, workspace_id, rows)
            .await?
            .iter()
            .map(Prepared::of)
            .collect();
        store_keys(&txn, workspace_id, &these).await?;
        txn.commit().await?;
        prepared.extend(these);
        progress("keys", prepared.len() as u64, total);
    }
    // Keys of records merged away since they were written.
    let txn = super::begin_write(db).await?;
    customer_match_key::Entity::delete_many()
        .filter(of_workspace(txn.get_database_backend(), workspace_id))
        .filter(
            customer_match_key::Column::CustomerId.in_subquery(
                Query::select()
                    .column(customer::Column::Id)
                    .from(customer::Entity)
                    .and_where(customer::Column::WorkspaceId.eq(workspace_id))
                    .and_where(customer::Column::MergedInto.is_not_null())
                    .to_owned(),
            ),
        )
        .exec(&txn)
        .await?;
    txn.commit().await?;

    let (pairs, stats) = find_pairs(&mut prepared, &mut |done, total| {
        progress("compare", done, total)
    });
    let mut report = DedupeReport {
        found: pairs.len() as u64,
        stats,
        ..DedupeReport::default()
    };
    let found: Vec<Found> = pairs
        .into_iter()
        .map(|(x, y, comparison)| {
            Found::scored(
                prepared[x].id,
                prepared[y].id,
                comparison.score(),
                comparison.reasons,
            )
        })
        .collect();
    let total = found.len() as u64;
    let mut done = 0;
    for chunk in found.chunks(CHUNK) {
        let txn = super::begin_write(db).await?;
        let outcome =
            super::duplicate::store_found_counted(&txn, workspace_id, chunk.to_vec(), super::now())
                .await?;
        report.new += outcome.new;
        report.updated += outcome.updated;
        if merge && !outcome.above.is_empty() {
            report.merged += outcome.above.len() as u64;
            super::duplicate::merge_above_threshold(&txn, workspace_id, &outcome.above).await?;
        }
        txn.commit().await?;
        done += chunk.len() as u64;
        progress("store", done, total);
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn person(given: &str, family: &str) -> Profile {
        Profile {
            given_name: Some(given.into()),
            family_name: Some(family.into()),
            ..Profile::new(CustomerId::new(), format!("{given} {family}"))
        }
    }

    #[test]
    fn sounds_alike_are_written_alike() {
        for (x, y) in [
            ("catherine", "katherine"),
            ("stephen", "steven"),
            ("smith", "smyth"),
            ("philip", "filip"),
            ("thompson", "tomson"),
            ("meyer", "maier"),
            ("knight", "night"),
        ] {
            assert_eq!(sound(x), sound(y), "{x} / {y}");
        }
        assert_ne!(sound("smith"), sound("jones"));
    }

    #[test]
    fn typos_and_similarity() {
        assert!(one_typo("jonhson", "johnson"));
        assert!(one_typo("smith", "smth"));
        assert!(one_typo("1985-03-07", "1985-03-01"));
        assert!(!one_typo("smith", "jones"));
        assert!(jaro_winkler("martha", "marhta") > 0.95);
        assert!(jaro_winkler("dixon", "dicksonx") > 0.8);
        assert!(jaro_winkler("abc", "xyz") < 0.1);
    }

    #[test]
    fn e_mail_canonical_mailbox() {
        let e = email("ana.lopez+news@googlemail.com").unwrap();
        assert_eq!(e.canonical, "analopez@gmail.com");
        let e = email("ana.lopez+news@example.org").unwrap();
        assert_eq!(e.canonical, "ana.lopez@example.org");
        assert!(!informative_local("info"));
    }

    #[test]
    fn a_swapped_nicknamed_typo_still_meets_and_scores() {
        let mut a = person("Robert", "Johnson");
        a.birth_date = NaiveDate::from_ymd_opt(1980, 4, 11);
        let mut b = person("Jonhson", "Bob");
        b.birth_date = NaiveDate::from_ymd_opt(1980, 11, 4);
        let (pa, pb) = (Prepared::of(&a), Prepared::of(&b));
        let shared: Vec<String> = keys(&pa)
            .into_iter()
            .filter(|k| keys(&pb).contains(k))
            .collect();
        assert!(!shared.is_empty(), "{:?} / {:?}", keys(&pa), keys(&pb));
        let c = compare(&pa, &pb);
        assert!(c.score() >= 0.5, "{c:?}");
        let fields: Vec<&str> = c.reasons.iter().map(|r| r.field.as_str()).collect();
        assert!(
            fields.contains(&"birthDate") && fields.contains(&"givenName"),
            "{fields:?}"
        );
    }

    #[test]
    fn a_pair_may_meet_on_two_weak_keys_alone() {
        // Why every kind of key is stored: a mailbox's local part at another provider and
        // a birthday whose year has a typo are all these two share, and they are one
        // person by the default threshold.
        let mut a = Profile {
            given_name: Some("Ana".into()),
            ..Profile::new(CustomerId::new(), "Ana".into())
        };
        a.emails = vec!["sunflower77@gmail.com".into()];
        a.birth_date = NaiveDate::from_ymd_opt(1980, 4, 11);
        let mut b = person("Ana", "Lopez");
        b.emails = vec!["sunflower77@example.org".into()];
        b.birth_date = NaiveDate::from_ymd_opt(1981, 4, 11);
        let (pa, pb) = (Prepared::of(&a), Prepared::of(&b));
        let (ka, kb) = (keys(&pa), keys(&pb));
        let shared: Vec<&String> = ka.iter().filter(|k| kb.contains(k)).collect();
        assert_eq!(shared, ["bd:4-11:a", "el:sunflower77"]);
        assert!(shared.iter().all(|k| !strong_key(k)));
        assert!(compare(&pa, &pb).score() >= 0.5);
    }

    #[test]
    fn namesakes_and_relatives_stay_below_the_default() {
        let mut a = person("Maria", "Garcia");
        a.birth_date = NaiveDate::from_ymd_opt(1970, 1, 2);
        let mut b = person("Maria", "Garcia");
        b.birth_date = NaiveDate::from_ymd_opt(1991, 8, 30);
        assert!(compare(&Prepared::of(&a), &Prepared::of(&b)).score() < 0.5);
        // Spouses: one address, one landline.
        let mut c = person("Pedro", "Garcia");
        c.street = Some("12 Calle Mayor".into());
        c.postal_code = Some("28013".into());
        c.phones = vec!["+34911234567".into()];
        let mut d = c.clone();
        d.id = CustomerId::new();
        d.given_name = Some("Lucia".into());
        assert!(compare(&Prepared::of(&c), &Prepared::of(&d)).score() < 0.5);
    }
}
