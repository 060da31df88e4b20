//! An OTLP receiver on a free port, as a collector: over HTTP (the protobuf of `/v1/traces`) or
//! gRPC (the collector's `TraceService`), it decodes every export it gets and keeps it; over HTTP
//! it can be told to refuse the next exports with 503, as a collector that is down or
//! overloaded.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use actix_web::{web, App, HttpResponse, HttpServer};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;

pub struct OtlpReceiver {
    /// `http://127.0.0.1:<port>`
    pub url: String,
    exports: Arc<Mutex<Vec<ExportTraceServiceRequest>>>,
    refuse: Arc<AtomicUsize>,
    refused: Arc<AtomicUsize>,
    server: actix_web::dev::ServerHandle,
}

impl OtlpReceiver {
    pub fn start() -> OtlpReceiver {
        let exports: Arc<Mutex<Vec<ExportTraceServiceRequest>>> = Arc::default();
        let refuse: Arc<AtomicUsize> = Arc::default();
        let refused: Arc<AtomicUsize> = Arc::default();
        let (store, to_refuse, counted) = (exports.clone(), refuse.clone(), refused.clone());
        let server = HttpServer::new(move || {
            let (store, to_refuse, counted) = (store.clone(), to_refuse.clone(), counted.clone());
            App::new().route(
                "/v1/traces",
                web::post().to(move |body: web::Bytes| {
                    let (store, to_refuse, counted) =
                        (store.clone(), to_refuse.clone(), counted.clone());
                    async move {
                        let refusing = to_refuse
                            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                            .is_ok();
                        if refusing {
                            counted.fetch_add(1, Ordering::SeqCst);
                            return HttpResponse::ServiceUnavailable().finish();
                        }
                        let export =
                            ExportTraceServiceRequest::decode(body).expect("OTLP protobuf");
                        store.lock().unwrap().push(export);
                        HttpResponse::Ok()
                            .content_type("application/x-protobuf")
                            .finish()
                    }
                }),
            )
        })
        .workers(1)
        .bind(("127.0.0.1", 0))
        .expect("bind");
        let port = server.addrs()[0].port();
        let server = server.run();
        let handle = server.handle();
        actix_web::rt::spawn(server);
        OtlpReceiver {
            url: format!("http://127.0.0.1:{port}"),
            exports,
            refuse,
            refused,
            server: handle,
        }
    }

    /// `127.0.0.1:<port>`, as `TELEMETRY_ENDPOINT` takes it.
    pub fn endpoint(&self) -> String {
        self.url.trim_start_matches("http://").to_owned()
    }

    /// Every span received so far, with the `service.name` of its resource.
    pub fn spans(&self) -> Vec<(String, Span)> {
        spans_of(&self.exports)
    }

    /// Answers the next `exports` exports with 503.
    pub fn refuse_next(&self, exports: usize) {
        self.refuse.store(exports, Ordering::SeqCst);
    }

    /// How many exports were answered 503.
    pub fn refused(&self) -> usize {
        self.refused.load(Ordering::SeqCst)
    }

    pub async fn stop(self) {
        self.server.stop(true).await;
    }
}

/// Every span of `exports`, with the `service.name` of its resource.
fn spans_of(exports: &Mutex<Vec<ExportTraceServiceRequest>>) -> Vec<(String, Span)> {
    let exports = exports.lock().unwrap();
    let mut spans = Vec::new();
    for resource_spans in exports.iter().flat_map(|e| &e.resource_spans) {
        let service = resource_spans
            .resource
            .as_ref()
            .and_then(|r| attribute(&r.attributes, "service.name"))
            .unwrap_or_default();
        for span in resource_spans.scope_spans.iter().flat_map(|s| &s.spans) {
            spans.push((service.clone(), span.clone()));
        }
    }
    spans
}

/// The OTLP/gRPC collector: the reference's default protocol.
pub struct GrpcCollector {
    /// `127.0.0.1:<port>`, as `TELEMETRY_ENDPOINT` takes it.
    pub endpoint: String,
    exports: Arc<Mutex<Vec<ExportTraceServiceRequest>>>,
    stop: tokio::sync::oneshot::Sender<()>,
}

struct Collect(Arc<Mutex<Vec<ExportTraceServiceRequest>>>);

#[tonic::async_trait]
impl TraceService for Collect {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        self.0.lock().unwrap().push(request.into_inner());
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

impl GrpcCollector {
    pub async fn start() -> GrpcCollector {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let endpoint = listener.local_addr().unwrap().to_string();
        let exports: Arc<Mutex<Vec<ExportTraceServiceRequest>>> = Arc::default();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tonic::transport::Server::builder()
            .add_service(TraceServiceServer::new(Collect(exports.clone())))
            .serve_with_incoming_shutdown(
                tonic::transport::server::TcpIncoming::from(listener),
                async move {
                    let _ = stopped.await;
                },
            );
        actix_web::rt::spawn(server);
        GrpcCollector {
            endpoint,
            exports,
            stop,
        }
    }

    pub fn spans(&self) -> Vec<(String, Span)> {
        spans_of(&self.exports)
    }

    pub fn stop(self) {
        let _ = self.stop.send(());
    }
}

/// The value of attribute `key`, as text.
pub fn attribute(attributes: &[KeyValue], key: &str) -> Option<String> {
    let value = attributes.iter().find(|a| a.key == key)?.value.as_ref()?;
    Some(match value.value.as_ref()? {
        AnyValue::StringValue(s) => s.clone(),
        AnyValue::IntValue(i) => i.to_string(),
        other => format!("{other:?}"),
    })
}
