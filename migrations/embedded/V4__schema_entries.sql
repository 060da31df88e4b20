-- The content-addressed store of canonical JSON Schemas (PostgreSQL's V6 in SQLite's types).

CREATE TABLE schema_entries (
    hash           TEXT PRIMARY KEY,
    canonical      TEXT NOT NULL,
    runtime_origin TEXT NOT NULL,
    created_at     INTEGER NOT NULL
) STRICT;

CREATE INDEX schema_entries_created_idx ON schema_entries (created_at);

ALTER TABLE agent_tools ADD COLUMN output_schema_hash TEXT;
