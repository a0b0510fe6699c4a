//! The store side of `hourglass audit archive`: a checkpoint is recorded and the live events it
//! covers are deleted (the database's triggers allow deleting exactly those).
//!
//! Read, decide, commit: the chain's head, the latest checkpoint and the hash at the new
//! checkpoint's end are read, [`check`] decides (pure), and the checkpoint goes in, with its
//! `audit.archived` record chained on at the head in the same commit, under a guard that
//! repeats the decision inside the transaction, so an archive that raced another one, on any
//! replica, changes nothing (no checkpoint, no record) and fails with a conflict. Only then are
//! the covered events deleted, each chunk its own write of the group writer, so a long prefix
//! never holds the writer (or the chain) for long.

use hourglass_core::{Error, ErrorCode, Result, audit::Checkpoint, store::Store};

use crate::{
    ledger::{Backend, SqlStore},
    rows::{checkpoint_from, get},
    sql::{Stmt, stmt},
};

/// Events deleted per transaction.
const CHUNK: u64 = 20_000;

fn invalid(field: &'static str, message: impl std::fmt::Display) -> Error {
    Error::invalid(ErrorCode::AuditArchiveInvalid, field, message)
}

/// Whether `c` may be recorded after `latest`, on a chain whose head is `head`, where the live
/// event at `c.through_seq` has hash `hash_at_through` (`None`: there is none).
pub(crate) fn check(
    c: &Checkpoint,
    latest: Option<&Checkpoint>,
    head: u64,
    hash_at_through: Option<&str>,
) -> Result<()> {
    if c.through_seq < c.first_seq {
        return Err(invalid(
            "through_seq",
            format!(
                "the checkpoint ends (through {}) before it starts (at {})",
                c.through_seq, c.first_seq
            ),
        ));
    }
    let expected = latest.map_or(1, |l| l.through_seq + 1);
    if c.first_seq != expected {
        return Err(invalid(
            "through_seq",
            match latest {
                Some(l) => format!(
                    "the checkpoint must start at {expected}, right after the latest archive \
                     (through {}), not at {}",
                    l.through_seq, c.first_seq
                ),
                None => format!(
                    "nothing is archived yet: the checkpoint must start at 1, not at {}",
                    c.first_seq
                ),
            },
        ));
    }
    if c.through_seq >= head {
        return Err(invalid(
            "through_seq",
            format!(
                "the head event ({head}) stays live: the checkpoint must end before it, \
                 not at {}",
                c.through_seq
            ),
        ));
    }
    if hash_at_through != Some(c.through_hash.as_str()) {
        return Err(invalid(
            "through_hash",
            "the checkpoint's hash is not the chain's",
        ));
    }
    Ok(())
}

/// Deletes the live events up to `through` (the triggers refuse any a checkpoint does not
/// cover).
fn delete_through(through: u64) -> Stmt {
    stmt!("DELETE FROM audit_events WHERE seq <= $1", seq(through))
}

