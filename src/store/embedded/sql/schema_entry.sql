-- schema_entry: one canonical schema by its content hash (GET /schemas/{hash}).
SELECT hash, canonical, runtime_origin, created_at
FROM schema_entries
WHERE hash = :hash
