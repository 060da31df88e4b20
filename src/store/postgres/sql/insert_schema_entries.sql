-- insert_schema_entries: the canonical schemas a registration publishes ($1, a JSON array of
-- {"hash", "canonical"}), each stored once by its content hash; the first runtime to publish it
-- ($2) is kept as its origin.
INSERT INTO schema_entries (hash, canonical, runtime_origin)
SELECT e->>'hash', e->'canonical', $2
FROM jsonb_array_elements($1::jsonb) AS e
ON CONFLICT (hash) DO NOTHING
