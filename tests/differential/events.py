"""Differential test of the registry's event log (`GET /events`): the reference registry and
mesh-registry (PostgreSQL and embedded backends) see the same agents register, refresh, leave,
come back and fall silent, and must record the same events.

Compared field by field, newest first: `event_type`, `agent_id`, `agent_name`, `function_name`
and `data` (its `detected_at` aside), and which fields are present at all; timestamps only for
being there. Then the filters (`type`, `agent_id`, `function_name`), the page (`limit`, clamped)
and a malformed limit (status and body).

Usage: python3 events.py <mesh-registry binary> <reference mcp-mesh-registry binary>
Exits non-zero listing every difference. Standard library only (helpers from llm.py).
"""

import pathlib
import sys
import time

from llm import Keeper, Registry, diff, request, side_by_side

TIME_LIMIT_SECONDS = 120


def log(message: str) -> None:
    print(f"[events-diff] {message}", flush=True)


def agent(agent_id: str, agent_type: str = "mcp_agent") -> dict:
    tools = [] if agent_type == "api" else [{"function_name": "get_weather", "capability": "weather",
                                             "version": "1.0.0"}]
    return {"agent_id": agent_id, "name": agent_id, "agent_type": agent_type, "runtime": "python",
            "version": "1.2.0", "http_host": "127.0.0.1", "http_port": 9000, "namespace": "default",
            "tools": tools}


def comparable(answer: dict) -> dict:
    """The answer without what differs by nature: timestamps and the moment a change was seen."""
    events = []
    for event in answer["events"]:
        event = dict(event)
        assert isinstance(event.pop("timestamp", None), str), f"an event without a timestamp: {event}"
        if isinstance(event.get("data"), dict):
            event["data"] = {k: v for k, v in event["data"].items() if k != "detected_at"}
        events.append(event)
    return {"count": answer["count"], "events": events}


QUERIES = ["", "?type=register", "?type=unregister", "?type=unhealthy", "?agent_id=weather-a",
           "?agent_id=weather-a&type=register", "?function_name=get_weather", "?type=bogus",
           "?type=&agent_id=", "?limit=2", "?limit=0", "?limit=100000"]


def run_scenario(reference: Registry, ours: list[Registry], work: pathlib.Path) -> None:
    everyone = [reference, *ours]
    # Every agent but weather-b heartbeats, as SDKs do: only weather-b falls silent.
    keeper = Keeper(everyone)
    keeper.start()
    # Each step on every registry before the next, so that the order of events is the same.
    steps = [
        ("register weather-a", lambda r: r.register(agent("weather-a"))),
        ("register weather-b", lambda r: r.register(agent("weather-b"))),
        ("an api consumer", lambda r: r.register(agent("api-1", "api"))),
        ("weather-a refreshes", lambda r: r.register(agent("weather-a"))),
        ("weather-a leaves", lambda r: r.leave("weather-a")),
        ("the api consumer leaves", lambda r: r.leave("api-1")),
        ("weather-a comes back", lambda r: r.register(agent("weather-a"))),
    ]
    for name, step in steps:
        for registry in everyone:
            step(registry)
        if name == "weather-a comes back":
            keeper.set_live("weather-a", True)
        time.sleep(0.05)
    log("weather-b falls silent (no heartbeats) until every registry marks it unhealthy")
    deadline = time.monotonic() + 30
    while any(r.agents()["weather-b"]["status"] != "unhealthy" for r in everyone):
        if time.monotonic() > deadline:
            raise TimeoutError("weather-b never turned unhealthy everywhere")
        time.sleep(0.5)
    # The reference records the change in the same transaction; give a late writer a beat.
    time.sleep(1)
    for query in QUERIES:
        status, expected = request(f"{reference.url}/events{query}")
        assert status == 200, f"reference /events{query}: {status} {expected}"
        expected = comparable(expected)
        for registry in ours:
            their_status, answer = request(f"{registry.url}/events{query}")
            diff(f"{registry.name} GET /events{query} status", status, their_status)
            if their_status == 200:
                diff(f"{registry.name} GET /events{query}", expected, comparable(answer))
    for query in ["?limit=abc"]:
        expected = request(f"{reference.url}/events{query}")
        for registry in ours:
            diff(f"{registry.name} GET /events{query}", expected, request(f"{registry.url}/events{query}"))
    _, everything = request(reference.url + "/events")
    log(f"compared {len(QUERIES) + 1} queries over {everything['count']} events: "
        + ", ".join(f"{e['event_type']}:{e['agent_id']}" for e in everything["events"]))


def main() -> int:
    return side_by_side("events", TIME_LIMIT_SECONDS, log, run_scenario)


if __name__ == "__main__":
    sys.exit(main())
