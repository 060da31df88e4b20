//! Cross-replica wake-ups through PostgreSQL `LISTEN/NOTIFY`, never a private protocol.
//!
//! Three channels, named after our schema so that registries in other schemas of the same
//! database never hear them (`Channels`): an event was appended to a job (`<schema>_events`,
//! sent by the statement that appends it, so long-polls on every replica wake at once); claims
//! held or ended through one replica (`<schema>_leases`, sent in batches by its supervisor, so
//! the others re-arm or stop watching without waiting for a deadline); the fleet drain flag
//! (`<schema>_drain`).
//! Notifications are hints: when they are lost, correctness holds and latency falls back to
//! re-checks. The listener has a connection of its own and reconnects after a drop.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::future::poll_fn;
use mesh_registry_actors::{LeaseChange, LeaseHeld};
use tokio::sync::mpsc;
use tokio_postgres::AsyncMessage;
use uuid::Uuid;

use super::PgStore;
use crate::store::{DbSchema, Notice, StoreError};

/// The NOTIFY channels of the replicas that share one schema. Channels are database-wide, so
/// each is named after the schema (which `DbSchema` keeps short enough for the suffix).
pub(super) struct Channels {
    /// Appended events (payload: the job id).
    pub job_events: String,
    /// Lease changes made through one replica (payload: a batch of them).
    pub leases: String,
    /// The fleet drain flag (payload: `true` or `false`).
    pub fleet_drain: String,
}

impl Channels {
    pub(super) fn of(schema: &DbSchema) -> Channels {
        Channels {
            job_events: format!("{schema}_events"),
            leases: format!("{schema}_leases"),
            fleet_drain: format!("{schema}_drain"),
        }
    }
}

/// NOTIFY payloads must stay under 8000 bytes; one lease change takes about 60.
const CHANGES_PER_NOTIFY: usize = 100;
/// Wait before listening again after the connection dropped.
const RECONNECT_AFTER: Duration = Duration::from_secs(1);

impl PgStore {
    /// Starts listening; notices arrive on the returned channel until the runtime stops.
    pub(super) fn start_listening(&self) -> mpsc::Receiver<Notice> {
        let (sender, receiver) = mpsc::channel(1024);
        let store = self.clone();
        tokio::spawn(async move {
            loop {
                let outcome = store.listen_once(&sender).await;
                if sender.is_closed() {
                    return;
                }
                if let Err(error) = outcome {
                    tracing::warn!(%error, "notification listener down; reconnecting");
                }
                if sender.send(Notice::Lost).await.is_err() {
                    return;
                }
                tokio::time::sleep(RECONNECT_AFTER).await;
            }
        });
        receiver
    }

    /// One listening session, until its connection ends.
    async fn listen_once(&self, sender: &mpsc::Sender<Notice>) -> Result<(), StoreError> {
        let (client, mut connection) = self.pg.connect(self.tls.clone()).await?;
        let (messages, mut incoming) = mpsc::unbounded_channel();
        let driver = tokio::spawn(async move {
            while let Some(message) = poll_fn(|cx| connection.poll_message(cx)).await {
                match message {
                    Ok(message) => {
                        if messages.send(message).is_err() {
                            return;
                        }
                    }
                    Err(error) => {
                        tracing::debug!(%error, "notification connection ended");
                        return;
                    }
                }
            }
        });
        let Channels {
            job_events,
            leases,
            fleet_drain,
        } = &*self.channels;
        client
            .batch_execute(&format!(
                "LISTEN {job_events}; LISTEN {leases}; LISTEN {fleet_drain}"
            ))
            .await?;
        let _ = sender.send(Notice::Listening).await;
        while let Some(message) = incoming.recv().await {
            let AsyncMessage::Notification(notification) = message else {
                continue;
            };
            let (channel, payload) = (notification.channel(), notification.payload());
            let notice = if channel == job_events {
                Uuid::parse_str(payload).ok().map(Notice::EventPosted)
            } else if channel == fleet_drain {
                Some(Notice::FleetDrain(payload == "true"))
            } else if channel == leases {
                self.decode_leases(payload).map(Notice::Leases)
            } else {
                None
            };
            if let Some(notice) = notice {
                if sender.send(notice).await.is_err() {
                    break;
                }
            }
        }
        driver.abort();
        Ok(())
    }

    /// Announces lease changes made through this replica, in as few notifications as fit.
    pub(super) async fn notify_leases(&self, changes: &[LeaseChange]) -> Result<(), StoreError> {
        let conn = self.conn().await?;
        let statement = conn.prepare_cached("SELECT pg_notify($1, $2)").await?;
        for chunk in changes.chunks(CHANGES_PER_NOTIFY) {
            let payload = self.encode_leases(chunk);
            conn.execute(&statement, &[&self.channels.leases, &payload])
                .await?;
        }
        Ok(())
    }

    /// `<replica>|<job>=<epoch>@<lease µs>;<job>=-;…` (`-`: the claim ended).
    fn encode_leases(&self, changes: &[LeaseChange]) -> String {
        let entries: Vec<String> = changes
            .iter()
            .map(|change| match change {
                LeaseChange::Held(lease) => {
                    let micros = lease
                        .lease_expires_at
                        .duration_since(UNIX_EPOCH)
                        .unwrap_or_default()
                        .as_micros();
                    format!("{}={}@{micros}", lease.job_id.simple(), lease.claim_epoch)
                }
                LeaseChange::Ended(job_id) => format!("{}=-", job_id.simple()),
            })
            .collect();
        format!("{}|{}", self.replica, entries.join(";"))
    }

    /// The changes of another replica's announcement (`None` for this replica's own).
    fn decode_leases(&self, payload: &str) -> Option<Vec<LeaseChange>> {
        let (replica, entries) = payload.split_once('|')?;
        if replica == &*self.replica {
            return None;
        }
        let changes = entries
            .split(';')
            .filter_map(|entry| {
                let (job, lease) = entry.split_once('=')?;
                let job_id = Uuid::parse_str(job).ok()?;
                if lease == "-" {
                    return Some(LeaseChange::Ended(job_id));
                }
                let (epoch, micros) = lease.split_once('@')?;
                Some(LeaseChange::Held(LeaseHeld {
                    job_id,
                    claim_epoch: epoch.parse().ok()?,
                    lease_expires_at: SystemTime::UNIX_EPOCH
                        + Duration::from_micros(micros.parse().ok()?),
                }))
            })
            .collect();
        Some(changes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lease_announcements_round_trip_between_replicas_only() {
        let here = PgStore::open("postgres://x@127.0.0.1/y", &Default::default(), 1).unwrap();
        let there = PgStore::open("postgres://x@127.0.0.1/y", &Default::default(), 1).unwrap();
        let held = LeaseHeld {
            job_id: Uuid::new_v4(),
            claim_epoch: 7,
            lease_expires_at: UNIX_EPOCH + Duration::from_micros(1_795_773_177_123_456),
        };
        let changes = vec![LeaseChange::Held(held), LeaseChange::Ended(Uuid::new_v4())];
        let payload = here.encode_leases(&changes);
        assert_eq!(there.decode_leases(&payload), Some(changes));
        assert_eq!(
            here.decode_leases(&payload),
            None,
            "its own announcement is skipped"
        );
        let full = vec![LeaseChange::Held(held); CHANGES_PER_NOTIFY];
        assert!(
            here.encode_leases(&full).len() < 8000,
            "a full batch fits one notification"
        );
    }
}
