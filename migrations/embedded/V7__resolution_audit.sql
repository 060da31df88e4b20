-- What the log holds of each consumer's dependency-resolution audit trail (PostgreSQL's V9; JSON
-- as TEXT).

ALTER TABLE agents ADD COLUMN resolution_audit TEXT NOT NULL DEFAULT '{}';
