//! Agent statements: registration, liveness (batched heartbeats, expiry), deregistration, the
//! mesh snapshot that resolution and `GET /agents` read, and the pending-jobs hint.
//!
//! An agent that goes away (DELETE or silence) only turns unhealthy: its jobs stay with it until
//! their leases lapse, because an older SDK keeps running a job after it deregisters (see
//! docs/ownership.md).

use std::time::Duration;

use async_trait::async_trait;
use serde_json::value::RawValue;
use tokio_postgres::types::Json;
use tokio_postgres::Row;

use super::{column, PgStore};
use crate::domain::agents::{
    add_required_edges, has_required_dependencies, required_cycle, topology_changed,
};
use crate::domain::registry_events::{self, AuditMemory};
use crate::store::{
    AgentRow, AgentStore, AuditEvent, AuditWrite, Liveness, MeshEvent, MeshEventQuery,
    MeshSnapshot, NewRegistration, NewTool, RegisterOutcome, Registered, SchemaEntry, StoreError,
    ToolRow,
};
use crate::wire::{AgentStatus, DependencySpec, LlmProviderSpec, RawJson};

/// Advisory-lock key of the required-dependency cycle check ("meshcyc1").
const REQUIRED_EDGES_LOCK_KEY: i64 = 0x6d65_7368_6379_6331;

#[async_trait]
impl AgentStore for PgStore {
    /// Registers or refreshes an agent from a full heartbeat, in one transaction: the agent row
    /// (healthy, seen now), its tools (replaced), and the topology version, bumped only when the
    /// agent is new, comes back, or changed what it offers (so a steady mesh sees no 202 storms).
    /// Long because the transaction's four statements read best in their order.
    async fn register_agent(
        &self,
        agent: &NewRegistration<'_>,
    ) -> Result<RegisterOutcome, StoreError> {
        let mut conn = self.conn().await?;
        let tx = conn.transaction().await?;
        let mut edges = agent.required_edges();
        if !edges.is_empty() {
            // One such check at a time across replicas, until this write commits: two
            // registrations each closing half of a loop cannot both pass.
            tx.execute(
                "SELECT pg_advisory_xact_lock($1)",
                &[&REQUIRED_EDGES_LOCK_KEY],
            )
            .await?;
            let others = tx
                .prepare_cached(include_str!("sql/required_edges.sql"))
                .await?;
            for row in tx.query(&others, &[&agent.agent_id]).await? {
                let capability: &str = column(&row, "capability")?;
                let dependencies: Json<Vec<DependencySpec>> = column(&row, "dependencies")?;
                add_required_edges(&mut edges, capability, &dependencies.0);
            }
            if let Some(cycle) = required_cycle(&edges) {
                return Ok(RegisterOutcome::RequiredCycle(cycle));
            }
        }
        let upsert = tx
            .prepare_cached(include_str!("sql/upsert_agent.sql"))
            .await?;
        let topology = agent.topology();
        let row = tx
            .query_opt(
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
                    &Json(&topology),
                    &agent.entity_id,
                ],
            )
            .await?;
        // No row: another entity vouched for the agent (the transaction rolls back on drop).
        let Some(row) = row else {
            return Ok(RegisterOutcome::OwnedByAnotherEntity);
        };
        let created: bool = column(&row, "created")?;
        let previous_status = column::<Option<&str>>(&row, "previous_status")?
            .map(parse_status)
            .transpose()?;
        let previous_topology: Option<Json<serde_json::Value>> = column(&row, "previous_topology")?;
        let resolution_audit = column::<Json<RawJson>>(&row, "resolution_audit")?.0;
        let topology_changed = topology_changed(
            previous_status.zip(previous_topology.as_ref().map(|t| &t.0)),
            &topology,
        );
        if let Some((event_type, data)) = registry_events::on_registration(
            agent.agent_type,
            agent.name,
            agent.version,
            created,
            previous_status,
        ) {
            let record = tx
                .prepare_cached(include_str!("sql/record_mesh_event.sql"))
                .await?;
            let function_name: Option<&str> = None;
            tx.execute(
                &record,
                &[&event_type, &agent.agent_id, &function_name, &Json(&data)],
            )
            .await?;
        }

