//! After a restore from a backup: the ledger is older than the targets, and must never grant
//! again what ended after the backup, nor end early what was extended after it.
//!
//! [`Engine::after_restore`] runs once, before any worker (`hourglass serve --after-restore`),
//! and makes the restored ledger agree with the targets:
//!
//! - A grant that was still **provisioning** is ended, never provisioned again: the backup
//!   cannot tell whether it was revoked since.
//! - An **approved request waiting for its start** is cancelled, for the same reason.
//! - An **active** grant is looked up in its target. Gone: it ended after the backup, and ends
//!   in the ledger too. Held with a later end than the ledger's (a PostgreSQL login role's
//!   `VALID UNTIL`, moved by an extension made after the backup): the grant keeps it, within
//!   the entitlement's maximum total, so the scheduler does not revoke it at the older end
//!   (Vault #22275 is that failure). Held otherwise: confirmed as it is.
//! - An active grant on a target that cannot list what it holds (SSH certificates, tokens,
//!   webhooks), or that cannot be reached now, is ended: nothing can show that it was not
//!   revoked after the backup (an SSH certificate's revocation would otherwise be missing from
//!   the KRL). Fail closed; the person asks again.
//! - Then reconciliation removes what the targets hold and the ledger never knew (grants made
//!   after the backup).
//!
//! Every change is its own commit with its audit record, and the whole run is one
//! `store.restored` event.

use std::collections::BTreeMap;

use serde::Serialize;
use tracing::{info, warn};

use super::{Engine, reconcile::ReconcileReport};
use crate::{
    Result, Timestamp,
    audit::AuditRecord,
    connector::Managed,
    event::EventKind,
    grant::{Grant, GrantCommand, GrantState},
    request::RequestCommand,
    state::RequestState,
    store::{Commit, GrantFilter, RequestFilter},
};

/// Who the restore's changes are recorded as.
pub const RESTORE_ACTOR: &str = "system:restore";

/// What [`Engine::after_restore`] found and did, by grant or request id.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RestoreReport {
    /// The audit head the restored store started from.
    pub head_seq: u64,
    /// Grants that were provisioning: ended, never provisioned again.
    pub provisioning_ended: Vec<String>,
    /// Approved requests that were waiting for their start: cancelled.
    pub requests_cancelled: Vec<String>,
    /// Active grants their target no longer holds (they ended after the backup): ended.
    pub gone_ended: Vec<String>,
    /// Active grants on targets that cannot list what they hold, or cannot be reached: ended.
    pub unverifiable_ended: Vec<String>,
    /// Active grants whose target enforces a later end: `(grant, old end, new end)`.
    pub ends_restored: Vec<(String, Timestamp, Timestamp)>,
    /// Active grants the target holds as the ledger has them.
    pub confirmed: Vec<String>,
    /// Targets that could not be asked, and why.
    pub unreachable: Vec<(String, String)>,
    /// The reconciliation that followed (leftovers of grants made after the backup).
    pub reconcile: ReconcileReport,
}

/// What the restore does with one active grant, given what its target says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// The target holds it as the ledger has it.
    Confirmed,
    /// The target enforces this later end (already capped).
    AdoptEnd(Timestamp),
    /// The target no longer holds it.
    Gone,
    /// Nothing can show it is still meant to exist.
    Unverifiable,
}

/// Decides one active grant: `held` is the target's listing (`None`: the target cannot list or
/// be asked), `cap` the latest end the entitlement allows this grant.
pub(crate) fn judge(grant: &Grant, held: Option<&[Managed]>, cap: Timestamp) -> Verdict {
    let Some(held) = held else {
        return Verdict::Unverifiable;
    };
    let Some(m) = held.iter().find(|m| m.grant_id == grant.id.as_str()) else {
        return Verdict::Gone;
    };
    match m.ends_at {
        Some(end) if end > grant.expires_at => Verdict::AdoptEnd(end.min(cap)),
        _ => Verdict::Confirmed,
    }
}

impl Engine {
    /// Every grant in `state`, oldest last.
    async fn all_grants(&self, state: GrantState) -> Result<Vec<Grant>> {
        let mut out: Vec<Grant> = Vec::new();
        loop {
            let page = self
                .store
                .list_grants(&GrantFilter {
                    state: Some(state),
                    principal: None,
                    before: out.last().map(|g| g.id.clone()),
                    limit: 1_000,
                })
                .await?;
            if page.is_empty() {
                return Ok(out);
            }
            out.extend(page);
        }
    }

