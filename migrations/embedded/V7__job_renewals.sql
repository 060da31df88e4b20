-- When the owner last renewed a job's claim without changing its state (PostgreSQL's V9, where
-- keeping renewals out of the indexed last_heartbeat_at lets them update the row in place; the
-- embedded store keeps the same model).

ALTER TABLE jobs ADD COLUMN renewed_at INTEGER;
