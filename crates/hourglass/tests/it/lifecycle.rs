use std::os::unix::fs::PermissionsExt;

use hourglass_api::CreateRequest;
use hourglass_client::ClientError;
use hourglass_core::GrantDuration;
use hourglass_core::audit::ChainVerifier;
use hourglass_testkit::{TestServer, eventually, spawn_server, spawn_server_typed};

pub(crate) fn ask(ent: &str, dur: &str, reason: &str) -> CreateRequest {
    CreateRequest {
        entitlement: ent.into(),
        duration: Some(dur.into()),
        reason: reason.into(),
        ticket: None,
        task: None,
        public_key: None,
        break_glass: false,
        starts_at: None,
    }
}

pub(crate) async fn audit_len(s: &TestServer) -> usize {
    s.store()
        .unwrap()
        .audit_after(0, 100_000)
        .await
        .unwrap()
        .len()
}

pub(crate) async fn chain_ok(s: &TestServer) -> u64 {
    let mut v = ChainVerifier::default();
    for e in s.store().unwrap().audit_after(0, 100_000).await.unwrap() {
        v.check(&e).unwrap();
    }
    v.checked()
}

/// The grant of request `id` once it is active.
pub(crate) async fn active_grant(c: &hourglass_client::Client, id: &str) -> String {
    assert!(
        eventually(|| async {
            match c.get_request(id).await.unwrap().grant_id {
                Some(g) => c.get_grant(&g).await.unwrap().state == "active",
                None => false,
            }
        })
        .await
    );
    c.get_request(id).await.unwrap().grant_id.unwrap()
}

pub(crate) fn problem(e: ClientError) -> hourglass_api::Problem {
    match e {
        ClientError::Problem(p) => *p,
        other => panic!("expected a problem, got {other}"),
    }
}

#[tokio::test]
async fn auto_approved_grant_appears_and_is_revoked_at_expiry() {
    let s = spawn_server(|c| c).await.unwrap();
    let alice = s.client("alice");
    let r = alice
        .create_request(&ask("demo/read-logs", "1m", "check errors"))
        .await
        .unwrap();
    assert_eq!(r.state, "fulfilled");
    let approvals = r.approvals.clone().unwrap();
    assert_eq!(approvals[0].via, "policy");
    assert_eq!(
        approvals[0].policy_ids,
        vec!["read-logs-auto-approve-1h".to_owned()]
    );
    let gid = r.grant_id.clone().unwrap();
    assert!(
        eventually(|| async { s.access().contains(&gid) }).await,
        "provisioned in the target"
    );
    assert!(eventually(|| async { alice.get_grant(&gid).await.unwrap().state == "active" }).await);

    // Not yet: one second before the end it is still there.
    s.clock.advance_ms(59_000);
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    assert!(s.access().contains(&gid));
    s.clock.advance_ms(1_000);
    assert!(
        eventually(|| async { !s.access().contains(&gid) }).await,
        "revoked in the target at expiry"
    );
    assert!(eventually(|| async { alice.get_grant(&gid).await.unwrap().state == "revoked" }).await);
    let metrics = alice.metrics().await.unwrap();
    assert!(metrics.contains("hourglass_grants_active 0"), "{metrics}");
    assert!(
        metrics.contains("hourglass_revocation_lag_seconds_count 1"),
        "{metrics}"
    );
    assert!(chain_ok(&s).await >= 6);

    // The audit over the API: for administrators of everything, in order, from a sequence on.
    let events = s.client("admin").audit(0).await.unwrap();
    // The directory comes first: each configured identity and token, declared at start; then
    // the policy set the server started with, put in force.
    let declared = events
        .iter()
        .take_while(|e| e.action == "identity.declared" || e.action == "key.declared")
        .count();
    assert_eq!(events[declared].action, "policy.reloaded");
    let declared = declared + 1;
    assert!(
        declared >= 2,
        "identities are declared in the audit at start"
    );
    let actions: Vec<&str> = events[declared..]
        .iter()
        .map(|e| e.action.as_str())
        .collect();
    assert_eq!(
        actions,
        [
            "request.created",
            "request.approved",
            "request.fulfilled",
            "grant.created",
            "grant.activated",
            "grant.expired",
            "grant.revoked",
            "grant.revocation_verified"
        ]
    );
    let after = u64::try_from(declared + 5).unwrap();
    assert_eq!(s.client("admin").audit(after).await.unwrap().len(), 3);
    let p = problem(alice.audit(0).await.unwrap_err());
    assert_eq!((p.status, p.code.as_str()), (403, "audit.not_allowed"));
    s.stop().await;
}

