//! Fuzzing a live server: GraphQL documents generated from the served schema
//! (`schema.graphql`: fields with arguments of the right and the wrong types, aliases,
//! fragments, variables of every kind) and token-level mutations of them; hostile
//! variables; cursors and ids; webhook bodies and signature headers.
//!
//! Properties of every answer: no 5xx, no `INTERNAL`, every error has a code, an answer
//! within 10 s (a hang detector, not a performance assertion). After each run `/healthz`
//! answers and another workspace still reads its own customers.
//!
//! Cases per test: `RAPPORT_FUZZ_CASES` (default 64). The seed is printed; replay a run
//! with `RAPPORT_FUZZ_SEED=<seed>`. Failures are collected by class (with the exact
//! requests) and reported together at the end of a test. A request that kills the whole
//! process (an abort) takes that report with it: replay the seed with `--nocapture` and
//! `RAPPORT_FUZZ_TRACE=1` to see each request before it is sent.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::time::{Duration, Instant};

use async_graphql::parser::types::{BaseType, Type, TypeKind, TypeSystemDefinition};
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use connectors::webhook::Secret;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rapport::config::Limits;
use rapport::domain::Role;
use serde_json::{json, Value};

use crate::common::{Backend, TestApp};

/// The hang detector: no answer may take longer.
const BOUND: Duration = Duration::from_secs(10);
const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

fn cases() -> usize {
    std::env::var("RAPPORT_FUZZ_CASES")
        .ok()
        .and_then(|cases| cases.trim().parse().ok())
        .unwrap_or(64)
}

fn seed() -> u64 {
    std::env::var("RAPPORT_FUZZ_SEED")
        .ok()
        .and_then(|seed| seed.trim().parse().ok())
        .unwrap_or_else(rand::random)
}

// ---------------------------------------------------------------------------------------
// The served schema
// ---------------------------------------------------------------------------------------

#[derive(Clone, Debug)]
struct Field {
    name: String,
    args: Vec<(String, Type)>,
    ty: Type,
}

#[derive(Clone, Debug)]
enum Kind {
    Scalar,
    Object(Vec<Field>),
    Union(Vec<String>),
    Enum(Vec<String>),
    Input(Vec<(String, Type)>),
}

struct Schema {
    types: BTreeMap<String, Kind>,
    /// Which object types implement each interface.
    implementors: HashMap<String, Vec<String>>,
}

impl Schema {
    fn load() -> Schema {
        let text = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/schema.graphql"));
        let document = async_graphql::parser::parse_schema(text).expect("schema.graphql parses");
        let mut types = BTreeMap::new();
        let mut implementors: HashMap<String, Vec<String>> = HashMap::new();
        let fields = |fields: &[async_graphql::Positioned<
            async_graphql::parser::types::FieldDefinition,
        >]| {
            fields
                .iter()
                .map(|field| Field {
                    name: field.node.name.node.to_string(),
                    args: field
                        .node
                        .arguments
                        .iter()
                        .map(|arg| (arg.node.name.node.to_string(), arg.node.ty.node.clone()))
                        .collect(),
                    ty: field.node.ty.node.clone(),
                })
                .collect::<Vec<_>>()
        };
        for definition in document.definitions {
            let TypeSystemDefinition::Type(definition) = definition else {
                continue;
            };
            let name = definition.node.name.node.to_string();
            let kind = match &definition.node.kind {
                TypeKind::Scalar => Kind::Scalar,
                TypeKind::Object(object) => {
                    for interface in &object.implements {
                        implementors
                            .entry(interface.node.to_string())
                            .or_default()
                            .push(name.clone());
                    }
                    Kind::Object(fields(&object.fields))
                }
                TypeKind::Interface(interface) => Kind::Object(fields(&interface.fields)),
                TypeKind::Union(union) => {
                    Kind::Union(union.members.iter().map(|m| m.node.to_string()).collect())
                }
                TypeKind::Enum(values) => Kind::Enum(
                    values
                        .values
                        .iter()
                        .map(|v| v.node.value.node.to_string())
                        .collect(),
                ),
                TypeKind::InputObject(input) => Kind::Input(
                    input
                        .fields
                        .iter()
                        .map(|f| (f.node.name.node.to_string(), f.node.ty.node.clone()))
                        .collect(),
                ),
            };
            types.insert(name, kind);
        }
        for builtin in ["String", "Int", "Float", "Boolean", "ID"] {
            types.insert(builtin.to_owned(), Kind::Scalar);
        }
        Schema {
            types,
            implementors,
        }
    }

    fn kind(&self, name: &str) -> &Kind {
        self.types.get(name).unwrap_or(&Kind::Scalar)
    }
}

fn named(ty: &Type) -> &str {
    match &ty.base {
        BaseType::Named(name) => name.as_str(),
        BaseType::List(inner) => named(inner),
    }
}

// ---------------------------------------------------------------------------------------
// Hostile values
// ---------------------------------------------------------------------------------------

/// Everything the generator draws ids and cursors from: real ones of the fuzzed
/// workspace (and of the other one), and broken variants.
#[derive(Default, Clone)]
struct Pool {
    ids: Vec<String>,
    cursors: Vec<String>,
}

const PREFIXES: [&str; 12] = [
    "wsp", "cus", "org", "idn", "cpt", "int", "cnv", "dea", "not", "tag", "key", "src",
];

