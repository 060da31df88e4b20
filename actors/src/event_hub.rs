//! `EventHub`: wakes the event long-polls parked on this replica when an event is posted.
//!
//! A long-poll parks *before* it queries the database, so an event committed after that query
//! started is announced to a waiter that is already registered (the mailbox is FIFO): no wake-up
//! is lost and nothing re-queries the database on a timer. Posts through other replicas arrive
//! as PostgreSQL notifications; while those are lost (the listening connection is down), every
//! parked long-poll is woken once a second to re-read, so latency stays bounded. The number of
//! parked long-polls is bounded; a waiter whose request went away is pruned.

use std::collections::HashMap;
use std::time::Duration;

use actix::prelude::*;
use tokio::sync::oneshot;
use uuid::Uuid;

/// Fires (or is dropped) when the job it was parked on may have a new event.
pub type Wakeup = oneshot::Receiver<()>;

/// How often waiters whose long-poll has ended are forgotten.
const PRUNE_INTERVAL: Duration = Duration::from_secs(10);
/// While notifications from other replicas are lost, parked long-polls re-read this often.
const DEGRADED_RECHECK: Duration = Duration::from_secs(1);

pub struct EventHub {
    parked: HashMap<Uuid, Vec<oneshot::Sender<()>>>,
    parked_count: usize,
    capacity: usize,
    closing: bool,
    /// Notifications from other replicas are not arriving.
    degraded: bool,
}

impl EventHub {
    pub fn new(capacity: usize) -> Self {
        EventHub {
            parked: HashMap::new(),
            parked_count: 0,
            capacity,
            closing: false,
            degraded: false,
        }
    }

    fn wake_all(&mut self) {
        for (_, waiters) in self.parked.drain() {
            for waiter in waiters {
                let _ = waiter.send(());
            }
        }
        self.parked_count = 0;
    }

    fn prune(&mut self) {
        self.parked.retain(|_, waiters| {
            waiters.retain(|waiter| !waiter.is_closed());
            !waiters.is_empty()
        });
        self.parked_count = self.parked.values().map(Vec::len).sum();
    }
}

impl Actor for EventHub {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.run_interval(PRUNE_INTERVAL, |hub, _| hub.prune());
        ctx.run_interval(DEGRADED_RECHECK, |hub, _| {
            if hub.degraded {
                hub.wake_all();
            }
        });
    }
}

/// Register interest in the next event of `job_id`.
#[derive(Message)]
#[rtype(result = "Result<Wakeup, NotParked>")]
pub struct Park {
    pub job_id: Uuid,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotParked {
    /// As many long-polls as the registry allows are already parked.
    Full,
    /// The registry is stopping; answer with what is there now.
    ShuttingDown,
}

impl Handler<Park> for EventHub {
    type Result = Result<Wakeup, NotParked>;

    fn handle(&mut self, msg: Park, _: &mut Self::Context) -> Self::Result {
        if self.closing {
            return Err(NotParked::ShuttingDown);
        }
        if self.parked_count >= self.capacity {
            self.prune();
            if self.parked_count >= self.capacity {
                return Err(NotParked::Full);
            }
        }
        let (waiter, wakeup) = oneshot::channel();
        self.parked.entry(msg.job_id).or_default().push(waiter);
        self.parked_count += 1;
        Ok(wakeup)
    }
}

/// An event was appended to `job_id`'s log: wake everything parked on it.
#[derive(Message)]
#[rtype(result = "()")]
pub struct EventPosted {
    pub job_id: Uuid,
}

impl Handler<EventPosted> for EventHub {
    type Result = ();

    fn handle(&mut self, msg: EventPosted, _: &mut Self::Context) {
        if let Some(waiters) = self.parked.remove(&msg.job_id) {
            self.parked_count -= waiters.len();
            for waiter in waiters {
                let _ = waiter.send(());
            }
        }
    }
}

/// The registry is stopping. The event hub releases every parked long-poll and refuses new ones,
/// so graceful shutdown is not held up by requests that could wait a minute for nothing; the
/// other actors stop.
#[derive(Message, Clone, Copy)]
#[rtype(result = "()")]
pub struct Shutdown;

impl Handler<Shutdown> for EventHub {
    type Result = ();

