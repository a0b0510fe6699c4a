//! Use cases for people and clients on requests and grants: approve, deny, cancel, revoke.
//!
//! Bad input and refused permissions return an error before anything is written: a 4xx changes
//! nothing. Policy runs at the moment of the request (`Request`, then `AutoApprove`), at each
//! approval (`Approve` for the approver, and `Request` again when the quorum is reached), and
//! again when the grant activates (in the job worker).

use tracing::instrument;

use super::{Caller, Engine, retry_on_conflict};
use crate::{
    Error, Result, Timestamp,
    audit::AuditRecord,
    catalog::{Entitlement, Principal},
    grant::{Grant, GrantState},
    id::{EntitlementId, GrantId, RequestId},
    policy::{Action, Resource},
    request::{Approval, ApprovalVia, Request, RequestCommand, RequestState, Verdict},
    store::Commit,
};

pub(super) const MAX_REASON: usize = 2_000;

/// A request with its decisions and its grants (one per entitlement of a profile).
#[derive(Debug, Clone)]
pub struct RequestDetails {
    pub request: Request,
    pub approvals: Vec<Approval>,
    pub approvals_required: u32,
    pub grants: Vec<Grant>,
}

/// Separation of duties: why `decider` stands on the asking side of a request by `requester`
/// (with `actors` acting in it), if it does: it is an actor on the request, or it answers for
/// the requester (its owner, by name or through the owner group). Someone who owns `bob-bot`
/// holds whatever `bob-bot` gets, so approving it would be approving their own request.
pub(super) fn requesting_side(
    decider: &Principal,
    requester: &Principal,
    actors: &[crate::id::PrincipalId],
) -> Option<String> {
    if actors.contains(&decider.id) {
        return Some("they acted in it".into());
    }
    let owner = requester.owner.as_deref()?;
    if owner == decider.id.as_str() {
        return Some(format!("they own {}", requester.id));
    }
    decider
        .groups
        .iter()
        .any(|g| g == owner)
        .then(|| format!("they are in {owner}, which owns {}", requester.id))
}

impl Engine {
    pub(super) async fn load_request(&self, id: &str) -> Result<Request> {
        let not_found = || {
            Error::not_found(
                crate::ErrorCode::RequestNotFound,
                format!("no request {id}"),
            )
        };
        let rid = RequestId::parse(id).ok_or_else(not_found)?;
        self.store.get_request(&rid).await?.ok_or_else(not_found)
    }

    pub(super) async fn load_grant(&self, id: &str) -> Result<Grant> {
        let not_found =
            || Error::not_found(crate::ErrorCode::GrantNotFound, format!("no grant {id}"));
        let gid = GrantId::parse(id).ok_or_else(not_found)?;
        self.store.get_grant(&gid).await?.ok_or_else(not_found)
    }

    pub(super) fn entitlement_of(&self, id: &EntitlementId) -> Result<&Entitlement> {
        self.catalog.entitlement(id).ok_or_else(|| {
            Error::conflict(
                crate::ErrorCode::EntitlementRemoved,
                format!("entitlement {id} is no longer configured"),
            )
        })
    }

    async fn requester_of(&self, req: &Request) -> Result<Principal> {
        self.principal(&req.requester).await?.ok_or_else(|| {
            Error::conflict(
                crate::ErrorCode::PrincipalRemoved,
                format!("requester {} is no longer configured", req.requester),
            )
        })
    }

