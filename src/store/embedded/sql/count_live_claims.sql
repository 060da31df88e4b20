-- count_live_claims: owned live jobs across the file, what a drain waits on.
SELECT count(*) FROM jobs
WHERE owner_instance_id IS NOT NULL AND status IN ('working', 'input_required')
