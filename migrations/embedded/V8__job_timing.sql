-- When a job was last claimed, and when it last went back to the queue (PostgreSQL's V10 in
-- SQLite's types: microseconds since the Unix epoch).

ALTER TABLE jobs ADD COLUMN claimed_at INTEGER;
ALTER TABLE jobs ADD COLUMN requeued_at INTEGER;
