//! Startup and shutdown: builds the application (store, actors, HTTP server on its own listener)
//! and runs it until a shutdown signal. Tests build the same `Application` on port 0.

use std::future::Future;
use std::net::TcpListener;
use std::process::ExitCode;
use std::time::Instant;

use actix::{Actor, Addr};
use actix_web::dev::Server;
use actix_web::web::Data;
use actix_web::{App, HttpServer};
use mesh_registry_actors::{
    AgentTracker, EventHub, Shutdown, Supervisor, SupervisorSettings, TrackerSettings,
};

use crate::cli::ServeArgs;
use crate::config::Config;
use crate::http::{self, AppState, BodyLimit};
use crate::store::{ConnectError, Store};
use crate::telemetry;

/// How often HEAD heartbeats collected in memory are written (far below any agent timeout).
const HEARTBEAT_FLUSH_INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);

#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error(transparent)]
    Database(#[from] ConnectError),
    #[error("cannot listen on {address}: {source}")]
    Listen {
        address: String,
        source: std::io::Error,
    },
}

pub struct Application {
    server: Server,
    port: u16,
    event_hub: Addr<EventHub>,
    agent_tracker: Addr<AgentTracker>,
    supervisor: Addr<Supervisor>,
}

impl Application {
    /// Connects and migrates the database, starts the actors and binds the listener. Must run
    /// inside an actix system (the actors live on its arbiter).
    pub async fn build(config: &Config) -> Result<Application, StartupError> {
        let store = Store::connect(&config.database_url, config.db_pool_size).await?;
        let event_hub = EventHub::new(config.max_long_polls).start();
        let agent_tracker = AgentTracker::new(
            std::rc::Rc::new(store.clone()),
            TrackerSettings {
                flush_every: HEARTBEAT_FLUSH_INTERVAL,
                check_every: config.health_check_interval,
                silent_for: config.agent_timeout,
            },
        )
        .start();
        let supervisor = Supervisor::new(
            std::rc::Rc::new(store.clone()),
            SupervisorSettings {
                sweep_every: config.sweep_interval,
                startup_grace: config.startup_grace,
                stale_timeout: config.job_stale_timeout,
                retention: config.retention,
                job_row_retention: config.job_row_retention,
            },
            event_hub.clone().recipient(),
        )
        .start();
        let address = format!("{}:{}", config.host, config.port);
        let listen_error = |source| StartupError::Listen {
            address: address.clone(),
            source,
        };
        let listener =
            TcpListener::bind((config.host.as_str(), config.port)).map_err(listen_error)?;
        let port = listener.local_addr().map_err(listen_error)?.port();
        let state = Data::new(AppState {
            store,
            event_hub: event_hub.clone(),
            agent_tracker: agent_tracker.clone(),
            supervisor: supervisor.clone(),
            agent_client: reqwest::Client::new(),
            cancel_event_grace: config.cancel_event_grace,
            job_stale_timeout: config.job_stale_timeout,
            started_at: Instant::now(),
        });
        let body_limit = BodyLimit(config.max_body_bytes);
        let server = HttpServer::new(move || {
            App::new()
                .app_data(state.clone())
                .app_data(body_limit)
                .configure(http::routes)
        })
        .workers(config.http_workers)
        .disable_signals()
        .shutdown_timeout(config.shutdown_timeout.as_secs())
        .listen(listener)
        .map_err(listen_error)?
        .run();
        Ok(Application {
            server,
            port,
            event_hub,
            agent_tracker,
            supervisor,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Serves until `shutdown` resolves, then stops accepting, releases parked long-polls and
    /// lets in-flight requests finish (up to the shutdown timeout).
    pub async fn run_until(
        self,
        shutdown: impl Future<Output = ()> + 'static,
    ) -> std::io::Result<()> {
        let handle = self.server.handle();
        let (event_hub, agent_tracker, supervisor) =
            (self.event_hub, self.agent_tracker, self.supervisor);
        actix_web::rt::spawn(async move {
            shutdown.await;
            tracing::info!("shutting down: finishing in-flight requests");
            // No reclaim or health verdict while stopping: the next registry decides.
            supervisor.do_send(Shutdown);
            agent_tracker.do_send(Shutdown);
            event_hub.do_send(Shutdown);
            handle.stop(true).await;
        });
        self.server.await
    }
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
    let level_warning = telemetry::init(&args.log_level, args.debug_mode);
    let (config, warnings) = match Config::from_args(args) {
        Ok(resolved) => resolved,
        Err(error) => return fail(error),
    };
    for warning in level_warning.into_iter().chain(warnings) {
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
