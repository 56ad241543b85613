INSERT INTO dataops.ledger (run_id, job_name, item_key, status, before_image, after_image, rows_changed, attempts, started_at, finished_at, duration_ms)
SELECT @dataops_run, @dataops_job, @key, 'applied', @before::jsonb, @after::jsonb, @rows, @attempts, clock_timestamp() - make_interval(secs => @seconds), clock_timestamp(), @ms
WHERE CASE WHEN EXISTS (SELECT 1 FROM dataops.job_lease WHERE job_name = @dataops_job AND run_id = @dataops_run FOR SHARE) THEN true ELSE dataops.lease_lost(@dataops_job, @dataops_run) END
