//! Logging: `tracing` to stdout, level from `RUST_LOG` when set, else from the reference's
//! `MCP_MESH_LOG_LEVEL` vocabulary (`MCP_MESH_DEBUG_MODE` forces DEBUG).

use tracing_subscriber::EnvFilter;

/// Maps the reference's level names onto `tracing` levels; `None` for an unknown name.
pub fn level_directive(mesh_level: &str) -> Option<&'static str> {
    Some(match mesh_level.trim().to_ascii_uppercase().as_str() {
        "TRACE" => "trace",
        "DEBUG" => "debug",
        "INFO" => "info",
        "WARNING" | "WARN" => "warn",
        "ERROR" | "CRITICAL" => "error",
        _ => return None,
    })
}

/// Installs the global subscriber. Returns a warning to log when the level name was unknown.
pub fn init(mesh_level: &str, debug_mode: bool) -> Option<String> {
    let (directive, warning) = match (debug_mode, level_directive(mesh_level)) {
        (true, _) => ("debug", None),
        (false, Some(directive)) => (directive, None),
        (false, None) => (
            "info",
            Some(format!(
                "unknown MCP_MESH_LOG_LEVEL {mesh_level:?}; using INFO"
            )),
        ),
    };
    // actix-server announces every worker at INFO, and refinery dumps every migration's SQL:
    // noise next to the registry's own log (which names each migration it applies).
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        EnvFilter::new(format!("{directive},actix_server=warn,refinery_core=warn"))
    });
    // A second init (tests start many apps in one process) keeps the first subscriber.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
        .try_init();
    warning
}

#[cfg(test)]
mod tests {
    use super::level_directive;

    #[test]
    fn reference_level_names() {
        assert_eq!(level_directive("WARNING"), Some("warn"));
        assert_eq!(level_directive("critical"), Some("error"));
        assert_eq!(level_directive("TRACE"), Some("trace"));
        assert_eq!(level_directive("loud"), None);
    }
}
