-- The task a request belongs to: an id the asker gave (an agent's unit of work), so that every
-- grant of the task ends together when the agent releases it.
ALTER TABLE requests ADD COLUMN task TEXT;
CREATE INDEX requests_by_task ON requests (requester, task) WHERE task IS NOT NULL;
-- "Why was anyone elevated?": a person's grants by when they became active, and a grant's
-- extensions.
CREATE INDEX grants_by_principal_activated ON grants (principal, activated_at);
CREATE INDEX requests_by_extends ON requests (extends) WHERE extends IS NOT NULL;
