-- registered_agent: the agent's status and stored topology before a registration, to decide whether
-- the registration changes the topology (domain::agents::topology_changed).
SELECT status, topology FROM agents WHERE agent_id = :agent_id
