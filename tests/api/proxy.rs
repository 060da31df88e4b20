//! The MCP proxy, `/proxy/{host}:{port}/mcp…` (docs/contract.md#proxy): only registered agents'
//! `/mcp` endpoints, the fixed header set (plus `MCP_MESH_PROPAGATE_HEADERS`), answers streamed
//! as they come, the time budget, the cap on concurrent relays, and a client that goes away
//! dropping the upstream request.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use serde_json::{json, Value};

use crate::helpers::{assert_error, on_both_backends, spawn_app, spawn_app_with, within, Backend};

/// A stand-in MCP agent: `/mcp` echoes what it received, `/mcp/sse` streams SSE frames until the
/// client goes away (counting the streams still open), `/mcp/slow` answers after a minute.
struct McpAgent {
    port: u16,
    open_streams: Arc<AtomicUsize>,
    _server: actix_web::dev::ServerHandle,
}

/// Decrements the open-stream count when the stream it lives in is dropped.
struct StreamGuard(Arc<AtomicUsize>);

impl Drop for StreamGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

async fn echo(req: HttpRequest, body: web::Bytes) -> HttpResponse {
    let headers: serde_json::Map<String, Value> = req
        .headers()
        .iter()
        .map(|(name, value)| (name.as_str().to_owned(), json!(value.to_str().unwrap())))
        .collect();
    HttpResponse::Ok()
        .insert_header(("X-Agent", "echo"))
        .json(json!({
            "method": req.method().as_str(),
            "path": req.path(),
            "query": req.query_string(),
            "headers": headers,
            "body": String::from_utf8_lossy(&body),
        }))
}

