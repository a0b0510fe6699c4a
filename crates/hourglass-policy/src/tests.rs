use hourglass_core::{
    GrantDuration,
    catalog::{Entitlement, Principal, PrincipalKind, PrincipalStatus, Profile, Risk},
    id::{EntitlementId, PrincipalId, ProfileId, TargetId},
    policy::{Action, DecisionContext, PolicyDecider, PolicyQuery, Resource},
};
use proptest::prelude::*;

use crate::{PolicySetEngine, PolicySource};

fn principal(name: &str, groups: &[&str]) -> Principal {
    Principal {
        id: PrincipalId::new(name).unwrap(),
        kind: PrincipalKind::Human,
        owner: None,
        groups: groups.iter().map(|g| (*g).to_owned()).collect(),
        status: PrincipalStatus::Active,
        manager: None,
        department: None,
    }
}

fn entitlement(id: &str, profiles: &[&str]) -> Entitlement {
    let id = EntitlementId::new(id).unwrap();
    Entitlement {
        target: TargetId::new(id.target()).unwrap(),
        id,
        description: String::new(),
        risk: Risk::Medium,
        default_duration: GrantDuration::from_secs(900),
        max_duration: GrantDuration::from_secs(3600),
        approvals_required: 1,
        profiles: profiles.iter().map(|p| (*p).to_owned()).collect(),
        params: serde_json::Value::Null,
        max_live_grants: None,
        max_requests_per_hour: None,
    }
}

fn profile(id: &str) -> Profile {
    Profile {
        id: ProfileId::new(id).unwrap(),
        description: String::new(),
        entitlements: vec![],
        default_duration: GrantDuration::from_secs(900),
        max_duration: GrantDuration::from_secs(3600),
        approvals_required: 1,
        risk: Risk::High,
    }
}

fn load(text: &str) -> PolicySetEngine {
    PolicySetEngine::load(
        &[PolicySource {
            name: "t.cedar".into(),
            text: text.into(),
        }],
        vec![],
    )
    .unwrap()
}

fn ctx(duration_secs: u64) -> DecisionContext {
    DecisionContext {
        duration_secs,
        weekday: "Monday".into(),
        ..DecisionContext::default()
    }
}

const DEMO: &str = r#"
@id("requesters-may-request")
permit(principal in Hourglass::Group::"requesters", action == Hourglass::Action::"Request", resource);

@id("read-logs-auto-1h")
permit(principal in Hourglass::Group::"requesters", action == Hourglass::Action::"AutoApprove",
       resource == Hourglass::Entitlement::"demo/read-logs")
when { context.duration_secs <= 3600 };

@id("approvers-approve")
permit(principal in Hourglass::Group::"approvers", action == Hourglass::Action::"Approve", resource);

@id("no-agents-approve")
forbid(principal, action == Hourglass::Action::"Approve", resource)
when { principal.kind == "agent" };
"#;

#[test]
fn decisions_name_their_policies_and_hash() {
    let p = load(DEMO);
    let alice = principal("alice", &["requesters"]);
    let logs = entitlement("demo/read-logs", &[]);
    let d = p
        .decide(PolicyQuery {
            action: Action::AutoApprove,
            principal: &alice,
            resource: Resource::Entitlement(&logs),
            context: &ctx(1800),
        })
        .unwrap();
    assert!(d.allowed);
    assert_eq!(d.policy_ids, vec!["read-logs-auto-1h".to_owned()]);
    assert!(d.policy_hash.starts_with("sha256:"));
    let d = p
        .decide(PolicyQuery {
            action: Action::AutoApprove,
            principal: &alice,
            resource: Resource::Entitlement(&logs),
            context: &ctx(7200),
        })
        .unwrap();
    assert!(!d.allowed, "over an hour is not auto-approved");
    let admin = entitlement("demo/ops-admin", &[]);
    let d = p
        .decide(PolicyQuery {
            action: Action::AutoApprove,
            principal: &alice,
            resource: Resource::Entitlement(&admin),
            context: &ctx(60),
        })
        .unwrap();
    assert!(!d.allowed);
}

