#!/usr/bin/env bash
# Runs the real Python SDK end to end against the registry binary: mcp-mesh==3.8.0 (e2e.py, and
# llm.py for @mesh.llm agents with a mock model), and
# owners on older SDKs that leave mid-job next to a 3.8.0 producer (legacy.py, 2.0.0 and 2.7.0,
# each with its own mcp-mesh-core pinned: jobs first shipped in 2.0.0, claim epochs in 2.8.0).
# Creates or reuses venvs under target/. Usage: tests/sdk/run.sh [path-to-mesh-registry]
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
binary="${1:-$root/target/debug/mesh-registry}"

# venv <dir> <version> [extra requirement]: a venv under target/ with mcp-mesh==<version>.
venv() {
  local dir="$root/target/$1" version="$2"
  shift 2
  if ! "$dir/bin/python" -c "import importlib.metadata as m; assert m.version('mcp-mesh') == '$version'" 2>/dev/null; then
    python3 -m venv "$dir"
    "$dir/bin/pip" install --quiet --disable-pip-version-check "mcp-mesh==$version" "$@"
  fi
}
venv sdk-venv 3.8.0
venv sdk-venv-2.0.0 2.0.0 mcp-mesh-core==2.0.0
venv sdk-venv-2.7.0 2.7.0 mcp-mesh-core==2.7.0
[ -x "$binary" ] || cargo build --manifest-path "$root/Cargo.toml" --bin mesh-registry

python="$root/target/sdk-venv/bin/python"
"$python" "$root/tests/sdk/e2e.py" "$binary"
"$python" "$root/tests/sdk/llm.py" "$binary"
for old in 2.0.0 2.7.0; do
  "$python" "$root/tests/sdk/legacy.py" "$binary" "$root/target/sdk-venv-$old/bin/python" "$old"
done
