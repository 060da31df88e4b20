-- all_agent_tools_with_llm: every tool as all_agent_tools reads it, with its LLM fields (input
-- schema, llm_filter, llm_provider), which live only in its agent's topology: one element per
-- tool position, unnested once per agent rather than looked up once per tool.
SELECT t.agent_id, t.function_name, t.capability, t.version, t.description, t.tags, t.kwargs,
       t.dependencies, t.output_schema_hash, x.tool->'input_schema' AS input_schema, x.tool->'llm_filter' AS llm_filter,
       x.tool->'llm_provider' AS llm_provider
FROM agent_tools t
LEFT JOIN (
  SELECT a.agent_id, e.tool, e.position
  FROM agents a, jsonb_array_elements(a.topology->'tools') WITH ORDINALITY AS e(tool, position)
) x ON x.agent_id = t.agent_id AND x.position = t.position
ORDER BY t.agent_id, t.position