#[test]
fn the_directorys_department_and_manager_reach_policy() {
    let p = load(
        r#"
@id("sre-department-may-request")
permit(principal, action == Hourglass::Action::"Request", resource)
when { principal has department && principal.department == "sre" };

@id("managers-approve-their-reports")
permit(principal, action == Hourglass::Action::"Approve", resource)
when { context has requester && context.requester has manager
       && context.requester.manager == principal.name };
"#,
    );
    let logs = entitlement("demo/read-logs", &[]);
    let ask = |who: &Principal, action: Action, context: &DecisionContext| {
        p.decide(PolicyQuery {
            action,
            principal: who,
            resource: Resource::Entitlement(&logs),
            context,
        })
        .unwrap()
    };
    let mut sre = principal("carol", &[]);
    sre.department = Some("sre".into());
    sre.manager = Some("alice".into());
    let mut sales = principal("dave", &[]);
    sales.department = Some("sales".into());
    let nobody = principal("erin", &[]);
    let d = ask(&sre, Action::Request, &ctx(60));
    assert!(d.allowed);
    assert_eq!(d.policy_ids, ["sre-department-may-request"]);
    assert!(!ask(&sales, Action::Request, &ctx(60)).allowed);
    assert!(
        !ask(&nobody, Action::Request, &ctx(60)).allowed,
        "no department, no match"
    );
    let mut approving = ctx(60);
    approving.requester = Some(sre.clone());
    assert!(ask(&principal("alice", &[]), Action::Approve, &approving).allowed);
    assert!(!ask(&principal("bob", &[]), Action::Approve, &approving).allowed);
    approving.requester = Some(sales);
    assert!(
        !ask(&principal("alice", &[]), Action::Approve, &approving).allowed,
        "dave has no manager"
    );
}

#[test]
fn forbid_wins_and_is_named() {
    let p = load(DEMO);
    let mut bot = principal("support-bot", &["approvers"]);
    bot.kind = PrincipalKind::Agent;
    bot.owner = Some("alice".into());
    let mut c = ctx(60);
    c.requester = Some(principal("alice", &["requesters"]));
    let d = p
        .decide(PolicyQuery {
            action: Action::Approve,
            principal: &bot,
            resource: Resource::Entitlement(&entitlement("demo/x", &[])),
            context: &c,
        })
        .unwrap();
    assert!(!d.allowed);
    assert_eq!(d.policy_ids, vec!["no-agents-approve".to_owned()]);
}

#[test]
fn the_hash_changes_with_the_policies() {
    let a = load(DEMO);
    let b = load(&DEMO.replace("3600", "1800"));
    assert_ne!(a.policy_hash(), b.policy_hash());
    assert_eq!(a.policy_hash(), load(DEMO).policy_hash());
}

#[test]
fn schema_violations_and_syntax_errors_name_the_file() {
    let bad_attr = r#"permit(principal, action == Hourglass::Action::"Request", resource) when { principal.nope == 1 };"#;
    let err = PolicySetEngine::load(
        &[PolicySource {
            name: "bad.cedar".into(),
            text: bad_attr.into(),
        }],
        vec![],
    )
    .unwrap_err();
    assert!(err.to_string().contains("bad.cedar#0"), "{err}");
    let syntax = "permit(principal, action, resource";
    let err = PolicySetEngine::load(
        &[PolicySource {
            name: "syn.cedar".into(),
            text: syntax.into(),
        }],
        vec![],
    )
    .unwrap_err();
    assert!(err.to_string().contains("syn.cedar"), "{err}");
    let dup = r#"@id("x") permit(principal, action, resource); @id("x") permit(principal, action, resource);"#;
    assert!(
        PolicySetEngine::load(
            &[PolicySource {
                name: "d.cedar".into(),
                text: dup.into()
            }],
            vec![]
        )
        .is_err()
    );
}

