//! Notifications from commits, and their delivery.
//!
//! [`Engine::route`] runs on every commit: each audit record that people should hear about
//! becomes a [`Message`], queued for each notifier whose route wants it, in the same commit (so a
//! notification exists exactly when its event does). Two are scheduled for later and checked when
//! their moment comes: the expiry warning (dropped if the grant ended or was extended) and the
//! overdue revocation (dropped if the target confirmed in time).
//!
//! Delivery ([`Engine::deliver`]) runs in its own worker, never on a request or a revocation:
//! a dead notifier only grows its queue. Failures are retried with backoff up to
//! `max_attempts`, then the notification is given up (dead), counted and logged.

use tracing::{error, warn};

use crate::event::EventKind;

use super::Engine;
use crate::{
    GrantDuration, Result, Timestamp,
    audit::AuditRecord,
    grant::{Grant, GrantState},
    id::NotificationId,
    notify::{Escalation, Message, Notification, NotifyEvent, Settle},
    request::{Request, RequestState},
    store::Commit,
};

/// What became of one delivery attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    Sent,
    /// Failed; tried again later.
    Retry {
        attempt: u32,
        error: String,
    },
    /// Failed for the last time.
    Dead {
        attempts: u32,
        error: String,
    },
    /// No longer true; not sent.
    Dropped {
        why: String,
    },
    /// Our lease was lost (another worker took it over).
    Lost,
}

/// One delivery, for metrics and logs.
#[derive(Debug, Clone)]
pub struct DeliveryReport {
    pub id: NotificationId,
    pub notifier: String,
    pub event: NotifyEvent,
    pub outcome: Delivery,
}

fn detail<'a>(ev: &'a AuditRecord, key: &str) -> Option<&'a str> {
    ev.details
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

fn base(event: NotifyEvent, title: String, at: Timestamp) -> Message {
    Message {
        event,
        severity: event.severity(),
        title,
        at,
        request_id: None,
        grant_id: None,
        principal: None,
        access: None,
        reason: None,
        duration: None,
        ticket: None,
        expires_at: None,
        link: None,
        details: Vec::new(),
    }
}

/// A message planned from a commit: when it is due, its de-duplication key, and the notifiers
/// it goes to besides those whose routes want it.
struct Planned {
    message: Message,
    run_at: Timestamp,
    key: String,
    also: Vec<String>,
}

impl Planned {
    fn now(message: Message, run_at: Timestamp, key: String) -> Self {
        Planned {
            message,
            run_at,
            key,
            also: Vec::new(),
        }
    }
}

fn about_request(mut m: Message, r: &Request) -> Message {
    m.request_id = Some(r.id.to_string());
    m.principal = Some(r.requester.to_string());
    m.access = Some(r.access.to_string());
    m.reason = Some(r.reason.clone());
    m.duration = Some(r.duration.to_string());
    m.ticket.clone_from(&r.ticket);
    m
}

fn about_grant(mut m: Message, g: &Grant) -> Message {
    m.grant_id = Some(g.id.to_string());
    m.request_id = Some(g.request_id.to_string());
    m.principal = Some(g.principal.to_string());
    m.access = Some(g.entitlement.to_string());
    m.expires_at = Some(g.expires_at);
    m
}

impl Engine {
    /// The escalation rule for requests of `access`: the first that covers it.
    fn escalation_for(&self, access: &str) -> Option<&Escalation> {
        self.settings
            .notify
            .escalations
            .iter()
            .find(|e| e.covers(access))
    }

    /// The notifiers an escalation of `r` went to, when it was due by `at` (so that they hear
    /// how the request ended: a chat updates its message, a pager resolves its incident).
    fn escalated_to(&self, r: &Request, at: Timestamp) -> Vec<String> {
        self.escalation_for(r.access.name())
            .and_then(|e| {
                let due = r.created_at.plus(e.escalate_after?);
                (due <= at && due < r.decide_by).then(|| e.to.clone())
            })
            .unwrap_or_default()
    }

