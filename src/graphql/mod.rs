//! The GraphQL API: schema construction, request execution with the per-request context
//! (caller, loaders) and the helpers resolvers share. Resolvers are thin; rules live in `domain`.
//!
//! The schema is built and held here ([`Api`]), not in [`App`]: the domain, the indexer and
//! the scheduler never see GraphQL. Every error a response carries is mapped once, by
//! [`execute`] ([`errors::present`]), from the table in [`crate::error`].
//!
//! One file per noun (`customer`, `organization`, `interaction`, …) holds its object,
//! its input objects, its payloads and its mutations; `query` and `mutation` are the
//! roots, which only name the fields (their order makes `schema.graphql`) and delegate;
//! `types` holds what every noun shares, `loaders` the DataLoaders, `cost` the document
//! cost model and `errors` how a domain error looks in GraphQL.

pub mod contact_point;
pub mod conversation;
pub mod cost;
pub mod customer;
pub mod deal;
pub mod duplicate;
pub mod errors;
pub mod fast;
pub mod gdpr;
pub mod identity;
pub mod import;
pub mod inbox;
pub mod inputs;
pub mod interaction;
pub mod loaders;
pub mod merge;
pub mod mutation;
pub mod note;
mod order;
pub mod organization;
pub mod quality;
pub mod query;
pub mod reply;
pub mod search;
pub mod service;
pub mod source;
pub mod subscription;
pub mod tag;
pub mod trusted_document;
pub mod types;
pub mod user;
pub mod workspace;

use std::collections::HashMap;
use std::future::Future;
use std::hash::Hash;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context as TaskContext, Poll, Wake, Waker};
use std::time::Duration;

use async_graphql::dataloader::{DataLoader, Loader};
use async_graphql::parser::types::ExecutableDocument;
use async_graphql::{Context, Schema};
use futures_util::future::BoxFuture;
use futures_util::stream::{FuturesUnordered, StreamExt};

use crate::domain::Caller;
use crate::error::{Code, Error};
use crate::App;

pub type AppSchema = Schema<Root, mutation::Mutation, subscription::Subscription>;

/// The GraphQL API of one [`App`]: the app and the schema built once for it. Cheap to
/// clone; the HTTP router builds one and every request executes through it.
#[derive(Clone)]
pub struct Api {
    app: App,
    schema: AppSchema,
    /// The same schema validating a document only as far as a request can change the
    /// outcome: for a document the whole validation already passed ([`passes_again`]).
    validated: AppSchema,
    documents: Arc<Documents>,
}

impl Api {
    /// Builds the schema for `app` (limits from its config).
    pub fn new(app: App) -> Api {
        Api {
            app,
            schema: build_schema(),
            validated: schema_validating(async_graphql::ValidationMode::Fast),
            documents: Arc::default(),
        }
    }

    /// The app this API serves.
    pub fn app(&self) -> &App {
        &self.app
    }
}

/// The schema. Depth, cost and mutation limits are not the engine's: [`execute`] measures
/// every document with [`cost::check`] before the engine sees it (the engine's own checks
/// expand fragments without memoization). Per request, [`execute`] adds the [`Caller`]
/// and a fresh [`DataLoader`] of [`loaders::Loaders`], and the request's run-time bounds
/// ([`RootFields`], [`BatchValues`]) from the app's limits: the schema itself holds none.
pub fn build_schema() -> AppSchema {
    schema_validating(async_graphql::ValidationMode::Strict)
}

