//! `/trace/*`: the reference's distributed-trace routes. With the trace pipeline on they answer
//! from it (its state; `/trace/{id}` from Tempo); with it off, as the reference answers with
//! `MCP_MESH_DISTRIBUTED_TRACING_ENABLED` unset, so `meshctl trace` says what it says there.

use actix_web::web::{Data, Path};
use actix_web::HttpResponse;
use serde_json::json;

use crate::trace_pipeline::{LookupError, TracePipeline};

/// Why the pipeline is not there, in the reference's words.
const NOT_INITIALIZED: &str = "tracing not initialized";

/// `GET /trace/status`.
pub async fn status(pipeline: Option<Data<TracePipeline>>) -> HttpResponse {
    match pipeline {
        Some(pipeline) => HttpResponse::Ok().json(pipeline.info()),
        None => HttpResponse::Ok().json(json!({"enabled": false, "reason": NOT_INITIALIZED})),
    }
}

/// `GET /trace/stats`.
pub async fn stats(pipeline: Option<Data<TracePipeline>>) -> HttpResponse {
    match pipeline {
        Some(pipeline) => HttpResponse::Ok().json(pipeline.stats()),
        None => HttpResponse::Ok().json(json!({"enabled": false, "reason": NOT_INITIALIZED})),
    }
}

/// `GET /trace/info`.
pub async fn info(pipeline: Option<Data<TracePipeline>>) -> HttpResponse {
    match pipeline {
        Some(pipeline) => HttpResponse::Ok().json(pipeline.info()),
        None => HttpResponse::Ok().json(json!({
            "enabled": false,
            "reason": NOT_INITIALIZED,
            "config": "MCP_MESH_DISTRIBUTED_TRACING_ENABLED=false",
        })),
    }
}

/// `GET /trace/{trace_id}` (what `meshctl trace` reads).
pub async fn trace(pipeline: Option<Data<TracePipeline>>, trace_id: Path<String>) -> HttpResponse {
    let Some(pipeline) = pipeline else {
        return HttpResponse::NotFound()
            .json(json!({"error": "tracing not enabled", "enabled": false}));
    };
    match pipeline.trace(&trace_id).await {
        Ok(trace) => HttpResponse::Ok().json(trace),
        Err(error) => {
            if let LookupError::Failed(why) = error {
                tracing::warn!("trace pipeline: cannot read trace {trace_id} from Tempo: {why}");
            }
            HttpResponse::NotFound()
                .json(json!({"error": "trace not found", "trace_id": *trace_id}))
        }
    }
}
