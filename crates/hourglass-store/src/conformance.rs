//! The store contract, checked against each backend. Every test runs on a fresh database.

use hourglass_core::{
    Error, GrantDuration, Timestamp,
    audit::{AuditRecord, ChainVerifier},
    grant::{Grant, GrantState},
    id::{AccessId, EntitlementId, GrantId, PrincipalId, RequestId, TargetId},
    job::JobAction,
    request::{Request, RequestState},
    store::{Commit, ElevatedScope, GrantFilter, JobChange, Store},
};

use crate::{PgStore, PoolOptions, SqliteStore};

mod archive;
mod campaigns;
mod copy;
mod directory;
mod identity;
mod outbox;
mod shared;

/// A fresh, migrated store of one backend, with what keeps it alive.
#[allow(dead_code)] // the second fields only keep the database alive
pub(crate) enum Fresh {
    Sqlite(SqliteStore, tempfile::TempDir),
    // The store before the database: the pool closes before the database is dropped.
    Postgres(PgStore, hourglass_testdb::TestDb),
}

impl std::ops::Deref for Fresh {
    type Target = dyn Store;
    fn deref(&self) -> &(dyn Store + 'static) {
        match self {
            Fresh::Sqlite(s, _) => s,
            Fresh::Postgres(s, _) => s,
        }
    }
}

impl Fresh {
    /// Runs `sql` on the database itself, past the store contract.
    async fn raw(&self, sql: &'static str) -> Result<u64, sqlx::Error> {
        match self {
            Fresh::Sqlite(s, _) => sqlx::query(sql)
                .execute(s.writer())
                .await
                .map(|r| r.rows_affected()),
            Fresh::Postgres(s, _) => sqlx::query(sql)
                .execute(s.pool())
                .await
                .map(|r| r.rows_affected()),
        }
    }
}

pub(crate) async fn sqlite() -> Fresh {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("hg.db").display());
    Fresh::Sqlite(SqliteStore::open(&url).await.unwrap(), dir)
}

/// A fresh PostgreSQL store, or `None` (with a printed reason) when the server is unreachable
/// and `CI` is not set.
pub(crate) async fn postgres() -> Option<Fresh> {
    let db = hourglass_testdb::postgres().await?;
    let store = PgStore::open(&db.url, &PoolOptions::default())
        .await
        .unwrap();
    Some(Fresh::Postgres(store, db))
}

/// Runs each named contract test on SQLite and on PostgreSQL.
macro_rules! contract {
    ($($name:ident),* $(,)?) => {
        mod on_sqlite {
            $(
                #[tokio::test]
                async fn $name() {
                    super::$name(&crate::conformance::sqlite().await).await;
                }
            )*
        }
        mod on_postgres {
            $(
                #[tokio::test]
                async fn $name() {
                    if let Some(store) = crate::conformance::postgres().await {
                        super::$name(&store).await;
                    }
                }
            )*
        }
    };
}
use contract;

fn t(ms: i64) -> Timestamp {
    Timestamp::from_unix_millis(ms)
}

fn request(at: i64) -> Request {
    Request {
        id: RequestId::generate(t(at)).unwrap(),
        requester: PrincipalId::new("alice").unwrap(),
        access: AccessId::Entitlement(EntitlementId::new("demo/x").unwrap()),
        duration: GrantDuration::from_secs(600),
        reason: "r".into(),
        ticket: None,
        state: RequestState::Fulfilled,
        state_reason: None,
        created_at: t(at),
        updated_at: t(at),
        decide_by: t(at + 1000),
        policy_hash: "h".into(),
        grant_id: None,
        public_key: Some("ssh-ed25519 AAAA test".into()),
        break_glass: true,
        mfa: true,
        source_ip: Some("192.0.2.7".into()),
        starts_at: Some(t(at + 500)),
        extends: None,
        actors: Vec::new(),
        exchange: None,
        ticket_facts: None,
        task: None,
        version: 0,
    }
}

