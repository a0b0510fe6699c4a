-- Periodic tasks (reconciliation, ticket polling) that one replica a period runs: who holds the
-- task's turn, and until when.
CREATE TABLE worker_turns (
    task  TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    until BIGINT NOT NULL
);
