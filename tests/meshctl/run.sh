#!/usr/bin/env bash
# Drives drain -> wait -> resume with the real meshctl 3.7.1 and with our own CLI.
# meshctl is fetched once with `npm pack` into a cache outside the repository (never committed).
# Usage: tests/meshctl/run.sh [path-to-mesh-registry]
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
binary="${1:-$root/target/debug/mesh-registry}"
cache="${MESH_REGISTRY_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/mesh-registry}/cli-linux-x64-3.7.1"
meshctl="$cache/package/bin/meshctl"

if [ ! -x "$meshctl" ]; then
  mkdir -p "$cache"
  (cd "$cache" && npm pack --silent @mcpmesh/cli-linux-x64@3.7.1 >/dev/null && tar xzf mcpmesh-cli-linux-x64-3.7.1.tgz)
fi
[ -x "$binary" ] || cargo build --manifest-path "$root/Cargo.toml" --bin mesh-registry

exec python3 "$root/tests/meshctl/e2e.py" "$binary" "$meshctl"
