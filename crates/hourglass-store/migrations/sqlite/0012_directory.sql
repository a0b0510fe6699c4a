-- The organisation's directory as SCIM provisions it: users and groups, unique by name without
-- regard to case (name_key is the lower-cased name), a user naming the principal it is.
CREATE TABLE directory (
    kind         TEXT NOT NULL,
    id           TEXT NOT NULL,
    name         TEXT NOT NULL,
    name_key     TEXT NOT NULL,
    external_id  TEXT,
    principal    TEXT,
    resource     TEXT NOT NULL,
    created_at   INTEGER NOT NULL,
    updated_at   INTEGER NOT NULL,
    version      INTEGER NOT NULL,
    PRIMARY KEY (kind, id),
    UNIQUE (kind, name_key)
);
CREATE UNIQUE INDEX directory_by_principal ON directory (principal) WHERE principal IS NOT NULL;
