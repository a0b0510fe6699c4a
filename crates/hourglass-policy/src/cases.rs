//! Policy tests and explanations: automated approval makes policy part of the access boundary,
//! so its rules are tested like code.
//!
//! A case file (`policies/tests/*.toml`) holds `[[case]]` tables: a principal, an action, an
//! entitlement or profile, a context, and the expected decision (optionally with the policy ids
//! expected to determine it). [`run_tests`] evaluates every case through the same sliced path
//! the server uses, and then checks coverage: every entitlement or profile that some
//! `AutoApprove` permit can reach must have a passing positive *and* a passing negative case,
//! or it is reported as an untested auto-approval path.

use std::{collections::BTreeSet, path::Path};

use hourglass_core::{
    GrantDuration,
    catalog::{Catalog, Principal},
    id::{EntitlementId, PrincipalId, ProfileId},
    policy::{Action, Decision, DecisionContext, PolicyQuery, Resource, TicketFacts},
};
use serde::Deserialize;

use crate::{PolicyError, PolicySetEngine, PolicySource};

/// One case file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct CaseFile {
    #[serde(default, rename = "case")]
    cases: Vec<Case>,
}

/// The decision a case expects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Expect {
    Allow,
    Deny,
}

impl Expect {
    fn as_str(self) -> &'static str {
        match self {
            Expect::Allow => "allow",
            Expect::Deny => "deny",
        }
    }
}

/// One policy test case.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Case {
    pub name: String,
    pub principal: String,
    pub action: String,
    #[serde(default)]
    pub entitlement: Option<String>,
    #[serde(default)]
    pub profile: Option<String>,
    #[serde(default)]
    pub context: ContextInput,
    pub expect: Expect,
    /// The policy ids expected to determine the decision (the permits that allowed it, or the
    /// forbids that denied it; `[]` for a default deny).
    #[serde(default)]
    pub determined_by: Option<Vec<String>>,
}

/// A ticket in a test or explain context.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TicketInput {
    #[serde(rename = "ref")]
    pub reference: String,
    #[serde(default)]
    pub status: Option<String>,
    #[serde(default)]
    pub assignee: Option<String>,
    #[serde(default)]
    pub priority: Option<String>,
    /// The ticket source that owns the reference.
    #[serde(default)]
    pub source: Option<String>,
    /// Whether the source confirmed the ticket (default: true when a source is named).
    #[serde(default)]
    pub verified: Option<bool>,
}

/// The context of a test case or an explanation, as written by a person. Absent facts take
/// neutral defaults: the resource's default duration, Wednesday at noon, no MFA, not on call.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContextInput {
    #[serde(default)]
    pub duration: Option<GrantDuration>,
    #[serde(default)]
    pub hour: Option<u8>,
    #[serde(default)]
    pub weekday: Option<String>,
    #[serde(default)]
    pub mfa: bool,
    #[serde(default)]
    pub oncall: Option<bool>,
    #[serde(default)]
    pub break_glass: bool,
    #[serde(default)]
    pub ticket: Option<TicketInput>,
    #[serde(default)]
    pub source_ip: Option<String>,
    /// For `Approve`: whose request is being approved.
    #[serde(default)]
    pub requester: Option<String>,
    /// For `Exchange`: the workload token (`issuer`, `subject`, `claims`).
    #[serde(default)]
    pub token: Option<TokenInput>,
    /// For `Exchange` with delegation: the agent acting for the principal.
    #[serde(default)]
    pub actor: Option<String>,
}

/// A workload token in a policy test case.
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenInput {
    pub issuer: String,
    #[serde(default)]
    pub subject: String,
    #[serde(default)]
    pub claims: std::collections::BTreeMap<String, String>,
}

const WEEKDAYS: [&str; 7] = [
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
    "Sunday",
];

impl ContextInput {
    /// The decision context this input describes, or what is wrong with it.
    pub fn resolve(
        &self,
        catalog: &Catalog,
        default_duration: GrantDuration,
    ) -> Result<DecisionContext, String> {
        let hour = self.hour.unwrap_or(12);
        if hour > 23 {
            return Err(format!("context.hour {hour} is not 0-23"));
        }
        let weekday = self.weekday.clone().unwrap_or_else(|| "Wednesday".into());
        if !WEEKDAYS.contains(&weekday.as_str()) {
            return Err(format!(
                "context.weekday {weekday:?} is not one of {}",
                WEEKDAYS.join(", ")
            ));
        }
        if let Some(ip) = &self.source_ip
            && ip.parse::<std::net::IpAddr>().is_err()
        {
            return Err(format!("context.source_ip {ip:?} is not an IP address"));
        }
        let requester = match &self.requester {
            None => None,
            Some(r) => Some(principal(catalog, r).map_err(|e| format!("context.requester: {e}"))?),
        };
        Ok(DecisionContext {
            duration_secs: self.duration.unwrap_or(default_duration).as_secs(),
            hour,
            weekday,
            mfa: self.mfa,
            break_glass: self.break_glass,
            oncall: self.oncall.unwrap_or(false),
            ticket: self.ticket.as_ref().map(|t| TicketFacts {
                reference: t.reference.clone(),
                status: t.status.clone(),
                assignee: t.assignee.clone(),
                priority: t.priority.clone(),
                source: t.source.clone(),
                verified: t.verified.unwrap_or(t.source.is_some()),
            }),
            source_ip: self.source_ip.clone(),
            requester: requester.cloned(),
            token: self.token.as_ref().map(|t| {
                hourglass_core::policy::WorkloadToken::from_claims(&t.issuer, &t.subject, &t.claims)
            }),
            actor: match &self.actor {
                None => None,
                Some(a) => Some(
                    principal(catalog, a)
                        .map_err(|e| format!("context.actor: {e}"))?
                        .clone(),
                ),
            },
        })
    }
}

