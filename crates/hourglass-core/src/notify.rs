//! Notifications: who hears about what. The engine turns the audit records of each commit into
//! [`Notification`]s for the notifiers whose routes ask for them, and the store writes them in
//! the same transaction (an outbox), so a notification exists exactly when its event does.
//! Workers deliver them later, apart from decisions and revocations: a notifier that is down
//! delays nobody's access and no revocation, and a failed delivery is retried with backoff a
//! bounded number of times, once per event (`dedup_key` is unique per notifier).

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::{GrantDuration, Timestamp, id::NotificationId, job::Lease};

/// What a notifier can be routed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum NotifyEvent {
    /// A request waits for human approval (to the approvers' channel).
    #[serde(rename = "request.pending")]
    RequestPending,
    /// To the requester.
    #[serde(rename = "request.approved")]
    RequestApproved,
    #[serde(rename = "request.denied")]
    RequestDenied,
    /// Withdrawn by the requester, an administrator, or a policy or ticket change.
    #[serde(rename = "request.cancelled")]
    RequestCancelled,
    /// Nobody decided before the deadline.
    #[serde(rename = "request.expired")]
    RequestExpired,
    /// A request still waits `remind_after` after it was made (wherever `request.pending`
    /// went).
    #[serde(rename = "request.reminder")]
    RequestReminder,
    /// A request still waits `escalate_after` after it was made (to the escalation's
    /// notifiers: a fallback channel, a pager).
    #[serde(rename = "request.escalated")]
    RequestEscalated,
    /// The access exists in the target now.
    #[serde(rename = "grant.active")]
    GrantActive,
    /// An active grant ends within the configured lead time.
    #[serde(rename = "grant.expiring")]
    GrantExpiring,
    /// The target confirmed the access is gone.
    #[serde(rename = "grant.revoked")]
    GrantRevoked,
    /// A revocation is still not confirmed by the target, long after it was due.
    #[serde(rename = "revocation.overdue")]
    RevocationOverdue,
    /// Access granted without approval (critical).
    #[serde(rename = "break_glass")]
    BreakGlass,
    /// Reconciliation found access that should not exist, or missing access.
    #[serde(rename = "drift")]
    Drift,
    /// An access review's items still wait for their reviewer (to the reviewer, where a person).
    #[serde(rename = "campaign.reminder")]
    CampaignReminder,
}

impl NotifyEvent {
    pub const ALL: [NotifyEvent; 14] = [
        NotifyEvent::RequestPending,
        NotifyEvent::RequestApproved,
        NotifyEvent::RequestDenied,
        NotifyEvent::RequestCancelled,
        NotifyEvent::RequestExpired,
        NotifyEvent::RequestReminder,
        NotifyEvent::RequestEscalated,
        NotifyEvent::GrantActive,
        NotifyEvent::GrantExpiring,
        NotifyEvent::GrantRevoked,
        NotifyEvent::RevocationOverdue,
        NotifyEvent::BreakGlass,
        NotifyEvent::Drift,
        NotifyEvent::CampaignReminder,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            NotifyEvent::RequestPending => "request.pending",
            NotifyEvent::RequestApproved => "request.approved",
            NotifyEvent::RequestDenied => "request.denied",
            NotifyEvent::RequestCancelled => "request.cancelled",
            NotifyEvent::RequestExpired => "request.expired",
            NotifyEvent::RequestReminder => "request.reminder",
            NotifyEvent::RequestEscalated => "request.escalated",
            NotifyEvent::GrantActive => "grant.active",
            NotifyEvent::GrantExpiring => "grant.expiring",
            NotifyEvent::GrantRevoked => "grant.revoked",
            NotifyEvent::RevocationOverdue => "revocation.overdue",
            NotifyEvent::BreakGlass => "break_glass",
            NotifyEvent::Drift => "drift",
            NotifyEvent::CampaignReminder => "campaign.reminder",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|e| e.as_str() == s)
    }

    pub fn severity(self) -> Severity {
        match self {
            NotifyEvent::BreakGlass | NotifyEvent::RevocationOverdue => Severity::Critical,
            NotifyEvent::Drift
            | NotifyEvent::GrantExpiring
            | NotifyEvent::RequestDenied
            | NotifyEvent::RequestExpired
            | NotifyEvent::RequestEscalated => Severity::Warning,
            NotifyEvent::RequestPending
            | NotifyEvent::RequestReminder
            | NotifyEvent::CampaignReminder
            | NotifyEvent::RequestApproved
            | NotifyEvent::RequestCancelled
            | NotifyEvent::GrantActive
            | NotifyEvent::GrantRevoked => Severity::Info,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Info,
    Warning,
    Critical,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Critical => "critical",
        }
    }
}

