//! Work that only the workers do: closing expired windows and pending requests past their
//! deadline, and running the provisioning and revocation jobs against connectors.
//!
//! A job is claimed under a lease and every write about it is fenced by the lease token. The
//! connector runs between two commits: the intent (grant row + job) was committed before, and the
//! outcome (grant state, job completion or retry, audit) is committed after. Killed in between,
//! the job is claimed again after restart and the idempotent connector call is repeated, so the
//! access exists once and is always revoked.

use secrecy::ExposeSecret;
use sha2::{Digest, Sha256};
use tracing::{info, instrument, warn};

use super::{Engine, retry_on_conflict};
use crate::{
    Error, Result, Timestamp,
    connector::{GrantSpec, RevocationProof},
    grant::{Grant, GrantCommand, GrantState},
    job::{Job, JobAction},
    request::RequestCommand,
    store::{Commit, JobChange},
};

/// What became of one job run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobOutcome {
    /// Provisioned: the grant is active.
    Activated,
    /// An extension's new end is in the target too.
    Extended,
    /// Revoked and proven gone (or, for a target that cannot prove it, confirmed); `lag_ms`
    /// past the moment it was due.
    Revoked { lag_ms: i64, proven: bool },
    /// The connector failed; the job runs again at `retry_at`.
    Retry {
        attempt: u32,
        retry_at: Timestamp,
        error: String,
    },
    /// Provisioning was abandoned (window closed, policy now denies): cleanup is scheduled.
    Abandoned { reason: String },
    /// Someone else changed the job or grant meanwhile (revoked during provisioning, lease lost).
    Superseded,
    /// Nothing left to do for this job.
    Nothing,
}

/// One job run, for metrics and logs.
#[derive(Debug, Clone)]
pub struct JobReport {
    pub grant_id: String,
    pub action: JobAction,
    pub outcome: JobOutcome,
}

pub(super) fn fingerprint(secret: &str) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(secret.as_bytes())))
}

