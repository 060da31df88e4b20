"""`meshctl call` end to end: the real meshctl 3.7.1 calls tools of a real Python SDK agent
(agents/greeter.py, mcp-mesh 3.8.0) through mesh-registry's proxy (meshctl's default), and the
same commands run against the reference registry 3.7.1 must give the same results.

Checked for each registry (and the answers compared):
  * `meshctl call greet` through the proxy, and directly (`--use-proxy=false`): the same answer;
  * `meshctl call countdown`: an answer streamed as SSE with progress notifications first;
  * `meshctl call sleepy` with a 2 s X-Mesh-Timeout: the proxy's budget cuts it, and meshctl
    says so as it does with the reference;
  * `meshctl list --tools=greet` (the tool's schema, read through the proxy);
  * `meshctl list --schemas` (JSON and table) and `meshctl schema diff`, on the schemas the SDK
    published at registration, and a diff naming an unknown hash;
  * `meshctl audit greet` (table and JSON) finds the agent by prefix and reads its events; the
    agent's own lifecycle (`GET /events?agent_id=`) is its registration;
  * `meshctl audit planner` (table, `--explain`, `--json`) shows the resolution audit trail of a
    second real agent whose dependencies are a contested choice (resolved) and a tag nobody has
    (unresolved, both candidates dropped);
  * a target that is not a registered agent is refused (403).

Usage: python tools.py <mesh-registry binary> <meshctl> <reference registry binary> <sdk python>
Exits non-zero on the first failure; kills what it started.
"""

import json
import os
import pathlib
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

HERE = pathlib.Path(__file__).resolve().parent
processes: list[subprocess.Popen] = []


