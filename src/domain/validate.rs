//! The rules of a customer's fields, one place for every write path: GraphQL (a bad value
//! is `BAD_USER_INPUT` naming the field), the bulk import and ingestion (the record is
//! kept, the bad value dropped and reported: [`ingested_point`] counts and traces it).
//!
//! - e-mail: a local part and a domain; the domain's IDN labels in punycode
//!   (`idna`, UTS 46) and lower case, so `Ana@Bücher.DE` and `ana@xn--bcher-kva.de` are one
//!   address;
//! - phone: E.164 through `phonenumber` (Google's metadata): a number must be a valid
//!   number of its country; one without a country code is read in the workspace's default
//!   region when it has one (`WorkspaceSettings::default_phone_region`), refused otherwise;
//! - URL: http(s) with a host that has a dot; the host in punycode;
//! - postal address: lines without line breaks, a postal code of letters, digits, spaces and
//!   dashes (checked against the country's pattern where the table below has one), the
//!   country as ISO 3166-1 alpha-2 (alpha-3 codes and common names are accepted);
//! - names: NFC, trimmed, no control characters or line breaks, at least one letter or
//!   digit, at most 200 characters;
//! - birth date: a real calendar date, in the past, not before 1900.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

use chrono::NaiveDate;
use unicode_normalization::UnicodeNormalization;

use super::ContactPointKind;
use crate::error::{Error, Result};

/// The longest name (display, given, family), in characters.
pub const MAX_NAME_CHARS: usize = 200;
/// The longest address line (street, street2), in characters.
pub const MAX_STREET_CHARS: usize = 200;
/// The longest locality or region, in characters.
pub const MAX_PLACE_CHARS: usize = 100;
/// The longest postal code, in characters.
pub const MAX_POSTAL_CODE_CHARS: usize = 16;
/// The longest e-mail address (RFC 5321's path limit less the brackets).
pub const MAX_EMAIL_CHARS: usize = 254;
/// The earliest birth date taken.
pub const EARLIEST_BIRTH_YEAR: i32 = 1900;

/// The message of a `BAD_USER_INPUT` error (what an import reports for a line).
pub fn message(err: &Error) -> String {
    match err {
        Error::BadInput { message, .. } => message.clone(),
        other => other.to_string(),
    }
}

/// A name: NFC, trimmed, blank is `None`; control characters, line breaks, a name without
/// a letter or digit, or more than 200 characters are refused naming `field`.
pub fn name(field: &str, value: Option<String>) -> Result<Option<String>> {
    let Some(name) = super::clean_optional(field, value, MAX_NAME_CHARS)? else {
        return Ok(None);
    };
    if name.contains(['\n', '\r', '\t']) {
        return Err(Error::field(
            field,
            format!("{field} must be on one line (no line breaks or tabs)"),
        ));
    }
    if !name.chars().any(char::is_alphanumeric) {
        return Err(Error::field(
            field,
            format!("{field} `{name}` has no letter or digit"),
        ));
    }
    Ok(Some(name))
}

/// A required name (see [`name`]).
pub fn required_name(field: &str, value: &str) -> Result<String> {
    name(field, Some(value.to_owned()))?
        .ok_or_else(|| Error::field(field, format!("{field} must not be empty")))
}

/// The normalised form of an e-mail address (already trimmed and NFC): the local part
/// lower-cased, the domain in lower-case punycode. `Err` carries the hint.
pub fn email(value: &str) -> std::result::Result<String, &'static str> {
    if value.chars().count() > MAX_EMAIL_CHARS {
        return Err("it is longer than 254 characters");
    }
    let (local, domain) = value.rsplit_once('@').ok_or("it has no @")?;
    if local.is_empty() || local.chars().count() > 64 {
        return Err("the part before the @ must have 1 to 64 characters");
    }
    let local_ok = !local.starts_with('.')
        && !local.ends_with('.')
        && !local.contains("..")
        && local.chars().all(|c| {
            !c.is_whitespace()
                && !c.is_control()
                && (!c.is_ascii()
                    || c.is_ascii_alphanumeric()
                    || "!#$%&'*+-/=?^_`{|}~.".contains(c))
        });
    if !local_ok {
        return Err("expected name@example.com");
    }
    let domain = host(domain).ok_or("expected name@example.com")?;
    Ok(format!("{}@{domain}", local.to_lowercase()))
}

