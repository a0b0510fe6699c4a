//! Access-control holes closed after review, each as the attack that once worked: approving for
//! an identity one owns, an owner lifting an administrator's suspension, a task profile that
//! stepped around its entitlements' rules, control characters that rewrote an approver's
//! terminal.

use hourglass_api::{CreateIdentity, CreateRequest, IdentityView};
use hourglass_client::{Client, ClientError};
use hourglass_testkit::{TestServer, spawn_server_with};

use crate::lifecycle::{audit_len, problem};

/// `bob-bot` (owned by bob) and `team-bot` (owned by the approvers group) may ask for ops-admin
/// and break glass into it; ops-admin is asked for only with MFA, whether alone or in a profile.
const POLICY: &str = r#"
@id("bots-ask-ops-admin")
permit (
  principal,
  action in [Hourglass::Action::"Request", Hourglass::Action::"BreakGlass"],
  resource == Hourglass::Entitlement::"demo/ops-admin"
)
when { principal.name == "bob-bot" || principal.name == "team-bot" };

@id("ops-admin-needs-mfa")
forbid (
  principal in Hourglass::Group::"requesters",
  action == Hourglass::Action::"Request",
  resource == Hourglass::Entitlement::"demo/ops-admin"
)
unless { context.mfa };
"#;

async fn server() -> TestServer {
    spawn_server_with(|dir, text| {
        std::fs::write(dir.join("policies/security.cedar"), POLICY).unwrap();
        text
    })
    .await
    .unwrap()
}

fn bot(name: &str, owner: &str) -> CreateIdentity {
    CreateIdentity {
        name: name.into(),
        kind: "workload".into(),
        owner: Some(owner.into()),
        groups: vec!["workloads".into()],
    }
}

fn ask(ent: &str, reason: &str, break_glass: bool) -> CreateRequest {
    CreateRequest {
        entitlement: ent.into(),
        duration: Some("15m".into()),
        reason: reason.into(),
        break_glass,
        ..Default::default()
    }
}

/// A client with a fresh key of `identity`, minted by `owner`.
async fn as_identity(s: &TestServer, owner: &Client, identity: &str) -> Client {
    let key = owner.create_key(identity, Some("1d".into())).await.unwrap();
    Client::new(&format!("http://{}", s.addr), Some(key.secret)).unwrap()
}

fn code(e: ClientError) -> (u16, String) {
    let p = problem(e);
    (p.status, p.code)
}

#[tokio::test]
async fn nobody_decides_for_an_identity_they_answer_for() {
    let s = server().await;
    let admin = s.client("admin");
    let bob = s.client("bob");
    admin.create_identity(&bot("bob-bot", "bob")).await.unwrap();
    admin
        .create_identity(&bot("team-bot", "approvers"))
        .await
        .unwrap();
    // bob mints bob-bot's key, bob-bot asks, bob would approve: one person on both sides.
    let bob_bot = as_identity(&s, &bob, "bob-bot").await;
    let r = bob_bot
        .create_request(&ask("demo/ops-admin", "deploy", false))
        .await
        .unwrap();
    assert_eq!(r.state, "pending");
    assert_eq!(
        code(bob.approve(&r.id, None).await.unwrap_err()),
        (403, "approval.separation_of_duties".into())
    );
    assert_eq!(
        code(bob.deny(&r.id, "no").await.unwrap_err()),
        (403, "approval.separation_of_duties".into())
    );
    // Owning through the owner group counts the same.
    let team_bot = as_identity(&s, &admin, "team-bot").await;
    let t = team_bot
        .create_request(&ask("demo/ops-admin", "deploy", false))
        .await
        .unwrap();
    assert_eq!(
        code(bob.approve(&t.id, None).await.unwrap_err()),
        (403, "approval.separation_of_duties".into())
    );
    assert_eq!(bob.get_request(&r.id).await.unwrap().state, "pending");

    // Break-glass: bob may not close the review of his own bot's emergency.
    let g = bob_bot
        .create_request(&ask("demo/ops-admin", "db down", true))
        .await
        .unwrap();
    assert_eq!(g.state, "fulfilled");
    let review = bob
        .list_reviews(Some("open"))
        .await
        .unwrap()
        .into_iter()
        .find(|v| v.request_id == g.id)
        .unwrap();
    assert_eq!(
        code(bob.close_review(&review.id, "fine").await.unwrap_err()),
        (403, "review.separation_of_duties".into())
    );
    s.stop().await;
}

