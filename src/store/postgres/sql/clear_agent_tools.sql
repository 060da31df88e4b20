-- clear_agent_tools: a registration replaces the agent's tools (first, the old ones go).
DELETE FROM agent_tools WHERE agent_id = $1