/// A host name in lower-case punycode, with at least two labels, each of 1 to 63 letters,
/// digits or inner dashes, and a top-level label that is not all digits.
fn host(domain: &str) -> Option<String> {
    let domain = domain.strip_suffix('.').unwrap_or(domain);
    if domain.is_empty() || domain.chars().any(|c| c.is_whitespace() || c == '@') {
        return None;
    }
    let ascii = idna::domain_to_ascii(domain).ok()?.to_ascii_lowercase();
    let labels: Vec<&str> = ascii.split('.').collect();
    let ok = ascii.len() <= 253
        && labels.len() >= 2
        && labels.iter().all(|label| {
            (1..=63).contains(&label.len())
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        })
        && !labels[labels.len() - 1].chars().all(|c| c.is_ascii_digit());
    ok.then_some(ascii)
}

/// A phone number in E.164 (`+` and digits), valid for its country. `00` stands for `+`.
/// A number without country code is read in `region` (ISO 3166-1 alpha-2) when given.
pub fn phone(value: &str, region: Option<&str>) -> Option<String> {
    let compact: String = value
        .chars()
        .filter(|c| !matches!(c, ' ' | '.' | '-' | '(' | ')' | '/'))
        .collect();
    // Digits after an optional `+` only: the parser is handed nothing else (a webhook's
    // phone of NUL characters panicked inside it and dropped the delivery's connection).
    let digits = compact.strip_prefix('+').unwrap_or(&compact);
    if digits.is_empty() || compact.len() > 40 || !digits.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    let international = match compact.strip_prefix("00") {
        Some(rest) => format!("+{rest}"),
        None => compact,
    };
    let region = if international.starts_with('+') {
        None
    } else {
        Some(phone_region(region?)?)
    };
    let number = phonenumber::parse(region, &international).ok()?;
    if !phonenumber::is_valid(&number) {
        return None;
    }
    Some(number.format().mode(phonenumber::Mode::E164).to_string())
}

fn phone_region(code: &str) -> Option<phonenumber::country::Id> {
    code.to_ascii_uppercase().parse().ok()
}

/// A workspace's default phone region: an ISO 3166-1 country (code or name) that has
/// phone numbers; returned as its alpha-2 code.
pub fn default_phone_region(field: &str, value: &str) -> Result<String> {
    let code = country(field, value)?;
    if phone_region(&code).is_none() {
        return Err(Error::field(
            field,
            format!("{field}: {code} has no phone numbering plan"),
        ));
    }
    Ok(code)
}

/// A web address as `https://host/path` (lower case, no trailing slash, host in
/// punycode); `http://` is read as `https://`, a missing scheme too. `None` when it is not one.
pub fn url(value: &str) -> Option<String> {
    let lower = value.to_lowercase();
    let rest = lower
        .strip_prefix("https://")
        .or_else(|| lower.strip_prefix("http://"))
        .unwrap_or(&lower);
    let rest = rest.trim_end_matches('/');
    if rest.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return None;
    }
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(end);
    if authority.contains('@') {
        return None;
    }
    let (name, port) = match authority.rsplit_once(':') {
        Some((name, port)) if !port.is_empty() && port.chars().all(|c| c.is_ascii_digit()) => {
            (name, Some(port))
        }
        Some(_) => return None,
        None => (authority, None),
    };
    let name = host(name)?;
    Some(match port {
        Some(port) => format!("https://{name}:{port}{path}"),
        None => format!("https://{name}{path}"),
    })
}

