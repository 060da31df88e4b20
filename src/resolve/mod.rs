//! Dependency resolution: which provider serves a consumer's dependency right now.
//!
//! A candidate provides the capability in the target namespace (the dependency's own, else the
//! consumer's). Stages drop candidates, in the reference's order: health (the agent is healthy
//! and every `required` dependency of the tool resolves, transitively), tags (which also score),
//! the version constraint, and, for a consumer that opts into schema matching, the producer's
//! output schema (`schema`). Of those left, the best tag score wins, then the highest version,
//! then the smallest agent id. Deterministic, and no state is kept between calls; `trace` keeps
//! what each stage did, for the audit trail. `llm` resolves `@mesh.llm` providers and tool
//! filters, which follow rules of their own.

pub mod llm;
pub mod schema;
pub mod trace;
pub mod version;

use std::cell::RefCell;
use std::cmp::Ordering;
use std::collections::HashMap;

use serde::de::IgnoredAny;
use serde_json::value::RawValue;
use serde_json::{json, Value};

use crate::store::{MeshSnapshot, SchemaEntry};
use crate::wire::{
    AgentStatus, DependencySpec, DependencyStatus, RawJson, ResolvedDependency, TagItem,
};

/// One tool of one agent that provides a capability.
#[derive(Debug, Clone)]
pub struct Provider {
    pub agent_id: String,
    pub namespace: String,
    /// Its agent's.
    pub status: AgentStatus,
    pub endpoint: String,
    pub function_name: String,
    pub capability: String,
    pub version: String,
    pub tags: Vec<String>,
    pub kwargs: Option<RawJson>,
    pub dependencies: Vec<DependencySpec>,
    /// The hash of the output schema it published, if any.
    pub output_schema_hash: Option<String>,
}

#[derive(Debug, Clone)]
enum Availability {
    Unknown,
    Evaluating,
    Available,
    Unavailable(String),
}

/// Every provider of the mesh at one moment, indexed by capability.
pub struct Mesh {
    providers: Vec<Provider>,
    by_capability: HashMap<String, Vec<usize>>,
    availability: RefCell<Vec<Availability>>,
    /// Canonical output schemas by hash, for dependencies that ask for schema matching.
    output_schemas: HashMap<String, serde_json::Value>,
}

impl Mesh {
    pub fn new(providers: Vec<Provider>) -> Mesh {
        let mut by_capability: HashMap<String, Vec<usize>> = HashMap::new();
        for (i, provider) in providers.iter().enumerate() {
            by_capability
                .entry(provider.capability.clone())
                .or_default()
                .push(i);
        }
        let availability = RefCell::new(vec![Availability::Unknown; providers.len()]);
        Mesh {
            providers,
            by_capability,
            availability,
            output_schemas: HashMap::new(),
        }
    }

    /// The same mesh, with the published output schemas that schema matching compares against.
    pub fn with_output_schemas(mut self, schemas: Vec<SchemaEntry>) -> Mesh {
        self.output_schemas = schemas
            .into_iter()
            .filter_map(|entry| {
                Some((
                    entry.hash,
                    serde_json::from_str(entry.canonical.get()).ok()?,
                ))
            })
            .collect();
        self
    }

    /// Whether any dependency of the mesh, or of `also`, asks for schema matching (only then
    /// are the output schemas worth reading).
    pub fn wants_schemas(snapshot: &MeshSnapshot, also: &[&[DependencySpec]]) -> bool {
        let asks = |deps: &[DependencySpec]| deps.iter().any(|d| !d.match_mode.is_empty());
        snapshot.tools.iter().any(|t| asks(&t.dependencies)) || also.iter().any(|deps| asks(deps))
    }

    /// Every tool that provides a capability, from a snapshot of the stored mesh.
    pub fn from_snapshot(snapshot: &MeshSnapshot) -> Mesh {
        let agents: HashMap<&str, _> = snapshot
            .agents
            .iter()
            .map(|agent| (agent.agent_id.as_str(), agent))
            .collect();
        let providers = snapshot
            .tools
            .iter()
            .filter(|tool| !tool.capability.is_empty() && !tool.function_name.is_empty())
            .filter_map(|tool| {
                let agent = agents.get(tool.agent_id.as_str())?;
                Some(Provider {
                    agent_id: tool.agent_id.clone(),
                    namespace: agent.namespace.clone(),
                    status: agent.status,
                    endpoint: agent.endpoint(),
                    function_name: tool.function_name.clone(),
                    capability: tool.capability.clone(),
                    version: tool.version.clone(),
                    tags: tool.tags.clone(),
                    kwargs: tool.kwargs.clone(),
                    dependencies: tool.dependencies.clone(),
                    output_schema_hash: tool.output_schema_hash.clone(),
                })
            })
            .collect();
        Mesh::new(providers)
    }

