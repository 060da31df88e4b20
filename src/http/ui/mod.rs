//! The dashboard at `/ui`: server-rendered pages over the service layer, the same rules and
//! errors as the API, and a small embedded script for live refresh and metric charts.
//!
//! Where it is served decides what it may do: on the admin listener (`MCP_MESH_ADMIN_PORT`) it
//! has actions (cancel, force-reclaim, drain, resume); on the public port, where it is served
//! only when there is no admin listener, it is read-only and the action routes do not exist.
//! Every action is a GET that renders a confirmation and a POST that acts; a POST is refused
//! unless the browser says it comes from a page of this same origin (`cross_origin`).
//! Pages render with `maud`, which escapes every value it interpolates.

mod pages;

use actix_web::http::header::{self, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::web::{self, Data, Path};
use actix_web::{guard, HttpRequest, HttpResponse, ResponseError};
use maud::Markup;

use super::admin::{drain_error, parse_scope};
use super::error::ApiError;
use super::extract::{client_address, Body, Query};
use super::jobs::{cancel_job, fetch_job, list_page, path_job_id, reclaim_job};
use super::validate::{bounded_opt, MAX_TEXT_BYTES};
use crate::service::Registry;
use crate::store::EventFilter;
use crate::wire::JobEvent;
use pages::{JobAction, Page};

/// Whether this listener's dashboard may act, or only show.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    ReadOnly,
    Admin,
}

/// Events a job page shows (the first ones; the timeline says when there are more).
const TIMELINE_EVENTS: i64 = 200;
/// How long the job page's live refresh parks on the job's event log before it re-renders.
const EVENT_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// `/ui/*`: the read-only pages, and the actions when `access` is `Admin`.
pub fn routes(access: Access) -> impl FnOnce(&mut web::ServiceConfig) {
    move |cfg| {
        let mut scope = web::scope("/ui")
            .app_data(Data::new(access))
            .service(web::resource("").guard(guard::Get()).to(home))
            .service(web::resource("/mesh").guard(guard::Get()).to(mesh))
            .service(web::resource("/jobs").guard(guard::Get()).to(jobs))
            .service(web::resource("/jobs/{job_id}").guard(guard::Get()).to(job))
            .service(
                web::resource("/jobs/{job_id}/wait")
                    .guard(guard::Get())
                    .to(wait_for_event),
            )
            .service(
                web::resource("/operations")
                    .guard(guard::Get())
                    .to(operations),
            )
            .service(web::resource("/ui.js").guard(guard::Get()).to(script))
            .service(web::resource("/ui.css").guard(guard::Get()).to(style));
        if access == Access::Admin {
            scope = scope
                .service(
                    web::resource("/jobs/{job_id}/{action}")
                        .guard(guard::Get())
                        .to(confirm_job_action),
                )
                .service(
                    web::resource("/jobs/{job_id}/{action}")
                        .guard(guard::Post())
                        .to(job_action),
                )
                .service(
                    web::resource("/drain")
                        .guard(guard::Get())
                        .to(confirm_drain),
                )
                .service(web::resource("/drain").guard(guard::Post()).to(drain));
        }
        cfg.service(scope);
    }
}

