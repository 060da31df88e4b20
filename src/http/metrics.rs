//! `GET /metrics` and the measurement of every request behind it.

use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::web::Data;
use actix_web::HttpResponse;

use crate::metrics::Metrics;
use crate::service::Registry;

/// The label of a request no route matched (the raw path would be unbounded).
const UNMATCHED: &str = "unmatched";

/// `GET /metrics`: the Prometheus text format.
pub async fn metrics(registry: Data<Registry>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(registry.metrics_text().await)
}

/// Counts and times each request by its route pattern, method and status, and names the route
/// on the request's span (one pattern match serves both).
pub async fn measure(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let started = Instant::now();
    let metrics = req.app_data::<Data<Metrics>>().cloned();
    let res = next.call(req).await?;
    if let Some(metrics) = metrics {
        let request = res.request();
        let route = request.match_pattern();
        let route = route.as_deref().unwrap_or(UNMATCHED);
        tracing::Span::current().record("route", route);
        metrics.observe_request(
            route,
            request.method().as_str(),
            res.status().as_str(),
            started.elapsed(),
        );
    }
    Ok(res)
}
