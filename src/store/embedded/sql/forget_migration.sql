-- forget_migration: `migrate prune` drops the record of a migration this binary does not know (one
-- applied by a newer binary, whose schema pieces prune drops too). The table is refinery's own
-- (model.rs HISTORY_TABLE; a unit test keeps the two in step).
DELETE FROM refinery_schema_history WHERE version = :version
