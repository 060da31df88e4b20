//! What the registry's event log records (`GET /events`, `meshctl audit`), decided once for
//! both backends: the event types and data of the reference's lifecycle events, and how many
//! rows the log keeps.
//!
//! The reference records an agent's lifecycle from a hook on its status column; here the
//! statement that changes the status writes the event in the same transaction: a new agent
//! (`register`), an agent that comes back (`register`, a recovery), a deregistration
//! (`unregister`) and an agent that went silent (`unhealthy`). Agents of type `api` (consumers
//! without tools) record nothing, as in the reference.

use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

use crate::wire::AgentStatus;

pub const REGISTER: &str = "register";
pub const UNREGISTER: &str = "unregister";
pub const UNHEALTHY: &str = "unhealthy";

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
}
