-- reference_live_claims: claims the Go registry still holds in its SQLite file (attached as
-- `reference`): an owner working on the job under a lease that has not lapsed. Read only.
-- Its timestamps are text ("2026-11-28 13:04:20.183206331+00:00"); reference_time() reads them.
SELECT job_id, owner_instance_id, lease_expires_at
FROM reference.jobs
WHERE status IN ('working', 'input_required')
  AND owner_instance_id IS NOT NULL
  AND reference_time(lease_expires_at) > :now
ORDER BY reference_time(lease_expires_at), job_id