/// A rendered page with the headers every dashboard answer carries: nothing but our own script
/// and style runs or loads, no framing, no caching of live state.
fn html(status: StatusCode, markup: Markup) -> HttpResponse {
    HttpResponse::build(status)
        .content_type("text/html; charset=utf-8")
        .insert_header((header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .insert_header((header::X_FRAME_OPTIONS, "DENY"))
        .insert_header((header::REFERRER_POLICY, "same-origin"))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .body(markup.into_string())
}

const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
    style-src 'self'; img-src 'self'; connect-src 'self'; form-action 'self'; \
    frame-ancestors 'none'; base-uri 'none'";

/// An error as a page: the API's status and message for the same failure.
fn error_page(page: Page, error: ApiError) -> HttpResponse {
    html(error.status_code(), page.error(&error.to_string()))
}

/// The rendered page, or the error page with the API's status and message.
fn respond(page: Page, rendered: Result<Markup, ApiError>) -> HttpResponse {
    match rendered {
        Ok(markup) => html(StatusCode::OK, markup),
        Err(error) => error_page(page, error),
    }
}

/// `GET /ui`: the jobs page is the dashboard's front page.
async fn home() -> HttpResponse {
    see_other("/ui/jobs")
}

/// `GET /ui/mesh`: agents, their tools, and where each dependency resolves.
async fn mesh(registry: Data<Registry>, access: Data<Access>) -> HttpResponse {
    let page = Page::new(**access, "Mesh");
    let agents = registry
        .agents()
        .await
        .map_err(ApiError::store("list agents"));
    respond(page, agents.map(|agents| page.mesh(&agents)))
}

/// `GET /ui/jobs`: counts, and one page of `GET /jobs` with the same parameters and errors.
async fn jobs(registry: Data<Registry>, access: Data<Access>, req: HttpRequest) -> HttpResponse {
    let page = Page::new(**access, "Jobs");
    let rendered = async {
        let query = Query::parse(&req)?;
        let (jobs, next_cursor) = list_page(&registry, &query).await?;
        let counts = registry
            .job_counts()
            .await
            .map_err(ApiError::store("count jobs"))?;
        Ok(page.jobs(&query, &counts, &jobs, next_cursor.as_deref()))
    };
    respond(page, rendered.await)
}

/// `GET /ui/jobs/{job_id}`: the job, its lease, and its event timeline.
async fn job(
    registry: Data<Registry>,
    access: Data<Access>,
    path: Path<String>,
    req: HttpRequest,
) -> HttpResponse {
    let page = Page::new(**access, "Job");
    let rendered = async {
        let job = fetch_job(&registry, &path).await?;
        let job_id = job.id;
        let filter = EventFilter {
            after: 0,
            types: None,
            limit: TIMELINE_EVENTS,
        };
        let events =
            read_events(&registry, &req, job_id, &filter, std::time::Duration::ZERO).await?;
        let done = Query::parse(&req)?.get("done").map(str::to_owned);
        Ok(page.job(&job, &events, TIMELINE_EVENTS, done.as_deref()))
    };
    respond(page, rendered.await)
}

/// `GET /ui/jobs/{job_id}/wait?after=N`: the live refresh of a job page parks here (the event
/// log's own long-poll) until an event after `after` exists or a few seconds passed; 204.
async fn wait_for_event(
    registry: Data<Registry>,
    path: Path<String>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let job_id = path_job_id(&path)?;
    let filter = EventFilter {
        after: Query::parse(&req)?.int("after")?.unwrap_or(0).max(0),
        types: None,
        limit: 1,
    };
    read_events(&registry, &req, job_id, &filter, EVENT_WAIT).await?;
    Ok(HttpResponse::NoContent().finish())
}

async fn read_events(
    registry: &Registry,
    req: &HttpRequest,
    job_id: uuid::Uuid,
    filter: &EventFilter,
    wait: std::time::Duration,
) -> Result<Vec<JobEvent>, ApiError> {
    use crate::service::EventsRead;
    match registry
        .read_events(job_id, client_address(req), None, filter, wait)
        .await
        .map_err(ApiError::store("list events"))?
    {
        EventsRead::Page(events) => Ok(events),
        EventsRead::NotFound => Err(ApiError::job_not_found(&job_id.to_string())),
        // Every long-poll slot is taken: the page simply refreshes a little later.
        EventsRead::Busy | EventsRead::Superseded => Ok(Vec::new()),
    }
}

/// `GET /ui/operations`: drain state, live claims, job counts, and the metric charts.
async fn operations(registry: Data<Registry>, access: Data<Access>) -> HttpResponse {
    let page = Page::new(**access, "Operations");
    let rendered = async {
        let drain = registry.drain_status().await.map_err(drain_error)?;
        let counts = registry
            .job_counts()
            .await
            .map_err(ApiError::store("count jobs"))?;
        Ok(page.operations(&drain, &counts))
    };
    respond(page, rendered.await)
}

/// `GET /ui/jobs/{job_id}/{cancel|reclaim}`: the confirmation.
async fn confirm_job_action(access: Data<Access>, path: Path<(String, String)>) -> HttpResponse {
    let page = Page::new(**access, "Confirm");
    let (job_id, action) = path.into_inner();
    match (path_job_id(&job_id), JobAction::parse(&action)) {
        (Ok(job_id), Some(action)) => html(StatusCode::OK, page.confirm_job(action, job_id)),
        (Err(error), _) => error_page(page, error),
        (Ok(_), None) => not_found(),
    }
}

/// `POST /ui/jobs/{job_id}/{cancel|reclaim}`: the API's cancel or reclaim, then back to the job.
async fn job_action(
    registry: Data<Registry>,
    access: Data<Access>,
    path: Path<(String, String)>,
    req: HttpRequest,
    body: Body,
) -> HttpResponse {
    let page = Page::new(**access, "Job");
    let (job_id, action) = path.into_inner();
    let Some(action) = JobAction::parse(&action) else {
        return not_found();
    };
    let acted = async {
        refuse_cross_origin(&req)?;
        let form = Form::parse(&body);
        match action {
            JobAction::Cancel => {
                let reason = form.get("reason").filter(|r| !r.trim().is_empty());
                bounded_opt("reason", reason, MAX_TEXT_BYTES)?;
                let reason = reason.map(str::to_owned);
                cancel_job(&registry, &job_id, reason, Vec::new()).await?;
            }
            JobAction::Reclaim => {
                reclaim_job(&registry, &job_id).await?;
            }
        }
        Ok::<_, ApiError>(())
    };
    match acted.await {
        Ok(()) => see_other(&format!("/ui/jobs/{job_id}?done={}", action.keyword())),
        Err(error) => error_page(page, error),
    }
}

/// `GET /ui/drain?scope=…&action=drain|resume`: the confirmation of a drain or a resume.
async fn confirm_drain(access: Data<Access>, req: HttpRequest) -> HttpResponse {
    let page = Page::new(**access, "Confirm");
    let confirmed = (|| {
        let query = Query::parse(&req)?;
        let scope = parse_scope(query.get("scope"))?;
        let resume = query.get("action") == Some("resume");
        Ok::<_, ApiError>(page.confirm_drain(resume, scope))
    })();
    respond(page, confirmed)
}

/// `POST /ui/drain` (form: `scope`, `action=drain|resume`): `/admin/drain`'s drain or resume.
async fn drain(
    registry: Data<Registry>,
    access: Data<Access>,
    req: HttpRequest,
    body: Body,
) -> HttpResponse {
    let page = Page::new(**access, "Operations");
    let acted = async {
        refuse_cross_origin(&req)?;
        let form = Form::parse(&body);
        let scope = parse_scope(form.get("scope"))?;
        match form.get("action") {
            Some("drain") => registry.drain(scope).await.map_err(drain_error)?,
            Some("resume") => registry.resume(scope).await.map_err(drain_error)?,
            _ => {
                return Err(ApiError::BadRequest(
                    "action must be drain or resume".into(),
                ))
            }
        };
        Ok(())
    };
    match acted.await {
        Ok(()) => see_other("/ui/operations"),
        Err(error) => error_page(page, error),
    }
}

/// A form body's fields (`application/x-www-form-urlencoded`); the first value of each wins.
struct Form(Vec<(String, String)>);

impl Form {
    fn parse(body: &Body) -> Form {
        Form(form_urlencoded::parse(&body.0).into_owned().collect())
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }
}

/// Refuses a POST that a browser sent from another origin (cross-site request forgery): the
/// browser's `Sec-Fetch-Site` must say `same-origin`, or, from a browser that does not send it,
/// `Origin` must name this very host. A request with neither is not from a page of ours.
fn refuse_cross_origin(req: &HttpRequest) -> Result<(), ApiError> {
    let header = |name| {
        req.headers()
            .get(name)
            .and_then(|v| HeaderValue::to_str(v).ok())
    };
    let same_origin = match (header("sec-fetch-site"), header("origin")) {
        (Some(site), _) => site == "same-origin",
        (None, Some(origin)) => {
            let host = header("host").unwrap_or_default();
            origin
                .split_once("://")
                .is_some_and(|(_, authority)| !host.is_empty() && authority == host)
        }
        (None, None) => false,
    };
    match same_origin {
        true => Ok(()),
        false => Err(ApiError::Forbidden(
            "cross-origin request refused: dashboard actions come from its own pages".into(),
        )),
    }
}

fn see_other(location: &str) -> HttpResponse {
    HttpResponse::SeeOther()
        .insert_header((header::LOCATION, location))
        .finish()
}

/// gin's 404, as every unknown route answers.
fn not_found() -> HttpResponse {
    HttpResponse::NotFound()
        .content_type("text/plain")
        .body("404 page not found")
}

/// `GET /ui/ui.js`: embedded in the binary.
async fn script() -> HttpResponse {
    asset("text/javascript; charset=utf-8", include_str!("ui.js"))
}

/// `GET /ui/ui.css`: embedded in the binary.
async fn style() -> HttpResponse {
    asset("text/css; charset=utf-8", include_str!("ui.css"))
}

fn asset(content_type: &'static str, body: &'static str) -> HttpResponse {
    HttpResponse::Ok()
        .content_type(content_type)
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .body(body)
}
