//! Fuzzing the parsers on stable Rust with proptest: feed XML and JSON (RSS 0.9x/2.0,
//! RSS 1.0, Atom, JSON Feed), MIME messages, Mastodon JSON (through a real pull against a
//! scripted loopback server), webhook bodies and signature headers. Each target gets
//! documents generated from a small grammar and byte-level mutations of valid seeds.
//!
//! Properties: nothing panics, a failure is an error value, and what parses respects the
//! invariants the pipeline relies on (every item has an external id and an author id).
//!
//! Cases per property come from `RAPPORT_FUZZ_CASES` (default 64, so `cargo test` stays
//! fast); a long run: `RAPPORT_FUZZ_CASES=100000 cargo test --release -p connectors fuzz`.
//! proptest prints the shrunk failing input and keeps its seed in
//! `proptest-regressions/` (next to this file) so the case is replayed first next time.

use chrono::{DateTime, Utc};
use proptest::prelude::*;
use proptest::sample::{select, Index};
use proptest::test_runner::{Config, FileFailurePersistence};
use serde_json::{json, Value};

use crate::{ConnectorError, InboundItem};

fn config() -> Config {
    let cases = std::env::var("RAPPORT_FUZZ_CASES")
        .ok()
        .and_then(|cases| cases.trim().parse().ok())
        .unwrap_or(64);
    Config {
        failure_persistence: Some(Box::new(FileFailurePersistence::SourceParallel(
            "proptest-regressions",
        ))),
        ..Config::with_cases(cases)
    }
}

// ---------------------------------------------------------------------------------------
// Building blocks
// ---------------------------------------------------------------------------------------

/// Strings that have broken parsers before: empties, NUL, entities out of range, CDATA
/// ends, bidi overrides, odd dates, huge numbers, address spellings.
const NASTY: &[&str] = &[
    "",
    " ",
    "\u{0}",
    "\u{0}rapport:no-id",
    "\t\r\n",
    "&amp;",
    "&#0;",
    "&#x110000;",
    "&#99999999999999999999;",
    "&#xD800;",
    "&unknown;",
    "&",
    "<![CDATA[",
    "]]>",
    "<",
    ">",
    "<p>",
    "</div></p>",
    "<script>alert(1)</script>",
    "\"",
    "'",
    "é",
    "\u{202e}evil",
    "\u{feff}",
    "\u{fffd}",
    "😀",
    "a@b.example (Ann Example)",
    "(",
    ")",
    " (",
    "@",
    "mailto:",
    "http://",
    "https://example.com/a?b=c&d=e",
    "//example.com",
    "javascript:alert(1)",
    "1970-01-01T00:00:00Z",
    "2026-11-23T10:00:00+14:00",
    "9999-12-31T23:59:59Z",
    "+275760-09-13T00:00:00Z",
    "-000001-01-01T00:00:00Z",
    "Mon, 32 Foo 2026 25:61:61 +9999",
    "Sun, 23 Nov 2026 10:00:00 GMT",
    "0",
    "-1",
    "18446744073709551616",
    "-9223372036854775808",
    "1e999",
    "NaN",
    "=?utf-8?B?w6k=?=",
    "=?utf-8?Q?=C3=A9?=",
    "=?x?B?====?=",
    "<>",
    "<@>",
    "\\",
];

/// A short text: nasty pieces and plain words glued together.
fn text() -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop_oneof![
            3 => select(NASTY).prop_map(str::to_owned),
            3 => "[a-zA-Z0-9 .,@:/#-]{0,12}",
            1 => any::<String>(),
        ],
        0..4,
    )
    .prop_map(|parts| parts.concat())
}

/// Escapes text for XML, or leaves it raw (which may break the document: also a case).
fn xml(text: &str, escape: bool) -> String {
    if !escape {
        return text.to_owned();
    }
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// One byte-level change to a document.
#[derive(Clone, Debug)]
enum Mutation {
    Flip(Index, u8),
    Insert(Index, Vec<u8>),
    Delete(Index, usize),
    Duplicate(Index, usize),
    Truncate(Index),
    Splice(Index, &'static str),
}

const TOKENS: &[&str] = &[
    "<",
    ">",
    "</",
    "/>",
    "&",
    ";",
    "\"",
    "'",
    "=",
    "<![CDATA[",
    "]]>",
    "<!--",
    "-->",
    "<?xml version=\"1.0\" encoding=\"utf-16\"?>",
    "<!DOCTYPE x [<!ENTITY a \"&a;&a;\">]>",
    "&a;",
    "{",
    "}",
    "[",
    "]",
    ":",
    ",",
    "null",
    "\\u0000",
    "\\ud800",
    "1e400",
    "\r\n",
    "\r\n\r\n",
    "--",
    "\u{0}",
    "\u{ff}",
    "=?",
    "?=",
    "boundary=",
    "Content-Type: multipart/mixed; boundary=b\r\n",
];

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<Index>(), any::<u8>()).prop_map(|(at, byte)| Mutation::Flip(at, byte)),
        (any::<Index>(), prop::collection::vec(any::<u8>(), 1..8))
            .prop_map(|(at, bytes)| Mutation::Insert(at, bytes)),
        (any::<Index>(), 1usize..64).prop_map(|(at, len)| Mutation::Delete(at, len)),
        (any::<Index>(), 1usize..64).prop_map(|(at, len)| Mutation::Duplicate(at, len)),
        any::<Index>().prop_map(Mutation::Truncate),
        (any::<Index>(), select(TOKENS)).prop_map(|(at, token)| Mutation::Splice(at, token)),
    ]
}

