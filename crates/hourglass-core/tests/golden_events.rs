//! The audit records the state machines write, byte for byte.
//!
//! Chains written by earlier versions must keep verifying, so what a transition writes (actor,
//! action, subject, details and their order) may never change by accident. A fixed story of
//! requests, grants and a break-glass review runs through the state machines; each record is
//! chained as the store chains it, and the chain is compared with `golden/lifecycle.chain`,
//! which was written once by the version that introduced it and is never regenerated. A change
//! that alters a line here breaks every stored chain: add a new event kind instead.

// Helpers outside #[test] functions unwrap too: a failure is a test failure.
#![allow(clippy::unwrap_used)]

use hourglass_core::{
    GrantDuration, Timestamp,
    audit::{AuditRecord, GENESIS_HASH, chain_hash},
    grant::{Grant, GrantCommand, GrantState},
    id::{AccessId, EntitlementId, GrantId, PrincipalId, RequestId, ReviewId, TargetId},
    request::{Request, RequestCommand, RequestState},
    review::{Review, ReviewState},
};

fn at(s: i64) -> Timestamp {
    Timestamp::from_unix_millis(1_767_225_600_000 + s * 1_000)
}

fn grant_id(n: u8) -> GrantId {
    GrantId::parse(&format!("grt_{n:032x}")).unwrap()
}

fn request_id(n: u8) -> RequestId {
    RequestId::parse(&format!("req_{n:032x}")).unwrap()
}

fn alice() -> PrincipalId {
    PrincipalId::new("alice").unwrap()
}

fn request(n: u8) -> Request {
    Request {
        id: request_id(n),
        requester: alice(),
        access: AccessId::Entitlement(EntitlementId::new("prod-db/read").unwrap()),
        duration: "1h".parse::<GrantDuration>().unwrap(),
        reason: "INC-7 slow queries".into(),
        ticket: Some("INC-7".into()),
        state: RequestState::Pending,
        state_reason: None,
        created_at: at(0),
        updated_at: at(0),
        decide_by: at(3_600),
        policy_hash: "ab".repeat(32),
        grant_id: None,
        public_key: None,
        break_glass: false,
        mfa: true,
        source_ip: None,
        starts_at: None,
        extends: None,
        actors: Vec::new(),
        exchange: None,
        ticket_facts: None,
        task: None,
        version: 1,
    }
}

fn grant(n: u8) -> Grant {
    Grant {
        id: grant_id(n),
        request_id: request_id(n),
        principal: alice(),
        entitlement: EntitlementId::new("prod-db/read").unwrap(),
        target: TargetId::new("prod-db").unwrap(),
        state: GrantState::Provisioning,
        starts_at: at(10),
        expires_at: at(3_610),
        created_at: at(10),
        activated_at: None,
        revoke_due_at: None,
        ended_at: None,
        end_reason: None,
        handle: None,
        credential_fingerprint: None,
        public_key: None,
        break_glass: false,
        version: 1,
    }
}

