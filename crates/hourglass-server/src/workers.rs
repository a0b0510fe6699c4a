//! The workers: the expiry scheduler, the job runner, the reconciler, the notifier and the
//! ticket poller.
//!
//! None scans. The scheduler asks the store for the next deadline (the first entry of the
//! `expires_at` index) and sleeps until then or until woken by a new, possibly earlier,
//! deadline. The job runner and the notifier are one leased-queue loop (`run_queue`) over their
//! own tables: they claim what is due, run it concurrently up to a limit, and sleep until the
//! next is due or new work is signalled. On a store error they back off for a second and try
//! again. The reconciler and the ticket poller run on intervals of the engine clock.

use std::sync::Arc;

use hourglass_core::{
    Clock, GrantDuration, Timestamp,
    engine::{Caller, DriftKind, Engine, JobOutcome, ReconcileReport, TargetStanding},
    job::JobAction,
};
use tokio::sync::{Notify, Semaphore, mpsc, oneshot, watch};
use tracing::{error, warn};

use crate::metrics::{DeliveryOutcome, JobResult, Metrics, Proof};

/// Keeps the workers running: each runs as its own task, and one that ends without being asked
/// to (a panic, a bug that returns) is counted, marked down (`/readyz` fails while any is), and
/// started again after a short pause that doubles up to ten seconds.
#[derive(Default)]
pub struct Supervisor {
    down: std::sync::Mutex<std::collections::BTreeSet<&'static str>>,
    runs: std::sync::Mutex<std::collections::BTreeMap<&'static str, tokio::task::AbortHandle>>,
}

impl Supervisor {
    /// The workers that are down now, by name.
    pub fn down(&self) -> Vec<&'static str> {
        self.down
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .copied()
            .collect()
    }

    /// Ends the current run of worker `name` as a crash would (fault tests). Whether it ran.
    pub fn kill(&self, name: &str) -> bool {
        self.runs
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(name)
            .map(tokio::task::AbortHandle::abort)
            .is_some()
    }

    fn mark(&self, name: &'static str, up: bool) {
        let mut down = self
            .down
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if up {
            down.remove(name);
        } else {
            down.insert(name);
        }
    }

    /// Runs the worker that `start` makes, as `name`, until `stop`; see the type's doc.
    pub fn supervise<F, Fut>(
        self: &Arc<Self>,
        name: &'static str,
        metrics: Arc<Metrics>,
        mut stop: watch::Receiver<bool>,
        start: F,
    ) -> tokio::task::JoinHandle<()>
    where
        F: Fn() -> Fut + Send + 'static,
        Fut: std::future::Future<Output = ()> + Send + 'static,
    {
        let sup = Arc::clone(self);
        tokio::spawn(async move {
            let mut pause = std::time::Duration::from_millis(100);
            loop {
                let run = tokio::spawn(start());
                sup.runs
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .insert(name, run.abort_handle());
                sup.mark(name, true);
                let ended = run.await;
                if *stop.borrow() {
                    return;
                }
                sup.mark(name, false);
                metrics.worker_restart(name);
                match ended {
                    Err(e) if e.is_panic() => error!(worker = name, "worker panicked; restarting"),
                    Err(_) => error!(worker = name, "worker was stopped; restarting"),
                    Ok(()) => error!(worker = name, "worker returned; restarting"),
                }
                tokio::select! {
                    () = tokio::time::sleep(pause) => {}
                    _ = stop.changed() => return,
                }
                pause = (pause * 2).min(std::time::Duration::from_secs(10));
            }
        })
    }
}

/// How many grants or requests one expiry pass changes per commit.
const EXPIRY_BATCH: u32 = 500;

/// Wakes the workers when the engine schedules work (on a shared store, also when another
/// replica does: the store relays its wake-ups here).
#[derive(Default)]
pub struct Wakeups {
    pub jobs: Notify,
    pub deadlines: Notify,
    pub notifications: Notify,
    /// Another replica put a policy set in force.
    pub policy: Notify,
    /// Work was scheduled (a revocation among it, perhaps): SSH CAs rewrite their KRL files.
    pub krl: Notify,
    /// An access review started or queued target work.
    pub campaigns: Notify,
    /// On a shared store, the longest a worker sleeps before it looks again, in case a wake-up
    /// from another replica was lost. Real time, not the engine clock.
    pub poll: Option<std::time::Duration>,
}