fn nasty_text(rng: &mut StdRng) -> String {
    let pieces = [
        "",
        " ",
        "a",
        "\u{0}",
        "a\u{0}b",
        "\u{1}\u{7f}",
        "é",
        "e\u{301}",
        "\u{202e}",
        "\u{feff}",
        "😀",
        "\u{fffd}",
        "%",
        "_",
        "\\",
        "'",
        "\"",
        "' OR 1=1 --",
        "$1",
        "*",
        "?",
        "~",
        "AND OR NOT",
        "title:x",
        "\"unclosed",
        "<b>",
        "export",
        "&#0;",
        "\r\n",
    ];
    match rng.gen_range(0..20) {
        0 => "x".repeat(rng.gen_range(1_000..100_001)),
        1 => "\u{0}".repeat(rng.gen_range(1..100)),
        2 => (0..rng.gen_range(1..40))
            .map(|_| char::from_u32(rng.gen_range(0..0x11_0000)).unwrap_or('\u{fffd}'))
            .collect(),
        _ => (0..rng.gen_range(1..4))
            .map(|_| *pieces.choose(rng).unwrap())
            .collect(),
    }
}

fn nasty_int(rng: &mut StdRng) -> Value {
    match rng.gen_range(0..12) {
        0 => json!(i32::MAX),
        1 => json!(i32::MIN),
        2 => json!(i64::from(i32::MAX) + 1),
        3 => json!(i64::MIN),
        4 => json!(u64::MAX),
        5 => json!(1e300),
        6 => json!(-0.5),
        7 => json!(101),
        8 => json!(-1),
        9 => json!(0),
        10 => serde_json::from_str("123456789012345678901234567890").unwrap(),
        _ => json!(rng.gen_range(-5..200)),
    }
}

fn base64_of(text: &str, rng: &mut StdRng) -> String {
    if rng.gen_bool(0.5) {
        URL_SAFE_NO_PAD.encode(text)
    } else {
        STANDARD.encode(text)
    }
}

/// An id: a real one, one of another kind or workspace, or broken.
fn nasty_id(rng: &mut StdRng, pool: &Pool) -> String {
    let real = pool.ids.choose(rng).cloned().unwrap_or_default();
    match rng.gen_range(0..10) {
        0 | 1 => real,
        2 => {
            // Another kind's prefix on a real uuid.
            let (_, hex) = real.split_once('_').unwrap_or(("", &real));
            format!("{}_{hex}", PREFIXES.choose(rng).unwrap())
        }
        3 => real[..rng.gen_range(0..=real.len())].to_owned(),
        4 => format!("{real}{real}"),
        5 => format!(
            "{}_{}",
            PREFIXES.choose(rng).unwrap(),
            "f".repeat(rng.gen_range(0..80))
        ),
        6 => format!("{}_{}", PREFIXES.choose(rng).unwrap(), uuid::Uuid::nil()),
        7 => base64_of(&real, rng),
        _ => nasty_text(rng),
    }
}

/// A cursor: a real one, or a decoded-and-rewritten one, or garbage.
fn nasty_cursor(rng: &mut StdRng, pool: &Pool) -> String {
    let real = pool.cursors.choose(rng).cloned().unwrap_or_default();
    let decoded = URL_SAFE_NO_PAD
        .decode(&real)
        .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
        .unwrap_or_default();
    let huge = [
        "10000000000",
        "18446744073709551615",
        "18446744073709551616",
        "-1",
        "9223372036854775807",
        "1e9",
        "",
        "NaN",
    ];
    match rng.gen_range(0..12) {
        0 | 1 => real,
        2 | 10 => base64_of(&format!("o:{}", huge.choose(rng).unwrap()), rng),
        3 => base64_of(&format!("o:{}", rng.gen_range(0..5_000u32)), rng),
        4 => real[..rng.gen_range(0..=real.len())].to_owned(),
        5 => {
            // The decoded cursor with one part replaced.
            let mut parts: Vec<String> = decoded
                .split(['\u{1f}', '|', ':'])
                .map(str::to_owned)
                .collect();
            if !parts.is_empty() {
                let i = rng.gen_range(0..parts.len());
                parts[i] = [
                    huge.choose(rng).unwrap().to_string(),
                    nasty_text(rng),
                    String::new(),
                ]
                .choose(rng)
                .unwrap()
                .clone();
            }
            let sep = ["\u{1f}", "|", ":"].choose(rng).unwrap();
            base64_of(&parts.join(sep), rng)
        }
        6 => base64_of(&nasty_text(rng), rng),
        7 => (0..rng.gen_range(0..200))
            .map(|_| {
                *b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_+/="
                    .choose(rng)
                    .unwrap() as char
            })
            .collect(),
        8 => nasty_id(rng, pool),
        9 => format!("{real}{real}"),
        _ => nasty_text(rng),
    }
}

/// A JSON value nested `depth` deep (arrays or objects).
fn deep_json(depth: usize, rng: &mut StdRng) -> Value {
    let mut value = json!("bottom");
    for _ in 0..depth {
        value = if rng.gen_bool(0.5) {
            json!([value])
        } else {
            json!({ "k": value })
        };
    }
    value
}

fn random_json(rng: &mut StdRng, depth: usize) -> Value {
    match rng.gen_range(0..if depth > 3 { 5 } else { 8 }) {
        0 => Value::Null,
        1 => json!(rng.gen_bool(0.5)),
        2 => nasty_int(rng),
        3 => json!(rng.gen::<f64>() * 1e10),
        4 => json!(nasty_text(rng)),
        5 => Value::Array(
            (0..rng.gen_range(0..4))
                .map(|_| random_json(rng, depth + 1))
                .collect(),
        ),
        6 => Value::Object(
            (0..rng.gen_range(0..4))
                .map(|_| (nasty_text(rng), random_json(rng, depth + 1)))
                .collect(),
        ),
        _ => deep_json(rng.gen_range(1..300), rng),
    }
}

// ---------------------------------------------------------------------------------------
// Documents
// ---------------------------------------------------------------------------------------