#[tokio::test]
async fn an_owner_does_not_lift_an_administrators_suspension() {
    let s = server().await;
    let admin = s.client("admin");
    let bob = s.client("bob");
    admin.create_identity(&bot("bob-bot", "bob")).await.unwrap();
    let bob_bot = as_identity(&s, &bob, "bob-bot").await;
    let _: IdentityView = admin
        .identity_status("bob-bot", "suspend", Some("leaked key".into()))
        .await
        .unwrap();
    // The suspended identity's key is simply not valid: 401, as for any bad key.
    assert_eq!(
        code(bob_bot.whoami().await.unwrap_err()),
        (401, "auth.invalid".into())
    );
    let refused = bob
        .identity_status::<IdentityView>("bob-bot", "resume", None)
        .await
        .unwrap_err();
    assert_eq!(code(refused), (403, "identity.resume_not_allowed".into()));
    // Nor fresh keys for it while it is suspended.
    let (status, _) = code(
        bob.create_key("bob-bot", Some("1d".into()))
            .await
            .unwrap_err(),
    );
    assert!((400..500).contains(&status));
    let back: IdentityView = admin
        .identity_status("bob-bot", "resume", None)
        .await
        .unwrap();
    assert_eq!(back.status, "active");
    // What the owner suspended, the owner may lift.
    let _: IdentityView = bob
        .identity_status("bob-bot", "suspend", Some("rotating".into()))
        .await
        .unwrap();
    let back: IdentityView = bob
        .identity_status("bob-bot", "resume", None)
        .await
        .unwrap();
    assert_eq!(back.status, "active");
    let audit = admin.audit(0).await.unwrap();
    let suspended: Vec<_> = audit
        .iter()
        .filter(|e| e.action == "identity.suspended")
        .collect();
    assert!(
        suspended[0]
            .details
            .contains(&("authority".into(), "administrator".into()))
            && suspended[1]
                .details
                .contains(&("authority".into(), "owner".into())),
        "{suspended:?}"
    );
    s.stop().await;
}

#[tokio::test]
async fn a_profile_is_held_to_the_rules_of_every_entitlement_in_it() {
    let s = server().await;
    let alice = s.client("alice");
    // ops-admin without MFA is refused, alone or inside incident/triage.
    assert_eq!(
        code(
            alice
                .create_request(&ask("demo/ops-admin", "restart", false))
                .await
                .unwrap_err()
        ),
        (403, "request.not_eligible".into())
    );
    let p = problem(
        alice
            .create_request(&ask("incident/triage", "INC-7", false))
            .await
            .unwrap_err(),
    );
    assert_eq!((p.status, p.code.as_str()), (403, "request.not_eligible"));
    // read-logs alone is still fine.
    alice
        .create_request(&ask("demo/read-logs", "check errors", false))
        .await
        .unwrap();
    // Each refusal by policy is in the audit, with what refused it.
    let audit = s.client("admin").audit(0).await.unwrap();
    let refused: Vec<_> = audit
        .iter()
        .filter(|e| e.action == "request.refused")
        .collect();
    assert_eq!(refused.len(), 2, "{refused:?}");
    assert_eq!(refused[1].subject, "incident/triage");
    assert!(
        refused[1].details.contains(&(
            "policy_ids".into(),
            "demo/ops-admin: ops-admin-needs-mfa".into()
        )),
        "{refused:?}"
    );
    s.stop().await;
}

#[tokio::test]
async fn free_text_with_control_characters_is_refused_and_changes_nothing() {
    let s = server().await;
    let alice = s.client("alice");
    let before = audit_len(&s).await;
    for reason in [
        "read-logs 15m\u{1b}[2K\rops-admin",
        "nul\0byte",
        "over\u{202E}ride",
        "two\nlines",
    ] {
        let p = problem(
            alice
                .create_request(&ask("demo/read-logs", reason, false))
                .await
                .unwrap_err(),
        );
        assert_eq!(
            (p.status, p.code.as_str(), p.field.as_deref()),
            (400, "request.reason_invalid", Some("reason")),
            "{reason:?}"
        );
    }
    assert_eq!(audit_len(&s).await, before, "nothing was written");
    s.stop().await;
}

