//! The Meilisearch backend, through meilisearch-sdk. At connect it creates both indexes
//! (`<prefix>interactions`, `<prefix>customers`, primary key `id`) and sets their
//! searchable, filterable and sortable attributes, ranking rules and typo tolerance
//! (one typo from 5 letters, two from 9), waiting for those tasks. A single write waits
//! for its task, so a write that returns is searchable, and a failed task is an error.
//! The indexer's batches ([`SearchIndex::submit`]) are only enqueued: Meilisearch applies
//! an index's tasks in the order they were enqueued, and [`SearchIndex::progress`] asks
//! for their statuses in one `GET /tasks?uids=…`, so the indexer sends the next batch
//! while this one is applied and moves its offset once the tasks succeeded.
//! Searches use `matchingStrategy: all`, as the embedded backend matches every word.
//! A rebuild fills `<prefix><index>_rebuild_<n>` and swaps it with the live index.
//!
//! Date-ordered searches sort on `occurred_at` then `id` (a total order) and page with a
//! keyset filter on both (`id` compared as a string: Meilisearch 1.15 or later).

use std::collections::HashMap;
use std::time::Duration;

use entity::{CustomerId, InteractionId, WorkspaceId};
use meilisearch_sdk::client::{Client, SwapIndexes};
use meilisearch_sdk::documents::DocumentDeletionQuery;
use meilisearch_sdk::search::{MatchingStrategies, Selectors};
use meilisearch_sdk::settings::{
    FilterFeatureModes, FilterFeatures, FilterableAttribute, FilterableAttributesSettings,
    MinWordSizeForTypos, Settings, TypoToleranceSettings,
};
use meilisearch_sdk::task_info::TaskInfo;
use meilisearch_sdk::tasks::{Task, TasksSearchQuery};
use serde::Deserialize;

use super::{
    Change, Changes, CustomerDoc, Facets, Hits, IndexName, InteractionDoc, InteractionQuery,
    Progress, Rebuild, SearchIndex, SearchSort, Submitted, MAX_HITS,
};
use crate::error::{Error, Result};

/// The interactions' attributes a search with facets counts hits by.
const FACETS: [&str; 4] = ["channel", "kind", "sentiment_label", "language"];

/// How long a write may wait for its task.
const TASK_TIMEOUT: Duration = Duration::from_secs(60);

pub struct Meili {
    client: Client,
    prefix: String,
}

fn failed(err: impl std::fmt::Display) -> Error {
    Error::Internal(format!("meilisearch: {err}"))
}

#[derive(Deserialize)]
struct IdOnly<I> {
    id: I,
    #[serde(default)]
    occurred_at: Option<i64>,
}

fn settings(index: IndexName) -> Settings {
    let typos = TypoToleranceSettings {
        enabled: Some(true),
        disable_on_attributes: None,
        disable_on_words: None,
        min_word_size_for_typos: Some(MinWordSizeForTypos {
            one_typo: Some(5),
            two_typos: Some(9),
        }),
        disable_on_numbers: None,
    };
    // `sort` first: a search asking for date order gets date order (like the embedded
    // backend); without a sort parameter the rule does nothing and relevance decides.
    let ranking = [
        "sort",
        "words",
        "typo",
        "proximity",
        "attribute",
        "exactness",
    ];
    match index {
        IndexName::Interactions => Settings::new()
            .with_searchable_attributes(super::INTERACTION_TEXT)
            .with_filterable_attributes_advanced([
                filterable(
                    &[
                        "workspace_id",
                        "customer_id",
                        "conversation_id",
                        "channel",
                        "kind",
                        "direction",
                        "status",
                        "sentiment_label",
                        "language",
                    ],
                    false,
                ),
                // Ranges: a score, a period, and the date-ordered keyset on both.
                filterable(&["sentiment", "occurred_at", "id"], true),
            ])
            .with_sortable_attributes(["occurred_at", "id"])
            .with_ranking_rules(ranking)
            .with_typo_tolerance(typos),
        IndexName::Customers => Settings::new()
            .with_searchable_attributes(super::CUSTOMER_TEXT)
            .with_filterable_attributes_advanced([filterable(&["workspace_id"], false)])
            .with_sortable_attributes(["last_seen_at"])
            .with_ranking_rules(ranking)
            .with_typo_tolerance(typos),
    }
}

/// Filterable `attributes`, compared by equality and, when `ranges`, by order too; never
/// searched by facet value, which nothing asks for. A plain attribute name would turn
/// facet search on, and Meilisearch then rebuilds every facet-searchable attribute's
/// value set after each batch of documents (all the ids of a large index: most of a
/// batch's time at 1,000,000 interactions), and orders every value for ranges.
fn filterable(attributes: &[&str], ranges: bool) -> FilterableAttribute {
    FilterableAttribute::Settings(FilterableAttributesSettings {
        attribute_patterns: attributes.iter().map(|name| (*name).to_owned()).collect(),
        features: FilterFeatures {
            facet_search: false,
            filter: FilterFeatureModes {
                equality: true,
                comparison: ranges,
            },
        },
    })
}

/// A finished task's outcome: its failure is an error naming Meilisearch's reason.
fn succeeded(done: std::result::Result<Task, meilisearch_sdk::errors::Error>) -> Result<()> {
    let task = done.map_err(failed)?;
    if task.is_failure() {
        return Err(failed(format!("a task failed: {}", task.unwrap_failure())));
    }
    Ok(())
}

