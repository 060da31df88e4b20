-- reclaim_expired_lease: lease expiry (docs/state-machine.md#lease-expiry) of one watched claim:
-- the job goes back to the queue as `working` (also from input_required), unowned and unleased,
-- keeping its epoch, attempts and cursor; past its retry budget (`attempt_count > max_retries`) it
-- fails with :exhausted_error (domain::jobs::TakenBack::LeaseExpired) and only then is
-- last_heartbeat_at stamped (a requeued job clears it).
--
-- Guard and why: the job is live, the lease passed (:now), and the epoch is the one the timer
-- watched (:claim_epoch). An owner that renewed meanwhile, or a new claim (new epoch), or a
-- finished job makes this match nothing; the call then reads live_claim_lease.sql to re-arm or
-- retire the timer.
UPDATE jobs SET status = CASE WHEN attempt_count > max_retries THEN 'failed' ELSE 'working' END,
                error = CASE WHEN attempt_count > max_retries THEN :exhausted_error ELSE error END,
                last_heartbeat_at = CASE WHEN attempt_count > max_retries THEN :now END,
                owner_instance_id = NULL,
                requeued_at = :now,
                lease_expires_at = NULL
WHERE job_id = :job_id AND claim_epoch = :claim_epoch AND lease_expires_at < :now
  AND status IN ('working', 'input_required')
RETURNING status