fn mutate(seed: &[u8], mutations: &[Mutation]) -> Vec<u8> {
    let mut bytes = seed.to_vec();
    for mutation in mutations {
        let len = bytes.len();
        let at = |index: &Index| if len == 0 { 0 } else { index.index(len + 1) };
        match mutation {
            Mutation::Flip(index, byte) if len > 0 => {
                let i = index.index(len);
                bytes[i] ^= byte | 1;
            }
            Mutation::Flip(..) => {}
            Mutation::Insert(index, new) => {
                let i = at(index);
                bytes.splice(i..i, new.iter().copied());
            }
            Mutation::Delete(index, n) => {
                let i = at(index);
                let end = (i + n).min(len);
                bytes.drain(i..end);
            }
            Mutation::Duplicate(index, n) => {
                let i = at(index);
                let end = (i + n).min(len);
                let copy = bytes[i..end].to_vec();
                bytes.splice(end..end, copy);
            }
            Mutation::Truncate(index) => bytes.truncate(at(index)),
            Mutation::Splice(index, token) => {
                let i = at(index);
                bytes.splice(i..i, token.bytes());
            }
        }
    }
    bytes
}

/// What every item handed to the pipeline must satisfy.
fn check_item(item: &InboundItem) -> Result<(), TestCaseError> {
    prop_assert!(
        !item.external_id.trim().is_empty(),
        "an item without an external id: {item:?}"
    );
    prop_assert!(
        !item.author.platform_id.trim().is_empty(),
        "an item without an author id: {item:?}"
    );
    prop_assert!(!item.kind.is_empty());
    Ok(())
}

fn check_unique(items: &[InboundItem]) -> Result<(), TestCaseError> {
    let mut ids: Vec<&str> = items.iter().map(|i| i.external_id.as_str()).collect();
    ids.sort_unstable();
    let total = ids.len();
    ids.dedup();
    prop_assert_eq!(total, ids.len(), "one pull returned an item twice");
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Feeds
// ---------------------------------------------------------------------------------------

/// One element of a feed entry: its name, its value, whether the value is escaped.
type Field = (&'static str, String, bool);

fn fields(names: &'static [&'static str]) -> impl Strategy<Value = Vec<Field>> {
    prop::collection::vec((select(names), text(), prop::bool::weighted(0.9)), 0..8)
}

const RSS2_FIELDS: &[&str] = &[
    "title",
    "link",
    "description",
    "guid",
    "pubDate",
    "author",
    "dc:creator",
    "category",
    "content:encoded",
    "comments",
    "atom:link",
    "thr:in-reply-to",
    "enclosure",
    "dc:date",
];
const ATOM_FIELDS: &[&str] = &[
    "title",
    "id",
    "link",
    "updated",
    "published",
    "summary",
    "content",
    "author",
    "thr:in-reply-to",
    "category",
    "source",
];

/// An element as each format writes it; attribute-valued ones become attributes.
fn element((name, value, escape): &Field) -> String {
    let value = xml(value, *escape);
    let attribute = xml(&value, true);
    match *name {
        "atom:link" => format!("<atom:link rel=\"next\" href=\"{attribute}\"/>"),
        "thr:in-reply-to" => format!("<thr:in-reply-to ref=\"{attribute}\" href=\"{attribute}\"/>"),
        "enclosure" => {
            format!("<enclosure url=\"{attribute}\" length=\"{attribute}\" type=\"x\"/>")
        }
        "link" if value.len() % 2 == 1 => format!("<link href=\"{attribute}\" rel=\"alternate\"/>"),
        "category" if value.len() % 2 == 1 => format!("<category term=\"{attribute}\"/>"),
        "author" if value.len() % 3 == 1 => {
            format!("<author><name>{value}</name><email>{value}</email><uri>{value}</uri></author>")
        }
        "content" if value.len() % 2 == 1 => {
            format!("<content type=\"html\"><![CDATA[{value}]]></content>")
        }
        "source" => format!("<source><id>{value}</id><title>{value}</title></source>"),
        name => format!("<{name}>{value}</{name}>"),
    }
}

#[derive(Clone, Copy, Debug)]
enum XmlFormat {
    Rss2,
    Rss091,
    Rss1,
    Atom,
}

fn xml_feed(
    format: XmlFormat,
    head: &[Field],
    entries: &[(Vec<Field>, String)],
    prolog: bool,
) -> String {
    let head: String = head.iter().map(element).collect();
    let prolog = if prolog {
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
    } else {
        ""
    };
    match format {
        XmlFormat::Rss2 | XmlFormat::Rss091 => {
            let version = if matches!(format, XmlFormat::Rss2) {
                "2.0"
            } else {
                "0.91"
            };
            let items: String = entries
                .iter()
                .map(|(fields, _)| {
                    format!(
                        "<item>{}</item>",
                        fields.iter().map(element).collect::<String>()
                    )
                })
                .collect();
            format!("{prolog}<rss version=\"{version}\" xmlns:dc=\"http://purl.org/dc/elements/1.1/\" xmlns:content=\"http://purl.org/rss/1.0/modules/content/\" xmlns:atom=\"http://www.w3.org/2005/Atom\" xmlns:thr=\"http://purl.org/syndication/thread/1.0\"><channel>{head}{items}</channel></rss>")
        }
        XmlFormat::Rss1 => {
            let items: String = entries
                .iter()
                .map(|(fields, about)| {
                    format!(
                        "<item rdf:about=\"{}\">{}</item>",
                        xml(about, true),
                        fields.iter().map(element).collect::<String>()
                    )
                })
                .collect();
            format!("{prolog}<rdf:RDF xmlns:rdf=\"http://www.w3.org/1999/02/22-rdf-syntax-ns#\" xmlns=\"http://purl.org/rss/1.0/\" xmlns:dc=\"http://purl.org/dc/elements/1.1/\"><channel rdf:about=\"https://example.com/\">{head}</channel>{items}</rdf:RDF>")
        }
        XmlFormat::Atom => {
            let items: String = entries
                .iter()
                .map(|(fields, _)| {
                    format!(
                        "<entry>{}</entry>",
                        fields.iter().map(element).collect::<String>()
                    )
                })
                .collect();
            format!("{prolog}<feed xmlns=\"http://www.w3.org/2005/Atom\" xmlns:thr=\"http://purl.org/syndication/thread/1.0\">{head}{items}</feed>")
        }
    }
}

fn xml_document() -> impl Strategy<Value = String> {
    (
        select(vec![
            XmlFormat::Rss2,
            XmlFormat::Rss091,
            XmlFormat::Rss1,
            XmlFormat::Atom,
        ]),
        fields(ATOM_FIELDS),
        prop::collection::vec(
            (
                prop_oneof![fields(RSS2_FIELDS), fields(ATOM_FIELDS)],
                text(),
            ),
            0..5,
        ),
        any::<bool>(),
    )
        .prop_map(|(format, head, entries, prolog)| xml_feed(format, &head, &entries, prolog))
}

/// Any JSON value, nested a little.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>().prop_map(|n| json!(n)),
        Just(json!(u64::MAX)),
        text().prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 24, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((text(), inner), 0..6)
                .prop_map(|pairs| Value::Object(pairs.into_iter().collect())),
        ]
    })
}

