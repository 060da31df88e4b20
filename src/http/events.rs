//! `/jobs/{job_id}/events` handlers: read a page of the event log (observer or fenced executor
//! read, optionally long-polling) and append an event (contract §2.6, §2.7).

use std::time::Duration;

use actix_web::web::{Data, Path};
use actix_web::{HttpRequest, HttpResponse};
use mesh_registry_actors::{EventPosted, NotParked, Park, Wakeup};
use tokio::time::{timeout_at, Instant};
use uuid::Uuid;

use super::error::{ApiError, ALREADY_TERMINAL, CLAIM_SUPERSEDED};
use super::extract::{JsonBody, Query};
use super::jobs::path_job_id;
use super::AppState;
use crate::store::{EventFilter, ExecutorRead, PostEventOutcome};
use crate::wire::{EventsPage, PostEventRequest, PostEventResponse};

const MAX_WAIT_SECONDS: i64 = 60;
const DEFAULT_PAGE: i64 = 100;
const MAX_PAGE: i64 = 500;

/// `GET /jobs/{job_id}/events?after&types&limit&wait[&instance_id&claim_epoch]`
pub async fn list(
    state: Data<AppState>,
    path: Path<String>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let query = Query::parse(&req);
    let claim_epoch = query.int("claim_epoch")?;
    let after = query.int("after")?.unwrap_or(0).max(0);
    let wait = query.int("wait")?.unwrap_or(0).clamp(0, MAX_WAIT_SECONDS);
    let limit = match query.int("limit")? {
        Some(n) if n > 0 => n.min(MAX_PAGE),
        _ => DEFAULT_PAGE,
    };
    let instance_id = query.get("instance_id").filter(|id| !id.is_empty());
    let executor = match (instance_id, claim_epoch) {
        (Some(instance_id), Some(epoch)) => Some((instance_id, epoch)),
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
    if let Some((instance_id, epoch)) = executor {
        // Authorised once, before any wait: a superseded executor learns it at once.
        match state
            .store
            .authorize_executor_read(job_id, instance_id, epoch, state.job_stale_timeout)
            .await
            .map_err(ApiError::store("list job events"))?
        {
            ExecutorRead::NotFound => return Err(ApiError::job_not_found(&path)),
            ExecutorRead::Superseded => return Err(ApiError::Conflict(CLAIM_SUPERSEDED)),
            ExecutorRead::Serve { renewed } => {
                if let Some(lease) = renewed {
                    state.supervisor.do_send(lease);
                }
            }
        }
    }
    let filter = EventFilter {
        after,
        types: query.list("types"),
        limit,
    };
    let deadline = Instant::now() + Duration::from_secs(wait as u64);
    loop {
        // Park before reading, so an event committed after the read began still wakes us.
        let wakeup = if Instant::now() < deadline {
            park(&state, job_id).await?
        } else {
            None
        };
        let events = state
            .store
            .list_events(job_id, &filter)
            .await
            .map_err(ApiError::store("list job events"))?
            .ok_or_else(|| ApiError::job_not_found(&path))?;
        match wakeup {
            Some(wakeup) if events.is_empty() => {
                if timeout_at(deadline, wakeup).await.is_err() {
                    return Ok(page(events, after));
                }
            }
            _ => return Ok(page(events, after)),
        }
    }
}

fn page(events: Vec<crate::wire::JobEvent>, after: i64) -> HttpResponse {
    let next_after = events.last().map_or(after, |event| event.seq);
    HttpResponse::Ok().json(EventsPage { events, next_after })
}

/// A wake-up for the job's next event; `None` when the registry is stopping (answer now).
async fn park(state: &AppState, job_id: Uuid) -> Result<Option<Wakeup>, ApiError> {
    match state.event_hub.send(Park { job_id }).await {
        Ok(Ok(wakeup)) => Ok(Some(wakeup)),
        Ok(Err(NotParked::ShuttingDown)) => Ok(None),
        Ok(Err(NotParked::Full)) => Err(ApiError::Unavailable(
            "Failed to list job events: too many long-polls are waiting; retry shortly".into(),
        )),
        Err(error) => {
            tracing::error!(%error, "event hub unreachable; answering without waiting");
            Ok(None)
        }
    }
}

/// `POST /jobs/{job_id}/events`: anyone holding the id may append to a live job's log.
pub async fn post(
    state: Data<AppState>,
    path: Path<String>,
    JsonBody(req): JsonBody<PostEventRequest>,
) -> Result<HttpResponse, ApiError> {
    let event_type = req
        .event_type
        .as_deref()
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| ApiError::BadRequest("type is required".into()))?;
    let job_id = path_job_id(&path)?;
    match state
        .store
        .post_event(
            job_id,
            event_type,
            req.payload.as_ref(),
            req.trace_context.as_ref().map(|t| &t.0),
        )
        .await
        .map_err(ApiError::store("post job event"))?
    {
        PostEventOutcome::Posted { seq, created_at } => {
            state.event_hub.do_send(EventPosted { job_id });
            Ok(HttpResponse::Ok().json(PostEventResponse {
                job_id,
                seq,
                created_at,
            }))
        }
        PostEventOutcome::NotFound => Err(ApiError::job_not_found(&path)),
        PostEventOutcome::Terminal => Err(ApiError::Conflict(ALREADY_TERMINAL)),
    }
}
