"""Differential test of the dependency-resolution audit trail (`dependency_resolved` /
`dependency_unresolved` in `GET /events`, what `meshctl audit` shows): the reference registry
and mesh-registry (PostgreSQL and embedded backends) see the same producers register, change,
leave and come back, and a consumer send its full heartbeat after each step, and must record the
same audit events.

The consumer's dependencies cover every stage: a contested choice (two producers, a third
dropped by a tag), a single forced choice (never recorded), an excluded tag, an OR group, a
version no producer meets, a capability nobody offers, a producer unavailable for want of its
required dependency, and schema matching (`subset`, `strict`). Steps: everything registers; the
consumer refreshes unchanged (nothing new may be recorded); the chosen producer leaves (flips);
the other one leaves too (lost); one comes back (found again).

Compared field by field, newest first: `event_type`, `agent_id`, `agent_name`, `function_name`
and `data` (the trace: spec, stages with their kept and evicted candidates, reasons and details,
the tiebreaker's ranking and choice, `chosen`, `prior_chosen`), and `count`; timestamps only for
being there. Within a stage other than the tiebreaker, the candidates are compared as sets (the
reference lists them in the order its database returns them). Also the `type` filter of each
audit type.

Usage: python3 audit.py <mesh-registry binary> <reference mcp-mesh-registry binary>
Exits non-zero listing every difference. Standard library only (helpers from llm.py).
"""

import sys
import time

from llm import Keeper, Registry, diff, request, side_by_side

TIME_LIMIT_SECONDS = 180


def log(message: str) -> None:
    print(f"[audit-diff] {message}", flush=True)


def agent(agent_id: str, tools: list[dict], port: int = 9000) -> dict:
    return {"agent_id": agent_id, "name": agent_id, "agent_type": "mcp_agent", "runtime": "python",
            "version": "1.0.0", "http_host": "127.0.0.1", "http_port": port, "namespace": "default",
            "tools": tools}


def serve(capability: str, version: str = "1.0.0", tags=(), **extra) -> dict:
    return {"function_name": "serve", "capability": capability, "version": version, "tags": list(tags), **extra}


def sha(n: int) -> str:
    return "sha256:" + f"{n:x}" * 64


WITH_TEMP = {"type": "object", "properties": {"temp": {"type": "integer"}, "city": {"type": "string"}}}
WITHOUT_TEMP = {"type": "object", "properties": {"city": {"type": "integer"},
                                                 "readings": {"type": "array"}}}
WANTS_TEMP = {"type": "object", "required": ["temp", "city", "readings"], "properties": {
    "temp": {"type": "number"}, "city": {"type": "string"},
    "readings": {"type": "array", "items": {"type": "number"}}}}


def report(schema_id: int | None, schema: dict | None) -> dict:
    extra = {} if schema is None else {"outputSchemaHash": sha(schema_id), "outputSchemaCanonical": schema}
    return serve("report", "1.0.0", ["api"], **extra)


PRODUCERS = {
    "weather-a": [serve("weather", "1.0.0", ["api"])],
    "weather-b": [serve("weather", "2.0.0", ["api", "beta"])],
    "weather-c": [serve("weather", "0.5.0", ["internal"])],
    "clock-a": [serve("clock")],
    # Unavailable: its required dependency is offered by nobody.
    "gated": [serve("weather", "9.0.0", ["api"], dependencies=[{"capability": "storage", "required": True}])],
    "report-fits": [report(1, WITH_TEMP)],
    "report-misfit": [report(2, WITHOUT_TEMP)],
    "report-legacy": [report(None, None)],
}

CONSUMER = agent("planner", [
    {"function_name": "plan", "capability": "plan", "version": "1.0.0", "dependencies": [
        {"capability": "weather", "tags": ["api"]},
        {"capability": "clock"},
        {"capability": "weather", "tags": ["api", "-beta"], "version": ">=0.1"},
        {"capability": "weather", "version": ">=10"},
        {"capability": "nothing"},
        {"capability": "report", "matchMode": "subset", "expectedSchemaHash": sha(9),
         "expectedSchemaCanonical": WANTS_TEMP},
        {"capability": "report", "matchMode": "strict", "expectedSchemaHash": sha(1)},
    ]},
    {"function_name": "watch", "capability": "watch", "version": "1.0.0", "dependencies": [
        {"capability": "weather", "tags": [["x", "api"], "+beta"]},
        {"capability": "weather", "tags": [["x", "y"]]},
    ]},
], port=9100)


