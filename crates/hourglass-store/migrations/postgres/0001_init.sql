-- Hourglass schema, PostgreSQL. The same tables and columns as the SQLite schema (migrations
-- 0001–0005 there), created at once. Times are BIGINT milliseconds since the Unix epoch (UTC).

CREATE TABLE requests (
    id            TEXT PRIMARY KEY,
    requester     TEXT NOT NULL,
    access_kind   TEXT NOT NULL DEFAULT 'entitlement',
    entitlement   TEXT NOT NULL,
    duration_secs BIGINT NOT NULL CHECK (duration_secs > 0),
    reason        TEXT NOT NULL,
    ticket        TEXT,
    state         TEXT NOT NULL,
    state_reason  TEXT,
    created_at    BIGINT NOT NULL,
    updated_at    BIGINT NOT NULL,
    decide_by     BIGINT NOT NULL,
    policy_hash   TEXT NOT NULL,
    grant_id      TEXT,
    public_key    TEXT,
    break_glass   BOOLEAN NOT NULL DEFAULT FALSE,
    mfa           BOOLEAN NOT NULL DEFAULT FALSE,
    source_ip     TEXT,
    starts_at     BIGINT,
    extends       TEXT,
    -- The delegation chain of a request made by an agent for someone (outermost actor first).
    actor         TEXT,
    -- The token facts an exchange was judged on (JSON), for re-checks at activation and reload.
    exchange      TEXT,
    -- What the ticket source said at request time (JSON, for re-checks).
    ticket_facts  TEXT,
    version       BIGINT NOT NULL
);
CREATE INDEX requests_by_state ON requests (state, id);
-- The scheduler's only way to find pending requests past their deadline.
CREATE INDEX requests_pending_deadline ON requests (decide_by) WHERE state = 'pending';
CREATE INDEX requests_pending_by_requester ON requests (requester, entitlement)
    WHERE state = 'pending';
CREATE INDEX requests_by_requester_time ON requests (requester, created_at);
CREATE INDEX requests_by_entitlement_time ON requests (entitlement, created_at);
CREATE INDEX requests_by_ticket ON requests (ticket) WHERE ticket IS NOT NULL;

CREATE TABLE approvals (
    request_id  TEXT NOT NULL REFERENCES requests (id),
    approver    TEXT NOT NULL,
    verdict     TEXT NOT NULL,
    via         TEXT NOT NULL,
    policy_ids  TEXT NOT NULL,
    policy_hash TEXT NOT NULL,
    comment     TEXT,
    at          BIGINT NOT NULL,
    PRIMARY KEY (request_id, approver)
);

CREATE TABLE grants (
    id                     TEXT PRIMARY KEY,
    request_id             TEXT NOT NULL REFERENCES requests (id),
    principal              TEXT NOT NULL,
    entitlement            TEXT NOT NULL,
    target                 TEXT NOT NULL,
    state                  TEXT NOT NULL,
    starts_at              BIGINT NOT NULL,
    expires_at             BIGINT NOT NULL,
    created_at             BIGINT NOT NULL,
    activated_at           BIGINT,
    revoke_due_at          BIGINT,
    ended_at               BIGINT,
    end_reason             TEXT,
    handle                 TEXT,
    credential_fingerprint TEXT,
    public_key             TEXT,
    break_glass            BOOLEAN NOT NULL DEFAULT FALSE,
    version                BIGINT NOT NULL,
    CHECK (expires_at > starts_at)
);
ALTER TABLE requests ADD FOREIGN KEY (extends) REFERENCES grants (id);
CREATE INDEX grants_by_state ON grants (state, id);
-- Expiry is driven by this index: the next expiry is its first entry.
CREATE INDEX grants_active_expiry ON grants (expires_at) WHERE state = 'active';
CREATE INDEX grants_revoking_due ON grants (revoke_due_at) WHERE state = 'revoking';
CREATE INDEX grants_live_by_principal ON grants (principal, entitlement)
    WHERE state IN ('provisioning', 'active');
CREATE INDEX grants_live_by_entitlement ON grants (entitlement)
    WHERE state IN ('provisioning', 'active');
CREATE INDEX grants_by_request ON grants (request_id);

-- At most one job per grant: its next action. due_at is lease_until while leased, else run_at.
CREATE TABLE grant_jobs (
    grant_id    TEXT PRIMARY KEY REFERENCES grants (id),
    action      TEXT NOT NULL,
    run_at      BIGINT NOT NULL,
    attempts    BIGINT NOT NULL DEFAULT 0,
    last_error  TEXT,
    lease_owner TEXT,
    lease_token TEXT,
    lease_until BIGINT,
    due_at      BIGINT NOT NULL
);
CREATE INDEX grant_jobs_due ON grant_jobs (due_at);

