-- One-time credentials, sealed (encrypted and bound to grant, holder and end) by the server:
-- never plaintext. Deleted when taken, and when their grant leaves `active`.
CREATE TABLE sealed_credentials (
    grant_id   TEXT PRIMARY KEY REFERENCES grants (id),
    holder     TEXT NOT NULL,
    expires_at BIGINT NOT NULL,
    sealed     TEXT NOT NULL
);
CREATE INDEX sealed_credentials_by_expiry ON sealed_credentials (expires_at);

-- Grants ended before their end (SSH certificates still valid on their own): the KRL is
-- rendered from these, in every replica, from the commit that revoked them.
CREATE INDEX grants_ended_early ON grants (target, expires_at)
    WHERE state IN ('revoking', 'revoked', 'failed');

-- The policy set in force (its hash), written in the commit of its `policy.reloaded` event:
-- replicas compare their own set with it and follow, or report themselves stale.
CREATE TABLE policy_in_force (
    id     INTEGER PRIMARY KEY CHECK (id = 1),
    hash   TEXT NOT NULL,
    set_at BIGINT NOT NULL,
    set_by TEXT NOT NULL
);