def comparable(answer: dict) -> dict:
    """The audit events without their timestamps, each stage's candidates but the tiebreaker's as
    sets."""
    events = []
    for event in answer["events"]:
        if event["event_type"] not in ("dependency_resolved", "dependency_unresolved"):
            continue
        event = dict(event)
        assert isinstance(event.pop("timestamp", None), str), f"an event without a timestamp: {event}"
        data = event.get("data")
        if isinstance(data, dict) and isinstance(data.get("stages"), list):
            data = dict(data, stages=[stage if stage.get("stage") == "tiebreaker" else dict(
                stage, kept=sorted(stage.get("kept") or []),
                **({"evicted": sorted(stage["evicted"], key=lambda e: e["id"])} if "evicted" in stage else {}))
                for stage in data["stages"]])
            event["data"] = data
        events.append(event)
    return {"events": events}


class Steps:
    def __init__(self, reference: Registry, ours: list[Registry], keeper: Keeper):
        self.everyone = [reference, *ours]
        self.reference, self.ours, self.keeper = reference, ours, keeper
        self.recorded = 0

    def register(self, agent_id: str, tools: list[dict]) -> None:
        self.keeper.set_live(agent_id, True)
        for registry in self.everyone:
            registry.register(agent(agent_id, tools))

    def leave(self, agent_id: str) -> None:
        self.keeper.set_live(agent_id, False)
        for registry in self.everyone:
            registry.leave(agent_id)

    def consumer_beats(self, step: str, new_events: int) -> None:
        """The consumer's full heartbeat everywhere; then the audit trail compared, and the
        number of events this step added on the reference checked."""
        self.keeper.set_live("planner", True)
        for registry in self.everyone:
            registry.register(CONSUMER)
        time.sleep(0.05)
        _, expected = request(f"{self.reference.url}/events?agent_id=planner&limit=500")
        expected = comparable(expected)
        added = len(expected["events"]) - self.recorded
        assert added == new_events, f"{step}: the reference recorded {added} events, not {new_events}"
        self.recorded = len(expected["events"])
        for registry in self.ours:
            _, answer = request(f"{registry.url}/events?agent_id=planner&limit=500")
            diff(f"{step}: {registry.name} GET /events?agent_id=planner", expected, comparable(answer))
        summary = [f"{e['event_type'].split('_')[1]} {e['function_name']}[{e['data']['dep_index']}]"
                   for e in expected["events"][:added]]
        log(f"{step}: {added} new: {', '.join(reversed(summary)) or 'none'}")


def run_scenario(reference: Registry, ours: list[Registry], work) -> None:
    keeper = Keeper([reference, *ours])
    keeper.start()
    steps = Steps(reference, ours, keeper)
    for agent_id, tools in PRODUCERS.items():
        steps.register(agent_id, tools)
    steps.consumer_beats("everything registered", 7)
    steps.consumer_beats("the consumer refreshes unchanged", 0)
    steps.leave("weather-b")
    steps.consumer_beats("weather-b (chosen) left", 5)
    steps.leave("weather-a")
    steps.consumer_beats("weather-a left too", 5)
    steps.register("weather-a", PRODUCERS["weather-a"])
    steps.consumer_beats("weather-a came back", 5)
    steps.consumer_beats("the consumer refreshes unchanged again", 0)
    for kind in ("dependency_resolved", "dependency_unresolved"):
        status, expected = request(f"{reference.url}/events?type={kind}&limit=500")
        for registry in ours:
            their_status, answer = request(f"{registry.url}/events?type={kind}&limit=500")
            diff(f"{registry.name} GET /events?type={kind}", {"status": status, **comparable(expected)},
                 {"status": their_status, **comparable(answer)})
    log(f"compared {steps.recorded} audit events")


def main() -> int:
    return side_by_side("audit", TIME_LIMIT_SECONDS, log, run_scenario)


if __name__ == "__main__":
    sys.exit(main())
