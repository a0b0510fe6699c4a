//! Asking for access: the input checked, admission (duplicates, quotas), policy at the moment
//! of the request (`Request`, or `BreakGlass` for an emergency), then `AutoApprove`, and the grant
//! opened in the same commit when policy or break-glass lets the request through.
//!
//! Bad input and refused permissions return an error before anything is written.

use tracing::{info, instrument, warn};

use super::{Caller, Engine};
use crate::{
    Error, GrantDuration, Result, Timestamp,
    audit::AuditRecord,
    catalog::MIN_DURATION,
    id::RequestId,
    policy::{Action, Resource},
    request::{ApprovalVia, Request, RequestState},
    store::Commit,
};

use super::requests::MAX_REASON;

const MAX_TICKET: usize = 128;
const MAX_TASK: usize = 128;

/// A task id: 1 to 128 letters, digits and `._:/-`.
pub(super) fn valid_task(t: &str) -> bool {
    !t.is_empty()
        && t.len() <= MAX_TASK
        && t.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | ':' | '/' | '-'))
}

/// What a client asks for.
#[derive(Debug, Clone, Default)]
pub struct NewRequest {
    pub entitlement: String,
    /// `None` takes the entitlement's default.
    pub duration: Option<String>,
    pub reason: String,
    pub ticket: Option<String>,
    /// The task it is for (an id the asker gives); an agent names its ticket or its task.
    pub task: Option<String>,
    /// A public key (OpenSSH format) for connectors that certify one.
    pub public_key: Option<String>,
    /// An emergency: granted at once where `BreakGlass` permits, capped, alerted and reviewed.
    pub break_glass: bool,
    /// A scheduled start, RFC 3339; `None` starts when approved.
    pub starts_at: Option<String>,
}

pub(super) struct Checked<'a> {
    pub(super) resource: Resource<'a>,
    pub(super) duration: GrantDuration,
    pub(super) starts_at: Option<Timestamp>,
    pub(super) reason: String,
    pub(super) ticket: Option<String>,
    pub(super) task: Option<String>,
    pub(super) public_key: Option<String>,
}

const MAX_PUBLIC_KEY: usize = 16_384;
/// How far ahead a start may be scheduled.
const MAX_SCHEDULE_AHEAD_MS: i64 = 30 * 24 * 3_600_000;
/// A start this little in the past is taken as "now" (clocks differ).
const START_SKEW_MS: i64 = 60_000;

