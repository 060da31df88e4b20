//! `GET /` (what this service is) and `/trace/*` (distributed tracing, which this registry does
//! not collect: it answers as the reference answers with tracing off, so `meshctl trace` says
//! "tracing not enabled" rather than meeting a 404 page).

use actix_web::HttpResponse;

use crate::wire::{RootResponse, TracingOff};

pub async fn root() -> HttpResponse {
    HttpResponse::Ok().json(RootResponse {
        endpoints: ["/health", "/heartbeat", "/agents"],
        service: "mcp-mesh-registry",
        status: "running",
        version: env!("CARGO_PKG_VERSION"),
    })
}

/// `GET /trace/status` and `GET /trace/stats`.
pub async fn trace_status() -> HttpResponse {
    HttpResponse::Ok().json(TracingOff {
        config: None,
        enabled: false,
        error: None,
        reason: Some("tracing not initialized"),
    })
}

pub async fn trace_info() -> HttpResponse {
    HttpResponse::Ok().json(TracingOff {
        config: Some("MCP_MESH_DISTRIBUTED_TRACING_ENABLED=false"),
        enabled: false,
        error: None,
        reason: Some("tracing not initialized"),
    })
}

/// `GET /trace/{trace_id}`
pub async fn trace() -> HttpResponse {
    HttpResponse::NotFound().json(TracingOff {
        config: None,
        enabled: false,
        error: Some("tracing not enabled"),
        reason: None,
    })
}
