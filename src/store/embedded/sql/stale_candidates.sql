-- stale_candidates: the sweep's stale phase (docs/state-machine.md#stale-expiry; only with a stale
-- timeout :timeout, in microseconds): live jobs without a total_deadline submitted longer ago than
-- the stale ceiling, max(:timeout, max_duration). The call fails each one (expire_stale_job.sql)
-- with its reason (domain::jobs::stale_reason) and appends its `stale` event, in the same
-- transaction. The first condition is the cheap one the index jobs_live_submitted_idx serves.
SELECT job_id, max_duration FROM jobs
WHERE total_deadline IS NULL AND status IN ('working', 'input_required')
  AND submitted_at < :now - :timeout
  AND submitted_at <= :now - max(:timeout, coalesce(max_duration, 0) * 1000000)
