-- mark_topology_seen: after a registration, bump the topology version when it changed ($2),
-- and record the version this agent has now seen (its HEAD heartbeats answer 202 only for
-- later changes).
WITH bumped AS (
  UPDATE mesh_topology SET version = version + 1 WHERE $2 RETURNING version
)
UPDATE agents
SET topology_seen = coalesce((SELECT version FROM bumped), (SELECT version FROM mesh_topology))
WHERE agent_id = $1
RETURNING topology_seen
