//! The SQLite backend: the embedded default.
//!
//! WAL mode with `synchronous=FULL`. Writes go through the group writer (`group.rs`) over a pool
//! of exactly one connection, each batch in one `BEGIN IMMEDIATE` transaction, so writers queue
//! in-process instead of spinning on SQLite's lock and share fsyncs; reads use a separate pool
//! and see the last committed state. One SQLite file serves one
//! Hourglass process (the server takes a lock file beside it).

use std::{str::FromStr, time::Duration};

use async_trait::async_trait;
use hourglass_core::{
    Error, Result,
    audit::{AuditRecord, GENESIS_HASH},
    store::WriteStats,
};
use sqlx::{
    Sqlite, SqlitePool, Transaction,
    migrate::Migrator,
    query::Query,
    sqlite::{
        SqliteArguments, SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteRow,
        SqliteSynchronous,
    },
};

use crate::{
    error::map,
    group::{Begin, Group, Lease, Tx},
    ledger::{Backend, SqlStore},
    rows::get,
    sql::{Step, Stmt, Wakes, stmt},
};

/// The SQLite implementation of [`hourglass_core::store::Store`].
pub type SqliteStore = SqlStore<SqliteDb>;

/// The SQLite connections behind a [`SqliteStore`].
#[derive(Debug, Clone)]
pub struct SqliteDb {
    writer: SqlitePool,
    reader: SqlitePool,
    pub(crate) group: Group<Writer>,
}

fn migrator() -> Migrator {
    let step = crate::migration;
    Migrator::with_migrations(vec![
        step(
            1,
            "init",
            include_str!("../migrations/sqlite/0001_init.sql"),
        ),
        step(
            2,
            "public_key",
            include_str!("../migrations/sqlite/0002_public_key.sql"),
        ),
        step(
            3,
            "break_glass",
            include_str!("../migrations/sqlite/0003_break_glass.sql"),
        ),
        step(
            4,
            "identities",
            include_str!("../migrations/sqlite/0004_identities.sql"),
        ),
        step(
            5,
            "tickets_notifications",
            include_str!("../migrations/sqlite/0005_tickets_notifications.sql"),
        ),
        step(
            6,
            "worker_turns",
            include_str!("../migrations/sqlite/0006_worker_turns.sql"),
        ),
        step(
            7,
            "status_set_by",
            include_str!("../migrations/sqlite/0007_status_set_by.sql"),
        ),
        step(
            8,
            "sessions",
            include_str!("../migrations/sqlite/0008_sessions.sql"),
        ),
        step(
            9,
            "sign_in_subject",
            include_str!("../migrations/sqlite/0009_sign_in_subject.sql"),
        ),
        step(
            10,
            "sealed_credentials",
            include_str!("../migrations/sqlite/0010_sealed_credentials.sql"),
        ),
        step(
            11,
            "notification_receipts",
            include_str!("../migrations/sqlite/0011_notification_receipts.sql"),
        ),
        step(
            12,
            "directory",
            include_str!("../migrations/sqlite/0012_directory.sql"),
        ),
        step(
            13,
            "request_task",
            include_str!("../migrations/sqlite/0013_request_task.sql"),
        ),
        step(
            14,
            "campaigns",
            include_str!("../migrations/sqlite/0014_campaigns.sql"),
        ),
        step(
            15,
            "audit_archives",
            include_str!("../migrations/sqlite/0015_audit_archives.sql"),
        ),
    ])
}

/// Creates the database file readable by its owner only (0600) before SQLite does (SQLite
/// would create it 0644 under the usual umask; its `-wal` and `-shm` files take the database
/// file's mode). The ledger holds who may do what, and hashes of every key.
fn create_private(path: &std::path::Path) -> Result<()> {
    use std::os::unix::fs::OpenOptionsExt as _;
    if path.as_os_str().is_empty() || path.to_string_lossy().starts_with(':') || path.exists() {
        return Ok(());
    }
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map(drop)
        .or_else(|e| match e.kind() {
            std::io::ErrorKind::AlreadyExists => Ok(()),
            _ => Err(Error::Unavailable(format!(
                "cannot create {}: {e}",
                path.display()
            ))),
        })
}

impl SqliteStore {
    /// Opens (creating if needed) and migrates the database at `url` (`sqlite://PATH`).
    pub async fn open(url: &str) -> Result<Self> {
        Self::open_with(url, true, crate::group::MAX_BATCH).await
    }

    /// [`SqliteStore::open`], with at most `max_batch` writes in a transaction (1: each its
    /// own, as before group commit; for comparisons).
    pub async fn open_batched(url: &str, max_batch: u32) -> Result<Self> {
        Self::open_with(url, true, max_batch).await
    }

    /// Opens an existing database without migrating or writing, for offline tools.
    pub async fn open_read_only(url: &str) -> Result<Self> {
        Self::open_with(url, false, 1).await
    }