/// Writes a GraphQL string literal.
fn literal(text: &str) -> String {
    serde_json::to_string(text).unwrap_or_else(|_| "\"\"".to_owned())
}

/// A JSON value as a GraphQL literal.
fn graphql_literal(value: &Value) -> String {
    match value {
        Value::Object(map) => {
            let fields: Vec<String> = map
                .iter()
                .map(|(key, value)| {
                    let key: String = key
                        .chars()
                        .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
                        .collect();
                    let key = if key.is_empty() || key.starts_with(|c: char| c.is_ascii_digit()) {
                        format!("k{key}")
                    } else {
                        key
                    };
                    format!("{key}: {}", graphql_literal(value))
                })
                .collect();
            format!("{{{}}}", fields.join(", "))
        }
        Value::Array(items) => format!(
            "[{}]",
            items
                .iter()
                .map(graphql_literal)
                .collect::<Vec<_>>()
                .join(", ")
        ),
        Value::String(text) => literal(text),
        other => other.to_string(),
    }
}

struct Generator<'a> {
    schema: &'a Schema,
    pool: &'a Pool,
    rng: StdRng,
    /// `$name: Type` declarations and their values.
    variables: Vec<(String, String, Value)>,
    fragments: Vec<String>,
    depth_limit: usize,
    /// Whether to sprinkle invalid arguments, types and values (else values are hostile
    /// but the document is valid, so it reaches the resolvers).
    junk: bool,
}

impl Generator<'_> {
    /// A value of `ty` as JSON (for variables): usually right, sometimes hostile.
    fn json_value(&mut self, ty: &Type, name: &str, depth: usize) -> Value {
        if ty.nullable && self.rng.gen_bool(0.1) {
            return Value::Null;
        }
        if self.junk && self.rng.gen_bool(0.12) {
            return random_json(&mut self.rng, 0);
        }
        if let BaseType::List(inner) = &ty.base {
            let n = if self.rng.gen_bool(0.05) {
                150
            } else {
                self.rng.gen_range(0..4)
            };
            return Value::Array(
                (0..n)
                    .map(|_| self.json_value(inner, name, depth + 1))
                    .collect(),
            );
        }
        let base = named(ty).to_owned();
        let rng = &mut self.rng;
        match (base.as_str(), self.schema.kind(&base).clone()) {
            ("Int", _) => match name {
                "first" | "last" if rng.gen_bool(0.6) => json!(rng.gen_range(0..=101)),
                _ => nasty_int(rng),
            },
            ("Float", _) => [
                json!(0.5),
                json!(-1e308),
                json!(1e308),
                json!(rng.gen::<f64>()),
            ]
            .choose(rng)
            .unwrap()
            .clone(),
            ("Boolean", _) => json!(rng.gen_bool(0.5)),
            ("ID", _) => json!(nasty_id(rng, self.pool)),
            ("DateTime", _) => json!([
                "2026-11-23T10:00:00Z",
                "1970-01-01T00:00:00Z",
                "+262143-12-31T23:59:59Z",
                "2026-13-45T99:99:99Z",
                "yesterday",
            ]
            .choose(rng)
            .unwrap()),
            ("NaiveDate", _) => json!(["2026-11-23", "0000-00-00", "+262143-12-31", "x"]
                .choose(rng)
                .unwrap()),
            ("JSON", _) => random_json(rng, 0),
            ("String", _) => match name {
                "after" | "before" => json!(nasty_cursor(rng, self.pool)),
                // Words the seeded data holds, so searches have hits to page through.
                "query" | "search" if rng.gen_bool(0.5) => {
                    json!(["export", "export number", "fuzzy", "bystander", "numb"]
                        .choose(rng)
                        .unwrap())
                }
                _ => json!(nasty_text(rng)),
            },
            (_, Kind::Enum(values)) => {
                if rng.gen_bool(0.85) {
                    json!(values.choose(rng).unwrap())
                } else {
                    json!(nasty_text(rng))
                }
            }
            (_, Kind::Input(fields)) => {
                if depth > 4 {
                    return json!({});
                }
                let mut object = serde_json::Map::new();
                for (field, ty) in fields {
                    let include = if ty.nullable { 0.5 } else { 0.92 };
                    if self.rng.gen_bool(include) {
                        let value = self.json_value(&ty, &field, depth + 1);
                        object.insert(field, value);
                    }
                }
                if self.junk && self.rng.gen_bool(0.05) {
                    object.insert("notAField".into(), json!(1));
                }
                Value::Object(object)
            }
            _ => json!(nasty_text(rng)),
        }
    }

    /// An argument value in the document: a literal, or a variable.
    fn argument(&mut self, name: &str, ty: &Type) -> String {
        if self.rng.gen_bool(0.3) {
            let var = format!("v{}", self.variables.len());
            // Usually the declared type; sometimes another one (a validation error).
            let declared = if !self.junk || self.rng.gen_bool(0.9) {
                ty.to_string()
            } else {
                ["String", "Int!", "[ID!]", "Boolean", "JSON"]
                    .choose(&mut self.rng)
                    .unwrap()
                    .to_string()
            };
            let value = self.json_value(ty, name, 0);
            self.variables.push((var.clone(), declared, value));
            return format!("${var}");
        }
        let value = self.json_value(ty, name, 0);
        match (named(ty), &value) {
            // Enum values are names, not strings.
            (base, Value::String(text))
                if matches!(self.schema.kind(base), Kind::Enum(_))
                    && text.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                    && !text.is_empty() =>
            {
                text.clone()
            }
            _ => graphql_literal(&value),
        }
    }

    fn selection(&mut self, type_name: &str, depth: usize) -> String {
        let kind = self.schema.kind(type_name).clone();
        let mut out = String::from("{ ");
        if depth >= self.depth_limit || self.rng.gen_bool(0.08) {
            out.push_str("__typename }");
            return out;
        }
        match kind {
            Kind::Object(fields) => {
                for _ in 0..self.rng.gen_range(1..=3) {
                    let field = fields.choose(&mut self.rng).unwrap().clone();
                    out.push_str(&self.field(&field, depth));
                    out.push(' ');
                }
                if let Some(types) = self.schema.implementors.get(type_name).cloned() {
                    if self.rng.gen_bool(0.4) {
                        let member = types.choose(&mut self.rng).unwrap().clone();
                        let inner = self.selection(&member, depth + 1);
                        let _ = write!(out, "... on {member} {inner} ");
                    }
                }
                if self.rng.gen_bool(0.1) {
                    let name = format!("F{}", self.fragments.len());
                    let inner = self.selection(type_name, depth + 1);
                    self.fragments
                        .push(format!("fragment {name} on {type_name} {inner}"));
                    let _ = write!(out, "...{name} ");
                }
            }
            Kind::Union(members) => {
                out.push_str("__typename ");
                for member in &members {
                    if self.rng.gen_bool(0.5) {
                        continue;
                    }
                    let inner = self.selection(member, depth + 1);
                    let _ = write!(out, "... on {member} {inner} ");
                }
            }
            _ => out.push_str("__typename "),
        }
        out.push('}');
        out
    }

    fn field(&mut self, field: &Field, depth: usize) -> String {
        let mut out = String::new();
        if self.rng.gen_bool(0.2) {
            let _ = write!(out, "a{}: ", self.rng.gen_range(0..1000));
        }
        out.push_str(&field.name);
        let mut args = Vec::new();
        for (name, ty) in &field.args {
            let include = if ty.nullable { 0.5 } else { 0.95 };
            if self.rng.gen_bool(include) {
                let value = self.argument(name, ty);
                args.push(format!("{name}: {value}"));
            }
        }
        if self.junk && self.rng.gen_bool(0.03) {
            args.push("noSuchArgument: 1".into());
        }
        if !args.is_empty() {
            let _ = write!(out, "({})", args.join(", "));
        }
        let base = named(&field.ty).to_owned();
        if !matches!(self.schema.kind(&base), Kind::Scalar | Kind::Enum(_)) {
            out.push(' ');
            out.push_str(&self.selection(&base, depth + 1));
        }
        out
    }

    /// A whole request: the document and its variables.
    fn request(&mut self) -> (String, Value) {
        self.variables.clear();
        self.fragments.clear();
        let root = if self.rng.gen_bool(0.25) {
            "Mutation"
        } else {
            "Query"
        };
        let body = self.selection(root, 0);
        let declarations: Vec<String> = self
            .variables
            .iter()
            .map(|(name, ty, _)| format!("${name}: {ty}"))
            .collect();
        let mut document = root.to_lowercase();
        if !declarations.is_empty() {
            let _ = write!(document, " F({})", declarations.join(", "));
        }
        let _ = write!(document, " {body}");
        for fragment in &self.fragments {
            let _ = write!(document, "\n{fragment}");
        }
        let variables: serde_json::Map<String, Value> = self
            .variables
            .iter()
            .map(|(name, _, value)| (name.clone(), value.clone()))
            .collect();
        (document, Value::Object(variables))
    }
}

