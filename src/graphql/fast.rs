//! Objects whose column fields are answered inline, without a resolver future each.
//!
//! The engine resolves every field of an object as a boxed future in a `FuturesUnordered`
//! (two allocations, a wake-up and a poll a field), even a field that only copies a
//! column. A page of 50 customers with their identities and last 5 interactions is about
//! 1,800 values, and that machinery was the largest share of the server's CPU on it.
//!
//! [`Fast`] wraps an object whose [`Plain`] fields are read from its row: one pass over
//! the selection answers them in place, and only the other fields (arguments, relations,
//! anything [`Plain::plain`] does not know) go through the object's own resolver, side
//! by side as the engine runs them. The schema does not change: `Fast<T>` is registered
//! as `T`. Answers are put in the selection's order afterwards ([`super::order`]), as
//! for every object.
//!
//! `@skip` / `@include` are applied to the document before execution and the schema has
//! no custom directive, so a field with a directive left is an error the resolver path
//! reports, not something to run here.

use std::borrow::Cow;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use async_graphql::connection::{Connection, Edge, EmptyFields, PageInfo};
use async_graphql::indexmap::IndexMap;
use async_graphql::parser::types::{Field, Selection};
use async_graphql::registry::Registry;
use async_graphql::resolver_utils::{enum_value, EnumType};
use async_graphql::{
    ContainerType, Context, ContextSelectionSet, Name, ObjectType, OutputType, Positioned,
    ScalarType, ServerError, ServerResult, Value,
};
use futures_util::stream::{FuturesUnordered, StreamExt};

use crate::domain::page::Cursor;

/// An object some of whose fields are its row's columns.
pub trait Plain: ContainerType {
    /// `field`'s value when it is read from the row alone, without arguments; `None`
    /// sends the field to the object's resolver. Must answer exactly what the resolver
    /// of the same field answers (`loaders::fields_answered_inline_equal_those_answered_by_their_resolvers` checks every field).
    fn plain(&self, field: &str) -> Option<Value>;
}

/// `T`, answered through [`Plain`]. See the module.
pub struct Fast<T>(pub T);

/// A scalar as the engine writes it.
pub fn scalar<S: ScalarType>(value: &S) -> Value {
    value.to_value()
}

/// An optional scalar: `null` when absent.
pub fn opt<S: ScalarType>(value: &Option<S>) -> Value {
    value.as_ref().map_or(Value::Null, ScalarType::to_value)
}

/// A string column.
pub fn text(value: &str) -> Value {
    Value::String(value.to_owned())
}

/// An optional string column.
pub fn opt_text(value: Option<&str>) -> Value {
    value.map_or(Value::Null, text)
}

/// An enum as the engine writes it.
pub fn enumeration<E: EnumType>(value: E) -> Value {
    enum_value(value)
}

/// An optional enum.
pub fn opt_enumeration<E: EnumType>(value: Option<E>) -> Value {
    value.map_or(Value::Null, enum_value)
}

impl<T: Plain> OutputType for Fast<T> {
    fn type_name() -> Cow<'static, str> {
        T::type_name()
    }

    fn qualified_type_name() -> String {
        T::qualified_type_name()
    }

    fn introspection_type_name(&self) -> Cow<'static, str> {
        self.0.introspection_type_name()
    }

    fn create_type_info(registry: &mut Registry) -> String {
        T::create_type_info(registry)
    }

    async fn resolve(
        &self,
        ctx: &ContextSelectionSet<'_>,
        _field: &Positioned<Field>,
    ) -> ServerResult<Value> {
        answer(ctx, self).await
    }
}

impl<T: Plain> ContainerType for Fast<T> {
    async fn resolve_field(&self, ctx: &Context<'_>) -> ServerResult<Option<Value>> {
        self.0.resolve_field(ctx).await
    }
}

impl<T: Plain + ObjectType> ObjectType for Fast<T> {}

