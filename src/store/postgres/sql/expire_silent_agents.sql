-- expire_silent_agents: the health monitor: agents silent for more than $1 seconds turn
-- unhealthy (one topology change for all of them). Their jobs are not touched: their leases
-- decide (docs/ownership.md).
WITH silent AS (
  UPDATE agents SET status = 'unhealthy'
  WHERE status <> 'unhealthy' AND updated_at < now() - make_interval(secs => $1)
  RETURNING agent_id
), bumped AS (
  UPDATE mesh_topology SET version = version + 1
  WHERE EXISTS (SELECT 1 FROM silent)
  RETURNING version
)
SELECT ARRAY(SELECT agent_id FROM silent) AS agents, (SELECT version FROM bumped) AS version
