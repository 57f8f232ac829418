//! Types every noun shares: the `Channel` and `OrderDirection` enums, the `Node`
//! interface, and the Relay connection builder.

use async_graphql::connection::{Connection, Edge, EmptyFields};
use async_graphql::{Enum, Interface, Result, ID};

use super::contact_point::ContactPoint;
use super::conversation::Conversation;
use super::customer::Customer;
use super::deal::Deal;
use super::identity::Identity;
use super::interaction::Interaction;
use super::note::Note;
use super::organization::Organization;
use super::source::Source;
use super::tag::Tag;
use super::workspace::Workspace;
use crate::domain::page::Page;
use crate::error::Error;

/// The channels: the connectors' own enum (its `graphql` feature derives the GraphQL
/// type), so the API lists exactly the channels the registry knows.
pub use connectors::Channel;

/// Reads a stored channel name; an unknown one is a corrupt row.
pub fn channel_from_db(name: &str) -> async_graphql::Result<Channel> {
    Channel::parse(name)
        .ok_or_else(|| Error::Internal(format!("unknown channel `{name}` in the database")).into())
}

/// Sort direction.
#[derive(Enum, Copy, Clone, Debug, Default, PartialEq, Eq)]
pub enum OrderDirection {
    Asc,
    #[default]
    Desc,
}

/// Any object that can be fetched by its id with `node(id:)`.
#[derive(Interface)]
#[graphql(field(
    name = "id",
    ty = "ID",
    desc = "The object's opaque, typed id (`cus_…`, `org_…`, …)."
))]
pub enum Node {
    Workspace(Workspace),
    Customer(Customer),
    Organization(Organization),
    ContactPoint(ContactPoint),
    Identity(Identity),
    Interaction(Interaction),
    Conversation(Conversation),
    Deal(Deal),
    Note(Note),
    Tag(Tag),
    Source(Source),
}

pub(super) fn enum_of<T>(parse: fn(&str) -> crate::error::Result<T>, text: &str) -> Result<T> {
    Ok(parse(text)?)
}

/// Builds a Relay connection from a page, with `cursor` naming each row's position.
pub fn connection<M, N: async_graphql::OutputType, T: async_graphql::ObjectType>(
    page: Page<M>,
    total: T,
    cursor: impl Fn(&M) -> String,
    node: impl Fn(M) -> N,
) -> Connection<String, N, T, EmptyFields> {
    let mut connection =
        Connection::with_additional_fields(page.has_previous, page.has_next, total);
    connection.edges = page
        .items
        .into_iter()
        .map(|row| Edge::new(cursor(&row), node(row)))
        .collect();
    connection
}

/// Any object by id through the loaders, so `nodes(ids:)` batches per kind.
pub async fn fetch_node(ctx: &async_graphql::Context<'_>, id: &ID) -> Result<Option<Node>> {
    use super::load;
    use super::loaders::*;
    use crate::ids::{decode_any, Kind};
    let (kind, uuid) = decode_any("id", id.as_str())?;
    let caller = super::caller(ctx)?;
    let node = match kind {
        Kind::Workspace if uuid == caller.workspace_id => Some(Node::Workspace(Workspace(
            crate::domain::workspace::get(&super::app(ctx).db, uuid).await?,
        ))),
        Kind::Customer => load(ctx, CustomerById(uuid))
            .await?
            .map(|m| Node::Customer(Customer(m))),
        Kind::Organization => load(ctx, OrganizationById(uuid))
            .await?
            .map(|m| Node::Organization(Organization(m))),
        Kind::Identity => load(ctx, IdentityById(uuid))
            .await?
            .map(|m| Node::Identity(Identity(m))),
        Kind::Interaction => load(ctx, InteractionById(uuid))
            .await?
            .map(|m| Node::Interaction(Interaction(m))),
        Kind::Conversation => load(ctx, ConversationById(uuid))
            .await?
            .map(|m| Node::Conversation(Conversation(m))),
        Kind::Deal => load(ctx, DealById(uuid))
            .await?
            .map(|m| Node::Deal(Deal(m))),
        Kind::Note => load(ctx, NoteById(uuid))
            .await?
            .map(|m| Node::Note(Note(m))),
        Kind::ContactPoint => load(ctx, ContactPointById(uuid))
            .await?
            .map(|m| Node::ContactPoint(ContactPoint(m))),
        Kind::Tag => load(ctx, TagById(uuid)).await?.map(|m| Node::Tag(Tag(m))),
        Kind::Source => load(ctx, SourceById(uuid))
            .await?
            .map(|m| Node::Source(Source(m))),
        Kind::Workspace | Kind::ApiKey => None,
    };
    Ok(node)
}
