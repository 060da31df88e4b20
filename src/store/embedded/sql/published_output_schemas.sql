-- published_output_schemas: the canonical output schema of every tool that published one, by
-- hash (the schema stage of resolution compares a consumer's expectation with them).
SELECT hash, canonical, runtime_origin, created_at
FROM schema_entries
WHERE hash IN (SELECT output_schema_hash FROM agent_tools WHERE output_schema_hash IS NOT NULL)