#[tokio::test]
async fn an_approval_counts_at_quorum_only_if_its_approver_still_could_give_it() {
    let s = spawn_server_with(|dir, text| {
        std::fs::write(dir.join("policies/security.cedar"), POLICY).unwrap();
        format!(
            "{text}\n[[entitlements]]\nname = \"demo/critical\"\nrisk = \"critical\"\ndefault_duration = \"15m\"\nmax_duration = \"1h\"\napprovals_required = 2\n"
        )
    })
    .await
    .unwrap();
    let admin = s.client("admin");
    admin
        .create_identity(&CreateIdentity {
            name: "carol".into(),
            kind: "human".into(),
            owner: None,
            groups: vec!["approvers".into()],
        })
        .await
        .unwrap();
    let carol = as_identity(&s, &admin, "carol").await;
    let r = s
        .client("alice")
        .create_request(&ask("demo/critical", "rotate the root key", false))
        .await
        .unwrap();
    assert_eq!(r.state, "pending");
    carol.approve(&r.id, None).await.unwrap();
    // carol leaves before the quorum is reached: her approval no longer counts.
    let _: IdentityView = admin
        .identity_status("carol", "suspend", Some("left the team".into()))
        .await
        .unwrap();
    let after = s.client("bob").approve(&r.id, None).await.unwrap();
    assert_eq!(
        after.state, "pending",
        "one approval that still stands is not two"
    );
    s.stop().await;
}

#[tokio::test]
async fn a_stranger_learns_nothing_of_requests_and_grants_and_names_are_not_reserved_words() {
    let s = server().await;
    let alice = s.client("alice");
    let stranger = s.client("ci-deployer");
    let pending = alice
        .create_request(&CreateRequest {
            duration: Some("2h".into()),
            ..ask("demo/read-logs", "a long look", false)
        })
        .await
        .unwrap();
    assert_eq!(pending.state, "pending");
    for e in [
        stranger.approve(&pending.id, None).await.unwrap_err(),
        stranger.deny(&pending.id, "no").await.unwrap_err(),
        stranger.cancel(&pending.id).await.unwrap_err(),
    ] {
        assert_eq!(code(e), (404, "request.not_found".into()));
    }
    alice.cancel(&pending.id).await.unwrap();
    let g = alice
        .create_request(&ask("demo/read-logs", "quick look", false))
        .await
        .unwrap();
    let gid = g.grant_id.unwrap();
    assert_eq!(
        code(stranger.revoke(&gid, None).await.unwrap_err()),
        (404, "grant.not_found".into())
    );
    // Hourglass's own actor names are not identities.
    let (status, c) = code(
        s.client("admin")
            .create_identity(&CreateIdentity {
                name: "system".into(),
                kind: "human".into(),
                owner: None,
                groups: Vec::new(),
            })
            .await
            .unwrap_err(),
    );
    assert_eq!((status, c.as_str()), (400, "identity.name_reserved"));
    s.stop().await;
}

#[tokio::test]
async fn an_emergency_is_not_held_up_by_what_is_pending_and_is_reviewed_before_the_next() {
    let s = hourglass_testkit::spawn_server(|c| c).await.unwrap();
    let (alice, bob) = (s.client("alice"), s.client("bob"));
    let waiting = alice
        .create_request(&CreateRequest {
            duration: Some("30m".into()),
            ..ask("demo/ops-admin", "restart the API", false)
        })
        .await
        .unwrap();
    assert_eq!(waiting.state, "pending");
    // Break-glass supersedes the pending request (cancelled in the same commit).
    let bg = alice
        .create_request(&ask("demo/ops-admin", "db down", true))
        .await
        .unwrap();
    assert_eq!(bg.state, "fulfilled");
    let w = alice.get_request(&waiting.id).await.unwrap();
    assert_eq!(w.state, "cancelled");
    assert!(
        w.state_reason.unwrap_or_default().contains(&bg.id),
        "names what superseded it"
    );
    // An extension pending when its grant is revoked ends with it, and blocks nothing after.
    let gid = bg.grant_id.clone().unwrap();
    assert!(
        hourglass_testkit::eventually(|| async {
            alice.get_grant(&gid).await.unwrap().state == "active"
        })
        .await
    );
    let ext = alice.extend(&gid, "10m", "still down").await.unwrap();
    assert_eq!(ext.state, "pending");
    alice.revoke(&gid, Some("fixed".into())).await.unwrap();
    assert_eq!(alice.get_request(&ext.id).await.unwrap().state, "cancelled");

    // Two more emergencies: three reviews open, the most one person may have.
    for _ in 0..2 {
        let g = alice
            .create_request(&ask("demo/ops-admin", "db down again", true))
            .await
            .unwrap();
        alice
            .revoke(&g.grant_id.unwrap(), Some("fixed".into()))
            .await
            .unwrap();
    }
    let p = problem(
        alice
            .create_request(&ask("demo/ops-admin", "and again", true))
            .await
            .unwrap_err(),
    );
    assert_eq!(
        (p.status, p.code.as_str()),
        (429, "request.break_glass_reviews_open")
    );
    // Once someone reviews one, the next emergency goes through.
    let open = bob.list_reviews(Some("open")).await.unwrap();
    assert_eq!(open.len(), 3);
    bob.close_review(&open[0].id, "checked").await.unwrap();
    alice
        .create_request(&ask("demo/ops-admin", "and again", true))
        .await
        .unwrap();
    s.stop().await;
}

