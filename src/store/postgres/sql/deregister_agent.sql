-- deregister_agent: DELETE /agents/{id}: the agent turns unhealthy (a topology change, when it
-- was not already). Its jobs are not touched: their leases decide (docs/ownership.md).
WITH departed AS (
  UPDATE agents SET status = 'unhealthy'
  WHERE agent_id = $1 AND status <> 'unhealthy'
  RETURNING agent_id
), bumped AS (
  UPDATE mesh_topology SET version = version + 1
  WHERE EXISTS (SELECT 1 FROM departed)
  RETURNING version
)
SELECT (SELECT version FROM bumped) AS version
