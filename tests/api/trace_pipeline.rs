//! The distributed-trace pipeline (`MCP_MESH_DISTRIBUTED_TRACING_ENABLED`) against real things:
//! a `redis-server` of the test's own, spans XADDed to `mesh:trace` as the agents' runtimes
//! write them, an in-test OTLP/HTTP collector that decodes what it gets, and a fake Tempo HTTP
//! API for `GET /trace/{id}`; each of them over TLS too, with certificates made in the test.
//! What the pipeline does is counted in `GET /metrics`. The pipeline touches no database: these
//! run on the embedded one.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::{web, App, HttpResponse, HttpServer};
use base64::Engine;
use mesh_registry::config::{ClientTls, TelemetryProtocol, TracePipelineSettings};
use opentelemetry_proto::tonic::trace::v1::{span::SpanKind, status::StatusCode, Span};
use redis::aio::MultiplexedConnection;
use serde_json::{json, Value};

use crate::helpers::certs::{server_config, Issued, TestCa};
use crate::helpers::{
    otlp_attribute, spawn_app_with, stays_for, within, Backend, GrpcCollector, OtlpReceiver,
    RedisServer, TestApp,
};
use crate::metrics::{scrape, value};
use crate::namespace::GoRegistry;

const WAIT: Duration = Duration::from_secs(30);

/// The pipeline of a test registry: this Redis, this collector (OTLP/HTTP), this group.
fn settings(redis: &RedisServer, collector: &OtlpReceiver, group: &str) -> TracePipelineSettings {
    TracePipelineSettings {
        redis_url: redis.url(),
        stream: "mesh:trace".into(),
        consumer_group: group.into(),
        batch_size: 100,
        retention: Some(Duration::from_secs(24 * 3600)),
        exporter_type: "otlp".into(),
        endpoint: collector.endpoint(),
        protocol: TelemetryProtocol::Http,
        protocol_name: "http".into(),
        tempo_url: "http://127.0.0.1:9".into(),
        redis_tls: ClientTls::default(),
        telemetry_tls: ClientTls::default(),
        tempo_tls: ClientTls::default(),
    }
}

/// The sum of one series over several replicas' `GET /metrics`.
async fn fleet_total(apps: &[&TestApp], name: &str, labels: &[(&str, &str)]) -> f64 {
    let mut total = 0.0;
    for app in apps {
        total += value(&scrape(app).await, name, labels).unwrap_or_else(|| panic!("{name}"));
    }
    total
}

async fn traced_app(settings: TracePipelineSettings) -> TestApp {
    spawn_app_with(Backend::Embedded, |config| {
        config.trace_pipeline = Some(settings)
    })
    .await
}

/// XADDs one entry to `mesh:trace`.
async fn publish(redis: &mut MultiplexedConnection, fields: &[(&str, String)]) {
    let mut xadd = redis::cmd("XADD");
    xadd.arg("mesh:trace").arg("*");
    for (key, value) in fields {
        xadd.arg(*key).arg(value);
    }
    let _: String = xadd.query_async(redis).await.expect("XADD");
}

/// XADDs one Python trace: span 0 its root, the others children of it; `failing` names the span
/// that failed, if one did.
async fn publish_trace(
    redis: &mut MultiplexedConnection,
    trace: usize,
    spans: usize,
    failing: Option<usize>,
) {
    for span in 0..spans {
        let parent = (span > 0).then_some(0);
        publish(
            redis,
            &python_span(trace, span, parent, Some(span) != failing),
        )
        .await;
    }
}

fn trace_id(n: usize) -> String {
    format!("{n:032x}")
}

fn span_id(trace: usize, span: usize) -> String {
    format!("{:016x}", trace * 1000 + span + 1)
}

/// The Python runtime's single execution-trace entry (its field names and value spellings).
fn python_span(
    trace: usize,
    span: usize,
    parent: Option<usize>,
    ok: bool,
) -> Vec<(&'static str, String)> {
    vec![
        ("trace_id", trace_id(trace)),
        ("span_id", span_id(trace, span)),
        (
            "parent_span",
            parent.map_or("None".into(), |p| span_id(trace, p)),
        ),
        ("agent_name", format!("agent-{}", span % 2)),
        ("agent_id", format!("agent-{}-1234", span % 2)),
        ("agent_ip", "10.1.2.3".into()),
        ("function_name", format!("tool_{span}")),
        // Binary fractions of a second: exact in the runtime's float, so exact in nanoseconds.
        (
            "start_time",
            (1_700_000_000.0 + span as f64 * 0.125).to_string(),
        ),
        ("end_time", "1700000001.0".into()),
        ("duration_ms", "12.5".into()),
        ("success", if ok { "True" } else { "False" }.into()),
        ("error_message", if ok { "" } else { "boom" }.into()),
        ("runtime", "python".into()),
    ]
}

