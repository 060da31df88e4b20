//! Startup and shutdown: builds the application (store, actors, HTTP server on its own listener)
//! and runs it until a shutdown signal. Tests build the same `Application` on port 0.

use std::future::Future;
use std::net::TcpListener;
use std::process::ExitCode;
use std::rc::Rc;
use std::sync::Arc;

use actix::{Actor, Addr};
use actix_web::dev::Server;
use actix_web::middleware::{from_fn, Condition};
use actix_web::web::Data;
use actix_web::{App, HttpServer};
use mesh_registry_actors::{
    AgentTracker, DrainGate, DrainScope, EventHub, EventPosted, Notifications, RemoteLeases,
    SetDrain, Shutdown, Supervisor, SupervisorSettings, TrackerSettings,
};
use tracing_actix_web::TracingLogger;

use crate::cli::ServeArgs;
use crate::config::{Config, TlsSettings};
use crate::http::{self, BodyLimit, RegistrationTrust};
use crate::metrics::{MeteredDirectory, Metrics};
use crate::service::{Actors, AgentTls, ProxySettings, Registry, Settings};
use crate::store::{Backend, ConnectError, Notice, Store};
use crate::telemetry::{self, RequestSpan};
use crate::tls::{ReloadingIdentity, TlsMode};
use crate::trace_pipeline::TracePipeline;
use crate::trust::TrustChain;

/// A client must send its request line and headers within this (a slow client cannot hold a
/// connection open by trickling them).
const HEADER_READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);
/// How long a connection may take to close once the response was sent.
const DISCONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(1);

/// How often HEAD heartbeats collected in memory are written (far below any agent timeout).
const HEARTBEAT_FLUSH_INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);

#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error(transparent)]
    Database(#[from] ConnectError),
    #[error("cannot build the client for calls to agents: {0}")]
    AgentClient(String),
    #[error("TLS: {0}")]
    Tls(String),
    #[error("cannot listen on {address}: {source}")]
    Listen {
        address: String,
        source: std::io::Error,
    },
}

pub struct Application {
    /// The public server, and the admin server when `/admin/*` has its own port.
    servers: Vec<Server>,
    port: u16,
    admin_port: Option<u16>,
    actors: Actors,
    store: Store,
    /// The distributed-trace pipeline, when enabled.
    trace_pipeline: Option<Arc<TracePipeline>>,
}

