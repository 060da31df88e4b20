-- The registry's own event log (GET /events, meshctl audit): agents registering, coming back,
-- deregistering and going silent, and the dependency-resolution audit trail. Named apart from
-- the Go registry's `registry_events` so that a database both have used never confuses the two.
-- Rows are written by the statements that make the change they record; the sweep's purge phase
-- deletes them after the retention (and past a row cap), like the jobs' events.

CREATE TABLE mesh_events (
    event_id      bigserial PRIMARY KEY,
    -- register, unregister, unhealthy, dependency_resolved, dependency_unresolved, ...
    event_type    text NOT NULL,
    agent_id      text NOT NULL,
    -- Set for function-level events (the resolution audit trail); NULL for the agent's own.
    function_name text,
    data          jsonb NOT NULL DEFAULT '{}',
    recorded_at   timestamptz NOT NULL DEFAULT now()
);

-- GET /events: newest first; the purge: oldest first.
CREATE INDEX mesh_events_recorded_idx ON mesh_events (recorded_at, event_id);
-- GET /events?agent_id= (meshctl audit <agent>).
CREATE INDEX mesh_events_agent_idx ON mesh_events (agent_id, recorded_at);
