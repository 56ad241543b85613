-- Core: a fingerprinted plan's items (Test-ProdHealth) run grouped on the server (issue 16).
--
-- An item of a plan runs only if its locked before-image still has the fingerprint the plan recorded.
-- The client used to fetch the image and compare; now the item's first statement after the locks
-- compares on the server and raises if the rows changed, so the item rolls back before any step runs.

-- The fingerprint of an item's before-image, exactly as the client computes it (PlanFingerprint.Hash):
-- SHA-256, lower-case hex, of each capture table's name, a record separator (U+001E), then each row's
-- to_jsonb() text followed by a unit separator (U+001F), tables in capture order, rows in image order.
-- PL/pgSQL, not SQL: a SQL function with an aggregate is not inlined, so it was parsed and planned on
-- every call (measured: a plan's items ran at 0.19 x pgbench with it); loops of simple expressions are not.
CREATE FUNCTION dataops.image_hash(tables text[], images jsonb[]) RETURNS text
LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
    acc text := '';
    i integer;
    j integer;
BEGIN
    FOR i IN 1 .. coalesce(array_length(tables, 1), 0) LOOP
        acc := acc || tables[i] || chr(30);
        FOR j IN 0 .. coalesce(jsonb_array_length(images[i]), 0) - 1 LOOP
            acc := acc || (images[i] -> j)::text || chr(31);
        END LOOP;
    END LOOP;
    RETURN encode(sha256(convert_to(acc, 'UTF8')), 'hex');
END
$$;

-- The stale gate: raises, so the item's transaction rolls back and the group stops at this item; the
-- client records the item as stale and goes on with the next one.
CREATE FUNCTION dataops.stale(item_key text) RETURNS boolean
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    RAISE EXCEPTION 'the item''s rows changed since the plan was made'
        USING ERRCODE = 'DOS01', DETAIL = format('DataOps backfill item %s', item_key), HINT = 'the item is rolled back';
END
$$;