/// [`build_schema`] with the engine's validation `mode`.
fn schema_validating(mode: async_graphql::ValidationMode) -> AppSchema {
    let root = Root(query::Query);
    Schema::build(root, mutation::Mutation, subscription::Subscription)
        .validation_mode(mode)
        .override_output_type_description::<chrono::DateTime<chrono::Utc>>(
            "A moment in time, as an RFC 3339 string. Output is always UTC, offset \
             `+00:00`, with fractional seconds only when not whole \
             (`2026-11-02T09:30:00.123456+00:00`); input may carry any offset \
             (`2026-11-02T10:30:00+01:00`, `…Z`) and means that instant. Any other string \
             is an error.",
        )
        .override_output_type_description::<customer::CustomerConnection>(
            "A page of customers: `edges` (or `nodes`) in the list's order, `pageInfo` to \
             page on, `totalCount` over every page.",
        )
        .override_output_type_description::<duplicate::DuplicateSuggestionConnection>(
            "A page of duplicate suggestions: `edges` (or `nodes`) highest score first, \
             `pageInfo` to page on, `totalCount` over every page.",
        )
        .override_output_type_description::<inbox::InboxConnection>(
            "A page of conversations: `edges` (or `nodes`) in the list's order, `pageInfo` \
             to page on.",
        )
        .override_output_type_description::<interaction::InteractionConnection>(
            "A page of interactions: `edges` (or `nodes`) in the list's order, `pageInfo` \
             to page on, `totalCount` over every page.",
        )
        .override_output_type_description::<organization::OrganizationConnection>(
            "A page of organizations: `edges` (or `nodes`) by name, `pageInfo` to page on, \
             `totalCount` over every page.",
        )
        .override_output_type_description::<reply::SavedReplyConnection>(
            "A page of saved replies: `edges` (or `nodes`) by name, `pageInfo` to page on.",
        )
        .override_output_type_description::<search::SearchConnection>(
            "A page of search hits: `edges` (or `nodes`) in the search's order, `pageInfo` \
             to page on, the index's `estimatedTotal` and the `facets` of every hit.",
        )
        .limit_recursive_depth(32)
        .finish()
}

/// What one request may take at run time, beside what [`cost::check`] measured before it
/// ran, without an engine extension (one on every field makes async-graphql take its slow
/// path for every field and list item: a registry look-up by type and field name and two
/// formatted type names per item: BENCHMARKS.md, "Without an engine extension"):
///
/// - its share of the database: at most `max_parallel_fields` of a query's root fields
///   resolve at once, each with everything below it ([`Root`]): the engine runs a query's
///   root fields all together, so 200 aliases would otherwise ask the pool for 200
///   connections at once and every other tenant would queue behind them (nested lists go
///   through the loaders, one batch per relation);
/// - the size of its answer: at most `max_values` fields and list items. Counted exactly
///   once the answer is complete ([`order::reorder`] walks it), and bounded while it
///   resolves by [`charge_list`], which every list without paging (a customer's notes, its
///   tags: as long as the data makes them, which no static cost can know) calls with its
///   length before its items resolve, so an answer that will be refused stops early.
struct RootFields(tokio::sync::Semaphore);

/// The query root as the schema serves it: [`query::Query`] with each root field holding
/// one of the request's [`RootFields`] permits while it, and everything below it, resolves.
pub struct Root(query::Query);

impl async_graphql::OutputType for Root {
    fn type_name() -> std::borrow::Cow<'static, str> {
        <query::Query as async_graphql::OutputType>::type_name()
    }

    fn create_type_info(registry: &mut async_graphql::registry::Registry) -> String {
        <query::Query as async_graphql::OutputType>::create_type_info(registry)
    }

    async fn resolve(
        &self,
        ctx: &async_graphql::ContextSelectionSet<'_>,
        _field: &async_graphql::Positioned<async_graphql::parser::types::Field>,
    ) -> async_graphql::ServerResult<async_graphql::Value> {
        async_graphql::resolver_utils::resolve_container(ctx, self).await
    }
}

impl async_graphql::ContainerType for Root {
    async fn resolve_field(
        &self,
        ctx: &Context<'_>,
    ) -> async_graphql::ServerResult<Option<async_graphql::Value>> {
        // Closed never: the semaphore lives as long as the request.
        let _permit = match ctx.data_opt::<RootFields>() {
            Some(gate) => gate.0.acquire().await.ok(),
            None => None,
        };
        self.0.resolve_field(ctx).await
    }
}

impl async_graphql::ObjectType for Root {}

/// The values of the answers of one HTTP batch (the requests of a batch count together:
/// `max_values` bounds a batch's answer as it bounds one request's), or of one request.
/// The transport adds it to each request of a batch as request data.
#[derive(Clone, Default)]
pub struct BatchValues(Arc<Values>);

#[derive(Default)]
struct Values {
    /// Values of the answers already given.
    held: AtomicU64,
    /// What the request resolving now has charged so far ([`charge_list`]): a lower bound
    /// of its answer's values.
    charged: AtomicU64,
}

