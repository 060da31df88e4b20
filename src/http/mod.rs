//! The HTTP layer: routes and the fallbacks that make unknown routes answer like
//! the reference (gin): `404 page not found`, and a redirect for a trailing slash.
//!
//! Handlers parse and validate, call one method of the service layer (`crate::service`), and
//! render its answer; they hold no state and never talk to the actors.
//!
//! Routing is by method *and* path (each resource carries its method guard), so `GET /jobs/claim`
//! reaches `GET /jobs/{job_id}` exactly as it does in the reference.

mod admin;
mod agents;
mod error;
mod events;
mod extract;
mod health;
mod info;
mod jobs;
mod mesh_events;
mod metrics;
mod proxy;
mod schemas;
mod tls;
mod trace;
pub mod ui;
mod validate;

use actix_web::http::{header, Method, StatusCode};
use actix_web::{guard, web, HttpRequest, HttpResponse};

pub use error::ApiError;
pub use extract::BodyLimit;
pub use metrics::measure;
pub use tls::{keep_peer_certificates, server_config, verify_client, RegistrationTrust};

/// `/admin/*`: on the public port, or alone on `MCP_MESH_ADMIN_PORT` when that is set.
pub fn admin_routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/admin/drain")
            .guard(guard::Get())
            .to(admin::status),
    )
    .service(
        web::resource("/admin/drain")
            .guard(guard::Post())
            .to(admin::drain),
    )
    .service(
        web::resource("/admin/drain")
            .guard(guard::Delete())
            .to(admin::resume),
    )
    .service(
        web::resource("/admin/entities")
            .guard(guard::Get())
            .to(admin::entities),
    )
    .service(
        web::resource("/admin/rotate")
            .guard(guard::Post())
            .to(admin::rotate),
    );
}

/// `GET /metrics`: on the admin port when there is one, else on the public port.
pub fn metrics_route(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/metrics")
            .guard(guard::Get())
            .to(metrics::metrics),
    );
}

/// The fallback of every server: gin's 404 and trailing-slash redirect.
pub fn fallback_route(cfg: &mut web::ServiceConfig) {
    cfg.default_service(web::to(fallback));
}

/// The public API (without `/admin/*` and without the fallback). Hot routes come first and
/// `/jobs` is a scope: dynamic path segments are matched by regular expressions, so the fewer a
/// request is tried against, the cheaper its routing. (Long because it is the route table:
/// one entry per route, read best whole.)
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::scope("/jobs")
            .service(web::resource("/claim").guard(guard::Post()).to(jobs::claim))
            .service(web::resource("/batch").guard(guard::Post()).to(jobs::batch))
            .service(web::resource("").guard(guard::Get()).to(jobs::list))
            .service(web::resource("").guard(guard::Post()).to(jobs::create))
            .service(web::resource("/{job_id}").guard(guard::Get()).to(jobs::get))
            .service(
                web::resource("/{job_id}/events")
                    .guard(guard::Get())
                    .to(events::list),
            )
            .service(
                web::resource("/{job_id}/events")
                    .guard(guard::Post())
                    .to(events::post),
            )
            .service(
                web::resource("/{job_id}/cancel")
                    .guard(guard::Post())
                    .to(jobs::cancel),
            )
            .service(
                web::resource("/{job_id}/release")
                    .guard(guard::Post())
                    .to(jobs::release),
            )
            .service(
                web::resource("/{job_id}/reclaim")
                    .guard(guard::Post())
                    .to(jobs::reclaim),
            ),
    )
    .service(
        web::resource("/heartbeat/{agent_id}")
            .guard(guard::Head())
            .to(agents::beat),
    )
    .service(
        web::resource("/heartbeat")
            .guard(guard::Post())
            .to(agents::register),
    )
    .service(
        web::resource("/health")
            .guard(guard::Any(guard::Get()).or(guard::Head()))
            .to(health::health),
    )
    .service(
        web::resource("/ready")
            .guard(guard::Any(guard::Get()).or(guard::Head()))
            .to(health::ready),
    )
    .service(
        web::resource("/proxy/{target:.*}")
            .guard(guard::Post())
            .to(proxy::post),
    )
    .service(
        web::resource("/proxy/{target:.*}")
            .guard(guard::Get())
            .to(proxy::get),
    )
    .service(web::resource("/").guard(guard::Get()).to(info::root))
    .service(
        web::resource("/events")
            .guard(guard::Get())
            .to(mesh_events::list),
    )
    .service(
        web::resource("/schemas")
            .guard(guard::Get())
            .to(schemas::list),
    )
    .service(
        web::resource("/schemas/{hash}")
            .guard(guard::Get())
            .to(schemas::get),
    )
    .service(
        web::resource("/agents")
            .guard(guard::Get())
            .to(agents::list),
    )
    .service(
        web::resource("/agents/{agent_id}")
            .guard(guard::Get())
            .to(agents::get),
    )
    .service(
        web::resource("/agents/{agent_id}")
            .guard(guard::Delete())
            .to(agents::deregister),
    )
    .service(
        web::resource("/trace/status")
            .guard(guard::Get())
            .to(trace::status),
    )
    .service(
        web::resource("/trace/stats")
            .guard(guard::Get())
            .to(trace::stats),
    )
    .service(
        web::resource("/trace/info")
            .guard(guard::Get())
            .to(trace::info),
    )
    .service(
        web::resource("/trace/{trace_id}")
            .guard(guard::Get())
            .to(trace::trace),
    );
}

/// Unknown route or method: gin's answer. A path with a trailing slash whose trimmed form is a
/// route is redirected there (301 for GET, 307 otherwise, keeping the method and body).
async fn fallback(req: HttpRequest) -> HttpResponse {
    let path = req.path();
    if let Some(trimmed) = path.strip_suffix('/').filter(|p| !p.is_empty()) {
        if req.resource_map().has_resource(trimmed) {
            let location = match req.query_string() {
                "" => trimmed.to_owned(),
                query => format!("{trimmed}?{query}"),
            };
            let status = if req.method() == Method::GET {
                StatusCode::MOVED_PERMANENTLY
            } else {
                StatusCode::TEMPORARY_REDIRECT
            };
            return HttpResponse::build(status)
                .insert_header((header::LOCATION, location))
                .finish();
        }
    }
    HttpResponse::NotFound()
        .content_type("text/plain")
        .body("404 page not found")
}
