"""Differential test of schema-gated resolution and the schema store: the reference registry and
mesh-registry (PostgreSQL and embedded backends) are given the same registrations and must give
the same answers.

Producers of one capability publish different output schemas (one with the field consumers want,
one without it, one with a nested/array shape, one publishing none); a consumer's functions each
depend on it with another schema request (none, `subset` with required fields, `subset` on
nested and array items, `strict` by hash, `strict` with an unknown hash, an empty OR group of
tags). The consumer's `dependencies_resolved` is compared field by field, before and after the
matching producer leaves; then `GET /schemas` (as a set) and `GET /schemas/{hash}` for every
hash, and the answer for an unknown hash.

Usage: python3 schemas.py <mesh-registry binary> <reference mcp-mesh-registry binary>
Exits non-zero listing every difference. Standard library only (helpers from llm.py).
"""

import pathlib
import sys

from llm import Registry, diff, request, side_by_side

TIME_LIMIT_SECONDS = 120


def log(message: str) -> None:
    print(f"[schema-diff] {message}", flush=True)


def sha(n: int) -> str:
    return "sha256:" + f"{n:x}" * 64


WITH_TEMP = (sha(1), {"type": "object", "properties": {"city": {"type": "string"}, "temp": {"type": "integer"}}})
WITHOUT_TEMP = (sha(2), {"type": "object", "properties": {"city": {"type": "string"}}})
NESTED = (sha(3), {"type": "object", "properties": {
    "readings": {"type": "array", "items": {"type": "object", "properties": {"temp": {"type": "number"}}}},
    "city": {"type": "integer"}}})
INPUT = (sha(4), {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]})
UNKNOWN = sha(5)


def producer(agent_id: str, output, tags=()) -> dict:
    tool = {"function_name": "get_weather", "capability": "weather", "version": "1.0.0", "tags": list(tags),
            "inputSchemaHash": INPUT[0], "inputSchemaCanonical": INPUT[1]}
    if output is not None:
        tool["outputSchemaHash"], tool["outputSchemaCanonical"] = output
    return {"agent_id": agent_id, "name": agent_id, "agent_type": "mcp_agent", "runtime": "python",
            "version": "1.0.0", "http_host": "127.0.0.1", "http_port": 9000, "namespace": "default",
            "tools": [tool]}


def wants(mode=None, expected=None, expected_hash=None, tags=None) -> dict:
    dependency = {"capability": "weather"}
    if mode is not None:
        dependency["matchMode"] = mode
    if expected is not None:
        dependency["expectedSchemaCanonical"] = expected
    if expected_hash is not None:
        dependency["expectedSchemaHash"] = expected_hash
    if tags is not None:
        dependency["tags"] = tags
    return dependency


TEMP = {"type": "object", "required": ["temp"], "properties": {"temp": {"type": "number"}}}
CITY_STRING = {"type": "object", "required": ["city"], "properties": {"city": {"type": "string"}}}
READINGS = {"type": "object", "required": ["readings"], "properties": {
    "readings": {"type": "array", "items": {"type": "object", "required": ["temp"],
                                            "properties": {"temp": {"type": "number"}}}}}}
CONSUMER_FUNCTIONS = {
    "plain": wants(),
    "subset_temp": wants("subset", TEMP, sha(6)),
    "subset_city": wants("subset", CITY_STRING, sha(7)),
    "subset_readings": wants("subset", READINGS, sha(8)),
    "subset_no_expectation": wants("subset"),
    "strict_with_temp": wants("strict", WITH_TEMP[1], WITH_TEMP[0]),
    "strict_unknown": wants("strict", TEMP, UNKNOWN),
    "empty_or_group": wants(tags=["fast", []]),
    "only_empty_or_group": wants(tags=[[]]),
}


def consumer() -> dict:
    return {"agent_id": "consumer", "name": "consumer", "agent_type": "mcp_agent", "runtime": "python",
            "version": "1.0.0", "http_host": "127.0.0.1", "http_port": 9100, "namespace": "default",
            "tools": [{"function_name": name, "capability": f"report_{name}", "version": "1.0.0",
                       "dependencies": [dependency]} for name, dependency in CONSUMER_FUNCTIONS.items()]}


def compare(step: str, reference: Registry, ours: list[Registry]) -> None:
    expected = reference.register(consumer())["dependencies_resolved"]
    for registry in ours:
        diff(f"{step} {registry.name} dependencies_resolved", expected, registry.register(consumer())["dependencies_resolved"])
    log(f"{step}: " + ", ".join(f"{fn}->{(r or [{}])[0].get('agent_id') or 'unresolved'}" for fn, r in sorted(expected.items())))


def run_scenario(reference: Registry, ours: list[Registry], work: pathlib.Path) -> None:
    everyone = [reference, *ours]
    for body in [producer("weather-a", WITHOUT_TEMP, ["fast"]), producer("weather-b", WITH_TEMP),
                 producer("weather-c", None, ["fast"]), producer("weather-d", NESTED)]:
        for registry in everyone:
            registry.register(body)
    compare("all producers", reference, ours)
    for registry in everyone:
        registry.leave("weather-b")
    compare("weather-b left", reference, ours)

    _, listed = request(reference.url + "/schemas")
    hashes = sorted(entry["hash"] for entry in listed["schemas"])
    for registry in ours:
        _, theirs = request(registry.url + "/schemas")
        diff(f"{registry.name} GET /schemas hashes", hashes, sorted(entry["hash"] for entry in theirs["schemas"]))
        diff(f"{registry.name} GET /schemas count", listed["count"], theirs["count"])
    for path in [f"/schemas/{h}" for h in hashes] + [f"/schemas/{UNKNOWN}"]:
        status, expected = request(reference.url + path)
        expected.pop("created_at", None)
        expected.pop("timestamp", None)
        for registry in ours:
            their_status, answer = request(registry.url + path)
            answer.pop("created_at", None)
            answer.pop("timestamp", None)
            diff(f"{registry.name} GET {path}", {"status": status, **expected}, {"status": their_status, **answer})
    log(f"compared {len(hashes)} stored schemas and an unknown hash")


def main() -> int:
    return side_by_side("schema", TIME_LIMIT_SECONDS, log, run_scenario)


if __name__ == "__main__":
    sys.exit(main())
