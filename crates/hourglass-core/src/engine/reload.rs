//! Policy changes at run time.
//!
//! A new policy set (already parsed and validated against the schema by the caller: a set that
//! fails keeps the old one in force) takes effect only once its `policy.reloaded` audit event,
//! naming the old and new hashes, is committed. Then everything that an earlier decision let
//! through but that has no access yet is judged again under the new set: pending requests that
//! the requester is no longer eligible for are cancelled, and grants still provisioning (not yet
//! active, or scheduled) that policy now denies are revoked before they ever activate. An
//! approval never outlives a policy change that now denies it.

use std::sync::{Arc, PoisonError};

use tracing::{info, instrument};

use super::{Caller, Engine, retry_on_conflict};
use crate::{
    Result,
    audit::AuditRecord,
    grant::{Grant, GrantState},
    id::{GrantId, RequestId},
    policy::PolicyDecider,
    request::{Request, RequestCommand, RequestState},
    store::{Commit, GrantFilter, PolicyInForce, RequestFilter},
};

const PAGE: u32 = 200;

/// What a reload changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReloadReport {
    pub old_hash: String,
    pub new_hash: String,
    /// Pending requests cancelled because the new set no longer permits them.
    pub cancelled: Vec<RequestId>,
    /// Grants that had not activated yet, now being revoked.
    pub revoked: Vec<GrantId>,
}

impl Engine {
    /// Puts `new` in force and judges again what is waiting. `caller` is `None` for the
    /// operator's signal (`SIGHUP`); an API caller needs Administer on every entitlement.
    #[instrument(skip_all)]
    pub async fn reload_policy(
        &self,
        caller: Option<&Caller>,
        new: Arc<dyn PolicyDecider>,
    ) -> Result<ReloadReport> {
        if let Some(c) = caller {
            self.require_admin_of_all(c, crate::ErrorCode::PolicyReloadNotAllowed)?;
        }
        let actor = caller.map_or_else(|| "system".to_owned(), |c| c.principal.id.to_string());
        let old_hash = self.policy_hash();
        self.put_in_force(&actor, new, old_hash, "reload").await
    }

    /// At start: if the ledger records another set in force (or none), this process's set is
    /// put in force, as a reload would (the last start or reload wins; replicas still on
    /// another set see it and follow, or report themselves stale). `None` if it already was.
    #[instrument(skip_all)]
    pub async fn put_policy_in_force_at_start(&self) -> Result<Option<ReloadReport>> {
        let ours = self.policy_hash();
        let recorded = self.store.policy_in_force().await?;
        if recorded.as_ref().is_some_and(|p| p.hash == ours) {
            return Ok(None);
        }
        let current = Arc::clone(&*self.policy.read().unwrap_or_else(PoisonError::into_inner));
        let old_hash = recorded.map(|p| p.hash).unwrap_or_default();
        self.put_in_force("system", current, old_hash, "start")
            .await
            .map(Some)
    }

    /// Whether this process decides under the set the ledger records in force: `Ok(None)` if
    /// so, else the recorded hash.
    pub async fn policy_behind(&self) -> Result<Option<String>> {
        let ours = self.policy_hash();
        Ok(self
            .store
            .policy_in_force()
            .await?
            .map(|p| p.hash)
            .filter(|h| *h != ours))
    }

    /// Follows a set another process put in force (it already audited the change and judged
    /// again what was waiting): swaps `new` in if it is the recorded set; whether it was.
    pub async fn follow_policy(&self, new: Arc<dyn PolicyDecider>) -> Result<bool> {
        let hash = new.policy_hash();
        let recorded = self.store.policy_in_force().await?;
        if recorded.is_none_or(|p| p.hash != hash) {
            return Ok(false);
        }
        let old = self.policy_hash();
        *self.policy.write().unwrap_or_else(PoisonError::into_inner) = new;
        if old != hash {
            info!(old_hash = %old, new_hash = %hash, "following the policy set another replica put in force");
        }
        Ok(true)
    }