    /// The provider that serves `spec` for a consumer in `namespace`; `None` = unresolved.
    pub fn resolve(&self, spec: &DependencySpec, namespace: &str) -> Option<&Provider> {
        self.candidates(spec, namespace)
            .filter_map(|i| Some((i, self.fate(spec, i).ok()?)))
            .min_by(|a, b| self.rank(*a, *b))
            .map(|(i, _)| &self.providers[i])
    }

    /// Resolves `spec` as `resolve` does, keeping what each stage did with each candidate.
    pub fn trace<'m>(&'m self, spec: &'m DependencySpec, namespace: &str) -> trace::Trace<'m> {
        let fates = self
            .candidates(spec, namespace)
            .map(|i| (i, self.fate(spec, i)))
            .collect();
        trace::Trace::new(self, spec, fates)
    }

    /// The providers of the dependency's capability in the namespace it targets (its own, else
    /// the consumer's), by index, in snapshot order.
    fn candidates<'a>(
        &'a self,
        spec: &'a DependencySpec,
        namespace: &'a str,
    ) -> impl Iterator<Item = usize> + 'a {
        let namespace = match spec.namespace.as_str() {
            "" => namespace,
            own => own,
        };
        self.by_capability
            .get(&spec.capability)
            .into_iter()
            .flatten()
            .copied()
            .filter(move |&i| self.providers[i].namespace == namespace)
    }

    /// The stage that drops the candidate at `index`, trying them in order; its tag score when
    /// it passes every one.
    fn fate(&self, spec: &DependencySpec, index: usize) -> Result<u32, Stage> {
        let provider = &self.providers[index];
        if self.unavailable_reason(index).is_some() {
            return Err(Stage::Health);
        }
        let score = tag_score(&spec.tags, &provider.tags).ok_or(Stage::Tags)?;
        if !version::satisfies(&provider.version, &spec.version) {
            return Err(Stage::Version);
        }
        if !schema::fits(
            spec,
            provider.output_schema_hash.as_deref(),
            &self.output_schemas,
        ) {
            return Err(Stage::Schema);
        }
        Ok(score)
    }

    /// Orders two survivors (index, tag score), the better first: the higher score, the higher
    /// version, the smaller agent id, then snapshot order (an agent's tools in registration
    /// order, as the reference's stable sort keeps them).
    fn rank(&self, (a, score_a): (usize, u32), (b, score_b): (usize, u32)) -> Ordering {
        let (pa, pb) = (&self.providers[a], &self.providers[b]);
        score_b
            .cmp(&score_a)
            .then_with(|| version::compare(&pb.version, &pa.version))
            .then_with(|| pa.agent_id.cmp(&pb.agent_id))
            .then_with(|| a.cmp(&b))
    }

    /// Why the provider at `index` cannot serve now, or `None` when it is available.
    fn unavailable_reason(&self, index: usize) -> Option<String> {
        match &self.availability.borrow()[index] {
            Availability::Available => return None,
            Availability::Unavailable(reason) => return Some(reason.clone()),
            // A dependency loop reached this provider again before its verdict: fail closed.
            Availability::Evaluating => {
                return Some(format!(
                    "required dependency evaluation cycle at '{}'",
                    self.providers[index].capability
                ))
            }
            Availability::Unknown => {}
        }
        self.availability.borrow_mut()[index] = Availability::Evaluating;
        let provider = &self.providers[index];
        let reason = if provider.status == AgentStatus::Healthy {
            self.broken_required_dependency(provider)
        } else {
            Some("agent unhealthy".to_owned())
        };
        self.availability.borrow_mut()[index] = match &reason {
            None => Availability::Available,
            Some(reason) => Availability::Unavailable(reason.clone()),
        };
        reason
    }

    /// The first `required` dependency of the tool that no available provider serves.
    pub fn broken_required_dependency(&self, provider: &Provider) -> Option<String> {
        provider
            .dependencies
            .iter()
            .filter(|spec| spec.required)
            .find(|spec| self.resolve(spec, &provider.namespace).is_none())
            .map(|spec| format!("required dep '{}' unresolved", spec.capability))
    }

    /// Availability of each provider, in the order given to `new`.
    pub fn availability(&self) -> Vec<Option<String>> {
        (0..self.providers.len())
            .map(|i| self.unavailable_reason(i))
            .collect()
    }

    pub fn providers(&self) -> &[Provider] {
        &self.providers
    }
}

