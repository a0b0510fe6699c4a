//! Reconciliation and standing privilege: comparing what targets hold with what grants say.
//!
//! - A name Hourglass created (found by its prefix through [`Connector::managed`]) whose grant
//!   the ledger says is revoked or failed, or that the ledger never knew, is removed and
//!   reported as drift (`leftover`).
//! - An active grant whose access the target no longer holds is reported as drift (`missing`);
//!   nothing is re-created behind the requester's back.
//! - Holdings found by [`Connector::discover`] that no live grant explains are standing
//!   privilege: the list to convert to just-in-time access.
//!
//! Each drift is one audit event, committed on its own.

use std::collections::BTreeSet;

use serde::Serialize;
use tracing::{instrument, warn};

use super::{Caller, Engine};
use crate::{
    Result,
    audit::AuditRecord,
    error::Error,
    grant::GrantState,
    id::{GrantId, TargetId},
    store::{Commit, GrantFilter},
};

/// What kind of difference between a target and the ledger.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DriftKind {
    /// Exists in the target, but no live grant explains it.
    Leftover,
    /// An active grant whose access is gone from the target.
    Missing,
}

/// One difference found.
#[derive(Debug, Clone, Serialize)]
pub struct Drift {
    pub target: String,
    pub kind: DriftKind,
    /// The name in the target.
    pub name: String,
    pub grant_id: String,
    /// The grant's state in the ledger, if the ledger knows it.
    pub ledger_state: Option<String>,
    /// A leftover that was removed.
    pub removed: bool,
    /// Why removing it failed (it is tried again next run).
    pub error: Option<String>,
}

/// The outcome of one reconciliation run.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ReconcileReport {
    /// Targets whose connector could list what it created.
    pub targets_checked: Vec<String>,
    pub drift: Vec<Drift>,
    /// Targets that could not be checked, and why.
    pub errors: Vec<(String, String)>,
}

/// Privilege held in a target outside any live grant.
#[derive(Debug, Clone, Serialize)]
pub struct Standing {
    pub holder: String,
    pub privilege: String,
    /// The principal the holder is, where the target can tell.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub principal: Option<String>,
    /// The entitlement the privilege is, where the target can tell.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub entitlement: Option<String>,
}

/// One target's standing privilege.
#[derive(Debug, Clone, Serialize)]
pub struct TargetStanding {
    pub target: String,
    pub standing: Vec<Standing>,
    /// Holdings explained by a live grant.
    pub just_in_time: usize,
    /// Set when the target could not be asked.
    pub error: Option<String>,
}

fn live(state: GrantState) -> bool {
    matches!(
        state,
        GrantState::Provisioning | GrantState::Active | GrantState::Revoking
    )
}

impl Engine {
    /// Fails unless the caller may administer every entitlement.
    pub fn require_admin_of_all(&self, caller: &Caller, code: crate::ErrorCode) -> Result<()> {
        let now = self.clock.now();
        let mut any = false;
        for ent in self.catalog.entitlements() {
            any = true;
            if !self.may_administer(
                &caller.principal,
                crate::policy::Resource::Entitlement(ent),
                now,
            )? {
                return Err(Error::forbidden(
                    code,
                    "this takes Administer on every entitlement",
                ));
            }
        }
        if any {
            Ok(())
        } else {
            Err(Error::forbidden(code, "no entitlements are configured"))
        }
    }

    /// Active grants on `target`, ids only.
    async fn active_on(&self, target: &TargetId) -> Result<BTreeSet<String>> {
        let mut out = BTreeSet::new();
        let mut before = None;
        loop {
            let page = self
                .store
                .list_grants(&GrantFilter {
                    state: Some(GrantState::Active),
                    principal: None,
                    before: before.clone(),
                    limit: 1_000,
                })
                .await?;
            let Some(last) = page.last() else {
                return Ok(out);
            };
            before = Some(last.id.clone());
            out.extend(
                page.iter()
                    .filter(|g| &g.target == target)
                    .map(|g| g.id.as_str().to_owned()),
            );
        }
    }

    /// Runs one reconciliation over every target; `actor` is who asked (`system` for the
    /// periodic run).
    #[instrument(skip_all, fields(actor))]
    pub async fn reconcile(&self, actor: &str) -> Result<ReconcileReport> {
        let mut report = ReconcileReport::default();
        for (target, connector) in &self.connectors {
            let managed = match connector.managed().await {
                Ok(Some(m)) => m,
                Ok(None) => continue,
                Err(e) => {
                    warn!(%target, error = %e, "reconcile: cannot list");
                    report.errors.push((target.to_string(), e.message));
                    continue;
                }
            };
            report.targets_checked.push(target.to_string());
            let mut present = BTreeSet::new();
            for m in managed {
                present.insert(m.grant_id.clone());
                let grant = match GrantId::parse(&m.grant_id) {
                    Some(id) => self.store.get_grant(&id).await?,
                    None => None,
                };
                if grant.as_ref().is_some_and(|g| live(g.state)) {
                    continue;
                }
                let mut drift = Drift {
                    target: target.to_string(),
                    kind: DriftKind::Leftover,
                    ledger_state: grant.map(|g| g.state.as_str().to_owned()),
                    removed: false,
                    error: None,
                    name: m.name.clone(),
                    grant_id: m.grant_id.clone(),
                };
                // Recorded before the removal, so that no removal goes unaudited.
                self.record_drift(actor, &drift).await?;
                match connector.remove(&m).await {
                    Ok(()) => drift.removed = true,
                    Err(e) => {
                        warn!(%target, name = %m.name, error = %e, "reconcile: cannot remove");
                        self.commit(Commit {
                            audit: vec![
                                AuditRecord::new(
                                    self.clock.now(),
                                    actor,
                                    crate::event::EventKind::ReconcileRemoveFailed,
                                    &m.grant_id,
                                )
                                .with("target", target)
                                .with("name", &m.name)
                                .with("error", &e.message),
                            ],
                            ..Commit::default()
                        })
                        .await?;
                        drift.error = Some(e.message);
                    }
                }
                report.drift.push(drift);
            }
            for id in self.active_on(target).await? {
                if present.contains(&id) {
                    continue;
                }
                // Fetched again: it may have ended while the target was listed.
                let Some(g) = GrantId::parse(&id) else {
                    continue;
                };
                if self
                    .store
                    .get_grant(&g)
                    .await?
                    .is_none_or(|g| g.state != GrantState::Active)
                {
                    continue;
                }
                let drift = Drift {
                    target: target.to_string(),
                    kind: DriftKind::Missing,
                    name: String::new(),
                    ledger_state: Some(GrantState::Active.as_str().to_owned()),
                    removed: false,
                    error: None,
                    grant_id: id,
                };
                self.record_drift(actor, &drift).await?;
                report.drift.push(drift);
            }
        }
        Ok(report)
    }

