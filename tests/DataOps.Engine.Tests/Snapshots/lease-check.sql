SELECT CASE WHEN EXISTS (SELECT 1 FROM dataops.job_lease WHERE job_name = @dataops_job AND run_id = @dataops_run FOR SHARE) THEN true ELSE dataops.lease_lost(@dataops_job, @dataops_run) END