fn grant(req: &Request, expires: i64) -> Grant {
    Grant {
        id: GrantId::generate(req.created_at).unwrap(),
        request_id: req.id.clone(),
        principal: req.requester.clone(),
        entitlement: EntitlementId::new(req.access.name()).unwrap(),
        target: TargetId::new("demo").unwrap(),
        state: GrantState::Active,
        starts_at: req.created_at,
        expires_at: t(expires),
        created_at: req.created_at,
        activated_at: Some(req.created_at),
        revoke_due_at: None,
        ended_at: None,
        end_reason: None,
        handle: Some(serde_json::json!({"name": "hg_x"})),
        credential_fingerprint: None,
        public_key: req.public_key.clone(),
        break_glass: req.break_glass,
        version: 0,
    }
}

fn ev(action: &str) -> AuditRecord {
    AuditRecord::with_action(t(1), "tester", action, "s").with("k", "v")
}

async fn audit_len(s: &Fresh) -> usize {
    s.audit_after(0, 10_000).await.unwrap().len()
}

async fn a_commit_is_all_or_nothing(s: &Fresh) {
    let r = request(10);
    s.commit(Commit {
        requests: vec![r.clone()],
        audit: vec![ev("a")],
        ..Commit::default()
    })
    .await
    .unwrap();
    // A stale version in the same commit as a new grant and an audit record: none of it lands.
    let stale = r.clone();
    let g = grant(&r, 5_000);
    let err = s
        .commit(Commit {
            requests: vec![stale],
            grants: vec![g.clone()],
            audit: vec![ev("b")],
            ..Commit::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err, Error::StoreConflict);
    assert_eq!(audit_len(s).await, 1);
    assert!(s.get_grant(&g.id).await.unwrap().is_none());
}

async fn versions_detect_concurrent_updates(s: &Fresh) {
    let r = request(10);
    s.commit(Commit {
        requests: vec![r.clone()],
        ..Commit::default()
    })
    .await
    .unwrap();
    let read_a = s.get_request(&r.id).await.unwrap().unwrap();
    let read_b = read_a.clone();
    assert_eq!(read_a.version, 1);
    let mut a = read_a;
    a.state_reason = Some("first".into());
    s.commit(Commit {
        requests: vec![a],
        ..Commit::default()
    })
    .await
    .unwrap();
    let mut b = read_b;
    b.state_reason = Some("second".into());
    assert_eq!(
        s.commit(Commit {
            requests: vec![b],
            ..Commit::default()
        })
        .await
        .unwrap_err(),
        Error::StoreConflict
    );
    let now = s.get_request(&r.id).await.unwrap().unwrap();
    assert_eq!(now.state_reason.as_deref(), Some("first"));
    assert_eq!(now.version, 2);
}

async fn rows_round_trip(s: &Fresh) {
    let mut r = request(10);
    r.ticket = Some("HD-1".into());
    let g = grant(&r, 5_000);
    r.grant_id = Some(g.id.clone());
    s.commit(Commit {
        requests: vec![r.clone()],
        grants: vec![g.clone()],
        ..Commit::default()
    })
    .await
    .unwrap();
    let back = s.get_request(&r.id).await.unwrap().unwrap();
    assert_eq!(back, Request { version: 1, ..r });
    // An extension request names the grant it lengthens.
    let mut ext = request(20);
    ext.extends = Some(g.id.clone());
    s.commit(Commit {
        requests: vec![ext.clone()],
        ..Commit::default()
    })
    .await
    .unwrap();
    let back = s.get_request(&ext.id).await.unwrap().unwrap();
    assert_eq!(back, Request { version: 1, ..ext });
    // A profile request and its grants, one per entitlement, found by the request.
    let mut prof = request(30);
    prof.access = AccessId::Profile(hourglass_core::id::ProfileId::new("incident/triage").unwrap());
    let mut g1 = grant(&request(30), 5_000);
    g1.request_id = prof.id.clone();
    g1.state = GrantState::Provisioning;
    let mut g2 = grant(&request(31), 5_000);
    g2.request_id = prof.id.clone();
    g2.state = GrantState::Provisioning;
    s.commit(Commit {
        requests: vec![prof.clone()],
        grants: vec![g1.clone(), g2.clone()],
        ..Commit::default()
    })
    .await
    .unwrap();
    let back = s.get_request(&prof.id).await.unwrap().unwrap();
    assert_eq!(back.access, prof.access);
    let mut ids: Vec<_> = s
        .grants_of_request(&prof.id)
        .await
        .unwrap()
        .into_iter()
        .map(|g| g.id)
        .collect();
    ids.sort();
    let mut want = vec![g1.id, g2.id];
    want.sort();
    assert_eq!(ids, want);
    let gb = s.get_grant(&g.id).await.unwrap().unwrap();
    assert_eq!(
        gb,
        Grant {
            version: 1,
            ..g.clone()
        }
    );
    let listed = s
        .list_grants(&GrantFilter {
            state: Some(GrantState::Active),
            limit: 10,
            ..GrantFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(listed.len(), 1);
    let none = s
        .list_grants(&GrantFilter {
            state: Some(GrantState::Revoked),
            limit: 10,
            ..GrantFilter::default()
        })
        .await
        .unwrap();
    assert!(none.is_empty());
}

async fn expiries_come_from_the_index_in_order_and_bounded(s: &Fresh) {
    let mut commit = Commit::default();
    for (i, exp) in [3_000, 1_000, 2_000, 9_000].into_iter().enumerate() {
        let r = request(10 + i as i64);
        commit.grants.push(grant(&r, exp));
        commit.requests.push(r);
    }
    s.commit(commit).await.unwrap();
    assert_eq!(s.next_expiry().await.unwrap(), Some(t(1_000)));
    let due = s.due_expiries(t(2_500), 10).await.unwrap();
    assert_eq!(
        due.iter().map(|g| g.expires_at).collect::<Vec<_>>(),
        vec![t(1_000), t(2_000)]
    );
    assert_eq!(s.due_expiries(t(10_000), 3).await.unwrap().len(), 3);
}

async fn job_leases_fence_every_change(s: &Fresh) {
    let r = request(10);
    let g = grant(&r, 5_000);
    let sched = JobChange::Schedule {
        grant_id: g.id.clone(),
        action: JobAction::Provision,
        run_at: t(100),
    };
    s.commit(Commit {
        requests: vec![r],
        grants: vec![g.clone()],
        jobs: vec![sched],
        ..Commit::default()
    })
    .await
    .unwrap();
    assert!(
        s.claim_jobs(t(50), "w1", t(1_000), 10)
            .await
            .unwrap()
            .is_empty(),
        "not due yet"
    );
    let jobs = s.claim_jobs(t(100), "w1", t(1_000), 10).await.unwrap();
    assert_eq!(jobs.len(), 1);
    let token = jobs[0].lease.clone().unwrap().token;
    assert!(
        s.claim_jobs(t(500), "w2", t(2_000), 10)
            .await
            .unwrap()
            .is_empty(),
        "leased"
    );
    assert_eq!(s.next_job_at().await.unwrap(), Some(t(1_000)));

    // A revoke replaces the action but keeps the lease: the provisioner's completion no longer
    // matches, and the revoke cannot start while the lease is held.
    let revoke = JobChange::Schedule {
        grant_id: g.id.clone(),
        action: JobAction::Revoke,
        run_at: t(600),
    };
    s.commit(Commit {
        jobs: vec![revoke],
        ..Commit::default()
    })
    .await
    .unwrap();
    let complete = JobChange::Complete {
        grant_id: g.id.clone(),
        action: JobAction::Provision,
        lease_token: token.clone(),
    };
    assert_eq!(
        s.commit(Commit {
            jobs: vec![complete],
            audit: vec![ev("x")],
            ..Commit::default()
        })
        .await
        .unwrap_err(),
        Error::StoreConflict
    );
    assert_eq!(audit_len(s).await, 0);
    assert!(
        s.claim_jobs(t(700), "w2", t(2_000), 10)
            .await
            .unwrap()
            .is_empty()
    );

    // A wrong token changes nothing; the right one releases, and the revoke runs at once.
    let bad = JobChange::Release {
        grant_id: g.id.clone(),
        lease_token: "nope".into(),
    };
    assert_eq!(
        s.commit(Commit {
            jobs: vec![bad],
            ..Commit::default()
        })
        .await
        .unwrap_err(),
        Error::StoreConflict
    );
    s.commit(Commit {
        jobs: vec![JobChange::Release {
            grant_id: g.id.clone(),
            lease_token: token,
        }],
        ..Commit::default()
    })
    .await
    .unwrap();
    let jobs = s.claim_jobs(t(700), "w2", t(2_000), 10).await.unwrap();
    assert_eq!(jobs.len(), 1);
    assert_eq!(jobs[0].action, JobAction::Revoke);

    // An expired lease can be taken over; the old holder's token is then worthless.
    let old = jobs[0].lease.clone().unwrap().token;
    let taken = s.claim_jobs(t(2_000), "w3", t(3_000), 10).await.unwrap();
    assert_eq!(taken.len(), 1);
    let late = JobChange::Complete {
        grant_id: g.id.clone(),
        action: JobAction::Revoke,
        lease_token: old,
    };
    assert_eq!(
        s.commit(Commit {
            jobs: vec![late],
            ..Commit::default()
        })
        .await
        .unwrap_err(),
        Error::StoreConflict
    );
    let new = taken[0].lease.clone().unwrap().token;
    s.commit(Commit {
        jobs: vec![JobChange::Complete {
            grant_id: g.id.clone(),
            action: JobAction::Revoke,
            lease_token: new,
        }],
        ..Commit::default()
    })
    .await
    .unwrap();
    assert!(s.get_job(&g.id).await.unwrap().is_none());
    assert_eq!(s.next_job_at().await.unwrap(), None);
}

async fn release_all_leases_makes_jobs_due_again(s: &Fresh) {
    let r = request(10);
    let g = grant(&r, 5_000);
    let sched = JobChange::Schedule {
        grant_id: g.id.clone(),
        action: JobAction::Revoke,
        run_at: t(100),
    };
    s.commit(Commit {
        requests: vec![r],
        grants: vec![g],
        jobs: vec![sched],
        ..Commit::default()
    })
    .await
    .unwrap();
    assert_eq!(
        s.claim_jobs(t(100), "w1", t(60_000), 10)
            .await
            .unwrap()
            .len(),
        1
    );
    assert_eq!(s.release_all_leases().await.unwrap(), 1);
    assert_eq!(
        s.claim_jobs(t(100), "w2", t(60_000), 10)
            .await
            .unwrap()
            .len(),
        1
    );
}

async fn the_audit_chain_verifies_and_is_append_only(s: &Fresh) {
    for i in 0..5 {
        let last = s
            .commit(Commit {
                audit: vec![ev(&format!("a{i}")), ev("b")],
                ..Commit::default()
            })
            .await
            .unwrap();
        assert_eq!(last, Some(2 * (i + 1)));
    }
    let events = s.audit_after(0, 100).await.unwrap();
    let mut v = ChainVerifier::default();
    for e in &events {
        v.check(e).unwrap();
    }
    assert_eq!(v.checked(), 10);
    assert_eq!(s.audit_after(8, 100).await.unwrap().len(), 2);
    let err = s
        .raw("UPDATE audit_events SET actor = 'mallory' WHERE seq = 3")
        .await
        .unwrap_err();
    assert!(err.to_string().contains("append-only"), "{err}");
    assert!(s.raw("DELETE FROM audit_events").await.is_err());
}

async fn counts_include_overdue_revocations(s: &Fresh) {
    let r = request(10);
    let mut g = grant(&r, 5_000);
    g.state = GrantState::Revoking;
    g.revoke_due_at = Some(t(5_000));
    s.commit(Commit {
        requests: vec![r],
        grants: vec![g],
        ..Commit::default()
    })
    .await
    .unwrap();
    let c = s.grant_counts(t(4_000)).await.unwrap();
    assert_eq!((c.revoking, c.overdue), (1, 0));
    let c = s.grant_counts(t(6_000)).await.unwrap();
    assert_eq!((c.revoking, c.overdue, c.active), (1, 1, 0));
}

async fn elevated_windows_overdue_revocations_and_stories_are_found_by_their_indexes(s: &Fresh) {
    // Alice: active 10 → 2_000 (ended), then 3_000 → (still); Bob: overdue since 5_000.
    let (r1, r2) = (request(10), request(3_000));
    let mut ended = grant(&r1, 2_000);
    ended.state = GrantState::Revoked;
    ended.ended_at = Some(t(2_000));
    let live = grant(&r2, 9_000);
    let mut rb = request(20);
    rb.requester = PrincipalId::new("bob").unwrap();
    let mut overdue = grant(&rb, 5_000);
    overdue.state = GrantState::Revoking;
    overdue.revoke_due_at = Some(t(5_000));
    let mut ext = request(3_100);
    ext.extends = Some(live.id.clone());
    let mut story = AuditRecord::with_action(t(2), "alice", "request.created", r1.id.as_str());
    story = story.with("reason", "r");
    s.commit(Commit {
        requests: vec![r1.clone(), r2.clone(), rb],
        grants: vec![ended.clone(), live.clone(), overdue.clone()],
        audit: vec![story, ev("unrelated")],
        ..Commit::default()
    })
    .await
    .unwrap();
    s.commit(Commit {
        requests: vec![ext.clone()],
        ..Commit::default()
    })
    .await
    .unwrap();
    let scope = |who: Option<&str>, from: i64, to: i64| ElevatedScope {
        principal: who.map(|w| PrincipalId::new(w).unwrap()),
        target: None,
        entitlement: None,
        from: t(from),
        to: t(to),
        limit: 100,
    };
    let ids = |g: Vec<Grant>| g.into_iter().map(|g| g.id).collect::<Vec<_>>();
    assert_eq!(
        ids(s
            .elevated(&scope(Some("alice"), 1_000, 1_001))
            .await
            .unwrap()),
        [ended.id.clone()]
    );
    assert!(
        s.elevated(&scope(Some("alice"), 2_500, 2_600))
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        ids(s.elevated(&scope(Some("alice"), 0, 10_000)).await.unwrap()),
        [ended.id.clone(), live.id.clone()]
    );
    assert_eq!(s.elevated(&scope(None, 0, 10_000)).await.unwrap().len(), 3);
    let by_target = s.overdue_by_target(t(6_000)).await.unwrap();
    assert_eq!(by_target, [(TargetId::new("demo").unwrap(), 1)]);
    assert!(s.overdue_by_target(t(4_000)).await.unwrap().is_empty());
    assert_eq!(
        ids(s.overdue_revocations(t(6_000), 10).await.unwrap()),
        [overdue.id]
    );
    let told = s.audit_of(r1.id.as_str()).await.unwrap();
    assert_eq!(told.len(), 1);
    assert_eq!(told[0].record.action, "request.created");
    let exts = s.extensions_of(&live.id).await.unwrap();
    assert_eq!(
        exts.iter().map(|r| r.id.clone()).collect::<Vec<_>>(),
        [ext.id]
    );
}

async fn reviews_round_trip_list_by_state_and_detect_concurrent_closes(s: &Fresh) {
    use hourglass_core::{
        review::{Review, ReviewId, ReviewState},
        store::ReviewFilter,
    };
    let mut reviews = Vec::new();
    for at in [10, 20, 30] {
        let r = request(at);
        let g = grant(&r, 5_000);
        let review = Review {
            id: ReviewId::generate(t(at)).unwrap(),
            request_id: r.id.clone(),
            grant_id: g.id.clone(),
            principal: r.requester.clone(),
            access: r.access.clone(),
            reason: "outage".into(),
            state: ReviewState::Open,
            opened_at: t(at),
            closed_at: None,
            closed_by: None,
            comment: None,
            version: 0,
        };
        s.commit(Commit {
            requests: vec![r],
            grants: vec![g],
            reviews: vec![review.clone()],
            ..Commit::default()
        })
        .await
        .unwrap();
        reviews.push(review);
    }
    let stored = s.get_review(&reviews[0].id).await.unwrap().unwrap();
    assert_eq!(
        stored,
        Review {
            version: 1,
            ..reviews[0].clone()
        }
    );
    let bob = PrincipalId::new("bob").unwrap();
    let (closed, _) = stored.close(&bob, "checked", t(40)).unwrap();
    s.commit(Commit {
        reviews: vec![closed.clone()],
        ..Commit::default()
    })
    .await
    .unwrap();
    // A second close from the same snapshot conflicts.
    let (again, _) = stored.close(&bob, "twice", t(41)).unwrap();
    assert_eq!(
        s.commit(Commit {
            reviews: vec![again],
            ..Commit::default()
        })
        .await
        .unwrap_err(),
        Error::StoreConflict
    );
    let open = s
        .list_reviews(&ReviewFilter {
            state: Some(ReviewState::Open),
            before: None,
            limit: 10,
        })
        .await
        .unwrap();
    let ids: Vec<_> = open.iter().map(|r| r.id.clone()).collect();
    assert_eq!(ids, [reviews[2].id.clone(), reviews[1].id.clone()]);
    let page = s
        .list_reviews(&ReviewFilter {
            state: None,
            before: Some(reviews[1].id.clone()),
            limit: 10,
        })
        .await
        .unwrap();
    assert_eq!(page.len(), 1);
    assert_eq!(page[0].closed_by, Some(bob));
    assert_eq!(page[0].comment.as_deref(), Some("checked"));
}

async fn admission_reads_find_live_access_pending_requests_and_usage(s: &Fresh) {
    let alice = PrincipalId::new("alice").unwrap();
    let bob = PrincipalId::new("bob").unwrap();
    let x = EntitlementId::new("demo/x").unwrap();
    let y = EntitlementId::new("demo/y").unwrap();
    let mut commit = Commit::default();
    // alice: an active grant of x, a revoked one of x, a provisioning one of y; a pending
    // request for x. bob: an active grant of x.
    for (who, ent, state, at) in [
        (&alice, &x, GrantState::Active, 10),
        (&alice, &x, GrantState::Revoked, 20),
        (&alice, &y, GrantState::Provisioning, 30),
        (&bob, &x, GrantState::Active, 40),
    ] {
        let mut r = request(at);
        r.requester = who.clone();
        r.access = AccessId::Entitlement(ent.clone());
        let mut g = grant(&r, 5_000);
        g.state = state;
        commit.requests.push(r);
        commit.grants.push(g);
    }
    let mut pending = request(3_000);
    pending.state = RequestState::Pending;
    commit.requests.push(pending.clone());
    s.commit(commit).await.unwrap();

    let live = s.live_grants_of(&alice, &x).await.unwrap();
    assert_eq!(live.len(), 1);
    assert_eq!(live[0].state, GrantState::Active);
    assert!(s.live_grants_of(&bob, &y).await.unwrap().is_empty());
    let ax = AccessId::Entitlement(x.clone());
    let p = s.pending_requests_of(&alice, &ax).await.unwrap();
    assert_eq!(p.iter().map(|r| &r.id).collect::<Vec<_>>(), [&pending.id]);
    let ay = AccessId::Entitlement(y.clone());
    assert!(s.pending_requests_of(&alice, &ay).await.unwrap().is_empty());
    // A profile of the same name is another thing.
    let px = AccessId::Profile(hourglass_core::id::ProfileId::new("demo/x").unwrap());
    assert!(s.pending_requests_of(&alice, &px).await.unwrap().is_empty());

    let u = s.usage(&alice, &x, t(0), 100).await.unwrap();
    assert_eq!(
        (u.principal_live_grants, u.entitlement_live_grants),
        (2, 2),
        "alice holds x and y; x is held by alice and bob"
    );
    assert_eq!((u.principal_requests, u.entitlement_requests), (4, 4));
    // Only requests since the moment count.
    let u = s.usage(&alice, &x, t(25), 100).await.unwrap();
    assert_eq!((u.principal_requests, u.entitlement_requests), (2, 2));
    // Counts stop at the cap.
    let u = s.usage(&alice, &x, t(0), 1).await.unwrap();
    assert_eq!(
        (
            u.principal_live_grants,
            u.entitlement_live_grants,
            u.principal_requests,
            u.entitlement_requests
        ),
        (1, 1, 1, 1)
    );
}

contract! {
    a_commit_is_all_or_nothing,
    versions_detect_concurrent_updates,
    rows_round_trip,
    expiries_come_from_the_index_in_order_and_bounded,
    job_leases_fence_every_change,
    release_all_leases_makes_jobs_due_again,
    the_audit_chain_verifies_and_is_append_only,
    counts_include_overdue_revocations,
    elevated_windows_overdue_revocations_and_stories_are_found_by_their_indexes,
    reviews_round_trip_list_by_state_and_detect_concurrent_closes,
    admission_reads_find_live_access_pending_requests_and_usage,
    one_owner_at_a_time_holds_a_periodic_turn,
    writes_waiting_together_share_a_transaction_and_fail_alone,
    a_sealed_credential_is_taken_once_by_its_holder_and_goes_with_its_grant,
}

async fn a_sealed_credential_is_taken_once_by_its_holder_and_goes_with_its_grant(s: &Fresh) {
    use hourglass_core::credential::SealedCredential;
    let alice = PrincipalId::new("alice").unwrap();
    let bob = PrincipalId::new("bob").unwrap();
    let sealed = |g: &Grant, text: &str| SealedCredential {
        grant_id: g.id.clone(),
        holder: g.principal.clone(),
        expires_at: g.expires_at,
        sealed: text.into(),
    };
    let (r1, r2) = (request(10), request(20));
    let (g1, g2) = (grant(&r1, 5_000), grant(&r2, 5_000));
    s.commit(Commit {
        requests: vec![r1, r2],
        grants: vec![g1.clone(), g2.clone()],
        credentials: vec![sealed(&g1, "v1.first"), sealed(&g2, "v1.second")],
        ..Commit::default()
    })
    .await
    .unwrap();
    let mut waiting = s.waiting_credentials(&alice, t(100)).await.unwrap();
    waiting.sort();
    let mut both = vec![g1.id.clone(), g2.id.clone()];
    both.sort();
    assert_eq!(waiting, both);
    // Only a process that can open it finds it (another key leaves it in place)…
    assert!(
        s.waiting_credential(&g1.id, &alice, "v2.", t(100))
            .await
            .unwrap()
            .is_none()
    );
    // …only its holder, only before its end, and only once: taking it is a commit that
    // deletes it as read, so a second taker's commit conflicts and leaves no record.
    assert!(
        s.waiting_credential(&g1.id, &bob, "v1.", t(100))
            .await
            .unwrap()
            .is_none()
    );
    let got = s
        .waiting_credential(&g1.id, &alice, "v1.", t(100))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got, sealed(&g1, "v1.first"));
    let take = |c: &SealedCredential, seq: i64| Commit {
        credentials_taken: vec![c.clone()],
        audit: vec![
            hourglass_core::audit::AuditRecord::new(
                t(100),
                "alice",
                hourglass_core::event::EventKind::CredentialHandedOver,
                c.grant_id.as_str(),
            )
            .with("expires_at", t(seq)),
        ],
        ..Commit::default()
    };
    s.commit(take(&got, 1)).await.unwrap();
    let before = s.audit_after(0, 10_000).await.unwrap().len();
    assert_eq!(
        s.commit(take(&got, 2)).await.unwrap_err(),
        Error::StoreConflict
    );
    assert_eq!(s.audit_after(0, 10_000).await.unwrap().len(), before);
    assert!(
        s.waiting_credential(&g1.id, &alice, "v1.", t(100))
            .await
            .unwrap()
            .is_none()
    );
    // An extension's new credential replaces the old one.
    s.commit(Commit {
        credentials: vec![sealed(&g2, "v1.renewed")],
        ..Commit::default()
    })
    .await
    .unwrap();
    // A grant that leaves `active` takes its waiting credential with it, unseen.
    let mut revoking = s.get_grant(&g2.id).await.unwrap().unwrap();
    revoking.state = GrantState::Revoking;
    s.commit(Commit {
        grants: vec![revoking],
        ..Commit::default()
    })
    .await
    .unwrap();
    assert!(
        s.waiting_credentials(&alice, t(100))
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        s.waiting_credential(&g2.id, &alice, "v1.", t(100))
            .await
            .unwrap()
            .is_none()
    );
    // Past its end, it is never handed over.
    let r3 = request(30);
    let g3 = grant(&r3, 5_000);
    s.commit(Commit {
        requests: vec![r3],
        grants: vec![g3.clone()],
        credentials: vec![sealed(&g3, "v1.third")],
        ..Commit::default()
    })
    .await
    .unwrap();
    assert!(
        s.waiting_credentials(&alice, t(5_000))
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        s.waiting_credential(&g3.id, &alice, "v1.", t(5_000))
            .await
            .unwrap()
            .is_none()
    );
}

/// Thirty commits at once, every third one stale: they are written in fewer transactions than
/// commits, each stale one fails alone with a conflict and leaves nothing, every other one lands
/// with its audit records, and the chain verifies with no gap.
async fn writes_waiting_together_share_a_transaction_and_fail_alone(s: &Fresh) {
    let reqs: Vec<Request> = (0..30).map(|i| request(100 + i)).collect();
    // Requests that exist already, at version 1, so that a copy at version 0 re-inserts a
    // duplicate (the stale ones).
    let stale: Vec<usize> = (0..30).filter(|i| i % 3 == 2).collect();
    for &i in &stale {
        s.commit(Commit {
            requests: vec![reqs[i].clone()],
            ..Commit::default()
        })
        .await
        .unwrap();
    }
    let seq_before = s.audit_head_seq().await.unwrap();
    let before = s.write_stats();
    let answers = futures_util::future::join_all(reqs.iter().enumerate().map(|(i, r)| {
        s.commit(Commit {
            requests: vec![r.clone()],
            grants: vec![grant(r, 5_000)],
            audit: vec![ev(&format!("created{i}")), ev(&format!("granted{i}"))],
            ..Commit::default()
        })
    }))
    .await;
    let mut seqs = Vec::new();
    for (i, a) in answers.iter().enumerate() {
        if stale.contains(&i) {
            assert_eq!(a, &Err(Error::StoreConflict), "commit {i}");
            assert!(s.grants_of_request(&reqs[i].id).await.unwrap().is_empty());
        } else {
            let last = a.clone().unwrap().expect("a sequence number");
            seqs.push(last);
            assert_eq!(s.grants_of_request(&reqs[i].id).await.unwrap().len(), 1);
        }
    }
    // Each answered commit names its own last event; together they cover the chain's growth.
    seqs.sort_unstable();
    seqs.dedup();
    assert_eq!(seqs.len(), 20);
    let events = s.audit_after(seq_before, 1_000).await.unwrap();
    assert_eq!(events.len(), 40);
    for &i in &stale {
        let created = format!("created{i}");
        assert!(
            events.iter().all(|e| e.record.action != created),
            "{created}"
        );
    }
    for (i, _) in answers
        .iter()
        .enumerate()
        .filter(|(i, _)| !stale.contains(i))
    {
        let created = format!("created{i}");
        let granted = format!("granted{i}");
        let at = |a: &str| events.iter().position(|e| e.record.action == a).unwrap();
        assert_eq!(
            at(&granted),
            at(&created) + 1,
            "a commit's events stay together"
        );
    }
    let mut v = ChainVerifier::default();
    for e in s.audit_after(0, 10_000).await.unwrap() {
        v.check(&e).unwrap();
    }
    let after = s.write_stats();
    let (txs, writes) = (
        after.transactions - before.transactions,
        after.writes - before.writes,
    );
    assert_eq!(writes, 30, "every write counted once");
    assert!(txs < 5, "{txs} transactions for 30 waiting writes");
}

async fn one_owner_at_a_time_holds_a_periodic_turn(s: &Fresh) {
    // The first owner takes the turn until 1000; another cannot before then.
    assert!(s.take_turn("reconcile", "a", t(0), t(1_000)).await.unwrap());
    assert!(
        !s.take_turn("reconcile", "b", t(500), t(1_500))
            .await
            .unwrap()
    );
    // The holder renews its own turn; other tasks are separate.
    assert!(
        s.take_turn("reconcile", "a", t(900), t(1_900))
            .await
            .unwrap()
    );
    assert!(
        s.take_turn("poll_tickets", "b", t(900), t(1_900))
            .await
            .unwrap()
    );
    // Once a turn lapses (its holder died or stopped), the next owner takes it.
    assert!(
        !s.take_turn("reconcile", "b", t(1_899), t(2_899))
            .await
            .unwrap()
    );
    assert!(
        s.take_turn("reconcile", "b", t(1_900), t(2_900))
            .await
            .unwrap()
    );
    assert!(
        !s.take_turn("reconcile", "a", t(2_000), t(3_000))
            .await
            .unwrap()
    );
    assert_eq!(audit_len(s).await, 0, "turns are bookkeeping, not audited");
}

/// The audit record an archive is recorded with (`hourglass audit archive` writes the same).
pub(crate) fn archived(
    c: &hourglass_core::audit::Checkpoint,
) -> hourglass_core::audit::AuditRecord {
    hourglass_core::audit::AuditRecord::new(
        t(5_000),
        "system",
        hourglass_core::event::EventKind::AuditArchived,
        &c.events_sha256,
    )
    .with("first_seq", c.first_seq)
    .with("through_seq", c.through_seq)
    .with("through_hash", &c.through_hash)
}
