#!/usr/bin/env bash
# mTLS registration end to end: the real Python SDK (mcp-mesh==3.8.0, the venv tests/sdk/run.sh
# makes) and the real meshctl against the registry binary serving HTTPS (tests/tls/e2e.py).
# Usage: tests/tls/run.sh [path-to-mesh-registry]
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
binary="${1:-$root/target/debug/mesh-registry}"
python="$root/target/sdk-venv/bin/python"
if ! "$python" -c "import importlib.metadata as m; assert m.version('mcp-mesh') == '3.8.0'" 2>/dev/null; then
  python3 -m venv "$root/target/sdk-venv"
  "$root/target/sdk-venv/bin/pip" install --quiet --disable-pip-version-check "mcp-mesh==3.8.0"
fi
[ -x "$binary" ] || cargo build --manifest-path "$root/Cargo.toml" --bin mesh-registry
meshctl="$("$root/tests/reference-cli.sh")/meshctl"
"$python" "$root/tests/tls/e2e.py" "$binary" "$meshctl"
