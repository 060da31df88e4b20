//! Agent handlers: registration and full heartbeats, HEAD heartbeats, deregistration, listing
//! (contract §8; the reference's agent endpoints as real SDKs and meshctl use them).

use std::collections::{BTreeMap, HashMap};

use actix_web::http::StatusCode;
use actix_web::web::{Data, Path};
use actix_web::{HttpRequest, HttpResponse};
use mesh_registry_actors::{AgentDeparted, AgentRegistered, Heartbeat, Verdict};
use serde_json::value::RawValue;

use super::error::ApiError;
use super::extract::{parse_json, Body, Query};
use super::AppState;
use crate::resolve::llm::{self, LlmMesh, LlmRequest};
use crate::resolve::Mesh;
use crate::store::{MeshSnapshot, NewRegistration, NewTool};
use crate::wire::{
    rfc3339, rfc3339_now, AgentRegistration, AgentView, AgentsResponse, CapabilityView,
    DependencyResolution, DependencyStatus, HeartbeatResponse,
};

const AGENT_TYPES: [&str; 5] = ["mcp_agent", "mesh_tool", "decorator_agent", "api", "a2a"];
const RUNTIMES: [&str; 3] = ["python", "typescript", "java"];
const DEFAULT_TOOL_VERSION: &str = "1.0.0";
const MAX_DESCRIPTION_CHARS: usize = 256;

/// The header that tells an agent how much work is queued for its replica group.
pub const PENDING_JOBS_HEADER: &str = "X-Mesh-Pending-Jobs";

fn invalid(field: &str, why: impl std::fmt::Display) -> ApiError {
    ApiError::BadRequest(format!("validation failed: {field}: {why}"))
}

/// Lowercase letters, digits and inner hyphens, at most `max` characters (the reference's rule
/// for agent ids, names and namespaces).
fn check_identifier(field: &str, value: &str, max: usize) -> Result<(), ApiError> {
    if value.is_empty() {
        return Err(invalid(field, format!("{field} cannot be empty")));
    }
    if value.len() > max {
        return Err(invalid(
            field,
            format!("{field} cannot exceed {max} characters"),
        ));
    }
    let allowed = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-';
    if !value.bytes().all(allowed) || value.starts_with('-') || value.ends_with('-') {
        return Err(invalid(
            field,
            format!("{field} must contain only lowercase alphanumeric characters and hyphens"),
        ));
    }
    Ok(())
}

fn one_of<'a>(
    field: &str,
    value: Option<&'a str>,
    allowed: &[&'a str],
) -> Result<&'a str, ApiError> {
    match value {
        None => Ok(allowed[0]),
        Some(v) if allowed.contains(&v) => Ok(v),
        Some(v) => Err(invalid(
            field,
            format!("{v:?} is not one of {}", allowed.join(", ")),
        )),
    }
}

/// Validates a registration into what the store keeps.
fn validate<'a>(
    registration: &'a AgentRegistration,
    body: &'a RawValue,
) -> Result<NewRegistration<'a>, ApiError> {
    let agent_id = registration
        .agent_id
        .as_deref()
        .filter(|id| !id.is_empty())
        .ok_or_else(|| ApiError::BadRequest("agent_id is required".into()))?;
    check_identifier("agent_id", agent_id, 253)?;
    let name = registration.name.as_deref().unwrap_or(agent_id);
    check_identifier("name", name, 63)?;
    let namespace = registration.namespace.as_deref().unwrap_or("default");
    check_identifier("namespace", namespace, 63)?;
    let http_port = registration
        .http_port
        .map(|port| {
            u16::try_from(port)
                .map(i32::from)
                .map_err(|_| invalid("http_port", "http_port must be between 0 and 65535"))
        })
        .transpose()?;
    let description = registration.description.as_deref().unwrap_or("").trim();
    let description = match description.char_indices().nth(MAX_DESCRIPTION_CHARS) {
        Some((cut, _)) => &description[..cut],
        None => description,
    };
    let tools = registration
        .tools
        .iter()
        .flatten()
        .filter(|tool| tool.function_name.as_deref().is_some_and(|f| !f.is_empty()))
        .map(|tool| NewTool {
            function_name: tool.function_name.as_deref().unwrap_or_default(),
            capability: tool.capability.as_deref().unwrap_or_default(),
            version: tool
                .version
                .as_deref()
                .filter(|v| !v.is_empty())
                .unwrap_or(DEFAULT_TOOL_VERSION),
            description: tool.description.as_deref().unwrap_or_default(),
            tags: tool.tags.as_deref().unwrap_or_default(),
            kwargs: tool.kwargs.as_ref().map(|k| &*k.0),
            dependencies: tool.dependencies.as_deref().unwrap_or_default(),
            input_schema: tool.input_schema.as_ref().map(|s| &*s.0),
            llm_filter: tool.llm_filter.as_ref().map(|f| &*f.0),
            llm_provider: tool.llm_provider.as_ref(),
        })
        .collect();
    Ok(NewRegistration {
        agent_id,
        name,
        agent_type: one_of(
            "agent_type",
            registration.agent_type.as_deref(),
            &AGENT_TYPES,
        )?,
        runtime: one_of("runtime", registration.runtime.as_deref(), &RUNTIMES)?,
        version: registration.version.as_deref().unwrap_or_default(),
        description,
        namespace,
        http_host: registration.http_host.as_deref(),
        http_port,
        a2a_producer: registration.a2a_producer.unwrap_or(false),
        a2a_consumer: registration.a2a_consumer.unwrap_or(false),
        tools,
        body,
    })
}

