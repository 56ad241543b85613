-- Core: the module's own bookkeeping (runs, per-item ledger, seed runs).
CREATE SCHEMA IF NOT EXISTS dataops;

CREATE TABLE dataops.run (
    run_id       uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    kind         text        NOT NULL,
    job_name     text,
    status       text        NOT NULL DEFAULT 'running'
                 CHECK (status IN ('running', 'completed', 'failed', 'stopped')),
    started_at   timestamptz NOT NULL DEFAULT now(),
    finished_at  timestamptz,
    host_name    text,
    user_name    text,
    parameters   jsonb,
    summary      jsonb
);
CREATE INDEX idx_run_kind_started ON dataops.run (kind, started_at DESC);

CREATE TABLE dataops.ledger (
    ledger_id      bigserial PRIMARY KEY,
    run_id         uuid        NOT NULL REFERENCES dataops.run (run_id) ON DELETE CASCADE,
    job_name       text        NOT NULL,
    item_key       text        NOT NULL,
    status         text        NOT NULL,
    before_image   jsonb,
    after_image    jsonb,
    error_category text,
    error_message  text,
    started_at     timestamptz NOT NULL DEFAULT now(),
    finished_at    timestamptz,
    duration_ms    integer
);
CREATE INDEX idx_ledger_job_item ON dataops.ledger (job_name, item_key);
CREATE INDEX idx_ledger_run ON dataops.ledger (run_id);

CREATE TABLE dataops.seed_run (
    seed_run_id     bigserial PRIMARY KEY,
    target_table    text        NOT NULL,
    seed            integer,
    requested_count bigint      NOT NULL,
    inserted_count  bigint,
    parameters      jsonb,
    status          text        NOT NULL DEFAULT 'running'
                    CHECK (status IN ('running', 'completed', 'failed', 'removed')),
    started_at      timestamptz NOT NULL DEFAULT now(),
    finished_at     timestamptz
);
