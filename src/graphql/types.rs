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

/// The channels Rapport talks to.
#[derive(Enum, Copy, Clone, Debug, PartialEq, Eq, Hash)]
#[graphql(remote = "connectors::Channel")]
pub enum Channel {
    Mastodon,
    Bluesky,
    Reddit,
    HackerNews,
    Rss,
    Email,
    Webhook,
    Phone,
    Meeting,
    Manual,
}

impl Channel {
    pub fn as_str(self) -> &'static str {
        connectors::Channel::from(self).as_str()
    }

    /// Reads a stored channel name; an unknown one is a corrupt row.
    pub fn from_db(name: &str) -> async_graphql::Result<Channel> {
        connectors::Channel::parse(name)
            .map(Channel::from)
            .ok_or_else(|| {
                Error::Internal(format!("unknown channel `{name}` in the database")).into()
            })
    }
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
