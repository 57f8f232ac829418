//! The one text normalisation of Rapport, applied on every path into storage so SQLite and
//! PostgreSQL store the same thing (PostgreSQL refuses NUL in `text` and `\u0000` in
//! `jsonb`; SQLite stores both, so without this the two databases diverge).
//!
//! - [`normalize`]: Unicode NFC, NUL and every other control character except `\n`, `\r`
//!   and `\t` removed. For what platforms send (ingestion): the item is kept, stripped.
//! - [`check`]: for interactive input (GraphQL arguments): a control character is refused
//!   with `BAD_USER_INPUT` naming the field, rather than silently changed.
//! - [`normalize_json`] / [`check_json`]: the same for every string and every key of a JSON
//!   value, recursively (raw payloads, custom attributes, source settings).
//!
//! Text folding for search (`domain::enrich::fold`) is a different thing: it is what the
//! index compares, never what is stored.

use serde_json::Value;
use unicode_normalization::UnicodeNormalization;

use crate::error::{Error, Result};

/// Whether `c` is removed (ingestion) or refused (interactive input): the C0 and C1
/// control characters, NUL included, except tab, line feed and carriage return.
pub fn is_forbidden(c: char) -> bool {
    c.is_control() && !matches!(c, '\n' | '\r' | '\t')
}

/// NFC with forbidden control characters removed; not trimmed.
pub fn normalize(text: &str) -> String {
    if is_plain(text) {
        return text.to_owned();
    }
    normal_form(text)
}

/// [`normalize`] in place: a text that is already its normal form at a glance is left
/// as it is, not copied.
pub fn normalize_in_place(text: &mut String) {
    if !is_plain(text) {
        *text = normal_form(text);
    }
}

/// NFC with forbidden control characters removed, built anew.
fn normal_form(text: &str) -> String {
    text.chars().filter(|c| !is_forbidden(*c)).nfc().collect()
}

/// ASCII without a forbidden control character: its own normal form.
fn is_plain(text: &str) -> bool {
    text.is_ascii() && !text.chars().any(is_forbidden)
}

/// [`normalize`]d and trimmed.
pub fn clean(text: &str) -> String {
    normalize(text).trim().to_owned()
}

/// Refuses a control character (NUL included, tab and line breaks allowed) in interactive
/// input: `BAD_USER_INPUT` naming `field`.
pub fn check(field: &str, text: &str) -> Result<()> {
    match text.chars().find(|c| is_forbidden(*c)) {
        None => Ok(()),
        Some(c) => Err(Error::field(
            field,
            format!(
                "{field} contains the control character U+{:04X}; remove it",
                u32::from(c)
            ),
        )),
    }
}

/// A lookup or filter argument: no control characters and at most `max` characters.
/// Returns it trimmed and in NFC, the form stored values have.
pub fn check_lookup(field: &str, text: &str, max: usize) -> Result<String> {
    if text.len() > max * 4 || text.chars().count() > max {
        return Err(Error::field(
            field,
            format!("{field} is longer than {max} characters"),
        ));
    }
    check(field, text)?;
    Ok(clean(text))
}

/// Every string and every key of `value`, recursively, [`normalize`]d (not trimmed). Two
/// keys that become equal keep the last value, as a JSON parser would.
pub fn normalize_json(value: &Value) -> Value {
    let mut value = value.clone();
    normalize_json_in_place(&mut value);
    value
}

/// [`normalize_json`] in place: only the strings that change are written again, and an
/// object is rebuilt only when one of its keys may change.
pub fn normalize_json_in_place(value: &mut Value) {
    match value {
        Value::String(text) => normalize_in_place(text),
        Value::Array(items) => items.iter_mut().for_each(normalize_json_in_place),
        Value::Object(object) if object.keys().all(|key| is_plain(key)) => {
            object.values_mut().for_each(normalize_json_in_place)
        }
        Value::Object(object) => {
            *object = std::mem::take(object)
                .into_iter()
                .map(|(key, mut value)| {
                    normalize_json_in_place(&mut value);
                    (normalize(&key), value)
                })
                .collect()
        }
        _ => {}
    }
}

/// Refuses a control character in any string or key of `value` (interactive input),
/// naming the path (`customAttributes.plan.name`), then returns it normalised.
pub fn check_json(field: &str, value: &Value) -> Result<Value> {
    fn walk(path: &str, value: &Value) -> Result<()> {
        match value {
            Value::String(text) => check(path, text),
            Value::Array(items) => items
                .iter()
                .enumerate()
                .try_for_each(|(index, item)| walk(&format!("{path}[{index}]"), item)),
            Value::Object(object) => object.iter().try_for_each(|(key, value)| {
                // The key is named escaped, so the message itself carries no control character.
                let shown: String = key.escape_default().collect();
                let path = format!("{path}.{shown}");
                check(&path, key)?;
                walk(&path, value)
            }),
            _ => Ok(()),
        }
    }
    walk(field, value)?;
    Ok(normalize_json(value))
}