def log(message: str) -> None:
    print(f"[meshctl-call {time.strftime('%H:%M:%S')}] {message}", flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def expect(condition: bool, message: str) -> None:
    if not condition:
        raise AssertionError(message)


def request(url: str, method: str = "GET", body: bytes | None = None) -> tuple[int, str]:
    req = urllib.request.Request(url, data=body, method=method, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def start(args: list[str], env: dict, log_path: pathlib.Path) -> subprocess.Popen:
    out = open(log_path, "w")
    process = subprocess.Popen(args, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    processes.append(process)
    return process


def stop_all() -> None:
    for process in processes:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
    for process in processes:
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    processes.clear()


def wait_for(what: str, check, timeout: float = 60.0):
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.3)


def meshctl(cli: str, registry: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([cli, *args, "--registry-url", registry], capture_output=True, text=True, timeout=60)


def call_result(completed: subprocess.CompletedProcess) -> dict:
    expect(completed.returncode == 0, f"meshctl call failed: {completed.stdout} {completed.stderr}")
    return json.loads(completed.stdout)


def texts(result: dict) -> list[str]:
    return [item.get("text") for item in result.get("content", [])]


def exercise(name: str, registry: str, cli: str, work: pathlib.Path, python: str) -> dict:
    """Starts the agent against `registry`, runs every call, returns what is compared."""
    agent_port = free_port()
    env = dict(
        os.environ,
        MCP_MESH_REGISTRY_URL=registry,
        MCP_MESH_HTTP_HOST="127.0.0.1",
        MCP_MESH_HTTP_PORT=str(agent_port),
        PYTHONUNBUFFERED="1",
    )
    start([python, str(HERE / "agents" / "greeter.py")], env, work / f"greeter-{name}.log")

    def listed():
        status, body = request(registry + "/agents")
        agents = (json.loads(body)["agents"] or []) if status == 200 else []
        return [a for a in agents if a["name"] == "greeter" and a["status"] == "healthy" and len(a.get("capabilities") or []) >= 3]

    agent = wait_for(f"{name}: the greeter to register", listed)[0]
    log(f"{name}: greeter registered at {agent['endpoint']}")

    greeted = call_result(meshctl(cli, registry, "call", "greet", '{"name": "mesh"}'))
    expect(texts(greeted) == ["Hello, mesh!"], f"{name}: greet through the proxy: {greeted}")
    direct = call_result(meshctl(cli, registry, "call", "greet", '{"name": "mesh"}', "--use-proxy=false"))
    expect(direct == greeted, f"{name}: the proxy changes nothing: {direct} != {greeted}")
    log(f"{name}: meshctl call greet (proxy and direct): passed")

    counted = call_result(meshctl(cli, registry, "call", "countdown", '{"n": 3}'))
    expect("counted" in json.dumps(counted), f"{name}: countdown: {counted}")
    # The same call by hand: the answer is an SSE stream whose notification frames come first.
    rpc = {"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": {"name": "countdown", "arguments": {"n": 3}}}
    req = urllib.request.Request(f"{registry}/proxy/127.0.0.1:{agent_port}/mcp", data=json.dumps(rpc).encode(),
                                 method="POST", headers={"Content-Type": "application/json",
                                                         "Accept": "application/json, text/event-stream"})
    with urllib.request.urlopen(req, timeout=30) as response:
        expect(response.headers["Content-Type"].startswith("text/event-stream"), f"{name}: {response.headers}")
        frames = [json.loads(line[len("data: "):]) for line in response.read().decode().splitlines() if line.startswith("data: ")]
    methods = [frame.get("method", "result" if "result" in frame else "?") for frame in frames]
    expect(methods[-1] == "result" and methods.count("notifications/message") == 3,
           f"{name}: the stream carries three log frames, then the answer: {methods}")
    log(f"{name}: meshctl call countdown (a stream of notifications, then the answer): passed")

    # No client timeout of meshctl's own (--timeout 0), the budget asked of the proxy instead:
    # the proxy's cut is what meshctl sees.
    cut = meshctl(cli, registry, "call", "sleepy", '{"seconds": 8}', "--timeout", "0", "-H", "X-Mesh-Timeout: 2")
    expect(cut.returncode != 0, f"{name}: sleepy must fail: {cut.stdout}")
    cut_message = re.sub(r"[0-9.]+m?s\b", "<t>", (cut.stdout + cut.stderr).strip())
    log(f"{name}: meshctl call sleepy cut by the proxy's budget: {cut_message}")

    # `meshctl list --tools=greet` reads the tool's input schema through the proxy.
    described = meshctl(cli, registry, "list", "--tools=greet")
    expect(described.returncode == 0 and '"name"' in described.stdout and "Input Schema" in described.stdout,
           f"{name}: meshctl list --tools=greet: {described.stdout} {described.stderr}")
    log(f"{name}: meshctl list --tools=greet (through the proxy): passed")

    # The schema store the SDK filled at registration.
    listed = meshctl(cli, registry, "list", "--schemas", "--json")
    expect(listed.returncode == 0, f"{name}: meshctl list --schemas: {listed.stderr}")
    schemas = json.loads(listed.stdout)
    expect(schemas["count"] == len(schemas["schemas"]) >= 2, f"{name}: the SDK published schemas: {schemas}")
    table = meshctl(cli, registry, "list", "--schemas")
    expect(table.returncode == 0 and schemas["schemas"][0]["hash"][:12] in table.stdout, f"{name}: table: {table.stdout}")
    hashes = sorted(entry["hash"] for entry in schemas["schemas"])
    diffed = meshctl(cli, registry, "schema", "diff", hashes[0], hashes[1], "--json")
    expect(diffed.returncode == 0, f"{name}: meshctl schema diff: {diffed.stdout} {diffed.stderr}")
    missing = meshctl(cli, registry, "schema", "diff", hashes[0], "sha256:" + "0" * 64)
    expect(missing.returncode != 0, f"{name}: a diff with an unknown hash fails")
    log(f"{name}: meshctl list --schemas ({len(hashes)} schemas) and meshctl schema diff: passed")

    # `meshctl audit` finds the agent by prefix and reads its events (GET /events?agent_id=).
    audited = meshctl(cli, registry, "audit", "greet")
    expect(audited.returncode == 0, f"{name}: meshctl audit: {audited.stdout} {audited.stderr}")
    audit_text = audited.stdout.replace(agent["id"], "<greeter>")
    audit_json = meshctl(cli, registry, "audit", "greet", "--json", "--limit", "5")
    expect(audit_json.returncode == 0, f"{name}: meshctl audit --json: {audit_json.stderr}")
    audit_envelope = json.loads(audit_json.stdout)
    status, body = request(f"{registry}/events?agent_id={agent['id']}")
    lifecycle = [(e["event_type"], e["agent_id"] == agent["id"], e.get("agent_name")) for e in json.loads(body)["events"]]
    expect(status == 200 and lifecycle == [("register", True, "greeter")], f"{name}: the greeter's events: {body}")
    log(f"{name}: meshctl audit greet: passed ({audit_text.splitlines()[0] if audit_text else ''})")

    planned = audit_planner(name, registry, cli, work, python, env, agent["id"], agent_port)

    status, body = request(f"{registry}/proxy/10.255.0.1:80/mcp", "POST", b"{}")
    expect(status == 403 and "is not a registered agent" in body, f"{name}: unknown target: {status} {body}")
    origins = sorted((entry["hash"], entry["runtime_origin"], json.dumps(entry["canonical"], sort_keys=True))
                     for entry in schemas["schemas"])
    schema_diff = json.loads(diffed.stdout)
    for side in ("a", "b"):
        schema_diff[side].pop("created_at")
    return {"greet": greeted, "countdown": counted, "cut": cut_message, "schemas": origins,
            "schema diff": schema_diff, "unknown hash": (missing.stdout + missing.stderr).strip(),
            "audit": audit_text, "audit json": audit_envelope, "events": lifecycle, **planned}


def audit_planner(name: str, registry: str, cli: str, work: pathlib.Path, python: str, env: dict,
                  greeter_id: str, greeter_port: int) -> dict:
    """Starts the planner next to the greeter and reads its resolution audit trail with meshctl,
    ids, endpoints and timestamps made neutral for the comparison."""
    planner_port = free_port()
    start([python, str(HERE / "agents" / "planner.py")], dict(env, MCP_MESH_HTTP_PORT=str(planner_port)),
          work / f"planner-{name}.log")

    def audit_events():
        status, body = request(registry + "/agents")
        planners = [a["id"] for a in json.loads(body)["agents"] or [] if a["name"] == "planner"] if status == 200 else []
        if not planners:
            return None
        status, body = request(f"{registry}/events?agent_id={planners[0]}")
        events = [e for e in json.loads(body)["events"] if e["event_type"].startswith("dependency_")]
        return (planners[0], events) if len(events) == 2 else None

    planner_id, events = wait_for(f"{name}: the planner's two audit events", audit_events)
    expect(sorted(e["event_type"] for e in events) == ["dependency_resolved", "dependency_unresolved"],
           f"{name}: the planner's audit events: {events}")

    def neutral(text: str) -> str:
        for value, placeholder in [(greeter_id, "<greeter>"), (planner_id, "<planner>"),
                                   (f"127.0.0.1:{greeter_port}", "<greeter-endpoint>"),
                                   (f"127.0.0.1:{planner_port}", "<planner-endpoint>")]:
            text = text.replace(value, placeholder)
        return re.sub(r"\d{4}-\d\d-\d\dT[0-9:.]+(Z|[+-]\d\d:\d\d)", "<time>", text)

    table = meshctl(cli, registry, "audit", "planner")
    expect(table.returncode == 0 and "Audit events for" in table.stdout and "(unresolved)" in table.stdout
           and greeter_id in table.stdout, f"{name}: meshctl audit planner: {table.stdout} {table.stderr}")
    explained = meshctl(cli, registry, "audit", "planner", "--explain")
    expect(explained.returncode == 0 and "MissingTag" in explained.stdout and "HighestScoreThenVersion" in explained.stdout,
           f"{name}: meshctl audit planner --explain: {explained.stdout} {explained.stderr}")
    as_json = meshctl(cli, registry, "audit", "planner", "--json")
    expect(as_json.returncode == 0, f"{name}: meshctl audit planner --json: {as_json.stderr}")
    rows = [line.strip() for line in neutral(table.stdout).splitlines()[4:]]
    log(f"{name}: meshctl audit planner (table, --explain, --json): passed: {rows}")
    return {"planner audit": neutral(table.stdout), "planner audit explain": neutral(explained.stdout),
            "planner audit json": json.loads(neutral(as_json.stdout))}


def main() -> int:
    ours_binary, cli, reference_binary, python = sys.argv[1:5]
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="meshctl-call-") as tmp:
        work = pathlib.Path(tmp)
        answers = {}
        try:
            for name, binary, database in [
                ("ours", ours_binary, f"sqlite://{work}/ours.db"),
                ("reference", reference_binary, str(work / "reference.db")),
            ]:
                port = free_port()
                registry = f"http://127.0.0.1:{port}"
                env = dict(os.environ, HOST="127.0.0.1", PORT=str(port), DATABASE_URL=database)
                start([binary], env, work / f"{name}.log")
                wait_for(f"{name} to answer", lambda: request(registry + "/health")[0] == 200 if _up(registry) else False, 30)
                answers[name] = exercise(name, registry, cli, work, python)
                stop_all()
        except BaseException:
            for log_file in sorted(work.glob("*.log")):
                print(f"----- {log_file.name} (last 40 lines)", flush=True)
                print("\n".join(log_file.read_text(errors="replace").splitlines()[-40:]), flush=True)
            raise
        finally:
            stop_all()
        for key in answers["reference"]:
            expect(answers["ours"][key] == answers["reference"][key],
                   f"{key}: ours {answers['ours'][key]} != reference {answers['reference'][key]}")
    log(f"all passed in {time.monotonic() - started:.0f}s (same answers as the reference)")
    return 0


def _up(url: str) -> bool:
    try:
        request(url + "/health")
        return True
    except OSError:
        return False


if __name__ == "__main__":
    sys.exit(main())
