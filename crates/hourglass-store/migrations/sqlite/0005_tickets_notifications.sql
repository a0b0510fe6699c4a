-- Ticket binding: what the ticket source said at request time (JSON, for re-checks), and an
-- index to find everything bound to a ticket when it closes.
ALTER TABLE requests ADD COLUMN ticket_facts TEXT;
CREATE INDEX requests_by_ticket ON requests (ticket) WHERE ticket IS NOT NULL;

-- The last state a webhook-only ticket source reported for each ticket.
CREATE TABLE tickets (
    source     TEXT NOT NULL,
    reference  TEXT NOT NULL,
    ticket     TEXT NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (source, reference)
) STRICT;

-- The notification outbox: written in the commit of the event, delivered by a worker under a
-- lease. One row per notifier and event (dedup_key); sent and dropped rows are kept a week so
-- that a repeat of the event is recognised.
CREATE TABLE notifications (
    id          TEXT PRIMARY KEY,
    notifier    TEXT NOT NULL,
    dedup_key   TEXT NOT NULL,
    event       TEXT NOT NULL,
    subject     TEXT,
    message     TEXT NOT NULL,
    state       TEXT NOT NULL,
    run_at      INTEGER NOT NULL,
    due_at      INTEGER NOT NULL,
    attempts    INTEGER NOT NULL,
    last_error  TEXT,
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL,
    lease_owner TEXT,
    lease_token TEXT,
    lease_until INTEGER,
    UNIQUE (notifier, dedup_key)
) STRICT;
CREATE INDEX notifications_due ON notifications (due_at) WHERE state = 'pending';
CREATE INDEX notifications_settled ON notifications (updated_at) WHERE state IN ('sent', 'dropped');
CREATE INDEX notifications_by_subject ON notifications (subject);
