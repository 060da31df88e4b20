//! `GET /health`: the process is serving (the reference's body, so meshctl's checks pass).

use actix_web::web::Data;
use actix_web::HttpResponse;

use super::AppState;
use crate::wire::{rfc3339_now, HealthResponse};

pub async fn health(state: Data<AppState>) -> HttpResponse {
    HttpResponse::Ok().json(HealthResponse {
        service: "mcp-mesh-registry",
        status: "healthy",
        timestamp: rfc3339_now(),
        uptime_seconds: state.started_at.elapsed().as_secs(),
        version: env!("CARGO_PKG_VERSION"),
    })
}
