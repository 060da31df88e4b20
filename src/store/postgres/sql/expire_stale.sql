-- expire_stale: fail the stale jobs found ($1, with their reasons $2) and append one `stale`
-- event to each, in one statement, announcing each on channel $3.
-- Guard and why: still live and still without a deadline, so a job that finished (or was given
-- a deadline) since it was found is left alone.
WITH staled AS (
  UPDATE jobs SET status = 'failed', error = stale.reason,
                  owner_instance_id = NULL, lease_expires_at = NULL,
                  last_heartbeat_at = now(), event_seq = event_seq + 1
  FROM unnest($1::uuid[], $2::text[]) AS stale(job_id, reason)
  WHERE jobs.job_id = stale.job_id AND jobs.total_deadline IS NULL
    AND jobs.status IN ('working', 'input_required')
  RETURNING jobs.job_id, jobs.event_seq, stale.reason
)
INSERT INTO job_events (job_id, seq, type, payload)
SELECT job_id, event_seq, 'stale', json_build_object('reason', 'stale', 'detail', reason)
FROM staled
RETURNING job_id, pg_notify($3, job_id::text)::text
