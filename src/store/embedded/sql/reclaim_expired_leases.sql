-- reclaim_expired_leases: the sweep's lease phase: lease expiry
-- (docs/state-machine.md#lease-expiry) of every claim whose lease passed, watched by a timer or not
-- (reclaim_expired_lease.sql is the one-claim form). Back to the queue as `working`, unowned and
-- unleased, keeping epoch, attempts and cursor; past the retry budget
-- (`attempt_count > max_retries`) failed with :exhausted_error
-- (domain::jobs::TakenBack::LeaseExpired), stamped only then.
--
-- Guard and why: the job is live and its lease passed (:now), so a renewal that landed first keeps
-- its claim and a finished job stays finished.
UPDATE jobs SET status = CASE WHEN attempt_count > max_retries THEN 'failed' ELSE 'working' END,
                error = CASE WHEN attempt_count > max_retries THEN :exhausted_error ELSE error END,
                last_heartbeat_at = CASE WHEN attempt_count > max_retries THEN :now END,
                owner_instance_id = NULL,
                requeued_at = :now,
                lease_expires_at = NULL
WHERE lease_expires_at < :now AND status IN ('working', 'input_required')
RETURNING job_id