    /// Makes a ledger restored from a backup agree with the targets (see the module): run once,
    /// before the workers start.
    pub async fn after_restore(&self) -> Result<RestoreReport> {
        let mut report = RestoreReport {
            head_seq: self.store.audit_head_seq().await?,
            ..RestoreReport::default()
        };
        let why_not_replayed = "the store was restored from a backup: what was in progress at \
                                the backup is not replayed; ask again";
        for g in self.all_grants(GrantState::Provisioning).await? {
            self.end_after_restore(&g, why_not_replayed).await?;
            report.provisioning_ended.push(g.id.to_string());
        }
        let mut approved = Vec::new();
        loop {
            let page = self
                .store
                .list_requests(&RequestFilter {
                    state: Some(RequestState::Approved),
                    requester: None,
                    before: approved
                        .last()
                        .map(|r: &crate::request::Request| r.id.clone()),
                    limit: 1_000,
                })
                .await?;
            if page.is_empty() {
                break;
            }
            approved.extend(page);
        }
        for r in approved {
            let now = self.clock.now();
            let (cancelled, ev) = r.apply(
                RequestCommand::Cancel {
                    actor: RESTORE_ACTOR.to_owned(),
                    note: Some(why_not_replayed.to_owned()),
                },
                now,
            )?;
            self.commit(Commit {
                requests: vec![cancelled],
                audit: vec![ev.record(now)],
                ..Commit::default()
            })
            .await?;
            report.requests_cancelled.push(r.id.to_string());
        }

        let active = self.all_grants(GrantState::Active).await?;
        let mut listings: BTreeMap<String, Option<Vec<Managed>>> = BTreeMap::new();
        for g in &active {
            let key = g.target.to_string();
            if listings.contains_key(&key) {
                continue;
            }
            let listing = match self.connectors.get(&g.target) {
                Some(c) => match c.managed().await {
                    Ok(l) => l,
                    Err(e) => {
                        warn!(target = %key, error = %e, "after restore: cannot list the target");
                        report.unreachable.push((key.clone(), e.message));
                        None
                    }
                },
                None => {
                    report
                        .unreachable
                        .push((key.clone(), "no connector is configured".into()));
                    None
                }
            };
            listings.insert(key, listing);
        }
        for g in active {
            let cap = match self.catalog.entitlement(&g.entitlement) {
                Some(ent) => g.starts_at.plus(self.max_total(ent, &g)),
                None => g.expires_at,
            };
            let held = listings.get(g.target.as_str()).and_then(|l| l.as_deref());
            match judge(&g, held, cap) {
                Verdict::Confirmed => report.confirmed.push(g.id.to_string()),
                Verdict::AdoptEnd(end) if end > g.expires_at => {
                    let now = self.clock.now();
                    let (moved, ev) = g.apply(
                        GrantCommand::AdoptTargetEnd {
                            expires_at: end,
                            target: g.target.to_string(),
                        },
                        now,
                    )?;
                    self.commit(Commit {
                        grants: vec![moved],
                        audit: vec![ev.record(now)],
                        ..Commit::default()
                    })
                    .await?;
                    report
                        .ends_restored
                        .push((g.id.to_string(), g.expires_at, end));
                }
                // The cap is not later than the ledger's end: nothing to adopt.
                Verdict::AdoptEnd(_) => report.confirmed.push(g.id.to_string()),
                Verdict::Gone => {
                    let why = format!(
                        "the store was restored from a backup and {} no longer holds this \
                         grant: it ended after the backup",
                        g.target
                    );
                    self.end_after_restore(&g, &why).await?;
                    report.gone_ended.push(g.id.to_string());
                }
                Verdict::Unverifiable => {
                    let why = format!(
                        "the store was restored from a backup and {} cannot show that this \
                         grant was not ended after it; ask again",
                        g.target
                    );
                    self.end_after_restore(&g, &why).await?;
                    report.unverifiable_ended.push(g.id.to_string());
                }
            }
        }
        report.reconcile = self.reconcile(RESTORE_ACTOR).await?;

        let now = self.clock.now();
        let n = |v: usize| v.to_string();
        self.commit(Commit {
            audit: vec![
                AuditRecord::new(
                    now,
                    RESTORE_ACTOR,
                    EventKind::StoreRestored,
                    report.head_seq.to_string(),
                )
                .with("head_seq", report.head_seq)
                .with("provisioning_ended", n(report.provisioning_ended.len()))
                .with("requests_cancelled", n(report.requests_cancelled.len()))
                .with("gone_ended", n(report.gone_ended.len()))
                .with("unverifiable_ended", n(report.unverifiable_ended.len()))
                .with("ends_restored", n(report.ends_restored.len()))
                .with("confirmed", n(report.confirmed.len()))
                .with(
                    "unreachable",
                    report
                        .unreachable
                        .iter()
                        .map(|(t, _)| t.as_str())
                        .collect::<Vec<_>>()
                        .join(","),
                ),
            ],
            ..Commit::default()
        })
        .await?;
        info!(
            head_seq = report.head_seq,
            provisioning_ended = report.provisioning_ended.len(),
            requests_cancelled = report.requests_cancelled.len(),
            gone_ended = report.gone_ended.len(),
            unverifiable_ended = report.unverifiable_ended.len(),
            ends_restored = report.ends_restored.len(),
            confirmed = report.confirmed.len(),
            "after restore: the ledger agrees with the targets"
        );
        Ok(report)
    }

