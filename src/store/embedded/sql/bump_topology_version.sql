-- bump_topology_version: a topology change: every other agent's next HEAD heartbeat learns it must
-- re-resolve. Returns the new version.
UPDATE mesh_topology SET version = version + 1 RETURNING version
