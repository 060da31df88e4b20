//! Agent statements on the embedded file: registration, liveness, deregistration and what
//! resolution reads. An agent that goes away keeps its jobs until their leases lapse
//! (docs/ownership.md).

use std::time::Duration;

use async_trait::async_trait;
use rusqlite::{named_params, Connection, OptionalExtension, Row};
use serde_json::value::RawValue;

use super::{decode, duration_micros, encode, json, now_micros, time_of, EmbeddedStore};
use crate::domain::agents::{
    add_required_edges, entity_may_update, has_required_dependencies, required_cycle,
    topology_changed, RequiredEdges,
};
use crate::domain::registry_events::{self, AuditMemory};
use crate::store::{
    AgentRow, AgentStore, AuditEvent, AuditWrite, Liveness, MeshEvent, MeshEventQuery,
    MeshSnapshot, NewRegistration, NewTool, RegisterOutcome, Registered, SchemaEntry, StoreError,
    ToolRow,
};
use crate::wire::{AgentStatus, DependencySpec, RawJson};

#[async_trait]
impl AgentStore for EmbeddedStore {
    async fn register_agent(
        &self,
        agent: &NewRegistration<'_>,
    ) -> Result<RegisterOutcome, StoreError> {
        let stored = StoredAgent::from_registration(agent)?;
        self.run(move |db| register_agent(db, &stored)).await
    }

    async fn rotate_agents(
        &self,
        entity_id: Option<&str>,
    ) -> Result<(i64, Option<i64>), StoreError> {
        let entity_id = entity_id.map(str::to_owned);
        self.run(move |db| {
            let agents: i64 = db
                .prepare_cached(include_str!("sql/count_rotated_agents.sql"))?
                .query_row(named_params! {":entity_id": entity_id}, |row| row.get(0))?;
            let version = match agents {
                0 => None,
                _ => Some(bump_topology(db)?),
            };
            Ok((agents, version))
        })
        .await
    }

