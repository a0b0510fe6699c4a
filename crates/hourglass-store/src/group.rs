//! Group commit: the writes that are waiting share one durable transaction.
//!
//! A caller queues its write (a commit's steps and audit records, a single statement,
//! maintenance steps without records, or a claim) and waits. A drainer, started when the queue goes from idle to busy and ending when it
//! is empty again, takes every write that is waiting (up to `max_batch`, 256 by default) and runs them in one
//! transaction, each inside its own savepoint: a write that conflicts or fails is rolled back to
//! its savepoint and fails alone, the others go on. The audit records of the writes that
//! succeeded are then appended to the chain in queue order, once for the batch (one read of the
//! head, or one lock of it on PostgreSQL), and the transaction commits. Only then is any caller
//! answered, so an answer always means the fsync that covers it has happened; if the commit
//! itself fails, every write of the batch fails with it. (On PostgreSQL a connection lost while
//! the `COMMIT` is in flight leaves its outcome unknown, as for any client: those writes are
//! answered `Unavailable`, and use cases that retry read again before they write.)
//!
//! While one batch is being flushed, the next one gathers: under load each fsync covers many
//! writes instead of one. An idle store answers a lone write as before, in one transaction.
//!
//! The drainer is a spawned task, so a caller that gives up (an HTTP client that disconnects)
//! cancels only its own wait, never a batch that holds other callers' writes. If the drainer
//! never runs or dies (its runtime shut down, a panic), the writes still waiting are answered
//! `Unavailable` and the next write starts a new one.

use std::{
    collections::VecDeque,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
};

use async_trait::async_trait;
use hourglass_core::{Error, Result, audit::AuditRecord, store::WriteStats};
use tokio::sync::oneshot;

use crate::sql::{Expect, Step, Stmt, Wakes, audit_appends};

/// By default at most this many writes share a transaction (a bound on how long the first
/// waits).
pub const MAX_BATCH: u32 = 256;

/// Leases a picked row: its id in, the statement that leases it (returning the row) out.
pub(crate) type Lease = Box<dyn Fn(String) -> Result<Stmt> + Send + Sync>;

/// One write, as a caller hands it over.
pub(crate) enum Op {
    /// A commit: steps (each expecting one row or any), then its audit records.
    Write {
        steps: Vec<Step>,
        audit: Vec<AuditRecord>,
        wakes: Wakes,
    },
    /// One statement; answers the rows it changed.
    Run(Stmt),
    /// Steps with no audit records (maintenance: archiving audit events); answers the rows
    /// each step changed. A step expecting one row that changes none fails them all.
    Steps(Vec<Step>),
    /// A statement that changes rows and returns them (`DELETE … RETURNING`).
    Take(Stmt),
    /// Optionally `before`, then `pick` (ids in a column `id`), then `lease(id)` for each.
    Claim {
        before: Option<Stmt>,
        pick: Stmt,
        lease: Lease,
    },
}

/// What a write answers.
pub(crate) enum Done<R> {
    /// The last audit sequence number written, if the commit had records.
    Written(Option<u64>),
    Ran(u64),
    /// The rows each step of [`Op::Steps`] changed.
    Changed(Vec<u64>),
    Claimed(Vec<R>),
}

/// A transaction of one backend.
#[async_trait]
pub(crate) trait Tx: Send {
    type Row: Send + Sync + 'static;
    async fn exec(&mut self, s: &Stmt) -> Result<u64>;
    async fn rows(&mut self, s: &Stmt) -> Result<Vec<Self::Row>>;
    fn id_of(row: &Self::Row) -> Result<String>;
    /// Reads (PostgreSQL: locks) the chain's head: its sequence number and hash.
    async fn head(&mut self) -> Result<(u64, String)>;
    /// Records the new head (PostgreSQL's one-row `audit_head`; nothing on SQLite).
    async fn set_head(&mut self, seq: u64, hash: &str) -> Result<()>;
    /// Tells other processes' workers about new work (PostgreSQL's `NOTIFY`; nothing on SQLite).
    async fn wake(&mut self, wakes: Wakes) -> Result<()>;
    async fn commit(self) -> Result<()>;
    async fn rollback(self);
}