/// Charges `items` items of a list without paging, with the fields each selects directly,
/// to the request's answer before they resolve: `BAD_USER_INPUT` once the answer would hold
/// more than `max_values` values. The exact count comes when the answer is complete; this
/// charges what is resolved, so a list resolved twice under one response key (the same
/// list selected by two fragments) is charged twice, as the work is done twice.
pub(crate) fn charge_list(ctx: &Context<'_>, items: usize) -> Result<(), Error> {
    // The fields each item names directly, once per response key: a lower bound of its
    // values (fragments and fields under a directive may add none), in one pass over a
    // selection the cost check bounded.
    let mut keys: Vec<&str> = Vec::new();
    for selection in &ctx.item.node.selection_set.node.items {
        if let async_graphql::parser::types::Selection::Field(field) = &selection.node {
            if field.node.directives.is_empty() {
                keys.push(field.node.response_key().node.as_str());
            }
        }
    }
    keys.sort_unstable();
    keys.dedup();
    let per_item = 1 + keys.len() as u64;
    charge_values(ctx, (items as u64).saturating_mul(per_item))
}

/// Charges `values` values the answer will hold to the request before they are built
/// ([`charge_list`]).
pub(crate) fn charge_values(ctx: &Context<'_>, values: u64) -> Result<(), Error> {
    let Some(budget) = ctx.data_opt::<BatchValues>() else {
        return Ok(());
    };
    let charged = budget.0.charged.fetch_add(values, Ordering::Relaxed) + values;
    let max = app(ctx).config.limits.max_values;
    if budget
        .0
        .held
        .load(Ordering::Relaxed)
        .saturating_add(charged)
        > max
    {
        return Err(Error::bad_input(too_many_values(max)));
    }
    Ok(())
}

/// `items`, a list without paging, charged to the answer ([`charge_list`]).
pub(crate) fn charged<T>(ctx: &Context<'_>, items: Vec<T>) -> Result<Vec<T>, Error> {
    charge_list(ctx, items.len())?;
    Ok(items)
}

fn too_many_values(max: u64) -> String {
    format!("the answer would hold more than {max} values: ask for smaller pages or fewer fields")
}

/// `response` refused when its answer holds `count` values and the answers given before
/// it in `values` (its batch) with it more than `max`. A mutation's answer is given
/// whatever its size (its lists were charged as they resolved): its writes are done, and
/// an answer refused after them would tell the client to send them again.
fn bounded_values(
    response: async_graphql::Response,
    values: &Values,
    count: u64,
    max: u64,
    wrote: bool,
) -> async_graphql::Response {
    values.charged.store(0, Ordering::Relaxed);
    let held = values.held.fetch_add(count, Ordering::Relaxed) + count;
    if held <= max || wrote {
        return response;
    }
    // The errors met on the way (a list refused as it resolved names its path) stay.
    let mut refused = values_refusal(max);
    refused.errors.splice(0..0, response.errors);
    refused
}

fn values_refusal(max: u64) -> async_graphql::Response {
    let error = errors::request_error(too_many_values(max), Code::BadUserInput, |extensions| {
        extensions.set("limit", max);
    });
    async_graphql::Response::from_errors(vec![error])
}

/// The schema in SDL, as committed in `schema.graphql`.
pub fn sdl() -> String {
    build_schema().sdl()
}

/// `Ok(None)` for `NOT_FOUND`: a query by id answers `null` for a missing object, as it
/// does for another workspace's, so ids of other tenants reveal nothing.
pub(crate) fn found<T>(result: crate::Result<T>) -> crate::Result<Option<T>> {
    match result {
        Ok(value) => Ok(Some(value)),
        Err(Error::NotFound { .. }) => Ok(None),
        Err(err) => Err(err),
    }
}

pub(crate) fn app<'a>(ctx: &Context<'a>) -> &'a App {
    ctx.data_unchecked::<App>()
}

pub(crate) fn caller<'a>(ctx: &Context<'a>) -> Result<&'a Caller, Error> {
    ctx.data::<Caller>()
        .map_err(|_| Error::Unauthenticated("send an API key: Authorization: Bearer <key>".into()))
}

pub(crate) fn loader<'a>(ctx: &Context<'a>) -> Result<&'a DataLoader<loaders::Loaders>, Error> {
    ctx.data::<DataLoader<loaders::Loaders>>()
        .map_err(|_| Error::Internal("no loader in the request context".into()))
}

/// Loads one value through the request's DataLoader.
pub(crate) async fn load<K>(
    ctx: &Context<'_>,
    key: K,
) -> async_graphql::Result<Option<<loaders::Loaders as Loader<K>>::Value>>
where
    K: Send + Sync + Hash + Eq + Clone + 'static,
    loaders::Loaders: Loader<K, Error = loaders::LoadError>,
{
    Ok(loader(ctx)?.load_one(key).await?)
}

