//! What a GraphQL document will cost, worked out from its syntax tree **before** the engine
//! validates or runs it.
//!
//! Why here and not in async-graphql's own limits: the engine's depth and complexity checks
//! and several validation rules expand every fragment spread where it stands, without
//! memoization, so fragments F0…F23 that each spread the next twice cost 2^24 walks before
//! any limit answers. This pass summarises each fragment once (memoized, cycles refused) and
//! combines the summaries with saturating arithmetic, so a 1 KB document that would expand
//! to millions of selections is refused in microseconds, and the engine only ever sees
//! documents whose expansion is small.
//!
//! The cost model counts real work, not fields: every value answered costs 1, a full-text
//! search [`SEARCH_COST`], introspection of the whole schema [`SCHEMA_INTROSPECTION_COST`],
//! and a page multiplies what its items cost by its size (`first`/`last`, or the number of
//! `ids`); a field that runs a database query (a field with arguments, `totalCount`)
//! adds [`QUERY_COST`] once where it stands, not once per item of the page around it,
//! because every relation below a list is loaded in one batch (the DataLoaders). Mutations are
//! counted apart: side effects are capped per request, outbound calls (a sync, a reply)
//! more tightly still.

use std::collections::HashMap;

use async_graphql::parser::types::{
    DocumentOperations, ExecutableDocument, OperationType, Selection, SelectionSet,
};
use async_graphql::Name;
use serde_json::Value as Json;

use crate::config::{Limits, MAX_PAGE_SIZE};
use crate::domain::page::DEFAULT_PAGE_SIZE;

/// A field that reads the database on its own (not through a batched loader).
pub const QUERY_COST: u64 = 10;
/// A field that runs a full-text search (a search field, or a `search` filter).
pub const SEARCH_COST: u64 = 100;
/// `__schema`: the whole schema, about 100 KB of answer.
pub const SCHEMA_INTROSPECTION_COST: u64 = 2_000;
/// `__type(name:)`: one type.
pub const TYPE_INTROSPECTION_COST: u64 = 20;
/// The deepest an introspection query may nest (graphql-js's standard introspection
/// query, every option on, nests 13 deep).
pub const MAX_INTROSPECTION_DEPTH: u32 = 24;

/// Mutations that call out to a platform: each is an outbound request.
const OUTBOUND_MUTATIONS: [&str; 4] = [
    "syncSource",
    "replyToInteraction",
    "replyToConversation",
    "retryReply",
];
/// Argument-less fields that still run their own query (`trend`: `dataQuality`'s
/// recorded days, with its default of 30).
const QUERY_FIELDS: [&str; 10] = [
    "totalCount",
    "sources",
    "searchStatus",
    "viewer",
    "users",
    "me",
    "inboxCounts",
    "slaRules",
    "businessHours",
    "trend",
];
/// Fields that return a page (a connection, or search hits) even when asked without
/// paging arguments: the default page size multiplies what their items cost. Read from the
/// schema's connection fields; a test checks the list against the served schema.
pub const PAGED_FIELDS: [&str; 10] = [
    "customers",
    "inbox",
    "organizations",
    "interactions",
    "publications",
    "timeline",
    "search",
    "searchCustomers",
    "savedReplies",
    "duplicateSuggestions",
];
/// Operations one document may hold (the engine validates every one of them).
pub const MAX_OPERATIONS: usize = 50;
/// Fields that run a full-text search whatever their arguments.
const SEARCH_FIELDS: [&str; 2] = ["search", "searchCustomers"];
/// Fields that read and aggregate a workspace's whole event log (service metrics): priced
/// like a search, since each reads every fact of six event kinds and works the figures
/// out in Rust; a customer's export, which reads every row held about them; and the
/// data-quality report, which reads every live customer and contact point.
const HEAVY_READ_FIELDS: [&str; 3] = ["serviceMetrics", "exportCustomer", "dataQuality"];

