//! The JSON on the wire: every request body and response shape of the HTTP API, in one place.
//!
//! Compatibility rules (docs/contract.md#conventions): unknown input fields are ignored, JSON
//! `null` means "absent", nullable output fields are always present (serialized as `null`), and
//! every timestamp is an integer of Unix epoch seconds. Opaque client JSON (payloads, results,
//! trace contexts) is kept as raw text end to end: it is validated once when parsed and never
//! re-encoded.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::value::RawValue;
use uuid::Uuid;

/// Client JSON kept verbatim (validated, never re-encoded).
pub type RawJson = Box<RawValue>;

/// Durable per-filter event cursor: filter key -> last processed event seq
/// (docs/contract.md#recv-cursor).
pub type RecvCursor = BTreeMap<String, i64>;

/// Lifecycle state of a job (docs/state-machine.md#statuses).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum JobStatus {
    Working,
    InputRequired,
    Completed,
    Failed,
    Cancelled,
}

impl JobStatus {
    /// The accepted spellings, in the order the reference lists them in its errors.
    pub const ALL: [JobStatus; 5] = [
        JobStatus::Working,
        JobStatus::InputRequired,
        JobStatus::Completed,
        JobStatus::Failed,
        JobStatus::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            JobStatus::Working => "working",
            JobStatus::InputRequired => "input_required",
            JobStatus::Completed => "completed",
            JobStatus::Failed => "failed",
            JobStatus::Cancelled => "cancelled",
        }
    }

    pub fn parse(s: &str) -> Option<JobStatus> {
        JobStatus::ALL
            .into_iter()
            .find(|status| status.as_str() == s)
    }

    /// Terminal states are absorbing: no endpoint moves a job out of them.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            JobStatus::Completed | JobStatus::Failed | JobStatus::Cancelled
        )
    }
}

/// A point in time that goes on the wire as integer Unix seconds (truncated, like Go's `Unix()`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Timestamp(pub SystemTime);

impl Timestamp {
    /// Latest instant the reference's clients can express (9999-12-31T23:59:59Z).
    pub const MAX_UNIX_SECONDS: i64 = 253_402_300_799;

    pub fn unix_seconds(self) -> i64 {
        self.unix_nanos().div_euclid(1_000_000_000) as i64
    }

    pub fn unix_nanos(self) -> i128 {
        match self.0.duration_since(UNIX_EPOCH) {
            Ok(after) => after.as_nanos() as i128,
            Err(before) => -(before.duration().as_nanos() as i128),
        }
    }

    /// `None` outside `0..=MAX_UNIX_SECONDS`.
    pub fn from_unix_seconds(seconds: i64) -> Option<Timestamp> {
        (0..=Self::MAX_UNIX_SECONDS)
            .contains(&seconds)
            .then(|| Timestamp(UNIX_EPOCH + Duration::from_secs(seconds as u64)))
    }

    pub fn from_unix_nanos(nanos: i64) -> Timestamp {
        let magnitude = Duration::from_nanos(nanos.unsigned_abs());
        Timestamp(if nanos >= 0 {
            UNIX_EPOCH + magnitude
        } else {
            UNIX_EPOCH - magnitude
        })
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_i64(self.unix_seconds())
    }
}

// ---------------------------------------------------------------------------------------------
// Requests. Every field is optional at the serde level so that a missing field and `null` both
// reach the handler, which answers with the reference's own validation message (docs/contract.md).
// ---------------------------------------------------------------------------------------------

/// `POST /jobs`
#[derive(Debug, Deserialize)]
pub struct CreateJobRequest {
    pub capability: Option<String>,
    pub submitted_by: Option<String>,
    pub submitted_payload: Option<JsonObject>,
    pub max_retries: Option<i64>,
    pub max_duration: Option<i64>,
    pub total_deadline: Option<i64>,
    pub owner_instance_id: Option<String>,
}

/// `POST /jobs/claim`
#[derive(Debug, Deserialize)]
pub struct ClaimRequest {
    pub capability: Option<String>,
    pub instance_id: Option<String>,
}

/// `POST /jobs/batch`
#[derive(Debug, Deserialize)]
pub struct BatchRequest {
    pub instance_id: Option<String>,
    pub deltas: Option<Vec<JobDelta>>,
}

