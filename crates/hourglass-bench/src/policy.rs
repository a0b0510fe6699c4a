//! `policy`: one decision with N policies spread over N entitlements, through Hourglass's
//! sliced path (entities built, the slice for the action and resource evaluated) against a bare
//! `cedar-policy` `is_authorized` over the whole set with its inputs built beforehand. Every
//! decision of the run is compared: allowed or not, and the determining policy ids.

use anyhow::{Context, Result, bail};
use hourglass_core::{
    GrantDuration,
    catalog::{Entitlement, Principal, PrincipalKind, PrincipalStatus, Risk},
    id::{EntitlementId, PrincipalId, TargetId},
    policy::{Action, DecisionContext, PolicyDecider, PolicyQuery, Resource},
};
use hourglass_policy::{PolicySetEngine, PolicySource};

use crate::stats::{Report, Samples, now};

fn entitlement(i: usize) -> Result<Entitlement> {
    Ok(Entitlement {
        id: EntitlementId::new(format!("t/e{i}")).map_err(anyhow::Error::msg)?,
        target: TargetId::new("t").map_err(anyhow::Error::msg)?,
        description: String::new(),
        risk: Risk::Medium,
        default_duration: GrantDuration::from_secs(900),
        max_duration: GrantDuration::from_secs(7200),
        approvals_required: 1,
        profiles: vec![],
        params: serde_json::Value::Null,
        max_live_grants: None,
        max_requests_per_hour: None,
    })
}

/// N policies: each entitlement has one, for one of ten groups, on `Request` or `AutoApprove`
/// with a duration condition; plus one global forbid, as real sets have.
fn policy_set(n: usize) -> String {
    let mut text = String::from(
        "@id(\"no-agents-auto\")\nforbid(principal, action == Hourglass::Action::\"AutoApprove\", resource) when { principal.kind == \"agent\" };\n",
    );
    for i in 1..n {
        let action = if i.is_multiple_of(2) {
            "Request"
        } else {
            "AutoApprove"
        };
        text.push_str(&format!(
            "@id(\"p{i}\")\npermit(principal in Hourglass::Group::\"g{}\", action == Hourglass::Action::\"{action}\", resource == Hourglass::Entitlement::\"t/e{i}\") when {{ context.duration_secs <= {} }};\n",
            i % 10,
            600 + (i % 7) * 600
        ));
    }
    text
}

pub fn run(sizes: &[usize], decisions: usize) -> Result<()> {
    for &n in sizes {
        let engine = PolicySetEngine::load(
            &[PolicySource {
                name: "bench.cedar".into(),
                text: policy_set(n),
            }],
            vec![],
        )
        .map_err(|e| anyhow::anyhow!("{e}"))?;
        let ents = (0..n).map(entitlement).collect::<Result<Vec<_>>>()?;
        let alice = Principal {
            id: PrincipalId::new("alice").map_err(anyhow::Error::msg)?,
            kind: PrincipalKind::Human,
            owner: None,
            groups: (0..10)
                .filter(|g| g % 3 == 0)
                .map(|g| format!("g{g}"))
                .collect(),
            status: PrincipalStatus::Active,
            manager: None,
            department: None,
        };
        let ctx = |k: usize| DecisionContext {
            duration_secs: 300 + (k as u64 % 12) * 300,
            hour: 10,
            weekday: "Tuesday".into(),
            ..DecisionContext::default()
        };
        let contexts: Vec<DecisionContext> = (0..decisions).map(ctx).collect();
        let query = |k: usize| PolicyQuery {
            action: if k.is_multiple_of(2) {
                Action::Request
            } else {
                Action::AutoApprove
            },
            principal: &alice,
            resource: Resource::Entitlement(&ents[(k * 7919) % n]),
            context: &contexts[k],
        };
        // Warm the slice cache and the allocator, as a running server would be.
        for k in 0..decisions.min(200) {
            engine.decide(query(k)).ok();
        }
        let mut sliced = Samples::default();
        let mut answers = Vec::with_capacity(decisions);
        for k in 0..decisions {
            let t = now();
            let d = engine.decide(query(k)).context("sliced decision")?;
            sliced.push(t.elapsed());
            answers.push((d.allowed, d.policy_ids));
        }
        let inputs = (0..decisions)
            .map(|k| engine.bare_inputs(query(k)).context("cedar inputs"))
            .collect::<Result<Vec<_>>>()?;
        let mut bare = Samples::default();
        let mut same = 0usize;
        let mut allowed = 0usize;
        for (k, input) in inputs.iter().enumerate() {
            let t = now();
            let answer = engine.decide_bare(input);
            bare.push(t.elapsed());
            allowed += usize::from(answer.0);
            same += usize::from(answer == answers[k]);
        }
        if same != decisions {
            bail!(
                "policy: {} of {decisions} decisions differ at {n} policies",
                decisions - same
            );
        }
        Report::new("policy")
            .field("policies", n)
            .field("decisions", decisions)
            .field("allowed", allowed)
            .num("hourglass_median_us", sliced.median(), 1)
            .num("hourglass_p99_us", sliced.percentile(99.0), 1)
            .num("bare_cedar_median_us", bare.median(), 1)
            .num("speedup", bare.median() / sliced.median(), 1)
            .field("identical_decisions", true)
            .print();
    }
    Ok(())
}