impl hourglass_core::engine::Wake for Wakeups {
    fn jobs_changed(&self) {
        self.jobs.notify_one();
        self.krl.notify_one();
    }
    fn deadlines_changed(&self) {
        self.deadlines.notify_one();
    }
    fn notifications_changed(&self) {
        self.notifications.notify_one();
    }
    fn policy_changed(&self) {
        self.policy.notify_one();
    }
    fn campaigns_changed(&self) {
        self.campaigns.notify_one();
    }
}

/// Access reviews: reminders and deadlines of open campaigns, and the target work their
/// removals queued, each at its moment.
pub async fn campaigns(engine: Arc<Engine>, wake: Arc<Wakeups>, mut stop: watch::Receiver<bool>) {
    let clock = Arc::clone(engine.clock());
    loop {
        let pass = async {
            engine.campaign_tick().await?;
            let worked = engine.run_campaign_work().await?;
            if worked > 0 {
                // More may be due at once.
                return Ok(Some(clock.now()));
            }
            let (a, b) = (
                engine.next_campaign_moment().await?,
                engine.next_campaign_work().await?,
            );
            Ok::<_, hourglass_core::Error>(match (a, b) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            })
        };
        let next = match pass.await {
            Ok(t) => t,
            Err(e) => {
                warn!(error = %e, "access review pass failed; retrying");
                retry_at(clock.as_ref())
            }
        };
        if !sleep_until_or(
            clock.as_ref(),
            next,
            (&wake.campaigns, wake.poll),
            &mut stop,
        )
        .await
        {
            return;
        }
    }
}

pub(crate) async fn sleep_until_or(
    clock: &dyn Clock,
    at: Option<Timestamp>,
    (wake, poll): (&Notify, Option<std::time::Duration>),
    stop: &mut watch::Receiver<bool>,
) -> bool {
    let sleep = async {
        match at {
            Some(t) => clock.sleep_until(t).await,
            None => std::future::pending::<()>().await,
        }
    };
    let poll = async {
        match poll {
            Some(d) => tokio::time::sleep(d).await,
            None => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        () = sleep => true,
        () = poll => true,
        () = wake.notified() => true,
        _ = stop.changed() => false,
    }
}

fn retry_at(clock: &dyn Clock) -> Option<Timestamp> {
    Some(clock.now().plus_millis(1_000))
}

/// On a shared store, keeps each SSH target's `krl_file` on this host in step with the ledger:
/// rewritten whenever any replica schedules work (a revocation schedules its job), and every
/// poll interval in case a wake-up was lost. The replica that carries out a revocation writes
/// its own file at once; this is for the other hosts.
pub async fn krl_writer(
    cas: Vec<Arc<hourglass_connectors::SshConnector>>,
    clock: Arc<dyn Clock>,
    wake: Arc<Wakeups>,
    mut stop: watch::Receiver<bool>,
) {
    while sleep_until_or(clock.as_ref(), None, (&wake.krl, wake.poll), &mut stop).await {
        for ca in &cas {
            if let Err(e) = ca.write_krl_file().await {
                warn!(error = %e.message, "cannot rewrite the KRL file; retrying at the next wake-up");
            }
        }
    }
}

/// Moves expired grants to revocation and expires undecided requests, at their deadlines.
pub async fn scheduler(engine: Arc<Engine>, wake: Arc<Wakeups>, mut stop: watch::Receiver<bool>) {
    let clock = Arc::clone(engine.clock());
    loop {
        let next = match engine.expire_due(EXPIRY_BATCH).await {
            // A full batch: there may be more due right now.
            Ok(n) if n >= EXPIRY_BATCH as usize => Some(clock.now()),
            Ok(_) => match engine.next_deadline().await {
                Ok(t) => t,
                Err(e) => {
                    warn!(error = %e, "scheduler cannot read the next deadline");
                    retry_at(clock.as_ref())
                }
            },
            // Another replica expired some of the same grants first: look again at once.
            Err(hourglass_core::Error::StoreConflict) => Some(clock.now()),
            Err(e) => {
                error!(error = %e, "expiry pass failed; retrying");
                retry_at(clock.as_ref())
            }
        };
        if !sleep_until_or(
            clock.as_ref(),
            next,
            (&wake.deadlines, wake.poll),
            &mut stop,
        )
        .await
        {
            return;
        }
    }
}

/// A queue of leased work: what to claim, when the next item is due, and how to run one.
trait LeasedQueue: Send + Sync + 'static {
    type Item: Send + 'static;
    /// For log lines.
    const WHAT: &'static str;
    fn claim(
        &self,
        limit: u32,
    ) -> impl std::future::Future<Output = hourglass_core::Result<Vec<Self::Item>>> + Send;
    fn next_at(
        &self,
    ) -> impl std::future::Future<Output = hourglass_core::Result<Option<Timestamp>>> + Send;
    /// Runs one item; its outcome is recorded by the queue (metrics, logs).
    fn run(&self, item: Self::Item) -> impl std::future::Future<Output = ()> + Send;
}