/// Waits, however long it takes, for the settings task of `uid` that [`Meili::prepare`]
/// stopped waiting for, and logs how it ended.
async fn follow_settings(client: Client, uid: String, task: TaskInfo) {
    let done = task
        .wait_for_completion(&client, Some(Duration::from_secs(1)), Some(Duration::MAX))
        .await;
    match succeeded(done) {
        Ok(()) => tracing::info!(index = uid, "meilisearch applied this index's settings"),
        Err(err) => tracing::error!(
            index = uid,
            "meilisearch's update of this index's settings did not succeed ({err}); \
             searches work as before, batches cost what they did"
        ),
    }
}

/// A quoted filter value.
fn quote(value: &str) -> String {
    format!("\"{}\"", value.replace('\\', "\\\\").replace('"', "\\\""))
}

/// Ids as the documents hold them: the UUID, hyphenated.
fn strings(ids: &[impl std::fmt::Display]) -> Vec<String> {
    ids.iter().map(ToString::to_string).collect()
}

fn any_of(clauses: &mut Vec<String>, name: &str, values: &[String]) {
    if !values.is_empty() {
        let list: Vec<String> = values.iter().map(|v| quote(v)).collect();
        clauses.push(format!("{name} IN [{}]", list.join(", ")));
    }
}

/// The filter expression of a query: the workspace always, then every filter given.
pub fn filter_of(query: &InteractionQuery) -> String {
    let f = &query.filter;
    let mut clauses = vec![format!(
        "workspace_id = {}",
        quote(&query.workspace_id.to_string())
    )];
    any_of(&mut clauses, "customer_id", &strings(&f.customer_ids));
    any_of(
        &mut clauses,
        "conversation_id",
        &strings(&f.conversation_ids),
    );
    any_of(&mut clauses, "channel", &f.channels);
    any_of(&mut clauses, "kind", &f.kinds);
    any_of(&mut clauses, "direction", &f.directions);
    any_of(&mut clauses, "status", &f.statuses);
    any_of(&mut clauses, "language", &f.languages);
    any_of(&mut clauses, "sentiment_label", &f.sentiments);
    if let Some(min) = f.sentiment_min {
        clauses.push(format!("sentiment >= {min}"));
    }
    if let Some(max) = f.sentiment_max {
        clauses.push(format!("sentiment <= {max}"));
    }
    if let Some(after) = f.occurred_after {
        clauses.push(format!("occurred_at >= {}", after.timestamp_millis()));
    }
    if let Some(before) = f.occurred_before {
        clauses.push(format!("occurred_at < {}", before.timestamp_millis()));
    }
    if let (Some(position), SearchSort::Newest | SearchSort::Oldest) =
        (f.after_position, query.sort)
    {
        let op = if query.sort == SearchSort::Oldest {
            ">"
        } else {
            "<"
        };
        let at = position.occurred_at;
        let id = quote(&position.id.to_string());
        clauses.push(format!(
            "(occurred_at {op} {at} OR (occurred_at = {at} AND id {op} {id}))"
        ));
    }
    clauses.join(" AND ")
}

impl Meili {
    /// Deletes both indexes of `prefix` (tests' unique indexes), without preparing them.
    pub async fn drop_indexes(url: &str, key: Option<&str>, prefix: &str) -> Result<()> {
        let meili = Meili {
            client: Client::new(url, key).map_err(failed)?,
            prefix: prefix.to_owned(),
        };
        meili.destroy().await
    }

    /// Connects and makes sure both indexes exist with their settings.
    pub async fn connect(url: &str, key: Option<&str>, prefix: &str) -> anyhow::Result<Meili> {
        let client =
            Client::new(url, key).map_err(|err| anyhow::anyhow!("meilisearch at {url}: {err}"))?;
        let meili = Meili {
            client,
            prefix: prefix.to_owned(),
        };
        for index in IndexName::ALL {
            meili
                .prepare(&meili.uid(index), index, TASK_TIMEOUT)
                .await
                .map_err(|err| {
                    anyhow::anyhow!("preparing the {} index on {url}: {err}", index.as_str())
                })?;
        }
        Ok(meili)
    }

    fn uid(&self, index: IndexName) -> String {
        format!("{}{}", self.prefix, index.as_str())
    }

    /// Creates `uid` (when missing) and applies the settings of `index`, waiting for them.
    /// Settings that differ from an existing index's make Meilisearch re-index it (over a
    /// minute for a large one, once, after an upgrade): when that outlasts `patience` the
    /// process goes on with a warning, its writes queued behind the task and its searches
    /// answered under the index's earlier settings meanwhile; the task is followed to its
    /// end in the background and a failure logged as an error. A new index (a rebuild's
    /// too) has no earlier settings to answer under: its wait has no such leniency.
    /// Settings Meilisearch refuses fail.
    async fn prepare(&self, uid: &str, index: IndexName, patience: Duration) -> Result<()> {
        let existed = self.client.get_index(uid).await.is_ok();
        if !existed {
            self.wait(self.client.create_index(uid, Some("id")).await)
                .await?;
        }
        let settings = settings(index);
        let task = (self.client.index(uid).set_settings(&settings).await).map_err(failed)?;
        match self.completion(task.clone(), patience).await {
            Err(meilisearch_sdk::errors::Error::Timeout) if existed => {
                tracing::warn!(
                    index = uid,
                    task = task.task_uid,
                    "meilisearch is still applying this index's settings after {:?}; \
                     going on, writes wait behind them",
                    patience
                );
                tokio::spawn(follow_settings(self.client.clone(), uid.to_owned(), task));
                Ok(())
            }
            done => succeeded(done),
        }
    }