/// A value that is usually of the documented type, sometimes of another or null.
fn typed(right: BoxedStrategy<Value>) -> BoxedStrategy<Value> {
    prop_oneof![6 => right, 1 => json_value()].boxed()
}

fn string_value() -> BoxedStrategy<Value> {
    text().prop_map(Value::String).boxed()
}

/// An object with some of `keys`, each with a value from its strategy.
fn object(keys: Vec<(&'static str, BoxedStrategy<Value>)>) -> BoxedStrategy<Value> {
    let pairs: Vec<BoxedStrategy<Option<(String, Value)>>> = keys
        .into_iter()
        .map(|(key, value)| {
            prop::option::weighted(0.8, value.prop_map(move |v| (key.to_owned(), v))).boxed()
        })
        .collect();
    pairs
        .prop_map(|pairs| Value::Object(pairs.into_iter().flatten().collect()))
        .boxed()
}

fn json_feed() -> impl Strategy<Value = Vec<u8>> {
    let author = object(vec![
        ("name", typed(string_value())),
        ("url", typed(string_value())),
        ("avatar", typed(string_value())),
    ]);
    let item = object(vec![
        (
            "id",
            typed(prop_oneof![string_value(), any::<i64>().prop_map(|n| json!(n)).boxed()].boxed()),
        ),
        ("url", typed(string_value())),
        ("title", typed(string_value())),
        ("content_html", typed(string_value())),
        ("content_text", typed(string_value())),
        ("summary", typed(string_value())),
        ("date_published", typed(string_value())),
        ("date_modified", typed(string_value())),
        ("language", typed(string_value())),
        (
            "authors",
            typed(
                prop::collection::vec(author.clone(), 0..3)
                    .prop_map(Value::Array)
                    .boxed(),
            ),
        ),
        ("author", typed(author.clone())),
        (
            "tags",
            typed(
                prop::collection::vec(string_value(), 0..3)
                    .prop_map(Value::Array)
                    .boxed(),
            ),
        ),
    ]);
    let version = prop_oneof![
        Just(json!("https://jsonfeed.org/version/1.1")),
        Just(json!("https://jsonfeed.org/version/1")),
        json_value(),
    ]
    .boxed();
    object(vec![
        ("version", version),
        ("title", typed(string_value())),
        ("home_page_url", typed(string_value())),
        ("next_url", typed(string_value())),
        ("language", typed(string_value())),
        (
            "authors",
            typed(
                prop::collection::vec(author, 0..3)
                    .prop_map(Value::Array)
                    .boxed(),
            ),
        ),
        (
            "items",
            typed(
                prop::collection::vec(item, 0..6)
                    .prop_map(Value::Array)
                    .boxed(),
            ),
        ),
    ])
    .prop_map(|feed| feed.to_string().into_bytes())
}

const FEED_SEEDS: &[&str] = &[
    r#"<?xml version="1.0" encoding="UTF-8"?>
<rss version="2.0" xmlns:dc="http://purl.org/dc/elements/1.1/"><channel><title>Northwind &amp; Co</title><link>https://blog.northwind.example/</link>
<item><title>Hello &lt;world&gt;</title><link>https://blog.northwind.example/1</link><guid isPermaLink="false">n-1</guid><pubDate>Sun, 23 Nov 2026 10:00:00 GMT</pubDate><author>ann@northwind.example (Ann Lee)</author><description><![CDATA[<p>First <b>post</b></p>]]></description></item>
<item><title>No guid</title><link>https://blog.northwind.example/2</link><dc:creator>Bob</dc:creator><description>Plain</description></item>
</channel></rss>"#,
    r#"<?xml version="1.0" encoding="utf-8"?>
<feed xmlns="http://www.w3.org/2005/Atom" xmlns:thr="http://purl.org/syndication/thread/1.0"><title>Forum</title><id>urn:forum</id><updated>2026-11-23T10:00:00Z</updated><link rel="next" href="https://forum.example/atom?page=2"/>
<entry><id>urn:forum:1</id><title type="html">A &amp;amp; B</title><updated>2026-11-23T10:00:00Z</updated><author><name>Maya</name><email>maya@example.com</email><uri>https://forum.example/u/maya</uri></author><content type="html">&lt;p&gt;Hi&lt;/p&gt;</content></entry>
<entry><id>urn:forum:2</id><title>Re</title><published>2026-11-23T11:00:00+01:00</published><thr:in-reply-to ref="urn:forum:1"/><summary>reply</summary></entry>
</feed>"#,
    r#"<?xml version="1.0"?>
<rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#" xmlns="http://purl.org/rss/1.0/"><channel rdf:about="https://rdf.example/"><title>RDF</title><link>https://rdf.example/</link></channel>
<item rdf:about="https://rdf.example/a"><title>A</title><link>https://rdf.example/a</link><description>one</description></item></rdf:RDF>"#,
    r#"{"version": "https://jsonfeed.org/version/1.1", "title": "JSON", "next_url": "https://json.example/2", "items": [{"id": "j1", "content_text": "one", "date_published": "2026-11-23T10:00:00Z", "authors": [{"name": "Bot", "url": "https://bot.example"}]}, {"id": 2, "content_html": "<p>two</p>"}]}"#,
];

fn check_feed(body: &[u8]) -> Result<(), TestCaseError> {
    match crate::feed::parse(body, "https://feed.example/feed.xml") {
        Ok(parsed) => {
            for item in &parsed.items {
                check_item(item)?;
            }
        }
        Err(ConnectorError::Payload(_)) => {}
        Err(other) => prop_assert!(
            false,
            "a parse failure that is not a payload error: {other:?}"
        ),
    }
    Ok(())
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn generated_xml_feeds_parse_or_fail_cleanly(doc in xml_document()) {
        check_feed(doc.as_bytes())?;
    }

    #[test]
    fn generated_json_feeds_parse_or_fail_cleanly(doc in json_feed()) {
        check_feed(&doc)?;
    }

    #[test]
    fn mutated_feeds_parse_or_fail_cleanly(
        seed in select(FEED_SEEDS),
        mutations in prop::collection::vec(mutation(), 1..6),
    ) {
        check_feed(&mutate(seed.as_bytes(), &mutations))?;
    }

    #[test]
    fn mutated_generated_feeds_parse_or_fail_cleanly(
        doc in prop_oneof![xml_document().prop_map(String::into_bytes), json_feed()],
        mutations in prop::collection::vec(mutation(), 1..4),
    ) {
        check_feed(&mutate(&doc, &mutations))?;
    }
}

// ---------------------------------------------------------------------------------------
// MIME messages
// ---------------------------------------------------------------------------------------

const OWN: &str = "support@acme.example";

const ADDRESSES: &[&str] = &[
    "Maya Example <maya@example.com>",
    "maya@example.com",
    "\"Example, Maya\" <MAYA@Example.COM>",
    "support@acme.example",
    "Acme Support <support@acme.example>",
    "=?utf-8?B?w6lsaXNl?= <elise@example.fr>",
    "<>",
    "undisclosed-recipients:;",
    "a@",
    "@b",
    "Group: a@b.example, c@d.example;",
    "",
];

const HEADERS: &[&str] = &[
    "From",
    "To",
    "Cc",
    "Subject",
    "Message-ID",
    "In-Reply-To",
    "References",
    "Date",
    "Content-Type",
    "Content-Transfer-Encoding",
    "MIME-Version",
    "Content-Disposition",
    "X-Whatever",
];

const CONTENT_TYPES: &[&str] = &[
    "text/plain; charset=utf-8",
    "text/plain; charset=iso-8859-1",
    "text/plain; charset=unknown-8bit",
    "text/html; charset=utf-8",
    "multipart/alternative; boundary=b1",
    "multipart/mixed; boundary=\"b1\"",
    "multipart/mixed",
    "application/octet-stream; name=\"a.bin\"",
    "message/rfc822",
    "image/png",
    "",
];

const ENCODINGS: &[&str] = &[
    "7bit",
    "8bit",
    "base64",
    "quoted-printable",
    "binary",
    "x-uue",
    "",
];

fn header_value(name: &'static str) -> BoxedStrategy<String> {
    match name {
        "From" | "To" | "Cc" => {
            prop_oneof![3 => select(ADDRESSES).prop_map(str::to_owned), 1 => text()].boxed()
        }
        "Content-Type" => {
            prop_oneof![3 => select(CONTENT_TYPES).prop_map(str::to_owned), 1 => text()].boxed()
        }
        "Content-Transfer-Encoding" => {
            prop_oneof![3 => select(ENCODINGS).prop_map(str::to_owned), 1 => text()].boxed()
        }
        "Message-ID" | "In-Reply-To" | "References" => prop_oneof![
            Just("<m1@example.com>".to_owned()),
            Just("<m1@example.com> <m2@example.com>".to_owned()),
            text().prop_map(|t| format!("<{t}>")),
            text(),
        ]
        .boxed(),
        _ => text().boxed(),
    }
}

fn header() -> impl Strategy<Value = String> {
    select(HEADERS).prop_flat_map(|name| {
        header_value(name).prop_map(move |value| format!("{name}: {value}\r\n"))
    })
}

fn body_text() -> impl Strategy<Value = String> {
    prop_oneof![
        text(),
        Just("SGVsbG8gd29ybGQ=".to_owned()),
        Just("=C3=A9t=C3=A9=\r\nsoft break".to_owned()),
        Just("<html><body><p>Hi &amp; bye</p></body></html>".to_owned()),
        Just("====\r\n!!!".to_owned()),
    ]
}

fn part() -> impl Strategy<Value = String> {
    let leaf = (prop::collection::vec(header(), 0..4), body_text())
        .prop_map(|(headers, body)| format!("{}\r\n{body}", headers.concat()));
    leaf.prop_recursive(2, 8, 4, |inner| {
        (prop::collection::vec(inner, 0..4), any::<bool>()).prop_map(|(parts, closed)| {
            let mut out =
                "Content-Type: multipart/mixed; boundary=b1\r\n\r\npreamble\r\n".to_owned();
            for part in parts {
                out.push_str("--b1\r\n");
                out.push_str(&part);
                out.push_str("\r\n");
            }
            if closed {
                out.push_str("--b1--\r\n");
            }
            out
        })
    })
}

fn message() -> impl Strategy<Value = Vec<u8>> {
    (
        select(ADDRESSES),
        prop::collection::vec(header(), 0..8),
        part(),
    )
        .prop_map(|(from, headers, part)| {
            format!("From: {from}\r\n{}{part}", headers.concat()).into_bytes()
        })
}

const MIME_SEEDS: &[&str] = &[
    "From: Maya Example <maya@example.com>\r\nTo: support@acme.example\r\nSubject: =?utf-8?Q?Caf=C3=A9?= order\r\nMessage-ID: <m1@example.com>\r\nDate: Sun, 23 Nov 2026 10:00:00 +0000\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nMy order never came.\r\n",
    "From: support@acme.example\r\nTo: Maya <maya@example.com>\r\nSubject: Re: order\r\nMessage-ID: <r1@acme.example>\r\nIn-Reply-To: <m1@example.com>\r\nReferences: <m0@example.com> <m1@example.com>\r\nMIME-Version: 1.0\r\nContent-Type: multipart/alternative; boundary=\"b1\"\r\n\r\n--b1\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\nOn it =E2=80=94 sorry!\r\n--b1\r\nContent-Type: text/html; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\nPHA+T24gaXQ8L3A+\r\n--b1--\r\n",
    "From: Bob <bob@example.org>\r\nTo: support@acme.example\r\nContent-Type: multipart/mixed; boundary=x\r\n\r\n--x\r\nContent-Type: text/plain\r\n\r\nsee attached\r\n--x\r\nContent-Type: application/pdf; name=\"a.pdf\"\r\nContent-Disposition: attachment; filename=\"a.pdf\"\r\nContent-Transfer-Encoding: base64\r\n\r\nJVBERi0xLjQK\r\n--x--\r\n",
];

fn check_message(bytes: &[u8], truncated: bool) -> Result<(), TestCaseError> {
    let place = crate::email::Place {
        uidvalidity: 7,
        uid: 42,
        size: bytes.len() as u32,
        truncated,
    };
    if let Some(item) = crate::email::parse_message(bytes, OWN, place) {
        check_item(&item)?;
        prop_assert!(item.author.email.as_deref().is_some_and(|e| !e.is_empty()));
        prop_assert!(!item.text.is_empty(), "an e-mail item without text");
        prop_assert!(item.occurred_at <= Utc::now());
    }
    Ok(())
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn generated_mime_messages_parse_or_are_skipped(doc in message(), truncated in any::<bool>()) {
        check_message(&doc, truncated)?;
    }

    #[test]
    fn mutated_mime_messages_parse_or_are_skipped(
        seed in prop_oneof![select(MIME_SEEDS).prop_map(|s| s.as_bytes().to_vec()), message()],
        mutations in prop::collection::vec(mutation(), 1..6),
    ) {
        check_message(&mutate(&seed, &mutations), false)?;
    }
}

// ---------------------------------------------------------------------------------------
// Mastodon JSON, through a real pull against a loopback server
// ---------------------------------------------------------------------------------------

fn account() -> BoxedStrategy<Value> {
    object(vec![
        (
            "id",
            typed(
                prop_oneof![
                    Just(json!("109000000000000001")),
                    Just(json!("2")),
                    string_value()
                ]
                .boxed(),
            ),
        ),
        (
            "acct",
            typed(
                prop_oneof![
                    Just(json!("maya")),
                    Just(json!("maya@social.example")),
                    string_value()
                ]
                .boxed(),
            ),
        ),
        ("username", typed(string_value())),
        ("display_name", typed(string_value())),
        (
            "uri",
            typed(
                prop_oneof![
                    Just(json!("https://social.example/users/maya")),
                    string_value()
                ]
                .boxed(),
            ),
        ),
        (
            "url",
            typed(prop_oneof![Just(json!("https://social.example/@maya")), string_value()].boxed()),
        ),
        ("avatar", typed(string_value())),
    ])
}

fn status() -> BoxedStrategy<Value> {
    let id = prop_oneof![
        (0u64..u64::MAX).prop_map(|n| json!(n.to_string())),
        Just(json!("")),
        Just(json!(" ")),
        string_value(),
    ]
    .boxed();
    let created = prop_oneof![
        Just(json!("2026-11-23T10:00:00.000Z")),
        Just(json!("+275760-09-13T00:00:00Z")),
        string_value(),
    ]
    .boxed();
    object(vec![
        ("id", typed(id)),
        ("created_at", typed(created)),
        ("account", typed(account())),
        (
            "content",
            typed(
                prop_oneof![
                    Just(json!("<p>hello <a href=\"x\">@maya</a></p>")),
                    string_value()
                ]
                .boxed(),
            ),
        ),
        ("spoiler_text", typed(string_value())),
        ("url", typed(string_value())),
        ("uri", typed(string_value())),
        ("language", typed(string_value())),
        ("in_reply_to_id", typed(string_value())),
        ("visibility", typed(string_value())),
    ])
}

fn notification() -> BoxedStrategy<Value> {
    object(vec![
        ("id", typed(string_value())),
        (
            "type",
            typed(prop_oneof![3 => Just(json!("mention")), 1 => string_value()].boxed()),
        ),
        ("status", typed(status())),
    ])
}

/// One scripted answer: status, extra headers, body.
#[derive(Clone, Debug)]
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

fn answer(body: BoxedStrategy<Value>) -> impl Strategy<Value = Answer> {
    let header = prop_oneof![
        text().prop_map(|v| ("link".to_owned(), v)),
        Just(("link".to_owned(), "<http://127.0.0.1:1/api/v1/notifications?min_id=99999999999999999999999>; rel=\"prev\"".to_owned())),
        text().prop_map(|v| ("x-ratelimit-remaining".to_owned(), v)),
        select(vec!["0", "1", "-1", "99999999999999999999"]).prop_map(|v| ("x-ratelimit-remaining".to_owned(), v.to_owned())),
        text().prop_map(|v| ("x-ratelimit-reset".to_owned(), v)),
        text().prop_map(|v| ("retry-after".to_owned(), v)),
        select(vec!["0", "-5", "18446744073709551616", "Sun, 23 Nov 2026 10:00:00 GMT"]).prop_map(|v| ("retry-after".to_owned(), v.to_owned())),
    ];
    (
        prop_oneof![12 => Just(200u16), 1 => Just(429), 1 => Just(401), 1 => Just(500), 1 => Just(404)],
        prop::collection::vec(header, 0..3),
        prop_oneof![
            6 => body.prop_map(|v| v.to_string().into_bytes()),
            1 => json_value().prop_map(|v| v.to_string().into_bytes()),
            1 => prop::collection::vec(any::<u8>(), 0..64),
        ],
    )
        .prop_map(|(status, headers, body)| Answer { status, headers, body })
}

/// A tiny HTTP/1.1 server on loopback answering each path with its scripted answer.
async fn serve_answers(
    answers: std::collections::HashMap<&'static str, Answer>,
) -> (String, tokio::task::JoinHandle<()>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let task = tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let mut request = Vec::new();
            let mut buf = [0u8; 4096];
            while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                match socket.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => request.extend_from_slice(&buf[..n]),
                }
            }
            let line = String::from_utf8_lossy(&request);
            let path = line.split_whitespace().nth(1).unwrap_or("/");
            let path = path.split('?').next().unwrap_or(path);
            let found = answers
                .iter()
                .find(|(prefix, _)| path.starts_with(**prefix));
            let (status, headers, body) = match found {
                Some((_, a)) => (a.status, a.headers.clone(), a.body.clone()),
                None => (404, Vec::new(), b"[]".to_vec()),
            };
            let mut head = format!(
                "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n",
                body.len()
            );
            for (name, value) in headers {
                // A header value cannot hold a line break; anything else goes.
                let value: String = value
                    .chars()
                    .filter(|c| !matches!(c, '\r' | '\n' | '\0'))
                    .collect();
                head.push_str(&format!("{name}: {value}\r\n"));
            }
            head.push_str("\r\n");
            let _ = socket.write_all(head.as_bytes()).await;
            let _ = socket.write_all(&body).await;
            let _ = socket.shutdown().await;
        }
    });
    (base, task)
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime")
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn mastodon_pulls_of_hostile_json_fail_cleanly_or_yield_valid_items(
        me in answer(account()),
        notifications in answer(prop::collection::vec(notification(), 0..5).prop_map(Value::Array).boxed()),
        tag in answer(prop::collection::vec(status(), 0..5).prop_map(Value::Array).boxed()),
        search in answer(object(vec![("statuses", typed(prop::collection::vec(status(), 0..5).prop_map(Value::Array).boxed()))])),
        cursor in prop::option::of(prop_oneof![
            json_value().prop_map(|v| v.to_string()),
            Just(r#"{"me":"2","notifications":"99999999999999999999999999","tags":{"rapport":""}}"#.to_owned()),
        ]),
    ) {
        let runtime = runtime();
        let result = runtime.block_on(async {
            let answers = [
                ("/api/v1/accounts/verify_credentials", me),
                ("/api/v1/notifications", notifications),
                ("/api/v1/timelines/tag/", tag),
                ("/api/v2/search", search),
            ]
            .into_iter()
            .collect();
            let (base, server) = serve_answers(answers).await;
            let config = crate::mastodon::MastodonConfig {
                base_url: base,
                access_token: "token".into(),
                hashtags: vec!["rapport".into()],
                keywords: vec!["rapport crm".into()],
                backfill_limit: crate::mastodon::DEFAULT_BACKFILL_LIMIT,
            };
            let client = reqwest::Client::builder()
                .timeout(std::time::Duration::from_secs(10))
                .build()
                .expect("a client");
            let connector = crate::mastodon::MastodonConnector::new(client, config);
            let cursor = cursor.map(crate::Cursor);
            let result = crate::Connector::pull(&connector, cursor.as_ref()).await;
            server.abort();
            result
        });
        match result {
            Ok(pull) => {
                for item in &pull.items {
                    check_item(item)?;
                }
                check_unique(&pull.items)?;
                prop_assert!(pull.next_cursor.is_some());
            }
            Err(ConnectorError::Transport(message)) => {
                prop_assert!(!message.contains("timed out"), "a pull hung: {message}");
            }
            Err(_) => {}
        }
    }
}

