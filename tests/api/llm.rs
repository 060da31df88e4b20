//! `@mesh.llm` agents (issue 17): the provider and the tools each LLM function gets in its
//! heartbeat answer, the listing of those resolutions, how topology changes reach consumers,
//! and that every replica answers the same. The rules themselves, one by one, are unit tests in
//! `src/resolve/llm.rs`; `tests/differential` compares whole answers with the reference.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::helpers::{
    on_both_backends, postgres_only, spawn_app, spawn_app_with, Backend, TestApp,
};

const STREAM: &str = "ai.mcpmesh.stream";

fn schema(function: &str) -> Value {
    json!({"type": "object", "properties": {function: {"type": "string"}}})
}

/// A tool as the 3.8.0 SDK registers it (always with an input schema).
fn tool(function: &str, capability: &str, extra: Value) -> Value {
    let mut tool = json!({"function_name": function, "capability": capability,
                          "version": "1.0.0", "inputSchema": schema(function)});
    tool.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    tool
}

fn agent(id: &str, port: u16, tools: Vec<Value>) -> Value {
    json!({"agent_id": id, "name": id, "http_host": "127.0.0.1", "http_port": port, "tools": tools})
}

/// A `@mesh.llm_provider` agent: a plain tool and its streaming twin.
fn provider(id: &str, port: u16, tags: &[&str], vendor: &str) -> Value {
    let mut stream_tags: Vec<&str> = tags.to_vec();
    stream_tags.push(STREAM);
    agent(
        id,
        port,
        vec![
            tool(
                &format!("{id}_chat"),
                "llm",
                json!({"tags": tags, "kwargs": {"vendor": vendor}}),
            ),
            tool(
                &format!("{id}_chat_stream"),
                "llm",
                json!({"tags": stream_tags, "kwargs": {"vendor": vendor, "stream_type": "text"}}),
            ),
        ],
    )
}

fn math_agent() -> Value {
    agent(
        "math",
        9200,
        vec![
            tool(
                "add",
                "math",
                json!({"tags": ["calc", "fast"], "description": "adds"}),
            ),
            tool("mul", "math", json!({"tags": ["calc"], "version": "2.0.0"})),
        ],
    )
}

/// A consumer whose `@mesh.llm` function `ask` asks for a plain (not streaming) provider with
/// `tags` and the tools `filter` selects.
fn consumer(tags: &[&str], filter: Value) -> Value {
    let mut provider_tags: Vec<String> = tags.iter().map(|t| t.to_string()).collect();
    provider_tags.push(format!("-{STREAM}"));
    agent(
        "assistant",
        9300,
        vec![tool(
            "ask",
            "ask",
            json!({"llm_provider": {"capability": "llm", "tags": provider_tags},
                   "llm_filter": {"filter": filter, "filter_mode": "all"}}),
        )],
    )
}

async fn register(app: &TestApp, body: &Value) -> Value {
    let response = app.post("/heartbeat", body).await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["status"], "success", "{body}");
    body
}

