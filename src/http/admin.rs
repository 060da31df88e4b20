//! `/admin/drain`: pause claims before an upgrade, watch the live claims reach zero, resume.
//! `?scope=fleet` drains every replica through PostgreSQL; the embedded store, one process only,
//! answers it 501. docs/operations.md has the procedure. `/admin/entities` and `/admin/rotate`:
//! registration trust (docs/configuration.md#tls).

use actix_web::http::StatusCode;
use actix_web::web::Data;
use actix_web::{HttpRequest, HttpResponse};
use mesh_registry_actors::DrainScope;

use super::error::ApiError;
use super::extract::Query;
use super::tls::RegistrationTrust;
use crate::service::{DrainError, DrainView, Registry};
use crate::wire::{DrainResponse, RotateResponse};

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

/// `GET /admin/entities`: the CA certificates of every trusted entity, as the reference lists
/// them (`{"entities": [{"name", "subject", "expires"}]}`).
pub async fn entities(trust: Data<RegistrationTrust>) -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({"entities": trust.chain.entities()}))
}

/// `POST /admin/rotate[?entity_id=…]`: after certificates were rotated, every healthy agent (of
/// that entity; of every entity and none when it is empty or absent) is asked to register
/// again: the next HEAD heartbeat of each agent answers 202. A failure is `500 {"error"}`, as
/// the reference answers it.
pub async fn rotate(registry: Data<Registry>, req: HttpRequest) -> Result<HttpResponse, ApiError> {
    let query = Query::parse(&req)?;
    let entity_id = query.get("entity_id").unwrap_or_default();
    let rotation = registry
        .rotate(Some(entity_id).filter(|id| !id.is_empty()))
        .await
        .map_err(|error| ApiError::Admin(StatusCode::INTERNAL_SERVER_ERROR, error.to_string()))?;
    Ok(HttpResponse::Ok().json(RotateResponse {
        affected_agents: rotation.affected_agents,
        entity_id: entity_id.to_owned(),
        message: match entity_id {
            "" => "Rotation triggered for all agents".to_owned(),
            entity => format!("Rotation triggered for entity '{entity}'"),
        },
    }))
}