/// A stage of resolution that drops candidates, in the order they run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Stage {
    /// The agent is unhealthy, or a `required` dependency of the tool does not resolve.
    Health,
    Tags,
    Version,
    Schema,
}

/// A position of a consumer's `dependencies_resolved`: where `spec` resolved, or an
/// `unresolved` placeholder (empty strings, so that positions stay aligned).
pub fn resolved_dependency(spec: &DependencySpec, chosen: Option<&Provider>) -> ResolvedDependency {
    match chosen {
        Some(p) => ResolvedDependency {
            agent_id: p.agent_id.clone(),
            capability: p.capability.clone(),
            endpoint: p.endpoint.clone(),
            function_name: p.function_name.clone(),
            status: DependencyStatus::Available,
            kwargs: p.kwargs.clone().filter(|k| !is_empty_object(k)),
        },
        None => ResolvedDependency {
            agent_id: String::new(),
            capability: spec.capability.clone(),
            endpoint: String::new(),
            function_name: String::new(),
            status: DependencyStatus::Unresolved,
            kwargs: None,
        },
    }
}

/// `{}` (kwargs the reference does not pass on).
fn is_empty_object(raw: &RawValue) -> bool {
    serde_json::from_str::<HashMap<String, IgnoredAny>>(raw.get()).is_ok_and(|map| map.is_empty())
}

/// Tag score of a provider for a dependency's tags, or `None` when it does not qualify:
/// `"t"` required (+5), `"+t"` preferred (+10 when present), `"-t"` excluded; an OR group needs
/// one of its non-excluded members (+5, or +10 for a preferred one); an empty one is skipped.
fn tag_score(wanted: &[TagItem], offered: &[String]) -> Option<u32> {
    let has = |tag: &str| offered.iter().any(|t| t == tag);
    let mut score = 0;
    for item in wanted {
        match item {
            TagItem::Tag(tag) => match term(tag) {
                Term::Skip => {}
                Term::Preferred(t) => score += if has(t) { 10 } else { 0 },
                Term::Excluded(t) if has(t) => return None,
                Term::Excluded(_) => {}
                Term::Required(t) if has(t) => score += 5,
                Term::Required(_) => return None,
            },
            // An empty OR group asks for nothing (the reference skips it).
            TagItem::AnyOf(group) if group.is_empty() => {}
            TagItem::AnyOf(group) => {
                let mut best = None;
                for member in group {
                    match term(member) {
                        Term::Excluded(t) if has(t) => return None,
                        Term::Preferred(t) if has(t) => best = best.max(Some(10)),
                        Term::Required(t) if has(t) => best = best.max(Some(5)),
                        _ => {}
                    }
                }
                score += best?;
            }
        }
    }
    Some(score)
}

