//! `EventHub`: wakes the event long-polls parked on this replica when an event is posted.
//!
//! A long-poll parks *before* it queries the database, so an event committed after that query
//! started is announced to a waiter that is already registered (the mailbox is FIFO): no wake-up
//! is lost and nothing re-queries the database on a timer. Posts through other replicas arrive
//! as PostgreSQL notifications; while those are lost (the listening connection is down), every
//! parked long-poll is woken once a second to re-read, so latency stays bounded. The number of
//! parked long-polls is bounded, and so is each client's share of them (one client cannot park
//! every slot and starve the others); a waiter whose request went away is pruned.

use std::collections::HashMap;
use std::net::IpAddr;
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

/// A parked long-poll: who parked it, and how to wake it.
struct Waiter {
    client: IpAddr,
    wake: oneshot::Sender<()>,
}

pub struct EventHub {
    parked: HashMap<Uuid, Vec<Waiter>>,
    parked_count: usize,
    /// Parked long-polls per client address (only addresses that hold some).
    parked_by_client: HashMap<IpAddr, usize>,
    capacity: usize,
    client_share: usize,
    closing: bool,
    /// Notifications from other replicas are not arriving.
    degraded: bool,
}

impl EventHub {
    /// At most `capacity` long-polls parked at once, at most `client_share` of them by one client.
    pub fn new(capacity: usize, client_share: usize) -> Self {
        EventHub {
            parked: HashMap::new(),
            parked_count: 0,
            parked_by_client: HashMap::new(),
            capacity,
            client_share,
            closing: false,
            degraded: false,
        }
    }

    fn wake_all(&mut self) {
        for (_, waiters) in self.parked.drain() {
            for waiter in waiters {
                let _ = waiter.wake.send(());
            }
        }
        self.forget_all();
    }

    fn forget_all(&mut self) {
        self.parked.clear();
        self.parked_count = 0;
        self.parked_by_client.clear();
    }

    /// Forgets waiters whose request went away, and recounts.
    fn prune(&mut self) {
        self.parked.retain(|_, waiters| {
            waiters.retain(|waiter| !waiter.wake.is_closed());
            !waiters.is_empty()
        });
        self.parked_by_client.clear();
        for waiter in self.parked.values().flatten() {
            *self.parked_by_client.entry(waiter.client).or_default() += 1;
        }
        self.parked_count = self.parked_by_client.values().sum();
    }

    fn client_parked(&self, client: IpAddr) -> usize {
        self.parked_by_client.get(&client).copied().unwrap_or(0)
    }

