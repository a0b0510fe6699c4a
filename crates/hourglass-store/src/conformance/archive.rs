//! Archiving audit events: a checkpoint moves a prefix of the chain out of the live log and is
//! recorded with its `audit.archived` event (chained on at the head, in the checkpoint's
//! commit), the chain verifies from it, events it does not cover stay protected, and a
//! checkpoint that does not continue the chain (the head, a gap, another hash) is refused and
//! changes nothing: no checkpoint, no event.

use hourglass_core::{
    Error, ErrorCode, Result,
    audit::{AuditEvent, Checkpoint},
    store::{Commit, verify_chain},
};

use super::{Fresh, archived, contract, ev, t};
use crate::{ledger::Backend, sql::Step};

/// Commits `n` commits of two events each; all live events after.
async fn events(s: &Fresh, n: usize) -> Vec<AuditEvent> {
    for i in 0..n {
        s.commit(Commit {
            audit: vec![ev(&format!("a{i}")), ev("b")],
            ..Commit::default()
        })
        .await
        .unwrap();
    }
    s.audit_after(0, 10_000).await.unwrap()
}

/// The checkpoint of live events `first..=through` (by sequence number).
fn checkpoint(live: &[AuditEvent], first: u64, through: u64) -> Checkpoint {
    let last = live
        .iter()
        .find(|e| e.seq == through)
        .expect("a live event");
    Checkpoint {
        first_seq: first,
        through_seq: through,
        through_hash: last.hash.clone(),
        archived_at: t(1_000 + i64::try_from(through).unwrap()),
        events_sha256: format!("{through:064x}"),
    }
}

fn seqs(events: &[AuditEvent]) -> Vec<u64> {
    events.iter().map(|e| e.seq).collect()
}

/// `live` is `before` and then, chained onto its last event, the record of archive `c` at
/// `head`.
fn ends_with_the_record(live: &[AuditEvent], before: &[AuditEvent], head: u64, c: &Checkpoint) {
    let (record, rest) = live.split_last().expect("a live event");
    assert_eq!(rest, before);
    assert_eq!(record.seq, head);
    assert_eq!(record.record, archived(c));
    assert_eq!(
        record.prev_hash,
        before.last().expect("an event before it").hash
    );
}

/// The live chain verifies from the latest checkpoint; the number checked and the head's hash.
async fn verified(s: &Fresh) -> (u64, String) {
    let (v, broken) = verify_chain(&**s).await.unwrap();
    assert_eq!(broken, None);
    (v.checked(), v.head_hash().to_owned())
}

fn is_refused(r: &Result<u64>) -> bool {
    matches!(
        r,
        Err(Error::Invalid {
            code: ErrorCode::AuditArchiveInvalid,
            ..
        })
    )
}

async fn archive_by(s: &Fresh, c: &Checkpoint, chunk: u64) -> Result<u64> {
    match s {
        Fresh::Sqlite(store, _) => crate::archive::archive_by(store, c, archived(c), chunk).await,
        Fresh::Postgres(store, _) => crate::archive::archive_by(store, c, archived(c), chunk).await,
    }
}

/// The checkpoint's insert alone, with its guard but without the reads and checks before it.
async fn record_only(s: &Fresh, c: &Checkpoint) -> Result<Vec<u64>> {
    let steps = vec![Step::one(crate::sql::archive_checkpoint(c))];
    match s {
        Fresh::Sqlite(store, _) => store.0.steps(steps).await,
        Fresh::Postgres(store, _) => store.0.steps(steps).await,
    }
}

async fn archiving_a_prefix_moves_it_out_of_the_live_chain(s: &Fresh) {
    let all = events(s, 5).await;
    assert_eq!(seqs(&all), (1..=10).collect::<Vec<_>>());
    assert_eq!(s.audit_checkpoint().await.unwrap(), None);
    let c = checkpoint(&all, 1, 4);
    assert_eq!(s.archive_audit(&c, archived(&c)).await.unwrap(), 4);

    assert_eq!(s.audit_checkpoint().await.unwrap(), Some(c.clone()));
    // The covered events are gone; the archive's record chained on at the head, 11.
    let live = s.audit_after(0, 100).await.unwrap();
    assert_eq!(seqs(&live), (5..=11).collect::<Vec<_>>());
    ends_with_the_record(&live, &all[4..], 11, &c);
    assert_eq!(
        seqs(&s.audit_after(6, 100).await.unwrap()),
        [7, 8, 9, 10, 11]
    );
    assert_eq!(s.audit_of("s").await.unwrap(), all[4..]);
    assert_eq!(s.audit_of(&c.events_sha256).await.unwrap(), live[6..]);
    assert_eq!(s.audit_head_seq().await.unwrap(), 11);
    assert_eq!(verified(s).await, (7, live[6].hash.clone()));

    // Writers chain on from the head as before.
    let last = s
        .commit(Commit {
            audit: vec![ev("after")],
            ..Commit::default()
        })
        .await
        .unwrap();
    assert_eq!(last, Some(12));
    assert_eq!(s.audit_head_seq().await.unwrap(), 12);
    assert_eq!(verified(s).await.0, 8);
}

