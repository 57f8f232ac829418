//! Opening the database: SQLite in the data directory by default (WAL, foreign keys,
//! created when missing), PostgreSQL when the URL says so. Every statement is counted in
//! [`Metrics`] so `/metrics` shows database load and tests can prove the absence of N+1.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use migration::{Migrator, MigratorTrait};
use sea_orm::sqlx::sqlite::{SqliteJournalMode, SqliteSynchronous};
use sea_orm::{
    ConnectOptions, ConnectionTrait, Database, DatabaseBackend, DatabaseConnection, IsolationLevel,
    Statement, TransactionTrait,
};

use crate::config::Config;
use crate::metrics::Metrics;

/// Opens the configured database. The SQLite file and its directory are created.
pub async fn connect(config: &Config, metrics: Arc<Metrics>) -> anyhow::Result<DatabaseConnection> {
    let url = config.effective_database_url();
    let mut options = ConnectOptions::new(url.clone());
    // No ping before handing out a pooled connection: it cost a round trip per statement
    // (22 % of the process's CPU in the 360 view). Safe to skip: a connection that broke
    // while idle fails the statement that uses it with an error (as if the database went
    // away a moment later), and sqlx tests every connection as it goes back to the pool
    // and closes a broken one instead of keeping it; `idle_timeout` and `max_lifetime`
    // (sqlx's defaults) retire long-idle and old ones.
    options
        .sqlx_logging(false)
        .acquire_timeout(Duration::from_secs(10))
        .test_before_acquire(false);
    if url.starts_with("sqlite:") {
        std::fs::create_dir_all(&config.data_dir).map_err(|err| {
            anyhow::anyhow!(
                "cannot create the data directory {}: {err}",
                config.data_dir.display()
            )
        })?;
        options
            .max_connections(8)
            .min_connections(1)
            .map_sqlx_sqlite_opts(|opts| {
                opts.journal_mode(SqliteJournalMode::Wal)
                    .synchronous(SqliteSynchronous::Normal)
                    .foreign_keys(true)
                    .busy_timeout(Duration::from_secs(10))
                    .create_if_missing(true)
                    // 32 MiB of page cache a connection (at most 256 MiB for the pool,
                    // filled only as pages are read) instead of SQLite's 2 MiB: with 2 MiB
                    // a batch of 1,000 items spilled dirty pages to the WAL before its
                    // commit and read index pages back from the OS (ingestion +11 % on the
                    // benchmark; 64 MiB measured +15 %, within the noise of 32).
                    .pragma("cache_size", "-32768")
                    // The write-ahead log is copied back into the database file aside
                    // (`checkpoint_aside`) after each ingested batch; SQLite's own
                    // checkpoint, run by whichever commit lets the log pass this many
                    // pages (16 MiB), is the backstop for other writers and for a
                    // checkpoint that fell behind. At SQLite's default (1,000 pages) a
                    // batch of 1,000 items checkpointed inside its own commit: 11–13 ms of
                    // its ~65, against 4–5 ms now.
                    .pragma("wal_autocheckpoint", "4000")
                    // Pages of the database file read through a memory map of up to
                    // `MMAP_BYTES` instead of copied into the connection's cache on each
                    // read. The mapped pages are the OS's page cache, shared by every
                    // connection and process: counted in the process's RSS and its
                    // cgroup's memory, but reclaimable by the kernel, not heap. Measured
                    // (2 cores, alternated runs): ingestion +7 %, the 360 view +10 %, a
                    // page of 50 customers +5 %. The write-ahead log is read as before,
                    // and writes go through it. The price: a read error of the disk (or
                    // the file truncated from outside) kills the process (SIGBUS) where it
                    // failed the statement; and each connection maps its own range (8 ×
                    // 256 MiB of address space): where a mapping fails (a 32-bit build
                    // short of it), SQLite reads as before.
                    .pragma("mmap_size", MMAP_BYTES.to_string())
            });
    } else {
        options.max_connections(16).min_connections(1);
        if let Some(schema) = &config.database_schema {
            options.set_schema_search_path(schema.clone());
        }
    }
    let mut db = Database::connect(options)
        .await
        .map_err(|err| anyhow::anyhow!("cannot open the database {}: {err}", redact_url(&url)))?;
    db.set_metric_callback(move |info| metrics.record_statement(info.elapsed, info.failed));
    Ok(db)
}

