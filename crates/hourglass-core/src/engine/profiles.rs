//! Opening grants, and keeping a profile's grants together.
//!
//! An approved request opens one grant per entitlement it names: one for an entitlement, one for
//! each entitlement of a task profile, all in the same commit, with the same window and each with
//! its own provisioning job. From then on they stand and fall together: revoking one (by hand,
//! by a policy reload, or because it could not be provisioned in time) revokes the others in the
//! same commit, so a profile is never left half granted. They expire together because they share
//! their window.

use super::Engine;
use crate::{
    Result, Timestamp,
    audit::AuditRecord,
    grant::{Grant, GrantCommand, GrantState},
    id::GrantId,
    job::JobAction,
    policy::Resource,
    request::{Request, RequestCommand},
    store::{Commit, JobChange},
};

impl Engine {
    /// Turns an approved request into provisioning grants with their jobs, into `commit`; fails
    /// the request if its window closed while it waited.
    pub(super) fn open_grant(
        &self,
        approved: Request,
        resource: Resource<'_>,
        now: Timestamp,
        commit: &mut Commit,
    ) -> Result<Request> {
        // The window: from the scheduled start (or now, if that passed while it waited) to the
        // start plus the duration; an unscheduled request starts now.
        let start = approved.starts_at.unwrap_or(now);
        let expires_at = start.plus(approved.duration);
        if expires_at <= now {
            let (failed, ev) = approved.apply(
                RequestCommand::Fail {
                    reason: "the requested window closed before the request was approved".into(),
                },
                now,
            )?;
            commit.audit.push(ev.record(now));
            commit.requests.push(failed.clone());
            return Ok(failed);
        }
        let members = self.members(resource);
        let ids = members
            .iter()
            .map(|_| GrantId::generate(now))
            .collect::<Result<Vec<_>>>()?;
        let Some(first) = ids.first().cloned() else {
            return Err(crate::Error::internal(format!(
                "{} grants no configured entitlement",
                resource.name()
            )));
        };
        let (fulfilled, ev) = approved.apply(RequestCommand::Fulfil { grant_id: first }, now)?;
        commit.audit.push(ev.record(now));
        for (ent, id) in members.into_iter().zip(ids) {
            let grant = Grant {
                id,
                request_id: approved.id.clone(),
                principal: approved.requester.clone(),
                entitlement: ent.id.clone(),
                target: ent.target.clone(),
                state: GrantState::Provisioning,
                starts_at: start.max(now),
                expires_at,
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
            let mut ev = AuditRecord::new(
                now,
                "system",
                crate::event::EventKind::GrantCreated,
                grant.id.as_str(),
            )
            .with("request", &approved.id)
            .with("principal", &grant.principal)
            .with("entitlement", &grant.entitlement)
            .with("starts_at", grant.starts_at)
            .with("expires_at", grant.expires_at);
            if let Resource::Profile(p) = resource {
                ev = ev.with("profile", &p.id);
            }
            commit.audit.push(ev);
            commit.jobs.push(JobChange::Schedule {
                grant_id: grant.id.clone(),
                action: JobAction::Provision,
                run_at: grant.starts_at,
            });
            commit.grants.push(grant);
        }
        commit.requests.push(fulfilled.clone());
        Ok(fulfilled)
    }

    /// The other grants opened by `grant`'s request that may still hold access and are not
    /// being revoked yet (a profile's other entitlements; none for a single entitlement).
    pub(super) async fn live_siblings(&self, grant: &Grant) -> Result<Vec<Grant>> {
        Ok(self
            .store
            .grants_of_request(&grant.request_id)
            .await?
            .into_iter()
            .filter(|g| {
                g.id != grant.id && matches!(g.state, GrantState::Provisioning | GrantState::Active)
            })
            .collect())
    }

    /// Adds the revocation of `grant` and of its live siblings (a profile's other grants) to
    /// `commit`; returns `grant` as revoking.
    pub(super) async fn revoke_together_into(
        &self,
        grant: &Grant,
        actor: &str,
        why: &str,
        now: Timestamp,
        commit: &mut Commit,
    ) -> Result<Grant> {
        let revoking = Self::revoke_into(grant, actor, why.to_owned(), now, commit)?;
        self.revoke_siblings_into(grant, actor, why, now, commit)
            .await?;
        // An extension of an ended grant can never be granted: it ends with it.
        let access = crate::id::AccessId::Entitlement(grant.entitlement.clone());
        let pending = self
            .store
            .pending_requests_of(&grant.principal, &access)
            .await?;
        let extensions: Vec<Request> = pending
            .into_iter()
            .filter(|r| r.extends.as_ref() == Some(&grant.id))
            .collect();
        Self::cancel_into(
            &extensions,
            actor,
            &format!("grant {} ended: {why}", grant.id),
            now,
            commit,
        )?;
        Ok(revoking)
    }

    /// Adds the revocation of `grant`'s live siblings to `commit`, naming `grant` as the cause.
    pub(super) async fn revoke_siblings_into(
        &self,
        grant: &Grant,
        actor: &str,
        why: &str,
        now: Timestamp,
        commit: &mut Commit,
    ) -> Result<()> {
        for sibling in self.live_siblings(grant).await? {
            let reason = format!("{why} (with {}, granted together)", grant.id);
            Self::revoke_into(&sibling, actor, reason, now, commit)?;
        }
        Ok(())
    }

    /// Adds one grant's move to `revoking`, its revoke job and its audit record to `commit`.
    pub(super) fn revoke_into(
        grant: &Grant,
        actor: &str,
        reason: String,
        now: Timestamp,
        commit: &mut Commit,
    ) -> Result<Grant> {
        let (revoking, ev) = grant.apply(
            GrantCommand::Revoke {
                actor: actor.to_owned(),
                reason,
            },
            now,
        )?;
        commit.jobs.push(JobChange::Schedule {
            grant_id: grant.id.clone(),
            action: JobAction::Revoke,
            run_at: now,
        });
        commit.grants.push(revoking.clone());
        commit.audit.push(ev.record(now));
        Ok(revoking)
    }
}
