#!/usr/bin/env bash
# Runs the real Python SDK (mcp-mesh==3.8.0) end to end against the registry binary.
# Creates or reuses a venv under target/. Usage: tests/sdk/run.sh [path-to-mesh-registry]
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
venv="$root/target/sdk-venv"
binary="${1:-$root/target/debug/mesh-registry}"

if ! "$venv/bin/python" -c 'import importlib.metadata as m; assert m.version("mcp-mesh") == "3.8.0"' 2>/dev/null; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check mcp-mesh==3.8.0
fi
[ -x "$binary" ] || cargo build --manifest-path "$root/Cargo.toml" --bin mesh-registry

exec "$venv/bin/python" "$root/tests/sdk/e2e.py" "$binary"
