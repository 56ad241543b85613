-- ScriptExecution: the script_execution schema in its V97 form (scheduled or event-triggered runs).
CREATE TABLE script_reference (
    id          bigserial PRIMARY KEY,
    name        text        NOT NULL UNIQUE,
    description text,
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE script_version (
    id                  bigserial PRIMARY KEY,
    script_reference_id bigint      NOT NULL REFERENCES script_reference (id),
    version             text        NOT NULL,
    content             text,
    created_at          timestamptz NOT NULL DEFAULT now(),
    UNIQUE (script_reference_id, version)
);

CREATE TABLE task_schedule (
    id                  bigserial PRIMARY KEY,
    script_reference_id bigint      NOT NULL REFERENCES script_reference (id),
    robot_id            bigint      NOT NULL,
    cron                text        NOT NULL,
    status              text        NOT NULL DEFAULT 'ACTIVE',
    created_at          timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE event_trigger (
    id                  bigserial PRIMARY KEY,
    script_reference_id bigint      NOT NULL REFERENCES script_reference (id),
    robot_id            bigint      NOT NULL,
    event_type          text        NOT NULL,
    created_at          timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE script_execution (
    id                  bigserial PRIMARY KEY,
    script_reference_id bigint      NOT NULL,
    script_version_id   bigint      NOT NULL,
    schedule_id         bigint,
    planned             timestamptz,
    triggering_event_id bigint,
    created_at          timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT fk_script_execution_script_reference FOREIGN KEY (script_reference_id) REFERENCES script_reference (id),
    CONSTRAINT fk_script_execution_script_version FOREIGN KEY (script_version_id) REFERENCES script_version (id),
    CONSTRAINT fk_script_execution_schedule FOREIGN KEY (schedule_id) REFERENCES task_schedule (id),
    CONSTRAINT fk_script_execution_triggering_event FOREIGN KEY (triggering_event_id) REFERENCES event_trigger (id),
    CONSTRAINT chk_execution_source CHECK (
        (schedule_id IS NOT NULL AND triggering_event_id IS NULL) OR
        (schedule_id IS NULL AND triggering_event_id IS NOT NULL))
);
-- Each source column is NULL in about half the rows; partial indexes serve the FK lookups at half the size.
CREATE INDEX idx_script_execution_schedule ON script_execution (schedule_id) WHERE schedule_id IS NOT NULL;
CREATE INDEX idx_script_execution_triggering_event ON script_execution (triggering_event_id) WHERE triggering_event_id IS NOT NULL;
CREATE INDEX idx_script_execution_created_at ON script_execution (created_at);
