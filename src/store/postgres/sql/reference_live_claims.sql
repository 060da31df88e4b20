-- reference_live_claims: claims the Go registry still holds in its own tables (schema public):
-- an owner working on the job under a lease that has not lapsed. `migrate import-reference`
-- refuses while any remain (unless forced): that owner would keep writing to the Go registry,
-- and its work would be lost on the switch. Read only; the reference's tables are never written.
SELECT job_id, owner_instance_id, lease_expires_at::text AS lease_expires_at
FROM public.jobs
WHERE status IN ('working', 'input_required')
  AND owner_instance_id IS NOT NULL
  AND lease_expires_at > now()
ORDER BY lease_expires_at, job_id