/// One owner update inside a batch. `status` stays a string so that an unknown value is a
/// per-delta `invalid_status` rejection rather than a whole-request decode error.
#[derive(Debug, Deserialize)]
pub struct JobDelta {
    pub id: Option<String>,
    pub claim_epoch: Option<i64>,
    pub status: Option<String>,
    pub progress: Option<f64>,
    pub progress_message: Option<String>,
    pub result: Option<JsonObject>,
    pub error: Option<String>,
    pub recv_cursor: Option<RecvCursor>,
}

/// `POST /jobs/{id}/release`
#[derive(Debug, Deserialize)]
pub struct ReleaseRequest {
    pub instance_id: Option<String>,
    pub reason: Option<String>,
}

/// `POST /jobs/{id}/cancel` (the body itself is optional); also what is forwarded to the owner.
#[derive(Debug, Default, Deserialize, Serialize)]
pub struct CancelRequest {
    pub reason: Option<String>,
}

/// `POST /jobs/{id}/events`
#[derive(Debug, Deserialize)]
pub struct PostEventRequest {
    #[serde(rename = "type")]
    pub event_type: Option<String>,
    pub payload: Option<RawJson>,
    pub trace_context: Option<JsonObject>,
}

/// Client JSON that must be an object (the reference decodes these fields into a Go `map`, so
/// any other shape is a decode error of the whole body).
#[derive(Debug, Clone, Serialize)]
#[serde(transparent)]
pub struct JsonObject(pub RawJson);

impl<'de> Deserialize<'de> for JsonObject {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = RawJson::deserialize(deserializer)?;
        if raw.get().starts_with('{') {
            Ok(JsonObject(raw))
        } else {
            Err(serde::de::Error::custom(format!(
                "expected a JSON object, found {}",
                raw.get()
            )))
        }
    }
}

/// A job id as the registry mints them: a lowercase, hyphenated UUID. Anything else names no
/// job (the reference compares ids as strings, so `ABC…` and `abc…` are different ids).
pub fn parse_job_id(raw: &str) -> Option<Uuid> {
    if raw.len() != 36 || raw.bytes().any(|b| b.is_ascii_uppercase()) {
        return None;
    }
    Uuid::try_parse(raw).ok()
}

/// `GET /jobs` page cursor, in the reference's format so that mixed fleets can page across
/// replicas: base64url (no padding) of `"<submitted_at as Unix nanoseconds>:<job id>"`.
pub fn encode_list_cursor(submitted_at: Timestamp, id: Uuid) -> String {
    URL_SAFE_NO_PAD.encode(format!("{}:{}", submitted_at.unix_nanos(), id))
}

/// Inverse of [`encode_list_cursor`]; the error says what was wrong, as the reference does.
pub fn decode_list_cursor(cursor: &str) -> Result<(Timestamp, Uuid), String> {
    let raw = URL_SAFE_NO_PAD.decode(cursor).map_err(|e| {
        let offset = match e {
            base64::DecodeError::InvalidByte(offset, _)
            | base64::DecodeError::InvalidLastSymbol(offset, _) => offset,
            _ => cursor.len(),
        };
        format!("decode base64: illegal base64 data at input byte {offset}")
    })?;
    let text = String::from_utf8_lossy(&raw);
    let (nanos, id) = text
        .split_once(':')
        .filter(|(_, id)| !id.is_empty())
        .ok_or("malformed cursor payload")?;
    let nanos: i64 = nanos.parse().map_err(|e| format!("parse timestamp: {e}"))?;
    let id = parse_job_id(id).ok_or("malformed cursor payload")?;
    Ok((Timestamp::from_unix_nanos(nanos), id))
}

// ---------------------------------------------------------------------------------------------
// Responses.
// ---------------------------------------------------------------------------------------------

/// A job row as `GET /jobs/{id}` and `GET /jobs` return it (docs/contract.md#job).
#[derive(Debug, Clone, Serialize)]
pub struct Job {
    pub id: Uuid,
    pub capability: String,
    pub owner_instance_id: Option<String>,
    pub claim_epoch: i64,
    pub status: JobStatus,
    pub progress: Option<f64>,
    pub progress_message: Option<String>,
    pub result: Option<RawJson>,
    pub error: Option<String>,
    pub submitted_payload: RawJson,
    pub recv_cursor: Option<RecvCursor>,
    pub attempt_count: i64,
    pub max_retries: i64,
    pub max_duration: Option<i64>,
    pub total_deadline: Option<Timestamp>,
    pub lease_expires_at: Option<Timestamp>,
    pub last_heartbeat_at: Option<Timestamp>,
    pub submitted_at: Timestamp,
    /// `""` when the row has none, as the reference renders it.
    pub submitted_by: String,
}

