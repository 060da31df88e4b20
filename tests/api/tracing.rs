//! The registry's own spans over OTLP (`MCP_MESH_OTLP_ENDPOINT`): the real binary exports to an
//! in-test OTLP/HTTP receiver, which decodes the protobuf it gets. One `request` span per
//! request, with its id, method, route and status, the caller's `traceparent` as its parent,
//! and the store calls and actor hand-offs as its children.

use opentelemetry_proto::tonic::trace::v1::Span;
use serde_json::{json, Value};

use crate::helpers::{
    on_both_backends, otlp_attribute, spawn_app, Backend, OtlpReceiver, RegistryProcess,
};

fn attribute(span: &Span, key: &str) -> Option<String> {
    otlp_attribute(&span.attributes, key)
}

#[actix_web::test]
async fn each_request_is_one_exported_span_with_its_store_calls_inside() {
    let receiver = OtlpReceiver::start();
    let endpoint = receiver.url.clone();
    let directory = std::env::temp_dir().join(format!(
        "mesh-registry-otlp-{}",
        uuid::Uuid::new_v4().simple()
    ));
    std::fs::create_dir_all(&directory).expect("a working directory");
    let registry = RegistryProcess::start(&directory, &[("MCP_MESH_OTLP_ENDPOINT", &endpoint)]);
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let caller_span = "00f067aa0ba902b7";
    let http = reqwest::Client::new();
    let submitted = http
        .post(format!("{}/jobs", registry.base))
        .header("traceparent", format!("00-{trace_id}-{caller_span}-01"))
        .json(&json!({"capability": "c", "submitted_by": "t", "submitted_payload": {}}))
        .send()
        .await
        .unwrap();
    assert_eq!(submitted.status(), 201);
    let (status, _) = registry
        .send(
            "POST",
            "/jobs/claim",
            Some(json!({"capability": "c", "instance_id": "w"})),
        )
        .await;
    assert_eq!(status, 200);
    // A graceful stop sends what is still buffered.
    registry.terminate();
    let spans: Vec<Span> = receiver.spans().into_iter().map(|(_, s)| s).collect();
    receiver.stop().await;
    let _ = std::fs::remove_dir_all(&directory);

    let requests: Vec<&Span> = spans.iter().filter(|s| s.name == "request").collect();
    let submit = requests
        .iter()
        .find(|s| attribute(s, "route").as_deref() == Some("/jobs"))
        .unwrap_or_else(|| panic!("no span of POST /jobs among {spans:#?}"));
    assert_eq!(attribute(submit, "method").as_deref(), Some("POST"));
    assert_eq!(attribute(submit, "status").as_deref(), Some("201"));
    let request_id = attribute(submit, "request_id").expect("a request id");
    assert!(uuid::Uuid::parse_str(&request_id).is_ok(), "{request_id}");
    // The caller's traceparent is the parent.
    assert_eq!(hex(&submit.trace_id), trace_id);
    assert_eq!(hex(&submit.parent_span_id), caller_span);
    let children = |parent: &Span| -> Vec<String> {
        spans
            .iter()
            .filter(|s| s.parent_span_id == parent.span_id)
            .map(|s| match attribute(s, "operation") {
                Some(operation) => format!("{} {operation}", s.name),
                None => s.name.clone(),
            })
            .collect()
    };
    assert!(
        children(submit).contains(&"store create_job".to_owned()),
        "{:?}",
        children(submit)
    );
    let claim = requests
        .iter()
        .find(|s| attribute(s, "route").as_deref() == Some("/jobs/claim"))
        .expect("a span of POST /jobs/claim");
    assert_ne!(
        claim.trace_id, submit.trace_id,
        "no traceparent: a trace of its own"
    );
    let inside = children(claim);
    assert!(
        inside.contains(&"store claim_next".to_owned()),
        "{inside:?}"
    );
    assert!(inside.contains(&"actors.forward".to_owned()), "{inside:?}");
    assert_ne!(
        attribute(claim, "request_id"),
        Some(request_id),
        "each request has an id of its own"
    );
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

on_both_backends!(the_trace_routes_answer_as_the_reference_without_its_pipeline);
async fn the_trace_routes_answer_as_the_reference_without_its_pipeline(backend: Backend) {
    let app = spawn_app(backend).await;
    let off = json!({"enabled": false, "reason": "tracing not initialized"});
    for path in ["/trace/status", "/trace/stats"] {
        let response = app.get(path).await;
        assert_eq!(response.status(), 200, "{path}");
        assert_eq!(response.json::<Value>().await.unwrap(), off, "{path}");
    }
    let info = app.get("/trace/info").await;
    assert_eq!(info.status(), 200);
    assert_eq!(
        info.json::<Value>().await.unwrap(),
        json!({"enabled": false, "reason": "tracing not initialized",
               "config": "MCP_MESH_DISTRIBUTED_TRACING_ENABLED=false"})
    );
    let trace = app.get("/trace/4bf92f3577b34da6a3ce929d0e0e4736").await;
    assert_eq!(trace.status(), 404);
    assert_eq!(
        trace.json::<Value>().await.unwrap(),
        json!({"error": "tracing not enabled", "enabled": false})
    );
}
