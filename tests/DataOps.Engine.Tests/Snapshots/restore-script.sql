-- item "a1": delete prism.profiles (tenant=1, id=8)
DO $dataops$ BEGIN
  DELETE FROM prism.profiles WHERE ("tenant", "id") = (SELECT "tenant", "id" FROM jsonb_populate_record(NULL::prism.profiles, '{"tenant": 1, "id": 8, "results_version": "v1.2.1"}'::jsonb)) AND to_jsonb("profiles".*) = '{"tenant": 1, "id": 8, "results_version": "v1.2.1"}'::jsonb;
  IF NOT FOUND THEN RAISE EXCEPTION 'DataOps rollback of run 6f1c2a4e-0d7b-4c1e-9a55-3b2f4c6d7e8f stopped: % (item %) changed since the backfill (it no longer equals the after-image); nothing was restored', 'prism.profiles (tenant=1, id=8)', 'a1'; END IF;
  PERFORM 1 FROM prism.profiles WHERE ("tenant", "id") = (SELECT "tenant", "id" FROM jsonb_populate_record(NULL::prism.profiles, '{"tenant": 1, "id": 8, "results_version": "v1.2.1"}'::jsonb)); IF FOUND THEN RAISE EXCEPTION 'DataOps rollback check failed: % still exists', 'prism.profiles (tenant=1, id=8)'; END IF;
END $dataops$;
-- item "a1": update prism.sessions (id="a1")
DO $dataops$ BEGIN
  UPDATE prism.sessions SET ("id", "fc_kind", "note") = (SELECT "id", "fc_kind", "note" FROM jsonb_populate_record(NULL::prism.sessions, '{"id": "a1", "fc_kind": "legacy", "note": "it''s"}'::jsonb)) WHERE ("id") = (SELECT "id" FROM jsonb_populate_record(NULL::prism.sessions, '{"id": "a1", "fc_kind": "legacy", "note": "it''s"}'::jsonb)) AND to_jsonb("sessions".*) = '{"id": "a1", "fc_kind": "functions", "note": "it''s"}'::jsonb;
  IF NOT FOUND THEN RAISE EXCEPTION 'DataOps rollback of run 6f1c2a4e-0d7b-4c1e-9a55-3b2f4c6d7e8f stopped: % (item %) changed since the backfill (it no longer equals the after-image); nothing was restored', 'prism.sessions (id="a1")', 'a1'; END IF;
  PERFORM 1 FROM prism.sessions WHERE ("id") = (SELECT "id" FROM jsonb_populate_record(NULL::prism.sessions, '{"id": "a1", "fc_kind": "legacy", "note": "it''s"}'::jsonb)) AND to_jsonb("sessions".*) = '{"id": "a1", "fc_kind": "legacy", "note": "it''s"}'::jsonb; IF NOT FOUND THEN RAISE EXCEPTION 'DataOps rollback check failed: % does not equal its before-image', 'prism.sessions (id="a1")'; END IF;
END $dataops$;
-- item "a1": update prism.profiles (tenant=1, id=7)
DO $dataops$ BEGIN
  UPDATE prism.profiles SET ("tenant", "id", "results_version") = (SELECT "tenant", "id", "results_version" FROM jsonb_populate_record(NULL::prism.profiles, '{"tenant": 1, "id": 7, "results_version": "v1.2.0"}'::jsonb)) WHERE ("tenant", "id") = (SELECT "tenant", "id" FROM jsonb_populate_record(NULL::prism.profiles, '{"tenant": 1, "id": 7, "results_version": "v1.2.0"}'::jsonb)) AND to_jsonb("profiles".*) = '{"tenant": 1, "id": 7, "results_version": "v1.2.1"}'::jsonb;
  IF NOT FOUND THEN RAISE EXCEPTION 'DataOps rollback of run 6f1c2a4e-0d7b-4c1e-9a55-3b2f4c6d7e8f stopped: % (item %) changed since the backfill (it no longer equals the after-image); nothing was restored', 'prism.profiles (tenant=1, id=7)', 'a1'; END IF;
  PERFORM 1 FROM prism.profiles WHERE ("tenant", "id") = (SELECT "tenant", "id" FROM jsonb_populate_record(NULL::prism.profiles, '{"tenant": 1, "id": 7, "results_version": "v1.2.0"}'::jsonb)) AND to_jsonb("profiles".*) = '{"tenant": 1, "id": 7, "results_version": "v1.2.0"}'::jsonb; IF NOT FOUND THEN RAISE EXCEPTION 'DataOps rollback check failed: % does not equal its before-image', 'prism.profiles (tenant=1, id=7)'; END IF;
END $dataops$;