impl Application {
    /// Connects and migrates the database, starts the actors and binds the listeners. Must run
    /// inside an actix system (the actors live on its arbiter).
    pub async fn build(config: &Config) -> Result<Application, StartupError> {
        let tls = Tls::read(&config.tls)?;
        let store = open_store(config).await?;
        // Listen before starting anything: a port in use ends the start before any actor runs.
        let public_listener = bind(&config.host, config.port)?;
        let admin_listener = match config.admin_port {
            None => None,
            Some(port) => Some(bind(&config.admin_host, port)?),
        };
        let metrics = Metrics::new(config.metrics.clone(), &store);
        let (actors, drain_gate) = start_actors(&store, config, &metrics);
        let registry = Data::new(
            Registry::new(
                store.clone(),
                actors.clone(),
                drain_gate,
                Settings {
                    cancel_event_grace: config.cancel_event_grace,
                    job_stale_timeout: config.job_stale_timeout,
                    max_page_bytes: config.max_page_bytes as i64,
                    proxy: ProxySettings {
                        timeout: config.proxy_timeout,
                        propagate: config.propagate_headers.clone(),
                        max_streams: config.proxy_max_streams,
                    },
                    agent_tls: tls.agent.clone(),
                },
                metrics.clone(),
            )
            .map_err(StartupError::AgentClient)?,
        );
        let metrics = Data::from(metrics);
        let trace_pipeline = start_trace_pipeline(config, &metrics);
        let port = public_listener.1;
        let mut servers = vec![public_server(
            config,
            public_listener.0,
            registry.clone(),
            metrics.clone(),
            &tls,
            trace_pipeline.clone().map(Data::from),
        )?];
        let admin_port = match admin_listener {
            None => None,
            Some((listener, bound)) => {
                servers.push(admin_server(
                    config, listener, registry, metrics, tls.trust,
                )?);
                Some(bound)
            }
        };
        Ok(Application {
            servers,
            port,
            admin_port,
            actors,
            store,
            trace_pipeline,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The port `/admin/*` is served on when it has its own.
    pub fn admin_port(&self) -> Option<u16> {
        self.admin_port
    }

    /// Serves until `shutdown` resolves, then stops accepting, releases parked long-polls and
    /// lets in-flight requests finish (up to the shutdown timeout).
    pub async fn run_until(
        self,
        shutdown: impl Future<Output = ()> + 'static,
    ) -> std::io::Result<()> {
        let handles: Vec<_> = self.servers.iter().map(Server::handle).collect();
        let broken = Rc::new(std::cell::Cell::new(false));
        let watchdog = watch_parts(self.actors.clone(), self.store.clone(), broken.clone());
        let Actors {
            event_hub,
            agent_tracker,
            supervisor,
        } = self.actors;
        actix_web::rt::spawn(async move {
            tokio::select! {
                _ = shutdown => {}
                _ = watchdog => {}
            }
            tracing::info!("shutting down: finishing in-flight requests");
            // No reclaim or health verdict while stopping: the next registry decides.
            supervisor.do_send(Shutdown);
            agent_tracker.do_send(Shutdown);
            event_hub.do_send(Shutdown);
            for handle in handles {
                handle.stop(true).await;
            }
        });
        let served = futures_util::future::try_join_all(self.servers).await;
        if let Some(pipeline) = &self.trace_pipeline {
            pipeline.stop();
        }
        // Nothing is served any more: release the database (and the embedded file's lock).
        self.store.close().await;
        served?;
        match broken.get() {
            true => Err(std::io::Error::other(
                "a part of the registry stopped (see the log); exiting so that it is restarted",
            )),
            false => Ok(()),
        }
    }
}

/// Resolves when an actor or the store's thread has stopped: the replica then stops too (and
/// exits non-zero) rather than answer while no longer reclaiming leases.
async fn watch_parts(actors: Actors, store: Store, broken: Rc<std::cell::Cell<bool>>) {
    let mut every = tokio::time::interval(std::time::Duration::from_secs(1));
    loop {
        every.tick().await;
        if !(actors.alive() && store.alive()) {
            tracing::error!("an actor or the store's thread stopped; stopping this replica");
            broken.set(true);
            return;
        }
    }
}

/// Opens the database the configuration names, migrated and checked, and says which it is.
async fn open_store(config: &Config) -> Result<Store, StartupError> {
    let store =
        Store::connect(&config.database_url, &config.db_schema, config.db_pool_size).await?;
    match store.backend() {
        Backend::Postgres => tracing::info!(
            "storage: PostgreSQL at {}, schema {} (replicas may share it)",
            store.target(),
            config.db_schema
        ),
        Backend::Embedded => tracing::info!(
            "storage: embedded SQLite file {} (this process only; fleet-wide drain and \
             cross-replica notifications are PostgreSQL features and unavailable here)",
            store.target()
        ),
    }
    Ok(store)
}

/// Starts this replica's actors on the current arbiter, wired to the store and to what other
/// replicas announce; returns them and the drain gate the supervisor owns.
fn start_actors(store: &Store, config: &Config, metrics: &Arc<Metrics>) -> (Actors, DrainGate) {
    let event_hub = EventHub::new(config.max_long_polls, config.max_long_polls_per_client).start();
    let agent_tracker = AgentTracker::new(
        Rc::new(store.clone()),
        TrackerSettings {
            flush_every: HEARTBEAT_FLUSH_INTERVAL,
            check_every: config.health_check_interval,
            silent_for: config.agent_timeout,
        },
    )
    .start();
    let (supervisor, drain_gate) = Supervisor::new(
        Rc::new(MeteredDirectory {
            store: store.clone(),
            metrics: metrics.clone(),
        }),
        SupervisorSettings {
            sweep_every: config.sweep_interval,
            startup_grace: config.startup_grace,
            stale_timeout: config.job_stale_timeout,
            retention: config.retention,
            job_row_retention: config.job_row_retention,
        },
        event_hub.clone().recipient(),
    );
    let supervisor = supervisor.start();
    match store.listen() {
        Some(notices) => forward_notices(notices, event_hub.clone(), supervisor.clone()),
        // One process: every wake-up is local, nothing can be missed.
        None => event_hub.do_send(Notifications { arriving: true }),
    }
    let actors = Actors {
        event_hub,
        agent_tracker,
        supervisor,
    };
    (actors, drain_gate)
}

/// The trace pipeline when `MCP_MESH_DISTRIBUTED_TRACING_ENABLED` asks for it. It cannot stop
/// the registry from starting: when it cannot start, the registry runs without it (the
/// reference's rule), saying why.
fn start_trace_pipeline(config: &Config, metrics: &Metrics) -> Option<Arc<TracePipeline>> {
    let settings = config.trace_pipeline.clone()?;
    match TracePipeline::start(settings, metrics.trace.clone()) {
        Ok(pipeline) => Some(pipeline),
        Err(error) => {
            tracing::error!("trace pipeline: cannot start ({error}); running without it");
            None
        }
    }
}

/// Binds `host:port` (port 0: any free one); the listener and the port it got.
fn bind(host: &str, port: u16) -> Result<(TcpListener, u16), StartupError> {
    let listen_error = |source| StartupError::Listen {
        address: format!("{host}:{port}"),
        source,
    };
    let listener = TcpListener::bind((host, port)).map_err(listen_error)?;
    let bound = listener.local_addr().map_err(listen_error)?.port();
    Ok((listener, bound))
}

/// The TLS side of the configuration, read (and every file checked) before anything listens.
struct Tls {
    /// The public listener's, when `MCP_MESH_TLS_MODE` is not `off`.
    server: Option<rustls::ServerConfig>,
    /// The trust chain (for `/admin/entities` even when TLS is off, as the reference lists the
    /// trust directory then).
    trust: Data<RegistrationTrust>,
    /// Calls to agents over HTTPS: with the CA, the certificate and its key all given (in any
    /// mode, as the reference reads them for its calls whatever the mode).
    agent: Option<AgentTls>,
}

impl Tls {
    fn read(settings: &TlsSettings) -> Result<Tls, StartupError> {
        // Read when something uses it: the listener, or the calls to agents (which need the CA).
        let wanted = settings.mode != TlsMode::Off || settings.ca.is_some();
        let identity = match (&settings.cert, &settings.key) {
            (Some(cert), Some(key)) if wanted => {
                Some(ReloadingIdentity::load(cert, key).map_err(StartupError::Tls)?)
            }
            _ => None,
        };
        let agent = match (&settings.ca, &identity) {
            (Some(ca), Some(identity)) => Some(AgentTls {
                roots: crate::tls::roots(ca).map_err(StartupError::Tls)?,
                identity: identity.clone(),
            }),
            _ => None,
        };
        if settings.mode != TlsMode::Off && agent.is_none() {
            tracing::warn!(
                "MCP_MESH_TLS_CA is not set: calls to agents that registered with a trusted \
                 client certificate go over HTTPS believing the public web's CAs only and \
                 presenting no certificate (set it to the CA of the agents' certificates)"
            );
        }
        let (server, chain) = match settings.mode {
            TlsMode::Off => {
                // Only listed, never enforced: a trust directory that is not there (the
                // reference's chart names one without mounting it) lists nothing, as there.
                let dir = settings.trust_dir.as_deref().filter(|dir| {
                    let there = dir.is_dir();
                    if !there {
                        tracing::info!(dir = %dir.display(), "TLS is off and MCP_MESH_TRUST_DIR is not a directory: no trusted entities to list");
                    }
                    there
                });
                let listed = if dir.is_some() { "filestore" } else { "" };
                (None, TrustChain::configure(listed, dir))
            }
            mode => {
                let Some(identity) = identity else {
                    let mode = if mode == TlsMode::Strict {
                        "strict"
                    } else {
                        "auto"
                    };
                    return Err(StartupError::Tls(format!(
                        "TLS mode {mode:?} requires MCP_MESH_TLS_CERT and MCP_MESH_TLS_KEY to \
                         be set; use MCP_MESH_TLS_MODE=off to run plaintext"
                    )));
                };
                let server = http::server_config(identity).map_err(StartupError::Tls)?;
                let chain =
                    TrustChain::configure(&settings.trust_backend, settings.trust_dir.as_deref());
                (Some(server), chain)
            }
        };
        Ok(Tls {
            server,
            trust: Data::new(RegistrationTrust {
                mode: settings.mode,
                chain: chain.map_err(StartupError::Tls)?,
            }),
            agent,
        })
    }
}

/// The public API, with `/admin/*` too unless it has a port of its own; HTTPS when TLS is on.
fn public_server(
    config: &Config,
    listener: TcpListener,
    registry: Data<Registry>,
    metrics: Data<Metrics>,
    tls: &Tls,
    trace_pipeline: Option<Data<TracePipeline>>,
) -> Result<Server, StartupError> {
    let body_limit = BodyLimit(config.max_body_bytes);
    let admin_separate = config.admin_port.is_some();
    let measured = metrics.enabled();
    // Without an admin listener the dashboard is here, read-only: anyone who can reach the
    // public port can read it, and nothing it serves can change anything.
    let ui = config.ui && !admin_separate;
    let trust = tls.trust.clone();
    let server = HttpServer::new(move || {
        App::new()
            .wrap(Condition::new(measured, from_fn(http::measure)))
            .wrap(TracingLogger::<RequestSpan>::new())
            .app_data(registry.clone())
            .app_data(metrics.clone())
            .app_data(trust.clone())
            .app_data(body_limit)
            .wrap(actix_web::middleware::from_fn(http::verify_client))
            .configure(|cfg| {
                if let Some(pipeline) = &trace_pipeline {
                    cfg.app_data(pipeline.clone());
                }
            })
            .configure(http::routes)
            .configure(|cfg| {
                if !admin_separate {
                    http::admin_routes(cfg);
                    if measured {
                        http::metrics_route(cfg);
                    }
                }
                if ui {
                    http::ui::routes(http::ui::Access::ReadOnly)(cfg);
                }
            })
            .configure(http::fallback_route)
    })
    .on_connect(http::keep_peer_certificates)
    .workers(config.http_workers)
    .max_connections(config.max_connections.div_ceil(config.http_workers).max(1))
    .client_request_timeout(HEADER_READ_TIMEOUT)
    .client_disconnect_timeout(DISCONNECT_TIMEOUT)
    .disable_signals()
    .shutdown_timeout(config.shutdown_timeout.as_secs());
    let server = match &tls.server {
        None => server.listen(listener),
        Some(tls) => server.listen_rustls_0_23(listener, tls.clone()),
    };
    let server = server
        .map_err(|source| StartupError::Listen {
            address: format!("{}:{}", config.host, config.port),
            source,
        })?
        .run();
    Ok(server)
}

/// `/admin/*` alone on its own port: plain HTTP on `MCP_MESH_ADMIN_HOST` (every interface by
/// default, as the reference, so probes and operators reach each replica directly; 127.0.0.1 or
/// the pod's address narrows it).
fn admin_server(
    config: &Config,
    listener: TcpListener,
    registry: Data<Registry>,
    metrics: Data<Metrics>,
    trust: Data<RegistrationTrust>,
) -> Result<Server, StartupError> {
    let measured = metrics.enabled();
    let ui = config.ui;
    let server = HttpServer::new(move || {
        App::new()
            .wrap(Condition::new(measured, from_fn(http::measure)))
            .wrap(TracingLogger::<RequestSpan>::new())
            .app_data(registry.clone())
            .app_data(metrics.clone())
            .app_data(trust.clone())
            .configure(http::admin_routes)
            .configure(|cfg| {
                if measured {
                    http::metrics_route(cfg);
                }
                if ui {
                    http::ui::routes(http::ui::Access::Admin)(cfg);
                }
            })
            .configure(http::fallback_route)
    })
    .workers(1)
    .client_request_timeout(HEADER_READ_TIMEOUT)
    .client_disconnect_timeout(DISCONNECT_TIMEOUT)
    .disable_signals()
    .shutdown_timeout(config.shutdown_timeout.as_secs())
    .listen(listener)
    .map_err(|source| StartupError::Listen {
        address: format!(
            "{}:{}",
            config.admin_host,
            config.admin_port.unwrap_or_default()
        ),
        source,
    })?
    .run();
    Ok(server)
}

/// Hands what other replicas announce (through PostgreSQL) to the actors it concerns.
fn forward_notices(
    mut notices: tokio::sync::mpsc::Receiver<Notice>,
    event_hub: Addr<EventHub>,
    supervisor: Addr<Supervisor>,
) {
    actix_web::rt::spawn(async move {
        while let Some(notice) = notices.recv().await {
            match notice {
                Notice::EventPosted(job_id) => event_hub.do_send(EventPosted { job_id }),
                Notice::Leases(changes) => supervisor.do_send(RemoteLeases(changes)),
                Notice::FleetDrain(draining) => supervisor.do_send(SetDrain {
                    scope: DrainScope::Fleet,
                    draining,
                }),
                Notice::Lost => event_hub.do_send(Notifications { arriving: false }),
                Notice::Listening => event_hub.do_send(Notifications { arriving: true }),
            }
        }
    });
}

/// Resolves on the first SIGTERM or SIGINT.
pub async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => tracing::info!("received SIGTERM"),
                _ = int.recv() => tracing::info!("received SIGINT"),
            }
        }
        _ => {
            tracing::error!("cannot install signal handlers; stop the registry with SIGKILL");
            std::future::pending::<()>().await;
        }
    }
}

