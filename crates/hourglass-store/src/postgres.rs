//! The PostgreSQL backend: one database shared by several Hourglass replicas.
//!
//! Transactions run at READ COMMITTED. Versioned updates (`WHERE id = $ AND version = $`) wait
//! for a concurrent writer of the same row and then match nothing, which fails the commit with a
//! conflict, as on SQLite. Work is claimed with `FOR UPDATE SKIP LOCKED`, so replicas claiming at
//! once take different rows; a claimed row carries a lease and a fencing token, and a replica
//! that dies simply lets its lease run out. Every audit append locks the one-row `audit_head` as
//! the last step of its transaction, so the chain stays a single gap-free sequence whichever
//! replica writes. A commit that gives workers new work sends `NOTIFY hourglass_wake` (delivered
//! on commit) so that every replica's workers wake, not only the writer's.

use std::{str::FromStr, sync::Arc, time::Duration};

use async_trait::async_trait;
use hourglass_core::{
    Error, Result,
    audit::{AuditRecord, GENESIS_HASH},
    engine::Wake,
    store::WriteStats,
};
use sqlx::{
    PgPool, Postgres, Transaction,
    migrate::Migrator,
    postgres::{PgArguments, PgConnectOptions, PgListener, PgPoolOptions, PgRow},
    query::Query,
};
use tracing::{info, warn};

use crate::{
    error::map,
    group::{Begin, Group, Lease, Tx},
    ledger::{Backend, SqlStore},
    rows::get,
    sql::{Step, Stmt, Wakes, stmt},
};

/// The channel wake-ups are sent on.
const WAKE_CHANNEL: &str = "hourglass_wake";

/// The PostgreSQL implementation of [`hourglass_core::store::Store`].
pub type PgStore = SqlStore<PgDb>;

/// The connection pool behind a [`PgStore`].
#[derive(Debug, Clone)]
pub struct PgDb {
    pool: PgPool,
    group: Group<Writer>,
}

/// Connection pool settings (`[store]` in the configuration).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolOptions {
    /// Connections this process keeps at most.
    pub max_connections: u32,
    /// How long a caller waits for a free connection (or a new one) before the store is
    /// reported unavailable.
    pub acquire_timeout: Duration,
    /// At most this many waiting writes share one transaction (1: each its own).
    pub max_batch: u32,
    /// Migrate the schema on open (under an advisory lock, so that replicas starting together
    /// migrate once). Off: the schema must already be current (`hourglass migrate`).
    pub migrate: bool,
}

impl Default for PoolOptions {
    fn default() -> Self {
        PoolOptions {
            max_connections: 10,
            acquire_timeout: Duration::from_secs(5),
            max_batch: crate::group::MAX_BATCH,
            migrate: true,
        }
    }
}

pub(crate) fn migrator() -> Migrator {
    let step = crate::migration;
    // sqlx takes a PostgreSQL advisory lock around the run: the first replica migrates, the
    // others wait and then find nothing to do.
    Migrator::with_migrations(vec![
        step(
            1,
            "init",
            include_str!("../migrations/postgres/0001_init.sql"),
        ),
        step(
            2,
            "worker_turns",
            include_str!("../migrations/postgres/0002_worker_turns.sql"),
        ),
        step(
            3,
            "status_set_by",
            include_str!("../migrations/postgres/0003_status_set_by.sql"),
        ),
        step(
            4,
            "sessions",
            include_str!("../migrations/postgres/0004_sessions.sql"),
        ),
        step(
            5,
            "sign_in_subject",
            include_str!("../migrations/postgres/0005_sign_in_subject.sql"),
        ),
        step(
            6,
            "sealed_credentials",
            include_str!("../migrations/postgres/0006_sealed_credentials.sql"),
        ),
        step(
            7,
            "notification_receipts",
            include_str!("../migrations/postgres/0007_notification_receipts.sql"),
        ),
        step(
            8,
            "directory",
            include_str!("../migrations/postgres/0008_directory.sql"),
        ),
        step(
            9,
            "request_task",
            include_str!("../migrations/postgres/0009_request_task.sql"),
        ),
        step(
            10,
            "campaigns",
            include_str!("../migrations/postgres/0010_campaigns.sql"),
        ),
        step(
            11,
            "audit_archives",
            include_str!("../migrations/postgres/0011_audit_archives.sql"),
        ),
    ])
}