/// Splits a document into rough tokens: names, punctuation, strings, spaces.
fn tokens(document: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut chars = document.chars().peekable();
    while let Some(c) = chars.next() {
        if c.is_alphanumeric() || c == '_' {
            let mut token = c.to_string();
            while let Some(&next) = chars.peek() {
                if !(next.is_alphanumeric() || next == '_') {
                    break;
                }
                token.push(next);
                chars.next();
            }
            out.push(token);
        } else if c == '"' {
            let mut token = c.to_string();
            let mut escaped = false;
            for next in chars.by_ref() {
                token.push(next);
                if next == '"' && !escaped {
                    break;
                }
                escaped = next == '\\' && !escaped;
            }
            out.push(token);
        } else {
            out.push(c.to_string());
        }
    }
    out
}

/// Token-level mutations of a valid document.
fn mutate_document(document: &str, rng: &mut StdRng, schema: &Schema) -> String {
    let mut tokens = tokens(document);
    let names: Vec<&String> = schema.types.keys().collect();
    let junk = [
        "{",
        "}",
        "(",
        ")",
        "[",
        "]",
        ":",
        "$",
        "...",
        "@",
        "!",
        "=",
        "|",
        "&",
        "#",
        "\"",
        "\\u0000",
        "fragment",
        "on",
        "query",
        "mutation",
        "subscription",
        "@include(if: true)",
        "@skip(if: $x)",
        "@deprecated",
        "__schema",
        "__type(name: \"Query\")",
        "1e999",
        "-",
        "\u{0}",
        "\u{feff}",
    ];
    for _ in 0..rng.gen_range(1..5) {
        if tokens.is_empty() {
            break;
        }
        let i = rng.gen_range(0..tokens.len());
        match rng.gen_range(0..7) {
            0 => {
                tokens.remove(i);
            }
            1 => {
                let token = tokens[i].clone();
                tokens.insert(i, token);
            }
            2 => {
                let j = rng.gen_range(0..tokens.len());
                tokens.swap(i, j);
            }
            3 => tokens.insert(i, junk.choose(rng).unwrap().to_string()),
            4 => tokens[i] = names.choose(rng).unwrap().to_string(),
            5 => tokens.truncate(i),
            _ => {
                // A run of tokens repeated many times (deep nesting, long lists).
                let end = (i + rng.gen_range(1..6)).min(tokens.len());
                let run: Vec<String> = tokens[i..end].to_vec();
                for _ in 0..rng.gen_range(2..200) {
                    tokens.splice(i..i, run.iter().cloned());
                }
            }
        }
    }
    tokens.concat()
}

