//! Types every noun shares: the `Channel` and `OrderDirection` enums, the `Node`
//! interface, and the Relay connection builder.

use async_graphql::connection::{Connection, CursorType, Edge, EmptyFields};
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
use super::user::User;
use super::workspace::Workspace;
use crate::domain::page::{Cursor, Page};

/// The channels: the connectors' own enum (its `graphql` feature derives the GraphQL
/// type), so the API lists exactly the channels the registry knows.
pub use connectors::Channel;

/// Sort direction.
#[derive(Enum, Copy, Clone, Debug, Default, PartialEq, Eq)]
pub enum OrderDirection {
    /// Smallest (earliest, A to Z) first.
    Asc,
    /// Largest (latest, Z to A) first.
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
    User(User),
}

/// Builds a Relay connection from a page, with `cursor` naming each row's position.
pub fn connection<M, C, N, T>(
    page: Page<M>,
    total: T,
    cursor: impl Fn(&M) -> C,
    node: impl Fn(M) -> N,
) -> Connection<C, N, T, EmptyFields>
where
    C: CursorType + Send + Sync,
    N: async_graphql::OutputType,
    T: async_graphql::ObjectType,
{
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
    use crate::ids::{decode_any, AnyId};
    let id = decode_any("id", id.as_str())?;
    let caller = super::caller(ctx)?;
    let node = match id {
        AnyId::Workspace(id) if id == caller.workspace_id => Some(Node::Workspace(Workspace(
            crate::domain::workspace::get(&super::app(ctx).db, id).await?,
        ))),
        AnyId::Customer(id) => load(ctx, CustomerById(id))
            .await?
            .map(|m| Node::Customer(Customer::new(m))),
        AnyId::Organization(id) => load(ctx, OrganizationById(id))
            .await?
            .map(|m| Node::Organization(Organization(m))),
        AnyId::Identity(id) => load(ctx, IdentityById(id))
            .await?
            .map(|m| Node::Identity(Identity(m))),
        AnyId::Interaction(id) => load(ctx, InteractionById(id))
            .await?
            .map(|m| Node::Interaction(Interaction(m))),
        AnyId::Conversation(id) => load(ctx, ConversationById(id))
            .await?
            .map(|m| Node::Conversation(Conversation(m))),
        AnyId::Deal(id) => load(ctx, DealById(id)).await?.map(|m| Node::Deal(Deal(m))),
        AnyId::Note(id) => load(ctx, NoteById(id)).await?.map(|m| Node::Note(Note(m))),
        AnyId::ContactPoint(id) => load(ctx, ContactPointById(id))
            .await?
            .map(|m| Node::ContactPoint(ContactPoint(m))),
        AnyId::Tag(id) => load(ctx, TagById(id)).await?.map(|m| Node::Tag(Tag(m))),
        AnyId::Source(id) => load(ctx, SourceById(id))
            .await?
            .map(|m| Node::Source(Source(m))),
        AnyId::User(id) => load(ctx, super::user::UserById(id))
            .await?
            .map(|m| Node::User(User(m))),
        // Saved replies and duplicate suggestions are listed by their queries, not
        // fetched as nodes.
        AnyId::Workspace(_)
        | AnyId::ApiKey(_)
        | AnyId::SavedReply(_)
        | AnyId::DuplicateSuggestion(_)
        | AnyId::MergeRecord(_) => None,
    };
    Ok(node)
}

/// A row's position, encoded when an answer shows its cursor. Cursors coming back are
/// decoded by the list's own window ([`crate::domain::page`]), never through this trait.
impl CursorType for Cursor {
    type Error = &'static str;

    fn decode_cursor(_: &str) -> std::result::Result<Self, Self::Error> {
        Err("cursors are decoded by their list's window")
    }

    fn encode_cursor(&self) -> String {
        self.encode()
    }
}
