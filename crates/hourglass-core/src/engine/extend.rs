//! Extensions: lengthening an active grant goes through the same path as asking for it.
//!
//! `extend` makes an extension request (`Request::extends`) judged by the `Extend` action with
//! `context.duration_secs` set to the grant's new total length, then `AutoApprove`, else the
//! entitlement's human quorum (the usual `approve`). Never past the maximum total: the new end
//! minus the start stays within the entitlement's maximum (and the break-glass cap for a
//! break-glass grant). When approved, the grant's end moves in the same commit, and an `extend`
//! job moves it in the target too where the target holds an end of its own.

use secrecy::ExposeSecret;
use tracing::{info, instrument};

use super::{Caller, Engine, requests::MAX_REASON};
use crate::{
    Error, GrantDuration, Result, Timestamp,
    audit::AuditRecord,
    catalog::{Entitlement, MIN_DURATION},
    grant::{Grant, GrantCommand, GrantState},
    id::{AccessId, RequestId},
    job::{Job, JobAction},
    policy::{Action, Resource},
    request::{ApprovalVia, Request, RequestCommand, RequestState},
    store::{Commit, JobChange},
};

use super::jobs::JobOutcome;

impl Engine {
    /// The longest total a grant of `ent` may reach.
    pub(super) fn max_total(&self, ent: &Entitlement, grant: &Grant) -> GrantDuration {
        if grant.break_glass {
            ent.max_duration.min(self.settings.break_glass_max)
        } else {
            ent.max_duration
        }
    }

    /// The grant's end after extending it by `by`, if within its maximum total.
    fn extended_end(
        &self,
        ent: &Entitlement,
        grant: &Grant,
        by: GrantDuration,
    ) -> Result<Timestamp> {
        let end = grant.expires_at.plus(by);
        let total_ms = end.millis_since(grant.starts_at);
        let max = self.max_total(ent, grant);
        if total_ms > max.as_millis() {
            return Err(Error::invalid(
                crate::ErrorCode::ExtendExceedsMax,
                "by",
                format!(
                    "extending by {by} would make the grant {}s long; the maximum for {} is {max}",
                    total_ms / 1000,
                    ent.id
                ),
            ));
        }
        Ok(end)
    }