/// Executes `request` for `caller`: adds the app, the caller and a fresh set of
/// workspace-bound loaders, and drives the loaders' fetches deterministically. Every
/// error of the response is mapped to its public message and `extensions.code` here
/// ([`errors::present`]) and counted in the app's metrics.
///
/// async-graphql's DataLoader starts a batch on a wall-clock delay (1 ms by default): on a
/// busy machine a resolver sweep over a page of 100 rows outlasts it and the batch is cut
/// in pieces, so the statement count would grow with the page size. Here the loader's
/// spawner queues its fetch tasks and [`Driver`] polls them only after the query's own
/// future has returned `Pending`, that is after the whole sweep has registered its keys:
/// one batch per relation and nesting level, whatever the page size or the load.
///
/// Before that, the document is parsed once and measured ([`cost::check`]): a document
/// over the limits is refused with `BAD_USER_INPUT` without running anything. The
/// engine's whole validation runs on a document until a request of it is answered without
/// error, and after that only when the request's variables could fail it
/// ([`passes_again`]). A request
/// that runs past `limits.request_timeout_secs` is cancelled with `TIMEOUT`, and a
/// response lists at most `limits.max_errors` errors.
pub async fn execute(
    api: &Api,
    caller: Caller,
    request: async_graphql::Request,
) -> async_graphql::Response {
    let response = execute_unmapped(api, caller, request).await;
    errors::present(response, &api.app.metrics)
}

async fn execute_unmapped(
    api: &Api,
    caller: Caller,
    mut request: async_graphql::Request,
) -> async_graphql::Response {
    let limits = &api.app.config.limits;
    let (document, known_valid) = match measure(api, &mut request) {
        Ok(measured) => measured,
        Err(refused) => return *refused,
    };
    // The engine adds fields as they complete: the answer is put back in selection order,
    // its values counted on the way.
    let operation_name = request.operation_name.clone();
    let budget = Duration::from_secs(limits.request_timeout_secs.max(1));
    let values = match request
        .data
        .get(&std::any::TypeId::of::<BatchValues>())
        .and_then(|values| values.downcast_ref::<BatchValues>())
    {
        Some(batch) => batch.clone(),
        None => {
            let values = BatchValues::default();
            request.data.insert(values.clone());
            values
        }
    };
    // A request of a batch whose answers already hold all they may does not run.
    if values.0.held.load(Ordering::Relaxed) >= limits.max_values {
        return values_refusal(limits.max_values);
    }
    let wrote = order::operation(&document, operation_name.as_deref()).is_some_and(|operation| {
        operation.ty == async_graphql::parser::types::OperationType::Mutation
    });
    // A document validated whole before need not be again, unless its variables could
    // fail where the last ones passed; one not yet is, and is known valid once a request of
    // it is answered without any error. A request that leaves a variable out (or gives one
    // the check cannot vouch for) marks nothing: the engine skips checking an argument
    // whose variable is missing.
    let variables_pass = passes_again(&document, operation_name.as_deref(), &request.variables);
    let validated = known_valid && variables_pass;
    if validated {
        api.app.metrics.record_validation_skipped();
    }
    let validating = (!known_valid && variables_pass && request.query.len() <= CACHED_QUERY_BYTES)
        .then(|| request.query.clone());
    let ordered = async {
        let mut response = run(api, caller, request, validated).await;
        if let Some(query) = validating.filter(|_| response.errors.is_empty()) {
            api.documents.validated(&query, operation_name.as_deref());
        }
        let count = order::reorder(&document, operation_name.as_deref(), &mut response.data);
        bounded_values(response, &values.0, count, limits.max_values, wrote)
    };
    match tokio::time::timeout(budget, ordered).await {
        Ok(response) => bounded_errors(response, limits.max_errors),
        Err(_) => {
            let error = Error::Timeout {
                secs: budget.as_secs(),
            };
            tracing::warn!("request cancelled after its time budget");
            async_graphql::Response::from_errors(vec![
                async_graphql::Error::from(error).into_server_error(async_graphql::Pos::default())
            ])
        }
    }
}