/// How a backend opens a write transaction.
#[async_trait]
pub(crate) trait Begin: Send + Sync + 'static {
    type Tx: Tx;
    async fn begin(&self) -> Result<Self::Tx>;
}

type Reply<R> = oneshot::Sender<Result<Done<R>>>;

struct Queue<R> {
    waiting: VecDeque<(Op, Reply<R>)>,
    draining: bool,
}

struct Inner<B: Begin> {
    db: B,
    max_batch: usize,
    queue: Mutex<Queue<<B::Tx as Tx>::Row>>,
    transactions: AtomicU64,
    writes: AtomicU64,
}

/// The group-commit writer of one backend.
pub(crate) struct Group<B: Begin>(Arc<Inner<B>>);

impl<B: Begin> Clone for Group<B> {
    fn clone(&self) -> Self {
        Group(self.0.clone())
    }
}

impl<B: Begin> std::fmt::Debug for Group<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Group").finish_non_exhaustive()
    }
}

fn stopped() -> Error {
    Error::Unavailable("the store's writer stopped before answering".into())
}

impl<B: Begin> Group<B> {
    /// A writer that puts at most `max_batch` writes in a transaction (1: one each).
    pub(crate) fn new(db: B, max_batch: u32) -> Self {
        Group(Arc::new(Inner {
            db,
            max_batch: usize::try_from(max_batch.max(1)).unwrap_or(1),
            queue: Mutex::new(Queue {
                waiting: VecDeque::new(),
                draining: false,
            }),
            transactions: AtomicU64::new(0),
            writes: AtomicU64::new(0),
        }))
    }

    /// Transactions committed so far, and the writes they carried.
    pub(crate) fn stats(&self) -> WriteStats {
        WriteStats {
            transactions: self.0.transactions.load(Ordering::Relaxed),
            writes: self.0.writes.load(Ordering::Relaxed),
        }
    }

    /// Queues `op` and waits until the transaction that holds it has committed (or failed).
    pub(crate) async fn submit(&self, op: Op) -> Result<Done<<B::Tx as Tx>::Row>> {
        let (tx, rx) = oneshot::channel();
        let start = {
            let mut q = self.0.queue.lock().unwrap_or_else(|e| e.into_inner());
            q.waiting.push_back((op, tx));
            !std::mem::replace(&mut q.draining, true)
        };
        if start {
            // The guard goes into the task: dropped unpolled (a runtime shutting down) or ended
            // by a panic, it still marks the queue idle and answers whoever waits.
            tokio::spawn(drain(Draining {
                inner: self.0.clone(),
                armed: true,
            }));
        }
        rx.await.unwrap_or_else(|_| Err(stopped()))
    }

    pub(crate) async fn write(
        &self,
        steps: Vec<Step>,
        audit: Vec<AuditRecord>,
        wakes: Wakes,
    ) -> Result<Option<u64>> {
        match self
            .submit(Op::Write {
                steps,
                audit,
                wakes,
            })
            .await?
        {
            Done::Written(last) => Ok(last),
            _ => Err(Error::internal("store: a write answered as something else")),
        }
    }

    pub(crate) async fn run(&self, s: Stmt) -> Result<u64> {
        match self.submit(Op::Run(s)).await? {
            Done::Ran(n) => Ok(n),
            _ => Err(Error::internal(
                "store: a statement answered as something else",
            )),
        }
    }

    pub(crate) async fn steps(&self, steps: Vec<Step>) -> Result<Vec<u64>> {
        match self.submit(Op::Steps(steps)).await? {
            Done::Changed(n) => Ok(n),
            _ => Err(Error::internal("store: steps answered as something else")),
        }
    }

    pub(crate) async fn take(&self, stmt: Stmt) -> Result<Vec<<B::Tx as Tx>::Row>> {
        match self.submit(Op::Take(stmt)).await? {
            Done::Claimed(rows) => Ok(rows),
            _ => Err(Error::internal("store: a take answered as something else")),
        }
    }

    pub(crate) async fn claim(
        &self,
        before: Option<Stmt>,
        pick: Stmt,
        lease: Lease,
    ) -> Result<Vec<<B::Tx as Tx>::Row>> {
        match self
            .submit(Op::Claim {
                before,
                pick,
                lease,
            })
            .await?
        {
            Done::Claimed(rows) => Ok(rows),
            _ => Err(Error::internal("store: a claim answered as something else")),
        }
    }
}

