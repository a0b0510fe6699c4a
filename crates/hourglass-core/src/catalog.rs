//! What exists: principals, targets and entitlements, as loaded from configuration and checked
//! once. The engine reads it; nothing here changes at run time (a reload builds a new catalog).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::{
    GrantDuration,
    id::{EntitlementId, PrincipalId, ProfileId, TargetId},
};

/// What sort of identity acts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PrincipalKind {
    Human,
    Workload,
    Agent,
}

impl PrincipalKind {
    pub fn as_str(self) -> &'static str {
        match self {
            PrincipalKind::Human => "human",
            PrincipalKind::Workload => "workload",
            PrincipalKind::Agent => "agent",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "human" => Some(PrincipalKind::Human),
            "workload" => Some(PrincipalKind::Workload),
            "agent" => Some(PrincipalKind::Agent),
            _ => None,
        }
    }
}

/// Whether a principal may act.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum PrincipalStatus {
    #[default]
    Active,
    Suspended,
    Offboarded,
}

impl PrincipalStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            PrincipalStatus::Active => "active",
            PrincipalStatus::Suspended => "suspended",
            PrincipalStatus::Offboarded => "offboarded",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "active" => Some(PrincipalStatus::Active),
            "suspended" => Some(PrincipalStatus::Suspended),
            "offboarded" => Some(PrincipalStatus::Offboarded),
            _ => None,
        }
    }
}

/// An identity that acts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Principal {
    pub id: PrincipalId,
    pub kind: PrincipalKind,
    /// The human or group accountable for a workload or agent. Required for non-humans.
    pub owner: Option<String>,
    pub groups: Vec<String>,
    pub status: PrincipalStatus,
    /// A person's manager, by principal name (from the directory, or the configuration), for
    /// policy (`principal.manager`).
    #[serde(default)]
    pub manager: Option<String>,
    /// A person's department (from the directory, or the configuration).
    #[serde(default)]
    pub department: Option<String>,
}

/// How risky an entitlement is; policies can use it.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, Default,
)]
#[serde(rename_all = "snake_case")]
pub enum Risk {
    Low,
    #[default]
    Medium,
    High,
    Critical,
}

impl Risk {
    pub fn as_str(self) -> &'static str {
        match self {
            Risk::Low => "low",
            Risk::Medium => "medium",
            Risk::High => "high",
            Risk::Critical => "critical",
        }
    }
}

/// A system where access is granted, and the kind of connector that reaches it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Target {
    pub id: TargetId,
    pub connector: String,
}

/// One grantable right in one target.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entitlement {
    pub id: EntitlementId,
    pub target: TargetId,
    pub description: String,
    pub risk: Risk,
    pub default_duration: GrantDuration,
    pub max_duration: GrantDuration,
    /// Distinct human approvals needed when no `AutoApprove` policy lets the request through.
    pub approvals_required: u32,
    /// The profiles that bundle this entitlement (filled in by [`Catalog::new`] from the
    /// profiles' member lists).
    pub profiles: Vec<String>,
    /// Connector parameters (which role, which command arguments), passed to the connector.
    pub params: serde_json::Value,
    /// Quotas across everyone: grants of it at once, and requests for it an hour.
    pub max_live_grants: Option<u32>,
    pub max_requests_per_hour: Option<u32>,
}

/// A task profile: entitlements granted together, revoked together, with its own bounds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Profile {
    pub id: ProfileId,
    pub description: String,
    pub entitlements: Vec<EntitlementId>,
    pub default_duration: GrantDuration,
    /// At most the smallest maximum of its entitlements: a profile only tightens.
    pub max_duration: GrantDuration,
    pub approvals_required: u32,
    /// The highest risk of its entitlements (computed).
    pub risk: Risk,
}

/// The shortest grant anyone may request.
pub const MIN_DURATION: GrantDuration = GrantDuration::from_secs(60);

/// Principals, targets and entitlements, checked for consistency.
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    principals: BTreeMap<PrincipalId, Principal>,
    targets: BTreeMap<TargetId, Target>,
    entitlements: BTreeMap<EntitlementId, Entitlement>,
    profiles: BTreeMap<ProfileId, Profile>,
}