/// Every transition the state machines know, in an order a real ledger could hold.
fn story() -> Vec<AuditRecord> {
    let mut out = Vec::new();
    let mut push = |r: AuditRecord| out.push(r);

    // Approved, fulfilled, activated, extended, expired, revoked.
    let (r, e) = request(1)
        .apply(
            RequestCommand::Approve {
                actor: "bob".into(),
            },
            at(5),
        )
        .unwrap();
    push(e.record(at(5)));
    let (_, e) = r
        .apply(
            RequestCommand::Fulfil {
                grant_id: grant_id(1),
            },
            at(10),
        )
        .unwrap();
    push(e.record(at(10)));
    let (g, e) = grant(1)
        .apply(
            GrantCommand::Activate {
                handle: Some(serde_json::json!({"role": "hg_grt_1"})),
                credential_fingerprint: Some("sha256:00".into()),
            },
            at(11),
        )
        .unwrap();
    push(e.record(at(11)));
    let (g, e) = g
        .apply(
            GrantCommand::Extend {
                expires_at: at(5_400),
                request: request_id(2),
            },
            at(1_800),
        )
        .unwrap();
    push(e.record(at(1_800)));
    let (g, e) = g.apply(GrantCommand::Expire, at(5_401)).unwrap();
    push(e.record(at(5_401)));
    let (_, e) = g.apply(GrantCommand::ConfirmRevoked, at(5_403)).unwrap();
    push(e.record(at(5_403)));

    // Revoked early by a person, then confirmed.
    let (g, e) = grant(3)
        .apply(
            GrantCommand::Activate {
                handle: None,
                credential_fingerprint: None,
            },
            at(20),
        )
        .unwrap();
    push(e.record(at(20)));
    let (g, e) = g
        .apply(
            GrantCommand::Revoke {
                actor: "carol".into(),
                reason: "task done".into(),
            },
            at(600),
        )
        .unwrap();
    push(e.record(at(600)));
    let (_, e) = g.apply(GrantCommand::ConfirmRevoked, at(601)).unwrap();
    push(e.record(at(601)));

    // Provisioning that never finished: revoked, then failed.
    let (g, e) = grant(4)
        .apply(
            GrantCommand::Revoke {
                actor: "system".into(),
                reason: "provisioning failed: connection refused".into(),
            },
            at(30),
        )
        .unwrap();
    push(e.record(at(30)));
    let (_, e) = g.apply(GrantCommand::ConfirmRevoked, at(31)).unwrap();
    push(e.record(at(31)));

    // Requests that end without a grant.
    let (_, e) = request(5)
        .apply(
            RequestCommand::Deny {
                actor: PrincipalId::new("bob").unwrap(),
                reason: "not on call".into(),
            },
            at(40),
        )
        .unwrap();
    push(e.record(at(40)));
    let (_, e) = request(6)
        .apply(
            RequestCommand::Cancel {
                actor: "alice".into(),
                note: Some("wrong database".into()),
            },
            at(41),
        )
        .unwrap();
    push(e.record(at(41)));
    let (_, e) = request(7)
        .apply(
            RequestCommand::Cancel {
                actor: "alice".into(),
                note: None,
            },
            at(42),
        )
        .unwrap();
    push(e.record(at(42)));
    let (_, e) = request(8).apply(RequestCommand::Expire, at(3_600)).unwrap();
    push(e.record(at(3_600)));
    let (r, _) = request(9)
        .apply(
            RequestCommand::Approve {
                actor: "policy".into(),
            },
            at(50),
        )
        .unwrap();
    let (_, e) = r
        .apply(
            RequestCommand::Fail {
                reason: "target refused".into(),
            },
            at(51),
        )
        .unwrap();
    push(e.record(at(51)));

    // A break-glass review closed by someone else.
    let review = Review {
        id: ReviewId::parse(&format!("rev_{:032x}", 10)).unwrap(),
        request_id: request_id(10),
        grant_id: grant_id(10),
        principal: alice(),
        access: AccessId::Entitlement(EntitlementId::new("prod-db/admin").unwrap()),
        reason: "outage".into(),
        state: ReviewState::Open,
        opened_at: at(60),
        closed_at: None,
        closed_by: None,
        comment: None,
        version: 1,
    };
    let (_, e) = review
        .close(
            &PrincipalId::new("dave").unwrap(),
            "justified: INC-9",
            at(7_200),
        )
        .unwrap();
    push(e.record(at(7_200)));
    out
}

/// `got` is `want` line for line: a changed line breaks every stored chain (add a new event
/// kind instead), and so does a line added or removed.
fn same_chain(got: &str, want: &str) {
    for (g, w) in got.lines().zip(want.lines()) {
        assert_eq!(
            g, w,
            "an audit record changed; stored chains would no longer verify"
        );
    }
    assert_eq!(
        got.lines().count(),
        want.lines().count(),
        "events added or removed"
    );
}

/// One line per event: sequence, hash, and the record in a readable form.
fn render(records: &[AuditRecord]) -> String {
    let mut prev = GENESIS_HASH.to_owned();
    let mut text = String::new();
    for (i, r) in records.iter().enumerate() {
        let seq = i as u64 + 1;
        let hash = chain_hash(seq, r, &prev);
        let details: Vec<String> = r
            .details
            .iter()
            .map(|(k, v)| format!("{k}={v:?}"))
            .collect();
        text.push_str(&format!(
            "{seq} {hash} {} {} {} {} {}\n",
            r.at.unix_millis(),
            r.actor,
            r.action,
            r.subject,
            details.join(" ")
        ));
        prev = hash;
    }
    text
}

#[test]
fn the_state_machines_write_what_earlier_versions_wrote() {
    let got = render(&story());
    let want = include_str!("golden/lifecycle.chain");
    if got != want {
        for (g, w) in got.lines().zip(want.lines()) {
            assert_eq!(
                g, w,
                "an audit record changed; stored chains would no longer verify"
            );
        }
        assert_eq!(
            got.lines().count(),
            want.lines().count(),
            "events added or removed"
        );
    }
}

fn key_id(n: u8) -> hourglass_core::id::KeyId {
    hourglass_core::id::KeyId::parse(&format!("key_{n:032x}")).unwrap()
}