/// Marks the queue idle if the drainer ends without emptying it (a panic in a batch, or a task
/// dropped unpolled because its runtime shut down), and answers the writes still waiting with
/// `Unavailable` rather than leave them hanging; the next write starts a new drainer.
struct Draining<B: Begin> {
    inner: Arc<Inner<B>>,
    armed: bool,
}

impl<B: Begin> Drop for Draining<B> {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let mut q = self.inner.queue.lock().unwrap_or_else(|e| e.into_inner());
        q.draining = false;
        for (_, reply) in q.waiting.drain(..) {
            let _ = reply.send(Err(stopped()));
        }
    }
}

async fn drain<B: Begin>(mut guard: Draining<B>) {
    let inner = guard.inner.clone();
    loop {
        let batch: Vec<_> = {
            let mut q = inner.queue.lock().unwrap_or_else(|e| e.into_inner());
            if q.waiting.is_empty() {
                q.draining = false;
                guard.armed = false;
                return;
            }
            let n = q.waiting.len().min(inner.max_batch);
            q.waiting.drain(..n).collect()
        };
        let n = batch.len() as u64;
        if run_batch(&inner.db, batch).await {
            inner.transactions.fetch_add(1, Ordering::Relaxed);
            inner.writes.fetch_add(n, Ordering::Relaxed);
        }
    }
}

/// What one write of a batch came to, before the commit.
struct Applied<R> {
    reply: Reply<R>,
    outcome: Result<Done<R>>,
    audit: Vec<AuditRecord>,
    wakes: Wakes,
}

/// Runs one batch and answers each of its writes; whether a transaction was committed.
async fn run_batch<B: Begin>(db: &B, batch: Vec<(Op, Reply<<B::Tx as Tx>::Row>)>) -> bool {
    let mut tx = match db.begin().await {
        Ok(tx) => tx,
        Err(e) => {
            for (_, reply) in batch {
                let _ = reply.send(Err(e.clone()));
            }
            return false;
        }
    };
    let mut applied = Vec::with_capacity(batch.len());
    let mut batch = batch.into_iter();
    while let Some((op, reply)) = batch.next() {
        match isolated(&mut tx, op).await {
            Ok((outcome, audit, wakes)) => applied.push(Applied {
                reply,
                outcome,
                audit,
                wakes,
            }),
            Err(fatal) => {
                // The transaction itself is broken: none of the batch is applied.
                tx.rollback().await;
                fail_all(applied, &fatal);
                let _ = reply.send(Err(fatal.clone()));
                for (_, reply) in batch {
                    let _ = reply.send(Err(fatal.clone()));
                }
                return false;
            }
        }
    }
    if let Err(e) = chain(&mut tx, &mut applied).await {
        tx.rollback().await;
        fail_all(applied, &e);
        return false;
    }
    let committed = if applied.iter().all(|a| a.outcome.is_err()) {
        tx.rollback().await;
        false
    } else if let Err(e) = tx.commit().await {
        fail_all(applied, &e);
        return false;
    } else {
        true
    };
    for a in applied {
        let _ = a.reply.send(a.outcome);
    }
    committed
}

/// Answers every write of a batch that did not commit: those that failed on their own keep
/// their error, the others get the batch's.
fn fail_all<R>(applied: Vec<Applied<R>>, e: &Error) {
    for a in applied {
        let _ = a.reply.send(Err(match a.outcome {
            Err(own) => own,
            Ok(_) => e.clone(),
        }));
    }
}