/// The Go/TypeScript runtimes' pair: `span_start`, then `span_end`.
fn go_pair(trace: usize) -> [Vec<(&'static str, String)>; 2] {
    let common = |event: &str| {
        vec![
            ("trace_id", trace_id(trace)),
            ("span_id", span_id(trace, 0)),
            ("agent_name", "go-agent".into()),
            ("agent_id", "go-agent-1".into()),
            ("ip_address", "10.9.9.9".into()),
            ("operation", "handle".into()),
            ("event_type", event.into()),
            ("timestamp", "1700000100.25".into()),
            ("runtime", "go".into()),
        ]
    };
    let mut end = common("span_end");
    end.push(("duration_ms", "40".into()));
    end.push(("success", "true".into()));
    end.push(("capability", "weather".into()));
    [common("span_start"), end]
}

async fn consumers(redis: &mut MultiplexedConnection, group: &str) -> usize {
    // Parsed as the pipeline's housekeeping parses it.
    let reply: redis::streams::StreamInfoConsumersReply = redis::cmd("XINFO")
        .arg("CONSUMERS")
        .arg("mesh:trace")
        .arg(group)
        .query_async(redis)
        .await
        .expect("XINFO CONSUMERS");
    reply.consumers.len()
}

async fn pending(redis: &mut MultiplexedConnection, group: &str) -> u64 {
    let reply: redis::streams::StreamInfoGroupsReply = redis::cmd("XINFO")
        .arg("GROUPS")
        .arg("mesh:trace")
        .query_async(redis)
        .await
        .expect("XINFO GROUPS");
    reply
        .groups
        .into_iter()
        .find(|g| g.name == group)
        .map_or(u64::MAX, |g| g.pending as u64)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[actix_web::test]
async fn replicas_in_one_group_export_each_span_once() {
    let redis = RedisServer::start().await;
    let collector = OtlpReceiver::start();
    let a = traced_app(settings(&redis, &collector, "replicas")).await;
    let b = traced_app(settings(&redis, &collector, "replicas")).await;
    let mut conn = redis.connection().await;
    for app in [&a, &b] {
        within(WAIT, "both replicas to be reading", || async {
            let status: Value = app.get("/trace/status").await.json().await.unwrap();
            status["consumer"]["consuming"] == true
        })
        .await;
    }

    // 8 traces of 5 Python spans (a root and four children; one child fails), 10 Go pairs, and
    // two entries no collector could take.
    for trace in 0..8 {
        publish_trace(&mut conn, trace, 5, Some(3)).await;
    }
    for trace in 100..110 {
        for entry in go_pair(trace) {
            publish(&mut conn, &entry).await;
        }
    }
    publish(
        &mut conn,
        &[
            ("trace_id", "nothex".into()),
            ("span_id", "x".into()),
            ("function_name", "f".into()),
        ],
    )
    .await;
    publish(
        &mut conn,
        &[("event_type", "span_end".into()), ("operation", "f".into())],
    )
    .await;

    within(WAIT, "50 spans exported", || {
        let exported = collector.spans().len();
        async move { exported >= 50 }
    })
    .await;
    within(WAIT, "every entry acknowledged", || {
        let mut conn = conn.clone();
        async move { pending(&mut conn, "replicas").await == 0 }
    })
    .await;
    stays_for(
        Duration::from_millis(1500),
        "no span exported twice",
        || {
            let exported = collector.spans().len();
            async move { exported == 50 }
        },
    )
    .await;
    let spans = collector.spans();
    // Redis hands an entry to one consumer of the group: whichever replica read it.
    let readers = consumers(&mut conn, "replicas").await;
    assert!((1..=2).contains(&readers), "{readers} consumers");
    let ids: HashSet<(Vec<u8>, Vec<u8>)> = spans
        .iter()
        .map(|(_, s)| (s.trace_id.clone(), s.span_id.clone()))
        .collect();
    assert_eq!(ids.len(), 50, "each span once");

    let find = |trace: usize, span: usize| -> (String, Span) {
        spans
            .iter()
            .find(|(_, s)| {
                hex(&s.trace_id) == trace_id(trace) && hex(&s.span_id) == span_id(trace, span)
            })
            .cloned()
            .unwrap_or_else(|| panic!("span {trace}/{span} among {spans:#?}"))
    };
    let (service, root) = find(2, 0);
    assert_eq!(service, "agent-0");
    assert_eq!(root.name, "tool_0");
    assert_eq!(root.kind, SpanKind::Server as i32);
    assert!(root.parent_span_id.is_empty());
    assert_eq!(root.start_time_unix_nano, 1_700_000_000_000_000_000);
    assert_eq!(root.end_time_unix_nano, 1_700_000_000_012_000_000);
    assert_eq!(root.status.as_ref().unwrap().code, StatusCode::Ok as i32);
    assert_eq!(
        otlp_attribute(&root.attributes, "mcp.agent.id").as_deref(),
        Some("agent-0-1234")
    );
    assert_eq!(
        otlp_attribute(&root.attributes, "mcp.runtime").as_deref(),
        Some("python")
    );
    assert_eq!(
        otlp_attribute(&root.attributes, "mcp.ip.address").as_deref(),
        Some("10.1.2.3")
    );
    assert_eq!(
        otlp_attribute(&root.attributes, "mcp.duration.ms").as_deref(),
        Some("12")
    );
    let (service, failed) = find(2, 3);
    assert_eq!(service, "agent-1");
    assert_eq!(failed.kind, SpanKind::Internal as i32);
    assert_eq!(hex(&failed.parent_span_id), span_id(2, 0));
    let status = failed.status.as_ref().unwrap();
    assert_eq!(
        (status.code, status.message.as_str()),
        (StatusCode::Error as i32, "boom")
    );
    let (service, go) = find(104, 0);
    assert_eq!(service, "go-agent");
    assert_eq!(go.name, "handle");
    assert_eq!(go.start_time_unix_nano, 1_700_000_100_250_000_000);
    assert_eq!(go.end_time_unix_nano - go.start_time_unix_nano, 40_000_000);
    assert_eq!(
        otlp_attribute(&go.attributes, "mcp.capability").as_deref(),
        Some("weather")
    );

    // Both replicas answer the reference's status: connected, the stream, nothing pending.
    for app in [&a, &b] {
        let status: Value = app.get("/trace/status").await.json().await.unwrap();
        assert_eq!(status["enabled"], true);
        assert_eq!(status["stream_through_mode"], true);
        assert_eq!(status["exporter_type"], "otlp");
        assert_eq!(status["config"]["consumer_group"], "replicas");
        assert_eq!(status["config"]["trace_retention"], 86_400_000_000_000u64);
        assert_eq!(status["config"]["telemetry_protocol"], "http");
        assert_eq!(status["consumer"]["connection_state"], "connected");
        assert_eq!(status["consumer"]["consuming"], true);
        within(WAIT, "the status to show the stream", || async {
            let status: Value = app.get("/trace/status").await.json().await.unwrap();
            status["consumer"]["stream_length"] == 62 && status["consumer"]["group_pending"] == 0
        })
        .await;
        let stats: Value = app.get("/trace/stats").await.json().await.unwrap();
        assert_eq!(
            stats,
            json!({"enabled": true, "stats_available": false, "reason": "statistics collection not enabled"})
        );
        // The stream's figures in the metrics too, each replica seeing the whole stream.
        within(WAIT, "the stream's figures in the metrics", || async {
            let text = scrape(app).await;
            let at = |name| value(&text, name, &[]);
            at("mesh_registry_trace_stream_length") == Some(62.0)
                && at("mesh_registry_trace_group_pending") == Some(0.0)
                && at("mesh_registry_trace_group_lag") == Some(0.0)
                && at("mesh_registry_trace_redis_connected") == Some(1.0)
        })
        .await;
    }
    // What the replicas read, exported and dropped adds up to the stream, whoever read what:
    // 62 entries, 50 spans (the 10 span_start entries are halves), 2 malformed.
    let fleet = [&a, &b];
    let total = |name, labels| fleet_total(&fleet, name, labels);
    assert_eq!(
        total("mesh_registry_trace_entries_read_total", &[]).await,
        62.0
    );
    assert_eq!(
        total("mesh_registry_trace_spans_exported_total", &[]).await,
        50.0
    );
    let dropped = "mesh_registry_trace_entries_dropped_total";
    assert_eq!(total(dropped, &[("reason", "malformed")]).await, 2.0);
    assert_eq!(total(dropped, &[("reason", "refused")]).await, 0.0);
    let exports = "mesh_registry_trace_export_duration_seconds_count";
    assert!(total(exports, &[("outcome", "exported")]).await >= 1.0);
    assert_eq!(total(exports, &[("outcome", "unavailable")]).await, 0.0);
    drop((a, b));
    collector.stop().await;
}

#[actix_web::test]
async fn a_collector_that_refuses_gets_the_same_spans_again_once() {
    let redis = RedisServer::start().await;
    let collector = OtlpReceiver::start();
    collector.refuse_next(2);
    let app = traced_app(settings(&redis, &collector, "retry")).await;
    let mut conn = redis.connection().await;
    for span in 0..5 {
        publish(&mut conn, &python_span(7, span, None, true)).await;
    }
    within(WAIT, "the spans exported after two refusals", || {
        let exported = collector.spans().len();
        async move { exported >= 5 }
    })
    .await;
    assert_eq!(collector.refused(), 2);
    within(WAIT, "every entry acknowledged", || {
        let mut conn = conn.clone();
        async move { pending(&mut conn, "retry").await == 0 }
    })
    .await;
    assert_eq!(collector.spans().len(), 5, "each span once");
    // Two exports the collector turned away, then those it took (the spans may have been read
    // in more than one batch).
    let text = scrape(&app).await;
    let exports = |outcome| {
        let labels = [("outcome", outcome)];
        value(
            &text,
            "mesh_registry_trace_export_duration_seconds_count",
            &labels,
        )
    };
    assert_eq!(exports("unavailable"), Some(2.0));
    assert!(exports("exported") >= Some(1.0));
    assert_eq!(
        value(&text, "mesh_registry_trace_spans_exported_total", &[]),
        Some(5.0)
    );
    drop(app);
    collector.stop().await;
}

#[actix_web::test]
async fn a_collector_that_refuses_for_good_drops_the_batch_and_says_so() {
    let redis = RedisServer::start().await;
    let collector = OtlpReceiver::start();
    collector.reject_next(1);
    // Written before the registry reads: one batch.
    let mut conn = redis.connection().await;
    for span in 0..3 {
        publish(&mut conn, &python_span(8, span, None, true)).await;
    }
    let app = traced_app(settings(&redis, &collector, "refused")).await;
    within(WAIT, "the batch refused and acknowledged", || async {
        let text = scrape(&app).await;
        let labels = [("reason", "refused")];
        value(&text, "mesh_registry_trace_entries_dropped_total", &labels) == Some(3.0)
            && pending(&mut redis.connection().await, "refused").await == 0
    })
    .await;
    let text = scrape(&app).await;
    let labels = [("outcome", "refused")];
    assert_eq!(
        value(
            &text,
            "mesh_registry_trace_export_duration_seconds_count",
            &labels
        ),
        Some(1.0)
    );
    assert_eq!(
        value(&text, "mesh_registry_trace_spans_exported_total", &[]),
        Some(0.0)
    );
    assert!(collector.spans().is_empty());
    drop(app);
    collector.stop().await;
}

/// Entries older than the retention are trimmed, and counted. Redis trims whole nodes of the
/// stream (`XTRIM MINID ~`): with nodes of 10 entries, 25 old entries then 5 new make two whole
/// nodes of old ones.
#[actix_web::test]
async fn old_entries_are_trimmed_and_counted() {
    let redis = RedisServer::start_with_options(&["--stream-node-max-entries", "10"]).await;
    let collector = OtlpReceiver::start();
    let mut conn = redis.connection().await;
    let start = |n: usize| {
        vec![
            ("event_type", "span_start".to_owned()),
            ("n", n.to_string()),
        ]
    };
    for n in 1..=25 {
        let mut xadd = redis::cmd("XADD");
        // Ids are arrival times in ms: these arrived in 1970.
        xadd.arg("mesh:trace").arg(format!("1000-{n}"));
        for (key, value) in start(n) {
            xadd.arg(key).arg(value);
        }
        let _: String = xadd.query_async(&mut conn).await.expect("XADD");
    }
    for n in 0..5 {
        publish(&mut conn, &start(n)).await;
    }
    let app = traced_app(settings(&redis, &collector, "trim")).await;
    within(WAIT, "the trim counted", || async {
        let text = scrape(&app).await;
        value(&text, "mesh_registry_trace_entries_trimmed_total", &[]) == Some(20.0)
            && value(&text, "mesh_registry_trace_stream_length", &[]) == Some(10.0)
    })
    .await;
    let length: u64 = redis::cmd("XLEN")
        .arg("mesh:trace")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(length, 10);
    drop(app);
    collector.stop().await;
}

/// Submit, claim and complete `jobs` jobs; the number completed.
async fn dispatch(app: &TestApp, jobs: usize) -> usize {
    let mut completed = 0;
    for n in 0..jobs {
        let id = app.submit("traced").await;
        let worker = format!("w{n}");
        let claimed = app.claim("traced", &worker).await.expect("a job to claim");
        assert_eq!(claimed["id"], id.as_str());
        let batch = app
            .delta(
                &worker,
                json!({"id": id, "claim_epoch": 1, "status": "completed"}),
            )
            .await;
        assert_eq!(batch["accepted"], 1, "{batch}");
        completed += (app.job(&id).await["status"] == "completed") as usize;
    }
    completed
}

#[actix_web::test]
async fn redis_going_away_never_touches_job_dispatch() {
    let mut redis = RedisServer::start().await;
    let collector = OtlpReceiver::start();
    let app = traced_app(settings(&redis, &collector, "outage")).await;
    let mut conn = redis.connection().await;
    publish(&mut conn, &python_span(1, 0, None, true)).await;
    within(WAIT, "the span exported", || {
        let exported = collector.spans().len();
        async move { exported == 1 }
    })
    .await;
    assert_eq!(dispatch(&app, 10).await, 10);

    let connected = |text: &str| value(text, "mesh_registry_trace_redis_connected", &[]);
    assert_eq!(connected(&scrape(&app).await), Some(1.0));

    redis.kill();
    assert_eq!(dispatch(&app, 20).await, 20, "Redis down: jobs still move");
    within(WAIT, "the status to say Redis is gone", || async {
        let status: Value = app.get("/trace/status").await.json().await.unwrap();
        status["consumer"]["connection_state"] != "connected"
            && status["consumer"]["last_error"].is_string()
    })
    .await;
    let reconnects = |text: &str| value(text, "mesh_registry_trace_redis_reconnects_total", &[]);
    within(WAIT, "the attempts to reconnect counted", || async {
        let text = scrape(&app).await;
        connected(&text) == Some(0.0) && reconnects(&text) >= Some(1.0)
    })
    .await;

    // A registry whose Redis is not there at all starts and serves.
    let lonely = traced_app(settings(&redis, &collector, "outage")).await;
    assert_eq!(dispatch(&lonely, 5).await, 5);
    within(WAIT, "the failed connection in the status", || async {
        let status: Value = lonely.get("/trace/status").await.json().await.unwrap();
        status["consumer"]["connection_state"] == "failed"
            && status["consumer"]["retry_count"].as_u64() >= Some(1)
    })
    .await;
    assert_eq!(app.get("/health").await.status(), 200);
    drop((app, lonely));
    collector.stop().await;
}

/// A fake Tempo: `/api/traces/{id}` answers the trace it was given for that id (Tempo's JSON),
/// 500 for `500…`, 404 otherwise; counts the requests.
struct FakeTempo {
    url: String,
    traces: Arc<Mutex<HashMap<String, Value>>>,
    requests: Arc<AtomicUsize>,
    server: actix_web::dev::ServerHandle,
}

impl FakeTempo {
    fn start() -> FakeTempo {
        FakeTempo::start_on(None)
    }

    /// Over HTTPS (`server_config`).
    fn start_tls(tls: rustls::ServerConfig) -> FakeTempo {
        FakeTempo::start_on(Some(tls))
    }

    fn start_on(tls: Option<rustls::ServerConfig>) -> FakeTempo {
        let traces: Arc<Mutex<HashMap<String, Value>>> = Arc::default();
        let requests: Arc<AtomicUsize> = Arc::default();
        let (held, counted) = (traces.clone(), requests.clone());
        let server = HttpServer::new(move || {
            let (held, counted) = (held.clone(), counted.clone());
            App::new().route(
                "/api/traces/{id}",
                web::get().to(move |id: web::Path<String>| {
                    let (held, counted) = (held.clone(), counted.clone());
                    async move {
                        counted.fetch_add(1, Ordering::SeqCst);
                        if id.starts_with("500") {
                            return HttpResponse::InternalServerError().body("tempo is unwell");
                        }
                        match held.lock().unwrap().get(id.as_str()) {
                            Some(trace) => HttpResponse::Ok().json(trace),
                            None => HttpResponse::NotFound().body("trace not found"),
                        }
                    }
                }),
            )
        })
        .workers(1);
        let (scheme, port, handle) = crate::helpers::serve_in_test!(server, tls);
        FakeTempo {
            url: format!("{scheme}://127.0.0.1:{port}"),
            traces,
            requests,
            server: handle,
        }
    }

    /// Holds `spans` (as the collector got them) as Tempo's `/api/traces` JSON: one batch per
    /// service, ids in base64 as Tempo's JSON has them.
    fn hold(&self, id: &str, spans: &[(String, Span)]) {
        let b64 = |bytes: &[u8]| base64::engine::general_purpose::STANDARD.encode(bytes);
        let mut services: Vec<&String> = spans.iter().map(|(s, _)| s).collect();
        services.sort();
        services.dedup();
        let batches: Vec<Value> = services
            .into_iter()
            .map(|service| {
                let spans: Vec<Value> = spans
                    .iter()
                    .filter(|(s, _)| s == service)
                    .map(|(_, span)| {
                        let status = span.status.clone().unwrap_or_default();
                        json!({
                            "traceId": b64(&span.trace_id),
                            "spanId": b64(&span.span_id),
                            "parentSpanId": b64(&span.parent_span_id),
                            "name": span.name,
                            "kind": "SPAN_KIND_SERVER",
                            "startTimeUnixNano": span.start_time_unix_nano.to_string(),
                            "endTimeUnixNano": span.end_time_unix_nano.to_string(),
                            "attributes": span.attributes.iter().map(|a| json!({
                                "key": a.key,
                                "value": {"stringValue": otlp_attribute(std::slice::from_ref(a), &a.key)},
                            })).collect::<Vec<_>>(),
                            "status": match status.code {
                                2 => json!({"code": "STATUS_CODE_ERROR", "message": status.message}),
                                _ => json!({}),
                            },
                        })
                    })
                    .collect();
                json!({
                    "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": service}}]},
                    "scopeSpans": [{"scope": {"name": format!("mcp-mesh/{service}"), "version": "1.0.0"}, "spans": spans}],
                })
            })
            .collect();
        self.traces
            .lock()
            .unwrap()
            .insert(id.to_owned(), json!({"batches": batches}));
    }
}

