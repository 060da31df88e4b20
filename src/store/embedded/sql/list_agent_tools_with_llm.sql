-- list_agent_tools_with_llm: every tool as list_agent_tools reads it, with its LLM fields, which
-- live only in its agent's topology (one element per tool position).
SELECT t.agent_id, t.function_name, t.capability, t.version, t.description, t.tags, t.kwargs,
       t.dependencies, t.output_schema_hash,
       json_extract(x.tool, '$.input_schema') AS input_schema,
       json_extract(x.tool, '$.llm_filter') AS llm_filter,
       json_extract(x.tool, '$.llm_provider') AS llm_provider
FROM agent_tools t
LEFT JOIN (
  SELECT a.agent_id, e.value AS tool, e.key + 1 AS position
  FROM agents a, json_each(a.topology, '$.tools') AS e
) x ON x.agent_id = t.agent_id AND x.position = t.position
ORDER BY t.agent_id, t.position
