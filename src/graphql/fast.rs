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

use async_graphql::indexmap::IndexMap;
use async_graphql::parser::types::{Field, Selection};
use async_graphql::registry::Registry;
use async_graphql::resolver_utils::{enum_value, EnumType};
use async_graphql::{
    ContainerType, Context, ContextSelectionSet, Name, ObjectType, OutputType, Positioned,
    ScalarType, ServerError, ServerResult, Value,
};
use futures_util::stream::{FuturesUnordered, StreamExt};

/// An object some of whose fields are its row's columns.
pub trait Plain: ContainerType {
    /// `field`'s value when it is read from the row alone, without arguments; `None`
    /// sends the field to the object's resolver. Must answer exactly what the resolver
    /// of the same field answers (`fast_and_resolved_answers_agree` checks every field).
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
        resolve(ctx, &self.0).await
    }
}

impl<T: Plain> ContainerType for Fast<T> {
    async fn resolve_field(&self, ctx: &Context<'_>) -> ServerResult<Option<Value>> {
        self.0.resolve_field(ctx).await
    }
}

impl<T: Plain + ObjectType> ObjectType for Fast<T> {}

type FieldFuture<'a> = Pin<Box<dyn Future<Output = ServerResult<(Name, Value)>> + Send + 'a>>;

/// Answers `root`'s selection: plain fields in place, the others through its resolver.
/// A resolver's error is recorded and its field left out, as the engine does.
async fn resolve<'a, T: Plain>(ctx: &ContextSelectionSet<'a>, root: &'a T) -> ServerResult<Value> {
    let mut answer = IndexMap::new();
    let mut rest = Vec::new();
    collect(ctx, root, &mut answer, &mut rest)?;
    let mut done = |result: ServerResult<(Name, Value)>| match result {
        Ok((key, value)) => merge(&mut answer, key, value),
        Err(err) => ctx.add_error(err),
    };
    if rest.len() == 1 {
        if let Some(only) = rest.pop() {
            done(only.await);
        }
    } else if !rest.is_empty() {
        let mut pending: FuturesUnordered<FieldFuture<'a>> = rest.into_iter().collect();
        while let Some(result) = pending.next().await {
            done(result);
        }
    }
    Ok(if answer.is_empty() {
        Value::Null
    } else {
        Value::Object(answer)
    })
}

/// Walks one selection set (fragments that apply to `T` included).
fn collect<'a, T: Plain>(
    ctx: &ContextSelectionSet<'a>,
    root: &'a T,
    answer: &mut IndexMap<Name, Value>,
    rest: &mut Vec<FieldFuture<'a>>,
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
                    if let Some(value) = root.plain(name) {
                        merge(answer, key, value);
                        continue;
                    }
                }
                let ctx = ctx.clone();
                rest.push(Box::pin(async move {
                    let ctx_field = ctx.with_field(field);
                    let value = root.resolve_field(&ctx_field).await?;
                    Ok((key, value.unwrap_or_default()))
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
        if applies::<T>(ctx, root, condition) {
            collect(&ctx.with_selection_set(set), root, answer, rest)?;
        }
    }
    Ok(())
}

/// Whether a fragment on `condition` applies to `root`: no condition, its own type, or an
/// interface it implements.
fn applies<T: Plain>(ctx: &ContextSelectionSet<'_>, root: &T, condition: Option<&str>) -> bool {
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
    let Some(previous) = target.get_mut(&key) else {
        target.insert(key, value);
        return;
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
