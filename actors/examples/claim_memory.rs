//! Memory of the lease timers alone: starts a supervisor with an in-memory directory, hands it
//! 10 000 live claims, and prints the resident memory they cost (one JSON line).
//!
//!   cargo run --release -p mesh-registry-actors --example claim_memory [claims]

use std::rc::Rc;
use std::time::{Duration, SystemTime};

use actix::prelude::*;
use mesh_registry_actors::{
    EventHub, JobDirectory, LeaseChange, LeaseCheck, LeaseHeld, StoreFuture, Supervisor,
    SupervisorSettings, SweepPhase, SweepReport, WatchedClaims,
};
use uuid::Uuid;

/// Leases never end in this measurement, so the directory is never asked.
struct Idle;

impl JobDirectory for Idle {
    fn live_claims(&self) -> StoreFuture<Vec<LeaseHeld>> {
        Box::pin(async { Ok(Vec::new()) })
    }
    fn reclaim_if_expired(&self, _: Uuid, _: i64) -> StoreFuture<LeaseCheck> {
        Box::pin(async { Ok(LeaseCheck::NotLeased) })
    }
    fn sweep(&self, _: SweepPhase) -> StoreFuture<SweepReport> {
        Box::pin(async { Ok(SweepReport::default()) })
    }
    fn fleet_draining(&self) -> StoreFuture<bool> {
        Box::pin(async { Ok(false) })
    }
    fn announce(&self, _: Vec<LeaseChange>) -> StoreFuture<()> {
        Box::pin(async { Ok(()) })
    }
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

#[actix::main]
async fn main() {
    let claims: usize = std::env::args()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(10_000);
    let events = EventHub::new(1, 1).start();
    let (supervisor, _gate) = Supervisor::new(
        Rc::new(Idle),
        SupervisorSettings {
            sweep_every: Duration::from_secs(3600),
            startup_grace: Duration::ZERO,
            stale_timeout: None,
            retention: None,
            job_row_retention: None,
        },
        events.recipient(),
    );
    let supervisor = supervisor.start();
    let lease_expires_at = SystemTime::now() + Duration::from_secs(3600);
    // Warm up allocator arenas so the measurement is of the claims, not of first use.
    supervisor.send(WatchedClaims).await.unwrap();
    let before = rss_kib();
    for epoch in 0..claims {
        supervisor.do_send(LeaseHeld {
            job_id: Uuid::new_v4(),
            claim_epoch: epoch as i64,
            lease_expires_at,
        });
    }
    let watched = supervisor.send(WatchedClaims).await.unwrap();
    actix::clock::sleep(Duration::from_millis(200)).await;
    let after = rss_kib();
    println!(
        "{{\"claims\":{watched},\"rss_before_kib\":{before},\"rss_after_kib\":{after},\"bytes_per_claim\":{:.0}}}",
        (after.saturating_sub(before) * 1024) as f64 / watched as f64
    );
    System::current().stop();
}
