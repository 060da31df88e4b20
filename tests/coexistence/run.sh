#!/usr/bin/env bash
# The real meshui 3.7.1 (the Go registry's dashboard) on mesh-registry's database and in its
# working directory: nothing of ours changes, the registry keeps serving.
# Usage: tests/coexistence/run.sh [path-to-mesh-registry]
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
binary="${1:-$root/target/debug/mesh-registry}"
meshui="$("$root/tests/reference-cli.sh")/meshui"
[ -x "$binary" ] || cargo build --manifest-path "$root/Cargo.toml" --bin mesh-registry

exec python3 "$root/tests/coexistence/meshui.py" "$binary" "$meshui"
