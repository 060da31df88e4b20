-- history_table_exists: whether refinery's migration history table (:table) exists yet; a file no
-- registry has migrated has none.
SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = :table
