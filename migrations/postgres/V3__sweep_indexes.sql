-- Indexes the safety sweep reads through, so it stays cheap however many finished jobs the
-- table keeps.

-- total_deadline expiry (T10): live jobs that have a deadline.
CREATE INDEX jobs_live_deadline_idx ON jobs (total_deadline)
    WHERE total_deadline IS NOT NULL AND status IN ('working', 'input_required');

-- Stale expiry (T11): live jobs by age.
CREATE INDEX jobs_live_submitted_idx ON jobs (submitted_at)
    WHERE status IN ('working', 'input_required');

-- Terminal job-row retention: finished jobs by the time they finished.
CREATE INDEX jobs_finished_idx ON jobs (last_heartbeat_at)
    WHERE status IN ('completed', 'failed', 'cancelled');
