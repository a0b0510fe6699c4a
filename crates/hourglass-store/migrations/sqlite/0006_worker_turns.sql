-- Periodic tasks (reconciliation, ticket polling) that one process a period runs: who holds
-- the task's turn, and until when. Used on a shared store; harmless on a file one process uses.
CREATE TABLE worker_turns (
    task  TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    until INTEGER NOT NULL
) STRICT;
