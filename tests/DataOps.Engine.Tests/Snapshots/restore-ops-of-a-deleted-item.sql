Insert: INSERT INTO prism.sessions SELECT * FROM jsonb_populate_record(NULL::prism.sessions, @before::jsonb) ON CONFLICT DO NOTHING
Insert: INSERT INTO prism.profiles SELECT * FROM jsonb_populate_record(NULL::prism.profiles, @before::jsonb) ON CONFLICT DO NOTHING
