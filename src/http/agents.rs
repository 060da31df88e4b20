//! Agent handlers: registration and full heartbeats, HEAD heartbeats, deregistration, listing:
//! the reference's agent endpoints as real SDKs and meshctl use them
//! (docs/contract.md#agents-endpoints).

use actix_web::http::StatusCode;
use actix_web::web::{Data, Path};
use actix_web::{HttpRequest, HttpResponse};
use serde_json::value::RawValue;

use super::error::ApiError;
use super::extract::{parse_json, Body, Query};
use super::validate::{bounded, bounded_opt, MAX_ID_BYTES, MAX_NAME_BYTES};
use crate::domain::agents::valid_http_host;
use crate::service::{Beat, RegisterError, Registry};
use crate::store::{NewRegistration, NewTool, PublishedSchema};
use crate::wire::{
    rfc3339_now, AgentRegistration, AgentView, AgentsResponse, HeartbeatRefused, HeartbeatResponse,
    JsonObject, TagItem, ToolRegistration,
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

/// The strings of each tool and of its dependencies: bounded, named by their place.
fn check_tools(tools: &[ToolRegistration]) -> Result<(), ApiError> {
    for (i, tool) in tools.iter().enumerate() {
        let field = |name: &str| format!("tools[{i}].{name}");
        for (name, value) in [
            ("function_name", &tool.function_name),
            ("capability", &tool.capability),
            ("version", &tool.version),
        ] {
            bounded_opt(&field(name), value.as_deref(), MAX_NAME_BYTES)?;
        }
        for tag in tool.tags.iter().flatten() {
            bounded(&field("tags"), tag, MAX_NAME_BYTES)?;
        }
        for (name, value) in [
            ("inputSchemaHash", &tool.input_schema_hash),
            ("outputSchemaHash", &tool.output_schema_hash),
        ] {
            bounded_opt(&field(name), value.as_deref(), MAX_NAME_BYTES)?;
        }
        for (j, dependency) in tool.dependencies.iter().flatten().enumerate() {
            let field = |name: &str| field(&format!("dependencies[{j}].{name}"));
            for (name, value) in [
                ("capability", &dependency.capability),
                ("version", &dependency.version),
                ("namespace", &dependency.namespace),
            ] {
                bounded(&field(name), value, MAX_NAME_BYTES)?;
            }
            for (name, value) in [
                ("matchMode", &dependency.match_mode),
                ("expectedSchemaHash", &dependency.expected_schema_hash),
            ] {
                bounded(&field(name), value, MAX_NAME_BYTES)?;
            }
            for tag in dependency.tags.iter().flat_map(TagItem::tags) {
                bounded(&field("tags"), tag, MAX_NAME_BYTES)?;
            }
        }
    }
    Ok(())
}

/// A published schema: kept when both its hash and its canonical form were sent (the reference
/// ignores either alone).
fn published<'a>(
    hash: &'a Option<String>,
    canonical: &'a Option<JsonObject>,
) -> Option<PublishedSchema<'a>> {
    match (hash.as_deref(), canonical) {
        (Some(hash), Some(canonical)) if !hash.is_empty() => Some(PublishedSchema {
            hash,
            canonical: &canonical.0,
        }),
        _ => None,
    }
}

/// The agent's endpoint: a port in range, and a host that is a host and nothing more
/// (`domain::agents::valid_http_host`), since the registry sends requests there.
fn http_endpoint(registration: &AgentRegistration) -> Result<Option<i32>, ApiError> {
    let http_port = registration
        .http_port
        .map(|port| {
            u16::try_from(port)
                .map(i32::from)
                .map_err(|_| invalid("http_port", "http_port must be between 0 and 65535"))
        })
        .transpose()?;
    if let Some(host) = registration.http_host.as_deref() {
        bounded("http_host", host, MAX_NAME_BYTES)?;
        if !valid_http_host(host) {
            return Err(invalid(
                "http_host",
                "http_host must be a host name or an IP address, without scheme, port or path",
            ));
        }
    }
    Ok(http_port)
}

/// Validates a registration into what the store keeps, field by field in the reference's order
/// (long because that order is the point: the first invalid field is the one reported).
fn validate<'a>(
    registration: &'a AgentRegistration,
    body: &'a RawValue,
    entity_id: Option<&'a str>,
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
    let http_port = http_endpoint(registration)?;
    bounded_opt("version", registration.version.as_deref(), MAX_NAME_BYTES)?;
    check_tools(registration.tools.as_deref().unwrap_or_default())?;
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
            published_input: published(&tool.input_schema_hash, &tool.input_schema_canonical),
            published_output: published(&tool.output_schema_hash, &tool.output_schema_canonical),
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
        entity_id,
    })
}

