//! The policy port. The engine asks a [`PolicyDecider`] whether a principal may do an action on
//! an entitlement in a context; the answer names the policies that determined it and the hash
//! of the policy set, so every decision can be explained later. `hourglass-policy` implements
//! it on Cedar.

use serde::{Deserialize, Serialize};

use crate::{
    Result, Timestamp,
    catalog::{Entitlement, Principal, Profile},
    id::PrincipalId,
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

impl std::str::FromStr for Action {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        Action::ALL
            .into_iter()
            .find(|a| a.as_str() == s)
            .ok_or_else(|| {
                let names: Vec<&str> = Action::ALL.iter().map(|a| a.as_str()).collect();
                format!("unknown action {s:?}: expected one of {}", names.join(", "))
            })
    }
}

/// What a ticket source said about a ticket (only `reference` when no source knows it).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TicketFacts {
    pub reference: String,
    pub status: Option<String>,
    pub assignee: Option<String>,
    pub priority: Option<String>,
    /// The ticket source that owns the reference (policy reads it as `context.ticket.source`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// Whether the source confirmed the ticket now (it exists, is open and, where required,
    /// assigned to the requester). False for a reference no source owns, and for one whose
    /// source did not answer: policy reads it as `context.ticket.verified`.
    #[serde(default)]
    pub verified: bool,
}

/// Facts of a verified workload identity token, for `Exchange`. Well-known claims are lifted
/// out (GitHub and GitLab `repository`, `ref`, `environment`…; a Kubernetes service account's
/// namespace and name from its `sub`; a SPIFFE ID) so that policies can name them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkloadToken {
    /// The configured issuer name (`github`).
    pub issuer: String,
    pub subject: String,
    /// Optional claims by name (only the well-known ones; see [`WorkloadToken::from_claims`]).
    pub claims: std::collections::BTreeMap<String, String>,
}

/// The claims a policy can read from `context.token`.
pub const TOKEN_CLAIMS: [&str; 9] = [
    "repository",
    "repository_owner",
    "ref",
    "workflow",
    "job_workflow_ref",
    "environment",
    "namespace",
    "service_account",
    "spiffe_id",
];

impl WorkloadToken {
    /// Lifts the well-known claims out of a token's string claims.
    pub fn from_claims(
        issuer: &str,
        subject: &str,
        claims: &std::collections::BTreeMap<String, String>,
    ) -> Self {
        let mut picked: std::collections::BTreeMap<String, String> = claims
            .iter()
            .filter(|(k, _)| TOKEN_CLAIMS.contains(&k.as_str()))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        // GitLab names its project `project_path`.
        if let Some(p) = claims.get("project_path") {
            picked
                .entry("repository".into())
                .or_insert_with(|| p.clone());
        }
        if let Some(rest) = subject.strip_prefix("system:serviceaccount:")
            && let Some((ns, name)) = rest.split_once(':')
        {
            picked.insert("namespace".into(), ns.to_owned());
            picked.insert("service_account".into(), name.to_owned());
        }
        if subject.starts_with("spiffe://") {
            picked.insert("spiffe_id".into(), subject.to_owned());
        }
        WorkloadToken {
            issuer: issuer.to_owned(),
            subject: subject.to_owned(),
            claims: picked,
        }
    }
}

/// Facts about the moment of the decision.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DecisionContext {
    pub duration_secs: u64,
    /// Hour of day, 0–23, in the configured time zone.
    pub hour: u8,
    /// `Monday` … `Sunday`, in the configured time zone.
    pub weekday: String,
    /// Whether the caller's authentication included a second factor.
    pub mfa: bool,
    pub break_glass: bool,
    /// Whether the principal is on call now (from the configured schedule).
    pub oncall: bool,
    pub ticket: Option<TicketFacts>,
    pub source_ip: Option<String>,
    /// For `Approve`: who asked.
    pub requester: Option<Principal>,
    /// For `Exchange`: the verified identity token.
    pub token: Option<WorkloadToken>,
    /// For `Exchange` with delegation: the agent acting for the principal.
    pub actor: Option<Principal>,
}

