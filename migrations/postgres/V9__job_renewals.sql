-- When the owner last renewed a job's claim without changing its state (a progress delta, an
-- executor read), kept apart from last_heartbeat_at, which only state changes write. The reason
-- is PostgreSQL's: last_heartbeat_at is the key of jobs_finished_idx, so a renewal that wrote it
-- could never be a HOT (in-place) update and added an entry to every index of jobs; renewed_at
-- is in no index. The wire's last_heartbeat_at is the later of the two
-- (domain::jobs::last_heartbeat). NULL until the first renewal, and cleared by the paths that put a
-- job back in the queue without a heartbeat.

ALTER TABLE jobs ADD COLUMN renewed_at timestamptz;