fn principal<'c>(catalog: &'c Catalog, name: &str) -> Result<&'c Principal, String> {
    PrincipalId::new(name)
        .ok()
        .and_then(|id| catalog.principal(&id))
        .ok_or_else(|| format!("no identity named {name:?} in the configuration"))
}

/// An entitlement or profile named by a person.
pub fn resource<'c>(
    catalog: &'c Catalog,
    entitlement: Option<&str>,
    profile: Option<&str>,
) -> Result<Resource<'c>, String> {
    match (entitlement, profile) {
        (Some(e), None) => EntitlementId::new(e)
            .ok()
            .and_then(|id| catalog.entitlement(&id))
            .map(Resource::Entitlement)
            .ok_or_else(|| format!("no entitlement named {e:?} in the configuration")),
        (None, Some(p)) => ProfileId::new(p)
            .ok()
            .and_then(|id| catalog.profile(&id))
            .map(Resource::Profile)
            .ok_or_else(|| format!("no profile named {p:?} in the configuration")),
        _ => Err("name exactly one of entitlement or profile".into()),
    }
}

fn default_duration(r: Resource<'_>) -> GrantDuration {
    match r {
        Resource::Entitlement(e) => e.default_duration,
        Resource::Profile(p) => p.default_duration,
    }
}

/// The outcome of one case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaseResult {
    /// `file: case name`.
    pub name: String,
    pub action: String,
    pub resource: String,
    pub expect: Expect,
    /// `None` when it passed; else why not.
    pub failure: Option<String>,
}

/// An entitlement or profile that an `AutoApprove` permit can reach without both a passing
/// positive and a passing negative case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UntestedPath {
    /// `entitlement demo/read-logs` or `profile helpdesk/file-recovery`.
    pub resource: String,
    /// The permits that reach it.
    pub policies: Vec<String>,
    /// `positive`, `negative`, or `positive and negative`.
    pub missing: &'static str,
}

/// Everything `hourglass policy test` reports.
#[derive(Debug, Clone, Default)]
pub struct TestReport {
    pub results: Vec<CaseResult>,
    pub untested: Vec<UntestedPath>,
}

impl TestReport {
    pub fn passed(&self) -> usize {
        self.results.iter().filter(|r| r.failure.is_none()).count()
    }
    pub fn failed(&self) -> usize {
        self.results.len() - self.passed()
    }
    /// True when every case passed and no auto-approval path is untested.
    pub fn ok(&self) -> bool {
        self.failed() == 0 && self.untested.is_empty()
    }
}

/// Reads every `*.toml` case file in `dir`, sorted by name. A missing directory has no cases.
pub fn read_case_files(dir: &Path) -> Result<Vec<PolicySource>, PolicyError> {
    if !dir.exists() {
        return Ok(Vec::new());
    }
    crate::set::read_files(dir, "toml")
}

/// Parses case files; every malformed file or case is a problem naming the file.
pub fn parse_cases(files: &[PolicySource]) -> Result<Vec<(String, Case)>, PolicyError> {
    let mut problems = Vec::new();
    let mut cases = Vec::new();
    for f in files {
        match toml::from_str::<CaseFile>(&f.text) {
            Ok(parsed) => {
                if parsed.cases.is_empty() {
                    problems.push(format!("{}: no [[case]] tables", f.name));
                }
                cases.extend(parsed.cases.into_iter().map(|c| (f.name.clone(), c)));
            }
            Err(e) => problems.push(format!("{}: {}", f.name, e.message())),
        }
    }
    if problems.is_empty() {
        Ok(cases)
    } else {
        Err(PolicyError { problems })
    }
}

