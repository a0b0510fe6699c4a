-- The organisation's directory as SCIM provisions it: users and groups, unique by name without
-- regard to case (name_key is the lower-cased name), a user naming the principal it is and the
-- directory id of its manager. People carry their manager (a principal name) and department
-- for policy.
CREATE TABLE directory (
    kind         TEXT NOT NULL,
    id           TEXT NOT NULL,
    name         TEXT NOT NULL,
    name_key     TEXT NOT NULL,
    external_id  TEXT,
    principal    TEXT,
    manager_id   TEXT,
    resource     TEXT NOT NULL,
    created_at   INTEGER NOT NULL,
    updated_at   INTEGER NOT NULL,
    version      INTEGER NOT NULL,
    PRIMARY KEY (kind, id),
    UNIQUE (kind, name_key)
);
CREATE UNIQUE INDEX directory_by_principal ON directory (principal) WHERE principal IS NOT NULL;
CREATE INDEX directory_by_manager ON directory (kind, manager_id);
ALTER TABLE identities ADD COLUMN manager TEXT;
ALTER TABLE identities ADD COLUMN department TEXT;
