-- reroute_untaken_pinned_jobs: the sweep's orphan phase (docs/state-machine.md#orphan-reroute): a
-- pinned job (push mode) whose owner never took it up goes back to the queue as `working` for any
-- producer; past its retry budget (`attempt_count > max_retries`) it fails with :exhausted_error
-- (domain::jobs::TakenBack::Orphaned), stamped only then. Epoch, attempts and cursor are kept.
--
-- Guards and why:
-- * live, owned, and NO lease: a job its owner took up has a lease, and only lease expiry may take
--   it back (an owner that deregistered keeps running an older SDK's job until its lease lapses).
-- * submitted more than one lease window ago (job_lease_window: domain::jobs::lease_window): the
--   owner had a full window to start it.
-- * its owner is not a healthy agent: a live owner may still take it up.
UPDATE jobs SET status = CASE WHEN attempt_count > max_retries THEN 'failed' ELSE 'working' END,
                error = CASE WHEN attempt_count > max_retries THEN :exhausted_error ELSE error END,
                last_heartbeat_at = CASE WHEN attempt_count > max_retries THEN :now END,
                owner_instance_id = NULL,
                requeued_at = :now,
                lease_expires_at = NULL
WHERE status IN ('working', 'input_required')
  AND owner_instance_id IS NOT NULL AND lease_expires_at IS NULL
  AND submitted_at < :now - job_lease_window(max_duration)
  AND NOT EXISTS (
    SELECT 1 FROM agents
    WHERE agents.agent_id = jobs.owner_instance_id AND agents.status = 'healthy'
  )
RETURNING job_id
