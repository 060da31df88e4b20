-- stamp_heartbeat: a HEAD heartbeat of an agent keeps it alive. Guard and why: the agent is not
-- unhealthy. A HEAD heartbeat carries no registration, so it cannot bring a departed agent back;
-- the agent must register again (a full heartbeat).
UPDATE agents SET updated_at = :now WHERE agent_id = :agent_id AND status <> 'unhealthy'
