-- resolution_audit: a consumer's resolution-audit memory as it is now, after
-- replace_resolution_audit found it changed.
SELECT resolution_audit FROM agents WHERE agent_id = :agent_id