/// Folds a country name for lookup: lower case, accents and punctuation removed.
fn fold(text: &str) -> String {
    text.nfd()
        .filter(|c| c.is_alphanumeric())
        .flat_map(char::to_lowercase)
        .filter(char::is_ascii_alphanumeric)
        .collect()
}

/// Every spelling the table knows → alpha-2: the codes, the alpha-3 codes and names.
fn countries() -> &'static HashMap<String, &'static str> {
    static TABLE: OnceLock<HashMap<String, &'static str>> = OnceLock::new();
    TABLE.get_or_init(|| {
        let mut table = HashMap::new();
        for line in include_str!("countries.txt").lines() {
            let mut parts = line.splitn(3, ' ');
            let (Some(alpha2), Some(alpha3), Some(names)) =
                (parts.next(), parts.next(), parts.next())
            else {
                continue;
            };
            table.insert(fold(alpha2), alpha2);
            table.insert(fold(alpha3), alpha2);
            for name in names.split('|') {
                table.insert(fold(name), alpha2);
            }
        }
        table
    })
}

/// A country as its ISO 3166-1 alpha-2 code (upper case), from the code itself, the
/// alpha-3 code or a common English or local name, case and accents ignored.
pub fn country(field: &str, value: &str) -> Result<String> {
    let folded = fold(value);
    countries()
        .get(&folded)
        .map(|code| (*code).to_owned())
        .ok_or_else(|| {
            Error::field(
                field,
                format!(
                    "{field} `{}` is not a country: give an ISO 3166-1 code such as ES or ESP, or its name",
                    value.trim()
                ),
            )
        })
}

/// Postal code patterns of the countries where a wrong one is common and the rule is
/// simple (digits; letters where noted). Others only get the general check.
/// A postal code format: its shape in words, and the check.
type PostalPattern = (&'static str, fn(&str) -> bool);

fn postal_pattern(country: &str) -> Option<PostalPattern> {
    fn digits(text: &str, n: usize) -> bool {
        text.len() == n && text.chars().all(|c| c.is_ascii_digit())
    }
    let pattern: PostalPattern = match country {
        "DE" | "FR" | "ES" | "IT" | "FI" | "EE" | "HR" | "MX" => ("5 digits", |t| digits(t, 5)),
        "AT" | "BE" | "CH" | "DK" | "NO" | "AU" | "NZ" | "HU" | "LU" | "SI" => {
            ("4 digits", |t| digits(t, 4))
        }
        "US" => ("5 digits or 5+4 digits (12345-6789)", |t| {
            digits(t, 5)
                || (t.len() == 10 && digits(&t[..5], 5) && &t[5..6] == "-" && digits(&t[6..], 4))
        }),
        "SE" => ("5 digits (123 45)", |t| digits(&t.replace(' ', ""), 5)),
        "PT" => ("1234-567", |t| {
            t.len() == 8 && digits(&t[..4], 4) && &t[4..5] == "-" && digits(&t[5..], 3)
        }),
        "NL" => ("4 digits and 2 letters (1234 AB)", |t| {
            let t = t.replace(' ', "");
            t.len() == 6 && digits(&t[..4], 4) && t[4..].chars().all(|c| c.is_ascii_alphabetic())
        }),
        "PL" => ("12-345", |t| {
            t.len() == 6 && digits(&t[..2], 2) && &t[2..3] == "-" && digits(&t[3..], 3)
        }),
        "CA" => ("A1A 1A1", |t| {
            let t: Vec<char> = t.replace(' ', "").chars().collect();
            t.len() == 6
                && t.iter().enumerate().all(|(i, c)| {
                    if i % 2 == 0 {
                        c.is_ascii_alphabetic()
                    } else {
                        c.is_ascii_digit()
                    }
                })
        }),
        "GB" => ("an outward and inward code (SW1A 1AA)", |t| {
            let (outward, inward) = t.rsplit_once(' ').unwrap_or((t, ""));
            let inward: Vec<char> = inward.chars().collect();
            (2..=4).contains(&outward.len())
                && outward.starts_with(|c: char| c.is_ascii_alphabetic())
                && outward.chars().all(|c| c.is_ascii_alphanumeric())
                && inward.len() == 3
                && inward[0].is_ascii_digit()
                && inward[1..].iter().all(char::is_ascii_alphabetic)
        }),
        _ => return None,
    };
    Some(pattern)
}

/// A postal code: letters, digits, spaces and dashes, at most 16 characters, upper case,
/// spaces folded; checked against `country`'s pattern where known.
pub fn postal_code(field: &str, value: &str, country: Option<&str>) -> Result<String> {
    let code = value
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_uppercase();
    let ok = !code.is_empty()
        && code.chars().count() <= MAX_POSTAL_CODE_CHARS
        && code
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == ' ' || c == '-');
    if !ok {
        return Err(Error::field(
            field,
            format!("{field} `{}` is not a postal code (letters, digits, spaces and dashes, at most 16)", value.trim()),
        ));
    }
    if let Some((shape, matches)) = country.and_then(postal_pattern) {
        if !matches(&code) {
            return Err(Error::field(
                field,
                format!(
                    "{field} `{code}` is not a postal code of {}: expected {shape}",
                    country.unwrap_or_default()
                ),
            ));
        }
    }
    Ok(code)
}