/// What a producer receives from a successful claim.
#[derive(Debug, Serialize)]
pub struct ClaimedJob {
    pub id: Uuid,
    pub submitted_payload: RawJson,
    pub attempt_count: i64,
    pub claim_epoch: i64,
    pub lease_expires_at: Option<Timestamp>,
    pub max_duration: Option<i64>,
    pub recv_cursor: Option<RecvCursor>,
}

#[derive(Debug, Serialize)]
pub struct ClaimResponse {
    pub claimed: Vec<ClaimedJob>,
}

#[derive(Debug, Serialize)]
pub struct CreateJobResponse {
    pub id: Uuid,
    pub status: JobStatus,
    pub owner_instance_id: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct ListJobsResponse {
    pub jobs: Vec<Job>,
    pub next_cursor: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct BatchResponse {
    pub accepted: u32,
    pub rejected: Vec<RejectedDelta>,
}

#[derive(Debug, Serialize)]
pub struct RejectedDelta {
    pub id: String,
    pub reason: RejectReason,
}

/// Why a delta was not applied (exact strings: docs/contract.md#delta-rejections).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RejectReason {
    NotFound,
    NotOwner,
    AlreadyTerminal,
    InvalidStatus,
    ClaimSuperseded,
    /// Ours (docs/contract.md#delta-rejections): the database failed this delta after earlier
    /// deltas of the same request were applied; send it again. SDKs log rejections by name.
    Unavailable,
}

#[derive(Debug, Serialize)]
pub struct ReleaseResponse {
    pub status: JobStatus,
    pub attempt_count: i64,
}

#[derive(Debug, Serialize)]
pub struct CancelResponse {
    pub status: JobStatus,
    pub forwarded_to_instance_id: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct ReclaimResponse {
    pub status: JobStatus,
    pub previous_owner_instance_id: Option<String>,
    pub claim_epoch: i64,
}

/// One entry of a job's event log.
#[derive(Debug, Serialize)]
pub struct JobEvent {
    pub job_id: Uuid,
    pub seq: i64,
    #[serde(rename = "type")]
    pub event_type: String,
    pub payload: Option<RawJson>,
    pub trace_context: Option<RawJson>,
    pub posted_by: Option<String>,
    pub created_at: Timestamp,
}

#[derive(Debug, Serialize)]
pub struct EventsPage {
    pub events: Vec<JobEvent>,
    pub next_after: i64,
}

#[derive(Debug, Serialize)]
pub struct PostEventResponse {
    pub job_id: Uuid,
    pub seq: i64,
    pub created_at: Timestamp,
}

/// `GET /ready`: whether this replica can serve (its database answers).
#[derive(Debug, Serialize)]
pub struct ReadyResponse {
    pub status: &'static str,
    pub backend: &'static str,
    /// Why it is not ready (`null` when it is).
    pub error: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct HealthResponse {
    pub service: &'static str,
    pub status: &'static str,
    pub timestamp: String,
    pub uptime_seconds: u64,
    pub version: &'static str,
}

/// Body of every `/jobs*` error (docs/contract.md#errors).
#[derive(Debug, Serialize)]
pub struct ErrorBody<'a> {
    pub error: &'a str,
    pub timestamp: String,
}

/// Body of a query or path parameter that failed to parse, as the reference's generated wrapper
/// renders it (docs/contract.md#errors).
#[derive(Debug, Serialize)]
pub struct ParamErrorBody<'a> {
    pub msg: &'a str,
}

/// `POST /admin/rotate` answer, as the reference words it.
#[derive(Debug, Serialize)]
pub struct RotateResponse {
    /// Healthy agents (of the entity, or all) asked to register again.
    pub affected_agents: i64,
    /// The entity asked for; `""` for every agent.
    pub entity_id: String,
    /// `Rotation triggered for all agents`, or `… for entity '<id>'`.
    pub message: String,
}

/// `/admin/drain` answer: meshctl reads `draining` and `live_claims`.
#[derive(Debug, Serialize, Deserialize)]
pub struct DrainResponse {
    /// Claims are paused on this replica (by its own drain or by the fleet drain).
    pub draining: bool,
    /// Owned jobs still `working` or `input_required`, across the whole database.
    pub live_claims: i64,
    /// A fleet-wide drain is set (it pauses every replica).
    #[serde(default)]
    pub fleet_draining: bool,
}

/// Body of an `/admin/*` error.
#[derive(Debug, Serialize)]
pub struct AdminErrorBody<'a> {
    pub error: &'a str,
}

