-- upsert_agent: a full registration or heartbeat: the agent is stored as sent and is healthy again;
-- created_at is kept from its first registration. Its tools are replaced by the call
-- (delete_agent_tools.sql, insert_agent_tool.sql) in the same transaction. The latest registration
-- of an agent id wins, once domain::agents::entity_may_update allowed it (checked in the same call).
-- An entity, once set, stays.
INSERT INTO agents (agent_id, name, agent_type, runtime, version, description, namespace,
                    http_host, http_port, a2a_producer, a2a_consumer, registration, topology,
                    entity_id, status, created_at, updated_at)
VALUES (:agent_id, :name, :agent_type, :runtime, :version, :description, :namespace,
        :http_host, :http_port, :a2a_producer, :a2a_consumer, :registration, :topology,
        :entity_id, 'healthy', :now, :now)
ON CONFLICT (agent_id) DO UPDATE SET
  name = excluded.name,
  agent_type = excluded.agent_type,
  runtime = excluded.runtime,
  version = excluded.version,
  description = excluded.description,
  namespace = excluded.namespace,
  http_host = excluded.http_host,
  http_port = excluded.http_port,
  a2a_producer = excluded.a2a_producer,
  a2a_consumer = excluded.a2a_consumer,
  registration = excluded.registration,
  topology = excluded.topology,
  entity_id = coalesce(excluded.entity_id, agents.entity_id),
  status = 'healthy',
  updated_at = :now
