-- count_live_claims: owned jobs still being worked on, across the whole database: what an
-- operator waits on before an upgrade. Pinned jobs not yet started count too.
SELECT count(*) AS live FROM jobs
WHERE owner_instance_id IS NOT NULL AND status IN ('working', 'input_required')
