-- expire_deadlines: the sweep's deadline phase (docs/state-machine.md#deadline-expiry): live jobs
-- past their total_deadline fail. Guard and why: the job is still live, so a completion that
-- commits first is never overwritten (the reference's update is unguarded:
-- docs/contract.md#diff-deadline-guard).
UPDATE jobs SET status = 'failed', error = 'deadline_exceeded',
                owner_instance_id = NULL, lease_expires_at = NULL, last_heartbeat_at = now()
WHERE total_deadline < now() AND status IN ('working', 'input_required')
RETURNING job_id