/// What happens to API keys and identities: a key issued, rotated (a new key replacing the
/// old, which works on for the overlap), revoked with and without a reason, declared from the
/// configuration; an identity suspended by the configuration, by its owner, and (an agent,
/// with its kill switch) by an administrator, resumed, and offboarded.
fn identity_story() -> Vec<AuditRecord> {
    use hourglass_core::{event::EventKind, identity::Authority, lifecycle::Event};
    let ci = PrincipalId::new("ci-deployer").unwrap();
    let bot = PrincipalId::new("support-bot").unwrap();
    let prefix = Some("hgk_0123456789ab".to_owned());
    vec![
        Event::KeyCreated {
            key: key_id(1),
            actor: "bob".into(),
            identity: ci.clone(),
            prefix: prefix.clone(),
            expires_at: at(86_400),
            replaces: None,
        }
        .record(at(10)),
        Event::KeyCreated {
            key: key_id(2),
            actor: "bob".into(),
            identity: ci.clone(),
            prefix: Some("hgk_ba9876543210".into()),
            expires_at: at(90_000),
            replaces: Some(key_id(1)),
        }
        .record(at(20)),
        Event::KeyRotated {
            key: key_id(1),
            actor: "bob".into(),
            identity: ci.clone(),
            replaced_by: key_id(2),
            valid_until: at(86_400),
        }
        .record(at(20)),
        Event::KeyRevoked {
            key: key_id(2),
            actor: "admin".into(),
            identity: ci.clone(),
            reason: None,
        }
        .record(at(30)),
        Event::KeyRevoked {
            key: key_id(3),
            actor: "system".into(),
            identity: ci.clone(),
            reason: Some("token removed from configuration".into()),
        }
        .record(at(40)),
        Event::KeyDeclared {
            key: key_id(4),
            identity: ci.clone(),
        }
        .record(at(50)),
        Event::IdentitySuspended {
            identity: ci.clone(),
            actor: "system".into(),
            authority: None,
            reason: Some("removed from configuration".into()),
            stripped: None,
        }
        .record(at(60)),
        Event::IdentitySuspended {
            identity: ci.clone(),
            actor: "bob".into(),
            authority: Some(Authority::Owner),
            reason: None,
            stripped: None,
        }
        .record(at(70)),
        Event::IdentityResumed {
            identity: ci.clone(),
            actor: "bob".into(),
            authority: Authority::Owner,
            reason: Some("fixed".into()),
        }
        .record(at(80)),
        Event::IdentitySuspended {
            identity: bot.clone(),
            actor: "admin".into(),
            authority: Some(Authority::Administrator),
            reason: Some("prompt injection".into()),
            stripped: Some((2, 1)),
        }
        .record(at(90)),
        Event::IdentityResumed {
            identity: bot.clone(),
            actor: "admin".into(),
            authority: Authority::Administrator,
            reason: None,
        }
        .record(at(100)),
        Event::IdentityOffboarded {
            identity: bot,
            actor: "admin".into(),
            reason: "retired".into(),
            grants_revoked: 0,
            keys_revoked: 3,
            requests_cancelled: 1,
        }
        .record(at(110)),
    ]
    .into_iter()
    .inspect(|r| assert!(EventKind::parse(&r.action).is_some()))
    .collect()
}

/// The same for keys and identities, against `golden/identity.chain`, written once from the
/// records as each use case built them by hand before these events were typed.
#[test]
fn key_and_identity_events_write_what_earlier_versions_wrote() {
    same_chain(
        &render(&identity_story()),
        include_str!("golden/identity.chain"),
    );
}

/// What ticket sources report and what their closing ends: a ticket in progress (assigned),
/// closed (ending two grants and a request), reopened by a person, a reopening confirmed by a
/// lookup, and a close that ended only a grant.
fn ticket_story() -> Vec<AuditRecord> {
    use hourglass_core::lifecycle::Event;
    let reported =
        |t: i64, status: &str, open: bool, via: &str, assignee: Option<&str>, reopened: bool| {
            Event::TicketReported {
                source: "jira".into(),
                reference: "INC-7".into(),
                status: status.into(),
                open,
                updated: at(t - 1),
                via: via.into(),
                assignee: assignee.map(str::to_owned),
                reopened,
            }
        };
    vec![
        reported(6, "In Progress", true, "jira webhook", Some("alice"), false).record(at(10)),
        reported(20, "Done", false, "jira poll", None, false).record(at(20)),
        Event::TicketClosed {
            source: "jira".into(),
            reference: "INC-7".into(),
            status: "Done".into(),
            via: "jira poll".into(),
            grants: vec![grant_id(1), grant_id(2)],
            requests: vec![request_id(3)],
        }
        .record(at(20)),
        Event::TicketReopened {
            source: "jira".into(),
            reference: "INC-7".into(),
            actor: PrincipalId::new("bob").unwrap(),
            reason: "not fixed after all".into(),
        }
        .record(at(30)),
        reported(40, "Reopened", true, "jira webhook", None, true).record(at(40)),
        Event::TicketClosed {
            source: "jira".into(),
            reference: "INC-7".into(),
            status: "Closed".into(),
            via: "jira webhook".into(),
            grants: vec![grant_id(1)],
            requests: Vec::new(),
        }
        .record(at(50)),
    ]
}