    /// Ends one grant as the restore does (revoked at the target too, which is idempotent).
    async fn end_after_restore(&self, g: &Grant, why: &str) -> Result<()> {
        let now = self.clock.now();
        let mut commit = Commit::default();
        Self::revoke_into(g, RESTORE_ACTOR, why.to_owned(), now, &mut commit)?;
        self.commit(commit).await.map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grant(expires_ms: i64) -> Grant {
        let mut g = crate::grant::tests::provisioning();
        g.state = GrantState::Active;
        g.starts_at = Timestamp::from_unix_millis(0);
        g.expires_at = Timestamp::from_unix_millis(expires_ms);
        g
    }

    fn held(grant_id: &str, ends_ms: Option<i64>) -> Managed {
        Managed {
            name: format!("hg_{grant_id}"),
            grant_id: grant_id.to_owned(),
            ends_at: ends_ms.map(Timestamp::from_unix_millis),
        }
    }

    #[test]
    fn each_answer_of_the_target_has_its_verdict() {
        let g = grant(3_600_000);
        let cap = Timestamp::from_unix_millis(8 * 3_600_000);
        assert_eq!(judge(&g, None, cap), Verdict::Unverifiable);
        assert_eq!(judge(&g, Some(&[]), cap), Verdict::Gone);
        assert_eq!(
            judge(&g, Some(&[held("grt_other", Some(9))]), cap),
            Verdict::Gone
        );
        assert_eq!(
            judge(&g, Some(&[held(g.id.as_str(), None)]), cap),
            Verdict::Confirmed
        );
        // An end no later than the ledger's is not an extension.
        assert_eq!(
            judge(&g, Some(&[held(g.id.as_str(), Some(3_600_000))]), cap),
            Verdict::Confirmed
        );
        assert_eq!(
            judge(&g, Some(&[held(g.id.as_str(), Some(1_000))]), cap),
            Verdict::Confirmed
        );
        assert_eq!(
            judge(&g, Some(&[held(g.id.as_str(), Some(7_200_000))]), cap),
            Verdict::AdoptEnd(Timestamp::from_unix_millis(7_200_000))
        );
        // Never past the entitlement's maximum total, whatever the target says.
        assert_eq!(
            judge(&g, Some(&[held(g.id.as_str(), Some(99 * 3_600_000))]), cap),
            Verdict::AdoptEnd(cap)
        );
    }

    #[test]
    fn only_an_active_grant_takes_a_later_end_from_its_target() {
        let g = grant(3_600_000);
        let at = Timestamp::from_unix_millis(10);
        let later = Timestamp::from_unix_millis(7_200_000);
        let (moved, ev) = g
            .apply(
                GrantCommand::AdoptTargetEnd {
                    expires_at: later,
                    target: "db".into(),
                },
                at,
            )
            .unwrap();
        assert_eq!(moved.expires_at, later);
        let rec = ev.record(at);
        assert_eq!(rec.action, "grant.end_restored");
        assert_eq!(rec.actor, RESTORE_ACTOR);
        for (cmd_end, state) in [
            (Timestamp::from_unix_millis(1_000), GrantState::Active),
            (later, GrantState::Revoking),
            (later, GrantState::Provisioning),
        ] {
            let mut g = grant(3_600_000);
            g.state = state;
            assert!(
                g.apply(
                    GrantCommand::AdoptTargetEnd {
                        expires_at: cmd_end,
                        target: "db".into()
                    },
                    at
                )
                .is_err(),
                "{state:?} took {cmd_end}"
            );
        }
    }
}
