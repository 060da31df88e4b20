#!/usr/bin/env bash
# The trace pipeline end to end: a real Python SDK agent (mcp-mesh 3.8.0) with tracing on writes
# its spans to a Redis of the run's own, mesh-registry exports them, and the real meshctl 3.7.1
# reads the trace back (`meshctl trace`). Uses the SDK venv tests/sdk/run.sh builds.
# Usage: tests/trace/run.sh [path-to-mesh-registry]
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
binary="${1:-$root/target/debug/mesh-registry}"
python="${SDK_PYTHON:-$root/target/sdk-venv/bin/python}"
meshctl="$("$root/tests/reference-cli.sh")/meshctl"
[ -x "$binary" ] || cargo build --manifest-path "$root/Cargo.toml" --bin mesh-registry
[ -x "$python" ] || { echo "no SDK venv at $python: run tests/sdk/run.sh first" >&2; exit 1; }
command -v redis-server >/dev/null || { echo "redis-server is not installed" >&2; exit 1; }

exec "$python" "$root/tests/trace/e2e.py" "$binary" "$meshctl"