async fn head(app: &TestApp, agent_id: &str) -> u16 {
    app.http
        .head(app.url(&format!("/heartbeat/{agent_id}")))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

async fn listed(app: &TestApp, agent_id: &str) -> Value {
    app.get(&format!("/agents/{agent_id}"))
        .await
        .json()
        .await
        .unwrap()
}

fn tool_names(answer: &Value, function: &str) -> Vec<String> {
    answer["llm_tools"][function]
        .as_array()
        .unwrap_or_else(|| panic!("no llm_tools for {function}: {answer}"))
        .iter()
        .map(|t| t["name"].as_str().unwrap().to_owned())
        .collect()
}

on_both_backends!(a_consumer_gets_its_plain_provider_and_its_filtered_tools);
async fn a_consumer_gets_its_plain_provider_and_its_filtered_tools(backend: Backend) {
    let app = spawn_app(backend).await;
    register(&app, &provider("claude", 9101, &["claude"], "anthropic")).await;
    register(&app, &math_agent()).await;
    let answer = register(&app, &consumer(&["+claude"], json!(["math"]))).await;
    assert_eq!(
        answer["llm_providers"],
        json!({"ask": {"agent_id": "claude", "name": "claude_chat",
                       "endpoint": "http://127.0.0.1:9101", "capability": "llm",
                       "status": "available", "vendor": "anthropic", "tags": ["claude"],
                       "version": "1.0.0", "kwargs": {"vendor": "anthropic"}}})
    );
    assert_eq!(
        answer["llm_tools"],
        json!({"ask": [
            {"name": "add", "capability": "math", "description": "adds",
             "endpoint": "http://127.0.0.1:9200", "inputSchema": schema("add"),
             "tags": ["calc", "fast"], "version": "1.0.0"},
            {"name": "mul", "capability": "math", "description": "",
             "endpoint": "http://127.0.0.1:9200", "inputSchema": schema("mul"),
             "tags": ["calc"], "version": "2.0.0"},
        ]})
    );

    // A streaming function asks for the tag instead of excluding it.
    let mut streaming = consumer(&[], json!([{"capability": "math", "tags": ["fast"]}]));
    streaming["tools"][0]["llm_provider"]["tags"] = json!([STREAM]);
    let answer = register(&app, &streaming).await;
    assert_eq!(answer["llm_providers"]["ask"]["name"], "claude_chat_stream");
    assert_eq!(tool_names(&answer, "ask"), ["add"]);
}

on_both_backends!(each_function_has_a_key_exactly_when_the_reference_gives_one);
async fn each_function_has_a_key_exactly_when_the_reference_gives_one(backend: Backend) {
    let app = spawn_app(backend).await;
    register(&app, &math_agent()).await;
    let body = agent(
        "assistant",
        9300,
        vec![
            // A filter that matches nothing: an empty list (the SDK then runs without tools).
            tool(
                "nothing",
                "nothing",
                json!({"llm_filter": {"filter": ["none"]}}),
            ),
            // An entry the reference cannot read, or no list at all: no key.
            tool(
                "unreadable",
                "unreadable",
                json!({"llm_filter": {"filter": ["math", 7]}}),
            ),
            tool(
                "no_list",
                "no_list",
                json!({"llm_filter": {"filter_mode": "*"}}),
            ),
            // No provider matches: no key, and no `llm_providers` at all.
            tool(
                "no_provider",
                "no_provider",
                json!({"llm_provider": {"capability": "llm", "tags": ["claude"]}}),
            ),
        ],
    );
    let answer = register(&app, &body).await;
    assert_eq!(answer["llm_tools"], json!({"nothing": []}));
    assert!(answer.get("llm_providers").is_none(), "{answer}");
}

on_both_backends!(malformed_llm_fields_are_400_naming_the_field);
async fn malformed_llm_fields_are_400_naming_the_field(backend: Backend) {
    let app = spawn_app(backend).await;
    let cases = [
        (json!({"llm_filter": "math"}), "tools[0].llm_filter"),
        // The reference reads provider tags as plain strings: no OR groups.
        (
            json!({"llm_provider": {"capability": "llm", "tags": [["a", "b"]]}}),
            "tools[0].llm_provider.tags[0]",
        ),
        (
            json!({"llm_provider": {"capability": 1}}),
            "tools[0].llm_provider.capability",
        ),
        (json!({"inputSchema": ["x"]}), "tools[0].inputSchema"),
    ];
    for (extra, field) in cases {
        let mut tool = json!({"function_name": "f", "capability": "c"});
        tool.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        let response = app
            .post("/heartbeat", &json!({"agent_id": "a", "tools": [tool]}))
            .await;
        assert_eq!(response.status(), 400, "{field}");
        let body: Value = response.json().await.unwrap();
        let message = body["error"].as_str().unwrap();
        assert!(
            message.starts_with(&format!("Invalid JSON payload: {field}: ")),
            "{message}"
        );
    }
    // `null` is absent, and a null provider tag reads as an empty one, as in Go.
    let tolerated = json!({"agent_id": "a", "tools": [{"function_name": "f", "capability": "c",
        "inputSchema": null, "llm_filter": null,
        "llm_provider": {"capability": "llm", "tags": [null, "x"], "version": null}}]});
    assert_eq!(app.post("/heartbeat", &tolerated).await.status(), 200);
}

/// Asserts the consumer is told of a change (202) and answers 200 again once it re-registers;
/// returns its new answer.
async fn consumer_hears_of_it(app: &TestApp, body: &Value, what: &str) -> Value {
    assert_eq!(head(app, "assistant").await, 202, "{what}: 202");
    let answer = register(app, body).await;
    assert_eq!(head(app, "assistant").await, 200, "{what}: 200 after");
    answer
}

on_both_backends!(topology_changes_reach_llm_consumers);
async fn topology_changes_reach_llm_consumers(backend: Backend) {
    let app = spawn_app_with(backend, |config| {
        config.health_check_interval = Duration::from_secs(1);
        config.agent_timeout = Duration::from_secs(2);
    })
    .await;
    let body = consumer(&[], json!(["math"]));
    let answer = register(&app, &body).await;
    assert_eq!(answer["llm_tools"], json!({"ask": []}));
    assert!(answer.get("llm_providers").is_none());
    assert_eq!(head(&app, "assistant").await, 200);

    // A provider appears.
    register(&app, &provider("claude", 9101, &["claude"], "anthropic")).await;
    let answer = consumer_hears_of_it(&app, &body, "provider appears").await;
    assert_eq!(answer["llm_providers"]["ask"]["agent_id"], "claude");

    // A filtered tool appears, then changes what the LLM sees of it.
    register(&app, &math_agent()).await;
    let answer = consumer_hears_of_it(&app, &body, "tool appears").await;
    assert_eq!(tool_names(&answer, "ask"), ["add", "mul"]);
    let mut changed = math_agent();
    changed["tools"][0]["inputSchema"] = json!({"type": "object", "properties": {"a": {}}});
    register(&app, &changed).await;
    let answer = consumer_hears_of_it(&app, &body, "tool schema changes").await;
    assert_eq!(
        answer["llm_tools"]["ask"][0]["inputSchema"],
        json!({"type": "object", "properties": {"a": {}}})
    );

    // A second provider that the consumer prefers, then the consumer's own request changes.
    register(&app, &provider("gpt", 9102, &["openai"], "openai")).await;
    let answer = consumer_hears_of_it(&app, &body, "second provider").await;
    assert_eq!(answer["llm_providers"]["ask"]["agent_id"], "claude");
    let prefers_gpt = consumer(&["+openai"], json!(["math"]));
    let answer = register(&app, &prefers_gpt).await;
    assert_eq!(answer["llm_providers"]["ask"]["agent_id"], "gpt");

    // The tool agent leaves.
    assert_eq!(
        app.http
            .delete(app.url("/agents/math"))
            .send()
            .await
            .unwrap()
            .status(),
        204
    );
    let answer = consumer_hears_of_it(&app, &prefers_gpt, "tool leaves").await;
    assert_eq!(answer["llm_tools"], json!({"ask": []}));

    // The preferred provider falls silent and turns unhealthy; the consumer keeps beating.
    let started = Instant::now();
    loop {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "gpt never turned unhealthy"
        );
        register(&app, &provider("claude", 9101, &["claude"], "anthropic")).await;
        if head(&app, "assistant").await == 202
            && listed(&app, "gpt").await["status"] == "unhealthy"
        {
            break;
        }
        actix_web::rt::time::sleep(Duration::from_millis(300)).await;
    }
    let answer = register(&app, &prefers_gpt).await;
    assert_eq!(answer["llm_providers"]["ask"]["agent_id"], "claude");
}

