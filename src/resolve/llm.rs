//! LLM resolution for `@mesh.llm` functions: the provider tool that serves a function's model
//! calls (`llm_providers`) and the mesh tools its model may call (`llm_tools`). The reference's
//! rules here are not those of dependency resolution:
//!
//! * a candidate is a tool with an input schema whose agent is healthy, in any namespace;
//!   required dependencies play no part;
//! * tags are plain strings (`t` required, `+t` preferred, `-t` excluded), scored as dependency
//!   tags are; a provider request cannot hold an OR group (the registration is refused);
//! * candidates are visited in the order their agents joined the mesh, then in registration
//!   order within an agent (the reference reads its tool table in insertion order).
//!
//! A provider request names a capability, an optional version constraint and tags. The SDK adds
//! `-ai.mcpmesh.stream` to the tags (`ai.mcpmesh.stream` for a streaming function): that is how
//! the plain tool of a `@mesh.llm_provider` is told from its streaming twin. When the request
//! has tags the best score wins, then the highest version, then the smallest agent id; without
//! tags the first candidate does.
//!
//! A tool filter is a list of entries, each a capability name, `"*"` (every candidate) or an
//! object `{capability?, tags?, version?}`. Mode `all` (the default, and any unknown mode) keeps
//! every match, `best_match` one tool per capability (highest version, then most tags), and `*`
//! every candidate of other agents whatever the entries say. Matches are de-duplicated by
//! function name, first one kept, because an LLM API needs unique tool names.

use std::cmp::Reverse;
use std::collections::{BTreeMap, HashMap};

use serde_json::value::RawValue;
use serde_json::{Map, Value};

use super::{is_empty_object, tag_score, version};
use crate::store::{AgentRow, MeshSnapshot, NewTool, ToolRow};
use crate::wire::{
    AgentStatus, DependencyStatus, LlmFilterView, LlmProviderResolution, LlmProviderSpec,
    LlmToolInfo, LlmToolResolution, ResolvedLlmProvider, TagItem,
};

/// A tool an LLM may be offered, or be served by.
#[derive(Debug)]
pub struct Candidate<'a> {
    tool: &'a ToolRow,
    input_schema: &'a RawValue,
    endpoint: String,
}

impl Candidate<'_> {
    fn function_name(&self) -> &str {
        &self.tool.function_name
    }

    fn tool_info(&self) -> LlmToolInfo {
        LlmToolInfo {
            name: self.tool.function_name.clone(),
            capability: self.tool.capability.clone(),
            description: self.tool.description.clone(),
            endpoint: self.endpoint.clone(),
            input_schema: self.input_schema.to_owned(),
            tags: self.tool.tags.clone(),
            version: self.tool.version.clone(),
        }
    }

    fn provider_info(&self) -> ResolvedLlmProvider {
        let kwargs: Map<String, Value> = self
            .tool
            .kwargs
            .as_deref()
            .and_then(|raw| serde_json::from_str(raw.get()).ok())
            .unwrap_or_default();
        ResolvedLlmProvider {
            agent_id: self.tool.agent_id.clone(),
            name: self.tool.function_name.clone(),
            endpoint: self.endpoint.clone(),
            capability: self.tool.capability.clone(),
            status: DependencyStatus::Available,
            vendor: kwargs
                .get("vendor")
                .and_then(Value::as_str)
                .unwrap_or("unknown")
                .to_owned(),
            tags: self.tool.tags.clone(),
            version: self.tool.version.clone(),
            kwargs: self.tool.kwargs.clone().filter(|_| !kwargs.is_empty()),
        }
    }
}

/// What a `@mesh.llm` function asks for, as registered.
#[derive(Debug, Clone, Copy)]
pub struct LlmRequest<'t> {
    pub function_name: &'t str,
    pub filter: Option<&'t RawValue>,
    pub provider: Option<&'t LlmProviderSpec>,
}