    /// Asks to lengthen the caller's active grant by `by`.
    #[instrument(skip_all, fields(grant_id = %grant_id, principal = %caller.principal.id))]
    pub async fn extend(
        &self,
        caller: &Caller,
        grant_id: &str,
        by: &str,
        reason: &str,
    ) -> Result<Request> {
        let by: GrantDuration = by
            .trim()
            .parse()
            .map_err(|e| Error::invalid(crate::ErrorCode::ExtendByInvalid, "by", e))?;
        if by < MIN_DURATION {
            return Err(Error::invalid(
                crate::ErrorCode::ExtendByBelowMin,
                "by",
                format!("an extension is at least {MIN_DURATION}"),
            ));
        }
        let reason = reason.trim().to_owned();
        if reason.is_empty() {
            return Err(Error::invalid(
                crate::ErrorCode::ExtendReasonMissing,
                "reason",
                format!("say why the access is needed longer (1-{MAX_REASON} characters)"),
            ));
        }
        crate::text::check(&reason, MAX_REASON)
            .map_err(|m| Error::invalid(crate::ErrorCode::ExtendReasonInvalid, "reason", m))?;
        // Someone who may not see the grant learns nothing about it.
        let grant = self.grant(caller, grant_id).await?;
        let principal = &caller.principal;
        if grant.principal != principal.id {
            // Only the holder asks for more time; an administrator revokes or grants anew.
            return Err(Error::forbidden(
                crate::ErrorCode::ExtendNotHolder,
                "only the holder of a grant may ask to extend it",
            ));
        }
        let original = self.store.get_request(&grant.request_id).await?;
        if original
            .as_ref()
            .is_some_and(|r| matches!(r.access, AccessId::Profile(_)))
        {
            return Err(Error::conflict(
                crate::ErrorCode::ExtendProfileGrant,
                "this grant is one of a task profile's, which end together; ask for the profile again",
            ));
        }
        if grant.state != GrantState::Active {
            return Err(Error::conflict(
                crate::ErrorCode::GrantNotActive,
                format!(
                    "grant {} is {}; only an active grant can be extended",
                    grant.id,
                    grant.state.as_str()
                ),
            ));
        }
        let ent = self.entitlement_of(&grant.entitlement)?;
        let new_end = self.extended_end(ent, &grant, by)?;
        let now = self.clock.now();
        if let Some(r) = self
            .store
            .pending_requests_of(&principal.id, &AccessId::Entitlement(ent.id.clone()))
            .await?
            .into_iter()
            .find(|r| r.extends.as_ref() == Some(&grant.id))
        {
            return Err(Error::conflict(
                crate::ErrorCode::ExtendDuplicatePending,
                format!("extension {} of this grant is already pending", r.id),
            ));
        }
        self.check_quotas(principal, ent, now).await?;
        let total = GrantDuration::from_secs(
            u64::try_from(new_end.millis_since(grant.starts_at) / 1000).unwrap_or(0),
        );
        // A ticket-bound grant is extended only while its ticket is still open.
        let bound_to = original.and_then(|r| r.ticket);
        let ticket = self
            .check_ticket(principal, bound_to.as_deref(), grant.break_glass)
            .await?;
        let mut ctx = self.context(
            Some(caller),
            &principal.id,
            total,
            ticket.facts.as_ref(),
            now,
        );
        ctx.break_glass = grant.break_glass;
        let reviewed = self.reviewed(&principal.id).await?;
        let eligible = self.with_reviews(
            Action::Extend,
            &principal.id,
            &reviewed,
            Resource::Entitlement(ent),
            self.decide(Action::Extend, principal, Resource::Entitlement(ent), &ctx)?,
        );
        if !eligible.allowed {
            return Err(Error::forbidden(
                crate::ErrorCode::ExtendNotEligible,
                format!("{} may not extend {} (policy)", principal.id, ent.id),
            ));
        }
        let request = Request {
            id: RequestId::generate(now)?,
            requester: principal.id.clone(),
            access: AccessId::Entitlement(ent.id.clone()),
            duration: by,
            reason,
            ticket: bound_to,
            state: RequestState::Pending,
            state_reason: None,
            created_at: now,
            updated_at: now,
            // Undecided when the grant ends, it has nothing left to extend.
            decide_by: now.plus(self.settings.pending_ttl).min(grant.expires_at),
            policy_hash: eligible.policy_hash.clone(),
            grant_id: None,
            public_key: None,
            break_glass: grant.break_glass,
            mfa: caller.mfa,
            source_ip: caller.source_ip.clone(),
            starts_at: None,
            extends: Some(grant.id.clone()),
            actors: Vec::new(),
            exchange: None,
            ticket_facts: ticket.facts.clone(),
            task: None,
            version: 0,
        };
        let mut created = AuditRecord::new(
            now,
            principal.id.as_str(),
            crate::event::EventKind::RequestCreated,
            request.id.as_str(),
        )
        .with("extends", &grant.id)
        .with("entitlement", &ent.id)
        .with("by", by)
        .with("new_expires_at", new_end)
        .with("reason", &request.reason)
        .with("eligible_by", eligible.policy_ids.join(","))
        .with("policy_hash", &eligible.policy_hash);
        if let Some(t) = &request.ticket {
            created = created.with("ticket", t);
        }
        if let Some(why) = &ticket.unavailable {
            created = created.with("ticket_unchecked", why);
        }
        let mut commit = Commit {
            audit: vec![created],
            ..Commit::default()
        };
        let auto = self.decide(
            Action::AutoApprove,
            principal,
            Resource::Entitlement(ent),
            &ctx,
        )?;
        let result = if auto.allowed && ticket.unavailable.is_none() {
            let approved = Self::approve_without_human(
                &request,
                "policy",
                ApprovalVia::Policy,
                "policy",
                &auto,
                &mut commit,
                now,
            )?;
            self.apply_extension(approved, grant, ent, now, &mut commit)?
        } else {
            commit.requests.push(request.clone());
            request
        };
        self.commit(commit).await?;
        self.wake.jobs_changed();
        self.wake.deadlines_changed();
        info!(request_id = %result.id, state = result.state.as_str(), "extension requested");
        Ok(result)
    }

