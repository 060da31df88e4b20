//! `AgentTracker`: this replica's in-memory view of agent liveness and of the mesh topology.
//!
//! `HEAD /heartbeat` is answered from memory; the heartbeats are written to the database in
//! batches (one statement per flush, not one per heartbeat). Each flush also answers the current
//! status of the agents it stamped, so a replica learns within one flush interval when another
//! replica marked one of them unhealthy, and the topology version, so it learns of topology
//! changes made elsewhere. The health check flushes first, then expires agents that have been
//! silent for too long (their jobs stay with them until their leases lapse).

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::time::Duration;

use actix::prelude::*;

/// A storage call made on behalf of an actor; the error is the store's message.
pub type StoreFuture<T> = Pin<Box<dyn Future<Output = Result<T, String>>>>;

/// What the tracker needs from storage (implemented by the registry's store).
pub trait AgentDirectory: 'static {
    /// The agent's liveness as stored, or `None` when it never registered.
    fn liveness(&self, agent_id: String) -> StoreFuture<Option<StoredLiveness>>;
    /// Stamps these agents as seen now (live ones only); answers their current health.
    fn record_heartbeats(&self, agent_ids: Vec<String>) -> StoreFuture<HeartbeatsRecorded>;
    /// Marks agents silent for longer than `silent_for` unhealthy.
    fn expire_silent(&self, silent_for: Duration) -> StoreFuture<Expired>;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoredLiveness {
    pub healthy: bool,
    pub topology_seen: i64,
    pub topology_version: i64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HeartbeatsRecorded {
    /// Health of each stamped agent that still exists.
    pub healthy: Vec<(String, bool)>,
    pub topology_version: Option<i64>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Expired {
    pub agent_ids: Vec<String>,
    pub topology_version: Option<i64>,
}

#[derive(Debug, Clone, Copy)]
pub struct TrackerSettings {
    /// How often collected heartbeats are written.
    pub flush_every: Duration,
    /// How often silent agents are looked for (`HEALTH_CHECK_INTERVAL`).
    pub check_every: Duration,
    /// Silence after which an agent is unhealthy (`DEFAULT_TIMEOUT_THRESHOLD`).
    pub silent_for: Duration,
}

#[derive(Debug, Clone, Copy)]
struct Tracked {
    healthy: bool,
    topology_seen: i64,
}

pub struct AgentTracker {
    directory: Rc<dyn AgentDirectory>,
    settings: TrackerSettings,
    agents: HashMap<String, Tracked>,
    /// Heartbeats received since the last flush.
    unflushed: HashSet<String>,
    topology_version: i64,
    flushing: bool,
}

impl AgentTracker {
    pub fn new(directory: Rc<dyn AgentDirectory>, settings: TrackerSettings) -> Self {
        AgentTracker {
            directory,
            settings,
            agents: HashMap::new(),
            unflushed: HashSet::new(),
            topology_version: 0,
            flushing: false,
        }
    }

    fn verdict(&mut self, agent_id: &str) -> Verdict {
        match self.agents.get(agent_id) {
            None => Verdict::Unknown,
            Some(tracked) if !tracked.healthy => Verdict::Unhealthy,
            Some(tracked) => {
                let topology_changed = self.topology_version > tracked.topology_seen;
                self.unflushed.insert(agent_id.to_owned());
                Verdict::Alive { topology_changed }
            }
        }
    }

    fn learn_version(&mut self, version: Option<i64>) {
        if let Some(version) = version {
            self.topology_version = self.topology_version.max(version);
        }
    }

    /// Writes the collected heartbeats; with `then_expire`, looks for silent agents once the
    /// write is done (our own heartbeats must reach the database before silence is judged).
    fn flush(&mut self, ctx: &mut Context<Self>, then_expire: bool) {
        if self.flushing || self.unflushed.is_empty() {
            if then_expire {
                self.expire_silent(ctx);
            }
            return;
        }
        self.flushing = true;
        let batch: Vec<String> = self.unflushed.drain().collect();
        let write = self.directory.record_heartbeats(batch.clone());
        ctx.spawn(write.into_actor(self).map(move |outcome, tracker, ctx| {
            tracker.flushing = false;
            match outcome {
                Ok(recorded) => tracker.apply_recorded(&batch, recorded),
                Err(error) => {
                    tracing::warn!(%error, agents = batch.len(), "could not record heartbeats; retrying next flush");
                    tracker.unflushed.extend(batch);
                }
            }
            if then_expire {
                tracker.expire_silent(ctx);
            }
        }));
    }

    fn apply_recorded(&mut self, batch: &[String], recorded: HeartbeatsRecorded) {
        let known: HashSet<&str> = recorded.healthy.iter().map(|(id, _)| id.as_str()).collect();
        for gone in batch.iter().filter(|id| !known.contains(id.as_str())) {
            self.agents.remove(gone);
        }
        for (agent_id, healthy) in recorded.healthy {
            if let Some(tracked) = self.agents.get_mut(&agent_id) {
                tracked.healthy = healthy;
            }
        }
        self.learn_version(recorded.topology_version);
    }

    fn expire_silent(&mut self, ctx: &mut Context<Self>) {
        let expire = self.directory.expire_silent(self.settings.silent_for);
        ctx.spawn(
            expire
                .into_actor(self)
                .map(|outcome, tracker, _| match outcome {
                    Ok(expired) => {
                        for agent_id in &expired.agent_ids {
                            if let Some(tracked) = tracker.agents.get_mut(agent_id) {
                                tracked.healthy = false;
                            }
                        }
                        tracker.learn_version(expired.topology_version);
                    }
                    Err(error) => {
                        tracing::warn!(%error, "health check failed; retrying next interval")
                    }
                }),
        );
    }
}

impl Actor for AgentTracker {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.run_interval(self.settings.flush_every, |tracker, ctx| {
            tracker.flush(ctx, false)
        });
        ctx.run_interval(self.settings.check_every, |tracker, ctx| {
            tracker.flush(ctx, true)
        });
    }
}

/// What `HEAD /heartbeat/{agent_id}` should answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Never registered: the agent must register (410).
    Unknown,
    /// Marked unhealthy or gone: the agent must register again (410).
    Unhealthy,
    /// Alive; `topology_changed` asks it to send a full heartbeat (202).
    Alive { topology_changed: bool },
}

