-- renew_lease_on_read: an executor read keeps its claim alive
-- (docs/state-machine.md#renew-on-read): the lease becomes :lease_expires_at (now + window, capped
-- by total_deadline or else the stale ceiling: domain::jobs::poll_lease).
--
-- Guards and why: the job is live (a finished job's lease is not watched, and is left as it was);
-- the lease only ever moves later (a capped read must not shorten a lease an update granted). The
-- caller's ownership and epoch were checked just before on the row executor_read_state.sql read
-- (domain::jobs::JobState::superseded_for), on the same connection in the same transaction, so
-- nothing can come between. A miss means: served, not renewed.
UPDATE jobs SET lease_expires_at = :lease_expires_at, last_heartbeat_at = :now
WHERE job_id = :job_id AND status IN ('working', 'input_required')
  AND (lease_expires_at IS NULL OR lease_expires_at < :lease_expires_at)
RETURNING lease_expires_at