/// Runs one write inside its own savepoint. `Ok` carries the write's own outcome (a failure
/// rolled back to the savepoint, leaving the transaction usable) and the audit records and
/// wake-ups of a write that succeeded; `Err` means the transaction cannot go on.
async fn isolated<T: Tx>(
    tx: &mut T,
    op: Op,
) -> Result<(Result<Done<T::Row>>, Vec<AuditRecord>, Wakes)> {
    // A commit of audit records alone runs no statement that could fail: no savepoint needed.
    if let Op::Write {
        steps,
        audit,
        wakes,
    } = &op
        && steps.is_empty()
    {
        return Ok((Ok(Done::Written(None)), audit.clone(), *wakes));
    }
    tx.exec(&crate::sql::stmt!("SAVEPOINT hourglass_write"))
        .await?;
    let outcome = apply(tx, &op).await;
    if outcome.is_ok() {
        tx.exec(&crate::sql::stmt!("RELEASE SAVEPOINT hourglass_write"))
            .await?;
    } else {
        tx.exec(&crate::sql::stmt!("ROLLBACK TO SAVEPOINT hourglass_write"))
            .await?;
        tx.exec(&crate::sql::stmt!("RELEASE SAVEPOINT hourglass_write"))
            .await?;
    }
    Ok(match (op, outcome) {
        (Op::Write { audit, wakes, .. }, Ok(done)) => (Ok(done), audit, wakes),
        (_, outcome) => (outcome, Vec::new(), Wakes::default()),
    })
}

async fn apply<T: Tx>(tx: &mut T, op: &Op) -> Result<Done<T::Row>> {
    match op {
        Op::Write { steps, .. } => run_steps(tx, steps).await.map(|_| Done::Written(None)),
        Op::Run(s) => tx.exec(s).await.map(Done::Ran),
        Op::Steps(steps) => run_steps(tx, steps).await.map(Done::Changed),
        Op::Take(stmt) => tx.rows(stmt).await.map(Done::Claimed),
        Op::Claim {
            before,
            pick,
            lease,
        } => {
            if let Some(b) = before {
                tx.exec(b).await?;
            }
            let ids = tx.rows(pick).await?;
            let mut out = Vec::with_capacity(ids.len());
            for row in &ids {
                let s = lease(T::id_of(row)?)?;
                out.extend(tx.rows(&s).await?.into_iter().next());
            }
            Ok(Done::Claimed(out))
        }
    }
}

/// Runs `steps` in order; the rows each changed. One expecting a row that changes none is a
/// conflict.
async fn run_steps<T: Tx>(tx: &mut T, steps: &[Step]) -> Result<Vec<u64>> {
    let mut changed = Vec::with_capacity(steps.len());
    for step in steps {
        let n = tx.exec(&step.stmt).await?;
        if n != 1 && step.expect == Expect::One {
            return Err(Error::StoreConflict);
        }
        changed.push(n);
    }
    Ok(changed)
}