    /// The reminder and the escalation of a request that now waits for approval, each at its
    /// moment if that comes before the request's deadline.
    fn chasers(&self, r: &Request, at: Timestamp) -> Vec<Planned> {
        let Some(rule) = self.escalation_for(r.access.name()) else {
            return Vec::new();
        };
        let link = self
            .settings
            .notify
            .public_url
            .as_deref()
            .map(|u| format!("{}/approve/{}", u.trim_end_matches('/'), r.id));
        let mut out = Vec::new();
        let mut chase =
            |event: NotifyEvent, after: GrantDuration, title: String, to: Vec<String>| {
                let when = at.plus(after);
                if when >= r.decide_by {
                    return;
                }
                let mut m = about_request(base(event, title, at), r);
                m.link.clone_from(&link);
                m.expires_at = Some(r.decide_by);
                m.details.push(("waiting".into(), after.to_string()));
                out.push(Planned {
                    key: format!("{}:{}", event.as_str(), r.id),
                    message: m,
                    run_at: when,
                    also: to,
                });
            };
        if let Some(after) = rule.remind_after {
            chase(
                NotifyEvent::RequestReminder,
                after,
                format!(
                    "Reminder: {} has waited {after} for a decision on {} for {}",
                    r.who(),
                    r.access,
                    r.duration
                ),
                Vec::new(),
            );
        }
        if let Some(after) = rule.escalate_after {
            chase(
                NotifyEvent::RequestEscalated,
                after,
                format!(
                    "Escalated: the request of {} for {} for {} has waited {after} and nobody has decided",
                    r.who(),
                    r.access,
                    r.duration
                ),
                rule.to.clone(),
            );
        }
        out
    }

