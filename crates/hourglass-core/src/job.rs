//! Persisted work on targets. Each grant has at most one job row: its next action
//! (`provision`, `extend` or `revoke`). A revoke that arrives while a provision is in flight replaces the
//! action on the same row but cannot run until the in-flight lease is released, so a revocation
//! can never overtake a provisioning of the same grant in the target.
//!
//! A worker claims due jobs by taking a lease (owner, random token, deadline). Every write that
//! finishes or reschedules a job is fenced by that token: a worker that lost its lease (it was
//! presumed dead) cannot overwrite the work of the one that took over.

use serde::{Deserialize, Serialize};

use crate::{Timestamp, id::GrantId};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobAction {
    Provision,
    /// Move the end of an active grant's access in the target (an approved extension).
    Extend,
    Revoke,
}

impl JobAction {
    pub fn as_str(self) -> &'static str {
        match self {
            JobAction::Provision => "provision",
            JobAction::Extend => "extend",
            JobAction::Revoke => "revoke",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "provision" => Some(JobAction::Provision),
            "extend" => Some(JobAction::Extend),
            "revoke" => Some(JobAction::Revoke),
            _ => None,
        }
    }
}

/// A claim on a job by one worker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    pub owner: String,
    pub token: String,
    pub until: Timestamp,
}

/// The next action for a grant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Job {
    pub grant_id: GrantId,
    pub action: JobAction,
    pub run_at: Timestamp,
    /// Failed attempts of the current action.
    pub attempts: u32,
    pub last_error: Option<String>,
    pub lease: Option<Lease>,
}