#[tokio::test]
async fn approval_needs_someone_else_and_happens_once() {
    let s = spawn_server(|c| c).await.unwrap();
    let (alice, bob) = (s.client("alice"), s.client("bob"));
    let r = alice
        .create_request(&ask("demo/ops-admin", "30m", "restart the api"))
        .await
        .unwrap();
    assert_eq!(r.state, "pending");
    let before = audit_len(&s).await;
    let p = problem(alice.approve(&r.id, None).await.unwrap_err());
    assert_eq!((p.status, p.code.as_str()), (403, "approval.self_approval"));
    let p = problem(
        s.client("support-bot")
            .approve(&r.id, None)
            .await
            .unwrap_err(),
    );
    assert_eq!(
        (p.status, p.code.as_str()),
        (404, "request.not_found"),
        "agents never approve, nor see what they cannot approve"
    );
    assert_eq!(audit_len(&s).await, before, "refusals change nothing");

    let approved = bob.approve(&r.id, Some("ok".into())).await.unwrap();
    assert_eq!(approved.state, "fulfilled");
    let human = approved.approvals.unwrap();
    assert_eq!(human[0].approver, "bob");
    assert_eq!(
        human[0].policy_ids,
        vec!["approvers-approve-demo".to_owned()]
    );
    let p = problem(bob.approve(&r.id, None).await.unwrap_err());
    assert_eq!((p.status, p.code.as_str()), (409, "request.not_pending"));
    let gid = approved.grant_id.unwrap();
    assert!(eventually(|| async { s.access().contains(&gid) }).await);

    // Early revocation by the grantee.
    alice.revoke(&gid, Some("done".into())).await.unwrap();
    assert!(eventually(|| async { !s.access().contains(&gid) }).await);
    let p = problem(s.client("alice").cancel(&r.id).await.unwrap_err());
    assert_eq!(p.code, "request.already_fulfilled");
    chain_ok(&s).await;
    s.stop().await;
}

