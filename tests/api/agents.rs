//! Agents: registration, dependency resolution, HEAD heartbeats, pending-jobs hint, deregistration,
//! listing, the health monitor, cancel forwarding and the required-dependency claim gate
//! (issue 3; contract §8; agents-spec A–F).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use serde_json::{json, Value};

use crate::helpers::{
    assert_error, on_both_backends, spawn_app, spawn_app_with, stays_for, within, Backend, Set,
    TestApp,
};

fn tool(function: &str, capability: &str, extra: Value) -> Value {
    let mut tool = json!({"function_name": function, "capability": capability});
    tool.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    tool
}

fn agent(id: &str, tools: Vec<Value>) -> Value {
    json!({"agent_id": id, "name": id, "http_host": "127.0.0.1", "http_port": 9000, "tools": tools})
}

async fn register(app: &TestApp, body: Value) -> Value {
    let response = app.post("/heartbeat", &body).await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["status"], "success", "{body}");
    body
}

/// `HEAD /heartbeat/{id}`: status and the pending-jobs header.
async fn head(app: &TestApp, agent_id: &str) -> (u16, Option<String>) {
    let response = app
        .http
        .head(app.url(&format!("/heartbeat/{agent_id}")))
        .send()
        .await
        .unwrap();
    let pending = response
        .headers()
        .get("x-mesh-pending-jobs")
        .map(|v| v.to_str().unwrap().to_owned());
    (response.status().as_u16(), pending)
}

async fn agents(app: &TestApp, query: &str) -> Vec<Value> {
    let response = app.get(&format!("/agents{query}")).await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["count"], body["agents"].as_array().unwrap().len());
    body["agents"].as_array().unwrap().clone()
}

