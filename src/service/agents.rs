//! Agent use cases: registration (a full heartbeat, answered with its resolved dependencies),
//! HEAD heartbeats answered from the tracker's memory, deregistration, and the views of
//! `GET /agents`.

use std::collections::{BTreeMap, HashMap};

use mesh_registry_actors::{AgentDeparted, AgentRegistered, Heartbeat, TopologyChanged, Verdict};
use serde_json::value::RawValue;

use tracing::Instrument;

use super::{store_span, Registry};
use crate::domain::registry_events::{AuditMemory, Resolution};
use crate::resolve::llm::{self, LlmAnswer, LlmMesh, LlmRequest};
use crate::resolve::trace::Trace;
use crate::resolve::{resolved_dependency, Mesh};
use crate::store::{
    AgentRow, AuditEvent, AuditWrite, MeshSnapshot, NewRegistration, RegisterOutcome, StoreError,
    ToolRow,
};
use crate::wire::{
    rfc3339, AgentView, CapabilityView, DependencyResolution, DependencySpec, DependencyStatus,
    RawJson, ResolvedDependency,
};

/// How many times a registration decides its audit events when other replicas keep recording
/// some for the same agent meanwhile.
const AUDIT_ATTEMPTS: usize = 3;

/// A registration as stored, and where the agent's dependencies resolve now.
pub struct Registration {
    /// First registration of this agent id.
    pub created: bool,
    /// Per function name, in declared order (placeholders for unresolved ones).
    pub dependencies_resolved: BTreeMap<String, Vec<ResolvedDependency>>,
    /// Per `@mesh.llm` function: its provider and the tools its filter offers.
    pub llm: LlmAnswer,
}

/// Why a registration failed (the messages are the reference's; the owner of an agent is named
/// in the log only).
#[derive(Debug, thiserror::Error)]
pub enum RegisterError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("entity_id mismatch: agent owned by another entity")]
    OwnedByAnotherEntity,
    /// It would close this cycle of required dependencies (`"a → b → a"`).
    #[error("required dependency cycle: {0}")]
    RequiredCycle(String),
}

/// What `POST /admin/rotate` did: how many agents must register again.
#[derive(Debug, Clone, Copy)]
pub struct Rotation {
    pub affected_agents: i64,
}

/// The answer to a `HEAD /heartbeat`.
pub enum Beat {
    /// Unknown or unhealthy: the agent must register (again).
    Gone,
    /// Alive; whether the topology changed since its last full heartbeat, and the claimable
    /// jobs queued for its replica group (a hint: `None` when it could not be counted).
    Alive {
        topology_changed: bool,
        pending_jobs: Option<i64>,
    },
}

