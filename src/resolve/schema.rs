//! The schema stage of resolution: a consumer that declares the output it expects
//! (`matchMode`, `expectedSchemaHash`, `expectedSchemaCanonical`) is never handed a producer
//! whose published output schema cannot satisfy it. Both sides are canonical JSON Schemas
//! (the SDKs normalize them before they publish), so they are compared as they are.
//!
//! * no `matchMode`: the stage keeps everyone;
//! * a producer that published no output schema: kept under `subset` (producers without schema
//!   extraction keep working), dropped under `strict`;
//! * the same hash as expected: kept;
//! * `strict` and another hash: dropped;
//! * `subset` (or any other mode): kept when every field the consumer requires is present in
//!   the producer's schema with a compatible type, recursively; kept too when the producer's
//!   canonical form is not in the store (a storage gap never costs a usable producer).

use std::collections::HashMap;

use serde_json::{json, Map, Value};

use crate::wire::DependencySpec;

/// Whether a producer with this output schema hash may serve the dependency.
pub fn fits(
    spec: &DependencySpec,
    output_hash: Option<&str>,
    schemas: &HashMap<String, Value>,
) -> bool {
    if spec.match_mode.is_empty() {
        return true;
    }
    let strict = spec.match_mode == "strict";
    let Some(hash) = output_hash.filter(|h| !h.is_empty()) else {
        return !strict;
    };
    if !spec.expected_schema_hash.is_empty() && spec.expected_schema_hash == hash {
        return true;
    }
    if strict {
        return false;
    }
    match (&spec.expected_schema_canonical, schemas.get(hash)) {
        (Some(expected), Some(Value::Object(produced))) => {
            let mut mismatches = 0;
            subset_mismatches("", expected, produced, &mut |_| mismatches += 1);
            mismatches == 0
        }
        _ => true,
    }
}

/// Why a producer that does not `fit` was dropped, as the reference's audit details it: the
/// mode, both hashes, and under `subset` every mismatch (under `strict`, a producer that
/// published no schema is `no_published_hash`; another hash is reason enough).
pub fn misfit(
    spec: &DependencySpec,
    output_hash: Option<&str>,
    schemas: &HashMap<String, Value>,
) -> Value {
    let producer_hash = output_hash.unwrap_or_default();
    let mut details = json!({"consumer_hash": spec.expected_schema_hash,
                             "producer_hash": producer_hash});
    if spec.match_mode == "strict" {
        details["mode"] = json!("strict");
        if producer_hash.is_empty() {
            details["reasons"] = json!([{"kind": "no_published_hash"}]);
        }
        return details;
    }
    let mut reasons = Vec::new();
    if let (Some(expected), Some(Value::Object(produced))) =
        (&spec.expected_schema_canonical, schemas.get(producer_hash))
    {
        subset_mismatches("", expected, produced, &mut |mismatch| {
            reasons.push(mismatch.details())
        });
    }
    details["mode"] = json!("subset");
    details["reasons"] = Value::Array(reasons);
    details
}

/// One way a producer's schema fails what the consumer requires; `path` is dotted from the
/// root (`readings.[].temp`, `[]` for array items).
pub enum Mismatch<'a> {
    /// The producer's `type` does not fit the consumer's.
    Type {
        path: &'a str,
        consumer: Option<&'a Value>,
        producer: Option<&'a Value>,
    },
    /// A field the consumer requires is not in the producer's `properties`.
    MissingField { path: &'a str, field: &'a str },
    /// The consumer describes array items, the producer does not.
    MissingItems { path: &'a str },
}

impl Mismatch<'_> {
    /// As the reference's audit lists it.
    fn details(&self) -> Value {
        match self {
            Mismatch::Type {
                path,
                consumer,
                producer,
            } => json!({"path": path, "kind": "type_mismatch", "consumer_type": consumer,
                        "producer_type": producer}),
            Mismatch::MissingField { path, field } => {
                json!({"path": path, "kind": "missing_field", "field": field})
            }
            Mismatch::MissingItems { path } => {
                json!({"path": path, "kind": "missing_items_schema"})
            }
        }
    }
}

/// Reports each way `producer` fails to satisfy what `consumer` requires at `path` (none:
/// compatible): a type that does not fit, a required field it lacks, an array without an items
/// schema. Every level is walked (all mismatches, not the first), as the reference walks.
pub fn subset_mismatches(
    path: &str,
    consumer: &Map<String, Value>,
    producer: &Map<String, Value>,
    report: &mut dyn FnMut(Mismatch),
) {
    if !types_fit(consumer.get("type"), producer.get("type")) {
        report(Mismatch::Type {
            path,
            consumer: consumer.get("type"),
            producer: producer.get("type"),
        });
    }
    let no_properties = Map::new();
    let consumer_props = object(consumer, "properties").unwrap_or(&no_properties);
    let producer_props = object(producer, "properties").unwrap_or(&no_properties);
    let required = consumer.get("required").and_then(Value::as_array);
    for field in required.into_iter().flatten().filter_map(Value::as_str) {
        let Some(produced) = producer_props.get(field) else {
            report(Mismatch::MissingField {
                path: &join(path, field),
                field,
            });
            continue;
        };
        if let (Some(Value::Object(expected)), Value::Object(produced)) =
            (consumer_props.get(field), produced)
        {
            subset_mismatches(&join(path, field), expected, produced, report);
        }
    }
    if let Some(expected_items) = object(consumer, "items") {
        let items = join(path, "[]");
        match object(producer, "items") {
            Some(produced_items) => {
                subset_mismatches(&items, expected_items, produced_items, report)
            }
            None => report(Mismatch::MissingItems { path: &items }),
        }
    }
}

