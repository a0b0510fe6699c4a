//! Policy as a control boundary, end to end through the API: break-glass and its review.

use hourglass_api::CreateRequest;
use hourglass_testkit::{eventually, spawn_server, spawn_server_typed};

use crate::lifecycle::{ask, audit_len, chain_ok, problem};

fn break_glass(ent: &str, dur: &str, reason: &str) -> CreateRequest {
    CreateRequest {
        break_glass: true,
        ..ask(ent, dur, reason)
    }
}

/// Break-glass is immediate, capped, loud and reviewed by someone else; where policy does not
/// permit it, or past the cap, it is refused and nothing changes.
#[tokio::test]
async fn break_glass_is_immediate_capped_alerted_and_reviewed_by_someone_else() {
    let s = spawn_server(|c| c).await.unwrap();
    let (alice, bob) = (s.client("alice"), s.client("bob"));

    // Refusals first: past the break-glass cap (1h, below ops-admin's 2h), and someone whom
    // no BreakGlass policy permits. Neither writes anything.
    let before = audit_len(&s).await;
    let p = problem(
        alice
            .create_request(&break_glass("demo/ops-admin", "90m", "db down"))
            .await
            .unwrap_err(),
    );
    assert_eq!(
        (p.status, p.code.as_str(), p.field.as_deref()),
        (
            400,
            "request.duration_exceeds_break_glass_max",
            Some("duration")
        )
    );
    let p = problem(
        bob.create_request(&break_glass("demo/ops-admin", "30m", "db down"))
            .await
            .unwrap_err(),
    );
    assert_eq!(
        (p.status, p.code.as_str()),
        (403, "request.break_glass_not_allowed")
    );
    let p = problem(
        alice
            .create_request(&break_glass("demo/ops-admin", "30m", "  "))
            .await
            .unwrap_err(),
    );
    assert_eq!(p.field.as_deref(), Some("reason"));
    // Bad input writes nothing; bob's refusal by policy is one record.
    assert_eq!(audit_len(&s).await, before + 1);

    // Granted at once, with no approver: ops-admin normally waits for bob.
    let r = alice
        .create_request(&break_glass("demo/ops-admin", "30m", "db down, INC-42"))
        .await
        .unwrap();
    assert_eq!(r.state, "fulfilled");
    assert!(r.break_glass);
    let approval = &r.approvals.clone().unwrap()[0];
    assert_eq!(approval.via, "break_glass");
    assert_eq!(approval.policy_ids, ["requesters-break-glass-ops-admin"]);
    let gid = r.grant_id.clone().unwrap();
    assert!(eventually(|| async { s.access().contains(&gid) }).await);
    assert!(eventually(|| async { alice.get_grant(&gid).await.unwrap().state == "active" }).await);
    let g = alice.get_grant(&gid).await.unwrap();
    assert!(g.break_glass);

    // Loud: a metric, and a critical audit event in the same commit as the grant.
    let metrics = alice.metrics().await.unwrap();
    assert!(
        metrics.contains("hourglass_requests_total{outcome=\"break_glass\"} 1"),
        "{metrics}"
    );
    let events = s.client("admin").audit(0).await.unwrap();
    let activated = events
        .iter()
        .find(|e| e.action == "break_glass.activated")
        .unwrap();
    assert_eq!(activated.subject, r.id);
    assert!(
        activated
            .details
            .contains(&("severity".into(), "critical".into()))
    );
    assert!(events.iter().any(|e| e.action == "review.opened"));

    // The review: alice sees it but cannot close it; an agent neither sees nor closes it.
    let mine = alice.list_reviews(Some("open")).await.unwrap();
    assert_eq!(mine.len(), 1);
    let review = mine[0].clone();
    assert_eq!(
        (review.grant_id.as_str(), review.reason.as_str()),
        (gid.as_str(), "db down, INC-42")
    );
    let p = problem(
        alice
            .close_review(&review.id, "all fine")
            .await
            .unwrap_err(),
    );
    assert_eq!((p.status, p.code.as_str()), (403, "review.self_close"));
    let bot = s.client("support-bot");
    assert!(bot.list_reviews(None).await.unwrap().is_empty());
    let p = problem(bot.close_review(&review.id, "ok").await.unwrap_err());
    assert_eq!(p.status, 404);

    // bob closes it, with a comment; a blank one is refused first and changes nothing.
    assert_eq!(bob.list_reviews(Some("open")).await.unwrap().len(), 1);
    let before = audit_len(&s).await;
    let p = problem(bob.close_review(&review.id, " ").await.unwrap_err());
    assert_eq!(
        (p.status, p.code.as_str(), p.field.as_deref()),
        (400, "review.comment_missing", Some("comment"))
    );
    assert_eq!(audit_len(&s).await, before);
    let closed = bob
        .close_review(&review.id, "checked INC-42: justified")
        .await
        .unwrap();
    assert_eq!(closed.state, "closed");
    assert_eq!(closed.closed_by.as_deref(), Some("bob"));
    assert!(bob.list_reviews(Some("open")).await.unwrap().is_empty());
    let p = problem(bob.close_review(&review.id, "again").await.unwrap_err());
    assert_eq!((p.status, p.code.as_str()), (409, "review.closed"));

    // Still bounded: the grant ends at its 30 minutes like any other.
    s.clock.advance_ms(30 * 60_000);
    assert!(eventually(|| async { !s.access().contains(&gid) }).await);
    assert!(eventually(|| async { alice.get_grant(&gid).await.unwrap().state == "revoked" }).await);
    assert!(chain_ok(&s).await > 0);
    s.stop().await;
}

