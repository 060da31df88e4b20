-- upsert_agent: a full heartbeat registers or refreshes the agent: healthy, seen now, with
-- what it sent. Returns whether it is new and the row as this statement found it (`previous`
-- does not see the upsert's own change), from which the domain decides whether the topology
-- changed, and its resolution-audit memory (which the upsert leaves alone), against which the
-- registration decides its audit events. Concurrent registrations of one agent are serialised
-- by the conflict.
-- An agent an entity vouched for is updated only by that entity ($14;
-- domain::agents::entity_may_update): otherwise no row is returned and nothing changes. The
-- entity, once set, stays.
WITH previous AS (
  SELECT status, topology FROM agents WHERE agent_id = $1
)
INSERT INTO agents (agent_id, name, agent_type, runtime, version, description, namespace,
                    http_host, http_port, a2a_producer, a2a_consumer, registration, topology,
                    entity_id, status, updated_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, 'healthy', now())
ON CONFLICT (agent_id) DO UPDATE SET
  name = excluded.name, agent_type = excluded.agent_type, runtime = excluded.runtime,
  version = excluded.version, description = excluded.description,
  namespace = excluded.namespace, http_host = excluded.http_host,
  http_port = excluded.http_port, a2a_producer = excluded.a2a_producer,
  a2a_consumer = excluded.a2a_consumer, registration = excluded.registration,
  topology = excluded.topology, entity_id = coalesce(excluded.entity_id, agents.entity_id),
  status = 'healthy', updated_at = now()
WHERE agents.entity_id IS NULL OR agents.entity_id = ''
   OR agents.entity_id = excluded.entity_id
RETURNING NOT EXISTS (SELECT 1 FROM previous) AS created,
          (SELECT status FROM previous) AS previous_status,
          (SELECT topology FROM previous) AS previous_topology,
          resolution_audit