impl<'t> LlmRequest<'t> {
    /// The request of a stored tool.
    pub fn of_tool(tool: &'t ToolRow) -> LlmRequest<'t> {
        LlmRequest {
            function_name: &tool.function_name,
            filter: tool.llm_filter.as_deref(),
            provider: tool.llm_provider.as_ref(),
        }
    }

    /// The request of a tool being registered.
    pub fn of_new_tool(tool: &NewTool<'t>) -> LlmRequest<'t> {
        LlmRequest {
            function_name: tool.function_name,
            filter: tool.llm_filter,
            provider: tool.llm_provider,
        }
    }
}

/// A tool filter as the reference reads it: the `filter` list and the mode.
#[derive(Debug)]
pub struct ToolFilter {
    mode: String,
    entries: Vec<Value>,
}

impl ToolFilter {
    /// `None` unless the filter holds a `filter` list: the reference then answers nothing for
    /// the function (not even an empty list).
    pub fn parse(raw: &RawValue) -> Option<ToolFilter> {
        let mut fields: Map<String, Value> = serde_json::from_str(raw.get()).ok()?;
        let Value::Array(entries) = fields.remove("filter")? else {
            return None;
        };
        let mode = match fields.get("filter_mode") {
            Some(Value::String(mode)) => mode.clone(),
            _ => "all".to_owned(),
        };
        Some(ToolFilter { mode, entries })
    }
}

/// The heartbeat's LLM answer for one agent.
#[derive(Debug, Default)]
pub struct LlmAnswer {
    /// Per function whose filter could be read: the tools offered (possibly none).
    pub tools: BTreeMap<String, Vec<LlmToolInfo>>,
    /// Per function whose provider request resolved.
    pub providers: BTreeMap<String, ResolvedLlmProvider>,
}

/// The candidates of the mesh at one moment.
pub struct LlmMesh<'a> {
    candidates: Vec<Candidate<'a>>,
}

impl<'a> LlmMesh<'a> {
    pub fn from_snapshot(snapshot: &'a MeshSnapshot) -> LlmMesh<'a> {
        let mut tools_of: HashMap<&str, Vec<&ToolRow>> = HashMap::new();
        for tool in &snapshot.tools {
            tools_of.entry(&tool.agent_id).or_default().push(tool);
        }
        let mut agents: Vec<&AgentRow> = snapshot
            .agents
            .iter()
            .filter(|agent| agent.status == AgentStatus::Healthy)
            .collect();
        agents.sort_by(|a, b| (a.created_at, &a.agent_id).cmp(&(b.created_at, &b.agent_id)));
        let mut candidates = Vec::new();
        for agent in agents {
            let endpoint = endpoint(agent);
            for tool in tools_of.remove(agent.agent_id.as_str()).unwrap_or_default() {
                let Some(input_schema) = tool.input_schema.as_deref() else {
                    continue;
                };
                if tool.capability.is_empty() || tool.function_name.is_empty() {
                    continue;
                }
                candidates.push(Candidate {
                    tool,
                    input_schema,
                    endpoint: endpoint.clone(),
                });
            }
        }
        LlmMesh { candidates }
    }

    /// The provider tool that serves `request`, or `None`.
    pub fn provider(&self, request: &LlmProviderSpec) -> Option<&Candidate<'a>> {
        if request.capability.is_empty() {
            return None;
        }
        let mut found = self
            .candidates
            .iter()
            .filter(|c| c.tool.capability == request.capability)
            .filter(|c| {
                request
                    .version
                    .as_deref()
                    .is_none_or(|constraint| version::satisfies(&c.tool.version, constraint))
            });
        let tags = match request.tags.as_deref() {
            None | Some([]) => return found.next(),
            Some(tags) => plain_tags(tags.iter().map(String::as_str)),
        };
        // `min_by` keeps the first of equals, as the reference's stable sort does.
        found
            .filter_map(|c| tag_score(&tags, &c.tool.tags).map(|score| (score, c)))
            .min_by(|(score_a, a), (score_b, b)| {
                score_b
                    .cmp(score_a)
                    .then_with(|| version::compare(&b.tool.version, &a.tool.version))
                    .then_with(|| a.tool.agent_id.cmp(&b.tool.agent_id))
            })
            .map(|(_, c)| c)
    }

    /// The tools `filter` offers the model of a function of agent `caller`; `None` when an entry
    /// is neither a string nor an object (the reference then answers nothing for the function).
    pub fn tools(&self, filter: &ToolFilter, caller: &str) -> Option<Vec<&Candidate<'a>>> {
        if filter.mode == "*" {
            let others = self.candidates.iter().filter(|c| c.tool.agent_id != caller);
            return Some(unique_names(others));
        }
        let mut matched = Vec::new();
        for entry in &filter.entries {
            matched.extend(self.matching(entry)?);
        }
        let unique = unique_names(matched);
        Some(match filter.mode.as_str() {
            "best_match" => best_per_capability(unique),
            _ => unique,
        })
    }