impl PgStore {
    /// Connects to `url` (`postgres://…`) with `opts`, migrating first if `opts.migrate`.
    pub async fn open(url: &str, opts: &PoolOptions) -> Result<Self> {
        let connect = PgConnectOptions::from_str(url)
            .map_err(|e| Error::internal(format!("store URL {:?}: {e}", crate::redact(url))))?
            .application_name("hourglass");
        let pool = PgPoolOptions::new()
            .max_connections(opts.max_connections)
            .acquire_timeout(opts.acquire_timeout)
            .connect_with(connect)
            .await
            .map_err(|e| Error::Unavailable(format!("cannot open {}: {e}", crate::redact(url))))?;
        let group = Group::new(Writer(pool.clone()), opts.max_batch);
        let store = SqlStore(PgDb { pool, group });
        if opts.migrate {
            store.migrate().await?;
        } else {
            store.check_schema().await?;
        }
        Ok(store)
    }

    /// Applies the migrations this build has and the database lacks.
    pub async fn migrate(&self) -> Result<()> {
        migrator()
            .run(&self.0.pool)
            .await
            .map_err(|e| Error::internal(format!("migrating: {e}")))
    }

    /// Fails unless every migration of this build is applied.
    async fn check_schema(&self) -> Result<()> {
        let applied: Vec<i64> = sqlx::query_scalar(
            "SELECT version FROM _sqlx_migrations WHERE success ORDER BY version",
        )
        .fetch_all(&self.0.pool)
        .await
        .unwrap_or_default();
        let wanted: Vec<i64> = migrator().iter().map(|m| m.version).collect();
        if wanted.iter().all(|v| applied.contains(v)) {
            Ok(())
        } else {
            Err(Error::internal(
                "the database schema is not current: run `hourglass migrate` (or set [store] migrate = true)",
            ))
        }
    }

    /// Closes the pool (and with it the wake-up listener).
    pub async fn close(&self) {
        self.0.pool.close().await;
    }

    /// The pool, for tests that must reach past the store contract.
    #[cfg(test)]
    pub(crate) fn pool(&self) -> &PgPool {
        &self.0.pool
    }
}

fn query(s: &Stmt) -> Query<'static, Postgres, PgArguments> {
    s.query()
}

/// Opens PostgreSQL write transactions for the group writer.
#[derive(Debug)]
pub(crate) struct Writer(PgPool);

