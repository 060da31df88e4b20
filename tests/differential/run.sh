#!/usr/bin/env bash
# Differential test of LLM resolution against the reference registry 3.7.1 (fetched once with
# `npm pack` into a cache outside the repository, never committed).
# Usage: tests/differential/run.sh [path-to-mesh-registry]
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
binary="${1:-$root/target/debug/mesh-registry}"
cache="${MESH_REGISTRY_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/mesh-registry}/cli-linux-x64-3.7.1"
reference="$cache/package/bin/mcp-mesh-registry"

if [ ! -x "$reference" ]; then
  mkdir -p "$cache"
  (cd "$cache" && npm pack --silent @mcpmesh/cli-linux-x64@3.7.1 >/dev/null && tar xzf mcpmesh-cli-linux-x64-3.7.1.tgz)
fi
[ -x "$binary" ] || cargo build --manifest-path "$root/Cargo.toml" --bin mesh-registry

exec python3 "$root/tests/differential/llm.py" "$binary" "$reference"
