"""Differential test of LLM resolution: the reference registry and mesh-registry (PostgreSQL and
embedded backends) are given the same mesh, step by step, and must answer the same.

The mesh: LLM providers (plain and streaming variants, one in another namespace, one without an
input schema), tool agents (tagged and versioned tools, a duplicated function name, an agent
without a port, a tool whose required dependency never resolves) and one consumer with
`@mesh.llm` functions covering every provider and filter rule. Steps: everything registers; a
tool agent leaves (DELETE); a provider falls silent until the health monitor marks it unhealthy;
both come back changed; the consumer changes its requests.

After every step each live agent sends its full heartbeat again, in registration order, as
SDKs do after a 202 (the reference orders candidates by when their rows were last written, so
this keeps the order reproducible). Every answer's `llm_providers`, `llm_tools` and
`dependencies_resolved` are compared field by field, and so are the consumer's
`llm_tool_resolutions` / `llm_provider_resolutions` and every capability's `llm_filter` /
`llm_provider` in `GET /agents`. In `best_match` mode the reference's order is random (it walks
a Go map), so those lists are compared as sets.

Usage: python3 llm.py <mesh-registry binary> <reference mcp-mesh-registry binary>
Exits non-zero listing every difference. Standard library only.
"""

import json
import os
import pathlib
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid

PG_SERVER = os.environ.get("TEST_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432")
TIME_LIMIT_SECONDS = 240
# Short liveness windows so that "falls silent" takes seconds; the keeper beats every second.
TIMEOUT_THRESHOLD = "4"
HEALTH_CHECK_INTERVAL = "1"
STREAM = "ai.mcpmesh.stream"


def log(message: str) -> None:
    print(f"[llm-diff {time.strftime('%H:%M:%S')}] {message}", flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def request(url: str, method: str = "GET", body=None) -> tuple[int, dict | None]:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=10) as response:
            raw = response.read()
            return response.status, json.loads(raw) if raw else None
    except urllib.error.HTTPError as error:
        raw = error.read()
        return error.code, json.loads(raw) if raw else None


# ---------------------------------------------------------------------------------------------
# The mesh.
# ---------------------------------------------------------------------------------------------


def tool(function, capability, tags=(), version="1.0.0", schema=True, **extra) -> dict:
    entry = {
        "function_name": function,
        "capability": capability,
        "version": version,
        "tags": list(tags),
        "description": f"the {function} tool",
    }
    if schema is True:
        entry["inputSchema"] = {"type": "object", "properties": {function: {"type": "string"}}}
    elif schema is not None:
        entry["inputSchema"] = schema
    entry.update(extra)
    return entry


def llm_function(function, provider=None, entries=None, mode=None, raw_filter=None) -> dict:
    """A `@mesh.llm` tool as the 3.8.0 SDK registers it."""
    extra = {}
    if provider is not None:
        extra["llm_provider"] = provider
    if raw_filter is not None:
        extra["llm_filter"] = raw_filter
    elif entries is not None:
        extra["llm_filter"] = {"filter": entries, "filter_mode": mode or "all"}
    return tool(function, function, **extra)


def plain(*tags) -> dict:
    return {"capability": "llm", "tags": [*tags, f"-{STREAM}"]}


PROVIDERS = {
    "llm-claude": dict(
        port=9101,
        tools=[
            tool("claude_chat", "llm", ["claude", "anthropic"], kwargs={"vendor": "anthropic", "timeout": 60}),
            tool("claude_chat_stream", "llm", ["claude", "anthropic", STREAM], kwargs={"vendor": "anthropic", "stream_type": "text"}),
        ],
    ),
    "llm-gpt": dict(
        port=9102,
        tools=[
            tool("gpt_chat", "llm", ["openai"], version="2.0.0", kwargs={"vendor": "openai"}),
            tool("gpt_chat_stream", "llm", ["openai", STREAM], version="2.0.0", kwargs={"vendor": "openai"}),
        ],
    ),
    # Another namespace, no kwargs (vendor "unknown").
    "llm-legacy": dict(port=9103, namespace="prod", tools=[tool("legacy_chat", "llm", ["legacy"], version="0.9.0")]),
    # No input schema: never a candidate.
    "llm-bare": dict(port=9104, tools=[tool("bare_chat", "llm", ["claude"], schema=None, kwargs={"vendor": "bare"})]),
}