impl Engine {
    pub(super) fn check_new(&self, new: &NewRequest, now: Timestamp) -> Result<Checked<'_>> {
        // An entitlement, or a task profile.
        let resource = self.resource_named(&new.entitlement).ok_or_else(|| {
            Error::invalid(
                crate::ErrorCode::RequestEntitlementUnknown,
                "entitlement",
                format!("no entitlement or profile named {:?}", new.entitlement),
            )
        })?;
        // Break-glass is capped below the resource's own maximum.
        let cap = self.settings.break_glass_max.min(resource.max_duration());
        let duration = match new.duration.as_deref().map(str::trim) {
            None | Some("") if new.break_glass => resource.default_duration().min(cap),
            None | Some("") => resource.default_duration(),
            Some(text) => text.parse::<GrantDuration>().map_err(|e| {
                Error::invalid(crate::ErrorCode::RequestDurationInvalid, "duration", e)
            })?,
        };
        if new.break_glass && duration > cap {
            return Err(Error::invalid(
                crate::ErrorCode::RequestDurationExceedsBreakGlassMax,
                "duration",
                format!(
                    "duration {duration} exceeds the break-glass maximum of {cap} for {}",
                    resource.name()
                ),
            ));
        }
        if duration < MIN_DURATION {
            return Err(Error::invalid(
                crate::ErrorCode::RequestDurationBelowMin,
                "duration",
                format!("duration {duration} is under the minimum of {MIN_DURATION}"),
            ));
        }
        if duration > resource.max_duration() {
            return Err(Error::invalid(
                crate::ErrorCode::RequestDurationExceedsMax,
                "duration",
                format!(
                    "duration {duration} exceeds the maximum of {} for {}",
                    resource.max_duration(),
                    resource.name()
                ),
            ));
        }
        let starts_at = match new.starts_at.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(text) => {
                let at = Timestamp::parse_rfc3339(text).ok_or_else(|| {
                    Error::invalid(
                        crate::ErrorCode::RequestStartsAtInvalid,
                        "starts_at",
                        format!("{text:?} is not an RFC 3339 time (2026-11-24T09:00:00Z)"),
                    )
                })?;
                if new.break_glass {
                    return Err(Error::invalid(
                        crate::ErrorCode::RequestBreakGlassScheduled,
                        "starts_at",
                        "break-glass access starts at once; it cannot be scheduled",
                    ));
                }
                if at < now.plus_millis(-START_SKEW_MS) {
                    return Err(Error::invalid(
                        crate::ErrorCode::RequestStartsAtPast,
                        "starts_at",
                        format!("the start {at} is in the past"),
                    ));
                }
                if at > now.plus_millis(MAX_SCHEDULE_AHEAD_MS) {
                    return Err(Error::invalid(
                        crate::ErrorCode::RequestStartsAtTooFar,
                        "starts_at",
                        "a start can be scheduled at most 30 days ahead",
                    ));
                }
                (at > now).then_some(at)
            }
        };
        let reason = new.reason.trim().to_owned();
        if reason.is_empty() {
            return Err(Error::invalid(
                crate::ErrorCode::RequestReasonMissing,
                "reason",
                "a reason is required: say what the access is for",
            ));
        }
        crate::text::check(&reason, MAX_REASON)
            .map_err(|m| Error::invalid(crate::ErrorCode::RequestReasonInvalid, "reason", m))?;
        let ticket = new
            .ticket
            .as_deref()
            .map(str::trim)
            .filter(|t| !t.is_empty());
        if let Some(t) = ticket
            && crate::text::check(t, MAX_TICKET).is_err()
        {
            return Err(Error::invalid(
                crate::ErrorCode::RequestTicketInvalid,
                "ticket",
                format!("a ticket reference is at most {MAX_TICKET} printable characters"),
            ));
        }
        let task = new.task.as_deref().map(str::trim).filter(|t| !t.is_empty());
        if let Some(t) = task
            && !valid_task(t)
        {
            return Err(Error::invalid(
                crate::ErrorCode::RequestTaskInvalid,
                "task",
                format!("a task id is at most {MAX_TASK} letters, digits and ._:/-"),
            ));
        }
        let public_key = new
            .public_key
            .as_deref()
            .map(str::trim)
            .filter(|k| !k.is_empty());
        if public_key.is_some_and(|k| k.len() > MAX_PUBLIC_KEY || k.contains(['\n', '\r'])) {
            return Err(Error::invalid(
                crate::ErrorCode::RequestPublicKeyInvalid,
                "public_key",
                format!("a public key is one line of at most {MAX_PUBLIC_KEY} bytes"),
            ));
        }
        for ent in self.members(resource) {
            if let Some(connector) = self.connectors.get(&ent.target) {
                connector
                    .check_request(&ent.params, public_key)
                    .map_err(|m| {
                        Error::invalid(crate::ErrorCode::RequestPublicKeyInvalid, "public_key", m)
                    })?;
            }
        }
        Ok(Checked {
            resource,
            duration,
            starts_at,
            reason,
            ticket: ticket.map(str::to_owned),
            task: task.map(str::to_owned),
            public_key: public_key.map(str::to_owned),
        })
    }

    /// Asks for an entitlement. Policy decides eligibility now, and may approve at once.
    #[instrument(skip_all, fields(principal = %caller.principal.id, entitlement = %new.entitlement))]
    pub async fn submit(&self, caller: &Caller, new: NewRequest) -> Result<Request> {
        let now = self.clock.now();
        let checked = self.check_new(&new, now)?;
        // An agent acting for a person asks for that person: the request is theirs, with the
        // agent recorded as acting, and policy judges both.
        let (principal, actor) = match &caller.on_behalf_of {
            Some(person) => (person, Some(&caller.principal)),
            None => (&caller.principal, None),
        };
        if new.break_glass
            && let Some(agent) = actor
        {
            return Err(Error::forbidden(
                crate::ErrorCode::RequestBreakGlassNotAllowed,
                format!(
                    "{} is an agent: it never breaks glass, also not for {}",
                    agent.id, principal.id
                ),
            ));
        }
        // An agent's access is bound to the work it is for: its ticket, or a task it names.
        if caller.principal.kind == crate::catalog::PrincipalKind::Agent
            && checked.ticket.is_none()
            && checked.task.is_none()
        {
            return Err(Error::invalid(
                crate::ErrorCode::RequestTaskRequired,
                "task",
                format!(
                    "{} is an agent: name the ticket or the task (an id of your choosing) the access is for",
                    caller.principal.id
                ),
            ));
        }
        let resource = checked.resource;
        let start = checked.starts_at.unwrap_or(now);
        let end = start.plus(checked.duration);
        let superseded = self
            .admit(principal, resource, (start, end), new.break_glass, now)
            .await?;
        if new.break_glass {
            self.check_open_reviews(principal).await?;
        }
        let ticket = self
            .check_ticket(principal, checked.ticket.as_deref(), new.break_glass)
            .await?;
        let mut ctx = self.context(
            Some(caller),
            &principal.id,
            checked.duration,
            ticket.facts.as_ref(),
            now,
        );
        ctx.break_glass = new.break_glass;

        // Break-glass is judged by its own action: eligibility for an emergency.
        let gate = if new.break_glass {
            Action::BreakGlass
        } else {
            Action::Request
        };
        let reviewed = self.reviewed_with(&principal.id, actor).await?;
        let eligible = self.decide_for(gate, principal, actor, resource, &ctx, &reviewed)?;
        if !eligible.allowed {
            let mut refused = AuditRecord::new(
                now,
                principal.id.as_str(),
                crate::event::EventKind::RequestRefused,
                resource.name(),
            )
            .with("action", gate.as_str())
            .with("policy_ids", eligible.policy_ids.join(","))
            .with("policy_hash", &eligible.policy_hash)
            .with("duration", checked.duration);
            if let Some(a) = actor {
                refused = refused.with("act", a.id.as_str());
            }
            warn!(policy_ids = ?eligible.policy_ids, break_glass = new.break_glass, "request refused: not eligible");
            self.record_refusal(refused, caller.source_ip.as_deref())
                .await?;
            return Err(if new.break_glass {
                Error::forbidden(
                    crate::ErrorCode::RequestBreakGlassNotAllowed,
                    format!(
                        "{} may not break glass into {} (policy)",
                        principal.id,
                        resource.name()
                    ),
                )
            } else {
                Error::forbidden(
                    crate::ErrorCode::RequestNotEligible,
                    format!(
                        "{} is not eligible for {} (policy)",
                        match actor {
                            Some(a) => format!("{} for {}", a.id, principal.id),
                            None => principal.id.to_string(),
                        },
                        resource.name()
                    ),
                )
            });
        }
        let request = Request {
            id: RequestId::generate(now)?,
            requester: principal.id.clone(),
            access: resource.access_id(),
            duration: checked.duration,
            reason: checked.reason,
            ticket: checked.ticket,
            state: RequestState::Pending,
            state_reason: None,
            created_at: now,
            updated_at: now,
            // A scheduled request that nobody decides before its window closes expires then.
            decide_by: match checked.starts_at {
                Some(_) => now.plus(self.settings.pending_ttl).min(end),
                None => now.plus(self.settings.pending_ttl),
            },
            policy_hash: eligible.policy_hash.clone(),
            grant_id: None,
            public_key: checked.public_key,
            break_glass: new.break_glass,
            mfa: caller.mfa,
            source_ip: caller.source_ip.clone(),
            starts_at: checked.starts_at,
            extends: None,
            actors: actor.map(|a| vec![a.id.clone()]).unwrap_or_default(),
            exchange: None,
            ticket_facts: ticket.facts.clone(),
            task: checked.task,
            version: 0,
        };
        let mut created = AuditRecord::new(
            now,
            principal.id.as_str(),
            crate::event::EventKind::RequestCreated,
            request.id.as_str(),
        )
        .with(resource.access_id().kind(), resource.name())
        .with("duration", request.duration)
        .with("reason", &request.reason)
        .with("eligible_by", eligible.policy_ids.join(","))
        .with("policy_hash", &eligible.policy_hash);
        if let Some(a) = actor {
            created = created.with("act", a.id.as_str());
        }
        if let Some(t) = &request.task {
            created = created.with("task", t);
        }
        if let Some(t) = &request.ticket {
            created = created.with("ticket", t);
        }
        if let Some(f) = &ticket.facts {
            for (key, value) in [
                ("ticket_source", &f.source),
                ("ticket_status", &f.status),
                ("ticket_assignee", &f.assignee),
            ] {
                if let Some(v) = value {
                    created = created.with(key, v);
                }
            }
        }
        if let Some(why) = &ticket.unavailable {
            created = created.with("ticket_unchecked", why);
        }
        if request.break_glass {
            created = created.with("break_glass", true);
        }
        if let Some(at) = request.starts_at {
            created = created.with("starts_at", at);
        }
        let mut commit = Commit {
            audit: vec![created],
            ..Commit::default()
        };
        Self::cancel_into(
            &superseded,
            principal.id.as_str(),
            &format!("superseded by request {}", request.id),
            now,
            &mut commit,
        )?;

        // Break-glass needs no approval; otherwise AutoApprove may let it through.
        let pass = if request.break_glass {
            Some((ApprovalVia::BreakGlass, eligible))
        } else if ticket.unavailable.is_some() {
            // The ticket could not be checked: only people may let this through.
            None
        } else {
            let auto = self.decide_for(
                Action::AutoApprove,
                principal,
                actor,
                resource,
                &ctx,
                &crate::campaign::Reviewed::default(),
            )?;
            auto.allowed.then_some((ApprovalVia::Policy, auto))
        };
        let result = if let Some((via, decision)) = pass {
            let approver = match via {
                ApprovalVia::BreakGlass => principal.id.to_string(),
                _ => "policy".to_owned(),
            };
            let approved = Self::approve_without_human(
                &request,
                &approver,
                via,
                via.as_str(),
                &decision,
                &mut commit,
                now,
            )?;
            let fulfilled = self.open_grant(approved, resource, now, &mut commit)?;
            if fulfilled.break_glass && fulfilled.grant_id.is_some() {
                self.open_review(&fulfilled, now, &mut commit)?;
            }
            fulfilled
        } else {
            commit.requests.push(request.clone());
            request
        };
        self.commit(commit).await?;
        if result.grant_id.is_some() {
            self.wake.jobs_changed();
        } else {
            self.wake.deadlines_changed();
        }
        if result.break_glass {
            // The loud part of break-glass: a critical alert in the log (and, from the server,
            // in the metrics and to the notifiers).
            tracing::error!(
                alert = "critical",
                request_id = %result.id,
                grant_id = ?result.grant_id,
                principal = %result.requester,
                access = %result.access,
                duration = %result.duration,
                reason = %result.reason,
                "BREAK-GLASS access granted without approval; a review is open"
            );
        }
        info!(request_id = %result.id, state = result.state.as_str(), "request submitted");
        Ok(result)
    }
}
