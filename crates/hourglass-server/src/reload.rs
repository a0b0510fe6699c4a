//! Reloading policies (and the on-call schedule) while serving: on `SIGHUP` and on
//! `POST /v1/admin/policies/reload`.
//!
//! Everything is read and validated before anything changes: a syntax error or a schema
//! violation in any policy file, or a schedule that does not parse, keeps the old set and
//! schedule in force and is reported with the file and the problem. The engine then records the
//! change (old and new hashes) in the audit log before the new set decides anything, and judges
//! again what was waiting (see `hourglass_core::engine::reload`).

use std::{path::PathBuf, sync::Arc};

use hourglass_core::{
    Error, Result,
    engine::{Caller, ReloadReport},
};
use hourglass_policy::{PolicyError, PolicySetEngine};

use crate::{App, config::Config};

/// Where the policy set is read from: the directory and the group nesting it is judged with.
#[derive(Debug, Clone)]
pub struct PolicySourceDir {
    dir: PathBuf,
    groups: Vec<(String, Vec<String>)>,
}

impl PolicySourceDir {
    pub fn of(config: &Config) -> Self {
        PolicySourceDir {
            dir: config.policy.dir.clone(),
            groups: config
                .groups
                .iter()
                .map(|g| (g.name.clone(), g.member_of.clone()))
                .collect(),
        }
    }

    /// Reads and validates every policy file.
    pub fn load(&self) -> std::result::Result<PolicySetEngine, PolicyError> {
        PolicySetEngine::load_dir(&self.dir, self.groups.clone())
    }
}

/// Reads, validates and puts in force the policy files and the on-call schedule. Reloads run
/// one at a time, so that each audit event names the set it replaced.
pub(crate) async fn reload(app: &App, caller: Option<&Caller>) -> Result<ReloadReport> {
    // Only someone who may change everything learns what the files say.
    if let Some(c) = caller {
        app.engine
            .require_admin_of_all(c, hourglass_core::ErrorCode::PolicyReloadNotAllowed)?;
    }
    let _one_at_a_time = app.reload_lock.lock().await;
    // Parsing and validating a large set is CPU work: keep it off the request workers.
    let source = app.policy_source.clone();
    let loaded = tokio::task::spawn_blocking(move || source.load())
        .await
        .map_err(|e| Error::internal(format!("policy loading task: {e}")))?;
    let set = loaded.map_err(|e| {
        Error::invalid(
            hourglass_core::ErrorCode::PolicyInvalid,
            "policies",
            format!("the policy set was not changed: {}", e.problems.join("; ")),
        )
    })?;
    let schedule = app.facts.read_schedule().map_err(|problems| {
        Error::invalid(
            hourglass_core::ErrorCode::PolicyOncallInvalid,
            "oncall_file",
            format!("the policy set was not changed: {}", problems.join("; ")),
        )
    })?;
    let report = app.engine.reload_policy(caller, Arc::new(set)).await?;
    app.facts.set_schedule(schedule);
    Ok(report)
}

/// Brings this process to the policy set the ledger records in force, if it is not on it:
/// reads its policy files (and schedule) and follows them if they are that set. Whether this
/// process is now on the set in force; metrics and `/readyz` say so too.
pub(crate) async fn follow(app: &App) -> Result<bool> {
    let Some(wanted) = app.engine.policy_behind().await? else {
        app.metrics.set_policy_stale(false);
        return Ok(true);
    };
    let _one_at_a_time = app.reload_lock.lock().await;
    let source = app.policy_source.clone();
    let loaded = tokio::task::spawn_blocking(move || source.load())
        .await
        .map_err(|e| Error::internal(format!("policy loading task: {e}")))?;
    let followed = match loaded {
        // As a reload would: the on-call schedule must read too, or nothing changes.
        Ok(set) => match app.facts.read_schedule() {
            Ok(schedule) => {
                let followed = app.engine.follow_policy(Arc::new(set)).await?;
                if followed {
                    app.facts.set_schedule(schedule);
                }
                followed
            }
            Err(problems) => {
                tracing::warn!(?problems, "the on-call schedule does not load");
                false
            }
        },
        Err(e) => {
            tracing::warn!(problems = ?e.problems, "the policy files do not load");
            false
        }
    };
    if !followed {
        tracing::warn!(
            in_force = %wanted,
            ours = %app.engine.policy_hash(),
            "this replica's policy files are not the set in force: it reports itself not ready until they are"
        );
    }
    app.metrics.set_policy_stale(!followed);
    Ok(followed)
}

/// Follows the policy set in force whenever another replica changes it (its wake-up), and
/// looks again every poll interval in case a wake-up was lost or the files here changed.
pub(crate) async fn follower(
    app: Arc<App>,
    wake: Arc<crate::workers::Wakeups>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        if let Err(e) = follow(&app).await {
            tracing::warn!(error = %e, "cannot compare the policy set with the one in force");
        }
        let poll = wake.poll.or(Some(std::time::Duration::from_secs(30)));
        if !crate::workers::sleep_until_or(
            app.engine.clock().as_ref(),
            None,
            (&wake.policy, poll),
            &mut stop,
        )
        .await
        {
            return;
        }
    }
}

/// Reloads for the operator's signal.
#[derive(Clone)]
pub struct Reloader(pub(crate) Arc<App>);

impl Reloader {
    /// Reloads as `system`; the error says why nothing changed.
    pub async fn reload(&self) -> std::result::Result<ReloadReport, String> {
        reload(&self.0, None).await.map_err(|e| match e {
            Error::Internal(m) | Error::Unavailable(m) => m,
            other => other.to_string(),
        })
    }
}
