//! `GET /`: what this service is, as the reference says it.

use actix_web::HttpResponse;

use crate::wire::RootResponse;

pub async fn root() -> HttpResponse {
    HttpResponse::Ok().json(RootResponse {
        endpoints: ["/health", "/heartbeat", "/agents"],
        service: "mcp-mesh-registry",
        status: "running",
        version: env!("CARGO_PKG_VERSION"),
    })
}