impl Engine {
    /// Moves due grants to `revoking` and expires pending requests past their deadline, in
    /// batches of at most `limit`. Returns how many changed.
    #[instrument(skip_all)]
    pub async fn expire_due(&self, limit: u32) -> Result<usize> {
        let now = self.clock.now();
        let mut changed = 0;
        let mut grants = self.store.due_expiries(now, limit).await?;
        let mut tries = 0;
        while !grants.is_empty() {
            let mut commit = Commit::default();
            for g in &grants {
                let (revoking, ev) = g.apply(GrantCommand::Expire, now)?;
                commit.jobs.push(JobChange::Schedule {
                    grant_id: g.id.clone(),
                    action: JobAction::Revoke,
                    run_at: now,
                });
                commit.grants.push(revoking);
                commit.audit.push(ev.record(now));
            }
            match self.commit(commit).await {
                Ok(_) => {
                    changed += grants.len();
                    break;
                }
                // One of them changed meanwhile: another replica expired the same batch, or
                // someone revoked one by hand. Read what is still due and try the batch again;
                // after a few tries, take them one at a time.
                Err(Error::StoreConflict) if tries < 3 => {
                    tries += 1;
                    grants = self.store.due_expiries(now, limit).await?;
                }
                Err(Error::StoreConflict) => {
                    for g in &grants {
                        changed += usize::from(self.expire_one(g).await?);
                    }
                    break;
                }
                Err(e) => return Err(e),
            }
        }
        if changed > 0 {
            self.wake.jobs_changed();
        }
        for req in self.store.due_request_deadlines(now, limit).await? {
            let (expired, ev) = req.apply(RequestCommand::Expire, now)?;
            match self
                .commit(Commit {
                    requests: vec![expired],
                    audit: vec![ev.record(now)],
                    ..Commit::default()
                })
                .await
            {
                Ok(_) => changed += 1,
                Err(Error::StoreConflict) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(changed)
    }

    async fn expire_one(&self, stale: &Grant) -> Result<bool> {
        retry_on_conflict(move || async move {
            let Some(g) = self.store.get_grant(&stale.id).await? else {
                return Ok(false);
            };
            let now = self.clock.now();
            if g.state != GrantState::Active || g.expires_at > now {
                return Ok(false);
            }
            let (revoking, ev) = g.apply(GrantCommand::Expire, now)?;
            self.commit(Commit {
                jobs: vec![JobChange::Schedule {
                    grant_id: g.id.clone(),
                    action: JobAction::Revoke,
                    run_at: now,
                }],
                grants: vec![revoking],
                audit: vec![ev.record(now)],
                ..Commit::default()
            })
            .await?;
            Ok(true)
        })
        .await
    }

    /// The next moment the expiry scheduler must act.
    pub async fn next_deadline(&self) -> Result<Option<Timestamp>> {
        let a = self.store.next_expiry().await?;
        let b = self.store.next_request_deadline().await?;
        Ok(match (a, b) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        })
    }

    /// Leases up to `limit` due jobs for this worker.
    /// Whether this process runs the periodic `task` now. On a store only this process uses,
    /// always; on a shared store, the replica that takes the task's turn, which it holds for
    /// `period` (so one replica a period runs it, and another once a holder stops taking it).
    pub async fn take_turn(&self, task: &str, period: crate::GrantDuration) -> Result<bool> {
        if !self.store.is_shared() {
            return Ok(true);
        }
        let now = self.clock.now();
        self.store
            .take_turn(task, &self.settings.worker_id, now, now.plus(period))
            .await
    }

    pub async fn claim_jobs(&self, limit: u32) -> Result<Vec<Job>> {
        let now = self.clock.now();
        self.store
            .claim_jobs(
                now,
                &self.settings.worker_id,
                now.plus_millis(self.settings.lease_ms),
                limit,
            )
            .await
    }

    /// When the next job becomes due.
    pub async fn next_job_at(&self) -> Result<Option<Timestamp>> {
        self.store.next_job_at().await
    }

    pub(super) async fn spec(&self, grant: &Grant) -> Result<GrantSpec> {
        let ent = self.catalog.entitlement(&grant.entitlement);
        let kind = self
            .principal(&grant.principal)
            .await?
            .map_or(crate::catalog::PrincipalKind::Human, |p| p.kind);
        Ok(GrantSpec {
            grant_id: grant.id.clone(),
            principal: grant.principal.clone(),
            principal_kind: kind,
            entitlement: grant.entitlement.clone(),
            target: grant.target.clone(),
            starts_at: grant.starts_at,
            expires_at: grant.expires_at,
            params: ent.map_or(serde_json::Value::Null, |e| e.params.clone()),
            handle: grant.handle.clone(),
            public_key: grant.public_key.clone(),
        })
    }

    /// Runs one claimed job to its next resting point.
    #[instrument(skip_all, fields(grant_id = %job.grant_id, action = job.action.as_str()))]
    pub async fn execute_job(&self, job: Job) -> Result<JobReport> {
        let report = |outcome| JobReport {
            grant_id: job.grant_id.to_string(),
            action: job.action,
            outcome,
        };
        let Some(lease) = job.lease.clone() else {
            return Err(Error::internal("execute_job needs a leased job"));
        };
        let token = lease.token;
        let Some(grant) = self.store.get_grant(&job.grant_id).await? else {
            warn!("job for an unknown grant; dropping it");
            self.commit(Commit {
                jobs: vec![JobChange::Complete {
                    grant_id: job.grant_id.clone(),
                    action: job.action,
                    lease_token: token,
                }],
                ..Commit::default()
            })
            .await?;
            return Ok(report(JobOutcome::Nothing));
        };
        let outcome = match job.action {
            JobAction::Provision => self.provision(&job, grant, &token).await?,
            JobAction::Extend => self.run_extend(&job, grant, &token).await?,
            JobAction::Revoke => self.run_revoke(&job, grant, &token).await?,
        };
        Ok(report(outcome))
    }

    async fn provision(&self, job: &Job, grant: Grant, token: &str) -> Result<JobOutcome> {
        if grant.state != GrantState::Provisioning {
            let c = JobChange::Complete {
                grant_id: grant.id.clone(),
                action: JobAction::Provision,
                lease_token: token.to_owned(),
            };
            return self
                .finish(
                    Commit {
                        jobs: vec![c],
                        ..Commit::default()
                    },
                    JobOutcome::Nothing,
                )
                .await;
        }
        let now = self.clock.now();
        if now >= grant.expires_at {
            return self
                .abandon(
                    grant,
                    token,
                    "the window closed before provisioning succeeded",
                )
                .await;
        }
        if now >= grant.starts_at.plus(self.settings.provision_timeout) {
            let reason = format!(
                "could not be provisioned within {}",
                self.settings.provision_timeout
            );
            return self.abandon(grant, token, &reason).await;
        }
        // Policy is judged again at activation, with the facts of the request.
        let recheck = self.recheck_grant(&grant, now).await?;
        if let Some(reason) = recheck {
            return self.abandon(grant, token, &reason).await;
        }
        let Some(connector) = self.connectors.get(&grant.target) else {
            return self
                .retry(
                    job,
                    &grant,
                    token,
                    format!("no connector for target {}", grant.target),
                )
                .await;
        };
        let spec = self.spec(&grant).await?;
        match connector.grant(&spec).await {
            Ok(provisioned) => {
                let now = self.clock.now();
                let fp = provisioned
                    .credential
                    .as_ref()
                    .map(|c| fingerprint(c.expose_secret()));
                let (active, ev) = grant.apply(
                    GrantCommand::Activate {
                        handle: provisioned.handle.clone(),
                        credential_fingerprint: fp,
                    },
                    now,
                )?;
                let credentials = match &provisioned.credential {
                    Some(secret) => vec![self.credentials.seal(
                        &active.id,
                        &active.principal,
                        active.expires_at,
                        secret,
                    )?],
                    None => Vec::new(),
                };
                let commit = Commit {
                    jobs: vec![JobChange::Complete {
                        grant_id: grant.id.clone(),
                        action: JobAction::Provision,
                        lease_token: token.to_owned(),
                    }],
                    grants: vec![active.clone()],
                    credentials,
                    audit: vec![
                        ev.record(now)
                            .with("attempt", job.attempts + 1)
                            .with("credential_issued", provisioned.credential.is_some()),
                    ],
                    ..Commit::default()
                };
                match self.commit(commit).await {
                    Ok(_) => {
                        info!(expires_at = %active.expires_at, "grant active");
                        self.wake.deadlines_changed();
                        Ok(JobOutcome::Activated)
                    }
                    // Revoked while we provisioned: keep the handle so the revoke can undo what
                    // was created, and hand the job over to the revocation. The credential is
                    // dropped unseen.
                    Err(Error::StoreConflict) => {
                        self.hand_over_to_revoke(&grant, token, provisioned.handle)
                            .await
                    }
                    Err(e) => Err(e),
                }
            }
            Err(e) => self.retry(job, &grant, token, e.message).await,
        }
    }

    /// Why the grant may no longer be provisioned (principal or entitlement gone or inactive,
    /// or policy now denies it), or `None` when it still may.
    pub(super) async fn recheck_grant(
        &self,
        grant: &Grant,
        now: Timestamp,
    ) -> Result<Option<String>> {
        let (Some(p), Some(_)) = (
            self.principal(&grant.principal).await?,
            self.catalog.entitlement(&grant.entitlement),
        ) else {
            return Ok(Some(
                "the principal or entitlement is no longer configured".to_owned(),
            ));
        };
        if p.status != crate::catalog::PrincipalStatus::Active {
            return Ok(Some("the principal is no longer active".to_owned()));
        }
        let Some(req) = self.store.get_request(&grant.request_id).await? else {
            return Ok(Some("the grant's request is missing".to_owned()));
        };
        // The request is judged again as a whole (a profile as its profile).
        Ok((!self.still_permitted(&req, now).await?).then(|| {
            format!(
                "policy no longer permits this grant (policy set {})",
                self.policy_hash()
            )
        }))
    }

    async fn hand_over_to_revoke(
        &self,
        stale: &Grant,
        token: &str,
        handle: Option<serde_json::Value>,
    ) -> Result<JobOutcome> {
        let Some(mut current) = self.store.get_grant(&stale.id).await? else {
            return Ok(JobOutcome::Superseded);
        };
        let mut commit = Commit::default();
        if current.handle.is_none() && handle.is_some() {
            current.handle = handle;
            commit.grants.push(current);
        }
        commit.jobs.push(JobChange::Reschedule {
            grant_id: stale.id.clone(),
            lease_token: token.to_owned(),
            from_action: JobAction::Revoke,
            action: JobAction::Revoke,
            run_at: self.clock.now(),
            attempts: 0,
            last_error: None,
        });
        self.finish(commit, JobOutcome::Superseded).await
    }

    async fn abandon(&self, grant: Grant, token: &str, reason: &str) -> Result<JobOutcome> {
        let now = self.clock.now();
        let (revoking, ev) = grant.apply(
            GrantCommand::Revoke {
                actor: "system".into(),
                reason: reason.to_owned(),
            },
            now,
        )?;
        warn!(reason, "provisioning abandoned; cleaning up");
        let mut commit = Commit {
            jobs: vec![JobChange::Reschedule {
                grant_id: grant.id.clone(),
                lease_token: token.to_owned(),
                from_action: JobAction::Provision,
                action: JobAction::Revoke,
                run_at: now,
                attempts: 0,
                last_error: None,
            }],
            grants: vec![revoking],
            audit: vec![ev.record(now)],
            ..Commit::default()
        };
        // A profile is never left half granted: what was granted with it is rolled back.
        self.revoke_siblings_into(&grant, "system", reason, now, &mut commit)
            .await?;
        self.finish(
            commit,
            JobOutcome::Abandoned {
                reason: reason.to_owned(),
            },
        )
        .await
    }

    async fn run_revoke(&self, job: &Job, grant: Grant, token: &str) -> Result<JobOutcome> {
        if grant.state != GrantState::Revoking {
            let c = JobChange::Complete {
                grant_id: grant.id.clone(),
                action: JobAction::Revoke,
                lease_token: token.to_owned(),
            };
            return self
                .finish(
                    Commit {
                        jobs: vec![c],
                        ..Commit::default()
                    },
                    JobOutcome::Nothing,
                )
                .await;
        }
        let Some(connector) = self.connectors.get(&grant.target) else {
            return self
                .retry(
                    job,
                    &grant,
                    token,
                    format!("no connector for target {}", grant.target),
                )
                .await;
        };
        let spec = self.spec(&grant).await?;
        if let Err(e) = connector.revoke(&spec).await {
            return self.retry(job, &grant, token, e.message).await;
        }
        // Revoked only on proof: the target asked again says the access is gone.
        let proof = match connector.prove_revoked(&spec).await {
            Ok(p) => p,
            Err(e) => {
                return self
                    .retry(
                        job,
                        &grant,
                        token,
                        format!("the revocation is not proven: {}", e.message),
                    )
                    .await;
            }
        };
        let now = self.clock.now();
        let (done, ev) = grant.apply(GrantCommand::ConfirmRevoked, now)?;
        let lag_ms = now.millis_since(grant.revoke_due_at.unwrap_or(now)).max(0);
        let verified = crate::audit::AuditRecord::new(
            now,
            "system",
            crate::event::EventKind::GrantRevocationVerified,
            grant.id.as_str(),
        )
        .with("lag_ms", lag_ms);
        let (verified, proven) = match proof {
            RevocationProof::Verified { checked } => (
                verified.with("proof", "verified").with("checked", checked),
                true,
            ),
            RevocationProof::Unprovable { why } => {
                (verified.with("proof", "unprovable").with("why", why), false)
            }
        };
        let commit = Commit {
            jobs: vec![JobChange::Complete {
                grant_id: grant.id.clone(),
                action: JobAction::Revoke,
                lease_token: token.to_owned(),
            }],
            grants: vec![done],
            audit: vec![ev.record(now).with("attempt", job.attempts + 1), verified],
            ..Commit::default()
        };
        self.finish(commit, JobOutcome::Revoked { lag_ms, proven })
            .await
    }

    pub(super) async fn retry(
        &self,
        job: &Job,
        grant: &Grant,
        token: &str,
        error: String,
    ) -> Result<JobOutcome> {
        let now = self.clock.now();
        let attempt = job.attempts + 1;
        let delay = self.settings.backoff.delay_ms_random(attempt);
        let mut retry_at = now.plus_millis(i64::try_from(delay).unwrap_or(i64::MAX));
        if job.action == JobAction::Provision {
            // Run again by the provisioning deadline at the latest, to give up then.
            retry_at = retry_at.min(grant.starts_at.plus(self.settings.provision_timeout));
        }
        let error: String = error.chars().take(1_000).collect();
        warn!(attempt, %retry_at, error = %error, "connector call failed; will retry");
        let action = match job.action {
            JobAction::Provision => crate::event::EventKind::GrantProvisionFailed,
            JobAction::Extend => crate::event::EventKind::GrantExtendFailed,
            JobAction::Revoke => crate::event::EventKind::GrantRevokeFailed,
        };
        let commit = Commit {
            jobs: vec![JobChange::Reschedule {
                grant_id: grant.id.clone(),
                lease_token: token.to_owned(),
                from_action: job.action,
                action: job.action,
                run_at: retry_at,
                attempts: attempt,
                last_error: Some(error.clone()),
            }],
            audit: vec![
                crate::audit::AuditRecord::new(now, "system", action, grant.id.as_str())
                    .with("attempt", attempt)
                    .with("error", &error)
                    .with("retry_at", retry_at),
            ],
            ..Commit::default()
        };
        self.finish(
            commit,
            JobOutcome::Retry {
                attempt,
                retry_at,
                error,
            },
        )
        .await
    }

    /// Commits a job's outcome. If the job or grant changed under us (a revoke replaced the
    /// action, or the lease was lost), the outcome is dropped and our lease, if still ours, is
    /// released so that the new action runs now rather than when the lease would run out.
    pub(super) async fn finish(&self, commit: Commit, outcome: JobOutcome) -> Result<JobOutcome> {
        let lease = commit.jobs.iter().find_map(|j| match j {
            JobChange::Complete {
                grant_id,
                lease_token,
                ..
            }
            | JobChange::Reschedule {
                grant_id,
                lease_token,
                ..
            } => Some((grant_id.clone(), lease_token.clone())),
            _ => None,
        });
        let result = match self.commit(commit).await {
            Ok(_) => Ok(outcome),
            Err(Error::StoreConflict) => {
                if let Some((grant_id, lease_token)) = lease {
                    let release = Commit {
                        jobs: vec![JobChange::Release {
                            grant_id,
                            lease_token,
                        }],
                        ..Commit::default()
                    };
                    match self.commit(release).await {
                        Ok(_) | Err(Error::StoreConflict) => {}
                        Err(e) => return Err(e),
                    }
                }
                Ok(JobOutcome::Superseded)
            }
            Err(e) => Err(e),
        };
        self.wake.jobs_changed();
        result
    }
}
