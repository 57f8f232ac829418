//! Response fields in the order the query selected them (GraphQL spec, "CollectFields"
//! and "ExecuteSelectionSet": an ordered map in the order of the selection). The engine
//! resolves an object's fields all together and adds each to the answer as it completes,
//! so `{ timeline { … } displayName }` came back `displayName` first; snapshot tests and
//! people reading answers notice. [`reorder`] puts every object of the answer back in the
//! selection's order, walking the answer (bounded by `max_values`), not the document.
//!
//! Fragments on different types that select the same fields in different orders: the
//! first fragment's order wins (the answer does not say which type each object is).
//!
//! Linear in the answer: each level of the selection is collected once (shared by every
//! object it answers), each key placed by a scan of the level's keys (through a map for a
//! level of many aliases), and an object already in order is left as it is.

use std::cell::OnceCell;
use std::collections::HashMap;

use async_graphql::parser::types::{
    ExecutableDocument, OperationDefinition, Selection, SelectionSet,
};
use async_graphql::{Name, Value};

/// The selection sets that apply to one response key (a field asked for several times,
/// through fragments or repeated, merges its sub-selections).
type Sets<'d> = Vec<&'d SelectionSet>;

/// The response keys of one level in selection order, each with its sub-selections and
/// the level below it (collected on first use, then shared by every object the level
/// answers: a page of 50 customers walks its `node` level once, not 50 times), and where
/// each key stands.
struct Collected<'d> {
    fields: Vec<Collecting<'d>>,
    index: Index<'d>,
}

/// One response key of a level.
struct Collecting<'d> {
    key: &'d Name,
    sets: Sets<'d>,
    below: OnceCell<Collected<'d>>,
}

/// Where each key of a level stands: a scan of the keys for a level of a few (cheaper than
/// hashing each key of every object), a map for one of many aliases.
enum Index<'d> {
    Scan,
    Map(HashMap<&'d str, usize>),
}

/// Levels with more keys than this are looked up through a map.
const SCANNED_KEYS: usize = 16;

impl<'d> Collected<'d> {
    fn place(&self, key: &str) -> Option<usize> {
        match &self.index {
            Index::Scan => self
                .fields
                .iter()
                .position(|field| field.key.as_str() == key),
            Index::Map(map) => map.get(key).copied(),
        }
    }
}

/// Orders every object of `data` as `operation_name`'s selection in `document` does, and
/// counts its values: each field of an object and each item of a list, at any depth (what
/// `limits.max_values` bounds; a leaf field's list counts its items, a JSON value is one).
pub(crate) fn reorder(
    document: &ExecutableDocument,
    operation_name: Option<&str>,
    data: &mut Value,
) -> u64 {
    match operation(document, operation_name) {
        Some(operation) => apply(document, &[&operation.selection_set.node], data),
        None => 0,
    }
}

/// The operation `operation_name` picks in `document` (the first one without a name).
pub(crate) fn operation<'d>(
    document: &'d ExecutableDocument,
    operation_name: Option<&str>,
) -> Option<&'d OperationDefinition> {
    let found = match operation_name {
        Some(name) => document
            .operations
            .iter()
            .find(|(op_name, _)| op_name.map(|n| n.as_str()) == Some(name)),
        None => document.operations.iter().next(),
    };
    found.map(|(_, operation)| &operation.node)
}

fn apply(document: &ExecutableDocument, sets: &[&SelectionSet], value: &mut Value) -> u64 {
    match value {
        Value::List(_) | Value::Object(_) => {
            let collected = collect(document, sets);
            apply_collected(document, &collected, value)
        }
        _ => 0,
    }
}

/// The values below a leaf field's value: the items of a list of scalars.
fn leaf_values(value: &Value) -> u64 {
    match value {
        Value::List(items) => items.iter().map(|item| 1 + leaf_values(item)).sum(),
        _ => 0,
    }
}

