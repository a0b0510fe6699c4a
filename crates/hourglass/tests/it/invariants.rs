//! Properties of approval, checked over the real API with random quorums, random sequences
//! of approvers and random policy sets: nobody approves their own request, approvals are counted
//! once per person, a grant exists only at its quorum (or by policy), within its maximum, and an
//! unconditional forbid always wins.

use hourglass_api::CreateRequest;
use hourglass_client::ClientError;
use hourglass_core::GrantDuration;
use hourglass_testkit::{spawn_server, spawn_server_typed};
use proptest::prelude::*;

const WHO: [&str; 5] = ["alice", "bob", "admin", "support-bot", "ci-deployer"];

async fn run_case(quorum: u32, approvers: Vec<usize>) -> Result<(), TestCaseError> {
    let s = spawn_server(|c| {
        c.replace(
            "approvals_required = 1",
            &format!("approvals_required = {quorum}"),
        )
    })
    .await
    .unwrap();
    let req = CreateRequest {
        task: None,
        entitlement: "demo/ops-admin".into(),
        duration: Some("10m".into()),
        reason: "p".into(),
        ticket: None,
        public_key: None,
        break_glass: false,
        starts_at: None,
    };
    let r = s.client("alice").create_request(&req).await.unwrap();
    let mut distinct: Vec<&str> = Vec::new();
    for i in approvers {
        let who = WHO[i];
        let fulfilled_before = distinct.len() as u32 >= quorum;
        let result = s.client(who).approve(&r.id, None).await;
        // Someone who may not approve it may not see it either: for them it does not exist.
        let expected_code = if who == "alice" {
            Some("approval.self_approval")
        } else if !matches!(who, "bob" | "admin") {
            Some("request.not_found")
        } else if fulfilled_before {
            Some("request.not_pending")
        } else if distinct.contains(&who) {
            Some("approval.duplicate")
        } else {
            None
        };
        match (result, expected_code) {
            (Ok(_), None) => distinct.push(who),
            (Err(ClientError::Problem(p)), Some(code)) => prop_assert_eq!(p.code, code),
            (got, want) => prop_assert!(false, "{who}: got {got:?}, wanted {want:?}"),
        }
    }
    let now = s.client("alice").get_request(&r.id).await.unwrap();
    let approvals = now.approvals.unwrap();
    prop_assert!(approvals.iter().all(|a| a.approver != "alice"));
    prop_assert_eq!(approvals.len(), distinct.len());
    let reached = distinct.len() as u32 >= quorum;
    prop_assert_eq!(now.grant_id.is_some(), reached);
    prop_assert_eq!(now.state, if reached { "fulfilled" } else { "pending" });
    s.stop().await;
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]
    #[test]
    fn grants_exist_exactly_at_quorum_of_others(quorum in 1u32..=3, approvers in prop::collection::vec(0usize..5, 0..7)) {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        rt.block_on(run_case(quorum, approvers))?;
    }
}

#[tokio::test]
async fn an_undecided_request_expires_at_its_deadline() {
    let s = spawn_server_typed(
        |_, c| c,
        |_, c| c.server.pending_ttl = GrantDuration::from_secs(3_600),
    )
    .await
    .unwrap();
    let alice = s.client("alice");
    let req = CreateRequest {
        task: None,
        entitlement: "demo/ops-admin".into(),
        duration: Some("10m".into()),
        reason: "later".into(),
        ticket: None,
        public_key: None,
        break_glass: false,
        starts_at: None,
    };
    let r = alice.create_request(&req).await.unwrap();
    s.clock.advance_ms(3_599_000);
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    assert_eq!(alice.get_request(&r.id).await.unwrap().state, "pending");
    s.clock.advance_ms(1_000);
    assert!(
        hourglass_testkit::eventually(|| async {
            alice.get_request(&r.id).await.unwrap().state == "expired"
        })
        .await
    );
    match s.client("bob").approve(&r.id, None).await.unwrap_err() {
        ClientError::Problem(p) => assert_eq!(p.code, "request.not_pending"),
        other => panic!("{other}"),
    }
    s.stop().await;
}

#[tokio::test]
async fn simultaneous_approvals_both_count_and_open_one_grant() {
    let s = spawn_server_typed(
        |_, c| c,
        |_, c| {
            for e in c
                .entitlements
                .iter_mut()
                .filter(|e| e.approvals_required == 1)
            {
                e.approvals_required = 2;
            }
            // A profile may only tighten what its entitlements need.
            for p in c.profiles.iter_mut().filter(|p| p.approvals_required == 1) {
                p.approvals_required = 2;
            }
        },
    )
    .await
    .unwrap();
    let req = CreateRequest {
        task: None,
        entitlement: "demo/ops-admin".into(),
        duration: Some("10m".into()),
        reason: "race".into(),
        ticket: None,
        public_key: None,
        break_glass: false,
        starts_at: None,
    };
    for _ in 0..10 {
        let r = s.client("alice").create_request(&req).await.unwrap();
        let (bob, admin) = (s.client("bob"), s.client("admin"));
        let (a, b) = tokio::join!(bob.approve(&r.id, None), admin.approve(&r.id, None));
        a.unwrap();
        b.unwrap();
        let now = s.client("alice").get_request(&r.id).await.unwrap();
        assert_eq!(now.approvals.unwrap().len(), 2);
        assert_eq!(now.state, "fulfilled");
        let grants = s.client("admin").list_grants(None).await.unwrap();
        assert_eq!(grants.iter().filter(|g| g.request_id == r.id).count(), 1);
        // Done with it: the next round's request would otherwise overlap this grant.
        s.client("alice")
            .revoke(now.grant_id.as_deref().unwrap(), None)
            .await
            .unwrap();
    }
    s.stop().await;
}