    /// The candidates one filter entry matches, best tag score first when it has tags.
    fn matching(&self, entry: &Value) -> Option<Vec<&Candidate<'a>>> {
        let all = self.candidates.iter();
        let fields = match entry {
            Value::String(wanted) if wanted == "*" => return Some(all.collect()),
            Value::String(wanted) => {
                return Some(all.filter(|c| c.tool.capability == *wanted).collect())
            }
            Value::Object(fields) => fields,
            _ => return None,
        };
        let mut found: Vec<&Candidate> = match fields.get("capability") {
            Some(Value::String(wanted)) => all.filter(|c| c.tool.capability == *wanted).collect(),
            _ => all.collect(),
        };
        let tags = match fields.get("tags") {
            Some(Value::Array(tags)) => plain_tags(tags.iter().filter_map(Value::as_str)),
            _ => Vec::new(),
        };
        if !tags.is_empty() {
            let mut scored: Vec<_> = found
                .into_iter()
                .filter_map(|c| tag_score(&tags, &c.tool.tags).map(|score| (score, c)))
                .collect();
            scored.sort_by_key(|(score, _)| Reverse(*score));
            found = scored.into_iter().map(|(_, c)| c).collect();
        }
        if let Some(Value::String(constraint)) = fields.get("version") {
            found.retain(|c| version::satisfies(&c.tool.version, constraint));
        }
        Some(found)
    }

    /// What each `@mesh.llm` function of agent `caller` resolves to, by function name. A
    /// function named twice keeps its last answer, as in a map built in registration order.
    fn resolve<'r>(&self, caller: &str, requests: &[LlmRequest<'r>]) -> Resolved<'_, 'a, 'r> {
        let mut resolved = Resolved::default();
        for request in requests {
            if let Some(tools) = request
                .filter
                .and_then(ToolFilter::parse)
                .and_then(|filter| self.tools(&filter, caller))
            {
                resolved.tools.insert(request.function_name, tools);
            }
            if let Some(provider) = request.provider.and_then(|spec| self.provider(spec)) {
                resolved.providers.insert(request.function_name, provider);
            }
        }
        resolved
    }

    /// The heartbeat answer for the `@mesh.llm` functions of agent `caller`.
    pub fn answer(&self, caller: &str, requests: &[LlmRequest]) -> LlmAnswer {
        let resolved = self.resolve(caller, requests);
        LlmAnswer {
            tools: resolved
                .tools
                .into_iter()
                .map(|(function, tools)| {
                    let tools = tools.iter().map(|c| c.tool_info()).collect();
                    (function.to_owned(), tools)
                })
                .collect(),
            providers: resolved
                .providers
                .into_iter()
                .map(|(function, provider)| (function.to_owned(), provider.provider_info()))
                .collect(),
        }
    }

    /// How `GET /agents` shows the agent's LLM requests: one row per filter entry and tool it
    /// matched (or one `unresolved` row), one row per provider request; available rows first.
    pub fn resolutions(
        &self,
        caller: &str,
        requests: &[LlmRequest],
    ) -> (Vec<LlmToolResolution>, Vec<LlmProviderResolution>) {
        let resolved = self.resolve(caller, requests);
        let mut tool_rows = Vec::new();
        let mut provider_rows = Vec::new();
        for request in requests {
            if let Some(filter) = request.filter.and_then(ToolFilter::parse) {
                let offered = resolved.tools.get(request.function_name);
                for entry in &filter.entries {
                    tool_rows.extend(entry_rows(request.function_name, &filter, entry, offered));
                }
            }
            let Some(spec) = request.provider.filter(|spec| !spec.capability.is_empty()) else {
                continue;
            };
            let provider = resolved.providers.get(request.function_name);
            provider_rows.push(LlmProviderResolution {
                function_name: request.function_name.to_owned(),
                required_capability: spec.capability.clone(),
                required_tags: spec.tags.clone().unwrap_or_default(),
                status: status_of(provider),
                provider_agent_id: provider.map(|p| p.tool.agent_id.clone()),
                mcp_tool: provider.map(|p| p.tool.function_name.clone()),
                endpoint: provider.map(|p| p.endpoint.clone()),
            });
        }
        // Available rows first, each group in registration order: the reference's default
        // (SQLite) store reads them back through its index on the status.
        tool_rows.sort_by_key(|row| row.status == DependencyStatus::Unresolved);
        provider_rows.sort_by_key(|row| row.status == DependencyStatus::Unresolved);
        (tool_rows, provider_rows)
    }
}

/// Per function name: the tools offered, and the provider chosen.
#[derive(Default)]
struct Resolved<'m, 'a, 'r> {
    tools: HashMap<&'r str, Vec<&'m Candidate<'a>>>,
    providers: HashMap<&'r str, &'m Candidate<'a>>,
}

fn status_of<T>(resolved: Option<T>) -> DependencyStatus {
    match resolved {
        Some(_) => DependencyStatus::Available,
        None => DependencyStatus::Unresolved,
    }
}

