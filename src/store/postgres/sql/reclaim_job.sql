-- reclaim_job: an operator's force reclaim (docs/state-machine.md#force-reclaim): the job goes back
-- to the queue, unowned and unleased, keeping its epoch and attempts (the next claim mints the new
-- generation); a job whose retry budget is spent is failed with $2 instead of being left as an
-- unclaimable row that blocks nothing but never ends (docs/contract.md#diff-reclaim-over-budget).
-- Guard: the job is live. The previous owner is read under the row lock (FOR UPDATE), so a
-- concurrent claim cannot slip between reading the owner and clearing it.
UPDATE jobs SET status = CASE WHEN attempt_count > max_retries THEN 'failed' ELSE 'working' END,
                error = CASE WHEN attempt_count > max_retries THEN $2::text ELSE error END,
                last_heartbeat_at = CASE WHEN attempt_count > max_retries THEN now() END,
                owner_instance_id = NULL,
                requeued_at = now(),
                lease_expires_at = NULL
FROM (SELECT job_id, owner_instance_id FROM jobs WHERE job_id = $1 FOR UPDATE) AS previous
WHERE jobs.job_id = previous.job_id AND jobs.status IN ('working', 'input_required')
RETURNING jobs.status, previous.owner_instance_id, jobs.claim_epoch
