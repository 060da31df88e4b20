-- cancel_job: cancel a live job (docs/state-machine.md#cancel) and take the seq of its synthetic
-- `cancelled` event from the row's counter; the call appends the event (append_event.sql) in the
-- same transaction, so the event a parked producer waits for commits with the cancellation or not
-- at all. Owner and lease are kept (the owner is who the cancel is forwarded to). :error replaces
-- the error when given (domain::jobs::cancel_error).
--
-- Guard and why: the job is live; a terminal job is absorbing. On a miss the call reads
-- job_state.sql to tell "not found" from "already terminal".
-- ran_micros: how long the cancelled claim had run (GET /metrics); NULL when no one held it, or
-- the claim predates claimed_at.
UPDATE jobs SET status = 'cancelled',
                error = coalesce(:error, error),
                last_heartbeat_at = :now,
                event_seq = event_seq + 1
WHERE job_id = :job_id AND status IN ('working', 'input_required')
RETURNING owner_instance_id, event_seq,
          CASE WHEN owner_instance_id IS NOT NULL THEN :now - claimed_at END AS ran_micros
