-- resolution_audit: a consumer's resolution-audit memory as it is now, to decide its audit events
-- again after replace_resolution_audit found it changed.
SELECT resolution_audit FROM agents WHERE agent_id = $1
