//! The dependency-resolution audit trail in the registry's event log
//! (docs/contract.md#resolution-audit): which full heartbeats record a `dependency_resolved` /
//! `dependency_unresolved` event, what its trace holds, that an unchanged resolution records
//! nothing, and that replicas record each change once.

use std::time::Duration;

use serde_json::{json, Value};

use crate::helpers::{
    on_both_backends, postgres_only, spawn_app, spawn_app_with, within, Backend, Set, TestApp,
};

/// The consumer's audit events, newest first.
async fn audit(app: &TestApp, query: &str) -> Vec<Value> {
    let response = app
        .get(&format!("/events?agent_id=planner&limit=500{query}"))
        .await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    let events = body["events"].as_array().unwrap().clone();
    assert_eq!(body["count"], events.len());
    events
        .into_iter()
        .filter(|e| e["event_type"] != "register")
        .collect()
}

fn agent(agent_id: &str, tools: Value) -> Value {
    json!({"agent_id": agent_id, "name": agent_id, "version": "1.0.0", "http_host": "127.0.0.1",
           "http_port": 9000, "tools": tools})
}

/// An agent with one tool, `serve`, offering `capability`.
fn producer(agent_id: &str, capability: &str, version: &str, tags: &[&str]) -> Value {
    agent(
        agent_id,
        json!([{"function_name": "serve", "capability": capability, "version": version,
                "tags": tags}]),
    )
}

/// The consumer `planner`: one function, `plan`, with these dependencies.
fn planner(dependencies: Value) -> Value {
    agent(
        "planner",
        json!([{"function_name": "plan", "capability": "plan", "dependencies": dependencies}]),
    )
}

fn types(events: &[Value]) -> Vec<&str> {
    events
        .iter()
        .map(|e| e["event_type"].as_str().unwrap())
        .collect()
}

on_both_backends!(a_contested_decision_records_every_candidate_and_the_winner);
async fn a_contested_decision_records_every_candidate_and_the_winner(backend: Backend) {
    let app = spawn_app(backend).await;
    app.register(&producer("weather-a", "weather", "1.0.0", &["api"]))
        .await;
    app.register(&producer("weather-b", "weather", "2.0.0", &["api"]))
        .await;
    app.register(&producer("clock-a", "clock", "1.0.0", &[]))
        .await;
    app.register(&planner(
        json!([{"capability": "weather", "tags": ["api"]}, {"capability": "clock"}]),
    ))
    .await;

    // The contested dependency records; the forced choice (the clock, position 1) does not.
    let events = audit(&app, "").await;
    assert_eq!(types(&events), ["dependency_resolved"]);
    let event = &events[0];
    assert_eq!(event["agent_id"], "planner");
    assert_eq!(event["agent_name"], "planner");
    assert_eq!(event["function_name"], "plan");
    let both = json!(["weather-a:serve", "weather-b:serve"]);
    assert_eq!(
        event["data"],
        json!({
            "consumer": "planner", "dep_index": 0,
            "spec": {"capability": "weather", "tags": ["api"], "schema_mode": "none"},
            "stages": [
                {"stage": "health", "kept": both},
                {"stage": "capability_match", "kept": both},
                {"stage": "tags", "kept": both},
                {"stage": "version", "kept": both},
                {"stage": "schema", "kept": both},
                {"stage": "tiebreaker", "kept": ["weather-b:serve", "weather-a:serve"],
                 "chosen": "weather-b:serve", "reason": "HighestScoreThenVersion"},
            ],
            "chosen": {"agent_id": "weather-b", "endpoint": "http://127.0.0.1:9000",
                       "function_name": "serve"},
        })
    );
    // The log's filters apply to them as to any event.
    let query = |q: &str| {
        let app = &app;
        let q = q.to_owned();
        async move {
            let body: Value = app.get(&format!("/events{q}")).await.json().await.unwrap();
            body["count"].as_u64().unwrap()
        }
    };
    assert_eq!(query("?type=dependency_resolved").await, 1);
    assert_eq!(query("?type=dependency_unresolved").await, 0);
    assert_eq!(query("?function_name=plan").await, 1);
    assert_eq!(
        query("?type=dependency_resolved&agent_id=weather-a").await,
        0
    );
}

