//! The service layer: the registry's use cases, between HTTP and the store and actors.
//!
//! A handler parses and validates a request, calls ONE method here, and renders what it gets
//! back. Each method calls the store, then forwards what the store's outcome says changed
//! ([`Changed`]) to this replica's actors: a lease timer armed or retired, a long-poll woken.
//! No handler talks to an actor about a write, so a new endpoint cannot forget to.
//! docs/request-flow.md walks through a request.

mod admin;
mod agents;
mod events;
mod forward;
mod jobs;
mod mesh_events;
mod metrics;
mod proxy;
mod schemas;

use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::Addr;
use mesh_registry_actors::{
    AgentTracker, ClaimEnded, DrainGate, EventHub, EventPosted, Supervisor,
};

pub use admin::{DrainError, DrainView};
pub use agents::{Beat, RegisterError, Registration, Rotation};
pub use events::{EventsRead, Executor};
pub use forward::AgentTls;
pub use jobs::{ForwardHeaders, JOB_COUNT_GROUPS};
pub use proxy::{ProxyCall, ProxyError, ProxyMethod, ProxySettings, Relay};

use crate::metrics::Metrics;
use crate::store::{Change, Changed, Store};

/// This replica's actors, as the service tells them what changed.
#[derive(Clone)]
pub struct Actors {
    pub event_hub: Addr<EventHub>,
    pub agent_tracker: Addr<AgentTracker>,
    pub supervisor: Addr<Supervisor>,
}

impl Actors {
    /// Whether each actor still runs.
    pub fn alive(&self) -> bool {
        self.event_hub.connected() && self.agent_tracker.connected() && self.supervisor.connected()
    }
}

/// The span of one store call inside the request's span (DEBUG: only an OTLP export or a
/// DEBUG log enables it; otherwise it costs a disabled-callsite check).
fn store_span(operation: &'static str) -> tracing::Span {
    tracing::debug_span!("store", operation)
}

/// Knobs of the use cases (from the configuration).
#[derive(Debug, Clone)]
pub struct Settings {
    /// How long a cancel waits before it answers and forwards (producers parked on the event
    /// log see the `cancelled` event first).
    pub cancel_event_grace: Duration,
    /// `MCP_MESH_JOB_STALE_TIMEOUT`: caps the lease an executor read grants.
    pub job_stale_timeout: Option<Duration>,
    /// `MCP_MESH_MAX_PAGE_BYTES`: a page of jobs or events stops once it holds this much.
    pub max_page_bytes: i64,
    pub proxy: ProxySettings,
    /// Calls to agents over HTTPS, when `MCP_MESH_TLS_CA`, `_CERT` and `_KEY` are all set.
    pub agent_tls: Option<AgentTls>,
}

/// The registry's use cases; shared by every handler (one per replica).
pub struct Registry {
    store: Store,
    actors: Actors,
    /// Read before every claim; the supervisor owns it.
    drain_gate: DrainGate,
    /// Outbound calls to agents (cancel forwarding, the MCP proxy), over HTTPS where an
    /// agent's endpoint says.
    agent_client: reqwest::Client,
    /// The MCP proxy's concurrent relays.
    proxy_slots: proxy::ProxySlots,
    settings: Settings,
    started_at: Instant,
    metrics: Arc<Metrics>,
}

impl Registry {
    /// The registry's use cases; fails only when the client of outbound calls cannot be built.
    pub fn new(
        store: Store,
        actors: Actors,
        drain_gate: DrainGate,
        settings: Settings,
        metrics: Arc<Metrics>,
    ) -> Result<Self, String> {
        Ok(Registry {
            store,
            actors,
            drain_gate,
            agent_client: forward::agent_client(settings.agent_tls.as_ref())?,
            proxy_slots: proxy::ProxySlots::new(settings.proxy.max_streams),
            settings,
            started_at: Instant::now(),
            metrics,
        })
    }

    /// Tells the actors what a store call changed.
    fn forward(&self, outcome: &impl Changed) {
        let _span = tracing::debug_span!("actors.forward").entered();
        for change in outcome.changes() {
            match change {
                Change::LeaseHeld(lease) => self.actors.supervisor.do_send(lease),
                Change::ClaimEnded(job_id) => self.actors.supervisor.do_send(ClaimEnded { job_id }),
                Change::EventPosted(job_id) => {
                    self.actors.event_hub.do_send(EventPosted { job_id })
                }
            }
        }
    }

    /// Whether every part of this replica still runs: its actors (lease timers, sweep, drain
    /// gate, heartbeats, long-polls) and its store. A replica that answered while its
    /// supervisor was gone would no longer reclaim anything (`GET /health` fails then).
    pub fn alive(&self) -> bool {
        self.actors.alive() && self.store.alive()
    }

    /// Seconds since this replica started (`GET /health`).
    pub fn uptime(&self) -> Duration {
        self.started_at.elapsed()
    }

    /// The database answers (`GET /ready`); the backend's name either way.
    pub async fn ready(&self) -> (&'static str, Result<(), crate::store::StoreError>) {
        (self.store.backend().name(), self.store.ping().await)
    }
}