/// What one document costs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Cost {
    /// Selections after expanding every fragment where it is spread: the size of the
    /// document as the engine's validation walks it (pages do not multiply it).
    pub selections: u64,
    /// The part of the cost that pages multiply: values, searches, introspection.
    pub values: u64,
    /// The part they do not: statements. Nested lists are loaded by DataLoaders, one
    /// statement per relation and level whatever the page size, so a field that runs a
    /// query costs [`QUERY_COST`] once where it stands in the document.
    pub queries: u64,
    /// Nesting depth outside introspection.
    pub depth: u32,
    /// Nesting depth including introspection subtrees.
    pub full_depth: u32,
    /// Mutation fields at the root.
    pub mutations: u64,
    /// Of those, the ones that call out to a platform.
    pub outbound: u64,
}

impl Cost {
    /// The work estimate (see the module doc): [`Cost::values`] plus [`Cost::queries`].
    pub fn cost(&self) -> u64 {
        self.values.saturating_add(self.queries)
    }
}

/// Why a document is refused before it runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    pub message: String,
    /// The measured value and its limit, for `extensions`.
    pub measured: u64,
    pub limit: u64,
}

/// Summaries of the fragments already walked; `None` while one is being walked (a cycle).
type Memo = HashMap<Name, Option<Cost>>;

struct Walk<'a> {
    document: &'a ExecutableDocument,
    /// What each declared variable looks like, read once per operation.
    variables: HashMap<&'a str, Shape>,
    memo: Memo,
    /// Selection sets open on the walk's stack, fragments included.
    level: u32,
    /// The walk stops as soon as the document is larger than this: nothing it measures
    /// after that can make the document acceptable again.
    max_selections: u64,
}

/// What the cost model needs of an argument's value, read without copying it.
#[derive(Clone, Copy, Debug, Default)]
struct Shape {
    null: bool,
    /// Items, for a list.
    len: Option<usize>,
    int: Option<i64>,
    /// An object with a non-null `search` key (a search filter).
    has_search: bool,
}

impl Shape {
    const NULL: Shape = Shape {
        null: true,
        len: None,
        int: None,
        has_search: false,
    };

    fn of_json(value: &Json) -> Shape {
        match value {
            Json::Null => Shape::NULL,
            Json::Number(number) => Shape {
                int: number.as_i64(),
                ..Shape::default()
            },
            Json::Array(items) => Shape {
                len: Some(items.len()),
                ..Shape::default()
            },
            Json::Object(fields) => Shape {
                has_search: fields.get("search").is_some_and(|search| !search.is_null()),
                ..Shape::default()
            },
            _ => Shape::default(),
        }
    }
}

/// How deep the walk itself may go: selection sets nested through fields and fragment
/// spreads together. A chain of 1,000 fragments each spreading the next is shallow for
/// the engine's depth checks (spreads add no depth) but would take this walk 1,000 stack
/// frames deep; it is refused long before that.
pub const MAX_WALK_DEPTH: u32 = 64;

/// Measures `document` and checks it against `limits`: the operation `operation_name`
/// picks against every limit; every other operation and every fragment definition
/// against the size and depth limits too, because the engine's validation walks all of
/// them whichever one runs. Unknown operations and fragments are left to the engine's
/// validation (they cost nothing here); a fragment cycle is refused.
pub fn check(
    document: &ExecutableDocument,
    operation_name: Option<&str>,
    variables: &serde_json::Map<String, Json>,
    limits: &Limits,
) -> Result<Cost, Refusal> {
    let selected = match (&document.operations, operation_name) {
        (DocumentOperations::Single(operation), _) => Some(operation),
        (DocumentOperations::Multiple(operations), Some(name)) => operations.get(name),
        (DocumentOperations::Multiple(operations), None) if operations.len() == 1 => {
            operations.values().next()
        }
        (DocumentOperations::Multiple(_), None) => None,
    };
    let operations = document.operations.iter().count();
    if operations > MAX_OPERATIONS {
        return Err(Refusal {
            message: format!(
                "the document holds {operations} operations (at most {MAX_OPERATIONS}): send the ones you run"
            ),
            measured: operations as u64,
            limit: MAX_OPERATIONS as u64,
        });
    }
    let max_selections = limits.max_selections as u64;
    let mut chosen = Cost::default();
    // The engine validates every operation: their sizes add up.
    let mut all = Cost::default();
    for (_, operation) in document.operations.iter() {
        let cost = measure(document, operation, variables, max_selections)?;
        if selected.is_some_and(|selected| std::ptr::eq(selected, operation)) {
            judge(&cost, limits)?;
            chosen = cost;
        } else {
            judge(&size_only(cost), limits)?;
        }
        all.selections = all.selections.saturating_add(cost.selections);
        judge(&all, limits)?;
    }
    // A fragment alone has no context (it may sit under introspection, where depth is
    // allowed): its expanded size is what the engine pays for it.
    let mut walk = Walk::new(document, HashMap::new(), max_selections);
    for name in document.fragments.keys() {
        let cost = walk.fragment(name)?;
        judge(
            &Cost {
                selections: cost.selections,
                ..Cost::default()
            },
            limits,
        )?;
    }
    Ok(chosen)
}