/// Parsed documents by their text: an application sends the same few queries over and
/// over, and parsing one was 7 % of the server's CPU on the 360 view (BENCHMARKS.md,
/// "Rows decoded by name, once"). Only documents that passed [`cost::check`] are kept
/// (their selections are bounded), at most [`CACHED_TEXT_BYTES`] of query text in all (a
/// parsed document is up to about a hundred times its text: a few megabytes at most), and
/// texts over [`CACHED_QUERY_BYTES`] are neither kept nor looked up. When full, the cache
/// is emptied: documents sent once cost a miss, never memory.
#[derive(Default)]
struct Documents(Mutex<DocumentMap>);

#[derive(Default)]
struct DocumentMap {
    parsed: HashMap<String, Parsed>,
    text_bytes: usize,
}

/// A document kept, and the operations of it that passed the engine's whole validation
/// (by name; `None` for a document's only, unnamed one).
struct Parsed {
    document: Arc<ExecutableDocument>,
    validated: Vec<Option<String>>,
}

/// The query text kept at most, all documents together.
const CACHED_TEXT_BYTES: usize = 256 * 1024;
/// The longest query text kept.
const CACHED_QUERY_BYTES: usize = 8 * 1024;

impl Documents {
    /// `query` parsed: from the cache, or parsed now (see [`Documents::keep`]); and
    /// whether its operation `operation` passed the engine's whole validation before.
    fn parse(
        &self,
        query: &str,
        operation: Option<&str>,
    ) -> async_graphql::ServerResult<(Arc<ExecutableDocument>, bool)> {
        if query.len() <= CACHED_QUERY_BYTES {
            let cached = self.lock().parsed.get(query).map(|parsed| {
                let validated = (parsed.validated.iter()).any(|name| name.as_deref() == operation);
                (Arc::clone(&parsed.document), validated)
            });
            if let Some(cached) = cached {
                return Ok(cached);
            }
        }
        Ok((Arc::new(async_graphql::parser::parse_query(query)?), false))
    }

    /// Notes that `query`'s operation `operation` passed the engine's whole validation
    /// (if the document is kept).
    fn validated(&self, query: &str, operation: Option<&str>) {
        if let Some(parsed) = self.lock().parsed.get_mut(query) {
            if !parsed
                .validated
                .iter()
                .any(|name| name.as_deref() == operation)
            {
                parsed.validated.push(operation.map(str::to_owned));
            }
        }
    }