on_both_backends!(the_listing_shows_llm_requests_and_resolutions);
async fn the_listing_shows_llm_requests_and_resolutions(backend: Backend) {
    let app = spawn_app(backend).await;
    register(&app, &provider("claude", 9101, &["claude"], "anthropic")).await;
    register(&app, &math_agent()).await;
    register(
        &app,
        &consumer(&[], json!(["math", {"capability": "text", "tags": ["x"]}])),
    )
    .await;
    let assistant = listed(&app, "assistant").await;
    assert_eq!(
        assistant["capabilities"][0]["llm_filter"],
        json!({"filter": ["math", {"capability": "text", "tags": ["x"]}], "filter_mode": "all"})
    );
    assert_eq!(
        assistant["capabilities"][0]["llm_provider"],
        json!({"capability": "llm", "tags": [format!("-{STREAM}")]})
    );
    assert_eq!(
        assistant["llm_tool_resolutions"],
        json!([
            {"function_name": "ask", "filter_capability": "math", "filter_mode": "all",
             "status": "available", "provider_agent_id": "math", "mcp_tool": "add",
             "provider_capability": "math", "endpoint": "http://127.0.0.1:9200"},
            {"function_name": "ask", "filter_capability": "math", "filter_mode": "all",
             "status": "available", "provider_agent_id": "math", "mcp_tool": "mul",
             "provider_capability": "math", "endpoint": "http://127.0.0.1:9200"},
            {"function_name": "ask", "filter_capability": "text", "filter_tags": ["x"],
             "filter_mode": "all", "status": "unresolved"},
        ])
    );
    assert_eq!(
        assistant["llm_provider_resolutions"],
        json!([{"function_name": "ask", "required_capability": "llm",
                "required_tags": [format!("-{STREAM}")], "status": "available",
                "provider_agent_id": "claude", "mcp_tool": "claude_chat",
                "endpoint": "http://127.0.0.1:9101"}])
    );
    // Agents without LLM functions show none, as the reference does.
    let math = listed(&app, "math").await;
    assert_eq!(math["llm_tool_resolutions"], Value::Null);
    assert_eq!(math["llm_provider_resolutions"], Value::Null);
    assert!(math["capabilities"][0].get("llm_filter").is_none());
}

postgres_only!(every_replica_gives_the_same_llm_answer);
async fn every_replica_gives_the_same_llm_answer(backend: Backend) {
    let a = spawn_app(backend).await;
    let b = a.replica().await;
    let body = consumer(&[], json!(["math"]));
    register(&a, &body).await;
    // The mesh changes through replica b; the consumer beats replica a.
    register(&b, &provider("claude", 9101, &["claude"], "anthropic")).await;
    register(&b, &math_agent()).await;
    let started = Instant::now();
    while head(&a, "assistant").await != 202 {
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "replica a never heard of the change"
        );
        actix_web::rt::time::sleep(Duration::from_millis(200)).await;
    }
    let through_a = register(&a, &body).await;
    let through_b = register(&b, &body).await;
    assert_eq!(through_a["llm_providers"]["ask"]["agent_id"], "claude");
    assert_eq!(tool_names(&through_a, "ask"), ["add", "mul"]);
    for field in ["llm_providers", "llm_tools", "dependencies_resolved"] {
        assert_eq!(through_a[field], through_b[field], "{field}");
    }
    assert_eq!(
        listed(&a, "assistant").await["llm_tool_resolutions"],
        listed(&b, "assistant").await["llm_tool_resolutions"]
    );
}
