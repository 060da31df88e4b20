//! `GET /health`: the process is serving (the reference's body, so meshctl's checks pass): the
//! liveness probe. It fails (503) when an actor or the embedded store's thread has stopped, so
//! an orchestrator restarts the replica. `GET /ready`: the database answers: the readiness probe. A draining replica
//! stays ready, because agents must still renew leases and complete jobs through it.

use actix_web::web::Data;
use actix_web::HttpResponse;

use crate::service::Registry;
use crate::wire::{rfc3339_now, HealthResponse, ReadyResponse};

/// The body, and the same facts in headers (`X-Health-Status`, `X-Service-Version`,
/// `X-Uptime-Seconds`), which is all a `HEAD` gets.
pub async fn health(registry: Data<Registry>) -> HttpResponse {
    let alive = registry.alive();
    let status = if alive { "healthy" } else { "unhealthy" };
    let uptime_seconds = registry.uptime().as_secs();
    let version = env!("CARGO_PKG_VERSION");
    let mut response = match alive {
        true => HttpResponse::Ok(),
        false => HttpResponse::ServiceUnavailable(),
    };
    response
        .insert_header(("X-Health-Status", status))
        .insert_header(("X-Service-Version", version))
        .insert_header(("X-Uptime-Seconds", uptime_seconds.to_string()))
        .json(HealthResponse {
            service: "mcp-mesh-registry",
            status,
            timestamp: rfc3339_now(),
            uptime_seconds,
            version,
        })
}

pub async fn ready(registry: Data<Registry>) -> HttpResponse {
    match registry.ready().await {
        (backend, Ok(())) => HttpResponse::Ok().json(ReadyResponse {
            status: "ready",
            backend,
            error: None,
        }),
        (backend, Err(error)) => {
            tracing::warn!(%error, "not ready: the database does not answer");
            HttpResponse::ServiceUnavailable().json(ReadyResponse {
                status: "unavailable",
                backend,
                error: Some(error.to_string()),
            })
        }
    }
}