/// A refused API key is audited (whose key it is and why, never the secret) within the refusal
/// budget; past it the address gets 429 with `Retry-After`, while a valid key from the same
/// address still passes; the next minute refusals are audited again, what went unaudited is
/// counted once, and a refusal at `/mcp` is recorded as such.
#[tokio::test]
async fn refused_keys_are_audited_then_throttled_and_valid_keys_pass() {
    let s = server().await;
    let admin = s.client("admin");
    let base = format!("http://{}", s.addr);
    let with = |secret: &str| Client::new(&base, Some(secret.to_owned())).unwrap();
    // alice's key, revoked; then its prefix with a guessed secret; then a key nobody has.
    let key = admin.create_key("alice", Some("1d".into())).await.unwrap();
    admin.revoke_key(&key.key.id).await.unwrap();
    let prefix = &key.secret[..16];
    let guessed = format!("{prefix}_{}", "0".repeat(64));
    let unknown = format!("hgk_{}_{}", "f".repeat(12), "1".repeat(64));
    let refused = code(with(&key.secret).whoami().await.unwrap_err());
    assert_eq!(refused, (401, "auth.invalid".to_owned()));
    assert_eq!(code(with(&guessed).whoami().await.unwrap_err()), refused);
    for i in 0..28 {
        let e = with(&unknown).whoami().await.unwrap_err();
        assert_eq!(code(e), refused, "refusal {i}");
    }
    // The 31st refusal this minute from this address: 429, and when to come back.
    let r = reqwest::Client::new()
        .get(format!("{base}/v1/whoami"))
        .bearer_auth(&unknown)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 429);
    let wait: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&wait), "{wait}");
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["code"], "auth.throttled");
    // A valid key from the same address is never throttled.
    admin.whoami().await.unwrap();

    let events = admin.audit(0).await.unwrap();
    let audited: Vec<_> = events
        .iter()
        .filter(|e| e.action == "auth.refused")
        .collect();
    assert_eq!(audited.len(), 30, "the budget of a minute, no more");
    let detail = |i: usize, k: &str| {
        audited[i]
            .details
            .iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.clone())
    };
    assert_eq!(detail(0, "reason").as_deref(), Some("key revoked"));
    assert_eq!(detail(0, "identity"), Some(key.key.identity.clone()));
    assert_eq!(detail(0, "key_prefix").as_deref(), Some(prefix));
    assert_eq!(
        detail(1, "reason").as_deref(),
        Some("wrong secret for a known key")
    );
    assert_eq!(detail(1, "identity"), Some(key.key.identity.clone()));
    assert_eq!(detail(2, "reason").as_deref(), Some("unknown key"));
    assert_eq!(detail(2, "identity"), None);
    assert!(detail(29, "budget").is_some(), "the last says so");
    assert!(audited.iter().all(|e| {
        e.subject == "api"
            && e.actor == "anonymous"
            && e.details
                .contains(&("source_ip".into(), "127.0.0.1".into()))
            && e.details.contains(&("code".into(), "auth.invalid".into()))
    }));
    // Never a secret, presented or guessed.
    for e in &events {
        for (_, v) in &e.details {
            assert!(
                !v.contains(&key.secret[17..])
                    && !v.contains(&"1".repeat(64))
                    && !v.contains(&"0".repeat(64)),
                "{e:?}"
            );
        }
    }
    let m = admin.metrics().await.unwrap();
    assert!(
        m.contains("hourglass_auth_refusals_total{via=\"api\",outcome=\"refused\"} 30"),
        "{m}"
    );
    assert!(m.contains("hourglass_auth_refusals_total{via=\"api\",outcome=\"throttled\"} 1"));

    // The next minute: audited again, and the one that was not is counted.
    s.clock.advance_ms(60_000);
    let r = reqwest::Client::new()
        .post(format!("{base}/mcp"))
        .bearer_auth(&unknown)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let events = admin.audit(0).await.unwrap();
    let last = events.iter().rfind(|e| e.action == "auth.refused").unwrap();
    assert_eq!(
        (
            last.subject.as_str(),
            events.iter().filter(|e| e.action == "auth.refused").count()
        ),
        ("mcp", 31)
    );
    let suppressed: Vec<_> = events
        .iter()
        .filter(|e| e.action == "audit.refusals_suppressed")
        .collect();
    assert_eq!(suppressed.len(), 1);
    assert!(
        suppressed[0]
            .details
            .contains(&("count".into(), "1".into())),
        "{suppressed:?}"
    );
    s.stop().await;
}
