//! DataLoaders: one per relation a list can ask for, so a page of 100 customers with
//! their identities, tags and timelines costs a fixed number of statements. The loader is
//! built per request with the caller's workspace, so batching never crosses tenants and
//! nothing is cached between requests.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Arc;

use async_graphql::dataloader::Loader;
use sea_orm::DatabaseConnection;

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
use entity::{
    ContactPointId, ConversationId, CustomerId, DealId, IdentityId, InteractionId, NoteId,
    OrganizationId, SourceId, TagId, WorkspaceId,
};

pub struct Loaders {
    pub db: DatabaseConnection,
    pub workspace_id: WorkspaceId,
}

pub type LoadError = Arc<Error>;

/// Declares a key type for loading rows by their own id.
macro_rules! by_id {
    ($key:ident($id:ty), $entity:ident) => {
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub struct $key(pub $id);

        impl Loader<$key> for Loaders {
            type Value = $entity::Model;
            type Error = LoadError;

            async fn load(&self, keys: &[$key]) -> Result<HashMap<$key, Self::Value>, Self::Error> {
                let ids: Vec<$id> = keys.iter().map(|key| key.0).collect();
                let rows = domain::by_ids::<$entity::Entity, _>(
                    &self.db,
                    self.workspace_id,
                    &ids,
                    |row| row.id,
                )
                .await?;
                Ok(rows.into_iter().map(|(id, row)| ($key(id), row)).collect())
            }
        }
    };
}

/// Declares a key type for loading the children of a parent through a domain function
/// that answers for many parents at once.
macro_rules! children {
    ($key:ident($id:ty), $value:ty, $load:path) => {
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub struct $key(pub $id);

        impl Loader<$key> for Loaders {
            type Value = $value;
            type Error = LoadError;

            async fn load(&self, keys: &[$key]) -> Result<HashMap<$key, Self::Value>, Self::Error> {
                let ids: Vec<$id> = keys.iter().map(|key| key.0).collect();
                let mut rows = $load(&self.db, self.workspace_id, &ids).await?;
                Ok(ids
                    .into_iter()
                    .map(|id| ($key(id), rows.remove(&id).unwrap_or_default()))
                    .collect())
            }
        }
    };
}

/// A customer by id; the id of a customer merged into another loads that survivor.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct CustomerById(pub CustomerId);

impl Loader<CustomerById> for Loaders {
    type Value = customer::Model;
    type Error = LoadError;

    async fn load(
        &self,
        keys: &[CustomerById],
    ) -> Result<HashMap<CustomerById, Self::Value>, Self::Error> {
        let ids: Vec<CustomerId> = keys.iter().map(|key| key.0).collect();
        let rows = domain::merge::by_ids_resolved(&self.db, self.workspace_id, &ids).await?;
        Ok(rows
            .into_iter()
            .map(|(id, row)| (CustomerById(id), row))
            .collect())
    }
}
by_id!(OrganizationById(OrganizationId), organization_row);
by_id!(IdentityById(IdentityId), identity_row);
by_id!(ConversationById(ConversationId), conversation_row);
by_id!(InteractionById(InteractionId), interaction_row);
by_id!(DealById(DealId), deal_row);
by_id!(NoteById(NoteId), note_row);
by_id!(ContactPointById(ContactPointId), contact_point);
by_id!(TagById(TagId), tag_row);
by_id!(SourceById(SourceId), source_row);

children!(
    IdentitiesOf(CustomerId),
    Vec<identity_row::Model>,
    identity::of_customers
);
children!(
    ContactPointsOf(CustomerId),
    Vec<contact_point::Model>,
    identity::contact_points_of
);
children!(TagsOf(CustomerId), Vec<tag_row::Model>, tag::of_customers);
children!(
    ConversationsOf(CustomerId),
    Vec<conversation_row::Model>,
    conversation::of_customers
);
children!(
    DealsOf(CustomerId),
    Vec<deal_row::Model>,
    deal::of_customers
);
children!(
    DealsOfOrganization(OrganizationId),
    Vec<deal_row::Model>,
    deal::of_organizations
);
children!(
    NotesOf(CustomerId),
    Vec<note_row::Model>,
    note::of_customers
);
children!(
    DuplicatesOf(CustomerId),
    Vec<entity::duplicate_suggestion::Model>,
    domain::duplicate::of_customers
);
children!(
    OpenConversationsOf(CustomerId),
    i64,
    conversation::open_counts
);
children!(
    CustomerCountOf(OrganizationId),
    i64,
    organization::customer_counts
);

/// Interactions by channel of each customer, over their whole history.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ChannelCountsOf(pub CustomerId);

impl Loader<ChannelCountsOf> for Loaders {
    type Value = Vec<(connectors::Channel, i64)>;
    type Error = LoadError;

    async fn load(
        &self,
        keys: &[ChannelCountsOf],
    ) -> Result<HashMap<ChannelCountsOf, Self::Value>, Self::Error> {
        let ids: Vec<CustomerId> = keys.iter().map(|key| key.0).collect();
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
/// thread), by the parent's id. `filter` holds neither id, so keys with the same filter and
/// window share a query.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct InteractionsOf<P> {
    pub id: P,
    pub filter: InteractionFilter,
    pub window: Window,
}

impl<P: Parent> Loader<InteractionsOf<P>> for Loaders {
    type Value = Page<interaction_row::Model>;
    type Error = LoadError;

    async fn load(
        &self,
        keys: &[InteractionsOf<P>],
    ) -> Result<HashMap<InteractionsOf<P>, Self::Value>, Self::Error> {
        let mut out = HashMap::new();
        for ((filter, window), ids) in group(keys, |key| {
            ((key.filter.clone(), key.window.clone()), key.id)
        }) {
            for (id, page) in
                interaction::pages_of(&self.db, self.workspace_id, &ids, &filter, &window).await?
            {
                out.insert(
                    InteractionsOf {
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
pub struct InteractionCountOf<P> {
    pub id: P,
    pub filter: InteractionFilter,
}

impl<P: Parent> Loader<InteractionCountOf<P>> for Loaders {
    type Value = i64;
    type Error = LoadError;

    async fn load(
        &self,
        keys: &[InteractionCountOf<P>],
    ) -> Result<HashMap<InteractionCountOf<P>, Self::Value>, Self::Error> {
        let mut out = HashMap::new();
        for (filter, ids) in group(keys, |key| (key.filter.clone(), key.id)) {
            let counts = interaction::counts_of(&self.db, self.workspace_id, &ids, &filter).await?;
            for id in ids {
                let count = counts.get(&id).copied().unwrap_or(0);
                out.insert(
                    InteractionCountOf {
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
fn group<K, G: Eq + Hash, I>(keys: &[K], split: impl Fn(&K) -> (G, I)) -> HashMap<G, Vec<I>> {
    let mut groups: HashMap<G, Vec<I>> = HashMap::new();
    for key in keys {
        let (group, id) = split(key);
        groups.entry(group).or_default().push(id);
    }
    groups
}
