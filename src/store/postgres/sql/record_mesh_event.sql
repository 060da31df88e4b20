-- record_mesh_event: one event of the registry's log, in the transaction of the change it
-- records (what to record is decided by domain::registry_events).
INSERT INTO mesh_events (event_type, agent_id, function_name, data)
VALUES ($1, $2, $3, $4)