/// `POST /heartbeat`: register or refresh an agent, and resolve its dependencies. The entity
/// that vouched for the request's client certificate (`http::tls::verify_client`) is recorded;
/// an agent another entity vouched for is `403`, as the reference refuses it.
pub async fn register(
    registry: Data<Registry>,
    req: HttpRequest,
    body: Body,
) -> Result<HttpResponse, ApiError> {
    let raw: Box<RawValue> = body.json()?;
    let registration: AgentRegistration = parse_json(raw.get().as_bytes())?;
    let entity_id = super::tls::verified_entity(&req);
    let agent = validate(&registration, &raw, entity_id.as_deref())?;
    let registered = match registry.register(&agent).await {
        Ok(registered) => registered,
        Err(RegisterError::Store(error)) => return Err(ApiError::store("register agent")(error)),
        Err(owned @ RegisterError::OwnedByAnotherEntity) => {
            return Err(ApiError::Forbidden(owned.to_string()))
        }
        // The reference's refusal: 200, `status: "error"`, the cycle in `message`.
        Err(cycle @ RegisterError::RequiredCycle(_)) => {
            return Ok(HttpResponse::Ok().json(HeartbeatRefused {
                agent_id: agent.agent_id,
                message: cycle.to_string(),
                status: "error",
                timestamp: rfc3339_now(),
            }))
        }
    };
    Ok(HttpResponse::Ok().json(HeartbeatResponse {
        status: "success",
        message: if registered.created {
            "Agent registered via heartbeat"
        } else {
            "Agent updated via heartbeat"
        },
        agent_id: agent.agent_id.to_owned(),
        dependencies_resolved: registered.dependencies_resolved,
        llm_tools: registered.llm.tools,
        llm_providers: registered.llm.providers,
        timestamp: rfc3339_now(),
    }))
}

/// `HEAD /heartbeat/{agent_id}`: 200, or 202 when the topology changed since the agent's last
/// full heartbeat; 410 when it must register (again). Answered from memory.
pub async fn beat(registry: Data<Registry>, path: Path<String>) -> HttpResponse {
    if !could_be_agent_id(&path) {
        return HttpResponse::Gone().finish();
    }
    match registry.heartbeat(path.into_inner()).await {
        Err(error) => {
            tracing::warn!(%error, "heartbeat check failed");
            HttpResponse::ServiceUnavailable().finish()
        }
        Ok(Beat::Gone) => HttpResponse::Gone().finish(),
        Ok(Beat::Alive {
            topology_changed,
            pending_jobs,
        }) => {
            let status = match topology_changed {
                true => StatusCode::ACCEPTED,
                false => StatusCode::OK,
            };
            let mut response = HttpResponse::build(status);
            if let Some(pending) = pending_jobs.filter(|&n| n > 0) {
                response.insert_header((PENDING_JOBS_HEADER, pending.to_string()));
            }
            response.finish()
        }
    }
}

/// `DELETE /agents/{agent_id}`: the agent leaves (204, also for an id never seen). Its jobs
/// stay with it until their leases lapse: an older SDK keeps running them after it leaves.
pub async fn deregister(
    registry: Data<Registry>,
    path: Path<String>,
) -> Result<HttpResponse, ApiError> {
    if !could_be_agent_id(&path) {
        return Ok(HttpResponse::NoContent().finish());
    }
    registry
        .deregister(path.into_inner())
        .await
        .map_err(ApiError::store("deregister agent"))?;
    Ok(HttpResponse::NoContent().finish())
}

/// `GET /agents?status&namespace&type&capabilities&fuzzy`
pub async fn list(registry: Data<Registry>, req: HttpRequest) -> Result<HttpResponse, ApiError> {
    let query = Query::parse(&req)?;
    let fuzzy = match query.get("fuzzy") {
        None => false,
        Some(raw) => parse_go_bool(raw).ok_or_else(|| {
            ApiError::BadRequest(format!(
                "Invalid query parameters: strconv.ParseBool: parsing {raw:?}: invalid syntax"
            ))
        })?,
    };
    let wanted_capabilities = query.all("capabilities");
    let agents: Vec<AgentView> = registry
        .agents()
        .await
        .map_err(ApiError::store("list agents"))?
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
pub async fn get(registry: Data<Registry>, path: Path<String>) -> Result<HttpResponse, ApiError> {
    registry
        .agents()
        .await
        .map_err(ApiError::store("fetch agent"))?
        .into_iter()
        .find(|agent| agent.id == *path)
        .map(|agent| HttpResponse::Ok().json(agent))
        .ok_or_else(|| ApiError::NotFound(format!("agent not found: {path}")))
}

/// Whether an id in a path could name a registered agent: one with a NUL byte or longer than any
/// registration accepts names no agent, and is answered as unknown without a database read.
fn could_be_agent_id(raw: &str) -> bool {
    bounded("agent_id", raw, MAX_ID_BYTES).is_ok()
}

/// Go's `strconv.ParseBool`.
fn parse_go_bool(raw: &str) -> Option<bool> {
    match raw {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}