/// What a policy question is about: one entitlement, or a task profile.
#[derive(Debug, Clone, Copy)]
pub enum Resource<'a> {
    Entitlement(&'a Entitlement),
    Profile(&'a Profile),
}

impl Resource<'_> {
    /// The entitlement or profile name.
    pub fn name(&self) -> &str {
        match self {
            Resource::Entitlement(e) => e.id.as_str(),
            Resource::Profile(p) => p.id.as_str(),
        }
    }
    pub fn default_duration(&self) -> crate::GrantDuration {
        match self {
            Resource::Entitlement(e) => e.default_duration,
            Resource::Profile(p) => p.default_duration,
        }
    }
    pub fn max_duration(&self) -> crate::GrantDuration {
        match self {
            Resource::Entitlement(e) => e.max_duration,
            Resource::Profile(p) => p.max_duration,
        }
    }
    /// Distinct human approvals needed when no `AutoApprove` policy lets a request through.
    pub fn approvals_required(&self) -> u32 {
        match self {
            Resource::Entitlement(e) => e.approvals_required,
            Resource::Profile(p) => p.approvals_required,
        }
    }
    pub fn access_id(&self) -> crate::id::AccessId {
        match self {
            Resource::Entitlement(e) => crate::id::AccessId::Entitlement(e.id.clone()),
            Resource::Profile(p) => crate::id::AccessId::Profile(p.id.clone()),
        }
    }
}

/// A policy question.
#[derive(Debug, Clone, Copy)]
pub struct PolicyQuery<'a> {
    pub action: Action,
    pub principal: &'a Principal,
    pub resource: Resource<'a>,
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

/// Facts for the decision context that come from configured sources rather than the request:
/// the local time in the configured time zone, and the on-call schedule.
pub trait ContextFacts: Send + Sync {
    /// Hour of day (0–23) and weekday name (`Monday`…) at `at`, in the configured time zone.
    fn local_time(&self, at: Timestamp) -> (u8, String);
    /// Whether `who` is on call at `at`.
    fn on_call(&self, who: &PrincipalId, at: Timestamp) -> bool;
}

/// UTC and an empty on-call schedule: the facts when nothing is configured.
#[derive(Debug, Clone, Copy, Default)]
pub struct UtcNoSchedule;

impl ContextFacts for UtcNoSchedule {
    fn local_time(&self, at: Timestamp) -> (u8, String) {
        at.hour_and_weekday()
    }
    fn on_call(&self, _who: &PrincipalId, _at: Timestamp) -> bool {
        false
    }
}

/// Decides policy questions. Implementations must be deterministic for a given policy set.
pub trait PolicyDecider: Send + Sync {
    fn decide(&self, query: PolicyQuery<'_>) -> Result<Decision>;
    /// The hash of the policy set in force.
    fn policy_hash(&self) -> String;
}

/// Whether a question about a profile is also asked of each of its entitlements.
pub fn judges_members(action: Action) -> bool {
    matches!(
        action,
        Action::Request | Action::AutoApprove | Action::BreakGlass | Action::Approve
    )
}

/// Decides `q`; for a profile and an action of [`judges_members`], on the profile and on each of
/// `members` (its entitlements) with the same principal and context, allowed only when every one
/// is. A profile grants each of its entitlements, so a policy that forbids one (without MFA,
/// without a ticket) or keeps one from being auto-approved must not be sidestepped by asking for
/// the bundle. An allow names every permit that took part; a deny names what denied (the
/// profile's answer first, then the first member that refused, as `entitlement: policy`).
pub fn decide_with_members(
    decider: &dyn PolicyDecider,
    q: PolicyQuery<'_>,
    members: &[&Entitlement],
) -> Result<Decision> {
    let mut whole = decider.decide(q)?;
    if !matches!(q.resource, Resource::Profile(_)) || !judges_members(q.action) || !whole.allowed {
        return Ok(whole);
    }
    for m in members {
        let d = decider.decide(PolicyQuery {
            resource: Resource::Entitlement(m),
            ..q
        })?;
        whole.errors.extend(d.errors);
        if !d.allowed {
            whole.allowed = false;
            whole.policy_ids = if d.policy_ids.is_empty() {
                vec![format!("{}: (no permit)", m.id)]
            } else {
                d.policy_ids
                    .iter()
                    .map(|p| format!("{}: {p}", m.id))
                    .collect()
            };
            return Ok(whole);
        }
        for p in d.policy_ids {
            if !whole.policy_ids.contains(&p) {
                whole.policy_ids.push(p);
            }
        }
    }
    whole.policy_ids.sort();
    Ok(whole)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        GrantDuration,
        catalog::{PrincipalKind, PrincipalStatus, Risk},
        id::ProfileId,
    };

