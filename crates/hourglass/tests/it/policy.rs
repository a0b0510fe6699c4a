//! Policy as a control boundary, end to end through the API: break-glass and its review.

use hourglass_api::CreateRequest;
use hourglass_testkit::{eventually, spawn_server};

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
    assert_eq!(audit_len(&s).await, before);

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