// ---------------------------------------------------------------------------------------
// Webhook bodies and signatures
// ---------------------------------------------------------------------------------------

const SECRETS: &[&str] = &[
    "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
    "a-github-style-secret-of-enough-length",
];

fn webhook_body() -> impl Strategy<Value = Vec<u8>> {
    let email = prop_oneof![
        Just(json!("ada@example.com")),
        Just(json!("ADA@Example.COM")),
        Just(json!("@.")),
        Just(json!("a@b")),
        string_value(),
    ]
    .boxed();
    let occurred = prop_oneof![
        Just(json!("2026-11-23T10:00:00Z")),
        Just(json!("+262143-12-31T23:59:59Z")),
        Just(json!("2026-11-23T10:00:00+99:00")),
        string_value(),
    ]
    .boxed();
    let body = object(vec![
        (
            "text",
            typed(prop_oneof![string_value(), Just(json!("x".repeat(100_001))).boxed()].boxed()),
        ),
        ("name", typed(string_value())),
        ("email", typed(email)),
        ("phone", typed(string_value())),
        ("url", typed(string_value())),
        ("thread_id", typed(string_value())),
        ("occurred_at", typed(occurred)),
    ]);
    prop_oneof![
        6 => body.prop_map(|v| v.to_string().into_bytes()),
        1 => json_value().prop_map(|v| v.to_string().into_bytes()),
        1 => prop::collection::vec(any::<u8>(), 0..64),
    ]
}