async fn events_no_checkpoint_covers_stay_append_only(s: &Fresh) {
    let all = events(s, 5).await;
    s.archive_audit(&checkpoint(&all, 1, 4), archived(&checkpoint(&all, 1, 4)))
        .await
        .unwrap();
    let live = s.audit_after(0, 100).await.unwrap();
    ends_with_the_record(&live, &all[4..], 11, &checkpoint(&all, 1, 4));
    for sql in [
        "DELETE FROM audit_events WHERE seq = 5",
        "DELETE FROM audit_events WHERE seq = 10",
        "DELETE FROM audit_events WHERE seq = 11",
        "DELETE FROM audit_events",
        "UPDATE audit_events SET actor = 'mallory' WHERE seq = 6",
        "UPDATE audit_events SET actor = 'mallory' WHERE seq = 11",
    ] {
        let err = s.raw(sql).await.unwrap_err();
        assert!(err.to_string().contains("append-only"), "{sql}: {err}");
    }
    // The checkpoints themselves cannot be changed or removed.
    for sql in [
        "DELETE FROM audit_archives",
        "UPDATE audit_archives SET through_hash = 'x'",
    ] {
        let err = s.raw(sql).await.unwrap_err();
        assert!(err.to_string().contains("append-only"), "{sql}: {err}");
    }
    assert_eq!(s.audit_after(0, 100).await.unwrap(), live);
    assert_eq!(verified(s).await, (7, live[6].hash.clone()));

    // An event a checkpoint covers (one an interrupted archive left behind) is hidden from
    // reads, may be deleted, and goes with the next archive.
    s.raw(
        "INSERT INTO audit_events (seq, at, actor, action, subject, details, prev_hash, hash)
         VALUES (2, 1, 'tester', 'left', 's', '[]', 'x', 'y')",
    )
    .await
    .unwrap();
    assert_eq!(s.audit_after(0, 100).await.unwrap(), live);
    assert_eq!(s.audit_of("s").await.unwrap(), all[4..]);
    assert_eq!(
        s.archive_audit(&checkpoint(&all, 5, 6), archived(&checkpoint(&all, 5, 6)))
            .await
            .unwrap(),
        3,
        "events 2, 5 and 6"
    );
    let after = s.audit_after(0, 100).await.unwrap();
    assert_eq!(seqs(&after), (7..=12).collect::<Vec<_>>());
    ends_with_the_record(&after, &live[2..], 12, &checkpoint(&all, 5, 6));
    assert_eq!(verified(s).await, (6, after[5].hash.clone()));
    s.raw(
        "INSERT INTO audit_events (seq, at, actor, action, subject, details, prev_hash, hash)
         VALUES (3, 1, 'tester', 'left', 's', '[]', 'x', 'y')",
    )
    .await
    .unwrap();
    assert_eq!(
        s.raw("DELETE FROM audit_events WHERE seq = 3")
            .await
            .unwrap(),
        1
    );
}

async fn a_checkpoint_that_does_not_continue_the_chain_is_refused_and_changes_nothing(s: &Fresh) {
    let all = events(s, 6).await;
    // Nothing archived yet: only a checkpoint from 1 is taken, and never through the head.
    for (c, why) in [
        (checkpoint(&all, 2, 5), "a gap before it"),
        (checkpoint(&all, 1, 12), "the head"),
        (
            Checkpoint {
                through_seq: 13,
                ..checkpoint(&all, 1, 12)
            },
            "past the head",
        ),
        (
            Checkpoint {
                through_hash: "0".repeat(64),
                ..checkpoint(&all, 1, 5)
            },
            "another hash",
        ),
        (
            Checkpoint {
                through_hash: all[3].hash.clone(),
                ..checkpoint(&all, 1, 5)
            },
            "another event's hash",
        ),
    ] {
        let r = s.archive_audit(&c, archived(&c)).await;
        assert!(is_refused(&r), "{why}: {r:?}");
    }
    assert_eq!(s.audit_checkpoint().await.unwrap(), None);
    assert_eq!(s.audit_after(0, 100).await.unwrap(), all);
    assert_eq!(s.audit_head_seq().await.unwrap(), 12);

    let first = checkpoint(&all, 1, 5);
    assert_eq!(s.archive_audit(&first, archived(&first)).await.unwrap(), 5);
    // Its record is the head now, 13: the one before it, 12, may be archived from here on.
    let live = s.audit_after(0, 100).await.unwrap();
    assert_eq!(seqs(&live), (6..=13).collect::<Vec<_>>());
    ends_with_the_record(&live, &all[5..], 13, &first);
    for (c, why) in [
        (checkpoint(&all, 7, 9), "a gap after the latest"),
        (checkpoint(&all, 5, 9), "an overlap with the latest"),
        (checkpoint(&all, 1, 9), "from the start again"),
        (first.clone(), "the latest again"),
        (checkpoint(&live, 6, 13), "the head"),
        (
            Checkpoint {
                through_seq: 14,
                ..checkpoint(&live, 6, 13)
            },
            "past the head",
        ),
        (
            Checkpoint {
                first_seq: 6,
                ..checkpoint(&all, 1, 5)
            },
            "ending before it starts",
        ),
        (
            Checkpoint {
                through_hash: all[9].hash.clone(),
                ..checkpoint(&all, 6, 9)
            },
            "another event's hash",
        ),
    ] {
        let r = s.archive_audit(&c, archived(&c)).await;
        assert!(is_refused(&r), "{why}: {r:?}");
    }
    assert_eq!(s.audit_checkpoint().await.unwrap(), Some(first.clone()));
    assert_eq!(s.audit_after(0, 100).await.unwrap(), live);
    assert_eq!(s.audit_head_seq().await.unwrap(), 13);
    assert_eq!(verified(s).await, (8, live[7].hash.clone()));

    // The guard inside the transaction refuses what the checks before it would: an archive that
    // raced another one lands not at all, and neither does the record committed with it.
    for c in [
        checkpoint(&all, 7, 9),
        checkpoint(&live, 6, 13),
        Checkpoint {
            through_hash: "0".repeat(64),
            ..checkpoint(&all, 6, 9)
        },
    ] {
        assert_eq!(record_only(s, &c).await, Err(Error::StoreConflict));
        let with_its_record = s
            .commit(Commit {
                archive: Some(c.clone()),
                audit: vec![archived(&c)],
                ..Commit::default()
            })
            .await;
        assert_eq!(with_its_record, Err(Error::StoreConflict), "{c:?}");
    }
    assert_eq!(s.audit_checkpoint().await.unwrap(), Some(first));
    assert_eq!(s.audit_after(0, 100).await.unwrap(), live);
    assert_eq!(s.audit_head_seq().await.unwrap(), 13);
}

