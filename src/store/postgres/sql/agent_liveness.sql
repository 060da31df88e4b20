-- agent_liveness: an agent's status and the topology version it has seen, with the current one.
SELECT a.status, a.topology_seen, t.version AS topology_version
FROM agents a CROSS JOIN mesh_topology t
WHERE a.agent_id = $1