/// The parts of a cost that the engine's validation pays whether or not it runs.
fn size_only(cost: Cost) -> Cost {
    Cost {
        selections: cost.selections,
        depth: cost.depth,
        full_depth: cost.full_depth,
        ..Cost::default()
    }
}

fn measure<'a>(
    document: &'a ExecutableDocument,
    operation: &'a async_graphql::Positioned<async_graphql::parser::types::OperationDefinition>,
    variables: &serde_json::Map<String, Json>,
    max_selections: u64,
) -> Result<Cost, Refusal> {
    // Only declared variables count (the engine refuses the others), each read once.
    let shapes = operation
        .node
        .variable_definitions
        .iter()
        .map(|definition| {
            let name = definition.node.name.node.as_str();
            let shape = match variables.get(name) {
                Some(value) => Shape::of_json(value),
                None => definition
                    .node
                    .default_value
                    .as_ref()
                    .and_then(|default| default.node.clone().into_json().ok())
                    .map_or(Shape::NULL, |value| Shape::of_json(&value)),
            };
            (name, shape)
        })
        .collect();
    let mut walk = Walk::new(document, shapes, max_selections);
    // Every field reports itself as one mutation; only the root's sum means anything, and
    // only in a mutation.
    let mut cost = walk.selection_set(&operation.node.selection_set.node)?;
    if operation.node.ty != OperationType::Mutation {
        cost.mutations = 0;
        cost.outbound = 0;
    }
    Ok(cost)
}

/// A limit: what was measured, the most allowed, and the message from both.
type Check<'a> = (u64, u64, &'a dyn Fn(u64, u64) -> String);

/// The first limit `cost` is over, in the order a client should fix them.
fn judge(cost: &Cost, limits: &Limits) -> Result<(), Refusal> {
    let checks: [Check; 6] = [
        (
            cost.selections,
            limits.max_selections as u64,
            &|measured, limit| {
                format!("the query expands to {measured} selections (at most {limit}): spread fewer fragments or ask for fewer fields")
            },
        ),
        (
            u64::from(cost.depth),
            limits.max_depth as u64,
            &|measured, limit| format!("the query nests {measured} levels deep (at most {limit})"),
        ),
        (
            u64::from(cost.full_depth),
            u64::from(MAX_INTROSPECTION_DEPTH),
            &|measured, limit| {
                format!("the introspection query nests {measured} levels deep (at most {limit})")
            },
        ),
        (
            cost.cost(),
            limits.max_complexity as u64,
            &|measured, limit| {
                format!("the query would cost {measured} (at most {limit}; a query costs {QUERY_COST}, a search {SEARCH_COST}, a page multiplies its items): ask for smaller pages, fewer fields or fewer aliases")
            },
        ),
        (
            cost.mutations,
            u64::from(limits.max_mutations),
            &|measured, limit| {
                format!("the request runs {measured} mutations (at most {limit} a request): send them in several requests")
            },
        ),
        (
            cost.outbound,
            u64::from(limits.max_outbound_mutations),
            &|measured, limit| {
                format!("the request calls out to platforms {measured} times (syncSource, replyToInteraction: at most {limit} a request)")
            },
        ),
    ];
    match checks
        .into_iter()
        .find(|(measured, limit, _)| measured > limit)
    {
        Some((measured, limit, message)) => Err(Refusal {
            message: message(measured, limit),
            measured,
            limit,
        }),
        None => Ok(()),
    }
}

