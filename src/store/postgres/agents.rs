//! Agent statements: registration, liveness (batched heartbeats, expiry), deregistration, the
//! mesh snapshot that resolution and `GET /agents` read, and the pending-jobs hint.
//!
//! An agent that goes away (DELETE or silence) only turns unhealthy: its jobs stay with it until
//! their leases lapse, because an older SDK keeps running a job after it deregisters (see
//! docs/ownership.md).

use std::time::Duration;

use async_trait::async_trait;
use tokio_postgres::types::Json;
use tokio_postgres::Row;

use super::{column, PgStore};
use crate::store::{
    AgentRow, AgentStore, Liveness, MeshSnapshot, NewRegistration, Registered, StoreError, ToolRow,
};
use crate::wire::{AgentStatus, DependencySpec, LlmProviderSpec, RawJson};

#[async_trait]
impl AgentStore for PgStore {
    /// Registers or refreshes an agent from a full heartbeat, in one transaction: the agent row
    /// (healthy, seen now), its tools (replaced), and the topology version, bumped only when the
    /// agent is new, comes back, or changed what it offers (so a steady mesh sees no 202 storms).
    async fn register_agent(&self, agent: &NewRegistration<'_>) -> Result<Registered, StoreError> {
        let mut conn = self.conn().await?;
        let tx = conn.transaction().await?;
        let upsert = tx
            .prepare_cached(
                // `previous` is the row as this statement found it (the upsert's own change is
                // not visible to it); concurrent registrations are serialised by the conflict.
                "WITH previous AS ( \
                   SELECT status, topology FROM agents WHERE agent_id = $1) \
                 INSERT INTO agents (agent_id, name, agent_type, runtime, version, description, \
                   namespace, http_host, http_port, a2a_producer, a2a_consumer, registration, \
                   topology, status, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, 'healthy', now()) \
                 ON CONFLICT (agent_id) DO UPDATE SET name = excluded.name, \
                   agent_type = excluded.agent_type, runtime = excluded.runtime, \
                   version = excluded.version, description = excluded.description, \
                   namespace = excluded.namespace, http_host = excluded.http_host, \
                   http_port = excluded.http_port, a2a_producer = excluded.a2a_producer, \
                   a2a_consumer = excluded.a2a_consumer, registration = excluded.registration, \
                   topology = excluded.topology, status = 'healthy', updated_at = now() \
                 RETURNING NOT EXISTS (SELECT 1 FROM previous) AS created, \
                   NOT EXISTS (SELECT 1 FROM previous \
                     WHERE status = 'healthy' AND topology = $13::jsonb) AS topology_changed",
            )
            .await?;
        let row = tx
            .query_one(
                &upsert,
                &[
                    &agent.agent_id,
                    &agent.name,
                    &agent.agent_type,
                    &agent.runtime,
                    &agent.version,
                    &agent.description,
                    &agent.namespace,
                    &agent.http_host,
                    &agent.http_port,
                    &agent.a2a_producer,
                    &agent.a2a_consumer,
                    &Json(agent.body),
                    &Json(agent.topology()),
                ],
            )
            .await?;
        let created: bool = column(&row, "created")?;
        let topology_changed: bool = column(&row, "topology_changed")?;

        let clear = tx
            .prepare_cached("DELETE FROM agent_tools WHERE agent_id = $1")
            .await?;
        tx.execute(&clear, &[&agent.agent_id]).await?;
        let insert = tx
            .prepare_cached(
                "INSERT INTO agent_tools (agent_id, position, function_name, capability, version, \
                   description, tags, kwargs, dependencies, has_required_dependencies) \
                 SELECT $1, position, tool->>'function_name', tool->>'capability', \
                   tool->>'version', tool->>'description', \
                   ARRAY(SELECT jsonb_array_elements_text(tool->'tags')), \
                   nullif(tool->'kwargs', 'null'::jsonb), tool->'dependencies', \
                   jsonb_path_exists(tool->'dependencies', '$[*] ? (@.required == true)') \
                 FROM jsonb_array_elements($2::jsonb) WITH ORDINALITY AS t(tool, position)",
            )
            .await?;
        tx.execute(&insert, &[&agent.agent_id, &Json(&agent.tools)])
            .await?;

        let seen = tx
            .prepare_cached(
                "WITH bumped AS ( \
                   UPDATE mesh_topology SET version = version + 1 WHERE $2 RETURNING version) \
                 UPDATE agents SET topology_seen = \
                   coalesce((SELECT version FROM bumped), (SELECT version FROM mesh_topology)) \
                 WHERE agent_id = $1 RETURNING topology_seen",
            )
            .await?;
        let row = tx
            .query_one(&seen, &[&agent.agent_id, &topology_changed])
            .await?;
        let topology_version = column(&row, "topology_seen")?;
        tx.commit().await?;
        Ok(Registered {
            created,
            topology_version,
        })
    }

