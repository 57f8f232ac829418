//! Tags: the object and the inputs that add and remove them.

use async_graphql::{InputObject, Object, ID};

use crate::ids::{encode, Kind};
use entity::*;

/// A label on customers.
pub struct Tag(pub tag::Model);

#[Object]
impl Tag {
    pub(super) async fn id(&self) -> ID {
        ID(encode(Kind::Tag, self.0.id))
    }
    async fn name(&self) -> &str {
        &self.0.name
    }
    async fn color(&self) -> Option<&str> {
        self.0.color.as_deref()
    }
}

#[derive(InputObject)]
pub struct AddTagInput {
    pub customer_id: ID,
    /// The tag's name; created in the workspace when missing.
    pub name: String,
    pub color: Option<String>,
}

#[derive(InputObject)]
pub struct RemoveTagInput {
    pub customer_id: ID,
    pub name: String,
}
