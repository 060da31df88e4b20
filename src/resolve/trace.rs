//! The audit trail of one resolution (`dependency_resolved` / `dependency_unresolved` events,
//! `meshctl audit`): what each stage kept and dropped, and why, in the reference's shape.
//!
//! Stages, in order: `health`, `capability_match` (drops nobody: every candidate offers the
//! capability), `tags`, `version`, `schema`, then `tiebreaker`, which names the winner among
//! those left; the trace stops after a stage that kept nobody. A candidate is
//! `<agent_id>:<function_name>`. Each stage lists what it `kept` and, when it dropped any, what
//! it `evicted`, each with a typed `reason` and its `details`.
//!
//! Building a trace costs one list (the candidates and the stage that dropped each, or their
//! score); the JSON and its details are rendered only when an event is recorded, and the
//! fingerprint that dedupes identical traces is hashed straight from the same rendering.

use std::fmt::Write;

use serde::ser::{SerializeMap, SerializeSeq, Serializer};
use serde::Serialize;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use super::{schema, tag_miss, Mesh, Provider, Stage};
use crate::wire::{AgentStatus, DependencySpec, TagItem};

/// The reference's name for the tiebreaker's rule (tag score, then version, then agent id).
const TIEBREAKER: &str = "HighestScoreThenVersion";

/// The stages a trace lists before the tiebreaker, with the stage whose candidates each drops.
const STAGES: [(&str, Option<Stage>); 5] = [
    ("health", Some(Stage::Health)),
    ("capability_match", None),
    ("tags", Some(Stage::Tags)),
    ("version", Some(Stage::Version)),
    ("schema", Some(Stage::Schema)),
];

/// One resolution of a dependency, with what became of each candidate.
pub struct Trace<'m> {
    mesh: &'m Mesh,
    spec: &'m DependencySpec,
    /// Each candidate (an index into the mesh's providers) and the stage that dropped it, or
    /// its tag score; ordered by candidate id, the order the stages list them in.
    fates: Vec<(usize, Result<u32, Stage>)>,
    /// The winner (an index into the mesh's providers).
    chosen: Option<usize>,
}

impl<'m> Trace<'m> {
    pub(super) fn new(
        mesh: &'m Mesh,
        spec: &'m DependencySpec,
        mut fates: Vec<(usize, Result<u32, Stage>)>,
    ) -> Trace<'m> {
        fates.sort_by(|(a, _), (b, _)| {
            let (a, b) = (&mesh.providers[*a], &mesh.providers[*b]);
            id_bytes(a).cmp(id_bytes(b))
        });
        let chosen = survivors(&fates)
            .min_by(|a, b| mesh.rank(*a, *b))
            .map(|(i, _)| i);
        Trace {
            mesh,
            spec,
            fates,
            chosen,
        }
    }

    /// The provider that serves the dependency (what `Mesh::resolve` answers).
    pub fn chosen(&self) -> Option<&'m Provider> {
        self.chosen.map(|i| &self.mesh.providers[i])
    }

    /// At least two candidates entered the stages.
    pub fn contested(&self) -> bool {
        self.fates.len() >= 2
    }

    /// A stage dropped at least one candidate.
    pub fn evicted_any(&self) -> bool {
        self.fates.iter().any(|(_, fate)| fate.is_err())
    }

    /// The event's `data`: the trace of dependency `dep_index` of `consumer`, with the producer
    /// its previous `dependency_resolved` chose.
    pub fn to_json(&self, consumer: &str, dep_index: usize, prior_chosen: Option<&str>) -> Value {
        serde_json::to_value(Rendered {
            trace: self,
            consumer,
            dep_index,
            prior_chosen,
            canonical: false,
        })
        .expect("a trace renders as JSON")
    }

    /// SHA-256 (hex) of the trace's canonical form: what the reference's dedupe compares
    /// (lists sorted, `prior_chosen` left out), so that the same outcome always gives the same
    /// fingerprint whatever the order of the candidates.
    pub fn fingerprint(&self, consumer: &str, dep_index: usize) -> String {
        let mut hasher = Hashing(Sha256::new());
        let canonical = Rendered {
            trace: self,
            consumer,
            dep_index,
            prior_chosen: None,
            canonical: true,
        };
        serde_json::to_writer(&mut hasher, &canonical).expect("a trace renders as JSON");
        let mut hex = String::with_capacity(64);
        for byte in hasher.0.finalize() {
            let _ = write!(hex, "{byte:02x}");
        }
        hex
    }

    /// Why `stage` dropped the candidate at `index`: the reason's name and its details.
    fn eviction(&self, index: usize, stage: Stage) -> (&'static str, Option<Value>) {
        let mesh = self.mesh;
        let provider = &mesh.providers[index];
        match stage {
            Stage::Health if provider.status != AgentStatus::Healthy => (
                "Unhealthy",
                Some(json!({"status": provider.status.as_str()})),
            ),
            Stage::Health => (
                "Unavailable",
                Some(json!({"reason": mesh.unavailable_reason(index).unwrap_or_default()})),
            ),
            Stage::Tags => tag_miss(&self.spec.tags, &provider.tags),
            Stage::Version => (
                "VersionConstraintFailed",
                Some(json!({"version": provider.version, "constraint": self.spec.version})),
            ),
            Stage::Schema => (
                "SchemaIncompatible",
                Some(schema::misfit(
                    self.spec,
                    provider.output_schema_hash.as_deref(),
                    &mesh.output_schemas,
                )),
            ),
        }
    }
}

