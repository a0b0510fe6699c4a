//! `store copy`: everything arrives, row for row, the chain verifies on arrival and goes on
//! from where it was, and a destination that is not empty is refused.

use hourglass_core::{
    Error,
    audit::ChainVerifier,
    campaign::{Campaign, CampaignItem, Effect, EligibilityEntry},
    id::PrincipalId,
    identity::TokenUse,
    job::JobAction,
    request::RequestState,
    store::{Commit, JobChange, Store},
    ticket::Ticket,
};

use super::{
    campaigns, ev, grant, identity::identity, identity::key, outbox::notification, request, t,
};
use crate::{PgStore, PoolOptions, SqliteStore, copy};

async fn chain_of(s: &dyn Store) -> (u64, String) {
    let mut v = ChainVerifier::default();
    for e in s.audit_after(0, 10_000).await.unwrap() {
        v.check(&e).unwrap();
    }
    (v.checked(), v.head_hash().to_owned())
}

#[tokio::test]
async fn a_sqlite_store_moves_to_postgres_whole_and_verified() {
    let Some(db) = hourglass_testdb::postgres().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let from = format!("sqlite://{}", dir.path().join("hg.db").display());
    let src = SqliteStore::open(&from).await.unwrap();

    let etl = identity("etl", 1);
    let k = key("etl", Some("hgk_0123456789ab"), &"a".repeat(64), 1);
    let r = request(10);
    let g = grant(&r, 50_000);
    let mut ext = request(20);
    ext.extends = Some(g.id.clone());
    ext.state = RequestState::Pending;
    src.commit(Commit {
        identities: vec![etl.clone()],
        keys: vec![k.clone()],
        token_uses: vec![(
            TokenUse {
                issuer: "https://ci".into(),
                jti: "j1".into(),
                expires_at: t(90_000),
            },
            t(1),
        )],
        requests: vec![r.clone()],
        grants: vec![g.clone()],
        jobs: vec![JobChange::Schedule {
            grant_id: g.id.clone(),
            action: JobAction::Revoke,
            run_at: t(50_000),
        }],
        notifications: vec![notification("siem", "k1", 30)],
        audit: vec![ev("granted"), ev("provisioned")],
        ..Commit::default()
    })
    .await
    .unwrap();
    src.commit(Commit {
        requests: vec![ext.clone()],
        audit: vec![ev("extension requested")],
        ..Commit::default()
    })
    .await
    .unwrap();
    let ticket = Ticket {
        reference: "DESK-1".into(),
        open: true,
        status: "In Progress".into(),
        assignee: Some("alice".into()),
        group: None,
        priority: None,
        updated: Some(t(5)),
    };
    src.commit(Commit {
        tickets: vec![("desk".into(), ticket.clone())],
        audit: vec![ev("ticket reported")],
        ..Commit::default()
    })
    .await
    .unwrap();
    let review = campaigns::campaign(1);
    let reviewed = campaigns::item(1, 1);
    let eligibility = EligibilityEntry {
        principal: PrincipalId::new("alice").unwrap(),
        access: "pg/read".into(),
        effect: Effect::Removed,
        item: reviewed.id.clone(),
        at: t(6),
    };
    src.commit(Commit {
        campaigns: vec![review.clone()],
        campaign_items: vec![reviewed.clone()],
        eligibility: vec![eligibility.clone()],
        audit: vec![ev("campaign started")],
        ..Commit::default()
    })
    .await
    .unwrap();
    let before = chain_of(&src).await;
    src.close().await;

    let report = copy(&from, &db.url).await.unwrap();
    assert_eq!(report.audit_events, 5);
    assert_eq!(report.head_hash, before.1);
    let counted = |table: &str| {
        report
            .tables
            .iter()
            .find(|(t, _)| t == table)
            .map(|(_, n)| *n)
    };
    assert_eq!(counted("requests"), Some(2));
    assert_eq!(counted("grants"), Some(1));
    assert_eq!(counted("notifications"), Some(1));
    assert_eq!(counted("campaigns"), Some(1));
    assert_eq!(counted("campaign_items"), Some(1));
    assert_eq!(counted("eligibility"), Some(1));

    let dst = PgStore::open(&db.url, &PoolOptions::default())
        .await
        .unwrap();
    let mut want = r.clone();
    want.version = 1;
    assert_eq!(dst.get_request(&r.id).await.unwrap(), Some(want));
    let got_ext = dst.get_request(&ext.id).await.unwrap().unwrap();
    assert_eq!(got_ext.extends, Some(g.id.clone()));
    assert_eq!(
        dst.get_grant(&g.id).await.unwrap().unwrap().handle,
        g.handle
    );
    assert_eq!(dst.get_job(&g.id).await.unwrap().unwrap().run_at, t(50_000));
    assert_eq!(
        dst.get_identity(etl.id()).await.unwrap().unwrap().principal,
        etl.principal
    );
    assert!(dst.find_key_by_hash(&k.hash).await.unwrap().is_some());
    assert!(dst.is_token_used("https://ci", "j1", t(2)).await.unwrap());
    assert_eq!(
        dst.get_ticket("desk", "DESK-1").await.unwrap(),
        Some(ticket)
    );
    assert_eq!(dst.next_notification_at().await.unwrap(), Some(t(30)));
    assert_eq!(
        dst.get_campaign(&review.id).await.unwrap(),
        Some(Campaign {
            version: 1,
            ..review
        })
    );
    assert_eq!(
        dst.get_campaign_item(&reviewed.id).await.unwrap(),
        Some(CampaignItem {
            version: 1,
            ..reviewed
        })
    );
    assert_eq!(
        dst.eligibility_of(&eligibility.principal).await.unwrap(),
        [eligibility]
    );
    assert_eq!(chain_of(&dst).await, before);

    // The chain goes on from the copied head.
    dst.commit(Commit {
        audit: vec![ev("after the move")],
        ..Commit::default()
    })
    .await
    .unwrap();
    assert_eq!(chain_of(&dst).await.0, 6);

    // A second copy into the same database is refused and changes nothing.
    let err = copy(&from, &db.url).await.unwrap_err();
    assert!(
        matches!(&err, Error::Internal(m) if m.contains("not empty")),
        "{err:?}"
    );
    assert_eq!(chain_of(&dst).await.0, 6);
    dst.close().await;
}

