-- purge_finished_jobs: the sweep's row retention: terminal jobs that ended (last_heartbeat_at)
-- before :cutoff are deleted; the call deletes their events (delete_job_events.sql) in the same
-- transaction. Guard and why: the job is terminal, so a live job is never deleted whatever its age.
DELETE FROM jobs
WHERE status IN ('completed', 'failed', 'cancelled') AND last_heartbeat_at < :cutoff
RETURNING job_id
