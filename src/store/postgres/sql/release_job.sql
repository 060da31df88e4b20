-- release_job: the owner hands the job back (docs/state-machine.md#release, with our fix: an
-- input_required job returns to working too, so that something can claim it:
-- docs/contract.md#diff-release-input-required). Unowned and unleased; back in the queue,
-- or failed with $3 (the release's exhausted error) when its retry budget is spent.
-- Guard: only the current owner of a live job; a miss is named from job_state.
UPDATE jobs SET owner_instance_id = NULL,
                lease_expires_at = NULL,
                requeued_at = now(),
                last_heartbeat_at = now(),
                status = CASE WHEN attempt_count > max_retries THEN 'failed' ELSE 'working' END,
                error = CASE WHEN attempt_count > max_retries THEN $3::text ELSE error END
WHERE job_id = $1 AND owner_instance_id = $2 AND status IN ('working', 'input_required')
RETURNING status, attempt_count