    async fn open_with(url: &str, write: bool, max_batch: u32) -> Result<Self> {
        let opts = SqliteConnectOptions::from_str(url)
            .map_err(|e| Error::internal(format!("store URL {url:?}: {e}")))?
            .create_if_missing(write)
            .read_only(!write)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(10));
        if write {
            create_private(opts.get_filename())?;
        }
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(u32::from(write))
            .acquire_timeout(Duration::from_secs(30))
            .connect_with(opts.clone())
            .await
            .map_err(|e| Error::Unavailable(format!("cannot open {url}: {e}")))?;
        if write {
            migrator()
                .run(&writer)
                .await
                .map_err(|e| Error::internal(format!("migrating {url}: {e}")))?;
        }
        let reader = SqlitePoolOptions::new()
            .max_connections(4)
            .acquire_timeout(Duration::from_secs(30))
            .connect_with(opts.read_only(true))
            .await
            .map_err(|e| Error::Unavailable(format!("cannot open {url}: {e}")))?;
        let group = Group::new(Writer(writer.clone()), max_batch);
        Ok(SqlStore(SqliteDb {
            writer,
            reader,
            group,
        }))
    }

    /// Closes both pools, finishing the WAL checkpoint.
    pub async fn close(&self) {
        self.0.reader.close().await;
        self.0.writer.close().await;
    }

    /// The write pool, for tests that must reach past the store contract.
    #[cfg(test)]
    pub(crate) fn writer(&self) -> &SqlitePool {
        &self.0.writer
    }
}

fn query(s: &Stmt) -> Query<'static, Sqlite, SqliteArguments> {
    s.query()
}

/// Opens SQLite write transactions for the group writer.
#[derive(Debug)]
pub(crate) struct Writer(pub(crate) SqlitePool);

/// One SQLite write transaction (`BEGIN IMMEDIATE`: it holds the file's write lock from the
/// start, so it never fails half-way for want of it).
pub(crate) struct WriteTx(Transaction<'static, Sqlite>);

#[async_trait]
impl Begin for Writer {
    type Tx = WriteTx;
    async fn begin(&self) -> Result<WriteTx> {
        self.0
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map(WriteTx)
            .map_err(map)
    }
}

#[async_trait]
impl Tx for WriteTx {
    type Row = SqliteRow;

    async fn exec(&mut self, s: &Stmt) -> Result<u64> {
        Ok(query(s)
            .execute(&mut *self.0)
            .await
            .map_err(map)?
            .rows_affected())
    }

    async fn rows(&mut self, s: &Stmt) -> Result<Vec<SqliteRow>> {
        query(s).fetch_all(&mut *self.0).await.map_err(map)
    }

    fn id_of(row: &SqliteRow) -> Result<String> {
        get(row, "id")
    }

    async fn head(&mut self) -> Result<(u64, String)> {
        // One write transaction at a time (the writer pool has one connection): the head read
        // here stays the head until this transaction commits.
        let mut head = self
            .rows(&stmt!(
                "SELECT seq, hash FROM audit_events ORDER BY seq DESC LIMIT 1"
            ))
            .await?;
        if head.is_empty() {
            // No live event: the chain goes on from the latest checkpoint, if any (an archive
            // keeps the head live, so only a database put together otherwise gets here).
            head = self
                .rows(&stmt!(
                    "SELECT through_seq AS seq, through_hash AS hash FROM audit_archives
                     ORDER BY through_seq DESC LIMIT 1"
                ))
                .await?;
        }
        match head.first() {
            Some(row) => Ok((
                u64::try_from(get::<i64>(row, "seq")?).unwrap_or(0),
                get::<String>(row, "hash")?,
            )),
            None => Ok((0, GENESIS_HASH.to_owned())),
        }
    }

    async fn set_head(&mut self, _seq: u64, _hash: &str) -> Result<()> {
        Ok(())
    }

    async fn wake(&mut self, _wakes: Wakes) -> Result<()> {
        // One process per SQLite file: the engine wakes its own workers.
        Ok(())
    }

    async fn commit(self) -> Result<()> {
        self.0.commit().await.map_err(map)
    }

    async fn rollback(self) {
        let _ = self.0.rollback().await;
    }
}

#[async_trait]
impl Backend for SqliteDb {
    type Row = SqliteRow;
    const LOCK_PICKED: &'static str = "";
    const SHARED: bool = false;

    async fn all(&self, s: Stmt) -> Result<Vec<SqliteRow>> {
        query(&s).fetch_all(&self.reader).await.map_err(map)
    }

    async fn run(&self, s: Stmt) -> Result<u64> {
        self.group.run(s).await
    }

    async fn write(
        &self,
        steps: Vec<Step>,
        audit: Vec<AuditRecord>,
        wakes: Wakes,
    ) -> Result<Option<u64>> {
        self.group.write(steps, audit, wakes).await
    }

    async fn claim(
        &self,
        before: Option<Stmt>,
        pick: Stmt,
        lease: Lease,
    ) -> Result<Vec<SqliteRow>> {
        self.group.claim(before, pick, lease).await
    }

    async fn steps(&self, steps: Vec<Step>) -> Result<Vec<u64>> {
        self.group.steps(steps).await
    }

    async fn take(&self, stmt: Stmt) -> Result<Vec<SqliteRow>> {
        self.group.take(stmt).await
    }

    fn write_stats(&self) -> WriteStats {
        self.group.stats()
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    #[tokio::test]
    async fn a_new_database_and_its_journal_are_readable_by_their_owner_only() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hourglass.db");
        let store = super::SqliteStore::open(&format!("sqlite://{}", path.display()))
            .await
            .unwrap();
        for f in ["hourglass.db", "hourglass.db-wal"] {
            let mode = std::fs::metadata(dir.path().join(f))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "{f}: {mode:o}");
        }
        store.close().await;
    }
}
