-- replace_resolution_audit: a consumer's resolution-audit memory becomes :memory, in the call that
-- records its audit events, only if it is still :expected, the memory the events were decided
-- against (domain::registry_events::AuditMemory). No row: the agent is gone, or its memory
-- changed meanwhile.
UPDATE agents SET resolution_audit = :memory
WHERE agent_id = :agent_id AND resolution_audit = :expected