TOOLS = {
    "math-a": dict(
        port=9111,
        tools=[
            tool("add", "math", ["calc", "fast"]),
            tool("sub", "math", ["calc"], version="1.2.0"),
            tool("mul", "math", ["calc", "slow"], version="2.0.0"),
            tool("secret", "math", ["calc"], schema=None),
        ],
    ),
    # A wildcard host, a function name math-a also has, an empty schema.
    "math-b": dict(
        port=9112,
        host="0.0.0.0",
        tools=[
            tool("add", "math", ["calc"], version="1.5.0"),
            tool("div", "math", ["calc", "beta", "fast"], version="1.5.0"),
            tool("forecast", "weather", ["api"], schema={}),
        ],
    ),
    # No port: a stdio endpoint. `lookup` needs a capability nobody offers.
    "text-a": dict(
        port=0,
        tools=[
            tool("upper", "text", ["string"]),
            tool("lower", "text", ["string", "fast"], version="1.1.0"),
            tool("lookup", "text", ["db"], dependencies=[{"capability": "db", "required": True}]),
        ],
    ),
}

# function -> filter mode, for the comparison (best_match lists are compared as sets).
CONSUMER_FUNCTIONS = [
    llm_function("ask_plain", plain(), ["math"]),
    llm_function("ask_stream", {"capability": "llm", "tags": [STREAM]}, [{"capability": "math", "tags": ["+fast"]}]),
    llm_function("ask_claude", plain("+claude"), [{"capability": "math", "version": ">=1.2.0"}, "text"]),
    llm_function(
        "ask_versioned",
        {"capability": "llm", "tags": [f"-{STREAM}"], "version": ">=2.0.0"},
        [{"capability": "math", "tags": ["calc", "-slow"]}],
        "best_match",
    ),
    llm_function("ask_best", plain("+anthropic"), ["math", "text", "weather"], "best_match"),
    llm_function("ask_everything", {**plain(), "namespace": "prod"}, ["ignored"], "*"),
    llm_function("ask_star", {"capability": "llm"}, ["*"]),
    llm_function("ask_tags_only", {"capability": "llm", "tags": ["legacy"]}, [{"tags": ["fast"]}]),
    llm_function("ask_scored", plain("-claude"), [{"capability": "math", "tags": ["+fast", "+slow"]}]),
    llm_function("ask_missing", {"capability": "nope"}, [{"capability": "math", "tags": ["gpu"]}, {"capability": ""}, {}]),
    llm_function("ask_bad_entry", plain("-claude", "-openai", "-legacy"), ["math", 1]),
    llm_function("ask_unknown_mode", plain(), [{"capability": "math", "version": "^1.0.0"}], "fastest"),
    llm_function("ask_no_list", plain(), raw_filter={"filter_mode": "all"}),
    llm_function("ask_empty", {"capability": "llm", "tags": []}, []),
    tool(
        "uses_math",
        "uses_math",
        dependencies=[
            {"capability": "math", "tags": ["+fast"]},
            {"capability": "llm", "tags": [f"-{STREAM}"]},
            {"capability": "missing"},
        ],
    ),
]

CHANGED_CONSUMER_FUNCTIONS = [
    llm_function("ask_plain", plain("+openai"), ["text", "weather"]),
    llm_function("ask_best", plain(), ["math", "text"], "all"),
    llm_function("ask_new", {"capability": "llm", "tags": [STREAM, "+claude"]}, [{"capability": "math", "version": "<2.0.0"}]),
    CONSUMER_FUNCTIONS[5],
]


def registration(agent_id: str, spec: dict) -> dict:
    return {
        "agent_id": agent_id,
        "name": agent_id,
        "agent_type": "mcp_agent",
        "runtime": "python",
        "version": "1.0.0",
        "namespace": spec.get("namespace", "default"),
        "http_host": spec.get("host", "127.0.0.1"),
        "http_port": spec["port"],
        "tools": spec["tools"],
    }


