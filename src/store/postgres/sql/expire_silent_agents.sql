-- expire_silent_agents: the health monitor: agents silent for more than $1 seconds turn
-- unhealthy (one topology change for all of them), each with an `unhealthy` event ($2: its
-- data; agents of type $3 record nothing). Their jobs are not touched: their leases decide
-- (docs/ownership.md).
WITH silent AS (
  UPDATE agents SET status = 'unhealthy'
  WHERE status <> 'unhealthy' AND updated_at < now() - make_interval(secs => $1)
  RETURNING agent_id, agent_type
), recorded AS (
  INSERT INTO mesh_events (event_type, agent_id, data)
  SELECT 'unhealthy', agent_id, $2::jsonb FROM silent WHERE agent_type <> $3
), bumped AS (
  UPDATE mesh_topology SET version = version + 1
  WHERE EXISTS (SELECT 1 FROM silent)
  RETURNING version
)
SELECT ARRAY(SELECT agent_id FROM silent) AS agents, (SELECT version FROM bumped) AS version
