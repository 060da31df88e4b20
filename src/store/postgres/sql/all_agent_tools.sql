-- all_agent_tools: every tool, per agent in declared order, for resolution and listing.
SELECT agent_id, function_name, capability, version, description, tags, kwargs, dependencies
FROM agent_tools ORDER BY agent_id, position