fn seq(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// The latest checkpoint.
pub(crate) async fn latest<B: Backend>(s: &SqlStore<B>) -> Result<Option<Checkpoint>> {
    s.0.all(stmt!(
        "SELECT * FROM audit_archives ORDER BY through_seq DESC LIMIT 1"
    ))
    .await?
    .first()
    .map(checkpoint_from)
    .transpose()
}

impl<B: Backend> SqlStore<B> {
    /// The latest checkpoint ([`latest`]).
    pub(crate) async fn checkpoint(&self) -> Result<Option<Checkpoint>> {
        latest(self).await
    }

    /// Records `c` and deletes the events it covers; how many were deleted.
    pub(crate) async fn archive(
        &self,
        c: &Checkpoint,
        record: hourglass_core::audit::AuditRecord,
    ) -> Result<u64> {
        archive_by(self, c, record, CHUNK).await
    }
}

/// [`archive`], deleting at most `chunk` events per transaction.
pub(crate) async fn archive_by<B: Backend>(
    s: &SqlStore<B>,
    c: &Checkpoint,
    record: hourglass_core::audit::AuditRecord,
    chunk: u64,
) -> Result<u64> {
    let chunk = chunk.max(1);
    let latest = latest(s).await?;
    let head = s.audit_head_seq().await?;
    let at_through =
        s.0.all(stmt!(
            "SELECT hash FROM audit_events WHERE seq = $1",
            seq(c.through_seq)
        ))
        .await?;
    let hash = at_through
        .first()
        .map(|r| get::<String>(r, "hash"))
        .transpose()?;
    check(c, latest.as_ref(), head, hash.as_deref())?;
    // From the lowest live event: one that an earlier archive, interrupted between chunks,
    // left behind goes now.
    let lowest =
        s.0.all(stmt!("SELECT MIN(seq) AS seq FROM audit_events"))
            .await?
            .first()
            .map(|r| get::<Option<i64>>(r, "seq"))
            .transpose()?
            .flatten()
            .map_or(c.first_seq, |v| u64::try_from(v).unwrap_or(0));
    // The checkpoint and its audit record in one commit (the record chains onto the head),
    // then the events it covers, a chunk a transaction.
    s.commit(hourglass_core::store::Commit {
        archive: Some(c.clone()),
        audit: vec![record],
        ..hourglass_core::store::Commit::default()
    })
    .await?;
    let mut upto = lowest.saturating_add(chunk - 1).min(c.through_seq);
    let mut deleted = s.0.run(delete_through(upto)).await?;
    while upto < c.through_seq {
        upto = upto.saturating_add(chunk).min(c.through_seq);
        deleted += s.0.run(delete_through(upto)).await?;
    }
    Ok(deleted)
}

#[cfg(test)]
mod tests {
    use hourglass_core::Timestamp;

    use super::*;

    fn cp(first: u64, through: u64, hash: &str) -> Checkpoint {
        Checkpoint {
            first_seq: first,
            through_seq: through,
            through_hash: hash.into(),
            archived_at: Timestamp::from_unix_millis(1),
            events_sha256: "e".into(),
        }
    }

    fn refused(r: Result<()>) -> &'static str {
        match r {
            Err(Error::Invalid {
                code: ErrorCode::AuditArchiveInvalid,
                field,
                ..
            }) => field,
            other => panic!("not refused as an invalid archive: {other:?}"),
        }
    }

    #[test]
    fn a_checkpoint_continues_the_latest_and_ends_before_the_head_at_the_chains_hash() {
        assert_eq!(check(&cp(1, 5, "h5"), None, 6, Some("h5")), Ok(()));
        let first = cp(1, 5, "h5");
        assert_eq!(check(&cp(6, 9, "h9"), Some(&first), 10, Some("h9")), Ok(()));
        // A single event.
        assert_eq!(check(&cp(6, 6, "h6"), Some(&first), 7, Some("h6")), Ok(()));
    }

    #[test]
    fn the_head_a_gap_an_overlap_a_reversed_range_or_another_hash_is_refused() {
        let first = cp(1, 5, "h5");
        // The head, or past it.
        assert_eq!(
            refused(check(&cp(1, 6, "h6"), None, 6, Some("h6"))),
            "through_seq"
        );
        assert_eq!(
            refused(check(&cp(1, 7, "h7"), None, 6, None)),
            "through_seq"
        );
        assert_eq!(
            refused(check(&cp(1, 1, "h1"), None, 0, None)),
            "through_seq"
        );
        // Not from 1 with nothing archived; a gap or an overlap after the latest.
        assert_eq!(
            refused(check(&cp(2, 5, "h5"), None, 9, Some("h5"))),
            "through_seq"
        );
        assert_eq!(
            refused(check(&cp(7, 8, "h8"), Some(&first), 9, Some("h8"))),
            "through_seq"
        );
        assert_eq!(
            refused(check(&cp(5, 8, "h8"), Some(&first), 9, Some("h8"))),
            "through_seq"
        );
        assert_eq!(
            refused(check(&cp(6, 5, "h5"), Some(&first), 9, None)),
            "through_seq"
        );
        // Another hash, or no live event there.
        assert_eq!(
            refused(check(&cp(1, 5, "x"), None, 9, Some("h5"))),
            "through_hash"
        );
        assert_eq!(
            refused(check(&cp(1, 5, "h5"), None, 9, None)),
            "through_hash"
        );
    }
}