    /// Keeps `document`, the parse of `query`, once it has been measured within limits.
    fn keep(&self, query: &str, document: &Arc<ExecutableDocument>) {
        if query.len() > CACHED_QUERY_BYTES {
            return;
        }
        let mut documents = self.lock();
        if documents.parsed.contains_key(query) {
            return;
        }
        // Emptied when full; the old documents are dropped after the lock is released.
        let _dropped = if documents.text_bytes + query.len() > CACHED_TEXT_BYTES {
            documents.text_bytes = 0;
            Some(std::mem::take(&mut documents.parsed))
        } else {
            None
        };
        documents.text_bytes += query.len();
        let parsed = Parsed {
            document: Arc::clone(document),
            validated: Vec::new(),
        };
        documents.parsed.insert(query.to_owned(), parsed);
        drop(documents);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, DocumentMap> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Parses `request` once (or finds it parsed) and measures it ([`cost::check`]): the
/// document and whether its operation passed the engine's whole validation before, or the
/// answer to give instead of running it when it does not parse or is over the limits.
fn measure(
    api: &Api,
    request: &mut async_graphql::Request,
) -> Result<(Arc<ExecutableDocument>, bool), Box<async_graphql::Response>> {
    let limits = &api.app.config.limits;
    let variables = match serde_json::to_value(&request.variables) {
        Ok(serde_json::Value::Object(map)) => map,
        _ => serde_json::Map::new(),
    };
    let operation_name = request.operation_name.clone();
    let (document, validated) = match api
        .documents
        .parse(&request.query, operation_name.as_deref())
    {
        Ok(parsed) => parsed,
        Err(error) => {
            return Err(Box::new(bounded_errors(
                async_graphql::Response::from_errors(vec![error]),
                limits.max_errors,
            )))
        }
    };
    if let Err(refusal) = cost::check(&document, operation_name.as_deref(), &variables, limits) {
        let error = errors::request_error(refusal.message, Code::BadUserInput, |extensions| {
            extensions.set("measured", refusal.measured);
            extensions.set("limit", refusal.limit);
        });
        return Err(Box::new(async_graphql::Response::from_errors(vec![error])));
    }
    api.documents.keep(&request.query, &document);
    request.set_parsed_query(ExecutableDocument::clone(&document));
    Ok((document, validated))
}

/// Whether the engine's whole validation of a document that passed it before (for a
/// request this also held of) would pass again with these `variables`. Of its rules only
/// one reads variables' values: each argument's value, variables put in, must suit the
/// argument's type (a variable's type fits every place it is used in, a rule of the
/// document); it skips an argument one of whose variables has no value, and puts the
/// request's variables into every fragment, whichever operation uses it. So: the
/// variables are exactly those the operation declares, each with a value of a built-in
/// scalar type whose check is the engine's own (`ID`, `String`, `Int`, `Boolean`), not a
/// list; `null` only for a nullable type without a default (one with a default may stand
/// where `null` may not). Otherwise — enumerations, input objects, other scalars, lists, a
/// variable left out or one more — the whole validation runs, so its errors stay the same.
/// (An input object marked `@oneOf` would refuse a `null` field: the schema has none, a
/// unit test says so.) Validating the benchmark's 360 view was 22 % of the server's CPU
/// for it (BENCHMARKS.md).
fn passes_again(
    document: &ExecutableDocument,
    operation_name: Option<&str>,
    variables: &async_graphql::Variables,
) -> bool {
    use async_graphql::parser::types::BaseType;
    use async_graphql::Value;
    let Some(operation) = order::operation(document, operation_name) else {
        return false;
    };
    // Names are unique among an operation's variables (a rule of the document): as many
    // values as definitions, each found, is no value more.
    variables.len() == operation.variable_definitions.len()
        && operation.variable_definitions.iter().all(|definition| {
            let definition = &definition.node;
            let ty = &definition.var_type.node;
            let (BaseType::Named(name), Some(value)) =
                (&ty.base, variables.get(&definition.name.node))
            else {
                return false;
            };
            match (name.as_str(), value) {
                (_, Value::Null) => ty.nullable && definition.default_value.is_none(),
                ("ID", Value::String(_)) | ("String", Value::String(_)) => true,
                ("ID" | "Int", Value::Number(n)) => n.is_i64(),
                ("Boolean", Value::Boolean(_)) => true,
                _ => false,
            }
        })
}

/// Executes `request` for `caller` as a stream of responses: a subscription gives one
/// response per event for as long as it runs, a query or mutation its one response
/// ([`execute`]). Measured like every request; each response's errors mapped as
/// [`execute`] maps them. A subscription's loaders batch as usual, one set per
/// subscription (they cache nothing, so every event reads what is stored).
pub fn execute_stream(
    api: &Api,
    caller: Caller,
    mut request: async_graphql::Request,
) -> futures_util::stream::BoxStream<'static, async_graphql::Response> {
    use async_graphql::parser::types::OperationType;
    let api = api.clone();
    if let Err(refused) = measure(&api, &mut request) {
        let refused = errors::present(*refused, &api.app.metrics);
        return futures_util::stream::once(async move { refused }).boxed();
    }
    let name = request.operation_name.clone();
    let subscribes = request.parsed_query().is_ok_and(|document| {
        let name = name.as_deref();
        document
            .operations
            .iter()
            .any(|(operation_name, operation)| {
                operation.node.ty == OperationType::Subscription
                    && (name.is_none() || operation_name.map(|n| n.as_str()) == name)
            })
    });
    if !subscribes {
        return futures_util::stream::once(async move { execute(&api, caller, request).await })
            .boxed();
    }
    let loader = DataLoader::new(
        loaders::Loaders {
            db: api.app.db.clone(),
            workspace_id: caller.workspace_id,
        },
        tokio::spawn,
    );
    let document = request.parsed_query().ok().cloned();
    // `max_values` bounds each of a subscription's answers (one per event), not all of
    // them together: nothing is held from one event to the next.
    let values = BatchValues::default();
    let request = request
        .data(api.app.clone())
        .data(caller)
        .data(loader)
        .data(values.clone());
    let max_errors = api.app.config.limits.max_errors;
    let max_values = api.app.config.limits.max_values;
    let metrics = api.app.metrics.clone();
    api.schema
        .execute_stream(request)
        .map(move |mut response| {
            let count = match &document {
                Some(document) => order::reorder(document, name.as_deref(), &mut response.data),
                None => 0,
            };
            let response = bounded_values(response, &values.0, count, max_values, false);
            values.0.held.store(0, Ordering::Relaxed);
            errors::present(bounded_errors(response, max_errors), &metrics)
        })
        .boxed()
}

/// Keeps the first `max` errors of `response` and says how many more there were.
fn bounded_errors(mut response: async_graphql::Response, max: usize) -> async_graphql::Response {
    let total = response.errors.len();
    if total > max {
        response.errors.truncate(max);
        let message = format!(
            "{} more errors not shown (a response lists at most {max})",
            total - max
        );
        let error = errors::request_error(message, Code::BadUserInput, |extensions| {
            extensions.set("omitted", (total - max) as u64);
        });
        response.errors.push(error);
    }
    response
}

/// Runs `request` for `caller`; `validated`: its document passed the engine's whole
/// validation before and would again ([`passes_again`]), so the schema that skips it runs.
async fn run(
    api: &Api,
    caller: Caller,
    request: async_graphql::Request,
    validated: bool,
) -> async_graphql::Response {
    let queue: TaskQueue = Arc::new(Mutex::new(Vec::new()));
    let spawn_queue = queue.clone();
    let app = &api.app;
    let loaders = loaders::Loaders {
        db: app.db.clone(),
        workspace_id: caller.workspace_id,
    };
    let loader = DataLoader::new(loaders, move |task: BoxFuture<'static, ()>| {
        spawn_queue
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .push(task);
    })
    .delay(Duration::ZERO);
    let root_fields = RootFields(tokio::sync::Semaphore::new(
        app.config.limits.max_parallel_fields.max(1),
    ));
    let request = request
        .data(app.clone())
        .data(caller)
        .data(loader)
        .data(root_fields);
    let schema = match validated {
        true => api.validated.clone(),
        false => api.schema.clone(),
    };
    Driver {
        query: Box::pin(async move { schema.execute(request).await }),
        queue,
        tasks: FuturesUnordered::new(),
    }
    .await
}