impl Catalog {
    /// Builds a catalog, returning every inconsistency found (not just the first). Each
    /// entitlement's `profiles` is set from the profiles that list it.
    pub fn new(
        principals: Vec<Principal>,
        targets: Vec<Target>,
        entitlements: Vec<Entitlement>,
        profiles: Vec<Profile>,
    ) -> Result<Self, Vec<String>> {
        let mut errors = Vec::new();
        let mut cat = Catalog::default();
        for p in principals {
            if p.kind != PrincipalKind::Human && p.owner.as_deref().is_none_or(str::is_empty) {
                errors.push(format!(
                    "identity {}: a {} must have an owner",
                    p.id,
                    p.kind.as_str()
                ));
            }
            if crate::identity::is_reserved_name(p.id.as_str()) {
                errors.push(format!(
                    "identity {}: the name is reserved for Hourglass's own audit records",
                    p.id
                ));
            }
            if cat.principals.insert(p.id.clone(), p.clone()).is_some() {
                errors.push(format!("identity {}: defined twice", p.id));
            }
        }
        for t in targets {
            if cat.targets.insert(t.id.clone(), t.clone()).is_some() {
                errors.push(format!("target {}: defined twice", t.id));
            }
        }
        for e in entitlements {
            if e.id.target() != e.target.as_str() {
                errors.push(format!(
                    "entitlement {}: name must start with its target {:?}",
                    e.id, e.target
                ));
            }
            if !cat.targets.contains_key(&e.target) {
                errors.push(format!(
                    "entitlement {}: unknown target {:?}",
                    e.id, e.target
                ));
            }
            if e.max_duration < MIN_DURATION {
                errors.push(format!("entitlement {}: max_duration is under 1m", e.id));
            }
            if e.default_duration > e.max_duration || e.default_duration < MIN_DURATION {
                errors.push(format!(
                    "entitlement {}: default_duration must be between 1m and max_duration",
                    e.id
                ));
            }
            if e.approvals_required == 0 {
                errors.push(format!(
                    "entitlement {}: approvals_required must be at least 1 (use an AutoApprove policy for no-human paths)",
                    e.id
                ));
            }
            let mut e = e;
            e.profiles.clear();
            if cat.entitlements.insert(e.id.clone(), e.clone()).is_some() {
                errors.push(format!("entitlement {}: defined twice", e.id));
            }
        }
        for mut p in profiles {
            errors.extend(cat.check_profile(&mut p));
            for e in &p.entitlements {
                if let Some(ent) = cat.entitlements.get_mut(e) {
                    ent.profiles.push(p.id.to_string());
                }
            }
            if EntitlementId::new(p.id.as_str()).is_ok_and(|e| cat.entitlements.contains_key(&e)) {
                errors.push(format!(
                    "profile {}: an entitlement has the same name; requests name either",
                    p.id
                ));
            }
            if cat.profiles.insert(p.id.clone(), p.clone()).is_some() {
                errors.push(format!("profile {}: defined twice", p.id));
            }
        }
        if errors.is_empty() {
            Ok(cat)
        } else {
            Err(errors)
        }
    }

    /// Checks a profile against the entitlements and computes its risk.
    fn check_profile(&self, p: &mut Profile) -> Vec<String> {
        let mut errors = Vec::new();
        if p.entitlements.is_empty() {
            errors.push(format!("profile {}: lists no entitlements", p.id));
        }
        let mut seen = std::collections::BTreeSet::new();
        p.risk = Risk::Low;
        for e in &p.entitlements {
            if !seen.insert(e) {
                errors.push(format!("profile {}: lists {e} twice", p.id));
            }
            match self.entitlements.get(e) {
                None => errors.push(format!("profile {}: unknown entitlement {e:?}", p.id)),
                Some(ent) => {
                    p.risk = p.risk.max(ent.risk);
                    if p.max_duration > ent.max_duration {
                        errors.push(format!(
                            "profile {}: max_duration {} exceeds the maximum of {} ({}); a profile may only tighten",
                            p.id, p.max_duration, e, ent.max_duration
                        ));
                    }
                    if p.approvals_required < ent.approvals_required {
                        errors.push(format!(
                            "profile {}: approvals_required {} is fewer than {e} needs ({}); a profile may only tighten",
                            p.id, p.approvals_required, ent.approvals_required
                        ));
                    }
                }
            }
        }
        if p.max_duration < MIN_DURATION
            || p.default_duration > p.max_duration
            || p.default_duration < MIN_DURATION
        {
            errors.push(format!(
                "profile {}: default_duration must be between 1m and max_duration, and max_duration at least 1m",
                p.id
            ));
        }
        if p.approvals_required == 0 {
            errors.push(format!(
                "profile {}: approvals_required must be at least 1 (use an AutoApprove policy for no-human paths)",
                p.id
            ));
        }
        errors
    }

