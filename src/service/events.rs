//! Event-log use cases: read a page (an observer's read, or an owner's executor read that is
//! fenced by its claim epoch and renews its lease), optionally long-polling, and append.

use std::net::IpAddr;
use std::time::Duration;

use mesh_registry_actors::{NotParked, Park, Wakeup};
use tokio::time::{timeout_at, Instant};
use uuid::Uuid;

use tracing::Instrument;

use super::{store_span, Registry};
use crate::store::{EventFilter, ExecutorRead, PostEventOutcome, StoreError};
use crate::wire::{JobEvent, RawJson};

/// The owner reading its job's events as its executor (fenced; renews the lease).
#[derive(Debug, Clone, Copy)]
pub struct Executor<'a> {
    pub instance_id: &'a str,
    pub claim_epoch: i64,
}

/// What a read of the event log found.
#[derive(Debug)]
pub enum EventsRead {
    /// Events after the cursor (possibly none, when a long-poll timed out).
    Page(Vec<JobEvent>),
    NotFound,
    /// The executor's claim was superseded.
    Superseded,
    /// Too many long-polls are parked; the caller retries shortly.
    Busy,
}

impl Registry {
    /// A page of the job's events; with `wait`, parks until an event arrives or the wait ends
    /// (within the share of parked long-polls that `client`, the caller's address, may hold).
    pub async fn read_events(
        &self,
        job_id: Uuid,
        client: IpAddr,
        executor: Option<Executor<'_>>,
        filter: &EventFilter,
        wait: Duration,
    ) -> Result<EventsRead, StoreError> {
        if let Some(executor) = executor {
            // Authorised once, before any wait: a superseded executor learns it at once.
            let verdict = self
                .store
                .authorize_executor_read(
                    job_id,
                    executor.instance_id,
                    executor.claim_epoch,
                    self.settings.job_stale_timeout,
                )
                .instrument(store_span("authorize_executor_read"))
                .await?;
            self.forward(&verdict);
            match verdict {
                ExecutorRead::NotFound => return Ok(EventsRead::NotFound),
                ExecutorRead::Superseded => return Ok(EventsRead::Superseded),
                ExecutorRead::Serve { .. } => {}
            }
        }
        let deadline = Instant::now() + wait;
        loop {
            // Park before reading, so an event committed after the read began still wakes us.
            let wakeup = if Instant::now() < deadline {
                match self.park(job_id, client).await {
                    Ok(wakeup) => wakeup,
                    Err(()) => {
                        self.metrics.long_polls_refused.inc();
                        return Ok(EventsRead::Busy);
                    }
                }
            } else {
                None
            };
            let events = self
                .store
                .list_events(job_id, filter, self.settings.max_page_bytes)
                .instrument(store_span("list_events"));
            let Some(events) = events.await? else {
                return Ok(EventsRead::NotFound);
            };
            match wakeup {
                Some(wakeup) if events.is_empty() => {
                    let _parked = self.metrics.parked();
                    if timeout_at(deadline, wakeup).await.is_err() {
                        return Ok(EventsRead::Page(events));
                    }
                }
                _ => return Ok(EventsRead::Page(events)),
            }
        }
    }

    /// A wake-up for the job's next event; `None` when the registry is stopping (answer now);
    /// `Err` when every long-poll slot, or every slot this client may hold, is taken.
    async fn park(&self, job_id: Uuid, client: IpAddr) -> Result<Option<Wakeup>, ()> {
        let park = self.actors.event_hub.send(Park { job_id, client });
        match park.instrument(tracing::debug_span!("actors.park")).await {
            Ok(Ok(wakeup)) => Ok(Some(wakeup)),
            Ok(Err(NotParked::ShuttingDown)) => Ok(None),
            Ok(Err(NotParked::Full)) => Err(()),
            Ok(Err(NotParked::ClientShareTaken)) => {
                tracing::debug!(%client, "long-poll refused: the client holds its share");
                Err(())
            }
            Err(error) => {
                tracing::error!(%error, "event hub unreachable; answering without waiting");
                Ok(None)
            }
        }
    }

    /// Anyone holding the id may append to a live job's log; `posted_by` is the entity that
    /// vouched for the poster's client certificate, when one did.
    pub async fn post_event(
        &self,
        job_id: Uuid,
        event_type: &str,
        payload: Option<&RawJson>,
        trace_context: Option<&RawJson>,
        posted_by: Option<&str>,
    ) -> Result<PostEventOutcome, StoreError> {
        let outcome = (self.store)
            .post_event(job_id, event_type, payload, trace_context, posted_by)
            .instrument(store_span("post_event"))
            .await?;
        self.forward(&outcome);
        Ok(outcome)
    }
}
