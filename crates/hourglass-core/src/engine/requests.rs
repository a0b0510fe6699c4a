//! Use cases for people and clients: ask, approve, deny, cancel, revoke, and read.
//!
//! Bad input and refused permissions return an error before anything is written: a 4xx changes
//! nothing. Policy runs at the moment of the request (`Request`, then `AutoApprove`), at each
//! approval (`Approve` for the approver, and `Request` again when the quorum is reached), and
//! again when the grant activates (in the job worker).

use tracing::{info, instrument, warn};

use super::{Caller, Engine, retry_on_conflict};
use crate::{
    Error, GrantDuration, Result, Timestamp,
    audit::AuditRecord,
    catalog::{Entitlement, MIN_DURATION, Principal},
    grant::{Grant, GrantCommand, GrantState},
    id::{EntitlementId, GrantId, RequestId},
    job::JobAction,
    policy::Action,
    request::{Approval, ApprovalVia, Request, RequestCommand, RequestState, Verdict},
    store::{Commit, JobChange},
};

const MAX_REASON: usize = 2_000;
const MAX_TICKET: usize = 128;

/// What a client asks for.
#[derive(Debug, Clone, Default)]
pub struct NewRequest {
    pub entitlement: String,
    /// `None` takes the entitlement's default.
    pub duration: Option<String>,
    pub reason: String,
    pub ticket: Option<String>,
    /// A public key (OpenSSH format) for connectors that certify one.
    pub public_key: Option<String>,
    /// An emergency: granted at once where `BreakGlass` permits, capped, alerted and reviewed.
    pub break_glass: bool,
}

/// A request with its decisions and its grant.
#[derive(Debug, Clone)]
pub struct RequestDetails {
    pub request: Request,
    pub approvals: Vec<Approval>,
    pub approvals_required: u32,
    pub grant: Option<Grant>,
}

struct Checked<'a> {
    entitlement: &'a Entitlement,
    duration: GrantDuration,
    reason: String,
    ticket: Option<String>,
    public_key: Option<String>,
}

const MAX_PUBLIC_KEY: usize = 16_384;

