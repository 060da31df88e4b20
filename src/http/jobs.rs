//! `/jobs` handlers: submit, list, read, claim, owner deltas, release, cancel and force reclaim
//! (contract §2.1–§2.5, §2.8–§2.10). Validation order and messages follow the reference.

use actix_web::web::{Data, Path};
use actix_web::{HttpRequest, HttpResponse};
use mesh_registry_actors::{ClaimEnded, EventPosted, LeaseHeld};
use uuid::Uuid;

use super::error::{ApiError, ALREADY_TERMINAL};
use super::extract::{Body, JsonBody, Query};
use super::AppState;
use crate::resolve::Mesh;
use crate::store::{
    CancelOutcome, ClaimAfter, ClaimCall, ClaimOutcome, DeltaOutcome, DeltaUpdate, JobListQuery,
    NewJob, ReclaimOutcome, ReleaseOutcome,
};
use crate::wire::{
    decode_list_cursor, encode_list_cursor, parse_job_id, BatchRequest, BatchResponse,
    CancelRequest, CancelResponse, ClaimRequest, ClaimResponse, CreateJobRequest,
    CreateJobResponse, JobStatus, ListJobsResponse, ReclaimResponse, RejectReason, RejectedDelta,
    ReleaseRequest, ReleaseResponse, Timestamp,
};

const DEFAULT_MAX_RETRIES: i64 = 1;
const LIST_LIMIT_DEFAULT: i64 = 50;
const LIST_LIMIT_MAX: i64 = 200;
/// Longest per-attempt duration we accept (the lease arithmetic must stay in range).
const MAX_DURATION_LIMIT: i64 = i32::MAX as i64;

/// A required string field: absent, `null` and `""` are all "missing".
fn required<'a>(value: &'a Option<String>, message: &str) -> Result<&'a str, ApiError> {
    value
        .as_deref()
        .filter(|v| !v.is_empty())
        .ok_or_else(|| ApiError::BadRequest(message.to_owned()))
}

/// The job named in the path; an id the registry could not have minted names no job.
pub(super) fn path_job_id(raw: &str) -> Result<Uuid, ApiError> {
    parse_job_id(raw).ok_or_else(|| ApiError::job_not_found(raw))
}

/// `POST /jobs` (T1). Accepted while draining.
pub async fn create(
    state: Data<AppState>,
    JsonBody(req): JsonBody<CreateJobRequest>,
) -> Result<HttpResponse, ApiError> {
    let capability = required(&req.capability, "capability is required")?;
    let submitted_by = required(&req.submitted_by, "submitted_by is required")?;
    let payload = req
        .submitted_payload
        .as_ref()
        .ok_or_else(|| ApiError::BadRequest("submitted_payload is required".into()))?;
    let max_retries = req.max_retries.unwrap_or(DEFAULT_MAX_RETRIES);
    if max_retries < 0 {
        return Err(ApiError::BadRequest(
            "max_retries must be non-negative".into(),
        ));
    }
    if let Some(max_duration) = req.max_duration {
        if max_duration < 1 {
            return Err(ApiError::BadRequest("max_duration must be positive".into()));
        }
        if max_duration > MAX_DURATION_LIMIT {
            return Err(ApiError::BadRequest(format!(
                "max_duration must be at most {MAX_DURATION_LIMIT} seconds"
            )));
        }
    }
    let total_deadline = req
        .total_deadline
        .map(|seconds| {
            Timestamp::from_unix_seconds(seconds).ok_or_else(|| {
                ApiError::BadRequest(format!(
                    "total_deadline must be a Unix time in seconds between 0 and {}",
                    Timestamp::MAX_UNIX_SECONDS
                ))
            })
        })
        .transpose()?;
    let owner_instance_id = req.owner_instance_id.clone().filter(|o| !o.is_empty());
    let id = Uuid::new_v4();
    tracing::debug!(job_id = %id, capability, push_owner = ?owner_instance_id, "job submitted");
    state
        .store
        .create_job(NewJob {
            id,
            capability: capability.to_owned(),
            submitted_by: submitted_by.to_owned(),
            submitted_payload: payload.0.clone(),
            owner_instance_id: owner_instance_id.clone(),
            max_retries,
            max_duration: req.max_duration,
            total_deadline,
        })
        .await
        .map_err(ApiError::store("create job"))?;
    Ok(HttpResponse::Created().json(CreateJobResponse {
        id,
        status: JobStatus::Working,
        owner_instance_id,
    }))
}

