//! DataLoaders: one per relation a list can ask for, so a page of 100 customers with
//! their identities, tags and timelines costs a fixed number of statements. The loader is
//! built per request with the caller's workspace, so batching never crosses tenants and
//! nothing is cached between requests.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Arc;

use async_graphql::dataloader::Loader;
use sea_orm::DatabaseConnection;
use uuid::Uuid;

use crate::domain::interaction::{InteractionFilter, Parent};
use crate::domain::page::{Page, Window};
use crate::domain::{self, conversation, deal, identity, interaction, note, organization, tag};
use crate::error::Error;
use entity::source as source_row;
use entity::{
    contact_point, conversation as conversation_row, customer, deal as deal_row,
    identity as identity_row,
};
use entity::{
    interaction as interaction_row, note as note_row, organization as organization_row,
    tag as tag_row,
};

pub struct Loaders {
    pub db: DatabaseConnection,
    pub workspace_id: Uuid,
}

pub type LoadError = Arc<Error>;

/// Declares a key type for loading rows by their own id.
macro_rules! by_id {
    ($key:ident, $entity:ident) => {
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub struct $key(pub Uuid);

        impl Loader<$key> for Loaders {
            type Value = $entity::Model;
            type Error = LoadError;

            async fn load(&self, keys: &[$key]) -> Result<HashMap<$key, Self::Value>, Self::Error> {
                let ids: Vec<Uuid> = keys.iter().map(|key| key.0).collect();
                let rows =
                    domain::by_ids::<$entity::Entity>(&self.db, self.workspace_id, &ids, |row| {
                        row.id
                    })
                    .await?;
                Ok(rows.into_iter().map(|(id, row)| ($key(id), row)).collect())
            }
        }
    };
}

/// Declares a key type for loading the children of a parent through a domain function
/// that answers for many parents at once.
macro_rules! children {
    ($key:ident, $value:ty, $load:path) => {
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub struct $key(pub Uuid);

        impl Loader<$key> for Loaders {
            type Value = $value;
            type Error = LoadError;

            async fn load(&self, keys: &[$key]) -> Result<HashMap<$key, Self::Value>, Self::Error> {
                let ids: Vec<Uuid> = keys.iter().map(|key| key.0).collect();
                let mut rows = $load(&self.db, self.workspace_id, &ids).await?;
                Ok(ids
                    .into_iter()
                    .map(|id| ($key(id), rows.remove(&id).unwrap_or_default()))
                    .collect())
            }
        }
    };
}

by_id!(CustomerById, customer);
by_id!(OrganizationById, organization_row);
by_id!(IdentityById, identity_row);
by_id!(ConversationById, conversation_row);
by_id!(InteractionById, interaction_row);
by_id!(DealById, deal_row);
by_id!(NoteById, note_row);
by_id!(ContactPointById, contact_point);
by_id!(TagById, tag_row);
by_id!(SourceById, source_row);

children!(
    IdentitiesOf,
    Vec<identity_row::Model>,
    identity::of_customers
);
children!(
    ContactPointsOf,
    Vec<contact_point::Model>,
    identity::contact_points_of
);
children!(TagsOf, Vec<tag_row::Model>, tag::of_customers);
children!(
    ConversationsOf,
    Vec<conversation_row::Model>,
    conversation::of_customers
);
children!(DealsOf, Vec<deal_row::Model>, deal::of_customers);
children!(
    DealsOfOrganization,
    Vec<deal_row::Model>,
    deal::of_organizations
);
children!(NotesOf, Vec<note_row::Model>, note::of_customers);
children!(OpenConversationsOf, i64, conversation::open_counts);
children!(CustomerCountOf, i64, organization::customer_counts);

/// Interactions by channel of each customer, over their whole history.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ChannelCountsOf(pub Uuid);

impl Loader<ChannelCountsOf> for Loaders {
    type Value = Vec<(String, i64)>;
    type Error = LoadError;

    async fn load(
        &self,
        keys: &[ChannelCountsOf],
    ) -> Result<HashMap<ChannelCountsOf, Self::Value>, Self::Error> {
        let ids: Vec<Uuid> = keys.iter().map(|key| key.0).collect();
        let mut rows = interaction::by_channel(
            &self.db,
            self.workspace_id,
            &ids,
            &InteractionFilter::default(),
        )
        .await?;
        Ok(ids
            .into_iter()
            .map(|id| (ChannelCountsOf(id), rows.remove(&id).unwrap_or_default()))
            .collect())
    }
}

/// One page of the interactions of one customer (its timeline) or one conversation (its
/// thread). `filter` holds neither id, so keys with the same filter and window share a query.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct InteractionsOf {
    pub parent: Parent,
    pub id: Uuid,
    pub filter: InteractionFilter,
    pub window: Window,
}

impl Loader<InteractionsOf> for Loaders {
    type Value = Page<interaction_row::Model>;
    type Error = LoadError;

    async fn load(
        &self,
        keys: &[InteractionsOf],
    ) -> Result<HashMap<InteractionsOf, Self::Value>, Self::Error> {
        let mut out = HashMap::new();
        for ((parent, filter, window), ids) in group(keys, |key| {
            ((key.parent, key.filter.clone(), key.window.clone()), key.id)
        }) {
            for (id, page) in
                interaction::pages_of(&self.db, self.workspace_id, parent, &ids, &filter, &window)
                    .await?
            {
                out.insert(
                    InteractionsOf {
                        parent,
                        id,
                        filter: filter.clone(),
                        window: window.clone(),
                    },
                    page,
                );
            }
        }
        Ok(out)
    }
}

/// How many interactions of one customer or conversation match a filter (`totalCount`).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct InteractionCountOf {
    pub parent: Parent,
    pub id: Uuid,
    pub filter: InteractionFilter,
}

impl Loader<InteractionCountOf> for Loaders {
    type Value = i64;
    type Error = LoadError;

    async fn load(
        &self,
        keys: &[InteractionCountOf],
    ) -> Result<HashMap<InteractionCountOf, Self::Value>, Self::Error> {
        let mut out = HashMap::new();
        for ((parent, filter), ids) in group(keys, |key| ((key.parent, key.filter.clone()), key.id))
        {
            let counts =
                interaction::counts_of(&self.db, self.workspace_id, parent, &ids, &filter).await?;
            for id in ids {
                let count = counts.get(&id).copied().unwrap_or(0);
                out.insert(
                    InteractionCountOf {
                        parent,
                        id,
                        filter: filter.clone(),
                    },
                    count,
                );
            }
        }
        Ok(out)
    }
}

/// Groups keys that can share one query.
fn group<K, G: Eq + Hash>(keys: &[K], split: impl Fn(&K) -> (G, Uuid)) -> HashMap<G, Vec<Uuid>> {
    let mut groups: HashMap<G, Vec<Uuid>> = HashMap::new();
    for key in keys {
        let (group, id) = split(key);
        groups.entry(group).or_default().push(id);
    }
    groups
}
