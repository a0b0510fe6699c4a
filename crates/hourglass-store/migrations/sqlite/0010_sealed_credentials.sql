-- One-time credentials, sealed (encrypted and bound to grant, holder and end) by the server:
-- never plaintext. Deleted when taken, and when their grant leaves `active`.
CREATE TABLE sealed_credentials (
    grant_id   TEXT PRIMARY KEY REFERENCES grants (id),
    holder     TEXT NOT NULL,
    expires_at INTEGER NOT NULL,
    sealed     TEXT NOT NULL
) STRICT;
CREATE INDEX sealed_credentials_by_expiry ON sealed_credentials (expires_at);