    /// `DELETE /agents/{id}`: the agent turns unhealthy. Returns the new topology version when
    /// the agent was live (nothing happens otherwise).
    async fn deregister_agent(&self, agent_id: &str) -> Result<Option<i64>, StoreError> {
        let conn = self.conn().await?;
        let statement = conn
            .prepare_cached(
                "WITH departed AS ( \
                   UPDATE agents SET status = 'unhealthy' \
                   WHERE agent_id = $1 AND status <> 'unhealthy' RETURNING agent_id), \
                 bumped AS ( \
                   UPDATE mesh_topology SET version = version + 1 \
                   WHERE EXISTS (SELECT 1 FROM departed) RETURNING version) \
                 SELECT (SELECT version FROM bumped) AS version",
            )
            .await?;
        let row = conn.query_one(&statement, &[&agent_id]).await?;
        Ok(column(&row, "version")?)
    }

    /// Agents silent for longer than `silent_for` turn unhealthy. Returns those agents and, when
    /// there were any, the new topology version.
    async fn expire_silent_agents(
        &self,
        silent_for: Duration,
    ) -> Result<(Vec<String>, Option<i64>), StoreError> {
        let conn = self.conn().await?;
        let statement = conn
            .prepare_cached(
                "WITH silent AS ( \
                   UPDATE agents SET status = 'unhealthy' \
                   WHERE status <> 'unhealthy' AND updated_at < now() - make_interval(secs => $1) \
                   RETURNING agent_id), \
                 bumped AS ( \
                   UPDATE mesh_topology SET version = version + 1 \
                   WHERE EXISTS (SELECT 1 FROM silent) RETURNING version) \
                 SELECT ARRAY(SELECT agent_id FROM silent) AS agents, \
                   (SELECT version FROM bumped) AS version",
            )
            .await?;
        let row = conn
            .query_one(&statement, &[&silent_for.as_secs_f64()])
            .await?;
        let agents: Vec<String> = column(&row, "agents")?;
        if !agents.is_empty() {
            tracing::info!(?agents, "silent agents marked unhealthy");
        }
        Ok((agents, column(&row, "version")?))
    }

    /// Stamps the heartbeats a replica collected since its last flush (live agents only) and
    /// answers every one of those agents' current status, plus the topology version.
    async fn record_heartbeats(
        &self,
        agent_ids: &[String],
    ) -> Result<(Vec<(String, AgentStatus)>, Option<i64>), StoreError> {
        let conn = self.conn().await?;
        let statement = conn
            .prepare_cached(
                "WITH beaten AS ( \
                   UPDATE agents SET updated_at = now() \
                   WHERE agent_id = ANY($1) AND status <> 'unhealthy' RETURNING agent_id) \
                 SELECT agent_id, status, (SELECT version FROM mesh_topology) AS topology_version \
                 FROM agents WHERE agent_id = ANY($1)",
            )
            .await?;
        let rows = conn.query(&statement, &[&agent_ids]).await?;
        let mut version = None;
        let mut statuses = Vec::with_capacity(rows.len());
        for row in &rows {
            version = Some(column(row, "topology_version")?);
            statuses.push((column(row, "agent_id")?, agent_status(row)?));
        }
        Ok((statuses, version))
    }

    /// The agent's status and topology bookkeeping, or `None` when it never registered.
    async fn agent_liveness(&self, agent_id: &str) -> Result<Option<Liveness>, StoreError> {
        let conn = self.conn().await?;
        let statement = conn
            .prepare_cached(
                "SELECT a.status, a.topology_seen, t.version AS topology_version \
                 FROM agents a CROSS JOIN mesh_topology t WHERE a.agent_id = $1",
            )
            .await?;
        conn.query_opt(&statement, &[&agent_id])
            .await?
            .map(|row| {
                Ok(Liveness {
                    status: agent_status(&row)?,
                    topology_seen: column(&row, "topology_seen")?,
                    topology_version: column(&row, "topology_version")?,
                })
            })
            .transpose()
    }

    /// Exact number (capped at 100) of claimable jobs for the capabilities served by every agent
    /// that shares this agent's name (decisions row 18).
    async fn pending_jobs_for(&self, agent_id: &str) -> Result<i64, StoreError> {
        let conn = self.conn().await?;
        let statement = conn
            .prepare_cached(
                "SELECT count(*) AS pending FROM ( \
                   SELECT 1 FROM jobs \
                   WHERE status = 'working' AND owner_instance_id IS NULL \
                     AND attempt_count <= max_retries \
                     AND capability IN ( \
                       SELECT t.capability FROM agent_tools t JOIN agents a USING (agent_id) \
                       WHERE a.name = (SELECT name FROM agents WHERE agent_id = $1)) \
                   LIMIT 100) AS pending",
            )
            .await?;
        column(&conn.query_one(&statement, &[&agent_id]).await?, "pending")
    }