/// `POST /heartbeat`: register or refresh an agent, and resolve its dependencies.
pub async fn register(state: Data<AppState>, body: Body) -> Result<HttpResponse, ApiError> {
    let raw: Box<RawValue> = body.json()?;
    let registration: AgentRegistration = parse_json(raw.get().as_bytes())?;
    let agent = validate(&registration, &raw)?;
    let registered = state
        .store
        .register_agent(&agent)
        .await
        .map_err(ApiError::store("register agent"))?;
    state.agent_tracker.do_send(AgentRegistered {
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
    let llm_requests: Vec<LlmRequest> = agent.tools.iter().map(LlmRequest::of_new_tool).collect();
    // Only an agent with `@mesh.llm` functions needs the heavier read; without requests the
    // LLM answer is empty whatever the snapshot holds.
    let wants_llm = llm_requests
        .iter()
        .any(|r| r.filter.is_some() || r.provider.is_some());
    let snapshot = match wants_llm {
        true => state.store.llm_snapshot().await,
        false => state.store.mesh_snapshot().await,
    }
    .map_err(ApiError::store("resolve dependencies"))?;
    let mesh = Mesh::from_snapshot(&snapshot);
    let mut dependencies_resolved: BTreeMap<String, Vec<_>> = BTreeMap::new();
    for tool in agent.tools.iter().filter(|t| !t.dependencies.is_empty()) {
        dependencies_resolved
            .entry(tool.function_name.to_owned())
            .or_default()
            .extend(mesh.resolve_all(tool.dependencies, agent.namespace));
    }
    let llm = LlmMesh::from_snapshot(&snapshot).answer(agent.agent_id, &llm_requests);
    Ok(HttpResponse::Ok().json(HeartbeatResponse {
        status: "success",
        message: if registered.created {
            "Agent registered via heartbeat"
        } else {
            "Agent updated via heartbeat"
        },
        agent_id: agent.agent_id.to_owned(),
        dependencies_resolved,
        llm_tools: llm.tools,
        llm_providers: llm.providers,
        timestamp: rfc3339_now(),
    }))
}

/// `HEAD /heartbeat/{agent_id}`: 200, or 202 when the topology changed since the agent's last
/// full heartbeat; 410 when it must register (again). Answered from memory.
pub async fn beat(state: Data<AppState>, path: Path<String>) -> HttpResponse {
    let agent_id = path.into_inner();
    let verdict = match state
        .agent_tracker
        .send(Heartbeat {
            agent_id: agent_id.clone(),
        })
        .await
    {
        Ok(Ok(verdict)) => verdict,
        Ok(Err(error)) => {
            tracing::warn!(%error, agent_id, "heartbeat check failed");
            return HttpResponse::ServiceUnavailable().finish();
        }
        Err(error) => {
            tracing::error!(%error, "agent tracker unreachable");
            return HttpResponse::ServiceUnavailable().finish();
        }
    };
    let status = match verdict {
        Verdict::Unknown | Verdict::Unhealthy => return HttpResponse::Gone().finish(),
        Verdict::Alive {
            topology_changed: true,
        } => StatusCode::ACCEPTED,
        Verdict::Alive {
            topology_changed: false,
        } => StatusCode::OK,
    };
    let mut response = HttpResponse::build(status);
    // A hint only: when it cannot be counted the header is left out.
    match state.store.pending_jobs_for(&agent_id).await {
        Ok(pending) if pending > 0 => {
            response.insert_header((PENDING_JOBS_HEADER, pending.to_string()));
        }
        Ok(_) => {}
        Err(error) => tracing::debug!(%error, "pending jobs not counted"),
    }
    response.finish()
}

/// `DELETE /agents/{agent_id}`: the agent leaves (204, also for an id never seen). Its jobs
/// stay with it until their leases lapse: an older SDK keeps running them after it leaves.
pub async fn deregister(
    state: Data<AppState>,
    path: Path<String>,
) -> Result<HttpResponse, ApiError> {
    let agent_id = path.into_inner();
    let topology_version = state
        .store
        .deregister_agent(&agent_id)
        .await
        .map_err(ApiError::store("deregister agent"))?;
    state.agent_tracker.do_send(AgentDeparted {
        agent_id,
        topology_version,
    });
    Ok(HttpResponse::NoContent().finish())
}

/// `GET /agents?status&namespace&type&capabilities&fuzzy`
pub async fn list(state: Data<AppState>, req: HttpRequest) -> Result<HttpResponse, ApiError> {
    let query = Query::parse(&req);
    let fuzzy = match query.get("fuzzy") {
        None => false,
        Some(raw) => parse_go_bool(raw).ok_or_else(|| {
            ApiError::BadRequest(format!(
                "Invalid query parameters: strconv.ParseBool: parsing {raw:?}: invalid syntax"
            ))
        })?,
    };
    let wanted_capabilities = query.all("capabilities");
    let snapshot = state
        .store
        .llm_snapshot()
        .await
        .map_err(ApiError::store("list agents"))?;
    let agents: Vec<AgentView> = agent_views(&snapshot)
        .into_iter()
        .filter(|a| query.get("status").is_none_or(|s| a.status.as_str() == s))
        .filter(|a| query.get("namespace").is_none_or(|ns| a.namespace == ns))
        .filter(|a| query.get("type").is_none_or(|t| a.agent_type == t))
        .filter(|a| {
            wanted_capabilities.is_empty()
                || a.capabilities.iter().any(|c| {
                    wanted_capabilities.iter().any(|wanted| match fuzzy {
                        true => c.name.to_lowercase().contains(&wanted.to_lowercase()),
                        false => c.name == *wanted,
                    })
                })
        })
        .collect();
    Ok(HttpResponse::Ok().json(AgentsResponse {
        count: agents.len(),
        agents,
        timestamp: rfc3339_now(),
    }))
}

/// `GET /agents/{agent_id}`: one agent, as `GET /agents` shows it.
pub async fn get(state: Data<AppState>, path: Path<String>) -> Result<HttpResponse, ApiError> {
    let snapshot = state
        .store
        .llm_snapshot()
        .await
        .map_err(ApiError::store("fetch agent"))?;
    agent_views(&snapshot)
        .into_iter()
        .find(|agent| agent.id == *path)
        .map(|agent| HttpResponse::Ok().json(agent))
        .ok_or_else(|| ApiError::NotFound(format!("agent not found: {path}")))
}

/// Go's `strconv.ParseBool`.
fn parse_go_bool(raw: &str) -> Option<bool> {
    match raw {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

/// Every agent with its capabilities' availability and where its dependencies resolve now.
fn agent_views(snapshot: &MeshSnapshot) -> Vec<AgentView> {
    let mesh = Mesh::from_snapshot(snapshot);
    let llm_mesh = LlmMesh::from_snapshot(snapshot);
    let mut availability: HashMap<(&str, &str), Option<String>> = HashMap::new();
    for (provider, reason) in mesh.providers().iter().zip(mesh.availability()) {
        availability.insert((&provider.agent_id, &provider.function_name), reason);
    }
    snapshot
        .agents
        .iter()
        .map(|agent| {
            let tools: Vec<_> = snapshot
                .tools
                .iter()
                .filter(|t| t.agent_id == agent.agent_id && !t.function_name.is_empty())
                .collect();
            let capabilities = tools
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
                .collect();
            let dependency_resolutions: Vec<DependencyResolution> = tools
                .iter()
                .flat_map(|tool| {
                    let mesh = &mesh;
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
                .collect();
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
                created_at: rfc3339(agent.created_at),
                last_seen: rfc3339(agent.updated_at),
                capabilities,
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

/// `kwargs.task == true` marks a tool that runs as a job.
fn is_task(kwargs: &RawValue) -> bool {
    serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(kwargs.get())
        .ok()
        .and_then(|map| map.get("task").and_then(serde_json::Value::as_bool))
        == Some(true)
}