fn header_text() -> impl Strategy<Value = String> {
    prop_oneof![
        text(),
        Just("v1,".to_owned()),
        Just("v1,!!!! v2,abc v1,".to_owned()),
        Just("sha256=".to_owned()),
        Just("sha256=zz".to_owned()),
        Just("sha256=00".to_owned()),
        Just(i64::MIN.to_string()),
        Just(i64::MAX.to_string()),
        Just("99999999999999999999999".to_owned()),
        Just("-0".to_owned()),
        Just(" 1 ".to_owned()),
    ]
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn webhook_bodies_parse_into_valid_items_or_name_a_field(
        body in prop_oneof![webhook_body(), (webhook_body(), prop::collection::vec(mutation(), 1..4)).prop_map(|(b, m)| mutate(&b, &m))],
        delivery in prop_oneof![Just("msg_1".to_owned()), Just("sha256:abcd".to_owned()), "[a-zA-Z0-9_:-]{1,40}"],
    ) {
        let now = Utc::now();
        match crate::webhook::parse(&body, &delivery, now) {
            Ok(item) => {
                check_item(&item)?;
                prop_assert_eq!(&item.external_id, &delivery);
                prop_assert!(!item.text.trim().is_empty());
                prop_assert!(item.text.chars().count() <= crate::webhook::MAX_TEXT_CHARS);
            }
            Err(err) => {
                prop_assert!(
                    ["body", "text", "name", "email", "phone", "url", "thread_id", "occurred_at"].contains(&err.field),
                    "an error naming no field of the payload: {err:?}"
                );
            }
        }
    }

    #[test]
    fn garbage_signature_headers_are_refused_without_panicking(
        secret in select(SECRETS),
        body in webhook_body(),
        id in prop::option::of(header_text()),
        timestamp in prop::option::of(header_text()),
        signature in prop::option::of(header_text()),
        hub in prop::option::of(header_text()),
    ) {
        let secret = crate::webhook::Secret::parse(secret).expect("a valid secret");
        let headers = crate::webhook::SignatureHeaders {
            webhook_id: id.as_deref(),
            webhook_timestamp: timestamp.as_deref(),
            webhook_signature: signature.as_deref(),
            hub_signature_256: hub.as_deref(),
        };
        // No random header is a valid signature.
        prop_assert!(secret.verify(&headers, &body, Utc::now()).is_err());
    }

    #[test]
    fn valid_signatures_over_any_body_verify_and_tampering_is_refused(
        secret in select(SECRETS),
        body in webhook_body(),
        id in "[a-zA-Z0-9_-]{1,40}",
        skew in -300i64..=300,
        flip in any::<Index>(),
    ) {
        let parsed = crate::webhook::Secret::parse(secret).expect("a valid secret");
        let now: DateTime<Utc> = Utc::now();
        let timestamp = (now.timestamp() + skew).to_string();
        let (standard, github) = (
            parsed.sign_standard(&id, &timestamp, &body),
            parsed.sign_github(&body),
        );
        let signed = crate::webhook::SignatureHeaders {
            webhook_id: Some(id.as_str()),
            webhook_timestamp: Some(timestamp.as_str()),
            webhook_signature: standard.as_deref(),
            hub_signature_256: Some(github.as_str()),
        };
        prop_assert!(parsed.verify(&signed, &body, now).is_ok());
        let mut tampered = body.clone();
        if tampered.is_empty() {
            tampered.push(b' ');
        } else {
            let i = flip.index(tampered.len());
            tampered[i] ^= 0x01;
        }
        prop_assert!(parsed.verify(&signed, &tampered, now).is_err());
    }
}