// ---------------------------------------------------------------------------------------
// Running requests and checking answers
// ---------------------------------------------------------------------------------------

struct Fuzz {
    app: TestApp,
    schema: Schema,
    pool: Pool,
    key: String,
    other_key: String,
    other_names: Vec<String>,
    seed: u64,
    /// Failures by class (what broke, where): how many, and the first few requests.
    failures: BTreeMap<String, (usize, Vec<String>)>,
    requests: usize,
}

impl Fuzz {
    /// A server without the rate limits (see below), a fuzzed workspace with a few objects to find, and another workspace to check after.
    async fn start(backend: Backend) -> Option<Fuzz> {
        // The fuzzer is one key and one address sending as fast as it can: the per-key,
        // failed-authentication and per-webhook limiters would answer most of its requests
        // 429 before they reach anything (tests/integration/abuse.rs tests them).
        let limits = Limits {
            requests_per_minute: 0,
            failed_auth_per_minute: 0,
            webhook_requests_per_minute: 0,
            ..Limits::default()
        };
        let app = TestApp::with_limits(backend, limits).await?;
        let seed = seed();
        eprintln!("fuzz seed {seed} ({backend:?}): replay with RAPPORT_FUZZ_SEED={seed}");
        let key = app.key_in("fuzzed", Role::Owner).await;
        let other_key = app.key_in("bystander", Role::Admin).await;
        let mut pool = Pool::default();
        let mut other_names = Vec::new();
        for n in 0..3 {
            let name = format!("Bystander {n}");
            pool.ids.push(
                app.create_customer(&other_key, json!({ "displayName": name }))
                    .await,
            );
            other_names.push(name);
        }
        for n in 0..4 {
            pool.ids.push(
                app.create_customer(
                    &key,
                    json!({ "displayName": format!("Fuzzy {n}"), "externalId": format!("fuzzy-{n}") }),
                )
                .await,
            );
        }
        let source = app
            .gql(
                &key,
                crate::feeds::CREATE,
                json!({ "input": { "channel": "WEBHOOK", "name": "fuzz", "config": { "secret": SECRET } } }),
            )
            .await["createSource"]["source"]["id"]
            .as_str()
            .unwrap()
            .to_owned();
        pool.ids.push(source.clone());
        let mut fuzz = Fuzz {
            app,
            schema: Schema::load(),
            pool,
            key,
            other_key,
            other_names,
            seed,
            failures: BTreeMap::new(),
            requests: 0,
        };
        // Interactions, conversations and real cursors of several connections.
        for n in 0..3 {
            fuzz.webhook_signed(&source, &format!("seed-{n}"), json!({ "text": format!("export number {n}"), "email": format!("fuzzy{n}@example.com") }).to_string().into_bytes(), &[])
                .await;
        }
        // Index them, so searches have hits to page through.
        rapport::search::indexer::Indexer::new(&fuzz.app.app)
            .catch_up()
            .await
            .unwrap();
        let data = fuzz
            .app
            .gql(
                &fuzz.key,
                "{ customers(first: 2) { pageInfo { endCursor startCursor } edges { cursor node { id } } } interactions(first: 2) { pageInfo { endCursor } edges { cursor node { id conversation { id } identity { id } } } } organizations(first: 1) { pageInfo { endCursor } } search(query: \"export\", first: 1) { pageInfo { endCursor } } }",
                json!({}),
            )
            .await;
        collect(&data, &mut fuzz.pool);
        Some(fuzz)
    }

    fn fail(&mut self, class: String, example: String) {
        let (count, examples) = self.failures.entry(class).or_default();
        *count += 1;
        if examples.len() < 2 {
            examples.push(example);
        }
    }

    /// POSTs a GraphQL body (any bytes) and checks the answer.
    async fn post_graphql(&mut self, case: usize, body: Vec<u8>) {
        let request = self
            .app
            .client
            .post(self.app.url("/graphql"))
            .bearer_auth(&self.key)
            .header("content-type", "application/json")
            .body(body.clone());
        let shown = String::from_utf8_lossy(&body[..body.len().min(2_000)]).into_owned();
        self.check(case, "POST /graphql", &shown, request).await;
    }

    async fn graphql(&mut self, case: usize, document: &str, variables: &Value) {
        let body = json!({ "query": document, "variables": variables }).to_string();
        self.post_graphql(case, body.into_bytes()).await;
    }

