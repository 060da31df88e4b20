//! Drain bookkeeping on the embedded file. One process serves the file, so there is no fleet to
//! drain and no replica to notify: those calls say so instead of pretending.

use async_trait::async_trait;
use mesh_registry_actors::LeaseChange;
use tokio::sync::mpsc;

use super::EmbeddedStore;
use crate::store::{AdminStore, Notice, StoreError, Tally};

/// Why `?scope=fleet` is refused here.
const NO_FLEET: &str = "fleet-wide drain needs the PostgreSQL backend: the embedded store serves \
                        a single registry process, so drain it with the replica scope";

#[async_trait]
impl AdminStore for EmbeddedStore {
    async fn count_live_claims(&self) -> Result<i64, StoreError> {
        self.run(|db| {
            Ok(db
                .prepare_cached(include_str!("sql/count_live_claims.sql"))?
                .query_row([], |row| row.get(0))?)
        })
        .await
    }

    async fn tally(&self) -> Result<Tally, StoreError> {
        self.run(|db| {
            let jobs = db
                .prepare_cached(include_str!("sql/job_tally.sql"))?
                .query_map([], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))?
                .collect::<Result<_, _>>()?;
            let agents = db
                .prepare_cached(include_str!("sql/agent_tally.sql"))?
                .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))?
                .collect::<Result<_, _>>()?;
            let live_claims = db
                .prepare_cached(include_str!("sql/count_live_claims.sql"))?
                .query_row([], |row| row.get(0))?;
            Ok(Tally {
                jobs,
                agents,
                live_claims,
            })
        })
        .await
    }

    async fn set_fleet_draining(&self, _draining: bool) -> Result<(), StoreError> {
        Err(StoreError::Unsupported(NO_FLEET))
    }

    /// No fleet flag can be set here, so none is ever raised.
    async fn fleet_draining(&self) -> Result<bool, StoreError> {
        Ok(false)
    }

    /// No other replica can exist to be told.
    async fn announce_leases(&self, _changes: &[LeaseChange]) -> Result<(), StoreError> {
        Ok(())
    }

    fn listen(&self) -> Option<mpsc::Receiver<Notice>> {
        None
    }

    async fn close(&self) {
        self.shut_down().await;
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.run(|db| {
            Ok(db
                .prepare_cached(include_str!("sql/ping.sql"))?
                .query_row([], |_| Ok(()))?)
        })
        .await
    }
}
