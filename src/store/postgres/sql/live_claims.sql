-- live_claims: every live claim that holds a lease, for this replica's supervisor to watch
-- after a start (it may have been down while they were made).
SELECT job_id, claim_epoch, lease_expires_at FROM jobs
WHERE owner_instance_id IS NOT NULL AND lease_expires_at IS NOT NULL
  AND status IN ('working', 'input_required')