/// What every notifier renders: one event, in plain words and in fields. Never a secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    pub event: NotifyEvent,
    pub severity: Severity,
    /// One line (`alice asks for demo/db-read for 30m`).
    pub title: String,
    /// When the event happened.
    pub at: Timestamp,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grant_id: Option<String>,
    /// Whose access it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub principal: Option<String>,
    /// The entitlement or profile.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// How long the access was asked for (`1h`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ticket: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<Timestamp>,
    /// The approval page of a pending request. It identifies the request and grants nothing:
    /// the page asks the approver to sign in and confirm.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link: Option<String>,
    /// Further facts from the audit record (drift kind, target…).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub details: Vec<(String, String)>,
}

/// A message queued for one notifier.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notification {
    pub id: NotificationId,
    pub notifier: String,
    /// One per event and notifier: the same event is never queued (or sent) twice.
    pub dedup_key: String,
    pub message: Message,
    /// Not before (an expiry warning waits for its moment).
    pub run_at: Timestamp,
    /// Failed deliveries so far.
    pub attempts: u32,
    pub last_error: Option<String>,
    pub created_at: Timestamp,
    pub lease: Option<Lease>,
    /// What the destination answered when it took the message (a Slack message's channel and
    /// `ts`), so that later messages about the same request can refer to it.
    pub receipt: Option<String>,
}

/// How a claimed notification ends (or waits).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Settle {
    /// Delivered; the destination's receipt, if it gave one.
    Sent { receipt: Option<String> },
    /// Failed; try again at `run_at`.
    Retry { run_at: Timestamp, error: String },
    /// Failed too often: given up, counted, logged, kept for inspection.
    Dead { error: String },
    /// No longer true when its moment came (the grant was extended, or already revoked).
    Dropped { why: String },
}

/// Queue figures for one notifier (for metrics).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NotifierStats {
    pub notifier: String,
    /// Waiting or being retried.
    pub pending: u64,
    /// Given up.
    pub dead: u64,
}

/// A destination (a Slack channel, a webhook receiver, mail recipients).
#[async_trait]
pub trait Notifier: Send + Sync {
    fn name(&self) -> &str;
    /// Delivers one message; an error is retried later. Must return within its own timeout.
    /// `id` is the same on every attempt (receivers may de-duplicate on it). `earlier` holds
    /// the receipts this notifier gave for the request's `request.pending` and
    /// `request.escalated` messages, oldest first, when this message is about the same request
    /// (a chat updates those messages in place, a pager resolves its incident). Answers its
    /// own receipt, if the destination gives one. The error text is logged and kept with the
    /// notification: never put a secret in it.
    async fn send(
        &self,
        id: &str,
        message: &Message,
        earlier: &[String],
    ) -> Result<Option<String>, String>;
}

/// Which events go to a notifier.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub notifier: String,
    pub events: Vec<NotifyEvent>,
    /// Only events about these entitlements or profiles (a trailing `*` matches a prefix);
    /// empty means all.
    pub access: Vec<String>,
}

impl Route {
    /// Whether this route takes `event` about `access`. A reminder goes wherever the request's
    /// `request.pending` went: it brings the request back to the same approvers.
    pub fn wants(&self, event: NotifyEvent, access: Option<&str>) -> bool {
        let listed = self.events.contains(&event)
            || (event == NotifyEvent::RequestReminder
                && self.events.contains(&NotifyEvent::RequestPending));
        listed
            && (self.access.is_empty() || access.is_some_and(|a| access_matches(&self.access, a)))
    }
}

/// What happens to a request nobody decides (`[[escalation]]`): a reminder to its approvers
/// after `remind_after`, and after `escalate_after` a message to `to` (a fallback channel, a
/// pager). Both are dropped if the request is decided first, and neither is sent at or after
/// the request's deadline (it expires then, and its requester is told).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Escalation {
    /// Entitlements or profiles (a trailing `*` matches a prefix); empty means all.
    pub access: Vec<String>,
    pub remind_after: Option<GrantDuration>,
    pub escalate_after: Option<GrantDuration>,
    /// Notifiers (by name) the escalation goes to, whatever their routes say.
    pub to: Vec<String>,
}

