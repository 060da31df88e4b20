-- delete_agent_tools: drops an agent's tools before its registration stores the ones it sent.
DELETE FROM agent_tools WHERE agent_id = :agent_id