async fn a_second_archive_continues_the_first_in_chunks(s: &Fresh) {
    let all = events(s, 10).await;
    let first = checkpoint(&all, 1, 7);
    let before = s.write_stats().transactions;
    assert_eq!(archive_by(s, &first, 3).await.unwrap(), 7);
    assert_eq!(
        s.write_stats().transactions - before,
        4,
        "the checkpoint with its record, then 1..=3, then 4..=6, then 7"
    );
    let live = s.audit_after(0, 100).await.unwrap();
    assert_eq!(seqs(&live), (8..=21).collect::<Vec<_>>());
    ends_with_the_record(&live, &all[7..], 21, &first);

    let second = checkpoint(&all, 8, 17);
    assert_eq!(archive_by(s, &second, 4).await.unwrap(), 10);
    assert_eq!(s.audit_checkpoint().await.unwrap(), Some(second.clone()));
    let live = s.audit_after(0, 100).await.unwrap();
    assert_eq!(seqs(&live), [18, 19, 20, 21, 22]);
    assert_eq!(live[..3], all[17..]);
    assert_eq!(live[3].record, archived(&first));
    ends_with_the_record(&live, &live[..4], 22, &second);
    assert_eq!(verified(s).await, (5, live[4].hash.clone()));

    // Through the event just before the head: that head and the new record stay live.
    let third = checkpoint(&live, 18, 21);
    assert_eq!(s.archive_audit(&third, archived(&third)).await.unwrap(), 4);
    assert_eq!(s.audit_checkpoint().await.unwrap(), Some(third.clone()));
    let after = s.audit_after(0, 100).await.unwrap();
    assert_eq!(seqs(&after), [22, 23]);
    ends_with_the_record(&after, &live[4..], 23, &third);
    assert_eq!(verified(s).await, (2, after[1].hash.clone()));
    assert_eq!(s.audit_head_seq().await.unwrap(), 23);
    let last = s
        .commit(Commit {
            audit: vec![ev("after")],
            ..Commit::default()
        })
        .await
        .unwrap();
    assert_eq!(last, Some(24));
    assert_eq!(verified(s).await.0, 3);
}

contract! {
    archiving_a_prefix_moves_it_out_of_the_live_chain,
    events_no_checkpoint_covers_stay_append_only,
    a_checkpoint_that_does_not_continue_the_chain_is_refused_and_changes_nothing,
    a_second_archive_continues_the_first_in_chunks,
    a_checkpoint_without_its_archived_event_breaks_verification,
}

/// A checkpoint inserted by hand, and the events before it deleted, is found out: no
/// `audit.archived` event vouches for it.
async fn a_checkpoint_without_its_archived_event_breaks_verification(s: &Fresh) {
    events(s, 5).await;
    s.raw(
        "INSERT INTO audit_archives (through_seq, first_seq, through_hash, archived_at, events_sha256)
         SELECT seq, 1, hash, 1, 'forged' FROM audit_events WHERE seq = 4",
    )
    .await
    .unwrap();
    s.raw("DELETE FROM audit_events WHERE seq <= 4")
        .await
        .unwrap();
    let (_, broken) = verify_chain(&**s).await.unwrap();
    let b = broken.expect("the forged checkpoint is found out");
    assert!(b.reason.contains("no audit.archived event"), "{b:?}");
}
