-- agent_liveness: what a HEAD heartbeat check needs: the agent's status, the topology version it
-- last resolved against, and the mesh's current one.
SELECT a.status, a.topology_seen, t.version AS topology_version
FROM agents a CROSS JOIN mesh_topology t
WHERE a.agent_id = :agent_id