#[actix_web::test]
async fn trace_by_id_is_read_back_from_tempo() {
    let redis = RedisServer::start().await;
    let collector = OtlpReceiver::start();
    let tempo = FakeTempo::start();
    let mut pipeline = settings(&redis, &collector, "tempo");
    pipeline.tempo_url = tempo.url.clone();
    let app = traced_app(pipeline).await;
    let mut conn = redis.connection().await;
    // A trace across two agents, its third span failing.
    publish_trace(&mut conn, 42, 4, Some(2)).await;
    within(WAIT, "the trace exported", || {
        let exported = collector.spans().len();
        async move { exported == 4 }
    })
    .await;
    tempo.hold(&trace_id(42), &collector.spans());

    let response = app.get(&format!("/trace/{}", trace_id(42))).await;
    assert_eq!(response.status(), 200);
    let trace: Value = response.json().await.unwrap();
    assert_eq!(trace["TraceID"], trace_id(42));
    assert_eq!(trace["SpanCount"], 4);
    assert_eq!(trace["AgentCount"], 2);
    assert_eq!(trace["Agents"], json!(["agent-0", "agent-1"]));
    assert_eq!(trace["Success"], false);
    assert_eq!(trace["StartTime"], "2023-11-14T22:13:20Z");
    assert_eq!(trace["EndTime"], "2023-11-14T22:13:20.387Z");
    assert_eq!(trace["Duration"], 387_000_000);
    let spans = trace["Spans"].as_array().unwrap();
    let operations: Vec<&str> = spans
        .iter()
        .map(|s| s["Operation"].as_str().unwrap())
        .collect();
    assert_eq!(
        operations,
        ["tool_0", "tool_1", "tool_2", "tool_3"],
        "by start time"
    );
    let root = &spans[0];
    assert_eq!(root["ParentSpan"], Value::Null);
    assert_eq!(root["AgentName"], "agent-0");
    assert_eq!(root["AgentID"], "agent-0-1234");
    assert_eq!(root["IPAddress"], "10.1.2.3");
    assert_eq!(root["Runtime"], "python");
    assert_eq!(root["DurationMS"], 12);
    assert_eq!(root["Success"], true);
    assert_eq!(root["ErrorMessage"], Value::Null);
    assert_eq!(spans[1]["ParentSpan"], root["SpanID"]);
    assert_eq!(spans[2]["Success"], false);
    assert_eq!(spans[2]["ErrorMessage"], "boom");

    // Unknown to Tempo, Tempo failing, and ids no Tempo could hold: the reference's 404.
    let asked = tempo.requests.load(Ordering::SeqCst);
    for id in [
        "0123456789abcdef0123456789abcdef",
        "500456789abcdef0123456789abcdef0",
        "not-hex",
        "..%2F..%2Fadmin",
    ] {
        let response = app.get(&format!("/trace/{id}")).await;
        assert_eq!(response.status(), 404, "{id}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"], "trace not found", "{id}");
    }
    assert_eq!(
        tempo.requests.load(Ordering::SeqCst),
        asked + 2,
        "bad ids never reach Tempo"
    );
    drop(app);
    tempo.server.stop(true).await;
    collector.stop().await;
}