/// The rows of one filter entry: one per offered tool of the entry's capability (every offered
/// tool for a tags-only entry), else one `unresolved` row. An entry with neither a capability nor
/// tags has no row.
fn entry_rows(
    function_name: &str,
    filter: &ToolFilter,
    entry: &Value,
    offered: Option<&Vec<&Candidate>>,
) -> Vec<LlmToolResolution> {
    let (capability, tags) = match entry {
        Value::String(capability) => (capability.as_str(), Vec::new()),
        Value::Object(fields) => (
            fields
                .get("capability")
                .and_then(Value::as_str)
                .unwrap_or_default(),
            match fields.get("tags") {
                Some(Value::Array(tags)) => tags
                    .iter()
                    .filter_map(|t| t.as_str().map(str::to_owned))
                    .collect(),
                _ => Vec::new(),
            },
        ),
        _ => return Vec::new(),
    };
    if capability.is_empty() && tags.is_empty() {
        return Vec::new();
    }
    let row = |tool: Option<&Candidate>| LlmToolResolution {
        function_name: function_name.to_owned(),
        filter_capability: capability.to_owned(),
        filter_tags: tags.clone(),
        filter_mode: filter.mode.clone(),
        status: status_of(tool),
        provider_agent_id: tool.map(|t| t.tool.agent_id.clone()),
        mcp_tool: tool.map(|t| t.tool.function_name.clone()),
        provider_capability: tool.map(|t| t.tool.capability.clone()),
        endpoint: tool.map(|t| t.endpoint.clone()),
    };
    let matched: Vec<&Candidate> = offered
        .into_iter()
        .flatten()
        .copied()
        .filter(|tool| capability.is_empty() || tool.tool.capability == capability)
        .collect();
    match matched.is_empty() {
        true => vec![row(None)],
        false => matched.into_iter().map(|tool| row(Some(tool))).collect(),
    }
}

/// Request tags as tag items (plain strings only).
fn plain_tags<'t>(tags: impl IntoIterator<Item = &'t str>) -> Vec<TagItem> {
    tags.into_iter()
        .map(|tag| TagItem::Tag(tag.to_owned()))
        .collect()
}

/// The first candidate of each function name, in order.
fn unique_names<'c, 'a: 'c>(
    candidates: impl IntoIterator<Item = &'c Candidate<'a>>,
) -> Vec<&'c Candidate<'a>> {
    let mut seen = std::collections::HashSet::new();
    candidates
        .into_iter()
        .filter(|c| seen.insert(c.function_name().to_owned()))
        .collect()
}

/// One candidate per capability, in the order the capabilities first appear: a higher version
/// wins; on equal (or unreadable) versions, more tags win; on a tie the first one stays.
fn best_per_capability<'c, 'a>(candidates: Vec<&'c Candidate<'a>>) -> Vec<&'c Candidate<'a>> {
    let mut best: Vec<&Candidate> = Vec::new();
    for candidate in candidates {
        match best
            .iter_mut()
            .find(|b| b.tool.capability == candidate.tool.capability)
        {
            None => best.push(candidate),
            Some(current) if better(candidate, current) => *current = candidate,
            Some(_) => {}
        }
    }
    best
}

fn better(a: &Candidate, b: &Candidate) -> bool {
    use std::cmp::Ordering::*;
    match version::compare_valid(&a.tool.version, &b.tool.version) {
        Some(Greater) => true,
        Some(Less) => false,
        Some(Equal) | None => a.tool.tags.len() > b.tool.tags.len(),
    }
}

/// Where an LLM reaches a tool: `stdio://<id>` without a port; otherwise over HTTP, with an
/// unset or wildcard host read as `localhost` and a scheme given as part of the host dropped.
fn endpoint(agent: &AgentRow) -> String {
    let port = agent.http_port.unwrap_or(0);
    if port == 0 {
        return format!("stdio://{}", agent.agent_id);
    }
    let host = match agent.http_host.as_deref().unwrap_or_default() {
        "" | "0.0.0.0" => "localhost",
        host => host,
    };
    let host = host
        .strip_prefix("http://")
        .or_else(|| host.strip_prefix("https://"))
        .unwrap_or(host);
    format!("http://{host}:{port}")
}

/// A stored `llm_filter` as `GET /agents` shows it; `None` for an empty object or one whose
/// fields do not read as the reference's typed filter.
pub fn filter_view(raw: &RawValue) -> Option<LlmFilterView> {
    match is_empty_object(raw) {
        true => None,
        false => serde_json::from_str(raw.get()).ok(),
    }
}