/// Claims due items and runs them, at most `concurrency` at once; sleeps until the next is due
/// or `wake` says there is new work (a finishing item wakes it too, to claim into its slot).
async fn run_queue<Q: LeasedQueue>(
    queue: Arc<Q>,
    clock: Arc<dyn Clock>,
    (wake, bell): (Arc<Wakeups>, fn(&Wakeups) -> &Notify),
    concurrency: usize,
    mut stop: watch::Receiver<bool>,
) {
    let permits = Arc::new(Semaphore::new(concurrency.max(1)));
    loop {
        let free = u32::try_from(permits.available_permits()).unwrap_or(0);
        let mut next = None;
        if free > 0 {
            match queue.claim(free).await {
                Ok(items) => {
                    for item in items {
                        let Ok(permit) = Arc::clone(&permits).acquire_owned().await else {
                            return;
                        };
                        let (queue, wake) = (Arc::clone(&queue), Arc::clone(&wake));
                        tokio::spawn(async move {
                            queue.run(item).await;
                            drop(permit);
                            bell(&wake).notify_one();
                        });
                    }
                }
                Err(e) => {
                    error!(error = %e, "cannot claim {}; retrying", Q::WHAT);
                    next = retry_at(clock.as_ref());
                }
            }
        }
        if next.is_none() {
            next = match queue.next_at().await {
                Ok(t) => t,
                Err(e) => {
                    warn!(error = %e, "cannot read when the next of the {} is due", Q::WHAT);
                    retry_at(clock.as_ref())
                }
            };
        }
        // With every slot busy, a finishing item wakes us.
        if free == 0 {
            next = None;
        }
        if !sleep_until_or(clock.as_ref(), next, (bell(&wake), wake.poll), &mut stop).await {
            return;
        }
    }
}

struct Jobs {
    engine: Arc<Engine>,
    metrics: Arc<Metrics>,
}

impl LeasedQueue for Jobs {
    type Item = hourglass_core::job::Job;
    const WHAT: &'static str = "jobs";
    async fn claim(&self, limit: u32) -> hourglass_core::Result<Vec<Self::Item>> {
        self.engine.claim_jobs(limit).await
    }
    async fn next_at(&self) -> hourglass_core::Result<Option<Timestamp>> {
        self.engine.next_job_at().await
    }
    async fn run(&self, job: Self::Item) {
        let action = job.action;
        match self.engine.execute_job(job).await {
            Ok(report) => record(&self.metrics, action, &report.outcome),
            Err(e) => {
                error!(error = %e, "job failed unexpectedly; it will be retried when its lease runs out");
                self.metrics.job(action, JobResult::Error);
            }
        }
    }
}

/// Claims due jobs and runs them, at most `concurrency` at once.
pub async fn job_runner(
    engine: Arc<Engine>,
    wake: Arc<Wakeups>,
    metrics: Arc<Metrics>,
    concurrency: u32,
    stop: watch::Receiver<bool>,
) {
    let clock = Arc::clone(engine.clock());
    run_queue(
        Arc::new(Jobs { engine, metrics }),
        clock,
        (wake, |w| &w.jobs),
        concurrency as usize,
        stop,
    )
    .await;
}

