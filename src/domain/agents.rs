//! Agent rules: what counts as a topology change, and which tools the claim gate checks.

use crate::wire::{AgentStatus, DependencySpec};

/// A registration changes the topology (every other agent's next `HEAD /heartbeat` answers
/// `202` and re-resolves) when the agent is new, comes back from unhealthy, or changed what
/// others resolve against (`topology`: its name, namespace, endpoint and tools).
pub fn topology_changed(
    previous: Option<(AgentStatus, &serde_json::Value)>,
    topology: &serde_json::Value,
) -> bool {
    match previous {
        None => true,
        Some((status, before)) => status != AgentStatus::Healthy || before != topology,
    }
}

/// A tool with a required dependency is gated: its agent gets no work for the tool's capability
/// while nothing available serves that dependency.
pub fn has_required_dependencies(dependencies: &[DependencySpec]) -> bool {
    dependencies.iter().any(|d| d.required)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn new_returning_or_changed_agents_change_the_topology() {
        let topology = json!({"name": "a", "tools": [{"capability": "c"}]});
        assert!(topology_changed(None, &topology));
        assert!(topology_changed(
            Some((AgentStatus::Unhealthy, &topology)),
            &topology
        ));
        assert!(topology_changed(
            Some((AgentStatus::Healthy, &json!({"name": "a", "tools": []}))),
            &topology
        ));
        assert!(!topology_changed(
            Some((AgentStatus::Healthy, &topology)),
            &topology
        ));
    }

    #[test]
    fn only_required_dependencies_gate_claims() {
        let dependency = |required| -> DependencySpec {
            serde_json::from_value(json!({"capability": "d", "required": required})).unwrap()
        };
        assert!(!has_required_dependencies(&[]));
        assert!(!has_required_dependencies(&[dependency(false)]));
        assert!(has_required_dependencies(&[
            dependency(false),
            dependency(true)
        ]));
    }
}
