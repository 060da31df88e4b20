-- mesh_events: GET /events: the registry's log, newest first, at most :limit rows; each filter
-- (event type, agent id, function name) applies when given. The agent's name is its name now
-- (none once the sweep purged the agent).
SELECT e.event_type, e.agent_id, a.name AS agent_name, e.function_name, e.data,
       e.recorded_at
FROM mesh_events e
LEFT JOIN agents a ON a.agent_id = e.agent_id
WHERE (:event_type IS NULL OR e.event_type = :event_type)
  AND (:agent_id IS NULL OR e.agent_id = :agent_id)
  AND (:function_name IS NULL OR e.function_name = :function_name)
ORDER BY e.recorded_at DESC, e.event_id DESC
LIMIT :limit