/// The same requests to the reference's real registry (tracing on, the same Redis and Tempo)
/// and to ours: the same answers, but for what names the process (its consumer's name).
#[actix_web::test]
async fn trace_routes_answer_as_the_reference_does() {
    let redis = RedisServer::start().await;
    let collector = OtlpReceiver::start();
    let tempo = FakeTempo::start();
    let mut pipeline = settings(&redis, &collector, "differential");
    pipeline.tempo_url = tempo.url.clone();
    let app = traced_app(pipeline).await;
    let directory = std::env::temp_dir().join(format!(
        "mesh-registry-go-trace-{}",
        uuid::Uuid::new_v4().simple()
    ));
    std::fs::create_dir_all(&directory).unwrap();
    let (redis_url, endpoint) = (redis.url(), collector.endpoint());
    let reference = GoRegistry::start_with(
        &directory,
        None,
        &[
            ("MCP_MESH_DISTRIBUTED_TRACING_ENABLED", "true"),
            ("REDIS_URL", &redis_url),
            ("MCP_MESH_TRACE_CONSUMER_GROUP", "differential"),
            ("TELEMETRY_ENDPOINT", &endpoint),
            ("TELEMETRY_PROTOCOL", "http"),
            ("TEMPO_URL", &tempo.url),
        ],
    )
    .await;
    let mut conn = redis.connection().await;
    publish_trace(&mut conn, 9, 3, Some(1)).await;
    within(WAIT, "the trace exported", || {
        let exported = collector.spans().len();
        async move { exported >= 3 }
    })
    .await;
    // Tempo holds the trace as our export sent it (the reference's HTTP export renames spans).
    let ours: Vec<(String, Span)> = collector
        .spans()
        .into_iter()
        .filter(|(_, s)| hex(&s.trace_id) == trace_id(9))
        .take(3)
        .collect();
    tempo.hold(&trace_id(9), &ours);
    for path in [
        format!("/trace/{}", trace_id(9)),
        "/trace/0123456789abcdef0123456789abcdef".to_owned(),
        "/trace/stats".to_owned(),
    ] {
        let (status, theirs) = reference.send("GET", &path, None).await;
        let response = app.get(&path).await;
        assert_eq!(response.status().as_u16(), status, "{path}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body, theirs, "{path}");
    }
    within(WAIT, "the reference reading too", || async {
        let (_, theirs) = reference.send("GET", "/trace/status", None).await;
        theirs["consumer"]["consuming"] == true
    })
    .await;
    for path in ["/trace/status", "/trace/info"] {
        let (_, mut theirs) = reference.send("GET", path, None).await;
        let mut body: Value = app.get(path).await.json().await.unwrap();
        for answer in [&mut theirs, &mut body] {
            let consumer = answer["consumer"].as_object_mut().expect("consumer");
            // What differs by process and by moment: its name, the stream's figures.
            for key in [
                "consumer_name",
                "stream_length",
                "stream_last_entry_id",
                "group_pending",
                "group_last_delivered_id",
            ] {
                assert!(consumer.remove(key).is_some(), "{path}: {key} in {answer}");
            }
        }
        assert_eq!(body, theirs, "{path}");
    }
    reference.stop();
    drop(app);
    let _ = std::fs::remove_dir_all(&directory);
    tempo.server.stop(true).await;
    collector.stop().await;
}

/// OTLP over gRPC, the reference's default protocol, to a collector's `TraceService`.
#[actix_web::test]
async fn spans_go_out_over_grpc_by_default() {
    let redis = RedisServer::start().await;
    let collector = GrpcCollector::start().await;
    let unused = OtlpReceiver::start();
    let mut pipeline = settings(&redis, &unused, "grpc");
    pipeline.endpoint = collector.endpoint.clone();
    pipeline.protocol = TelemetryProtocol::Grpc;
    pipeline.protocol_name = "grpc".into();
    let app = traced_app(pipeline).await;
    let mut conn = redis.connection().await;
    publish_trace(&mut conn, 5, 3, None).await;
    within(WAIT, "3 spans over gRPC", || {
        let exported = collector.spans().len();
        async move { exported >= 3 }
    })
    .await;
    let spans = collector.spans();
    assert_eq!(spans.len(), 3);
    let (service, root) = spans
        .iter()
        .find(|(_, s)| hex(&s.span_id) == span_id(5, 0))
        .expect("the root span");
    assert_eq!(
        (service.as_str(), root.name.as_str()),
        ("agent-0", "tool_0")
    );
    assert!(unused.spans().is_empty());
    drop(app);
    collector.stop();
    unused.stop().await;
}

/// Certificates for the TLS tests, in a directory of the test's own: a CA, a server certificate
/// for 127.0.0.1 (Redis, the collector and Tempo all serve it), and a client certificate for the
/// registry (Redis asks for one).
struct Pki {
    directory: std::path::PathBuf,
    ca: TestCa,
    server: Issued,
    client: Issued,
}

impl Pki {
    fn new() -> Pki {
        let directory = std::env::temp_dir().join(format!(
            "mesh-registry-trace-tls-{}",
            uuid::Uuid::new_v4().simple()
        ));
        let ca = TestCa::new(&directory, "pipeline-ca");
        let server = ca.server("server", &["127.0.0.1", "localhost"]);
        let client = ca.client("registry", "registry");
        Pki {
            directory,
            ca,
            server,
            client,
        }
    }

    /// Trusting this CA (and, for Redis, presenting the registry's certificate).
    fn trusted(&self, with_identity: bool) -> ClientTls {
        ClientTls {
            ca: Some(self.ca.certificate.clone()),
            identity: with_identity
                .then(|| (self.client.certificate.clone(), self.client.key.clone())),
            skip_verify: false,
        }
    }
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.directory);
    }
}