/// A `HEAD /heartbeat/{agent_id}` arrived.
#[derive(Message)]
#[rtype(result = "Result<Verdict, String>")]
pub struct Heartbeat {
    pub agent_id: String,
}

impl Handler<Heartbeat> for AgentTracker {
    type Result = ResponseActFuture<Self, Result<Verdict, String>>;

    fn handle(&mut self, msg: Heartbeat, _: &mut Self::Context) -> Self::Result {
        if self.agents.contains_key(&msg.agent_id) {
            let verdict = self.verdict(&msg.agent_id);
            return Box::pin(fut::ready(Ok(verdict)));
        }
        // First sight on this replica (it may have registered through another one).
        let load = self.directory.liveness(msg.agent_id.clone());
        Box::pin(load.into_actor(self).map(move |loaded, tracker, _| {
            let Some(stored) = loaded? else {
                return Ok(Verdict::Unknown);
            };
            tracker.learn_version(Some(stored.topology_version));
            tracker
                .agents
                .entry(msg.agent_id.clone())
                .or_insert(Tracked {
                    healthy: stored.healthy,
                    topology_seen: stored.topology_seen,
                });
            Ok(tracker.verdict(&msg.agent_id))
        }))
    }
}

/// A full heartbeat was stored: the agent is healthy and has seen `topology_version`.
#[derive(Message)]
#[rtype(result = "()")]
pub struct AgentRegistered {
    pub agent_id: String,
    pub topology_version: i64,
}

impl Handler<AgentRegistered> for AgentTracker {
    type Result = ();

    fn handle(&mut self, msg: AgentRegistered, _: &mut Self::Context) {
        self.learn_version(Some(msg.topology_version));
        self.agents.insert(
            msg.agent_id,
            Tracked {
                healthy: true,
                topology_seen: msg.topology_version,
            },
        );
    }
}

/// The topology moved for another reason than one agent's coming or going (a certificate
/// rotation asks every agent to register again).
#[derive(Message)]
#[rtype(result = "()")]
pub struct TopologyChanged {
    pub topology_version: i64,
}

impl Handler<TopologyChanged> for AgentTracker {
    type Result = ();

    fn handle(&mut self, msg: TopologyChanged, _: &mut Self::Context) {
        self.learn_version(Some(msg.topology_version));
    }
}

/// The agent deregistered (`DELETE /agents/{id}`).
#[derive(Message)]
#[rtype(result = "()")]
pub struct AgentDeparted {
    pub agent_id: String,
    pub topology_version: Option<i64>,
}

