-- agent_status: an agent's status, as its heartbeat leaves it.
SELECT status FROM agents WHERE agent_id = :agent_id
