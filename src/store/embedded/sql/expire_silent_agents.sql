-- expire_silent_agents: agents not heard from since :silent_since turn unhealthy; their jobs stay
-- with them until their leases lapse. Guard and why: not unhealthy already, so that only agents
-- that really went silent are returned and move the topology version (the call bumps it when any
-- did).
UPDATE agents SET status = 'unhealthy'
WHERE status <> 'unhealthy' AND updated_at < :silent_since
RETURNING agent_id
