//! `GET /events`: the registry's event log, which `meshctl audit` reads
//! (docs/contract.md#registry-events).

use actix_web::web::Data;
use actix_web::{HttpRequest, HttpResponse};

use super::error::ApiError;
use super::extract::Query;
use crate::service::Registry;
use crate::store::{MeshEvent, MeshEventQuery};
use crate::wire::{rfc3339, MeshEventView, MeshEventsResponse};

/// The reference's page: 50 events unless asked, never more than 500.
const LIMIT_DEFAULT: i64 = 50;
const LIMIT_MAX: i64 = 500;

/// `GET /events?type=&agent_id=&function_name=&limit=`: newest first; an empty filter is no
/// filter, an unknown type matches nothing, the limit is clamped to 1..=500.
pub async fn list(registry: Data<Registry>, req: HttpRequest) -> Result<HttpResponse, ApiError> {
    let params = Query::parse(&req)?;
    let filter = |name: &str| {
        params
            .get(name)
            .filter(|value| !value.is_empty())
            .map(str::to_owned)
    };
    let query = MeshEventQuery {
        event_type: filter("type"),
        agent_id: filter("agent_id"),
        function_name: filter("function_name"),
        limit: params
            .int("limit")?
            .map_or(LIMIT_DEFAULT, |n| n.clamp(1, LIMIT_MAX)),
    };
    let events: Vec<_> = registry
        .mesh_events(&query)
        .await
        .map_err(ApiError::store("query events"))?
        .into_iter()
        .map(view)
        .collect();
    Ok(HttpResponse::Ok().json(MeshEventsResponse {
        count: events.len(),
        events,
    }))
}

fn view(event: MeshEvent) -> MeshEventView {
    MeshEventView {
        agent_id: event.agent_id,
        agent_name: event.agent_name.filter(|name| !name.is_empty()),
        // The reference leaves out an empty data object.
        data: Some(event.data).filter(|data| data.get() != "{}"),
        event_type: event.event_type,
        function_name: event.function_name.filter(|name| !name.is_empty()),
        timestamp: rfc3339(event.recorded_at),
    }
}