    async fn deregister_agent(&self, agent_id: &str) -> Result<Option<i64>, StoreError> {
        let agent_id = agent_id.to_owned();
        self.run(move |db| {
            let departed = db
                .prepare_cached(include_str!("sql/deregister_agent.sql"))?
                .execute(named_params! {":agent_id": agent_id})?
                > 0;
            if !departed {
                return Ok(None);
            }
            record_agent_event(
                db,
                &agent_id,
                registry_events::UNREGISTER,
                &registry_events::on_deregistration(),
                true,
            )?;
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
                .prepare_cached(include_str!("sql/expire_silent_agents.sql"))?
                .query_map(
                    named_params! {":silent_since": now_micros() - duration_micros(silent_for)},
                    |row| row.get(0),
                )?
                .collect::<Result<_, _>>()?;
            if agents.is_empty() {
                return Ok((agents, None));
            }
            tracing::info!(?agents, "silent agents marked unhealthy");
            let data = registry_events::on_silence();
            for agent_id in &agents {
                record_agent_event(db, agent_id, registry_events::UNHEALTHY, &data, false)?;
            }
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
            let mut beat = db.prepare_cached(include_str!("sql/stamp_heartbeat.sql"))?;
            let mut read = db.prepare_cached(include_str!("sql/agent_status.sql"))?;
            let mut statuses = Vec::with_capacity(agent_ids.len());
            for agent_id in agent_ids {
                beat.execute(named_params! {":agent_id": agent_id, ":now": now})?;
                let status: Option<String> = read
                    .query_row(named_params! {":agent_id": agent_id}, |row| row.get(0))
                    .optional()?;
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
            db.prepare_cached(include_str!("sql/agent_liveness.sql"))?
                .query_row(named_params! {":agent_id": agent_id}, |row| {
                    Ok(liveness_from_row(row))
                })
                .optional()?
                .transpose()
        })
        .await
    }

    async fn pending_jobs_for(&self, agent_id: &str) -> Result<i64, StoreError> {
        let agent_id = agent_id.to_owned();
        self.run(move |db| {
            Ok(db
                .prepare_cached(include_str!("sql/count_pending_jobs_for_agent_name.sql"))?
                .query_row(named_params! {":agent_id": agent_id}, |row| row.get(0))?)
        })
        .await
    }

    async fn mesh_snapshot(&self) -> Result<MeshSnapshot, StoreError> {
        self.snapshot(include_str!("sql/list_agent_tools.sql"))
            .await
    }

    /// The same with each tool's LLM fields.
    async fn llm_snapshot(&self) -> Result<MeshSnapshot, StoreError> {
        self.snapshot(include_str!("sql/list_agent_tools_with_llm.sql"))
            .await
    }

    async fn agent(&self, agent_id: &str) -> Result<Option<AgentRow>, StoreError> {
        let agent_id = agent_id.to_owned();
        self.run(move |db| {
            db.prepare_cached(include_str!("sql/get_agent.sql"))?
                .query_row(named_params! {":agent_id": agent_id}, |row| {
                    Ok(agent_from_row(row))
                })
                .optional()?
                .transpose()
        })
        .await
    }

    async fn schema_entries(&self, limit: i64) -> Result<Vec<SchemaEntry>, StoreError> {
        self.run(move |db| {
            db.prepare_cached(include_str!("sql/schema_entries.sql"))?
                .query_map(named_params! {":limit": limit}, |row| {
                    Ok(schema_from_row(row))
                })?
                .map(|row| row?)
                .collect()
        })
        .await
    }

    async fn schema_entry(&self, hash: &str) -> Result<Option<SchemaEntry>, StoreError> {
        let hash = hash.to_owned();
        self.run(move |db| {
            db.prepare_cached(include_str!("sql/schema_entry.sql"))?
                .query_row(named_params! {":hash": hash}, |row| {
                    Ok(schema_from_row(row))
                })
                .optional()?
                .transpose()
        })
        .await
    }

    async fn published_output_schemas(&self) -> Result<Vec<SchemaEntry>, StoreError> {
        self.run(move |db| {
            db.prepare_cached(include_str!("sql/published_output_schemas.sql"))?
                .query_map([], |row| Ok(schema_from_row(row)))?
                .map(|row| row?)
                .collect()
        })
        .await
    }

    async fn mesh_events(&self, query: &MeshEventQuery) -> Result<Vec<MeshEvent>, StoreError> {
        let query = query.clone();
        self.run(move |db| {
            db.prepare_cached(include_str!("sql/mesh_events.sql"))?
                .query_map(
                    named_params! {
                        ":event_type": query.event_type,
                        ":agent_id": query.agent_id,
                        ":function_name": query.function_name,
                        ":limit": query.limit,
                    },
                    |row| Ok(mesh_event_from_row(row)),
                )?
                .map(|row| row?)
                .collect()
        })
        .await
    }

    /// One call, so nothing comes between the comparison and the writes.
    async fn record_resolution_audit(
        &self,
        agent_id: &str,
        expected: &RawValue,
        memory: &AuditMemory,
        events: &[AuditEvent],
    ) -> Result<AuditWrite, StoreError> {
        let (agent_id, expected) = (agent_id.to_owned(), expected.get().to_owned());
        let (memory, events) = (encode(memory)?, events.to_vec());
        self.run(move |db| {
            let replaced = db
                .prepare_cached(include_str!("sql/replace_resolution_audit.sql"))?
                .execute(named_params! {
                    ":agent_id": agent_id, ":expected": expected, ":memory": memory,
                })?;
            if replaced == 0 {
                let now: Option<String> = db
                    .prepare_cached(include_str!("sql/resolution_audit.sql"))?
                    .query_row(named_params! {":agent_id": agent_id}, |row| row.get(0))
                    .optional()?;
                return Ok(match now {
                    Some(now) => AuditWrite::Moved(audit_memory(now)?),
                    None => AuditWrite::Gone,
                });
            }
            let mut record = db.prepare_cached(include_str!("sql/record_mesh_event.sql"))?;
            for event in &events {
                record.execute(named_params! {
                    ":event_type": event.event_type,
                    ":agent_id": agent_id,
                    ":function_name": event.function_name,
                    ":data": encode(&event.data)?,
                    ":now": now_micros(),
                })?;
            }
            Ok(AuditWrite::Recorded)
        })
        .await
    }

    async fn proxy_candidates(&self, host: &str, port: i32) -> Result<Vec<AgentRow>, StoreError> {
        let host = host.to_owned();
        self.run(move |db| {
            db.prepare_cached(include_str!("sql/proxy_candidates.sql"))?
                .query_map(named_params! {":host": host, ":port": port}, |row| {
                    Ok(agent_from_row(row))
                })?
                .map(|row| row?)
                .collect()
        })
        .await
    }
}

impl EmbeddedStore {
    /// Every agent, then the tools `tools_statement` reads.
    async fn snapshot(&self, tools_statement: &'static str) -> Result<MeshSnapshot, StoreError> {
        self.run(move |db| {
            let agents = db
                .prepare_cached(include_str!("sql/list_agents.sql"))?
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
    /// What others resolve against: the domain compares it with the stored one.
    topology: serde_json::Value,
    tools: Vec<StoredTool>,
    /// (hash, canonical form) of the schemas its tools publish.
    published_schemas: Vec<(String, String)>,
    required_edges: RequiredEdges,
    entity_id: Option<String>,
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
                    has_required_dependencies: has_required_dependencies(tool.dependencies),
                    output_schema_hash: tool.published_output.map(|s| s.hash.to_owned()),
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
            topology: agent.topology(),
            tools,
            published_schemas: agent
                .tools
                .iter()
                .flat_map(NewTool::published_schemas)
                .map(|s| (s.hash.to_owned(), s.canonical.get().to_owned()))
                .collect(),
            required_edges: agent.required_edges(),
            entity_id: agent.entity_id.map(str::to_owned),
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
    output_schema_hash: Option<String>,
}

/// A registration: the agent and its tools as sent, healthy; the topology version moves when
/// the domain says the topology changed. The previous row is read in the same call, so nothing
/// can come between the comparison and the write; nor between the entity check and the write.
fn register_agent(db: &Connection, stored: &StoredAgent) -> Result<RegisterOutcome, StoreError> {
    let agent_id = &stored.agent_id;
    if !stored.required_edges.is_empty() {
        let mut edges = stored.required_edges.clone();
        let mut others = db.prepare_cached(include_str!("sql/required_edges.sql"))?;
        let mut rows = others.query(named_params! {":agent_id": agent_id})?;
        while let Some(row) = rows.next()? {
            let capability: String = row.get("capability")?;
            let dependencies: Vec<DependencySpec> =
                decode(&row.get::<_, String>("dependencies")?, "dependencies")?;
            add_required_edges(&mut edges, &capability, &dependencies);
        }
        if let Some(cycle) = required_cycle(&edges) {
            return Ok(RegisterOutcome::RequiredCycle(cycle));
        }
    }
    let previous: Option<(String, String, Option<String>, String)> = db
        .prepare_cached(include_str!("sql/registered_agent.sql"))?
        .query_row(named_params! {":agent_id": agent_id}, |row| {
            Ok((
                row.get("status")?,
                row.get("topology")?,
                row.get("entity_id")?,
                row.get("resolution_audit")?,
            ))
        })
        .optional()?;
    if let Some((_, _, owner, _)) = &previous {
        if !entity_may_update(owner.as_deref(), stored.entity_id.as_deref()) {
            return Ok(RegisterOutcome::OwnedByAnotherEntity);
        }
    }
    // A new agent's is the column's default.
    let resolution_audit = audit_memory(
        previous
            .as_ref()
            .map_or("{}", |(.., audit)| audit)
            .to_owned(),
    )?;
    let previous = previous
        .map(|(status, topology, _, _)| {
            Ok::<_, StoreError>((parse_status(&status)?, decode(&topology, "topology")?))
        })
        .transpose()?;
    let changed = topology_changed(
        previous
            .as_ref()
            .map(|(status, topology)| (*status, topology)),
        &stored.topology,
    );
    db.prepare_cached(include_str!("sql/upsert_agent.sql"))?
        .execute(named_params! {
            ":agent_id": agent_id,
            ":name": stored.name,
            ":agent_type": stored.agent_type,
            ":runtime": stored.runtime,
            ":version": stored.version,
            ":description": stored.description,
            ":namespace": stored.namespace,
            ":http_host": stored.http_host,
            ":http_port": stored.http_port,
            ":a2a_producer": stored.a2a_producer,
            ":a2a_consumer": stored.a2a_consumer,
            ":registration": stored.registration,
            ":topology": encode(&stored.topology)?,
            ":entity_id": stored.entity_id,
            ":now": now_micros(),
        })?;
    if let Some((event_type, data)) = registry_events::on_registration(
        &stored.agent_type,
        &stored.name,
        &stored.version,
        previous.is_none(),
        previous.as_ref().map(|(status, _)| *status),
    ) {
        db.prepare_cached(include_str!("sql/record_mesh_event.sql"))?
            .execute(named_params! {
                ":event_type": event_type,
                ":agent_id": agent_id,
                ":function_name": None::<String>,
                ":data": encode(&data)?,
                ":now": now_micros(),
            })?;
    }
    replace_tools(db, agent_id, &stored.tools)?;
    let mut publish = db.prepare_cached(include_str!("sql/insert_schema_entry.sql"))?;
    for (hash, canonical) in &stored.published_schemas {
        publish.execute(named_params! {
            ":hash": hash,
            ":canonical": canonical,
            ":runtime_origin": stored.runtime,
            ":now": now_micros(),
        })?;
    }
    let topology_version = if changed {
        bump_topology(db)?
    } else {
        topology_version(db)?
    };
    db.prepare_cached(include_str!("sql/set_topology_seen.sql"))?
        .execute(named_params! {":agent_id": agent_id, ":topology_version": topology_version})?;
    Ok(RegisterOutcome::Registered(Registered {
        created: previous.is_none(),
        topology_version,
        resolution_audit,
    }))
}

/// A consumer's resolution-audit memory as stored.
fn audit_memory(stored: String) -> Result<RawJson, StoreError> {
    RawValue::from_string(stored).map_err(|e| StoreError::Corrupt(format!("resolution_audit: {e}")))
}

/// Records an event about an agent whose status this call just changed; `with_agent` adds the
/// agent's type, name and version to `data`.
fn record_agent_event(
    db: &Connection,
    agent_id: &str,
    event_type: &str,
    data: &serde_json::Value,
    with_agent: bool,
) -> Result<(), StoreError> {
    db.prepare_cached(include_str!("sql/record_agent_event.sql"))?
        .execute(named_params! {
            ":event_type": event_type,
            ":agent_id": agent_id,
            ":data": encode(data)?,
            ":with_agent": with_agent,
            ":unrecorded": registry_events::UNRECORDED_AGENT_TYPE,
            ":now": now_micros(),
        })?;
    Ok(())
}

fn mesh_event_from_row(row: &Row) -> Result<MeshEvent, StoreError> {
    Ok(MeshEvent {
        event_type: row.get("event_type")?,
        agent_id: row.get("agent_id")?,
        agent_name: row.get("agent_name")?,
        function_name: row.get("function_name")?,
        data: json(row, "data")?
            .ok_or_else(|| StoreError::Corrupt("an event without data".into()))?,
        recorded_at: time_of(row.get("recorded_at")?),
    })
}

/// The agent's tools become the ones its registration sent, in their order.
fn replace_tools(db: &Connection, agent_id: &str, tools: &[StoredTool]) -> Result<(), StoreError> {
    db.prepare_cached(include_str!("sql/delete_agent_tools.sql"))?
        .execute(named_params! {":agent_id": agent_id})?;
    let mut insert = db.prepare_cached(include_str!("sql/insert_agent_tool.sql"))?;
    for (position, tool) in (1_i64..).zip(tools) {
        insert.execute(named_params! {
            ":agent_id": agent_id,
            ":position": position,
            ":function_name": tool.function_name,
            ":capability": tool.capability,
            ":version": tool.version,
            ":description": tool.description,
            ":tags": tool.tags,
            ":kwargs": tool.kwargs,
            ":dependencies": tool.dependencies,
            ":has_required_dependencies": tool.has_required_dependencies,
            ":output_schema_hash": tool.output_schema_hash,
        })?;
    }
    Ok(())
}

fn topology_version(db: &Connection) -> Result<i64, StoreError> {
    Ok(db
        .prepare_cached(include_str!("sql/topology_version.sql"))?
        .query_row([], |row| row.get(0))?)
}

/// A topology change: the new version.
fn bump_topology(db: &Connection) -> Result<i64, StoreError> {
    Ok(db
        .prepare_cached(include_str!("sql/bump_topology_version.sql"))?
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
        entity_id: row.get("entity_id")?,
    })
}

fn schema_from_row(row: &Row) -> Result<SchemaEntry, StoreError> {
    Ok(SchemaEntry {
        hash: row.get("hash")?,
        canonical: json(row, "canonical")?
            .ok_or_else(|| StoreError::Corrupt("a schema without its canonical form".into()))?,
        runtime_origin: row.get("runtime_origin")?,
        created_at: time_of(row.get("created_at")?),
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
        output_schema_hash: row.get("output_schema_hash")?,
        input_schema: json(row, "input_schema")?,
        llm_filter: json(row, "llm_filter")?,
        llm_provider: row
            .get::<_, Option<String>>("llm_provider")?
            .map(|text| decode(&text, "llm_provider"))
            .transpose()?,
    })
}