impl Engine {
    fn check_new(&self, new: &NewRequest) -> Result<Checked<'_>> {
        let unknown = || {
            Error::invalid(
                "request.entitlement_unknown",
                "entitlement",
                format!("no entitlement named {:?}", new.entitlement),
            )
        };
        let id = EntitlementId::new(new.entitlement.trim()).map_err(|_| unknown())?;
        let entitlement = self.catalog.entitlement(&id).ok_or_else(unknown)?;
        // Break-glass is capped below the entitlement's own maximum.
        let cap = self.settings.break_glass_max.min(entitlement.max_duration);
        let duration = match new.duration.as_deref().map(str::trim) {
            None | Some("") if new.break_glass => entitlement.default_duration.min(cap),
            None | Some("") => entitlement.default_duration,
            Some(text) => text
                .parse::<GrantDuration>()
                .map_err(|e| Error::invalid("request.duration_invalid", "duration", e))?,
        };
        if new.break_glass && duration > cap {
            return Err(Error::invalid(
                "request.duration_exceeds_break_glass_max",
                "duration",
                format!(
                    "duration {duration} exceeds the break-glass maximum of {cap} for {}",
                    entitlement.id
                ),
            ));
        }
        if duration < MIN_DURATION {
            return Err(Error::invalid(
                "request.duration_below_min",
                "duration",
                format!("duration {duration} is under the minimum of {MIN_DURATION}"),
            ));
        }
        if duration > entitlement.max_duration {
            return Err(Error::invalid(
                "request.duration_exceeds_max",
                "duration",
                format!(
                    "duration {duration} exceeds the maximum of {} for {}",
                    entitlement.max_duration, entitlement.id
                ),
            ));
        }
        let reason = new.reason.trim().to_owned();
        if reason.is_empty() {
            return Err(Error::invalid(
                "request.reason_missing",
                "reason",
                "a reason is required: say what the access is for",
            ));
        }
        if reason.chars().count() > MAX_REASON {
            return Err(Error::invalid(
                "request.reason_too_long",
                "reason",
                format!("the reason is longer than {MAX_REASON} characters"),
            ));
        }
        let ticket = new
            .ticket
            .as_deref()
            .map(str::trim)
            .filter(|t| !t.is_empty());
        if let Some(t) = ticket
            && (t.chars().count() > MAX_TICKET || t.chars().any(char::is_control))
        {
            return Err(Error::invalid(
                "request.ticket_invalid",
                "ticket",
                format!("a ticket reference is at most {MAX_TICKET} printable characters"),
            ));
        }
        let public_key = new
            .public_key
            .as_deref()
            .map(str::trim)
            .filter(|k| !k.is_empty());
        if public_key.is_some_and(|k| k.len() > MAX_PUBLIC_KEY || k.contains(['\n', '\r'])) {
            return Err(Error::invalid(
                "request.public_key_invalid",
                "public_key",
                format!("a public key is one line of at most {MAX_PUBLIC_KEY} bytes"),
            ));
        }
        if let Some(connector) = self.connectors.get(&entitlement.target) {
            connector
                .check_request(&entitlement.params, public_key)
                .map_err(|m| Error::invalid("request.public_key_invalid", "public_key", m))?;
        }
        Ok(Checked {
            entitlement,
            duration,
            reason,
            ticket: ticket.map(str::to_owned),
            public_key: public_key.map(str::to_owned),
        })
    }

    /// Asks for an entitlement. Policy decides eligibility now, and may approve at once.
    #[instrument(skip_all, fields(principal = %caller.principal.id, entitlement = %new.entitlement))]
    pub async fn submit(&self, caller: &Caller, new: NewRequest) -> Result<Request> {
        let checked = self.check_new(&new)?;
        let now = self.clock.now();
        let principal = &caller.principal;
        let ent = checked.entitlement;
        let mut ctx = self.context(
            Some(caller),
            &principal.id,
            checked.duration,
            checked.ticket.as_deref(),
            now,
        );
        ctx.break_glass = new.break_glass;

        // Break-glass is judged by its own action: eligibility for an emergency.
        let gate = if new.break_glass {
            Action::BreakGlass
        } else {
            Action::Request
        };
        let eligible = self.decide(gate, principal, ent, &ctx)?;
        if !eligible.allowed {
            warn!(policy_ids = ?eligible.policy_ids, break_glass = new.break_glass, "request refused: not eligible");
            return Err(if new.break_glass {
                Error::forbidden(
                    "request.break_glass_not_allowed",
                    format!(
                        "{} may not break glass into {} (policy)",
                        principal.id, ent.id
                    ),
                )
            } else {
                Error::forbidden(
                    "request.not_eligible",
                    format!("{} is not eligible for {} (policy)", principal.id, ent.id),
                )
            });
        }
        let request = Request {
            id: RequestId::generate(now)?,
            requester: principal.id.clone(),
            entitlement: ent.id.clone(),
            duration: checked.duration,
            reason: checked.reason,
            ticket: checked.ticket,
            state: RequestState::Pending,
            state_reason: None,
            created_at: now,
            updated_at: now,
            decide_by: now.plus(self.settings.pending_ttl),
            policy_hash: eligible.policy_hash.clone(),
            grant_id: None,
            public_key: checked.public_key,
            break_glass: new.break_glass,
            mfa: caller.mfa,
            source_ip: caller.source_ip.clone(),
            version: 0,
        };
        let mut created = AuditRecord::new(
            now,
            principal.id.as_str(),
            "request.created",
            request.id.as_str(),
        )
        .with("entitlement", &ent.id)
        .with("duration", request.duration)
        .with("reason", &request.reason)
        .with("eligible_by", eligible.policy_ids.join(","))
        .with("policy_hash", &eligible.policy_hash);
        if let Some(t) = &request.ticket {
            created = created.with("ticket", t);
        }
        if request.break_glass {
            created = created.with("break_glass", true);
        }
        let mut commit = Commit {
            audit: vec![created],
            ..Commit::default()
        };

        // Break-glass needs no approval; otherwise AutoApprove may let it through.
        let pass = if request.break_glass {
            Some((ApprovalVia::BreakGlass, eligible))
        } else {
            let auto = self.decide(Action::AutoApprove, principal, ent, &ctx)?;
            auto.allowed.then_some((ApprovalVia::Policy, auto))
        };
        let result = if let Some((via, decision)) = pass {
            let approver = match via {
                ApprovalVia::BreakGlass => principal.id.to_string(),
                _ => "policy".to_owned(),
            };
            commit.approvals.push(Approval {
                request_id: request.id.clone(),
                approver: approver.clone(),
                verdict: Verdict::Approve,
                via,
                policy_ids: decision.policy_ids.clone(),
                policy_hash: decision.policy_hash.clone(),
                comment: None,
                at: now,
            });
            let (approved, mut ev) =
                request.apply(RequestCommand::Approve { actor: approver }, now)?;
            ev = ev
                .with("via", via.as_str())
                .with("policy_ids", decision.policy_ids.join(","))
                .with("policy_hash", &decision.policy_hash);
            commit.audit.push(ev);
            let fulfilled = self.open_grant(approved, ent, now, &mut commit)?;
            if fulfilled.break_glass {
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
                entitlement = %result.entitlement,
                duration = %result.duration,
                reason = %result.reason,
                "BREAK-GLASS access granted without approval; a review is open"
            );
        }
        info!(request_id = %result.id, state = result.state.as_str(), "request submitted");
        Ok(result)
    }

    /// Turns an approved request into a provisioning grant with its job, into `commit`.
    fn open_grant(
        &self,
        approved: Request,
        ent: &Entitlement,
        now: Timestamp,
        commit: &mut Commit,
    ) -> Result<Request> {
        let grant = Grant {
            id: GrantId::generate(now)?,
            request_id: approved.id.clone(),
            principal: approved.requester.clone(),
            entitlement: ent.id.clone(),
            target: ent.target.clone(),
            state: GrantState::Provisioning,
            starts_at: now,
            expires_at: now.plus(approved.duration),
            created_at: now,
            activated_at: None,
            revoke_due_at: None,
            ended_at: None,
            end_reason: None,
            handle: None,
            credential_fingerprint: None,
            public_key: approved.public_key.clone(),
            break_glass: approved.break_glass,
            version: 0,
        };
        let (fulfilled, ev) = approved.apply(
            RequestCommand::Fulfil {
                grant_id: grant.id.clone(),
            },
            now,
        )?;
        commit.audit.push(ev);
        commit.audit.push(
            AuditRecord::new(now, "system", "grant.created", grant.id.as_str())
                .with("request", &approved.id)
                .with("principal", &grant.principal)
                .with("entitlement", &grant.entitlement)
                .with("starts_at", grant.starts_at)
                .with("expires_at", grant.expires_at),
        );
        commit.jobs.push(JobChange::Schedule {
            grant_id: grant.id.clone(),
            action: JobAction::Provision,
            run_at: now,
        });
        commit.grants.push(grant);
        commit.requests.push(fulfilled.clone());
        Ok(fulfilled)
    }

    pub(super) async fn load_request(&self, id: &str) -> Result<Request> {
        let not_found = || Error::not_found("request.not_found", format!("no request {id}"));
        let rid = RequestId::parse(id).ok_or_else(not_found)?;
        self.store.get_request(&rid).await?.ok_or_else(not_found)
    }

    pub(super) async fn load_grant(&self, id: &str) -> Result<Grant> {
        let not_found = || Error::not_found("grant.not_found", format!("no grant {id}"));
        let gid = GrantId::parse(id).ok_or_else(not_found)?;
        self.store.get_grant(&gid).await?.ok_or_else(not_found)
    }

    pub(super) fn entitlement_of(&self, id: &EntitlementId) -> Result<&Entitlement> {
        self.catalog.entitlement(id).ok_or_else(|| {
            Error::conflict(
                "entitlement.removed",
                format!("entitlement {id} is no longer configured"),
            )
        })
    }

    fn requester_of(&self, req: &Request) -> Result<&Principal> {
        self.catalog.principal(&req.requester).ok_or_else(|| {
            Error::conflict(
                "principal.removed",
                format!("requester {} is no longer configured", req.requester),
            )
        })
    }

    /// Checks that `caller` may decide on `req` (approve or deny): not the requester, and
    /// permitted by an `Approve` policy. Returns the determining policies.
    fn check_approver(
        &self,
        caller: &Caller,
        req: &Request,
        ent: &Entitlement,
        now: Timestamp,
    ) -> Result<crate::policy::Decision> {
        // Refused in every state: nobody decides on their own request.
        if caller.principal.id == req.requester {
            return Err(Error::forbidden(
                "approval.self_approval",
                "nobody may approve or deny their own request",
            ));
        }
        if req.state != RequestState::Pending {
            return Err(Error::conflict(
                "request.not_pending",
                format!("request {} is {}, not pending", req.id, req.state.as_str()),
            ));
        }
        let mut ctx = self.context(
            Some(caller),
            &req.requester,
            req.duration,
            req.ticket.as_deref(),
            now,
        );
        ctx.requester = Some(self.requester_of(req)?.clone());
        let decision = self.decide(Action::Approve, &caller.principal, ent, &ctx)?;
        if !decision.allowed {
            return Err(Error::forbidden(
                "approval.not_authorized",
                format!(
                    "{} may not approve requests for {}",
                    caller.principal.id, ent.id
                ),
            ));
        }
        Ok(decision)
    }

    /// Records an approval; at quorum, the grant is opened.
    #[instrument(skip_all, fields(request_id = %id, approver = %caller.principal.id))]
    pub async fn approve(
        &self,
        caller: &Caller,
        id: &str,
        comment: Option<String>,
    ) -> Result<Request> {
        let comment = comment
            .map(|c| c.trim().to_owned())
            .filter(|c| !c.is_empty());
        if comment
            .as_ref()
            .is_some_and(|c| c.chars().count() > MAX_REASON)
        {
            return Err(Error::invalid(
                "approval.comment_too_long",
                "comment",
                "the comment is too long",
            ));
        }
        let comment = &comment;
        let out = retry_on_conflict(move || async move {
            let req = self.load_request(id).await?;
            let ent = self.entitlement_of(&req.entitlement)?;
            let now = self.clock.now();
            let decision = self.check_approver(caller, &req, ent, now)?;
            let approvals = self.store.list_approvals(&req.id).await?;
            if approvals
                .iter()
                .any(|a| a.approver == caller.principal.id.as_str())
            {
                return Err(Error::conflict(
                    "approval.duplicate",
                    format!(
                        "{} has already approved request {}",
                        caller.principal.id, req.id
                    ),
                ));
            }
            let count = approvals
                .iter()
                .filter(|a| a.verdict == Verdict::Approve)
                .count() as u32
                + 1;
            let mut commit = Commit::default();
            commit.approvals.push(Approval {
                request_id: req.id.clone(),
                approver: caller.principal.id.to_string(),
                verdict: Verdict::Approve,
                via: ApprovalVia::Human,
                policy_ids: decision.policy_ids.clone(),
                policy_hash: decision.policy_hash.clone(),
                comment: comment.clone(),
                at: now,
            });
            let mut ev = AuditRecord::new(
                now,
                caller.principal.id.as_str(),
                "approval.recorded",
                req.id.as_str(),
            )
            .with("verdict", "approve")
            .with("count", count)
            .with("required", ent.approvals_required)
            .with("policy_ids", decision.policy_ids.join(","))
            .with("policy_hash", &decision.policy_hash);
            if let Some(c) = &comment {
                ev = ev.with("comment", c);
            }
            commit.audit.push(ev);
            let result = if count >= ent.approvals_required {
                let (approved, ev) = req.apply(
                    RequestCommand::Approve {
                        actor: caller.principal.id.to_string(),
                    },
                    now,
                )?;
                commit.audit.push(ev.with("approvals", count));
                // Eligibility is judged again now: an approval does not outlive a policy
                // change that denies the request.
                let requester = self.requester_of(&req)?;
                let ctx = self.recheck_context(&req, now);
                let still = self.decide(Action::Request, requester, ent, &ctx)?;
                if still.allowed {
                    self.open_grant(approved, ent, now, &mut commit)?
                } else {
                    let (failed, ev) = approved.apply(
                        RequestCommand::Fail {
                            reason: "policy no longer permits the requester".into(),
                        },
                        now,
                    )?;
                    commit
                        .audit
                        .push(ev.with("policy_hash", &still.policy_hash));
                    commit.requests.push(failed.clone());
                    failed
                }
            } else {
                // The request row is rewritten even below quorum, so that two approvals at the
                // same moment conflict instead of both counting from the same snapshot.
                let mut touched = req.clone();
                touched.updated_at = now;
                commit.requests.push(touched.clone());
                touched
            };
            self.commit(commit).await?;
            Ok(result)
        })
        .await?;
        if out.grant_id.is_some() {
            self.wake.jobs_changed();
        }
        Ok(out)
    }

    /// Denies a pending request. One deny ends it.
    #[instrument(skip_all, fields(request_id = %id, approver = %caller.principal.id))]
    pub async fn deny(&self, caller: &Caller, id: &str, reason: &str) -> Result<Request> {
        let reason = reason.trim().to_owned();
        if reason.is_empty() {
            return Err(Error::invalid(
                "deny.reason_missing",
                "reason",
                "a reason is required to deny",
            ));
        }
        if reason.chars().count() > MAX_REASON {
            return Err(Error::invalid(
                "deny.reason_too_long",
                "reason",
                "the reason is too long",
            ));
        }
        let reason = &reason;
        retry_on_conflict(move || async move {
            let req = self.load_request(id).await?;
            let ent = self.entitlement_of(&req.entitlement)?;
            let now = self.clock.now();
            let decision = self.check_approver(caller, &req, ent, now)?;
            let (denied, ev) = req.apply(
                RequestCommand::Deny {
                    actor: caller.principal.id.clone(),
                    reason: reason.clone(),
                },
                now,
            )?;
            let commit = Commit {
                approvals: vec![Approval {
                    request_id: req.id.clone(),
                    approver: caller.principal.id.to_string(),
                    verdict: Verdict::Deny,
                    via: ApprovalVia::Human,
                    policy_ids: decision.policy_ids.clone(),
                    policy_hash: decision.policy_hash.clone(),
                    comment: Some(reason.clone()),
                    at: now,
                }],
                audit: vec![ev.with("policy_ids", decision.policy_ids.join(","))],
                requests: vec![denied.clone()],
                ..Commit::default()
            };
            self.commit(commit).await?;
            Ok(denied)
        })
        .await
    }

    /// Withdraws a request that has not yet become a grant.
    #[instrument(skip_all, fields(request_id = %id, principal = %caller.principal.id))]
    pub async fn cancel(&self, caller: &Caller, id: &str) -> Result<Request> {
        retry_on_conflict(move || async move {
            let req = self.load_request(id).await?;
            let now = self.clock.now();
            let own = caller.principal.id == req.requester;
            if !own {
                let ent = self.entitlement_of(&req.entitlement)?;
                if !self.may_administer(&caller.principal, ent, now)? {
                    return Err(Error::forbidden(
                        "request.cancel_not_allowed",
                        "only the requester or an administrator may cancel a request",
                    ));
                }
            }
            if req.state == RequestState::Fulfilled {
                return Err(Error::conflict(
                    "request.already_fulfilled",
                    format!(
                        "request {} already has a grant; revoke the grant instead",
                        req.id
                    ),
                ));
            }
            if !matches!(req.state, RequestState::Pending | RequestState::Approved) {
                return Err(Error::conflict(
                    "request.not_pending",
                    format!("request {} is {}, not pending", req.id, req.state.as_str()),
                ));
            }
            let (cancelled, ev) = req.apply(
                RequestCommand::Cancel {
                    actor: caller.principal.id.to_string(),
                    note: None,
                },
                now,
            )?;
            self.commit(Commit {
                requests: vec![cancelled.clone()],
                audit: vec![ev],
                ..Commit::default()
            })
            .await?;
            Ok(cancelled)
        })
        .await
    }

    /// Ends a grant early. The grantee or an administrator of the entitlement may.
    #[instrument(skip_all, fields(grant_id = %id, principal = %caller.principal.id))]
    pub async fn revoke(&self, caller: &Caller, id: &str, reason: Option<String>) -> Result<Grant> {
        let reason = reason
            .map(|r| r.trim().to_owned())
            .filter(|r| !r.is_empty());
        if reason
            .as_ref()
            .is_some_and(|r| r.chars().count() > MAX_REASON)
        {
            return Err(Error::invalid(
                "revoke.reason_too_long",
                "reason",
                "the reason is too long",
            ));
        }
        let reason = &reason;
        let out = retry_on_conflict(move || async move {
            let grant = self.load_grant(id).await?;
            let now = self.clock.now();
            if caller.principal.id != grant.principal {
                let ent = self.entitlement_of(&grant.entitlement)?;
                if !self.may_administer(&caller.principal, ent, now)? {
                    return Err(Error::forbidden(
                        "grant.revoke_not_allowed",
                        "only the grantee or an administrator may revoke a grant",
                    ));
                }
            }
            if !matches!(grant.state, GrantState::Provisioning | GrantState::Active) {
                return Err(Error::conflict(
                    "grant.not_active",
                    format!("grant {} is {}", grant.id, grant.state.as_str()),
                ));
            }
            let why = reason
                .clone()
                .unwrap_or_else(|| format!("revoked by {}", caller.principal.id));
            let (revoking, ev) = grant.apply(
                GrantCommand::Revoke {
                    actor: caller.principal.id.to_string(),
                    reason: why,
                },
                now,
            )?;
            self.commit(Commit {
                jobs: vec![JobChange::Schedule {
                    grant_id: grant.id.clone(),
                    action: JobAction::Revoke,
                    run_at: now,
                }],
                grants: vec![revoking.clone()],
                audit: vec![ev],
                ..Commit::default()
            })
            .await?;
            Ok(revoking)
        })
        .await?;
        self.wake.jobs_changed();
        Ok(out)
    }
}
