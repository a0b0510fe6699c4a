//! Properties of approval, checked over the real API with random quorums and random sequences
//! of approvers: nobody approves their own request, approvals are counted once per person, and a
//! grant exists exactly when the quorum of distinct permitted approvers is reached.

use hourglass_api::CreateRequest;
use hourglass_client::ClientError;
use hourglass_testkit::spawn_server;
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
        let expected_code = if who == "alice" {
            Some("approval.self_approval")
        } else if fulfilled_before {
            Some("request.not_pending")
        } else if !matches!(who, "bob" | "admin") {
            Some("approval.not_authorized")
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
    let s = spawn_server(|c| c.replace("demo = false", "demo = false\npending_ttl = \"1h\""))
        .await
        .unwrap();
    let alice = s.client("alice");
    let req = CreateRequest {
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
    let s = spawn_server(|c| c.replace("approvals_required = 1", "approvals_required = 2"))
        .await
        .unwrap();
    let req = CreateRequest {
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
