-- all_agent_tools: every tool, per agent in declared order, for resolution and listing. The LLM
-- fields are left out (NULL): they live in each agent's topology, and reading them costs a pass
-- over every agent's (all_agent_tools_with_llm).
SELECT agent_id, function_name, capability, version, description, tags, kwargs, dependencies,
       output_schema_hash, NULL::jsonb AS input_schema, NULL::jsonb AS llm_filter, NULL::jsonb AS llm_provider
FROM agent_tools ORDER BY agent_id, position