/// How much of a SQLite database file each connection reads through a memory map (256
/// MiB; the rest of a larger file is read as before).
const MMAP_BYTES: u64 = 256 << 20;

/// Whether a [`checkpoint_aside`] is running (one at a time is enough: each copies every
/// page committed before it starts).
static CHECKPOINTING: AtomicBool = AtomicBool::new(false);

/// On SQLite, copies the write-ahead log's committed pages back into the database file on
/// another pooled connection (a passive checkpoint: it waits for no reader nor writer),
/// so the next batch's commit does not do it on the writer's path. Returns at once;
/// nothing on PostgreSQL, nor while an earlier one runs. A failure is only logged: the
/// pages stay in the log, readable, for the next checkpoint.
pub fn checkpoint_aside(db: &DatabaseConnection) {
    if is_postgres(db) || CHECKPOINTING.swap(true, Ordering::AcqRel) {
        return;
    }
    // On the pool itself, past the statement counter: this is the database's upkeep,
    // not a statement of any request (tests count those).
    let pool = db.get_sqlite_connection_pool().clone();
    tokio::spawn(async move {
        let result = sea_orm::sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
            .execute(&pool)
            .await;
        CHECKPOINTING.store(false, Ordering::Release);
        if let Err(err) = result {
            tracing::warn!(error = %err, "a checkpoint of the write-ahead log failed");
        }
    });
}

/// Applies every pending migration, one process at a time: processes started together
/// on a fresh database (several `serve` of a scale-out, or `serve` beside a CLI command)
/// would otherwise create the same tables at the same moment, and all but one fail. The
/// one that waited finds the migrations applied and has nothing left to do.
pub async fn migrate(db: &DatabaseConnection) -> anyhow::Result<()> {
    let failed =
        |err: &dyn std::fmt::Display| anyhow::anyhow!("migrating the database failed: {err}");
    if is_postgres(db) {
        // One transaction that first takes a transaction-level advisory lock: the lock
        // ends with it (committed, rolled back, or its session gone), and a pooler in
        // transaction mode keeps it on one server connection. The migrations run inside
        // (sea-orm-migration's own transaction becomes a savepoint). Keyed by the schema
        // too: migrators of different schemas of one database (a schema per deployment,
        // or per test) do not wait for each other.
        // READ COMMITTED whatever the database's default: a process that waited must see
        // the migrations the other committed meanwhile, which a snapshot taken before the
        // wait (REPEATABLE READ, SERIALIZABLE) would hide.
        let txn = db
            .begin_with_config(Some(IsolationLevel::ReadCommitted), None)
            .await
            .map_err(|err| failed(&err))?;
        let key = "hashtext('rapport migrations'), \
                   hashtext(coalesce(current_schema(), current_setting('search_path')))";
        let free = txn
            .query_one(Statement::from_string(
                DatabaseBackend::Postgres,
                format!("SELECT pg_try_advisory_xact_lock({key})"),
            ))
            .await
            .and_then(|row| match row {
                Some(row) => row.try_get_by_index::<bool>(0),
                None => Ok(false),
            })
            .map_err(|err| failed(&err))?;
        if !free {
            tracing::info!("waiting for another process's migrations of this database");
            txn.execute_unprepared(&format!("SELECT pg_advisory_xact_lock({key})"))
                .await
                .map_err(|err| failed(&err))?;
        }
        Migrator::up(&txn, None).await.map_err(|err| failed(&err))?;
        return txn.commit().await.map_err(|err| failed(&err));
    }
    let _turn = sqlite_turn(db).await.map_err(|err| failed(&err))?;
    Migrator::up(db, None).await.map_err(|err| failed(&err))
}