    /// Checks that `caller` may decide on `req` (approve or deny): not the requester, and
    /// permitted by an `Approve` policy. Returns the determining policies.
    async fn check_approver(
        &self,
        caller: &Caller,
        req: &Request,
        resource: Resource<'_>,
        now: Timestamp,
    ) -> Result<crate::policy::Decision> {
        // Refused in every state: nobody decides on their own request.
        if caller.principal.id == req.requester {
            return Err(Error::forbidden(
                crate::ErrorCode::ApprovalSelfApproval,
                "nobody may approve or deny their own request",
            ));
        }
        if req.state != RequestState::Pending {
            return Err(Error::conflict(
                crate::ErrorCode::RequestNotPending,
                format!("request {} is {}, not pending", req.id, req.state.as_str()),
            ));
        }
        let requester = self.requester_of(req).await?;
        if let Some(why) = requesting_side(&caller.principal, &requester, &req.actors) {
            return Err(Error::forbidden(
                crate::ErrorCode::ApprovalSeparationOfDuties,
                format!(
                    "{} may not decide on this request: {why}",
                    caller.principal.id
                ),
            ));
        }
        let mut ctx = self.context(
            Some(caller),
            &req.requester,
            req.duration,
            super::ticket_facts_of(req).as_ref(),
            now,
        );
        ctx.requester = Some(requester);
        let decision = self.decide(Action::Approve, &caller.principal, resource, &ctx)?;
        if !decision.allowed && !caller.mfa {
            // Step-up: would a second factor make this approver's decision count?
            ctx.mfa = true;
            if self
                .decide(Action::Approve, &caller.principal, resource, &ctx)?
                .allowed
            {
                return Err(Error::forbidden(
                    crate::ErrorCode::ApprovalStepUpRequired,
                    format!(
                        "deciding on requests for {} needs a sign-in with a second factor; sign in again with one",
                        resource.name()
                    ),
                ));
            }
        }
        if !decision.allowed {
            return Err(Error::forbidden(
                crate::ErrorCode::ApprovalNotAuthorized,
                format!(
                    "{} may not approve requests for {}",
                    caller.principal.id,
                    resource.name()
                ),
            ));
        }
        Ok(decision)
    }

