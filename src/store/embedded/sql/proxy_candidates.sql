-- proxy_candidates: the agents `/proxy/{host}:{port}/mcp…` may reach: an HTTP endpoint on that
-- port, and the host asked for is its registered host, its id or its name.
SELECT agent_id, name, agent_type, runtime, version, description, namespace, http_host,
       http_port, a2a_producer, a2a_consumer, status, created_at, updated_at, entity_id
FROM agents
WHERE http_port = :port AND http_host <> ''
  AND (http_host = :host OR agent_id = :host OR name = :host)
ORDER BY agent_id
