-- insert_agent_tools: the tools of a registration ($2, a JSON array, in declared order), each
-- with whether it has a required dependency ($3, decided by the domain, one flag per tool).
INSERT INTO agent_tools (agent_id, position, function_name, capability, version, description,
                         tags, kwargs, dependencies, has_required_dependencies, output_schema_hash)
SELECT $1, t.position, t.tool->>'function_name', t.tool->>'capability', t.tool->>'version',
       t.tool->>'description', ARRAY(SELECT jsonb_array_elements_text(t.tool->'tags')),
       nullif(t.tool->'kwargs', 'null'::jsonb), t.tool->'dependencies', required.flag,
       t.tool->>'output_schema_hash'
FROM jsonb_array_elements($2::jsonb) WITH ORDINALITY AS t(tool, position)
JOIN unnest($3::bool[]) WITH ORDINALITY AS required(flag, position) USING (position)