/// The same for tickets, against `golden/tickets.chain`, written once from the records as the
/// ticket use cases built them by hand before these events were typed.
#[test]
fn ticket_events_write_what_earlier_versions_wrote() {
    same_chain(
        &render(&ticket_story()),
        include_str!("golden/tickets.chain"),
    );
}

/// Sessions: one started without a provider, one by single sign-on from an address, sign-ins
/// refused (a known name, no name, only the provider known), and a sign-out.
fn session_story() -> Vec<AuditRecord> {
    use hourglass_core::lifecycle::Event;
    let handle = format!("ses_{}", "ab".repeat(8));
    let started =
        |t: i64, via: &str, mfa: bool, sso: Option<(&str, &str, &str)>| Event::SessionStarted {
            principal: alice(),
            handle: handle.clone(),
            via: via.into(),
            mfa,
            expires_at: at(t + 43_200),
            source_ip: sso.map(|(ip, _, _)| ip.to_owned()),
            issuer: sso.map(|(_, i, _)| i.to_owned()),
            subject: sso.map(|(_, _, s)| s.to_owned()),
        };
    let refused = |code: &str, reason: &str, name: Option<&str>, subject: Option<&str>| {
        Event::SessionRefused {
            name: name.map(str::to_owned),
            code: code.into(),
            reason: reason.into(),
            via: subject.map(|_| "oidc".to_owned()),
            issuer: Some("https://idp.example".into()),
            subject: subject.map(str::to_owned),
        }
    };
    vec![
        started(10, "demo", false, None).record(at(10)),
        started(
            20,
            "oidc",
            true,
            Some(("10.0.0.7", "https://idp.example", "00u1")),
        )
        .record(at(20)),
        refused(
            "session.principal_inactive",
            "alice is suspended",
            Some("alice"),
            Some("00u1"),
        )
        .record(at(30)),
        refused(
            "session.unknown_person",
            "nobody here has that name",
            Some(""),
            Some("00u9"),
        )
        .record(at(40)),
        refused("oidc.state", "the sign-in expired; start again", None, None).record(at(50)),
        Event::SessionEnded {
            principal: alice(),
            handle: handle.clone(),
            reason: "signed out".into(),
        }
        .record(at(60)),
    ]
}

/// The same for sessions, against `golden/sessions.chain`, written once from the records as
/// the session use cases built them by hand before these events were typed.
#[test]
fn session_events_write_what_earlier_versions_wrote() {
    same_chain(
        &render(&session_story()),
        include_str!("golden/sessions.chain"),
    );
}

/// Token exchange: a workload's exchange with its claims, one with an acting agent and a
/// ticket, refusals by policy for the subject and for the agent, and refused tokens.
fn exchange_story() -> Vec<AuditRecord> {
    use hourglass_core::lifecycle::Event;
    let ci = PrincipalId::new("ci-deployer").unwrap();
    let bot = PrincipalId::new("support-bot").unwrap();
    let hash = "ab".repeat(32);
    let exchanged = |n: u8, delegated: bool| Event::TokenExchanged {
        by: ci.clone(),
        request: request_id(n),
        entitlement: "tokens/deploy-api".into(),
        issuer: "https://token.actions.githubusercontent.com".into(),
        subject: "repo:acme/app:ref:refs/heads/main".into(),
        jti: format!("jti-{n}"),
        duration: "15m".parse().unwrap(),
        policy_ids: vec!["ci-deploys".into()],
        policy_hash: hash.clone(),
        claims: [
            ("repository".to_owned(), "acme/app".to_owned()),
            ("environment".to_owned(), "prod".to_owned()),
        ]
        .into(),
        act: if delegated {
            vec![bot.clone()]
        } else {
            Vec::new()
        },
        actor: delegated.then(|| {
            (
                "https://agents.example".to_owned(),
                "agent-jti".to_owned(),
                vec!["bot-deploys".to_owned(), "bot-hours".to_owned()],
            )
        }),
        ticket: delegated.then(|| "INC-7".to_owned()),
    };
    let refused = |policy_ids: Vec<String>, act: Option<PrincipalId>| Event::ExchangeRefused {
        by: ci.clone(),
        entitlement: "prod-db/admin".into(),
        policy_ids,
        policy_hash: hash.clone(),
        act,
    };
    vec![
        exchanged(1, false).record(at(10)),
        exchanged(2, true).record(at(20)),
        refused(Vec::new(), None).record(at(30)),
        refused(vec!["no-bots-on-prod".into()], Some(bot.clone())).record(at(30)),
        Event::TokenRefused {
            code: "token.expired".into(),
            reason: "the token expired at 2026-01-01T00:00:00Z".into(),
            issuer: Some("https://token.actions.githubusercontent.com".into()),
        }
        .record(at(40)),
        Event::TokenRefused {
            code: "token.malformed".into(),
            reason: "not a JWT".into(),
            issuer: None,
        }
        .record(at(50)),
    ]
}