/// `GET /jobs`: filtered, newest first, keyset-paginated (contract §2.1).
pub async fn list(state: Data<AppState>, req: HttpRequest) -> Result<HttpResponse, ApiError> {
    let query = Query::parse(&req);
    let limit = query.int("limit")?;
    let submitted_since = query.int("submitted_since")?;
    let limit = match limit {
        None => LIST_LIMIT_DEFAULT,
        Some(n) if (1..=LIST_LIMIT_MAX).contains(&n) => n,
        Some(n) => {
            return Err(ApiError::BadRequest(format!(
                "limit must be in [1, {LIST_LIMIT_MAX}], got {n}"
            )))
        }
    };
    let statuses = query
        .list("status")
        .map(|tokens| {
            tokens
                .iter()
                .map(|token| {
                    JobStatus::parse(token)
                        .map(JobStatus::as_str)
                        .ok_or_else(|| {
                            ApiError::BadRequest(format!(
                                "invalid status {token:?}: must be one of \
                             working,input_required,completed,failed,cancelled"
                            ))
                        })
                })
                .collect::<Result<Vec<_>, _>>()
        })
        .transpose()?;
    let after = query
        .text("cursor")
        .map(|cursor| {
            decode_list_cursor(cursor)
                .map_err(|why| ApiError::BadRequest(format!("ListJobs: invalid cursor: {why}")))
        })
        .transpose()?;
    let mut jobs = state
        .store
        .list_jobs(&JobListQuery {
            statuses,
            owner_instance_id: query.text("owner_instance_id").map(str::to_owned),
            capability: query.text("capability").map(str::to_owned),
            submitted_since: submitted_since
                .filter(|&s| s > 0)
                .and_then(Timestamp::from_unix_seconds),
            after,
            limit: limit + 1,
        })
        .await
        .map_err(ApiError::store("list jobs"))?;
    let next_cursor = if jobs.len() as i64 > limit {
        jobs.truncate(limit as usize);
        jobs.last()
            .map(|last| encode_list_cursor(last.submitted_at, last.id))
    } else {
        None
    };
    Ok(HttpResponse::Ok().json(ListJobsResponse { jobs, next_cursor }))
}

/// `GET /jobs/{job_id}`: no side effects.
pub async fn get(state: Data<AppState>, path: Path<String>) -> Result<HttpResponse, ApiError> {
    let job_id = path_job_id(&path)?;
    let job = state
        .store
        .get_job(job_id)
        .await
        .map_err(ApiError::store("fetch job"))?
        .ok_or_else(|| ApiError::job_not_found(&path))?;
    Ok(HttpResponse::Ok().json(job))
}

/// `POST /jobs/claim` (T2): at most one job per call; "no work" is `{"claimed": []}`.
pub async fn claim(
    state: Data<AppState>,
    JsonBody(req): JsonBody<ClaimRequest>,
) -> Result<HttpResponse, ApiError> {
    let capability = required(&req.capability, "capability is required")?;
    let instance_id = required(&req.instance_id, "instance_id is required")?;
    // Draining: no work, and nothing touched (contract §6 step 1).
    if state.drain_gate.state().draining() {
        return Ok(HttpResponse::Ok().json(ClaimResponse {
            claimed: Vec::new(),
        }));
    }
    let store = &state.store;
    let call = |gate_checked| ClaimCall {
        capability: capability.to_owned(),
        instance_id: instance_id.to_owned(),
        gate_checked,
    };
    let outcome = match store.claim_next(call(false)).await {
        Ok(ClaimOutcome::Gated)
            if !required_dependencies_met(&state, instance_id, capability).await =>
        {
            Ok(ClaimOutcome::NoWork)
        }
        Ok(ClaimOutcome::Gated) => store.claim_next(call(true)).await,
        other => other,
    }
    .map_err(ApiError::store("claim job"))?;
    let claimed = match outcome {
        ClaimOutcome::Claimed(job) => {
            tracing::debug!(job_id = %job.id, capability, instance_id, epoch = job.claim_epoch,
                attempt = job.attempt_count, "job claimed");
            if let Some(lease) = job.lease_expires_at {
                state.supervisor.do_send(LeaseHeld {
                    job_id: job.id,
                    claim_epoch: job.claim_epoch,
                    lease_expires_at: lease.0,
                });
            }
            vec![job]
        }
        ClaimOutcome::NoWork | ClaimOutcome::Gated => Vec::new(),
    };
    Ok(HttpResponse::Ok().json(ClaimResponse { claimed }))
}

/// The claim gate (contract §6 step 3): a producer whose tool for `capability` has a required
/// dependency that nothing available serves gets no work. Its own health is not checked, and a
/// failure to evaluate lets the claim through (fail open).
async fn required_dependencies_met(state: &AppState, instance_id: &str, capability: &str) -> bool {
    let snapshot = match state.store.mesh_snapshot().await {
        Ok(snapshot) => snapshot,
        Err(error) => {
            tracing::warn!(%error, instance_id, "claim gate not evaluated; letting the claim through");
            return true;
        }
    };
    let mesh = Mesh::from_snapshot(&snapshot);
    let broken = mesh
        .providers()
        .iter()
        .filter(|p| p.agent_id == instance_id && p.capability == capability)
        .find_map(|p| mesh.broken_required_dependency(p));
    if let Some(reason) = &broken {
        tracing::debug!(instance_id, capability, reason, "claim gated");
    }
    broken.is_none()
}

