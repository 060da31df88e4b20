-- purge_events: retention: the events of jobs that finished more than $1 seconds ago.
DELETE FROM job_events USING jobs
WHERE job_events.job_id = jobs.job_id
  AND jobs.status IN ('completed', 'failed', 'cancelled')
  AND jobs.last_heartbeat_at < now() - make_interval(secs => $1)
