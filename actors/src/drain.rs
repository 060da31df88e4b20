//! The drain gate: while draining, this replica hands out no new claims; everything else
//! (submissions, deltas, renewals, events, release, cancel, reclaim) goes on.
//!
//! The supervisor owns the gate. Two things close it: a drain of this replica (in memory, as the
//! reference does: a restart clears it), and an opt-in fleet-wide drain stored in PostgreSQL that
//! every replica honours within a second and that survives restarts. Request handlers read the
//! gate through a `DrainGate` without asking the supervisor.

use tokio::sync::watch;

/// What closes the gate right now.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DrainState {
    /// This replica was drained (`POST /admin/drain`).
    pub replica: bool,
    /// The whole fleet was drained (`POST /admin/drain?scope=fleet`).
    pub fleet: bool,
}

impl DrainState {
    /// Whether claims are paused.
    pub fn draining(self) -> bool {
        self.replica || self.fleet
    }
}

/// Which drain an operator sets or clears.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DrainScope {
    Replica,
    Fleet,
}

/// A reader of the gate, cheap to clone and to consult on every claim.
#[derive(Debug, Clone)]
pub struct DrainGate(watch::Receiver<DrainState>);

impl DrainGate {
    pub(crate) fn new() -> (watch::Sender<DrainState>, DrainGate) {
        let (sender, receiver) = watch::channel(DrainState::default());
        (sender, DrainGate(receiver))
    }

    pub fn state(&self) -> DrainState {
        *self.0.borrow()
    }
}
