-- Sign-in sessions of people (the web app): the SHA-256 of the id only, never the id.
CREATE TABLE sessions (
    id_hash      TEXT PRIMARY KEY,
    principal    TEXT NOT NULL REFERENCES identities (id),
    mfa          INTEGER NOT NULL,
    via          TEXT NOT NULL,
    created_at   INTEGER NOT NULL,
    last_seen_at INTEGER NOT NULL,
    expires_at   INTEGER NOT NULL
) STRICT;
CREATE INDEX sessions_by_expiry ON sessions (expires_at);