type TaskQueue = Arc<Mutex<Vec<BoxFuture<'static, ()>>>>;

/// Polls the query, then the loader fetches it queued, in turn, in the request's task.
struct Driver {
    query: BoxFuture<'static, async_graphql::Response>,
    queue: TaskQueue,
    tasks: FuturesUnordered<BoxFuture<'static, ()>>,
}

/// How many times in a row the query may wake itself before the driver hands control
/// back to the runtime (tokio's cooperative budget makes futures yield that way too).
const MAX_SELF_WAKES: usize = 4_096;

/// A waker that notes whether it was woken, and passes the wake on.
struct NotingWaker {
    woken: AtomicBool,
    inner: Waker,
}

impl Wake for NotingWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.store(true, Ordering::SeqCst);
        self.inner.wake_by_ref();
    }
}

impl Driver {
    /// Polls the query until it is really waiting. `FuturesUnordered`, which resolves
    /// lists and fields, returns `Pending` after a few children that woke themselves and
    /// wakes itself to go on: that is a yield, not a wait, and the sweep is not over.
    fn poll_query(&mut self, cx: &mut TaskContext<'_>) -> Poll<Option<async_graphql::Response>> {
        for _ in 0..MAX_SELF_WAKES {
            let noting = Arc::new(NotingWaker {
                woken: AtomicBool::new(false),
                inner: cx.waker().clone(),
            });
            let waker = Waker::from(noting.clone());
            if let Poll::Ready(response) = self
                .query
                .as_mut()
                .poll(&mut TaskContext::from_waker(&waker))
            {
                return Poll::Ready(Some(response));
            }
            if !noting.woken.load(Ordering::SeqCst) {
                return Poll::Ready(None);
            }
        }
        Poll::Pending
    }
}

impl Future for Driver {
    type Output = async_graphql::Response;