on_both_backends!(each_stage_names_whom_it_dropped_why_and_the_details);
async fn each_stage_names_whom_it_dropped_why_and_the_details(backend: Backend) {
    let app = spawn_app(backend).await;
    let output = |hash: &str, canonical: Value| {
        json!({"function_name": "serve", "capability": "weather", "version": "2.0.0",
               "tags": ["api"], "outputSchemaHash": hash, "outputSchemaCanonical": canonical})
    };
    let with_temp = json!({"type": "object", "properties": {"temp": {"type": "number"}}});
    let without = json!({"type": "object", "properties": {"city": {"type": "string"}}});
    app.register(&agent("fits", json!([output("sha256:fits", with_temp)])))
        .await;
    app.register(&agent("misfit", json!([output("sha256:misfit", without)])))
        .await;
    app.register(&producer("internal", "weather", "2.0.0", &["internal"]))
        .await;
    app.register(&producer("old", "weather", "1.0.0", &["api"]))
        .await;
    app.register(&planner(
        json!([{"capability": "weather", "tags": ["api"], "version": ">=2.0",
            "matchMode": "subset", "expectedSchemaHash": "sha256:wanted",
            "expectedSchemaCanonical": {"type": "object", "required": ["temp"],
                                        "properties": {"temp": {"type": "number"}}}}]),
    ))
    .await;

    let events = audit(&app, "").await;
    assert_eq!(types(&events), ["dependency_resolved"]);
    let data = &events[0]["data"];
    assert_eq!(
        data["spec"],
        json!({"capability": "weather", "tags": ["api"], "version_constraint": ">=2.0",
               "schema_mode": "subset"})
    );
    let stages = data["stages"].as_array().unwrap();
    let named: Vec<&str> = stages
        .iter()
        .map(|s| s["stage"].as_str().unwrap())
        .collect();
    assert_eq!(
        named,
        [
            "health",
            "capability_match",
            "tags",
            "version",
            "schema",
            "tiebreaker"
        ]
    );
    assert_eq!(
        stages[2]["evicted"],
        json!([{"id": "internal:serve", "reason": "MissingTag",
                "details": {"missing": ["api"]}}])
    );
    assert_eq!(
        stages[3]["evicted"],
        json!([{"id": "old:serve", "reason": "VersionConstraintFailed",
                "details": {"version": "1.0.0", "constraint": ">=2.0"}}])
    );
    assert_eq!(
        stages[4],
        json!({"stage": "schema", "kept": ["fits:serve"], "evicted": [
            {"id": "misfit:serve", "reason": "SchemaIncompatible", "details": {
                "mode": "subset", "consumer_hash": "sha256:wanted",
                "producer_hash": "sha256:misfit",
                "reasons": [{"path": "temp", "kind": "missing_field", "field": "temp"}]}}]})
    );
    assert_eq!(stages[5]["chosen"], "fits:serve");
    assert_eq!(data["chosen"]["agent_id"], "fits");
}

on_both_backends!(a_single_forced_choice_records_nothing);
async fn a_single_forced_choice_records_nothing(backend: Backend) {
    let app = spawn_app(backend).await;
    app.register(&producer("clock-a", "clock", "1.0.0", &[]))
        .await;
    for _ in 0..3 {
        app.register(&planner(json!([{"capability": "clock"}])))
            .await;
    }
    // Nobody offering it at all is no decision either.
    app.register(&planner(json!([{"capability": "nothing"}])))
        .await;
    assert!(audit(&app, "").await.is_empty());
}

on_both_backends!(an_unchanged_resolution_records_nothing_more);
async fn an_unchanged_resolution_records_nothing_more(backend: Backend) {
    let app = spawn_app(backend).await;
    app.register(&producer("weather-a", "weather", "1.0.0", &[]))
        .await;
    app.register(&producer("weather-b", "weather", "1.0.0", &[]))
        .await;
    let consumer = planner(json!([{"capability": "weather"}]));
    for _ in 0..5 {
        app.register(&consumer).await;
    }
    assert_eq!(types(&audit(&app, "").await), ["dependency_resolved"]);
    // A producer that refreshes without changing anything changes nothing either.
    app.register(&producer("weather-a", "weather", "1.0.0", &[]))
        .await;
    app.register(&consumer).await;
    assert_eq!(audit(&app, "").await.len(), 1);
}

on_both_backends!(losing_the_chosen_producer_records_the_flip_then_the_loss);
async fn losing_the_chosen_producer_records_the_flip_then_the_loss(backend: Backend) {
    let app = spawn_app(backend).await;
    app.register(&producer("weather-a", "weather", "1.0.0", &[]))
        .await;
    app.register(&producer("weather-b", "weather", "2.0.0", &[]))
        .await;
    let consumer = planner(json!([{"capability": "weather"}]));
    app.register(&consumer).await;

    app.deregister("weather-b").await;
    app.register(&consumer).await;
    let events = audit(&app, "").await;
    assert_eq!(
        types(&events),
        ["dependency_resolved", "dependency_resolved"]
    );
    let flip = &events[0]["data"];
    assert_eq!(flip["chosen"]["agent_id"], "weather-a");
    assert_eq!(flip["prior_chosen"], "weather-b");
    assert_eq!(
        flip["stages"][0],
        json!({"stage": "health", "kept": ["weather-a:serve"], "evicted": [
            {"id": "weather-b:serve", "reason": "Unhealthy", "details": {"status": "unhealthy"}}]})
    );
    assert!(events[1]["data"].get("prior_chosen").is_none());

    app.deregister("weather-a").await;
    app.register(&consumer).await;
    let events = audit(&app, "").await;
    assert_eq!(events.len(), 3);
    let lost = &events[0];
    assert_eq!(lost["event_type"], "dependency_unresolved");
    assert_eq!(lost["data"]["prior_chosen"], "weather-a");
    assert!(lost["data"].get("chosen").is_none());
    assert_eq!(lost["data"]["stages"].as_array().unwrap().len(), 1);
}