/// Redis over `rediss://` (with a client certificate), the collector over HTTPS as the reference
/// reaches it (`host:port`, turned to TLS by `TELEMETRY_TLS_CA`), Tempo over HTTPS: the spans go
/// through and the trace comes back.
#[actix_web::test]
async fn the_pipeline_speaks_tls_to_redis_the_collector_and_tempo() {
    let pki = Pki::new();
    let redis = RedisServer::start_tls(&pki.server, &pki.ca.certificate).await;
    let collector = OtlpReceiver::start_tls(server_config(&pki.server, &[]));
    let tempo = FakeTempo::start_tls(server_config(&pki.server, &[]));
    let mut pipeline = settings(&redis, &collector, "tls");
    pipeline.redis_url = redis.tls_url();
    pipeline.redis_tls = pki.trusted(true);
    assert!(!collector.endpoint().contains("://"));
    pipeline.telemetry_tls = pki.trusted(false);
    pipeline.tempo_url = tempo.url.clone();
    pipeline.tempo_tls = pki.trusted(false);
    let app = traced_app(pipeline).await;
    let mut conn = redis.connection().await;
    publish_trace(&mut conn, 77, 3, None).await;
    within(WAIT, "3 spans exported over TLS", || {
        let exported = collector.spans().len();
        async move { exported == 3 }
    })
    .await;
    let status: Value = app.get("/trace/status").await.json().await.unwrap();
    assert_eq!(status["consumer"]["connection_state"], "connected");
    within(WAIT, "every entry acknowledged", || {
        let mut conn = conn.clone();
        async move { pending(&mut conn, "tls").await == 0 }
    })
    .await;
    tempo.hold(&trace_id(77), &collector.spans());
    let response = app.get(&format!("/trace/{}", trace_id(77))).await;
    assert_eq!(response.status(), 200);
    let trace: Value = response.json().await.unwrap();
    assert_eq!(trace["SpanCount"], 3);
    drop(app);
    tempo.server.stop(true).await;
    collector.stop().await;
}