/// Runs the cases against the policy set and checks auto-approval coverage.
pub fn run_tests(
    engine: &PolicySetEngine,
    catalog: &Catalog,
    cases: &[(String, Case)],
) -> TestReport {
    let mut report = TestReport::default();
    // (action, resource label, expect) of every passing case.
    let mut passing: BTreeSet<(String, String, Expect)> = BTreeSet::new();
    for (file, case) in cases {
        let (label, failure) = match run_case(engine, catalog, case) {
            Ok((label, failure)) => (label, failure),
            Err(e) => (String::new(), Some(e)),
        };
        if failure.is_none() {
            passing.insert((case.action.clone(), label.clone(), case.expect));
        }
        report.results.push(CaseResult {
            name: format!("{file}: {}", case.name),
            action: case.action.clone(),
            resource: label,
            expect: case.expect,
            failure,
        });
    }
    let entitlements = catalog.entitlements().map(Resource::Entitlement);
    let profiles = catalog.profiles().map(Resource::Profile);
    for r in entitlements.chain(profiles) {
        let policies = engine
            .permits_reaching(Action::AutoApprove, r)
            .unwrap_or_default();
        if policies.is_empty() {
            continue;
        }
        let label = label(r);
        let has = |e| passing.contains(&("AutoApprove".to_owned(), label.clone(), e));
        let missing = match (has(Expect::Allow), has(Expect::Deny)) {
            (true, true) => continue,
            (false, true) => "positive",
            (true, false) => "negative",
            (false, false) => "positive and negative",
        };
        report.untested.push(UntestedPath {
            resource: label,
            policies,
            missing,
        });
    }
    report
}

/// The entitlements a profile grants (none for an entitlement).
fn members<'c>(
    catalog: &'c Catalog,
    r: Resource<'_>,
) -> Vec<&'c hourglass_core::catalog::Entitlement> {
    match r {
        Resource::Entitlement(_) => Vec::new(),
        Resource::Profile(p) => p
            .entitlements
            .iter()
            .filter_map(|e| catalog.entitlement(e))
            .collect(),
    }
}

fn label(r: Resource<'_>) -> String {
    match r {
        Resource::Entitlement(e) => format!("entitlement {}", e.id),
        Resource::Profile(p) => format!("profile {}", p.id),
    }
}

/// Evaluates one case: its resource label, and why it failed (`None` if it passed).
fn run_case(
    engine: &PolicySetEngine,
    catalog: &Catalog,
    case: &Case,
) -> Result<(String, Option<String>), String> {
    let action: Action = case.action.parse()?;
    let who = principal(catalog, &case.principal)?;
    let r = resource(
        catalog,
        case.entitlement.as_deref(),
        case.profile.as_deref(),
    )?;
    let ctx = case.context.resolve(catalog, default_duration(r))?;
    if action == Action::Approve && ctx.requester.is_none() {
        return Err("an Approve case needs context.requester".into());
    }
    if action == Action::Exchange && ctx.token.is_none() {
        return Err("an Exchange case needs context.token (issuer, subject, claims)".into());
    }
    let d = hourglass_core::policy::decide_with_members(
        engine,
        PolicyQuery {
            action,
            principal: who,
            resource: r,
            context: &ctx,
        },
        &members(catalog, r),
    )
    .map_err(|e| format!("evaluation failed: {e:?}"))?;
    let got = if d.allowed {
        Expect::Allow
    } else {
        Expect::Deny
    };
    let mut failure = None;
    if got != case.expect {
        failure = Some(format!(
            "expected {}, got {} (determined by [{}])",
            case.expect.as_str(),
            got.as_str(),
            d.policy_ids.join(", ")
        ));
    } else if let Some(want) = &case.determined_by {
        let mut want = want.clone();
        want.sort();
        if want != d.policy_ids {
            failure = Some(format!(
                "{} as expected, but determined by [{}], not [{}]",
                got.as_str(),
                d.policy_ids.join(", "),
                want.join(", ")
            ));
        }
    }
    if failure.is_none() && !d.errors.is_empty() {
        failure = Some(format!(
            "a policy failed to evaluate: {}",
            d.errors.join("; ")
        ));
    }
    Ok((label(r), failure))
}

/// Every action's decision for `principal` on `resource` in `ctx`, as the engine takes it (a
/// profile judged on each of its entitlements too). `Approve` is left out when the context
/// names no requester.
pub fn explain(
    engine: &PolicySetEngine,
    catalog: &Catalog,
    principal: &Principal,
    resource: Resource<'_>,
    ctx: &DecisionContext,
) -> Vec<(Action, Result<Decision, String>)> {
    let members = members(catalog, resource);
    Action::ALL
        .into_iter()
        .filter(|a| *a != Action::Approve || ctx.requester.is_some())
        .filter(|a| *a != Action::Exchange || ctx.token.is_some())
        .map(|action| {
            let d = hourglass_core::policy::decide_with_members(
                engine,
                PolicyQuery {
                    action,
                    principal,
                    resource,
                    context: ctx,
                },
                &members,
            )
            .map_err(|e| format!("{e:?}"));
            (action, d)
        })
        .collect()
}
