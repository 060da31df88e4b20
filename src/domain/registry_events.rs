//! What the registry's event log records (`GET /events`, `meshctl audit`), decided once for
//! both backends: the event types and data of the reference's lifecycle events, which
//! dependency resolutions the audit trail records, and how many rows the log keeps.
//!
//! The reference records an agent's lifecycle from a hook on its status column; here the
//! statement that changes the status writes the event in the same transaction: a new agent
//! (`register`), an agent that comes back (`register`, a recovery), a deregistration
//! (`unregister`) and an agent that went silent (`unhealthy`). Agents of type `api` (consumers
//! without tools) record nothing, as in the reference.
//!
//! A full heartbeat resolves the agent's dependencies, and each resolution may record a
//! `dependency_resolved` or `dependency_unresolved` event whose data is its trace
//! (`resolve::trace`): [`AuditMemory::record`] applies the reference's gating and dedupe.

use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::wire::AgentStatus;

pub const REGISTER: &str = "register";
pub const UNREGISTER: &str = "unregister";
pub const UNHEALTHY: &str = "unhealthy";
pub const DEPENDENCY_RESOLVED: &str = "dependency_resolved";
pub const DEPENDENCY_UNRESOLVED: &str = "dependency_unresolved";

/// The agent type whose lifecycle is not recorded (the statements test it too).
pub const UNRECORDED_AGENT_TYPE: &str = "api";

/// The most events the log keeps whatever their age: the purge deletes the older ones, so a
/// client that registers and deregisters in a loop cannot grow it past this within the
/// retention.
pub const MAX_KEPT: i64 = 100_000;

/// What a registration records, given whether the agent is new and its status before: a new
/// agent or one that comes back is a `register`; a refresh of a healthy agent records nothing.
pub fn on_registration(
    agent_type: &str,
    name: &str,
    version: &str,
    created: bool,
    previous: Option<AgentStatus>,
) -> Option<(&'static str, Value)> {
    if agent_type == UNRECORDED_AGENT_TYPE {
        return None;
    }
    if created {
        return Some((
            REGISTER,
            json!({"agent_type": agent_type, "name": name, "version": version}),
        ));
    }
    match previous {
        Some(old) if old != AgentStatus::Healthy => Some((
            REGISTER,
            status_change(
                old,
                AgentStatus::Healthy,
                "recovery",
                "Agent recovered to healthy status",
            ),
        )),
        _ => None,
    }
}

/// The data of an `unregister` (`DELETE /agents/{id}`); the statement adds the agent's
/// `agent_type`, `name` and `version`.
pub fn on_deregistration() -> Value {
    json!({"reason": "graceful_shutdown", "source": "delete_endpoint"})
}

/// The data of the `unhealthy` event of a healthy agent that went silent.
pub fn on_silence() -> Value {
    status_change(
        AgentStatus::Healthy,
        AgentStatus::Unhealthy,
        "health_degradation",
        "Agent became unhealthy",
    )
}

/// A status change, described as the reference's status hook describes it.
fn status_change(old: AgentStatus, new: AgentStatus, reason: &str, description: &str) -> Value {
    json!({
        "reason": reason,
        "description": description,
        "old_status": old.as_str(),
        "new_status": new.as_str(),
        "transition_type": format!("{}_to_{}", old.as_str(), new.as_str()),
        "source": "status_change_hook",
        "detected_at": whole_seconds_rfc3339(SystemTime::now()),
    })
}

/// RFC 3339 in whole seconds, as Go's `time.RFC3339` prints.
fn whole_seconds_rfc3339(at: SystemTime) -> String {
    let seconds = at.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    crate::wire::rfc3339(UNIX_EPOCH + std::time::Duration::from_secs(seconds))
}

/// One resolution of a dependency, as the audit's gating sees it.
pub struct Resolution<'a> {
    /// The producer's agent id; `None`: unresolved.
    pub chosen: Option<&'a str>,
    /// At least two candidates entered the stages (the reference's "interesting" decision).
    pub contested: bool,
    /// A stage dropped at least one candidate.
    pub evicted_any: bool,
}

