coalesce((SELECT jsonb_agg(to_jsonb(r.*) ORDER BY r."id") FROM (SELECT * FROM prism.sessions WHERE (id = @key::uuid) ORDER BY "id" FOR UPDATE) r), '[]'::jsonb)::text
