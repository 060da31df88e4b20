-- Agents and their tools (contract §8; the registration schema is the reference's
-- MeshAgentRegistration), and the mesh-wide topology version behind HEAD /heartbeat's 202.

CREATE TABLE agents (
    agent_id      text PRIMARY KEY,
    name          text NOT NULL,
    agent_type    text NOT NULL,
    runtime       text NOT NULL,
    version       text NOT NULL DEFAULT '',
    description   text NOT NULL DEFAULT '',
    namespace     text NOT NULL,
    http_host     text,
    http_port     integer,
    a2a_producer  boolean NOT NULL DEFAULT false,
    a2a_consumer  boolean NOT NULL DEFAULT false,
    status        text NOT NULL DEFAULT 'healthy'
                  CHECK (status IN ('healthy', 'unhealthy', 'unknown')),
    -- The last registration body exactly as the agent sent it (schemas, kwargs and all).
    registration  json NOT NULL,
    -- What other agents' resolution depends on (endpoint, tools, tags, versions, dependencies):
    -- a change of it is a topology change.
    topology      jsonb NOT NULL,
    -- Mesh topology version this agent last saw in a full heartbeat.
    topology_seen bigint NOT NULL DEFAULT 0,
    created_at    timestamptz NOT NULL DEFAULT now(),
    -- Last heartbeat (full or HEAD; HEADs are written in batches).
    updated_at    timestamptz NOT NULL DEFAULT now()
);

-- X-Mesh-Pending-Jobs looks at every agent that shares a name (a replica group).
CREATE INDEX agents_name_idx ON agents (name);

CREATE TABLE agent_tools (
    agent_id      text NOT NULL REFERENCES agents (agent_id) ON DELETE CASCADE,
    position      integer NOT NULL,
    function_name text NOT NULL,
    capability    text NOT NULL,
    version       text NOT NULL,
    description   text NOT NULL DEFAULT '',
    tags          text[] NOT NULL DEFAULT '{}',
    kwargs        jsonb,
    dependencies  jsonb NOT NULL DEFAULT '[]',
    -- The claim gate only looks further when this is set.
    has_required_dependencies boolean NOT NULL DEFAULT false,
    PRIMARY KEY (agent_id, position)
);

CREATE INDEX agent_tools_capability_idx ON agent_tools (capability);

-- Bumped whenever an agent appears, disappears, turns unhealthy or changes what it offers.
CREATE TABLE mesh_topology (
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    version   bigint NOT NULL
);
INSERT INTO mesh_topology (singleton, version) VALUES (true, 0);
