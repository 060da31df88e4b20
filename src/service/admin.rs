//! Drain use cases: pause claims before an upgrade, watch the live claims reach zero, resume.
//! A fleet drain is stored in PostgreSQL first so that every replica honours it.
//!
//! Orders matter and follow the reference: a drain counts before it sets the flag (a failed
//! count leaves the registry undrained); a resume clears the flag before it counts.

use mesh_registry_actors::{DrainScope, DrainState, SetDrain};

use tracing::Instrument;

use super::{store_span, Registry};
use crate::store::StoreError;

/// The drain state of this replica and the live claims of the fleet.
#[derive(Debug, Clone, Copy)]
pub struct DrainView {
    pub gate: DrainState,
    pub live_claims: i64,
}

/// Why a drain call failed, by the step that failed.
#[derive(Debug, thiserror::Error)]
pub enum DrainError {
    #[error("failed to count live claims: {0}")]
    Count(StoreError),
    #[error("{0}")]
    FleetUnsupported(&'static str),
    #[error("failed to store the fleet drain: {0}")]
    Store(StoreError),
    #[error("{0}")]
    Supervisor(String),
}

impl Registry {
    pub async fn drain_status(&self) -> Result<DrainView, DrainError> {
        let live_claims = self.live_claims().await?;
        Ok(DrainView {
            gate: self.drain_gate.state(),
            live_claims,
        })
    }

    pub async fn drain(&self, scope: DrainScope) -> Result<DrainView, DrainError> {
        let live_claims = self.live_claims().await?;
        let gate = self.set_drain(scope, true).await?;
        tracing::info!(?scope, live_claims, "drain requested");
        Ok(DrainView { gate, live_claims })
    }

    pub async fn resume(&self, scope: DrainScope) -> Result<DrainView, DrainError> {
        let gate = self.set_drain(scope, false).await?;
        tracing::info!(?scope, still_draining = gate.draining(), "resume requested");
        let live_claims = self.live_claims().await?;
        Ok(DrainView { gate, live_claims })
    }

    async fn live_claims(&self) -> Result<i64, DrainError> {
        self.store
            .count_live_claims()
            .instrument(store_span("count_live_claims"))
            .await
            .map_err(DrainError::Count)
    }

    /// Sets or clears a drain: the fleet flag in PostgreSQL first, then the gate here.
    async fn set_drain(&self, scope: DrainScope, draining: bool) -> Result<DrainState, DrainError> {
        if scope == DrainScope::Fleet {
            self.store
                .set_fleet_draining(draining)
                .instrument(store_span("set_fleet_draining"))
                .await
                .map_err(|error| match error {
                    StoreError::Unsupported(why) => DrainError::FleetUnsupported(why),
                    error => DrainError::Store(error),
                })?;
        }
        self.actors
            .supervisor
            .send(SetDrain { scope, draining })
            .await
            .map_err(|error| DrainError::Supervisor(error.to_string()))
    }
}
