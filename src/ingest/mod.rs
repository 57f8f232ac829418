//! Ingestion: what connectors return enters the database here. [`ingest`] stores one
//! batch in one transaction, the source's new cursor included, so a crash at any point
//! loses nothing and duplicates nothing: either the batch and its cursor are committed,
//! or neither is, and a replayed item is dropped by the UNIQUE (source, external id).
//!
//! Every item is normalised first ([`crate::domain::text::normalize_item`]: NFC, control
//! characters and NUL stripped from every text, author field, id and raw JSON string),
//! so SQLite and PostgreSQL store the same thing. Each item is stored under its own
//! savepoint: an item the database still refuses for its data (PostgreSQL SQLSTATE
//! classes 22 and 23, SQLite's TOOBIG/CONSTRAINT/MISMATCH) is rolled back alone, logged
//! and counted in [`IngestReport::skipped`], and the rest of the batch lands. Any other
//! error (connection, lock, lease) still fails the whole batch, so nothing is lost.

pub mod enrich;
pub mod reply;
pub mod scheduler;
pub mod sync;

use chrono::{DateTime, Utc};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseConnection, EntityTrait, QueryFilter, TransactionTrait,
};
use uuid::Uuid;

use crate::domain::{self, Direction};
use crate::error::{Error, Result};
use crate::failpoint::failpoint;
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
    /// External ids of items the database refused for their data: skipped, logged, and
    /// not retried (the cursor moves past them).
    pub skipped: Vec<String>,
}

/// What storing one item did.
enum Stored {
    New { id: Uuid, new_customer: bool },
    Duplicate,
}

/// The lease a scheduled run holds on its source: the batch commits only while the
/// source is still leased to `owner`, and renews the lease to `until`.
#[derive(Debug, Clone, Copy)]
pub struct Lease<'a> {
    pub owner: &'a str,
    pub until: DateTime<Utc>,
}

/// Stores `items` of `source` and moves its cursor to `next_cursor` (when given), all in
/// one transaction. For each item not yet stored: the author is resolved to an identity
/// and a customer, the item is threaded into a conversation (by thread key, else the
/// conversation of the item it answers, else its own id), stored, and events written.
/// The workspace's own replies (outbound items answering a stored item) join the
/// answered conversation and its customer instead of being filed under our own account.
///
/// With a `lease`, the batch commits only if the source is still leased to its owner
/// (`CONFLICT` otherwise, and nothing is stored): a run that lost its lease to another
/// process cannot move the cursor behind that process's back.
pub async fn ingest(
    db: &DatabaseConnection,
    source: &source::Model,
    items: &[InboundItem],
    next_cursor: Option<&str>,
    lease: Option<Lease<'_>>,
) -> Result<IngestReport> {
    let txn = db.begin().await?;
    // Write first: on SQLite this takes the write lock now, while the busy timeout still
    // applies (a transaction that reads first and writes later fails at once with
    // SQLITE_BUSY when another process wrote meanwhile); on PostgreSQL it locks the
    // source's row, so two batches of one source never interleave.
    source::Entity::update_many()
        .col_expr(
            source::Column::UpdatedAt,
            Expr::col(source::Column::UpdatedAt).into(),
        )
        .filter(source::Column::Id.eq(source.id))
        .exec(&txn)
        .await?;
    let items: Vec<InboundItem> = items.iter().map(domain::text::normalize_item).collect();
    let external_ids: Vec<String> = items.iter().map(|item| item.external_id.clone()).collect();
    let stored = domain::interaction::stored_external_ids(&txn, source.id, &external_ids).await?;
    let mut report = IngestReport::default();
    for item in &items {
        if stored.contains(&item.external_id) {
            report.duplicates += 1;
            continue;
        }
        let savepoint = txn.begin().await?;
        match store_item(&savepoint, source, item).await {
            Ok(outcome) => {
                savepoint.commit().await?;
                match outcome {
                    Stored::New { id, new_customer } => {
                        report.new.push(id);
                        report.new_customers += usize::from(new_customer);
                    }
                    Stored::Duplicate => report.duplicates += 1,
                }
            }
            Err(err) if refused_for_its_data(&err) => {
                savepoint.rollback().await?;
                tracing::warn!(
                    source = %crate::ids::encode(crate::ids::Kind::Source, source.id),
                    external_id = %item.external_id,
                    error = %err,
                    "an item the database refused was skipped; the rest of the batch is stored"
                );
                report.skipped.push(item.external_id.clone());
            }
            Err(err) => return Err(err),
        }
        failpoint("ingest.mid_batch");
    }
    let now = domain::now();
    let mut update = source::Entity::update_many()
        .col_expr(
            source::Column::ItemsIngested,
            Expr::col(source::Column::ItemsIngested).add(report.new.len() as i64),
        )
        .col_expr(source::Column::LastRunAt, Expr::value(now))
        .col_expr(source::Column::UpdatedAt, Expr::value(now))
        .filter(source::Column::Id.eq(source.id));
    if let Some(cursor) = next_cursor {
        update = update.col_expr(source::Column::Cursor, Expr::value(cursor));
    }
    if let Some(lease) = lease {
        update = update
            .col_expr(source::Column::LeaseUntil, Expr::value(lease.until))
            .filter(source::Column::LeaseOwner.eq(lease.owner));
    }
    if update.exec(&txn).await?.rows_affected == 0 {
        // Dropping the transaction rolls the batch back.
        return Err(Error::Conflict(
            "the source is no longer leased to this process (deleted, or taken over after the lease ran out); the batch was not stored".into(),
        ));
    }
    failpoint("ingest.before_commit");
    txn.commit().await?;
    Ok(report)
}

