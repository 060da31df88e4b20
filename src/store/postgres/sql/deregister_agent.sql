-- deregister_agent: DELETE /agents/{id}: the agent turns unhealthy (a topology change, when it
-- was not already) and the log records an `unregister` ($2: its data, to which the agent's
-- type, name and version are added; agents of type $3 record nothing). Only a real
-- departure is recorded, so a DELETE repeated in a loop adds nothing. Its jobs are not
-- touched: their leases decide (docs/ownership.md).
WITH departed AS (
  UPDATE agents SET status = 'unhealthy'
  WHERE agent_id = $1 AND status <> 'unhealthy'
  RETURNING agent_id, agent_type, name, version
), recorded AS (
  INSERT INTO mesh_events (event_type, agent_id, data)
  SELECT 'unregister', agent_id,
         $2::jsonb || jsonb_build_object('agent_type', agent_type, 'name', name,
                                         'version', version)
  FROM departed WHERE agent_type <> $3
), bumped AS (
  UPDATE mesh_topology SET version = version + 1
  WHERE EXISTS (SELECT 1 FROM departed)
  RETURNING version
)
SELECT (SELECT version FROM bumped) AS version
