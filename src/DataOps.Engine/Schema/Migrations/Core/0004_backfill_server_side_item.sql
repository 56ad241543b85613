-- Core: what lets a backfill item run, verify and record itself on the server in one round trip.

-- The verify gate: an item's ledger row is written only if verify returned true; anything else
-- raises, so the item's transaction rolls back and nothing of it is committed.
CREATE FUNCTION dataops.verified(ok boolean, item_key text) RETURNS boolean
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    IF ok IS NOT TRUE THEN
        RAISE EXCEPTION 'DataOps verify returned % for item %', coalesce(ok::text, 'no row or NULL'), item_key
            USING ERRCODE = 'DOV01', HINT = 'the item is rolled back';
    END IF;
    RETURN true;
END
$$;

-- How many rows an item changed: rows only in the before-image (deleted), only in the after-image
-- (inserted), or in both with different values (updated). Images are {"table": [rows]}; keys is
-- {"table": ["primary key column", ...]}. The same count as the restore operations of the item.
CREATE FUNCTION dataops.changed_rows(before jsonb, after jsonb, keys jsonb) RETURNS integer
LANGUAGE sql IMMUTABLE AS $$
    SELECT coalesce(sum((
        SELECT count(*)
        FROM (SELECT r.value AS row_image,
                     (SELECT jsonb_agg(r.value -> (k.value #>> '{}') ORDER BY k.ordinality) FROM jsonb_array_elements(t.pk) WITH ORDINALITY k) AS row_key
              FROM jsonb_array_elements(coalesce(before -> t.name, '[]'::jsonb)) r) b
        FULL JOIN
             (SELECT r.value AS row_image,
                     (SELECT jsonb_agg(r.value -> (k.value #>> '{}') ORDER BY k.ordinality) FROM jsonb_array_elements(t.pk) WITH ORDINALITY k) AS row_key
              FROM jsonb_array_elements(coalesce(after -> t.name, '[]'::jsonb)) r) a
        ON a.row_key = b.row_key
        WHERE b.row_image IS DISTINCT FROM a.row_image)), 0)::integer
    FROM jsonb_each(keys) AS t(name, pk)
$$;

-- idx_ledger_job_item_latest (job_name, item_key, ledger_id DESC) serves every lookup this one did.
DROP INDEX dataops.idx_ledger_job_item;
