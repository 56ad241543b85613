-- Core: one run per job, enforced by the database itself (issue 13).
--
-- Before this, a run held a session advisory lock on one idle connection. idle_session_timeout,
-- pg_terminate_backend or a proxy dropping idle connections lost it silently: a second run started
-- and both applied the same keys. A lock left on a pooled connection after a failure did the reverse
-- (a false "already running"). Now two things, each enough on its own to stop a double application:
--
-- 1. A lease per job: a row, so it belongs to no connection. The holder renews it (every 5 s, for
--    30 s); another run may take it over only when it expired, when its run is no longer 'running',
--    or when its process is provably gone (same host, that process id no longer alive: checked by the
--    client). Every item's transaction first locks the lease row FOR SHARE, and only if its own run
--    holds it (dataops.lease_lost raises otherwise): a takeover (an UPDATE of the row) waits for the
--    items in flight to commit, and every later item of the old run fails before it changes anything.
CREATE TABLE dataops.job_lease (
    job_name           text        PRIMARY KEY,
    run_id             uuid        NOT NULL REFERENCES dataops.run (run_id) ON DELETE CASCADE,
    host_name          text        NOT NULL,
    process_id         integer     NOT NULL,
    process_started_at timestamptz,
    acquired_at        timestamptz NOT NULL DEFAULT now(),
    renewed_at         timestamptz NOT NULL DEFAULT now(),
    expires_at         timestamptz NOT NULL
);

-- Called (only) when an item's run does not hold its job's lease: the item's transaction rolls back
-- with SQLSTATE DOL01, which the runner turns into BackfillLeaseLost and stops.
CREATE FUNCTION dataops.lease_lost(job text, run uuid) RETURNS boolean
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    holder dataops.job_lease;
BEGIN
    SELECT * INTO holder FROM dataops.job_lease l WHERE l.job_name = job;
    RAISE EXCEPTION 'run % no longer holds the lease of job %: %', run, job,
        CASE WHEN holder.run_id IS NULL THEN 'no run holds it'
             ELSE format('run %s (host %s, process %s) holds it since %s', holder.run_id, holder.host_name, holder.process_id, holder.acquired_at) END
        USING ERRCODE = 'DOL01', HINT = 'the item is rolled back; this run must stop';
END
$$;

-- 2. At most one live application per job and key, whatever the clients do. An application ends
--    when it is undone (undone_by: the 'undone' ledger row) or re-applied by a forced run
--    (superseded_by: that run, set in the re-application's own transaction before its ledger row).
ALTER TABLE dataops.ledger
    ADD COLUMN undone_by     bigint REFERENCES dataops.ledger (ledger_id) ON DELETE SET NULL,
    ADD COLUMN superseded_by uuid;

-- Every way of undoing (Undo-Backfill, the psql rollback script, including scripts written by
-- earlier versions and still on disk, or a hand-written INSERT) records an 'undone' row with
-- undo_of; the trigger closes the application it names. The WHEN clause keeps it off the
-- 'applied' inserts of a run (no PL/pgSQL call there).
CREATE FUNCTION dataops.ledger_close_undone() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    UPDATE dataops.ledger SET undone_by = NEW.ledger_id WHERE ledger_id = NEW.undo_of AND undone_by IS NULL;
    RETURN NULL;
END
$$;

CREATE TRIGGER ledger_close_undone AFTER INSERT ON dataops.ledger
    FOR EACH ROW WHEN (NEW.status = 'undone' AND NEW.undo_of IS NOT NULL)
    EXECUTE FUNCTION dataops.ledger_close_undone();

-- Existing ledgers: close undone applications, then, where a key still has several live
-- applications (forced re-runs, or the double applications this migration exists to prevent),
-- the latest stays live and the earlier ones are superseded by the latest one's run.
UPDATE dataops.ledger a SET undone_by = u.ledger_id
FROM (SELECT undo_of, min(ledger_id) AS ledger_id FROM dataops.ledger WHERE status = 'undone' AND undo_of IS NOT NULL GROUP BY undo_of) u
WHERE a.ledger_id = u.undo_of AND a.status = 'applied';

UPDATE dataops.ledger a SET superseded_by = live.latest_run
FROM (SELECT ledger_id,
             first_value(run_id) OVER w AS latest_run,
             row_number() OVER w AS n
      FROM dataops.ledger WHERE status = 'applied' AND undone_by IS NULL
      WINDOW w AS (PARTITION BY job_name, item_key ORDER BY ledger_id DESC)) live
WHERE a.ledger_id = live.ledger_id AND live.n > 1;

-- The guard. It also serves the runner's "which keys are applied" lookup.
CREATE UNIQUE INDEX ledger_applied_once ON dataops.ledger (job_name, item_key)
    WHERE status = 'applied' AND undone_by IS NULL AND superseded_by IS NULL;
