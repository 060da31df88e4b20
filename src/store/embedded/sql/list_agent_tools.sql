-- list_agent_tools: every tool of every agent, in each agent's order (the mesh snapshot). The
-- LLM fields are left out (NULL): they live in each agent's topology, and reading them costs a
-- pass over every agent's (list_agent_tools_with_llm).
SELECT agent_id, function_name, capability, version, description, tags, kwargs, dependencies,
       output_schema_hash, NULL AS input_schema, NULL AS llm_filter, NULL AS llm_provider
FROM agent_tools
ORDER BY agent_id, position
