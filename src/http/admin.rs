//! `/admin/drain`: pause claims before an upgrade, watch the live claims reach zero, resume.
//! `?scope=fleet` drains every replica through PostgreSQL; the embedded store, one process only,
//! answers it 501. docs/operations.md has the procedure.

use actix_web::http::StatusCode;
use actix_web::web::Data;
use actix_web::{HttpRequest, HttpResponse};
use mesh_registry_actors::DrainScope;

use super::error::ApiError;
use super::extract::Query;
use crate::service::{DrainError, DrainView, Registry};
use crate::wire::DrainResponse;

fn scope(req: &HttpRequest) -> Result<DrainScope, ApiError> {
    parse_scope(Query::parse(req)?.get("scope"))
}

/// `scope` of a drain (the query of `/admin/drain`, the dashboard's form field).
pub(super) fn parse_scope(raw: Option<&str>) -> Result<DrainScope, ApiError> {
    match raw {
        None | Some("" | "replica") => Ok(DrainScope::Replica),
        Some("fleet") => Ok(DrainScope::Fleet),
        Some(other) => Err(ApiError::Admin(
            StatusCode::BAD_REQUEST,
            format!("invalid scope {other:?}: must be replica or fleet"),
        )),
    }
}

/// A drain call's failure as `/admin/drain` answers it (the dashboard's drain too).
pub(super) fn drain_error(error: DrainError) -> ApiError {
    let status = match error {
        DrainError::FleetUnsupported(_) => StatusCode::NOT_IMPLEMENTED,
        _ => StatusCode::SERVICE_UNAVAILABLE,
    };
    ApiError::Admin(status, error.to_string())
}

fn respond(view: Result<DrainView, DrainError>) -> Result<HttpResponse, ApiError> {
    let view = view.map_err(drain_error)?;
    Ok(HttpResponse::Ok().json(DrainResponse {
        draining: view.gate.draining(),
        live_claims: view.live_claims,
        fleet_draining: view.gate.fleet,
    }))
}

/// `GET /admin/drain`
pub async fn status(registry: Data<Registry>) -> Result<HttpResponse, ApiError> {
    respond(registry.drain_status().await)
}

/// `POST /admin/drain[?scope=fleet]`
pub async fn drain(registry: Data<Registry>, req: HttpRequest) -> Result<HttpResponse, ApiError> {
    respond(registry.drain(scope(&req)?).await)
}

/// `DELETE /admin/drain[?scope=fleet]`
pub async fn resume(registry: Data<Registry>, req: HttpRequest) -> Result<HttpResponse, ApiError> {
    respond(registry.resume(scope(&req)?).await)
}
