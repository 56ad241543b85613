-- Core: several workers on one run (issue 18, item 2).
--
-- Invoke-Backfill -Workers N publishes the run's items as a queue; its own N workers and any process
-- that joins (Invoke-Backfill -RunId ID -Join) claim them from here with FOR UPDATE SKIP LOCKED.
-- PostgreSQL is the coordinator: nothing is shared between the processes but these rows.
--
-- The run's queue: a run with a row here can be joined. rate_next_at is the run-global rate limit
-- (GCRA: the earliest time the next item may start), advanced by every worker of every process at
-- rate_per_minute. closed_at: the starting process stopped the run (Stop-Backfill, -MaxFailures, an
-- error, Ctrl+C); no worker claims another item, and the others finish the items they hold.
CREATE TABLE dataops.run_queue (
    run_id          uuid        PRIMARY KEY REFERENCES dataops.run (run_id) ON DELETE CASCADE,
    items           integer     NOT NULL,
    job_sha256      text        NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    base_per_minute integer     CHECK (base_per_minute >= 0),
    rate_next_at    timestamptz,
    rate_per_minute integer,
    closed_at       timestamptz
);

-- The processes working on a run, each with a lease renewed by its heartbeat. An item claimed by a
-- member whose lease expired (its process died or lost the database) is claimed again by another.
CREATE TABLE dataops.run_member (
    run_id             uuid        NOT NULL REFERENCES dataops.run (run_id) ON DELETE CASCADE,
    member_id          uuid        NOT NULL,
    host_name          text        NOT NULL,
    process_id         integer     NOT NULL,
    process_started_at timestamptz,
    workers            integer     NOT NULL CHECK (workers > 0),
    coordinator        boolean     NOT NULL DEFAULT false,
    joined_at          timestamptz NOT NULL DEFAULT now(),
    renewed_at         timestamptz NOT NULL DEFAULT now(),
    expires_at         timestamptz NOT NULL,
    left_at            timestamptz,
    PRIMARY KEY (run_id, member_id)
);

-- The run's items in the order they are taken. done is set in the item's own transaction (applied)
-- or right after it (failed, stale, dry run), by the member that holds the claim.
CREATE TABLE dataops.run_item (
    run_id     uuid        NOT NULL REFERENCES dataops.run_queue (run_id) ON DELETE CASCADE,
    ordinal    integer     NOT NULL,
    item_key   text        NOT NULL,
    claimed_by uuid,
    claimed_at timestamptz,
    claims     integer     NOT NULL DEFAULT 0,
    done       boolean     NOT NULL DEFAULT false,
    PRIMARY KEY (run_id, ordinal),
    UNIQUE (run_id, item_key)
);
CREATE INDEX run_item_open ON dataops.run_item (run_id, ordinal) WHERE NOT done;

-- In an applied item's transaction: marks the item done if this member still holds its claim and the
-- queue is open, else raises DOL02 (the claim was taken over: the member that took it runs it; or the
-- starting process closed the run: the item must not commit after the run's files were written). The
-- item then rolls back. The row lock it takes makes a takeover's claim (FOR UPDATE SKIP LOCKED) pass
-- the item by until this transaction ends, and after COMMIT the item is done.
CREATE FUNCTION dataops.claim_done(run uuid, key text, member uuid) RETURNS boolean
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    UPDATE dataops.run_item SET done = true
    WHERE run_id = run AND item_key = key AND claimed_by = member AND NOT done
      AND (SELECT q.closed_at FROM dataops.run_queue q WHERE q.run_id = run) IS NULL;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'item % of run % is no longer claimed by this worker process (%), or the run was closed', key, run, member
            USING ERRCODE = 'DOL02', HINT = 'another worker took it over, or the process that started the run stopped it; the item is rolled back here';
    END IF;
    RETURN true;
END
$$;

-- The run-global rate limit: the time this caller waits before its item starts (0: at once), and the
-- next slot moved on by one item's share of a minute. Every worker of every process asks here, so
-- the run's items start at most that many a minute in all, whatever the number of workers. The rate is
-- the database's, not the caller's: Set-BackfillThrottle's (run_control.items_per_minute), else the
-- run's own (base_per_minute), else the caller's; processes that have not yet read a new rate cannot
-- pull the slots apart. A new rate starts its slots from now: slots taken at a slow rate do not hold a
-- faster one back.
CREATE FUNCTION dataops.rate_slot(run uuid, fallback integer) RETURNS double precision
LANGUAGE sql VOLATILE AS $$
    WITH r AS (
        SELECT coalesce((SELECT c.items_per_minute FROM dataops.run_control c WHERE c.run_id = run), q.base_per_minute, fallback) AS per_minute
        FROM dataops.run_queue q WHERE q.run_id = run)
    UPDATE dataops.run_queue q
    SET rate_next_at = greatest(CASE WHEN q.rate_per_minute = r.per_minute THEN coalesce(q.rate_next_at, clock_timestamp()) ELSE clock_timestamp() END, clock_timestamp())
                       + make_interval(secs => 60.0 / r.per_minute),
        rate_per_minute = r.per_minute
    FROM r
    WHERE q.run_id = run AND r.per_minute > 0
    RETURNING greatest(extract(epoch FROM q.rate_next_at - make_interval(secs => 60.0 / r.per_minute) - clock_timestamp()), 0)::double precision
$$;