impl<T: Plain> Inline for Fast<T> {
    fn inline<'a>(
        &'a self,
        _ctx: &ContextSelectionSet<'a>,
        field: &'a Positioned<Field>,
        _at: &At<'_, 'a>,
        _pending: &mut Vec<Pending<'a>>,
    ) -> ServerResult<Option<Value>> {
        Ok(self.0.plain(field.node.name.node.as_str()))
    }
}

/// A Relay connection of [`Fast`] nodes, answered in the same pass: its `edges`, their
/// `cursor` and `node`, `nodes` and `pageInfo` in place, so a page of 50 customers with
/// their last 5 interactions runs a future only for what reads something (each customer's
/// identities and timeline), not one for every edge, node and field on the way. The
/// connection's other fields (`totalCount`, …) go through its resolver. Registered as the
/// connection it wraps: the schema does not change.
pub struct FastConnection<T: Plain, X: ObjectType>(pub Connection<Cursor, Fast<T>, X, EmptyFields>);

impl<T: Plain, X: ObjectType> OutputType for FastConnection<T, X> {
    fn type_name() -> Cow<'static, str> {
        <Connection<Cursor, Fast<T>, X, EmptyFields> as OutputType>::type_name()
    }

    fn qualified_type_name() -> String {
        <Connection<Cursor, Fast<T>, X, EmptyFields> as OutputType>::qualified_type_name()
    }

    fn introspection_type_name(&self) -> Cow<'static, str> {
        self.0.introspection_type_name()
    }

    fn create_type_info(registry: &mut Registry) -> String {
        <Connection<Cursor, Fast<T>, X, EmptyFields> as OutputType>::create_type_info(registry)
    }

    async fn resolve(
        &self,
        ctx: &ContextSelectionSet<'_>,
        _field: &Positioned<Field>,
    ) -> ServerResult<Value> {
        answer(ctx, &self.0).await
    }
}

impl<T: Plain, X: ObjectType> ContainerType for FastConnection<T, X> {
    async fn resolve_field(&self, ctx: &Context<'_>) -> ServerResult<Option<Value>> {
        self.0.resolve_field(ctx).await
    }
}

impl<T: Plain, X: ObjectType> ObjectType for FastConnection<T, X> {}

impl<T: Plain, X: ObjectType> Inline for Connection<Cursor, Fast<T>, X, EmptyFields> {
    fn inline<'a>(
        &'a self,
        ctx: &ContextSelectionSet<'a>,
        field: &'a Positioned<Field>,
        at: &At<'_, 'a>,
        pending: &mut Vec<Pending<'a>>,
    ) -> ServerResult<Option<Value>> {
        let below = ctx.with_selection_set(&field.node.selection_set);
        Ok(Some(match field.node.name.node.as_str() {
            "edges" => items(&below, self.edges.iter(), at.field(field), pending)?,
            "nodes" => {
                let nodes = self.edges.iter().map(|edge| &edge.node);
                items(&below, nodes, at.field(field), pending)?
            }
            "pageInfo" => {
                let info = Fast(PageInfo {
                    has_previous_page: self.has_previous_page,
                    has_next_page: self.has_next_page,
                    start_cursor: self.edges.first().map(|edge| edge.cursor.encode()),
                    end_cursor: self.edges.last().map(|edge| edge.cursor.encode()),
                });
                // Its four fields are plain: nothing of it is left to a resolver.
                let mut none = Vec::new();
                let value = nested(walk(&below, &info, &At::ROOT, &mut none)?);
                debug_assert!(none.is_empty(), "pageInfo left a field to a resolver");
                value
            }
            _ => return Ok(None),
        }))
    }
}

impl<T: Plain> Inline for Edge<Cursor, Fast<T>, EmptyFields> {
    fn inline<'a>(
        &'a self,
        ctx: &ContextSelectionSet<'a>,
        field: &'a Positioned<Field>,
        at: &At<'_, 'a>,
        pending: &mut Vec<Pending<'a>>,
    ) -> ServerResult<Option<Value>> {
        Ok(match field.node.name.node.as_str() {
            "cursor" => Some(Value::String(self.cursor.encode())),
            "node" => {
                let below = ctx.with_selection_set(&field.node.selection_set);
                Some(nested(walk(&below, &self.node, &at.field(field), pending)?))
            }
            _ => None,
        })
    }
}

