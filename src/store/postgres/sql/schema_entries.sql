-- schema_entries: the most recently published canonical schemas, newest first (GET /schemas).
SELECT hash, canonical, runtime_origin, created_at
FROM schema_entries
ORDER BY created_at DESC, hash
LIMIT $1
