-- deregister_agent: the agent turns unhealthy; its jobs stay with it until their leases lapse.
-- Guard and why: it was not unhealthy already, so that only a real departure moves the topology
-- version (the call bumps it when a row changed).
UPDATE agents SET status = 'unhealthy'
WHERE agent_id = :agent_id AND status <> 'unhealthy'
