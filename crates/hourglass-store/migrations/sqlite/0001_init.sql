-- Hourglass schema, SQLite. Times are INTEGER milliseconds since the Unix epoch (UTC).

CREATE TABLE requests (
    id            TEXT PRIMARY KEY,
    requester     TEXT NOT NULL,
    entitlement   TEXT NOT NULL,
    duration_secs INTEGER NOT NULL CHECK (duration_secs > 0),
    reason        TEXT NOT NULL,
    ticket        TEXT,
    state         TEXT NOT NULL,
    state_reason  TEXT,
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL,
    decide_by     INTEGER NOT NULL,
    policy_hash   TEXT NOT NULL,
    grant_id      TEXT,
    version       INTEGER NOT NULL
) STRICT;
CREATE INDEX requests_by_state ON requests (state, id);
-- The scheduler's only way to find pending requests past their deadline.
CREATE INDEX requests_pending_deadline ON requests (decide_by) WHERE state = 'pending';

CREATE TABLE approvals (
    request_id  TEXT NOT NULL REFERENCES requests (id),
    approver    TEXT NOT NULL,
    verdict     TEXT NOT NULL,
    via         TEXT NOT NULL,
    policy_ids  TEXT NOT NULL,
    policy_hash TEXT NOT NULL,
    comment     TEXT,
    at          INTEGER NOT NULL,
    PRIMARY KEY (request_id, approver)
) STRICT;

CREATE TABLE grants (
    id                     TEXT PRIMARY KEY,
    request_id             TEXT NOT NULL REFERENCES requests (id),
    principal              TEXT NOT NULL,
    entitlement            TEXT NOT NULL,
    target                 TEXT NOT NULL,
    state                  TEXT NOT NULL,
    starts_at              INTEGER NOT NULL,
    expires_at             INTEGER NOT NULL,
    created_at             INTEGER NOT NULL,
    activated_at           INTEGER,
    revoke_due_at          INTEGER,
    ended_at               INTEGER,
    end_reason             TEXT,
    handle                 TEXT,
    credential_fingerprint TEXT,
    version                INTEGER NOT NULL,
    CHECK (expires_at > starts_at)
) STRICT;
CREATE INDEX grants_by_state ON grants (state, id);
-- Expiry is driven by this index: the next expiry is its first entry.
CREATE INDEX grants_active_expiry ON grants (expires_at) WHERE state = 'active';
CREATE INDEX grants_revoking_due ON grants (revoke_due_at) WHERE state = 'revoking';

-- At most one job per grant: its next action. due_at is lease_until while leased, else run_at.
CREATE TABLE grant_jobs (
    grant_id    TEXT PRIMARY KEY REFERENCES grants (id),
    action      TEXT NOT NULL,
    run_at      INTEGER NOT NULL,
    attempts    INTEGER NOT NULL DEFAULT 0,
    last_error  TEXT,
    lease_owner TEXT,
    lease_token TEXT,
    lease_until INTEGER,
    due_at      INTEGER NOT NULL
) STRICT;
CREATE INDEX grant_jobs_due ON grant_jobs (due_at);

CREATE TABLE audit_events (
    seq       INTEGER PRIMARY KEY,
    at        INTEGER NOT NULL,
    actor     TEXT NOT NULL,
    action    TEXT NOT NULL,
    subject   TEXT NOT NULL,
    details   TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash      TEXT NOT NULL
) STRICT;
CREATE INDEX audit_by_subject ON audit_events (subject, seq);

-- The audit log is append-only for Hourglass itself. (Someone with the file can still alter
-- it; the hash chain is what detects that.)
CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit_events
BEGIN SELECT RAISE(ABORT, 'audit events are append-only'); END;
CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit_events
BEGIN SELECT RAISE(ABORT, 'audit events are append-only'); END;
