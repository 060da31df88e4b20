-- count_pending_jobs_for_agent_name: claimable jobs (capped at 100) for the capabilities of every
-- agent sharing this agent's name (docs/contract.md#diff-pending-header): what a heartbeat tells a
-- producer. Claimable is claim_next.sql's predicate: working, unowned, retry budget not spent.
SELECT count(*) FROM (
  SELECT 1 FROM jobs
  WHERE status = 'working' AND owner_instance_id IS NULL AND attempt_count <= max_retries
    AND capability IN (
      SELECT t.capability FROM agent_tools t JOIN agents a USING (agent_id)
      WHERE a.name = (SELECT name FROM agents WHERE agent_id = :agent_id)
    )
  LIMIT 100
)