        let clear = tx
            .prepare_cached(include_str!("sql/clear_agent_tools.sql"))
            .await?;
        tx.execute(&clear, &[&agent.agent_id]).await?;
        let insert = tx
            .prepare_cached(include_str!("sql/insert_agent_tools.sql"))
            .await?;
        let gated: Vec<bool> = agent
            .tools
            .iter()
            .map(|tool| has_required_dependencies(tool.dependencies))
            .collect();
        tx.execute(&insert, &[&agent.agent_id, &Json(&agent.tools), &gated])
            .await?;
        let published: Vec<_> = agent
            .tools
            .iter()
            .flat_map(NewTool::published_schemas)
            .map(|schema| serde_json::json!({"hash": schema.hash, "canonical": schema.canonical}))
            .collect();
        if !published.is_empty() {
            let insert = tx
                .prepare_cached(include_str!("sql/insert_schema_entries.sql"))
                .await?;
            tx.execute(&insert, &[&Json(&published), &agent.runtime])
                .await?;
        }

        let seen = tx
            .prepare_cached(include_str!("sql/mark_topology_seen.sql"))
            .await?;
        let row = tx
            .query_one(&seen, &[&agent.agent_id, &topology_changed])
            .await?;
        let topology_version = column(&row, "topology_seen")?;
        tx.commit().await?;
        Ok(RegisterOutcome::Registered(Registered {
            created,
            topology_version,
            resolution_audit,
        }))
    }

    async fn rotate_agents(
        &self,
        entity_id: Option<&str>,
    ) -> Result<(i64, Option<i64>), StoreError> {
        let conn = self.conn().await?;
        let statement = conn
            .prepare_cached(include_str!("sql/rotate_agents.sql"))
            .await?;
        let row = conn.query_one(&statement, &[&entity_id]).await?;
        Ok((column(&row, "agents")?, column(&row, "version")?))
    }

    /// `DELETE /agents/{id}`: the agent turns unhealthy. Returns the new topology version when
    /// the agent was live (nothing happens otherwise).
    async fn deregister_agent(&self, agent_id: &str) -> Result<Option<i64>, StoreError> {
        let conn = self.conn().await?;
        let statement = conn
            .prepare_cached(include_str!("sql/deregister_agent.sql"))
            .await?;
        let data = Json(registry_events::on_deregistration());
        let unrecorded = registry_events::UNRECORDED_AGENT_TYPE;
        let row = conn
            .query_one(&statement, &[&agent_id, &data, &unrecorded])
            .await?;
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
            .prepare_cached(include_str!("sql/expire_silent_agents.sql"))
            .await?;
        let data = Json(registry_events::on_silence());
        let unrecorded = registry_events::UNRECORDED_AGENT_TYPE;
        let row = conn
            .query_one(&statement, &[&silent_for.as_secs_f64(), &data, &unrecorded])
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
            .prepare_cached(include_str!("sql/record_heartbeats.sql"))
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
            .prepare_cached(include_str!("sql/agent_liveness.sql"))
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
    /// that shares this agent's name (docs/contract.md#diff-pending-header).
    async fn pending_jobs_for(&self, agent_id: &str) -> Result<i64, StoreError> {
        let conn = self.conn().await?;
        let statement = conn
            .prepare_cached(include_str!("sql/pending_jobs_for.sql"))
            .await?;
        column(&conn.query_one(&statement, &[&agent_id]).await?, "pending")
    }

    /// Every agent and tool, for resolution and listing (no LLM fields: they cost a read of
    /// every agent's topology).
    async fn mesh_snapshot(&self) -> Result<MeshSnapshot, StoreError> {
        self.snapshot(include_str!("sql/all_agent_tools.sql")).await
    }

    /// The same with each tool's LLM fields.
    async fn llm_snapshot(&self) -> Result<MeshSnapshot, StoreError> {
        self.snapshot(include_str!("sql/all_agent_tools_with_llm.sql"))
            .await
    }

    async fn agent(&self, agent_id: &str) -> Result<Option<AgentRow>, StoreError> {
        let conn = self.conn().await?;
        let statement = conn.prepare_cached(include_str!("sql/agent.sql")).await?;
        conn.query_opt(&statement, &[&agent_id])
            .await?
            .as_ref()
            .map(agent_from_row)
            .transpose()
    }

    async fn schema_entries(&self, limit: i64) -> Result<Vec<SchemaEntry>, StoreError> {
        self.schema_rows(include_str!("sql/schema_entries.sql"), &[&limit])
            .await
    }

    async fn schema_entry(&self, hash: &str) -> Result<Option<SchemaEntry>, StoreError> {
        Ok(self
            .schema_rows(include_str!("sql/schema_entry.sql"), &[&hash])
            .await?
            .pop())
    }

    async fn published_output_schemas(&self) -> Result<Vec<SchemaEntry>, StoreError> {
        self.schema_rows(include_str!("sql/published_output_schemas.sql"), &[])
            .await
    }

    async fn mesh_events(&self, query: &MeshEventQuery) -> Result<Vec<MeshEvent>, StoreError> {
        let conn = self.conn().await?;
        let statement = conn
            .prepare_cached(include_str!("sql/mesh_events.sql"))
            .await?;
        conn.query(
            &statement,
            &[
                &query.event_type,
                &query.agent_id,
                &query.function_name,
                &query.limit,
            ],
        )
        .await?
        .iter()
        .map(|row| {
            Ok(MeshEvent {
                event_type: column(row, "event_type")?,
                agent_id: column(row, "agent_id")?,
                agent_name: column(row, "agent_name")?,
                function_name: column(row, "function_name")?,
                data: column::<Json<RawJson>>(row, "data")?.0,
                recorded_at: column(row, "recorded_at")?,
            })
        })
        .collect()
    }

    /// One transaction: the memory is replaced only if it is still `expected` (the row lock
    /// makes a concurrent replacement wait, then fail), and the events are recorded with it.
    async fn record_resolution_audit(
        &self,
        agent_id: &str,
        expected: &RawValue,
        memory: &AuditMemory,
        events: &[AuditEvent],
    ) -> Result<AuditWrite, StoreError> {
        let mut conn = self.conn().await?;
        let tx = conn.transaction().await?;
        let replace = tx
            .prepare_cached(include_str!("sql/replace_resolution_audit.sql"))
            .await?;
        if tx
            .execute(&replace, &[&agent_id, &Json(expected), &Json(memory)])
            .await?
            == 0
        {
            // A statement of its own sees what the other transaction committed.
            let read = tx
                .prepare_cached(include_str!("sql/resolution_audit.sql"))
                .await?;
            return Ok(match tx.query_opt(&read, &[&agent_id]).await? {
                Some(row) => {
                    AuditWrite::Moved(column::<Json<RawJson>>(&row, "resolution_audit")?.0)
                }
                None => AuditWrite::Gone,
            });
        }
        let record = tx
            .prepare_cached(include_str!("sql/record_mesh_event.sql"))
            .await?;
        for event in events {
            let function_name = Some(event.function_name.as_str());
            tx.execute(
                &record,
                &[
                    &event.event_type,
                    &agent_id,
                    &function_name,
                    &Json(&event.data),
                ],
            )
            .await?;
        }
        tx.commit().await?;
        Ok(AuditWrite::Recorded)
    }

    async fn proxy_candidates(&self, host: &str, port: i32) -> Result<Vec<AgentRow>, StoreError> {
        let conn = self.conn().await?;
        let statement = conn
            .prepare_cached(include_str!("sql/proxy_candidates.sql"))
            .await?;
        conn.query(&statement, &[&host, &port])
            .await?
            .iter()
            .map(agent_from_row)
            .collect()
    }
}

