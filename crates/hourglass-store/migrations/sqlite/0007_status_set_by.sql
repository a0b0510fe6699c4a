-- Who suspended or offboarded an identity, and with what authority (JSON: actor, authority):
-- an owner cannot lift an administrator's suspension.
ALTER TABLE identities ADD COLUMN status_set_by TEXT;