// ---------------------------------------------------------------------------------------
// Discourse webhook deliveries
// ---------------------------------------------------------------------------------------

const DISCOURSE_SECRET: &str = "dsc-fuzz-forum-secret-4c1d";

/// A Discourse `post` delivery (`{"post": {…}}`, `WebHookPostSerializer`'s fields) with
/// values of every type, or any JSON, or bytes.
fn discourse_delivery() -> impl Strategy<Value = Vec<u8>> {
    let number = || {
        prop_oneof![
            Just(json!(1)),
            Just(json!(2)),
            Just(json!(0)),
            Just(json!(-1)),
            Just(json!(u64::MAX)),
            Just(json!(1.5)),
            any::<u64>().prop_map(|n| json!(n)),
        ]
        .boxed()
    };
    let flag = || prop_oneof![Just(json!(true)), Just(json!(false)), Just(Value::Null)].boxed();
    let post = object(vec![
        ("id", typed(number())),
        ("topic_id", typed(number())),
        ("post_number", typed(number())),
        ("reply_to_post_number", typed(number())),
        ("user_id", typed(number())),
        ("post_type", typed(number())),
        ("category_id", typed(number())),
        ("username", typed(string_value())),
        ("name", typed(string_value())),
        ("raw", typed(string_value())),
        ("cooked", typed(string_value())),
        ("avatar_template", typed(string_value())),
        ("topic_title", typed(string_value())),
        (
            "created_at",
            typed(prop_oneof![Just(json!("2026-11-30T10:00:00.000Z")), string_value()].boxed()),
        ),
        (
            "topic_archetype",
            typed(
                prop_oneof![
                    Just(json!("regular")),
                    Just(json!("private_message")),
                    string_value()
                ]
                .boxed(),
            ),
        ),
        (
            "category_slug",
            typed(prop_oneof![Just(json!("support")), string_value()].boxed()),
        ),
        ("hidden", typed(flag())),
        ("user_deleted", typed(flag())),
        (
            "deleted_at",
            typed(prop_oneof![Just(Value::Null), string_value()].boxed()),
        ),
    ]);
    prop_oneof![
        6 => post.prop_map(|post| json!({ "post": post }).to_string().into_bytes()),
        1 => json_value().prop_map(|v| v.to_string().into_bytes()),
        1 => prop::collection::vec(any::<u8>(), 0..64),
    ]
}

