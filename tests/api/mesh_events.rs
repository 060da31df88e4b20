//! The registry's event log, `GET /events` (docs/contract.md#registry-events): what the agents'
//! lifecycle records, the filters, the page, and its retention.

use std::time::Duration;

use serde_json::{json, Value};

use crate::helpers::{on_both_backends, spawn_app, spawn_app_with, within, Backend, Set, TestApp};

/// The events `GET /events{query}` answers, checking that `count` counts them.
async fn events(app: &TestApp, query: &str) -> Vec<Value> {
    let response = app.get(&format!("/events{query}")).await;
    assert_eq!(response.status(), 200, "{query}");
    let body: Value = response.json().await.unwrap();
    let events = body["events"].as_array().unwrap().clone();
    assert_eq!(body["count"], events.len(), "{query}");
    events
}

fn types(events: &[Value]) -> Vec<&str> {
    events
        .iter()
        .map(|e| e["event_type"].as_str().unwrap())
        .collect()
}

fn weather(agent_id: &str) -> Value {
    json!({"agent_id": agent_id, "name": "weather", "version": "1.2.0",
           "http_host": "127.0.0.1", "http_port": 9000,
           "tools": [{"function_name": "get_weather", "capability": "weather"}]})
}

on_both_backends!(registrations_and_departures_are_recorded_newest_first);
async fn registrations_and_departures_are_recorded_newest_first(backend: Backend) {
    let app = spawn_app(backend).await;
    assert_eq!(
        app.get("/events").await.json::<Value>().await.unwrap(),
        json!({"count": 0, "events": []})
    );
    app.register(&weather("weather-1")).await;
    // A refresh of a healthy agent records nothing; neither does a tool-less API consumer.
    app.register(&weather("weather-1")).await;
    app.register(&json!({"agent_id": "api-1", "agent_type": "api"}))
        .await;
    app.deregister("api-1").await;
    app.deregister("weather-1").await;
    // A repeated DELETE is no new departure.
    app.deregister("weather-1").await;
    // Coming back is a registration (a recovery).
    app.register(&weather("weather-1")).await;

    let all = events(&app, "").await;
    assert_eq!(types(&all), ["register", "unregister", "register"]);
    for event in &all {
        assert_eq!(event["agent_id"], "weather-1");
        assert_eq!(event["agent_name"], "weather");
        assert!(event.get("function_name").is_none(), "{event}");
        assert!(
            event["timestamp"].as_str().unwrap().ends_with('Z'),
            "{event}"
        );
    }
    assert_eq!(
        all[2]["data"],
        json!({"agent_type": "mcp_agent", "name": "weather", "version": "1.2.0"})
    );
    assert_eq!(
        all[1]["data"],
        json!({"agent_type": "mcp_agent", "name": "weather", "version": "1.2.0",
               "reason": "graceful_shutdown", "source": "delete_endpoint"})
    );
    let recovery = &all[0]["data"];
    assert_eq!(recovery["reason"], "recovery");
    assert_eq!(recovery["transition_type"], "unhealthy_to_healthy");
    assert_eq!(recovery["old_status"], "unhealthy");
    assert_eq!(recovery["new_status"], "healthy");
}