    /// Whether an earlier approval still counts toward the quorum: its approver is still an
    /// active identity, still not on the asking side, and still permitted `Approve` under the
    /// policy set in force (an approver offboarded, or removed from the approvers by a reload,
    /// no longer counts). The second factor is taken as it was when they approved: it was checked
    /// then, and is not recorded.
    async fn approval_still_counts(
        &self,
        a: &Approval,
        req: &Request,
        resource: Resource<'_>,
        now: Timestamp,
    ) -> Result<bool> {
        if a.via != ApprovalVia::Human {
            return Ok(true);
        }
        let Ok(id) = crate::id::PrincipalId::new(a.approver.clone()) else {
            return Ok(false);
        };
        let Some(approver) = self
            .principal(&id)
            .await?
            .filter(|p| p.status == crate::catalog::PrincipalStatus::Active)
        else {
            return Ok(false);
        };
        let requester = self.requester_of(req).await?;
        if approver.id == requester.id
            || requesting_side(&approver, &requester, &req.actors).is_some()
        {
            return Ok(false);
        }
        let mut ctx = self.context(
            None,
            &req.requester,
            req.duration,
            super::ticket_facts_of(req).as_ref(),
            now,
        );
        ctx.mfa = true;
        ctx.requester = Some(requester);
        Ok(self
            .decide(Action::Approve, &approver, resource, &ctx)?
            .allowed)
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
        if let Some(c) = &comment {
            crate::text::check(c, MAX_REASON).map_err(|m| {
                Error::invalid(crate::ErrorCode::ApprovalCommentInvalid, "comment", m)
            })?;
        }
        let comment = &comment;
        let out = retry_on_conflict(move || async move {
            let req = self.visible_request(caller, id).await?;
            let resource = self.resource_of(&req.access)?;
            let quorum = resource.approvals_required();
            let now = self.clock.now();
            let decision = self.check_approver(caller, &req, resource, now).await?;
            let approvals = self.store.list_approvals(&req.id).await?;
            if approvals
                .iter()
                .any(|a| a.approver == caller.principal.id.as_str())
            {
                return Err(Error::conflict(
                    crate::ErrorCode::ApprovalDuplicate,
                    format!(
                        "{} has already approved request {}",
                        caller.principal.id, req.id
                    ),
                ));
            }
            // Earlier approvals count only if their approvers could still give them now.
            let mut count = 1;
            for a in approvals.iter().filter(|a| a.verdict == Verdict::Approve) {
                if self.approval_still_counts(a, &req, resource, now).await? {
                    count += 1;
                }
            }
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
                crate::event::EventKind::ApprovalRecorded,
                req.id.as_str(),
            )
            .with("verdict", "approve")
            .with("count", count)
            .with("required", quorum)
            .with("policy_ids", decision.policy_ids.join(","))
            .with("policy_hash", &decision.policy_hash)
            .with("mfa", caller.mfa);
            if let Some(c) = &comment {
                ev = ev.with("comment", c);
            }
            commit.audit.push(ev);
            let result = if count >= quorum {
                let (approved, ev) = req.apply(
                    RequestCommand::Approve {
                        actor: caller.principal.id.to_string(),
                    },
                    now,
                )?;
                commit.audit.push(ev.record(now).with("approvals", count));
                // Eligibility is judged again now: an approval does not outlive a policy
                // change that denies the request.
                if self.still_permitted(&req, now).await? {
                    match (&req.extends, resource) {
                        (Some(gid), Resource::Entitlement(ent)) => {
                            let grant = self.load_grant(gid.as_str()).await?;
                            self.apply_extension(approved, grant, ent, now, &mut commit)?
                        }
                        (Some(_), Resource::Profile(_)) => {
                            return Err(Error::internal("an extension names a profile"));
                        }
                        (None, _) => self.open_grant(approved, resource, now, &mut commit)?,
                    }
                } else {
                    let (failed, ev) = approved.apply(
                        RequestCommand::Fail {
                            reason: "policy no longer permits the requester".into(),
                        },
                        now,
                    )?;
                    commit
                        .audit
                        .push(ev.record(now).with("policy_hash", self.policy_hash()));
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
                crate::ErrorCode::DenyReasonMissing,
                "reason",
                "a reason is required to deny",
            ));
        }
        crate::text::check(&reason, MAX_REASON)
            .map_err(|m| Error::invalid(crate::ErrorCode::DenyReasonInvalid, "reason", m))?;
        let reason = &reason;
        retry_on_conflict(move || async move {
            let req = self.visible_request(caller, id).await?;
            let resource = self.resource_of(&req.access)?;
            let now = self.clock.now();
            let decision = self.check_approver(caller, &req, resource, now).await?;
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
                audit: vec![
                    ev.record(now)
                        .with("policy_ids", decision.policy_ids.join(",")),
                ],
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
            let req = self.visible_request(caller, id).await?;
            let now = self.clock.now();
            // An agent acting for someone cancels only what it asked for them.
            let own = caller.principal.id == req.requester
                || (caller.answers_for(&req.requester)
                    && req.actors.contains(&caller.principal.id));
            if !own {
                let resource = self.resource_of(&req.access)?;
                if !self.may_administer(&caller.principal, resource, now)? {
                    return Err(Error::forbidden(
                        crate::ErrorCode::RequestCancelNotAllowed,
                        "only the requester or an administrator may cancel a request",
                    ));
                }
            }
            if req.state == RequestState::Fulfilled {
                return Err(Error::conflict(
                    crate::ErrorCode::RequestAlreadyFulfilled,
                    format!(
                        "request {} already has a grant; revoke the grant instead",
                        req.id
                    ),
                ));
            }
            if !matches!(req.state, RequestState::Pending | RequestState::Approved) {
                return Err(Error::conflict(
                    crate::ErrorCode::RequestNotPending,
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
                audit: vec![ev.record(now)],
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
        if let Some(r) = &reason {
            crate::text::check(r, MAX_REASON)
                .map_err(|m| Error::invalid(crate::ErrorCode::RevokeReasonInvalid, "reason", m))?;
        }
        let reason = &reason;
        let out = retry_on_conflict(move || async move {
            // One the caller may not see is "not found": a stranger learns nothing of it.
            let grant = self.grant(caller, id).await?;
            let now = self.clock.now();
            let asked = caller.principal.id == grant.principal
                || (caller.answers_for(&grant.principal)
                    && self
                        .store
                        .get_request(&grant.request_id)
                        .await?
                        .is_some_and(|r| r.actors.contains(&caller.principal.id)));
            if !asked {
                let ent = self.entitlement_of(&grant.entitlement)?;
                if !self.may_administer(&caller.principal, Resource::Entitlement(ent), now)? {
                    return Err(Error::forbidden(
                        crate::ErrorCode::GrantRevokeNotAllowed,
                        "only the grantee or an administrator may revoke a grant",
                    ));
                }
            }
            if !matches!(grant.state, GrantState::Provisioning | GrantState::Active) {
                return Err(Error::conflict(
                    crate::ErrorCode::GrantNotActive,
                    format!("grant {} is {}", grant.id, grant.state.as_str()),
                ));
            }
            let why = reason
                .clone()
                .unwrap_or_else(|| format!("revoked by {}", caller.principal.id));
            // A profile's grants are revoked together.
            let mut commit = Commit::default();
            let revoking = self
                .revoke_together_into(&grant, caller.principal.id.as_str(), &why, now, &mut commit)
                .await?;
            self.commit(commit).await?;
            Ok(revoking)
        })
        .await?;
        self.wake.jobs_changed();
        Ok(out)
    }
}
