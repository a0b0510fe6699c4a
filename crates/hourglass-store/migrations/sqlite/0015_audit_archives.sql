-- Archived audit events (`hourglass audit archive`). An archive moves a prefix of the chain,
-- `first_seq..=through_seq`, to a file whose event lines hash to `events_sha256`; its
-- checkpoint stays here, and the live chain goes on after it: the first live event's
-- `prev_hash` is the last archived event's hash, `through_hash`. Checkpoints follow each other
-- with no gap or overlap (each `first_seq` is the previous `through_seq` + 1: unique, so two
-- archives taken at once cannot both land).
CREATE TABLE audit_archives (
    through_seq   INTEGER PRIMARY KEY,
    first_seq     INTEGER NOT NULL UNIQUE,
    through_hash  TEXT NOT NULL,
    archived_at   INTEGER NOT NULL,
    events_sha256 TEXT NOT NULL,
    CHECK (first_seq >= 1 AND first_seq <= through_seq)
) STRICT;

-- Checkpoints are append-only too: without them the live chain could not be verified.
CREATE TRIGGER audit_archives_no_update BEFORE UPDATE ON audit_archives
BEGIN SELECT RAISE(ABORT, 'audit archives are append-only'); END;
CREATE TRIGGER audit_archives_no_delete BEFORE DELETE ON audit_archives
BEGIN SELECT RAISE(ABORT, 'audit archives are append-only'); END;

-- The audit log stays append-only, with one exception: an event a recorded checkpoint covers
-- may be deleted (it is in the archive, and the chain is verified from the checkpoint on).
-- Events after the latest checkpoint, the head among them, still cannot be; updates never can.
DROP TRIGGER audit_no_delete;
CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit_events
WHEN NOT EXISTS (SELECT 1 FROM audit_archives WHERE through_seq >= OLD.seq)
BEGIN SELECT RAISE(ABORT, 'audit events are append-only'); END;