/// RFC 3339 UTC with nanoseconds, the format of `ErrorResponse.timestamp`.
pub fn rfc3339_now() -> String {
    rfc3339(SystemTime::now())
}

// ---------------------------------------------------------------------------------------------
// Agents (docs/contract.md#agents-endpoints; the registration body is the reference's
// `MeshAgentRegistration`).
// ---------------------------------------------------------------------------------------------

/// `POST /heartbeat`: a full registration. Fields this registry does not interpret (output
/// schemas, A2A surfaces) are not modelled; the body is stored verbatim as the agent sent it.
#[derive(Debug, Deserialize)]
pub struct AgentRegistration {
    pub agent_id: Option<String>,
    pub name: Option<String>,
    pub agent_type: Option<String>,
    pub runtime: Option<String>,
    pub version: Option<String>,
    pub description: Option<String>,
    pub namespace: Option<String>,
    pub http_host: Option<String>,
    pub http_port: Option<i64>,
    pub a2a_producer: Option<bool>,
    pub a2a_consumer: Option<bool>,
    pub tools: Option<Vec<ToolRegistration>>,
}

/// One tool of a registration: a function, the capability it provides, and what it depends on.
#[derive(Debug, Deserialize)]
pub struct ToolRegistration {
    pub function_name: Option<String>,
    pub capability: Option<String>,
    pub version: Option<String>,
    pub tags: Option<Vec<String>>,
    pub description: Option<String>,
    pub dependencies: Option<Vec<DependencySpec>>,
    pub kwargs: Option<JsonObject>,
    /// The tool's parameters (JSON Schema): only a tool with one is offered to an LLM.
    #[serde(rename = "inputSchema")]
    pub input_schema: Option<JsonObject>,
    /// `@mesh.llm`: which mesh tools its model may call (read as the reference reads it).
    pub llm_filter: Option<JsonObject>,
    /// `@mesh.llm`: which provider serves its model calls.
    pub llm_provider: Option<LlmProviderSpec>,
    /// The published schemas: content hashes (`sha256:<hex>`) of the canonical forms. A hash is
    /// kept only with its canonical form, as the reference keeps it.
    #[serde(rename = "inputSchemaHash")]
    pub input_schema_hash: Option<String>,
    #[serde(rename = "inputSchemaCanonical")]
    pub input_schema_canonical: Option<JsonObject>,
    #[serde(rename = "outputSchemaHash")]
    pub output_schema_hash: Option<String>,
    #[serde(rename = "outputSchemaCanonical")]
    pub output_schema_canonical: Option<JsonObject>,
}

/// What a tool needs from the mesh: a capability, narrowed by tags and a version constraint.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct DependencySpec {
    #[serde(default, deserialize_with = "null_as_default")]
    pub capability: String,
    #[serde(default, deserialize_with = "tag_items")]
    pub tags: Vec<TagItem>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub version: String,
    #[serde(default, deserialize_with = "null_as_default")]
    pub namespace: String,
    /// Only a required dependency gates the availability of the tool (and its claims).
    #[serde(default, deserialize_with = "null_as_default")]
    pub required: bool,
    /// Schema matching, when the consumer opts in: `subset` (the producer's output has every
    /// field the consumer requires) or `strict` (the same hash); empty = no schema stage.
    #[serde(
        rename = "matchMode",
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "String::is_empty"
    )]
    pub match_mode: String,
    #[serde(
        rename = "expectedSchemaHash",
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "String::is_empty"
    )]
    pub expected_schema_hash: String,
    #[serde(
        rename = "expectedSchemaCanonical",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub expected_schema_canonical: Option<serde_json::Map<String, serde_json::Value>>,
}

