//! `/trace/*`: the reference's distributed-trace routes, as it answers them while its trace
//! pipeline (`MCP_MESH_DISTRIBUTED_TRACING_ENABLED`) is off. This registry does not run that
//! pipeline yet, so they always answer so: `meshctl trace` then says what it says against a
//! reference without tracing, instead of meeting a 404 page.

use actix_web::HttpResponse;
use serde_json::json;

/// Why the pipeline is not there, in the reference's words.
const NOT_INITIALIZED: &str = "tracing not initialized";

/// `GET /trace/status` and `GET /trace/stats`.
pub async fn status() -> HttpResponse {
    HttpResponse::Ok().json(json!({"enabled": false, "reason": NOT_INITIALIZED}))
}

/// `GET /trace/info`.
pub async fn info() -> HttpResponse {
    HttpResponse::Ok().json(json!({
        "enabled": false,
        "reason": NOT_INITIALIZED,
        "config": "MCP_MESH_DISTRIBUTED_TRACING_ENABLED=false",
    }))
}

/// `GET /trace/{trace_id}` (what `meshctl trace` reads).
pub async fn trace() -> HttpResponse {
    HttpResponse::NotFound().json(json!({"error": "tracing not enabled", "enabled": false}))
}
