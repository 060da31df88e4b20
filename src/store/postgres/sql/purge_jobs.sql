-- purge_jobs: opt-in retention of job rows: terminal jobs that finished more than $1 seconds
-- ago, with their events.
WITH purged AS (
  DELETE FROM jobs
  WHERE status IN ('completed', 'failed', 'cancelled')
    AND last_heartbeat_at < now() - make_interval(secs => $1)
  RETURNING job_id
), purged_events AS (
  DELETE FROM job_events WHERE job_id IN (SELECT job_id FROM purged)
)
SELECT job_id FROM purged
