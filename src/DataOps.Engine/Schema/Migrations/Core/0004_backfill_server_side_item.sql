-- Core: what lets a backfill item run, verify and record itself on the server in one round trip.

-- The verify gate: an item's ledger row is written only if verify returned true; anything else
-- raises, so the item's transaction rolls back and nothing of it is committed.
CREATE FUNCTION dataops.verified(ok boolean, item_key text) RETURNS boolean
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    IF ok IS NOT TRUE THEN
        RAISE EXCEPTION 'verify returned % instead of true', coalesce(ok::text, 'no row or NULL')
            USING ERRCODE = 'DOV01', DETAIL = format('DataOps backfill item %s', item_key), HINT = 'the item is rolled back';
    END IF;
    RETURN true;
END
$$;

-- How many rows an item changed: rows only in the before-image (deleted), only in the after-image
-- (inserted), or in both with different values (updated): the same count as the item's restore
-- operations. Images are {"table": [rows]}; keys is [["table", ["primary key column", ...]], ...].
-- Items touch few rows, so the rows are matched in loops of simple expressions (a set-based query
-- per call cost more than the rest of the item, measured); large images take the set-based path.
CREATE FUNCTION dataops.changed_rows(before jsonb, after jsonb, keys jsonb) RETURNS integer
LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
    t integer;
    name text;
    pk jsonb;
    b jsonb;
    a jsonb;
    i integer;
    j integer;
    c integer;
    same boolean;
    matched boolean[];
    n integer := 0;
BEGIN
    FOR t IN 0 .. jsonb_array_length(keys) - 1 LOOP
        name := keys -> t ->> 0;
        pk := keys -> t -> 1;
        b := coalesce(before -> name, '[]'::jsonb);
        a := coalesce(after -> name, '[]'::jsonb);
        IF jsonb_array_length(b) * jsonb_array_length(a) > 400 THEN
            n := n + (SELECT count(*)
                      FROM (SELECT r.value AS row_image, (SELECT jsonb_agg(r.value -> (k.value #>> '{}') ORDER BY k.ordinality) FROM jsonb_array_elements(pk) WITH ORDINALITY k) AS row_key FROM jsonb_array_elements(b) r) x
                      FULL JOIN (SELECT r.value AS row_image, (SELECT jsonb_agg(r.value -> (k.value #>> '{}') ORDER BY k.ordinality) FROM jsonb_array_elements(pk) WITH ORDINALITY k) AS row_key FROM jsonb_array_elements(a) r) y
                      ON x.row_key = y.row_key
                      WHERE x.row_image IS DISTINCT FROM y.row_image);
            CONTINUE;
        END IF;
        matched := array_fill(false, ARRAY[jsonb_array_length(a) + 1]);
        FOR i IN 0 .. jsonb_array_length(b) - 1 LOOP
            same := false;
            FOR j IN 0 .. jsonb_array_length(a) - 1 LOOP
                same := true;
                FOR c IN 0 .. jsonb_array_length(pk) - 1 LOOP
                    IF (b -> i -> (pk ->> c)) IS DISTINCT FROM (a -> j -> (pk ->> c)) THEN
                        same := false;
                        EXIT;
                    END IF;
                END LOOP;
                IF same THEN
                    matched[j + 1] := true;
                    IF (b -> i) <> (a -> j) THEN
                        n := n + 1;
                    END IF;
                    EXIT;
                END IF;
            END LOOP;
            IF NOT same THEN
                n := n + 1;
            END IF;
        END LOOP;
        FOR j IN 0 .. jsonb_array_length(a) - 1 LOOP
            IF NOT matched[j + 1] THEN
                n := n + 1;
            END IF;
        END LOOP;
    END LOOP;
    RETURN n;
END
$$;

-- idx_ledger_job_item_latest (job_name, item_key, ledger_id DESC) serves every lookup this one did.
DROP INDEX dataops.idx_ledger_job_item;
