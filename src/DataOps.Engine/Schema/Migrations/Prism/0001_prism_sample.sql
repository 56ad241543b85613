-- Prism: a sample application schema for the backfill demo (scoring sessions and their profiles).
CREATE SCHEMA IF NOT EXISTS prism;

CREATE TABLE prism.sessions (
    id           uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id      text        NOT NULL,
    status       text        NOT NULL DEFAULT 'started'
                 CHECK (status IN ('started', 'completed', 'abandoned')),
    fc_kind      text        NOT NULL DEFAULT 'functions'
                 CHECK (fc_kind IN ('functions', 'legacy')),
    created_at   timestamptz NOT NULL DEFAULT now(),
    completed_at timestamptz
);
CREATE INDEX idx_prism_sessions_status ON prism.sessions (status, completed_at);

CREATE TABLE prism.profiles (
    id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    session_id      uuid        NOT NULL UNIQUE REFERENCES prism.sessions (id) ON DELETE CASCADE,
    results_version text,
    scores          jsonb,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE prism.telemetry_events (
    id         bigserial PRIMARY KEY,
    session_id uuid REFERENCES prism.sessions (id) ON DELETE CASCADE,
    event_type text        NOT NULL,
    payload    jsonb,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX idx_prism_telemetry_type_time ON prism.telemetry_events (event_type, created_at);

CREATE TABLE prism.result_access (
    id          bigserial PRIMARY KEY,
    session_id  uuid        NOT NULL REFERENCES prism.sessions (id) ON DELETE CASCADE,
    token_hash  text        NOT NULL,
    succeeded   boolean     NOT NULL,
    status_code integer     NOT NULL,
    accessed_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX idx_prism_result_access_time ON prism.result_access (accessed_at);
