-- WorkflowExecution: users, workflows and the executions a Temporal-backed workflow builder records.
CREATE TABLE users (
    id         text PRIMARY KEY,
    email      text UNIQUE,
    name       text,
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE workflows (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    name        text        NOT NULL,
    description text,
    definition  jsonb,
    created_by  text REFERENCES users (id) ON DELETE CASCADE,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE workflow_executions (
    id                   uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    workflow_id          uuid        NOT NULL REFERENCES workflows (id) ON DELETE CASCADE,
    temporal_workflow_id text        NOT NULL,
    temporal_run_id      text        NOT NULL,
    status               text        NOT NULL DEFAULT 'running'
                         CHECK (status IN ('running', 'completed', 'failed', 'cancelled', 'timed_out')),
    started_at           timestamptz NOT NULL DEFAULT now(),
    completed_at         timestamptz,
    duration_ms          bigint CHECK (duration_ms IS NULL OR duration_ms >= 0),
    input                jsonb,
    output               jsonb,
    error_message        text,
    activities_executed  integer     NOT NULL DEFAULT 0 CHECK (activities_executed >= 0),
    created_by           text REFERENCES users (id) ON DELETE CASCADE
);
CREATE INDEX idx_workflow_executions_created_by ON workflow_executions (created_by);
-- Covering: per-user statistics (counts by status, durations) are answered from the index alone.
CREATE INDEX idx_workflow_executions_user_status ON workflow_executions (created_by, status) INCLUDE (duration_ms);
CREATE INDEX idx_workflow_executions_temporal_workflow_id ON workflow_executions (temporal_workflow_id);
CREATE INDEX idx_workflow_executions_workflow_started ON workflow_executions (workflow_id, started_at DESC);
CREATE INDEX idx_workflow_executions_started ON workflow_executions (started_at DESC);
