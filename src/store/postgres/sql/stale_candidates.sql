-- stale_candidates: the opt-in stale reaper (docs/state-machine.md#stale-expiry) looks for live
-- jobs without a deadline that were submitted more than max($1 seconds, max_duration) ago; their
-- reasons are worded in Rust.
SELECT job_id, max_duration FROM jobs
WHERE total_deadline IS NULL AND status IN ('working', 'input_required')
  AND submitted_at < now() - make_interval(secs => $1)
  AND submitted_at <= now() - make_interval(secs => greatest($1, coalesce(max_duration, 0)))