/// `mesh-registry serve`: run until SIGTERM/SIGINT; exit 0 after a graceful stop, 1 (with one
/// clear error line) when the registry cannot start.
pub fn serve(args: &ServeArgs) -> ExitCode {
    let otlp_endpoint = args
        .otlp_endpoint
        .as_deref()
        .filter(|e| !e.trim().is_empty());
    let (_telemetry, telemetry_warnings) =
        telemetry::init(&args.log_level, args.debug_mode, otlp_endpoint);
    let (config, warnings) = Config::from_args(args);
    for warning in telemetry_warnings.into_iter().chain(warnings) {
        tracing::warn!("{warning}");
    }
    let outcome = actix_web::rt::System::new().block_on(async move {
        let app = Application::build(&config).await?;
        tracing::info!(
            "mesh-registry {} listening on {}:{}",
            env!("CARGO_PKG_VERSION"),
            config.host,
            app.port()
        );
        if let Some(admin_port) = app.admin_port() {
            tracing::info!("admin endpoints on {}:{admin_port} only", config.admin_host);
        }
        app.run_until(shutdown_signal())
            .await
            .map_err(|source| StartupError::Listen {
                address: format!("{}:{}", config.host, config.port),
                source,
            })
    });
    match outcome {
        Ok(()) => {
            tracing::info!("stopped");
            ExitCode::SUCCESS
        }
        Err(error) => fail(error),
    }
}