impl Handler<AgentDeparted> for AgentTracker {
    type Result = ();

    fn handle(&mut self, msg: AgentDeparted, _: &mut Self::Context) {
        self.learn_version(msg.topology_version);
        self.unflushed.remove(&msg.agent_id);
        if let Some(tracked) = self.agents.get_mut(&msg.agent_id) {
            tracked.healthy = false;
        }
    }
}

/// The registry is stopping. Heartbeats not yet written are dropped: agents keep beating, and
/// the next registry to answer them stamps them.
impl Handler<crate::Shutdown> for AgentTracker {
    type Result = ();

    fn handle(&mut self, _: crate::Shutdown, ctx: &mut Self::Context) {
        ctx.stop();
    }
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;

    use super::*;

    /// An in-memory directory that records every call.
    #[derive(Default)]
    struct FakeDirectory {
        agents: RefCell<HashMap<String, StoredLiveness>>,
        calls: RefCell<Vec<String>>,
        expire: RefCell<Vec<String>>,
    }

    impl AgentDirectory for FakeDirectory {
        fn liveness(&self, agent_id: String) -> StoreFuture<Option<StoredLiveness>> {
            self.calls.borrow_mut().push(format!("liveness {agent_id}"));
            let found = self.agents.borrow().get(&agent_id).copied();
            Box::pin(async move { Ok(found) })
        }

        fn record_heartbeats(&self, mut agent_ids: Vec<String>) -> StoreFuture<HeartbeatsRecorded> {
            agent_ids.sort();
            self.calls
                .borrow_mut()
                .push(format!("flush {}", agent_ids.join(",")));
            let agents = self.agents.borrow();
            let healthy = agent_ids
                .iter()
                .filter_map(|id| agents.get(id).map(|a| (id.clone(), a.healthy)))
                .collect();
            let topology_version = agents.values().map(|a| a.topology_version).max();
            Box::pin(async move {
                Ok(HeartbeatsRecorded {
                    healthy,
                    topology_version,
                })
            })
        }

        fn expire_silent(&self, _: Duration) -> StoreFuture<Expired> {
            self.calls.borrow_mut().push("expire".into());
            let agent_ids: Vec<String> = self.expire.borrow_mut().drain(..).collect();
            for id in &agent_ids {
                if let Some(agent) = self.agents.borrow_mut().get_mut(id) {
                    agent.healthy = false;
                }
            }
            Box::pin(async move {
                Ok(Expired {
                    agent_ids,
                    topology_version: Some(9),
                })
            })
        }
    }

    const SETTINGS: TrackerSettings = TrackerSettings {
        flush_every: Duration::from_secs(1),
        check_every: Duration::from_secs(10),
        silent_for: Duration::from_secs(20),
    };

    fn start(directory: &Rc<FakeDirectory>) -> Addr<AgentTracker> {
        AgentTracker::new(directory.clone(), SETTINGS).start()
    }

    fn live(topology_seen: i64, topology_version: i64) -> StoredLiveness {
        StoredLiveness {
            healthy: true,
            topology_seen,
            topology_version,
        }
    }

    async fn beat(tracker: &Addr<AgentTracker>, agent_id: &str) -> Verdict {
        tracker
            .send(Heartbeat {
                agent_id: agent_id.into(),
            })
            .await
            .unwrap()
            .unwrap()
    }

    /// Lets timers fire and spawned futures run.
    async fn advance(by: Duration) {
        tokio::time::advance(by).await;
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
    }

    #[actix::test]
    async fn unknown_agents_are_looked_up_and_not_remembered() {
        let directory = Rc::new(FakeDirectory::default());
        let tracker = start(&directory);
        assert_eq!(beat(&tracker, "ghost").await, Verdict::Unknown);
        assert_eq!(beat(&tracker, "ghost").await, Verdict::Unknown);
        assert_eq!(
            directory.calls.borrow().len(),
            2,
            "each unknown beat asks the directory"
        );
    }

