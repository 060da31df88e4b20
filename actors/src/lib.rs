//! The actix actors of mesh-registry and their messages.
//!
//! Actors own the registry's in-memory state and nothing else does; PostgreSQL stays the source
//! of truth. Nothing in this crate speaks HTTP or SQL: storage, when an actor needs it, is reached
//! through a trait that the registry implements.

pub mod agent_tracker;
pub mod drain;
pub mod event_hub;
pub mod supervisor;

pub use agent_tracker::{
    AgentDeparted, AgentDirectory, AgentRegistered, AgentTracker, Expired, Heartbeat,
    HeartbeatsRecorded, StoreFuture, StoredLiveness, TopologyChanged, TrackerSettings, Verdict,
};
pub use drain::{DrainGate, DrainScope, DrainState};
pub use event_hub::{EventHub, EventPosted, NotParked, Notifications, Park, Shutdown, Wakeup};
pub use supervisor::{
    ClaimEnded, JobDirectory, LeaseChange, LeaseCheck, LeaseHeld, RemoteLeases, SetDrain,
    Supervisor, SupervisorSettings, SweepPhase, SweepReport, WatchedClaims,
};
