//! Admission: what a request must clear before policy judges it.
//!
//! - No silent duplicates: a request whose window overlaps a live grant of the same entitlement
//!   for the same principal is refused (extend the grant instead), and so is a second pending
//!   request for the same access. Two kinds of pending request do not block: an extension of a
//!   grant that has ended (it can never be granted), and any pending request when the new one
//!   breaks glass (an emergency does not wait for an approver). Both are returned, for the new
//!   request's commit to cancel.
//! - Quotas: at most so many live grants at once and requests an hour, per principal
//!   (`[quotas]`) and per entitlement (`max_live_grants`, `max_requests_per_hour`), refused with
//!   429 before anything is written. Break-glass is exempt: it is alerted and reviewed instead,
//!   and an emergency must not wait for a rate limit.
//!
//! These are checks on reads taken just before the commit; two requests racing through them at
//! the same instant can both pass (the quotas are limits on load, not security boundaries, and a
//! second pending request still needs its own approval).

use super::Engine;
use crate::{
    Error, Result, Timestamp,
    catalog::{Entitlement, Principal},
    grant::GrantState,
    policy::Resource,
    request::{Request, RequestCommand},
    store::Commit,
};

const HOUR_MS: i64 = 3_600_000;

impl Engine {
    /// Refuses a request for `[start, end)` that would duplicate access or exceed a quota. For a
    /// profile, every entitlement it grants is checked. Returns the pending requests the new one
    /// supersedes (see the module doc), to be cancelled in its commit.
    pub(super) async fn admit(
        &self,
        principal: &Principal,
        resource: Resource<'_>,
        (start, end): (Timestamp, Timestamp),
        break_glass: bool,
        now: Timestamp,
    ) -> Result<Vec<Request>> {
        let access = resource.access_id();
        for ent in self.members(resource) {
            for g in self.store.live_grants_of(&principal.id, &ent.id).await? {
                if g.starts_at < end && start < g.expires_at {
                    return Err(Error::conflict(
                        crate::ErrorCode::RequestOverlapsGrant,
                        format!(
                            "{} already holds {} until {} (grant {}); extend that grant instead of asking again",
                            principal.id, ent.id, g.expires_at, g.id
                        ),
                    ));
                }
            }
        }
        let mut superseded = Vec::new();
        for r in self
            .store
            .pending_requests_of(&principal.id, &access)
            .await?
        {
            let stale = match &r.extends {
                Some(gid) => self.store.get_grant(gid).await?.is_none_or(|g| {
                    !matches!(g.state, GrantState::Provisioning | GrantState::Active)
                }),
                None => false,
            };
            if !(stale || break_glass) {
                return Err(Error::conflict(
                    crate::ErrorCode::RequestDuplicatePending,
                    format!(
                        "request {} for {access} is already pending; cancel it or wait for its decision",
                        r.id
                    ),
                ));
            }
            superseded.push(r);
        }
        if break_glass {
            return Ok(superseded);
        }
        for ent in self.members(resource) {
            self.check_quotas(principal, ent, now).await?;
        }
        Ok(superseded)
    }

    /// Adds the cancellation of `requests` (superseded ones from [`Engine::admit`], or the
    /// extensions of an ended grant) to `commit`, with `note` as the reason.
    pub(super) fn cancel_into(
        requests: &[Request],
        actor: &str,
        note: &str,
        now: Timestamp,
        commit: &mut Commit,
    ) -> Result<()> {
        for r in requests {
            let (cancelled, ev) = r.apply(
                RequestCommand::Cancel {
                    actor: actor.to_owned(),
                    note: Some(note.to_owned()),
                },
                now,
            )?;
            commit.requests.push(cancelled);
            commit.audit.push(ev.record(now));
        }
        Ok(())
    }

    /// Refuses a request that would exceed a quota of the principal or the entitlement.
    pub(super) async fn check_quotas(
        &self,
        principal: &Principal,
        ent: &Entitlement,
        now: Timestamp,
    ) -> Result<()> {
        let (live_max, requests_max) = self.settings.quotas.for_kind(principal.kind);
        let who = match principal.kind {
            crate::catalog::PrincipalKind::Agent => "an agent",
            _ => "anyone",
        };
        // Counting past the largest limit tells nothing more.
        let cap = [
            Some(live_max),
            Some(requests_max),
            ent.max_live_grants,
            ent.max_requests_per_hour,
        ]
        .into_iter()
        .flatten()
        .max()
        .map_or(0, u64::from);
        let u = self
            .store
            .usage(&principal.id, &ent.id, now.plus_millis(-HOUR_MS), cap)
            .await?;
        let over = |used: u64, max: u32| used >= u64::from(max);
        if over(u.principal_live_grants, live_max) {
            return Err(Error::limited(
                crate::ErrorCode::QuotaPrincipalGrants,
                format!(
                    "{} already holds {live_max} grants, the most {who} may hold at once; let one end or revoke one",
                    principal.id
                ),
            ));
        }
        if over(u.principal_requests, requests_max) {
            return Err(Error::limited(
                crate::ErrorCode::QuotaPrincipalRequests,
                format!(
                    "{} made {requests_max} requests in the last hour, the most {who} may make; try again later",
                    principal.id
                ),
            ));
        }
        if let Some(max) = ent.max_live_grants
            && over(u.entitlement_live_grants, max)
        {
            return Err(Error::limited(
                crate::ErrorCode::QuotaEntitlementGrants,
                format!("{} has {max} grants at once, the most allowed", ent.id),
            ));
        }
        if let Some(max) = ent.max_requests_per_hour
            && over(u.entitlement_requests, max)
        {
            return Err(Error::limited(
                crate::ErrorCode::QuotaEntitlementRequests,
                format!(
                    "{} had {max} requests in the last hour, the most allowed; try again later",
                    ent.id
                ),
            ));
        }
        Ok(())
    }
}
