//! The policy port. The engine asks a [`PolicyDecider`] whether a principal may do an action on
//! an entitlement in a context; the answer names the policies that determined it and the hash
//! of the policy set, so every decision can be explained later. `hourglass-policy` implements
//! it on Cedar.

use serde::{Deserialize, Serialize};

use crate::{
    Result,
    catalog::{Entitlement, Principal},
};

/// The actions of the policy schema.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Action {
    /// May the principal ask for this at all (eligibility)?
    Request,
    /// May the request go through with no human approval?
    AutoApprove,
    /// May the principal approve (or deny) someone else's request for this?
    Approve,
    Extend,
    BreakGlass,
    Exchange,
    /// May the principal manage this entitlement's requests and grants (revoke anyone's)?
    Administer,
}

impl Action {
    pub const ALL: [Action; 7] = [
        Action::Request,
        Action::AutoApprove,
        Action::Approve,
        Action::Extend,
        Action::BreakGlass,
        Action::Exchange,
        Action::Administer,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Action::Request => "Request",
            Action::AutoApprove => "AutoApprove",
            Action::Approve => "Approve",
            Action::Extend => "Extend",
            Action::BreakGlass => "BreakGlass",
            Action::Exchange => "Exchange",
            Action::Administer => "Administer",
        }
    }
}

/// Facts about the moment of the decision.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DecisionContext {
    pub duration_secs: u64,
    /// Hour of day, 0–23 (UTC).
    pub hour: u8,
    /// `Monday` … `Sunday`.
    pub weekday: String,
    /// Whether the caller's authentication included a second factor.
    pub mfa: bool,
    pub break_glass: bool,
    pub ticket: Option<String>,
    pub source_ip: Option<String>,
    /// For `Approve`: who asked.
    pub requester: Option<Principal>,
}

/// A policy question.
#[derive(Debug, Clone, Copy)]
pub struct PolicyQuery<'a> {
    pub action: Action,
    pub principal: &'a Principal,
    pub entitlement: &'a Entitlement,
    pub context: &'a DecisionContext,
}

/// A policy answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decision {
    pub allowed: bool,
    /// The policies that determined the answer (the permits that allowed it, or the forbids
    /// that denied it; empty for a default deny).
    pub policy_ids: Vec<String>,
    pub policy_hash: String,
    /// Evaluation errors (a policy that failed to evaluate counts as not applying).
    pub errors: Vec<String>,
}

/// Decides policy questions. Implementations must be deterministic for a given policy set.
pub trait PolicyDecider: Send + Sync {
    fn decide(&self, query: PolicyQuery<'_>) -> Result<Decision>;
    /// The hash of the policy set in force.
    fn policy_hash(&self) -> String;
}