    pub fn principal(&self, id: &PrincipalId) -> Option<&Principal> {
        self.principals.get(id)
    }
    pub fn entitlement(&self, id: &EntitlementId) -> Option<&Entitlement> {
        self.entitlements.get(id)
    }
    pub fn target(&self, id: &TargetId) -> Option<&Target> {
        self.targets.get(id)
    }
    pub fn principals(&self) -> impl Iterator<Item = &Principal> {
        self.principals.values()
    }
    pub fn entitlements(&self) -> impl Iterator<Item = &Entitlement> {
        self.entitlements.values()
    }
    pub fn targets(&self) -> impl Iterator<Item = &Target> {
        self.targets.values()
    }
    pub fn profile(&self, id: &ProfileId) -> Option<&Profile> {
        self.profiles.get(id)
    }
    pub fn profiles(&self) -> impl Iterator<Item = &Profile> {
        self.profiles.values()
    }
}

/// An entitlement of target `demo` for unit tests: 10m by default, 1h at most.
#[cfg(test)]
pub(crate) fn test_entitlement(name: &str, approvals: u32) -> Entitlement {
    Entitlement {
        id: EntitlementId::new(name).unwrap(),
        target: TargetId::new("demo").unwrap(),
        description: String::new(),
        risk: Risk::Low,
        default_duration: GrantDuration::from_secs(600),
        max_duration: GrantDuration::from_secs(3600),
        approvals_required: approvals,
        profiles: Vec::new(),
        params: serde_json::Value::Null,
        max_live_grants: None,
        max_requests_per_hour: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ent(name: &str, approvals: u32) -> Entitlement {
        test_entitlement(name, approvals)
    }

    fn catalog(profile_approvals: u32) -> Result<Catalog, Vec<String>> {
        Catalog::new(
            Vec::new(),
            vec![Target {
                id: TargetId::new("demo").unwrap(),
                connector: "exec".into(),
            }],
            vec![ent("demo/read-logs", 1), ent("demo/ops-admin", 2)],
            vec![Profile {
                id: ProfileId::new("incident/triage").unwrap(),
                description: String::new(),
                entitlements: vec![
                    EntitlementId::new("demo/read-logs").unwrap(),
                    EntitlementId::new("demo/ops-admin").unwrap(),
                ],
                default_duration: GrantDuration::from_secs(600),
                max_duration: GrantDuration::from_secs(3600),
                approvals_required: profile_approvals,
                risk: Risk::Low,
            }],
        )
    }

    #[test]
    fn a_profile_needs_at_least_the_approvals_of_each_entitlement_in_it() {
        let errors = catalog(1).unwrap_err();
        assert!(
            errors
                .iter()
                .any(|e| e.contains("approvals_required 1 is fewer than demo/ops-admin needs (2)")),
            "{errors:?}"
        );
        assert!(catalog(2).is_ok());
    }

    #[test]
    fn hourglass_own_actor_names_are_not_identities() {
        for name in ["system", "policy", "anonymous", "System"] {
            let errors = Catalog::new(
                vec![Principal {
                    id: PrincipalId::new(name).unwrap(),
                    kind: PrincipalKind::Human,
                    owner: None,
                    groups: Vec::new(),
                    status: PrincipalStatus::Active,
                    manager: None,
                    department: None,
                }],
                Vec::new(),
                Vec::new(),
                Vec::new(),
            )
            .unwrap_err();
            assert!(errors[0].contains("reserved"), "{errors:?}");
        }
    }
}
