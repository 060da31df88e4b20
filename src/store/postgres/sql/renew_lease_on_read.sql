-- renew_lease_on_read: an executor read keeps its claim alive
-- (docs/state-machine.md#renew-on-read): the lease becomes least(now + $4 seconds, $5), where $5
-- is the cap (total_deadline, else the stale ceiling; NULL for none) computed by the domain's
-- poll_lease.
-- Guard and why: the caller is the owner at this epoch and the job is live (a superseded
-- executor must not extend the new claim's lease), and only if that is later than the current
-- lease (a poll never shortens a lease a delta granted). A lost race is silent: the events are
-- served either way.
UPDATE jobs SET lease_expires_at = least(now() + make_interval(secs => $4), $5),
                last_heartbeat_at = now()
WHERE job_id = $1 AND owner_instance_id = $2 AND claim_epoch = $3
  AND status IN ('working', 'input_required')
  AND (lease_expires_at IS NULL OR lease_expires_at < least(now() + make_interval(secs => $4), $5))
RETURNING lease_expires_at
