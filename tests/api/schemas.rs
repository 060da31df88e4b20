//! The schema store (`GET /schemas`, `GET /schemas/{hash}`) filled from registrations, and the
//! schema stage of resolution (`matchMode` subset/strict, `expectedSchemaHash`):
//! docs/contract.md#schemas.

use serde_json::{json, Value};

use crate::helpers::{assert_error, on_both_backends, spawn_app, Backend, TestApp};

const WITH_TEMP: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";
const WITHOUT_TEMP: &str =
    "sha256:2222222222222222222222222222222222222222222222222222222222222222";
const INPUT: &str = "sha256:3333333333333333333333333333333333333333333333333333333333333333";

fn with_temp() -> Value {
    json!({"type": "object", "properties": {"city": {"type": "string"}, "temp": {"type": "integer"}}})
}

fn without_temp() -> Value {
    json!({"type": "object", "properties": {"city": {"type": "string"}}})
}

/// A weather producer publishing `output` (hash, canonical) or no output schema.
fn producer(id: &str, runtime: &str, output: Option<(&str, Value)>) -> Value {
    let mut tool = json!({"function_name": "get_weather", "capability": "weather",
        "inputSchemaHash": INPUT, "inputSchemaCanonical": {"type": "object"}});
    if let Some((hash, canonical)) = output {
        tool["outputSchemaHash"] = json!(hash);
        tool["outputSchemaCanonical"] = canonical;
    }
    json!({"agent_id": id, "runtime": runtime, "http_host": "127.0.0.1", "http_port": 9000,
           "tools": [tool]})
}

async fn register(app: &TestApp, body: &Value) -> Value {
    let response = app.post("/heartbeat", body).await;
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

/// Where a consumer with this dependency resolves (`None`: unresolved).
async fn resolved(app: &TestApp, dependency: Value) -> Option<String> {
    let answer = register(
        app,
        &json!({"agent_id": "consumer", "tools": [{"function_name": "report", "capability": "report",
            "dependencies": [dependency]}]}),
    )
    .await;
    let resolution = &answer["dependencies_resolved"]["report"][0];
    match resolution["status"].as_str() {
        Some("available") => Some(resolution["agent_id"].as_str().unwrap().to_owned()),
        _ => None,
    }
}

on_both_backends!(published_schemas_are_stored_once_by_hash);
async fn published_schemas_are_stored_once_by_hash(backend: Backend) {
    let app = spawn_app(backend).await;
    let listed = app.get("/schemas").await;
    assert_eq!(listed.status(), 200);
    assert_eq!(
        listed.json::<Value>().await.unwrap(),
        json!({"count": 0, "schemas": []})
    );
    register(
        &app,
        &producer("weather-py", "python", Some((WITH_TEMP, with_temp()))),
    )
    .await;
    // The same input schema from another runtime is the same entry (its origin stays python).
    register(
        &app,
        &producer(
            "weather-ts",
            "typescript",
            Some((WITHOUT_TEMP, without_temp())),
        ),
    )
    .await;
    // A hash without its canonical form is not stored.
    let mut bare = producer("weather-bare", "java", None);
    bare["tools"][0]["outputSchemaHash"] = json!("sha256:dead");
    register(&app, &bare).await;

    let body: Value = app.get("/schemas").await.json().await.unwrap();
    assert_eq!(body["count"], 3);
    let mut hashes: Vec<&str> = body["schemas"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["hash"].as_str().unwrap())
        .collect();
    hashes.sort();
    assert_eq!(hashes, [WITH_TEMP, WITHOUT_TEMP, INPUT]);

    let entry: Value = app
        .get(&format!("/schemas/{INPUT}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(entry["canonical"], json!({"type": "object"}));
    assert_eq!(entry["runtime_origin"], "python");
    assert!(entry["created_at"].as_str().unwrap().ends_with('Z'));
    let entry: Value = app
        .get(&format!("/schemas/{WITHOUT_TEMP}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        (&entry["canonical"], entry["runtime_origin"].as_str()),
        (&without_temp(), Some("typescript"))
    );

    assert_error(
        app.get("/schemas/sha256:dead").await,
        404,
        "schema not found: sha256:dead",
    )
    .await;
    // A hash that could not have been stored names nothing (not a database error).
    assert_eq!(app.get("/schemas/sha256%00dead").await.status(), 404);
    // The limit is clamped, as the reference clamps it; a limit that is not a number is refused.
    for (query, count) in [
        ("?limit=1", 1),
        ("?limit=0", 1),
        ("?limit=-5", 1),
        ("?limit=5000", 3),
    ] {
        let body: Value = app
            .get(&format!("/schemas{query}"))
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(body["count"], count, "{query}");
    }
    let refused = app.get("/schemas?limit=many").await;
    assert_eq!(refused.status(), 400);
    let body: Value = refused.json().await.unwrap();
    assert!(
        body["msg"]
            .as_str()
            .unwrap()
            .starts_with("Invalid format for parameter limit"),
        "{body}"
    );
}

on_both_backends!(a_consumer_asking_for_a_schema_never_gets_an_incompatible_producer);
async fn a_consumer_asking_for_a_schema_never_gets_an_incompatible_producer(backend: Backend) {
    let app = spawn_app(backend).await;
    // Without schema matching the smallest id wins among equals: the incompatible producer.
    register(
        &app,
        &producer(
            "a-without-temp",
            "python",
            Some((WITHOUT_TEMP, without_temp())),
        ),
    )
    .await;
    register(
        &app,
        &producer("b-with-temp", "python", Some((WITH_TEMP, with_temp()))),
    )
    .await;
    register(&app, &producer("c-unpublished", "python", None)).await;
    let expects_temp = json!({"type": "object", "required": ["temp"],
        "properties": {"temp": {"type": "number"}}});
    let expected_hash = "sha256:4444444444444444444444444444444444444444444444444444444444444444";
    let dependency = |mode: Option<&str>, hash: &str| {
        let mut dependency = json!({"capability": "weather", "expectedSchemaHash": hash,
            "expectedSchemaCanonical": expects_temp.clone()});
        if let Some(mode) = mode {
            dependency["matchMode"] = json!(mode);
        }
        dependency
    };
    assert_eq!(
        resolved(&app, dependency(None, expected_hash))
            .await
            .as_deref(),
        Some("a-without-temp")
    );
    // subset: integer temp satisfies number; the unpublished producer would be kept too.
    assert_eq!(
        resolved(&app, dependency(Some("subset"), expected_hash))
            .await
            .as_deref(),
        Some("b-with-temp")
    );
    // strict: only the very hash.
    assert_eq!(
        resolved(&app, dependency(Some("strict"), WITH_TEMP))
            .await
            .as_deref(),
        Some("b-with-temp")
    );
    assert_eq!(
        resolved(&app, dependency(Some("strict"), expected_hash)).await,
        None
    );
    // With only the incompatible and the unpublished producer left, subset keeps the latter.
    app.http
        .delete(app.url("/agents/b-with-temp"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        resolved(&app, dependency(Some("subset"), expected_hash))
            .await
            .as_deref(),
        Some("c-unpublished")
    );
    // The listing resolves the consumer's dependency the same way.
    let agents: Value = app.get("/agents").await.json().await.unwrap();
    let consumer = agents["agents"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["id"] == "consumer")
        .unwrap();
    let listed = consumer["dependency_resolutions"].to_string();
    assert!(
        listed.contains("c-unpublished") && !listed.contains("a-without-temp"),
        "{listed}"
    );
}