#[tokio::test]
async fn bad_input_gets_a_problem_naming_the_field_and_changes_nothing() {
    let s = spawn_server(|c| c).await.unwrap();
    let alice = s.client("alice");
    let before = audit_len(&s).await;
    let cases = [
        (
            ask("demo/nope", "10m", "x"),
            "request.entitlement_unknown",
            "entitlement",
        ),
        (
            ask("demo/ops-admin", "3h", "x"),
            "request.duration_exceeds_max",
            "duration",
        ),
        (
            ask("demo/ops-admin", "30s", "x"),
            "request.duration_below_min",
            "duration",
        ),
        (
            ask("demo/ops-admin", "10 minutes", "x"),
            "request.duration_invalid",
            "duration",
        ),
        (
            ask("demo/ops-admin", "10m", "   "),
            "request.reason_missing",
            "reason",
        ),
    ];
    for (body, code, field) in cases {
        let p = problem(alice.create_request(&body).await.unwrap_err());
        assert_eq!(
            (p.status, p.code.as_str(), p.field.as_deref()),
            (400, code, Some(field)),
            "{p:?}"
        );
        assert!(p.trace_id.is_some());
    }
    for (raw, field) in [
        (r#"{"entitlement": 5}"#, "entitlement"),
        (
            r#"{"entitlement": "demo/read-logs", "colour": 1}"#,
            "colour",
        ),
        ("{not json", ""),
    ] {
        let p = problem(alice.post_raw("/v1/requests", raw).await.unwrap_err());
        assert_eq!((p.status, p.code.as_str()), (400, "body.invalid"), "{raw}");
        if !field.is_empty() {
            assert_eq!(p.field.as_deref(), Some(field), "{raw}");
        }
    }
    let p = problem(s.client("nobody").list_requests(None).await.unwrap_err());
    assert_eq!(p.status, 401);
    let p = problem(
        s.client("bob")
            .create_request(&ask("demo/ops-admin", "10m", "x"))
            .await
            .unwrap_err(),
    );
    assert_eq!((p.status, p.code.as_str()), (403, "request.not_eligible"));
    // Bad input writes nothing; a refusal by policy leaves one record of what refused it.
    assert_eq!(audit_len(&s).await, before + 1);
    let last = s.client("admin").audit(0).await.unwrap().pop().unwrap();
    assert_eq!(
        (last.action.as_str(), last.actor.as_str()),
        ("request.refused", "bob")
    );
    assert!(alice.list_requests(None).await.unwrap().is_empty());

    // Approving a cancelled request, or cancelling twice: a conflict, and nothing changes.
    let r = alice
        .create_request(&ask("demo/ops-admin", "10m", "changed my mind"))
        .await
        .unwrap();
    alice.cancel(&r.id).await.unwrap();
    let before = audit_len(&s).await;
    let p = problem(s.client("bob").approve(&r.id, None).await.unwrap_err());
    assert_eq!((p.status, p.code.as_str()), (409, "request.not_pending"));
    let p = problem(alice.cancel(&r.id).await.unwrap_err());
    assert_eq!(p.code, "request.not_pending");
    let p = problem(s.client("bob").approve("req_nope", None).await.unwrap_err());
    assert_eq!((p.status, p.code.as_str()), (404, "request.not_found"));
    assert_eq!(audit_len(&s).await, before);
    assert_eq!(alice.get_request(&r.id).await.unwrap().state, "cancelled");
    s.stop().await;
}

#[tokio::test]
async fn a_revocation_that_fails_three_times_succeeds_on_the_fourth() {
    let s = spawn_server_typed(
        // Wrap the demo target's revoke in a script that fails its first three runs.
        |_, c| c.replace(r#", "revoke"]"#, r#", "revoke-flaky"]"#),
        |_, c| c.server.overdue_after = GrantDuration::from_secs(5),
    )
    .await
    .unwrap();
    let script = s.dir.path().join("targets/demo-target.sh");
    let original = std::fs::read_to_string(&script).unwrap();
    let counter = s.dir.path().join("revoke-attempts");
    let flaky = original.replace(
        "case \"$op\" in",
        &format!(
            "if [ \"$op\" = revoke-flaky ]; then n=$(cat {c} 2>/dev/null || echo 0); n=$((n+1)); echo $n > {c}; \
             if [ $n -le 3 ]; then echo \"target down (attempt $n)\" >&2; exit 1; fi; op=revoke; fi\ncase \"$op\" in",
            c = counter.display()
        ),
    );
    std::fs::write(&script, flaky).unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();

    let alice = s.client("alice");
    let r = alice
        .create_request(&ask("demo/read-logs", "1m", "x"))
        .await
        .unwrap();
    let gid = r.grant_id.unwrap();
    assert!(eventually(|| async { s.access().contains(&gid) }).await);
    s.clock.advance_ms(60_000);
    for attempt in 1..=3 {
        assert!(
            eventually(|| async {
                std::fs::read_to_string(&counter).is_ok_and(|n| n.trim() == attempt.to_string())
            })
            .await
        );
        assert!(
            eventually(|| async {
                alice.metrics().await.unwrap().contains(&format!(
                    "hourglass_job_retries_total{{action=\"revoke\"}} {attempt}"
                ))
            })
            .await
        );
        assert_eq!(
            alice.get_grant(&gid).await.unwrap().state,
            "revoking",
            "never shown revoked before the target confirms"
        );
        assert!(s.access().contains(&gid));
        // Failing at the due time is not yet overdue; still failing 6 s later (over 5 s) is.
        let overdue = if attempt == 3 { 1 } else { 0 };
        let m = alice.metrics().await.unwrap();
        if attempt != 2 {
            assert!(
                m.contains(&format!("hourglass_revocations_overdue {overdue}")),
                "{m}"
            );
        }
        // Past the largest possible backoff of this attempt (equal jitter: at most base*2^(n-1)).
        s.clock.advance_ms(1_000 << attempt);
    }
    assert!(eventually(|| async { alice.get_grant(&gid).await.unwrap().state == "revoked" }).await);
    assert!(!s.access().contains(&gid));
    assert!(
        alice
            .metrics()
            .await
            .unwrap()
            .contains("hourglass_revocations_overdue 0")
    );
    let events = s.store().unwrap().audit_after(0, 1_000).await.unwrap();
    let failed = events
        .iter()
        .filter(|e| e.record.action == "grant.revoke_failed")
        .count();
    assert_eq!(failed, 3);
    let revoked = events
        .iter()
        .find(|e| e.record.action == "grant.revoked")
        .unwrap();
    assert!(
        revoked
            .record
            .details
            .contains(&("attempt".into(), "4".into()))
    );
    chain_ok(&s).await;
    s.stop().await;
}

/// A revocation the target does not carry out is not a revocation: while the target, asked
/// again, still has the access, the grant stays `revoking`, the revocation is retried and
/// counted, and it becomes `revoked` only with the proof, which the audit records.
#[tokio::test]
async fn a_revocation_is_revoked_only_when_the_target_proves_the_access_gone() {
    let s = spawn_server_typed(
        |_, c| c.replace(r#", "revoke"]"#, r#", "revoke-lying"]"#),
        |_, c| c.server.overdue_after = GrantDuration::from_secs(1),
    )
    .await
    .unwrap();
    let script = s.dir.path().join("targets/demo-target.sh");
    let original = std::fs::read_to_string(&script).unwrap();
    let counter = s.dir.path().join("revoke-attempts");
    // Says it revoked, twice, and did nothing; then does it.
    let lying = original.replace(
        "case \"$op\" in",
        &format!(
            "if [ \"$op\" = revoke-lying ]; then n=$(cat {c} 2>/dev/null || echo 0); n=$((n+1)); echo $n > {c}; \
             if [ $n -le 2 ]; then exit 0; fi; op=revoke; fi\ncase \"$op\" in",
            c = counter.display()
        ),
    );
    std::fs::write(&script, lying).unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();

    let alice = s.client("alice");
    let r = alice
        .create_request(&ask("demo/read-logs", "1m", "x"))
        .await
        .unwrap();
    let gid = r.grant_id.unwrap();
    assert!(eventually(|| async { s.access().contains(&gid) }).await);
    s.clock.advance_ms(60_000);
    for attempt in 1..=2 {
        assert!(
            eventually(|| async {
                alice.metrics().await.unwrap().contains(&format!(
                    "hourglass_job_retries_total{{action=\"revoke\"}} {attempt}"
                ))
            })
            .await
        );
        assert_eq!(alice.get_grant(&gid).await.unwrap().state, "revoking");
        assert!(s.access().contains(&gid), "the target still has it");
        if attempt == 2 {
            // Two seconds past due (over `overdue_after`): revocation debt, in the metrics
            // and the report.
            let m = alice.metrics().await.unwrap();
            assert!(
                m.contains("hourglass_revocation_debt{target=\"demo\",kind=\"overdue\"} 1"),
                "{m}"
            );
            let debt = s.client("admin").revocation_debt().await.unwrap();
            let demo = debt.iter().find(|t| t.target == "demo").unwrap();
            assert_eq!(demo.overdue.len(), 1, "{debt:?}");
            assert_eq!(
                (
                    demo.overdue[0].grant_id.as_str(),
                    demo.overdue[0].overdue_secs
                ),
                (gid.as_str(), 2)
            );
            let p = problem(alice.revocation_debt().await.unwrap_err());
            assert_eq!(p.code, "report.not_allowed");
        }
        s.clock.advance_ms(1_000 << attempt);
    }
    assert!(eventually(|| async { alice.get_grant(&gid).await.unwrap().state == "revoked" }).await);
    assert!(!s.access().contains(&gid));
    let events = s.store().unwrap().audit_after(0, 1_000).await.unwrap();
    let failed: Vec<_> = events
        .iter()
        .filter(|e| e.record.action == "grant.revoke_failed")
        .collect();
    assert_eq!(failed.len(), 2);
    assert!(
        failed
            .iter()
            .all(|e| e.record.details.iter().any(|(k, v)| k == "error"
                && v.contains("not proven")
                && v.contains("still answers present")))
    );
    let proof = events
        .iter()
        .position(|e| e.record.action == "grant.revocation_verified")
        .unwrap();
    let revoked = events
        .iter()
        .position(|e| e.record.action == "grant.revoked")
        .unwrap();
    assert_eq!(events[proof].seq, events[revoked].seq + 1, "one commit");
    let d = &events[proof].record.details;
    assert!(d.contains(&("proof".into(), "verified".into())), "{d:?}");
    assert!(d.contains(&(
        "checked".into(),
        "the inspect command answers absent".into()
    )));
    assert!(
        alice
            .metrics()
            .await
            .unwrap()
            .contains("hourglass_revocations_total{proof=\"verified\"} 1")
    );
    assert!(
        alice
            .metrics()
            .await
            .unwrap()
            .contains("hourglass_revocation_debt{target=\"demo\",kind=\"overdue\"} 0")
    );
    chain_ok(&s).await;
    s.stop().await;
}

/// A worker that dies is started again: with the expiry scheduler and the job runner killed
/// (as a crash would), grants are still revoked at their expiry, and the restarts are counted.
#[tokio::test]
async fn expiry_goes_on_when_its_workers_die() {
    let s = spawn_server(|c| c).await.unwrap();
    let alice = s.client("alice");
    let r = alice
        .create_request(&ask("demo/read-logs", "1m", "check errors"))
        .await
        .unwrap();
    let gid = r.grant_id.clone().unwrap();
    assert!(eventually(|| async { alice.get_grant(&gid).await.unwrap().state == "active" }).await);

    assert!(s.kill_worker("scheduler"));
    assert!(s.kill_worker("job_runner"));
    assert!(!s.kill_worker("no-such-worker"));
    assert!(
        eventually(|| async {
            let m = alice.metrics().await.unwrap();
            m.contains("hourglass_worker_restarts_total{worker=\"scheduler\"} 1")
                && m.contains("hourglass_worker_restarts_total{worker=\"job_runner\"} 1")
        })
        .await,
        "both restarts counted"
    );
    // Ready again once they run.
    assert!(
        eventually(|| async {
            reqwest::get(format!("http://{}/readyz", s.addr))
                .await
                .is_ok_and(|r| r.status().is_success())
        })
        .await
    );
    s.clock.advance_ms(60_000);
    assert!(
        eventually(|| async { alice.get_grant(&gid).await.unwrap().state == "revoked" }).await,
        "revoked at expiry by the restarted workers"
    );
    assert!(!s.access().contains(&gid));
}
