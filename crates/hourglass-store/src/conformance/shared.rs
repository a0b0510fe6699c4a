//! What only a shared store must do: several processes (here, several pools on one PostgreSQL
//! database, as separate replicas would hold) migrate once, claim each job exactly once, extend
//! one gap-free audit chain, and hear each other's wake-ups.

use std::{
    collections::HashSet,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use hourglass_core::{
    audit::ChainVerifier,
    engine::Wake,
    job::JobAction,
    store::{Commit, JobChange, Store},
};

use super::{ev, grant, request, t};
use crate::{PgStore, PoolOptions};

/// `n` stores on one fresh database, opened at once (so their migrations race).
async fn replicas(n: usize) -> Option<(Vec<Arc<PgStore>>, hourglass_testdb::TestDb)> {
    let db = hourglass_testdb::postgres().await?;
    let opens = (0..n).map(|_| {
        let url = db.url.clone();
        tokio::spawn(async move { PgStore::open(&url, &PoolOptions::default()).await })
    });
    let mut stores = Vec::new();
    for o in opens {
        stores.push(Arc::new(o.await.unwrap().unwrap()));
    }
    Some((stores, db))
}

#[tokio::test]
async fn replicas_starting_together_migrate_once() {
    let Some((stores, _db)) = replicas(3).await else {
        return;
    };
    let applied: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM _sqlx_migrations")
        .fetch_one(stores[0].pool())
        .await
        .unwrap();
    assert_eq!(
        applied,
        crate::postgres::migrator().iter().count() as i64,
        "each migration once"
    );
    for s in &stores {
        s.ping().await.unwrap();
    }
}

#[tokio::test]
async fn concurrent_writers_extend_one_gap_free_chain() {
    let Some((stores, _db)) = replicas(3).await else {
        return;
    };
    let mut tasks = Vec::new();
    for (i, s) in stores.iter().enumerate() {
        let s = Arc::clone(s);
        tasks.push(tokio::spawn(async move {
            for j in 0..60 {
                s.commit(Commit {
                    audit: vec![ev(&format!("r{i}.{j}")), ev("second")],
                    ..Commit::default()
                })
                .await
                .unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let events = stores[1].audit_after(0, 10_000).await.unwrap();
    assert_eq!(events.len(), 360);
    let mut v = ChainVerifier::default();
    for e in &events {
        v.check(e).unwrap();
    }
    // Each commit's records are adjacent: the chain's lock is held for the whole append.
    for pair in events.chunks(2) {
        assert!(pair[0].record.action.starts_with('r'), "{pair:?}");
        assert_eq!(pair[1].record.action, "second");
    }
}

#[tokio::test]
async fn each_job_is_claimed_by_exactly_one_replica() {
    let Some((stores, _db)) = replicas(3).await else {
        return;
    };
    let mut commit = Commit::default();
    for i in 0..120 {
        let r = request(10 + i);
        let g = grant(&r, 100_000);
        commit.jobs.push(JobChange::Schedule {
            grant_id: g.id.clone(),
            action: JobAction::Revoke,
            run_at: t(50),
        });
        commit.requests.push(r);
        commit.grants.push(g);
    }
    stores[0].commit(commit).await.unwrap();
    let mut tasks = Vec::new();
    for (i, s) in stores.iter().enumerate() {
        let s = Arc::clone(s);
        tasks.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            loop {
                let jobs = s
                    .claim_jobs(t(100), &format!("replica{i}"), t(60_000), 7)
                    .await
                    .unwrap();
                if jobs.is_empty() {
                    return mine;
                }
                mine.extend(jobs.into_iter().map(|j| j.grant_id));
            }
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    let distinct: HashSet<_> = all.iter().collect();
    assert_eq!(all.len(), 120, "every job claimed once, none twice");
    assert_eq!(distinct.len(), 120);
    // Leased until 60 s: nothing more is claimable before then, and all of it after.
    assert!(
        stores[2]
            .claim_jobs(t(59_999), "late", t(90_000), 500)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        stores[2]
            .claim_jobs(t(60_000), "late", t(90_000), 500)
            .await
            .unwrap()
            .len(),
        120
    );
}

#[derive(Default)]
struct Heard {
    jobs: AtomicUsize,
    deadlines: AtomicUsize,
    notifications: AtomicUsize,
}

impl Wake for Heard {
    fn jobs_changed(&self) {
        self.jobs.fetch_add(1, Ordering::SeqCst);
    }
    fn deadlines_changed(&self) {
        self.deadlines.fetch_add(1, Ordering::SeqCst);
    }
    fn notifications_changed(&self) {
        self.notifications.fetch_add(1, Ordering::SeqCst);
    }
}

#[tokio::test]
async fn a_replica_hears_the_work_another_commits() {
    let Some((stores, _db)) = replicas(2).await else {
        return;
    };
    let heard = Arc::new(Heard::default());
    stores[1].relay_wakes(Arc::clone(&heard) as Arc<dyn Wake>);
    // The listener subscribes asynchronously: commit until it has heard one, then check what.
    let r = request(10);
    let g = grant(&r, 100_000);
    stores[0]
        .commit(Commit {
            requests: vec![r],
            grants: vec![g.clone()],
            audit: vec![ev("granted")],
            ..Commit::default()
        })
        .await
        .unwrap();
    let mut tries = 0;
    while heard.jobs.load(Ordering::SeqCst) == 0 {
        tries += 1;
        assert!(tries < 200, "no wake-up reached the other replica");
        stores[0]
            .commit(Commit {
                jobs: vec![JobChange::Schedule {
                    grant_id: g.id.clone(),
                    action: JobAction::Revoke,
                    run_at: t(50),
                }],
                ..Commit::default()
            })
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    // An audit-only commit gives no worker anything to do and wakes nobody.
    let before = (
        heard.jobs.load(Ordering::SeqCst),
        heard.deadlines.load(Ordering::SeqCst),
        heard.notifications.load(Ordering::SeqCst),
    );
    stores[0]
        .commit(Commit {
            audit: vec![ev("just a record")],
            ..Commit::default()
        })
        .await
        .unwrap();
    // A marker commit after it: once the marker is heard, the audit-only one would have been.
    let r2 = request(20);
    stores[0]
        .commit(Commit {
            requests: vec![r2],
            ..Commit::default()
        })
        .await
        .unwrap();
    let mut tries = 0;
    while heard.deadlines.load(Ordering::SeqCst) == before.1 {
        tries += 1;
        assert!(tries < 200, "the marker wake-up never arrived");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(heard.jobs.load(Ordering::SeqCst), before.0);
    assert_eq!(heard.deadlines.load(Ordering::SeqCst), before.1 + 1);
    assert_eq!(heard.notifications.load(Ordering::SeqCst), before.2);
}