    /// Every agent and tool, for resolution and listing (no LLM fields: they cost a read of
    /// every agent's topology).
    async fn mesh_snapshot(&self) -> Result<MeshSnapshot, StoreError> {
        self.snapshot(
            "SELECT agent_id, function_name, capability, version, description, tags, kwargs, \
               dependencies, NULL::jsonb AS input_schema, NULL::jsonb AS llm_filter, \
               NULL::jsonb AS llm_provider \
             FROM agent_tools ORDER BY agent_id, position",
        )
        .await
    }

    /// The same with each tool's LLM fields, which live only in its agent's topology (one
    /// element per tool position): unnested once per agent rather than indexed once per tool.
    async fn llm_snapshot(&self) -> Result<MeshSnapshot, StoreError> {
        self.snapshot(
            "SELECT t.agent_id, t.function_name, t.capability, t.version, t.description, \
               t.tags, t.kwargs, t.dependencies, x.tool->'input_schema' AS input_schema, \
               x.tool->'llm_filter' AS llm_filter, x.tool->'llm_provider' AS llm_provider \
             FROM agent_tools t \
             LEFT JOIN ( \
               SELECT a.agent_id, e.tool, e.position \
               FROM agents a, \
                 jsonb_array_elements(a.topology->'tools') WITH ORDINALITY AS e(tool, position) \
             ) x ON x.agent_id = t.agent_id AND x.position = t.position \
             ORDER BY t.agent_id, t.position",
        )
        .await
    }

    async fn agent(&self, agent_id: &str) -> Result<Option<AgentRow>, StoreError> {
        let conn = self.conn().await?;
        let statement = conn
            .prepare_cached(concat!(
                "SELECT ",
                agent_columns!(),
                " FROM agents WHERE agent_id = $1"
            ))
            .await?;
        conn.query_opt(&statement, &[&agent_id])
            .await?
            .as_ref()
            .map(agent_from_row)
            .transpose()
    }
}

impl PgStore {
    /// Every agent, then the tools `tools_statement` reads.
    async fn snapshot(&self, tools_statement: &str) -> Result<MeshSnapshot, StoreError> {
        let conn = self.conn().await?;
        let agents = conn
            .prepare_cached(concat!(
                "SELECT ",
                agent_columns!(),
                " FROM agents ORDER BY agent_id"
            ))
            .await?;
        let tools = conn.prepare_cached(tools_statement).await?;
        // Two reads: a tool registered in between, whose agent the first read missed, is ignored.
        let agents = conn.query(&agents, &[]).await?;
        let tools = conn.query(&tools, &[]).await?;
        Ok(MeshSnapshot {
            agents: agents
                .iter()
                .map(agent_from_row)
                .collect::<Result<_, _>>()?,
            tools: tools.iter().map(tool_from_row).collect::<Result<_, _>>()?,
        })
    }
}

fn agent_status(row: &Row) -> Result<AgentStatus, StoreError> {
    let raw: &str = column(row, "status")?;
    AgentStatus::parse(raw).ok_or_else(|| StoreError::Corrupt(format!("agent status {raw:?}")))
}

fn agent_from_row(row: &Row) -> Result<AgentRow, StoreError> {
    Ok(AgentRow {
        agent_id: column(row, "agent_id")?,
        name: column(row, "name")?,
        agent_type: column(row, "agent_type")?,
        runtime: column(row, "runtime")?,
        version: column(row, "version")?,
        description: column(row, "description")?,
        namespace: column(row, "namespace")?,
        http_host: column(row, "http_host")?,
        http_port: column(row, "http_port")?,
        a2a_producer: column(row, "a2a_producer")?,
        a2a_consumer: column(row, "a2a_consumer")?,
        status: agent_status(row)?,
        created_at: column(row, "created_at")?,
        updated_at: column(row, "updated_at")?,
    })
}

fn tool_from_row(row: &Row) -> Result<ToolRow, StoreError> {
    Ok(ToolRow {
        agent_id: column(row, "agent_id")?,
        function_name: column(row, "function_name")?,
        capability: column(row, "capability")?,
        version: column(row, "version")?,
        description: column(row, "description")?,
        tags: column(row, "tags")?,
        kwargs: column::<Option<Json<RawJson>>>(row, "kwargs")?.map(|j| j.0),
        dependencies: column::<Json<Vec<DependencySpec>>>(row, "dependencies")?.0,
        input_schema: column::<Option<Json<RawJson>>>(row, "input_schema")?.map(|j| j.0),
        llm_filter: column::<Option<Json<RawJson>>>(row, "llm_filter")?.map(|j| j.0),
        llm_provider: column::<Option<Json<LlmProviderSpec>>>(row, "llm_provider")?.map(|j| j.0),
    })
}