fn object<'a>(schema: &'a Map<String, Value>, key: &str) -> Option<&'a Map<String, Value>> {
    schema.get(key).and_then(Value::as_object)
}

/// `parent.child`, or `child` at the root.
fn join(parent: &str, child: &str) -> String {
    match parent {
        "" => child.to_owned(),
        parent => format!("{parent}.{child}"),
    }
}

/// Every type the consumer accepts has a producer type that fits it (`integer` fits `number`);
/// a side without a type accepts anything.
fn types_fit(consumer: Option<&Value>, producer: Option<&Value>) -> bool {
    let (wanted, offered) = (type_list(consumer), type_list(producer));
    if wanted.is_empty() || offered.is_empty() {
        return true;
    }
    wanted.iter().all(|w| {
        offered
            .iter()
            .any(|o| w == o || (*w == "number" && *o == "integer"))
    })
}

/// A `type` declaration as a list: a string, or the strings of an array.
fn type_list(declaration: Option<&Value>) -> Vec<&str> {
    match declaration {
        Some(Value::String(t)) if !t.is_empty() => vec![t],
        Some(Value::Array(ts)) => ts
            .iter()
            .filter_map(Value::as_str)
            .filter(|t| !t.is_empty())
            .collect(),
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn object(value: Value) -> Map<String, Value> {
        value.as_object().unwrap().clone()
    }

    fn mismatches(consumer: &Map<String, Value>, producer: &Map<String, Value>) -> usize {
        let mut count = 0;
        subset_mismatches("", consumer, producer, &mut |_| count += 1);
        count
    }

    #[test]
    fn subset_follows_the_reference() {
        let consumer = object(json!({"type": "object", "required": ["city", "temp"],
            "properties": {"city": {"type": "string"}, "temp": {"type": "number"}}}));
        let fits = object(
            json!({"type": "object", "properties": {"city": {"type": "string"},
            "temp": {"type": "integer"}, "extra": {"type": "boolean"}}}),
        );
        assert_eq!(
            mismatches(&consumer, &fits),
            0,
            "extra fields and integer ⊆ number"
        );
        let missing = object(json!({"type": "object", "properties": {"city": {"type": "string"}}}));
        assert_eq!(mismatches(&consumer, &missing), 1);
        let wrong = object(
            json!({"type": "object", "properties": {"city": {"type": "integer"},
            "temp": {"type": "string"}}}),
        );
        assert_eq!(
            mismatches(&consumer, &wrong),
            2,
            "every mismatch is counted"
        );
        let not_object = object(json!({"type": "array"}));
        assert_eq!(mismatches(&consumer, &not_object), 3);
        // Arrays: the items schema, recursively; a nullable union needs each member.
        let list = object(json!({"type": "array", "items": {"type": ["string", "null"]}}));
        assert_eq!(
            mismatches(
                &list,
                &object(json!({"type": "array", "items": {"type": ["null", "string"]}}))
            ),
            0
        );
        assert_eq!(
            mismatches(
                &list,
                &object(json!({"type": "array", "items": {"type": "string"}}))
            ),
            1
        );
        assert_eq!(mismatches(&list, &object(json!({"type": "array"}))), 1);
        // Untyped sides accept anything.
        assert_eq!(mismatches(&object(json!({})), &not_object), 0);
    }

    #[test]
    fn the_stage_by_mode() {
        let spec = |mode: &str| -> DependencySpec {
            serde_json::from_value(json!({"capability": "weather", "matchMode": mode,
                "expectedSchemaHash": "sha256:a",
                "expectedSchemaCanonical": {"type": "object", "required": ["temp"],
                    "properties": {"temp": {"type": "number"}}}}))
            .unwrap()
        };
        let schemas: HashMap<String, Value> = [
            (
                "sha256:b".to_owned(),
                json!({"type": "object", "properties": {"temp": {"type": "integer"}}}),
            ),
            (
                "sha256:c".to_owned(),
                json!({"type": "object", "properties": {"city": {"type": "string"}}}),
            ),
        ]
        .into();
        let cases = [
            ("", None, true),
            ("", Some("sha256:c"), true),
            ("subset", None, true),
            ("strict", None, false),
            ("subset", Some("sha256:a"), true),
            ("strict", Some("sha256:a"), true),
            ("subset", Some("sha256:b"), true),
            ("strict", Some("sha256:b"), false),
            ("subset", Some("sha256:c"), false),
            ("subset", Some("sha256:unknown"), true),
            ("loose", Some("sha256:c"), false),
        ];
        for (mode, hash, expected) in cases {
            assert_eq!(
                fits(&spec(mode), hash, &schemas),
                expected,
                "{mode} {hash:?}"
            );
        }
    }
}