/// An inbound item as it is stored: every text, author field, id and raw JSON string
/// [`normalize`]d (the item is kept; what cannot be stored is removed).
pub fn normalize_item(item: &connectors::InboundItem) -> connectors::InboundItem {
    let mut item = item.clone();
    normalize_item_in_place(&mut item);
    item
}

/// [`normalize_item`] in place: what is already normal is not copied (a platform's
/// payload is most of an item, and mostly ASCII).
pub fn normalize_item_in_place(item: &mut connectors::InboundItem) {
    fn opt(text: &mut Option<String>) {
        if let Some(value) = text {
            normalize_in_place(value);
        }
    }
    fn one(text: &mut String) {
        normalize_in_place(text);
    }
    one(&mut item.external_id);
    one(&mut item.author.platform_id);
    for key in [&mut item.thread_key, &mut item.in_reply_to] {
        opt(key);
    }
    // Keys are unique-indexed: PostgreSQL refuses an index entry over ~2.7 KB, SQLite
    // takes anything. A longer key is replaced by its digest, the same on both databases
    // and on every replay, so it still deduplicates; it is taken after normalisation, so
    // an item and a reply naming it agree.
    for key in [&mut item.external_id, &mut item.author.platform_id] {
        *key = bounded_key(key);
    }
    for key in [&mut item.thread_key, &mut item.in_reply_to]
        .into_iter()
        .flatten()
    {
        *key = bounded_key(key);
    }
    // Microseconds, as both databases store them: the item's time is copied into the
    // conversation's and the customer's times, which each writer must store as the same
    // instant (PostgreSQL rounds nanoseconds written as text, sqlx truncates them bound).
    item.occurred_at = chrono::SubsecRound::trunc_subsecs(item.occurred_at, 6);
    one(&mut item.kind);
    one(&mut item.text);
    for text in [
        &mut item.subject,
        &mut item.html,
        &mut item.url,
        &mut item.language,
    ] {
        opt(text);
    }
    let author = &mut item.author;
    for text in [
        &mut author.handle,
        &mut author.display_name,
        &mut author.profile_url,
        &mut author.avatar_url,
        &mut author.email,
        &mut author.phone,
    ] {
        opt(text);
    }
    // An e-mail address is at most 254 characters (RFC 5321); a longer one is no address.
    if author.email.as_ref().is_some_and(|email| email.len() > 254) {
        author.email = None;
    }
    for (text, max) in [
        (&mut author.handle, 200),
        (&mut author.display_name, 200),
        (&mut author.phone, 64),
        (&mut author.profile_url, 2_048),
        (&mut author.avatar_url, 2_048),
    ] {
        if let Some(value) = text {
            truncate_chars(value, max);
        }
    }
    // Profile links are keys (indexed) and words in a reason: cleaned like any author text,
    // bounded in number and length.
    author.links.truncate(connectors::MAX_PROFILE_LINKS);
    for link in &mut author.links {
        one(&mut link.url);
        truncate_chars(&mut link.url, 2_048);
        opt(&mut link.label);
        if let Some(label) = &mut link.label {
            truncate_chars(label, 200);
        }
    }
    author.links.retain(|link| !link.url.is_empty());
    if let Some(url) = &mut item.url {
        truncate_chars(url, 2_048);
    }
    if let Some(subject) = &mut item.subject {
        truncate_chars(subject, 1_000);
    }
    normalize_json_in_place(&mut item.raw);
}

/// The longest key (external id, platform id, thread key) stored as it is, in bytes.
pub const MAX_KEY_BYTES: usize = 512;

/// `key` itself when it is short enough to index, else `sha256:` and its digest.
pub fn bounded_key(key: &str) -> String {
    if key.len() <= MAX_KEY_BYTES {
        key.to_owned()
    } else {
        use sha2::Digest;
        format!(
            "sha256:{}",
            hex::encode(sha2::Sha256::digest(key.as_bytes()))
        )
    }
}

/// Cuts `text` to at most `max` characters.
fn truncate_chars(text: &mut String, max: usize) {
    if let Some((cut, _)) = text.char_indices().nth(max) {
        text.truncate(cut);
    }
}

/// Limits on a JSON object of free-form attributes (`customAttributes`).
#[derive(Clone, Copy, Debug)]
pub struct JsonLimits {
    /// Serialized size in bytes.
    pub bytes: usize,
    /// Keys in all, at every level.
    pub keys: usize,
    /// Nesting depth: an object of scalars has depth 1.
    pub depth: usize,
    /// Characters of one key.
    pub key_chars: usize,
}

/// The limits of `customAttributes`.
pub const CUSTOM_ATTRIBUTES: JsonLimits = JsonLimits {
    bytes: 16 * 1024,
    keys: 200,
    depth: 5,
    key_chars: 100,
};

/// A source's configuration: URLs, names, keywords and secrets, nothing bulky.
pub const SOURCE_CONFIG: JsonLimits = JsonLimits {
    bytes: 8 * 1024,
    keys: 100,
    depth: 3,
    key_chars: 100,
};

