-- Core: a fingerprinted plan's items (Test-ProdHealth) run grouped on the server (issue 16).
--
-- An item of a plan runs only if its locked before-image still has the fingerprint the plan recorded.
-- The client used to fetch the image and compare; now the item's first statement after the locks
-- compares on the server and raises if the rows changed, so the item rolls back before any step runs.

-- The fingerprint of an item's before-image, exactly as the client computes it (PlanFingerprint.Hash):
-- SHA-256, lower-case hex, of each capture table's name, a record separator (U+001E), then each row's
-- to_jsonb() text followed by a unit separator (U+001F), tables in capture order, rows in image order.
CREATE FUNCTION dataops.image_hash(tables text[], images jsonb[]) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
    SELECT encode(sha256(convert_to(coalesce(string_agg(
               t.name || chr(30) || coalesce((SELECT string_agg(r.value::text || chr(31), '' ORDER BY r.ordinality)
                                              FROM jsonb_array_elements(t.image) WITH ORDINALITY r), ''),
               '' ORDER BY t.n), ''), 'UTF8')), 'hex')
    FROM unnest(tables, images) WITH ORDINALITY AS t(name, image, n)
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
