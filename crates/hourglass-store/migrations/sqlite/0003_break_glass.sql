-- Break-glass: the flag on requests and grants, and the reviews a second person must close.
ALTER TABLE requests ADD COLUMN break_glass INTEGER NOT NULL DEFAULT 0;
ALTER TABLE grants ADD COLUMN break_glass INTEGER NOT NULL DEFAULT 0;
-- The requester's authentication facts, so that re-checks (approval, activation, policy reload)
-- judge what was true when the request was made.
ALTER TABLE requests ADD COLUMN mfa INTEGER NOT NULL DEFAULT 0;
ALTER TABLE requests ADD COLUMN source_ip TEXT;

CREATE TABLE reviews (
    id          TEXT PRIMARY KEY,
    request_id  TEXT NOT NULL REFERENCES requests (id),
    grant_id    TEXT NOT NULL REFERENCES grants (id),
    principal   TEXT NOT NULL,
    entitlement TEXT NOT NULL,
    reason      TEXT NOT NULL,
    state       TEXT NOT NULL,
    opened_at   INTEGER NOT NULL,
    closed_at   INTEGER,
    closed_by   TEXT,
    comment     TEXT,
    version     INTEGER NOT NULL
) STRICT;
CREATE INDEX reviews_by_state ON reviews (state, id);

-- A scheduled start (request --at), and the grant an extension request lengthens.
ALTER TABLE requests ADD COLUMN starts_at INTEGER;
ALTER TABLE requests ADD COLUMN extends TEXT REFERENCES grants (id);

-- Admission checks and quotas read these, never a scan: a principal's live grants and pending
-- requests of one entitlement, an entitlement's live grants, and the requests of the last hour.
CREATE INDEX grants_live_by_principal ON grants (principal, entitlement)
    WHERE state IN ('provisioning', 'active');
CREATE INDEX grants_live_by_entitlement ON grants (entitlement)
    WHERE state IN ('provisioning', 'active');
CREATE INDEX requests_pending_by_requester ON requests (requester, entitlement)
    WHERE state = 'pending';
CREATE INDEX requests_by_requester_time ON requests (requester, created_at);
CREATE INDEX requests_by_entitlement_time ON requests (entitlement, created_at);

-- What a request (or a break-glass review) is for: an entitlement, or a task profile whose
-- name is in the entitlement column. A profile's grants are found by their request.
ALTER TABLE requests ADD COLUMN access_kind TEXT NOT NULL DEFAULT 'entitlement';
ALTER TABLE reviews ADD COLUMN access_kind TEXT NOT NULL DEFAULT 'entitlement';
CREATE INDEX grants_by_request ON grants (request_id);
