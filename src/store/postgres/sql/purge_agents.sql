-- purge_agents: the sweep deletes agents that have not been healthy for longer than the
-- retention ($1 seconds). Their jobs are not touched here: leases decide (docs/ownership.md).
DELETE FROM agents
WHERE status <> 'healthy' AND updated_at < now() - make_interval(secs => $1)
