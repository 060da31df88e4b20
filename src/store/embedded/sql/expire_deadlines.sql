-- expire_deadlines: the sweep's deadline phase (docs/state-machine.md#deadline-expiry): a live job
-- past its total_deadline fails with `deadline_exceeded` (the reference's error), unowned and
-- unleased; no event. Guard and why: the job is still live (docs/contract.md#diff-deadline-guard):
-- a job that finished before the sweep reached it keeps its outcome.
UPDATE jobs SET status = 'failed',
                error = 'deadline_exceeded',
                owner_instance_id = NULL,
                lease_expires_at = NULL,
                last_heartbeat_at = :now
WHERE total_deadline < :now AND status IN ('working', 'input_required')
RETURNING job_id