    /// The messages that the audit records of `commit` call for, with when each is due and
    /// its de-duplication key.
    fn messages_of(&self, commit: &Commit) -> Vec<Planned> {
        let s = &self.settings.notify;
        let request = |id: &str| commit.requests.iter().rev().find(|r| r.id.as_str() == id);
        let grant = |id: &str| commit.grants.iter().rev().find(|g| g.id.as_str() == id);
        let mut out = Vec::new();
        for ev in &commit.audit {
            let at = ev.at;
            let sub = ev.subject.as_str();
            let Some(kind) = ev.kind() else { continue };
            match kind {
                EventKind::RequestCreated => {
                    if let Some(r) = request(sub).filter(|r| r.state == RequestState::Pending) {
                        let title = format!(
                            "{} asks for {} for {}: approval needed",
                            r.who(),
                            r.access,
                            r.duration
                        );
                        let mut m = about_request(base(NotifyEvent::RequestPending, title, at), r);
                        m.link = s
                            .public_url
                            .as_deref()
                            .map(|u| format!("{}/approve/{}", u.trim_end_matches('/'), r.id));
                        m.expires_at = Some(r.decide_by);
                        out.push(Planned::now(m, at, format!("request.pending:{sub}")));
                        out.extend(self.chasers(r, at));
                    }
                }
                EventKind::RequestApproved => {
                    if let Some(r) = request(sub) {
                        let title = format!(
                            "{}'s request for {} was approved by {}",
                            r.requester, r.access, ev.actor
                        );
                        let mut m = about_request(base(NotifyEvent::RequestApproved, title, at), r);
                        m.details.push(("by".into(), ev.actor.clone()));
                        out.push(Planned {
                            also: self.escalated_to(r, at),
                            ..Planned::now(m, at, format!("request.approved:{sub}"))
                        });
                    }
                }
                EventKind::RequestDenied => {
                    if let Some(r) = request(sub) {
                        let title = format!(
                            "{}'s request for {} was denied by {}",
                            r.requester, r.access, ev.actor
                        );
                        let mut m = about_request(base(NotifyEvent::RequestDenied, title, at), r);
                        m.details
                            .push(("why".into(), r.state_reason.clone().unwrap_or_default()));
                        m.details.push(("by".into(), ev.actor.clone()));
                        out.push(Planned {
                            also: self.escalated_to(r, at),
                            ..Planned::now(m, at, format!("request.denied:{sub}"))
                        });
                    }
                }
                EventKind::RequestCancelled => {
                    if let Some(r) = request(sub) {
                        let title = format!(
                            "{}'s request for {} was cancelled by {}",
                            r.requester, r.access, ev.actor
                        );
                        let mut m =
                            about_request(base(NotifyEvent::RequestCancelled, title, at), r);
                        if let Some(why) = r.state_reason.clone() {
                            m.details.push(("why".into(), why));
                        }
                        m.details.push(("by".into(), ev.actor.clone()));
                        out.push(Planned {
                            also: self.escalated_to(r, at),
                            ..Planned::now(m, at, format!("request.cancelled:{sub}"))
                        });
                    }
                }
                EventKind::RequestExpired => {
                    if let Some(r) = request(sub) {
                        let title = format!(
                            "{}'s request for {} expired: nobody decided by {}",
                            r.requester, r.access, r.decide_by
                        );
                        let m = about_request(base(NotifyEvent::RequestExpired, title, at), r);
                        out.push(Planned {
                            also: self.escalated_to(r, at),
                            ..Planned::now(m, at, format!("request.expired:{sub}"))
                        });
                    }
                }
                EventKind::GrantActivated => {
                    if let Some(g) = grant(sub) {
                        let title = format!(
                            "{} now holds {} until {}",
                            g.principal, g.entitlement, g.expires_at
                        );
                        let m = about_grant(base(NotifyEvent::GrantActive, title, at), g);
                        out.push(Planned::now(m, at, format!("grant.active:{sub}")));
                        out.extend(self.expiry_warning(g));
                    }
                }
                EventKind::GrantExtended | EventKind::GrantEndRestored => {
                    if let Some(g) = grant(sub) {
                        out.extend(self.expiry_warning(g));
                    }
                }
                EventKind::GrantExpired | EventKind::GrantRevokeRequested => {
                    if let Some(g) = grant(sub) {
                        let due = g.revoke_due_at.unwrap_or(at);
                        let title = format!(
                            "the revocation of {} ({} for {}) is overdue: the target has not confirmed it",
                            g.id, g.entitlement, g.principal
                        );
                        let m = about_grant(base(NotifyEvent::RevocationOverdue, title, at), g);
                        out.push(Planned::now(
                            m,
                            due.plus(s.overdue_after),
                            format!("revocation.overdue:{sub}"),
                        ));
                    }
                }
                EventKind::GrantRevoked => {
                    if let Some(g) = grant(sub) {
                        let why = g.end_reason.clone().unwrap_or_else(|| "revoked".into());
                        let title = format!(
                            "{}'s access to {} is revoked ({why})",
                            g.principal, g.entitlement
                        );
                        let mut m = about_grant(base(NotifyEvent::GrantRevoked, title, at), g);
                        m.reason = Some(why);
                        out.push(Planned::now(m, at, format!("grant.revoked:{sub}")));
                    }
                }
                EventKind::BreakGlassActivated => {
                    if let Some(r) = request(sub) {
                        let title = format!(
                            "BREAK-GLASS: {} took {} for {} without approval; a review is open",
                            r.requester, r.access, r.duration
                        );
                        let mut m = about_request(base(NotifyEvent::BreakGlass, title, at), r);
                        m.grant_id = detail(ev, "grant").map(str::to_owned);
                        if let Some(review) = detail(ev, "review") {
                            m.details.push(("review".into(), review.to_owned()));
                        }
                        out.push(Planned::now(m, at, format!("break_glass:{sub}")));
                    }
                }
                EventKind::ReconcileDrift => {
                    let kind = detail(ev, "kind").unwrap_or("drift");
                    let target = detail(ev, "target").unwrap_or("?");
                    let name = detail(ev, "name").unwrap_or("?");
                    let title = format!("drift in {target}: {kind} access {name} ({sub})");
                    let mut m = base(NotifyEvent::Drift, title, at);
                    m.grant_id = Some(sub.to_owned());
                    m.details.clone_from(&ev.details);
                    out.push(Planned::now(m, at, format!("drift:{target}:{name}:{kind}")));
                }
                EventKind::CampaignReminded => {
                    let reviewer = detail(ev, "reviewer").unwrap_or("administrators");
                    let title = format!(
                        "access review {sub}: {} items wait for {reviewer}'s decision by {}",
                        detail(ev, "undecided").unwrap_or("?"),
                        detail(ev, "deadline").unwrap_or("?"),
                    );
                    let mut m = base(NotifyEvent::CampaignReminder, title, at);
                    // A person hears directly; a group or the administrators, wherever
                    // reminders are routed.
                    m.principal = reviewer.strip_prefix("person:").map(str::to_owned);
                    m.link = s
                        .public_url
                        .as_deref()
                        .map(|u| format!("{}/reviews/{sub}", u.trim_end_matches('/')));
                    m.details.clone_from(&ev.details);
                    out.push(Planned::now(
                        m,
                        at,
                        format!("campaign.reminder:{sub}:{reviewer}"),
                    ));
                }
                // Nobody is told of these (the audit log and metrics are where they show).
                EventKind::AuditArchived
                | EventKind::StoreRestored
                | EventKind::CampaignStarted
                | EventKind::CampaignItemDecided
                | EventKind::CampaignClosed
                | EventKind::EligibilityAdded
                | EventKind::EligibilityRemoved
                | EventKind::StandingRemoved
                | EventKind::StandingRemoveFailed
                | EventKind::RequestRefused
                | EventKind::ApprovalRecorded
                | EventKind::RequestFulfilled
                | EventKind::RequestFailed
                | EventKind::GrantCreated
                | EventKind::GrantFailed
                | EventKind::GrantExtensionApplied
                | EventKind::GrantProvisionFailed
                | EventKind::GrantExtendFailed
                | EventKind::GrantRevokeFailed
                | EventKind::ReviewOpened
                | EventKind::ReviewClosed
                | EventKind::ReconcileRemoveFailed
                | EventKind::PolicyReloaded
                | EventKind::TicketReported
                | EventKind::TicketClosed
                | EventKind::TicketReopened
                | EventKind::TokenExchanged
                | EventKind::TokenIssued
                | EventKind::GrantRevocationVerified
                | EventKind::CredentialHandedOver
                | EventKind::TokenRefused
                | EventKind::AuthRefused
                | EventKind::ExchangeRefused
                | EventKind::SessionStarted
                | EventKind::SessionRefused
                | EventKind::SessionEnded
                | EventKind::IdentityCreated
                | EventKind::IdentityDeclared
                | EventKind::IdentityUpdated
                | EventKind::IdentitySuspended
                | EventKind::IdentityResumed
                | EventKind::IdentityOffboarded
                | EventKind::DirectoryUserCreated
                | EventKind::DirectoryUserUpdated
                | EventKind::DirectoryUserDeactivated
                | EventKind::DirectoryUserReactivated
                | EventKind::DirectoryUserDeleted
                | EventKind::DirectoryGroupCreated
                | EventKind::DirectoryGroupUpdated
                | EventKind::DirectoryGroupDeleted
                | EventKind::IdentitySignInBound
                | EventKind::IdentitySignInUnbound
                | EventKind::KeyCreated
                | EventKind::KeyDeclared
                | EventKind::KeyRotated
                | EventKind::KeyRevoked
                | EventKind::AuditRefusalsSuppressed
                | EventKind::AgentToolCalled => {}
            }
        }
        out
    }

