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

use serde_json::{Map, Value};

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
            subset_mismatches(expected, produced) == 0
        }
        _ => true,
    }
}

/// How many ways `producer` fails to satisfy what `consumer` requires (0 = compatible): a type
/// that does not fit, a required field it lacks, an array without an items schema. Every level
/// is walked (the count is of all mismatches, not the first).
pub fn subset_mismatches(consumer: &Map<String, Value>, producer: &Map<String, Value>) -> usize {
    let mut mismatches = usize::from(!types_fit(consumer.get("type"), producer.get("type")));
    let object = |schema: &Map<String, Value>, key: &str| {
        schema.get(key).and_then(Value::as_object).cloned()
    };
    let consumer_props = object(consumer, "properties").unwrap_or_default();
    let producer_props = object(producer, "properties").unwrap_or_default();
    let required = consumer.get("required").and_then(Value::as_array);
    for field in required.into_iter().flatten().filter_map(Value::as_str) {
        let Some(produced) = producer_props.get(field) else {
            mismatches += 1;
            continue;
        };
        if let (Some(Value::Object(expected)), Value::Object(produced)) =
            (consumer_props.get(field), produced)
        {
            mismatches += subset_mismatches(expected, produced);
        }
    }
    if let Some(expected_items) = object(consumer, "items") {
        mismatches += match object(producer, "items") {
            Some(produced_items) => subset_mismatches(&expected_items, &produced_items),
            None => 1,
        };
    }
    mismatches
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

    #[test]
    fn subset_follows_the_reference() {
        let consumer = object(json!({"type": "object", "required": ["city", "temp"],
            "properties": {"city": {"type": "string"}, "temp": {"type": "number"}}}));
        let fits = object(
            json!({"type": "object", "properties": {"city": {"type": "string"},
            "temp": {"type": "integer"}, "extra": {"type": "boolean"}}}),
        );
        assert_eq!(
            subset_mismatches(&consumer, &fits),
            0,
            "extra fields and integer ⊆ number"
        );
        let missing = object(json!({"type": "object", "properties": {"city": {"type": "string"}}}));
        assert_eq!(subset_mismatches(&consumer, &missing), 1);
        let wrong = object(
            json!({"type": "object", "properties": {"city": {"type": "integer"},
            "temp": {"type": "string"}}}),
        );
        assert_eq!(
            subset_mismatches(&consumer, &wrong),
            2,
            "every mismatch is counted"
        );
        let not_object = object(json!({"type": "array"}));
        assert_eq!(subset_mismatches(&consumer, &not_object), 3);
        // Arrays: the items schema, recursively; a nullable union needs each member.
        let list = object(json!({"type": "array", "items": {"type": ["string", "null"]}}));
        assert_eq!(
            subset_mismatches(
                &list,
                &object(json!({"type": "array", "items": {"type": ["null", "string"]}}))
            ),
            0
        );
        assert_eq!(
            subset_mismatches(
                &list,
                &object(json!({"type": "array", "items": {"type": "string"}}))
            ),
            1
        );
        assert_eq!(
            subset_mismatches(&list, &object(json!({"type": "array"}))),
            1
        );
        // Untyped sides accept anything.
        assert_eq!(subset_mismatches(&object(json!({})), &not_object), 0);
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
