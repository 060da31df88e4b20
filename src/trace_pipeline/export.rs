//! OTLP export of the spans read from the stream: gRPC (the reference's default) or HTTP with
//! protobuf bodies, to `TELEMETRY_ENDPOINT` (`host:port`, no scheme, as the reference takes it).

use std::time::Duration;

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message;
use tonic::transport::Channel;

use crate::config::TelemetryProtocol;

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
    /// The exporter for `endpoint`; nothing is connected yet (a collector that is down only
    /// shows in the first export).
    pub fn new(endpoint: &str, protocol: TelemetryProtocol) -> Result<Exporter, String> {
        let base = match endpoint.contains("://") {
            true => endpoint.trim_end_matches('/').to_owned(),
            false => format!("http://{}", endpoint.trim_end_matches('/')),
        };
        match protocol {
            TelemetryProtocol::Http => Ok(Exporter::Http {
                client: reqwest::Client::builder()
                    .timeout(EXPORT_TIMEOUT)
                    .build()
                    .map_err(|e| e.to_string())?,
                url: format!("{base}/v1/traces"),
            }),
            TelemetryProtocol::Grpc => {
                let channel = Channel::from_shared(base)
                    .map_err(|e| e.to_string())?
                    .connect_timeout(EXPORT_TIMEOUT)
                    .timeout(EXPORT_TIMEOUT)
                    .connect_lazy();
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
                    .map_err(|e| ExportError::Retry(format!("POST {url}: {e}")))?;
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