/// What a `@mesh.llm` tool asks of its provider. The reference decodes it into a struct whose
/// tags are plain strings, so an OR group here is a decode error of the whole body.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct LlmProviderSpec {
    #[serde(default, deserialize_with = "null_as_default")]
    pub capability: String,
    #[serde(
        default,
        deserialize_with = "nullable_strings",
        skip_serializing_if = "Option::is_none"
    )]
    pub tags: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Kept and shown, but not used: the reference resolves providers in every namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
}

/// A dependency tag: `"t"` required, `"+t"` preferred, `"-t"` excluded; a list is an OR group.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(untagged)]
pub enum TagItem {
    Tag(String),
    AnyOf(Vec<String>),
}

impl TagItem {
    /// Every tag it names.
    pub fn tags(&self) -> impl Iterator<Item = &String> {
        match self {
            TagItem::Tag(tag) => std::slice::from_ref(tag).iter(),
            TagItem::AnyOf(tags) => tags.iter(),
        }
    }
}

fn null_as_default<'de, D: Deserializer<'de>, T: Default + Deserialize<'de>>(
    deserializer: D,
) -> Result<T, D::Error> {
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}

/// A list of strings in which `null` reads as `""`, as Go decodes it.
fn nullable_strings<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Vec<String>>, D::Error> {
    let items: Option<Vec<Option<String>>> = Option::deserialize(deserializer)?;
    Ok(items.map(|items| items.into_iter().map(Option::unwrap_or_default).collect()))
}

/// Tag items of any other JSON type are dropped, as the reference drops them.
fn tag_items<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<TagItem>, D::Error> {
    let items: Option<Vec<serde_json::Value>> = Option::deserialize(deserializer)?;
    Ok(items
        .unwrap_or_default()
        .into_iter()
        .filter_map(|item| match item {
            serde_json::Value::String(tag) => Some(TagItem::Tag(tag)),
            serde_json::Value::Array(group) => Some(TagItem::AnyOf(
                group
                    .into_iter()
                    .filter_map(|member| member.as_str().map(str::to_owned))
                    .collect(),
            )),
            _ => None,
        })
        .collect())
}

/// `POST /heartbeat` answer, as the SDKs parse it.
#[derive(Debug, Serialize)]
pub struct HeartbeatResponse {
    pub status: &'static str,
    pub message: &'static str,
    pub agent_id: String,
    /// Per consumer function: one entry per declared dependency, in order.
    pub dependencies_resolved: BTreeMap<String, Vec<ResolvedDependency>>,
    /// Per `@mesh.llm` function whose filter the reference reads: the tools its LLM may call
    /// (possibly none).
    pub llm_tools: BTreeMap<String, Vec<LlmToolInfo>>,
    /// Per `@mesh.llm` function whose provider resolved; absent when none did, as the
    /// reference leaves it out.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub llm_providers: BTreeMap<String, ResolvedLlmProvider>,
    pub timestamp: String,
}

/// `POST /heartbeat` refused (still `200`, as the reference answers it).
#[derive(Debug, Serialize)]
pub struct HeartbeatRefused<'a> {
    pub agent_id: &'a str,
    pub message: String,
    pub status: &'static str,
    pub timestamp: String,
}

/// A mesh tool an LLM may call, with what it needs to describe and call it.
#[derive(Debug, Clone, Serialize)]
pub struct LlmToolInfo {
    pub name: String,
    pub capability: String,
    pub description: String,
    pub endpoint: String,
    #[serde(rename = "inputSchema")]
    pub input_schema: RawJson,
    pub tags: Vec<String>,
    pub version: String,
}

/// The provider tool that serves a `@mesh.llm` function's model calls.
#[derive(Debug, Clone, Serialize)]
pub struct ResolvedLlmProvider {
    pub agent_id: String,
    /// The provider's function.
    pub name: String,
    pub endpoint: String,
    pub capability: String,
    pub status: DependencyStatus,
    /// `kwargs.vendor` of the provider tool, `"unknown"` when it has none.
    pub vendor: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub version: String,
    /// The provider tool's kwargs, left out when it has none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kwargs: Option<RawJson>,
}