on_both_backends!(the_filters_and_the_page_are_the_reference_s);
async fn the_filters_and_the_page_are_the_reference_s(backend: Backend) {
    let app = spawn_app(backend).await;
    for id in ["a", "b", "c"] {
        app.register(&weather(id)).await;
    }
    app.deregister("b").await;

    assert_eq!(
        types(&events(&app, "?type=unregister").await),
        ["unregister"]
    );
    let of_a = events(&app, "?agent_id=a").await;
    assert_eq!(types(&of_a), ["register"]);
    assert_eq!(of_a[0]["agent_id"], "a");
    assert_eq!(
        types(&events(&app, "?agent_id=b&type=register").await),
        ["register"]
    );
    // Empty filters are no filters; an unknown type or function matches nothing.
    assert_eq!(
        events(&app, "?type=&agent_id=&function_name=").await.len(),
        4
    );
    assert!(events(&app, "?type=bogus").await.is_empty());
    assert!(events(&app, "?function_name=get_weather").await.is_empty());
    // The newest first, clamped to 1..=500.
    let newest = events(&app, "?limit=1").await;
    assert_eq!(types(&newest), ["unregister"]);
    assert_eq!(events(&app, "?limit=0").await.len(), 1);
    assert_eq!(events(&app, "?limit=-5").await.len(), 1);
    assert_eq!(events(&app, "?limit=100000").await.len(), 4);
    // The reference's parameter error: gin's `{"msg"}`.
    let refused = app.get("/events?limit=ten").await;
    assert_eq!(refused.status(), 400);
    assert_eq!(
        refused.json::<Value>().await.unwrap(),
        json!({"msg": "Invalid format for parameter limit: error binding string parameter: \
                       strconv.ParseInt: parsing \"ten\": invalid syntax"})
    );
    // Hostile filters are a 400 or nothing, never an error of the database.
    assert_eq!(app.get("/events?agent_id=a%00b").await.status(), 400);
    let long = "x".repeat(8 * 1024);
    assert!(events(&app, &format!("?agent_id={long}")).await.is_empty());
}

on_both_backends!(an_agent_that_goes_silent_is_recorded_unhealthy);
async fn an_agent_that_goes_silent_is_recorded_unhealthy(backend: Backend) {
    let app = spawn_app_with(backend, |config| {
        config.health_check_interval = Duration::from_secs(1);
        config.agent_timeout = Duration::from_secs(2);
    })
    .await;
    app.register(&weather("silent")).await;
    within(Duration::from_secs(8), "the unhealthy event", || async {
        !events(&app, "?type=unhealthy").await.is_empty()
    })
    .await;
    let unhealthy = events(&app, "?type=unhealthy").await;
    assert_eq!(unhealthy.len(), 1);
    assert_eq!(unhealthy[0]["agent_id"], "silent");
    let data = &unhealthy[0]["data"];
    assert_eq!(data["reason"], "health_degradation");
    assert_eq!(data["transition_type"], "healthy_to_unhealthy");
    assert_eq!(data["source"], "status_change_hook");
}

on_both_backends!(the_sweep_purges_events_older_than_the_retention);
async fn the_sweep_purges_events_older_than_the_retention(backend: Backend) {
    let app = spawn_app_with(backend, |config| {
        config.sweep_interval = Duration::from_millis(500);
        config.retention = Some(Duration::from_secs(3600));
    })
    .await;
    app.register(&weather("old")).await;
    app.register(&weather("recent")).await;
    app.set_mesh_events("old", "recorded_at", Set::SecondsFromNow(-7200))
        .await;
    within(Duration::from_secs(8), "the old event purged", || async {
        events(&app, "?agent_id=old").await.is_empty()
    })
    .await;
    assert_eq!(events(&app, "?agent_id=recent").await.len(), 1);
}

on_both_backends!(the_log_never_keeps_more_than_its_cap_whatever_the_age);
async fn the_log_never_keeps_more_than_its_cap_whatever_the_age(backend: Backend) {
    let app = spawn_app_with(backend, |config| {
        config.sweep_interval = Duration::from_millis(500);
    })
    .await;
    app.register(&weather("flood")).await;
    // As if one client had registered and left 100 000 times within the retention.
    let cap = mesh_registry::domain::registry_events::MAX_KEPT;
    // (The sweep may already be purging: the count it answers is not asserted.)
    app.flood_mesh_events("flood", cap).await;
    app.register(&weather("newest")).await;
    within(
        Duration::from_secs(20),
        "the purge down to the cap",
        || async { app.mesh_event_count().await == cap },
    )
    .await;
    // The newest events are the ones kept.
    assert_eq!(events(&app, "?agent_id=newest").await.len(), 1);
    assert_eq!(
        events(&app, "?limit=500").await.len(),
        500,
        "a page is capped"
    );
}
