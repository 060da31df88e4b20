//! Agent statements on the embedded file: registration, liveness, deregistration and what
//! resolution reads. An agent that goes away takes its live jobs with it in the same call (T8).

use std::time::Duration;

use async_trait::async_trait;
use rusqlite::{params, Connection, OptionalExtension, Row};

use super::{decode, encode, json, now_micros, seconds_micros, time_of, EmbeddedStore};
use crate::store::{
    AgentRow, AgentStore, Liveness, MeshSnapshot, NewRegistration, Registered, StoreError, ToolRow,
};
use crate::wire::AgentStatus;

#[async_trait]
impl AgentStore for EmbeddedStore {
    async fn register_agent(&self, agent: &NewRegistration<'_>) -> Result<Registered, StoreError> {
        let stored = StoredAgent::from_registration(agent)?;
        self.run(move |db| {
            let now = now_micros();
            let previous: Option<(String, String)> = db
                .prepare_cached("SELECT status, topology FROM agents WHERE agent_id = ?1")?
                .query_row([&stored.agent_id], |row| Ok((row.get(0)?, row.get(1)?)))
                .optional()?;
            let created = previous.is_none();
            // A change of what others resolve against (or a return) is a topology change.
            let topology_changed = previous.is_none_or(|(status, topology)| {
                status != "healthy" || topology != stored.topology
            });
            db.prepare_cached(
                "INSERT INTO agents (agent_id, name, agent_type, runtime, version, description, \
                   namespace, http_host, http_port, a2a_producer, a2a_consumer, registration, \
                   topology, status, created_at, updated_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, 'healthy', \
                   ?14, ?14) \
                 ON CONFLICT (agent_id) DO UPDATE SET name = excluded.name, \
                   agent_type = excluded.agent_type, runtime = excluded.runtime, \
                   version = excluded.version, description = excluded.description, \
                   namespace = excluded.namespace, http_host = excluded.http_host, \
                   http_port = excluded.http_port, a2a_producer = excluded.a2a_producer, \
                   a2a_consumer = excluded.a2a_consumer, registration = excluded.registration, \
                   topology = excluded.topology, status = 'healthy', updated_at = ?14",
            )?
            .execute(params![
                stored.agent_id,
                stored.name,
                stored.agent_type,
                stored.runtime,
                stored.version,
                stored.description,
                stored.namespace,
                stored.http_host,
                stored.http_port,
                stored.a2a_producer,
                stored.a2a_consumer,
                stored.registration,
                stored.topology,
                now,
            ])?;
            let agent_id = &stored.agent_id;
            db.prepare_cached("DELETE FROM agent_tools WHERE agent_id = ?1")?
                .execute([agent_id])?;
            let mut insert = db.prepare_cached(
                "INSERT INTO agent_tools (agent_id, position, function_name, capability, \
                   version, description, tags, kwargs, dependencies, has_required_dependencies) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
            )?;
            for (position, tool) in (1_i64..).zip(&stored.tools) {
                insert.execute(params![
                    agent_id,
                    position,
                    tool.function_name,
                    tool.capability,
                    tool.version,
                    tool.description,
                    tool.tags,
                    tool.kwargs,
                    tool.dependencies,
                    tool.has_required_dependencies,
                ])?;
            }
            let topology_version = if topology_changed {
                bump_topology(db)?
            } else {
                topology_version(db)?
            };
            db.prepare_cached("UPDATE agents SET topology_seen = ?2 WHERE agent_id = ?1")?
                .execute(params![agent_id, topology_version])?;
            Ok(Registered {
                created,
                topology_version,
            })
        })
        .await
    }

    async fn deregister_agent(&self, agent_id: &str) -> Result<Option<i64>, StoreError> {
        let agent_id = agent_id.to_owned();
        self.run(move |db| {
            let departed = db
                .prepare_cached(
                    "UPDATE agents SET status = 'unhealthy' \
                     WHERE agent_id = ?1 AND status <> 'unhealthy'",
                )?
                .execute([&agent_id])?
                > 0;
            if !departed {
                return Ok(None);
            }
            Ok(Some(bump_topology(db)?))
        })
        .await
    }

    async fn expire_silent_agents(
        &self,
        silent_for: Duration,
    ) -> Result<(Vec<String>, Option<i64>), StoreError> {
        self.run(move |db| {
            let agents: Vec<String> = db
                .prepare_cached(
                    "UPDATE agents SET status = 'unhealthy' \
                     WHERE status <> 'unhealthy' AND updated_at < ?1 RETURNING agent_id",
                )?
                .query_map(
                    [now_micros() - seconds_micros(silent_for.as_secs_f64())],
                    |row| row.get(0),
                )?
                .collect::<Result<_, _>>()?;
            if agents.is_empty() {
                return Ok((agents, None));
            }
            tracing::info!(?agents, "silent agents marked unhealthy");
            Ok((agents, Some(bump_topology(db)?)))
        })
        .await
    }

