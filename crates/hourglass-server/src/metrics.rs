//! Prometheus metrics, kept per server instance (one `prometheus-client` registry each, no
//! global one), so that several servers in one test process do not mix their figures. Every
//! label set is a type, and every label with a fixed set of values is an enum here, so a
//! misspelt outcome does not compile and a label value is escaped by the encoder, not by hand.
//!
//! Figures that describe stored state (grants by state, overdue revocations, queues, the
//! revocation debt) are read from the store at scrape time into a registry made for that
//! scrape ([`Stored`]), so they are right after a restart and on every replica.

use std::{
    collections::{BTreeMap, BTreeSet},
    fmt::Write as _,
    sync::{Mutex, PoisonError},
};

use hourglass_core::{
    engine::{AuthVia, DriftKind},
    job::JobAction,
    notify::NotifierStats,
    store::{GrantCounts, WriteStats},
};
use prometheus_client::{
    encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder, prometheus_text},
    metrics::{
        counter::{ConstCounter, Counter},
        family::Family,
        gauge::Gauge,
        histogram::Histogram,
    },
    registry::Registry,
};

/// The `Content-Type` of what [`Metrics::render`] writes (the Prometheus text format 0.0.4).
pub const CONTENT_TYPE: &str = prometheus_text::CONTENT_TYPE;

/// Upper bounds of the revocation-lag histogram, in seconds.
const LAG_BUCKETS: [f64; 12] = [
    0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0,
];

