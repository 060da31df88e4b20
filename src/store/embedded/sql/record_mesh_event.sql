-- record_mesh_event: one event of the registry's log, in the call that makes the change it
-- records (what to record is decided by domain::registry_events).
INSERT INTO mesh_events (event_type, agent_id, function_name, data, recorded_at)
VALUES (:event_type, :agent_id, :function_name, :data, :now)