    fn poll(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Self::Output> {
        loop {
            match self.poll_query(cx) {
                Poll::Ready(Some(response)) => return Poll::Ready(response),
                // Still yielding after many rounds: let the runtime run, we are woken.
                Poll::Pending => return Poll::Pending,
                Poll::Ready(None) => {}
            }
            let queued: Vec<_> = self
                .queue
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .drain(..)
                .collect();
            self.tasks.extend(queued);
            let mut finished = false;
            while let Poll::Ready(Some(())) = self.tasks.poll_next_unpin(cx) {
                finished = true;
            }
            if !finished {
                return Poll::Pending;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A document validated before skips the engine's validation again only for variables
    /// of built-in scalar types whose values that validation would take.
    #[test]
    fn a_validated_document_passes_again_only_with_variables_it_takes() {
        let document = async_graphql::parser::parse_query(
            "query A($id: ID!, $n: Int, $s: String, $b: Boolean!) { a }
             query B($e: Stage) { b } query C($l: [ID!]) { c } query D { d }",
        )
        .unwrap();
        let passes = |operation: &str, variables: serde_json::Value| {
            let variables = async_graphql::Variables::from_json(variables);
            passes_again(&document, Some(operation), &variables)
        };
        let a = serde_json::json!({ "id": "cus_1", "n": 5, "s": "x", "b": true });
        assert!(passes("A", a.clone()));
        assert!(passes(
            "A",
            serde_json::json!({ "id": 7, "n": null, "s": null, "b": false })
        ));
        for (name, value) in [
            ("id", serde_json::json!(null)),
            ("id", serde_json::json!(1.5)),
            ("id", serde_json::json!(true)),
            ("n", serde_json::json!("5")),
            ("n", serde_json::json!(2.5)),
            ("s", serde_json::json!(5)),
            ("b", serde_json::json!(null)),
            ("b", serde_json::json!("true")),
        ] {
            let mut variables = a.clone();
            variables[name] = value.clone();
            assert!(!passes("A", variables), "{name}: {value}");
        }
        let mut missing = a.clone();
        missing.as_object_mut().unwrap().remove("s");
        assert!(!passes("A", missing), "a variable left out");
        assert!(
            !passes("B", serde_json::json!({ "e": "LEAD" })),
            "an enumeration"
        );
        assert!(!passes("C", serde_json::json!({ "l": ["x"] })), "a list");
        assert!(passes("D", serde_json::json!({})), "no variables");
        assert!(!passes("E", serde_json::json!({})), "no such operation");
        let mut more = a.clone();
        more["other"] = serde_json::json!(1);
        assert!(
            !passes("A", more),
            "a variable the operation does not declare"
        );
        let mut large = a.clone();
        large["n"] = serde_json::json!(u64::MAX);
        assert!(!passes("A", large), "past i64");
        let defaulted =
            async_graphql::parser::parse_query("query($b: Boolean = false) { a }").unwrap();
        let null = async_graphql::Variables::from_json(serde_json::json!({ "b": null }));
        assert!(!passes_again(&defaulted, None, &null), "null for a default");
        assert!(
            !sdl().contains("@oneOf"),
            "no input object refuses a null field"
        );
    }

    #[test]
    fn documents_are_parsed_once_and_the_cache_stays_bounded() {
        let documents = Documents::default();
        let query = "{ customers { totalCount } }";
        let (first, validated) = documents.parse(query, None).unwrap();
        assert!(!validated);
        assert!(
            !Arc::ptr_eq(&first, &documents.parse(query, None).unwrap().0),
            "nothing is kept before it is measured"
        );
        documents.validated(query, None);
        assert!(!documents.parse(query, None).unwrap().1, "nor known valid");
        documents.keep(query, &first);
        assert!(
            Arc::ptr_eq(&first, &documents.parse(query, None).unwrap().0),
            "a measured document is parsed once"
        );
        assert!(!documents.parse(query, None).unwrap().1);
        documents.validated(query, None);
        assert!(
            documents.parse(query, None).unwrap().1,
            "valid once it passed"
        );
        assert!(
            !documents.parse(query, Some("Other")).unwrap().1,
            "by operation"
        );
        assert!(documents.parse("{ customers { ", None).is_err());
        let long = format!("{{ {} }}", "__typename ".repeat(CACHED_QUERY_BYTES / 10));
        let parsed = documents.parse(&long, None).unwrap().0;
        documents.keep(&long, &parsed);
        let mut most = 0;
        for n in 0..CACHED_TEXT_BYTES / 10 {
            let text = format!("{{ a{n}: __typename }}");
            let parsed = documents.parse(&text, None).unwrap().0;
            documents.keep(&text, &parsed);
            let kept = documents.lock();
            assert!(kept.text_bytes <= CACHED_TEXT_BYTES);
            assert_eq!(
                kept.text_bytes,
                kept.parsed.keys().map(String::len).sum::<usize>()
            );
            most = most.max(kept.parsed.len());
        }
        assert!(most > 1_000, "small documents fill the cache: {most}");
        let kept = documents.lock();
        assert!(!kept.parsed.contains_key(&long), "long texts are not kept");
        assert!(
            !kept.parsed.contains_key(query),
            "emptied when full, what passed too"
        );
    }
}