# ---------------------------------------------------------------------------------------------
# The registries.
# ---------------------------------------------------------------------------------------------

processes: list[subprocess.Popen] = []


class Registry:
    def __init__(self, name: str, args: list[str], env: dict, log_path: pathlib.Path):
        self.name = name
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        env = dict(
            os.environ,
            HOST="127.0.0.1",
            PORT=str(port),
            DEFAULT_TIMEOUT_THRESHOLD=TIMEOUT_THRESHOLD,
            HEALTH_CHECK_INTERVAL=HEALTH_CHECK_INTERVAL,
            **env,
        )
        out = open(log_path, "w")
        self.process = subprocess.Popen(args, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        processes.append(self.process)
        deadline = time.monotonic() + 30
        while not self._answers():
            if time.monotonic() > deadline or self.process.poll() is not None:
                raise RuntimeError(f"{name} did not start (see {log_path})")
            time.sleep(0.2)

    def _answers(self) -> bool:
        try:
            return request(self.url + "/health")[0] == 200
        except OSError:
            return False

    def register(self, body: dict) -> dict:
        status, answer = request(self.url + "/heartbeat", "POST", body)
        assert status == 200 and answer["status"] == "success", f"{self.name}: {status} {answer}"
        return answer

    def beat(self, agent_id: str) -> int:
        return request(f"{self.url}/heartbeat/{agent_id}", "HEAD")[0]

    def leave(self, agent_id: str) -> None:
        assert request(f"{self.url}/agents/{agent_id}", "DELETE")[0] in (200, 204)

    def agents(self) -> dict:
        return {agent["id"]: agent for agent in request(self.url + "/agents")[1]["agents"]}


class Keeper(threading.Thread):
    """Beats every live agent on every registry once a second, as SDKs do."""

    def __init__(self, registries: list[Registry]):
        super().__init__(daemon=True)
        self.registries = registries
        self.live: set[str] = set()
        self.lock = threading.Lock()

    def run(self) -> None:
        while True:
            with self.lock:
                live = sorted(self.live)
            for registry in self.registries:
                for agent_id in live:
                    try:
                        registry.beat(agent_id)
                    except OSError:
                        pass
            time.sleep(1)

    def set_live(self, agent_id: str, live: bool) -> None:
        with self.lock:
            (self.live.add if live else self.live.discard)(agent_id)


# ---------------------------------------------------------------------------------------------
# Comparison.
# ---------------------------------------------------------------------------------------------

differences: list[str] = []
# What was compared, so that a run that compared nothing cannot pass unnoticed.
compared = {"answers": 0, "llm_tools entries": 0, "llm_providers entries": 0, "dependency positions": 0, "resolution rows": 0}


def diff(path: str, expected, actual) -> None:
    """Records every field where `actual` differs from the reference's `expected`."""
    if isinstance(expected, dict) and isinstance(actual, dict):
        for key in sorted(set(expected) | set(actual)):
            if key not in actual:
                differences.append(f"{path}.{key}: missing (reference: {json.dumps(expected[key])})")
            elif key not in expected:
                differences.append(f"{path}.{key}: unexpected {json.dumps(actual[key])}")
            else:
                diff(f"{path}.{key}", expected[key], actual[key])
    elif isinstance(expected, list) and isinstance(actual, list) and len(expected) == len(actual):
        for index, (e, a) in enumerate(zip(expected, actual)):
            diff(f"{path}[{index}]", e, a)
    elif expected != actual:
        differences.append(f"{path}: {json.dumps(actual)} (reference: {json.dumps(expected)})")


def canonical(items: list) -> list:
    return sorted(items, key=lambda item: json.dumps(item, sort_keys=True))


def comparable_answer(answer: dict, functions: list[dict]) -> dict:
    """The fields under comparison; best_match lists sorted (the reference's order is random)."""
    best_match = {f["function_name"] for f in functions if f.get("llm_filter", {}).get("filter_mode") == "best_match"}
    tools = answer.get("llm_tools")
    if isinstance(tools, dict):
        tools = {fn: canonical(entries) if fn in best_match else entries for fn, entries in tools.items()}
    shown = {"llm_tools": tools, "dependencies_resolved": answer.get("dependencies_resolved")}
    if "llm_providers" in answer:
        shown["llm_providers"] = answer["llm_providers"]
    return shown


def comparable_listing(agent: dict, functions: list[dict]) -> dict:
    best_match = {f["function_name"] for f in functions if f.get("llm_filter", {}).get("filter_mode") == "best_match"}
    rows = agent.get("llm_tool_resolutions")
    if rows is not None:
        ordered = [r for r in rows if r["function_name"] not in best_match]
        rows = ordered + canonical([r for r in rows if r["function_name"] in best_match])
    return {
        "llm_tool_resolutions": rows,
        "llm_provider_resolutions": agent.get("llm_provider_resolutions"),
        "capabilities": {
            c["function_name"]: {k: c[k] for k in ("llm_filter", "llm_provider") if k in c}
            for c in agent.get("capabilities") or []
        },
    }


class Mesh:
    def __init__(self, reference: Registry, ours: list[Registry], keeper: Keeper):
        self.reference = reference
        self.ours = ours
        self.keeper = keeper
        self.agents: dict[str, dict] = {}  # registration order
        self.live: list[str] = []

    def register(self, step: str, agent_id: str, body: dict) -> None:
        self.agents[agent_id] = body
        if agent_id not in self.live:
            self.live.append(agent_id)
        self.keeper.set_live(agent_id, True)
        functions = body["tools"]
        expected = comparable_answer(self.reference.register(body), functions)
        compared["answers"] += 1
        compared["llm_tools entries"] += sum(map(len, (expected["llm_tools"] or {}).values()))
        compared["llm_providers entries"] += len(expected.get("llm_providers", {}))
        compared["dependency positions"] += sum(map(len, (expected["dependencies_resolved"] or {}).values()))
        for registry in self.ours:
            actual = comparable_answer(registry.register(body), functions)
            diff(f"{step}: {registry.name} POST /heartbeat {agent_id}", expected, actual)

    def reregister_live(self, step: str) -> None:
        """Every live agent sends its full heartbeat again, in registration order."""
        for agent_id in [a for a in self.agents if a in self.live]:
            self.register(step, agent_id, self.agents[agent_id])

    def leave(self, agent_id: str) -> None:
        self.keeper.set_live(agent_id, False)
        self.live.remove(agent_id)
        for registry in [self.reference, *self.ours]:
            registry.leave(agent_id)

    def fall_silent(self, agent_id: str) -> None:
        self.keeper.set_live(agent_id, False)
        self.live.remove(agent_id)
        deadline = time.monotonic() + 30
        for registry in [self.reference, *self.ours]:
            while registry.agents()[agent_id]["status"] != "unhealthy":
                assert time.monotonic() < deadline, f"{registry.name}: {agent_id} never turned unhealthy"
                time.sleep(0.3)

    def compare_listing(self, step: str, consumer: str) -> None:
        expected_agents = self.reference.agents()
        for key in ("llm_tool_resolutions", "llm_provider_resolutions"):
            compared["resolution rows"] += len(expected_agents[consumer].get(key) or [])
        for registry in self.ours:
            actual_agents = registry.agents()
            diff(f"{step}: {registry.name} GET /agents ids", sorted(expected_agents), sorted(actual_agents))
            for agent_id, expected in expected_agents.items():
                if agent_id not in actual_agents:
                    continue
                functions = self.agents[agent_id]["tools"]
                shown_expected = comparable_listing(expected, functions)
                shown_actual = comparable_listing(actual_agents[agent_id], functions)
                if agent_id != consumer:
                    # Only the consumer's rows are fresh in the reference, which stores them at
                    # the consumer's last full heartbeat.
                    shown_expected.pop("llm_tool_resolutions")
                    shown_expected.pop("llm_provider_resolutions")
                    shown_actual.pop("llm_tool_resolutions")
                    shown_actual.pop("llm_provider_resolutions")
                diff(f"{step}: {registry.name} GET /agents {agent_id}", shown_expected, shown_actual)


def scenario(mesh: Mesh) -> None:
    consumer = "assistant"
    consumer_spec = dict(port=9120, tools=CONSUMER_FUNCTIONS)

    log("step 1: providers, tools and the consumer register")
    for agent_id, spec in {**PROVIDERS, **TOOLS}.items():
        mesh.register("step 1", agent_id, registration(agent_id, spec))
    mesh.register("step 1", consumer, registration(consumer, consumer_spec))
    mesh.compare_listing("step 1", consumer)

    log("step 2: math-b leaves")
    mesh.leave("math-b")
    mesh.reregister_live("step 2")
    mesh.compare_listing("step 2", consumer)

    log("step 3: llm-claude falls silent until it is unhealthy")
    mesh.fall_silent("llm-claude")
    mesh.reregister_live("step 3")
    mesh.compare_listing("step 3", consumer)

    log("step 4: math-b comes back changed, llm-claude comes back")
    changed = dict(TOOLS["math-b"], tools=[tool("add", "math", ["calc", "fast"], version="3.0.0", description="adds, faster")])
    mesh.agents["math-b"] = registration("math-b", changed)
    mesh.live += ["math-b", "llm-claude"]
    mesh.reregister_live("step 4")
    mesh.compare_listing("step 4", consumer)

    log("step 5: the consumer changes its requests")
    mesh.agents[consumer] = registration(consumer, dict(consumer_spec, tools=CHANGED_CONSUMER_FUNCTIONS))
    mesh.reregister_live("step 5")
    mesh.compare_listing("step 5", consumer)


def side_by_side(name: str, time_limit: int, log, scenario) -> int:
    """Runs `scenario(reference, ours, work)` against the reference registry (on its SQLite file)
    and ours on PostgreSQL and on the embedded file, started from sys.argv[1:3] (ours, the
    reference); then reports the differences `diff` collected, and cleans up whatever happened."""
    ours_binary, reference_binary = sys.argv[1], sys.argv[2]
    signal.signal(signal.SIGALRM, lambda *_: (_ for _ in ()).throw(TimeoutError("time limit reached")))
    signal.alarm(time_limit)
    work = pathlib.Path(tempfile.mkdtemp(prefix=f"mesh-{name}-diff-"))
    database = f"mesh_registry_{name}_diff_{uuid.uuid4().hex[:12]}"
    subprocess.run(["psql", f"{PG_SERVER}/postgres", "-qc", f"CREATE DATABASE {database}"], check=True)
    ok = False
    try:
        reference = Registry("reference", [reference_binary], {"DATABASE_URL": str(work / "reference.db")}, work / "reference.log")
        ours = [
            Registry("ours-postgres", [ours_binary], {"DATABASE_URL": f"{PG_SERVER}/{database}"}, work / "ours-postgres.log"),
            Registry("ours-embedded", [ours_binary], {"DATABASE_URL": f"sqlite://{work}/ours.db"}, work / "ours-embedded.log"),
        ]
        scenario(reference, ours, work)
        if differences:
            log(f"FAILED: {len(differences)} differences from the reference")
            for line in differences:
                print("  " + line)
        else:
            log("every answer matches the reference")
            ok = True
    except BaseException as failure:  # noqa: BLE001 - report anything, then clean up
        log(f"FAILED: {failure!r}")
        for path in sorted(work.glob("*.log")):
            print(f"----- {path.name} (last 20 lines) -----")
            print("\n".join(path.read_text(errors="replace").splitlines()[-20:]))
    finally:
        signal.alarm(0)
        for process in processes:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
                process.wait(timeout=10)
        subprocess.run(
            ["psql", f"{PG_SERVER}/postgres", "-qc", f"DROP DATABASE IF EXISTS {database} WITH (FORCE)"], check=False
        )
    return 0 if ok else 1


def run_scenario(reference: Registry, ours: list[Registry], work: pathlib.Path) -> None:
    keeper = Keeper([reference, *ours])
    keeper.start()
    scenario(Mesh(reference, ours, keeper))
    log("compared (reference side, per backend): " + ", ".join(f"{n} {what}" for what, n in compared.items()))


def main() -> int:
    return side_by_side("llm", TIME_LIMIT_SECONDS, log, run_scenario)


if __name__ == "__main__":
    sys.exit(main())
