-- Core: seed runs remember the id range they loaded, so only their rows are ever removed.
ALTER TABLE dataops.seed_run
    ADD COLUMN first_id        bigint,
    ADD COLUMN last_id         bigint,
    ADD COLUMN scheduled_count bigint,
    ADD COLUMN triggered_count bigint,
    ADD COLUMN removed_count   bigint,
    ADD COLUMN error_message   text;

ALTER TABLE dataops.seed_run DROP CONSTRAINT seed_run_status_check;
ALTER TABLE dataops.seed_run ADD CONSTRAINT seed_run_status_check
    CHECK (status IN ('running', 'completed', 'failed', 'cancelled', 'removed'));
CREATE INDEX idx_seed_run_target ON dataops.seed_run (target_table, status);
