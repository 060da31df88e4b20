//! `/jobs/{job_id}/events` handlers: read a page of the event log (observer or fenced executor
//! read, optionally long-polling) and append an event (docs/contract.md#events-endpoints).

use std::time::Duration;

use actix_web::web::{Data, Path};
use actix_web::{HttpRequest, HttpResponse};

use super::error::{ApiError, ALREADY_TERMINAL, CLAIM_SUPERSEDED};
use super::extract::{client_address, JsonBody, Query};
use super::jobs::path_job_id;
use super::validate::{bounded, MAX_NAME_BYTES};
use crate::service::{EventsRead, Executor, Registry};
use crate::store::{EventFilter, PostEventOutcome};
use crate::wire::{EventsPage, PostEventRequest, PostEventResponse};

const MAX_WAIT_SECONDS: i64 = 60;
const DEFAULT_PAGE: i64 = 100;
const MAX_PAGE: i64 = 500;

/// `GET /jobs/{job_id}/events?after&types&limit&wait[&instance_id&claim_epoch]`
pub async fn list(
    registry: Data<Registry>,
    path: Path<String>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let query = Query::parse(&req)?;
    let claim_epoch = query.int("claim_epoch")?;
    let after = query.int("after")?.unwrap_or(0).max(0);
    let wait = query.int("wait")?.unwrap_or(0).clamp(0, MAX_WAIT_SECONDS);
    let limit = match query.int("limit")? {
        Some(n) if n > 0 => n.min(MAX_PAGE),
        _ => DEFAULT_PAGE,
    };
    let instance_id = query.get("instance_id").filter(|id| !id.is_empty());
    let executor = match (instance_id, claim_epoch) {
        (Some(instance_id), Some(claim_epoch)) => Some(Executor {
            instance_id,
            claim_epoch,
        }),
        (None, None) => None,
        _ => {
            return Err(ApiError::BadRequest(
                "instance_id and claim_epoch must be supplied together (both for an executor \
                 read, or neither for an observer read)"
                    .into(),
            ))
        }
    };
    let job_id = path_job_id(&path)?;
    let filter = EventFilter {
        after,
        types: query.list("types"),
        limit,
    };
    let wait = Duration::from_secs(wait as u64);
    match registry
        .read_events(job_id, client_address(&req), executor, &filter, wait)
        .await
        .map_err(ApiError::store("list job events"))?
    {
        EventsRead::Page(events) => {
            let next_after = events.last().map_or(after, |event| event.seq);
            Ok(HttpResponse::Ok().json(EventsPage { events, next_after }))
        }
        EventsRead::NotFound => Err(ApiError::job_not_found(&path)),
        EventsRead::Superseded => Err(ApiError::Conflict(CLAIM_SUPERSEDED)),
        EventsRead::Busy => Err(ApiError::Unavailable(
            "Failed to list job events: too many long-polls are waiting; retry shortly".into(),
        )),
    }
}

/// `POST /jobs/{job_id}/events`: anyone holding the id may append to a live job's log. The
/// entity that vouched for the poster's client certificate is its `posted_by`, as the reference
/// records it.
pub async fn post(
    registry: Data<Registry>,
    path: Path<String>,
    http: HttpRequest,
    JsonBody(req): JsonBody<PostEventRequest>,
) -> Result<HttpResponse, ApiError> {
    let event_type = req
        .event_type
        .as_deref()
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| ApiError::BadRequest("type is required".into()))?;
    let event_type = bounded("type", event_type, MAX_NAME_BYTES)?;
    let job_id = path_job_id(&path)?;
    match registry
        .post_event(
            job_id,
            event_type,
            req.payload.as_ref(),
            req.trace_context.as_ref().map(|t| &t.0),
            super::tls::verified_entity(&http).as_deref(),
        )
        .await
        .map_err(ApiError::store("post job event"))?
    {
        PostEventOutcome::Posted {
            job_id,
            seq,
            created_at,
        } => Ok(HttpResponse::Ok().json(PostEventResponse {
            job_id,
            seq,
            created_at,
        })),
        PostEventOutcome::NotFound => Err(ApiError::job_not_found(&path)),
        PostEventOutcome::Terminal => Err(ApiError::Conflict(ALREADY_TERMINAL)),
    }
}