async fn delete(app: &TestApp, agent_id: &str) -> u16 {
    app.http
        .delete(app.url(&format!("/agents/{agent_id}")))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

on_both_backends!(register_then_update);
async fn register_then_update(backend: Backend) {
    let app = spawn_app(backend).await;
    let body = agent(
        "weather-1",
        vec![tool(
            "get_weather",
            "weather",
            json!({"kwargs": {"task": true}}),
        )],
    );
    let first = register(&app, body.clone()).await;
    assert_eq!(first["message"], "Agent registered via heartbeat");
    assert_eq!(first["agent_id"], "weather-1");
    assert_eq!(first["dependencies_resolved"], json!({}));
    assert_eq!(first["llm_tools"], json!({}));
    // Left out when no provider resolved, as the reference does.
    assert!(first.get("llm_providers").is_none(), "{first}");
    assert!(first["timestamp"].is_string());
    let second = register(&app, body).await;
    assert_eq!(second["message"], "Agent updated via heartbeat");
}

on_both_backends!(invalid_registrations_are_400_naming_the_field);
async fn invalid_registrations_are_400_naming_the_field(backend: Backend) {
    let app = spawn_app(backend).await;
    assert_error(
        app.post_raw("/heartbeat", "").await,
        400,
        "Invalid JSON payload: EOF",
    )
    .await;
    assert_error(
        app.post("/heartbeat", &json!({"name": "x"})).await,
        400,
        "agent_id is required",
    )
    .await;
    let cases = [
        (json!({"agent_id": "Agent_X"}), "validation failed: agent_id: agent_id must contain only lowercase alphanumeric characters and hyphens"),
        (json!({"agent_id": "a", "name": ""}), "validation failed: name: name cannot be empty"),
        (json!({"agent_id": "a", "namespace": "Prod"}), "validation failed: namespace: namespace must contain only lowercase alphanumeric characters and hyphens"),
        (json!({"agent_id": "a", "http_port": 70000}), "validation failed: http_port: http_port must be between 0 and 65535"),
    ];
    for (body, message) in cases {
        assert_error(app.post("/heartbeat", &body).await, 400, message).await;
    }
    for (body, field) in [
        (json!({"agent_id": "a", "http_port": "80"}), "http_port"),
        (
            json!({"agent_id": "a", "tools": [{"function_name": "f", "tags": "x"}]}),
            "tools[0].tags",
        ),
        (
            json!({"agent_id": "a", "tools": [{"function_name": "f", "dependencies": [{"capability": "c", "required": "yes"}]}]}),
            "tools[0].dependencies[0].required",
        ),
        (
            json!({"agent_id": "a", "agent_type": "weird"}),
            "agent_type",
        ),
        (json!({"agent_id": "a", "runtime": "rust"}), "runtime"),
    ] {
        let response = app.post("/heartbeat", &body).await;
        assert_eq!(response.status(), 400, "{body}");
        let error: Value = response.json().await.unwrap();
        assert!(
            error["error"].as_str().unwrap().contains(field),
            "{field}: {error}"
        );
    }
}

on_both_backends!(dependencies_resolve_in_declared_order_with_placeholders);
async fn dependencies_resolve_in_declared_order_with_placeholders(backend: Backend) {
    let app = spawn_app(backend).await;
    register(
        &app,
        agent(
            "calc-a",
            vec![tool(
                "add_a",
                "calc",
                json!({"version": "1.0.0", "tags": ["math", "python"]}),
            )],
        ),
    )
    .await;
    register(&app, agent("calc-b", vec![tool("add_b", "calc", json!({"version": "2.1.0", "tags": ["math", "typescript", "beta"], "kwargs": {"task": true, "timeout": 30}}))])).await;
    register(
        &app,
        agent(
            "calc-c",
            vec![tool(
                "add_c",
                "calc",
                json!({"version": "2.1.0", "tags": ["math", "python", "fast"]}),
            )],
        ),
    )
    .await;
    let response = register(
        &app,
        agent(
            "consumer",
            vec![tool(
                "plan",
                "planner",
                json!({"dependencies": [
                    {"capability": "calc"},
                    {"capability": "nonexistent"},
                    {"capability": "calc", "tags": ["python"]},
                    {"capability": "calc", "tags": ["-beta", "-fast"]},
                    {"capability": "calc", "version": "^1.0.0"},
                    {"capability": "calc", "tags": [["+fast", "python"]]},
                ]}),
            )],
        ),
    )
    .await;
    let plan = response["dependencies_resolved"]["plan"]
        .as_array()
        .unwrap();
    let winners: Vec<&str> = plan
        .iter()
        .map(|d| d["agent_id"].as_str().unwrap())
        .collect();
    assert_eq!(
        winners,
        vec!["calc-b", "", "calc-c", "calc-a", "calc-a", "calc-c"]
    );
    assert_eq!(
        plan[0],
        json!({"agent_id": "calc-b", "capability": "calc", "endpoint": "http://127.0.0.1:9000",
               "function_name": "add_b", "status": "available", "kwargs": {"task": true, "timeout": 30}})
    );
    assert_eq!(
        plan[1],
        json!({"agent_id": "", "capability": "nonexistent", "endpoint": "", "function_name": "",
               "status": "unresolved"})
    );
}

on_both_backends!(only_healthy_providers_in_the_consumers_namespace_serve);
async fn only_healthy_providers_in_the_consumers_namespace_serve(backend: Backend) {
    let app = spawn_app(backend).await;
    let mut elsewhere = agent("weather-prod", vec![tool("w", "weather", json!({}))]);
    elsewhere["namespace"] = json!("prod");
    register(&app, elsewhere).await;
    let consumer = agent(
        "consumer",
        vec![tool(
            "use",
            "c",
            json!({"dependencies": [{"capability": "weather"}]}),
        )],
    );
    let response = register(&app, consumer.clone()).await;
    assert_eq!(
        response["dependencies_resolved"]["use"][0]["status"],
        "unresolved"
    );

    register(
        &app,
        agent("weather-1", vec![tool("w", "weather", json!({}))]),
    )
    .await;
    let response = register(&app, consumer.clone()).await;
    assert_eq!(
        response["dependencies_resolved"]["use"][0]["agent_id"],
        "weather-1"
    );

    assert_eq!(delete(&app, "weather-1").await, 204);
    let response = register(&app, consumer).await;
    assert_eq!(
        response["dependencies_resolved"]["use"][0]["status"],
        "unresolved"
    );
}

on_both_backends!(head_heartbeats_follow_the_topology);
async fn head_heartbeats_follow_the_topology(backend: Backend) {
    let app = spawn_app(backend).await;
    assert_eq!(head(&app, "nobody").await.0, 410);
    register(
        &app,
        agent("provider", vec![tool("w", "weather", json!({}))]),
    )
    .await;
    assert_eq!(head(&app, "provider").await.0, 200);

    // A consumer joins: the provider is told (202) until it sends a full heartbeat.
    register(
        &app,
        agent(
            "consumer",
            vec![tool(
                "use",
                "c",
                json!({"dependencies": [{"capability": "weather"}]}),
            )],
        ),
    )
    .await;
    assert_eq!(head(&app, "consumer").await.0, 200);
    assert_eq!(head(&app, "provider").await.0, 202);
    assert_eq!(head(&app, "provider").await.0, 202);
    register(
        &app,
        agent("provider", vec![tool("w", "weather", json!({}))]),
    )
    .await;
    assert_eq!(head(&app, "provider").await.0, 200);

    // A re-registration that changes nothing is not a topology change...
    register(
        &app,
        agent("provider", vec![tool("w", "weather", json!({}))]),
    )
    .await;
    assert_eq!(head(&app, "consumer").await.0, 200);
    // ...but one that changes what the agent offers is (the reference misses this one).
    register(
        &app,
        agent(
            "provider",
            vec![
                tool("w", "weather", json!({})),
                tool("f", "forecast", json!({})),
            ],
        ),
    )
    .await;
    assert_eq!(head(&app, "consumer").await.0, 202);
    register(
        &app,
        agent(
            "consumer",
            vec![tool(
                "use",
                "c",
                json!({"dependencies": [{"capability": "weather"}]}),
            )],
        ),
    )
    .await;

    // The provider leaves: it must register again, and the consumer hears of it.
    assert_eq!(delete(&app, "provider").await, 204);
    assert_eq!(head(&app, "provider").await.0, 410);
    assert_eq!(head(&app, "consumer").await.0, 202);
    register(
        &app,
        agent("provider", vec![tool("w", "weather", json!({}))]),
    )
    .await;
    assert_eq!(head(&app, "provider").await.0, 200);
}

on_both_backends!(an_unhealthy_agents_head_does_not_revive_it);
async fn an_unhealthy_agents_head_does_not_revive_it(backend: Backend) {
    // Given an agent that deregistered
    let app = spawn_app(backend).await;
    register(&app, agent("a", vec![])).await;
    delete(&app, "a").await;
    let before = agents(&app, "").await[0]["last_seen"].clone();
    // When it sends a HEAD heartbeat
    assert_eq!(head(&app, "a").await.0, 410);
    // Then no heartbeat flush (every second) revives it or stamps it
    stays_for(
        Duration::from_millis(1_200),
        "the unhealthy agent stays as it was across a heartbeat flush",
        || async {
            let listed = agents(&app, "").await;
            listed[0]["status"] == "unhealthy" && listed[0]["last_seen"] == before
        },
    )
    .await;
    let listed = agents(&app, "").await;
    assert_eq!(listed[0]["status"], "unhealthy");
    assert_eq!(listed[0]["last_seen"], before);
}

on_both_backends!(heads_are_stamped_in_batches);
async fn heads_are_stamped_in_batches(backend: Backend) {
    // Heartbeats are answered from memory and written within the flush interval (1 s).
    let app = spawn_app(backend).await;
    register(&app, agent("a", vec![])).await;
    app.set_agent("a", "updated_at", Set::SecondsFromNow(-3600))
        .await;
    let stale = agents(&app, "").await[0]["last_seen"].clone();
    for _ in 0..5 {
        assert_eq!(head(&app, "a").await.0, 200);
    }
    within(
        Duration::from_secs(5),
        "the heartbeat to be written",
        || async { agents(&app, "").await[0]["last_seen"] != stale },
    )
    .await;
}

on_both_backends!(pending_jobs_header_counts_claimable_work_of_the_replica_group);
async fn pending_jobs_header_counts_claimable_work_of_the_replica_group(backend: Backend) {
    // contract §9 case 63 and decisions row 18
    let app = spawn_app(backend).await;
    let mut replica_1 = agent(
        "render-1",
        vec![tool(
            "render",
            "render_report",
            json!({"kwargs": {"task": true}}),
        )],
    );
    replica_1["name"] = json!("render");
    let mut replica_2 = agent("render-2", vec![tool("render", "render_report", json!({}))]);
    replica_2["name"] = json!("render");
    register(&app, replica_2).await;
    register(&app, replica_1).await;
    assert_eq!(head(&app, "render-1").await, (200, None));

    app.submit("other_capability").await;
    assert_eq!(head(&app, "render-1").await.1, None);
    app.submit("render_report").await;
    assert_eq!(head(&app, "render-1").await.1.as_deref(), Some("1"));
    assert_eq!(
        head(&app, "render-2").await.1.as_deref(),
        Some("1"),
        "siblings see it"
    );
    for _ in 0..2 {
        app.submit("render_report").await;
    }
    assert_eq!(head(&app, "render-1").await.1.as_deref(), Some("3"));
    app.claim("render_report", "render-2").await.unwrap();
    assert_eq!(
        head(&app, "render-1").await.1.as_deref(),
        Some("2"),
        "owned jobs excluded"
    );
    // Over-budget rows are not claimable, so they are not counted (the reference may undercount).
    let exhausted = app
        .submit_with("render_report", json!({"max_retries": 0}))
        .await;
    app.set_job(&exhausted, "attempt_count", Set::Int(1)).await;
    assert_eq!(head(&app, "render-1").await.1.as_deref(), Some("2"));
    for _ in 0..110 {
        app.submit("render_report").await;
    }
    assert_eq!(head(&app, "render-1").await.1.as_deref(), Some("100"));
    // Still present on a 202.
    register(&app, agent("newcomer", vec![])).await;
    assert_eq!(head(&app, "render-1").await, (202, Some("100".into())));
}

on_both_backends!(deregistration_is_idempotent_and_marks_the_agent_unhealthy);
async fn deregistration_is_idempotent_and_marks_the_agent_unhealthy(backend: Backend) {
    // What happens to the agent's jobs is in ownership.rs: they stay until their leases lapse.
    let app = spawn_app(backend).await;
    assert_eq!(delete(&app, "never-seen").await, 204);
    register(&app, agent("worker", vec![tool("run", "c", json!({}))])).await;
    assert_eq!(delete(&app, "worker").await, 204);
    assert_eq!(delete(&app, "worker").await, 204);

    let listed = agents(&app, "").await;
    assert_eq!(listed[0]["status"], "unhealthy");
    assert_eq!(listed[0]["capabilities"][0]["available"], false);
    assert_eq!(
        listed[0]["capabilities"][0]["unavailable_reason"],
        "agent unhealthy"
    );
}

on_both_backends!(listing_shows_what_meshctl_reads);
async fn listing_shows_what_meshctl_reads(backend: Backend) {
    let app = spawn_app(backend).await;
    register(&app, agent("provider", vec![tool("gen", "report", json!({"version": "2.0.0", "tags": ["reports"], "description": "makes reports", "kwargs": {"task": true}}))])).await;
    register(
        &app,
        json!({"agent_id": "consumer", "name": "consumer", "version": "1.2.0", "runtime": "typescript",
               "tools": [tool("plan", "planner", json!({"dependencies": [{"capability": "report"}, {"capability": "missing"}]}))]}),
    )
    .await;
    let listed = agents(&app, "").await;
    assert_eq!(listed.len(), 2);
    let consumer = &listed[0];
    assert_eq!(consumer["id"], "consumer");
    assert_eq!(consumer["status"], "healthy");
    assert_eq!(consumer["endpoint"], "stdio://consumer");
    assert_eq!(consumer["runtime"], "typescript");
    assert_eq!(consumer["version"], "1.2.0");
    assert_eq!(consumer["total_dependencies"], 2);
    assert_eq!(consumer["dependencies_resolved"], 1);
    assert_eq!(
        consumer["dependency_resolutions"][0]["provider_agent_id"],
        "provider"
    );
    assert_eq!(
        consumer["dependency_resolutions"][1]["status"],
        "unresolved"
    );
    for field in ["created_at", "last_seen"] {
        assert!(consumer[field].as_str().unwrap().ends_with('Z'), "{field}");
    }
    let capability = &listed[1]["capabilities"][0];
    assert_eq!(
        capability,
        &json!({"name": "report", "function_name": "gen", "version": "2.0.0", "description": "makes reports",
                "tags": ["reports"], "task": true, "available": true, "unavailable_reason": null})
    );
    assert_eq!(listed[1]["endpoint"], "http://127.0.0.1:9000");
    assert_eq!(listed[0]["capabilities"][0]["task"], false);

    // Filters.
    assert_eq!(agents(&app, "?capabilities=report").await.len(), 1);
    assert_eq!(agents(&app, "?capabilities=REP&fuzzy=true").await.len(), 1);
    assert_eq!(
        agents(&app, "?capabilities=report&capabilities=planner")
            .await
            .len(),
        2
    );
    assert_eq!(agents(&app, "?status=unhealthy").await.len(), 0);
    assert_eq!(agents(&app, "?namespace=default").await.len(), 2);
    assert_eq!(agents(&app, "?type=api").await.len(), 0);
    assert_error(
        app.get("/agents?fuzzy=abc").await,
        400,
        r#"Invalid query parameters: strconv.ParseBool: parsing "abc": invalid syntax"#,
    )
    .await;

    // One agent.
    let one: Value = app.get("/agents/provider").await.json().await.unwrap();
    assert_eq!(one["id"], "provider");
    assert_error(
        app.get("/agents/nobody").await,
        404,
        "agent not found: nobody",
    )
    .await;
}

on_both_backends!(silent_agents_turn_unhealthy);
async fn silent_agents_turn_unhealthy(backend: Backend) {
    // What happens to their jobs is in ownership.rs: they stay until their leases lapse.
    let app = spawn_app_with(backend, |config| {
        config.health_check_interval = Duration::from_secs(1);
        config.agent_timeout = Duration::from_secs(2);
    })
    .await;
    register(&app, agent("silent", vec![tool("run", "c", json!({}))])).await;
    register(&app, agent("chatty", vec![tool("run", "c", json!({}))])).await;
    within(
        Duration::from_secs(5),
        "the silent agent to turn unhealthy while the other heartbeats",
        || async {
            // 200, or 202 once the silent one is gone (a topology change): never 410.
            assert_ne!(
                head(&app, "chatty").await.0,
                410,
                "a heartbeating agent stays healthy"
            );
            status(&app, "silent").await == "unhealthy"
        },
    )
    .await;
    assert_eq!(status(&app, "silent").await, "unhealthy");
    assert_eq!(status(&app, "chatty").await, "healthy");
    assert_eq!(head(&app, "silent").await.0, 410);
}

async fn status(app: &TestApp, agent_id: &str) -> String {
    agents(app, "")
        .await
        .into_iter()
        .find(|a| a["id"] == agent_id)
        .map(|a| a["status"].as_str().unwrap().to_owned())
        .unwrap()
}

/// One forward as the owner saw it: path, `X-Trace-ID`, body.
type Forward = (String, Option<String>, String);

/// A stand-in agent endpoint that records cancel forwards (or never answers them).
struct FakeAgent {
    port: u16,
    received: Arc<Mutex<Vec<Forward>>>,
    _server: actix_web::dev::ServerHandle,
}

async fn fake_agent(hang: bool) -> FakeAgent {
    let received = Arc::new(Mutex::new(Vec::new()));
    let log = received.clone();
    let server = HttpServer::new(move || {
        let log = log.clone();
        App::new().route(
            "/jobs/{id}/cancel",
            web::post().to(move |req: HttpRequest, body: web::Bytes| {
                let log = log.clone();
                async move {
                    let trace = req
                        .headers()
                        .get("X-Trace-ID")
                        .map(|v| v.to_str().unwrap().to_owned());
                    log.lock().unwrap().push((
                        req.path().to_owned(),
                        trace,
                        String::from_utf8_lossy(&body).into_owned(),
                    ));
                    if hang {
                        // An owner that never answers: the registry must not wait for it.
                        std::future::pending::<()>().await;
                    }
                    HttpResponse::Ok().json(json!({"cancelled": true}))
                }
            }),
        )
    })
    .workers(1)
    .bind(("127.0.0.1", 0))
    .unwrap();
    let port = server.addrs()[0].port();
    let server = server.run();
    let handle = server.handle();
    actix_web::rt::spawn(server);
    FakeAgent {
        port,
        received,
        _server: handle,
    }
}

on_both_backends!(a_cancel_is_forwarded_to_the_owner_without_waiting_for_it);
async fn a_cancel_is_forwarded_to_the_owner_without_waiting_for_it(backend: Backend) {
    // contract §9 cases 17 and 19
    let app = spawn_app(backend).await;
    for hang in [false, true] {
        let owner = fake_agent(hang).await;
        let id = format!("producer-{}", owner.port);
        register(
            &app,
            json!({"agent_id": id, "http_host": "127.0.0.1", "http_port": owner.port,
                              "tools": [tool("run", "c", json!({"kwargs": {"task": true}}))]}),
        )
        .await;
        let job = app.submit("c").await;
        app.claim("c", &id).await.unwrap();
        let started = Instant::now();
        let response = app
            .http
            .post(app.url(&format!("/jobs/{job}/cancel")))
            .header("X-Trace-ID", "trace-123")
            .json(&json!({"reason": "user requested"}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "the forward is not awaited"
        );
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["forwarded_to_instance_id"], id.as_str());
        within(Duration::from_secs(3), "the forward to arrive", || async {
            !owner.received.lock().unwrap().is_empty()
        })
        .await;
        let received = owner.received.lock().unwrap().clone();
        assert_eq!(received.len(), 1);
        assert_eq!(received[0].0, format!("/jobs/{job}/cancel"));
        assert_eq!(received[0].1.as_deref(), Some("trace-123"));
        assert_eq!(
            serde_json::from_str::<Value>(&received[0].2).unwrap(),
            json!({"reason": "user requested"})
        );
    }
}

on_both_backends!(the_claim_gate_holds_work_until_required_dependencies_resolve);
async fn the_claim_gate_holds_work_until_required_dependencies_resolve(backend: Backend) {
    // contract §9 cases 46–48
    let app = spawn_app(backend).await;
    let worker = agent(
        "worker",
        vec![tool(
            "render",
            "render",
            json!({"dependencies": [{"capability": "weather", "required": true}]}),
        )],
    );
    register(&app, worker).await;
    let job = app.submit("render").await;
    assert_eq!(app.claim("render", "worker").await, None);
    let untouched = app.job(&job).await;
    assert_eq!(
        (
            untouched["attempt_count"].as_i64(),
            untouched["claim_epoch"].as_i64()
        ),
        (Some(0), Some(0))
    );
    assert_eq!(untouched["owner_instance_id"], Value::Null);
    // Claimers without that tool are not gated.
    assert_eq!(
        app.claim("render", "anonymous").await.unwrap()["id"],
        job.as_str()
    );
    app.post(&format!("/jobs/{job}/reclaim"), &json!({})).await;

    register(
        &app,
        agent("weather-1", vec![tool("w", "weather", json!({}))]),
    )
    .await;
    let claimed = app.claim("render", "worker").await.unwrap();
    assert_eq!(
        (
            claimed["attempt_count"].as_i64(),
            claimed["claim_epoch"].as_i64()
        ),
        (Some(2), Some(2))
    );

    // The provider goes away: gated again.
    app.submit("render").await;
    delete(&app, "weather-1").await;
    assert_eq!(app.claim("render", "worker").await, None);
    // An optional dependency never gates.
    register(
        &app,
        agent(
            "lenient",
            vec![tool(
                "render",
                "render",
                json!({"dependencies": [{"capability": "weather"}]}),
            )],
        ),
    )
    .await;
    assert!(app.claim("render", "lenient").await.is_some());
}

on_both_backends!(a_registration_closing_a_required_cycle_is_refused);
async fn a_registration_closing_a_required_cycle_is_refused(backend: Backend) {
    let app = spawn_app(backend).await;
    let needs = |id: &str, capability: &str, dependency: &str, required: bool| {
        agent(
            id,
            vec![tool(
                "f",
                capability,
                json!({"dependencies": [{"capability": dependency, "required": required}]}),
            )],
        )
    };
    register(&app, needs("a", "a", "b", true)).await;
    register(&app, needs("b", "b", "c", true)).await;
    // c → a closes a → b → c → a: refused as the reference refuses it, and nothing is stored.
    let refused = app.post("/heartbeat", &needs("c", "c", "a", true)).await;
    assert_eq!(refused.status(), 200);
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["status"], "error");
    assert_eq!(body["message"], "required dependency cycle: a → b → c → a");
    assert_eq!(body["agent_id"], "c");
    assert!(body.get("dependencies_resolved").is_none());
    assert!(agents(&app, "").await.iter().all(|a| a["id"] != "c"));
    // An optional edge is how a loop is broken; a tool requiring itself is a loop too.
    register(&app, needs("c", "c", "a", false)).await;
    let body: Value = app
        .post("/heartbeat", &needs("s", "s", "s", true))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(body["message"], "required dependency cycle: s → s");
    // An agent may re-register its own required edges (they replace its earlier ones).
    register(&app, needs("a", "a", "b", true)).await;
    // Concurrent registrations each closing half of a loop: at most one is accepted.
    let (x_needs_y, y_needs_x) = (needs("x", "x", "y", true), needs("y", "y", "x", true));
    let (x, y) = tokio::join!(
        app.post("/heartbeat", &x_needs_y),
        app.post("/heartbeat", &y_needs_x),
    );
    let mut accepted = 0;
    for response in [x, y] {
        let body: Value = response.json().await.unwrap();
        accepted += usize::from(body["status"] == "success");
    }
    assert_eq!(accepted, 1, "one of the two halves of a loop");
}