CREATE TABLE reviews (
    id          TEXT PRIMARY KEY,
    request_id  TEXT NOT NULL REFERENCES requests (id),
    grant_id    TEXT NOT NULL REFERENCES grants (id),
    principal   TEXT NOT NULL,
    access_kind TEXT NOT NULL DEFAULT 'entitlement',
    entitlement TEXT NOT NULL,
    reason      TEXT NOT NULL,
    state       TEXT NOT NULL,
    opened_at   BIGINT NOT NULL,
    closed_at   BIGINT,
    closed_by   TEXT,
    comment     TEXT,
    version     BIGINT NOT NULL
);
CREATE INDEX reviews_by_state ON reviews (state, id);

CREATE TABLE identities (
    id            TEXT PRIMARY KEY,
    kind          TEXT NOT NULL,
    owner         TEXT,
    groups        TEXT NOT NULL,
    status        TEXT NOT NULL,
    status_reason TEXT,
    origin        TEXT NOT NULL,
    created_at    BIGINT NOT NULL,
    last_seen_at  BIGINT,
    version       BIGINT NOT NULL
);
CREATE INDEX identities_by_owner ON identities (owner);

CREATE TABLE api_keys (
    id           TEXT PRIMARY KEY,
    principal    TEXT NOT NULL REFERENCES identities (id),
    prefix       TEXT UNIQUE,
    hash         TEXT NOT NULL UNIQUE,
    origin       TEXT NOT NULL,
    created_at   BIGINT NOT NULL,
    expires_at   BIGINT,
    revoked_at   BIGINT,
    last_used_at BIGINT,
    replaced_by  TEXT,
    version      BIGINT NOT NULL
);
CREATE INDEX api_keys_by_principal ON api_keys (principal, created_at);

CREATE TABLE token_uses (
    issuer     TEXT NOT NULL,
    jti        TEXT NOT NULL,
    expires_at BIGINT NOT NULL,
    PRIMARY KEY (issuer, jti)
);
CREATE INDEX token_uses_by_expiry ON token_uses (expires_at);

-- The last state a webhook-only ticket source reported for each ticket.
CREATE TABLE tickets (
    source     TEXT NOT NULL,
    reference  TEXT NOT NULL,
    ticket     TEXT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (source, reference)
);

-- The notification outbox (see the SQLite schema).
CREATE TABLE notifications (
    id          TEXT PRIMARY KEY,
    notifier    TEXT NOT NULL,
    dedup_key   TEXT NOT NULL,
    event       TEXT NOT NULL,
    subject     TEXT,
    message     TEXT NOT NULL,
    state       TEXT NOT NULL,
    run_at      BIGINT NOT NULL,
    due_at      BIGINT NOT NULL,
    attempts    BIGINT NOT NULL,
    last_error  TEXT,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL,
    lease_owner TEXT,
    lease_token TEXT,
    lease_until BIGINT,
    UNIQUE (notifier, dedup_key)
);
CREATE INDEX notifications_due ON notifications (due_at) WHERE state = 'pending';
CREATE INDEX notifications_settled ON notifications (updated_at) WHERE state IN ('sent', 'dropped');
CREATE INDEX notifications_by_subject ON notifications (subject);

CREATE TABLE audit_events (
    seq       BIGINT PRIMARY KEY,
    at        BIGINT NOT NULL,
    actor     TEXT NOT NULL,
    action    TEXT NOT NULL,
    subject   TEXT NOT NULL,
    details   TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash      TEXT NOT NULL
);
CREATE INDEX audit_by_subject ON audit_events (subject, seq);

-- The head of the audit chain: one row. Every append locks it (SELECT … FOR UPDATE) as the
-- last step of its transaction, so that writers on any replica extend one gap-free chain.
CREATE TABLE audit_head (
    id   INTEGER PRIMARY KEY CHECK (id = 1),
    seq  BIGINT NOT NULL,
    hash TEXT
);
INSERT INTO audit_head (id, seq, hash) VALUES (1, 0, NULL);

-- The audit log is append-only for Hourglass itself (the hash chain detects anyone else).
CREATE FUNCTION audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit events are append-only';
END;
$$;
CREATE TRIGGER audit_no_update BEFORE UPDATE OR DELETE ON audit_events
    FOR EACH ROW EXECUTE FUNCTION audit_append_only();
CREATE TRIGGER audit_no_truncate BEFORE TRUNCATE ON audit_events
    FOR EACH STATEMENT EXECUTE FUNCTION audit_append_only();
