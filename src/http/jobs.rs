//! `/jobs` handlers: submit, list, read, claim, owner deltas, release, cancel and force reclaim
//! (docs/contract.md#jobs-endpoints). Validation order and messages follow the reference.

use actix_web::web::{Data, Path};
use actix_web::{HttpRequest, HttpResponse};
use uuid::Uuid;

use super::error::{ApiError, ALREADY_TERMINAL};
use super::extract::{Body, JsonBody, Query};
use super::validate::{bounded, bounded_opt, MAX_ID_BYTES, MAX_NAME_BYTES, MAX_TEXT_BYTES};
use crate::service::{ForwardHeaders, Registry};
use crate::store::{
    CancelOutcome, DeltaOutcome, JobListQuery, NewJob, ReclaimOutcome, ReleaseOutcome,
};
use crate::wire::{
    decode_list_cursor, encode_list_cursor, parse_job_id, BatchRequest, BatchResponse,
    CancelRequest, CancelResponse, ClaimRequest, ClaimResponse, CreateJobRequest,
    CreateJobResponse, Job, JobDelta, JobStatus, ListJobsResponse, ReclaimResponse, RejectReason,
    RejectedDelta, ReleaseRequest, ReleaseResponse, Timestamp,
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

/// `POST /jobs` (docs/contract.md#post-jobs). Accepted while draining. (Long because it checks
/// the fields one after the other in the reference's order: the first invalid one is reported.)
pub async fn create(
    registry: Data<Registry>,
    JsonBody(req): JsonBody<CreateJobRequest>,
) -> Result<HttpResponse, ApiError> {
    let capability = required(&req.capability, "capability is required")?;
    let capability = bounded("capability", capability, MAX_NAME_BYTES)?;
    let submitted_by = required(&req.submitted_by, "submitted_by is required")?;
    let submitted_by = bounded("submitted_by", submitted_by, MAX_NAME_BYTES)?;
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
    bounded_opt(
        "owner_instance_id",
        req.owner_instance_id.as_deref(),
        MAX_ID_BYTES,
    )?;
    let owner_instance_id = req.owner_instance_id.clone().filter(|o| !o.is_empty());
    let id = Uuid::new_v4();
    registry
        .submit(NewJob {
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

/// `GET /jobs`: filtered, newest first, keyset-paginated (docs/contract.md#get-jobs).
pub async fn list(registry: Data<Registry>, req: HttpRequest) -> Result<HttpResponse, ApiError> {
    let (jobs, next_cursor) = list_page(&registry, &Query::parse(&req)?).await?;
    Ok(HttpResponse::Ok().json(ListJobsResponse { jobs, next_cursor }))
}

/// One page of `GET /jobs` for these query parameters, and the cursor of the next page when
/// more rows follow; the dashboard's list takes the same parameters, rules and errors. (Long
/// because each parameter is checked in the reference's order.)
pub(super) async fn list_page(
    registry: &Registry,
    query: &Query,
) -> Result<(Vec<Job>, Option<String>), ApiError> {
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
    let page = registry
        .list_jobs(&JobListQuery {
            statuses,
            owner_instance_id: query.text("owner_instance_id").map(str::to_owned),
            capability: query.text("capability").map(str::to_owned),
            // Past the last representable second nothing can match: keep the filter at that
            // second rather than drop it.
            submitted_since: submitted_since
                .filter(|&s| s > 0)
                .and_then(|s| Timestamp::from_unix_seconds(s.min(Timestamp::MAX_UNIX_SECONDS))),
            after,
            limit: limit + 1,
        })
        .await
        .map_err(ApiError::store("list jobs"))?;
    let mut jobs = page.jobs;
    // More rows follow when the page has a row beyond `limit`, or when the byte budget ended it;
    // the cursor is the last row kept either way.
    let next_cursor = if page.cut || jobs.len() as i64 > limit {
        jobs.truncate(limit as usize);
        jobs.last()
            .map(|last| encode_list_cursor(last.submitted_at, last.id))
    } else {
        None
    };
    Ok((jobs, next_cursor))
}

/// `GET /jobs/{job_id}`: no side effects.
pub async fn get(registry: Data<Registry>, path: Path<String>) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(fetch_job(&registry, &path).await?))
}

/// The job a path names, or the API's answer for a bad id or an unknown job (the dashboard's
/// job page answers the same way).
pub(super) async fn fetch_job(registry: &Registry, path: &str) -> Result<Job, ApiError> {
    registry
        .job(path_job_id(path)?)
        .await
        .map_err(ApiError::store("fetch job"))?
        .ok_or_else(|| ApiError::job_not_found(path))
}

/// `POST /jobs/claim` (docs/contract.md#post-jobs-claim): at most one job per call; "no work"
/// is `{"claimed": []}`.
pub async fn claim(
    registry: Data<Registry>,
    JsonBody(req): JsonBody<ClaimRequest>,
) -> Result<HttpResponse, ApiError> {
    let capability = required(&req.capability, "capability is required")?;
    let capability = bounded("capability", capability, MAX_NAME_BYTES)?;
    let instance_id = required(&req.instance_id, "instance_id is required")?;
    let instance_id = bounded("instance_id", instance_id, MAX_ID_BYTES)?;
    let claimed = registry
        .claim(capability, instance_id)
        .await
        .map_err(ApiError::store("claim job"))?;
    Ok(HttpResponse::Ok().json(ClaimResponse {
        claimed: claimed.into_iter().collect(),
    }))
}

/// `POST /jobs/batch` (docs/contract.md#post-jobs-batch): each delta applies or is rejected on
/// its own, in order.
pub async fn batch(
    registry: Data<Registry>,
    JsonBody(req): JsonBody<BatchRequest>,
) -> Result<HttpResponse, ApiError> {
    let instance_id = required(&req.instance_id, "instance_id is required")?;
    let instance_id = bounded("instance_id", instance_id, MAX_ID_BYTES)?;
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
    for (i, delta) in deltas.iter().enumerate() {
        check_delta(i, delta)?;
    }
    let mut response = BatchResponse {
        accepted: 0,
        rejected: Vec::new(),
    };
    for delta in deltas {
        let raw_id = delta.id.clone().unwrap_or_default();
        let reason = match registry.apply_delta(instance_id, delta).await {
            Ok(DeltaOutcome::Accepted(_)) => {
                response.accepted += 1;
                continue;
            }
            Ok(DeltaOutcome::Rejected(reason)) => reason,
            // Nothing committed yet: the whole request fails and can be sent again as it is.
            Err(error) if response.accepted == 0 => {
                return Err(ApiError::store("apply deltas")(error))
            }
            // Earlier deltas committed: answer for each, this one to be sent again.
            Err(error) => {
                tracing::warn!(%error, job_id = raw_id, "delta not applied");
                RejectReason::Unavailable
            }
        };
        response.rejected.push(RejectedDelta { id: raw_id, reason });
    }
    Ok(HttpResponse::Ok().json(response))
}

/// A delta's strings: bounded, named by their place in the batch.
fn check_delta(i: usize, delta: &JobDelta) -> Result<(), ApiError> {
    let field = |name: &str| format!("deltas[{i}].{name}");
    let message = delta.progress_message.as_deref();
    bounded_opt(&field("progress_message"), message, MAX_TEXT_BYTES)?;
    bounded_opt(&field("error"), delta.error.as_deref(), MAX_TEXT_BYTES)?;
    for key in delta.recv_cursor.iter().flat_map(|cursor| cursor.keys()) {
        bounded(&field("recv_cursor"), key, MAX_NAME_BYTES)?;
    }
    Ok(())
}

/// `POST /jobs/{job_id}/release` (docs/contract.md#post-jobs-release): the owner hands the job
/// back.
pub async fn release(
    registry: Data<Registry>,
    path: Path<String>,
    JsonBody(req): JsonBody<ReleaseRequest>,
) -> Result<HttpResponse, ApiError> {
    let instance_id = req.instance_id.as_deref().map(str::trim).unwrap_or("");
    if instance_id.is_empty() {
        return Err(ApiError::BadRequest("instance_id is required".into()));
    }
    let instance_id = bounded("instance_id", instance_id, MAX_ID_BYTES)?;
    bounded_opt("reason", req.reason.as_deref(), MAX_TEXT_BYTES)?;
    let job_id = path_job_id(&path)?;
    match registry
        .release(job_id, instance_id, req.reason.as_deref())
        .await
        .map_err(ApiError::store("release job"))?
    {
        ReleaseOutcome::Released {
            status,
            attempt_count,
            ..
        } => Ok(HttpResponse::Ok().json(ReleaseResponse {
            status,
            attempt_count,
        })),
        ReleaseOutcome::NotFound => Err(ApiError::job_not_found(&path)),
        ReleaseOutcome::Terminal => Err(ApiError::Conflict(ALREADY_TERMINAL)),
        ReleaseOutcome::NotOwner => Err(ApiError::Forbidden(
            "caller is not the current owner of this job".into(),
        )),
    }
}

/// `POST /jobs/{job_id}/cancel` (docs/contract.md#post-jobs-cancel): cancelled and the synthetic
/// `cancelled` event appended in one statement; parked readers are woken; after the grace window
/// the caller is answered.
pub async fn cancel(
    registry: Data<Registry>,
    path: Path<String>,
    req: HttpRequest,
    body: Body,
) -> Result<HttpResponse, ApiError> {
    let cancel: CancelRequest = if body.0.is_empty() {
        CancelRequest::default()
    } else {
        body.json()?
    };
    bounded_opt("reason", cancel.reason.as_deref(), MAX_TEXT_BYTES)?;
    let forwarded_headers = FORWARDED_HEADERS
        .iter()
        .filter_map(|&name| Some((name, req.headers().get(name)?.to_str().ok()?.to_owned())))
        .collect();
    let cancelled = cancel_job(&registry, &path, cancel.reason, forwarded_headers).await?;
    Ok(HttpResponse::Ok().json(cancelled))
}

/// Cancels the job named `raw_id` with the API's rules and errors (the dashboard's cancel too).
pub(super) async fn cancel_job(
    registry: &Registry,
    raw_id: &str,
    reason: Option<String>,
    forwarded_headers: ForwardHeaders,
) -> Result<CancelResponse, ApiError> {
    let job_id = path_job_id(raw_id)?;
    let outcome = registry
        .cancel(job_id, reason.unwrap_or_default(), forwarded_headers)
        .await
        .map_err(ApiError::store("cancel job"))?;
    match outcome {
        CancelOutcome::Cancelled { previous_owner, .. } => Ok(CancelResponse {
            status: JobStatus::Cancelled,
            forwarded_to_instance_id: previous_owner,
        }),
        CancelOutcome::NotFound => Err(ApiError::job_not_found(raw_id)),
        CancelOutcome::Terminal => Err(ApiError::Conflict(ALREADY_TERMINAL)),
    }
}

/// Headers of the cancel request that travel with the forward to the owner.
const FORWARDED_HEADERS: [&str; 3] = ["X-Trace-ID", "X-Parent-Span", "X-Mesh-Timeout"];

/// `POST /jobs/{job_id}/reclaim` (docs/contract.md#post-jobs-reclaim): operator force-reclaim;
/// no body.
pub async fn reclaim(
    registry: Data<Registry>,
    path: Path<String>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(reclaim_job(&registry, &path).await?))
}

/// Force-reclaims the job named `raw_id` with the API's rules and errors (the dashboard's too).
pub(super) async fn reclaim_job(
    registry: &Registry,
    raw_id: &str,
) -> Result<ReclaimResponse, ApiError> {
    let job_id = path_job_id(raw_id)?;
    match registry
        .reclaim(job_id)
        .await
        .map_err(ApiError::store("reclaim job"))?
    {
        ReclaimOutcome::Reclaimed {
            status,
            previous_owner,
            claim_epoch,
            ..
        } => Ok(ReclaimResponse {
            status,
            previous_owner_instance_id: previous_owner,
            claim_epoch,
        }),
        ReclaimOutcome::NotFound => Err(ApiError::job_not_found(raw_id)),
        ReclaimOutcome::Terminal => Err(ApiError::Conflict(ALREADY_TERMINAL)),
    }
}
