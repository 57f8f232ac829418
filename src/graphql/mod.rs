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

use crate::config::Config;
use crate::domain::Caller;
use crate::error::{Code, Error};
use crate::App;

pub type AppSchema = Schema<query::Query, mutation::Mutation, subscription::Subscription>;

/// The GraphQL API of one [`App`]: the app and the schema built once for it. Cheap to
/// clone; the HTTP router builds one and every request executes through it.
#[derive(Clone)]
pub struct Api {
    app: App,
    schema: AppSchema,
    documents: Arc<Documents>,
}

impl Api {
    /// Builds the schema for `app` (limits from its config).
    pub fn new(app: App) -> Api {
        let schema = build_schema(&app.config);
        Api {
            app,
            schema,
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
/// and a fresh [`DataLoader`] of [`loaders::Loaders`].
pub fn build_schema(config: &Config) -> AppSchema {
    Schema::build(query::Query, mutation::Mutation, subscription::Subscription)
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
        .extension(RequestBudget {
            parallel_fields: config.limits.max_parallel_fields.max(1),
            max_values: config.limits.max_values,
        })
        .finish()
}

/// What one request may take at run time, beside what [`cost::check`] measured before it
/// ran: its share of the database (at most `max_parallel_fields` of its root fields resolve
/// at once, each with everything below it: the engine runs a query's root fields all
/// together, so 200 aliases would otherwise ask the pool for 200 connections at once and
/// every other tenant would queue behind them; nested lists go through the loaders, one
/// batch per relation), and the size of its answer (at most `max_values` fields and list
/// items resolved: lists without paging, such as a customer's notes, are as long as the
/// data makes them, which no static cost can know).
struct RequestBudget {
    parallel_fields: usize,
    max_values: u64,
}

impl async_graphql::extensions::ExtensionFactory for RequestBudget {
    fn create(&self) -> Arc<dyn async_graphql::extensions::Extension> {
        Arc::new(RequestGate {
            root_fields: tokio::sync::Semaphore::new(self.parallel_fields),
            values: Arc::new(AtomicU64::new(0)),
            max_values: self.max_values,
        })
    }
}

struct RequestGate {
    root_fields: tokio::sync::Semaphore,
    /// Values resolved so far: of the request, or of a subscription's current event.
    values: Arc<AtomicU64>,
    max_values: u64,
}

#[async_trait::async_trait]
impl async_graphql::extensions::Extension for RequestGate {
    /// A subscription runs as long as its client listens: `max_values` bounds each of its
    /// answers (one per event), not all of them together.
    fn subscribe<'s>(
        &self,
        ctx: &async_graphql::extensions::ExtensionContext<'_>,
        stream: futures_util::stream::BoxStream<'s, async_graphql::Response>,
        next: async_graphql::extensions::NextSubscribe<'_>,
    ) -> futures_util::stream::BoxStream<'s, async_graphql::Response> {
        let values = self.values.clone();
        next.run(ctx, stream)
            .map(move |response| {
                values.store(0, Ordering::Relaxed);
                response
            })
            .boxed()
    }

    async fn resolve(
        &self,
        ctx: &async_graphql::extensions::ExtensionContext<'_>,
        info: async_graphql::extensions::ResolveInfo<'_>,
        next: async_graphql::extensions::NextResolve<'_>,
    ) -> async_graphql::ServerResult<Option<async_graphql::Value>> {
        // The requests of one HTTP batch count together: one answer's bound for them all.
        let counter = ctx
            .data_opt::<BatchValues>()
            .map_or(&*self.values, |batch| &*batch.0);
        let resolved = counter.fetch_add(1, Ordering::Relaxed) + 1;
        if resolved > self.max_values {
            let error = Error::bad_input(format!(
                "the answer would hold more than {} values: ask for smaller pages or fewer fields",
                self.max_values
            ));
            return Err(async_graphql::Error::from(error).into_server_error(info.field.name.pos));
        }
        if info.path_node.parent.is_some() {
            return next.run(ctx, info).await;
        }
        // Closed never: the semaphore lives as long as the request.
        let _permit = self.root_fields.acquire().await.ok();
        next.run(ctx, info).await
    }
}

/// The values resolved by every request of one HTTP batch together (request data the
/// transport adds to each of them): `max_values` bounds a batch's answer as it bounds
/// one request's.
#[derive(Clone, Default)]
pub struct BatchValues(Arc<AtomicU64>);

/// The schema in SDL, as committed in `schema.graphql`.
pub fn sdl() -> String {
    build_schema(&Config::default()).sdl()
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
/// over the limits is refused with `BAD_USER_INPUT` without running anything. A request
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
    let document = match measure(api, &mut request) {
        Ok(document) => document,
        Err(refused) => return *refused,
    };
    // The engine adds fields as they complete: the answer is put back in selection order.
    let operation_name = request.operation_name.clone();
    let budget = Duration::from_secs(limits.request_timeout_secs.max(1));
    let ordered = async {
        let mut response = run(api, caller, request).await;
        order::reorder(&document, operation_name.as_deref(), &mut response.data);
        response
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
    parsed: HashMap<String, Arc<ExecutableDocument>>,
    text_bytes: usize,
}

/// The query text kept at most, all documents together.
const CACHED_TEXT_BYTES: usize = 256 * 1024;
/// The longest query text kept.
const CACHED_QUERY_BYTES: usize = 8 * 1024;

impl Documents {
    /// `query` parsed: from the cache, or parsed now (see [`Documents::keep`]).
    fn parse(&self, query: &str) -> async_graphql::ServerResult<Arc<ExecutableDocument>> {
        if query.len() <= CACHED_QUERY_BYTES {
            let cached = self.lock().parsed.get(query).cloned();
            if let Some(document) = cached {
                return Ok(document);
            }
        }
        Ok(Arc::new(async_graphql::parser::parse_query(query)?))
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
        documents
            .parsed
            .insert(query.to_owned(), Arc::clone(document));
        drop(documents);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, DocumentMap> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Parses `request` once (or finds it parsed) and measures it ([`cost::check`]): the
/// document, or the answer to give instead of running it when it does not parse or is
/// over the limits.
fn measure(
    api: &Api,
    request: &mut async_graphql::Request,
) -> Result<Arc<ExecutableDocument>, Box<async_graphql::Response>> {
    let limits = &api.app.config.limits;
    let variables = match serde_json::to_value(&request.variables) {
        Ok(serde_json::Value::Object(map)) => map,
        _ => serde_json::Map::new(),
    };
    let operation_name = request.operation_name.clone();
    let document = match api.documents.parse(&request.query) {
        Ok(document) => document,
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
    Ok(document)
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
    let request = request.data(api.app.clone()).data(caller).data(loader);
    let max_errors = api.app.config.limits.max_errors;
    let metrics = api.app.metrics.clone();
    api.schema
        .execute_stream(request)
        .map(move |mut response| {
            if let Some(document) = &document {
                order::reorder(document, name.as_deref(), &mut response.data);
            }
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

async fn run(
    api: &Api,
    caller: Caller,
    request: async_graphql::Request,
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
    let request = request.data(app.clone()).data(caller).data(loader);
    let schema = api.schema.clone();
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

    #[test]
    fn documents_are_parsed_once_and_the_cache_stays_bounded() {
        let documents = Documents::default();
        let query = "{ customers { totalCount } }";
        let first = documents.parse(query).unwrap();
        assert!(
            !Arc::ptr_eq(&first, &documents.parse(query).unwrap()),
            "nothing is kept before it is measured"
        );
        documents.keep(query, &first);
        assert!(
            Arc::ptr_eq(&first, &documents.parse(query).unwrap()),
            "a measured document is parsed once"
        );
        assert!(documents.parse("{ customers { ").is_err());
        let long = format!("{{ {} }}", "__typename ".repeat(CACHED_QUERY_BYTES / 10));
        let parsed = documents.parse(&long).unwrap();
        documents.keep(&long, &parsed);
        let mut most = 0;
        for n in 0..CACHED_TEXT_BYTES / 10 {
            let text = format!("{{ a{n}: __typename }}");
            let parsed = documents.parse(&text).unwrap();
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
    }
}
