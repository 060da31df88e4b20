-- pending_jobs_for: the X-Mesh-Pending-Jobs hint: claimable jobs (working, unowned, budget not
-- spent — the claim's own predicate) for the capabilities served by every agent that shares this
-- agent's name (its replica group), counted exactly up to 100.
SELECT count(*) AS pending FROM (
  SELECT 1 FROM jobs
  WHERE status = 'working' AND owner_instance_id IS NULL AND attempt_count <= max_retries
    AND capability IN (
      SELECT t.capability FROM agent_tools t JOIN agents a USING (agent_id)
      WHERE a.name = (SELECT name FROM agents WHERE agent_id = $1))
  LIMIT 100
) AS pending