    /// Waits for a task; its failure is an error naming Meilisearch's reason.
    async fn wait(
        &self,
        task: std::result::Result<TaskInfo, meilisearch_sdk::errors::Error>,
    ) -> Result<()> {
        succeeded(self.completion(task.map_err(failed)?, TASK_TIMEOUT).await)
    }

    /// The task once Meilisearch finished it, or a timeout after `patience`.
    async fn completion(
        &self,
        task: TaskInfo,
        patience: Duration,
    ) -> std::result::Result<Task, meilisearch_sdk::errors::Error> {
        task.wait_for_completion(
            &self.client,
            Some(Duration::from_millis(20)),
            Some(patience),
        )
        .await
    }

    /// Enqueues one write; `None` when it touches nothing.
    async fn enqueue(&self, change: &Change) -> Result<Option<TaskInfo>> {
        if change.is_empty() {
            return Ok(None);
        }
        let interactions = self.client.index(self.uid(IndexName::Interactions));
        let customers = self.client.index(self.uid(IndexName::Customers));
        let task = match change {
            Change::UpsertInteractions(docs) => interactions.add_or_replace(docs, Some("id")).await,
            Change::DeleteInteractions(ids) => interactions.delete_documents(&strings(ids)).await,
            Change::DeleteInteractionsOf(customer_ids) => {
                let mut filter = Vec::new();
                any_of(&mut filter, "customer_id", &strings(customer_ids));
                let filter = filter.join("");
                let mut query = DocumentDeletionQuery::new(&interactions);
                query.with_filter(&filter);
                interactions.delete_documents_with(&query).await
            }
            Change::UpsertCustomers(docs) => customers.add_or_replace(docs, Some("id")).await,
            Change::DeleteCustomers(ids) => customers.delete_documents(&strings(ids)).await,
        };
        task.map(Some).map_err(failed)
    }

    /// Applies one write and waits until it is searchable.
    async fn apply(&self, change: Change) -> Result<()> {
        match self.enqueue(&change).await? {
            Some(task) => self.wait(Ok(task)).await,
            None => Ok(()),
        }
    }

    async fn add<T: serde::Serialize + Send + Sync>(&self, uid: &str, docs: &[T]) -> Result<()> {
        if docs.is_empty() {
            return Ok(());
        }
        self.wait(
            self.client
                .index(uid)
                .add_or_replace(docs, Some("id"))
                .await,
        )
        .await
    }
}