on_both_backends!(an_unresolved_dependency_records_the_candidate_it_dropped_once);
async fn an_unresolved_dependency_records_the_candidate_it_dropped_once(backend: Backend) {
    let app = spawn_app(backend).await;
    app.register(&producer("rogue", "weather", "1.0.0", &["foo"]))
        .await;
    let consumer = planner(json!([{"capability": "weather", "tags": ["required"]}]));
    for _ in 0..4 {
        app.register(&consumer).await;
    }
    let events = audit(&app, "").await;
    assert_eq!(types(&events), ["dependency_unresolved"]);
    assert_eq!(
        events[0]["data"]["stages"][2],
        json!({"stage": "tags", "kept": [], "evicted": [{"id": "rogue:serve",
               "reason": "MissingTag", "details": {"missing": ["required"]}}]})
    );
    assert!(events[0]["data"].get("chosen").is_none());
}

on_both_backends!(resolving_after_unresolved_records_even_a_forced_choice);
async fn resolving_after_unresolved_records_even_a_forced_choice(backend: Backend) {
    let app = spawn_app(backend).await;
    app.register(&producer("rogue", "weather", "1.0.0", &["foo"]))
        .await;
    let consumer = planner(json!([{"capability": "weather", "tags": ["required"]}]));
    app.register(&consumer).await;
    // The rogue offers something else now; a single good producer appears.
    app.register(&producer("rogue", "rain", "1.0.0", &["foo"]))
        .await;
    app.register(&producer("good", "weather", "1.0.0", &["required"]))
        .await;
    app.register(&consumer).await;
    app.register(&consumer).await;
    let events = audit(&app, "").await;
    assert_eq!(
        types(&events),
        ["dependency_resolved", "dependency_unresolved"]
    );
    assert_eq!(events[0]["data"]["chosen"]["agent_id"], "good");
    assert_eq!(
        events[0]["data"]["stages"][0]["kept"],
        json!(["good:serve"])
    );
}

on_both_backends!(audit_events_are_purged_with_the_log_and_not_recorded_again);
async fn audit_events_are_purged_with_the_log_and_not_recorded_again(backend: Backend) {
    let app = spawn_app_with(backend, |config| {
        config.sweep_interval = Duration::from_millis(500);
        config.retention = Some(Duration::from_secs(3600));
    })
    .await;
    app.register(&producer("weather-a", "weather", "1.0.0", &[]))
        .await;
    app.register(&producer("weather-b", "weather", "1.0.0", &[]))
        .await;
    let consumer = planner(json!([{"capability": "weather"}]));
    app.register(&consumer).await;
    assert_eq!(audit(&app, "").await.len(), 1);
    app.set_mesh_events("planner", "recorded_at", Set::SecondsFromNow(-7200))
        .await;
    within(Duration::from_secs(8), "the audit event purged", || async {
        audit(&app, "").await.is_empty()
    })
    .await;
    // The decision it recorded has not changed: nothing to record again
    // (docs/contract.md#diff-audit-memory).
    app.register(&consumer).await;
    assert!(audit(&app, "").await.is_empty());
}

// Several replicas: PostgreSQL only (the embedded file is served by one process).
postgres_only!(replicas_record_each_change_once);
async fn replicas_record_each_change_once(backend: Backend) {
    let a = spawn_app(backend).await;
    let b = a.replica().await;
    a.register(&producer("weather-a", "weather", "1.0.0", &[]))
        .await;
    a.register(&producer("weather-b", "weather", "2.0.0", &[]))
        .await;
    let consumer = planner(json!([{"capability": "weather"}]));
    a.register(&consumer).await;
    // The same resolution through the other replica is no change.
    b.register(&consumer).await;
    assert_eq!(audit(&a, "").await.len(), 1);

    // A change seen through b, then undone and seen through a: both are recorded.
    b.register(&producer("weather-c", "weather", "3.0.0", &[]))
        .await;
    b.register(&consumer).await;
    b.deregister("weather-c").await;
    a.register(&consumer).await;
    let events = audit(&a, "").await;
    let chosen: Vec<&str> = events
        .iter()
        .map(|e| e["data"]["chosen"]["agent_id"].as_str().unwrap())
        .collect();
    assert_eq!(chosen, ["weather-b", "weather-c", "weather-b"]);

    // Many heartbeats of the consumer at once through both replicas, after a change: the
    // change is recorded once.
    a.register(&producer("weather-d", "weather", "4.0.0", &[]))
        .await;
    let beats = (0..8).map(|n| {
        let replica = if n % 2 == 0 { &a } else { &b };
        replica.register(&consumer)
    });
    futures_util::future::join_all(beats).await;
    let events = audit(&a, "").await;
    assert_eq!(events.len(), 4, "{events:#?}");
    assert_eq!(events[0]["data"]["chosen"]["agent_id"], "weather-d");
}