/// The demo policy that makes requesters eligible, narrowed to `pg` only: demo requests are no
/// longer permitted.
fn without_demo_eligibility(policies: &str) -> String {
    let old = r#"when { ["demo", "pg", "maria", "cache", "aws", "okta", "entra", "google", "github", "ssh", "saas"].contains(resource.target) };"#;
    assert!(
        policies.contains(old),
        "the demo's eligibility policy changed"
    );
    policies.replacen(old, r#"when { resource.target == "pg" };"#, 1)
}

/// A reload validates the whole set first and keeps the old one on any error; a good set is
/// audited with both hashes, then what was waiting is judged again: pending requests now denied
/// are cancelled, and grants not yet active are revoked before they ever activate.
#[tokio::test]
async fn policy_reload_validates_first_then_rejudges_what_is_waiting() {
    let s = spawn_server(|c| c.replace(r#", "grant"]"#, r#", "grant-down"]"#))
        .await
        .unwrap();
    // The target is down for grants: an approved grant stays provisioning (retrying).
    let script = s.dir.path().join("targets/demo-target.sh");
    let text = std::fs::read_to_string(&script).unwrap();
    std::fs::write(
        &script,
        text.replace(
            "case \"$op\" in",
            "if [ \"$op\" = grant-down ]; then echo 'target down' >&2; exit 1; fi\ncase \"$op\" in",
        ),
    )
    .unwrap();
    let (alice, admin) = (s.client("alice"), s.client("admin"));
    let provisioning = alice
        .create_request(&ask("demo/read-logs", "30m", "logs"))
        .await
        .unwrap();
    let gid = provisioning.grant_id.clone().unwrap();
    let pending = alice
        .create_request(&ask("demo/ops-admin", "30m", "deploy"))
        .await
        .unwrap();
    assert_eq!(pending.state, "pending");
    let old_hash = pending.policy_hash.clone();
    // Wait for the first failed attempt; the next waits for the (manual) clock to move.
    assert!(
        eventually(|| async {
            alice
                .metrics()
                .await
                .unwrap()
                .contains("hourglass_job_retries_total{action=\"provision\"} 1")
        })
        .await
    );

    // Broken sets change nothing: a syntax error, then a schema violation, each named.
    let policies = s.dir.path().join("policies");
    let before = audit_len(&s).await;
    for (file, text, names) in [
        (
            "broken.cedar",
            "permit(principal, action, resource",
            "broken.cedar",
        ),
        (
            "typo.cedar",
            "@id(\"typo\")\npermit(principal, action, resource) when { principal.knd == \"human\" };",
            "knd",
        ),
    ] {
        std::fs::write(policies.join(file), text).unwrap();
        let p = problem(admin.reload_policies().await.unwrap_err());
        assert_eq!((p.status, p.code.as_str()), (400, "policy.invalid"));
        assert!(p.detail.contains(names), "{}", p.detail);
        std::fs::remove_file(policies.join(file)).unwrap();
    }
    assert_eq!(audit_len(&s).await, before);
    assert_eq!(
        alice.get_request(&pending.id).await.unwrap().state,
        "pending"
    );

    // Only an administrator of everything may reload.
    let p = problem(alice.reload_policies().await.unwrap_err());
    assert_eq!(
        (p.status, p.code.as_str()),
        (403, "policy.reload_not_allowed")
    );

    // A good set that no longer makes requesters eligible for demo entitlements.
    let demo = policies.join("demo.cedar");
    std::fs::write(
        &demo,
        without_demo_eligibility(&std::fs::read_to_string(&demo).unwrap()),
    )
    .unwrap();
    let r = admin.reload_policies().await.unwrap();
    assert!(r.changed);
    assert_eq!(r.old_hash, old_hash);
    assert_eq!(r.cancelled_requests, std::slice::from_ref(&pending.id));
    assert_eq!(r.revoked_grants, std::slice::from_ref(&gid));

    let cancelled = alice.get_request(&pending.id).await.unwrap();
    assert_eq!(cancelled.state, "cancelled");
    assert!(
        cancelled
            .state_reason
            .unwrap()
            .contains(&format!("policy set {} no longer permits", r.new_hash))
    );
    // The grant never activated: its cleanup ends it as failed, and the target never held it.
    assert!(eventually(|| async { alice.get_grant(&gid).await.unwrap().state == "failed" }).await);
    assert!(!s.access().contains(&gid));

    let events = admin.audit(0).await.unwrap();
    // The start put the first set in force; the reload is the last.
    let reloaded = events
        .iter()
        .rev()
        .find(|e| e.action == "policy.reloaded")
        .unwrap();
    assert_eq!(reloaded.actor, "admin");
    assert!(reloaded.details.contains(&("old_hash".into(), old_hash)));
    assert!(
        reloaded
            .details
            .contains(&("new_hash".into(), r.new_hash.clone()))
    );

    // New requests are judged by the new set.
    let p = problem(
        alice
            .create_request(&ask("demo/ops-admin", "30m", "again"))
            .await
            .unwrap_err(),
    );
    assert_eq!((p.status, p.code.as_str()), (403, "request.not_eligible"));
    assert!(chain_ok(&s).await > 0);
    s.stop().await;
}

/// SIGHUP reloads the real server's policies; a broken file is logged and changes nothing.
#[tokio::test]
async fn sighup_reloads_policies_and_keeps_the_old_set_on_error() {
    let s = crate::binary::setup();
    let (mut server, _, base) = s.start_at().await;
    let alice = s.client(&base, "alice");
    let pid = server.id().unwrap().to_string();
    let hup = || crate::binary::hup(&pid);
    let policies = s.dir.path().join("policies");
    std::fs::write(policies.join("broken.cedar"), "permit(").unwrap();
    hup();
    assert!(eventually(|| async { s.log.lock().unwrap().contains("policies NOT reloaded") }).await);
    alice
        .create_request(&ask("demo/ops-admin", "30m", "still allowed"))
        .await
        .unwrap();
    std::fs::remove_file(policies.join("broken.cedar")).unwrap();
    let demo = policies.join("demo.cedar");
    std::fs::write(
        &demo,
        without_demo_eligibility(&std::fs::read_to_string(&demo).unwrap()),
    )
    .unwrap();
    hup();
    assert!(
        eventually(|| async { s.log.lock().unwrap().contains("SIGHUP: policies reloaded") }).await
    );
    let p = problem(
        alice
            .create_request(&ask("demo/ops-admin", "30m", "now refused"))
            .await
            .unwrap_err(),
    );
    assert_eq!(p.code, "request.not_eligible");
    server.kill().await.unwrap();
}

/// The server's time `plus_ms` from now, RFC 3339.
fn at(s: &hourglass_testkit::TestServer, plus_ms: i64) -> String {
    use hourglass_core::Clock as _;
    s.clock.now().plus_millis(plus_ms).to_string()
}

/// A request that would duplicate access is refused (extend instead); a scheduled one waits for
/// its start; bad schedules are clear errors that change nothing.
#[tokio::test]
async fn overlapping_requests_are_refused_and_scheduled_ones_start_later() {
    let s = spawn_server(|c| c).await.unwrap();
    let alice = s.client("alice");
    let g1 = alice
        .create_request(&ask("demo/read-logs", "30m", "now"))
        .await
        .unwrap()
        .grant_id
        .unwrap();
    assert!(eventually(|| async { alice.get_grant(&g1).await.unwrap().state == "active" }).await);
    let before = audit_len(&s).await;
    let p = problem(
        alice
            .create_request(&ask("demo/read-logs", "10m", "again"))
            .await
            .unwrap_err(),
    );
    assert_eq!((p.status, p.code.as_str()), (409, "request.overlaps_grant"));
    assert!(p.detail.contains(&g1), "{}", p.detail);
    // Scheduled into the running grant's window: still an overlap.
    let overlapping = CreateRequest {
        starts_at: Some(at(&s, 20 * 60_000)),
        ..ask("demo/read-logs", "15m", "overlaps the end")
    };
    let p = problem(alice.create_request(&overlapping).await.unwrap_err());
    assert_eq!(p.code, "request.overlaps_grant");
    for (starts_at, code) in [
        ("tomorrow".to_owned(), "request.starts_at_invalid"),
        (at(&s, -3_600_000), "request.starts_at_past"),
        (at(&s, 31 * 24 * 3_600_000), "request.starts_at_too_far"),
    ] {
        let p = problem(
            alice
                .create_request(&CreateRequest {
                    starts_at: Some(starts_at),
                    ..ask("demo/read-logs", "15m", "x")
                })
                .await
                .unwrap_err(),
        );
        assert_eq!(
            (p.status, p.code.as_str(), p.field.as_deref()),
            (400, code, Some("starts_at"))
        );
    }
    let p = problem(
        alice
            .create_request(&CreateRequest {
                starts_at: Some(at(&s, 3_600_000)),
                ..break_glass("demo/ops-admin", "15m", "x")
            })
            .await
            .unwrap_err(),
    );
    assert_eq!(p.code, "request.break_glass_scheduled");
    assert_eq!(audit_len(&s).await, before);

    // In an hour, after the running grant: approved now, provisioned at its start.
    let later = alice
        .create_request(&CreateRequest {
            starts_at: Some(at(&s, 3_600_000)),
            ..ask("demo/read-logs", "15m", "nightly check")
        })
        .await
        .unwrap();
    assert_eq!(later.state, "fulfilled");
    let g2 = later.grant_id.unwrap();
    let grant = alice.get_grant(&g2).await.unwrap();
    assert_eq!(grant.state, "provisioning");
    assert_eq!(grant.starts_at, at(&s, 3_600_000));
    assert_eq!(grant.expires_at, at(&s, 3_600_000 + 15 * 60_000));

    // A second pending request for the same access is refused too.
    let pending = alice
        .create_request(&ask("demo/ops-admin", "30m", "deploy"))
        .await
        .unwrap();
    let p = problem(
        alice
            .create_request(&ask("demo/ops-admin", "30m", "deploy again"))
            .await
            .unwrap_err(),
    );
    assert_eq!(
        (p.status, p.code.as_str()),
        (409, "request.duplicate_pending")
    );
    assert!(p.detail.contains(&pending.id));

    s.clock.advance_ms(59 * 60_000);
    assert!(eventually(|| async { !s.access().contains(&g1) }).await);
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    assert!(!s.access().contains(&g2), "not before its start");
    s.clock.advance_ms(60_000);
    assert!(eventually(|| async { s.access().contains(&g2) }).await);
    assert!(eventually(|| async { alice.get_grant(&g2).await.unwrap().state == "active" }).await);
    s.stop().await;
}

/// Quotas refuse with 429 and change nothing; break-glass is not held back by them.
#[tokio::test]
async fn quotas_refuse_with_429_and_change_nothing() {
    let s = spawn_server(|c| {
        c.replacen(
            "max_duration = \"4h\"",
            "max_duration = \"4h\"\nmax_live_grants = 1",
            1,
        ) + "\n[quotas]\nmax_live_grants_per_principal = 2\nmax_requests_per_hour_per_principal = 3\n"
    })
    .await
    .unwrap();
    let (alice, ci) = (s.client("alice"), s.client("ci-deployer"));
    let one = alice
        .create_request(&ask("demo/read-logs", "30m", "one"))
        .await
        .unwrap()
        .grant_id
        .unwrap();
    assert!(eventually(|| async { alice.get_grant(&one).await.unwrap().state == "active" }).await);
    let before = audit_len(&s).await;
    // demo/read-logs allows one grant at once, whoever holds it.
    let p = problem(
        ci.create_request(&ask("demo/read-logs", "5m", "deploy check"))
            .await
            .unwrap_err(),
    );
    assert_eq!(
        (p.status, p.code.as_str()),
        (429, "quota.entitlement_grants")
    );
    // alice: a second live grant is allowed, a third is not.
    let r = alice
        .create_request(&ask("demo/ops-admin", "30m", "two"))
        .await
        .unwrap();
    let r = s.client("bob").approve(&r.id, None).await.unwrap();
    let ops = r.grant_id.clone().unwrap();
    assert!(eventually(|| async { alice.get_grant(&ops).await.unwrap().state == "active" }).await);
    let before_third = audit_len(&s).await;
    assert!(before_third > before);
    let p = problem(
        alice
            .create_request(&CreateRequest {
                starts_at: Some(at(&s, 3_600_000)),
                ..ask("demo/read-logs", "15m", "three")
            })
            .await
            .unwrap_err(),
    );
    assert_eq!((p.status, p.code.as_str()), (429, "quota.principal_grants"));
    assert_eq!(audit_len(&s).await, before_third);
    // Requests an hour: alice has made 2; a third is allowed, a fourth is not.
    s.client("admin").revoke(&ops, None).await.unwrap();
    assert!(eventually(|| async { alice.get_grant(&ops).await.unwrap().state == "revoked" }).await);
    let third = alice
        .create_request(&ask("demo/ops-admin", "30m", "three"))
        .await
        .unwrap();
    alice.cancel(&third.id).await.unwrap();
    let before = audit_len(&s).await;
    let p = problem(
        alice
            .create_request(&ask("demo/ops-admin", "30m", "four"))
            .await
            .unwrap_err(),
    );
    assert_eq!(
        (p.status, p.code.as_str()),
        (429, "quota.principal_requests")
    );
    assert_eq!(audit_len(&s).await, before);
    // Break-glass is not held back by a quota: it is alerted and reviewed instead.
    let bg = alice
        .create_request(&break_glass("demo/ops-admin", "15m", "outage"))
        .await
        .unwrap();
    assert_eq!(bg.state, "fulfilled");
    // An hour later the window has moved on (and the grants have ended).
    s.clock.advance_ms(3_600_000);
    assert!(
        eventually(|| async { alice.list_grants(Some("active")).await.unwrap().is_empty() }).await
    );
    alice
        .create_request(&ask("demo/read-logs", "30m", "four, later"))
        .await
        .unwrap();
    s.stop().await;
}

/// An extension goes through the same policy and approval path as a request, moves the end in
/// the target too, and never goes past the entitlement's maximum total.
#[tokio::test]
async fn extensions_take_the_request_path_and_stop_at_the_maximum_total() {
    let s = spawn_server(|c| c).await.unwrap();
    let (alice, bob) = (s.client("alice"), s.client("bob"));
    let gid = alice
        .create_request(&ask("demo/read-logs", "30m", "logs"))
        .await
        .unwrap()
        .grant_id
        .unwrap();
    assert!(eventually(|| async { alice.get_grant(&gid).await.unwrap().state == "active" }).await);
    let line = || {
        s.access()
            .lines()
            .find(|l| l.ends_with(&gid))
            .map(str::to_owned)
            .unwrap_or_default()
    };
    assert!(line().contains(&format!("until {}", at(&s, 30 * 60_000))));

    // +20m: 50m in all, within the 1h that policy approves with no human.
    let e = alice.extend(&gid, "20m", "still digging").await.unwrap();
    assert_eq!(
        (
            e.state.as_str(),
            e.extends.as_deref(),
            e.grant_id.as_deref()
        ),
        ("fulfilled", Some(gid.as_str()), Some(gid.as_str()))
    );
    assert_eq!(
        e.approvals.unwrap()[0].policy_ids,
        ["read-logs-auto-approve-1h"]
    );
    assert_eq!(
        alice.get_grant(&gid).await.unwrap().expires_at,
        at(&s, 50 * 60_000)
    );
    let moved = format!("until {}", at(&s, 50 * 60_000));
    assert!(
        eventually(|| async { line().contains(&moved) }).await,
        "the target holds the new end"
    );

    // +20m more is 70m: past the no-human hour, so bob decides; a second one waits its turn.
    let e = alice.extend(&gid, "20m", "one more pass").await.unwrap();
    assert_eq!(e.state, "pending");
    let p = problem(alice.extend(&gid, "10m", "and more").await.unwrap_err());
    assert_eq!(
        (p.status, p.code.as_str()),
        (409, "extend.duplicate_pending")
    );
    let approved = bob.approve(&e.id, None).await.unwrap();
    assert_eq!(approved.state, "fulfilled");
    assert_eq!(
        alice.get_grant(&gid).await.unwrap().expires_at,
        at(&s, 70 * 60_000)
    );

    // Never past the maximum total (4h), never by someone else, and nothing changes.
    assert!(
        eventually(|| async { line().contains(&format!("until {}", at(&s, 70 * 60_000))) }).await
    );
    // The target acts before its outcome is committed: wait for the second one on record.
    let admin = s.client("admin");
    assert!(
        eventually(|| async {
            let events = admin.audit(0).await.unwrap();
            events
                .iter()
                .filter(|e| e.action == "grant.extension_applied")
                .count()
                == 2
        })
        .await
    );
    let before = audit_len(&s).await;
    let p = problem(alice.extend(&gid, "3h", "all day").await.unwrap_err());
    assert_eq!(
        (p.status, p.code.as_str(), p.field.as_deref()),
        (400, "extend.exceeds_max", Some("by"))
    );
    let p = problem(bob.extend(&gid, "10m", "for alice").await.unwrap_err());
    assert_eq!((p.status, p.code.as_str()), (403, "extend.not_holder"));
    let p = problem(
        s.client("support-bot")
            .extend(&gid, "10m", "x")
            .await
            .unwrap_err(),
    );
    assert_eq!(p.status, 404);
    let p = problem(alice.extend(&gid, "10m", " ").await.unwrap_err());
    assert_eq!(p.field.as_deref(), Some("reason"));
    assert_eq!(audit_len(&s).await, before);

    // It ends at the extended time, not the original one.
    s.clock.advance_ms(69 * 60_000);
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    assert_eq!(alice.get_grant(&gid).await.unwrap().state, "active");
    s.clock.advance_ms(60_000);
    assert!(eventually(|| async { alice.get_grant(&gid).await.unwrap().state == "revoked" }).await);
    assert!(line().is_empty());
    let p = problem(alice.extend(&gid, "10m", "too late").await.unwrap_err());
    assert_eq!((p.status, p.code.as_str()), (409, "grant.not_active"));
    let events = s.client("admin").audit(0).await.unwrap();
    assert_eq!(
        events
            .iter()
            .filter(|e| e.action == "grant.extended")
            .count(),
        2
    );
    assert_eq!(
        events
            .iter()
            .filter(|e| e.action == "grant.extension_applied")
            .count(),
        2
    );
    s.stop().await;
}

/// A task profile is requested as one, granted as one grant per entitlement, revoked together,
/// and never left half granted: a member that cannot be provisioned in time rolls back the rest.
#[tokio::test]
async fn a_profile_is_granted_together_and_revoked_together() {
    let s = spawn_server_typed(|dir, c| {
        // alice is on call all of the test's day; the ops-admin grant of the target can be made
        // to fail with a marker file.
        std::fs::write(
            dir.join("oncall.toml"),
            "[[shift]]\nprincipal = \"alice\"\nfrom = \"2027-01-15T00:00:00Z\"\nuntil = \"2027-01-16T00:00:00Z\"\n",
        )
        .unwrap();
        let script = dir.join("targets/demo-target.sh");
        let text = std::fs::read_to_string(&script).unwrap();
        std::fs::write(
            &script,
            text.replace(
                "case \"$op\" in",
                &format!(
                    "if [ \"$op\" = grant ] && [ \"$HOURGLASS_ENTITLEMENT\" = demo/ops-admin ] && [ -f {}/ops-down ]; then echo down >&2; exit 1; fi\ncase \"$op\" in",
                    dir.display()
                ),
            ),
        )
        .unwrap();
        c
    }, |dir, c| {
        c.policy.oncall_file = Some(dir.join("oncall.toml"));
        c.server.provision_timeout = hourglass_core::GrantDuration::from_secs(300);
    })
    .await
    .unwrap();
    let (alice, bob) = (s.client("alice"), s.client("bob"));

    // On call: policy grants the whole profile at once, one grant per entitlement.
    let r = alice
        .create_request(&ask("incident/triage", "30m", "INC-7"))
        .await
        .unwrap();
    assert_eq!(
        (r.state.as_str(), r.kind.as_str()),
        ("fulfilled", "profile")
    );
    // Judged on the profile and on each entitlement in it.
    assert_eq!(
        r.approvals.clone().unwrap()[0].policy_ids,
        ["oncall-triage-auto-approve-1h", "read-logs-auto-approve-1h"]
    );
    let grants = r.grants.clone().unwrap();
    let mut ents: Vec<&str> = grants.iter().map(|g| g.entitlement.as_str()).collect();
    ents.sort_unstable();
    assert_eq!(ents, ["demo/ops-admin", "demo/read-logs"]);
    assert!(grants.iter().all(|g| g.expires_at == grants[0].expires_at));
    let ids: Vec<String> = grants.iter().map(|g| g.id.clone()).collect();
    assert!(eventually(|| async { ids.iter().all(|g| s.access().contains(g)) }).await);

    // Holding it, alice cannot ask for one of its entitlements again.
    let p = problem(
        alice
            .create_request(&ask("demo/read-logs", "10m", "again"))
            .await
            .unwrap_err(),
    );
    assert_eq!(p.code, "request.overlaps_grant");
    let p = problem(alice.extend(&ids[0], "10m", "longer").await.unwrap_err());
    assert_eq!(p.code, "extend.profile_grant");

    // Revoking one revokes the other.
    for g in &ids {
        assert!(eventually(|| async { alice.get_grant(g).await.unwrap().state == "active" }).await);
    }
    alice.revoke(&ids[0], Some("done".into())).await.unwrap();
    assert!(eventually(|| async { ids.iter().all(|g| !s.access().contains(g)) }).await);
    for g in &ids {
        assert!(
            eventually(|| async { alice.get_grant(g).await.unwrap().state == "revoked" }).await
        );
    }

    // Over the profile's own maximum (1h, below ops-admin's 2h): refused, nothing written.
    let p = problem(
        alice
            .create_request(&ask("incident/triage", "90m", "long"))
            .await
            .unwrap_err(),
    );
    assert_eq!(
        (p.status, p.code.as_str()),
        (400, "request.duration_exceeds_max")
    );

    // The ops-admin target is down: read-logs is granted, then rolled back when ops-admin
    // cannot be provisioned within 5 minutes. Off call now, so bob approves.
    s.clock.advance_ms(20 * 3_600_000);
    std::fs::write(s.dir.path().join("ops-down"), "").unwrap();
    let r = alice
        .create_request(&ask("incident/triage", "30m", "INC-8"))
        .await
        .unwrap();
    assert_eq!(r.state, "pending");
    let r = bob.approve(&r.id, None).await.unwrap();
    let grants = bob.get_request(&r.id).await.unwrap().grants.unwrap();
    let logs = grants
        .iter()
        .find(|g| g.entitlement == "demo/read-logs")
        .unwrap()
        .id
        .clone();
    let ops = grants
        .iter()
        .find(|g| g.entitlement == "demo/ops-admin")
        .unwrap()
        .id
        .clone();
    assert!(eventually(|| async { alice.get_grant(&logs).await.unwrap().state == "active" }).await);
    assert_eq!(alice.get_grant(&ops).await.unwrap().state, "provisioning");
    s.clock.advance_ms(5 * 60_000);
    assert!(eventually(|| async { alice.get_grant(&ops).await.unwrap().state == "failed" }).await);
    assert!(
        eventually(|| async { alice.get_grant(&logs).await.unwrap().state == "revoked" }).await
    );
    assert!(!s.access().contains(&logs));
    let end = alice.get_grant(&logs).await.unwrap().end_reason.unwrap();
    assert!(
        end.contains("could not be provisioned within 5m") && end.contains(&ops),
        "{end}"
    );
    assert!(chain_ok(&s).await > 0);
    s.stop().await;
}
