-- live_claim_lease: the claim a lease timer watches, as it is now (epoch and lease), if it is still
-- a leased live claim: read in the same call right after reclaim_expired_lease.sql missed, so the
-- timer re-arms on the renewed lease or retires.
SELECT claim_epoch, lease_expires_at FROM jobs
WHERE job_id = :job_id AND owner_instance_id IS NOT NULL AND lease_expires_at IS NOT NULL
  AND status IN ('working', 'input_required')