fn discourse_hook(
    body: &[u8],
    kind: &str,
    name: &str,
    signature: Option<&str>,
) -> Result<crate::Hooked, crate::WebhookError> {
    let config = json!({ "base_url": "https://forum.example.com", "api_key": "k",
        "api_username": "acme_support", "categories": ["support", 7],
        "webhook_secret": DISCOURSE_SECRET });
    let connector = crate::discourse::DiscourseConnector::new(
        reqwest::Client::new(),
        crate::discourse::DiscourseConfig::parse(&config).expect("a valid config"),
    );
    let mut headers = reqwest::header::HeaderMap::new();
    for (header, value) in [
        ("x-discourse-event-type", Some(kind)),
        ("x-discourse-event", Some(name)),
        ("x-discourse-event-signature", signature),
    ] {
        if let Some(value) = value.and_then(|v| reqwest::header::HeaderValue::from_str(v).ok()) {
            headers.insert(header, value);
        }
    }
    connector.hook(&crate::WebhookRequest { headers: &headers }, body)
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn discourse_deliveries_are_items_ignored_or_a_named_field_and_unsigned_ones_refused(
        body in prop_oneof![discourse_delivery(), (discourse_delivery(), prop::collection::vec(mutation(), 1..4)).prop_map(|(b, m)| mutate(&b, &m))],
        kind in select(&["post", "topic", "ping", "user", ""][..]),
        name in select(&["post_created", "post_edited", "post_recovered", "post_destroyed", "topic_created", "ping", ""][..]),
        garbage in prop::option::of(header_text()),
    ) {
        let signed = crate::webhook::Secret::parse(DISCOURSE_SECRET)
            .expect("a valid secret")
            .sign_github(&body);
        match discourse_hook(&body, kind, name, Some(&signed)) {
            Ok(crate::Hooked::Items(items)) => {
                prop_assert_eq!(items.len(), 1);
                for item in &items {
                    check_item(item)?;
                    prop_assert!(item.external_id.starts_with("post:"));
                    prop_assert!(item.thread_key.as_deref().is_some_and(|key| key.starts_with("topic:")));
                    prop_assert_eq!(item.in_reply_to.as_deref(), None);
                }
            }
            Ok(crate::Hooked::Ignored(why)) => prop_assert!(!why.is_empty()),
            Err(crate::WebhookError::Payload { field, .. }) => prop_assert!(
                ["body", "post", "post.id", "post.topic_id", "post.post_number", "post.username", "post.created_at"].contains(&field),
                "an error naming no field of the payload: {field}"
            ),
            Err(other) => prop_assert!(false, "a signed delivery failed otherwise: {other:?}"),
        }
        // No garbage signature (or none) is taken, whatever the body.
        prop_assert!(matches!(
            discourse_hook(&body, kind, name, garbage.as_deref()),
            Err(crate::WebhookError::Unauthenticated(_))
        ));
    }
}
