-- required_edges: the tools of every other agent that declare a required dependency (the graph
-- a registration's own required edges are checked against for a cycle).
SELECT capability, dependencies FROM agent_tools
WHERE has_required_dependencies = 1 AND agent_id <> :agent_id