    /// `reconcile` on behalf of a caller, who must administer every entitlement.
    pub async fn reconcile_as(&self, caller: &Caller) -> Result<ReconcileReport> {
        self.require_admin_of_all(caller, crate::ErrorCode::ReconcileNotAllowed)?;
        self.reconcile(caller.principal.id.as_str()).await
    }

    async fn record_drift(&self, actor: &str, d: &Drift) -> Result<()> {
        warn!(target = %d.target, kind = ?d.kind, name = %d.name, grant_id = %d.grant_id,
              "reconcile: drift");
        let ev = AuditRecord::new(
            self.clock.now(),
            actor,
            crate::event::EventKind::ReconcileDrift,
            &d.grant_id,
        )
        .with("target", &d.target)
        .with(
            "kind",
            match d.kind {
                DriftKind::Leftover => "leftover",
                DriftKind::Missing => "missing",
            },
        )
        .with("name", &d.name)
        .with(
            "ledger_state",
            d.ledger_state.as_deref().unwrap_or("unknown"),
        )
        .with(
            "remedy",
            match d.kind {
                DriftKind::Leftover => "remove",
                DriftKind::Missing => "report",
            },
        );
        self.commit(Commit {
            audit: vec![ev],
            ..Commit::default()
        })
        .await
        .map(drop)
    }

    /// Standing privilege per target: what `discover` finds that no live grant explains.
    /// Revocation debt: grants whose revocation is overdue (due before `before` and not yet
    /// proven), the longest overdue first, at most `limit`. Administrators of everything only.
    pub async fn overdue_revocations(
        &self,
        caller: &Caller,
        before: crate::Timestamp,
        limit: u32,
    ) -> Result<Vec<crate::grant::Grant>> {
        self.require_admin_of_all(caller, crate::ErrorCode::ReportNotAllowed)?;
        self.store
            .overdue_revocations(before, limit.clamp(1, 1_000))
            .await
    }

    pub async fn standing(&self, caller: &Caller) -> Result<Vec<TargetStanding>> {
        self.require_admin_of_all(caller, crate::ErrorCode::ReportNotAllowed)?;
        self.standing_now().await
    }

    /// Standing privilege in every target, asked now (callers check who may see it).
    pub(super) async fn standing_now(&self) -> Result<Vec<TargetStanding>> {
        let mut out = Vec::new();
        for (target, connector) in &self.connectors {
            let holdings = match connector.discover().await {
                Ok(h) => h,
                Err(e) => {
                    out.push(TargetStanding {
                        target: target.to_string(),
                        standing: Vec::new(),
                        just_in_time: 0,
                        error: Some(e.message),
                    });
                    continue;
                }
            };
            let mut entry = TargetStanding {
                target: target.to_string(),
                standing: Vec::new(),
                just_in_time: 0,
                error: None,
            };
            for h in holdings {
                let explained = match (
                    h.grant_id.as_deref().and_then(GrantId::parse),
                    h.principal.as_deref().map(crate::id::PrincipalId::new),
                    &h.entitlement,
                ) {
                    (Some(id), _, _) => self
                        .store
                        .get_grant(&id)
                        .await?
                        .is_some_and(|g| live(g.state)),
                    // A holding the target cannot tag: a live grant of that entitlement to that
                    // principal explains it (a directory group's member).
                    (None, Some(Ok(who)), Some(ent)) => {
                        let mut found = false;
                        for state in [
                            GrantState::Provisioning,
                            GrantState::Active,
                            GrantState::Revoking,
                        ] {
                            found |= self
                                .store
                                .list_grants(&crate::store::GrantFilter {
                                    state: Some(state),
                                    principal: Some(who.clone()),
                                    before: None,
                                    limit: 500,
                                })
                                .await?
                                .iter()
                                .any(|g| g.entitlement.as_str() == ent);
                        }
                        found
                    }
                    _ => false,
                };
                if explained {
                    entry.just_in_time += 1;
                } else {
                    entry.standing.push(Standing {
                        holder: h.holder,
                        privilege: h.privilege,
                        principal: h.principal,
                        entitlement: h.entitlement,
                    });
                }
            }
            out.push(entry);
        }
        Ok(out)
    }
}