#[async_trait::async_trait]
impl SearchIndex for Meili {
    fn backend(&self) -> &'static str {
        "meilisearch"
    }

    async fn upsert_interactions(&self, docs: Vec<InteractionDoc>) -> Result<()> {
        self.apply(Change::UpsertInteractions(docs)).await
    }

    async fn delete_interactions(&self, ids: Vec<InteractionId>) -> Result<()> {
        self.apply(Change::DeleteInteractions(ids)).await
    }

    async fn delete_interactions_of(&self, customer_ids: Vec<CustomerId>) -> Result<()> {
        self.apply(Change::DeleteInteractionsOf(customer_ids)).await
    }

    async fn upsert_customers(&self, docs: Vec<CustomerDoc>) -> Result<()> {
        self.apply(Change::UpsertCustomers(docs)).await
    }

    async fn delete_customers(&self, ids: Vec<CustomerId>) -> Result<()> {
        self.apply(Change::DeleteCustomers(ids)).await
    }

    /// Enqueues every write, in order, without waiting for any.
    async fn submit(&self, changes: Changes) -> Result<Submitted> {
        let mut tasks = Vec::with_capacity(changes.0.len());
        for change in &changes.0 {
            if let Some(task) = self.enqueue(change).await? {
                tasks.push(u64::from(task.get_task_uid()));
            }
        }
        Ok(Submitted { tasks })
    }

    /// The statuses of the submitted tasks, in one request: failed when one failed (or
    /// is unknown, e.g. deleted), applying while one is enqueued or processing.
    async fn progress(&self, submitted: &Submitted) -> Result<Progress> {
        if submitted.tasks.is_empty() {
            return Ok(Progress::Applied);
        }
        let uids = submitted
            .tasks
            .iter()
            .map(|&uid| u32::try_from(uid).map_err(failed))
            .collect::<Result<Vec<u32>>>()?;
        let mut query = TasksSearchQuery::new(&self.client);
        query
            .with_uids(&uids)
            .with_limit(u32::try_from(uids.len()).unwrap_or(u32::MAX));
        let found = self.client.get_tasks_with(&query).await.map_err(failed)?;
        let mut applying = false;
        for uid in &uids {
            match found.results.iter().find(|task| task.get_uid() == *uid) {
                Some(Task::Succeeded { .. }) => {}
                Some(Task::Enqueued { .. } | Task::Processing { .. }) => applying = true,
                Some(Task::Failed { content }) => {
                    return Ok(Progress::Failed(format!(
                        "task {uid} failed: {}",
                        content.error.error_message
                    )))
                }
                None => {
                    return Ok(Progress::Failed(format!(
                        "task {uid} is unknown to Meilisearch"
                    )))
                }
            }
        }
        Ok(if applying {
            Progress::Applying
        } else {
            Progress::Applied
        })
    }

    async fn search_interactions(&self, q: &InteractionQuery) -> Result<Hits<InteractionId>> {
        let index = self.client.index(self.uid(IndexName::Interactions));
        let filter = filter_of(q);
        let sort_newest = ["occurred_at:desc", "id:desc"];
        let sort_oldest = ["occurred_at:asc", "id:asc"];
        let retrieve = ["id", "occurred_at"];
        // A date-ordered page after the first filters on its cursor, so Meilisearch would
        // count and facet only what lies past it: the totals of the whole search come
        // from a second search without the cursor and without hits, sent alongside when
        // the answer shows them.
        let keyset = q.sort != SearchSort::Relevance
            && q.filter.after_position.is_some()
            && (q.totals || q.facets);
        let whole_filter = keyset.then(|| {
            filter_of(&InteractionQuery {
                filter: crate::search::SearchFilter {
                    after_position: None,
                    ..q.filter.clone()
                },
                ..q.clone()
            })
        });
        let mut search = index.search();
        search
            .with_query(&q.text)
            .with_filter(&filter)
            .with_offset(q.offset.min(MAX_HITS))
            .with_limit(q.limit.clamp(1, MAX_HITS))
            .with_attributes_to_retrieve(Selectors::Some(&retrieve))
            .with_matching_strategy(MatchingStrategies::ALL);
        match q.sort {
            SearchSort::Relevance => {}
            SearchSort::Newest => {
                search.with_sort(&sort_newest);
            }
            SearchSort::Oldest => {
                search.with_sort(&sort_oldest);
            }
        }
        let whole = whole_filter.as_ref().map(|whole_filter| {
            let mut whole = index.search();
            whole
                .with_query(&q.text)
                .with_filter(whole_filter)
                .with_limit(0)
                .with_matching_strategy(MatchingStrategies::ALL);
            if q.facets {
                whole.with_facets(Selectors::Some(&FACETS));
            }
            whole
        });
        if q.facets && whole.is_none() {
            search.with_facets(Selectors::Some(&FACETS));
        }
        let (results, whole) = tokio::try_join!(search.execute::<IdOnly<InteractionId>>(), async {
            match &whole {
                Some(whole) => whole.execute::<IdOnly<InteractionId>>().await.map(Some),
                None => Ok(None),
            }
        })
        .map_err(failed)?;
        let counted = whole.as_ref().unwrap_or(&results);
        let facets = q.facets.then(|| {
            let distribution = counted.facet_distribution.clone().unwrap_or_default();
            let counts = |name: &str| -> Vec<(String, u64)> {
                let mut counts: Vec<(String, u64)> = distribution
                    .get(name)
                    .cloned()
                    .unwrap_or_else(HashMap::new)
                    .into_iter()
                    .filter(|(_, count)| *count > 0)
                    .map(|(value, count)| (value, count as u64))
                    .collect();
                counts.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
                counts
            };
            Facets {
                channel: counts("channel"),
                kind: counts("kind"),
                sentiment: counts("sentiment_label"),
                language: counts("language"),
            }
        });
        let estimated_total = counted.estimated_total_hits.unwrap_or(0) as u64;
        if q.sort == SearchSort::Relevance {
            return Ok(Hits {
                ids: results.hits.into_iter().map(|hit| hit.result.id).collect(),
                estimated_total,
                facets,
                occurred_at: Vec::new(),
            });
        }
        let mut positions = results
            .hits
            .into_iter()
            .map(|hit| {
                Ok(crate::search::DatePosition {
                    occurred_at: hit
                        .result
                        .occurred_at
                        .ok_or_else(|| failed("a hit without occurred_at"))?,
                    id: hit.result.id,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        // The keyset filter again, here: a page never repeats a hit at or before its
        // cursor, whatever the engine's string comparison does.
        if let Some(after) = q.filter.after_position {
            positions.retain(|position| {
                crate::search::date_order(q.sort, &after, position) == std::cmp::Ordering::Less
            });
        }
        Ok(Hits {
            ids: positions.iter().map(|p| p.id).collect(),
            estimated_total,
            facets,
            occurred_at: positions.iter().map(|p| p.occurred_at).collect(),
        })
    }

    async fn search_customers(
        &self,
        workspace_id: WorkspaceId,
        text: &str,
        limit: usize,
    ) -> Result<Hits<CustomerId>> {
        if super::words(text).is_empty() {
            return Ok(Hits::default());
        }
        let index = self.client.index(self.uid(IndexName::Customers));
        let filter = format!("workspace_id = {}", quote(&workspace_id.to_string()));
        let retrieve = ["id"];
        let results = index
            .search()
            .with_query(text)
            .with_filter(&filter)
            .with_limit(limit.clamp(1, MAX_HITS))
            .with_attributes_to_retrieve(Selectors::Some(&retrieve))
            .with_matching_strategy(MatchingStrategies::ALL)
            .execute::<IdOnly<CustomerId>>()
            .await
            .map_err(failed)?;
        Ok(Hits {
            ids: results.hits.into_iter().map(|hit| hit.result.id).collect(),
            estimated_total: results.estimated_total_hits.unwrap_or(0) as u64,
            facets: None,
            occurred_at: Vec::new(),
        })
    }

    async fn begin_rebuild(&self, index: IndexName) -> Result<Box<dyn Rebuild>> {
        let uid = format!(
            "{}_rebuild_{}",
            self.uid(index),
            uuid::Uuid::now_v7().simple()
        );
        self.prepare(&uid, index, TASK_TIMEOUT).await?;
        Ok(Box::new(MeiliRebuild {
            meili: Meili {
                client: self.client.clone(),
                prefix: self.prefix.clone(),
            },
            live: self.uid(index),
            uid,
        }))
    }

    async fn destroy(&self) -> Result<()> {
        for index in IndexName::ALL {
            self.wait(self.client.delete_index(self.uid(index)).await)
                .await?;
        }
        Ok(())
    }
}

struct MeiliRebuild {
    meili: Meili,
    live: String,
    uid: String,
}

#[async_trait::async_trait]
impl Rebuild for MeiliRebuild {
    async fn add_interactions(&mut self, docs: Vec<InteractionDoc>) -> Result<()> {
        self.meili.add(&self.uid, &docs).await
    }

    async fn add_customers(&mut self, docs: Vec<CustomerDoc>) -> Result<()> {
        self.meili.add(&self.uid, &docs).await
    }

    async fn finish(self: Box<Self>) -> Result<()> {
        let swap = SwapIndexes {
            indexes: (self.live.clone(), self.uid.clone()),
            rename: None,
        };
        self.meili
            .wait(self.meili.client.swap_indexes([&swap]).await)
            .await?;
        // After the swap the rebuild's name holds the old documents.
        self.meili
            .wait(self.meili.client.delete_index(&self.uid).await)
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::search::SearchFilter;

    #[test]
    fn filters_are_written_in_meilisearch_syntax_with_the_workspace_first() {
        let workspace = WorkspaceId::from_uuid(uuid::Uuid::nil());
        let customer = CustomerId::from_uuid(uuid::Uuid::from_u128(7));
        let query = InteractionQuery {
            workspace_id: workspace,
            text: "export".into(),
            filter: SearchFilter {
                customer_ids: vec![customer],
                channels: vec!["mastodon".into(), "em\"ail".into()],
                sentiment_min: Some(-0.5),
                occurred_after: Some(chrono::DateTime::from_timestamp_millis(1_000).unwrap()),
                ..SearchFilter::default()
            },
            sort: SearchSort::Newest,
            offset: 0,
            limit: 20,
            facets: true,
            totals: true,
        };
        assert_eq!(
            filter_of(&query),
            format!(
                "workspace_id = \"{workspace}\" AND customer_id IN [\"{customer}\"] AND channel IN [\"mastodon\", \"em\\\"ail\"] AND sentiment >= -0.5 AND occurred_at >= 1000"
            )
        );
    }

    /// Whether the interactions index's settings let an attribute be filtered by equality
    /// (`=`, `IN`) or by order (`<`, `>=`, …); facet search never.
    fn allowed(attribute: &str) -> Option<FilterFeatureModes> {
        let settings = settings(IndexName::Interactions);
        let mut found = None;
        for rule in settings.filterable_attributes.unwrap() {
            let FilterableAttribute::Settings(rule) = rule else {
                panic!("a plain attribute turns facet search on: {rule:?}");
            };
            assert!(!rule.features.facet_search);
            if rule.attribute_patterns.iter().any(|name| name == attribute) {
                assert!(found.is_none(), "{attribute} is in two rules");
                found = Some(rule.features.filter);
            }
        }
        found
    }

    #[test]
    fn every_filter_and_facet_written_is_one_the_index_settings_allow() {
        let id = InteractionId::from_uuid(uuid::Uuid::from_u128(9));
        let at = |millis| Some(chrono::DateTime::from_timestamp_millis(millis).unwrap());
        let mut query = InteractionQuery {
            workspace_id: WorkspaceId::from_uuid(uuid::Uuid::nil()),
            text: "export".into(),
            filter: SearchFilter {
                customer_ids: vec![CustomerId::from_uuid(uuid::Uuid::from_u128(7))],
                conversation_ids: vec![entity::ConversationId::from_uuid(uuid::Uuid::from_u128(8))],
                channels: vec!["mastodon".into()],
                kinds: vec!["mention".into()],
                directions: vec!["inbound".into()],
                statuses: vec!["open".into()],
                languages: vec!["en".into()],
                sentiments: vec!["negative".into()],
                sentiment_min: Some(-0.5),
                sentiment_max: Some(0.5),
                occurred_after: at(1_000),
                occurred_before: at(2_000),
                after_position: Some(crate::search::DatePosition {
                    occurred_at: 1_500,
                    id,
                }),
            },
            sort: SearchSort::Newest,
            offset: 0,
            limit: 20,
            facets: true,
            totals: true,
        };
        let mut checked = 0;
        for sort in [SearchSort::Newest, SearchSort::Oldest] {
            query.sort = sort;
            let filter = filter_of(&query);
            let words: Vec<&str> = filter.split_whitespace().collect();
            for pair in words.windows(2) {
                let (attribute, operator) = (pair[0].trim_start_matches('('), pair[1]);
                let range = match operator {
                    "=" | "IN" => false,
                    "<" | ">" | "<=" | ">=" | "TO" => true,
                    _ => continue,
                };
                let modes = allowed(attribute)
                    .unwrap_or_else(|| panic!("{attribute} is filtered but not filterable"));
                assert!(modes.equality, "{attribute} {operator}");
                assert!(
                    !range || modes.comparison,
                    "{attribute} {operator} in {filter}"
                );
                checked += 1;
            }
        }
        // Every clause (the keyset's three included), in either date order.
        assert_eq!(checked, 2 * 16);
        for facet in FACETS {
            assert!(
                allowed(facet).is_some(),
                "{facet} is counted but not filterable"
            );
        }
        // Only what is compared by order has its values ordered.
        for attribute in ["customer_id", "conversation_id", "workspace_id", "channel"] {
            assert!(!allowed(attribute).unwrap().comparison, "{attribute}");
        }
        // The customers index is filtered by workspace alone, never by facet value.
        let customers = serde_json::to_value(settings(IndexName::Customers)).unwrap();
        let workspace_only = serde_json::json!([{
            "attributePatterns": ["workspace_id"],
            "features": { "facetSearch": false, "filter": { "equality": true, "comparison": false } }
        }]);
        assert_eq!(customers["filterableAttributes"], workspace_only);
    }

    #[test]
    fn a_keyset_position_becomes_a_range_filter_on_date_and_id() {
        let id = InteractionId::from_uuid(uuid::Uuid::from_u128(9));
        let mut query = InteractionQuery {
            workspace_id: WorkspaceId::from_uuid(uuid::Uuid::nil()),
            text: String::new(),
            filter: SearchFilter {
                after_position: Some(crate::search::DatePosition {
                    occurred_at: 1_000,
                    id,
                }),
                ..SearchFilter::default()
            },
            sort: SearchSort::Newest,
            offset: 0,
            limit: 20,
            facets: false,
            totals: true,
        };
        assert!(filter_of(&query).ends_with(&format!(
            " AND (occurred_at < 1000 OR (occurred_at = 1000 AND id < \"{id}\"))"
        )));
        query.sort = SearchSort::Oldest;
        assert!(filter_of(&query).contains("(occurred_at > 1000 OR (occurred_at = 1000 AND id > "));
        query.sort = SearchSort::Relevance;
        assert!(!filter_of(&query).contains("occurred_at"));
    }

    /// A local stand-in for Meilisearch's document and task routes, answering as the API
    /// reference documents them (<https://www.meilisearch.com/docs/reference/api/documents>,
    /// <https://www.meilisearch.com/docs/reference/api/tasks>): a write is answered at
    /// once with its enqueued task (`202`), `GET /tasks?uids=…` with each task's status.
    mod fake {
        use std::collections::HashMap;
        use std::sync::{Arc, Mutex};

        use axum::extract::{Path, Query, State};
        use axum::http::StatusCode;
        use axum::routing::{get, patch, post};
        use axum::{Json, Router};
        use serde_json::{json, Value};

        #[derive(Default)]
        pub struct Tasks {
            /// Each task: its index, type and status (`enqueued`, `succeeded`, `failed`).
            pub tasks: Vec<(String, &'static str, &'static str)>,
            /// How many times `GET /tasks` was asked.
            pub polls: usize,
            /// The filter and limit of every search asked.
            pub searches: Vec<(String, u64)>,
            /// The status a settings update gets (`succeeded` when unset; `broken`: asking
            /// for the task fails).
            pub settings_status: &'static str,
            /// Whether `GET /indexes/{index}` finds no index (it finds every one otherwise).
            pub no_indexes: bool,
        }

        pub type Shared = Arc<Mutex<Tasks>>;

        const AT: &str = "2026-11-23T10:00:00.000000Z";

        /// Enqueues a task of `kind` on `index`, `status` until a test changes it.
        fn enqueue(
            state: &Shared,
            index: String,
            kind: &'static str,
            status: &'static str,
        ) -> (StatusCode, Json<Value>) {
            let mut tasks = state.lock().unwrap();
            let uid = tasks.tasks.len();
            tasks.tasks.push((index.clone(), kind, status));
            (
                StatusCode::ACCEPTED,
                Json(
                    json!({ "taskUid": uid, "indexUid": index, "status": "enqueued", "type": kind, "enqueuedAt": AT }),
                ),
            )
        }

        async fn add(
            State(state): State<Shared>,
            Path(index): Path<String>,
        ) -> (StatusCode, Json<Value>) {
            enqueue(&state, index, "documentAdditionOrUpdate", "enqueued")
        }

        async fn delete(
            State(state): State<Shared>,
            Path(index): Path<String>,
        ) -> (StatusCode, Json<Value>) {
            enqueue(&state, index, "documentDeletion", "enqueued")
        }

        /// `PATCH /indexes/{index}/settings`: a task whose status the test chose.
        async fn settings(
            State(state): State<Shared>,
            Path(index): Path<String>,
        ) -> (StatusCode, Json<Value>) {
            let status = match state.lock().unwrap().settings_status {
                "" => "succeeded",
                status => status,
            };
            enqueue(&state, index, "settingsUpdate", status)
        }

        /// `GET /indexes/{index}`: found, unless the test said there are none.
        async fn index(
            State(state): State<Shared>,
            Path(index): Path<String>,
        ) -> (StatusCode, Json<Value>) {
            if state.lock().unwrap().no_indexes {
                let error = json!({ "message": format!("Index `{index}` not found."), "code": "index_not_found", "type": "invalid_request", "link": "https://docs.meilisearch.com/errors#index_not_found" });
                return (StatusCode::NOT_FOUND, Json(error));
            }
            let found =
                json!({ "uid": index, "primaryKey": "id", "createdAt": AT, "updatedAt": AT });
            (StatusCode::OK, Json(found))
        }

        /// `POST /indexes`: a creation task, done at once.
        async fn create(
            State(state): State<Shared>,
            Json(body): Json<Value>,
        ) -> (StatusCode, Json<Value>) {
            let uid = body["uid"].as_str().unwrap_or_default().to_owned();
            enqueue(&state, uid, "indexCreation", "succeeded")
        }

        /// A task as `GET /tasks` and `GET /tasks/{uid}` show it.
        fn shown(
            uid: usize,
            (index, kind, status): &(String, &'static str, &'static str),
        ) -> Value {
            let mut task = json!({ "uid": uid, "indexUid": index, "status": status, "type": kind, "details": null, "canceledBy": null, "error": null, "enqueuedAt": AT });
            if *status != "enqueued" {
                task["startedAt"] = json!(AT);
            }
            if *status == "succeeded" || *status == "failed" {
                task["finishedAt"] = json!(AT);
                task["duration"] = json!("PT0.001S");
            }
            if *status == "failed" {
                task["error"] = json!({ "message": "Document identifier `x y` is invalid.", "code": "invalid_document_id", "type": "invalid_request", "link": "https://docs.meilisearch.com/errors#invalid_document_id" });
            }
            task
        }

        async fn task(
            State(state): State<Shared>,
            Path(uid): Path<usize>,
        ) -> (StatusCode, Json<Value>) {
            let tasks = state.lock().unwrap();
            match &tasks.tasks[uid] {
                (_, _, "broken") => (StatusCode::INTERNAL_SERVER_ERROR, Json(json!({}))),
                task => (StatusCode::OK, Json(shown(uid, task))),
            }
        }

        async fn tasks(
            State(state): State<Shared>,
            Query(query): Query<HashMap<String, String>>,
        ) -> Json<Value> {
            let mut tasks = state.lock().unwrap();
            tasks.polls += 1;
            let wanted: Vec<usize> = query
                .get("uids")
                .map(|uids| uids.split(',').filter_map(|uid| uid.parse().ok()).collect())
                .unwrap_or_default();
            let results: Vec<Value> = wanted
                .iter()
                .filter_map(|&uid| tasks.tasks.get(uid).map(|task| shown(uid, task)))
                .collect();
            Json(
                json!({ "results": results, "total": results.len(), "limit": 20, "from": null, "next": null }),
            )
        }

        /// A search: no hits; 1,200 in all, or 1,100 when the filter has a date cursor (as
        /// Meilisearch counts only what its filter leaves), with a facet to match.
        async fn search(
            State(state): State<Shared>,
            Path(index): Path<String>,
            Json(body): Json<Value>,
        ) -> Json<Value> {
            let filter = body["filter"].as_str().unwrap_or_default().to_owned();
            let limit = body["limit"].as_u64().unwrap_or(20);
            state.lock().unwrap().searches.push((filter.clone(), limit));
            let total = if filter.contains("occurred_at <") {
                1_100
            } else {
                1_200
            };
            Json(json!({
                "hits": [], "query": body["q"], "processingTimeMs": 0, "limit": limit,
                "offset": 0, "estimatedTotalHits": total, "indexUid": index,
                "facetDistribution": { "channel": { "email": total } }
            }))
        }

        /// Serves the stand-in on a loopback port; returns its URL.
        pub async fn serve(state: Shared) -> String {
            let app = Router::new()
                .route("/indexes/{index}/documents", post(add))
                .route("/indexes/{index}/documents/delete-batch", post(delete))
                .route("/indexes/{index}/documents/delete", post(delete))
                .route("/tasks", get(tasks))
                .route("/tasks/{uid}", get(task))
                .route("/indexes", post(create))
                .route("/indexes/{index}", get(index))
                .route("/indexes/{index}/settings", patch(settings))
                .route("/indexes/{index}/search", post(search))
                .with_state(state);
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let url = format!("http://{}", listener.local_addr().unwrap());
            tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
            url
        }
    }

    #[tokio::test]
    async fn a_later_date_ordered_page_counts_the_whole_search_only_when_the_answer_shows_it() {
        let state = fake::Shared::default();
        let url = fake::serve(state.clone()).await;
        let meili = Meili {
            client: Client::new(&url, None::<String>).unwrap(),
            prefix: "t_".into(),
        };
        let mut query = InteractionQuery {
            workspace_id: WorkspaceId::from_uuid(uuid::Uuid::nil()),
            text: "export".into(),
            filter: crate::search::SearchFilter {
                channels: vec!["email".into()],
                after_position: Some(crate::search::DatePosition {
                    occurred_at: 1_000,
                    id: InteractionId::from_uuid(uuid::Uuid::from_u128(9)),
                }),
                ..crate::search::SearchFilter::default()
            },
            sort: SearchSort::Newest,
            offset: 0,
            limit: 21,
            facets: true,
            totals: true,
        };
        let hits = meili.search_interactions(&query).await.unwrap();
        assert_eq!(hits.estimated_total, 1_200, "the whole search's count");
        let facets = hits.facets.unwrap();
        assert_eq!(facets.channel, vec![("email".to_owned(), 1_200)]);
        {
            let mut asked = std::mem::take(&mut state.lock().unwrap().searches);
            asked.sort_by_key(|(_, limit)| *limit);
            assert_eq!(asked.len(), 2, "{asked:?}");
            let (count, page) = (&asked[0], &asked[1]);
            assert_eq!(count.1, 0, "the count search asks for no hit");
            assert!(!count.0.contains("occurred_at"), "{}", count.0);
            assert!(
                count.0.contains("channel IN [\"email\"]"),
                "with every other filter: {}",
                count.0
            );
            assert_eq!(page.1, 21);
            assert!(page.0.contains("occurred_at <"), "{}", page.0);
        }
        // Neither the total nor facets shown: one search.
        query.facets = false;
        query.totals = false;
        meili.search_interactions(&query).await.unwrap();
        assert_eq!(state.lock().unwrap().searches.len(), 1);
        // The first page, or relevance order: one search, its own count.
        query.totals = true;
        query.filter.after_position = None;
        let first = meili.search_interactions(&query).await.unwrap();
        assert_eq!(first.estimated_total, 1_200);
        assert_eq!(state.lock().unwrap().searches.len(), 2);
    }

    /// A Meilisearch stand-in whose settings updates end as `status`, and a client of it.
    async fn settings_ending(status: &'static str) -> (fake::Shared, Meili) {
        let state = fake::Shared::default();
        state.lock().unwrap().settings_status = status;
        let url = fake::serve(state.clone()).await;
        let meili = Meili {
            client: Client::new(&url, None::<String>).unwrap(),
            prefix: "t_".into(),
        };
        (state, meili)
    }

    #[tokio::test]
    async fn settings_still_being_applied_when_the_wait_ends_do_not_stop_the_start() {
        let (state, meili) = settings_ending("processing").await;
        let patience = Duration::from_millis(200);
        (meili
            .prepare("t_interactions", IndexName::Interactions, patience)
            .await)
            .unwrap();
        let tasks = &state.lock().unwrap().tasks;
        assert_eq!(tasks.len(), 1);
        assert_eq!(tasks[0].1, "settingsUpdate");
    }

    #[tokio::test]
    async fn a_new_index_waits_for_its_settings_without_leniency() {
        let (state, meili) = settings_ending("processing").await;
        state.lock().unwrap().no_indexes = true;
        let patience = Duration::from_millis(200);
        let late = meili
            .prepare("t_customers", IndexName::Customers, patience)
            .await
            .unwrap_err();
        assert!(late.to_string().contains("in time"), "{late}");
        let kinds: Vec<&str> = state.lock().unwrap().tasks.iter().map(|t| t.1).collect();
        assert_eq!(kinds, ["indexCreation", "settingsUpdate"]);
    }

    #[tokio::test]
    async fn settings_meilisearch_refuses_or_applies_are_waited_for() {
        let (_, meili) = settings_ending("failed").await;
        let refused = meili
            .prepare("t_interactions", IndexName::Interactions, TASK_TIMEOUT)
            .await
            .unwrap_err();
        assert!(refused.to_string().contains("a task failed"), "{refused}");
        let (_, meili) = settings_ending("broken").await;
        let unknown = meili.prepare("t_interactions", IndexName::Interactions, TASK_TIMEOUT);
        unknown.await.unwrap_err();
        let (_, meili) = settings_ending("succeeded").await;
        (meili
            .prepare("t_customers", IndexName::Customers, TASK_TIMEOUT)
            .await)
            .unwrap();
    }

    #[tokio::test]
    async fn submitted_writes_are_enqueued_without_waiting_and_their_tasks_tell_progress() {
        let state = fake::Shared::default();
        let url = fake::serve(state.clone()).await;
        let meili = Meili {
            client: Client::new(&url, None::<String>).unwrap(),
            prefix: "t_".into(),
        };
        let workspace = WorkspaceId::from_uuid(uuid::Uuid::nil());
        let customer = CustomerId::from_uuid(uuid::Uuid::from_u128(1));
        let doc = CustomerDoc {
            id: customer,
            workspace_id: workspace,
            names: vec!["Ana".into()],
            emails: Vec::new(),
            phones: Vec::new(),
            handles: Vec::new(),
            organization: String::new(),
            tags: Vec::new(),
            last_seen_at: 0,
        };
        let mut changes = Changes::default();
        changes.push(Change::UpsertInteractions(Vec::new()));
        changes.push(Change::DeleteInteractions(vec![InteractionId::from_uuid(
            uuid::Uuid::from_u128(2),
        )]));
        changes.push(Change::UpsertCustomers(vec![doc]));
        changes.push(Change::DeleteInteractionsOf(vec![customer]));
        let first = meili.submit(changes.clone()).await.unwrap();
        let second = meili.submit(changes).await.unwrap();
        assert_eq!(
            first.tasks,
            vec![0, 1, 2],
            "one task per write, empty writes skipped"
        );
        assert_eq!(second.tasks, vec![3, 4, 5]);
        {
            let tasks = state.lock().unwrap();
            assert_eq!(tasks.polls, 0, "sending never waits for a task");
            let sent: Vec<(&str, &str)> = tasks
                .tasks
                .iter()
                .take(3)
                .map(|(index, kind, _)| (index.as_str(), *kind))
                .collect();
            assert_eq!(
                sent,
                vec![
                    ("t_interactions", "documentDeletion"),
                    ("t_customers", "documentAdditionOrUpdate"),
                    ("t_interactions", "documentDeletion"),
                ]
            );
        }
        assert_eq!(meili.progress(&first).await.unwrap(), Progress::Applying);
        let set = |uid: usize, status: &'static str| state.lock().unwrap().tasks[uid].2 = status;
        set(0, "succeeded");
        set(1, "succeeded");
        assert_eq!(meili.progress(&first).await.unwrap(), Progress::Applying);
        set(2, "succeeded");
        assert_eq!(meili.progress(&first).await.unwrap(), Progress::Applied);
        assert_eq!(state.lock().unwrap().polls, 3, "one request per check");
        set(4, "failed");
        match meili.progress(&second).await.unwrap() {
            Progress::Failed(reason) => {
                assert!(
                    reason.contains("task 4") && reason.contains("identifier"),
                    "{reason}"
                )
            }
            other => panic!("a failed task is a failure, not {other:?}"),
        }
        let unknown = Submitted { tasks: vec![99] };
        assert!(matches!(
            meili.progress(&unknown).await.unwrap(),
            Progress::Failed(_)
        ));
        let polls = state.lock().unwrap().polls;
        assert_eq!(
            meili.progress(&Submitted::default()).await.unwrap(),
            Progress::Applied
        );
        assert_eq!(state.lock().unwrap().polls, polls, "nothing to ask about");
    }
}