impl Plain for PageInfo {
    fn plain(&self, field: &str) -> Option<Value> {
        Some(match field {
            "hasPreviousPage" => Value::Boolean(self.has_previous_page),
            "hasNextPage" => Value::Boolean(self.has_next_page),
            "startCursor" => opt_text(self.start_cursor.as_deref()),
            "endCursor" => opt_text(self.end_cursor.as_deref()),
            _ => return None,
        })
    }
}

/// An object whose fields may be answered in place, during one walk of the selection.
/// An implementation nests objects at most two steps below itself: a list field and an
/// index (`edges`, `nodes`), then an object field (`node`) — the shapes [`resolve_at`]
/// rebuilds a context along; a deeper one fails its fields with an error.
pub(crate) trait Inline: ContainerType {
    /// `field`'s value when it can be answered without its resolver, pushing to
    /// `pending` the futures of what below it cannot (addressed from `at`); `None` sends
    /// the field to the object's resolver. Only called for a field without arguments
    /// and directives.
    fn inline<'a>(
        &'a self,
        ctx: &ContextSelectionSet<'a>,
        field: &'a Positioned<Field>,
        at: &At<'_, 'a>,
        pending: &mut Vec<Pending<'a>>,
    ) -> ServerResult<Option<Value>>;
}

/// Where an object stands in the answer being built: the fields and list indices from the
/// walk's root, borrowed while walking and copied only for a field left to a resolver (its
/// answer is put back there, and its context rebuilt along them, so its errors carry the
/// whole path).
#[derive(Clone, Copy)]
pub(crate) struct At<'p, 'a> {
    parent: Option<&'p At<'p, 'a>>,
    step: Option<Step<'a>>,
}

/// A step of an [`At`].
#[derive(Clone, Copy)]
pub(crate) enum Step<'a> {
    Field(&'a Positioned<Field>),
    Index(usize),
}

impl<'p, 'a> At<'p, 'a> {
    const ROOT: At<'static, 'static> = At {
        parent: None,
        step: None,
    };

    fn field(&'p self, field: &'a Positioned<Field>) -> At<'p, 'a> {
        At {
            parent: Some(self),
            step: Some(Step::Field(field)),
        }
    }

    fn index(&'p self, index: usize) -> At<'p, 'a> {
        At {
            parent: Some(self),
            step: Some(Step::Index(index)),
        }
    }

    fn owned(&self) -> Arc<[Step<'a>]> {
        let mut steps = Vec::new();
        let mut here = Some(self);
        while let Some(at) = here {
            steps.extend(at.step);
            here = at.parent;
        }
        steps.reverse();
        steps.into()
    }
}

