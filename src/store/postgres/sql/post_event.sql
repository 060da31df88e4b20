-- post_event: append an event to a live job. The seq comes from the job row's counter, bumped
-- in the same statement: concurrent posters queue on the row lock and every one of them gets the
-- next gap-free seq (the reference retries max(seq)+1 and can fail under contention).
-- Guard: the job is live (a finished job's log is closed; a miss is named from job_state).
-- $5 is the events notification channel: parked readers on every replica wake. $6 is the entity
-- that vouched for the poster's client certificate (NULL without one).
WITH bumped AS (
  UPDATE jobs SET event_seq = event_seq + 1
  WHERE job_id = $1 AND status IN ('working', 'input_required')
  RETURNING job_id, event_seq
)
INSERT INTO job_events (job_id, seq, type, payload, trace_context, posted_by)
SELECT job_id, event_seq, $2, $3, $4, $6 FROM bumped
RETURNING seq, created_at, pg_notify($5, job_id::text)::text
