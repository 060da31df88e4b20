-- The registry's own event log (PostgreSQL's V8 in SQLite's types: recorded_at in microseconds
-- since the Unix epoch, data as JSON text).

CREATE TABLE mesh_events (
    event_id      INTEGER PRIMARY KEY,
    event_type    TEXT NOT NULL,
    agent_id      TEXT NOT NULL,
    function_name TEXT,
    data          TEXT NOT NULL DEFAULT '{}',
    recorded_at   INTEGER NOT NULL
) STRICT;

CREATE INDEX mesh_events_recorded_idx ON mesh_events (recorded_at, event_id);
CREATE INDEX mesh_events_agent_idx ON mesh_events (agent_id, recorded_at);