enum Term<'a> {
    Skip,
    Required(&'a str),
    Preferred(&'a str),
    Excluded(&'a str),
}

/// Reads one tag of a request; an empty one, or an operator alone (`"+"`, `"-"`), names no tag
/// and is skipped, as the reference skips it.
fn term(tag: &str) -> Term<'_> {
    let (operator, name) = match tag.strip_prefix(['+', '-']) {
        Some(name) => (tag.chars().next(), name),
        None => (None, tag),
    };
    match (operator, name) {
        (_, "") => Term::Skip,
        (Some('+'), name) => Term::Preferred(name),
        (Some(_), name) => Term::Excluded(name),
        (None, name) => Term::Required(name),
    }
}

/// Why a provider's tags fail a dependency's (`tag_score` said so), as the reference's audit
/// names it: an excluded tag it carries (`ExtraTagDisallowed`); else the required tags it lacks,
/// or the first OR group it meets none of (`MissingTag`). Required tags are looked at before
/// the OR groups, whatever their order in the request, as the reference looks.
fn tag_miss(wanted: &[TagItem], offered: &[String]) -> (&'static str, Option<Value>) {
    let has = |tag: &str| offered.iter().any(|t| t == tag);
    let carries_excluded = |tag: &str| {
        tag.strip_prefix('-')
            .filter(|excluded| !excluded.is_empty() && has(excluded))
            .map(|excluded| {
                (
                    "ExtraTagDisallowed",
                    Some(json!({"disallowed": [excluded]})),
                )
            })
    };
    let mut missing = Vec::new();
    for item in wanted {
        let TagItem::Tag(tag) = item else { continue };
        if let Some(miss) = carries_excluded(tag) {
            return miss;
        }
        if !tag.is_empty() && !tag.starts_with(['-', '+']) && !has(tag) {
            missing.push(tag);
        }
    }
    if !missing.is_empty() {
        return ("MissingTag", Some(json!({ "missing": missing })));
    }
    for item in wanted {
        let TagItem::AnyOf(group) = item else {
            continue;
        };
        let mut met = false;
        for member in group {
            if let Some(miss) = carries_excluded(member) {
                return miss;
            }
            met |= match member.strip_prefix('+') {
                Some(preferred) => has(preferred),
                None => !member.is_empty() && !member.starts_with('-') && has(member),
            };
        }
        if !met && !group.is_empty() {
            return ("MissingTag", Some(json!({ "missing_one_of": group })));
        }
    }
    ("MissingTag", None)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn winner(mesh: &Mesh, spec: serde_json::Value) -> Option<String> {
        let spec: DependencySpec = serde_json::from_value(spec).unwrap();
        mesh.resolve(&spec, "default").map(|p| p.agent_id.clone())
    }

    fn provider(agent: &str, capability: &str, version: &str, tags: &[&str]) -> Provider {
        Provider {
            agent_id: agent.into(),
            namespace: "default".into(),
            status: AgentStatus::Healthy,
            endpoint: format!("http://{agent}:9000"),
            function_name: format!("{capability}_fn"),
            capability: capability.into(),
            version: version.into(),
            tags: tags.iter().map(|t| t.to_string()).collect(),
            kwargs: None,
            dependencies: Vec::new(),
            output_schema_hash: None,
        }
    }

    /// The reference's observed table (the rules: docs/contract.md#dependency-resolution).
    fn calc_mesh() -> Mesh {
        let mut c = provider("calc-c-1", "calc", "2.1.0", &["math", "python", "fast"]);
        c.namespace = "default".into();
        Mesh::new(vec![
            provider("calc-a-1", "calc", "1.0.0", &["math", "python"]),
            provider("calc-b-1", "calc", "2.1.0", &["math", "typescript", "beta"]),
            c,
        ])
    }

    #[test]
    fn tags_versions_and_tie_breaks_follow_the_reference() {
        let mesh = calc_mesh();
        let cases = [
            (json!({"capability": "calc"}), Some("calc-b-1")),
            (
                json!({"capability": "calc", "tags": ["python"]}),
                Some("calc-c-1"),
            ),
            (
                json!({"capability": "calc", "tags": ["+python"]}),
                Some("calc-c-1"),
            ),
            (
                json!({"capability": "calc", "tags": ["+typescript"]}),
                Some("calc-b-1"),
            ),
            (
                json!({"capability": "calc", "tags": ["-beta"]}),
                Some("calc-c-1"),
            ),
            (
                json!({"capability": "calc", "tags": ["-beta", "-fast"]}),
                Some("calc-a-1"),
            ),
            (
                json!({"capability": "calc", "tags": ["math", ["typescript", "rust"]]}),
                Some("calc-b-1"),
            ),
            (
                json!({"capability": "calc", "tags": [["+fast", "python"]]}),
                Some("calc-c-1"),
            ),
            (json!({"capability": "calc", "tags": ["rust"]}), None),
            // An empty OR group is skipped, not a disqualification.
            (
                json!({"capability": "calc", "tags": ["python", []]}),
                Some("calc-c-1"),
            ),
            (
                json!({"capability": "calc", "tags": [[]]}),
                Some("calc-b-1"),
            ),
            (
                json!({"capability": "calc", "tags": ["python"], "version": ">=2.0.0"}),
                Some("calc-c-1"),
            ),
            (
                json!({"capability": "calc", "version": "^1.0.0"}),
                Some("calc-a-1"),
            ),
            (
                json!({"capability": "calc", "version": "~2.1"}),
                Some("calc-b-1"),
            ),
            (json!({"capability": "calc", "version": "garbage"}), None),
            (
                json!({"capability": "calc", "tags": [1, "python"]}),
                Some("calc-c-1"),
            ),
            (json!({"capability": "nothing"}), None),
            (json!({"capability": ""}), None),
        ];
        for (spec, expected) in cases {
            assert_eq!(winner(&mesh, spec.clone()).as_deref(), expected, "{spec}");
        }
    }

    #[test]
    fn of_two_equal_tools_of_one_agent_the_first_registered_serves() {
        // As the reference's stable sort keeps them, in registration order.
        let mut first = provider("calc-1", "calc", "1.0.0", &[]);
        first.function_name = "zeta".into();
        let mut second = provider("calc-1", "calc", "1.0.0", &[]);
        second.function_name = "alpha".into();
        let mesh = Mesh::new(vec![first, second]);
        let spec: DependencySpec = serde_json::from_value(json!({"capability": "calc"})).unwrap();
        assert_eq!(
            mesh.resolve(&spec, "default").unwrap().function_name,
            "zeta"
        );
        assert_eq!(
            mesh.trace(&spec, "default").chosen().unwrap().function_name,
            "zeta"
        );
    }

    #[test]
    fn an_operator_alone_names_no_tag() {
        // Even against a provider that carries an empty tag.
        let mesh = Mesh::new(vec![provider("odd-1", "calc", "1.0.0", &["", "math"])]);
        for tags in [json!(["-"]), json!(["+", "math"]), json!([["-", "math"]])] {
            let spec = json!({"capability": "calc", "tags": tags});
            assert_eq!(
                winner(&mesh, spec.clone()).as_deref(),
                Some("odd-1"),
                "{spec}"
            );
        }
        let spec: DependencySpec =
            serde_json::from_value(json!({"capability": "calc", "tags": ["+", "math"]})).unwrap();
        assert_eq!(
            tag_score(&spec.tags, &["".to_owned(), "math".to_owned()]),
            Some(5)
        );
    }

    #[test]
    fn unhealthy_agents_and_other_namespaces_do_not_serve() {
        let mut sick = provider("a-1", "weather", "1.0.0", &[]);
        sick.status = AgentStatus::Unhealthy;
        let mut elsewhere = provider("b-1", "weather", "1.0.0", &[]);
        elsewhere.namespace = "prod".into();
        let mesh = Mesh::new(vec![sick, elsewhere]);
        assert_eq!(winner(&mesh, json!({"capability": "weather"})), None);
        assert_eq!(
            winner(&mesh, json!({"capability": "weather", "namespace": "prod"})).as_deref(),
            Some("b-1")
        );
    }

    #[test]
    fn required_dependencies_gate_availability_transitively() {
        let mut render = provider("render-1", "render", "1.0.0", &[]);
        render.dependencies =
            vec![
                serde_json::from_value(json!({"capability": "storage", "required": true})).unwrap(),
            ];
        let mut optional = provider("render-2", "render", "0.1.0", &[]);
        optional.dependencies =
            vec![serde_json::from_value(json!({"capability": "storage"})).unwrap()];
        let without_storage = Mesh::new(vec![render.clone(), optional.clone()]);
        assert_eq!(
            winner(&without_storage, json!({"capability": "render"})).as_deref(),
            Some("render-2")
        );
        assert_eq!(
            without_storage.availability(),
            vec![Some("required dep 'storage' unresolved".to_owned()), None]
        );
        let with_storage = Mesh::new(vec![
            render,
            optional,
            provider("storage-1", "storage", "1.0.0", &[]),
        ]);
        assert_eq!(
            winner(&with_storage, json!({"capability": "render"})).as_deref(),
            Some("render-1")
        );
    }

    #[test]
    fn a_required_cycle_fails_closed_instead_of_recursing_forever() {
        let mut x = provider("x-1", "cx", "1.0.0", &[]);
        x.dependencies =
            vec![serde_json::from_value(json!({"capability": "cy", "required": true})).unwrap()];
        let mut y = provider("y-1", "cy", "1.0.0", &[]);
        y.dependencies =
            vec![serde_json::from_value(json!({"capability": "cx", "required": true})).unwrap()];
        let mesh = Mesh::new(vec![x, y]);
        assert_eq!(winner(&mesh, json!({"capability": "cx"})), None);
        assert!(mesh.availability().iter().all(Option::is_some));
    }

    #[test]
    fn an_unresolved_position_is_a_placeholder() {
        let mesh = calc_mesh();
        let spec: DependencySpec = serde_json::from_value(json!({"capability": "nope"})).unwrap();
        let placeholder = resolved_dependency(&spec, mesh.resolve(&spec, "default"));
        assert_eq!(placeholder.status, DependencyStatus::Unresolved);
        assert_eq!(placeholder.capability, "nope");
        assert_eq!(placeholder.agent_id, "");
        let spec: DependencySpec = serde_json::from_value(json!({"capability": "calc"})).unwrap();
        let resolved = resolved_dependency(&spec, mesh.resolve(&spec, "default"));
        assert_eq!(resolved.status, DependencyStatus::Available);
        assert_eq!(resolved.agent_id, "calc-b-1");
    }
}
