-- What the registry's log holds of each consumer's dependency-resolution audit trail, per
-- dependency (function name, then position): the type and the trace fingerprint of its newest
-- dependency_resolved / dependency_unresolved event, and the producer its newest
-- dependency_resolved chose. Kept with the agent, so that a full heartbeat decides whether to
-- record an event without reading the log; replaced, in the transaction that records the events,
-- only when an event is recorded.

ALTER TABLE agents ADD COLUMN resolution_audit jsonb NOT NULL DEFAULT '{}';