impl Escalation {
    /// Whether this rule covers `access`.
    pub fn covers(&self, access: &str) -> bool {
        self.access.is_empty() || access_matches(&self.access, access)
    }
}

/// Whether `access` (an entitlement or profile name) is one of `patterns`, where a trailing `*`
/// matches a prefix (`prod/*`).
pub fn access_matches(patterns: &[String], access: &str) -> bool {
    patterns.iter().any(|p| match p.strip_suffix('*') {
        Some(prefix) => access.starts_with(prefix),
        None => access == p,
    })
}

/// Notification settings, from configuration.
#[derive(Debug, Clone)]
pub struct NotifySettings {
    pub routes: Vec<Route>,
    /// Reminders and escalations of undecided requests; the first rule that covers a
    /// request's access applies.
    pub escalations: Vec<Escalation>,
    /// How long before its end an active grant's holder is warned.
    pub expiry_warning: GrantDuration,
    /// A revocation not confirmed this long after it was due is overdue.
    pub overdue_after: GrantDuration,
    /// The server's address as people reach it (`https://hourglass.example.com`), for links.
    pub public_url: Option<String>,
    /// Deliveries tried before a notification is given up.
    pub max_attempts: u32,
    pub backoff: crate::backoff::Backoff,
}

impl Default for NotifySettings {
    fn default() -> Self {
        NotifySettings {
            routes: Vec::new(),
            escalations: Vec::new(),
            expiry_warning: GrantDuration::from_secs(10 * 60),
            overdue_after: GrantDuration::from_secs(60),
            public_url: None,
            max_attempts: 8,
            backoff: crate::backoff::Backoff {
                base_ms: 30_000,
                cap_ms: 30 * 60_000,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_names_round_trip_and_match_serde() {
        for e in NotifyEvent::ALL {
            assert_eq!(NotifyEvent::parse(e.as_str()), Some(e));
            let json = serde_json::to_string(&e).unwrap_or_default();
            assert_eq!(json, format!("\"{}\"", e.as_str()));
        }
        assert_eq!(NotifyEvent::parse("grant.gone"), None);
    }

    #[test]
    fn routes_filter_by_event_and_access() {
        let r = Route {
            notifier: "ops".into(),
            events: vec![NotifyEvent::RequestPending],
            access: vec!["prod/*".into(), "demo/db-read".into()],
        };
        assert!(r.wants(NotifyEvent::RequestPending, Some("prod/db-admin")));
        assert!(r.wants(NotifyEvent::RequestPending, Some("demo/db-read")));
        assert!(!r.wants(NotifyEvent::RequestPending, Some("demo/db-write")));
        assert!(!r.wants(NotifyEvent::RequestPending, None));
        assert!(!r.wants(NotifyEvent::GrantActive, Some("prod/db-admin")));
        let all = Route {
            access: Vec::new(),
            ..r
        };
        assert!(all.wants(NotifyEvent::RequestPending, None));
    }

    #[test]
    fn a_reminder_follows_the_pending_request_and_nothing_else() {
        let pending = Route {
            notifier: "approvers".into(),
            events: vec![NotifyEvent::RequestPending],
            access: vec!["prod/*".into()],
        };
        assert!(pending.wants(NotifyEvent::RequestReminder, Some("prod/db")));
        assert!(!pending.wants(NotifyEvent::RequestReminder, Some("demo/db")));
        assert!(!pending.wants(NotifyEvent::RequestEscalated, Some("prod/db")));
        let grants = Route {
            events: vec![NotifyEvent::GrantActive],
            ..pending
        };
        assert!(!grants.wants(NotifyEvent::RequestReminder, Some("prod/db")));
        let rule = Escalation {
            access: vec!["prod/*".into()],
            remind_after: None,
            escalate_after: None,
            to: Vec::new(),
        };
        assert!(rule.covers("prod/db") && !rule.covers("demo/db"));
        assert!(
            Escalation {
                access: Vec::new(),
                ..rule
            }
            .covers("demo/db")
        );
    }
}
