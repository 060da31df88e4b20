#!/usr/bin/env bash
# Drives drain -> wait -> resume with the real meshctl 3.7.1 and with our own CLI.
# meshctl is fetched once with `npm pack` into a cache outside the repository (never committed).
# Usage: tests/meshctl/run.sh [path-to-mesh-registry]
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
binary="${1:-$root/target/debug/mesh-registry}"
meshctl="$("$root/tests/reference-cli.sh")/meshctl"
[ -x "$binary" ] || cargo build --manifest-path "$root/Cargo.toml" --bin mesh-registry

exec python3 "$root/tests/meshctl/e2e.py" "$binary" "$meshctl"