    /// Moves the grant's end for an approved extension, into `commit`; fails the request when
    /// the grant is no longer active or the new total is over the maximum.
    pub(super) fn apply_extension(
        &self,
        approved: Request,
        grant: Grant,
        ent: &Entitlement,
        now: Timestamp,
        commit: &mut Commit,
    ) -> Result<Request> {
        let end = match self.extended_end(ent, &grant, approved.duration) {
            Ok(end) if grant.state == GrantState::Active && grant.expires_at > now => end,
            Ok(_) => {
                return self.fail_into(
                    approved,
                    "the grant ended before the extension was approved",
                    now,
                    commit,
                );
            }
            Err(e) => return self.fail_into(approved, &e.to_string(), now, commit),
        };
        let (extended, ev) = grant.apply(
            GrantCommand::Extend {
                expires_at: end,
                request: approved.id.clone(),
            },
            now,
        )?;
        let (fulfilled, fev) = approved.apply(
            RequestCommand::Fulfil {
                grant_id: grant.id.clone(),
            },
            now,
        )?;
        commit.audit.push(fev.record(now));
        commit.audit.push(ev.record(now));
        commit.jobs.push(JobChange::Schedule {
            grant_id: grant.id.clone(),
            action: JobAction::Extend,
            run_at: now,
        });
        commit.grants.push(extended);
        commit.requests.push(fulfilled.clone());
        Ok(fulfilled)
    }

    fn fail_into(
        &self,
        approved: Request,
        reason: &str,
        now: Timestamp,
        commit: &mut Commit,
    ) -> Result<Request> {
        let (failed, ev) = approved.apply(
            RequestCommand::Fail {
                reason: reason.to_owned(),
            },
            now,
        )?;
        commit.audit.push(ev.record(now));
        commit.requests.push(failed.clone());
        Ok(failed)
    }

    /// Runs an `extend` job: moves the end in the target, and hands over any new credential.
    pub(super) async fn run_extend(
        &self,
        job: &Job,
        grant: Grant,
        token: &str,
    ) -> Result<JobOutcome> {
        let done = |grants: Vec<Grant>, audit: Vec<AuditRecord>| Commit {
            jobs: vec![JobChange::Complete {
                grant_id: grant.id.clone(),
                action: JobAction::Extend,
                lease_token: token.to_owned(),
            }],
            grants,
            audit,
            ..Commit::default()
        };
        if grant.state != GrantState::Active {
            // Revoked or expired meanwhile: the revocation owns the access now.
            return self.finish(done(vec![], vec![]), JobOutcome::Nothing).await;
        }
        let Some(connector) = self.connectors.get(&grant.target) else {
            let error = format!("no connector for target {}", grant.target);
            return self.retry(job, &grant, token, error).await;
        };
        let spec = self.spec(&grant).await?;
        match connector.extend(&spec).await {
            Ok(credential) => {
                let now = self.clock.now();
                let mut updated = grant.clone();
                let mut grants = Vec::new();
                if let Some(c) = &credential {
                    updated.credential_fingerprint =
                        Some(super::jobs::fingerprint(c.expose_secret()));
                    grants.push(updated.clone());
                }
                let ev = AuditRecord::new(
                    now,
                    "system",
                    crate::event::EventKind::GrantExtensionApplied,
                    grant.id.as_str(),
                )
                .with("expires_at", grant.expires_at)
                .with("credential_issued", credential.is_some())
                .with("attempt", job.attempts + 1);
                let mut commit = done(grants, vec![ev]);
                if let Some(secret) = &credential {
                    // With the grant's new version in the same commit: a revocation that
                    // raced this extension fails it, and the credential is never stored.
                    commit.credentials.push(self.credentials.seal(
                        &grant.id,
                        &grant.principal,
                        grant.expires_at,
                        secret,
                    )?);
                }
                self.finish(commit, JobOutcome::Extended).await
            }
            Err(e) => self.retry(job, &grant, token, e.message).await,
        }
    }
}