/// A field left to its resolver: where its object stands, its response key, its answer.
pub(crate) type Pending<'a> =
    Pin<Box<dyn Future<Output = (Arc<[Step<'a>]>, Name, ServerResult<Value>)> + Send + 'a>>;

/// An answered object as the engine writes it: `null` when nothing of it was selected.
fn object(answer: IndexMap<Name, Value>) -> Value {
    if answer.is_empty() {
        Value::Null
    } else {
        Value::Object(answer)
    }
}

/// An object inside the walk's answer: kept as an object while fields of it are left to
/// resolvers (they are put into it; [`answer`] turns it into `null` if none of them
/// answers, as the engine does).
fn nested((answer, waiting): (IndexMap<Name, Value>, bool)) -> Value {
    if waiting {
        Value::Object(answer)
    } else {
        object(answer)
    }
}

/// A list of objects answered in place, each addressed by its index below `at`.
fn items<'a, O: Inline + 'a>(
    ctx: &ContextSelectionSet<'a>,
    list: impl ExactSizeIterator<Item = &'a O>,
    at: At<'_, 'a>,
    pending: &mut Vec<Pending<'a>>,
) -> ServerResult<Value> {
    let mut values = Vec::with_capacity(list.len());
    for (index, item) in list.enumerate() {
        values.push(nested(walk(ctx, item, &at.index(index), pending)?));
    }
    Ok(Value::List(values))
}

/// Answers `root`'s selection: everything [`Inline`] answers in place, in one pass, then
/// the fields left to resolvers (at any depth of it), all side by side as the engine runs
/// an object's fields, each added to the object it was selected on as it completes (as
/// the engine adds them; [`super::order`] puts them in selection order). A resolver's
/// error is recorded and its field left out, and an object none of whose fields answered
/// is `null`, as the engine does.
async fn answer<'a, O: Inline>(ctx: &ContextSelectionSet<'a>, root: &'a O) -> ServerResult<Value> {
    let mut pending = Vec::new();
    let (mut answer, _) = walk(ctx, root, &At::ROOT, &mut pending)?;
    let mut failed: Vec<Arc<[Step<'a>]>> = Vec::new();
    let mut done = |(at, key, result): (Arc<[Step<'a>]>, Name, ServerResult<Value>)| {
        let Some(target) = locate(&mut answer, &at) else {
            ctx.add_error(ServerError::new("an answer lost its place", None));
            return;
        };
        match result {
            Ok(value) => merge(target, key, value),
            Err(err) => {
                if target.is_empty() && !at.is_empty() {
                    failed.push(at);
                }
                ctx.add_error(err);
            }
        }
    };
    if pending.len() == 1 {
        if let Some(only) = pending.pop() {
            done(only.await);
        }
    } else if !pending.is_empty() {
        let mut running: FuturesUnordered<Pending<'a>> = pending.into_iter().collect();
        while let Some(result) = running.next().await {
            done(result);
        }
    }
    for at in failed {
        if let Some(value) = locate_value(&mut answer, &at) {
            if matches!(value, Value::Object(fields) if fields.is_empty()) {
                *value = Value::Null;
            }
        }
    }
    Ok(object(answer))
}

/// The object at `at` inside `answer`.
fn locate<'v>(
    answer: &'v mut IndexMap<Name, Value>,
    at: &[Step<'_>],
) -> Option<&'v mut IndexMap<Name, Value>> {
    match at.split_first() {
        None => Some(answer),
        Some((Step::Field(field), rest)) => {
            within(answer.get_mut(&field.node.response_key().node)?, rest)
        }
        Some((Step::Index(_), _)) => None,
    }
}

/// The value at `at` (not empty) inside `answer`.
fn locate_value<'v>(
    answer: &'v mut IndexMap<Name, Value>,
    at: &[Step<'_>],
) -> Option<&'v mut Value> {
    let (last, parent) = at.split_last()?;
    match (last, parent.split_last()) {
        (Step::Field(field), _) => locate(answer, parent)?.get_mut(&field.node.response_key().node),
        (Step::Index(index), Some((Step::Field(list), above))) => {
            match locate(answer, above)?.get_mut(&list.node.response_key().node)? {
                Value::List(items) => items.get_mut(*index),
                _ => None,
            }
        }
        (Step::Index(_), _) => None,
    }
}

fn within<'v>(value: &'v mut Value, at: &[Step<'_>]) -> Option<&'v mut IndexMap<Name, Value>> {
    match (value, at.split_first()) {
        (Value::Object(answer), _) => locate(answer, at),
        (Value::List(items), Some((Step::Index(index), rest))) => {
            within(items.get_mut(*index)?, rest)
        }
        _ => None,
    }
}

/// Resolves `field` of `root`, an object standing at `at` below `ctx`'s object: its
/// context is rebuilt along the way (each list field, index and object field), as the
/// engine would have built it, so what it reports carries the whole path. A connection
/// nests objects two steps deep at most (`edges`, an index, `node`).
async fn resolve_at<'a, O: Inline>(
    ctx: &ContextSelectionSet<'a>,
    at: &[Step<'a>],
    root: &'a O,
    field: &'a Positioned<Field>,
) -> ServerResult<Value> {
    let value = match at {
        [] => root.resolve_field(&ctx.with_field(field)).await?,
        [Step::Field(list), Step::Index(index)] => {
            let list = ctx.with_field(list);
            let item = list.with_index(*index);
            root.resolve_field(&item.with_field(field)).await?
        }
        [Step::Field(list), Step::Index(index), Step::Field(node)] => {
            let list = ctx.with_field(list);
            let item = list.with_index(*index);
            let node = item.with_field(node);
            root.resolve_field(&node.with_field(field)).await?
        }
        _ => {
            return Err(ServerError::new(
                "a field is nested deeper than a connection's node",
                Some(field.pos),
            ))
        }
    };
    Ok(value.unwrap_or_default())
}

/// Walks one selection set of `root` (fragments that apply to it included): fields
/// [`Inline`] answers are put in place, the others get a future in `pending`. Also says
/// whether any did.
fn walk<'a, O: Inline>(
    ctx: &ContextSelectionSet<'a>,
    root: &'a O,
    at: &At<'_, 'a>,
    pending: &mut Vec<Pending<'a>>,
) -> ServerResult<(IndexMap<Name, Value>, bool)> {
    // About a key per selection: growing each object's map as its keys come was a
    // twentieth of a list's CPU (rehashes and reallocations of small maps).
    let mut answer = IndexMap::with_capacity(ctx.item.node.items.len());
    let mut owned: Option<Arc<[Step<'a>]>> = None;
    walk_into(ctx, root, at, pending, &mut answer, &mut owned)?;
    Ok((answer, owned.is_some()))
}

fn walk_into<'a, O: Inline>(
    ctx: &ContextSelectionSet<'a>,
    root: &'a O,
    at: &At<'_, 'a>,
    pending: &mut Vec<Pending<'a>>,
    answer: &mut IndexMap<Name, Value>,
    owned: &mut Option<Arc<[Step<'a>]>>,
) -> ServerResult<()> {
    for selection in &ctx.item.node.items {
        let (condition, set) = match &selection.node {
            Selection::Field(field) => {
                let key = field.node.response_key().node.clone();
                let name = field.node.name.node.as_str();
                if name == "__typename" {
                    let typename = root.introspection_type_name().into_owned();
                    merge(answer, key, Value::String(typename));
                    continue;
                }
                if field.node.arguments.is_empty() && field.node.directives.is_empty() {
                    if let Some(value) = root.inline(ctx, field, at, pending)? {
                        merge(answer, key, value);
                        continue;
                    }
                }
                let place = owned.get_or_insert_with(|| at.owned()).clone();
                let ctx = ctx.clone();
                pending.push(Box::pin(async move {
                    let result = resolve_at(&ctx, &place, root, field).await;
                    (place, key, result)
                }));
                continue;
            }
            Selection::FragmentSpread(spread) => {
                let name = &spread.node.fragment_name.node;
                let Some(fragment) = ctx.query_env.fragments.get(name) else {
                    return Err(ServerError::new(
                        format!(r#"Unknown fragment "{name}"."#),
                        Some(spread.pos),
                    ));
                };
                (
                    Some(fragment.node.type_condition.node.on.node.as_str()),
                    &fragment.node.selection_set,
                )
            }
            Selection::InlineFragment(fragment) => (
                fragment
                    .node
                    .type_condition
                    .as_ref()
                    .map(|c| c.node.on.node.as_str()),
                &fragment.node.selection_set,
            ),
        };
        if applies(ctx, root, condition) {
            walk_into(
                &ctx.with_selection_set(set),
                root,
                at,
                pending,
                answer,
                owned,
            )?;
        }
    }
    Ok(())
}

/// Whether a fragment on `condition` applies to `root`: no condition, its own type, or an
/// interface it implements.
fn applies<O: OutputType>(
    ctx: &ContextSelectionSet<'_>,
    root: &O,
    condition: Option<&str>,
) -> bool {
    let Some(condition) = condition else {
        return true;
    };
    let own = root.introspection_type_name();
    own == condition
        || ctx
            .schema_env
            .registry
            .implements
            .get(own.as_ref())
            .is_some_and(|interfaces| interfaces.contains(condition))
}

/// Adds a field's value under its response key. A key selected again (through fragments)
/// merges its objects, and its lists' objects item by item; a scalar keeps its first
/// value (both are the same field).
fn merge(target: &mut IndexMap<Name, Value>, key: Name, value: Value) {
    use async_graphql::indexmap::map::Entry;
    // One hash of the key, whether it is new (nearly always) or selected again.
    let previous = match target.entry(key) {
        Entry::Vacant(entry) => {
            entry.insert(value);
            return;
        }
        Entry::Occupied(entry) => entry.into_mut(),
    };
    match (previous, value) {
        (Value::Object(into), Value::Object(from)) => {
            for (key, value) in from {
                merge(into, key, value);
            }
        }
        (Value::List(into), Value::List(from)) => {
            for (into, from) in into.iter_mut().zip(from) {
                if let (Value::Object(into), Value::Object(from)) = (into, from) {
                    for (key, value) in from {
                        merge(into, key, value);
                    }
                }
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use async_graphql::connection::{ConnectionNameType, EdgeNameType};
    use async_graphql::{ComplexObject, EmptyMutation, EmptySubscription, Object, Schema};
    use async_graphql::{Result, SimpleObject};
    use entity::TagId;
    use uuid::Uuid;

    use super::*;

    /// An item with two plain fields, one left to its resolver that waits, and one that
    /// fails.
    #[derive(SimpleObject)]
    #[graphql(complex)]
    struct Item {
        name: String,
        rank: i32,
    }

    #[ComplexObject]
    impl Item {
        async fn slow(&self) -> String {
            tokio::task::yield_now().await;
            format!("slow {}", self.name)
        }

        async fn broken(&self) -> Result<String> {
            Err(format!("{} is broken", self.name).into())
        }

        /// A connection inside each item (as a customer's timeline), answered in place
        /// whichever way the item was.
        async fn children(&self, size: usize) -> FastConnection<Item, Extra> {
            let mut connection = Connection::with_additional_fields(false, false, extra());
            connection.edges = items(size)
                .map(|(cursor, item)| {
                    let name = format!("{}/{}", self.name, item.name);
                    Edge::new(cursor, Fast(Item { name, ..item }))
                })
                .collect();
            FastConnection(connection)
        }
    }

    impl Plain for Item {
        fn plain(&self, field: &str) -> Option<Value> {
            Some(match field {
                "name" => text(&self.name),
                "rank" => Value::from(self.rank),
                _ => return None,
            })
        }
    }

    #[derive(SimpleObject)]
    struct Extra {
        total_count: i32,
    }

    fn items(size: usize) -> impl Iterator<Item = (Cursor, Item)> {
        (0..size).map(|n| {
            let id = TagId::from_uuid(Uuid::from_u128(n as u128 + 1));
            let name = format!("item {n}");
            let cursor = Cursor::text("name", name.clone(), id);
            let rank = i32::try_from(n).unwrap_or_default() * 10;
            (cursor, Item { name, rank })
        })
    }

    /// The engine's own connection types under other names (the schema holds both).
    struct RefName;
    struct RefEdgeName;

    impl ConnectionNameType for RefName {
        fn type_name<T: OutputType>() -> String {
            "RefConnection".into()
        }
    }

    impl EdgeNameType for RefEdgeName {
        fn type_name<T: OutputType>() -> String {
            "RefEdge".into()
        }
    }

    type Reference = Connection<Cursor, Item, Extra, EmptyFields, RefName, RefEdgeName>;

    fn extra() -> Extra {
        Extra { total_count: 7 }
    }

    struct Query;

    #[Object]
    impl Query {
        /// The engine alone: its connection, edges and objects.
        async fn engine(&self, size: usize) -> Reference {
            let mut connection =
                Reference::with_additional_fields(size.is_multiple_of(2), size > 2, extra());
            connection.edges = items(size)
                .map(|(cursor, item)| Edge::new(cursor, item))
                .collect();
            connection
        }

        /// The same page answered in place (a name as long as `engine`: the errors'
        /// positions are compared).
        async fn inline(&self, size: usize) -> FastConnection<Item, Extra> {
            let mut connection =
                Connection::with_additional_fields(size.is_multiple_of(2), size > 2, extra());
            connection.edges = items(size)
                .map(|(cursor, item)| Edge::new(cursor, Fast(item)))
                .collect();
            FastConnection(connection)
        }
    }

    /// The answer (in selection order, as served) and errors of `query` on `field`.
    async fn run(query: &str, field: &str) -> (serde_json::Value, Vec<String>) {
        let schema = Schema::new(Query, EmptyMutation, EmptySubscription);
        let (connection, edge) = if field == "engine" {
            ("RefConnection", "RefEdge")
        } else {
            ("ItemConnection", "ItemEdge")
        };
        let query = query
            .replace("LIST", field)
            .replace("CONN", connection)
            .replace("EDGE", edge);
        let document = async_graphql::parser::parse_query(&query).unwrap();
        let mut response = schema.execute(query.as_str()).await;
        super::super::order::reorder(&document, None, &mut response.data);
        let errors = response
            .errors
            .iter()
            .map(|error| {
                format!(
                    "{} at {:?} {:?}",
                    error.message, error.path, error.locations
                )
            })
            .collect();
        (response.data.into_json().unwrap(), errors)
    }

    #[tokio::test]
    async fn a_connection_answered_in_place_equals_the_engines() {
        let queries = [
            // Everything (typenames differ: compared below).
            "{ x: LIST(size: 3) { __typename totalCount pageInfo { __typename hasNextPage \
             hasPreviousPage startCursor endCursor } edges { __typename cursor node { __typename \
             name rank slow } } nodes { rank name slow } } }",
            // An empty page: no cursors.
            "{ x: LIST(size: 0) { totalCount pageInfo { startCursor endCursor hasNextPage } \
             edges { cursor node { name } } nodes { name } } }",
            // Fragments on the connection, the edge and the node; aliases; a key twice.
            "{ x: LIST(size: 3) { ...C e: edges { ...E } e: edges { node { slow } } } } \
             fragment C on CONN { edges { node { name } } pageInfo { ... on PageInfo \
             { hasNextPage } } } fragment E on EDGE { cursor n: node { rank ...I } \
             n: node { name } } fragment I on Item { slow rank }",
            // A field whose resolver fails, beside plain and waiting ones.
            "{ x: LIST(size: 2) { edges { node { name broken slow } } nodes { broken rank } } }",
            // Every field of a node fails: the node is null.
            "{ x: LIST(size: 2) { nodes { broken } edges { node { broken } cursor } } }",
            // A connection inside the nodes, its fields failing and waiting.
            "{ x: LIST(size: 2) { edges { node { name children(size: 2) { edges { node { \
             broken name slow } } nodes { broken } pageInfo { hasNextPage } } } } \
             nodes { c: children(size: 1) { nodes { broken } } } } }",
            // The same connection twice under two aliases, fields in different orders.
            "{ a: LIST(size: 2) { nodes { slow name } } b: LIST(size: 1) { edges { node { rank } \
             cursor } totalCount } }",
        ];
        for query in queries {
            let engine = run(query, "engine").await;
            let fast = run(query, "inline").await;
            let engine_data = engine
                .0
                .to_string()
                .replace(r#""RefConnection""#, r#""ItemConnection""#)
                .replace(r#""RefEdge""#, r#""ItemEdge""#);
            assert_eq!(fast.0.to_string(), engine_data, "{query}");
            let (mut engine_errors, mut fast_errors) = (engine.1, fast.1);
            engine_errors.sort();
            fast_errors.sort();
            assert_eq!(fast_errors, engine_errors, "{query}");
            assert!(!fast.0.is_null(), "{query}");
        }
    }
}