/// Copies a SQLite store whose chain starts after a checkpoint into `to`; the copy carries the
/// checkpoint, verifies from it and goes on from the head.
async fn an_archived_chain_copies_from_its_checkpoint(to: &str) {
    use hourglass_core::{audit::Checkpoint, store::verify_chain};

    let dir = tempfile::tempdir().unwrap();
    let from = format!("sqlite://{}", dir.path().join("src.db").display());
    let src = SqliteStore::open(&from).await.unwrap();
    for i in 0..6 {
        src.commit(Commit {
            audit: vec![ev(&format!("e{i}"))],
            ..Commit::default()
        })
        .await
        .unwrap();
    }
    let all = src.audit_after(0, 100).await.unwrap();
    let checkpoints = [(1, 2), (3, 4)].map(|(first, through): (u64, u64)| Checkpoint {
        first_seq: first,
        through_seq: through,
        through_hash: all[usize::try_from(through).unwrap() - 1].hash.clone(),
        archived_at: t(100),
        events_sha256: "f".repeat(64),
    });
    for c in &checkpoints {
        src.archive_audit(c, crate::conformance::archived(c))
            .await
            .unwrap();
    }
    // Each archive's record chained on at the head: 7, then 8.
    let live = src.audit_after(0, 100).await.unwrap();
    assert_eq!(live.iter().map(|e| e.seq).collect::<Vec<_>>(), [5, 6, 7, 8]);
    assert_eq!(live[..2], all[4..]);
    for ((e, prev), c) in live[2..].iter().zip(&live[1..]).zip(&checkpoints) {
        assert_eq!(e.record, crate::conformance::archived(c));
        assert_eq!(e.prev_hash, prev.hash);
    }
    src.close().await;

    let report = copy(&from, to).await.unwrap();
    assert_eq!(report.audit_events, 4);
    assert_eq!(report.head_hash, live[3].hash);
    assert!(report.tables.contains(&("audit_archives".to_owned(), 2)));
    assert!(report.tables.contains(&("audit_events".to_owned(), 4)));

    let dst = crate::open(to, &PoolOptions::default()).await.unwrap();
    assert_eq!(
        dst.audit_checkpoint().await.unwrap(),
        Some(checkpoints[1].clone())
    );
    assert_eq!(dst.audit_after(0, 100).await.unwrap(), live);
    assert_eq!(dst.audit_head_seq().await.unwrap(), 8);
    assert_eq!(
        dst.commit(Commit {
            audit: vec![ev("after the move")],
            ..Commit::default()
        })
        .await
        .unwrap(),
        Some(9)
    );
    let (v, broken) = verify_chain(&*dst).await.unwrap();
    assert_eq!((broken, v.checked()), (None, 5));
    // The copy goes on being archived where the source left off.
    let live = dst.audit_after(0, 100).await.unwrap();
    let next = Checkpoint {
        first_seq: 5,
        through_seq: 6,
        through_hash: live[1].hash.clone(),
        archived_at: t(200),
        events_sha256: "f".repeat(64),
    };
    assert_eq!(
        dst.archive_audit(&next, crate::conformance::archived(&next))
            .await
            .unwrap(),
        2
    );
    let after = dst.audit_after(0, 100).await.unwrap();
    assert_eq!(
        after.iter().map(|e| e.seq).collect::<Vec<_>>(),
        [7, 8, 9, 10]
    );
    assert_eq!(after[..3], live[2..]);
    assert_eq!(after[3].record, crate::conformance::archived(&next));
    let (v, broken) = verify_chain(&*dst).await.unwrap();
    assert_eq!(
        (broken, v.checked(), v.head_hash()),
        (None, 4, after[3].hash.as_str())
    );
}

#[tokio::test]
async fn an_archived_chain_copies_to_sqlite_from_its_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    an_archived_chain_copies_from_its_checkpoint(&format!(
        "sqlite://{}",
        dir.path().join("dst.db").display()
    ))
    .await;
}

#[tokio::test]
async fn an_archived_chain_copies_to_postgres_from_its_checkpoint() {
    let Some(db) = hourglass_testdb::postgres().await else {
        return;
    };
    an_archived_chain_copies_from_its_checkpoint(&db.url).await;
}
