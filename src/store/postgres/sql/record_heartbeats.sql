-- record_heartbeats: stamp the HEAD heartbeats a replica collected since its last flush, and
-- answer each of those agents' current status and the topology version (so the replica learns
-- of changes made through others). Guard and why: an unhealthy agent is not revived by a HEAD;
-- it must register again with a full heartbeat.
WITH beaten AS (
  UPDATE agents SET updated_at = now()
  WHERE agent_id = ANY($1) AND status <> 'unhealthy'
  RETURNING agent_id
)
SELECT agent_id, status, (SELECT version FROM mesh_topology) AS topology_version
FROM agents WHERE agent_id = ANY($1)
