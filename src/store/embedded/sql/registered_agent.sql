-- registered_agent: the agent's status, stored topology and entity before a registration, to decide
-- whether the registration may update it (domain::agents::entity_may_update) and whether it changes
-- the topology (domain::agents::topology_changed).
SELECT status, topology, entity_id FROM agents WHERE agent_id = :agent_id