    async fn record_heartbeats(
        &self,
        agent_ids: &[String],
    ) -> Result<(Vec<(String, AgentStatus)>, Option<i64>), StoreError> {
        let agent_ids = agent_ids.to_vec();
        self.run(move |db| {
            let now = now_micros();
            let mut beat = db.prepare_cached(
                "UPDATE agents SET updated_at = ?2 WHERE agent_id = ?1 AND status <> 'unhealthy'",
            )?;
            let mut read = db.prepare_cached("SELECT status FROM agents WHERE agent_id = ?1")?;
            let mut statuses = Vec::with_capacity(agent_ids.len());
            for agent_id in agent_ids {
                beat.execute(params![agent_id, now])?;
                let status: Option<String> =
                    read.query_row([&agent_id], |row| row.get(0)).optional()?;
                if let Some(status) = status {
                    statuses.push((agent_id, parse_status(&status)?));
                }
            }
            let version = match statuses.is_empty() {
                true => None,
                false => Some(topology_version(db)?),
            };
            Ok((statuses, version))
        })
        .await
    }

    async fn agent_liveness(&self, agent_id: &str) -> Result<Option<Liveness>, StoreError> {
        let agent_id = agent_id.to_owned();
        self.run(move |db| {
            db.prepare_cached(
                "SELECT a.status, a.topology_seen, t.version AS topology_version \
                 FROM agents a CROSS JOIN mesh_topology t WHERE a.agent_id = ?1",
            )?
            .query_row([agent_id], |row| Ok(liveness_from_row(row)))
            .optional()?
            .transpose()
        })
        .await
    }

    async fn pending_jobs_for(&self, agent_id: &str) -> Result<i64, StoreError> {
        let agent_id = agent_id.to_owned();
        self.run(move |db| {
            Ok(db
                .prepare_cached(
                    "SELECT count(*) FROM ( \
                       SELECT 1 FROM jobs \
                       WHERE status = 'working' AND owner_instance_id IS NULL \
                         AND attempt_count <= max_retries \
                         AND capability IN ( \
                           SELECT t.capability FROM agent_tools t JOIN agents a USING (agent_id) \
                           WHERE a.name = (SELECT name FROM agents WHERE agent_id = ?1)) \
                       LIMIT 100)",
                )?
                .query_row([agent_id], |row| row.get(0))?)
        })
        .await
    }

    async fn mesh_snapshot(&self) -> Result<MeshSnapshot, StoreError> {
        self.snapshot(
            "SELECT agent_id, function_name, capability, version, description, tags, kwargs, \
               dependencies, NULL AS input_schema, NULL AS llm_filter, NULL AS llm_provider \
             FROM agent_tools ORDER BY agent_id, position",
        )
        .await
    }

    /// The LLM fields live only in the agent's topology (one element per tool position).
    async fn llm_snapshot(&self) -> Result<MeshSnapshot, StoreError> {
        self.snapshot(
            "SELECT t.agent_id, t.function_name, t.capability, t.version, t.description, \
               t.tags, t.kwargs, t.dependencies, \
               json_extract(x.tool, '$.input_schema') AS input_schema, \
               json_extract(x.tool, '$.llm_filter') AS llm_filter, \
               json_extract(x.tool, '$.llm_provider') AS llm_provider \
             FROM agent_tools t \
             LEFT JOIN ( \
               SELECT a.agent_id, e.value AS tool, e.key + 1 AS position \
               FROM agents a, json_each(a.topology, '$.tools') AS e \
             ) x ON x.agent_id = t.agent_id AND x.position = t.position \
             ORDER BY t.agent_id, t.position",
        )
        .await
    }

    async fn agent(&self, agent_id: &str) -> Result<Option<AgentRow>, StoreError> {
        let agent_id = agent_id.to_owned();
        self.run(move |db| {
            db.prepare_cached(concat!(
                "SELECT ",
                agent_columns!(),
                " FROM agents WHERE agent_id = ?1"
            ))?
            .query_row([agent_id], |row| Ok(agent_from_row(row)))
            .optional()?
            .transpose()
        })
        .await
    }
}

impl EmbeddedStore {
    /// Every agent, then the tools `tools_statement` reads.
    async fn snapshot(&self, tools_statement: &'static str) -> Result<MeshSnapshot, StoreError> {
        self.run(move |db| {
            let agents = db
                .prepare_cached(concat!(
                    "SELECT ",
                    agent_columns!(),
                    " FROM agents ORDER BY agent_id"
                ))?
                .query_map([], |row| Ok(agent_from_row(row)))?
                .map(|row| row?)
                .collect::<Result<_, _>>()?;
            let tools = db
                .prepare_cached(tools_statement)?
                .query_map([], |row| Ok(tool_from_row(row)))?
                .map(|row| row?)
                .collect::<Result<_, _>>()?;
            Ok(MeshSnapshot { agents, tools })
        })
        .await
    }
}