    /// The warning before `g` ends, if its moment is still ahead.
    fn expiry_warning(&self, g: &Grant) -> Option<Planned> {
        let lead = self.settings.notify.expiry_warning;
        let when = g.expires_at.plus_millis(-lead.as_millis());
        let started = g.activated_at.unwrap_or(g.starts_at);
        if lead.as_millis() == 0 || when <= started {
            return None;
        }
        let title = format!(
            "{}'s access to {} ends at {} (in {lead})",
            g.principal, g.entitlement, g.expires_at
        );
        let m = about_grant(base(NotifyEvent::GrantExpiring, title, started), g);
        Some(Planned::now(
            m,
            when,
            format!("grant.expiring:{}:{}", g.id, g.expires_at.unix_millis()),
        ))
    }

    /// Adds to `commit` the notifications its audit records call for. A failure to build one
    /// (no id) is logged and skipped: notification never blocks a state change.
    pub(super) fn route(&self, commit: &mut Commit) {
        let routes = &self.settings.notify.routes;
        let escalates = self
            .settings
            .notify
            .escalations
            .iter()
            .any(|e| !e.to.is_empty());
        if (routes.is_empty() && !escalates) || commit.audit.is_empty() {
            return;
        }
        let now = self.clock.now();
        for planned in self.messages_of(commit) {
            let Planned {
                message,
                run_at,
                key,
                also,
            } = planned;
            let mut to: Vec<&str> = routes
                .iter()
                .filter(|r| r.wants(message.event, message.access.as_deref()))
                .map(|r| r.notifier.as_str())
                .collect();
            for n in &also {
                if !to.contains(&n.as_str()) {
                    to.push(n);
                }
            }
            for notifier in to {
                let id = match NotificationId::generate(now) {
                    Ok(id) => id,
                    Err(e) => {
                        error!(error = %e, "notification skipped: no id");
                        continue;
                    }
                };
                commit.notifications.push(Notification {
                    id,
                    notifier: notifier.to_owned(),
                    dedup_key: key.clone(),
                    message: message.clone(),
                    run_at,
                    attempts: 0,
                    last_error: None,
                    created_at: now,
                    lease: None,
                    receipt: None,
                });
            }
        }
    }

