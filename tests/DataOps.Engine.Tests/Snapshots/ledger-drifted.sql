INSERT INTO dataops.ledger (run_id, job_name, item_key, status, error_category, error_message, finished_at) VALUES (@undoRun, @job, @key, 'drifted', 'Drift', @message, now())