/// A registration, owned and encoded, ready to store.
struct StoredAgent {
    agent_id: String,
    name: String,
    agent_type: String,
    runtime: String,
    version: String,
    description: String,
    namespace: String,
    http_host: Option<String>,
    http_port: Option<i32>,
    a2a_producer: bool,
    a2a_consumer: bool,
    registration: String,
    topology: String,
    tools: Vec<StoredTool>,
}

impl StoredAgent {
    fn from_registration(agent: &NewRegistration<'_>) -> Result<StoredAgent, StoreError> {
        let tools = agent
            .tools
            .iter()
            .map(|tool| {
                Ok(StoredTool {
                    function_name: tool.function_name.to_owned(),
                    capability: tool.capability.to_owned(),
                    version: tool.version.to_owned(),
                    description: tool.description.to_owned(),
                    tags: encode(tool.tags)?,
                    kwargs: tool
                        .kwargs
                        .map(|k| k.get().to_owned())
                        .filter(|k| k != "null"),
                    dependencies: encode(tool.dependencies)?,
                    has_required_dependencies: tool.dependencies.iter().any(|d| d.required),
                })
            })
            .collect::<Result<_, StoreError>>()?;
        Ok(StoredAgent {
            agent_id: agent.agent_id.to_owned(),
            name: agent.name.to_owned(),
            agent_type: agent.agent_type.to_owned(),
            runtime: agent.runtime.to_owned(),
            version: agent.version.to_owned(),
            description: agent.description.to_owned(),
            namespace: agent.namespace.to_owned(),
            http_host: agent.http_host.map(str::to_owned),
            http_port: agent.http_port,
            a2a_producer: agent.a2a_producer,
            a2a_consumer: agent.a2a_consumer,
            registration: agent.body.get().to_owned(),
            topology: encode(&agent.topology())?,
            tools,
        })
    }
}

/// A tool of a registration, ready to store.
struct StoredTool {
    function_name: String,
    capability: String,
    version: String,
    description: String,
    tags: String,
    kwargs: Option<String>,
    dependencies: String,
    has_required_dependencies: bool,
}

fn topology_version(db: &Connection) -> Result<i64, StoreError> {
    Ok(db
        .prepare_cached("SELECT version FROM mesh_topology")?
        .query_row([], |row| row.get(0))?)
}

/// A topology change: the new version.
fn bump_topology(db: &Connection) -> Result<i64, StoreError> {
    Ok(db
        .prepare_cached("UPDATE mesh_topology SET version = version + 1 RETURNING version")?
        .query_row([], |row| row.get(0))?)
}

fn parse_status(raw: &str) -> Result<AgentStatus, StoreError> {
    AgentStatus::parse(raw).ok_or_else(|| StoreError::Corrupt(format!("agent status {raw:?}")))
}

fn agent_status(row: &Row) -> Result<AgentStatus, StoreError> {
    parse_status(&row.get::<_, String>("status")?)
}

fn liveness_from_row(row: &Row) -> Result<Liveness, StoreError> {
    Ok(Liveness {
        status: agent_status(row)?,
        topology_seen: row.get("topology_seen")?,
        topology_version: row.get("topology_version")?,
    })
}

fn agent_from_row(row: &Row) -> Result<AgentRow, StoreError> {
    Ok(AgentRow {
        agent_id: row.get("agent_id")?,
        name: row.get("name")?,
        agent_type: row.get("agent_type")?,
        runtime: row.get("runtime")?,
        version: row.get("version")?,
        description: row.get("description")?,
        namespace: row.get("namespace")?,
        http_host: row.get("http_host")?,
        http_port: row.get("http_port")?,
        a2a_producer: row.get("a2a_producer")?,
        a2a_consumer: row.get("a2a_consumer")?,
        status: agent_status(row)?,
        created_at: time_of(row.get("created_at")?),
        updated_at: time_of(row.get("updated_at")?),
    })
}

fn tool_from_row(row: &Row) -> Result<ToolRow, StoreError> {
    Ok(ToolRow {
        agent_id: row.get("agent_id")?,
        function_name: row.get("function_name")?,
        capability: row.get("capability")?,
        version: row.get("version")?,
        description: row.get("description")?,
        tags: decode(&row.get::<_, String>("tags")?, "tags")?,
        kwargs: json(row, "kwargs")?,
        dependencies: decode(&row.get::<_, String>("dependencies")?, "dependencies")?,
        input_schema: json(row, "input_schema")?,
        llm_filter: json(row, "llm_filter")?,
        llm_provider: row
            .get::<_, Option<String>>("llm_provider")?
            .map(|text| decode(&text, "llm_provider"))
            .transpose()?,
    })
}