impl Registry {
    /// `POST /heartbeat`: registers or refreshes the agent and resolves its dependencies.
    /// Refused (nothing stored) when it would close a cycle of required dependencies, or when
    /// another entity vouched for the agent.
    pub async fn register(
        &self,
        agent: &NewRegistration<'_>,
    ) -> Result<Registration, RegisterError> {
        let registered = match self
            .store
            .register_agent(agent)
            .instrument(store_span("register_agent"))
            .await?
        {
            RegisterOutcome::Registered(registered) => registered,
            RegisterOutcome::OwnedByAnotherEntity => {
                tracing::warn!(
                    agent_id = agent.agent_id,
                    presented = agent.entity_id,
                    "registration refused: the agent is owned by another entity"
                );
                return Err(RegisterError::OwnedByAnotherEntity);
            }
            RegisterOutcome::RequiredCycle(cycle) => {
                tracing::warn!(agent_id = agent.agent_id, cycle, "registration refused");
                return Err(RegisterError::RequiredCycle(cycle));
            }
        };
        self.actors.agent_tracker.do_send(AgentRegistered {
            agent_id: agent.agent_id.to_owned(),
            topology_version: registered.topology_version,
        });
        if registered.created {
            tracing::info!(
                agent_id = agent.agent_id,
                name = agent.name,
                tools = agent.tools.len(),
                "agent registered"
            );
        }
        let llm_requests: Vec<LlmRequest> =
            agent.tools.iter().map(LlmRequest::of_new_tool).collect();
        // Only an agent with `@mesh.llm` functions needs the heavier read; without requests the
        // LLM answer is empty whatever the snapshot holds.
        let wants_llm = llm_requests
            .iter()
            .any(|r| r.filter.is_some() || r.provider.is_some());
        let snapshot = match wants_llm {
            true => {
                self.store
                    .llm_snapshot()
                    .instrument(store_span("llm_snapshot"))
                    .await?
            }
            false => {
                self.store
                    .mesh_snapshot()
                    .instrument(store_span("mesh_snapshot"))
                    .await?
            }
        };
        let dependencies: Vec<&[DependencySpec]> =
            agent.tools.iter().map(|t| t.dependencies).collect();
        let mesh = self.mesh(&snapshot, &dependencies).await?;
        let mut dependencies_resolved: BTreeMap<String, Vec<_>> = BTreeMap::new();
        let mut traces = Vec::new();
        for tool in agent.tools.iter().filter(|t| !t.dependencies.is_empty()) {
            let resolved = dependencies_resolved
                .entry(tool.function_name.to_owned())
                .or_default();
            for (dep_index, spec) in tool.dependencies.iter().enumerate() {
                let trace = mesh.trace(spec, agent.namespace);
                resolved.push(resolved_dependency(spec, trace.chosen()));
                traces.push((tool.function_name, dep_index, trace));
            }
        }
        self.audit(agent.agent_id, registered.resolution_audit, &traces)
            .await;
        Ok(Registration {
            created: registered.created,
            dependencies_resolved,
            llm: LlmMesh::from_snapshot(&snapshot).answer(agent.agent_id, &llm_requests),
        })
    }

