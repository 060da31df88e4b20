-- insert_schema_entry: a canonical schema a registration publishes, stored once by its content
-- hash; the first runtime to publish it is kept as its origin.
INSERT INTO schema_entries (hash, canonical, runtime_origin, created_at)
VALUES (:hash, :canonical, :runtime_origin, :now)
ON CONFLICT (hash) DO NOTHING