    fn has_room_for(&self, client: IpAddr) -> Result<(), NotParked> {
        if self.parked_count >= self.capacity {
            Err(NotParked::Full)
        } else if self.client_parked(client) >= self.client_share {
            Err(NotParked::ClientShareTaken)
        } else {
            Ok(())
        }
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

/// Register interest in the next event of `job_id`, on behalf of the client at `client`.
#[derive(Message)]
#[rtype(result = "Result<Wakeup, NotParked>")]
pub struct Park {
    pub job_id: Uuid,
    pub client: IpAddr,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotParked {
    /// As many long-polls as the registry allows are already parked.
    Full,
    /// This client already holds its share of the parked long-polls.
    ClientShareTaken,
    /// The registry is stopping; answer with what is there now.
    ShuttingDown,
}

impl Handler<Park> for EventHub {
    type Result = Result<Wakeup, NotParked>;

    fn handle(&mut self, msg: Park, _: &mut Self::Context) -> Self::Result {
        if self.closing {
            return Err(NotParked::ShuttingDown);
        }
        if self.has_room_for(msg.client).is_err() {
            self.prune();
            self.has_room_for(msg.client)?;
        }
        let (wake, wakeup) = oneshot::channel();
        let waiter = Waiter {
            client: msg.client,
            wake,
        };
        self.parked.entry(msg.job_id).or_default().push(waiter);
        self.parked_count += 1;
        *self.parked_by_client.entry(msg.client).or_default() += 1;
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
        let Some(waiters) = self.parked.remove(&msg.job_id) else {
            return;
        };
        self.parked_count -= waiters.len();
        for waiter in waiters {
            if let Some(count) = self.parked_by_client.get_mut(&waiter.client) {
                *count -= 1;
                if *count == 0 {
                    self.parked_by_client.remove(&waiter.client);
                }
            }
            let _ = waiter.wake.send(());
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
        self.forget_all();
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

    const CLIENT: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 1));

    fn park(job_id: Uuid) -> Park {
        Park {
            job_id,
            client: CLIENT,
        }
    }

    #[actix::test]
    async fn a_post_wakes_every_waiter_of_that_job_only() {
        let hub = EventHub::new(10, 10).start();
        let (a, b) = (job(), job());
        let first = hub.send(park(a)).await.unwrap().unwrap();
        let second = hub.send(park(a)).await.unwrap().unwrap();
        let mut other = hub.send(park(b)).await.unwrap().unwrap();

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
        let hub = EventHub::new(2, 2).start();
        let kept = hub.send(park(job())).await.unwrap().unwrap();
        let dropped = hub.send(park(job())).await.unwrap().unwrap();
        assert_eq!(
            hub.send(park(job())).await.unwrap().err(),
            Some(NotParked::Full)
        );

        drop(dropped);
        assert!(hub.send(park(job())).await.unwrap().is_ok());
        drop(kept);
    }

    #[actix::test]
    async fn one_client_cannot_take_the_slots_of_the_others() {
        let hub = EventHub::new(4, 2).start();
        let woken_later = job();
        let _first = hub.send(park(woken_later)).await.unwrap().unwrap();
        let _second = hub.send(park(job())).await.unwrap().unwrap();
        assert_eq!(
            hub.send(park(job())).await.unwrap().err(),
            Some(NotParked::ClientShareTaken)
        );

        let other = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 2));
        let polite = hub.send(Park {
            job_id: job(),
            client: other,
        });
        assert!(polite.await.unwrap().is_ok(), "another client still parks");

        hub.send(EventPosted {
            job_id: woken_later,
        })
        .await
        .unwrap();
        assert!(
            hub.send(park(job())).await.unwrap().is_ok(),
            "a wake-up gives the slot back to its client"
        );
    }

    #[actix::test]
    async fn lost_notifications_mean_a_recheck_every_second_until_they_return() {
        tokio::time::pause();
        let hub = EventHub::new(10, 10).start();
        let parked = hub.send(park(job())).await.unwrap().unwrap();
        hub.send(Notifications { arriving: false }).await.unwrap();
        assert!(parked.await.is_ok(), "everyone re-reads at once");
        let mut parked = hub.send(park(job())).await.unwrap().unwrap();
        tokio::time::advance(Duration::from_millis(1_100)).await;
        tokio::task::yield_now().await;
        assert!(
            parked.try_recv().is_ok(),
            "and again every second while degraded"
        );
        hub.send(Notifications { arriving: true }).await.unwrap();
        let mut parked = hub.send(park(job())).await.unwrap().unwrap();
        tokio::time::advance(Duration::from_secs(5)).await;
        tokio::task::yield_now().await;
        assert!(
            parked.try_recv().is_err(),
            "no timer once notifications arrive again"
        );
    }

    #[actix::test]
    async fn shutdown_releases_waiters_and_refuses_new_ones() {
        let hub = EventHub::new(10, 10).start();
        let parked = hub.send(park(job())).await.unwrap().unwrap();

        hub.send(Shutdown).await.unwrap();

        assert!(parked.await.is_err(), "a released waiter wakes at once");
        assert_eq!(
            hub.send(park(job())).await.unwrap().err(),
            Some(NotParked::ShuttingDown)
        );
    }
}