impl PgStore {
    /// Schema entries a statement reads.
    async fn schema_rows(
        &self,
        statement: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Result<Vec<SchemaEntry>, StoreError> {
        let conn = self.conn().await?;
        let statement = conn.prepare_cached(statement).await?;
        conn.query(&statement, params)
            .await?
            .iter()
            .map(|row| {
                Ok(SchemaEntry {
                    hash: column(row, "hash")?,
                    canonical: column::<Json<RawJson>>(row, "canonical")?.0,
                    runtime_origin: column(row, "runtime_origin")?,
                    created_at: column(row, "created_at")?,
                })
            })
            .collect()
    }

    /// Every agent, then the tools `tools_statement` reads.
    async fn snapshot(&self, tools_statement: &str) -> Result<MeshSnapshot, StoreError> {
        let conn = self.conn().await?;
        let agents = conn
            .prepare_cached(include_str!("sql/all_agents.sql"))
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
    parse_status(column(row, "status")?)
}

fn parse_status(raw: &str) -> Result<AgentStatus, StoreError> {
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
        entity_id: column(row, "entity_id")?,
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
        output_schema_hash: column(row, "output_schema_hash")?,
        input_schema: column::<Option<Json<RawJson>>>(row, "input_schema")?.map(|j| j.0),
        llm_filter: column::<Option<Json<RawJson>>>(row, "llm_filter")?.map(|j| j.0),
        llm_provider: column::<Option<Json<LlmProviderSpec>>>(row, "llm_provider")?.map(|j| j.0),
    })
}