/// OTLP over gRPC to an `https://` endpoint: HTTP/2 over TLS.
#[actix_web::test]
async fn spans_go_out_over_grpc_with_tls() {
    let pki = Pki::new();
    let redis = RedisServer::start().await;
    let collector = GrpcCollector::start_tls(server_config(&pki.server, &[b"h2"])).await;
    let unused = OtlpReceiver::start();
    let mut pipeline = settings(&redis, &unused, "grpc-tls");
    pipeline.endpoint = format!("https://{}", collector.endpoint);
    pipeline.protocol = TelemetryProtocol::Grpc;
    pipeline.protocol_name = "grpc".into();
    pipeline.telemetry_tls = pki.trusted(false);
    let app = traced_app(pipeline).await;
    let mut conn = redis.connection().await;
    for span in 0..2 {
        publish(&mut conn, &python_span(6, span, None, true)).await;
    }
    within(WAIT, "2 spans over gRPC with TLS", || {
        let exported = collector.spans().len();
        async move { exported >= 2 }
    })
    .await;
    assert_eq!(collector.spans().len(), 2);
    drop(app);
    collector.stop();
    unused.stop().await;
}

/// A registry that does not trust the certificates it is shown (it knows the public web's CAs
/// only): Redis's handshake fails and the status (as the log) says why, the collector gets no
/// span and Tempo no question; jobs move all the while.
#[actix_web::test]
async fn untrusted_certificates_are_reported_and_never_touch_job_dispatch() {
    let pki = Pki::new();
    let redis = RedisServer::start_tls(&pki.server, &pki.ca.certificate).await;
    let collector = OtlpReceiver::start_tls(server_config(&pki.server, &[]));
    let tempo = FakeTempo::start_tls(server_config(&pki.server, &[]));
    let mut pipeline = settings(&redis, &collector, "untrusted");
    pipeline.redis_url = redis.tls_url();
    pipeline.endpoint = collector.url.clone();
    pipeline.tempo_url = tempo.url.clone();
    // The same collector behind a Redis that works: the spans are read, never exported.
    let mut readable = pipeline.clone();
    readable.redis_url = redis.url();
    let exporting = traced_app(readable).await;
    let app = traced_app(pipeline).await;
    let mut conn = redis.connection().await;
    publish(&mut conn, &python_span(3, 0, None, true)).await;
    assert_eq!(dispatch(&app, 5).await, 5);
    within(WAIT, "the failed handshake in the status", || async {
        let status: Value = app.get("/trace/status").await.json().await.unwrap();
        let error = status["consumer"]["last_error"]
            .as_str()
            .unwrap_or_default();
        status["consumer"]["connection_state"] == "failed"
            && error.contains("invalid peer certificate")
            && error.contains("UnknownIssuer")
    })
    .await;
    assert_eq!(dispatch(&app, 5).await, 5, "jobs move while TLS fails");
    tempo.hold(&trace_id(1), &[]);
    let response = app.get(&format!("/trace/{}", trace_id(1))).await;
    assert_eq!(response.status(), 404, "an untrusted Tempo is not read");
    assert_eq!(tempo.requests.load(Ordering::SeqCst), 0);
    let text = scrape(&app).await;
    assert_eq!(
        value(&text, "mesh_registry_trace_redis_connected", &[]),
        Some(0.0)
    );
    assert_eq!(app.get("/health").await.status(), 200);
    within(WAIT, "the export failing", || async {
        let text = scrape(&exporting).await;
        let labels = [("outcome", "unavailable")];
        value(
            &text,
            "mesh_registry_trace_export_duration_seconds_count",
            &labels,
        ) >= Some(1.0)
    })
    .await;
    assert_eq!(dispatch(&exporting, 5).await, 5);
    assert!(collector.spans().is_empty());
    assert_eq!(
        pending(&mut conn, "untrusted").await,
        1,
        "the span waits in Redis"
    );
    drop((app, exporting));
    tempo.server.stop(true).await;
    collector.stop().await;
}
