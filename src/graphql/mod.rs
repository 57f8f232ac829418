//! The GraphQL API: schema construction, request execution with the per-request context
//! (caller, loaders) and the helpers resolvers share. Resolvers are thin; rules live in `domain`.

pub mod inputs;
pub mod loaders;
pub mod mutation;
pub mod query;
pub mod search;
pub mod types;

use std::future::Future;
use std::hash::Hash;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context as TaskContext, Poll, Wake, Waker};
use std::time::Duration;

use async_graphql::dataloader::{DataLoader, Loader};
use async_graphql::{Context, EmptySubscription, Schema};
use futures_util::future::BoxFuture;
use futures_util::stream::{FuturesUnordered, StreamExt};

use crate::config::{Config, MAX_PAGE_SIZE};
use crate::domain::Caller;
use crate::error::Error;
use crate::App;

pub type AppSchema = Schema<query::Query, mutation::Mutation, EmptySubscription>;

/// The schema with its limits. Per request, the HTTP layer adds the [`Caller`] and a
/// fresh [`DataLoader`] of [`loaders::Loaders`].
pub fn build_schema(config: &Config) -> AppSchema {
    Schema::build(query::Query, mutation::Mutation, EmptySubscription)
        .limit_depth(config.limits.max_depth)
        .limit_complexity(config.limits.max_complexity)
        .limit_recursive_depth(32)
        .finish()
}

/// The schema in SDL, as committed in `schema.graphql`.
pub fn sdl() -> String {
    build_schema(&Config::default()).sdl()
}

/// The cost of a connection field: its page size (capped at the maximum, so an oversized
/// request reaches the resolver and gets a clear `BAD_USER_INPUT`) times its children.
pub fn page_cost(first: Option<i32>, last: Option<i32>, child_complexity: usize) -> usize {
    let size = first
        .or(last)
        .unwrap_or(crate::domain::page::DEFAULT_PAGE_SIZE)
        .clamp(1, MAX_PAGE_SIZE) as usize;
    1 + size * child_complexity
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
    loader(ctx)?
        .load_one(key)
        .await
        .map_err(|err| err.to_graphql())
}

/// Executes `request` for `caller`: adds the app, the caller and a fresh set of
/// workspace-bound loaders, and drives the loaders' fetches deterministically.
///
/// async-graphql's DataLoader starts a batch on a wall-clock delay (1 ms by default): on a
/// busy machine a resolver sweep over a page of 100 rows outlasts it and the batch is cut
/// in pieces, so the statement count would grow with the page size. Here the loader's
/// spawner queues its fetch tasks and [`Driver`] polls them only after the query's own
/// future has returned `Pending`, that is after the whole sweep has registered its keys:
/// one batch per relation and nesting level, whatever the page size or the load.
pub async fn execute(
    app: &App,
    caller: Caller,
    request: async_graphql::Request,
) -> async_graphql::Response {
    let queue: TaskQueue = Arc::new(Mutex::new(Vec::new()));
    let spawn_queue = queue.clone();
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
    let schema = app.schema.clone();
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
