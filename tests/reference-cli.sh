#!/usr/bin/env bash
# Prints the directory of the reference's real binaries (mcp-mesh-registry, meshctl, meshui
# 3.7.1), fetching their npm package once into a cache outside the repository (never committed).
# Tests call this in parallel: a lock makes the first caller fetch while the others wait, and
# the package is unpacked beside the cache and moved in whole, so nobody sees half of it.
set -euo pipefail
cache="${MESH_REGISTRY_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/mesh-registry}/cli-linux-x64-3.7.1"
if [ ! -x "$cache/package/bin/meshui" ]; then
  mkdir -p "$cache"
  exec 9>"$cache/.lock"
  flock 9
  if [ ! -x "$cache/package/bin/meshui" ]; then
    unpacked="$(mktemp -d "$cache/unpack.XXXXXX")"
    (cd "$unpacked" && npm pack --silent @mcpmesh/cli-linux-x64@3.7.1 >/dev/null \
      && tar xzf mcpmesh-cli-linux-x64-3.7.1.tgz)
    rm -rf "$cache/package"
    mv "$unpacked/package" "$cache/package"
    rm -rf "$unpacked"
  fi
fi
echo "$cache/package/bin"
