-- Core: what the backfill runner and Undo-Backfill record per item.
ALTER TABLE dataops.ledger
    ADD COLUMN rows_changed integer,
    ADD COLUMN attempts     integer,
    ADD COLUMN undo_of      bigint REFERENCES dataops.ledger (ledger_id);

-- The latest ledger row of an item decides whether it is applied (re-runs skip it).
CREATE INDEX idx_ledger_job_item_latest ON dataops.ledger (job_name, item_key, ledger_id DESC);

ALTER TABLE dataops.run ADD COLUMN output_directory text;