/// The candidates no stage dropped, with their tag scores.
fn survivors(fates: &[(usize, Result<u32, Stage>)]) -> impl Iterator<Item = (usize, u32)> + '_ {
    fates
        .iter()
        .filter_map(|(i, fate)| fate.ok().map(|score| (*i, score)))
}

/// The bytes of a candidate's id, `<agent_id>:<function_name>`, without building it.
fn id_bytes(provider: &Provider) -> impl Iterator<Item = u8> + '_ {
    provider
        .agent_id
        .bytes()
        .chain(*b":")
        .chain(provider.function_name.bytes())
}

/// A trace as JSON: the reference's field names, order and omitted fields.
struct Rendered<'t, 'm> {
    trace: &'t Trace<'m>,
    consumer: &'t str,
    dep_index: usize,
    prior_chosen: Option<&'t str>,
    /// The form the fingerprint hashes: the spec's tags and the tiebreaker's list sorted.
    canonical: bool,
}

impl Serialize for Rendered<'_, '_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let (trace, spec) = (self.trace, self.trace.spec);
        let mut tags: Vec<&str> = spec
            .tags
            .iter()
            .filter_map(|item| match item {
                TagItem::Tag(tag) => Some(tag.as_str()),
                TagItem::AnyOf(_) => None,
            })
            .collect();
        if self.canonical {
            tags.sort_unstable();
        }
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("consumer", self.consumer)?;
        map.serialize_entry("dep_index", &self.dep_index)?;
        map.serialize_entry(
            "spec",
            &SpecView {
                capability: &spec.capability,
                tags,
                version_constraint: &spec.version,
                schema_mode: match spec.match_mode.as_str() {
                    "" => "none",
                    mode => mode,
                },
            },
        )?;
        map.serialize_entry("stages", &Stages(self))?;
        if let Some(chosen) = trace.chosen() {
            map.serialize_entry(
                "chosen",
                &ChosenView {
                    agent_id: &chosen.agent_id,
                    endpoint: &chosen.endpoint,
                    function_name: &chosen.function_name,
                },
            )?;
        }
        if let Some(prior) = self.prior_chosen {
            map.serialize_entry("prior_chosen", prior)?;
        }
        map.end()
    }
}

/// What the dependency asks: its flat tags (not its OR groups), version constraint and schema
/// matching mode (`none` when it does not ask).
#[derive(Serialize)]
struct SpecView<'a> {
    capability: &'a str,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tags: Vec<&'a str>,
    #[serde(skip_serializing_if = "str::is_empty")]
    version_constraint: &'a str,
    schema_mode: &'a str,
}

#[derive(Serialize)]
struct ChosenView<'a> {
    agent_id: &'a str,
    endpoint: &'a str,
    function_name: &'a str,
}

#[derive(Serialize)]
struct EvictedView<'a> {
    id: Id<'a>,
    reason: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    details: Option<Value>,
}

/// The stages that ran, then the tiebreaker when anyone was left.
struct Stages<'r, 't, 'm>(&'r Rendered<'t, 'm>);

