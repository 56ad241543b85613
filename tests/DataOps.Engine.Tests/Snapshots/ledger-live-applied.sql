SELECT l.ledger_id, l.item_key, coalesce(l.before_image, '{}')::text, coalesce(l.after_image, '{}')::text FROM dataops.ledger l
WHERE l.run_id = @runId AND l.status = 'applied' AND NOT EXISTS (SELECT 1 FROM dataops.ledger u WHERE u.undo_of = l.ledger_id)
ORDER BY l.ledger_id
