-- Indexes the safety sweep reads through (PostgreSQL's V3).

CREATE INDEX jobs_live_deadline_idx ON jobs (total_deadline)
    WHERE total_deadline IS NOT NULL AND status IN ('working', 'input_required');

CREATE INDEX jobs_live_submitted_idx ON jobs (submitted_at)
    WHERE status IN ('working', 'input_required');

CREATE INDEX jobs_finished_idx ON jobs (last_heartbeat_at)
    WHERE status IN ('completed', 'failed', 'cancelled');
