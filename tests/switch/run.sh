#!/usr/bin/env bash
# Switching a live mesh from the real Go registry 3.7.1 to mesh-registry on one PostgreSQL
# database: drain with the real meshctl, stop, `migrate import-reference`, start, carry on.
# Usage: tests/switch/run.sh [path-to-mesh-registry]
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
binary="${1:-$root/target/debug/mesh-registry}"
reference="$("$root/tests/reference-cli.sh")"
[ -x "$binary" ] || cargo build --manifest-path "$root/Cargo.toml" --bin mesh-registry

exec python3 "$root/tests/switch/switch.py" "$binary" "$reference"
