-- Access reviews. A campaign puts a list of items (who may ask for what, standing privilege in
-- targets, workload and agent identities) before reviewers, who keep or remove each by the
-- deadline; undecided items then take the default action and the campaign closes. `reviewers`
-- is the rule that chose each item's reviewer; `items` how many items it has.
CREATE TABLE campaigns (
    id             TEXT PRIMARY KEY,
    name           TEXT NOT NULL,
    scope          TEXT NOT NULL,
    reviewers      TEXT NOT NULL,
    default_action TEXT NOT NULL,
    state          TEXT NOT NULL,
    created_by     TEXT NOT NULL,
    created_at     BIGINT NOT NULL,
    deadline       BIGINT NOT NULL,
    remind_at      BIGINT,
    reminded       BOOLEAN NOT NULL,
    closed_at      BIGINT,
    items          BIGINT NOT NULL,
    version        BIGINT NOT NULL
);
CREATE INDEX campaigns_by_state ON campaigns (state, id);

-- One thing to keep or remove, its reviewer (`person:<name>`, `group:<name>` or
-- `administrators`) and the decision. A decision on standing privilege queues target work
-- (`work`, retried at `run_at`); the due-work index holds only what is pending.
CREATE TABLE campaign_items (
    id          TEXT PRIMARY KEY,
    campaign    TEXT NOT NULL REFERENCES campaigns (id),
    kind        TEXT NOT NULL,
    principal   TEXT,
    access      TEXT,
    target      TEXT,
    holder      TEXT,
    privilege   TEXT,
    reviewer    TEXT NOT NULL,
    decision    TEXT,
    decided_by  TEXT,
    decided_at  BIGINT,
    note        TEXT,
    work        TEXT NOT NULL,
    run_at      BIGINT,
    attempts    BIGINT NOT NULL,
    last_error  TEXT,
    version     BIGINT NOT NULL
);
CREATE INDEX campaign_items_by_campaign ON campaign_items (campaign, id);
CREATE INDEX campaign_items_by_reviewer ON campaign_items (campaign, reviewer, id);
CREATE INDEX campaign_items_due ON campaign_items (run_at, id) WHERE work = 'pending';

-- What reviews decided about who may ask for what, one entry per principal and entitlement or
-- profile (the latest decision replaces the one before), consulted at every request: `removed`
-- refuses whatever policy permits, `added` permits where no policy forbids.
CREATE TABLE eligibility (
    principal TEXT NOT NULL,
    access    TEXT NOT NULL,
    effect    TEXT NOT NULL,
    item      TEXT NOT NULL REFERENCES campaign_items (id),
    at        BIGINT NOT NULL,
    PRIMARY KEY (principal, access)
);