    async fn check(
        &mut self,
        case: usize,
        what: &str,
        shown: &str,
        request: reqwest::RequestBuilder,
    ) {
        self.requests += 1;
        if std::env::var_os("RAPPORT_FUZZ_TRACE").is_some() {
            // When a request kills the process, the collected report is lost with it:
            // this shows the last request sent.
            eprintln!("fuzz seed {} case {case}: {what} {shown}", self.seed);
        }
        let started = Instant::now();
        let send = |request: reqwest::RequestBuilder| {
            tokio::time::timeout(BOUND, async {
                let response = request.send().await?;
                let status = response.status().as_u16();
                let bytes = response.bytes().await?;
                Ok::<_, reqwest::Error>((status, bytes))
            })
        };
        let again = request.try_clone();
        let mut answer = send(request).await;
        let mut sent = "once";
        let context = format!("seed {} case {case}: {what} {shown}", self.seed);
        // A kept-alive connection the server closed after the previous answer can be
        // picked by the client's pool just as the close arrives: the request then fails
        // without reaching a handler, which no server can prevent for a client that does
        // not retry. It is sent once more, on a new connection: a handler that panics on
        // this input drops that one too and fails the test.
        if let (Ok(Err(err)), Some(again)) = (&answer, again) {
            if !err.is_builder() {
                eprintln!(
                    "{context}: {} after {:?}; sent again on a new connection",
                    chain(err),
                    started.elapsed()
                );
                answer = send(again).await;
                sent = "twice";
            }
        }
        let (status, bytes) = match answer {
            Err(_) => return self.fail(format!("no answer within {BOUND:?} on {what}"), context),
            // The client could not even form the request (a URL too long for it): nothing
            // reached the server.
            Ok(Err(err)) if err.is_builder() => return,
            Ok(Err(err)) => {
                let example = format!(
                    "{} after {:?}, sent {sent} (a panic in the handler?): {context}",
                    chain(&err),
                    started.elapsed()
                );
                return self.fail(format!("connection dropped on {what}"), example);
            }
            Ok(Ok(answer)) => answer,
        };
        let text = String::from_utf8_lossy(&bytes[..bytes.len().min(1_000)]).into_owned();
        if status >= 500 {
            return self.fail(
                format!("HTTP {status} on {what}"),
                format!("{text}: {context}"),
            );
        }
        let Ok(body) = serde_json::from_slice::<Value>(&bytes) else {
            return self.fail(
                format!("HTTP {status} not JSON on {what}"),
                format!("{text}: {context}"),
            );
        };
        if let Some(errors) = body.get("errors") {
            let Some(errors) = errors.as_array() else {
                return self.fail(
                    format!("`errors` not a list on {what}"),
                    format!("{text}: {context}"),
                );
            };
            for error in errors {
                // The field that failed, without its alias, names the class.
                let field = error["path"][0].as_str().unwrap_or("(request)");
                let field = shown
                    .split(&format!("{field}: "))
                    .nth(1)
                    .and_then(|rest| rest.split(['(', ' ', '{']).next())
                    .filter(|_| {
                        field.starts_with('a') && field[1..].chars().all(|c| c.is_ascii_digit())
                    })
                    .unwrap_or(field)
                    .to_owned();
                match error["extensions"]["code"].as_str() {
                    None => {
                        let class = format!("an error without a code on {what} {field}");
                        return self.fail(class, format!("{error}: {context}"));
                    }
                    Some("INTERNAL") => {
                        let class = format!("INTERNAL on {what} {field}");
                        return self.fail(class, format!("{error}: {context}"));
                    }
                    Some(_) => {}
                }
            }
        }
    }

    /// POSTs a delivery signed the Standard Webhooks way, plus `extra` headers.
    async fn webhook_signed(
        &mut self,
        source: &str,
        id: &str,
        body: Vec<u8>,
        extra: &[(String, String)],
    ) {
        let timestamp = chrono::Utc::now().timestamp().to_string();
        let signature = Secret::parse(SECRET)
            .unwrap()
            .sign_standard(id, &timestamp, &body)
            .unwrap();
        let mut headers = vec![
            ("webhook-id".to_owned(), id.to_owned()),
            ("webhook-timestamp".to_owned(), timestamp),
            ("webhook-signature".to_owned(), signature),
        ];
        headers.extend(extra.iter().cloned());
        self.webhook(0, &format!("/webhooks/{source}"), body, &headers)
            .await;
    }

    async fn webhook(
        &mut self,
        case: usize,
        path: &str,
        body: Vec<u8>,
        headers: &[(String, String)],
    ) {
        let mut request = self.app.client.post(self.app.url(path)).body(body.clone());
        for (name, value) in headers {
            request = request.header(name.as_str(), value.as_str());
        }
        let shown = format!(
            "{path} headers {headers:?} body {:?}",
            String::from_utf8_lossy(&body[..body.len().min(1_000)])
        );
        self.check(case, "POST /webhooks", &shown, request).await;
    }

