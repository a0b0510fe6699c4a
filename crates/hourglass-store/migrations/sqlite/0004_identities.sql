-- The identity directory: principals (declared in configuration or created through the API),
-- their API keys (stored only as SHA-256 with a public lookup prefix), and the ids of identity
-- tokens already exchanged (so that a replay within a token's lifetime is refused).
CREATE TABLE identities (
    id            TEXT PRIMARY KEY,
    kind          TEXT NOT NULL,
    owner         TEXT,
    groups        TEXT NOT NULL,
    status        TEXT NOT NULL,
    status_reason TEXT,
    origin        TEXT NOT NULL,
    created_at    INTEGER NOT NULL,
    last_seen_at  INTEGER,
    version       INTEGER NOT NULL
) STRICT;
CREATE INDEX identities_by_owner ON identities (owner);

CREATE TABLE api_keys (
    id           TEXT PRIMARY KEY,
    principal    TEXT NOT NULL REFERENCES identities (id),
    prefix       TEXT UNIQUE,
    hash         TEXT NOT NULL UNIQUE,
    origin       TEXT NOT NULL,
    created_at   INTEGER NOT NULL,
    expires_at   INTEGER,
    revoked_at   INTEGER,
    last_used_at INTEGER,
    replaced_by  TEXT,
    version      INTEGER NOT NULL
) STRICT;
CREATE INDEX api_keys_by_principal ON api_keys (principal, created_at);

CREATE TABLE token_uses (
    issuer     TEXT NOT NULL,
    jti        TEXT NOT NULL,
    expires_at INTEGER NOT NULL,
    PRIMARY KEY (issuer, jti)
) STRICT;
CREATE INDEX token_uses_by_expiry ON token_uses (expires_at);

-- The delegation chain of a request made by an agent for someone (JSON, outermost actor
-- first), and the identity token it was exchanged from.
ALTER TABLE requests ADD COLUMN actor TEXT;
-- The token facts an exchange was judged on (JSON), for re-checks at activation and reload.
ALTER TABLE requests ADD COLUMN exchange TEXT;