#[test]
fn nested_groups_are_followed() {
    let p = PolicySetEngine::load(
        &[PolicySource { name: "g.cedar".into(), text: r#"permit(principal in Hourglass::Group::"eng", action == Hourglass::Action::"Request", resource);"#.into() }],
        vec![("oncall".into(), vec!["eng".into()])],
    )
    .unwrap();
    let d = p
        .decide(PolicyQuery {
            action: Action::Request,
            principal: &principal("carol", &["oncall"]),
            resource: Resource::Entitlement(&entitlement("demo/x", &[])),
            context: &ctx(60),
        })
        .unwrap();
    assert!(d.allowed);
}

/// One random policy: effect, action, resource scope, and a duration condition.
fn arb_policy() -> impl Strategy<Value = String> {
    (
        any::<bool>(),
        prop::option::of(0usize..3),
        prop_oneof![Just(None), (0usize..6).prop_map(Some)],
        prop_oneof![Just(0u8), Just(1u8), Just(2u8), Just(3u8), Just(4u8)],
        prop::option::of(1u64..7200),
    )
        .prop_map(|(permit, action, ent, scope, max)| {
            let effect = if permit { "permit" } else { "forbid" };
            let action = match action {
                None => "action".to_owned(),
                Some(i) => format!(
                    "action == Hourglass::Action::\"{}\"",
                    [Action::Request, Action::AutoApprove, Action::Administer][i].as_str()
                ),
            };
            let resource = match (ent, scope) {
                (None, _) => "resource".to_owned(),
                (Some(i), 0) => format!("resource == Hourglass::Entitlement::\"t/e{i}\""),
                (Some(i), 1) => format!("resource in Hourglass::Profile::\"p{}\"", i % 3),
                (Some(i), 3) => format!("resource == Hourglass::Profile::\"p{}\"", i % 3),
                (Some(_), 4) => "resource is Hourglass::Profile".to_owned(),
                (Some(_), _) => "resource is Hourglass::Entitlement".to_owned(),
            };
            let cond = max.map_or(String::new(), |m| {
                format!(" when {{ context.duration_secs <= {m} }}")
            });
            format!("{effect}(principal, {action}, {resource}){cond};")
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    /// The sliced evaluation gives the whole set's answer, with the same determining policies.
    #[test]
    fn slices_decide_like_the_whole_set(policies in prop::collection::vec(arb_policy(), 1..40), dur in 60u64..7200) {
        let engine = load(&policies.join("\n"));
        let who = principal("alice", &["requesters"]);
        for i in 0..6 {
            let ent = entitlement(&format!("t/e{i}"), &[["p0", "p1", "p2"][i % 3]]);
            for action in [Action::Request, Action::AutoApprove, Action::Administer, Action::Extend] {
                let q = PolicyQuery { action, principal: &who, resource: Resource::Entitlement(&ent), context: &ctx(dur) };
                prop_assert_eq!(engine.decide(q).unwrap(), engine.decide_unsliced(q).unwrap());
            }
        }
        for i in 0..3 {
            let prof = profile(&format!("p{i}"));
            for action in [Action::Request, Action::AutoApprove, Action::Administer] {
                let q = PolicyQuery { action, principal: &who, resource: Resource::Profile(&prof), context: &ctx(dur) };
                prop_assert_eq!(engine.decide(q).unwrap(), engine.decide_unsliced(q).unwrap());
            }
        }
    }
}

#[test]
fn coverage_names_profiles_and_entitlements_reached_by_auto_approve_permits() {
    use hourglass_core::catalog::{Catalog, Target};

    use crate::cases::{parse_cases, run_tests};

    let p = load(
        r#"
@id("triage-auto")
permit(principal, action == Hourglass::Action::"AutoApprove", resource in Hourglass::Profile::"incident/triage")
when { context.oncall };
@id("any-entitlement-request")
permit(principal, action == Hourglass::Action::"Request", resource is Hourglass::Entitlement);
@id("no-critical-auto")
forbid(principal, action == Hourglass::Action::"AutoApprove", resource)
when { resource.risk == "critical" };
"#,
    );
    let mut logs = entitlement("t/logs", &[]);
    logs.profiles.clear();
    let catalog = Catalog::new(
        vec![principal("alice", &[])],
        vec![Target {
            id: TargetId::new("t").unwrap(),
            connector: "exec".into(),
        }],
        vec![logs],
        vec![Profile {
            entitlements: vec![EntitlementId::new("t/logs").unwrap()],
            ..profile("incident/triage")
        }],
    )
    .unwrap();
    let triage = catalog
        .profile(&ProfileId::new("incident/triage").unwrap())
        .unwrap();
    assert_eq!(
        p.permits_reaching(Action::AutoApprove, Resource::Profile(triage))
            .unwrap(),
        ["triage-auto"]
    );
    // A forbid is no path; `resource is Entitlement` does not reach a profile.
    assert!(
        p.permits_reaching(Action::Request, Resource::Profile(triage))
            .unwrap()
            .is_empty()
    );

    let positive = r#"
[[case]]
name = "on call"
principal = "alice"
action = "AutoApprove"
profile = "incident/triage"
context = { oncall = true }
expect = "allow"
determined_by = ["triage-auto"]
"#;
    let negative = r#"
[[case]]
name = "not on call"
principal = "alice"
action = "AutoApprove"
profile = "incident/triage"
expect = "deny"
"#;
    let src = |text: &str| crate::PolicySource {
        name: "t.toml".into(),
        text: text.into(),
    };
    // The permit reaches the profile and, through `in`, the entitlement it bundles.
    let member = r#"
[[case]]
name = "logs on call"
principal = "alice"
action = "AutoApprove"
entitlement = "t/logs"
context = { oncall = true }
expect = "allow"

[[case]]
name = "logs off call"
principal = "alice"
action = "AutoApprove"
entitlement = "t/logs"
expect = "deny"
"#;
    let only_positive = parse_cases(&[src(positive), src(member)]).unwrap();
    let report = run_tests(&p, &catalog, &only_positive);
    assert_eq!(report.failed(), 0, "{:?}", report.results);
    assert_eq!(report.untested.len(), 1, "{:?}", report.untested);
    assert_eq!(report.untested[0].resource, "profile incident/triage");
    assert_eq!(report.untested[0].missing, "negative");
    let both = parse_cases(&[src(positive), src(negative), src(member)]).unwrap();
    assert!(run_tests(&p, &catalog, &both).ok());
    // The profile's computed risk is its highest member's.
    assert_eq!(triage.risk, Risk::Medium);
}
