-- agent: one agent (the cancel forward looks up its owner's endpoint).
SELECT agent_id, name, agent_type, runtime, version, description, namespace, http_host,
       http_port, a2a_producer, a2a_consumer, status, created_at, updated_at,
       entity_id
FROM agents WHERE agent_id = $1
