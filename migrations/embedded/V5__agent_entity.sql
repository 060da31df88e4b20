-- The entity whose CA vouched for the client certificate an agent registered with (PostgreSQL's
-- V7).

ALTER TABLE agents ADD COLUMN entity_id TEXT;
