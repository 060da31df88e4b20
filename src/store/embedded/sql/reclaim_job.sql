-- reclaim_job: an operator's force reclaim (docs/state-machine.md#force-reclaim): the job goes back
-- to the queue, unowned and unleased, keeping its epoch and attempts (the next claim mints the new
-- generation, fencing the previous owner); a job whose retry budget is spent
-- (`attempt_count > max_retries`) fails with :exhausted_error (domain::jobs::TakenBack::Reclaimed)
-- instead of staying as a row no one may claim, and only then is last_heartbeat_at stamped.
--
-- Guard and why: the job is live, so a finished job stays finished. The call read the previous
-- owner (job_state.sql) just before, on the same connection in the same transaction, so no claim
-- can come between that read and this write.
UPDATE jobs SET status = CASE WHEN attempt_count > max_retries THEN 'failed' ELSE 'working' END,
                error = CASE WHEN attempt_count > max_retries THEN :exhausted_error ELSE error END,
                last_heartbeat_at = CASE WHEN attempt_count > max_retries THEN :now END,
                owner_instance_id = NULL,
                requeued_at = :now,
                lease_expires_at = NULL
WHERE job_id = :job_id AND status IN ('working', 'input_required')
RETURNING status, claim_epoch