impl<'a> Walk<'a> {
    fn new(
        document: &'a ExecutableDocument,
        variables: HashMap<&'a str, Shape>,
        max_selections: u64,
    ) -> Walk<'a> {
        Walk {
            document,
            variables,
            memo: HashMap::new(),
            level: 0,
            max_selections,
        }
    }

    /// The shape of an argument's value, variables looked up, nothing copied.
    fn shape(&self, value: &async_graphql_value::Value) -> Shape {
        use async_graphql_value::Value as V;
        match value {
            V::Variable(name) => self
                .variables
                .get(name.as_str())
                .copied()
                .unwrap_or(Shape::NULL),
            V::Null => Shape::NULL,
            V::Number(number) => Shape {
                int: number.as_i64(),
                ..Shape::default()
            },
            V::List(items) => Shape {
                len: Some(items.len()),
                ..Shape::default()
            },
            V::Object(fields) => Shape {
                has_search: fields
                    .get("search")
                    .is_some_and(|search| !self.shape(search).null),
                ..Shape::default()
            },
            _ => Shape::default(),
        }
    }

    fn selection_set(&mut self, set: &'a SelectionSet) -> Result<Cost, Refusal> {
        if self.level >= MAX_WALK_DEPTH {
            return Err(Refusal {
                message: format!(
                    "the query nests selections and fragment spreads more than {MAX_WALK_DEPTH} deep"
                ),
                measured: u64::from(self.level) + 1,
                limit: u64::from(MAX_WALK_DEPTH),
            });
        }
        self.level += 1;
        let total = self.selection_set_inner(set);
        self.level -= 1;
        total
    }

    fn selection_set_inner(&mut self, set: &'a SelectionSet) -> Result<Cost, Refusal> {
        let mut total = Cost::default();
        for item in &set.items {
            let part = match &item.node {
                Selection::Field(field) => self.field(&field.node)?,
                Selection::InlineFragment(inline) => {
                    self.selection_set(&inline.node.selection_set.node)?
                }
                Selection::FragmentSpread(spread) => {
                    self.fragment(&spread.node.fragment_name.node)?
                }
            };
            if total.selections.saturating_add(part.selections) > self.max_selections {
                return Err(Refusal {
                    message: format!(
                        "the query expands to more than {} selections: spread fewer fragments or ask for fewer fields",
                        self.max_selections
                    ),
                    measured: total.selections.saturating_add(part.selections),
                    limit: self.max_selections,
                });
            }
            total = Cost {
                selections: total.selections.saturating_add(part.selections),
                values: total.values.saturating_add(part.values),
                queries: total.queries.saturating_add(part.queries),
                depth: total.depth.max(part.depth),
                full_depth: total.full_depth.max(part.full_depth),
                mutations: total.mutations.saturating_add(part.mutations),
                outbound: total.outbound.saturating_add(part.outbound),
            };
        }
        Ok(total)
    }

    /// A fragment's summary, walked once however often it is spread.
    fn fragment(&mut self, name: &Name) -> Result<Cost, Refusal> {
        match self.memo.get(name) {
            Some(Some(cost)) => return Ok(*cost),
            Some(None) => {
                return Err(Refusal {
                    message: format!("the fragment `{name}` spreads itself"),
                    measured: 0,
                    limit: 0,
                })
            }
            None => {}
        }
        let Some(fragment) = self.document.fragments.get(name) else {
            return Ok(Cost::default());
        };
        self.memo.insert(name.clone(), None);
        let cost = self.selection_set(&fragment.node.selection_set.node)?;
        self.memo.insert(name.clone(), Some(cost));
        Ok(cost)
    }

    fn field(&mut self, field: &'a async_graphql::parser::types::Field) -> Result<Cost, Refusal> {
        let name = field.name.node.as_str();
        let children = self.selection_set(&field.selection_set.node)?;
        let introspection = name == "__schema" || name == "__type";
        let argument = |wanted: &str| {
            field
                .arguments
                .iter()
                .find(|(argument, _)| argument.node.as_str() == wanted)
                .map(|(_, value)| self.shape(&value.node))
        };
        let mut base: u64 = 1;
        let query = if !field.arguments.is_empty() || QUERY_FIELDS.contains(&name) {
            QUERY_COST
        } else {
            0
        };
        let searches = SEARCH_FIELDS.contains(&name)
            || argument("search").is_some_and(|value| !value.null)
            || argument("filter").is_some_and(|filter| filter.has_search);
        if searches || HEAVY_READ_FIELDS.contains(&name) {
            base += SEARCH_COST;
        }
        if name == "__schema" {
            base += SCHEMA_INTROSPECTION_COST;
        } else if name == "__type" {
            base += TYPE_INTROSPECTION_COST;
        }
        let size = |value: Option<Shape>| {
            value
                .and_then(|value| value.int)
                .map(|size| size.clamp(1, i64::from(MAX_PAGE_SIZE)) as u64)
        };
        let multiplier = if let Some(ids) = argument("ids") {
            // Each id is one object: its children are paid for once per id.
            ids.len.map_or(1, |len| len.max(1) as u64)
        } else if field.arguments.iter().any(|(argument, _)| {
            matches!(
                argument.node.as_str(),
                "first" | "last" | "after" | "before"
            )
        }) || PAGED_FIELDS.contains(&name)
        {
            size(argument("first"))
                .or_else(|| size(argument("last")))
                .unwrap_or(DEFAULT_PAGE_SIZE as u64)
        } else {
            1
        };
        let is_outbound = OUTBOUND_MUTATIONS.contains(&name);
        let values = base.saturating_add(children.values.saturating_mul(multiplier));
        let queries = query.saturating_add(children.queries);
        Ok(Cost {
            // The document's size as the engine walks it: pages do not multiply it.
            selections: children.selections.saturating_add(1),
            values,
            queries,
            depth: if introspection {
                1
            } else {
                children.depth.saturating_add(1)
            },
            full_depth: children.full_depth.saturating_add(1),
            mutations: 1,
            outbound: u64::from(is_outbound),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cost_of(query: &str) -> Result<Cost, Refusal> {
        let document = async_graphql::parser::parse_query(query).expect("parses");
        check(&document, None, &serde_json::Map::new(), &Limits::default())
    }

    #[test]
    fn fragments_that_double_at_every_level_are_refused_without_expanding_them() {
        let mut query = String::from("query { ...F0 }\n");
        for level in 0..40 {
            query.push_str(&format!(
                "fragment F{level} on Query {{ ...F{next} ...F{next} }}\n",
                next = level + 1
            ));
        }
        query.push_str("fragment F40 on Query { __typename }\n");
        let started = std::time::Instant::now();
        let refusal = cost_of(&query).unwrap_err();
        assert!(refusal.message.contains("selections"), "{refusal:?}");
        // Stopped as soon as the document was too large, not after expanding it.
        assert!(refusal.measured > refusal.limit, "{refusal:?}");
        // Not a timing assert on the machine: 40 levels walked naively would never end.
        assert!(started.elapsed() < std::time::Duration::from_secs(5));
    }

    #[test]
    fn a_long_chain_of_fragments_is_refused_without_a_deep_walk() {
        // Spreads add no depth for the engine; 10,000 frames would overflow the stack.
        let mut query = String::from("{ ...F0 }\n");
        for level in 0..10_000 {
            query.push_str(&format!(
                "fragment F{level} on Query {{ ...F{} }}\n",
                level + 1
            ));
        }
        query.push_str("fragment F10000 on Query { __typename }\n");
        let refusal = cost_of(&query).unwrap_err();
        assert!(refusal.message.contains("fragment spreads"), "{refusal:?}");
    }

    #[test]
    fn a_bomb_in_an_operation_that_does_not_run_is_refused_too() {
        let mut query = String::from("query A { __typename } query B { ...F0 }\n");
        for level in 0..30 {
            query.push_str(&format!(
                "fragment F{level} on Query {{ ...F{next} ...F{next} }}\n",
                next = level + 1
            ));
        }
        query.push_str("fragment F30 on Query { __typename }\n");
        let document = async_graphql::parser::parse_query(&query).unwrap();
        let refusal = check(
            &document,
            Some("A"),
            &serde_json::Map::new(),
            &Limits::default(),
        )
        .unwrap_err();
        assert!(refusal.message.contains("selections"), "{refusal:?}");
        // And so is one only defined, never spread.
        let unused = query.replace("query B { ...F0 }", "");
        let document = async_graphql::parser::parse_query(&unused).unwrap();
        assert!(check(
            &document,
            Some("A"),
            &serde_json::Map::new(),
            &Limits::default()
        )
        .is_err());
    }

    #[test]
    fn every_connection_field_of_the_schema_is_known_as_a_page() {
        let sdl = crate::graphql::sdl();
        // A field whose arguments are described spans lines: `name(` … `): Type`.
        let mut opened = "";
        for line in sdl.lines() {
            let line = line.trim();
            if let Some(name) = line.strip_suffix('(') {
                opened = name;
            }
            let Some((head, ty)) = line.rsplit_once(": ") else {
                continue;
            };
            if !(ty.ends_with("Connection!") || ty.ends_with("Connection")) {
                continue;
            }
            let name = match head.split('(').next().unwrap_or(head) {
                ")" => opened,
                name => name,
            };
            assert!(
                PAGED_FIELDS.contains(&name),
                "{name} returns a page: add it to PAGED_FIELDS"
            );
        }
    }

    #[test]
    fn a_page_inside_a_fragment_is_still_multiplied() {
        let spread = cost_of(
            r#"{ customers { ... on CustomerConnection { nodes { timeline(search: "x", first: 1) { totalCount } } } } }"#,
        )
        .unwrap();
        assert!(spread.values >= 20 * SEARCH_COST, "{spread:?}");
    }

    #[test]
    fn big_variables_are_read_once_and_many_operations_add_up() {
        let ids: Vec<u32> = vec![0; 250_000];
        let variables = serde_json::json!({ "i": ids });
        let fields: String = (0..2_000)
            .map(|n| format!("a{n}: nodes(ids: $i) {{ id }} "))
            .collect();
        let document =
            async_graphql::parser::parse_query(format!("query($i: [ID!]!) {{ {fields} }}"))
                .unwrap();
        let started = std::time::Instant::now();
        assert!(check(
            &document,
            None,
            variables.as_object().unwrap(),
            &Limits::default()
        )
        .is_err());
        assert!(started.elapsed() < std::time::Duration::from_secs(5));
        let mut many = String::from("fragment F on Query { ");
        many.push_str(&"viewer { role } ".repeat(100));
        many.push_str("}\n");
        for n in 0..40 {
            many.push_str(&format!("query Q{n} {{ ...F }}\n"));
        }
        let document = async_graphql::parser::parse_query(&many).unwrap();
        let refusal = check(
            &document,
            Some("Q0"),
            &serde_json::Map::new(),
            &Limits::default(),
        )
        .unwrap_err();
        assert!(refusal.message.contains("selections"), "{refusal:?}");
        let too_many: String = (0..60)
            .map(|n| format!("query Q{n} {{ __typename }}\n"))
            .collect();
        let document = async_graphql::parser::parse_query(&too_many).unwrap();
        assert!(check(
            &document,
            Some("Q0"),
            &serde_json::Map::new(),
            &Limits::default()
        )
        .is_err());
    }

    #[test]
    fn a_fragment_cycle_is_refused() {
        let refusal = cost_of("{ ...A } fragment A on Query { ...B } fragment B on Query { ...A }")
            .unwrap_err();
        assert!(refusal.message.contains("spreads itself"), "{refusal:?}");
    }

    #[test]
    fn aliases_of_a_search_add_up() {
        let one =
            cost_of(r#"{ customers(first: 1, filter: {search: "a"}) { totalCount } }"#).unwrap();
        assert_eq!(one.cost(), 1 + QUERY_COST + SEARCH_COST + 1 + QUERY_COST);
        let many: String = (0..1_000)
            .map(|i| {
                format!(r#"a{i}: customers(first: 1, filter: {{search: "a"}}) {{ totalCount }} "#)
            })
            .collect();
        let refusal = cost_of(&format!("{{ {many} }}")).unwrap_err();
        assert!(refusal.message.contains("cost"), "{refusal:?}");
    }

    #[test]
    fn service_levels_cost_a_query_and_service_metrics_a_search() {
        let settings = cost_of("{ slaRules { channel } businessHours { timeZone } }").unwrap();
        assert_eq!(settings.cost(), 1 + 1 + QUERY_COST + 1 + 1 + QUERY_COST);
        let metrics = cost_of(
            r#"{ serviceMetrics(range: {from: "2026-01-01T00:00:00Z", to: "2026-02-01T00:00:00Z"}) { timeZone } }"#,
        )
        .unwrap();
        assert_eq!(metrics.cost(), 1 + SEARCH_COST + 1 + QUERY_COST);
    }

    #[test]
    fn the_data_quality_report_costs_a_search_and_its_trend_a_query() {
        let report = cost_of("{ dataQuality { score trend { day } } }").unwrap();
        assert_eq!(report.cost(), 1 + SEARCH_COST + 1 + 1 + QUERY_COST + 1);
        let trend = cost_of("{ dataQuality { trend(days: 7) { day } } }").unwrap();
        assert_eq!(trend.cost(), report.cost() - 1);
    }

    #[test]
    fn pages_multiply_and_nodes_multiply_by_their_ids() {
        let page = cost_of("{ customers(first: 50) { edges { node { id } } } }").unwrap();
        // Per item: `edges`, `node` and `id`.
        assert_eq!(page.cost(), 1 + QUERY_COST + 50 * 3);
        let ids: Vec<String> = (0..100).map(|i| format!("\"cus_{i}\"")).collect();
        let nodes = cost_of(&format!("{{ nodes(ids: [{}]) {{ id }} }}", ids.join(","))).unwrap();
        assert_eq!(nodes.cost(), 1 + QUERY_COST + 100);
    }

    #[test]
    fn a_relation_below_a_page_costs_its_query_once_since_loaders_batch_it() {
        let nested = cost_of(
            "{ customers(first: 100) { edges { node { timeline(first: 10) { totalCount } } } } }",
        )
        .unwrap();
        // Queries: customers, timeline, totalCount, once each; values per item.
        assert_eq!(nested.queries, 3 * QUERY_COST);
        assert_eq!(nested.values, 1 + 100 * (1 + 1 + (1 + 10)));
        // A search below a page runs once per item: it is multiplied.
        let searching = cost_of(
            r#"{ customers(first: 100) { edges { node { timeline(first: 1, search: "x") { totalCount } } } } }"#,
        )
        .unwrap();
        assert!(searching.values > 100 * SEARCH_COST);
    }

    #[test]
    fn variables_set_the_page_size() {
        let document = async_graphql::parser::parse_query(
            "query($n: Int = 5) { customers(first: $n) { edges { node { id } } } }",
        )
        .unwrap();
        let with_default =
            check(&document, None, &serde_json::Map::new(), &Limits::default()).unwrap();
        assert_eq!(with_default.cost(), 1 + QUERY_COST + 5 * 3);
        let variables = serde_json::json!({ "n": 100 });
        let given = check(
            &document,
            None,
            variables.as_object().unwrap(),
            &Limits::default(),
        )
        .unwrap();
        assert_eq!(given.cost(), 1 + QUERY_COST + 100 * 3);
    }

    #[test]
    fn introspection_is_deep_but_allowed_and_costs_the_schema() {
        let cost = cost_of(
            "{ __schema { types { fields { type { ofType { ofType { ofType { ofType { ofType { ofType { ofType { ofType { name } } } } } } } } } } } } }",
        )
        .unwrap();
        assert_eq!(cost.depth, 1);
        assert_eq!(cost.full_depth, 13);
        assert!(cost.cost() > SCHEMA_INTROSPECTION_COST);
        let many: String = (0..100)
            .map(|i| format!("a{i}: __schema {{ queryType {{ name }} }} "))
            .collect();
        assert!(cost_of(&format!("{{ {many} }}")).is_err());
    }

    #[test]
    fn outbound_mutations_are_capped_per_request() {
        let many: String = (0..300)
            .map(|i| format!(r#"s{i}: syncSource(input: {{id: "src_x"}}) {{ newItems }} "#))
            .collect();
        let refusal = cost_of(&format!("mutation {{ {many} }}")).unwrap_err();
        assert!(refusal.message.contains("mutations") || refusal.message.contains("platforms"));
        let refusal = cost_of(
            r#"mutation { a: syncSource(input: {id: "x"}) { newItems } b: syncSource(input: {id: "x"}) { newItems } c: syncSource(input: {id: "x"}) { newItems } d: syncSource(input: {id: "x"}) { newItems } }"#,
        )
        .unwrap_err();
        assert!(refusal.message.contains("platforms"), "{refusal:?}");
    }
}
