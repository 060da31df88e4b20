#!/usr/bin/env bash
# Differential tests of LLM resolution, of schema-gated resolution and the schema store, of the
# event log (GET /events) and of the dependency-resolution audit trail in it, against the
# reference registry 3.7.1 (fetched once with
# `npm pack` into a cache outside the repository, never committed).
# Usage: tests/differential/run.sh [path-to-mesh-registry]
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
binary="${1:-$root/target/debug/mesh-registry}"
reference="$("$root/tests/reference-cli.sh")/mcp-mesh-registry"
[ -x "$binary" ] || cargo build --manifest-path "$root/Cargo.toml" --bin mesh-registry

python3 "$root/tests/differential/llm.py" "$binary" "$reference"
python3 "$root/tests/differential/schemas.py" "$binary" "$reference"
python3 "$root/tests/differential/events.py" "$binary" "$reference"
python3 "$root/tests/differential/audit.py" "$binary" "$reference"