/// One PostgreSQL write transaction.
pub(crate) struct WriteTx(Transaction<'static, Postgres>);

#[async_trait]
impl Begin for Writer {
    type Tx = WriteTx;
    async fn begin(&self) -> Result<WriteTx> {
        self.0.begin().await.map(WriteTx).map_err(map)
    }
}

#[async_trait]
impl Tx for WriteTx {
    type Row = PgRow;

    async fn exec(&mut self, s: &Stmt) -> Result<u64> {
        Ok(query(s)
            .execute(&mut *self.0)
            .await
            .map_err(map)?
            .rows_affected())
    }

    async fn rows(&mut self, s: &Stmt) -> Result<Vec<PgRow>> {
        query(s).fetch_all(&mut *self.0).await.map_err(map)
    }

    fn id_of(row: &PgRow) -> Result<String> {
        get(row, "id")
    }

    async fn head(&mut self) -> Result<(u64, String)> {
        // Locked last in the transaction, so that the chain's lock is held for as short a time
        // as possible; every replica's appends queue on this row.
        let head = self
            .rows(&stmt!(
                "SELECT seq, hash FROM audit_head WHERE id = 1 FOR UPDATE"
            ))
            .await?;
        let row = head
            .first()
            .ok_or_else(|| Error::internal("store: audit_head has no row"))?;
        let seq = u64::try_from(get::<i64>(row, "seq")?).unwrap_or(0);
        let prev = get::<Option<String>>(row, "hash")?.unwrap_or_else(|| GENESIS_HASH.to_owned());
        Ok((seq, prev))
    }

    async fn set_head(&mut self, seq: u64, hash: &str) -> Result<()> {
        self.exec(&stmt!(
            "UPDATE audit_head SET seq = $1, hash = $2 WHERE id = 1",
            i64::try_from(seq).unwrap_or(i64::MAX),
            hash,
        ))
        .await
        .map(drop)
    }

    async fn wake(&mut self, wakes: Wakes) -> Result<()> {
        // Delivered on commit, to every replica's listener.
        self.exec(&stmt!(
            "SELECT pg_notify($1, $2)",
            WAKE_CHANNEL,
            wakes.payload()
        ))
        .await
        .map(drop)
    }

    async fn commit(self) -> Result<()> {
        self.0.commit().await.map_err(map)
    }

    async fn rollback(self) {
        let _ = self.0.rollback().await;
    }
}

#[async_trait]
impl Backend for PgDb {
    type Row = PgRow;
    const LOCK_PICKED: &'static str = "FOR UPDATE SKIP LOCKED";
    const SHARED: bool = true;

    fn relay_wakes(&self, wake: Arc<dyn Wake>) {
        self.relay(wake);
    }

    async fn imported(&self) -> Result<()> {
        self.run(stmt!(
            "UPDATE audit_head SET
               seq = COALESCE((SELECT MAX(seq) FROM audit_events),
                 (SELECT MAX(through_seq) FROM audit_archives), 0),
               hash = COALESCE((SELECT hash FROM audit_events ORDER BY seq DESC LIMIT 1),
                 (SELECT through_hash FROM audit_archives ORDER BY through_seq DESC LIMIT 1))
             WHERE id = 1"
        ))
        .await
        .map(drop)
    }

    async fn all(&self, s: Stmt) -> Result<Vec<PgRow>> {
        query(&s).fetch_all(&self.pool).await.map_err(map)
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

    async fn claim(&self, before: Option<Stmt>, pick: Stmt, lease: Lease) -> Result<Vec<PgRow>> {
        self.group.claim(before, pick, lease).await
    }

    async fn steps(&self, steps: Vec<Step>) -> Result<Vec<u64>> {
        self.group.steps(steps).await
    }

    async fn take(&self, stmt: Stmt) -> Result<Vec<PgRow>> {
        self.group.take(stmt).await
    }

    fn write_stats(&self) -> WriteStats {
        self.group.stats()
    }
}

impl PgDb {
    /// Listens for other replicas' wake-ups and passes them on, reconnecting after a failure
    /// (and then waking everything, since messages sent meanwhile are lost). Ends with the pool.
    pub(crate) fn relay(&self, wake: Arc<dyn Wake>) {
        let pool = self.pool.clone();
        tokio::spawn(async move {
            let mut connected_before = false;
            while !pool.is_closed() {
                match listen(&pool, &*wake, &mut connected_before).await {
                    Ok(()) => return,
                    Err(e) => {
                        warn!(error = %e, "wake-up listener lost its connection; reconnecting (workers poll meanwhile)");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                }
            }
        });
    }
}

async fn listen(pool: &PgPool, wake: &dyn Wake, connected_before: &mut bool) -> Result<()> {
    let mut listener = PgListener::connect_with(pool).await.map_err(map)?;
    listener.listen(WAKE_CHANNEL).await.map_err(map)?;
    if *connected_before {
        info!("wake-up listener reconnected");
        wake_all(wake);
    }
    *connected_before = true;
    loop {
        // `try_recv` reports a lost connection (None) instead of silently reconnecting, so that
        // the wake-ups missed meanwhile are made up for.
        match listener.try_recv().await.map_err(map)? {
            Some(n) => {
                let w = Wakes::parse(n.payload());
                if w.jobs {
                    wake.jobs_changed();
                }
                if w.deadlines {
                    wake.deadlines_changed();
                }
                if w.notifications {
                    wake.notifications_changed();
                }
                if w.policy {
                    wake.policy_changed();
                }
            }
            None if pool.is_closed() => return Ok(()),
            None => {
                info!("wake-up listener reconnected");
                wake_all(wake);
            }
        }
    }
}

fn wake_all(wake: &dyn Wake) {
    wake.jobs_changed();
    wake.deadlines_changed();
    wake.notifications_changed();
    wake.policy_changed();
}
