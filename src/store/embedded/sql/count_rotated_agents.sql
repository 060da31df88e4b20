-- count_rotated_agents: POST /admin/rotate: the healthy agents (of :entity_id, or all when NULL)
-- that must register again after a certificate rotation.
SELECT count(*) FROM agents
WHERE status = 'healthy' AND (:entity_id IS NULL OR entity_id = :entity_id)
