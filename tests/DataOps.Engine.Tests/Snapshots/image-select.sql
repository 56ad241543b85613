coalesce((SELECT jsonb_agg(to_jsonb(r.*) ORDER BY r."tenant", r."id") FROM (SELECT * FROM prism.profiles WHERE (session_id = @key::uuid) ORDER BY "tenant", "id") r), '[]'::jsonb)::text