    /// Leases up to `limit` due notifications for this worker.
    pub async fn claim_notifications(&self, limit: u32) -> Result<Vec<Notification>> {
        let now = self.clock.now();
        self.store
            .claim_notifications(
                now,
                &self.settings.worker_id,
                now.plus_millis(self.settings.lease_ms),
                limit,
            )
            .await
    }

    /// When the next notification becomes due.
    pub async fn next_notification_at(&self) -> Result<Option<Timestamp>> {
        self.store.next_notification_at().await
    }

    /// Why a scheduled notification should no longer be sent, if so.
    async fn stale(&self, n: &Notification) -> Result<Option<String>> {
        let m = &n.message;
        if matches!(
            m.event,
            NotifyEvent::RequestReminder | NotifyEvent::RequestEscalated
        ) && let Some(rid) = m.request_id.as_deref()
        {
            // A store that does not answer is no reason to drop the message: the error
            // leaves it leased, and it is delivered when the lease runs out.
            return Ok(match self.load_request(rid).await {
                Ok(r) if r.state == RequestState::Pending => None,
                Ok(r) => Some(format!("request {rid} is {}", r.state.as_str())),
                Err(crate::Error::NotFound { .. }) => Some(format!("request {rid} is gone")),
                Err(e) => return Err(e),
            });
        }
        let Some(gid) = m.grant_id.as_deref() else {
            return Ok(None);
        };
        let grant = match m.event {
            NotifyEvent::GrantExpiring | NotifyEvent::RevocationOverdue => {
                match self.load_grant(gid).await {
                    Ok(g) => g,
                    Err(_) => return Ok(Some(format!("grant {gid} is gone"))),
                }
            }
            _ => return Ok(None),
        };
        Ok(match m.event {
            NotifyEvent::GrantExpiring if grant.state != GrantState::Active => {
                Some(format!("grant {gid} is {}", grant.state.as_str()))
            }
            NotifyEvent::GrantExpiring if Some(grant.expires_at) != m.expires_at => {
                Some(format!("grant {gid} now ends at {}", grant.expires_at))
            }
            NotifyEvent::RevocationOverdue if grant.state != GrantState::Revoking => {
                Some(format!("grant {gid} is {}", grant.state.as_str()))
            }
            _ => None,
        })
    }