fn record(metrics: &Metrics, action: JobAction, outcome: &JobOutcome) {
    let name = match outcome {
        JobOutcome::Activated => JobResult::Activated,
        JobOutcome::Extended => JobResult::Extended,
        JobOutcome::Revoked { lag_ms, proven } => {
            metrics.revocation_lag(*lag_ms as f64 / 1000.0);
            metrics.revocation_proof(if *proven {
                Proof::Verified
            } else {
                Proof::Unprovable
            });
            JobResult::Revoked
        }
        JobOutcome::Retry { .. } => {
            metrics.retry(action);
            JobResult::Retry
        }
        JobOutcome::Abandoned { .. } => JobResult::Abandoned,
        JobOutcome::Superseded => JobResult::Superseded,
        JobOutcome::Nothing => JobResult::Nothing,
    };
    metrics.job(action, name);
}

/// Counts a reconciliation's findings.
pub fn record_reconcile(metrics: &Metrics, report: &ReconcileReport) {
    for t in &report.targets_checked {
        let left = report
            .drift
            .iter()
            .filter(|d| &d.target == t && matches!(d.kind, DriftKind::Leftover) && !d.removed)
            .count();
        metrics.leftovers(t, left as u64);
    }
    for d in &report.drift {
        metrics.drift(&d.target, d.kind);
    }
    for _ in &report.errors {
        metrics.reconcile_failure();
    }
}

/// Work for the reconciler asked for through the API. Connectors are called here, in the
/// worker, never in a request handler; the handler waits for the answer.
pub enum TargetTask {
    Reconcile(
        Caller,
        oneshot::Sender<hourglass_core::Result<ReconcileReport>>,
    ),
    Standing(
        Caller,
        oneshot::Sender<hourglass_core::Result<Vec<TargetStanding>>>,
    ),
}

/// Runs the reconciler every `interval` (first one interval after start), and the target tasks
/// the API hands it in between.
pub async fn reconciler(
    engine: Arc<Engine>,
    metrics: Arc<Metrics>,
    interval: GrantDuration,
    tasks: Arc<tokio::sync::Mutex<mpsc::Receiver<TargetTask>>>,
    mut stop: watch::Receiver<bool>,
) {
    // Held for this run; a restarted reconciler takes the same queue.
    let mut tasks = tasks.lock().await;
    let clock = Arc::clone(engine.clock());
    let mut next = clock.now().plus(interval);
    loop {
        tokio::select! {
            () = clock.sleep_until(next) => {
                next = clock.now().plus(interval);
                match engine.take_turn("reconcile", interval).await {
                    Ok(true) => match engine.reconcile("system").await {
                        Ok(report) => record_reconcile(&metrics, &report),
                        Err(e) => {
                            error!(error = %e, "reconciliation failed");
                            metrics.reconcile_failure();
                        }
                    },
                    // Another replica reconciles this period.
                    Ok(false) => {}
                    Err(e) => {
                        error!(error = %e, "cannot take the reconciliation turn");
                        metrics.reconcile_failure();
                    }
                }
            }
            Some(task) = tasks.recv() => match task {
                TargetTask::Reconcile(caller, reply) => {
                    let result = engine.reconcile_as(&caller).await;
                    if let Ok(report) = &result {
                        record_reconcile(&metrics, report);
                    }
                    let _ = reply.send(result);
                }
                TargetTask::Standing(caller, reply) => {
                    let _ = reply.send(engine.standing(&caller).await);
                }
            },
            _ = stop.changed() => return,
        }
    }
}

/// How many notifications are delivered at once. Each notifier has its own timeout, so a dead
/// one holds a slot for at most that long; revocations never wait for any of them.
const NOTIFY_CONCURRENCY: usize = 8;

struct Notifications {
    engine: Arc<Engine>,
    metrics: Arc<Metrics>,
}