/// One dependency position: the chosen provider, or an `unresolved` placeholder (empty strings,
/// so that SDKs keep positions aligned).
#[derive(Debug, Clone, Serialize)]
pub struct ResolvedDependency {
    pub agent_id: String,
    pub capability: String,
    pub endpoint: String,
    pub function_name: String,
    pub status: DependencyStatus,
    /// The provider tool's kwargs, left out when it has none (as the reference does).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kwargs: Option<RawJson>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DependencyStatus {
    Available,
    Unresolved,
}

/// Health of an agent as the registry sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AgentStatus {
    Healthy,
    Unhealthy,
    Unknown,
}

impl AgentStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            AgentStatus::Healthy => "healthy",
            AgentStatus::Unhealthy => "unhealthy",
            AgentStatus::Unknown => "unknown",
        }
    }

    pub fn parse(s: &str) -> Option<AgentStatus> {
        [
            AgentStatus::Healthy,
            AgentStatus::Unhealthy,
            AgentStatus::Unknown,
        ]
        .into_iter()
        .find(|status| status.as_str() == s)
    }
}

/// `GET /agents`
#[derive(Debug, Serialize)]
pub struct AgentsResponse {
    pub agents: Vec<AgentView>,
    pub count: usize,
    pub timestamp: String,
}

/// An agent as `GET /agents` shows it (the fields meshctl reads, and the reference's others).
#[derive(Debug, Serialize)]
pub struct AgentView {
    pub id: String,
    pub name: String,
    pub agent_type: String,
    pub status: AgentStatus,
    pub endpoint: String,
    pub version: String,
    pub runtime: String,
    pub description: String,
    pub namespace: String,
    pub a2a_producer: bool,
    pub a2a_consumer: bool,
    /// The entity that vouched for the agent's client certificate; left out without one, as
    /// the reference leaves it out.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub entity_id: Option<String>,
    pub created_at: String,
    pub last_seen: String,
    pub capabilities: Vec<CapabilityView>,
    pub total_dependencies: usize,
    pub dependencies_resolved: usize,
    pub dependency_resolutions: Vec<DependencyResolution>,
    /// `null` when the agent has none, as the reference renders an empty list.
    pub llm_tool_resolutions: Option<Vec<LlmToolResolution>>,
    pub llm_provider_resolutions: Option<Vec<LlmProviderResolution>>,
}

#[derive(Debug, Serialize)]
pub struct CapabilityView {
    pub name: String,
    pub function_name: String,
    pub version: String,
    pub description: String,
    pub tags: Vec<String>,
    /// The tool runs as a job (`kwargs.task == true`).
    pub task: bool,
    pub available: bool,
    pub unavailable_reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub llm_filter: Option<LlmFilterView>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub llm_provider: Option<LlmProviderSpec>,
}

/// A tool's `llm_filter` as `GET /agents` shows it: the reference re-reads the stored object
/// into its typed filter, so it is left out when that fails.
#[derive(Debug, Deserialize, Serialize)]
pub struct LlmFilterView {
    /// `null` when the registration had none.
    #[serde(default)]
    pub filter: Option<Vec<RawJson>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter_mode: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inject_param: Option<String>,
}

/// One filter entry of a `@mesh.llm` function and one tool it matched (or none).
#[derive(Debug, Clone, Serialize)]
pub struct LlmToolResolution {
    pub function_name: String,
    pub filter_capability: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub filter_tags: Vec<String>,
    pub filter_mode: String,
    pub status: DependencyStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub provider_agent_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mcp_tool: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub provider_capability: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
}

/// A `@mesh.llm` function's provider request and the provider it resolved to (or none).
#[derive(Debug, Clone, Serialize)]
pub struct LlmProviderResolution {
    pub function_name: String,
    pub required_capability: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub required_tags: Vec<String>,
    pub status: DependencyStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub provider_agent_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mcp_tool: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
}

/// Where one dependency of one of the agent's functions resolves now.
#[derive(Debug, Serialize)]
pub struct DependencyResolution {
    pub function_name: String,
    pub capability: String,
    pub status: DependencyStatus,
    pub provider_agent_id: Option<String>,
    pub mcp_tool: Option<String>,
    pub endpoint: Option<String>,
}

