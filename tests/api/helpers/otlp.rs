//! An OTLP receiver on a free port, as a collector: over HTTP (the protobuf of `/v1/traces`) or
//! gRPC (the collector's `TraceService`), plain or over TLS, it decodes every export it gets and
//! keeps it; over HTTP it can be told to refuse the next exports with 503, as a collector that
//! is down or overloaded.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use actix_web::http::StatusCode;
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
    /// `http://127.0.0.1:<port>`, or `https://` over TLS.
    pub url: String,
    exports: Arc<Mutex<Vec<ExportTraceServiceRequest>>>,
    /// The statuses the next exports are answered with, instead of taking them.
    refusals: Arc<Mutex<VecDeque<StatusCode>>>,
    refused: Arc<AtomicUsize>,
    server: actix_web::dev::ServerHandle,
}

impl OtlpReceiver {
    pub fn start() -> OtlpReceiver {
        OtlpReceiver::start_on(None)
    }

    /// Over TLS (`server_config`).
    pub fn start_tls(tls: rustls::ServerConfig) -> OtlpReceiver {
        OtlpReceiver::start_on(Some(tls))
    }

    fn start_on(tls: Option<rustls::ServerConfig>) -> OtlpReceiver {
        let exports: Arc<Mutex<Vec<ExportTraceServiceRequest>>> = Arc::default();
        let refusals: Arc<Mutex<VecDeque<StatusCode>>> = Arc::default();
        let refused: Arc<AtomicUsize> = Arc::default();
        let (store, to_refuse, counted) = (exports.clone(), refusals.clone(), refused.clone());
        let server = HttpServer::new(move || {
            let (store, to_refuse, counted) = (store.clone(), to_refuse.clone(), counted.clone());
            App::new().route(
                "/v1/traces",
                web::post().to(move |body: web::Bytes| {
                    let (store, to_refuse, counted) =
                        (store.clone(), to_refuse.clone(), counted.clone());
                    async move {
                        let refusal = to_refuse.lock().unwrap().pop_front();
                        if let Some(status) = refusal {
                            counted.fetch_add(1, Ordering::SeqCst);
                            return HttpResponse::new(status);
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
        .workers(1);
        let (scheme, port, handle) = super::serve_in_test!(server, tls);
        OtlpReceiver {
            url: format!("{scheme}://127.0.0.1:{port}"),
            exports,
            refusals,
            refused,
            server: handle,
        }
    }

    /// `127.0.0.1:<port>`, as `TELEMETRY_ENDPOINT` takes it.
    pub fn endpoint(&self) -> String {
        let (_, endpoint) = self.url.split_once("://").expect("a URL");
        endpoint.to_owned()
    }

    /// Every span received so far, with the `service.name` of its resource.
    pub fn spans(&self) -> Vec<(String, Span)> {
        spans_of(&self.exports)
    }

    /// Answers the next `exports` exports with 503 (try again later).
    pub fn refuse_next(&self, exports: usize) {
        let mut refusals = self.refusals.lock().unwrap();
        refusals.extend(std::iter::repeat_n(
            StatusCode::SERVICE_UNAVAILABLE,
            exports,
        ));
    }

    /// Answers the next `exports` exports with 400 (never: the batch is refused for good).
    pub fn reject_next(&self, exports: usize) {
        let mut refusals = self.refusals.lock().unwrap();
        refusals.extend(std::iter::repeat_n(StatusCode::BAD_REQUEST, exports));
    }

    /// How many exports were refused.
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
        GrpcCollector::start_on(None).await
    }

    /// Over TLS (`server_config`, offering `h2`): the endpoint is still `host:port`.
    pub async fn start_tls(tls: rustls::ServerConfig) -> GrpcCollector {
        GrpcCollector::start_on(Some(tls)).await
    }

    async fn start_on(tls: Option<rustls::ServerConfig>) -> GrpcCollector {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let endpoint = listener.local_addr().unwrap().to_string();
        let exports: Arc<Mutex<Vec<ExportTraceServiceRequest>>> = Arc::default();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let stopped = async move {
            let _ = stopped.await;
        };
        let server = tonic::transport::Server::builder()
            .add_service(TraceServiceServer::new(Collect(exports.clone())));
        match tls {
            None => actix_web::rt::spawn(server.serve_with_incoming_shutdown(
                tonic::transport::server::TcpIncoming::from(listener),
                stopped,
            )),
            Some(tls) => actix_web::rt::spawn(
                server.serve_with_incoming_shutdown(tls_incoming(listener, tls), stopped),
            ),
        };
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

/// The connections `listener` accepts, past their TLS handshake; a client whose handshake fails
/// (it does not trust this certificate) is dropped and the next one awaited.
fn tls_incoming(
    listener: tokio::net::TcpListener,
    tls: rustls::ServerConfig,
) -> impl futures_util::Stream<Item = std::io::Result<TlsConnection>> {
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
    futures_util::stream::unfold(listener, move |listener| {
        let acceptor = acceptor.clone();
        async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                if let Ok(tls) = acceptor.accept(tcp).await {
                    return Some((Ok(TlsConnection(tls)), listener));
                }
            }
        }
    })
}

/// A TLS connection tonic can serve (tonic knows TLS streams only with its own TLS features,
/// which the registry does not build with).
struct TlsConnection(tokio_rustls::server::TlsStream<tokio::net::TcpStream>);

impl tonic::transport::server::Connected for TlsConnection {
    type ConnectInfo = ();

    fn connect_info(&self) {}
}

impl tokio::io::AsyncRead for TlsConnection {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for TlsConnection {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
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
