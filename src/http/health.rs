//! `GET /health`: the process is serving (the reference's body, so meshctl's checks pass): the
//! liveness probe. `GET /ready`: the database answers: the readiness probe. A draining replica
//! stays ready, because agents must still renew leases and complete jobs through it.

use actix_web::web::Data;
use actix_web::HttpResponse;

use super::AppState;
use crate::wire::{rfc3339_now, HealthResponse, ReadyResponse};

pub async fn health(state: Data<AppState>) -> HttpResponse {
    HttpResponse::Ok().json(HealthResponse {
        service: "mcp-mesh-registry",
        status: "healthy",
        timestamp: rfc3339_now(),
        uptime_seconds: state.started_at.elapsed().as_secs(),
        version: env!("CARGO_PKG_VERSION"),
    })
}

pub async fn ready(state: Data<AppState>) -> HttpResponse {
    let backend = state.store.backend().name();
    match state.store.ping().await {
        Ok(()) => HttpResponse::Ok().json(ReadyResponse {
            status: "ready",
            backend,
            error: None,
        }),
        Err(error) => {
            tracing::warn!(%error, "not ready: the database does not answer");
            HttpResponse::ServiceUnavailable().json(ReadyResponse {
                status: "unavailable",
                backend,
                error: Some(error.to_string()),
            })
        }
    }
}
