//! Agent rules: what counts as a topology change, which tools the claim gate checks, and what
//! an agent's endpoint may be.

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

/// An agent's `http_host` is where the registry sends requests (the cancel forward), so it must
/// be a host and nothing more: a DNS name (letters, digits, `-`, `_`, dot-separated labels of at
/// most 63 bytes, 253 in all) or an IP literal (IPv6 with or without brackets). No scheme, port,
/// path, query, fragment or user: those could point a forward at another URL than the agent's.
/// The empty string means "no endpoint".
pub fn valid_http_host(host: &str) -> bool {
    if host.is_empty() || ip_literal(host).is_some() {
        return true;
    }
    host.len() <= 253
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

/// The IP address a host names literally (`10.0.0.7`, `::1`, `[::1]`).
fn ip_literal(host: &str) -> Option<std::net::IpAddr> {
    let bare = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    bare.parse().ok()
}

/// How the registry and other agents reach an agent: `https` when it registered with a client
/// certificate a trusted entity vouched for (`entity_id`), as the reference decides it;
/// `http` otherwise.
pub fn scheme(entity_id: Option<&str>) -> &'static str {
    match entity_id {
        Some(entity) if !entity.is_empty() => "https",
        _ => "http",
    }
}

/// The base URL of an agent's endpoint (IPv6 in brackets, the scheme as `scheme` chooses it),
/// when it has one.
pub fn http_endpoint(host: &str, port: i32, entity_id: Option<&str>) -> Option<String> {
    if host.is_empty() || port <= 0 || !valid_http_host(host) {
        return None;
    }
    let scheme = scheme(entity_id);
    Some(match ip_literal(host) {
        Some(std::net::IpAddr::V6(ip)) => format!("{scheme}://[{ip}]:{port}"),
        _ => format!("{scheme}://{host}:{port}"),
    })
}

/// Whether a registration may update a stored agent: once an entity vouched for an agent, only
/// that entity's certificates may update it; a request without one is refused too (no
/// downgrade to plain registration). An agent no entity vouched for may be claimed by one.
pub fn entity_may_update(stored: Option<&str>, presented: Option<&str>) -> bool {
    match stored {
        None | Some("") => true,
        Some(owner) => presented == Some(owner),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn an_http_host_is_a_host_and_nothing_more() {
        for host in [
            "",
            "10.0.0.7",
            "::1",
            "[::1]",
            "agent-1.mesh.svc",
            "my_host",
            "localhost",
        ] {
            assert!(valid_http_host(host), "{host:?}");
        }
        for host in [
            "127.0.0.1:9000/admin/drain?scope=fleet#",
            "http://agent",
            "agent:8080",
            "user@agent",
            "agent/path",
            "a..b",
            "agent?x",
            "agent#x",
            &"a".repeat(64),
            "a b",
        ] {
            assert!(!valid_http_host(host), "{host:?}");
        }
        assert_eq!(
            http_endpoint("::1", 80, None).as_deref(),
            Some("http://[::1]:80")
        );
        assert_eq!(
            http_endpoint("agent", 8080, None).as_deref(),
            Some("http://agent:8080")
        );
        assert_eq!(http_endpoint("agent/x", 8080, None), None);
        assert_eq!(http_endpoint("agent", 0, None), None);
    }

    #[test]
    fn an_agent_an_entity_vouched_for_is_reached_over_https_and_updated_by_that_entity_only() {
        assert_eq!(
            http_endpoint("10.0.0.7", 9000, Some("acme")).as_deref(),
            Some("https://10.0.0.7:9000")
        );
        assert_eq!(
            http_endpoint("::1", 9000, Some("acme")).as_deref(),
            Some("https://[::1]:9000")
        );
        assert_eq!(scheme(Some("")), "http");
        assert!(entity_may_update(None, None));
        assert!(entity_may_update(None, Some("acme")));
        assert!(entity_may_update(Some("acme"), Some("acme")));
        assert!(!entity_may_update(Some("acme"), Some("globex")));
        assert!(!entity_may_update(Some("acme"), None));
    }

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

/// Required-dependency edges: capability → the capabilities its tools require.
pub type RequiredEdges = std::collections::BTreeMap<String, std::collections::BTreeSet<String>>;

/// Adds the required edges of a tool (its capability, its dependencies) to `edges`.
pub fn add_required_edges(
    edges: &mut RequiredEdges,
    capability: &str,
    dependencies: &[DependencySpec],
) {
    if capability.is_empty() {
        return;
    }
    for dependency in dependencies
        .iter()
        .filter(|d| d.required && !d.capability.is_empty())
    {
        edges
            .entry(capability.to_owned())
            .or_default()
            .insert(dependency.capability.clone());
    }
}

/// The first cycle of required dependencies, named as the reference names it
/// (`"a → b → a"`): a registration that would close one is refused, since every capability on it
/// would wait for the others forever. Capabilities are walked in name order, so the loop
/// reported is always the same. Optional dependencies never form a cycle (they are how a loop
/// is broken).
pub fn required_cycle(edges: &RequiredEdges) -> Option<String> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        OnPath,
        Done,
    }
    fn visit<'a>(
        node: &'a str,
        edges: &'a RequiredEdges,
        marks: &mut std::collections::HashMap<&'a str, Mark>,
        path: &mut Vec<&'a str>,
    ) -> Option<Vec<&'a str>> {
        marks.insert(node, Mark::OnPath);
        path.push(node);
        for next in edges.get(node).into_iter().flatten() {
            match marks.get(next.as_str()) {
                Some(Mark::OnPath) => {
                    let start = path.iter().position(|n| *n == next).unwrap_or(0);
                    let mut cycle = path[start..].to_vec();
                    cycle.push(next);
                    return Some(cycle);
                }
                Some(Mark::Done) => {}
                None => {
                    if let Some(cycle) = visit(next, edges, marks, path) {
                        return Some(cycle);
                    }
                }
            }
        }
        path.pop();
        marks.insert(node, Mark::Done);
        None
    }
    let mut marks = std::collections::HashMap::new();
    for root in edges.keys() {
        if marks.contains_key(root.as_str()) {
            continue;
        }
        if let Some(cycle) = visit(root, edges, &mut marks, &mut Vec::new()) {
            return Some(cycle.join(" → "));
        }
    }
    None
}

#[cfg(test)]
mod cycle_tests {
    use super::*;

    fn edges(pairs: &[(&str, &str)]) -> RequiredEdges {
        let mut edges = RequiredEdges::new();
        for (from, to) in pairs {
            edges
                .entry(from.to_string())
                .or_default()
                .insert(to.to_string());
        }
        edges
    }

    #[test]
    fn cycles_are_named_as_the_reference_names_them() {
        assert_eq!(required_cycle(&edges(&[("a", "b"), ("b", "c")])), None);
        assert_eq!(
            required_cycle(&edges(&[("a", "b"), ("b", "c"), ("c", "a")])).as_deref(),
            Some("a → b → c → a")
        );
        assert_eq!(
            required_cycle(&edges(&[("s", "s")])).as_deref(),
            Some("s → s")
        );
        // The loop is reported from where the walk entered it.
        assert_eq!(
            required_cycle(&edges(&[("a", "x"), ("x", "y"), ("y", "x")])).as_deref(),
            Some("x → y → x")
        );
        // A diamond is no cycle.
        assert_eq!(
            required_cycle(&edges(&[("a", "b"), ("a", "c"), ("b", "d"), ("c", "d")])),
            None
        );
    }
}
