-- record_agent_event: an event about an agent whose status the same call just changed
-- (deregistered, gone silent): :data, with the agent's type, name and version added when
-- :with_agent is set. Agents of type :unrecorded record nothing.
INSERT INTO mesh_events (event_type, agent_id, data, recorded_at)
SELECT :event_type, agent_id,
       CASE WHEN :with_agent
            THEN json_patch(:data, json_object('agent_type', agent_type, 'name', name,
                                               'version', version))
            ELSE json(:data) END,
       :now
FROM agents
WHERE agent_id = :agent_id AND agent_type <> :unrecorded