/// An enum whose values are label values, each written as the given text.
macro_rules! label_value {
    ($(#[$m:meta])* $name:ident { $($(#[$vm:meta])* $v:ident => $s:literal),+ $(,)? }) => {
        $(#[$m])*
        #[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, PartialOrd, Ord)]
        pub enum $name { $($(#[$vm])* $v),+ }
        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$v),+];
            pub const fn as_str(self) -> &'static str {
                match self { $($name::$v => $s),+ }
            }
        }
        impl EncodeLabelValue for $name {
            fn encode(&self, encoder: &mut LabelValueEncoder) -> std::fmt::Result {
                encoder.write_str(self.as_str())
            }
        }
    };
}

label_value!(
    /// What became of a request, an approval, an extension or a token exchange.
    RequestOutcome {
        Pending => "pending",
        /// Refused by policy or a quota.
        Refused => "refused",
        /// Bad input.
        Invalid => "invalid",
        AutoApproved => "auto_approved",
        BreakGlass => "break_glass",
        Approved => "approved",
        ApprovalRecorded => "approval_recorded",
        Denied => "denied",
        Cancelled => "cancelled",
        Extended => "extended",
        ExtensionPending => "extension_pending",
        Exchanged => "exchanged",
        ExchangeRefused => "exchange_refused",
        ExchangeThrottled => "exchange_throttled",
    }
);

label_value!(
    /// What was answered to a refused API key or bearer token.
    AuthOutcome {
        /// 401 (audited within the refusal budget).
        Refused => "refused",
        /// 429: the address is over its refusal budget this minute.
        Throttled => "throttled",
    }
);

label_value!(
    /// A job run's outcome.
    JobResult {
        Activated => "activated",
        Extended => "extended",
        Revoked => "revoked",
        Retry => "retry",
        Abandoned => "abandoned",
        Superseded => "superseded",
        Nothing => "nothing",
        /// The run failed unexpectedly; the job runs again when its lease runs out.
        Error => "error",
    }
);

label_value!(
    /// How a finished revocation was proven.
    Proof {
        /// The target, asked again, says the access is gone.
        Verified => "verified",
        /// The target cannot be asked.
        Unprovable => "unprovable",
    }
);

label_value!(
    /// A notification delivery's outcome.
    DeliveryOutcome {
        Sent => "sent",
        Retry => "retry",
        Dead => "dead",
        Dropped => "dropped",
        Lost => "lost",
    }
);

label_value!(
    /// A ticket event's outcome.
    TicketOutcome {
        Accepted => "accepted",
        Refused => "refused",
    }
);

label_value!(
    /// A chat app request's outcome.
    ChatOutcome {
        Accepted => "accepted",
        Repeat => "repeat",
        Refused => "refused",
        Invalid => "invalid",
    }
);

label_value!(
    /// A read of an on-call source.
    ReadOutcome {
        Ok => "ok",
        Failed => "failed",
    }
);

label_value!(
    /// Where revocation debt comes from.
    DebtKind {
        /// Due and not yet proven.
        Overdue => "overdue",
        /// Found by the last reconciliation and not removed.
        Leftover => "leftover",
    }
);

label_value!(
    /// A grant's stored state, as counted.
    GrantState {
        Provisioning => "provisioning",
        Active => "active",
        Revoking => "revoking",
    }
);

/// A job action as a label value (the core's own names).
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub struct Action(pub JobAction);

impl EncodeLabelValue for Action {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> std::fmt::Result {
        encoder.write_str(self.0.as_str())
    }
}

/// Where a key or token was refused, as a label value.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub struct Via(pub AuthVia);

impl EncodeLabelValue for Via {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> std::fmt::Result {
        encoder.write_str(self.0.as_str())
    }
}

/// A drift kind as a label value.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub struct Drift(pub DriftKind);

impl EncodeLabelValue for Drift {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> std::fmt::Result {
        encoder.write_str(match self.0 {
            DriftKind::Leftover => "leftover",
            DriftKind::Missing => "missing",
        })
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct WorkerLabels {
    worker: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    outcome: RequestOutcome,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AuthLabels {
    via: Via,
    outcome: AuthOutcome,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct JobLabels {
    action: Action,
    outcome: JobResult,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ActionLabels {
    action: Action,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ProofLabels {
    proof: Proof,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DriftLabels {
    target: String,
    kind: Drift,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct NotificationLabels {
    notifier: String,
    outcome: DeliveryOutcome,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TicketLabels {
    source: String,
    outcome: TicketOutcome,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ChatLabels {
    chat: String,
    outcome: ChatOutcome,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReadLabels {
    source: String,
    outcome: ReadOutcome,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabels {
    state: GrantState,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DebtLabels {
    target: String,
    kind: DebtKind,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct NotifierLabels {
    notifier: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SourceLabels {
    source: String,
}

/// What the store and the process hold at scrape time, read by the `/metrics` handler.
#[derive(Debug, Default)]
pub struct Stored {
    pub grants: GrantCounts,
    pub queues: Vec<NotifierStats>,
    pub writes: WriteStats,
    /// Overdue revocations per target, every configured target present (at zero when it owes
    /// nothing).
    pub overdue: BTreeMap<String, u64>,
    /// Each on-call source's state now: name, last read succeeded, answer within its ttl;
    /// empty when no source is configured.
    pub oncall: Vec<(String, bool, bool)>,
}

/// The server's metrics: counters and histograms kept as events happen.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    worker_restarts: Family<WorkerLabels, Counter>,
    requests: Family<RequestLabels, Counter>,
    auth_refusals: Family<AuthLabels, Counter>,
    jobs: Family<JobLabels, Counter>,
    retries: Family<ActionLabels, Counter>,
    proofs: Family<ProofLabels, Counter>,
    lag: Histogram,
    http_errors: Counter,
    drift: Family<DriftLabels, Counter>,
    reconcile_failures: Counter,
    notifications: Family<NotificationLabels, Counter>,
    tickets_closed_by_poll: Counter,
    ticket_poll_unavailable: Counter,
    ticket_events: Family<TicketLabels, Counter>,
    chat_requests: Family<ChatLabels, Counter>,
    oncall_reads: Family<ReadLabels, Counter>,
    policy_stale: Gauge,
    /// Leftovers the last reconciliation of each target found and could not remove (part of
    /// the revocation debt, written at scrape time with the overdue count).
    leftovers: Mutex<BTreeMap<String, u64>>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut m = Metrics {
            worker_restarts: Family::default(),
            requests: Family::default(),
            auth_refusals: Family::default(),
            jobs: Family::default(),
            retries: Family::default(),
            proofs: Family::default(),
            lag: Histogram::new(LAG_BUCKETS),
            http_errors: Counter::default(),
            drift: Family::default(),
            reconcile_failures: Counter::default(),
            notifications: Family::default(),
            tickets_closed_by_poll: Counter::default(),
            ticket_poll_unavailable: Counter::default(),
            ticket_events: Family::default(),
            chat_requests: Family::default(),
            oncall_reads: Family::default(),
            policy_stale: Gauge::default(),
            leftovers: Mutex::default(),
            registry: Registry::default(),
        };
        // Counters are registered without `_total`: the encoder adds it.
        let r = &mut m.registry;
        r.register(
            "hourglass_policy_stale",
            "1 while this process decides under a policy set other than the one the ledger records in force",
            m.policy_stale.clone(),
        );
        r.register(
            "hourglass_worker_restarts",
            "Workers started again after they stopped unasked",
            m.worker_restarts.clone(),
        );
        r.register(
            "hourglass_requests",
            "Requests, approvals, extensions and token exchanges by outcome",
            m.requests.clone(),
        );
        r.register(
            "hourglass_auth_refusals",
            "API keys and bearer tokens refused, by where they were presented and what was answered (401, or 429 once an address is over its refusal budget)",
            m.auth_refusals.clone(),
        );
        r.register(
            "hourglass_job_retries",
            "Connector calls that failed and were rescheduled",
            m.retries.clone(),
        );
        r.register(
            "hourglass_revocations",
            "Finished revocations by their proof: verified (the target asked again says the access is gone) or unprovable (the target cannot be asked)",
            m.proofs.clone(),
        );
        r.register(
            "hourglass_jobs",
            "Job runs by action and outcome",
            m.jobs.clone(),
        );
        r.register(
            "hourglass_revocation_lag_seconds",
            "From a revocation being due to its proof (the target confirming the access is gone)",
            m.lag.clone(),
        );
        r.register(
            "hourglass_http_server_errors",
            "Responses with status 5xx",
            m.http_errors.clone(),
        );
        r.register(
            "hourglass_reconcile_drift",
            "Differences between targets and the ledger found by the reconciler",
            m.drift.clone(),
        );
        r.register(
            "hourglass_reconcile_failures",
            "Targets the reconciler could not check",
            m.reconcile_failures.clone(),
        );
        r.register(
            "hourglass_notifications",
            "Notification deliveries by notifier and outcome",
            m.notifications.clone(),
        );
        r.register(
            "hourglass_ticket_events",
            "Ticket events received, by source and outcome",
            m.ticket_events.clone(),
        );
        r.register(
            "hourglass_chat_requests",
            "Requests from chat apps, by app and outcome",
            m.chat_requests.clone(),
        );
        r.register(
            "hourglass_ticket_poll_closed",
            "Tickets the poller found closed with access still bound",
            m.tickets_closed_by_poll.clone(),
        );
        r.register(
            "hourglass_ticket_poll_unavailable",
            "Ticket lookups by the poller that got no answer",
            m.ticket_poll_unavailable.clone(),
        );
        r.register(
            "hourglass_oncall_reads",
            "Reads of on-call sources, by source and outcome",
            m.oncall_reads.clone(),
        );
        // Series whose labels are all enums exist from the start, at zero.
        for &outcome in RequestOutcome::ALL {
            drop(m.requests.get_or_create(&RequestLabels { outcome }));
        }
        for via in [AuthVia::Api, AuthVia::Mcp, AuthVia::Scim] {
            for &outcome in AuthOutcome::ALL {
                drop(m.auth_refusals.get_or_create(&AuthLabels {
                    via: Via(via),
                    outcome,
                }));
            }
        }
        for &proof in Proof::ALL {
            drop(m.proofs.get_or_create(&ProofLabels { proof }));
        }
        for action in [JobAction::Provision, JobAction::Extend, JobAction::Revoke] {
            drop(m.retries.get_or_create(&ActionLabels {
                action: Action(action),
            }));
        }
        m
    }
}

/// A count as a gauge value (saturating; no count here comes near).
fn gauge_value(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

impl Metrics {
    /// Whether this process decides under a policy set other than the one in force.
    pub fn set_policy_stale(&self, stale: bool) {
        self.policy_stale.set(i64::from(stale));
    }

    pub fn policy_stale(&self) -> bool {
        self.policy_stale.get() != 0
    }

    /// A worker that stopped without being asked to, and was started again.
    pub fn worker_restart(&self, worker: &'static str) {
        self.worker_restarts
            .get_or_create(&WorkerLabels { worker })
            .inc();
    }

    /// What became of a request, an approval, an extension or an exchange.
    pub fn request(&self, outcome: RequestOutcome) {
        self.requests
            .get_or_create(&RequestLabels { outcome })
            .inc();
    }

    /// A refused API key or bearer token, and what was answered.
    pub fn auth_refused(&self, via: AuthVia, outcome: AuthOutcome) {
        self.auth_refusals
            .get_or_create(&AuthLabels {
                via: Via(via),
                outcome,
            })
            .inc();
    }

    /// A job run's outcome.
    pub fn job(&self, action: JobAction, outcome: JobResult) {
        self.jobs
            .get_or_create(&JobLabels {
                action: Action(action),
                outcome,
            })
            .inc();
    }

    /// A failed connector call that will be retried.
    pub fn retry(&self, action: JobAction) {
        self.retries
            .get_or_create(&ActionLabels {
                action: Action(action),
            })
            .inc();
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

    /// A finished revocation, by its proof.
    pub fn revocation_proof(&self, proof: Proof) {
        self.proofs.get_or_create(&ProofLabels { proof }).inc();
    }

    /// Time from a revocation being due to the target confirming it.
    pub fn revocation_lag(&self, seconds: f64) {
        self.lag.observe(seconds);
    }

    /// A difference the reconciler found in a target.
    pub fn drift(&self, target: &str, kind: DriftKind) {
        self.drift
            .get_or_create(&DriftLabels {
                target: target.to_owned(),
                kind: Drift(kind),
            })
            .inc();
    }

    /// A target the reconciler could not check.
    pub fn reconcile_failure(&self) {
        self.reconcile_failures.inc();
    }

    /// A notification delivery's outcome.
    pub fn notification(&self, notifier: &str, outcome: DeliveryOutcome) {
        self.notifications
            .get_or_create(&NotificationLabels {
                notifier: notifier.to_owned(),
                outcome,
            })
            .inc();
    }

    /// One ticket poll: tickets found closed, and tickets whose source did not answer.
    pub fn ticket_poll(&self, closed: usize, unavailable: usize) {
        self.tickets_closed_by_poll.inc_by(closed as u64);
        self.ticket_poll_unavailable.inc_by(unavailable as u64);
    }

    /// A ticket event received.
    pub fn ticket_event(&self, source: &str, outcome: TicketOutcome) {
        self.ticket_events
            .get_or_create(&TicketLabels {
                source: source.to_owned(),
                outcome,
            })
            .inc();
    }

    /// A request from a chat app.
    pub fn chat_request(&self, chat: &str, outcome: ChatOutcome) {
        self.chat_requests
            .get_or_create(&ChatLabels {
                chat: chat.to_owned(),
                outcome,
            })
            .inc();
    }

    /// A read of an on-call source.
    pub fn oncall_read(&self, source: &str, outcome: ReadOutcome) {
        self.oncall_reads
            .get_or_create(&ReadLabels {
                source: source.to_owned(),
                outcome,
            })
            .inc();
    }

    pub fn http_error(&self) {
        self.http_errors.inc();
    }

    /// The Prometheus text exposition: what this process counted, then `stored` (read at
    /// scrape time) in a registry made for this scrape.
    pub fn render(&self, stored: &Stored) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail, and every metric here encodes.
        let _ = prometheus_text::encode(&mut out, &self.registry);
        let _ = prometheus_text::encode(&mut out, &self.stored_registry(stored));
        out
    }

    fn stored_registry(&self, s: &Stored) -> Registry {
        let mut r = Registry::default();
        r.register(
            "hourglass_store_transactions",
            "Durable write transactions this process committed (group commit: each carries every write that was waiting)",
            ConstCounter::new(s.writes.transactions),
        );
        r.register(
            "hourglass_store_writes",
            "Writes (commits, claims, statements) those transactions carried",
            ConstCounter::new(s.writes.writes),
        );
        let grants = Family::<StateLabels, Gauge>::default();
        for (state, n) in [
            (GrantState::Provisioning, s.grants.provisioning),
            (GrantState::Active, s.grants.active),
            (GrantState::Revoking, s.grants.revoking),
        ] {
            grants
                .get_or_create(&StateLabels { state })
                .set(gauge_value(n));
        }
        r.register("hourglass_grants", "Grants by state, as stored", grants);
        let active = Gauge::<i64>::default();
        active.set(gauge_value(s.grants.active));
        r.register("hourglass_grants_active", "Active grants", active);
        let overdue = Gauge::<i64>::default();
        overdue.set(gauge_value(s.grants.overdue));
        r.register(
            "hourglass_revocations_overdue",
            "Grants whose revocation is overdue (due and not confirmed by the target)",
            overdue,
        );
        let queued = Family::<NotifierLabels, Gauge>::default();
        let dead = Family::<NotifierLabels, Gauge>::default();
        for q in &s.queues {
            let labels = NotifierLabels {
                notifier: q.notifier.clone(),
            };
            queued.get_or_create(&labels).set(gauge_value(q.pending));
            dead.get_or_create(&labels).set(gauge_value(q.dead));
        }
        r.register(
            "hourglass_notifications_queued",
            "Notifications waiting or being retried, by notifier (a dead notifier's queue grows)",
            queued,
        );
        r.register(
            "hourglass_notifications_dead",
            "Notifications given up after every retry, by notifier",
            dead,
        );
        let debt = Family::<DebtLabels, Gauge>::default();
        let leftovers = self.leftovers_by_target();
        let targets: BTreeSet<&String> = s.overdue.keys().chain(leftovers.keys()).collect();
        for t in targets {
            for (kind, n) in [
                (DebtKind::Overdue, s.overdue.get(t)),
                (DebtKind::Leftover, leftovers.get(t)),
            ] {
                debt.get_or_create(&DebtLabels {
                    target: t.clone(),
                    kind,
                })
                .set(gauge_value(n.copied().unwrap_or(0)));
            }
        }
        r.register(
            "hourglass_revocation_debt",
            "Revocation debt per target: overdue revocations (due, not yet proven) and leftovers the last reconciliation could not remove",
            debt,
        );
        if !s.oncall.is_empty() {
            let up = Family::<SourceLabels, Gauge>::default();
            let fresh = Family::<SourceLabels, Gauge>::default();
            for (source, is_up, is_fresh) in &s.oncall {
                let labels = SourceLabels {
                    source: source.clone(),
                };
                up.get_or_create(&labels).set(i64::from(*is_up));
                fresh.get_or_create(&labels).set(i64::from(*is_fresh));
            }
            r.register(
                "hourglass_oncall_source_up",
                "1 while an on-call source's last read succeeded",
                up,
            );
            r.register(
                "hourglass_oncall_answer_fresh",
                "1 while an on-call source's last good answer is within its ttl (0: it puts nobody on call)",
                fresh,
            );
        }
        r
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
        let stored = Stored {
            overdue: [("demo".to_owned(), 2), ("pg".to_owned(), 0)].into(),
            ..Stored::default()
        };
        let text = m.render(&stored);
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
            m.render(&stored)
                .contains("hourglass_revocation_debt{target=\"pg\",kind=\"leftover\"} 0")
        );
    }

    /// The alert rules and the dashboard operators install (`deploy/`) name only metrics this
    /// process exposes: a renamed metric fails here, not as an operator's alert that never
    /// fires.
    #[test]
    fn the_shipped_alerts_and_dashboard_name_only_real_metrics() {
        // Every metric with a sample: a family with none is not written at all.
        let m = Metrics::default();
        m.worker_restart("expiry");
        m.job(JobAction::Provision, JobResult::Activated);
        m.drift("pg", DriftKind::Missing);
        m.notification("slack", DeliveryOutcome::Sent);
        m.ticket_event("jira", TicketOutcome::Accepted);
        m.chat_request("slack", ChatOutcome::Accepted);
        m.oncall_read("pagerduty", ReadOutcome::Ok);
        let text = m.render(&Stored {
            overdue: [("pg".to_owned(), 0)].into(),
            queues: vec![NotifierStats {
                notifier: "slack".into(),
                pending: 0,
                dead: 0,
            }],
            oncall: vec![("pagerduty".into(), true, true)],
            ..Stored::default()
        });
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
        m.drift("we\"ird\\tar\nget", DriftKind::Leftover);
        m.notification("no\"ti\nfier", DeliveryOutcome::Sent);
        let text = m.render(&Stored {
            overdue: [("we\"ird".to_owned(), 1)].into(),
            ..Stored::default()
        });
        assert!(
            text.contains(
                r#"hourglass_reconcile_drift_total{target="we\"ird\\tar\nget",kind="leftover"} 1"#
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
        m.request(RequestOutcome::Pending);
        m.request(RequestOutcome::Pending);
        m.retry(JobAction::Revoke);
        m.job(JobAction::Revoke, JobResult::Retry);
        m.revocation_lag(0.2);
        m.revocation_lag(3.0);
        m.notification("slack", DeliveryOutcome::Retry);
        m.notification("slack", DeliveryOutcome::Retry);
        m.ticket_poll(3, 1);
        m.set_policy_stale(true);
        let text = m.render(&Stored {
            grants: GrantCounts {
                active: 2,
                overdue: 1,
                ..GrantCounts::default()
            },
            queues: vec![NotifierStats {
                notifier: "slack".into(),
                pending: 4,
                dead: 1,
            }],
            writes: WriteStats {
                transactions: 7,
                writes: 19,
            },
            ..Stored::default()
        });
        assert!(
            text.contains("hourglass_notifications_total{notifier=\"slack\",outcome=\"retry\"} 2")
        );
        assert!(text.contains("hourglass_notifications_queued{notifier=\"slack\"} 4"));
        assert!(text.contains("hourglass_notifications_dead{notifier=\"slack\"} 1"));
        assert!(text.contains("hourglass_ticket_poll_closed_total 3"));
        assert!(text.contains("hourglass_requests_total{outcome=\"pending\"} 2"));
        assert!(text.contains("hourglass_job_retries_total{action=\"revoke\"} 1"));
        assert!(text.contains("hourglass_jobs_total{action=\"revoke\",outcome=\"retry\"} 1"));
        assert!(text.contains("hourglass_revocation_lag_seconds_bucket{le=\"0.25\"} 1"));
        assert!(text.contains("hourglass_revocation_lag_seconds_bucket{le=\"5\"} 2"));
        // Series with only enum labels exist from the start, at zero, so rates work at once.
        assert!(text.contains("hourglass_requests_total{outcome=\"exchanged\"} 0"));
        assert!(text.contains("hourglass_revocations_total{proof=\"verified\"} 0"));
        assert!(text.contains("hourglass_revocation_lag_seconds_bucket{le=\"+Inf\"} 2"));
        assert!(text.contains("hourglass_revocation_lag_seconds_count 2"));
        assert!(text.contains("hourglass_policy_stale 1"));
        assert!(text.contains("hourglass_store_transactions_total 7"));
        assert!(text.contains("hourglass_store_writes_total 19"));
        assert!(text.contains("# TYPE hourglass_requests_total counter"));
        assert!(text.contains("hourglass_revocations_overdue 1"));
        assert!(text.contains("hourglass_grants_active 2"));
    }
}
