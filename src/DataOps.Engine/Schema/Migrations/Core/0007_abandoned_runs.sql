-- Core: a run whose process or server went away before it recorded an outcome is 'abandoned' (issue 14).
--
-- Backfill, dry-run and undo runs hold the job's lease (Core/0005); a run still 'running' whose
-- lease is gone is abandoned, and the next run of the job records it so, with why. Seed runs hold
-- no lease: the session that loads the rows records its backend pid and start time, and a 'running'
-- seed run whose session no longer exists (a server restart, a killed client) is abandoned; its
-- rows went with its transaction.
ALTER TABLE dataops.run DROP CONSTRAINT run_status_check;
ALTER TABLE dataops.run ADD CONSTRAINT run_status_check
    CHECK (status IN ('running', 'completed', 'failed', 'stopped', 'abandoned'));

ALTER TABLE dataops.seed_run DROP CONSTRAINT seed_run_status_check;
ALTER TABLE dataops.seed_run ADD CONSTRAINT seed_run_status_check
    CHECK (status IN ('running', 'completed', 'failed', 'cancelled', 'removed', 'abandoned'));
ALTER TABLE dataops.seed_run
    ADD COLUMN backend_pid   integer,
    ADD COLUMN backend_start timestamptz;
