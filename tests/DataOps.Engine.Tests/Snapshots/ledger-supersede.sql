UPDATE dataops.ledger SET superseded_by = @dataops_run WHERE job_name = @dataops_job AND item_key = @key AND status = 'applied' AND undone_by IS NULL AND superseded_by IS NULL
