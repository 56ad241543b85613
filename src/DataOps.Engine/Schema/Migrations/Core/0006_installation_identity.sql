-- Core: this database's own identity, made when Core is installed. The cluster's system identifier
-- and the database name do not tell apart two sandboxes copied from one initdb, nor a cluster and
-- a physical copy of it made before the install: a mini plan from one would run on the other.
-- A database copied after the install (CREATE DATABASE ... TEMPLATE, a restored dump) keeps the
-- row, and is told apart by its name or its cluster.
CREATE TABLE dataops.installation (
    singleton       boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    installation_id uuid NOT NULL DEFAULT gen_random_uuid(),
    installed_at    timestamptz NOT NULL DEFAULT now()
);
INSERT INTO dataops.installation DEFAULT VALUES;
