-- purge_departed_agents: the sweep's agent retention: agents unhealthy (or unknown) and not heard
-- from since :cutoff are deleted, their tools with them (ON DELETE CASCADE). Guard and why: not
-- healthy, so a live agent is never deleted whatever its age.
DELETE FROM agents WHERE status <> 'healthy' AND updated_at < :cutoff
