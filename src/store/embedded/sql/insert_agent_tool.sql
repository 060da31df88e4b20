-- insert_agent_tool: one tool of a registration, at its position in the agent's list.
-- has_required_dependencies is decided by domain::agents::has_required_dependencies; the claim gate
-- reads it (claimer_is_gated.sql).
INSERT INTO agent_tools (agent_id, position, function_name, capability, version, description,
                         tags, kwargs, dependencies, has_required_dependencies, output_schema_hash)
VALUES (:agent_id, :position, :function_name, :capability, :version, :description,
        :tags, :kwargs, :dependencies, :has_required_dependencies, :output_schema_hash)
