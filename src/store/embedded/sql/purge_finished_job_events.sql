-- purge_finished_job_events: the sweep's event retention: the events of jobs that ended
-- (last_heartbeat_at) before :cutoff; the job rows stay. Guard and why: the job is terminal, so a
-- live job's log is never cut.
DELETE FROM job_events WHERE job_id IN (
  SELECT job_id FROM jobs
  WHERE status IN ('completed', 'failed', 'cancelled') AND last_heartbeat_at < :cutoff
)