    /// Allows everything except the entitlements it names (by id, with a forbid id).
    struct Fake {
        refused: Vec<(&'static str, &'static str)>,
    }

    impl PolicyDecider for Fake {
        fn decide(&self, q: PolicyQuery<'_>) -> Result<Decision> {
            let name = q.resource.name();
            let refused = self.refused.iter().find(|(e, _)| *e == name);
            Ok(Decision {
                allowed: refused.is_none(),
                policy_ids: vec![refused.map_or(format!("permit-{name}"), |(_, p)| (*p).into())],
                policy_hash: "h".into(),
                errors: Vec::new(),
            })
        }
        fn policy_hash(&self) -> String {
            "h".into()
        }
    }

    fn ent(name: &str) -> Entitlement {
        crate::catalog::test_entitlement(name, 1)
    }

    #[test]
    fn a_profile_is_allowed_only_when_every_entitlement_in_it_is() {
        let (logs, admin) = (ent("demo/read-logs"), ent("demo/ops-admin"));
        let profile = Profile {
            id: ProfileId::new("incident/triage").unwrap(),
            description: String::new(),
            entitlements: vec![logs.id.clone(), admin.id.clone()],
            default_duration: GrantDuration::from_secs(600),
            max_duration: GrantDuration::from_secs(3600),
            approvals_required: 1,
            risk: Risk::Low,
        };
        let alice = Principal {
            id: PrincipalId::new("alice").unwrap(),
            kind: PrincipalKind::Human,
            owner: None,
            groups: Vec::new(),
            status: PrincipalStatus::Active,
            manager: None,
            department: None,
        };
        let ctx = DecisionContext::default();
        let q = |action| PolicyQuery {
            action,
            principal: &alice,
            resource: Resource::Profile(&profile),
            context: &ctx,
        };
        let members = [&logs, &admin];
        let strict = Fake {
            refused: vec![("demo/ops-admin", "ops-admin-needs-mfa")],
        };
        for action in [
            Action::Request,
            Action::AutoApprove,
            Action::BreakGlass,
            Action::Approve,
        ] {
            let d = decide_with_members(&strict, q(action), &members).unwrap();
            assert!(!d.allowed, "{action:?}");
            assert_eq!(d.policy_ids, ["demo/ops-admin: ops-admin-needs-mfa"]);
        }
        // Administer is about the profile as a whole.
        assert!(
            decide_with_members(&strict, q(Action::Administer), &members)
                .unwrap()
                .allowed
        );
        let lax = Fake {
            refused: Vec::new(),
        };
        let d = decide_with_members(&lax, q(Action::Request), &members).unwrap();
        assert!(d.allowed);
        assert_eq!(
            d.policy_ids,
            [
                "permit-demo/ops-admin",
                "permit-demo/read-logs",
                "permit-incident/triage"
            ]
        );
    }
}
