-- proxy_candidates: the agents `/proxy/{host}:{port}/mcp…` may reach: an HTTP endpoint on that
-- port, and the host asked for is its registered host, its id or its name.
SELECT agent_id, name, agent_type, runtime, version, description, namespace, http_host,
       http_port, a2a_producer, a2a_consumer, status, created_at, updated_at, entity_id
FROM agents
WHERE http_port = $2 AND http_host <> '' AND (http_host = $1 OR agent_id = $1 OR name = $1)
ORDER BY agent_id