    #[actix::test]
    async fn heartbeats_are_answered_from_memory_and_flushed_in_one_batch() {
        tokio::time::pause();
        let directory = Rc::new(FakeDirectory::default());
        directory.agents.borrow_mut().insert("a".into(), live(3, 3));
        directory.agents.borrow_mut().insert("b".into(), live(3, 3));
        let tracker = start(&directory);
        for _ in 0..5 {
            assert_eq!(
                beat(&tracker, "a").await,
                Verdict::Alive {
                    topology_changed: false
                }
            );
            assert_eq!(
                beat(&tracker, "b").await,
                Verdict::Alive {
                    topology_changed: false
                }
            );
        }
        assert_eq!(*directory.calls.borrow(), vec!["liveness a", "liveness b"]);
        advance(Duration::from_millis(1_100)).await;
        assert_eq!(directory.calls.borrow().last().unwrap(), "flush a,b");
        advance(Duration::from_millis(1_000)).await;
        assert_eq!(
            directory.calls.borrow().len(),
            3,
            "nothing new, nothing written"
        );
    }

    #[actix::test]
    async fn a_flush_learns_what_other_replicas_decided() {
        tokio::time::pause();
        let directory = Rc::new(FakeDirectory::default());
        directory.agents.borrow_mut().insert("a".into(), live(3, 3));
        let tracker = start(&directory);
        assert_eq!(
            beat(&tracker, "a").await,
            Verdict::Alive {
                topology_changed: false
            }
        );
        // Another replica marked it unhealthy and a new agent joined the mesh.
        directory.agents.borrow_mut().insert(
            "a".into(),
            StoredLiveness {
                healthy: false,
                topology_seen: 3,
                topology_version: 4,
            },
        );
        advance(Duration::from_millis(1_100)).await;
        assert_eq!(beat(&tracker, "a").await, Verdict::Unhealthy);
    }

    #[actix::test]
    async fn topology_changes_ask_for_a_full_heartbeat_until_one_arrives() {
        let directory = Rc::new(FakeDirectory::default());
        directory
            .agents
            .borrow_mut()
            .insert("consumer".into(), live(3, 3));
        let tracker = start(&directory);
        assert_eq!(
            beat(&tracker, "consumer").await,
            Verdict::Alive {
                topology_changed: false
            }
        );
        tracker.do_send(AgentRegistered {
            agent_id: "provider".into(),
            topology_version: 4,
        });
        assert_eq!(
            beat(&tracker, "consumer").await,
            Verdict::Alive {
                topology_changed: true
            }
        );
        assert_eq!(
            beat(&tracker, "consumer").await,
            Verdict::Alive {
                topology_changed: true
            }
        );
        tracker.do_send(AgentRegistered {
            agent_id: "consumer".into(),
            topology_version: 4,
        });
        assert_eq!(
            beat(&tracker, "consumer").await,
            Verdict::Alive {
                topology_changed: false
            }
        );
        assert_eq!(
            beat(&tracker, "provider").await,
            Verdict::Alive {
                topology_changed: false
            }
        );
    }

    #[actix::test]
    async fn the_health_check_flushes_first_then_expires_silent_agents() {
        tokio::time::pause();
        let directory = Rc::new(FakeDirectory::default());
        directory
            .agents
            .borrow_mut()
            .insert("quiet".into(), live(1, 1));
        directory
            .agents
            .borrow_mut()
            .insert("chatty".into(), live(1, 1));
        let tracker = start(&directory);
        beat(&tracker, "quiet").await;
        advance(Duration::from_millis(9_500)).await;
        beat(&tracker, "chatty").await;
        directory.expire.borrow_mut().push("quiet".into());
        advance(Duration::from_millis(600)).await;
        let calls = directory.calls.borrow().clone();
        let flush = calls.iter().rposition(|c| c == "flush chatty").unwrap();
        let expire = calls.iter().position(|c| c == "expire").unwrap();
        assert!(flush < expire, "{calls:?}");
        assert_eq!(beat(&tracker, "quiet").await, Verdict::Unhealthy);
        assert_eq!(
            beat(&tracker, "chatty").await,
            Verdict::Alive {
                topology_changed: true
            }
        );
    }

    #[actix::test]
    async fn a_departed_agent_must_register_again() {
        let directory = Rc::new(FakeDirectory::default());
        directory.agents.borrow_mut().insert("a".into(), live(1, 1));
        let tracker = start(&directory);
        assert!(matches!(beat(&tracker, "a").await, Verdict::Alive { .. }));
        tracker.do_send(AgentDeparted {
            agent_id: "a".into(),
            topology_version: Some(2),
        });
        assert_eq!(beat(&tracker, "a").await, Verdict::Unhealthy);
        tracker.do_send(AgentRegistered {
            agent_id: "a".into(),
            topology_version: 2,
        });
        assert_eq!(
            beat(&tracker, "a").await,
            Verdict::Alive {
                topology_changed: false
            }
        );
    }
}