    /// Records the audit events that the resolutions of a registration call for
    /// (`domain::registry_events::AuditMemory`), against the agent's audit memory as the
    /// registration read it; decided again when another replica recorded some for the agent
    /// meanwhile. A failure is logged and the registration stands, as in the reference.
    async fn audit(
        &self,
        agent_id: &str,
        mut stored: RawJson,
        traces: &[(&str, usize, Trace<'_>)],
    ) {
        for _ in 0..AUDIT_ATTEMPTS {
            let mut memory = serde_json::from_str(stored.get()).unwrap_or_else(|error| {
                tracing::warn!(agent_id, %error, "audit memory not understood: starting anew");
                AuditMemory::default()
            });
            let events = audit_events(agent_id, &mut memory, traces);
            if events.is_empty() {
                return;
            }
            match self
                .store
                .record_resolution_audit(agent_id, &stored, &memory, &events)
                .instrument(store_span("record_resolution_audit"))
                .await
            {
                Ok(AuditWrite::Recorded | AuditWrite::Gone) => return,
                Ok(AuditWrite::Moved(now)) => stored = now,
                Err(error) => {
                    tracing::warn!(agent_id, %error, "resolution audit events not recorded");
                    return;
                }
            }
        }
        tracing::warn!(
            agent_id,
            "resolution audit events not recorded: the agent's audit kept moving"
        );
    }

    /// `HEAD /heartbeat/{agent_id}`, answered from memory (the write is batched); `Err` when
    /// liveness could not be established.
    pub async fn heartbeat(&self, agent_id: String) -> Result<Beat, String> {
        let verdict = match self
            .actors
            .agent_tracker
            .send(Heartbeat {
                agent_id: agent_id.clone(),
            })
            .await
        {
            Ok(verdict) => verdict?,
            Err(error) => {
                tracing::error!(%error, "agent tracker unreachable");
                return Err(error.to_string());
            }
        };
        let topology_changed = match verdict {
            Verdict::Unknown | Verdict::Unhealthy => return Ok(Beat::Gone),
            Verdict::Alive { topology_changed } => topology_changed,
        };
        let pending_jobs = match self
            .store
            .pending_jobs_for(&agent_id)
            .instrument(store_span("pending_jobs_for"))
            .await
        {
            Ok(pending) => Some(pending),
            Err(error) => {
                tracing::debug!(%error, "pending jobs not counted");
                None
            }
        };
        Ok(Beat::Alive {
            topology_changed,
            pending_jobs,
        })
    }

    /// `DELETE /agents/{agent_id}`: the agent turns unhealthy. Its jobs stay with it until their
    /// leases lapse (docs/ownership.md).
    pub async fn deregister(&self, agent_id: String) -> Result<(), StoreError> {
        let topology_version = self
            .store
            .deregister_agent(&agent_id)
            .instrument(store_span("deregister_agent"))
            .await?;
        self.actors.agent_tracker.do_send(AgentDeparted {
            agent_id,
            topology_version,
        });
        Ok(())
    }

    /// `POST /admin/rotate`: the healthy agents (of `entity_id`, or all) must register again,
    /// with their new certificates; every agent's next HEAD heartbeat answers 202 when there
    /// were any.
    pub async fn rotate(&self, entity_id: Option<&str>) -> Result<Rotation, StoreError> {
        let (affected_agents, topology_version) = self
            .store
            .rotate_agents(entity_id)
            .instrument(store_span("rotate_agents"))
            .await?;
        if let Some(topology_version) = topology_version {
            self.actors
                .agent_tracker
                .do_send(TopologyChanged { topology_version });
        }
        tracing::info!(affected_agents, entity_id, "rotation triggered");
        Ok(Rotation { affected_agents })
    }

    /// Every agent with its capabilities' availability and where its dependencies resolve now.
    pub async fn agents(&self) -> Result<Vec<AgentView>, StoreError> {
        let snapshot = self
            .store
            .llm_snapshot()
            .instrument(store_span("llm_snapshot"))
            .await?;
        let mesh = self.mesh(&snapshot, &[]).await?;
        Ok(agent_views(&snapshot, &mesh))
    }

    /// The mesh to resolve against, with the published output schemas when a dependency of
    /// the mesh (or of `also`, a registration not stored yet) asks for schema matching.
    pub(super) async fn mesh(
        &self,
        snapshot: &MeshSnapshot,
        also: &[&[DependencySpec]],
    ) -> Result<Mesh, StoreError> {
        let mesh = Mesh::from_snapshot(snapshot);
        Ok(match Mesh::wants_schemas(snapshot, also) {
            true => mesh.with_output_schemas(self.store.published_output_schemas().await?),
            false => mesh,
        })
    }
}

/// The audit events the resolutions of `agent_id`'s registration record, given what its log
/// holds (`memory`, updated with them).
fn audit_events(
    agent_id: &str,
    memory: &mut AuditMemory,
    traces: &[(&str, usize, Trace<'_>)],
) -> Vec<AuditEvent> {
    traces
        .iter()
        .filter_map(|(function, dep_index, trace)| {
            let resolution = Resolution {
                chosen: trace.chosen().map(|p| p.agent_id.as_str()),
                contested: trace.contested(),
                evicted_any: trace.evicted_any(),
            };
            let recorded = memory.record(function, *dep_index, &resolution, || {
                trace.fingerprint(agent_id, *dep_index)
            })?;
            let prior_chosen = recorded.prior_chosen.as_deref();
            Some(AuditEvent {
                event_type: recorded.event_type,
                function_name: (*function).to_owned(),
                data: trace.to_json(agent_id, *dep_index, prior_chosen),
            })
        })
        .collect()
}

fn agent_views(snapshot: &MeshSnapshot, mesh: &Mesh) -> Vec<AgentView> {
    let llm_mesh = LlmMesh::from_snapshot(snapshot);
    let mut availability: Availability = HashMap::new();
    for (provider, reason) in mesh.providers().iter().zip(mesh.availability()) {
        availability.insert((&provider.agent_id, &provider.function_name), reason);
    }
    snapshot
        .agents
        .iter()
        .map(|agent| {
            let tools: Vec<&ToolRow> = snapshot
                .tools
                .iter()
                .filter(|t| t.agent_id == agent.agent_id && !t.function_name.is_empty())
                .collect();
            let dependency_resolutions = dependency_resolutions(mesh, agent, &tools);
            let llm_requests: Vec<LlmRequest> =
                tools.iter().copied().map(LlmRequest::of_tool).collect();
            let (llm_tools, llm_providers) = llm_mesh.resolutions(&agent.agent_id, &llm_requests);
            AgentView {
                id: agent.agent_id.clone(),
                name: agent.name.clone(),
                agent_type: agent.agent_type.clone(),
                status: agent.status,
                endpoint: agent.endpoint(),
                version: agent.version.clone(),
                runtime: agent.runtime.clone(),
                description: agent.description.clone(),
                namespace: agent.namespace.clone(),
                a2a_producer: agent.a2a_producer,
                a2a_consumer: agent.a2a_consumer,
                entity_id: agent.entity_id.clone(),
                created_at: rfc3339(agent.created_at),
                last_seen: rfc3339(agent.updated_at),
                capabilities: capability_views(&tools, &availability),
                total_dependencies: dependency_resolutions.len(),
                dependencies_resolved: dependency_resolutions
                    .iter()
                    .filter(|d| d.status == DependencyStatus::Available)
                    .count(),
                dependency_resolutions,
                llm_tool_resolutions: Some(llm_tools).filter(|rows| !rows.is_empty()),
                llm_provider_resolutions: Some(llm_providers).filter(|rows| !rows.is_empty()),
            }
        })
        .collect()
}

/// Why each provider (agent id, function name) is unavailable, or `None` when it is available.
type Availability<'a> = HashMap<(&'a str, &'a str), Option<String>>;

/// An agent's capabilities, each with whether it is available now and why not.
fn capability_views(tools: &[&ToolRow], availability: &Availability) -> Vec<CapabilityView> {
    tools
        .iter()
        .filter(|t| !t.capability.is_empty())
        .map(|tool| {
            let reason = availability
                .get(&(tool.agent_id.as_str(), tool.function_name.as_str()))
                .cloned()
                .flatten();
            CapabilityView {
                name: tool.capability.clone(),
                function_name: tool.function_name.clone(),
                version: tool.version.clone(),
                description: tool.description.clone(),
                tags: tool.tags.clone(),
                task: tool.kwargs.as_deref().is_some_and(is_task),
                available: reason.is_none(),
                unavailable_reason: reason,
                llm_filter: tool.llm_filter.as_deref().and_then(llm::filter_view),
                llm_provider: tool.llm_provider.clone(),
            }
        })
        .collect()
}

/// Where each declared dependency of an agent's tools resolves now, in declared order.
fn dependency_resolutions(
    mesh: &Mesh,
    agent: &AgentRow,
    tools: &[&ToolRow],
) -> Vec<DependencyResolution> {
    tools
        .iter()
        .flat_map(|tool| {
            tool.dependencies.iter().map(move |spec| {
                let provider = mesh.resolve(spec, &agent.namespace);
                DependencyResolution {
                    function_name: tool.function_name.clone(),
                    capability: spec.capability.clone(),
                    status: match provider {
                        Some(_) => DependencyStatus::Available,
                        None => DependencyStatus::Unresolved,
                    },
                    provider_agent_id: provider.map(|p| p.agent_id.clone()),
                    mcp_tool: provider.map(|p| p.function_name.clone()),
                    endpoint: provider.map(|p| p.endpoint.clone()),
                }
            })
        })
        .collect()
}

/// `kwargs.task == true` marks a tool that runs as a job.
fn is_task(kwargs: &RawValue) -> bool {
    serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(kwargs.get())
        .ok()
        .and_then(|map| map.get("task").and_then(serde_json::Value::as_bool))
        == Some(true)
}
