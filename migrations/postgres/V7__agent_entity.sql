-- The entity whose CA vouched for the client certificate an agent registered with (mTLS
-- registration trust). Set, the registry calls the agent over HTTPS and only that entity may
-- update the agent. NULL for an agent that registered without a verified certificate.

ALTER TABLE agents ADD COLUMN entity_id text;