    /// The receipts this notification's notifier gave for the `request.pending` and
    /// `request.escalated` messages of the same request, oldest first (chat messages to update
    /// in place, an incident to resolve).
    async fn earlier(&self, n: &Notification) -> Vec<String> {
        if n.message.event == NotifyEvent::RequestPending || n.message.grant_id.is_some() {
            return Vec::new();
        }
        let Some(request) = n.message.request_id.as_deref() else {
            return Vec::new();
        };
        match self.store.notifications_about(request).await {
            Ok(mut all) => {
                // The request's first post first (a pending and an escalated message are
                // queued in the same commit, at the same moment).
                all.sort_by_key(|e| (e.message.event != NotifyEvent::RequestPending, e.created_at));
                all.into_iter()
                    .filter(|e| {
                        e.notifier == n.notifier
                            && e.id != n.id
                            && matches!(
                                e.message.event,
                                NotifyEvent::RequestPending | NotifyEvent::RequestEscalated
                            )
                    })
                    .filter_map(|e| e.receipt)
                    .collect()
            }
            Err(e) => {
                warn!(error = %e, "the earlier messages of a request could not be read");
                Vec::new()
            }
        }
    }

    /// Delivers one claimed notification and records the outcome under our lease.
    pub async fn deliver(&self, n: Notification) -> Result<DeliveryReport> {
        let s = &self.settings.notify;
        let token = n
            .lease
            .as_ref()
            .map(|l| l.token.clone())
            .unwrap_or_default();
        let settle = match self.stale(&n).await? {
            Some(why) => Settle::Dropped { why },
            None => match self.notifiers.get(&n.notifier) {
                None => Settle::Dead {
                    error: format!("notifier {} is no longer configured", n.notifier),
                },
                Some(notifier) => match notifier
                    .send(n.id.as_str(), &n.message, &self.earlier(&n).await)
                    .await
                {
                    Ok(receipt) => Settle::Sent { receipt },
                    Err(e) if n.attempts + 1 >= s.max_attempts => Settle::Dead { error: e },
                    Err(e) => Settle::Retry {
                        run_at: self.clock.now().plus_millis(
                            i64::try_from(s.backoff.delay_ms_random(n.attempts + 1))
                                .unwrap_or(i64::MAX),
                        ),
                        error: e,
                    },
                },
            },
        };
        let kept = self
            .store
            .settle_notification(&n.id, &token, &settle, self.clock.now())
            .await?;
        let outcome = match settle {
            _ if !kept => Delivery::Lost,
            Settle::Sent { .. } => Delivery::Sent,
            Settle::Retry { error, .. } => {
                warn!(notifier = %n.notifier, event = n.message.event.as_str(), attempt = n.attempts + 1, %error, "notification failed; will retry");
                Delivery::Retry {
                    attempt: n.attempts + 1,
                    error,
                }
            }
            Settle::Dead { error } => {
                error!(notifier = %n.notifier, event = n.message.event.as_str(), attempts = n.attempts + 1, %error, "notification given up");
                Delivery::Dead {
                    attempts: n.attempts + 1,
                    error,
                }
            }
            Settle::Dropped { why } => Delivery::Dropped { why },
        };
        Ok(DeliveryReport {
            id: n.id,
            notifier: n.notifier,
            event: n.message.event,
            outcome,
        })
    }
}