    async fn put_in_force(
        &self,
        actor: &str,
        new: Arc<dyn PolicyDecider>,
        old_hash: String,
        why: &str,
    ) -> Result<ReloadReport> {
        let new_hash = new.policy_hash();
        let now = self.clock.now();
        self.commit(Commit {
            audit: vec![
                AuditRecord::new(
                    now,
                    actor,
                    crate::event::EventKind::PolicyReloaded,
                    &new_hash,
                )
                .with("old_hash", &old_hash)
                .with("new_hash", &new_hash)
                .with("changed", old_hash != new_hash)
                .with("on", why),
            ],
            policy: Some(PolicyInForce {
                hash: new_hash.clone(),
                set_at: now,
                set_by: actor.to_owned(),
            }),
            ..Commit::default()
        })
        .await?;
        *self.policy.write().unwrap_or_else(PoisonError::into_inner) = new;
        info!(%old_hash, %new_hash, on = why, "policy set in force");
        let cancelled = self.recheck_pending(&new_hash).await?;
        let revoked = self.recheck_provisioning().await?;
        if !revoked.is_empty() {
            self.wake.jobs_changed();
        }
        Ok(ReloadReport {
            old_hash,
            new_hash,
            cancelled,
            revoked,
        })
    }

    async fn recheck_pending(&self, new_hash: &str) -> Result<Vec<RequestId>> {
        let mut cancelled = Vec::new();
        let mut before = None;
        loop {
            let page = self
                .store
                .list_requests(&RequestFilter {
                    state: Some(RequestState::Pending),
                    requester: None,
                    before: before.take(),
                    limit: PAGE,
                })
                .await?;
            before = page.last().map(|r| r.id.clone());
            for stale in &page {
                if self.cancel_if_denied(stale, new_hash).await? {
                    cancelled.push(stale.id.clone());
                }
            }
            if (page.len() as u32) < PAGE {
                return Ok(cancelled);
            }
        }
    }

    async fn cancel_if_denied(&self, stale: &Request, new_hash: &str) -> Result<bool> {
        retry_on_conflict(move || async move {
            let Some(req) = self.store.get_request(&stale.id).await? else {
                return Ok(false);
            };
            let now = self.clock.now();
            if req.state != RequestState::Pending || self.still_permitted(&req, now).await? {
                return Ok(false);
            }
            let (cancelled, ev) = req.apply(
                RequestCommand::Cancel {
                    actor: "system".into(),
                    note: Some(format!(
                        "policy set {new_hash} no longer permits this request"
                    )),
                },
                now,
            )?;
            self.commit(Commit {
                requests: vec![cancelled],
                audit: vec![ev.record(now).with("policy_hash", new_hash)],
                ..Commit::default()
            })
            .await?;
            Ok(true)
        })
        .await
    }

    async fn recheck_provisioning(&self) -> Result<Vec<GrantId>> {
        let mut revoked = Vec::new();
        let mut before = None;
        loop {
            let page = self
                .store
                .list_grants(&GrantFilter {
                    state: Some(GrantState::Provisioning),
                    principal: None,
                    before: before.take(),
                    limit: PAGE,
                })
                .await?;
            before = page.last().map(|g| g.id.clone());
            for stale in &page {
                if self.revoke_if_denied(stale).await? {
                    revoked.push(stale.id.clone());
                }
            }
            if (page.len() as u32) < PAGE {
                return Ok(revoked);
            }
        }
    }

    async fn revoke_if_denied(&self, stale: &Grant) -> Result<bool> {
        retry_on_conflict(move || async move {
            let Some(grant) = self.store.get_grant(&stale.id).await? else {
                return Ok(false);
            };
            let now = self.clock.now();
            if grant.state != GrantState::Provisioning {
                return Ok(false);
            }
            let Some(reason) = self.recheck_grant(&grant, now).await? else {
                return Ok(false);
            };
            let mut commit = Commit::default();
            self.revoke_together_into(&grant, "system", &reason, now, &mut commit)
                .await?;
            self.commit(commit).await?;
            Ok(true)
        })
        .await
    }
}
