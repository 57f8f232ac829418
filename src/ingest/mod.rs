//! Ingestion: what connectors return enters the database here. [`ingest`] stores one
//! batch in one transaction, the source's new cursor included, so a crash at any point
//! loses nothing and duplicates nothing: either the batch and its cursor are committed,
//! or neither is, and a replayed item is dropped by the UNIQUE (source, external id).

use sea_orm::{ActiveModelTrait, ActiveValue::Set, DatabaseConnection, TransactionTrait};
use uuid::Uuid;

use crate::domain::{self, source::SourceStatus, Direction};
use crate::error::Result;
use connectors::InboundItem;
use entity::source;

/// What a batch did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct IngestReport {
    /// Interactions stored by this batch.
    pub new: Vec<Uuid>,
    /// Items already stored before (replays).
    pub duplicates: usize,
    /// Customers created for unknown authors.
    pub new_customers: usize,
}

/// Stores `items` of `source` and moves its cursor to `next_cursor` (when given), all in
/// one transaction. For each item not yet stored: the author is resolved to an identity
/// and a customer, the item is threaded into a conversation (by thread key, else the
/// conversation of the item it answers, else its own id), stored, and events written.
pub async fn ingest(
    db: &DatabaseConnection,
    source: &source::Model,
    items: &[InboundItem],
    next_cursor: Option<&str>,
) -> Result<IngestReport> {
    let txn = db.begin().await?;
    let external_ids: Vec<String> = items.iter().map(|item| item.external_id.clone()).collect();
    let stored = domain::interaction::stored_external_ids(&txn, source.id, &external_ids).await?;
    let mut report = IngestReport::default();
    for item in items {
        if stored.contains(&item.external_id) {
            report.duplicates += 1;
            continue;
        }
        let author = domain::identity::resolve_author(
            &txn,
            source.workspace_id,
            &source.channel,
            &item.author,
            item.occurred_at,
        )
        .await?;
        let direction = if item.outbound {
            Direction::Outbound
        } else {
            Direction::Inbound
        };
        // A reply joins the conversation of the item it answers when that is stored;
        // otherwise the item is filed under its thread key (its own id when it has none).
        let answered = match (&item.thread_key, &item.in_reply_to) {
            (None, Some(parent)) => {
                domain::interaction::conversation_of(&txn, source.id, parent).await?
            }
            _ => None,
        };
        let conversation_id = match answered {
            Some(conversation) => {
                domain::conversation::on_interaction(
                    &txn,
                    source.workspace_id,
                    conversation,
                    direction,
                    item.occurred_at,
                )
                .await?;
                conversation
            }
            None => {
                let thread_key = item
                    .thread_key
                    .as_ref()
                    .or(item.in_reply_to.as_ref())
                    .unwrap_or(&item.external_id);
                domain::conversation::thread(
                    &txn,
                    source.workspace_id,
                    source.id,
                    thread_key,
                    author.identity.customer_id,
                    &source.channel,
                    item.subject.as_deref(),
                    direction,
                    item.occurred_at,
                )
                .await?
            }
        };
        let ingested = domain::interaction::Ingested {
            workspace_id: source.workspace_id,
            source_id: source.id,
            channel: &source.channel,
            customer_id: author.identity.customer_id,
            identity_id: author.identity.id,
            conversation_id,
            item,
        };
        match domain::interaction::insert_ingested(&txn, ingested).await? {
            Some(model) => {
                report.new.push(model.id);
                report.new_customers += usize::from(author.new_customer);
            }
            None => report.duplicates += 1,
        }
    }
    let now = domain::now();
    let mut row: source::ActiveModel = source.clone().into();
    if let Some(cursor) = next_cursor {
        row.cursor = Set(Some(cursor.to_owned()));
    }
    row.items_ingested = Set(source.items_ingested + report.new.len() as i64);
    row.last_run_at = Set(Some(now));
    if source.status != SourceStatus::Paused.as_str() {
        row.status = Set(SourceStatus::Ok.as_str().to_owned());
        row.last_error = Set(None);
        row.failures = Set(0);
    }
    row.updated_at = Set(now);
    row.update(&txn).await?;
    txn.commit().await?;
    Ok(report)
}
