INSERT INTO dataops.ledger (run_id, job_name, item_key, status, undo_of, rows_changed, finished_at, duration_ms) VALUES (@undoRun, @job, @key, 'undone', @ledgerId, @rows, now(), @ms)
