-- list_agent_tools: every tool of every agent, in each agent's order (the mesh snapshot).
SELECT agent_id, function_name, capability, version, description, tags, kwargs, dependencies
FROM agent_tools
ORDER BY agent_id, position