impl Serialize for Stages<'_, '_, '_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let trace = self.0.trace;
        let mut seq = serializer.serialize_seq(None)?;
        for (name, drops) in STAGES {
            // Those that entered and were kept: nobody dropped them here or at an earlier stage.
            let kept = |fate: &Result<u32, Stage>| match (fate, drops) {
                (Ok(_), _) => true,
                (Err(at), Some(stage)) => *at > stage,
                (Err(at), None) => *at > Stage::Health,
            };
            let kept_any = trace.fates.iter().any(|(_, fate)| kept(fate));
            seq.serialize_element(&StageView {
                trace,
                name,
                kept: &kept,
                drops,
            })?;
            if !kept_any {
                return seq.end();
            }
        }
        seq.serialize_element(&Tiebreaker(self.0))?;
        seq.end()
    }
}

/// One stage: `{"stage", "kept", "evicted"}`, `evicted` left out when it dropped nobody.
struct StageView<'a, 'm> {
    trace: &'a Trace<'m>,
    name: &'static str,
    kept: &'a dyn Fn(&Result<u32, Stage>) -> bool,
    drops: Option<Stage>,
}

impl Serialize for StageView<'_, '_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let trace = self.trace;
        let fates = &trace.fates;
        let evicted = |(_, fate): &&(usize, Result<u32, Stage>)| {
            self.drops.is_some() && fate.err() == self.drops
        };
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("stage", self.name)?;
        map.serialize_entry(
            "kept",
            &Ids(trace, || {
                fates
                    .iter()
                    .filter(|(_, fate)| (self.kept)(fate))
                    .map(|(i, _)| *i)
            }),
        )?;
        if fates.iter().any(|f| evicted(&f)) {
            let entries: Vec<EvictedView> = fates
                .iter()
                .filter(evicted)
                .map(|(i, fate)| {
                    let (reason, details) = trace.eviction(*i, fate.expect_err("evicted"));
                    EvictedView {
                        id: Id(&trace.mesh.providers[*i]),
                        reason,
                        details,
                    }
                })
                .collect();
            map.serialize_entry("evicted", &entries)?;
        }
        map.end()
    }
}

/// The tiebreaker: those left, best first (by id in the canonical form), and the winner.
struct Tiebreaker<'r, 't, 'm>(&'r Rendered<'t, 'm>);

impl Serialize for Tiebreaker<'_, '_, '_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let trace = self.0.trace;
        let mut left: Vec<(usize, u32)> = survivors(&trace.fates).collect();
        if !self.0.canonical {
            left.sort_by(|a, b| trace.mesh.rank(*a, *b));
        }
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("stage", "tiebreaker")?;
        map.serialize_entry("kept", &Ids(trace, || left.iter().map(|(i, _)| *i)))?;
        if let Some(chosen) = trace.chosen() {
            map.serialize_entry("chosen", &Id(chosen))?;
        }
        map.serialize_entry("reason", TIEBREAKER)?;
        map.end()
    }
}

/// A list of candidate ids (the iterator is made again for each rendering).
struct Ids<'a, 'm, F>(&'a Trace<'m>, F);

impl<F, I> Serialize for Ids<'_, '_, F>
where
    F: Fn() -> I,
    I: Iterator<Item = usize>,
{
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let providers = &self.0.mesh.providers;
        serializer.collect_seq((self.1)().map(|i| Id(&providers[i])))
    }
}

/// A candidate's id, written without building it.
struct Id<'a>(&'a Provider);

impl Serialize for Id<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(&format_args!(
            "{}:{}",
            self.0.agent_id, self.0.function_name
        ))
    }
}

/// Feeds what is written to a hash.
struct Hashing(Sha256);

