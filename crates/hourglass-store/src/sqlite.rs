//! The SQLite backend: the embedded default.
//!
//! WAL mode with `synchronous=FULL`. Writes go through a pool of exactly one connection and
//! start with `BEGIN IMMEDIATE`, so writers queue in-process instead of spinning on SQLite's
//! lock; reads use a separate pool and see the last committed state. One SQLite file serves one
//! Hourglass process (the server takes a lock file beside it).

use std::{str::FromStr, time::Duration};

use async_trait::async_trait;
use hourglass_core::{
    Error, Result,
    audit::{AuditRecord, GENESIS_HASH},
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
    ledger::{Backend, SqlStore},
    rows::get,
    sql::{Expect, Step, Stmt, Wakes, audit_appends},
};

/// The SQLite implementation of [`hourglass_core::store::Store`].
pub type SqliteStore = SqlStore<SqliteDb>;

/// The SQLite connections behind a [`SqliteStore`].
#[derive(Debug, Clone)]
pub struct SqliteDb {
    writer: SqlitePool,
    reader: SqlitePool,
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
        Self::open_with(url, true).await
    }

    /// Opens an existing database without migrating or writing, for offline tools.
    pub async fn open_read_only(url: &str) -> Result<Self> {
        Self::open_with(url, false).await
    }

    async fn open_with(url: &str, write: bool) -> Result<Self> {
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
        Ok(SqlStore(SqliteDb { writer, reader }))
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

async fn begin(pool: &SqlitePool) -> Result<Transaction<'static, Sqlite>> {
    pool.begin_with("BEGIN IMMEDIATE").await.map_err(map)
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
        Ok(query(&s)
            .execute(&self.writer)
            .await
            .map_err(map)?
            .rows_affected())
    }

    async fn write(
        &self,
        steps: Vec<Step>,
        audit: &[AuditRecord],
        _wakes: Wakes,
    ) -> Result<Option<u64>> {
        let mut tx = begin(&self.writer).await?;
        for step in &steps {
            let changed = query(&step.stmt)
                .execute(&mut *tx)
                .await
                .map_err(map)?
                .rows_affected();
            if step.expect == Expect::One && changed != 1 {
                return Err(Error::StoreConflict);
            }
        }
        let mut last = None;
        if !audit.is_empty() {
            // The single writer connection serializes appends: the head read here stays the head.
            let head = query(&crate::sql::stmt!(
                "SELECT seq, hash FROM audit_events ORDER BY seq DESC LIMIT 1"
            ))
            .fetch_optional(&mut *tx)
            .await
            .map_err(map)?;
            let (seq, prev) = match head {
                Some(row) => (
                    u64::try_from(get::<i64>(&row, "seq")?).unwrap_or(0),
                    get::<String>(&row, "hash")?,
                ),
                None => (0, GENESIS_HASH.to_owned()),
            };
            let (inserts, seq, _) = audit_appends(seq, prev, audit)?;
            for s in &inserts {
                query(s).execute(&mut *tx).await.map_err(map)?;
            }
            last = Some(seq);
        }
        tx.commit().await.map_err(map)?;
        Ok(last)
    }

    async fn claim(
        &self,
        before: Option<Stmt>,
        pick: Stmt,
        lease: &(dyn Fn(String) -> Result<Stmt> + Send + Sync),
    ) -> Result<Vec<SqliteRow>> {
        let mut tx = begin(&self.writer).await?;
        if let Some(b) = &before {
            query(b).execute(&mut *tx).await.map_err(map)?;
        }
        let ids = query(&pick).fetch_all(&mut *tx).await.map_err(map)?;
        let mut out = Vec::with_capacity(ids.len());
        for row in &ids {
            let s = lease(get(row, "id")?)?;
            out.push(query(&s).fetch_one(&mut *tx).await.map_err(map)?);
        }
        tx.commit().await.map_err(map)?;
        Ok(out)
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