/// Orders one value (an object, or a list of them at any depth) by `collected`: a sort by
/// each key's place, skipped when the object is in order already (an engine that kept the
/// order costs one pass).
fn apply_collected<'d>(
    document: &'d ExecutableDocument,
    collected: &Collected<'d>,
    value: &mut Value,
) -> u64 {
    match value {
        Value::List(items) => items
            .iter_mut()
            .map(|item| 1 + apply_collected(document, collected, item))
            .sum(),
        Value::Object(map) => {
            let place = |key: &Name| collected.place(key.as_str()).unwrap_or(usize::MAX);
            if !map.keys().map(place).is_sorted() {
                map.sort_by_cached_key(|key, _| place(key));
            }
            let mut values = 0;
            for (key, child) in map.iter_mut() {
                let field = collected
                    .place(key.as_str())
                    .map(|at| &collected.fields[at])
                    .filter(|field| !field.sets.is_empty());
                values += 1 + match field {
                    Some(field) if matches!(child, Value::List(_) | Value::Object(_)) => {
                        let below = field.below.get_or_init(|| collect(document, &field.sets));
                        apply_collected(document, below, child)
                    }
                    Some(_) => 0,
                    None => leaf_values(child),
                };
            }
            values
        }
        _ => 0,
    }
}

/// The response keys `sets` select, in order, each with its sub-selections; a fragment
/// is expanded once per level (as CollectFields' visited fragments), so no chain of
/// spreads makes this grow beyond the document's size.
fn collect<'d>(document: &'d ExecutableDocument, sets: &[&'d SelectionSet]) -> Collected<'d> {
    let mut fields: Vec<Collecting<'d>> = Vec::new();
    let mut index: HashMap<&'d str, usize> = HashMap::new();
    let mut visited: Vec<&'d Name> = Vec::new();
    let mut stack: Vec<&'d SelectionSet> = sets.iter().rev().copied().collect();
    // Depth first, in document order: a stack of sets to visit, items taken front to back.
    let mut pending: Vec<std::slice::Iter<'d, async_graphql::Positioned<Selection>>> = Vec::new();
    if let Some(first) = stack.pop() {
        pending.push(first.items.iter());
    }
    loop {
        let Some(iter) = pending.last_mut() else {
            match stack.pop() {
                Some(set) => {
                    pending.push(set.items.iter());
                    continue;
                }
                None => break,
            }
        };
        let Some(selection) = iter.next() else {
            pending.pop();
            continue;
        };
        match &selection.node {
            Selection::Field(field) => {
                let key = &field.node.response_key().node;
                let sub = &field.node.selection_set.node;
                match index.get(key.as_str()) {
                    Some(&at) => fields[at].sets.push(sub),
                    None => {
                        index.insert(key.as_str(), fields.len());
                        fields.push(Collecting {
                            key,
                            sets: vec![sub],
                            below: OnceCell::new(),
                        });
                    }
                }
            }
            Selection::InlineFragment(fragment) => {
                pending.push(fragment.node.selection_set.node.items.iter());
            }
            Selection::FragmentSpread(spread) => {
                let name = &spread.node.fragment_name.node;
                if visited.contains(&name) {
                    continue;
                }
                visited.push(name);
                if let Some(fragment) = document.fragments.get(name) {
                    pending.push(fragment.node.selection_set.node.items.iter());
                }
            }
        }
    }
    // A leaf field's empty selection set says nothing.
    for field in &mut fields {
        field.sets.retain(|set| !set.items.is_empty());
    }
    let index = if fields.len() > SCANNED_KEYS {
        Index::Map(index)
    } else {
        Index::Scan
    };
    Collected { fields, index }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ordered(query: &str, answer: serde_json::Value) -> String {
        let document = async_graphql::parser::parse_query(query).unwrap();
        let mut value = Value::from_json(answer).unwrap();
        reorder(&document, None, &mut value);
        value.into_json().unwrap().to_string()
    }

    #[test]
    fn objects_follow_the_selection_through_lists_aliases_and_fragments() {
        let query = r#"
            query { customers { edges { node { timeline { totalCount } ...Names id alias: tags { name } } } } }
            fragment Names on Customer { displayName ... on Customer { givenName } }
        "#;
        let answer = serde_json::json!({ "customers": { "edges": [
            { "node": { "id": "1", "displayName": "A", "alias": [], "givenName": null, "timeline": { "totalCount": 1 } } },
            { "node": { "alias": [{ "name": "vip" }], "id": "2", "timeline": { "totalCount": 0 }, "givenName": "B", "displayName": "B" } },
        ] } });
        assert_eq!(
            ordered(query, answer),
            r#"{"customers":{"edges":[{"node":{"timeline":{"totalCount":1},"displayName":"A","givenName":null,"id":"1","alias":[]}},{"node":{"timeline":{"totalCount":0},"displayName":"B","givenName":"B","id":"2","alias":[{"name":"vip"}]}}]}}"#
        );
    }

    #[test]
    fn a_field_asked_twice_keeps_its_first_place_and_merges_its_selections() {
        let query = "{ viewer { role } me { name } viewer { workspace { id name } } }";
        let answer = serde_json::json!({ "me": null, "viewer": { "workspace": { "name": "w", "id": "1" }, "role": "ADMIN" } });
        assert_eq!(
            ordered(query, answer),
            r#"{"viewer":{"role":"ADMIN","workspace":{"id":"1","name":"w"}},"me":null}"#
        );
    }

    #[test]
    fn a_level_of_many_aliases_is_ordered_like_one_of_a_few() {
        // More keys than a level scans: placed through its map, in every item of a list.
        let aliases: Vec<String> = (0..40).map(|n| format!("a{n}: displayName")).collect();
        let query = format!("{{ customers {{ nodes {{ {} id }} }} }}", aliases.join(" "));
        let mut node = serde_json::Map::new();
        node.insert("id".into(), serde_json::json!("1"));
        for n in (0..40).rev() {
            node.insert(format!("a{n}"), serde_json::json!(n));
        }
        let answer = serde_json::json!({ "customers": { "nodes": [node.clone(), node] } });
        let keys: Vec<String> = (0..40).map(|n| format!(r#""a{n}":{n}"#)).collect();
        let one = format!(r#"{{{},"id":"1"}}"#, keys.join(","));
        assert_eq!(
            ordered(&query, answer),
            format!(r#"{{"customers":{{"nodes":[{one},{one}]}}}}"#)
        );
    }

    #[test]
    fn spreads_repeated_at_one_level_are_walked_once() {
        // 2^30 paths if every spread were expanded again.
        let mut query = String::from("{ ...F0 }");
        for n in 0..30 {
            query.push_str(&format!(
                " fragment F{n} on Query {{ ...F{m} ...F{m} a{n}: viewer {{ role }} }}",
                m = n + 1
            ));
        }
        query.push_str(" fragment F30 on Query { me { id } }");
        let answer = serde_json::json!({ "me": null, "a0": { "role": "X" } });
        assert_eq!(ordered(&query, answer), r#"{"me":null,"a0":{"role":"X"}}"#);
    }
}

#[cfg(test)]
mod counting {
    use super::*;

    fn count(query: &str, answer: serde_json::Value) -> u64 {
        let document = async_graphql::parser::parse_query(query).unwrap();
        reorder(&document, None, &mut Value::from_json(answer).unwrap())
    }

    #[test]
    fn every_field_and_list_item_is_one_value_and_a_json_value_is_one() {
        // viewer, role, workspace, id, name.
        assert_eq!(
            count(
                "{ viewer { role workspace { id name } } }",
                serde_json::json!(
                    { "viewer": { "role": "ADMIN", "workspace": { "id": "1", "name": "w" } } }
                )
            ),
            5
        );
        // nodes + 2 items × (item + notes + 3 × (item + body)), a null item, a list of
        // scalars (field + 2 items), a JSON object (one value whatever it holds).
        let query = "{ nodes(ids: []) { ... on Customer { notes { body } } } \
                     secretsSet customAttributes }";
        let note = serde_json::json!({ "body": "n" });
        let customer = serde_json::json!({ "notes": [note, note, note] });
        assert_eq!(
            count(
                query,
                serde_json::json!({
                    "nodes": [customer, customer, null],
                    "secretsSet": ["a", "b"],
                    "customAttributes": { "a": 1, "b": [1, 2, 3] },
                })
            ),
            1 + 2 * (1 + 1 + 3 * 2) + 1 + 3 + 1
        );
        assert_eq!(
            count("{ viewer { role } }", serde_json::json!({ "viewer": null })),
            1
        );
    }
}