impl LeasedQueue for Notifications {
    type Item = hourglass_core::notify::Notification;
    const WHAT: &'static str = "notifications";
    async fn claim(&self, limit: u32) -> hourglass_core::Result<Vec<Self::Item>> {
        self.engine.claim_notifications(limit).await
    }
    async fn next_at(&self) -> hourglass_core::Result<Option<Timestamp>> {
        self.engine.next_notification_at().await
    }
    async fn run(&self, n: Self::Item) {
        match self.engine.deliver(n).await {
            Ok(r) => self
                .metrics
                .notification(&r.notifier, delivery_name(&r.outcome)),
            Err(e) => {
                error!(error = %e, "notification delivery failed unexpectedly; retried when its lease runs out");
            }
        }
    }
}

/// Delivers queued notifications when they are due, apart from the job runner.
pub async fn notifier(
    engine: Arc<Engine>,
    wake: Arc<Wakeups>,
    metrics: Arc<Metrics>,
    stop: watch::Receiver<bool>,
) {
    let clock = Arc::clone(engine.clock());
    run_queue(
        Arc::new(Notifications { engine, metrics }),
        clock,
        (wake, |w| &w.notifications),
        NOTIFY_CONCURRENCY,
        stop,
    )
    .await;
}

fn delivery_name(d: &hourglass_core::engine::Delivery) -> DeliveryOutcome {
    use hourglass_core::engine::Delivery;
    match d {
        Delivery::Sent => DeliveryOutcome::Sent,
        Delivery::Retry { .. } => DeliveryOutcome::Retry,
        Delivery::Dead { .. } => DeliveryOutcome::Dead,
        Delivery::Dropped { .. } => DeliveryOutcome::Dropped,
        Delivery::Lost => DeliveryOutcome::Lost,
    }
}

/// Asks the ticket sources every `interval` about the tickets live access is bound to, and ends
/// the access of tickets closed without a webhook saying so.
pub async fn ticket_poller(
    engine: Arc<Engine>,
    metrics: Arc<Metrics>,
    interval: GrantDuration,
    mut stop: watch::Receiver<bool>,
) {
    let clock = Arc::clone(engine.clock());
    loop {
        let next = clock.now().plus(interval);
        tokio::select! {
            () = clock.sleep_until(next) => {
                match engine.take_turn("poll_tickets", interval).await {
                    Ok(true) => {}
                    // Another replica polls this period.
                    Ok(false) => continue,
                    Err(e) => {
                        error!(error = %e, "cannot take the ticket poll turn");
                        continue;
                    }
                }
                match engine.poll_tickets().await {
                    Ok(poll) => {
                        metrics.ticket_poll(poll.closed.len(), poll.unavailable);
                        if !poll.closed.is_empty() {
                            tracing::info!(closed = ?poll.closed, checked = poll.checked, "ticket poll ended access bound to closed tickets");
                        }
                    }
                    Err(e) => error!(error = %e, "ticket poll failed"),
                }
            }
            _ = stop.changed() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A worker that keeps returning is marked down between its runs, counted each time, and
    /// started again; at stop, the supervisor ends.
    #[tokio::test]
    async fn a_worker_that_stops_unasked_is_marked_down_counted_and_started_again() {
        let sup = Arc::new(Supervisor::default());
        let metrics = Arc::new(Metrics::default());
        let (stop_tx, stop_rx) = watch::channel(false);
        let runs = Arc::new(std::sync::atomic::AtomicU32::new(0));
        let counted = Arc::clone(&runs);
        let handle = sup.supervise("flaky", Arc::clone(&metrics), stop_rx, move || {
            let counted = Arc::clone(&counted);
            async move {
                counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            }
        });
        let mut seen_down = false;
        for _ in 0..400 {
            seen_down |= sup.down() == vec!["flaky"];
            if seen_down && runs.load(std::sync::atomic::Ordering::SeqCst) >= 3 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        assert!(seen_down, "marked down between runs");
        assert!(
            runs.load(std::sync::atomic::Ordering::SeqCst) >= 3,
            "started again"
        );
        let text = metrics.render(&Default::default());
        assert!(
            text.contains("hourglass_worker_restarts_total{worker=\"flaky\"}"),
            "{text}"
        );
        stop_tx.send_replace(true);
        handle.await.unwrap();
    }
}
