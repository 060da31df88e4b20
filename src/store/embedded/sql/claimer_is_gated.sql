-- claimer_is_gated: whether the claimer's tool for this capability has required dependencies
-- (agent_tools.has_required_dependencies, decided at registration by
-- domain::agents::has_required_dependencies). Such a claimer gets no work until the caller has
-- checked those dependencies against the mesh, which is not in SQL; claim_next.sql runs after.
SELECT EXISTS (
  SELECT 1 FROM agent_tools
  WHERE agent_id = :instance_id AND capability = :capability AND has_required_dependencies
)