/// The same for token exchange, against `golden/exchange.chain`, written once from the records
/// as the exchange built them by hand before these events were typed.
#[test]
fn exchange_events_write_what_earlier_versions_wrote() {
    same_chain(
        &render(&exchange_story()),
        include_str!("golden/exchange.chain"),
    );
}

/// Where identities come from and how they are bound: created through the API (an agent with
/// an owner, a person without), at a first sign-on, declared and updated by the configuration,
/// bound to and unbound from a provider account; and tokens Hourglass signs for a grant.
fn origins_story() -> Vec<AuditRecord> {
    use hourglass_core::{
        catalog::{PrincipalKind, PrincipalStatus},
        lifecycle::Event,
    };
    let name = |n: &str| PrincipalId::new(n).unwrap();
    let groups = vec!["agents".to_owned(), "support".to_owned()];
    let jti = format!("{}.0123456789abcdef", grant_id(1));
    vec![
        Event::IdentityCreated {
            identity: name("support-bot"),
            actor: "bob".into(),
            kind: PrincipalKind::Agent,
            owner: Some("bob".into()),
            groups: groups.clone(),
        }
        .record(at(10)),
        Event::IdentityCreated {
            identity: name("carol"),
            actor: "admin".into(),
            kind: PrincipalKind::Human,
            owner: None,
            groups: Vec::new(),
        }
        .record(at(11)),
        Event::IdentityCreatedAtSignIn {
            identity: name("dave"),
            groups: vec!["engineering".into()],
            groups_dropped: 2,
            via: "oidc".into(),
            issuer: "https://idp.example".into(),
            subject: "00u4".into(),
        }
        .record(at(20)),
        Event::IdentityDeclared {
            identity: name("ci-deployer"),
            kind: PrincipalKind::Workload,
            owner: Some("bob".into()),
        }
        .record(at(30)),
        Event::IdentityDeclared {
            identity: alice(),
            kind: PrincipalKind::Human,
            owner: None,
        }
        .record(at(31)),
        Event::IdentityUpdated {
            identity: name("ci-deployer"),
            kind: PrincipalKind::Workload,
            owner: Some("bob".into()),
            groups,
            status: PrincipalStatus::Suspended,
        }
        .record(at(40)),
        Event::IdentitySignInBound {
            identity: alice(),
            issuer: "https://idp.example".into(),
            subject: "00u1".into(),
        }
        .record(at(50)),
        Event::IdentitySignInUnbound {
            identity: alice(),
            actor: "admin".into(),
            was: "https://idp.example#00u1".into(),
        }
        .record(at(60)),
        Event::TokenIssued {
            grant: grant_id(1),
            actor: "support-bot".into(),
            jti: jti.clone(),
            expires_at: at(970),
            audience: Some("https://api.example".into()),
            act: vec![alice()],
        }
        .record(at(70)),
        Event::TokenIssued {
            grant: grant_id(1),
            actor: "ci-deployer".into(),
            jti,
            expires_at: at(980),
            audience: None,
            act: Vec::new(),
        }
        .record(at(80)),
    ]
}

/// The same for identities' origins and signed tokens, against `golden/origins.chain`,
/// written once from the records as the use cases built them by hand before these events were
/// typed.
#[test]
fn origin_events_write_what_earlier_versions_wrote() {
    same_chain(
        &render(&origins_story()),
        include_str!("golden/origins.chain"),
    );
}
