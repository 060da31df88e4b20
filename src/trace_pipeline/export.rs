//! OTLP export of the spans read from the stream: gRPC (the reference's default) or HTTP with
//! protobuf bodies, to `TELEMETRY_ENDPOINT` (`host:port`, no scheme, as the reference takes it;
//! or a URL). Over TLS when the endpoint says `https://`, or when a `TELEMETRY_TLS_*` variable
//! is set (the reference's switch).

use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::TokioIo;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message;
use tonic::transport::{Channel, Endpoint, Uri};

use crate::config::{ClientTls, TelemetryProtocol};
use crate::telemetry::error_chain;

/// One export may take this long before it counts as failed (and is retried).
const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);

/// Why an export did not go through.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// The collector is down, slow or overloaded: try the same spans again later.
    #[error("{0}")]
    Retry(String),
    /// The collector refused these spans for good: retrying cannot help.
    #[error("{0}")]
    Rejected(String),
}

#[derive(Clone)]
pub enum Exporter {
    Http {
        client: reqwest::Client,
        url: String,
    },
    Grpc(TraceServiceClient<Channel>),
}

impl Exporter {
    /// The exporter for `endpoint`; nothing is connected yet (a collector that is down, or
    /// whose certificate is not trusted, only shows in the first export).
    pub fn new(
        endpoint: &str,
        protocol: TelemetryProtocol,
        tls: &ClientTls,
    ) -> Result<Exporter, String> {
        let endpoint = endpoint.trim_end_matches('/');
        let base = match (endpoint.contains("://"), tls.given()) {
            (true, _) => endpoint.to_owned(),
            (false, true) => format!("https://{endpoint}"),
            (false, false) => format!("http://{endpoint}"),
        };
        let tls = match base.to_ascii_lowercase().starts_with("https://") {
            true => Some(super::tls::config(tls)?),
            false => None,
        };
        match protocol {
            TelemetryProtocol::Http => {
                let client = reqwest::Client::builder().timeout(EXPORT_TIMEOUT);
                let client = match tls {
                    Some(tls) => client.use_preconfigured_tls(tls),
                    None => client,
                };
                Ok(Exporter::Http {
                    client: client.build().map_err(|e| e.to_string())?,
                    url: format!("{base}/v1/traces"),
                })
            }
            TelemetryProtocol::Grpc => {
                let endpoint = Endpoint::from_shared(base)
                    .map_err(|e| e.to_string())?
                    .connect_timeout(EXPORT_TIMEOUT)
                    .timeout(EXPORT_TIMEOUT);
                let channel = match tls {
                    None => endpoint.connect_lazy(),
                    Some(mut tls) => {
                        // gRPC is HTTP/2: say so in the handshake, as collectors expect.
                        tls.alpn_protocols = vec![b"h2".to_vec()];
                        endpoint.connect_with_connector_lazy(tls_connector(Arc::new(tls)))
                    }
                };
                Ok(Exporter::Grpc(TraceServiceClient::new(channel)))
            }
        }
    }

    pub async fn export(&self, request: ExportTraceServiceRequest) -> Result<(), ExportError> {
        match self {
            Exporter::Http { client, url } => {
                let response = client
                    .post(url)
                    .header("content-type", "application/x-protobuf")
                    .body(request.encode_to_vec())
                    .send()
                    .await
                    .map_err(|e| ExportError::Retry(format!("POST {url}: {}", error_chain(&e))))?;
                let status = response.status();
                match status.as_u16() {
                    200..=299 => Ok(()),
                    // OTLP/HTTP: these may succeed later; any other 4xx never will.
                    429 | 502 | 503 | 504 => Err(ExportError::Retry(format!(
                        "POST {url}: the collector answered {status}"
                    ))),
                    400..=499 => Err(ExportError::Rejected(format!(
                        "POST {url}: the collector answered {status}"
                    ))),
                    _ => Err(ExportError::Retry(format!(
                        "POST {url}: the collector answered {status}"
                    ))),
                }
            }
            Exporter::Grpc(client) => {
                let outcome = client.clone().export(request).await;
                match outcome {
                    Ok(_) => Ok(()),
                    Err(status) if status.code() == tonic::Code::InvalidArgument => Err(
                        ExportError::Rejected(format!("OTLP/gRPC export: {}", status.message())),
                    ),
                    Err(status) => Err(ExportError::Retry(format!(
                        "OTLP/gRPC export: {:?}: {}",
                        status.code(),
                        status.message()
                    ))),
                }
            }
        }
    }
}

/// The gRPC channel's connector to an `https://` collector: TCP, then the TLS handshake.
fn tls_connector(
    tls: Arc<rustls::ClientConfig>,
) -> impl tower::Service<
    Uri,
    Response = TokioIo<tokio_rustls::client::TlsStream<tokio::net::TcpStream>>,
    Error = std::io::Error,
    Future = impl Send,
> + Send
       + Clone {
    tower::service_fn(move |uri: Uri| {
        let tls = tls.clone();
        async move {
            let host = uri.host().unwrap_or_default().trim_matches(['[', ']']);
            let port = uri.port_u16().unwrap_or(443);
            super::tls::connect(tls, host, port).await.map(TokioIo::new)
        }
    })
}