/// An address line, locality or region: cleaned, white space folded, one line, at most
/// `max` characters; blank is `None`.
pub fn address_line(field: &str, value: Option<String>, max: usize) -> Result<Option<String>> {
    let Some(line) = super::clean_optional(field, value, max)? else {
        return Ok(None);
    };
    Ok(Some(line.split_whitespace().collect::<Vec<_>>().join(" ")))
}

/// A birth date: in the past (before `today`), not before 1900.
pub fn birth_date(field: &str, date: NaiveDate, today: NaiveDate) -> Result<NaiveDate> {
    let earliest = NaiveDate::from_ymd_opt(EARLIEST_BIRTH_YEAR, 1, 1).unwrap_or(NaiveDate::MIN);
    if date < earliest {
        return Err(Error::field(
            field,
            format!("{field} {date} is before {EARLIEST_BIRTH_YEAR}"),
        ));
    }
    if date >= today {
        return Err(Error::field(
            field,
            format!("{field} {date} is not in the past"),
        ));
    }
    Ok(date)
}

/// A birth date written `YYYY-MM-DD` (the form imports carry), then [`birth_date`].
pub fn birth_date_text(field: &str, text: &str, today: NaiveDate) -> Result<NaiveDate> {
    let date = NaiveDate::parse_from_str(text.trim(), "%Y-%m-%d").map_err(|_| {
        Error::field(
            field,
            format!(
                "{field} `{}` is not a date: expected YYYY-MM-DD",
                text.trim()
            ),
        )
    })?;
    birth_date(field, date, today)
}

/// A postal address in parts, each optional.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PostalAddress {
    pub street: Option<String>,
    pub street2: Option<String>,
    pub locality: Option<String>,
    pub region: Option<String>,
    pub postal_code: Option<String>,
    pub country: Option<String>,
}

impl PostalAddress {
    /// Every part checked and normalised; `prefix` names the fields (`postalAddress`).
    pub fn checked(self, prefix: &str) -> Result<PostalAddress> {
        let field = |name: &str| {
            if prefix.is_empty() {
                name.to_owned()
            } else {
                format!("{prefix}.{name}")
            }
        };
        let country = super::clean_optional(&field("country"), self.country, 100)?
            .map(|country| self::country(&field("country"), &country))
            .transpose()?;
        let postal_code = super::clean_optional(&field("postalCode"), self.postal_code, 100)?
            .map(|code| postal_code(&field("postalCode"), &code, country.as_deref()))
            .transpose()?;
        Ok(PostalAddress {
            street: address_line(&field("street"), self.street, MAX_STREET_CHARS)?,
            street2: address_line(&field("street2"), self.street2, MAX_STREET_CHARS)?,
            locality: address_line(&field("locality"), self.locality, MAX_PLACE_CHARS)?,
            region: address_line(&field("region"), self.region, MAX_PLACE_CHARS)?,
            postal_code,
            country,
        })
    }

