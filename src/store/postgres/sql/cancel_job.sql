-- cancel_job: cancel a live job (docs/state-machine.md#cancel) and append its synthetic
-- `cancelled` event in ONE statement, so the event a parked producer waits for can never be lost
-- between the two; the event's seq comes from the row's counter, bumped here. Owner and lease are
-- kept (the reference keeps them: the owner is who the cancel is forwarded to). $2 replaces the
-- error when given.
-- Guard: the job is live (a terminal job is absorbing; a miss is named from job_state).
-- $4 is the events notification channel: parked readers on every replica wake.
-- ran_seconds: how long the cancelled claim had run (GET /metrics); NULL when no one held it,
-- or the claim predates claimed_at.
WITH cancelled AS (
  UPDATE jobs SET status = 'cancelled',
                  error = coalesce($2::text, error),
                  last_heartbeat_at = now(),
                  event_seq = event_seq + 1
  WHERE job_id = $1 AND status IN ('working', 'input_required')
  RETURNING job_id, owner_instance_id, event_seq,
            CASE WHEN owner_instance_id IS NOT NULL
                 THEN extract(epoch FROM now() - claimed_at)::float8 END AS ran_seconds
), synthetic_event AS (
  INSERT INTO job_events (job_id, seq, type, payload)
  SELECT job_id, event_seq, 'cancelled', $3::json FROM cancelled
)
SELECT owner_instance_id, ran_seconds, pg_notify($4, job_id::text)::text FROM cancelled