impl std::io::Write for Hashing {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.update(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::store::SchemaEntry;

    fn provider(agent: &str, function: &str, version: &str, tags: &[&str]) -> Provider {
        Provider {
            agent_id: agent.into(),
            namespace: "default".into(),
            status: AgentStatus::Healthy,
            endpoint: format!("http://{agent}:8080"),
            function_name: function.into(),
            capability: "employee".into(),
            version: version.into(),
            tags: tags.iter().map(|t| t.to_string()).collect(),
            kwargs: None,
            dependencies: Vec::new(),
            output_schema_hash: None,
        }
    }

    fn spec(value: Value) -> DependencySpec {
        serde_json::from_value(value).unwrap()
    }

    fn rendered(mesh: &Mesh, spec: &DependencySpec) -> Value {
        mesh.trace(spec, "default").to_json("consumer-1", 0, None)
    }

    /// The reference's TestAudit_FourCandidatesMixed, with its expected trace whole.
    #[test]
    fn every_stage_names_what_it_kept_and_why_it_dropped_the_others() {
        let mesh = Mesh::new(vec![
            provider("hr-v1", "do_thing", "1.4.0", &["api"]),
            provider("hr-v2", "do_thing", "2.0.1", &["api"]),
            provider("legacy-emp", "do_thing", "2.5.0", &["api"]),
            provider("test-emp", "do_thing", "2.0.0", &["sample"]),
        ]);
        let wanted = spec(json!({"capability": "employee", "tags": ["api"], "version": ">=2.0"}));
        let all = [
            "hr-v1:do_thing",
            "hr-v2:do_thing",
            "legacy-emp:do_thing",
            "test-emp:do_thing",
        ];
        assert_eq!(
            rendered(&mesh, &wanted),
            json!({
                "consumer": "consumer-1", "dep_index": 0,
                "spec": {"capability": "employee", "tags": ["api"], "version_constraint": ">=2.0",
                         "schema_mode": "none"},
                "stages": [
                    {"stage": "health", "kept": all},
                    {"stage": "capability_match", "kept": all},
                    {"stage": "tags", "kept": ["hr-v1:do_thing", "hr-v2:do_thing", "legacy-emp:do_thing"],
                     "evicted": [{"id": "test-emp:do_thing", "reason": "MissingTag",
                                  "details": {"missing": ["api"]}}]},
                    {"stage": "version", "kept": ["hr-v2:do_thing", "legacy-emp:do_thing"],
                     "evicted": [{"id": "hr-v1:do_thing", "reason": "VersionConstraintFailed",
                                  "details": {"version": "1.4.0", "constraint": ">=2.0"}}]},
                    {"stage": "schema", "kept": ["hr-v2:do_thing", "legacy-emp:do_thing"]},
                    // The highest version wins at equal scores.
                    {"stage": "tiebreaker", "kept": ["legacy-emp:do_thing", "hr-v2:do_thing"],
                     "chosen": "legacy-emp:do_thing", "reason": "HighestScoreThenVersion"},
                ],
                "chosen": {"agent_id": "legacy-emp", "endpoint": "http://legacy-emp:8080",
                           "function_name": "do_thing"},
            })
        );
        let trace = mesh.trace(&wanted, "default");
        assert!(trace.contested() && trace.evicted_any());
        assert_eq!(
            trace.chosen().map(|p| &p.agent_id),
            mesh.resolve(&wanted, "default").map(|p| &p.agent_id)
        );
    }

    #[test]
    fn the_trace_stops_at_the_stage_that_kept_nobody() {
        let mut sick = provider("sick", "do_thing", "1.0.0", &[]);
        sick.status = AgentStatus::Unhealthy;
        let mut gated = provider("gated", "do_thing", "1.0.0", &[]);
        gated.dependencies = vec![spec(json!({"capability": "storage", "required": true}))];
        let mesh = Mesh::new(vec![sick, gated]);
        let trace = rendered(&mesh, &spec(json!({"capability": "employee"})));
        assert_eq!(
            trace["stages"],
            json!([{"stage": "health", "kept": [], "evicted": [
                {"id": "gated:do_thing", "reason": "Unavailable",
                 "details": {"reason": "required dep 'storage' unresolved"}},
                {"id": "sick:do_thing", "reason": "Unhealthy", "details": {"status": "unhealthy"}},
            ]}])
        );
        assert!(trace.get("chosen").is_none(), "{trace}");
        // Nobody offers it: the health stage alone, which kept nobody.
        let nobody = Mesh::new(Vec::new());
        let wanted = spec(json!({"capability": "employee"}));
        let lonely = nobody.trace(&wanted, "default");
        assert!(!lonely.contested() && !lonely.evicted_any());
        assert_eq!(
            lonely.to_json("c", 2, None)["stages"],
            json!([{"stage": "health", "kept": []}])
        );
    }

    /// The reference's classifyTagFailure: required tags first, then the OR groups.
    #[test]
    fn tag_evictions_say_which_tag() {
        let mesh = Mesh::new(vec![
            provider("a", "f", "1.0.0", &["api"]),
            provider("b", "f", "1.0.0", &["api", "beta"]),
            provider("c", "f", "1.0.0", &["internal"]),
            provider("d", "f", "1.0.0", &["api", "x"]),
        ]);
        let wanted =
            spec(json!({"capability": "employee", "tags": ["api", "-beta", ["x", "y"], []]}));
        let trace = rendered(&mesh, &wanted);
        assert_eq!(trace["spec"]["tags"], json!(["api", "-beta"]));
        assert_eq!(
            trace["stages"][2],
            json!({"stage": "tags", "kept": ["d:f"], "evicted": [
                {"id": "a:f", "reason": "MissingTag", "details": {"missing_one_of": ["x", "y"]}},
                {"id": "b:f", "reason": "ExtraTagDisallowed", "details": {"disallowed": ["beta"]}},
                {"id": "c:f", "reason": "MissingTag", "details": {"missing": ["api"]}},
            ]})
        );
    }

    /// Two functions of one agent are told apart (the reference's issue #836).
    #[test]
    fn candidates_are_functions_of_agents() {
        let mesh = Mesh::new(vec![
            provider(
                "system-agent",
                "fetch_system_overview",
                "1.0.0",
                &["system", "general"],
            ),
            provider(
                "system-agent",
                "analyze_storage_and_os",
                "1.0.0",
                &["system", "disk"],
            ),
        ]);
        let trace = rendered(
            &mesh,
            &spec(json!({"capability": "employee", "tags": ["system", "disk"]})),
        );
        assert_eq!(
            trace["stages"][2]["kept"],
            json!(["system-agent:analyze_storage_and_os"])
        );
        assert_eq!(
            trace["stages"][2]["evicted"][0]["id"],
            "system-agent:fetch_system_overview"
        );
        assert_eq!(
            trace["stages"][5]["chosen"],
            "system-agent:analyze_storage_and_os"
        );
        assert_eq!(trace["chosen"]["agent_id"], "system-agent");
    }

    /// The reference's audit_resolver_schema_test cases.
    #[test]
    fn schema_evictions_give_the_mode_the_hashes_and_the_reasons() {
        let consumer_schema = json!({"type": "object", "required": ["name", "dept"],
            "properties": {"name": {"type": "string"}, "dept": {"type": "string"}}});
        let mut exact = provider("prod-a", "do_thing", "1.0.0", &[]);
        exact.output_schema_hash = Some("sha256:consumer-abc".into());
        let mut narrow = provider("prod-b", "do_thing", "1.0.0", &[]);
        narrow.output_schema_hash = Some("sha256:b-narrow".into());
        let legacy = provider("prod-legacy", "do_thing", "1.0.0", &[]);
        let mesh = Mesh::new(vec![exact, narrow, legacy]).with_output_schemas(vec![SchemaEntry {
            hash: "sha256:b-narrow".into(),
            canonical: serde_json::value::to_raw_value(&json!({"type": "object",
                "properties": {"name": {"type": "string"}}}))
            .unwrap(),
            runtime_origin: "python".into(),
            created_at: std::time::SystemTime::now(),
        }]);
        let subset = spec(json!({"capability": "employee", "matchMode": "subset",
            "expectedSchemaHash": "sha256:consumer-abc", "expectedSchemaCanonical": consumer_schema}));
        let trace = rendered(&mesh, &subset);
        assert_eq!(trace["spec"]["schema_mode"], "subset");
        assert_eq!(
            trace["stages"][4],
            json!({"stage": "schema", "kept": ["prod-a:do_thing", "prod-legacy:do_thing"], "evicted": [
                {"id": "prod-b:do_thing", "reason": "SchemaIncompatible", "details": {
                    "mode": "subset", "consumer_hash": "sha256:consumer-abc",
                    "producer_hash": "sha256:b-narrow",
                    "reasons": [{"path": "dept", "kind": "missing_field", "field": "dept"}]}},
            ]})
        );
        let strict = spec(json!({"capability": "employee", "matchMode": "strict",
            "expectedSchemaHash": "sha256:consumer-abc"}));
        let trace = rendered(&mesh, &strict);
        assert_eq!(
            trace["stages"][4]["evicted"],
            json!([
                {"id": "prod-b:do_thing", "reason": "SchemaIncompatible", "details": {
                    "mode": "strict", "consumer_hash": "sha256:consumer-abc",
                    "producer_hash": "sha256:b-narrow"}},
                {"id": "prod-legacy:do_thing", "reason": "SchemaIncompatible", "details": {
                    "mode": "strict", "consumer_hash": "sha256:consumer-abc", "producer_hash": "",
                    "reasons": [{"kind": "no_published_hash"}]}},
            ])
        );
    }

    #[test]
    fn the_fingerprint_ignores_order_and_prior_choices_but_not_outcomes() {
        let wanted = spec(json!({"capability": "employee", "tags": ["api", "+fast"]}));
        let reordered = spec(json!({"capability": "employee", "tags": ["+fast", "api"]}));
        // Agents and versions tagged `api`, and maybe `d` with other tags.
        let fingerprint = |api: &[(&str, &str)], d: &[&str], wanted: &DependencySpec| {
            let mut providers: Vec<Provider> = api
                .iter()
                .map(|(agent, version)| provider(agent, "f", version, &["api"]))
                .collect();
            if !d.is_empty() {
                providers.push(provider("d", "f", "1.0.0", d));
            }
            Mesh::new(providers)
                .trace(wanted, "default")
                .fingerprint("c", 0)
        };
        let three = [("a", "1.0.0"), ("b", "2.0.0"), ("c", "1.5.0")];
        let base = fingerprint(&three, &[], &wanted);
        assert_eq!(base.len(), 64);
        // The order of the candidates, of the spec's tags, or of the losers in the tiebreaker's
        // ranking changes nothing...
        let reversed = [("c", "1.5.0"), ("b", "2.0.0"), ("a", "1.0.0")];
        assert_eq!(fingerprint(&reversed, &[], &wanted), base);
        assert_eq!(fingerprint(&three, &[], &reordered), base);
        let c_older = [("a", "1.0.0"), ("b", "2.0.0"), ("c", "0.5.0")];
        assert_eq!(fingerprint(&c_older, &[], &wanted), base);
        // ... another winner, another candidate, or a candidate kept rather than dropped does.
        let a_newest = [("a", "3.0.0"), ("b", "2.0.0"), ("c", "1.5.0")];
        assert_ne!(fingerprint(&a_newest, &[], &wanted), base);
        let dropped_d = fingerprint(&three, &["internal"], &wanted);
        assert_ne!(dropped_d, base);
        assert_ne!(
            fingerprint(&three, &["api", "internal"], &wanted),
            dropped_d
        );
        let mesh = Mesh::new(vec![provider("a", "f", "1.0.0", &["api"])]);
        let trace = mesh.trace(&wanted, "default");
        assert_eq!(trace.to_json("c", 0, Some("b"))["prior_chosen"], "b");
        assert!(trace.to_json("c", 0, None).get("prior_chosen").is_none());
    }

    /// What tracing costs the common path, counted: this test binary's allocator counts per
    /// thread.
    mod allocations {
        use std::alloc::{GlobalAlloc, Layout, System};
        use std::cell::Cell;

        use serde_json::json;

        use super::{provider, spec};
        use crate::resolve::{resolved_dependency, Mesh};

        thread_local!(static ALLOCATIONS: Cell<usize> = const { Cell::new(0) });

        struct Counting;

        // SAFETY: every call is passed to the system allocator unchanged.
        unsafe impl GlobalAlloc for Counting {
            unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
                let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
                System.alloc(layout)
            }

            unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
                System.dealloc(ptr, layout)
            }
        }

        #[global_allocator]
        static COUNTING: Counting = Counting;

        fn allocations<T>(run: impl FnOnce() -> T) -> usize {
            let before = ALLOCATIONS.with(Cell::get);
            let kept = run();
            let counted = ALLOCATIONS.with(Cell::get) - before;
            drop(kept);
            counted
        }

        #[test]
        fn a_trace_costs_one_allocation_more_than_resolving() {
            let mesh = Mesh::new(vec![
                provider("a", "f", "1.0.0", &["api"]),
                provider("b", "f", "2.0.0", &["api"]),
                provider("c", "f", "1.0.0", &["x"]),
            ]);
            for tags in [json!(["api"]), json!(["x"]), json!(["nobody"])] {
                let wanted = spec(json!({"capability": "employee", "tags": tags}));
                let resolving =
                    allocations(|| resolved_dependency(&wanted, mesh.resolve(&wanted, "default")));
                let tracing = allocations(|| {
                    let trace = mesh.trace(&wanted, "default");
                    resolved_dependency(&wanted, trace.chosen())
                });
                assert_eq!(tracing, resolving + 1, "{tags}: the list of candidates");
            }
        }
    }
}
