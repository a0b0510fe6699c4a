-- Archived audit events (`hourglass audit archive`). An archive moves a prefix of the chain,
-- `first_seq..=through_seq`, to a file whose event lines hash to `events_sha256`; its
-- checkpoint stays here, and the live chain goes on after it: the first live event's
-- `prev_hash` is the last archived event's hash, `through_hash`. Checkpoints follow each other
-- with no gap or overlap (each `first_seq` is the previous `through_seq` + 1: unique, so two
-- archives taken at once, on any replicas, cannot both land).
CREATE TABLE audit_archives (
    through_seq   BIGINT PRIMARY KEY,
    first_seq     BIGINT NOT NULL UNIQUE,
    through_hash  TEXT NOT NULL,
    archived_at   BIGINT NOT NULL,
    events_sha256 TEXT NOT NULL,
    CHECK (first_seq >= 1 AND first_seq <= through_seq)
);

-- Checkpoints are append-only too: without them the live chain could not be verified.
CREATE FUNCTION audit_archives_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit archives are append-only';
END;
$$;
CREATE TRIGGER audit_archives_no_change BEFORE UPDATE OR DELETE ON audit_archives
    FOR EACH ROW EXECUTE FUNCTION audit_archives_append_only();
CREATE TRIGGER audit_archives_no_truncate BEFORE TRUNCATE ON audit_archives
    FOR EACH STATEMENT EXECUTE FUNCTION audit_archives_append_only();

-- The audit log stays append-only, with one exception: an event a recorded checkpoint covers
-- may be deleted (it is in the archive, and the chain is verified from the checkpoint on).
-- Events after the latest checkpoint, the head among them, still cannot be; updates and
-- TRUNCATE never can (`audit_append_only()`, unchanged, still refuses those).
CREATE FUNCTION audit_delete_archived_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM audit_archives WHERE through_seq >= OLD.seq) THEN
        RETURN OLD;
    END IF;
    RAISE EXCEPTION 'audit events are append-only';
END;
$$;
DROP TRIGGER audit_no_update ON audit_events;
CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit_events
    FOR EACH ROW EXECUTE FUNCTION audit_append_only();
CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit_events
    FOR EACH ROW EXECUTE FUNCTION audit_delete_archived_only();
