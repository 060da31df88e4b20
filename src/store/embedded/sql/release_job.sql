-- release_job: the owner gives a live job back (docs/state-machine.md#release). It returns to the
-- queue, unowned and unleased, keeping its epoch and attempts (the next claim mints the next
-- generation); past its retry budget (`attempt_count > max_retries`) it fails with :exhausted_error
-- (domain::jobs::release_exhausted_error) instead of staying as a row no one may claim.
-- last_heartbeat_at is stamped either way.
--
-- Guard and why: the caller is the owner (no epoch check: the reference's release carries none) and
-- the job is live, so a superseded owner cannot give away its successor's claim and a finished job
-- stays finished. On a miss the call reads job_state.sql to name the reason.
UPDATE jobs SET status = CASE WHEN attempt_count > max_retries THEN 'failed' ELSE 'working' END,
                error = CASE WHEN attempt_count > max_retries THEN :exhausted_error ELSE error END,
                last_heartbeat_at = :now,
                owner_instance_id = NULL,
                requeued_at = :now,
                lease_expires_at = NULL
WHERE job_id = :job_id AND owner_instance_id = :instance_id
  AND status IN ('working', 'input_required')
RETURNING status, attempt_count
