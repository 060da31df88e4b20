-- rotate_agents: POST /admin/rotate: the healthy agents (of the entity $1, or all when NULL)
-- must register again after a certificate rotation. When there are any, the topology version
-- moves, so every agent's next HEAD heartbeat answers 202, as the reference's `rotate` events
-- make it answer.
WITH rotated AS (
  SELECT count(*) AS agents FROM agents
  WHERE status = 'healthy' AND ($1::text IS NULL OR entity_id = $1)
), bumped AS (
  UPDATE mesh_topology SET version = version + 1
  WHERE (SELECT agents FROM rotated) > 0
  RETURNING version
)
SELECT (SELECT agents FROM rotated) AS agents, (SELECT version FROM bumped) AS version