async fn mcp_agent() -> McpAgent {
    let open_streams = Arc::new(AtomicUsize::new(0));
    let open = open_streams.clone();
    let server = HttpServer::new(move || {
        let open = open.clone();
        App::new()
            .route("/mcp", web::post().to(echo))
            .route("/mcp", web::get().to(echo))
            .route(
                "/mcp/sse",
                web::post().to(move || {
                    let open = open.clone();
                    async move {
                        open.fetch_add(1, Ordering::SeqCst);
                        let guard = StreamGuard(open);
                        let frames =
                            futures_util::stream::unfold((0u64, guard), |(n, guard)| async move {
                                if n > 0 {
                                    actix_web::rt::time::sleep(Duration::from_millis(50)).await;
                                }
                                let frame = web::Bytes::from(format!("data: {{\"n\":{n}}}\n\n"));
                                Some((Ok::<_, actix_web::Error>(frame), (n + 1, guard)))
                            });
                        HttpResponse::Ok()
                            .content_type("text/event-stream")
                            .streaming(frames)
                    }
                }),
            )
            .route(
                "/mcp/slow",
                web::post().to(|| async {
                    actix_web::rt::time::sleep(Duration::from_secs(60)).await;
                    HttpResponse::Ok().finish()
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
    McpAgent {
        port,
        open_streams,
        _server: handle,
    }
}

async fn register(app: &crate::helpers::TestApp, id: &str, name: &str, port: u16) {
    let body = json!({"agent_id": id, "name": name, "http_host": "127.0.0.1", "http_port": port,
                      "tools": [{"function_name": "greet", "capability": "greet"}]});
    assert_eq!(app.post("/heartbeat", &body).await.status(), 200);
}

on_both_backends!(a_call_reaches_the_registered_agent_with_the_fixed_headers);
async fn a_call_reaches_the_registered_agent_with_the_fixed_headers(backend: Backend) {
    let app = spawn_app(backend).await;
    let agent = mcp_agent().await;
    register(&app, "greeter-1a2b", "greeter", agent.port).await;
    let rpc = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"greet"}}"#;
    // By the registered host, by the agent's id and by its name: all reach the same endpoint.
    for host in ["127.0.0.1", "greeter-1a2b", "greeter"] {
        let response = app
            .http
            .post(app.url(&format!("/proxy/{host}:{}/mcp?dropped=1", agent.port)))
            .header("Content-Type", "application/json")
            .header("Accept", "application/json, text/event-stream")
            .header("X-Trace-ID", "trace-1")
            .header("X-Parent-Span", "span-1")
            .header("X-Mesh-Timeout", "30")
            .header("X-Mesh-Job-Id", "job-1")
            .header("X-Mesh-Calling-Job-Id", "job-0")
            .header("X-Mesh-Calling-Claim-Epoch", "3")
            .header("Authorization", "Bearer secret")
            .header("Cookie", "session=1")
            .header("X-Tenant-Id", "acme")
            .body(rpc)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{host}");
        assert_eq!(
            response.headers()["x-agent"],
            "echo",
            "the agent's headers come back"
        );
        let echoed: Value = response.json().await.unwrap();
        assert_eq!(echoed["method"], "POST");
        assert_eq!(echoed["path"], "/mcp");
        assert_eq!(echoed["query"], "", "the query string is not forwarded");
        assert_eq!(echoed["body"], rpc);
        let headers = &echoed["headers"];
        for (name, value) in [
            ("content-type", "application/json"),
            ("accept", "application/json, text/event-stream"),
            ("x-trace-id", "trace-1"),
            ("x-parent-span", "span-1"),
            ("x-mesh-timeout", "30"),
            ("x-mesh-job-id", "job-1"),
            ("x-mesh-calling-job-id", "job-0"),
            ("x-mesh-calling-claim-epoch", "3"),
        ] {
            assert_eq!(headers[name], value, "{name} is forwarded");
        }
        for name in ["authorization", "cookie", "x-tenant-id"] {
            assert_eq!(headers[name], Value::Null, "{name} stays with the registry");
        }
    }
    // GET (the MCP stream a client opens) has no body.
    let response = app
        .get(&format!("/proxy/127.0.0.1:{}/mcp", agent.port))
        .await;
    assert_eq!(response.status(), 200);
    let echoed: Value = response.json().await.unwrap();
    assert_eq!(
        (echoed["method"].as_str(), echoed["body"].as_str()),
        (Some("GET"), Some(""))
    );
}

on_both_backends!(propagated_headers_are_the_configured_ones);
async fn propagated_headers_are_the_configured_ones(backend: Backend) {
    let app = spawn_app_with(backend, |config| {
        config.propagate_headers = vec!["authorization".into(), "x-tenant-*".into()];
    })
    .await;
    let agent = mcp_agent().await;
    register(&app, "greeter", "greeter", agent.port).await;
    let response = app
        .http
        .post(app.url(&format!("/proxy/greeter:{}/mcp", agent.port)))
        .header("Authorization", "Bearer t")
        .header("X-Tenant-Id", "acme")
        .header("X-Tenant-Region", "eu")
        .header("Cookie", "session=1")
        .body("{}")
        .send()
        .await
        .unwrap();
    let echoed: Value = response.json().await.unwrap();
    let headers = &echoed["headers"];
    assert_eq!(headers["authorization"], "Bearer t");
    assert_eq!(headers["x-tenant-id"], "acme");
    assert_eq!(headers["x-tenant-region"], "eu");
    assert_eq!(headers["cookie"], Value::Null);
}

on_both_backends!(only_registered_mcp_endpoints_are_reached);
async fn only_registered_mcp_endpoints_are_reached(backend: Backend) {
    let app = spawn_app(backend).await;
    let agent = mcp_agent().await;
    register(&app, "greeter", "greeter", agent.port).await;
    let port = agent.port;
    let bad_path = "Only /mcp/* paths are allowed for proxying";
    for (path, status, message) in [
        (
            format!("/proxy/127.0.0.1:{port}"),
            400,
            "Invalid target format: missing path. Expected format: {host}:{port}/mcp/{path}"
                .to_owned(),
        ),
        (
            format!("/proxy/127.0.0.1:{port}/admin/drain"),
            400,
            bad_path.to_owned(),
        ),
        (
            format!("/proxy/127.0.0.1:{port}/mcpx"),
            400,
            bad_path.to_owned(),
        ),
        (
            format!("/proxy/127.0.0.1:{port}/mcp/../admin/drain"),
            400,
            bad_path.to_owned(),
        ),
        (
            format!("/proxy/127.0.0.1:{port}/mcp/%2e%2e/admin"),
            400,
            bad_path.to_owned(),
        ),
        (
            "/proxy/10.0.0.1:80/mcp".to_owned(),
            403,
            "Target host '10.0.0.1:80' is not a registered agent".to_owned(),
        ),
        // The registered host on another port (the registry's own, say) is not the agent.
        (
            "/proxy/127.0.0.1:1/mcp".to_owned(),
            403,
            "Target host '127.0.0.1:1' is not a registered agent".to_owned(),
        ),
        (
            "/proxy/greeter:abc/mcp".to_owned(),
            403,
            "Target host 'greeter:abc' is not a registered agent".to_owned(),
        ),
        (
            "/proxy/greeter/mcp".to_owned(),
            403,
            "Target host 'greeter' is not a registered agent".to_owned(),
        ),
    ] {
        let response = app
            .http
            .post(app.url(&path))
            .body("{}")
            .send()
            .await
            .unwrap();
        assert_error(response, status, &message).await;
    }
    // Hostile targets name nothing: a NUL, an over-long host, an IPv6 literal, a user part.
    let long = "h".repeat(300);
    for target in [
        format!("greeter%00:{port}"),
        format!("{long}:{port}"),
        format!("[::1]:{port}"),
        format!("user@greeter:{port}"),
    ] {
        let response = app
            .http
            .post(app.url(&format!("/proxy/{target}/mcp")))
            .body("{}")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 403, "{target}");
    }
    // A body over the limit is refused before anything is relayed.
    let huge = "x".repeat(65 * 1024);
    let response = app
        .http
        .post(app.url(&format!("/proxy/greeter:{port}/mcp")))
        .body(huge)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 413);
}

on_both_backends!(sse_answers_stream_and_a_client_that_leaves_cancels_the_upstream_call);
async fn sse_answers_stream_and_a_client_that_leaves_cancels_the_upstream_call(backend: Backend) {
    let app = spawn_app_with(backend, |config| config.proxy_max_streams = 1).await;
    let agent = mcp_agent().await;
    register(&app, "streamer", "streamer", agent.port).await;
    let url = app.url(&format!("/proxy/streamer:{}/mcp/sse", agent.port));
    // The agent never ends this stream: frames can only arrive if they are relayed as they come.
    let mut response = app.http.post(&url).body("{}").send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let mut received = String::new();
    while !received.contains("data: {\"n\":3}") {
        let chunk = response.chunk().await.unwrap().expect("the stream goes on");
        received.push_str(&String::from_utf8_lossy(&chunk));
    }
    assert_eq!(agent.open_streams.load(Ordering::SeqCst), 1);
    // The one slot is taken: another call is refused, not queued.
    let refused = app.http.post(&url).body("{}").send().await.unwrap();
    assert_error(
        refused,
        503,
        "too many proxied requests in flight (1); retry",
    )
    .await;
    drop(response);
    within(
        Duration::from_secs(10),
        "the agent's stream to be dropped",
        || async { agent.open_streams.load(Ordering::SeqCst) == 0 },
    )
    .await;
    // The slot came back with the departed client.
    let mut again = app.http.post(&url).body("{}").send().await.unwrap();
    assert_eq!(again.status(), 200);
    assert!(again.chunk().await.unwrap().is_some());
}

on_both_backends!(the_budget_cuts_a_slow_agent);
async fn the_budget_cuts_a_slow_agent(backend: Backend) {
    let app = spawn_app(backend).await;
    let agent = mcp_agent().await;
    register(&app, "streamer", "streamer", agent.port).await;
    // An SSE answer cut by the caller's budget ends with the marker meshctl looks for.
    let response = app
        .http
        .post(app.url(&format!("/proxy/streamer:{}/mcp/sse", agent.port)))
        .header("X-Mesh-Timeout", "1")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body = response.text().await.unwrap();
    assert!(body.starts_with("data: {\"n\":0}\n\n"), "{body}");
    assert!(
        body.ends_with("\n: mesh-proxy-timeout budget=1s\n\n"),
        "{body}"
    );
    // No answer within the budget at all: 502.
    let response = app
        .http
        .post(app.url(&format!("/proxy/streamer:{}/mcp/slow", agent.port)))
        .header("X-Mesh-Timeout", "1")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 502);
    let body: Value = response.json().await.unwrap();
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .starts_with("Failed to reach target agent: "),
        "{body}"
    );
}

on_both_backends!(an_agent_that_is_gone_is_a_bad_gateway);
async fn an_agent_that_is_gone_is_a_bad_gateway(backend: Backend) {
    let app = spawn_app(backend).await;
    // A port nothing listens on any more.
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    register(&app, "gone", "gone", port).await;
    let response = app
        .post(&format!("/proxy/gone:{port}/mcp"), &json!({}))
        .await;
    assert_eq!(response.status(), 502);
    let body: Value = response.json().await.unwrap();
    let error = body["error"].as_str().unwrap();
    assert!(
        error.starts_with("Failed to reach target agent: "),
        "{error}"
    );
    assert!(body["timestamp"].is_string());
}
