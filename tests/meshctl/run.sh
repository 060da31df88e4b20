#!/usr/bin/env bash
# The real meshctl 3.7.1 against mesh-registry: drain -> wait -> resume (also with our own CLI)
# and `meshctl list` (e2e.py); `meshctl call` through the registry's proxy to a real Python SDK
# agent, next to the reference registry 3.7.1 (tools.py).
# meshctl and the reference are fetched once with `npm pack` into a cache outside the repository
# (never committed); the SDK venv is tests/sdk/run.sh's (target/sdk-venv, made here if missing).
# Usage: tests/meshctl/run.sh [path-to-mesh-registry]
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
binary="${1:-$root/target/debug/mesh-registry}"
bin="$("$root/tests/reference-cli.sh")"
[ -x "$binary" ] || cargo build --manifest-path "$root/Cargo.toml" --bin mesh-registry
python="$root/target/sdk-venv/bin/python"
if ! "$python" -c "import importlib.metadata as m; assert m.version('mcp-mesh') == '3.8.0'" 2>/dev/null; then
  python3 -m venv "$root/target/sdk-venv"
  "$root/target/sdk-venv/bin/pip" install --quiet --disable-pip-version-check "mcp-mesh==3.8.0"
fi

python3 "$root/tests/meshctl/e2e.py" "$binary" "$bin/meshctl"
python3 "$root/tests/meshctl/tools.py" "$binary" "$bin/meshctl" "$bin/mcp-mesh-registry" "$python"
