-- live_claims: every live claim with a lease, for the lease supervisor to watch after a start.
SELECT job_id, claim_epoch, lease_expires_at FROM jobs
WHERE owner_instance_id IS NOT NULL AND lease_expires_at IS NOT NULL
  AND status IN ('working', 'input_required')
