-- replace_resolution_audit: a consumer's resolution-audit memory becomes $3, in the transaction
-- that records its audit events, only if it is still $2, the memory the events were decided
-- against (domain::registry_events::AuditMemory). No row: another replica recorded events for
-- it meanwhile (this statement waited for that transaction's row lock, then found the memory
-- changed), or the agent is gone.
UPDATE agents SET resolution_audit = $3
WHERE agent_id = $1 AND resolution_audit = $2::jsonb