/// `POST /jobs/batch` (T3): each delta applies or is rejected on its own, in order.
pub async fn batch(
    state: Data<AppState>,
    JsonBody(req): JsonBody<BatchRequest>,
) -> Result<HttpResponse, ApiError> {
    let instance_id = required(&req.instance_id, "instance_id is required")?;
    let deltas = req.deltas.unwrap_or_default();
    if deltas.is_empty() {
        return Err(ApiError::BadRequest("deltas must not be empty".into()));
    }
    if deltas
        .iter()
        .any(|d| d.id.as_deref().is_none_or(str::is_empty))
    {
        return Err(ApiError::BadRequest(
            "every delta requires a non-empty id".into(),
        ));
    }
    let store = &state.store;
    let mut response = BatchResponse {
        accepted: 0,
        rejected: Vec::new(),
    };
    for delta in deltas {
        let raw_id = delta.id.clone().unwrap_or_default();
        let outcome = match (parse_job_id(&raw_id), delta.status.as_deref()) {
            (None, _) => DeltaOutcome::Rejected(RejectReason::NotFound),
            (Some(job_id), Some(raw_status)) if JobStatus::parse(raw_status).is_none() => {
                // An unknown status is reported only after the reasons that come first.
                let reason = store
                    .delta_rejection(instance_id, job_id, delta.claim_epoch)
                    .await
                    .map_err(ApiError::store("apply deltas"))?;
                DeltaOutcome::Rejected(reason.unwrap_or(RejectReason::InvalidStatus))
            }
            (Some(job_id), raw_status) => store
                .apply_delta(DeltaUpdate {
                    job_id,
                    instance_id: instance_id.to_owned(),
                    claim_epoch: delta.claim_epoch,
                    status: raw_status.and_then(JobStatus::parse),
                    progress: delta.progress,
                    progress_message: delta.progress_message,
                    result: delta.result.map(|object| object.0),
                    error: delta.error,
                    recv_cursor: delta.recv_cursor,
                })
                .await
                .map_err(ApiError::store("apply deltas"))?,
        };
        match outcome {
            DeltaOutcome::Accepted(after) => {
                response.accepted += 1;
                match after {
                    ClaimAfter::Held(lease) => state.supervisor.do_send(lease),
                    ClaimAfter::Ended(job_id) => state.supervisor.do_send(ClaimEnded { job_id }),
                }
            }
            DeltaOutcome::Rejected(reason) => {
                tracing::debug!(job_id = raw_id, instance_id, ?reason, "delta rejected");
                response.rejected.push(RejectedDelta { id: raw_id, reason });
            }
        }
    }
    Ok(HttpResponse::Ok().json(response))
}

/// `POST /jobs/{job_id}/release` (T5): the owner hands the job back.
pub async fn release(
    state: Data<AppState>,
    path: Path<String>,
    JsonBody(req): JsonBody<ReleaseRequest>,
) -> Result<HttpResponse, ApiError> {
    let instance_id = req.instance_id.as_deref().map(str::trim).unwrap_or("");
    if instance_id.is_empty() {
        return Err(ApiError::BadRequest("instance_id is required".into()));
    }
    let job_id = path_job_id(&path)?;
    let reason = match req.reason.as_deref().map(str::trim) {
        Some(reason) if !reason.is_empty() => reason,
        _ => "max retries exceeded",
    };
    match state
        .store
        .release_job(job_id, instance_id, reason)
        .await
        .map_err(ApiError::store("release job"))?
    {
        ReleaseOutcome::Released {
            status,
            attempt_count,
        } => {
            tracing::info!(%job_id, instance_id, ?status, reason, "job released by its owner");
            state.supervisor.do_send(ClaimEnded { job_id });
            Ok(HttpResponse::Ok().json(ReleaseResponse {
                status,
                attempt_count,
            }))
        }
        ReleaseOutcome::NotFound => Err(ApiError::job_not_found(&path)),
        ReleaseOutcome::Terminal => Err(ApiError::Conflict(ALREADY_TERMINAL)),
        ReleaseOutcome::NotOwner => Err(ApiError::Forbidden(
            "caller is not the current owner of this job",
        )),
    }
}