    /// The address of a customer row.
    pub fn of(model: &entity::customer::Model) -> PostalAddress {
        PostalAddress {
            street: model.street.clone(),
            street2: model.street2.clone(),
            locality: model.locality.clone(),
            region: model.region.clone(),
            postal_code: model.postal_code.clone(),
            country: model.country.clone(),
        }
    }

    pub fn is_empty(&self) -> bool {
        *self == PostalAddress::default()
    }
}

/// How many contact values ingestion dropped as invalid since the process started.
static DROPPED: AtomicU64 = AtomicU64::new(0);

/// The contact values ingestion dropped as invalid since the process started (the
/// `rapport_invalid_values_dropped_total` counter).
pub fn dropped_values() -> u64 {
    DROPPED.load(Ordering::Relaxed)
}

/// An e-mail or phone a platform sent about an author, as stored `(value, normalized)`;
/// an invalid one is dropped (the item is kept), traced and counted.
pub fn ingested_point(kind: ContactPointKind, value: &str) -> Option<(String, String)> {
    match super::contact_point::normalize(kind, value) {
        Ok(point) => Some(point),
        Err(err) => {
            DROPPED.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(
                kind = kind.as_str(),
                reason = %message(&err),
                "ingestion dropped an invalid contact value; the item is kept"
            );
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(y: i32, m: u32, d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, d).unwrap()
    }

    #[test]
    fn a_phone_of_anything_but_digits_is_refused_without_reaching_the_parser() {
        for value in [
            "\u{0}".repeat(36),
            "+\u{0}44".into(),
            "+".into(),
            "12a45".into(),
        ] {
            assert_eq!(phone(&value, Some("GB")), None, "{value:?}");
        }
        assert_eq!(
            phone("+44 7911 123456", None).as_deref(),
            Some("+447911123456")
        );
    }

    #[test]
    fn emails() {
        assert_eq!(
            email("Ana.Lopez@Example.COM").unwrap(),
            "ana.lopez@example.com"
        );
        assert_eq!(email("ana@Bücher.DE").unwrap(), "ana@xn--bcher-kva.de");
        assert_eq!(
            email("ana+news@sub.example.co.uk").unwrap(),
            "ana+news@sub.example.co.uk"
        );
        for bad in [
            "ana",
            "ana@localhost",
            "@example.com",
            "ana@@example.com",
            "ana@exa mple.com",
            ".ana@example.com",
            "an..a@example.com",
            "ana@example.123",
            "ana@-x.com",
            "a\"b@example.com",
        ] {
            assert!(email(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn phones() {
        assert_eq!(phone("+34 600 123 456", None).unwrap(), "+34600123456");
        assert_eq!(phone("0034 600 123 456", None).unwrap(), "+34600123456");
        assert_eq!(phone("600 123 456", Some("ES")).unwrap(), "+34600123456");
        assert_eq!(phone("(202) 555-0143", Some("us")).unwrap(), "+12025550143");
        assert_eq!(phone("030 1234567", Some("DE")).unwrap(), "+49301234567");
        assert_eq!(
            phone("600 123 456", None),
            None,
            "no country code, no region"
        );
        assert_eq!(phone("+34 abc", None), None);
        assert_eq!(phone("+34 100", None), None, "too short for Spain");
        assert_eq!(
            phone("+999 123 456 789", None),
            None,
            "no such country code"
        );
    }

    #[test]
    fn urls() {
        assert_eq!(
            url("Example.com/About/").unwrap(),
            "https://example.com/about"
        );
        assert_eq!(url("http://bücher.de").unwrap(), "https://xn--bcher-kva.de");
        assert_eq!(
            url("https://example.com:8443/x").unwrap(),
            "https://example.com:8443/x"
        );
        for bad in [
            "not a site",
            "https://localhost",
            "https://user@example.com",
            "https://ex ample.com",
            "ftp//x",
        ] {
            assert_eq!(url(bad), None, "{bad}");
        }
    }

    #[test]
    fn countries_and_postal_codes() {
        for (given, code) in [
            ("es", "ES"),
            ("ESP", "ES"),
            ("Spain", "ES"),
            ("España", "ES"),
            ("espana", "ES"),
            ("United States of America", "US"),
            ("U.S.A.", "US"),
            ("UK", "GB"),
            ("côte d’ivoire", "CI"),
            ("Deutschland", "DE"),
        ] {
            assert_eq!(country("country", given).unwrap(), code, "{given}");
        }
        assert!(
            countries()
                .values()
                .collect::<std::collections::HashSet<_>>()
                .len()
                == 249
        );
        for bad in ["Atlantis", "XX", "", "E"] {
            assert!(country("country", bad).is_err(), "{bad}");
        }
        assert_eq!(
            postal_code("p", " sw1a  1aa ", Some("GB")).unwrap(),
            "SW1A 1AA"
        );
        assert_eq!(postal_code("p", "28013", Some("ES")).unwrap(), "28013");
        assert_eq!(
            postal_code("p", "12345-6789", Some("US")).unwrap(),
            "12345-6789"
        );
        assert_eq!(postal_code("p", "1234 ab", Some("NL")).unwrap(), "1234 AB");
        assert_eq!(postal_code("p", "K1A 0B1", Some("CA")).unwrap(), "K1A 0B1");
        assert_eq!(postal_code("p", "ZZ-99", Some("AR")).unwrap(), "ZZ-99");
        for (bad, country) in [
            ("2801", Some("ES")),
            ("28013", Some("NL")),
            ("12#45", None),
            ("12345678901234567", None),
        ] {
            assert!(postal_code("p", bad, country).is_err(), "{bad}");
        }
    }

    #[test]
    fn names_and_dates() {
        assert_eq!(
            name("givenName", Some("  Lucía ".into())).unwrap().unwrap(),
            "Lucía"
        );
        assert_eq!(
            name("givenName", Some("Luci\u{301}a".into()))
                .unwrap()
                .unwrap(),
            "Lucía",
            "NFC"
        );
        assert_eq!(name("givenName", Some("   ".into())).unwrap(), None);
        for bad in ["a\u{0}b", "two\nlines", "!!!", &"x".repeat(201)] {
            assert!(name("givenName", Some(bad.to_owned())).is_err(), "{bad:?}");
        }
        let today = day(2026, 12, 5);
        assert_eq!(
            birth_date_text("b", "1990-02-28", today).unwrap(),
            day(1990, 2, 28)
        );
        for bad in [
            "1990-02-30",
            "1899-12-31",
            "2026-12-05",
            "2030-01-01",
            "28/02/1990",
            "1990-2-28x",
        ] {
            assert!(birth_date_text("b", bad, today).is_err(), "{bad}");
        }
    }

    #[test]
    fn addresses() {
        let address = PostalAddress {
            street: Some(" Calle  Mayor 1 ".into()),
            postal_code: Some("28013".into()),
            country: Some("Spain".into()),
            ..PostalAddress::default()
        }
        .checked("postalAddress")
        .unwrap();
        assert_eq!(address.street.as_deref(), Some("Calle Mayor 1"));
        assert_eq!(address.country.as_deref(), Some("ES"));
        let err = PostalAddress {
            postal_code: Some("2801".into()),
            country: Some("ES".into()),
            ..PostalAddress::default()
        }
        .checked("postalAddress")
        .unwrap_err();
        assert!(
            matches!(err, Error::BadInput { field: Some(ref f), .. } if f == "postalAddress.postalCode")
        );
    }
}
