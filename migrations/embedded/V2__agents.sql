-- The embedded schema of agents, their tools and the mesh topology version (PostgreSQL's V2 in
-- SQLite's types; tags and dependencies are JSON arrays in TEXT).

CREATE TABLE agents (
    agent_id      TEXT PRIMARY KEY,
    name          TEXT NOT NULL,
    agent_type    TEXT NOT NULL,
    runtime       TEXT NOT NULL,
    version       TEXT NOT NULL DEFAULT '',
    description   TEXT NOT NULL DEFAULT '',
    namespace     TEXT NOT NULL,
    http_host     TEXT,
    http_port     INTEGER,
    a2a_producer  INTEGER NOT NULL DEFAULT 0,
    a2a_consumer  INTEGER NOT NULL DEFAULT 0,
    status        TEXT NOT NULL DEFAULT 'healthy'
                  CHECK (status IN ('healthy', 'unhealthy', 'unknown')),
    registration  TEXT NOT NULL,
    topology      TEXT NOT NULL,
    topology_seen INTEGER NOT NULL DEFAULT 0,
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL
) STRICT;

CREATE INDEX agents_name_idx ON agents (name);

CREATE TABLE agent_tools (
    agent_id      TEXT NOT NULL REFERENCES agents (agent_id) ON DELETE CASCADE,
    position      INTEGER NOT NULL,
    function_name TEXT NOT NULL,
    capability    TEXT NOT NULL,
    version       TEXT NOT NULL,
    description   TEXT NOT NULL DEFAULT '',
    tags          TEXT NOT NULL DEFAULT '[]',
    kwargs        TEXT,
    dependencies  TEXT NOT NULL DEFAULT '[]',
    has_required_dependencies INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (agent_id, position)
) STRICT;

CREATE INDEX agent_tools_capability_idx ON agent_tools (capability);

CREATE TABLE mesh_topology (
    singleton INTEGER PRIMARY KEY CHECK (singleton = 1),
    version   INTEGER NOT NULL
) STRICT;
INSERT INTO mesh_topology (singleton, version) VALUES (1, 0);