/// On SQLite, an exclusive lock on a file beside the database's (`rapport.db.migrating`),
/// held until the returned file is dropped; `None` for a database in memory, which no
/// other process can open. SQLite's own locks cannot serve: the migrator runs its
/// statements on several pooled connections, outside one transaction.
async fn sqlite_turn(db: &DatabaseConnection) -> anyhow::Result<Option<std::fs::File>> {
    let main = db
        .query_one(Statement::from_string(
            DatabaseBackend::Sqlite,
            "SELECT file FROM pragma_database_list WHERE name = 'main'",
        ))
        .await?;
    let file: String = match main {
        Some(row) => row.try_get_by_index(0)?,
        None => String::new(),
    };
    if file.is_empty() {
        return Ok(None);
    }
    let path = std::path::PathBuf::from(format!("{file}.migrating"));
    let turn = tokio::task::spawn_blocking(move || -> std::io::Result<Option<std::fs::File>> {
        use std::io::ErrorKind;
        let opened = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path);
        let denied = |err: &std::io::Error| {
            matches!(
                err.kind(),
                ErrorKind::PermissionDenied | ErrorKind::ReadOnlyFilesystem
            )
        };
        // A lock file another user made (`sudo rapport migrate`, say) locks as well when
        // opened for reading.
        let opened = match opened {
            Err(err) if denied(&err) => std::fs::File::open(&path).or(Err(err)),
            opened => opened,
        };
        let file = match opened {
            Ok(file) => file,
            // A directory this process may not write to, and no lock file in it: it cannot
            // migrate either, but a database with nothing pending still opens.
            Err(err) if denied(&err) => {
                tracing::warn!(error = %err, path = %path.display(), "cannot take the migration lock; migrating without it");
                return Ok(None);
            }
            Err(err) => return Err(err),
        };
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                tracing::info!("waiting for another process's migrations of this database");
                file.lock()?;
            }
            Err(std::fs::TryLockError::Error(err)) => return Err(err),
        }
        Ok(Some(file))
    })
    .await?
    .map_err(|err| anyhow::anyhow!("cannot lock {file}.migrating: {err}"))?;
    Ok(turn)
}

/// `Ok` when the database answers and no migration is pending (for `/readyz`).
pub async fn ready(db: &DatabaseConnection) -> Result<(), String> {
    db.execute(Statement::from_string(
        db.get_database_backend(),
        "SELECT 1",
    ))
    .await
    .map_err(|_| "the database does not answer".to_owned())?;
    let pending = Migrator::get_pending_migrations(db)
        .await
        .map_err(|_| "cannot read the migrations".to_owned())?;
    if pending.is_empty() {
        Ok(())
    } else {
        Err(format!("{} migrations are pending", pending.len()))
    }
}

/// Whether `db` is PostgreSQL (some SQL differs).
pub fn is_postgres(db: &impl ConnectionTrait) -> bool {
    db.get_database_backend() == DatabaseBackend::Postgres
}

/// The URL without its password, for messages.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let credentials = &url[scheme + 3..at];
            match credentials.split_once(':') {
                Some((user, _)) => format!("{}{}:***{}", &url[..scheme + 3], user, &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use sea_orm::{ConnectionTrait, DatabaseBackend, Statement};

    /// A pooled SQLite connection reads through the memory map: SQLite answers 0 when
    /// the pragma is not set or its build has memory maps off, and clamps a size above
    /// its build's limit.
    #[tokio::test]
    async fn sqlite_connections_read_the_file_through_a_memory_map() {
        let dir = tempfile::tempdir().unwrap();
        let config = crate::config::Config {
            data_dir: dir.path().to_path_buf(),
            ..crate::config::Config::default()
        };
        let metrics = std::sync::Arc::new(crate::metrics::Metrics::default());
        let db = super::connect(&config, metrics).await.unwrap();
        let row = db
            .query_one(Statement::from_string(
                DatabaseBackend::Sqlite,
                "PRAGMA mmap_size",
            ))
            .await
            .unwrap()
            .unwrap();
        let size: i64 = row.try_get_by_index(0).unwrap();
        assert_eq!(u64::try_from(size).ok(), Some(super::MMAP_BYTES));
    }

    #[test]
    fn passwords_never_show_in_messages() {
        assert_eq!(
            super::redact_url("postgres://app:s3cret@db:5432/x"),
            "postgres://app:***@db:5432/x"
        );
        assert_eq!(
            super::redact_url("sqlite://./data/rapport.db"),
            "sqlite://./data/rapport.db"
        );
    }
}
