-- Core: steering a live run from any session or machine (issue 17, item 4).
--
-- Suspend-Backfill, Resume-Backfill, Stop-Backfill and Set-BackfillThrottle write what they ask for
-- into the run's control row; the run reads it (one primary-key lookup every 500 ms from a connection
-- of its own, never a statement per item) and acts on it before its next item or group. The run
-- writes back what it is doing (state, state_reason, state_at) when that changes, and
-- Get-BackfillRun shows it for runs that still hold their job's lease.
CREATE TABLE dataops.run_control (
    run_id           uuid        PRIMARY KEY REFERENCES dataops.run (run_id) ON DELETE CASCADE,
    requested_state  text        NOT NULL DEFAULT 'running'
                     CHECK (requested_state IN ('running', 'suspended', 'stopping', 'aborting')),
    items_per_minute integer     CHECK (items_per_minute >= 0),
    requested_by     text,
    requested_at     timestamptz,
    state            text        NOT NULL DEFAULT 'running'
                     CHECK (state IN ('running', 'suspended', 'throttled', 'stopping', 'aborting')),
    state_reason     text,
    state_at         timestamptz NOT NULL DEFAULT now()
);

-- Every request, with who asked (the database role, and the operating-system user and host the
-- cmdlet ran as) and when: an audit trail that outlives the control row's latest values.
CREATE TABLE dataops.run_control_action (
    action_id bigserial   PRIMARY KEY,
    run_id    uuid        NOT NULL REFERENCES dataops.run (run_id) ON DELETE CASCADE,
    action    text        NOT NULL CHECK (action IN ('suspend', 'resume', 'stop', 'abort', 'throttle')),
    value     text,
    db_user   text        NOT NULL DEFAULT current_user,
    os_user   text,
    host_name text,
    at        timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX idx_run_control_action_run ON dataops.run_control_action (run_id, action_id);
