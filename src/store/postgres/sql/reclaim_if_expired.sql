-- reclaim_if_expired: the lease timer's reclaim of one claim (docs/state-machine.md#lease-expiry):
-- back to the queue as working, unowned and unleased, or failed with $3 when its retry budget is
-- spent.
-- Guard and why: this claim ($2, its epoch) of a live job, and only if its lease has expired by
-- the database's clock. If the owner renewed (here or through another replica), or the job was
-- claimed again or finished, the update matches nothing and the row as it is now tells the
-- timer what to watch instead — in the same round trip.
WITH expired AS (
  UPDATE jobs SET status = CASE WHEN attempt_count > max_retries THEN 'failed' ELSE 'working' END,
                  error = CASE WHEN attempt_count > max_retries THEN $3::text ELSE error END,
                  last_heartbeat_at = CASE WHEN attempt_count > max_retries THEN now() END,
                  owner_instance_id = NULL,
                  requeued_at = now(),
                  lease_expires_at = NULL
  WHERE job_id = $1 AND claim_epoch = $2 AND lease_expires_at < now()
    AND status IN ('working', 'input_required')
  RETURNING status
)
SELECT (SELECT status FROM expired) AS reclaimed,
       status, owner_instance_id, claim_epoch, lease_expires_at
FROM jobs WHERE job_id = $1
