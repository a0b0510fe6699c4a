//! Prometheus metrics, kept per server instance (no global registry), so that several servers
//! in one test process do not mix their figures. Gauges that describe stored state (active
//! grants, overdue revocations) are read from the store at scrape time, so they are right after
//! a restart.

use std::{
    collections::BTreeMap,
    fmt::Write,
    sync::{
        Mutex, PoisonError,
        atomic::{AtomicU64, Ordering},
    },
};

use hourglass_core::{notify::NotifierStats, store::GrantCounts};

/// Upper bounds of the revocation-lag histogram, in seconds.
const LAG_BUCKETS: [f64; 12] = [
    0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0,
];

#[derive(Debug, Default)]
struct Histogram {
    counts: [u64; LAG_BUCKETS.len()],
    count: u64,
    sum: f64,
}

/// The server's metrics.
#[derive(Debug, Default)]
pub struct Metrics {
    requests: Mutex<BTreeMap<&'static str, u64>>,
    jobs: Mutex<BTreeMap<(&'static str, &'static str), u64>>,
    retries: Mutex<BTreeMap<&'static str, u64>>,
    proofs: Mutex<BTreeMap<&'static str, u64>>,
    /// Leftovers the last reconciliation of each target found and could not remove.
    leftovers: Mutex<BTreeMap<String, u64>>,
    lag: Mutex<Histogram>,
    http_errors: AtomicU64,
    drift: Mutex<BTreeMap<(String, &'static str), u64>>,
    reconcile_failures: AtomicU64,
    notifications: Mutex<BTreeMap<(String, &'static str), u64>>,
    tickets_closed_by_poll: AtomicU64,
    ticket_poll_unavailable: AtomicU64,
    ticket_events: Mutex<BTreeMap<(String, &'static str), u64>>,
    chat_requests: Mutex<BTreeMap<(String, &'static str), u64>>,
    oncall_reads: Mutex<BTreeMap<(String, &'static str), u64>>,
    worker_restarts: Mutex<BTreeMap<&'static str, u64>>,
    policy_stale: std::sync::atomic::AtomicBool,
}

/// A label value as the Prometheus text format writes it: `\`, `"` and line feeds escaped.
fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn bump<K: Ord>(m: &Mutex<BTreeMap<K, u64>>, key: K) {
    *m.lock()
        .unwrap_or_else(PoisonError::into_inner)
        .entry(key)
        .or_insert(0) += 1;
}

impl Metrics {
    /// Whether this process decides under a policy set other than the one in force.
    pub fn set_policy_stale(&self, stale: bool) {
        self.policy_stale.store(stale, Ordering::Relaxed);
    }

    pub fn policy_stale(&self) -> bool {
        self.policy_stale.load(Ordering::Relaxed)
    }

    /// A worker that stopped without being asked to, and was started again.
    pub fn worker_restart(&self, worker: &'static str) {
        bump(&self.worker_restarts, worker);
    }

    /// A request outcome: `pending`, `auto_approved`, `refused`, `invalid`, `approved`, …
    pub fn request(&self, outcome: &'static str) {
        bump(&self.requests, outcome);
    }

    /// A job run's outcome.
    pub fn job(&self, action: &'static str, outcome: &'static str) {
        bump(&self.jobs, (action, outcome));
    }

    /// A failed connector call that will be retried.
    pub fn retry(&self, action: &'static str) {
        bump(&self.retries, action);
    }

    /// What the last reconciliation of `target` left in it: leftovers it found and could not
    /// remove.
    pub fn leftovers(&self, target: &str, n: u64) {
        self.leftovers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(target.to_owned(), n);
    }

    /// Leftovers per target as the last reconciliations left them.
    pub fn leftovers_by_target(&self) -> BTreeMap<String, u64> {
        self.leftovers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Revocation debt per target: overdue revocations (counted from the store now) and
    /// leftovers (as the last reconciliation left them).
    pub fn render_debt(&self, overdue: &BTreeMap<String, u64>) -> String {
        let mut out = String::from(
            "# HELP hourglass_revocation_debt Revocation debt per target: overdue revocations (due, not yet proven) and leftovers the last reconciliation could not remove.\n# TYPE hourglass_revocation_debt gauge\n",
        );
        let leftovers = self.leftovers_by_target();
        let targets: std::collections::BTreeSet<&String> =
            overdue.keys().chain(leftovers.keys()).collect();
        for t in targets {
            let _ = writeln!(
                out,
                "hourglass_revocation_debt{{target=\"{}\",kind=\"overdue\"}} {}",
                label(t),
                overdue.get(t).copied().unwrap_or(0)
            );
            let _ = writeln!(
                out,
                "hourglass_revocation_debt{{target=\"{}\",kind=\"leftover\"}} {}",
                label(t),
                leftovers.get(t).copied().unwrap_or(0)
            );
        }
        out
    }

    /// A finished revocation, by its proof (`verified`, `unprovable`).
    pub fn revocation_proof(&self, proof: &'static str) {
        bump(&self.proofs, proof);
    }

    /// Time from a revocation being due to the target confirming it.
    pub fn revocation_lag(&self, seconds: f64) {
        let mut h = self.lag.lock().unwrap_or_else(PoisonError::into_inner);
        for (i, bound) in LAG_BUCKETS.iter().enumerate() {
            if seconds <= *bound {
                h.counts[i] += 1;
            }
        }
        h.count += 1;
        h.sum += seconds;
    }

    /// A difference the reconciler found in a target (`leftover` or `missing`).
    pub fn drift(&self, target: &str, kind: &'static str) {
        bump(&self.drift, (target.to_owned(), kind));
    }

    /// A target the reconciler could not check.
    pub fn reconcile_failure(&self) {
        self.reconcile_failures.fetch_add(1, Ordering::Relaxed);
    }

    /// A notification delivery's outcome (`sent`, `retry`, `dead`, `dropped`, `lost`).
    pub fn notification(&self, notifier: &str, outcome: &'static str) {
        bump(&self.notifications, (notifier.to_owned(), outcome));
    }

    /// One ticket poll: tickets found closed, and tickets whose source did not answer.
    pub fn ticket_poll(&self, closed: usize, unavailable: usize) {
        self.tickets_closed_by_poll
            .fetch_add(closed as u64, Ordering::Relaxed);
        self.ticket_poll_unavailable
            .fetch_add(unavailable as u64, Ordering::Relaxed);
    }

    /// A ticket event received (`accepted` or `refused`).
    pub fn ticket_event(&self, source: &str, outcome: &'static str) {
        bump(&self.ticket_events, (source.to_owned(), outcome));
    }

    /// A request from a chat app: `accepted`, `repeat`, `refused`, `invalid`.
    pub fn chat_request(&self, chat: &str, outcome: &'static str) {
        bump(&self.chat_requests, (chat.to_owned(), outcome));
    }

    /// A read of an on-call source: `ok` or `failed`.
    pub fn oncall_read(&self, source: &str, outcome: &'static str) {
        bump(&self.oncall_reads, (source.to_owned(), outcome));
    }

    pub fn http_error(&self) {
        self.http_errors.fetch_add(1, Ordering::Relaxed);
    }

    /// The Prometheus text exposition, with the stored counts.
    pub fn render(
        &self,
        grants: GrantCounts,
        queues: &[NotifierStats],
        writes: hourglass_core::store::WriteStats,
    ) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "# HELP hourglass_policy_stale 1 while this process decides under a policy set other than the one the ledger records in force.\n# TYPE hourglass_policy_stale gauge\nhourglass_policy_stale {}",
            u8::from(self.policy_stale())
        );
        let _ = writeln!(
            out,
            "# HELP hourglass_store_transactions_total Durable write transactions this process committed (group commit: each carries every write that was waiting).\n# TYPE hourglass_store_transactions_total counter\nhourglass_store_transactions_total {}",
            writes.transactions
        );
        let _ = writeln!(
            out,
            "# HELP hourglass_store_writes_total Writes (commits, claims, statements) those transactions carried.\n# TYPE hourglass_store_writes_total counter\nhourglass_store_writes_total {}",
            writes.writes
        );
        let _ = writeln!(
            out,
            "# HELP hourglass_worker_restarts_total Workers started again after they stopped unasked.\n# TYPE hourglass_worker_restarts_total counter"
        );
        for (k, v) in self
            .worker_restarts
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
        {
            let _ = writeln!(out, "hourglass_worker_restarts_total{{worker=\"{k}\"}} {v}");
        }
        let _ = writeln!(
            out,
            "# HELP hourglass_requests_total Requests by outcome.\n# TYPE hourglass_requests_total counter"
        );
        for (k, v) in self
            .requests
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
        {
            let _ = writeln!(out, "hourglass_requests_total{{outcome=\"{k}\"}} {v}");
        }
        let _ = writeln!(
            out,
            "# HELP hourglass_grants Grants by state, as stored.\n# TYPE hourglass_grants gauge"
        );
        for (state, n) in [
            ("provisioning", grants.provisioning),
            ("active", grants.active),
            ("revoking", grants.revoking),
        ] {
            let _ = writeln!(out, "hourglass_grants{{state=\"{state}\"}} {n}");
        }
        let _ = writeln!(
            out,
            "# HELP hourglass_grants_active Active grants.\n# TYPE hourglass_grants_active gauge\nhourglass_grants_active {}",
            grants.active
        );
        let _ = writeln!(
            out,
            "# HELP hourglass_revocations_overdue Grants whose revocation is overdue (due and not confirmed by the target).\n# TYPE hourglass_revocations_overdue gauge\nhourglass_revocations_overdue {}",
            grants.overdue
        );
        let _ = writeln!(
            out,
            "# HELP hourglass_job_retries_total Connector calls that failed and were rescheduled.\n# TYPE hourglass_job_retries_total counter"
        );
        for (k, v) in self
            .retries
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
        {
            let _ = writeln!(out, "hourglass_job_retries_total{{action=\"{k}\"}} {v}");
        }
        let _ = writeln!(
            out,
            "# HELP hourglass_revocations_total Finished revocations by their proof: verified (the target asked again says the access is gone) or unprovable (the target cannot be asked).\n# TYPE hourglass_revocations_total counter"
        );
        for (k, v) in self
            .proofs
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
        {
            let _ = writeln!(out, "hourglass_revocations_total{{proof=\"{k}\"}} {v}");
        }
        let _ = writeln!(
            out,
            "# HELP hourglass_jobs_total Job runs by action and outcome.\n# TYPE hourglass_jobs_total counter"
        );
        for ((a, o), v) in self
            .jobs
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
        {
            let _ = writeln!(
                out,
                "hourglass_jobs_total{{action=\"{a}\",outcome=\"{o}\"}} {v}"
            );
        }
        let h = self.lag.lock().unwrap_or_else(PoisonError::into_inner);
        let _ = writeln!(
            out,
            "# HELP hourglass_revocation_lag_seconds From a revocation being due to its proof (the target confirming the access is gone).\n# TYPE hourglass_revocation_lag_seconds histogram"
        );
        for (i, bound) in LAG_BUCKETS.iter().enumerate() {
            let _ = writeln!(
                out,
                "hourglass_revocation_lag_seconds_bucket{{le=\"{bound}\"}} {}",
                h.counts[i]
            );
        }
        let _ = writeln!(
            out,
            "hourglass_revocation_lag_seconds_bucket{{le=\"+Inf\"}} {}",
            h.count
        );
        let _ = writeln!(out, "hourglass_revocation_lag_seconds_sum {}", h.sum);
        let _ = writeln!(out, "hourglass_revocation_lag_seconds_count {}", h.count);
        let _ = writeln!(
            out,
            "# HELP hourglass_http_server_errors_total Responses with status 5xx.\n# TYPE hourglass_http_server_errors_total counter\nhourglass_http_server_errors_total {}",
            self.http_errors.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP hourglass_reconcile_drift_total Differences between targets and the ledger found by the reconciler.\n# TYPE hourglass_reconcile_drift_total counter"
        );
        for ((t, k), v) in self
            .drift
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
        {
            let _ = writeln!(
                out,
                "hourglass_reconcile_drift_total{{target=\"{}\",kind=\"{k}\"}} {v}",
                label(t)
            );
        }
        let _ = writeln!(
            out,
            "# HELP hourglass_reconcile_failures_total Targets the reconciler could not check.\n# TYPE hourglass_reconcile_failures_total counter\nhourglass_reconcile_failures_total {}",
            self.reconcile_failures.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP hourglass_notifications_total Notification deliveries by notifier and outcome.\n# TYPE hourglass_notifications_total counter"
        );
        for ((n, o), v) in self
            .notifications
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
        {
            let _ = writeln!(
                out,
                "hourglass_notifications_total{{notifier=\"{}\",outcome=\"{o}\"}} {v}",
                label(n)
            );
        }
        let _ = writeln!(
            out,
            "# HELP hourglass_notifications_queued Notifications waiting or being retried, by notifier (a dead notifier's queue grows).\n# TYPE hourglass_notifications_queued gauge"
        );
        for q in queues {
            let _ = writeln!(
                out,
                "hourglass_notifications_queued{{notifier=\"{}\"}} {}",
                label(&q.notifier),
                q.pending
            );
        }
        let _ = writeln!(
            out,
            "# HELP hourglass_notifications_dead Notifications given up after every retry, by notifier.\n# TYPE hourglass_notifications_dead gauge"
        );
        for q in queues {
            let _ = writeln!(
                out,
                "hourglass_notifications_dead{{notifier=\"{}\"}} {}",
                label(&q.notifier),
                q.dead
            );
        }
        let _ = writeln!(
            out,
            "# HELP hourglass_ticket_events_total Ticket events received, by source and outcome.\n# TYPE hourglass_ticket_events_total counter"
        );
        for ((src, o), v) in self
            .ticket_events
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
        {
            let _ = writeln!(
                out,
                "hourglass_ticket_events_total{{source=\"{}\",outcome=\"{o}\"}} {v}",
                label(src)
            );
        }
        let _ = writeln!(
            out,
            "# HELP hourglass_chat_requests_total Requests from chat apps, by app and outcome.\n# TYPE hourglass_chat_requests_total counter"
        );
        for ((chat, o), v) in self
            .chat_requests
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
        {
            let _ = writeln!(
                out,
                "hourglass_chat_requests_total{{chat=\"{}\",outcome=\"{o}\"}} {v}",
                label(chat)
            );
        }
        let _ = writeln!(
            out,
            "# HELP hourglass_ticket_poll_closed_total Tickets the poller found closed with access still bound.\n# TYPE hourglass_ticket_poll_closed_total counter\nhourglass_ticket_poll_closed_total {}",
            self.tickets_closed_by_poll.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP hourglass_ticket_poll_unavailable_total Ticket lookups by the poller that got no answer.\n# TYPE hourglass_ticket_poll_unavailable_total counter\nhourglass_ticket_poll_unavailable_total {}",
            self.ticket_poll_unavailable.load(Ordering::Relaxed)
        );
        out
    }

    /// The on-call sources' figures: reads by outcome, and each source's state now (`status`
    /// from [`crate::oncall::OnCallBoard::status`]).
    pub fn render_oncall(&self, status: &[(String, bool, bool)]) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "# HELP hourglass_oncall_reads_total Reads of on-call sources, by source and outcome.\n# TYPE hourglass_oncall_reads_total counter"
        );
        for ((src, o), v) in self
            .oncall_reads
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
        {
            let _ = writeln!(
                out,
                "hourglass_oncall_reads_total{{source=\"{}\",outcome=\"{o}\"}} {v}",
                label(src)
            );
        }
        let _ = writeln!(
            out,
            "# HELP hourglass_oncall_source_up 1 while an on-call source's last read succeeded.\n# TYPE hourglass_oncall_source_up gauge"
        );
        for (src, up, _) in status {
            let _ = writeln!(
                out,
                "hourglass_oncall_source_up{{source=\"{}\"}} {}",
                label(src),
                u8::from(*up)
            );
        }
        let _ = writeln!(
            out,
            "# HELP hourglass_oncall_answer_fresh 1 while an on-call source's last good answer is within its ttl (0: it puts nobody on call).\n# TYPE hourglass_oncall_answer_fresh gauge"
        );
        for (src, _, fresh) in status {
            let _ = writeln!(
                out,
                "hourglass_oncall_answer_fresh{{source=\"{}\"}} {}",
                label(src),
                u8::from(*fresh)
            );
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Debt per target: overdue from the store, leftovers as the last reconciliation of each
    /// checked target left them (a removed leftover is no debt; a later clean run clears it).
    #[test]
    fn revocation_debt_counts_what_the_last_reconciliation_could_not_remove() {
        use hourglass_core::engine::{Drift, DriftKind, ReconcileReport};
        let m = Metrics::default();
        let drift = |name: &str, removed: bool| Drift {
            target: "pg".into(),
            kind: DriftKind::Leftover,
            name: name.into(),
            grant_id: "grt_x".into(),
            ledger_state: None,
            removed,
            error: (!removed).then(|| "permission denied".to_owned()),
        };
        let report = ReconcileReport {
            targets_checked: vec!["pg".into(), "demo".into()],
            drift: vec![drift("hg_a", true), drift("hg_b", false)],
            errors: Vec::new(),
        };
        crate::workers::record_reconcile(&m, &report);
        let overdue: BTreeMap<String, u64> = [("demo".to_owned(), 2), ("pg".to_owned(), 0)].into();
        let text = m.render_debt(&overdue);
        assert!(
            text.contains("hourglass_revocation_debt{target=\"pg\",kind=\"leftover\"} 1"),
            "{text}"
        );
        assert!(text.contains("hourglass_revocation_debt{target=\"demo\",kind=\"overdue\"} 2"));
        assert!(text.contains("hourglass_revocation_debt{target=\"demo\",kind=\"leftover\"} 0"));
        let clean = ReconcileReport {
            targets_checked: vec!["pg".into()],
            ..ReconcileReport::default()
        };
        crate::workers::record_reconcile(&m, &clean);
        assert!(
            m.render_debt(&overdue)
                .contains("hourglass_revocation_debt{target=\"pg\",kind=\"leftover\"} 0")
        );
    }

    /// The alert rules and the dashboard operators install (`deploy/`) name only metrics this
    /// process exposes: a renamed metric fails here, not as an operator's alert that never
    /// fires.
    #[test]
    fn the_shipped_alerts_and_dashboard_name_only_real_metrics() {
        let m = Metrics::default();
        let mut text = m.render(GrantCounts::default(), &[], Default::default());
        text.push_str(&m.render_debt(&BTreeMap::new()));
        text.push_str(&m.render_oncall(&[]));
        let real: std::collections::BTreeSet<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix("# TYPE "))
            .filter_map(|l| l.split_whitespace().next())
            .collect();
        assert!(real.len() > 20, "{real:?}");
        for (file, body) in [
            (
                "alerts.yml",
                include_str!("../../../deploy/prometheus/alerts.yml"),
            ),
            (
                "hourglass-dashboard.json",
                include_str!("../../../deploy/grafana/hourglass-dashboard.json"),
            ),
        ] {
            let mut named = 0;
            for (i, _) in body.match_indices("hourglass_") {
                let name: String = body[i..]
                    .chars()
                    .take_while(|c| c.is_ascii_lowercase() || *c == '_')
                    .collect();
                let base = ["_bucket", "_sum", "_count"]
                    .iter()
                    .find_map(|s| name.strip_suffix(s))
                    .unwrap_or(&name);
                assert!(
                    real.contains(name.as_str()) || real.contains(base),
                    "{file} names {name}, which /metrics does not expose"
                );
                named += 1;
            }
            assert!(named > 5, "{file} names {named} metrics");
        }
    }

    #[test]
    fn label_values_are_escaped() {
        let m = Metrics::default();
        m.drift("we\"ird\\tar\nget", "standing");
        let text = m.render(GrantCounts::default(), &[], Default::default());
        assert!(
            text.contains(
                r#"hourglass_reconcile_drift_total{target="we\"ird\\tar\nget",kind="standing"} 1"#
            ),
            "{text}"
        );
        // Every sample is one line.
        assert!(
            text.lines()
                .all(|l| l.starts_with('#') || l.starts_with("hourglass_"))
        );
    }

    #[test]
    fn renders_counters_and_cumulative_buckets() {
        let m = Metrics::default();
        m.request("pending");
        m.request("pending");
        m.retry("revoke");
        m.revocation_lag(0.2);
        m.revocation_lag(3.0);
        m.notification("slack", "retry");
        m.notification("slack", "retry");
        m.ticket_poll(3, 1);
        let text = m.render(
            GrantCounts {
                active: 2,
                overdue: 1,
                ..GrantCounts::default()
            },
            &[NotifierStats {
                notifier: "slack".into(),
                pending: 4,
                dead: 1,
            }],
            Default::default(),
        );
        assert!(
            text.contains("hourglass_notifications_total{notifier=\"slack\",outcome=\"retry\"} 2")
        );
        assert!(text.contains("hourglass_notifications_queued{notifier=\"slack\"} 4"));
        assert!(text.contains("hourglass_notifications_dead{notifier=\"slack\"} 1"));
        assert!(text.contains("hourglass_ticket_poll_closed_total 3"));
        assert!(text.contains("hourglass_requests_total{outcome=\"pending\"} 2"));
        assert!(text.contains("hourglass_job_retries_total{action=\"revoke\"} 1"));
        assert!(text.contains("hourglass_revocation_lag_seconds_bucket{le=\"0.25\"} 1"));
        assert!(text.contains("hourglass_revocation_lag_seconds_bucket{le=\"5\"} 2"));
        assert!(text.contains("hourglass_revocations_overdue 1"));
        assert!(text.contains("hourglass_grants_active 2"));
    }
}
