//! The GraphQL API: schema construction, the per-request context (caller, loaders) and
//! the helpers resolvers share. Resolvers are thin; rules live in `domain`.

pub mod inputs;
pub mod loaders;
pub mod mutation;
pub mod query;
pub mod types;

use std::hash::Hash;

use async_graphql::dataloader::{DataLoader, Loader};
use async_graphql::{Context, EmptySubscription, Schema};

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

/// Builds the per-request data: the caller and its workspace-bound loaders.
pub fn request_data(app: &App, caller: Caller) -> (Caller, DataLoader<loaders::Loaders>) {
    let loaders = loaders::Loaders {
        db: app.db.clone(),
        workspace_id: caller.workspace_id,
    };
    (caller, DataLoader::new(loaders, tokio::spawn))
}
