-- reroute_untaken_pinned_jobs: the sweep's orphan phase (docs/state-machine.md#orphan-reroute;
-- why it is this narrow: docs/ownership.md).
-- A pinned job (submitted with an owner) that its owner never took up — no lease yet — goes
-- back to the queue, unowned (or fails with $1 when its retry budget is spent), once its owner is
-- not a healthy agent and one lease window ($2: the default window in seconds, for jobs without
-- max_duration) has passed since submission.
-- Guard and why: a job with a lease is never taken here, whatever its owner's health: an
-- older SDK keeps running a job after it deregisters, and only its lease says it stopped.
UPDATE jobs SET status = CASE WHEN attempt_count > max_retries THEN 'failed' ELSE 'working' END,
                error = CASE WHEN attempt_count > max_retries THEN $1::text ELSE error END,
                last_heartbeat_at = CASE WHEN attempt_count > max_retries THEN now() END,
                owner_instance_id = NULL,
                requeued_at = now(),
                lease_expires_at = NULL
WHERE status IN ('working', 'input_required')
  AND owner_instance_id IS NOT NULL AND lease_expires_at IS NULL
  AND submitted_at < now() - job_lease_window(max_duration, $2)
  AND NOT EXISTS (SELECT 1 FROM agents
                  WHERE agents.agent_id = jobs.owner_instance_id AND agents.status = 'healthy')
RETURNING job_id
