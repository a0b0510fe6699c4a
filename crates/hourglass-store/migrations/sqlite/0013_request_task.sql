-- The task a request belongs to: an id the asker gave (an agent's unit of work), so that every
-- grant of the task ends together when the agent releases it.
ALTER TABLE requests ADD COLUMN task TEXT;
CREATE INDEX requests_by_task ON requests (requester, task) WHERE task IS NOT NULL;