/// One random policy: effect, action, who, which resource, and an optional duration limit.
#[derive(Debug, Clone)]
struct RandomPolicy {
    permit: bool,
    action: &'static str,
    who: &'static str,
    ops_admin_only: bool,
    max_secs: Option<u64>,
}

impl RandomPolicy {
    fn text(&self, i: usize) -> String {
        let principal = match self.who {
            "anyone" => "principal".to_owned(),
            "requesters" | "approvers" => {
                format!("principal in Hourglass::Group::\"{}\"", self.who)
            }
            name => format!("principal == Hourglass::Principal::\"{name}\""),
        };
        let resource = if self.ops_admin_only {
            "resource == Hourglass::Entitlement::\"demo/ops-admin\""
        } else {
            "resource"
        };
        let when = self.max_secs.map_or(String::new(), |m| {
            format!(" when {{ context.duration_secs <= {m} }}")
        });
        format!(
            "@id(\"p{i}\")\n{}({principal}, action == Hourglass::Action::\"{}\", {resource}){when};\n",
            if self.permit { "permit" } else { "forbid" },
            self.action
        )
    }

    /// An unconditional forbid of `action` for everyone on ops-admin.
    fn forbids_all(&self, action: &str) -> bool {
        !self.permit && self.action == action && self.who == "anyone" && self.max_secs.is_none()
    }
}

fn arb_random_policy() -> impl Strategy<Value = RandomPolicy> {
    (
        prop::bool::weighted(0.75),
        prop::sample::select(vec!["Request", "AutoApprove", "Approve", "Approve"]),
        prop::sample::select(vec!["anyone", "requesters", "approvers", "alice", "bob"]),
        any::<bool>(),
        prop::option::of(prop::sample::select(vec![600u64, 1800, 3600])),
    )
        .prop_map(
            |(permit, action, who, ops_admin_only, max_secs)| RandomPolicy {
                permit,
                action,
                who,
                ops_admin_only,
                max_secs,
            },
        )
}

/// Whatever the policies say: nobody approves their own request, no grant exists without its
/// quorum of human approvals or a policy approval, no grant outlives the entitlement's maximum,
/// and an unconditional forbid always wins.
async fn run_random_policies(
    policies: Vec<RandomPolicy>,
    quorum: u32,
    minutes: u64,
    approvers: Vec<usize>,
) -> Result<(), TestCaseError> {
    let text: String = policies
        .iter()
        .enumerate()
        .map(|(i, p)| p.text(i))
        .collect();
    let s = hourglass_testkit::spawn_server_with(|dir, config| {
        std::fs::write(dir.join("policies/demo.cedar"), &text).unwrap();
        config.replace(
            "approvals_required = 1",
            &format!("approvals_required = {quorum}"),
        )
    })
    .await
    .unwrap();
    let forbids = |a: &str| policies.iter().any(|p| p.forbids_all(a));
    let req = CreateRequest {
        task: None,
        entitlement: "demo/ops-admin".into(),
        duration: Some(format!("{minutes}m")),
        reason: "p".into(),
        ..CreateRequest::default()
    };
    let r = match s.client("alice").create_request(&req).await {
        Ok(r) => r,
        Err(ClientError::Problem(p)) => {
            prop_assert_eq!(p.code, "request.not_eligible");
            s.stop().await;
            return Ok(());
        }
        Err(e) => return Err(TestCaseError::fail(e.to_string())),
    };
    prop_assert!(!forbids("Request"), "a forbid on Request did not win");
    if forbids("AutoApprove") {
        prop_assert_eq!(&r.state, "pending");
    }
    for i in approvers {
        let who = WHO[i];
        let result = s.client(who).approve(&r.id, None).await;
        if who == "alice" {
            prop_assert!(
                matches!(&result, Err(ClientError::Problem(p)) if p.code == "approval.self_approval"),
                "alice approved her own request: {result:?}"
            );
        }
        if forbids("Approve") {
            prop_assert!(result.is_err(), "{who} approved despite a forbid");
        }
    }
    let now = s.client("alice").get_request(&r.id).await.unwrap();
    let approvals = now.approvals.unwrap();
    prop_assert!(approvals.iter().all(|a| a.approver != "alice"));
    if let Some(gid) = &now.grant_id {
        let by_policy = approvals
            .iter()
            .any(|a| a.via == "policy" && !a.policy_ids.is_empty());
        let humans = approvals.iter().filter(|a| a.via == "human").count() as u32;
        prop_assert!(
            by_policy || humans >= quorum,
            "a grant without its quorum: {approvals:?}"
        );
        let g = s.client("alice").get_grant(gid).await.unwrap();
        let start = hourglass_core::Timestamp::parse_rfc3339(&g.starts_at).unwrap();
        let end = hourglass_core::Timestamp::parse_rfc3339(&g.expires_at).unwrap();
        prop_assert!(end.millis_since(start) <= 2 * 3_600_000, "past the maximum");
    }
    s.stop().await;
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    #[test]
    fn random_policy_sets_cannot_break_the_invariants(
        policies in prop::collection::vec(arb_random_policy(), 1..8),
        quorum in 1u32..=2,
        minutes in prop::sample::select(vec![5u64, 30, 90, 120]),
        approvers in prop::collection::vec(0usize..5, 0..5),
    ) {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        rt.block_on(run_random_policies(policies, quorum, minutes, approvers))?;
    }
}
