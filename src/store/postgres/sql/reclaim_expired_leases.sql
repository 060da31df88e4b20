-- reclaim_expired_leases: the sweep's lease phase (docs/state-machine.md#lease-expiry) for what
-- no replica's lease timer watches (a lease that expired while every replica was down, or whose
-- watching replica died): back to the queue, or failed with $1 when the retry budget is spent.
-- Guard: live jobs whose lease is in the past by the database's clock.
UPDATE jobs SET status = CASE WHEN attempt_count > max_retries THEN 'failed' ELSE 'working' END,
                error = CASE WHEN attempt_count > max_retries THEN $1::text ELSE error END,
                last_heartbeat_at = CASE WHEN attempt_count > max_retries THEN now() END,
                owner_instance_id = NULL,
                requeued_at = now(),
                lease_expires_at = NULL
WHERE lease_expires_at < now() AND status IN ('working', 'input_required')
RETURNING job_id
