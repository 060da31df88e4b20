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
struct Candidate<'a> {
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
struct ToolFilter {
    mode: String,
    entries: Vec<Value>,
}

impl ToolFilter {
    /// `None` unless the filter holds a `filter` list: the reference then answers nothing for
    /// the function (not even an empty list).
    fn parse(raw: &RawValue) -> Option<ToolFilter> {
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
    fn provider(&self, request: &LlmProviderSpec) -> Option<&Candidate<'a>> {
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
    fn tools(&self, filter: &ToolFilter, caller: &str) -> Option<Vec<&Candidate<'a>>> {
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

/// Where an LLM reaches a tool: `stdio://<id>` without a port; otherwise over HTTP(S) (the
/// scheme as `domain::agents::scheme` chooses it), with an unset or wildcard host read as
/// `localhost` and a scheme given as part of the host dropped.
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
    let scheme = crate::domain::agents::scheme(agent.entity_id.as_deref());
    format!("{scheme}://{host}:{port}")
}

/// A stored `llm_filter` as `GET /agents` shows it; `None` for an empty object or one whose
/// fields do not read as the reference's typed filter.
pub fn filter_view(raw: &RawValue) -> Option<LlmFilterView> {
    match is_empty_object(raw) {
        true => None,
        false => serde_json::from_str(raw.get()).ok(),
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use serde_json::json;

    use super::*;

    fn raw(value: Value) -> Box<RawValue> {
        serde_json::value::to_raw_value(&value).unwrap()
    }

    /// Agents join in the order given; each tool is `(agent, function, capability, version, tags)`
    /// with an input schema unless its function ends in `!`.
    struct MeshBuilder {
        snapshot: MeshSnapshot,
    }

    impl MeshBuilder {
        fn new() -> MeshBuilder {
            MeshBuilder {
                snapshot: MeshSnapshot {
                    agents: Vec::new(),
                    tools: Vec::new(),
                },
            }
        }

        fn agent(mut self, agent_id: &str, port: i32) -> MeshBuilder {
            let joined = UNIX_EPOCH + Duration::from_secs(self.snapshot.agents.len() as u64);
            self.snapshot.agents.push(AgentRow {
                agent_id: agent_id.into(),
                name: agent_id.into(),
                agent_type: "mcp_agent".into(),
                runtime: "python".into(),
                version: String::new(),
                description: String::new(),
                namespace: "default".into(),
                http_host: Some("10.0.0.1".into()),
                http_port: Some(port),
                a2a_producer: false,
                a2a_consumer: false,
                status: AgentStatus::Healthy,
                created_at: joined,
                updated_at: joined,
                entity_id: None,
            });
            self
        }

        fn tool(mut self, function: &str, capability: &str, version: &str, tags: &[&str]) -> Self {
            let agent_id = self.snapshot.agents.last().unwrap().agent_id.clone();
            let (function, schema) = match function.strip_suffix('!') {
                Some(bare) => (bare, None),
                None => (
                    function,
                    Some(raw(json!({"type": "object", "title": function}))),
                ),
            };
            self.snapshot.tools.push(ToolRow {
                agent_id,
                function_name: function.into(),
                capability: capability.into(),
                version: version.into(),
                description: format!("{function} does it"),
                tags: tags.iter().map(|t| t.to_string()).collect(),
                kwargs: None,
                dependencies: Vec::new(),
                input_schema: schema,
                llm_filter: None,
                llm_provider: None,
                output_schema_hash: None,
            });
            self
        }

        fn kwargs(mut self, kwargs: Value) -> Self {
            self.snapshot.tools.last_mut().unwrap().kwargs = Some(raw(kwargs));
            self
        }

        fn build(self) -> MeshSnapshot {
            self.snapshot
        }
    }

    fn spec(value: Value) -> LlmProviderSpec {
        serde_json::from_value(value).unwrap()
    }

    fn provider(snapshot: &MeshSnapshot, request: Value) -> Option<String> {
        let mesh = LlmMesh::from_snapshot(snapshot);
        mesh.provider(&spec(request))
            .map(|c| format!("{}/{}", c.tool.agent_id, c.tool.function_name))
    }

    fn offered(snapshot: &MeshSnapshot, filter: Value, caller: &str) -> Option<Vec<String>> {
        let mesh = LlmMesh::from_snapshot(snapshot);
        let filter = ToolFilter::parse(&raw(filter))?;
        mesh.tools(&filter, caller).map(|tools| {
            tools
                .iter()
                .map(|c| format!("{}/{}", c.tool.agent_id, c.tool.function_name))
                .collect()
        })
    }

    /// Two `@mesh.llm_provider` agents (a plain tool and its streaming twin each) and one more.
    fn providers() -> MeshSnapshot {
        MeshBuilder::new()
            .agent("claude", 9001)
            .tool("chat", "llm", "1.0.0", &["claude", "anthropic"])
            .kwargs(json!({"vendor": "anthropic", "timeout": 60}))
            .tool(
                "chat_stream",
                "llm",
                "1.0.0",
                &["claude", "anthropic", "ai.mcpmesh.stream"],
            )
            .kwargs(json!({"vendor": "anthropic"}))
            .agent("gpt", 9002)
            .tool("gpt_chat", "llm", "2.0.0", &["openai"])
            .tool(
                "gpt_chat_stream",
                "llm",
                "2.0.0",
                &["openai", "ai.mcpmesh.stream"],
            )
            .agent("bare", 9003)
            .tool("bare_chat!", "llm", "9.0.0", &["claude"])
            .build()
    }

    #[test]
    fn the_sdk_stream_tag_picks_the_plain_or_the_streaming_variant() {
        let mesh = providers();
        let plain = json!({"capability": "llm", "tags": ["+claude", "-ai.mcpmesh.stream"]});
        let stream = json!({"capability": "llm", "tags": ["+claude", "ai.mcpmesh.stream"]});
        assert_eq!(provider(&mesh, plain).as_deref(), Some("claude/chat"));
        assert_eq!(
            provider(&mesh, stream).as_deref(),
            Some("claude/chat_stream")
        );
    }

    #[test]
    fn provider_tags_filter_and_score_then_the_highest_version_then_the_smallest_agent_id() {
        let mesh = providers();
        let cases = [
            // Equal scores: the higher version wins.
            (
                json!({"capability": "llm", "tags": ["-ai.mcpmesh.stream"]}),
                Some("gpt/gpt_chat"),
            ),
            (
                json!({"capability": "llm", "tags": ["claude", "-ai.mcpmesh.stream"]}),
                Some("claude/chat"),
            ),
            (
                json!({"capability": "llm", "tags": ["-openai", "-ai.mcpmesh.stream"]}),
                Some("claude/chat"),
            ),
            (json!({"capability": "llm", "tags": ["mistral"]}), None),
            (
                json!({"capability": "llm", "tags": ["+mistral", "-ai.mcpmesh.stream"]}),
                Some("gpt/gpt_chat"),
            ),
            (
                json!({"capability": "llm", "tags": ["-ai.mcpmesh.stream"], "version": "<2.0.0"}),
                Some("claude/chat"),
            ),
            (json!({"capability": "llm", "version": ">=3.0.0"}), None),
            (json!({"capability": "nope"}), None),
            (json!({"capability": ""}), None),
            (json!({"tags": ["claude"]}), None),
        ];
        for (request, expected) in cases {
            assert_eq!(
                provider(&mesh, request.clone()).as_deref(),
                expected,
                "{request}"
            );
        }
        let twins = MeshBuilder::new()
            .agent("llm-b", 1)
            .tool("chat", "llm", "1.0.0", &["x"])
            .agent("llm-a", 2)
            .tool("chat", "llm", "1.0.0", &["x"])
            .build();
        let request = json!({"capability": "llm", "tags": ["x"]});
        assert_eq!(provider(&twins, request).as_deref(), Some("llm-a/chat"));
    }

    #[test]
    fn a_provider_request_without_tags_takes_the_first_candidate_in_join_order() {
        let mesh = providers();
        for request in [
            json!({"capability": "llm"}),
            json!({"capability": "llm", "tags": []}),
        ] {
            assert_eq!(provider(&mesh, request).as_deref(), Some("claude/chat"));
        }
    }

    #[test]
    fn only_healthy_agents_tools_with_an_input_schema_are_candidates_in_any_namespace() {
        let mut mesh = providers();
        mesh.agents[0].status = AgentStatus::Unhealthy;
        mesh.agents[1].namespace = "prod".into();
        let request = json!({"capability": "llm", "tags": ["claude"]});
        // claude is unhealthy and bare has no schema; gpt (another namespace) lacks the tag.
        assert_eq!(provider(&mesh, request), None);
        let request =
            json!({"capability": "llm", "tags": ["-ai.mcpmesh.stream"], "namespace": "default"});
        assert_eq!(provider(&mesh, request).as_deref(), Some("gpt/gpt_chat"));
    }

    #[test]
    fn the_provider_entry_carries_vendor_kwargs_tags_and_version() {
        let mesh = providers();
        let llm = LlmMesh::from_snapshot(&mesh);
        let chosen = llm.provider(&spec(json!({"capability": "llm", "tags": ["claude"]})));
        assert_eq!(
            serde_json::to_value(chosen.unwrap().provider_info()).unwrap(),
            json!({"agent_id": "claude", "name": "chat", "endpoint": "http://10.0.0.1:9001",
                   "capability": "llm", "status": "available", "vendor": "anthropic",
                   "tags": ["claude", "anthropic"], "version": "1.0.0",
                   "kwargs": {"vendor": "anthropic", "timeout": 60}})
        );
        let bare = MeshBuilder::new()
            .agent("p", 1)
            .tool("chat", "llm", "1.0.0", &[])
            .kwargs(json!({}))
            .build();
        let llm = LlmMesh::from_snapshot(&bare);
        let chosen = llm.provider(&spec(json!({"capability": "llm"})));
        assert_eq!(
            serde_json::to_value(chosen.unwrap().provider_info()).unwrap(),
            json!({"agent_id": "p", "name": "chat", "endpoint": "http://10.0.0.1:1",
                   "capability": "llm", "status": "available", "vendor": "unknown",
                   "version": "1.0.0"})
        );
    }

    /// Tool agents for the filter rules; `me` is the caller.
    fn tools() -> MeshSnapshot {
        MeshBuilder::new()
            .agent("math-a", 1)
            .tool("add", "math", "1.0.0", &["calc", "fast"])
            .tool("sub", "math", "1.2.0", &["calc"])
            .tool("mul", "math", "2.0.0", &["calc", "slow"])
            .tool("secret!", "math", "9.0.0", &["calc"])
            .agent("math-b", 2)
            .tool("add", "math", "1.5.0", &["calc"])
            .tool("div", "math", "1.5.0", &["calc", "beta", "fast"])
            .agent("text", 3)
            .tool("upper", "text", "1.0.0", &["string"])
            .agent("me", 4)
            .tool("ask", "ask", "1.0.0", &[])
            .build()
    }

    fn names(list: &[&str]) -> Option<Vec<String>> {
        Some(list.iter().map(|s| s.to_string()).collect())
    }

    #[test]
    fn string_entries_match_a_capability_or_everything_and_duplicates_keep_the_first() {
        let mesh = tools();
        assert_eq!(
            offered(&mesh, json!({"filter": ["math"]}), "me"),
            names(&["math-a/add", "math-a/sub", "math-a/mul", "math-b/div"])
        );
        assert_eq!(
            offered(&mesh, json!({"filter": ["text", "math", "text"]}), "me"),
            names(&[
                "text/upper",
                "math-a/add",
                "math-a/sub",
                "math-a/mul",
                "math-b/div"
            ])
        );
        // `"*"` as an entry is every candidate, the caller's own tools included.
        assert_eq!(
            offered(&mesh, json!({"filter": ["*"]}), "me"),
            names(&[
                "math-a/add",
                "math-a/sub",
                "math-a/mul",
                "math-b/div",
                "text/upper",
                "me/ask"
            ])
        );
        assert_eq!(
            offered(&mesh, json!({"filter": ["nothing"]}), "me"),
            names(&[])
        );
        assert_eq!(offered(&mesh, json!({"filter": []}), "me"), names(&[]));
    }

    #[test]
    fn object_entries_filter_by_capability_then_tags_by_score_then_version() {
        let mesh = tools();
        let cases = [
            (
                json!({"capability": "math", "tags": ["fast"]}),
                vec!["math-a/add", "math-b/div"],
            ),
            (
                json!({"capability": "math", "tags": ["-fast", "-slow"]}),
                vec!["math-a/sub", "math-b/add"],
            ),
            // Higher scores first, equal scores in join order.
            (
                json!({"capability": "math", "tags": ["+slow", "+fast"]}),
                vec!["math-a/add", "math-a/mul", "math-b/div", "math-a/sub"],
            ),
            // De-duplication comes after matching: math-a's `add` is too old, so math-b's stays.
            (
                json!({"capability": "math", "version": ">=1.5.0"}),
                vec!["math-a/mul", "math-b/add", "math-b/div"],
            ),
            (
                json!({"capability": "math", "tags": ["+fast"], "version": "~1.5"}),
                vec!["math-b/div", "math-b/add"],
            ),
            // No capability: every candidate; tags that are not a list, or hold no string, do not filter.
            (json!({"tags": ["fast"]}), vec!["math-a/add", "math-b/div"]),
            (
                json!({"capability": "text", "tags": "fast"}),
                vec!["text/upper"],
            ),
            (
                json!({"capability": "text", "tags": [1, ["fast"]]}),
                vec!["text/upper"],
            ),
            (json!({"capability": ""}), vec![]),
        ];
        for (entry, expected) in cases {
            let filter = json!({"filter": [entry.clone()]});
            let expected: Vec<String> = expected.iter().map(|s| s.to_string()).collect();
            assert_eq!(offered(&mesh, filter, "me"), Some(expected), "{entry}");
        }
    }

    #[test]
    fn an_entry_of_another_type_answers_nothing_for_the_function() {
        let mesh = tools();
        for entry in [json!(1), json!(null), json!(["math"]), json!(true)] {
            assert_eq!(
                offered(&mesh, json!({"filter": ["math", entry]}), "me"),
                None
            );
        }
        for filter in [
            json!({}),
            json!({"filter": "math"}),
            json!({"filter_mode": "*"}),
        ] {
            assert!(ToolFilter::parse(&raw(filter)).is_none());
        }
    }

    #[test]
    fn mode_star_offers_every_other_agents_tool_whatever_the_entries() {
        let mesh = tools();
        assert_eq!(
            offered(
                &mesh,
                json!({"filter": ["ignored", 1], "filter_mode": "*"}),
                "me"
            ),
            names(&[
                "math-a/add",
                "math-a/sub",
                "math-a/mul",
                "math-b/div",
                "text/upper"
            ])
        );
        // An unknown mode (or one that is not a string) is `all`.
        for mode in [json!("fastest"), json!(3)] {
            assert_eq!(
                offered(
                    &mesh,
                    json!({"filter": ["text"], "filter_mode": mode}),
                    "me"
                ),
                names(&["text/upper"])
            );
        }
    }

    #[test]
    fn best_match_keeps_one_tool_per_capability_highest_version_then_most_tags() {
        let mesh = tools();
        assert_eq!(
            offered(
                &mesh,
                json!({"filter": ["math", "text"], "filter_mode": "best_match"}),
                "me"
            ),
            names(&["math-a/mul", "text/upper"])
        );
        let ties = MeshBuilder::new()
            .agent("a", 1)
            .tool("one", "cap", "1.0.0", &["x"])
            .tool("two", "cap", "1.0.0", &["x", "y"])
            .tool("three", "cap", "1.0.0", &["y", "x"])
            .tool("bad", "other", "not-a-version", &[])
            .tool("worse", "other", "1.0.0", &["x"])
            .build();
        // Equal versions: more tags win, the first of equals stays; an unreadable version
        // leaves it to the tags.
        assert_eq!(
            offered(
                &ties,
                json!({"filter": ["cap", "other"], "filter_mode": "best_match"}),
                "me"
            ),
            names(&["a/two", "a/worse"])
        );
    }

    #[test]
    fn the_tool_entry_has_the_reference_fields_and_endpoints() {
        let mut mesh = tools();
        mesh.agents[0].http_host = Some("0.0.0.0".into());
        mesh.agents[1].http_host = Some("http://math-b.local".into());
        mesh.agents[2].http_port = None;
        let llm = LlmMesh::from_snapshot(&mesh);
        let filter = ToolFilter::parse(&raw(json!({"filter": ["math", "text"]}))).unwrap();
        let entries: Vec<Value> = llm
            .tools(&filter, "me")
            .unwrap()
            .iter()
            .map(|c| serde_json::to_value(c.tool_info()).unwrap())
            .collect();
        assert_eq!(
            entries[0],
            json!({"name": "add", "capability": "math", "description": "add does it",
                   "endpoint": "http://localhost:1", "inputSchema": {"type": "object", "title": "add"},
                   "tags": ["calc", "fast"], "version": "1.0.0"})
        );
        assert_eq!(entries[3]["endpoint"], "http://math-b.local:2");
        assert_eq!(entries[4]["endpoint"], "stdio://text");
    }

    #[test]
    fn the_answer_has_a_key_per_readable_filter_and_per_resolved_provider() {
        let mesh = providers();
        let llm = LlmMesh::from_snapshot(&mesh);
        let filter = raw(json!({"filter": ["nothing"]}));
        let unreadable = raw(json!({"filter": [1]}));
        let plain = spec(json!({"capability": "llm", "tags": ["-ai.mcpmesh.stream"]}));
        let missing = spec(json!({"capability": "nope"}));
        let requests = [
            LlmRequest {
                function_name: "empty",
                filter: Some(&filter),
                provider: Some(&plain),
            },
            LlmRequest {
                function_name: "unreadable",
                filter: Some(&unreadable),
                provider: Some(&missing),
            },
            LlmRequest {
                function_name: "none",
                filter: None,
                provider: None,
            },
        ];
        let answer = llm.answer("me", &requests);
        assert_eq!(answer.tools.keys().collect::<Vec<_>>(), ["empty"]);
        assert!(answer.tools["empty"].is_empty());
        assert_eq!(answer.providers.keys().collect::<Vec<_>>(), ["empty"]);
        assert_eq!(answer.providers["empty"].name, "gpt_chat");
    }

    /// (Long because it is one mesh and the listing rows it must give, written out whole.)
    #[test]
    fn listing_rows_follow_the_entries_available_first() {
        let mesh = tools();
        let llm = LlmMesh::from_snapshot(&mesh);
        let filter = raw(json!({"filter": [
            "missing",
            {"capability": "math", "tags": ["fast"]},
            {"tags": ["string"]},
            {"version": "1.0.0"},
            1,
        ]}));
        let provider = spec(json!({"capability": "llm", "tags": ["x"]}));
        let no_capability = spec(json!({"tags": ["x"]}));
        let requests = [
            LlmRequest {
                function_name: "ask",
                filter: Some(&filter),
                provider: Some(&provider),
            },
            LlmRequest {
                function_name: "other",
                filter: None,
                provider: Some(&no_capability),
            },
        ];
        // The entry `1` makes the filter unreadable: no tools, so every row is unresolved.
        let (tool_rows, provider_rows) = llm.resolutions("me", &requests);
        let shown: Vec<(String, String, DependencyStatus)> = tool_rows
            .iter()
            .map(|r| {
                (
                    r.filter_capability.clone(),
                    r.filter_tags.join(","),
                    r.status,
                )
            })
            .collect();
        assert_eq!(
            shown,
            [
                (
                    "missing".into(),
                    String::new(),
                    DependencyStatus::Unresolved
                ),
                ("math".into(), "fast".into(), DependencyStatus::Unresolved),
                (String::new(), "string".into(), DependencyStatus::Unresolved),
            ]
        );
        assert_eq!(provider_rows.len(), 1);
        assert_eq!(provider_rows[0].status, DependencyStatus::Unresolved);
        assert_eq!(provider_rows[0].required_tags, ["x"]);

        let filter = raw(json!({"filter": [
            "missing",
            {"capability": "math", "tags": ["fast"]},
            {"tags": ["string"]},
        ], "filter_mode": "all"}));
        let requests = [LlmRequest {
            function_name: "ask",
            filter: Some(&filter),
            provider: None,
        }];
        let (tool_rows, _) = llm.resolutions("me", &requests);
        let shown: Vec<(String, Option<String>, DependencyStatus)> = tool_rows
            .iter()
            .map(|r| (r.filter_capability.clone(), r.mcp_tool.clone(), r.status))
            .collect();
        assert_eq!(
            shown,
            [
                (
                    "math".into(),
                    Some("add".into()),
                    DependencyStatus::Available
                ),
                (
                    "math".into(),
                    Some("div".into()),
                    DependencyStatus::Available
                ),
                // A tags-only entry shows every offered tool.
                (
                    String::new(),
                    Some("add".into()),
                    DependencyStatus::Available
                ),
                (
                    String::new(),
                    Some("div".into()),
                    DependencyStatus::Available
                ),
                (
                    String::new(),
                    Some("upper".into()),
                    DependencyStatus::Available
                ),
                ("missing".into(), None, DependencyStatus::Unresolved),
            ]
        );
        assert_eq!(tool_rows[0].provider_agent_id.as_deref(), Some("math-a"));
        assert_eq!(tool_rows[1].endpoint.as_deref(), Some("http://10.0.0.1:2"));
    }

    #[test]
    fn the_listing_shows_a_filter_only_when_it_reads_as_the_reference_type() {
        let view = |v: Value| filter_view(&raw(v)).map(|f| serde_json::to_value(f).unwrap());
        assert_eq!(
            view(json!({"filter": ["math", {"capability": "x"}], "filter_mode": "all"})),
            Some(json!({"filter": ["math", {"capability": "x"}], "filter_mode": "all"}))
        );
        assert_eq!(
            view(json!({"filter_mode": "*"})),
            Some(json!({"filter": null, "filter_mode": "*"}))
        );
        assert_eq!(view(json!({})), None);
        assert_eq!(view(json!({"filter": "math"})), None);
        assert_eq!(view(json!({"filter": [], "filter_mode": 1})), None);
    }
}
