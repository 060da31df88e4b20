//! Drain bookkeeping: the live-claims count operators wait on, and the fleet-wide drain flag.

use async_trait::async_trait;
use mesh_registry_actors::LeaseChange;
use tokio::sync::mpsc;

use super::{column, PgStore};
use crate::store::{AdminStore, Notice, StoreError, Tally};

#[async_trait]
impl AdminStore for PgStore {
    /// Owned jobs still being worked on, across the whole database: pinned jobs not yet started
    /// and jobs of owners that went away whose leases have not lapsed included
    /// (docs/contract.md#live-claims).
    async fn count_live_claims(&self) -> Result<i64, StoreError> {
        let conn = self.conn().await?;
        let statement = conn
            .prepare_cached(include_str!("sql/count_live_claims.sql"))
            .await?;
        column(&conn.query_one(&statement, &[]).await?, "live")
    }

    async fn tally(&self) -> Result<Tally, StoreError> {
        let conn = self.conn().await?;
        let jobs = conn
            .prepare_cached(include_str!("sql/job_tally.sql"))
            .await?;
        let agents = conn
            .prepare_cached(include_str!("sql/agent_tally.sql"))
            .await?;
        let live = conn
            .prepare_cached(include_str!("sql/count_live_claims.sql"))
            .await?;
        let (jobs, agents, live) = futures_util::try_join!(
            conn.query(&jobs, &[]),
            conn.query(&agents, &[]),
            conn.query_one(&live, &[])
        )?;
        Ok(Tally {
            jobs: jobs
                .iter()
                .map(|row| {
                    Ok((
                        column(row, "state")?,
                        column(row, "capability")?,
                        column(row, "jobs")?,
                    ))
                })
                .collect::<Result<_, StoreError>>()?,
            agents: agents
                .iter()
                .map(|row| Ok((column(row, "status")?, column(row, "agents")?)))
                .collect::<Result<_, StoreError>>()?,
            live_claims: column(&live, "live")?,
        })
    }

    async fn set_fleet_draining(&self, draining: bool) -> Result<(), StoreError> {
        let conn = self.conn().await?;
        // Every replica hears of it at once (and re-reads the flag every second anyway).
        let statement = conn
            .prepare_cached(include_str!("sql/set_fleet_draining.sql"))
            .await?;
        conn.execute(&statement, &[&draining, &self.channels.fleet_drain])
            .await?;
        Ok(())
    }

    async fn fleet_draining(&self) -> Result<bool, StoreError> {
        let conn = self.conn().await?;
        let statement = conn
            .prepare_cached(include_str!("sql/fleet_draining.sql"))
            .await?;
        column(&conn.query_one(&statement, &[]).await?, "draining")
    }

    async fn announce_leases(&self, changes: &[LeaseChange]) -> Result<(), StoreError> {
        self.notify_leases(changes).await
    }

    fn listen(&self) -> Option<mpsc::Receiver<Notice>> {
        Some(self.start_listening())
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.conn().await?.simple_query("").await?;
        Ok(())
    }

    async fn close(&self) {
        self.pool.close();
    }
}
