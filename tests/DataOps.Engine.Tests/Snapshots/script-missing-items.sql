  SELECT count(*) INTO missing FROM dataops.ledger l
  WHERE l.run_id = '6f1c2a4e-0d7b-4c1e-9a55-3b2f4c6d7e8f' AND l.status = 'applied' AND NOT EXISTS (SELECT 1 FROM dataops.ledger u WHERE u.undo_of = l.ledger_id)
    AND NOT EXISTS (SELECT 1 FROM pg_temp.dataops_rollback r WHERE r.item_key = l.item_key);