/// Appends the audit records of the writes that succeeded, in queue order, after reading (or
/// locking) the head once, and tells other processes about new work. Each write learns the
/// sequence number of its last record.
async fn chain<T: Tx>(tx: &mut T, applied: &mut [Applied<T::Row>]) -> Result<()> {
    let mut wakes = Wakes::default();
    for a in applied.iter().filter(|a| a.outcome.is_ok()) {
        wakes = wakes.or(a.wakes);
    }
    let with_events = applied
        .iter()
        .any(|a| a.outcome.is_ok() && !a.audit.is_empty());
    if with_events {
        let (head, prev) = tx.head().await?;
        // Each write learns the sequence number of its last event; all of the batch's events
        // go in together, in queue order.
        let mut seq = head;
        for a in applied.iter_mut().filter(|a| a.outcome.is_ok()) {
            if !a.audit.is_empty() {
                seq += a.audit.len() as u64;
                a.outcome = Ok(Done::Written(Some(seq)));
            }
        }
        let records = applied
            .iter()
            .filter(|a| a.outcome.is_ok())
            .flat_map(|a| a.audit.iter());
        let (inserts, seq, hash) = audit_appends(head, prev, records)?;
        for s in &inserts {
            tx.exec(s).await?;
        }
        tx.set_head(seq, &hash).await?;
    }
    if wakes.any() {
        tx.wake(wakes).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use hourglass_core::{
        Timestamp,
        audit::{AuditRecord, ChainVerifier},
        store::Store,
    };

    use super::*;
    use crate::{
        SqliteStore,
        sql::{Step, stmt},
        sqlite::{WriteTx, Writer},
    };

    async fn store() -> (SqliteStore, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("hg.db").display());
        (SqliteStore::open(&url).await.unwrap(), dir)
    }

    fn turn(task: &str) -> Step {
        Step::one(stmt!(
            "INSERT INTO worker_turns (task, owner, until) VALUES ($1, 'o', 0)",
            task
        ))
    }

    fn record(action: &str) -> AuditRecord {
        AuditRecord::with_action(Timestamp::from_unix_millis(1), "tester", action, "s")
    }

    fn write(steps: Vec<Step>, actions: &[&str]) -> Op {
        Op::Write {
            steps,
            audit: actions.iter().map(|a| record(a)).collect(),
            wakes: Wakes::default(),
        }
    }

    type Answer = oneshot::Receiver<Result<Done<sqlx::sqlite::SqliteRow>>>;

    /// Runs `ops` as one batch through `db`; the answers in order, and whether it committed.
    async fn batch<B>(db: &B, ops: Vec<Op>) -> (Vec<Result<Option<u64>>>, bool)
    where
        B: Begin<Tx: Tx<Row = sqlx::sqlite::SqliteRow>>,
    {
        let (pending, answers): (Vec<_>, Vec<Answer>) = ops
            .into_iter()
            .map(|op| {
                let (tx, rx) = oneshot::channel();
                ((op, tx), rx)
            })
            .unzip();
        let committed = run_batch(db, pending).await;
        let mut out = Vec::new();
        for a in answers {
            out.push(match a.await.unwrap() {
                Ok(Done::Written(last)) => Ok(last),
                Ok(Done::Ran(n)) => Ok(Some(n)),
                Ok(Done::Changed(n)) => Ok(Some(n.iter().sum())),
                Ok(Done::Claimed(rows)) => Ok(Some(rows.len() as u64)),
                Err(e) => Err(e),
            });
        }
        (out, committed)
    }

    async fn tasks(s: &SqliteStore) -> Vec<String> {
        sqlx::query_scalar("SELECT task FROM worker_turns ORDER BY task")
            .fetch_all(s.writer())
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn a_write_that_conflicts_or_fails_is_rolled_back_alone() {
        let (s, _dir) = store().await;
        let db = Writer(s.writer().clone());
        let (answers, committed) = batch(
            &db,
            vec![
                write(vec![turn("a")], &["a"]),
                // Expects one row and changes none: a conflict.
                write(
                    vec![
                        turn("b"),
                        Step::one(stmt!(
                            "UPDATE worker_turns SET owner = 'x' WHERE task = 'gone'"
                        )),
                    ],
                    &["b"],
                ),
                // A duplicate key: the database refuses it.
                write(vec![turn("a")], &["a-again"]),
                Op::Run(stmt!(
                    "UPDATE worker_turns SET owner = 'p' WHERE task = 'a'"
                )),
                write(vec![turn("c")], &["c1", "c2"]),
            ],
        )
        .await;
        assert!(committed);
        assert_eq!(
            answers,
            vec![
                Ok(Some(1)),
                Err(Error::StoreConflict),
                Err(Error::StoreConflict),
                Ok(Some(1)),
                Ok(Some(3)),
            ]
        );
        assert_eq!(tasks(&s).await, ["a", "c"]);
        let events = s.audit_after(0, 100).await.unwrap();
        let actions: Vec<_> = events.iter().map(|e| e.record.action.as_str()).collect();
        assert_eq!(actions, ["a", "c1", "c2"]);
        let mut v = ChainVerifier::default();
        for e in &events {
            v.check(e).unwrap();
        }
    }

    /// A SQLite backend with a fault: its commit fails (a full disk, a lost connection at the
    /// last moment), or a statement that asks for it panics (a bug in a batch).
    #[derive(Clone, Copy)]
    enum Fault {
        Commit,
        Panic,
    }
    struct Faulty(Writer, Fault);
    struct FaultyTx(WriteTx, Fault);

    #[async_trait]
    impl Begin for Faulty {
        type Tx = FaultyTx;
        async fn begin(&self) -> Result<FaultyTx> {
            self.0.begin().await.map(|t| FaultyTx(t, self.1))
        }
    }

    #[async_trait]
    impl Tx for FaultyTx {
        type Row = sqlx::sqlite::SqliteRow;
        async fn exec(&mut self, s: &Stmt) -> Result<u64> {
            if matches!(self.1, Fault::Panic) {
                assert!(!s.sql.contains("'panic'"), "a bug in a batch");
            }
            self.0.exec(s).await
        }
        async fn rows(&mut self, s: &Stmt) -> Result<Vec<Self::Row>> {
            self.0.rows(s).await
        }
        fn id_of(row: &Self::Row) -> Result<String> {
            WriteTx::id_of(row)
        }
        async fn head(&mut self) -> Result<(u64, String)> {
            self.0.head().await
        }
        async fn set_head(&mut self, seq: u64, hash: &str) -> Result<()> {
            self.0.set_head(seq, hash).await
        }
        async fn wake(&mut self, wakes: Wakes) -> Result<()> {
            self.0.wake(wakes).await
        }
        async fn commit(self) -> Result<()> {
            match self.1 {
                Fault::Commit => {
                    self.0.rollback().await;
                    Err(Error::Unavailable("disk full".into()))
                }
                Fault::Panic => self.0.commit().await,
            }
        }
        async fn rollback(self) {
            self.0.rollback().await;
        }
    }

    #[tokio::test]
    async fn when_the_commit_fails_every_write_of_the_batch_fails_and_none_is_applied() {
        let (s, _dir) = store().await;
        let db = Faulty(Writer(s.writer().clone()), Fault::Commit);
        let (answers, committed) = batch(
            &db,
            vec![
                write(vec![turn("a")], &["a"]),
                write(vec![turn("a")], &["dup"]),
                write(vec![turn("b")], &["b"]),
            ],
        )
        .await;
        assert!(!committed);
        let down = Err(Error::Unavailable("disk full".into()));
        // The one that failed on its own says why; the others say the batch failed.
        assert_eq!(answers, vec![down.clone(), Err(Error::StoreConflict), down]);
        assert!(tasks(&s).await.is_empty());
        assert_eq!(s.audit_head_seq().await.unwrap(), 0);
    }

    #[tokio::test]
    async fn writes_waiting_while_a_batch_commits_go_together_in_the_next() {
        let (s, _dir) = store().await;
        let s = Arc::new(s);
        let mut all = tokio::task::JoinSet::new();
        for i in 0..50 {
            let s = s.clone();
            all.spawn(async move {
                let task = format!("t{i:02}");
                s.0.group
                    .write(vec![turn(&task)], vec![record(&task)], Wakes::default())
                    .await
            });
        }
        let mut seqs = Vec::new();
        while let Some(r) = all.join_next().await {
            seqs.push(r.unwrap().unwrap().unwrap());
        }
        seqs.sort_unstable();
        assert_eq!(seqs, (1..=50).collect::<Vec<u64>>());
        assert_eq!(tasks(&s).await.len(), 50);
        let stats = s.write_stats();
        assert_eq!(stats.writes, 50);
        assert!(stats.transactions < 50, "{stats:?}");
    }

    #[tokio::test]
    async fn when_a_batch_panics_its_writes_are_answered_and_the_next_write_goes_through() {
        let (s, _dir) = store().await;
        let group = Group::new(Faulty(Writer(s.writer().clone()), Fault::Panic), MAX_BATCH);
        let (bug, bystander) = tokio::join!(
            group.write(
                vec![Step::any(stmt!("SELECT 'panic'"))],
                vec![record("bug")],
                Wakes::default()
            ),
            group.write(vec![turn("a")], vec![record("a")], Wakes::default()),
        );
        assert!(matches!(bug, Err(Error::Unavailable(_))), "{bug:?}");
        assert!(
            matches!(bystander, Err(Error::Unavailable(_))),
            "{bystander:?}"
        );
        assert!(
            tasks(&s).await.is_empty(),
            "nothing of the batch is applied"
        );
        // A new drainer takes the next write (a queue left marked busy would never answer).
        let next = tokio::time::timeout(
            std::time::Duration::from_secs(10),
            group.write(vec![turn("b")], vec![record("b")], Wakes::default()),
        )
        .await
        .expect("the next write is answered");
        assert_eq!(next, Ok(Some(1)));
        assert_eq!(tasks(&s).await, ["b"]);
    }
}
