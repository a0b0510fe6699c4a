-- A requester's public key (OpenSSH format) for connectors that certify one (SSH).
ALTER TABLE requests ADD COLUMN public_key TEXT;
ALTER TABLE grants ADD COLUMN public_key TEXT;