/// An audit event a resolution records.
#[derive(Debug, PartialEq)]
pub struct Recorded {
    pub event_type: &'static str,
    /// The producer the dependency's newest `dependency_resolved` chose before this one (the
    /// trace's `prior_chosen`).
    pub prior_chosen: Option<String>,
}

/// What the log holds of one consumer's audit trail: per dependency (function name, then
/// position), the type and trace fingerprint of its newest audit event and the producer its
/// newest `dependency_resolved` chose. The reference reads these back from its newest events at
/// every resolution; kept with the agent instead, deciding reads nothing, and a resolution that
/// records nothing writes nothing.
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditMemory(BTreeMap<String, BTreeMap<usize, Slot>>);

#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
struct Slot {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    newest: Option<Newest>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    chosen: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Newest {
    resolved: bool,
    fingerprint: String,
}

impl AuditMemory {
    /// The event this resolution of the dependency at `dep_index` of `function` records, if
    /// any, remembering it. As the reference gates it: a contested decision records; so does an
    /// unresolved one that dropped a candidate or lost the producer it had, and a resolved one
    /// whose producer changed or that was unresolved before. A single forced choice that
    /// changed nothing records nothing, and neither does a trace identical to the dependency's
    /// newest event (its `fingerprint`, computed only when it is needed).
    pub fn record(
        &mut self,
        function: &str,
        dep_index: usize,
        resolution: &Resolution,
        fingerprint: impl FnOnce() -> String,
    ) -> Option<Recorded> {
        let slot = self.0.get(function).and_then(|slots| slots.get(&dep_index));
        let prior = slot.and_then(|s| s.chosen.as_deref());
        let newest = slot.and_then(|s| s.newest.as_ref());
        let worth_it = resolution.contested
            || match resolution.chosen {
                None => resolution.evicted_any || prior.is_some(),
                Some(chosen) => {
                    prior.is_some_and(|p| p != chosen) || newest.is_some_and(|n| !n.resolved)
                }
            };
        if !worth_it {
            return None;
        }
        let fingerprint = fingerprint();
        if newest.is_some_and(|n| n.fingerprint == fingerprint) {
            return None;
        }
        let prior_chosen = prior.map(str::to_owned);
        let slot = self
            .0
            .entry(function.to_owned())
            .or_default()
            .entry(dep_index)
            .or_default();
        slot.newest = Some(Newest {
            resolved: resolution.chosen.is_some(),
            fingerprint,
        });
        if let Some(chosen) = resolution.chosen {
            slot.chosen = Some(chosen.to_owned());
        }
        Some(Recorded {
            event_type: match resolution.chosen {
                Some(_) => DEPENDENCY_RESOLVED,
                None => DEPENDENCY_UNRESOLVED,
            },
            prior_chosen,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_agent_and_a_recovery_register_a_refresh_records_nothing() {
        let (kind, data) = on_registration("mcp_agent", "a", "1.0", true, None).unwrap();
        assert_eq!(kind, REGISTER);
        assert_eq!(
            data,
            json!({"agent_type": "mcp_agent", "name": "a", "version": "1.0"})
        );
        let (kind, data) =
            on_registration("mcp_agent", "a", "1.0", false, Some(AgentStatus::Unhealthy)).unwrap();
        assert_eq!(kind, REGISTER);
        assert_eq!(data["transition_type"], "unhealthy_to_healthy");
        assert_eq!(data["reason"], "recovery");
        assert!(
            on_registration("mcp_agent", "a", "1.0", false, Some(AgentStatus::Healthy)).is_none()
        );
        assert!(on_registration("api", "a", "1.0", true, None).is_none());
    }

    #[test]
    fn silence_is_a_health_degradation_in_whole_seconds() {
        let data = on_silence();
        assert_eq!(data["transition_type"], "healthy_to_unhealthy");
        let detected = data["detected_at"].as_str().unwrap();
        assert!(
            detected.ends_with('Z') && !detected.contains('.'),
            "{detected}"
        );
    }

    /// A resolution with `n` candidates (evicting some when `evicted`), choosing `chosen`; its
    /// fingerprint is `print`.
    fn outcome(
        memory: &mut AuditMemory,
        chosen: Option<&str>,
        n: usize,
        evicted: bool,
        print: &str,
    ) -> Option<Recorded> {
        let resolution = Resolution {
            chosen,
            contested: n >= 2,
            evicted_any: evicted,
        };
        memory.record("plan", 0, &resolution, || print.to_owned())
    }

    fn resolved(prior: Option<&str>) -> Option<Recorded> {
        Some(Recorded {
            event_type: DEPENDENCY_RESOLVED,
            prior_chosen: prior.map(str::to_owned),
        })
    }

    fn unresolved(prior: Option<&str>) -> Option<Recorded> {
        Some(Recorded {
            event_type: DEPENDENCY_UNRESOLVED,
            prior_chosen: prior.map(str::to_owned),
        })
    }

    #[test]
    fn the_audit_records_decisions_and_changes_once_each() {
        let mut memory = AuditMemory::default();
        // A single forced choice is noise; so is nobody offering the capability at all.
        assert_eq!(outcome(&mut memory, Some("a"), 1, false, "t1"), None);
        assert_eq!(outcome(&mut memory, None, 0, false, "t0"), None);
        // A contested decision is recorded, then deduplicated while it stays the same.
        assert_eq!(
            outcome(&mut memory, Some("a"), 2, false, "t2"),
            resolved(None)
        );
        assert_eq!(outcome(&mut memory, Some("a"), 2, false, "t2"), None);
        // The producer changes, even as a forced choice: recorded, naming the one before.
        assert_eq!(
            outcome(&mut memory, Some("b"), 1, false, "t3"),
            resolved(Some("a"))
        );
        assert_eq!(outcome(&mut memory, Some("b"), 1, false, "t3"), None);
        // The producer is lost: recorded even without candidates, and once.
        assert_eq!(
            outcome(&mut memory, None, 0, false, "t4"),
            unresolved(Some("b"))
        );
        assert_eq!(outcome(&mut memory, None, 0, false, "t4"), None);
        // Back from unresolved, as a forced choice of the same producer.
        assert_eq!(
            outcome(&mut memory, Some("b"), 1, false, "t3"),
            resolved(Some("b"))
        );
        // A single candidate dropped is the reason a dependency stays unresolved.
        let mut fresh = AuditMemory::default();
        assert_eq!(outcome(&mut fresh, None, 1, true, "t5"), unresolved(None));
        for _ in 0..4 {
            assert_eq!(outcome(&mut fresh, None, 1, true, "t5"), None);
        }
        // Each dependency of each function has its own history.
        let resolution = Resolution {
            chosen: Some("a"),
            contested: true,
            evicted_any: false,
        };
        assert!(memory
            .record("plan", 1, &resolution, || "t2".into())
            .is_some());
        assert!(memory
            .record("other", 0, &resolution, || "t2".into())
            .is_some());
    }

    #[test]
    fn the_fingerprint_is_computed_only_when_the_gating_passes() {
        let mut memory = AuditMemory::default();
        let forced = Resolution {
            chosen: Some("a"),
            contested: false,
            evicted_any: false,
        };
        assert_eq!(
            memory.record("plan", 0, &forced, || unreachable!("a forced choice")),
            None
        );
        // The memory as stored round-trips.
        let contested = Resolution {
            contested: true,
            ..forced
        };
        memory.record("plan", 0, &contested, || "t".into());
        let stored = serde_json::to_string(&memory).unwrap();
        assert_eq!(
            serde_json::from_str::<AuditMemory>(&stored).unwrap(),
            memory
        );
        assert_eq!(
            serde_json::from_str::<AuditMemory>("{}").unwrap(),
            AuditMemory::default()
        );
    }
}
