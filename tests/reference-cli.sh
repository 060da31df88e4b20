#!/usr/bin/env bash
# Prints the directory of the reference's real binaries (mcp-mesh-registry, meshctl, meshui
# 3.7.1), fetching their npm package once into a cache outside the repository (never committed).
set -euo pipefail
cache="${MESH_REGISTRY_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/mesh-registry}/cli-linux-x64-3.7.1"
if [ ! -x "$cache/package/bin/meshui" ]; then
  mkdir -p "$cache"
  (cd "$cache" && npm pack --silent @mcpmesh/cli-linux-x64@3.7.1 >/dev/null && tar xzf mcpmesh-cli-linux-x64-3.7.1.tgz)
fi
echo "$cache/package/bin"