/// `POST /jobs/{job_id}/cancel` (T6): cancelled and the synthetic `cancelled` event appended in
/// one statement; parked readers are woken; after the grace window the caller is answered.
pub async fn cancel(
    state: Data<AppState>,
    path: Path<String>,
    req: HttpRequest,
    body: Body,
) -> Result<HttpResponse, ApiError> {
    let cancel: CancelRequest = if body.0.is_empty() {
        CancelRequest::default()
    } else {
        body.json()?
    };
    let job_id = path_job_id(&path)?;
    let reason = cancel.reason.unwrap_or_default();
    let outcome = state
        .store
        .cancel_job(job_id, reason.trim(), &reason)
        .await
        .map_err(ApiError::store("cancel job"))?;
    let previous_owner = match outcome {
        CancelOutcome::Cancelled { previous_owner } => previous_owner,
        CancelOutcome::NotFound => return Err(ApiError::job_not_found(&path)),
        CancelOutcome::Terminal => return Err(ApiError::Conflict(ALREADY_TERMINAL)),
    };
    state.event_hub.do_send(EventPosted { job_id });
    state.supervisor.do_send(ClaimEnded { job_id });
    tracing::info!(%job_id, owner = ?previous_owner, reason = reason.trim(), "job cancelled");
    // The grace lets a producer parked on recv_event see the `cancelled` event before the
    // forward to its endpoint interrupts it.
    if !state.cancel_event_grace.is_zero() {
        actix_web::rt::time::sleep(state.cancel_event_grace).await;
    }
    if let Some(owner) = previous_owner.clone() {
        // Best effort and not awaited: the row is already cancelled; a lost forward only means
        // the owner learns it from its next rejected delta.
        let trace_headers = FORWARDED_HEADERS
            .iter()
            .filter_map(|&name| Some((name, req.headers().get(name)?.to_str().ok()?.to_owned())))
            .collect();
        actix_web::rt::spawn(forward_cancel(
            state.clone(),
            owner,
            job_id,
            reason,
            trace_headers,
        ));
    }
    Ok(HttpResponse::Ok().json(CancelResponse {
        status: JobStatus::Cancelled,
        forwarded_to_instance_id: previous_owner,
    }))
}

/// Headers of the cancel request that travel with the forward to the owner.
const FORWARDED_HEADERS: [&str; 3] = ["X-Trace-ID", "X-Parent-Span", "X-Mesh-Timeout"];
const CANCEL_FORWARD_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// `POST {owner endpoint}/jobs/{job_id}/cancel`, so the owner's handler stops now.
async fn forward_cancel(
    state: Data<AppState>,
    owner: String,
    job_id: Uuid,
    reason: String,
    headers: Vec<(&'static str, String)>,
) {
    let endpoint = match state.store.agent(&owner).await {
        Ok(Some(agent)) => agent.http_endpoint(),
        Ok(None) => None,
        Err(error) => {
            tracing::warn!(%error, %job_id, owner, "cancel forward skipped: owner lookup failed");
            return;
        }
    };
    let Some(endpoint) = endpoint else {
        tracing::debug!(%job_id, owner, "cancel forward skipped: owner has no HTTP endpoint");
        return;
    };
    let url = format!("{endpoint}/jobs/{job_id}/cancel");
    let mut request = state
        .agent_client
        .post(&url)
        .timeout(CANCEL_FORWARD_TIMEOUT)
        .header("Content-Type", "application/json");
    if !reason.is_empty() {
        request = request.json(&CancelRequest {
            reason: Some(reason),
        });
    }
    for (name, value) in headers {
        request = request.header(name, value);
    }
    match request.send().await {
        Ok(response) if response.status().is_success() => {
            tracing::debug!(%job_id, owner, "cancel forwarded to the owner");
        }
        Ok(response) => {
            tracing::warn!(%job_id, url, status = %response.status(), "cancel forward refused");
        }
        Err(error) => tracing::warn!(%job_id, url, %error, "cancel forward failed"),
    }
}

/// `POST /jobs/{job_id}/reclaim` (T7): operator force-reclaim; no body.
pub async fn reclaim(state: Data<AppState>, path: Path<String>) -> Result<HttpResponse, ApiError> {
    let job_id = path_job_id(&path)?;
    match state
        .store
        .reclaim_job(job_id)
        .await
        .map_err(ApiError::store("reclaim job"))?
    {
        ReclaimOutcome::Reclaimed {
            status,
            previous_owner,
            claim_epoch,
        } => {
            tracing::info!(%job_id, previous_owner = ?previous_owner, ?status, "job force-reclaimed");
            state.supervisor.do_send(ClaimEnded { job_id });
            Ok(HttpResponse::Ok().json(ReclaimResponse {
                status,
                previous_owner_instance_id: previous_owner,
                claim_epoch,
            }))
        }
        ReclaimOutcome::NotFound => Err(ApiError::job_not_found(&path)),
        ReclaimOutcome::Terminal => Err(ApiError::Conflict(ALREADY_TERMINAL)),
    }
}
