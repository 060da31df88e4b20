//! `GET /metrics`: this replica's instruments, with the database counts and the state of its
//! drain gate and pool as they are now.

use super::Registry;

impl Registry {
    /// The Prometheus text of this replica.
    pub async fn metrics_text(&self) -> String {
        let drain = self.drain_gate.state();
        let pool = self.store.pool_status();
        self.metrics.render(&self.store, drain, pool).await
    }
}
