-- set_topology_seen: the topology version a registering agent has now resolved against.
UPDATE agents SET topology_seen = :topology_version WHERE agent_id = :agent_id