    fn handle(&mut self, _: Shutdown, _: &mut Self::Context) {
        self.closing = true;
        self.parked.clear();
        self.parked_count = 0;
    }
}

/// Whether notifications from other replicas arrive. Either way every parked long-poll re-reads
/// now: posts made while they were lost are found.
#[derive(Message, Clone, Copy)]
#[rtype(result = "()")]
pub struct Notifications {
    pub arriving: bool,
}

impl Handler<Notifications> for EventHub {
    type Result = ();

    fn handle(&mut self, msg: Notifications, _: &mut Self::Context) {
        if self.degraded == msg.arriving {
            tracing::info!(arriving = msg.arriving, "cross-replica notifications");
        }
        self.degraded = !msg.arriving;
        self.wake_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job() -> Uuid {
        Uuid::new_v4()
    }

    #[actix::test]
    async fn a_post_wakes_every_waiter_of_that_job_only() {
        let hub = EventHub::new(10).start();
        let (a, b) = (job(), job());
        let first = hub.send(Park { job_id: a }).await.unwrap().unwrap();
        let second = hub.send(Park { job_id: a }).await.unwrap().unwrap();
        let mut other = hub.send(Park { job_id: b }).await.unwrap().unwrap();

        hub.send(EventPosted { job_id: a }).await.unwrap();

        assert_eq!(first.await, Ok(()));
        assert_eq!(second.await, Ok(()));
        assert!(
            other.try_recv().is_err(),
            "a post to another job must not wake this one"
        );
    }

    #[actix::test]
    async fn capacity_is_enforced_and_freed_by_dropped_waiters() {
        let hub = EventHub::new(2).start();
        let kept = hub.send(Park { job_id: job() }).await.unwrap().unwrap();
        let dropped = hub.send(Park { job_id: job() }).await.unwrap().unwrap();
        assert_eq!(
            hub.send(Park { job_id: job() }).await.unwrap().err(),
            Some(NotParked::Full)
        );

        drop(dropped);
        assert!(hub.send(Park { job_id: job() }).await.unwrap().is_ok());
        drop(kept);
    }

    #[actix::test]
    async fn lost_notifications_mean_a_recheck_every_second_until_they_return() {
        tokio::time::pause();
        let hub = EventHub::new(10).start();
        let parked = hub.send(Park { job_id: job() }).await.unwrap().unwrap();
        hub.send(Notifications { arriving: false }).await.unwrap();
        assert!(parked.await.is_ok(), "everyone re-reads at once");
        let mut parked = hub.send(Park { job_id: job() }).await.unwrap().unwrap();
        tokio::time::advance(Duration::from_millis(1_100)).await;
        tokio::task::yield_now().await;
        assert!(
            parked.try_recv().is_ok(),
            "and again every second while degraded"
        );
        hub.send(Notifications { arriving: true }).await.unwrap();
        let mut parked = hub.send(Park { job_id: job() }).await.unwrap().unwrap();
        tokio::time::advance(Duration::from_secs(5)).await;
        tokio::task::yield_now().await;
        assert!(
            parked.try_recv().is_err(),
            "no timer once notifications arrive again"
        );
    }

    #[actix::test]
    async fn shutdown_releases_waiters_and_refuses_new_ones() {
        let hub = EventHub::new(10).start();
        let parked = hub.send(Park { job_id: job() }).await.unwrap().unwrap();

        hub.send(Shutdown).await.unwrap();

        assert!(parked.await.is_err(), "a released waiter wakes at once");
        assert_eq!(
            hub.send(Park { job_id: job() }).await.unwrap().err(),
            Some(NotParked::ShuttingDown)
        );
    }
}