    /// The server is healthy and the other workspace still reads its own data; then the
    /// collected failures, if any, fail the test.
    async fn finish(mut self) {
        let health =
            tokio::time::timeout(BOUND, self.app.client.get(self.app.url("/healthz")).send()).await;
        match health {
            Ok(Ok(response)) if response.status().is_success() => {}
            other => self.fail("/healthz after the run".into(), format!("{other:?}")),
        }
        let (status, body) = self
            .app
            .post(
                &self.other_key,
                "{ customers(first: 5) { edges { node { displayName } } } }",
                json!({}),
            )
            .await;
        let mut names: Vec<String> = body["data"]["customers"]["edges"]
            .as_array()
            .map(|edges| {
                edges
                    .iter()
                    .filter_map(|edge| edge["node"]["displayName"].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        if status != 200 || names != self.other_names {
            self.fail(
                "the other workspace after the run".into(),
                format!("HTTP {status} {body}"),
            );
        }
        let failed: usize = self.failures.values().map(|(count, _)| count).sum();
        eprintln!(
            "fuzz seed {}: {} requests, {failed} failures in {} classes",
            self.seed,
            self.requests,
            self.failures.len()
        );
        let mut report = String::new();
        for (class, (count, examples)) in &self.failures {
            let _ = writeln!(report, "\n== {class}: {count} requests, e.g.");
            for example in examples {
                let _ = writeln!(report, "  {example}");
            }
        }
        assert!(
            self.failures.is_empty(),
            "{failed} failures in {} classes (replay with RAPPORT_FUZZ_SEED={}):{report}",
            self.failures.len(),
            self.seed,
        );
    }

    fn generator(&self, case: usize) -> Generator<'_> {
        Generator {
            schema: &self.schema,
            pool: &self.pool,
            rng: StdRng::seed_from_u64(self.seed.wrapping_add(case as u64)),
            variables: Vec::new(),
            fragments: Vec::new(),
            depth_limit: 3 + case % 6,
            junk: case.is_multiple_of(2),
        }
    }
}

/// Every id and cursor in an answer.
fn collect(value: &Value, pool: &mut Pool) {
    match value {
        Value::Object(map) => {
            for (key, value) in map {
                match (key.as_str(), value.as_str()) {
                    ("id", Some(id)) => pool.ids.push(id.to_owned()),
                    ("cursor" | "endCursor" | "startCursor", Some(cursor)) => {
                        pool.cursors.push(cursor.to_owned())
                    }
                    _ => collect(value, pool),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|item| collect(item, pool)),
        _ => {}
    }
}

/// Declares a fuzz test on each backend: `name::sqlite` and `name::postgres`.
macro_rules! fuzz_test {
    ($(#[$meta:meta])* async fn $name:ident($fuzz:ident: Fuzz) $body:block) => {
        mod $name {
            use super::*;

            async fn run(mut $fuzz: Fuzz) {
                $body
                $fuzz.finish().await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                run(Fuzz::start(Backend::Sqlite).await.unwrap()).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                match Fuzz::start(Backend::Postgres).await {
                    Some(fuzz) => run(fuzz).await,
                    None => eprintln!("skipped: set RAPPORT_TEST_DATABASE_URL to run the PostgreSQL variant"),
                }
            }
        }
    };
}

fuzz_test!(
    async fn generated_and_mutated_graphql_documents_never_fail_the_server(fuzz: Fuzz) {
        for case in 0..cases() {
            let (document, variables) = fuzz.generator(case).request();
            let mut rng = StdRng::seed_from_u64(fuzz.seed ^ (case as u64).rotate_left(32));
            let document = if rng.gen_bool(0.35) {
                mutate_document(&document, &mut rng, &fuzz.schema)
            } else {
                document
            };
            fuzz.graphql(case, &document, &variables).await;
        }
    }
);

/// Root fields that take arguments, by operation.
fn fields_with_arguments(schema: &Schema) -> Vec<(&'static str, Field)> {
    let mut out = Vec::new();
    for (root, operation) in [("Query", "query"), ("Mutation", "mutation")] {
        if let Kind::Object(fields) = schema.kind(root) {
            for field in fields.iter().filter(|f| !f.args.is_empty()) {
                out.push((operation, field.clone()));
            }
        }
    }
    out
}

fuzz_test!(
    async fn hostile_variables_never_fail_the_server(fuzz: Fuzz) {
        let fields = fields_with_arguments(&fuzz.schema);
        for case in 0..cases() {
            let mut generator = fuzz.generator(case);
            let (operation, field) = fields.choose(&mut generator.rng).unwrap().clone();
            let mut declarations = Vec::new();
            let mut arguments = Vec::new();
            let mut variables = serde_json::Map::new();
            for (name, ty) in &field.args {
                declarations.push(format!("${name}: {ty}"));
                arguments.push(format!("{name}: ${name}"));
                let rng = &mut generator.rng;
                let value = match rng.gen_range(0..8) {
                    0 => deep_json(rng.gen_range(1..2_000), rng),
                    1 => random_json(rng, 0),
                    2 => nasty_int(rng),
                    3 => json!(nasty_text(rng)),
                    4 => Value::Null,
                    _ => generator.json_value(ty, name, 0),
                };
                if !generator.rng.gen_bool(0.05) {
                    variables.insert(name.clone(), value);
                }
            }
            let base = named(&field.ty).to_owned();
            let selection = if matches!(fuzz.schema.kind(&base), Kind::Scalar | Kind::Enum(_)) {
                String::new()
            } else {
                generator.selection(&base, 1)
            };
            let document = format!(
                "{operation} F({}) {{ {}({}) {selection} }}\n{}",
                declarations.join(", "),
                field.name,
                arguments.join(", "),
                generator.fragments.join("\n")
            );
            fuzz.graphql(case, &document, &Value::Object(variables))
                .await;
        }
    }
);

fuzz_test!(
    async fn hostile_cursors_and_ids_never_fail_the_server(fuzz: Fuzz) {
        // Every field, at any depth, that pages or takes ids, reached from the root or
        // through a node of the workspace.
        let paged: Vec<(String, Field)> = fuzz
            .schema
            .types
            .iter()
            .filter_map(|(name, kind)| match kind {
                Kind::Object(fields) => Some((name, fields)),
                _ => None,
            })
            .flat_map(|(name, fields)| {
                fields
                    .iter()
                    .filter(|field| {
                        field.args.iter().any(|(arg, _)| {
                            matches!(
                                arg.as_str(),
                                "after" | "before" | "id" | "ids" | "first" | "last"
                            )
                        })
                    })
                    .map(move |field| (name.clone(), field.clone()))
            })
            .collect();
        // Every field in every round: a quarter of the cases, eight rounds at least.
        let rounds = (cases() / 4).max(8);
        for case in 0..rounds * paged.len() {
            let mut generator = fuzz.generator(case);
            generator.junk = false;
            let (owner, field) = paged[case % paged.len()].clone();
            if owner == "Mutation" {
                continue;
            }
            let mut declarations = Vec::new();
            let mut arguments = Vec::new();
            let mut variables = serde_json::Map::new();
            for (name, ty) in &field.args {
                let rng = &mut generator.rng;
                let value = match name.as_str() {
                    "after" | "before" => json!(nasty_cursor(rng, &fuzz.pool)),
                    "id" => json!(nasty_id(rng, &fuzz.pool)),
                    "ids" => json!((0..rng.gen_range(0..120))
                        .map(|_| nasty_id(rng, &fuzz.pool))
                        .collect::<Vec<_>>()),
                    "first" | "last" if rng.gen_bool(0.3) => nasty_int(rng),
                    "first" | "last" => json!(rng.gen_range(1..=100)),
                    _ if ty.nullable && rng.gen_bool(0.7) => continue,
                    _ => generator.json_value(ty, name, 0),
                };
                if name != "first" && name != "last" && !generator.rng.gen_bool(0.8) {
                    continue;
                }
                declarations.push(format!("${name}: {ty}"));
                arguments.push(format!("{name}: ${name}"));
                variables.insert(name.clone(), value);
            }
            let base = named(&field.ty).to_owned();
            let selection = if matches!(fuzz.schema.kind(&base), Kind::Scalar | Kind::Enum(_)) {
                String::new()
            } else {
                generator.selection(&base, 2)
            };
            let args = if arguments.is_empty() {
                String::new()
            } else {
                format!("({})", arguments.join(", "))
            };
            let inner = format!("{}{args} {selection}", field.name);
            let body = if owner == "Query" {
                inner
            } else {
                // Reach a nested field through `node(id:)` on a real object of its type.
                let id = fuzz
                    .pool
                    .ids
                    .choose(&mut generator.rng)
                    .cloned()
                    .unwrap_or_default();
                format!(
                    "node(id: {}) {{ ... on {owner} {{ {inner} }} }}",
                    literal(&id)
                )
            };
            let declarations = if declarations.is_empty() {
                String::new()
            } else {
                format!("({})", declarations.join(", "))
            };
            let document = format!(
                "query F{declarations} {{ {body} }}\n{}",
                generator.fragments.join("\n")
            );
            fuzz.graphql(case, &document, &Value::Object(variables))
                .await;
        }
    }
);

fuzz_test!(
    async fn hostile_webhook_deliveries_never_fail_the_server(fuzz: Fuzz) {
        let source = fuzz
            .pool
            .ids
            .iter()
            .find(|id| id.starts_with("src_"))
            .cloned()
            .unwrap();
        let secret = Secret::parse(SECRET).unwrap();
        let fields = [
            "text",
            "name",
            "email",
            "phone",
            "url",
            "thread_id",
            "occurred_at",
        ];
        for case in 0..cases() {
            let mut rng = StdRng::seed_from_u64(fuzz.seed.wrapping_add(case as u64));
            let body: Vec<u8> = match rng.gen_range(0..6) {
                0 => random_json(&mut rng, 0).to_string().into_bytes(),
                1 => (0..rng.gen_range(0..200)).map(|_| rng.gen()).collect(),
                _ => {
                    let mut object = serde_json::Map::new();
                    for field in fields {
                        if rng.gen_bool(0.6) || field == "text" && rng.gen_bool(0.8) {
                            let value = if rng.gen_bool(0.8) {
                                json!(nasty_text(&mut rng))
                            } else {
                                random_json(&mut rng, 1)
                            };
                            object.insert(field.to_owned(), value);
                        }
                    }
                    if rng.gen_bool(0.2) {
                        object.insert(nasty_text(&mut rng), random_json(&mut rng, 1));
                    }
                    Value::Object(object).to_string().into_bytes()
                }
            };
            let id = match rng.gen_range(0..4) {
                0 => nasty_text(&mut rng),
                _ => format!("msg_{}", rng.gen::<u32>()),
            };
            let now = chrono::Utc::now().timestamp();
            let timestamp = match rng.gen_range(0..24) {
                0 => i64::MIN.to_string(),
                1 => i64::MAX.to_string(),
                2 | 3 => (now - 10_000).to_string(),
                4..=6 => nasty_text(&mut rng),
                _ => now.to_string(),
            };
            let signature = secret.sign_standard(&id, &timestamp, &body).unwrap();
            let mut headers: Vec<(String, String)> = Vec::new();
            let header_safe = |text: String| -> String {
                text.chars().filter(|c| (' '..='~').contains(c)).collect()
            };
            // A signature scheme, or none, or garbage, sometimes twice.
            match rng.gen_range(0..6) {
                0 => {}
                1 => {
                    headers.push(("x-hub-signature-256".into(), secret.sign_github(&body)));
                    headers.push(("x-github-delivery".into(), header_safe(id.clone())));
                }
                2 => headers.push((
                    "x-hub-signature-256".into(),
                    header_safe(nasty_text(&mut rng)),
                )),
                _ => {
                    headers.push(("webhook-id".into(), header_safe(id.clone())));
                    headers.push(("webhook-timestamp".into(), header_safe(timestamp.clone())));
                    let signature = match rng.gen_range(0..5) {
                        0 => header_safe(nasty_text(&mut rng)),
                        1 => format!("v1,{} {signature}", STANDARD.encode(nasty_text(&mut rng))),
                        _ => signature,
                    };
                    headers.push(("webhook-signature".into(), signature));
                }
            }
            if rng.gen_bool(0.15) && !headers.is_empty() {
                let twice = headers.choose(&mut rng).unwrap().clone();
                headers.push(twice);
            }
            if rng.gen_bool(0.3) {
                let content_type = [
                    "application/json",
                    "text/plain",
                    "application/x-www-form-urlencoded",
                    "\u{1}",
                ]
                .choose(&mut rng)
                .unwrap();
                headers.push(("content-type".into(), header_safe(content_type.to_string())));
            }
            let path = match rng.gen_range(0..10) {
                0 => format!(
                    "/webhooks/{}",
                    header_safe(nasty_id(&mut rng, &fuzz.pool))
                        .replace(['/', '?', '#', ' ', '%'], "")
                ),
                _ => format!("/webhooks/{source}"),
            };
            fuzz.webhook(case, &path, body, &headers).await;
        }
    }
);

/// `err` with the errors under it (the transport's reason: reset, closed, refused).
fn chain(err: &reqwest::Error) -> String {
    let mut text = err.to_string();
    let mut source = std::error::Error::source(err);
    while let Some(cause) = source {
        text.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    text
}
