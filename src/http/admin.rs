//! `/admin/drain` (contract §7): pause claims before an upgrade, watch the live claims reach
//! zero, resume. `?scope=fleet` drains every replica through PostgreSQL (decisions row 16); the
//! embedded store, one process only, answers it 501.
//!
//! Orders matter and follow the reference: POST counts before it sets the flag (a failed count
//! leaves the registry undrained); DELETE clears the flag before it counts.

use actix_web::http::StatusCode;
use actix_web::web::Data;
use actix_web::{HttpRequest, HttpResponse};
use mesh_registry_actors::{DrainScope, DrainState, SetDrain};

use super::error::ApiError;
use super::extract::Query;
use super::AppState;
use crate::store::StoreError;
use crate::wire::DrainResponse;

fn scope(req: &HttpRequest) -> Result<DrainScope, ApiError> {
    match Query::parse(req).get("scope") {
        None | Some("" | "replica") => Ok(DrainScope::Replica),
        Some("fleet") => Ok(DrainScope::Fleet),
        Some(other) => Err(ApiError::Admin(
            StatusCode::BAD_REQUEST,
            format!("invalid scope {other:?}: must be replica or fleet"),
        )),
    }
}

async fn live_claims(state: &AppState) -> Result<i64, ApiError> {
    state.store.count_live_claims().await.map_err(|error| {
        ApiError::Admin(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("failed to count live claims: {error}"),
        )
    })
}

/// Sets or clears a drain: the fleet flag in PostgreSQL first, then the gate here.
async fn set_drain(
    state: &AppState,
    scope: DrainScope,
    draining: bool,
) -> Result<DrainState, ApiError> {
    if scope == DrainScope::Fleet {
        state
            .store
            .set_fleet_draining(draining)
            .await
            .map_err(|error| match error {
                StoreError::Unsupported(why) => {
                    ApiError::Admin(StatusCode::NOT_IMPLEMENTED, why.to_owned())
                }
                error => ApiError::Admin(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!("failed to store the fleet drain: {error}"),
                ),
            })?;
    }
    state
        .supervisor
        .send(SetDrain { scope, draining })
        .await
        .map_err(|error| ApiError::Admin(StatusCode::SERVICE_UNAVAILABLE, error.to_string()))
}

fn respond(gate: DrainState, live_claims: i64) -> HttpResponse {
    HttpResponse::Ok().json(DrainResponse {
        draining: gate.draining(),
        live_claims,
        fleet_draining: gate.fleet,
    })
}

/// `GET /admin/drain`
pub async fn status(state: Data<AppState>) -> Result<HttpResponse, ApiError> {
    let live_claims = live_claims(&state).await?;
    Ok(respond(state.drain_gate.state(), live_claims))
}

/// `POST /admin/drain[?scope=fleet]`
pub async fn drain(state: Data<AppState>, req: HttpRequest) -> Result<HttpResponse, ApiError> {
    let scope = scope(&req)?;
    let live_claims = live_claims(&state).await?;
    let gate = set_drain(&state, scope, true).await?;
    tracing::info!(?scope, live_claims, "drain requested");
    Ok(respond(gate, live_claims))
}

/// `DELETE /admin/drain[?scope=fleet]`
pub async fn resume(state: Data<AppState>, req: HttpRequest) -> Result<HttpResponse, ApiError> {
    let scope = scope(&req)?;
    let gate = set_drain(&state, scope, false).await?;
    tracing::info!(?scope, still_draining = gate.draining(), "resume requested");
    let live_claims = live_claims(&state).await?;
    Ok(respond(gate, live_claims))
}
