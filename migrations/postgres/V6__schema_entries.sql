-- The content-addressed store of canonical JSON Schemas that agents publish with their tools
-- (inputSchemaHash/outputSchemaHash and their canonical forms): GET /schemas reads it, and a
-- dependency that asks for a compatible output schema (matchMode) is matched against it.

CREATE TABLE schema_entries (
    hash           text PRIMARY KEY,
    canonical      jsonb NOT NULL,
    -- The runtime that first published it (python, typescript, java or unknown).
    runtime_origin text NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX schema_entries_created_idx ON schema_entries (created_at);

-- The hash of the tool's published output schema, when it published one with its canonical form.
ALTER TABLE agent_tools ADD COLUMN output_schema_hash text;
