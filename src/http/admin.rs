//! `/admin/drain`: pause claims before an upgrade, watch the live claims reach zero, resume.
//! `?scope=fleet` drains every replica through PostgreSQL; the embedded store, one process only,
//! answers it 501. docs/operations.md has the procedure.

use actix_web::http::StatusCode;
use actix_web::web::Data;
use actix_web::{HttpRequest, HttpResponse};
use mesh_registry_actors::DrainScope;

use super::error::ApiError;
use super::extract::Query;
use super::tls::RegistrationTrust;
use crate::service::{DrainError, DrainView, Registry};
use crate::wire::DrainResponse;

fn scope(req: &HttpRequest) -> Result<DrainScope, ApiError> {
    match Query::parse(req)?.get("scope") {
        None | Some("" | "replica") => Ok(DrainScope::Replica),
        Some("fleet") => Ok(DrainScope::Fleet),
        Some(other) => Err(ApiError::Admin(
            StatusCode::BAD_REQUEST,
            format!("invalid scope {other:?}: must be replica or fleet"),
        )),
    }
}

fn respond(view: Result<DrainView, DrainError>) -> Result<HttpResponse, ApiError> {
    let view = view.map_err(|error| {
        let status = match error {
            DrainError::FleetUnsupported(_) => StatusCode::NOT_IMPLEMENTED,
            _ => StatusCode::SERVICE_UNAVAILABLE,
        };
        ApiError::Admin(status, error.to_string())
    })?;
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

/// `GET /admin/entities`: the CA certificates of every trusted entity, as the reference lists
/// them (`{"entities": [{"name", "subject", "expires"}]}`).
pub async fn entities(trust: Data<RegistrationTrust>) -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({"entities": trust.chain.entities()}))
}
