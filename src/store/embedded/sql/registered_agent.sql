-- registered_agent: the agent's status, stored topology and entity before a registration, to decide
-- whether the registration may update it (domain::agents::entity_may_update) and whether it changes
-- the topology (domain::agents::topology_changed); and its resolution-audit memory, against which
-- the registration decides its audit events.
SELECT status, topology, entity_id, resolution_audit FROM agents WHERE agent_id = :agent_id