/// RFC 3339 UTC, the format of agent timestamps in `GET /agents`.
pub fn rfc3339(at: SystemTime) -> String {
    use time::format_description::well_known::Rfc3339;
    time::OffsetDateTime::from(at)
        .format(&Rfc3339)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_truncate_like_go_unix() {
        let t = Timestamp(UNIX_EPOCH + Duration::from_millis(1_999));
        assert_eq!(t.unix_seconds(), 1);
        assert_eq!(Timestamp::from_unix_nanos(-1).unix_seconds(), -1);
        assert_eq!(serde_json::to_string(&t).unwrap(), "1");
    }

    #[test]
    fn unix_seconds_outside_the_supported_range_are_refused() {
        assert!(Timestamp::from_unix_seconds(-1).is_none());
        assert!(Timestamp::from_unix_seconds(Timestamp::MAX_UNIX_SECONDS + 1).is_none());
        assert_eq!(
            Timestamp::from_unix_seconds(1_795_773_177)
                .unwrap()
                .unix_seconds(),
            1_795_773_177
        );
    }

    #[test]
    fn nullable_fields_are_serialized_as_null() {
        let body = serde_json::to_value(CreateJobResponse {
            id: Uuid::nil(),
            status: JobStatus::Working,
            owner_instance_id: None,
        })
        .unwrap();
        assert_eq!(body["owner_instance_id"], serde_json::Value::Null);
        assert_eq!(body["status"], "working");
    }

    #[test]
    fn list_cursor_round_trips_in_the_reference_format() {
        let id = Uuid::new_v4();
        let at = Timestamp::from_unix_nanos(1_795_773_177_123_456_000);
        let cursor = encode_list_cursor(at, id);
        assert_eq!(
            URL_SAFE_NO_PAD.decode(&cursor).unwrap(),
            format!("1795773177123456000:{id}").into_bytes()
        );
        assert_eq!(decode_list_cursor(&cursor), Ok((at, id)));
        assert!(decode_list_cursor("!!!")
            .unwrap_err()
            .starts_with("decode base64"));
        assert_eq!(
            decode_list_cursor(&URL_SAFE_NO_PAD.encode("12345")).unwrap_err(),
            "malformed cursor payload"
        );
    }

    #[test]
    fn only_canonical_job_ids_name_a_job() {
        let id = Uuid::new_v4();
        assert_eq!(parse_job_id(&id.to_string()), Some(id));
        assert_eq!(parse_job_id(&id.to_string().to_uppercase()), None);
        assert_eq!(parse_job_id(&id.simple().to_string()), None);
        assert_eq!(parse_job_id("does-not-exist"), None);
    }

    #[test]
    fn json_objects_refuse_other_shapes() {
        assert!(serde_json::from_str::<JsonObject>(r#"{"a":1}"#).is_ok());
        assert!(serde_json::from_str::<JsonObject>("[1]").is_err());
        assert!(serde_json::from_str::<JsonObject>("\"x\"").is_err());
    }

    #[test]
    fn status_spellings_round_trip() {
        for status in JobStatus::ALL {
            assert_eq!(JobStatus::parse(status.as_str()), Some(status));
        }
        assert_eq!(JobStatus::parse("running"), None);
    }
}

/// One event of the registry's log as `GET /events` shows it: the reference leaves out an
/// absent name, function or data rather than sending `null`.
#[derive(Debug, Serialize)]
pub struct MeshEventView {
    pub agent_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub agent_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data: Option<RawJson>,
    pub event_type: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub function_name: Option<String>,
    pub timestamp: String,
}

/// `GET /events`: newest first.
#[derive(Debug, Serialize)]
pub struct MeshEventsResponse {
    pub count: usize,
    pub events: Vec<MeshEventView>,
}

/// A canonical schema as `GET /schemas` and `GET /schemas/{hash}` show it.
#[derive(Debug, Serialize)]
pub struct SchemaEntryView {
    pub canonical: RawJson,
    pub created_at: String,
    pub hash: String,
    pub runtime_origin: String,
}

/// `GET /schemas`
#[derive(Debug, Serialize)]
pub struct SchemasResponse {
    pub count: usize,
    pub schemas: Vec<SchemaEntryView>,
}

/// `GET /`
#[derive(Debug, Serialize)]
pub struct RootResponse {
    pub endpoints: [&'static str; 3],
    pub service: &'static str,
    pub status: &'static str,
    pub version: &'static str,
}