/// Refuses a JSON value over `limits`, naming `field` and the limit.
pub fn check_json_size(field: &str, value: &Value, limits: JsonLimits) -> Result<()> {
    fn walk(
        field: &str,
        value: &Value,
        depth: usize,
        keys: &mut usize,
        limits: JsonLimits,
    ) -> Result<()> {
        let nested = match value {
            Value::Array(items) => items.iter().collect::<Vec<_>>(),
            Value::Object(object) => {
                if depth > limits.depth {
                    return Err(Error::field(
                        field,
                        format!("{field} is nested deeper than {} levels", limits.depth),
                    ));
                }
                *keys += object.len();
                if *keys > limits.keys {
                    return Err(Error::field(
                        field,
                        format!("{field} has more than {} keys", limits.keys),
                    ));
                }
                if let Some(key) = object.keys().find(|k| k.chars().count() > limits.key_chars) {
                    let shown: String = key.chars().take(20).collect();
                    return Err(Error::field(
                        field,
                        format!(
                            "{field} has a key longer than {} characters (`{}…`)",
                            limits.key_chars,
                            shown.escape_default()
                        ),
                    ));
                }
                object.values().collect()
            }
            _ => return Ok(()),
        };
        if depth > limits.depth {
            return Err(Error::field(
                field,
                format!("{field} is nested deeper than {} levels", limits.depth),
            ));
        }
        nested
            .into_iter()
            .try_for_each(|value| walk(field, value, depth + 1, keys, limits))
    }
    let bytes = serde_json::to_vec(value).map(|b| b.len()).unwrap_or(0);
    if bytes > limits.bytes {
        return Err(Error::field(
            field,
            format!("{field} is larger than {} bytes serialized", limits.bytes),
        ));
    }
    let mut keys = 0;
    walk(field, value, 1, &mut keys, limits)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn control_characters_are_removed_and_text_composed() {
        assert_eq!(normalize("a\u{0}b"), "ab");
        assert_eq!(normalize("cafe\u{301}\u{7}\u{9b}"), "café");
        assert_eq!(normalize("line\none\ttab\r\n"), "line\none\ttab\r\n");
        assert_eq!(clean("  a\u{0} "), "a");
        assert_eq!(normalize("ok"), "ok");
    }

    #[test]
    fn interactive_text_with_a_control_character_is_refused_naming_the_field() {
        let err = check("displayName", "a\u{0}b").unwrap_err();
        assert!(matches!(&err, Error::BadInput { field: Some(f), .. } if f == "displayName"));
        assert!(err.to_string().contains("U+0000"), "{err}");
        assert!(check("body", "two\nlines\tand tab").is_ok());
        assert!(check_lookup("q", &"x".repeat(11), 10).is_err());
        assert_eq!(check_lookup("q", " cafe\u{301} ", 10).unwrap(), "café");
    }

    #[test]
    fn json_is_normalised_in_every_string_and_key() {
        let value = json!({ "a\u{0}": ["x\u{0}y", { "k\u{1}": "v\u{0}" }], "n": 1 });
        assert_eq!(
            normalize_json(&value),
            json!({ "a": ["xy", { "k": "v" }], "n": 1 })
        );
        // Under plain keys, and in place: a value is rewritten, an object under a key
        // that changes is rebuilt, and keys that become equal keep the last value.
        let mut value = json!({
            "plain": { "v": "cafe\u{301}\u{0}", "w": ["ok", 2] },
            "caf\u{e9}": { "k\u{0}": 1, "k": 2 },
        });
        normalize_json_in_place(&mut value);
        // As text: a map's equality ignores the order of its keys, which is kept.
        assert_eq!(
            value.to_string(),
            "{\"plain\":{\"v\":\"caf\u{e9}\",\"w\":[\"ok\",2]},\"caf\u{e9}\":{\"k\":2}}"
        );
        let err =
            check_json("customAttributes", &json!({ "plan": { "na\u{0}me": 1 } })).unwrap_err();
        assert!(
            matches!(&err, Error::BadInput { field: Some(f), .. } if f.starts_with("customAttributes.plan.na")),
            "{err:?}"
        );
        assert!(check_json("c", &json!({ "v": ["ok", "no\u{0}"] })).is_err());
    }

    #[test]
    fn json_size_limits_bytes_keys_depth_and_key_length() {
        let limits = CUSTOM_ATTRIBUTES;
        assert!(check_json_size("c", &json!({ "a": { "b": { "c": 1 } } }), limits).is_ok());
        let big = json!({ "a": "x".repeat(20_000) });
        assert!(check_json_size("c", &big, limits).is_err());
        let many: serde_json::Map<String, Value> =
            (0..201).map(|i| (format!("k{i}"), json!(1))).collect();
        assert!(check_json_size("c", &Value::Object(many), limits).is_err());
        let deep = json!({ "1": { "2": { "3": { "4": { "5": { "6": 1 } } } } } });
        assert!(check_json_size("c", &deep, limits).is_err());
        let deep_arrays = json!({ "1": [[[[[[1]]]]]] });
        assert!(check_json_size("c", &deep_arrays, limits).is_err());
        let long_key = json!({ "k".repeat(101): 1 });
        assert!(check_json_size("c", &long_key, limits).is_err());
    }
}
