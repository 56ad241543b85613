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

-- In an applied item's transaction: marks the item done if this member still holds its claim, else
-- raises DOL02 (the claim was taken over: the item rolls back; the member that took it runs it).
-- The row lock it takes makes a takeover's claim (FOR UPDATE SKIP LOCKED) pass the item by until
-- this transaction ends, and after COMMIT the item is done.
CREATE FUNCTION dataops.claim_done(run uuid, key text, member uuid) RETURNS boolean
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    UPDATE dataops.run_item SET done = true WHERE run_id = run AND item_key = key AND claimed_by = member AND NOT done;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'item % of run % is no longer claimed by this worker process (%)', key, run, member
            USING ERRCODE = 'DOL02', HINT = 'another worker took it over; the item is rolled back here';
    END IF;
    RETURN true;
END
$$;

-- The run-global rate limit: the time this caller waits before its item starts (0: at once), and the
-- next slot moved on by one item's share of a minute. Every worker of every process asks here, so
-- the run's items start at most per_minute a minute in all, whatever the number of workers. A new
-- rate (Set-BackfillThrottle) starts its slots from now: slots taken at a slow rate do not hold a
-- faster one back.
CREATE FUNCTION dataops.rate_slot(run uuid, per_minute integer) RETURNS double precision
LANGUAGE sql VOLATILE AS $$
    UPDATE dataops.run_queue
    SET rate_next_at = greatest(CASE WHEN rate_per_minute = per_minute THEN coalesce(rate_next_at, clock_timestamp()) ELSE clock_timestamp() END, clock_timestamp())
                       + make_interval(secs => 60.0 / per_minute),
        rate_per_minute = per_minute
    WHERE run_id = run
    RETURNING greatest(extract(epoch FROM rate_next_at - make_interval(secs => 60.0 / per_minute) - clock_timestamp()), 0)::double precision
$$;