fn fail(error: impl std::fmt::Display) -> ExitCode {
    eprintln!("mesh-registry: error: {error}");
    ExitCode::FAILURE
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;
    use std::time::Duration;

    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Flags {
        #[command(flatten)]
        serve: ServeArgs,
    }

    /// Issue 14, item 7: a replica whose supervisor stopped must not keep answering as if it
    /// still reclaimed leases. Real actors on a real (embedded) store; one of them stops.
    #[actix_web::test]
    async fn a_stopped_actor_stops_the_replica() {
        let directory = std::env::temp_dir().join(format!("mesh-parts-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&directory).unwrap();
        let file = directory.join("parts.db");
        let flags = Flags::parse_from(["mesh-registry", "--database-url", file.to_str().unwrap()]);
        let (config, _) = Config::from_args(&flags.serve);
        let store = open_store(&config).await.expect("the embedded store");
        let metrics = Metrics::new(config.metrics.clone(), &store);
        let (actors, _gate) = start_actors(&store, &config, &metrics);
        let broken = Rc::new(Cell::new(false));
        let watched =
            actix_web::rt::spawn(watch_parts(actors.clone(), store.clone(), broken.clone()));
        actix_web::rt::time::sleep(Duration::from_millis(1_500)).await;
        assert!(
            !watched.is_finished(),
            "every part is alive: the watch goes on"
        );

        actors.supervisor.do_send(Shutdown);
        tokio::time::timeout(Duration::from_secs(5), watched)
            .await
            .expect("the watch notices within seconds")
            .unwrap();
        assert!(
            broken.get(),
            "the replica is marked broken: it exits non-zero"
        );
        store.close().await;
        let _ = std::fs::remove_dir_all(&directory);
    }
}