/// Stores one (normalised) item inside the batch's transaction: author, conversation,
/// interaction and events.
async fn store_item(
    txn: &impl ConnectionTrait,
    source: &source::Model,
    item: &InboundItem,
) -> Result<Stored> {
    let direction = if item.outbound {
        Direction::Outbound
    } else {
        Direction::Inbound
    };
    // A reply joins the conversation of the item it answers when that is stored;
    // otherwise the item is filed under its thread key (its own id when it has none).
    let answered = match (&item.thread_key, &item.in_reply_to) {
        (None, Some(parent)) => {
            domain::interaction::conversation_of(txn, source.id, parent).await?
        }
        _ => None,
    };
    let answered = match answered {
        Some(conversation) => {
            domain::conversation::on_interaction(
                txn,
                source.workspace_id,
                conversation,
                direction,
                item.occurred_at,
            )
            .await?
        }
        None => None,
    };
    let (customer_id, identity_id, conversation_id, new_customer) = match answered {
        Some(conversation) if item.outbound => {
            (conversation.customer_id, None, conversation.id, false)
        }
        answered => {
            let author = domain::identity::resolve_author(
                txn,
                source.workspace_id,
                &source.channel,
                &item.author,
                item.occurred_at,
            )
            .await?;
            let customer_id = author.identity.customer_id;
            let conversation_id = match answered {
                Some(conversation) => conversation.id,
                None => {
                    let thread_key = item
                        .thread_key
                        .as_ref()
                        .or(item.in_reply_to.as_ref())
                        .unwrap_or(&item.external_id);
                    domain::conversation::thread(
                        txn,
                        source.workspace_id,
                        source.id,
                        thread_key,
                        customer_id,
                        &source.channel,
                        item.subject.as_deref(),
                        direction,
                        item.occurred_at,
                    )
                    .await?
                }
            };
            (
                customer_id,
                Some(author.identity.id),
                conversation_id,
                author.new_customer,
            )
        }
    };
    let ingested = domain::interaction::Ingested {
        workspace_id: source.workspace_id,
        source_id: source.id,
        channel: &source.channel,
        customer_id,
        identity_id,
        conversation_id,
        item,
    };
    Ok(
        match domain::interaction::insert_ingested(txn, ingested).await? {
            Some(model) => Stored::New {
                id: model.id,
                new_customer,
            },
            None => Stored::Duplicate,
        },
    )
}

/// Whether the database refused an item for its data (so skipping it is right), rather
/// than for a reason that would fail any item (then the batch fails and is retried).
fn refused_for_its_data(err: &Error) -> bool {
    use sea_orm::{DbErr, RuntimeErr};
    let Error::Database(
        DbErr::Exec(RuntimeErr::SqlxError(err)) | DbErr::Query(RuntimeErr::SqlxError(err)),
    ) = err
    else {
        return false;
    };
    let Some(code) = err.as_database_error().and_then(|err| err.code()) else {
        return false;
    };
    if code.len() == 5 {
        // A PostgreSQL SQLSTATE: data exception, integrity constraint violation.
        // 54: a program limit (an index row too large) — the item's data again.
        code.starts_with("22") || code.starts_with("23") || code.starts_with("54")
    } else {
        // A SQLite result code (an extended code keeps the primary one in its low byte):
        // TOOBIG, CONSTRAINT, MISMATCH.
        code.parse::<u32>()
            .is_ok_and(|code| matches!(code & 0xff, 18..=20))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sea_orm::Database;

    #[tokio::test]
    async fn only_errors_about_an_items_data_skip_the_item() {
        let db = Database::connect("sqlite::memory:").await.unwrap();
        db.execute_unprepared("CREATE TABLE t (x TEXT NOT NULL UNIQUE)")
            .await
            .unwrap();
        db.execute_unprepared("INSERT INTO t VALUES ('a')")
            .await
            .unwrap();
        for refused in ["INSERT INTO t VALUES (NULL)", "INSERT INTO t VALUES ('a')"] {
            let err = Error::from(db.execute_unprepared(refused).await.unwrap_err());
            assert!(refused_for_its_data(&err), "{refused}: {err:?}");
        }
        for failing in ["INSERT INTO nowhere VALUES (1)", "NOT SQL"] {
            let err = Error::from(db.execute_unprepared(failing).await.unwrap_err());
            assert!(!refused_for_its_data(&err), "{failing}: {err:?}");
        }
        assert!(!refused_for_its_data(&Error::Internal("x".into())));
    }
}
