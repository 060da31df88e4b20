-- applied_migrations: the migrations refinery recorded as applied to this file, oldest first. The
-- table is refinery's own (model.rs HISTORY_TABLE; a unit test keeps the two in step).
SELECT version, name FROM refinery_schema_history ORDER BY version
